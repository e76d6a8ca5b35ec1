//! Inline capture: runs on the NIC that carries production traffic. Every
//! frame goes on to the stack untouched (`XDP_PASS`); frames to a `TARGETS`
//! (IPv4) or `TARGETS6` (IPv6) endpoint are also copied into the `PACKETS`
//! ring buffer for tcpcopy
//! (see [`crate::copy`] for the record sizes and the wake-up rule).
//!
//! Invariants: the verdict is always `XDP_PASS`; a full ring is a counted
//! drop of the copy, never a wait. The program handles multi-buffer frames
//! (`xdp.frags`), so it attaches natively to links with an MTU above a
//! page.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::xdp,
    programs::XdpContext,
};
use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{Frame, Malformed},
};

use crate::{
    PACKETS, SCRATCH,
    copy::{FrameBytes, copy_frame},
    count,
    segment::segment_of,
};

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
    let Some(seg) = segment_of(&frame)? else {
        return Ok(());
    };
    if !seg.to_target() {
        return Ok(());
    }
    count(CaptureCounter::Matched);
    if seg.is_ipv6() {
        count(CaptureCounter::Matched6);
    }
    let copied = copy_frame(&PACKETS, &SCRATCH, ctx, seg.l3_off as u16);
    count(if copied {
        CaptureCounter::Copied
    } else {
        CaptureCounter::RingFull
    });
    Ok(())
}

impl FrameBytes for XdpContext {
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        // SAFETY: a helper on our own context.
        unsafe { bpf_xdp_get_buff_len(self.ctx) as u32 }
    }

    #[inline(always)]
    unsafe fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's `dst` holds `len` bytes; the helper
        // bounds-checks the frame (linear part and fragments).
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, dst as *mut core::ffi::c_void, len) }
    }
}
