//! The packet model: zero-copy views over IPv4/TCP packets, TCP options,
//! sequence-number arithmetic and checksums.
//!
//! The engine works at the IP layer: a captured packet arrives without its
//! link-layer header, and every packet the engine emits is an IPv4 packet
//! (the sender adds the Ethernet header). Rewrites patch fields in place and
//! update both checksums incrementally (RFC 1624); packets the engine builds
//! from scratch get full checksums.

pub mod checksum;
pub mod ipv4tcp;
pub mod options;
pub mod seq;

pub use ipv4tcp::{ChecksumField, Ipv4TcpPacket, PacketError, TcpFlags};
pub use options::TcpOptions;
pub use seq::SeqNumber;
