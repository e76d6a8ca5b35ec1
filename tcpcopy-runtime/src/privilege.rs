//! Giving up privileges once set up: loading and attaching the XDP and TC
//! programs, creating their maps and opening AF_XDP sockets need
//! CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON and CAP_SYS_RESOURCE
//! (or root); running them needs almost nothing (the programs, maps, rings
//! and sockets are file descriptors we hold). So once a daemon is set up it
//! keeps only the capabilities it still uses and drops every other one from
//! every set, the bounding set included (so not even an `execve` of a
//! setuid program gets them back).
//!
//! Capabilities belong to threads: call [`drop_capabilities`] while the
//! process has one thread, before the workers start; threads started after
//! it inherit the reduced sets.

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// Why dropping capabilities failed.
#[derive(Debug, thiserror::Error)]
#[error("dropping capabilities ({step}): {source}")]
pub struct PrivilegeError {
    step: &'static str,
    source: caps::errors::CapsError,
}

/// What [`drop_capabilities`] left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities still effective.
    pub kept: Vec<Capability>,
    /// Capabilities given up (they were permitted before).
    pub dropped: usize,
}

/// Keeps only those of `keep` that the calling thread has, in its
/// effective and permitted sets; empties the inheritable and ambient sets
/// and, where allowed (CAP_SETPCAP), takes everything else out of the
/// bounding set.
pub fn drop_capabilities(keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let err = |step| move |source| PrivilegeError { step, source };
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(err("reading the permitted set"))?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // The bounding set first: taking caps out of it needs CAP_SETPCAP,
    // which goes with the rest below.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding =
            caps::read(None, CapSet::Bounding).map_err(err("reading the bounding set"))?;
        for cap in bounding.difference(&kept) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(err("the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("the inheritable set"))?;
    // Effective must stay within permitted: shrink it first.
    caps::set(None, CapSet::Effective, &kept).map_err(err("the effective set"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(err("the permitted set"))?;
    let mut kept: Vec<Capability> = kept.into_iter().collect();
    kept.sort_by_key(|c| c.index());
    Ok(Dropped {
        dropped: permitted.len() - kept.len(),
        kept,
    })
}

/// What a set-up daemon does: keeps `keep` and what its BPF objects still
/// need on this kernel ([`bpf_capability_still_needed`]), drops the rest
/// ([`drop_capabilities`]) and logs what it kept.
pub fn keep_only(keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let mut keep = keep.to_vec();
    keep.extend(bpf_capability_still_needed());
    let d = drop_capabilities(&keep)?;
    tracing::info!(
        kept = names(&d.kept),
        dropped = d.dropped,
        "capabilities dropped"
    );
    Ok(d)
}

/// The capability operations on BPF objects we already hold still need, on
/// this kernel: none from Linux 6.5 on (map lookups and updates through a
/// file descriptor need no capability), CAP_BPF before that when
/// unprivileged BPF is disabled (Linux 5.8 to 6.4 check it at every bpf(2)
/// call), CAP_SYS_ADMIN on kernels older than CAP_BPF.
pub fn bpf_capability_still_needed() -> Option<Capability> {
    let unprivileged_disabled =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .map_or(true, |v| v.trim() != "0");
    if !unprivileged_disabled {
        return None;
    }
    match kernel_version() {
        Some(v) if v >= (6, 5) => None,
        Some(v) if v >= (5, 8) => Some(Capability::CAP_BPF),
        Some(_) => Some(Capability::CAP_SYS_ADMIN),
        // Unknown: keep what works everywhere.
        None => Some(Capability::CAP_SYS_ADMIN),
    }
}

/// The running kernel's (major, minor) version.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_release(&release)
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Names of `caps`, for the log.
pub fn names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "none".to_owned();
    }
    caps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v1300\n"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(parse_release("4.19"), Some((4, 19)));
        assert_eq!(parse_release("x"), None);
    }

    /// In a thread of its own (capabilities are per thread), so the test
    /// process keeps its own.
    #[test]
    fn a_thread_keeps_only_what_it_asked_for() {
        std::thread::spawn(|| {
            let before = caps::read(None, CapSet::Permitted).unwrap();
            let keep = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];
            let d = drop_capabilities(&keep).unwrap();
            let want: Vec<Capability> = keep
                .iter()
                .copied()
                .filter(|c| before.contains(c))
                .collect();
            let mut want = want;
            want.sort_by_key(|c| c.index());
            assert_eq!(d.kept, want);
            let effective = caps::read(None, CapSet::Effective).unwrap();
            let permitted = caps::read(None, CapSet::Permitted).unwrap();
            assert_eq!(effective, want.iter().copied().collect());
            assert_eq!(permitted, effective);
            assert!(caps::read(None, CapSet::Inheritable).unwrap().is_empty());
            assert!(caps::read(None, CapSet::Ambient).unwrap().is_empty());
            if before.contains(&Capability::CAP_SETPCAP) {
                let bounding = caps::read(None, CapSet::Bounding).unwrap();
                assert!(bounding.iter().all(|c| want.contains(c)), "{bounding:?}");
            }
            // Nothing comes back by asking again.
            let again = drop_capabilities(&[Capability::CAP_SYS_ADMIN]).unwrap();
            assert!(again.kept.is_empty());
        })
        .join()
        .unwrap();
    }
}
