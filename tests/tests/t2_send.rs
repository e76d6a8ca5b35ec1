//! T2: tcpcopy's senders in the lab. From the online host's LAN side
//! (`eth1`), each backend sends crafted client segments to the target; a
//! tap on the target's NIC sees exactly the frames that arrived, and nginx
//! answering each SYN proves the kernel took their checksums.

use std::time::{Duration, Instant};

use tcpcopy_tests::{
    flood::mac_of,
    lab::{CLIENT6_NET, Host, Lab, LabSpec, TARGET_IP, TARGET6_IP},
    raw::{Direction, PacketTap},
    send::{TARGET, open_in, outbox_of, sized, syn, syn6},
    servers::start_nginx,
    wait::{DEADLINE, wait_until},
};
use tcpcopy_user::{
    packet::{Ipv4TcpPacket, Ipv6TcpPacket, TcpFlags},
    send::{DropReason, FrameSender, MacAddr, ResolvePolicy, SendBackend, SendError, SenderConfig},
};

const BACKENDS: [SendBackend; 2] = [SendBackend::AfXdp, SendBackend::Raw];

fn mac(lab: &Lab, host: Host, iface: &str) -> MacAddr {
    MacAddr(mac_of(lab, host, iface))
}

/// The lab with nginx on the target, whose NIC sends frames as a wire
/// carries them (the tap sees final bytes), and a tap on that NIC.
struct Scene {
    lab: Lab,
    target_tap: PacketTap,
    target_mac: MacAddr,
    online_mac: MacAddr,
}

impl Scene {
    fn new() -> Self {
        Self::with(LabSpec::default())
    }

    fn with(spec: LabSpec) -> Self {
        let lab = Lab::with(spec);
        // Why not the default offloads: the target's answers are read by a
        // tap on its own NIC, which sees them before the NIC would finish
        // their checksums; with the offloads off the tap reads them as they
        // go on the wire. (What the senders put on the wire is the same
        // either way; the default offloads are covered by t2_matrix.)
        lab.run(
            Host::Target,
            &[
                "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
            ],
        );
        start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
        let target_tap = PacketTap::open(&lab, Host::Target, "eth0");
        let target_mac = mac(&lab, Host::Target, "eth0");
        let online_mac = mac(&lab, Host::Online, "eth1");
        Self {
            lab,
            target_tap,
            target_mac,
            online_mac,
        }
    }

    fn sender(&self, config: &SenderConfig) -> Box<dyn FrameSender> {
        open_in(&self.lab, Host::Online, config)
            .unwrap_or_else(|e| panic!("open {:?} on online eth1: {e}", config.backend))
    }

    /// Empties the online host's neighbour table on eth1.
    fn flush_neighbours(&self) {
        self.lab
            .run(Host::Online, &["ip", "neigh", "flush", "dev", "eth1"]);
        let left = self.neighbour_of_target();
        assert!(
            left.is_empty(),
            "neighbour entry survived the flush: {left}"
        );
    }

    /// `ip neigh show` for the target on online's eth1 (empty: no entry).
    fn neighbour_of_target(&self) -> String {
        self.lab
            .run(
                Host::Online,
                &["ip", "neigh", "show", "198.18.2.2", "dev", "eth1"],
            )
            .trim()
            .to_owned()
    }

    /// IPv4 frames that arrived at the target's NIC since the last call.
    /// Frames from our senders that arrived at the target's NIC since the
    /// last call (the lab's own traffic, e.g. IGMP reports, left out).
    fn arrived(&self) -> Vec<Vec<u8>> {
        self.target_tap
            .frames()
            .into_iter()
            .filter(|(dir, f)| *dir == Direction::Incoming && self.is_ours(f))
            .map(|(_, f)| f)
            .collect()
    }

    /// Whether `frame` is one of ours: from online's eth1, IPv4/TCP from
    /// a client address.
    fn is_ours(&self, frame: &[u8]) -> bool {
        frame.len() > 14
            && frame[6..12] == self.online_mac.0
            && frame[12..14] == [8, 0]
            && Ipv4TcpPacket::new_checked(&frame[14..])
                .is_ok_and(|p| p.src_addr()[..3] == [198, 18, 1])
    }

