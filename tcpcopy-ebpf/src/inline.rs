//! Inline capture: runs on the NIC that carries production traffic. Every
//! frame goes on to the stack untouched (`XDP_PASS`); frames to a `TARGETS`
//! endpoint are also copied into the `PACKETS` ring buffer for tcpcopy.
//!
//! Invariants: the verdict is always `XDP_PASS`; a full ring is a counted
//! drop of the copy, never a wait; a record is the smallest size class that
//! holds the frame (reservations must have constant sizes).
//!
//! Wake-ups: a record normally goes in without waking the reader (tcpcopy
//! polls the ring at least every millisecond). Waking a sleeping reader
//! per record costs the production CPU an interrupt and a scheduler wake-up
//! per packet, more than the copy itself; only the record that takes the
//! backlog past [`WAKE_BACKLOG`] forces a wake-up, so bursts are read at once.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RINGBUF_HDR_SZ, xdp_action,
    },
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::xdp,
    programs::XdpContext,
};
use tcpcopy_common::{
    capture::{CaptureHeader, MAX_CAPTURE},
    counters::CaptureCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{PACKETS, count, is_target};

/// Unread bytes in the ring past which a record wakes the reader: the one
/// record that crosses this mark does, no other. The reader polls the ring
/// every millisecond anyway; a wake-up per record while it lags (it is
/// then short of CPU, not asleep) would only cost the production CPU an
/// irq_work and an IPI per packet, just when it is busiest.
const WAKE_BACKLOG: u64 = 256 * 1024;

/// A ring buffer record of one size class.
#[repr(C)]
struct Record<const N: usize> {
    header: CaptureHeader,
    data: [u8; N],
}

#[xdp]
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
    } else {
        if len as usize > MAX_CAPTURE {
            count(CaptureCounter::Truncated);
        }
        copy_into::<MAX_CAPTURE>(ctx, len, l3_off)
    }
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
            cap_len: cap as u16,
            l3_off,
        };
        bpf_xdp_load_bytes(ctx.ctx, 0, (*record).data.as_mut_ptr() as *mut c_void, cap)
    };
    if loaded != 0 {
        entry.discard(u64::from(BPF_RB_NO_WAKEUP));
        return false;
    }
    // Unread bytes, this record included (reserved space counts).
    let backlog = PACKETS.query(u64::from(BPF_RB_AVAIL_DATA));
    // Ring space this record takes: its header, its size, 8-byte aligned.
    let this = (size_of::<Record<N>>() as u64 + u64::from(BPF_RINGBUF_HDR_SZ) + 7) & !7;
    let crossing = backlog > WAKE_BACKLOG && backlog.saturating_sub(this) <= WAKE_BACKLOG;
    let flags = if crossing {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
    true
}
