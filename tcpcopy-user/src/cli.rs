//! The `tcpcopy` command line: compatible with the original tcpcopy's short
//! options where they still make sense, with long names, strict validation
//! and errors that show the expected syntax.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use clap::{Parser, ValueEnum};
use tcpcopy_common::proto::INTERCEPT_PORT;

use crate::{
    engine::{Config, TransferRule, shaping::ClientPool},
    send::{MacAddr, SendBackend},
};

const ABOUT: &str = "Copies the requests real clients send to an online server and replays them, \
as live TCP sessions, against a target server.";

const EXAMPLES: &str = "\
Examples:
  # On the online host: copy port 80 traffic arriving on eth0 to 10.0.0.2:8080, sending
  # out of eth1; the assistant host 10.0.0.3 runs intercept.
  tcpcopy -x 80-10.0.0.2:8080 -s 10.0.0.3 -i eth0 -o eth1

  # Only the online address 192.168.1.5:6379, three copies of every session, half of
  # the sessions, clients shown to the target as 10.9.0.x:
  tcpcopy -x 192.168.1.5:6379-10.0.0.2:6379 -n 3 -r 50 -c 10.9.0.x -s 10.0.0.3 -i eth0 -o eth1

  # Capture from a mirror (SPAN) port instead of the production NIC:
  tcpcopy -x 80-10.0.0.2:80 -s 10.0.0.3 -i mirror0 --capture mirror -o eth1

  # Replay a capture file (offline mode): -i names a pcap or pcapng file.
  tcpcopy -x 80-10.0.0.2:80 -s 10.0.0.3 -i traffic.pcap -o eth1
  tcpcopy -x 80-10.0.0.2:80 -s 10.0.0.3 -i traffic.pcap -o eth1 --top-speed -T 3

  # See what would be sent, without a network: a simulated target answers.
  tcpcopy -x 80-10.0.0.2:80 -i traffic.pcap --dry-run --write-pcap rewritten.pcap";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CaptureKind {
    /// On the NIC that carries production traffic: copies, never delays.
    Inline,
    /// On a port that carries a copy (SPAN/TAP/mirror): AF_XDP sockets.
    Mirror,
}

/// XDP attach mode (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpMode {
    /// Native, else generic (with a warning).
    Auto,
    /// Native only.
    Native,
    /// Generic (skb) only.
    Generic,
}

