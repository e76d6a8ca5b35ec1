//! A zero-copy view over an IP packet carrying TCP, of either family
//! ([`Ipv4TcpPacket`], [`Ipv6TcpPacket`]: see [`super::family`]), and a
//! representation for building one from scratch.
//!
//! [`TcpPacket::new_checked`] validates every length once; after that
//! the accessors cannot go out of bounds. Setters patch a field and update
//! the checksums (IPv4 header and TCP) incrementally, so a packet that
//! arrived with correct checksums leaves with correct checksums.

use core::marker::PhantomData;

use super::{SeqNumber, TcpOptions, checksum, family::Address};

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// TCP header length without options.
pub const TCP_HEADER_LEN: usize = 20;

/// Why bytes are not an IPv4/TCP packet the engine can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("shorter than its headers")]
    Truncated,
    #[error("not IPv4")]
    NotIpv4,
    #[error("not IPv6")]
    NotIpv6,
    #[error("IPv6 extension headers before TCP")]
    ExtensionHeaders,
    #[error("a malformed IPv6 extension header")]
    BadExtensionHeader,
    #[error("an IPv6 routing header with segments left")]
    NotFinalDestination,
    #[error("IPv4 header length below 20 or beyond the packet")]
    BadIpHeaderLength,
    #[error("IPv4 total length beyond the captured bytes or below the headers")]
    BadTotalLength,
    #[error("not TCP")]
    NotTcp,
    #[error("an IP fragment")]
    Fragment,
    #[error("TCP data offset below 20 or beyond the packet")]
    BadDataOffset,
}

/// TCP header flags.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: Self = Self(0x01);
    pub const SYN: Self = Self(0x02);
    pub const RST: Self = Self(0x04);
    pub const PSH: Self = Self(0x08);
    pub const ACK: Self = Self(0x10);
    pub const URG: Self = Self(0x20);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let names = [
            (0x02, 'S'),
            (0x10, '.'),
            (0x08, 'P'),
            (0x01, 'F'),
            (0x04, 'R'),
            (0x20, 'U'),
        ];
        for (bit, c) in names {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A validated TCP packet over `T` (the IP header first) of the family
/// whose address is `A`.
#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<T, A: Address = [u8; 4]> {
    buf: T,
    ip_len: usize,
    tcp_len: usize,
    total_len: usize,
    family: PhantomData<A>,
}

/// An IPv4 packet carrying TCP.
pub type Ipv4TcpPacket<T> = TcpPacket<T, [u8; 4]>;
/// An IPv6 packet carrying TCP right after its fixed header.
pub type Ipv6TcpPacket<T> = TcpPacket<T, [u8; 16]>;

impl<T: AsRef<[u8]>, A: Address> TcpPacket<T, A> {
    /// Validates versions, header lengths and total length. Bytes beyond the
    /// IP total length (link-layer padding) are ignored.
    pub fn new_checked(buf: T) -> Result<Self, PacketError> {
        let b = buf.as_ref();
        let (ip_len, total_len) = A::check(b)?;
        let tcp_len = usize::from(b[ip_len + 12] >> 4) * 4;
        if tcp_len < TCP_HEADER_LEN || ip_len + tcp_len > total_len {
            return Err(PacketError::BadDataOffset);
        }
        Ok(Self {
            buf,
            ip_len,
            tcp_len,
            total_len,
            family: PhantomData,
        })
    }

