//! One replayed session: TCPCopy's replay semantics as a state machine.
//!
//! The session keeps the client's sequence space: segments go to the target
//! with the client's own sequence numbers, re-addressed to the target, with
//! the acknowledgment number the target expects (tracked from its replies),
//! our own window, and rewritten timestamps when the target agreed to them.
//! The session acknowledges the target's data itself; client pure ACKs are
//! only read (RTT, the online server's ISN), never forwarded.
//!
//! Pacing: client data segments carry the client's acknowledgment number in
//! the *online* server's sequence space. When it grows, the client had
//! received a response: the segment starts a new request, and it is held
//! until the target's response to the previous request is complete (as many
//! bytes as the online server sent, or reply data quiet for one client RTT,
//! no wait on a LAN; or nothing at all for the response timeout). Segments
//! of one request go out back to back within the target's window. A client
//! FIN or RST waits the same way. A session that falls behind production
//! (backlog past `pipeline_backlog`, or its next request captured more than
//! `max_lag` ago) pipelines its requests instead of waiting, so it catches
//! up and never has to be dropped.
//!
//! States: `SynSent` (our SYN, real or faked, is out) -> `Established` ->
//! `Lingering` (ended: RST sent, late packets absorbed until the linger
//! deadline, then the engine removes the session). A target close with
//! client data left makes the engine reconnect the session from `SynSent`.

use super::{
    Endpoint,
    close::CloseReason,
    config::Config,
    outbox::{EventKind, Outbox, SessionEvent},
    reply::Reply,
    segments::{Segment, SegmentPool, SegmentQueue},
    stats::EngineStats,
    time::Instant,
};
use crate::packet::{
    Ipv4TcpPacket, SeqNumber, TcpFlags, TcpOptions,
    ipv4tcp::{Rewrite, SegmentRepr},
    options::{write_syn_options, write_timestamp_option},
};

/// The window we advertise: we consume everything at once.
const OUR_WINDOW: u16 = 65535;
/// A client segment this far from the session's position is a new session
/// on a reused port.
const MAX_SEQ_JUMP: u32 = 1 << 24;
/// Buffered segments one session may hold.
const MAX_SEGMENTS: usize = 32768;
/// Client RTTs up to this are a LAN: no waiting for a quiet period.
const LAN_RTT_US: u64 = 1000;
/// A held client FIN/RST waits at least this long after the target's last
/// reply data when the target answered less than production did.
const CLOSE_QUIET: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SynSent,
    Established,
    Lingering,
}

/// What the engine must do after a session handled an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// End the session (it has not ended itself yet).
    End(CloseReason),
    /// Replay the rest on a new connection (new client port).
    Reconnect {
        target_reset: bool,
    },
    /// Linger is over: remove the session.
    Remove,
}

/// What a session borrows from its engine while it runs.
pub struct Ctx<'a> {
    pub now: Instant,
    pub config: &'a Config,
    pub out: &'a mut Outbox,
    pub stats: &'a mut EngineStats,
    pub pool: &'a mut SegmentPool,
    /// Buffered bytes of the whole engine.
    pub buffered: &'a mut usize,
}

pub struct Session {
    /// The real client.
    pub origin: Endpoint,
    /// Which copy of the real client's session (`-n`).
    pub copy: u16,
    /// The client address the target sees.
    pub client: Endpoint,
    pub target: Endpoint,
    pub state: State,
    /// The earliest deadline the timer wheel holds an entry for.
    pub armed: Instant,
    /// In the engine's to-acknowledge list.
    pub ack_queued: bool,
    /// The queued acknowledgment must go even if `rcv_nxt` already went
    /// out (a duplicate or out-of-order reply needs a repeated ACK).
    ack_forced: bool,

    /// Started from a captured SYN (not faked).
    syn_captured: bool,
    /// Our SYN offered window scaling / timestamps.
    syn_ws: bool,
    syn_ts: bool,
    /// The target agreed: window scaling / timestamps are on.
    ws_ok: bool,
    ts_ok: bool,
    /// The client reset; the RST is held.
    client_rst: bool,
    /// The client's FIN went out.
    fin_sent: bool,
    target_fin: bool,
    /// Some data went out on this connection.
    sent_data: bool,
    /// The current request has seen reply data.
    response_seen: bool,
    /// Requests went out before earlier responses came (falling behind):
    /// which response answers which request is no longer known.
    pipelined: bool,
    /// The online server's position is known (pacing baseline).
    baseline_known: bool,
    rtt_known: bool,
    reconnects: u8,
    backoff: u8,
    retries: u8,
    dupacks: u8,
    target_wscale: u8,
    last_window: u16,

