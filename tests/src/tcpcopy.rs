//! Driving the real `tcpcopy` binary in the lab's online namespace, with
//! intercept on the assistant and servers on online and target.

use std::{
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use crate::{
    intercept::{StatsLine, last_stats},
    lab::{Host, Lab},
    wait::{DEADLINE, signal_and_wait, wait_until},
};

/// The `tcpcopy` binary (built once per test process, never stale).
pub fn tcpcopy_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| crate::workspace_binary("tcpcopy-user", "tcpcopy"))
}

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A `tcpcopy` process in the online namespace, logging to the lab
/// directory, with its statistics every second.
pub struct TcpcopyProcess {
    child: Option<Child>,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl TcpcopyProcess {
    /// Starts tcpcopy on the online host with `args` (plus logging and a
    /// 1 s statistics interval); returns once it says it is replaying.
    pub fn start(lab: &Lab, args: &[&str]) -> Self {
        Self::start_in(lab, Host::Online, args)
    }

    /// As [`TcpcopyProcess::start`], in `host` (e.g. a container).
    pub fn start_in(lab: &Lab, host: Host, args: &[&str]) -> Self {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let log = lab.dir().join(format!("tcpcopy-{n}.log"));
        let out = lab.dir().join(format!("tcpcopy-{n}.out"));
        let out_file = std::fs::File::create(&out).expect("create tcpcopy's output file");
        let bin = tcpcopy_binary().to_string_lossy().into_owned();
        let mut cmd = lab.command(host, &bin);
        cmd.arg("-l")
            .arg(&log)
            .args(["--stats-interval", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file);
        let child = cmd.spawn().expect("start tcpcopy");
        let mut me = Self {
            child: Some(child),
            log,
            out,
        };
        me.wait_log("replaying");
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok())
            .flatten()
    }

    /// Waits until the log has a line containing `needle`; panics with the
    /// log if tcpcopy exits first.
    pub fn wait_log(&mut self, needle: &str) -> String {
        wait_until(&format!("{needle:?} in tcpcopy's log"), DEADLINE, || {
            if let Some(status) = self.exited() {
                panic!(
                    "tcpcopy exited ({status}): {}\n{}",
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    self.log_text()
                );
            }
            let text = self.log_text();
            match text.lines().find(|l| l.contains(needle)) {
                Some(line) => Ok(line.to_owned()),
                None => Err(text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")),
            }
        })
    }

    /// Waits for a periodic `stats:` line satisfying `pred`; returns it.
    pub fn wait_stats(&mut self, what: &str, pred: impl Fn(&StatsLine) -> bool) -> StatsLine {
        wait_until(what, DEADLINE, || {
            if let Some(status) = self.exited() {
                panic!(
                    "tcpcopy exited ({status}) while waiting for {what}:\n{}",
                    self.log_text()
                );
            }
            match last_stats(&self.log_text(), " stats: ") {
                Some(s) if pred(&s) => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// SIGTERM, then waits for the exit; returns the status and the final
    /// statistics.
    pub fn stop(mut self) -> (ExitStatus, StatsLine) {
        let mut child = self.child.take().expect("running");
        let status = signal_and_wait(&mut child, libc::SIGTERM, "tcpcopy (SIGTERM)");
        let log = self.log_text();
        let stats = last_stats(&log, "final stats: ")
            .unwrap_or_else(|| panic!("no final stats in tcpcopy's log:\n{log}"));
        (status, stats)
    }

    /// SIGKILL (no cleanup in the process), then waits for the exit.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        child.wait().expect("reap tcpcopy")
    }
}

impl Drop for TcpcopyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tcpcopy run that ended by itself (offline mode).
pub struct Finished {
    pub status: ExitStatus,
    /// What it printed (the offline summary goes to stdout).
    pub stdout: String,
    pub log: String,
    pub stats: Option<StatsLine>,
}

impl Finished {
    /// A number from the offline summary line starting with `label`.
    pub fn summary_number(&self, label: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", self.stdout));
        line.trim_start()[label.len()..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{label:?}: {line:?}"))
    }
}

/// Runs tcpcopy in the online namespace until it exits by itself (within
/// `deadline`, else it is killed and the test fails with its log).
pub fn run_to_end(lab: &Lab, args: &[&str], deadline: std::time::Duration) -> Finished {
    let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    let log = lab.dir().join(format!("tcpcopy-{n}.log"));
    let out = lab.dir().join(format!("tcpcopy-{n}.out"));
    let err = lab.dir().join(format!("tcpcopy-{n}.err"));
    let bin = tcpcopy_binary().to_string_lossy().into_owned();
    let mut child = lab
        .command(Host::Online, &bin)
        .arg("-l")
        .arg(&log)
        .args(["--stats-interval", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create tcpcopy's stdout file"))
        .stderr(std::fs::File::create(&err).expect("create tcpcopy's stderr file"))
        .spawn()
        .expect("start tcpcopy");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tcpcopy") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tcpcopy {args:?} did not finish in {deadline:?}:\n{}\n{}\n{}",
                read(&out),
                read(&err),
                read(&log)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log_text = read(&log);
    Finished {
        status,
        stdout: read(&out) + &read(&err),
        stats: last_stats(&log_text, "final stats: "),
        log: log_text,
    }
}
