//! The `intercept` command line: clap derive, strict validation, and the
//! conversion into a [`DaemonConfig`].
//!
//! Every value is checked when parsed; an error names the flag and shows the
//! syntax it expects. Short flags follow TCPCopy's intercept (`-i -F -p -b
//! -l -d -P`).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::Parser;
use tcpcopy_common::proto::INTERCEPT_PORT;
use tcpcopy_runtime::xdp::XdpModePolicy;

use crate::{
    access::Cidr,
    daemon::{DaemonConfig, ReplyPath},
    route::RouterLimits,
    targets::{Target, parse_filter, parse_target},
};

const EXAMPLES: &str = "\
Examples:
  On the target host itself (no assistant, no route): drop and report the
  replies of the local web server on port 80 to the replayed clients
  (tcpcopy -c 198.18.9.x) as they leave eth0:

    intercept --egress eth0 --target 0.0.0.0:80 --clients 198.18.9.0/24

  The same when tcpcopy keeps the real client addresses: only the client
  addresses tcpcopy announces are claimed (a session's first SYN-ACK may
  beat its announcement and leave; counted, see the README):

    intercept --egress eth0 --target 0.0.0.0:80 --clients announced

  On the assistant host, drop and report the replies of a web server on
  198.18.2.2:80 arriving on eth0, for the tcpcopy instances on 198.18.2.0/24:

    intercept -i eth0 -F 'tcp and src port 80 and src host 198.18.2.2' --allow 198.18.2.0/24

  The same with --target, for two servers, as a daemon with a log and pid file:

    intercept -i eth0,eth1 --target 198.18.2.2:80,198.18.2.5:6379 -d -l /var/log/intercept.log -P /run/intercept.pid

  Any address, one port (0.0.0.0 matches every IPv4 target address):

    intercept -i eth0 --target 0.0.0.0:8080

  IPv6 targets (addresses in brackets; [::] matches every IPv6 address), with
  an IPv4 one beside them; on the target itself, IPv6 client ranges too:

    intercept -i eth0 --target [2001:db8:2::2]:80,[::]:6379,198.18.2.2:80
    intercept --egress eth0 --target [::]:80 --clients 2001:db8:9::/64,198.18.9.0/24

Filters (-F) accept the forms TCPCopy users pass to intercept:
    tcp and src port PORT
    tcp and src port PORT and src host IP
    src host IP and src port PORT
A port alone means any IPv4 address (as TCPCopy 1.x); IP may be an IPv6
address, and `ip6 and tcp and src port PORT` means any IPv6 address.
Anything else is refused; use --target IP:PORT for more targets.

IPv6 replies are reported only to a tcpcopy that announces its IPv6
sessions (a protocol extension); a TCPCopy 1.x peer never sees them.

With -i (an assistant host), the target server needs a route that sends
replies for the client addresses to this host, and this host must not
forward them (net.ipv4.ip_forward=0; net.ipv6.conf.all.forwarding=0 for
IPv6). With --egress (on the target) no
route is needed. intercept stops cleanly on SIGINT/SIGTERM and detaches
its program.";

/// intercept: drops the target server's replies on the assistant host (the
/// real clients never see them) and reports their TCP/IP headers to the
/// tcpcopy instance that owns each session.
#[derive(Debug, Parser)]
#[command(name = "intercept", version, after_help = EXAMPLES)]
#[command(group = clap::ArgGroup::new("target_table").required(true).multiple(true).args(["filter", "targets"]))]
#[command(group = clap::ArgGroup::new("reply_path").required(true).args(["interfaces", "egress"]))]
pub struct Cli {
    /// On an assistant host: interfaces where the target's replies arrive
    /// (XDP attaches to each; native mode, generic as a fallback).
    #[arg(short = 'i', long = "interface", value_name = "DEV[,DEV]", value_delimiter = ',', value_parser = parse_interface)]
    pub interfaces: Vec<String>,

    /// On the target host itself: interfaces whose outgoing replies to the
    /// replayed clients are dropped (a TC egress program; needs --clients).
    #[arg(long = "egress", value_name = "DEV[,DEV]", value_delimiter = ',', value_parser = parse_egress_interface, requires = "clients", conflicts_with = "xdp_mode")]
    pub egress: Vec<String>,

