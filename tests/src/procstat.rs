//! What the kernel counts for a process: CPU time and wake-ups of all its
//! threads (`/proc/<pid>/task/*`).

/// CPU time (ns) and voluntary context switches (each one a sleep, so one
/// wake-up) of every thread of process `pid`, summed.
pub fn cpu_ns_and_wakeups(pid: u32) -> (u64, u64) {
    let (mut ns, mut wakeups) = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let dir = task.path();
        if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
            wakeups += s
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (ns, wakeups)
}
