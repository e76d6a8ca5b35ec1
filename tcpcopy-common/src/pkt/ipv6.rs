//! IPv6 / TCP parsing for the XDP and TC programs: the fixed header, then
//! up to [`MAX_EXT_HEADERS`] extension headers (hop-by-hop, routing,
//! destination options) walked to the TCP header.
//!
//! A fragment header ends the walk: a fragment is reported as such
//! ([`Ipv6Parse::Fragment`]; the programs count it and leave it alone),
//! since only the first one would carry the TCP header and replaying a
//! part of a packet is worse than not replaying it. Other next headers
//! (UDP, ICMPv6, ESP, no next header, or a chain longer than the walk)
//! are [`Ipv6Parse::NotTcp`].
//!
//! Invariant: a [`Tcp6View`] only exists for a frame whose fixed IPv6
//! header, extension headers and TCP header (with options) all lie inside
//! the frame, and whose payload length covers them.

use core::{marker::PhantomData, mem::size_of};

use super::{Frame, IPPROTO_TCP, Malformed, TCP_MIN_HLEN, TcpHdr};

/// The fixed IPv6 header's length.
pub const IPV6_HLEN: usize = 40;
/// Extension headers walked before the TCP header at most (the verifier
/// needs a bound; real traffic has at most one or two).
pub const MAX_EXT_HEADERS: usize = 4;

const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTIONS: u8 = 60;

/// The fixed IPv6 header. All multi-byte fields network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Hdr {
    /// Version (high nibble), traffic class, flow label.
    pub vtc_flow: [u8; 4],
    /// Bytes after this header (extension headers included).
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

const _: () = assert!(size_of::<Ipv6Hdr>() == IPV6_HLEN);

/// The first two bytes of every extension header this parser walks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ExtHdr {
    next_header: u8,
    /// Length in 8-byte units, not counting the first 8 bytes.
    len: u8,
}

/// What an IPv6 frame holds.
#[derive(Clone, Copy)]
pub enum Ipv6Parse<'a> {
    Tcp(Tcp6View<'a>),
    /// A fragment (first or later): counted, never replayed.
    Fragment,
    /// Not TCP (or behind more extension headers than are walked).
    NotTcp,
}

/// A validated IPv6/TCP frame: where its headers are and how long they are.
#[derive(Clone, Copy)]
pub struct Tcp6View<'a> {
    ip: *const Ipv6Hdr,
    tcp: *const TcpHdr,
    /// Offset of the IPv6 header.
    pub l3_off: usize,
    /// Bytes of extension headers between the fixed header and TCP.
    pub ext_len: usize,
    /// TCP header length including options (20..=60).
    pub tcp_hdr_len: usize,
    _bytes: PhantomData<&'a [u8]>,
}

impl Tcp6View<'_> {
    #[inline(always)]
    pub fn ip(&self) -> &Ipv6Hdr {
        // SAFETY: bounds-checked in `parse_ipv6_tcp`; the frame outlives 'a.
        unsafe { &*self.ip }
    }

    #[inline(always)]
    pub fn tcp(&self) -> &TcpHdr {
        // SAFETY: as for `ip`.
        unsafe { &*self.tcp }
    }

    /// Offset of the TCP header from the frame start.
    #[inline(always)]
    pub const fn tcp_off(&self) -> usize {
        self.l3_off + IPV6_HLEN + self.ext_len
    }
}

