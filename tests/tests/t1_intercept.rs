//! T1: the reply program (`intercept-ebpf`) on crafted frames through
//! BPF_PROG_TEST_RUN: verdicts, the exact header records it writes into the
//! ring buffer, and its counters.

use aya::programs::{TestRun, TestRunOptions};
use etherparse::Ipv4HeaderSlice;
use intercept_user::capture::{ring::ReplyRing, xdp::ReplyProgram};
use tcpcopy_common::{counters::InterceptCounter, proto::HeaderRecord};
use tcpcopy_tests::{
    frames::{self, ACK, PSH, RST, SYN, Segment},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const CLIENT: [u8; 4] = [198, 18, 1, 2];
const TARGET: [u8; 4] = [198, 18, 2, 2];

/// A loaded reply program with its ring, intercepting `TARGET:80`.
struct Harness {
    program: ReplyProgram,
    ring: ReplyRing,
}

impl Harness {
    fn new() -> Self {
        Self::with_ring(1 << 16)
    }

    fn with_ring(bytes: u32) -> Self {
        require_root();
        let mut program = ReplyProgram::load_with_ring(bytes).expect("load the reply program");
        program.add_target(Some(TARGET.into()), 80).unwrap();
        let ring = program.take_ring().expect("the RECORDS ring");
        Self { program, ring }
    }

    /// Runs the program `repeat` times on `frame`; returns the verdict.
    fn run(&self, frame: &[u8], repeat: u32) -> u32 {
        let mut out = vec![0u8; frame.len() + 512];
        self.program
            .object()
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    }

    fn verdict(&self, frame: &[u8]) -> u32 {
        self.run(frame, 1)
    }

    /// Everything in the ring now.
    fn records(&mut self) -> Vec<HeaderRecord> {
        let mut got = Vec::new();
        self.ring.drain(usize::MAX, |r| got.push(r));
        assert_eq!(self.ring.bad_entries(), 0, "ring entries of a wrong size");
        got
    }

    fn count(&self, c: InterceptCounter) -> u64 {
        self.program.counter(c).unwrap()
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
    let mut h = Harness::new();
    let seg = reply();
    assert_eq!(h.verdict(&seg.frame()), XDP_DROP);
    let got = h.records();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, expected_record(&seg));
    assert_eq!(got[0].payload_len(), Some(seg.payload.len()));
    assert_eq!(h.counters(), (1, 1, 1, 0, 0));
}

#[test]
fn records_come_out_in_the_order_replies_went_in() {
    let mut h = Harness::new();
    let mut segs = Vec::new();
    for (i, flags) in [SYN | ACK, ACK, ACK | PSH, RST].into_iter().enumerate() {
        let mut s = reply();
        s.flags = flags;
        s.seq += i as u32 * 100;
        s.dst.1 = 40000 + i as u16;
        assert_eq!(h.verdict(&s.frame()), XDP_DROP);
        segs.push(s);
    }
    let got = h.records();
    let want: Vec<[u8; 64]> = segs.iter().map(expected_record).collect();
    let got: Vec<[u8; 64]> = got.iter().map(|r| r.bytes).collect();
    assert_eq!(got, want);
}

#[test]
fn frames_that_are_not_target_replies_pass_unreported() {
    let mut h = Harness::new();
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
        assert_eq!(h.verdict(frame), XDP_PASS, "{name}");
    }
    assert!(h.records().is_empty());
    assert_eq!(h.counters(), (6, 0, 0, 0, 0));
}

#[test]
fn a_target_given_by_port_alone_matches_any_address() {
    let mut h = Harness::new();
    h.program.add_target(None, 6379).unwrap();
    for addr in [TARGET, [198, 18, 3, 4], [198, 19, 0, 1]] {
        let s = Segment::new((addr, 6379), (CLIENT, 40000));
        assert_eq!(h.verdict(&s.frame()), XDP_DROP, "{addr:?}");
    }
    let s = Segment::new(([198, 18, 3, 4], 80), (CLIENT, 40000));
    assert_eq!(h.verdict(&s.frame()), XDP_PASS, "port 80 only on TARGET");
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

#[test]
fn vlan_tagged_replies_are_reported() {
    let mut h = Harness::new();
    let mut one = reply();
    one.vlans = vec![7];
    let mut two = reply();
    two.vlans = vec![100, 7];
    two.dst.1 = 40001;
    for s in [&one, &two] {
        assert_eq!(h.verdict(&s.frame()), XDP_DROP, "{:?}", s.vlans);
    }
    let got: Vec<[u8; 64]> = h.records().iter().map(|r| r.bytes).collect();
    assert_eq!(got, [expected_record(&one), expected_record(&two)]);
}

#[test]
fn ip_options_are_stripped_and_the_payload_length_kept() {
    let mut h = Harness::new();
    for option_len in [4usize, 8, 40] {
        let mut s = reply();
        // NOPs then end-of-list.
        s.ip_options = vec![1; option_len];
        s.ip_options[option_len - 1] = 0;
        s.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]; // NOP NOP TS
        assert_eq!(h.verdict(&s.frame()), XDP_DROP, "{option_len} option bytes");
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

#[test]
fn forty_option_bytes_are_cut_to_24_with_the_data_offset_kept() {
    let mut h = Harness::new();
    let mut s = reply();
    s.flags = SYN | ACK;
    s.payload.clear();
    // MSS, SACK-permitted, timestamps, window scale, then NOPs: 40 bytes.
    let mut opts = vec![
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7,
    ];
    opts.resize(40, 1);
    s.tcp_options = opts;
    assert_eq!(h.verdict(&s.frame()), XDP_DROP);
    let got = h.records();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, expected_record(&s));
    assert_eq!(got[0].tcp_header_len(), 60, "doff as on the wire");
    assert_eq!(got[0].payload_len(), Some(0));
    assert_eq!(&got[0].bytes[40..64], &s.tcp_options[..24]);
}

#[test]
fn malformed_frames_are_counted_passed_and_never_reported() {
    let mut h = Harness::new();
    let good = reply().frame();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut inside the IPv4 and the TCP header (BPF_PROG_TEST_RUN refuses
    // frames shorter than an Ethernet header).
    for len in [14 + 4, 14 + 19, 14 + 20 + 10, 14 + 20 + 19] {
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
        assert_eq!(h.verdict(frame), XDP_PASS, "{name}");
    }
    assert!(h.records().is_empty());
    let n = cases.len() as u64;
    assert_eq!(h.counters(), (n, 0, 0, 0, n));
}

#[test]
fn a_full_ring_still_drops_and_counts_every_reply() {
    // One page: room for 56 records of 64 bytes plus the ring's 8-byte header.
    let mut h = Harness::with_ring(4096);
    const REPLIES: u32 = 200;
    assert_eq!(h.run(&reply().frame(), REPLIES), XDP_DROP);
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
    assert_eq!(h.verdict(&reply().frame()), XDP_DROP);
    assert_eq!(h.records().len(), 1);
    assert_eq!(h.count(InterceptCounter::Reported), reported + 1);
}
