//! The engine driven by arbitrary operations: well-formed client segments
//! and replies with arbitrary numbers and flags (to reach deep states),
//! raw bytes (malformed input), time passing, flush and shutdown. After
//! every operation the engine's bookkeeping must hold and every frame it
//! emitted must be a valid IPv4/TCP packet with correct checksums.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tcpcopy_common::proto::HeaderRecord;
use tcpcopy_user::{
    engine::{Config, Endpoint, Engine, Instant, TransferRule},
    packet::{Ipv4TcpPacket, SeqNumber, TcpFlags, tcp::SegmentRepr, options::write_syn_options},
};

const ONLINE: Endpoint = Endpoint::new([198, 18, 1, 1], 80);
const TARGET: Endpoint = Endpoint::new([198, 18, 2, 2], 8080);

#[derive(Arbitrary, Debug)]
struct Seg {
    /// Which of four clients (and its replies).
    client: u8,
    flags: u8,
    /// Offsets from per-client bases, so numbers meet often.
    seq: u16,
    ack: u16,
    window: u16,
    len: u16,
    ts: Option<(u8, u8)>,
    syn_opts: Option<(u16, u8)>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Client(Seg),
    Reply(Seg),
    RawClient(Vec<u8>),
    RawReply([u8; 64]),
    Advance(u16),
    Flush,
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    replicas: u8,
    dont_wait: bool,
    mtu: u16,
    ops: Vec<Op>,
}

fn client(i: u8) -> Endpoint {
    Endpoint::new([198, 18, 1, 2], 40000 + u16::from(i % 4))
}

fn build(src: Endpoint, dst: Endpoint, s: &Seg, seq_base: u32, ack_base: u32) -> Vec<u8> {
    let mut opts = [0u8; 40];
    let flags = TcpFlags(s.flags & 0x3f);
    let n = match (flags.syn(), s.syn_opts, s.ts) {
        (true, Some((mss, ws)), ts) => {
            write_syn_options(&mut opts, mss, ts.map(|(v, e)| (u32::from(v), u32::from(e))), Some(ws % 16))
        }
        (_, _, Some((v, e))) => {
            opts[..4].copy_from_slice(&[1, 1, 8, 10]);
            opts[4..8].copy_from_slice(&u32::from(v).to_be_bytes());
            opts[8..12].copy_from_slice(&u32::from(e).to_be_bytes());
            12
        }
        _ => 0,
    };
    let payload = vec![0x5a; usize::from(s.len % 3000)];
    let repr = SegmentRepr {
        src: src.addr,
        dst: dst.addr,
        src_port: src.port,
        dst_port: dst.port,
        seq: SeqNumber(seq_base.wrapping_add(u32::from(s.seq))),
        ack: SeqNumber(ack_base.wrapping_add(u32::from(s.ack))),
        flags,
        window: s.window,
        ttl: 64,
        ip_id: 0,
        options: &opts[..n],
        payload: &payload,
    };
    let mut out = vec![0; repr.len()];
    repr.emit(&mut out);
    out
}

fuzz_target!(|input: Input| {
    let config = Config {
        rules: vec![TransferRule { online_addr: Some(ONLINE.to_socket().ip()), online_port: ONLINE.port, target: TARGET.to_socket() }],
        replicas: u16::from(input.replicas % 3) + 1,
        dont_wait: input.dont_wait,
        mtu: 200 + input.mtu % 1400,
        memory_cap: 4 << 20,
        ..Config::default()
    };
    let mut engine = Engine::new(config, 0, 1);
    let mut now = Instant::from_secs(1);
    for op in input.ops.iter().take(256) {
        match op {
            Op::Client(s) => engine.on_client_packet(now, &build(client(s.client), ONLINE, s, 1_000_000, 9_000_000)),
            Op::Reply(s) => {
                let p = build(TARGET, client(s.client), s, 5_000_000, 1_000_000);
                engine.on_reply(now, &HeaderRecord::from_headers(&p[..20], &p[20..]));
            }
            Op::RawClient(b) => engine.on_client_packet(now, b),
            Op::RawReply(b) => engine.on_reply(now, &HeaderRecord { bytes: *b }),
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(*ms));
                engine.on_timer(now);
            }
            Op::Flush => engine.flush(now),
            Op::Shutdown => engine.shutdown(now),
        }
        engine.audit().unwrap();
        let out = engine.outbox();
        for f in out.frames() {
            let p = Ipv4TcpPacket::new_checked(f).expect("engine frames parse");
            assert!(p.checksums_ok(), "bad checksum: {p:?}");
        }
        out.clear();
    }
});
