//! Request/response pacing, ACK and timestamp rewriting, windows, our ACKs.

use super::*;

const REQ1: &[u8] = b"GET /one HTTP/1.1\r\n\r\n"; // 21 bytes
const REQ2: &[u8] = b"GET /two HTTP/1.1\r\n\r\n";

/// Established session; the client sends request 1 (ack 9001) and, after
/// receiving a 100-byte response from the online server, request 2 (ack 9101).
fn two_requests(h: &mut Harness) {
    h.establish();
    h.client(data(1001, 9001, REQ1));
    let r1 = h.one();
    assert_eq!((r1.seq, r1.ack, r1.payload.as_slice()), (1001, 5001, REQ1));
    h.client(data(1022, 9101, REQ2));
}

#[test]
fn test_first_request_goes_at_once_with_target_ack_number() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ1));
    let s = h.one();
    assert_eq!(
        (s.src, s.dst, s.seq, s.ack, s.window),
        (CLIENT, TARGET, 1001, 5001, 65535)
    );
    assert!(s.flags.ack());
    assert_eq!(h.engine.stats().requests, 1);
}

#[test]
fn test_next_request_held_until_response_arrives_on_a_lan() {
    let mut h = harness();
    two_requests(&mut h);
    h.none(); // request 2 waits for the target's response
    h.advance(50);
    h.none();
    // The target answers part of it: on a LAN the first reply data releases it.
    h.reply(data(5001, 1022, &[b'r'; 60]));
    let out = h.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(
        (out[0].seq, out[0].ack, out[0].payload.as_slice()),
        (1022, 5061, REQ2)
    );
    assert_eq!(h.engine.stats().requests, 2);
    assert_eq!(h.engine.stats().responses, 1);
}

#[test]
fn test_response_of_the_expected_size_releases_without_waiting() {
    let mut h = harness();
    // A WAN client: 40 ms between the SYN and its ACK.
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 1001));
    h.advance(40);
    h.client(ack(1001, 9001));
    h.sent();
    h.client(data(1001, 9001, REQ1));
    h.one();
    h.client(data(1022, 9101, REQ2));
    h.none();
    // 100 bytes: exactly what the online server sent.
    h.reply(data(5001, 1022, &[b'r'; 100]));
    let out = h.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].payload, REQ2);
}

#[test]
fn test_partial_response_released_after_one_client_rtt_of_quiet() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 1001));
    h.advance(40);
    h.client(ack(1001, 9001)); // RTT 40 ms
    h.sent();
    h.client(data(1001, 9001, REQ1));
    h.one();
    h.client(data(1022, 9101, REQ2));
    h.reply(data(5001, 1022, &[b'r'; 30]));
    assert!(
        h.sent().iter().all(|s| s.payload.is_empty()),
        "only our ACK"
    );
    h.advance(20);
    h.reply(data(5031, 1022, &[b'r'; 30])); // more data resets the quiet period
    assert!(h.sent().iter().all(|s| s.payload.is_empty()));
    h.advance(39);
    h.none();
    h.advance(2);
    let s = h.one();
    assert_eq!(s.payload, REQ2);
}

#[test]
fn test_no_response_at_all_moves_on_after_the_response_timeout() {
    let mut h = harness();
    two_requests(&mut h);
    h.reply(ack(5001, 1022)); // acknowledged, never answered
    h.advance(2999);
    h.none();
    h.advance(1);
    assert_eq!(h.one().payload, REQ2);
    assert_eq!(h.engine.stats().response_timeouts, 1);
}

#[test]
fn test_dont_wait_sends_requests_back_to_back() {
    let mut h = harness_with(|c| c.dont_wait = true);
    two_requests(&mut h);
    assert_eq!(h.one().payload, REQ2);
}

#[test]
fn test_multi_segment_request_is_pipelined() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, &[b'a'; 1000]));
    h.client(data(2001, 9001, &[b'b'; 1000]));
    h.client(data(3001, 9001, &[b'c'; 500]));
    let out = h.sent();
    assert_eq!(
        out.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![1001, 2001, 3001]
    );
    assert_eq!(h.engine.stats().requests, 1);
}

