//! `cargo xtask bench <target>`: benchmarks. They print results; they are
//! not tests and assert no timings. Each target builds what it measures in
//! release mode; those that use the lab (namespaces, XDP) need root.

mod capacity;
mod compare;
mod engine;
mod intercept;
mod live;
mod offline;
mod send;

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Subcommand)]
pub enum BenchTarget {
    /// The session engine alone: captured packets per second on one core, bytes per idle session.
    Engine(engine::EngineBench),
    /// tcpcopy live in the lab: stepped load, completeness, CPU per packet, production latency off vs on.
    Live(live::LiveBench),
    /// Reply packets per second through XDP -> ring -> intercept -> TCP to tcpcopy peers.
    Intercept(intercept::InterceptBench),
    /// Frames per second and loss of each sender backend (AF_XDP, raw) on the lab's veth.
    Send(send::SendBench),
    /// Offline replay of a large capture at top speed vs tcpreplay --topspeed on the same link.
    Offline(offline::OfflineBench),
    /// Offline top speed against a near-free XDP target, 1 and 2 workers, beside tcpreplay: where tcpcopy's limit is.
    Capacity(capacity::CapacityBench),
    /// What --compare costs: tcpcopy and intercept CPU per request, the online host's TC program, without vs with.
    Compare(compare::CompareBench),
}

pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let needs_root = !matches!(bench.target, BenchTarget::Engine(_));
    if needs_root && !crate::is_root() {
        anyhow::bail!("this benchmark runs in the network-namespace lab and needs root");
    }
    match &bench.target {
        BenchTarget::Engine(args) => engine::run(args),
        BenchTarget::Intercept(args) => intercept::run(args),
        BenchTarget::Live(args) => live::run(args),
        BenchTarget::Send(args) => send::run(args),
        BenchTarget::Offline(args) => offline::run(args),
        BenchTarget::Compare(args) => compare::run(args),
        BenchTarget::Capacity(args) => capacity::run(args),
    }
}

/// Builds `binaries` (package, binary) in release mode for benchmark
/// `name`; returns the release directory they are in.
fn build_release(name: &str, binaries: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = ebpf_build::workspace_root();
    let list: Vec<&str> = binaries.iter().map(|(_, bin)| *bin).collect();
    println!("bench {name}: building {} (release)", list.join(", "));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--quiet"]);
    for (package, bin) in binaries {
        cmd.args(["--package", package, "--bin", bin]);
    }
    let status = cmd.status().context("starting cargo build")?;
    if !status.success() {
        bail!("building the benchmark failed ({status})");
    }
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), Into::into)
        .join("release"))
}

/// Runs a benchmark driver to its end; a failure names it.
fn run_driver(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
