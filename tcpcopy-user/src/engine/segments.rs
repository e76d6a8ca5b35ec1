//! The per-session segment queue: captured client segments in sequence
//! order. It is both the pacing buffer (segments not sent yet) and the
//! retransmission buffer (sent, not acknowledged yet).
//!
//! Invariants: segments are ordered by sequence number and never overlap;
//! the first `sent` segments have been sent on the current connection and
//! lie below `snd_nxt`; gaps between segments are capture holes. A new
//! segment that overlaps buffered data keeps only its new bytes (it may be
//! cut into pieces that fill several gaps).
//!
//! Packet buffers come from a per-shard [`SegmentPool`], so steady-state
//! capture does not allocate.

use std::collections::VecDeque;

use super::time::Instant;
use crate::packet::{Address, SeqNumber, TcpFlags, TcpOptions, TcpPacket};

/// A client segment, as captured (addresses and ports not yet rewritten).
#[derive(Debug)]
pub struct Segment {
    pub seq: SeqNumber,
    /// Sequence space taken: payload, plus one each for SYN and FIN.
    pub len: u32,
    /// The client's acknowledgment number (the online server's sequence
    /// space): a change marks a new request.
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    /// Offset of the TSval from the TCP header start (0: no timestamp).
    pub ts_offset: u8,
    pub tsval: u32,
    /// When it was captured (how far the replay lags production), in
    /// milliseconds, wrapping: see [`Segment::captured_at`]. Four bytes, not
    /// an eight-byte `Instant`: every idle session keeps room for a few
    /// segments.
    pub captured_ms: u32,
    /// Header lengths of `buf` (IP, TCP), as validated at capture: a frame
    /// copied from it needs no validation again. (They fit in the struct's
    /// padding.)
    pub ip_len: u8,
    pub tcp_len: u8,
    /// The IP packet.
    pub buf: Vec<u8>,
}

/// `now` in milliseconds, wrapping at 2^32 (49.7 days).
pub fn wrapping_ms(now: Instant) -> u32 {
    (now.micros() / 1000) as u32
}

impl Segment {
    /// When the segment was captured, seen from `now`, to the millisecond
    /// (for segments younger than 24 days). A capture time after `now` (a
    /// packet captured after the caller read its clock) reads as `now`.
    pub fn captured_at(&self, now: Instant) -> Instant {
        let age_ms = wrapping_ms(now).wrapping_sub(self.captured_ms);
        if age_ms > u32::MAX / 2 {
            return now;
        }
        Instant::from_micros(now.micros().saturating_sub(u64::from(age_ms) * 1000))
    }

    pub fn end(&self) -> SeqNumber {
        self.seq + self.len
    }

    pub fn has_payload(&self) -> bool {
        self.len > u32::from(self.flags.syn()) + u32::from(self.flags.fin())
    }

    /// A segment holding the whole of `pkt` (no SYN: see [`Segment::syn`]).
    pub fn whole<A: Address>(
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        now: Instant,
        pool: &mut SegmentPool,
    ) -> Self {
        debug_assert!(!pkt.flags().syn());
        let buf = pool.take(pkt.as_bytes());
        Self {
            seq: pkt.seq(),
            len: pkt.seq_len(),
            ack: pkt.ack(),
            flags: pkt.flags(),
            ts_offset: opts.timestamp_offset.unwrap_or(0),
            tsval: opts.timestamp.map_or(0, |t| t.0),
            captured_ms: wrapping_ms(now),
            ip_len: pkt.ip_header_len() as u8,
            tcp_len: pkt.tcp_header_len() as u8,
            buf,
        }
    }

    /// The SYN of `pkt` without any payload it carried (TCP Fast Open data
    /// goes to the queue as an ordinary segment).
    pub fn syn<A: Address>(
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        now: Instant,
        pool: &mut SegmentPool,
    ) -> Self {
        let hdr = pkt.payload_offset();
        let mut buf = pool.take(&pkt.as_bytes()[..hdr]);
        if pkt.payload_len() > 0 {
            A::set_total_len(&mut buf, hdr);
            let mut p =
                TcpPacket::<_, A>::new_checked(&mut buf[..]).expect("headers of a valid packet");
            p.set_flags(TcpFlags(pkt.flags().0 & !TcpFlags::FIN.0));
            p.fill_checksums();
        }
        Self {
            seq: pkt.seq(),
            len: 1,
            ack: pkt.ack(),
            flags: TcpFlags(pkt.flags().0 & !TcpFlags::FIN.0),
            ts_offset: opts.timestamp_offset.unwrap_or(0),
            tsval: opts.timestamp.map_or(0, |t| t.0),
            captured_ms: wrapping_ms(now),
            ip_len: pkt.ip_header_len() as u8,
            tcp_len: pkt.tcp_header_len() as u8,
            buf,
        }
    }

