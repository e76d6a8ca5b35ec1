//! tcpcopy: copies the requests real clients send to an online server and
//! replays them as live TCP sessions against a target server.
//!
//! Data flow: [`capture`] (XDP) -> [`engine`] (sessions, pure code) ->
//! [`send`] (AF_XDP or a raw packet socket). A [`worker`] owns one engine
//! shard, its [`link`]s to intercept and its sender; [`daemon`] starts and
//! stops them (with `dispatch` when several workers share one packet
//! source, `stats_line` for the statistics line, [`metrics`] for the same
//! values as Prometheus metrics and [`diagnose`] for the warnings a
//! failing replay gives), [`cli`] is the command line, and
//! [`packet`] the packet model everything shares.

pub mod capture;
pub mod cli;
pub mod clock;
pub mod compare;
#[cfg(feature = "xdp")]
pub mod daemon;
pub mod diagnose;
#[cfg(feature = "xdp")]
mod dispatch;
#[cfg(feature = "xdp")]
pub mod doctor;
pub mod engine;
pub mod link;
#[cfg(feature = "xdp")]
pub mod metrics;
pub mod offline;
pub mod packet;
pub mod send;
pub mod shard;
#[cfg(feature = "xdp")]
mod stats_line;
pub mod worker;