    isn: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_wnd: u32,
    rcv_nxt: SeqNumber,
    /// The last acknowledgment number we sent.
    ack_sent: SeqNumber,
    /// Acknowledgment number of the last request sent (online server space).
    baseline: SeqNumber,
    /// Where this connection's replay began, in the online server's and in
    /// the target's sequence space: how much each has answered since.
    prod_base: SeqNumber,
    target_base: SeqNumber,
    /// The client RST's acknowledgment (what production had answered).
    rst_ack: SeqNumber,
    /// `rcv_nxt` when the current request started.
    response_mark: SeqNumber,

    ts_recent: u32,
    tsval_sent: u32,
    client_tsval: u32,
    client_rtt_us: u32,

    syn_at: Instant,
    started_at: Instant,
    request_at: Instant,
    last_reply_data: Instant,
    last_target: Instant,
    last_client: Instant,
    /// Since when client data has waited for the target.
    busy_since: Instant,
    rto_at: Instant,
    wait_at: Instant,
    hole_since: Instant,
    /// Close-wait deadline, or the linger deadline once lingering.
    close_at: Instant,

    segs: SegmentQueue,
}

impl Session {
    pub fn new(
        now: Instant,
        origin: Endpoint,
        copy: u16,
        client: Endpoint,
        target: Endpoint,
    ) -> Self {
        Self {
            origin,
            copy,
            client,
            target,
            state: State::SynSent,
            armed: Instant::NEVER,
            ack_queued: false,
            ack_forced: false,
            syn_captured: false,
            syn_ws: false,
            syn_ts: false,
            ws_ok: false,
            ts_ok: false,
            client_rst: false,
            fin_sent: false,
            target_fin: false,
            sent_data: false,
            response_seen: false,
            pipelined: false,
            baseline_known: false,
            rtt_known: false,
            reconnects: 0,
            backoff: 0,
            retries: 0,
            dupacks: 0,
            target_wscale: 0,
            last_window: 0,
            isn: SeqNumber(0),
            snd_una: SeqNumber(0),
            snd_nxt: SeqNumber(0),
            snd_wnd: 0,
            rcv_nxt: SeqNumber(0),
            ack_sent: SeqNumber(0),
            baseline: SeqNumber(0),
            prod_base: SeqNumber(0),
            target_base: SeqNumber(0),
            rst_ack: SeqNumber(0),
            response_mark: SeqNumber(0),
            ts_recent: 0,
            tsval_sent: 0,
            client_tsval: 0,
            client_rtt_us: 0,
            syn_at: now,
            started_at: now,
            request_at: now,
            last_reply_data: Instant::ZERO,
            last_target: now,
            last_client: now,
            busy_since: now,
            rto_at: Instant::NEVER,
            wait_at: Instant::NEVER,
            hole_since: Instant::NEVER,
            close_at: Instant::NEVER,
            segs: SegmentQueue::default(),
        }
    }

    /// Gives the session an empty queue with capacity to reuse.
    pub fn reuse_queue(&mut self, q: SegmentQueue) {
        debug_assert!(q.is_empty());
        self.segs = q;
    }

    /// Takes the (empty: the session ended) queue out for reuse.
    pub fn take_queue(&mut self) -> SegmentQueue {
        std::mem::take(&mut self.segs)
    }

    /// Buffered bytes.
    pub fn buffered(&self) -> usize {
        self.segs.bytes()
    }

    /// Whether everything captured so far went out, was acknowledged and
    /// was answered (the response quiet for [`CLOSE_QUIET`], or no
    /// response within the response timeout): with no more client packets
    /// coming (the capture file ended), nothing is left to replay.
    pub fn is_settled(&self, now: Instant, config: &Config) -> bool {
        if self.state != State::Established
            || !self.segs.is_empty()
            || self.fin_sent
            || self.client_rst
        {
            // Still replaying, or closing: it ends by itself.
            return false;
        }
        if !self.sent_data {
            return true;
        }
        if self.response_seen {
            now >= self.last_reply_data + CLOSE_QUIET
        } else {
            now >= self.request_at + config.response_timeout
        }
    }

    /// Whether `seq` is too far from this session to belong to it.
    pub fn is_seq_jump(&self, seq: SeqNumber) -> bool {
        seq.diff(self.snd_una).unsigned_abs() > MAX_SEQ_JUMP
    }

    /// The SYN sequence number of the current connection.
    pub fn isn(&self) -> SeqNumber {
        self.isn
    }

    // ----- starting --------------------------------------------------------

