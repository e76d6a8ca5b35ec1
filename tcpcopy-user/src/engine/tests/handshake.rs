//! Real and faked handshakes, SYN retransmission, refusal, deadline.

use super::*;
use crate::engine::CloseReason;

#[test]
fn test_syn_is_announced_then_forwarded_to_target() {
    let mut h = harness();
    h.client(syn(1000).with_ts(77, 0).with_wscale(7));
    let s = h.one();
    assert_eq!(
        h.announced_messages(),
        vec![ClientMsg::add(
            CLIENT.addr,
            CLIENT.port,
            TARGET.addr,
            TARGET.port
        )]
    );
    assert_eq!((s.src, s.dst), (CLIENT, TARGET));
    assert!(s.is(TcpFlags::SYN));
    assert_eq!((s.seq, s.mss, s.ts), (1000, Some(1460), Some((77, 0))));
    assert_eq!(h.events[0].kind, EventKind::Started { faked: false });
}

#[test]
fn test_syn_sent_syn_ack_sends_our_third_ack() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 1001));
    let a = h.one();
    assert!(a.is(TcpFlags::ACK));
    assert_eq!((a.seq, a.ack), (1001, 5001));
    assert!(h.events.iter().any(|e| e.kind == EventKind::Established));
    assert_eq!(h.engine.stats().established, 1);
    // The client's own third ACK is not forwarded.
    h.client(ack(1001, 9001));
    h.none();
}

#[test]
fn test_syn_ack_with_wrong_ack_is_ignored() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(syn_ack(5000, 777));
    h.none();
    assert_eq!(h.engine.stats().established, 0);
}

#[test]
fn test_duplicate_client_syn_is_not_forwarded_twice() {
    let mut h = harness();
    h.client(syn(1000));
    h.one();
    h.client(syn(1000));
    h.none();
    assert_eq!(h.engine.session_count(), 1);
}

#[test]
fn test_faked_handshake_for_a_session_in_progress() {
    let mut h = harness_with(|c| c.fake_mss = 1400);
    h.client(data(3000, 9100, b"GET /mid HTTP/1.1\r\n\r\n").with_ts(500, 400));
    let s = h.one();
    assert!(s.is(TcpFlags::SYN), "{s:?}");
    assert_eq!((s.seq, s.mss, s.window), (2999, Some(1400), 65535));
    assert_eq!(s.ts, Some((500, 0)));
    assert_eq!(h.events[0].kind, EventKind::Started { faked: true });
    assert_eq!(h.announced.len(), 1);
    // The faked third ACK, then the data with the target's numbers.
    h.reply(syn_ack(7000, 3000).with_ts(11, 500));
    let out = h.sent();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].is(TcpFlags::ACK) && out[0].payload.is_empty());
    assert_eq!((out[0].seq, out[0].ack), (3000, 7001));
    assert_eq!((out[1].seq, out[1].ack), (3000, 7001));
    assert_eq!(out[1].payload, b"GET /mid HTTP/1.1\r\n\r\n");
    assert_eq!(out[1].ts, Some((500, 11)), "TSecr is the target's TSval");
}

#[test]
fn test_pure_acks_and_fins_start_no_session() {
    let mut h = harness();
    h.client(ack(3000, 9100));
    h.client(fin(3000, 9100));
    h.client(rst(3000, 9100));
    h.none();
    assert_eq!(h.engine.session_count(), 0);
    assert_eq!(h.engine.stats().no_session, 3);
}

#[test]
fn test_syn_retransmitted_with_backoff_then_handshake_deadline() {
    let mut h = harness();
    h.client(syn(1000));
    h.one();
    let mut gaps = Vec::new();
    let mut last = h.now;
    for _ in 0..8000 {
        h.advance(1);
        let out = h.sent();
        if let Some(s) = out.iter().find(|s| s.flags.syn()) {
            assert_eq!(s.seq, 1000);
            gaps.push(h.now.saturating_since(last).as_millis());
            last = h.now;
        }
        if !h.closed_with().is_empty() {
            assert!(
                out.iter().any(|s| s.flags.rst()),
                "a half-open target side is reset: {out:?}"
            );
            break;
        }
    }
    assert_eq!(gaps, vec![250, 500, 1000, 2000, 4000]);
    assert_eq!(h.closed_with(), vec![CloseReason::HandshakeTimeout]);
    assert_eq!(h.engine.stats().syn_retransmits, 5);
}

