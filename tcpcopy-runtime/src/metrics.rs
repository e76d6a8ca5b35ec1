//! Prometheus metrics of both daemons (`--metrics ADDR:PORT`), made from
//! their statistics line.
//!
//! A daemon describes what it has done as [`Stat`]s: the `key=value`
//! pairs of its statistics line, each with its [`StatKind`]. The line is
//! written from them ([`stats_line`]) and the metrics are encoded from the
//! same values ([`Exporter`]), so the two never disagree, and a key added
//! to the line is a metric without more code:
//!
//! | kind | key | metric |
//! |---|---|---|
//! | [`StatKind::Counter`] | `captured` | counter `<prefix>_captured_total` |
//! | [`StatKind::Gauge`] | `sessions` | gauge `<prefix>_sessions` |
//! | [`StatKind::Rate`] | `captured_per_s` | gauge `<prefix>_captured_per_second` |
//! | [`StatKind::Micros`] | `response_p50_us` | gauge `<prefix>_response_p50_seconds` |
//!
//! Latency distributions come beside the pairs ([`HistogramFamily`]) and
//! are exported as histograms in seconds; `<prefix>_build_info` carries
//! the version. The text is OpenMetrics, encoded by `prometheus-client`.
//!
//! Serving: [`MetricsEndpoint::bind`] binds the port while the daemon
//! starts (errors reach the terminal, no thread exists yet);
//! [`MetricsEndpoint::serve`] starts the HTTP server (`tiny_http`) on
//! threads of its own once the daemon runs. A scrape asks the daemon for a
//! fresh snapshot ([`MetricsServer::wanted`], and a wake-up of its event
//! loop) and waits for it at most [`FRESH_WAIT`]; a daemon busy elsewhere
//! is served its previous snapshot. Nothing on the replay's path waits for
//! a scrape: the daemon publishes values it reads anyway, when asked, and
//! the encoding happens on the server's thread.

use std::{
    borrow::Cow,
    fmt::Write as _,
    io,
    net::{SocketAddr, TcpListener},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

/// How a statistics-line value is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatKind {
    /// A running total: counter `<prefix>_<key>_total`.
    Counter,
    /// A value now (sessions open, bytes buffered): gauge `<prefix>_<key>`.
    Gauge,
    /// Per second since the previous snapshot (the key ends in `_per_s`):
    /// gauge `<prefix>_<stem>_per_second`.
    Rate,
    /// A duration in microseconds (the key ends in `_us`), e.g. a
    /// quantile: gauge `<prefix>_<stem>_seconds`.
    Micros,
}

/// One `key=value` pair of a statistics line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub key: Cow<'static, str>,
    pub value: u64,
    pub kind: StatKind,
}

impl Stat {
    pub fn new(key: impl Into<Cow<'static, str>>, value: u64, kind: StatKind) -> Self {
        Self {
            key: key.into(),
            value,
            kind,
        }
    }

    pub fn counter(key: impl Into<Cow<'static, str>>, value: u64) -> Self {
        Self::new(key, value, StatKind::Counter)
    }

    pub fn gauge(key: impl Into<Cow<'static, str>>, value: u64) -> Self {
        Self::new(key, value, StatKind::Gauge)
    }
}

/// The statistics line: `key=value` pairs separated by spaces.
pub fn stats_line(stats: &[Stat]) -> String {
    let mut line = String::new();
    for (i, s) in stats.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let _ = write!(line, "{}={}", s.key, s.value);
    }
    line
}

/// One distribution of a [`HistogramFamily`], as the daemon keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSeries {
    /// Labels telling the series of one family apart, e.g. `server=target`.
    pub labels: Vec<(&'static str, &'static str)>,
    /// `(upper bound in microseconds, count)` of each non-empty bucket of
    /// the daemon's own (finer) histogram.
    pub micros: Vec<(u64, u64)>,
}

/// A histogram of durations, exported as `<prefix>_<name>_seconds` with
/// the buckets of [`BUCKET_BOUNDS_SECONDS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub series: Vec<HistogramSeries>,
}

/// Bucket bounds (seconds) of the exported histograms. A source bucket
/// goes into the first one that holds its upper bound, so a cumulative
/// count never includes a duration above its `le`.
pub const BUCKET_BOUNDS_SECONDS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl HistogramSeries {
    /// `(le, count)` per exported bucket (the last one `+Inf`), the count
    /// and the sum in seconds. The source keeps buckets, not the exact
    /// sum: the sum adds each source bucket's upper bound (at most a
    /// source bucket's width, about 25 %, too high).
    fn rebucketed(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_SECONDS
            .iter()
            .chain(&[f64::INFINITY])
            .map(|le| (*le, 0))
            .collect();
        let (mut count, mut sum) = (0, 0.0);
        for &(upper_us, n) in &self.micros {
            let secs = upper_us as f64 / 1e6;
            let i = BUCKET_BOUNDS_SECONDS
                .iter()
                .position(|le| secs <= *le)
                .unwrap_or(BUCKET_BOUNDS_SECONDS.len());
            buckets[i].1 += n;
            count += n;
            sum += secs * n as f64;
        }
        (buckets, count, sum)
    }
}

