//! Records of the inline capture program (`tcpcopy-ebpf`): one per copied
//! frame in its `PACKETS` ring buffer.
//!
//! A record is a [`CaptureHeader`] followed by the frame's first `cap_len`
//! bytes. Frames up to [`LARGEST_CLASS`] go into a record of one of the
//! [`SIZE_CLASSES`] (the program reserves the smallest class that holds the
//! frame: a ring buffer reservation must have a constant size, so small
//! packets take little ring space). Larger frames (jumbo frames, and the
//! merged packets generic-mode XDP sees after GRO, up to 64 KiB) are
//! staged in a per-CPU scratch buffer and written at their exact size.

/// Header of a captured frame record. Host byte order (written and read on
/// the same machine).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// `bpf_ktime_get_ns()` at capture: CLOCK_MONOTONIC, nanoseconds.
    pub tstamp_ns: u64,
    /// The frame's length on the wire.
    pub frame_len: u32,
    /// Bytes of the frame that follow this header (less than `frame_len`
    /// only for frames larger than [`MAX_CAPTURE`]).
    pub cap_len: u32,
    /// Offset of the IPv4 header in the frame (after Ethernet and VLAN tags).
    pub l3_off: u16,
    pub _pad: [u8; 6],
}

pub const CAPTURE_HEADER_LEN: usize = 24;
const _: () = assert!(core::mem::size_of::<CaptureHeader>() == CAPTURE_HEADER_LEN);

/// Payload sizes of the reserved record classes, smallest first.
pub const SIZE_CLASSES: [usize; 6] = [128, 256, 512, 1024, 2048, 4096];
/// The largest frame copied into a reserved record of its class.
pub const LARGEST_CLASS: usize = 4096;
/// The largest frame copied whole: the largest IPv4 packet (65,535 bytes)
/// behind an Ethernet header with two VLAN tags, rounded up.
pub const MAX_CAPTURE: usize = 65_536 + 64;
/// Bytes of the per-CPU scratch buffer large frames are staged in: a
/// header and a power of two at least [`MAX_CAPTURE`] (the program bounds
/// lengths with a mask the verifier can follow).
pub const SCRATCH_BYTES: usize = CAPTURE_HEADER_LEN + 131_072;

#[cfg(feature = "user")]
// SAFETY: `repr(C)`, `Copy`, no padding, every bit pattern valid.
unsafe impl aya::Pod for CaptureHeader {}

impl CaptureHeader {
    /// Reads a record's header and frame bytes; `None` for a record too
    /// short for what it announces.
    pub fn parse(record: &[u8]) -> Option<(Self, &[u8])> {
        let hdr = record.get(..CAPTURE_HEADER_LEN)?;
        let h = Self {
            tstamp_ns: u64::from_ne_bytes(hdr[0..8].try_into().ok()?),
            frame_len: u32::from_ne_bytes(hdr[8..12].try_into().ok()?),
            cap_len: u32::from_ne_bytes(hdr[12..16].try_into().ok()?),
            l3_off: u16::from_ne_bytes(hdr[16..18].try_into().ok()?),
            _pad: [0; 6],
        };
        let end = CAPTURE_HEADER_LEN.checked_add(usize::try_from(h.cap_len).ok()?)?;
        let frame = record.get(CAPTURE_HEADER_LEN..end)?;
        Some((h, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_short_ones_are_refused() {
        let mut rec = [0u8; CAPTURE_HEADER_LEN + 128];
        rec[0..8].copy_from_slice(&77u64.to_ne_bytes());
        rec[8..12].copy_from_slice(&60u32.to_ne_bytes());
        rec[12..16].copy_from_slice(&60u32.to_ne_bytes());
        rec[16..18].copy_from_slice(&14u16.to_ne_bytes());
        rec[CAPTURE_HEADER_LEN] = 0xab;
        let (h, frame) = CaptureHeader::parse(&rec).unwrap();
        assert_eq!(
            (h.tstamp_ns, h.frame_len, h.cap_len, h.l3_off),
            (77, 60, 60, 14)
        );
        assert_eq!((frame.len(), frame[0]), (60, 0xab));
        assert!(CaptureHeader::parse(&rec[..CAPTURE_HEADER_LEN + 59]).is_none());
        assert!(CaptureHeader::parse(&rec[..10]).is_none());
        // A length no record can have.
        rec[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(CaptureHeader::parse(&rec).is_none());
    }
}
