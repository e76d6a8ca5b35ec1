//! intercept: runs on the assistant host. Drops the target server's replies
//! (the real clients must never see them) and reports their headers to the
//! tcpcopy instance that owns each session.
//!
//! Data flow: capture (XDP) -> route -> batch -> tcpcopy connections.

pub mod capture;