/// What a daemon publishes for a scrape: its statistics line's values and
/// its histograms, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub stats: Vec<Stat>,
    pub histograms: Vec<HistogramFamily>,
}

/// How one daemon's values become metrics.
#[derive(Clone, Copy, Debug)]
pub struct Exporter {
    /// Of every metric name: `tcpcopy`, `intercept`.
    pub prefix: &'static str,
    /// `<prefix>_build_info{version=...}`.
    pub version: &'static str,
    /// The HELP text of a statistics-line key (`None`: a generic one).
    pub help: fn(&str) -> Option<&'static str>,
}

/// The name a metric family has, before the prefix and the unit.
fn family(stat: &Stat) -> (Cow<'_, str>, Option<Unit>, MetricType) {
    let key = stat.key.as_ref();
    match stat.kind {
        StatKind::Counter => (Cow::Borrowed(key), None, MetricType::Counter),
        StatKind::Gauge => (Cow::Borrowed(key), None, MetricType::Gauge),
        StatKind::Rate => (
            Cow::Owned(format!(
                "{}_per_second",
                key.strip_suffix("_per_s").unwrap_or(key)
            )),
            None,
            MetricType::Gauge,
        ),
        StatKind::Micros => (
            Cow::Borrowed(key.strip_suffix("_us").unwrap_or(key)),
            Some(Unit::Seconds),
            MetricType::Gauge,
        ),
    }
}

impl Exporter {
    /// The sample a statistics-line value is exported as: its full name
    /// and its value (`Micros` in seconds).
    pub fn sample(&self, stat: &Stat) -> (String, f64) {
        let (name, unit, _) = family(stat);
        let mut full = format!("{}_{name}", self.prefix);
        if let Some(unit) = unit {
            full.push('_');
            full.push_str(unit.as_str());
        }
        let value = match stat.kind {
            StatKind::Counter => {
                full.push_str("_total");
                stat.value as f64
            }
            StatKind::Gauge | StatKind::Rate => stat.value as f64,
            StatKind::Micros => stat.value as f64 / 1e6,
        };
        (full, value)
    }

