//! A worker: one engine shard (an engine per IP family, see [`Shard`]),
//! the connections to every intercept that
//! carry its sessions' announcements and replies, its frame sender, and
//! where its captured packets come from. One thread; nothing shared on the
//! fast path.
//!
//! Each turn: captured packets into the engine, reply records into the
//! engine, timers, then the outbox drained (announcements to every
//! intercept first, frames to the sender). When nothing happened the worker
//! sleeps in `poll` until a packet source, an intercept socket or the next
//! engine deadline wakes it.

use std::{
    os::fd::RawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mio::{Events, Interest, Poll, Token, unix::SourceFd};

use crate::{
    clock,
    compare::report::SharedReport,
    engine::{Announcement, EngineStats, Instant, Outbox},
    link::{InterceptLink, LinkError, LinkStats},
    packet::Address,
    send::{FrameSender, SenderStats},
    shard::{AnnounceMsg, Shard},
};

/// Packets read per turn, at most (keeps replies and timers flowing).
const CAPTURE_BATCH: usize = 256;
/// While packets flow the worker polls its source this often: the capture
/// ring does not wake it per packet (see tcpcopy-ebpf's inline program),
/// nor, while it polls, do the AF_XDP sockets.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// With no packet for this long the worker sleeps until one comes (or a
/// reply, or a timer): no CPU at idle.
const SLEEP_AFTER: Duration = Duration::from_millis(2);
/// The longest sleep by default (a safety net: a lost wake-up costs at
/// most this).
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often a worker publishes its counters.
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// A source that can wait (a capture file) is read only while fewer
/// handshakes than this are unanswered...
const MAX_HANDSHAKING: usize = 256;
/// ... and the engine uses less than this share of its memory cap.
const MEMORY_SHARE_DIVISOR: usize = 2;
/// At the end of a capture file: how often sessions are checked for
/// having nothing left to replay.
const SETTLE_CHECK_EVERY: Duration = Duration::from_millis(20);
/// At the end of a capture file, sessions get this long to finish by
/// default; then they are reset.
pub const DEFAULT_FINISH_TIMEOUT: Duration = Duration::from_secs(60);

pub const SOURCE_TOKEN: Token = Token(0);
pub const WAKE_TOKEN: Token = Token(1);
/// Link tokens start here.
pub const LINK_TOKEN_BASE: usize = 16;

/// Where a worker's captured client packets come from.
pub trait PacketSource: Send {
    /// Hands at most `max` packets (capture time in CLOCK_MONOTONIC
    /// nanoseconds, replay round, IPv4 packet) to `on_packet`; returns how
    /// many were read. The round is 0 but for a capture file replayed
    /// several times (`-T`).
    fn drain(&mut self, max: usize, on_packet: &mut dyn FnMut(u64, u16, &[u8])) -> usize;
    /// Descriptors that poll readable when packets wait, watched all the
    /// time (none: the source wakes the worker's waker instead).
    fn fds(&self) -> Vec<RawFd>;
    /// Descriptors watched only while the worker sleeps: sockets that would
    /// wake a watching worker at every packet (AF_XDP), read by polling
    /// while packets flow.
    fn sleep_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// Before a long sleep: asks the source to wake the worker at its next
    /// packet (the inline ring's flag). The worker reads the source once
    /// more after this, so a packet that came just before is not missed.
    /// `false`: the source cannot, so the worker sleeps briefly and polls.
    fn arm_wakeup(&mut self) -> bool {
        !self.sleep_fds().is_empty()
    }
    /// Packets the source lost or could not use, by reason.
    fn dropped(&self) -> SourceDrops;
    /// The source has no more packets, ever (a finished capture file).
    fn finished(&self) -> bool {
        false
    }
    /// The source can wait: the worker reads it only while the engine has
    /// room (a file; a live capture cannot wait).
    fn flow_controlled(&self) -> bool {
        false
    }
    /// When the next packet is due (CLOCK_MONOTONIC ns), for a source that
    /// paces itself.
    fn next_due_ns(&self) -> Option<u64> {
        None
    }
}

/// Packets a packet source lost or could not use, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceDrops {
    /// Entries that could not be used (mismatched records, frames cut
    /// short, frames that are not IPv4/TCP).
    pub unusable: u64,
    /// Mirror capture: frames the kernel dropped because a socket's RX
    /// ring was full (tcpcopy read too slowly).
    pub socket_ring_full: u64,
    /// Mirror capture: frames the kernel dropped for other reasons (no
    /// free frame in the fill ring, most often).
    pub socket_dropped: u64,
}

