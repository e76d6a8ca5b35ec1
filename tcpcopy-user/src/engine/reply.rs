//! A reply header record (from intercept) read into a plain struct.

use tcpcopy_common::proto::{HEADER_RECORD_LEN, HeaderRecord, RECORD_TCP_OFFSET};

use super::Endpoint;
use crate::packet::{Address, PacketError, SeqNumber, TcpFlags, TcpOptions, TcpPacket};

/// What the engine needs of one of the target's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<A: Address = [u8; 4]> {
    /// The target.
    pub src: Endpoint<A>,
    /// The client address the target answered (the replayed one).
    pub dst: Endpoint<A>,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    /// Payload bytes the reply carried (from the IP length field).
    pub payload_len: u32,
    pub options: TcpOptions,
}

impl Reply<[u8; 4]> {
    /// Reads a record: TCP header at offset 20 whatever the IHL says;
    /// payload = total length - IHL*4 - data offset*4.
    pub fn parse(rec: &HeaderRecord) -> Result<Self, PacketError> {
        let b = &rec.bytes;
        if b[0] >> 4 != 4 {
            return Err(PacketError::NotIpv4);
        }
        if b[9] != 6 {
            return Err(PacketError::NotTcp);
        }
        let ip_len = rec.ip_header_len();
        if ip_len < 20 {
            return Err(PacketError::BadIpHeaderLength);
        }
        let t = &b[RECORD_TCP_OFFSET..];
        let tcp_len = usize::from(t[12] >> 4) * 4;
        if tcp_len < 20 {
            return Err(PacketError::BadDataOffset);
        }
        let total = usize::from(rec.ip_total_len());
        let payload_len = total
            .checked_sub(ip_len + tcp_len)
            .ok_or(PacketError::BadTotalLength)?;
        let opts_end = tcp_len.min(HEADER_RECORD_LEN - RECORD_TCP_OFFSET);
        Ok(Self {
            src: Endpoint {
                addr: rec.src_addr(),
                port: rec.src_port(),
            },
            dst: Endpoint {
                addr: rec.dst_addr(),
                port: rec.dst_port(),
            },
            seq: SeqNumber(u32::from_be_bytes([t[4], t[5], t[6], t[7]])),
            ack: SeqNumber(u32::from_be_bytes([t[8], t[9], t[10], t[11]])),
            flags: TcpFlags(t[13] & 0x3f),
            window: u16::from_be_bytes([t[14], t[15]]),
            payload_len: payload_len as u32,
            options: TcpOptions::parse(&t[20..opts_end]),
        })
    }
}

impl Reply<[u8; 16]> {
    /// Reads an IPv6 reply from its headers alone (what intercept passes
    /// on): the fixed IPv6 header, then the TCP header, options possibly
    /// cut short; the payload length field is the whole packet's, so the
    /// payload is counted, not present.
    pub fn parse_headers(b: &[u8]) -> Result<Self, PacketError> {
        const IP: usize = <[u8; 16]>::HEADER_LEN;
        if b.len() < IP + 20 {
            return Err(PacketError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(PacketError::NotIpv6);
        }
        if b[6] != crate::packet::family::PROTO_TCP {
            return Err(PacketError::NotTcp);
        }
        let t = &b[IP..];
        let tcp_len = usize::from(t[12] >> 4) * 4;
        if tcp_len < 20 {
            return Err(PacketError::BadDataOffset);
        }
        let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]))
            .checked_sub(tcp_len)
            .ok_or(PacketError::BadTotalLength)?;
        let port = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
        Ok(Self {
            src: Endpoint::new(<[u8; 16]>::read(&b[8..]), port(0)),
            dst: Endpoint::new(<[u8; 16]>::read(&b[24..]), port(2)),
            seq: SeqNumber(u32::from_be_bytes([t[4], t[5], t[6], t[7]])),
            ack: SeqNumber(u32::from_be_bytes([t[8], t[9], t[10], t[11]])),
            flags: TcpFlags(t[13] & 0x3f),
            window: u16::from_be_bytes([t[14], t[15]]),
            payload_len: payload_len as u32,
            options: TcpOptions::parse(&t[20..tcp_len.min(t.len())]),
        })
    }
}

impl<A: Address> Reply<A> {
    /// What a whole reply packet of family `A` says (a target's reply
    /// seen in full, as an IPv6 intercept record or a test has it).
    pub fn from_packet(pkt: &TcpPacket<&[u8], A>) -> Self {
        Self {
            src: Endpoint::new(pkt.src_addr(), pkt.src_port()),
            dst: Endpoint::new(pkt.dst_addr(), pkt.dst_port()),
            seq: pkt.seq(),
            ack: pkt.ack(),
            flags: TcpFlags(pkt.flags().0 & 0x3f),
            window: pkt.window(),
            payload_len: pkt.payload_len() as u32,
            options: pkt.options(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{options::write_syn_options, tcp::SegmentRepr};

    fn v6_packet(flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        let mut opts = [0u8; 20];
        let n = write_syn_options(&mut opts, 1440, Some((7, 9)), Some(7));
        let repr = SegmentRepr::<[u8; 16]> {
            src: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22],
            dst: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            src_port: 8080,
            dst_port: 40000,
            seq: SeqNumber(5000),
            ack: SeqNumber(1001),
            flags,
            window: 65160,
            ttl: 64,
            ip_id: 0,
            options: &opts[..n],
            payload,
        };
        let mut out = vec![0; repr.len()];
        repr.emit(&mut out);
        out
    }

    #[test]
    fn ipv6_headers_alone_say_what_the_whole_reply_says() {
        let pkt = v6_packet(TcpFlags::SYN | TcpFlags::ACK, &[b'x'; 300]);
        let whole = Reply::from_packet(&TcpPacket::<_, [u8; 16]>::new_checked(&pkt[..]).unwrap());
        let tcp_len = usize::from(pkt[40 + 12] >> 4) * 4;
        assert_eq!(Reply::parse_headers(&pkt[..40 + tcp_len]), Ok(whole));
        assert_eq!(whole.payload_len, 300);
        assert_eq!(whole.options.mss, Some(1440));
        // Options cut short still give the fixed fields.
        let cut = Reply::parse_headers(&pkt[..60]).unwrap();
        assert_eq!(
            (cut.seq, cut.ack, cut.payload_len),
            (whole.seq, whole.ack, 300)
        );
        assert_eq!(
            Reply::parse_headers(&pkt[..59]),
            Err(PacketError::Truncated)
        );
        let mut v4 = pkt.clone();
        v4[0] = 0x45;
        assert_eq!(Reply::parse_headers(&v4), Err(PacketError::NotIpv6));
        let mut udp = pkt.clone();
        udp[6] = 17;
        assert_eq!(Reply::parse_headers(&udp), Err(PacketError::NotTcp));
        let mut short = pkt;
        short[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Reply::parse_headers(&short),
            Err(PacketError::BadTotalLength)
        );
    }
}
