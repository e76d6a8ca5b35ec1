//! Pacing: what may go to the target now. A new request waits until the
//! response to the previous one is complete, a client FIN or RST until the
//! target has answered; a session that falls behind pipelines instead.

use super::{CLOSE_QUIET, Ctx, LAN_RTT_US, Session, State, Step};
use crate::{
    engine::{close::CloseReason, time::Instant},
    packet::{Address, SeqNumber},
};

impl<A: Address> Session<A> {
    /// Sends what pacing and the target's window allow.
    pub(super) fn pump(&mut self, cx: &mut Ctx<'_, A>) -> Step {
        if self.state != State::Established {
            return Step::Continue;
        }
        if self.target_rst && self.client_rst {
            // Both ends gone: nothing to replay, nobody to tell.
            return Step::End(CloseReason::TargetReset);
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
                    target_reset: self.target_rst,
                };
            }
            if fin && self.target_rst {
                // The client closes a connection the target already reset.
                return Step::End(CloseReason::TargetReset);
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

    fn start_request(&mut self, cx: &mut Ctx<'_, A>, ack: SeqNumber) {
        // The previous request was answered (or given up on): its bytes
        // are not needed any more.
        *cx.buffered -= self.segs.release_kept(cx.pool);
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
    fn release_ok(&mut self, cx: &mut Ctx<'_, A>, next_ack: SeqNumber) -> bool {
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
    fn close_ok(&mut self, cx: &mut Ctx<'_, A>, close_ack: SeqNumber) -> bool {
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
    fn quiet(&self, cx: &Ctx<'_, A>) -> std::time::Duration {
        let rtt = if self.rtt_known {
            std::time::Duration::from_micros(u64::from(self.client_rtt_us))
        } else {
            cx.config.default_rtt
        };
        let quiet = if rtt.as_micros() <= u128::from(LAN_RTT_US) {
            std::time::Duration::ZERO
        } else {
            rtt
        };
        quiet.max(cx.config.min_response_quiet)
    }
}
