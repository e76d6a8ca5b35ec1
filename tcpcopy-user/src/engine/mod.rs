//! The session engine: pure code, no I/O, no clock.
//!
//! One [`Engine`] is one shard: it owns its sessions outright (no locks).
//! The driver feeds it captured client packets ([`Engine::on_client_packet`],
//! IP packets without link-layer header), the target's reply headers from
//! intercept ([`Engine::on_reply`], or [`Engine::on_parsed_reply`]) and the
//! passage of time
//! ([`Engine::on_timer`], when [`Engine::next_deadline`] says). After each
//! batch the driver calls [`Engine::flush`] and drains the [`Outbox`]:
//! announcements first (to every intercept), then frames (to the target).
//!
//! With several shards, client packets go to the shard of their client
//! address ([`shard_for_packet`]) and replies to the shard of the address
//! they were sent to ([`shard_for_reply`]); the engine only gives out client
//! addresses that hash to its own shard (see [`shaping`]), so both land on
//! the shard that owns the session.
//!
//! An engine serves one IP family, its type parameter (`Engine` is IPv4,
//! `Engine<[u8; 16]>` IPv6); one [`Config`] serves both, each engine taking
//! the rules whose target is of its family.
//!
//! Performance shape: sessions live in a slab indexed from two hash maps
//! (real client + copy -> slot, replayed client -> slot), captured segments
//! in pooled buffers, timers in a wheel; frames are written once into the
//! outbox with rewrites applied in place.

pub mod close;
mod comparing;
pub mod config;
pub mod intake;
pub mod outbox;
pub mod reply;
pub mod segments;
pub mod session;
pub mod shaping;
pub mod slab;
pub mod stats;
pub mod time;
pub mod timer;

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::{BuildHasher, Hash, Hasher},
    net::SocketAddr,
};

use tcpcopy_common::proto::{HeaderRecord, HeaderRecord6};

pub use self::{
    close::CloseReason,
    config::{Config, TransferRule},
    outbox::{Announcement, EventKind, HEADROOM, Outbox, SessionEvent},
    stats::{EngineStats, LatencyHistogram},
    time::Instant,
};
use self::{
    intake::Verdict,
    reply::Reply,
    segments::SegmentPool,
    session::{Ctx, Session, State, Step},
    shaping::{mix64, port_candidates, sampled_in, shard_of},
    slab::Slab,
    timer::{TimerEntry, TimerWheel},
};
use crate::packet::{Address, Ipv4TcpPacket, Ipv6TcpPacket, TcpOptions, TcpPacket};

/// An IP address of family `A` (see [`Address`]) and a TCP port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint<A: Address = [u8; 4]> {
    pub addr: A,
    pub port: u16,
}

impl<A: Address> Endpoint<A> {
    pub const fn new(addr: A, port: u16) -> Self {
        Self { addr, port }
    }

    /// The endpoint of `sock`, if it is of family `A`.
    pub fn from_socket(sock: SocketAddr) -> Option<Self> {
        Some(Self::new(A::from_ip(sock.ip())?, sock.port()))
    }

    pub fn to_socket(self) -> SocketAddr {
        SocketAddr::new(self.addr.to_ip(), self.port)
    }

    /// Exact table key of the endpoint with `tag` (a copy number).
    fn packed(self, tag: u16) -> A::Packed {
        self.addr.pack(self.port, tag)
    }
}

impl<A: Address> core::fmt::Display for Endpoint<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.addr.fmt_endpoint(self.port, f)
    }
}

/// The shard a captured client packet belongs to (`None`: not TCP over
/// IPv4 or IPv6; any shard may count it).
pub fn shard_for_packet(packet: &[u8], shards: u16, seed: u64) -> Option<u16> {
    if let Ok(p) = Ipv4TcpPacket::new_checked(packet) {
        return Some(shard_of(p.src_addr(), p.src_port(), shards, seed));
    }
    let p = Ipv6TcpPacket::new_checked(packet).ok()?;
    Some(shard_of(p.src_addr(), p.src_port(), shards, seed))
}

