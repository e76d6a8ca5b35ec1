//! `cargo xtask demo`: live mirroring in the lab, with a report.
//!
//! Production (nginx and Redis on the online host) serves real load from
//! the client for about 20 s (wrk and redis-benchmark). tcpcopy on the
//! online host copies it to the same services on the target host, with
//! intercept on the assistant closing the loop (or, with `--no-assistant`,
//! intercept on the target itself, its TC egress program taking the
//! replies: no assistant host, no route for the clients). Then: how much of
//! production's traffic reached the target, how fast tcpcopy captured, and
//! the target's response times next to production's. With `--compare`,
//! the target's nginx answers one URI differently (a planted regression),
//! tcpcopy compares every nginx response with production's and writes
//! its report (to `DEMO_REPORT_DIR`, or a
//! directory in the system's temporary one). Everything runs in network
//! namespaces with addresses from 198.18.0.0/15, and is removed at the end.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tcpcopy_tests::{
    intercept::{InterceptProcess, last_stats},
    lab::{Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::{start_nginx_with, start_redis},
    tcpcopy::TcpcopyProcess,
    wait::wait_until,
};

const LOAD: Duration = Duration::from_secs(20);

/// Production's nginx: `/demo` (wrk's), and a price lookup.
const PRODUCTION: &str = "        location = /demo/price { default_type application/json; return 200 '{\"item\":42,\"price\":\"9.90\",\"currency\":\"EUR\"}'; }\n";
/// The target's: the new build rounds the price (the planted regression).
const PLANTED: &str = "        location = /demo/price { default_type application/json; return 200 '{\"currency\":\"EUR\",\"item\":42,\"price\":\"10\"}'; }\n";

/// Where the demo's daemons serve metrics (loopback of their hosts).
const TCPCOPY_METRICS: &str = "127.0.0.1:9530";
const INTERCEPT_METRICS: &str = "127.0.0.1:9531";
/// The samples the report shows of the scrapes.
const SHOWN_METRICS: &[&str] = &[
    "tcpcopy_build_info",
    "tcpcopy_sessions_syn_total",
    "tcpcopy_closed_completed_total",
    "tcpcopy_requests_total",
    "tcpcopy_xdp_copied_total",
    "tcpcopy_xdp_ring_full_total",
    "tcpcopy_send_dropped_total",
    "tcpcopy_response_time_seconds_count",
    "tcpcopy_response_p99_seconds",
    "intercept_delivered_total",
    "intercept_xdp_reported_total",
    "intercept_dropped_total",
];

