//! T1: the reply programs (`intercept-ebpf`: XDP on an assistant, TC
//! egress on the target) on crafted frames through BPF_PROG_TEST_RUN:
//! verdicts, the exact header records they write into the ring buffer, and
//! their counters. Every test of the shared behaviour runs on both
//! programs; the egress program's own rules (client ranges, announced
//! clients, loopback) have tests of their own. IPv6 replies (extension
//! headers left out of the record, fragments counted and passed) have the
//! same tests for their `*6` tables and 88-byte records.

use aya::programs::{TestRun, TestRunOptions};
use etherparse::Ipv4HeaderSlice;
use intercept_user::{
    access::Cidr,
    capture::{
        ReplyCapture,
        egress::{AnnouncedTable, Claimed, EgressProgram},
        ring::{ReplyRecord, ReplyRing},
        xdp::ReplyProgram,
    },
    route::table::{RouteKey, RouteKey6, SessionKey},
};
use tcpcopy_common::{
    counters::InterceptCounter,
    proto::{HeaderRecord, HeaderRecord6},
};
use tcpcopy_tests::{
    frames::{self, ACK, PSH, RST, SYN, Segment},
    frames6::{self, Extension6, Segment6},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// The egress program discards a reply by redirecting it to no device.
const TC_ACT_REDIRECT: u32 = 7;
/// `TC_ACT_UNSPEC` (-1): no opinion, the next program or the stack decides.
const TC_ACT_UNSPEC: u32 = u32::MAX;

const CLIENT: [u8; 4] = [198, 18, 1, 2];
const TARGET: [u8; 4] = [198, 18, 2, 2];
/// The client range of the egress harness.
const CLIENT_NET: &str = "198.18.1.0/24";
/// 2001:db8:1::2, the IPv6 client.
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// 2001:db8:2::2, the IPv6 target.
const TARGET6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// The IPv6 client range of the egress harness.
const CLIENT6_NET: &str = "2001:db8:1::/64";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// XDP on an assistant.
    Assistant,
    /// TC egress on the target, replies to `CLIENT_NET` claimed.
    Egress,
}

const BOTH: [Path; 2] = [Path::Assistant, Path::Egress];

enum Program {
    Xdp(ReplyProgram),
    Egress(EgressProgram),
}

/// A loaded reply program with its ring, intercepting `TARGET:80` and
/// `[TARGET6]:80`.
struct Harness {
    path: Path,
    program: Program,
    ring: ReplyRing,
    announced: Option<AnnouncedTable>,
}

impl Harness {
    fn new(path: Path) -> Self {
        Self::with_ring(path, 1 << 16)
    }

    fn with_ring(path: Path, bytes: u32) -> Self {
        let mut h = Self::bare(path, bytes);
        if path == Path::Egress {
            h.add_client_net(CLIENT_NET);
            h.add_client_net(CLIENT6_NET);
        }
        h
    }

    /// No client ranges (the egress program claims announced clients only).
    fn bare(path: Path, bytes: u32) -> Self {
        require_root();
        let (mut program, announced) = match path {
            Path::Assistant => (
                Program::Xdp(ReplyProgram::load_with_ring(bytes).expect("load the XDP program")),
                None,
            ),
            Path::Egress => {
                let mut p = EgressProgram::load(bytes, 1024).expect("load the egress program");
                let table = p.take_announced().expect("the announced tables");
                (Program::Egress(p), Some(table))
            }
        };
        program
            .capture()
            .add_target(Some(TARGET.into()), 80)
            .unwrap();
        program
            .capture()
            .add_target6(Some(TARGET6.into()), 80)
            .unwrap();
        let ring = program.capture().take_ring().expect("the RECORDS ring");
        Self {
            path,
            program,
            ring,
            announced,
        }
    }

    fn add_client_net(&mut self, net: &str) {
        let Program::Egress(p) = &mut self.program else {
            panic!("client ranges are for the egress program");
        };
        p.add_client_net(net.parse::<Cidr>().unwrap()).unwrap();
    }

    fn announce(&mut self, client: ([u8; 4], u16), target: ([u8; 4], u16)) -> Claimed {
        self.announce_session(SessionKey::V4(RouteKey {
            client_ip: client.0,
            client_port: client.1,
            target_ip: target.0,
            target_port: target.1,
        }))
    }

    fn announce6(&mut self, client: ([u8; 16], u16), target: ([u8; 16], u16)) -> Claimed {
        self.announce_session(SessionKey::V6(RouteKey6 {
            client_ip: client.0,
            client_port: client.1,
            target_ip: target.0,
            target_port: target.1,
        }))
    }

    fn announce_session(&mut self, key: SessionKey) -> Claimed {
        self.announced
            .as_mut()
            .expect("the egress program")
            .announce(&key)
            .unwrap()
    }

    fn add_target(&mut self, addr: Option<std::net::Ipv4Addr>, port: u16) {
        self.program.capture().add_target(addr, port).unwrap();
    }

    fn add_target6(&mut self, addr: Option<std::net::Ipv6Addr>, port: u16) {
        self.program.capture().add_target6(addr, port).unwrap();
    }

    /// The verdict that drops a reply on this path.
    fn drop(&self) -> u32 {
        match self.path {
            Path::Assistant => XDP_DROP,
            Path::Egress => TC_ACT_REDIRECT,
        }
    }

    /// The verdict that lets a frame go on.
    fn pass(&self) -> u32 {
        match self.path {
            Path::Assistant => XDP_PASS,
            Path::Egress => TC_ACT_UNSPEC,
        }
    }

