//! Inline capture: runs on the NIC that carries production traffic. Every
//! frame goes on to the stack untouched (`XDP_PASS`); frames to a `TARGETS`
//! endpoint are also copied into the `PACKETS` ring buffer for tcpcopy.
//!
//! Invariants: the verdict is always `XDP_PASS`; a full ring is a counted
//! drop of the copy, never a wait; a record is the smallest size class that
//! holds the frame (reservations must have constant sizes), and a frame
//! larger than every class (jumbo frames; in generic mode, packets merged
//! by GRO) is staged in this CPU's `SCRATCH` buffer and written at its
//! exact size. The program handles multi-buffer frames (`xdp.frags`), so
//! it attaches natively to links with an MTU above a page.
//!
//! Wake-ups: a record normally goes in without waking the reader: while
//! packets flow, tcpcopy polls the ring every millisecond, and waking it
//! per record would cost the production CPU an interrupt and a scheduler
//! wake-up per packet, more than the copy itself. Two records do wake it:
//! the one that takes the backlog past [`WAKE_BACKLOG`] (bursts are read at
//! once), and the first one after the reader went to sleep (it found the
//! ring quiet and set `READER`; the program clears it). So an idle tcpcopy
//! sleeps without polling, and a busy one is never woken per packet.
//!
//! Order: the reader sets `READER` and then looks at the ring; the program
//! commits its record (a fully ordered exchange in the kernel) and then
//! looks at `READER`. One of them sees the other's write: either the
//! reader finds the record, or the program wakes the reader.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RINGBUF_HDR_SZ, xdp_action,
    },
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    macros::xdp,
    programs::XdpContext,
};
use tcpcopy_common::{
    capture::{CAPTURE_HEADER_LEN, CaptureHeader, MAX_CAPTURE, SCRATCH_BYTES},
    counters::CaptureCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{PACKETS, READER, SCRATCH, count, is_target};

/// Unread bytes in the ring past which a record wakes the reader: the one
/// record that crosses this mark does, no other. The reader polls the ring
/// every millisecond anyway; a wake-up per record while it lags (it is
/// then short of CPU, not asleep) would only cost the production CPU an
/// irq_work and an IPI per packet, just when it is busiest.
const WAKE_BACKLOG: u64 = 256 * 1024;

/// Large frames are loaded in chunks of this many bytes (a power of two;
/// `bpf_xdp_load_bytes` copies at most 0xffff at a time).
const LARGE_CHUNK: u32 = 32_768;
const _: () = assert!(CAPTURE_HEADER_LEN + 3 * LARGE_CHUNK as usize <= SCRATCH_BYTES);
const _: () = assert!(MAX_CAPTURE <= 2 * LARGE_CHUNK as usize + LARGE_CHUNK as usize);

/// A ring buffer record of one size class.
#[repr(C)]
struct Record<const N: usize> {
    header: CaptureHeader,
    data: [u8; N],
}

#[xdp(frags)]
pub fn capture_inline(ctx: XdpContext) -> u32 {
    if try_capture_inline(&ctx).is_err() {
        count(CaptureCounter::Malformed);
    }
    // Production traffic always goes on to the stack.
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_capture_inline(ctx: &XdpContext) -> Result<(), Malformed> {
    count(CaptureCounter::Seen);
    // SAFETY: the XDP context's packet range, valid for this run.
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let Some(view) = parse_ipv4_tcp(&frame)? else {
        return Ok(());
    };
    if !is_target(view.ip().daddr, view.tcp().dest) {
        return Ok(());
    }
    count(CaptureCounter::Matched);
    let copied = copy_frame(ctx, view.l3_off as u16);
    count(if copied {
        CaptureCounter::Copied
    } else {
        CaptureCounter::RingFull
    });
    Ok(())
}

/// Copies the frame into a record of the smallest class that holds it.
#[inline(always)]
fn copy_frame(ctx: &XdpContext, l3_off: u16) -> bool {
    // SAFETY: a helper on our own context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    if len == 0 {
        return true;
    }
    if len <= 128 {
        copy_into::<128>(ctx, len, l3_off)
    } else if len <= 256 {
        copy_into::<256>(ctx, len, l3_off)
    } else if len <= 512 {
        copy_into::<512>(ctx, len, l3_off)
    } else if len <= 1024 {
        copy_into::<1024>(ctx, len, l3_off)
    } else if len <= 2048 {
        copy_into::<2048>(ctx, len, l3_off)
    } else if len <= 4096 {
        copy_into::<4096>(ctx, len, l3_off)
    } else {
        copy_large(ctx, len, l3_off)
    }
}

/// Copies a frame larger than every record class: into this CPU's scratch
/// buffer (header first), then into the ring at its exact size.
#[inline(always)]
fn copy_large(ctx: &XdpContext, len: u32, l3_off: u16) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        return false;
    };
    let cap = if len as usize > MAX_CAPTURE {
        count(CaptureCounter::Truncated);
        MAX_CAPTURE as u32
    } else {
        len
    };
    // Two loads: the helper copies at most 0xffff bytes at a time.
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
    // else runs on this CPU while XDP does); the header, `first` and
    // `rest` bytes fit (CAPTURE_HEADER_LEN + 3 * LARGE_CHUNK <= SCRATCH_BYTES).
    let loaded = unsafe {
        *(buf as *mut CaptureHeader) = CaptureHeader {
            tstamp_ns: bpf_ktime_get_ns(),
            frame_len: len,
            cap_len: first + rest,
            l3_off,
            _pad: [0; 6],
        };
        let data = buf.add(CAPTURE_HEADER_LEN);
        let mut r = bpf_xdp_load_bytes(ctx.ctx, 0, data as *mut c_void, first);
        if r == 0 && rest > 0 {
            r = bpf_xdp_load_bytes(
                ctx.ctx,
                LARGE_CHUNK,
                data.add(LARGE_CHUNK as usize) as *mut c_void,
                rest,
            );
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
    let flags = wake_flags(this, false);
    let written = PACKETS.output::<[u8]>(record, flags).is_ok();
    wake_sleeping_reader();
    written
}

#[inline(always)]
fn copy_into<const N: usize>(ctx: &XdpContext, len: u32, l3_off: u16) -> bool {
    let Some(mut entry) = PACKETS.reserve::<Record<N>>(0) else {
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
    // `cap` is at most N and at least 1; the helper bounds-checks the packet.
    let loaded = unsafe {
        (*record).header = CaptureHeader {
            tstamp_ns: bpf_ktime_get_ns(),
            frame_len: len,
            cap_len: cap,
            l3_off,
            _pad: [0; 6],
        };
        bpf_xdp_load_bytes(ctx.ctx, 0, (*record).data.as_mut_ptr() as *mut c_void, cap)
    };
    if loaded != 0 {
        entry.discard(u64::from(BPF_RB_NO_WAKEUP));
        return false;
    }
    // Ring space this record takes: its header, its size, 8-byte aligned.
    let this = (size_of::<Record<N>>() as u64 + u64::from(BPF_RINGBUF_HDR_SZ) + 7) & !7;
    entry.submit(wake_flags(this, true));
    wake_sleeping_reader();
    true
}

/// After a commit: if the reader went to sleep, clears its flag and wakes
/// it (with an empty record, discarded at once: a wake-up needs a commit).
#[inline(always)]
fn wake_sleeping_reader() {
    let Some(flag) = READER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's one value; a racing CPU at worst wakes it twice.
    if unsafe { core::ptr::read_volatile(flag) } == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(flag, 0) };
    if let Some(entry) = PACKETS.reserve::<u64>(0) {
        entry.discard(u64::from(BPF_RB_FORCE_WAKEUP));
    }
}

/// Whether the record going in (taking `this` bytes of ring; `reserved`:
/// already counted in the backlog) wakes the reader: only the one that
/// takes the backlog past [`WAKE_BACKLOG`].
#[inline(always)]
fn wake_flags(this: u64, reserved: bool) -> u64 {
    // Unread bytes (reserved space counts).
    let mut backlog = PACKETS.query(u64::from(BPF_RB_AVAIL_DATA));
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
