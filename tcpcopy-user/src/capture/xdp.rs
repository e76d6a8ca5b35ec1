//! The capture XDP programs (`tcpcopy-ebpf`), embedded in this crate.
//!
//! - *inline* (`capture_inline`): on the NIC that carries production
//!   traffic; copies matching frames into the `PACKETS` ring buffer and
//!   passes every frame on (read with [`PacketRing`]).
//! - *mirror* (`capture_mirror`): on a port that carries a copy; redirects
//!   matching frames into per-queue AF_XDP sockets registered in `XSKS`.
//!
//! With `--compare` (see [`CaptureProgram::load_with_responses`]),
//! production's answers are captured too: inline, by a TC classifier at
//! the device's egress (`capture_responses`, into the `RESPONSES` ring,
//! read with the client packets by [`PacketRing`]); mirror, by the mirror
//! program itself (`MIRROR_RESPONSES`), when the mirror carries both
//! directions.

use std::{net::IpAddr, os::fd::AsRawFd};

use aya::{
    maps::{Array, MapData, RingBuf, XskMap},
    programs::{SchedClassifier, tc::SchedClassifierLinkId},
};
use tcpcopy_common::{
    counters::CaptureCounter,
    table::{EndpointKey, EndpointKey6},
};
use tcpcopy_runtime::{
    tc::{self, EgressAttach},
    xdp::{AttachMode, XdpError, XdpModePolicy, XdpObject},
};

use super::ring::PacketRing;
use crate::engine::TransferRule;

/// The `tcpcopy-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static CAPTURE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpcopy-ebpf"));

/// The ring buffer of captured frames (inline mode).
pub const PACKETS_MAP: &str = "PACKETS";
/// The AF_XDP socket map (mirror mode).
pub const XSKS_MAP: &str = "XSKS";
/// Per-CPU staging of frames larger than every ring record class.
pub const SCRATCH_MAP: &str = "SCRATCH";
/// The reader's wake-up flag (inline mode).
pub const READER_MAP: &str = "READER";
/// The ring buffer of production's answers (inline mode, `--compare`).
pub const RESPONSES_MAP: &str = "RESPONSES";
/// Per-CPU staging of the response program.
pub const RESPONSE_SCRATCH_MAP: &str = "RESPONSE_SCRATCH";

/// Default ring size: 16 MiB, about 100 000 small-packet records: over
/// 50 ms of a 2 M packets/s capture.
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// The smallest ring the kernel accepts (one page), for mirror mode.
const UNUSED_RING_BYTES: u32 = 4096;

/// Which capture program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMode {
    Inline { ring_bytes: u32 },
    Mirror { queues: u32, pass_others: bool },
}

/// CPUs the kernel may run the program on (`/sys/devices/system/cpu/possible`).
fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32
}

/// A capture program, loaded into the kernel.
pub struct CaptureProgram {
    object: XdpObject,
    mode: CaptureMode,
    /// Inline `--compare`: the response program's links (by device).
    responses: Option<Vec<SchedClassifierLinkId>>,
}

impl CaptureProgram {
    pub const INLINE: &'static str = "capture_inline";
    pub const MIRROR: &'static str = "capture_mirror";
    pub const RESPONSES: &'static str = "capture_responses";

    /// Loads the inline program with the default ring (not attached yet).
    pub fn load_inline() -> Result<Self, XdpError> {
        Self::load(CaptureMode::Inline {
            ring_bytes: DEFAULT_RING_BYTES,
        })
    }

    /// Loads the program of `mode` (not attached yet). A ring size must be
    /// a power-of-two multiple of the page size (the kernel refuses others).
    pub fn load(mode: CaptureMode) -> Result<Self, XdpError> {
        Self::load_inner(mode, None)
    }

    /// Loads the program of `mode` and the capture of production's answers
    /// (`--compare`; inline: in a ring of `response_ring` bytes, a power
    /// of two multiple of the page size). Attaching attaches both.
    pub fn load_with_responses(mode: CaptureMode, response_ring: u32) -> Result<Self, XdpError> {
        Self::load_inner(mode, Some(response_ring))
    }

    fn load_inner(mode: CaptureMode, responses: Option<u32>) -> Result<Self, XdpError> {
        let (name, ring, queues, pass) = match mode {
            CaptureMode::Inline { ring_bytes } => (Self::INLINE, ring_bytes, 1, 0u8),
            CaptureMode::Mirror {
                queues,
                pass_others,
            } => (
                Self::MIRROR,
                UNUSED_RING_BYTES,
                queues.max(1),
                u8::from(pass_others),
            ),
        };
        // Inline only; the mirror program never stages frames.
        let cpus = match mode {
            CaptureMode::Inline { .. } => possible_cpus(),
            CaptureMode::Mirror { .. } => 1,
        };
        let inline_responses = matches!(mode, CaptureMode::Inline { .. }) && responses.is_some();
        let mirror_responses =
            u8::from(matches!(mode, CaptureMode::Mirror { .. }) && responses.is_some());
        let (response_ring, response_cpus) = match responses {
            Some(bytes) if inline_responses => (bytes, possible_cpus()),
            _ => (UNUSED_RING_BYTES, 1),
        };
        let mut object = XdpObject::load(CAPTURE_OBJECT, name, |loader| {
            loader
                .map_max_entries(PACKETS_MAP, ring)
                .map_max_entries(SCRATCH_MAP, cpus)
                .map_max_entries(RESPONSES_MAP, response_ring)
                .map_max_entries(RESPONSE_SCRATCH_MAP, response_cpus)
                .map_max_entries(XSKS_MAP, queues)
                .override_global("MIRROR_PASS_OTHERS", &pass, true)
                .override_global("MIRROR_RESPONSES", &mirror_responses, true);
        })?;
        if inline_responses {
            object
                .object_mut()
                .load_program(Self::RESPONSES, SchedClassifier::load)?;
        }
        Ok(Self {
            object,
            mode,
            responses: inline_responses.then(Vec::new),
        })
    }

