//! A minimal rtnetlink client for next-hop resolution: one route lookup,
//! one neighbour lookup, one "use this neighbour" nudge. Blocking, with a
//! short receive timeout, on the caller's thread (no async runtime: the
//! workers are plain threads and these requests are rare).
//!
//! - [`RouteNetlink::route_get`] is `ip route get DST oif DEV`: the kernel's
//!   own lookup for a packet leaving `DEV`, gateway or on-link.
//! - [`RouteNetlink::neighbour_get`] is `ip neigh get ADDR dev DEV`.
//! - [`RouteNetlink::neighbour_use`] is `ip neigh replace ADDR dev DEV use`:
//!   it creates the entry if needed and makes the kernel resolve it (an ARP
//!   request to that address, or a unicast re-probe of a stale entry). No
//!   datagram is sent to anyone.
//!
//! Messages are built and parsed here byte by byte (layouts from
//! `linux/netlink.h`, `linux/rtnetlink.h`, `linux/neighbour.h`); every
//! length is checked before it is used.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use super::{ethernet::MacAddr, sys};

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;

/// `struct rtmsg` and `struct ndmsg` are both 12 bytes.
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const NTF_USE: u8 = 0x01;

/// How long a request may wait for the kernel's answer.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// The kernel's route for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAnswer {
    /// Sent on `oif`, to `gateway` or (`None`) to the destination itself.
    Unicast { gateway: Option<IpAddr>, oif: u32 },
    /// The destination is an address of this host.
    Local,
    /// Any other route type (`linux/rtnetlink.h` `RTN_*`: blackhole,
    /// unreachable, broadcast, ...).
    Other(u8),
}

/// `NUD_*` neighbour states (`linux/neighbour.h`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NeighbourState(pub u16);

impl NeighbourState {
    pub const INCOMPLETE: u16 = 0x01;
    pub const REACHABLE: u16 = 0x02;
    pub const STALE: u16 = 0x04;
    pub const DELAY: u16 = 0x08;
    pub const PROBE: u16 = 0x10;
    pub const FAILED: u16 = 0x20;
    pub const NOARP: u16 = 0x40;
    pub const PERMANENT: u16 = 0x80;

    /// States whose link-layer address the kernel itself would send to.
    pub const fn is_usable(self) -> bool {
        self.0
            & (Self::REACHABLE
                | Self::STALE
                | Self::DELAY
                | Self::PROBE
                | Self::NOARP
                | Self::PERMANENT)
            != 0
    }

    /// States that call for a fresh confirmation (the kernel re-probes
    /// when the entry is used).
    pub const fn wants_confirmation(self) -> bool {
        self.0 & Self::STALE != 0
    }
}

impl std::fmt::Debug for NeighbourState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (Self::INCOMPLETE, "INCOMPLETE"),
            (Self::REACHABLE, "REACHABLE"),
            (Self::STALE, "STALE"),
            (Self::DELAY, "DELAY"),
            (Self::PROBE, "PROBE"),
            (Self::FAILED, "FAILED"),
            (Self::NOARP, "NOARP"),
            (Self::PERMANENT, "PERMANENT"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("NONE")
        } else {
            f.write_str(&set.join("|"))
        }
    }
}

/// A neighbour table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub state: NeighbourState,
    /// The link-layer address, when the kernel has one.
    pub mac: Option<MacAddr>,
}