    /// A view of a packet [`new_checked`](Self::new_checked) accepted
    /// before (or a copy of it: all of `buf`, no padding), with the header
    /// lengths it found: not validated again. Wrong lengths make accessors
    /// panic, as a failed check would have; they never read out of bounds.
    pub fn new_validated(buf: T, ip_len: usize, tcp_len: usize) -> Self {
        let total_len = buf.as_ref().len();
        let lens = |p: TcpPacket<&[u8], A>| (p.ip_len, p.tcp_len, p.total_len);
        debug_assert_eq!(
            TcpPacket::new_checked(buf.as_ref()).map(lens),
            Ok((ip_len, tcp_len, total_len)),
            "not the lengths of a valid packet"
        );
        Self {
            buf,
            ip_len,
            tcp_len,
            total_len,
            family: PhantomData,
        }
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    fn tcp_u16(&self, off: usize) -> u16 {
        let b = self.b();
        u16::from_be_bytes([b[self.ip_len + off], b[self.ip_len + off + 1]])
    }

    fn tcp_u32(&self, off: usize) -> u32 {
        let b = &self.b()[self.ip_len + off..self.ip_len + off + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The packet's bytes (up to the IPv4 total length).
    pub fn as_bytes(&self) -> &[u8] {
        &self.b()[..self.total_len]
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub const fn ip_header_len(&self) -> usize {
        self.ip_len
    }
    pub const fn tcp_header_len(&self) -> usize {
        self.tcp_len
    }
    pub const fn total_len(&self) -> usize {
        self.total_len
    }
    /// The TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(&self) -> u8 {
        A::ttl(self.b())
    }
    pub fn src_addr(&self) -> A {
        A::read(&self.b()[A::SRC_AT..])
    }
    pub fn dst_addr(&self) -> A {
        A::read(&self.b()[A::DST_AT..])
    }
    pub fn src_port(&self) -> u16 {
        self.tcp_u16(0)
    }
    pub fn dst_port(&self) -> u16 {
        self.tcp_u16(2)
    }
    pub fn seq(&self) -> SeqNumber {
        SeqNumber(self.tcp_u32(4))
    }
    pub fn ack(&self) -> SeqNumber {
        SeqNumber(self.tcp_u32(8))
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.b()[self.ip_len + 13] & 0x3f)
    }
    pub fn window(&self) -> u16 {
        self.tcp_u16(14)
    }
    pub fn tcp_checksum(&self) -> u16 {
        self.tcp_u16(16)
    }
    /// The option bytes after the fixed TCP header.
    pub fn option_bytes(&self) -> &[u8] {
        &self.b()[self.ip_len + TCP_HEADER_LEN..self.ip_len + self.tcp_len]
    }
    pub fn options(&self) -> TcpOptions {
        TcpOptions::parse(self.option_bytes())
    }
    /// Offset of the payload from the start of the packet.
    pub const fn payload_offset(&self) -> usize {
        self.ip_len + self.tcp_len
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.payload_offset()..self.total_len]
    }
    pub const fn payload_len(&self) -> usize {
        self.total_len - self.ip_len - self.tcp_len
    }
    /// Sequence space the segment occupies: payload, plus one for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let f = self.flags();
        self.payload_len() as u32 + u32::from(f.syn()) + u32::from(f.fin())
    }

    /// Whether both checksums are right (tests and diagnostics).
    pub fn checksums_ok(&self) -> bool {
        self.ip_checksum() == ChecksumField::Valid
            && self.tcp_checksum_field() == ChecksumField::Valid
    }

    /// What the IPv4 header checksum holds: right, zero (left for the NIC
    /// by a sender with IPv4 checksum offload, as some captures show), or
    /// wrong. (IPv6 has none: always right.)
    pub fn ip_checksum(&self) -> ChecksumField {
        if !A::HEADER_CHECKSUM {
            return ChecksumField::Valid;
        }
        let b = self.as_bytes();
        if checksum::fold(checksum::sum(&b[..self.ip_len])) == 0xffff {
            ChecksumField::Valid
        } else if b[10..12] == [0, 0] {
            ChecksumField::Offloaded
        } else {
            ChecksumField::Bad
        }
    }

