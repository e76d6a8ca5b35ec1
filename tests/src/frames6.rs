//! IPv6 frames for BPF_PROG_TEST_RUN and the lab: a TCP segment with the
//! header variants the programs must handle (VLAN tags, extension headers,
//! fragment headers, TCP options), written out byte by byte here (the TCP
//! checksum comes from etherparse), so tests do not depend on the code they
//! check.
//!
//! [`Segment6::packet`] is the IPv6 packet (for a raw socket),
//! [`Segment6::frame`] the Ethernet frame around it.

use etherparse::PacketBuilder;

use crate::frames::{ACK, CLIENT_MAC, FIN, PSH, RST, SERVER_MAC, SYN};

/// The EtherType of IPv6.
pub const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// Bytes of the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;

const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_TCP: u8 = 6;
const NEXT_UDP: u8 = 17;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTIONS: u8 = 60;

/// An IPv6 extension header between the fixed header and TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension6 {
    /// Hop-by-hop options of this many bytes (a multiple of 8), padded.
    HopByHop(usize),
    /// A routing header of this many bytes (a multiple of 8), no segments
    /// left (a node just steps over it).
    Routing(usize),
    /// Destination options of this many bytes (a multiple of 8), padded.
    DestOptions(usize),
    /// A fragment header (8 bytes): offset in 8-byte units, more
    /// fragments, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Extension6 {
    /// The next-header value that announces this header.
    pub fn kind(&self) -> u8 {
        match self {
            Self::HopByHop(_) => NEXT_HOP_BY_HOP,
            Self::Routing(_) => NEXT_ROUTING,
            Self::DestOptions(_) => NEXT_DEST_OPTIONS,
            Self::Fragment { .. } => NEXT_FRAGMENT,
        }
    }

    /// The header's bytes, announcing `next` after it.
    pub fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Self::HopByHop(len) | Self::DestOptions(len) => {
                assert!(
                    len >= 8 && len % 8 == 0 && len <= 2048,
                    "options: 8..=2048, by 8"
                );
                let mut b = vec![0u8; len];
                b[0] = next;
                b[1] = (len / 8 - 1) as u8;
                // One PadN option over the rest.
                b[2] = 1;
                b[3] = (len - 4) as u8;
                b
            }
            Self::Routing(len) => {
                assert!(
                    len >= 8 && len % 8 == 0 && len <= 2048,
                    "routing: 8..=2048, by 8"
                );
                let mut b = vec![0u8; len];
                b[0] = next;
                b[1] = (len / 8 - 1) as u8;
                b[2] = 253; // an experimental routing type (RFC 4727)
                b[3] = 0; // segments left
                b
            }
            Self::Fragment { offset, more, id } => {
                let mut b = vec![0u8; 8];
                b[0] = next;
                let word = (offset << 3) | u16::from(more);
                b[2..4].copy_from_slice(&word.to_be_bytes());
                b[4..8].copy_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// An IPv6 TCP segment to frame. Checksums are correct (the pseudo header
/// uses `dst`: routing headers have no segments left).
#[derive(Clone, Debug)]
pub struct Segment6 {
    pub src: ([u8; 16], u16),
    pub dst: ([u8; 16], u16),
    /// 802.1Q tags, outermost first (at most two).
    pub vlans: Vec<u16>,
    /// Extension headers, in order, before the TCP header.
    pub extensions: Vec<Extension6>,
    /// Raw TCP option bytes (a multiple of 4, at most 40).
    pub tcp_options: Vec<u8>,
    pub seq: u32,
    pub ack: u32,
    /// TCP flags byte (see `frames::{FIN, SYN, RST, PSH, ACK}`).
    pub flags: u8,
    pub window: u16,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub hop_limit: u8,
    pub payload: Vec<u8>,
}

impl Segment6 {
    /// A plain ACK segment `src -> dst` without options or payload.
    pub fn new(src: ([u8; 16], u16), dst: ([u8; 16], u16)) -> Self {
        Self {
            src,
            dst,
            vlans: Vec::new(),
            extensions: Vec::new(),
            tcp_options: Vec::new(),
            seq: 1000,
            ack: 1,
            flags: ACK,
            window: 65535,
            traffic_class: 0,
            flow_label: 0x1_2345,
            hop_limit: 64,
            payload: Vec::new(),
        }
    }

    /// The TCP header (options included, checksum set).
    pub fn tcp_header(&self) -> Vec<u8> {
        let mut tcp = etherparse::TcpHeader::new(self.src.1, self.dst.1, self.seq, self.window);
        tcp.acknowledgment_number = self.ack;
        tcp.fin = self.flags & FIN != 0;
        tcp.syn = self.flags & SYN != 0;
        tcp.rst = self.flags & RST != 0;
        tcp.psh = self.flags & PSH != 0;
        tcp.ack = self.flags & ACK != 0;
        tcp.set_options_raw(&self.tcp_options)
            .expect("TCP options: a multiple of 4, at most 40 bytes");
        tcp.checksum = tcp
            .calc_checksum_ipv6_raw(self.src.0, self.dst.0, &self.payload)
            .expect("TCP checksum");
        tcp.to_bytes().to_vec()
    }

    /// The extension headers' bytes, chained to TCP.
    pub fn extension_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, ext) in self.extensions.iter().enumerate() {
            let next = self
                .extensions
                .get(i + 1)
                .map_or(NEXT_TCP, Extension6::kind);
            out.extend_from_slice(&ext.bytes(next));
        }
        out
    }

    /// The fixed IPv6 header as sent: next header the first extension's
    /// (or TCP), payload length covering extensions, TCP and payload.
    pub fn ip_header(&self) -> [u8; IPV6_HLEN] {
        let payload_len =
            self.extension_bytes().len() + self.tcp_header().len() + self.payload.len();
        let next = self.extensions.first().map_or(NEXT_TCP, Extension6::kind);
        fixed_header(self, payload_len, next)
    }

    /// The IPv6 packet (fixed header, extensions, TCP header, payload).
    pub fn packet(&self) -> Vec<u8> {
        let mut out = self.ip_header().to_vec();
        out.extend_from_slice(&self.extension_bytes());
        out.extend_from_slice(&self.tcp_header());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The whole Ethernet frame (destination the server MAC of `frames`).
    pub fn frame(&self) -> Vec<u8> {
        let mut out = ethernet(&self.vlans);
        out.extend_from_slice(&self.packet());
        out
    }
}

