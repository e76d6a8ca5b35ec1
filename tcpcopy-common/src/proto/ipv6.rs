//! The IPv6 extension of the tcpcopy <-> intercept protocol.
//!
//! TCPCopy 1.x speaks IPv4 only: its messages and records have room for
//! IPv4 addresses and nothing else. IPv6 sessions travel in messages and
//! frames of their own, negotiated as every extension is:
//!
//! - An intercept that reports replies of IPv6 targets says so in its
//!   [`VersionInfo`](super::VersionInfo) ([`CAP_IPV6`]). A tcpcopy sends
//!   IPv6 announcements ([`Add6`]) only to an intercept that said so.
//! - An IPv6 announcement is a 14-byte message of type [`ADD6_TYPE`] with
//!   the IPv4 fields zero, followed by [`ADD6_TAIL_LEN`] bytes: client
//!   address and port, target address and port (network byte order).
//! - intercept sends a peer IPv6 replies only for sessions that peer
//!   announced with [`Add6`], so a 1.x peer (which never does) only ever
//!   sees 1.x frames. IPv6 records travel in their own frames:
//!   [`RECORD6_FRAME_MARK`], a `u16` count (at most
//!   [`MAX_RECORDS_PER_FRAME`]), then that many [`HeaderRecord6`]s; with
//!   reply payloads granted, [`PAYLOAD_RECORD6_MARK`], a record, the
//!   reply's payload length and the stored count (`u32` each), then the
//!   stored bytes (as [`PAYLOAD_RECORD_MARK`](super::PAYLOAD_RECORD_MARK)
//!   frames do for IPv4).
//!
//! A [`HeaderRecord6`] is 88 bytes: the reply's fixed IPv6 header (40
//! bytes) as if it had no extension headers (next header TCP, payload
//! length = TCP header + payload), then its TCP header with up to
//! [`MAX_OPTION_LEN`] option bytes, zero padded. The data offset stays as
//! on the wire, so the payload length is `payload length - doff * 4` also
//! when options were cut.

use super::{CLIENT_MSG_LEN, MAX_OPTION_LEN, MAX_RECORDS_PER_FRAME};

/// Capability bit of [`VersionInfo::capabilities`](super::VersionInfo):
/// this intercept takes IPv6 announcements and reports IPv6 replies.
pub const CAP_IPV6: u32 = 4;

/// The wire type of an [`Add6`] message's head (`"ta"`).
pub const ADD6_TYPE: u16 = 0x7461;
/// Bytes after an [`Add6`] message's 14-byte head.
pub const ADD6_TAIL_LEN: usize = 36;
/// Bytes of a whole [`Add6`] message.
pub const ADD6_LEN: usize = CLIENT_MSG_LEN + ADD6_TAIL_LEN;

/// Bytes of a [`HeaderRecord6`] on the wire.
pub const HEADER_RECORD6_LEN: usize = 88;
/// Bytes of the IPv6 header in a [`HeaderRecord6`].
pub const IPV6_HEADER_LEN: usize = 40;
/// Offset of the TCP header inside a [`HeaderRecord6`].
pub const RECORD6_TCP_OFFSET: usize = IPV6_HEADER_LEN;
/// TCP bytes (header and kept options) a [`HeaderRecord6`] holds.
const RECORD6_TCP_LEN: usize = 20 + MAX_OPTION_LEN;

/// The mark of an IPv6 record frame: then a `u16` count and the records.
pub const RECORD6_FRAME_MARK: u16 = 0x8006;
/// Bytes of an IPv6 record frame's head (mark and count).
pub const RECORD6_FRAME_HEAD_LEN: usize = 4;
/// Bytes of the largest IPv6 record frame.
pub const MAX_FRAME6_LEN: usize =
    RECORD6_FRAME_HEAD_LEN + MAX_RECORDS_PER_FRAME * HEADER_RECORD6_LEN;
/// The mark of an IPv6 payload record frame: then a [`HeaderRecord6`], the
/// reply's payload length and the stored count (`u32` each), the bytes.
pub const PAYLOAD_RECORD6_MARK: u16 = 0x8072;
/// Bytes of an IPv6 payload record frame before its payload (mark
/// included).
pub const PAYLOAD6_HEAD_LEN: usize = 2 + HEADER_RECORD6_LEN + 8;
/// A reply program's ring entry for an IPv6 reply with payload bytes: the
/// record, its payload length and stored count (`u32`, host byte order),
/// then the bytes (as [`PAYLOAD_ENTRY_HEAD`](super::PAYLOAD_ENTRY_HEAD) for
/// IPv4). An entry of exactly [`HEADER_RECORD6_LEN`] bytes is a record
/// without payload; the first byte's version nibble tells the families
/// apart.
pub const PAYLOAD_ENTRY6_HEAD: usize = HEADER_RECORD6_LEN + 8;

