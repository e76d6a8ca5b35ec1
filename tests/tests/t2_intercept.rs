//! T2: intercept in the lab. nginx on the target answers sessions that a
//! tcpcopy stand-in replays by hand from the online host with raw packets
//! (client addresses in 198.18.1.0/24 the online host does not own); the
//! target routes its replies to the assistant, where the real `intercept`
//! binary drops them and reports their headers to the tcpcopy connection
//! that announced each session. Every reply is compared byte for byte with
//! what a tap on the target's NIC saw leave. In the IPv6 lab, IPv6 replies
//! go to the peer that announced them with `Add6`, in IPv6 frames, and a
//! 1.x peer beside it keeps seeing 1.x frames only.

use std::net::SocketAddr;

use tcpcopy_common::proto::{CAP_IPV6, ClientMsg, HeaderRecord, HeaderRecord6};
use tcpcopy_tests::{
    flood::{FloodPlan, TestRunFrames, mac_of},
    frames::{ACK, FIN, SYN},
    intercept::{
        ClientSession, ClientSession6, HttpResponder, InterceptProcess, StatsLine, TcpcopyPeer,
        expected_record, expected_record6, seq_ack6,
    },
    lab::{ASSISTANT_IP, CLIENT6_IP, Host, Lab, LabSpec, TARGET_IP, TARGET6_IP},
    raw::{Direction, PacketTap, RawIpSender},
    servers::{Nginx, start_nginx},
    wait::{DEADLINE, wait_until},
};

const TARGET: ([u8; 4], u16) = ([198, 18, 2, 2], 80);

/// A lab with nginx on the target, whose NIC sends frames as a wire carries
/// them (no offloads: the tap sees the final bytes), a tap on that NIC and
/// one on the online host's LAN side.
struct Scene {
    lab: Lab,
    nginx: Nginx,
    target_tap: PacketTap,
    online_tap: PacketTap,
    sender: RawIpSender,
    /// Every reply the target sent so far (from the tap), oldest first.
    sent_by_target: Vec<HeaderRecord>,
}

impl Scene {
    fn new() -> Self {
        let lab = Lab::new();
        // Why not the default offloads: the test compares intercept's
        // records with what the target sent, read by a tap on the target's
        // own NIC, which sees frames before the NIC would segment them and
        // finish their checksums. With the offloads off, what the tap sees
        // is what goes on the wire (and what intercept reports). The
        // default offloads are covered end to end by t2_matrix.
        lab.run(
            Host::Target,
            &[
                "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
            ],
        );
        let nginx = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
        let target_tap = PacketTap::open(&lab, Host::Target, "eth0");
        let online_tap = PacketTap::open(&lab, Host::Online, "eth1");
        let sender = RawIpSender::open(&lab, Host::Online);
        Self {
            lab,
            nginx,
            target_tap,
            online_tap,
            sender,
            sent_by_target: Vec::new(),
        }
    }

    fn intercept(&self, args: &[&str]) -> InterceptProcess {
        let mut all = vec!["--target", "198.18.2.2:80"];
        all.extend_from_slice(args);
        InterceptProcess::start(&self.lab, &all)
    }

    /// The replies of `session` the target has sent, as records.
    fn replies_of(&mut self, session: &ClientSession) -> Vec<HeaderRecord> {
        for (dir, frame) in self.target_tap.frames() {
            if dir == Direction::Outgoing
                && let Some(rec) = expected_record(&frame)
                && (rec.src_addr(), rec.src_port()) == TARGET
            {
                self.sent_by_target.push(rec);
            }
        }
        self.sent_by_target
            .iter()
            .filter(|r| session.owns(r))
            .copied()
            .collect()
    }

    /// Waits until `peer` has received exactly the replies the target sent
    /// for `session`, in order.
    fn assert_peer_got_exactly(&mut self, peer: &mut TcpcopyPeer, session: &ClientSession) {
        let what = format!("the replies of {session:?} at their peer");
        let got = wait_until(&what, DEADLINE, || {
            let sent = self.replies_of(session);
            let got = peer.records_of(session);
            if !sent.is_empty() && got == sent {
                Ok(got)
            } else {
                Err(format!("target sent {sent:?}\npeer got {got:?}"))
            }
        });
        assert!(!got.is_empty());
    }

