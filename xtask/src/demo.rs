//! `cargo xtask demo`: the main job in one command. Installs what is
//! missing (setup), builds tcpcopy, intercept and the demo driver in
//! release mode, and runs the driver (`tests/src/bin/demo.rs`): a live
//! mirroring session in the namespace lab, with a report.

use std::process::Command;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// No assistant host: intercept runs on the target (`--egress`), its TC
    /// egress program taking the replies; the target has no client route.
    #[arg(long)]
    no_assistant: bool,
    /// Compare the target's nginx responses with production's (`--compare
    /// 80=http`), with one difference planted at the target; the report
    /// goes to target/demo-compare-report/.
    #[arg(long)]
    compare: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the demo builds network namespaces and attaches XDP programs: run it as root");
    }
    crate::setup::run()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = ebpf_build::workspace_root();
    println!("demo: building tcpcopy, intercept and the demo driver (release)");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet"])
        .args(["-p", "tcpcopy-user", "--bin", "tcpcopy"])
        .args(["-p", "intercept-user", "--bin", "intercept"])
        .args(["-p", "tcpcopy-tests", "--bin", "demo"])
        .status()
        .context("starting cargo build")?;
    if !status.success() {
        bail!("building the demo failed ({status})");
    }
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), Into::into)
        .join("release");
    let mut demo = Command::new(release.join("demo"));
    demo.arg(args.seconds.to_string());
    if args.no_assistant {
        demo.arg("--no-assistant");
    }
    if args.compare {
        demo.arg("--compare");
        demo.env(
            "DEMO_REPORT_DIR",
            release
                .parent()
                .unwrap_or(&release)
                .join("demo-compare-report"),
        );
    }
    let status = demo.status().context("starting the demo")?;
    if !status.success() {
        bail!("the demo did not replay everything ({status}); see the report above");
    }
    Ok(())
}
