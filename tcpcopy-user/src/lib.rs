//! tcpcopy: copies the requests real clients send to an online server and
//! replays them as live TCP sessions against a target server.
//!
//! Data flow: capture (XDP) -> session engine -> send (AF_XDP or a raw
//! socket, see [`send`]). This crate holds the
//! userspace side of all three and the `tcpcopy` binary.

pub mod capture;
pub mod engine;
pub mod packet;
pub mod send;
