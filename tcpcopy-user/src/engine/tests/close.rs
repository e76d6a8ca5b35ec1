//! FIN/RST holding, target close and reconnect, session end, shutdown.

use super::*;
use crate::engine::CloseReason;

const REQ: &[u8] = b"GET / HTTP/1.1\r\n\r\n"; // 18 bytes

#[test]
fn test_client_fin_held_while_the_response_is_pending() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.one();
    h.client(fin(1019, 9001)); // the client half-closes at once
    h.none();
    h.reply(data(5001, 1019, b"HTTP/1.1 200 OK\r\n\r\n"));
    let out = h.sent();
    assert!(
        out.iter().any(|s| s.flags.fin() && s.seq == 1019),
        "{out:#?}"
    );
}

#[test]
fn test_normal_close_ends_with_a_reset_and_lingers() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    h.reply(data(5001, 1019, &[b'r'; 40]));
    h.client(fin(1019, 9041));
    let out = h.sent();
    let f = out.iter().find(|s| s.flags.fin()).expect("FIN forwarded");
    assert_eq!(f.ack, 5041);
    // The target acknowledges our FIN and closes too.
    h.reply(fin(5041, 1020));
    let out = h.sent();
    assert!(
        out.iter().any(|s| s.flags.rst()),
        "session end resets the target side: {out:#?}"
    );
    assert_eq!(h.closed_with(), vec![CloseReason::Completed]);
    assert_eq!(h.engine.session_count(), 1, "lingers");
    h.advance(5999);
    assert_eq!(h.engine.session_count(), 1);
    h.advance(1);
    assert_eq!(h.engine.session_count(), 0);
}

#[test]
fn test_fin_acked_but_target_never_closes() {
    let mut h = harness();
    h.establish();
    h.client(fin(1001, 9001));
    assert!(h.one().flags.fin());
    h.reply(ack(5001, 1002));
    h.advance(6000);
    assert!(h.sent().iter().any(|s| s.flags.rst()));
    assert_eq!(h.closed_with(), vec![CloseReason::CloseTimeout]);
}

#[test]
fn test_client_rst_held_until_response_then_sent() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    h.client(rst(1019, 0));
    h.reply(ack(5001, 1019));
    h.none();
    h.reply(data(5001, 1019, b"late answer"));
    let out = h.sent();
    assert!(out.iter().any(|s| s.flags.rst()), "{out:#?}");
    assert_eq!(h.closed_with(), vec![CloseReason::ClientReset]);
}

#[test]
fn test_target_fin_with_client_data_left_reconnects() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    // The target answers and closes (e.g. its keep-alive limit).
    h.client(data(1019, 9101, b"GET /2 HTTP/1.1\r\n\r\n"));
    h.reply(data(5001, 1019, &[b'r'; 100]).with_flags(TcpFlags::FIN));
    let out = h.sent();
    let rst = out
        .iter()
        .find(|s| s.flags.rst())
        .expect("old connection reset");
    assert_eq!(rst.src, CLIENT);
    let syn = out
        .iter()
        .find(|s| s.flags.syn())
        .expect("a new connection");
    assert_eq!(syn.seq, 1018);
    assert_ne!(syn.src, CLIENT);
    assert_eq!(h.announced.len(), 2, "the new client port is announced");
    assert!(h.events.iter().any(|e| e.kind == EventKind::Reconnected));
    // The rest replays on the new connection.
    let new_client = syn.src;
    h.reply_to(new_client, syn_ack(8000, 1019));
    let out = h.sent();
    let d = out
        .iter()
        .find(|s| !s.payload.is_empty())
        .expect("request 2 resent");
    assert_eq!((d.src, d.seq, d.ack), (new_client, 1019, 8001));
    assert_eq!(d.payload, b"GET /2 HTTP/1.1\r\n\r\n");
    assert_eq!(h.engine.stats().reconnects, 1);
}

#[test]
fn test_target_rst_with_data_left_reconnects() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    h.reply(rst(5001, 0));
    let out = h.sent();
    assert!(
        !out.iter().any(|s| s.flags.rst()),
        "no reset back to a reset"
    );
    let syn = out.iter().find(|s| s.flags.syn()).expect("reconnect");
    assert_eq!(syn.seq, 1000);
}

#[test]
fn test_target_rst_after_acknowledging_an_unanswered_request_replays_it() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    // The target's kernel acknowledges the request; then the server dies.
    h.reply(ack(5001, 1001 + REQ.len() as u32));
    h.reply(rst(5001, 0));
    let out = h.sent();
    assert!(
        !out.iter().any(|s| s.flags.rst()),
        "no reset back to a reset"
    );
    let syn = out.iter().find(|s| s.flags.syn()).expect("a reconnect");
    assert_eq!(syn.seq, 1000, "the lost request is replayed from its start");
    assert_eq!(h.engine.stats().requests_lost_by_target, 1);
    h.engine.audit().unwrap();
}

#[test]
fn test_an_answered_request_is_not_replayed_after_a_reset() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, REQ));
    h.sent();
    h.reply(ack(5001, 1001 + REQ.len() as u32));
    h.reply(data(
        5001,
        1001 + REQ.len() as u32,
        b"HTTP/1.1 200 OK\r\n\r\n",
    ));
    h.reply(rst(5020, 0));
    assert!(h.sent().iter().all(|s| !s.flags.syn()), "nothing to replay");
    assert_eq!(h.engine.stats().requests_lost_by_target, 0);
    h.engine.audit().unwrap();
}

