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
use crate::packet::Address;

/// The splitmix64 finaliser: a fast, well-mixing 64-bit hash.
pub const fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `addr:port` as one 64-bit value to hash (for IPv4 exact: the address
/// and port packed into 48 bits).
pub fn endpoint_digest<A: Address>(addr: A, port: u16) -> u64 {
    (addr.digest() << 16) | u64::from(port)
}

/// The shard (worker) that owns replayed client address `addr:port`.
pub fn shard_of<A: Address>(addr: A, port: u16, shards: u16, seed: u64) -> u16 {
    if shards <= 1 {
        return 0;
    }
    (mix64(endpoint_digest(addr, port) ^ seed) % u64::from(shards)) as u16
}

/// `-r`: whether the session of `origin` is replayed. The same client
/// address always gets the same answer, so a session is replayed wholly or
/// not at all.
pub fn sampled_in<A: Address>(origin: Endpoint<A>, percent: u8, seed: u64) -> bool {
    percent >= 100
        || mix64(endpoint_digest(origin.addr, origin.port) ^ seed.rotate_left(17)) % 100
            < u64::from(percent)
}

/// Lowest port handed out for copies (below are well-known ports).
const PORT_FLOOR: u16 = 1024;

/// The client ports to try, in order, for copy `copy` of a session from
/// `origin` in instance `instance`. The first candidate of copy 0 of
/// instance 0 is the client's own port; the rest are pseudo-random over
/// `1024..=65535`, different per copy and instance.
pub fn port_candidates<A: Address>(
    origin: Endpoint<A>,
    copy: u16,
    instance: u16,
    seed: u64,
) -> impl Iterator<Item = u16> {
    let own = (copy == 0 && instance == 0).then_some(origin.port);
    let base = endpoint_digest(origin.addr, origin.port)
        ^ (u64::from(copy) << 48)
        ^ (u64::from(instance) << 58)
        ^ seed;
    let span = u64::from(u16::MAX - PORT_FLOOR) + 1;
    own.into_iter()
        .chain((1u64..).map(move |j| PORT_FLOOR + (mix64(base ^ (j << 32)) % span) as u16))
}

/// `-c`: client addresses the target sees, e.g. `198.19.7.x,198.19.9.10`
/// or `2001:db8:7::x`. An `x` octet (IPv4) or group (IPv6) takes the real
/// client's bytes there, so each real client maps to one address for good
/// (sticky). A session uses the addresses of its own family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPool {
    /// Per address, its bytes (4 or 16): fixed, or `None` for the client's.
    patterns: Vec<Vec<Option<u8>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad client address pool {input:?}: {why}; expected IPv4 addresses with `x` for any octet, e.g. 198.19.7.x,198.19.9.10, or IPv6 addresses with `x` for any group, e.g. 2001:db8:7::x"
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
            let pattern = if item.contains(':') {
                ipv6_pattern(item).map_err(err)?
            } else {
                ipv4_pattern(item).map_err(err)?
            };
            patterns.push(pattern);
        }
        if patterns.is_empty() {
            return Err(err("empty"));
        }
        Ok(Self { patterns })
    }
}

fn ipv4_pattern(item: &str) -> Result<Vec<Option<u8>>, &'static str> {
    let octets: Vec<&str> = item.split('.').collect();
    if octets.len() != 4 {
        return Err("each address needs four octets");
    }
    octets
        .into_iter()
        .map(|o| match o {
            "x" | "X" => Ok(None),
            n => n
                .parse::<u8>()
                .map(Some)
                .map_err(|_| "an octet is neither 0..=255 nor x"),
        })
        .collect()
}

/// IPv6 text with `x` groups (`::` allowed, no dotted IPv4 tail).
fn ipv6_pattern(item: &str) -> Result<Vec<Option<u8>>, &'static str> {
    const BAD: &str = "an IPv6 group is neither 1-4 hex digits nor x";
    let group = |g: &str| -> Result<[Option<u8>; 2], &'static str> {
        match g {
            "x" | "X" => Ok([None, None]),
            h if (1..=4).contains(&h.len()) => {
                let v = u16::from_str_radix(h, 16).map_err(|_| BAD)?;
                let [a, b] = v.to_be_bytes();
                Ok([Some(a), Some(b)])
            }
            _ => Err(BAD),
        }
    };
    let groups = |part: &str| -> Result<Vec<[Option<u8>; 2]>, &'static str> {
        if part.is_empty() {
            return Ok(Vec::new());
        }
        part.split(':').map(group).collect()
    };
    let mut parts = item.splitn(2, "::");
    let head = groups(parts.next().unwrap_or(""))?;
    let all = match parts.next() {
        Some(rest) => {
            let tail = groups(rest)?;
            if head.len() + tail.len() > 7 {
                return Err("an IPv6 address has eight groups");
            }
            let zeros = 8 - head.len() - tail.len();
            let mut v = head;
            v.extend(std::iter::repeat_n([Some(0), Some(0)], zeros));
            v.extend(tail);
            v
        }
        None if head.len() == 8 => head,
        None => return Err("an IPv6 address has eight groups"),
    };
    Ok(all.into_iter().flatten().collect())
}