    /// With --egress: the replayed clients, as networks of either family
    /// (e.g. tcpcopy's -c pool 198.18.9.0/24, or 2001:db8:9::/64) and/or
    /// `announced` (only the client addresses tcpcopy announces; always
    /// matched as well).
    #[arg(long = "clients", value_name = "CIDR[,CIDR]|announced", value_delimiter = ',', conflicts_with = "interfaces", value_parser = parse_clients)]
    pub clients: Vec<ClientRule>,

    /// A pcap-style filter naming one target, e.g. 'tcp and src port 80 and src host 198.18.2.2'
    /// (an IPv6 host, or `ip6 and` for a port on any IPv6 address).
    #[arg(short = 'F', long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    pub filter: Option<Target>,

    /// Target servers whose replies are intercepted (repeatable, or a comma
    /// list): 198.18.2.2:80, [2001:db8:2::2]:80; 0.0.0.0:PORT or [::]:PORT
    /// for any address of that family.
    #[arg(long = "target", value_name = "IP:PORT[,IP:PORT]", value_delimiter = ',', value_parser = parse_target)]
    pub targets: Vec<Target>,

    /// TCP port tcpcopy connects to.
    #[arg(short = 'p', long = "port", value_name = "PORT", default_value_t = INTERCEPT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Address to listen on for tcpcopy (`::` listens on every IPv6 and
    /// IPv4 address).
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "IP",
        default_value = "0.0.0.0"
    )]
    pub bind: IpAddr,

    /// Only these networks may connect as tcpcopy (default: anyone), e.g. 198.18.2.0/24.
    #[arg(long = "allow", value_name = "CIDR[,CIDR]", value_delimiter = ',')]
    pub allow: Vec<Cidr>,

    /// Write the log to FILE (appending) instead of stderr.
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Run in the background (give -l too, or the log is lost).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Write the process id to FILE; removed at exit.
    #[arg(short = 'P', long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Seconds between statistics lines in the log (0: only at exit).
    #[arg(long = "stats-interval", value_name = "SECS", default_value_t = 30)]
    pub stats_interval: u64,

    /// Serve the statistics as Prometheus metrics (OpenMetrics text, GET /metrics) on
    /// ADDR:PORT, e.g. 127.0.0.1:9531 or [::1]:9531. Off by default.
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Seconds a new tcpcopy connection has to send its hello before it is closed.
    #[arg(long = "hello-timeout", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hello_timeout_secs: u64,

    /// Milliseconds a reply that came before its CLIENT_ADD waits for it.
    #[arg(long = "park-timeout", value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub park_timeout_ms: u64,

    /// Seconds a route lives after its last use.
    #[arg(long = "route-idle", value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub route_idle_secs: u64,

    /// Most routes (sessions) held at once.
    #[arg(long = "max-routes", value_name = "N", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(2..=(1 << 26)))]
    pub max_routes: u64,

    /// Ring buffer between XDP and intercept: a power of two, at least 4K (e.g. 4M, 64M).
    #[arg(long = "ring-size", value_name = "BYTES", default_value = "4M", value_parser = parse_ring_size)]
    pub ring_bytes: u32,

    /// XDP attach mode (with -i): auto (native, else generic), native, or generic.
    #[arg(long = "xdp-mode", value_name = "MODE")]
    pub xdp_mode: Option<XdpModePolicy>,

    /// Most reply payload bytes per reply sent to a tcpcopy that asks for
    /// them (response comparison; 0: never).
    #[arg(long = "max-payload", value_name = "BYTES", default_value = "64K", value_parser = parse_max_payload)]
    pub max_payload: u32,

    /// Most unsent bytes per tcpcopy connection before its records are dropped (e.g. 2M).
    #[arg(long = "peer-buffer", value_name = "BYTES", default_value = "2M", value_parser = parse_peer_buffer)]
    pub peer_buffer: u32,
}

