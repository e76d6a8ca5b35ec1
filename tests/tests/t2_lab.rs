//! T2: the lab itself, and a program attached inside it seeing real traffic.

use std::process::Command;

use tcpcopy_common::counters::CaptureCounter;
use tcpcopy_runtime::xdp::AttachMode;
use tcpcopy_tests::{
    lab::{ASSISTANT_IP, CLIENT_IP, Host, Lab, ONLINE_IP, ONLINE_LAN_IP, TARGET_IP},
    servers::start_nginx,
    wait::{DEADLINE, wait_until},
};
use tcpcopy_user::capture::xdp::CaptureProgram;

/// Whether one ping from `from` to `to` is answered. Panics when ping
/// itself cannot run (a missing package must not read as "unreachable").
fn ping(lab: &Lab, from: Host, to: std::net::Ipv4Addr) -> bool {
    let to = to.to_string();
    let out = lab.output(from, &["ping", "-c1", "-W2", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "ping could not run in {from:?}: {} {stderr}",
        out.status
    );
    out.status.success()
}

#[test]
fn lab_topology_routes_as_designed() {
    let lab = Lab::new();
    assert!(ping(&lab, Host::Client, ONLINE_IP), "client reaches online");
    assert!(
        ping(&lab, Host::Online, TARGET_IP),
        "online reaches target over the LAN"
    );
    assert!(
        ping(&lab, Host::Online, ASSISTANT_IP),
        "online reaches the assistant"
    );
    assert!(
        ping(&lab, Host::Target, ONLINE_LAN_IP),
        "target reaches online"
    );
    // The client cannot reach the LAN: online does not forward.
    assert!(
        !ping(&lab, Host::Client, TARGET_IP),
        "online must not forward"
    );
    // The target routes the client range to the assistant.
    let route = lab.run(
        Host::Target,
        &["ip", "route", "get", &CLIENT_IP.to_string()],
    );
    assert!(
        route.contains(&format!("via {ASSISTANT_IP}")),
        "target route: {route}"
    );
    let fwd = lab.run(Host::Assistant, &["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(fwd.trim(), "0");
}

#[test]
fn labs_coexist_and_leave_nothing_behind() {
    let names;
    {
        let a = Lab::new();
        let b = Lab::new();
        assert_ne!(a.ns(Host::Online), b.ns(Host::Online));
        assert!(ping(&a, Host::Client, ONLINE_IP) && ping(&b, Host::Client, ONLINE_IP));
        names = [a.ns(Host::Online), b.ns(Host::Lan)];
    }
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in names {
        assert!(!list.contains(&name), "{name} left behind: {list}");
    }
}

#[test]
fn a_lab_dropped_while_panicking_is_removed() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new();
        names.lock().unwrap().push(lab.ns(Host::Client));
        panic!("a test failing mid-way");
    });
    assert!(result.is_err());
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in names.into_inner().unwrap() {
        assert!(!list.contains(&name), "{name} left behind: {list}");
    }
}

#[test]
fn stale_labs_of_dead_processes_are_swept() {
    // A namespace named like a lab of a process that cannot exist (pids are
    // below 2^22). Any lab creation sweeps it, ours or a parallel test's.
    let stale = "tcl-4194304999-0-client";
    let out = Command::new("ip")
        .args(["netns", "add", stale])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _lab = Lab::new();
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(stale), "sweep left {stale}: {list}");
}

#[test]
fn capture_program_counts_client_packets_to_nginx() {
    let lab = Lab::new();
    let nginx = start_nginx(&lab, Host::Online, ONLINE_IP, &[80, 8080]);

    let mut capture = CaptureProgram::load_inline().expect("load the capture program");
    capture
        .add_rule(&tcpcopy_tests::rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    {
        let _online = lab.enter(Host::Online);
        let mode = capture.attach("eth0").expect("attach to online eth0");
        assert_eq!(mode, AttachMode::Native, "veth supports native XDP");
    }
    let count = |c| capture.counter(c).unwrap();

    const REQUESTS: u64 = 5;
    for i in 0..REQUESTS {
        let url = format!("http://{ONLINE_IP}/req{i}");
        lab.run(Host::Client, &["curl", "-sf", "-o", "/dev/null", &url]);
    }
    // Each exchange: at least SYN, ACK, request and FIN from the client.
    let matched = wait_until("client packets to port 80 counted", DEADLINE, || {
        let m = count(CaptureCounter::Matched);
        if m >= 4 * REQUESTS {
            Ok(m)
        } else {
            Err(format!("matched {m}"))
        }
    });
    assert_eq!(count(CaptureCounter::Malformed), 0);

    // Traffic to another port is seen but not matched.
    let seen_before = count(CaptureCounter::Seen);
    for i in 0..3 {
        let url = format!("http://{ONLINE_IP}:8080/other{i}");
        lab.run(Host::Client, &["curl", "-sf", "-o", "/dev/null", &url]);
    }
    wait_until("port 8080 packets seen", DEADLINE, || {
        let s = count(CaptureCounter::Seen);
        if s >= seen_before + 12 {
            Ok(())
        } else {
            Err(format!("seen {s}, before {seen_before}"))
        }
    });
    let matched_after = count(CaptureCounter::Matched);
    assert!(
        matched_after - matched <= 2,
        "port 8080 traffic matched: {matched} -> {matched_after} (only late port-80 ACKs may trail)"
    );
    // Production served every request while the program was attached
    // (nginx logs a request after answering it: the last line may trail
    // curl's return).
    wait_until(
        "production's access log to hold all 8 requests",
        DEADLINE,
        || {
            let got = nginx.requests();
            if got.len() == 8 {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}
