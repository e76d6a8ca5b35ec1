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
//! `TCPCOPY_C` names its binary, built `./configure --offline
//! --pcap-send` (the row is skipped otherwise, with a message): it has no
//! top speed, so it runs at several accelerations of the file's clock
//! (`--c-accel`). The target's own counts of what it answered (the
//! responder's) are shown for every row.
//!
//! Per run: completed sessions per second (the figure rows are compared
//! by: a row that gives sessions up is not faster for it), file frames
//! and client packets per second, completeness (sessions completed /
//! sessions in the file), CPU per client packet of
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
    responder::{Answers, RESPONSE, Responder},
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
    /// The C tcpcopy's accelerations (`-a`) to measure, when `TCPCOPY_C`
    /// names it.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10")]
    c_accel: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
struct Row {
    name: String,
    secs: f64,
    frames_sent: u64,
    completed: Option<u64>,
    /// What the target answered during the row (the responder's counts).
    answered: Answers,
    tcpcopy_cpu: Option<Duration>,
    intercept_cpu: Option<Duration>,
    notes: String,
}

fn answered_since(responder: &Responder, before: Answers) -> Answers {
    let now = responder.answers();
    Answers {
        syn_acks: now.syn_acks - before.syn_acks,
        data: now.data - before.data,
        fin_acks: now.fin_acks - before.fin_acks,
    }
}

