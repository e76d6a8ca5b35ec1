//! T2: faults survived while production traffic flows, each with its
//! completeness printed: (a) intercept killed and restarted (`-L`); (b) the
//! target's nginx restarted; (c) 5 % loss and 5 % reordering on the target
//! link; (d) the target link down for 2 s.
//!
//! Load: 8 keep-alive connections at 400 requests/s in all, sessions of 10
//! requests with unique URIs, from the lab's client to production nginx.
//! Goals: (a) at least 99.9 % of all requests reach the target; (b)-(d)
//! every session production completed after the fault ended is replayed
//! whole (and the rest as far as the target allowed).

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tcpcopy_tests::{
    intercept::InterceptProcess,
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    load::{Load, Session},
    servers::{Nginx, start_nginx},
    tc,
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

const CONNS: usize = 8;
const PER_SESSION: usize = 10;
const RATE: f64 = 400.0;
/// Load before the fault, and after it ended.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);

struct Scene {
    lab: Lab,
    online: Nginx,
    target: Nginx,
    intercept: Option<InterceptProcess>,
    tcpcopy: TcpcopyProcess,
    load: Option<Load>,
}

impl Scene {
    fn start(tag: &str) -> Self {
        let lab = Lab::new();
        let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
        let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
        let intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
        let tcpcopy = TcpcopyProcess::start(
            &lab,
            &[
                "-x",
                "80-198.18.2.2:80",
                "-s",
                "198.18.2.3",
                "-i",
                "eth0",
                "-o",
                "eth1",
                "-L",
            ],
        );
        let server = SocketAddr::from((ONLINE_IP, 80));
        let load = Load::start(&lab, server, tag, CONNS, PER_SESSION, RATE);
        std::thread::sleep(BEFORE);
        Self {
            lab,
            online,
            target,
            intercept: Some(intercept),
            tcpcopy,
            load: Some(load),
        }
    }

    /// Lets the load run on after the fault ended at `fault_end`, stops it,
    /// waits for the replay to settle and measures.
    fn finish(mut self, name: &str, fault_end: Instant) -> Outcome {
        std::thread::sleep(AFTER);
        let sessions = self.load.take().expect("running").stop();
        let want: usize = sessions.iter().map(|s| s.requests.len()).sum();
        assert_eq!(
            self.online.requests().len(),
            want,
            "production served every request"
        );
        // The replay catches up: wait until the target has as many requests
        // as production (or the deadline passes: then measure what came).
        let _ = wait_until_quiet(&self.target, want);
        let got: HashSet<String> = self
            .target
            .requests()
            .iter()
            .map(|l| l.rsplit_once(' ').map_or(l.as_str(), |(r, _)| r).to_owned())
            .collect();
        let replayed = sessions
            .iter()
            .flat_map(|s| &s.requests)
            .filter(|r| got.contains(*r))
            .count();
        let after: Vec<&Session> = sessions.iter().filter(|s| s.ended > fault_end).collect();
        let whole = after
            .iter()
            .filter(|s| s.requests.iter().all(|r| got.contains(r)))
            .count();
        let (status, stats) = self.tcpcopy.stop();
        assert!(status.success(), "{name}: tcpcopy exit {status}");
        let o = Outcome {
            requests: want,
            replayed,
            sessions_after: after.len(),
            whole_after: whole,
        };
        println!(
            "fault {name}: {}/{} requests replayed ({:.2} %); sessions production completed after \
             the fault: {}/{} replayed whole; tcpcopy: reconnects={} rto_retransmits={} \
             syn_retransmits={} closed_target_reset={} closed_target_refused={} \
             closed_retransmit_limit={} link_failures={} link_reconnects={}",
            o.replayed,
            o.requests,
            100.0 * o.replayed as f64 / o.requests.max(1) as f64,
            o.whole_after,
            o.sessions_after,
            stats["reconnects"],
            stats["rto_retransmits"],
            stats["syn_retransmits"],
            stats["closed_target_reset"],
            stats["closed_target_refused"],
            stats["closed_retransmit_limit"],
            stats["link_failures"],
            stats["link_reconnects"],
        );
        o
    }
}

struct Outcome {
    requests: usize,
    replayed: usize,
    sessions_after: usize,
    whole_after: usize,
}

impl Outcome {
    fn share(&self) -> f64 {
        self.replayed as f64 / self.requests.max(1) as f64
    }
}

/// Waits until the target has `want` requests, or its log stops growing
/// for a while (the replay gave up on some).
fn wait_until_quiet(target: &Nginx, want: usize) -> usize {
    let mut last = (0, Instant::now());
    let started = Instant::now();
    loop {
        let n = target.requests().len();
        if n >= want || started.elapsed() > DEADLINE {
            return n;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds since midnight of a log line's RFC 3339 timestamp
/// (`2026-12-03T08:28:13.010634Z ...`).
fn log_time(line: &str) -> f64 {
    let t = line
        .split_whitespace()
        .next()
        .and_then(|ts| ts.split_once('T'))
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let mut parts = t.split(':');
    let mut next = || -> f64 {
        parts
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad timestamp in {line:?}"))
    };
    next() * 3600.0 + next() * 60.0 + next()
}

#[test]
fn fault_a_intercept_killed_and_restarted() {
    let mut s = Scene::start("a");
    let intercept = s.intercept.take().expect("running");
    let _ = intercept.kill();
    std::thread::sleep(Duration::from_secs(1));
    let back = InterceptProcess::start(&s.lab, &["--target", "198.18.2.2:80"]);
    // From the two logs' timestamps (one clock): intercept listening again
    // (it logs that right after binding), tcpcopy connected.
    let listened = log_time(&back.wait_log("intercept started"));
    let reconnected = log_time(&s.tcpcopy.wait_log("reconnected to intercept"));
    let took = reconnected - listened;
    println!(
        "fault a: tcpcopy reconnected {:.1} ms after intercept listened again",
        took * 1e3
    );
    assert!(
        (0.0..1.0).contains(&took),
        "reconnected {took:.3} s after intercept was back"
    );
    s.intercept = Some(back);
    let o = s.finish("a (intercept killed, restarted after 1 s)", Instant::now());
    assert!(
        o.share() >= 0.999,
        "{} of {} requests",
        o.replayed,
        o.requests
    );
}

#[test]
fn fault_b_target_nginx_restarted() {
    let s = Scene::start("b");
    s.target_restart();
    let end = Instant::now();
    let o = s.finish("b (target nginx restarted)", end);
    assert_eq!(
        o.whole_after, o.sessions_after,
        "every session after the fault"
    );
}

impl Scene {
    /// Stops the target's nginx (SIGTERM: it closes its connections) and
    /// starts it again on the same configuration.
    fn target_restart(&self) {
        let pid_file = self
            .target
            .access_log
            .parent()
            .expect("nginx dir")
            .join("nginx.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("nginx.pid")
            .trim()
            .parse()
            .expect("a pid");
        // SAFETY: kill(2) on the lab's own nginx.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_until("the target's nginx to stop", DEADLINE, || {
            let out = self.lab.run(Host::Target, &["ss", "-Hltn"]);
            if out.contains("198.18.2.2:80") {
                Err(out)
            } else {
                Ok(())
            }
        });
        let _ = start_nginx(&self.lab, Host::Target, TARGET_IP, &[80]);
    }
}

#[test]
fn fault_c_loss_and_reordering_on_the_target_link() {
    let s = Scene::start("c");
    // Both directions of the target's link: frames to it (the bridge's
    // port) and its replies.
    tc::impair(&s.lab, Host::Lan, "target", 50, 50, "2mbit");
    tc::impair(&s.lab, Host::Target, "eth0", 50, 50, "2mbit");
    std::thread::sleep(Duration::from_secs(4));
    for (host, dev) in [(Host::Lan, "target"), (Host::Target, "eth0")] {
        s.lab
            .run(host, &["tc", "qdisc", "del", "dev", dev, "clsact"]);
        s.lab.run(host, &["tc", "qdisc", "del", "dev", dev, "root"]);
    }
    let end = Instant::now();
    let o = s.finish("c (5 % loss, 5 % reordered, both ways, for 4 s)", end);
    assert_eq!(
        o.whole_after, o.sessions_after,
        "every session after the fault"
    );
}

#[test]
fn fault_d_target_link_down_for_two_seconds() {
    let s = Scene::start("d");
    s.lab
        .run(Host::Lan, &["ip", "link", "set", "target", "down"]);
    std::thread::sleep(Duration::from_secs(2));
    s.lab.run(Host::Lan, &["ip", "link", "set", "target", "up"]);
    let end = Instant::now();
    let o = s.finish("d (target link down for 2 s)", end);
    assert_eq!(
        o.whole_after, o.sessions_after,
        "every session after the fault"
    );
}
