//! `cargo xtask bench live`: tcpcopy live in the lab under rising load.
//!
//! 1. Steps of offered load (wrk with more and more connections to
//!    production nginx): per step, the captured packets per second,
//!    replay completeness (target requests / production requests) and
//!    tcpcopy's CPU time per captured packet (from /proc: user + system).
//! 2. Production latency at a fixed offered load, half of the maximum wrk
//!    reaches with tcpcopy off: an open-loop client (requests sent on a
//!    fixed schedule; latency measured from the scheduled time, so a stall
//!    is not hidden) with tcpcopy off, on, and with a spinning thread in
//!    its place (CPU 1 busy, no packets).
//!
//! 0. Idle: tcpcopy and intercept running with no traffic for 10 s: the
//!    share of a core each uses, and how often its threads wake.
//!
//! The lab shares two cores among clients, servers, intercept and tcpcopy:
//! absolute rates are the lab's; CPU time per packet is tcpcopy's own.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use tcpcopy_tests::{
    intercept::{InterceptProcess, last_stats},
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    servers::{Nginx, start_nginx},
    tcpcopy::TcpcopyProcess,
    wait::wait_until,
};

const STEP: Duration = Duration::from_secs(5);

/// (user, system) CPU ticks of process `pid`.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is 14th, stime 15th overall.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (get(11), get(12))
}

/// Production (client load, online nginx) on CPU 0; the replay side
/// (tcpcopy, target nginx, intercept) on CPU 1.
fn pin_lab(lab: &Lab, tcpcopy: Option<&TcpcopyProcess>) {
    lab.pin(Host::Online, 0);
    lab.pin(Host::Target, 1);
    lab.pin(Host::Assistant, 1);
    if let Some(t) = tcpcopy {
        tcpcopy_tests::lab::pin_process(&t.pid().to_string(), 1);
    }
}

use tcpcopy_tests::procstat::cpu_ns_and_wakeups as cpu_ns_and_switches;

/// Over `window`: (% of one core, context switches per second) of `pid`.
fn idle_cost(pids: &[(&str, u32)], window: Duration) -> Vec<(String, f64, f64)> {
    let before: Vec<(u64, u64)> = pids.iter().map(|(_, p)| cpu_ns_and_switches(*p)).collect();
    let started = Instant::now();
    std::thread::sleep(window);
    let secs = started.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|((name, pid), (ns0, sw0))| {
            let (ns1, sw1) = cpu_ns_and_switches(*pid);
            (
                (*name).to_owned(),
                100.0 * (ns1 - ns0) as f64 / 1e9 / secs,
                (sw1 - sw0) as f64 / secs,
            )
        })
        .collect()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Statistics lines in tcpcopy's log so far.
fn stats_lines(tcpcopy: &TcpcopyProcess) -> usize {
    tcpcopy
        .log_text()
        .lines()
        .filter(|l| l.contains(" stats: "))
        .count()
}

/// `captured` from the first statistics line written after `after` lines
/// (tcpcopy writes one per second).
fn captured_after(tcpcopy: &TcpcopyProcess, after: usize) -> u64 {
    wait_until("a fresh statistics line", Duration::from_secs(10), || {
        let log = tcpcopy.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(" stats: ")).collect();
        match lines.get(after).and_then(|l| last_stats(l, " stats: ")) {
            Some(s) => Ok(s.get("captured").copied().unwrap_or(0)),
            None => Err(format!("{} lines", lines.len())),
        }
    })
}

fn wrk(lab: &Lab, connections: u32, path: &str) -> f64 {
    let out = lab.run(
        Host::Client,
        &[
            "wrk",
            &format!("-t{}", connections.min(2)),
            &format!("-c{connections}"),
            &format!("-d{}s", STEP.as_secs()),
            &format!("http://{ONLINE_IP}{path}"),
        ],
    );
    out.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to a minute, polling) for the target to have `want`
/// requests; returns how many it has and how long catching up took.
fn wait_caught_up(target: &Nginx, want: usize) -> (usize, Duration) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if target.requests().len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (target.requests().len(), started.elapsed())
}

