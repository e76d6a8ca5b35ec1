//! Bounds-checked header parsing for the XDP programs: Ethernet with up to two
//! VLAN tags (802.1Q / 802.1ad), IPv4 with options or IPv6 with extension
//! headers ([`ipv6`]), TCP with options.
//!
//! The parser works on a raw `[start, end)` address range because that is what
//! an XDP context hands out; every read goes through [`Frame::ptr_at`], the one
//! place that checks bounds (and the check the verifier needs to see). The
//! same code runs on the host in unit tests through [`Frame::from_slice`].
//!
//! Invariant: a [`TcpView`] only exists for a frame whose Ethernet, VLAN,
//! IPv4 (with options) and TCP (with options) headers all lie inside the frame.

pub mod ipv6;

use core::marker::PhantomData;
use core::mem::size_of;

pub use ipv6::{Ipv6Hdr, Ipv6Parse, Tcp6View, parse_ipv6_tcp};

/// Ethernet header length without VLAN tags.
pub const ETH_HLEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_MIN_HLEN: usize = 20;
/// TCP header length without options.
pub const TCP_MIN_HLEN: usize = 20;
/// The IANA protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];

/// Ethernet II header. All multi-byte fields network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

/// The 4 bytes a VLAN tag adds after the source MAC.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub ether_type: [u8; 2],
}

/// IPv4 header without options. All multi-byte fields network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

/// TCP header without options. All multi-byte fields network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpHdr {
    pub source: [u8; 2],
    pub dest: [u8; 2],
    pub seq: [u8; 4],
    pub ack_seq: [u8; 4],
    /// Data offset in the high nibble.
    pub data_off: u8,
    pub flags: u8,
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg_ptr: [u8; 2],
}

const _: () = assert!(size_of::<EthHdr>() == ETH_HLEN);
const _: () = assert!(size_of::<VlanHdr>() == 4);
const _: () = assert!(size_of::<Ipv4Hdr>() == IPV4_MIN_HLEN);
const _: () = assert!(size_of::<TcpHdr>() == TCP_MIN_HLEN);

/// The frame is cut short or announces impossible header lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// A received frame: the byte range `[start, end)`.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    start: usize,
    end: usize,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Frame<'a> {
    /// # Safety
    /// `[start, end)` must be readable memory that stays valid and unchanged
    /// for `'a` (in an XDP program: the packet, for the program's run).
    #[inline(always)]
    pub const unsafe fn new(start: usize, end: usize) -> Self {
        Self {
            start,
            end,
            _bytes: PhantomData,
        }
    }

    /// A frame over a byte slice (host-side tests and tools).
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        let start = bytes.as_ptr() as usize;
        // SAFETY: the slice is readable and borrowed for 'a.
        unsafe { Self::new(start, start + bytes.len()) }
    }

    /// Address of the first byte.
    #[inline(always)]
    pub const fn start(&self) -> usize {
        self.start
    }

    /// Address one past the last byte.
    #[inline(always)]
    pub const fn end(&self) -> usize {
        self.end
    }

    /// A pointer to a `T` at `offset`, if all of it lies inside the frame.
    /// The one bounds check every header read goes through.
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        Some(at as *const T)
    }

    /// Whether the first `len` bytes all lie inside the frame.
    #[inline(always)]
    pub fn has(&self, len: usize) -> bool {
        self.start + len <= self.end
    }
}

/// A validated IPv4/TCP frame: where its headers are and how long they are.
#[derive(Clone, Copy)]
pub struct TcpView<'a> {
    ip: *const Ipv4Hdr,
    tcp: *const TcpHdr,
    /// Offset of the IPv4 header (14, 18 or 22).
    pub l3_off: usize,
    /// IPv4 header length including options (20..=60).
    pub ip_hdr_len: usize,
    /// TCP header length including options (20..=60).
    pub tcp_hdr_len: usize,
    _bytes: PhantomData<&'a [u8]>,
}

impl TcpView<'_> {
    #[inline(always)]
    pub fn ip(&self) -> &Ipv4Hdr {
        // SAFETY: bounds-checked in `parse_ipv4_tcp`; the frame outlives 'a.
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
        self.l3_off + self.ip_hdr_len
    }

    /// The IPv4 total length field (header + TCP header + payload).
    #[inline(always)]
    pub fn ip_total_len(&self) -> u16 {
        u16::from_be_bytes(self.ip().tot_len)
    }
}