#[derive(Parser, Debug)]
#[command(name = "tcpcopy", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// What to copy where: [ONLINE_IP:]PORT-TARGET_IP:PORT[@NEXT_HOP_MAC], comma separated.
    #[arg(short = 'x', long = "transfer", value_name = "RULES", required = true)]
    pub transfer: TransferList,

    /// intercept instances: HOST[:PORT] (default port 36524), comma separated.
    #[arg(
        short = 's',
        long = "intercept",
        value_name = "LIST",
        required_unless_present = "dry_run"
    )]
    pub intercepts: Option<InterceptList>,

    /// Connections to each intercept, per worker.
    #[arg(short = 'C', long = "connections", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=11))]
    pub connections: u16,

    /// Keep running when intercepts go away (and reconnect), instead of stopping.
    #[arg(short = 'L', long = "lonely")]
    pub lonely: bool,

    /// Client addresses the target sees instead of the real ones, e.g. 10.9.0.x,10.9.1.7.
    #[arg(short = 'c', long = "client-ip", value_name = "POOL")]
    pub client_pool: Option<ClientPool>,

    /// Copies of every session (each with its own client address).
    #[arg(short = 'n', long = "replicas", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1023))]
    pub replicas: u16,

    /// Instance number: instances replaying to one target pick different client ports.
    #[arg(short = 'f', long = "instance", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1023))]
    pub instance: u16,

    /// Percentage of sessions replayed (each session wholly or not at all).
    #[arg(short = 'r', long = "rate", value_name = "PCT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub rate: u8,

    /// Largest IPv4 packet sent to the target (bigger captured packets are split).
    #[arg(short = 'M', long = "mtu", default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..=9216))]
    pub mtu: u16,

    /// MSS option of the SYNs tcpcopy fakes for sessions already in progress.
    #[arg(short = 'D', long = "mss", default_value_t = 1460, value_parser = clap::value_parser!(u16).range(88..=9176))]
    pub mss: u16,

    /// End a session when the target sends nothing for this many seconds while client data waits.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub timeout: u64,

    /// End an idle session after this many seconds [default: timeout + 120].
    #[arg(short = 'k', long = "keepalive", value_name = "SECS")]
    pub keepalive: Option<u64>,

    /// Send each request without waiting for the previous response.
    #[arg(short = 'W', long = "no-wait")]
    pub no_wait: bool,

    /// Only replay sessions whose SYN was captured.
    #[arg(short = 'O', long = "only-full")]
    pub only_full: bool,

    /// Client RTT (milliseconds) assumed when the capture shows none.
    #[arg(short = 'R', long = "rtt", value_name = "MS", default_value_t = 0)]
    pub rtt_ms: u64,

    /// Where client packets come from: a network interface, or a pcap/pcapng file (offline mode).
    #[arg(short = 'i', long = "input", value_name = "DEV|FILE", required = true)]
    pub input: String,

    /// The interface frames for the target leave from.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DEV",
        required_unless_present = "dry_run"
    )]
    pub output: Option<String>,

    /// Capture program (live mode).
    #[arg(long = "capture", value_enum, default_value_t = CaptureKind::Inline)]
    pub capture: CaptureKind,

    /// XDP attach mode of the capture program: auto (native, else generic), native, or generic
    /// (after the stack built an skb: slower, sees packets merged by GRO).
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpMode::Auto)]
    pub xdp_mode: XdpMode,

    /// Offline: play the recording N times faster (its RTTs shrink alike); 0.5 plays it at half speed.
    #[arg(short = 'a', long = "accelerate", value_name = "N", default_value_t = 1.0, value_parser = parse_speed)]
    pub accelerate: f64,

    /// Offline: cut idle gaps in the recording longer than MS milliseconds to MS.
    #[arg(short = 'I', long = "max-idle", value_name = "MS")]
    pub max_idle_ms: Option<u64>,

    /// Offline: no recorded timing; as fast as the target and the engine allow (each session still waits for its responses).
    #[arg(long = "top-speed")]
    pub top_speed: bool,

    /// Offline: replay the file N times (each time from new client ports).
    #[arg(short = 'T', long = "rounds", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub rounds: u16,

    /// Offline: when the file ends, give open sessions this long to finish, then reset them.
    #[arg(long = "finish-timeout", value_name = "SECS", default_value_t = 60)]
    pub finish_timeout: u64,

    /// Offline: send nothing; a simulated target answers (no -s or -o needed).
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// With --dry-run: write the frames that would be sent to this pcap file.
    #[arg(long = "write-pcap", value_name = "OUT", requires = "dry_run")]
    pub write_pcap: Option<PathBuf>,

    /// Mirror capture: pass frames tcpcopy does not want to the host stack instead of dropping them.
    #[arg(long = "mirror-pass-others")]
    pub mirror_pass_others: bool,

    /// How frames are sent: afxdp (AF_XDP, the datalink fast path) or raw (a packet socket).
    #[arg(long = "send", default_value = "afxdp")]
    pub send: SendBackend,

    /// Compare the target's responses with production's: `http` (status,
    /// headers, body; JSON by structure) or `bytes` (any request/response
    /// protocol, exchange by exchange), for every port or per online port
    /// (`http,6379=bytes`; `80=http` compares port 80 only). Live,
    /// production's answers are captured at the input device's egress
    /// (inline) or taken from the mirror (which must then carry both
    /// directions); offline, they are the ones recorded in the file.
    #[arg(long = "compare", value_name = "MODE", value_parser = parse_compare_mode)]
    pub compare: Option<crate::compare::CompareSpec>,

    /// With --compare: header names or JSON paths ($.meta.ts, items[*].id) to leave out (repeatable, or a comma list).
    #[arg(
        long = "compare-ignore",
        value_name = "ITEM[,ITEM]",
        value_delimiter = ',',
        requires = "compare"
    )]
    pub compare_ignore: Vec<String>,

    /// With --compare: write every differing exchange to DIR/differences.jsonl (one JSON object per line).
    #[arg(long = "compare-report", value_name = "DIR", requires = "compare")]
    pub compare_report: Option<PathBuf>,

    /// With --compare: replay every session to IP:PORT too, a second copy of production's build; differences it shows as well are counted as noise, not as different.
    #[arg(
        long = "compare-baseline",
        value_name = "IP:PORT",
        requires = "compare"
    )]
    pub compare_baseline: Option<std::net::SocketAddrV4>,

    /// With --compare: memory (MB) the comparisons of a worker may keep, answers of one side waiting for the other's (a target that falls behind production); beyond, a session that grows is left, counted compare_behind.
    #[arg(
        long = "compare-memory",
        value_name = "MB",
        default_value_t = 256,
        requires = "compare"
    )]
    pub compare_memory: usize,

    /// With --compare: bytes of each response compared (the rest is counted truncated), e.g. 64K.
    #[arg(long = "compare-cap", value_name = "BYTES", default_value = "64K", value_parser = parse_compare_cap)]
    pub compare_cap: u32,

    /// Worker threads (session shards).
    #[arg(long = "workers", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,

    /// Inline capture ring buffer size, e.g. 16M (a power of two, at least 4K).
    #[arg(long = "ring-size", value_name = "BYTES", default_value = "16M", value_parser = parse_ring_size)]
    pub ring_size: u32,

    /// With --compare, inline: the ring of production's answers (answers are larger than requests; default: twice --ring-size).
    #[arg(long = "response-ring-size", value_name = "BYTES", value_parser = parse_ring_size, requires = "compare")]
    pub response_ring_size: Option<u32>,

    /// Memory for sessions and buffered packets, in megabytes (split among the workers; with IPv4 and IPv6 rules, each family's sessions may use this much).
    #[arg(short = 'm', long = "memory", value_name = "MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1 << 20))]
    pub memory_mb: u64,

    /// Longest sleep of an idle worker, in milliseconds (tests: a long one proves the
    /// capture's wake-up ends it).
    #[arg(long = "max-sleep-ms", value_name = "MS", hide = true, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub max_sleep_ms: Option<u64>,

    /// Seconds between statistics lines.
    #[arg(long = "stats-interval", value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub stats_interval: u64,

    /// Serve the statistics as Prometheus metrics (OpenMetrics text, GET /metrics) on
    /// ADDR:PORT, e.g. 127.0.0.1:9530 or [::1]:9530. Off by default.
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Log to this file instead of stderr.
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Write the process id to this file (removed at exit).
    #[arg(short = 'P', long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
}

