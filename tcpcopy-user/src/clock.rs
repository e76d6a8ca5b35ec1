//! The clock the live path runs on: CLOCK_MONOTONIC, the clock of the XDP
//! program's capture times (`bpf_ktime_get_ns`), so capture times and
//! "now" compare directly.

use crate::engine::Instant;

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, as engine time.
pub fn now() -> Instant {
    Instant::from_micros(now_ns() / 1000)
}