    /// TCP segments the target sent since the last call, as
    /// `(dst addr, dst port, flags, ack number)`.
    fn target_answers(
        &self,
        tapped: &[(Direction, Vec<u8>)],
    ) -> Vec<([u8; 4], u16, TcpFlags, u32)> {
        tapped
            .iter()
            .filter(|(dir, f)| *dir == Direction::Outgoing && f.len() > 14 && f[12..14] == [8, 0])
            .filter_map(|(_, f)| Ipv4TcpPacket::new_checked(&f[14..]).ok())
            .map(|p| (p.dst_addr(), p.dst_port(), p.flags(), p.ack().0))
            .collect()
    }
}

/// One line per frame, for assertion messages.
fn summary<F: AsRef<[u8]>>(frames: &[F]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let f = f.as_ref();
            match Ipv4TcpPacket::new_checked(&f[14..]) {
                Ok(p) => format!(
                    "{} <- {}: {:?}:{} -> {:?}:{} {:?} seq {} len {}",
                    MacAddr(f[0..6].try_into().unwrap()),
                    MacAddr(f[6..12].try_into().unwrap()),
                    p.src_addr(),
                    p.src_port(),
                    p.dst_addr(),
                    p.dst_port(),
                    p.flags(),
                    p.seq().0,
                    p.total_len()
                ),
                Err(e) => format!("{e}: {:02x?}", &f[..f.len().min(40)]),
            }
        })
        .collect()
}

/// Checks that `frame` is `packet` behind the Ethernet header the sender
/// must have written.
fn assert_frame(frame: &[u8], packet: &[u8], dst: MacAddr, src: MacAddr) {
    assert_eq!(
        MacAddr(frame[0..6].try_into().unwrap()),
        dst,
        "destination MAC"
    );
    assert_eq!(MacAddr(frame[6..12].try_into().unwrap()), src, "source MAC");
    assert_eq!(&frame[12..14], &[0x08, 0x00], "EtherType IPv4");
    // veth pads nothing; a real NIC would pad to 60 bytes.
    assert_eq!(
        &frame[14..14 + packet.len()],
        packet,
        "the IPv4 packet, byte for byte"
    );
    let p = Ipv4TcpPacket::new_checked(&frame[14..]).expect("an IPv4/TCP packet");
    assert!(p.checksums_ok(), "checksums intact");
}

#[test]
fn both_backends_deliver_frames_intact_and_the_target_answers_them() {
    let scene = Scene::new();
    for (b, backend) in BACKENDS.into_iter().enumerate() {
        let mut sender = scene.sender(&SenderConfig::new("eth1").backend(backend));
        sender
            .resolve_next_hop(TARGET_IP.into(), DEADLINE)
            .expect("the target's MAC resolves");
        // Five SYNs from five clients the online host does not own, and a
        // data segment of MTU size to a closed port.
        let clients: Vec<([u8; 4], u16)> = (0..5u8)
            .map(|i| ([198, 18, 1, 10 + i], 41000 + 100 * b as u16))
            .collect();
        let mut packets: Vec<Vec<u8>> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| syn(*c, TARGET, 1000 * (i as u32 + 1)))
            .collect();
        packets.push(sized(
            ([198, 18, 1, 20], 42000),
            ([198, 18, 2, 2], 9),
            77,
            1500,
        ));
        let mut out = outbox_of(&packets);
        sender.send(&mut out);
        let want = packets.len();

        let mut tapped = Vec::new();
        let answers = wait_until("SYN-ACKs for every SYN", DEADLINE, || {
            sender.poll();
            tapped.extend(scene.target_tap.frames());
            let answers = scene.target_answers(&tapped);
            let acked = clients
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    answers.iter().any(|&(a, p, f, ack)| {
                        (a, p) == **c
                            && f == TcpFlags::SYN | TcpFlags::ACK
                            && ack == 1000 * (*i as u32 + 1) + 1
                    })
                })
                .count();
            if acked == clients.len() {
                Ok(answers)
            } else {
                Err(format!(
                    "{acked} of {} SYNs answered: {answers:?}",
                    clients.len()
                ))
            }
        });
        assert!(!answers.is_empty());
        let arrived: Vec<&Vec<u8>> = tapped
            .iter()
            .filter(|(d, f)| *d == Direction::Incoming && scene.is_ours(f))
            .map(|(_, f)| f)
            .collect();
        assert_eq!(
            arrived.len(),
            want,
            "{backend}: each frame arrived once: {:#?}",
            summary(&arrived)
        );
        for (frame, packet) in arrived.iter().zip(&packets) {
            assert_frame(frame, packet, scene.target_mac, scene.online_mac);
        }
        let stats = sender.stats();
        assert_eq!(stats.frames, want as u64, "{backend}: {stats}");
        assert_eq!(stats.total_dropped(), 0, "{backend}: {stats}");
        assert_eq!(
            stats.bytes,
            packets.iter().map(|p| p.len() as u64 + 14).sum::<u64>()
        );
        wait_until("every frame completed", DEADLINE, || {
            sender.poll();
            let s = sender.stats();
            if s.completed == want as u64 && s.in_flight == 0 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        });
    }
}

