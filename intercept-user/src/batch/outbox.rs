//! One peer's output: encoded record frames waiting for its TCP socket.
//!
//! The buffer is bounded: a frame that would push it past its limit is
//! refused whole (the caller counts its records dropped), so a slow or stuck
//! tcpcopy costs a fixed amount of memory and never holds up the others.
//! Frames are written in order and never split across refusals: the byte
//! stream a peer receives is always a sequence of whole frames. The outbox
//! knows where each frame ends, so it can tell how many records were fully
//! written and how many were still queued when the peer went away.
//!
//! IPv6 records go out in frames of their own (the protocol's IPv6
//! extension): [`Outbox::push_frame6`] and [`Outbox::push_payload_record6`].
//! The caller queues them only for a peer that announced IPv6 sessions.

use std::{
    collections::VecDeque,
    io::{self, Write},
};

use tcpcopy_common::proto::{
    HeaderRecord, HeaderRecord6, MAX_FRAME_LEN, MAX_FRAME6_LEN, MAX_RECORDS_PER_FRAME,
    PAYLOAD_HEAD_LEN, PAYLOAD6_HEAD_LEN, PayloadRecordHead, encode_frame, encode_frame6,
    encode_payload6_head,
};

/// The largest record frame of either family.
const MAX_ANY_FRAME_LEN: usize = if MAX_FRAME6_LEN > MAX_FRAME_LEN {
    MAX_FRAME6_LEN
} else {
    MAX_FRAME_LEN
};

/// The frame did not fit in the outbox; its records are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub records: usize,
}

#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// (end offset in `buf`, records) of each frame not fully written.
    frames: VecDeque<(usize, u16)>,
    limit: usize,
}

