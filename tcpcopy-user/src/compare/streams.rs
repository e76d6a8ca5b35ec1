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
    session::{Judgement, SessionCompare},
};

/// Bytes of early segments one direction holds while a hole before them
/// fills (segments reordered across the CPUs that captured them, or
/// retransmitted); beyond, the hole counts as a gap.
const REORDER_BYTES: usize = 256 << 10;

/// One direction's stream: the next expected sequence number, and the
/// segments that came before their turn.
#[derive(Clone, Debug, Default)]
struct InOrder {
    next: Option<u32>,
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
}

/// More came early than [`REORDER_BYTES`]: a segment is missing.
struct Gap;

impl InOrder {
    fn syn(&mut self, seq: u32) {
        self.next = Some(seq.wrapping_add(1));
        self.held.clear();
        self.held_bytes = 0;
    }

    /// The payload of the segment at `seq`: hands the bytes that extend
    /// the stream to `push`, in order (an early segment is held until the
    /// ones before it come). `Ok(true)`: the segment carried new bytes.
    fn data(&mut self, seq: u32, bytes: &[u8], mut push: impl FnMut(&[u8])) -> Result<bool, Gap> {
        let next = *self.next.get_or_insert(seq);
        if (seq.wrapping_sub(next) as i32) > 0 {
            if self
                .held
                .iter()
                .any(|(s, b)| *s == seq && b.len() >= bytes.len())
            {
                return Ok(false);
            }
            if self.held_bytes + bytes.len() > REORDER_BYTES {
                return Err(Gap);
            }
            self.held_bytes += bytes.len();
            self.held.push((seq, bytes.to_vec()));
            return Ok(true);
        }
        let mut new = self.take(seq, bytes, &mut push);
        while let Some(i) = self
            .held
            .iter()
            .position(|(s, _)| (s.wrapping_sub(self.next.unwrap_or(*s)) as i32) <= 0)
        {
            let (s, b) = self.held.swap_remove(i);
            self.held_bytes -= b.len();
            new |= self.take(s, &b, &mut push);
        }
        Ok(new)
    }

    /// A segment at or before `next`: its bytes beyond `next`.
    fn take(&mut self, seq: u32, bytes: &[u8], push: &mut impl FnMut(&[u8])) -> bool {
        let next = self.next.unwrap_or(seq);
        let old = next.wrapping_sub(seq) as usize;
        if old >= bytes.len() {
            return false;
        }
        self.next = Some(next.wrapping_add((bytes.len() - old) as u32));
        push(&bytes[old..]);
        true
    }
}

/// Methods a request line may start with.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The `METHOD /path` of each request line in client bytes: one at the
/// start, and one after each blank line that ends a head (pipelining).
/// The query string is left out, so an endpoint's requests group.
fn request_lines(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    let starts = std::iter::once(0).chain(
        bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n\r\n")
            .map(|(i, _)| i + 4),
    );
    starts.filter_map(move |at| {
        let rest = &bytes[at..];
        let method = METHODS.iter().find(|m| rest.starts_with(m))?;
        let path = &rest[method.len()..];
        let end = path
            .iter()
            .position(|b| matches!(b, b' ' | b'?' | b'\r' | b'\n'))
            .unwrap_or(path.len())
            .min(200);
        let path = &path[..end];
        (!path.is_empty()).then(|| {
            format!(
                "{}{}",
                String::from_utf8_lossy(method),
                String::from_utf8_lossy(path)
            )
        })
    })
}

/// A session's comparison with both streams' sequence tracking.
#[derive(Debug)]
pub struct SessionStreams {
    mode: CompareMode,
    compare: SessionCompare,
    production: InOrder,
    target: InOrder,
    /// `--compare-baseline`: the baseline session's stream.
    baseline: InOrder,
    /// The client's stream (requests), as captured.
    client: InOrder,
    /// HTTP: the requests' `METHOD /path` (no query), for per-endpoint
    /// counts; the front one is exchange `labels_from`'s. `None` once the
    /// client's stream had a hole (requests are no longer told apart).
    labels: Option<std::collections::VecDeque<String>>,
    labels_from: u64,
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
            mode,
            compare: SessionCompare::new(mode, cap),
            production: InOrder::default(),
            target: InOrder::default(),
            baseline: InOrder::default(),
            client: InOrder::default(),
            labels: (mode == CompareMode::Http).then(Default::default),
            labels_from: 0,
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

