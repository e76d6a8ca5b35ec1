//! Keys of the match tables the XDP programs consult.
//!
//! `tcpcopy-ebpf` looks up a packet's *destination* (the online server,
//! `-x [ip:]port`); `intercept-ebpf` looks up a reply's *source* (the target
//! server). Both first try the exact `ip:port`, then `0.0.0.0:port` (a rule
//! given by port alone).
//!
//! The TC egress program of intercept also asks whether a reply's
//! *destination* is a replayed client: a client range (an LPM trie of
//! [`ClientNetKey`]) or a client address that a tcpcopy announced for that
//! target ([`AnnouncedKey`]).
//!
//! IPv6 has tables of its own with the same meaning: [`EndpointKey6`],
//! [`AnnouncedKey6`] and [`ClientNetKey6`].

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

/// A client address announced (CLIENT_ADD) for a target endpoint. The
/// client port is left out on purpose: once one session of a client address
/// is known, the next sessions of that address are claimed even when their
/// SYN-ACK beats their own announcement.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AnnouncedKey {
    /// Client IPv4 address, network byte order.
    pub client_addr: [u8; 4],
    /// Target IPv4 address, network byte order.
    pub target_addr: [u8; 4],
    /// Target TCP port, network byte order.
    pub target_port: [u8; 2],
    /// Always zero (the kernel hashes all 12 bytes).
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<AnnouncedKey>() == 12);

impl AnnouncedKey {
    /// The key built straight from header bytes (all in network order).
    #[inline(always)]
    pub const fn from_wire(
        client_addr: [u8; 4],
        target_addr: [u8; 4],
        target_port: [u8; 2],
    ) -> Self {
        Self {
            client_addr,
            target_addr,
            target_port,
            _pad: [0; 2],
        }
    }
}

/// The data of an LPM trie key for client ranges: an IPv4 address in
/// network byte order (the trie matches its leading `prefix_len` bits).
pub type ClientNetKey = [u8; 4];

/// An IPv6 endpoint as stored in a BPF hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey6 {
    /// IPv6 address, network byte order; all zero matches any address.
    pub addr: [u8; 16],
    /// TCP port, network byte order.
    pub port: [u8; 2],
    /// Always zero (the kernel hashes all 20 bytes).
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<EndpointKey6>() == 20);

impl EndpointKey6 {
    /// The key for `addr:port`; `addr` in network byte order.
    pub const fn new(addr: [u8; 16], port: u16) -> Self {
        Self::from_wire(addr, port.to_be_bytes())
    }

    /// The key built straight from header bytes (both in network order).
    #[inline(always)]
    pub const fn from_wire(addr: [u8; 16], port: [u8; 2]) -> Self {
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
            addr: [0; 16],
            ..self
        }
    }

    /// Port in host byte order.
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
}

/// An IPv6 client address announced for a target endpoint (as
/// [`AnnouncedKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AnnouncedKey6 {
    /// Client IPv6 address, network byte order.
    pub client_addr: [u8; 16],
    /// Target IPv6 address, network byte order.
    pub target_addr: [u8; 16],
    /// Target TCP port, network byte order.
    pub target_port: [u8; 2],
    /// Always zero (the kernel hashes all 36 bytes).
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<AnnouncedKey6>() == 36);

impl AnnouncedKey6 {
    /// The key built straight from header bytes (all in network order).
    #[inline(always)]
    pub const fn from_wire(
        client_addr: [u8; 16],
        target_addr: [u8; 16],
        target_port: [u8; 2],
    ) -> Self {
        Self {
            client_addr,
            target_addr,
            target_port,
            _pad: [0; 2],
        }
    }
}

/// The data of an LPM trie key for IPv6 client ranges: the address in
/// network byte order.
pub type ClientNetKey6 = [u8; 16];

#[cfg(feature = "user")]
// SAFETY: `EndpointKey6` is `repr(C)`, `Copy`, has no padding and every bit
// pattern is valid.
unsafe impl aya::Pod for EndpointKey6 {}

#[cfg(feature = "user")]
// SAFETY: `AnnouncedKey6` is `repr(C)`, `Copy`, has no padding and every
// bit pattern is valid.
unsafe impl aya::Pod for AnnouncedKey6 {}

#[cfg(feature = "user")]
// SAFETY: `AnnouncedKey` is `repr(C)`, `Copy`, has no padding and every bit
// pattern is valid.
unsafe impl aya::Pod for AnnouncedKey {}

#[cfg(feature = "user")]
// SAFETY: `EndpointKey` is `repr(C)`, `Copy`, has no padding and every bit
// pattern is valid.
unsafe impl aya::Pod for EndpointKey {}
