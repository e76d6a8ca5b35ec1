//! T1: the capture programs (`tcpcopy-ebpf`) on crafted frames through
//! BPF_PROG_TEST_RUN. Asserts verdicts and counters. The reply program of
//! intercept has its own target, `t1_intercept`.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use tcpcopy_common::counters::CaptureCounter;
use tcpcopy_tests::{frames, require_root};
use tcpcopy_user::capture::xdp::CaptureProgram;

const XDP_PASS: u32 = 2;

const ONLINE: [u8; 4] = [198, 18, 1, 1];
const CLIENT: [u8; 4] = [198, 18, 1, 2];

/// Runs `program` once on `frame` and returns the XDP verdict.
fn verdict(program: &Xdp, frame: &[u8]) -> u32 {
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
    capture.add_target(Some(ONLINE.into()), 80, 0).unwrap();
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
    capture.add_target(None, 6379, 0).unwrap();
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
    capture.add_target(Some(ONLINE.into()), 80, 0).unwrap();
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
    capture.add_target(Some(ONLINE.into()), 80, 0).unwrap();
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
    capture.add_target(None, 80, 0).unwrap();
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
        capture.add_target(Some(ONLINE.into()), 80, 0).unwrap();
        let program = capture.object().program();
        let other = frames::tcp((CLIENT, 40000), (ONLINE, 22), b"ssh");
        let want = if pass_others { XDP_PASS } else { XDP_DROP };
        assert_eq!(verdict(program, &other), want);
        assert_eq!(verdict(program, &frames::arp()), want);
        // Matching, but no AF_XDP socket on queue 0: dropped, counted.
        let hit = frames::tcp((CLIENT, 40000), (ONLINE, 80), b"GET /");
        assert_eq!(verdict(program, &hit), XDP_DROP);
        assert_eq!(capture.counter(CaptureCounter::Matched).unwrap(), 1);
        assert_eq!(capture.counter(CaptureCounter::RedirectFailed).unwrap(), 1);
        assert_eq!(capture.counter(CaptureCounter::Redirected).unwrap(), 0);
    }
}
