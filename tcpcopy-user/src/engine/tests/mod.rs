//! Packet-trace tests of the engine: each test feeds client segments (as
//! captured on the online host) and reply headers (as intercept reports
//! them) and checks the frames the engine emits, like a packet trace.
//! Every emitted frame is parsed and its checksums verified.

mod close;
mod handshake;
mod intake_tests;
mod limits;
mod pacing;
mod reliability;
mod shaping_tests;

use std::time::Duration;

use tcpcopy_common::proto::{ClientMsg, HeaderRecord};

use super::{Config, Endpoint, Engine, EventKind, Instant, SessionEvent, TransferRule};
use crate::packet::{
    Ipv4TcpPacket, SeqNumber, TcpFlags,
    options::{kind, write_syn_options},
    tcp::SegmentRepr,
};

pub const CLIENT: Endpoint = Endpoint::new([198, 18, 1, 2], 40000);
pub const ONLINE: Endpoint = Endpoint::new([198, 18, 1, 1], 80);
pub const TARGET: Endpoint = Endpoint::new([198, 18, 2, 2], 8080);

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

    /// The IPv4 packet `src -> dst` carrying this segment.
    pub fn packet(&self, src: Endpoint, dst: Endpoint) -> Vec<u8> {
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
pub struct Sent {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload: Vec<u8>,
    pub ts: Option<(u32, u32)>,
    pub mss: Option<u16>,
}

impl Sent {
    fn parse(frame: &[u8]) -> Self {
        let p = Ipv4TcpPacket::new_checked(frame).expect("engine frames are valid IPv4/TCP");
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

pub struct Harness {
    pub engine: Engine,
    pub now: Instant,
    pub announced: Vec<ClientMsg>,
    pub events: Vec<SessionEvent>,
}

pub fn config() -> Config {
    Config {
        rules: vec![TransferRule {
            online_addr: Some(ONLINE.addr),
            online_port: ONLINE.port,
            target: TARGET,
        }],
        ..Config::default()
    }
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

pub fn harness_with(f: impl FnOnce(&mut Config)) -> Harness {
    let mut c = config();
    f(&mut c);
    Harness {
        engine: Engine::new(c, 0, 1),
        now: Instant::from_secs(1000),
        announced: Vec::new(),
        events: Vec::new(),
    }
}

impl Harness {
    /// A client segment from `CLIENT` to `ONLINE`, captured now.
    pub fn client(&mut self, seg: Seg) {
        self.client_from(CLIENT, seg);
    }
    pub fn client_from(&mut self, from: Endpoint, seg: Seg) {
        let pkt = seg.packet(from, ONLINE);
        self.engine.on_client_packet(self.now, &pkt);
    }
    /// A reply from `TARGET` to `to` (the replayed client), then a flush.
    pub fn reply_to(&mut self, to: Endpoint, seg: Seg) {
        self.replies_to(to, &[seg]);
    }
    /// Several replies in one batch, then one flush.
    pub fn replies_to(&mut self, to: Endpoint, segs: &[Seg]) {
        for seg in segs {
            let pkt = seg.packet(TARGET, to);
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let rec = HeaderRecord::from_headers(&pkt[..ihl], &pkt[ihl..]);
            self.engine.on_reply(self.now, &rec);
        }
        self.engine.flush(self.now);
    }
    pub fn reply(&mut self, seg: Seg) {
        self.reply_to(CLIENT, seg);
    }
    /// Lets `ms` milliseconds pass (timers fire).
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.engine.on_timer(self.now);
    }
    /// Drains the outbox: the frames sent (announcements and events are kept).
    pub fn sent(&mut self) -> Vec<Sent> {
        self.engine.audit().expect("engine bookkeeping");
        let out = self.engine.outbox();
        let frames = out.frames().map(Sent::parse).collect();
        self.announced.append(&mut out.announcements);
        self.events.append(&mut out.events);
        out.clear();
        frames
    }
    /// Drains and expects exactly one frame.
    pub fn one(&mut self) -> Sent {
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
