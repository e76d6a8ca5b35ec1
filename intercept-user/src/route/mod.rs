//! Routing: which tcpcopy connection gets each reported reply.
//!
//! [`Router`] owns the [`table::RouteTable`] (sessions announced by
//! CLIENT_ADD, or for IPv6 by an `Add6` announcement, per peer) and the
//! [`parking::ParkingLot`] (replies that came before their announcement).
//! A reply is routed by a key of its own family only: an IPv6 reply goes
//! to a peer that announced its session with `Add6` or to nobody, so a 1.x
//! peer (which never sends `Add6`) never gets one. It is pure logic: time comes in as an
//! argument and whether a peer still exists is asked of the caller.
//!
//! Like TCPCopy's intercept, only a SYN or RST without a route is parked:
//! those are the replies that can legitimately beat their CLIENT_ADD. Any
//! other reply without a route belongs to no live session of any peer and is
//! counted `unrouted`.

pub mod parking;
pub mod table;

use std::time::{Duration, Instant};

use self::{
    parking::{ParkRefused, ParkingLot},
    table::{PeerId, RouteTable, SessionKey},
};
use crate::capture::ring::ReplyRecord;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// The limits of the route table and the parking lot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterLimits {
    /// A route lives at least this long after its last use.
    pub route_idle: Duration,
    /// At most this many routes.
    pub max_routes: usize,
    /// A parked reply waits at most this long for its route.
    pub park_timeout: Duration,
    /// At most this many parked records in all.
    pub max_parked: usize,
    /// At most this many parked records per session.
    pub max_parked_per_session: usize,
}

impl Default for RouterLimits {
    fn default() -> Self {
        Self {
            route_idle: Duration::from_secs(600),
            max_routes: 1 << 20,
            park_timeout: Duration::from_secs(2),
            max_parked: 1 << 16,
            max_parked_per_session: 16,
        }
    }
}

/// What happened to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Goes to this peer.
    Deliver(PeerId),
    /// Waits for its CLIENT_ADD.
    Parked,
    /// No route and not a SYN or RST: dropped.
    Unrouted,
    /// Should have been parked, but the lot is full: dropped.
    ParkingFull(ParkRefused),
}

/// Running totals of the router.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// Records handed to a peer straight away.
    pub routed: u64,
    /// Records parked.
    pub parked: u64,
    /// Parked records handed to a peer when their route appeared.
    pub unparked: u64,
    /// Parked records whose route never came.
    pub expired: u64,
    /// Records without a route that were not parked.
    pub unrouted: u64,
    /// Records that could not be parked (bounds reached).
    pub park_refused: u64,
    /// Announcements (CLIENT_ADD and IPv6 ones).
    pub announced: u64,
    /// IPv6 announcements among them.
    pub announced6: u64,
    /// Routes aged out (idle, or to make room).
    pub routes_aged: u64,
}

pub struct Router {
    table: RouteTable,
    parking: ParkingLot,
    counts: RouteCounts,
}

impl Router {
    pub fn new(now: Instant, limits: RouterLimits) -> Self {
        Self {
            table: RouteTable::new(now, limits.route_idle, limits.max_routes),
            parking: ParkingLot::new(
                limits.park_timeout,
                limits.max_parked,
                limits.max_parked_per_session,
            ),
            counts: RouteCounts::default(),
        }
    }

    /// Decides where `rec` goes; `is_live` says whether a peer still exists.
    pub fn route(
        &mut self,
        rec: &ReplyRecord,
        now: Instant,
        is_live: impl Fn(PeerId) -> bool,
    ) -> Routed {
        let key = SessionKey::of_reply(rec);
        if let Some(peer) = self.table.lookup(&key, is_live) {
            self.counts.routed += 1;
            return Routed::Deliver(peer);
        }
        if rec.tcp_flags() & (TCP_SYN | TCP_RST) == 0 {
            self.counts.unrouted += 1;
            return Routed::Unrouted;
        }
        match self.parking.park(key, *rec, now) {
            Ok(()) => {
                self.counts.parked += 1;
                Routed::Parked
            }
            Err(refused) => {
                self.counts.park_refused += 1;
                Routed::ParkingFull(refused)
            }
        }
    }

