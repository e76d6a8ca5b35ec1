//! `cargo xtask bench compare`: what `--compare` costs, side by side.
//!
//! The lab with wrk's keep-alive load against production nginx, replayed
//! to the target nginx; rounds alternate tcpcopy without and with
//! `--compare http` (a fresh tcpcopy each time, the same intercept), so a
//! noisy machine weighs on both alike. Per round: the requests production
//! served, how many the target got and how many were compared, tcpcopy's
//! and intercept's CPU time (all threads, from schedstat) per request, and
//! from the kernel's BPF statistics the run time of the online host's
//! programs: the XDP capture per client packet and, with `--compare`, the
//! TC program that copies production's answers, per packet it ran on.
//! Medians of the rounds are printed last as `name value unit` lines.

use std::time::{Duration, Instant};

use tcpcopy_tests::{
    benchkit::median,
    intercept::{InterceptProcess, StatsLine},
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    procstat::{BpfStats, cpu_ns_and_wakeups, program_stats},
    servers::{Nginx, start_nginx_with},
    tcpcopy::TcpcopyProcess,
};

/// A JSON answer of about 1 KB (a typical API response), beside `/`'s
/// small text one.
const LOCATIONS: &str = "        location = /api { default_type application/json; return 200 '{\"items\":[{\"id\":1,\"name\":\"alpha\",\"tags\":[\"a\",\"b\"],\"price\":\"9.90\"},{\"id\":2,\"name\":\"beta\",\"tags\":[\"c\"],\"price\":\"19.90\"},{\"id\":3,\"name\":\"gamma\",\"tags\":[],\"price\":\"0.99\"}],\"meta\":{\"page\":1,\"of\":1,\"generated\":\"2026-12-03T00:00:00Z\",\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}'; }\n";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one round measured.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    requests: u64,
    at_target: u64,
    compared: u64,
    equal: u64,
    /// Sessions left: too far behind, or a stream hole.
    behind: u64,
    gaps: u64,
    tcpcopy_ns_per_request: f64,
    intercept_ns_per_request: f64,
    capture_ns_per_packet: f64,
    responses_ns_per_packet: f64,
    responses_runs: u64,
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("  (gave up waiting for {what} after {} s)", limit.as_secs());
    false
}

fn last_stats(tcpcopy: &TcpcopyProcess) -> Option<StatsLine> {
    tcpcopy_tests::intercept::last_stats(&tcpcopy.log_text(), " stats: ")
}

#[allow(clippy::too_many_arguments)]
fn round(
    lab: &Lab,
    online: &Nginx,
    target: &Nginx,
    intercept: &InterceptProcess,
    compare: bool,
    secs: u64,
    conns: u32,
    path: &str,
) -> Round {
    let mut args = vec![
        "-x",
        "80-198.18.2.2:80",
        "-s",
        "198.18.2.3",
        "-i",
        "eth0",
        "-o",
        "eth1",
    ];
    if compare {
        args.extend(["--compare", "http"]);
    }
    let tcpcopy = TcpcopyProcess::start(lab, &args);
    let (p0, t0) = (
        online.requests().len() as u64,
        target.requests().len() as u64,
    );
    let (tc0, _) = cpu_ns_and_wakeups(tcpcopy.pid());
    let (ic0, _) = cpu_ns_and_wakeups(intercept.pid());
    let cap0 = program_stats("capture_inline");
    let resp0 = program_stats("capture_responses");
    lab.run(
        Host::Client,
        &[
            "wrk",
            &format!("-t{}", conns.min(2)),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            &format!("http://{ONLINE_IP}{path}"),
        ],
    );
    let requests = online.requests_settled(lab).len() as u64 - p0;
    wait_for("the target to catch up", Duration::from_secs(60), || {
        target.requests().len() as u64 - t0 >= requests
    });
    if compare {
        // Until every exchange is compared, or the count stops moving
        // (sessions left are counted, not compared).
        let mut last = (0, Instant::now());
        wait_for("the comparisons", Duration::from_secs(60), || {
            let n = last_stats(&tcpcopy).map_or(0, |s| s.get("compared").copied().unwrap_or(0));
            if n != last.0 {
                last = (n, Instant::now());
            }
            n >= requests || last.1.elapsed() > Duration::from_secs(3)
        });
    }
    let (tc1, _) = cpu_ns_and_wakeups(tcpcopy.pid());
    let (ic1, _) = cpu_ns_and_wakeups(intercept.pid());
    let cap1 = program_stats("capture_inline");
    let resp1 = program_stats("capture_responses");
    let (_, fin) = tcpcopy.stop();
    let per = |ns: u64, n: u64| ns as f64 / n.max(1) as f64;
    Round {
        requests,
        at_target: target.requests().len() as u64 - t0,
        compared: fin.get("compared").copied().unwrap_or(0),
        equal: fin.get("compare_equal").copied().unwrap_or(0),
        behind: fin.get("compare_behind").copied().unwrap_or(0),
        gaps: fin.get("compare_gaps").copied().unwrap_or(0),
        tcpcopy_ns_per_request: per(tc1 - tc0, requests),
        intercept_ns_per_request: per(ic1 - ic0, requests),
        capture_ns_per_packet: per(cap1.0 - cap0.0, cap1.1 - cap0.1),
        responses_ns_per_packet: per(
            resp1.0.saturating_sub(resp0.0),
            resp1.1.saturating_sub(resp0.1),
        ),
        responses_runs: resp1.1.saturating_sub(resp0.1),
    }
}

