//! TCP sequence numbers with wrapping (RFC 1982 style) comparison.

use core::{cmp::Ordering, fmt, ops};

/// A TCP sequence (or acknowledgment) number. Arithmetic wraps modulo 2^32;
/// `a < b` means `a` comes before `b` within half the sequence space. Like
/// smoltcp's, the ordering is not transitive across more than 2^31, so it is
/// `PartialOrd` only.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The signed distance from `other` to `self` (`self - other`).
    pub const fn diff(self, other: Self) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Bytes from `other` up to `self`, or 0 when `self` is not after `other`.
    pub const fn since(self, other: Self) -> u32 {
        let d = self.diff(other);
        if d > 0 { d as u32 } else { 0 }
    }

    pub fn max(self, other: Self) -> Self {
        if self.diff(other) >= 0 { self } else { other }
    }

    pub fn min(self, other: Self) -> Self {
        if self.diff(other) <= 0 { self } else { other }
    }

    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl ops::Add<u32> for SeqNumber {
    type Output = Self;
    fn add(self, rhs: u32) -> Self {
        Self(self.0.wrapping_add(rhs))
    }
}

impl ops::AddAssign<u32> for SeqNumber {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl ops::Sub<u32> for SeqNumber {
    type Output = Self;
    fn sub(self, rhs: u32) -> Self {
        Self(self.0.wrapping_sub(rhs))
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::SeqNumber as S;

    #[test]
    fn comparison_wraps() {
        assert!(S(1) > S(0));
        assert!(S(0) > S(u32::MAX));
        assert!(S(5) < S(u32::MAX.wrapping_add(10)));
        assert!(S(u32::MAX - 10) < S(3));
        assert_eq!(S(3).diff(S(u32::MAX - 1)), 5);
        assert_eq!(S(u32::MAX - 1).diff(S(3)), -5);
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(S(u32::MAX) + 2, S(1));
        assert_eq!(S(1) - 2, S(u32::MAX));
        assert_eq!(S(3).since(S(u32::MAX)), 4);
        assert_eq!(S(u32::MAX).since(S(3)), 0);
        assert_eq!(S(2).max(S(u32::MAX)), S(2));
        assert_eq!(S(2).min(S(u32::MAX)), S(u32::MAX));
    }
}
