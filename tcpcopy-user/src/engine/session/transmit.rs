//! Frames into the outbox: buffered client segments (first sends and
//! retransmissions, re-addressed, with our acknowledgment, window and
//! timestamps), the pure ACKs and resets built here, and the
//! retransmission timeout.

use super::{Ctx, OUR_WINDOW, Session};
use crate::packet::{
    Address, SeqNumber, TcpFlags, TcpPacket,
    options::write_timestamp_option,
    tcp::{Rewrite, SegmentRepr},
};

impl<A: Address> Session<A> {
    pub(super) fn rto(&self, cx: &Ctx<'_, A>) -> std::time::Duration {
        // No multiplication before the first retransmission (nearly
        // always): a `Duration` product carries nanoseconds into seconds,
        // with overflow checks, and this runs on every first send.
        let backed_off = match self.backoff {
            0 => cx.config.rto,
            n => cx.config.rto * (1u32 << n.min(16)),
        };
        backed_off.min(cx.config.rto_max)
    }

    /// Sends the next unsent segment for the first time.
    pub(super) fn send_next(&mut self, cx: &mut Ctx<'_, A>) {
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
    pub(super) fn emit_front(&mut self, cx: &mut Ctx<'_, A>) {
        if !self.segs.is_empty() {
            self.emit_segment(cx, 0);
        }
    }

    /// Writes buffered segment `idx` to the outbox, re-addressed and with
    /// our acknowledgment, window and timestamps.
    fn emit_segment(&mut self, cx: &mut Ctx<'_, A>, idx: usize) {
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
        let mut p = TcpPacket::<_, A>::new_validated(
            frame,
            usize::from(seg.ip_len),
            usize::from(seg.tcp_len),
        );
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
    pub(super) fn send_control(&mut self, cx: &mut Ctx<'_, A>, flags: TcpFlags, seq: SeqNumber) {
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
}