    /// SYN, wait for the SYN-ACK record at `peer`, send the request, wait
    /// for the response data and the target's FIN, reset. Returns the
    /// SYN-ACK record.
    fn run_http_session(
        &mut self,
        peer: &mut TcpcopyPeer,
        session: &ClientSession,
        path: &str,
    ) -> HeaderRecord {
        self.sender.send(&session.syn().packet());
        let syn_ack = peer.wait_record(session, "the SYN-ACK record", |r| {
            r.tcp_flags() & (SYN | ACK) == SYN | ACK
        });
        assert_eq!(syn_ack.ack_seq(), session.isn.wrapping_add(1));
        let request = format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
        self.sender
            .send(&session.request(&syn_ack, request.as_bytes()).packet());
        let data = peer.wait_record(session, "the response's record", |r| {
            r.payload_len().is_some_and(|n| n > 0)
        });
        assert!(data.seq() == syn_ack.seq().wrapping_add(1));
        peer.wait_record(session, "the target's FIN record", |r| {
            r.tcp_flags() & FIN != 0
        });
        let next = session.isn.wrapping_add(1 + request.len() as u32);
        self.sender.send(&session.rst(next).packet());
        syn_ack
    }

    /// TCP frames from the target that reached the online host.
    fn replies_seen_by_online(&self) -> usize {
        self.online_tap
            .frames()
            .iter()
            .filter_map(|(_, frame)| expected_record(frame))
            .filter(|r| (r.src_addr(), r.src_port()) == TARGET)
            .count()
    }
}

fn stat(stats: &StatsLine, key: &str) -> u64 {
    *stats
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {stats:?}"))
}

/// Frames the XDP program dropped on the assistant's eth0, as the veth
/// driver counts them (`rx_queue_N_xdp_drops`), independently of intercept.
fn assistant_xdp_drops(lab: &Lab) -> u64 {
    lab.run(Host::Assistant, &["ethtool", "-S", "eth0"])
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("rx_queue_") && k.ends_with("_xdp_drops"))
        .map(|(_, v)| v.trim().parse::<u64>().expect("a counter"))
        .sum()
}

/// Whether XDP is attached to the assistant's eth0.
fn xdp_attached(lab: &Lab) -> bool {
    lab.run(Host::Assistant, &["ip", "link", "show", "dev", "eth0"])
        .contains("xdp")
}

#[test]
fn replies_vanish_on_the_assistant_and_reach_the_peer_that_announced_them() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1"]);
    assert!(xdp_attached(&scene.lab));
    let mut a = TcpcopyPeer::connect(&scene.lab);
    let mut b = TcpcopyPeer::connect(&scene.lab);
    a.hello();
    b.hello();
    let a1 = ClientSession::new(([198, 18, 1, 101], 40001), TARGET);
    let a2 = ClientSession::new(([198, 18, 1, 101], 40002), TARGET);
    let b1 = ClientSession::new(([198, 18, 1, 102], 40001), TARGET);
    for s in [&a1, &a2] {
        a.announce(s);
    }
    b.announce(&b1);
    intercept.wait_stats("three announcements", |s| stat(s, "announced") == 3);

    scene.run_http_session(&mut a, &a1, "/a1");
    scene.run_http_session(&mut b, &b1, "/b1");
    scene.run_http_session(&mut a, &a2, "/a2");
    scene.assert_peer_got_exactly(&mut a, &a1);
    scene.assert_peer_got_exactly(&mut a, &a2);
    scene.assert_peer_got_exactly(&mut b, &b1);
    // Each peer got its own sessions' replies and nothing else.
    a.poll();
    b.poll();
    assert!(a.records.iter().all(|r| a1.owns(r) || a2.owns(r)));
    assert!(b.records.iter().all(|r| b1.owns(r)));
    // nginx answered all three requests.
    let mut requests = scene.nginx.requests();
    requests.sort();
    assert_eq!(requests, ["GET /a1 200", "GET /a2 200", "GET /b1 200"]);
    // Nothing reached the client side: every reply died in XDP on the
    // assistant (the driver's own drop counter), none reached online.
    assert_eq!(scene.replies_seen_by_online(), 0);
    a.poll();
    b.poll();
    let reports = (a.records.len() + b.records.len()) as u64;
    assert_eq!(assistant_xdp_drops(&scene.lab), reports);

    let pid_file = intercept.pid_file.clone();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        intercept.pid().to_string()
    );
    let (status, stats) = intercept.stop();
    assert!(status.success(), "intercept exited with {status}");
    a.poll();
    b.poll();
    assert_eq!((a.records.len() + b.records.len()) as u64, reports);
    assert_eq!(stat(&stats, "xdp_matched"), reports, "{stats:?}");
    assert_eq!(stat(&stats, "xdp_reported"), reports);
    assert_eq!(stat(&stats, "xdp_ring_full"), 0);
    assert_eq!(stat(&stats, "xdp_malformed"), 0);
    assert_eq!(stat(&stats, "ring_records"), reports);
    assert_eq!(stat(&stats, "delivered"), reports);
    assert_eq!(stat(&stats, "dropped"), 0);
    assert_eq!(stat(&stats, "peers_accepted"), 2);
    // Stopped cleanly: XDP detached, pid file gone.
    assert!(!xdp_attached(&scene.lab), "XDP still attached after exit");
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn a_syn_ack_that_beats_its_client_add_is_parked_then_delivered_first() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1", "--park-timeout", "60000"]);
    let mut peer = TcpcopyPeer::connect(&scene.lab);
    peer.hello();
    let session = ClientSession::new(([198, 18, 1, 103], 40003), TARGET);
    scene.sender.send(&session.syn().packet());
    intercept.wait_stats("the SYN-ACK parked", |s| stat(s, "parked_now") >= 1);
    assert!(
        peer.records_of(&session).is_empty(),
        "delivered without a route"
    );

    peer.announce(&session);
    let first = peer.wait_record(&session, "the parked SYN-ACK", |_| true);
    let sent = scene.replies_of(&session);
    assert_eq!(
        first, sent[0],
        "the first reply the target sent comes first"
    );
    assert_eq!(first.tcp_flags(), SYN | ACK);
    scene.sender.send(&session.rst(session.isn + 1).packet());
    scene.assert_peer_got_exactly(&mut peer, &session);

    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert!(stat(&stats, "parked") >= 1, "{stats:?}");
    assert_eq!(stat(&stats, "unparked"), stat(&stats, "parked"));
    assert_eq!(stat(&stats, "expired"), 0);
}

