//! Reading header records out of the program's ring buffer.
//!
//! The kernel side writes one entry per reported reply: a 64-byte
//! [`HeaderRecord`], or, while some tcpcopy asked for payloads, the record
//! followed by the payload length, the stored count and the stored bytes
//! (`PAYLOAD_ENTRY_HEAD`). An entry of any other shape would mean a
//! mismatched object and is counted ([`ReplyRing::bad_entries`]), never
//! forwarded.

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{MapData, RingBuf};
use tcpcopy_common::proto::{HEADER_RECORD_LEN, HeaderRecord, PAYLOAD_ENTRY_HEAD};

/// A reported reply: its record, and its payload bytes when they were
/// copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub record: HeaderRecord,
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
    pub fn header_only(record: HeaderRecord) -> Self {
        Self {
            record,
            payload: None,
        }
    }

    /// Parses one ring entry (see the module docs).
    pub fn from_entry(entry: &[u8]) -> Option<Self> {
        if let Ok(bytes) = <[u8; HEADER_RECORD_LEN]>::try_from(entry) {
            return Some(Self::header_only(HeaderRecord { bytes }));
        }
        let head = entry.get(..PAYLOAD_ENTRY_HEAD)?;
        let record = HeaderRecord {
            bytes: head[..HEADER_RECORD_LEN].try_into().ok()?,
        };
        let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
        let (len, stored) = (word(HEADER_RECORD_LEN), word(HEADER_RECORD_LEN + 4));
        let bytes = entry.get(PAYLOAD_ENTRY_HEAD..PAYLOAD_ENTRY_HEAD + stored as usize)?;
        if stored > len {
            return None;
        }
        Some(Self {
            record,
            payload: Some(ReplyPayload {
                len,
                bytes: bytes.into(),
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
    pub fn drain(&mut self, max: usize, mut on_record: impl FnMut(HeaderRecord)) -> usize {
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
