//! The AF_XDP backend: an XDP socket bound to one TX queue of the egress
//! interface, TX only (no XDP program is loaded for it).
//!
//! Frame ownership, the invariant everything here keeps: each UMEM frame
//! is in exactly one place,
//! - `free`: ours, not in any ring (may be written);
//! - `batch`: ours, written, about to be submitted;
//! - in flight: the kernel's, from [`TxQueue::produce`] until its address
//!   comes back through the completion ring (`in_flight` counts them).
//!
//! There are `max_in_flight` frames in all, so the number of frames in
//! flight is capped by construction: veth (and other drivers) report a
//! frame complete even when the peer then drops it, and the cap is what
//! keeps a fast sender from overrunning the receiving side. When no frame
//! is free, the sender kicks the driver and reclaims completions for at
//! most [`FULL_WAIT`], then drops and counts.
//!
//! Each frame is written once: the Ethernet header into the outbox
//! headroom, then the whole frame into its UMEM frame in one copy.
//! Binding tries zero-copy first and falls back to copy mode (veth, most
//! virtual devices). Completed descriptors come back with length 0; the
//! copy sets it again.

use std::{
    io::Write,
    net::IpAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use super::{
    DropReason, FrameQueue, FrameSender, MacAddr, SendError, SenderConfig, SenderStats, ethernet,
    framer::Framer,
};

/// Frames per submission to the TX ring.
pub const BATCH: usize = 64;
/// Longest wait for a free frame per `send` call before dropping.
pub const FULL_WAIT: Duration = Duration::from_millis(1);
/// The in-flight cap's upper bound (and so the largest UMEM, in frames).
pub const MAX_IN_FLIGHT: u32 = 4096;
/// How long `open` retries a queue that is busy (see [`AfXdpSender::open`]).
pub const BUSY_WAIT: Duration = Duration::from_secs(1);
/// The kernel's headroom in front of every UMEM frame (`XDP_PACKET_HEADROOM`).
const XDP_HEADROOM: usize = 256;
/// Frames the copy-mode kernel sends per wake-up (`TX_BATCH_SIZE` in
/// `net/xdp/xsk.c`); used only to bound the kicks per submission.
const KERNEL_TX_BATCH: u32 = 32;

/// How the socket ended up bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC reads frames straight from UMEM.
    ZeroCopy,
    /// The kernel copies each frame into an skb (veth, generic drivers).
    Copy,
}

pub struct AfXdpSender {
    framer: Framer,
    umem: Umem,
    tx: TxQueue,
    comp: CompQueue,
    // Held for the socket's lifetime: libxdp created them with it.
    _fill: FillQueue,
    _rx: RxQueue,
    free: Vec<FrameDesc>,
    batch: Vec<FrameDesc>,
    batch_bytes: u64,
    /// Completion scratch, as long as there are frames.
    completed: Vec<FrameDesc>,
    in_flight: u32,
    max_in_flight: u32,
    ring_size: u32,
    mode: BindMode,
    queue_id: u32,
    stats: SenderStats,
}