impl SourceDrops {
    pub fn add(&mut self, other: &Self) {
        self.unusable += other.unusable;
        self.socket_ring_full += other.socket_ring_full;
        self.socket_dropped += other.socket_dropped;
    }

    pub fn total(&self) -> u64 {
        self.unusable + self.socket_ring_full + self.socket_dropped
    }
}

/// What a worker has done, published for the statistics line.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub engine: EngineStats,
    pub sessions: u64,
    pub buffered_bytes: u64,
    pub links: LinkStats,
    pub links_up: u64,
    pub links_total: u64,
    /// Links whose intercept said it runs on the target (`--egress`).
    pub links_on_target: u64,
    /// Links whose intercept granted reply payloads (`--compare`).
    pub links_with_payloads: u64,
    pub sink: SenderStats,
    pub source_dropped: SourceDrops,
}

/// What the daemon shares with a worker.
#[derive(Default)]
pub struct WorkerShared {
    pub stop: AtomicBool,
    pub report: Mutex<WorkerReport>,
}

pub struct Worker {
    engine: Shard,
    /// Per intercept, its connections (`-C`); announcements round-robin.
    links: Vec<Vec<InterceptLink>>,
    round_robin: usize,
    source: Box<dyn PacketSource>,
    sink: Box<dyn FrameSender>,
    poll: Poll,
    shared: Arc<WorkerShared>,
    /// `-L`: keep going (and reconnect) when intercepts go away.
    lonely: bool,
    /// After the source finished: how long open sessions may take.
    finish_timeout: Duration,
    /// The longest sleep when idle.
    max_sleep: Duration,
    /// `--compare-report`: where the differences go (shared by the workers).
    compare_report: Option<SharedReport>,
}

impl Worker {
    /// A worker over an engine shard. `poll` must be the one the links
    /// were registered with (and the waker, if any, created from).
    pub fn new(
        engine: Shard,
        links: Vec<Vec<InterceptLink>>,
        source: Box<dyn PacketSource>,
        sink: Box<dyn FrameSender>,
        poll: Poll,
        shared: Arc<WorkerShared>,
        lonely: bool,
    ) -> std::io::Result<Self> {
        for fd in source.fds() {
            poll.registry()
                .register(&mut SourceFd(&fd), SOURCE_TOKEN, Interest::READABLE)?;
        }
        Ok(Self {
            engine,
            links,
            round_robin: 0,
            source,
            sink,
            poll,
            shared,
            lonely,
            finish_timeout: DEFAULT_FINISH_TIMEOUT,
            max_sleep: MAX_SLEEP,
            compare_report: None,
        })
    }

    /// `--compare-report`: the differences this worker finds go to `report`.
    pub fn compare_report(mut self, report: Option<SharedReport>) -> Self {
        self.compare_report = report;
        self
    }

    /// `--compare-report`: hands the differences found since the last
    /// call to the report.
    fn write_compare_records(&mut self) {
        let records = self.engine.take_compare_records();
        let endpoints = self.engine.take_endpoint_counts();
        if let Some(report) = &self.compare_report
            && !(records.is_empty() && endpoints.is_empty())
        {
            let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
            report.add(&records);
            report.add_endpoints(endpoints);
        }
    }

    /// How long open sessions may take to finish once a capture file has
    /// ended (then they are reset).
    pub fn finish_within(mut self, timeout: Duration) -> Self {
        self.finish_timeout = timeout;
        self
    }

    /// The longest sleep when idle (tests make it long, so only the
    /// source's wake-up can end it).
    pub fn max_sleep(mut self, max: Duration) -> Self {
        self.max_sleep = max;
        self
    }

    /// Whether to read the packet source this turn: always for a live
    /// capture; a source that can wait only while the engine has room.
    fn source_has_room(&self) -> bool {
        !self.source.flow_controlled()
            || (self.engine.handshaking_sessions() < MAX_HANDSHAKING
                && self.engine.memory_used()
                    < self.engine.config().memory_cap / MEMORY_SHARE_DIVISOR)
    }

