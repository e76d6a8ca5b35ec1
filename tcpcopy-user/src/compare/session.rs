//! One session's comparison: production's and the target's response
//! streams side by side, their n-th exchanges compared as soon as both are
//! complete.
//!
//! With a baseline (`--compare-baseline`: the same session replayed to a
//! second copy of production's build), a differing exchange waits for the
//! baseline's answer to the same request: the differences the baseline
//! shows too, at the same place (status, header, JSON field, body), are
//! noise of production's own build (timestamps, ids, orderings) and are
//! left out; an exchange left with none counts as noise, not different.
//! One the baseline never answers is judged without it (`unconfirmed`).

use std::collections::VecDeque;

use super::{
    CompareCounts, CompareMode, Difference, IgnoreRules, Outcome, compare_bytes, diff,
    http::{HttpResponse, ResponseStream},
};

/// The responses of one side of one session.
#[derive(Debug)]
enum Side {
    Http(ResponseStream),
    Bytes {
        current: Vec<u8>,
        truncated: bool,
        done: VecDeque<(Vec<u8>, bool)>,
        /// Bytes the `done` exchanges hold.
        done_bytes: usize,
    },
}

impl Side {
    fn new(mode: CompareMode, cap: usize) -> Self {
        match mode {
            CompareMode::Http => Self::Http(ResponseStream::new(cap)),
            CompareMode::Bytes => Self::Bytes {
                current: Vec::new(),
                truncated: false,
                done: VecDeque::new(),
                done_bytes: 0,
            },
        }
    }

    fn push(&mut self, bytes: &[u8], cap: usize) {
        match self {
            Self::Http(s) => s.push(bytes),
            Self::Bytes {
                current, truncated, ..
            } => {
                let room = cap.saturating_sub(current.len());
                *truncated |= bytes.len() > room;
                current.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
    }

    /// Bytes mode: the exchange's response is over (the next request
    /// started, or the session ended).
    fn end_exchange(&mut self) {
        if let Self::Bytes {
            current,
            truncated,
            done,
            done_bytes,
        } = self
            && (!current.is_empty() || *truncated)
        {
            *done_bytes += current.len();
            done.push_back((std::mem::take(current), std::mem::take(truncated)));
        }
    }

    fn finish(&mut self) {
        match self {
            Self::Http(s) => s.finish(),
            Self::Bytes { .. } => self.end_exchange(),
        }
    }

    /// The next complete exchange (`None`: none yet).
    fn pop_exchange(&mut self) -> Option<Exchange> {
        match self {
            Self::Http(s) => s.pop().map(Exchange::Http),
            Self::Bytes {
                done, done_bytes, ..
            } => done.pop_front().map(|(b, _)| {
                *done_bytes -= b.len();
                Exchange::Bytes(b)
            }),
        }
    }

    /// Memory the complete exchanges waiting take, about.
    fn waiting_bytes(&self) -> usize {
        match self {
            Self::Http(s) => s.waiting_bytes(),
            Self::Bytes {
                done, done_bytes, ..
            } => *done_bytes + done.len() * 32,
        }
    }

    /// The other side fell so far behind that this one's complete
    /// exchanges are not kept any longer (bounded memory).
    fn too_far_ahead(&self) -> bool {
        self.waiting() > MAX_WAITING || self.waiting_bytes() > MAX_WAITING_BYTES
    }

    /// Drops what is kept and ignores the rest.
    fn abandon(&mut self, why: &str) {
        match self {
            Self::Http(s) => s.abandon(why),
            Self::Bytes {
                current,
                done,
                done_bytes,
                ..
            } => {
                current.clear();
                done.clear();
                *done_bytes = 0;
            }
        }
    }

    /// Complete exchanges waiting.
    fn waiting(&self) -> usize {
        match self {
            Self::Http(s) => s.waiting(),
            Self::Bytes { done, .. } => done.len(),
        }
    }

    /// The stream could not be parsed: it yields nothing more.
    fn failed(&self) -> bool {
        matches!(self, Self::Http(s) if s.failure().is_some())
    }
}

/// `--compare-baseline`: the baseline's side of a session.
#[derive(Debug)]
struct Baseline {
    side: Side,
    /// The baseline's session ended (or its stream broke): no more answers.
    done: bool,
    /// Index of the baseline's next exchange.
    next: u64,
    /// Differing exchanges waiting for the baseline's answer, oldest first.
    pending: VecDeque<DifferentExchange>,
}

/// An exchange that compared different, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DifferentExchange {
    /// 0 for the session's first exchange.
    pub index: u64,
    pub differences: Vec<Difference>,
    pub production: Exchange,
    pub target: Exchange,
}

/// How one exchange was judged (every compared exchange is, once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    Equal {
        index: u64,
        status: Option<u16>,
    },
    /// `--compare-baseline`: every difference was the baseline's too.
    Noise {
        index: u64,
        status: Option<u16>,
    },
    Different(DifferentExchange),
}