fn main() {
    let rounds: usize = env_or("BENCH_COMPARE_ROUNDS", 3);
    let secs: u64 = env_or("BENCH_COMPARE_SECS", 5);
    let conns: u32 = env_or("BENCH_COMPARE_CONNS", 8);
    let path = std::env::var("BENCH_COMPARE_PATH").unwrap_or_else(|_| "/api".into());
    println!(
        "bench compare: wrk -c{conns} for {secs} s on {path} (a ~1 KB JSON answer), {rounds} rounds \
         of tcpcopy without, then with, --compare http"
    );
    let _stats = BpfStats::enable();
    let lab = Lab::new();
    let online = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], LOCATIONS);
    let target = start_nginx_with(&lab, Host::Target, TARGET_IP, &[80], LOCATIONS);
    let intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    println!(
        "{:>5} {:>8} {:>9} {:>16} {:>17} {:>18} {:>14} {:>15} {:>13} {:>17}",
        "round",
        "compare",
        "requests",
        "at target",
        "compared (equal)",
        "left: behind/hole",
        "tcpcopy ns/req",
        "intercept ns/req",
        "XDP ns/pkt",
        "TC answers ns/pkt"
    );
    let mut off = Vec::new();
    let mut on = Vec::new();
    for r in 0..rounds {
        for compare in [false, true] {
            let m = round(
                &lab, &online, &target, &intercept, compare, secs, conns, &path,
            );
            println!(
                "{:>5} {:>8} {:>9} {:>16} {:>17} {:>18} {:>14.0} {:>15.0} {:>13.0} {:>17}",
                r + 1,
                if compare { "on" } else { "off" },
                m.requests,
                format!(
                    "{} ({:.2} %)",
                    m.at_target,
                    100.0 * m.at_target as f64 / m.requests.max(1) as f64
                ),
                if compare {
                    format!("{} ({})", m.compared, m.equal)
                } else {
                    "-".into()
                },
                if compare {
                    format!("{}/{}", m.behind, m.gaps)
                } else {
                    "-".into()
                },
                m.tcpcopy_ns_per_request,
                m.intercept_ns_per_request,
                m.capture_ns_per_packet,
                if compare {
                    format!(
                        "{:.0} ({} runs)",
                        m.responses_ns_per_packet, m.responses_runs
                    )
                } else {
                    "-".into()
                },
            );
            if compare { on.push(m) } else { off.push(m) }
        }
    }
    let med = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let (t_off, t_on) = (
        med(&off, |m| m.tcpcopy_ns_per_request),
        med(&on, |m| m.tcpcopy_ns_per_request),
    );
    let (i_off, i_on) = (
        med(&off, |m| m.intercept_ns_per_request),
        med(&on, |m| m.intercept_ns_per_request),
    );
    println!();
    println!("medians of {rounds} rounds (name value unit):");
    println!("compare_tcpcopy_cpu_per_request_off {t_off:.0} ns");
    println!("compare_tcpcopy_cpu_per_request_on {t_on:.0} ns");
    println!(
        "compare_tcpcopy_cpu_added_per_request {:.0} ns",
        t_on - t_off
    );
    println!("compare_tcpcopy_cpu_ratio {:.2} x", t_on / t_off.max(1.0));
    println!("compare_intercept_cpu_per_request_off {i_off:.0} ns");
    println!("compare_intercept_cpu_per_request_on {i_on:.0} ns");
    println!(
        "compare_online_xdp_capture_per_packet {:.0} ns",
        med(&on, |m| m.capture_ns_per_packet)
    );
    println!(
        "compare_online_tc_answers_per_packet {:.0} ns",
        med(&on, |m| m.responses_ns_per_packet)
    );
    println!(
        "compare_compared_share {:.2} %",
        med(&on, |m| 100.0 * m.compared as f64
            / m.requests.max(1) as f64)
    );
}
