//! Batching: records for one tcpcopy connection leave in frames of up to 16.
//!
//! Adaptive, as TCPCopy 1.x's combined mode: a peer's [`Batcher`] is flushed
//! into its [`outbox::Outbox`] when it holds 16 records, when the ring
//! buffer has run dry (low load: nothing more is coming right now, so send
//! at once), or when its oldest record has waited [`MAX_BATCH_WAIT`]. Under
//! load frames fill up; when traffic is light every record leaves on the
//! next loop turn. No record waits longer than [`MAX_BATCH_WAIT`] plus one
//! loop turn.

pub mod outbox;

use std::time::{Duration, Instant};

use tcpcopy_common::proto::MAX_RECORDS_PER_FRAME;

use crate::capture::ring::Reply;

/// The longest a record waits for its frame to fill.
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(2);

/// Records waiting for one peer's next frame.
#[derive(Debug)]
pub struct Batcher {
    records: Vec<Reply>,
    oldest: Option<Instant>,
    max_wait: Duration,
}

impl Default for Batcher {
    fn default() -> Self {
        Self::new(MAX_BATCH_WAIT)
    }
}

impl Batcher {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            records: Vec::with_capacity(MAX_RECORDS_PER_FRAME),
            oldest: None,
            max_wait,
        }
    }

    /// Adds a record. The caller must flush first when [`is_full`](Self::is_full).
    pub fn push(&mut self, rec: Reply, now: Instant) {
        debug_assert!(!self.is_full());
        self.oldest.get_or_insert(now);
        self.records.push(rec);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.records.len() >= MAX_RECORDS_PER_FRAME
    }

    /// When the oldest record's wait is up, if any record waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.max_wait)
    }

    /// The flush rule (module docs): full, input idle, or waited long enough.
    pub fn should_flush(&self, now: Instant, input_idle: bool) -> bool {
        !self.is_empty()
            && (self.is_full() || input_idle || self.deadline().is_some_and(|d| now >= d))
    }

    /// Takes the waiting records (one frame's worth at most).
    pub fn take(&mut self) -> Vec<Reply> {
        self.oldest = None;
        std::mem::replace(&mut self.records, Vec::with_capacity(MAX_RECORDS_PER_FRAME))
    }
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::HeaderRecord;

    use super::*;

    fn rec(n: u8) -> Reply {
        let mut r = HeaderRecord::default();
        r.bytes[0] = n;
        Reply::header_only(r)
    }

    #[test]
    fn a_lone_record_leaves_as_soon_as_the_input_is_idle() {
        let now = Instant::now();
        let mut b = Batcher::default();
        assert!(!b.should_flush(now, true), "nothing to flush");
        b.push(rec(1), now);
        assert!(!b.should_flush(now, false), "more records are coming");
        assert!(b.should_flush(now, true));
        assert_eq!(b.take(), vec![rec(1)]);
        assert!(b.is_empty() && b.deadline().is_none());
    }

    #[test]
    fn a_full_frame_leaves_at_once() {
        let now = Instant::now();
        let mut b = Batcher::default();
        for i in 0..16 {
            assert!(!b.should_flush(now, false), "after {i}");
            b.push(rec(i), now);
        }
        assert!(b.is_full());
        assert!(b.should_flush(now, false));
        assert_eq!(b.take().len(), 16);
    }

    #[test]
    fn under_steady_load_no_record_waits_past_the_deadline() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        b.push(rec(1), t0);
        b.push(rec(2), t0 + Duration::from_millis(1));
        assert_eq!(b.deadline(), Some(t0 + MAX_BATCH_WAIT), "the oldest counts");
        assert!(!b.should_flush(t0 + Duration::from_micros(1999), false));
        assert!(b.should_flush(t0 + MAX_BATCH_WAIT, false));
        b.take();
        b.push(rec(3), t0 + Duration::from_millis(3));
        assert_eq!(
            b.deadline(),
            Some(t0 + Duration::from_millis(3) + MAX_BATCH_WAIT)
        );
    }
}