#[test]
fn parked_replies_whose_route_never_comes_expire() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1", "--park-timeout", "100"]);
    let session = ClientSession::new(([198, 18, 1, 104], 40004), TARGET);
    scene.sender.send(&session.syn().packet());
    intercept.wait_stats("the parked SYN-ACK expired", |s| {
        stat(s, "expired") >= 1 && stat(s, "parked_now") == 0
    });
    scene.sender.send(&session.rst(session.isn + 1).packet());
    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert_eq!(stat(&stats, "unparked"), 0);
    assert_eq!(stat(&stats, "delivered"), 0);
    assert!(!scene.replies_of(&session).is_empty());
}

#[test]
fn peers_sending_garbage_or_nothing_are_closed_and_the_others_keep_their_records() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--hello-timeout", "1"]);
    let mut good = TcpcopyPeer::connect(&scene.lab);
    good.hello();
    let session = ClientSession::new(([198, 18, 1, 105], 40005), TARGET);
    good.announce(&session);

    let mut garbage = TcpcopyPeer::connect(&scene.lab);
    garbage.hello();
    garbage.send_bytes(&[0xde; 14]);
    garbage.wait_closed();
    intercept.wait_log("protocol error: unknown message type 57054");

    // Connected, never a word: closed when the hello is overdue.
    let mut silent = TcpcopyPeer::connect(&scene.lab);
    silent.wait_closed();
    intercept.wait_log("no hello within 1s");

    let mut no_hello = TcpcopyPeer::connect(&scene.lab);
    no_hello.send_bytes(&ClientMsg::add([198, 18, 1, 9], 1, [198, 18, 2, 2], 80).encode());
    no_hello.wait_closed();
    intercept.wait_log("the first message is not a hello");

    scene.run_http_session(&mut good, &session, "/after-garbage");
    scene.assert_peer_got_exactly(&mut good, &session);
    assert!(good.poll(), "the good peer is still connected");

    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert_eq!(stat(&stats, "peers_failed"), 3, "{stats:?}");
    assert_eq!(stat(&stats, "dropped"), 0);
}