    /// What the TCP checksum holds: right; only the pseudo-header sum
    /// (transmit checksum offload: the NIC was to finish it, so a packet
    /// captured on its way out of a local stack, across a veth between
    /// containers, or merged by GRO carries this); or wrong. The
    /// pseudo-header sum is accepted with the TCP length in it (Linux,
    /// the BSDs) and without (segmentation offload on Windows).
    pub fn tcp_checksum_field(&self) -> ChecksumField {
        let b = self.as_bytes();
        let tcp_len = (self.total_len - self.ip_len) as u32;
        let (src, dst) = (self.src_addr(), self.dst_addr());
        let base = A::pseudo_header(src, dst, 0);
        let pseudo = A::pseudo_header(src, dst, tcp_len);
        if checksum::fold(pseudo + checksum::sum(&b[self.ip_len..])) == 0xffff {
            return ChecksumField::Valid;
        }
        let field = self.tcp_checksum();
        if field == checksum::fold(pseudo) || field == checksum::fold(base) {
            ChecksumField::Offloaded
        } else {
            ChecksumField::Bad
        }
    }
}

/// What a checksum field of a captured packet holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumField {
    /// The right checksum.
    Valid,
    /// What a sender leaves for its NIC to finish (checksum offload):
    /// complete it, and the packet is the one the NIC would have sent.
    Offloaded,
    /// Neither: the packet was damaged (its receiver drops it).
    Bad,
}

