//! `cargo xtask bench send`: builds the `bench-send` driver (tests crate)
//! in release mode and runs it: frames per second and loss of each sender
//! backend on the lab's veth, small and MTU-size frames side by side (see
//! `tests/src/bin/bench_send.rs` for the method).

use std::process::Command;

#[derive(clap::Args)]
pub struct SendBench {
    /// Frames per run.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Frame sizes on the wire, Ethernet header included (comma list).
    #[arg(long, default_value = "66,1514")]
    sizes: String,
    /// Backends (comma list of afxdp, raw).
    #[arg(long, default_value = "afxdp,raw")]
    backends: String,
    /// AF_XDP in-flight caps to compare (comma list, 1..=4096).
    #[arg(long, default_value = "256")]
    caps: String,
    /// Frames per `send` call (an engine batch).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Leave bridge netfilter on in the lab's LAN (bridged frames then
    /// cross iptables when the host has br_netfilter loaded).
    #[arg(long)]
    bridge_netfilter: bool,
}

pub fn run(args: &SendBench) -> anyhow::Result<()> {
    let release = super::build_release("send", &[("tcpcopy-tests", "bench-send")])?;
    let mut cmd = Command::new(release.join("bench-send"));
    if args.bridge_netfilter {
        cmd.arg("--bridge-netfilter");
    }
    cmd.args(["--frames", &args.frames.to_string()])
        .args(["--sizes", &args.sizes])
        .args(["--backends", &args.backends])
        .args(["--caps", &args.caps])
        .args(["--batch", &args.batch.to_string()]);
    super::run_driver(cmd, "bench-send")
}