impl Cli {
    /// The targets of `-F` and `--target`, in that order, without repeats.
    pub fn all_targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for t in self.filter.iter().chain(&self.targets) {
            if !out.contains(t) {
                out.push(*t);
            }
        }
        out
    }

    /// The daemon's configuration.
    /// Where the replies are caught, as the flags say.
    pub fn reply_path(&self) -> ReplyPath {
        if self.egress.is_empty() {
            ReplyPath::Assistant {
                xdp_mode: self.xdp_mode.unwrap_or_default(),
            }
        } else {
            ReplyPath::Egress {
                clients: self
                    .clients
                    .iter()
                    .filter_map(|c| match c {
                        ClientRule::Net(net) => Some(*net),
                        ClientRule::Announced => None,
                    })
                    .collect(),
            }
        }
    }

    pub fn daemon_config(&self) -> DaemonConfig {
        let mut interfaces: Vec<String> = Vec::new();
        for i in self.interfaces.iter().chain(&self.egress) {
            if !interfaces.contains(i) {
                interfaces.push(i.clone());
            }
        }
        DaemonConfig {
            interfaces,
            path: self.reply_path(),
            targets: self.all_targets(),
            listen: SocketAddr::new(self.bind, self.port),
            allow: self.allow.clone(),
            ring_bytes: self.ring_bytes,
            peer_buffer: self.peer_buffer as usize,
            stats_interval: (self.stats_interval > 0)
                .then(|| Duration::from_secs(self.stats_interval)),
            hello_timeout: Duration::from_secs(self.hello_timeout_secs),
            max_payload: self.max_payload,
            metrics: self.metrics,
            limits: RouterLimits {
                route_idle: Duration::from_secs(self.route_idle_secs),
                max_routes: self.max_routes as usize,
                park_timeout: Duration::from_millis(self.park_timeout_ms),
                ..RouterLimits::default()
            },
        }
    }
}

fn parse_max_payload(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    if v > u64::from(tcpcopy_common::proto::MAX_RECORD_PAYLOAD) + 1 {
        return Err(format!("`{s}`: at most 64K (an IPv4 packet's payload)"));
    }
    Ok((v as u32).min(tcpcopy_common::proto::MAX_RECORD_PAYLOAD))
}

/// One item of `--clients`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRule {
    /// Replies to any address of this network.
    Net(Cidr),
    /// Replies to the client addresses tcpcopy announces (always on with
    /// --egress; naming it alone means: no ranges).
    Announced,
}

fn parse_clients(s: &str) -> Result<ClientRule, String> {
    if s.trim() == "announced" {
        return Ok(ClientRule::Announced);
    }
    s.parse()
        .map(ClientRule::Net)
        .map_err(|e: crate::access::CidrError| {
            format!("{e}, or `announced` (only the client addresses tcpcopy announces)")
        })
}

/// An interface for --egress: never loopback, whose traffic is the target
/// talking to itself.
fn parse_egress_interface(s: &str) -> Result<String, String> {
    let name = parse_interface(s)?;
    if name == "lo" {
        return Err(
            "`lo` carries the target's traffic with itself, never a reply to a client: \
             give the interface toward the LAN (e.g. eth0)"
                .to_owned(),
        );
    }
    Ok(name)
}

fn parse_interface(s: &str) -> Result<String, String> {
    let valid =
        !s.is_empty() && s.len() < 16 && !s.contains(['/', ' ', ':']) && s != "." && s != "..";
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not an interface name: expected e.g. eth0 (1 to 15 characters, no '/', ':' or spaces)"
        ))
    }
}

/// `4096`, `64K`, `4M`, `1G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("`{s}` is not a size: expected BYTES, or a number with K, M or G (e.g. 4M)");
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(4096..=1 << 30).contains(&n) {
        return Err(format!(
            "ring size {n} bytes: must be a power of two from 4K to 1G (e.g. 4M)"
        ));
    }
    Ok(n as u32)
}

