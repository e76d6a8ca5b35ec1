//! Builds the workspace's eBPF crates for `bpfel-unknown-none`, the way
//! `../shared/TOOLCHAIN.md` section 3 proved to work on our machines:
//! Debian's `rustc` (its sysroot ships the BPF `core`), `RUSTC_BOOTSTRAP`
//! scoped to `aya_ebpf`, `bpf-linker` emitting BTF, and the `bpf` profile.
//!
//! This is the only build path: `cargo xtask build-ebpf` calls [`build`], and
//! so do the build scripts of `tcpcopy-user` and `intercept-user`, which embed
//! the objects. The nested cargo uses its own target directory
//! (`target/ebpf`) so it never waits on the outer build's lock, and starts
//! from a scrubbed environment so the outer build's flags never leak into it.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF crates of the workspace (`lab-ebpf`: the test lab's own).
pub const EBPF_CRATES: [&str; 3] = ["tcpcopy-ebpf", "intercept-ebpf", "lab-ebpf"];

/// The rustc that carries a BPF sysroot (Debian's `rustc-web`).
pub const BPF_RUSTC: &str = "/usr/bin/rustc";
/// The bpf-linker release this workspace is tested with.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const TARGET: &str = "bpfel-unknown-none";
const PROFILE: &str = "bpf";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the eBPF toolchain is missing: {what}; install it with `cargo xtask setup` (as root)")]
    MissingToolchain { what: String },
    #[error("failed to run cargo for {package}: {source}")]
    Spawn {
        package: String,
        source: std::io::Error,
    },
    #[error("building {package} for {TARGET} failed ({status}):\n{stderr}")]
    Failed {
        package: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{package} built, but its object {} is missing", path.display())]
    MissingObject { package: String, path: PathBuf },
}

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ebpf-build sits inside the workspace")
        .to_path_buf()
}

/// Where the nested builds put their output.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target").join("ebpf")
}

/// The object file `build(package)` produces.
pub fn object_path(package: &str) -> PathBuf {
    target_dir().join(TARGET).join(PROFILE).join(package)
}

/// Files and directories whose change requires rebuilding `package`'s object,
/// for `cargo:rerun-if-changed`.
pub fn inputs(package: &str) -> Vec<PathBuf> {
    let root = workspace_root();
    vec![
        root.join(package),
        root.join("tcpcopy-common"),
        root.join("ebpf-build").join("src"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ]
}

/// `$CARGO_HOME/bin`, where `cargo install` put bpf-linker.
fn cargo_bin_dir() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"))
}

/// `PATH` with `$CARGO_HOME/bin` in front, so bpf-linker is found even from
/// a shell that never sourced cargo's env.
fn search_path() -> OsString {
    let mut dirs: Vec<PathBuf> = cargo_bin_dir().into_iter().collect();
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).unwrap_or_default()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&search_path())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Where bpf-linker is (`PATH`, then `$CARGO_HOME/bin`), if installed.
pub fn bpf_linker_path() -> Option<PathBuf> {
    find_in_path("bpf-linker")
}

/// Checks that Debian's rustc (with the BPF sysroot) and bpf-linker are there.
pub fn check_toolchain() -> Result<(), BuildError> {
    let sysroot = Path::new("/usr/lib/rustlib").join(TARGET);
    if !Path::new(BPF_RUSTC).is_file() || !sysroot.is_dir() {
        return Err(BuildError::MissingToolchain {
            what: format!(
                "{BPF_RUSTC} with a {TARGET} sysroot (Debian packages rustc-web, \
                 libstd-rust-web-dev-bpf)"
            ),
        });
    }
    if bpf_linker_path().is_none() {
        return Err(BuildError::MissingToolchain {
            what: format!("bpf-linker {BPF_LINKER_VERSION}"),
        });
    }
    Ok(())
}

/// Builds one eBPF crate and returns the path of its object.
pub fn build(package: &str) -> Result<PathBuf, BuildError> {
    check_toolchain()?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--package",
        package,
        "--target",
        TARGET,
        "--profile",
        PROFILE,
    ]);
    cmd.arg("--target-dir").arg(target_dir());
    scrub_env(&mut cmd);
    cmd.env("PATH", search_path())
        .env("RUSTC", BPF_RUSTC)
        .env("RUSTC_BOOTSTRAP", "aya_ebpf")
        .env("RUSTFLAGS", "-C debuginfo=2 -C link-arg=--btf");
    let output = cmd.output().map_err(|source| BuildError::Spawn {
        package: package.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            package: package.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let path = object_path(package);
    if !path.is_file() {
        return Err(BuildError::MissingObject {
            package: package.to_owned(),
            path,
        });
    }
    Ok(path)
}

/// Removes what an outer cargo (or a build script's environment) sets that
/// would change the nested BPF build: rustc wrappers and flags, target and
/// profile selection, and the per-package variables cargo gives build scripts.
fn scrub_env(cmd: &mut Command) {
    const KEEP: [&str; 5] = [
        "CARGO_HOME",
        "CARGO_NET_OFFLINE",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_TERM_",
    ];
    const DROP: [&str; 13] = [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "RUSTFLAGS",
        "RUSTDOC",
        "RUSTDOCFLAGS",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = key.starts_with("CARGO_") && !KEEP.iter().any(|k| key.starts_with(k));
        if cargo_var || DROP.contains(&key) || key == "CARGO" {
            cmd.env_remove(key);
        }
    }
}

/// What a user crate's build script does: build `package`, copy its object
/// into `OUT_DIR` (where `include_bytes_aligned!` finds it) and declare the
/// inputs. Exits the build script with the reason on failure.
pub fn build_script(package: &str) {
    for input in inputs(package) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let result = build(package).and_then(|object| {
        std::fs::copy(&object, out_dir.join(package))
            .map(|_| ())
            .map_err(|e| BuildError::MissingObject {
                package: format!("{package} ({e})"),
                path: object,
            })
    });
    if let Err(e) = result {
        eprintln!("error: cannot build the eBPF object {package}: {e}");
        eprintln!(
            "hint: `cargo xtask setup` installs the toolchain; `cargo xtask build-ebpf` builds the objects"
        );
        std::process::exit(1);
    }
}
