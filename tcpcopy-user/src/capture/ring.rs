//! Reading captured frames out of the inline program's ring buffers.
//!
//! Each entry is a `tcpcopy_common::capture` record: a header (capture
//! time, lengths, where the IP header starts) and the frame. The reader
//! hands out the IP packet (link-layer header skipped) with its capture
//! time. An entry that cannot be read (a mismatched object) is counted,
//! never handed out.
//!
//! With `--compare` a second ring holds production's answers (the TC
//! egress program's). The two are merged by capture time, so the engine
//! sees a response after the request that caused it and before the
//! client's next one (bytes-mode comparison ends production's exchange at
//! the client's next data). A record is handed out once every record of
//! the other ring with an earlier time has been read: records are held
//! until both rings have been read past their time, or were found empty
//! [`MERGE_SLACK_NS`] after it (a record is time-stamped just before its
//! commit).

use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, RawFd},
};

use aya::maps::{Array, MapData, RingBuf};
use tcpcopy_common::capture::CaptureHeader;

use crate::clock;

/// How long after its capture time a record may still be uncommitted in
/// its ring (stamped, then copied and committed on another CPU): a ring
/// found empty at time `t` holds nothing older than `t - MERGE_SLACK_NS`.
pub const MERGE_SLACK_NS: u64 = 200_000;

/// The consumer side of the `PACKETS` ring buffer (and, for `--compare`,
/// of `RESPONSES`), and the `READER` flag that asks the programs for a
/// wake-up (see `tcpcopy-ebpf`'s copy module: they wake the reader only
/// after [`PacketRing::arm_wakeup`]).
pub struct PacketRing {
    ring: RingBuf<MapData>,
    responses: Option<(RingBuf<MapData>, Merge)>,
    reader: Array<MapData, u32>,
    bad_entries: u64,
    truncated: u64,
}

impl PacketRing {
    pub(crate) fn new(
        ring: RingBuf<MapData>,
        responses: Option<RingBuf<MapData>>,
        reader: Array<MapData, u32>,
    ) -> Self {
        Self {
            ring,
            responses: responses.map(|r| (r, Merge::default())),
            reader,
            bad_entries: 0,
            truncated: 0,
        }
    }

    /// Asks the programs to wake the reader at the next record (call
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