/// The shard production's answer belongs to (`--compare`): the one of the
/// client it goes to.
pub fn shard_for_answer(packet: &[u8], shards: u16, seed: u64) -> Option<u16> {
    if let Ok(p) = Ipv4TcpPacket::new_checked(packet) {
        return Some(shard_of(p.dst_addr(), p.dst_port(), shards, seed));
    }
    let p = Ipv6TcpPacket::new_checked(packet).ok()?;
    Some(shard_of(p.dst_addr(), p.dst_port(), shards, seed))
}

/// The shard a reply header belongs to.
pub fn shard_for_reply(record: &HeaderRecord, shards: u16, seed: u64) -> u16 {
    shard_of(record.dst_addr(), record.dst_port(), shards, seed)
}

/// `--compare-baseline`: the copy number of a session's replay to the
/// baseline is its own with this bit set (copies stay below it).
pub const BASELINE_COPY: u16 = 0x8000;

/// Tries per session to find a free client port before giving up.
const PORT_ATTEMPTS: usize = 4096;
/// Segment queues kept for reuse (their small allocations).
const MAX_SPARE_QUEUES: usize = 4096;

/// Hash maps keyed by packed endpoints: a seeded folded multiply (the
/// 128-bit product's halves xored), which mixes every input bit into both
/// ends of the hash (hashbrown takes the bucket from the low bits, a tag
/// from the top ones) with one multiplication: every packet and reply
/// hashes at least once.
#[derive(Clone, Copy)]
struct KeyHash(u64);

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        // An odd constant with its bits spread (2^64 / golden ratio).
        let product = u128::from(self.0 ^ v) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// A transfer rule (`-x`) of the engine's family.
#[derive(Clone, Copy, Debug)]
struct Rule<A: Address> {
    online_addr: Option<A>,
    online_port: u16,
    target: Endpoint<A>,
}

/// The session tables' map: packed endpoint -> slot.
type Table<A> = HashMap<<A as Address>::Packed, u32, KeyHash>;

/// One shard of the session engine, for the sessions of one IP family:
/// `Engine` (IPv4) or `Engine<[u8; 16]>` (IPv6). The family is a type
/// parameter, so each family's engine is compiled on its own and IPv4
/// pays nothing for IPv6.
pub struct Engine<A: Address = [u8; 4]> {
    config: Config,
    /// The rules of `config` whose target is of this family.
    rules: Vec<Rule<A>>,
    shard: u16,
    shards: u16,
    sessions: Slab<Session<A>>,
    /// (real client, copy) -> slot, for sessions whose replayed address is
    /// not simply the client's own (copies, `-c`, a taken port). The others
    /// are found through `by_replay` alone: one map, one lookup.
    by_origin: Table<A>,
    /// Client address the target sees -> slot.
    by_replay: Table<A>,
    timers: TimerWheel,
    due: Vec<TimerEntry>,
    ack_list: Vec<u32>,
    /// Emptied segment queues of removed sessions, reused by new ones.
    spare_queues: Vec<segments::SegmentQueue>,
    pool: SegmentPool,
    out: Outbox<A>,
    stats: EngineStats,
    buffered: usize,
    census: Census,
    /// Where intake completes a packet's offloaded checksums.
    intake_buf: Vec<u8>,
    /// Where an IPv6 packet's extension headers are stripped.
    strip_buf: Vec<u8>,
    /// `--compare`: the sessions' response streams.
    compare: Option<Box<comparing::Comparing>>,
}

/// Sessions by state, kept as they change (for flow control and the end
/// of offline replay).
#[derive(Clone, Copy, Debug, Default)]
struct Census {
    /// Our SYN is out, the target has not answered.
    handshaking: usize,
    /// Not lingering.
    open: usize,
}

impl Census {
    fn add(&mut self, state: State, n: isize) {
        let step = |v: &mut usize| *v = v.wrapping_add_signed(n);
        match state {
            State::SynSent => {
                step(&mut self.handshaking);
                step(&mut self.open);
            }
            State::Established => step(&mut self.open),
            State::Lingering => {}
        }
    }

    fn changed(&mut self, from: State, to: State) {
        if from != to {
            self.add(from, -1);
            self.add(to, 1);
        }
    }
}