#[test]
fn test_target_window_limits_what_is_in_flight() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 1001).with_window(1500));
    h.client(ack(1001, 9001));
    h.sent();
    for i in 0..3u32 {
        h.client(data(1001 + i * 1000, 9001, &[b'x'; 1000]));
    }
    let out = h.sent();
    assert_eq!(
        out.len(),
        1,
        "only 1000 of 3000 bytes fit a 1500-byte window"
    );
    h.reply(ack(5001, 2001).with_window(3000));
    let out = h.sent();
    assert_eq!(
        out.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![2001, 3001]
    );
}

#[test]
fn test_scaled_window_from_the_handshake() {
    let mut h = harness();
    h.client(syn(1000).with_wscale(7));
    h.sent();
    h.reply(syn_ack(5000, 1001).with_wscale(2));
    h.client(ack(1001, 9001));
    h.sent();
    // A window field of 500 means 2000 bytes with scale 2.
    h.reply(ack(5001, 1001).with_window(500));
    for i in 0..3u32 {
        h.client(data(1001 + i * 900, 9001, &[b'x'; 900]));
    }
    let out = h.sent();
    assert_eq!(out.len(), 2, "1800 of 2700 bytes fit 2000: {out:#?}");
}

#[test]
fn test_zero_window_is_probed_on_the_retransmission_timer() {
    let mut h = harness();
    h.establish();
    h.reply(ack(5001, 1001).with_window(0));
    h.client(data(1001, 9001, REQ1));
    h.none();
    h.advance(100);
    let probe = h.one();
    assert_eq!(probe.seq, 1001);
    h.reply(ack(5001, 1022).with_window(1000));
    h.none();
}

#[test]
fn test_target_data_is_acknowledged_once_per_batch() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ1));
    h.sent();
    h.replies_to(
        CLIENT,
        &[data(5001, 1022, &[1; 1000]), data(6001, 1022, &[2; 1000])],
    );
    let a = h.one();
    assert!(a.is(TcpFlags::ACK));
    assert_eq!((a.seq, a.ack), (1022, 7001));
    // A retransmitted reply is acknowledged again.
    h.reply(data(6001, 1022, &[2; 1000]));
    assert_eq!(h.one().ack, 7001);
}

#[test]
fn test_timestamps_are_rewritten_and_never_go_backwards() {
    let mut h = harness();
    h.client(syn(1000).with_ts(100, 0));
    h.sent();
    h.reply(syn_ack(5000, 1001).with_ts(7_000, 100));
    let third = h.one();
    assert_eq!(third.ts, Some((100, 7_000)));
    h.client(ack(1001, 9001).with_ts(101, 555));
    h.client(data(1001, 9001, REQ1).with_ts(105, 555));
    let s = h.one();
    assert_eq!(
        s.ts,
        Some((105, 7_000)),
        "TSecr: the target's TSval, not the online server's"
    );
    h.reply(data(5001, 1022, b"resp").with_ts(7_010, 105));
    assert_eq!(h.one().ts, Some((105, 7_010)));
    // A client segment with an older TSval (reordered capture) must not
    // make ours go backwards (PAWS at the target would drop it).
    h.client(data(1022, 9005, REQ2).with_ts(103, 556));
    let s = h.one();
    assert_eq!(s.ts, Some((105, 7_010)));
}

#[test]
fn test_timestamps_past_half_the_number_space_are_kept() {
    // Linux picks a random TSval base per connection: half of all clients
    // have the top bit set. Our TSvals start from the SYN's, not from 0.
    for base in [0x8000_0000u32, 0xffff_fff0, 0xfee1_dead] {
        let mut h = harness();
        h.client(syn(1000).with_ts(base, 0));
        h.sent();
        h.reply(syn_ack(5000, 1001).with_ts(7_000, base));
        assert_eq!(h.one().ts, Some((base, 7_000)), "third ACK, base {base:#x}");
        h.client(data(1001, 9001, REQ1).with_ts(base.wrapping_add(20), 555));
        assert_eq!(
            h.one().ts,
            Some((base.wrapping_add(20), 7_000)),
            "data, base {base:#x}"
        );
    }
}