impl Judgement {
    /// The exchange's place in its session (0 for the first).
    pub fn index(&self) -> u64 {
        match self {
            Self::Equal { index, .. } | Self::Noise { index, .. } => *index,
            Self::Different(d) => d.index,
        }
    }

    /// Production's status (HTTP).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Equal { status, .. } | Self::Noise { status, .. } => *status,
            Self::Different(d) => d.production.status(),
        }
    }

    pub fn different(self) -> Option<DifferentExchange> {
        match self {
            Self::Different(d) => Some(d),
            _ => None,
        }
    }
}

/// One side of an exchange as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    Http(HttpResponse),
    Bytes(Vec<u8>),
}

impl Exchange {
    /// Memory the exchange takes, about.
    pub fn size(&self) -> usize {
        match self {
            Self::Http(r) => r.size(),
            Self::Bytes(b) => b.len() + 32,
        }
    }

    /// The status of an HTTP response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http(r) => Some(r.status),
            Self::Bytes(_) => None,
        }
    }
}

/// Exchanges one side may have complete while the other has not caught
/// up (a replay lags production by seconds under load, a few thousand
/// exchanges of a busy keep-alive connection); beyond, or beyond
/// [`MAX_WAITING_BYTES`], the session is left (counted `behind`).
pub const MAX_WAITING: usize = 65_536;
/// Bytes one side's complete exchanges may hold while the other has not
/// caught up (the engine bounds all sessions' together too: see
/// `CompareSettings::memory`).
pub const MAX_WAITING_BYTES: usize = 64 << 20;

/// One session's comparison.
#[derive(Debug)]
pub struct SessionCompare {
    cap: usize,
    production: Side,
    target: Side,
    baseline: Option<Baseline>,
    compared: u64,
    /// The session is left for good (not HTTP, or one side too far
    /// behind): nothing more is compared.
    left: bool,
}

impl SessionCompare {
    /// Responses are kept and compared up to `cap` bytes each.
    pub fn new(mode: CompareMode, cap: usize) -> Self {
        Self {
            cap,
            production: Side::new(mode, cap),
            target: Side::new(mode, cap),
            baseline: None,
            compared: 0,
            left: false,
        }
    }

    /// `--compare-baseline`: the session is replayed to the baseline too;
    /// differing exchanges wait for its answers.
    pub fn with_baseline(mut self, mode: CompareMode) -> Self {
        self.baseline = Some(Baseline {
            side: Side::new(mode, self.cap),
            done: false,
            next: 0,
            pending: VecDeque::new(),
        });
        self
    }

    /// Bytes the baseline sent, in sequence order.
    pub fn baseline(&mut self, bytes: &[u8]) {
        if let Some(b) = &mut self.baseline
            && !b.done
        {
            b.side.push(bytes, self.cap);
        }
    }

    /// Bytes mode: the baseline's response to the current request is over.
    pub fn baseline_exchange_end(&mut self) {
        if let Some(b) = &mut self.baseline {
            b.side.end_exchange();
        }
    }

    /// The baseline's session ended (or its stream broke): what it sent
    /// is all there will be.
    pub fn baseline_finish(&mut self) {
        if let Some(b) = &mut self.baseline
            && !b.done
        {
            b.side.finish();
            b.done = true;
        }
    }

    /// Bytes production's server sent, in sequence order.
    pub fn production(&mut self, bytes: &[u8]) {
        self.production.push(bytes, self.cap);
    }

    /// Bytes the target sent, in sequence order.
    pub fn target(&mut self, bytes: &[u8]) {
        self.target.push(bytes, self.cap);
    }

    /// Bytes mode: production's response to the current request is over.
    pub fn production_exchange_end(&mut self) {
        self.production.end_exchange();
    }

    /// Bytes mode: the target's response to the current request is over.
    pub fn target_exchange_end(&mut self) {
        self.target.end_exchange();
    }

    /// The session ended on both sides: what is left is complete. (The
    /// baseline's answers still missing then are not waited for.)
    pub fn finish(&mut self) {
        self.production.finish();
        self.target.finish();
    }

