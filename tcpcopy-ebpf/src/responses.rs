//! Response capture (`--compare`, inline mode): a TC classifier at the
//! egress of the NIC that carries production traffic. Production's answers
//! to its clients (frames whose source is a `TARGETS` or `TARGETS6`
//! endpoint) are copied
//! into the `RESPONSES` ring buffer, so tcpcopy can compare the target's
//! answers with them. Only segments that carry something a comparison
//! needs are copied: payload, or SYN, FIN or RST; bare ACKs are not.
//!
//! Invariants: the verdict is always "unspecified" (the next TC program on
//! the device, then the stack, decide, as if this program were not there);
//! a full ring is a counted drop of the copy (`response_ring_full`), never
//! a wait, and never costs a client packet its place in `PACKETS` (the
//! rings are separate). A GSO packet is copied as one record whose IPv4
//! total length covers all of its segments. Headers are read from the
//! skb's linear part, pulled in first when the stack left them outside it.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::bpf_skb_load_bytes, macros::classifier, programs::TcContext,
};
use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{Frame, Malformed},
};

use crate::{
    RESPONSE_SCRATCH, RESPONSES,
    copy::{FrameBytes, copy_frame},
    count,
    segment::segment_of,
};

/// Bytes of headers the parser may need: Ethernet, two VLAN tags, and the
/// longer of IPv4 with its longest options and IPv6 with a few extension
/// headers, then TCP with its longest options.
const HEADERS_MAX: u32 = 14 + 8 + 40 + 64 + 60;

#[classifier]
pub fn capture_responses(ctx: TcContext) -> i32 {
    if try_capture_responses(&ctx).is_err() {
        count(CaptureCounter::Malformed);
    }
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_capture_responses(ctx: &TcContext) -> Result<(), Malformed> {
    let want = if ctx.len() < HEADERS_MAX {
        ctx.len()
    } else {
        HEADERS_MAX
    };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // Headers outside the linear part: pull them in (may fail for
        // lack of memory; the parser then sees a short packet).
        let _ = ctx.pull_data(want);
    }
    // SAFETY: the skb's linear data range, valid for this run (read after
    // any pull, which moves it).
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let Some(seg) = segment_of(&frame)? else {
        return Ok(());
    };
    // A bare ACK has nothing to compare.
    if !seg.carries || !seg.from_target() {
        return Ok(());
    }
    let copied = copy_frame(&RESPONSES, &RESPONSE_SCRATCH, ctx, seg.l3_off as u16);
    count(if copied {
        CaptureCounter::Responses
    } else {
        CaptureCounter::ResponseRingFull
    });
    Ok(())
}

impl FrameBytes for TcContext {
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len()
    }

    #[inline(always)]
    unsafe fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's `dst` holds `len` bytes; the helper
        // bounds-checks the skb (linear part and frags).
        unsafe {
            bpf_skb_load_bytes(
                self.skb.skb as *const _,
                offset,
                dst as *mut core::ffi::c_void,
                len,
            )
        }
    }
}