impl ClientPool {
    /// Whether the pool has addresses of family `A`.
    pub fn has_family<A: Address>(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| p.len() == A::default().as_ref().len())
    }

    /// The address the target sees for real client `addr`: the same every
    /// time for the same client, of the client's family, never one for
    /// which `forbidden` is true (target addresses). `None` when the pool
    /// has nothing allowed of that family.
    /// Whether the pool has addresses of family `A` (a session of a family
    /// it has none of cannot be given an address).
    pub fn covers<A: Address>(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| p.len() == A::default().as_ref().len())
    }

    pub fn map<A: Address>(&self, addr: A, seed: u64, forbidden: impl Fn(A) -> bool) -> Option<A> {
        let own = || {
            self.patterns
                .iter()
                .filter(|p| p.len() == addr.as_ref().len())
        };
        let n = own().count();
        if n == 0 {
            return None;
        }
        let start = (mix64(addr.digest() ^ seed) % n as u64) as usize;
        let last = addr.as_ref().len() - 1;
        for i in 0..n {
            let p = own().nth((start + i) % n).expect("within the count");
            let wild = p.iter().any(Option::is_none);
            for shift in 0..if wild { 256u16 } else { 1 } {
                let mut out = A::default();
                for (k, o) in out.as_mut().iter_mut().enumerate() {
                    *o = p[k].unwrap_or_else(|| {
                        let v = addr.as_ref()[k].wrapping_add(shift as u8);
                        // Keep network/broadcast-looking host bytes out.
                        match (k == last, v) {
                            (true, 0) => 1,
                            (true, 255) => 254,
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
                vec![Some(198), Some(19), Some(7), None],
                vec![Some(198), Some(19), Some(9), Some(10)]
            ]
        );
        for bad in ["", "1.2.3", "1.2.3.256", "1.2.y.4", "1.2.3.4,"] {
            let e = bad.parse::<ClientPool>().unwrap_err().to_string();
            assert!(e.contains("expected IPv4 addresses"), "{bad}: {e}");
        }
    }

    #[test]
    fn ipv6_pools_parse_with_x_groups_and_compressed_zeros() {
        let pool: ClientPool = "2001:db8:7::x, 198.19.9.10, 2001:db8::1:2:3:4:5"
            .parse()
            .unwrap();
        assert!(pool.has_family::<[u8; 16]>() && pool.has_family::<[u8; 4]>());
        let mut want = vec![Some(0); 16];
        want[..6].copy_from_slice(&[
            Some(0x20),
            Some(0x01),
            Some(0x0d),
            Some(0xb8),
            Some(0),
            Some(7),
        ]);
        want[14] = None;
        want[15] = None;
        assert_eq!(pool.patterns[0], want);
        assert_eq!(
            pool.patterns[2][8..],
            [
                Some(0),
                Some(2),
                Some(0),
                Some(3),
                Some(0),
                Some(4),
                Some(0),
                Some(5)
            ]
        );
        let v6_only: ClientPool = "x:x:x:x:x:x:x:1".parse().unwrap();
        assert!(!v6_only.has_family::<[u8; 4]>());
        assert_eq!(v6_only.map([10, 0, 0, 9], 1, |_| false), None);
        let client = [0xfd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
        let mut mapped = client;
        mapped[14..].copy_from_slice(&[0, 1]);
        assert_eq!(v6_only.map(client, 1, |_| false), Some(mapped));
        for bad in [
            "2001:db8::x::1",
            "2001:db8:1:2:3:4:5:6:7",
            "2001:db8:1",
            "2001:db8::fffff",
            "2001:db8::g",
        ] {
            let e = bad.parse::<ClientPool>().unwrap_err().to_string();
            assert!(e.contains("IPv6 addresses"), "{bad}: {e}");
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
