//! `bench-intercept`: reply packets per second through the reply program
//! -> ring buffer -> intercept -> TCP to tcpcopy peers, with the loss rate
//! and where it happens, for either deployment (`--path`): XDP on an
//! assistant, or TC egress on the target itself. Run it through `cargo
//! xtask bench intercept` (which builds it and the `intercept` binary in
//! release mode).
//!
//! For each offered rate, a fresh intercept (the real binary) runs in the
//! assistant namespace (or in the target's, `--egress`); peers connected
//! from the online host announce the sessions; a packet socket on the
//! target's NIC floods reply-shaped frames (`tcpcopy_tests::flood`). To the
//! assistant they cross the veth pair and the bridge like real replies; on
//! the target they go through the NIC's egress path (qdisc, TC) like the
//! target's own replies. Counters from every stage (veth/XDP driver, the
//! program, the daemon, the peers) say where frames were lost, the daemon's
//! CPU time says whether it was saturated, and the kernel's run-time
//! statistics of the program (`kernel.bpf_stats_enabled`, read with
//! bpftool) what each reply cost in the program itself.

use std::{
    io::Read,
    net::TcpStream,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use clap::Parser;
use tcpcopy_common::proto::{ClientMsg, RecordFrameDecoder};
use tcpcopy_tests::{
    flood::{FloodPlan, ReplyFlood, TestRunFrames, mac_of},
    intercept::{InterceptProcess, StatsLine},
    lab::{ASSISTANT_IP, Host, Lab, LabSpec, TARGET_IP},
    procstat::{BpfStats, program_stats},
    wait::{DEADLINE, wait_until},
};

const TARGET: ([u8; 4], u16) = ([198, 18, 2, 2], 80);

#[derive(Debug, Parser)]
#[command(name = "bench-intercept")]
struct Args {
    /// The intercept binary to measure (a release build).
    #[arg(long)]
    intercept: PathBuf,
    /// Reply frames per run.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Offered rates in frames per second, `max` for unpaced.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,250000,500000,max"
    )]
    rates: Vec<String>,
    /// tcpcopy peers connected to intercept.
    #[arg(long, default_value_t = 2)]
    peers: usize,
    /// Sessions (routes), spread over the peers.
    #[arg(long, default_value_t = 256)]
    sessions: u16,
    /// intercept's ring buffer size.
    #[arg(long, default_value = "4M")]
    ring_size: String,
    /// Where frames come from: `veth` (a packet socket on the target's NIC:
    /// the lab's real path) or `test-run` (BPF_PROG_TEST_RUN of intercept's
    /// attached program on one frame, repeated: XDP onwards only).
    #[arg(long, default_value = "veth")]
    source: Source,
    /// Where intercept runs: `assistant` (XDP) or `egress` (TC egress on
    /// the target; `veth` source only).
    #[arg(long, default_value = "assistant")]
    path: ReplyPath,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    Veth,
    TestRun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ReplyPath {
    Assistant,
    Egress,
}

/// One peer's receiving side, in its own thread.
struct PeerReader {
    received: Arc<AtomicU64>,
    /// Microseconds from the run's start to the latest record.
    last_at_us: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeerReader {
    /// Reads records until the connection closes; returns how many arrived
    /// out of order within their session (must be 0).
    fn spawn(mut stream: TcpStream, start: Instant) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let last_at_us = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (r, l, d) = (received.clone(), last_at_us.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut decoder = RecordFrameDecoder::new();
            let mut last_seq = std::collections::HashMap::<u16, u32>::new();
            let mut disorder = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut count = 0;
                decoder
                    .push(&buf[..n], |rec| {
                        count += 1;
                        // Sequence numbers never go back within a session
                        // (a test run repeats one, the veth flood counts up).
                        let prev = last_seq.insert(rec.dst_port(), rec.seq()).unwrap_or(0);
                        if (rec.seq().wrapping_sub(prev) as i32) < 0 {
                            disorder += 1;
                        }
                    })
                    .expect("intercept sent a malformed stream");
                if count > 0 {
                    r.fetch_add(count, Ordering::Relaxed);
                    l.store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
            d.store(true, Ordering::Relaxed);
            disorder
        });
        Self {
            received,
            last_at_us,
            done,
            thread,
        }
    }
}

/// The veth driver's XDP counters on the assistant's eth0.
#[derive(Clone, Copy, Debug, Default)]
struct VethXdp {
    xdp_drops: u64,
    /// Frames the veth dropped before XDP (its receive ring was full).
    ring_drops: u64,
}

