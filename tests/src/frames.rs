//! Frames for BPF_PROG_TEST_RUN, built with etherparse.

use etherparse::PacketBuilder;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// An Ethernet/IPv4/TCP frame `src -> dst` carrying `payload` (flags: ACK|PSH).
pub fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 65535)
        .ack(1)
        .psh()
        .write(&mut out, payload)
        .expect("build a TCP frame");
    out
}

/// As [`tcp`], with one 802.1Q tag.
pub fn tcp_vlan(vlan: u16, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .single_vlan(vlan.try_into().expect("a 12-bit VLAN id"))
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 65535)
        .ack(1)
        .write(&mut out, payload)
        .expect("build a VLAN frame");
    out
}

/// An ARP request (not IPv4 at all).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut out, b"dns?")
        .expect("build a UDP frame");
    out
}

/// A TCP segment to frame, with the header variants the reply program must
/// handle: VLAN tags, IPv4 options, any TCP options. Checksums are correct.
#[derive(Clone, Debug)]
pub struct Segment {
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
    /// 802.1Q tags, outermost first (at most two).
    pub vlans: Vec<u16>,
    /// Raw IPv4 option bytes (a multiple of 4, at most 40).
    pub ip_options: Vec<u8>,
    /// Raw TCP option bytes (a multiple of 4, at most 40).
    pub tcp_options: Vec<u8>,
    pub seq: u32,
    pub ack: u32,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    pub window: u16,
    pub ip_id: u16,
    pub payload: Vec<u8>,
}

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

impl Segment {
    /// A plain ACK segment `src -> dst` without options or payload.
    pub fn new(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Self {
        Self {
            src,
            dst,
            vlans: Vec::new(),
            ip_options: Vec::new(),
            tcp_options: Vec::new(),
            seq: 1000,
            ack: 1,
            flags: ACK,
            window: 65535,
            ip_id: 0x4242,
            payload: Vec::new(),
        }
    }

    /// The IPv4 header (options included) and the TCP header (options
    /// included) exactly as [`Segment::frame`] writes them, then the payload.
    pub fn ip_packet(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        use etherparse::{IpNumber, Ipv4Header, Ipv4Options, TcpHeader};
        let mut tcp = TcpHeader::new(self.src.1, self.dst.1, self.seq, self.window);
        tcp.acknowledgment_number = self.ack;
        tcp.fin = self.flags & FIN != 0;
        tcp.syn = self.flags & SYN != 0;
        tcp.rst = self.flags & RST != 0;
        tcp.psh = self.flags & PSH != 0;
        tcp.ack = self.flags & ACK != 0;
        tcp.set_options_raw(&self.tcp_options)
            .expect("TCP options: a multiple of 4, at most 40 bytes");
        let tcp_len = tcp.header_len() + self.payload.len();
        let mut ip = Ipv4Header::new(
            tcp_len.try_into().expect("payload fits"),
            64,
            IpNumber::TCP,
            self.src.0,
            self.dst.0,
        )
        .expect("IPv4 header");
        ip.identification = self.ip_id;
        ip.dont_fragment = true;
        ip.options = Ipv4Options::try_from(&self.ip_options[..])
            .expect("IP options: a multiple of 4, at most 40 bytes");
        ip.set_payload_len(tcp_len).expect("payload fits");
        ip.header_checksum = ip.calc_header_checksum();
        tcp.checksum = tcp
            .calc_checksum_ipv4(&ip, &self.payload)
            .expect("TCP checksum");
        let mut ip_bytes = Vec::new();
        ip.write(&mut ip_bytes).expect("write IPv4 header");
        (ip_bytes, tcp.to_bytes().to_vec(), self.payload.clone())
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        assert!(self.vlans.len() <= 2, "at most two VLAN tags");
        let mut out = Vec::new();
        out.extend_from_slice(&SERVER_MAC);
        out.extend_from_slice(&CLIENT_MAC);
        for (i, vlan) in self.vlans.iter().enumerate() {
            let tpid: [u8; 2] = if i == 0 && self.vlans.len() == 2 {
                [0x88, 0xa8]
            } else {
                [0x81, 0x00]
            };
            out.extend_from_slice(&tpid);
            out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&[0x08, 0x00]);
        let (ip, tcp, payload) = self.ip_packet();
        out.extend_from_slice(&ip);
        out.extend_from_slice(&tcp);
        out.extend_from_slice(&payload);
        out
    }
}

impl Segment {
    /// The IPv4 packet (header, TCP header, payload), for a raw IP socket.
    pub fn packet(&self) -> Vec<u8> {
        let (mut ip, tcp, payload) = self.ip_packet();
        ip.extend_from_slice(&tcp);
        ip.extend_from_slice(&payload);
        ip
    }
}
