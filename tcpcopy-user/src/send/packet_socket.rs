//! The raw backend (`--send raw`): an `AF_PACKET` socket on the egress
//! interface, for where AF_XDP cannot be used (no driver support, an old
//! kernel, a queue already taken).
//!
//! Why a packet socket and not an `IPPROTO_RAW` one: it puts exactly the
//! frames the AF_XDP backend would on the wire (same Ethernet header from
//! the same next-hop resolution), leaves through `-o` whatever the host's
//! routing table says, and like AF_XDP skips the qdisc and netfilter. The
//! price: it needs a next-hop MAC like AF_XDP does, where an IP raw socket
//! would let the kernel resolve (and queue) by itself.
//!
//! Frames go straight from the outbox (no copy) with `sendmmsg`, up to
//! [`BATCH`] per system call, never blocking: when the socket's buffer is
//! full the sender waits at most [`FULL_WAIT`] per call of
//! [`FrameSender::send`], then drops and counts the rest. The socket buffer
//! ([`SEND_BUFFER`]) is the in-flight cap of this backend: the kernel
//! charges every frame to it until the frame has left (on veth: until the
//! receiving side has taken it).

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use super::{
    DropReason, FrameQueue, FrameSender, MacAddr, SendError, SenderConfig, SenderStats,
    framer::Framer, sys,
};

/// Frames per `sendmmsg`.
pub const BATCH: usize = 64;
/// Longest wait for room in the socket buffer per `send` call.
pub const FULL_WAIT: Duration = Duration::from_millis(2);
/// The socket's send buffer: frames in flight are charged to it.
pub const SEND_BUFFER: libc::c_int = 1 << 20;
/// `PACKET_QDISC_BYPASS` from `linux/if_packet.h`.
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// Largest frame a packet socket takes in one piece here (the kernel's own
/// limit is the MTU plus the link header; this bounds our buffers).
const MAX_FRAME: usize = 65535;

/// The `sendmmsg` scratch: message headers and iovecs that point into the
/// outbox during one `send` call only.
struct Batch {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `msgs` and `iovs` are written and used within
// one `send` call, on whichever thread makes it, and never dereferenced
// outside it: moving the scratch to another thread moves no live borrow.
unsafe impl Send for Batch {}

pub struct PacketSocketSender {
    framer: Framer,
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
    /// Outbox indices of the frames framed in this call, and their lengths.
    ready: Vec<(usize, usize)>,
    batch: Batch,
    stats: SenderStats,
}

impl PacketSocketSender {
    /// Opens a packet socket on `config.interface` in the calling thread's
    /// network namespace.
    pub fn open(config: &SenderConfig) -> Result<Self, SendError> {
        let mut framer = Framer::open(config)?;
        framer.limit_frame(MAX_FRAME);
        let iface = &framer.iface;
        let err = |source: io::Error| SendError::PacketSocket {
            iface: iface.name.clone(),
            source,
        };
        // Protocol 0: this socket receives nothing.
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(err)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        addr.sll_ifindex = iface.ifindex as i32;
        addr.sll_halen = 6;
        // Best effort: without the bypass frames take the qdisc, slower but
        // the same on the wire.
        if let Err(e) =
            sys::setsockopt(&fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1 as libc::c_int)
        {
            tracing::debug!(error = %e, "PACKET_QDISC_BYPASS refused; frames take the qdisc");
        }
        if sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SEND_BUFFER).is_err() {
            sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SEND_BUFFER).map_err(err)?;
        }
        tracing::info!(
            iface = %iface.name,
            mac = %iface.mac,
            mtu = iface.mtu,
            "raw sender: AF_PACKET socket"
        );
        Ok(Self {
            framer,
            fd,
            addr,
            ready: Vec::with_capacity(BATCH),
            batch: Batch {
                msgs: Vec::with_capacity(BATCH),
                iovs: Vec::with_capacity(BATCH),
            },
            stats: SenderStats::default(),
        })
    }

    /// Sends `ready[..]` from `out`; returns false when the socket stayed
    /// full for the whole of `deadline` (the caller drops the rest).
    fn transmit(
        &mut self,
        out: &dyn FrameQueue,
        ready: &[(usize, usize)],
        deadline: Instant,
    ) -> bool {
        let b = &mut self.batch;
        b.iovs.clear();
        b.msgs.clear();
        for &(i, _) in ready {
            let frame = out.frame_with_headroom(i);
            b.iovs.push(libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            });
        }
        for iov in b.iovs.iter_mut() {
            // SAFETY: mmsghdr is plain data; all-zero is a valid start.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&raw mut self.addr).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            b.msgs.push(m);
        }
        let mut done = 0;
        while done < ready.len() {
            // SAFETY: every message points at `self.addr` and at an iovec
            // over a frame of `out`, all borrowed for the whole call; the
            // kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    b.msgs[done..].as_mut_ptr(),
                    (ready.len() - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                for &(_, len) in &ready[done..done + rc as usize] {
                    self.stats.frames += 1;
                    self.stats.completed += 1;
                    self.stats.bytes += len as u64;
                }
                done += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    if Instant::now() >= deadline || !wait_writable(&self.fd, deadline) {
                        for _ in done..ready.len() {
                            self.stats.drop_frame(DropReason::RingFull);
                        }
                        return false;
                    }
                }
                Some(libc::EMSGSIZE) => {
                    self.stats.drop_frame(DropReason::TooBig);
                    done += 1;
                }
                _ => {
                    self.stats.drop_frame(DropReason::KernelError);
                    let n = self.stats.dropped(DropReason::KernelError);
                    if n.is_power_of_two() {
                        tracing::warn!(iface = %self.framer.iface.name, error = %e, dropped = n, "raw send failed");
                    }
                    done += 1;
                }
            }
        }
        true
    }
}

/// Waits until the socket has room or `deadline` passes.
fn wait_writable(fd: &OwnedFd, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: one valid pollfd for the call.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLOUT != 0
}

impl FrameSender for PacketSocketSender {
    fn send(&mut self, out: &mut dyn FrameQueue) {
        let now = Instant::now();
        let deadline = now + FULL_WAIT;
        let mut ready = std::mem::take(&mut self.ready);
        let total = out.frame_count();
        let mut i = 0;
        let mut full = false;
        while i < total {
            ready.clear();
            while i < total && ready.len() < BATCH {
                match self.framer.frame(out, i, now) {
                    Ok(len) => ready.push((i, len)),
                    Err(reason) => self.stats.drop_frame(reason),
                }
                i += 1;
            }
            if full {
                for _ in &ready {
                    self.stats.drop_frame(DropReason::RingFull);
                }
            } else if !ready.is_empty() {
                full = !self.transmit(out, &ready, deadline);
            }
        }
        self.ready = ready;
    }

    fn poll(&mut self) {}

    fn stats(&self) -> SenderStats {
        SenderStats {
            next_hop: self.framer.next_hops.counters(),
            ..self.stats
        }
    }

    fn resolve_next_hop(&mut self, dst: IpAddr, wait: Duration) -> Option<MacAddr> {
        self.framer.next_hops.resolve_now(dst, wait)
    }

    fn describe(&self) -> String {
        format!(
            "raw (AF_PACKET) on {} ({}, MTU {})",
            self.framer.iface.name, self.framer.iface.mac, self.framer.iface.mtu
        )
    }
}
