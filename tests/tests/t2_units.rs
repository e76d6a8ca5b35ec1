//! T2: both daemons started the way their shipped systemd units start them
//! (deploy/systemd, installed by the Debian packages), and a replay goes
//! through.
//!
//! No systemd runs on these machines, so the unit is read here
//! (`tcpcopy_packaging::unit`) and what it decides about the process is
//! applied by hand: the command line is `ExecStart=` with the shipped
//! environment file's variables substituted as systemd substitutes them
//! (only the lab's interfaces and addresses replaced); the binary is the
//! one the package installs at /usr/bin (copied into a scratch root); the
//! process runs as a dynamic user's uid with the unit's ambient
//! capabilities and bounding set, no_new_privs (`setpriv`), its
//! `LimitMEMLOCK=` (where the runner may raise it), `UMask=` and
//! `MemoryDenyWriteExecute=` (the kernel's PR_SET_MDWE); stdout and
//! stderr go to a file, as they would go to the journal. The mount-namespace options (ProtectSystem=, PrivateTmp=, ...)
//! are not applied; instead, a second test traces every system call both
//! daemons make through a replay and checks each against the unit's
//! `SystemCallFilter=` (expanded by `systemd-analyze syscall-filter`),
//! each socket against `RestrictAddressFamilies=`, and that no file is
//! opened for writing (ProtectSystem=strict) nor a device other than the
//! ones PrivateDevices= keeps.

use std::{
    collections::BTreeSet,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
};

use tcpcopy_packaging::unit::{self, Unit};
use tcpcopy_tests::{
    intercept::{StatsLine, intercept_binary, last_stats},
    lab::{ASSISTANT_IP, Host, Lab, ONLINE_IP, TARGET_IP},
    servers::{Nginx, start_nginx},
    tcpcopy::tcpcopy_binary,
    wait::{DEADLINE, signal_and_wait, wait_until},
};

/// Uids as systemd's DynamicUser= picks them (61184..=65519), one per
/// daemon; no passwd entry is needed for a uid that owns no file.
const TCPCOPY_UID: u32 = 61_184 + 17;
const INTERCEPT_UID: u32 = 61_184 + 18;

/// CAP_NET_ADMIN's bit.
const NET_ADMIN: u64 = 1 << 12;

/// The lab's values for the shipped environment files' variables.
fn lab_values(daemon: &str) -> Vec<(&'static str, String)> {
    match daemon {
        "tcpcopy" => vec![
            ("TCPCOPY_RULES", format!("80-{TARGET_IP}:80")),
            ("TCPCOPY_INTERCEPT", ASSISTANT_IP.to_string()),
            ("TCPCOPY_INPUT", "eth0".into()),
            ("TCPCOPY_OUTPUT", "eth1".into()),
            // The shipped -L, plus statistics every second for the test.
            ("TCPCOPY_OPTIONS", "-L --stats-interval 1".into()),
        ],
        "intercept" => vec![
            ("INTERCEPT_REPLY_PATH", "-i eth0".into()),
            ("INTERCEPT_TARGETS", format!("{TARGET_IP}:80")),
            (
                "INTERCEPT_OPTIONS",
                format!("-b {ASSISTANT_IP} --allow 198.18.2.0/24 --stats-interval 1"),
            ),
        ],
        _ => unreachable!(),
    }
}

/// A scratch root holding the daemons where the packages install them,
/// readable by any uid (the build's own directory may not be).
struct InstallRoot {
    dir: tempfile::TempDir,
}

impl InstallRoot {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tcpcopy-units-root-")
            .tempdir()
            .expect("a scratch root");
        let bin = dir.path().join("usr/bin");
        std::fs::create_dir_all(&bin).expect("usr/bin");
        for (name, built) in [
            ("tcpcopy", tcpcopy_binary()),
            ("intercept", intercept_binary()),
        ] {
            std::fs::copy(built, bin.join(name)).expect("install the binary");
        }
        for d in [dir.path(), &dir.path().join("usr"), &bin] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Self { dir }
    }

    /// Where `path` (absolute, as a unit names it) is in this root.
    fn path(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }
}