    /// Starts from a captured SYN: it goes out (re-addressed) at once.
    pub fn start_with_syn(
        &mut self,
        cx: &mut Ctx<'_>,
        syn: &Ipv4TcpPacket<&[u8]>,
        opts: &TcpOptions,
    ) {
        self.syn_captured = true;
        self.syn_ws = opts.wscale.is_some();
        self.syn_ts = opts.timestamp.is_some();
        self.client_tsval = opts.timestamp.map_or(0, |t| t.0);
        // What we send never goes below the SYN's (compared with wrapping
        // arithmetic, so it must start from a real value, not 0).
        self.tsval_sent = self.client_tsval;
        self.syn_at = cx.now;
        self.isn = syn.seq();
        self.snd_una = self.isn;
        self.snd_nxt = self.isn;
        let seg = Segment::syn(syn, opts, cx.now, cx.pool);
        *cx.buffered += seg.buf.capacity();
        self.segs.push_front(seg);
        cx.stats.sessions_syn += 1;
        self.emit_event(cx, EventKind::Started { faked: false });
        self.send_syn(cx);
        if syn.payload_len() > 0 {
            // TCP Fast Open data: replayed as ordinary data after the handshake.
            let max_payload = usize::from(cx.config.mtu)
                .saturating_sub(syn.payload_offset())
                .max(1);
            *cx.buffered += self
                .segs
                .insert(syn, opts, self.isn + 1, max_payload, cx.now, cx.pool)
                .bytes;
        }
    }

    /// Starts mid-stream from a captured data segment: fakes a SYN just
    /// before it (MSS `-D`, window 65535, timestamps when the client uses
    /// them), then buffers the segment.
    pub fn start_faked(
        &mut self,
        cx: &mut Ctx<'_>,
        first: &Ipv4TcpPacket<&[u8]>,
        opts: &TcpOptions,
    ) -> Step {
        cx.stats.sessions_faked += 1;
        self.emit_event(cx, EventKind::Started { faked: true });
        let ts = opts.timestamp.map(|t| t.0);
        self.client_tsval = ts.unwrap_or(0);
        self.baseline = first.ack();
        self.prod_base = first.ack();
        self.baseline_known = true;
        self.fake_syn(cx, first.seq() - 1, ts);
        self.on_client(cx, first, opts)
    }

    /// Puts a SYN of our own at the front (seq `isn`) and sends it.
    fn fake_syn(&mut self, cx: &mut Ctx<'_>, isn: SeqNumber, tsval: Option<u32>) {
        self.isn = isn;
        self.tsval_sent = tsval.unwrap_or(0);
        self.snd_una = isn;
        self.snd_nxt = isn;
        self.syn_ws = false;
        self.syn_ts = tsval.is_some();
        let mut opts = [0u8; 20];
        let n = write_syn_options(&mut opts, cx.config.fake_mss, tsval.map(|v| (v, 0)), None);
        let repr = SegmentRepr {
            src: self.origin.addr,
            dst: self.target.addr,
            src_port: self.origin.port,
            dst_port: self.target.port,
            seq: isn,
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: OUR_WINDOW,
            ttl: 64,
            ip_id: 0,
            options: &opts[..n],
            payload: &[],
        };
        let mut buf = cx.pool.take(&[]);
        buf.resize(repr.len(), 0);
        repr.emit(&mut buf);
        let seg = Segment {
            seq: isn,
            len: 1,
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            ts_offset: if tsval.is_some() { 20 + 4 + 4 } else { 0 },
            tsval: tsval.unwrap_or(0),
            captured_ms: super::segments::wrapping_ms(cx.now),
            buf,
        };
        *cx.buffered += seg.buf.capacity();
        self.segs.push_front(seg);
        self.send_syn(cx);
    }

    fn send_syn(&mut self, cx: &mut Ctx<'_>) {
        self.state = State::SynSent;
        self.started_at = cx.now;
        if !self.segs.all_sent() {
            self.segs.mark_sent();
        }
        self.snd_nxt = self.isn + 1;
        self.emit_front(cx);
        self.backoff = 0;
        self.rto_at = cx.now + cx.config.syn_rto;
    }

    // ----- client side -----------------------------------------------------

