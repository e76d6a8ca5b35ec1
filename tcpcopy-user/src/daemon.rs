//! The live tcpcopy: capture program attached, workers running, statistics
//! printed; stopped by SIGINT/SIGTERM (every open session reset, XDP
//! detached).
//!
//! Start-up happens in [`Tcpcopy::start`], before the process goes to the
//! background and before any thread exists, so configuration errors reach
//! the terminal and `fork` is safe. [`Tcpcopy::run`] then starts the
//! threads: one per worker, plus a dispatcher when several workers share
//! one capture ring (it hands each packet to the worker that owns its
//! client address).

use std::{
    io::IsTerminal,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use mio::{Events, Interest, Poll, Token, Waker, unix::SourceFd};
use tcpcopy_runtime::{
    metrics::{MetricsEndpoint, MetricsError},
    process::StopSignal,
    xdp::{AttachMode, XdpError, XdpModePolicy},
};

use crate::{
    capture::{
        xdp::{CaptureMode, CaptureProgram},
        xsk::{MirrorSource, XskError, rx_queue_count},
    },
    cli::{CaptureKind, Cli, XdpMode},
    clock,
    compare::report::{ReportWriter, SharedReport},
    diagnose::{HandshakeWatch, Setup},
    dispatch::{Dispatcher, Sharder},
    link::{self, InterceptLink, LinkError},
    offline::{
        OfflineSource, OpenError,
        dryrun::{DryRun, DryRunError},
        progress::{Offline, ProgressState},
        report,
    },
    send::{FrameSender, SendBackend, SendError, SenderConfig},
    shard::Shard,
    stats_line::Snapshot,
    worker::{LINK_TOKEN_BASE, PacketSource, WAKE_TOKEN, Worker, WorkerReport, WorkerShared},
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("capture program: {0}")]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("sending on the output interface: {0}")]
    Send(#[from] SendError),
    #[error("mirror capture: {0}")]
    Mirror(#[from] XskError),
    #[error("{0}")]
    Unsupported(String),
    #[error("worker {worker} stopped: {source}")]
    Worker { worker: usize, source: LinkError },
    #[error(transparent)]
    Offline(#[from] OpenError),
    #[error(transparent)]
    DryRun(#[from] DryRunError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// A worker built and ready to run on its own thread.
struct Ready {
    worker: Worker,
    shared: Arc<WorkerShared>,
}

/// tcpcopy, set up and not yet running.
pub struct Tcpcopy {
    /// The XDP capture (live mode).
    capture: Option<CaptureProgram>,
    attach_mode: Option<AttachMode>,
    offline: Option<Offline>,
    workers: Vec<Ready>,
    /// One per worker, to wake it when stopping.
    wakers: Vec<Arc<Waker>>,
    dispatcher: Option<Dispatcher>,
    stats_interval: Duration,
    /// `--compare-report`: the page is rewritten from the totals.
    compare_report: Option<SharedReport>,
    /// `--compare`: the comparison's line is logged every `COMPARE_EVERY`
    /// (and at exit).
    comparing: bool,
    /// Self-diagnosis (not in a dry run: nothing real to diagnose).
    watch: Option<HandshakeWatch>,
    /// `--metrics`: the port, bound at start and served once running.
    metrics: Option<MetricsEndpoint>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The final `key=value` statistics.
    pub stats: String,
    /// Offline mode's summary.
    pub summary: Option<String>,
    /// Offline mode: reading the file stopped on this error.
    pub file_error: Option<String>,
}

impl Tcpcopy {
    /// Live mode: loads and attaches the capture program. Offline mode:
    /// opens the capture file. Then connects to every intercept and
    /// builds the workers (no thread started yet).
    pub fn start(cli: &Cli) -> Result<Self, DaemonError> {
        if let Some(path) = cli.offline_file() {
            let mut source = OfflineSource::open(
                &path,
                cli.transfer.0.iter().map(|t| t.rule).collect(),
                cli.timing(),
            )?;
            if cli.compare.is_some() {
                source = source.with_server_packets();
            }
            let offline = Offline {
                name: path.display().to_string(),
                report: source.report(),
                timing: cli.timing(),
                replicas: cli.replicas,
                bar: std::io::stderr().is_terminal() && cli.log.is_none() && !cli.daemon,
            };
            return Self::build(cli, None, Box::new(source), Some(offline));
        }
        // --compare: production's answers are captured too (inline, into a
        // ring of their own).
        let load = |mode| match &cli.compare {
            Some(_) => CaptureProgram::load_with_responses(mode, cli.response_ring()),
            None => CaptureProgram::load(mode),
        };
        let (mut capture, source): (CaptureProgram, Box<dyn PacketSource>) = match cli.capture {
            CaptureKind::Inline => {
                let mut capture = load(CaptureMode::Inline {
                    ring_bytes: cli.ring_size,
                })?;
                let ring = capture.take_ring()?;
                (capture, Box::new(ring))
            }
            CaptureKind::Mirror => {
                let queues = rx_queue_count(&cli.input)?;
                let mut capture = load(CaptureMode::Mirror {
                    queues,
                    pass_others: cli.mirror_pass_others,
                })?;
                let mirror = MirrorSource::open(&cli.input, queues, cli.ring_size)?;
                for (queue, fd) in mirror.sockets() {
                    capture.register_socket(queue, &fd)?;
                }
                (capture, Box::new(mirror))
            }
        };
        for (i, t) in cli.transfer.0.iter().enumerate() {
            capture.add_rule(&t.rule, i as u32)?;
        }
        let policy = match cli.xdp_mode {
            XdpMode::Auto => XdpModePolicy::Auto,
            XdpMode::Native => XdpModePolicy::Native,
            XdpMode::Generic => XdpModePolicy::Generic,
        };
        let mode = capture.attach_with(&cli.input, policy)?;
        Self::build(cli, Some((capture, mode)), source, None)
    }

    /// Connects to the intercepts and builds the workers over `source`.
    fn build(
        cli: &Cli,
        capture: Option<(CaptureProgram, AttachMode)>,
        source: Box<dyn PacketSource>,
        offline: Option<Offline>,
    ) -> Result<Self, DaemonError> {
        let (capture, attach_mode) = capture.unzip();
        let intercepts = cli
            .intercept_list()
            .iter()
            .map(|(h, p)| link::resolve(h, *p))
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let shards = cli.workers;
        let output = cli.output.as_deref().unwrap_or_default();
        let tx_queues = tx_queue_count(output);
        if !cli.dry_run && cli.send == SendBackend::AfXdp && u32::from(shards) > tx_queues {
            tracing::warn!(
                output,
                tx_queues,
                workers = shards,
                "fewer TX queues than workers: the workers beyond them send through a raw packet socket"
            );
        }
        let compare_report = match (&cli.compare, &cli.compare_report) {
            (Some(_), Some(dir)) => Some(
                ReportWriter::create(dir)
                    .map_err(io_err("creating the --compare-report directory's files"))?
                    .shared(),
            ),
            _ => None,
        };
        let mut workers = Vec::new();
        let mut wakers = Vec::new();
        for w in 0..shards {
            let poll = Poll::new().map_err(io_err("creating an event loop"))?;
            let mut links = Vec::new();
            let mut token = LINK_TOKEN_BASE;
            for addr in &intercepts {
                let mut group = Vec::new();
                for _ in 0..cli.connections {
                    // --compare: the target's responses come as reply payloads.
                    let payload_cap = cli
                        .compare
                        .as_ref()
                        .map(|_| tcpcopy_common::proto::MAX_RECORD_PAYLOAD);
                    group.push(InterceptLink::connect_asking(
                        *addr,
                        Token(token),
                        poll.registry(),
                        payload_cap,
                    )?);
                    token += 1;
                }
                links.push(group);
            }
            let sink = open_sender(cli, w, tx_queues)?;
            let shared = Arc::new(WorkerShared::default());
            let engine = Shard::new(cli.engine_config(), w, shards);
            // Wakes a sleeping worker: the dispatcher with its packets, the
            // daemon when stopping.
            wakers.push(Arc::new(
                Waker::new(poll.registry(), WAKE_TOKEN).map_err(io_err("creating a waker"))?,
            ));
            // The source is filled in below (the ring goes to one owner).
            workers.push((engine, links, sink, poll, shared));
        }
        let config = cli.engine_config();
        let sharder = Sharder::new(
            shards,
            config.seed,
            cli.compare.is_some().then(|| config.rules.clone()),
        );
        let (sources, dispatcher): (Vec<Box<dyn PacketSource>>, Option<Dispatcher>) = if shards == 1
        {
            (vec![source], None)
        } else {
            let (d, sources) = Dispatcher::new(source, wakers.clone(), sharder, cli.max_sleep())
                .map_err(io_err("creating the dispatcher's event loop"))?;
            (
                sources
                    .into_iter()
                    .map(|s| Box::new(s) as Box<dyn PacketSource>)
                    .collect(),
                Some(d),
            )
        };
        let workers = workers
            .into_iter()
            .zip(sources)
            .map(|((engine, links, sink, poll, shared), source)| {
                Worker::new(
                    engine,
                    links,
                    source,
                    sink,
                    poll,
                    shared.clone(),
                    cli.lonely,
                )
                .map(|worker| Ready {
                    worker: worker
                        .finish_within(Duration::from_secs(cli.finish_timeout))
                        .max_sleep(cli.max_sleep())
                        .compare_report(compare_report.clone()),
                    shared,
                })
                .map_err(io_err("registering the packet source"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            capture,
            attach_mode,
            offline,
            workers,
            wakers,
            dispatcher,
            stats_interval: Duration::from_secs(cli.stats_interval),
            compare_report,
            comparing: cli.compare.is_some(),
            metrics: cli.metrics.map(MetricsEndpoint::bind).transpose()?,
            watch: (!cli.dry_run).then(|| {
                HandshakeWatch::new(Setup {
                    targets: cli
                        .transfer
                        .0
                        .iter()
                        .map(|t| t.rule.target.to_string())
                        .collect(),
                    intercepts: cli
                        .intercept_list()
                        .iter()
                        .map(|(h, p)| {
                            if h.contains(':') {
                                format!("[{h}]:{p}")
                            } else {
                                format!("{h}:{p}")
                            }
                        })
                        .collect(),
                    output: cli.output.clone().unwrap_or_default(),
                })
            }),
        })
    }

    /// How the capture program attached (live mode).
    pub fn attach_mode(&self) -> Option<AttachMode> {
        self.attach_mode
    }

    /// Offline mode (a capture file is replayed).
    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    /// Runs the workers until `stop` (SIGINT/SIGTERM) or a worker fails;
    /// offline, until the file has been replayed.
    pub fn run(mut self, mut stop: StopSignal) -> Result<Outcome, DaemonError> {
        let started = clock::now();
        let mut poll = Poll::new().map_err(io_err("creating an event loop"))?;
        // A scrape wakes this loop, which publishes a snapshot it takes
        // anyway; the workers never see it.
        let metrics = match self.metrics.take() {
            Some(endpoint) => {
                let waker = Waker::new(poll.registry(), METRICS_WAKE)
                    .map_err(io_err("creating a waker"))?;
                Some(endpoint.serve(crate::metrics::exporter(), move || {
                    let _ = waker.wake();
                })?)
            }
            None => None,
        };
        let mut published: Option<Snapshot> = None;
        let shared: Vec<Arc<WorkerShared>> =
            self.workers.iter().map(|r| r.shared.clone()).collect();
        let mut handles: Vec<Option<JoinHandle<Result<WorkerReport, LinkError>>>> = self
            .workers
            .drain(..)
            .enumerate()
            .map(|(i, r)| {
                Some(
                    std::thread::Builder::new()
                        .name(format!("tcpcopy-w{i}"))
                        .spawn(move || r.worker.run())
                        .expect("spawning a worker thread"),
                )
            })
            .collect();
        let mut error = None;
        let dispatcher = self.dispatcher.take().map(Dispatcher::spawn);
        let stop_fd: RawFd = stop.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&stop_fd), Token(0), Interest::READABLE)
            .map_err(io_err("watching for signals"))?;
        let mut events = Events::with_capacity(4);
        let capture = self.capture.as_ref();
        let mut last = Snapshot::take(&shared, capture);
        let mut progress = self
            .offline
            .as_ref()
            .map(|o| ProgressState::new(o, started));
        let tick = if self.offline.as_ref().is_some_and(|o| o.bar) {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(200)
        };
        let mut interrupted = false;
        let mut next_compare = started + COMPARE_EVERY;
        loop {
            let _ = poll.poll(&mut events, Some(tick));
            if stop.is_triggered() {
                tracing::info!("stopping: resetting open sessions");
                interrupted = true;
                break;
            }
            // Live: one worker stopping stops everything (it failed).
            // Offline: each stops when its share of the file is replayed;
            // one that failed stops everything at once.
            for (i, slot) in handles.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(JoinHandle::is_finished) {
                    let h = slot.take().expect("checked above");
                    error = error.or(joined(i, h));
                    if self.offline.is_none() {
                        error = error.or(Some(DaemonError::Unsupported(format!(
                            "worker {i} stopped"
                        ))));
                    }
                }
            }
            if error.is_some() || handles.iter().all(Option::is_none) {
                break;
            }
            let now = Snapshot::take(&shared, capture);
            if let Some(m) = &metrics
                && m.wanted()
            {
                m.publish(crate::metrics::published(&now, published.as_ref()));
                published = Some(now.clone());
            }
            if let Some(watch) = &mut self.watch
                && let Some(warning) = watch.observe(now.at, now.observation(self.comparing))
            {
                tracing::warn!("{warning}");
            }
            if let (Some(p), Some(o)) = (&mut progress, &self.offline) {
                p.show(o, &now);
            }
            if self.comparing && now.at >= next_compare {
                self.compare_progress(&now, false);
                next_compare = now.at + COMPARE_EVERY;
            }
            if now.at.saturating_since(last.at) >= self.stats_interval {
                tracing::info!("stats: {}", now.line(Some(&last)));
                last = now;
            }
        }
        for s in &shared {
            s.stop.store(true, Ordering::Relaxed);
        }
        for w in &self.wakers {
            let _ = w.wake();
        }
        if let Some(d) = dispatcher {
            d.stop();
        }
        for (i, h) in handles.into_iter().enumerate() {
            if let Some(h) = h {
                error = error.or(joined(i, h));
            }
        }
        let end = Snapshot::take(&shared, capture);
        if let Some(m) = &metrics {
            m.publish(crate::metrics::published(&end, published.as_ref()));
        }
        let last_line = end.line(None);
        tracing::info!("final stats: {last_line}");
        if self.comparing {
            self.compare_progress(&end, true);
        }
        if let Some(c) = &mut self.capture {
            c.detach_all()?;
        }
        if let Some(e) = error {
            return Err(e);
        }
        let (summary, file_error) = match &self.offline {
            Some(o) => {
                if let Some(p) = &mut progress {
                    p.finish(o, &end);
                }
                let file = o.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let elapsed = end.at.saturating_since(started);
                (
                    Some(report::summary(
                        &o.name,
                        &file,
                        &end.report,
                        elapsed,
                        o.replicas,
                        interrupted,
                    )),
                    file.error,
                )
            }
            None => (None, None),
        };
        Ok(Outcome {
            stats: last_line,
            summary,
            file_error,
        })
    }
}

impl Tcpcopy {
    /// `--compare`: the comparison's totals in the log, and the report
    /// page rewritten (`--compare-report`).
    fn compare_progress(&self, now: &Snapshot, last: bool) {
        let e = &now.report.engine;
        tracing::info!(
            "comparison{}: {}; response time p50/p99: production {}/{} us, target {}/{} us",
            if last { " at exit" } else { "" },
            e.compare_counts().describe(),
            e.production_time.quantile(0.5),
            e.production_time.quantile(0.99),
            e.response_time.quantile(0.5),
            e.response_time.quantile(0.99),
        );
        let Some(report) = &self.compare_report else {
            return;
        };
        let written = report.lock().unwrap_or_else(|p| p.into_inner()).write_page(
            e.compare_counts(),
            e.response_time.nonzero_buckets(),
            e.production_time.nonzero_buckets(),
        );
        match written {
            Ok(page) if last => tracing::info!(page = %page.display(), "comparison report written"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot write the comparison report page"),
        }
    }
}

/// How often `--compare` logs its totals and rewrites the report page.
const COMPARE_EVERY: Duration = Duration::from_secs(30);

/// Wakes [`Tcpcopy::run`]'s loop for a metrics scrape (the stop pipe is
/// `Token(0)`).
const METRICS_WAKE: Token = Token(1);

/// The error of worker `i`, joined.
fn joined(i: usize, h: JoinHandle<Result<WorkerReport, LinkError>>) -> Option<DaemonError> {
    match h.join() {
        Ok(Ok(_)) => None,
        Ok(Err(source)) => Some(DaemonError::Worker { worker: i, source }),
        Err(_) => Some(DaemonError::Unsupported(format!("worker {i} panicked"))),
    }
}

/// TX queues of `iface` (from sysfs), at least 1.
fn tx_queue_count(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("tx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1) as u32
}

/// The sender of worker `w`: AF_XDP on TX queue `w` where the device has
/// one, else a raw packet socket. Next hops of every target are resolved
/// before the first frame (so none is dropped while the kernel resolves).
fn open_sender(cli: &Cli, w: u16, tx_queues: u32) -> Result<Box<dyn FrameSender>, DaemonError> {
    if cli.dry_run {
        let sender = DryRun::new(cli.write_pcap.as_deref())?;
        tracing::info!(worker = w, sender = %sender.describe(), "sender open");
        return Ok(Box::new(sender));
    }
    let output = cli.output.clone().unwrap_or_default();
    let backend = if cli.send == SendBackend::AfXdp && u32::from(w) >= tx_queues {
        SendBackend::Raw
    } else {
        cli.send
    };
    let mac = cli.transfer.0.iter().find_map(|t| t.next_hop_mac);
    let mut sender = SenderConfig::new(output.clone())
        .backend(backend)
        .next_hop_mac(mac)
        .queue_id(u32::from(w))
        .open()?;
    let baseline = cli.compare_baseline.map(|b| IpAddr::V4(*b.ip()));
    for target in cli
        .transfer
        .0
        .iter()
        .map(|t| t.rule.target.ip())
        .chain(baseline)
    {
        if sender
            .resolve_next_hop(target, Duration::from_secs(2))
            .is_none()
        {
            tracing::warn!(%target, output, "no next-hop MAC yet for the target: frames wait for it, counted as drops");
        }
    }
    tracing::info!(worker = w, sender = %sender.describe(), "sender open");
    Ok(sender)
}