    /// A CLIENT_ADD (or IPv6 announcement) from `peer`. Returns the records
    /// parked for the session, oldest first: the caller delivers them to
    /// `peer` before anything else.
    pub fn announce(&mut self, key: SessionKey, peer: PeerId, now: Instant) -> Vec<ReplyRecord> {
        self.counts.announced += 1;
        self.counts.announced6 += u64::from(key.is_ipv6());
        self.counts.routes_aged += self.table.announce(key, peer, now) as u64;
        let parked = self.parking.claim(&key);
        self.counts.unparked += parked.len() as u64;
        parked
    }

    /// A CLIENT_DEL from `peer`.
    pub fn withdraw(&mut self, key: &SessionKey, peer: PeerId) {
        self.table.withdraw(key, peer);
    }

    /// Expires parked records and idle routes.
    pub fn on_timer(&mut self, now: Instant) {
        self.counts.expired += self.parking.expire(now) as u64;
        self.counts.routes_aged += self.table.expire(now) as u64;
    }

    /// When [`on_timer`](Self::on_timer) next has work to do.
    pub fn next_deadline(&self) -> Instant {
        let routes = self.table.next_expiry();
        self.parking
            .next_expiry()
            .map_or(routes, |parked| parked.min(routes))
    }

    pub fn counts(&self) -> RouteCounts {
        self.counts
    }

    /// Routes held now.
    pub fn routes(&self) -> usize {
        self.table.len()
    }

    /// IPv6 routes held now.
    pub fn routes6(&self) -> usize {
        self.table.len6()
    }

    /// Records parked now.
    pub fn parked_now(&self) -> usize {
        self.parking.len()
    }
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::{HeaderRecord, HeaderRecord6};

    use super::*;
    use crate::route::table::{RouteKey, RouteKey6};

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    /// A reply from 198.18.2.2:80 to 198.18.1.2:`port` with `flags`.
    fn reply(port: u16, flags: u8, seq: u32) -> ReplyRecord {
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[12..16].copy_from_slice(&[198, 18, 2, 2]);
        ip[16..20].copy_from_slice(&[198, 18, 1, 2]);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        ReplyRecord::V4(HeaderRecord::from_headers(&ip, &tcp))
    }

