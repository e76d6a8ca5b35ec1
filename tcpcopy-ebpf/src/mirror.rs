//! Mirror capture: runs on a port that carries a copy of production traffic
//! (SPAN/TAP, or a `tc mirred` mirror). Frames to a `TARGETS` endpoint are
//! redirected into the AF_XDP socket of their RX queue (`XSKS`), zero-copy
//! where the driver allows. Everything else is dropped (the copies are not
//! for this host), or passed when `MIRROR_PASS_OTHERS` is set. With
//! `MIRROR_RESPONSES` set (`--compare`), production's answers (from a
//! `TARGETS` endpoint, with payload, SYN, FIN or RST) are redirected too,
//! when the mirror carries both directions.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use tcpcopy_common::{
    counters::CaptureCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{MIRROR_PASS_OTHERS, MIRROR_RESPONSES, XSKS, count, is_target, responses::SYN_FIN_RST};

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
    let Some(view) = parse_ipv4_tcp(&frame)? else {
        return Ok(None);
    };
    let response = if is_target(view.ip().daddr, view.tcp().dest) {
        count(CaptureCounter::Matched);
        false
    } else if MIRROR_RESPONSES.load() != 0
        && is_target(view.ip().saddr, view.tcp().source)
        && (usize::from(view.ip_total_len()) > view.ip_hdr_len + view.tcp_hdr_len
            || view.tcp().flags & SYN_FIN_RST != 0)
    {
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