    /// Memory the session's comparison keeps, about: complete exchanges
    /// waiting for the other side, and early segments held.
    pub fn waiting_bytes(&self) -> usize {
        self.compare.waiting_bytes()
            + [&self.production, &self.target, &self.baseline, &self.client]
                .iter()
                .map(|s| s.held_bytes)
                .sum::<usize>()
    }

    /// Out of comparison memory: the session is left (`behind`).
    pub fn leave(&mut self, counts: &mut CompareCounts) {
        if !self.broken {
            self.broken = true;
            self.compare.leave(counts);
        }
        for side in [
            &mut self.production,
            &mut self.target,
            &mut self.baseline,
            &mut self.client,
        ] {
            side.held.clear();
            side.held_bytes = 0;
        }
        self.labels = None;
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

    /// Client data captured at `us` (its segment's sequence number and
    /// payload). Returns whether it is new (not a retransmission): only
    /// new data starts a request (bytes mode: ends production's exchange).
    pub fn client_data(&mut self, us: u64, seq: u32, payload: &[u8]) -> bool {
        let Self { client, labels, .. } = self;
        let new = client.data(seq, payload, |bytes| {
            if let Some(labels) = labels
                && labels.len() < super::session::MAX_WAITING
            {
                labels.extend(request_lines(bytes));
            }
        });
        let new = match new {
            Ok(new) => new,
            Err(Gap) => {
                // Requests are no longer told apart; the stream goes on.
                *labels = None;
                *client = InOrder::default();
                client.next = Some(seq.wrapping_add(payload.len() as u32));
                true
            }
        };
        if new {
            self.asked_at_us.get_or_insert(us);
        }
        new
    }

    /// The endpoint (`METHOD /path`) of exchange `index`, if known; the
    /// labels of earlier exchanges are dropped.
    pub fn take_label(&mut self, index: u64) -> Option<String> {
        let labels = self.labels.as_mut()?;
        while self.labels_from < index && labels.pop_front().is_some() {
            self.labels_from += 1;
        }
        if self.labels_from != index {
            return None;
        }
        self.labels_from += 1;
        labels.pop_front()
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
        if side.data(seq, payload, &mut push).is_err() {
            *broken = true;
            counts.gaps += 1;
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

    /// tcpcopy sent the target the next request before the answer to the
    /// one before was whole (the target fell behind). HTTP tells the
    /// answers apart by itself; in bytes mode they can no longer be told
    /// apart: the session is left, counted `unaligned`.
    pub fn target_pipelined(&mut self, counts: &mut CompareCounts) {
        if self.mode == CompareMode::Bytes && !self.broken {
            self.broken = true;
            counts.unaligned += 1;
        }
    }

    /// As [`Self::target_pipelined`], for the baseline's session (its part
    /// ends).
    pub fn baseline_pipelined(&mut self) {
        if self.mode == CompareMode::Bytes {
            self.compare.baseline_finish();
        }
    }

    /// Compares what both sides completed.
    pub fn compare_ready(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        on_judged: impl FnMut(Judgement),
    ) {
        if !self.broken {
            self.compare.compare_ready(rules, counts, on_judged);
        }
    }

    /// The session ended: what is left on both sides is complete; what
    /// the baseline has not answered by now is judged without it.
    pub fn finish(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        mut on_judged: impl FnMut(Judgement),
    ) {
        if !self.broken {
            if !(self.production.held.is_empty() && self.target.held.is_empty()) {
                // A hole that never filled: what came after it is lost.
                counts.gaps += 1;
            }
            self.compare.finish();
            self.compare.compare_ready(rules, counts, &mut on_judged);
            self.compare.give_up_baseline(counts, &mut on_judged);
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
        s.compare_ready(&rules, &mut counts, |j| assert!(j.different().is_none()));
        assert_eq!((counts.compared, counts.equal, counts.gaps), (1, 1, 0));
    }

    #[test]
    fn a_hole_or_a_payload_not_sent_whole_leaves_the_session() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.production(&mut counts, true, 999, &[]);
        s.production(&mut counts, false, 1010, &OK[10..]);
        assert_eq!(counts.gaps, 0, "held: the hole may fill yet");
        s.target(&mut counts, false, 50, OK.len(), Some(OK));
        s.finish(&rules, &mut counts, |_| {});
        assert_eq!((counts.compared, counts.gaps), (0, 1), "it never did");
        // More held than the reorder buffer takes: a gap at once.
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.production(&mut counts, true, 999, &[]);
        let big = vec![b'x'; 1000];
        for i in 0..=(REORDER_BYTES / 1000) as u32 {
            s.production(&mut counts, false, 2000 + i * 1000, &big);
        }
        assert_eq!(counts.gaps, 1);

        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.target(&mut counts, false, 50, OK.len(), Some(&OK[..3]));
        s.target(&mut counts, false, 90, 5, None);
        assert_eq!(counts.gaps, 1, "counted once");
    }

    #[test]
    fn request_lines_name_each_exchange_and_retransmissions_add_none() {
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        let two = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\n";
        assert!(s.client_data(10, 100, two));
        assert!(!s.client_data(11, 100, two), "a retransmission");
        assert!(s.client_data(12, 100 + two.len() as u32, b"Content-Length: 0\r\n\r\n"));
        assert!(
            s.client_data(13, 200, b"DELETE /c HTTP/1.1\r\n\r\n"),
            "early: held"
        );
        assert_eq!(s.take_label(2), None, "not before the hole fills");
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        s.client_data(10, 100, two);
        s.client_data(
            20,
            100 + two.len() as u32,
            b"\r\n\r\nPUT /c HTTP/1.1\r\n\r\n",
        );
        assert_eq!(s.take_label(1).as_deref(), Some("POST /b"), "0 skipped");
        assert_eq!(s.take_label(2).as_deref(), Some("PUT /c"));
        assert_eq!(s.take_label(3), None);
        assert!(
            SessionStreams::new(CompareMode::Bytes, 64)
                .take_label(0)
                .is_none(),
            "bytes mode has no endpoints"
        );
    }

    #[test]
    fn segments_reordered_or_retransmitted_make_the_same_stream() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut s = SessionStreams::new(CompareMode::Http, 1 << 16);
        let two: Vec<u8> = [OK, OK].concat();
        // Production's segments in the order two capture CPUs gave them.
        s.production(&mut counts, true, 999, &[]);
        s.production(&mut counts, false, 1020, &two[20..50]);
        s.production(&mut counts, false, 1050, &two[50..]);
        s.production(&mut counts, false, 1000, &two[..20]);
        s.production(&mut counts, false, 1020, &two[20..50]); // again
        s.target(&mut counts, true, 49, 0, None);
        s.target(&mut counts, false, 50, two.len(), Some(&two));
        s.compare_ready(&rules, &mut counts, |j| assert!(j.different().is_none()));
        assert_eq!((counts.compared, counts.equal, counts.gaps), (2, 2, 0));
    }

    proptest::proptest! {
        /// Any order of a stream's segments (some sent twice, the whole
        /// stream within the reorder buffer) makes the stream itself; any
        /// input at all never panics.
        #[test]
        fn any_order_of_the_segments_makes_the_same_stream(
            sizes in proptest::collection::vec(1usize..400, 1..40),
            order in proptest::collection::vec(0usize..1000, 1..80),
            isn in proptest::prelude::any::<u32>(),
        ) {
            let stream: Vec<u8> = (0..sizes.iter().sum::<usize>()).map(|i| (i * 7 + 3) as u8).collect();
            let mut segments = Vec::new();
            let mut at = 0;
            for n in &sizes {
                segments.push((isn.wrapping_add(1).wrapping_add(at as u32), &stream[at..at + n]));
                at += n;
            }
            let mut s = InOrder::default();
            s.syn(isn);
            let mut got = Vec::new();
            // A shuffled prefix of pick-orders, then everything in order.
            for pick in order.iter().map(|o| o % segments.len()).chain(0..segments.len()) {
                let (seq, bytes) = segments[pick];
                proptest::prop_assert!(s.data(seq, bytes, |b| got.extend_from_slice(b)).is_ok());
            }
            proptest::prop_assert_eq!(got, stream);
        }

        #[test]
        fn arbitrary_segments_never_panic(
            segs in proptest::collection::vec(
                (proptest::prelude::any::<u32>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)),
                0..60,
            ),
        ) {
            let mut s = InOrder::default();
            let mut total = 0usize;
            for (seq, bytes) in &segs {
                let _ = s.data(*seq, bytes, |b| total += b.len());
                let _ = request_lines(bytes).count();
            }
            proptest::prop_assert!(s.held_bytes <= REORDER_BYTES);
        }
    }
}
