//! Batching: records for one tcpcopy connection leave in frames of up to 16.
//!
//! Adaptive, as TCPCopy 1.x's combined mode: a peer's [`Batcher`] is flushed
//! into its [`outbox::Outbox`] when it holds 16 records, when the ring
//! buffer has run dry (low load: nothing more is coming right now, so send
//! at once), or when its oldest record has waited [`MAX_BATCH_WAIT`]. Under
//! load frames fill up; when traffic is light every record leaves on the
//! next loop turn. No record waits longer than [`MAX_BATCH_WAIT`] plus one
//! loop turn.
//!
//! A flush ([`queue_replies`]) writes each family's records in frames of
//! that family: IPv4 records in a 1.x frame, IPv6 records in an IPv6
//! record frame (the protocol's IPv6 extension), or, for a peer granted
//! payloads, a payload record frame of the record's family each.

pub mod outbox;

use std::time::{Duration, Instant};

use tcpcopy_common::proto::{
    HeaderRecord, HeaderRecord6, MAX_RECORDS_PER_FRAME, PayloadRecordHead,
};

use self::outbox::Outbox;
use crate::capture::ring::{Reply, ReplyRecord};

/// The longest a record waits for its frame to fill.
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(2);

/// Records waiting for one peer's next frame.
#[derive(Debug)]
pub struct Batcher {
    records: Vec<Reply>,
    oldest: Option<Instant>,
    max_wait: Duration,
}

impl Default for Batcher {
    fn default() -> Self {
        Self::new(MAX_BATCH_WAIT)
    }
}

impl Batcher {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            records: Vec::with_capacity(MAX_RECORDS_PER_FRAME),
            oldest: None,
            max_wait,
        }
    }

    /// Adds a record. The caller must flush first when [`is_full`](Self::is_full).
    pub fn push(&mut self, rec: Reply, now: Instant) {
        debug_assert!(!self.is_full());
        self.oldest.get_or_insert(now);
        self.records.push(rec);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.records.len() >= MAX_RECORDS_PER_FRAME
    }

    /// When the oldest record's wait is up, if any record waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.max_wait)
    }

    /// The flush rule (module docs): full, input idle, or waited long enough.
    pub fn should_flush(&self, now: Instant, input_idle: bool) -> bool {
        !self.is_empty()
            && (self.is_full() || input_idle || self.deadline().is_some_and(|d| now >= d))
    }

    /// Takes the waiting records (one frame's worth at most).
    pub fn take(&mut self) -> Vec<Reply> {
        self.oldest = None;
        std::mem::replace(&mut self.records, Vec::with_capacity(MAX_RECORDS_PER_FRAME))
    }
}

/// Queues `replies` (one batch, at most 16) into `outbox`: without a
/// payload grant, the IPv4 ones as one 1.x frame and the IPv6 ones as one
/// IPv6 frame; with a grant of `payload_cap` bytes, one payload record
/// frame each, in order. Each session's records keep their order (a
/// session is of one family). Returns how many records were dropped
/// because the outbox was full.
pub fn queue_replies(outbox: &mut Outbox, replies: &[Reply], payload_cap: Option<u32>) -> usize {
    match payload_cap {
        None => queue_frames(outbox, replies),
        Some(cap) => queue_payload_records(outbox, replies, cap),
    }
}

/// Header-only frames, one per family present.
fn queue_frames(outbox: &mut Outbox, replies: &[Reply]) -> usize {
    let mut v4: Vec<HeaderRecord> = Vec::new();
    let mut v6: Vec<HeaderRecord6> = Vec::new();
    for reply in replies {
        match reply.record {
            ReplyRecord::V4(r) => v4.push(r),
            ReplyRecord::V6(r) => v6.push(r),
        }
    }
    let mut dropped = 0;
    if !v4.is_empty()
        && let Err(overflow) = outbox.push_frame(&v4)
    {
        dropped += overflow.records;
    }
    if !v6.is_empty()
        && let Err(overflow) = outbox.push_frame6(&v6)
    {
        dropped += overflow.records;
    }
    dropped
}

