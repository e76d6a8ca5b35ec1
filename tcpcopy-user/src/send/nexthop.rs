//! Next-hop MAC resolution: which Ethernet address a frame for an IPv4 or
//! IPv6 destination goes to.
//!
//! Either fixed (`-x ...@mac`: every frame goes to that MAC) or learned
//! from the kernel: the route for the destination out of the egress
//! interface (gateway or on-link), then that next hop's neighbour entry.
//! Answers are cached per destination, so targets behind different next
//! hops each get their own, and re-checked every
//! [`ResolvePolicy::refresh`] so a changed neighbour is picked up. A
//! destination without a usable entry makes the kernel resolve it (an ARP
//! request or an IPv6 neighbour solicitation to the next hop, nothing else) and is asked again after
//! [`ResolvePolicy::retry`]; frames meanwhile have no next hop (the sender
//! drops and counts them).
//!
//! Invariants: at most one kernel lookup per destination per `retry` (or
//! `refresh` once known), whatever the packet rate; the cache never holds
//! more than [`ResolvePolicy::max_entries`] destinations. The same
//! destination twice in a row costs one comparison.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{
    ethernet::MacAddr,
    netlink::{RouteAnswer, RouteNetlink},
};

/// What the kernel's tables say about a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The next hop and its MAC. `confirm`: the entry is stale; the kernel
    /// should re-confirm it (the MAC is still the one it would use).
    Found {
        next_hop: IpAddr,
        mac: MacAddr,
        confirm: bool,
    },
    /// The next hop has no usable neighbour entry (none yet, incomplete,
    /// failed).
    Unresolved { next_hop: IpAddr },
    /// No route out of the egress interface reaches it.
    NoRoute(NoRouteReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRouteReason {
    /// The destination is an address of this host.
    Local,
    /// The route says blackhole, unreachable, prohibit, broadcast...
    RouteType(u8),
    /// The route's next hop is on another interface.
    OtherInterface(u32),
}

/// Where next-hop answers come from: the kernel (netlink), or a script in
/// tests.
pub trait NeighbourSource {
    fn lookup(&mut self, dst: IpAddr) -> io::Result<Lookup>;
    /// Asks the kernel to resolve (or re-confirm) `next_hop`.
    fn solicit(&mut self, next_hop: IpAddr) -> io::Result<()>;
}

/// The kernel's route and neighbour tables for one egress interface, in
/// the network namespace the socket was opened in.
pub struct KernelNeighbours {
    netlink: RouteNetlink,
    ifindex: u32,
}

impl KernelNeighbours {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        Ok(Self {
            netlink: RouteNetlink::open()?,
            ifindex,
        })
    }
}

impl NeighbourSource for KernelNeighbours {
    fn lookup(&mut self, dst: IpAddr) -> io::Result<Lookup> {
        let next_hop = match self.netlink.route_get(dst, self.ifindex)? {
            RouteAnswer::Unicast { oif, .. } if oif != self.ifindex => {
                return Ok(Lookup::NoRoute(NoRouteReason::OtherInterface(oif)));
            }
            RouteAnswer::Unicast { gateway, .. } => gateway.unwrap_or(dst),
            RouteAnswer::Local => return Ok(Lookup::NoRoute(NoRouteReason::Local)),
            RouteAnswer::Other(t) => return Ok(Lookup::NoRoute(NoRouteReason::RouteType(t))),
        };
        Ok(match self.netlink.neighbour_get(next_hop, self.ifindex)? {
            Some(entry) if entry.state.is_usable() => match entry.mac {
                Some(mac) => Lookup::Found {
                    next_hop,
                    mac,
                    confirm: entry.state.wants_confirmation(),
                },
                None => Lookup::Unresolved { next_hop },
            },
            _ => Lookup::Unresolved { next_hop },
        })
    }

    fn solicit(&mut self, next_hop: IpAddr) -> io::Result<()> {
        self.netlink.neighbour_use(next_hop, self.ifindex)
    }
}

/// How often the cache asks the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvePolicy {
    /// A known MAC is re-checked this often.
    pub refresh: Duration,
    /// A destination without a MAC is asked again this often.
    pub retry: Duration,
    /// Destinations remembered at most.
    pub max_entries: usize,
}

impl Default for ResolvePolicy {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(3),
            retry: Duration::from_millis(50),
            max_entries: 1024,
        }
    }
}

/// What the resolver did (for the sender's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveCounters {
    /// Kernel lookups (route + neighbour).
    pub lookups: u64,
    /// Destinations that got a MAC (first time, or again after losing it).
    pub resolved: u64,
    /// Known MACs that changed on a refresh.
    pub changed: u64,
    /// Resolution requests sent to the kernel.
    pub solicited: u64,
    /// Lookups or requests that failed (netlink errors, no route).
    pub failed: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Option<MacAddr>,
    check_at: Instant,
}

