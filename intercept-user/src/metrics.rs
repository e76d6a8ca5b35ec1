//! intercept's Prometheus metrics (`--metrics ADDR:PORT`): the statistics
//! line's pairs ([`Stats::stats`]) as metrics named
//! `intercept_<key>_total` (counters) or `intercept_<key>` (gauges), and
//! `intercept_build_info`. `tcpcopy_runtime::metrics` serves them.
//!
//! A key added to the line is exported without a change here; its HELP
//! text says which key it is until [`help`] has a sentence for it.

use std::sync::Arc;

use tcpcopy_common::counters::InterceptCounter;
use tcpcopy_runtime::metrics::{Exporter, Published, Stat, sample_names};

use crate::stats::Stats;

/// How intercept's values become metrics.
pub fn exporter() -> Exporter {
    Exporter {
        prefix: "intercept",
        version: env!("CARGO_PKG_VERSION"),
        help,
    }
}

/// What a scrape sees.
pub fn published(stats: &Stats) -> Published {
    Published {
        stats: stats.stats(),
        histograms: Vec::new(),
    }
}

/// Statistics with every pair the line can hold (the reply program's
/// counters included).
fn complete() -> Stats {
    Stats {
        xdp: Some(InterceptCounter::ALL.map(|c| (c, 0))),
        ..Stats::default()
    }
}

/// Every pair the statistics line can hold (values of no meaning): what
/// the tests and the README's list of metrics go by.
pub fn every_stat() -> Vec<Stat> {
    complete().stats()
}

/// The name of every sample intercept exports, in the order of a scrape.
pub fn exported_names() -> Vec<String> {
    sample_names(&exporter().encode(Arc::new(published(&complete()))))
}

/// The HELP text of each statistics-line key.
pub fn help(key: &str) -> Option<&'static str> {
    Some(match key {
        "ring_records" => "Reply records read from the ring buffer.",
        "delivered" => "Records fully written to their tcpcopy.",
        "dropped" => {
            "Records never to be delivered (unrouted, park_refused, dropped_slow, dropped_closed)."
        }
        "parked" => "Records parked to wait for their session's announcement.",
        "unparked" => "Parked records delivered once announced.",
        "expired" => "Parked records whose announcement never came.",
        "unrouted" => "Records for no announced session (not parked: no SYN-ACK or RST).",
        "park_refused" => "Records not parked: the parking was full.",
        "dropped_slow" => "Records dropped: their tcpcopy read too slowly (--peer-buffer).",
        "dropped_closed" => "Records dropped: queued for a tcpcopy that went away.",
        "announced" => "Sessions announced by tcpcopy (CLIENT_ADD).",
        "routes" => "Routes (announced sessions) held now.",
        "routes_aged" => "Routes removed after --route-idle without use.",
        "parked_now" => "Records parked now.",
        "queued_now" => "Records queued for tcpcopy connections now.",
        "peers" => "tcpcopy connections now.",
        "peers_accepted" => "tcpcopy connections accepted.",
        "peers_refused" => "tcpcopy connections refused (--allow, too many peers).",
        "peers_failed" => "tcpcopy connections closed for a protocol or socket error.",
        "ring_bad" => "Ring entries of a wrong size (a mismatched eBPF object).",
        "escaped_before_announce" => {
            "--egress: client addresses announced after a reply to them had left the host."
        }
        "announce_failed" => "--egress: announcements the kernel's table refused.",
        "ring_records6" => "IPv6 records among those read from the ring.",
        "announced6" => "IPv6 sessions announced by tcpcopy.",
        "routes6" => "IPv6 routes held now.",
        "xdp_seen" => "Frames the reply program ran on.",
        "xdp_matched" => "Replies from a target (all dropped).",
        "xdp_malformed" => "Frames cut short or with impossible header lengths (passed).",
        "xdp_reported" => "Matched replies whose header record went into the ring buffer.",
        "xdp_ring_full" => "Matched replies dropped without a record: the ring buffer was full.",
        "xdp_unclaimed" => "--egress: replies to addresses no tcpcopy replays (passed).",
        "xdp_matched6" => "IPv6 replies among the matched ones.",
        "xdp_fragments6" => "IPv6 fragments (passed, never reported).",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_line_is_a_metric_with_its_value() {
        let stats = Stats {
            ring_records: 10,
            delivered: 7,
            dropped_slow: 1,
            peers: 2,
            xdp: Some(InterceptCounter::ALL.map(|c| (c, c as u64 * 10 + 1))),
            ..Stats::default()
        };
        let line = stats.to_string();
        let text = exporter().encode(Arc::new(published(&stats)));
        let e = exporter();
        let all = stats.stats();
        assert_eq!(line.split(' ').count(), all.len());
        for kv in line.split(' ') {
            let (key, value) = kv.split_once('=').expect(kv);
            let stat = all.iter().find(|s| s.key == key).expect(key);
            assert_eq!(stat.value.to_string(), value);
            let (name, want) = e.sample(stat);
            assert!(
                text.lines().any(|l| l == format!("{name} {want}")),
                "{key}: no `{name} {want}` in\n{text}"
            );
            assert!(name.starts_with("intercept_"), "{name}");
            // OpenMetrics would need these escaped.
            assert!(
                !help(key).unwrap_or_default().contains(['"', '\\', '\n']),
                "{key}"
            );
        }
        assert!(text.contains("\nintercept_peers 2\n"));
        assert!(text.contains("\nintercept_xdp_ring_full_total 41\n"));
        assert!(text.contains("\nintercept_build_info{version=\""));
        assert_eq!(
            exported_names().len(),
            every_stat().len() + 1,
            "one sample per pair, and the build info"
        );
    }
}