fn parse_peer_buffer(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !(64 << 10..=1 << 30).contains(&n) {
        return Err(format!("peer buffer {n} bytes: must be from 64K to 1G"));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, error::ErrorKind};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("intercept").chain(args.iter().copied()))
    }

    fn error(args: &[&str]) -> String {
        parse(args)
            .expect_err(&format!("{args:?} must fail"))
            .to_string()
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_tcpcopy() {
        let cli = parse(&["-i", "eth0", "-F", "tcp and src port 80"]).unwrap();
        let cfg = cli.daemon_config();
        assert_eq!(cfg.listen, "0.0.0.0:36524".parse().unwrap());
        assert_eq!(cfg.interfaces, ["eth0"]);
        assert_eq!(cfg.targets, [Target::any_ipv4(80)]);
        assert!(cfg.allow.is_empty());
        assert_eq!(cfg.stats_interval, Some(Duration::from_secs(30)));
        assert_eq!(cfg.limits.park_timeout, Duration::from_secs(2));
        assert_eq!(cfg.hello_timeout, Duration::from_secs(10));
        assert_eq!(cfg.ring_bytes, 4 << 20);
        assert!(!cli.daemon && cli.log.is_none() && cli.pid_file.is_none());
    }

    #[test]
    fn every_option_parses() {
        let cli = parse(&[
            "-i",
            "eth0,eth1",
            "-i",
            "eth0",
            "-F",
            "src host 198.18.2.2 and src port 80",
            "--target",
            "198.18.2.5:6379,0.0.0.0:8080",
            "--target",
            "198.18.2.2:80",
            "-p",
            "4000",
            "-b",
            "198.18.2.3",
            "--allow",
            "198.18.2.0/24,198.19.0.1",
            "-l",
            "/tmp/i.log",
            "-d",
            "-P",
            "/tmp/i.pid",
            "--stats-interval",
            "0",
            "--park-timeout",
            "500",
            "--hello-timeout",
            "3",
            "--route-idle",
            "60",
            "--max-routes",
            "1000",
            "--ring-size",
            "64M",
            "--peer-buffer",
            "512K",
        ])
        .unwrap();
        let cfg = cli.daemon_config();
        assert_eq!(cfg.interfaces, ["eth0", "eth1"], "repeats removed");
        let targets: Vec<String> = cfg.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(targets, ["198.18.2.2:80", "198.18.2.5:6379", "*:8080"]);
        let ipv6 = parse(&[
            "-i",
            "eth0",
            "-F",
            "ip6 and tcp and src port 443",
            "--target",
            "[2001:db8:2::2]:80,[::]:6379,198.18.2.2:80",
        ])
        .unwrap()
        .daemon_config();
        let targets: Vec<String> = ipv6.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            targets,
            ["[*]:443", "[2001:db8:2::2]:80", "[*]:6379", "198.18.2.2:80"]
        );
        assert_eq!(cfg.listen, "198.18.2.3:4000".parse().unwrap());
        assert_eq!(cfg.allow.len(), 2);
        assert_eq!(cfg.stats_interval, None);
        assert_eq!(cfg.limits.park_timeout, Duration::from_millis(500));
        assert_eq!(cfg.hello_timeout, Duration::from_secs(3));
        assert_eq!(cfg.limits.route_idle, Duration::from_secs(60));
        assert_eq!(cfg.limits.max_routes, 1000);
        assert_eq!(cfg.ring_bytes, 64 << 20);
        assert_eq!(cfg.peer_buffer, 512 << 10);
        assert!(cli.daemon);
    }

    #[test]
    fn a_target_is_required() {
        let err = parse(&["-i", "eth0"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--filter"), "{err}");
        assert!(error(&["-F", "tcp and src port 80"]).contains("--interface"));
        assert!(error(&["-F", "tcp and src port 80"]).contains("--egress"));
    }

    #[test]
    fn egress_on_the_target_takes_client_ranges_or_announced_clients() {
        let cli = parse(&[
            "--egress",
            "eth0,eth1",
            "--target",
            "0.0.0.0:80",
            "--clients",
            "198.18.9.0/24,announced,10.1.0.0/16",
        ])
        .unwrap();
        let config = cli.daemon_config();
        assert_eq!(config.interfaces, ["eth0", "eth1"]);
        assert_eq!(
            config.path,
            ReplyPath::Egress {
                clients: vec![
                    "198.18.9.0/24".parse().unwrap(),
                    "10.1.0.0/16".parse().unwrap()
                ]
            }
        );
        let ipv6 = parse(&[
            "--egress",
            "eth0",
            "--target",
            "[::]:80",
            "--clients",
            "2001:db8:9::/64,198.18.9.0/24",
        ])
        .unwrap();
        let ReplyPath::Egress { clients } = ipv6.reply_path() else {
            panic!("egress");
        };
        assert_eq!(
            clients.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["2001:db8:9::/64", "198.18.9.0/24"]
        );
        let only_announced = parse(&[
            "--egress",
            "eth0",
            "--target",
            "0.0.0.0:80",
            "--clients",
            "announced",
        ]);
        assert_eq!(
            only_announced.unwrap().reply_path(),
            ReplyPath::Egress { clients: vec![] }
        );
        // The assistant path keeps its XDP mode, auto by default.
        let assistant = parse(&["-i", "eth0", "--target", "0.0.0.0:80"]).unwrap();
        assert_eq!(
            assistant.reply_path(),
            ReplyPath::Assistant {
                xdp_mode: XdpModePolicy::Auto
            }
        );
    }

    #[test]
    fn egress_mistakes_are_refused_with_the_reason() {
        let t = ["--target", "0.0.0.0:80"];
        let with = |extra: &[&str]| {
            let mut argv = t.to_vec();
            argv.extend_from_slice(extra);
            error(&argv)
        };
        assert!(
            with(&["--egress", "eth0"]).contains("--clients"),
            "clients required"
        );
        assert!(
            with(&["--egress", "lo", "--clients", "announced"]).contains("loopback")
                || with(&["--egress", "lo", "--clients", "announced"]).contains("itself")
        );
        assert!(with(&["--egress", "eth0", "--clients", "198.18.9/24"]).contains("announced"));
        assert!(with(&["-i", "eth0", "--clients", "198.18.9.0/24"]).contains("--interface"));
        assert!(
            with(&[
                "--egress",
                "eth0",
                "--clients",
                "announced",
                "--xdp-mode",
                "native"
            ])
            .contains("--xdp-mode")
        );
        assert!(
            with(&["--egress", "eth0", "-i", "eth1", "--clients", "announced"])
                .contains("--egress")
        );
    }

    #[test]
    fn bad_values_show_the_expected_syntax() {
        let cases: [(&[&str], &str); 11] = [
            (
                &["-i", "eth0", "-F", "tcp and dst port 80"],
                "tcp and src port PORT",
            ),
            (
                &["-i", "eth0", "--target", "198.18.2.2"],
                "expected IP:PORT",
            ),
            (&["-i", "eth0", "--target", "198.18.2.2:0"], "1..=65535"),
            (
                &["-i", "eth0/x", "--target", "198.18.2.2:80"],
                "not an interface name",
            ),
            (
                &["-i", "", "--target", "198.18.2.2:80"],
                "not an interface name",
            ),
            (
                &["-i", "eth0", "--target", "198.18.2.2:80", "--allow", "lan"],
                "ADDR/LEN",
            ),
            (
                &["-i", "eth0", "--target", "198.18.2.2:80", "-p", "0"],
                "-p",
            ),
            (
                &["-i", "eth0", "--target", "198.18.2.2:80", "-b", "any"],
                "-b",
            ),
            (
                &[
                    "-i",
                    "eth0",
                    "--target",
                    "198.18.2.2:80",
                    "--ring-size",
                    "3M",
                ],
                "power of two",
            ),
            (
                &[
                    "-i",
                    "eth0",
                    "--target",
                    "198.18.2.2:80",
                    "--ring-size",
                    "4X",
                ],
                "K, M or G",
            ),
            (
                &[
                    "-i",
                    "eth0",
                    "--target",
                    "198.18.2.2:80",
                    "--peer-buffer",
                    "1K",
                ],
                "64K",
            ),
        ];
        for (args, expected) in cases {
            let msg = error(args);
            assert!(msg.contains(expected), "{args:?}: {msg}");
        }
    }

    #[test]
    fn help_explains_by_example() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "intercept -i eth0 -F 'tcp and src port 80 and src host 198.18.2.2'",
            "--target 198.18.2.2:80",
            "tcp and src port PORT and src host IP",
            "ip_forward=0",
            "36524",
            "--target [2001:db8:2::2]:80",
            "ip6 and tcp and src port PORT",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
