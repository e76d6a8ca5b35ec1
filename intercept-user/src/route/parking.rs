//! Parking: replies that arrive before the CLIENT_ADD of their session.
//!
//! tcpcopy announces a session before it sends the SYN, but the
//! announcement travels over TCP while the target's SYN-ACK (or RST) comes
//! through XDP, so the reply can win the race. Such records wait here, per
//! session and in arrival order, until the route appears (then they are
//! delivered first) or their time is up (then they are counted expired).
//!
//! Memory is bounded: at most `max_records` records in all and
//! `max_per_session` per session; a record beyond either bound is refused
//! (the caller counts it dropped). Expiry is in arrival order, O(1) per
//! record. Sessions and records of both families wait here alike.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::table::SessionKey;
use crate::capture::ring::ReplyRecord;

/// Why a record could not be parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkRefused {
    /// The lot holds `max_records` already.
    LotFull,
    /// This session has `max_per_session` records parked already.
    SessionFull,
}

struct Parked {
    records: Vec<ReplyRecord>,
    /// Tells this parking apart from an earlier one of the same session
    /// whose expiry entry may still be queued.
    ticket: u64,
}

/// Records waiting for their route.
pub struct ParkingLot {
    sessions: HashMap<SessionKey, Parked>,
    /// (deadline, session, ticket), oldest first.
    deadlines: VecDeque<(Instant, SessionKey, u64)>,
    records: usize,
    next_ticket: u64,
    timeout: Duration,
    max_records: usize,
    max_per_session: usize,
}

