//! What the kernel counts: CPU time and wake-ups of all a process's
//! threads (`/proc/<pid>/task/*`), and the run time of BPF programs
//! (`kernel.bpf_stats_enabled`, read with bpftool).

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

/// Run time and runs of the loaded programs named `name` (bpftool matches
/// the whole name, from BTF), from `bpftool prog show name`; zeros without
/// bpftool or statistics.
pub fn program_stats(name: &str) -> (u64, u64) {
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["prog", "show", "name", name])
        .output()
    else {
        return (0, 0);
    };
    // "... run_time_ns 1234 run_cnt 56" on each program's first line.
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let (mut ns, mut runs) = (0, 0);
    for pair in words.windows(2) {
        let value = pair[1].parse::<u64>().unwrap_or(0);
        match pair[0] {
            "run_time_ns" => ns += value,
            "run_cnt" => runs += value,
            _ => {}
        }
    }
    (ns, runs)
}

/// Keeps `kernel.bpf_stats_enabled` on while alive, then restores it.
pub struct BpfStats(String);

impl BpfStats {
    pub fn enable() -> Self {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(path).unwrap_or_else(|_| "0".into());
        let _ = std::fs::write(path, "1");
        Self(before.trim().to_owned())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}