fn tcpcopy_row(
    lab: &Lab,
    cap: &Capture,
    intercept: &InterceptProcess,
    responder: &Responder,
    workers: u16,
) -> Row {
    let answers0 = responder.answers();
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
        answered: answered_since(responder, answers0),
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

/// The original C tcpcopy (built `--offline --pcap-send`), replaying the
/// same file through the same intercept with its clock `accel` times the
/// file's (`-a`; it has no top speed: the generated file spans 50 us per
/// session, 10 s for 200,000). It keeps no counts of its own, and once the
/// file is read it waits 120 s before it exits: the row ends when the
/// target's answers stopped moving for [`SETTLED`] after the file was
/// read, and its time is up to the last answer. Completed sessions are
/// those it closed with the client's FIN (its own count at exit), at most
/// as many as requests the target answered (the responder's count, which
/// includes its retransmissions). Its own account goes into the notes.
fn c_tcpcopy_row(
    lab: &Lab,
    cap: &Capture,
    intercept: &InterceptProcess,
    responder: &Responder,
    bin: &str,
    accel: u32,
) -> Row {
    const SETTLED: Duration = Duration::from_secs(3);
    let online_mac = mac_hex(mac_of(lab, Host::Online, "eth1"));
    let target_mac = mac_hex(mac_of(lab, Host::Target, "eth0"));
    let log = lab.dir().join("c-tcpcopy.log");
    let _ = std::fs::remove_file(&log);
    let answers0 = responder.answers();
    let (user0, sys0) = children_cpu_split();
    let (ic0, _) = cpu_ns_and_wakeups(intercept.pid());
    let started = Instant::now();
    let mut child = lab
        .command(Host::Online, bin)
        .args([
            "-x",
            &format!("80@{online_mac}-{TARGET_IP}:80@{target_mac}"),
            "-s",
            "198.18.2.3",
            "-i",
            cap.path.to_str().expect("a UTF-8 path"),
            "-o",
            "eth1",
            "-a",
            &accel.to_string(),
            "-l",
            log.to_str().expect("a UTF-8 path"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start the C tcpcopy {bin}: {e}"));
    let mut last = answers0;
    let mut last_change = started;
    let deadline = started + Duration::from_secs(900);
    let notes = loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(status) = child.try_wait().expect("wait for the C tcpcopy") {
            break format!(
                "exited by itself ({status}): {}",
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        let now = responder.answers();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        let read_all =
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("null from pcap_next"));
        if read_all && last_change.elapsed() >= SETTLED {
            break "stopped after the file was read and the target's answers settled".into();
        }
        if Instant::now() > deadline {
            break "stopped at the 900 s deadline".into();
        }
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let (user1, sys1) = children_cpu_split();
    let (ic1, _) = cpu_ns_and_wakeups(intercept.pid());
    let answered = answered_since(responder, answers0);
    // Its own account at exit: sessions it opened and what it gave up.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let own: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["send syn:", "conns:", "msg send error"]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(|l| l.split("] ").nth(1).unwrap_or(l))
        .collect();
    let notes = format!("{notes}; its log: {}", own.join(" | "));
    // "send syn:N, fin:F,reset:R"
    let fins = text
        .lines()
        .find_map(|l| l.split("send syn:").nth(1))
        .and_then(|rest| rest.split("fin:").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Row {
        name: format!("C tcpcopy -a{accel}"),
        secs: last_change.duration_since(started).as_secs_f64().max(1e-3),
        frames_sent: answered.syn_acks + answered.data + answered.fin_acks,
        completed: Some(fins.min(answered.data)),
        answered,
        tcpcopy_cpu: Some((user1 + sys1).saturating_sub(user0 + sys0)),
        intercept_cpu: Some(Duration::from_nanos(ic1 - ic0)),
        notes: format!("{notes}; frames sent counted as the target's answers"),
    }
}

/// Whether `completed` of `sessions` is the whole file (99.9 %: a run
/// that gave up more than that is not a top speed).
fn is_whole(completed: u64, sessions: u64) -> bool {
    completed * 1000 >= sessions * 999
}

fn mac_hex(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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
    let responder = Responder::start(
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
    let c_tcpcopy = std::env::var("TCPCOPY_C").ok().filter(|p| !p.is_empty());
    match &c_tcpcopy {
        None => println!(
            "original C tcpcopy: not measured (set TCPCOPY_C to its binary, built with \
             ./configure --offline --pcap-send)"
        ),
        Some(p) if !std::path::Path::new(p).is_file() => {
            panic!("TCPCOPY_C={p}: no such file")
        }
        Some(_) => {}
    }
    println!(
        "{:>3}  {:<15} {:>8} {:>15} {:>14} {:>14} {:>12} {:>24} {:>16} {:>13} {:>13}  notes",
        "run",
        "row",
        "seconds",
        "sessions done/s",
        "file frames/s",
        "client pkt/s",
        "frames sent",
        "complete",
        "target answered",
        "tcpcopy/pkt",
        "intercept/pkt"
    );
    let mut by_row: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for run in 1..=args.runs {
        let mut rows = vec![tcpreplay_row(&lab, &cap)];
        for &w in &args.workers {
            rows.push(tcpcopy_row(&lab, &cap, &intercept, &responder, w));
        }
        if let Some(bin) = &c_tcpcopy {
            for &accel in &args.c_accel {
                rows.push(c_tcpcopy_row(
                    &lab, &cap, &intercept, &responder, bin, accel,
                ));
            }
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
            // File rates say how fast a row went through the file, which
            // is no speed when it gave sessions up (tcpreplay keeps none).
            let whole = r.completed.is_none_or(|n| is_whole(n, cap.sessions));
            let file_rate = |n: u64| {
                if whole {
                    format!("{:.0}", n as f64 / r.secs)
                } else {
                    "-".into()
                }
            };
            println!(
                "{run:>3}  {:<15} {:>8.2} {:>15} {:>14} {:>14} {:>12} {:>24} {:>16} {:>13} {:>13}  {}",
                r.name,
                r.secs,
                r.completed
                    .map_or("-".into(), |n| format!("{:.0}", n as f64 / r.secs)),
                file_rate(cap.frames),
                if r.completed.is_some() {
                    file_rate(cap.client_packets)
                } else {
                    "-".into()
                },
                r.frames_sent,
                complete,
                format!("{} requests", r.answered.data),
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
    let done_rate = |rows: &[Row]| {
        median(
            rows.iter()
                .map(|r| r.completed.unwrap_or(0) as f64 / r.secs)
                .collect(),
        )
    };
    let one = by_row.get("tcpcopy -w1").map(|r| done_rate(r));
    for (name, rows) in &by_row {
        let key = if let Some(w) = name.strip_prefix("tcpcopy -w") {
            format!("tcpcopy_w{w}")
        } else if let Some(a) = name.strip_prefix("C tcpcopy -a") {
            format!("c_tcpcopy_a{a}")
        } else {
            continue;
        };
        let of_all = |f: &dyn Fn(&Row) -> f64| median(rows.iter().map(f).collect());
        let complete = of_all(&|r| 100.0 * r.completed.unwrap_or(0) as f64 / cap.sessions as f64);
        let answered = of_all(&|r| r.answered.data as f64);
        let per_packet = |d: Option<Duration>| {
            d.unwrap_or_default().as_nanos() as f64 / cap.client_packets as f64
        };
        let cpu = of_all(&|r| per_packet(r.tcpcopy_cpu));
        let icpu = of_all(&|r| per_packet(r.intercept_cpu));
        // File rates only of runs that completed every session.
        let whole: Vec<Row> = rows
            .iter()
            .filter(|r| r.completed.is_some_and(|n| is_whole(n, cap.sessions)))
            .cloned()
            .collect();
        if !whole.is_empty() {
            let r = rate(&whole);
            println!("capacity_{key}_file_frames_per_s {r:.0} frames/s");
            println!(
                "capacity_{key}_client_packets_per_s {:.0} packets/s",
                r * cap.client_packets as f64 / cap.frames as f64
            );
            println!("capacity_{key}_vs_tcpreplay {:.3} x", r / raw.max(1.0));
        }
        println!("capacity_{key}_complete {complete:.2} %");
        let done = done_rate(rows);
        println!("capacity_{key}_completed_sessions_per_s {done:.0} sessions/s");
        println!("capacity_{key}_target_answered_requests {answered:.0} requests");
        println!("capacity_{key}_cpu_per_client_packet {cpu:.0} ns");
        println!("capacity_{key}_intercept_cpu_per_client_packet {icpu:.0} ns");
        if let Some(one) = one.filter(|_| name != "tcpcopy -w1") {
            // Completed sessions per second: a row that gives sessions up
            // is not faster for it.
            println!("capacity_{key}_vs_tcpcopy_w1 {:.3} x", done / one.max(1.0));
        }
    }
}
