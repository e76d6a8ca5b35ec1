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
//!
//! The state and its small queries are here; the `impl Session` is split
//! by purpose: `handshake` (starting, our SYN and the target's answer),
//! `client` (captured client segments), `target` (the target's replies and
//! our acknowledgments), `pacing` (what may go now), `transmit` (frames
//! into the outbox), `ending` (closing, resets, reconnecting) and `timers`
//! (deadlines and what is due).

mod client;
mod ending;
mod handshake;
mod pacing;
mod target;
mod timers;
mod transmit;

use super::{
    Endpoint,
    close::CloseReason,
    config::Config,
    outbox::{EventKind, Outbox, SessionEvent},
    segments::{SegmentPool, SegmentQueue},
    stats::EngineStats,
    time::Instant,
};
use crate::packet::{Address, SeqNumber};

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
pub struct Ctx<'a, A: Address = [u8; 4]> {
    pub now: Instant,
    pub config: &'a Config,
    pub out: &'a mut Outbox<A>,
    pub stats: &'a mut EngineStats,
    pub pool: &'a mut SegmentPool,
    /// Buffered bytes of the whole engine.
    pub buffered: &'a mut usize,
}

pub struct Session<A: Address = [u8; 4]> {
    /// The real client.
    pub origin: Endpoint<A>,
    /// Which copy of the real client's session (`-n`).
    pub copy: u16,
    /// The client address the target sees.
    pub client: Endpoint<A>,
    pub target: Endpoint<A>,
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
    /// The target answered our SYN with a RST (it is retried until the
    /// handshake deadline: a restarting target refuses for a moment).
    refused: bool,
    /// The client's FIN went out.
    fin_sent: bool,
    target_fin: bool,
    /// The target reset the connection between requests (nothing of the
    /// client's was waiting): the client's next data reconnects, its close
    /// ends the session.
    target_rst: bool,
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

impl<A: Address> Session<A> {
    /// A session about to start, buffering its segments in `segs` (empty;
    /// a reused queue keeps its capacity).
    pub fn new(
        now: Instant,
        origin: Endpoint<A>,
        copy: u16,
        client: Endpoint<A>,
        target: Endpoint<A>,
        segs: SegmentQueue,
    ) -> Self {
        debug_assert!(segs.is_empty());
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
            refused: false,
            fin_sent: false,
            target_fin: false,
            target_rst: false,
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
            segs,
        }
    }

    /// Takes the (empty: the session ended) queue out for reuse.
    pub fn take_queue(&mut self) -> SegmentQueue {
        std::mem::take(&mut self.segs)
    }

    /// Segments the session's queue has room for without allocating.
    pub fn queue_capacity(&self) -> usize {
        self.segs.capacity()
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

    fn emit_event(&self, cx: &mut Ctx<'_, A>, kind: EventKind) {
        cx.out.events.push(SessionEvent {
            client: self.client,
            kind,
        });
    }
}