impl<A: Address> Engine<A> {
    /// Memory a session costs besides its buffered segments (slot and map
    /// entries).
    const SESSION_COST: usize = size_of::<slab::Slot<Session<A>>>() + 24;

    /// An engine that is shard `shard` of `shards` (0 of 1 when alone). It
    /// replays the sessions of the rules in `config` whose target is of its
    /// family.
    pub fn new(config: Config, shard: u16, shards: u16) -> Self {
        assert!(shards > 0 && shard < shards, "shard {shard} of {shards}");
        let hash = KeyHash(mix64(config.seed ^ 0x5eed));
        let rules = config
            .rules
            .iter()
            .filter_map(|r| {
                Some(Rule {
                    target: Endpoint::from_socket(r.target)?,
                    online_addr: match r.online_addr {
                        Some(a) => Some(A::from_ip(a)?),
                        None => None,
                    },
                    online_port: r.online_port,
                })
            })
            .collect();
        Self {
            rules,
            shard,
            shards,
            sessions: Slab::default(),
            by_origin: HashMap::with_hasher(hash),
            by_replay: HashMap::with_hasher(hash),
            timers: TimerWheel::default(),
            due: Vec::new(),
            ack_list: Vec::new(),
            spare_queues: Vec::new(),
            pool: SegmentPool::default(),
            out: Outbox::default(),
            stats: EngineStats::default(),
            buffered: 0,
            census: Census::default(),
            intake_buf: Vec::new(),
            strip_buf: Vec::new(),
            compare: config
                .compare
                .clone()
                .map(|c| Box::new(comparing::Comparing::new(c))),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    /// What to send and announce; drain it after each batch.
    pub fn outbox(&mut self) -> &mut Outbox<A> {
        &mut self.out
    }
    /// Sessions in the table (lingering ones included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
    /// Bytes of buffered client segments.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }
    /// The earliest time [`Engine::on_timer`] has something to do (at the
    /// timer wheel's millisecond resolution; it may be early, never late).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Sessions that are not lingering (handshaking or established).
    pub fn open_sessions(&self) -> usize {
        self.census.open
    }
    /// Sessions whose SYN the target has not answered yet.
    pub fn handshaking_sessions(&self) -> usize {
        self.census.handshaking
    }
    /// Memory counted against the cap (`-m`): buffered segments and
    /// sessions.
    pub fn memory_used(&self) -> usize {
        self.buffered + self.sessions.len() * Self::SESSION_COST
    }

    /// The target of a packet to `addr:port` under the rules: an exact
    /// rule wins over a port-only one.
    fn rule_for(&self, addr: A, port: u16) -> Option<Endpoint<A>> {
        let mut by_port = None;
        for rule in &self.rules {
            if rule.online_port == port {
                match rule.online_addr {
                    Some(a) if a == addr => return Some(rule.target),
                    None => by_port = by_port.or(Some(rule.target)),
                    Some(_) => {}
                }
            }
        }
        by_port
    }

    /// Whether `addr` is the address of some target (client addresses
    /// must never be one).
    fn is_target_addr(&self, addr: A) -> bool {
        self.rules.iter().any(|r| r.target.addr == addr)
    }

    // ----- inputs -----------------------------------------------------------

    /// A captured client packet (of the engine's family, starting at the
    /// IP header; IPv6 extension headers are normalized away first).
    pub fn on_client_packet(&mut self, now: Instant, packet: &[u8]) {
        self.on_client_packet_in_round(now, packet, 0);
    }

    /// A client packet of replay round `round` (offline mode replays a
    /// file several times, `-T`): each round's sessions are copies of
    /// their own, from their own client ports, so rounds never collide
    /// with each other or with the target's memory of earlier rounds.
    pub fn on_client_packet_in_round(&mut self, now: Instant, packet: &[u8], round: u16) {
        self.stats.captured += 1;
        let pkt = match TcpPacket::<_, A>::new_checked(packet) {
            Ok(pkt) => pkt,
            Err(crate::packet::PacketError::ExtensionHeaders) => {
                self.on_extended_packet(now, packet, round);
                return;
            }
            Err(crate::packet::PacketError::Fragment) => {
                self.stats.fragments += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.on_valid_packet(now, &pkt, round);
    }

    /// An IPv6 packet with extension headers: replayed without them (the
    /// target's TCP sees the same segment), or counted when it cannot be.
    #[cold]
    fn on_extended_packet(&mut self, now: Instant, packet: &[u8], round: u16) {
        let mut buf = std::mem::take(&mut self.strip_buf);
        match crate::packet::family::ipv6_strip_extensions(packet, &mut buf) {
            Ok(_) => match TcpPacket::<_, A>::new_checked(&buf[..]) {
                Ok(pkt) => {
                    self.stats.extensions_stripped += 1;
                    self.on_valid_packet(now, &pkt, round);
                }
                Err(_) => self.stats.malformed += 1,
            },
            Err(crate::packet::PacketError::Fragment) => self.stats.fragments += 1,
            Err(_) => self.stats.malformed += 1,
        }
        self.strip_buf = buf;
    }

    fn on_valid_packet(&mut self, now: Instant, pkt: &TcpPacket<&[u8], A>, round: u16) {
        let Some(target) = self.rule_for(pkt.dst_addr(), pkt.dst_port()) else {
            if self.compare.is_some() && self.rule_for(pkt.src_addr(), pkt.src_port()).is_some() {
                // Production's answer (offline `--compare`).
                self.stats.captured -= 1;
                self.stats.server_segments += 1;
                self.compare_server_packet(now, pkt, round);
            } else {
                self.stats.unmatched += 1;
            }
            return;
        };
        let origin = Endpoint::new(pkt.src_addr(), pkt.src_port());
        if !sampled_in(origin, self.config.sample_percent, self.config.seed) {
            self.stats.sampled_out += 1;
            return;
        }
        match intake::admit(pkt, &mut self.intake_buf) {
            Verdict::AsCaptured => self.client_copies(now, pkt, origin, round, target),
            Verdict::Completed => {
                self.stats.checksum_completed += 1;
                let buf = std::mem::take(&mut self.intake_buf);
                let pkt = TcpPacket::<_, A>::new_checked(&buf[..]).expect("a completed copy");
                self.client_copies(now, &pkt, origin, round, target);
                self.intake_buf = buf;
            }
            Verdict::BadChecksum => self.stats.bad_checksum += 1,
        }
    }

    /// Every copy (`-n`) of an admitted client packet of `round`.
    fn client_copies(
        &mut self,
        now: Instant,
        pkt: &TcpPacket<&[u8], A>,
        origin: Endpoint<A>,
        round: u16,
        target: Endpoint<A>,
    ) {
        let opts = pkt.options();
        let replicas = self.config.replicas.max(1);
        let first = round.saturating_mul(replicas);
        let baseline = self
            .compare
            .as_ref()
            .and_then(|c| c.baseline())
            .and_then(Endpoint::from_socket);
        for copy in first..first.saturating_add(replicas) {
            self.client_copy(now, pkt, &opts, origin, copy, target);
            if let Some(baseline) = baseline {
                // The same session, to production's own build.
                self.client_copy(now, pkt, &opts, origin, copy | BASELINE_COPY, baseline);
            }
        }
    }

    fn client_copy(
        &mut self,
        now: Instant,
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        origin: Endpoint<A>,
        copy: u16,
        target: Endpoint<A>,
    ) {
        let Some(idx) = self.find_origin(origin, copy) else {
            self.start(now, pkt, opts, origin, copy, target);
            return;
        };
        if self.compare.is_some() && pkt.payload_len() > 0 {
            self.compare_client_data(idx, now, pkt);
        }
        let flags = pkt.flags();
        let new_syn = flags.syn() && !flags.ack();
        let s = self.session(idx);
        if s.state == State::Lingering {
            // A new session on the same port (SYN or a far sequence number),
            // or more of the connection we gave up on: not replayed torn.
            let reused = pkt.payload_len() > 0 && s.is_seq_jump(pkt.seq());
            if new_syn || reused {
                self.start(now, pkt, opts, origin, copy, target);
            } else {
                self.stats.old_segments += 1;
            }
            return;
        }
        if new_syn {
            if pkt.seq() == s.isn() {
                return; // the client retransmitted its SYN; we do our own
            }
            self.end(idx, now, CloseReason::PortReuse);
            self.start(now, pkt, opts, origin, copy, target);
            return;
        }
        if pkt.payload_len() > 0 && s.is_seq_jump(pkt.seq()) {
            self.end(idx, now, CloseReason::PortReuse);
            self.start(now, pkt, opts, origin, copy, target);
            return;
        }
        let step = self.run(idx, now, |s, cx| s.on_client(cx, pkt, opts));
        self.apply(idx, now, step);
    }

    /// Starts a session from `pkt` if it can anchor one.
    fn start(
        &mut self,
        now: Instant,
        pkt: &TcpPacket<&[u8], A>,
        opts: &TcpOptions,
        origin: Endpoint<A>,
        copy: u16,
        target: Endpoint<A>,
    ) {
        let flags = pkt.flags();
        let syn = flags.syn() && !flags.ack();
        if flags.rst()
            || flags.syn() && !syn
            || !syn && (pkt.payload_len() == 0 || self.config.only_full_sessions)
        {
            self.stats.no_session += 1;
            return;
        }
        if self.memory_used() + Self::SESSION_COST + pkt.total_len() > self.config.memory_cap {
            self.stats.sessions_refused_memory += 1;
            return;
        }
        let Some(client) = self.client_address(origin, copy) else {
            self.stats.sessions_refused_port += 1;
            return;
        };
        // An emptied queue of an ended session, if any: its capacity saves
        // this one allocating.
        let segs = self.spare_queues.pop().unwrap_or_default();
        let idx = self.insert(|| Session::new(now, origin, copy, client, target, segs));
        self.compare_open(idx);
        self.out.announcements.push(Announcement { client, target });
        let step = self.run(idx, now, |s, cx| {
            if syn {
                s.start_with_syn(cx, pkt, opts);
                Step::Continue
            } else {
                s.start_faked(cx, pkt, opts)
            }
        });
        self.apply(idx, now, step);
    }

    /// A client address for copy `copy` of `origin` that hashes to this
    /// shard and no session of this shard holds.
    fn client_address(&self, origin: Endpoint<A>, copy: u16) -> Option<Endpoint<A>> {
        let addr = match &self.config.client_pool {
            Some(pool) => pool.map(origin.addr, self.config.seed, |a| self.is_target_addr(a))?,
            None => origin.addr,
        };
        port_candidates(origin, copy, self.config.instance, self.config.seed)
            .take(PORT_ATTEMPTS)
            .find(|&port| {
                shard_of(addr, port, self.shards, self.config.seed) == self.shard
                    && !self
                        .by_replay
                        .contains_key(&Endpoint::new(addr, port).packed(0))
            })
            .map(|port| Endpoint::new(addr, port))
    }

    /// A reply of the target, parsed, with its payload bytes when
    /// intercept sent them (`--compare`).
    pub fn on_parsed_reply(&mut self, now: Instant, reply: &Reply<A>, payload: Option<&[u8]>) {
        self.stats.replies += 1;
        let Some(&idx) = self.by_replay.get(&reply.dst.packed(0)) else {
            self.stats.replies_unknown += 1;
            return;
        };
        if self.session(idx).target != reply.src {
            self.stats.replies_unknown += 1;
            return;
        }
        self.compare_reply(idx, reply, payload);
        let step = self.run(idx, now, |s, cx| s.on_reply(cx, reply));
        self.apply(idx, now, step);
    }

    /// Handles every deadline due at `now`, then flushes.
    pub fn on_timer(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, &mut due);
        for (idx, generation) in due.drain(..) {
            let Some(slot) = self.sessions.slot_mut(idx) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            let Some(s) = slot.value.as_mut() else {
                continue;
            };
            if s.armed <= now {
                s.armed = Instant::NEVER;
            }
            if s.deadline(&self.config) <= now {
                let step = self.run(idx, now, |s, cx| s.on_timer(cx));
                self.apply(idx, now, step);
            } else {
                self.rearm(idx);
            }
        }
        self.due = due;
        self.flush(now);
    }

    /// Sends the acknowledgments that replies made due. Call after each
    /// batch of replies (one ACK per session per batch).
    pub fn flush(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.ack_list);
        for idx in list.drain(..) {
            if self.sessions.get(idx).is_some() {
                self.run(idx, now, |s, cx| s.flush_ack(cx));
            }
        }
        self.ack_list = list;
    }

    /// A CLIENT_ADD for every open session (for an intercept connection
    /// that came back: intercept forgot what it had been told).
    pub fn live_announcements(&self) -> Vec<Announcement<A>> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.state != State::Lingering)
            .map(|(_, s)| Announcement {
                client: s.client,
                target: s.target,
            })
            .collect()
    }

