//! The egress interface (`-o dev`): its index, MAC address and MTU, read
//! from the kernel in the calling thread's network namespace.
//!
//! Read once when a sender opens. The MAC is the source of every frame; the
//! MTU bounds the IPv4 packets a sender accepts (a bigger one is a counted
//! drop, never a fragment).

use std::{ffi::CString, io, os::fd::AsRawFd};

use super::{SendError, ethernet::MacAddr, sys};

/// `ARPHRD_ETHER` from `linux/if_arp.h`.
const ARPHRD_ETHER: u16 = 1;

/// What a sender needs to know about its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressInterface {
    pub name: String,
    pub ifindex: u32,
    pub mac: MacAddr,
    /// Largest IPv4 packet the interface sends (its MTU).
    pub mtu: usize,
}

/// The name as the kernel takes it: 1 to 15 bytes, no NUL, no `/`.
pub fn validate_name(name: &str) -> Result<CString, SendError> {
    let bad = || SendError::BadInterfaceName(name.to_owned());
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(bad());
    }
    CString::new(name).map_err(|_| bad())
}

impl EgressInterface {
    /// Looks `name` up in the current network namespace.
    pub fn lookup(name: &str) -> Result<Self, SendError> {
        let c_name = validate_name(name)?;
        // SAFETY: a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(SendError::NoInterface(name.to_owned()));
        }
        let query = |what: &'static str, e: io::Error| SendError::InterfaceQuery {
            iface: name.to_owned(),
            what,
            source: e,
        };
        let sock = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(|e| query("a socket to query it", e))?;

        let mut req = ifreq(&c_name);
        // SAFETY: SIOCGIFHWADDR reads `ifr_name` and writes `ifr_hwaddr`
        // inside the ifreq we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) } < 0 {
            return Err(query("the MAC address", io::Error::last_os_error()));
        }
        // SAFETY: the kernel filled the hwaddr member of the union.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hw.sa_family != ARPHRD_ETHER {
            return Err(SendError::NotEthernet {
                iface: name.to_owned(),
                link_type: hw.sa_family,
            });
        }
        let mut mac = [0u8; 6];
        for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *m = *b as u8;
        }

        let mut req = ifreq(&c_name);
        // SAFETY: SIOCGIFMTU reads `ifr_name` and writes `ifr_mtu`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &raw mut req) } < 0 {
            return Err(query("the MTU", io::Error::last_os_error()));
        }
        // SAFETY: the kernel filled the mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            mac: MacAddr(mac),
            mtu: usize::try_from(mtu).unwrap_or(0),
        })
    }
}

fn ifreq(name: &CString) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_cannot_take_are_refused() {
        for bad in ["", "a-name-too-long!", "eth\0", "a/b"] {
            let e = validate_name(bad).expect_err(bad);
            assert!(matches!(e, SendError::BadInterfaceName(_)), "{e}");
        }
        assert!(validate_name("eth1").is_ok());
        assert!(validate_name("fifteen-bytes-x").is_ok());
    }

    #[test]
    fn a_missing_interface_is_a_clear_error() {
        let e = EgressInterface::lookup("tcpcopy-none0").unwrap_err();
        assert!(matches!(e, SendError::NoInterface(_)), "{e}");
        assert!(e.to_string().contains("tcpcopy-none0"), "{e}");
    }

    #[test]
    fn loopback_is_not_ethernet() {
        let e = EgressInterface::lookup("lo").unwrap_err();
        assert!(
            matches!(e, SendError::NotEthernet { link_type: 772, .. }),
            "{e}"
        );
    }
}
