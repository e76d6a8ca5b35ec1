//! Facts about a network interface and the host's IPv4 settings, for the
//! `doctor` commands: whether it exists and is up, its MTU, its offloads
//! (the legacy ethtool ioctls: no ethtool binary needed) and the sysctls
//! that decide where packets go (`ip_forward`, `rp_filter`). Read in the
//! calling thread's network namespace.

use std::{ffi::CString, io, os::fd::AsRawFd, path::Path};

/// `SIOCETHTOOL` and the legacy get commands of `linux/ethtool.h`.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// What the kernel says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `operstate` (`up`, `down`, `unknown` for links without carrier
    /// detection, ...).
    pub operstate: String,
    pub mtu: u32,
    /// Offloads, where the driver answers (`None`: it does not say).
    pub offloads: Offloads,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    pub tx_checksum: Option<bool>,
    pub tso: Option<bool>,
    pub gro: Option<bool>,
    pub lro: Option<bool>,
}

impl Interface {
    /// Looks `name` up; `None` if there is no such interface here.
    pub fn lookup(name: &str) -> Option<Self> {
        let dir = Path::new("/sys/class/net").join(name);
        if name.is_empty() || name.contains('/') || !dir.is_dir() {
            return None;
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let flags = u32::from_str_radix(read("flags").trim_start_matches("0x"), 16).unwrap_or(0);
        Some(Self {
            name: name.to_owned(),
            up: flags & libc::IFF_UP as u32 != 0,
            operstate: read("operstate"),
            mtu: read("mtu").parse().unwrap_or(0),
            offloads: offloads(name),
        })
    }
}

/// The interface's offloads through `SIOCETHTOOL`.
pub fn offloads(name: &str) -> Offloads {
    let get = |cmd: u32| ethtool_value(name, cmd).ok();
    Offloads {
        tx_checksum: get(ETHTOOL_GTXCSUM).map(|v| v != 0),
        tso: get(ETHTOOL_GTSO).map(|v| v != 0),
        gro: get(ETHTOOL_GGRO).map(|v| v != 0),
        lro: get(ETHTOOL_GFLAGS).map(|v| v & ETH_FLAG_LRO != 0),
    }
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool_value(name: &str, cmd: u32) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    if c_name.as_bytes().len() >= libc::IFNAMSIZ {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: a plain socket call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut value = EthtoolValue { cmd, data: 0 };
    // SAFETY: an all-zero ifreq is valid; the name fits (checked above).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(c_name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL reads the command from and writes the answer to
    // `value`, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &raw mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// An IPv4 sysctl of this namespace, e.g. `ip_forward` or
/// `conf/eth0/rp_filter` (under `/proc/sys/net/ipv4`).
pub fn ipv4_sysctl(name: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new("/proc/sys/net/ipv4").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The reverse-path filter that applies to `iface`: the larger of `all` and
/// the interface's own (0 off, 1 strict, 2 loose).
pub fn rp_filter(iface: &str) -> Option<u32> {
    let all = ipv4_sysctl("conf/all/rp_filter")?;
    let own = ipv4_sysctl(&format!("conf/{iface}/rp_filter")).unwrap_or(0);
    Some(all.max(own))
}

/// The device this namespace's main routing table sends `addr` out of
/// (longest prefix, then lowest metric), from `/proc/net/route`; `None`:
/// no route (the stack cannot send to `addr` at all).
pub fn route_device(addr: std::net::Ipv4Addr) -> Option<String> {
    route_device_in(&std::fs::read_to_string("/proc/net/route").ok()?, addr)
}

/// [`route_device`] over the text of `/proc/net/route` (addresses are
/// hexadecimal in the host's byte order of the kernel's `__be32`).
fn route_device_in(table: &str, addr: std::net::Ipv4Addr) -> Option<String> {
    let target = u32::from_ne_bytes(addr.octets());
    let mut best: Option<(u32, u32, &str)> = None; // (prefix bits, metric, dev)
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(flags), Some(metric), Some(mask)) =
            (hex(f[1]), hex(f[3]), f[6].parse::<u32>().ok(), hex(f[7]))
        else {
            continue;
        };
        const RTF_UP: u32 = 0x1;
        if flags & RTF_UP == 0 || target & mask != dest {
            continue;
        }
        let bits = mask.count_ones();
        if best.is_none_or(|(b, m, _)| bits > b || (bits == b && metric < m)) {
            best = Some((bits, metric, f[0]));
        }
    }
    best.map(|(_, _, dev)| dev.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_an_address_is_the_longest_prefix_that_is_up() {
        // A default route via eth1, 198.18.2.0/24 on eth0, and a /24 that is down.
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t010212C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000212C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth2\t000912C6\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let at = |a: [u8; 4]| route_device_in(table, a.into());
        if cfg!(target_endian = "little") {
            assert_eq!(at([198, 18, 2, 7]).as_deref(), Some("eth0"));
            assert_eq!(at([198, 18, 9, 7]).as_deref(), Some("eth1"));
            assert_eq!(at([8, 8, 8, 8]).as_deref(), Some("eth1"));
        }
        assert_eq!(
            route_device_in("Iface\tDestination\n", [1, 2, 3, 4].into()),
            None
        );
    }

    #[test]
    fn loopback_is_described_and_missing_interfaces_are_none() {
        let lo = Interface::lookup("lo").expect("every namespace has lo");
        assert!(lo.up, "{lo:?}");
        assert!(lo.mtu >= 1500, "{lo:?}");
        assert!(Interface::lookup("no-such-if0").is_none());
        assert!(Interface::lookup("../lo").is_none());
        assert!(Interface::lookup("").is_none());
        assert!(ipv4_sysctl("ip_forward").is_some());
    }
}
