//! Engine counters. Cheap to bump on the fast path; summed across shards
//! for the periodic statistics line.

use super::session::CloseReason;

macro_rules! counters {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $field: u64,)*
            /// Sessions ended, by reason (index: `CloseReason as usize`).
            pub closed: [u64; CloseReason::COUNT],
        }

        impl $name {
            /// Adds another shard's counters.
            pub fn add(&mut self, other: &Self) {
                $(self.$field += other.$field;)*
                for (a, b) in self.closed.iter_mut().zip(other.closed.iter()) {
                    *a += b;
                }
            }

            /// `(name, value)` of every counter, closed-by-reason included.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), self.$field),)*]
                    .into_iter()
                    .chain(CloseReason::ALL.iter().map(|r| (r.name(), self.closed[*r as usize])))
            }
        }
    };
}

counters! {
    /// What one engine (shard) has done.
    pub struct EngineStats {
        /// Client packets handed to the engine.
        captured,
        /// ... that were not IPv4/TCP or had impossible lengths.
        malformed,
        /// ... whose destination matched no rule.
        unmatched,
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
        /// Retransmissions on timeout.
        rto_retransmits,
        /// Retransmissions on three duplicate ACKs.
        fast_retransmits,
        /// New connections after the target closed with client data left.
        reconnects,
        /// Reply headers handed to the engine.
        replies,
        /// ... that could not be parsed.
        replies_malformed,
        /// ... for no session of this engine.
        replies_unknown,
    }
}
