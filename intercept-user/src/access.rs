//! Networks: which hosts may connect as tcpcopy (`--allow CIDR[,CIDR]`),
//! and the replayed client ranges of `--clients`.
//!
//! An empty allow list admits everyone (TCPCopy's behaviour); otherwise a
//! connection from outside every listed network is closed at once. A
//! network is IPv4 or IPv6; an address is only ever in a network of its
//! own family.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// An IPv4 or IPv6 network, `ADDR/LEN` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, host bits clear.
    network: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a network: expected ADDR/LEN (e.g. 198.18.2.0/24 or 2001:db8:1::/64) or an IP address"
)]
pub struct CidrError(String);

/// The leading `prefix` bits of `bits` (the others clear), for an address
/// of `width` bits held in the low bits of a `u128`.
fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    let host_bits = width - u32::from(prefix);
    let mask = if host_bits >= 128 {
        0
    } else {
        (u128::MAX << host_bits) & (u128::MAX >> (128 - width))
    };
    bits & mask
}

fn bits(addr: IpAddr) -> (u128, u32) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl Cidr {
    /// The network address (host bits clear).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length, 0..=32 (IPv4) or 0..=128 (IPv6).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv6(&self) -> bool {
        self.network.is_ipv6()
    }

    pub fn contains(&self, addr: impl Into<IpAddr>) -> bool {
        let addr = addr.into();
        if addr.is_ipv6() != self.is_ipv6() {
            return false;
        }
        let (net, _) = bits(self.network);
        let (a, width) = bits(addr);
        masked(a, self.prefix, width) == net
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Host bits are cleared: `198.18.2.7/24` is `198.18.2.0/24`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let (bits, width) = bits(addr);
        let prefix = prefix.unwrap_or(width as u8);
        if u32::from(prefix) > width {
            return Err(bad());
        }
        let network_bits = masked(bits, prefix, width);
        let network = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(network_bits as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network_bits)),
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether `addr` may connect under `allow` (empty: everyone).
pub fn is_allowed(allow: &[Cidr], addr: impl Into<IpAddr>) -> bool {
    // A listener on `::` sees IPv4 peers as IPv4-mapped IPv6 addresses.
    let addr = addr.into().to_canonical();
    allow.is_empty() || allow.iter().any(|c| c.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let lan: Cidr = "198.18.2.0/24".parse().unwrap();
        assert!(lan.contains(Ipv4Addr::new(198, 18, 2, 1)));
        assert!(!lan.contains(Ipv4Addr::new(198, 18, 3, 1)));
        let host: Cidr = "198.18.2.1".parse().unwrap();
        assert_eq!(host.to_string(), "198.18.2.1/32");
        assert!(host.contains(Ipv4Addr::new(198, 18, 2, 1)));
        assert!(!host.contains(Ipv4Addr::new(198, 18, 2, 2)));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!("198.18.2.7/24".parse::<Cidr>().unwrap(), lan);
    }

    #[test]
    fn ipv6_networks_contain_their_addresses_and_no_ipv4_ones() {
        let net: Cidr = "2001:db8:1::7/64".parse().unwrap();
        assert_eq!(net.to_string(), "2001:db8:1::/64");
        assert!(net.is_ipv6());
        assert_eq!(net.prefix(), 64);
        assert!(net.contains("2001:db8:1::2".parse::<Ipv6Addr>().unwrap()));
        assert!(net.contains("2001:db8:1:0:ffff::1".parse::<Ipv6Addr>().unwrap()));
        assert!(!net.contains("2001:db8:2::2".parse::<Ipv6Addr>().unwrap()));
        let host: Cidr = "2001:db8::2".parse().unwrap();
        assert_eq!(host.to_string(), "2001:db8::2/128");
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::9".parse::<Ipv6Addr>().unwrap()));
        assert!(!all.contains(Ipv4Addr::new(198, 18, 2, 1)));
        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(!all4.contains("::1".parse::<Ipv6Addr>().unwrap()));
        let odd: Cidr = "2001:db8:ffff::/33".parse().unwrap();
        assert_eq!(odd.to_string(), "2001:db8:8000::/33");
    }

    #[test]
    fn bad_networks_are_errors_that_show_the_syntax() {
        for bad in [
            "",
            "198.18.2.0/33",
            "198.18.2/24",
            "lan",
            "198.18.2.0/x",
            "2001:db8::/129",
            "2001:db8:::/64",
        ] {
            let msg = bad.parse::<Cidr>().expect_err(bad).to_string();
            assert!(msg.contains("ADDR/LEN"), "{bad}: {msg}");
        }
    }

    #[test]
    fn an_empty_allow_list_admits_everyone() {
        let addr = Ipv4Addr::new(198, 18, 2, 1);
        assert!(is_allowed(&[], addr));
        assert!(is_allowed(&["198.18.2.0/24".parse().unwrap()], addr));
        assert!(!is_allowed(&["198.19.0.0/16".parse().unwrap()], addr));
    }
}
