//! A hashed timer wheel: O(1) arm, lazy cancel.
//!
//! One wheel per shard. An entry names a session slot and the slot's
//! generation; the session keeps its own deadlines. When an entry fires the
//! engine asks the session what is due, so an entry made stale by a later
//! deadline, or by the slot being reused (generation changed), is harmless.
//! The engine only adds an entry when a session's deadline moves earlier
//! than the one it already has an entry for, so entries per session stay few.
//!
//! Resolution is [`TICK_US`]; deadlines within [`SLOTS`] ticks go into the
//! wheel, later ones into a heap that feeds the wheel as they come near.
//! A bitmap of non-empty slots answers [`TimerWheel::next_deadline`] fast.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::time::Instant;

/// Wheel resolution in microseconds (1 ms).
pub const TICK_US: u64 = 1000;
/// Slots in the wheel (a ~16 s horizon: RTOs, response waits, holes and
/// the linger all stay in the wheel; only idle timeouts use the heap).
pub const SLOTS: usize = 16384;
const WORDS: usize = SLOTS / 64;

/// A due entry: `(session slot, generation)`.
pub type TimerEntry = (u32, u32);

pub struct TimerWheel {
    slots: Vec<Vec<TimerEntry>>,
    /// Bit `i` set: `slots[i]` is not empty.
    occupied: [u64; WORDS],
    /// The tick whose slot is processed next.
    current: u64,
    /// `(tick, slot, generation)` beyond the horizon.
    far: BinaryHeap<Reverse<(u64, u32, u32)>>,
    len: usize,
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new(Instant::ZERO)
    }
}

impl TimerWheel {
    pub fn new(now: Instant) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            current: now.micros() / TICK_US,
            far: BinaryHeap::new(),
            len: 0,
        }
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry due at `at` (rounded up to the next tick).
    pub fn arm(&mut self, entry: TimerEntry, at: Instant) {
        if at.is_never() {
            return;
        }
        let tick = at.micros().div_ceil(TICK_US).max(self.current);
        self.len += 1;
        if tick - self.current < SLOTS as u64 {
            self.put(tick, entry);
        } else {
            self.far.push(Reverse((tick, entry.0, entry.1)));
        }
    }

    fn put(&mut self, tick: u64, entry: TimerEntry) {
        let i = (tick % SLOTS as u64) as usize;
        self.slots[i].push(entry);
        self.occupied[i / 64] |= 1 << (i % 64);
    }

    /// Moves every entry due at or before `now` into `due`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<TimerEntry>) {
        let target = now.micros() / TICK_US;
        while self.current <= target && self.len > 0 {
            // Bring far entries within the horizon into the wheel.
            while let Some(&Reverse((tick, slot, generation))) = self.far.peek() {
                if tick - self.current.min(tick) >= SLOTS as u64 {
                    break;
                }
                self.far.pop();
                self.put(tick.max(self.current), (slot, generation));
            }
            let i = (self.current % SLOTS as u64) as usize;
            if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
                self.len -= self.slots[i].len();
                due.append(&mut self.slots[i]);
                self.occupied[i / 64] &= !(1 << (i % 64));
            }
            match self.next_occupied_tick() {
                Some(next) if next <= target => self.current = next,
                _ => self.current = target + 1,
            }
        }
        self.current = self.current.max(target + 1);
    }

    /// Distance from slot `start` to the first occupied slot at or after
    /// it (wrapping), if any.
    fn next_occupied_from(&self, start: usize) -> Option<u64> {
        let bit = start % 64;
        let first = self.occupied[start / 64] >> bit;
        if first != 0 {
            return Some(u64::from(first.trailing_zeros()));
        }
        let mut dist = 64 - bit;
        let mut word = (start / 64 + 1) % WORDS;
        while dist < SLOTS {
            let w = self.occupied[word];
            if w != 0 {
                return Some((dist + w.trailing_zeros() as usize) as u64);
            }
            dist += 64;
            word = (word + 1) % WORDS;
        }
        None
    }

    /// The first tick after `current` with a wheel entry or a far entry.
    fn next_occupied_tick(&self) -> Option<u64> {
        let far = self.far.peek().map(|Reverse((t, _, _))| *t);
        let start = ((self.current + 1) % SLOTS as u64) as usize;
        let near = self.next_occupied_from(start).map(|d| self.current + 1 + d);
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest time an entry is due (at tick resolution), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let i = (self.current % SLOTS as u64) as usize;
        let tick = if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
            Some(self.current)
        } else {
            self.next_occupied_tick()
        };
        tick.map(|t| Instant::from_micros(t * TICK_US))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn fire(w: &mut TimerWheel, now: Instant) -> Vec<TimerEntry> {
        let mut due = Vec::new();
        w.expire(now, &mut due);
        due.sort();
        due
    }

    #[test]
    fn fires_at_the_deadline_not_before() {
        let mut w = TimerWheel::new(ms(0));
        w.arm((1, 0), ms(100));
        w.arm((2, 0), ms(5));
        assert_eq!(w.next_deadline(), Some(ms(5)));
        assert_eq!(fire(&mut w, ms(4)), vec![]);
        assert_eq!(fire(&mut w, ms(5)), vec![(2, 0)]);
        assert_eq!(w.next_deadline(), Some(ms(100)));
        assert_eq!(fire(&mut w, ms(99)), vec![]);
        assert_eq!(fire(&mut w, ms(250)), vec![(1, 0)]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn far_deadlines_go_through_the_heap() {
        let mut w = TimerWheel::new(ms(0));
        w.arm((7, 1), ms(600_000));
        w.arm((8, 1), ms(6_000));
        assert_eq!(w.next_deadline(), Some(ms(6_000)));
        assert_eq!(fire(&mut w, ms(5_999)), vec![]);
        assert_eq!(fire(&mut w, ms(6_000)), vec![(8, 1)]);
        assert_eq!(fire(&mut w, ms(599_999)), vec![]);
        assert_eq!(fire(&mut w, ms(600_000)), vec![(7, 1)]);
    }

    #[test]
    fn past_deadlines_fire_at_once_and_wraparound_works() {
        let mut w = TimerWheel::new(ms(10_000));
        w.arm((1, 0), ms(3));
        assert_eq!(fire(&mut w, ms(10_000)), vec![(1, 0)]);
        // Many laps of the wheel.
        let mut now = 10_000;
        for i in 0..50u32 {
            now += SLOTS as u64 - 1;
            w.arm((i, 0), ms(now));
            assert_eq!(fire(&mut w, ms(now - 1)), vec![]);
            assert_eq!(fire(&mut w, ms(now)), vec![(i, 0)]);
        }
    }

    #[test]
    fn matches_a_sorted_reference_under_random_use() {
        let mut w = TimerWheel::new(ms(0));
        let mut reference: Vec<(u64, u32)> = Vec::new();
        let mut state = 99u64;
        let mut rnd = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut now = 0u64;
        for id in 0..5000u32 {
            let at = now + rnd(20_000);
            w.arm((id, 0), ms(at));
            reference.push((at, id));
            if rnd(3) == 0 {
                now += rnd(500);
                let mut want: Vec<TimerEntry> = reference
                    .iter()
                    .filter(|(t, _)| *t <= now)
                    .map(|(_, id)| (*id, 0))
                    .collect();
                reference.retain(|(t, _)| *t > now);
                want.sort();
                assert_eq!(fire(&mut w, ms(now)), want, "at {now}");
                let next = reference.iter().map(|(t, _)| *t).min();
                assert_eq!(w.next_deadline(), next.map(ms));
            }
        }
    }
}
