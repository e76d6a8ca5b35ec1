//! The intercept daemon: one event loop (mio) over the ring buffer, the
//! listening socket, every tcpcopy connection and the stop signal.
//!
//! Each loop turn: (1) accept and read tcpcopy connections, so an
//! announcement that arrived with its SYN-ACK is known before the record;
//! (2) read records from the ring (at most [`RING_BUDGET`] per turn) and
//! route them into per-peer batches; (3) flush batches by the adaptive rule
//! of [`crate::batch`]; (4) write outboxes; (5) timers: parking and route
//! expiry, connections without a hello, statistics. The poll timeout is the nearest deadline, zero while
//! work is left over from a budget.
//!
//! Invariants: no peer can block another (sockets are non-blocking, output
//! is bounded per peer, reads are budgeted per turn); a peer's failure
//! closes that peer only; the loop never blocks on anything but the poll.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use mio::{
    Events, Interest, Poll, Token,
    net::{TcpListener, TcpStream},
    unix::SourceFd,
};
use tcpcopy_common::proto::{CAP_ON_TARGET, MAX_RECORD_PAYLOAD};
use tcpcopy_runtime::metrics::{MetricsEndpoint, MetricsError};
use tcpcopy_runtime::process::StopSignal;
use tcpcopy_runtime::tc::EgressAttach;
use tcpcopy_runtime::xdp::{XdpError, XdpModePolicy};

use crate::{
    access::{Cidr, is_allowed},
    capture::{
        ReplyCapture,
        egress::{ANNOUNCED_MAX, AnnouncedTable, Claimed, EgressProgram},
        ring::{Reply, ReplyRing},
        xdp::ReplyProgram,
    },
    peer::{Peer, PeerClosed, PeerEvent, ReadProgress},
    route::{
        Routed, Router, RouterLimits,
        table::{PeerId, SessionKey},
    },
    stats::Stats,
    targets::Target,
};

/// Records read from the ring per loop turn at most.
pub const RING_BUDGET: usize = 4096;
/// Bytes read from one peer per loop turn at most.
const READ_BUDGET: usize = 64 << 10;
/// Most tcpcopy connections at once.
pub const MAX_PEERS: usize = 4096;
/// Pause before retrying a failed `accept`.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const RING: Token = Token(1);
const STOP: Token = Token(2);
/// A metrics scrape wants a fresh snapshot.
const METRICS: Token = Token(3);
const FIRST_PEER: usize = 16;

/// Where the target's replies are caught (the deployment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyPath {
    /// On an assistant host, to which the target routes the client range:
    /// XDP on its interfaces, in the modes the policy allows.
    Assistant { xdp_mode: XdpModePolicy },
    /// On the target itself (`--egress`): TC at the egress of its
    /// interfaces, for replies to these client ranges or to a client
    /// address a tcpcopy announced.
    Egress { clients: Vec<Cidr> },
}

/// What the daemon needs to run (see `cli` for the flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where the reply program attaches (see `path`).
    pub interfaces: Vec<String>,
    pub path: ReplyPath,
    pub targets: Vec<Target>,
    pub listen: SocketAddr,
    pub allow: Vec<Cidr>,
    pub ring_bytes: u32,
    /// Most unsent bytes per peer.
    pub peer_buffer: usize,
    /// Statistics period; `None`: only at exit.
    pub stats_interval: Option<Duration>,
    /// A connection that has not said hello by then is closed (tcpcopy
    /// sends it at once; a silent connection would hold a slot forever).
    pub hello_timeout: Duration,
    pub limits: RouterLimits,
    /// Extension: the most payload bytes per reply granted to a tcpcopy
    /// that asks (0: payloads are never granted).
    pub max_payload: u32,
    /// Where Prometheus metrics are served (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(
        "cannot listen for tcpcopy on {addr}: {source} (is another intercept running, or -b not an address of this host?)"
    )]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("event loop: {0}")]
    Poll(io::Error),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// A started intercept: reply program attached, listening; [`run`](Self::run) serves.
pub struct Intercept {
    config: DaemonConfig,
    program: Box<dyn ReplyCapture>,
    ring: ReplyRing,
    /// Egress only: the announced clients, filled from CLIENT_ADD.
    announced: Option<AnnouncedTable>,
    listener: TcpListener,
    attached: Vec<(String, String)>,
    /// A TC program is attached as a clsact filter (kernels without TCX):
    /// removing it at exit goes through rtnetlink.
    filter_attached: bool,
    /// `--metrics`: the port, bound at start and served once running.
    metrics: Option<MetricsEndpoint>,
}

