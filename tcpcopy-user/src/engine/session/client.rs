//! Captured client segments: the client's data, FIN and RST buffered for
//! replay, and what its pure ACKs tell (its RTT, the online server's
//! position).

use super::{Ctx, MAX_SEGMENTS, Session, State, Step};
use crate::{
    engine::close::CloseReason,
    packet::{Address, SeqNumber, TcpOptions, TcpPacket},
};

impl<A: Address> Session<A> {
    /// A captured client segment of this session (not its first SYN).
    pub fn on_client(
        &mut self,
        cx: &mut Ctx<'_, A>,
        pkt: &TcpPacket<&[u8], A>,
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
}
