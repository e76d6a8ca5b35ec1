//! Offline progress while the file is replayed: a bar redrawn on stderr
//! when that is a terminal, else a log line every few seconds (both
//! formatted by [`report`]).

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{FileReport, Timing, report};
use crate::stats_line::Snapshot;

/// Offline mode: the file being replayed and what it has shown.
pub(crate) struct Offline {
    pub(crate) name: String,
    pub(crate) report: Arc<Mutex<FileReport>>,
    pub(crate) timing: Timing,
    pub(crate) replicas: u16,
    /// Redraw a progress bar on stderr (a terminal), else log lines.
    pub(crate) bar: bool,
}

/// Offline progress: when it was last shown, and the packet rate.
pub(crate) struct ProgressState {
    started: crate::engine::Instant,
    next: crate::engine::Instant,
    every: Duration,
    packets: u64,
    at: crate::engine::Instant,
    drawn: bool,
}

impl ProgressState {
    pub(crate) fn new(o: &Offline, started: crate::engine::Instant) -> Self {
        Self {
            started,
            next: started,
            every: if o.bar {
                Duration::from_millis(250)
            } else {
                PROGRESS_LINE_EVERY
            },
            packets: 0,
            at: started,
            drawn: false,
        }
    }

    pub(crate) fn show(&mut self, o: &Offline, snap: &Snapshot) {
        if snap.at < self.next {
            return;
        }
        self.next = snap.at + self.every;
        let file = o.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let secs = snap.at.saturating_since(self.at).as_secs_f64().max(1e-3);
        let rate = file.client_packets.saturating_sub(self.packets) as f64 / secs;
        self.packets = file.client_packets;
        self.at = snap.at;
        let p = report::Progress {
            file: &file,
            workers: &snap.report,
            elapsed: snap.at.saturating_since(self.started),
            packets_per_s: rate,
            timing: o.timing,
        };
        if o.bar {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", p.bar());
            let _ = err.flush();
            self.drawn = true;
        } else {
            tracing::info!("{}", p.line());
        }
    }

    /// Ends the progress bar's line.
    pub(crate) fn finish(&mut self, o: &Offline, snap: &Snapshot) {
        if o.bar {
            self.next = snap.at;
            self.show(o, snap);
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// How often offline progress is logged when not on a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);
