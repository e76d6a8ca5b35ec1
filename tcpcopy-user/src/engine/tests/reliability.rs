//! Retransmission, capture holes, overlaps, old data, port reuse.

use super::*;
use crate::engine::CloseReason;

#[test]
fn test_rto_retransmits_the_first_unacked_segment_with_backoff() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"hello"));
    h.one();
    let mut at = Vec::new();
    let start = h.now;
    for _ in 0..1000 {
        h.advance(1);
        for s in h.sent() {
            assert_eq!((s.seq, s.payload.as_slice()), (1001, &b"hello"[..]));
            at.push(h.now.saturating_since(start).as_millis());
        }
    }
    assert_eq!(at, vec![100, 300, 700]);
    assert_eq!(h.engine.stats().rto_retransmits, 3);
    // An ACK stops it.
    h.reply(ack(5001, 1006));
    h.advance(3000);
    h.none();
}

#[test]
fn test_retransmit_limit_ends_the_session() {
    let mut h = harness_with(|c| c.max_retransmits = 2);
    h.establish();
    h.client(data(1001, 9001, b"hello"));
    h.sent();
    h.advance(100);
    h.advance(200);
    h.advance(400);
    let out = h.sent();
    assert!(out.iter().any(|s| s.flags.rst()));
    assert_eq!(h.closed_with(), vec![CloseReason::RetransmitLimit]);
}

#[test]
fn test_three_duplicate_acks_trigger_a_fast_retransmit() {
    let mut h = harness_with(|c| c.dont_wait = true);
    h.establish();
    for i in 0..4u32 {
        h.client(data(1001 + i * 100, 9001, &[b'x'; 100]));
    }
    assert_eq!(h.sent().len(), 4);
    h.reply(ack(5001, 1101)); // first segment arrived, second lost
    h.none();
    h.reply(ack(5001, 1101));
    h.reply(ack(5001, 1101));
    h.none();
    h.reply(ack(5001, 1101));
    let r = h.one();
    assert_eq!(r.seq, 1101);
    assert_eq!(h.engine.stats().fast_retransmits, 1);
}

#[test]
fn test_capture_hole_waits_for_the_clients_retransmission() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, &[b'a'; 100]));
    h.one();
    h.reply(ack(5001, 1101));
    // 1101..1201 was not captured; 1201.. was.
    h.client(data(1201, 9001, &[b'c'; 100]));
    h.none();
    h.advance(500);
    h.none();
    // The real client retransmits the missing segment.
    h.client(data(1101, 9001, &[b'b'; 100]));
    let out = h.sent();
    assert_eq!(
        out.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![1101, 1201]
    );
}

#[test]
fn test_capture_hole_never_filled_ends_the_session() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, &[b'a'; 100]));
    h.reply(ack(5001, 1101));
    h.sent();
    h.client(data(1201, 9001, &[b'c'; 100]));
    h.advance(9999);
    h.none();
    h.advance(1);
    assert!(h.sent().iter().any(|s| s.flags.rst()));
    assert_eq!(h.closed_with(), vec![CloseReason::CaptureHole]);
}

#[test]
fn test_overlapping_retransmission_sends_only_new_bytes() {
    let mut h = harness_with(|c| c.dont_wait = true);
    h.establish();
    h.client(data(1001, 9001, b"abcdef"));
    h.one();
    // The client retransmits with more data coalesced.
    h.client(data(1001, 9001, b"abcdefghij"));
    let s = h.one();
    assert_eq!((s.seq, s.payload.as_slice()), (1007, &b"ghij"[..]));
    assert_eq!(h.engine.stats().overlaps_trimmed, 1);
}

#[test]
fn test_old_retransmission_is_skipped() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"abcdef"));
    h.one();
    h.reply(ack(5001, 1007));
    h.client(data(1001, 9001, b"abcdef"));
    h.none();
    assert_eq!(h.engine.stats().old_segments, 1);
}

#[test]
fn test_sequence_jump_is_a_reused_port() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"old session"));
    h.sent();
    h.client(data(900_000_000, 123, b"new session"));
    let out = h.sent();
    assert!(
        out.iter().any(|s| s.flags.rst() && s.src == CLIENT),
        "old one reset: {out:#?}"
    );
    let syn = out
        .iter()
        .find(|s| s.flags.syn())
        .expect("a faked SYN for the new one");
    assert_eq!(syn.seq, 899_999_999);
    assert_ne!(
        syn.src, CLIENT,
        "the old address lingers; the new session gets another port"
    );
    assert_eq!(h.closed_with(), vec![CloseReason::PortReuse]);
}

#[test]
fn test_new_syn_on_a_live_port_starts_a_new_session() {
    let mut h = harness();
    h.establish();
    h.client(syn(77_000));
    let out = h.sent();
    assert!(out.iter().any(|s| s.flags.rst()));
    assert!(out.iter().any(|s| s.flags.syn() && s.seq == 77_000));
    assert_eq!(h.engine.stats().sessions_syn, 2);
}

#[test]
fn test_late_packets_after_the_end_are_absorbed() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"abc"));
    h.sent();
    h.client(rst(1004, 9001));
    h.reply(ack(5001, 1004));
    h.advance(3000);
    assert!(h.sent().iter().any(|s| s.flags.rst()));
    // A late retransmission of old data starts nothing.
    h.client(data(1001, 9001, b"abc"));
    h.none();
    assert_eq!(h.engine.stats().sessions_faked, 0);
}

#[test]
fn test_malformed_input_is_counted_not_fatal() {
    let mut h = harness();
    let good = data(1, 2, b"x").packet(CLIENT, ONLINE);
    for len in 0..good.len() {
        h.engine.on_client_packet(h.now, &good[..len]);
    }
    h.engine.on_client_packet(h.now, &[0xff; 64]);
    assert_eq!(h.engine.stats().malformed, good.len() as u64 + 1);
    let mut rec = HeaderRecord::default();
    h.engine.on_reply(h.now, &rec);
    rec.bytes[0] = 0x45;
    rec.bytes[9] = 6;
    rec.bytes[32] = 0x50;
    rec.bytes[2..4].copy_from_slice(&10u16.to_be_bytes()); // shorter than its headers
    h.engine.on_reply(h.now, &rec);
    assert_eq!(h.engine.stats().replies_malformed, 2);
    h.none();
}

#[test]
fn test_replies_for_unknown_sessions_are_counted() {
    let mut h = harness();
    h.reply(data(5001, 1001, b"stray"));
    assert_eq!(h.engine.stats().replies_unknown, 1);
    h.none();
}
