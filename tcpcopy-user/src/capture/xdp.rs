//! The capture XDP programs (`tcpcopy-ebpf`), embedded in this crate.
//!
//! - *inline* (`capture_inline`): on the NIC that carries production
//!   traffic; copies matching frames into the `PACKETS` ring buffer and
//!   passes every frame on (read with [`PacketRing`]).
//! - *mirror* (`capture_mirror`): on a port that carries a copy; redirects
//!   matching frames into per-queue AF_XDP sockets registered in `XSKS`.

use std::{net::Ipv4Addr, os::fd::AsRawFd};

use aya::maps::{Array, MapData, RingBuf, XskMap};
use tcpcopy_common::{counters::CaptureCounter, table::EndpointKey};
use tcpcopy_runtime::xdp::{AttachMode, XdpError, XdpModePolicy, XdpObject};

use super::ring::PacketRing;

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
}

impl CaptureProgram {
    pub const INLINE: &'static str = "capture_inline";
    pub const MIRROR: &'static str = "capture_mirror";

    /// Loads the inline program with the default ring (not attached yet).
    pub fn load_inline() -> Result<Self, XdpError> {
        Self::load(CaptureMode::Inline {
            ring_bytes: DEFAULT_RING_BYTES,
        })
    }

    /// Loads the program of `mode` (not attached yet). A ring size must be
    /// a power-of-two multiple of the page size (the kernel refuses others).
    pub fn load(mode: CaptureMode) -> Result<Self, XdpError> {
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
        let object = XdpObject::load(CAPTURE_OBJECT, name, |loader| {
            loader
                .map_max_entries(PACKETS_MAP, ring)
                .map_max_entries(SCRATCH_MAP, cpus)
                .map_max_entries(XSKS_MAP, queues)
                .override_global("MIRROR_PASS_OTHERS", &pass, true);
        })?;
        Ok(Self { object, mode })
    }

    pub fn mode(&self) -> CaptureMode {
        self.mode
    }

    /// Copies packets to `port` on `addr`, or on any address when `None`.
    pub fn add_target(
        &mut self,
        addr: Option<Ipv4Addr>,
        port: u16,
        rule: u32,
    ) -> Result<(), XdpError> {
        let octets = addr.map_or([0; 4], |a| a.octets());
        self.object
            .insert_target(EndpointKey::new(octets, port), rule)
    }

    /// Attaches to `iface` in the calling thread's network namespace
    /// (native mode, else generic).
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        self.object.attach(iface)
    }

    /// Attaches to `iface` in the modes `policy` allows.
    pub fn attach_with(
        &mut self,
        iface: &str,
        policy: XdpModePolicy,
    ) -> Result<AttachMode, XdpError> {
        self.object.attach_with(iface, policy)
    }

    /// Detaches from every interface (also happens when dropped).
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        self.object.detach_all()
    }

    pub fn counter(&self, counter: CaptureCounter) -> Result<u64, XdpError> {
        self.object.counter(counter as u32)
    }

    /// Every counter, in [`CaptureCounter::ALL`] order.
    pub fn counters(&self) -> Result<[(CaptureCounter, u64); 8], XdpError> {
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
        Ok(PacketRing::new(ring, reader))
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