#[test]
fn test_target_refuses_connection_until_the_handshake_deadline() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    let mut syns = 1;
    h.reply(rst(0, 1001));
    h.none(); // no reset back
    // Every SYN refused: it goes again on the SYN schedule, then the
    // session ends refused at the handshake deadline.
    for _ in 0..200 {
        h.advance(50);
        for s in h.sent() {
            assert!(s.is(TcpFlags::SYN) && s.seq == 1000, "{s:?}");
            syns += 1;
            h.reply(rst(0, 1001));
            h.none();
        }
        if !h.closed_with().is_empty() {
            break;
        }
    }
    assert_eq!(h.closed_with(), vec![CloseReason::TargetRefused]);
    assert!((4..=8).contains(&syns), "{syns} SYNs in the 8 s");
    assert_eq!(h.engine.stats().syn_refused, syns, "each SYN refused once");
}

#[test]
fn test_a_refused_syn_is_retried_and_a_restarted_target_accepts_it() {
    let mut h = harness();
    h.client(syn(1000));
    h.sent();
    h.reply(rst(0, 1001)); // restarting
    h.none();
    h.advance(260);
    let again = h.one();
    assert!(again.is(TcpFlags::SYN) && again.seq == 1000);
    h.reply(syn_ack(5000, 1001)); // back
    assert!(h.one().is(TcpFlags::ACK));
    assert_eq!(h.engine.stats().established, 1);
    h.client(ack(1001, 9001));
    h.client(data(1001, 9001, b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(h.one().payload, b"GET / HTTP/1.1\r\n\r\n");
    assert!(h.closed_with().is_empty());
}

#[test]
fn test_repeated_syn_ack_means_our_ack_was_lost() {
    let mut h = harness();
    h.establish();
    h.reply(syn_ack(5000, 1001));
    let a = h.one();
    assert!(a.is(TcpFlags::ACK));
    assert_eq!((a.seq, a.ack), (1001, 5001));
}

#[test]
fn test_only_full_sessions_ignores_mid_stream_data() {
    let mut h = harness_with(|c| c.only_full_sessions = true);
    h.client(data(3000, 9100, b"GET / HTTP/1.1\r\n\r\n"));
    h.none();
    assert_eq!(h.engine.session_count(), 0);
    h.client_from(Endpoint::new(CLIENT.addr, 40001), syn(1));
    assert_eq!(h.one().seq, 1);
}

#[test]
fn test_fast_open_data_in_the_syn_is_replayed_after_the_handshake() {
    let mut h = harness();
    let mut s = syn(1000);
    s.payload = b"GET /tfo HTTP/1.1\r\n\r\n".to_vec();
    h.client(s);
    let syn = h.one();
    assert!(syn.is(TcpFlags::SYN));
    assert!(syn.payload.is_empty(), "the SYN goes without data");
    h.reply(syn_ack(5000, 1001)); // the target ignored the data
    let out = h.sent();
    let d = out
        .iter()
        .find(|s| !s.payload.is_empty())
        .expect("data replayed");
    assert_eq!((d.seq, d.ack), (1001, 5001));
    assert!(!d.flags.syn());
    assert_eq!(d.payload, b"GET /tfo HTTP/1.1\r\n\r\n");
}

#[test]
fn test_client_syn_ack_is_ignored() {
    let mut h = harness();
    h.establish();
    let mut s = data(1001, 9001, b"weird");
    s.flags = TcpFlags::SYN | TcpFlags::ACK;
    h.client(s);
    h.none();
    assert_eq!(h.engine.stats().malformed, 1);
}
