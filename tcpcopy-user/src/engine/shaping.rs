//! Traffic shaping: which sessions are replayed (`-r`), how many copies
//! (`-n`), and which client address each copy shows the target (`-c`, `-f`).
//!
//! # Why replayed client addresses never collide
//! Sessions are sharded by the client address the *target* sees (the
//! "replayed" address), so replies, which carry that address, find their
//! shard without any lookup. A shard only ever gives out addresses that
//! hash to itself ([`shard_of`]), and before giving one out it checks its
//! own session table, which holds every live and lingering session with an
//! address of that hash. So no two live sessions of one tcpcopy, whatever
//! their shard, copy or original client, share a replayed address: an
//! address can only be in use in the one shard that checks it. This holds
//! for originals too: the first candidate of copy 0 is the client's own
//! port, taken only when free, so a real client that reuses a port a copy
//! holds gets another port instead of colliding. Separate tcpcopy instances
//! share no table: `-f` gives each a different candidate sequence, which
//! avoids collisions with high probability; distinct `-c` pools per
//! instance rule them out.

use core::str::FromStr;

use super::Endpoint;

/// The splitmix64 finaliser: a fast, well-mixing 64-bit hash.
pub const fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `addr:port` packed into 48 bits.
pub const fn endpoint_key(addr: [u8; 4], port: u16) -> u64 {
    ((u32::from_be_bytes(addr) as u64) << 16) | port as u64
}

/// The shard (worker) that owns replayed client address `addr:port`.
pub const fn shard_of(addr: [u8; 4], port: u16, shards: u16, seed: u64) -> u16 {
    if shards <= 1 {
        return 0;
    }
    (mix64(endpoint_key(addr, port) ^ seed) % shards as u64) as u16
}

/// `-r`: whether the session of `origin` is replayed. The same client
/// address always gets the same answer, so a session is replayed wholly or
/// not at all.
pub const fn sampled_in(origin: Endpoint, percent: u8, seed: u64) -> bool {
    percent >= 100
        || mix64(endpoint_key(origin.addr, origin.port) ^ seed.rotate_left(17)) % 100
            < percent as u64
}

/// Lowest port handed out for copies (below are well-known ports).
const PORT_FLOOR: u16 = 1024;

/// The client ports to try, in order, for copy `copy` of a session from
/// `origin` in instance `instance`. The first candidate of copy 0 of
/// instance 0 is the client's own port; the rest are pseudo-random over
/// `1024..=65535`, different per copy and instance.
pub fn port_candidates(
    origin: Endpoint,
    copy: u16,
    instance: u16,
    seed: u64,
) -> impl Iterator<Item = u16> {
    let own = (copy == 0 && instance == 0).then_some(origin.port);
    let base = endpoint_key(origin.addr, origin.port)
        ^ (u64::from(copy) << 48)
        ^ (u64::from(instance) << 58)
        ^ seed;
    let span = u64::from(u16::MAX - PORT_FLOOR) + 1;
    own.into_iter()
        .chain((1u64..).map(move |j| PORT_FLOOR + (mix64(base ^ (j << 32)) % span) as u16))
}

/// `-c`: client addresses the target sees, e.g. `198.19.7.x,198.19.9.10`.
/// An `x` octet takes the real client's octet, so each real client maps to
/// one address for good (sticky).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPool {
    patterns: Vec<[Option<u8>; 4]>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad client address pool {input:?}: {why}; expected IPv4 addresses with `x` for any octet, e.g. 198.19.7.x,198.19.9.10"
)]
pub struct PoolError {
    input: String,
    why: &'static str,
}

impl FromStr for ClientPool {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| PoolError {
            input: s.to_owned(),
            why,
        };
        let mut patterns = Vec::new();
        for item in s.split(',') {
            let item = item.trim();
            let octets: Vec<&str> = item.split('.').collect();
            if octets.len() != 4 {
                return Err(err("each address needs four octets"));
            }
            let mut p = [None; 4];
            for (slot, o) in p.iter_mut().zip(octets) {
                *slot = match o {
                    "x" | "X" => None,
                    n => Some(
                        n.parse::<u8>()
                            .map_err(|_| err("an octet is neither 0..=255 nor x"))?,
                    ),
                };
            }
            patterns.push(p);
        }
        if patterns.is_empty() {
            return Err(err("empty"));
        }
        Ok(Self { patterns })
    }
}

