//! T2: IPv6 end to end in the lab with IPv6 on every link
//! ([`LabSpec::ipv6`]: the client side in 2001:db8:1::/64, the LAN in
//! 2001:db8:2::/64, the target routing the client range to the
//! assistant): real nginx and Redis over IPv6 replayed live, both families
//! at once, and an IPv6 recording replayed offline. The control connection
//! to intercept is IPv4 in most (the protocol's IPv6 extension carries the
//! sessions), IPv6 in the Redis one (an IPv6-only network).

use std::time::Duration;

use tcpcopy_tests::{
    capture::Tcpdump,
    intercept::{InterceptProcess, intercept_binary},
    lab::{ASSISTANT6_IP, Host, Lab, LabSpec, ONLINE_IP, ONLINE6_IP, TARGET_IP, TARGET6_IP},
    servers::{Nginx, redis_benchmark, start_nginx, start_redis},
    tcpcopy::{TcpcopyProcess, run_to_end},
    wait::{DEADLINE, wait_until},
};

fn lab() -> Lab {
    Lab::with(LabSpec {
        ipv6: true,
        ..LabSpec::default()
    })
}

/// tcpcopy on the online host with rules `rules`, plus `extra`.
fn start_tcpcopy(lab: &Lab, rules: &str, extra: &[&str]) -> TcpcopyProcess {
    start_tcpcopy_via(lab, "198.18.2.3", rules, extra)
}

/// As [`start_tcpcopy`], with intercept at `intercept` (`-s`).
fn start_tcpcopy_via(lab: &Lab, intercept: &str, rules: &str, extra: &[&str]) -> TcpcopyProcess {
    let mut args = vec!["-x", rules, "-s", intercept, "-i", "eth0", "-o", "eth1"];
    args.extend_from_slice(extra);
    TcpcopyProcess::start(lab, &args)
}

