//! Reading header records out of the program's ring buffer.
//!
//! The kernel side writes one entry per reported reply, of either family
//! (the first byte's version nibble tells them apart):
//!
//! - IPv4: a 64-byte [`HeaderRecord`], or, while some tcpcopy asked for
//!   payloads, the record followed by the payload length, the stored count
//!   and the stored bytes (`PAYLOAD_ENTRY_HEAD`);
//! - IPv6: an 88-byte [`HeaderRecord6`], or the record, the two lengths and
//!   the bytes (`PAYLOAD_ENTRY6_HEAD`).
//!
//! An entry of any other shape would mean a mismatched object and is
//! counted ([`ReplyRing::bad_entries`]), never forwarded.

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{MapData, RingBuf};
use tcpcopy_common::proto::{
    HEADER_RECORD_LEN, HEADER_RECORD6_LEN, HeaderRecord, HeaderRecord6, PAYLOAD_ENTRY_HEAD,
    PAYLOAD_ENTRY6_HEAD,
};

/// A reply's header record, of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyRecord {
    V4(HeaderRecord),
    V6(HeaderRecord6),
}

impl ReplyRecord {
    /// The TCP flags byte.
    pub fn tcp_flags(&self) -> u8 {
        match self {
            Self::V4(r) => r.tcp_flags(),
            Self::V6(r) => r.tcp_flags(),
        }
    }

    /// Payload bytes of the reply; `None` when the lengths cannot be.
    pub fn payload_len(&self) -> Option<usize> {
        match self {
            Self::V4(r) => r.payload_len(),
            Self::V6(r) => r.payload_len(),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self, Self::V6(_))
    }
}

impl From<HeaderRecord> for ReplyRecord {
    fn from(r: HeaderRecord) -> Self {
        Self::V4(r)
    }
}

impl From<HeaderRecord6> for ReplyRecord {
    fn from(r: HeaderRecord6) -> Self {
        Self::V6(r)
    }
}

/// A reported reply: its record, and its payload bytes when they were
/// copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub record: ReplyRecord,
    pub payload: Option<ReplyPayload>,
}

/// Payload bytes of a reply, perhaps cut at the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPayload {
    /// Payload bytes the reply had.
    pub len: u32,
    /// The first of them (at most `len`).
    pub bytes: Box<[u8]>,
}

impl Reply {
    pub fn header_only(record: impl Into<ReplyRecord>) -> Self {
        Self {
            record: record.into(),
            payload: None,
        }
    }

    /// Parses one ring entry (see the module docs).
    pub fn from_entry(entry: &[u8]) -> Option<Self> {
        match entry.first()? >> 4 {
            4 => Self::parse::<HEADER_RECORD_LEN, PAYLOAD_ENTRY_HEAD>(entry, |bytes| {
                HeaderRecord { bytes }.into()
            }),
            6 => Self::parse::<HEADER_RECORD6_LEN, PAYLOAD_ENTRY6_HEAD>(entry, |bytes| {
                HeaderRecord6 { bytes }.into()
            }),
            _ => None,
        }
    }

    /// An entry of one family: a record of `LEN` bytes alone, or the
    /// record, two lengths (`HEAD` bytes in all) and the stored bytes.
    fn parse<const LEN: usize, const HEAD: usize>(
        entry: &[u8],
        record: impl Fn([u8; LEN]) -> ReplyRecord,
    ) -> Option<Self> {
        if let Ok(bytes) = <[u8; LEN]>::try_from(entry) {
            return Some(Self::header_only(record(bytes)));
        }
        let head = entry.get(..HEAD)?;
        let record = record(head[..LEN].try_into().ok()?);
        let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
        let (len, stored) = (word(LEN), word(LEN + 4));
        if stored > len || entry.len() != HEAD + stored as usize {
            return None;
        }
        Some(Self {
            record,
            payload: Some(ReplyPayload {
                len,
                bytes: entry[HEAD..].into(),
            }),
        })
    }
}