impl<T: AsRef<[u8]>> Ipv4TcpPacket<T> {
    pub fn ip_id(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, A: Address> TcpPacket<T, A> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Replaces bytes of the TCP header at `off` and adjusts its checksum.
    fn patch_tcp(&mut self, off: usize, new: &[u8]) {
        let at = self.ip_len + off;
        let check = self.tcp_checksum();
        let b = self.bm();
        let mut old = [0u8; 8];
        let old = &mut old[..new.len()];
        old.copy_from_slice(&b[at..at + new.len()]);
        b[at..at + new.len()].copy_from_slice(new);
        let check = checksum::adjust(check, off, old, new);
        b[at + 16 - off..at + 18 - off].copy_from_slice(&check.to_be_bytes());
    }

    /// Replaces the address at `off` ([`Address::SRC_AT`] or `DST_AT`),
    /// adjusting the IPv4 header checksum (if any) and the TCP checksum
    /// (the address is in its pseudo-header).
    fn patch_addr(&mut self, off: usize, new: A) {
        let old = A::read(&self.b()[off..]);
        if old == new {
            return;
        }
        let (old, new) = (old.as_ref(), new.as_ref());
        let tcp_check = checksum::adjust(self.tcp_checksum(), 0, old, new);
        let ip_len = self.ip_len;
        if A::HEADER_CHECKSUM {
            let ip_check = u16::from_be_bytes([self.b()[10], self.b()[11]]);
            let ip_check = checksum::adjust(ip_check, off, old, new);
            self.bm()[10..12].copy_from_slice(&ip_check.to_be_bytes());
        }
        let b = self.bm();
        b[off..off + new.len()].copy_from_slice(new);
        b[ip_len + 16..ip_len + 18].copy_from_slice(&tcp_check.to_be_bytes());
    }

    /// Recomputes both checksums from scratch (after a structural change
    /// such as a new total length).
    pub fn fill_checksums(&mut self) {
        let (ip_len, total) = (self.ip_len, self.total_len);
        let (src, dst) = (self.src_addr(), self.dst_addr());
        let b = self.bm();
        if A::HEADER_CHECKSUM {
            b[10..12].copy_from_slice(&[0, 0]);
            let ip_check = checksum::finish(checksum::sum(&b[..ip_len]));
            b[10..12].copy_from_slice(&ip_check.to_be_bytes());
        }
        b[ip_len + 16..ip_len + 18].copy_from_slice(&[0, 0]);
        let pseudo = A::pseudo_header(src, dst, (total - ip_len) as u32);
        let tcp_check = checksum::finish(pseudo + checksum::sum(&b[ip_len..total]));
        b[ip_len + 16..ip_len + 18].copy_from_slice(&tcp_check.to_be_bytes());
    }

    /// Re-addresses the segment and sets acknowledgment and window, with a
    /// single incremental update of each checksum (the fast path for every
    /// captured segment sent to the target).
    pub fn rewrite(&mut self, r: &Rewrite<A>) {
        let ip = self.ip_len;
        let (iph, tcp) = self.buf.as_mut().split_at_mut(ip);
        // Views of constant length (checked once here): the fields below
        // sit at constant offsets, so the compiler drops their bounds checks.
        let iph = &mut iph[..A::HEADER_LEN];
        let th: &mut [u8; TCP_HEADER_LEN] = (&mut tcp[..TCP_HEADER_LEN])
            .try_into()
            .expect("a checked TCP header");
        // RFC 1624 accumulators (`!checksum`, then the changes), in native
        // byte order (see `delta`).
        let field = |b: &[u8], at: usize| u64::from(!u16::from_ne_bytes([b[at], b[at + 1]]));
        let mut ip_acc = if A::HEADER_CHECKSUM {
            field(iph, 10)
        } else {
            0
        };
        let mut tcp_acc = field(th, 16);
        // Addresses: in the IP header and in the TCP pseudo-header.
        let alen = size_of::<A>();
        for (at, new) in [(A::SRC_AT, r.src), (A::DST_AT, r.dst)] {
            let new = new.as_ref();
            let change = delta(&iph[at..at + alen], new);
            ip_acc += change;
            tcp_acc += change;
            iph[at..at + alen].copy_from_slice(new);
        }
        let mut ports = [0; 4];
        ports[..2].copy_from_slice(&r.src_port.to_be_bytes());
        ports[2..].copy_from_slice(&r.dst_port.to_be_bytes());
        tcp_acc += delta(&th[0..4], &ports);
        th[0..4].copy_from_slice(&ports);
        if let Some(ack) = r.ack {
            let new = ack.to_be_bytes();
            tcp_acc += delta(&th[8..12], &new);
            th[8..12].copy_from_slice(&new);
            let flags = [th[12], th[13] | TcpFlags::ACK.0];
            tcp_acc += delta(&th[12..14], &flags);
            th[12..14].copy_from_slice(&flags);
        }
        if let Some(window) = r.window {
            let new = window.to_be_bytes();
            tcp_acc += delta(&th[14..16], &new);
            th[14..16].copy_from_slice(&new);
        }
        if A::HEADER_CHECKSUM {
            iph[10..12].copy_from_slice(&(!checksum::fold64(ip_acc)).to_ne_bytes());
        }
        th[16..18].copy_from_slice(&(!checksum::fold64(tcp_acc)).to_ne_bytes());
    }

    pub fn set_src_addr(&mut self, addr: A) {
        self.patch_addr(A::SRC_AT, addr);
    }
    pub fn set_dst_addr(&mut self, addr: A) {
        self.patch_addr(A::DST_AT, addr);
    }

    pub fn set_src_port(&mut self, port: u16) {
        self.patch_tcp(0, &port.to_be_bytes());
    }
    pub fn set_dst_port(&mut self, port: u16) {
        self.patch_tcp(2, &port.to_be_bytes());
    }
    pub fn set_seq(&mut self, seq: SeqNumber) {
        self.patch_tcp(4, &seq.to_be_bytes());
    }
    pub fn set_ack(&mut self, ack: SeqNumber) {
        self.patch_tcp(8, &ack.to_be_bytes());
    }
    pub fn set_window(&mut self, window: u16) {
        self.patch_tcp(14, &window.to_be_bytes());
    }
    /// Sets the flags byte (the 6 classic flags; ECN bits are kept).
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let at = self.ip_len + 13;
        let new = (self.b()[at] & 0xc0) | (flags.0 & 0x3f);
        let old = self.b()[at - 1];
        self.patch_tcp(12, &[old, new]);
    }
    /// Rewrites the timestamp option whose TSval is at `offset` from the
    /// start of the TCP header (see [`TcpOptions::timestamp_offset`]).
    pub fn set_timestamp(&mut self, offset: usize, tsval: u32, tsecr: u32) {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&tsval.to_be_bytes());
        v[4..].copy_from_slice(&tsecr.to_be_bytes());
        if offset + 8 <= self.tcp_len {
            self.patch_tcp(offset, &v);
        }
    }
}