    /// Memory the session's kept exchanges take, about (both sides, the
    /// baseline's, and differing exchanges waiting for it).
    pub fn waiting_bytes(&self) -> usize {
        let baseline = self.baseline.as_ref().map_or(0, |b| {
            b.side.waiting_bytes()
                + b.pending
                    .iter()
                    .map(|d| d.production.size() + d.target.size())
                    .sum::<usize>()
        });
        self.production.waiting_bytes() + self.target.waiting_bytes() + baseline
    }

    /// The engine's memory for comparisons ran out: the session is left
    /// (counted `behind`), its memory freed.
    pub fn leave(&mut self, counts: &mut CompareCounts) {
        if self.left {
            return;
        }
        self.left = true;
        counts.behind += 1;
        self.production.abandon("out of comparison memory");
        self.target.abandon("out of comparison memory");
        if let Some(b) = &mut self.baseline {
            b.done = true;
            b.side.abandon("out of comparison memory");
            b.pending.clear();
        }
    }

    /// Differing exchanges wait for the baseline's answers (or production
    /// and the target have exchanges left that may differ).
    pub fn awaits_baseline(&self) -> bool {
        self.baseline.as_ref().is_some_and(|b| {
            !b.done
                && (!b.pending.is_empty()
                    || self.production.waiting() > 0
                    || self.target.waiting() > 0)
        })
    }

    /// Differing exchanges still waiting for the baseline are judged
    /// without it.
    pub fn give_up_baseline(
        &mut self,
        counts: &mut CompareCounts,
        on_judged: &mut impl FnMut(Judgement),
    ) {
        if let Some(b) = &mut self.baseline {
            b.done = true;
            while let Some(d) = b.pending.pop_front() {
                Self::unconfirmed(d, counts, on_judged);
            }
        }
    }

    fn unconfirmed(
        d: DifferentExchange,
        counts: &mut CompareCounts,
        on_judged: &mut impl FnMut(Judgement),
    ) {
        counts.record(&Outcome::Different(d.differences.clone()));
        counts.unconfirmed += 1;
        on_judged(Judgement::Different(d));
    }

    /// Takes the baseline's answers to exchanges already compared: each
    /// waiting differing exchange is judged against its baseline answer;
    /// answers to exchanges that were equal are dropped.
    fn judge_with_baseline(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        on_judged: &mut impl FnMut(Judgement),
    ) {
        let compared = self.compared;
        let Some(b) = &mut self.baseline else { return };
        if b.side.failed() {
            b.done = true;
        }
        while b.next < compared {
            let Some(answer) = b.side.pop_exchange() else {
                break;
            };
            let index = b.next;
            b.next += 1;
            if b.pending.front().is_none_or(|d| d.index != index) {
                continue;
            }
            let mut d = b.pending.pop_front().expect("looked at above");
            let baseline_outcome = match (&d.production, &answer) {
                (Exchange::Http(p), Exchange::Http(a)) => diff::compare_http(p, a, rules),
                (Exchange::Bytes(p), Exchange::Bytes(a)) => compare_bytes(p, a),
                _ => Outcome::Equal,
            };
            if let Outcome::Different(noisy) = baseline_outcome {
                d.differences
                    .retain(|t| !noisy.iter().any(|n| t.same_place(n)));
            }
            if d.differences.is_empty() {
                counts.record_noise();
                on_judged(Judgement::Noise {
                    index: d.index,
                    status: d.production.status(),
                });
            } else {
                counts.record(&Outcome::Different(d.differences.clone()));
                on_judged(Judgement::Different(d));
            }
        }
        // Bounded: beyond, or once the baseline has no more to say.
        let exhausted = b.done && b.side.waiting() == 0;
        while b.pending.len() > MAX_WAITING || exhausted && !b.pending.is_empty() {
            let d = b.pending.pop_front().expect("not empty");
            Self::unconfirmed(d, counts, on_judged);
        }
        if b.side.too_far_ahead() {
            // The baseline ran too far ahead of the target: leave it.
            b.done = true;
            b.side.abandon("the target fell too far behind");
            while let Some(d) = b.pending.pop_front() {
                Self::unconfirmed(d, counts, on_judged);
            }
        }
    }

