//! Keys of the match tables the XDP programs consult.
//!
//! `tcpcopy-ebpf` looks up a packet's *destination* (the online server,
//! `-x [ip:]port`); `intercept-ebpf` looks up a reply's *source* (the target
//! server). Both first try the exact `ip:port`, then `0.0.0.0:port` (a rule
//! given by port alone).

/// An IPv4 endpoint as stored in a BPF hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// IPv4 address, network byte order; `[0; 4]` matches any address.
    pub addr: [u8; 4],
    /// TCP port, network byte order.
    pub port: [u8; 2],
    /// Always zero (the kernel hashes all 8 bytes).
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<EndpointKey>() == 8);

impl EndpointKey {
    /// The key for `addr:port`; `addr` in network byte order.
    pub const fn new(addr: [u8; 4], port: u16) -> Self {
        Self {
            addr,
            port: port.to_be_bytes(),
            _pad: [0; 2],
        }
    }

    /// The key for a rule given by port alone.
    pub const fn any_addr(port: u16) -> Self {
        Self::new([0; 4], port)
    }

    /// The key built straight from header bytes (both already in network order).
    #[inline(always)]
    pub const fn from_wire(addr: [u8; 4], port: [u8; 2]) -> Self {
        Self {
            addr,
            port,
            _pad: [0; 2],
        }
    }

    /// The same port with the address wildcarded.
    #[inline(always)]
    pub const fn with_any_addr(self) -> Self {
        Self {
            addr: [0; 4],
            ..self
        }
    }

    /// Port in host byte order.
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
}

#[cfg(feature = "user")]
// SAFETY: `EndpointKey` is `repr(C)`, `Copy`, has no padding and every bit
// pattern is valid.
unsafe impl aya::Pod for EndpointKey {}
