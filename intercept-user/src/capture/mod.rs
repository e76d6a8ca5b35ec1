//! Reply capture: the kernel side of intercept. Two programs of one object
//! (`intercept-ebpf`), one per deployment, behind one trait:
//!
//! - [`xdp::ReplyProgram`]: XDP on an assistant host, to which the target
//!   routes the client range;
//! - [`egress::EgressProgram`]: TC egress on the target itself (no
//!   assistant, no route), which also needs to know the replayed clients:
//!   client ranges and the [`egress::AnnouncedTable`].
//!
//! Both fill the same target tables (`TARGETS`, `TARGETS6` for IPv6),
//! count into the same counters and report the same header records (of
//! either family) through [`ring::ReplyRing`].

pub mod egress;
pub mod ring;
pub mod xdp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, HashMap, RingBuf};
use tcpcopy_common::{
    counters::InterceptCounter,
    table::{EndpointKey, EndpointKey6},
};
use tcpcopy_runtime::{object::BpfObject, xdp::XdpError};

use self::ring::ReplyRing;
use crate::targets::Target;

/// The `intercept-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static INTERCEPT_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/intercept-ebpf"));

/// Name of the table of IPv6 target endpoints (a hash map).
pub const TARGETS6_MAP: &str = "TARGETS6";

/// Name of the ring buffer map of header records.
pub const RECORDS_MAP: &str = "RECORDS";
/// Name of the per-CPU staging buffers (an array indexed by CPU).
pub const SCRATCH_MAP: &str = "SCRATCH";

/// CPUs the kernel may run a program on (`/sys/devices/system/cpu/possible`):
/// the entries of [`SCRATCH_MAP`].
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32
}

/// Name of the one-entry array holding the payload cap (bytes per reply).
pub const PAYLOAD_CAP_MAP: &str = "PAYLOAD_CAP";

/// Default ring buffer size: 4 MiB, about 58 000 IPv4 records (72 bytes
/// each with the ring's own header; 96 for IPv6): over 50 ms of replies at
/// 1 M replies/s.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// A loaded reply program, wherever it is attached.
pub trait ReplyCapture {
    fn object(&self) -> &BpfObject;

    fn object_mut(&mut self) -> &mut BpfObject;

    /// Detaches from every interface (also happens when dropped).
    fn detach_all(&mut self) -> Result<(), XdpError>;

    /// Intercepts replies from `port` on `addr`, or on any address when `None`.
    fn add_target(&mut self, addr: Option<Ipv4Addr>, port: u16) -> Result<(), XdpError> {
        let octets = addr.map_or([0; 4], |a| a.octets());
        self.object_mut()
            .insert_target(EndpointKey::new(octets, port), 0)
    }

    /// Intercepts IPv6 replies from `port` on `addr`, or on any IPv6
    /// address when `None`.
    fn add_target6(&mut self, addr: Option<Ipv6Addr>, port: u16) -> Result<(), XdpError> {
        let octets = addr.map_or([0; 16], |a| a.octets());
        let map = self
            .object_mut()
            .ebpf_mut()
            .map_mut(TARGETS6_MAP)
            .ok_or(XdpError::Missing(TARGETS6_MAP))?;
        let mut table: HashMap<_, EndpointKey6, u32> =
            HashMap::try_from(map).map_err(|e| XdpError::map(TARGETS6_MAP, e))?;
        table
            .insert(EndpointKey6::new(octets, port), 0, 0)
            .map_err(|e| XdpError::map(TARGETS6_MAP, e))
    }

    /// Intercepts the replies of `target`, in its family's table.
    fn add(&mut self, target: &Target) -> Result<(), XdpError> {
        match target.addr {
            IpAddr::V4(a) => self.add_target((!a.is_unspecified()).then_some(a), target.port),
            IpAddr::V6(a) => self.add_target6((!a.is_unspecified()).then_some(a), target.port),
        }
    }

    fn counter(&self, counter: InterceptCounter) -> Result<u64, XdpError> {
        self.object().counter(counter as u32)
    }

    /// Every counter, in [`InterceptCounter::ALL`] order.
    fn counters(&self) -> Result<[(InterceptCounter, u64); InterceptCounter::ALL.len()], XdpError> {
        let mut out = InterceptCounter::ALL.map(|c| (c, 0));
        for (counter, value) in &mut out {
            *value = self.counter(*counter)?;
        }
        Ok(out)
    }

    /// Payload bytes the program copies per reply from now on (0: none,
    /// headers only).
    fn set_payload_cap(&mut self, cap: u32) -> Result<(), XdpError> {
        let map = self
            .object_mut()
            .ebpf_mut()
            .map_mut(PAYLOAD_CAP_MAP)
            .ok_or(XdpError::Missing(PAYLOAD_CAP_MAP))?;
        let mut array: Array<_, u32> =
            Array::try_from(map).map_err(|e| XdpError::map(PAYLOAD_CAP_MAP, e))?;
        array
            .set(0, cap, 0)
            .map_err(|e| XdpError::map(PAYLOAD_CAP_MAP, e))
    }

    /// Takes the ring buffer of header records out of the object (once).
    fn take_ring(&mut self) -> Result<ReplyRing, XdpError> {
        let map = self
            .object_mut()
            .ebpf_mut()
            .take_map(RECORDS_MAP)
            .ok_or(XdpError::Missing(RECORDS_MAP))?;
        let ring = RingBuf::try_from(map).map_err(|e| XdpError::map(RECORDS_MAP, e))?;
        Ok(ReplyRing::new(ring))
    }
}