    /// Ends, as [`CloseReason::EndOfInput`], every open session with nothing
    /// left to replay ([`Session::is_settled`]); returns how many sessions
    /// are still open. For the end of a capture file: no more client
    /// packets will come.
    pub fn end_settled(&mut self, now: Instant) -> usize {
        for idx in self.sessions.indices() {
            let s = self.session(idx);
            if s.state != State::Lingering && s.is_settled(now, &self.config) {
                self.end(idx, now, CloseReason::EndOfInput);
            }
        }
        self.census.open
    }

    /// Resets every open session (tcpcopy is stopping); they linger.
    pub fn shutdown(&mut self, now: Instant) {
        for idx in self.sessions.indices() {
            if self.session(idx).state != State::Lingering {
                self.end(idx, now, CloseReason::Shutdown);
            }
        }
    }

    /// Checks the engine's bookkeeping (tests and fuzzing): buffered bytes
    /// add up, both maps point at live sessions with matching addresses,
    /// and the live count is right.
    pub fn audit(&self) -> Result<(), String> {
        let sessions: Vec<(u32, &Session<A>)> = self.sessions.iter().collect();
        if sessions.len() != self.sessions.len() {
            return Err(format!(
                "slab says {} but holds {} sessions",
                self.sessions.len(),
                sessions.len()
            ));
        }
        let open = sessions
            .iter()
            .filter(|(_, s)| s.state != State::Lingering)
            .count();
        let handshaking = sessions
            .iter()
            .filter(|(_, s)| s.state == State::SynSent)
            .count();
        if (open, handshaking) != (self.census.open, self.census.handshaking) {
            return Err(format!(
                "census says {} open / {} handshaking but there are {open} / {handshaking}",
                self.census.open, self.census.handshaking
            ));
        }
        let buffered: usize = sessions.iter().map(|(_, s)| s.buffered()).sum();
        if buffered != self.buffered {
            return Err(format!(
                "buffered {} but sessions hold {buffered}",
                self.buffered
            ));
        }
        for (&key, &idx) in &self.by_origin {
            let s = self.sessions.get(idx);
            if s.is_none_or(|s| origin_key(s.origin, s.copy) != key) {
                return Err(format!("origin key {key:x} -> slot {idx} mismatch"));
            }
        }
        for (&key, &idx) in &self.by_replay {
            let s = self.sessions.get(idx);
            if s.is_none_or(|s| s.client.packed(0) != key) {
                return Err(format!("replay key {key:x} -> slot {idx} mismatch"));
            }
        }
        for (idx, s) in &sessions {
            if s.state != State::Lingering && self.by_replay.get(&s.client.packed(0)) != Some(idx) {
                return Err(format!(
                    "open session {idx} ({}) unreachable by replies",
                    s.client
                ));
            }
        }
        Ok(())
    }