    /// Compares every exchange complete on both sides; counts each into
    /// `counts` and hands each one's judgement to `on_judged`.
    pub fn compare_ready(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        mut on_judged: impl FnMut(Judgement),
    ) {
        loop {
            if self.left {
                break;
            }
            if self.production.too_far_ahead() || self.target.too_far_ahead() {
                // Left for good, memory freed.
                self.left = true;
                counts.behind += 1;
                self.production
                    .abandon("the other side fell too far behind");
                self.target.abandon("the other side fell too far behind");
                break;
            }
            let pair = match (&mut self.production, &mut self.target) {
                (Side::Http(p), Side::Http(t)) => {
                    if !self.left && (p.failure().is_some() || t.failure().is_some()) {
                        self.left = true;
                        counts.unparsed += 1;
                        // Neither side is compared any more: free both.
                        p.abandon("the other side is not HTTP");
                        t.abandon("the other side is not HTTP");
                    }
                    if self.left {
                        break;
                    }
                    // Pop only when both have one, so none is lost.
                    match (p.pop(), t.pop()) {
                        (Some(a), Some(b)) => {
                            let outcome = diff::compare_http(&a, &b, rules);
                            let truncated = a.truncated || b.truncated;
                            (outcome, truncated, Exchange::Http(a), Exchange::Http(b))
                        }
                        (Some(a), None) => {
                            p.unpop(a);
                            break;
                        }
                        (None, Some(b)) => {
                            t.unpop(b);
                            break;
                        }
                        (None, None) => break,
                    }
                }
                (
                    Side::Bytes {
                        done: p,
                        done_bytes: pb,
                        ..
                    },
                    Side::Bytes {
                        done: t,
                        done_bytes: tb,
                        ..
                    },
                ) => {
                    if p.is_empty() || t.is_empty() {
                        break;
                    }
                    let (a, at) = p.pop_front().expect("checked");
                    let (b, bt) = t.pop_front().expect("checked");
                    *pb -= a.len();
                    *tb -= b.len();
                    (
                        compare_bytes(&a, &b),
                        at || bt,
                        Exchange::Bytes(a),
                        Exchange::Bytes(b),
                    )
                }
                _ => break,
            };
            let (outcome, truncated, production, target) = pair;
            if truncated {
                counts.truncated += 1;
            }
            match outcome {
                Outcome::Equal => {
                    counts.record(&outcome);
                    on_judged(Judgement::Equal {
                        index: self.compared,
                        status: production.status(),
                    });
                }
                Outcome::Different(differences) => {
                    let d = DifferentExchange {
                        index: self.compared,
                        differences,
                        production,
                        target,
                    };
                    match &mut self.baseline {
                        // (Judged when its answer is taken, or unconfirmed
                        // once the baseline has none left.)
                        Some(b) => b.pending.push_back(d),
                        None => {
                            counts.record(&Outcome::Different(d.differences.clone()));
                            on_judged(Judgement::Different(d));
                        }
                    }
                }
            }
            self.compared += 1;
        }
        self.judge_with_baseline(rules, counts, &mut on_judged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_exchanges_pair_up_in_order_whichever_side_is_first() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut diffs = Vec::new();
        let mut s = SessionCompare::new(CompareMode::Http, 1 << 16);
        s.production(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        s.production(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(counts.compared, 0, "nothing from the target yet");
        s.target(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Oops\r\n");
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!((counts.compared, counts.equal), (1, 1));
        s.target(b"Content-Length: 2\r\n\r\nno");
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(
            (
                counts.compared,
                counts.different,
                counts.status,
                counts.body
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].index, 1);
    }

    #[test]
    fn bytes_exchanges_end_where_the_caller_says() {
        let rules = IgnoreRules::default();
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Bytes, 6);
        s.production(b"+OK\r\n");
        s.production_exchange_end();
        s.target(b"+OK\r");
        s.target(b"\n");
        s.target_exchange_end();
        s.production(b"$1\r\na\r\n");
        s.target(b"$1\r\nb\r\n");
        s.finish();
        s.compare_ready(&rules, &mut counts, |_| {});
        assert_eq!(counts.compared, 2);
        assert_eq!(
            counts.truncated, 1,
            "the second is longer than the 6-byte cap"
        );
        assert_eq!(counts.equal, 1);
        assert_eq!(counts.different, 1, "their first 6 bytes differ");
    }

    #[test]
    fn a_side_that_never_answers_costs_bounded_memory() {
        let rules = IgnoreRules::default();
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Http, 100);
        for _ in 0..=MAX_WAITING {
            s.production(b"HTTP/1.1 204 No Content\r\n\r\n");
            s.compare_ready(&rules, &mut counts, |_| {});
        }
        assert_eq!(counts.behind, 1);
        s.production(b"HTTP/1.1 204 No Content\r\n\r\n");
        s.target(b"HTTP/1.1 204 No Content\r\n\r\n");
        s.compare_ready(&rules, &mut counts, |_| {});
        assert_eq!((counts.behind, counts.compared), (1, 0), "left for good");
        // Or by bytes: a few large answers the target has not given yet.
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Bytes, 1 << 20);
        for _ in 0..=MAX_WAITING_BYTES >> 20 {
            s.production(&[b'x'; 1 << 20]);
            s.production_exchange_end();
            s.compare_ready(&rules, &mut counts, |_| {});
        }
        assert_eq!(counts.behind, 1, "over {MAX_WAITING_BYTES} bytes kept");
    }

    #[test]
    fn a_stream_that_is_not_http_is_counted_once_and_left() {
        let rules = IgnoreRules::default();
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Http, 100);
        s.production(b"+OK\r\n");
        s.target(b"+OK\r\n");
        s.compare_ready(&rules, &mut counts, |_| {});
        s.compare_ready(&rules, &mut counts, |_| {});
        assert_eq!((counts.unparsed, counts.compared), (1, 0));
    }

