//! A flood of reply-shaped frames: Ethernet frames from the target's NIC to
//! the assistant's MAC, as if the target answered many sessions at once.
//! For the intercept benchmark and for tests that need more replies than
//! real servers produce quickly.
//!
//! Frames go out through an `AF_PACKET` socket with `sendmmsg` (64 per
//! system call) and the qdisc bypassed, so they take the lab's real path:
//! veth -> bridge -> the assistant's veth, where XDP runs. veth has no
//! transmit backpressure: a sender faster than the path loses frames on the
//! way, so the flood can be paced, and every stage's counters tell where
//! frames went.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::{
    frames::{ACK, Segment},
    lab::{Host, Lab},
};

/// `PACKET_QDISC_BYPASS` from `linux/if_packet.h`.
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Offset of the TCP sequence number in a flood frame (Ethernet 14 + IPv4 20).
const SEQ_OFFSET: usize = 14 + 20 + 4;

/// The MAC address of `iface` in `host`.
pub fn mac_of(lab: &Lab, host: Host, iface: &str) -> [u8; 6] {
    let text = lab.run(host, &["cat", &format!("/sys/class/net/{iface}/address")]);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("a MAC address"))
        .collect();
    bytes.try_into().expect("6 bytes")
}

/// Sessions the flood answers: replies from `target` to each client.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    pub target: ([u8; 4], u16),
    pub clients: Vec<([u8; 4], u16)>,
    /// Frames in all; session `i % clients.len()` gets frame `i`, with its
    /// own sequence number counting up from 1.
    pub frames: u64,
    /// Frames per second; `None`: as fast as the socket takes them.
    pub rate: Option<u64>,
}

/// What the flood did.
#[derive(Clone, Copy, Debug)]
pub struct FloodReport {
    /// Frames the socket accepted.
    pub sent: u64,
    pub elapsed: Duration,
}

impl FloodReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A packet socket on the target's NIC, addressed to the assistant's MAC.
pub struct ReplyFlood {
    fd: OwnedFd,
    ifindex: i32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

impl ReplyFlood {
    /// Opens the socket on `iface` of `host`, sending to `dst_mac`, past
    /// the device's qdisc and TC programs (the fastest way onto the wire).
    pub fn open(lab: &Lab, host: Host, iface: &str, dst_mac: [u8; 6]) -> Self {
        Self::open_with(lab, host, iface, dst_mac, true)
    }

    /// As [`open`](Self::open), with the frames going through the device's
    /// egress path (qdisc and TC programs) like the host's own replies.
    pub fn open_through_egress(lab: &Lab, host: Host, iface: &str, dst_mac: [u8; 6]) -> Self {
        Self::open_with(lab, host, iface, dst_mac, false)
    }

    fn open_with(lab: &Lab, host: Host, iface: &str, dst_mac: [u8; 6], bypass: bool) -> Self {
        let src_mac = mac_of(lab, host, iface);
        let _ns = lab.enter(host);
        let name = CString::new(iface).expect("an interface name");
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex != 0, "no interface {iface} in {host:?}");
        // Protocol 0: this socket only sends.
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "packet socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: a valid option value of the given length. Best effort: the
        // qdisc path works too, only slower.
        if bypass {
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_QDISC_BYPASS,
                    (&raw const one).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        Self {
            fd,
            ifindex,
            src_mac,
            dst_mac,
        }
    }

    /// The frame template of one session: an ACK with a timestamp option,
    /// as a busy server's replies look. Its sequence number is patched per
    /// frame (checksums are left as built: XDP drops these frames anyway).
    fn template(&self, target: ([u8; 4], u16), client: ([u8; 4], u16)) -> Vec<u8> {
        let mut seg = Segment::new(target, client);
        seg.flags = ACK;
        seg.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut frame = Vec::with_capacity(14 + 52);
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&seg.packet());
        frame
    }

    /// Sends the plan's frames; returns when all were handed to the socket.
    pub fn run(&self, plan: &FloodPlan) -> FloodReport {
        assert!(!plan.clients.is_empty());
        let mut templates: Vec<Vec<u8>> = plan
            .clients
            .iter()
            .map(|c| self.template(plan.target, *c))
            .collect();
        let mut seqs = vec![0u32; templates.len()];
        // Batch buffers: frames are copied in, so templates can be patched.
        let frame_len = templates[0].len();
        let mut bufs = vec![vec![0u8; frame_len]; BATCH];
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&self.dst_mac);

        let start = Instant::now();
        let mut sent: u64 = 0;
        let mut next_session = 0usize;
        while sent < plan.frames {
            if let Some(rate) = plan.rate {
                // Pace: never ahead of `rate`; spin-yield until the schedule
                // catches up (sleeping would oversleep at these rates).
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                while start.elapsed() < due {
                    std::thread::yield_now();
                }
            }
            let n = BATCH.min((plan.frames - sent) as usize);
            let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n);
            for buf in bufs.iter_mut().take(n) {
                let s = next_session;
                next_session = (next_session + 1) % templates.len();
                seqs[s] = seqs[s].wrapping_add(1);
                templates[s][SEQ_OFFSET..SEQ_OFFSET + 4].copy_from_slice(&seqs[s].to_be_bytes());
                buf.copy_from_slice(&templates[s]);
                iovs.push(libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                });
            }
            // SAFETY: mmsghdr is plain data; all-zero is a valid start.
            let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
            for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                msg.msg_hdr.msg_name = (&raw mut addr).cast();
                msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
                msg.msg_hdr.msg_iov = iov;
                msg.msg_hdr.msg_iovlen = 1;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: the messages point at live buffers for the call.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[done..].as_mut_ptr(),
                        (n - done) as u32,
                        0,
                    )
                };
                if rc < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        // ENOBUFS: the device queue is full; try again.
                        _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            std::thread::yield_now();
                            continue;
                        }
                        _ => panic!("sendmmsg: {e}"),
                    }
                }
                done += rc as usize;
            }
            sent += n as u64;
        }
        FloodReport {
            sent,
            elapsed: start.elapsed(),
        }
    }
}

