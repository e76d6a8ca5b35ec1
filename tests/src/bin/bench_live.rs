//! `cargo xtask bench live`: tcpcopy live in the lab under rising load.
//!
//! 1. Steps of offered load (wrk with more and more connections to
//!    production nginx): per step, the captured packets per second,
//!    replay completeness (target requests / production requests) and
//!    tcpcopy's CPU time per captured packet (from /proc: user + system).
//! 2. Production latency at a fixed offered load, half of the maximum wrk
//!    reaches with tcpcopy off: an open-loop client (requests sent on a
//!    fixed schedule; latency measured from the scheduled time, so a stall
//!    is not hidden) with tcpcopy off, then on.
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

fn wait_caught_up(target: &Nginx, want: usize) -> usize {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the target to catch up", Duration::from_secs(20), || {
            let n = target.requests().len();
            if n >= want {
                Ok(())
            } else {
                Err(format!("{n}/{want}"))
            }
        })
    }));
    target.requests().len()
}

/// Open-loop HTTP load: `rate` requests/s over `conns` keep-alive
/// connections for `secs`; returns every request's latency.
fn open_loop(lab: &Lab, rate: f64, conns: usize, secs: Duration) -> Vec<Duration> {
    let per_conn = Duration::from_secs_f64(conns as f64 / rate);
    let ns = lab.ns(Host::Client);
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let _in = tcpcopy_tests::netns::NetnsGuard::enter(&ns);
                pin_this_thread(0);
                let mut s = TcpStream::connect(SocketAddr::from((ONLINE_IP, 80))).expect("connect");
                s.set_nodelay(true).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut lat = Vec::new();
                let mut buf = vec![0u8; 4096];
                let mut k = 0u32;
                // Spread the connections' schedules over one interval.
                let first = start + per_conn.mul_f64(c as f64 / conns as f64);
                loop {
                    let at = first + per_conn * k;
                    if at.duration_since(start) >= secs {
                        break;
                    }
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    s.write_all(b"GET /lat HTTP/1.1\r\nHost: bench\r\n\r\n")
                        .unwrap();
                    let mut have = 0;
                    loop {
                        let n = s.read(&mut buf[have..]).expect("response");
                        assert!(n > 0, "server closed");
                        have += n;
                        let text = &buf[..have];
                        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
                            let body = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if have >= end + 4 + body {
                                break;
                            }
                        }
                    }
                    lat.push(Instant::now() - at);
                    k += 1;
                }
                lat
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("load thread"))
        .collect()
}

fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
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
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let tcpcopy = TcpcopyProcess::start(&lab, &tcpcopy_args);
    pin_lab(&lab, Some(&tcpcopy));
    let hz = ticks_per_second();
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
        "{:>6} {:>12} {:>14} {:>14} {:>11} {:>10} {:>10}",
        "conns",
        "offered r/s",
        "captured pkt/s",
        "target/prod",
        "complete %",
        "user ns/p",
        "total ns/p"
    );
    let steps: Vec<u32> = std::env::var("BENCH_LIVE_STEPS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16, 32, 64]);
    for conns in steps {
        let (p0, t0) = (online.requests().len(), target.requests().len());
        let c0 = captured_after(&tcpcopy, stats_lines(&tcpcopy));
        let (u0, s0) = cpu_ticks(tcpcopy.pid());
        let started = Instant::now();
        let rps = wrk(&lab, conns, &format!("/step{conns}"));
        let secs = started.elapsed().as_secs_f64();
        let prod = online.requests().len() - p0;
        let got = wait_caught_up(&target, t0 + prod) - t0;
        let c1 = captured_after(&tcpcopy, stats_lines(&tcpcopy));
        let (u1, s1) = cpu_ticks(tcpcopy.pid());
        let packets = (c1 - c0).max(1) as f64;
        let user = (u1 - u0) as f64 / hz;
        let total = user + (s1 - s0) as f64 / hz;
        println!(
            "{:>6} {:>12.0} {:>14.0} {:>14} {:>11.3} {:>10.0} {:>10.0}",
            conns,
            rps,
            (c1 - c0) as f64 / secs,
            format!("{got}/{prod}"),
            100.0 * got as f64 / prod.max(1) as f64,
            user * 1e9 / packets,
            total * 1e9 / packets
        );
    }
    let (status, fin) = tcpcopy.stop();
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
        let mut lat = open_loop(lab, rate, conns, Duration::from_secs(10));
        let n = lat.len();
        println!(
            "{:>12} {:>10.3} {:>10.3} {:>10.3} {:>10.3}   ({n} requests)",
            label,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.9),
            pct(&mut lat, 0.99),
            pct(&mut lat, 0.999)
        );
    };
    run("off", &lab);
    let tcpcopy = TcpcopyProcess::start(&lab, &tcpcopy_args);
    pin_lab(&lab, Some(&tcpcopy));
    run("on", &lab);
    let (status, _) = tcpcopy.stop();
    run("off again", &lab);
    println!("tcpcopy exit: {status}");
}