    /// A captured client segment of this session (not its first SYN).
    pub fn on_client(
        &mut self,
        cx: &mut Ctx<'_>,
        pkt: &Ipv4TcpPacket<&[u8]>,
        opts: &TcpOptions,
    ) -> Step {
        self.last_client = cx.now;
        if let Some((tsval, _)) = opts.timestamp
            && SeqNumber(tsval) > SeqNumber(self.client_tsval)
        {
            self.client_tsval = tsval;
        }
        let flags = pkt.flags();
        if flags.syn() {
            // A client SYN-ACK (simultaneous open) is nothing we replay.
            cx.stats.malformed += 1;
            return Step::Continue;
        }
        if flags.rst() {
            self.client_rst = true;
            self.rst_ack = if flags.ack() {
                pkt.ack()
            } else {
                self.baseline
            };
            if self.state == State::SynSent && !self.segs.has_payload() {
                // Nothing to replay: just clear the target's half-open side.
                return Step::End(CloseReason::ClientReset);
            }
            return self.pump(cx);
        }
        if pkt.payload_len() == 0 && !flags.fin() {
            cx.stats.client_acks += 1;
            if !self.baseline_known && self.syn_captured && flags.ack() {
                // The third handshake ACK: the online server's ISN + 1.
                self.baseline = pkt.ack();
                self.prod_base = pkt.ack();
                self.baseline_known = true;
            }
            if self.syn_captured && !self.rtt_known {
                self.client_rtt_us = cx.now.saturating_since(self.syn_at).as_micros() as u32;
                self.rtt_known = true;
            }
            return Step::Continue;
        }
        if !self.baseline_known && pkt.payload_len() > 0 {
            self.baseline = pkt.ack();
            self.prod_base = pkt.ack();
            self.baseline_known = true;
        }
        let floor = if self.state == State::SynSent {
            self.isn + 1
        } else {
            self.snd_una
        };
        let was_empty = !self.segs.has_payload();
        let max_payload = usize::from(cx.config.mtu)
            .saturating_sub(pkt.ip_header_len() + pkt.tcp_header_len())
            .max(1);
        let added = self
            .segs
            .insert(pkt, opts, floor, max_payload, cx.now, cx.pool);
        *cx.buffered += added.bytes;
        if added.split {
            cx.stats.split_packets += 1;
        }
        if added.segments == 0 {
            cx.stats.old_segments += 1;
            return Step::Continue;
        }
        if added.trimmed {
            cx.stats.overlaps_trimmed += 1;
        }
        if was_empty {
            self.busy_since = cx.now;
        }
        if self.segs.bytes() > cx.config.session_buffer_cap || self.segs.len() > MAX_SEGMENTS {
            return Step::End(CloseReason::BufferFull);
        }
        self.pump(cx)
    }

    // ----- target side -----------------------------------------------------

    /// A reply from the target to this session.
    pub fn on_reply(&mut self, cx: &mut Ctx<'_>, r: &Reply) -> Step {
        self.last_target = cx.now;
        match self.state {
            State::Lingering => Step::Continue,
            State::SynSent => self.on_reply_syn_sent(cx, r),
            State::Established => self.on_reply_established(cx, r),
        }
    }

    fn on_reply_syn_sent(&mut self, cx: &mut Ctx<'_>, r: &Reply) -> Step {
        if r.flags.rst() {
            return if r.flags.ack() && r.ack != self.isn + 1 {
                Step::Continue // not about our SYN
            } else {
                Step::End(CloseReason::TargetRefused)
            };
        }
        if !(r.flags.syn() && r.flags.ack() && r.ack == self.isn + 1) {
            return Step::Continue;
        }
        self.state = State::Established;
        cx.stats.established += 1;
        self.emit_event(cx, EventKind::Established);
        self.rcv_nxt = r.seq + 1;
        self.response_mark = self.rcv_nxt;
        self.target_base = self.rcv_nxt;
        self.snd_una = self.isn + 1;
        let freed = self.segs.pop_acked(self.snd_una, cx.pool);
        *cx.buffered -= freed;
        self.ws_ok = self.syn_ws && r.options.wscale.is_some();
        self.target_wscale = if self.ws_ok {
            r.options.wscale.unwrap_or(0)
        } else {
            0
        };
        self.ts_ok = self.syn_ts && r.options.timestamp.is_some();
        if let Some((tsval, _)) = r.options.timestamp {
            self.ts_recent = tsval;
        }
        self.snd_wnd = u32::from(r.window);
        self.last_window = r.window;
        self.backoff = 0;
        self.retries = 0;
        self.rto_at = Instant::NEVER;
        self.request_at = cx.now;
        self.busy_since = cx.now;
        // The third ACK of the handshake, ours.
        self.send_ack(cx);
        self.pump(cx)
    }

    fn on_reply_established(&mut self, cx: &mut Ctx<'_>, r: &Reply) -> Step {
        if r.flags.rst() {
            return if self.segs.has_payload() {
                Step::Reconnect { target_reset: true }
            } else {
                Step::End(CloseReason::TargetReset)
            };
        }
        if r.flags.syn() {
            // Our third ACK was lost: the target repeats its SYN-ACK.
            self.queue_ack(true);
            return Step::Continue;
        }
        if let Some((tsval, _)) = r.options.timestamp
            && SeqNumber(tsval) >= SeqNumber(self.ts_recent)
        {
            self.ts_recent = tsval;
        }
        if r.flags.ack() {
            self.on_ack(cx, r);
        }
        if r.payload_len > 0 {
            let end = r.seq + r.payload_len;
            // In order: a normal ACK. Old or beyond a gap: say where we are.
            self.queue_ack(r.seq != self.rcv_nxt);
            if end > self.rcv_nxt {
                self.rcv_nxt = end;
                self.last_reply_data = cx.now;
                if !self.response_seen {
                    self.response_seen = true;
                    cx.stats.responses += 1;
                    if self.sent_data {
                        let us = cx.now.saturating_since(self.request_at).as_micros() as u64;
                        cx.stats.response_time.record(us);
                    }
                }
            }
        }
        if r.flags.fin() {
            let fin = r.seq + r.payload_len;
            if fin + 1 > self.rcv_nxt {
                self.rcv_nxt = fin + 1;
            }
            self.target_fin = true;
            self.queue_ack(true);
            if self.segs.has_payload() {
                return Step::Reconnect {
                    target_reset: false,
                };
            }
        }
        match self.pump(cx) {
            Step::Continue => self.check_closed(cx),
            other => other,
        }
    }

