//! intercept: runs on the assistant host. Drops the target server's replies
//! (the real clients must never see them) and reports their headers to the
//! tcpcopy instance that owns each session, over TCPCopy 1.x's protocol.
//! IPv6 replies are reported too, through the protocol's IPv6 extension,
//! to the tcpcopy that announced their session with an IPv6 announcement
//! (a 1.x tcpcopy never sees them).
//!
//! Data flow, one module per stage:
//! - [`capture`]: the XDP program drops replies from the [`targets`] and
//!   reports header records through a ring buffer;
//! - [`route`]: each record goes to the [`peer`] (tcpcopy connection) that
//!   announced its session, or waits briefly for that announcement;
//! - [`batch`]: records leave in frames of up to 16, adaptively, each within
//!   about 2 ms, through a bounded per-peer outbox.
//!
//! [`daemon`] runs the stages in one event loop; [`cli`], [`access`],
//! [`stats`] and [`metrics`] (the same statistics for Prometheus) are the
//! daemon's edges, [`doctor`] its preflight checks (process plumbing comes from
//! `tcpcopy_runtime::process`). The `intercept` binary
//! (`src/main.rs`) wires them up.

pub mod access;
pub mod batch;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod doctor;
pub mod metrics;
pub mod peer;
pub mod route;
pub mod stats;
pub mod targets;