    /// Reads at most `max` frames of each ring, oldest first, handing each
    /// one's capture time (CLOCK_MONOTONIC nanoseconds) and IP packet to
    /// `on_packet`; returns how many entries were read (or, when none was,
    /// how many held ones were handed out). Fewer than `max`: the rings
    /// are empty for now.
    pub fn drain(&mut self, max: usize, mut on_packet: impl FnMut(u64, &[u8])) -> usize {
        let (bad, truncated) = (&mut self.bad_entries, &mut self.truncated);
        let Some((responses, merge)) = &mut self.responses else {
            return read_ring(&mut self.ring, max, bad, truncated, on_packet);
        };
        let started = clock::now_ns();
        let requests = read_ring(&mut self.ring, max, bad, truncated, |ts, p| {
            merge.push(Side::Requests, ts, p)
        });
        let answers = read_ring(responses, max, bad, truncated, |ts, p| {
            merge.push(Side::Responses, ts, p)
        });
        let read_to = |side, n| {
            if n < max {
                started.saturating_sub(MERGE_SLACK_NS)
            } else {
                merge.last_ts(side)
            }
        };
        let mark = read_to(Side::Requests, requests).min(read_to(Side::Responses, answers));
        let released = merge.release(mark, &mut on_packet);
        (requests + answers).max(released)
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

/// Reads at most `max` entries of `ring`; returns how many were read.
fn read_ring(
    ring: &mut RingBuf<MapData>,
    max: usize,
    bad_entries: &mut u64,
    truncated: &mut u64,
    mut on_packet: impl FnMut(u64, &[u8]),
) -> usize {
    let mut read = 0;
    while read < max {
        let Some(item) = ring.next() else { break };
        read += 1;
        match CaptureHeader::parse(&item) {
            Some((h, frame)) if usize::from(h.l3_off) < frame.len() => {
                if h.cap_len < h.frame_len {
                    // Cut short: the engine cannot use a partial packet.
                    *truncated += 1;
                    continue;
                }
                on_packet(h.tstamp_ns, &frame[usize::from(h.l3_off)..]);
            }
            _ => *bad_entries += 1,
        }
    }
    read
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Requests = 0,
    Responses = 1,
}

/// Records of two rings, held until they can be handed out in capture
/// time order (each ring's own order is kept).
#[derive(Default)]
struct Merge {
    held: [VecDeque<(u64, Vec<u8>)>; 2],
    /// The capture time of the last record read from each ring.
    last: [u64; 2],
    /// Emptied buffers, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Merge {
    fn push(&mut self, side: Side, ts: u64, packet: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        self.held[side as usize].push_back((ts, buf));
        self.last[side as usize] = ts;
    }

    fn last_ts(&self, side: Side) -> u64 {
        self.last[side as usize]
    }

    /// Hands out, in time order, the held records stamped at or before
    /// `mark`; returns how many.
    fn release(&mut self, mark: u64, on_packet: &mut impl FnMut(u64, &[u8])) -> usize {
        let mut n = 0;
        loop {
            let front = |q: &VecDeque<(u64, Vec<u8>)>| q.front().map(|(ts, _)| *ts);
            let side = match (front(&self.held[0]), front(&self.held[1])) {
                (Some(a), Some(b)) => usize::from(b < a),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => break,
            };
            let Some((ts, _)) = self.held[side].front() else {
                break;
            };
            if *ts > mark {
                break;
            }
            let (ts, buf) = self.held[side].pop_front().expect("looked at above");
            on_packet(ts, &buf);
            n += 1;
            if self.spare.len() < 1024 {
                self.spare.push(buf);
            }
        }
        n
    }

    /// When the oldest held record is due, if nothing else is read first.
    fn next_due_ns(&self) -> Option<u64> {
        self.held
            .iter()
            .filter_map(|q| q.front().map(|(ts, _)| *ts))
            .min()
            .map(|ts| ts + MERGE_SLACK_NS)
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
        let mut fds = vec![self.as_raw_fd()];
        fds.extend(self.responses.as_ref().map(|(r, _)| r.as_raw_fd()));
        fds
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

    fn next_due_ns(&self) -> Option<u64> {
        self.responses.as_ref().and_then(|(_, m)| m.next_due_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(m: &mut Merge, mark: u64) -> Vec<(u64, u8)> {
        let mut out = Vec::new();
        m.release(mark, &mut |ts, p| out.push((ts, p[0])));
        out
    }

    #[test]
    fn records_come_out_in_time_order_up_to_the_mark() {
        let mut m = Merge::default();
        for (side, ts, tag) in [
            (Side::Requests, 10, 1),
            (Side::Requests, 30, 3),
            (Side::Responses, 20, 2),
            (Side::Responses, 40, 4),
            (Side::Requests, 50, 5),
        ] {
            m.push(side, ts, &[tag]);
        }
        assert_eq!(
            (m.last_ts(Side::Requests), m.last_ts(Side::Responses)),
            (50, 40)
        );
        assert_eq!(released(&mut m, 35), vec![(10, 1), (20, 2), (30, 3)]);
        assert_eq!(m.next_due_ns(), Some(40 + MERGE_SLACK_NS));
        assert_eq!(released(&mut m, 39), vec![]);
        assert_eq!(released(&mut m, u64::MAX), vec![(40, 4), (50, 5)]);
        assert_eq!(m.next_due_ns(), None);
    }

    #[test]
    fn a_ring_keeps_its_own_order_and_equal_times_go_requests_first() {
        let mut m = Merge::default();
        // Stamped out of order across CPUs: the ring's order is kept.
        m.push(Side::Requests, 20, &[1]);
        m.push(Side::Requests, 15, &[2]);
        m.push(Side::Responses, 20, &[3]);
        assert_eq!(released(&mut m, 100), vec![(20, 1), (15, 2), (20, 3)]);
    }
}