/// One `-x` rule with its optional next-hop MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub rule: TransferRule,
    pub next_hop_mac: Option<MacAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferList(pub Vec<Transfer>);

#[derive(Debug, thiserror::Error)]
#[error(
    "bad transfer rule {rule:?}: {why}; expected [ONLINE_IP:]PORT-TARGET_IP:PORT[@NEXT_HOP_MAC], IPv6 addresses in brackets, e.g. 80-10.0.0.2:8080, 192.168.1.5:80-10.0.0.2:80@02:00:00:00:00:01 or [2001:db8::1]:80-[2001:db8::2]:80"
)]
pub struct TransferError {
    rule: String,
    why: String,
}

/// An address of a rule: IPv4, or IPv6 in brackets (`[2001:db8::1]`).
fn parse_addr(s: &str) -> Result<IpAddr, String> {
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("{v6:?} is not an IPv6 address"));
    }
    if s.contains(':') {
        return Err(format!("{s:?}: write an IPv6 address in brackets, [{s}]"));
    }
    s.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| format!("{s:?} is not an IP address"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a port (1..=65535)")),
        Ok(p) => Ok(p),
    }
}

impl FromStr for Transfer {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| TransferError {
            rule: s.to_owned(),
            why,
        };
        let (online, target) = s
            .split_once('-')
            .ok_or_else(|| err("no '-' between online and target".into()))?;
        let (online_addr, online_port) = match online.rsplit_once(':') {
            Some((a, p)) => (
                Some(parse_addr(a).map_err(err)?),
                parse_port(p).map_err(err)?,
            ),
            None => (None, parse_port(online).map_err(err)?),
        };
        let (target, mac) = match target.split_once('@') {
            Some((t, m)) => (
                t,
                Some(m.parse::<MacAddr>().map_err(|e| err(e.to_string()))?),
            ),
            None => (target, None),
        };
        let (taddr, tport) = target
            .rsplit_once(':')
            .ok_or_else(|| err("the target needs IP:PORT".into()))?;
        let taddr = parse_addr(taddr).map_err(err)?;
        let unusable = match taddr {
            IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if unusable {
            return Err(err(format!("{taddr} cannot be a target")));
        }
        if online_addr.is_some_and(|a| a.is_ipv6() != taddr.is_ipv6()) {
            return Err(err(
                "the online and target addresses are of different IP versions (a session is \
                 replayed in the family it was captured in)"
                    .into(),
            ));
        }
        Ok(Self {
            rule: TransferRule {
                online_addr,
                online_port,
                target: SocketAddr::new(taddr, parse_port(tport).map_err(err)?),
            },
            next_hop_mac: mac,
        })
    }
}