    // ----- the table --------------------------------------------------------

    /// The current session of copy `copy` of `origin`.
    fn find_origin(&self, origin: Endpoint<A>, copy: u16) -> Option<u32> {
        if !self.by_origin.is_empty()
            && let Some(&idx) = self.by_origin.get(&origin_key(origin, copy))
        {
            return Some(idx);
        }
        if copy != 0 {
            return None;
        }
        let &idx = self.by_replay.get(&origin.packed(0))?;
        let s = self.session(idx);
        (s.copy == 0 && s.origin == origin).then_some(idx)
    }

    fn session(&self, idx: u32) -> &Session<A> {
        self.sessions.get(idx).expect("live slot")
    }

    /// Stores the session `make` returns (built in place) and indexes it.
    fn insert(&mut self, make: impl FnOnce() -> Session<A>) -> u32 {
        let idx = self.sessions.insert_with(make);
        let session = self.session(idx);
        let (okey, rkey) = (
            origin_key(session.origin, session.copy),
            session.client.packed(0),
        );
        let (state, direct) = (session.state, is_direct(session));
        self.census.add(state, 1);
        if direct {
            // Found through `by_replay`; an older remapped session of the
            // same client must no longer answer for it (if there is any:
            // without copies the map stays empty, and hashing for nothing
            // costs).
            if !self.by_origin.is_empty() {
                self.by_origin.remove(&okey);
            }
        } else {
            self.by_origin.insert(okey, idx);
        }
        self.by_replay.insert(rkey, idx);
        idx
    }

