//! `--compare` inside the engine: each session's [`SessionStreams`], fed
//! with production's server segments (from the capture file) and the
//! target's reply payloads (from intercept), compared as exchanges
//! complete, finished when the session ends. In bytes mode an exchange
//! ends, in production, when the capture holds the client's next data,
//! and at the target when the engine starts the next request there. Counts go to the
//! engine's statistics (`compared`, `compare_*`); the first differences are
//! logged with what differed.

use std::{collections::HashMap, net::SocketAddr};

use crate::{
    compare::{
        CompareCounts, Difference,
        report::EndpointCounts,
        session::{DifferentExchange, Exchange, Judgement},
        streams::SessionStreams,
    },
    packet::{Address, TcpPacket},
};

use super::{BASELINE_COPY, Endpoint, Engine, Instant, config::CompareSettings, reply::Reply};

/// Differences logged per engine at most (the counters have them all).
const LOGGED_DIFFERENCES: u32 = 20;
/// Differences waiting for the worker to write them, at most (a worker
/// drains them every turn; beyond, they are counted, not kept).
const PENDING_RECORDS: usize = 4096;
/// Body bytes a report record shows of each side.
const EXCERPT: usize = 2048;
/// Endpoints counted apart between two takes by the worker (beyond, as
/// `(other)`).
const MAX_ENDPOINTS: usize = 1024;

/// A session's streams, and its endpoints (for the report).
struct Tracked {
    client: SocketAddr,
    target: SocketAddr,
    streams: SessionStreams,
}

/// Which streams: an open session's, or (`--compare-baseline`) those of a
/// session that ended while its baseline session had answers to give,
/// kept under that baseline session's index until it ends too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streams {
    Open(u32),
    Closing(u32),
}

/// The engine's comparison state.
pub(super) struct Comparing {
    settings: CompareSettings,
    sessions: HashMap<u32, Tracked>,
    /// `--compare-baseline`: baseline session -> the session it mirrors
    /// (whose streams hold the baseline's answers).
    baselines: HashMap<u32, u32>,
    /// `--compare-baseline`: streams of ended sessions, by the index of
    /// their (still open) baseline session.
    closing: HashMap<u32, Tracked>,
    counts: CompareCounts,
    logged: u32,
    /// `--compare-report`: differing exchanges as JSON lines, for the worker.
    records: Vec<String>,
    /// Memory all sessions' streams keep (see `CompareSettings::memory`).
    kept: usize,
    /// `--compare-report`: judged exchanges by (endpoint, production's
    /// status) since the worker last took them.
    endpoints: HashMap<(String, u16), EndpointCounts>,
    pub(super) records_dropped: u64,
}

impl Comparing {
    pub(super) fn new(settings: CompareSettings) -> Self {
        Self {
            settings,
            sessions: HashMap::new(),
            baselines: HashMap::new(),
            closing: HashMap::new(),
            counts: CompareCounts::default(),
            logged: 0,
            records: Vec::new(),
            endpoints: HashMap::new(),
            kept: 0,
            records_dropped: 0,
        }
    }

    /// `--compare-baseline`: where sessions are replayed a second time.
    pub(super) fn baseline(&self) -> Option<SocketAddr> {
        self.settings.baseline
    }

    /// `--compare-report`: one more judged exchange of `endpoint`.
    fn count_endpoint(&mut self, endpoint: Option<&str>, j: &Judgement) {
        if self.settings.report_dir.is_none() {
            return;
        }
        let key = (
            endpoint.unwrap_or("(no request line)").to_owned(),
            j.status().unwrap_or(0),
        );
        let key = if self.endpoints.len() >= MAX_ENDPOINTS && !self.endpoints.contains_key(&key) {
            ("(other)".to_owned(), 0)
        } else {
            key
        };
        let e = self.endpoints.entry(key).or_default();
        e.compared += 1;
        match j {
            Judgement::Equal { .. } => e.equal += 1,
            Judgement::Noise { .. } => e.noise += 1,
            Judgement::Different(_) => e.different += 1,
        }
    }