impl FromStr for TransferList {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rules = s
            .split(',')
            .map(str::trim)
            .map(Transfer::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in rules.iter().enumerate() {
            // A rule by port alone takes its target's family: `80-IPv4`
            // and `80-[IPv6]` are two rules.
            if rules[..i].iter().any(|b| {
                b.rule.online_addr == a.rule.online_addr
                    && b.rule.online_port == a.rule.online_port
                    && b.rule.target.is_ipv6() == a.rule.target.is_ipv6()
            }) {
                return Err(TransferError {
                    rule: s.to_owned(),
                    why: "the same online endpoint twice".into(),
                });
            }
        }
        Ok(Self(rules))
    }
}

/// The `-s` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterceptList(pub Vec<(String, u16)>);

#[derive(Debug, thiserror::Error)]
#[error(
    "bad intercept list {input:?}: {why}; expected HOST[:PORT],... e.g. 10.0.0.3, 10.0.0.3:36524,10.0.0.4 or [2001:db8::3]:36524"
)]
pub struct InterceptListError {
    input: String,
    why: String,
}

impl FromStr for InterceptList {
    type Err = InterceptListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| InterceptListError {
            input: s.to_owned(),
            why,
        };
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim) {
            let (host, port) = if let Some(rest) = item.strip_prefix('[') {
                // [IPv6] or [IPv6]:PORT
                let (h, after) = rest
                    .split_once(']')
                    .ok_or_else(|| err(format!("{item:?}: no ']' after the IPv6 address")))?;
                match after.strip_prefix(':') {
                    Some(p) => (h, parse_port(p).map_err(err)?),
                    None if after.is_empty() => (h, INTERCEPT_PORT),
                    None => return Err(err(format!("{item:?}: expected [IPv6]:PORT"))),
                }
            } else if item.parse::<Ipv6Addr>().is_ok() {
                (item, INTERCEPT_PORT)
            } else {
                match item.rsplit_once(':') {
                    Some((h, p)) => (h, parse_port(p).map_err(err)?),
                    None => (item, INTERCEPT_PORT),
                }
            };
            if host.is_empty() {
                return Err(err("an empty host".into()));
            }
            out.push((host.to_owned(), port));
        }
        Ok(Self(out))
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.001..=1_000_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed factor (a number from 0.001 to 1000000, e.g. 2 or 0.5)"
        )),
    }
}

/// `--compare bytes`: the target's response to a request is whole once it
/// sent as much as production did, or has been quiet this long (more than
/// intercept's 2 ms batching).
const COMPARE_BYTES_QUIET: Duration = Duration::from_millis(5);

fn parse_compare_mode(s: &str) -> Result<crate::compare::CompareSpec, String> {
    s.parse()
}

fn parse_compare_cap(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !(1..=16 << 20).contains(&n) {
        return Err(format!("`{s}`: from 1 byte to 16M"));
    }
    Ok(n as u32)
}

/// Capture-file names offline mode recognizes even when the file is not
/// there (so the error is about the file, not a missing interface).
const CAPTURE_EXTENSIONS: [&str; 5] = ["pcap", "pcapng", "cap", "dump", "trace"];

/// `4096`, `64K`, `16M`, `1G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size like 16M"))
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let bytes = parse_size(s)?;
    if bytes < 4096 || !bytes.is_power_of_two() || bytes > 1 << 30 {
        return Err(format!(
            "{s:?}: the ring size must be a power of two from 4K to 1G"
        ));
    }
    Ok(bytes as u32)
}

impl Cli {
    /// With --compare, inline: the size of the ring of production's answers.
    pub fn response_ring(&self) -> u32 {
        self.response_ring_size
            .unwrap_or_else(|| self.ring_size.saturating_mul(2).min(1 << 30))
    }

    /// The capture file of offline mode: `-i` names an existing file, a
    /// path, or a name with a capture file's extension.
    pub fn offline_file(&self) -> Option<PathBuf> {
        let p = std::path::Path::new(&self.input);
        let named_like_one = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CAPTURE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        (p.is_file() || self.input.contains('/') || named_like_one).then(|| p.to_owned())
    }

    /// Offline mode's timing options.
    pub fn timing(&self) -> crate::offline::Timing {
        crate::offline::Timing {
            speed: self.accelerate,
            max_idle: self.max_idle_ms.map(Duration::from_millis),
            top_speed: self.top_speed,
            rounds: self.rounds,
        }
    }

