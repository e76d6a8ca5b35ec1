//! `cargo xtask setup`: installs what a fresh machine of our kind lacks.
//! Idempotent: every step first checks, and says what was already there.

use std::process::Command;

use anyhow::{Context, bail};

/// Debian packages: the eBPF toolchain (../shared/TOOLCHAIN.md section 1) and
/// the servers, clients and tools the lab uses.
const PACKAGES: &[&str] = &[
    // eBPF toolchain
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libelf-dev",
    "zlib1g-dev",
    "pkg-config",
    "clang",
    "llvm",
    "libpcap-dev",
    "m4",
    // lab
    "iproute2",
    "ethtool",
    "nginx",
    "redis-server",
    "redis-tools",
    "wrk",
    "curl",
    "tcpdump",
    "tcpreplay",
    "iputils-ping",
    // the lab's netfilter (bridge netfilter with a Kubernetes-like ruleset)
    "iptables",
    // benchmarks: the kernel's run-time statistics of BPF programs
    "bpftool",
    // tests: the comparison report rendered in a real (headless) browser
    "chromium",
];

pub fn run() -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("setup installs system packages and must run as root (try: sudo cargo xtask setup)");
    }
    apt_packages()?;
    bpf_linker()?;
    println!("setup: done");
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && o.stdout.starts_with(b"install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: apt packages: all {} already installed",
            PACKAGES.len()
        );
        return Ok(());
    }
    println!("setup: apt packages: installing {}", missing.join(" "));
    run_step("apt-get update", Command::new("apt-get").arg("update"))?;
    run_step(
        "apt-get install",
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(&missing),
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let want = ebpf_build::BPF_LINKER_VERSION;
    if let Some(path) = ebpf_build::bpf_linker_path() {
        let version = Command::new(&path)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if version.contains(want) {
            println!(
                "setup: bpf-linker {want}: already installed ({})",
                path.display()
            );
            return Ok(());
        }
        println!(
            "setup: bpf-linker: found {:?}, want {want}; reinstalling",
            version.trim()
        );
    }
    println!("setup: bpf-linker {want}: building against LLVM 22 (about 2 minutes)");
    run_step(
        "cargo install bpf-linker",
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args(["install", "bpf-linker", "--version", want, "--force"])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
}

/// Runs one setup step, naming it when it fails.
fn run_step(step: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("setup step `{step}` could not start"))?;
    if !status.success() {
        bail!("setup step `{step}` failed ({status})");
    }
    Ok(())
}
