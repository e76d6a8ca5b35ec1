//! The route table: which tcpcopy connection owns the replies of a session.
//!
//! A route maps a session `(client ip, client port, target ip, target port)`
//! (the client as the target sees it) to the peer that announced it: with a
//! CLIENT_ADD for IPv4 ([`RouteKey`]), with an IPv6 announcement (`Add6`)
//! for IPv6 ([`RouteKey6`]). The table is keyed by either family
//! ([`SessionKey`]); each family has its own maps inside, so IPv4 routes
//! cost what they did, but both share one capacity and one aging.
//! TCPCopy never withdraws routes reliably, so the table ages
//! them out instead, in two generations: announcements and lookups put a
//! route in the current generation; when a generation is older than the idle
//! time, or holds half the capacity, the previous one is dropped whole. A
//! route therefore lives at least one idle time after its last use, and the
//! table never holds more than `capacity` routes: O(1) per operation, no
//! per-route timers.
//!
//! Routes of a peer that went away are not searched out: the caller checks
//! that the owner still exists ([`RouteTable::lookup`] takes the check) and
//! the stale route is forgotten then, or ages out.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tcpcopy_common::proto::{Add6, ClientMsg, HeaderRecord, HeaderRecord6};

use crate::capture::ring::ReplyRecord;

/// A tcpcopy connection, numbered in accept order; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// A session of one family as the target sees it (`A`: the address octets,
/// `[u8; 4]` or `[u8; 16]`). Ports in host order, the address octets as on
/// the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey<A = [u8; 4]> {
    pub client_ip: A,
    pub client_port: u16,
    pub target_ip: A,
    pub target_port: u16,
}

/// An IPv6 session (see [`RouteKey`]).
pub type RouteKey6 = RouteKey<[u8; 16]>;

impl RouteKey {
    /// The session a CLIENT_ADD announces.
    pub fn of_msg(msg: &ClientMsg) -> Self {
        Self {
            client_ip: msg.client_ip,
            client_port: msg.client_port,
            target_ip: msg.target_ip,
            target_port: msg.target_port,
        }
    }

    /// The session a reply belongs to: it goes from the target to the client.
    pub fn of_record(rec: &HeaderRecord) -> Self {
        Self {
            client_ip: rec.dst_addr(),
            client_port: rec.dst_port(),
            target_ip: rec.src_addr(),
            target_port: rec.src_port(),
        }
    }
}

impl RouteKey6 {
    /// The session an IPv6 announcement announces.
    pub fn of_add6(msg: &Add6) -> Self {
        Self {
            client_ip: msg.client_ip,
            client_port: msg.client_port,
            target_ip: msg.target_ip,
            target_port: msg.target_port,
        }
    }

    /// The session an IPv6 reply belongs to.
    pub fn of_record6(rec: &HeaderRecord6) -> Self {
        Self {
            client_ip: rec.dst_addr(),
            client_port: rec.dst_port(),
            target_ip: rec.src_addr(),
            target_port: rec.src_port(),
        }
    }
}

/// A session of either family: what the route table is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKey {
    V4(RouteKey),
    V6(RouteKey6),
}

impl SessionKey {
    /// The session a reply of either family belongs to.
    pub fn of_reply(rec: &ReplyRecord) -> Self {
        match rec {
            ReplyRecord::V4(r) => Self::V4(RouteKey::of_record(r)),
            ReplyRecord::V6(r) => Self::V6(RouteKey6::of_record6(r)),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self, Self::V6(_))
    }
}

impl From<RouteKey> for SessionKey {
    fn from(key: RouteKey) -> Self {
        Self::V4(key)
    }
}

impl From<RouteKey6> for SessionKey {
    fn from(key: RouteKey6) -> Self {
        Self::V6(key)
    }
}

/// One generation of routes, a map per family.
#[derive(Default)]
struct Generation {
    v4: HashMap<RouteKey, PeerId>,
    v6: HashMap<RouteKey6, PeerId>,
}

impl Generation {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn get(&self, key: &SessionKey) -> Option<PeerId> {
        match key {
            SessionKey::V4(k) => self.v4.get(k).copied(),
            SessionKey::V6(k) => self.v6.get(k).copied(),
        }
    }

    fn contains(&self, key: &SessionKey) -> bool {
        self.get(key).is_some()
    }

    fn insert(&mut self, key: SessionKey, peer: PeerId) {
        match key {
            SessionKey::V4(k) => self.v4.insert(k, peer),
            SessionKey::V6(k) => self.v6.insert(k, peer),
        };
    }

