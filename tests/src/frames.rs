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