/// The re-addressing of a captured segment for the target, applied in one
/// pass by [`TcpPacket::rewrite`].
#[derive(Clone, Copy, Debug)]
pub struct Rewrite<A: Address = [u8; 4]> {
    pub src: A,
    pub dst: A,
    pub src_port: u16,
    pub dst_port: u16,
    /// Sets the ACK flag and this acknowledgment number.
    pub ack: Option<SeqNumber>,
    pub window: Option<u16>,
}

/// What replacing the bytes `old` with `new` (an even number of bytes, at
/// an even offset) adds to an RFC 1624 accumulator (which starts as
/// `!checksum`). Words are read in native byte order: the ones'-complement
/// sum of byte-swapped words is the byte-swapped sum (RFC 1071), so the
/// checksum is written back in native order too and nothing is swapped;
/// and 32-bit words, which add as their two halves do (2^16 = 1 modulo
/// 0xffff), halve the additions.
#[inline(always)]
fn delta(old: &[u8], new: &[u8]) -> u64 {
    debug_assert!(old.len() == new.len() && old.len().is_multiple_of(2));
    let (mut old_words, mut new_words) = (old.chunks_exact(4), new.chunks_exact(4));
    let mut acc = 0;
    for (o, n) in (&mut old_words).zip(&mut new_words) {
        let word = |b: &[u8]| u64::from(u32::from_ne_bytes(b.try_into().expect("4 bytes")));
        acc += (word(o) ^ 0xffff_ffff) + word(n);
    }
    if let ([o0, o1], [n0, n1]) = (old_words.remainder(), new_words.remainder()) {
        acc +=
            u64::from(!u16::from_ne_bytes([*o0, *o1])) + u64::from(u16::from_ne_bytes([*n0, *n1]));
    }
    acc
}

