//! The daemon's statistics: one `key=value` line, logged every
//! `--stats-interval` and at exit.
//!
//! Accounting: every record read from the ring ends up in exactly one of
//! `delivered` (fully written to its tcpcopy), `dropped` (`unrouted` +
//! `park_refused` + `dropped_slow` + `dropped_closed`), `expired`, or is
//! still in flight (`parked_now`, or queued for a peer). At exit, after the
//! last flush, nothing is queued any more.
//!
//! The line's pairs are [`Stat`]s ([`Stats::stats`]); the Prometheus
//! metrics (`crate::metrics`) are made from the same pairs, so every key
//! added here is a metric too.

use std::fmt;

use tcpcopy_common::counters::InterceptCounter;
use tcpcopy_runtime::metrics::{Stat, stats_line};

use crate::route::RouteCounts;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub ring_records: u64,
    /// IPv6 records among them.
    pub ring_records6: u64,
    /// Ring entries of a wrong size (a mismatched eBPF object).
    pub ring_bad: u64,
    /// Records fully written to a tcpcopy connection.
    pub delivered: u64,
    /// Records dropped: a peer's output buffer was full.
    pub dropped_slow: u64,
    /// Records dropped: queued for a peer that went away.
    pub dropped_closed: u64,
    pub route: RouteCounts,
    /// Routes held now.
    pub routes: usize,
    /// IPv6 routes among them.
    pub routes6: usize,
    /// Records parked now.
    pub parked_now: usize,
    /// Records queued for peers now (batched or unsent).
    pub queued_now: u64,
    /// tcpcopy connections now.
    pub peers: usize,
    pub peers_accepted: u64,
    /// Connections refused (`--allow`, too many peers).
    pub peers_refused: u64,
    /// Connections closed for a protocol or socket error.
    pub peers_failed: u64,
    /// Egress: announcements of a client address to which a reply had
    /// already left the host (the SYN-ACK beat the announcement).
    pub escaped_before_announce: u64,
    /// Egress: announcements the kernel's table refused.
    pub announce_failed: u64,
    /// The reply program's counters (XDP or TC egress; logged as `xdp_*`
    /// for either), when they could be read.
    pub xdp: Option<[(InterceptCounter, u64); InterceptCounter::ALL.len()]>,
}

impl Stats {
    /// Records read but never to be delivered (expired ones aside).
    pub fn dropped(&self) -> u64 {
        self.route.unrouted + self.route.park_refused + self.dropped_slow + self.dropped_closed
    }
}

impl Stats {
    /// The line's pairs, each with its kind: totals are counters; what is
    /// held now (routes, parked and queued records, peers) gauges.
    pub fn stats(&self) -> Vec<Stat> {
        let r = &self.route;
        let mut stats = vec![
            Stat::counter("ring_records", self.ring_records),
            Stat::counter("delivered", self.delivered),
            Stat::counter("dropped", self.dropped()),
            Stat::counter("parked", r.parked),
            Stat::counter("unparked", r.unparked),
            Stat::counter("expired", r.expired),
            Stat::counter("unrouted", r.unrouted),
            Stat::counter("park_refused", r.park_refused),
            Stat::counter("dropped_slow", self.dropped_slow),
            Stat::counter("dropped_closed", self.dropped_closed),
            Stat::counter("announced", r.announced),
            Stat::gauge("routes", self.routes as u64),
            Stat::counter("routes_aged", r.routes_aged),
            Stat::gauge("parked_now", self.parked_now as u64),
            Stat::gauge("queued_now", self.queued_now),
            Stat::gauge("peers", self.peers as u64),
            Stat::counter("peers_accepted", self.peers_accepted),
            Stat::counter("peers_refused", self.peers_refused),
            Stat::counter("peers_failed", self.peers_failed),
            Stat::counter("ring_bad", self.ring_bad),
            Stat::counter("escaped_before_announce", self.escaped_before_announce),
            Stat::counter("announce_failed", self.announce_failed),
            Stat::counter("ring_records6", self.ring_records6),
            Stat::counter("announced6", r.announced6),
            Stat::gauge("routes6", self.routes6 as u64),
        ];
        if let Some(xdp) = &self.xdp {
            stats.extend(
                xdp.iter().map(|(counter, value)| {
                    Stat::counter(format!("xdp_{}", counter.name()), *value)
                }),
            );
        }
        stats
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&stats_line(&self.stats()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_line_is_key_value_pairs() {
        let stats = Stats {
            ring_records: 10,
            delivered: 7,
            dropped_slow: 1,
            route: RouteCounts {
                unrouted: 1,
                expired: 1,
                ..RouteCounts::default()
            },
            xdp: Some(InterceptCounter::ALL.map(|c| (c, c as u64 * 10))),
            ..Stats::default()
        };
        let line = stats.to_string();
        let pairs: Vec<(&str, &str)> = line
            .split(' ')
            .map(|kv| kv.split_once('=').expect(kv))
            .collect();
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).unwrap().1;
        assert_eq!(get("ring_records"), "10");
        assert_eq!(get("dropped"), "2");
        assert_eq!(get("xdp_ring_full"), "40");
        assert_eq!(get("xdp_reported"), "30");
        assert_eq!(get("xdp_matched6"), "60");
        assert_eq!(get("xdp_fragments6"), "70");
        assert_eq!(get("ring_records6"), "0");
    }
}
