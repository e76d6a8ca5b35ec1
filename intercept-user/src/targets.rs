//! The target table: which replies intercept drops and reports.
//!
//! A target is the target server's `ip:port`, or a port on any address of
//! one family. It comes from `--target IP:PORT` (`[IPv6]:PORT` for IPv6)
//! or from a pcap-style `-F` filter in one of the forms TCPCopy users pass
//! to intercept:
//!
//! ```text
//! tcp and src port 80
//! tcp and src port 80 and src host 198.18.2.2
//! src host 198.18.2.2 and src port 80
//! ip6 and tcp and src port 80
//! tcp and src port 80 and src host 2001:db8:2::2
//! ```
//!
//! (terms joined by `and` in any order; `tcp` is optional, `src port` is
//! required, `src host` optional). A port alone means any IPv4 address, as
//! in TCPCopy 1.x; with `ip6` any IPv6 address. Anything else is an error
//! that shows the accepted syntax: intercept never guesses what a filter
//! meant.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// The accepted filter forms, for error messages and `--help`.
pub const FILTER_SYNTAX: &str = "`tcp and src port PORT [and src host IP]` (terms in any order, \
     `tcp` optional; add `ip6` for a port on any IPv6 address)";

/// Replies from this endpoint are intercepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The target server's address; the unspecified address of a family
    /// (`0.0.0.0`, `::`) matches any address of that family.
    pub addr: IpAddr,
    pub port: u16,
}

impl Target {
    /// A port on any IPv4 address.
    pub const fn any_ipv4(port: u16) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        }
    }

    /// A port on any IPv6 address.
    pub const fn any_ipv6(port: u16) -> Self {
        Self {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port,
        }
    }

    /// Whether this target is IPv6 (an address, or any IPv6 address).
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) if a.is_unspecified() => write!(f, "*:{}", self.port),
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) if a.is_unspecified() => write!(f, "[*]:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "`{0}` is not a target: expected IP:PORT, e.g. 198.18.2.2:80 or [2001:db8::2]:80 \
         (0.0.0.0:PORT or [::]:PORT for any address of that family)"
    )]
    Endpoint(String),
    #[error("`{0}` is not a port: expected 1..=65535")]
    Port(String),
    #[error("`{0}` is not an IP address")]
    Addr(String),
    #[error(
        "unsupported filter `{filter}`: {reason}; expected {FILTER_SYNTAX}, or use --target IP:PORT"
    )]
    Filter { filter: String, reason: String },
}

fn parse_port(s: &str) -> Result<u16, TargetError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(TargetError::Port(s.to_owned())),
    }
}

fn parse_addr(s: &str) -> Result<IpAddr, TargetError> {
    s.parse().map_err(|_| TargetError::Addr(s.to_owned()))
}

/// Parses `IP:PORT` or `[IPv6]:PORT` (`0.0.0.0:PORT`, `[::]:PORT`: any
/// address of that family).
pub fn parse_target(s: &str) -> Result<Target, TargetError> {
    let bad = || TargetError::Endpoint(s.to_owned());
    let (addr, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let addr = match addr.strip_prefix('[') {
        Some(inner) => IpAddr::V6(
            inner
                .strip_suffix(']')
                .and_then(|a| a.parse::<Ipv6Addr>().ok())
                .ok_or_else(bad)?,
        ),
        // An IPv6 address without brackets: where would its port be?
        None => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| bad())?),
    };
    Ok(Target {
        addr,
        port: parse_port(port)?,
    })
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_target(s)
    }
}

