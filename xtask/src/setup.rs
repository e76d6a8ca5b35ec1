//! `cargo xtask setup`: installs what a fresh machine of our kind lacks:
//! Debian packages, bpf-linker, cargo-deb (packaging) and a pinned
//! Kubernetes manifest validator (deploy/k8s).
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
    // packaging: cargo deb strips with binutils and finds the packages'
    // dependencies with dpkg-shlibdeps; its tests render the man pages,
    // read the units with systemd-analyze, run the Kubernetes validator's
    // Python and trace the daemons' system calls as their units filter them
    "binutils",
    "dpkg-dev",
    "man-db",
    "systemd",
    "python3-venv",
    "strace",
];

/// cargo-deb, which `cargo xtask dist` packages with (pinned: the dist
/// test checks what this version makes of the metadata).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Where the Kubernetes manifest validator lives: a virtualenv of its own,
/// named after the pinned version.
pub const KUBERNETES_VALIDATE_VENV: &str = "/opt/tcpcopy-tools/kubernetes-validate-1.37.0";

/// kubernetes-validate (which bundles the Kubernetes JSON schemas of every
/// release up to 1.37) and every package it pulls in, pinned.
const KUBERNETES_VALIDATE_PINS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "attrs==26.1.0",
    "importlib_resources==7.1.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "packaging==26.4",
    "PyYAML==6.0.4",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "typing_extensions==4.16.0",
];

pub fn run() -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("setup installs system packages and must run as root (try: sudo cargo xtask setup)");
    }
    apt_packages()?;
    bpf_linker()?;
    cargo_deb()?;
    kubernetes_validate()?;
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

fn cargo_deb() -> anyhow::Result<()> {
    let want = CARGO_DEB_VERSION;
    let found = Command::new("cargo-deb")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if found == format!("cargo-deb {want}") {
        println!("setup: cargo-deb {want}: already installed");
        return Ok(());
    }
    println!("setup: cargo-deb {want}: building (about 2 minutes)");
    run_step(
        "cargo install cargo-deb",
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "cargo-deb",
            "--version",
            want,
            "--locked",
            "--force",
        ]),
    )
}

fn kubernetes_validate() -> anyhow::Result<()> {
    let venv = std::path::Path::new(KUBERNETES_VALIDATE_VENV);
    // Written last, once every pin is installed.
    let done = venv.join("tcpcopy-pins.txt");
    let pins = KUBERNETES_VALIDATE_PINS.join("\n");
    if std::fs::read_to_string(&done).is_ok_and(|p| p == pins) {
        println!("setup: kubernetes-validate: already installed ({KUBERNETES_VALIDATE_VENV})");
        return Ok(());
    }
    println!("setup: kubernetes-validate: installing into {KUBERNETES_VALIDATE_VENV}");
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("removing the incomplete {KUBERNETES_VALIDATE_VENV}"))?;
    }
    run_step(
        "python3 -m venv",
        Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(venv),
    )?;
    run_step(
        "pip install kubernetes-validate",
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--no-input",
                "--disable-pip-version-check",
            ])
            .args(KUBERNETES_VALIDATE_PINS),
    )?;
    std::fs::write(&done, pins).with_context(|| format!("writing {}", done.display()))
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
