//! `cargo xtask bench live`: tcpcopy in the lab under stepped load, and
//! production latency with tcpcopy off and on (method in
//! `tests/src/bin/bench_live.rs`).

use std::process::Command;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct LiveBench {}

pub fn run(_args: &LiveBench) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = ebpf_build::workspace_root();
    println!("bench live: building tcpcopy, intercept and bench-live (release)");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet"])
        .args(["-p", "tcpcopy-user", "--bin", "tcpcopy"])
        .args(["-p", "intercept-user", "--bin", "intercept"])
        .args(["-p", "tcpcopy-tests", "--bin", "bench-live"])
        .status()
        .context("starting cargo build")?;
    if !status.success() {
        bail!("building the benchmark failed ({status})");
    }
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), Into::into)
        .join("release");
    let status = Command::new(release.join("bench-live"))
        .status()
        .context("starting bench-live")?;
    if !status.success() {
        bail!("bench-live failed ({status})");
    }
    Ok(())
}
