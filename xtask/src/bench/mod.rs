//! `cargo xtask bench <target>`: benchmarks. They print results; they are
//! not tests and assert no timings. Each target builds what it measures in
//! release mode and needs root (the lab's namespaces, XDP).

mod intercept;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Subcommand)]
pub enum BenchTarget {
    /// Reply packets per second through XDP -> ring -> intercept -> TCP to tcpcopy peers.
    Intercept(intercept::InterceptBench),
}

pub fn run(bench: &Bench) -> anyhow::Result<()> {
    if !crate::is_root() {
        anyhow::bail!("benchmarks run in the network-namespace lab and need root");
    }
    match &bench.target {
        BenchTarget::Intercept(args) => intercept::run(args),
    }
}
