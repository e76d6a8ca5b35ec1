//! tcpcopy's Prometheus metrics (`--metrics ADDR:PORT`): the statistics
//! line's pairs ([`crate::stats_line::Snapshot::stats`]) as metrics named
//! `tcpcopy_<key>_total` (counters) or `tcpcopy_<key>` (gauges), the
//! engine's response times as the histogram `tcpcopy_response_time_seconds`
//! (`server="target"`, and `server="production"` with `--compare`), and
//! `tcpcopy_build_info`. `tcpcopy_runtime::metrics` serves them.
//!
//! A key added to the line is exported without a change here; its HELP
//! text says which key it is until [`help`] has a sentence for it.

use std::sync::Arc;

use tcpcopy_runtime::metrics::{
    Exporter, HistogramFamily, HistogramSeries, Published, Stat, sample_names,
};

use crate::{
    engine::stats::LatencyHistogram,
    stats_line::Snapshot,
    worker::{WorkerReport, WorkerShared},
};

/// How tcpcopy's values become metrics.
pub fn exporter() -> Exporter {
    Exporter {
        prefix: "tcpcopy",
        version: env!("CARGO_PKG_VERSION"),
        help,
    }
}

/// What a scrape sees: `now`'s pairs (the capture rate since `prev`, the
/// previous publication) and its response-time histograms.
pub(crate) fn published(now: &Snapshot, prev: Option<&Snapshot>) -> Published {
    let e = &now.report.engine;
    let mut by_server = vec![series("target", &e.response_time)];
    // As on the line: production's times exist with --compare only.
    if e.production_time.count() > 0 {
        by_server.push(series("production", &e.production_time));
    }
    Published {
        stats: now.stats(prev),
        histograms: vec![HistogramFamily {
            name: "response_time",
            help: "Response times: first request segment to first response byte; \
                   server=target as replayed, server=production from the capture (--compare).",
            series: by_server,
        }],
    }
}

fn series(server: &'static str, h: &LatencyHistogram) -> HistogramSeries {
    HistogramSeries {
        labels: vec![("server", server)],
        micros: h.nonzero_buckets(),
    }
}

/// A snapshot with every pair the line can hold: a previous snapshot (the
/// capture rate) and production's response times (`--compare`).
fn complete_snapshot() -> (Snapshot, Snapshot) {
    let mut report = WorkerReport::default();
    report.engine.response_time.record(800);
    report.engine.production_time.record(700);
    let shared = Arc::new(WorkerShared::default());
    *shared.report.lock().unwrap_or_else(|e| e.into_inner()) = report;
    let shared = [shared];
    let prev = Snapshot::take(&shared, None);
    (Snapshot::take(&shared, None), prev)
}

/// Every pair the statistics line can hold (values of no meaning): what
/// the tests and the README's list of metrics go by.
pub fn every_stat() -> Vec<Stat> {
    let (now, prev) = complete_snapshot();
    now.stats(Some(&prev))
}

/// The name of every sample tcpcopy exports (histograms as their
/// `_bucket`, `_count` and `_sum`), in the order of a scrape.
pub fn exported_names() -> Vec<String> {
    let (now, prev) = complete_snapshot();
    sample_names(&exporter().encode(Arc::new(published(&now, Some(&prev)))))
}