impl AfXdpSender {
    /// Binds to `config.queue_id` of `config.interface` in the calling
    /// thread's network namespace: zero-copy if the driver allows, else
    /// copy mode. One socket per queue: a queue that is taken (`EBUSY`) is
    /// retried for up to [`BUSY_WAIT`], since the kernel releases the
    /// queue of a closed socket only after a deferred step.
    pub fn open(config: &SenderConfig) -> Result<Self, SendError> {
        let cap = config.max_in_flight;
        if !(1..=MAX_IN_FLIGHT).contains(&cap) {
            return Err(SendError::BadInFlightCap(cap));
        }
        let mut framer = Framer::open(config)?;
        let iface = framer.iface.clone();
        let umem_err = |reason: String| SendError::Umem {
            iface: iface.name.clone(),
            reason,
        };
        // A UMEM frame holds the kernel's headroom and one Ethernet frame:
        // 2048 bytes up to MTU 1778, else a page (aligned mode's limit).
        let frame_size: u32 = if iface.mtu + ethernet::HEADER_LEN + XDP_HEADROOM <= 2048 {
            2048
        } else {
            4096
        };
        framer.limit_frame(frame_size as usize - XDP_HEADROOM);
        let ring_size = cap.next_power_of_two();
        let ring = QueueSize::new(ring_size).map_err(|e| umem_err(e.to_string()))?;
        let small = QueueSize::new(64).map_err(|e| umem_err(e.to_string()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(frame_size).map_err(|e| umem_err(e.to_string()))?)
            .frame_headroom(0)
            .fill_queue_size(small)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| umem_err(e.to_string()))?;
        let if_name: Interface = iface
            .name
            .parse()
            .map_err(|_| SendError::BadInterfaceName(iface.name.clone()))?;
        let frames = NonZeroU32::new(cap).expect("checked above");

        let mut failures = Vec::new();
        for (mode, flags) in [
            (BindMode::ZeroCopy, BindFlags::XDP_ZEROCOPY),
            (BindMode::Copy, BindFlags::XDP_COPY),
        ] {
            let socket_config = SocketConfig::builder()
                .tx_queue_size(ring)
                .rx_queue_size(small)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(flags | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            let busy_until = Instant::now() + BUSY_WAIT;
            let bound = loop {
                // A fresh UMEM per attempt: nothing of a failed bind carries over.
                let (umem, descs) =
                    Umem::new(umem_config, frames, false).map_err(|e| umem_err(error_chain(&e)))?;
                // SAFETY: this UMEM is not shared (it was created just
                // above), and XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD is set
                // regardless.
                match unsafe { Socket::new(socket_config, &umem, &if_name, config.queue_id) } {
                    Ok((tx, rx, Some((fill, comp)))) => {
                        break Some((umem, descs, tx, rx, fill, comp));
                    }
                    Ok((_, _, None)) => {
                        failures.push("libxdp returned no fill/completion rings".to_owned());
                        break None;
                    }
                    // The queue of a socket closed just now stays taken
                    // until the kernel's deferred release has run.
                    Err(e) if is_busy(&e) && Instant::now() < busy_until => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        failures.push(error_chain(&e));
                        break None;
                    }
                }
            };
            let Some((umem, descs, tx, rx, fill, comp)) = bound else {
                continue;
            };
            tracing::info!(
                iface = %iface.name,
                queue = config.queue_id,
                ?mode,
                max_in_flight = cap,
                mac = %iface.mac,
                mtu = iface.mtu,
                "AF_XDP sender bound"
            );
            return Ok(Self {
                framer,
                umem,
                tx,
                comp,
                _fill: fill,
                _rx: rx,
                completed: vec![FrameDesc::default(); descs.len()],
                free: descs,
                batch: Vec::with_capacity(BATCH),
                batch_bytes: 0,
                in_flight: 0,
                max_in_flight: cap,
                ring_size,
                mode,
                queue_id: config.queue_id,
                stats: SenderStats::default(),
            });
        }
        let copy = failures.pop().unwrap_or_default();
        let zero_copy = failures.pop().unwrap_or_default();
        Err(SendError::AfXdpBind {
            iface: iface.name,
            queue: config.queue_id,
            zero_copy,
            copy,
        })
    }

    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Frames submitted and not completed.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Moves completed frames back to `free`.
    fn reclaim(&mut self) {
        // SAFETY: the completion ring belongs to `self.umem`; each address
        // it yields is a frame the kernel has finished with, which is ours
        // again (it goes to `free`).
        let n = unsafe { self.comp.consume(&mut self.completed) };
        if n > 0 {
            self.free.extend_from_slice(&self.completed[..n]);
            self.in_flight -= n as u32;
            self.stats.completed += n as u64;
        }
    }

    /// Frames in the TX ring the kernel has not taken yet.
    fn queued(&mut self) -> u32 {
        self.ring_size - self.tx.nb_free_exact()
    }

    /// Wakes the driver while frames wait in the TX ring. Copy mode sends
    /// synchronously, [`KERNEL_TX_BATCH`] frames per wake-up; zero-copy
    /// drivers only need one when they ask for it.
    fn kick(&mut self) {
        let rounds = match self.mode {
            BindMode::Copy => self.queued().div_ceil(KERNEL_TX_BATCH) + 1,
            BindMode::ZeroCopy => u32::from(self.tx.needs_wakeup()),
        };
        for _ in 0..rounds {
            if self.queued() == 0 {
                break;
            }
            self.stats.kicks += 1;
            if let Err(e) = self.tx.wakeup() {
                self.stats.kick_errors += 1;
                if self.stats.kick_errors.is_power_of_two() {
                    tracing::warn!(iface = %self.framer.iface.name, error = %e, errors = self.stats.kick_errors, "AF_XDP wake-up failed");
                }
                break;
            }
        }
    }