#[test]
fn a_missing_neighbour_entry_is_resolved_and_the_frames_meanwhile_counted() {
    let scene = Scene::new();
    for backend in BACKENDS {
        scene.flush_neighbours();
        let mut sender = scene.sender(&SenderConfig::new("eth1").backend(backend));
        let packet = syn(([198, 18, 1, 30], 43000), TARGET, 5000);
        // Until the kernel has resolved the target, frames have no next hop.
        let started = Instant::now();
        let mut sends = 0u64;
        wait_until("a frame to the unresolved target arrives", DEADLINE, || {
            sends += 1;
            sender.send(&mut outbox_of(&[&packet]));
            let got = scene.arrived();
            if got.is_empty() {
                Err(format!("{sends} sends, stats {}", sender.stats()))
            } else {
                assert_frame(&got[0], &packet, scene.target_mac, scene.online_mac);
                Ok(())
            }
        });
        let stats = sender.stats();
        assert!(
            stats.dropped(DropReason::NoNextHop) >= 1,
            "{backend}: the first frame found no entry: {stats}"
        );
        assert_eq!(stats.frames + stats.total_dropped(), sends, "{stats}");
        assert!(stats.next_hop.solicited >= 1, "{stats}");
        assert_eq!(stats.next_hop.resolved, 1, "{stats}");
        // The sender made the kernel resolve it: the entry is there now.
        let entry = scene.neighbour_of_target();
        assert!(
            entry.contains(&scene.target_mac.to_string()),
            "{backend}: neighbour entry after resolution: {entry:?}"
        );
        eprintln!(
            "{backend}: resolved in {:?} after {sends} sends",
            started.elapsed()
        );
    }
}

#[test]
fn a_changed_neighbour_is_picked_up_on_refresh() {
    let scene = Scene::new();
    let policy = ResolvePolicy {
        refresh: Duration::from_millis(100),
        ..ResolvePolicy::default()
    };
    let mut sender = scene.sender(&SenderConfig::new("eth1").resolve_policy(policy));
    assert_eq!(
        sender.resolve_next_hop(TARGET_IP.into(), DEADLINE),
        Some(scene.target_mac)
    );
    // The target gets a new NIC (MAC); the online host learns it.
    let new_mac = MacAddr([0x02, 0x18, 0x02, 0x02, 0x00, 0x99]);
    scene.lab.run(
        Host::Target,
        &["ip", "link", "set", "eth0", "address", &new_mac.to_string()],
    );
    scene.lab.run(
        Host::Online,
        &[
            "ip",
            "neigh",
            "replace",
            "198.18.2.2",
            "lladdr",
            &new_mac.to_string(),
            "dev",
            "eth1",
            "nud",
            "reachable",
        ],
    );
    let packet = syn(([198, 18, 1, 31], 43001), TARGET, 6000);
    wait_until("a frame addressed to the new MAC", DEADLINE, || {
        sender.send(&mut outbox_of(&[&packet]));
        let got = scene.arrived();
        match got.iter().find(|f| f[0..6] == new_mac.0) {
            Some(f) => {
                assert_frame(f, &packet, new_mac, scene.online_mac);
                Ok(())
            }
            None => Err(format!(
                "arrived to {:?}",
                got.iter()
                    .map(|f| MacAddr(f[0..6].try_into().unwrap()))
                    .collect::<Vec<_>>()
            )),
        }
    });
    assert_eq!(sender.stats().next_hop.changed, 1, "{}", sender.stats());
}