    fn remove(&mut self, key: &SessionKey) -> Option<PeerId> {
        match key {
            SessionKey::V4(k) => self.v4.remove(k),
            SessionKey::V6(k) => self.v6.remove(k),
        }
    }
}

/// Sessions -> the peer that announced them, aged in two generations.
pub struct RouteTable {
    current: Generation,
    previous: Generation,
    generation_started: Instant,
    idle: Duration,
    capacity: usize,
}

impl RouteTable {
    /// A table whose routes live at least `idle` after their last use and
    /// which never holds more than `capacity` routes (at least 2).
    pub fn new(now: Instant, idle: Duration, capacity: usize) -> Self {
        Self {
            current: Generation::default(),
            previous: Generation::default(),
            generation_started: now,
            idle,
            capacity: capacity.max(2),
        }
    }

    /// Routes held (current and previous generation, both families).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// IPv6 routes held.
    pub fn len6(&self) -> usize {
        self.current.v6.len() + self.previous.v6.len()
    }

    /// Routes the replies of `key` to `peer` (a newer announcement wins).
    /// Returns how many routes aged out to make room.
    pub fn announce(&mut self, key: impl Into<SessionKey>, peer: PeerId, now: Instant) -> usize {
        let key = key.into();
        self.previous.remove(&key);
        let aged = if self.current.len() >= self.capacity / 2 && !self.current.contains(&key) {
            self.rotate(now)
        } else {
            0
        };
        self.current.insert(key, peer);
        aged
    }

    /// Forgets `key` if `peer` owns it (a CLIENT_DEL).
    pub fn withdraw(&mut self, key: &SessionKey, peer: PeerId) {
        for generation in [&mut self.current, &mut self.previous] {
            if generation.get(key) == Some(peer) {
                generation.remove(key);
            }
        }
    }

    /// The live owner of `key`. A route whose owner is gone (`is_live`
    /// false) is forgotten and reported as no route.
    pub fn lookup(&mut self, key: &SessionKey, is_live: impl Fn(PeerId) -> bool) -> Option<PeerId> {
        if let Some(peer) = self.current.get(key) {
            if is_live(peer) {
                return Some(peer);
            }
            self.current.remove(key);
            return None;
        }
        let peer = self.previous.remove(key)?;
        if !is_live(peer) {
            return None;
        }
        // Used again: keep it for another generation. Room is made by the
        // next announcement or expiry; lookups never evict.
        self.current.insert(*key, peer);
        Some(peer)
    }

    /// Drops the previous generation if the current one is older than the
    /// idle time. Returns how many routes aged out.
    pub fn expire(&mut self, now: Instant) -> usize {
        if now.duration_since(self.generation_started) >= self.idle {
            self.rotate(now)
        } else {
            0
        }
    }

    /// When [`expire`](Self::expire) next has work to do.
    pub fn next_expiry(&self) -> Instant {
        self.generation_started + self.idle
    }

    fn rotate(&mut self, now: Instant) -> usize {
        let aged = self.previous.len();
        self.previous = std::mem::take(&mut self.current);
        self.generation_started = now;
        aged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> SessionKey {
        SessionKey::V4(RouteKey {
            client_ip: [198, 18, 1, 2],
            client_port: port,
            target_ip: [198, 18, 2, 2],
            target_port: 80,
        })
    }

    /// The IPv6 session of the same numbers (2001:db8:1::2 -> 2001:db8:2::2).
    fn key6(port: u16) -> SessionKey {
        let mut client = [0u8; 16];
        client[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        client[15] = 2;
        let mut target = client;
        target[5] = 2;
        SessionKey::V6(RouteKey6 {
            client_ip: client,
            client_port: port,
            target_ip: target,
            target_port: 80,
        })
    }

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);
    const IDLE: Duration = Duration::from_secs(60);

    fn live(_: PeerId) -> bool {
        true
    }

    #[test]
    fn route_key_of_a_reply_swaps_source_and_destination() {
        let msg = ClientMsg::add([198, 18, 1, 2], 40000, [198, 18, 2, 2], 80);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[12..16].copy_from_slice(&[198, 18, 2, 2]);
        ip[16..20].copy_from_slice(&[198, 18, 1, 2]);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        let rec = HeaderRecord::from_headers(&ip, &tcp);
        assert_eq!(RouteKey::of_record(&rec), RouteKey::of_msg(&msg));
    }

    #[test]
    fn announced_routes_are_found_and_a_newer_announcement_wins() {
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 100);
        assert_eq!(t.lookup(&key(1), live), None);
        t.announce(key(1), A, now);
        t.announce(key(2), B, now);
        assert_eq!(t.lookup(&key(1), live), Some(A));
        assert_eq!(t.lookup(&key(2), live), Some(B));
        t.announce(key(1), B, now);
        assert_eq!(t.lookup(&key(1), live), Some(B));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn routes_of_a_departed_peer_are_not_used() {
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 100);
        t.announce(key(1), A, now);
        t.announce(key(2), B, now);
        let only_b = |p| p == B;
        assert_eq!(t.lookup(&key(1), only_b), None);
        assert_eq!(t.lookup(&key(2), only_b), Some(B));
        assert_eq!(t.len(), 1, "the stale route is forgotten");
    }

