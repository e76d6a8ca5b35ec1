//! A worker's engines: one session engine per IP family, behind the
//! operations a worker needs, so the worker drives a dual-stack replay as
//! it drives a single engine.
//!
//! Each family's engine is compiled on its own (the engine is generic over
//! the address type), so IPv4 pays nothing for IPv6; the IPv6 engine
//! exists only when a rule has an IPv6 target. Client packets go to the
//! engine of their IP version, replies to the engine of their record's
//! family; a packet of a family without an engine goes to the IPv4 engine,
//! which counts it as not its own (as it always did). Each engine holds
//! its sessions to the memory cap (`-m`) on its own: with rules of both
//! families, a shard may use the cap once per family.

use std::collections::HashMap;

use tcpcopy_common::proto::{Add6, ClientMsg, HeaderRecord, HeaderRecord6};

use crate::{
    compare::report::EndpointCounts,
    engine::{Announcement, Config, Engine, EngineStats, Instant, Outbox},
};

/// A reply record of either family, as intercept (or the dry run's
/// simulated target) reports it.
#[derive(Clone, Copy, Debug)]
pub enum ReplyRecord<'a> {
    V4(&'a HeaderRecord),
    V6(&'a HeaderRecord6),
}

/// An announcement for intercept, in its family's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceMsg {
    V4(ClientMsg),
    V6(Add6),
}

impl From<&Announcement<[u8; 4]>> for AnnounceMsg {
    fn from(a: &Announcement<[u8; 4]>) -> Self {
        Self::V4(a.message())
    }
}

impl From<&Announcement<[u8; 16]>> for AnnounceMsg {
    fn from(a: &Announcement<[u8; 16]>) -> Self {
        Self::V6(Add6 {
            client_ip: a.client.addr,
            client_port: a.client.port,
            target_ip: a.target.addr,
            target_port: a.target.port,
        })
    }
}

/// One shard of the replay: its IPv4 engine and, with IPv6 rules, its
/// IPv6 engine.
pub struct Shard {
    v4: Engine,
    v6: Option<Engine<[u8; 16]>>,
}

impl Shard {
    /// Shard `shard` of `shards` for the rules of `config`.
    pub fn new(config: Config, shard: u16, shards: u16) -> Self {
        let v6 = config
            .rules
            .iter()
            .any(|r| r.target.is_ipv6())
            .then(|| Engine::new(config.clone(), shard, shards));
        Self {
            v4: Engine::new(config, shard, shards),
            v6,
        }
    }

    pub fn config(&self) -> &Config {
        self.v4.config()
    }

    /// A captured client packet (an IP packet of either version) of replay
    /// round `round`.
    pub fn on_client_packet(&mut self, now: Instant, packet: &[u8], round: u16) {
        match (&mut self.v6, packet.first().map(|b| b >> 4)) {
            (Some(v6), Some(6)) => v6.on_client_packet_in_round(now, packet, round),
            _ => self.v4.on_client_packet_in_round(now, packet, round),
        }
    }

    /// A reply record, with its payload bytes when intercept sent them.
    pub fn on_reply(&mut self, now: Instant, record: ReplyRecord<'_>, payload: Option<&[u8]>) {
        match record {
            ReplyRecord::V4(r) => self.v4.on_reply_payload(now, r, payload),
            ReplyRecord::V6(r) => match &mut self.v6 {
                Some(v6) => v6.on_reply6(now, r, payload),
                // No IPv6 session was ever announced: not ours.
                None => self.v4.count_foreign_reply(),
            },
        }
    }

    /// Sends the acknowledgments replies made due (after a batch of them).
    pub fn flush(&mut self, now: Instant) {
        self.v4.flush(now);
        if let Some(v6) = &mut self.v6 {
            v6.flush(now);
        }
    }

    /// Handles the deadlines due at `now`, in each engine that has some.
    pub fn on_timer(&mut self, now: Instant) {
        if self.v4.next_deadline().is_some_and(|d| d <= now) {
            self.v4.on_timer(now);
        }
        if let Some(v6) = &mut self.v6
            && v6.next_deadline().is_some_and(|d| d <= now)
        {
            v6.on_timer(now);
        }
    }

    /// The earliest time [`Shard::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let v6 = self.v6.as_ref().and_then(Engine::next_deadline);
        match (self.v4.next_deadline(), v6) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn sum(&self, f: impl Fn(&Engine) -> usize, g: impl Fn(&Engine<[u8; 16]>) -> usize) -> usize {
        f(&self.v4) + self.v6.as_ref().map_or(0, g)
    }

    /// Sessions whose SYN the target has not answered yet.
    pub fn handshaking_sessions(&self) -> usize {
        self.sum(Engine::handshaking_sessions, Engine::handshaking_sessions)
    }

    /// Memory counted against the cap, both families.
    pub fn memory_used(&self) -> usize {
        self.sum(Engine::memory_used, Engine::memory_used)
    }

    /// Sessions in the tables (lingering ones included).
    pub fn session_count(&self) -> usize {
        self.sum(Engine::session_count, Engine::session_count)
    }

    pub fn buffered_bytes(&self) -> usize {
        self.sum(Engine::buffered_bytes, Engine::buffered_bytes)
    }

    /// Ends the sessions with nothing left to replay (the capture file
    /// ended); returns how many are still open.
    pub fn end_settled(&mut self, now: Instant) -> usize {
        self.v4.end_settled(now) + self.v6.as_mut().map_or(0, |e| e.end_settled(now))
    }

    /// Resets every open session (tcpcopy is stopping).
    pub fn shutdown(&mut self, now: Instant) {
        self.v4.shutdown(now);
        if let Some(v6) = &mut self.v6 {
            v6.shutdown(now);
        }
    }

    /// Both engines' counters, added up.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.v4.stats().clone();
        if let Some(v6) = &self.v6 {
            s.add(v6.stats());
        }
        s
    }

    /// A CLIENT_ADD (or Add6) for every open session.
    pub fn live_announcements(&self) -> Vec<AnnounceMsg> {
        let v4 = self.v4.live_announcements();
        let v6 = self
            .v6
            .as_ref()
            .map(Engine::live_announcements)
            .unwrap_or_default();
        v4.iter()
            .map(AnnounceMsg::from)
            .chain(v6.iter().map(AnnounceMsg::from))
            .collect()
    }

    /// `--compare`: the differences found since the last call.
    pub fn take_compare_records(&mut self) -> Vec<String> {
        let mut records = self.v4.take_compare_records();
        if let Some(v6) = &mut self.v6 {
            records.extend(v6.take_compare_records());
        }
        records
    }

    /// `--compare`: counts per endpoint since the last call.
    pub fn take_endpoint_counts(&mut self) -> HashMap<(String, u16), EndpointCounts> {
        let mut counts = self.v4.take_endpoint_counts();
        if let Some(v6) = &mut self.v6 {
            for (k, c) in v6.take_endpoint_counts() {
                counts.entry(k).or_default().add(&c);
            }
        }
        counts
    }

    /// Each engine's outbox: what to announce and send (drain them after
    /// each batch, IPv4's first).
    pub fn outboxes(&mut self) -> (&mut Outbox, Option<&mut Outbox<[u8; 16]>>) {
        (self.v4.outbox(), self.v6.as_mut().map(Engine::outbox))
    }
}