    /// Runs the program `repeat` times on `frame`; returns the verdict.
    fn run(&self, frame: &[u8], repeat: u32) -> u32 {
        self.run_out(frame, repeat).0
    }

    /// As [`run`](Self::run), with the frame as the program left it.
    fn run_out(&self, frame: &[u8], repeat: u32) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 512];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        let result = match &self.program {
            Program::Xdp(p) => p.xdp().program().test_run(opts),
            Program::Egress(p) => p.tc().program().test_run(opts),
        };
        let result = result.expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn verdict(&self, frame: &[u8]) -> u32 {
        self.run(frame, 1)
    }

    /// Everything in the ring now, of either family.
    fn all_records(&mut self) -> Vec<ReplyRecord> {
        let mut got = Vec::new();
        self.ring.drain(usize::MAX, |r| got.push(r));
        assert_eq!(self.ring.bad_entries(), 0, "ring entries of a wrong size");
        got
    }

    /// Everything in the ring now, all IPv4.
    fn records(&mut self) -> Vec<HeaderRecord> {
        self.all_records()
            .into_iter()
            .map(|r| match r {
                ReplyRecord::V4(r) => r,
                other => panic!("an IPv6 record where IPv4 ones were due: {other:?}"),
            })
            .collect()
    }

    /// Everything in the ring now, all IPv6.
    fn records6(&mut self) -> Vec<HeaderRecord6> {
        self.all_records()
            .into_iter()
            .map(|r| match r {
                ReplyRecord::V6(r) => r,
                other => panic!("an IPv4 record where IPv6 ones were due: {other:?}"),
            })
            .collect()
    }

    fn count(&self, c: InterceptCounter) -> u64 {
        self.program.capture_ref().counter(c).unwrap()
    }

    /// (seen, matched, reported, ring_full, malformed)
    fn counters(&self) -> (u64, u64, u64, u64, u64) {
        use InterceptCounter::*;
        (
            self.count(Seen),
            self.count(Matched),
            self.count(Reported),
            self.count(RingFull),
            self.count(Malformed),
        )
    }
}

impl Program {
    fn capture(&mut self) -> &mut dyn ReplyCapture {
        match self {
            Self::Xdp(p) => p,
            Self::Egress(p) => p,
        }
    }

    fn capture_ref(&self) -> &dyn ReplyCapture {
        match self {
            Self::Xdp(p) => p,
            Self::Egress(p) => p,
        }
    }
}

fn reply() -> Segment {
    let mut s = Segment::new((TARGET, 80), (CLIENT, 40000));
    s.seq = 0x1122_3344;
    s.ack = 0x5566_7788;
    s.flags = ACK | PSH;
    s.payload = b"HTTP/1.1 200 OK\r\n\r\nok\n".to_vec();
    s
}

/// The record expected for `seg`, written out independently of the code
/// under test: IPv4 header bytes 0..20 (normalised to IHL 5 with the
/// checksum recomputed by etherparse when there are IP options), the TCP
/// header with at most 24 option bytes, zero padded to 64.
fn expected_record(seg: &Segment) -> [u8; 64] {
    let (ip, tcp, _) = seg.ip_packet();
    let mut want = [0u8; 64];
    want[..20].copy_from_slice(&ip[..20]);
    let option_bytes = ip.len() - 20;
    if option_bytes > 0 {
        want[0] = 0x45;
        let tot = u16::from_be_bytes([ip[2], ip[3]]) - option_bytes as u16;
        want[2..4].copy_from_slice(&tot.to_be_bytes());
        want[10..12].copy_from_slice(&[0, 0]);
        let header = Ipv4HeaderSlice::from_slice(&want[..20])
            .unwrap()
            .to_header();
        want[10..12].copy_from_slice(&header.calc_header_checksum().to_be_bytes());
    }
    let kept = tcp.len().min(44);
    want[20..20 + kept].copy_from_slice(&tcp[..kept]);
    want
}

#[test]
fn reply_from_target_is_dropped_and_reported_byte_exact() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let seg = reply();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let got = h.records();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, expected_record(&seg));
        assert_eq!(got[0].payload_len(), Some(seg.payload.len()));
        assert_eq!(h.counters(), (1, 1, 1, 0, 0));
    }
}

#[test]
fn records_come_out_in_the_order_replies_went_in() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut segs = Vec::new();
        for (i, flags) in [SYN | ACK, ACK, ACK | PSH, RST].into_iter().enumerate() {
            let mut s = reply();
            s.flags = flags;
            s.seq += i as u32 * 100;
            s.dst.1 = 40000 + i as u16;
            assert_eq!(h.verdict(&s.frame()), h.drop());
            segs.push(s);
        }
        let got = h.records();
        let want: Vec<[u8; 64]> = segs.iter().map(expected_record).collect();
        let got: Vec<[u8; 64]> = got.iter().map(|r| r.bytes).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn frames_that_are_not_target_replies_pass_unreported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let to_target = Segment::new((CLIENT, 40000), (TARGET, 80));
        let other_port = Segment::new((TARGET, 8080), (CLIENT, 40000));
        let other_addr = Segment::new(([198, 18, 2, 9], 80), (CLIENT, 40000));
        // The tcpcopy <-> intercept connection itself: to and from port 36524.
        let peer_link = Segment::new(([198, 18, 2, 1], 50000), ([198, 18, 2, 3], 36524));
        let cases: [(&str, Vec<u8>); 6] = [
            ("to the target", to_target.frame()),
            ("other source port", other_port.frame()),
            ("other source address", other_addr.frame()),
            ("tcpcopy's connection", peer_link.frame()),
            (
                "udp from the target port",
                frames::udp((TARGET, 80), (CLIENT, 5353)),
            ),
            ("arp", frames::arp()),
        ];
        for (name, frame) in &cases {
            assert_eq!(h.verdict(frame), h.pass(), "{name}");
        }
        assert!(h.records().is_empty());
        assert_eq!(h.counters(), (6, 0, 0, 0, 0));
    }
}

