//! Packet-trace tests of the engine: each test feeds client segments (as
//! captured on the online host) and reply headers (as intercept reports
//! them) and checks the frames the engine emits, like a packet trace.
//! Every emitted frame is parsed and its checksums verified.

mod close;
mod handshake;
mod intake_tests;
mod ipv6;
mod limits;
mod pacing;
mod reliability;
mod shaping_tests;

use std::time::Duration;

use tcpcopy_common::proto::{ClientMsg, HeaderRecord};

use super::{
    Announcement, Config, Endpoint, Engine, EventKind, Instant, SessionEvent, TransferRule,
    reply::Reply,
};
use crate::packet::{
    Address, SeqNumber, TcpFlags, TcpPacket,
    options::{kind, write_syn_options},
    tcp::SegmentRepr,
};

pub const CLIENT: Endpoint = Endpoint::new([198, 18, 1, 2], 40000);
pub const ONLINE: Endpoint = Endpoint::new([198, 18, 1, 1], 80);
pub const TARGET: Endpoint = Endpoint::new([198, 18, 2, 2], 8080);

/// The same three hosts over IPv6 (documentation prefix).
const fn v6(last: u8) -> [u8; 16] {
    [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
    ]
}
pub const CLIENT6: Endpoint<[u8; 16]> = Endpoint::new(v6(2), 40000);
pub const ONLINE6: Endpoint<[u8; 16]> = Endpoint::new(v6(1), 80);
pub const TARGET6: Endpoint<[u8; 16]> = Endpoint::new(v6(0x22), 8080);

/// How a test harness of one family hands the engine a target's reply:
/// IPv4 as intercept's header record, IPv6 as the parsed packet.
pub trait Family: Address {
    const CLIENT: Endpoint<Self>;
    const ONLINE: Endpoint<Self>;
    const TARGET: Endpoint<Self>;
    fn feed_reply(engine: &mut Engine<Self>, now: Instant, packet: &[u8]);
}

impl Family for [u8; 4] {
    const CLIENT: Endpoint = CLIENT;
    const ONLINE: Endpoint = ONLINE;
    const TARGET: Endpoint = TARGET;
    fn feed_reply(engine: &mut Engine, now: Instant, pkt: &[u8]) {
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let rec = HeaderRecord::from_headers(&pkt[..ihl], &pkt[ihl..]);
        engine.on_reply(now, &rec);
    }
}

impl Family for [u8; 16] {
    const CLIENT: Endpoint<Self> = CLIENT6;
    const ONLINE: Endpoint<Self> = ONLINE6;
    const TARGET: Endpoint<Self> = TARGET6;
    fn feed_reply(engine: &mut Engine<Self>, now: Instant, pkt: &[u8]) {
        let p = TcpPacket::<_, Self>::new_checked(pkt).expect("a valid reply");
        engine.on_parsed_reply(now, &Reply::from_packet(&p), None);
    }
}

/// A TCP segment to feed in (client -> online, or target -> client).
#[derive(Clone, Debug, Default)]
pub struct Seg {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload: Vec<u8>,
    pub mss: Option<u16>,
    pub ts: Option<(u32, u32)>,
    pub wscale: Option<u8>,
}

pub fn syn(seq: u32) -> Seg {
    Seg {
        flags: TcpFlags::SYN,
        seq,
        window: 64240,
        mss: Some(1460),
        ..Seg::default()
    }
}
pub fn syn_ack(seq: u32, ack: u32) -> Seg {
    Seg {
        flags: TcpFlags::SYN | TcpFlags::ACK,
        seq,
        ack,
        window: 65160,
        mss: Some(1460),
        ..Seg::default()
    }
}
pub fn ack(seq: u32, ack: u32) -> Seg {
    Seg {
        flags: TcpFlags::ACK,
        seq,
        ack,
        window: 502,
        ..Seg::default()
    }
}
pub fn data(seq: u32, ack: u32, payload: &[u8]) -> Seg {
    Seg {
        flags: TcpFlags::ACK | TcpFlags::PSH,
        seq,
        ack,
        window: 502,
        payload: payload.to_vec(),
        ..Seg::default()
    }
}
pub fn fin(seq: u32, ack: u32) -> Seg {
    Seg {
        flags: TcpFlags::ACK | TcpFlags::FIN,
        seq,
        ack,
        window: 502,
        ..Seg::default()
    }
}
pub fn rst(seq: u32, ack: u32) -> Seg {
    Seg {
        flags: TcpFlags::RST | TcpFlags::ACK,
        seq,
        ack,
        ..Seg::default()
    }
}

impl Seg {
    pub fn with_ts(mut self, tsval: u32, tsecr: u32) -> Self {
        self.ts = Some((tsval, tsecr));
        self
    }
    pub fn with_window(mut self, w: u16) -> Self {
        self.window = w;
        self
    }
    pub fn with_wscale(mut self, ws: u8) -> Self {
        self.wscale = Some(ws);
        self
    }
    pub fn with_flags(mut self, f: TcpFlags) -> Self {
        self.flags = self.flags | f;
        self
    }

    /// The IP packet `src -> dst` carrying this segment.
    pub fn packet<A: Address>(&self, src: Endpoint<A>, dst: Endpoint<A>) -> Vec<u8> {
        let mut opts = [0u8; 40];
        let n = if self.flags.syn() {
            write_syn_options(&mut opts, self.mss.unwrap_or(1460), self.ts, self.wscale)
        } else if let Some((v, e)) = self.ts {
            opts[..4].copy_from_slice(&[kind::NOP, kind::NOP, kind::TIMESTAMP, 10]);
            opts[4..8].copy_from_slice(&v.to_be_bytes());
            opts[8..12].copy_from_slice(&e.to_be_bytes());
            12
        } else {
            0
        };
        let repr = SegmentRepr {
            src: src.addr,
            dst: dst.addr,
            src_port: src.port,
            dst_port: dst.port,
            seq: SeqNumber(self.seq),
            ack: SeqNumber(self.ack),
            flags: self.flags,
            window: self.window,
            ttl: 64,
            ip_id: 0x1234,
            options: &opts[..n],
            payload: &self.payload,
        };
        let mut out = vec![0; repr.len()];
        repr.emit(&mut out);
        out
    }
}