impl ClientPool {
    /// The address the target sees for real client `addr`: the same every
    /// time for the same client, never one for which `forbidden` is true
    /// (target addresses). `None` when the pool has nothing allowed.
    pub fn map(
        &self,
        addr: [u8; 4],
        seed: u64,
        forbidden: impl Fn([u8; 4]) -> bool,
    ) -> Option<[u8; 4]> {
        let n = self.patterns.len();
        let start = (mix64(u64::from(u32::from_be_bytes(addr)) ^ seed) % n as u64) as usize;
        for i in 0..n {
            let p = &self.patterns[(start + i) % n];
            let wild = p.iter().any(Option::is_none);
            for shift in 0..if wild { 256u16 } else { 1 } {
                let mut out = [0u8; 4];
                for (k, o) in out.iter_mut().enumerate() {
                    *o = p[k].unwrap_or_else(|| {
                        let v = addr[k].wrapping_add(shift as u8);
                        // Keep network/broadcast-looking host octets out.
                        match (k, v) {
                            (3, 0) => 1,
                            (3, 255) => 254,
                            _ => v,
                        }
                    });
                }
                if !forbidden(out) {
                    return Some(out);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint { addr: a, port }
    }

    #[test]
    fn sampling_is_stable_and_close_to_the_percentage() {
        let seed = 42;
        let mut kept = 0;
        for port in 1024..11024u16 {
            let o = ep([198, 18, 1, (port % 200) as u8], port);
            let first = sampled_in(o, 30, seed);
            assert_eq!(first, sampled_in(o, 30, seed), "same client, same answer");
            kept += u32::from(first);
        }
        assert!((2700..3300).contains(&kept), "kept {kept} of 10000 at 30%");
        assert!(sampled_in(ep([1, 2, 3, 4], 5), 100, seed));
        assert!((0..1000).all(|p| !sampled_in(ep([1, 2, 3, 4], p), 0, seed)));
    }

    #[test]
    fn pool_parses_and_rejects_with_the_expected_syntax() {
        let pool: ClientPool = "198.19.7.x, 198.19.9.10".parse().unwrap();
        assert_eq!(
            pool.patterns,
            vec![
                [Some(198), Some(19), Some(7), None],
                [Some(198), Some(19), Some(9), Some(10)]
            ]
        );
        for bad in ["", "1.2.3", "1.2.3.256", "1.2.y.4", "1.2.3.4,"] {
            let e = bad.parse::<ClientPool>().unwrap_err().to_string();
            assert!(e.contains("expected IPv4 addresses"), "{bad}: {e}");
        }
    }

    #[test]
    fn pool_mapping_is_sticky_and_never_a_target() {
        let pool: ClientPool = "198.19.7.x".parse().unwrap();
        let target = [198, 19, 7, 9];
        let m = pool.map([10, 0, 0, 9], 1, |a| a == target).unwrap();
        assert_ne!(m, target);
        assert_eq!(m, pool.map([10, 0, 0, 9], 1, |a| a == target).unwrap());
        assert_eq!(
            pool.map([10, 0, 0, 20], 1, |a| a == target),
            Some([198, 19, 7, 20])
        );
        let only_target: ClientPool = "198.19.7.9".parse().unwrap();
        assert_eq!(only_target.map([10, 0, 0, 9], 1, |a| a == target), None);
    }

    #[test]
    fn first_candidate_is_the_own_port_only_for_the_plain_copy() {
        let o = ep([198, 18, 1, 2], 40000);
        assert_eq!(port_candidates(o, 0, 0, 7).next(), Some(40000));
        assert_ne!(port_candidates(o, 1, 0, 7).next(), Some(40000));
        assert_ne!(port_candidates(o, 0, 1, 7).next(), Some(40000));
        let c1: Vec<u16> = port_candidates(o, 1, 0, 7).take(8).collect();
        let c2: Vec<u16> = port_candidates(o, 2, 0, 7).take(8).collect();
        assert_ne!(c1, c2);
        assert!(
            port_candidates(o, 3, 2, 7)
                .take(10_000)
                .all(|p| p >= PORT_FLOOR)
        );
    }

    #[test]
    fn shards_partition_the_address_space() {
        let mut counts = [0u32; 4];
        for port in 0..8000u16 {
            counts[shard_of([198, 18, 1, 2], port, 4, 9) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1700..2300).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of([1, 2, 3, 4], 5, 1, 9), 0);
    }
}