#[test]
fn a_target_given_by_port_alone_matches_any_address() {
    for path in BOTH {
        let mut h = Harness::new(path);
        h.add_target(None, 6379);
        for addr in [TARGET, [198, 18, 3, 4], [198, 19, 0, 1]] {
            let s = Segment::new((addr, 6379), (CLIENT, 40000));
            assert_eq!(h.verdict(&s.frame()), h.drop(), "{addr:?}");
        }
        let s = Segment::new(([198, 18, 3, 4], 80), (CLIENT, 40000));
        assert_eq!(h.verdict(&s.frame()), h.pass(), "port 80 only on TARGET");
        let got = h.records();
        let sources: Vec<_> = got.iter().map(|r| (r.src_addr(), r.src_port())).collect();
        assert_eq!(
            sources,
            [
                (TARGET, 6379),
                ([198, 18, 3, 4], 6379),
                ([198, 19, 0, 1], 6379)
            ]
        );
        assert_eq!(h.counters(), (4, 3, 3, 0, 0));
    }
}

#[test]
fn vlan_tagged_replies_are_reported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut one = reply();
        one.vlans = vec![7];
        let mut two = reply();
        two.vlans = vec![100, 7];
        two.dst.1 = 40001;
        for s in [&one, &two] {
            assert_eq!(h.verdict(&s.frame()), h.drop(), "{:?}", s.vlans);
        }
        let got: Vec<[u8; 64]> = h.records().iter().map(|r| r.bytes).collect();
        assert_eq!(got, [expected_record(&one), expected_record(&two)]);
    }
}

#[test]
fn ip_options_are_stripped_and_the_payload_length_kept() {
    for path in BOTH {
        let mut h = Harness::new(path);
        for option_len in [4usize, 8, 40] {
            let mut s = reply();
            // NOPs then end-of-list.
            s.ip_options = vec![1; option_len];
            s.ip_options[option_len - 1] = 0;
            s.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]; // NOP NOP TS
            assert_eq!(h.verdict(&s.frame()), h.drop(), "{option_len} option bytes");
            let got = h.records();
            assert_eq!(got.len(), 1);
            let rec = &got[0];
            assert_eq!(rec.bytes, expected_record(&s), "{option_len} option bytes");
            assert_eq!(rec.ip_header_len(), 20);
            assert_eq!(rec.payload_len(), Some(s.payload.len()));
            let ip = Ipv4HeaderSlice::from_slice(&rec.bytes[..20]).unwrap();
            assert_eq!(
                ip.header_checksum(),
                ip.to_header().calc_header_checksum(),
                "the record's IPv4 header checksum is valid"
            );
        }
    }
}

#[test]
fn forty_option_bytes_are_cut_to_24_with_the_data_offset_kept() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut s = reply();
        s.flags = SYN | ACK;
        s.payload.clear();
        // MSS, SACK-permitted, timestamps, window scale, then NOPs: 40 bytes.
        let mut opts = vec![
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7,
        ];
        opts.resize(40, 1);
        s.tcp_options = opts;
        assert_eq!(h.verdict(&s.frame()), h.drop());
        let got = h.records();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, expected_record(&s));
        assert_eq!(got[0].tcp_header_len(), 60, "doff as on the wire");
        assert_eq!(got[0].payload_len(), Some(0));
        assert_eq!(&got[0].bytes[40..64], &s.tcp_options[..24]);
    }
}

#[test]
fn malformed_frames_are_counted_passed_and_never_reported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let good = reply().frame();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        // Cut inside the IPv4 and the TCP header (BPF_PROG_TEST_RUN refuses
        // frames shorter than an Ethernet header, and for an skb program
        // IPv4 frames without a whole fixed IPv4 header: the kernel's own
        // stack never hands TC such a packet).
        for len in [14 + 4, 14 + 19, 14 + 20 + 10, 14 + 20 + 19] {
            if path == Path::Egress && len < 14 + 20 {
                continue;
            }
            cases.push((format!("cut at {len}"), good[..len].to_vec()));
        }
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        cases.push(("IHL 4".into(), bad_ihl));
        let mut bad_doff = good.clone();
        bad_doff[14 + 20 + 12] = 0x30;
        cases.push(("data offset 3".into(), bad_doff));
        let mut short_total = good.clone();
        short_total[16..18].copy_from_slice(&30u16.to_be_bytes());
        cases.push(("total length below the headers".into(), short_total));
        // 40 option bytes announced, the frame ends after the fixed header.
        let mut cut_options = reply();
        cut_options.payload.clear();
        cut_options.tcp_options = vec![1; 40];
        let cut_options = cut_options.frame();
        cases.push((
            "TCP options cut".into(),
            cut_options[..14 + 20 + 20].to_vec(),
        ));
        // IP options announced, cut.
        let mut cut_ip = reply();
        cut_ip.ip_options = vec![1; 40];
        cases.push(("IP options cut".into(), cut_ip.frame()[..14 + 30].to_vec()));

        for (name, frame) in &cases {
            assert_eq!(h.verdict(frame), h.pass(), "{name}");
        }
        assert!(h.records().is_empty());
        let n = cases.len() as u64;
        assert_eq!(h.counters(), (n, 0, 0, 0, n));
    }
}