/// Samples (lines that are not comments) in a scrape.
fn samples(scrape: &str) -> usize {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let no_assistant = args.iter().any(|a| a == "--no-assistant");
    let compare = args.iter().any(|a| a == "--compare");
    let report_dir = std::env::var_os("DEMO_REPORT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tcpcopy-demo-compare-report"));
    let seconds = args
        .iter()
        .find_map(|s| s.parse().ok())
        .map_or(LOAD, Duration::from_secs);
    println!(
        "tcpcopy demo: building the lab (client, online, LAN, target{}; 198.18.0.0/15)",
        if no_assistant {
            ", no assistant"
        } else {
            ", assistant"
        }
    );
    let lab = Lab::with(LabSpec {
        no_assistant,
        ..LabSpec::default()
    });
    let online_web = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], PRODUCTION);
    let target_web = start_nginx_with(
        &lab,
        Host::Target,
        TARGET_IP,
        &[80],
        if compare { PLANTED } else { PRODUCTION },
    );
    let online_kv = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let target_kv = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let targets = ["--target", "198.18.2.2:80,198.18.2.2:6379"];
    // Both daemons serve Prometheus metrics on loopback of their host.
    let mut intercept_argv = targets.to_vec();
    intercept_argv.extend(["--metrics", INTERCEPT_METRICS]);
    let (intercept, intercept_ip, intercept_host) = if no_assistant {
        intercept_argv.extend(["--clients", "198.18.1.0/24"]);
        (
            InterceptProcess::start_egress(&lab, &intercept_argv),
            "198.18.2.2",
            Host::Target,
        )
    } else {
        (
            InterceptProcess::start(&lab, &intercept_argv),
            "198.18.2.3",
            Host::Assistant,
        )
    };
    let report_arg = report_dir.to_string_lossy().into_owned();
    let mut tcpcopy_args = vec![
        "-x",
        "80-198.18.2.2:80,6379-198.18.2.2:6379",
        "-s",
        intercept_ip,
        "-i",
        "eth0",
        "-o",
        "eth1",
        "--metrics",
        TCPCOPY_METRICS,
    ];
    if compare {
        tcpcopy_args.extend(["--compare", "80=http", "--compare-report", &report_arg]);
    }
    let tcpcopy = TcpcopyProcess::start(&lab, &tcpcopy_args);
    println!("production: nginx and redis on 198.18.1.1; target: the same on 198.18.2.2");
    println!(
        "tcpcopy on the online host, intercept on {intercept_ip}{}; driving load for {} s ...",
        if no_assistant {
            " (the target itself: TC egress)"
        } else {
            " (the assistant: XDP)"
        },
        seconds.as_secs()
    );

    let started = Instant::now();
    let wrk = lab
        .command(Host::Client, "wrk")
        .args([
            "-t2",
            "-c16",
            &format!("-d{}s", seconds.as_secs()),
            "--latency",
        ])
        .arg(format!("http://{ONLINE_IP}/demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wrk");
    // The planted URI, asked now and then (its answer differs at the target).
    let planted = compare.then(|| {
        lab.command(Host::Client, "bash")
            .arg("-c")
            .arg(format!(
                "end=$((SECONDS + {})); while [ $SECONDS -lt $end ]; do \
                 curl -s -o /dev/null http://{ONLINE_IP}/demo/price; sleep 0.2; done",
                seconds.as_secs().saturating_sub(2)
            ))
            .spawn()
            .expect("start the planted requests")
    });
    let mut kv_runs = 0;
    let mut kv_latency = Vec::new();
    while started.elapsed() + Duration::from_secs(3) < seconds {
        let out = lab.run(
            Host::Client,
            &[
                "redis-benchmark",
                "-h",
                "198.18.1.1",
                "-t",
                "set,incr",
                "-n",
                "20000",
                "-r",
                "1000000",
                "-c",
                "10",
                "-d",
                "32",
                "--csv",
            ],
        );
        kv_latency.extend(parse_redis_p50_p99(&out));
        kv_runs += 1;
    }
    let wrk = wrk.wait_with_output().expect("wrk finished");
    if let Some(mut p) = planted {
        let _ = p.wait();
    }
    let wrk_text = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let elapsed = started.elapsed();

    println!("load done; waiting for the target to catch up ...");
    let want_http = online_web.requests_settled(&lab).len();
    let want_keys = online_kv.dbsize(&lab, Host::Online);
    let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the target to catch up", Duration::from_secs(60), || {
            let (h, k) = (
                target_web.requests().len(),
                target_kv.dbsize(&lab, Host::Target),
            );
            if h >= want_http && k >= want_keys {
                Ok(())
            } else {
                Err(format!("{h}/{want_http} requests, {k}/{want_keys} keys"))
            }
        })
    }))
    .is_ok();
    let got_http = target_web.requests().len();
    let got_keys = target_kv.dbsize(&lab, Host::Target);
    let same_values = online_kv.dump(&lab, Host::Online) == target_kv.dump(&lab, Host::Target);
    let peak = tcpcopy
        .log_text()
        .lines()
        .filter_map(|l| last_stats(l, " stats: "))
        .filter_map(|s| s.get("captured_per_s").copied())
        .max()
        .unwrap_or(0);
    // What Prometheus would scrape now, from each daemon's host.
    let scrape =
        |host: Host, at: &str| lab.run(host, &["curl", "-s", &format!("http://{at}/metrics")]);
    let tcpcopy_scrape = scrape(Host::Online, TCPCOPY_METRICS);
    let intercept_scrape = scrape(intercept_host, INTERCEPT_METRICS);
    let log_path = tcpcopy.log.clone();
    let (status, fin) = tcpcopy.stop();
    let (_, intercept_fin) = intercept.stop();
    let comparison = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.split_once("comparison at exit: ")
                .map(|(_, c)| c.to_owned())
        });

    let pct = |got: u64, want: u64| {
        if want == 0 {
            100.0
        } else {
            100.0 * got as f64 / want as f64
        }
    };
    let (web_p50, web_p99) = parse_wrk_p50_p99(&wrk_text);
    // Mean of the runs' medians; the worst of their p99s.
    let kv_p50 = kv_latency.iter().map(|l| l.0).sum::<f64>() / kv_latency.len().max(1) as f64;
    let kv_p99 = kv_latency.iter().map(|l| l.1).fold(0.0f64, f64::max);
    let captured = fin.get("captured").copied().unwrap_or(0);
    let pps = captured as f64 / elapsed.as_secs_f64();
    println!();
    println!("==================== tcpcopy demo report ====================");
    println!("{:<34}{:>14}{:>16}", "", "production", "target");
    println!(
        "{:<34}{:>14}{:>16}   {:.2} % complete",
        "HTTP requests (nginx access log)",
        want_http,
        got_http,
        pct(got_http as u64, want_http as u64)
    );
    println!(
        "{:<34}{:>14}{:>16}   {:.2} % complete, values {}",
        "Redis keys (DBSIZE)",
        want_keys,
        got_keys,
        pct(got_keys, want_keys),
        if same_values {
            "identical"
        } else {
            "DIFFERENT"
        }
    );
    println!(
        "{:<34}{:>14}{:>16}",
        "response time p50 (ms) web / kv",
        format!("{web_p50:.2} / {kv_p50:.2}"),
        format!(
            "{:.2}",
            fin.get("response_p50_us").copied().unwrap_or(0) as f64 / 1000.0
        )
    );
    println!(
        "{:<34}{:>14}{:>16}",
        "response time p99 (ms) web / kv",
        format!("{web_p99:.2} / {kv_p99:.2}"),
        format!(
            "{:.2}",
            fin.get("response_p99_us").copied().unwrap_or(0) as f64 / 1000.0
        )
    );
    println!("  production: wrk / redis-benchmark at the client; target: request sent by tcpcopy");
    println!("  to first response byte reported by intercept (includes its <= 2 ms batching)");
    println!(
        "captured packets: {captured} in {:.1} s = {pps:.0} packets/s; sessions {}; requests replayed {}",
        elapsed.as_secs_f64(),
        fin.get("sessions_syn").copied().unwrap_or(0)
            + fin.get("sessions_faked").copied().unwrap_or(0),
        fin.get("requests").copied().unwrap_or(0)
    );
    println!(
        "drops: capture ring full {}, send {}, unknown replies {}; redis-benchmark runs {kv_runs}",
        fin.get("xdp_ring_full").copied().unwrap_or(0),
        fin.get("send_dropped").copied().unwrap_or(0),
        fin.get("replies_unknown").copied().unwrap_or(0)
    );
    println!("peak capture rate (1 s statistics): {peak} packets/s; tcpcopy exit: {status}");
    if compare {
        println!(
            "comparison (one URI, GET /demo/price, answers differently at the target): {}",
            comparison.as_deref().unwrap_or("none logged")
        );
        println!(
            "  compared {}, equal {}, different {} (status {}, header {}, body {}); report: {}",
            fin.get("compared").copied().unwrap_or(0),
            fin.get("compare_equal").copied().unwrap_or(0),
            fin.get("compare_different").copied().unwrap_or(0),
            fin.get("compare_status").copied().unwrap_or(0),
            fin.get("compare_header").copied().unwrap_or(0),
            fin.get("compare_body").copied().unwrap_or(0),
            report_dir.join("report.html").display()
        );
        let get = |s: &tcpcopy_tests::intercept::StatsLine, k: &str| s.get(k).copied().unwrap_or(0);
        println!(
            "  not compared: {} sessions with a stream hole; production's answers lost to a full \
             ring {}; intercept records lost to a full ring {}",
            get(&fin, "compare_gaps"),
            get(&fin, "xdp_response_ring_full"),
            get(&intercept_fin, "xdp_ring_full"),
        );
    }
    println!(
        "metrics (--metrics {TCPCOPY_METRICS} / {INTERCEPT_METRICS}; {} and {} samples), an excerpt:",
        samples(&tcpcopy_scrape),
        samples(&intercept_scrape)
    );
    for line in tcpcopy_scrape.lines().chain(intercept_scrape.lines()) {
        if SHOWN_METRICS.iter().any(|m| line.starts_with(m)) {
            println!("  {line}");
        }
    }
    println!("=============================================================");
    drop(lab);
    println!("lab removed");
    if !caught_up || !status.success() {
        std::process::exit(1);
    }
}

/// wrk --latency prints "     50%  512.00us" and "     99%    2.10ms".
fn parse_wrk_p50_p99(text: &str) -> (f64, f64) {
    let get = |pct: &str| {
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(pct)).then(|| w.next()).flatten()
            })
            .map_or(f64::NAN, to_ms)
    };
    (get("50%"), get("99%"))
}

fn to_ms(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

/// redis-benchmark --csv: "test","rps","avg_latency_ms","min","p50","p95","p99","max".
fn parse_redis_p50_p99(csv: &str) -> Vec<(f64, f64)> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(|s| s.trim_matches('"')).collect();
            Some((f.get(4)?.parse().ok()?, f.get(6)?.parse().ok()?))
        })
        .collect()
}
