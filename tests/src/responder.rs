//! The near-free target for benchmarks: `lab-ebpf`'s `tcp_responder`, an
//! XDP program that answers TCP on the target's interface itself (no
//! state, no socket), so a benchmark measures tcpcopy and intercept rather
//! than nginx and the target's TCP stack. See `lab-ebpf/src/responder.rs`
//! for what it answers.
//!
//! It attaches in generic (skb) mode: in native mode on a veth, `XDP_TX`
//! needs NAPI on the peer device (an XDP program or GRO there), which the
//! lab's bridge ports do not have by default.

use std::net::Ipv4Addr;

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{Xdp, XdpMode},
};

use crate::{
    lab::{Host, Lab},
    tc::LAB_OBJECT,
};

/// What the responder answers every data segment with (its program's
/// `RESPONSE`).
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The answers the responder sent so far (its `ANSWERS` counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    pub syn_acks: u64,
    /// Answers to segments with payload (requests; retransmissions too).
    pub data: u64,
    pub fin_acks: u64,
}

/// The program, loaded (and, from [`Responder::start`], attached: it stays
/// attached while this lives).
pub struct Responder {
    ebpf: Ebpf,
}

impl Responder {
    pub const PROGRAM: &'static str = "tcp_responder";

    /// Loads the program answering `addr:port` (`None`: any address),
    /// its answers to `next_hop` (`None`: back to each frame's sender).
    pub fn load(addr: Option<Ipv4Addr>, port: u16, next_hop: Option<[u8; 6]>) -> Self {
        let addr = addr.map_or(0u32, u32::from);
        let hop = next_hop.unwrap_or([0; 6]);
        let mut ebpf = EbpfLoader::new()
            .override_global("RESPONDER_ADDR", &addr, true)
            .override_global("RESPONDER_PORT", &port, true)
            .override_global("NEXT_HOP_MAC", &hop, true)
            .load(LAB_OBJECT)
            .unwrap_or_else(|e| panic!("load the lab's programs: {e}"));
        let prog: &mut Xdp = ebpf
            .program_mut(Self::PROGRAM)
            .expect("tcp_responder in lab-ebpf")
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("load {}: {e}", Self::PROGRAM));
        Self { ebpf }
    }

    /// Loads it and attaches it to `iface` of `host` (generic mode).
    pub fn start(
        lab: &Lab,
        host: Host,
        iface: &str,
        addr: Option<Ipv4Addr>,
        port: u16,
        next_hop: Option<[u8; 6]>,
    ) -> Self {
        let mut me = Self::load(addr, port, next_hop);
        let _ns = lab.enter(host);
        me.program_mut()
            .attach(iface, XdpMode::Skb)
            .unwrap_or_else(|e| panic!("attach {} to {iface}: {e}", Self::PROGRAM));
        me
    }

    /// What it answered so far, summed over CPUs.
    pub fn answers(&self) -> Answers {
        let map: PerCpuArray<_, u64> = self
            .ebpf
            .map("ANSWERS")
            .expect("the responder's ANSWERS map")
            .try_into()
            .expect("a per-CPU array");
        let sum = |i: u32| -> u64 {
            map.get(&i, 0)
                .unwrap_or_else(|e| panic!("read ANSWERS[{i}]: {e}"))
                .iter()
                .sum()
        };
        Answers {
            syn_acks: sum(0),
            data: sum(1),
            fin_acks: sum(2),
        }
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(Self::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("loaded")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(Self::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("loaded")
    }
}