#[test]
fn a_full_ring_still_drops_and_counts_every_reply() {
    for path in BOTH {
        // One page: room for 56 records of 64 bytes plus the ring's 8-byte header.
        let mut h = Harness::with_ring(path, 4096);
        const REPLIES: u32 = 200;
        assert_eq!(h.run(&reply().frame(), REPLIES), h.drop());
        let (seen, matched, reported, ring_full, malformed) = h.counters();
        assert_eq!((seen, matched, malformed), (200, 200, 0));
        assert_eq!(
            reported + ring_full,
            200,
            "every matched reply is accounted"
        );
        assert!(
            (1..200).contains(&reported) && ring_full > 0,
            "reported {reported}, ring full {ring_full}"
        );
        let got = h.records();
        assert_eq!(got.len() as u64, reported);
        assert!(got.iter().all(|r| r.bytes == expected_record(&reply())));

        // With the ring drained, records flow again.
        assert_eq!(h.verdict(&reply().frame()), h.drop());
        assert_eq!(h.records().len(), 1);
        assert_eq!(h.count(InterceptCounter::Reported), reported + 1);
    }
}

#[test]
fn egress_claims_replies_to_the_client_range_only() {
    let mut h = Harness::new(Path::Egress);
    let to = |addr: [u8; 4]| Segment::new((TARGET, 80), (addr, 40000)).frame();
    for addr in [[198, 18, 1, 0], CLIENT, [198, 18, 1, 255]] {
        assert_eq!(
            h.verdict(&to(addr)),
            TC_ACT_REDIRECT,
            "{addr:?} is in {CLIENT_NET}"
        );
    }
    for addr in [[198, 18, 0, 255], [198, 18, 2, 1], [198, 19, 1, 2]] {
        assert_eq!(h.verdict(&to(addr)), TC_ACT_UNSPEC, "{addr:?} is not");
    }
    assert_eq!(h.records().len(), 3);
    assert_eq!(h.counters(), (6, 3, 3, 0, 0));
    assert_eq!(h.count(InterceptCounter::Unclaimed), 3);
}

#[test]
fn egress_claims_an_announced_client_address_on_every_port() {
    let mut h = Harness::bare(Path::Egress, 1 << 16);
    let client = [198, 19, 7, 7];
    let reply = |port: u16| Segment::new((TARGET, 80), (client, port)).frame();
    // Before the announcement: the reply leaves (and is remembered).
    assert_eq!(h.verdict(&reply(40000)), TC_ACT_UNSPEC);
    assert_eq!(h.count(InterceptCounter::Unclaimed), 1);
    assert_eq!(
        h.announce((client, 40000), (TARGET, 80)),
        Claimed::AfterAReplyEscaped,
        "the announcement learns that a reply escaped before it"
    );
    for port in [40000, 40001, 65000] {
        assert_eq!(h.verdict(&reply(port)), TC_ACT_REDIRECT, "port {port}");
    }
    // Another client address, or the same one served from another target
    // port, is not claimed.
    let other = Segment::new((TARGET, 80), ([198, 19, 7, 8], 40000)).frame();
    assert_eq!(h.verdict(&other), TC_ACT_UNSPEC);
    h.add_target(Some(TARGET.into()), 8080);
    let other_port = Segment::new((TARGET, 8080), (client, 40000)).frame();
    assert_eq!(h.verdict(&other_port), TC_ACT_UNSPEC);
    assert_eq!(h.records().len(), 3);
    // A second announcement of a claimed address finds nothing escaped.
    assert_eq!(h.announce((client, 40002), (TARGET, 80)), Claimed::Now);
}

#[test]
fn egress_never_touches_loopback_destinations() {
    let mut h = Harness::new(Path::Egress);
    h.add_client_net("0.0.0.0/0");
    h.add_target(None, 80);
    for (src, dst) in [
        ([127, 0, 0, 1], [127, 0, 0, 1]),
        (TARGET, [127, 0, 0, 1]),
        (TARGET, [127, 1, 2, 3]),
    ] {
        let s = Segment::new((src, 80), (dst, 40000));
        assert_eq!(h.verdict(&s.frame()), TC_ACT_UNSPEC, "{src:?} -> {dst:?}");
    }
    assert!(h.records().is_empty());
    // Anything else to the whole-Internet range is claimed.
    let s = Segment::new((TARGET, 80), ([198, 19, 0, 1], 40000));
    assert_eq!(h.verdict(&s.frame()), TC_ACT_REDIRECT);
}

impl Harness {
    /// Everything in the ring now, with payloads.
    fn replies(&mut self) -> Vec<intercept_user::capture::ring::Reply> {
        let mut got = Vec::new();
        self.ring.drain_replies(usize::MAX, |r| got.push(r));
        assert_eq!(self.ring.bad_entries(), 0, "ring entries of no known shape");
        got
    }
}

