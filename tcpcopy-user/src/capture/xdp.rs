//! The capture XDP program (`tcpcopy-ebpf`), embedded in this crate.

use std::net::Ipv4Addr;

use tcpcopy_common::{counters::CaptureCounter, table::EndpointKey};
use tcpcopy_runtime::xdp::{AttachMode, XdpError, XdpObject};

/// The `tcpcopy-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static CAPTURE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpcopy-ebpf"));

/// The inline capture program, loaded into the kernel.
pub struct CaptureProgram {
    object: XdpObject,
}

impl CaptureProgram {
    /// Name of the inline capture program in the object.
    pub const INLINE: &'static str = "capture_inline";

    /// Loads the inline capture program (not attached yet).
    pub fn load_inline() -> Result<Self, XdpError> {
        let object = XdpObject::load(CAPTURE_OBJECT, Self::INLINE, |_| {})?;
        Ok(Self { object })
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

    /// Attaches to `iface` in the calling thread's network namespace.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        self.object.attach(iface)
    }

    pub fn counter(&self, counter: CaptureCounter) -> Result<u64, XdpError> {
        self.object.counter(counter as u32)
    }

    pub fn object(&self) -> &XdpObject {
        &self.object
    }
}