#[test]
fn a_fixed_next_hop_mac_is_used_without_asking_the_kernel() {
    let scene = Scene::new();
    let assistant_mac = mac(&scene.lab, Host::Assistant, "eth0");
    let assistant_tap = PacketTap::open(&scene.lab, Host::Assistant, "eth0");
    // The bridge floods a frame whose destination it has not learned, so
    // each host's tap looks only at frames addressed to that host.
    let addressed_to = |frames: Vec<Vec<u8>>, mac: MacAddr| -> Vec<Vec<u8>> {
        frames.into_iter().filter(|f| f[0..6] == mac.0).collect()
    };
    for backend in BACKENDS {
        scene.flush_neighbours();
        scene.arrived();
        assistant_tap.frames();
        // The target's own MAC: the first frame goes out, no lookup at all.
        let config = SenderConfig::new("eth1")
            .backend(backend)
            .next_hop_mac(Some(scene.target_mac));
        let mut sender = scene.sender(&config);
        let packet = syn(([198, 18, 1, 32], 43002), TARGET, 7000);
        sender.send(&mut outbox_of(&[&packet]));
        let got = wait_until("the frame at the target", DEADLINE, || {
            let got = addressed_to(scene.arrived(), scene.target_mac);
            if got.is_empty() {
                Err("nothing yet".into())
            } else {
                Ok(got)
            }
        });
        assert_eq!(got.len(), 1);
        assert_frame(&got[0], &packet, scene.target_mac, scene.online_mac);
        let stats = sender.stats();
        assert_eq!((stats.frames, stats.total_dropped()), (1, 0), "{stats}");
        assert_eq!(stats.next_hop.lookups, 0, "{stats}");
        assert_eq!(
            scene.neighbour_of_target(),
            "",
            "{backend}: the kernel was never asked"
        );

        // Another host's MAC: the frame goes there, whatever its IP says.
        // (One AF_XDP socket per queue: the first sender goes first.)
        drop(sender);
        let config = config.next_hop_mac(Some(assistant_mac));
        let mut sender = scene.sender(&config);
        sender.send(&mut outbox_of(&[&packet]));
        wait_until("the frame at the assistant", DEADLINE, || {
            let frames = assistant_tap
                .frames()
                .into_iter()
                .filter(|(d, f)| *d == Direction::Incoming && scene.is_ours(f))
                .map(|(_, f)| f)
                .collect();
            let frames = addressed_to(frames, assistant_mac);
            match frames.first() {
                Some(f) => {
                    assert_frame(f, &packet, assistant_mac, scene.online_mac);
                    Ok(())
                }
                None => Err("nothing yet".into()),
            }
        });
    }
}

#[test]
fn a_frame_over_the_mtu_is_dropped_and_counted() {
    let scene = Scene::new();
    for backend in BACKENDS {
        let mut sender = scene.sender(&SenderConfig::new("eth1").backend(backend));
        sender
            .resolve_next_hop(TARGET_IP.into(), DEADLINE)
            .expect("resolves");
        let client = ([198, 18, 1, 33], 43003);
        let fits = sized(client, ([198, 18, 2, 2], 9), 1, 1500);
        let too_big = sized(client, ([198, 18, 2, 2], 9), 2, 1501);
        let also_fits = sized(client, ([198, 18, 2, 2], 9), 3, 64);
        sender.send(&mut outbox_of(&[&fits, &too_big, &also_fits]));
        let got = wait_until("the two frames that fit", DEADLINE, || {
            let got = scene.arrived();
            if got.len() >= 2 {
                Ok(got)
            } else {
                Err(format!("{} so far", got.len()))
            }
        });
        assert_eq!(got.len(), 2, "{backend}: {:#?}", summary(&got));
        assert_frame(&got[0], &fits, scene.target_mac, scene.online_mac);
        assert_frame(&got[1], &also_fits, scene.target_mac, scene.online_mac);
        let stats = sender.stats();
        assert_eq!(stats.dropped(DropReason::TooBig), 1, "{backend}: {stats}");
        assert_eq!(stats.total_dropped(), 1, "{backend}: {stats}");
        assert_eq!(stats.frames, 2, "{backend}: {stats}");
    }
}