fn veth_xdp(lab: &Lab, path: ReplyPath) -> VethXdp {
    let mut v = VethXdp::default();
    if path == ReplyPath::Egress {
        // No assistant: the frames never cross a veth to a program.
        return v;
    }
    for line in lab.run(Host::Assistant, &["ethtool", "-S", "eth0"]).lines() {
        let Some((k, val)) = line.trim().split_once(": ") else {
            continue;
        };
        let val: u64 = val.trim().parse().unwrap_or(0);
        if !k.starts_with("rx_queue_") {
            continue;
        }
        if k.ends_with("_xdp_drops") {
            v.xdp_drops += val;
        } else if k.ends_with("_drops") {
            v.ring_drops += val;
        }
    }
    v
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`) or of one
/// thread (`/proc/<pid>/task/<tid>/stat`).
fn cpu_seconds_at(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which ends with ')').
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_at(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    cpu_seconds_at(&format!("/proc/{}/task/{tid}/stat", std::process::id()))
}

/// Softirq CPU seconds of the whole machine (`/proc/stat`).
fn softirq_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    // cpu user nice system idle iowait irq softirq ...
    let softirq: f64 = cpu
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    softirq / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

struct RunResult {
    offered: f64,
    sent: u64,
    veth: VethXdp,
    stats: StatsLine,
    received: u64,
    disorder: u64,
    delivery_secs: f64,
    daemon_cpu: f64,
    /// The flooding thread's CPU share during the flood (1.0 = one core;
    /// spinning included when paced).
    sender_cpu: f64,
    /// The machine's softirq CPU during the flood (the veth/bridge/XDP path).
    softirq: f64,
    /// Nanoseconds per run of the reply program, by the kernel's statistics.
    prog_ns: f64,
}

fn run_once(lab: &Lab, args: &Args, rate: Option<u64>) -> RunResult {
    let ring = format!("--ring-size={}", args.ring_size);
    let opts = ["--target", "198.18.2.2:80", "--stats-interval", "1", &ring];
    let (intercept, intercept_ip, program) = match args.path {
        ReplyPath::Assistant => (
            InterceptProcess::start_binary(lab, &args.intercept, &opts),
            ASSISTANT_IP,
            "intercept_reply",
        ),
        ReplyPath::Egress => {
            let mut egress = opts.to_vec();
            egress.extend(["--clients", "198.18.1.0/24"]);
            (
                InterceptProcess::start_egress_binary(lab, &args.intercept, &egress),
                TARGET_IP,
                "intercept_egress",
            )
        }
    };
    let intercept_addr = std::net::SocketAddrV4::new(intercept_ip, 36524);
    let clients: Vec<([u8; 4], u16)> = (0..args.sessions)
        .map(|i| ([198, 18, 1, 200], 50000 + i))
        .collect();
    let mut streams = Vec::new();
    {
        let _ns = lab.enter(Host::Online);
        for _ in 0..args.peers {
            let s = TcpStream::connect_timeout(&intercept_addr.into(), DEADLINE)
                .expect("connect to intercept");
            streams.push(s);
        }
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        use std::io::Write;
        let mut bytes = ClientMsg::hello().encode().to_vec();
        for c in clients.iter().skip(i).step_by(args.peers) {
            bytes.extend_from_slice(&ClientMsg::add(c.0, c.1, TARGET.0, TARGET.1).encode());
        }
        stream.write_all(&bytes).expect("announce");
    }
    intercept.wait_stats("the announcements", |s| {
        s.get("announced") == Some(&u64::from(args.sessions))
    });

    let (next_hop, target_mac) = match args.path {
        ReplyPath::Assistant => (
            mac_of(lab, Host::Assistant, "eth0"),
            mac_of(lab, Host::Target, "eth0"),
        ),
        ReplyPath::Egress => (
            mac_of(lab, Host::Online, "eth1"),
            mac_of(lab, Host::Target, "eth0"),
        ),
    };
    let assistant_mac = next_hop;
    let before = veth_xdp(lab, args.path);
    let prog_before = program_stats(program);
    let cpu_before = cpu_seconds(intercept.pid());
    let sender_cpu_before = thread_cpu_seconds();
    let softirq_before = softirq_seconds();
    let start = Instant::now();
    let readers: Vec<PeerReader> = streams
        .into_iter()
        .map(|s| PeerReader::spawn(s, start))
        .collect();
    let plan = FloodPlan {
        target: TARGET,
        clients,
        frames: args.frames,
        rate,
    };
    let report = match args.source {
        Source::Veth if args.path == ReplyPath::Egress => {
            ReplyFlood::open_through_egress(lab, Host::Target, "eth0", next_hop).run(&plan)
        }
        Source::Veth => ReplyFlood::open(lab, Host::Target, "eth0", assistant_mac).run(&plan),
        Source::TestRun if args.path == ReplyPath::Egress => {
            panic!("test-run frames enter at XDP: use --source veth with --path egress")
        }
        Source::TestRun => {
            let runs = TestRunFrames::attached_to(lab, Host::Assistant, "eth0");
            let _ns = lab.enter(Host::Assistant);
            runs.flood(&plan, target_mac, assistant_mac)
        }
    };

    let flood_secs = report.elapsed.as_secs_f64().max(1e-9);
    let sender_cpu = (thread_cpu_seconds() - sender_cpu_before) / flood_secs;
    let softirq = (softirq_seconds() - softirq_before) / flood_secs;
    // Settle: until the peers' count stops moving (the pipeline drained).
    let total = || {
        readers
            .iter()
            .map(|r| r.received.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut last = (total(), Instant::now());
    wait_until("the pipeline to drain", DEADLINE, || {
        let now = total();
        if now != last.0 {
            last = (now, Instant::now());
        }
        if last.1.elapsed() >= Duration::from_millis(300) {
            Ok(())
        } else {
            Err(format!("{now} records received"))
        }
    });
    let daemon_cpu = cpu_seconds(intercept.pid()) - cpu_before;
    let after = veth_xdp(lab, args.path);
    let prog_after = program_stats(program);
    let prog_runs = prog_after.1.saturating_sub(prog_before.1);
    let prog_ns = prog_after.0.saturating_sub(prog_before.0) as f64 / prog_runs.max(1) as f64;
    let (_, stats) = intercept.stop();
    let received = total();
    let last_at = readers
        .iter()
        .map(|r| r.last_at_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let mut disorder = 0;
    for r in readers {
        wait_until("a peer reader to end", DEADLINE, || {
            if r.done.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("reading".into())
            }
        });
        disorder += r.thread.join().expect("reader thread");
    }
    RunResult {
        offered: report.rate(),
        sent: report.sent,
        veth: VethXdp {
            xdp_drops: after.xdp_drops - before.xdp_drops,
            ring_drops: after.ring_drops - before.ring_drops,
        },
        stats,
        received,
        disorder,
        delivery_secs: last_at as f64 / 1e6,
        daemon_cpu,
        sender_cpu,
        softirq,
        prog_ns,
    }
}

fn stat(stats: &StatsLine, key: &str) -> u64 {
    stats.get(key).copied().unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    tcpcopy_tests::require_root();
    let lab = Lab::with(LabSpec {
        no_assistant: args.path == ReplyPath::Egress,
        ..LabSpec::default()
    });
    let _stats = BpfStats::enable();
    // As in t2_intercept: the lab's replies leave the target like a wire,
    // so the loss accounting can compare what the target sent (read by a
    // tap on its NIC, before any offload) with what intercept reported.
    lab.run(
        Host::Target,
        &[
            "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
        ],
    );
    println!(
        "intercept benchmark: {} reply frames per run, {} sessions over {} peers, ring {}",
        args.frames, args.sessions, args.peers, args.ring_size
    );
    match args.source {
        Source::Veth if args.path == ReplyPath::Egress => println!(
            "path: packet socket (target eth0) -> egress (qdisc, TC program of intercept on the \
             target) -> ring -> intercept -> TCP -> peers (online)\n"
        ),
        Source::Veth => println!(
            "path: packet socket (target eth0) -> veth -> bridge -> veth (assistant eth0, native \
             XDP) -> ring -> intercept -> TCP -> peers (online)\n"
        ),
        Source::TestRun => println!(
            "path: BPF_PROG_TEST_RUN of intercept's XDP program (assistant eth0) \
             -> ring -> intercept -> TCP -> peers (online)\n"
        ),
    }
    println!(
        "{:>8} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>5} {:>7} | {:>5} {:>5} | {:>6}",
        "offered",
        "delivered",
        "loss",
        "sent",
        "lost-path",
        "ring-full",
        "read",
        "slow-drop",
        "received",
        "cpu",
        "ns/rec",
        "gen",
        "sirq",
        "prog"
    );
    println!(
        "{:>8} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>5} {:>7} | {:>5} {:>5} | {:>6}",
        "(fps)",
        "(rec/s)",
        "",
        "(frames)",
        "(pre-XDP)",
        "(XDP)",
        "(daemon)",
        "(TCP)",
        "(peers)",
        "(d.)",
        "(d.)",
        "(cpu)",
        "(cpu)",
        "(ns)"
    );
    let mut summary = Vec::new();
    for rate in &args.rates {
        let rate = match rate.as_str() {
            "max" => None,
            r => Some(
                r.parse::<u64>()
                    .expect("a rate in frames per second, or max"),
            ),
        };
        let r = run_once(&lab, &args, rate);
        let reported = stat(&r.stats, "xdp_reported");
        let ring_full = stat(&r.stats, "xdp_ring_full");
        let ring_read = stat(&r.stats, "ring_records");
        let slow = stat(&r.stats, "dropped_slow");
        let delivered = stat(&r.stats, "delivered");
        // Frames that never reached the XDP program: lost on the veth/bridge
        // path (the generator outran it).
        // Every flood frame matches the target table, so the program's
        // `matched` counts the frames that reached XDP (the veth's own XDP
        // counter also counts the peers' TCP segments to intercept).
        let pre_xdp = r.sent.saturating_sub(stat(&r.stats, "xdp_matched"));
        let loss = 1.0 - r.received as f64 / r.sent as f64;
        let rate_out = r.received as f64 / r.delivery_secs.max(1e-9);
        let cpu = r.daemon_cpu / r.delivery_secs.max(1e-9);
        let ns_per = r.daemon_cpu * 1e9 / (ring_read.max(1) as f64);
        println!(
            "{:>8} {:>9} {:>7.3}% | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>4.0}% {:>7.0} | {:>4.0}% {:>4.0}% | {:>6.0}",
            format!("{:.0}k", r.offered / 1e3),
            format!("{:.0}k", rate_out / 1e3),
            loss * 100.0,
            r.sent,
            pre_xdp,
            ring_full,
            ring_read,
            slow,
            r.received,
            cpu * 100.0,
            ns_per,
            r.sender_cpu * 100.0,
            r.softirq * 100.0,
            r.prog_ns
        );
        let limit = if pre_xdp > r.sent / 1000 {
            "the veth/bridge path before XDP (the generator outran it; see the veth ring drops)"
        } else if ring_full > 0 && cpu > 0.9 {
            "intercept's CPU: it could not read the ring buffer fast enough"
        } else if ring_full > 0 {
            "the ring buffer: it filled while intercept was not running (it was not \
             CPU-bound; the machine was busy): a larger --ring-size absorbs longer gaps"
        } else if slow > 0 {
            "the TCP sockets to the peers (intercept's per-peer output buffers overflowed)"
        } else if cpu > 0.9 {
            "intercept's CPU (saturated, no loss yet)"
        } else if rate.is_some_and(|want| r.offered < want as f64 * 0.95) {
            "the sending side: the generator and the kernel path it drives (veth, bridge, XDP, \
             ring wake-ups) could not offer the asked rate; see gen + sirq"
        } else if rate.is_none() {
            "the sending side (no stage lost frames; the generator and the kernel path it \
             drives are the slowest part; see gen + sirq)"
        } else {
            "none reached: every stage kept up at this rate"
        };
        println!(
            "          limit: {limit}; veth ring drops {}, XDP dropped {} of {} matched, reported {}, \
             delivered {delivered}, out-of-order {}",
            r.veth.ring_drops,
            r.veth.xdp_drops,
            stat(&r.stats, "xdp_matched"),
            reported,
            r.disorder
        );
        assert_eq!(r.disorder, 0, "records reordered within a session");
        let name = rate.map_or("max".to_owned(), |r| r.to_string());
        summary.push(format!(
            "intercept_{:?}_{name}_delivered_per_s {rate_out:.0} records/s",
            args.path
        ));
        summary.push(format!(
            "intercept_{:?}_{name}_loss {:.3} %",
            args.path,
            loss * 100.0
        ));
        summary.push(format!(
            "intercept_{:?}_{name}_program_per_record {:.0} ns",
            args.path, r.prog_ns
        ));
    }
    println!("summary (name value unit):");
    for line in summary {
        println!("{}", line.to_lowercase());
    }
}
