//! `cargo xtask bench compare`: what `--compare` costs, tcpcopy without
//! and with it side by side in the lab (method in
//! `tests/src/bin/bench_compare.rs`).

use std::process::Command;

#[derive(clap::Args)]
pub struct CompareBench {
    /// Rounds of each (without, with).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

pub fn run(args: &CompareBench) -> anyhow::Result<()> {
    let release = super::build_release(
        "compare",
        &[
            ("tcpcopy-user", "tcpcopy"),
            ("intercept-user", "intercept"),
            ("tcpcopy-tests", "bench-compare"),
        ],
    )?;
    let mut cmd = Command::new(release.join("bench-compare"));
    cmd.env("BENCH_COMPARE_ROUNDS", args.rounds.to_string())
        .env("BENCH_COMPARE_SECS", args.seconds.to_string());
    super::run_driver(cmd, "bench-compare")
}