#[test]
fn test_timestamps_left_alone_when_target_declines_them() {
    let mut h = harness();
    h.client(syn(1000).with_ts(100, 0));
    h.sent();
    h.reply(syn_ack(5000, 1001)); // no timestamp option
    assert_eq!(h.one().ts, None);
    h.client(data(1001, 9001, REQ1).with_ts(105, 555));
    assert_eq!(
        h.one().ts,
        Some((105, 555)),
        "unchanged: the target ignores it"
    );
}

#[test]
fn test_server_speaks_first_waits_for_the_targets_greeting() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 1001));
    h.client(ack(1001, 9001)); // handshake: online server isn 9000
    h.sent();
    // The client answers a 50-byte greeting it got from the online server.
    h.client(data(1001, 9051, b"LOGIN user\r\n"));
    h.none();
    h.reply(data(5001, 1001, &[b'g'; 50]));
    let out = h.sent();
    assert!(
        out.iter().any(|s| s.payload == b"LOGIN user\r\n"),
        "{out:#?}"
    );
}

#[test]
fn test_a_session_falling_behind_pipelines_instead_of_dropping() {
    let mut h = harness_with(|c| c.pipeline_backlog = 16 * 1024);
    h.establish();
    // Production answers every 100-byte request at once; the target is slow
    // (no responses yet). Requests pile up.
    let mut sent = Vec::new();
    for i in 0..400u32 {
        h.client(data(1001 + i * 100, 9001 + i * 50, &[b'q'; 100]));
        sent.extend(
            h.sent()
                .into_iter()
                .filter(|s| !s.payload.is_empty())
                .map(|s| s.seq),
        );
    }
    assert!(sent.len() > 200, "most requests went out: {}", sent.len());
    assert!(h.engine.stats().pipelined > 0);
    assert!(
        h.engine.buffered_bytes() < 64 * 1024,
        "the backlog stays bounded: {}",
        h.engine.buffered_bytes()
    );
    assert!(
        h.closed_with().is_empty(),
        "nothing dropped: {:?}",
        h.closed_with()
    );
    assert!(sent.windows(2).all(|w| w[1] > w[0]), "in order");
}

#[test]
fn test_a_session_lagging_production_by_max_lag_pipelines() {
    let mut h = harness_with(|c| {
        c.max_lag = std::time::Duration::from_millis(2000);
        c.response_timeout = std::time::Duration::from_secs(30);
    });
    h.establish();
    h.client(data(1001, 9001, b"req 1"));
    h.one();
    h.reply(ack(5001, 1006)); // acknowledged, not answered (yet)
    h.client(data(1006, 9101, b"req 2"));
    h.advance(1999);
    h.none();
    h.advance(1);
    let s = h.one();
    assert_eq!(
        s.payload, b"req 2",
        "released by the lag, long before the response timeout"
    );
    assert_eq!(h.engine.stats().pipelined, 1);
    // The answer to req 1 comes now: it is not req 2's, so req 2 is not
    // timed (nor, the session having pipelined, any request after it).
    h.advance(5);
    h.reply(data(5001, 1011, b"answer 1"));
    let e = h.engine.stats();
    assert_eq!(e.responses, 1);
    assert_eq!(
        e.response_time.count(),
        0,
        "no response time for a pipelined request"
    );
}

#[test]
fn test_a_request_sent_in_step_is_timed_from_send_to_first_answer_byte() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"req 1"));
    h.one();
    h.advance(3);
    h.reply(data(5001, 1006, b"answer 1"));
    let e = h.engine.stats();
    assert_eq!(e.response_time.count(), 1);
    assert_eq!(
        e.response_time.quantile(0.5),
        3071,
        "3 ms, to bucket precision"
    );
}
