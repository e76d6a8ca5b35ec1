//! `cargo xtask bench <target>`: benchmarks. They print results; they are
//! not tests and assert no timings. Each target builds what it measures in
//! release mode; those that use the lab (namespaces, XDP) need root.

mod engine;
mod intercept;
mod live;
mod offline;
mod send;

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
    }
}
