//! Runtime support shared by the `tcpcopy` and `intercept` daemons.
//!
//! [`object::BpfObject`] is one loaded eBPF object with the `TARGETS` match
//! table and the `COUNTERS` per-CPU array that all of our objects define.
//! [`xdp::XdpObject`] runs one XDP program of it, attached through bpf_link
//! (native mode first, generic as a fallback), so the program goes away
//! with the process; [`tc::EgressObject`] runs one TC classifier at the
//! egress of devices (TCX links where the kernel has them).
//! [`process`] holds what both daemons do as processes: signals, the pid
//! file, running in the background, logging. [`netdev`] reads what the
//! `doctor` commands check about interfaces and the host's IPv4 settings,
//! and [`doctor`] is how they print it. [`privilege`] gives up the
//! capabilities a daemon no longer needs once it is set up. [`metrics`]
//! serves a daemon's statistics to Prometheus (`--metrics`).

pub mod doctor;
pub mod metrics;
pub mod netdev;
pub mod object;
pub mod privilege;
pub mod process;
pub mod tc;
pub mod xdp;