/// An IPv6 session announcement: replies of `target` to `client` go to the
/// peer that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add6 {
    /// The client address as the target sees it.
    pub client_ip: [u8; 16],
    pub client_port: u16,
    pub target_ip: [u8; 16],
    pub target_port: u16,
}

impl Add6 {
    pub fn encode(&self) -> [u8; ADD6_LEN] {
        let mut b = [0u8; ADD6_LEN];
        b[6..8].copy_from_slice(&ADD6_TYPE.to_be_bytes());
        let t = &mut b[CLIENT_MSG_LEN..];
        t[0..16].copy_from_slice(&self.client_ip);
        t[16..18].copy_from_slice(&self.client_port.to_be_bytes());
        t[18..34].copy_from_slice(&self.target_ip);
        t[34..36].copy_from_slice(&self.target_port.to_be_bytes());
        b
    }

    /// Reads the bytes after the message's head.
    pub fn decode_tail(t: &[u8; ADD6_TAIL_LEN]) -> Self {
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&t[at..at + 16]);
            a
        };
        Self {
            client_ip: addr(0),
            client_port: u16::from_be_bytes([t[16], t[17]]),
            target_ip: addr(18),
            target_port: u16::from_be_bytes([t[34], t[35]]),
        }
    }
}

/// One IPv6 reply's headers as intercept reports them: 88 bytes, see the
/// module docs.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderRecord6 {
    pub bytes: [u8; HEADER_RECORD6_LEN],
}

const _: () = assert!(core::mem::size_of::<HeaderRecord6>() == HEADER_RECORD6_LEN);
const _: () = assert!(RECORD6_TCP_OFFSET + RECORD6_TCP_LEN <= HEADER_RECORD6_LEN);

impl Default for HeaderRecord6 {
    fn default() -> Self {
        Self {
            bytes: [0; HEADER_RECORD6_LEN],
        }
    }
}

impl core::fmt::Debug for HeaderRecord6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeaderRecord6")
            .field("src", &(self.src_addr(), self.src_port()))
            .field("dst", &(self.dst_addr(), self.dst_port()))
            .field("payload_len", &self.payload_len())
            .finish_non_exhaustive()
    }
}

impl HeaderRecord6 {
    /// The record of a reply whose fixed IPv6 header is `ip` and whose TCP
    /// header (options included) is `tcp`, after `ext_len` bytes of
    /// extension headers that the record leaves out: next header becomes
    /// TCP and the payload length shrinks by `ext_len`. Keeps up to
    /// [`MAX_OPTION_LEN`] option bytes.
    pub fn from_headers(ip: &[u8; IPV6_HEADER_LEN], ext_len: u16, tcp: &[u8]) -> Self {
        let mut rec = Self::default();
        rec.bytes[..IPV6_HEADER_LEN].copy_from_slice(ip);
        normalize_ipv6_header(&mut rec.bytes, ext_len);
        let n = tcp.len().min(RECORD6_TCP_LEN);
        rec.bytes[RECORD6_TCP_OFFSET..RECORD6_TCP_OFFSET + n].copy_from_slice(&tcp[..n]);
        rec
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn addr_at(&self, at: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[at..at + 16]);
        a
    }

    pub fn src_addr(&self) -> [u8; 16] {
        self.addr_at(8)
    }
    pub fn dst_addr(&self) -> [u8; 16] {
        self.addr_at(24)
    }
    pub fn src_port(&self) -> u16 {
        self.u16_at(RECORD6_TCP_OFFSET)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(RECORD6_TCP_OFFSET + 2)
    }
    /// The TCP flags byte.
    pub fn tcp_flags(&self) -> u8 {
        self.bytes[RECORD6_TCP_OFFSET + 13]
    }
    /// The TCP header length from its data offset.
    pub fn tcp_header_len(&self) -> usize {
        ((self.bytes[RECORD6_TCP_OFFSET + 12] >> 4) as usize) * 4
    }
    /// Payload bytes of the reply; `None` when the lengths cannot be.
    pub fn payload_len(&self) -> Option<usize> {
        (self.u16_at(4) as usize).checked_sub(self.tcp_header_len())
    }
    /// The record as a packet's leading bytes (IPv6 header, TCP header).
    pub fn headers(&self) -> &[u8] {
        &self.bytes[..RECORD6_TCP_OFFSET + RECORD6_TCP_LEN]
    }
}

/// Rewrites a fixed IPv6 header (the first 40 bytes of `ip`) whose
/// extension headers (`ext_len` bytes) a record leaves out: next header
/// TCP, payload length without them. The kernel programs and the host side
/// share this one definition.
#[inline(always)]
pub fn normalize_ipv6_header(ip: &mut [u8; HEADER_RECORD6_LEN], ext_len: u16) {
    ip[6] = crate::pkt::IPPROTO_TCP;
    let len = u16::from_be_bytes([ip[4], ip[5]]).saturating_sub(ext_len);
    ip[4..6].copy_from_slice(&len.to_be_bytes());
}

