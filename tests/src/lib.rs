//! Test support for the kernel tiers: the network-namespace lab of DESIGN
//! section 7, servers inside it, condition waits, frame builders for
//! BPF_PROG_TEST_RUN, raw packet I/O in the lab ([`raw`]), the pieces
//! that drive intercept there ([`intercept`]) and tcpcopy's senders
//! ([`send`]).
//!
//! Everything the lab creates lives in namespaces named `tcl-<pid>-<n>-*`;
//! dropping a [`Lab`] removes them (also while a test panics), and creating
//! one first sweeps namespaces left by test processes that no longer exist.

pub mod benchkit;
pub mod capture;
pub mod flood;
pub mod frames;
pub mod frames6;
pub mod intercept;
pub mod lab;
pub mod load;
pub mod netns;
pub mod procstat;
pub mod raw;
pub mod report;
pub mod responder;
pub mod send;
pub mod servers;
pub mod tc;
pub mod tcpcopy;
pub mod wait;

/// The `-x` rule `text` (as the command line takes it), for tests that
/// load a capture program themselves.
pub fn rule(text: &str) -> tcpcopy_user::engine::TransferRule {
    text.parse::<tcpcopy_user::cli::Transfer>()
        .unwrap_or_else(|e| panic!("{e}"))
        .rule
}

/// Panics with an explanation unless we run as root: the kernel tiers must
/// fail loudly, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "kernel tests need root (XDP, BPF test runs, network namespaces); \
         run them with `cargo xtask test` as root"
    );
}

/// Builds binary `bin` of workspace package `package` with the same cargo
/// and profile as the running tests (so it is never stale) and returns its
/// path.
pub fn workspace_binary(package: &str, bin: &str) -> std::path::PathBuf {
    use std::path::Path;
    let exe = std::env::current_exe().expect("the running executable's path");
    // Tests run from target/<profile>/deps/<test>, binaries (the demo and
    // bench drivers) from target/<profile>/<bin>.
    let dir = exe.parent().expect("an executable has a directory");
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps sits in the profile directory")
    } else {
        dir
    };
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.current_dir(&workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(
        out.status.success(),
        "building {bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = profile_dir.join(bin);
    assert!(
        binary.is_file(),
        "{} missing after the build",
        binary.display()
    );
    binary
}