/// Reads the Ethernet header and up to two VLAN tags: the EtherType of
/// what follows and its offset.
#[inline(always)]
pub fn link_layer(frame: &Frame<'_>) -> Result<([u8; 2], usize), Malformed> {
    let eth: *const EthHdr = frame.ptr_at(0).ok_or(Malformed)?;
    // SAFETY: bounds-checked just above.
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3_off = ETH_HLEN;
    // Up to two tags (QinQ), unrolled for the verifier.
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = frame.ptr_at(l3_off).ok_or(Malformed)?;
        // SAFETY: bounds-checked just above.
        ether_type = unsafe { (*vlan).ether_type };
        l3_off += size_of::<VlanHdr>();
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            let vlan: *const VlanHdr = frame.ptr_at(l3_off).ok_or(Malformed)?;
            // SAFETY: bounds-checked just above.
            ether_type = unsafe { (*vlan).ether_type };
            l3_off += size_of::<VlanHdr>();
        }
    }
    Ok((ether_type, l3_off))
}

/// Whether a link-layer EtherType is IPv4.
#[inline(always)]
pub fn is_ipv4(ether_type: [u8; 2]) -> bool {
    ether_type == ETH_P_IPV4
}

/// Whether a link-layer EtherType is IPv6.
#[inline(always)]
pub fn is_ipv6(ether_type: [u8; 2]) -> bool {
    ether_type == ETH_P_IPV6
}

/// Where the IP packet of a TCP frame of either family starts (after the
/// link layer); `None` for anything else (not TCP, an IPv6 fragment,
/// malformed headers). For userspace readers of whole frames.
pub fn tcp_packet_offset(frame: &Frame<'_>) -> Option<usize> {
    let (ether_type, l3_off) = link_layer(frame).ok()?;
    if is_ipv4(ether_type) {
        parse_ipv4_tcp_at(frame, l3_off).ok()?.map(|v| v.l3_off)
    } else if is_ipv6(ether_type) {
        match parse_ipv6_tcp(frame, l3_off).ok()? {
            Ipv6Parse::Tcp(v) => Some(v.l3_off),
            Ipv6Parse::Fragment | Ipv6Parse::NotTcp => None,
        }
    } else {
        None
    }
}

/// Parses Ethernet (+ VLAN) / IPv4 / TCP.
///
/// `Ok(None)`: a well-formed frame that is not a first-fragment IPv4/TCP
/// packet (ARP, IPv6, UDP, a later IP fragment). `Err(Malformed)`: truncated
/// headers, a version other than 4 in an IPv4 ethertype, or header lengths
/// that cannot be.
#[inline(always)]
pub fn parse_ipv4_tcp<'a>(frame: &Frame<'a>) -> Result<Option<TcpView<'a>>, Malformed> {
    let (ether_type, l3_off) = link_layer(frame)?;
    if ether_type != ETH_P_IPV4 {
        return Ok(None);
    }
    parse_ipv4_tcp_at(frame, l3_off)
}

