//! T2: tcpcopy live in the lab, end to end: real clients and servers,
//! capture on the online host, frames to the target, intercept closing
//! the loop on the assistant.

use tcpcopy_tests::{
    intercept::InterceptProcess,
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    servers::start_nginx,
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

#[test]
fn every_nginx_request_to_production_reaches_the_target() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
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
        ],
    );
    const N: usize = 20;
    for i in 0..N {
        let url = format!("http://{ONLINE_IP}/item/{i}?q={}", i * 7);
        lab.run(Host::Client, &["curl", "-sf", "-o", "/dev/null", &url]);
    }
    let got = wait_until("every request replayed at the target", DEADLINE, || {
        let t = target.requests();
        if t.len() >= N {
            Ok(t)
        } else {
            Err(format!("{} of {N}: {t:?}", t.len()))
        }
    });
    let mut want = online.requests();
    let mut got = got;
    want.sort();
    got.sort();
    assert_eq!(got, want, "the target saw exactly production's requests");
    let stats = tcpcopy.wait_stats("sessions completed", |s| {
        s.get("closed_completed").copied().unwrap_or(0) >= N as u64
    });
    assert_eq!(stats["sessions_syn"], N as u64);
    let (status, fin) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit: {status}");
    assert_eq!(fin["send_dropped"], 0);
    drop(intercept);
}