#[test]
fn test_target_rst_between_requests_reconnects_at_the_clients_next_request() {
    let mut h = harness();
    h.establish();
    h.reply(rst(5001, 0));
    h.none();
    assert!(
        h.closed_with().is_empty(),
        "the client's connection is still open: not ended on its behalf"
    );
    h.client(data(1001, 9001, REQ));
    let out = h.sent();
    assert!(
        !out.iter().any(|s| s.flags.rst()),
        "no reset back to a reset"
    );
    let syn = out.iter().find(|s| s.flags.syn()).expect("a reconnect");
    assert_eq!(syn.seq, 1000, "the request replayed on the new connection");
    assert_eq!(h.engine.stats().reconnects, 1);
}

#[test]
fn test_target_rst_then_the_clients_close_ends_the_session() {
    let mut h = harness();
    h.establish();
    h.reply(rst(5001, 0));
    h.client(fin(1001, 9001));
    h.none();
    assert_eq!(h.closed_with(), vec![CloseReason::TargetReset]);
}

#[test]
fn test_target_closing_for_good_hits_the_reconnect_limit() {
    let mut h = harness_with(|c| c.max_reconnects = 2);
    h.establish();
    h.client(data(1001, 9001, REQ));
    let mut client = CLIENT;
    for _ in 0..3 {
        let out = h.sent();
        if let Some(syn) = out.iter().find(|s| s.flags.syn()) {
            client = syn.src;
            h.reply_to(client, syn_ack(5000, syn.seq + 1));
        }
        h.reply_to(client, rst(5001, 0));
    }
    assert_eq!(h.closed_with(), vec![CloseReason::ReconnectLimit]);
}

#[test]
fn test_shutdown_resets_every_open_session() {
    let mut h = harness();
    h.establish();
    h.client_from(Endpoint::new(CLIENT.addr, 40001), syn(1));
    h.sent();
    h.engine.shutdown(h.now);
    let out = h.sent();
    assert_eq!(out.iter().filter(|s| s.flags.rst()).count(), 2, "{out:#?}");
    assert_eq!(
        h.closed_with(),
        vec![CloseReason::Shutdown, CloseReason::Shutdown]
    );
}

#[test]
fn test_client_rst_after_pipelined_requests_waits_for_every_answer() {
    let mut h = harness_with(|c| c.dont_wait = false);
    h.establish();
    // Three requests the online server answered with 100 bytes each.
    h.client(data(1001, 9001, b"GET /1\r\n"));
    h.client(data(1009, 9101, b"GET /2\r\n"));
    h.client(data(1017, 9201, b"GET /3\r\n"));
    h.client(rst(1025, 9301));
    h.sent();
    // The target answers the first; with requests pipelined behind it, a
    // reset now would discard what it has not read yet.
    h.reply(data(5001, 1009, &[b'a'; 100]));
    h.sent();
    h.reply(data(5101, 1025, &[b'b'; 100]));
    let out = h.sent();
    assert!(
        !out.iter().any(|s| s.flags.rst()),
        "200 of 300 bytes answered: held {out:#?}"
    );
    h.reply(data(5201, 1025, &[b'c'; 100]));
    assert!(
        h.sent().iter().any(|s| s.flags.rst()),
        "everything answered: the reset goes"
    );
    assert_eq!(h.closed_with(), vec![CloseReason::ClientReset]);
}

#[test]
fn test_client_rst_goes_after_a_quiet_target_that_answered_less() {
    let mut h = harness();
    h.establish();
    h.client(data(1001, 9001, b"GET /1\r\n"));
    h.client(rst(1009, 9101));
    h.sent();
    h.reply(data(5001, 1009, &[b'a'; 60])); // less than production's 100
    h.sent();
    h.advance(199);
    assert!(!h.sent().iter().any(|s| s.flags.rst()));
    h.advance(2);
    assert!(h.sent().iter().any(|s| s.flags.rst()));
}

#[test]
fn test_client_rst_after_pipelining_waits_for_a_quiet_target() {
    // Requests pipelined (the session fell behind production): which
    // response answers which request is unknown, and production may have
    // answered requests the client reset before acknowledging. The reset
    // waits until the target has said all it will.
    let mut h = harness_with(|c| c.pipeline_backlog = 1);
    h.establish();
    h.client(data(1001, 9001, b"GET /1\r\n"));
    h.client(data(1009, 9101, b"GET /2\r\n"));
    h.client(data(1017, 9201, b"GET /3\r\n"));
    // The client resets having seen two responses; production had read
    // the third request too.
    h.client(rst(1025, 9201));
    let out = h.sent();
    assert_eq!(
        out.iter().filter(|s| !s.payload.is_empty()).count(),
        3,
        "all three pipelined: {out:#?}"
    );
    assert!(h.engine.stats().pipelined > 0);
    h.reply(data(5001, 1025, &[b'a'; 100]));
    h.reply(data(5101, 1025, &[b'b'; 100]));
    let out = h.sent();
    assert!(
        !out.iter().any(|s| s.flags.rst()),
        "as much as production answered, but the target is still answering: held {out:#?}"
    );
    h.advance(100);
    h.reply(data(5201, 1025, &[b'c'; 100]));
    h.advance(150);
    assert!(
        !h.sent().iter().any(|s| s.flags.rst()),
        "the third response came 150 ms ago: held"
    );
    h.advance(60);
    assert!(
        h.sent().iter().any(|s| s.flags.rst()),
        "quiet for 200 ms: the reset goes"
    );
    assert_eq!(h.closed_with(), vec![CloseReason::ClientReset]);
}
