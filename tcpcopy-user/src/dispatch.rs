//! The dispatcher: when several workers share one packet source (the
//! capture ring, or the capture file offline), one thread reads it and
//! hands each packet to the worker that owns its client address, in
//! batches over bounded channels. A worker that is behind makes the
//! dispatcher wait: nothing is dropped here.

use std::{
    os::fd::RawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker, unix::SourceFd};

use crate::{
    clock,
    engine::{TransferRule, shard_for_answer, shard_for_packet},
    packet::Ipv4TcpPacket,
    worker::{PacketSource, SourceDrops},
};

/// Which worker a packet goes to: the one that owns its client's address.
/// For a client packet that is its source; with `--compare`, a packet from
/// an online server endpoint (production's answer) goes by its
/// destination.
pub(crate) struct Sharder {
    shards: u16,
    seed: u64,
    /// `--compare`: the online endpoints whose answers are captured.
    servers: Option<Vec<TransferRule>>,
}

impl Sharder {
    pub(crate) fn new(shards: u16, seed: u64, servers: Option<Vec<TransferRule>>) -> Self {
        Self {
            shards,
            seed,
            servers,
        }
    }

    /// The worker of `packet` (`None`: not IPv4/TCP; any worker may count it).
    pub(crate) fn shard(&self, packet: &[u8]) -> Option<u16> {
        if let Some(rules) = &self.servers
            && let Ok(p) = Ipv4TcpPacket::new_checked(packet)
            && !rules.iter().any(|r| r.matches(p.dst_addr(), p.dst_port()))
            && rules.iter().any(|r| r.matches(p.src_addr(), p.src_port()))
        {
            return shard_for_answer(packet, self.shards, self.seed);
        }
        shard_for_packet(packet, self.shards, self.seed)
    }
}

/// Packets handed from the dispatcher to one worker: bytes back to back.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (capture time ns, round, offset, length)
    packets: Vec<(u64, u16, u32, u32)>,
}

/// A worker's end of the dispatcher: batches in, emptied batches back.
pub(crate) struct BatchSource {
    rx: Receiver<Batch>,
    back: Sender<Batch>,
    current: Option<(Batch, usize)>,
    /// The dispatcher's source has finished and every batch is handed out.
    source_done: Arc<AtomicBool>,
    flow_controlled: bool,
    /// What the dispatcher's source lost (reported by the first worker's
    /// end only, so the sum over workers counts it once).
    drops: Option<Arc<Mutex<SourceDrops>>>,
}

impl PacketSource for BatchSource {
    fn drain(&mut self, max: usize, on_packet: &mut dyn FnMut(u64, u16, &[u8])) -> usize {
        let mut n = 0;
        while n < max {
            if self.current.is_none() {
                match self.rx.try_recv() {
                    Ok(b) => self.current = Some((b, 0)),
                    Err(_) => break,
                }
            }
            let (batch, at) = self.current.as_mut().expect("set above");
            while *at < batch.packets.len() && n < max {
                let (ts, round, off, len) = batch.packets[*at];
                on_packet(ts, round, &batch.bytes[off as usize..(off + len) as usize]);
                *at += 1;
                n += 1;
            }
            if *at == batch.packets.len() {
                let (mut b, _) = self.current.take().expect("set above");
                b.bytes.clear();
                b.packets.clear();
                let _ = self.back.try_send(b);
            }
        }
        n
    }

    fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// The dispatcher wakes the worker with every batch it hands over.
    fn arm_wakeup(&mut self) -> bool {
        true
    }

    fn dropped(&self) -> SourceDrops {
        self.drops
            .as_ref()
            .map(|d| *d.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default()
    }

    fn finished(&self) -> bool {
        self.source_done.load(Ordering::Acquire) && self.current.is_none() && self.rx.is_empty()
    }

    fn flow_controlled(&self) -> bool {
        self.flow_controlled
    }
}

/// While packets flow the dispatcher polls the source this often (the
/// capture ring does not wake it per packet).
const POLL_EVERY: Duration = Duration::from_millis(1);
/// With no packet for this long it sleeps until the armed source wakes it.
const SLEEP_AFTER: Duration = Duration::from_millis(2);
const SOURCE: Token = Token(0);
const WAKE: Token = Token(1);

/// Reads the capture ring and hands each packet to the worker that owns
/// its client address (several workers only).
pub(crate) struct Dispatcher {
    poll: Poll,
    /// Wakes the dispatcher's sleep (to stop it).
    waker: Arc<Waker>,
    source: Box<dyn PacketSource>,
    outs: Vec<(Sender<Batch>, Receiver<Batch>, Arc<Waker>)>,
    sharder: Sharder,
    stop: Arc<AtomicBool>,
    source_done: Arc<AtomicBool>,
    drops: Arc<Mutex<SourceDrops>>,
    /// The longest sleep (a safety net for a lost wake-up).
    max_sleep: Duration,
}

pub(crate) struct RunningDispatcher {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    handle: JoinHandle<()>,
}

impl RunningDispatcher {
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        let _ = self.handle.join();
    }
}

/// Gives a batch to its worker and wakes it. A worker that is behind makes
/// the dispatcher wait (the capture ring then fills and the kernel counts
/// `ring_full`): nothing is dropped here.
fn hand_over(
    out: &(Sender<Batch>, Receiver<Batch>, Arc<Waker>),
    mut batch: Batch,
    stop: &AtomicBool,
) {
    loop {
        match out.0.send_timeout(batch, Duration::from_millis(50)) {
            Ok(()) => break,
            Err(crossbeam_channel::SendTimeoutError::Timeout(b))
                if !stop.load(Ordering::Relaxed) =>
            {
                let _ = out.2.wake();
                batch = b;
            }
            Err(_) => return,
        }
    }
    let _ = out.2.wake();
}