    fn remove(&mut self, idx: u32) {
        self.compare_close(idx);
        let Some(mut s) = self.sessions.remove(idx) else {
            return;
        };
        self.census.add(s.state, -1);
        if self.spare_queues.len() < MAX_SPARE_QUEUES && s.queue_capacity() > 0 {
            self.spare_queues.push(s.take_queue());
        }
        let okey = origin_key(s.origin, s.copy);
        if !self.by_origin.is_empty() {
            remove_if(&mut self.by_origin, okey, idx);
        }
        let rkey = s.client.packed(0);
        remove_if(&mut self.by_replay, rkey, idx);
    }

    /// Takes the emptied queue of ended session `idx` for reuse.
    fn spare_queue(&mut self, idx: u32) {
        if self.spare_queues.len() >= MAX_SPARE_QUEUES {
            return;
        }
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        if s.state == State::Lingering && s.queue_capacity() > 0 {
            self.spare_queues.push(s.take_queue());
        }
    }

    /// Runs `f` on session `idx` with the engine's context.
    fn run<R>(
        &mut self,
        idx: u32,
        now: Instant,
        f: impl FnOnce(&mut Session<A>, &mut Ctx<'_, A>) -> R,
    ) -> R {
        let (requests, pipelined) = (self.stats.requests, self.stats.pipelined);
        let r = self.run_session(idx, now, f);
        if self.compare.is_some() && self.stats.requests != requests {
            self.compare_request_sent(idx, self.stats.pipelined != pipelined);
        }
        r
    }

    fn run_session<R>(
        &mut self,
        idx: u32,
        now: Instant,
        f: impl FnOnce(&mut Session<A>, &mut Ctx<'_, A>) -> R,
    ) -> R {
        let Self {
            config,
            sessions,
            out,
            stats,
            pool,
            buffered,
            ack_list,
            census,
            ..
        } = self;
        let s = sessions.get_mut(idx).expect("live slot");
        let was_queued = s.ack_queued;
        let was = s.state;
        let mut cx = Ctx {
            now,
            config,
            out,
            stats,
            pool,
            buffered,
        };
        let r = f(s, &mut cx);
        census.changed(was, s.state);
        if s.ack_queued && !was_queued {
            ack_list.push(idx);
        }
        r
    }

    /// Carries out what a session asked for, then re-arms its timer.
    fn apply(&mut self, idx: u32, now: Instant, step: Step) {
        if step != Step::Continue && !self.carry_out(idx, now, step) {
            return;
        }
        if self.memory_used() > self.config.memory_cap {
            self.end(idx, now, CloseReason::MemoryCap);
            return;
        }
        self.rearm(idx);
    }

    /// Removes, ends or reconnects session `idx` as `step` asks; returns
    /// whether it goes on (reconnected). Out of line: inlined, its set-up
    /// would run in [`apply`](Self::apply) for every input, though nearly
    /// all of them continue.
    #[inline(never)]
    fn carry_out(&mut self, idx: u32, now: Instant, mut step: Step) -> bool {
        loop {
            match step {
                Step::Continue => return true,
                Step::Remove => {
                    self.remove(idx);
                    return false;
                }
                Step::End(reason) => {
                    self.end(idx, now, reason);
                    return false;
                }
                Step::Reconnect { target_reset } => {
                    step = self.reconnect(idx, now, target_reset);
                }
            }
        }
    }

    fn end(&mut self, idx: u32, now: Instant, reason: CloseReason) {
        self.run(idx, now, |s, cx| s.end(cx, reason));
        // Lingering now, with nothing left to send: its (emptied) queue
        // goes to the next new session, so a new session does not allocate
        // while ended ones linger.
        self.spare_queue(idx);
        // Ended: its exchanges are complete.
        self.compare_close(idx);
        self.rearm(idx);
    }

    /// Moves session `idx` to a new client port and replays the rest there.
    fn reconnect(&mut self, idx: u32, now: Instant, target_reset: bool) -> Step {
        let (origin, copy, old) = {
            let s = self.session(idx);
            (s.origin, s.copy, s.client)
        };
        let Some(client) = self.client_address(origin, copy) else {
            self.stats.sessions_refused_port += 1;
            return Step::End(CloseReason::ReconnectLimit);
        };
        remove_if(&mut self.by_replay, old.packed(0), idx);
        self.by_replay.insert(client.packed(0), idx);
        // No longer at the client's own address: findable by origin.
        self.by_origin.insert(origin_key(origin, copy), idx);
        let target = self.session(idx).target;
        self.out.announcements.push(Announcement { client, target });
        self.run(idx, now, |s, cx| s.reconnect(cx, client, target_reset))
    }

    fn rearm(&mut self, idx: u32) {
        let Some(slot) = self.sessions.slot_mut(idx) else {
            return;
        };
        let Some(s) = slot.value.as_mut() else {
            return;
        };
        let at = s.deadline(&self.config);
        if at < s.armed {
            self.timers.arm((idx, slot.generation), at);
            s.armed = at;
        }
    }
}

impl Engine<[u8; 4]> {
    /// A reply header from intercept.
    pub fn on_reply(&mut self, now: Instant, record: &HeaderRecord) {
        self.on_reply_payload(now, record, None);
    }

    /// As [`on_reply`](Self::on_reply), with the reply's payload bytes when
    /// intercept sent them (`--compare`).
    pub fn on_reply_payload(
        &mut self,
        now: Instant,
        record: &HeaderRecord,
        payload: Option<&[u8]>,
    ) {
        let Ok(reply) = Reply::parse(record) else {
            self.stats.replies += 1;
            self.stats.replies_malformed += 1;
            return;
        };
        self.on_parsed_reply(now, &reply, payload);
    }
}

impl<A: Address> Engine<A> {
    /// A reply of a family this engine does not replay (no session of it
    /// was announced): counted as unknown.
    pub fn count_foreign_reply(&mut self) {
        self.stats.replies += 1;
        self.stats.replies_unknown += 1;
    }
}

impl Engine<[u8; 16]> {
    /// An IPv6 reply's record from intercept, with its payload bytes when
    /// intercept sent them (`--compare`).
    pub fn on_reply6(&mut self, now: Instant, record: &HeaderRecord6, payload: Option<&[u8]>) {
        let Ok(reply) = Reply::parse_headers(record.headers()) else {
            self.stats.replies += 1;
            self.stats.replies_malformed += 1;
            return;
        };
        self.on_parsed_reply(now, &reply, payload);
    }
}

/// Removes `key` from `map` if it maps to `idx` (one probe).
fn remove_if<K: Eq + Hash>(map: &mut HashMap<K, u32, KeyHash>, key: K, idx: u32) {
    if let Entry::Occupied(e) = map.entry(key)
        && *e.get() == idx
    {
        e.remove();
    }
}

/// Whether a session sits at its client's own address (copy 0), so it is
/// found through `by_replay` without a `by_origin` entry.
fn is_direct<A: Address>(s: &Session<A>) -> bool {
    s.copy == 0 && s.client == s.origin
}

/// Key of the by-origin map: the real client and the copy number.
fn origin_key<A: Address>(origin: Endpoint<A>, copy: u16) -> A::Packed {
    origin.packed(copy)
}

#[cfg(test)]
mod tests;
