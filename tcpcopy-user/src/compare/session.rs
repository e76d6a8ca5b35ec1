//! One session's comparison: production's and the target's response
//! streams side by side, their n-th exchanges compared as soon as both are
//! complete.

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
        } = self
            && (!current.is_empty() || *truncated)
        {
            done.push_back((std::mem::take(current), std::mem::take(truncated)));
        }
    }

    fn finish(&mut self) {
        match self {
            Self::Http(s) => s.finish(),
            Self::Bytes { .. } => self.end_exchange(),
        }
    }
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

/// One side of an exchange as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    Http(HttpResponse),
    Bytes(Vec<u8>),
}

/// Exchanges one side may have complete while the other has not caught
/// up; beyond, the session is left (its memory is bounded).
pub const MAX_WAITING: usize = 256;

/// One session's comparison.
#[derive(Debug)]
pub struct SessionCompare {
    cap: usize,
    production: Side,
    target: Side,
    compared: u64,
    unparsed_counted: bool,
}

impl SessionCompare {
    /// Responses are kept and compared up to `cap` bytes each.
    pub fn new(mode: CompareMode, cap: usize) -> Self {
        Self {
            cap,
            production: Side::new(mode, cap),
            target: Side::new(mode, cap),
            compared: 0,
            unparsed_counted: false,
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

    /// The session ended on both sides: what is left is complete.
    pub fn finish(&mut self) {
        self.production.finish();
        self.target.finish();
    }

    /// Compares every exchange complete on both sides; counts each into
    /// `counts` and hands the different ones to `on_different`.
    pub fn compare_ready(
        &mut self,
        rules: &IgnoreRules,
        counts: &mut CompareCounts,
        mut on_different: impl FnMut(DifferentExchange),
    ) {
        loop {
            let pair = match (&mut self.production, &mut self.target) {
                (Side::Http(p), Side::Http(t)) => {
                    if !self.unparsed_counted && (p.failure().is_some() || t.failure().is_some()) {
                        self.unparsed_counted = true;
                        counts.unparsed += 1;
                        // Neither side is compared any more: free both.
                        p.abandon("the other side is not HTTP");
                        t.abandon("the other side is not HTTP");
                    }
                    if self.unparsed_counted {
                        return;
                    }
                    if p.waiting().max(t.waiting()) > MAX_WAITING {
                        self.unparsed_counted = true;
                        counts.gaps += 1;
                        p.abandon("the other side fell too far behind");
                        t.abandon("the other side fell too far behind");
                        return;
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
                            return;
                        }
                        (None, Some(b)) => {
                            t.unpop(b);
                            return;
                        }
                        (None, None) => return,
                    }
                }
                (Side::Bytes { done: p, .. }, Side::Bytes { done: t, .. }) => {
                    if p.len().max(t.len()) > MAX_WAITING {
                        p.clear();
                        t.clear();
                        counts.gaps += 1;
                        return;
                    }
                    if p.is_empty() || t.is_empty() {
                        return;
                    }
                    let (a, at) = p.pop_front().expect("checked");
                    let (b, bt) = t.pop_front().expect("checked");
                    (
                        compare_bytes(&a, &b),
                        at || bt,
                        Exchange::Bytes(a),
                        Exchange::Bytes(b),
                    )
                }
                _ => return,
            };
            let (outcome, truncated, production, target) = pair;
            if truncated {
                counts.truncated += 1;
            }
            counts.record(&outcome);
            if let Outcome::Different(differences) = outcome {
                on_different(DifferentExchange {
                    index: self.compared,
                    differences,
                    production,
                    target,
                });
            }
            self.compared += 1;
        }
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
        s.compare_ready(&rules, &mut counts, |d| diffs.push(d));
        assert_eq!(counts.compared, 0, "nothing from the target yet");
        s.target(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Oops\r\n");
        s.compare_ready(&rules, &mut counts, |d| diffs.push(d));
        assert_eq!((counts.compared, counts.equal), (1, 1));
        s.target(b"Content-Length: 2\r\n\r\nno");
        s.compare_ready(&rules, &mut counts, |d| diffs.push(d));
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
        assert_eq!(counts.gaps, 1);
        s.production(b"HTTP/1.1 204 No Content\r\n\r\n");
        s.target(b"HTTP/1.1 204 No Content\r\n\r\n");
        s.compare_ready(&rules, &mut counts, |_| {});
        assert_eq!((counts.gaps, counts.compared), (1, 0), "left for good");
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
}
