//! `cargo xtask dist`: the Debian packages of both daemons, with their man
//! pages and shell completions, in one directory (`target/dist`).
//!
//! 1. builds `tcpcopy`, `intercept` and the manuals generator in the
//!    profile asked for (release by default: fat LTO, minutes);
//! 2. generates the man pages and completions from the clap definitions
//!    (`tcpcopy-packaging manuals`) into `target/<profile>/manuals`, where
//!    the `[package.metadata.deb]` assets of both crates take them from
//!    (`target/release/` in an asset is cargo-deb's name for the profile's
//!    directory);
//!    the man pages are gzipped there as Debian wants them;
//! 3. runs `cargo deb --no-build` for each daemon (binaries stripped);
//! 4. copies the manuals beside the packages.
//!
//! The T0 test below packages the `dev` build the tests make anyway (cargo
//! deb warns that it prefers release builds), unpacks each package into a
//! scratch root (`dpkg-deb -x`) and checks what it installs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};

/// The daemons' crates, their binaries and their Debian package names.
pub const PACKAGES: [(&str, &str); 2] =
    [("tcpcopy-user", "tcpcopy"), ("intercept-user", "intercept")];

#[derive(clap::Args)]
pub struct DistArgs {
    /// Cargo profile to build and package (`release` is what ships; a fast
    /// one such as `dev` for trying the packaging).
    #[arg(long, default_value = "release")]
    profile: String,
    /// Where the packages, man pages and completions go [default: target/dist].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// What [`build`] made.
#[derive(Debug)]
pub struct Dist {
    /// One `.deb` per daemon, in [`PACKAGES`] order.
    pub debs: Vec<PathBuf>,
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => target_dir()?.join("dist"),
    };
    let dist = build(&args.profile, &out)?;
    println!("dist: in {}:", out.display());
    for deb in &dist.debs {
        println!(
            "  {}",
            deb.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    println!("  man/, completions/ (also inside the packages)");
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(ebpf_build::workspace_root());
    cmd
}

/// Runs `cmd`, failing with `what` and its status.
fn run_step(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

/// The workspace's cargo target directory (`CARGO_TARGET_DIR` and
/// configuration included).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed ({})",
        out.status
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The directory cargo puts `profile`'s binaries in.
fn profile_dir(target: &Path, profile: &str) -> PathBuf {
    target.join(if profile == "dev" { "debug" } else { profile })
}

/// Builds the packages of `profile` into `out` (emptied of old packages
/// first).
pub fn build(profile: &str, out: &Path) -> anyhow::Result<Dist> {
    if Command::new("cargo-deb").arg("--version").output().is_err() {
        bail!("cargo-deb is missing: run `cargo xtask setup` (as root)");
    }
    let mut build = cargo();
    build.args(["build", "--profile", profile]);
    for (package, bin) in PACKAGES {
        build.args(["-p", package, "--bin", bin]);
    }
    build.args(["-p", "tcpcopy-packaging", "--bin", "tcpcopy-packaging"]);
    run_step(&format!("cargo build --profile {profile}"), &mut build)?;

    let binaries = profile_dir(&target_dir()?, profile);
    let manuals = binaries.join("manuals");
    if manuals.exists() {
        std::fs::remove_dir_all(&manuals)
            .with_context(|| format!("removing the old {}", manuals.display()))?;
    }
    let out_status = Command::new(binaries.join("tcpcopy-packaging"))
        .arg("manuals")
        .arg(&manuals)
        .output()
        .context("running tcpcopy-packaging")?;
    ensure!(
        out_status.status.success(),
        "tcpcopy-packaging manuals failed: {}",
        String::from_utf8_lossy(&out_status.stderr)
    );

    // Debian ships man pages gzipped; cargo deb compresses the pages it
    // did not see built, so these are compressed here (-n: no name or
    // time stamp, the same bytes every time).
    let mut gzip = Command::new("gzip");
    gzip.arg("-9nkf");
    for entry in std::fs::read_dir(manuals.join("man"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "8") {
            gzip.arg(path);
        }
    }
    run_step("gzip the man pages", &mut gzip)?;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut debs = Vec::new();
    for (package, name) in PACKAGES {
        let mut deb = cargo();
        deb.args([
            "deb",
            "--no-build",
            "--strip",
            "-p",
            package,
            "--profile",
            profile,
        ])
        .arg("--output")
        .arg(out);
        if profile != "release" {
            deb.arg("--fast");
        }
        let result = deb.output().context("running cargo deb")?;
        ensure!(
            result.status.success(),
            "cargo deb -p {package} failed ({}): {}",
            result.status,
            String::from_utf8_lossy(&result.stderr)
        );
        let made = std::fs::read_dir(out)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|e| e == "deb")
                    && p.file_name()
                        .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{name}_")))
            })
            .with_context(|| {
                format!(
                    "cargo deb -p {package} made no {name}_*.deb in {}",
                    out.display()
                )
            })?;
        debs.push(made);
    }
    for sub in ["man", "completions"] {
        let dest = out.join(sub);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        run_step(
            &format!("copying {sub}"),
            Command::new("cp")
                .arg("-r")
                .arg(manuals.join(sub))
                .arg(&dest),
        )?;
    }
    Ok(Dist { debs })
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, os::unix::fs::PermissionsExt};

    use super::*;

    fn output(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Builds both packages from the `dev` profile, unpacks each into a
    /// scratch root and checks every file it installs, its control data
    /// and its maintainer scripts; then runs the unpacked binaries and
    /// verifies the unpacked units with systemd-analyze against that root.
    #[test]
    fn deb_packages_install_binaries_units_manuals_and_completions() {
        let scratch =
            Scratch(std::env::temp_dir().join(format!("tcpcopy-dist-test-{}", std::process::id())));
        let scratch = &scratch.0;
        let out = scratch.join("out");
        let dist = build("dev", &out).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(dist.debs.len(), 2);
        let root = scratch.join("root");
        for ((_, name), deb) in PACKAGES.iter().zip(&dist.debs) {
            let name = *name;
            let control = output(Command::new("dpkg-deb").arg("--field").arg(deb));
            assert!(control.contains(&format!("Package: {name}\n")), "{control}");
            assert!(control.contains("Architecture: amd64"), "{control}");
            assert!(control.contains("Depends: libc6"), "{control}");
            assert!(control.contains("Section: net"), "{control}");

            let contents = output(Command::new("dpkg-deb").arg("--contents").arg(deb));
            let files: BTreeSet<String> = contents
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| !p.ends_with('/'))
                .map(|p| p.trim_start_matches('.').to_owned())
                .collect();
            let want: BTreeSet<String> = [
                format!("/usr/bin/{name}"),
                format!("/etc/default/{name}"),
                format!("/usr/lib/systemd/system/{name}.service"),
                format!("/usr/share/man/man8/{name}.8.gz"),
                format!("/usr/share/man/man8/{name}-doctor.8.gz"),
                format!("/usr/share/bash-completion/completions/{name}"),
                format!("/usr/share/zsh/vendor-completions/_{name}"),
                format!("/usr/share/fish/vendor_completions.d/{name}.fish"),
                format!("/usr/share/doc/{name}/README.md"),
                format!("/usr/share/doc/{name}/copyright"),
            ]
            .into();
            assert_eq!(files, want, "{name}: files in the package");

            // /etc/default/<name> is a conffile: an upgrade keeps the admin's edits.
            let ctrl = scratch.join(format!("control-{name}"));
            output(
                Command::new("dpkg-deb")
                    .arg("--control")
                    .arg(deb)
                    .arg(&ctrl),
            );
            let conffiles = std::fs::read_to_string(ctrl.join("conffiles")).unwrap();
            assert!(
                conffiles
                    .lines()
                    .any(|l| l == format!("/etc/default/{name}")),
                "{conffiles}"
            );
            // Units are registered (daemon-reload) but neither enabled nor
            // started: the environment file needs the host's values first.
            let postinst = std::fs::read_to_string(ctrl.join("postinst")).unwrap();
            assert!(postinst.contains("daemon-reload"), "{postinst}");
            assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
            assert!(
                postinst.contains("was-enabled"),
                "enabled only when it was before (an upgrade): {postinst}"
            );

            output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
            let bin = root.join(format!("usr/bin/{name}"));
            let mode = std::fs::metadata(&bin).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{name}: mode {mode:o}");
            let version = output(Command::new(&bin).arg("--version"));
            assert_eq!(
                version.trim(),
                format!("{name} {}", env!("CARGO_PKG_VERSION"))
            );
            let sections = output(
                Command::new("readelf")
                    .args(["--sections", "--wide"])
                    .arg(&bin),
            );
            assert!(!sections.contains(".debug_info"), "{name}: not stripped");

            // The man pages are gzipped roff that man renders without a warning.
            let page = root.join(format!("usr/share/man/man8/{name}.8.gz"));
            let rendered = Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&page)
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            assert!(rendered.status.success());
            assert!(
                rendered.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&rendered.stderr)
            );
            let text = String::from_utf8_lossy(&rendered.stdout);
            assert!(text.contains("EXAMPLES") && text.contains(&format!("/etc/default/{name}")));

            // The completions load in bash and offer the doctor subcommand.
            let completion = root.join(format!("usr/share/bash-completion/completions/{name}"));
            let script = format!(
                "source {}; COMP_WORDS=({name} do); COMP_CWORD=1; _{name} {name} do {name}; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                completion.display()
            );
            let offered = output(Command::new("bash").arg("-c").arg(&script));
            assert!(offered.lines().any(|l| l == "doctor"), "{name}: {offered}");

            // systemd reads the unit as shipped, with the binary where
            // the package puts it.
            let unit = root.join(format!("usr/lib/systemd/system/{name}.service"));
            let shipped =
                ebpf_build::workspace_root().join(format!("deploy/systemd/{name}.service"));
            assert_eq!(
                std::fs::read(&unit).unwrap(),
                std::fs::read(&shipped).unwrap()
            );
            // The targets it is ordered after come from the host's systemd.
            output(
                Command::new("cp")
                    .args(["-rn", "/usr/lib/systemd/system/."])
                    .arg(unit.parent().unwrap()),
            );
            let verify = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(format!("--root={}", root.display()))
                .arg(&unit)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&verify.stderr);
            assert!(
                verify.status.success() && said.trim().is_empty(),
                "{name}: {said}"
            );
        }
    }

    /// A scratch directory, removed however the test ends.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