    fn record(
        &mut self,
        client: SocketAddr,
        target: SocketAddr,
        endpoint: Option<&str>,
        d: &DifferentExchange,
    ) {
        if self.settings.report_dir.is_none() {
            return;
        }
        if self.records.len() >= PENDING_RECORDS {
            self.records_dropped += 1;
            return;
        }
        let side = |e: &Exchange| match e {
            Exchange::Http(r) => serde_json::json!({
                "status": r.status,
                "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body[..r.body.len().min(EXCERPT)]),
                "body_len": r.body.len(),
                "truncated": r.truncated,
            }),
            Exchange::Bytes(b) => serde_json::json!({
                "bytes": String::from_utf8_lossy(&b[..b.len().min(EXCERPT)]),
                "len": b.len(),
            }),
        };
        let line = serde_json::json!({
            "client": client.to_string(),
            "target": target.to_string(),
            "endpoint": endpoint,
            "exchange": d.index,
            "differences": d.differences.iter().map(describe).collect::<Vec<_>>(),
            "kinds": d.differences.iter().map(Difference::kind).collect::<Vec<_>>(),
            "production": side(&d.production),
            "target_response": side(&d.target),
        });
        self.records.push(line.to_string());
    }

    fn log(&mut self, client: SocketAddr, d: &DifferentExchange) {
        if self.logged >= LOGGED_DIFFERENCES {
            return;
        }
        self.logged += 1;
        let what: Vec<String> = d.differences.iter().map(describe).collect();
        tracing::warn!(
            %client,
            exchange = d.index,
            "response differs from production's: {}{}",
            what.join("; "),
            if self.logged == LOGGED_DIFFERENCES {
                " (further differences are counted, not logged)"
            } else {
                ""
            }
        );
    }
}

fn describe(d: &Difference) -> String {
    match d {
        Difference::Status { production, target } => {
            format!("status {production} in production, {target} at the target")
        }
        Difference::Header {
            name,
            production,
            target,
        } => {
            let value =
                |v: &Option<String>| v.as_ref().map_or("absent".into(), |v| format!("{v:?}"));
            format!(
                "header {name}: {} in production, {} at the target",
                value(production),
                value(target)
            )
        }
        Difference::JsonField { path } => format!("JSON body differs at `{path}`"),
        Difference::Bytes {
            offset,
            production_len,
            target_len,
        } => format!(
            "body differs from byte {offset} ({production_len} bytes in production, {target_len} \
             at the target)"
        ),
    }
}

impl<A: Address> Engine<A> {
    /// `--compare-report`: the differing exchanges found since the last
    /// call, as JSON lines.
    pub fn take_compare_records(&mut self) -> Vec<String> {
        self.compare
            .as_mut()
            .map(|c| std::mem::take(&mut c.records))
            .unwrap_or_default()
    }

    /// `--compare-report`: the exchanges judged since the last call, by
    /// (endpoint, production's status).
    pub fn take_endpoint_counts(&mut self) -> HashMap<(String, u16), EndpointCounts> {
        self.compare
            .as_mut()
            .map(|c| std::mem::take(&mut c.endpoints))
            .unwrap_or_default()
    }

    /// The comparison's totals (`--compare`).
    pub fn compare_counts(&self) -> Option<CompareCounts> {
        self.compare.as_ref().map(|c| c.counts)
    }

    /// Copies the comparison counters into the statistics.
    fn sync_compare_stats(&mut self) {
        let Some(c) = &self.compare else { return };
        let (k, s) = (&c.counts, &mut self.stats);
        s.compared = k.compared;
        s.compare_equal = k.equal;
        s.compare_different = k.different;
        s.compare_status = k.status;
        s.compare_header = k.header;
        s.compare_body = k.body;
        s.compare_truncated = k.truncated;
        s.compare_unparsed = k.unparsed;
        s.compare_gaps = k.gaps;
        s.compare_noise = k.noise;
        s.compare_unconfirmed = k.unconfirmed;
        s.compare_unaligned = k.unaligned;
        s.compare_behind = k.behind;
    }

    /// A new session gets its streams; a baseline session is tied to the
    /// session it mirrors.
    pub(super) fn compare_open(&mut self, idx: u32) {
        if self.compare.is_none() {
            return;
        }
        let (origin, copy, client, target) = match self.sessions.get(idx) {
            Some(s) => (s.origin, s.copy, s.client, s.target),
            None => return,
        };
        let primary = (copy & BASELINE_COPY != 0)
            .then(|| self.find_origin(origin, copy & !BASELINE_COPY))
            .flatten();
        let Some(c) = &mut self.compare else { return };
        if copy & BASELINE_COPY != 0 {
            if let Some(p) = primary.filter(|p| c.sessions.contains_key(p)) {
                c.baselines.insert(idx, p);
                self.stats.baseline_sessions += 1;
            }
            return;
        }
        let Some(mode) = c
            .settings
            .modes
            .iter()
            .find(|(t, _)| *t == target.to_socket())
            .map(|(_, m)| *m)
        else {
            return;
        };
        let mut streams = SessionStreams::new(mode, c.settings.cap);
        if c.settings.baseline.is_some() {
            streams = streams.with_baseline(mode);
        }
        c.sessions.insert(
            idx,
            Tracked {
                client: client.to_socket(),
                target: target.to_socket(),
                streams,
            },
        );
    }

