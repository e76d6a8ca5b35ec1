//! Starting a session: from a captured SYN, or mid-stream with a SYN of
//! our own; sending that SYN; and the target's answer to it (SYN-ACK or
//! refusal).

use super::{Ctx, OUR_WINDOW, Session, State, Step};
use crate::{
    engine::{outbox::EventKind, reply::Reply, segments::Segment, time::Instant},
    packet::{
        Address, SeqNumber, TcpFlags, TcpOptions, TcpPacket,
        options::write_syn_options,
        tcp::{SegmentRepr, TCP_HEADER_LEN},
    },
};

impl<A: Address> Session<A> {
    /// Starts from a captured SYN: it goes out (re-addressed) at once.
    pub fn start_with_syn(
        &mut self,
        cx: &mut Ctx<'_, A>,
        syn: &TcpPacket<&[u8], A>,
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
        cx: &mut Ctx<'_, A>,
        first: &TcpPacket<&[u8], A>,
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
    pub(super) fn fake_syn(&mut self, cx: &mut Ctx<'_, A>, isn: SeqNumber, tsval: Option<u32>) {
        self.isn = isn;
        self.tsval_sent = tsval.unwrap_or(0);
        self.snd_una = isn;
        self.snd_nxt = isn;
        self.syn_ws = false;
        self.syn_ts = tsval.is_some();
        let mut opts = [0u8; 20];
        // `-D` is an IPv4 MSS: the IPv6 header takes 20 bytes more of
        // the same MTU.
        let mss = cx
            .config
            .fake_mss
            .saturating_sub((A::HEADER_LEN - <[u8; 4]>::HEADER_LEN) as u16);
        let n = write_syn_options(&mut opts, mss, tsval.map(|v| (v, 0)), None);
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
            captured_ms: crate::engine::segments::wrapping_ms(cx.now),
            ip_len: A::HEADER_LEN as u8,
            tcp_len: (TCP_HEADER_LEN + n) as u8,
            buf,
        };
        *cx.buffered += seg.buf.capacity();
        self.segs.push_front(seg);
        self.send_syn(cx);
    }

    fn send_syn(&mut self, cx: &mut Ctx<'_, A>) {
        self.state = State::SynSent;
        self.started_at = cx.now;
        self.refused = false;
        if !self.segs.all_sent() {
            self.segs.mark_sent();
        }
        self.snd_nxt = self.isn + 1;
        self.emit_front(cx);
        self.backoff = 0;
        self.rto_at = cx.now + cx.config.syn_rto;
    }

    pub(super) fn on_reply_syn_sent(&mut self, cx: &mut Ctx<'_, A>, r: &Reply<A>) -> Step {
        if r.flags.rst() {
            if r.flags.ack() && r.ack != self.isn + 1 {
                return Step::Continue; // not about our SYN
            }
            // Refused: the target may be restarting (production accepted
            // this connection). The SYN goes again on its retransmission
            // schedule (already armed) until the handshake deadline; then
            // the session ends as TargetRefused.
            cx.stats.syn_refused += 1;
            self.refused = true;
            return Step::Continue;
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
}
