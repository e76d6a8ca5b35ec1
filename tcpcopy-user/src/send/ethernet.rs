//! Ethernet II framing: MAC addresses and the 14-byte header the senders
//! write into each frame's headroom.
//!
//! The engine emits IP packets with [`HEADROOM`](crate::engine::outbox::HEADROOM)
//! spare bytes in front; [`write_header`] fills exactly those bytes, so a
//! frame is complete without moving the packet.

use std::{fmt, str::FromStr};

/// Length of an Ethernet II header (no VLAN tag).
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const ZERO: Self = Self([0; 6]);
    pub const BROADCAST: Self = Self([0xff; 6]);

    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether this is a group (multicast or broadcast) address.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether frames can be addressed to it: not all-zero, not a group.
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast() && !matches!(self.0, [0, 0, 0, 0, 0, 0])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address: {why} (expected six hex pairs, e.g. 02:00:5e:10:00:01)")]
pub struct MacParseError {
    pub text: String,
    pub why: &'static str,
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Six hex pairs separated by `:` or `-` (`02:00:5e:10:00:01`), the
    /// form `ip link` prints and tcpcopy's `-x ...@mac` takes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why| MacParseError {
            text: text.to_owned(),
            why,
        };
        let sep = if text.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = text.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| err("fewer than six parts"))?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("each part must be two hex digits"));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| err("each part must be two hex digits"))?;
        }
        if parts.next().is_some() {
            return Err(err("more than six parts"));
        }
        Ok(Self(out))
    }
}

/// Writes an Ethernet II header for an IPv4 payload into `out[..14]`.
///
/// # Panics
/// When `out` is shorter than [`HEADER_LEN`] (callers pass the outbox
/// headroom, which is exactly that long).
#[inline]
pub fn write_header(out: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    out[0..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_colon_and_dash_forms_in_any_case() {
        let want = MacAddr([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!("02:00:5e:10:ab:ff".parse::<MacAddr>(), Ok(want));
        assert_eq!("02-00-5E-10-AB-FF".parse::<MacAddr>(), Ok(want));
        assert_eq!(want.to_string(), "02:00:5e:10:ab:ff");
    }

    #[test]
    fn rejects_what_is_not_six_hex_pairs() {
        for bad in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "2:00:5e:10:ab:ff",
            "02:00:5e:10:ab:fg",
            "020:0:5e:10:ab:ff",
            "02:00:5e:10:ab:",
            "02.00.5e.10.ab.ff",
            "+2:00:5e:10:ab:ff",
        ] {
            let e = bad.parse::<MacAddr>().expect_err(bad);
            assert!(e.to_string().contains("not a MAC address"), "{e}");
        }
    }

    #[test]
    fn unicast_excludes_zero_broadcast_and_multicast() {
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        assert!(!MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_unicast());
    }

    #[test]
    fn header_is_dst_src_ipv4() {
        let mut buf = [0xaa; 16];
        let dst = MacAddr([1, 2, 3, 4, 5, 6]);
        let src = MacAddr([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]);
        write_header(&mut buf, dst, src, ETHERTYPE_IPV4);
        assert_eq!(
            buf,
            [
                1, 2, 3, 4, 5, 6, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x08, 0x00, 0xaa, 0xaa
            ]
        );
    }
}
