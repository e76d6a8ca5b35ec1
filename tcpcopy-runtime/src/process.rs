//! Process plumbing shared by the daemons: stop on SIGINT/SIGTERM, run in
//! the background (`-d`), the pid file (`-P`) and logging (`-l`).
//!
//! Signals never run daemon code: the handler writes a byte into a pipe
//! ([`StopSignal`]) that the event loop polls with everything else, so a
//! signal at any moment ends the loop at its next turn.

use std::{
    fs,
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, RawFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(io::Error),
    #[error("cannot run in the background: {what}: {source}")]
    Daemonize {
        what: &'static str,
        source: io::Error,
    },
    #[error("pid file {}: {source}", path.display())]
    PidFile { path: PathBuf, source: io::Error },
    #[error(
        "pid file {} names process {pid}, which is still running: is another instance running? \
         (stop it, or remove the file if that process is not one)",
        path.display()
    )]
    AlreadyRunning { path: PathBuf, pid: u32 },
    #[error("cannot open the log file {}: {source}", path.display())]
    LogFile { path: PathBuf, source: io::Error },
}

/// Logs to `log` (appending) or stderr; `RUST_LOG` overrides the level.
pub fn init_logging(log: Option<&Path>) -> Result<(), ProcessError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log {
        Some(path) => {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ProcessError::LogFile {
                    path: path.to_owned(),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// The read end of the stop pipe: readable once a stop was asked for.
pub struct StopSignal {
    reader: UnixStream,
}

/// Asks a [`StopSignal`]'s loop to stop (for embedding the daemon).
pub struct StopTrigger {
    writer: UnixStream,
}

impl StopSignal {
    /// A stop pipe triggered by hand.
    pub fn new() -> io::Result<(Self, StopTrigger)> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok((Self { reader }, StopTrigger { writer }))
    }

    /// A stop pipe triggered by SIGINT and SIGTERM.
    pub fn on_signals() -> Result<Self, ProcessError> {
        let (stop, trigger) = Self::new().map_err(ProcessError::Signals)?;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let writer = trigger.writer.try_clone().map_err(ProcessError::Signals)?;
            signal_hook::low_level::pipe::register(signal, writer)
                .map_err(ProcessError::Signals)?;
        }
        Ok(stop)
    }

    /// Whether a stop was asked for (consumes what the pipe holds).
    pub fn is_triggered(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let mut seen = false;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true, // every writer gone: nobody can stop us later
                Ok(_) => seen = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return seen,
            }
        }
    }
}

impl AsRawFd for StopSignal {
    fn as_raw_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }
}

impl StopTrigger {
    pub fn stop(&self) {
        // A full pipe already holds a stop request.
        let _ = (&self.writer).write(&[1]);
    }
}

/// Continues in a background child process: the parent exits 0 at once, the
/// child starts a new session without a terminal, works from `/` and has
/// stdin, stdout and stderr on `/dev/null`. Open the log and make paths
/// absolute first.
///
/// # Safety
/// The process must be single-threaded (fork copies only the calling
/// thread), and the parent's exit runs no destructors: nothing may depend on
/// the parent's `Drop`s (the child keeps every file descriptor, so loaded
/// XDP programs and links stay with it).
pub unsafe fn daemonize() -> Result<(), ProcessError> {
    let fail = |what| ProcessError::Daemonize {
        what,
        source: io::Error::last_os_error(),
    };
    // SAFETY: single-threaded per this function's contract.
    match unsafe { libc::fork() } {
        -1 => return Err(fail("fork")),
        0 => {}
        // SAFETY: leave without running the parent's destructors.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain syscalls on our own process.
    if unsafe { libc::setsid() } == -1 {
        return Err(fail("setsid"));
    }
    std::env::set_current_dir("/").map_err(|source| ProcessError::Daemonize {
        what: "chdir /",
        source,
    })?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| ProcessError::Daemonize {
            what: "open /dev/null",
            source,
        })?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors of our own process.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(fail("dup2 /dev/null"));
        }
    }
    Ok(())
}

/// The pid file: written on creation, removed on drop (if it still names us).
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's id to `path`. Refuses when the file names
    /// another process that is still alive.
    pub fn create(path: &Path) -> Result<Self, ProcessError> {
        let pid = std::process::id();
        if let Ok(text) = fs::read_to_string(path)
            && let Ok(other) = text.trim().parse::<u32>()
            && other != pid
            && Path::new(&format!("/proc/{other}")).exists()
        {
            return Err(ProcessError::AlreadyRunning {
                path: path.to_owned(),
                pid: other,
            });
        }
        fs::write(path, format!("{pid}\n")).map_err(|source| ProcessError::PidFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            pid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>() == Ok(self.pid));
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_trigger_wakes_the_signal() {
        let (mut stop, trigger) = StopSignal::new().unwrap();
        assert!(!stop.is_triggered());
        trigger.stop();
        trigger.stop();
        assert!(stop.is_triggered());
        assert!(!stop.is_triggered(), "consumed");
        drop(trigger);
        assert!(stop.is_triggered(), "no writer left");
    }

    #[test]
    fn the_pid_file_holds_our_pid_and_goes_away() {
        let dir = std::env::temp_dir().join(format!("tcpcopy-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("daemon.pid");
        {
            let pid = PidFile::create(&path).unwrap();
            assert_eq!(
                fs::read_to_string(pid.path()).unwrap(),
                format!("{}\n", std::process::id())
            );
        }
        assert!(!path.exists());
        // A stale file (no such process) is overwritten ...
        fs::write(&path, "4194304999\n").unwrap();
        drop(PidFile::create(&path).unwrap());
        // ... a live one is not: pid 1 always exists.
        fs::write(&path, "1\n").unwrap();
        let err = PidFile::create(&path).err().expect("pid 1 is alive");
        assert!(err.to_string().contains("still running"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
