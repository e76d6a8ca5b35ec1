//! Which hosts may connect as tcpcopy (`--allow CIDR[,CIDR]`).
//!
//! An empty allow list admits everyone (TCPCopy's behaviour); otherwise a
//! connection from outside every listed network is closed at once.

use std::{fmt, net::Ipv4Addr, str::FromStr};

/// An IPv4 network, `ADDR/LEN` (a bare address is a /32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network: expected ADDR/LEN (e.g. 198.18.2.0/24) or an IPv4 address")]
pub struct CidrError(String);

impl Cidr {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address (host bits clear).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length, 0..=32.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask(self.prefix) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Host bits are cleared: `198.18.2.7/24` is `198.18.2.0/24`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s.trim(), 32),
        };
        if prefix > 32 {
            return Err(bad());
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        Ok(Self {
            network: u32::from(addr) & Self::mask(prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// Whether `addr` may connect under `allow` (empty: everyone).
pub fn is_allowed(allow: &[Cidr], addr: Ipv4Addr) -> bool {
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
    fn bad_networks_are_errors_that_show_the_syntax() {
        for bad in ["", "198.18.2.0/33", "198.18.2/24", "lan", "198.18.2.0/x"] {
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
