//! `cargo xtask bench capacity`: offline replay at top speed against the
//! lab's near-free XDP target, with 1 and 2 workers, beside `tcpreplay
//! --topspeed` of the same file (method in `tests/src/bin/bench_capacity.rs`).

use std::process::Command;

#[derive(clap::Args)]
pub struct CapacityBench {
    /// Sessions in the generated capture.
    #[arg(long, default_value_t = 200_000)]
    sessions: u32,
    /// Runs of each row.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn run(args: &CapacityBench) -> anyhow::Result<()> {
    let release = super::build_release(
        "capacity",
        &[
            ("tcpcopy-user", "tcpcopy"),
            ("intercept-user", "intercept"),
            ("tcpcopy-tests", "bench-capacity"),
        ],
    )?;
    let mut cmd = Command::new(release.join("bench-capacity"));
    cmd.args(["--sessions", &args.sessions.to_string()])
        .args(["--runs", &args.runs.to_string()]);
    super::run_driver(cmd, "bench-capacity")
}
