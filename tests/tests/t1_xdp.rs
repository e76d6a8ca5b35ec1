//! T1: the capture programs (`tcpcopy-ebpf`) on crafted frames through
//! BPF_PROG_TEST_RUN. Asserts verdicts and counters. The reply program of
//! intercept has its own target, `t1_intercept`.

use aya::programs::{TestRun, TestRunOptions, TestRunResult};
use tcpcopy_common::counters::CaptureCounter;
use tcpcopy_tests::{
    frames,
    frames6::{self, Extension6, Segment6},
    require_root, rule,
};
use tcpcopy_user::capture::xdp::CaptureProgram;

const XDP_PASS: u32 = 2;

const ONLINE: [u8; 4] = [198, 18, 1, 1];
const CLIENT: [u8; 4] = [198, 18, 1, 2];

/// Runs `program` (XDP or TC) once on `frame` and returns its verdict.
fn verdict<P>(program: &P, frame: &[u8]) -> u32
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 4096];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    result.return_value
}

#[test]
fn capture_inline_counts_frames_to_target_and_passes_everything() {
    require_root();
    let mut capture = CaptureProgram::load_inline().expect("load the capture program");
    capture
        .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    let program = capture.object().program();

    let cases: [(&str, Vec<u8>, bool); 7] = [
        (
            "to target",
            frames::tcp((CLIENT, 40000), (ONLINE, 80), b"GET / HTTP/1.1\r\n\r\n"),
            true,
        ),
        (
            "vlan to target",
            frames::tcp_vlan(7, (CLIENT, 40001), (ONLINE, 80), b""),
            true,
        ),
        (
            "other port",
            frames::tcp((CLIENT, 40000), (ONLINE, 81), b"x"),
            false,
        ),
        (
            "other address",
            frames::tcp((CLIENT, 40000), ([198, 18, 1, 9], 80), b"x"),
            false,
        ),
        (
            "reply direction",
            frames::tcp((ONLINE, 80), (CLIENT, 40000), b"HTTP/1.1 200"),
            false,
        ),
        (
            "udp to port 80",
            frames::udp((CLIENT, 5353), (ONLINE, 80)),
            false,
        ),
        ("arp", frames::arp(), false),
    ];
    let mut matched = 0;
    for (name, frame, is_match) in &cases {
        assert_eq!(
            verdict(program, frame),
            XDP_PASS,
            "{name}: production must pass"
        );
        matched += u64::from(*is_match);
        assert_eq!(
            capture.counter(CaptureCounter::Matched).unwrap(),
            matched,
            "after {name}"
        );
    }
    // Cut inside the TCP header: counted malformed, still passed.
    let truncated = &cases[0].1[..14 + 20 + 10];
    assert_eq!(verdict(program, truncated), XDP_PASS);

    assert_eq!(capture.counter(CaptureCounter::Seen).unwrap(), 8);
    assert_eq!(capture.counter(CaptureCounter::Matched).unwrap(), 2);
    assert_eq!(capture.counter(CaptureCounter::Malformed).unwrap(), 1);
}

#[test]
fn capture_rule_by_port_alone_matches_any_address() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture.add_rule(&rule("6379-198.18.2.2:6379"), 0).unwrap();
    let program = capture.object().program();
    for addr in [ONLINE, [198, 18, 3, 4], [198, 19, 0, 1]] {
        verdict(
            program,
            &frames::tcp((CLIENT, 40000), (addr, 6379), b"PING\r\n"),
        );
    }
    verdict(
        program,
        &frames::tcp((CLIENT, 40000), (ONLINE, 6380), b"PING\r\n"),
    );
    assert_eq!(capture.counter(CaptureCounter::Seen).unwrap(), 4);
    assert_eq!(capture.counter(CaptureCounter::Matched).unwrap(), 3);
}

/// Drains the packet ring: (capture time, IPv4 packet) of every record.
fn drain(ring: &mut tcpcopy_user::capture::ring::PacketRing) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    ring.drain(usize::MAX, |t, p| out.push((t, p.to_vec())));
    out
}