#[test]
fn a_peer_that_disconnects_mid_message_loses_only_its_own_routes() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1"]);
    let mut good = TcpcopyPeer::connect(&scene.lab);
    good.hello();
    let kept = ClientSession::new(([198, 18, 1, 106], 40006), TARGET);
    good.announce(&kept);

    let lost = ClientSession::new(([198, 18, 1, 107], 40007), TARGET);
    {
        let mut quitter = TcpcopyPeer::connect(&scene.lab);
        quitter.hello();
        quitter.announce(&lost);
        let next = ClientMsg::add([198, 18, 1, 107], 40008, [198, 18, 2, 2], 80).encode();
        quitter.send_bytes(&next[..7]);
    }
    intercept.wait_log("closed mid-message (7 of 14 bytes)");

    // The quitter's session has no owner any more: its SYN-ACK is parked,
    // never delivered to anyone.
    scene.sender.send(&lost.syn().packet());
    intercept.wait_stats("the orphan SYN-ACK parked", |s| stat(s, "parked") >= 1);
    scene.sender.send(&lost.rst(lost.isn + 1).packet());

    scene.run_http_session(&mut good, &kept, "/kept");
    scene.assert_peer_got_exactly(&mut good, &kept);
    assert!(good.records_of(&lost).is_empty());

    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert_eq!(stat(&stats, "peers_failed"), 1, "{stats:?}");
    assert_eq!(stat(&stats, "unparked"), 0);
}

#[test]
fn a_hundred_peers_connecting_at_once_each_get_their_own_records() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1"]);
    let mut main_peer = TcpcopyPeer::connect(&scene.lab);
    main_peer.hello();
    let main_session = ClientSession::new(([198, 18, 1, 108], 40100), TARGET);
    main_peer.announce(&main_session);
    // The main session is under way while the others connect.
    scene.sender.send(&main_session.syn().packet());
    let syn_ack = main_peer.wait_record(&main_session, "the main SYN-ACK", |_| true);

    const PEERS: u16 = 100;
    let mut peers: Vec<TcpcopyPeer> = (0..PEERS)
        .map(|_| TcpcopyPeer::connect(&scene.lab))
        .collect();
    let sessions: Vec<ClientSession> = (0..PEERS)
        .map(|i| ClientSession::new(([198, 18, 1, 150], 41000 + i), TARGET))
        .collect();
    for (peer, session) in peers.iter_mut().zip(&sessions) {
        peer.hello();
        peer.announce(session);
    }
    intercept.wait_stats("all announcements", |s| {
        stat(s, "announced") == u64::from(PEERS) + 1 && stat(s, "peers") == u64::from(PEERS) + 1
    });

    let request = b"GET /main HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
    scene
        .sender
        .send(&main_session.request(&syn_ack, request).packet());
    for session in &sessions {
        scene.sender.send(&session.syn().packet());
    }
    for (peer, session) in peers.iter_mut().zip(&sessions) {
        let rec = peer.wait_record(session, "a SYN-ACK per peer", |r| {
            r.tcp_flags() == SYN | ACK
        });
        assert_eq!(rec.ack_seq(), session.isn + 1);
        scene.sender.send(&session.rst(session.isn + 1).packet());
    }
    main_peer.wait_record(&main_session, "the main FIN", |r| r.tcp_flags() & FIN != 0);
    let next = main_session.isn + 1 + request.len() as u32;
    scene.sender.send(&main_session.rst(next).packet());

    scene.assert_peer_got_exactly(&mut main_peer, &main_session);
    for (peer, session) in peers.iter_mut().zip(&sessions) {
        scene.assert_peer_got_exactly(peer, session);
        assert!(peer.records.iter().all(|r| session.owns(r)));
    }
    let (status, stats) = intercept.stop();
    assert!(status.success());
    for key in ["dropped", "peers_failed", "peers_refused", "xdp_ring_full"] {
        assert_eq!(stat(&stats, key), 0, "{key}: {stats:?}");
    }
    assert_eq!(stat(&stats, "delivered"), stat(&stats, "ring_records"));
}

#[test]
fn as_a_daemon_it_writes_its_pid_file_and_stops_cleanly_on_sigterm() {
    let scene = Scene::new();
    let dir = scene.lab.dir();
    let log = dir.join("daemon.log");
    let pid_file = dir.join("daemon.pid");
    let bin = tcpcopy_tests::intercept::intercept_binary()
        .to_string_lossy()
        .into_owned();
    let (log_arg, pid_arg) = (log.to_string_lossy(), pid_file.to_string_lossy());
    let out = scene.lab.output(
        Host::Assistant,
        &[
            &bin,
            "-i",
            "eth0",
            "-b",
            "198.18.2.3",
            "-F",
            "tcp and src port 80 and src host 198.18.2.2",
            "-d",
            "-l",
            &log_arg,
            "-P",
            &pid_arg,
        ],
    );
    assert!(
        out.status.success(),
        "the foreground process exits 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = wait_until("the pid file", DEADLINE, || {
        std::fs::read_to_string(&pid_file)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())
    });
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
    };
    assert!(alive(pid), "the daemon runs");
    assert!(xdp_attached(&scene.lab));
    scene.lab.wait_for_port(
        Host::Assistant,
        std::net::SocketAddrV4::new(ASSISTANT_IP, 36524),
    );
    let mut peer = TcpcopyPeer::connect(&scene.lab);
    peer.hello();
    assert!(peer.poll());

    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_until("the daemon to exit", DEADLINE, || {
        if alive(pid) {
            Err("running".to_owned())
        } else {
            Ok(())
        }
    });
    peer.wait_closed();
    assert!(!pid_file.exists(), "pid file removed at exit");
    assert!(!xdp_attached(&scene.lab), "XDP detached at exit");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("final stats: "), "{text}");
    assert!(text.contains("reply program detached"), "{text}");
}

