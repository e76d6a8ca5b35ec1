//! `cargo xtask bench engine`: one engine shard on one core.
//!
//! Workload: 100k short sessions (handshake, one request, a response, close)
//! in waves of 1000 concurrent sessions, over IPv4 and over IPv6 (passes
//! alternating, so the families are compared side by side), captured packets and reply headers
//! interleaved as they would be on a live host. Everything is generated
//! before the clock starts, so only the engine is timed (including draining
//! its outbox, which a sender would copy from).
//!
//! Reports captured packets per second, nanoseconds per captured packet and
//! per input (packet or reply), and the heap bytes an idle established
//! session costs (measured with a counting allocator).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicIsize, Ordering},
    time::Instant as WallClock,
};

use tcpcopy_common::proto::HeaderRecord;
use tcpcopy_user::{
    engine::{Config, Endpoint, Engine, Instant, TransferRule, reply::Reply},
    packet::{Address, SeqNumber, TcpFlags, options::write_syn_options, tcp::SegmentRepr},
};

/// Counts bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new` is the caller's size.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// An IP family the workload runs in: its addresses, and how a reply
/// reaches the engine (IPv4: intercept's 64-byte header record; IPv6: the
/// reply's headers, parsed as they arrive).
trait Family: Address {
    const NAME: &'static str;
    const ONLINE: Endpoint<Self>;
    const TARGET: Endpoint<Self>;
    fn client(i: usize) -> Endpoint<Self>;
    /// The bytes standing for a reply of `payload_len` bytes whose headers
    /// are `headers` (a packet without payload).
    fn reply_bytes(headers: Vec<u8>, payload_len: u16) -> Vec<u8>;
    fn feed_reply(engine: &mut Engine<Self>, now: Instant, bytes: &[u8]);
}

impl Family for [u8; 4] {
    const NAME: &'static str = "IPv4";
    const ONLINE: Endpoint = Endpoint::new([198, 18, 1, 1], 80);
    const TARGET: Endpoint = Endpoint::new([198, 18, 2, 2], 8080);
    fn client(i: usize) -> Endpoint {
        Endpoint::new(
            [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            1024 + (i % 50_000) as u16,
        )
    }
    fn reply_bytes(p: Vec<u8>, payload_len: u16) -> Vec<u8> {
        let mut rec = HeaderRecord::from_headers(&p[..20], &p[20..]);
        let total = rec.ip_total_len() + payload_len;
        rec.bytes[2..4].copy_from_slice(&total.to_be_bytes());
        rec.bytes.to_vec()
    }
    fn feed_reply(engine: &mut Engine, now: Instant, bytes: &[u8]) {
        let rec = HeaderRecord {
            bytes: bytes.try_into().expect("64-byte record"),
        };
        engine.on_reply(now, &rec);
    }
}

/// 2001:db8::/32 with `tail` as the last four bytes.
const fn v6(tail: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = tail;
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d]
}

