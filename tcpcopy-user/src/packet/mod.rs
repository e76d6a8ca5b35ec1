//! The packet model: zero-copy views over TCP packets of both IP families,
//! TCP options, sequence-number arithmetic and checksums.
//!
//! The engine works at the IP layer: a captured packet arrives without its
//! link-layer header, and every packet the engine emits is an IP packet
//! (the sender adds the Ethernet header). Rewrites patch fields in place and
//! update both checksums incrementally (RFC 1624); packets the engine builds
//! from scratch get full checksums.

pub mod checksum;
pub mod family;
pub mod options;
pub mod seq;
pub mod tcp;

pub use family::Address;
pub use options::TcpOptions;
pub use seq::SeqNumber;
pub use tcp::{ChecksumField, Ipv4TcpPacket, Ipv6TcpPacket, PacketError, TcpFlags, TcpPacket};
