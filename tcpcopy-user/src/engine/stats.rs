//! Engine counters. Cheap to bump on the fast path; summed across shards
//! for the periodic statistics line.

use super::close::CloseReason;

/// A histogram of durations in microseconds: four buckets per power of two
/// (about 19 % wide), from 1 µs to over an hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: [u64; Self::BUCKETS],
    count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; Self::BUCKETS],
            count: 0,
        }
    }
}

impl LatencyHistogram {
    const BUCKETS: usize = 128;

    fn bucket(us: u64) -> usize {
        if us < 4 {
            return us as usize;
        }
        let log = 63 - us.leading_zeros() as usize; // >= 2
        let frac = ((us >> (log - 2)) & 3) as usize;
        (4 * (log - 1) + frac).min(Self::BUCKETS - 1)
    }

    /// The upper bound of bucket `b` (what a quantile reports).
    fn upper(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        let log = b / 4 + 1;
        let frac = (b % 4) as u64;
        ((4 + frac + 1) << (log - 2)) - 1
    }

    pub fn record(&mut self, us: u64) {
        self.buckets[Self::bucket(us)] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(upper bound in µs, count)` of every bucket that holds something.
    pub fn nonzero_buckets(&self) -> Vec<(u64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (Self::upper(b), *n))
            .collect()
    }

    pub fn add(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
    }

    /// The `q` quantile (0..=1) in microseconds, to bucket precision (0
    /// when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(b);
            }
        }
        Self::upper(Self::BUCKETS - 1)
    }
}

macro_rules! counters {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $field: u64,)*
            /// Sessions ended, by reason (index: `CloseReason as usize`).
            pub closed: [u64; CloseReason::COUNT],
            /// Target response times: first request segment sent to first
            /// response byte reported.
            pub response_time: LatencyHistogram,
            /// `--compare`: production's response times, from the capture:
            /// first request segment to first response byte captured.
            pub production_time: LatencyHistogram,
        }

        impl $name {
            /// Adds another shard's counters.
            pub fn add(&mut self, other: &Self) {
                $(self.$field += other.$field;)*
                for (a, b) in self.closed.iter_mut().zip(other.closed.iter()) {
                    *a += b;
                }
                self.response_time.add(&other.response_time);
                self.production_time.add(&other.production_time);
            }

            /// `(name, value)` of every counter, closed-by-reason included.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), self.$field),)*]
                    .into_iter()
                    .chain(CloseReason::ALL.iter().map(|r| (r.name(), self.closed[*r as usize])))
                    .chain([
                        ("responses_timed", self.response_time.count()),
                        ("response_p50_us", self.response_time.quantile(0.50)),
                        ("response_p99_us", self.response_time.quantile(0.99)),
                    ])
                    .chain(
                        (self.production_time.count() > 0)
                            .then(|| {
                                [
                                    ("production_p50_us", self.production_time.quantile(0.50)),
                                    ("production_p99_us", self.production_time.quantile(0.99)),
                                ]
                            })
                            .into_iter()
                            .flatten(),
                    )
            }
        }
    };
}

counters! {
    /// What one engine (shard) has done.
    pub struct EngineStats {
        /// Client packets handed to the engine.
        captured,
        /// ... that were not TCP over the engine's IP family or had
        /// impossible lengths.
        malformed,
        /// ... IP fragments (not reassembled: dropped).
        fragments,
        /// ... IPv6 packets replayed without their extension headers
        /// (hop-by-hop, routing at its end, destination options).
        extensions_stripped,
        /// ... whose destination matched no rule.
        unmatched,
        /// ... with a checksum that was neither right nor left for the
        /// NIC (damaged): dropped, as the production host dropped it.
        bad_checksum,
        /// ... whose checksums were left for the NIC (transmit offload,
        /// GRO), completed before the replay.
        checksum_completed,
        /// ... of sessions left out by `-r`.
        sampled_out,
        /// ... that belonged to no session and could not start one.
        no_session,
        /// Client pure ACKs (tcpcopy acknowledges the target itself).
        client_acks,
        /// Client segments entirely old (already buffered or acknowledged).
        old_segments,
        /// Client segments trimmed because they overlapped buffered data.
        overlaps_trimmed,
        /// Times a session found a capture hole and waited for it to fill.
        hole_waits,
        /// Oversized (GRO) client packets split to the MTU.
        split_packets,
        /// Sessions started from a captured SYN.
        sessions_syn,
        /// Sessions started mid-stream with a faked SYN.
        sessions_faked,
        /// Sessions refused: memory cap reached.
        sessions_refused_memory,
        /// Sessions refused: no free client port.
        sessions_refused_port,
        /// Handshakes completed.
        established,
        /// Requests started (first segment of each request sent).
        requests,
        /// Requests whose previous response never came (moved on after the
        /// response timeout).
        response_timeouts,
        /// Requests sent before the previous response because the session
        /// had fallen behind production (backlog over `pipeline_backlog`).
        pipelined,
        /// Responses seen (reply data after a request).
        responses,
        /// Data segments sent for the first time.
        segments_sent,
        /// Frames emitted (all kinds).
        frames_sent,
        /// Bytes of frames emitted (IPv4 length).
        bytes_sent,
        /// Our own pure ACKs.
        acks_sent,
        /// SYN retransmissions.
        syn_retransmits,
        /// SYNs the target answered with a RST (each is tried again until
        /// the handshake deadline: a restarting target refuses for a while).
        syn_refused,
        /// Retransmissions on timeout.
        rto_retransmits,
        /// Retransmissions on three duplicate ACKs.
        fast_retransmits,
        /// New connections after the target closed with client data left.
        reconnects,
        /// Requests the target acknowledged and then lost (it reset or
        /// closed before answering: a crash, a restart): replayed on the
        /// reconnection.
        requests_lost_by_target,
        /// Reply headers handed to the engine.
        replies,
        /// ... that could not be parsed.
        replies_malformed,
        /// ... for no session of this engine.
        replies_unknown,
        /// `--compare`: production's server segments from the capture
        /// (handed to the engine beside the client packets, not counted
        /// as captured).
        server_segments,
        /// `--compare`: exchanges compared with production's, equal, and
        /// different (by kind: one exchange may differ in several).
        compared,
        compare_equal,
        compare_different,
        compare_status,
        compare_header,
        compare_body,
        /// ... compared on their first `--compare-cap` bytes only.
        compare_truncated,
        /// Sessions whose responses could not be parsed (not compared).
        compare_unparsed,
        /// Sessions not compared: a stream had a hole.
        compare_gaps,
        /// `--compare-baseline`: exchanges that differed alike at the
        /// baseline (noise, not `compare_different`).
        compare_noise,
        /// `--compare-baseline`: differing exchanges without the
        /// baseline's answer to judge them by.
        compare_unconfirmed,
        /// `--compare bytes`: sessions left because the replay pipelined.
        compare_unaligned,
        /// Sessions left: the target fell too far behind production to
        /// keep production's answers for it.
        compare_behind,
        /// `--compare-baseline`: sessions replayed to the baseline.
        baseline_sessions,
    }
}

impl EngineStats {
    /// The comparison's totals (`--compare`), as the counters hold them.
    pub fn compare_counts(&self) -> crate::compare::CompareCounts {
        crate::compare::CompareCounts {
            compared: self.compared,
            equal: self.compare_equal,
            different: self.compare_different,
            status: self.compare_status,
            header: self.compare_header,
            body: self.compare_body,
            truncated: self.compare_truncated,
            unparsed: self.compare_unparsed,
            gaps: self.compare_gaps,
            noise: self.compare_noise,
            unconfirmed: self.compare_unconfirmed,
            unaligned: self.compare_unaligned,
            behind: self.compare_behind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LatencyHistogram;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = LatencyHistogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        for (q, want) in [(0.5, 5000.0), (0.99, 9900.0), (0.01, 100.0)] {
            let got = h.quantile(q) as f64;
            assert!(got >= want && got <= want * 1.25, "q {q}: {got} vs {want}");
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(LatencyHistogram::default().quantile(0.5), 0);
        let mut big = LatencyHistogram::default();
        big.record(u64::MAX);
        assert!(
            big.quantile(1.0) >= 3_600_000_000,
            "the last bucket holds everything past an hour"
        );
        for us in 0..100_000u64 {
            assert!(
                LatencyHistogram::upper(LatencyHistogram::bucket(us)) >= us,
                "{us}"
            );
        }
    }
}