/// Parses a `-F` filter (see the module docs) into the one target it names.
pub fn parse_filter(filter: &str) -> Result<Target, TargetError> {
    let fail = |reason: &str| TargetError::Filter {
        filter: filter.to_owned(),
        reason: reason.to_owned(),
    };
    let words: Vec<&str> = filter.split_whitespace().collect();
    if words.is_empty() {
        return Err(fail("it is empty"));
    }
    let (mut tcp, mut ip6, mut port, mut host) = (false, false, None, None);
    for term in words.split(|w| w.eq_ignore_ascii_case("and")) {
        match term {
            [] => return Err(fail("`and` needs a term on both sides")),
            [t] if t.eq_ignore_ascii_case("tcp") => {
                if tcp {
                    return Err(fail("`tcp` given twice"));
                }
                tcp = true;
            }
            [t] if t.eq_ignore_ascii_case("ip6") => {
                if ip6 {
                    return Err(fail("`ip6` given twice"));
                }
                ip6 = true;
            }
            [src, kind, value] if src.eq_ignore_ascii_case("src") => {
                if kind.eq_ignore_ascii_case("port") {
                    if port.is_some() {
                        return Err(fail("`src port` given twice"));
                    }
                    port = Some(parse_port(value).map_err(|e| fail(&e.to_string()))?);
                } else if kind.eq_ignore_ascii_case("host") {
                    if host.is_some() {
                        return Err(fail("`src host` given twice"));
                    }
                    host = Some(parse_addr(value).map_err(|e| fail(&e.to_string()))?);
                } else {
                    return Err(fail(&format!("`src {kind}` is not supported")));
                }
            }
            other => {
                let term = other.join(" ");
                let reason = if other.iter().any(|w| w.eq_ignore_ascii_case("or")) {
                    "`or` is not supported (one target per filter)".to_owned()
                } else {
                    format!("`{term}` is not supported")
                };
                return Err(fail(&reason));
            }
        }
    }
    let port = port.ok_or_else(|| fail("it names no `src port`"))?;
    match host {
        Some(IpAddr::V4(_)) if ip6 => Err(fail("`ip6` with an IPv4 `src host`")),
        Some(addr) => Ok(Target { addr, port }),
        None if ip6 => Ok(Target::any_ipv6(port)),
        None => Ok(Target::any_ipv4(port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: Option<[u8; 4]>, port: u16) -> Target {
        Target {
            addr: IpAddr::V4(addr.map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)),
            port,
        }
    }

    fn target6(addr: &str, port: u16) -> Target {
        Target {
            addr: IpAddr::V6(addr.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn the_common_filter_forms_parse() {
        assert_eq!(parse_filter("tcp and src port 80"), Ok(target(None, 80)));
        assert_eq!(
            parse_filter("tcp and src port 80 and src host 198.18.2.2"),
            Ok(target(Some([198, 18, 2, 2]), 80))
        );
        assert_eq!(
            parse_filter("src host 198.18.2.2 and src port 6379"),
            Ok(target(Some([198, 18, 2, 2]), 6379))
        );
        assert_eq!(
            parse_filter("  TCP AND SRC PORT 8080  "),
            Ok(target(None, 8080))
        );
        assert_eq!(parse_filter("src port 80"), Ok(target(None, 80)));
    }

    #[test]
    fn other_filters_are_refused_with_the_expected_syntax() {
        for bad in [
            "",
            "tcp",
            "tcp and dst port 80",
            "tcp and src port 80 or src port 81",
            "tcp and src port 0",
            "tcp and src port 70000",
            "tcp and src port http",
            "tcp and src host 198.18.2.2",
            "tcp and src host 198.18.2 and src port 80",
            "tcp and and src port 80",
            "tcp and src port 80 and",
            "tcp and src port 80 and src port 81",
            "udp and src port 53",
            "port 80",
            "src net 198.18.0.0/15 and src port 80",
            "ip6 and tcp and src port 80 and src host 198.18.2.2",
            "ip6 and ip6 and src port 80",
            "tcp and src port 80 and src host 2001:db8::2::1",
        ] {
            let err = parse_filter(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.contains("tcp and src port PORT"), "{bad}: {msg}");
            assert!(msg.contains(&format!("`{bad}`")), "{bad}: {msg}");
        }
        let msg = parse_filter("tcp and src port 80 or src port 81")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`or` is not supported"), "{msg}");
    }

    #[test]
    fn targets_parse_as_ip_colon_port() {
        assert_eq!(
            parse_target("198.18.2.2:80"),
            Ok(target(Some([198, 18, 2, 2]), 80))
        );
        assert_eq!(parse_target("0.0.0.0:6379"), Ok(target(None, 6379)));
        assert_eq!(
            parse_target("198.18.2.2:0"),
            Err(TargetError::Port("0".into()))
        );
        for bad in [
            "80",
            "198.18.2.2",
            "host:80",
            "198.18.2.2:80:1",
            ":80",
            "2001:db8::2:80",
            "[2001:db8::2:80",
            "[198.18.2.2]:80",
            "[]:80",
        ] {
            let msg = parse_target(bad).expect_err(bad).to_string();
            assert!(msg.contains("expected IP:PORT"), "{bad}: {msg}");
        }
    }

    #[test]
    fn targets_display_any_address_as_a_star() {
        assert_eq!(target(None, 80).to_string(), "*:80");
        assert_eq!(
            target(Some([198, 18, 2, 2]), 80).to_string(),
            "198.18.2.2:80"
        );
    }

    #[test]
    fn ipv6_targets_take_brackets_and_any_address_is_per_family() {
        assert_eq!(
            parse_target("[2001:db8:2::2]:80"),
            Ok(target6("2001:db8:2::2", 80))
        );
        assert_eq!(parse_target("[::]:8080"), Ok(Target::any_ipv6(8080)));
        assert_eq!(parse_target("0.0.0.0:8080"), Ok(Target::any_ipv4(8080)));
        assert_eq!(
            parse_target("[2001:db8::2]:0"),
            Err(TargetError::Port("0".into()))
        );
        assert!(target6("2001:db8:2::2", 80).is_ipv6());
        assert!(!target(None, 80).is_ipv6());
        assert_eq!(
            target6("2001:db8:2::2", 80).to_string(),
            "[2001:db8:2::2]:80"
        );
        assert_eq!(Target::any_ipv6(80).to_string(), "[*]:80");
    }

    #[test]
    fn filters_name_ipv6_targets_by_host_or_with_ip6() {
        assert_eq!(
            parse_filter("tcp and src port 80 and src host 2001:db8:2::2"),
            Ok(target6("2001:db8:2::2", 80))
        );
        assert_eq!(
            parse_filter("ip6 and tcp and src port 80"),
            Ok(Target::any_ipv6(80))
        );
        assert_eq!(
            parse_filter("src host 2001:db8:2::2 and ip6 and src port 6379"),
            Ok(target6("2001:db8:2::2", 6379))
        );
        // A port alone stays IPv4, as in TCPCopy 1.x.
        assert_eq!(parse_filter("tcp and src port 80"), Ok(target(None, 80)));
    }
}