    /// The streams that take session `idx`'s answers, and whether `idx` is
    /// a baseline session.
    fn streams_of(&self, idx: u32) -> Option<(Streams, bool)> {
        let c = self.compare.as_ref()?;
        Some(if c.closing.contains_key(&idx) {
            (Streams::Closing(idx), true)
        } else if let Some(&primary) = c.baselines.get(&idx) {
            (Streams::Open(primary), true)
        } else {
            (Streams::Open(idx), false)
        })
    }

    /// Runs `f` on session `idx`'s streams, then compares what is ready.
    fn with_streams(
        &mut self,
        idx: u32,
        finish: bool,
        f: impl FnOnce(&mut SessionStreams, &mut CompareCounts),
    ) {
        self.with(Streams::Open(idx), finish, f);
    }

    /// Runs `f` on `which` streams, then compares what is ready; `finish`:
    /// the streams are done (compared to the end, and dropped).
    fn with(
        &mut self,
        which: Streams,
        finish: bool,
        f: impl FnOnce(&mut SessionStreams, &mut CompareCounts),
    ) {
        let Some(c) = &mut self.compare else { return };
        let mut different = Vec::new();
        let Comparing {
            sessions,
            closing,
            counts,
            settings,
            kept,
            ..
        } = &mut **c;
        let (map, idx) = match which {
            Streams::Open(i) => (sessions, i),
            Streams::Closing(i) => (closing, i),
        };
        let label = |t: &mut Tracked, judged: Vec<Judgement>| -> Vec<(Judgement, Option<String>)> {
            judged
                .into_iter()
                .map(|j| {
                    let l = t.streams.take_label(j.index());
                    (j, l)
                })
                .collect()
        };
        let (client, target, judged) = if finish {
            let Some(mut t) = map.remove(&idx) else {
                return;
            };
            *kept = kept.saturating_sub(t.streams.waiting_bytes());
            f(&mut t.streams, counts);
            t.streams
                .finish(&settings.rules, counts, |j| different.push(j));
            let judged = label(&mut t, different);
            (t.client, t.target, judged)
        } else {
            let Some(t) = map.get_mut(&idx) else {
                return;
            };
            let before = t.streams.waiting_bytes();
            f(&mut t.streams, counts);
            t.streams
                .compare_ready(&settings.rules, counts, |j| different.push(j));
            let mut after = t.streams.waiting_bytes();
            if after > before && kept.saturating_sub(before) + after > settings.memory {
                // Out of comparison memory: the session that grows goes.
                t.streams.leave(counts);
                after = t.streams.waiting_bytes();
            }
            *kept = kept.saturating_sub(before) + after;
            let judged = label(t, different);
            (t.client, t.target, judged)
        };
        for (j, endpoint) in judged {
            c.count_endpoint(endpoint.as_deref(), &j);
            if let Some(d) = j.different() {
                c.log(client, &d);
                c.record(client, target, endpoint.as_deref(), &d);
            }
        }
        self.sync_compare_stats();
    }

    /// A target reply of session `idx`, with the payload intercept sent.
    #[inline]
    pub(super) fn compare_reply(&mut self, idx: u32, reply: &Reply<A>, payload: Option<&[u8]>) {
        // The check where the engine calls, the work out of line: most
        // replays do not compare, and every reply passes here.
        if self.compare.is_some() {
            self.compare_reply_streams(idx, reply, payload);
        }
    }

    fn compare_reply_streams(&mut self, idx: u32, reply: &Reply<A>, payload: Option<&[u8]>) {
        let syn = reply.flags.syn();
        let (seq, len) = (reply.seq.0, reply.payload_len as usize);
        match self.streams_of(idx) {
            Some((which, true)) => {
                self.with(which, false, |s, _| s.baseline(syn, seq, len, payload))
            }
            _ => self.with_streams(idx, false, |s, counts| {
                s.target(counts, syn, seq, len, payload)
            }),
        }
    }

