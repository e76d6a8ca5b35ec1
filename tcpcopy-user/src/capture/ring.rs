//! Reading captured frames out of the inline program's ring buffer.
//!
//! Each entry is a `tcpcopy_common::capture` record: a header (capture
//! time, lengths, where the IPv4 header starts) and the frame. The reader
//! hands out the IPv4 packet (link-layer header skipped) with its capture
//! time. An entry that cannot be read (a mismatched object) is counted,
//! never handed out.

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{Array, MapData, RingBuf};
use tcpcopy_common::capture::CaptureHeader;

/// The consumer side of the `PACKETS` ring buffer, and the `READER` flag
/// that asks the program for a wake-up (see `tcpcopy-ebpf`'s inline
/// program: it wakes the reader only after [`PacketRing::arm_wakeup`]).
pub struct PacketRing {
    ring: RingBuf<MapData>,
    reader: Array<MapData, u32>,
    bad_entries: u64,
    truncated: u64,
}

impl PacketRing {
    pub(crate) fn new(ring: RingBuf<MapData>, reader: Array<MapData, u32>) -> Self {
        Self {
            ring,
            reader,
            bad_entries: 0,
            truncated: 0,
        }
    }

    /// Asks the program to wake the reader at the next record (call
    /// before sleeping, then read once more: a record that came before
    /// this is found by that read, one after it wakes the reader).
    pub fn arm_wakeup(&mut self) {
        if self.reader.set(0, 1, 0).is_err() {
            // Without the flag the reader is never woken: it polls.
            tracing::warn!("cannot set the capture ring's wake-up flag");
        }
        // The flag store before the next look at the ring (the program
        // commits, then reads the flag).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Reads at most `max` frames, oldest first, handing each one's capture
    /// time (CLOCK_MONOTONIC nanoseconds) and IPv4 packet to `on_packet`;
    /// returns how many entries were read. Fewer than `max`: the ring is
    /// empty for now.
    pub fn drain(&mut self, max: usize, mut on_packet: impl FnMut(u64, &[u8])) -> usize {
        let mut read = 0;
        while read < max {
            let Some(item) = self.ring.next() else { break };
            read += 1;
            match CaptureHeader::parse(&item) {
                Some((h, frame)) if usize::from(h.l3_off) < frame.len() => {
                    if h.cap_len < h.frame_len {
                        // Cut short: the engine cannot replay a partial packet.
                        self.truncated += 1;
                        continue;
                    }
                    on_packet(h.tstamp_ns, &frame[usize::from(h.l3_off)..]);
                }
                _ => self.bad_entries += 1,
            }
        }
        read
    }

    /// Entries that could not be read (a mismatched object).
    pub fn bad_entries(&self) -> u64 {
        self.bad_entries
    }

    /// Frames larger than the capture limit, skipped.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

/// The ring's file descriptor polls readable when frames are waiting.
impl AsRawFd for PacketRing {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl crate::worker::PacketSource for PacketRing {
    fn drain(&mut self, max: usize, on_packet: &mut dyn FnMut(u64, u16, &[u8])) -> usize {
        PacketRing::drain(self, max, |ts, packet| on_packet(ts, 0, packet))
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.as_raw_fd()]
    }

    fn arm_wakeup(&mut self) -> bool {
        PacketRing::arm_wakeup(self);
        true
    }

    fn dropped(&self) -> crate::worker::SourceDrops {
        crate::worker::SourceDrops {
            unusable: self.bad_entries + self.truncated,
            ..Default::default()
        }
    }
}
