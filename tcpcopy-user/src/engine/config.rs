//! What the engine is told to do: transfer rules and the options of the
//! `tcpcopy` command line that shape sessions.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use super::shaping::ClientPool;
use crate::packet::Address;

/// One `-x` rule: packets to `online` are replayed against `target`.
/// Rules name addresses of either family; an engine of one family (see
/// [`super::Engine`]) applies the rules whose target is of its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRule {
    /// Online server address, or `None` for any address of the target's
    /// family (`-x port-...`).
    pub online_addr: Option<IpAddr>,
    pub online_port: u16,
    pub target: SocketAddr,
}

impl TransferRule {
    /// Whether a packet of family `A` to `addr:port` falls under the rule.
    pub fn matches<A: Address>(&self, addr: A, port: u16) -> bool {
        port == self.online_port
            && match self.online_addr {
                Some(a) => A::from_ip(a) == Some(addr),
                None => A::from_ip(self.target.ip()).is_some(),
            }
    }
}

/// Engine configuration. `Default` gives the original tcpcopy's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: Vec<TransferRule>,
    /// `-n`: copies of every session (1 = plain replay).
    pub replicas: u16,
    /// `-f`: instance number, so instances replaying to one target pick
    /// different client ports.
    pub instance: u16,
    /// `-r`: percentage of sessions replayed (session-stable).
    pub sample_percent: u8,
    /// `-c`: client addresses the target sees instead of the real ones.
    pub client_pool: Option<ClientPool>,
    /// `-M`: largest IP packet sent to the target; bigger captured
    /// packets (GRO) are split.
    pub mtu: u16,
    /// `-D`: MSS option of the SYNs the engine fakes (IPv4; IPv6 sessions
    /// advertise 20 bytes less, for their longer IP header).
    pub fake_mss: u16,
    /// `-t`: end a session whose target sent nothing for this long while
    /// client data waits.
    pub no_response_timeout: Duration,
    /// `-k`: end an idle session after this long without traffic.
    pub keepalive_timeout: Duration,
    /// `-W`: send requests without waiting for the previous response.
    pub dont_wait: bool,
    /// `-O`: only replay sessions whose SYN was captured.
    pub only_full_sessions: bool,
    /// `-R`: client RTT assumed when the capture shows none (zero: LAN).
    pub default_rtt: Duration,
    /// `-m`: memory for sessions and buffered segments, in bytes.
    pub memory_cap: usize,
    /// Buffered bytes one session may hold.
    pub session_buffer_cap: usize,
    /// A session holding this many buffered bytes is falling behind
    /// production: its held requests are pipelined to the target instead
    /// of waiting for each response (so nothing is lost).
    pub pipeline_backlog: usize,
    /// Likewise for a session whose next request was captured this long
    /// ago: the replay lags production, so it pipelines to catch up.
    pub max_lag: Duration,
    /// Seed for sampling and port choice (same in every shard).
    pub seed: u64,
    /// Give up a handshake after this long.
    pub handshake_timeout: Duration,
    /// First SYN retransmission (doubles each time).
    pub syn_rto: Duration,
    /// Minimum retransmission timeout (doubles each time).
    pub rto: Duration,
    pub rto_max: Duration,
    /// Retransmissions of one segment before the session is given up.
    pub max_retransmits: u8,
    /// Wait this long for a capture hole to be filled.
    pub hole_timeout: Duration,
    /// Move on to the next request when the target sent nothing this long.
    pub response_timeout: Duration,
    /// Keep an ended session this long to absorb late packets.
    pub linger: Duration,
    /// New connections per session when the target closes early.
    pub max_reconnects: u8,
    /// `--compare`: compare the target's responses with production's.
    pub compare: Option<CompareSettings>,
    /// A response shorter than production's is complete only after the
    /// target has been quiet this long (`--compare bytes` needs whole
    /// exchanges; on a LAN the quiet time is otherwise zero).
    pub min_response_quiet: Duration,
}

/// What `--compare` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareSettings {
    /// How sessions to each target are compared (targets not listed are
    /// not compared).
    pub modes: Vec<(SocketAddr, crate::compare::CompareMode)>,
    pub rules: crate::compare::IgnoreRules,
    /// Bytes of each response kept and compared.
    pub cap: usize,
    /// Memory all sessions' comparisons may keep together (answers of one
    /// side waiting for the other's); beyond, a session that grows is left.
    pub memory: usize,
    /// `--compare-report DIR`: every differing exchange is written to
    /// `DIR/differences.jsonl` (by the worker; the engine collects them).
    pub report_dir: Option<std::path::PathBuf>,
    /// Production's response times are measured (the `now` of captured
    /// packets is their capture time: live mode; offline, `now` is when a
    /// packet is replayed, not when it was recorded).
    pub time_production: bool,
    /// `--compare-baseline`: every session is replayed here too (a second
    /// copy of production's build); differences it shows as well are noise.
    pub baseline: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            replicas: 1,
            instance: 0,
            sample_percent: 100,
            client_pool: None,
            mtu: 1500,
            fake_mss: 1460,
            no_response_timeout: Duration::from_secs(600),
            keepalive_timeout: Duration::from_secs(720),
            dont_wait: false,
            only_full_sessions: false,
            default_rtt: Duration::ZERO,
            memory_cap: 1024 << 20,
            session_buffer_cap: 4 << 20,
            compare: None,
            min_response_quiet: Duration::ZERO,
            pipeline_backlog: 64 << 10,
            max_lag: Duration::from_secs(5),
            seed: 0x7463_7063_6f70_7921,
            handshake_timeout: Duration::from_secs(8),
            syn_rto: Duration::from_millis(250),
            rto: Duration::from_millis(100),
            rto_max: Duration::from_secs(3),
            max_retransmits: 12,
            hole_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(3),
            linger: Duration::from_secs(6),
            max_reconnects: 16,
        }
    }
}
