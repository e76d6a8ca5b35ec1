//! Engine time. The engine never reads a clock: every entry point takes
//! `now`, so tests script time exactly.

use core::{fmt, ops};
use std::time::Duration;

/// A point in time, in microseconds on a monotonic clock the caller picks.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Self = Self(0);
    /// Later than any real time: "no deadline".
    pub const NEVER: Self = Self(u64::MAX);

    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms * 1000)
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1_000_000)
    }
    pub const fn micros(self) -> u64 {
        self.0
    }
    pub const fn is_never(self) -> bool {
        self.0 == u64::MAX
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// The latest time a sum can reach (one below [`Instant::NEVER`]).
const LATEST: u64 = u64::MAX - 1;

impl ops::Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        if self.is_never() {
            return self;
        }
        // u64 arithmetic (no u128 `as_micros`): this runs on every deadline.
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        Self(self.0.saturating_add(us).min(LATEST))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            write!(f, "never")
        } else {
            write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
        }
    }
}
