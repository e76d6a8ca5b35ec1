//! The XDP reply program, for an assistant host.
//!
//! The program drops every reply whose source is in its target table and
//! reports the reply's header record into the `RECORDS` ring buffer (see
//! `intercept-ebpf/src/reply.rs`); the ring is handed out once, to the
//! daemon's [`ReplyRing`](super::ring::ReplyRing).

use tcpcopy_runtime::{
    object::BpfObject,
    xdp::{AttachMode, XdpError, XdpModePolicy, XdpObject},
};

use super::{
    DEFAULT_RING_BYTES, INTERCEPT_OBJECT, RECORDS_MAP, ReplyCapture, SCRATCH_MAP, egress,
    possible_cpus,
};

/// The XDP reply program, loaded into the kernel.
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
            loader
                .map_max_entries(RECORDS_MAP, ring_bytes)
                .map_max_entries(SCRATCH_MAP, possible_cpus());
            // The egress program's tables, unused here: as small as can be.
            egress::shrink_egress_tables(loader);
        })?;
        Ok(Self { object })
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

    pub fn xdp(&self) -> &XdpObject {
        &self.object
    }
}

impl ReplyCapture for ReplyProgram {
    fn object(&self) -> &BpfObject {
        self.object.object()
    }

    fn object_mut(&mut self) -> &mut BpfObject {
        self.object.object_mut()
    }

    fn detach_all(&mut self) -> Result<(), XdpError> {
        self.object.detach_all()
    }
}
