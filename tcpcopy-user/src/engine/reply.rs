//! A reply header record (from intercept) read into a plain struct.

use tcpcopy_common::proto::{HEADER_RECORD_LEN, HeaderRecord, RECORD_TCP_OFFSET};

use super::Endpoint;
use crate::packet::{PacketError, SeqNumber, TcpFlags, TcpOptions};

/// What the engine needs of one of the target's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The target.
    pub src: Endpoint,
    /// The client address the target answered (the replayed one).
    pub dst: Endpoint,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    /// Payload bytes the reply carried (from the IPv4 total length).
    pub payload_len: u32,
    pub options: TcpOptions,
}

impl Reply {
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
