//! One replayed session's two response streams as the engine sees them:
//! production's server segments (from the capture) and the target's reply
//! payloads (from intercept), each cut down to the bytes that are new and
//! in order before they reach the [`SessionCompare`].
//!
//! A stream with a hole (a segment lost from the capture, or a reply whose
//! payload intercept did not send whole) cannot be compared any more: it is
//! counted once (`gaps`) and left.

use super::{
    CompareCounts, CompareMode, IgnoreRules,
    session::{DifferentExchange, SessionCompare},
};

/// The next expected sequence number of one direction.
#[derive(Clone, Copy, Debug, Default)]
struct InOrder {
    next: Option<u32>,
}

/// What a segment's payload adds to its stream.
enum Accepted<'a> {
    New(&'a [u8]),
    Gap,
}

impl InOrder {
    fn syn(&mut self, seq: u32) {
        self.next = Some(seq.wrapping_add(1));
    }

    /// `bytes` is the whole payload of the segment at `seq`.
    fn data<'a>(&mut self, seq: u32, bytes: &'a [u8]) -> Accepted<'a> {
        let next = *self.next.get_or_insert(seq);
        let before = next.wrapping_sub(seq) as i32;
        if before < 0 {
            return Accepted::Gap;
        }
        let old = before as usize;
        if old >= bytes.len() {
            return Accepted::New(&[]);
        }
        self.next = Some(next.wrapping_add((bytes.len() - old) as u32));
        Accepted::New(&bytes[old..])
    }
}

/// A session's comparison with both streams' sequence tracking.
#[derive(Debug)]
pub struct SessionStreams {
    compare: SessionCompare,
    production: InOrder,
    target: InOrder,
    /// `--compare-baseline`: the baseline session's stream.
    baseline: InOrder,
    /// A stream had a hole: nothing more is compared.
    broken: bool,
    /// When (µs) the client's request that production has not begun to
    /// answer was captured (its first segment), for production's response
    /// time.
    asked_at_us: Option<u64>,
}

impl SessionStreams {
    pub fn new(mode: CompareMode, cap: usize) -> Self {
        Self {
            compare: SessionCompare::new(mode, cap),
            production: InOrder::default(),
            target: InOrder::default(),
            baseline: InOrder::default(),
            broken: false,
            asked_at_us: None,
        }
    }

    /// `--compare-baseline`: differing exchanges wait for the baseline's
    /// answers (see [`SessionCompare`]).
    pub fn with_baseline(mut self, mode: CompareMode) -> Self {
        self.compare = self.compare.with_baseline(mode);
        self
    }

    /// A reply of the baseline's session, as for [`Self::target`]. A hole
    /// in its stream ends the baseline's part, not the comparison.
    pub fn baseline(&mut self, syn: bool, seq: u32, payload_len: usize, payload: Option<&[u8]>) {
        if !syn && payload_len > 0 && payload.is_none_or(|p| p.len() < payload_len) {
            self.compare.baseline_finish();
            return;
        }
        let Self {
            compare, baseline, ..
        } = self;
        let mut broken = false;
        let mut ignored = CompareCounts::default();
        Self::feed(
            &mut broken,
            &mut ignored,
            baseline,
            syn,
            seq,
            payload.unwrap_or(&[]),
            |b| compare.baseline(b),
        );
        if broken {
            compare.baseline_finish();
        }
    }

    /// Bytes mode: tcpcopy sent the baseline the next request.
    pub fn baseline_exchange_end(&mut self) {
        self.compare.baseline_exchange_end();
    }

    /// The baseline's session ended.
    pub fn baseline_finish(&mut self) {
        self.compare.baseline_finish();
    }

    /// Differing exchanges wait for the baseline's answers.
    pub fn awaits_baseline(&self) -> bool {
        !self.broken && self.compare.awaits_baseline()
    }

    /// The session ended at production and the target (its baseline's
    /// session goes on): what is left of their streams is complete.
    pub fn finish_target(&mut self) {
        if !self.broken {
            self.compare.finish();
        }
    }

    /// The client sent request data at `us` (capture time).
    pub fn client_data_at(&mut self, us: u64) {
        self.asked_at_us.get_or_insert(us);
    }

