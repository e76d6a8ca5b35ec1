//! Runtime support shared by the `tcpcopy` and `intercept` daemons.
//!
//! [`xdp::XdpObject`] owns one loaded eBPF object with one XDP program, the
//! `TARGETS` match table and the `COUNTERS` per-CPU array that both of our
//! objects define. It attaches through bpf_link (native mode first, generic
//! as a fallback), so the program goes away with the process.
//! [`process`] holds what both daemons do as processes: signals, the pid
//! file, running in the background, logging. [`netdev`] reads what the
//! `doctor` commands check about interfaces and the host's IPv4 settings,
//! and [`doctor`] is how they print it.

pub mod doctor;
pub mod netdev;
pub mod process;
pub mod xdp;