/// Open-loop HTTP load, one thread (like wrk2): `rate` requests/s spread
/// over `conns` keep-alive connections for `secs`. Each request has a fixed
/// send time; if its connection is still busy it is pipelined behind the
/// earlier ones. Latency counts from the scheduled time to the end of the
/// response, so a stall shows in full (no coordinated omission).
fn open_loop(lab: &Lab, rate: f64, conns: usize, secs: Duration) -> Vec<Duration> {
    use mio::{Events, Interest, Poll, Token, net::TcpStream as MioStream};
    use std::collections::VecDeque;
    let _in = tcpcopy_tests::netns::NetnsGuard::enter(&lab.ns(Host::Client));
    pin_this_thread(0);
    let mut poll = Poll::new().expect("poll");
    let mut streams: Vec<MioStream> = (0..conns)
        .map(|c| {
            let std = TcpStream::connect(SocketAddr::from((ONLINE_IP, 80))).expect("connect");
            std.set_nodelay(true).unwrap();
            std.set_nonblocking(true).unwrap();
            let mut s = MioStream::from_std(std);
            poll.registry()
                .register(&mut s, Token(c), Interest::READABLE)
                .unwrap();
            s
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (secs.as_secs_f64() * rate) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    let mut pending: Vec<VecDeque<Instant>> = vec![VecDeque::new(); conns];
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); conns];
    let mut lat = Vec::with_capacity(total as usize);
    let mut events = Events::with_capacity(64);
    let mut next = 0u64;
    let mut chunk = vec![0u8; 65536];
    while (lat.len() as u64) < total {
        let now = Instant::now();
        // Send everything due.
        while next < total && start + interval.mul_f64(next as f64) <= now {
            let at = start + interval.mul_f64(next as f64);
            let c = (next % conns as u64) as usize;
            streams[c]
                .write_all(b"GET /lat HTTP/1.1\r\nHost: bench\r\n\r\n")
                .expect("send");
            pending[c].push_back(at);
            next += 1;
        }
        let wait = if next < total {
            (start + interval.mul_f64(next as f64)).saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        poll.poll(&mut events, Some(wait)).expect("poll");
        for ev in events.iter() {
            let c = ev.token().0;
            loop {
                match streams[c].read(&mut chunk) {
                    Ok(0) => panic!("server closed connection {c}"),
                    Ok(n) => bufs[c].extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            // Complete responses, in order.
            while let Some(len) = response_len(&bufs[c]) {
                bufs[c].drain(..len);
                let at = pending[c]
                    .pop_front()
                    .expect("a response answers a request");
                lat.push(Instant::now().saturating_duration_since(at));
            }
        }
    }
    lat
}

/// Length of the first complete HTTP response in `buf`, if there is one.
fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= end + 4 + body).then_some(end + 4 + body)
}

fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Per-source interrupt counts of CPU 0 (`/proc/interrupts` rows, plus
/// the NET_RX and NET_TX softirqs), keyed by the row's name.
fn cpu0_interrupts() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for file in ["/proc/interrupts", "/proc/softirqs"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(name), Some(cpu0)) = (f.next(), f.next()) else {
                continue;
            };
            if file.ends_with("softirqs") && !name.starts_with("NET_") {
                continue;
            }
            if let Ok(n) = cpu0.parse::<u64>() {
                out.insert(name.trim_end_matches(':').to_owned(), n);
            }
        }
    }
    out
}

