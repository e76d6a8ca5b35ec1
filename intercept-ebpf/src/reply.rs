//! Reply matching: frames whose source is a `TARGETS` endpoint are the target
//! server's replies. This first version counts them and passes everything.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Malformed, parse_ipv4_tcp},
};

use crate::{count, is_target};

#[xdp]
pub fn intercept_reply(ctx: XdpContext) -> u32 {
    if try_intercept_reply(&ctx).is_err() {
        count(InterceptCounter::Malformed);
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_intercept_reply(ctx: &XdpContext) -> Result<(), Malformed> {
    count(InterceptCounter::Seen);
    // SAFETY: the XDP context's packet range, valid for this run.
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let Some(view) = parse_ipv4_tcp(&frame)? else {
        return Ok(());
    };
    if is_target(view.ip().saddr, view.tcp().source) {
        count(InterceptCounter::Matched);
    }
    Ok(())
}