    /// The acknowledgment and window of a reply.
    fn on_ack(&mut self, cx: &mut Ctx<'_>, r: &Reply) {
        let window = u32::from(r.window) << self.target_wscale;
        if r.ack > self.snd_una && r.ack <= self.snd_nxt {
            self.snd_una = r.ack;
            let freed = self.segs.pop_acked(r.ack, cx.pool);
            *cx.buffered -= freed;
            self.backoff = 0;
            self.retries = 0;
            self.dupacks = 0;
            self.busy_since = cx.now;
            self.rto_at = if self.snd_una == self.snd_nxt {
                Instant::NEVER
            } else {
                cx.now + self.rto(cx)
            };
        } else if r.ack == self.snd_una
            && r.payload_len == 0
            && !r.flags.fin()
            && self.snd_una != self.snd_nxt
            && r.window == self.last_window
        {
            self.dupacks += 1;
            if self.dupacks == 3 {
                cx.stats.fast_retransmits += 1;
                self.emit_front(cx);
            }
        }
        self.snd_wnd = window;
        self.last_window = r.window;
    }

    /// Ends the session when both sides have closed.
    fn check_closed(&mut self, cx: &mut Ctx<'_>) -> Step {
        let fin_acked = self.fin_sent && self.snd_una == self.snd_nxt;
        if fin_acked && self.target_fin {
            return Step::End(CloseReason::Completed);
        }
        if fin_acked && self.close_at.is_never() {
            self.close_at = cx.now + cx.config.linger;
        }
        Step::Continue
    }

    // ----- sending ---------------------------------------------------------

    /// Sends what pacing and the target's window allow.
    fn pump(&mut self, cx: &mut Ctx<'_>) -> Step {
        if self.state != State::Established {
            return Step::Continue;
        }
        loop {
            let Some(seg) = self.segs.next_unsent() else {
                self.hole_since = Instant::NEVER;
                break;
            };
            if seg.seq > self.snd_nxt {
                if self.hole_since.is_never() {
                    self.hole_since = cx.now;
                    cx.stats.hole_waits += 1;
                }
                break;
            }
            self.hole_since = Instant::NEVER;
            let (ack, len, data, fin) = (seg.ack, seg.len, seg.has_payload(), seg.flags.fin());
            let captured_at = seg.captured_at(cx.now);
            if data && self.target_fin {
                // The target closed; this data needs a new connection.
                return Step::Reconnect {
                    target_reset: false,
                };
            }
            // A grown client ACK: the online server had answered (or greeted).
            let grown = self.baseline_known && ack > self.baseline;
            let new_request = data && grown;
            let held_close = fin && !data && (self.sent_data || grown);
            let hold = if new_request {
                !self.release_ok(cx, ack)
            } else {
                held_close && !self.close_ok(cx, ack)
            };
            if hold {
                // Falling behind production: pipeline rather than let the
                // backlog grow until the session is dropped.
                let lag_limit = captured_at + cx.config.max_lag;
                let lagging =
                    self.segs.bytes() >= cx.config.pipeline_backlog || cx.now >= lag_limit;
                if !(new_request && lagging) {
                    if new_request {
                        self.wait_at = self.wait_at.min(lag_limit);
                    }
                    break;
                }
                cx.stats.pipelined += 1;
                self.pipelined = true;
            }
            if data && (new_request || !self.sent_data) {
                self.start_request(cx, ack);
            }
            let in_flight = self.snd_nxt.since(self.snd_una);
            if self.snd_wnd == 0 && in_flight == 0 {
                // Zero window: probe on the retransmission timer.
                if self.rto_at.is_never() {
                    self.rto_at = cx.now + self.rto(cx);
                }
                break;
            }
            if in_flight > 0 && in_flight + len > self.snd_wnd {
                break;
            }
            self.send_next(cx);
        }
        // A held client RST goes once its data is acknowledged and answered
        // (a reset would discard requests the target has not read yet).
        if self.client_rst && self.segs.all_sent() && self.snd_una == self.snd_nxt {
            let ack = self.rst_ack;
            if self.close_ok(cx, ack) {
                return Step::End(CloseReason::ClientReset);
            }
        }
        Step::Continue
    }

    fn start_request(&mut self, cx: &mut Ctx<'_>, ack: SeqNumber) {
        self.baseline = ack;
        self.baseline_known = true;
        self.response_mark = self.rcv_nxt;
        self.response_seen = false;
        self.request_at = cx.now;
        self.sent_data = true;
        cx.stats.requests += 1;
    }

