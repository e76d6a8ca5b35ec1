//! `bench-capacity`: how far tcpcopy goes when the target costs almost
//! nothing. Run it through `cargo xtask bench capacity`.
//!
//! A synthetic capture of many short HTTP sessions (200,000 by default, one
//! request each) is replayed offline at top speed against the lab's
//! near-free target (`lab-ebpf`'s `tcp_responder`: XDP on the target's
//! interface answering TCP itself, its answers sent to the assistant where
//! intercept takes them, as a real target's would be), with 1 and 2
//! workers. Side by side in the same run, alternating: `tcpreplay
//! --topspeed` of the same file out of the same interface (the raw-send
//! ceiling, no sessions kept), and the original C tcpcopy when
//! `TCPCOPY_C` names its binary (the row is skipped otherwise).
//!
//! Per run: file frames and client packets per second, completeness
//! (sessions completed / sessions in the file), CPU per client packet of
//! tcpcopy (all its threads, from getrusage of the reaped child) and of
//! intercept (schedstat), and signals of where the limit is: tcpcopy's
//! CPU use over the run (a worker near 100 % of a core: the engine and
//! sender; well below: something else waits), intercept's CPU use and its
//! ring losses, the sender's drops. Medians last, as `name value unit`.

use std::time::{Duration, Instant};

use clap::Parser;
use tcpcopy_tests::{
    benchkit::{Capture, children_cpu_split, median, run_tcpreplay, synthetic_http_capture},
    flood::mac_of,
    intercept::InterceptProcess,
    lab::{Host, Lab, TARGET_IP},
    procstat::cpu_ns_and_wakeups,
    responder::{RESPONSE, Responder},
    tcpcopy::run_to_end,
};

#[derive(Debug, Parser)]
#[command(name = "bench-capacity")]
struct Args {
    /// Sessions in the capture.
    #[arg(long, default_value_t = 200_000)]
    sessions: u32,
    /// Requests per session.
    #[arg(long, default_value_t = 1)]
    requests: usize,
    /// Runs of each row (alternating).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<u16>,
}

#[derive(Clone, Debug, Default)]
struct Row {
    name: String,
    secs: f64,
    frames_sent: u64,
    completed: Option<u64>,
    tcpcopy_cpu: Option<Duration>,
    intercept_cpu: Option<Duration>,
    notes: String,
}

fn tcpcopy_row(lab: &Lab, cap: &Capture, intercept: &InterceptProcess, workers: u16) -> Row {
    let (user0, sys0) = children_cpu_split();
    let (ic0, _) = cpu_ns_and_wakeups(intercept.pid());
    let started = Instant::now();
    let w = workers.to_string();
    let done = run_to_end(
        lab,
        &[
            "-x",
            &format!("80-{TARGET_IP}:80"),
            "-s",
            "198.18.2.3",
            "-i",
            cap.path.to_str().expect("a UTF-8 path"),
            "-o",
            "eth1",
            "--top-speed",
            "--workers",
            &w,
        ],
        Duration::from_secs(900),
    );
    let secs = started.elapsed().as_secs_f64();
    let (user1, sys1) = children_cpu_split();
    let (user, sys) = (user1.saturating_sub(user0), sys1.saturating_sub(sys0));
    let cpu = user + sys;
    let (ic1, _) = cpu_ns_and_wakeups(intercept.pid());
    assert!(
        done.status.success(),
        "tcpcopy failed:\n{}\n{}",
        done.stdout,
        done.log
    );
    let s = done.stats.clone().expect("final stats");
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    Row {
        name: format!("tcpcopy -w{workers}"),
        secs,
        frames_sent: get("frames_out"),
        completed: Some(get("closed_completed") + get("closed_end_of_input")),
        tcpcopy_cpu: Some(cpu),
        intercept_cpu: Some(Duration::from_nanos(ic1 - ic0)),
        notes: format!(
            "tcpcopy {:.0} % of a core (user {:.0} ns/pkt: file, engine; system {:.0} ns/pkt: \
             sending, with the lab's veth, bridge and target XDP run in its context); send \
             drops {}, source drops {}, no session {}, refused memory {}",
            100.0 * cpu.as_secs_f64() / secs,
            user.as_nanos() as f64 / cap.client_packets as f64,
            sys.as_nanos() as f64 / cap.client_packets as f64,
            get("send_dropped"),
            get("source_dropped"),
            get("no_session"),
            get("sessions_refused_memory"),
        ),
    }
}

fn tcpreplay_row(lab: &Lab, cap: &Capture) -> Row {
    let (sent, elapsed) = run_tcpreplay(lab, &cap.path);
    Row {
        name: "tcpreplay".into(),
        secs: elapsed.as_secs_f64(),
        frames_sent: sent,
        notes: "raw send, no sessions".into(),
        ..Row::default()
    }
}

