//! Test support for the kernel tiers: the network-namespace lab of DESIGN
//! section 7, servers inside it, condition waits, frame builders for
//! BPF_PROG_TEST_RUN, raw packet I/O in the lab ([`raw`]), the pieces
//! that drive intercept there ([`intercept`]) and tcpcopy's senders
//! ([`send`]).
//!
//! Everything the lab creates lives in namespaces named `tcl-<pid>-<n>-*`;
//! dropping a [`Lab`] removes them (also while a test panics), and creating
//! one first sweeps namespaces left by test processes that no longer exist.

pub mod flood;
pub mod frames;
pub mod intercept;
pub mod lab;
pub mod netns;
pub mod raw;
pub mod send;
pub mod servers;
pub mod wait;

/// Panics with an explanation unless we run as root: the kernel tiers must
/// fail loudly, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "kernel tests need root (XDP, BPF test runs, network namespaces); \
         run them with `cargo xtask test` as root"
    );
}
