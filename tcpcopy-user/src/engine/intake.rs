//! Intake: the checks every captured client packet passes before it is
//! replayed, whatever captured it (the inline ring, mirror sockets, a
//! capture file). The engine's entry point is the one place they run.
//!
//! Checksums decide what the engine may do with a packet. It rewrites
//! addresses, ports, acknowledgment numbers and timestamps *incrementally*
//! (RFC 1624), which keeps a right checksum right and a wrong one wrong.
//! So each packet is sorted first:
//! - both checksums right: replayed as it is (the fast path);
//! - a checksum left for a NIC to finish (transmit checksum offload: the
//!   TCP field holds only the pseudo-header sum, or the IPv4 field is 0),
//!   as traffic from a local stack, across a veth between containers or
//!   merged by GRO carries it: completed first, so the target receives
//!   the packet the sender's NIC would have put on the wire;
//! - any other wrong checksum: the packet was damaged, and the production
//!   host's own stack dropped it too (the client retransmits it, and the
//!   retransmission is captured). Counted as `bad_checksum` and dropped.

use crate::packet::{Address, ChecksumField, TcpPacket};

/// What intake decided for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Checksums right: replay the packet as captured.
    AsCaptured,
    /// A checksum was left for the NIC: replay the completed copy.
    Completed,
    /// A checksum is wrong: drop it (`bad_checksum`).
    BadChecksum,
}

/// Sorts `pkt` by its checksums; for [`Verdict::Completed`], `scratch`
/// holds the packet with both checksums filled in.
pub fn admit<A: Address>(pkt: &TcpPacket<&[u8], A>, scratch: &mut Vec<u8>) -> Verdict {
    let ip = pkt.ip_checksum();
    if ip == ChecksumField::Bad {
        return Verdict::BadChecksum;
    }
    let tcp = pkt.tcp_checksum_field();
    match (ip, tcp) {
        (_, ChecksumField::Bad) => Verdict::BadChecksum,
        (ChecksumField::Valid, ChecksumField::Valid) => Verdict::AsCaptured,
        _ => {
            scratch.clear();
            scratch.extend_from_slice(pkt.as_bytes());
            TcpPacket::<_, A>::new_checked(&mut scratch[..])
                .expect("the bytes of a validated packet")
                .fill_checksums();
            Verdict::Completed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Ipv4TcpPacket;
    use crate::packet::checksum::{fold, pseudo_header};

    fn packet(payload: &[u8]) -> Vec<u8> {
        crate::packet::tcp::tests::sample(payload, &[])
    }

    /// What a Linux sender with checksum offload hands its NIC (and what
    /// a capture on the way out shows): the TCP field holds the
    /// pseudo-header sum, with the TCP length.
    fn offloaded(mut bytes: Vec<u8>, with_length: bool) -> Vec<u8> {
        let tcp_len = if with_length {
            bytes.len() as u16 - 20
        } else {
            0
        };
        let partial = fold(pseudo_header(
            bytes[12..16].try_into().unwrap(),
            bytes[16..20].try_into().unwrap(),
            6,
            tcp_len,
        ));
        bytes[36..38].copy_from_slice(&partial.to_be_bytes());
        bytes
    }

    fn admit_bytes(bytes: &[u8]) -> (Verdict, Vec<u8>) {
        let pkt = Ipv4TcpPacket::new_checked(bytes).unwrap();
        let mut scratch = Vec::new();
        (admit(&pkt, &mut scratch), scratch)
    }

    #[test]
    fn right_checksums_pass_as_captured() {
        let (v, scratch) = admit_bytes(&packet(b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(v, Verdict::AsCaptured);
        assert!(scratch.is_empty(), "no copy on the fast path");
    }

    #[test]
    fn a_partial_tcp_checksum_is_completed() {
        let good = packet(b"GET /offloaded HTTP/1.1\r\n\r\n");
        for with_length in [true, false] {
            let (v, scratch) = admit_bytes(&offloaded(good.clone(), with_length));
            assert_eq!(v, Verdict::Completed, "with length {with_length}");
            assert_eq!(scratch, good, "the packet the NIC would have sent");
        }
    }

    #[test]
    fn a_blank_ip_checksum_is_completed() {
        let good = packet(b"x");
        let mut blank = good.clone();
        blank[10..12].copy_from_slice(&[0, 0]);
        let (v, scratch) = admit_bytes(&blank);
        assert_eq!(v, Verdict::Completed);
        assert_eq!(scratch, good);
        // Both left for the NIC at once.
        let mut both = offloaded(good.clone(), true);
        both[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(admit_bytes(&both), (Verdict::Completed, good));
    }

    #[test]
    fn other_wrong_checksums_are_dropped() {
        let good = packet(b"GET / HTTP/1.1\r\n\r\n");
        let mut tcp = good.clone();
        tcp[37] ^= 0x40;
        assert_eq!(admit_bytes(&tcp).0, Verdict::BadChecksum);
        let mut payload = good.clone();
        *payload.last_mut().unwrap() ^= 1; // damaged in flight
        assert_eq!(admit_bytes(&payload).0, Verdict::BadChecksum);
        let mut ip = good.clone();
        ip[11] ^= 1;
        assert_eq!(admit_bytes(&ip).0, Verdict::BadChecksum);
        // A partial TCP sum does not excuse a wrong IPv4 header.
        let mut both = offloaded(good.clone(), true);
        both[11] ^= 1;
        assert_eq!(admit_bytes(&both).0, Verdict::BadChecksum);
        // A zero TCP field is not a pseudo-header sum.
        let mut zero = good;
        zero[36..38].copy_from_slice(&[0, 0]);
        assert_eq!(admit_bytes(&zero).0, Verdict::BadChecksum);
    }
}