    /// Runs until asked to stop (or, without `-L`, until an intercept goes
    /// away: then the error). On the way out every open session is reset.
    pub fn run(mut self) -> Result<WorkerReport, LinkError> {
        let mut events = Events::with_capacity(128);
        let mut next_report = clock::now();
        let mut last_packet = clock::now();
        // Once the source has finished: when, and the next settle check.
        let mut finishing: Option<(Instant, Instant)> = None;
        let result = loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let now = clock::now();
            let captured = self.source_has_room() && self.capture_turn();
            if captured {
                last_packet = now;
            }
            let mut busy = captured;
            match self.replies_turn(now) {
                Ok(n) => busy |= n > 0,
                Err(e) => break Err(e),
            }
            self.engine.flush(now);
            self.engine.on_timer(now);
            busy |= self.drain_outbox();
            self.sink.poll();
            if let Err(e) = self.flush_links(now) {
                break Err(e);
            }
            if now >= next_report {
                self.publish();
                self.write_compare_records();
                next_report = now + REPORT_EVERY;
            }
            if self.source.finished() {
                // No more client packets: end the sessions with nothing
                // left to replay as they settle; stop when none is open,
                // or at the finish timeout (the rest are reset).
                let (since, check) = finishing.get_or_insert((now, now));
                if now >= *check {
                    *check = now + SETTLE_CHECK_EVERY;
                    let open = self.engine.end_settled(now);
                    busy |= self.drain_outbox();
                    if open == 0 {
                        break Ok(());
                    }
                    if now.saturating_since(*since) >= self.finish_timeout {
                        tracing::warn!(
                            open,
                            "sessions still open after the finish timeout: resetting them"
                        );
                        break Ok(());
                    }
                }
            }
            if !busy {
                let quiet = now.saturating_since(last_packet) >= SLEEP_AFTER;
                if self.sleep(&mut events, now, quiet) {
                    last_packet = clock::now();
                }
            }
        };
        self.shutdown();
        let report = self.publish();
        result.map(|()| report)
    }

    /// Waits for something to do. While packets flow (not `quiet`) that is
    /// a short poll; when quiet, a sleep until a packet, a reply, a timer
    /// or the waker (the source is armed to wake it). Returns whether a
    /// packet turned up while arming (no sleep then).
    fn sleep(&mut self, events: &mut Events, now: Instant, quiet: bool) -> bool {
        let due = self
            .source
            .next_due_ns()
            .map(|ns| Instant::from_micros(ns / 1000));
        let until = [self.engine.next_deadline(), due]
            .into_iter()
            .chain(self.links.iter().flatten().map(InterceptLink::retry_at))
            .flatten()
            .min();
        let left = until.map_or(self.max_sleep, |d| d.saturating_since(now));
        let deep = quiet && self.source.arm_wakeup();
        let sleep_fds = if deep {
            self.source.sleep_fds()
        } else {
            Vec::new()
        };
        if deep {
            for fd in &sleep_fds {
                let _ = self.poll.registry().register(
                    &mut SourceFd(fd),
                    SOURCE_TOKEN,
                    Interest::READABLE,
                );
            }
            // A packet that came before the source was armed.
            if self.source_has_room() && self.capture_turn() {
                self.unregister(&sleep_fds);
                return true;
            }
            self.publish();
        }
        let timeout = if deep {
            left.min(self.max_sleep)
        } else {
            left.min(POLL_EVERY)
        };
        if let Err(e) = self.poll.poll(events, Some(timeout))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            tracing::warn!(error = %e, "poll failed");
        }
        self.unregister(&sleep_fds);
        false
    }

    fn unregister(&self, fds: &[RawFd]) {
        for fd in fds {
            let _ = self.poll.registry().deregister(&mut SourceFd(fd));
        }
    }

    /// Resets every open session and sends what that produced.
    fn shutdown(&mut self) {
        let now = clock::now();
        self.engine.shutdown(now);
        self.drain_outbox();
        self.write_compare_records();
        for _ in 0..100 {
            self.sink.poll();
        }
        let _ = self.flush_links(now);
    }

    fn capture_turn(&mut self) -> bool {
        let engine = &mut self.engine;
        let n = self
            .source
            .drain(CAPTURE_BATCH, &mut |ts_ns, round, packet| {
                engine.on_client_packet(Instant::from_micros(ts_ns / 1000), packet, round);
            });
        n > 0
    }

    fn replies_turn(&mut self, now: Instant) -> Result<usize, LinkError> {
        let mut total = 0;
        let mut reopened = false;
        let mut failed = Vec::new();
        for link in self.links.iter_mut().flatten() {
            if !link.is_up() {
                reopened |= self.lonely && link.try_reopen(self.poll.registry(), now);
                continue;
            }
            let engine = &mut self.engine;
            match link.read_payloads(|rec, payload| engine.on_reply(now, rec, payload)) {
                Ok(n) => total += n,
                Err(e) => failed.push((link_index(link), e)),
            }
        }
        let engine = &mut self.engine;
        total += self
            .sink
            .take_replies(&mut |rec| engine.on_reply(now, rec, None));
        for (token, e) in failed {
            self.link_failed(token, e, now)?;
        }
        if reopened {
            // intercept forgot this connection's sessions: announce them again.
            for a in self.engine.live_announcements() {
                self.announce(&a, now);
            }
        }
        Ok(total)
    }

    fn link_failed(&mut self, token: usize, e: LinkError, now: Instant) -> Result<(), LinkError> {
        if !self.lonely {
            return Err(e);
        }
        tracing::warn!(error = %e, "intercept connection lost; reconnecting (-L)");
        let registry = self.poll.registry();
        for link in self.links.iter_mut().flatten() {
            if link_index(link) == token {
                link.close(registry, now);
            }
        }
        Ok(())
    }

    fn flush_links(&mut self, now: Instant) -> Result<(), LinkError> {
        let mut failed = Vec::new();
        for link in self.links.iter_mut().flatten() {
            if let Err(e) = link.flush() {
                failed.push((link_index(link), e));
            }
        }
        for (token, e) in failed {
            self.link_failed(token, e, now)?;
        }
        Ok(())
    }

    /// Announcements to every intercept (one connection each, round
    /// robin), then frames to the sender, each family's engine in turn.
    /// Returns whether anything went.
    fn drain_outbox(&mut self) -> bool {
        let now = clock::now();
        let (v4, v6) = self.engine.outboxes();
        let mut went = drain(
            v4,
            &mut self.links,
            &mut self.round_robin,
            &mut *self.sink,
            now,
        );
        if let Some(v6) = v6 {
            went |= drain(
                v6,
                &mut self.links,
                &mut self.round_robin,
                &mut *self.sink,
                now,
            );
        }
        went
    }

    fn announce(&mut self, msg: &AnnounceMsg, now: Instant) {
        announce(&mut self.links, &mut self.round_robin, msg, now);
    }

    fn publish(&mut self) -> WorkerReport {
        let mut links = LinkStats::default();
        let (mut up, mut total, mut on_target, mut payloads) = (0, 0, 0, 0);
        for link in self.links.iter().flatten() {
            links.add(&link.stats);
            up += u64::from(link.is_up());
            on_target += u64::from(link.intercept_on_target());
            payloads += u64::from(link.is_up() && link.granted().is_some_and(|c| c > 0));
            total += 1;
        }
        let report = WorkerReport {
            engine: self.engine.stats(),
            sessions: self.engine.session_count() as u64,
            buffered_bytes: self.engine.buffered_bytes() as u64,
            links,
            links_up: up,
            links_total: total,
            links_on_target: on_target,
            links_with_payloads: payloads,
            sink: self.sink.stats(),
            source_dropped: self.source.dropped(),
        };
        *self.shared.report.lock().unwrap_or_else(|e| e.into_inner()) = report.clone();
        report
    }
}

/// Drains one engine's outbox: its announcements to every intercept, then
/// its frames to the sender. Returns whether there was anything.
fn drain<A: Address>(
    out: &mut Outbox<A>,
    links: &mut [Vec<InterceptLink>],
    round_robin: &mut usize,
    sink: &mut dyn FrameSender,
    now: Instant,
) -> bool
where
    for<'a> AnnounceMsg: From<&'a Announcement<A>>,
{
    if out.is_empty() {
        return false;
    }
    for a in &out.announcements {
        announce(links, round_robin, &AnnounceMsg::from(a), now);
    }
    sink.send(out);
    out.clear();
    true
}

/// Announces to every intercept, on one of its connections (round robin).
fn announce(
    links: &mut [Vec<InterceptLink>],
    round_robin: &mut usize,
    msg: &AnnounceMsg,
    now: Instant,
) {
    *round_robin = round_robin.wrapping_add(1);
    for group in links {
        let n = group.len();
        if n > 0 {
            group[*round_robin % n].announce_any(msg, now);
        }
    }
}

fn link_index(link: &InterceptLink) -> usize {
    link.token().0
}
