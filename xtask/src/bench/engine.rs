//! `cargo xtask bench engine`: the session engine alone, one shard on one
//! core (`tcpcopy-user/benches/engine.rs` has the workload). Needs no root.

use std::process::Command;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct EngineBench {
    /// Timed passes of the 100k-session workload (after one warm-up pass).
    #[arg(long, default_value_t = 5)]
    passes: u32,
}

pub fn run(args: &EngineBench) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(ebpf_build::workspace_root())
        .args([
            "bench",
            "-p",
            "tcpcopy-user",
            "--no-default-features",
            "--bench",
            "engine",
        ])
        .env("ENGINE_BENCH_PASSES", args.passes.to_string())
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("the engine benchmark failed ({status})");
    }
    Ok(())
}