fn main() {
    tcpcopy_tests::require_root();
    let args = Args::parse();
    let lab = Lab::new();
    let assistant = mac_of(&lab, Host::Assistant, "eth0");
    let _responder = Responder::start(
        &lab,
        Host::Target,
        "eth0",
        Some(TARGET_IP),
        80,
        Some(assistant),
    );
    let intercept =
        InterceptProcess::start(&lab, &["--target", "198.18.2.2:80", "--ring-size", "64M"]);
    // Production's answers as long as the responder's, so pacing lets each
    // session's next segment go as soon as the target answered.
    let cap = synthetic_http_capture(
        lab.dir(),
        "capacity.pcap",
        args.sessions,
        args.requests,
        RESPONSE.len(),
    );
    tcpcopy_tests::tcpcopy::tcpcopy_binary();
    println!(
        "capture: {} sessions x {} requests, {} frames ({} client packets), {:.1} MB; target: \
         the XDP responder (answers {} bytes)",
        cap.sessions,
        args.requests,
        cap.frames,
        cap.client_packets,
        cap.bytes as f64 / 1e6,
        RESPONSE.len()
    );
    let c_tcpcopy = std::env::var("TCPCOPY_C").ok();
    if c_tcpcopy.is_none() {
        println!(
            "original C tcpcopy: not measured (set TCPCOPY_C to its binary; none on this machine)"
        );
    }
    println!(
        "{:>3}  {:<12} {:>8} {:>14} {:>14} {:>12} {:>24} {:>13} {:>13}  notes",
        "run",
        "row",
        "seconds",
        "file frames/s",
        "client pkt/s",
        "frames sent",
        "complete",
        "tcpcopy/pkt",
        "intercept/pkt"
    );
    let mut by_row: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for run in 1..=args.runs {
        let mut rows = vec![tcpreplay_row(&lab, &cap)];
        for &w in &args.workers {
            rows.push(tcpcopy_row(&lab, &cap, &intercept, w));
        }
        if run % 2 == 0 {
            rows.reverse();
        }
        for r in rows {
            let per = |d: Option<Duration>| {
                d.map_or("-".into(), |d| {
                    format!("{:.0} ns", d.as_nanos() as f64 / cap.client_packets as f64)
                })
            };
            let complete = r.completed.map_or("-".into(), |n| {
                format!(
                    "{:.2} % ({n}/{})",
                    100.0 * n as f64 / cap.sessions as f64,
                    cap.sessions
                )
            });
            println!(
                "{run:>3}  {:<12} {:>8.2} {:>14.0} {:>14} {:>12} {:>24} {:>13} {:>13}  {}",
                r.name,
                r.secs,
                cap.frames as f64 / r.secs,
                if r.completed.is_some() {
                    format!("{:.0}", cap.client_packets as f64 / r.secs)
                } else {
                    "-".into()
                },
                r.frames_sent,
                complete,
                per(r.tcpcopy_cpu),
                per(r.intercept_cpu),
                r.notes
            );
            by_row.entry(r.name.clone()).or_default().push(r);
        }
    }
    println!();
    println!("medians of {} runs (name value unit):", args.runs);
    let rate = |rows: &[Row]| median(rows.iter().map(|r| cap.frames as f64 / r.secs).collect());
    let raw = by_row.get("tcpreplay").map(|r| rate(r)).unwrap_or(0.0);
    println!("capacity_tcpreplay_file_frames_per_s {raw:.0} frames/s");
    let mut one = None;
    for (name, rows) in &by_row {
        let Some(w) = name.strip_prefix("tcpcopy -w") else {
            continue;
        };
        let r = rate(rows);
        let complete = median(
            rows.iter()
                .map(|r| 100.0 * r.completed.unwrap_or(0) as f64 / cap.sessions as f64)
                .collect(),
        );
        let cpu = median(
            rows.iter()
                .map(|r| {
                    r.tcpcopy_cpu.unwrap_or_default().as_nanos() as f64 / cap.client_packets as f64
                })
                .collect(),
        );
        let icpu = median(
            rows.iter()
                .map(|r| {
                    r.intercept_cpu.unwrap_or_default().as_nanos() as f64
                        / cap.client_packets as f64
                })
                .collect(),
        );
        println!("capacity_tcpcopy_w{w}_file_frames_per_s {r:.0} frames/s");
        println!(
            "capacity_tcpcopy_w{w}_client_packets_per_s {:.0} packets/s",
            r * cap.client_packets as f64 / cap.frames as f64
        );
        println!(
            "capacity_tcpcopy_w{w}_vs_tcpreplay {:.3} x",
            r / raw.max(1.0)
        );
        println!("capacity_tcpcopy_w{w}_complete {complete:.2} %");
        println!("capacity_tcpcopy_w{w}_cpu_per_client_packet {cpu:.0} ns");
        println!("capacity_intercept_w{w}_cpu_per_client_packet {icpu:.0} ns");
        if w == "1" {
            one = Some(r);
        } else if let Some(one) = one {
            println!("capacity_tcpcopy_w{w}_vs_w1 {:.3} x", r / one.max(1.0));
        }
    }
}