/// Writes one IPv6 record frame: mark, count, records. `records.len()`
/// must be at most [`MAX_RECORDS_PER_FRAME`] (more are left out); returns
/// the bytes written.
pub fn encode_frame6(records: &[HeaderRecord6], out: &mut [u8; MAX_FRAME6_LEN]) -> usize {
    let n = records.len().min(MAX_RECORDS_PER_FRAME);
    out[0..2].copy_from_slice(&RECORD6_FRAME_MARK.to_be_bytes());
    out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    for (i, rec) in records[..n].iter().enumerate() {
        let at = RECORD6_FRAME_HEAD_LEN + i * HEADER_RECORD6_LEN;
        out[at..at + HEADER_RECORD6_LEN].copy_from_slice(&rec.bytes);
    }
    RECORD6_FRAME_HEAD_LEN + n * HEADER_RECORD6_LEN
}

/// The head of an IPv6 payload record frame; the stored bytes follow.
pub fn encode_payload6_head(
    record: &HeaderRecord6,
    payload_len: u32,
    stored: u32,
) -> [u8; PAYLOAD6_HEAD_LEN] {
    let mut b = [0u8; PAYLOAD6_HEAD_LEN];
    b[0..2].copy_from_slice(&PAYLOAD_RECORD6_MARK.to_be_bytes());
    b[2..2 + HEADER_RECORD6_LEN].copy_from_slice(&record.bytes);
    let at = 2 + HEADER_RECORD6_LEN;
    b[at..at + 4].copy_from_slice(&payload_len.to_be_bytes());
    b[at + 4..at + 8].copy_from_slice(&stored.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    const TARGET: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    #[test]
    fn add6_layout_is_byte_exact() {
        let m = Add6 {
            client_ip: CLIENT,
            client_port: 40000,
            target_ip: TARGET,
            target_port: 80,
        };
        let b = m.encode();
        assert_eq!(b[..6], [0; 6], "IPv4 client fields zero");
        assert_eq!(b[6..8], [0x74, 0x61]);
        assert_eq!(b[8..14], [0; 6], "IPv4 target fields zero");
        assert_eq!(b[14..30], CLIENT);
        assert_eq!(b[30..32], 40000u16.to_be_bytes());
        assert_eq!(b[32..48], TARGET);
        assert_eq!(b[48..50], [0, 80]);
        let tail: &[u8; ADD6_TAIL_LEN] = b[CLIENT_MSG_LEN..].try_into().unwrap();
        assert_eq!(Add6::decode_tail(tail), m);
    }

    fn ipv6_header(payload_len: u16, next: u8) -> [u8; IPV6_HEADER_LEN] {
        let mut h = [0u8; IPV6_HEADER_LEN];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        h[6] = next;
        h[7] = 64;
        h[8..24].copy_from_slice(&TARGET);
        h[24..40].copy_from_slice(&CLIENT);
        h
    }

    #[test]
    fn a_record_leaves_extension_headers_out_and_keeps_24_option_bytes() {
        // Hop-by-hop options (8 bytes) before a TCP header with 40 option
        // bytes and 100 payload bytes.
        let ip = ipv6_header(8 + 60 + 100, 0);
        let mut tcp = [0u8; 60];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[12] = 15 << 4;
        tcp[13] = 0x18;
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = 100 + i as u8;
        }
        let rec = HeaderRecord6::from_headers(&ip, 8, &tcp);
        assert_eq!(rec.bytes[6], 6, "next header TCP");
        assert_eq!(rec.payload_len(), Some(100));
        assert_eq!(rec.tcp_header_len(), 60, "data offset as on the wire");
        assert_eq!(rec.bytes[40..84], tcp[..44]);
        assert_eq!(rec.bytes[84..], [0; 4]);
        assert_eq!((rec.src_addr(), rec.src_port()), (TARGET, 80));
        assert_eq!((rec.dst_addr(), rec.dst_port()), (CLIENT, 40000));
        assert_eq!(rec.tcp_flags(), 0x18);
        // Lengths that cannot be.
        let rec = HeaderRecord6::from_headers(&ipv6_header(10, 6), 0, &tcp);
        assert_eq!(rec.payload_len(), None);
    }

    #[test]
    fn record6_frames_are_byte_exact() {
        let mut a = HeaderRecord6::default();
        a.bytes[0] = 0x60;
        a.bytes[87] = 9;
        let mut out = [0u8; MAX_FRAME6_LEN];
        let n = encode_frame6(&[a, a], &mut out);
        assert_eq!(n, 4 + 2 * 88);
        assert_eq!(out[..4], [0x80, 0x06, 0, 2]);
        assert_eq!(out[4..92], a.bytes);
        let head = encode_payload6_head(&a, 300, 200);
        assert_eq!(head[..2], [0x80, 0x72]);
        assert_eq!(head[2..90], a.bytes);
        assert_eq!(head[90..94], 300u32.to_be_bytes());
        assert_eq!(head[94..98], 200u32.to_be_bytes());
    }
}
