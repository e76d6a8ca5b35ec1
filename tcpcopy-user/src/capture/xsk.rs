//! Mirror capture's receive side: one AF_XDP socket per RX queue of the
//! mirror interface, fed by the `capture_mirror` program's redirects.
//!
//! Each queue has its own UMEM. Frames go: fill queue -> kernel (a
//! redirected frame lands in one) -> RX ring -> here, where the IP packet
//! is handed on -> back to the fill queue. A frame is only read between
//! being consumed from the RX ring and produced to the fill queue again,
//! when the kernel does not touch it.

use std::{
    io,
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
};

use tcpcopy_common::pkt::{Frame, tcp_packet_offset};
use xsk_rs::{
    FillQueue, FrameDesc, RxQueue, Socket, Umem,
    config::{FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use crate::{
    clock,
    worker::{PacketSource, SourceDrops},
};

/// Bytes of a UMEM frame: a frame of up to 1,518 bytes and its headroom.
const FRAME_BYTES: u32 = 2048;
/// Frames per queue, at least: a burst of this many waits for the reader.
const MIN_FRAMES: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("interface name {0:?} is not valid")]
    Interface(String),
    #[error("cannot read the RX queues of {iface}: {source}")]
    Queues { iface: String, source: io::Error },
    #[error("AF_XDP on {iface} queue {queue}: {what}")]
    Setup {
        iface: String,
        queue: u32,
        what: String,
    },
}

struct QueueSocket {
    umem: Umem,
    rx: RxQueue,
    fill: FillQueue,
    /// Frames consumed from the RX ring, handed back after use.
    batch: Vec<FrameDesc>,
    /// Frames not in the fill queue (taken back when it has room).
    spare: Vec<FrameDesc>,
}

/// The AF_XDP sockets of one mirror interface.
pub struct MirrorSource {
    queues: Vec<QueueSocket>,
    /// Frames that were not IPv4 or IPv6 TCP (the program only redirects
    /// those).
    dropped: u64,
}

/// RX queues of `iface` (from sysfs), at least 1.
pub fn rx_queue_count(iface: &str) -> Result<u32, XskError> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let entries = std::fs::read_dir(&dir).map_err(|source| XskError::Queues {
        iface: iface.to_owned(),
        source,
    })?;
    let n = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok((n as u32).max(1))
}

impl MirrorSource {
    /// Opens one socket per RX queue of `iface` (before the program is
    /// attached: register each socket with
    /// `CaptureProgram::register_socket`, then attach), with `ring_bytes`
    /// of frames between them (`--ring-size`): a SPAN port delivers bursts
    /// at line rate, and a burst longer than the RX ring while tcpcopy is
    /// descheduled is lost (counted: `xsk_rx_ring_full`).
    pub fn open(iface: &str, queues: u32, ring_bytes: u32) -> Result<Self, XskError> {
        // Every frame starts in the fill ring; only the batch being read
        // is out of the kernel's hands.
        let frames = (ring_bytes / FRAME_BYTES / queues.max(1))
            .max(MIN_FRAMES)
            .next_power_of_two();
        let name: Interface = iface
            .parse()
            .map_err(|_| XskError::Interface(iface.to_owned()))?;
        let setup = |queue: u32, what: String| XskError::Setup {
            iface: iface.to_owned(),
            queue,
            what,
        };
        let mut out = Vec::new();
        for queue in 0..queues {
            let ring = QueueSize::new(frames).map_err(|e| setup(queue, e.to_string()))?;
            let frame_size =
                FrameSize::new(FRAME_BYTES).map_err(|e| setup(queue, e.to_string()))?;
            let umem_config = UmemConfig::builder()
                .frame_size(frame_size)
                .fill_queue_size(ring)
                .comp_queue_size(ring)
                .build()
                .map_err(|e| setup(queue, e.to_string()))?;
            let (umem, descs) = Umem::new(
                umem_config,
                NonZeroU32::new(frames).expect("non-zero"),
                false,
            )
            .map_err(|e| setup(queue, format!("UMEM: {e}")))?;
            let socket_config = SocketConfig::builder()
                .rx_queue_size(ring)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .build();
            // SAFETY: a UMEM of our own, not shared; the program is ours
            // (libxdp loads none).
            let (_tx, rx, fq_cq) = unsafe { Socket::new(socket_config, &umem, &name, queue) }
                .map_err(|e| setup(queue, format!("socket: {e}")))?;
            let (mut fill, _comp) = fq_cq.ok_or_else(|| setup(queue, "no fill queue".into()))?;
            // SAFETY: the frames belong to this UMEM and are not in use.
            let produced = unsafe { fill.produce(&descs) };
            if produced != descs.len() {
                return Err(setup(
                    queue,
                    format!("fill queue took {produced} of {} frames", descs.len()),
                ));
            }
            out.push(QueueSocket {
                umem,
                rx,
                fill,
                batch: Vec::new(),
                spare: Vec::new(),
            });
        }
        Ok(Self {
            queues: out,
            dropped: 0,
        })
    }

    /// The socket of each queue, in queue order (for the XSKS map).
    pub fn sockets(&self) -> impl Iterator<Item = (u32, RawFd)> + '_ {
        self.queues
            .iter()
            .enumerate()
            .map(|(i, q)| (i as u32, q.rx.fd().as_raw_fd()))
    }
}

impl PacketSource for MirrorSource {
    fn drain(&mut self, max: usize, on_packet: &mut dyn FnMut(u64, u16, &[u8])) -> usize {
        let now = clock::now_ns();
        let mut total = 0;
        for q in &mut self.queues {
            if total >= max {
                break;
            }
            // Frames not yet back in the fill queue go first.
            if !q.spare.is_empty() {
                // SAFETY: spare frames belong to this UMEM and are unused.
                let n = unsafe { q.fill.produce(&q.spare) };
                q.spare.drain(..n);
            }
            let want = max - total;
            q.batch.resize(want, FrameDesc::default());
            // SAFETY: descriptors are written by the kernel into our buffer.
            let n = unsafe { q.rx.consume(&mut q.batch[..want]) };
            for desc in &q.batch[..n] {
                // SAFETY: consumed from the RX ring and not yet given back
                // to the fill queue: the kernel does not write it now.
                let data = unsafe { q.umem.data(desc) };
                let bytes = data.contents();
                match tcp_packet_offset(&Frame::from_slice(bytes)) {
                    Some(l3_off) => on_packet(now, 0, &bytes[l3_off..]),
                    None => self.dropped += 1,
                }
            }
            // SAFETY: we are done reading these frames.
            let back = unsafe { q.fill.produce(&q.batch[..n]) };
            if back < n {
                q.spare.extend_from_slice(&q.batch[back..n]);
            }
            total += n;
        }
        total
    }

    /// None watched all the time: a watched AF_XDP socket wakes its
    /// poller at every frame; the worker polls while frames flow.
    fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    fn sleep_fds(&self) -> Vec<RawFd> {
        self.queues.iter().map(|q| q.rx.fd().as_raw_fd()).collect()
    }

    fn dropped(&self) -> SourceDrops {
        let mut drops = SourceDrops {
            unusable: self.dropped,
            ..SourceDrops::default()
        };
        for q in &self.queues {
            if let Ok(st) = q.rx.fd().xdp_statistics() {
                drops.socket_ring_full += st.rx_ring_full();
                drops.socket_dropped += st.rx_dropped() + st.rx_invalid_descs();
            }
        }
        drops
    }
}
