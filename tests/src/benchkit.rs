//! Pieces the offline benchmarks share: a synthetic capture of many short
//! HTTP sessions (both directions, as tcpdump on the online host would
//! record them), `tcpreplay --topspeed` of a file out of the online host's
//! LAN interface, and the CPU time of reaped children.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tcpcopy_user::offline::{
    synth::{SessionSpec, http_get, merge},
    writer::PcapWriter,
};

use crate::lab::{Host, Lab, ONLINE_IP};

/// A capture file written for a benchmark.
pub struct Capture {
    pub path: PathBuf,
    pub frames: u64,
    pub client_packets: u64,
    pub sessions: u64,
    pub requests: u64,
    pub bytes: u64,
}

/// Writes `dir/name`: `sessions` sessions of `requests` GETs each to the
/// online server's port 80, from 200 client addresses, answered with
/// `response_len` bytes each.
pub fn synthetic_http_capture(
    dir: &Path,
    name: &str,
    sessions: u32,
    requests: usize,
    response_len: usize,
) -> Capture {
    const T0: u64 = 1_700_000_000_000_000_000;
    let specs: Vec<SessionSpec> = (0..sessions)
        .map(|i| SessionSpec {
            client: (
                [198, 18, 1, 10 + (i % 200) as u8],
                // 200 addresses x ports from 1024: up to 12.9 M sessions.
                1024 + (i / 200) as u16,
            ),
            server: (ONLINE_IP.octets(), 80),
            start_ns: T0 + u64::from(i) * 50_000,
            requests: (0..requests)
                .map(|r| http_get(&format!("/bench/{i}/{r}")))
                .collect(),
            response_len,
            rtt_ns: 200_000,
            think_ns: 1_000_000,
            tsval: Some(0x1000_0000 ^ i.wrapping_mul(0x9e37_79b9)),
        })
        .collect();
    let frames = merge(&specs);
    let path = dir.join(name);
    let mut w = PcapWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&path).expect("create the capture")),
        1,
        65_535,
    )
    .expect("a pcap header");
    let mut client_packets = 0;
    let mut bytes = 0;
    for (t, f) in &frames {
        w.write(*t, f, f.len()).expect("write a frame");
        bytes += f.len() as u64;
        if f[30..34] == ONLINE_IP.octets() {
            client_packets += 1;
        }
    }
    w.flush().expect("flush the capture");
    Capture {
        path,
        frames: frames.len() as u64,
        client_packets,
        sessions: u64::from(sessions),
        requests: u64::from(sessions) * requests as u64,
        bytes,
    }
}

/// `tcpreplay --topspeed` of `path` out of the online host's LAN
/// interface: frames sent, and the time tcpreplay reports.
pub fn run_tcpreplay(lab: &Lab, path: &Path) -> (u64, Duration) {
    let path = path.to_str().expect("a UTF-8 path");
    let started = Instant::now();
    let out = lab.run(
        Host::Online,
        &["tcpreplay", "--topspeed", "-i", "eth1", path],
    );
    let elapsed = started.elapsed();
    // "Actual: 123 packets (456 bytes) sent in 0.78 seconds"
    let actual = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Actual: "))
        .unwrap_or_else(|| panic!("tcpreplay said:\n{out}"));
    let sent = actual
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("tcpreplay said:\n{out}"));
    let reported = actual
        .split(" sent in ")
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(elapsed, Duration::from_secs_f64);
    (sent, reported)
}

/// CPU time (user + system) of reaped children so far.
pub fn children_cpu() -> Duration {
    let (user, system) = children_cpu_split();
    user + system
}

/// CPU time of reaped children so far: (user, system).
pub fn children_cpu_split() -> (Duration, Duration) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}
