//! What the engine asks its driver to do, collected per call and drained
//! by the driver: frames for the target, announcements for intercept, and
//! session events for statistics.
//!
//! Frames are IP packets (of the engine's family) stored back to back, each preceded by
//! [`HEADROOM`] spare bytes so the sender can write the Ethernet header in
//! place. Nothing here allocates in steady state: the buffers keep their
//! capacity across [`Outbox::clear`].

use tcpcopy_common::proto::ClientMsg;

use super::{Endpoint, close::CloseReason};
use crate::packet::Address;

/// Spare bytes in front of every frame (an Ethernet header).
pub const HEADROOM: usize = 14;

/// A session's milestone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A session started (its SYN, real or faked, is in this outbox).
    Started { faked: bool },
    /// The target completed the handshake.
    Established,
    /// The target closed early; the rest is replayed on a new connection.
    Reconnected,
    /// The session ended.
    Closed(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionEvent<A: Address = [u8; 4]> {
    /// The client address the target sees.
    pub client: Endpoint<A>,
    pub kind: EventKind,
}

#[derive(Debug, Default)]
pub struct Outbox<A: Address = [u8; 4]> {
    bytes: Vec<u8>,
    /// `(offset of the IPv4 packet, its length)`.
    frames: Vec<(usize, usize)>,
    /// New client addresses; each must reach every intercept (as a
    /// CLIENT_ADD) before the SYN it announces (drain these first).
    pub announcements: Vec<Announcement<A>>,
    pub events: Vec<SessionEvent<A>>,
}

/// A client address the target will answer, for intercept to pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement<A: Address = [u8; 4]> {
    /// The client address the target sees.
    pub client: Endpoint<A>,
    pub target: Endpoint<A>,
}

impl Announcement<[u8; 4]> {
    /// The CLIENT_ADD message that tells intercept.
    pub fn message(&self) -> ClientMsg {
        ClientMsg::add(
            self.client.addr,
            self.client.port,
            self.target.addr,
            self.target.port,
        )
    }
}

impl<A: Address> Outbox<A> {
    /// Appends a frame holding a copy of `bytes` and returns it for
    /// patching (written once: no zero fill first).
    pub(crate) fn push_frame_copy(&mut self, bytes: &[u8]) -> &mut [u8] {
        let start = self.bytes.len() + HEADROOM;
        self.bytes.extend_from_slice(&[0; HEADROOM]);
        self.bytes.extend_from_slice(bytes);
        self.frames.push((start, bytes.len()));
        &mut self.bytes[start..]
    }

    /// Reserves a frame of `len` bytes and returns it for writing.
    pub(crate) fn push_frame(&mut self, len: usize) -> &mut [u8] {
        let start = self.bytes.len() + HEADROOM;
        // Zero-filled once per capacity growth, not per frame: the caller
        // overwrites all `len` bytes and the headroom is the sender's.
        self.bytes.resize(start + len, 0);
        self.frames.push((start, len));
        &mut self.bytes[start..start + len]
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.announcements.is_empty() && self.events.is_empty()
    }

    /// The IPv4 packets, in order.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.frames.iter().map(|&(s, l)| &self.bytes[s..s + l])
    }

    /// Frame `i` with its headroom in front (`HEADROOM + len` bytes).
    pub fn frame_with_headroom(&self, i: usize) -> &[u8] {
        let (s, l) = self.frames[i];
        &self.bytes[s - HEADROOM..s + l]
    }

    /// Appends a copy of an IPv4 packet as a frame, as the engine does
    /// (for tests, benchmarks and tools that feed a sender directly).
    pub fn push_packet(&mut self, packet: &[u8]) {
        self.push_frame_copy(packet);
    }

    /// Frame `i` with its headroom in front (`HEADROOM + len` bytes).
    pub fn frame_with_headroom_mut(&mut self, i: usize) -> &mut [u8] {
        let (s, l) = self.frames[i];
        &mut self.bytes[s - HEADROOM..s + l]
    }

    /// Forgets everything (keeps the capacity).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.announcements.clear();
        self.events.clear();
    }
}
