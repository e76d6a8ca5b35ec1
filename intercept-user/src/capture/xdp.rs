//! The reply XDP program (`intercept-ebpf`), embedded in this crate.
//!
//! The program drops every reply whose source is in its target table and
//! reports the reply's header record into the `RECORDS` ring buffer (see
//! `intercept-ebpf/src/reply.rs`); the ring is handed out once, to the
//! daemon's [`ReplyRing`].

use std::net::Ipv4Addr;

use aya::maps::RingBuf;
use tcpcopy_common::{counters::InterceptCounter, table::EndpointKey};
use tcpcopy_runtime::xdp::{AttachMode, XdpError, XdpModePolicy, XdpObject};

use super::ring::ReplyRing;

/// The `intercept-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static INTERCEPT_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/intercept-ebpf"));

/// Name of the ring buffer map of header records.
pub const RECORDS_MAP: &str = "RECORDS";

/// Default ring buffer size: 4 MiB, about 58 000 records (72 bytes each with
/// the ring's own header): over 50 ms of replies at 1 M replies/s.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// The reply program, loaded into the kernel.
pub struct ReplyProgram {
    object: XdpObject,
}

impl ReplyProgram {
    /// Name of the program in the object.
    pub const NAME: &'static str = "intercept_reply";

    /// Loads the reply program with the default ring size (not attached yet).
    pub fn load() -> Result<Self, XdpError> {
        Self::load_with_ring(DEFAULT_RING_BYTES)
    }

    /// Loads the reply program with a ring buffer of `ring_bytes` (a power
    /// of two multiple of the page size; the kernel refuses anything else).
    pub fn load_with_ring(ring_bytes: u32) -> Result<Self, XdpError> {
        let object = XdpObject::load(INTERCEPT_OBJECT, Self::NAME, |loader| {
            loader.map_max_entries(RECORDS_MAP, ring_bytes);
        })?;
        Ok(Self { object })
    }

    /// Intercepts replies from `port` on `addr`, or on any address when `None`.
    pub fn add_target(&mut self, addr: Option<Ipv4Addr>, port: u16) -> Result<(), XdpError> {
        let octets = addr.map_or([0; 4], |a| a.octets());
        self.object.insert_target(EndpointKey::new(octets, port), 0)
    }

    /// Attaches to `iface` in the calling thread's network namespace.
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

    pub fn counter(&self, counter: InterceptCounter) -> Result<u64, XdpError> {
        self.object.counter(counter as u32)
    }

    /// Every counter, in [`InterceptCounter::ALL`] order.
    pub fn counters(&self) -> Result<[(InterceptCounter, u64); 5], XdpError> {
        let mut out = InterceptCounter::ALL.map(|c| (c, 0));
        for (counter, value) in &mut out {
            *value = self.counter(*counter)?;
        }
        Ok(out)
    }

    /// Takes the ring buffer of header records out of the object (once).
    pub fn take_ring(&mut self) -> Result<ReplyRing, XdpError> {
        let map = self
            .object
            .ebpf_mut()
            .take_map(RECORDS_MAP)
            .ok_or(XdpError::Missing(RECORDS_MAP))?;
        let ring = RingBuf::try_from(map).map_err(|e| XdpError::Map {
            map: RECORDS_MAP,
            source: Box::new(e),
        })?;
        Ok(ReplyRing::new(ring))
    }

    pub fn object(&self) -> &XdpObject {
        &self.object
    }
}
