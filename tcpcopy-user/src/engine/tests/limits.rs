//! Timeouts and caps: `-t`, `-k`, buffer cap, `-m`, `-M`, `-D`.

use std::time::Duration;

use super::*;
use crate::engine::CloseReason;

#[test]
fn test_no_response_timeout_ends_a_session_waiting_on_the_target() {
    let mut h = harness_with(|c| {
        c.no_response_timeout = Duration::from_secs(20);
        c.max_retransmits = 255;
        c.rto_max = Duration::from_secs(1);
    });
    h.establish();
    h.client(data(1001, 9001, b"anyone?"));
    for _ in 0..19 {
        h.advance(1000);
    }
    assert!(h.closed_with().is_empty());
    h.advance(1000);
    assert_eq!(h.closed_with(), vec![CloseReason::NoResponse]);
}

#[test]
fn test_keepalive_timeout_ends_an_idle_session() {
    let mut h = harness_with(|c| c.keepalive_timeout = Duration::from_secs(30));
    h.establish();
    h.advance(29_000);
    assert!(h.closed_with().is_empty());
    h.advance(1_000);
    assert_eq!(h.closed_with(), vec![CloseReason::KeepaliveTimeout]);
    assert!(h.sent().iter().any(|s| s.flags.rst()));
}

#[test]
fn test_idle_session_resuming_is_not_killed_by_its_old_silence() {
    let mut h = harness_with(|c| {
        c.no_response_timeout = Duration::from_secs(10);
        c.keepalive_timeout = Duration::from_secs(60);
    });
    h.establish();
    h.advance(30_000); // idle, longer than -t
    h.client(data(1001, 9001, b"again"));
    assert_eq!(h.one().payload, b"again");
    h.advance(1);
    assert!(h.closed_with().is_empty(), "{:?}", h.closed_with());
}

#[test]
fn test_session_buffer_cap() {
    let mut h = harness_with(|c| c.session_buffer_cap = 64 * 1024);
    h.client(syn(1000));
    h.sent();
    // No SYN-ACK: data piles up.
    for i in 0..200u32 {
        h.client(data(1001 + i * 1000, 9001, &[b'x'; 1000]));
    }
    assert_eq!(h.closed_with(), vec![CloseReason::BufferFull]);
    assert_eq!(h.engine.buffered_bytes(), 0);
}

#[test]
fn test_memory_cap_refuses_sessions_and_never_grows_past_it() {
    let cap = 256 * 1024;
    let mut h = harness_with(|c| c.memory_cap = cap);
    for port in 0..2000u16 {
        let from = Endpoint::new(CLIENT.addr, 10_000 + port);
        h.client_from(from, syn(1));
        h.client_from(from, data(2, 9, &[b'y'; 600]));
        let used =
            h.engine.buffered_bytes() + h.engine.session_count() * Engine::<[u8; 4]>::SESSION_COST;
        assert!(used <= cap, "memory {used} over cap {cap}");
        h.sent();
    }
    assert!(h.engine.stats().sessions_refused_memory > 0);
}

#[test]
fn test_oversized_gro_packet_is_split_to_the_mtu() {
    let mut h = harness_with(|c| c.mtu = 600);
    h.establish();
    let big: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    h.client(data(1001, 9001, &big));
    let out = h.sent();
    assert_eq!(out.len(), 4, "{out:#?}");
    assert!(out.iter().all(|s| 40 + s.payload.len() <= 600));
    let joined: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(joined, big);
    assert_eq!(out[1].seq, 1001 + 560);
    assert_eq!(h.engine.stats().split_packets, 1);
}