#[test]
fn payloads_are_copied_up_to_the_cap_only_while_asked_for() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let seg = reply();
        let body = seg.payload.clone();
        // Nobody asked: headers only, as always.
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let got = h.replies();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, None, "{path:?}");
        assert_eq!(v4_bytes(&got[0].record), expected_record(&seg));

        h.program.capture().set_payload_cap(65_535).unwrap();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        // A pure ACK has no payload: still a plain record.
        let mut ack = reply();
        ack.payload.clear();
        ack.flags = ACK;
        assert_eq!(h.verdict(&ack.frame()), h.drop());
        h.program.capture().set_payload_cap(5).unwrap();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let got = h.replies();
        assert_eq!(got.len(), 3, "{path:?}");
        let whole = got[0].payload.as_ref().expect("the payload");
        assert_eq!(
            (whole.len as usize, &*whole.bytes),
            (body.len(), &body[..]),
            "{path:?}"
        );
        assert_eq!(v4_bytes(&got[0].record), expected_record(&seg), "{path:?}");
        assert_eq!(got[1].payload, None, "{path:?}");
        let cut = got[2].payload.as_ref().expect("the payload, cut");
        assert_eq!(
            (cut.len as usize, &*cut.bytes),
            (body.len(), &body[..5]),
            "{path:?}"
        );
        assert_eq!(h.counters(), (4, 4, 4, 0, 0), "{path:?}");
    }
}

#[test]
fn large_payloads_are_copied_whole_across_both_chunks() {
    for path in BOTH {
        // Room for the largest entry (a 64 KiB ring would not hold it).
        let mut h = Harness::with_ring(path, 1 << 20);
        h.program.capture().set_payload_cap(65_535).unwrap();
        // BPF_PROG_TEST_RUN builds an skb of at most about a page: the
        // egress program's large payloads (GSO packets) are a T2 matter.
        let lens: &[usize] = match path {
            Path::Assistant => &[1, 1448, 32_768, 40_000, 65_495],
            Path::Egress => &[1, 1448, 3000],
        };
        for &len in lens {
            let mut seg = reply();
            seg.payload = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(h.verdict(&seg.frame()), h.drop(), "{path:?} {len}");
            let got = h.replies();
            assert_eq!(got.len(), 1, "{path:?} {len}");
            let p = got[0].payload.as_ref().expect("the payload");
            assert_eq!(p.len as usize, len, "{path:?}");
            assert!(*p.bytes == seg.payload[..], "{path:?} {len}: bytes differ");
        }
    }
}

/// The bytes of an IPv4 record.
fn v4_bytes(rec: &ReplyRecord) -> [u8; 64] {
    match rec {
        ReplyRecord::V4(r) => r.bytes,
        other => panic!("an IPv4 record expected: {other:?}"),
    }
}

impl Harness {
    fn count6(&self) -> (u64, u64) {
        (
            self.count(InterceptCounter::Matched6),
            self.count(InterceptCounter::Fragments6),
        )
    }
}

fn reply6() -> Segment6 {
    let mut s = Segment6::new((TARGET6, 80), (CLIENT6, 40000));
    s.seq = 0x1122_3344;
    s.ack = 0x5566_7788;
    s.flags = ACK | PSH;
    s.traffic_class = 0x28;
    // NOP NOP timestamps.
    s.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
    s.payload = b"HTTP/1.1 200 OK\r\n\r\nok\n".to_vec();
    s
}

/// The record expected for `seg`, written out independently of the code
/// under test: the fixed IPv6 header as sent, but with next header TCP and
/// a payload length that leaves the extension headers out; the TCP header
/// with at most 24 option bytes; zero padded to 88.
fn expected_record6(seg: &Segment6) -> [u8; 88] {
    let tcp = seg.tcp_header();
    let mut want = [0u8; 88];
    want[..40].copy_from_slice(&seg.ip_header());
    want[6] = 6;
    let len = (tcp.len() + seg.payload.len()) as u16;
    want[4..6].copy_from_slice(&len.to_be_bytes());
    let kept = tcp.len().min(44);
    want[40..40 + kept].copy_from_slice(&tcp[..kept]);
    want
}

#[test]
fn ipv6_reply_from_target_is_dropped_and_reported_byte_exact() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let seg = reply6();
        assert_eq!(h.verdict(&seg.frame()), h.drop(), "{path:?}");
        let got = h.records6();
        assert_eq!(got.len(), 1, "{path:?}");
        assert_eq!(got[0].bytes, expected_record6(&seg), "{path:?}");
        assert_eq!(got[0].payload_len(), Some(seg.payload.len()));
        assert_eq!(
            (got[0].src_addr(), got[0].src_port()),
            (TARGET6, 80),
            "{path:?}"
        );
        assert_eq!(h.counters(), (1, 1, 1, 0, 0), "{path:?}");
        assert_eq!(h.count6(), (1, 0), "{path:?}");
    }
}

#[test]
fn ipv6_extension_headers_are_left_out_of_the_record() {
    let chains: [&[Extension6]; 4] = [
        &[Extension6::HopByHop(8)],
        &[Extension6::DestOptions(16)],
        &[
            Extension6::HopByHop(8),
            Extension6::Routing(24),
            Extension6::DestOptions(16),
        ],
        &[
            Extension6::HopByHop(8),
            Extension6::DestOptions(8),
            Extension6::Routing(8),
            Extension6::DestOptions(64),
        ],
    ];
    for path in BOTH {
        let mut h = Harness::new(path);
        for chain in chains {
            let mut seg = reply6();
            seg.extensions = chain.to_vec();
            assert_eq!(h.verdict(&seg.frame()), h.drop(), "{path:?} {chain:?}");
            let got = h.records6();
            assert_eq!(got.len(), 1, "{path:?} {chain:?}");
            assert_eq!(got[0].bytes, expected_record6(&seg), "{path:?} {chain:?}");
            // The same record as the reply without extension headers.
            let mut plain = seg.clone();
            plain.extensions.clear();
            assert_eq!(got[0].bytes, expected_record6(&plain), "{path:?} {chain:?}");
            assert_eq!(got[0].payload_len(), Some(seg.payload.len()));
        }
        let n = chains.len() as u64;
        assert_eq!(h.counters(), (n, n, n, 0, 0), "{path:?}");
    }
}