    /// The OpenMetrics text of `published` (`# EOF` included).
    pub fn encode(&self, published: Arc<Published>) -> String {
        let mut registry = Registry::with_prefix(self.prefix);
        registry.register_collector(Box::new(SnapshotCollector {
            exporter: *self,
            published,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing into a String cannot fail");
        text
    }
}

/// The sample names of an OpenMetrics text (e.g. one
/// [`Exporter::encode`] wrote), each once, in order.
pub fn sample_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// Encodes one published snapshot (a fresh registry per scrape).
#[derive(Debug)]
struct SnapshotCollector {
    exporter: Exporter,
    published: Arc<Published>,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let version = [("version", self.exporter.version)];
        encoder
            .encode_descriptor(
                "build",
                "The daemon's version (value 1).",
                None,
                MetricType::Info,
            )?
            .encode_info(&version)?;
        for stat in &self.published.stats {
            let (name, unit, metric_type) = family(stat);
            let help = match (self.exporter.help)(&stat.key) {
                Some(help) => Cow::Borrowed(help),
                None => Cow::Owned(format!("`{}` of the statistics line.", stat.key)),
            };
            let mut metric = encoder.encode_descriptor(&name, &help, unit.as_ref(), metric_type)?;
            match stat.kind {
                StatKind::Counter => {
                    metric.encode_counter::<NoLabelSet, _, u64>(&stat.value, None)?;
                }
                StatKind::Gauge | StatKind::Rate => metric.encode_gauge(&stat.value)?,
                StatKind::Micros => metric.encode_gauge(&(stat.value as f64 / 1e6))?,
            }
        }
        for family in &self.published.histograms {
            let mut metric = encoder.encode_descriptor(
                family.name,
                family.help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for series in &family.series {
                let (buckets, count, sum) = series.rebucketed();
                metric
                    .encode_family(&series.labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// How long a scrape waits for the daemon's fresh snapshot before it is
/// served the previous one.
pub const FRESH_WAIT: Duration = Duration::from_secs(1);

/// OpenMetrics' content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {source} (is the port in use, or the address not one of this host?)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot start the metrics server: {0}")]
    Serve(String),
}

/// The metrics port, bound and not served yet.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
}

impl MetricsEndpoint {
    /// Binds `addr` (IPv4 or IPv6) in the calling thread's network
    /// namespace. Starts no thread.
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `GET /metrics` on threads of its own, until the returned
    /// server is dropped. `wake` wakes the daemon's event loop when a
    /// scrape wants a fresh snapshot (it must not block).
    pub fn serve(
        self,
        exporter: Exporter,
        wake: impl Fn() + Send + 'static,
    ) -> Result<MetricsServer, MetricsError> {
        let addr = self.local_addr().ok();
        let http = Arc::new(
            tiny_http::Server::from_listener(self.listener, None)
                .map_err(|e| MetricsError::Serve(e.to_string()))?,
        );
        let board = Arc::new(Board::default());
        let thread = {
            let (http, board) = (http.clone(), board.clone());
            std::thread::Builder::new()
                .name(format!("{}-metrics", exporter.prefix))
                .spawn(move || serve_requests(&http, &board, &exporter, &wake))
                .map_err(|e| MetricsError::Serve(e.to_string()))?
        };
        if let Some(addr) = addr {
            tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
        }
        Ok(MetricsServer {
            board,
            http,
            thread: Some(thread),
        })
    }
}

/// Where the daemon publishes its snapshots and scrapes wait for them.
#[derive(Debug, Default)]
struct Board {
    /// A scrape waits for a fresh snapshot (read by the daemon's loop at
    /// every turn: an atomic, not the lock).
    wanted: AtomicBool,
    /// The server is stopping.
    stopping: AtomicBool,
    latest: Mutex<Latest>,
    fresh: Condvar,
}

#[derive(Debug, Default)]
struct Latest {
    published: Option<Arc<Published>>,
    /// Bumped at every publication.
    generation: u64,
}

impl Board {
    /// A snapshot the daemon published after this call, or (after
    /// [`FRESH_WAIT`]) the latest one.
    fn fresh(&self, wake: &dyn Fn()) -> Option<Arc<Published>> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let seen = latest.generation;
        self.wanted.store(true, Ordering::Release);
        wake();
        let (latest, _) = self
            .fresh
            .wait_timeout_while(latest, FRESH_WAIT, |l| l.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        latest.published.clone()
    }
}

fn serve_requests(http: &tiny_http::Server, board: &Board, exporter: &Exporter, wake: &dyn Fn()) {
    loop {
        let request = match http.recv() {
            Ok(request) => request,
            Err(_) if board.stopping.load(Ordering::Acquire) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the metrics server stopped accepting connections");
                return;
            }
        };
        let path = request.url().split('?').next().unwrap_or_default();
        let method = request.method().clone();
        let response = match (&method, path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let published = board.fresh(wake).unwrap_or_default();
                text_response(200, CONTENT_TYPE, exporter.encode(published))
            }
            (tiny_http::Method::Get | tiny_http::Method::Head, "/") => text_response(
                200,
                "text/plain; charset=utf-8",
                format!("{} metrics: /metrics\n", exporter.prefix),
            ),
            (tiny_http::Method::Get | tiny_http::Method::Head, _) => text_response(
                404,
                "text/plain; charset=utf-8",
                "not found: try /metrics\n".into(),
            ),
            _ => text_response(
                405,
                "text/plain; charset=utf-8",
                "only GET and HEAD\n".into(),
            )
            .with_header(header("Allow", "GET, HEAD")),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "a metrics scrape went away");
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("constant header names and values are valid")
}

fn text_response(
    status: u16,
    content_type: &str,
    body: String,
) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
}

/// The metrics server, running. Dropping it stops it.
pub struct MetricsServer {
    board: Arc<Board>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// A scrape waits for a fresh snapshot: [`publish`](Self::publish)
    /// one. Cheap (one atomic load): call it at every turn of the loop.
    pub fn wanted(&self) -> bool {
        self.board.wanted.load(Ordering::Acquire)
    }

    /// Makes `published` what scrapes see from now on.
    pub fn publish(&self, published: Published) {
        let mut latest = self.board.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.published = Some(Arc::new(published));
        latest.generation += 1;
        self.board.wanted.store(false, Ordering::Release);
        self.board.fresh.notify_all();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.board.stopping.store(true, Ordering::Release);
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter() -> Exporter {
        Exporter {
            prefix: "demo",
            version: "1.2.3",
            help: |key| (key == "captured").then_some("Packets captured."),
        }
    }

    fn published() -> Published {
        Published {
            stats: vec![
                Stat::new("captured_per_s", 7, StatKind::Rate),
                Stat::counter("captured", 42),
                Stat::gauge("sessions", 3),
                Stat::new("response_p50_us", 1500, StatKind::Micros),
            ],
            histograms: vec![HistogramFamily {
                name: "response_time",
                help: "Response times.",
                series: vec![HistogramSeries {
                    labels: vec![("server", "target")],
                    micros: vec![(20, 1), (99, 2), (1500, 3), (20_000_000, 1)],
                }],
            }],
        }
    }

    #[test]
    fn the_line_is_key_value_pairs() {
        assert_eq!(
            stats_line(&published().stats),
            "captured_per_s=7 captured=42 sessions=3 response_p50_us=1500"
        );
    }

    #[test]
    fn each_kind_has_its_prometheus_name() {
        let e = exporter();
        let names: Vec<(String, f64)> = published().stats.iter().map(|s| e.sample(s)).collect();
        assert_eq!(
            names,
            [
                ("demo_captured_per_second".to_owned(), 7.0),
                ("demo_captured_total".to_owned(), 42.0),
                ("demo_sessions".to_owned(), 3.0),
                ("demo_response_p50_seconds".to_owned(), 0.0015),
            ]
        );
    }

    #[test]
    fn the_text_is_openmetrics_with_help_types_and_eof() {
        let text = exporter().encode(Arc::new(published()));
        for want in [
            "# HELP demo_build The daemon's version (value 1).",
            "# TYPE demo_build info",
            "demo_build_info{version=\"1.2.3\"} 1",
            "# HELP demo_captured Packets captured.",
            "# TYPE demo_captured counter",
            "demo_captured_total 42",
            "# HELP demo_sessions `sessions` of the statistics line.",
            "# TYPE demo_sessions gauge",
            "demo_sessions 3",
            "demo_captured_per_second 7",
            "# TYPE demo_response_p50_seconds gauge",
            "# UNIT demo_response_p50_seconds seconds",
            "demo_response_p50_seconds 0.0015",
            "# TYPE demo_response_time_seconds histogram",
            "demo_response_time_seconds_count{server=\"target\"} 7",
            // 20 us and 99 us are within 100 us; 1.5 ms within 2.5 ms.
            "demo_response_time_seconds_bucket{le=\"0.000025\",server=\"target\"} 1",
            "demo_response_time_seconds_bucket{le=\"0.0001\",server=\"target\"} 3",
            "demo_response_time_seconds_bucket{le=\"0.001\",server=\"target\"} 3",
            "demo_response_time_seconds_bucket{le=\"0.0025\",server=\"target\"} 6",
            "demo_response_time_seconds_bucket{le=\"10.0\",server=\"target\"} 6",
            "demo_response_time_seconds_bucket{le=\"+Inf\",server=\"target\"} 7",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "no line {want:?} in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn rebucketing_keeps_every_count_at_or_below_its_bound() {
        let series = HistogramSeries {
            labels: vec![],
            micros: vec![(25, 1), (26, 1), (100_000, 2), (u64::MAX, 1)],
        };
        let (buckets, count, sum) = series.rebucketed();
        assert_eq!(count, 5);
        assert_eq!(buckets[0], (0.000_025, 1));
        assert_eq!(buckets[1], (0.000_05, 1));
        assert_eq!(buckets[11], (0.1, 2));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!(sum > 0.2);
    }

    fn scrape(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_scrape_asks_for_a_fresh_snapshot_and_gets_it() {
        let endpoint = MetricsEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (woken_tx, woken_rx) = std::sync::mpsc::channel();
        let server = Arc::new(
            endpoint
                .serve(exporter(), move || {
                    let _ = woken_tx.send(());
                })
                .unwrap(),
        );
        // The daemon's loop: publishes when woken and asked.
        let daemon = {
            let server = server.clone();
            std::thread::spawn(move || {
                for n in 1..=2u64 {
                    woken_rx.recv().unwrap();
                    assert!(server.wanted());
                    server.publish(Published {
                        stats: vec![Stat::counter("captured", n * 10)],
                        histograms: vec![],
                    });
                    assert!(!server.wanted());
                }
            })
        };
        let first = scrape(addr, "/metrics");
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.contains("application/openmetrics-text"), "{first}");
        assert!(first.contains("\ndemo_captured_total 10\n"), "{first}");
        let second = scrape(addr, "/metrics");
        assert!(second.contains("\ndemo_captured_total 20\n"), "{second}");
        daemon.join().unwrap();
        assert!(scrape(addr, "/other").starts_with("HTTP/1.1 404"));
        // Nobody publishes any more: the previous snapshot, after the wait.
        let third = scrape(addr, "/metrics");
        assert!(third.contains("\ndemo_captured_total 20\n"), "{third}");
        // Dropping stops the server thread (joined).
        drop(Arc::into_inner(server).expect("the daemon thread is gone"));
    }
}
