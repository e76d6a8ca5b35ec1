//! `cargo xtask bench offline`: builds the `bench-offline` driver (tests
//! crate) and tcpcopy in release mode and runs it: a large synthetic
//! capture replayed with `--top-speed` against nginx in the lab, side by
//! side with `tcpreplay --topspeed` sending the same file (see
//! `tests/src/bin/bench_offline.rs` for the method).

use std::process::Command;

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
    let release = super::build_release(
        "offline",
        &[
            ("tcpcopy-user", "tcpcopy"),
            ("intercept-user", "intercept"),
            ("tcpcopy-tests", "bench-offline"),
        ],
    )?;
    let mut cmd = Command::new(release.join("bench-offline"));
    cmd.args(["--sessions", &args.sessions.to_string()])
        .args(["--requests", &args.requests.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .args(["--workers", &args.workers.to_string()]);
    super::run_driver(cmd, "bench-offline")
}
