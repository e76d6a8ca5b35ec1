//! From a captured frame to its IP packet (IPv4 or IPv6), for the link
//! types captures of TCP servers come in: Ethernet (with 802.1Q/802.1ad
//! tags), Linux cooked capture v1 and v2 (`tcpdump -i any`), raw IP, and BSD
//! loopback.

/// The link layers offline mode reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayer {
    Ethernet,
    /// LINKTYPE_LINUX_SLL: 16-byte header, protocol at 14.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2: 20-byte header, protocol at 0.
    LinuxSll2,
    /// The packet starts at the IP header.
    RawIp,
    /// LINKTYPE_NULL: 4-byte address family in the capturing host's order.
    BsdNull,
    /// LINKTYPE_LOOP: the same in network order.
    BsdLoop,
}

/// Why a frame yields no IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotIp {
    /// Another protocol (ARP, ...).
    OtherProtocol,
    /// Too short for its link-layer header.
    Short,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// AF_INET6 as BSD loopback captures write it: Linux and the BSDs differ.
const AF_INET6_VALUES: [u32; 4] = [10, 24, 28, 30];
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// VLAN tags followed, at most.
const MAX_TAGS: usize = 3;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl LinkLayer {
    /// The link layer of a LINKTYPE_* value, if offline mode reads it.
    pub fn from_linktype(linktype: i32) -> Option<Self> {
        Some(match linktype {
            1 => Self::Ethernet,
            113 => Self::LinuxSll,
            276 => Self::LinuxSll2,
            // LINKTYPE_RAW, the DLT_RAW values some systems write, LINKTYPE_IPV4.
            101 | 12 | 14 | 228 => Self::RawIp,
            0 => Self::BsdNull,
            108 => Self::BsdLoop,
            _ => return None,
        })
    }

    /// The IP packet in `frame`, IPv4 or IPv6 (with whatever follows it:
    /// the caller trims to the packet's own length). For raw IP, the
    /// version is the packet's; otherwise the link layer says which it is.
    pub fn ip(self, frame: &[u8]) -> Result<&[u8], NotIp> {
        let (ethertype, at) = match self {
            Self::Ethernet => (be16(frame, 12).ok_or(NotIp::Short)?, 14),
            Self::LinuxSll => (be16(frame, 14).ok_or(NotIp::Short)?, 16),
            Self::LinuxSll2 => {
                if frame.len() < 20 {
                    return Err(NotIp::Short);
                }
                (be16(frame, 0).ok_or(NotIp::Short)?, 20)
            }
            Self::RawIp => {
                let first = *frame.first().ok_or(NotIp::Short)?;
                return match first >> 4 {
                    4 | 6 => Ok(frame),
                    _ => Err(NotIp::OtherProtocol),
                };
            }
            Self::BsdNull | Self::BsdLoop => {
                let b: [u8; 4] = frame
                    .get(..4)
                    .ok_or(NotIp::Short)?
                    .try_into()
                    .expect("4 bytes");
                // AF_INET is 2 on every system; NULL is in the capturing
                // host's byte order, which need not be ours.
                let (le, be) = (u32::from_le_bytes(b), u32::from_be_bytes(b));
                let is = |v: u32| {
                    if self == Self::BsdLoop {
                        be == v
                    } else {
                        le == v || be == v
                    }
                };
                return if is(2) || AF_INET6_VALUES.into_iter().any(is) {
                    Ok(&frame[4..])
                } else {
                    Err(NotIp::OtherProtocol)
                };
            }
        };
        let (mut ethertype, mut at) = (ethertype, at);
        for _ in 0..MAX_TAGS {
            if !VLAN_TPIDS.contains(&ethertype) {
                break;
            }
            ethertype = be16(frame, at + 2).ok_or(NotIp::Short)?;
            at += 4;
        }
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => frame.get(at..).ok_or(NotIp::Short),
            _ => Err(NotIp::OtherProtocol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];
    const IP6: [u8; 4] = [0x60, 0, 0, 0];

    fn eth(ethertype: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(ethertype);
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn ethernet_with_and_without_vlan_tags() {
        assert_eq!(LinkLayer::Ethernet.ip(&eth(&[8, 0], &IP)), Ok(&IP[..]));
        let tagged = eth(&[0x81, 0, 0, 7, 8, 0], &IP);
        assert_eq!(LinkLayer::Ethernet.ip(&tagged), Ok(&IP[..]));
        let qinq = eth(&[0x88, 0xa8, 0, 1, 0x81, 0, 0, 7, 8, 0], &IP);
        assert_eq!(LinkLayer::Ethernet.ip(&qinq), Ok(&IP[..]));
        assert_eq!(
            LinkLayer::Ethernet.ip(&eth(&[0x86, 0xdd], &IP6)),
            Ok(&IP6[..])
        );
        assert_eq!(
            LinkLayer::Ethernet.ip(&eth(&[0x81, 0, 0, 7, 0x86, 0xdd], &IP6)),
            Ok(&IP6[..])
        );
        assert_eq!(
            LinkLayer::Ethernet.ip(&eth(&[0x08, 0x06], &IP)),
            Err(NotIp::OtherProtocol)
        );
        assert_eq!(
            LinkLayer::Ethernet.ip(&eth(&[0x81, 0], &[0])),
            Err(NotIp::Short)
        );
        assert_eq!(LinkLayer::Ethernet.ip(&[0; 13]), Err(NotIp::Short));
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[8, 0]);
        sll.extend_from_slice(&IP);
        assert_eq!(LinkLayer::LinuxSll.ip(&sll), Ok(&IP[..]));
        let mut sll2 = vec![8, 0];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&IP);
        assert_eq!(LinkLayer::LinuxSll2.ip(&sll2), Ok(&IP[..]));
        assert_eq!(LinkLayer::LinuxSll2.ip(&sll2[..19]), Err(NotIp::Short));
        sll2[1] = 6; // ARP
        assert_eq!(LinkLayer::LinuxSll2.ip(&sll2), Err(NotIp::OtherProtocol));
        sll[14..16].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            LinkLayer::LinuxSll.ip(&sll),
            Ok(&IP[..]),
            "IPv6 by its type"
        );
    }

    #[test]
    fn raw_ip_and_loopback() {
        assert_eq!(LinkLayer::RawIp.ip(&IP), Ok(&IP[..]));
        assert_eq!(LinkLayer::RawIp.ip(&[0x60]), Ok(&[0x60][..]));
        assert_eq!(LinkLayer::RawIp.ip(&[0x50]), Err(NotIp::OtherProtocol));
        assert_eq!(LinkLayer::RawIp.ip(&[]), Err(NotIp::Short));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&IP);
        assert_eq!(LinkLayer::BsdNull.ip(&null), Ok(&IP[..]));
        null[..4].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(LinkLayer::BsdNull.ip(&null), Ok(&IP[..]));
        assert_eq!(LinkLayer::BsdLoop.ip(&null), Ok(&IP[..]));
        null[..4].copy_from_slice(&24u32.to_be_bytes());
        assert_eq!(LinkLayer::BsdLoop.ip(&null), Ok(&IP[..]), "AF_INET6");
        null[..4].copy_from_slice(&30u32.to_le_bytes());
        assert_eq!(LinkLayer::BsdNull.ip(&null), Ok(&IP[..]), "AF_INET6");
        null[..4].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(LinkLayer::BsdLoop.ip(&null), Err(NotIp::OtherProtocol));
        assert_eq!(LinkLayer::from_linktype(147), None);
        assert_eq!(LinkLayer::from_linktype(276), Some(LinkLayer::LinuxSll2));
    }
}
