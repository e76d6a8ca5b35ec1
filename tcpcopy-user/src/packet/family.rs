//! The IP families a TCP packet can travel in. The address type is the
//! family: `[u8; 4]` is IPv4, `[u8; 16]` is IPv6, so code generic over
//! [`Address`] is compiled once per family (IPv4 code pays nothing for
//! IPv6) and an address in a struct literal says which family it is.
//!
//! What differs between the families is only the IP header: its length,
//! where the addresses sit, the length field, the IPv4 header checksum, and
//! the TCP pseudo-header. The TCP header and everything after it are the
//! same, and live in [`super::tcp`].
//!
//! IPv6 extension headers: [`Address::check`] accepts only a fixed IPv6
//! header followed by TCP. A captured packet with extension headers is
//! normalized first ([`ipv6_strip_extensions`]): hop-by-hop, routing
//! (already at its final destination) and destination options headers are
//! removed; fragments are refused (counted by the caller).

use core::{fmt::Debug, hash::Hash};

use super::{checksum, tcp::PacketError};

pub const PROTO_TCP: u8 = 6;
/// IPv6 next-header values of the extension headers skipped.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTIONS: u8 = 60;
/// Extension headers followed before giving up (a chain longer than
/// this is not traffic anyone sends).
const MAX_EXTENSIONS: usize = 8;