#[test]
fn ipv6_fragments_are_counted_and_passed_untouched() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let fragment = |offset: u16, more: bool, before: &[Extension6]| {
            let mut s = reply6();
            s.extensions = before.to_vec();
            s.extensions.push(Extension6::Fragment {
                offset,
                more,
                id: 0x0bad_cafe,
            });
            s.frame()
        };
        let cases = [
            ("first fragment", fragment(0, true, &[])),
            ("a later fragment", fragment(185, true, &[])),
            ("the last fragment", fragment(370, false, &[])),
            (
                "a fragment behind hop-by-hop options",
                fragment(0, true, &[Extension6::HopByHop(8)]),
            ),
        ];
        for (name, frame) in &cases {
            let (verdict, out) = h.run_out(frame, 1);
            assert_eq!(verdict, h.pass(), "{path:?} {name}");
            assert_eq!(&out, frame, "{path:?} {name}: passed untouched");
        }
        assert!(h.all_records().is_empty());
        let n = cases.len() as u64;
        assert_eq!(h.counters(), (n, 0, 0, 0, 0), "{path:?}");
        assert_eq!(h.count6(), (0, n), "{path:?}");
    }
}

#[test]
fn ipv6_frames_that_are_not_target_replies_pass_unreported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let other = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let to_target = Segment6::new((CLIENT6, 40000), (TARGET6, 80));
        let other_port = Segment6::new((TARGET6, 8080), (CLIENT6, 40000));
        let other_addr = Segment6::new((other, 80), (CLIENT6, 40000));
        // The IPv4 target's address, in IPv4-mapped form, is not an IPv6 target.
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&TARGET);
        let v4_mapped = Segment6::new((mapped, 80), (CLIENT6, 40000));
        // Five extension headers: more than the program walks, so no TCP.
        let mut too_deep = reply6();
        too_deep.extensions = vec![Extension6::DestOptions(8); 5];
        let cases: [(&str, Vec<u8>); 7] = [
            ("to the target", to_target.frame()),
            ("other source port", other_port.frame()),
            ("other source address", other_addr.frame()),
            ("IPv4-mapped target address", v4_mapped.frame()),
            ("behind five extension headers", too_deep.frame()),
            (
                "udp from the target port",
                frames6::udp6((TARGET6, 80), (CLIENT6, 5353)),
            ),
            ("icmpv6", frames6::icmp6_echo(TARGET6, CLIENT6)),
        ];
        for (name, frame) in &cases {
            let (verdict, out) = h.run_out(frame, 1);
            assert_eq!(verdict, h.pass(), "{path:?} {name}");
            assert_eq!(&out, frame, "{path:?} {name}: passed untouched");
        }
        assert!(h.all_records().is_empty());
        assert_eq!(h.counters(), (7, 0, 0, 0, 0), "{path:?}");
        assert_eq!(h.count6(), (0, 0), "{path:?}");
    }
}

#[test]
fn an_ipv6_target_given_by_port_alone_matches_any_ipv6_address_only() {
    for path in BOTH {
        let mut h = Harness::new(path);
        if path == Path::Egress {
            h.add_client_net("::/0");
        }
        h.add_target6(None, 6379);
        let others = [
            [0x20, 1, 0xd, 0xb8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        for addr in [TARGET6, others[0], others[1]] {
            let s = Segment6::new((addr, 6379), (CLIENT6, 40000));
            assert_eq!(h.verdict(&s.frame()), h.drop(), "{path:?} {addr:?}");
        }
        // Port 80 is for TARGET6 only; an IPv4 reply from port 6379 is
        // not an IPv6 target's.
        let s = Segment6::new((others[0], 80), (CLIENT6, 40000));
        assert_eq!(h.verdict(&s.frame()), h.pass(), "{path:?}");
        let v4 = Segment::new(([198, 18, 3, 4], 6379), (CLIENT, 40000));
        assert_eq!(h.verdict(&v4.frame()), h.pass(), "{path:?}");
        let sources: Vec<_> = h
            .records6()
            .iter()
            .map(|r| (r.src_addr(), r.src_port()))
            .collect();
        assert_eq!(
            sources,
            [(TARGET6, 6379), (others[0], 6379), (others[1], 6379)]
        );
        assert_eq!(h.counters(), (5, 3, 3, 0, 0), "{path:?}");
    }
}

#[test]
fn vlan_tagged_ipv6_replies_are_reported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut one = reply6();
        one.vlans = vec![7];
        let mut two = reply6();
        two.vlans = vec![100, 7];
        two.extensions = vec![Extension6::HopByHop(8)];
        two.dst.1 = 40001;
        for s in [&one, &two] {
            assert_eq!(h.verdict(&s.frame()), h.drop(), "{path:?} {:?}", s.vlans);
        }
        let got: Vec<[u8; 88]> = h.records6().iter().map(|r| r.bytes).collect();
        assert_eq!(got, [expected_record6(&one), expected_record6(&two)]);
    }
}