    const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const TARGET6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A reply from [2001:db8:2::2]:80 to [2001:db8:1::2]:`port`.
    fn reply6(port: u16, flags: u8, seq: u32) -> ReplyRecord {
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&20u16.to_be_bytes());
        ip[6] = 6;
        ip[8..24].copy_from_slice(&TARGET6);
        ip[24..40].copy_from_slice(&CLIENT6);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        ReplyRecord::V6(HeaderRecord6::from_headers(&ip, 0, &tcp))
    }

    fn session(port: u16) -> SessionKey {
        SessionKey::V4(RouteKey {
            client_ip: [198, 18, 1, 2],
            client_port: port,
            target_ip: [198, 18, 2, 2],
            target_port: 80,
        })
    }

    fn session6(port: u16) -> SessionKey {
        SessionKey::V6(RouteKey6 {
            client_ip: CLIENT6,
            client_port: port,
            target_ip: TARGET6,
            target_port: 80,
        })
    }

    fn live(_: PeerId) -> bool {
        true
    }

    #[test]
    fn replies_go_to_the_peer_that_announced_their_session() {
        let now = Instant::now();
        let mut r = Router::new(now, RouterLimits::default());
        assert!(r.announce(session(1), A, now).is_empty());
        assert!(r.announce(session(2), B, now).is_empty());
        assert_eq!(r.route(&reply(1, 0x10, 1), now, live), Routed::Deliver(A));
        assert_eq!(r.route(&reply(2, 0x10, 1), now, live), Routed::Deliver(B));
        assert_eq!(r.counts().routed, 2);
    }

    #[test]
    fn syn_ack_before_client_add_is_parked_then_delivered_first() {
        let now = Instant::now();
        let mut r = Router::new(now, RouterLimits::default());
        let syn_ack = reply(1, 0x12, 100);
        let rst = reply(1, 0x14, 101);
        assert_eq!(r.route(&syn_ack, now, live), Routed::Parked);
        assert_eq!(r.route(&rst, now, live), Routed::Parked);
        assert_eq!(r.parked_now(), 2);
        assert_eq!(r.announce(session(1), A, now), vec![syn_ack, rst]);
        assert_eq!(r.parked_now(), 0);
        let c = r.counts();
        assert_eq!((c.parked, c.unparked, c.expired), (2, 2, 0));
    }

    #[test]
    fn data_without_a_route_is_unrouted_not_parked() {
        let now = Instant::now();
        let mut r = Router::new(now, RouterLimits::default());
        assert_eq!(r.route(&reply(1, 0x18, 1), now, live), Routed::Unrouted);
        assert!(r.announce(session(1), A, now).is_empty());
        assert_eq!(r.counts().unrouted, 1);
    }

    #[test]
    fn parked_replies_expire_when_no_route_comes() {
        let t0 = Instant::now();
        let limits = RouterLimits::default();
        let mut r = Router::new(t0, limits);
        r.route(&reply(1, 0x12, 1), t0, live);
        assert_eq!(r.next_deadline(), t0 + limits.park_timeout);
        r.on_timer(t0 + limits.park_timeout);
        assert_eq!(r.counts().expired, 1);
        assert!(
            r.announce(session(1), A, t0 + limits.park_timeout)
                .is_empty()
        );
    }

    #[test]
    fn a_departed_peer_loses_its_routes() {
        let now = Instant::now();
        let mut r = Router::new(now, RouterLimits::default());
        r.announce(session(1), A, now);
        let a_gone = |p| p != A;
        assert_eq!(r.route(&reply(1, 0x10, 1), now, a_gone), Routed::Unrouted);
        // Its SYN-ACKs wait for a new owner instead.
        assert_eq!(r.route(&reply(1, 0x12, 1), now, a_gone), Routed::Parked);
        assert_eq!(r.announce(session(1), B, now).len(), 1);
        assert_eq!(r.route(&reply(1, 0x10, 2), now, a_gone), Routed::Deliver(B));
    }

    #[test]
    fn a_full_parking_lot_refuses_and_counts() {
        let now = Instant::now();
        let limits = RouterLimits {
            max_parked: 2,
            ..RouterLimits::default()
        };
        let mut r = Router::new(now, limits);
        for port in 0..3 {
            r.route(&reply(port, 0x12, 1), now, live);
        }
        assert_eq!(r.counts().parked, 2);
        assert_eq!(r.counts().park_refused, 1);
    }

    #[test]
    fn ipv6_replies_go_only_to_the_peer_that_announced_them_with_add6() {
        let now = Instant::now();
        let mut r = Router::new(now, RouterLimits::default());
        // Peer A announced the IPv4 session of the same ports only.
        r.announce(session(1), A, now);
        assert_eq!(r.route(&reply6(1, 0x10, 1), now, live), Routed::Unrouted);
        r.announce(session6(1), B, now);
        assert_eq!(r.route(&reply6(1, 0x10, 2), now, live), Routed::Deliver(B));
        assert_eq!(r.route(&reply(1, 0x10, 2), now, live), Routed::Deliver(A));
        let c = r.counts();
        assert_eq!((c.announced, c.announced6, c.routed), (2, 1, 2));
        assert_eq!((r.routes(), r.routes6()), (2, 1));
    }

    #[test]
    fn an_ipv6_syn_ack_before_its_add6_is_parked_and_expires_alone() {
        let t0 = Instant::now();
        let limits = RouterLimits::default();
        let mut r = Router::new(t0, limits);
        let syn_ack6 = reply6(7, 0x12, 100);
        assert_eq!(r.route(&syn_ack6, t0, live), Routed::Parked);
        assert_eq!(r.route(&reply(7, 0x12, 100), t0, live), Routed::Parked);
        assert_eq!(r.parked_now(), 2);
        // The IPv4 session's announcement claims its own record only.
        assert_eq!(r.announce(session(7), A, t0), vec![reply(7, 0x12, 100)]);
        r.on_timer(t0 + limits.park_timeout);
        assert_eq!(r.counts().expired, 1);
        assert!(
            r.announce(session6(7), B, t0 + limits.park_timeout)
                .is_empty()
        );
        // Parked and claimed in time, it comes first.
        let t1 = t0 + limits.park_timeout;
        assert_eq!(r.route(&reply6(8, 0x12, 5), t1, live), Routed::Parked);
        assert_eq!(r.announce(session6(8), B, t1), vec![reply6(8, 0x12, 5)]);
    }
}