/// Waits until `target` logged at least `n` requests; returns them.
fn target_requests(target: &Nginx, n: usize) -> Vec<String> {
    wait_until(&format!("{n} requests at the target"), DEADLINE, || {
        let t = target.requests();
        if t.len() >= n {
            Ok(t)
        } else {
            Err(format!("{} of {n}", t.len()))
        }
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `n` requests, one connection each, from the client to `host` (an IPv6
/// address in brackets, or IPv4), under `path`.
fn curls(lab: &Lab, host: &str, path: &str, n: usize) {
    for i in 0..n {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-gsf",
                "-o",
                "/dev/null",
                &format!("http://{host}/{path}/{i}?q={}", i * 7),
            ],
        );
    }
}

#[test]
fn nginx_over_ipv6_is_replayed_through_intercept() {
    let lab = lab();
    let online = start_nginx(&lab, Host::Online, ONLINE6_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET6_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "[2001:db8:2::2]:80"]);
    let mut tcpcopy = start_tcpcopy(&lab, "80-[2001:db8:2::2]:80", &[]);
    const N: usize = 20;
    curls(&lab, "[2001:db8:1::1]", "v6", N);
    let got = target_requests(&target, N);
    assert_eq!(
        sorted(got),
        sorted(online.requests()),
        "the target saw exactly production's requests"
    );
    let stats = tcpcopy.wait_stats("sessions completed", |s| s["closed_completed"] >= N as u64);
    assert_eq!(stats["sessions_syn"], N as u64, "{stats:?}");
    assert!(stats["xdp_matched6"] > 0, "{stats:?}");
    assert!(stats["link_records6"] > 0, "replies came back: {stats:?}");
    assert_eq!(stats["announce6_unsupported"], 0, "{stats:?}");
    let (status, fin) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit: {status}");
    assert_eq!(fin["send_dropped"], 0, "{fin:?}");
    assert_eq!(fin["replies_unknown"], 0, "{fin:?}");
}

#[test]
fn redis_over_ipv6_leaves_the_same_keys_and_values_on_the_target() {
    let lab = lab();
    let online = start_redis(&lab, Host::Online, ONLINE6_IP, 6379);
    let target = start_redis(&lab, Host::Target, TARGET6_IP, 6379);
    // IPv6 all the way: intercept listens on its IPv6 address only.
    let _intercept = InterceptProcess::start_bound(
        &lab,
        intercept_binary(),
        ASSISTANT6_IP.into(),
        &["--target", "[2001:db8:2::2]:6379"],
    );
    let tcpcopy = start_tcpcopy_via(&lab, "[2001:db8:2::3]", "6379-[2001:db8:2::2]:6379", &[]);
    redis_benchmark(&lab, "2001:db8:1::1");
    target.assert_same_keys_as(&lab, Host::Target, &online, Host::Online, 1000);
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn both_families_are_replayed_at_once_with_two_workers() {
    let lab = lab();
    let online4 = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let online6 = start_nginx(&lab, Host::Online, ONLINE6_IP, &[80]);
    let target4 = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let target6 = start_nginx(&lab, Host::Target, TARGET6_IP, &[80]);
    let _intercept =
        InterceptProcess::start(&lab, &["--target", "198.18.2.2:80,[2001:db8:2::2]:80"]);
    let mut tcpcopy = start_tcpcopy(
        &lab,
        "80-198.18.2.2:80,80-[2001:db8:2::2]:80",
        &["--workers", "2"],
    );
    // The families interleaved, and keep-alive load on both at once.
    for round in 0..5 {
        curls(&lab, &ONLINE_IP.to_string(), &format!("v4/{round}"), 2);
        curls(&lab, "[2001:db8:1::1]", &format!("v6/{round}"), 2);
    }
    std::thread::scope(|s| {
        for url in ["http://198.18.1.1/wrk4", "http://[2001:db8:1::1]/wrk6"] {
            let lab = &lab;
            s.spawn(move || {
                lab.run(Host::Client, &["wrk", "-t1", "-c4", "-d2s", url]);
            });
        }
    });
    let want4 = online4.requests_settled(&lab).len();
    let want6 = online6.requests_settled(&lab).len();
    assert!(want4 > 100 && want6 > 100, "wrk made {want4} + {want6}");
    assert_eq!(
        sorted(target_requests(&target4, want4)),
        sorted(online4.requests()),
        "IPv4: production's requests, exactly"
    );
    assert_eq!(
        sorted(target_requests(&target6, want6)),
        sorted(online6.requests()),
        "IPv6: production's requests, exactly"
    );
    let stats = tcpcopy.wait_stats("both families' records", |s| {
        s["link_records6"] > 0 && s["link_records"] > s["link_records6"]
    });
    assert_eq!(stats["announce6_unsupported"], 0, "{stats:?}");
    let (status, fin) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(fin["send_dropped"], 0, "{fin:?}");
}

#[test]
fn an_ipv6_recording_is_replayed_offline() {
    let lab = lab();
    let online = start_nginx(&lab, Host::Online, ONLINE6_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET6_IP, &[80]);
    let rec = Tcpdump::start(
        &lab,
        Host::Online,
        "eth0",
        "v6.pcap",
        &[],
        "ip6 and tcp port 80",
    );
    curls(&lab, "[2001:db8:1::1]", "single", 10);
    for i in 0..4 {
        let urls: Vec<String> = (0..5)
            .map(|k| format!("http://[2001:db8:1::1]/keepalive/{i}/{k}"))
            .collect();
        let mut argv = vec!["curl", "-gsf"];
        for u in &urls {
            argv.extend(["-o", "/dev/null", u.as_str()]);
        }
        lab.run(Host::Client, &argv);
    }
    let want = sorted(online.requests());
    assert_eq!(want.len(), 30, "production served every request");
    let file = rec.finish();

    let _intercept = InterceptProcess::start(&lab, &["--target", "[2001:db8:2::2]:80"]);
    let path = file.to_str().expect("a UTF-8 path").to_owned();
    let done = run_to_end(
        &lab,
        &[
            "-x",
            "80-[2001:db8:2::2]:80",
            "-s",
            "198.18.2.3",
            "-i",
            &path,
            "-o",
            "eth1",
            "--top-speed",
        ],
        Duration::from_secs(120),
    );
    assert!(
        done.status.success(),
        "tcpcopy failed:\n{}\n{}",
        done.stdout,
        done.log
    );
    let got = target_requests(&target, want.len());
    assert_eq!(sorted(got), want, "{}", done.stdout);
    assert_eq!(
        done.summary_number("sessions in the file:"),
        14,
        "{}",
        done.stdout
    );
    assert_eq!(done.summary_number("completed:"), 14, "{}", done.stdout);
    assert_eq!(done.summary_number("failed:"), 0, "{}", done.stdout);
}

#[test]
fn compare_finds_the_planted_differences_over_ipv6() {
    use tcpcopy_tests::servers::{
        COMPARE_PRODUCTION, COMPARE_TARGET, compare_http_exchanges, start_nginx_with,
    };
    let lab = lab();
    let _online = start_nginx_with(&lab, Host::Online, ONLINE6_IP, &[80], COMPARE_PRODUCTION);
    let _target = start_nginx_with(&lab, Host::Target, TARGET6_IP, &[80], COMPARE_TARGET);
    let _intercept = InterceptProcess::start(&lab, &["--target", "[2001:db8:2::2]:80"]);
    let mut tcpcopy = start_tcpcopy(&lab, "80-[2001:db8:2::2]:80", &["--compare", "http"]);
    compare_http_exchanges(&lab, "http://[2001:db8:1::1]");
    tcpcopy.wait_stats("ten exchanges compared", |s| s["compared"] >= 10);
    let (status, stats) = tcpcopy.stop();
    assert!(status.success());
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(
        (
            got("compared"),
            got("compare_equal"),
            got("compare_different")
        ),
        (10, 4, 6),
        "{stats:?}"
    );
    assert_eq!(
        (
            got("compare_status"),
            got("compare_header"),
            got("compare_body")
        ),
        (2, 2, 2),
        "{stats:?}"
    );
    assert!(
        got("xdp_responses") >= 10,
        "production's IPv6 answers: {stats:?}"
    );
}