    /// Whether the response to the current request is complete, so the
    /// segment with client acknowledgment `next_ack` may go. Otherwise sets
    /// the wait deadline.
    fn release_ok(&mut self, cx: &mut Ctx<'_>, next_ack: SeqNumber) -> bool {
        if cx.config.dont_wait {
            return true;
        }
        let got = self.rcv_nxt.since(self.response_mark);
        let expected = next_ack.since(self.baseline);
        if expected > 0 && got >= expected {
            return true;
        }
        let quiet = self.quiet(cx);
        if got > 0 && cx.now >= self.last_reply_data + quiet {
            return true;
        }
        let base = self.request_at.max(self.last_reply_data);
        let give_up = base + cx.config.response_timeout;
        if cx.now >= give_up {
            if got == 0 {
                cx.stats.response_timeouts += 1;
            }
            return true;
        }
        let quiet_end = if got > 0 {
            self.last_reply_data + quiet
        } else {
            Instant::NEVER
        };
        self.wait_at = quiet_end.min(give_up);
        false
    }

    /// Whether a held client FIN or RST may go: the target has answered as
    /// much as production had when the client closed (`close_ack`, the
    /// client's acknowledgment then), or the target has been quiet long
    /// enough that nothing more is coming (it may answer less than
    /// production: it is a different build). Otherwise sets the wait.
    fn close_ok(&mut self, cx: &mut Ctx<'_>, close_ack: SeqNumber) -> bool {
        if cx.config.dont_wait || !self.sent_data {
            return true;
        }
        // The last request answered (or given up on, as for any request) ...
        let last_answered = self.rcv_nxt.since(self.response_mark) > 0;
        let give_up = self.request_at.max(self.last_reply_data) + cx.config.response_timeout;
        if !last_answered && cx.now < give_up {
            self.wait_at = self.wait_at.min(give_up);
            return false;
        }
        // After pipelining, "the last request answered" may be an earlier
        // request's response, and production may have answered requests
        // the client reset before acknowledging: a reset (which makes the
        // target discard what it has not read yet) waits until the target
        // has gone quiet.
        if self.pipelined && self.client_rst {
            let quiet_at = self.request_at.max(self.last_reply_data) + CLOSE_QUIET;
            if cx.now < quiet_at {
                self.wait_at = self.wait_at.min(quiet_at);
                return false;
            }
            return true;
        }
        // ... and every request before it (pipelined ones may still sit
        // unread in the target's socket, which a reset would discard).
        let expected = close_ack.since(self.prod_base);
        let answered = self.rcv_nxt.since(self.target_base);
        if answered >= expected {
            return true;
        }
        let quiet = self.quiet(cx).max(CLOSE_QUIET);
        let done_at = self.request_at.max(self.last_reply_data) + quiet;
        if cx.now >= done_at {
            return true;
        }
        self.wait_at = self.wait_at.min(done_at);
        false
    }

    /// How long reply data must pause before a response counts as complete.
    fn quiet(&self, cx: &Ctx<'_>) -> std::time::Duration {
        let rtt = if self.rtt_known {
            std::time::Duration::from_micros(u64::from(self.client_rtt_us))
        } else {
            cx.config.default_rtt
        };
        if rtt.as_micros() <= u128::from(LAN_RTT_US) {
            std::time::Duration::ZERO
        } else {
            rtt
        }
    }

    fn rto(&self, cx: &Ctx<'_>) -> std::time::Duration {
        (cx.config.rto * (1u32 << self.backoff.min(16))).min(cx.config.rto_max)
    }

    /// Sends the next unsent segment for the first time.
    fn send_next(&mut self, cx: &mut Ctx<'_>) {
        let idx = self.segs.sent_count();
        let (end, fin) = {
            let seg = self.segs.next_unsent().expect("caller checked");
            (seg.end(), seg.flags.fin())
        };
        self.emit_segment(cx, idx);
        self.segs.mark_sent();
        self.snd_nxt = self.snd_nxt.max(end);
        self.fin_sent |= fin;
        cx.stats.segments_sent += 1;
        if self.rto_at.is_never() {
            self.rto_at = cx.now + self.rto(cx);
        }
    }

    /// Sends (again) the first unacknowledged segment.
    fn emit_front(&mut self, cx: &mut Ctx<'_>) {
        if !self.segs.is_empty() {
            self.emit_segment(cx, 0);
        }
    }