    /// The intercepts (none in a dry run).
    pub fn intercept_list(&self) -> &[(String, u16)] {
        self.intercepts.as_ref().map_or(&[], |l| &l.0)
    }

    /// The longest sleep of an idle worker.
    pub fn max_sleep(&self) -> Duration {
        self.max_sleep_ms
            .map_or(crate::worker::MAX_SLEEP, Duration::from_millis)
    }

    /// The engine configuration these options describe (for one worker of
    /// `workers`: the memory cap is shared out).
    pub fn engine_config(&self) -> Config {
        let timeout = Duration::from_secs(self.timeout);
        Config {
            rules: self.transfer.0.iter().map(|t| t.rule).collect(),
            replicas: self.replicas,
            instance: self.instance,
            sample_percent: self.rate,
            client_pool: self.client_pool.clone(),
            mtu: self.mtu,
            fake_mss: self.mss,
            no_response_timeout: timeout,
            keepalive_timeout: Duration::from_secs(self.keepalive.unwrap_or(self.timeout + 120)),
            dont_wait: self.no_wait,
            only_full_sessions: self.only_full,
            default_rtt: Duration::from_millis(self.rtt_ms),
            memory_cap: (self.memory_mb << 20) as usize / usize::from(self.workers),
            compare: self
                .compare
                .as_ref()
                .map(|spec| crate::engine::config::CompareSettings {
                    modes: self
                        .transfer
                        .0
                        .iter()
                        .filter_map(|t| Some((t.rule.target, spec.mode_for(t.rule.online_port)?)))
                        .collect(),
                    // Checked in `validate`.
                    rules: self.compare_rules().unwrap_or_default(),
                    cap: self.compare_cap as usize,
                    memory: self.compare_memory.saturating_mul(1 << 20),
                    report_dir: self.compare_report.clone(),
                    time_production: self.offline_file().is_none(),
                    baseline: self.compare_baseline.map(SocketAddr::V4),
                }),
            // Bytes mode cuts the target's stream where the next request
            // goes: that must wait until the response is whole.
            min_response_quiet: if self
                .compare
                .as_ref()
                .is_some_and(crate::compare::CompareSpec::any_bytes)
            {
                COMPARE_BYTES_QUIET
            } else {
                Duration::ZERO
            },
            ..self.mode_defaults()
        }
    }

    /// Engine settings that depend on the mode: at `--top-speed` a
    /// session never pipelines its requests to catch up with production
    /// (there is no production pace to keep): it waits for every response.
    fn mode_defaults(&self) -> Config {
        let base = Config::default();
        if self.top_speed && self.offline_file().is_some() {
            Config {
                pipeline_backlog: usize::MAX,
                max_lag: Duration::from_secs(365 * 86_400),
                ..base
            }
        } else {
            base
        }
    }

    /// The defaults plus every `--compare-ignore` item.
    fn compare_rules(&self) -> Result<crate::compare::IgnoreRules, String> {
        let mut rules = crate::compare::IgnoreRules::with_defaults();
        for item in &self.compare_ignore {
            rules
                .add(item)
                .map_err(|e| format!("--compare-ignore: {e}"))?;
        }
        Ok(rules)
    }