/// Per-destination cache over a [`NeighbourSource`].
pub struct NextHopCache<S> {
    source: S,
    policy: ResolvePolicy,
    entries: HashMap<IpAddr, Entry>,
    /// The last answer: `(dst, mac, valid until)`.
    last: Option<(IpAddr, MacAddr, Instant)>,
    counters: ResolveCounters,
}

impl<S: NeighbourSource> NextHopCache<S> {
    pub fn new(source: S, policy: ResolvePolicy) -> Self {
        Self {
            source,
            policy,
            entries: HashMap::new(),
            last: None,
            counters: ResolveCounters::default(),
        }
    }

    pub fn counters(&self) -> ResolveCounters {
        self.counters
    }

    /// The MAC for `dst` at `now`, asking the kernel when the cached answer
    /// is due for a check.
    #[inline]
    pub fn mac_for(&mut self, dst: IpAddr, now: Instant) -> Option<MacAddr> {
        if let Some((d, mac, until)) = self.last
            && d == dst
            && now < until
        {
            return Some(mac);
        }
        if let Some(e) = self.entries.get(&dst)
            && now < e.check_at
        {
            if let Some(mac) = e.mac {
                self.last = Some((dst, mac, e.check_at));
            }
            return e.mac;
        }
        self.refresh(dst, now)
    }

    /// Forgets every answer: the next frame to each destination asks the
    /// kernel again.
    pub fn invalidate(&mut self) {
        self.entries.clear();
        self.last = None;
    }

    fn refresh(&mut self, dst: IpAddr, now: Instant) -> Option<MacAddr> {
        self.counters.lookups += 1;
        let previous = self.entries.get(&dst).and_then(|e| e.mac);
        let (mac, wait) = match self.source.lookup(dst) {
            Ok(Lookup::Found {
                next_hop,
                mac,
                confirm,
            }) => {
                if confirm {
                    self.solicit(next_hop);
                }
                match previous {
                    None => {
                        self.counters.resolved += 1;
                        tracing::debug!(%dst, %next_hop, %mac, "next hop resolved");
                    }
                    Some(old) if old != mac => {
                        self.counters.changed += 1;
                        tracing::info!(%dst, %next_hop, %old, new = %mac, "next hop MAC changed");
                    }
                    Some(_) => {}
                }
                (Some(mac), self.policy.refresh)
            }
            Ok(Lookup::Unresolved { next_hop }) => {
                if previous.is_some() {
                    tracing::warn!(%dst, %next_hop, "next hop lost its neighbour entry; resolving again");
                }
                self.solicit(next_hop);
                (None, self.policy.retry)
            }
            Ok(Lookup::NoRoute(why)) => {
                self.counters.failed += 1;
                if self.entries.get(&dst).is_none_or(|e| e.mac.is_some()) {
                    tracing::warn!(%dst, ?why, "no next hop out of the egress interface; frames to it are dropped");
                }
                (None, self.policy.refresh.min(Duration::from_secs(1)))
            }
            Err(e) => {
                self.counters.failed += 1;
                // A known MAC outlives a failed lookup (a netlink hiccup is
                // no reason to stop sending); it is asked again soon.
                if previous.is_none() && !self.entries.contains_key(&dst) {
                    tracing::warn!(%dst, error = %e, "next-hop lookup failed; frames to it are dropped until it succeeds");
                } else {
                    tracing::debug!(%dst, error = %e, "next-hop lookup failed");
                }
                (previous, self.policy.retry)
            }
        };
        if !self.entries.contains_key(&dst) && self.entries.len() >= self.policy.max_entries {
            self.entries.retain(|_, e| e.check_at > now);
            if self.entries.len() >= self.policy.max_entries {
                self.entries.clear();
            }
        }
        let check_at = now + wait;
        self.entries.insert(dst, Entry { mac, check_at });
        self.last = mac.map(|m| (dst, m, check_at));
        mac
    }

    fn solicit(&mut self, next_hop: IpAddr) {
        self.counters.solicited += 1;
        if let Err(e) = self.source.solicit(next_hop) {
            self.counters.failed += 1;
            tracing::debug!(%next_hop, error = %e, "asking the kernel to resolve failed");
        }
    }
}

/// The next-hop policy of one sender.
pub enum NextHops {
    /// Every frame goes to this MAC (`-x ...@mac`).
    Fixed(MacAddr),
    /// Learned from the kernel, per destination.
    Kernel(Box<NextHopCache<KernelNeighbours>>),
}

