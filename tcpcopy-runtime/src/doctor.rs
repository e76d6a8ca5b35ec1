//! What the `doctor` commands of both daemons print: one line per check,
//! `PASS`, `WARN`, `FAIL`, `INFO` or `SKIP`, with what was found and, for
//! a problem, the fix. Exit status 1 when any check failed.

use std::fmt;

use crate::{
    netdev::Interface,
    xdp::{AttachMode, XdpError, XdpModePolicy},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// What the replay needs is there.
    Pass,
    /// Works, but not as well as it could (the fix says how).
    Warn,
    /// The replay cannot work this way (the fix says what to change).
    Fail,
    /// Worth knowing; nothing to fix.
    Info,
    /// Not checked (the line says why).
    Skip,
}

impl Verdict {
    const fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
            Self::Info => "INFO",
            Self::Skip => "SKIP",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub verdict: Verdict,
    /// What was checked, e.g. `XDP on eth0`.
    pub what: String,
    /// What was found.
    pub found: String,
    /// For a warning or a failure: what to do.
    pub fix: Option<String>,
}

/// The checks of one doctor run, in order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub title: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            checks: Vec::new(),
        }
    }

    fn push(&mut self, verdict: Verdict, what: &str, found: String, fix: Option<String>) {
        self.checks.push(Check {
            verdict,
            what: what.to_owned(),
            found,
            fix,
        });
    }

    pub fn pass(&mut self, what: &str, found: impl Into<String>) {
        self.push(Verdict::Pass, what, found.into(), None);
    }
    pub fn info(&mut self, what: &str, found: impl Into<String>) {
        self.push(Verdict::Info, what, found.into(), None);
    }
    pub fn skip(&mut self, what: &str, found: impl Into<String>) {
        self.push(Verdict::Skip, what, found.into(), None);
    }
    pub fn warn(&mut self, what: &str, found: impl Into<String>, fix: impl Into<String>) {
        self.push(Verdict::Warn, what, found.into(), Some(fix.into()));
    }
    pub fn fail(&mut self, what: &str, found: impl Into<String>, fix: impl Into<String>) {
        self.push(Verdict::Fail, what, found.into(), Some(fix.into()));
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }

    /// No check failed.
    pub fn ok(&self) -> bool {
        self.count(Verdict::Fail) == 0
    }
}

/// Checks that interface `dev` is there and up (`role`: what it is for,
/// e.g. "the one production traffic arrives on"); returns it, up or not,
/// for the checks that follow.
pub fn check_interface(r: &mut Report, what: &str, dev: &str, role: &str) -> Option<Interface> {
    let Some(iface) = Interface::lookup(dev) else {
        r.fail(
            what,
            "no such interface in this network namespace",
            format!("`ip link` lists the interfaces; {role}"),
        );
        return None;
    };
    if iface.up {
        r.pass(
            what,
            format!("up (operstate {}), MTU {}", iface.operstate, iface.mtu),
        );
    } else {
        r.fail(
            what,
            format!("down (operstate {})", iface.operstate),
            format!("ip link set {dev} up"),
        );
    }
    Some(iface)
}

/// Reports how a program attached to `dev` under `policy` (the caller
/// attached and detached it again); `daemon` names who would hold the
/// interface already (another XDP program makes the attach fail).
pub fn check_xdp_attach(
    r: &mut Report,
    dev: &str,
    policy: XdpModePolicy,
    attached: Result<AttachMode, XdpError>,
    daemon: &str,
) {
    let what = format!("XDP on {dev}");
    match attached {
        Ok(AttachMode::Native) => r.pass(&what, "native mode (attached and detached again)"),
        Ok(AttachMode::Generic) if policy == XdpModePolicy::Generic => {
            r.pass(&what, "generic mode, as asked (--xdp-mode generic)")
        }
        Ok(AttachMode::Generic) => r.warn(
            &what,
            "generic (skb) mode only: the driver refused native mode; this works, at a higher \
             cost per packet",
            "a driver with native XDP, or accept it (--xdp-mode generic says so)",
        ),
        Err(e) => {
            let text = e.to_string();
            if text.contains("busy") || text.contains("exists") {
                r.info(
                    &what,
                    format!(
                        "another XDP program is attached already ({daemon} running here?): {text}"
                    ),
                );
            } else {
                r.fail(
                    &what,
                    text,
                    format!("are we root? `ip link show {dev}` shows the programs attached"),
                );
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        for c in &self.checks {
            writeln!(f, "  {}  {}: {}", c.verdict.label(), c.what, c.found)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "        fix: {fix}")?;
            }
        }
        write!(
            f,
            "{} checks: {} passed, {} warnings, {} failed",
            self.checks.len(),
            self.count(Verdict::Pass),
            self.count(Verdict::Warn),
            self.count(Verdict::Fail)
        )?;
        if self.ok() {
            writeln!(f)
        } else {
            writeln!(f, " - fix the FAIL lines first")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_prints_one_line_per_check_and_fixes_under_problems() {
        let mut r = Report::new("doctor: test");
        r.pass("XDP on eth0", "native mode");
        r.fail("probe", "no answer in 3 s", "add the route");
        r.info("rp_filter", "0");
        let text = r.to_string();
        assert_eq!(
            text,
            "doctor: test\n  PASS  XDP on eth0: native mode\n  FAIL  probe: no answer in 3 s\n        \
             fix: add the route\n  INFO  rp_filter: 0\n3 checks: 1 passed, 0 warnings, 1 failed - \
             fix the FAIL lines first\n"
        );
        assert!(!r.ok());
    }
}
