//! T2: `--compare` live in the lab. Real clients talk to production while
//! tcpcopy replays them to a target that answers differently on purpose;
//! production's answers are captured on the online host (inline: a TC
//! program at eth0's egress; mirror: from a port that mirrors both
//! directions), the target's come from intercept as reply payloads. The
//! comparison must find exactly the planted differences. (Offline
//! `--compare`, with the report page rendered in Chromium, is in
//! `t2_offline`.)

use tcpcopy_tests::{
    intercept::{InterceptProcess, StatsLine},
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    servers::{
        COMPARE_PRODUCTION, COMPARE_TARGET, compare_http_exchanges, start_nginx_with, start_redis,
    },
    tcpcopy::TcpcopyProcess,
};

fn args(port: u16, input: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-x",
        &format!("{port}-{TARGET_IP}:{port}"),
        "-s",
        "198.18.2.3",
        "-i",
        input,
        "-o",
        "eth1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start(lab: &Lab, port: u16, input: &str, extra: &[&str]) -> TcpcopyProcess {
    let a = args(port, input, extra);
    TcpcopyProcess::start(lab, &a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn http_exchanges(lab: &Lab) {
    compare_http_exchanges(lab, &format!("http://{ONLINE_IP}"));
}

/// The planted differences, exactly: 10 compared, 4 equal (the same URI
/// and the reordered JSON object, twice each), 2 each of status, header
/// and body.
fn assert_planted_http_differences(stats: &StatsLine, log: &str) {
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(
        (
            got("compared"),
            got("compare_equal"),
            got("compare_different")
        ),
        (10, 4, 6),
        "{stats:?}\n{log}"
    );
    assert_eq!(
        (
            got("compare_status"),
            got("compare_header"),
            got("compare_body")
        ),
        (2, 2, 2),
        "{stats:?}\n{log}"
    );
    assert_eq!(
        (got("compare_unparsed"), got("compare_gaps")),
        (0, 0),
        "{stats:?}\n{log}"
    );
    assert_eq!(got("xdp_response_ring_full"), 0, "{stats:?}");
}

#[test]
fn live_compare_finds_exactly_the_planted_differences_with_two_workers() {
    let lab = Lab::new();
    let online = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], COMPARE_PRODUCTION);
    let _target = start_nginx_with(&lab, Host::Target, TARGET_IP, &[80], COMPARE_TARGET);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let report = lab.dir().join("live-report");
    let report_arg = report.to_string_lossy().into_owned();
    let mut tcpcopy = start(
        &lab,
        80,
        "eth0",
        &[
            "--compare",
            "http",
            "--workers",
            "2",
            "--compare-report",
            &report_arg,
        ],
    );
    http_exchanges(&lab);
    assert_eq!(online.requests().len(), 10);
    tcpcopy.wait_stats("ten exchanges compared", |s| s["compared"] >= 10);
    let tcpcopy_log = tcpcopy.log.clone();
    let log = tcpcopy.log_text();
    let (status, stats) = tcpcopy.stop();
    assert!(status.success(), "{log}");
    assert_planted_http_differences(&stats, &log);
    // Production's answers came from the egress program: the five
    // answers of each connection, and their handshakes and closes.
    assert!(stats["xdp_responses"] >= 10, "{stats:?}");
    assert!(stats["server_segments"] >= 10, "{stats:?}");
    // The differences file has the six, wherever each worker found them.
    let lines = std::fs::read_to_string(report.join("differences.jsonl")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    for kind in ["status", "header", "body"] {
        let n = lines
            .iter()
            .filter(|l| l.contains(&format!(r#""kinds":["{kind}"]"#)))
            .count();
        assert_eq!(n, 2, "{kind}: {lines:#?}");
    }
    // Production's response times come from the capture, beside the
    // target's; both are in the exit line and the page.
    let line = log
        .lines()
        .chain(
            std::fs::read_to_string(&tcpcopy_log)
                .unwrap_or_default()
                .lines(),
        )
        .find(|l| l.contains("comparison at exit"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no comparison line at exit:\n{log}"));
    println!("{line}");
    assert!(stats.contains_key("production_p50_us"), "{stats:?}");
    let data = tcpcopy_tests::report::page_data(&report);
    assert_eq!(data["counts"]["compared"], 10, "the page has the totals");
    assert!(
        data["production_latency_us"]
            .as_array()
            .is_some_and(|b| !b.is_empty()),
        "production timed on the page: {data}"
    );
    // Counts per endpoint (method and path) and production status, from
    // the requests the clients sent, whichever worker had them.
    for (path, want) in [
        ("same", [2, 2, 0, 0]),
        ("json", [2, 2, 0, 0]),
        ("status", [2, 0, 2, 0]),
        ("body", [2, 0, 2, 0]),
        ("header", [2, 0, 2, 0]),
    ] {
        let endpoint = format!("GET /cmp/{path}");
        assert_eq!(
            tcpcopy_tests::report::endpoint_row(&data, &endpoint, 200),
            Some(want),
            "{endpoint}: {}",
            data["endpoints"]
        );
    }
    // The egress program went with the process.
    let filters = lab.run(Host::Online, &["bpftool", "net", "show", "dev", "eth0"]);
    assert!(
        !filters.contains("capture_responses") && !filters.contains("capture_inline"),
        "{filters}"
    );
}

#[test]
fn live_compare_bytes_finds_the_one_redis_key_the_target_holds_differently() {
    let lab = Lab::new();
    let _online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let _target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    tcpcopy_tests::servers::redis_keys_with_one_planted_difference(&lab);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let mut tcpcopy = start(&lab, 6379, "eth0", &["--compare", "bytes"]);
    // Bytes mode ends an exchange at the client's next request: the
    // capture must hand production's answer over before it.
    tcpcopy_tests::servers::redis_get_exchanges(&lab);
    tcpcopy.wait_stats("ten exchanges compared", |s| s["compared"] >= 10);
    let log = tcpcopy.log_text();
    let (status, stats) = tcpcopy.stop();
    assert!(status.success(), "{log}");
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(
        (
            got("compared"),
            got("compare_equal"),
            got("compare_different"),
            got("compare_body")
        ),
        (10, 8, 2, 2),
        "GET k3, twice: {stats:?}\n{log}"
    );
    assert!(log.contains("body differs from byte"), "{log}");
}

#[test]
fn mirror_compare_takes_productions_answers_from_a_two_way_mirror() {
    let lab = Lab::new();
    let mirror = lab.add_mirror_port_both_ways();
    let online = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], COMPARE_PRODUCTION);
    let _target = start_nginx_with(&lab, Host::Target, TARGET_IP, &[80], COMPARE_TARGET);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let mut tcpcopy = start(
        &lab,
        80,
        mirror,
        &["--capture", "mirror", "--compare", "http"],
    );
    http_exchanges(&lab);
    assert_eq!(online.requests().len(), 10);
    tcpcopy.wait_stats("ten exchanges compared", |s| s["compared"] >= 10);
    let log = tcpcopy.log_text();
    let (status, stats) = tcpcopy.stop();
    assert!(status.success(), "{log}");
    assert_planted_http_differences(&stats, &log);
    assert!(stats["xdp_responses"] >= 10, "{stats:?}");
    assert_eq!(stats["xdp_redirect_failed"], 0, "{stats:?}");
}

/// A URI whose answer carries a per-request id: different at every copy of
/// any build, so noise, not a regression.
const NOISY: &str =
    "        location = /cmp/noisy { add_header X-Request-Id $request_id; return 200 \"n\\n\"; }\n";

#[test]
fn a_baseline_tells_productions_own_noise_from_the_targets_regressions() {
    let lab = Lab::new();
    let production = format!("{COMPARE_PRODUCTION}{NOISY}");
    let candidate = format!("{COMPARE_TARGET}{NOISY}");
    let online = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], &production);
    let _target = start_nginx_with(&lab, Host::Target, TARGET_IP, &[80], &candidate);
    // The baseline: production's build, on the target host's port 8080.
    let baseline = start_nginx_with(&lab, Host::Target, TARGET_IP, &[8080], &production);
    let _intercept = InterceptProcess::start(
        &lab,
        &["--target", "198.18.2.2:80", "--target", "198.18.2.2:8080"],
    );
    let report = lab.dir().join("baseline-report");
    let report_arg = report.to_string_lossy().into_owned();
    let mut tcpcopy = start(
        &lab,
        80,
        "eth0",
        &[
            "--compare",
            "http",
            "--compare-baseline",
            "198.18.2.2:8080",
            "--compare-report",
            &report_arg,
        ],
    );
    http_exchanges(&lab);
    // And the noisy URI, alone and after an equal one on one connection.
    let noisy = format!("http://{ONLINE_IP}/cmp/noisy");
    let same = format!("http://{ONLINE_IP}/cmp/same");
    lab.run(Host::Client, &["curl", "-s", "-o", "/dev/null", &noisy]);
    lab.run(
        Host::Client,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            &same,
            "-o",
            "/dev/null",
            &noisy,
        ],
    );
    assert_eq!(online.requests().len(), 13);
    tcpcopy.wait_stats("thirteen exchanges compared", |s| s["compared"] >= 13);
    let log = tcpcopy.log_text();
    let (status, stats) = tcpcopy.stop();
    assert!(status.success(), "{log}");
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    // The planted six are regressions (the baseline answers like
    // production there); the two noisy answers are noise.
    assert_eq!(
        (
            got("compared"),
            got("compare_equal"),
            got("compare_different"),
            got("compare_noise")
        ),
        (13, 5, 6, 2),
        "{stats:?}\n{log}"
    );
    assert_eq!(
        (
            got("compare_status"),
            got("compare_header"),
            got("compare_body"),
            got("compare_unconfirmed")
        ),
        (2, 2, 2, 0),
        "{stats:?}\n{log}"
    );
    assert_eq!(got("baseline_sessions"), 8, "{stats:?}");
    // The baseline got every request too.
    assert_eq!(baseline.requests().len(), 13);
    let lines = std::fs::read_to_string(report.join("differences.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6, "noise is not listed:\n{lines}");
    assert!(!lines.contains("x-request-id"), "{lines}");
    let data = tcpcopy_tests::report::page_data(&report);
    assert_eq!(
        tcpcopy_tests::report::endpoint_row(&data, "GET /cmp/noisy", 200),
        Some([2, 0, 0, 2]),
        "{}",
        data["endpoints"]
    );
    assert_eq!(data["counts"]["noise"], 2);
}

#[test]
fn under_keep_alive_load_every_exchange_is_compared() {
    let lab = Lab::new();
    let online = tcpcopy_tests::servers::start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = tcpcopy_tests::servers::start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    // A ring four times the default: wrk at full speed, two nginx,
    // intercept and tcpcopy share 2 cores, and a stall of the replay under
    // that would overflow the default ring now and then (counted
    // xdp_ring_full, and the sessions it cut end as capture holes). What is
    // tested here is the comparison under reordering and pipelining;
    // capture capacity is `bench live`'s.
    let mut tcpcopy = start(
        &lab,
        80,
        "eth0",
        &["--compare", "http", "--workers", "2", "--ring-size", "64M"],
    );
    // Keep-alive connections, many requests each: the replay falls behind
    // production and pipelines; production's answers wait for the
    // target's, and segments come reordered across CPUs.
    lab.run(
        Host::Client,
        &[
            "wrk",
            "-t2",
            "-c8",
            "-d2s",
            &format!("http://{ONLINE_IP}/load"),
        ],
    );
    let want = online.requests_settled(&lab).len() as u64;
    assert!(want > 200, "wrk made {want} requests");
    tcpcopy.wait_stats(
        &format!(
            "every exchange compared ({want} at production, {} at the target)",
            target.requests().len()
        ),
        |s| s["compared"] >= want,
    );
    let (status, stats) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(target.requests().len() as u64, want);
    assert_eq!(stats["xdp_ring_full"], 0, "{stats:?}");
    assert_eq!(
        (
            stats["compared"],
            stats["compare_equal"],
            stats["compare_gaps"],
            stats["compare_behind"]
        ),
        (want, want, 0, 0),
        "{stats:?}"
    );
    println!(
        "{want} exchanges compared under load; {} pipelined",
        stats["pipelined"]
    );
}

#[test]
fn a_mirror_of_the_clients_side_only_is_named_within_seconds() {
    let lab = Lab::new();
    let mirror = lab.add_mirror_port();
    let _online = start_nginx_with(&lab, Host::Online, ONLINE_IP, &[80], COMPARE_PRODUCTION);
    let _target = start_nginx_with(&lab, Host::Target, TARGET_IP, &[80], COMPARE_TARGET);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let mut tcpcopy = start(
        &lab,
        80,
        mirror,
        &["--capture", "mirror", "--compare", "http"],
    );
    let started = std::time::Instant::now();
    lab.run(
        Host::Client,
        &[
            "wrk",
            "-t1",
            "-c2",
            "-d5s",
            &format!("http://{ONLINE_IP}/cmp/same"),
        ],
    );
    let line = tcpcopy.wait_log("not one answer of production was captured");
    println!("{line} (after {:.1} s)", started.elapsed().as_secs_f64());
    assert!(line.contains("mirror"), "{line}");
    let (status, stats) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(
        (stats["compared"], stats["xdp_responses"]),
        (0, 0),
        "{stats:?}"
    );
}