    /// The response program (inline `--compare`; e.g. for `TestRun`).
    pub fn response_program(&self) -> Option<&SchedClassifier> {
        self.responses.as_ref()?;
        self.object
            .object()
            .ebpf()
            .program(Self::RESPONSES)
            .and_then(|p| p.try_into().ok())
    }

    fn response_program_mut(object: &mut XdpObject) -> Result<&mut SchedClassifier, XdpError> {
        object
            .ebpf_mut()
            .program_mut(Self::RESPONSES)
            .ok_or(XdpError::Missing(Self::RESPONSES))?
            .try_into()
            .map_err(|e| XdpError::program(Self::RESPONSES, e))
    }

    /// Inline `--compare`: attaches the response program at the egress of
    /// `iface` (done by the attach calls; public for tests).
    pub fn attach_responses(&mut self, iface: &str) -> Result<Option<EgressAttach>, XdpError> {
        let Some(links) = &mut self.responses else {
            return Ok(None);
        };
        let program = Self::response_program_mut(&mut self.object)?;
        let (how, link) = tc::attach_egress(program, iface)?;
        links.push(link);
        Ok(Some(how))
    }

    pub fn mode(&self) -> CaptureMode {
        self.mode
    }

    /// Copies the packets `-x` rule `rule` (number `index`) replays: to
    /// its online port on its online address, or on any address of its
    /// target's family when it names none.
    pub fn add_rule(&mut self, rule: &TransferRule, index: u32) -> Result<(), XdpError> {
        let port = rule.online_port;
        match (rule.online_addr, rule.target.is_ipv6()) {
            (Some(IpAddr::V6(a)), _) => self
                .object
                .insert_target6(EndpointKey6::new(a.octets(), port), index),
            (Some(IpAddr::V4(a)), _) => self
                .object
                .insert_target(EndpointKey::new(a.octets(), port), index),
            (None, true) => self
                .object
                .insert_target6(EndpointKey6::new([0; 16], port), index),
            (None, false) => self
                .object
                .insert_target(EndpointKey::new([0; 4], port), index),
        }
    }

    /// Attaches to `iface` in the calling thread's network namespace
    /// (native mode, else generic).
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        self.attach_with(iface, XdpModePolicy::Auto)
    }

    /// Attaches to `iface` in the modes `policy` allows.
    pub fn attach_with(
        &mut self,
        iface: &str,
        policy: XdpModePolicy,
    ) -> Result<AttachMode, XdpError> {
        let mode = self.object.attach_with(iface, policy)?;
        self.attach_responses(iface)?;
        Ok(mode)
    }

    /// Detaches from every interface (also happens when dropped).
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        if let Some(links) = &mut self.responses {
            let links = std::mem::take(links);
            let program = Self::response_program_mut(&mut self.object)?;
            for link in links {
                program
                    .detach(link)
                    .map_err(|e| XdpError::program("detach", e))?;
            }
        }
        self.object.detach_all()
    }

    pub fn counter(&self, counter: CaptureCounter) -> Result<u64, XdpError> {
        self.object.counter(counter as u32)
    }

    /// Every counter, in [`CaptureCounter::ALL`] order.
    pub fn counters(&self) -> Result<[(CaptureCounter, u64); CaptureCounter::ALL.len()], XdpError> {
        let mut out = CaptureCounter::ALL.map(|c| (c, 0));
        for (counter, value) in &mut out {
            *value = self.counter(*counter)?;
        }
        Ok(out)
    }

    /// Takes the ring buffer of captured frames out of the object (inline
    /// mode; once).
    pub fn take_ring(&mut self) -> Result<PacketRing, XdpError> {
        let map = self
            .object
            .ebpf_mut()
            .take_map(PACKETS_MAP)
            .ok_or(XdpError::Missing(PACKETS_MAP))?;
        let ring = RingBuf::try_from(map).map_err(|e| XdpError::map(PACKETS_MAP, e))?;
        let map = self
            .object
            .ebpf_mut()
            .take_map(READER_MAP)
            .ok_or(XdpError::Missing(READER_MAP))?;
        let reader = Array::try_from(map).map_err(|e| XdpError::map(READER_MAP, e))?;
        let responses = if self.responses.is_some() {
            let map = self
                .object
                .ebpf_mut()
                .take_map(RESPONSES_MAP)
                .ok_or(XdpError::Missing(RESPONSES_MAP))?;
            Some(RingBuf::try_from(map).map_err(|e| XdpError::map(RESPONSES_MAP, e))?)
        } else {
            None
        };
        Ok(PacketRing::new(ring, responses, reader))
    }

    /// Registers an AF_XDP socket (its fd) for RX queue `queue` (mirror mode).
    pub fn register_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), XdpError> {
        let map = self
            .object
            .ebpf_mut()
            .map_mut(XSKS_MAP)
            .ok_or(XdpError::Missing(XSKS_MAP))?;
        let mut xsks: XskMap<&mut MapData> =
            XskMap::try_from(map).map_err(|e| XdpError::map(XSKS_MAP, e))?;
        xsks.set(queue, socket.as_raw_fd(), 0)
            .map_err(|e| XdpError::map(XSKS_MAP, e))
    }

    pub fn object(&self) -> &XdpObject {
        &self.object
    }
}