#[test]
fn an_interface_or_queue_that_does_not_exist_is_a_clear_error() {
    let lab = Lab::new();
    for backend in BACKENDS {
        let e = open_in(
            &lab,
            Host::Online,
            &SenderConfig::new("eth7").backend(backend),
        )
        .err()
        .expect("no eth7 on the online host");
        assert!(matches!(e, SendError::NoInterface(_)), "{backend}: {e}");
        assert!(e.to_string().contains("\"eth7\""), "{e}");
    }
    // The lab's veths have one queue.
    let e = open_in(&lab, Host::Online, &SenderConfig::new("eth1").queue_id(7))
        .err()
        .expect("no queue 7 on eth1");
    let text = e.to_string();
    assert!(matches!(e, SendError::AfXdpBind { queue: 7, .. }), "{text}");
    assert!(
        text.contains("eth1 queue 7") && text.contains("--send raw"),
        "{text}"
    );
    // Bad settings are refused before anything is opened.
    let e = open_in(
        &lab,
        Host::Online,
        &SenderConfig::new("eth1").max_in_flight(0),
    )
    .err()
    .expect("a zero cap");
    assert!(matches!(e, SendError::BadInFlightCap(0)), "{e}");
    let e = open_in(
        &lab,
        Host::Online,
        &SenderConfig::new("eth1").next_hop_mac(Some(MacAddr::BROADCAST)),
    )
    .err()
    .expect("a broadcast next hop");
    assert!(matches!(e, SendError::BadNextHopMac(_)), "{e}");
    // Not Ethernet.
    let e = open_in(
        &lab,
        Host::Online,
        &SenderConfig::new("lo").backend(SendBackend::Raw),
    )
    .err()
    .expect("lo is not Ethernet");
    assert!(matches!(e, SendError::NotEthernet { .. }), "{e}");
}

/// Frames per burst, and per `send` call (what one engine batch might hold).
const BURST: u64 = 200_000;
const PER_SEND: usize = 64;