    /// Submits `batch` to the TX ring and kicks the driver.
    fn submit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // SAFETY: every frame in `batch` was taken from `free` (ours, in no
        // ring), belongs to `self.umem` and has been written; from here it
        // is the kernel's until the completion ring returns it.
        let n = unsafe { self.tx.produce(&self.batch) };
        if n == self.batch.len() {
            self.in_flight += n as u32;
            self.stats.frames += n as u64;
            self.stats.bytes += self.batch_bytes;
        } else {
            // Cannot happen while the ring is at least as large as the
            // number of frames; if it did, the frames are still ours.
            debug_assert_eq!(n, 0, "produce is all or nothing");
            for _ in 0..self.batch.len() {
                self.stats.drop_frame(DropReason::RingFull);
            }
            self.free.append(&mut self.batch);
        }
        self.batch.clear();
        self.batch_bytes = 0;
        self.kick();
    }

    /// A free frame, after waiting at most until `deadline` for the kernel
    /// to complete some (`None`: the cap stayed reached).
    fn free_frame(&mut self, deadline: Option<Instant>) -> Option<FrameDesc> {
        if let Some(d) = self.free.pop() {
            return Some(d);
        }
        self.submit();
        loop {
            self.kick();
            self.reclaim();
            if let Some(d) = self.free.pop() {
                return Some(d);
            }
            if deadline.is_none_or(|d| Instant::now() >= d) {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

impl FrameSender for AfXdpSender {
    fn send(&mut self, out: &mut dyn FrameQueue) {
        let now = Instant::now();
        // Wait for free frames once per call; after that, take what is free.
        let mut deadline = Some(now + FULL_WAIT);
        self.reclaim();
        for i in 0..out.frame_count() {
            let len = match self.framer.frame(out, i, now) {
                Ok(len) => len,
                Err(reason) => {
                    self.stats.drop_frame(reason);
                    continue;
                }
            };
            let Some(mut desc) = self.free_frame(deadline) else {
                deadline = None;
                self.stats.drop_frame(DropReason::RingFull);
                continue;
            };
            // SAFETY: `desc` came from `free`: a frame of `self.umem` that
            // is in no ring, so nothing else reads or writes it now.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            if cursor.write_all(out.frame_with_headroom(i)).is_err() {
                // Longer than the UMEM frame: the framer's limit prevents it.
                self.free.push(desc);
                self.stats.drop_frame(DropReason::TooBig);
                continue;
            }
            self.batch.push(desc);
            self.batch_bytes += len as u64;
            if self.batch.len() == BATCH {
                self.submit();
            }
        }
        self.submit();
    }

    fn poll(&mut self) {
        self.reclaim();
        self.kick();
    }

    fn stats(&self) -> SenderStats {
        let mut s = self.stats;
        s.in_flight = u64::from(self.in_flight);
        s.next_hop = self.framer.next_hops.counters();
        // Descriptors the kernel refused (never completed).
        if let Ok(x) = self.tx.fd().xdp_statistics() {
            s.dropped[DropReason::KernelError as usize] += x.tx_invalid_descs();
        }
        s
    }

    fn resolve_next_hop(&mut self, dst: IpAddr, wait: Duration) -> Option<MacAddr> {
        self.framer.next_hops.resolve_now(dst, wait)
    }

    fn describe(&self) -> String {
        format!(
            "afxdp on {} queue {} ({:?} mode, at most {} frames in flight; {}, MTU {})",
            self.framer.iface.name,
            self.queue_id,
            self.mode,
            self.max_in_flight,
            self.framer.iface.mac,
            self.framer.max_packet()
        )
    }
}

/// Reads an error's whole source chain into one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether socket creation failed because the queue is taken.
fn is_busy(e: &xsk_rs::socket::SocketCreateError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
}
