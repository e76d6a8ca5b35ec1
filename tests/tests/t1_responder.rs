//! T1: the benchmarks' near-free target (`lab-ebpf`'s `tcp_responder`)
//! on crafted frames through BPF_PROG_TEST_RUN: what it answers, byte by
//! byte, with valid checksums; what it takes without an answer; what it
//! leaves to the stack.

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{Ipv4HeaderSlice, TcpHeaderSlice};
use tcpcopy_tests::{
    frames::{self, ACK, FIN, PSH, RST, SYN, Segment},
    require_root,
    responder::{Answers, RESPONSE, Responder},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const TARGET: ([u8; 4], u16) = ([198, 18, 2, 2], 80);
const CLIENT: ([u8; 4], u16) = ([198, 18, 1, 2], 40000);

/// The verdict and the frame the program left.
fn run(r: &Responder, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 512];
    let result = r
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// An answer's headers and payload, its checksums checked.
struct Answer {
    mac_dst: [u8; 6],
    mac_src: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    mss: Option<u16>,
    payload: Vec<u8>,
}

fn parse(frame: &[u8]) -> Answer {
    assert_eq!(frame[12..14], [0x08, 0x00], "IPv4");
    let ip = Ipv4HeaderSlice::from_slice(&frame[14..]).expect("an IPv4 header");
    let ip_len = ip.slice().len();
    let tcp_bytes = &frame[14 + ip_len..14 + usize::from(ip.total_len())];
    let tcp = TcpHeaderSlice::from_slice(tcp_bytes).expect("a TCP header");
    let payload = tcp_bytes[tcp.slice().len()..].to_vec();
    let ip_header = ip.to_header();
    assert_eq!(
        ip_header.header_checksum,
        ip_header.calc_header_checksum(),
        "IPv4 checksum"
    );
    let tcp_header = tcp.to_header();
    assert_eq!(
        tcp_header.checksum,
        tcp_header.calc_checksum_ipv4(&ip_header, &payload).unwrap(),
        "TCP checksum"
    );
    assert_eq!(ip.ttl(), 64);
    let mss = tcp_header.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    let flags = u8::from(tcp.fin())
        | u8::from(tcp.syn()) << 1
        | u8::from(tcp.rst()) << 2
        | u8::from(tcp.psh()) << 3
        | u8::from(tcp.ack()) << 4;
    Answer {
        mac_dst: frame[0..6].try_into().unwrap(),
        mac_src: frame[6..12].try_into().unwrap(),
        src: (ip.source(), tcp.source_port()),
        dst: (ip.destination(), tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags,
        mss,
        payload,
    }
}

fn segment(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Segment {
    let mut s = Segment::new(CLIENT, TARGET);
    s.flags = flags;
    s.seq = seq;
    s.ack = ack;
    s.payload = payload.to_vec();
    s
}

#[test]
fn a_syn_gets_a_syn_ack_with_a_cookie_isn_and_an_mss() {
    require_root();
    let r = Responder::load(None, 80, None);
    let mut syn = segment(SYN, 1_000_000, 0, b"");
    // As tcpcopy sends it: MSS, SACK permitted, timestamps, window scale.
    syn.tcp_options = vec![
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let frame = syn.frame();
    let (verdict, out) = run(&r, &frame);
    assert_eq!(verdict, XDP_TX);
    let a = parse(&out);
    assert_eq!((a.src, a.dst), (TARGET, CLIENT), "addresses swapped");
    assert_eq!(a.mac_dst, frame[6..12], "back to the sender");
    assert_eq!(a.mac_src, frame[0..6]);
    assert_eq!(a.flags, SYN | ACK);
    assert_eq!(a.ack, 1_000_001);
    assert_eq!(a.mss, Some(1460));
    assert!(a.payload.is_empty());
    // The cookie: the same for the same connection, another for another.
    let (_, again) = run(&r, &frame);
    assert_eq!(parse(&again).seq, a.seq);
    let mut other = syn.clone();
    other.src.1 += 1;
    let (_, other) = run(&r, &other.frame());
    assert_ne!(parse(&other).seq, a.seq);
}

#[test]
fn data_gets_an_ack_with_the_response_and_a_fin_a_fin_ack() {
    require_root();
    let r = Responder::load(Some([198, 18, 2, 2].into()), 80, None);
    let request = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    let (verdict, out) = run(&r, &segment(PSH | ACK, 5000, 777, request).frame());
    assert_eq!(verdict, XDP_TX);
    let a = parse(&out);
    assert_eq!(a.flags, PSH | ACK);
    assert_eq!((a.seq, a.ack), (777, 5000 + request.len() as u32));
    assert_eq!(a.payload, RESPONSE);
    // A request shorter than the response: the frame grows.
    let (verdict, out) = run(&r, &segment(PSH | ACK, 9, 10, b"x").frame());
    assert_eq!(verdict, XDP_TX);
    assert_eq!(parse(&out).payload, RESPONSE);
    let (verdict, out) = run(&r, &segment(FIN | ACK, 6000, 900, b"").frame());
    assert_eq!(verdict, XDP_TX);
    let a = parse(&out);
    assert_eq!((a.flags, a.seq, a.ack), (FIN | ACK, 900, 6001));
    assert!(a.payload.is_empty());
    // Counted by kind (a replayer with no counts of its own is measured
    // by these).
    run(&r, &segment(SYN, 1, 0, b"").frame());
    assert_eq!(
        r.answers(),
        Answers {
            syn_acks: 1,
            data: 2,
            fin_acks: 1
        }
    );
}

#[test]
fn answers_go_to_the_next_hop_when_one_is_set() {
    require_root();
    let hop = [0x02, 0, 0, 0, 0, 0x33];
    let r = Responder::load(None, 80, Some(hop));
    let frame = segment(SYN, 1, 0, b"").frame();
    let (verdict, out) = run(&r, &frame);
    assert_eq!(verdict, XDP_TX);
    let a = parse(&out);
    assert_eq!(a.mac_dst, hop);
    assert_eq!(a.mac_src, frame[0..6], "from the target's own address");
}

#[test]
fn bare_acks_and_resets_get_nothing_and_other_traffic_passes() {
    require_root();
    let r = Responder::load(Some([198, 18, 2, 2].into()), 80, None);
    for (what, frame) in [
        ("bare ACK", segment(ACK, 1, 1, b"").frame()),
        ("RST", segment(RST | ACK, 1, 1, b"").frame()),
        ("a SYN-ACK", segment(SYN | ACK, 1, 1, b"").frame()),
    ] {
        assert_eq!(run(&r, &frame).0, XDP_DROP, "{what}");
    }
    let mut other_addr = segment(SYN, 1, 0, b"");
    other_addr.dst.0 = [198, 18, 2, 9];
    for (what, frame) in [
        ("another port", frames::tcp(CLIENT, (TARGET.0, 22), b"ssh")),
        ("another address", other_addr.frame()),
        ("ARP", frames::arp()),
        ("UDP", frames::udp(CLIENT, TARGET)),
    ] {
        assert_eq!(run(&r, &frame).0, XDP_PASS, "{what}");
    }
    assert_eq!(
        r.answers(),
        Answers::default(),
        "nothing answered, nothing counted"
    );
}
