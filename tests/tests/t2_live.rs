//! T2: tcpcopy live in the lab, end to end: real clients and servers,
//! capture on the online host, frames to the target, intercept closing
//! the loop on the assistant.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use tcpcopy_tests::{
    intercept::InterceptProcess,
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    servers::{Nginx, redis_benchmark, start_nginx, start_redis},
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

/// The usual tcpcopy command line for port `port` of the lab, plus `extra`.
fn args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-x",
        &format!("{port}-{TARGET_IP}:{port}"),
        "-s",
        "198.18.2.3",
        "-i",
        "eth0",
        "-o",
        "eth1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start_tcpcopy(lab: &Lab, port: u16, extra: &[&str]) -> TcpcopyProcess {
    let a = args(port, extra);
    TcpcopyProcess::start(lab, &a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Waits until the target's nginx logged at least `n` requests; returns them.
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

fn curl(lab: &Lab, urls: &[String]) {
    let mut argv = vec!["curl", "-sf", "-o", "/dev/null"];
    for u in urls {
        argv.extend(["-o", "/dev/null"]);
        argv.push(u);
    }
    lab.run(Host::Client, &argv);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn every_nginx_request_to_production_reaches_the_target() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let mut tcpcopy = start_tcpcopy(&lab, 80, &[]);
    const N: usize = 20;
    for i in 0..N {
        curl(&lab, &[format!("http://{ONLINE_IP}/item/{i}?q={}", i * 7)]);
    }
    let got = target_requests(&target, N);
    assert_eq!(
        sorted(got),
        sorted(online.requests()),
        "the target saw exactly production's requests"
    );
    let stats = tcpcopy.wait_stats("sessions completed", |s| s["closed_completed"] >= N as u64);
    assert_eq!(stats["sessions_syn"], N as u64);
    assert!(
        !tcpcopy.log_text().contains("no handshake answered"),
        "no false alarm"
    );
    let (status, fin) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit: {status}");
    assert_eq!(fin["send_dropped"], 0);
}

#[test]
fn wrk_load_is_replayed_completely_with_two_workers() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let tcpcopy = start_tcpcopy(&lab, 80, &["--workers", "2"]);
    // Keep-alive connections, many requests each, for two seconds.
    lab.run(
        Host::Client,
        &[
            "wrk",
            "-t2",
            "-c8",
            "-d2s",
            &format!("http://{ONLINE_IP}/wrk"),
        ],
    );
    let want = online.requests_settled(&lab).len();
    assert!(want > 200, "wrk made {want} requests");
    let got = target_requests(&target, want);
    if got.len() != want {
        // What the engine did about it, to tell a replay twice from a
        // production log read too early.
        let (_, fin) = tcpcopy.stop();
        panic!(
            "no extra requests either: {} at the target, {want} in production \
             (now {}); reconnects {:?}, requests lost by the target {:?}; {fin:?}",
            got.len(),
            online.requests().len(),
            fin.get("reconnects"),
            fin.get("requests_lost_by_target"),
        );
    }
    assert!(
        got.iter().all(|r| r.starts_with("GET /wrk ")),
        "{:?}",
        &got[..3]
    );
    let (status, fin) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(fin["xdp_ring_full"], 0);
    println!(
        "target response time p50 {} us, p99 {} us of {} responses timed of {}",
        fin["response_p50_us"], fin["response_p99_us"], fin["responses_timed"], fin["responses"]
    );
    // Timed responses are answers to requests sent in step (not
    // pipelined): never the 0 us of an answer already in flight.
    assert!(
        fin["responses_timed"] > 0 && fin["response_p50_us"] > 0,
        "{fin:?}"
    );
}