#[test]
fn capture_inline_copies_exactly_the_matching_frames_into_the_ring() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture
        .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    let mut ring = capture.take_ring().unwrap();
    let program = capture.object().program();

    // One frame per size class boundary, plus a VLAN-tagged one.
    let sizes = [0usize, 60, 100, 400, 900, 1400, 2000, 3000];
    let mut sent = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..*n).map(|b| (b * 7 + i) as u8).collect();
        let frame = frames::tcp((CLIENT, 40000 + i as u16), (ONLINE, 80), &payload);
        assert_eq!(verdict(program, &frame), XDP_PASS);
        sent.push(frame[14..].to_vec());
    }
    let vlan = frames::tcp_vlan(12, (CLIENT, 41000), (ONLINE, 80), b"tagged");
    assert_eq!(verdict(program, &vlan), XDP_PASS);
    sent.push(vlan[18..].to_vec());
    // Not matching: not copied.
    verdict(program, &frames::tcp((CLIENT, 40000), (ONLINE, 81), b"no"));

    let got = drain(&mut ring);
    assert_eq!(got.len(), sent.len());
    for (i, ((t, packet), want)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(packet, want, "record {i}: the IPv4 packet, byte for byte");
        assert!(*t > 0, "a capture time");
    }
    assert!(
        got.windows(2).all(|w| w[0].0 <= w[1].0),
        "times in capture order"
    );
    assert_eq!(
        capture.counter(CaptureCounter::Copied).unwrap(),
        sent.len() as u64
    );
    assert_eq!(capture.counter(CaptureCounter::RingFull).unwrap(), 0);
    assert_eq!(ring.bad_entries(), 0);
}

/// Frames larger than a page arrive in several buffers (jumbo frames on a
/// link with MTU 9000; in generic mode, packets merged by GRO, up to 64
/// KiB): copied whole, byte for byte, each at its own size.
#[test]
fn capture_inline_copies_jumbo_and_merged_frames_whole() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture
        .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    let mut ring = capture.take_ring().unwrap();
    let program = capture.object().program();
    let sizes = [4000usize, 4100, 8948, 9000, 30_000, 65_495];
    let mut sent = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..*n).map(|b| (b * 13 + i) as u8).collect();
        let frame = frames::tcp((CLIENT, 42000 + i as u16), (ONLINE, 80), &payload);
        assert_eq!(verdict(program, &frame), XDP_PASS, "{n}-byte payload");
        sent.push(frame[14..].to_vec());
    }
    let got = drain(&mut ring);
    let counters = capture.counters().unwrap();
    let lens: Vec<usize> = got.iter().map(|(_, p)| p.len()).collect();
    assert_eq!(
        got.len(),
        sent.len(),
        "one record per frame: {lens:?} {counters:?}"
    );
    for ((_, packet), want) in got.iter().zip(&sent) {
        assert_eq!(packet.len(), want.len());
        assert!(
            packet == want,
            "a {}-byte packet, byte for byte",
            want.len()
        );
    }
    assert_eq!(capture.counter(CaptureCounter::Copied).unwrap(), 6);
    assert_eq!(capture.counter(CaptureCounter::Truncated).unwrap(), 0);
    assert_eq!(ring.truncated(), 0);
}

#[test]
fn capture_inline_counts_a_full_ring_and_still_passes() {
    require_root();
    use tcpcopy_user::capture::xdp::CaptureMode;
    let mut capture = CaptureProgram::load(CaptureMode::Inline { ring_bytes: 4096 }).unwrap();
    capture.add_rule(&rule("80-198.18.2.2:80"), 0).unwrap();
    let mut ring = capture.take_ring().unwrap();
    let program = capture.object().program();
    let frame = frames::tcp((CLIENT, 40000), (ONLINE, 80), &[b'x'; 200]);
    for _ in 0..40 {
        assert_eq!(
            verdict(program, &frame),
            XDP_PASS,
            "production passes, ring full or not"
        );
    }
    let copied = capture.counter(CaptureCounter::Copied).unwrap();
    let full = capture.counter(CaptureCounter::RingFull).unwrap();
    assert_eq!(copied + full, 40);
    assert!(full > 0 && copied > 0, "copied {copied}, ring full {full}");
    assert_eq!(drain(&mut ring).len() as u64, copied);
    // Room again once read.
    verdict(program, &frame);
    assert_eq!(capture.counter(CaptureCounter::Copied).unwrap(), copied + 1);
}