/// The HELP text of each statistics-line key.
pub fn help(key: &str) -> Option<&'static str> {
    Some(match key {
        "captured_per_s" => {
            "Captured packets per second since the previous scrape \
             (prefer rate(tcpcopy_captured_total[1m]))."
        }
        "sessions" => "Sessions open now.",
        "buffered_bytes" => "Captured client bytes buffered in open sessions now.",
        "frames_out" => "Frames handed to the kernel for the target.",
        "bytes_out" => "Bytes of those frames on the wire (Ethernet header included).",
        "send_dropped" => "Frames for the target the senders dropped (every cause).",
        "send_dropped_ring_full" => "Frames dropped: no free frame or ring slot in time.",
        "send_dropped_no_next_hop" => "Frames dropped: the next hop's MAC is not known (yet).",
        "send_dropped_too_big" => "Frames dropped: longer than the output interface's MTU.",
        "send_dropped_kernel_error" => "Frames dropped: the kernel refused them.",
        "send_dropped_malformed" => "Frames dropped: not an IP packet.",
        "send_in_flight" => "Frames submitted to the kernel and not completed yet.",
        "links_up" => "Connections to intercept up now.",
        "links" => "Connections to intercept configured.",
        "announced" => "Sessions announced to intercept (CLIENT_ADD).",
        "announce_dropped" => "Announcements to intercept lost (no connection up).",
        "announce6_unsupported" => "IPv6 announcements not sent: the intercept does not take IPv6.",
        "link_records" => "Reply header records received from intercept.",
        "link_records6" => "IPv6 reply header records among them.",
        "link_failures" => "Connections to intercept that failed.",
        "link_reconnects" => "Connections to intercept made again.",
        "source_dropped" => "Packets the packet source lost or could not use (every cause).",
        "source_unusable" => "Capture entries that could not be used.",
        "xsk_rx_ring_full" => "Mirror capture: frames dropped, an AF_XDP RX ring was full.",
        "xsk_rx_dropped" => "Mirror capture: frames the kernel dropped for other reasons.",
        "xdp_seen" => "Frames the capture program ran on.",
        "xdp_matched" => "Frames whose destination is in the -x table.",
        "xdp_malformed" => "Frames cut short or with impossible header lengths.",
        "xdp_copied" => "Inline capture: matched frames copied into the ring buffer.",
        "xdp_ring_full" => "Inline capture: matched frames lost, the ring buffer was full.",
        "xdp_truncated" => "Inline capture: frames copied cut short (too large).",
        "xdp_redirected" => "Mirror capture: matched frames redirected into an AF_XDP socket.",
        "xdp_redirect_failed" => "Mirror capture: matched frames with no socket on their queue.",
        "xdp_responses" => "--compare: production's answers captured.",
        "xdp_response_ring_full" => "--compare: production's answers lost, their ring was full.",
        "xdp_matched6" => "IPv6 frames among the matched ones.",
        "xdp_fragments6" => "IPv6 fragments (never captured).",
        "captured" => "Client packets handed to the engine.",
        "malformed" => {
            "Captured packets not TCP over the engine's family, or with impossible lengths."
        }
        "fragments" => "Captured IP fragments (dropped).",
        "extensions_stripped" => "IPv6 packets replayed without their extension headers.",
        "unmatched" => "Captured packets whose destination matched no rule.",
        "bad_checksum" => "Captured packets with a damaged checksum (dropped).",
        "checksum_completed" => {
            "Captured packets whose checksums were left for the NIC, completed."
        }
        "sampled_out" => "Captured packets of sessions left out by -r.",
        "no_session" => "Captured packets that belonged to no session and could not start one.",
        "client_acks" => "Client pure ACKs (tcpcopy acknowledges the target itself).",
        "old_segments" => "Client segments entirely old (already buffered or acknowledged).",
        "overlaps_trimmed" => "Client segments trimmed because they overlapped buffered data.",
        "hole_waits" => "Times a session found a capture hole and waited for it to fill.",
        "split_packets" => "Oversized (GRO) client packets split to the MTU.",
        "sessions_syn" => "Sessions started from a captured SYN.",
        "sessions_faked" => "Sessions started mid-stream with a faked SYN.",
        "sessions_refused_memory" => "Sessions refused: memory cap (-m) reached.",
        "sessions_refused_port" => "Sessions refused: no free client port.",
        "established" => "Handshakes with the target completed.",
        "requests" => "Requests started (first segment of each request sent).",
        "response_timeouts" => "Requests whose previous response never came.",
        "pipelined" => "Requests sent before the previous response (the session fell behind).",
        "responses" => "Responses seen (reply data after a request).",
        "segments_sent" => "Data segments sent for the first time.",
        "frames_sent" => "Frames the engine emitted (all kinds).",
        "bytes_sent" => "Bytes of the frames the engine emitted (IP length).",
        "acks_sent" => "tcpcopy's own pure ACKs to the target.",
        "syn_retransmits" => "SYN retransmissions.",
        "syn_refused" => "SYNs the target answered with a RST.",
        "rto_retransmits" => "Retransmissions on timeout.",
        "fast_retransmits" => "Retransmissions on three duplicate ACKs.",
        "reconnects" => "New connections after the target closed with client data left.",
        "requests_lost_by_target" => "Requests the target acknowledged and then lost.",
        "replies" => "Reply headers handed to the engine.",
        "replies_malformed" => "Reply headers that could not be parsed.",
        "replies_unknown" => "Reply headers for no session.",
        "server_segments" => "--compare: production's server segments captured.",
        "compared" => "--compare: exchanges compared with production's.",
        "compare_equal" => "--compare: exchanges equal to production's.",
        "compare_different" => "--compare: exchanges different from production's.",
        "compare_status" => "--compare: exchanges with a different status.",
        "compare_header" => "--compare: exchanges with a different header.",
        "compare_body" => "--compare: exchanges with a different body.",
        "compare_truncated" => "--compare: exchanges compared on their first --compare-cap bytes.",
        "compare_unparsed" => "--compare: sessions whose responses could not be parsed.",
        "compare_gaps" => "--compare: sessions not compared, a stream had a hole.",
        "compare_noise" => "--compare-baseline: differences the baseline shows too.",
        "compare_unconfirmed" => "--compare-baseline: differences without the baseline's answer.",
        "compare_unaligned" => "--compare bytes: sessions left because the replay pipelined.",
        "compare_behind" => "--compare: sessions left, the target fell too far behind.",
        "baseline_sessions" => "--compare-baseline: sessions replayed to the baseline.",
        "closed_completed" => "Sessions closed: completed.",
        "closed_client_reset" => "Sessions closed: the client reset.",
        "closed_target_reset" => "Sessions closed: the target reset.",
        "closed_target_refused" => {
            "Sessions closed: the target refused the SYN until the deadline."
        }
        "closed_handshake_timeout" => "Sessions closed: no handshake by the deadline.",
        "closed_no_response" => "Sessions closed: no response within -t.",
        "closed_keepalive_timeout" => "Sessions closed: idle past -k.",
        "closed_capture_hole" => "Sessions closed: a capture hole never filled.",
        "closed_buffer_full" => "Sessions closed: the session's buffer cap was reached.",
        "closed_memory_cap" => "Sessions closed: the memory cap (-m) was reached.",
        "closed_retransmit_limit" => "Sessions closed: too many retransmissions.",
        "closed_reconnect_limit" => "Sessions closed: too many reconnections.",
        "closed_port_reuse" => "Sessions closed: the client reused the port.",
        "closed_close_timeout" => "Sessions closed: the close did not finish in time.",
        "closed_shutdown" => "Sessions closed: tcpcopy stopped.",
        "closed_end_of_input" => "Sessions closed: the capture file ended.",
        "responses_timed" => "Responses whose time was measured (target).",
        "response_p50_us" => "Target response time, median (see tcpcopy_response_time_seconds).",
        "response_p99_us" => "Target response time, 99th percentile.",
        "production_p50_us" => "--compare: production's response time, median.",
        "production_p99_us" => "--compare: production's response time, 99th percentile.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use tcpcopy_runtime::metrics::stats_line;

    use super::*;
    use crate::engine::close::CloseReason;

    #[test]
    fn every_key_of_the_line_is_a_metric_with_its_value() {
        let mut report = WorkerReport {
            sessions: 3,
            buffered_bytes: 4096,
            ..WorkerReport::default()
        };
        report.engine.captured = 1234;
        report.engine.closed[CloseReason::Completed as usize] = 7;
        report.engine.response_time.record(700);
        report.engine.response_time.record(40_000);
        report.engine.production_time.record(1200);
        let shared = Arc::new(WorkerShared::default());
        *shared.report.lock().unwrap() = report;
        let shared = [shared];
        let prev = Snapshot::take(&shared, None);
        shared[0].report.lock().unwrap().engine.captured += 100;
        let now = Snapshot::take(&shared, None);

        let line = now.line(Some(&prev));
        let published = published(&now, Some(&prev));
        assert_eq!(line, stats_line(&published.stats), "one source");
        let text = exporter().encode(Arc::new(published.clone()));
        let samples: Vec<(&str, f64)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name, value.parse().ok()?))
            })
            .collect();
        let pairs: Vec<(&str, u64)> = line
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect(kv);
                (k, v.parse().expect(v))
            })
            .collect();
        assert!(pairs.len() > 90, "{line}");
        let e = exporter();
        for (key, value) in pairs {
            let stat = published
                .stats
                .iter()
                .find(|s| s.key == key)
                .expect("a key of the line is a stat");
            assert_eq!(stat.value, value);
            let (name, want) = e.sample(stat);
            let got = samples
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{key}: no {name} in\n{text}"));
            assert_eq!(got.1, want, "{key} as {name}");
            assert!(
                text.contains(&format!("# HELP {} ", name.trim_end_matches("_total"))),
                "{name} has HELP"
            );
        }
        let get = |name: &str| samples.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("tcpcopy_sessions"), 3.0);
        assert_eq!(get("tcpcopy_captured_total"), 1334.0);
        assert_eq!(get("tcpcopy_closed_completed_total"), 7.0);
        assert!(get("tcpcopy_captured_per_second") > 0.0);
        assert_eq!(
            get("tcpcopy_response_time_seconds_count{server=\"target\"}"),
            2.0
        );
        assert_eq!(
            get("tcpcopy_response_time_seconds_bucket{le=\"0.001\",server=\"target\"}"),
            1.0
        );
        assert_eq!(
            get("tcpcopy_response_time_seconds_count{server=\"production\"}"),
            1.0
        );
        assert!(text.contains("\ntcpcopy_build_info{version=\""), "{text}");
    }

    #[test]
    fn every_key_has_a_valid_metric_name() {
        let e = exporter();
        for stat in every_stat() {
            // OpenMetrics would need these escaped.
            assert!(
                !help(&stat.key)
                    .unwrap_or_default()
                    .contains(['"', '\\', '\n']),
                "{}",
                stat.key
            );
            let (name, _) = e.sample(&stat);
            assert!(
                name.starts_with("tcpcopy_")
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        let names = exported_names();
        for want in [
            "tcpcopy_build_info",
            "tcpcopy_captured_per_second",
            "tcpcopy_sessions",
            "tcpcopy_captured_total",
            "tcpcopy_xdp_ring_full_total",
            "tcpcopy_closed_completed_total",
            "tcpcopy_response_p50_seconds",
            "tcpcopy_response_time_seconds_bucket",
            "tcpcopy_response_time_seconds_count",
            "tcpcopy_response_time_seconds_sum",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }
}
