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
    let mut out = vec![0u8; frame.len() + 512];
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
