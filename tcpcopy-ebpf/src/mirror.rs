//! Mirror capture: runs on a port that carries a copy of production traffic
//! (SPAN/TAP, or a `tc mirred` mirror). Frames to a `TARGETS` or
//! `TARGETS6` endpoint are
//! redirected into the AF_XDP socket of their RX queue (`XSKS`), zero-copy
//! where the driver allows. Everything else is dropped (the copies are not
//! for this host), or passed when `MIRROR_PASS_OTHERS` is set. With
//! `MIRROR_RESPONSES` set (`--compare`), production's answers (from a
//! `TARGETS` endpoint, with payload, SYN, FIN or RST) are redirected too,
//! when the mirror carries both directions.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{Frame, Malformed},
};

use crate::{MIRROR_PASS_OTHERS, MIRROR_RESPONSES, XSKS, count, segment::segment_of};

#[xdp]
pub fn capture_mirror(ctx: XdpContext) -> u32 {
    match try_capture_mirror(&ctx) {
        Ok(Some(verdict)) => verdict,
        Ok(None) => others(),
        Err(Malformed) => {
            count(CaptureCounter::Malformed);
            others()
        }
    }
}

/// The verdict for frames tcpcopy does not want.
#[inline(always)]
fn others() -> u32 {
    if MIRROR_PASS_OTHERS.load() != 0 {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
fn try_capture_mirror(ctx: &XdpContext) -> Result<Option<u32>, Malformed> {
    count(CaptureCounter::Seen);
    // SAFETY: the XDP context's packet range, valid for this run.
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let Some(seg) = segment_of(&frame)? else {
        return Ok(None);
    };
    let response = if seg.to_target() {
        count(CaptureCounter::Matched);
        if seg.is_ipv6() {
            count(CaptureCounter::Matched6);
        }
        false
    } else if MIRROR_RESPONSES.load() != 0 && seg.carries && seg.from_target() {
        true
    } else {
        return Ok(None);
    };
    match XSKS.redirect(ctx.rx_queue_index(), 0) {
        Ok(verdict) => {
            count(if response {
                CaptureCounter::Responses
            } else {
                CaptureCounter::Redirected
            });
            Ok(Some(verdict))
        }
        Err(_) => {
            count(CaptureCounter::RedirectFailed);
            Ok(Some(xdp_action::XDP_DROP))
        }
    }
}