#[test]
fn a_bad_interface_is_a_clear_error_not_a_hang() {
    let scene = Scene::new();
    let bin = tcpcopy_tests::intercept::intercept_binary()
        .to_string_lossy()
        .into_owned();
    let out = scene.lab.output(
        Host::Assistant,
        &[&bin, "-i", "nosuch0", "--target", "198.18.2.2:80"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot attach XDP to nosuch0"), "{stderr}");
}

#[test]
fn a_slow_peer_loses_its_own_records_and_never_holds_up_the_others() {
    let scene = Scene::new();
    // 1 MiB per peer holds a burst of test-run frames (4096 records, 270 KB)
    // but not what the slow peer would need.
    let intercept = scene.intercept(&["--peer-buffer", "1M", "--stats-interval", "1"]);
    let stuck = ClientSession::new(([198, 18, 1, 110], 40110), TARGET);
    let busy = ClientSession::new(([198, 18, 1, 111], 40111), TARGET);
    // The slow peer announces its session and then never reads.
    let mut slow = TcpcopyPeer::connect(&scene.lab);
    slow.hello();
    slow.announce(&stuck);
    let mut good = TcpcopyPeer::connect(&scene.lab);
    good.hello();
    good.announce(&busy);
    intercept.wait_stats("both announcements", |s| stat(s, "announced") == 2);

    // Many more replies (6.7 MB) than a stuck socket and its output buffer hold,
    // alternating between the two sessions (test-run frames: no loss on the
    // way to XDP, so every one of them must be accounted for).
    const PER_SESSION: u64 = 25 * TestRunFrames::CHUNK;
    let plan = FloodPlan {
        target: TARGET,
        clients: vec![stuck.client, busy.client],
        frames: 2 * PER_SESSION,
        rate: Some(100_000),
    };
    let runs = TestRunFrames::attached_to(&scene.lab, Host::Assistant, "eth0");
    let (src, dst) = (
        mac_of(&scene.lab, Host::Target, "eth0"),
        mac_of(&scene.lab, Host::Assistant, "eth0"),
    );
    std::thread::scope(|threads| {
        let lab = &scene.lab;
        let flood = threads.spawn(move || {
            let _ns = lab.enter(Host::Assistant);
            runs.flood(&plan, src, dst)
        });
        // The good peer reads all the time (as tcpcopy does), the slow one
        // never does.
        let start = std::time::Instant::now();
        while (good.records.len() as u64) < PER_SESSION && start.elapsed() < DEADLINE {
            if !good.poll() {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(
            good.records_of(&busy).len() as u64,
            PER_SESSION,
            "every reply of the busy session reaches the good peer"
        );
        assert_eq!(flood.join().expect("the flood").sent, 2 * PER_SESSION);
    });
    assert!(good.records.iter().all(|r| busy.owns(r)));
    let stats = intercept.wait_stats("the slow peer's overflow counted", |s| {
        stat(s, "dropped_slow") > 0
    });
    assert_eq!(stat(&stats, "peers"), 2, "the slow peer is still connected");

    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert_eq!(stat(&stats, "xdp_ring_full"), 0, "{stats:?}");
    assert_eq!(stat(&stats, "ring_records"), 2 * PER_SESSION);
    // Every record was delivered or dropped for the slow peer: either as
    // overflow, or still queued for it when intercept stopped.
    assert_eq!(
        stat(&stats, "delivered") + stat(&stats, "dropped_slow") + stat(&stats, "dropped_closed"),
        2 * PER_SESSION,
        "{stats:?}"
    );
    assert!(stat(&stats, "dropped_slow") > PER_SESSION / 2, "{stats:?}");
}

#[test]
fn a_peer_that_asks_gets_reply_payloads_and_a_1x_peer_keeps_1x_frames() {
    let mut scene = Scene::new();
    let intercept = scene.intercept(&["--stats-interval", "1"]);
    let mut legacy = TcpcopyPeer::connect(&scene.lab);
    let mut asking = TcpcopyPeer::connect(&scene.lab);
    legacy.hello();
    asking.hello();
    asking.request_payloads(16);
    let l1 = ClientSession::new(([198, 18, 1, 111], 40001), TARGET);
    let p1 = ClientSession::new(([198, 18, 1, 112], 40001), TARGET);
    legacy.announce(&l1);
    asking.announce(&p1);
    intercept.wait_log("payloads granted");
    intercept.wait_stats("two announcements", |s| stat(s, "announced") == 2);
    scene.run_http_session(&mut legacy, &l1, "/legacy");
    scene.run_http_session(&mut asking, &p1, "/asking");
    scene.assert_peer_got_exactly(&mut legacy, &l1);
    scene.assert_peer_got_exactly(&mut asking, &p1);
    asking.poll();
    assert_eq!(asking.granted, Some(16));
    // The 1.x peer decoded everything as 1.x frames (an extension frame
    // would have failed its decoder) and never got a payload.
    legacy.poll();
    assert!(legacy.payloads.iter().all(Option::is_none));
    // The asking peer got every record as a payload record; the one with
    // the HTTP response carries its first 16 bytes and the whole length.
    assert!(asking.payloads.iter().all(Option::is_some));
    let with_data: Vec<&(Vec<u8>, u32)> = asking
        .payloads
        .iter()
        .flatten()
        .filter(|(_, len)| *len > 0)
        .collect();
    assert!(!with_data.is_empty(), "{:?}", asking.payloads);
    let (bytes, len) = with_data[0];
    assert_eq!(
        &bytes[..],
        b"HTTP/1.1 200 OK\r",
        "cut at the 16 granted bytes"
    );
    assert!(*len > 100, "the whole response length: {len}");
    let (status, stats) = intercept.stop();
    assert!(status.success());
    assert_eq!(stat(&stats, "dropped"), 0, "{stats:?}");
}

/// The IPv6 lab's scene: the target answers HTTP on both families (its
/// NIC's offloads off, as in [`Scene`]), taps on the target and on the
/// online host's LAN side, raw senders of both families on the online host.
struct Scene6 {
    lab: Lab,
    server: HttpResponder,
    target_tap: PacketTap,
    online_tap: PacketTap,
    sender: RawIpSender,
    sender6: RawIpSender,
    /// Every reply the target sent so far (from the tap), oldest first.
    sent4: Vec<HeaderRecord>,
    sent6: Vec<HeaderRecord6>,
}

const TARGET6: ([u8; 16], u16) = ([0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 80);

/// An address in the IPv6 client range (2001:db8:1::/64).
fn client6(last: u8) -> [u8; 16] {
    let mut a = CLIENT6_IP.octets();
    a[15] = last;
    a
}

impl Scene6 {
    fn new() -> Self {
        let lab = Lab::with(LabSpec {
            ipv6: true,
            ..LabSpec::default()
        });
        // As in Scene::new: the tap on the target's NIC then sees the
        // bytes that go on the wire.
        lab.run(
            Host::Target,
            &[
                "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
            ],
        );
        let server = HttpResponder::start(
            &lab,
            Host::Target,
            &[
                SocketAddr::new(TARGET6_IP.into(), 80),
                SocketAddr::new(TARGET_IP.into(), 80),
            ],
        );
        let target_tap = PacketTap::open(&lab, Host::Target, "eth0");
        let online_tap = PacketTap::open(&lab, Host::Online, "eth1");
        let sender = RawIpSender::open(&lab, Host::Online);
        let sender6 = RawIpSender::open6(&lab, Host::Online);
        Self {
            lab,
            server,
            target_tap,
            online_tap,
            sender,
            sender6,
            sent4: Vec::new(),
            sent6: Vec::new(),
        }
    }

    fn read_tap(&mut self) {
        for (dir, frame) in self.target_tap.frames() {
            if dir != Direction::Outgoing {
                continue;
            }
            if let Some(rec) = expected_record6(&frame)
                && (rec.src_addr(), rec.src_port()) == TARGET6
            {
                self.sent6.push(rec);
            } else if let Some(rec) = expected_record(&frame)
                && (rec.src_addr(), rec.src_port()) == TARGET
            {
                self.sent4.push(rec);
            }
        }
    }

    fn replies_of6(&mut self, session: &ClientSession6) -> Vec<HeaderRecord6> {
        self.read_tap();
        self.sent6
            .iter()
            .filter(|r| session.owns(r))
            .copied()
            .collect()
    }

    fn replies_of(&mut self, session: &ClientSession) -> Vec<HeaderRecord> {
        self.read_tap();
        self.sent4
            .iter()
            .filter(|r| session.owns(r))
            .copied()
            .collect()
    }

    /// The IPv6 session's handshake, request, response and FIN, then a
    /// reset; the records are waited for at `peer`.
    fn run_http_session6(&mut self, peer: &mut TcpcopyPeer, session: &ClientSession6, path: &str) {
        self.sender6.send(&session.syn().packet());
        let syn_ack = peer.wait_record6(session, "the IPv6 SYN-ACK record", |r| {
            r.tcp_flags() & (SYN | ACK) == SYN | ACK
        });
        assert_eq!(seq_ack6(&syn_ack).1, session.isn.wrapping_add(1));
        let request = format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n");
        self.sender6
            .send(&session.request(&syn_ack, request.as_bytes()).packet());
        let data = peer.wait_record6(session, "the IPv6 response's record", |r| {
            r.payload_len().is_some_and(|n| n > 0)
        });
        assert_eq!(
            data.payload_len(),
            Some(HttpResponder::RESPONSE.len()),
            "{data:?}"
        );
        assert_eq!(seq_ack6(&data).0, seq_ack6(&syn_ack).0.wrapping_add(1));
        peer.wait_record6(session, "the target's IPv6 FIN record", |r| {
            r.tcp_flags() & FIN != 0
        });
        let next = session.isn.wrapping_add(1 + request.len() as u32);
        self.sender6.send(&session.rst(next).packet());
    }

    /// As [`Scene::run_http_session`], over IPv4 in this lab.
    fn run_http_session(&mut self, peer: &mut TcpcopyPeer, session: &ClientSession, path: &str) {
        self.sender.send(&session.syn().packet());
        let syn_ack = peer.wait_record(session, "the SYN-ACK record", |r| {
            r.tcp_flags() & (SYN | ACK) == SYN | ACK
        });
        let request = format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n");
        self.sender
            .send(&session.request(&syn_ack, request.as_bytes()).packet());
        peer.wait_record(session, "the target's FIN record", |r| {
            r.tcp_flags() & FIN != 0
        });
        let next = session.isn.wrapping_add(1 + request.len() as u32);
        self.sender.send(&session.rst(next).packet());
    }

    /// Waits until `peer` has exactly the IPv6 replies the target sent for
    /// `session`, byte for byte, in order.
    fn assert_peer_got_exactly6(&mut self, peer: &mut TcpcopyPeer, session: &ClientSession6) {
        let what = format!("the IPv6 replies of {session:?} at their peer");
        wait_until(&what, DEADLINE, || {
            let sent = self.replies_of6(session);
            let got = peer.records6_of(session);
            if !sent.is_empty() && got == sent {
                Ok(())
            } else {
                Err(format!("target sent {sent:?}\npeer got {got:?}"))
            }
        });
    }

    fn assert_peer_got_exactly(&mut self, peer: &mut TcpcopyPeer, session: &ClientSession) {
        let what = format!("the replies of {session:?} at their peer");
        wait_until(&what, DEADLINE, || {
            let sent = self.replies_of(session);
            let got = peer.records_of(session);
            if !sent.is_empty() && got == sent {
                Ok(())
            } else {
                Err(format!("target sent {sent:?}\npeer got {got:?}"))
            }
        });
    }

    /// TCP frames of either family from the target's port 80 that reached
    /// the online host.
    fn replies_seen_by_online(&self) -> usize {
        self.online_tap
            .frames()
            .iter()
            .filter(|(_, f)| {
                expected_record6(f).is_some_and(|r| (r.src_addr(), r.src_port()) == TARGET6)
                    || expected_record(f).is_some_and(|r| (r.src_addr(), r.src_port()) == TARGET)
            })
            .count()
    }
}

#[test]
fn ipv6_replies_vanish_on_the_assistant_and_reach_only_the_peer_that_announced_them_with_add6() {
    let mut scene = Scene6::new();
    let intercept = InterceptProcess::start(
        &scene.lab,
        &[
            "--target",
            "[2001:db8:2::2]:80,198.18.2.2:80",
            "--stats-interval",
            "1",
        ],
    );
    // A current tcpcopy: asks the version (IPv6 offered), announces an
    // IPv6 and an IPv4 session. A 1.x one beside it: IPv4 only, reading
    // with a 1.x decoder (any extension frame would fail it).
    let mut modern = TcpcopyPeer::connect(&scene.lab);
    let mut legacy = TcpcopyPeer::connect(&scene.lab);
    modern.hello();
    legacy.hello();
    modern.query_version();
    let version = modern.wait_version();
    assert_ne!(version.capabilities & CAP_IPV6, 0, "{version:?}");
    let v6 = ClientSession6::new((client6(0x65), 40001), TARGET6);
    let unannounced6 = ClientSession6::new((client6(0x66), 40002), TARGET6);
    let m4 = ClientSession::new(([198, 18, 1, 101], 40003), TARGET);
    let l4 = ClientSession::new(([198, 18, 1, 102], 40004), TARGET);
    modern.announce6(&v6);
    modern.announce(&m4);
    legacy.announce(&l4);
    intercept.wait_stats("three announcements, one of them IPv6", |s| {
        stat(s, "announced") == 3 && stat(s, "announced6") == 1
    });

    scene.run_http_session6(&mut modern, &v6, "/v6");
    scene.run_http_session(&mut legacy, &l4, "/legacy");
    scene.run_http_session(&mut modern, &m4, "/m4");
    // An IPv6 session nobody announced: its SYN-ACK is parked, then
    // expires; nobody gets it.
    scene.sender6.send(&unannounced6.syn().packet());
    wait_until("the unannounced SYN-ACK left the target", DEADLINE, || {
        let sent = scene.replies_of6(&unannounced6);
        if sent.is_empty() {
            Err("nothing yet".to_owned())
        } else {
            Ok(())
        }
    });
    scene
        .sender6
        .send(&unannounced6.rst(unannounced6.isn + 1).packet());

    scene.assert_peer_got_exactly6(&mut modern, &v6);
    scene.assert_peer_got_exactly(&mut modern, &m4);
    scene.assert_peer_got_exactly(&mut legacy, &l4);
    modern.poll();
    legacy.poll();
    assert!(
        modern.records6.iter().all(|r| v6.owns(r)),
        "{:?}",
        modern.records6
    );
    assert!(modern.records.iter().all(|r| m4.owns(r)));
    // The 1.x peer read 1.x frames only and got its own session's records.
    assert!(legacy.records6.is_empty());
    assert!(legacy.records.iter().all(|r| l4.owns(r)));
    let mut requests = scene.server.requests();
    requests.sort();
    assert_eq!(
        requests,
        [
            "GET /legacy HTTP/1.1",
            "GET /m4 HTTP/1.1",
            "GET /v6 HTTP/1.1"
        ]
    );
    // Nothing reached the client side; every reply died in XDP.
    assert_eq!(scene.replies_seen_by_online(), 0);
    let v6_records = modern.records6.len() as u64;
    let v4_records = (modern.records.len() + legacy.records.len()) as u64;
    // The unannounced session's replies (a SYN-ACK, perhaps retransmitted
    // before the reset arrived) as the target's tap saw them.
    let (unannounced, matched) =
        wait_until("every reply dropped on the assistant", DEADLINE, || {
            let unannounced = scene.replies_of6(&unannounced6).len() as u64;
            let matched = v6_records + unannounced + v4_records;
            let drops = assistant_xdp_drops(&scene.lab);
            if drops == matched {
                Ok((unannounced, matched))
            } else {
                Err(format!("{drops} XDP drops, {matched} replies"))
            }
        });

    let (status, stats) = intercept.stop();
    assert!(status.success(), "intercept exited with {status}");
    assert_eq!(stat(&stats, "xdp_matched"), matched, "{stats:?}");
    assert_eq!(stat(&stats, "xdp_matched6"), v6_records + unannounced);
    assert_eq!(stat(&stats, "xdp_reported"), matched);
    assert_eq!(stat(&stats, "xdp_malformed"), 0);
    assert_eq!(stat(&stats, "ring_records"), matched);
    assert_eq!(stat(&stats, "ring_records6"), v6_records + unannounced);
    assert_eq!(stat(&stats, "delivered"), v6_records + v4_records);
    assert_eq!(
        stat(&stats, "parked"),
        unannounced,
        "the unannounced SYN-ACK"
    );
    assert_eq!(
        stat(&stats, "expired") + stat(&stats, "parked_now"),
        unannounced
    );
    assert_eq!(stat(&stats, "dropped"), 0);
    assert_eq!(stat(&stats, "announced6"), 1);
}
