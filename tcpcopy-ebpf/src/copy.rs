//! Copying a frame into a capture ring buffer, shared by the inline
//! capture (XDP, client packets into `PACKETS`) and the response capture
//! (TC egress, production's answers into `RESPONSES`).
//!
//! A record is the smallest size class that holds the frame (reservations
//! must have constant sizes, so small packets take little ring space); a
//! frame larger than every class (jumbo frames; in generic mode, packets
//! merged by GRO; at TC egress, GSO packets of up to 64 KiB) is staged in
//! this CPU's scratch buffer and written at its exact size.
//!
//! Wake-ups: a record normally goes in without waking the reader: while
//! packets flow, tcpcopy polls the rings every millisecond, and waking it
//! per record would cost the production CPU an interrupt and a scheduler
//! wake-up per packet, more than the copy itself. Two records do wake it:
//! the one that takes a ring's backlog past [`WAKE_BACKLOG`] (bursts are
//! read at once), and the first one after the reader went to sleep (it
//! found the rings quiet and set `READER`; the program clears it). So an
//! idle tcpcopy sleeps without polling, and a busy one is never woken per
//! packet.
//!
//! Order: the reader sets `READER` and then looks at the rings; a program
//! commits its record (a fully ordered exchange in the kernel) and then
//! looks at `READER`. One of them sees the other's write: either the
//! reader finds the record, or the program wakes the reader.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RINGBUF_HDR_SZ},
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    maps::{Array, RingBuf},
};
use tcpcopy_common::{
    capture::{CAPTURE_HEADER_LEN, CaptureHeader, MAX_CAPTURE, SCRATCH_BYTES},
    counters::CaptureCounter,
};

use crate::{READER, count};

/// Unread bytes in a ring past which a record wakes the reader: the one
/// record that crosses this mark does, no other. The reader polls the ring
/// every millisecond anyway; a wake-up per record while it lags (it is
/// then short of CPU, not asleep) would only cost the production CPU an
/// irq_work and an IPI per packet, just when it is busiest.
const WAKE_BACKLOG: u64 = 256 * 1024;

/// Large frames are loaded in chunks of this many bytes (a power of two;
/// the load helpers copy at most 0xffff at a time).
const LARGE_CHUNK: u32 = 32_768;
const _: () = assert!(CAPTURE_HEADER_LEN + 3 * LARGE_CHUNK as usize <= SCRATCH_BYTES);
const _: () = assert!(MAX_CAPTURE <= 2 * LARGE_CHUNK as usize + LARGE_CHUNK as usize);

/// A frame a program can copy out: an XDP buffer or a socket buffer.
pub(crate) trait FrameBytes {
    /// The whole frame's length (linear part and fragments).
    fn frame_len(&self) -> u32;
    /// Copies `len` bytes at `offset` to `dst`; 0 on success.
    ///
    /// # Safety
    /// `dst` must be writable for `len` bytes.
    unsafe fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64;
}

/// A ring buffer record of one size class.
#[repr(C)]
struct Record<const N: usize> {
    header: CaptureHeader,
    data: [u8; N],
}

/// Copies the frame into a record of the smallest class that holds it,
/// in `ring` (`scratch`: this program's staging buffers for large frames).
/// `false`: the ring was full (or the frame could not be read).
#[inline(always)]
pub(crate) fn copy_frame(
    ring: &RingBuf,
    scratch: &Array<[u8; SCRATCH_BYTES]>,
    src: &impl FrameBytes,
    l3_off: u16,
) -> bool {
    let len = src.frame_len();
    if len == 0 {
        return true;
    }
    if len <= 128 {
        copy_into::<128>(ring, src, len, l3_off)
    } else if len <= 256 {
        copy_into::<256>(ring, src, len, l3_off)
    } else if len <= 512 {
        copy_into::<512>(ring, src, len, l3_off)
    } else if len <= 1024 {
        copy_into::<1024>(ring, src, len, l3_off)
    } else if len <= 2048 {
        copy_into::<2048>(ring, src, len, l3_off)
    } else if len <= 4096 {
        copy_into::<4096>(ring, src, len, l3_off)
    } else {
        copy_large(ring, scratch, src, len, l3_off)
    }
}

