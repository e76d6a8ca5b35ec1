//! XDP drop-and-report, on the assistant host: a frame whose source is a
//! `TARGETS` endpoint is one of the target server's replies (the target
//! routes the client range here). Its header record goes into `RECORDS`
//! (see [`crate::record`]) and the frame is dropped. Everything else passes,
//! so the assistant stays reachable (ARP, ssh, tcpcopy's own connections).
//!
//! Invariants: a matched reply is always dropped, also when the ring buffer
//! is full (the client must never see it). A malformed frame is counted and
//! passed, never reported. The program reads headers only (always in a
//! frame's first buffer), and accepts multi-buffer frames (`xdp.frags`), so
//! it attaches natively to links with an MTU above a page.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_load_bytes, macros::xdp, programs::XdpContext,
};
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{count, is_target, record::report};

#[xdp(frags)]
pub fn intercept_reply(ctx: XdpContext) -> u32 {
    match try_intercept_reply(&ctx) {
        Ok(verdict) => verdict,
        Err(Malformed) => {
            count(InterceptCounter::Malformed);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_intercept_reply(ctx: &XdpContext) -> Result<u32, Malformed> {
    count(InterceptCounter::Seen);
    // SAFETY: the XDP context's packet range, valid for this run.
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let Some(view) = parse_ipv4_tcp(&frame)? else {
        return Ok(xdp_action::XDP_PASS);
    };
    if !is_target(view.ip().saddr, view.tcp().source) {
        return Ok(xdp_action::XDP_PASS);
    }
    report(&frame, &view, |offset, dst, len| {
        // SAFETY: the helper bounds-checks the frame (all its buffers) and
        // writes `len` bytes to `dst`, which the caller sized.
        unsafe { bpf_xdp_load_bytes(ctx.ctx, offset, dst as *mut c_void, len) }
    });
    Ok(xdp_action::XDP_DROP)
}