    /// Writes buffered segment `idx` to the outbox, re-addressed and with
    /// our acknowledgment, window and timestamps.
    fn emit_segment(&mut self, cx: &mut Ctx<'_>, idx: usize) {
        let seg = self.segs.get(idx).expect("index within the queue");
        let ts = (self.ts_ok && seg.ts_offset != 0).then(|| {
            let tsval = if SeqNumber(seg.tsval) > SeqNumber(self.tsval_sent) {
                seg.tsval
            } else {
                self.tsval_sent
            };
            (seg.ts_offset, tsval)
        });
        let syn = seg.flags.syn();
        let frame = cx.out.push_frame_copy(&seg.buf);
        let mut p = Ipv4TcpPacket::new_checked(frame).expect("buffered packets are valid");
        p.rewrite(&Rewrite {
            src: self.client.addr,
            dst: self.target.addr,
            src_port: self.client.port,
            dst_port: self.target.port,
            ack: (!syn).then_some(self.rcv_nxt),
            window: (!syn).then_some(OUR_WINDOW),
        });
        if !syn {
            self.ack_sent = self.rcv_nxt;
        }
        if let Some((off, tsval)) = ts {
            p.set_timestamp(usize::from(off), tsval, self.ts_recent);
            self.tsval_sent = tsval;
        }
        let len = p.total_len();
        cx.stats.frames_sent += 1;
        cx.stats.bytes_sent += len as u64;
    }

    /// The TSval for packets we build: never below what we sent before.
    fn next_tsval(&mut self) -> u32 {
        if SeqNumber(self.client_tsval) > SeqNumber(self.tsval_sent) {
            self.tsval_sent = self.client_tsval;
        }
        self.tsval_sent
    }

    /// Sends a pure ACK (`flags` ACK) or a reset (`RST|ACK`) built here.
    fn send_control(&mut self, cx: &mut Ctx<'_>, flags: TcpFlags, seq: SeqNumber) {
        let mut opts = [0u8; 12];
        let n = if self.ts_ok {
            let tsval = self.next_tsval();
            write_timestamp_option(&mut opts, tsval, self.ts_recent)
        } else {
            0
        };
        let repr = SegmentRepr {
            src: self.client.addr,
            dst: self.target.addr,
            src_port: self.client.port,
            dst_port: self.target.port,
            seq,
            ack: self.rcv_nxt,
            flags,
            window: if flags.rst() { 0 } else { OUR_WINDOW },
            ttl: 64,
            ip_id: 0,
            options: &opts[..n],
            payload: &[],
        };
        let frame = cx.out.push_frame(repr.len());
        let len = repr.emit(frame);
        self.ack_sent = self.rcv_nxt;
        cx.stats.frames_sent += 1;
        cx.stats.bytes_sent += len as u64;
    }

    /// Queues an acknowledgment for the engine's next flush.
    fn queue_ack(&mut self, forced: bool) {
        self.ack_queued = true;
        self.ack_forced |= forced;
    }

    fn send_ack(&mut self, cx: &mut Ctx<'_>) {
        self.send_control(cx, TcpFlags::ACK, self.snd_nxt);
        cx.stats.acks_sent += 1;
    }

    /// Sends the acknowledgment queued by replies (the engine's flush).
    pub fn flush_ack(&mut self, cx: &mut Ctx<'_>) {
        if self.ack_queued {
            self.ack_queued = false;
            let needed = self.ack_forced || self.ack_sent != self.rcv_nxt;
            self.ack_forced = false;
            if self.state == State::Established && needed {
                self.send_ack(cx);
            }
        }
    }

    /// Resets the target's side of the connection: at the sequence number
    /// it acknowledged, and at ours when data is in flight (one of them is
    /// the exact number it accepts a reset at).
    fn send_resets(&mut self, cx: &mut Ctx<'_>) {
        let at = if self.state == State::SynSent {
            self.isn + 1
        } else {
            self.snd_una
        };
        self.send_control(cx, TcpFlags::RST | TcpFlags::ACK, at);
        if self.state == State::Established && self.snd_nxt != self.snd_una {
            self.send_control(cx, TcpFlags::RST | TcpFlags::ACK, self.snd_nxt);
        }
    }

    // ----- ending and reconnecting -----------------------------------------

    /// Ends the session: resets the target's side (unless the target ended
    /// it), frees the buffer, and lingers.
    pub fn end(&mut self, cx: &mut Ctx<'_>, reason: CloseReason) {
        if self.state == State::Lingering {
            return;
        }
        if !matches!(
            reason,
            CloseReason::TargetReset | CloseReason::TargetRefused
        ) {
            self.send_resets(cx);
        }
        *cx.buffered -= self.segs.clear(cx.pool);
        self.state = State::Lingering;
        self.ack_queued = false;
        self.rto_at = Instant::NEVER;
        self.wait_at = Instant::NEVER;
        self.hole_since = Instant::NEVER;
        self.close_at = cx.now + cx.config.linger;
        cx.stats.closed[reason as usize] += 1;
        self.emit_event(cx, EventKind::Closed(reason));
    }