/// Payload records, one frame each, in order. A reply reported without its
/// bytes (copied before this peer asked, or a parked SYN/RST) says so: 0
/// stored of its payload length.
fn queue_payload_records(outbox: &mut Outbox, replies: &[Reply], cap: u32) -> usize {
    let mut dropped = 0;
    for reply in replies {
        let (len, bytes) = match &reply.payload {
            Some(p) => (p.len, &p.bytes[..p.bytes.len().min(cap as usize)]),
            None => (reply.record.payload_len().unwrap_or(0) as u32, &[][..]),
        };
        let queued = match &reply.record {
            ReplyRecord::V4(record) => {
                let head = PayloadRecordHead {
                    record: *record,
                    payload_len: len,
                    stored: bytes.len() as u32,
                };
                outbox.push_payload_record(&head, bytes)
            }
            ReplyRecord::V6(record) => outbox.push_payload_record6(record, len, bytes),
        };
        if queued.is_err() {
            dropped += 1;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::{RecordFrameDecoder, ReplyEvent, ReplyStreamDecoder};

    use super::*;
    use crate::capture::ring::ReplyPayload;

    fn rec(n: u8) -> Reply {
        let mut r = HeaderRecord::default();
        r.bytes[0] = 0x45;
        r.bytes[63] = n;
        Reply::header_only(r)
    }

    #[test]
    fn a_lone_record_leaves_as_soon_as_the_input_is_idle() {
        let now = Instant::now();
        let mut b = Batcher::default();
        assert!(!b.should_flush(now, true), "nothing to flush");
        b.push(rec(1), now);
        assert!(!b.should_flush(now, false), "more records are coming");
        assert!(b.should_flush(now, true));
        assert_eq!(b.take(), vec![rec(1)]);
        assert!(b.is_empty() && b.deadline().is_none());
    }

    #[test]
    fn a_full_frame_leaves_at_once() {
        let now = Instant::now();
        let mut b = Batcher::default();
        for i in 0..16 {
            assert!(!b.should_flush(now, false), "after {i}");
            b.push(rec(i), now);
        }
        assert!(b.is_full());
        assert!(b.should_flush(now, false));
        assert_eq!(b.take().len(), 16);
    }

    #[test]
    fn under_steady_load_no_record_waits_past_the_deadline() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        b.push(rec(1), t0);
        b.push(rec(2), t0 + Duration::from_millis(1));
        assert_eq!(b.deadline(), Some(t0 + MAX_BATCH_WAIT), "the oldest counts");
        assert!(!b.should_flush(t0 + Duration::from_micros(1999), false));
        assert!(b.should_flush(t0 + MAX_BATCH_WAIT, false));
        b.take();
        b.push(rec(3), t0 + Duration::from_millis(3));
        assert_eq!(
            b.deadline(),
            Some(t0 + Duration::from_millis(3) + MAX_BATCH_WAIT)
        );
    }

    fn rec6(n: u8) -> Reply {
        let mut r = HeaderRecord6::default();
        r.bytes[0] = 0x60;
        r.bytes[87] = n;
        Reply::header_only(r)
    }

    /// One record as a peer read it: family, last record byte, payload.
    type ReadRecord = (u8, u8, Option<(Vec<u8>, u32)>);

    /// What a peer would read from `outbox`, and the frame marks in order.
    fn read_back(outbox: &mut Outbox) -> (Vec<ReadRecord>, Vec<u16>) {
        let mut sink = Vec::new();
        outbox.write_to(&mut sink).unwrap();
        let mut got = Vec::new();
        let mut decoder = Box::new(ReplyStreamDecoder::new());
        decoder
            .push(&sink, |e| match e {
                ReplyEvent::Record { record, payload } => {
                    got.push((4, record.bytes[63], payload.map(|(b, n)| (b.to_vec(), n))))
                }
                ReplyEvent::Record6 { record, payload } => {
                    got.push((6, record.bytes[87], payload.map(|(b, n)| (b.to_vec(), n))))
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
        assert!(decoder.at_boundary());
        // The frames' marks (a 1.x frame starts with its count).
        let mut marks = Vec::new();
        let mut at = 0;
        while at < sink.len() {
            let mark = u16::from_be_bytes([sink[at], sink[at + 1]]);
            marks.push(mark);
            at += match mark {
                0x8006 => 4 + 88 * usize::from(u16::from_be_bytes([sink[at + 2], sink[at + 3]])),
                0x8072 | 0x8071 => {
                    let head = if mark == 0x8072 {
                        2 + 88 + 8
                    } else {
                        2 + 64 + 8
                    };
                    let stored =
                        u32::from_be_bytes(sink[at + head - 4..at + head].try_into().unwrap());
                    head + stored as usize
                }
                n => 2 + 64 * usize::from(n),
            };
        }
        (got, marks)
    }

    #[test]
    fn a_mixed_batch_leaves_as_one_frame_per_family() {
        let mut outbox = Outbox::new(1 << 16);
        let batch = [rec(1), rec6(2), rec(3), rec6(4), rec6(5)];
        assert_eq!(queue_replies(&mut outbox, &batch, None), 0);
        assert_eq!(outbox.pending_records(), 5);
        let (got, marks) = read_back(&mut outbox);
        assert_eq!(marks, [2, 0x8006], "a 1.x frame of 2, an IPv6 frame");
        let order: Vec<(u8, u8)> = got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(order, [(4, 1), (4, 3), (6, 2), (6, 4), (6, 5)]);
        // An IPv4-only batch is exactly a 1.x frame: a 1.x decoder reads it.
        let mut outbox = Outbox::new(1 << 16);
        queue_replies(&mut outbox, &[rec(7), rec(8)], None);
        let mut sink = Vec::new();
        outbox.write_to(&mut sink).unwrap();
        let mut legacy = RecordFrameDecoder::new();
        let mut n = 0;
        legacy.push(&sink, |_| n += 1).unwrap();
        assert_eq!((n, sink.len()), (2, 2 + 2 * 64));
    }

    #[test]
    fn a_peer_granted_payloads_gets_payload_frames_of_each_family() {
        let mut outbox = Outbox::new(1 << 16);
        let mut with_bytes = rec6(9);
        with_bytes.payload = Some(ReplyPayload {
            len: 100,
            bytes: b"HTTP/1.1 200 OK".to_vec().into(),
        });
        let batch = [rec(1), with_bytes, rec6(3)];
        assert_eq!(queue_replies(&mut outbox, &batch, Some(4)), 0);
        let (got, marks) = read_back(&mut outbox);
        assert_eq!(marks, [0x8071, 0x8072, 0x8072]);
        assert_eq!(got[1], (6, 9, Some((b"HTTP".to_vec(), 100))));
        // Without bytes: 0 stored of the record's own payload length.
        assert_eq!(got[2].2, Some((Vec::new(), 0)));
    }

    #[test]
    fn a_full_outbox_drops_whole_frames_of_either_family() {
        let mut outbox = Outbox::new(0);
        let full: Vec<Reply> = (0..16).map(rec6).collect();
        assert_eq!(queue_replies(&mut outbox, &full, None), 0);
        // The outbox holds one largest frame: the next ones are refused.
        assert_eq!(queue_replies(&mut outbox, &[rec(1), rec6(2)], None), 2);
        assert_eq!(outbox.pending_records(), 16);
    }
}
