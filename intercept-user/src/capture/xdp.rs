//! The reply XDP program (`intercept-ebpf`), embedded in this crate.

use std::net::Ipv4Addr;

use tcpcopy_common::{counters::InterceptCounter, table::EndpointKey};
use tcpcopy_runtime::xdp::{AttachMode, XdpError, XdpObject};

/// The `intercept-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static INTERCEPT_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/intercept-ebpf"));

/// The reply program, loaded into the kernel.
pub struct ReplyProgram {
    object: XdpObject,
}

impl ReplyProgram {
    /// Name of the program in the object.
    pub const NAME: &'static str = "intercept_reply";

    /// Loads the reply program (not attached yet).
    pub fn load() -> Result<Self, XdpError> {
        let object = XdpObject::load(INTERCEPT_OBJECT, Self::NAME, |_| {})?;
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

    pub fn counter(&self, counter: InterceptCounter) -> Result<u64, XdpError> {
        self.object.counter(counter as u32)
    }

    pub fn object(&self) -> &XdpObject {
        &self.object
    }
}
