//! The statistics line: a [`Snapshot`] of every worker's report and the
//! capture program's counters, as `key=value` pairs (with the capture rate
//! since the previous snapshot). The pairs are [`Stat`]s, each with its
//! kind: the Prometheus metrics (`crate::metrics`) are made from the same
//! pairs, so every key added here is a metric too.

use std::sync::Arc;

use tcpcopy_common::counters::CaptureCounter;
use tcpcopy_runtime::metrics::{Stat, StatKind, stats_line};

use crate::{
    capture::xdp::CaptureProgram,
    clock,
    diagnose::Observation,
    send::DropReason,
    worker::{WorkerReport, WorkerShared},
};

/// What the statistics line reports at one moment.
#[derive(Clone)]
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

    /// The `key=value` line: totals, and the capture rate since `prev`.
    pub(crate) fn line(&self, prev: Option<&Self>) -> String {
        stats_line(&self.stats(prev))
    }

    /// The line's pairs, each with its kind: totals are counters; values
    /// now (sessions, buffered bytes, frames in flight, links) gauges;
    /// `captured_per_s` a rate since `prev`; the engine's `*_us` keys
    /// durations.
    pub(crate) fn stats(&self, prev: Option<&Self>) -> Vec<Stat> {
        let e = &self.report.engine;
        let r = &self.report;
        let mut stats: Vec<Stat> = Vec::new();
        if let Some(p) = prev {
            let secs = self.at.saturating_since(p.at).as_secs_f64().max(1e-3);
            stats.push(Stat::new(
                "captured_per_s",
                ((e.captured - p.report.engine.captured) as f64 / secs) as u64,
                StatKind::Rate,
            ));
        }
        stats.extend([
            Stat::gauge("sessions", r.sessions),
            Stat::gauge("buffered_bytes", r.buffered_bytes),
            Stat::counter("frames_out", r.sink.frames),
            Stat::counter("bytes_out", r.sink.bytes),
            Stat::counter("send_dropped", r.sink.total_dropped()),
        ]);
        stats.extend(
            DropReason::ALL
                .iter()
                .map(|d| Stat::counter(format!("send_dropped_{}", d.name()), r.sink.dropped(*d))),
        );
        stats.extend([
            Stat::gauge("send_in_flight", r.sink.in_flight),
            Stat::gauge("links_up", r.links_up),
            Stat::gauge("links", r.links_total),
            Stat::counter("announced", r.links.announcements),
            Stat::counter("announce_dropped", r.links.announcements_dropped),
            Stat::counter("announce6_unsupported", r.links.announcements6_unsupported),
            Stat::counter("link_records", r.links.records),
            Stat::counter("link_records6", r.links.records6),
            Stat::counter("link_failures", r.links.failures),
            Stat::counter("link_reconnects", r.links.reconnects),
            Stat::counter("source_dropped", r.source_dropped.total()),
            Stat::counter("source_unusable", r.source_dropped.unusable),
            Stat::counter("xsk_rx_ring_full", r.source_dropped.socket_ring_full),
            Stat::counter("xsk_rx_dropped", r.source_dropped.socket_dropped),
        ]);
        stats.extend(
            self.capture
                .iter()
                .map(|(c, v)| Stat::counter(format!("xdp_{}", c.name()), *v)),
        );
        // The engine's: totals, closes by reason, and response-time
        // quantiles (`*_us`).
        stats.extend(e.iter().map(|(k, v)| {
            let kind = if k.ends_with("_us") {
                StatKind::Micros
            } else {
                StatKind::Counter
            };
            Stat::new(k, v, kind)
        }));
        stats
    }
}