impl Family for [u8; 16] {
    const NAME: &'static str = "IPv6";
    const ONLINE: Endpoint<Self> = Endpoint::new(v6([0, 1, 1, 1]), 80);
    const TARGET: Endpoint<Self> = Endpoint::new(v6([0, 2, 2, 2]), 8080);
    fn client(i: usize) -> Endpoint<Self> {
        Endpoint::new(
            v6([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            1024 + (i % 50_000) as u16,
        )
    }
    fn reply_bytes(mut p: Vec<u8>, payload_len: u16) -> Vec<u8> {
        let len = u16::from_be_bytes([p[4], p[5]]) + payload_len;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p
    }
    fn feed_reply(engine: &mut Engine<Self>, now: Instant, bytes: &[u8]) {
        match Reply::parse_headers(bytes) {
            Ok(r) => engine.on_parsed_reply(now, &r, None),
            Err(_) => unreachable!("the bench's replies are valid"),
        }
    }
}
const SESSIONS: usize = 100_000;
const WAVE: usize = 1000;
const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example\r\nUser-Agent: bench\r\n\r\n";
const RESPONSE_LEN: u16 = 600;

fn packet<A: Address>(
    src: Endpoint<A>,
    dst: Endpoint<A>,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    syn: bool,
) -> Vec<u8> {
    let mut opts = [0u8; 20];
    let n = if syn {
        write_syn_options(&mut opts, 1460, Some((1, 0)), Some(7))
    } else {
        0
    };
    let repr = SegmentRepr {
        src: src.addr,
        dst: dst.addr,
        src_port: src.port,
        dst_port: dst.port,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 502,
        ttl: 64,
        ip_id: 0,
        options: &opts[..n],
        payload,
    };
    let mut out = vec![0; repr.len()];
    repr.emit(&mut out);
    out
}

/// A reply as intercept would report it (payload only counted).
fn reply<F: Family>(
    to: Endpoint<F>,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload_len: u16,
    syn: bool,
) -> Vec<u8> {
    F::reply_bytes(
        packet(F::TARGET, to, flags, seq, ack, &[], syn),
        payload_len,
    )
}

enum Input {
    Client(Vec<u8>),
    Reply(Vec<u8>),
}

/// A wave's inputs stored back to back, as a capture ring holds them:
/// `(is_reply, offset, len)` into one byte arena.
struct Ring {
    bytes: Vec<u8>,
    items: Vec<(bool, u32, u32)>,
}

impl Ring {
    fn from(inputs: Vec<Input>) -> Self {
        let mut ring = Self {
            bytes: Vec::new(),
            items: Vec::new(),
        };
        for i in inputs {
            let (reply, data): (bool, &[u8]) = match &i {
                Input::Client(p) => (false, p),
                Input::Reply(r) => (true, r),
            };
            ring.items
                .push((reply, ring.bytes.len() as u32, data.len() as u32));
            ring.bytes.extend_from_slice(data);
            // Keep records 8-byte aligned like a BPF ring buffer does.
            ring.bytes.resize(ring.bytes.len().next_multiple_of(8), 0);
        }
        ring
    }
}

/// The inputs of sessions `range`, interleaved step by step across them.
fn wave<F: Family>(range: std::ops::Range<usize>) -> Vec<Input> {
    let mut steps: Vec<Vec<Input>> = (0..8).map(|_| Vec::new()).collect();
    for i in range {
        let c = F::client(i);
        let (cs, ss, ts) = (i as u32 * 7919, i as u32 * 104_729, i as u32 * 15_485_863);
        let req = REQUEST.len() as u32;
        let ack = TcpFlags::ACK;
        steps[0].push(Input::Client(packet(
            c,
            F::ONLINE,
            TcpFlags::SYN,
            cs,
            0,
            &[],
            true,
        )));
        steps[1].push(Input::Reply(reply(
            c,
            TcpFlags::SYN | ack,
            ts,
            cs + 1,
            0,
            true,
        )));
        steps[2].push(Input::Client(packet(
            c,
            F::ONLINE,
            ack,
            cs + 1,
            ss + 1,
            &[],
            false,
        )));
        steps[3].push(Input::Client(packet(
            c,
            F::ONLINE,
            ack | TcpFlags::PSH,
            cs + 1,
            ss + 1,
            REQUEST,
            false,
        )));
        steps[4].push(Input::Reply(reply(
            c,
            ack | TcpFlags::PSH,
            ts + 1,
            cs + 1 + req,
            RESPONSE_LEN,
            false,
        )));
        let after = ss + 1 + u32::from(RESPONSE_LEN);
        steps[5].push(Input::Client(packet(
            c,
            F::ONLINE,
            ack,
            cs + 1 + req,
            after,
            &[],
            false,
        )));
        steps[6].push(Input::Client(packet(
            c,
            F::ONLINE,
            ack | TcpFlags::FIN,
            cs + 1 + req,
            after,
            &[],
            false,
        )));
        let fin_ack = cs + 2 + req;
        steps[7].push(Input::Reply(reply(
            c,
            ack | TcpFlags::FIN,
            ts + 1 + u32::from(RESPONSE_LEN),
            fin_ack,
            0,
            false,
        )));
    }
    steps.into_iter().flatten().collect()
}

fn config<F: Family>() -> Config {
    Config {
        rules: vec![TransferRule {
            online_addr: Some(F::ONLINE.to_socket().ip()),
            online_port: F::ONLINE.port,
            target: F::TARGET.to_socket(),
        }],
        ..Config::default()
    }
}

struct Run {
    seconds: f64,
    captured: u64,
    inputs: u64,
    frames: u64,
    completed: u64,
}

/// One pass of the whole workload through `engine`, starting at `now`.
/// (Not inlined: `valgrind --toggle-collect=engine::pass` counts it alone.)
#[inline(never)]
fn pass<F: Family>(engine: &mut Engine<F>, waves: &[Ring], now: &mut u64) -> Run {
    let (mut captured, mut inputs, mut frames) = (0u64, 0u64, 0u64);
    let completed_before = engine.stats().closed[0];
    let start = WallClock::now();
    for wave in waves {
        for &(is_reply, off, len) in &wave.items {
            *now += 1;
            let t = Instant::from_micros(*now);
            let data = &wave.bytes[off as usize..(off + len) as usize];
            if is_reply {
                F::feed_reply(engine, t, data);
            } else {
                engine.on_client_packet(t, data);
                captured += 1;
            }
            inputs += 1;
            // Drain in batches, as a worker does after each ring read.
            if inputs.is_multiple_of(64) {
                engine.flush(t);
                let out = engine.outbox();
                frames += out.frame_count() as u64;
                black_box(out.frames().map(<[u8]>::len).sum::<usize>());
                out.clear();
            }
        }
        engine.on_timer(Instant::from_micros(*now));
    }
    let seconds = start.elapsed().as_secs_f64();
    Run {
        seconds,
        captured,
        inputs,
        frames,
        completed: engine.stats().closed[0] - completed_before,
    }
}

/// Timed passes in steady state: one engine (as a long-running shard),
/// a warm-up pass first, and the lingering sessions of each pass expired
/// (untimed) before the next.
fn throughput<F: Family>(waves: &[Ring], passes: usize) -> Vec<Run> {
    let mut engine = Engine::<F>::new(config::<F>(), 0, 1);
    let mut now = 1_000_000u64;
    let mut runs = Vec::new();
    for i in 0..=passes {
        let run = pass(&mut engine, waves, &mut now);
        now += 10_000_000;
        engine.on_timer(Instant::from_micros(now));
        engine.outbox().clear();
        assert_eq!(
            engine.session_count(),
            0,
            "all sessions expired between passes"
        );
        if i > 0 {
            runs.push(run);
        }
    }
    runs
}

/// Heap bytes per idle established session.
fn idle_session_bytes() -> (f64, usize) {
    let handshakes: Vec<Input> = wave::<[u8; 4]>(0..SESSIONS)
        .into_iter()
        .filter(|i| match i {
            Input::Client(p) => p[33] & 0x02 != 0 || p[33] == 0x10 && p.len() == 40,
            Input::Reply(r) => r[33] & 0x02 != 0,
        })
        .collect();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut engine = Engine::new(config::<[u8; 4]>(), 0, 1);
    let mut now = 1_000_000u64;
    for input in &handshakes {
        now += 1;
        match input {
            Input::Client(p) => engine.on_client_packet(Instant::from_micros(now), p),
            Input::Reply(r) => <[u8; 4]>::feed_reply(&mut engine, Instant::from_micros(now), r),
        }
        engine.outbox().clear();
    }
    // Drop the outbox's and the timer scratch's capacity from the count.
    *engine.outbox() = Default::default();
    let after = ALLOCATED.load(Ordering::Relaxed);
    assert_eq!(
        engine.stats().established,
        SESSIONS as u64,
        "every session established"
    );
    let bytes = (after - before) as f64 / SESSIONS as f64;
    let sessions = engine.session_count();
    drop(engine);
    (bytes, sessions)
}

fn rings<F: Family>() -> Vec<Ring> {
    (0..SESSIONS / WAVE)
        .map(|w| Ring::from(wave::<F>(w * WAVE..(w + 1) * WAVE)))
        .collect()
}

/// A family's timed passes, sorted fastest first.
struct Runs(Vec<Run>);

impl Runs {
    fn median(&self) -> &Run {
        &self.0[self.0.len() / 2]
    }
    fn best(&self) -> &Run {
        &self.0[0]
    }
}

fn pps(r: &Run) -> f64 {
    r.captured as f64 / r.seconds
}

fn report<F: Family>(runs: &Runs) {
    let (median, best) = (runs.median(), runs.best());
    assert_eq!(median.completed, SESSIONS as u64, "every session completed");
    println!(
        "  {}: inputs per run: {} captured packets + {} reply headers; {} frames out",
        F::NAME,
        median.captured,
        median.inputs - median.captured,
        median.frames
    );
    println!(
        "  {}: captured packets/s: median {:.2} M, best {:.2} M (goal 5 M)",
        F::NAME,
        pps(median) / 1e6,
        pps(best) / 1e6
    );
    println!(
        "  {}: ns per captured packet: median {:.0}; ns per input (packet or reply): median {:.0}",
        F::NAME,
        median.seconds * 1e9 / median.captured as f64,
        median.seconds * 1e9 / median.inputs as f64
    );
}

fn main() {
    println!("engine benchmark: {SESSIONS} sessions in waves of {WAVE}, one shard, one core");
    let passes = std::env::var("ENGINE_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // ENGINE_BENCH_FAMILY=4 or 6: one family alone (profiling).
    let family = std::env::var("ENGINE_BENCH_FAMILY").unwrap_or_default();
    let (v4, v6) = (family != "6", family != "4");
    let (rings4, rings6) = (
        if v4 { rings::<[u8; 4]>() } else { Vec::new() },
        if v6 { rings::<[u8; 16]>() } else { Vec::new() },
    );
    // Side by side: the families' passes alternate, so both see the same
    // machine.
    let (mut runs4, mut runs6) = (Vec::new(), Vec::new());
    for _ in 0..passes {
        if v4 {
            runs4.extend(throughput::<[u8; 4]>(&rings4, 1));
        }
        if v6 {
            runs6.extend(throughput::<[u8; 16]>(&rings6, 1));
        }
    }
    for runs in [&mut runs4, &mut runs6] {
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    }
    let (runs4, runs6) = (Runs(runs4), Runs(runs6));
    if v4 {
        report::<[u8; 4]>(&runs4);
    }
    if v6 {
        report::<[u8; 16]>(&runs6);
    }
    if v4 && v6 {
        println!(
            "  IPv6 / IPv4 captured packets/s (medians, passes alternating): {:.2}x",
            pps(runs6.median()) / pps(runs4.median())
        );
    }
    // (ENGINE_BENCH_ONLY_THROUGHPUT: for profiling the engine alone.)
    if std::env::var_os("ENGINE_BENCH_ONLY_THROUGHPUT").is_some() {
        return;
    }
    let compare = compare_cost();
    let memory = (std::env::var_os("ENGINE_BENCH_NO_MEMORY").is_none()).then(|| {
        let (bytes, sessions) = idle_session_bytes();
        println!(
            "  idle established sessions: {sessions}, heap bytes each: {bytes:.0} (goal <= 512)"
        );
        bytes
    });
    println!("summary (name value unit):");
    if v4 {
        println!(
            "engine_captured_packets_per_s_median {:.0} packets/s",
            pps(runs4.median())
        );
        println!(
            "engine_captured_packets_per_s_best {:.0} packets/s",
            pps(runs4.best())
        );
        println!(
            "engine_ns_per_captured_packet_median {:.0} ns",
            runs4.median().seconds * 1e9 / runs4.median().captured as f64
        );
    }
    if v6 {
        println!(
            "engine_ipv6_captured_packets_per_s_median {:.0} packets/s",
            pps(runs6.median())
        );
        println!(
            "engine_ipv6_captured_packets_per_s_best {:.0} packets/s",
            pps(runs6.best())
        );
    }
    if v4 && v6 {
        println!(
            "engine_ipv6_over_ipv4_median {:.2} ratio",
            pps(runs6.median()) / pps(runs4.median())
        );
    }
    for (name, ns) in compare {
        println!("engine_compare_http_{name}_per_exchange {ns:.0} ns");
    }
    if let Some(bytes) = memory {
        println!("engine_idle_session_heap {bytes:.0} bytes");
    }
}

/// `--compare http`: CPU per compared exchange (both responses parsed from
/// their streams, then compared), for a small text response and a 2 KB
/// JSON one (compared by structure, members reordered on one side).
fn compare_cost() -> Vec<(&'static str, f64)> {
    use tcpcopy_user::compare::{CompareCounts, CompareMode, IgnoreRules, streams::SessionStreams};
    let text = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 03 Dec 2026 14:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n".to_vec();
    let members: Vec<String> = (0..40)
        .map(|i| format!("\"field{i}\":{{\"id\":{i},\"name\":\"item number {i}\"}}"))
        .collect();
    let body = format!("{{{}}}", members.join(","));
    let mut reversed = members.clone();
    reversed.reverse();
    let body2 = format!("{{{}}}", reversed.join(","));
    let json = |b: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
        .into_bytes()
    };
    let cases = [
        ("text", "text", text.clone(), text),
        (
            "json_identical",
            "json 2 KB, identical",
            json(&body),
            json(&body),
        ),
        (
            "json_reordered",
            "json 2 KB, members reordered",
            json(&body),
            json(&body2),
        ),
    ];
    let rules = IgnoreRules::with_defaults();
    let mut out = Vec::new();
    for (key, name, prod, target) in cases {
        const EXCHANGES: u32 = 100_000;
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 64 << 10);
        s.production(&mut counts, true, 0, &[]);
        s.target(&mut counts, true, 0, 0, None);
        let (mut ps, mut ts) = (1u32, 1u32);
        let started = std::time::Instant::now();
        for _ in 0..EXCHANGES {
            s.production(&mut counts, false, ps, &prod);
            s.target(&mut counts, false, ts, target.len(), Some(&target));
            ps = ps.wrapping_add(prod.len() as u32);
            ts = ts.wrapping_add(target.len() as u32);
            s.compare_ready(&rules, &mut counts, |_| {});
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(EXCHANGES);
        assert_eq!(counts.equal, u64::from(EXCHANGES), "{name}: {counts:?}");
        println!(
            "  --compare http, {name} ({} B responses): {ns:.0} ns per exchange",
            prod.len()
        );
        out.push((key, ns));
    }
    out
}
