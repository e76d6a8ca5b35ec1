//! Replies from the target: dispatched by state, then (established) its
//! acknowledgments and window, its data and FIN; and the acknowledgments
//! we owe it, queued per batch and sent at the engine's flush.

use super::{Ctx, Session, State, Step};
use crate::{
    engine::{close::CloseReason, reply::Reply, time::Instant},
    packet::{Address, SeqNumber, TcpFlags},
};

/// Bytes of an acknowledged, unanswered request kept for a replay (larger
/// requests are replayed from what is still unacknowledged).
const KEEP_UNANSWERED: usize = 256 << 10;

impl<A: Address> Session<A> {
    /// A reply from the target to this session.
    pub fn on_reply(&mut self, cx: &mut Ctx<'_, A>, r: &Reply<A>) -> Step {
        self.last_target = cx.now;
        match self.state {
            State::Lingering => Step::Continue,
            State::SynSent => self.on_reply_syn_sent(cx, r),
            State::Established => self.on_reply_established(cx, r),
        }
    }

    fn on_reply_established(&mut self, cx: &mut Ctx<'_, A>, r: &Reply<A>) -> Step {
        if r.flags.rst() {
            self.replay_lost_request(cx);
            if self.segs.has_payload() {
                return Step::Reconnect { target_reset: true };
            }
            if self.client_rst || self.fin_sent {
                return Step::End(CloseReason::TargetReset);
            }
            // Between requests (a restarting target drops its idle
            // connections): the client may well send more on its own
            // connection; that reconnects. The session is not ended on the
            // client's behalf.
            self.target_rst = true;
            self.target_fin = true;
            return Step::Continue;
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
                    *cx.buffered -= self.segs.release_kept(cx.pool);
                    cx.stats.responses += 1;
                    // Not once the session pipelined (a request went out
                    // before the answer before it was whole; `pipelined`
                    // stays set): which response byte answers which request
                    // is not known then.
                    if self.sent_data && !self.pipelined {
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

    /// The target reset the connection after acknowledging the current
    /// request and before any answer to it: it read the request and lost
    /// it (a crash, a restart). The kept segments go back in front, so the
    /// reconnection that follows replays the request. (A close without an
    /// answer is not replayed: it may be what the server does.)
    fn replay_lost_request(&mut self, cx: &mut Ctx<'_, A>) {
        if self.response_seen || !self.segs.has_kept() {
            return;
        }
        if let Some(first) = self.segs.restore_kept() {
            self.snd_una = first;
            cx.stats.requests_lost_by_target += 1;
        }
    }

    /// The acknowledgment and window of a reply.
    fn on_ack(&mut self, cx: &mut Ctx<'_, A>, r: &Reply<A>) {
        let window = u32::from(r.window) << self.target_wscale;
        if r.ack > self.snd_una && r.ack <= self.snd_nxt {
            self.snd_una = r.ack;
            // A request not answered yet stays at hand once acknowledged:
            // a target that dies now lost it (see `replay_lost_request`).
            let keep = if self.sent_data && !self.response_seen {
                KEEP_UNANSWERED
            } else {
                0
            };
            let freed = self.segs.pop_acked_keeping(r.ack, cx.pool, keep);
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

    /// Queues an acknowledgment for the engine's next flush.
    fn queue_ack(&mut self, forced: bool) {
        self.ack_queued = true;
        self.ack_forced |= forced;
    }

    pub(super) fn send_ack(&mut self, cx: &mut Ctx<'_, A>) {
        self.send_control(cx, TcpFlags::ACK, self.snd_nxt);
        cx.stats.acks_sent += 1;
    }

    /// Sends the acknowledgment queued by replies (the engine's flush).
    pub fn flush_ack(&mut self, cx: &mut Ctx<'_, A>) {
        if self.ack_queued {
            self.ack_queued = false;
            let needed = self.ack_forced || self.ack_sent != self.rcv_nxt;
            self.ack_forced = false;
            if self.state == State::Established && needed {
                self.send_ack(cx);
            }
        }
    }
}
