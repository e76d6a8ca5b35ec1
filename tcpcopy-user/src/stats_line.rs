//! The statistics line: a [`Snapshot`] of every worker's report and the
//! capture program's counters, written as `key=value` pairs (with the
//! capture rate since the previous snapshot).

use std::sync::Arc;

use tcpcopy_common::counters::CaptureCounter;

use crate::{
    capture::xdp::CaptureProgram,
    clock,
    diagnose::Observation,
    send::DropReason,
    worker::{WorkerReport, WorkerShared},
};

/// What the statistics line reports at one moment.
pub(crate) struct Snapshot {
    pub(crate) at: crate::engine::Instant,
    pub(crate) report: WorkerReport,
    capture: [(CaptureCounter, u64); CaptureCounter::ALL.len()],
}

impl Snapshot {
    pub(crate) fn take(shared: &[Arc<WorkerShared>], capture: Option<&CaptureProgram>) -> Self {
        let mut report = WorkerReport::default();
        for s in shared {
            let r = s.report.lock().unwrap_or_else(|e| e.into_inner());
            report.engine.add(&r.engine);
            report.sessions += r.sessions;
            report.buffered_bytes += r.buffered_bytes;
            report.links.add(&r.links);
            report.links_up += r.links_up;
            report.links_total += r.links_total;
            report.links_on_target += r.links_on_target;
            report.links_with_payloads += r.links_with_payloads;
            report.sink.add(&r.sink);
            report.source_dropped.add(&r.source_dropped);
        }
        Self {
            at: clock::now(),
            report,
            capture: capture
                .and_then(|c| c.counters().ok())
                .unwrap_or(CaptureCounter::ALL.map(|c| (c, 0))),
        }
    }

    /// The counters self-diagnosis reads.
    pub(crate) fn observation(&self, comparing: bool) -> Observation {
        let e = &self.report.engine;
        let r = &self.report;
        Observation {
            syns_sent: e.sessions_syn + e.sessions_faked + e.reconnects + e.syn_retransmits,
            handshakes_answered: e.established + e.syn_refused,
            handshakes_refused: e.syn_refused,
            replies: e.replies,
            replies_unknown: e.replies_unknown,
            links_up: r.links_up,
            links_total: r.links_total,
            links_on_target: r.links_on_target,
            comparing,
            links_with_payloads: r.links_with_payloads,
            responses: e.responses,
            server_segments: e.server_segments,
            no_next_hop: r.sink.dropped(DropReason::NoNextHop),
            frames_out: r.sink.frames,
            checksum_completed: e.checksum_completed,
            matched: e.captured.saturating_sub(e.malformed + e.unmatched),
            bad_checksum: e.bad_checksum,
        }
    }

    /// `key=value` pairs: totals, and the capture rate since `prev`.
    pub(crate) fn line(&self, prev: Option<&Self>) -> String {
        let e = &self.report.engine;
        let r = &self.report;
        let mut pairs: Vec<(String, u64)> = Vec::new();
        if let Some(p) = prev {
            let secs = self.at.saturating_since(p.at).as_secs_f64().max(1e-3);
            pairs.push((
                "captured_per_s".into(),
                ((e.captured - p.report.engine.captured) as f64 / secs) as u64,
            ));
        }
        pairs.extend([
            ("sessions".into(), r.sessions),
            ("buffered_bytes".into(), r.buffered_bytes),
            ("frames_out".into(), r.sink.frames),
            ("bytes_out".into(), r.sink.bytes),
            ("send_dropped".into(), r.sink.total_dropped()),
            ("send_in_flight".into(), r.sink.in_flight),
            ("links_up".into(), r.links_up),
            ("links".into(), r.links_total),
            ("announced".into(), r.links.announcements),
            ("announce_dropped".into(), r.links.announcements_dropped),
            (
                "announce6_unsupported".into(),
                r.links.announcements6_unsupported,
            ),
            ("link_records".into(), r.links.records),
            ("link_records6".into(), r.links.records6),
            ("link_failures".into(), r.links.failures),
            ("link_reconnects".into(), r.links.reconnects),
            ("source_dropped".into(), r.source_dropped.total()),
            ("source_unusable".into(), r.source_dropped.unusable),
            ("xsk_rx_ring_full".into(), r.source_dropped.socket_ring_full),
            ("xsk_rx_dropped".into(), r.source_dropped.socket_dropped),
        ]);
        pairs.extend(
            self.capture
                .iter()
                .map(|(c, v)| (format!("xdp_{}", c.name()), *v)),
        );
        pairs.extend(e.iter().map(|(k, v)| (k.to_owned(), v)));
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
