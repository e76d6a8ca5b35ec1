//! Intake through the engine: packets with checksums left for the NIC
//! reach the target with right ones; damaged packets are counted, never
//! replayed.

use super::*;
use crate::packet::checksum::{fold, pseudo_header};

/// `pkt` as a sender with transmit checksum offload hands it to its NIC:
/// the TCP field holds only the pseudo-header sum.
fn offloaded(mut pkt: Vec<u8>) -> Vec<u8> {
    let partial = fold(pseudo_header(
        pkt[12..16].try_into().unwrap(),
        pkt[16..20].try_into().unwrap(),
        6,
        pkt.len() as u16 - 20,
    ));
    let at = 20 + 16;
    pkt[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    pkt
}

impl Harness {
    fn client_bytes(&mut self, pkt: &[u8]) {
        self.engine.on_client_packet(self.now, pkt);
    }
}

#[test]
fn test_offloaded_checksums_reach_the_target_completed() {
    let mut h = harness();
    // Every client packet of the session arrives as it left an offloading
    // stack; `Sent::parse` checks every frame's checksums.
    h.client_bytes(&offloaded(syn(1000).packet(CLIENT, ONLINE)));
    assert!(h.one().is(TcpFlags::SYN));
    h.reply(syn_ack(5000, 1001));
    h.sent();
    h.client_bytes(&offloaded(ack(1001, 9001).packet(CLIENT, ONLINE)));
    h.none();
    let request = data(1001, 9001, b"GET /offloaded HTTP/1.1\r\n\r\n");
    h.client_bytes(&offloaded(request.packet(CLIENT, ONLINE)));
    let s = h.one();
    assert_eq!(s.payload, b"GET /offloaded HTTP/1.1\r\n\r\n");
    assert_eq!((s.src, s.dst), (CLIENT, TARGET));
    assert_eq!(h.engine.stats().checksum_completed, 3);
    assert_eq!(h.engine.stats().bad_checksum, 0);
}

#[test]
fn test_damaged_client_packets_are_counted_and_dropped() {
    let mut h = harness();
    h.establish();
    let mut pkt = data(1001, 9001, b"GET / HTTP/1.1\r\n\r\n").packet(CLIENT, ONLINE);
    *pkt.last_mut().unwrap() ^= 0x20; // one bit flipped in flight
    h.client_bytes(&pkt);
    h.none();
    assert_eq!(h.engine.stats().bad_checksum, 1);
    // The client's retransmission, intact, goes.
    h.client(data(1001, 9001, b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(h.one().payload, b"GET / HTTP/1.1\r\n\r\n");
    // A damaged SYN starts nothing.
    let mut syn_pkt = syn(7000).packet(Endpoint::new(CLIENT.addr, 40001), ONLINE);
    syn_pkt[10] ^= 0x01;
    h.client_bytes(&syn_pkt);
    h.none();
    assert_eq!(h.engine.stats().bad_checksum, 2);
    assert_eq!(h.engine.session_count(), 1);
}

#[test]
fn test_offloaded_copies_and_replicas_share_one_completion() {
    let mut h = harness_with(|c| c.replicas = 3);
    h.client_bytes(&offloaded(syn(1000).packet(CLIENT, ONLINE)));
    let syns = h.sent();
    assert_eq!(syns.len(), 3, "one SYN per copy");
    assert!(syns.iter().all(|s| s.is(TcpFlags::SYN)));
    assert_eq!(h.engine.stats().checksum_completed, 1);
}