impl Intercept {
    /// Loads the reply program, fills the target table, attaches to every
    /// interface (in the calling thread's network namespace) and binds the
    /// tcpcopy port. Nothing runs until [`run`](Self::run).
    pub fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        let mut attached = Vec::new();
        let mut filter_attached = false;
        let (mut program, announced): (Box<dyn ReplyCapture>, _) = match &config.path {
            ReplyPath::Assistant { xdp_mode } => {
                let mut program = ReplyProgram::load_with_ring(config.ring_bytes)?;
                for iface in &config.interfaces {
                    let mode = program.attach_with(iface, *xdp_mode)?;
                    tracing::info!(iface, ?mode, "XDP reply program attached");
                    attached.push((iface.clone(), format!("XDP {mode:?}").to_lowercase()));
                }
                (Box::new(program), None)
            }
            ReplyPath::Egress { clients } => {
                let max = (config.limits.max_routes as u32).min(ANNOUNCED_MAX);
                let mut program = EgressProgram::load(config.ring_bytes, max)?;
                for net in clients {
                    program.add_client_net(*net)?;
                }
                let announced = program.take_announced()?;
                for iface in &config.interfaces {
                    let how = program.attach_egress(iface)?;
                    filter_attached |= how == EgressAttach::Filter;
                    tracing::info!(iface, ?how, "TC egress reply program attached");
                    attached.push((iface.clone(), format!("TC egress {how:?}").to_lowercase()));
                }
                (Box::new(program), Some(announced))
            }
        };
        // Targets after attaching is safe: nothing matches an empty table.
        for target in &config.targets {
            program.add(target)?;
        }
        let ring = program.take_ring()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
        let metrics = config.metrics.map(MetricsEndpoint::bind).transpose()?;
        let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
        tracing::info!(
            listen = %config.listen,
            targets = targets.join(","),
            allow = config.allow.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
            "intercept started"
        );
        Ok(Self {
            config,
            program,
            ring,
            announced,
            listener,
            attached,
            filter_attached,
            metrics,
        })
    }

    /// The address tcpcopy connects to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Each interface and how the program is attached to it.
    pub fn attached(&self) -> &[(String, String)] {
        &self.attached
    }

    /// Whether stopping needs CAP_NET_ADMIN: a TC program attached as a
    /// clsact filter (kernels without TCX) is removed through rtnetlink;
    /// XDP and TCX links go away with their file descriptors.
    pub fn detaches_through_netlink(&self) -> bool {
        self.filter_attached
    }

    /// Serves until `stop` fires, then flushes what it can, logs the final
    /// statistics, detaches XDP and returns those statistics.
    pub fn run(self, mut stop: StopSignal) -> Result<Stats, DaemonError> {
        let Self {
            config,
            mut program,
            mut ring,
            announced,
            mut listener,
            attached: _,
            filter_attached: _,
            metrics,
        } = self;
        let mut poll = Poll::new().map_err(DaemonError::Poll)?;
        let registry = poll.registry();
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        registry
            .register(&mut SourceFd(&ring.as_raw_fd()), RING, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        registry
            .register(&mut SourceFd(&stop.as_raw_fd()), STOP, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        // A scrape wakes the loop, which publishes a snapshot at the end of
        // that turn (no periodic wake-ups for it).
        let metrics = match metrics {
            Some(endpoint) => {
                let waker = mio::Waker::new(registry, METRICS).map_err(DaemonError::Poll)?;
                Some(endpoint.serve(crate::metrics::exporter(), move || {
                    let _ = waker.wake();
                })?)
            }
            None => None,
        };

        let now = Instant::now();
        let mut state = LoopState {
            peers: HashMap::new(),
            router: Router::new(now, config.limits),
            stats: Stats::default(),
            next_peer: 0,
            read_pending: BTreeSet::new(),
            batching: BTreeSet::new(),
            writing: BTreeSet::new(),
            scratch: vec![0u8; READ_BUDGET],
            records: Vec::with_capacity(RING_BUDGET),
            accept_retry: None,
            hello_deadlines: VecDeque::new(),
            hello_timeout: config.hello_timeout,
            announced,
            escape_warned: false,
            max_payload: config.max_payload.min(MAX_RECORD_PAYLOAD),
            payload_cap: 0,
            capabilities: match config.path {
                ReplyPath::Assistant { .. } => 0,
                ReplyPath::Egress { .. } => CAP_ON_TARGET,
            },
        };
        let mut next_stats = config.stats_interval.map(|i| now + i);
        let mut events = Events::with_capacity(1024);
        // Replies may have been reported between attach and now.
        let mut ring_pending = true;

        loop {
            let now = Instant::now();
            let timeout = if ring_pending || !state.read_pending.is_empty() {
                Duration::ZERO
            } else {
                let mut wake = state.router.next_deadline();
                if let Some(t) = next_stats {
                    wake = wake.min(t);
                }
                if let Some(t) = state.next_batch_deadline() {
                    wake = wake.min(t);
                }
                if let Some(t) = state.accept_retry {
                    wake = wake.min(t);
                }
                if let Some(&(t, _)) = state.hello_deadlines.front() {
                    wake = wake.min(t);
                }
                wake.saturating_duration_since(now)
            };
            match poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DaemonError::Poll(e)),
            }
            let mut stopping = false;
            let mut ring_ready = false;
            let mut accept_ready = false;
            for event in &events {
                match event.token() {
                    LISTENER => accept_ready = true,
                    RING => ring_ready = true,
                    STOP => stopping = stop.is_triggered(),
                    METRICS => {}
                    Token(t) => {
                        let id = PeerId((t - FIRST_PEER) as u64);
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            state.read_pending.insert(id);
                        }
                        if event.is_writable()
                            && let Some(peer) = state.peers.get_mut(&id)
                        {
                            peer.write_blocked = false;
                            if !peer.outbox.is_empty() {
                                state.writing.insert(id);
                            }
                        }
                    }
                }
            }
            if stopping {
                break;
            }
            let now = Instant::now();
            if accept_ready || state.accept_retry.is_some_and(|t| now >= t) {
                state.accept_retry = None;
                state.accept_all(&mut listener, &poll, &config, now);
            }
            state.read_peers(&poll, now);
            state.update_payload_cap(program.as_mut());
            let mut input_idle = true;
            if ring_ready || ring_pending {
                let read = state.read_ring(&mut ring, now);
                ring_pending = read >= RING_BUDGET;
                input_idle = !ring_pending;
            }
            state.flush_batches(now, input_idle);
            state.write_peers(&poll);
            state.router.on_timer(now);
            state.close_silent_peers(&poll, now);
            if let (Some(at), Some(interval)) = (next_stats, config.stats_interval)
                && now >= at
            {
                let stats = state.snapshot(program.as_ref(), &ring);
                tracing::info!("stats: {stats}");
                next_stats = Some(now + interval);
            }
            if let Some(m) = &metrics
                && m.wanted()
            {
                let stats = state.snapshot(program.as_ref(), &ring);
                m.publish(crate::metrics::published(&stats));
            }
        }

        // Stopping: everything batched goes out if the sockets take it now.
        let now = Instant::now();
        state.flush_batches(now, true);
        state.write_peers(&poll);
        for id in state.peers.keys().copied().collect::<Vec<_>>() {
            state.close_peer(&poll, id, "intercept is stopping");
        }
        let stats = state.snapshot(program.as_ref(), &ring);
        tracing::info!("final stats: {stats}");
        if let Some(m) = &metrics {
            m.publish(crate::metrics::published(&stats));
        }
        program.detach_all()?;
        tracing::info!("reply program detached; intercept stopped");
        Ok(stats)
    }
}

