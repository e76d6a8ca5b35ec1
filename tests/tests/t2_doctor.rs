//! T2: the `doctor` commands in the lab: a healthy lab passes every check
//! (the probe SYN is answered through intercept); a misconfigured one
//! fails the right check, with its fix.

use std::process::Output;

use tcpcopy_tests::{
    intercept::{InterceptProcess, intercept_binary},
    lab::{Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::start_nginx,
    tcpcopy::tcpcopy_binary,
};

/// `tcpcopy doctor` on the online host with the lab's usual options;
/// `extra` replaces any of `-x` and `-s`, or adds options.
fn tcpcopy_doctor(lab: &Lab, extra: &[&str]) -> (Output, String) {
    let bin = tcpcopy_binary().to_string_lossy().into_owned();
    let mut args = vec!["doctor"];
    for (flag, default) in [("-x", "80-198.18.2.2:80"), ("-s", "198.18.2.3")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend(["-i", "eth0", "-o", "eth1", "--probe-client", "198.18.1.250"]);
    args.extend_from_slice(extra);
    let out = lab
        .command(Host::Online, &bin)
        .args(&args)
        .output()
        .expect("run tcpcopy doctor");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("tcpcopy doctor {extra:?}:\n{text}");
    (out, text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

#[test]
fn tcpcopy_doctor_passes_a_healthy_lab() {
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let (out, text) = tcpcopy_doctor(&lab, &[]);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert!(
        line(&text, "PASS  XDP on eth0").contains("native mode"),
        "{text}"
    );
    assert!(
        line(&text, "PASS  intercept 198.18.2.3:36524").contains("tcpcopy-rs intercept 0.1.0"),
        "{text}"
    );
    assert!(
        line(&text, "PASS  probe SYN through intercept").contains("SYN-ACK"),
        "{text}"
    );
    assert!(
        line(&text, "PASS  next hop of 198.18.2.2").contains("at "),
        "{text}"
    );
    // The check left nothing behind: no XDP program, nothing in the log.
    let link = lab.run(Host::Online, &["ip", "link", "show", "eth0"]);
    assert!(!link.contains("xdp"), "{link}");
    assert!(target.requests().is_empty(), "the probe is no request");
    // With --compare: the TC program that will copy production's answers.
    let (out, text) = tcpcopy_doctor(&lab, &["--compare", "http"]);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "PASS  production's answers on eth0 (--compare)").contains("TCX link"),
        "{text}"
    );
    let attached = lab.run(Host::Online, &["bpftool", "net", "show", "dev", "eth0"]);
    assert!(
        !attached.contains("capture_"),
        "nothing left attached: {attached}"
    );
}

#[test]
fn tcpcopy_doctor_names_the_missing_route_on_the_target() {
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    lab.run(
        Host::Target,
        &["ip", "route", "del", "198.18.1.0/24", "via", "198.18.2.3"],
    );
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let (out, text) = tcpcopy_doctor(&lab, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let probe = line(&text, "FAIL  probe SYN through intercept");
    assert!(probe.contains("no answer came back"), "{text}");
    let fix = text
        .lines()
        .skip_while(|l| !l.contains("FAIL  probe SYN"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        fix.contains("fix:") && fix.contains("no route for the client range"),
        "{text}"
    );
    assert!(text.contains("1 failed"), "only the probe fails: {text}");
}

#[test]
fn tcpcopy_doctor_reports_refusals_mtu_and_missing_intercepts() {
    let lab = Lab::new();
    // Nothing listens on the target's port 81: a RST.
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:81"]);
    let (out, text) = tcpcopy_doctor(&lab, &["-x", "81-198.18.2.2:81"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "FAIL  probe SYN through intercept").contains("RST"),
        "{text}"
    );
    // -M above the output MTU.
    lab.run(Host::Online, &["ip", "link", "set", "eth1", "mtu", "1400"]);
    let (_, text) = tcpcopy_doctor(&lab, &[]);
    assert!(
        line(&text, "FAIL  output interface eth1").contains("below -M 1500"),
        "{text}"
    );
    assert!(text.contains("fix: -M 1400"), "{text}");
    // No intercept on that address.
    let (out, text) = tcpcopy_doctor(&lab, &["-s", "198.18.2.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        line(&text, "FAIL  intercept 198.18.2.2:36524").contains("cannot connect"),
        "{text}"
    );
}

fn intercept_doctor(lab: &Lab) -> (Output, String) {
    let bin = intercept_binary().to_string_lossy().into_owned();
    let out = lab
        .command(Host::Assistant, &bin)
        .args(["doctor", "-i", "eth0", "--target", "198.18.2.2:80"])
        .output()
        .expect("run intercept doctor");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("intercept doctor:\n{text}");
    (out, text)
}

#[test]
fn intercept_doctor_passes_an_assistant_and_catches_forwarding() {
    let lab = Lab::new();
    let (out, text) = intercept_doctor(&lab);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "PASS  XDP on eth0").contains("native"),
        "{text}"
    );
    assert!(line(&text, "PASS  ip_forward").contains("0"), "{text}");
    lab.run(Host::Assistant, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let (out, text) = intercept_doctor(&lab);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "FAIL  ip_forward").contains("1"), "{text}");
    assert!(text.contains("net.ipv4.ip_forward=0"), "{text}");
    // With intercept running, its port is taken and its XDP attached.
    lab.run(Host::Assistant, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let (_, text) = intercept_doctor(&lab);
    assert!(text.contains("already"), "{text}");
}

/// `intercept doctor` on the target itself (`--egress`, no assistant).
fn intercept_egress_doctor(lab: &Lab) -> (Output, String) {
    let bin = intercept_binary().to_string_lossy().into_owned();
    let out = lab
        .command(Host::Target, &bin)
        .args(["doctor", "--egress", "eth0", "--target", "198.18.2.2:80"])
        .args(["--clients", "198.18.1.0/24", "-b", "198.18.2.2"])
        .output()
        .expect("run intercept doctor");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("intercept doctor --egress:\n{text}");
    (out, text)
}

#[test]
fn intercept_doctor_on_the_target_checks_tc_and_that_replies_can_leave() {
    let lab = Lab::with(LabSpec {
        no_assistant: true,
        ..LabSpec::default()
    });
    let (out, text) = intercept_egress_doctor(&lab);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "PASS  TC egress on eth0").contains("TCX"),
        "{text}"
    );
    assert!(
        line(&text, "PASS  route to clients 198.18.1.0/24").contains("eth0"),
        "{text}"
    );
    assert!(
        !text.contains("ip_forward"),
        "not a concern on the target: {text}"
    );
    // A target without any route to the clients cannot send its replies.
    lab.run(Host::Target, &["ip", "route", "del", "default"]);
    let (out, text) = intercept_egress_doctor(&lab);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "FAIL  route to clients 198.18.1.0/24").contains("no route"),
        "{text}"
    );
}

#[test]
fn tcpcopy_doctor_passes_with_intercept_on_the_target() {
    let lab = Lab::with(LabSpec {
        no_assistant: true,
        ..LabSpec::default()
    });
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start_egress(
        &lab,
        &["--target", "198.18.2.2:80", "--clients", "198.18.1.0/24"],
    );
    let (out, text) = tcpcopy_doctor(&lab, &["-s", "198.18.2.2"]);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "PASS  probe SYN through intercept").contains("SYN-ACK"),
        "{text}"
    );
}
