//! Ending a session: noticing that both sides closed, resetting the
//! target's side and lingering; and reconnecting, when the target closed
//! early with client data left to replay.

use super::{Ctx, Session, State, Step};
use crate::{
    engine::{Endpoint, close::CloseReason, outbox::EventKind, time::Instant},
    packet::{Address, TcpFlags},
};

impl<A: Address> Session<A> {
    /// Ends the session when both sides have closed.
    pub(super) fn check_closed(&mut self, cx: &mut Ctx<'_, A>) -> Step {
        let fin_acked = self.fin_sent && self.snd_una == self.snd_nxt;
        if fin_acked && self.target_fin {
            return Step::End(CloseReason::Completed);
        }
        if fin_acked && self.close_at.is_never() {
            self.close_at = cx.now + cx.config.linger;
        }
        Step::Continue
    }

    /// Resets the target's side of the connection: at the sequence number
    /// it acknowledged, and at ours when data is in flight (one of them is
    /// the exact number it accepts a reset at).
    fn send_resets(&mut self, cx: &mut Ctx<'_, A>) {
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

    /// Ends the session: resets the target's side (unless the target ended
    /// it), frees the buffer, and lingers.
    pub fn end(&mut self, cx: &mut Ctx<'_, A>, reason: CloseReason) {
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
    pub fn reconnect(
        &mut self,
        cx: &mut Ctx<'_, A>,
        client: Endpoint<A>,
        target_reset: bool,
    ) -> Step {
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
        self.target_rst = false;
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
}