/// As [`parse_ipv4_tcp`], for the IPv4 header at `l3_off` (the link layer
/// read already).
#[inline(always)]
pub fn parse_ipv4_tcp_at<'a>(
    frame: &Frame<'a>,
    l3_off: usize,
) -> Result<Option<TcpView<'a>>, Malformed> {
    let ip: *const Ipv4Hdr = frame.ptr_at(l3_off).ok_or(Malformed)?;
    // SAFETY: bounds-checked just above.
    let ip_ref = unsafe { &*ip };
    if ip_ref.version_ihl >> 4 != 4 {
        return Err(Malformed);
    }
    let ip_hdr_len = ((ip_ref.version_ihl & 0x0f) as usize) * 4;
    if ip_hdr_len < IPV4_MIN_HLEN {
        return Err(Malformed);
    }
    if ip_ref.protocol != IPPROTO_TCP {
        return Ok(None);
    }
    // A later fragment carries no TCP header.
    if u16::from_be_bytes(ip_ref.frag_off) & 0x1fff != 0 {
        return Ok(None);
    }
    let tot_len = u16::from_be_bytes(ip_ref.tot_len) as usize;

    let tcp_off = l3_off + ip_hdr_len;
    let tcp: *const TcpHdr = frame.ptr_at(tcp_off).ok_or(Malformed)?;
    // SAFETY: bounds-checked just above.
    let tcp_hdr_len = ((unsafe { (*tcp).data_off } >> 4) as usize) * 4;
    if tcp_hdr_len < TCP_MIN_HLEN || tot_len < ip_hdr_len + tcp_hdr_len {
        return Err(Malformed);
    }
    // TCP options must be in the frame too.
    if !frame.has(tcp_off + tcp_hdr_len) {
        return Err(Malformed);
    }
    Ok(Some(TcpView {
        ip,
        tcp,
        l3_off,
        ip_hdr_len,
        tcp_hdr_len,
        _bytes: PhantomData,
    }))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};

    fn tcp_frame(vlans: &[u16], payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6]);
        let mut out = Vec::new();
        match vlans {
            [] => builder
                .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
                .tcp(40000, 80, 1000, 65535)
                .write(&mut out, payload)
                .unwrap(),
            [one] => builder
                .single_vlan((*one).try_into().unwrap())
                .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
                .tcp(40000, 80, 1000, 65535)
                .write(&mut out, payload)
                .unwrap(),
            [outer, inner] => builder
                .double_vlan((*outer).try_into().unwrap(), (*inner).try_into().unwrap())
                .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
                .tcp(40000, 80, 1000, 65535)
                .write(&mut out, payload)
                .unwrap(),
            _ => unreachable!(),
        }
        out
    }

    /// (l3 offset, IP header length, TCP header length, source port, destination port)
    type Layout = (usize, usize, usize, u16, u16);

    fn parse(bytes: &[u8]) -> Result<Option<Layout>, Malformed> {
        let frame = Frame::from_slice(bytes);
        parse_ipv4_tcp(&frame).map(|v| {
            v.map(|v| {
                (
                    v.l3_off,
                    v.ip_hdr_len,
                    v.tcp_hdr_len,
                    u16::from_be_bytes(v.tcp().source),
                    u16::from_be_bytes(v.tcp().dest),
                )
            })
        })
    }

    #[test]
    fn plain_tcp_frame() {
        let f = tcp_frame(&[], b"GET /");
        assert_eq!(parse(&f), Ok(Some((14, 20, 20, 40000, 80))));
    }

    #[test]
    fn single_and_double_vlan() {
        assert_eq!(
            parse(&tcp_frame(&[7], b"x")),
            Ok(Some((18, 20, 20, 40000, 80)))
        );
        assert_eq!(
            parse(&tcp_frame(&[7, 9], b"x")),
            Ok(Some((22, 20, 20, 40000, 80)))
        );
    }

    #[test]
    fn ip_and_tcp_options() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
            .tcp(40000, 80, 1000, 65535)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(1, 2),
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write(&mut out, b"")
            .unwrap();
        // Insert 8 bytes of IP options (NOPs + EOL) and fix IHL / total length.
        let mut with_opts = out[..34].to_vec();
        with_opts.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
        with_opts.extend_from_slice(&out[34..]);
        with_opts[14] = 0x47;
        let tot = u16::from_be_bytes([with_opts[16], with_opts[17]]) + 8;
        with_opts[16..18].copy_from_slice(&tot.to_be_bytes());
        assert_eq!(parse(&with_opts), Ok(Some((14, 28, 40, 40000, 80))));
    }

    #[test]
    fn not_tcp_is_not_malformed() {
        let mut arp = [0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), Ok(None));
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        assert_eq!(parse(&udp), Ok(None));
        // A later fragment of a TCP packet carries no TCP header.
        let mut frag = tcp_frame(&[], b"x");
        frag[20..22].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(parse(&frag), Ok(None));
    }

    #[test]
    fn truncation_at_every_length_is_malformed_never_a_panic() {
        let f = tcp_frame(&[7], b"");
        for len in 0..f.len() {
            assert_eq!(parse(&f[..len]), Err(Malformed), "len {len}");
        }
        assert!(parse(&f).unwrap().is_some());
    }

    #[test]
    fn impossible_lengths_are_malformed() {
        let good = tcp_frame(&[], b"abcd");
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(parse(&bad_ihl), Err(Malformed));
        let mut bad_version = good.clone();
        bad_version[14] = 0x65;
        assert_eq!(parse(&bad_version), Err(Malformed));
        let mut bad_doff = good.clone();
        bad_doff[14 + 20 + 12] = 0x40;
        assert_eq!(parse(&bad_doff), Err(Malformed));
        let mut short_total = good.clone();
        short_total[16..18].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse(&short_total), Err(Malformed));
        // TCP options announced but cut off by the frame end.
        let mut cut_opts = good[..54].to_vec();
        cut_opts[14 + 20 + 12] = 0x80;
        cut_opts[16..18].copy_from_slice(&60u16.to_be_bytes());
        assert_eq!(parse(&cut_opts), Err(Malformed));
    }
}
