//! A sender's counters: what went out, what was dropped and why, and what
//! next-hop resolution did. Plain integers bumped on the worker's own
//! thread; read with [`FrameSender::stats`](super::FrameSender::stats).
//!
//! Accounting: every frame handed to `send` is counted exactly once, in
//! `frames` (handed to the kernel) or in one [`DropReason`] - with one
//! exception: an AF_XDP descriptor the kernel refuses after submission
//! (`tx_invalid_descs`, which the sender's own checks should make
//! impossible) is in `frames` and in `kernel_error`.

use std::fmt;

use super::nexthop::ResolveCounters;

/// Why a frame did not go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No free frame or ring slot: the in-flight cap was reached (or the
    /// socket's buffer was full) and stayed so for the bounded wait.
    RingFull,
    /// The destination's next-hop MAC is not known (yet).
    NoNextHop,
    /// Longer than the interface MTU (or the backend's frame size).
    TooBig,
    /// The kernel refused the frame (a send error, an invalid descriptor).
    KernelError,
    /// Not an IPv4 packet (shorter than its header, wrong version).
    Malformed,
}

impl DropReason {
    pub const COUNT: usize = 5;
    pub const ALL: [Self; Self::COUNT] = [
        Self::RingFull,
        Self::NoNextHop,
        Self::TooBig,
        Self::KernelError,
        Self::Malformed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::RingFull => "ring_full",
            Self::NoNextHop => "no_next_hop",
            Self::TooBig => "too_big",
            Self::KernelError => "kernel_error",
            Self::Malformed => "malformed",
        }
    }
}

/// What one sender has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Frames handed to the kernel for transmission.
    pub frames: u64,
    /// Their bytes on the wire (Ethernet header included).
    pub bytes: u64,
    /// Frames the kernel reported transmitted (AF_XDP completions; the raw
    /// socket's sends complete at once).
    pub completed: u64,
    /// Frames submitted and not completed yet.
    pub in_flight: u64,
    /// Dropped frames by reason (index: `DropReason as usize`).
    pub dropped: [u64; DropReason::COUNT],
    /// Driver kicks (wake-up system calls) and those that failed.
    pub kicks: u64,
    pub kick_errors: u64,
    pub next_hop: ResolveCounters,
}

impl SenderStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub(crate) fn drop_frame(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Adds another sender's counters (per-worker stats into one line).
    pub fn add(&mut self, o: &Self) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.completed += o.completed;
        self.in_flight += o.in_flight;
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            *a += b;
        }
        self.kicks += o.kicks;
        self.kick_errors += o.kick_errors;
        let (n, m) = (&mut self.next_hop, &o.next_hop);
        n.lookups += m.lookups;
        n.resolved += m.resolved;
        n.changed += m.changed;
        n.solicited += m.solicited;
        n.failed += m.failed;
    }
}

impl fmt::Display for SenderStats {
    /// One `key=value` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames={} bytes={} completed={} in_flight={}",
            self.frames, self.bytes, self.completed, self.in_flight
        )?;
        for r in DropReason::ALL {
            write!(f, " drop_{}={}", r.name(), self.dropped(r))?;
        }
        let n = &self.next_hop;
        write!(
            f,
            " kicks={} kick_errors={} nh_lookups={} nh_resolved={} nh_changed={} nh_solicited={} nh_failed={}",
            self.kicks, self.kick_errors, n.lookups, n.resolved, n.changed, n.solicited, n.failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason_and_summed() {
        let mut s = SenderStats::default();
        s.drop_frame(DropReason::TooBig);
        s.drop_frame(DropReason::TooBig);
        s.drop_frame(DropReason::NoNextHop);
        assert_eq!(s.dropped(DropReason::TooBig), 2);
        assert_eq!(s.total_dropped(), 3);
        let mut sum = SenderStats::default();
        sum.add(&s);
        sum.add(&s);
        assert_eq!(sum.dropped(DropReason::NoNextHop), 2);
        let line = sum.to_string();
        assert!(line.contains("drop_too_big=4"), "{line}");
        assert!(line.contains("drop_ring_full=0"), "{line}");
    }
}