    /// A production server segment, captured at `now` (`round` of the
    /// file).
    pub(super) fn compare_server_packet(
        &mut self,
        now: Instant,
        pkt: &TcpPacket<&[u8], A>,
        round: u16,
    ) {
        let origin = Endpoint::new(pkt.dst_addr(), pkt.dst_port());
        let syn = pkt.flags().syn();
        let seq = pkt.seq().0;
        let timed = !pkt.payload().is_empty() && self.timing_production();
        let replicas = self.config.replicas.max(1);
        let first = round.saturating_mul(replicas);
        let mut response_time = None;
        for copy in first..first.saturating_add(replicas) {
            let Some(idx) = self.find_origin(origin, copy) else {
                continue;
            };
            self.with_streams(idx, false, |s, counts| {
                if timed {
                    response_time = response_time.or(s.production_data_at(now.micros()));
                }
                s.production(counts, syn, seq, pkt.payload())
            });
        }
        if let Some(us) = response_time {
            // Once per captured answer, however many copies replay it.
            self.stats.production_time.record(us);
        }
    }

    fn timing_production(&self) -> bool {
        self.compare
            .as_ref()
            .is_some_and(|c| c.settings.time_production)
    }

    /// Session `idx` started a request at the target (bytes mode: the
    /// answer to the one before is whole); `pipelined`: before that answer
    /// was whole.
    pub(super) fn compare_request_sent(&mut self, idx: u32, pipelined: bool) {
        match self.streams_of(idx) {
            Some((which, true)) => self.with(which, false, |s, _| {
                if pipelined {
                    s.baseline_pipelined()
                } else {
                    s.baseline_exchange_end()
                }
            }),
            _ => self.with_streams(idx, false, |s, counts| {
                if pipelined {
                    s.target_pipelined(counts)
                } else {
                    s.target_exchange_end()
                }
            }),
        }
    }

    /// The capture holds client data for session `idx`, captured at `now`
    /// (bytes mode: production's answer to the request before is whole).
    pub(super) fn compare_client_data(
        &mut self,
        idx: u32,
        now: Instant,
        pkt: &TcpPacket<&[u8], A>,
    ) {
        let (seq, payload) = (pkt.seq().0, pkt.payload());
        self.with_streams(idx, false, |s, _| {
            if s.client_data(now.micros(), seq, payload) {
                s.production_exchange_end()
            }
        });
    }

    /// Session `idx` is going away: its last exchanges are complete. A
    /// session whose baseline session still owes answers keeps its streams
    /// (under the baseline session's index) until that one ends too.
    #[inline]
    pub(super) fn compare_close(&mut self, idx: u32) {
        // As for `compare_reply`: every session end passes here.
        if self.compare.is_some() {
            self.compare_close_streams(idx);
        }
    }

    fn compare_close_streams(&mut self, idx: u32) {
        match self.streams_of(idx) {
            Some((which, true)) => {
                if let Some(c) = &mut self.compare {
                    c.baselines.remove(&idx);
                }
                self.with(which, false, |s, _| s.baseline_finish());
                if matches!(which, Streams::Closing(_)) {
                    // The session it mirrors has ended already: done.
                    self.with(which, true, |_, _| {});
                }
            }
            Some((_, false)) => {
                let baseline = self.sessions.get(idx).and_then(|s| {
                    let b = self.find_origin(s.origin, s.copy | BASELINE_COPY)?;
                    let c = self.compare.as_ref()?;
                    (c.baselines.get(&b) == Some(&idx)).then_some(b)
                });
                let waits = baseline.is_some()
                    && self
                        .compare
                        .as_ref()
                        .and_then(|c| c.sessions.get(&idx))
                        .is_some_and(|t| t.streams.awaits_baseline());
                match baseline {
                    Some(b) if waits => {
                        // Compared as far as the target goes; the rest
                        // when the baseline session ends.
                        self.with_streams(idx, false, |s, _| s.finish_target());
                        if let Some(c) = &mut self.compare {
                            c.baselines.remove(&b);
                            if let Some(t) = c.sessions.remove(&idx) {
                                c.closing.insert(b, t);
                            }
                        }
                    }
                    _ => {
                        if let (Some(b), Some(c)) = (baseline, &mut self.compare) {
                            c.baselines.remove(&b);
                        }
                        self.with_streams(idx, true, |_, _| {});
                    }
                }
            }
            None => {}
        }
    }
}
