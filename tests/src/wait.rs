//! Waiting on conditions with generous deadlines (never a bare fixed sleep).

use std::time::{Duration, Instant};

/// Default deadline for lab conditions: generous, because two shared cores
/// run clients, servers and daemons at once.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `probe` until it returns `Ok`, and returns that value. On timeout
/// panics naming `what` and the probe's last `Err` (what it saw).
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= deadline => {
                panic!(
                    "timed out after {:.1} s waiting for {what}; last saw: {seen}",
                    start.elapsed().as_secs_f64()
                )
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// Sends `signal` to our child `child` and waits (up to [`DEADLINE`]) for
/// it to exit; `what` names it in a timeout.
pub fn signal_and_wait(
    child: &mut std::process::Child,
    signal: i32,
    what: &str,
) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    wait_until(&format!("{what} to exit"), DEADLINE, || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_owned())
    })
}