/// The busiest interrupt sources of CPU 0 between two snapshots, per second.
fn interrupt_rates(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    secs: f64,
) -> String {
    let mut rates: Vec<(u64, &str)> = after
        .iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            ((d as f64 / secs) as u64, k.as_str())
        })
        .filter(|(r, _)| *r >= 50)
        .collect();
    rates.sort_unstable_by(|a, b| b.cmp(a));
    rates
        .iter()
        .take(5)
        .map(|(r, k)| format!("{k} {r}/s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A thread spinning on CPU 1 until dropped: the control that loads the
/// replay CPU without any packet work.
struct Burner(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Option<std::thread::JoinHandle<()>>,
);

impl Burner {
    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            pin_this_thread(1);
            let mut x = 0u64;
            while !flag.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Burner(stop, Some(handle))
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let tcpcopy_args = [
        "-x",
        "80-198.18.2.2:80",
        "-s",
        "198.18.2.3",
        "-i",
        "eth0",
        "-o",
        "eth1",
    ];
    println!(
        "bench live: the lab, 2 cores for client, production nginx, target nginx, intercept, tcpcopy"
    );

    // 1. Load steps.
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let tcpcopy = TcpcopyProcess::start(&lab, &tcpcopy_args);
    pin_lab(&lab, Some(&tcpcopy));
    let hz = ticks_per_second();
    // 0. Idle (after a moment to settle).
    std::thread::sleep(Duration::from_secs(2));
    let idle_window = Duration::from_secs(
        std::env::var("BENCH_LIVE_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    println!(
        "idle, no traffic for {} s (CPU: all threads, from /proc/<pid>/task/*/schedstat):",
        idle_window.as_secs()
    );
    for (name, cpu, wakeups) in idle_cost(
        &[("tcpcopy", tcpcopy.pid()), ("intercept", intercept.pid())],
        idle_window,
    ) {
        println!("  {name:>9}: {cpu:.3} % of a core, {wakeups:.1} wake-ups/s");
    }
    println!();
    println!(
        "production (client, online nginx) pinned to CPU 0; replay side (tcpcopy, target, intercept) to CPU 1"
    );
    println!(
        "tcpcopy CPU per captured packet: user = tcpcopy's own work; total adds the kernel, which on veth"
    );
    println!(
        "  includes delivering every sent frame into the target's stack (done by the target host on real NICs)"
    );
    println!();
    println!(
        "{:>6} {:>12} {:>14} {:>14} {:>11} {:>9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "conns",
        "offered r/s",
        "captured pkt/s",
        "target/prod",
        "complete %",
        "catch-up",
        "user ns/p",
        "total ns/p",
        "tc wake/s",
        "ic wake/s",
        "CPU0 irq/s",
        "CPU0 IWI/s"
    );
    let steps: Vec<u32> = std::env::var("BENCH_LIVE_STEPS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16, 32, 64]);
    let mut steps_summary = Vec::new();
    for conns in steps {
        let (p0, t0) = (online.requests().len(), target.requests().len());
        let c0 = captured_after(&tcpcopy, stats_lines(&tcpcopy));
        let (u0, s0) = cpu_ticks(tcpcopy.pid());
        let (_, sw0) = cpu_ns_and_switches(tcpcopy.pid());
        let (_, isw0) = cpu_ns_and_switches(intercept.pid());
        let irq0 = cpu0_interrupts();
        let started = Instant::now();
        let rps = wrk(&lab, conns, &format!("/step{conns}"));
        let secs = started.elapsed().as_secs_f64();
        let (_, sw1) = cpu_ns_and_switches(tcpcopy.pid());
        let (_, isw1) = cpu_ns_and_switches(intercept.pid());
        let irq1 = cpu0_interrupts();
        // Hard interrupts and IPIs of the production CPU (softirqs left
        // out); IWI alone: irq work, which is how a ring wake-up starts.
        let delta = |k: &str| {
            irq1.get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(irq0.get(k).copied().unwrap_or(0))
        };
        let irqs: u64 = irq1
            .keys()
            .filter(|k| !k.starts_with("NET_"))
            .map(|k| delta(k))
            .sum();
        let iwi = delta("IWI");
        let prod = online.requests_settled(&lab).len() - p0;
        let (got, lag) = wait_caught_up(&target, t0 + prod);
        let got = got - t0;
        if got < prod {
            let log = tcpcopy.log_text();
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains(" stats: "))
                .unwrap_or("");
            println!("  incomplete after the wait; tcpcopy's last statistics: {last}");
        }
        let c1 = captured_after(&tcpcopy, stats_lines(&tcpcopy));
        let (u1, s1) = cpu_ticks(tcpcopy.pid());
        let packets = (c1 - c0).max(1) as f64;
        let user = (u1 - u0) as f64 / hz;
        let total = user + (s1 - s0) as f64 / hz;
        steps_summary.push(format!(
            "live_c{conns}_captured_per_s {:.0} packets/s",
            (c1 - c0) as f64 / secs
        ));
        steps_summary.push(format!(
            "live_c{conns}_complete {:.3} %",
            100.0 * got as f64 / prod.max(1) as f64
        ));
        steps_summary.push(format!(
            "live_c{conns}_tcpcopy_total_per_packet {:.0} ns",
            total * 1e9 / packets
        ));
        println!(
            "{:>6} {:>12.0} {:>14.0} {:>14} {:>11.3} {:>8.1}s {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>11.0} {:>11.0}",
            conns,
            rps,
            (c1 - c0) as f64 / secs,
            format!("{got}/{prod}"),
            100.0 * got as f64 / prod.max(1) as f64,
            lag.as_secs_f64(),
            user * 1e9 / packets,
            total * 1e9 / packets,
            (sw1 - sw0) as f64 / secs,
            (isw1 - isw0) as f64 / secs,
            irqs as f64 / secs,
            iwi as f64 / secs
        );
    }
    let (status, fin) = tcpcopy.stop();
    let keys = [
        "pipelined",
        "response_timeouts",
        "rto_retransmits",
        "fast_retransmits",
        "syn_retransmits",
        "replies",
        "replies_unknown",
        "hole_waits",
        "announce_dropped",
    ];
    let picked: Vec<String> = keys
        .iter()
        .map(|k| format!("{k}={}", fin.get(*k).copied().unwrap_or(0)))
        .collect();
    println!("tcpcopy: {}", picked.join(" "));
    let closed: Vec<String> = fin
        .iter()
        .filter(|(k, v)| k.starts_with("closed_") && **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("sessions ended: {}", closed.join(" "));
    println!(
        "tcpcopy: exit {status}; ring_full {} send_dropped {} unknown replies {} closed_completed {}",
        fin.get("xdp_ring_full").copied().unwrap_or(0),
        fin.get("send_dropped").copied().unwrap_or(0),
        fin.get("replies_unknown").copied().unwrap_or(0),
        fin.get("closed_completed").copied().unwrap_or(0)
    );
    let (_, istats) = intercept.stop();
    let mut losses: Vec<String> = istats
        .iter()
        .filter(|(k, v)| {
            **v > 0
                && ["drop", "expired", "ring_full", "unrouted"]
                    .iter()
                    .any(|w| k.contains(w))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    losses.sort();
    println!(
        "intercept losses: {}",
        if losses.is_empty() {
            "none".to_owned()
        } else {
            losses.join(" ")
        }
    );
    drop(lab);

    if std::env::var_os("BENCH_LIVE_NO_LATENCY").is_some() {
        return;
    }
    // 2. Production latency at half the tcpcopy-off maximum, off vs on.
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    pin_lab(&lab, None);
    let max = wrk(&lab, 16, "/max");
    let rate = (max / 2.0).max(100.0);
    let conns = 16;
    println!();
    println!(
        "production latency at a fixed {rate:.0} requests/s (half of {max:.0}, the tcpcopy-off maximum), {conns} connections, 10 s"
    );
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10}",
        "tcpcopy", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms"
    );
    let run = |label: &str, lab: &Lab| {
        let irq0 = cpu0_interrupts();
        let started = Instant::now();
        let mut lat = open_loop(lab, rate, conns, Duration::from_secs(10));
        let irqs = interrupt_rates(&irq0, &cpu0_interrupts(), started.elapsed().as_secs_f64());
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "{:>12} {:>10.3} {:>10.3} {:>10.3} {:>10.3}   CPU 0: {irqs}",
            label,
            p50,
            pct(&mut lat, 0.9),
            p99,
            pct(&mut lat, 0.999)
        );
        (p50, p99)
    };
    // Alternate off, CPU 1 busy, and on, five times each (BENCH_LIVE_ROUNDS),
    // so drift on this shared machine hits all alike; the medians are the
    // result. "CPU 1 busy" (a spinning thread where the replay side runs, no
    // packets) tells how much of the on-cost merely comes from keeping the
    // other virtual CPU busy.
    let rule = std::env::var("BENCH_LIVE_ON_RULE").unwrap_or_else(|_| tcpcopy_args[1].to_owned());
    let mut on_args = tcpcopy_args.to_vec();
    on_args[1] = &rule;
    let mut results: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    let rounds: u32 = std::env::var("BENCH_LIVE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let mut record = |i: usize, (p50, p99): (f64, f64)| {
        results[i].0.push(p50);
        results[i].1.push(p99);
    };
    for round in 1..=rounds {
        record(0, run(&format!("off #{round}"), &lab));
        let burner = Burner::start();
        record(1, run(&format!("busy #{round}"), &lab));
        drop(burner);
        let tcpcopy = TcpcopyProcess::start(&lab, &on_args);
        pin_lab(&lab, Some(&tcpcopy));
        record(2, run(&format!("on #{round}"), &lab));
        let (status, _) = tcpcopy.stop();
        assert!(status.success(), "tcpcopy exit {status}");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [mut off, mut busy, mut on] = results;
    let (op50, op99) = (median(&mut off.0), median(&mut off.1));
    println!("median of {rounds}: p50 off {op50:.3} ms, p99 off {op99:.3} ms");
    let mut summary = vec![
        format!("live_production_p50_off {op50:.3} ms"),
        format!("live_production_p99_off {op99:.3} ms"),
    ];
    for (label, key, r) in [
        ("CPU 1 busy", "busy", &mut busy),
        ("tcpcopy on", "on", &mut on),
    ] {
        let (p50, p99) = (median(&mut r.0), median(&mut r.1));
        println!(
            "  {label}: p50 {p50:.3} ms ({:+.1} %), p99 {p99:.3} ms ({:+.1} %)",
            100.0 * (p50 / op50 - 1.0),
            100.0 * (p99 / op99 - 1.0)
        );
        summary.push(format!("live_production_p50_{key} {p50:.3} ms"));
        summary.push(format!("live_production_p99_{key} {p99:.3} ms"));
    }
    println!("summary (name value unit):");
    for line in steps_summary.iter().chain(&summary) {
        println!("{line}");
    }
}
