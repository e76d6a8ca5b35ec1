//! `cargo xtask bench offline`: builds the `bench-offline` driver (tests
//! crate) and tcpcopy in release mode and runs it: a large synthetic
//! capture replayed with `--top-speed` against nginx in the lab, side by
//! side with `tcpreplay --topspeed` sending the same file (see
//! `tests/src/bin/bench_offline.rs` for the method).

use std::process::Command;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct OfflineBench {
    /// Sessions in the generated capture.
    #[arg(long, default_value_t = 20_000)]
    sessions: u32,
    /// Requests per session.
    #[arg(long, default_value_t = 3)]
    requests: usize,
    /// Runs of each tool, alternating.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// tcpcopy worker threads.
    #[arg(long, default_value_t = 1)]
    workers: u16,
}

pub fn run(args: &OfflineBench) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = ebpf_build::workspace_root();
    println!("bench offline: building bench-offline and tcpcopy (release)");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--package",
            "tcpcopy-tests",
            "--bin",
            "bench-offline",
            "--package",
            "tcpcopy-user",
            "--bin",
            "tcpcopy",
            "--package",
            "intercept-user",
            "--bin",
            "intercept",
        ])
        .status()
        .context("starting cargo build")?;
    if !status.success() {
        bail!("building the benchmark failed ({status})");
    }
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), Into::into)
        .join("release");
    let status = Command::new(release.join("bench-offline"))
        .args(["--sessions", &args.sessions.to_string()])
        .args(["--requests", &args.requests.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .args(["--workers", &args.workers.to_string()])
        .status()
        .context("starting bench-offline")?;
    if !status.success() {
        bail!("bench-offline failed ({status})");
    }
    Ok(())
}