/// How often the source's drop counters are read for the workers.
const DROPS_EVERY: Duration = Duration::from_millis(200);

impl Dispatcher {
    const BATCHES: usize = 16;
    const BATCH_PACKETS: usize = 256;

    pub(crate) fn new(
        source: Box<dyn PacketSource>,
        wakers: Vec<Arc<Waker>>,
        sharder: Sharder,
        max_sleep: Duration,
    ) -> std::io::Result<(Self, Vec<BatchSource>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        for fd in source.fds() {
            poll.registry()
                .register(&mut SourceFd(&fd), SOURCE, Interest::READABLE)?;
        }
        let mut outs = Vec::new();
        let mut sources = Vec::new();
        let source_done = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(Mutex::new(SourceDrops::default()));
        for (i, waker) in wakers.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(Self::BATCHES);
            let (back_tx, back_rx) = crossbeam_channel::bounded(Self::BATCHES);
            for _ in 0..Self::BATCHES {
                let _ = back_tx.try_send(Batch::default());
            }
            outs.push((tx, back_rx, waker));
            sources.push(BatchSource {
                rx,
                back: back_tx,
                current: None,
                source_done: source_done.clone(),
                flow_controlled: source.flow_controlled(),
                drops: (i == 0).then(|| drops.clone()),
            });
        }
        Ok((
            Self {
                poll,
                waker,
                source,
                outs,
                sharder,
                stop: Arc::default(),
                source_done,
                drops,
                max_sleep,
            },
            sources,
        ))
    }

    pub(crate) fn spawn(mut self) -> RunningDispatcher {
        let stop = self.stop.clone();
        let waker = self.waker.clone();
        let handle = std::thread::Builder::new()
            .name("tcpcopy-capture".into())
            .spawn(move || self.run())
            .expect("spawning the dispatcher");
        RunningDispatcher {
            stop,
            waker,
            handle,
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(4);
        let mut last_packet = clock::now();
        // Armed for a wake-up (with the descriptors watched meanwhile).
        let mut armed: Option<Vec<RawFd>> = None;
        let mut batches: Vec<Option<Batch>> = (0..self.outs.len()).map(|_| None).collect();
        let mut next_drops = clock::now();
        while !self.stop.load(Ordering::Relaxed) {
            let (sharder, outs) = (&self.sharder, &self.outs);
            let n = self.source.drain(4096, &mut |ts, round, packet| {
                let Some(w) = sharder.shard(packet) else {
                    return;
                };
                let w = usize::from(w);
                let batch =
                    batches[w].get_or_insert_with(|| outs[w].1.try_recv().unwrap_or_default());
                batch
                    .packets
                    .push((ts, round, batch.bytes.len() as u32, packet.len() as u32));
                batch.bytes.extend_from_slice(packet);
                if batch.packets.len() >= Self::BATCH_PACKETS
                    && let Some(full) = batches[w].take()
                {
                    hand_over(&outs[w], full, &self.stop);
                }
            });
            if clock::now() >= next_drops {
                // (a syscall per socket for mirror capture: not every turn)
                *self.drops.lock().unwrap_or_else(|e| e.into_inner()) = self.source.dropped();
                next_drops = clock::now() + DROPS_EVERY;
            }
            // The ring ran dry: hand out what is pending.
            for (w, slot) in batches.iter_mut().enumerate() {
                if let Some(b) = slot.take() {
                    hand_over(&self.outs[w], b, &self.stop);
                }
            }
            if self.source.finished() {
                self.source_done.store(true, Ordering::Release);
                for out in &self.outs {
                    let _ = out.2.wake();
                }
                return;
            }
            let now = clock::now();
            if n > 0 {
                last_packet = now;
            }
            if n < 4096 {
                // Quiet: arm the source, read it once more (a packet that
                // came before arming), and only then sleep long.
                let quiet = now.saturating_since(last_packet) >= SLEEP_AFTER;
                if quiet && armed.is_none() && self.source.arm_wakeup() {
                    armed = Some(self.register_sleep_fds());
                    continue;
                }
                self.wait(&mut events, armed.is_some() && n == 0);
                if let Some(fds) = armed.take() {
                    for fd in &fds {
                        let _ = self.poll.registry().deregister(&mut SourceFd(fd));
                    }
                }
            }
        }
    }

    fn register_sleep_fds(&self) -> Vec<RawFd> {
        let fds = self.source.sleep_fds();
        for fd in &fds {
            let _ = self
                .poll
                .registry()
                .register(&mut SourceFd(fd), SOURCE, Interest::READABLE);
        }
        fds
    }

    /// Waits for packets: a short poll while they flow; `deep` (the source
    /// is armed and was found empty), a sleep until it (or the stop)
    /// wakes the dispatcher. A paced source says when its next packet is
    /// due.
    fn wait(&mut self, events: &mut Events, deep: bool) {
        let due = self
            .source
            .next_due_ns()
            .map(|due| Duration::from_nanos(due.saturating_sub(clock::now_ns())));
        let limit = if deep { self.max_sleep } else { POLL_EVERY };
        let wait = due.map_or(limit, |d| d.min(limit));
        let _ = self.poll.poll(events, Some(wait));
    }
}