/// Copies a frame larger than every record class: into this CPU's scratch
/// buffer (header first), then into the ring at its exact size.
#[inline(always)]
fn copy_large(
    ring: &RingBuf,
    scratch: &Array<[u8; SCRATCH_BYTES]>,
    src: &impl FrameBytes,
    len: u32,
    l3_off: u16,
) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = scratch.get_ptr_mut(cpu) else {
        return false;
    };
    let cap = if len as usize > MAX_CAPTURE {
        count(CaptureCounter::Truncated);
        MAX_CAPTURE as u32
    } else {
        len
    };
    // Two loads: the helpers copy at most 0xffff bytes at a time.
    let first = if cap > LARGE_CHUNK { LARGE_CHUNK } else { cap };
    let rest = cap - first;
    // SAFETY: reads of locals (kept, so the masks below are not dropped).
    let (first, rest) = unsafe {
        (
            core::ptr::read_volatile(&first),
            core::ptr::read_volatile(&rest),
        )
    };
    // Ranges the verifier sees: first in [1, LARGE_CHUNK], rest in
    // [0, 2 * LARGE_CHUNK - 1] (the masks change nothing: first is above
    // every record class, rest below MAX_CAPTURE - LARGE_CHUNK).
    let first = (first.wrapping_sub(1) & (LARGE_CHUNK - 1)) + 1;
    let rest = rest & (2 * LARGE_CHUNK - 1);
    let buf = buf as *mut u8;
    // SAFETY: `buf` is this CPU's scratch value of SCRATCH_BYTES (nothing
    // else runs this program on this CPU meanwhile); the header, `first`
    // and `rest` bytes fit (CAPTURE_HEADER_LEN + 3 * LARGE_CHUNK <=
    // SCRATCH_BYTES).
    let loaded = unsafe {
        *(buf as *mut CaptureHeader) = CaptureHeader {
            tstamp_ns: bpf_ktime_get_ns(),
            frame_len: len,
            cap_len: first + rest,
            l3_off,
            _pad: [0; 6],
        };
        let data = buf.add(CAPTURE_HEADER_LEN);
        let mut r = src.load(0, data, first);
        if r == 0 && rest > 0 {
            r = src.load(LARGE_CHUNK, data.add(LARGE_CHUNK as usize), rest);
        }
        r
    };
    if loaded != 0 {
        return false;
    }
    // SAFETY: the header and the bytes just loaded, inside the value.
    let record =
        unsafe { core::slice::from_raw_parts(buf, CAPTURE_HEADER_LEN + (first + rest) as usize) };
    let this = (record.len() as u64 + u64::from(BPF_RINGBUF_HDR_SZ) + 7) & !7;
    let flags = wake_flags(ring, this, false);
    let written = ring.output::<[u8]>(record, flags).is_ok();
    wake_sleeping_reader(ring);
    written
}

#[inline(always)]
fn copy_into<const N: usize>(ring: &RingBuf, src: &impl FrameBytes, len: u32, l3_off: u16) -> bool {
    let Some(mut entry) = ring.reserve::<Record<N>>(0) else {
        return false;
    };
    let cap = if len as usize > N { N as u32 } else { len };
    // The same value, in a form whose range the verifier sees as [1, N]
    // (N is a power of two and 1 <= cap <= N here). The volatile reload
    // keeps LLVM from proving the mask redundant and dropping it.
    // SAFETY: a read of a local.
    let cap = unsafe { core::ptr::read_volatile(&cap) };
    let cap = ((cap.wrapping_sub(1)) & (N as u32 - 1)) + 1;
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable record of class N;
    // `cap` is at most N and at least 1; the helper bounds-checks the frame.
    let loaded = unsafe {
        (*record).header = CaptureHeader {
            tstamp_ns: bpf_ktime_get_ns(),
            frame_len: len,
            cap_len: cap,
            l3_off,
            _pad: [0; 6],
        };
        src.load(0, (*record).data.as_mut_ptr(), cap)
    };
    if loaded != 0 {
        entry.discard(u64::from(BPF_RB_NO_WAKEUP));
        return false;
    }
    // Ring space this record takes: its header, its size, 8-byte aligned.
    let this = (size_of::<Record<N>>() as u64 + u64::from(BPF_RINGBUF_HDR_SZ) + 7) & !7;
    entry.submit(wake_flags(ring, this, true));
    wake_sleeping_reader(ring);
    true
}

/// After a commit: if the reader went to sleep, clears its flag and wakes
/// it (with an empty record in `ring`, discarded at once: a wake-up needs
/// a commit; the reader watches every capture ring).
#[inline(always)]
fn wake_sleeping_reader(ring: &RingBuf) {
    let Some(flag) = READER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's one value; a racing CPU at worst wakes it twice.
    if unsafe { core::ptr::read_volatile(flag) } == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(flag, 0) };
    if let Some(entry) = ring.reserve::<u64>(0) {
        entry.discard(u64::from(BPF_RB_FORCE_WAKEUP));
    }
}

/// Whether the record going in (taking `this` bytes of ring; `reserved`:
/// already counted in the backlog) wakes the reader: only the one that
/// takes the backlog past [`WAKE_BACKLOG`].
#[inline(always)]
fn wake_flags(ring: &RingBuf, this: u64, reserved: bool) -> u64 {
    // Unread bytes (reserved space counts).
    let mut backlog = ring.query(u64::from(BPF_RB_AVAIL_DATA));
    if !reserved {
        backlog += this;
    }
    let crossing = backlog > WAKE_BACKLOG && backlog.saturating_sub(this) <= WAKE_BACKLOG;
    u64::from(if crossing {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    })
}
