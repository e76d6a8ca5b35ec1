//! `cargo xtask bench live`: tcpcopy in the lab under stepped load, and
//! production latency with tcpcopy off and on (method in
//! `tests/src/bin/bench_live.rs`).

use std::process::Command;

#[derive(clap::Args)]
pub struct LiveBench {}

pub fn run(_args: &LiveBench) -> anyhow::Result<()> {
    let release = super::build_release(
        "live",
        &[
            ("tcpcopy-user", "tcpcopy"),
            ("intercept-user", "intercept"),
            ("tcpcopy-tests", "bench-live"),
        ],
    )?;
    super::run_driver(Command::new(release.join("bench-live")), "bench-live")
}