    /// Production sent response data at `us`: its response time, if this
    /// is the first response data since the client asked.
    pub fn production_data_at(&mut self, us: u64) -> Option<u64> {
        self.asked_at_us
            .take()
            .map(|asked| us.saturating_sub(asked))
    }

    fn feed(
        broken: &mut bool,
        counts: &mut CompareCounts,
        side: &mut InOrder,
        syn: bool,
        seq: u32,
        payload: &[u8],
        mut push: impl FnMut(&[u8]),
    ) {
        if *broken {
            return;
        }
        if syn {
            side.syn(seq);
            return;
        }
        if payload.is_empty() {
            return;
        }
        match side.data(seq, payload) {
            Accepted::New(bytes) if !bytes.is_empty() => push(bytes),
            Accepted::New(_) => {}
            Accepted::Gap => {
                *broken = true;
                counts.gaps += 1;
            }
        }
    }

    /// A production server segment (SYN-ACK or data) from the capture.
    pub fn production(&mut self, counts: &mut CompareCounts, syn: bool, seq: u32, payload: &[u8]) {
        let Self {
            compare,
            production,
            broken,
            ..
        } = self;
        Self::feed(broken, counts, production, syn, seq, payload, |b| {
            compare.production(b)
        });
    }

    /// A target reply: its SYN flag, sequence number, payload length and
    /// the payload bytes intercept sent (`None`: it sent none).
    pub fn target(
        &mut self,
        counts: &mut CompareCounts,
        syn: bool,
        seq: u32,
        payload_len: usize,
        payload: Option<&[u8]>,
    ) {
        if !syn && payload_len > 0 && payload.is_none_or(|p| p.len() < payload_len) {
            if !self.broken {
                self.broken = true;
                counts.gaps += 1;
            }
            return;
        }
        let Self {
            compare,
            target,
            broken,
            ..
        } = self;
        Self::feed(
            broken,
            counts,
            target,
            syn,
            seq,
            payload.unwrap_or(&[]),
            |b| compare.target(b),
        );
    }

    /// Bytes mode: the client sent its next request in the capture, so
    /// production's response to the one before is complete.
    pub fn production_exchange_end(&mut self) {
        self.compare.production_exchange_end();
    }

    /// Bytes mode: tcpcopy sent the target the next request, so the
    /// target's response to the one before is complete.
    pub fn target_exchange_end(&mut self) {
        self.compare.target_exchange_end();
    }

    /// Compares what both sides completed.
    pub fn compare_ready(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        on_different: impl FnMut(DifferentExchange),
    ) {
        if !self.broken {
            self.compare.compare_ready(rules, counts, on_different);
        }
    }

    /// The session ended: what is left on both sides is complete; what
    /// the baseline has not answered by now is judged without it.
    pub fn finish(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        mut on_different: impl FnMut(DifferentExchange),
    ) {
        if !self.broken {
            self.compare.finish();
            self.compare.compare_ready(rules, counts, &mut on_different);
            self.compare.give_up_baseline(counts, &mut on_different);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn retransmitted_and_overlapping_segments_add_only_new_bytes() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.production(&mut counts, true, 999, &[]);
        s.production(&mut counts, false, 1000, &OK[..10]);
        s.production(&mut counts, false, 1000, &OK[..10]); // retransmission
        s.production(&mut counts, false, 1005, &OK[5..]); // overlap
        s.target(&mut counts, true, 49, 0, None);
        s.target(&mut counts, false, 50, OK.len(), Some(OK));
        s.compare_ready(&rules, &mut counts, |_| panic!("equal"));
        assert_eq!((counts.compared, counts.equal, counts.gaps), (1, 1, 0));
    }

    #[test]
    fn a_hole_or_a_payload_not_sent_whole_leaves_the_session() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.production(&mut counts, true, 999, &[]);
        s.production(&mut counts, false, 1010, &OK[10..]);
        assert_eq!(counts.gaps, 1);
        s.target(&mut counts, false, 50, OK.len(), Some(OK));
        s.finish(&rules, &mut counts, |_| {});
        assert_eq!(counts.compared, 0);

        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.target(&mut counts, false, 50, OK.len(), Some(&OK[..3]));
        s.target(&mut counts, false, 90, 5, None);
        assert_eq!(counts.gaps, 1, "counted once");
    }
}