/// The consumer side of the `RECORDS` ring buffer.
pub struct ReplyRing {
    ring: RingBuf<MapData>,
    bad_entries: u64,
}

impl ReplyRing {
    pub(crate) fn new(ring: RingBuf<MapData>) -> Self {
        Self {
            ring,
            bad_entries: 0,
        }
    }

    /// Reads at most `max` records, oldest first, handing each to
    /// `on_record`; returns how many were read. Fewer than `max` means the
    /// ring is empty for now.
    pub fn drain(&mut self, max: usize, mut on_record: impl FnMut(ReplyRecord)) -> usize {
        self.drain_replies(max, |reply| on_record(reply.record))
    }

    /// As [`drain`](Self::drain), with each reply's payload when it has one.
    pub fn drain_replies(&mut self, max: usize, mut on_reply: impl FnMut(Reply)) -> usize {
        let mut read = 0;
        while read < max {
            let Some(item) = self.ring.next() else { break };
            read += 1;
            match Reply::from_entry(&item) {
                Some(reply) => on_reply(reply),
                None => self.bad_entries += 1,
            }
        }
        read
    }

    /// Entries of no known shape (a mismatched object).
    pub fn bad_entries(&self) -> u64 {
        self.bad_entries
    }
}

/// The ring's file descriptor polls readable when records are waiting.
impl AsRawFd for ReplyRing {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u8) -> HeaderRecord {
        let mut r = HeaderRecord::default();
        r.bytes[0] = 0x45;
        r.bytes[63] = n;
        r
    }

    fn v6(n: u8) -> HeaderRecord6 {
        let mut r = HeaderRecord6::default();
        r.bytes[0] = 0x60;
        r.bytes[87] = n;
        r
    }

    fn with_payload(record: &[u8], len: u32, bytes: &[u8]) -> Vec<u8> {
        let mut e = record.to_vec();
        e.extend_from_slice(&len.to_ne_bytes());
        e.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
        e.extend_from_slice(bytes);
        e
    }

    #[test]
    fn entries_of_both_families_are_told_apart_by_the_version_nibble() {
        assert_eq!(
            Reply::from_entry(&v4(1).bytes),
            Some(Reply::header_only(v4(1)))
        );
        assert_eq!(
            Reply::from_entry(&v6(2).bytes),
            Some(Reply::header_only(v6(2)))
        );
        let e = with_payload(&v6(3).bytes, 10, b"abc");
        let got = Reply::from_entry(&e).unwrap();
        assert_eq!(got.record, ReplyRecord::V6(v6(3)));
        let p = got.payload.unwrap();
        assert_eq!((p.len, &*p.bytes), (10, &b"abc"[..]));
        let e = with_payload(&v4(4).bytes, 3, b"xyz");
        let got = Reply::from_entry(&e).unwrap();
        assert_eq!(got.record, ReplyRecord::V4(v4(4)));
        assert_eq!(&*got.payload.unwrap().bytes, b"xyz");
    }

    #[test]
    fn entries_of_no_known_shape_are_refused() {
        // A version nibble of neither family, an empty entry, an IPv6
        // record the size of an IPv4 one, more stored than the payload had,
        // a stored count that disagrees with the bytes there.
        let mut bad_version = v4(1);
        bad_version.bytes[0] = 0x55;
        let mut short6 = v6(1).bytes.to_vec();
        short6.truncate(64);
        let mut over = with_payload(&v6(1).bytes, 2, b"abc");
        let mut cut = with_payload(&v4(1).bytes, 10, b"abc");
        cut.pop();
        for entry in [&bad_version.bytes[..], &[], &short6, &over, &cut] {
            assert_eq!(Reply::from_entry(entry), None, "{entry:?}");
        }
        over.truncate(10);
        assert_eq!(Reply::from_entry(&over), None);
    }
}