    /// A segment holding the part of `pkt`'s data from sequence number
    /// `from` to `to` (FIN included when `to` is past the payload; a SYN is
    /// never included). Checksums are recomputed.
    pub fn part<A: Address>(
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        from: SeqNumber,
        to: SeqNumber,
        now: Instant,
        pool: &mut SegmentPool,
    ) -> Self {
        let payload = pkt.payload();
        let data_seq = data_start(pkt);
        let end = (to.since(data_seq) as usize).min(payload.len());
        let start = (from.since(data_seq) as usize).min(end);
        let fin = pkt.flags().fin() && to.since(data_seq) as usize > payload.len();
        let hdr = pkt.payload_offset();
        let mut buf = pool.take(&pkt.as_bytes()[..hdr]);
        buf.extend_from_slice(&payload[start..end]);
        let total = buf.len();
        A::set_total_len(&mut buf, total);
        let mut flags = TcpFlags(pkt.flags().0 & !TcpFlags::SYN.0);
        if !fin {
            flags = TcpFlags(flags.0 & !(TcpFlags::FIN.0 | TcpFlags::PSH.0));
        }
        let seq = data_seq + start as u32;
        {
            let mut p = TcpPacket::<_, A>::new_checked(&mut buf[..])
                .expect("headers copied from a valid packet");
            p.set_seq(seq);
            p.set_flags(flags);
            p.fill_checksums();
        }
        Self {
            seq,
            len: (end - start) as u32 + u32::from(fin),
            ack: pkt.ack(),
            flags,
            ts_offset: opts.timestamp_offset.unwrap_or(0),
            tsval: opts.timestamp.map_or(0, |t| t.0),
            captured_ms: wrapping_ms(now),
            ip_len: pkt.ip_header_len() as u8,
            tcp_len: pkt.tcp_header_len() as u8,
            buf,
        }
    }
}

/// Sequence number of `pkt`'s first data byte (after a SYN, if any).
fn data_start<A: Address>(pkt: &TcpPacket<&[u8], A>) -> SeqNumber {
    pkt.seq() + u32::from(pkt.flags().syn())
}

/// Reusable packet buffers of one shard.
#[derive(Debug, Default)]
pub struct SegmentPool {
    free: Vec<Vec<u8>>,
}

impl SegmentPool {
    const MAX_FREE: usize = 8192;
    const MAX_KEPT_CAPACITY: usize = 16 * 1024;

    /// A buffer holding a copy of `bytes`.
    pub fn take(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut v = self.free.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        v
    }

    pub fn give(&mut self, v: Vec<u8>) {
        if self.free.len() < Self::MAX_FREE && v.capacity() <= Self::MAX_KEPT_CAPACITY {
            self.free.push(v);
        }
    }
}

/// Empties `segs`, giving their buffers back to `pool`. (Popping, not
/// `drain(..)`: an empty queue, the usual case, costs one check, and a
/// drain's set-up and drop guard cost more than the few segments a queue
/// holds.)
#[inline]
fn give_all(segs: &mut VecDeque<Segment>, pool: &mut SegmentPool) {
    while let Some(seg) = segs.pop_front() {
        pool.give(seg.buf);
    }
}

/// What inserting a captured packet did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Segments added.
    pub segments: u32,
    /// Buffer bytes added.
    pub bytes: usize,
    /// Part of the packet was already buffered or acknowledged.
    pub trimmed: bool,
    /// The packet was bigger than the MTU and was split.
    pub split: bool,
}

#[derive(Debug, Default)]
pub struct SegmentQueue {
    segs: VecDeque<Segment>,
    /// The first `sent` segments were sent on the current connection.
    sent: usize,
    /// Buffer bytes held (`kept` included).
    bytes: usize,
    /// Acknowledged segments of a request the target has not answered
    /// yet, oldest first: if the target goes away now (a crash acknowledges
    /// and then loses what it read), they are replayed on a new connection.
    kept: VecDeque<Segment>,
    kept_bytes: usize,
}

