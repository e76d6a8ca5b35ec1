//! Reading header records out of the program's ring buffer.
//!
//! The kernel side writes exactly one 64-byte [`HeaderRecord`] per reported
//! reply; an entry of any other size would mean a mismatched object and is
//! counted ([`ReplyRing::bad_entries`]), never forwarded.

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{MapData, RingBuf};
use tcpcopy_common::proto::{HEADER_RECORD_LEN, HeaderRecord};

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
        let mut read = 0;
        while read < max {
            let Some(item) = self.ring.next() else { break };
            read += 1;
            match <[u8; HEADER_RECORD_LEN]>::try_from(&*item) {
                Ok(bytes) => on_record(HeaderRecord { bytes }),
                Err(_) => self.bad_entries += 1,
            }
        }
        read
    }

    /// Entries whose size was not [`HEADER_RECORD_LEN`] (a mismatched object).
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