    #[test]
    fn withdraw_only_removes_the_owners_route() {
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 100);
        t.announce(key(1), A, now);
        t.withdraw(&key(1), B);
        assert_eq!(t.lookup(&key(1), live), Some(A));
        t.withdraw(&key(1), A);
        assert_eq!(t.lookup(&key(1), live), None);
    }

    #[test]
    fn idle_routes_age_out_after_one_to_two_idle_times() {
        let t0 = Instant::now();
        let mut t = RouteTable::new(t0, IDLE, 100);
        t.announce(key(1), A, t0);
        t.announce(key(2), A, t0);
        assert_eq!(t.expire(t0 + IDLE / 2), 0);
        assert_eq!(t.next_expiry(), t0 + IDLE);
        // First rotation: both move to the previous generation, still found.
        assert_eq!(t.expire(t0 + IDLE), 0);
        // key(2) is used again and so promoted; key(1) stays idle.
        assert_eq!(t.lookup(&key(2), live), Some(A));
        assert_eq!(t.expire(t0 + IDLE * 2), 1, "key(1) aged out");
        assert_eq!(t.lookup(&key(1), live), None);
        assert_eq!(t.lookup(&key(2), live), Some(A));
    }

    #[test]
    fn the_table_never_exceeds_its_capacity() {
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 10);
        let mut aged = 0;
        for port in 0..1000 {
            aged += t.announce(key(port), A, now);
            assert!(t.len() <= 10, "{} routes after {port}", t.len());
        }
        assert_eq!(aged + t.len(), 1000);
        // The newest routes are still there.
        assert_eq!(t.lookup(&key(999), live), Some(A));
        assert_eq!(t.lookup(&key(995), live), Some(A));
    }

    #[test]
    fn an_ipv6_reply_finds_the_route_its_add6_announced() {
        let add = Add6 {
            client_ip: [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            client_port: 40000,
            target_ip: [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            target_port: 80,
        };
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[8..24].copy_from_slice(&add.target_ip);
        ip[24..40].copy_from_slice(&add.client_ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        let rec = HeaderRecord6::from_headers(&ip, 0, &tcp);
        assert_eq!(RouteKey6::of_record6(&rec), RouteKey6::of_add6(&add));
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 100);
        t.announce(RouteKey6::of_add6(&add), A, now);
        let reply = SessionKey::of_reply(&ReplyRecord::V6(rec));
        assert!(reply.is_ipv6());
        assert_eq!(t.lookup(&reply, live), Some(A));
        assert_eq!(t.len6(), 1);
    }

    #[test]
    fn the_families_never_share_a_route() {
        let now = Instant::now();
        let mut t = RouteTable::new(now, IDLE, 100);
        t.announce(key(1), A, now);
        assert_eq!(t.lookup(&key6(1), live), None);
        t.announce(key6(1), B, now);
        assert_eq!(t.lookup(&key(1), live), Some(A));
        assert_eq!(t.lookup(&key6(1), live), Some(B));
        t.withdraw(&key6(1), B);
        assert_eq!(t.lookup(&key6(1), live), None);
        assert_eq!(t.lookup(&key(1), live), Some(A));
        assert_eq!((t.len(), t.len6()), (1, 0));
    }

    #[test]
    fn both_families_age_together_within_one_capacity() {
        let t0 = Instant::now();
        let mut t = RouteTable::new(t0, IDLE, 10);
        let mut aged = 0;
        for port in 0..500 {
            aged += t.announce(key(port), A, t0);
            aged += t.announce(key6(port), B, t0);
            assert!(t.len() <= 10, "{} routes after {port}", t.len());
        }
        assert_eq!(aged + t.len(), 1000);
        assert_eq!(t.lookup(&key6(499), live), Some(B));
        assert_eq!(t.lookup(&key(499), live), Some(A));
        // Idle routes of either family age out.
        let mut t = RouteTable::new(t0, IDLE, 100);
        t.announce(key(1), A, t0);
        t.announce(key6(1), A, t0);
        t.expire(t0 + IDLE);
        assert_eq!(t.expire(t0 + IDLE * 2), 2);
        assert!(t.is_empty());
    }
}