/// An IP address of one family (see the module documentation).
pub trait Address:
    Copy + Eq + Ord + Hash + Default + Debug + AsRef<[u8]> + AsMut<[u8]> + Send + Sync + 'static
{
    /// The IP version number.
    const VERSION: u8;
    /// The IP header without options or extension headers.
    const HEADER_LEN: usize;
    /// Offsets of the source and destination addresses.
    const SRC_AT: usize;
    const DST_AT: usize;
    /// Whether the IP header has a checksum of its own (IPv4).
    const HEADER_CHECKSUM: bool;
    /// Bytes of IP and TCP headers (without options) below the payload:
    /// what an MTU leaves for the TCP payload (MSS).
    const HEADERS_LEN: usize = Self::HEADER_LEN + super::tcp::TCP_HEADER_LEN;

    /// Validates the IP header of `b` for a TCP packet: returns the IP
    /// header length and the packet's total length (bytes past it are
    /// link-layer padding).
    fn check(b: &[u8]) -> Result<(usize, usize), PacketError>;
    /// Writes the length field for a packet of `total` bytes.
    fn set_total_len(b: &mut [u8], total: usize);
    /// Writes a fixed IP header (no options) for a TCP packet of `total`
    /// bytes, its checksum included.
    fn write_header(b: &mut [u8], src: Self, dst: Self, ttl: u8, ip_id: u16, total: usize);
    /// The TTL (IPv4) or hop limit (IPv6).
    fn ttl(b: &[u8]) -> u8;
    /// The sum of the TCP pseudo-header (not folded) for `tcp_len` bytes
    /// of TCP header and payload.
    fn pseudo_header(src: Self, dst: Self, tcp_len: u32) -> u32;
    /// Reads an address from `b` (at least its length).
    fn read(b: &[u8]) -> Self;

    /// `addr:port` and a 16-bit tag packed into one exact, cheaply hashed
    /// key (session tables).
    type Packed: Copy + Eq + Hash + Debug + core::fmt::LowerHex;
    fn pack(self, port: u16, tag: u16) -> Self::Packed;
    /// A 64-bit digest of the address for hashing (sharding, sampling,
    /// port choice); an IPv4 address is its own digest.
    fn digest(self) -> u64;
    /// Writes `addr:port` as users write it (`[addr]:port` for IPv6).
    fn fmt_endpoint(self, port: u16, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result;
    /// This family's address of `ip`, if it is of this family.
    fn from_ip(ip: std::net::IpAddr) -> Option<Self>;
    fn to_ip(self) -> std::net::IpAddr;
    /// The IP version of a packet that starts with `b`.
    fn is_version(b: &[u8]) -> bool {
        b.first().is_some_and(|v| v >> 4 == Self::VERSION)
    }
}

impl Address for [u8; 4] {
    const VERSION: u8 = 4;
    const HEADER_LEN: usize = 20;
    const SRC_AT: usize = 12;
    const DST_AT: usize = 16;
    const HEADER_CHECKSUM: bool = true;

    fn check(b: &[u8]) -> Result<(usize, usize), PacketError> {
        if b.len() < Self::HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(PacketError::NotIpv4);
        }
        let ip_len = usize::from(b[0] & 0x0f) * 4;
        if ip_len < Self::HEADER_LEN || ip_len > b.len() {
            return Err(PacketError::BadIpHeaderLength);
        }
        let total_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        check_total(b, ip_len, total_len)?;
        if b[9] != PROTO_TCP {
            return Err(PacketError::NotTcp);
        }
        let frag = u16::from_be_bytes([b[6], b[7]]);
        if frag & 0x3fff != 0 {
            return Err(PacketError::Fragment);
        }
        Ok((ip_len, total_len))
    }

    fn set_total_len(b: &mut [u8], total: usize) {
        b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    }

    fn write_header(b: &mut [u8], src: Self, dst: Self, ttl: u8, ip_id: u16, total: usize) {
        let h: &mut [u8; 20] = (&mut b[..20]).try_into().expect("20 bytes");
        *h = [
            0x45, 0, 0, 0, 0, 0, 0x40, 0, // DF
            ttl, PROTO_TCP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&ip_id.to_be_bytes());
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let check = checksum::finish(checksum::sum(h));
        h[10..12].copy_from_slice(&check.to_be_bytes());
    }

    fn ttl(b: &[u8]) -> u8 {
        b[8]
    }

    fn pseudo_header(src: Self, dst: Self, tcp_len: u32) -> u32 {
        checksum::pseudo_header(src, dst, PROTO_TCP, tcp_len as u16)
    }

    fn read(b: &[u8]) -> Self {
        b[..4].try_into().expect("4 bytes")
    }

    type Packed = u64;
    fn pack(self, port: u16, tag: u16) -> u64 {
        (u64::from(u32::from_be_bytes(self)) << 16) | u64::from(port) | (u64::from(tag) << 48)
    }
    fn digest(self) -> u64 {
        u64::from(u32::from_be_bytes(self))
    }
    fn fmt_endpoint(self, port: u16, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self;
        write!(f, "{a}.{b}.{c}.{d}:{port}")
    }
    fn from_ip(ip: std::net::IpAddr) -> Option<Self> {
        match ip {
            std::net::IpAddr::V4(a) => Some(a.octets()),
            std::net::IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> std::net::IpAddr {
        self.into()
    }
}

impl Address for [u8; 16] {
    const VERSION: u8 = 6;
    const HEADER_LEN: usize = 40;
    const SRC_AT: usize = 8;
    const DST_AT: usize = 24;
    const HEADER_CHECKSUM: bool = false;

    fn check(b: &[u8]) -> Result<(usize, usize), PacketError> {
        if b.len() < Self::HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(PacketError::NotIpv6);
        }
        let total_len = Self::HEADER_LEN + usize::from(u16::from_be_bytes([b[4], b[5]]));
        check_total(b, Self::HEADER_LEN, total_len)?;
        match b[6] {
            PROTO_TCP => Ok((Self::HEADER_LEN, total_len)),
            FRAGMENT => Err(PacketError::Fragment),
            HOP_BY_HOP | ROUTING | DEST_OPTIONS => Err(PacketError::ExtensionHeaders),
            _ => Err(PacketError::NotTcp),
        }
    }

    fn set_total_len(b: &mut [u8], total: usize) {
        b[4..6].copy_from_slice(&((total - Self::HEADER_LEN) as u16).to_be_bytes());
    }

    fn write_header(b: &mut [u8], src: Self, dst: Self, ttl: u8, _ip_id: u16, total: usize) {
        let h = &mut b[..40];
        h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&((total - Self::HEADER_LEN) as u16).to_be_bytes());
        h[6] = PROTO_TCP;
        h[7] = ttl;
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
    }

    fn ttl(b: &[u8]) -> u8 {
        b[7]
    }

    fn pseudo_header(src: Self, dst: Self, tcp_len: u32) -> u32 {
        // Both addresses, the 32-bit upper-layer length, the next header.
        checksum::sum(&src)
            + checksum::sum(&dst)
            + (tcp_len >> 16)
            + (tcp_len & 0xffff)
            + u32::from(PROTO_TCP)
    }

    fn read(b: &[u8]) -> Self {
        b[..16].try_into().expect("16 bytes")
    }

    type Packed = PackedV6;
    fn pack(self, port: u16, tag: u16) -> PackedV6 {
        PackedV6(
            u128::from_be_bytes(self),
            u32::from(port) | (u32::from(tag) << 16),
        )
    }
    fn digest(self) -> u64 {
        let v = u128::from_be_bytes(self);
        // The interface identifier (low half) varies most; the prefix is
        // folded in rotated so equal halves do not cancel.
        (v as u64) ^ ((v >> 64) as u64).rotate_left(29)
    }
    fn fmt_endpoint(self, port: u16, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "[{}]:{port}", std::net::Ipv6Addr::from(self))
    }
    fn from_ip(ip: std::net::IpAddr) -> Option<Self> {
        match ip {
            std::net::IpAddr::V6(a) => Some(a.octets()),
            std::net::IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> std::net::IpAddr {
        self.into()
    }
}

/// A packed IPv6 endpoint: the address and (tag << 16 | port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedV6(pub u128, pub u32);

impl core::fmt::LowerHex for PackedV6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:x}/{:x}", self.0, self.1)
    }
}

