//! `-n`, `-f`, `-r`, `-c` and sharding.

use std::collections::HashSet;

use super::*;
use crate::engine::shaping::shard_of;

#[test]
fn test_replication_gives_every_copy_its_own_client_port() {
    let mut h = harness_with(|c| c.replicas = 3);
    h.client(syn(1000));
    let out = h.sent();
    assert_eq!(out.len(), 3);
    let ports: HashSet<u16> = out.iter().map(|s| s.src.port).collect();
    assert_eq!(ports.len(), 3);
    assert!(
        ports.contains(&CLIENT.port),
        "copy 0 keeps the client's port"
    );
    assert_eq!(h.announced.len(), 3);
    // Each copy completes its own handshake and replays the data.
    for s in &out {
        h.reply_to(s.src, syn_ack(5000, 1001));
    }
    h.sent();
    h.client(data(1001, 9001, b"req"));
    let out = h.sent();
    assert_eq!(out.len(), 3);
    assert_eq!(
        out.iter().map(|s| s.src.port).collect::<HashSet<_>>(),
        ports
    );
}

#[test]
fn test_copies_never_collide_with_live_sessions_even_when_real_clients_reuse_their_ports() {
    let mut h = harness_with(|c| c.replicas = 4);
    let mut live: HashSet<Endpoint> = HashSet::new();
    // Many clients from one address, each one's port possibly taken by an
    // earlier session's copy.
    let mut copy_ports: Vec<u16> = Vec::new();
    for i in 0..300u16 {
        // Every other client uses a port a copy already holds.
        let port = if i % 2 == 1 {
            copy_ports[(i as usize * 7) % copy_ports.len()]
        } else {
            20_000 + i
        };
        h.client_from(Endpoint::new(CLIENT.addr, port), syn(u32::from(i) * 10));
        for s in h.sent().into_iter().filter(|s| s.flags.syn()) {
            assert!(live.insert(s.src), "client address {} used twice", s.src);
            if s.src.port != port {
                copy_ports.push(s.src.port);
            }
        }
    }
    assert!(
        live.len() >= 1200,
        "every SYN had its own address: {}",
        live.len()
    );
}

#[test]
fn test_instance_shift_moves_every_copy() {
    let mut a = harness();
    let mut b = harness_with(|c| c.instance = 1);
    a.client(syn(1));
    b.client(syn(1));
    assert_eq!(a.one().src.port, CLIENT.port);
    assert_ne!(b.one().src.port, CLIENT.port);
}

#[test]
fn test_sampling_replays_whole_sessions_or_none() {
    let mut h = harness_with(|c| c.sample_percent = 50);
    let mut replayed = 0;
    for port in 0..400u16 {
        let from = Endpoint::new(CLIENT.addr, 30_000 + port);
        h.client_from(from, syn(1));
        h.client_from(from, data(2, 9, b"a"));
        h.client_from(from, data(3, 9, b"b"));
        let n = h.sent().len();
        assert!(n == 0 || n == 1, "a session's packets share one decision");
        replayed += n;
    }
    assert!((160..240).contains(&replayed), "{replayed} of 400 at 50%");
    assert_eq!(h.engine.stats().sampled_out, 3 * (400 - replayed as u64));
}

#[test]
fn test_client_pool_rewrites_addresses_sticky_and_never_to_a_target() {
    let mut h = harness_with(|c| c.client_pool = Some("198.19.7.x,198.18.2.2".parse().unwrap()));
    for port in [40000, 40001, 40002, 40003] {
        h.client_from(Endpoint::new(CLIENT.addr, port), syn(1));
    }
    let out = h.sent();
    assert_eq!(out.len(), 4);
    for s in &out {
        assert_eq!(
            s.src.addr,
            [198, 19, 7, 2],
            "x takes the client's octet; the target address is never used"
        );
    }
}

#[test]
fn test_shards_own_the_client_addresses_they_give_out() {
    let shards = 3u16;
    let mut engines: Vec<Engine> = (0..shards)
        .map(|i| Engine::new(config(), i, shards))
        .collect();
    let seed = engines[0].config().seed;
    let now = Instant::from_secs(5);
    for port in 0..300u16 {
        let pkt = syn(1).packet(Endpoint::new(CLIENT.addr, 50_000 + port), ONLINE);
        let shard = crate::engine::shard_for_packet(&pkt, shards, seed).unwrap();
        engines[usize::from(shard)].on_client_packet(now, &pkt);
    }
    let mut total = 0;
    for (i, e) in engines.iter_mut().enumerate() {
        for f in e.outbox().frames() {
            let p = crate::packet::Ipv4TcpPacket::new_checked(f).unwrap();
            assert_eq!(
                usize::from(shard_of(p.src_addr(), p.src_port(), shards, seed)),
                i
            );
            total += 1;
        }
    }
    assert_eq!(total, 300);
}