#[test]
fn forty_ipv6_option_bytes_are_cut_to_24_with_the_data_offset_kept() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut s = reply6();
        s.flags = SYN | ACK;
        s.payload.clear();
        let mut opts = vec![
            2, 4, 0x05, 0xa0, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7,
        ];
        opts.resize(40, 1);
        s.tcp_options = opts;
        assert_eq!(h.verdict(&s.frame()), h.drop());
        let got = h.records6();
        assert_eq!(got[0].bytes, expected_record6(&s), "{path:?}");
        assert_eq!(got[0].tcp_header_len(), 60, "doff as on the wire");
        assert_eq!(got[0].payload_len(), Some(0));
        assert_eq!(&got[0].bytes[60..84], &s.tcp_options[..24]);
        assert_eq!(&got[0].bytes[84..], &[0; 4]);
    }
}

#[test]
fn malformed_ipv6_frames_are_counted_passed_and_never_reported() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut with_ext = reply6();
        with_ext.extensions = vec![Extension6::Routing(16)];
        let good = with_ext.frame();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        // Cut inside the fixed header (BPF_PROG_TEST_RUN refuses an skb
        // program IPv6 frames without a whole fixed header: the kernel's
        // stack never hands TC such a packet), the routing header and the
        // TCP header.
        for len in [
            14 + 4,
            14 + 39,
            14 + 40 + 1,
            14 + 40 + 16 + 10,
            14 + 40 + 16 + 31,
        ] {
            if path == Path::Egress && len < 14 + 40 {
                continue;
            }
            cases.push((format!("cut at {len}"), good[..len].to_vec()));
        }
        let mut bad_version = good.clone();
        bad_version[14] = 0x45;
        cases.push(("version 4 in an IPv6 frame".into(), bad_version));
        let mut bad_doff = good.clone();
        bad_doff[14 + 40 + 16 + 12] = 0x30;
        cases.push(("data offset 3".into(), bad_doff));
        let mut short_payload = good.clone();
        short_payload[18..20].copy_from_slice(&30u16.to_be_bytes());
        cases.push(("payload length below the headers".into(), short_payload));
        // An extension header longer than the frame.
        let mut long_ext = good.clone();
        long_ext[14 + 40 + 1] = 200;
        cases.push(("extension header past the end".into(), long_ext));
        // 40 option bytes announced, the frame ends after the fixed header.
        let mut cut_options = reply6();
        cut_options.payload.clear();
        cut_options.tcp_options = vec![1; 40];
        let cut_options = cut_options.frame();
        cases.push((
            "TCP options cut".into(),
            cut_options[..14 + 40 + 20].to_vec(),
        ));
        for (name, frame) in &cases {
            assert_eq!(h.verdict(frame), h.pass(), "{path:?} {name}");
        }
        assert!(h.all_records().is_empty());
        let n = cases.len() as u64;
        assert_eq!(h.counters(), (n, 0, 0, 0, n), "{path:?}");
        assert_eq!(h.count6(), (0, 0), "{path:?}");
    }
}

#[test]
fn ipv4_and_ipv6_replies_share_the_ring_in_order() {
    for path in BOTH {
        let mut h = Harness::new(path);
        let mut want = Vec::new();
        for i in 0..6u16 {
            if i % 2 == 0 {
                let mut s = reply();
                s.dst.1 = 41000 + i;
                assert_eq!(h.verdict(&s.frame()), h.drop());
                want.push(ReplyRecord::V4(HeaderRecord {
                    bytes: expected_record(&s),
                }));
            } else {
                let mut s = reply6();
                s.dst.1 = 41000 + i;
                assert_eq!(h.verdict(&s.frame()), h.drop());
                want.push(ReplyRecord::V6(HeaderRecord6 {
                    bytes: expected_record6(&s),
                }));
            }
        }
        assert_eq!(h.all_records(), want, "{path:?}");
        assert_eq!(h.counters(), (6, 6, 6, 0, 0), "{path:?}");
        assert_eq!(h.count6(), (3, 0), "{path:?}");
    }
}

#[test]
fn a_full_ring_still_drops_and_counts_every_ipv6_reply() {
    for path in BOTH {
        // One page: room for 42 IPv6 records of 88 bytes plus the ring's
        // 8-byte header.
        let mut h = Harness::with_ring(path, 4096);
        assert_eq!(h.run(&reply6().frame(), 200), h.drop());
        let (seen, matched, reported, ring_full, malformed) = h.counters();
        assert_eq!((seen, matched, malformed), (200, 200, 0), "{path:?}");
        assert_eq!(reported + ring_full, 200, "{path:?}");
        assert!(
            (1..200).contains(&reported) && ring_full > 0,
            "reported {reported}, ring full {ring_full}"
        );
        assert_eq!(h.count6(), (200, 0));
        let got = h.records6();
        assert_eq!(got.len() as u64, reported);
        assert!(got.iter().all(|r| r.bytes == expected_record6(&reply6())));
    }
}