#[test]
fn capture_mirror_drops_or_passes_others_and_counts_missing_sockets() {
    require_root();
    use tcpcopy_user::capture::xdp::CaptureMode;
    const XDP_DROP: u32 = 1;
    for pass_others in [false, true] {
        let mut capture = CaptureProgram::load(CaptureMode::Mirror {
            queues: 4,
            pass_others,
        })
        .unwrap();
        capture
            .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
            .unwrap();
        capture
            .add_rule(&rule("[2001:db8:1::1]:80-[2001:db8:2::2]:80"), 1)
            .unwrap();
        let program = capture.object().program();
        let other = frames::tcp((CLIENT, 40000), (ONLINE, 22), b"ssh");
        let want = if pass_others { XDP_PASS } else { XDP_DROP };
        assert_eq!(verdict(program, &other), want);
        assert_eq!(verdict(program, &frames::arp()), want);
        assert_eq!(verdict(program, &seg6((ONLINE6, 22), b"ssh").frame()), want);
        // Matching, but no AF_XDP socket on queue 0: dropped, counted.
        let hit = frames::tcp((CLIENT, 40000), (ONLINE, 80), b"GET /");
        assert_eq!(verdict(program, &hit), XDP_DROP);
        let hit6 = seg6((ONLINE6, 80), b"GET /").frame();
        assert_eq!(verdict(program, &hit6), XDP_DROP);
        assert_eq!(capture.counter(CaptureCounter::Matched).unwrap(), 2);
        assert_eq!(capture.counter(CaptureCounter::Matched6).unwrap(), 1);
        assert_eq!(capture.counter(CaptureCounter::RedirectFailed).unwrap(), 2);
        assert_eq!(capture.counter(CaptureCounter::Redirected).unwrap(), 0);
    }
}

/// TC "unspecified": the response program never decides a packet's fate.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// Drains both rings of a `--compare` capture until `want` records came
/// out (the merge holds a record until the other ring is read past its
/// time), or a generous deadline passes.
fn drain_merged(
    ring: &mut tcpcopy_user::capture::ring::PacketRing,
    want: usize,
) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while out.len() < want && std::time::Instant::now() < deadline {
        ring.drain(usize::MAX, |t, p| out.push((t, p.to_vec())));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Anything beyond `want` shows up too.
    std::thread::sleep(std::time::Duration::from_millis(5));
    ring.drain(usize::MAX, |t, p| out.push((t, p.to_vec())));
    out
}

#[test]
fn capture_responses_copies_production_answers_that_carry_something() {
    require_root();
    use tcpcopy_tests::frames::{ACK, FIN, PSH, RST, SYN, Segment};
    use tcpcopy_user::capture::xdp::{CaptureMode, DEFAULT_RING_BYTES};
    let mut capture = CaptureProgram::load_with_responses(
        CaptureMode::Inline {
            ring_bytes: DEFAULT_RING_BYTES,
        },
        1 << 20,
    )
    .unwrap();
    capture
        .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    let mut ring = capture.take_ring().unwrap();
    let answer = |flags: u8, payload: &[u8]| {
        let mut s = Segment::new((ONLINE, 80), (CLIENT, 40000));
        s.flags = flags;
        s.payload = payload.to_vec();
        s.frame()
    };
    let copied = [
        answer(SYN | ACK, b""),
        answer(ACK | PSH, b"HTTP/1.1 200 OK\r\n\r\n"),
        answer(FIN | ACK, b""),
        answer(RST, b""),
        frames::tcp_vlan(7, (ONLINE, 80), (CLIENT, 40001), b"tagged answer"),
    ];
    let ignored = [
        // A bare ACK: nothing to compare.
        answer(ACK, b""),
        // The client's side, another service's answers, not TCP.
        frames::tcp((CLIENT, 40000), (ONLINE, 80), b"GET / HTTP/1.1\r\n\r\n"),
        frames::tcp((ONLINE, 22), (CLIENT, 40000), b"ssh banner"),
        frames::udp((ONLINE, 80), (CLIENT, 40000)),
        frames::arp(),
    ];
    let program = capture.response_program().expect("loaded with responses");
    let run = |frame: &[u8]| verdict(program, frame);
    for frame in copied.iter().chain(&ignored) {
        assert_eq!(
            run(frame),
            TC_ACT_UNSPEC,
            "the verdict is always 'unspecified'"
        );
    }
    // Malformed: counted, never copied, still unspecified.
    assert_eq!(run(&copied[1][..40]), TC_ACT_UNSPEC);
    let got = drain_merged(&mut ring, copied.len());
    let want: Vec<Vec<u8>> = copied
        .iter()
        .map(|f| {
            let l3 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
            f[l3..].to_vec()
        })
        .collect();
    let got_packets: Vec<Vec<u8>> = got.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        got_packets, want,
        "exactly the answers, byte for byte, in order"
    );
    assert_eq!(capture.counter(CaptureCounter::Responses).unwrap(), 5);
    assert_eq!(
        capture.counter(CaptureCounter::ResponseRingFull).unwrap(),
        0
    );
    assert_eq!(capture.counter(CaptureCounter::Malformed).unwrap(), 1);
    // The client packets' counters are the inline program's alone.
    assert_eq!(capture.counter(CaptureCounter::Copied).unwrap(), 0);
}

