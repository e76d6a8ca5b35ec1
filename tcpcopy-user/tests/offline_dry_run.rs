//! Offline mode end to end without a network: the real `tcpcopy` binary
//! replays synthetic captures in every format it reads, with `--dry-run`
//! (a simulated target answers; the frames go to a pcap we read back).
#![cfg(feature = "xdp")]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tcpcopy_user::{
    offline::{
        reader::CaptureReader,
        synth::{Frame, SessionSpec, http_get, merge},
        writer::{
            LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, PcapNgWriter,
            PcapWriter,
        },
    },
    packet::{Ipv4TcpPacket, Ipv6TcpPacket},
};

const ONLINE: [u8; 4] = [198, 18, 1, 1];
const TARGET: &str = "198.18.2.2";
const T0: u64 = 1_700_000_000_000_000_000;

/// A scratch directory for one test, removed when the test ends (also
/// when it fails).
struct Scratch(PathBuf);

impl Scratch {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir() -> Scratch {
    let name = std::thread::current()
        .name()
        .unwrap_or("test")
        .replace("::", "-");
    let d = std::env::temp_dir().join(format!("tcpcopy-offline-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// `n` sessions of `requests` requests each, 1 ms apart.
fn sessions(n: u16, requests: usize, start_ns: u64) -> Vec<SessionSpec> {
    (0..n)
        .map(|i| SessionSpec {
            client: ([198, 18, 0, 1 + (i % 7) as u8], 30_000 + i),
            server: (ONLINE, 80),
            start_ns: start_ns + u64::from(i) * 1_000_000,
            requests: (0..requests)
                .map(|r| http_get(&format!("/s{i}/r{r}")))
                .collect(),
            response_len: 300,
            rtt_ns: 200_000,
            think_ns: 2_000_000,
            tsval: (i % 2 == 0).then_some(0x8000_0000 + u32::from(i)),
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Ethernet,
    Vlan,
    QinQ,
    Sll,
    Sll2,
    Raw,
    PcapNg,
}

/// The frame re-framed for `format`.
fn reframe(format: Format, eth: &[u8]) -> Vec<u8> {
    let ip = &eth[14..];
    match format {
        Format::Ethernet | Format::PcapNg => eth.to_vec(),
        Format::Vlan | Format::QinQ => {
            let mut f = eth[..12].to_vec();
            if matches!(format, Format::QinQ) {
                f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x02]);
            }
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
            f.extend_from_slice(&eth[12..]);
            f
        }
        Format::Sll => {
            let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, eth[12], eth[13]];
            f.extend_from_slice(ip);
            f
        }
        Format::Sll2 => {
            let mut f = vec![eth[12], eth[13], 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
            f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(ip);
            f
        }
        Format::Raw => ip.to_vec(),
    }
}

fn write_capture(path: &Path, format: Format, frames: &[Frame]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    if let Format::PcapNg = format {
        let mut w = PcapNgWriter::new(file, 1, 65_535).unwrap();
        for (t, f) in frames {
            w.write(*t, f, f.len()).unwrap();
        }
        w.flush().unwrap();
        return;
    }
    let linktype = match format {
        Format::Sll => LINKTYPE_LINUX_SLL,
        Format::Sll2 => LINKTYPE_LINUX_SLL2,
        Format::Raw => LINKTYPE_RAW,
        _ => LINKTYPE_ETHERNET,
    };
    let mut w = PcapWriter::new(file, linktype, 65_535).unwrap();
    for (t, f) in frames {
        let f = reframe(format, f);
        w.write(*t, &f, f.len()).unwrap();
    }
    w.flush().unwrap();
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// A number from the summary line starting with `label`.
    fn number(&self, label: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", self.stdout));
        let rest = &line.trim_start()[label.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{label:?}: {line:?}"))
    }
}

/// Runs tcpcopy (killed after a minute: a hang is a failure).
fn tcpcopy(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpcopy"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpcopy");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "tcpcopy {args:?} hung:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn dry_run(input: &Path, output: &Path, extra: &[&str]) -> Run {
    dry_run_rules("80-198.18.2.2:80", input, output, extra)
}

fn dry_run_rules(rules: &str, input: &Path, output: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "-x",
        rules,
        "-i",
        input.to_str().unwrap(),
        "--dry-run",
        "--write-pcap",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = tcpcopy(&args);
    assert_eq!(
        run.code,
        Some(0),
        "tcpcopy {args:?} failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// What the dry run sent: (time, client port, flags, payload), all to the target.
fn sent(path: &Path) -> Vec<(u64, u16, u8, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut r = CaptureReader::new(&bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        assert_eq!(rec.linktype, 101, "raw IPv4 records");
        let p = Ipv4TcpPacket::new_checked(rec.data).unwrap();
        assert!(p.checksums_ok(), "every frame's checksums are right");
        assert_eq!(
            std::net::Ipv4Addr::from(p.dst_addr()).to_string(),
            TARGET,
            "addressed to the target"
        );
        assert_eq!(p.dst_port(), 80);
        out.push((rec.ts_ns, p.src_port(), p.flags().0, p.payload().to_vec()));
    }
    out
}

/// Request payloads sent, counted.
fn requests_sent(frames: &[(u64, u16, u8, Vec<u8>)]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for (_, _, _, payload) in frames {
        if !payload.is_empty() {
            *m.entry(payload.clone()).or_default() += 1;
        }
    }
    m
}

fn requests_of(specs: &[SessionSpec], times: usize) -> BTreeMap<Vec<u8>, usize> {
    specs
        .iter()
        .flat_map(|s| s.requests.iter().cloned())
        .map(|r| (r, times))
        .collect()
}

#[test]
fn every_format_replays_every_session_and_request() {
    let d = dir();
    let specs = sessions(20, 3, T0);
    let frames = merge(&specs);
    let server_frames = frames.iter().filter(|(_, f)| f[26..30] == ONLINE).count() as u64;
    for format in [
        Format::Ethernet,
        Format::Vlan,
        Format::QinQ,
        Format::Sll,
        Format::Sll2,
        Format::Raw,
        Format::PcapNg,
    ] {
        let input = d.join(&format!("all-{format:?}.pcap"));
        let output = d.join(&format!("all-{format:?}.out.pcap"));
        write_capture(&input, format, &frames);
        let run = dry_run(&input, &output, &["--top-speed"]);
        let what = format!("{format:?}:\n{}", run.stdout);
        assert_eq!(run.number("sessions in the file:"), 20, "{what}");
        assert_eq!(run.number("replayed:"), 20, "{what}");
        assert_eq!(run.number("completed:"), 20, "{what}");
        assert_eq!(run.number("failed:"), 0, "{what}");
        assert_eq!(run.number("sent:"), 60, "requests, {what}");
        assert!(
            run.stdout
                .contains(&format!("{server_frames} server packets ignored")),
            "{what}"
        );
        let out = sent(&output);
        assert_eq!(requests_sent(&out), requests_of(&specs, 1), "{format:?}");
        let syns = out.iter().filter(|f| f.2 & 0x02 != 0).count();
        assert_eq!(syns, 20, "{format:?}: one SYN per session");
    }
}

const ONLINE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const TARGET6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// `n` IPv6 sessions as [`sessions`] makes IPv4 ones.
fn sessions6(n: u16, requests: usize, start_ns: u64) -> Vec<SessionSpec<[u8; 16]>> {
    sessions(n, requests, start_ns)
        .into_iter()
        .map(|s| {
            let mut client = ONLINE6;
            client[5] = 7;
            client[15] = s.client.0[3];
            SessionSpec {
                client: (client, s.client.1),
                server: (ONLINE6, 80),
                start_ns: s.start_ns,
                requests: s
                    .requests
                    .iter()
                    .map(|r| [b"v6 ".as_slice(), r].concat())
                    .collect(),
                response_len: s.response_len,
                rtt_ns: s.rtt_ns,
                think_ns: s.think_ns,
                tsval: s.tsval,
            }
        })
        .collect()
}

/// What the dry run sent to the IPv6 target: (client port, flags, payload);
/// the IPv4 records are counted.
fn sent_by_family(path: &Path) -> (usize, Vec<(u16, u8, Vec<u8>)>) {
    let bytes = std::fs::read(path).unwrap();
    let mut r = CaptureReader::new(&bytes[..]).unwrap();
    let (mut v4, mut v6) = (0, Vec::new());
    while let Some(rec) = r.next_record().unwrap() {
        if rec.data[0] >> 4 == 4 {
            assert!(Ipv4TcpPacket::new_checked(rec.data).unwrap().checksums_ok());
            v4 += 1;
            continue;
        }
        let p = Ipv6TcpPacket::new_checked(rec.data).unwrap();
        assert!(p.checksums_ok(), "every IPv6 frame's checksum is right");
        assert_eq!(p.dst_addr(), TARGET6, "addressed to the IPv6 target");
        assert_eq!(p.dst_port(), 80);
        v6.push((p.src_port(), p.flags().0, p.payload().to_vec()));
    }
    (v4, v6)
}

#[test]
fn ipv6_and_dual_stack_captures_replay_every_session() {
    let d = dir();
    let v6 = sessions6(12, 2, T0);
    let v4 = sessions(8, 2, T0 + 500_000);
    let mut frames = merge(&v6);
    frames.extend(merge(&v4));
    frames.sort_by_key(|f| f.0);
    let v6_requests: BTreeMap<Vec<u8>, usize> = v6
        .iter()
        .flat_map(|s| s.requests.iter().cloned())
        .map(|r| (r, 1))
        .collect();
    for format in [Format::Ethernet, Format::Vlan, Format::Sll2, Format::Raw] {
        let input = d.join(&format!("dual-{format:?}.pcap"));
        write_capture(&input, format, &frames);
        // Both families.
        let output = d.join(&format!("dual-{format:?}.out.pcap"));
        let run = dry_run_rules(
            "80-198.18.2.2:80,80-[2001:db8:2::2]:80",
            &input,
            &output,
            &["--top-speed"],
        );
        let what = format!("{format:?}:\n{}", run.stdout);
        assert_eq!(run.number("sessions in the file:"), 20, "{what}");
        assert_eq!(run.number("completed:"), 20, "{what}");
        assert_eq!(run.number("sent:"), 40, "requests, {what}");
        let (v4_frames, v6_sent) = sent_by_family(&output);
        assert!(v4_frames > 0, "{what}");
        let mut got = BTreeMap::new();
        for (_, _, payload) in &v6_sent {
            if !payload.is_empty() {
                *got.entry(payload.clone()).or_default() += 1;
            }
        }
        assert_eq!(got, v6_requests, "every IPv6 request once, {what}");
        let syns = v6_sent.iter().filter(|f| f.1 & 0x02 != 0).count();
        assert_eq!(syns, 12, "one SYN per IPv6 session, {what}");
    }
    // An IPv4 rule alone: the IPv6 sessions are counted and said to be
    // left out, the IPv4 ones replayed.
    let input = d.join("dual-Ethernet.pcap");
    let run = dry_run(&input, &d.join("v4-only.out.pcap"), &["--top-speed"]);
    assert_eq!(run.number("completed:"), 8, "{}", run.stdout);
    let v6_packets = frames
        .iter()
        .filter(|(_, f)| f[12..14] == [0x86, 0xdd])
        .count();
    assert!(
        run.stdout.contains(&format!(
            "{v6_packets} IPv6 packets, not replayed: no -x rule has an IPv6 target"
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn garbage_in_the_middle_and_a_cut_end_are_survived() {
    let d = dir();
    let specs = sessions(10, 2, T0);
    let clean = d.join("clean.pcap");
    write_capture(&clean, Format::Ethernet, &merge(&specs));
    let bytes = std::fs::read(&clean).unwrap();
    // Garbage between two records in the middle of the file: walk the
    // record headers to find a boundary.
    let mut at = 24;
    let mut boundaries = Vec::new();
    while at < bytes.len() {
        boundaries.push(at);
        let caplen = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    let mid = boundaries[boundaries.len() / 2];
    let mut damaged = bytes[..mid].to_vec();
    damaged.extend((0..777u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    damaged.extend_from_slice(&bytes[mid..]);
    let input = d.join("garbage.pcap");
    std::fs::write(&input, &damaged).unwrap();
    let output = d.join("garbage.out.pcap");
    let run = dry_run(&input, &output, &["--top-speed"]);
    assert!(
        run.stdout.contains("damaged in 1 places (777 B skipped)"),
        "{}",
        run.stdout
    );
    assert_eq!(run.number("completed:"), 10, "{}", run.stdout);
    assert_eq!(requests_sent(&sent(&output)), requests_of(&specs, 1));

    // The same file cut off inside its last third: what is there replays,
    // the cut is reported, the exit is clean.
    let cut_at = boundaries[boundaries.len() * 2 / 3] + 30;
    let input = d.join("cut.pcap");
    std::fs::write(&input, &bytes[..cut_at]).unwrap();
    let run = dry_run(&input, &d.join("cut.out.pcap"), &["--top-speed"]);
    assert!(
        run.stdout.contains("cut off inside its last record"),
        "{}",
        run.stdout
    );
    let in_file = run.number("sessions in the file:");
    assert!((1..10).contains(&in_file), "{}", run.stdout);
    assert_eq!(run.number("completed:"), in_file, "{}", run.stdout);
    assert_eq!(run.number("failed:"), 0, "{}", run.stdout);
}

#[test]
fn packets_cut_by_the_snapshot_length_are_counted_not_replayed() {
    let d = dir();
    let specs = sessions(4, 2, T0);
    let frames = merge(&specs);
    let input = d.join("snap.pcap");
    {
        // 54 bytes: Ethernet, IPv4 and TCP headers without options.
        let mut w = PcapWriter::new(std::fs::File::create(&input).unwrap(), 1, 54).unwrap();
        for (t, f) in &frames {
            w.write(*t, f, f.len()).unwrap();
        }
    }
    let cut = frames.iter().filter(|(_, f)| f.len() > 54).count();
    let run = dry_run(
        &input,
        &d.join("snap.out.pcap"),
        &["--top-speed", "--finish-timeout", "2"],
    );
    assert!(
        run.stdout
            .contains(&format!("{cut} packets cut short by the snapshot length")),
        "{}",
        run.stdout
    );
}

#[test]
fn rounds_replay_the_file_again_from_new_client_ports() {
    let d = dir();
    let specs = sessions(6, 2, T0);
    let input = d.join("rounds.pcap");
    write_capture(&input, Format::Ethernet, &merge(&specs));
    let output = d.join("rounds.out.pcap");
    let run = dry_run(&input, &output, &["--top-speed", "-T", "3"]);
    assert_eq!(run.number("replayed:"), 18, "{}", run.stdout);
    assert_eq!(run.number("completed:"), 18, "{}", run.stdout);
    assert_eq!(run.number("sent:"), 36, "{}", run.stdout);
    let out = sent(&output);
    assert_eq!(requests_sent(&out), requests_of(&specs, 3));
    let mut clients: Vec<(u16, u16)> = out
        .iter()
        .filter(|f| f.2 & 0x02 != 0)
        .map(|f| (f.1, 0))
        .collect();
    clients.sort_unstable();
    let syns = clients.len();
    clients.dedup();
    assert_eq!(syns, 18, "one SYN per session and round");
    // Round 0 keeps the recorded ports; every later round picks new ones
    // (a port may repeat only on another client address).
    let original: Vec<u16> = specs.iter().map(|s| s.client.1).collect();
    let reused = clients.iter().filter(|(p, _)| original.contains(p)).count();
    assert_eq!(reused, 6, "later rounds never reuse a recorded port");
}

#[test]
fn sessions_already_open_when_the_capture_began_are_replayed() {
    let d = dir();
    let specs = sessions(5, 3, T0);
    // Drop every session's handshake: the capture starts mid-stream.
    let frames: Vec<Frame> = merge(&specs)
        .into_iter()
        .filter(|(_, f)| {
            f[47] & 0x02 == 0 && !(f[47] == 0x10 && f.len() <= 66 && f[36..38] == [0, 80])
        })
        .collect();
    let input = d.join("midstream.pcap");
    write_capture(&input, Format::Ethernet, &frames);
    let output = d.join("midstream.out.pcap");
    let run = dry_run(&input, &output, &["--top-speed"]);
    assert!(
        run.stdout
            .contains("(0 from their SYN, 5 joined mid-stream)"),
        "{}",
        run.stdout
    );
    assert_eq!(run.number("completed:"), 5, "{}", run.stdout);
    assert_eq!(requests_sent(&sent(&output)), requests_of(&specs, 1));
}

/// Seconds between the first SYN sent for the early and the late session.
fn gap(frames: &[(u64, u16, u8, Vec<u8>)], early: u16, late: u16) -> f64 {
    let syn_at = |port: u16| {
        frames
            .iter()
            .find(|f| f.1 == port && f.2 & 0x02 != 0)
            .unwrap_or_else(|| panic!("no SYN from port {port}"))
            .0
    };
    (syn_at(late) - syn_at(early)) as f64 / 1e9
}

#[test]
fn recorded_timing_is_kept_sped_up_or_cut() {
    let d = dir();
    // Two sessions two seconds apart in the recording.
    let mut specs = sessions(1, 1, T0);
    let mut late = sessions(1, 1, T0 + 2_000_000_000);
    late[0].client.1 = 31_000;
    specs.append(&mut late);
    let input = d.join("timing.pcap");
    write_capture(&input, Format::Ethernet, &merge(&specs));
    let out = d.join("timing.out.pcap");

    dry_run(&input, &out, &[]);
    let g = gap(&sent(&out), 30_000, 31_000);
    assert!(
        (1.95..6.0).contains(&g),
        "recorded pace: the gap stays about 2 s, got {g:.3} s"
    );

    dry_run(&input, &out, &["-a", "4"]);
    let g = gap(&sent(&out), 30_000, 31_000);
    assert!(
        (0.49..1.5).contains(&g),
        "-a 4: the gap shrinks to about 0.5 s, got {g:.3} s"
    );

    dry_run(&input, &out, &["-I", "100"]);
    let g = gap(&sent(&out), 30_000, 31_000);
    assert!(
        (0.09..1.0).contains(&g),
        "-I 100: the idle gap is cut to about 0.1 s, got {g:.3} s"
    );

    dry_run(&input, &out, &["--top-speed"]);
    let g = gap(&sent(&out), 30_000, 31_000);
    assert!(g < 1.0, "--top-speed: no waiting, got {g:.3} s");
}

#[test]
fn bad_files_and_options_get_clear_errors() {
    let d = dir();
    let missing = d.join("missing.pcap");
    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-i",
        missing.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("cannot open the capture file"),
        "{}",
        run.stderr
    );

    let text = d.join("notes.pcap");
    std::fs::write(&text, "GET / HTTP/1.1\r\n\r\n").unwrap();
    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-i",
        text.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("not a pcap or pcapng"),
        "{}",
        run.stderr
    );

    let odd = d.join("odd-link.pcap");
    PcapWriter::new(std::fs::File::create(&odd).unwrap(), 147, 65_535).unwrap();
    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-i",
        odd.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("link type 147"), "{}", run.stderr);

    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-s",
        "198.18.2.3",
        "-i",
        "eth0",
        "-o",
        "eth1",
        "-a",
        "2",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("replay a capture file"),
        "{}",
        run.stderr
    );

    for bad in ["0", "-1", "nan", "x"] {
        let arg = format!("--accelerate={bad}");
        let run = tcpcopy(&["-x", "80-198.18.2.2:80", "-i", "a.pcap", "--dry-run", &arg]);
        assert_eq!(run.code, Some(2), "{arg}");
        assert!(run.stderr.contains("speed factor"), "{arg}: {}", run.stderr);
    }
    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-i",
        "a.pcap",
        "--dry-run",
        "--top-speed",
        "-a",
        "2",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--top-speed ignores"), "{}", run.stderr);
    let run = tcpcopy(&["-x", "80-198.18.2.2:80", "-i", "a.pcap"]);
    assert_eq!(
        run.code,
        Some(2),
        "without --dry-run, -s and -o are required"
    );
}

#[test]
fn a_signal_stops_the_replay_with_its_summary() {
    let d = dir();
    // Two sessions a minute apart: the replay is still waiting for the
    // second when the signal comes.
    let mut specs = sessions(1, 1, T0);
    let mut late = sessions(1, 1, T0 + 60_000_000_000);
    late[0].client.1 = 31_000;
    specs.append(&mut late);
    let input = d.join("slow.pcap");
    write_capture(&input, Format::Ethernet, &merge(&specs));
    let (out, err) = (d.join("stdout"), d.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpcopy"))
        .args([
            "-x",
            "80-198.18.2.2:80",
            "-i",
            input.to_str().unwrap(),
            "--dry-run",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // The signal comes at the first line tcpcopy logs, before it has
    // started anything: the handlers must already be in place (a signal
    // that came before them killed the process outright).
    let started = Instant::now();
    while std::fs::read_to_string(&err).unwrap_or_default().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tcpcopy logged nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tcpcopy did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    assert!(status.success(), "exit {status}: {stdout}");
    assert!(stdout.contains("stopped by a signal"), "{stdout}");
}

#[test]
fn a_broken_clock_in_the_file_is_not_waited_out() {
    let d = dir();
    // The second session's times are ten years later (a corrupted clock,
    // or files of different years merged): replay goes straight on.
    let mut specs = sessions(1, 1, T0);
    let mut late = sessions(1, 1, T0 + 10 * 365 * 86_400 * 1_000_000_000);
    late[0].client.1 = 31_000;
    specs.append(&mut late);
    let input = d.join("jump.pcap");
    write_capture(&input, Format::Ethernet, &merge(&specs));
    let out = d.join("jump.out.pcap");
    let run = dry_run(&input, &out, &[]);
    assert!(
        run.stdout
            .contains("1 jumps of more than a day in recorded time"),
        "{}",
        run.stdout
    );
    assert_eq!(run.number("completed:"), 2, "{}", run.stdout);
    assert!(gap(&sent(&out), 30_000, 31_000) < 5.0);
}

#[test]
fn the_output_never_overwrites_the_input() {
    let d = dir();
    let input = d.join("same.pcap");
    write_capture(&input, Format::Ethernet, &merge(&sessions(1, 1, T0)));
    let before = std::fs::read(&input).unwrap();
    let run = tcpcopy(&[
        "-x",
        "80-198.18.2.2:80",
        "-i",
        input.to_str().unwrap(),
        "--dry-run",
        "--write-pcap",
        input.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("the capture being replayed"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is intact"
    );
}
