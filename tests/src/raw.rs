//! Raw packet I/O inside the lab: send hand-built IPv4 or IPv6 packets from a host
//! with a source address it does not own (what tcpcopy does), and tap an
//! interface to see exactly which frames went out or came in.
//!
//! Both sockets are created inside a lab namespace and stay bound to it
//! after the creating thread leaves.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::lab::{Host, Lab};

/// A raw IP socket (`IPPROTO_RAW`: the packets carry their own header) of
/// one family.
pub struct RawIpSender {
    fd: OwnedFd,
    family: libc::c_int,
}

impl RawIpSender {
    /// Opens an IPv4 socket in `host`'s namespace.
    pub fn open(lab: &Lab, host: Host) -> Self {
        Self::open_family(lab, host, libc::AF_INET)
    }

    /// Opens an IPv6 socket in `host`'s namespace.
    pub fn open6(lab: &Lab, host: Host) -> Self {
        Self::open_family(lab, host, libc::AF_INET6)
    }

    fn open_family(lab: &Lab, host: Host, family: libc::c_int) -> Self {
        let _ns = lab.enter(host);
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(
            fd >= 0,
            "raw socket (family {family}) in {host:?}: {}",
            io::Error::last_os_error()
        );
        Self {
            // SAFETY: a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            family,
        }
    }

    /// Sends one packet of the socket's family (header included) to its
    /// destination address.
    pub fn send(&self, packet: &[u8]) {
        let sent = if self.family == libc::AF_INET {
            assert!(packet.len() >= 20, "an IPv4 packet");
            let dst: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst),
                },
                sin_zero: [0; 8],
            };
            self.send_to(packet, &addr)
        } else {
            assert!(packet.len() >= 40, "an IPv6 packet");
            // SAFETY: sockaddr_in6 is plain data; all-zero is a valid start.
            let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            addr.sin6_addr.s6_addr.copy_from_slice(&packet[24..40]);
            self.send_to(packet, &addr)
        };
        assert_eq!(
            sent,
            packet.len() as isize,
            "raw send: {}",
            io::Error::last_os_error()
        );
    }

    fn send_to<T>(&self, packet: &[u8], addr: &T) -> isize {
        // SAFETY: valid buffer and address (of its family's sockaddr type)
        // for the duration of the call.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (addr as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        }
    }
}

/// Which way a tapped frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the tapped host.
    Outgoing,
    /// Received (addressed to it, broadcast, or seen promiscuously).
    Incoming,
}

/// An `AF_PACKET` socket on one interface: every frame in or out, from the
/// moment it is opened.
pub struct PacketTap {
    fd: OwnedFd,
}

impl PacketTap {
    /// Taps `iface` in `host`'s namespace.
    pub fn open(lab: &Lab, host: Host, iface: &str) -> Self {
        let _ns = lab.enter(host);
        let name = CString::new(iface).expect("an interface name");
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex != 0, "no interface {iface} in {host:?}");
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        assert!(fd >= 0, "packet socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid address of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert!(
            rc == 0,
            "bind the tap to {iface}: {}",
            io::Error::last_os_error()
        );
        // Room for bursts: the tests read the tap only now and then.
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid option value of the given length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Self { fd }
    }

    /// Every frame captured since the last call, oldest first.
    pub fn frames(&self) -> Vec<(Direction, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: valid buffers of the given lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut sll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return out,
                    io::ErrorKind::Interrupted => continue,
                    _ => panic!("reading the tap: {e}"),
                }
            }
            let dir = if sll.sll_pkttype == libc::PACKET_OUTGOING {
                Direction::Outgoing
            } else {
                Direction::Incoming
            };
            out.push((dir, buf[..n as usize].to_vec()));
        }
    }
}