#[test]
fn requests_and_responses_come_out_merged_by_capture_time() {
    require_root();
    use tcpcopy_user::capture::xdp::{CaptureMode, DEFAULT_RING_BYTES};
    let mut capture = CaptureProgram::load_with_responses(
        CaptureMode::Inline {
            ring_bytes: DEFAULT_RING_BYTES,
        },
        1 << 20,
    )
    .unwrap();
    capture
        .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
        .unwrap();
    let mut ring = capture.take_ring().unwrap();
    let inline = capture.object().program();
    let responses = capture.response_program().unwrap();
    let tc_run = |frame: &[u8]| verdict(responses, frame);
    // Request, answer, request, answer, ... alternating between the rings.
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let req = frames::tcp((CLIENT, 40000), (ONLINE, 80), &[b'q', i]);
        assert_eq!(verdict(inline, &req), XDP_PASS);
        let ans = frames::tcp((ONLINE, 80), (CLIENT, 40000), &[b'a', i]);
        assert_eq!(tc_run(&ans), TC_ACT_UNSPEC);
        sent.push(vec![b'q', i]);
        sent.push(vec![b'a', i]);
    }
    let got = drain_merged(&mut ring, sent.len());
    let payloads: Vec<Vec<u8>> = got.iter().map(|(_, p)| p[40..].to_vec()).collect();
    assert_eq!(payloads, sent, "in the order they were captured");
    assert!(
        got.windows(2).all(|w| w[0].0 <= w[1].0),
        "capture times ascend"
    );
}

#[test]
fn capture_mirror_redirects_answers_only_when_asked() {
    require_root();
    use tcpcopy_user::capture::xdp::CaptureMode;
    const XDP_DROP: u32 = 1;
    let mode = CaptureMode::Mirror {
        queues: 1,
        pass_others: true,
    };
    let answer = frames::tcp((ONLINE, 80), (CLIENT, 40000), b"HTTP/1.1 200 OK\r\n\r\n");
    let bare_ack = frames::Segment::new((ONLINE, 80), (CLIENT, 40000)).frame();
    for asked in [false, true] {
        let mut capture = if asked {
            CaptureProgram::load_with_responses(mode, 4096).unwrap()
        } else {
            CaptureProgram::load(mode).unwrap()
        };
        capture
            .add_rule(&rule("198.18.1.1:80-198.18.2.2:80"), 0)
            .unwrap();
        let program = capture.object().program();
        // Taken (no socket on the queue here: a counted drop) only when asked.
        let want = if asked { XDP_DROP } else { XDP_PASS };
        assert_eq!(verdict(program, &answer), want, "asked: {asked}");
        assert_eq!(
            verdict(program, &bare_ack),
            XDP_PASS,
            "a bare ACK is never taken"
        );
        assert_eq!(
            capture.counter(CaptureCounter::RedirectFailed).unwrap(),
            u64::from(asked)
        );
        assert_eq!(capture.counter(CaptureCounter::Matched).unwrap(), 0);
    }
}

const ONLINE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An IPv6 data segment from the client to `dst`.
fn seg6(dst: ([u8; 16], u16), payload: &[u8]) -> Segment6 {
    let mut s = Segment6::new((CLIENT6, 40000), dst);
    s.flags = frames::ACK | frames::PSH;
    s.payload = payload.to_vec();
    s
}

