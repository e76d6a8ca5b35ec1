//! T2: the benchmarks' near-free target in the lab. A real curl gets a
//! valid response from it; and tcpcopy replays real sessions to it, its
//! answers going to intercept on the assistant as a real target's would:
//! every session completes.

use tcpcopy_tests::{
    flood::mac_of,
    intercept::InterceptProcess,
    lab::{Host, Lab, ONLINE_IP, TARGET_IP},
    responder::{RESPONSE, Responder},
    servers::start_nginx,
    tcpcopy::TcpcopyProcess,
};

#[test]
fn a_real_curl_gets_the_responders_answer() {
    let lab = Lab::new();
    let _responder = Responder::start(&lab, Host::Target, "eth0", Some(TARGET_IP), 80, None);
    // From the online host, on the LAN: no server listens on the target.
    let out = lab.run(
        Host::Online,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            &format!("http://{TARGET_IP}/anything"),
        ],
    );
    println!("{out}");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("ok"), "the body: {out}");
    assert!(String::from_utf8_lossy(RESPONSE).contains("Content-Length: 2"));
    // Keep-alive: two requests on one connection.
    let out = lab.run(
        Host::Online,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            &format!("http://{TARGET_IP}/a"),
            &format!("http://{TARGET_IP}/b"),
        ],
    );
    assert_eq!(out, "okok");
}

#[test]
fn tcpcopy_replays_every_session_to_it_through_intercept() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let assistant = mac_of(&lab, Host::Assistant, "eth0");
    let responder = Responder::start(
        &lab,
        Host::Target,
        "eth0",
        Some(TARGET_IP),
        80,
        Some(assistant),
    );
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
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
    const N: u64 = 20;
    for i in 0..N {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{ONLINE_IP}/r/{i}"),
            ],
        );
    }
    assert_eq!(online.requests().len() as u64, N);
    let stats = tcpcopy.wait_stats("every session completed", |s| s["closed_completed"] >= N);
    let (status, fin) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(fin["closed_completed"], N, "{stats:?}");
    assert_eq!((fin["established"], fin["responses"]), (N, N), "{fin:?}");
    assert_eq!(fin["replies_unknown"], 0, "{fin:?}");
    // The target's own count agrees: every session's SYN, request and FIN
    // (curl closes first) answered, at least once (a retransmission under
    // load is answered again).
    let answers = responder.answers();
    assert!(
        answers.syn_acks >= N && answers.data >= N && answers.fin_acks >= N,
        "{answers:?}"
    );
}