/// Everything the loop mutates, apart from the program and the ring.
struct LoopState {
    peers: HashMap<PeerId, Peer>,
    router: Router,
    stats: Stats,
    next_peer: u64,
    /// Peers with input left over from a read budget, or with a read event.
    read_pending: BTreeSet<PeerId>,
    /// Peers with records in their batcher.
    batching: BTreeSet<PeerId>,
    /// Peers with bytes to write and no known reason to wait.
    writing: BTreeSet<PeerId>,
    scratch: Vec<u8>,
    records: Vec<Reply>,
    /// When to try `accept` again after it failed (e.g. out of descriptors).
    accept_retry: Option<Instant>,
    /// (hello deadline, peer) in accept order.
    hello_deadlines: VecDeque<(Instant, PeerId)>,
    hello_timeout: Duration,
    /// Egress only: the kernel's table of announced clients.
    announced: Option<AnnouncedTable>,
    /// Whether the warning about replies that beat their announcement was logged.
    escape_warned: bool,
    /// The most payload bytes per reply a peer may be granted.
    max_payload: u32,
    /// Capability bits of our version answer (where we run).
    capabilities: u32,
    /// The payload cap the reply program copies now (the largest grant of
    /// the connected peers; 0: headers only, the fast path).
    payload_cap: u32,
}

fn token(id: PeerId) -> Token {
    Token(id.0 as usize + FIRST_PEER)
}

