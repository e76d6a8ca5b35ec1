//! IPv6 sessions: the same engine compiled for 16-byte addresses. A
//! scripted session must come out of the IPv6 engine frame for frame as it
//! comes out of the IPv4 one; what differs (extension headers, the faked
//! MSS, pools, the family of rules) is tested on its own.

use super::*;
use crate::engine::{
    CloseReason,
    shaping::{ClientPool, shard_of},
    shard_for_packet,
};

const REQ1: &[u8] = b"GET /one HTTP/1.1\r\n\r\n";
const REQ2: &[u8] = b"GET /two HTTP/1.1\r\n\r\n";

/// What a frame says, without its addresses.
type Shape = (
    TcpFlags,
    u32,
    u32,
    u16,
    Vec<u8>,
    Option<(u32, u32)>,
    Option<u16>,
);

fn shapes<A: Family>(frames: Vec<Sent<A>>) -> Vec<Shape> {
    frames
        .into_iter()
        .map(|s| {
            assert_eq!((s.src, s.dst), (A::CLIENT, A::TARGET), "re-addressed");
            (s.flags, s.seq, s.ack, s.window, s.payload, s.ts, s.mss)
        })
        .collect()
}

/// A whole session with timestamps, two requests with their answers, the
/// client's close and the target's; every step's frames.
fn scripted<A: Family>() -> (Vec<Vec<Shape>>, Vec<CloseReason>, Harness<A>) {
    let mut h: Harness<A> = family_harness_with(|_| {});
    let mut steps = Vec::new();
    h.client(syn(1000).with_ts(100, 0).with_wscale(7));
    steps.push(shapes(h.sent()));
    h.reply(syn_ack(5000, 1001).with_ts(900, 100).with_wscale(7));
    steps.push(shapes(h.sent()));
    h.client(ack(1001, 9001).with_ts(101, 50));
    steps.push(shapes(h.sent()));
    h.client(data(1001, 9001, REQ1).with_ts(102, 50));
    steps.push(shapes(h.sent()));
    h.client(data(1022, 9101, REQ2).with_ts(103, 51));
    steps.push(shapes(h.sent()));
    h.reply(data(5001, 1022, &[b'r'; 100]).with_ts(901, 102));
    steps.push(shapes(h.sent()));
    h.reply(data(5101, 1043, &[b's'; 100]).with_ts(902, 103));
    steps.push(shapes(h.sent()));
    h.client(fin(1043, 9201).with_ts(104, 52));
    steps.push(shapes(h.sent()));
    h.reply(fin(5201, 1044).with_ts(903, 104));
    steps.push(shapes(h.sent()));
    h.advance(10_000);
    steps.push(shapes(h.sent()));
    let closed = h.closed_with();
    (steps, closed, h)
}

#[test]
fn test_an_ipv6_session_is_replayed_exactly_as_an_ipv4_one() {
    let (v4, closed4, h4) = scripted::<[u8; 4]>();
    let (v6, closed6, h6) = scripted::<[u8; 16]>();
    assert!(
        v4.iter().flatten().any(|s| s.4 == REQ2),
        "the script replays both requests: {v4:#?}"
    );
    assert_eq!(v6, v4, "the IPv6 replay, step by step, against IPv4's");
    assert_eq!(closed6, closed4);
    assert!(!closed6.is_empty(), "the session ended");
    assert_eq!(
        h6.announced,
        vec![Announcement {
            client: CLIENT6,
            target: TARGET6
        }]
    );
    let (s4, s6) = (h4.engine.stats(), h6.engine.stats());
    assert_eq!(
        (s6.established, s6.requests, s6.responses, s6.frames_sent),
        (s4.established, s4.requests, s4.responses, s4.frames_sent)
    );
    // Frames are 20 bytes longer each: the IPv6 header.
    assert_eq!(s6.bytes_sent, s4.bytes_sent + 20 * s4.frames_sent);
}

#[test]
fn test_a_faked_ipv6_handshake_advertises_the_mss_the_mtu_leaves() {
    let mut h = harness6();
    h.client(data(1001, 9001, REQ1));
    let syn = h.one();
    assert!(syn.is(TcpFlags::SYN));
    assert_eq!((syn.seq, syn.mss), (1000, Some(1440)));
    assert_eq!(h.engine.stats().sessions_faked, 1);
    let mut h4 = harness();
    h4.client(data(1001, 9001, REQ1));
    assert_eq!(h4.one().mss, Some(1460));
}

#[test]
fn test_ipv6_packets_bigger_than_the_mtu_are_split_to_it() {
    let mut h: Harness<[u8; 16]> = family_harness_with(|c| c.mtu = 600);
    h.establish();
    let big: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    h.client(data(1001, 9001, &big));
    let out = h.sent();
    // 600 - 40 (IPv6) - 20 (TCP) = 540 bytes per segment.
    assert!(out.iter().all(|s| s.payload.len() <= 540), "{out:#?}");
    assert_eq!(out[1].seq, 1001 + 540);
    let joined: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(joined, big);
}

/// `pkt` with an extension header of `kind` (8 bytes: next header, length
/// 0, then `body`) between the IPv6 header and TCP.
fn with_extension(pkt: &[u8], kind: u8, body: [u8; 6]) -> Vec<u8> {
    let mut out = pkt[..40].to_vec();
    let next = out[6];
    out[6] = kind;
    let len = u16::from_be_bytes([out[4], out[5]]) + 8;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&pkt[40..]);
    out
}

