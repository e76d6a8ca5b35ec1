//! The schema check of `deploy/k8s/`: every manifest against the pinned
//! Kubernetes JSON schemas (strict: an unknown field is an error), with
//! the validator `cargo xtask setup` installs (kubernetes-validate, whose
//! schemas are bundled in the pinned package). No cluster is needed.
//! `kustomization.yaml` is kustomize's, not the API server's: it is
//! checked to list exactly the other manifests.
//!
//! `cargo xtask lint` runs it; so does a T0 test. tcpcopy-packaging's
//! tests check what the manifests mean (capabilities, the command lines
//! the containers run).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};

use crate::setup::KUBERNETES_VALIDATE_VENV;

/// The Kubernetes release the manifests are validated against.
pub const KUBERNETES_VERSION: &str = "1.37.0";

/// The manifests' directory.
pub fn manifest_dir() -> PathBuf {
    ebpf_build::workspace_root().join("deploy/k8s")
}

/// Validates every manifest of `dir`; returns the validator's verdict lines.
pub fn validate(dir: &Path) -> anyhow::Result<Vec<String>> {
    let validator = Path::new(KUBERNETES_VALIDATE_VENV).join("bin/kubernetes-validate");
    if !validator.is_file() {
        bail!(
            "{} is missing: run `cargo xtask setup` (as root)",
            validator.display()
        );
    }
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            manifests.push(path);
        }
    }
    manifests.sort();
    let kustomization = dir.join("kustomization.yaml");
    ensure!(
        manifests.contains(&kustomization),
        "no kustomization.yaml in {}",
        dir.display()
    );
    manifests.retain(|m| *m != kustomization);
    check_kustomization(&kustomization, &manifests)?;

    let out = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&manifests)
        .output()
        .with_context(|| format!("running {}", validator.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // A manifest without a schema is only a warning to the validator: here
    // every resource must have passed.
    let passed = lines
        .iter()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    ensure!(
        out.status.success() && passed == manifests.len() && !text.contains("WARN"),
        "deploy/k8s does not validate against Kubernetes {KUBERNETES_VERSION} ({}):\n{text}",
        out.status
    );
    Ok(lines)
}

/// kustomization.yaml's `resources:` names exactly `manifests`.
fn check_kustomization(path: &Path, manifests: &[PathBuf]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").trim())
        .collect();
    listed.sort();
    let mut want: Vec<String> = manifests
        .iter()
        .filter_map(|m| m.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    want.sort();
    ensure!(
        listed == want,
        "kustomization.yaml lists {listed:?}, the directory holds {want:?}"
    );
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let lines = validate(&manifest_dir())?;
    println!(
        "k8s: {} manifests valid against Kubernetes {KUBERNETES_VERSION} (strict)",
        lines.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_validate_against_the_pinned_kubernetes_schemas() {
        let lines = validate(&manifest_dir()).unwrap_or_else(|e| panic!("{e:#}"));
        for line in &lines {
            println!("{line}");
        }
        assert!(lines.len() >= 5, "{lines:?}");
    }

    /// The check fails on what a cluster would refuse: a misspelt field.
    #[test]
    fn a_misspelt_field_fails_the_check() {
        let dir = std::env::temp_dir().join(format!("tcpcopy-k8s-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(manifest_dir()).unwrap() {
            let path = entry.unwrap().path();
            let mut text = std::fs::read_to_string(&path).unwrap();
            if path.ends_with("tcpcopy-daemonset.yaml") {
                text = text.replace("hostNetwork: true", "hostNetwrok: true");
            }
            std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
        let e = validate(&dir).expect_err("a misspelt field must fail");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(format!("{e:#}").contains("hostNetwrok"), "{e:#}");
    }
}
