//! `bench-offline`: offline replay at top speed against a real target in
//! the lab, side by side with `tcpreplay --topspeed` sending the same file
//! out of the same interface. Run it through `cargo xtask bench offline`.
//!
//! The capture is synthetic (many short HTTP sessions, both directions, as
//! tcpdump on the online host would record them). tcpcopy replays the
//! client side as live sessions through intercept: each request waits for
//! the target's response, so its rate is bounded by the target (nginx on a
//! shared core) as much as by tcpcopy. tcpreplay pushes every frame of the
//! file as fast as the link takes it and keeps no sessions: the raw-send
//! ceiling. Both get through the same file; the figure compared is the
//! file's frames per second (file frames / wall time), with completeness
//! (requests the target logged / requests in the file) for tcpcopy.

use std::time::{Duration, Instant};

use clap::Parser;
use tcpcopy_tests::{
    benchkit::{self, Capture, children_cpu},
    intercept::InterceptProcess,
    lab::{Host, Lab, TARGET_IP},
    servers::start_nginx,
    tcpcopy::run_to_end,
    wait::wait_until,
};

#[derive(Debug, Parser)]
#[command(name = "bench-offline")]
struct Args {
    /// Sessions in the capture.
    #[arg(long, default_value_t = 20_000)]
    sessions: u32,
    /// Requests per session.
    #[arg(long, default_value_t = 3)]
    requests: usize,
    /// Runs of each tool (alternating).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// tcpcopy worker threads.
    #[arg(long, default_value_t = 1)]
    workers: u16,
}

struct Outcome {
    tool: &'static str,
    elapsed: Duration,
    /// Frames the tool put on the wire.
    sent: u64,
    /// tcpcopy: requests the target logged.
    completed_requests: Option<u64>,
    failed_sessions: Option<u64>,
    cpu: Option<Duration>,
}

fn run_tcpreplay(lab: &Lab, cap: &Capture) -> Outcome {
    let (sent, elapsed) = benchkit::run_tcpreplay(lab, &cap.path);
    Outcome {
        tool: "tcpreplay",
        elapsed,
        sent,
        completed_requests: None,
        failed_sessions: None,
        cpu: None,
    }
}

fn run_tcpcopy(
    lab: &Lab,
    cap: &Capture,
    target: &tcpcopy_tests::servers::Nginx,
    args: &Args,
) -> Outcome {
    let before = target.requests().len();
    let cpu_before = children_cpu();
    let started = Instant::now();
    let workers = args.workers.to_string();
    let done = run_to_end(
        lab,
        &[
            "-x",
            &format!("80-{TARGET_IP}:80"),
            "-s",
            "198.18.2.3",
            "-i",
            cap.path.to_str().unwrap(),
            "-o",
            "eth1",
            "--top-speed",
            "--workers",
            &workers,
        ],
        Duration::from_secs(600),
    );
    let elapsed = started.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    assert!(
        done.status.success(),
        "tcpcopy failed:\n{}\n{}",
        done.stdout,
        done.log
    );
    // The target's log catches up (nginx writes it as requests finish).
    let want = cap.requests as usize;
    let got = wait_until(
        "the target's log to settle",
        Duration::from_secs(30),
        || {
            let n = target.requests().len() - before;
            if n >= want {
                Ok(n)
            } else {
                Err(format!("{n} of {want}"))
            }
        },
    );
    let stats = done.stats.clone().expect("final stats");
    Outcome {
        tool: "tcpcopy",
        elapsed,
        sent: stats["frames_out"],
        completed_requests: Some(got as u64),
        failed_sessions: Some(done.summary_number("failed:")),
        cpu: Some(cpu),
    }
}

fn main() {
    tcpcopy_tests::require_root();
    let args = Args::parse();
    let lab = Lab::new();
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let cap = benchkit::synthetic_http_capture(
        lab.dir(),
        "bench.pcap",
        args.sessions,
        args.requests,
        600,
    );
    // Built (if stale) now, not inside the first timed run.
    tcpcopy_tests::tcpcopy::tcpcopy_binary();
    println!(
        "capture: {} sessions, {} requests, {} frames ({} client packets), {:.1} MB",
        args.sessions,
        cap.requests,
        cap.frames,
        cap.client_packets,
        cap.bytes as f64 / 1e6
    );
    println!(
        "{:>3}  {:<9}  {:>8}  {:>13}  {:>14}  {:>13}  {:>22}  {:>8}",
        "run",
        "tool",
        "seconds",
        "file frames/s",
        "client pkts/s",
        "frames sent",
        "completeness",
        "CPU/pkt"
    );
    let mut ratios = Vec::new();
    for run in 1..=args.runs {
        // Alternate which goes first: neither always gets the warm cache.
        let pair = if run % 2 == 1 {
            let a = run_tcpreplay(&lab, &cap);
            let b = run_tcpcopy(&lab, &cap, &target, &args);
            [a, b]
        } else {
            let b = run_tcpcopy(&lab, &cap, &target, &args);
            let a = run_tcpreplay(&lab, &cap);
            [a, b]
        };
        for o in &pair {
            let secs = o.elapsed.as_secs_f64();
            let completeness = match o.completed_requests {
                Some(n) => format!(
                    "{:.2}% ({n}/{}), {} failed",
                    100.0 * n as f64 / cap.requests as f64,
                    cap.requests,
                    o.failed_sessions.unwrap_or(0)
                ),
                None => "n/a (no sessions)".into(),
            };
            let client = if o.tool == "tcpcopy" {
                format!("{:.0}", cap.client_packets as f64 / secs)
            } else {
                "-".into()
            };
            let cpu = o.cpu.map_or("-".into(), |c| {
                format!(
                    "{:.2} µs",
                    c.as_secs_f64() * 1e6 / cap.client_packets as f64
                )
            });
            println!(
                "{run:>3}  {:<9}  {secs:>8.2}  {:>13.0}  {client:>14}  {:>13}  {completeness:>22}  {cpu:>8}",
                o.tool,
                cap.frames as f64 / secs,
                o.sent,
            );
        }
        ratios.push(pair[0].elapsed.as_secs_f64() / pair[1].elapsed.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!("summary (name value unit):");
    println!(
        "offline_tcpcopy_vs_tcpreplay_file_frames_median {:.3} x",
        ratios[ratios.len() / 2]
    );
    println!(
        "tcpcopy / tcpreplay, file frames per second (median of {}): {:.3} (runs: {})",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