    /// Checks what clap cannot: options that contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(pool) = &self.client_pool {
            for (v6, family, covered) in [
                (false, "IPv4", pool.covers::<[u8; 4]>()),
                (true, "IPv6", pool.covers::<[u8; 16]>()),
            ] {
                if !covered
                    && self
                        .transfer
                        .0
                        .iter()
                        .any(|t| t.rule.target.is_ipv6() == v6)
                {
                    return Err(format!(
                        "-c has no {family} address, but a -x rule has an {family} target: \
                         add one (e.g. -c 10.9.0.x,2001:db8:9::x)"
                    ));
                }
            }
        }
        let offline = self.offline_file().is_some();
        if !offline {
            let used: Vec<&str> = [
                (self.accelerate != 1.0, "-a"),
                (self.max_idle_ms.is_some(), "-I"),
                (self.top_speed, "--top-speed"),
                (self.rounds != 1, "-T"),
                (self.dry_run, "--dry-run"),
            ]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect();
            if !used.is_empty() {
                return Err(format!(
                    "{} replay a capture file: -i {:?} is not one (give a pcap or pcapng file)",
                    used.join(", "),
                    self.input
                ));
            }
        }
        if self.top_speed && (self.accelerate != 1.0 || self.max_idle_ms.is_some()) {
            return Err(
                "--top-speed ignores the recorded times: -a and -I have nothing to act on".into(),
            );
        }
        if let (Some(out), Some(input)) = (&self.write_pcap, self.offline_file()) {
            let same = match (std::fs::canonicalize(out), std::fs::canonicalize(&input)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if same {
                return Err(format!(
                    "--write-pcap {}: that is the capture being replayed (it would be overwritten)",
                    out.display()
                ));
            }
        }
        if self.dry_run && self.workers > 1 {
            return Err("--dry-run runs one worker (--workers 1)".into());
        }
        if self.compare.is_some() {
            if self.dry_run {
                return Err(
                    "--compare needs the real target's responses: not with --dry-run".into(),
                );
            }
            self.compare_rules()?;
        }
        if let Some(b) = self.compare_baseline {
            if u32::from(self.rounds) * u32::from(self.replicas)
                >= u32::from(crate::engine::BASELINE_COPY)
            {
                return Err(format!(
                    "--compare-baseline: -T {} with -n {} is too many copies (at most {} with a \
                     baseline)",
                    self.rounds,
                    self.replicas,
                    crate::engine::BASELINE_COPY - 1
                ));
            }
            if self
                .transfer
                .0
                .iter()
                .any(|t| t.rule.target == SocketAddr::V4(b))
            {
                return Err(format!(
                    "--compare-baseline {b} is a -x target: the baseline must be another copy \
                     of production's build"
                ));
            }
        }
        if u32::from(self.rounds) * u32::from(self.replicas) > u32::from(u16::MAX) {
            return Err(format!(
                "-T {} with -n {}: at most 65535 copies of a session in all",
                self.rounds, self.replicas
            ));
        }
        if let Some(pool) = &self.client_pool {
            let targets: Vec<IpAddr> = self.transfer.0.iter().map(|t| t.rule.target.ip()).collect();
            if pool
                .map([0, 0, 0, 1], 0, |a: [u8; 4]| targets.contains(&a.into()))
                .is_none()
            {
                return Err("-c: every client address in the pool is a target address".into());
            }
        }
        let macs: Vec<MacAddr> = self
            .transfer
            .0
            .iter()
            .filter_map(|t| t.next_hop_mac)
            .collect();
        if macs.windows(2).any(|w| w[0] != w[1]) {
            return Err("-x: one next-hop MAC for every rule (frames all leave through -o)".into());
        }
        if self.mss > self.mtu - 40 {
            return Err(format!(
                "-D {}: the MSS cannot exceed the MTU ({}) minus 40",
                self.mss, self.mtu
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tcpcopy").chain(args.split_whitespace()))
    }

    #[test]
    fn transfer_rules_in_every_form() {
        let t: TransferList =
            "80-198.18.2.2:8080, 198.18.1.1:6379-198.18.2.2:6380@02:aa:bb:cc:dd:ee"
                .parse()
                .unwrap();
        assert_eq!(t.0[0].rule.online_addr, None);
        assert_eq!(t.0[0].rule.online_port, 80);
        assert_eq!(t.0[0].rule.target, "198.18.2.2:8080".parse().unwrap());
        assert_eq!(t.0[0].next_hop_mac, None);
        assert_eq!(t.0[1].rule.online_addr, Some([198, 18, 1, 1].into()));
        assert_eq!(
            t.0[1].next_hop_mac,
            Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]))
        );
    }

    #[test]
    fn ipv6_rules_take_addresses_in_brackets_and_dual_stack_ports() {
        let t: TransferList = "[2001:db8:1::1]:80-[2001:db8:2::2]:8080@02:aa:bb:cc:dd:ee, \
                               6379-[2001:db8:2::2]:6379, 6379-198.18.2.2:6379"
            .parse()
            .unwrap();
        assert_eq!(
            t.0[0].rule.online_addr,
            Some("2001:db8:1::1".parse().unwrap())
        );
        assert_eq!(t.0[0].rule.target, "[2001:db8:2::2]:8080".parse().unwrap());
        assert!(t.0[0].next_hop_mac.is_some());
        // The same port alone for each family: two rules.
        assert_eq!(t.0[1].rule.online_addr, None);
        assert!(t.0[1].rule.target.is_ipv6());
        assert!(t.0[2].rule.target.is_ipv4());
        for (bad, why) in [
            ("2001:db8::1:80-[2001:db8::2]:80", "in brackets"),
            ("80-2001:db8::2:80", "in brackets"),
            ("80-[2001:db8::zz]:80", "not an IPv6 address"),
            ("80-[::]:80", "cannot be a target"),
            ("80-[ff02::1]:80", "cannot be a target"),
            ("198.18.1.1:80-[2001:db8::2]:80", "different IP versions"),
            ("[2001:db8::1]:80-198.18.2.2:80", "different IP versions"),
            (
                "80-[2001:db8::2]:80,80-[2001:db8::3]:80",
                "the same online endpoint twice",
            ),
        ] {
            let e = bad.parse::<TransferList>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("in brackets"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_transfer_rules_show_the_syntax() {
        for bad in [
            "80",
            "80-198.18.2.2",
            "0-198.18.2.2:80",
            "80-198.18.2.2:0",
            "80-198.18.2.2:70000",
            "x:80-198.18.2.2:80",
            "80-198.18.2.300:80",
            "80-0.0.0.0:80",
            "80-198.18.2.2:80@02:00:00",
            "80-198.18.2.2:80,80-198.18.2.3:80",
        ] {
            let e = bad.parse::<TransferList>().unwrap_err().to_string();
            assert!(
                e.contains("expected [ONLINE_IP:]PORT-TARGET_IP:PORT"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn intercept_lists_take_ipv6_addresses() {
        let l: InterceptList = "2001:db8::3, [2001:db8::4]:9999, [2001:db8::5]"
            .parse()
            .unwrap();
        assert_eq!(
            l.0,
            [
                ("2001:db8::3".to_owned(), INTERCEPT_PORT),
                ("2001:db8::4".to_owned(), 9999),
                ("2001:db8::5".to_owned(), INTERCEPT_PORT),
            ]
        );
        for bad in ["[2001:db8::4", "[2001:db8::4]9", "[2001:db8::4]:0"] {
            assert!(bad.parse::<InterceptList>().is_err(), "{bad}");
        }
    }

    #[test]
    fn intercept_lists_take_a_default_port() {
        let l: InterceptList = "198.18.2.3, 198.18.2.4:9999".parse().unwrap();
        assert_eq!(
            l.0,
            vec![("198.18.2.3".into(), 36524), ("198.18.2.4".into(), 9999)]
        );
        assert!("198.18.2.3:".parse::<InterceptList>().is_err());
        assert!(
            ":80"
                .parse::<InterceptList>()
                .unwrap_err()
                .to_string()
                .contains("expected HOST[:PORT]")
        );
    }

    #[test]
    fn original_short_options_map_to_the_engine() {
        let cli = parse("-x 80-198.18.2.2:8080 -s 198.18.2.3 -i eth0 -o eth1 -n 3 -f 2 -r 50 -M 1400 -D 1300 -t 60 -W -O -c 198.19.0.x -m 64 -R 5").unwrap();
        cli.validate().unwrap();
        let c = cli.engine_config();
        assert_eq!(
            (c.replicas, c.instance, c.sample_percent, c.mtu, c.fake_mss),
            (3, 2, 50, 1400, 1300)
        );
        assert_eq!(c.no_response_timeout, Duration::from_secs(60));
        assert_eq!(
            c.keepalive_timeout,
            Duration::from_secs(180),
            "-k defaults to -t + 120"
        );
        assert!(c.dont_wait && c.only_full_sessions);
        assert_eq!(c.memory_cap, 64 << 20);
        assert_eq!(c.default_rtt, Duration::from_millis(5));
        assert!(c.client_pool.is_some());
    }

    #[test]
    fn out_of_range_and_contradicting_options_are_refused() {
        let base = "-x 80-198.18.2.2:8080 -s 198.18.2.3 -i eth0 -o eth1";
        for extra in [
            "-n 0",
            "-n 1024",
            "-r 0",
            "-r 101",
            "-f 1024",
            "-M 100",
            "--ring-size 3000",
            "--ring-size 5M",
            "-C 12",
            "--workers 0",
        ] {
            assert!(parse(&format!("{base} {extra}")).is_err(), "{extra}");
        }
        assert!(
            parse("-s 198.18.2.3 -i eth0 -o eth1").is_err(),
            "-x is required"
        );
        let cli = parse(&format!("{base} -M 1000 -D 1400")).unwrap();
        assert!(cli.validate().unwrap_err().contains("MSS"));
        let cli = parse(&format!("{base} -c 198.18.2.2")).unwrap();
        assert!(cli.validate().unwrap_err().contains("target"));
        // A pool needs an address of every rule's family.
        let v6 = "-x 80-[2001:db8:2::2]:80 -s 198.18.2.3 -i eth0 -o eth1";
        let cli = parse(&format!("{v6} -c 198.18.9.x")).unwrap();
        assert!(
            cli.validate()
                .unwrap_err()
                .contains("-c has no IPv6 address")
        );
        parse(&format!("{v6} -c 198.18.9.x,2001:db8:9::x"))
            .unwrap()
            .validate()
            .unwrap();
        let cli = parse(&format!("{base} -c 2001:db8:9::x")).unwrap();
        assert!(
            cli.validate()
                .unwrap_err()
                .contains("-c has no IPv4 address")
        );
        assert_eq!(
            parse(&format!("{base} --ring-size 64M")).unwrap().ring_size,
            64 << 20
        );
        let compare = parse(&format!("{base} --ring-size 64M --compare http")).unwrap();
        assert_eq!(compare.response_ring(), 128 << 20, "twice the capture ring");
        let set = format!("{base} --compare http --response-ring-size 8M");
        assert_eq!(parse(&set).unwrap().response_ring(), 8 << 20);
        assert!(
            parse(&format!("{base} --response-ring-size 8M")).is_err(),
            "needs --compare"
        );
    }

    #[test]
    fn compare_modes_with_checked_ignore_items_live_or_offline() {
        let file = std::env::temp_dir().join(format!("cmp-{}.pcap", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let f = file.display();
        let base = format!("-x 80-198.18.2.2:80 -s 198.18.2.3 -i {f} -o eth1");
        let cli = parse(&format!(
            "{base} --compare http --compare-ignore X-Request-Id,$.meta.ts --compare-cap 4K"
        ))
        .unwrap();
        cli.validate().unwrap();
        let settings = cli.engine_config().compare.expect("compare settings");
        assert_eq!(settings.cap, 4096);
        assert!(settings.rules.headers.contains(&"x-request-id".to_owned()));
        assert!(
            settings.rules.headers.contains(&"date".to_owned()),
            "defaults kept"
        );
        assert_eq!(settings.rules.json_paths.len(), 1);
        assert!(parse(&format!("{base} --compare bytes")).is_ok());
        let two = format!(
            "-x 80-198.18.2.2:80,6379-198.18.2.2:6379 -s 198.18.2.3 -i {f} -o eth1 \
             --compare http,6379=bytes"
        );
        let config = parse(&two).unwrap().engine_config();
        use crate::compare::CompareMode;
        assert_eq!(
            config.compare.unwrap().modes,
            vec![
                ("198.18.2.2:80".parse().unwrap(), CompareMode::Http),
                ("198.18.2.2:6379".parse().unwrap(), CompareMode::Bytes)
            ]
        );
        assert!(!config.min_response_quiet.is_zero(), "bytes mode for 6379");
        assert!(parse(&format!("{base} --compare xml")).is_err());
        assert!(
            parse(&format!("{base} --compare-report /tmp/r")).is_err(),
            "needs --compare"
        );
        assert!(
            parse(&format!("{base} --compare-ignore x")).is_err(),
            "needs --compare"
        );
        let bad = |extra: &str| {
            parse(&format!("{base} --compare http {extra}"))
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert!(bad("--dry-run").contains("--dry-run"));
        assert!(bad("--compare-baseline 198.18.2.2:80").contains("-x target"));
        let with = parse(&format!(
            "{base} --compare http --compare-baseline 198.18.2.2:8080"
        ))
        .unwrap();
        with.validate().unwrap();
        assert_eq!(
            with.engine_config().compare.unwrap().baseline,
            Some("198.18.2.2:8080".parse().unwrap())
        );
        assert!(
            parse(&format!("{base} --compare-baseline 198.18.2.2:8080")).is_err(),
            "needs --compare"
        );
        assert!(bad("--compare-ignore a,b/c").contains("--compare-ignore"));
        for ok in ["--workers 2", ""] {
            parse(&format!("{base} --compare http {ok}"))
                .unwrap()
                .validate()
                .unwrap();
        }
        parse("-x 80-198.18.2.2:80 -s 198.18.2.3 -i eth0 -o eth1 --compare http --workers 2")
            .unwrap()
            .validate()
            .expect("live, with several workers");
        std::fs::remove_file(&file).unwrap();
    }
}