#[test]
fn capture_inline_copies_ipv6_segments_with_extension_headers_and_counts_fragments() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture
        .add_rule(&rule("[2001:db8:1::1]:80-[2001:db8:2::2]:80"), 0)
        .unwrap();
    let mut ring = capture.take_ring().unwrap();
    let program = capture.object().program();

    let plain = seg6((ONLINE6, 80), b"GET / HTTP/1.1\r\n\r\n");
    let mut with_ext = seg6((ONLINE6, 80), b"with extensions");
    with_ext.extensions = vec![
        Extension6::HopByHop(8),
        Extension6::Routing(24),
        Extension6::DestOptions(16),
    ];
    with_ext.tcp_options = vec![2, 4, 0x05, 0xa0, 1, 1, 4, 2];
    let mut tagged = seg6((ONLINE6, 80), b"tagged");
    tagged.vlans = vec![7, 9];
    let mut syn = Segment6::new((CLIENT6, 40001), (ONLINE6, 80));
    syn.flags = frames::SYN;
    let sent = [&plain, &with_ext, &tagged, &syn];
    for s in sent {
        assert_eq!(verdict(program, &s.frame()), XDP_PASS);
    }
    // Not copied: a fragment of a matching packet, other ports and
    // addresses, IPv4 to the same port, UDP and ICMPv6.
    let mut frag = seg6((ONLINE6, 80), b"part");
    frag.extensions = vec![Extension6::Fragment {
        offset: 0,
        more: true,
        id: 7,
    }];
    let mut other_addr = ONLINE6;
    other_addr[15] = 9;
    for frame in [
        frag.frame(),
        seg6((ONLINE6, 81), b"other port").frame(),
        seg6((other_addr, 80), b"other address").frame(),
        frames::tcp((CLIENT, 40000), (ONLINE, 80), b"IPv4"),
        frames6::udp6((CLIENT6, 5353), (ONLINE6, 80)),
        frames6::icmp6_echo(CLIENT6, ONLINE6),
    ] {
        assert_eq!(verdict(program, &frame), XDP_PASS);
    }

    let got = drain(&mut ring);
    assert_eq!(got.len(), sent.len(), "exactly the matching IPv6 segments");
    for (i, ((_, packet), want)) in got.iter().zip(sent).enumerate() {
        assert_eq!(
            packet,
            &want.packet(),
            "record {i}: the IPv6 packet from its fixed header, extensions included"
        );
    }
    let count = |c| capture.counter(c).unwrap();
    assert_eq!(count(CaptureCounter::Matched), 4);
    assert_eq!(count(CaptureCounter::Matched6), 4);
    assert_eq!(count(CaptureCounter::Copied), 4);
    assert_eq!(count(CaptureCounter::Fragments6), 1);
    assert_eq!(count(CaptureCounter::Malformed), 0);
}

#[test]
fn capture_rules_by_port_alone_match_their_target_family_only() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture
        .add_rule(&rule("6379-[2001:db8:2::2]:6379"), 0)
        .unwrap();
    capture.add_rule(&rule("80-198.18.2.2:80"), 1).unwrap();
    let mut ring = capture.take_ring().unwrap();
    let program = capture.object().program();
    let mut any_addr = ONLINE6;
    any_addr[3] = 0x77;
    for frame in [
        seg6((ONLINE6, 6379), b"PING\r\n").frame(),
        seg6((any_addr, 6379), b"PING\r\n").frame(),
        frames::tcp((CLIENT, 40000), (ONLINE, 80), b"GET"),
    ] {
        verdict(program, &frame);
    }
    // Not ours: IPv4 to 6379 (the IPv6 rule's port), IPv6 to 80 (the
    // IPv4 rule's).
    verdict(
        program,
        &frames::tcp((CLIENT, 40000), (ONLINE, 6379), b"PING"),
    );
    verdict(program, &seg6((ONLINE6, 80), b"GET").frame());
    assert_eq!(drain(&mut ring).len(), 3);
    assert_eq!(capture.counter(CaptureCounter::Matched6).unwrap(), 2);
}

#[test]
fn truncated_ipv6_frames_are_malformed_and_pass() {
    require_root();
    let mut capture = CaptureProgram::load_inline().unwrap();
    capture.add_rule(&rule("80-[2001:db8:2::2]:80"), 0).unwrap();
    let program = capture.object().program();
    let mut s = seg6((ONLINE6, 80), b"x");
    s.extensions = vec![Extension6::DestOptions(16)];
    let frame = s.frame();
    // Cut inside the fixed header, the extension header and the TCP header.
    for len in [14 + 20, 14 + 40 + 4, 14 + 40 + 16 + 10] {
        assert_eq!(verdict(program, &frame[..len]), XDP_PASS, "len {len}");
    }
    assert_eq!(capture.counter(CaptureCounter::Malformed).unwrap(), 3);
    assert_eq!(capture.counter(CaptureCounter::Copied).unwrap(), 0);
}