impl Outbox {
    /// An outbox holding at most `limit` unsent bytes (at least one frame).
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            sent: 0,
            frames: VecDeque::new(),
            limit: limit.max(MAX_ANY_FRAME_LEN),
        }
    }

    /// Bytes queued and not written yet.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// Records in frames not fully written yet.
    pub fn pending_records(&self) -> u64 {
        self.frames.iter().map(|&(_, n)| u64::from(n)).sum()
    }

    /// Queues `records` (at most 16) as one frame.
    pub fn push_frame(&mut self, records: &[HeaderRecord]) -> Result<(), Overflow> {
        debug_assert!(records.len() <= MAX_RECORDS_PER_FRAME);
        let mut frame = [0u8; MAX_FRAME_LEN];
        let len = encode_frame(records, &mut frame);
        self.push_records(&frame[..len], records.len())
    }

    /// Queues IPv6 `records` (at most 16) as one IPv6 record frame.
    pub fn push_frame6(&mut self, records: &[HeaderRecord6]) -> Result<(), Overflow> {
        debug_assert!(records.len() <= MAX_RECORDS_PER_FRAME);
        let mut frame = [0u8; MAX_FRAME6_LEN];
        let len = encode_frame6(records, &mut frame);
        self.push_records(&frame[..len], records.len())
    }

    /// Queues one encoded frame of `records` records (at most 16), whole
    /// or not at all.
    fn push_records(&mut self, frame: &[u8], records: usize) -> Result<(), Overflow> {
        if self.pending_bytes() + frame.len() > self.limit {
            return Err(Overflow { records });
        }
        self.buf.extend_from_slice(frame);
        let n = records.min(MAX_RECORDS_PER_FRAME) as u16;
        self.frames.push_back((self.buf.len(), n));
        Ok(())
    }

    /// Queues one payload record frame (the extension): `head` then the
    /// stored bytes, counted as one record.
    pub fn push_payload_record(
        &mut self,
        head: &PayloadRecordHead,
        bytes: &[u8],
    ) -> Result<(), Overflow> {
        let len = PAYLOAD_HEAD_LEN + bytes.len();
        if self.pending_bytes() + len > self.limit {
            return Err(Overflow { records: 1 });
        }
        self.buf.extend_from_slice(&head.encode());
        self.buf.extend_from_slice(bytes);
        self.frames.push_back((self.buf.len(), 1));
        Ok(())
    }

    /// Queues one IPv6 payload record frame: `record`, the reply's payload
    /// length `payload_len`, then the stored `bytes`, counted as one record.
    pub fn push_payload_record6(
        &mut self,
        record: &HeaderRecord6,
        payload_len: u32,
        bytes: &[u8],
    ) -> Result<(), Overflow> {
        let len = PAYLOAD6_HEAD_LEN + bytes.len();
        if self.pending_bytes() + len > self.limit {
            return Err(Overflow { records: 1 });
        }
        self.buf.extend_from_slice(&encode_payload6_head(
            record,
            payload_len,
            bytes.len() as u32,
        ));
        self.buf.extend_from_slice(bytes);
        self.frames.push_back((self.buf.len(), 1));
        Ok(())
    }

    /// Queues bytes that are not a record frame (an extension's answer) as
    /// one unit of no records.
    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if self.pending_bytes() + bytes.len() > self.limit {
            return Err(Overflow { records: 0 });
        }
        self.buf.extend_from_slice(bytes);
        self.frames.push_back((self.buf.len(), 0));
        Ok(())
    }

    /// Writes until the socket would block or nothing is left. Returns how
    /// many records were fully written by this call. `WouldBlock` is not an
    /// error (check [`is_empty`](Self::is_empty)); any other error is.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<u64> {
        while self.sent < self.buf.len() {
            match out.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut completed = 0;
        while let Some(&(end, n)) = self.frames.front() {
            if end > self.sent {
                break;
            }
            self.frames.pop_front();
            completed += u64::from(n);
        }
        self.compact();
        Ok(completed)
    }

    /// Reclaims written bytes: all of them when everything went out, else
    /// once they are the larger part of the buffer (amortised O(1)).
    fn compact(&mut self) {
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            self.frames.clear();
        } else if self.sent > self.buf.len() / 2 && self.sent >= MAX_ANY_FRAME_LEN {
            let sent = self.sent;
            self.buf.drain(..sent);
            self.sent = 0;
            for (end, _) in &mut self.frames {
                *end -= sent;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::RecordFrameDecoder;

    use super::*;

    fn rec(n: u8) -> HeaderRecord {
        let mut r = HeaderRecord::default();
        r.bytes.fill(n);
        r
    }

    /// A socket that accepts `budget` bytes per write call, then blocks.
    struct SlowSocket {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for SlowSocket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.per_call);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn decode(bytes: &[u8]) -> Vec<HeaderRecord> {
        let mut dec = RecordFrameDecoder::new();
        let mut out = Vec::new();
        dec.push(bytes, |r| out.push(*r)).unwrap();
        assert!(dec.at_boundary());
        out
    }

    #[test]
    fn frames_go_out_whole_and_in_order_across_partial_writes() {
        let mut ob = Outbox::new(1 << 20);
        let recs: Vec<HeaderRecord> = (0..40).map(rec).collect();
        for chunk in recs.chunks(16) {
            ob.push_frame(chunk).unwrap();
        }
        assert_eq!(ob.pending_records(), 40);
        let mut sock = SlowSocket {
            got: Vec::new(),
            per_call: 100,
            calls_left: 3,
        };
        assert_eq!(
            ob.write_to(&mut sock).unwrap(),
            0,
            "300 bytes: no frame complete"
        );
        sock.calls_left = 10;
        assert_eq!(
            ob.write_to(&mut sock).unwrap(),
            16,
            "the first frame is done"
        );
        sock.calls_left = usize::MAX;
        assert_eq!(ob.write_to(&mut sock).unwrap(), 24);
        assert!(ob.is_empty());
        assert_eq!(decode(&sock.got), recs);
    }

    #[test]
    fn a_full_outbox_refuses_whole_frames() {
        let frame_len = 2 + 16 * 64;
        let mut ob = Outbox::new(2 * frame_len);
        let recs: Vec<HeaderRecord> = (0..16).map(rec).collect();
        ob.push_frame(&recs).unwrap();
        ob.push_frame(&recs).unwrap();
        assert_eq!(ob.push_frame(&recs[..1]), Err(Overflow { records: 1 }));
        assert_eq!(ob.pending_records(), 32);
        // Once written, there is room again, and the stream stays well formed.
        let mut sock = SlowSocket {
            got: Vec::new(),
            per_call: usize::MAX,
            calls_left: usize::MAX,
        };
        assert_eq!(ob.write_to(&mut sock).unwrap(), 32);
        ob.push_frame(&recs[..1]).unwrap();
        assert_eq!(ob.write_to(&mut sock).unwrap(), 1);
        assert_eq!(decode(&sock.got).len(), 33);
    }

    #[test]
    fn compaction_keeps_frame_accounting_right() {
        let mut ob = Outbox::new(1 << 20);
        let recs: Vec<HeaderRecord> = (0..16).map(rec).collect();
        let mut sock = SlowSocket {
            got: Vec::new(),
            per_call: 700,
            calls_left: 0,
        };
        let mut completed = 0;
        for _ in 0..50 {
            ob.push_frame(&recs).unwrap();
            sock.calls_left = 2;
            completed += ob.write_to(&mut sock).unwrap();
        }
        sock.calls_left = usize::MAX;
        completed += ob.write_to(&mut sock).unwrap();
        assert_eq!(completed, 800);
        assert_eq!(decode(&sock.got).len(), 800);
    }

    #[test]
    fn payload_records_go_out_whole_and_count_as_one_record_each() {
        let mut outbox = Outbox::new(1 << 16);
        outbox.push_frame(&[rec(1)]).unwrap();
        let head = PayloadRecordHead {
            record: rec(2),
            payload_len: 10,
            stored: 3,
        };
        outbox.push_payload_record(&head, b"abc").unwrap();
        assert_eq!(outbox.pending_records(), 2);
        let mut sink = Vec::new();
        assert_eq!(outbox.write_to(&mut sink).unwrap(), 2);
        let mut got = Vec::new();
        let mut decoder = Box::new(tcpcopy_common::proto::ReplyStreamDecoder::new());
        decoder
            .push(&sink, |e| {
                if let tcpcopy_common::proto::ReplyEvent::Record { record, payload } = e {
                    got.push((record.bytes[0], payload.map(|(b, n)| (b.to_vec(), n))));
                }
            })
            .unwrap();
        assert_eq!(got, [(1, None), (2, Some((b"abc".to_vec(), 10)))]);
        // A payload record that does not fit is refused whole.
        let mut small = Outbox::new(MAX_ANY_FRAME_LEN);
        let big = vec![0u8; MAX_ANY_FRAME_LEN];
        assert_eq!(
            small.push_payload_record(&head, &big),
            Err(Overflow { records: 1 })
        );
        assert!(small.is_empty());
    }

    #[test]
    fn a_broken_socket_is_an_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut ob = Outbox::new(1 << 20);
        ob.push_frame(&[rec(1)]).unwrap();
        assert!(ob.write_to(&mut Broken).is_err());
        assert_eq!(ob.pending_records(), 1);
    }

    #[test]
    fn ipv6_records_go_out_in_ipv6_frames_beside_1x_ones() {
        let mut r6 = HeaderRecord6::default();
        r6.bytes[0] = 0x60;
        r6.bytes[87] = 6;
        let mut outbox = Outbox::new(1 << 16);
        outbox.push_frame(&[rec(1)]).unwrap();
        outbox.push_frame6(&[r6, r6]).unwrap();
        outbox.push_payload_record6(&r6, 9, b"xy").unwrap();
        assert_eq!(outbox.pending_records(), 4);
        let mut sink = Vec::new();
        assert_eq!(outbox.write_to(&mut sink).unwrap(), 4);
        // The IPv6 frame's bytes: mark 0x8006, count 2, the records.
        assert_eq!(sink[66..70], [0x80, 0x06, 0, 2]);
        let mut got = Vec::new();
        let mut decoder = Box::new(tcpcopy_common::proto::ReplyStreamDecoder::new());
        decoder
            .push(&sink, |e| match e {
                tcpcopy_common::proto::ReplyEvent::Record { record, .. } => {
                    got.push((4, record.bytes[0], None));
                }
                tcpcopy_common::proto::ReplyEvent::Record6 { record, payload } => {
                    got.push((6, record.bytes[87], payload.map(|(b, n)| (b.to_vec(), n))));
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
        assert!(decoder.at_boundary());
        assert_eq!(
            got,
            [
                (4, 1, None),
                (6, 6, None),
                (6, 6, None),
                (6, 6, Some((b"xy".to_vec(), 9)))
            ]
        );
        // A 1.x decoder refuses the IPv6 frame: it must only reach peers
        // that announced IPv6 sessions.
        let mut legacy = RecordFrameDecoder::new();
        assert!(legacy.push(&sink, |_| {}).is_err());
    }
}