impl ParkingLot {
    pub fn new(timeout: Duration, max_records: usize, max_per_session: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            deadlines: VecDeque::new(),
            records: 0,
            next_ticket: 0,
            timeout,
            max_records,
            max_per_session: max_per_session.max(1),
        }
    }

    /// Records parked now.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Parks `rec` for `key`. A session's records all expire together,
    /// `timeout` after the first of them arrived.
    pub fn park(
        &mut self,
        key: SessionKey,
        rec: ReplyRecord,
        now: Instant,
    ) -> Result<(), ParkRefused> {
        if self.records >= self.max_records {
            return Err(ParkRefused::LotFull);
        }
        let parked = match self.sessions.get_mut(&key) {
            Some(parked) => parked,
            None => {
                self.compact_deadlines();
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.deadlines.push_back((now + self.timeout, key, ticket));
                self.sessions.entry(key).or_insert(Parked {
                    records: Vec::new(),
                    ticket,
                })
            }
        };
        if parked.records.len() >= self.max_per_session {
            return Err(ParkRefused::SessionFull);
        }
        parked.records.push(rec);
        self.records += 1;
        Ok(())
    }

    /// Takes the records parked for `key`, oldest first (its route appeared).
    pub fn claim(&mut self, key: &SessionKey) -> Vec<ReplyRecord> {
        match self.sessions.remove(key) {
            Some(parked) => {
                self.records -= parked.records.len();
                parked.records
            }
            None => Vec::new(),
        }
    }

    /// Drops the sessions whose time is up; returns how many records expired.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(deadline, key, ticket)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if self.sessions.get(&key).is_some_and(|p| p.ticket == ticket) {
                let parked = self.sessions.remove(&key).expect("just checked");
                self.records -= parked.records.len();
                expired += parked.records.len();
            }
        }
        expired
    }

    /// Deadlines of claimed sessions stay queued until they pass; when they
    /// outnumber the live ones, drop them (amortised O(1) per parking), so
    /// the queue stays within twice the record bound.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() >= 2 * self.max_records.max(1) {
            let sessions = &self.sessions;
            self.deadlines
                .retain(|(_, key, ticket)| sessions.get(key).is_some_and(|p| p.ticket == *ticket));
        }
    }

    /// When [`expire`](Self::expire) next has work to do, if ever.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.deadlines.front().map(|&(deadline, _, _)| deadline)
    }
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::{HeaderRecord, HeaderRecord6};

    use super::*;
    use crate::route::table::{RouteKey, RouteKey6};

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn key(port: u16) -> SessionKey {
        SessionKey::V4(RouteKey {
            client_ip: [198, 18, 1, 2],
            client_port: port,
            target_ip: [198, 18, 2, 2],
            target_port: 80,
        })
    }

    fn key6(port: u16) -> SessionKey {
        SessionKey::V6(RouteKey6 {
            client_ip: [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            client_port: port,
            target_ip: [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            target_port: 80,
        })
    }

    fn rec(n: u8) -> ReplyRecord {
        let mut r = HeaderRecord::default();
        r.bytes[63] = n;
        ReplyRecord::V4(r)
    }

    fn rec6(n: u8) -> ReplyRecord {
        let mut r = HeaderRecord6::default();
        r.bytes[87] = n;
        ReplyRecord::V6(r)
    }

    #[test]
    fn parked_records_are_claimed_in_arrival_order() {
        let now = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 100, 8);
        lot.park(key(1), rec(1), now).unwrap();
        lot.park(key(2), rec(2), now).unwrap();
        lot.park(key(1), rec(3), now).unwrap();
        assert_eq!(lot.len(), 3);
        assert_eq!(lot.claim(&key(1)), vec![rec(1), rec(3)]);
        assert_eq!(lot.claim(&key(1)), vec![]);
        assert_eq!(lot.len(), 1);
    }

    #[test]
    fn unclaimed_records_expire_after_the_timeout() {
        let t0 = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 100, 8);
        lot.park(key(1), rec(1), t0).unwrap();
        lot.park(key(2), rec(2), t0 + Duration::from_secs(1))
            .unwrap();
        lot.park(key(1), rec(3), t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(lot.next_expiry(), Some(t0 + TIMEOUT));
        assert_eq!(lot.expire(t0 + Duration::from_millis(1999)), 0);
        assert_eq!(lot.expire(t0 + TIMEOUT), 2, "key(1)'s two records");
        assert_eq!(lot.claim(&key(1)), vec![]);
        assert_eq!(lot.expire(t0 + Duration::from_secs(3)), 1);
        assert!(lot.is_empty());
        assert_eq!(lot.next_expiry(), None);
    }

    #[test]
    fn a_session_parked_again_after_a_claim_gets_a_fresh_deadline() {
        let t0 = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 100, 8);
        lot.park(key(1), rec(1), t0).unwrap();
        lot.claim(&key(1));
        let t1 = t0 + Duration::from_millis(1500);
        lot.park(key(1), rec(2), t1).unwrap();
        // The first parking's deadline passes: the new one must survive it.
        assert_eq!(lot.expire(t0 + TIMEOUT), 0);
        assert_eq!(lot.len(), 1);
        assert_eq!(lot.expire(t1 + TIMEOUT), 1);
    }

    #[test]
    fn memory_is_bounded_per_session_and_in_all() {
        let now = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 5, 2);
        lot.park(key(1), rec(1), now).unwrap();
        lot.park(key(1), rec(2), now).unwrap();
        assert_eq!(lot.park(key(1), rec(3), now), Err(ParkRefused::SessionFull));
        for port in 2..5 {
            lot.park(key(port), rec(0), now).unwrap();
        }
        assert_eq!(lot.park(key(9), rec(9), now), Err(ParkRefused::LotFull));
        assert_eq!(lot.len(), 5);
        lot.claim(&key(1));
        lot.park(key(9), rec(9), now).unwrap();
    }

    #[test]
    fn churn_of_claimed_sessions_keeps_the_deadline_queue_bounded() {
        let now = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 10, 2);
        for port in 0..10_000 {
            lot.park(key(port), rec(1), now).unwrap();
            assert_eq!(lot.claim(&key(port)).len(), 1);
            assert!(lot.deadlines.len() <= 20, "{} queued", lot.deadlines.len());
        }
        lot.park(key(1), rec(1), now).unwrap();
        assert_eq!(lot.expire(now + TIMEOUT), 1);
    }

    #[test]
    fn ipv6_sessions_park_and_expire_beside_ipv4_ones_within_one_bound() {
        let t0 = Instant::now();
        let mut lot = ParkingLot::new(TIMEOUT, 3, 8);
        lot.park(key6(1), rec6(1), t0).unwrap();
        lot.park(key(1), rec(2), t0).unwrap();
        lot.park(key6(1), rec6(3), t0).unwrap();
        assert_eq!(lot.park(key6(2), rec6(4), t0), Err(ParkRefused::LotFull));
        assert_eq!(lot.claim(&key6(1)), vec![rec6(1), rec6(3)]);
        assert_eq!(lot.claim(&key6(1)), vec![]);
        lot.park(key6(2), rec6(5), t0).unwrap();
        assert_eq!(lot.expire(t0 + TIMEOUT), 2);
        assert!(lot.is_empty());
    }
}