fn fixed_header(seg: &Segment6, payload_len: usize, next: u8) -> [u8; IPV6_HLEN] {
    let mut h = [0u8; IPV6_HLEN];
    let word = (6u32 << 28) | (u32::from(seg.traffic_class) << 20) | (seg.flow_label & 0xf_ffff);
    h[0..4].copy_from_slice(&word.to_be_bytes());
    h[4..6].copy_from_slice(
        &u16::try_from(payload_len)
            .expect("payload fits")
            .to_be_bytes(),
    );
    h[6] = next;
    h[7] = seg.hop_limit;
    h[8..24].copy_from_slice(&seg.src.0);
    h[24..40].copy_from_slice(&seg.dst.0);
    h
}

/// An Ethernet header with `vlans` (outermost first, at most two: 802.1ad
/// then 802.1Q) and the IPv6 EtherType.
fn ethernet(vlans: &[u16]) -> Vec<u8> {
    assert!(vlans.len() <= 2, "at most two VLAN tags");
    let mut out = Vec::new();
    out.extend_from_slice(&SERVER_MAC);
    out.extend_from_slice(&CLIENT_MAC);
    for (i, vlan) in vlans.iter().enumerate() {
        let tpid: [u8; 2] = if i == 0 && vlans.len() == 2 {
            [0x88, 0xa8]
        } else {
            [0x81, 0x00]
        };
        out.extend_from_slice(&tpid);
        out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ETH_P_IPV6);
    out
}

/// An Ethernet/IPv6/UDP frame.
pub fn udp6(src: ([u8; 16], u16), dst: ([u8; 16], u16)) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut out, b"dns?")
        .expect("build a UDP frame");
    debug_assert_eq!(out[14 + 6], NEXT_UDP);
    out
}

/// An Ethernet/IPv6 ICMPv6 echo request (neither TCP nor a fragment).
pub fn icmp6_echo(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6(src, dst, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut out, b"ping")
        .expect("build an ICMPv6 frame");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    #[test]
    fn a_plain_segment_is_what_etherparse_reads() {
        let mut s = Segment6::new((A, 80), (B, 40000));
        s.flags = ACK | PSH;
        s.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        s.payload = b"hello".to_vec();
        let frame = s.frame();
        let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("IPv6")
        };
        assert_eq!(ip.header().source(), A);
        assert_eq!(ip.header().flow_label().value(), 0x1_2345);
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("TCP")
        };
        assert_eq!(tcp.payload(), b"hello");
        let want = tcp
            .to_header()
            .calc_checksum_ipv6_raw(A, B, b"hello")
            .unwrap();
        assert_eq!(tcp.checksum(), want);
    }

    #[test]
    fn extension_headers_chain_to_tcp() {
        let mut s = Segment6::new((A, 80), (B, 40000));
        s.extensions = vec![
            Extension6::HopByHop(8),
            Extension6::Routing(24),
            Extension6::DestOptions(16),
        ];
        let pkt = s.packet();
        assert_eq!(pkt[6], NEXT_HOP_BY_HOP);
        assert_eq!(u16::from_be_bytes([pkt[4], pkt[5]]), 8 + 24 + 16 + 20);
        assert_eq!((pkt[40], pkt[41]), (NEXT_ROUTING, 0));
        assert_eq!((pkt[48], pkt[49]), (NEXT_DEST_OPTIONS, 2));
        assert_eq!((pkt[72], pkt[73]), (NEXT_TCP, 1));
        assert_eq!(&pkt[88..90], &80u16.to_be_bytes());
        let mut f = s.clone();
        f.extensions = vec![Extension6::Fragment {
            offset: 0,
            more: true,
            id: 7,
        }];
        let pkt = f.packet();
        assert_eq!(pkt[6], NEXT_FRAGMENT);
        assert_eq!(&pkt[40..48], &[NEXT_TCP, 0, 0, 1, 0, 0, 0, 7]);
    }
}
