//! What offline replay shows: a progress line while it runs (a bar redrawn
//! in place on a terminal, plain lines otherwise) and a summary at the end.

use std::{fmt::Write as _, time::Duration};

use super::source::{FileReport, Timing};
use crate::{engine::CloseReason, worker::WorkerReport};

/// Thousands separators, for counts people read.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Progress through the file, 0..=1, over every round.
fn fraction(f: &FileReport) -> f64 {
    let rounds = f64::from(f.rounds.max(1));
    let within = if f.file_size == 0 {
        1.0
    } else {
        (f.file_offset as f64 / f.file_size as f64).min(1.0)
    };
    if f.finished {
        1.0
    } else {
        ((f64::from(f.round) + within) / rounds).min(1.0)
    }
}

/// The recording's length, estimated from how far into the file the
/// recording time has got (exact at the end of the first round).
fn recording_estimate(f: &FileReport) -> Option<Duration> {
    if f.file_offset == 0 || f.file_size == 0 {
        return None;
    }
    let share = (f.file_offset as f64 / f.file_size as f64).min(1.0);
    Duration::try_from_secs_f64(f.recording_pos.as_secs_f64() / share).ok()
}

/// One progress reading: what the file, the engine and the sender say.
pub struct Progress<'a> {
    pub file: &'a FileReport,
    pub workers: &'a WorkerReport,
    pub elapsed: Duration,
    /// Client packets per second since the last reading.
    pub packets_per_s: f64,
    pub timing: Timing,
}

impl Progress<'_> {
    fn eta(&self) -> Option<Duration> {
        let done = fraction(self.file);
        if self.timing.top_speed || done <= 0.0 {
            if done <= 0.01 {
                return None;
            }
            return Duration::try_from_secs_f64(self.elapsed.as_secs_f64() * (1.0 - done) / done)
                .ok();
        }
        let total = recording_estimate(self.file)?.as_secs_f64();
        let left = (total - self.file.recording_pos.as_secs_f64()).max(0.0);
        let rounds_left = f64::from(self.file.rounds.saturating_sub(self.file.round + 1));
        Duration::try_from_secs_f64((left + total * rounds_left) / self.timing.speed).ok()
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let f = self.file;
        let e = &self.workers.engine;
        let mut v = vec![("done", format!("{:.0}%", fraction(f) * 100.0))];
        if f.rounds > 1 {
            v.push(("round", format!("{}/{}", f.round + 1, f.rounds)));
        }
        let total = recording_estimate(f).map_or("?".into(), secs);
        v.push((
            "recording",
            format!("{} of ~{}", secs(f.recording_pos), total),
        ));
        v.push(("packets", count(f.client_packets)));
        v.push(("sessions", count(e.sessions_syn + e.sessions_faked)));
        v.push(("open", count(self.workers.sessions)));
        v.push(("requests", count(e.requests)));
        v.push((
            "speed",
            format!("{} pkt/s", count(self.packets_per_s as u64)),
        ));
        v.push(("elapsed", secs(self.elapsed)));
        if let Some(eta) = self.eta() {
            v.push(("left", format!("~{}", secs(eta))));
        }
        v
    }

    /// A line for a terminal: a bar and the fields.
    pub fn bar(&self) -> String {
        const WIDTH: usize = 24;
        let filled = (fraction(self.file) * WIDTH as f64) as usize;
        let mut line = String::from("[");
        line.push_str(&"=".repeat(filled));
        if filled < WIDTH {
            line.push('>');
            line.push_str(&" ".repeat(WIDTH - filled - 1));
        }
        line.push(']');
        for (k, v) in self.fields() {
            let _ = write!(line, " {k} {v}");
        }
        line
    }

    /// A plain line for a log.
    pub fn line(&self) -> String {
        let mut line = String::from("progress:");
        for (k, v) in self.fields() {
            let _ = write!(line, " {k}={}", v.replace(' ', ""));
        }
        line
    }
}

/// Sessions that ended well: both sides closed, the client reset as it
/// did in the recording, or the file ended after everything was replayed.
const GOOD_ENDS: [CloseReason; 3] = [
    CloseReason::Completed,
    CloseReason::ClientReset,
    CloseReason::EndOfInput,
];

fn reason_words(r: CloseReason) -> &'static str {
    match r {
        CloseReason::Completed => "closed by both sides",
        CloseReason::ClientReset => "reset by the client",
        CloseReason::EndOfInput => "open at the end of the file, fully replayed",
        CloseReason::TargetReset => "reset by the target",
        CloseReason::TargetRefused => "refused by the target",
        CloseReason::HandshakeTimeout => "no handshake",
        CloseReason::NoResponse => "no response (-t)",
        CloseReason::KeepaliveTimeout => "idle (-k)",
        CloseReason::CaptureHole => "packets missing from the file",
        CloseReason::BufferFull => "buffer full",
        CloseReason::MemoryCap => "memory cap (-m)",
        CloseReason::RetransmitLimit => "too many retransmissions",
        CloseReason::ReconnectLimit => "the target kept closing",
        CloseReason::PortReuse => "port reused",
        CloseReason::CloseTimeout => "target never closed",
        CloseReason::Shutdown => "still open at the finish timeout",
    }
}

