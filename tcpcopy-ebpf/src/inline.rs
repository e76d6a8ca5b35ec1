//! Inline capture: runs on the NIC that carries production traffic. Every
//! frame is passed on to the stack untouched; frames to a `TARGETS` endpoint
//! are counted as matched.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{count, is_target};

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
    if is_target(view.ip().daddr, view.tcp().dest) {
        count(CaptureCounter::Matched);
    }
    Ok(())
}