/// A TCP segment to build from scratch (the engine's own SYNs, ACKs, RSTs
/// and split segments).
#[derive(Clone, Copy, Debug)]
pub struct SegmentRepr<'a, A: Address = [u8; 4]> {
    pub src: A,
    pub dst: A,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub ttl: u8,
    pub ip_id: u16,
    /// Option bytes, already padded to a multiple of 4 (at most 40).
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<A: Address> SegmentRepr<'_, A> {
    pub const fn len(&self) -> usize {
        A::HEADERS_LEN + self.options.len() + self.payload.len()
    }

    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Writes the packet with both checksums into `out[..self.len()]`.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        debug_assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        let len = self.len();
        let tcp_len = len - A::HEADER_LEN;
        let (iph, t) = out[..len].split_at_mut(A::HEADER_LEN);
        A::write_header(iph, self.src, self.dst, self.ttl, self.ip_id, len);
        let (th, rest) = t.split_at_mut(TCP_HEADER_LEN);
        let th: &mut [u8; TCP_HEADER_LEN] = th.try_into().expect("split at its length");
        th[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        th[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        th[4..8].copy_from_slice(&self.seq.to_be_bytes());
        th[8..12].copy_from_slice(&self.ack.to_be_bytes());
        th[12] = (((TCP_HEADER_LEN + self.options.len()) / 4) as u8) << 4;
        th[13] = self.flags.0;
        th[14..16].copy_from_slice(&self.window.to_be_bytes());
        th[16..20].copy_from_slice(&[0, 0, 0, 0]);
        let (opts, payload) = rest.split_at_mut(self.options.len());
        opts.copy_from_slice(self.options);
        // The ACKs and resets built here have none (and a call to `memcpy`
        // costs more than nothing).
        if !self.payload.is_empty() {
            payload.copy_from_slice(self.payload);
        }
        let pseudo = A::pseudo_header(self.src, self.dst, tcp_len as u32);
        let tcp_check = checksum::finish(pseudo + checksum::sum(t));
        t[16..18].copy_from_slice(&tcp_check.to_be_bytes());
        len
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid segment 198.18.1.2:40000 -> 198.18.1.1:80 (also used by
    /// other modules' tests).
    pub(crate) fn sample(payload: &[u8], options: &[u8]) -> Vec<u8> {
        let repr = SegmentRepr {
            src: [198, 18, 1, 2],
            dst: [198, 18, 1, 1],
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(1000),
            ack: SeqNumber(5000),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 502,
            ttl: 64,
            ip_id: 7,
            options,
            payload,
        };
        let mut out = vec![0u8; repr.len()];
        repr.emit(&mut out);
        out
    }

    #[test]
    fn emitted_segment_parses_back_with_valid_checksums() {
        let ts = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];
        let bytes = sample(b"GET / HTTP/1.1\r\n\r\n", &ts);
        let p = Ipv4TcpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.checksums_ok());
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.seq(), SeqNumber(1000));
        assert_eq!(p.ack(), SeqNumber(5000));
        assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(p.options().timestamp, Some((9, 3)));
        assert_eq!(p.seq_len(), 18);
        // Cross-check the checksums against etherparse.
        let (ip, _) = etherparse::Ipv4Header::from_slice(&bytes).unwrap();
        assert_eq!(ip.calc_header_checksum(), ip.header_checksum);
        let (tcp, _) = etherparse::TcpHeader::from_slice(&bytes[20..]).unwrap();
        let want = tcp.calc_checksum_ipv4(&ip, p.payload()).unwrap();
        assert_eq!(want, tcp.checksum);
    }

    #[test]
    fn setters_keep_checksums_valid() {
        let ts = [1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3, 0]; // TS at an odd offset
        let mut bytes = sample(b"odd payload", &ts);
        let mut p = Ipv4TcpPacket::new_checked(&mut bytes[..]).unwrap();
        let off = p.options().timestamp_offset.unwrap() as usize;
        assert_eq!(off % 2, 1);
        p.set_dst_addr([198, 18, 2, 2]);
        p.set_src_addr([198, 19, 7, 200]);
        p.set_src_port(61000);
        p.set_dst_port(8080);
        p.set_ack(SeqNumber(0xdead_beef));
        p.set_seq(SeqNumber(0xffff_fff0));
        p.set_window(65535);
        p.set_flags(TcpFlags::RST | TcpFlags::ACK);
        p.set_timestamp(off, 0x0102_0304, 0xa0b0_c0d0);
        assert!(p.checksums_ok());
        assert_eq!(p.dst_addr(), [198, 18, 2, 2]);
        assert_eq!(p.dst_port(), 8080);
        assert_eq!(p.flags(), TcpFlags::RST | TcpFlags::ACK);
        assert_eq!(p.options().timestamp, Some((0x0102_0304, 0xa0b0_c0d0)));
    }

    #[test]
    fn rewrite_matches_the_setters_and_keeps_checksums_valid() {
        let ts = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];
        for flags in [TcpFlags::PSH, TcpFlags::ACK | TcpFlags::FIN] {
            let mut a = sample(b"some payload!", &ts);
            a[33] = flags.0;
            Ipv4TcpPacket::new_checked(&mut a[..])
                .unwrap()
                .fill_checksums();
            let mut b = a.clone();
            let r = Rewrite {
                src: [198, 19, 0, 7],
                dst: [198, 18, 2, 2],
                src_port: 1234,
                dst_port: 8080,
                ack: Some(SeqNumber(0x8000_0001)),
                window: Some(65535),
            };
            let mut p = Ipv4TcpPacket::new_checked(&mut a[..]).unwrap();
            p.rewrite(&r);
            assert!(p.checksums_ok());
            let mut q = Ipv4TcpPacket::new_checked(&mut b[..]).unwrap();
            q.set_src_addr(r.src);
            q.set_dst_addr(r.dst);
            q.set_src_port(r.src_port);
            q.set_dst_port(r.dst_port);
            q.set_flags(flags | TcpFlags::ACK);
            q.set_ack(SeqNumber(0x8000_0001));
            q.set_window(65535);
            assert_eq!(a, b);
        }
    }

    /// Random fields, and fields that make the checksum arithmetic carry
    /// or cancel (all ones, zero): the one-pass rewrite writes exactly the
    /// bytes the setters (each its own incremental update) write.
    #[test]
    fn rewrite_matches_the_setters_for_any_values() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 4 {
                0 => 0,
                1 => u32::MAX,
                _ => (state >> 32) as u32,
            }
        };
        for _ in 0..5000 {
            let (mut a, ts) = ([0u8; 4], rnd());
            a.copy_from_slice(&rnd().to_be_bytes());
            let ts_opt = ts.to_be_bytes();
            let opts = [
                1, 1, 8, 10, ts_opt[0], ts_opt[1], ts_opt[2], ts_opt[3], 0, 0, 0, 0,
            ];
            let mut pkt = sample(&rnd().to_be_bytes()[..rnd() as usize % 5], &opts);
            pkt[12..16].copy_from_slice(&a);
            pkt[24..28].copy_from_slice(&rnd().to_be_bytes());
            pkt[33] = (rnd() as u8) & 0x3f;
            Ipv4TcpPacket::new_checked(&mut pkt[..])
                .unwrap()
                .fill_checksums();
            let r = Rewrite {
                src: rnd().to_be_bytes(),
                dst: rnd().to_be_bytes(),
                src_port: rnd() as u16,
                dst_port: rnd() as u16,
                ack: (rnd() % 2 == 0).then(|| SeqNumber(rnd())),
                window: (rnd() % 2 == 0).then(|| rnd() as u16),
            };
            let (mut a, mut b) = (pkt.clone(), pkt);
            let mut p = Ipv4TcpPacket::new_checked(&mut a[..]).unwrap();
            p.rewrite(&r);
            assert!(p.checksums_ok());
            let mut q = Ipv4TcpPacket::new_checked(&mut b[..]).unwrap();
            q.set_src_addr(r.src);
            q.set_dst_addr(r.dst);
            q.set_src_port(r.src_port);
            q.set_dst_port(r.dst_port);
            if let Some(ack) = r.ack {
                q.set_flags(q.flags() | TcpFlags::ACK);
                q.set_ack(ack);
            }
            if let Some(window) = r.window {
                q.set_window(window);
            }
            assert_eq!(a, b, "{r:?}");
        }
    }

    #[test]
    fn validation_rejects_every_bad_length() {
        let good = sample(b"abc", &[]);
        assert!(Ipv4TcpPacket::new_checked(&good[..]).is_ok());
        for len in 0..good.len() {
            assert!(
                Ipv4TcpPacket::new_checked(&good[..len]).is_err(),
                "len {len}"
            );
        }
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4TcpPacket::new_checked(&v6[..]).unwrap_err(),
            PacketError::NotIpv4
        );
        let mut udp = good.clone();
        udp[9] = 17;
        assert_eq!(
            Ipv4TcpPacket::new_checked(&udp[..]).unwrap_err(),
            PacketError::NotTcp
        );
        let mut frag = good.clone();
        frag[6] = 0x20; // MF
        assert_eq!(
            Ipv4TcpPacket::new_checked(&frag[..]).unwrap_err(),
            PacketError::Fragment
        );
        let mut doff = good.clone();
        doff[32] = 0xf0;
        assert_eq!(
            Ipv4TcpPacket::new_checked(&doff[..]).unwrap_err(),
            PacketError::BadDataOffset
        );
        // Trailing link-layer padding is not payload.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            Ipv4TcpPacket::new_checked(&padded[..]).unwrap().payload(),
            b"abc"
        );
    }
}
