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

#[cfg(test)]
mod tests {
    use super::*;

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