    fn resp(status: u16, req_id: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} X\r\nX-Req: {req_id}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn what_the_baseline_shows_too_is_noise_and_the_rest_a_regression() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut diffs = Vec::new();
        let mut s =
            SessionCompare::new(CompareMode::Http, 1 << 16).with_baseline(CompareMode::Http);
        // 0: only the per-request id differs, at the baseline too: noise.
        // 1: the id and the status differ; the baseline only has the id.
        // 2: equal at the target: the baseline's answer is not needed.
        // 3: the body differs; the baseline is equal: a regression.
        s.production(&resp(200, "p0", "a"));
        s.production(&resp(200, "p1", "b"));
        s.production(&resp(200, "p2", "c"));
        s.production(&resp(200, "p3", "d"));
        s.target(&resp(200, "t0", "a"));
        s.target(&resp(500, "t1", "b"));
        s.target(&resp(200, "p2", "c"));
        s.target(&resp(200, "p3", "X"));
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(
            (counts.compared, counts.equal, counts.different),
            (1, 1, 0),
            "the differing ones wait for the baseline"
        );
        // The baseline answers later (a slower copy).
        s.baseline(&resp(200, "b0", "a"));
        s.baseline(&resp(200, "b1", "b"));
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!((counts.noise, counts.different), (1, 1));
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].index, 1);
        assert_eq!(diffs[0].differences.len(), 1, "the id left out: {diffs:?}");
        assert_eq!(diffs[0].differences[0].kind(), "status");
        s.baseline(&resp(200, "p2", "c"));
        s.baseline(&resp(200, "p3", "d"));
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(
            (
                counts.compared,
                counts.equal,
                counts.different,
                counts.noise
            ),
            (4, 1, 2, 1)
        );
        assert_eq!((counts.status, counts.header, counts.body), (1, 0, 1));
        assert_eq!(counts.unconfirmed, 0);
    }

    #[test]
    fn a_baseline_that_never_answers_leaves_differences_unconfirmed() {
        let rules = IgnoreRules::with_defaults();
        let mut counts = CompareCounts::default();
        let mut diffs = Vec::new();
        let mut s =
            SessionCompare::new(CompareMode::Http, 1 << 16).with_baseline(CompareMode::Http);
        s.production(&resp(200, "p0", "a"));
        s.target(&resp(200, "t0", "a"));
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(counts.compared, 0);
        s.baseline_finish();
        s.compare_ready(&rules, &mut counts, |j| diffs.extend(j.different()));
        assert_eq!(
            (counts.compared, counts.different, counts.unconfirmed),
            (1, 1, 1)
        );
        assert_eq!(diffs.len(), 1);
        // Or the session ends first.
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Bytes, 64).with_baseline(CompareMode::Bytes);
        s.production(b"+1\r\n");
        s.production_exchange_end();
        s.target(b"+2\r\n");
        s.target_exchange_end();
        s.finish();
        s.compare_ready(&rules, &mut counts, |_| {});
        s.give_up_baseline(&mut counts, &mut |_| {});
        assert_eq!((counts.different, counts.unconfirmed), (1, 1));
    }

    #[test]
    fn bytes_exchanges_use_the_baseline_too() {
        let rules = IgnoreRules::default();
        let mut counts = CompareCounts::default();
        let mut s = SessionCompare::new(CompareMode::Bytes, 64).with_baseline(CompareMode::Bytes);
        for (p, t, b) in [(&b"+a"[..], &b"+x"[..], &b"+y"[..]), (b"+c", b"+z", b"+c")] {
            s.production(p);
            s.production_exchange_end();
            s.target(t);
            s.target_exchange_end();
            s.baseline(b);
            s.baseline_exchange_end();
        }
        s.compare_ready(&rules, &mut counts, |_| {});
        assert_eq!((counts.compared, counts.noise, counts.different), (2, 1, 1));
    }
}
