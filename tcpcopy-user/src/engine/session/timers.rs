//! Time: the next deadline a session needs, and what is due when it comes
//! (handshake, response and keepalive timeouts, retransmissions,
//! zero-window probes, capture holes, the end of lingering).

use super::{Ctx, Session, State, Step};
use crate::{
    engine::{close::CloseReason, config::Config, time::Instant},
    packet::Address,
};

impl<A: Address> Session<A> {
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
    pub fn on_timer(&mut self, cx: &mut Ctx<'_, A>) -> Step {
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
                    return Step::End(if self.refused {
                        CloseReason::TargetRefused
                    } else {
                        CloseReason::HandshakeTimeout
                    });
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

    fn on_timer_established(&mut self, cx: &mut Ctx<'_, A>) -> Step {
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
}