/// Parses the IPv6 packet at `l3_off` (the link layer read already, its
/// EtherType IPv6) down to TCP. `Err(Malformed)`: truncated headers, a
/// version other than 6, or lengths that cannot be.
#[inline(always)]
pub fn parse_ipv6_tcp<'a>(frame: &Frame<'a>, l3_off: usize) -> Result<Ipv6Parse<'a>, Malformed> {
    let ip: *const Ipv6Hdr = frame.ptr_at(l3_off).ok_or(Malformed)?;
    // SAFETY: bounds-checked just above.
    let ip_ref = unsafe { &*ip };
    if ip_ref.vtc_flow[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let payload_len = u16::from_be_bytes(ip_ref.payload_len) as usize;
    let mut next = ip_ref.next_header;
    let mut ext_len = 0usize;
    // Unrolled for the verifier: a fixed number of steps.
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTIONS => {
                let ext: *const ExtHdr = frame
                    .ptr_at(l3_off + IPV6_HLEN + ext_len)
                    .ok_or(Malformed)?;
                // SAFETY: bounds-checked just above.
                let ext = unsafe { *ext };
                next = ext.next_header;
                ext_len += (ext.len as usize + 1) * 8;
            }
            _ => break,
        }
    }
    match next {
        IPPROTO_TCP => {}
        NEXT_FRAGMENT => return Ok(Ipv6Parse::Fragment),
        _ => return Ok(Ipv6Parse::NotTcp),
    }
    let tcp_off = l3_off + IPV6_HLEN + ext_len;
    let tcp: *const TcpHdr = frame.ptr_at(tcp_off).ok_or(Malformed)?;
    // SAFETY: bounds-checked just above.
    let tcp_hdr_len = ((unsafe { (*tcp).data_off } >> 4) as usize) * 4;
    if tcp_hdr_len < TCP_MIN_HLEN || payload_len < ext_len + tcp_hdr_len {
        return Err(Malformed);
    }
    // TCP options must be in the frame too.
    if !frame.has(tcp_off + tcp_hdr_len) {
        return Err(Malformed);
    }
    Ok(Ipv6Parse::Tcp(Tcp6View {
        ip,
        tcp,
        l3_off,
        ext_len,
        tcp_hdr_len,
        _bytes: PhantomData,
    }))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use etherparse::{PacketBuilder, TcpOptionElement};

    use super::{super::link_layer, *};

    const SRC: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DST: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn tcp6_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(SRC, DST, 64)
            .tcp(40000, 80, 1000, 65535)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1440),
                TcpOptionElement::Timestamp(1, 2),
            ])
            .unwrap()
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// `frame` with extension headers `(kind, total bytes)` inserted
    /// before the TCP header (payload length and next headers fixed up).
    fn with_extensions(frame: &[u8], exts: &[(u8, usize)]) -> Vec<u8> {
        let mut out = frame[..14 + 40].to_vec();
        let mut prev_next = 14 + 6;
        for &(kind, len) in exts {
            let at = out.len();
            out[prev_next] = kind;
            out.extend(core::iter::repeat_n(0u8, len));
            out[at] = IPPROTO_TCP;
            if kind != NEXT_FRAGMENT {
                out[at + 1] = (len / 8 - 1) as u8;
            }
            prev_next = at;
        }
        out.extend_from_slice(&frame[14 + 40..]);
        let added: usize = exts.iter().map(|e| e.1).sum();
        let pl = u16::from_be_bytes([out[18], out[19]]) + added as u16;
        out[18..20].copy_from_slice(&pl.to_be_bytes());
        out
    }

    /// (l3 offset, extension bytes, TCP header length, ports).
    type Layout = (usize, usize, usize, u16, u16);

    /// The layout of a TCP frame, or what else it is.
    fn parse(bytes: &[u8]) -> Result<Result<Layout, &'static str>, Malformed> {
        let frame = Frame::from_slice(bytes);
        let (et, l3) = link_layer(&frame)?;
        assert!(super::super::is_ipv6(et));
        Ok(match parse_ipv6_tcp(&frame, l3)? {
            Ipv6Parse::Tcp(v) => Ok((
                v.l3_off,
                v.ext_len,
                v.tcp_hdr_len,
                u16::from_be_bytes(v.tcp().source),
                u16::from_be_bytes(v.tcp().dest),
            )),
            Ipv6Parse::Fragment => Err("fragment"),
            Ipv6Parse::NotTcp => Err("not tcp"),
        })
    }

    #[test]
    fn plain_ipv6_tcp() {
        let f = tcp6_frame(b"GET /");
        assert_eq!(parse(&f), Ok(Ok((14, 0, 36, 40000, 80))));
        let frame = Frame::from_slice(&f);
        let Ok(Ipv6Parse::Tcp(v)) = parse_ipv6_tcp(&frame, 14) else {
            panic!("tcp");
        };
        assert_eq!((v.ip().saddr, v.ip().daddr), (SRC, DST));
        assert_eq!(v.tcp_off(), 54);
    }

    #[test]
    fn extension_headers_are_walked() {
        let f = tcp6_frame(b"x");
        let one = with_extensions(&f, &[(NEXT_HOP_BY_HOP, 8)]);
        assert_eq!(parse(&one), Ok(Ok((14, 8, 36, 40000, 80))));
        let three = with_extensions(
            &f,
            &[
                (NEXT_HOP_BY_HOP, 8),
                (NEXT_ROUTING, 24),
                (NEXT_DEST_OPTIONS, 16),
            ],
        );
        assert_eq!(parse(&three), Ok(Ok((14, 48, 36, 40000, 80))));
        // More than the walk takes: not reached, not TCP.
        let five = with_extensions(&f, &[(NEXT_DEST_OPTIONS, 8); 5]);
        assert_eq!(parse(&five), Ok(Err("not tcp")));
    }

    #[test]
    fn fragments_and_other_protocols_are_told_apart() {
        let f = tcp6_frame(b"x");
        let frag = with_extensions(&f, &[(NEXT_HOP_BY_HOP, 8), (NEXT_FRAGMENT, 8)]);
        assert_eq!(parse(&frag), Ok(Err("fragment")));
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(SRC, DST, 64)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        assert_eq!(parse(&udp), Ok(Err("not tcp")));
    }

    #[test]
    fn truncation_at_every_length_is_malformed_never_a_panic() {
        let f = with_extensions(&tcp6_frame(b""), &[(NEXT_ROUTING, 16)]);
        for len in 0..f.len() {
            assert_eq!(parse(&f[..len]), Err(Malformed), "len {len}");
        }
        assert!(parse(&f).unwrap().is_ok());
    }

    #[test]
    fn impossible_lengths_are_malformed() {
        let good = tcp6_frame(b"abcd");
        let mut bad_version = good.clone();
        bad_version[14] = 0x45;
        assert_eq!(parse(&bad_version), Err(Malformed));
        let mut bad_doff = good.clone();
        bad_doff[14 + 40 + 12] = 0x40;
        assert_eq!(parse(&bad_doff), Err(Malformed));
        let mut short_payload = good.clone();
        short_payload[18..20].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(parse(&short_payload), Err(Malformed));
    }
}