/// A frame the engine emitted, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent<A: Address = [u8; 4]> {
    pub src: Endpoint<A>,
    pub dst: Endpoint<A>,
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload: Vec<u8>,
    pub ts: Option<(u32, u32)>,
    pub mss: Option<u16>,
}

impl<A: Address> Sent<A> {
    fn parse(frame: &[u8]) -> Self {
        let p = TcpPacket::<_, A>::new_checked(frame).expect("engine frames are valid IP/TCP");
        assert!(p.checksums_ok(), "bad checksum in emitted frame {p:?}");
        let o = p.options();
        Self {
            src: Endpoint::new(p.src_addr(), p.src_port()),
            dst: Endpoint::new(p.dst_addr(), p.dst_port()),
            flags: p.flags(),
            seq: p.seq().0,
            ack: p.ack().0,
            window: p.window(),
            payload: p.payload().to_vec(),
            ts: o.timestamp,
            mss: o.mss,
        }
    }
    pub fn is(&self, flags: TcpFlags) -> bool {
        self.flags == flags
    }
}

pub struct Harness<A: Family = [u8; 4]> {
    pub engine: Engine<A>,
    pub now: Instant,
    pub announced: Vec<Announcement<A>>,
    pub events: Vec<SessionEvent<A>>,
}

/// One rule, `A::ONLINE` -> `A::TARGET`.
pub fn config_of<A: Family>() -> Config {
    Config {
        rules: vec![TransferRule {
            online_addr: Some(A::ONLINE.to_socket().ip()),
            online_port: A::ONLINE.port,
            target: A::TARGET.to_socket(),
        }],
        ..Config::default()
    }
}

pub fn config() -> Config {
    config_of::<[u8; 4]>()
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

pub fn harness_with(f: impl FnOnce(&mut Config)) -> Harness {
    family_harness_with(f)
}

/// The IPv6 harness: `CLIENT6` -> `ONLINE6`, replayed to `TARGET6`.
pub fn harness6() -> Harness<[u8; 16]> {
    family_harness_with(|_| {})
}

pub fn family_harness_with<A: Family>(f: impl FnOnce(&mut Config)) -> Harness<A> {
    let mut c = config_of::<A>();
    f(&mut c);
    Harness {
        engine: Engine::new(c, 0, 1),
        now: Instant::from_secs(1000),
        announced: Vec::new(),
        events: Vec::new(),
    }
}

impl Harness {
    /// The CLIENT_ADD messages announced so far.
    pub fn announced_messages(&self) -> Vec<ClientMsg> {
        self.announced.iter().map(Announcement::message).collect()
    }
}

impl<A: Family> Harness<A> {
    /// A client segment from `A::CLIENT` to `A::ONLINE`, captured now.
    pub fn client(&mut self, seg: Seg) {
        self.client_from(A::CLIENT, seg);
    }
    pub fn client_from(&mut self, from: Endpoint<A>, seg: Seg) {
        let pkt = seg.packet(from, A::ONLINE);
        self.engine.on_client_packet(self.now, &pkt);
    }
    /// A reply from `A::TARGET` to `to` (the replayed client), then a flush.
    pub fn reply_to(&mut self, to: Endpoint<A>, seg: Seg) {
        self.replies_to(to, &[seg]);
    }
    /// Several replies in one batch, then one flush.
    pub fn replies_to(&mut self, to: Endpoint<A>, segs: &[Seg]) {
        for seg in segs {
            let pkt = seg.packet(A::TARGET, to);
            A::feed_reply(&mut self.engine, self.now, &pkt);
        }
        self.engine.flush(self.now);
    }
    pub fn reply(&mut self, seg: Seg) {
        self.reply_to(A::CLIENT, seg);
    }
    /// Lets `ms` milliseconds pass (timers fire).
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.engine.on_timer(self.now);
    }
    /// Drains the outbox: the frames sent (announcements and events are kept).
    pub fn sent(&mut self) -> Vec<Sent<A>> {
        self.engine.audit().expect("engine bookkeeping");
        let out = self.engine.outbox();
        let frames = out.frames().map(Sent::parse).collect();
        self.announced.append(&mut out.announcements);
        self.events.append(&mut out.events);
        out.clear();
        frames
    }
    /// Drains and expects exactly one frame.
    pub fn one(&mut self) -> Sent<A> {
        let mut s = self.sent();
        assert_eq!(s.len(), 1, "expected one frame, got {s:#?}");
        s.remove(0)
    }
    pub fn none(&mut self) {
        let s = self.sent();
        assert!(s.is_empty(), "expected no frame, got {s:#?}");
    }
    /// Why sessions ended so far (takes the events out of the outbox,
    /// leaves the frames).
    pub fn closed_with(&mut self) -> Vec<super::CloseReason> {
        let events: Vec<_> = self.engine.outbox().events.drain(..).collect();
        self.events.extend(events);
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Closed(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Client SYN (isn 1000) and target SYN-ACK (isn 5000), with the
    /// client's third ACK (online server isn 9000). Leaves the outbox empty.
    pub fn establish(&mut self) {
        self.client(syn(1000));
        self.sent();
        self.reply(syn_ack(5000, 1001));
        self.client(ack(1001, 9001));
        self.sent();
    }
}