/// One `NETLINK_ROUTE` socket.
pub struct RouteNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteNetlink {
    /// Opens a socket in the calling thread's network namespace (it stays
    /// bound to that namespace).
    pub fn open() -> io::Result<Self> {
        let fd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: RECV_TIMEOUT.as_micros() as libc::suseconds_t,
        };
        sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, timeout)?;
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; 16 * 1024],
        })
    }

    /// The kernel's route to `dst` for a packet leaving interface `oif`.
    pub fn route_get(&mut self, dst: IpAddr, oif: u32) -> io::Result<RouteAnswer> {
        let mut body = [0u8; RTMSG_LEN];
        body[0] = family(dst); // rtm_family
        body[1] = if dst.is_ipv4() { 32 } else { 128 }; // rtm_dst_len
        let mut req = Request::new(RTM_GETROUTE, NLM_F_REQUEST, &body);
        req.addr_attr(RTA_DST, dst);
        req.attr(RTA_OIF, &oif.to_ne_bytes());
        let reply = self.transact(req, RTM_NEWROUTE)?.ok_or_else(no_answer)?;
        let msg = reply.get(..RTMSG_LEN).ok_or_else(truncated)?;
        let mut gateway = None;
        let mut out_if = None;
        for (ty, data) in Attrs(&reply[RTMSG_LEN..]) {
            match ty {
                RTA_GATEWAY => gateway = Some(ip_addr(data)?),
                RTA_OIF => out_if = Some(u32::from_ne_bytes(fixed(data)?)),
                _ => {}
            }
        }
        Ok(match msg[7] {
            RTN_UNICAST => RouteAnswer::Unicast {
                gateway,
                oif: out_if.unwrap_or(oif),
            },
            RTN_LOCAL => RouteAnswer::Local,
            other => RouteAnswer::Other(other),
        })
    }

    /// The neighbour entry of `addr` on `ifindex`; `None` when there is none.
    pub fn neighbour_get(
        &mut self,
        addr: IpAddr,
        ifindex: u32,
    ) -> io::Result<Option<NeighbourEntry>> {
        let body = ndmsg(family(addr), ifindex, 0);
        let mut req = Request::new(RTM_GETNEIGH, NLM_F_REQUEST, &body);
        req.addr_attr(NDA_DST, addr);
        let reply = match self.transact(req, RTM_NEWNEIGH) {
            Ok(r) => r.ok_or_else(no_answer)?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let msg = reply.get(..NDMSG_LEN).ok_or_else(truncated)?;
        let state = NeighbourState(u16::from_ne_bytes([msg[8], msg[9]]));
        let mut mac = None;
        for (ty, data) in Attrs(&reply[NDMSG_LEN..]) {
            if ty == NDA_LLADDR && data.len() == 6 {
                mac = Some(MacAddr(fixed(data)?));
            }
        }
        Ok(Some(NeighbourEntry { state, mac }))
    }

    /// Makes the kernel resolve (or re-confirm) `addr` on `ifindex`,
    /// creating the entry when there is none: an ARP request for IPv4, a
    /// neighbour solicitation (NDP) for IPv6.
    pub fn neighbour_use(&mut self, addr: IpAddr, ifindex: u32) -> io::Result<()> {
        let body = ndmsg(family(addr), ifindex, NTF_USE);
        let mut req = Request::new(
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            &body,
        );
        req.addr_attr(NDA_DST, addr);
        self.transact(req, 0).map(|_| ())
    }

    /// Sends `req` and waits for its answer: the payload of the first
    /// message of type `want` (`Some`), or a positive acknowledgement
    /// (`None`). A netlink error comes back as that errno.
    fn transact(&mut self, mut req: Request, want: u16) -> io::Result<Option<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = req.finish(seq);
        // SAFETY: a valid buffer for the call; the kernel is the peer
        // (no address needed on a netlink socket that sends to pid 0).
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: a valid buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if let Some(answer) = find_answer(&self.buf[..n as usize], seq, want)? {
                return answer.into_result();
            }
            // Only older answers (of a request that timed out): read on.
        }
    }
}

/// The kernel's answer to one request.
#[derive(Debug)]
enum Answer {
    /// A message of the type asked for: its payload.
    Payload(Vec<u8>),
    /// A positive acknowledgement (or the end of a dump).
    Ack,
    /// A netlink error: the errno.
    Error(io::Error),
}

impl Answer {
    fn into_result(self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Self::Payload(p) => Ok(Some(p)),
            Self::Ack => Ok(None),
            Self::Error(e) => Err(e),
        }
    }
}

/// Looks through one datagram for the answer to request `seq` (a message
/// of type `want`, an acknowledgement or an error); `None` when the
/// datagram holds nothing for `seq`.
fn find_answer(mut data: &[u8], seq: u32, want: u16) -> io::Result<Option<Answer>> {
    while data.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes(fixed(&data[0..4])?) as usize;
        let ty = u16::from_ne_bytes(fixed(&data[4..6])?);
        let msg_seq = u32::from_ne_bytes(fixed(&data[8..12])?);
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(truncated());
        }
        let payload = &data[NLMSG_HDR_LEN..len];
        if msg_seq == seq {
            match ty {
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(fixed(payload.get(..4).ok_or_else(truncated)?)?);
                    return Ok(Some(if code == 0 {
                        Answer::Ack
                    } else {
                        Answer::Error(io::Error::from_raw_os_error(-code))
                    }));
                }
                NLMSG_DONE => return Ok(Some(Answer::Ack)),
                t if t == want => return Ok(Some(Answer::Payload(payload.to_vec()))),
                _ => {}
            }
        }
        data = data.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(None)
}

fn ndmsg(family: u8, ifindex: u32, flags: u8) -> [u8; NDMSG_LEN] {
    let mut body = [0u8; NDMSG_LEN];
    body[0] = family; // ndm_family
    body[4..8].copy_from_slice(&ifindex.to_ne_bytes()); // ndm_ifindex
    body[10] = flags; // ndm_flags
    body
}

/// A request under construction: header, fixed body, attributes.
struct Request(Vec<u8>);

impl Request {
    fn new(ty: u16, flags: u16, body: &[u8]) -> Self {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&[0; 4]); // length, set by `finish`
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&[0; 8]); // seq (set by `finish`), pid 0
        b.extend_from_slice(body);
        Self(b)
    }

    /// An address attribute, 4 or 16 bytes by family.
    fn addr_attr(&mut self, ty: u16, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.0
    }
}

/// The `(type, data)` attributes of a message body; stops at the first
/// malformed one.
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let head = self.0.get(..4)?;
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        let ty = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff; // minus NLA_F_* bits
        if len < 4 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let data = &self.0[4..len];
        self.0 = self.0.get(align4(len)..).unwrap_or(&[]);
        Some((ty, data))
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn fixed<const N: usize>(data: &[u8]) -> io::Result<[u8; N]> {
    data.try_into().map_err(|_| truncated())
}