/// Sends `BURST` small frames as fast as `sender` takes them to an address
/// on the target's LAN that nobody owns, at the target's MAC: the target's
/// NIC receives them, its IP layer discards them quietly (no forwarding,
/// no answers). Returns what the sender reports and how many frames the
/// target's interface received or dropped meanwhile.
fn burst(scene: &Scene, sender: &mut dyn FrameSender, ip_len: usize) -> (u64, u64, u64) {
    let dst = ([198, 18, 2, 99], 9);
    let packets: Vec<Vec<u8>> = (0..PER_SEND as u32)
        .map(|i| sized(([198, 18, 1, 40], 44000), dst, i, ip_len))
        .collect();
    let mut out = outbox_of(&packets);
    let rx = |stat| scene.lab.link_stat(Host::Target, "eth0", stat);
    let (rx0, drop0) = (rx("rx_packets"), rx("rx_dropped"));
    let before = sender.stats();
    let start = Instant::now();
    let mut offered = 0;
    while offered < BURST {
        sender.send(&mut out);
        offered += PER_SEND as u64;
    }
    let elapsed = start.elapsed();
    wait_until("the burst completed", DEADLINE, || {
        sender.poll();
        let s = sender.stats();
        if s.in_flight == 0 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let stats = sender.stats();
    let sent = stats.frames - before.frames;
    // The counters settle once the last frame has been through the LAN.
    let received = wait_until("the target's counters settled", DEADLINE, || {
        let r = rx("rx_packets") - rx0;
        if r >= sent {
            Ok(r)
        } else {
            Err(format!("received {r} of {sent}"))
        }
    });
    let rx_dropped = rx("rx_dropped") - drop0;
    eprintln!(
        "burst of {offered} frames of {} B: sent {sent} in {:.0} ms ({:.2} Mpps), received {received}, target rx_dropped {rx_dropped}; {stats}",
        ip_len + 14,
        elapsed.as_secs_f64() * 1e3,
        sent as f64 / elapsed.as_secs_f64() / 1e6,
    );
    assert_eq!(stats.total_dropped() - before.total_dropped(), BURST - sent);
    (sent, received, rx_dropped)
}

#[test]
fn a_burst_at_full_speed_arrives_without_loss() {
    let scene = Scene::new();
    for backend in BACKENDS {
        let config = SenderConfig::new("eth1")
            .backend(backend)
            .next_hop_mac(Some(scene.target_mac));
        let mut sender = scene.sender(&config);
        let (sent, received, rx_dropped) = burst(&scene, sender.as_mut(), 52);
        assert_eq!(
            sent,
            BURST,
            "{backend}: the sender took every frame: {}",
            sender.stats()
        );
        assert_eq!(rx_dropped, 0, "{backend}: the target's NIC dropped frames");
        // A few frames of the lab's own (ARP) may have arrived too.
        assert!(
            (sent..sent + 10).contains(&received),
            "{backend}: sent {sent}, the target received {received}"
        );
    }
}

#[test]
fn ipv6_frames_go_out_as_86dd_to_the_neighbour_ndp_found() {
    let scene = Scene::with(LabSpec {
        ipv6: true,
        ..LabSpec::default()
    });
    // A client address of the range the target routes back (to the
    // assistant): the target's reset to the SYN proves it took the frame.
    let client_net: std::net::Ipv6Addr = CLIENT6_NET.split('/').next().unwrap().parse().unwrap();
    for (b, backend) in BACKENDS.into_iter().enumerate() {
        scene
            .lab
            .run(Host::Online, &["ip", "-6", "neigh", "flush", "dev", "eth1"]);
        let mut sender = scene.sender(&SenderConfig::new("eth1").backend(backend));
        let mut client = client_net.octets();
        client[15] = 0x30 + b as u8;
        let port = 43000 + b as u16;
        // Port 9 is closed: the target's stack answers with a reset.
        let packet = syn6((client, port), (TARGET6_IP.octets(), 9), 7000);
        let mut sends = 0u64;
        let mut tapped = Vec::new();
        let from_online = |f: &[u8]| f.len() > 14 && f[6..12] == scene.online_mac.0;
        wait_until("the IPv6 SYN arrives at the target", DEADLINE, || {
            sends += 1;
            sender.send(&mut outbox_of(&[&packet]));
            tapped.extend(scene.target_tap.frames());
            // Ours: TCP from the client address (the kernel's neighbour
            // solicitations are IPv6 from online's MAC too).
            let arrived: Vec<&Vec<u8>> = tapped
                .iter()
                .filter(|(d, f)| {
                    *d == Direction::Incoming
                        && from_online(f)
                        && f[12..14] == [0x86, 0xdd]
                        && Ipv6TcpPacket::new_checked(&f[14..])
                            .is_ok_and(|p| p.src_addr() == client)
                })
                .map(|(_, f)| f)
                .collect();
            match arrived.first() {
                Some(f) => {
                    assert_eq!(MacAddr(f[0..6].try_into().unwrap()), scene.target_mac);
                    assert_eq!(&f[14..], &packet[..], "the IPv6 packet, byte for byte");
                    Ok(())
                }
                None => Err(format!("{sends} sends, stats {}", sender.stats())),
            }
        });
        let stats = sender.stats();
        assert!(stats.next_hop.solicited >= 1, "{backend}: {stats}");
        assert_eq!(stats.next_hop.resolved, 1, "{backend}: {stats}");
        let entry = scene.lab.run(
            Host::Online,
            &[
                "ip",
                "-6",
                "neigh",
                "show",
                &TARGET6_IP.to_string(),
                "dev",
                "eth1",
            ],
        );
        assert!(
            entry.contains(&scene.target_mac.to_string()),
            "{backend}: the kernel's IPv6 neighbour entry: {entry:?}"
        );
        wait_until("the target's reset to the IPv6 SYN", DEADLINE, || {
            tapped.extend(scene.target_tap.frames());
            let reset = tapped.iter().any(|(d, f)| {
                *d == Direction::Outgoing
                    && f.len() > 14
                    && f[12..14] == [0x86, 0xdd]
                    && Ipv6TcpPacket::new_checked(&f[14..]).is_ok_and(|p| {
                        p.dst_addr() == client && p.dst_port() == port && p.flags().rst()
                    })
            });
            if reset {
                Ok(())
            } else {
                Err(format!("{} frames tapped", tapped.len()))
            }
        });
        eprintln!("{backend}: IPv6 frame delivered after {sends} sends");
    }
}