/// A daemon started as its unit starts it.
struct UnitProcess {
    daemon: &'static str,
    child: Option<Child>,
    /// stdout and stderr: what the journal would hold.
    journal: PathBuf,
    /// With a trace: strace's output file.
    trace: Option<PathBuf>,
}

impl UnitProcess {
    /// Starts `daemon` in `host` from its shipped unit and environment file
    /// (with the lab's values), under `strace -f` when `trace`.
    fn start(lab: &Lab, root: &InstallRoot, host: Host, daemon: &'static str, trace: bool) -> Self {
        let unit = Unit::read(&unit::unit_path(daemon)).expect("the shipped unit");
        let values = lab_values(daemon);
        let overrides: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut argv = unit::shipped_command(daemon, &overrides).expect("ExecStart= expands");
        let installed = format!("/usr/bin/{daemon}");
        assert_eq!(argv[0], installed, "the unit runs the packaged binary");
        argv[0] = root.path(&installed).display().to_string();

        assert!(unit.service_flag("DynamicUser"), "{daemon}: a dynamic user");
        let uid = if daemon == "tcpcopy" {
            TCPCOPY_UID
        } else {
            INTERCEPT_UID
        };
        let ambient = unit::setpriv_caps(&unit.service_words("AmbientCapabilities"));
        let bounding = unit::setpriv_caps(&unit.service_words("CapabilityBoundingSet"));
        let mut setpriv = vec![
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            format!("--inh-caps=-all,{ambient}"),
            format!("--ambient-caps=-all,{ambient}"),
            format!("--bounding-set=-all,{bounding}"),
        ];
        if unit.service_flag("NoNewPrivileges") {
            setpriv.push("--no-new-privs".into());
        }
        setpriv.push("--".into());
        setpriv.extend(argv);

        let journal = lab.dir().join(format!("{daemon}.journal"));
        let trace = trace.then(|| lab.dir().join(format!("{daemon}.strace")));
        let mut full = Vec::new();
        if let Some(trace) = &trace {
            full.extend(["strace", "-f", "-qq", "-s", "128", "-o"].map(String::from));
            full.push(trace.display().to_string());
        }
        full.extend(setpriv);
        let mut cmd = lab.command(host, &full[0]);
        cmd.args(&full[1..]);

        let memlock_unlimited = unit.service("LimitMEMLOCK") == Some("infinity");
        let umask = unit
            .service("UMask")
            .map(|m| u32::from_str_radix(m, 8).expect("an octal UMask="));
        let mdwe = unit.service_flag("MemoryDenyWriteExecute");
        // SAFETY: between fork and exec only async-signal-safe system calls
        // (setrlimit, umask, prctl) on the child's own state.
        unsafe {
            cmd.pre_exec(move || {
                if memlock_unlimited {
                    let inf = libc::rlimit {
                        rlim_cur: libc::RLIM_INFINITY,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    // Raising the hard limit needs CAP_SYS_RESOURCE, which
                    // systemd has and a test runner may not: then the
                    // runner's own (lower) limit stays, a stricter test.
                    libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf);
                }
                if let Some(mask) = umask {
                    libc::umask(mask);
                }
                // Inherited by every child and kept across execve.
                if mdwe
                    && libc::prctl(
                        libc::PR_SET_MDWE,
                        libc::PR_MDWE_REFUSE_EXEC_GAIN as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let file = std::fs::File::create(&journal).expect("the journal file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {daemon}: {e}"));
        Self {
            daemon,
            child: Some(child),
            journal,
            trace,
        }
    }

    fn journal_text(&self) -> String {
        std::fs::read_to_string(&self.journal).unwrap_or_default()
    }

    /// Panics with the journal if the process has exited.
    fn panic_if_exited(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok())
            .flatten()
        {
            panic!(
                "{} exited ({status}):\n{}",
                self.daemon,
                self.journal_text()
            );
        }
    }

    /// Waits for a line containing `needle`; panics with the journal if
    /// the process exits first.
    fn wait_journal(&mut self, needle: &str) -> String {
        let daemon = self.daemon;
        wait_until(&format!("{needle:?} from {daemon}"), DEADLINE, || {
            self.panic_if_exited();
            let text = self.journal_text();
            match text.lines().find(|l| l.contains(needle)) {
                Some(line) => Ok(line.to_owned()),
                None => Err(text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")),
            }
        })
    }

    /// Waits for a periodic `stats:` line satisfying `pred`.
    fn wait_stats(&mut self, what: &str, pred: impl Fn(&StatsLine) -> bool) -> StatsLine {
        wait_until(what, DEADLINE, || {
            self.panic_if_exited();
            match last_stats(&self.journal_text(), " stats: ") {
                Some(s) if pred(&s) => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// The daemon's own pid (under strace, the traced child's).
    fn daemon_pid(&self) -> u32 {
        let child = self.child.as_ref().expect("running").id();
        match &self.trace {
            None => child,
            Some(trace) => wait_until("the daemon's execve in the trace", DEADLINE, || {
                let text = std::fs::read_to_string(trace).unwrap_or_default();
                daemon_exec(&text, self.daemon)
                    .map(|(pid, _)| pid)
                    .ok_or_else(|| "no execve yet".to_owned())
            }),
        }
    }

    /// SIGTERM to the daemon, as `systemctl stop` sends it (KillSignal=);
    /// returns how it exited and its final statistics.
    fn stop(mut self) -> (ExitStatus, StatsLine, String) {
        let unit = Unit::read(&unit::unit_path(self.daemon)).expect("the shipped unit");
        assert_eq!(unit.service("KillSignal"), Some("SIGTERM"));
        let pid = self.daemon_pid();
        let mut child = self.child.take().expect("running");
        let status = if pid == child.id() {
            signal_and_wait(&mut child, libc::SIGTERM, self.daemon)
        } else {
            // SAFETY: kill(2) on the traced daemon, a descendant of ours.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let strace = wait_until("strace to exit with the daemon", DEADLINE, || {
                child
                    .try_wait()
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "still running".to_owned())
            });
            assert!(strace.success(), "strace exits as its tracee did: {strace}");
            strace
        };
        let journal = self.journal_text();
        let stats = last_stats(&journal, "final stats: ")
            .unwrap_or_else(|| panic!("no final stats from {}:\n{journal}", self.daemon));
        (status, stats, journal)
    }
}

impl Drop for UnitProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One field of /proc/<pid>/status.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// Starts intercept on the assistant and waits until it listens.
fn start_intercept(lab: &Lab, root: &InstallRoot, trace: bool) -> UnitProcess {
    let mut intercept = UnitProcess::start(lab, root, Host::Assistant, "intercept", trace);
    let listening = format!("{ASSISTANT_IP}:36524");
    wait_until("intercept listening", DEADLINE, || {
        intercept.panic_if_exited();
        let listeners = lab.run(Host::Assistant, &["ss", "-Hltn"]);
        if listeners.split_whitespace().any(|w| w == listening) {
            Ok(())
        } else {
            Err(format!("{listeners}\n{}", intercept.journal_text()))
        }
    });
    intercept
}

/// `n` requests from the client to production; returns once the target
/// logged as many, and checks they are production's.
fn replay_requests(lab: &Lab, online: &Nginx, target: &Nginx, n: usize) {
    for i in 0..n {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{ONLINE_IP}/unit/{i}"),
            ],
        );
    }
    let got = wait_until(&format!("{n} requests at the target"), DEADLINE, || {
        let t = target.requests();
        if t.len() >= n {
            Ok(t)
        } else {
            Err(format!("{} of {n}", t.len()))
        }
    });
    let mut got = got;
    let mut want = online.requests();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the target saw exactly production's requests");
}

#[test]
fn daemons_started_as_their_units_start_them_replay_and_stop_cleanly() {
    let lab = Lab::new();
    let root = InstallRoot::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let mut intercept = start_intercept(&lab, &root, false);
    let mut tcpcopy = UnitProcess::start(&lab, &root, Host::Online, "tcpcopy", false);
    tcpcopy.wait_journal("replaying");
    intercept.wait_journal("capabilities dropped");

    // Who they run as: the dynamic user, unable to gain privileges, and
    // once set up only what each keeps (tcpcopy: CAP_NET_ADMIN; intercept
    // with XDP on a TCX kernel: nothing), within the unit's bounding set.
    for (p, uid, kept) in [
        (&tcpcopy, TCPCOPY_UID, NET_ADMIN),
        (&intercept, INTERCEPT_UID, 0),
    ] {
        let pid = p.daemon_pid();
        let uids = status_field(pid, "Uid:");
        assert!(
            uids.split_whitespace().all(|u| u == uid.to_string()),
            "{}: uids {uids}",
            p.daemon
        );
        assert_eq!(status_field(pid, "NoNewPrivs:"), "1", "{}", p.daemon);
        let eff = u64::from_str_radix(&status_field(pid, "CapEff:"), 16).unwrap();
        assert_eq!(eff, kept, "{}: capabilities after setup", p.daemon);
        assert_eq!(
            status_field(pid, "CapAmb:"),
            "0000000000000000",
            "{}",
            p.daemon
        );
        let unit = Unit::read(&unit::unit_path(p.daemon)).unwrap();
        let bounding = u64::from_str_radix(&status_field(pid, "CapBnd:"), 16).unwrap();
        assert_eq!(
            bounding.count_ones() as usize,
            unit.service_words("CapabilityBoundingSet").len(),
            "{}: the unit's bounding set",
            p.daemon
        );
    }

    replay_requests(&lab, &online, &target, 10);
    tcpcopy.wait_stats("every session completed", |s| s["closed_completed"] >= 10);
    let (status, stats, journal) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit {status}:\n{journal}");
    assert_eq!(stats["closed_completed"], 10, "{stats:?}");
    assert_eq!(stats["send_dropped"], 0, "{stats:?}");
    let (status, stats, journal) = intercept.stop();
    assert!(status.success(), "intercept exit {status}:\n{journal}");
    assert!(stats["delivered"] > 0, "{stats:?}");
}

/// The groups and names of `SystemCallFilter=`, expanded to system calls
/// by systemd's own tables.
fn allowed_syscalls(unit: &Unit) -> BTreeSet<String> {
    let listing = std::process::Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze (cargo xtask setup installs systemd)");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    // "@group" headers, then indented members (names or @groups).
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut current = None;
    for line in listing.lines() {
        if let Some(group) = line.strip_prefix('@') {
            current = Some(format!("@{}", group.trim()));
            continue;
        }
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if let Some(g) = &current {
            groups.entry(g.clone()).or_default().push(item.to_owned());
        }
    }
    fn expand(
        item: &str,
        groups: &std::collections::BTreeMap<String, Vec<String>>,
        out: &mut BTreeSet<String>,
    ) {
        match groups.get(item) {
            Some(members) => {
                for m in members {
                    expand(m, groups, out);
                }
            }
            None => {
                assert!(!item.starts_with('@'), "unknown group {item}");
                out.insert(item.to_owned());
            }
        }
    }
    let mut allowed = BTreeSet::new();
    for item in unit.service_words("SystemCallFilter") {
        assert!(!item.starts_with('~'), "allow lists only");
        expand(item, &groups, &mut allowed);
    }
    assert!(allowed.len() > 200, "{allowed:?}");
    allowed
}

/// The pid and line number of `daemon`'s own execve in a trace.
fn daemon_exec(trace: &str, daemon: &str) -> Option<(u32, usize)> {
    let needle = format!("/usr/bin/{daemon}\", [");
    trace.lines().enumerate().find_map(|(i, l)| {
        let (pid, call) = l.split_once(' ')?;
        (call.trim_start().starts_with("execve(")
            && call.contains(&needle)
            && call.ends_with("= 0"))
        .then(|| Some((pid.parse().ok()?, i)))
        .flatten()
    })
}

/// What a daemon did, from its trace (from its own execve on, every
/// thread): system call names, socket families, files opened for writing
/// and devices opened.
#[derive(Debug, Default)]
struct Behaviour {
    syscalls: BTreeSet<String>,
    families: BTreeSet<String>,
    written: BTreeSet<String>,
    devices: BTreeSet<String>,
}

fn behaviour(trace: &Path, daemon: &str) -> Behaviour {
    let text = std::fs::read_to_string(trace).expect("the trace");
    let (_, start) = daemon_exec(&text, daemon).expect("the daemon's execve");
    let mut b = Behaviour::default();
    for line in text.lines().skip(start + 1) {
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        // "<... poll resumed>", "+++ exited", "--- SIGTERM": no new call.
        if call.starts_with(['<', '+', '-']) {
            continue;
        }
        let Some(name) = call
            .split('(')
            .next()
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            continue;
        };
        b.syscalls.insert(name.to_owned());
        let args = &call[name.len() + 1..];
        if name == "socket" {
            b.families
                .insert(args.split(',').next().unwrap_or_default().to_owned());
        }
        if name == "openat" || name == "open" {
            let path = args.split('"').nth(1).unwrap_or_default().to_owned();
            let writes = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                .iter()
                .any(|f| args.contains(f));
            if path.starts_with("/dev/") {
                b.devices.insert(path.clone());
            }
            if writes && !call.contains("= -1") {
                b.written.insert(path);
            }
        }
    }
    b
}

#[test]
fn units_filters_allow_every_call_socket_and_file_the_daemons_use() {
    let lab = Lab::new();
    let root = InstallRoot::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let mut intercept = start_intercept(&lab, &root, true);
    let mut tcpcopy = UnitProcess::start(&lab, &root, Host::Online, "tcpcopy", true);
    tcpcopy.wait_journal("replaying");
    intercept.wait_journal("capabilities dropped");
    replay_requests(&lab, &online, &target, 5);
    let tcpcopy_trace = tcpcopy.trace.clone().expect("traced");
    let intercept_trace = intercept.trace.clone().expect("traced");
    let (status, _, journal) = tcpcopy.stop();
    assert!(status.success(), "{journal}");
    let (status, _, journal) = intercept.stop();
    assert!(status.success(), "{journal}");

    for (daemon, trace) in [("tcpcopy", tcpcopy_trace), ("intercept", intercept_trace)] {
        let unit = Unit::read(&unit::unit_path(daemon)).unwrap();
        let b = behaviour(&trace, daemon);
        println!("{daemon}: {b:?}");
        assert!(
            b.syscalls.contains("bpf"),
            "{daemon}: the trace covers setup"
        );
        let allowed = allowed_syscalls(&unit);
        let refused: Vec<&String> = b.syscalls.difference(&allowed).collect();
        assert!(
            refused.is_empty(),
            "{daemon}: SystemCallFilter= would refuse {refused:?}"
        );
        let families: BTreeSet<String> = unit
            .service_words("RestrictAddressFamilies")
            .iter()
            .map(|f| f.to_string())
            .collect();
        let refused: Vec<&String> = b.families.difference(&families).collect();
        assert!(
            refused.is_empty(),
            "{daemon}: RestrictAddressFamilies= would refuse {refused:?}"
        );
        if daemon == "tcpcopy" {
            assert!(b.families.contains("AF_XDP"), "the AF_XDP sender: {b:?}");
        }
        // ProtectSystem=strict, ProtectKernelTunables=: nothing written.
        let written: Vec<&String> = b.written.iter().filter(|p| *p != "/dev/null").collect();
        assert!(
            written.is_empty(),
            "{daemon}: opened for writing: {written:?}"
        );
        // PrivateDevices= keeps /dev/null, zero, full, random, urandom, tty.
        let kept = [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
        ];
        let devices: Vec<&String> = b
            .devices
            .iter()
            .filter(|d| !kept.contains(&d.as_str()))
            .collect();
        assert!(
            devices.is_empty(),
            "{daemon}: PrivateDevices= hides {devices:?}"
        );
    }
}