/// The end-of-replay summary.
pub fn summary(
    name: &str,
    file: &FileReport,
    w: &WorkerReport,
    elapsed: Duration,
    replicas: u16,
    interrupted: bool,
) -> String {
    let e = &w.engine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "offline replay of {name}: {} in {}",
        if interrupted {
            "stopped by a signal"
        } else {
            "done"
        },
        secs(elapsed)
    );
    let rec = file.recording_pos;
    if rec >= Duration::from_secs(1) && !elapsed.is_zero() {
        let _ = writeln!(
            s,
            "  recording: {} long; replayed at {:.2}x its pace{}",
            secs(rec),
            rec.as_secs_f64() * f64::from(file.rounds) / elapsed.as_secs_f64(),
            if file.behind.is_zero() {
                String::new()
            } else {
                format!(" (fell {} behind the requested pace)", secs(file.behind))
            }
        );
    }
    let _ = writeln!(
        s,
        "  file: {} frames; {} client packets replayed; {} server packets ignored; {} other TCP; {} not IP; {} not TCP{}",
        count(file.frames),
        count(file.client_packets),
        count(file.server_packets),
        count(file.other_tcp),
        count(file.not_ip),
        count(file.not_tcp),
        if file.ipv6 > 0 {
            format!("; {} IPv6 packets", count(file.ipv6))
        } else {
            String::new()
        },
    );
    let r = &file.reader;
    let mut problems = Vec::new();
    if file.truncated > 0 {
        problems.push(format!(
            "{} packets cut short by the snapshot length (skipped)",
            count(file.truncated)
        ));
    }
    if file.unsupported_link > 0 {
        problems.push(format!(
            "{} frames of an unsupported link type",
            count(file.unsupported_link)
        ));
    }
    if r.damaged > 0 {
        problems.push(format!(
            "damaged in {} places ({} skipped)",
            count(r.damaged),
            bytes(r.skipped_bytes)
        ));
    }
    if r.cut_bytes > 0 {
        problems.push(format!(
            "cut off inside its last record ({} ignored)",
            bytes(r.cut_bytes)
        ));
    }
    if file.time_jumps > 0 {
        problems.push(format!(
            "{} jumps of more than a day in recorded time, not waited out",
            count(file.time_jumps)
        ));
    }
    if r.unknown_interface > 0 {
        problems.push(format!(
            "{} packets of undescribed interfaces",
            count(r.unknown_interface)
        ));
    }
    if e.checksum_completed > 0 {
        problems.push(format!(
            "{} packets with checksums left for the NIC (transmit offload or GRO on the capturing host), completed",
            count(e.checksum_completed)
        ));
    }
    if e.bad_checksum > 0 {
        problems.push(format!(
            "{} packets with wrong checksums (damaged; the server dropped them too), not replayed",
            count(e.bad_checksum)
        ));
    }
    if let Some(err) = &file.error {
        problems.push(format!("reading stopped early: {err}"));
    }
    if file.ipv6_without_rule > 0 {
        problems.push(format!(
            "{} IPv6 packets, not replayed: no -x rule has an IPv6 target (e.g. -x 80-[2001:db8::2]:80)",
            count(file.ipv6_without_rule)
        ));
    }
    if file.client_packets == 0 && file.frames > 0 {
        problems.push(
            "no packet went to an online endpoint of -x: check the rules against the file (tcpdump -nr FILE)"
                .into(),
        );
    }
    for p in problems {
        let _ = writeln!(s, "  file: {p}");
    }
    let copies = u64::from(file.rounds) * u64::from(replicas.max(1));
    let _ = writeln!(
        s,
        "  sessions in the file: {}{}",
        count(file.sessions_in_file),
        if copies > 1 {
            format!(
                " (x {} rounds x {} copies = {} to replay)",
                file.rounds,
                replicas.max(1),
                count(file.sessions_in_file * copies)
            )
        } else {
            String::new()
        }
    );
    let started = e.sessions_syn + e.sessions_faked;
    let _ = writeln!(
        s,
        "  replayed: {} sessions ({} from their SYN, {} joined mid-stream), {} established{}",
        count(started),
        count(e.sessions_syn),
        count(e.sessions_faked),
        count(e.established),
        if e.baseline_sessions > 0 {
            format!(
                "; {} of them to the --compare-baseline, as copies",
                count(e.baseline_sessions)
            )
        } else {
            String::new()
        }
    );
    let good: u64 = GOOD_ENDS.iter().map(|r| e.closed[*r as usize]).sum();
    let ended: u64 = e.closed.iter().sum();
    let list = |reasons: &mut dyn Iterator<Item = CloseReason>| {
        reasons
            .filter(|r| e.closed[*r as usize] > 0)
            .map(|r| format!("{} {}", reason_words(r), count(e.closed[r as usize])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        s,
        "  completed: {}{}",
        count(good),
        match list(&mut GOOD_ENDS.into_iter()) {
            l if l.is_empty() => String::new(),
            l => format!(" ({l})"),
        }
    );
    let failed = ended - good;
    let _ = writeln!(
        s,
        "  failed: {}{}",
        count(failed),
        match list(
            &mut CloseReason::ALL
                .into_iter()
                .filter(|r| !GOOD_ENDS.contains(r))
        ) {
            l if l.is_empty() => String::new(),
            l => format!(" ({l})"),
        }
    );
    let not_started =
        e.sampled_out + e.no_session + e.sessions_refused_memory + e.sessions_refused_port;
    if not_started > 0 {
        let _ = writeln!(
            s,
            "  packets not replayed: {} left out by -r, {} of no session (mid-stream without data, or -O), {} refused for memory, {} for want of a client port",
            count(e.sampled_out),
            count(e.no_session),
            count(e.sessions_refused_memory),
            count(e.sessions_refused_port)
        );
    }
    let _ = writeln!(
        s,
        "  sent: {} requests, {} frames, {}; {} retransmissions; {} responses",
        count(e.requests),
        count(e.frames_sent),
        bytes(e.bytes_sent),
        count(e.syn_retransmits + e.rto_retransmits + e.fast_retransmits),
        count(e.responses),
    );
    if w.sink.total_dropped() > 0 {
        let _ = writeln!(s, "  send drops: {}", count(w.sink.total_dropped()));
    }
    if e.response_time.count() > 0 {
        let _ = writeln!(
            s,
            "  target response time: p50 {:.2} ms, p99 {:.2} ms",
            e.response_time.quantile(0.5) as f64 / 1000.0,
            e.response_time.quantile(0.99) as f64 / 1000.0
        );
    }
    if e.server_segments > 0 || e.compared > 0 {
        let _ = writeln!(
            s,
            "  compared with production: {}",
            e.compare_counts().describe()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_secs(125)), "2m05s");
        assert_eq!(secs(Duration::from_secs(7260)), "2h01m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn the_summary_splits_good_and_bad_ends() {
        let file = FileReport {
            frames: 10,
            client_packets: 6,
            server_packets: 4,
            sessions_in_file: 3,
            rounds: 1,
            recording_pos: Duration::from_secs(2),
            truncated: 1,
            ..FileReport::default()
        };
        let mut w = WorkerReport::default();
        w.engine.sessions_syn = 3;
        w.engine.established = 3;
        w.engine.closed[CloseReason::Completed as usize] = 2;
        w.engine.closed[CloseReason::HandshakeTimeout as usize] = 1;
        w.engine.requests = 5;
        let s = summary("x.pcap", &file, &w, Duration::from_secs(1), 1, false);
        assert!(
            s.starts_with("offline replay of x.pcap: done in 1.0s"),
            "{s}"
        );
        assert!(s.contains("sessions in the file: 3\n"), "{s}");
        assert!(s.contains("completed: 2 (closed by both sides 2)"), "{s}");
        assert!(s.contains("failed: 1 (no handshake 1)"), "{s}");
        assert!(s.contains("1 packets cut short"), "{s}");
        assert!(s.contains("replayed at 2.00x"), "{s}");
        assert!(!s.contains("IPv6"), "{s}");
        let v6 = FileReport {
            ipv6: 6,
            ipv6_without_rule: 4,
            ..file
        };
        let s = summary("x.pcap", &v6, &w, Duration::from_secs(1), 1, false);
        assert!(s.contains("; 6 IPv6 packets\n"), "{s}");
        assert!(
            s.contains("file: 4 IPv6 packets, not replayed: no -x rule has an IPv6 target"),
            "{s}"
        );
    }

    #[test]
    fn progress_reaches_the_end_of_every_round() {
        let mut f = FileReport {
            rounds: 2,
            file_size: 1000,
            file_offset: 500,
            ..FileReport::default()
        };
        assert!((fraction(&f) - 0.25).abs() < 1e-9);
        f.round = 1;
        assert!((fraction(&f) - 0.75).abs() < 1e-9);
        f.finished = true;
        assert_eq!(fraction(&f), 1.0);
    }
}
