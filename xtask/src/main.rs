//! `cargo xtask <task>`: the project's tasks, runnable on a fresh machine.
//!
//! - `setup`: installs what the machine lacks (apt packages, bpf-linker, cargo-deb,
//!   the Kubernetes manifest validator).
//! - `build-ebpf`: builds the eBPF objects (the same code the build scripts use).
//! - `test`: builds everything and runs the three test tiers (T0, T1, T2).
//! - `lint`: rustfmt, clippy (warnings are errors), the Kubernetes manifests' schemas.
//! - `dist`: the Debian packages of both daemons, man pages, completions.
//! - `demo`: live mirroring in the namespace lab, with a report.
//! - `bench <target>`: benchmarks.
//! - `bench`: benchmarks in the lab (release builds; print, never assert).

mod bench;
mod demo;
mod dist;
mod k8s;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tcpcopy project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain and lab packages a fresh machine lacks (as root; idempotent).
    Setup,
    /// Build the eBPF objects (tcpcopy-ebpf, intercept-ebpf).
    BuildEbpf,
    /// Build everything and run the test tiers: T0 pure logic, T1 BPF test runs, T2 the lab.
    Test(test::TestArgs),
    /// Check formatting, run clippy on every host target (warnings are errors) and validate the
    /// Kubernetes manifests (deploy/k8s) against the pinned schemas.
    Lint,
    /// Build the Debian packages of tcpcopy and intercept (release), with their man pages and
    /// shell completions, into target/dist.
    Dist(dist::DistArgs),
    /// Run a benchmark in the network-namespace lab (as root; release builds).
    Bench(bench::Bench),
    /// The main job: live mirroring in the namespace lab, with a report (as root).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::BuildEbpf => build_ebpf(),
        Task::Test(args) => test::run(&args),
        Task::Lint => lint(),
        Task::Dist(args) => dist::run(&args),
        Task::Bench(bench) => bench::run(&bench),
        Task::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_ebpf() -> anyhow::Result<()> {
    for package in ebpf_build::EBPF_CRATES {
        let object = ebpf_build::build(package)?;
        println!("built {package}: {}", object.display());
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for args in [
        &["fmt", "--all", "--", "--check"][..],
        &[
            "clippy",
            "--all-targets",
            "--features",
            "tcpcopy-tests/kernel",
            "--",
            "-D",
            "warnings",
        ],
    ] {
        let status = std::process::Command::new(&cargo).args(args).status()?;
        anyhow::ensure!(
            status.success(),
            "cargo {} failed ({status})",
            args.join(" ")
        );
    }
    k8s::run()?;
    println!("lint: clean");
    Ok(())
}

/// Whether we run as root (the kernel tiers and setup need it).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