impl SegmentQueue {
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }
    pub fn len(&self) -> usize {
        self.segs.len()
    }
    /// Segments it holds room for (both deques) without allocating.
    pub fn capacity(&self) -> usize {
        self.segs.capacity() + self.kept.capacity()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn front(&self) -> Option<&Segment> {
        self.segs.front()
    }
    pub fn get(&self, idx: usize) -> Option<&Segment> {
        self.segs.get(idx)
    }
    /// How many segments (from the front) were sent on this connection.
    pub fn sent_count(&self) -> usize {
        self.sent
    }
    pub fn next_unsent(&self) -> Option<&Segment> {
        self.segs.get(self.sent)
    }
    pub fn last_end(&self) -> Option<SeqNumber> {
        self.segs.back().map(Segment::end)
    }
    /// Whether any buffered segment carries data.
    pub fn has_payload(&self) -> bool {
        self.segs.iter().any(Segment::has_payload)
    }
    /// Whether every buffered segment has been sent.
    pub fn all_sent(&self) -> bool {
        self.sent == self.segs.len()
    }

    /// Marks the next unsent segment sent.
    pub fn mark_sent(&mut self) {
        debug_assert!(self.sent < self.segs.len());
        self.sent += 1;
    }

    /// Nothing has been sent on a new connection yet.
    pub fn reset_sent(&mut self) {
        self.sent = 0;
    }

    pub fn push_front(&mut self, seg: Segment) {
        self.bytes += seg.buf.capacity();
        self.segs.push_front(seg);
    }

    /// Drops segments that end at or before `ack`; returns the bytes freed.
    pub fn pop_acked(&mut self, ack: SeqNumber, pool: &mut SegmentPool) -> usize {
        self.pop_acked_keeping(ack, pool, 0)
    }

    /// As [`pop_acked`](Self::pop_acked), but keeps up to `keep_limit`
    /// bytes of the acknowledged segments (see `kept`); returns the bytes
    /// freed.
    pub fn pop_acked_keeping(
        &mut self,
        ack: SeqNumber,
        pool: &mut SegmentPool,
        keep_limit: usize,
    ) -> usize {
        let mut freed = 0;
        while let Some(front) = self.segs.front() {
            if front.end() > ack {
                break;
            }
            let seg = self.segs.pop_front().expect("front exists");
            self.sent = self.sent.saturating_sub(1);
            let size = seg.buf.capacity();
            if self.kept_bytes + size <= keep_limit {
                self.kept_bytes += size;
                self.kept.push_back(seg);
            } else {
                freed += size;
                pool.give(seg.buf);
            }
        }
        self.bytes -= freed;
        freed
    }

    /// Whether acknowledged segments are kept.
    pub fn has_kept(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Frees the kept segments (the target answered); returns the bytes.
    pub fn release_kept(&mut self, pool: &mut SegmentPool) -> usize {
        let freed = self.kept_bytes;
        give_all(&mut self.kept, pool);
        self.kept_bytes = 0;
        self.bytes -= freed;
        freed
    }

    /// Puts the kept segments back in front, to be sent again (on a new
    /// connection: call [`reset_sent`](Self::reset_sent)); returns the
    /// first one's sequence number.
    pub fn restore_kept(&mut self) -> Option<SeqNumber> {
        while let Some(seg) = self.kept.pop_back() {
            self.segs.push_front(seg);
        }
        self.kept_bytes = 0;
        self.segs.front().map(|s| s.seq)
    }

    /// Drops everything; returns the bytes freed.
    pub fn clear(&mut self, pool: &mut SegmentPool) -> usize {
        let freed = self.bytes;
        give_all(&mut self.segs, pool);
        give_all(&mut self.kept, pool);
        self.sent = 0;
        self.bytes = 0;
        self.kept_bytes = 0;
        freed
    }

    /// Inserts the new bytes of captured `pkt` (its data and/or FIN; a SYN's
    /// sequence number is not data):
    /// bytes before `floor` (acknowledged) or already buffered are dropped;
    /// pieces larger than `max_payload` are split.
    pub fn insert<A: Address>(
        &mut self,
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        floor: SeqNumber,
        max_payload: usize,
        now: Instant,
        pool: &mut SegmentPool,
    ) -> Inserted {
        let mut out = Inserted::default();
        let data_seq = data_start(pkt);
        let (mut from, to) = (
            data_seq,
            data_seq + pkt.payload_len() as u32 + u32::from(pkt.flags().fin()),
        );
        if from < floor {
            from = floor;
            out.trimmed = true;
        }
        let whole_fits = pkt.payload_len() <= max_payload;
        // Fast path: in-order append of the whole packet.
        let appends = self.segs.back().is_none_or(|b| b.end() <= from);
        if appends && from == pkt.seq() && !pkt.flags().syn() && whole_fits && from < to {
            self.push(
                self.segs.len(),
                Segment::whole(pkt, opts, now, pool),
                &mut out,
            );
            return out;
        }
        while from < to {
            // Skip buffered segments that end at or before `from`.
            let idx = self.segs.partition_point(|s| s.end() <= from);
            if let Some(s) = self.segs.get(idx)
                && s.seq <= from
            {
                // `from` lies inside a buffered segment: skip past it.
                from = s.end();
                out.trimmed = true;
                continue;
            }
            // A gap from `from` to the next buffered segment (or the end).
            let gap_end = self.segs.get(idx).map_or(to, |s| s.seq.min(to));
            if gap_end < to {
                out.trimmed = true;
            }
            // Fill it in pieces of at most `max_payload` bytes.
            let mut at = idx;
            let mut piece = from;
            while piece < gap_end {
                let mut piece_end = (piece + max_payload as u32).min(gap_end);
                // A trailing FIN rides on the last data piece.
                if pkt.flags().fin() && gap_end == to && piece_end + 1 == to {
                    piece_end = to;
                }
                let seg = Segment::part(pkt, opts, piece, piece_end, now, pool);
                if !whole_fits {
                    out.split = true;
                }
                self.push(at, seg, &mut out);
                at += 1;
                piece = piece_end;
            }
            from = gap_end;
        }
        out
    }

    fn push(&mut self, at: usize, seg: Segment, out: &mut Inserted) {
        debug_assert!(at >= self.sent, "new data never lands among sent segments");
        out.segments += 1;
        out.bytes += seg.buf.capacity();
        self.bytes += seg.buf.capacity();
        if at == self.segs.len() {
            // In order, the usual case: `insert` would take its general
            // path (and a zero-length shift) for it.
            self.segs.push_back(seg);
        } else {
            self.segs.insert(at, seg);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.segs.iter()
    }
}

#[cfg(test)]
mod tests {
    use crate::packet::Ipv4TcpPacket;
    #[test]
    fn capture_times_survive_the_wrap_and_the_future() {
        let seg = |at: Instant| Segment {
            seq: SeqNumber(0),
            len: 0,
            ack: SeqNumber(0),
            flags: TcpFlags::ACK,
            ts_offset: 0,
            tsval: 0,
            captured_ms: wrapping_ms(at),
            ip_len: 20,
            tcp_len: 20,
            buf: Vec::new(),
        };
        let wrap = Instant::from_micros((1u64 << 32) * 1000);
        for captured in [
            Instant::from_secs(10),
            wrap,
            Instant::from_micros(wrap.micros() - 1500),
        ] {
            let now = captured + std::time::Duration::from_secs(7);
            let got = seg(captured).captured_at(now);
            assert!(
                got.micros().abs_diff(captured.micros()) < 1000,
                "{captured:?} -> {got:?}"
            );
        }
        // Captured 3 ms after the caller's clock: reads as now, not 49 days ago.
        let now = Instant::from_secs(100);
        let later = now + std::time::Duration::from_millis(3);
        assert_eq!(seg(later).captured_at(now), now);
    }

    use super::*;
    use crate::packet::tcp::SegmentRepr;

    fn packet(seq: u32, payload: &[u8], fin: bool) -> Vec<u8> {
        let flags = if fin {
            TcpFlags::ACK | TcpFlags::FIN
        } else {
            TcpFlags::ACK | TcpFlags::PSH
        };
        let repr = SegmentRepr {
            src: [198, 18, 1, 2],
            dst: [198, 18, 1, 1],
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(seq),
            ack: SeqNumber(7),
            flags,
            window: 500,
            ttl: 64,
            ip_id: 1,
            options: &[],
            payload,
        };
        let mut out = vec![0; repr.len()];
        repr.emit(&mut out);
        out
    }

    fn insert(
        q: &mut SegmentQueue,
        pool: &mut SegmentPool,
        seq: u32,
        payload: &[u8],
        fin: bool,
    ) -> Inserted {
        let bytes = packet(seq, payload, fin);
        let pkt = Ipv4TcpPacket::new_checked(&bytes[..]).unwrap();
        q.insert(
            &pkt,
            &pkt.options(),
            SeqNumber(100),
            1000,
            Instant::ZERO,
            pool,
        )
    }

    /// The byte stream (and FIN) the queue holds, checked for order,
    /// contiguity from `start` and valid checksums.
    fn stream(q: &SegmentQueue, start: u32) -> (Vec<u8>, bool) {
        let mut at = SeqNumber(start);
        let (mut data, mut fin) = (Vec::new(), false);
        for s in q.iter() {
            assert_eq!(s.seq, at, "contiguous");
            let p = Ipv4TcpPacket::new_checked(&s.buf[..]).unwrap();
            assert!(p.checksums_ok());
            assert_eq!(p.seq(), s.seq);
            data.extend_from_slice(p.payload());
            fin |= s.flags.fin();
            at = s.end();
        }
        (data, fin)
    }

    #[test]
    fn in_order_append_and_fin() {
        let (mut q, mut pool) = (SegmentQueue::default(), SegmentPool::default());
        assert_eq!(insert(&mut q, &mut pool, 100, b"hello ", false).segments, 1);
        insert(&mut q, &mut pool, 106, b"world", true);
        assert_eq!(stream(&q, 100), (b"hello world".to_vec(), true));
        assert_eq!(q.last_end(), Some(SeqNumber(112)));
    }

    #[test]
    fn old_and_duplicate_data_is_dropped() {
        let (mut q, mut pool) = (SegmentQueue::default(), SegmentPool::default());
        let r = insert(&mut q, &mut pool, 90, b"0123456789abc", false);
        assert!(r.trimmed);
        assert_eq!(stream(&q, 100), (b"abc".to_vec(), false));
        let r = insert(&mut q, &mut pool, 50, b"old", false);
        assert_eq!(r.segments, 0);
        let r = insert(&mut q, &mut pool, 100, b"abc", false);
        assert_eq!((r.segments, r.trimmed), (0, true));
    }

    #[test]
    fn holes_are_filled_by_later_retransmissions_spanning_several_gaps() {
        let (mut q, mut pool) = (SegmentQueue::default(), SegmentPool::default());
        insert(&mut q, &mut pool, 100, b"AA", false);
        insert(&mut q, &mut pool, 104, b"CC", false);
        insert(&mut q, &mut pool, 108, b"EE", false);
        assert_eq!(q.len(), 3);
        // One retransmission covering everything, with new bytes in both holes and after.
        let r = insert(&mut q, &mut pool, 100, b"AABBCCDDEEFF", true);
        assert!(r.trimmed);
        assert_eq!(r.segments, 3);
        assert_eq!(stream(&q, 100), (b"AABBCCDDEEFF".to_vec(), true));
    }

    #[test]
    fn oversized_packets_are_split_to_the_mtu() {
        let (mut q, mut pool) = (SegmentQueue::default(), SegmentPool::default());
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let r = insert(&mut q, &mut pool, 100, &payload, true);
        assert!(r.split);
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|s| s.len <= 1001));
        assert_eq!(stream(&q, 100), (payload, true));
        assert!(q.iter().take(2).all(|s| !s.flags.fin()));
    }

    #[test]
    fn acked_segments_return_their_buffers() {
        let (mut q, mut pool) = (SegmentQueue::default(), SegmentPool::default());
        insert(&mut q, &mut pool, 100, b"AA", false);
        insert(&mut q, &mut pool, 102, b"BB", false);
        q.mark_sent();
        q.mark_sent();
        let before = q.bytes();
        let freed = q.pop_acked(SeqNumber(103), &mut pool);
        assert!(freed > 0 && q.bytes() == before - freed);
        assert_eq!(q.len(), 1, "a partly acknowledged segment stays");
        assert!(!q.all_sent() || q.next_unsent().is_none());
        assert_eq!(pool.free.len(), 1);
        q.clear(&mut pool);
        assert_eq!(q.bytes(), 0);
    }
}