#[test]
fn test_ipv6_extension_headers_are_stripped_and_fragments_counted() {
    let mut h = harness6();
    h.establish();
    // Hop-by-hop options (a PadN): replayed without it.
    let pkt = with_extension(
        &data(1001, 9001, REQ1).packet(CLIENT6, ONLINE6),
        0,
        [1, 4, 0, 0, 0, 0],
    );
    h.engine.on_client_packet(h.now, &pkt);
    let s = h.one();
    assert_eq!((s.seq, s.payload.as_slice()), (1001, REQ1));
    assert_eq!(h.engine.stats().extensions_stripped, 1);
    // A fragment (offset 0, more fragments): not reassembled, counted.
    let frag = with_extension(
        &data(1022, 9101, REQ2).packet(CLIENT6, ONLINE6),
        44,
        [0, 1, 0, 0, 0, 7],
    );
    h.engine.on_client_packet(h.now, &frag);
    h.none();
    let st = h.engine.stats();
    assert_eq!((st.fragments, st.malformed), (1, 0));
    // So is an IPv4 fragment (more fragments set).
    let mut h4 = harness();
    let mut pkt = data(1001, 9001, REQ1).packet(CLIENT, ONLINE);
    pkt[6] |= 0x20;
    h4.engine.on_client_packet(h4.now, &pkt);
    h4.none();
    let st = h4.engine.stats();
    assert_eq!((st.fragments, st.malformed), (1, 0));
}

#[test]
fn test_each_family_engine_counts_the_other_familys_packets_malformed() {
    let mut h6 = harness6();
    h6.engine
        .on_client_packet(h6.now, &syn(1000).packet(CLIENT, ONLINE));
    h6.none();
    assert_eq!(h6.engine.stats().malformed, 1);
    let mut h4 = harness();
    h4.engine
        .on_client_packet(h4.now, &syn(1000).packet(CLIENT6, ONLINE6));
    h4.none();
    assert_eq!(h4.engine.stats().malformed, 1);
}

#[test]
fn test_rules_apply_only_to_their_targets_family() {
    // Both families' rules in one configuration: each engine takes its own.
    let mut both = config();
    both.rules.extend(config_of::<[u8; 16]>().rules);
    let mut h6: Harness<[u8; 16]> = family_harness_with(|c| *c = both.clone());
    h6.client(syn(1000));
    assert_eq!(h6.one().dst, TARGET6);
    let mut h4: Harness = family_harness_with(|c| *c = both);
    h4.client(syn(1000));
    assert_eq!(h4.one().dst, TARGET);
    // A port-only rule with an IPv4 target is not an IPv6 rule.
    let mut h: Harness<[u8; 16]> = family_harness_with(|c| {
        c.rules = vec![TransferRule {
            online_addr: None,
            online_port: 80,
            target: TARGET.to_socket(),
        }]
    });
    h.client(syn(1000));
    h.none();
    assert_eq!(h.engine.stats().unmatched, 1);
}

#[test]
fn test_an_ipv6_client_pool_maps_each_client_into_it() {
    let pool: ClientPool = "198.19.7.x, 2001:db8:7::x".parse().unwrap();
    let mut h: Harness<[u8; 16]> = family_harness_with(|c| c.client_pool = Some(pool));
    h.client(syn(1000));
    let s = h.one();
    let mut want = [0u8; 16];
    want[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 7]);
    want[15] = 2; // the client's own last group (::2)
    assert_eq!(s.src.addr, want);
    assert_eq!(h.announced[0].client.addr, want);
    // The target answers the pool address; an unknown one is counted.
    h.reply_to(Endpoint::new(want, s.src.port), syn_ack(5000, 1001));
    assert!(h.one().is(TcpFlags::ACK));
    h.reply_to(CLIENT6, ack(5001, 1001));
    assert_eq!(h.engine.stats().replies_unknown, 1);
    // A pool without IPv6 addresses has none for an IPv6 client.
    let v4_only: ClientPool = "198.19.7.x".parse().unwrap();
    let mut h: Harness<[u8; 16]> = family_harness_with(|c| c.client_pool = Some(v4_only));
    h.client(syn(1000));
    h.none();
    assert_eq!(h.engine.stats().sessions_refused_port, 1);
}

#[test]
fn test_ipv6_sessions_stay_on_the_shard_their_replies_reach() {
    let seed = config().seed;
    for shard in 0..2u16 {
        let mut h: Harness<[u8; 16]> = family_harness_with(|_| {});
        h.engine = Engine::new(config_of::<[u8; 16]>(), shard, 2);
        for port in 0..64u16 {
            let from = Endpoint::new(CLIENT6.addr, 20_000 + port);
            let pkt = syn(1000).packet(from, ONLINE6);
            if shard_for_packet(&pkt, 2, seed) == Some(shard) {
                h.engine.on_client_packet(h.now, &pkt);
            }
        }
        let out = h.sent();
        assert!(out.len() > 16, "shard {shard} started {}", out.len());
        assert!(
            out.iter()
                .all(|s| shard_of(s.src.addr, s.src.port, 2, seed) == shard),
            "every replayed client address hashes to its engine's shard"
        );
    }
}
