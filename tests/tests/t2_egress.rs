//! T2: intercept on the target itself (`--egress`), in a lab with no
//! assistant and no route for the client range (only the default route
//! every host has). What it must never do: let a reply to a replayed
//! client leave the target (a tcpdump on the LAN sees none), touch the
//! target's other traffic, or keep dropping anything once it is gone.
//! The kernel's own replies (an RST to a stray segment) are taken like any.
//! IPv6 replies likewise, to IPv6 client ranges and announced addresses.
//! End-to-end completeness (nginx, Redis) is in `t2_matrix`'s
//! `no_assistant` cases, beside the assistant deployment's.

use std::net::SocketAddr;

use aya::programs::{SchedClassifier, tc::TcAttachType};
use tcpcopy_tests::{
    capture::Tcpdump,
    frames::{ACK, FIN, SYN, Segment},
    intercept::{ClientSession, ClientSession6, HttpResponder, InterceptProcess, TcpcopyPeer},
    lab::{CLIENT6_IP, Host, Lab, LabSpec, ONLINE_IP, TARGET_IP, TARGET6_IP},
    raw::RawIpSender,
    servers::start_nginx,
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

fn lab() -> Lab {
    Lab::with(LabSpec {
        no_assistant: true,
        ..LabSpec::default()
    })
}

/// tcpcopy on the online host, replaying port 80 to the target and
/// talking to the intercept there.
fn start_tcpcopy(lab: &Lab) -> TcpcopyProcess {
    TcpcopyProcess::start(
        lab,
        &[
            "-x",
            "80-198.18.2.2:80",
            "-s",
            "198.18.2.2",
            "-i",
            "eth0",
            "-o",
            "eth1",
        ],
    )
}

/// Packets in the capture `file` that match `filter`.
fn count(file: &std::path::Path, filter: &str) -> usize {
    let out = std::process::Command::new("tcpdump")
        .arg("-nr")
        .arg(file)
        .args(filter.split_whitespace())
        .output()
        .expect("run tcpdump -r");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// TC programs at the egress of the target's eth0 (TCX links).
fn egress_programs(lab: &Lab) -> usize {
    let _ns = lab.enter(Host::Target);
    let (_, programs) =
        SchedClassifier::query_tcx("eth0", TcAttachType::Egress).expect("query TCX on eth0");
    programs.len()
}

/// A curl in `host` (extra options first); whether it got an answer.
fn curl_ok(lab: &Lab, host: Host, opts: &[&str], url: &str) -> bool {
    let mut argv = vec!["curl", "-sf", "-o", "/dev/null", "--max-time", "2"];
    argv.extend_from_slice(opts);
    argv.push(url);
    lab.output(host, &argv).status.success()
}

#[test]
fn no_reply_leaves_the_target_and_its_other_traffic_is_untouched() {
    let lab = lab();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    // Everything the target sends, as the LAN sees it.
    let cap = Tcpdump::start(
        &lab,
        Host::Lan,
        "target",
        "egress.pcap",
        &[],
        "src host 198.18.2.2",
    );
    let intercept = InterceptProcess::start_egress(
        &lab,
        &[
            "--target",
            "198.18.2.2:80",
            "--clients",
            "198.18.1.0/24",
            "--stats-interval",
            "1",
        ],
    );
    let tcpcopy = start_tcpcopy(&lab);
    for c in 0..10 {
        let a = format!("http://{ONLINE_IP}/egress/{c}/a");
        let b = format!("http://{ONLINE_IP}/egress/{c}/b");
        lab.run(
            Host::Client,
            &["curl", "-sf", "-o", "/dev/null", &a, "-o", "/dev/null", &b],
        );
    }
    assert_eq!(online.requests().len(), 20);
    wait_until(
        "the target's access log equal to production's",
        DEADLINE,
        || {
            let (mut got, mut want) = (target.requests(), online.requests());
            got.sort();
            want.sort();
            if got == want {
                Ok(())
            } else {
                Err(format!("{} of {}", got.len(), want.len()))
            }
        },
    );
    // The target's other traffic: its own clients outside the range (the
    // online host's LAN address), itself, and its own connections out.
    assert!(
        curl_ok(
            &lab,
            Host::Online,
            &[],
            &format!("http://{TARGET_IP}/own/lan")
        ),
        "a client of the target outside the replayed range is answered"
    );
    assert!(
        curl_ok(
            &lab,
            Host::Target,
            &[],
            &format!("http://{TARGET_IP}/own/self")
        ),
        "the target talking to itself"
    );
    assert!(
        curl_ok(
            &lab,
            Host::Target,
            &[],
            &format!("http://{ONLINE_IP}/own/out")
        ),
        "the target as a client of another host"
    );
    // A reply the kernel makes itself: the RST to a stray segment from a
    // client address no socket knows. It must not leave either.
    let parked_before = intercept.wait_stats("a statistics line", |_| true)["parked"];
    let mut stray = Segment::new(([198, 18, 1, 77], 40123), (TARGET_IP.octets(), 80));
    stray.flags = ACK;
    RawIpSender::open(&lab, Host::Online).send(&stray.packet());
    intercept.wait_stats("the target's RST to the stray segment", |s| {
        s["parked"] > parked_before
    });
    let (status, _) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit {status}");
    let (status, istats) = intercept.stop();
    assert!(status.success(), "intercept exit {status}");
    let file = cap.finish();

    let leaked = count(&file, "src port 80 and dst net 198.18.1.0/24");
    let to_lan_client = count(&file, "src port 80 and dst host 198.18.2.1");
    println!(
        "egress: 20/20 replayed, replies on the LAN to replayed clients: {leaked}, to the \
         target's own client: {to_lan_client}; intercept reported={} unclaimed={}",
        istats["xdp_reported"], istats["xdp_unclaimed"]
    );
    assert_eq!(
        leaked, 0,
        "replies to replayed clients left the target: {istats:?}"
    );
    assert!(
        to_lan_client > 0,
        "the capture sees the target's replies when they do leave"
    );
    assert!(istats["xdp_reported"] > 40, "{istats:?}");
    assert!(
        istats["xdp_unclaimed"] > 0,
        "the LAN client's replies: {istats:?}"
    );
    assert_eq!(istats["xdp_ring_full"], 0, "{istats:?}");
}

#[test]
fn killing_intercept_takes_its_program_away_and_replies_flow_again() {
    let lab = lab();
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    assert_eq!(egress_programs(&lab), 0);
    let intercept = InterceptProcess::start_egress(
        &lab,
        &["--target", "198.18.2.2:80", "--clients", "198.18.1.0/24"],
    );
    assert_eq!(egress_programs(&lab), 1, "the TC program is attached");
    // A client in the claimed range that is not replayed: the online host
    // from its production address. Its replies are taken while intercept
    // runs (as the assistant's route would take them) ...
    let from_range = ["--interface", "198.18.1.1"];
    let url = format!("http://{TARGET_IP}/claimed");
    assert!(
        !curl_ok(&lab, Host::Online, &from_range, &url),
        "replies to the client range are taken while intercept runs"
    );
    let status = intercept.kill();
    assert!(!status.success(), "killed: {status}");
    // ... and the moment it is gone (however it died), nothing is.
    wait_until(
        "the TC program to go with intercept",
        DEADLINE,
        || match egress_programs(&lab) {
            0 => Ok(()),
            n => Err(format!("{n} programs")),
        },
    );
    assert!(
        curl_ok(&lab, Host::Online, &from_range, &url),
        "replies flow again once intercept is gone"
    );
}

#[test]
fn a_target_that_cannot_answer_is_diagnosed_with_the_egress_causes() {
    let lab = lab();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let _target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    // No route at all for the clients: the target cannot send a reply.
    lab.run(Host::Target, &["ip", "route", "del", "default"]);
    let _intercept = InterceptProcess::start_egress(
        &lab,
        &["--target", "198.18.2.2:80", "--clients", "198.18.1.0/24"],
    );
    let mut tcpcopy = start_tcpcopy(&lab);
    tcpcopy.wait_log("intercept answered the version query");
    for i in 0..25 {
        let url = format!("http://{ONLINE_IP}/missed/{i}");
        lab.run(Host::Client, &["curl", "-sf", "-o", "/dev/null", &url]);
    }
    assert_eq!(online.requests().len(), 25, "production is not affected");
    let line = tcpcopy.wait_log("no handshake answered");
    println!("diagnosed: {line}");
    let route = line.find("no route at all").expect(&line);
    let filter = line.find("filter does not match").expect(&line);
    assert!(route < filter, "the missing route first: {line}");
    assert!(line.contains("does not claim these clients"), "{line}");
    assert!(!line.contains("via the assistant"), "{line}");
    let (status, _) = tcpcopy.stop();
    assert!(status.success());
}

#[test]
fn payloads_of_large_replies_are_copied_whole_on_the_target() {
    let lab = lab();
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let body: Vec<u8> = (0..12_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    // The stimulus this test needs is a GSO reply larger than a page. How
    // large the stack builds one follows its pacing rate, which follows
    // the RTT it measured: on a loaded machine that can shrink to two
    // segments. A larger initial window keeps the first flight's packets
    // large however slow the measured RTT (it changes nothing else here).
    lab.run(
        Host::Target,
        &[
            "ip",
            "route",
            "change",
            "default",
            "via",
            "198.18.2.1",
            "initcwnd",
            "40",
        ],
    );
    std::fs::write(target.files.join("big.txt"), &body).unwrap();
    let _intercept = InterceptProcess::start_egress(
        &lab,
        &["--target", "198.18.2.2:80", "--clients", "198.18.1.0/24"],
    );
    let mut peer = TcpcopyPeer::connect_to(
        &lab,
        std::net::SocketAddrV4::new(TARGET_IP, tcpcopy_common::proto::INTERCEPT_PORT),
    );
    peer.hello();
    peer.request_payloads(65_535);
    let session = ClientSession::new(([198, 18, 1, 120], 40000), (TARGET_IP.octets(), 80));
    peer.announce(&session);
    wait_until("the payload grant", DEADLINE, || {
        peer.poll();
        peer.granted.ok_or_else(|| "no grant yet".to_owned())
    });
    let sender = RawIpSender::open(&lab, Host::Online);
    sender.send(&session.syn().packet());
    let syn_ack = peer.wait_record(&session, "the SYN-ACK record", |r| {
        r.tcp_flags() & (SYN | ACK) == SYN | ACK
    });
    let request = b"GET /files/big.txt HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
    sender.send(&session.request(&syn_ack, request).packet());
    // The response's bytes, placed by sequence number (the window of the
    // SYN covers it all: no ACKs needed).
    let start = syn_ack.seq().wrapping_add(1);
    let response = wait_until("the whole response in payload records", DEADLINE, || {
        peer.poll();
        let mut bytes = Vec::new();
        let mut largest = 0;
        for (rec, payload) in peer.records.iter().zip(&peer.payloads) {
            let Some((stored, len)) = payload else {
                continue;
            };
            if !session.owns(rec) || *len == 0 {
                continue;
            }
            assert_eq!(stored.len() as u32, *len, "cut below the granted cap");
            largest = largest.max(*len);
            let at = rec.seq().wrapping_sub(start) as usize;
            if bytes.len() < at + stored.len() {
                bytes.resize(at + stored.len(), 0);
            }
            bytes[at..at + stored.len()].copy_from_slice(stored);
        }
        let text = String::from_utf8_lossy(&bytes);
        match text.find("\r\n\r\n") {
            Some(h) if bytes.len() >= h + 4 + body.len() => Ok((bytes[h + 4..].to_vec(), largest)),
            _ => Err(format!("{} bytes so far", bytes.len())),
        }
    });
    let (got, largest) = response;
    println!(
        "egress payloads: response body {} bytes, largest record {largest} bytes",
        got.len()
    );
    assert!(got == body, "the body as nginx sent it");
    assert!(
        largest > 4096,
        "a GSO packet (larger than a page, its payload in page fragments) was copied whole: \
         largest {largest}"
    );
}

#[test]
fn ipv6_replies_to_replayed_clients_never_leave_the_target() {
    let lab = Lab::with(LabSpec {
        no_assistant: true,
        ipv6: true,
        ..LabSpec::default()
    });
    // Any IPv6 destination is reachable (the lab routes only the client
    // range): an announced client outside it must be too.
    lab.run(
        Host::Target,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
        ],
    );
    let server = HttpResponder::start(
        &lab,
        Host::Target,
        &[SocketAddr::new(TARGET6_IP.into(), 80)],
    );
    let cap = Tcpdump::start(
        &lab,
        Host::Lan,
        "target",
        "egress6.pcap",
        &[],
        "ip6 and src host 2001:db8:2::2",
    );
    let intercept = InterceptProcess::start_egress(
        &lab,
        &[
            "--target",
            "[::]:80",
            "--clients",
            "2001:db8:1::/64,announced",
            "--stats-interval",
            "1",
        ],
    );
    let mut peer = TcpcopyPeer::connect_to(
        &lab,
        std::net::SocketAddrV4::new(TARGET_IP, tcpcopy_common::proto::INTERCEPT_PORT),
    );
    peer.hello();
    let target = (TARGET6_IP.octets(), 80);
    let mut in_range = CLIENT6_IP.octets();
    in_range[15] = 0x77;
    let ranged = ClientSession6::new((in_range, 40000), target);
    let outside: [u8; 16] = "2001:db8:7::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let announced = ClientSession6::new((outside, 40001), target);
    peer.announce6(&ranged);
    peer.announce6(&announced);
    intercept.wait_stats("both IPv6 announcements", |s| s["announced6"] == 2);
    let sender = RawIpSender::open6(&lab, Host::Online);
    for session in [&ranged, &announced] {
        sender.send(&session.syn().packet());
        let syn_ack = peer.wait_record6(session, "the IPv6 SYN-ACK record", |r| {
            r.tcp_flags() & (SYN | ACK) == SYN | ACK
        });
        let request = b"GET /egress6 HTTP/1.1\r\nHost: lab\r\n\r\n";
        sender.send(&session.request(&syn_ack, request).packet());
        peer.wait_record6(session, "the IPv6 response's record", |r| {
            r.payload_len() == Some(HttpResponder::RESPONSE.len())
        });
        peer.wait_record6(session, "the IPv6 FIN record", |r| r.tcp_flags() & FIN != 0);
        let next = session.isn.wrapping_add(1 + request.len() as u32);
        sender.send(&session.rst(next).packet());
    }
    // The target's own IPv6 client (the online host's LAN address,
    // neither in the range nor announced) is answered as always.
    assert!(
        curl_ok(&lab, Host::Online, &["-g"], "http://[2001:db8:2::2]/own6"),
        "a client of the target outside the replayed range is answered over IPv6"
    );
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    let (status, istats) = intercept.stop();
    assert!(status.success(), "intercept exit {status}");
    let file = cap.finish();
    let leaked_range = count(&file, "src port 80 and dst net 2001:db8:1::/64");
    let leaked_announced = count(&file, "src port 80 and dst host 2001:db8:7::7");
    let to_own_client = count(&file, "src port 80 and dst host 2001:db8:2::1");
    assert_eq!(
        (leaked_range, leaked_announced),
        (0, 0),
        "IPv6 replies to replayed clients left the target: {istats:?}"
    );
    assert!(
        to_own_client > 0,
        "the capture sees the target's own replies"
    );
    peer.poll();
    let records6 = peer.records6.len() as u64;
    assert!(records6 >= 8, "{records6} IPv6 records");
    assert_eq!(istats["xdp_matched6"], records6, "{istats:?}");
    assert_eq!(istats["xdp_reported"], records6, "{istats:?}");
    assert!(istats["xdp_unclaimed"] > 0, "{istats:?}");
    assert_eq!(istats["announced6"], 2);
}
