//! Records of the inline capture program (`tcpcopy-ebpf`): one per copied
//! frame in its `PACKETS` ring buffer.
//!
//! A record is a [`CaptureHeader`] followed by the frame's first `cap_len`
//! bytes, in one of the [`SIZE_CLASSES`]: the program reserves the smallest
//! class that holds the frame (a ring buffer reservation must have a
//! constant size), so small packets take little ring space.

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
    pub cap_len: u16,
    /// Offset of the IPv4 header in the frame (after Ethernet and VLAN tags).
    pub l3_off: u16,
}

pub const CAPTURE_HEADER_LEN: usize = 16;
const _: () = assert!(core::mem::size_of::<CaptureHeader>() == CAPTURE_HEADER_LEN);

/// Payload sizes of the record classes, smallest first.
pub const SIZE_CLASSES: [usize; 6] = [128, 256, 512, 1024, 2048, 4096];
/// The largest frame copied whole.
pub const MAX_CAPTURE: usize = 4096;

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
            cap_len: u16::from_ne_bytes(hdr[12..14].try_into().ok()?),
            l3_off: u16::from_ne_bytes(hdr[14..16].try_into().ok()?),
        };
        let frame = record.get(CAPTURE_HEADER_LEN..CAPTURE_HEADER_LEN + usize::from(h.cap_len))?;
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
        rec[12..14].copy_from_slice(&60u16.to_ne_bytes());
        rec[14..16].copy_from_slice(&14u16.to_ne_bytes());
        rec[16] = 0xab;
        let (h, frame) = CaptureHeader::parse(&rec).unwrap();
        assert_eq!(
            (h.tstamp_ns, h.frame_len, h.cap_len, h.l3_off),
            (77, 60, 60, 14)
        );
        assert_eq!((frame.len(), frame[0]), (60, 0xab));
        assert!(CaptureHeader::parse(&rec[..CAPTURE_HEADER_LEN + 59]).is_none());
        assert!(CaptureHeader::parse(&rec[..10]).is_none());
    }
}