#[test]
fn redis_benchmark_leaves_the_same_keys_and_values_on_the_target() {
    let lab = Lab::new();
    let online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let tcpcopy = start_tcpcopy(&lab, 6379, &[]);
    redis_benchmark(&lab, "198.18.1.1");
    target.assert_same_keys_as(&lab, Host::Target, &online, Host::Online, 1000);
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn a_connection_open_before_tcpcopy_started_is_replayed_with_a_faked_handshake() {
    let lab = Lab::new();
    let online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let conn = {
        let _ns = lab.enter(Host::Client);
        TcpStream::connect(SocketAddr::from((ONLINE_IP, 6379)))
            .expect("connect to production redis")
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let command = |mut c: &TcpStream, cmd: &str| {
        c.write_all(cmd.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(command(&conn, "SET before 1\r\n"), "+OK\r\n");
    let mut tcpcopy = start_tcpcopy(&lab, 6379, &[]);
    for i in 0..5 {
        assert_eq!(command(&conn, &format!("SET after{i} {i}\r\n")), "+OK\r\n");
    }
    wait_until("the later commands at the target", DEADLINE, || {
        let n = target.dbsize(&lab, Host::Target);
        if n >= 5 {
            Ok(())
        } else {
            Err(format!("{n} keys"))
        }
    });
    let got = target.dump(&lab, Host::Target);
    let want: Vec<(String, String)> = (0..5)
        .map(|i| (format!("after{i}"), i.to_string()))
        .collect();
    assert_eq!(
        got, want,
        "what was sent after tcpcopy started, and only that"
    );
    assert_eq!(online.dbsize(&lab, Host::Online), 6);
    let stats = tcpcopy.wait_stats("a faked session", |s| s["sessions_faked"] >= 1);
    assert_eq!(stats["sessions_syn"], 0);
    drop(conn);
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn replication_triples_the_requests_at_the_target() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let tcpcopy = start_tcpcopy(&lab, 80, &["-n", "3"]);
    for i in 0..10 {
        curl(&lab, &[format!("http://{ONLINE_IP}/copy/{i}")]);
    }
    let got = target_requests(&target, 30);
    let want: Vec<String> = online
        .requests()
        .into_iter()
        .flat_map(|r| [r.clone(), r.clone(), r])
        .collect();
    assert_eq!(sorted(got), sorted(want));
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn sampling_replays_about_half_the_sessions_each_wholly_or_not_at_all() {
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let mut tcpcopy = start_tcpcopy(&lab, 80, &["-r", "50"]);
    const SESSIONS: usize = 40;
    for i in 0..SESSIONS {
        // Two requests on one connection: one session.
        curl(
            &lab,
            &[
                format!("http://{ONLINE_IP}/s{i}/a"),
                format!("http://{ONLINE_IP}/s{i}/b"),
            ],
        );
    }
    // Every session's packets captured (sampled out ones count as captured).
    tcpcopy.wait_stats("every session captured", |s| {
        s["captured"] >= (SESSIONS * 6) as u64
    });
    let stats = tcpcopy.wait_stats("replayed sessions completed", |s| {
        s["closed_completed"] >= s["sessions_syn"]
    });
    let replayed = stats["sessions_syn"] as usize;
    assert!(
        (8..=32).contains(&replayed),
        "{replayed} of {SESSIONS} sessions replayed at -r 50"
    );
    let got = target_requests(&target, 2 * replayed);
    for i in 0..SESSIONS {
        let a = got
            .iter()
            .filter(|r| r.contains(&format!("/s{i}/a ")))
            .count();
        let b = got
            .iter()
            .filter(|r| r.contains(&format!("/s{i}/b ")))
            .count();
        assert_eq!(a, b, "session {i}: both requests or neither ({got:?})");
        assert!(a <= 1);
    }
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn sigkill_leaves_no_xdp_program_and_production_keeps_serving() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let tcpcopy = start_tcpcopy(&lab, 80, &[]);
    let link = lab.run(Host::Online, &["ip", "link", "show", "eth0"]);
    assert!(link.contains("xdp"), "attached while running: {link}");
    curl(&lab, &[format!("http://{ONLINE_IP}/before")]);
    tcpcopy.kill();
    wait_until("the XDP program gone with the process", DEADLINE, || {
        let link = lab.run(Host::Online, &["ip", "link", "show", "eth0"]);
        if link.contains("xdp") {
            Err(link)
        } else {
            Ok(())
        }
    });
    for i in 0..5 {
        curl(&lab, &[format!("http://{ONLINE_IP}/after/{i}")]);
    }
    assert_eq!(
        online.requests().len(),
        6,
        "production served every request"
    );
}

#[test]
fn mirror_capture_through_af_xdp_replays_completely() {
    let lab = Lab::new();
    let mirror = lab.add_mirror_port();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let a = args(80, &["--capture", "mirror"]);
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let i = a.iter().position(|x| *x == "eth0").expect("-i eth0");
    a[i] = mirror;
    let mut tcpcopy = TcpcopyProcess::start(&lab, &a);
    for i in 0..20 {
        curl(&lab, &[format!("http://{ONLINE_IP}/mirror/{i}")]);
    }
    let got = target_requests(&target, 20);
    assert_eq!(sorted(got), sorted(online.requests()));
    let stats = tcpcopy.wait_stats("sessions completed", |s| s["closed_completed"] >= 20);
    assert!(stats["xdp_redirected"] >= 20 * 4, "{stats:?}");
    assert_eq!(stats["xdp_redirect_failed"], 0);
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

/// A SIGTERM while tcpcopy is still starting (here: waiting for the
/// target's next hop, which never answers ARP) stops it cleanly: the
/// handlers are in before any work, so the signal never kills it half set
/// up.
#[test]
fn a_signal_during_start_up_stops_tcpcopy_cleanly() {
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.99:80"]);
    let log = lab.dir().join("early-signal.log");
    let bin = tcpcopy_tests::tcpcopy::tcpcopy_binary()
        .to_string_lossy()
        .into_owned();
    let mut child = lab
        .command(Host::Online, &bin)
        .arg("-l")
        .arg(&log)
        .args([
            "-x",
            "80-198.18.2.99:80",
            "-s",
            "198.18.2.3",
            "-i",
            "eth0",
            "-o",
            "eth1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tcpcopy");
    // The capture is attached early in start-up; the next-hop lookup for
    // 198.18.2.99 (no such host) then waits two seconds.
    wait_until("the capture program attached", DEADLINE, || {
        let link = lab.run(Host::Online, &["ip", "link", "show", "eth0"]);
        if link.contains("xdp") {
            Ok(())
        } else {
            Err(link)
        }
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("replaying"),
        "still starting when the signal comes: {text}"
    );
    let status = tcpcopy_tests::wait::signal_and_wait(&mut child, libc::SIGTERM, "tcpcopy");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}: {text}");
    assert!(text.contains("final stats"), "{text}");
    let link = lab.run(Host::Online, &["ip", "link", "show", "eth0"]);
    assert!(!link.contains("xdp"), "detached: {link}");
}

/// A replay that delivers nothing says so within seconds: here the target
/// has no route for the client addresses, so its SYN-ACKs never reach the
/// assistant. One warning names what was seen and the likely causes, the
/// missing route first; it is not repeated within 30 s.
#[test]
fn unanswered_handshakes_are_diagnosed_within_seconds() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    lab.run(
        Host::Target,
        &["ip", "route", "del", "198.18.1.0/24", "via", "198.18.2.3"],
    );
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let mut tcpcopy = start_tcpcopy(&lab, 80, &[]);
    let started = std::time::Instant::now();
    for i in 0..25 {
        curl(&lab, &[format!("http://{ONLINE_IP}/lost/{i}")]);
    }
    assert_eq!(online.requests().len(), 25, "production is not affected");
    let line = tcpcopy.wait_log("no handshake answered");
    let took = started.elapsed();
    println!("diagnosed after {took:?}: {line}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let route = line.find("no route for the client addresses").expect(&line);
    let filter = line.find("filter does not match").expect(&line);
    assert!(route < filter, "the missing route first: {line}");
    // A few more seconds of unanswered SYNs: still one warning.
    for i in 0..25 {
        curl(&lab, &[format!("http://{ONLINE_IP}/still-lost/{i}")]);
    }
    tcpcopy.wait_stats("more SYNs sent", |s| {
        s["syn_retransmits"] + s["sessions_syn"] >= 100
    });
    let warnings = tcpcopy.log_text().matches("no handshake answered").count();
    assert_eq!(warnings, 1, "{}", tcpcopy.log_text());
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

/// An idle tcpcopy sleeps (a handful of wake-ups a second, where polling
/// woke it a thousand times) and the first packet after the quiet wakes it
/// (counting wake-ups is no timing: the count is the kernel's):
/// with the idle sleep made ten minutes long, only the capture's own
/// wake-up can bring the request to the target within the wait. For the
/// inline ring with one worker and with two (the dispatcher sleeps too),
/// and for mirror capture (AF_XDP sockets).
#[test]
fn an_idle_tcpcopy_sleeps_and_wakes_at_the_first_packet() {
    for (name, extra) in [
        ("inline", vec![]),
        ("inline, 2 workers", vec!["--workers", "2"]),
        ("mirror", vec!["--capture", "mirror"]),
    ] {
        let lab = Lab::new();
        let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
        let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
        let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
        let mut argv = args(80, &["--max-sleep-ms", "600000"]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        if name == "mirror" {
            let port = lab.add_mirror_port();
            let i = argv.iter().position(|a| a == "eth0").expect("-i eth0");
            argv[i] = port.to_owned();
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let tcpcopy = TcpcopyProcess::start(&lab, &argv);
        for round in 0..2 {
            // Quiet for 2 s: count the wake-ups (polling made ~2000).
            let (_, w0) = tcpcopy_tests::procstat::cpu_ns_and_wakeups(tcpcopy.pid());
            std::thread::sleep(Duration::from_secs(2));
            let (_, w1) = tcpcopy_tests::procstat::cpu_ns_and_wakeups(tcpcopy.pid());
            println!("{name}, round {round}: {} wake-ups in 2 s idle", w1 - w0);
            assert!(w1 - w0 < 40, "{name}: {} wake-ups in 2 s idle", w1 - w0);
            curl(&lab, &[format!("http://{ONLINE_IP}/after-quiet/{round}")]);
            let got = target_requests(&target, round + 1);
            assert_eq!(
                got[round],
                format!("GET /after-quiet/{round} 200"),
                "{name}"
            );
        }
        let (status, _) = tcpcopy.stop();
        assert!(status.success(), "{name}: {status}");
    }
}