/// `BPF_PROG_TEST_RUN` of the XDP program attached to an interface: the
/// kernel runs the program on one frame in a tight loop (`repeat` times),
/// with its real side effects (ring buffer records, counters), without the
/// veth/bridge path in front. Used to find the ceiling of XDP -> ring ->
/// daemon -> TCP when the lab's links cannot offer frames fast enough, and
/// to offer frames that cannot be lost on the way to XDP.
///
/// A plain test run, not `BPF_F_TEST_XDP_LIVE_FRAMES`: the programs run
/// here copy and drop, so the verdict never needs to reach the stack, and
/// some kernels refuse live frames even to root (a lockdown LSM answers
/// `EPERM`), while every kernel we attach to runs plain test runs.
pub struct TestRunFrames {
    prog: OwnedFd,
    ifindex: u32,
}

/// The `test` member of `union bpf_attr` (`linux/bpf.h`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` (`linux/bpf.h`).
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;

impl TestRunFrames {
    /// The XDP program attached to `iface` in `host` (as `ip link` shows it).
    pub fn attached_to(lab: &Lab, host: Host, iface: &str) -> Self {
        let text = lab.run(host, &["ip", "-d", "link", "show", "dev", iface]);
        let id: u32 = text
            .split("prog/xdp id ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no XDP program on {iface} in {host:?}: {text}"));
        let ifindex: u32 = lab
            .run(host, &["cat", &format!("/sys/class/net/{iface}/ifindex")])
            .trim()
            .parse()
            .expect("an ifindex");
        #[repr(C)]
        struct GetFdById {
            prog_id: u32,
            next_id: u32,
            open_flags: u32,
        }
        let attr = GetFdById {
            prog_id: id,
            next_id: 0,
            open_flags: 0,
        };
        // SAFETY: bpf(2) with a valid attribute of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_GET_FD_BY_ID,
                &raw const attr,
                size_of::<GetFdById>(),
            )
        };
        assert!(
            fd >= 0,
            "BPF_PROG_GET_FD_BY_ID {id}: {}",
            io::Error::last_os_error()
        );
        Self {
            // SAFETY: a fresh descriptor nobody else owns.
            prog: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            ifindex,
        }
    }

    /// Runs the program `repeat` times on `frame` as if it arrived on the
    /// interface. Call from a thread inside the interface's namespace.
    pub fn run(&self, frame: &[u8], repeat: u32) {
        let ctx = XdpMd {
            data_end: frame.len() as u32,
            ingress_ifindex: self.ifindex,
            ..XdpMd::default()
        };
        let attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: size_of::<XdpMd>() as u32,
            ctx_in: (&raw const ctx) as u64,
            ..TestRunAttr::default()
        };
        // SAFETY: bpf(2) with a valid attribute whose pointers outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &raw const attr,
                size_of::<TestRunAttr>(),
            )
        };
        assert!(
            rc == 0,
            "BPF_PROG_TEST_RUN of the attached program: {}",
            io::Error::last_os_error()
        );
    }

    /// Frames per test run: one session's frame repeated.
    pub const CHUNK: u64 = 4096;

    /// Sends the plan's frames through the program in chunks of
    /// [`CHUNK`](Self::CHUNK) copies of one session's frame, sessions taking
    /// turns by chunk (paced between chunks when the plan has a rate). Call
    /// from a thread inside the interface's namespace.
    pub fn flood(&self, plan: &FloodPlan, src_mac: [u8; 6], dst_mac: [u8; 6]) -> FloodReport {
        const CHUNK: u64 = TestRunFrames::CHUNK;
        let frames: Vec<Vec<u8>> = plan
            .clients
            .iter()
            .map(|c| {
                let mut seg = Segment::new(plan.target, *c);
                seg.flags = ACK;
                seg.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
                let mut frame = Vec::new();
                frame.extend_from_slice(&dst_mac);
                frame.extend_from_slice(&src_mac);
                frame.extend_from_slice(&[0x08, 0x00]);
                frame.extend_from_slice(&seg.packet());
                frame
            })
            .collect();
        let start = Instant::now();
        let mut sent = 0;
        let mut i = 0;
        while sent < plan.frames {
            if let Some(rate) = plan.rate {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                while start.elapsed() < due {
                    std::thread::yield_now();
                }
            }
            let n = CHUNK.min(plan.frames - sent);
            self.run(&frames[i % frames.len()], n as u32);
            i += 1;
            sent += n;
        }
        FloodReport {
            sent,
            elapsed: start.elapsed(),
        }
    }
}