#[test]
fn ipv6_payloads_are_copied_up_to_the_cap_only_while_asked_for() {
    for path in BOTH {
        let mut h = Harness::with_ring(path, 1 << 20);
        let mut seg = reply6();
        seg.extensions = vec![Extension6::HopByHop(16), Extension6::DestOptions(8)];
        let body = seg.payload.clone();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let got = h.replies();
        assert_eq!(got[0].payload, None, "{path:?}: nobody asked");
        h.program.capture().set_payload_cap(65_535).unwrap();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let mut ack = reply6();
        ack.payload.clear();
        ack.flags = ACK;
        assert_eq!(h.verdict(&ack.frame()), h.drop());
        h.program.capture().set_payload_cap(5).unwrap();
        assert_eq!(h.verdict(&seg.frame()), h.drop());
        let got = h.replies();
        assert_eq!(got.len(), 3, "{path:?}");
        let whole = got[0].payload.as_ref().expect("the payload");
        assert_eq!(
            (whole.len as usize, &*whole.bytes),
            (body.len(), &body[..]),
            "{path:?}: the payload after the extension headers"
        );
        assert_eq!(
            got[0].record,
            ReplyRecord::V6(HeaderRecord6 {
                bytes: expected_record6(&seg)
            })
        );
        assert_eq!(got[1].payload, None, "{path:?}: no payload, no bytes");
        let cut = got[2].payload.as_ref().expect("the payload, cut");
        assert_eq!((cut.len as usize, &*cut.bytes), (body.len(), &body[..5]));
        // Large payloads, across both chunks of the copy.
        h.program.capture().set_payload_cap(65_535).unwrap();
        let lens: &[usize] = match path {
            Path::Assistant => &[1, 32_768, 40_000, 65_535 - 24 - 32],
            Path::Egress => &[1, 3000],
        };
        for &len in lens {
            let mut big = reply6();
            big.extensions = vec![Extension6::HopByHop(24)];
            big.payload = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(h.verdict(&big.frame()), h.drop(), "{path:?} {len}");
            let got = h.replies();
            assert_eq!(got.len(), 1, "{path:?} {len}");
            let p = got[0].payload.as_ref().expect("the payload");
            assert_eq!(p.len as usize, len, "{path:?}");
            assert!(*p.bytes == big.payload[..], "{path:?} {len}: bytes differ");
        }
    }
}

#[test]
fn egress_claims_ipv6_replies_to_ipv6_client_ranges_only() {
    let mut h = Harness::new(Path::Egress);
    let addr = |group5: u8, last: u8| {
        let mut a = CLIENT6;
        a[5] = group5;
        a[15] = last;
        a
    };
    let to = |a: [u8; 16]| Segment6::new((TARGET6, 80), (a, 40000)).frame();
    for a in [addr(1, 0), CLIENT6, addr(1, 0xff)] {
        assert_eq!(
            h.verdict(&to(a)),
            TC_ACT_REDIRECT,
            "{a:?} is in {CLIENT6_NET}"
        );
    }
    let mut next_net = CLIENT6;
    next_net[7] = 1; // 2001:db8:1:1::2
    for a in [addr(2, 1), addr(0, 2), next_net] {
        assert_eq!(h.verdict(&to(a)), TC_ACT_UNSPEC, "{a:?} is not");
    }
    assert_eq!(h.records6().len(), 3);
    assert_eq!(h.counters(), (6, 3, 3, 0, 0));
    assert_eq!(h.count(InterceptCounter::Unclaimed), 3);
}

#[test]
fn egress_claims_an_announced_ipv6_client_address_on_every_port() {
    let mut h = Harness::bare(Path::Egress, 1 << 16);
    h.add_client_net(CLIENT_NET); // an IPv4 range claims no IPv6 client
    let client = [0x20, 1, 0xd, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    let reply = |port: u16| Segment6::new((TARGET6, 80), (client, port)).frame();
    assert_eq!(h.verdict(&reply(40000)), TC_ACT_UNSPEC);
    assert_eq!(h.count(InterceptCounter::Unclaimed), 1);
    assert_eq!(
        h.announce6((client, 40000), (TARGET6, 80)),
        Claimed::AfterAReplyEscaped
    );
    for port in [40000, 40001, 65000] {
        assert_eq!(h.verdict(&reply(port)), TC_ACT_REDIRECT, "port {port}");
    }
    let mut other = client;
    other[15] = 8;
    let other = Segment6::new((TARGET6, 80), (other, 40000)).frame();
    assert_eq!(h.verdict(&other), TC_ACT_UNSPEC);
    h.add_target6(Some(TARGET6.into()), 8080);
    let other_port = Segment6::new((TARGET6, 8080), (client, 40000)).frame();
    assert_eq!(h.verdict(&other_port), TC_ACT_UNSPEC);
    assert_eq!(h.records6().len(), 3);
    assert_eq!(h.announce6((client, 40002), (TARGET6, 80)), Claimed::Now);
    // The IPv4 table knows nothing of it.
    let v4 = Segment::new((TARGET, 80), ([198, 19, 7, 7], 40000)).frame();
    assert_eq!(h.verdict(&v4), TC_ACT_UNSPEC);
}

#[test]
fn egress_never_touches_the_ipv6_loopback_address() {
    let mut h = Harness::new(Path::Egress);
    h.add_client_net("::/0");
    h.add_target6(None, 80);
    let loopback = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    for (src, dst) in [(loopback, loopback), (TARGET6, loopback)] {
        let s = Segment6::new((src, 80), (dst, 40000));
        assert_eq!(h.verdict(&s.frame()), TC_ACT_UNSPEC, "{src:?} -> {dst:?}");
    }
    assert!(h.all_records().is_empty());
    let s = Segment6::new(
        (TARGET6, 80),
        (
            [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            40000,
        ),
    );
    assert_eq!(h.verdict(&s.frame()), TC_ACT_REDIRECT);
}
