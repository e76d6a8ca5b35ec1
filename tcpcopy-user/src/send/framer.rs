//! The framing step both backends share: check an outbox packet, find its
//! next hop, write the Ethernet header into its headroom.
//!
//! After [`Framer::frame`] succeeds, `out.frame_with_headroom(i)` is the
//! complete Ethernet frame to transmit.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use super::{
    DropReason, FrameQueue, SendError, SenderConfig,
    ethernet::{self, MacAddr},
    interface::EgressInterface,
    nexthop::{KernelNeighbours, NextHopCache, NextHops},
};
use crate::{
    engine::outbox::HEADROOM,
    packet::{Address, tcp::IPV4_HEADER_LEN},
};

// The sender writes exactly the headroom the engine leaves.
const _: () = assert!(HEADROOM == ethernet::HEADER_LEN);

/// Smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: usize = 68;

pub struct Framer {
    pub iface: EgressInterface,
    pub next_hops: NextHops,
    /// Longest IP packet accepted: the MTU, or less where the backend's
    /// frames are smaller.
    max_packet: usize,
}

impl Framer {
    /// Looks up the interface and sets up next-hop resolution for `config`;
    /// packets over the MTU are refused.
    pub fn open(config: &SenderConfig) -> Result<Self, SendError> {
        let iface = EgressInterface::lookup(&config.interface)?;
        if iface.mtu < MIN_MTU {
            return Err(SendError::MtuTooSmall {
                iface: iface.name,
                mtu: iface.mtu,
            });
        }
        let next_hops = match config.next_hop_mac {
            Some(mac) if !mac.is_unicast() => return Err(SendError::BadNextHopMac(mac)),
            Some(mac) => NextHops::Fixed(mac),
            None => NextHops::Kernel(Box::new(NextHopCache::new(
                KernelNeighbours::open(iface.ifindex).map_err(SendError::Netlink)?,
                config.resolve,
            ))),
        };
        let max_packet = iface.mtu;
        Ok(Self {
            iface,
            next_hops,
            max_packet,
        })
    }

    pub fn source_mac(&self) -> MacAddr {
        self.iface.mac
    }

    /// Longest IP packet this sender transmits.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// Refuses packets whose frame would exceed `max_frame` bytes (a
    /// backend whose frames are smaller than the MTU allows).
    pub fn limit_frame(&mut self, max_frame: usize) {
        let limit = max_frame.saturating_sub(ethernet::HEADER_LEN);
        if limit < self.max_packet {
            tracing::warn!(
                iface = %self.iface.name,
                mtu = self.iface.mtu,
                limit,
                "the interface MTU is larger than this sender's frames: longer packets are dropped"
            );
            self.max_packet = limit;
        }
    }

    /// Makes frame `i` of `out` ready to transmit; returns its length on
    /// the wire (Ethernet header included), or why it must be dropped.
    #[inline]
    pub fn frame(
        &mut self,
        out: &mut dyn FrameQueue,
        i: usize,
        now: Instant,
    ) -> Result<usize, DropReason> {
        let frame = out.frame_with_headroom_mut(i);
        let packet = &frame[HEADROOM..];
        let (dst, ethertype) = match packet.first().map(|v| v >> 4) {
            Some(4) if packet.len() >= IPV4_HEADER_LEN => (
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::read(&packet[16..]))),
                ethernet::ETHERTYPE_IPV4,
            ),
            Some(6) if packet.len() >= <[u8; 16]>::HEADER_LEN => (
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::read(&packet[24..]))),
                ethernet::ETHERTYPE_IPV6,
            ),
            _ => return Err(DropReason::Malformed),
        };
        if packet.len() > self.max_packet {
            return Err(DropReason::TooBig);
        }
        let mac = self
            .next_hops
            .mac_for(dst, now)
            .ok_or(DropReason::NoNextHop)?;
        ethernet::write_header(&mut frame[..HEADROOM], mac, self.iface.mac, ethertype);
        Ok(frame.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::outbox::Outbox;

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const NEXT_HOP: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn framer(mtu: usize) -> Framer {
        Framer {
            iface: EgressInterface {
                name: "eth1".into(),
                ifindex: 2,
                mac: SRC,
                mtu,
            },
            next_hops: NextHops::Fixed(NEXT_HOP),
            max_packet: mtu,
        }
    }

    fn ipv4(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&[198, 18, 2, 2]);
        p
    }

    #[test]
    fn the_header_goes_into_the_headroom_in_front_of_the_packet() {
        let mut f = framer(1500);
        let mut out = Outbox::<[u8; 4]>::default();
        let packet = ipv4(60);
        out.push_packet(&packet);
        assert_eq!(f.frame(&mut out, 0, Instant::now()), Ok(74));
        let frame = out.frame_with_headroom(0);
        assert_eq!(&frame[0..6], &NEXT_HOP.0);
        assert_eq!(&frame[6..12], &SRC.0);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(&frame[14..], &packet[..]);
    }

    #[test]
    fn a_packet_over_the_mtu_is_too_big_and_one_at_the_mtu_is_not() {
        let mut f = framer(1500);
        let mut out = Outbox::<[u8; 4]>::default();
        out.push_packet(&ipv4(1500));
        out.push_packet(&ipv4(1501));
        let now = Instant::now();
        assert_eq!(f.frame(&mut out, 0, now), Ok(1514));
        assert_eq!(f.frame(&mut out, 1, now), Err(DropReason::TooBig));
    }

    #[test]
    fn an_ipv6_packet_goes_out_as_ethertype_86dd() {
        let mut f = framer(1500);
        let mut out = Outbox::<[u8; 4]>::default();
        let mut packet = vec![0u8; 60];
        packet[0] = 0x60;
        out.push_packet(&packet);
        assert_eq!(f.frame(&mut out, 0, Instant::now()), Ok(74));
        let frame = out.frame_with_headroom(0);
        assert_eq!(&frame[0..6], &NEXT_HOP.0);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(&frame[14..], &packet[..]);
    }

    #[test]
    fn what_is_neither_ipv4_nor_ipv6_is_malformed() {
        let mut f = framer(1500);
        let mut out = Outbox::<[u8; 4]>::default();
        out.push_packet(&[0x45; 19]);
        out.push_packet(&[0x60; 39]);
        let mut other = ipv4(40);
        other[0] = 0x50;
        out.push_packet(&other);
        let now = Instant::now();
        for i in 0..3 {
            assert_eq!(f.frame(&mut out, i, now), Err(DropReason::Malformed));
        }
    }
}