impl LoopState {
    fn accept_all(
        &mut self,
        listener: &mut TcpListener,
        poll: &Poll,
        config: &DaemonConfig,
        now: Instant,
    ) {
        loop {
            let (stream, addr) = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the
                    // backlog, and no new event will say so: try again soon.
                    tracing::warn!(error = %e, "cannot accept a tcpcopy connection; retrying");
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            let allowed = is_allowed(&config.allow, addr.ip());
            if !allowed {
                self.stats.peers_refused += 1;
                tracing::warn!(%addr, "tcpcopy connection refused: not in --allow");
                continue;
            }
            if self.peers.len() >= MAX_PEERS {
                self.stats.peers_refused += 1;
                tracing::warn!(%addr, max = MAX_PEERS, "tcpcopy connection refused: too many peers");
                continue;
            }
            self.add_peer(stream, addr, poll, config.peer_buffer);
        }
    }

    fn add_peer(&mut self, mut stream: TcpStream, addr: SocketAddr, poll: &Poll, buffer: usize) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(%addr, error = %e, "cannot set TCP_NODELAY; batching still bounds latency");
        }
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        if let Err(e) = poll.registry().register(
            &mut stream,
            token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%addr, error = %e, "cannot watch a tcpcopy connection; closed");
            self.stats.peers_refused += 1;
            return;
        }
        self.stats.peers_accepted += 1;
        tracing::info!(peer = id.0, %addr, "tcpcopy connected");
        self.hello_deadlines
            .push_back((Instant::now() + self.hello_timeout, id));
        self.peers.insert(id, Peer::new(id, addr, stream, buffer));
        // Data may already be waiting.
        self.read_pending.insert(id);
    }

    /// Closes the connections whose hello is overdue.
    fn close_silent_peers(&mut self, poll: &Poll, now: Instant) {
        while let Some(&(deadline, id)) = self.hello_deadlines.front() {
            if deadline > now {
                break;
            }
            self.hello_deadlines.pop_front();
            if self.peers.get(&id).is_some_and(|p| !p.greeted()) {
                self.stats.peers_failed += 1;
                let reason = format!("no hello within {:?}", self.hello_timeout);
                self.close_peer(poll, id, &reason);
            }
        }
    }

    fn read_peers(&mut self, poll: &Poll, now: Instant) {
        let pending = std::mem::take(&mut self.read_pending);
        for id in pending {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let mut events = Vec::new();
            let result = peer.read_events(READ_BUDGET, &mut self.scratch, |e| events.push(e));
            // Events before an error still count: they were well formed.
            for event in events {
                match event {
                    PeerEvent::Announce(key) => {
                        self.claim(&key);
                        for rec in self.router.announce(key, id, now) {
                            self.enqueue(id, Reply::header_only(rec), now);
                        }
                    }
                    PeerEvent::Withdraw(key) => self.router.withdraw(&key, id),
                    PeerEvent::PayloadRequest(cap) => {
                        let granted = cap.min(self.max_payload);
                        if let Some(peer) = self.peers.get_mut(&id) {
                            peer.grant_payloads(granted);
                            tracing::info!(peer = id.0, asked = cap, granted, "payloads granted");
                            if !peer.write_blocked {
                                self.writing.insert(id);
                            }
                        }
                    }
                    PeerEvent::VersionQuery => {
                        if let Some(peer) = self.peers.get_mut(&id) {
                            peer.answer_version(self.capabilities);
                            if !peer.write_blocked {
                                self.writing.insert(id);
                            }
                        }
                    }
                }
            }
            match result {
                Ok(ReadProgress::Drained) => {}
                Ok(ReadProgress::MoreWaiting) => {
                    self.read_pending.insert(id);
                }
                Err(reason) => {
                    if !matches!(reason, PeerClosed::Eof) {
                        self.stats.peers_failed += 1;
                    }
                    let reason = reason.to_string();
                    self.close_peer(poll, id, &reason);
                }
            }
        }
    }

    /// Sets the reply program's payload cap to the largest grant among the
    /// connected peers, when that changed (a peer asked, or went away).
    fn update_payload_cap(&mut self, program: &mut dyn ReplyCapture) {
        let want = self
            .peers
            .values()
            .filter_map(|p| p.payload_cap)
            .max()
            .unwrap_or(0);
        if want == self.payload_cap {
            return;
        }
        match program.set_payload_cap(want) {
            Ok(()) => {
                tracing::info!(cap = want, "reply program copies payloads up to cap bytes");
                self.payload_cap = want;
            }
            Err(e) => tracing::warn!(error = %e, "cannot set the reply program's payload cap"),
        }
    }

    /// Egress: claims an announced client address in the kernel's table.
    fn claim(&mut self, key: &SessionKey) {
        let Some(table) = &mut self.announced else {
            return;
        };
        match table.announce(key) {
            Ok(Claimed::Now) => {}
            Ok(Claimed::AfterAReplyEscaped) => {
                self.stats.escaped_before_announce += 1;
                if !self.escape_warned {
                    self.escape_warned = true;
                    let (client, target) = match key {
                        SessionKey::V4(k) => (
                            IpAddr::from(k.client_ip),
                            SocketAddr::new(k.target_ip.into(), k.target_port),
                        ),
                        SessionKey::V6(k) => (
                            IpAddr::from(k.client_ip),
                            SocketAddr::new(k.target_ip.into(), k.target_port),
                        ),
                    };
                    tracing::warn!(
                        %client,
                        %target,
                        "a reply to a replayed client left this host before tcpcopy announced \
                         the client (its SYN-ACK was faster than the announcement); give \
                         --clients with the replayed client range (e.g. tcpcopy's -c pool) \
                         so that no reply can leave; counted as escaped_before_announce"
                    );
                }
            }
            Err(e) => {
                self.stats.announce_failed += 1;
                tracing::warn!(error = %e, "cannot claim an announced client in the kernel's table");
            }
        }
    }

    /// Reads up to [`RING_BUDGET`] records and routes them; returns how many
    /// ring entries were read.
    fn read_ring(&mut self, ring: &mut ReplyRing, now: Instant) -> usize {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        let read = ring.drain_replies(RING_BUDGET, |rec| records.push(rec));
        self.stats.ring_records += records.len() as u64;
        self.stats.ring_records6 += records.iter().filter(|r| r.record.is_ipv6()).count() as u64;
        for reply in records.drain(..) {
            let peers = &self.peers;
            match self
                .router
                .route(&reply.record, now, |p| peers.contains_key(&p))
            {
                Routed::Deliver(id) => self.enqueue(id, reply, now),
                Routed::Parked | Routed::Unrouted | Routed::ParkingFull(_) => {}
            }
        }
        self.records = records;
        read
    }

    /// Adds `rec` to `id`'s batch; a full batch goes to the outbox at once.
    fn enqueue(&mut self, id: PeerId, rec: Reply, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.batcher.is_full() {
            self.stats.dropped_slow += peer.flush_batch() as u64;
            if !peer.write_blocked {
                self.writing.insert(id);
            }
        }
        peer.batcher.push(rec, now);
        self.batching.insert(id);
    }

    fn next_batch_deadline(&self) -> Option<Instant> {
        self.batching
            .iter()
            .filter_map(|id| self.peers.get(id)?.batcher.deadline())
            .min()
    }

    fn flush_batches(&mut self, now: Instant, input_idle: bool) {
        let batching = std::mem::take(&mut self.batching);
        for id in batching {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.batcher.should_flush(now, input_idle) {
                self.stats.dropped_slow += peer.flush_batch() as u64;
                if !peer.write_blocked {
                    self.writing.insert(id);
                }
            }
            if !peer.batcher.is_empty() {
                self.batching.insert(id);
            }
        }
    }

    fn write_peers(&mut self, poll: &Poll) {
        let writing = std::mem::take(&mut self.writing);
        for id in writing {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            match peer.write_out() {
                Ok(done) => self.stats.delivered += done,
                Err(reason) => {
                    self.stats.peers_failed += 1;
                    let reason = reason.to_string();
                    self.close_peer(poll, id, &reason);
                }
            }
        }
    }

    fn close_peer(&mut self, poll: &Poll, id: PeerId, reason: &str) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        let _ = poll.registry().deregister(&mut peer.stream);
        let lost = peer.undelivered();
        self.stats.dropped_closed += lost;
        self.read_pending.remove(&id);
        self.batching.remove(&id);
        self.writing.remove(&id);
        let c = peer.counts;
        tracing::info!(
            peer = id.0,
            addr = %peer.addr,
            reason,
            announced = c.announced,
            announced6 = c.announced6,
            delivered = c.delivered,
            dropped_slow = c.dropped_slow,
            undelivered = lost,
            "tcpcopy disconnected; its routes are gone"
        );
    }

    fn snapshot(&self, program: &dyn ReplyCapture, ring: &ReplyRing) -> Stats {
        let mut stats = self.stats;
        stats.route = self.router.counts();
        stats.routes = self.router.routes();
        stats.routes6 = self.router.routes6();
        stats.parked_now = self.router.parked_now();
        stats.peers = self.peers.len();
        stats.queued_now = self.peers.values().map(Peer::undelivered).sum();
        stats.ring_bad = ring.bad_entries();
        stats.xdp = program.counters().ok();
        stats
    }
}
