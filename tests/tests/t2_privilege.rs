//! T2: once set up, both daemons give up the capabilities they no longer
//! need, in every thread, and replay as before. Read from
//! `/proc/<pid>/task/*/status` (CapEff, CapPrm, CapBnd, CapInh, CapAmb) of
//! the running processes, after they said so in their logs.

use tcpcopy_tests::{
    intercept::InterceptProcess,
    lab::{Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::start_nginx,
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

/// CAP_NET_ADMIN's bit.
const NET_ADMIN: u64 = 1 << 12;

/// Every thread's capability sets: (CapEff, CapPrm, CapBnd, CapInh, CapAmb).
fn thread_caps(pid: u32) -> Vec<[u64; 5]> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    let mut out = Vec::new();
    for task in tasks {
        let status = std::fs::read_to_string(task.expect("a thread").path().join("status"))
            .expect("a thread's status");
        let field = |name: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {status}"));
            u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex capability set")
        };
        out.push([
            field("CapEff:"),
            field("CapPrm:"),
            field("CapBnd:"),
            field("CapInh:"),
            field("CapAmb:"),
        ]);
    }
    out
}

/// Waits until every thread of `pid` has exactly `eff` effective (and
/// permitted, and bounding) capabilities and no inheritable or ambient
/// ones; returns the sets seen.
fn assert_only(pid: u32, eff: u64, what: &str) -> Vec<[u64; 5]> {
    wait_until(
        &format!("{what}'s threads to hold {eff:#x} only"),
        DEADLINE,
        || {
            let caps = thread_caps(pid);
            if !caps.is_empty() && caps.iter().all(|c| *c == [eff, eff, eff, 0, 0]) {
                Ok(caps)
            } else {
                Err(format!("{caps:x?}"))
            }
        },
    )
}

#[test]
fn set_up_daemons_keep_only_what_they_still_use() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    intercept.wait_log("capabilities dropped");
    let mut tcpcopy = TcpcopyProcess::start(
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
            "--workers",
            "2",
        ],
    );
    let line = tcpcopy.wait_log("capabilities dropped");
    assert!(line.contains("kept=\"CAP_NET_ADMIN\""), "{line}");
    // XDP on an assistant: intercept keeps nothing.
    assert_only(intercept.pid(), 0, "intercept");
    // tcpcopy keeps CAP_NET_ADMIN (neighbour solicitations), in every
    // thread: the workers started after the drop.
    let caps = assert_only(tcpcopy.pid(), NET_ADMIN, "tcpcopy");
    assert!(
        caps.len() >= 3,
        "the main thread and two workers: {caps:x?}"
    );
    // And the replay works as before.
    for i in 0..5 {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{ONLINE_IP}/p/{i}"),
            ],
        );
    }
    wait_until("5 requests at the target", DEADLINE, || {
        let n = target.requests().len();
        if n >= 5 { Ok(()) } else { Err(format!("{n}")) }
    });
    assert_eq!(online.requests().len(), 5);
    tcpcopy.wait_stats("every session completed", |s| s["closed_completed"] >= 5);
    let (status, stats) = tcpcopy.stop();
    assert!(
        status.success(),
        "tcpcopy stops cleanly without its privileges"
    );
    assert_eq!(stats["closed_completed"], 5, "{stats:?}");
}

#[test]
fn intercept_on_the_target_keeps_nothing_with_tcx() {
    let lab = Lab::with(LabSpec {
        no_assistant: true,
        ..LabSpec::default()
    });
    let intercept = InterceptProcess::start_egress(
        &lab,
        &["--target", "198.18.2.2:80", "--clients", "198.18.1.0/24"],
    );
    let line = intercept.wait_log("capabilities dropped");
    // This kernel has TCX: the link goes with its file descriptor.
    assert!(line.contains("kept=\"none\""), "{line}");
    assert_only(intercept.pid(), 0, "intercept --egress");
    let (status, _) = intercept.stop();
    assert!(status.success(), "and it detaches without them");
    let filters = lab.run(Host::Target, &["bpftool", "net", "show", "dev", "eth0"]);
    assert!(!filters.contains("intercept"), "{filters}");
}
