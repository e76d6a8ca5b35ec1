//! TCP options the engine cares about: MSS, window scale, SACK-permitted and
//! timestamps (with where the timestamp lives, so it can be rewritten in
//! place).

/// Option kinds (IANA).
pub mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// The options of one TCP header. Parsing stops at END or at the first
/// option whose length is impossible (as Linux does); what was parsed stays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// `(TSval, TSecr)`.
    pub timestamp: Option<(u32, u32)>,
    /// Offset of the TSval from the start of the TCP header.
    pub timestamp_offset: Option<u8>,
    /// An option had an impossible length (parsing stopped there).
    pub truncated: bool,
}

impl TcpOptions {
    /// Parses `opts`, the bytes after the fixed 20-byte TCP header.
    #[inline]
    pub fn parse(opts: &[u8]) -> Self {
        // What nearly every segment after the handshake carries: nothing, or
        // Linux's NOP, NOP, timestamp.
        match opts {
            [] => return Self::default(),
            [
                kind::NOP,
                kind::NOP,
                kind::TIMESTAMP,
                10,
                v @ ..,
                e0,
                e1,
                e2,
                e3,
            ] if v.len() == 4 => {
                return Self {
                    timestamp: Some((
                        u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                        u32::from_be_bytes([*e0, *e1, *e2, *e3]),
                    )),
                    timestamp_offset: Some(20 + 4),
                    ..Self::default()
                };
            }
            _ => {}
        }
        Self::parse_general(opts)
    }

    fn parse_general(opts: &[u8]) -> Self {
        let mut out = Self::default();
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                kind::END => break,
                kind::NOP => {
                    i += 1;
                    continue;
                }
                k => {
                    let Some(&len) = opts.get(i + 1) else {
                        out.truncated = true;
                        break;
                    };
                    let len = len as usize;
                    if len < 2 || i + len > opts.len() {
                        out.truncated = true;
                        break;
                    }
                    let body = &opts[i + 2..i + len];
                    match (k, body.len()) {
                        (kind::MSS, 2) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                        (kind::WSCALE, 1) => out.wscale = Some(body[0].min(14)),
                        (kind::SACK_PERM, 0) => out.sack_permitted = true,
                        (kind::TIMESTAMP, 8) => {
                            out.timestamp = Some((
                                u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                                u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                            ));
                            out.timestamp_offset = Some((20 + i + 2) as u8);
                        }
                        _ => {}
                    }
                    i += len;
                }
            }
        }
        out
    }
}

/// Writes options for a SYN the engine builds itself: MSS, then (optional)
/// timestamps and window scale, NOP-padded to a multiple of 4. Returns the
/// bytes written; `out` must hold 20 bytes.
pub fn write_syn_options(
    out: &mut [u8],
    mss: u16,
    timestamp: Option<(u32, u32)>,
    wscale: Option<u8>,
) -> usize {
    let mut n = 0;
    out[n..n + 4].copy_from_slice(&[kind::MSS, 4, (mss >> 8) as u8, mss as u8]);
    n += 4;
    if let Some((tsval, tsecr)) = timestamp {
        out[n..n + 2].copy_from_slice(&[kind::NOP, kind::NOP]);
        out[n + 2] = kind::TIMESTAMP;
        out[n + 3] = 10;
        out[n + 4..n + 8].copy_from_slice(&tsval.to_be_bytes());
        out[n + 8..n + 12].copy_from_slice(&tsecr.to_be_bytes());
        n += 12;
    }
    if let Some(ws) = wscale {
        out[n..n + 4].copy_from_slice(&[kind::NOP, kind::WSCALE, 3, ws]);
        n += 4;
    }
    n
}

/// Writes a NOP, NOP, timestamp option (12 bytes) for pure ACKs and RSTs the
/// engine builds. Returns 12.
pub fn write_timestamp_option(out: &mut [u8], tsval: u32, tsecr: u32) -> usize {
    out[0..4].copy_from_slice(&[kind::NOP, kind::NOP, kind::TIMESTAMP, 10]);
    out[4..8].copy_from_slice(&tsval.to_be_bytes());
    out[8..12].copy_from_slice(&tsecr.to_be_bytes());
    12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_linux_syn() {
        // MSS 1460, SACK_PERM, TS, NOP, WS 7
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let o = TcpOptions::parse(&opts);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamp, Some((1, 0)));
        assert_eq!(o.timestamp_offset, Some(28));
        assert_eq!(o.wscale, Some(7));
        assert!(!o.truncated);
    }

    #[test]
    fn stops_at_impossible_lengths_without_panicking() {
        for opts in [&[2u8][..], &[2, 0], &[2, 1, 0], &[8, 10, 0, 0], &[3, 3]] {
            let o = TcpOptions::parse(opts);
            assert!(o.truncated, "{opts:?}");
            assert_eq!(o.mss, None);
        }
        // Wrong length for a known kind: skipped, not misread.
        let o = TcpOptions::parse(&[2, 3, 5, 8, 6, 1, 2, 3, 4]);
        assert_eq!(o.mss, None);
        assert_eq!(o.timestamp, None);
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let ts = [1, 1, 8, 10, 0, 0, 1, 2, 0xa0, 0xb0, 0xc0, 0xd0];
        assert_eq!(TcpOptions::parse(&ts), TcpOptions::parse_general(&ts));
        assert_eq!(TcpOptions::parse(&ts).timestamp, Some((258, 0xa0b0_c0d0)));
        assert_eq!(TcpOptions::parse(&[]), TcpOptions::parse_general(&[]));
    }

    #[test]
    fn window_scale_is_capped_at_14() {
        assert_eq!(TcpOptions::parse(&[3, 3, 200]).wscale, Some(14));
    }

    #[test]
    fn written_syn_options_parse_back() {
        let mut buf = [0u8; 20];
        let n = write_syn_options(&mut buf, 1400, Some((77, 0)), Some(2));
        assert_eq!(n % 4, 0);
        let o = TcpOptions::parse(&buf[..n]);
        assert_eq!(
            (o.mss, o.timestamp, o.wscale),
            (Some(1400), Some((77, 0)), Some(2))
        );
    }
}