impl NextHops {
    #[inline]
    pub fn mac_for(&mut self, dst: IpAddr, now: Instant) -> Option<MacAddr> {
        match self {
            Self::Fixed(mac) => Some(*mac),
            Self::Kernel(cache) => cache.mac_for(dst, now),
        }
    }

    pub fn counters(&self) -> ResolveCounters {
        match self {
            Self::Fixed(_) => ResolveCounters::default(),
            Self::Kernel(cache) => cache.counters(),
        }
    }

    /// Resolves `dst` now, waiting up to `wait` for the kernel (at start,
    /// so the first frames are not dropped). Blocks the caller.
    pub fn resolve_now(&mut self, dst: IpAddr, wait: Duration) -> Option<MacAddr> {
        let start = Instant::now();
        loop {
            if let Some(mac) = self.mac_for(dst, Instant::now()) {
                return Some(mac);
            }
            if start.elapsed() >= wait {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5).min(wait));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::VecDeque, rc::Rc};

    use std::net::Ipv4Addr;

    use super::*;

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 3, 9));
    const GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 254));
    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    /// A kernel that answers from a script and records what was asked.
    #[derive(Clone, Default)]
    struct Script(Rc<RefCell<ScriptState>>);

    #[derive(Default)]
    struct ScriptState {
        answers: VecDeque<io::Result<Lookup>>,
        asked: Vec<IpAddr>,
        solicited: Vec<IpAddr>,
    }

    impl Script {
        fn answer(&self, a: io::Result<Lookup>) {
            self.0.borrow_mut().answers.push_back(a);
        }
        fn asked(&self) -> Vec<IpAddr> {
            self.0.borrow().asked.clone()
        }
        fn solicited(&self) -> Vec<IpAddr> {
            self.0.borrow().solicited.clone()
        }
    }

    impl NeighbourSource for Script {
        fn lookup(&mut self, dst: IpAddr) -> io::Result<Lookup> {
            let mut s = self.0.borrow_mut();
            s.asked.push(dst);
            s.answers.pop_front().expect("an unexpected kernel lookup")
        }
        fn solicit(&mut self, next_hop: IpAddr) -> io::Result<()> {
            self.0.borrow_mut().solicited.push(next_hop);
            Ok(())
        }
    }

    fn found(next_hop: IpAddr, mac: MacAddr) -> io::Result<Lookup> {
        Ok(Lookup::Found {
            next_hop,
            mac,
            confirm: false,
        })
    }

    fn cache(script: &Script) -> NextHopCache<Script> {
        NextHopCache::new(script.clone(), ResolvePolicy::default())
    }

    #[test]
    fn a_known_mac_is_reused_until_the_refresh_is_due() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(found(TARGET, MAC_A));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
        for ms in [1, 500, 2999] {
            assert_eq!(
                c.mac_for(TARGET, t0 + Duration::from_millis(ms)),
                Some(MAC_A)
            );
        }
        assert_eq!(
            script.asked().len(),
            1,
            "one lookup within the refresh period"
        );
        // Due: asked again, and a changed neighbour is picked up.
        script.answer(found(TARGET, MAC_B));
        assert_eq!(c.mac_for(TARGET, t0 + Duration::from_secs(3)), Some(MAC_B));
        assert_eq!(script.asked().len(), 2);
        let n = c.counters();
        assert_eq!((n.lookups, n.resolved, n.changed), (2, 1, 1));
    }

    #[test]
    fn an_unresolved_next_hop_is_solicited_and_retried_after_the_retry_period() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(Ok(Lookup::Unresolved { next_hop: GATEWAY }));
        assert_eq!(c.mac_for(TARGET, t0), None);
        assert_eq!(
            script.solicited(),
            vec![GATEWAY],
            "ARP for the gateway only"
        );
        // Within the retry period: no new lookup, still no MAC.
        assert_eq!(c.mac_for(TARGET, t0 + Duration::from_millis(49)), None);
        assert_eq!(script.asked().len(), 1);
        script.answer(found(GATEWAY, MAC_A));
        assert_eq!(
            c.mac_for(TARGET, t0 + Duration::from_millis(50)),
            Some(MAC_A)
        );
        assert_eq!(c.counters().resolved, 1);
    }

    #[test]
    fn destinations_behind_different_next_hops_are_cached_apart() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(found(TARGET, MAC_A));
        script.answer(found(GATEWAY, MAC_B));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
        assert_eq!(c.mac_for(OTHER, t0), Some(MAC_B));
        for _ in 0..3 {
            assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
            assert_eq!(c.mac_for(OTHER, t0), Some(MAC_B));
        }
        assert_eq!(script.asked(), vec![TARGET, OTHER]);
    }

    #[test]
    fn ipv6_destinations_are_resolved_beside_ipv4_ones() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        let target6: IpAddr = "2001:db8:2::2".parse().unwrap();
        let router6: IpAddr = "fe80::1".parse().unwrap();
        script.answer(Ok(Lookup::Unresolved { next_hop: router6 }));
        assert_eq!(c.mac_for(target6, t0), None);
        assert_eq!(
            script.solicited(),
            vec![router6],
            "a neighbour solicitation"
        );
        script.answer(found(TARGET, MAC_A));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
        let later = t0 + ResolvePolicy::default().retry;
        script.answer(found(router6, MAC_B));
        assert_eq!(c.mac_for(target6, later), Some(MAC_B));
        assert_eq!(c.mac_for(TARGET, later), Some(MAC_A));
        assert_eq!(script.asked(), vec![target6, TARGET, target6]);
    }

    #[test]
    fn a_stale_entry_is_used_and_reconfirmed() {
        let script = Script::default();
        let mut c = cache(&script);
        script.answer(Ok(Lookup::Found {
            next_hop: TARGET,
            mac: MAC_A,
            confirm: true,
        }));
        assert_eq!(c.mac_for(TARGET, Instant::now()), Some(MAC_A));
        assert_eq!(script.solicited(), vec![TARGET]);
    }

    #[test]
    fn a_lost_entry_stops_frames_until_resolved_again() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(found(TARGET, MAC_A));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
        let t1 = t0 + Duration::from_secs(3);
        script.answer(Ok(Lookup::Unresolved { next_hop: TARGET }));
        assert_eq!(c.mac_for(TARGET, t1), None);
        script.answer(found(TARGET, MAC_A));
        assert_eq!(
            c.mac_for(TARGET, t1 + Duration::from_millis(50)),
            Some(MAC_A)
        );
        assert_eq!(c.counters().resolved, 2);
    }

    #[test]
    fn no_route_and_errors_give_no_mac_and_are_counted() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(Ok(Lookup::NoRoute(NoRouteReason::Local)));
        assert_eq!(c.mac_for(TARGET, t0), None);
        script.answer(Err(io::Error::from_raw_os_error(libc::ENETUNREACH)));
        assert_eq!(c.mac_for(OTHER, t0), None);
        assert_eq!(c.counters().failed, 2);
        assert!(
            script.solicited().is_empty(),
            "nothing to resolve without a route"
        );
        // Errors are retried soon; a missing route after up to a second.
        script.answer(found(OTHER, MAC_B));
        assert_eq!(
            c.mac_for(OTHER, t0 + Duration::from_millis(50)),
            Some(MAC_B)
        );
        assert_eq!(c.mac_for(TARGET, t0 + Duration::from_millis(999)), None);
        assert_eq!(script.asked().len(), 3);
    }

    #[test]
    fn a_failed_refresh_keeps_the_known_mac_and_asks_again_soon() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(found(TARGET, MAC_A));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_A));
        let t1 = t0 + Duration::from_secs(3);
        script.answer(Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)));
        assert_eq!(c.mac_for(TARGET, t1), Some(MAC_A));
        assert_eq!(
            c.mac_for(TARGET, t1 + Duration::from_millis(49)),
            Some(MAC_A)
        );
        script.answer(found(TARGET, MAC_A));
        assert_eq!(
            c.mac_for(TARGET, t1 + Duration::from_millis(50)),
            Some(MAC_A)
        );
        assert_eq!(script.asked().len(), 3);
        assert_eq!(c.counters().failed, 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let script = Script::default();
        let policy = ResolvePolicy {
            max_entries: 4,
            ..ResolvePolicy::default()
        };
        let mut c = NextHopCache::new(script.clone(), policy);
        let t0 = Instant::now();
        for i in 0..20u8 {
            script.answer(found(TARGET, MAC_A));
            assert_eq!(
                c.mac_for(Ipv4Addr::new(198, 18, 9, i).into(), t0),
                Some(MAC_A)
            );
            assert!(c.entries.len() <= 4, "{} entries", c.entries.len());
        }
    }

    #[test]
    fn invalidate_forgets_every_answer() {
        let script = Script::default();
        let mut c = cache(&script);
        let t0 = Instant::now();
        script.answer(found(TARGET, MAC_A));
        c.mac_for(TARGET, t0);
        c.invalidate();
        script.answer(found(TARGET, MAC_B));
        assert_eq!(c.mac_for(TARGET, t0), Some(MAC_B));
        assert_eq!(
            c.counters().changed,
            0,
            "a forgotten MAC is resolved, not changed"
        );
    }
}
