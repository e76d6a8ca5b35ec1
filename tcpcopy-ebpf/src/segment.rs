//! What the capture programs need of a TCP frame of either IP family: its
//! endpoints, where its IP header starts, and whether it carries something
//! a replay or a comparison needs. One reader for the inline, mirror and
//! response programs, so IPv4 and IPv6 are matched the same way everywhere.
//!
//! IPv6 fragments are counted (`fragments6`) and never handed on; frames
//! that are not TCP are `None`.

use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{
        Frame, Ipv6Parse, Malformed, is_ipv4, is_ipv6, link_layer, parse_ipv4_tcp_at,
        parse_ipv6_tcp,
    },
    table::{EndpointKey, EndpointKey6},
};

use crate::{TARGETS, TARGETS6, count};

/// TCP flags that end or start a stream (SYN, FIN, RST).
pub(crate) const SYN_FIN_RST: u8 = 0x02 | 0x01 | 0x04;

/// The two ends of a segment, in its family.
pub(crate) enum Ends {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

/// A TCP segment of a frame.
pub(crate) struct Segment {
    pub ends: Ends,
    /// Ports, network byte order.
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// Offset of the IP header in the frame.
    pub l3_off: usize,
    /// It has payload, or SYN, FIN or RST.
    pub carries: bool,
}

impl Segment {
    /// Whether it goes to a `-x` endpoint (a client packet).
    #[inline(always)]
    pub fn to_target(&self) -> bool {
        match &self.ends {
            Ends::V4 { dst, .. } => is_target(*dst, self.dport),
            Ends::V6 { dst, .. } => is_target6(*dst, self.dport),
        }
    }

    /// Whether it comes from a `-x` endpoint (production's answer).
    #[inline(always)]
    pub fn from_target(&self) -> bool {
        match &self.ends {
            Ends::V4 { src, .. } => is_target(*src, self.sport),
            Ends::V6 { src, .. } => is_target6(*src, self.sport),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.ends, Ends::V6 { .. })
    }
}

/// Reads the TCP segment of `frame`, if it holds one.
#[inline(always)]
pub(crate) fn segment_of(frame: &Frame<'_>) -> Result<Option<Segment>, Malformed> {
    let (ether_type, l3_off) = link_layer(frame)?;
    if is_ipv6(ether_type) {
        let view = match parse_ipv6_tcp(frame, l3_off)? {
            Ipv6Parse::Tcp(view) => view,
            Ipv6Parse::Fragment => {
                count(CaptureCounter::Fragments6);
                return Ok(None);
            }
            Ipv6Parse::NotTcp => return Ok(None),
        };
        let (ip, tcp) = (view.ip(), view.tcp());
        let headers = view.ext_len + view.tcp_hdr_len;
        return Ok(Some(Segment {
            ends: Ends::V6 {
                src: ip.saddr,
                dst: ip.daddr,
            },
            sport: tcp.source,
            dport: tcp.dest,
            l3_off,
            carries: usize::from(u16::from_be_bytes(ip.payload_len)) > headers
                || tcp.flags & SYN_FIN_RST != 0,
        }));
    }
    if !is_ipv4(ether_type) {
        return Ok(None);
    }
    let Some(view) = parse_ipv4_tcp_at(frame, l3_off)? else {
        return Ok(None);
    };
    let (ip, tcp) = (view.ip(), view.tcp());
    Ok(Some(Segment {
        ends: Ends::V4 {
            src: ip.saddr,
            dst: ip.daddr,
        },
        sport: tcp.source,
        dport: tcp.dest,
        l3_off,
        carries: usize::from(view.ip_total_len()) > view.ip_hdr_len + view.tcp_hdr_len
            || tcp.flags & SYN_FIN_RST != 0,
    }))
}

/// Whether `addr:port` (network byte order) is in `TARGETS`, exactly or by port.
#[inline(always)]
fn is_target(addr: [u8; 4], port: [u8; 2]) -> bool {
    let key = EndpointKey::from_wire(addr, port);
    TARGETS.get_ptr(key).is_some() || TARGETS.get_ptr(key.with_any_addr()).is_some()
}

/// As [`is_target`], for IPv6 endpoints (`TARGETS6`).
#[inline(always)]
fn is_target6(addr: [u8; 16], port: [u8; 2]) -> bool {
    let key = EndpointKey6::from_wire(addr, port);
    TARGETS6.get_ptr(key).is_some() || TARGETS6.get_ptr(key.with_any_addr()).is_some()
}