/// An address attribute: 4 bytes (IPv4) or 16 (IPv6).
fn ip_addr(data: &[u8]) -> io::Result<IpAddr> {
    match data.len() {
        4 => Ok(IpAddr::from(fixed::<4>(data)?)),
        16 => Ok(IpAddr::from(fixed::<16>(data)?)),
        _ => Err(truncated()),
    }
}

/// The address family number of `addr`.
fn family(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message")
}

fn no_answer() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "netlink acknowledged without the answer asked for",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut req = Request::new(ty, 0, payload);
        req.finish(seq).to_vec()
    }

    #[test]
    fn requests_are_length_prefixed_and_attributes_aligned() {
        let mut req = Request::new(RTM_GETROUTE, NLM_F_REQUEST, &[0; RTMSG_LEN]);
        req.attr(RTA_DST, &[198, 18, 2, 2]);
        req.attr(NDA_LLADDR, &[1, 2, 3, 4, 5, 6]);
        let bytes = req.finish(7).to_vec();
        assert_eq!(bytes.len(), 16 + 12 + 8 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 48);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        let attrs: Vec<_> = Attrs(&bytes[28..]).collect();
        assert_eq!(
            attrs,
            vec![
                (RTA_DST, &[198, 18, 2, 2][..]),
                (NDA_LLADDR, &[1, 2, 3, 4, 5, 6][..])
            ]
        );
    }

    #[test]
    fn address_attributes_and_families_follow_the_address() {
        let v6: IpAddr = "2001:db8:2::2".parse().unwrap();
        let mut req = Request::new(RTM_GETNEIGH, NLM_F_REQUEST, &ndmsg(family(v6), 3, 0));
        req.addr_attr(NDA_DST, v6);
        req.addr_attr(NDA_DST, IpAddr::from([198, 18, 2, 2]));
        let bytes = req.finish(1).to_vec();
        assert_eq!(bytes[16], libc::AF_INET6 as u8, "ndm_family");
        let attrs: Vec<_> = Attrs(&bytes[16 + NDMSG_LEN..]).collect();
        assert_eq!(attrs[0], (NDA_DST, &v6_octets()[..]));
        assert_eq!(attrs[1], (NDA_DST, &[198, 18, 2, 2][..]));
        assert_eq!(family(IpAddr::from([1, 2, 3, 4])), libc::AF_INET as u8);
        assert_eq!(ip_addr(&v6_octets()).unwrap(), v6);
        assert_eq!(
            ip_addr(&[198, 18, 2, 254]).unwrap(),
            IpAddr::from([198, 18, 2, 254])
        );
        assert!(ip_addr(&[1, 2, 3]).is_err(), "neither 4 nor 16 bytes");
    }

    fn v6_octets() -> [u8; 16] {
        [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    }

    #[test]
    fn answers_of_other_requests_are_skipped() {
        let mut datagram = message(RTM_NEWROUTE, 1, &[1; 12]);
        datagram.extend(message(RTM_NEWROUTE, 2, &[2; 12]));
        let got = find_answer(&datagram, 2, RTM_NEWROUTE).unwrap().unwrap();
        assert_eq!(got.into_result().unwrap(), Some(vec![2; 12]));
        assert!(find_answer(&datagram, 3, RTM_NEWROUTE).unwrap().is_none());
    }

    #[test]
    fn netlink_errors_become_errnos_and_zero_is_an_ack() {
        let err = message(NLMSG_ERROR, 5, &(-libc::ENOENT).to_ne_bytes());
        let got = find_answer(&err, 5, RTM_NEWNEIGH).unwrap().unwrap();
        let e = got.into_result().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let ack = message(NLMSG_ERROR, 6, &0i32.to_ne_bytes());
        let got = find_answer(&ack, 6, 0).unwrap().unwrap();
        assert_eq!(got.into_result().unwrap(), None);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let mut m = message(RTM_NEWROUTE, 1, &[0; 12]);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(find_answer(&m, 1, RTM_NEWROUTE).is_err());
        let e = message(NLMSG_ERROR, 1, &[0, 0]);
        assert!(find_answer(&e, 1, RTM_NEWROUTE).is_err());
        // An attribute claiming more than there is ends the walk.
        let attrs: Vec<_> = Attrs(&[200, 0, 1, 0, 9, 9]).collect();
        assert!(attrs.is_empty());
        assert_eq!(Attrs(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn usable_states_are_the_ones_with_an_address() {
        assert!(NeighbourState(NeighbourState::REACHABLE).is_usable());
        assert!(NeighbourState(NeighbourState::STALE).is_usable());
        assert!(NeighbourState(NeighbourState::PERMANENT).is_usable());
        assert!(!NeighbourState(NeighbourState::INCOMPLETE).is_usable());
        assert!(!NeighbourState(NeighbourState::FAILED).is_usable());
        assert!(!NeighbourState(0).is_usable());
        assert_eq!(
            format!("{:?}", NeighbourState(NeighbourState::STALE)),
            "STALE"
        );
    }
}