/// The total length must cover the headers and lie within the bytes.
fn check_total(b: &[u8], ip_len: usize, total_len: usize) -> Result<(), PacketError> {
    use super::tcp::TCP_HEADER_LEN;
    if total_len > b.len() || total_len < ip_len + TCP_HEADER_LEN {
        return Err(if b.len() < ip_len + TCP_HEADER_LEN {
            PacketError::Truncated
        } else {
            PacketError::BadTotalLength
        });
    }
    Ok(())
}

/// What [`ipv6_strip_extensions`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extensions {
    /// None: the packet is usable as it is.
    None,
    /// Removed: `out` holds the packet with TCP right after a fixed header.
    Stripped,
}

/// Removes the hop-by-hop, routing and destination options headers of an
/// IPv6 packet carrying TCP, writing the result to `out`. Refuses
/// fragments ([`PacketError::Fragment`]), a routing header with segments
/// left (the packet is not at its final destination yet, so its TCP
/// checksum is not over its destination address), and malformed chains.
pub fn ipv6_strip_extensions(b: &[u8], out: &mut Vec<u8>) -> Result<Extensions, PacketError> {
    const FIXED: usize = 40;
    if b.len() < FIXED {
        return Err(PacketError::Truncated);
    }
    if b[0] >> 4 != 6 {
        return Err(PacketError::NotIpv6);
    }
    let total = FIXED + usize::from(u16::from_be_bytes([b[4], b[5]]));
    if total > b.len() {
        return Err(PacketError::BadTotalLength);
    }
    let mut next = b[6];
    let mut at = FIXED;
    for _ in 0..=MAX_EXTENSIONS {
        match next {
            PROTO_TCP if at == FIXED => return Ok(Extensions::None),
            PROTO_TCP => {
                if total < at + super::tcp::TCP_HEADER_LEN {
                    return Err(PacketError::BadTotalLength);
                }
                out.clear();
                out.extend_from_slice(&b[..FIXED]);
                out.extend_from_slice(&b[at..total]);
                out[6] = PROTO_TCP;
                <[u8; 16]>::set_total_len(out, total - (at - FIXED));
                return Ok(Extensions::Stripped);
            }
            FRAGMENT => return Err(PacketError::Fragment),
            HOP_BY_HOP | ROUTING | DEST_OPTIONS => {
                let Some(h) = b.get(at..at + 8).filter(|_| at + 8 <= total) else {
                    return Err(PacketError::BadExtensionHeader);
                };
                if next == ROUTING && h[3] != 0 {
                    return Err(PacketError::NotFinalDestination);
                }
                let len = (usize::from(h[1]) + 1) * 8;
                if at + len > total {
                    return Err(PacketError::BadExtensionHeader);
                }
                next = h[0];
                at += len;
            }
            _ => return Err(PacketError::NotTcp),
        }
    }
    Err(PacketError::BadExtensionHeader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{
        ChecksumField, Ipv6TcpPacket, SeqNumber, TcpFlags,
        tcp::{Rewrite, SegmentRepr},
    };

    const CLIENT: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c,
    ];
    const ONLINE: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const TARGET: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// An IPv6/TCP packet built by etherparse (an independent builder).
    fn built(payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ipv6(CLIENT, ONLINE, 61)
            .tcp(40000, 80, 1000, 502)
            .ack(5000)
            .psh();
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).unwrap();
        out
    }

    /// The TCP checksum etherparse computes for `bytes` (no extensions).
    fn etherparse_tcp_checksum(bytes: &[u8]) -> (u16, u16) {
        let (ip, rest) = etherparse::Ipv6Header::from_slice(bytes).unwrap();
        let (tcp, payload) = etherparse::TcpHeader::from_slice(rest).unwrap();
        (tcp.calc_checksum_ipv6(&ip, payload).unwrap(), tcp.checksum)
    }

    #[test]
    fn an_ipv6_packet_parses_with_valid_checksums() {
        let bytes = built(b"GET / HTTP/1.1\r\n\r\n");
        let p = Ipv6TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.src_addr(), CLIENT);
        assert_eq!(p.dst_addr(), ONLINE);
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!(p.ttl(), 61);
        assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(p.ip_header_len(), 40);
        assert!(p.checksums_ok());
    }

    #[test]
    fn an_emitted_ipv6_segment_matches_etherparse() {
        let repr = SegmentRepr {
            src: TARGET,
            dst: CLIENT,
            src_port: 8080,
            dst_port: 40000,
            seq: SeqNumber(77),
            ack: SeqNumber(0xffff_fff0),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 65535,
            ttl: 64,
            ip_id: 0,
            options: &[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3],
            payload: b"hello",
        };
        let mut out = vec![0u8; repr.len()];
        assert_eq!(repr.emit(&mut out), 40 + 32 + 5);
        let (want, got) = etherparse_tcp_checksum(&out);
        assert_eq!(want, got);
        let p = Ipv6TcpPacket::new_checked(&out[..]).unwrap();
        assert!(p.checksums_ok());
        assert_eq!(p.options().timestamp, Some((9, 3)));
        assert_eq!(p.ttl(), 64);
    }

    #[test]
    fn ipv6_rewrites_and_setters_keep_the_checksum_valid() {
        let mut a = built(b"some payload!");
        let mut b = a.clone();
        let r = Rewrite {
            src: CLIENT,
            dst: TARGET,
            src_port: 1234,
            dst_port: 8080,
            ack: Some(SeqNumber(0x8000_0001)),
            window: Some(65535),
        };
        let mut p = Ipv6TcpPacket::new_checked(&mut a[..]).unwrap();
        p.rewrite(&r);
        assert!(p.checksums_ok());
        assert_eq!(p.dst_addr(), TARGET);
        let mut q = Ipv6TcpPacket::new_checked(&mut b[..]).unwrap();
        q.set_dst_addr(TARGET);
        q.set_src_port(1234);
        q.set_dst_port(8080);
        q.set_ack(SeqNumber(0x8000_0001));
        q.set_window(65535);
        assert_eq!(a, b);
        let (want, got) = etherparse_tcp_checksum(&a);
        assert_eq!(want, got);
        // Structural change: the checksum is recomputed.
        let mut p = Ipv6TcpPacket::new_checked(&mut a[..]).unwrap();
        p.set_flags(TcpFlags::RST);
        p.fill_checksums();
        assert!(p.checksums_ok());
    }

    #[test]
    fn an_offloaded_ipv6_checksum_is_recognized() {
        let mut bytes = built(b"abc");
        let tcp_len = (bytes.len() - 40) as u32;
        let partial = checksum::fold(<[u8; 16]>::pseudo_header(CLIENT, ONLINE, tcp_len));
        bytes[56..58].copy_from_slice(&partial.to_be_bytes());
        let p = Ipv6TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.tcp_checksum_field(), ChecksumField::Offloaded);
        // Data changed under an offloaded field stays offloaded (the NIC
        // would sum it); a field that is neither is damage.
        bytes[60] ^= 1;
        let p = Ipv6TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.tcp_checksum_field(), ChecksumField::Offloaded);
        bytes[57] ^= 1;
        let p = Ipv6TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.tcp_checksum_field(), ChecksumField::Bad);
    }

    #[test]
    fn ipv6_validation_rejects_bad_lengths_and_other_headers() {
        let good = built(b"abc");
        for len in 0..good.len() {
            assert!(
                Ipv6TcpPacket::new_checked(&good[..len]).is_err(),
                "len {len}"
            );
        }
        let with_next = |n: u8| {
            let mut b = good.clone();
            b[6] = n;
            Ipv6TcpPacket::new_checked(&b[..]).unwrap_err()
        };
        assert_eq!(with_next(17), PacketError::NotTcp);
        assert_eq!(with_next(FRAGMENT), PacketError::Fragment);
        for ext in [HOP_BY_HOP, ROUTING, DEST_OPTIONS] {
            assert_eq!(with_next(ext), PacketError::ExtensionHeaders);
        }
        assert_eq!(
            crate::packet::Ipv4TcpPacket::new_checked(&good[..]).unwrap_err(),
            PacketError::NotIpv4
        );
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            Ipv6TcpPacket::new_checked(&padded[..]).unwrap().payload(),
            b"abc"
        );
    }

    /// `good` with extension headers `exts` (next header, body) inserted.
    fn with_extensions(good: &[u8], exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = good[..40].to_vec();
        let mut next_at = 6;
        for (kind, body) in exts {
            out[next_at] = *kind;
            next_at = out.len();
            out.push(PROTO_TCP);
            out.push(((body.len() + 2) / 8 - 1) as u8);
            out.extend_from_slice(body);
        }
        out.extend_from_slice(&good[40..]);
        let payload = (out.len() - 40) as u16;
        out[4..6].copy_from_slice(&payload.to_be_bytes());
        out
    }

    #[test]
    fn extension_headers_are_stripped_and_the_packet_stays_valid() {
        let good = built(b"GET /ext HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        assert_eq!(ipv6_strip_extensions(&good, &mut out), Ok(Extensions::None));
        let chained = with_extensions(
            &good,
            &[
                (HOP_BY_HOP, vec![1, 4, 0, 0, 0, 0]), // PadN
                (ROUTING, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // 0 segments left
                (DEST_OPTIONS, vec![1, 4, 0, 0, 0, 0]),
            ],
        );
        assert_eq!(
            Ipv6TcpPacket::new_checked(&chained[..]).unwrap_err(),
            PacketError::ExtensionHeaders
        );
        assert_eq!(
            ipv6_strip_extensions(&chained, &mut out),
            Ok(Extensions::Stripped)
        );
        assert_eq!(out, good);
        assert!(Ipv6TcpPacket::new_checked(&out[..]).unwrap().checksums_ok());
    }

    #[test]
    fn fragments_unfinished_routes_and_broken_chains_are_refused() {
        let good = built(b"abc");
        let mut out = Vec::new();
        let frag = with_extensions(&good, &[(FRAGMENT, vec![0, 1, 0, 0, 0, 7])]);
        assert_eq!(
            ipv6_strip_extensions(&frag, &mut out),
            Err(PacketError::Fragment)
        );
        // Routing header (type 4) with one segment left.
        let routed = with_extensions(&good, &[(ROUTING, vec![4, 1, 0, 0, 0, 0])]);
        assert_eq!(
            ipv6_strip_extensions(&routed, &mut out),
            Err(PacketError::NotFinalDestination)
        );
        // A header length beyond the packet, and every truncation.
        let mut long = with_extensions(&good, &[(DEST_OPTIONS, vec![1, 4, 0, 0, 0, 0])]);
        long[41] = 200;
        assert_eq!(
            ipv6_strip_extensions(&long, &mut out),
            Err(PacketError::BadExtensionHeader)
        );
        let chained = with_extensions(&good, &[(HOP_BY_HOP, vec![1, 4, 0, 0, 0, 0])]);
        // Every cut short of the extension header and a whole TCP header
        // is refused; longer cuts are shorter, well-formed packets.
        for len in 0..chained.len() {
            let mut cut = chained[..len].to_vec();
            if len >= 6 {
                let payload = len.saturating_sub(40) as u16;
                cut[4..6].copy_from_slice(&payload.to_be_bytes());
            }
            let verdict = ipv6_strip_extensions(&cut, &mut out);
            assert_eq!(
                verdict.is_ok(),
                len >= 40 + 8 + 20,
                "cut at {len}: {verdict:?}"
            );
        }
        // A chain that never reaches TCP.
        let endless: Vec<(u8, Vec<u8>)> = (0..12)
            .map(|_| (DEST_OPTIONS, vec![1, 4, 0, 0, 0, 0]))
            .collect();
        let endless = with_extensions(&good, &endless);
        assert_eq!(
            ipv6_strip_extensions(&endless, &mut out),
            Err(PacketError::BadExtensionHeader)
        );
    }
}