    /// Replays the rest on a new connection from client address `client`:
    /// resets the old one, fakes a SYN before the first unacknowledged
    /// byte. Returns `End` when the target closed early too often.
    pub fn reconnect(&mut self, cx: &mut Ctx<'_>, client: Endpoint, target_reset: bool) -> Step {
        if self.reconnects >= cx.config.max_reconnects {
            return Step::End(CloseReason::ReconnectLimit);
        }
        self.reconnects += 1;
        cx.stats.reconnects += 1;
        if !target_reset {
            self.send_resets(cx);
        }
        self.client = client;
        *cx.buffered -= self.segs.pop_acked(self.snd_una, cx.pool);
        let Some(first) = self.segs.front() else {
            return Step::End(CloseReason::TargetReset);
        };
        // The target trims bytes of a partly acknowledged first segment.
        let isn = if first.seq < self.snd_una {
            self.snd_una
        } else {
            first.seq
        } - 1;
        let tsval = (first.ts_offset != 0).then_some(first.tsval);
        self.baseline = first.ack;
        self.prod_base = first.ack;
        self.baseline_known = true;
        self.segs.reset_sent();
        self.ts_ok = false;
        self.ws_ok = false;
        self.target_wscale = 0;
        self.target_fin = false;
        self.fin_sent = false;
        self.sent_data = false;
        self.dupacks = 0;
        self.retries = 0;
        self.wait_at = Instant::NEVER;
        self.close_at = Instant::NEVER;
        self.emit_event(cx, EventKind::Reconnected);
        self.fake_syn(cx, isn, tsval);
        Step::Continue
    }

    // ----- time ------------------------------------------------------------

    /// The next time this session needs [`Session::on_timer`].
    pub fn deadline(&self, config: &Config) -> Instant {
        match self.state {
            State::Lingering => self.close_at,
            State::SynSent => self.rto_at.min(self.started_at + config.handshake_timeout),
            State::Established => {
                let idle = if self.segs.is_empty() {
                    self.last_target.max(self.last_client) + config.keepalive_timeout
                } else {
                    self.last_target.max(self.busy_since) + config.no_response_timeout
                };
                let hole = if self.hole_since.is_never() {
                    Instant::NEVER
                } else {
                    self.hole_since + config.hole_timeout
                };
                self.rto_at
                    .min(self.wait_at)
                    .min(hole)
                    .min(self.close_at)
                    .min(idle)
            }
        }
    }

    /// Handles whatever is due at `cx.now`.
    pub fn on_timer(&mut self, cx: &mut Ctx<'_>) -> Step {
        let now = cx.now;
        match self.state {
            State::Lingering => {
                if now >= self.close_at {
                    Step::Remove
                } else {
                    Step::Continue
                }
            }
            State::SynSent => {
                if now >= self.started_at + cx.config.handshake_timeout {
                    return Step::End(CloseReason::HandshakeTimeout);
                }
                if now >= self.rto_at {
                    cx.stats.syn_retransmits += 1;
                    self.emit_front(cx);
                    self.backoff = self.backoff.saturating_add(1);
                    self.rto_at = now + cx.config.syn_rto * (1u32 << self.backoff.min(16));
                }
                Step::Continue
            }
            State::Established => self.on_timer_established(cx),
        }
    }

    fn on_timer_established(&mut self, cx: &mut Ctx<'_>) -> Step {
        let now = cx.now;
        let config = cx.config;
        if self.segs.is_empty() {
            if now >= self.last_target.max(self.last_client) + config.keepalive_timeout {
                return Step::End(CloseReason::KeepaliveTimeout);
            }
        } else if now >= self.last_target.max(self.busy_since) + config.no_response_timeout {
            return Step::End(CloseReason::NoResponse);
        }
        if !self.hole_since.is_never() && now >= self.hole_since + config.hole_timeout {
            return Step::End(CloseReason::CaptureHole);
        }
        if now >= self.close_at {
            return Step::End(CloseReason::CloseTimeout);
        }
        if now >= self.rto_at {
            self.rto_at = Instant::NEVER;
            if self.snd_una != self.snd_nxt {
                self.retries += 1;
                if self.retries > config.max_retransmits {
                    return Step::End(CloseReason::RetransmitLimit);
                }
                cx.stats.rto_retransmits += 1;
                self.emit_front(cx);
                self.backoff = self.backoff.saturating_add(1);
                self.rto_at = now + self.rto(cx);
            } else if self.snd_wnd == 0 && self.segs.next_unsent().is_some() {
                // Zero-window probe: send the next segment anyway.
                self.send_next(cx);
                self.backoff = self.backoff.saturating_add(1);
                self.rto_at = now + self.rto(cx);
            }
        }
        if now >= self.wait_at {
            self.wait_at = Instant::NEVER;
        }
        match self.pump(cx) {
            Step::Continue => self.check_closed(cx),
            other => other,
        }
    }

    fn emit_event(&self, cx: &mut Ctx<'_>, kind: EventKind) {
        cx.out.events.push(SessionEvent {
            client: self.client,
            kind,
        });
    }
}
