//! XDP drop-and-report, on the assistant host: a frame whose source is a
//! `TARGETS` endpoint (`TARGETS6` for IPv6) is one of the target server's
//! replies (the target routes the client range here). Its header record goes into `RECORDS`
//! (see [`crate::record`]) and the frame is dropped. Everything else passes,
//! so the assistant stays reachable (ARP, ssh, tcpcopy's own connections).
//!
//! Invariants: a matched reply is always dropped, also when the ring buffer
//! is full (the client must never see it). A malformed frame is counted and
//! passed, never reported. An IPv6 fragment is counted (`fragments6`) and
//! passed: only a first fragment would carry the TCP header, and the
//! program does not reassemble. The program reads headers only (always in a
//! frame's first buffer), and accepts multi-buffer frames (`xdp.frags`), so
//! it attaches natively to links with an MTU above a page.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_load_bytes, macros::xdp, programs::XdpContext,
};
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Ipv6Parse, Malformed, is_ipv6, link_layer, parse_ipv4_tcp_at, parse_ipv6_tcp},
};

use crate::{
    ETH_P_IP, count, is_target, is_target6,
    record::{report, report6},
};

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
    let load = |offset, dst: *mut u8, len| {
        // SAFETY: the helper bounds-checks the frame (all its buffers) and
        // writes `len` bytes to `dst`, which the caller sized.
        unsafe { bpf_xdp_load_bytes(ctx.ctx, offset, dst as *mut c_void, len) }
    };
    let (ether_type, l3_off) = link_layer(&frame)?;
    if is_ipv6(ether_type) {
        let view = match parse_ipv6_tcp(&frame, l3_off)? {
            Ipv6Parse::Tcp(view) => view,
            Ipv6Parse::Fragment => {
                count(InterceptCounter::Fragments6);
                return Ok(xdp_action::XDP_PASS);
            }
            Ipv6Parse::NotTcp => return Ok(xdp_action::XDP_PASS),
        };
        if !is_target6(view.ip().saddr, view.tcp().source) {
            return Ok(xdp_action::XDP_PASS);
        }
        report6(&frame, &view, load);
        return Ok(xdp_action::XDP_DROP);
    }
    if ether_type != ETH_P_IP {
        return Ok(xdp_action::XDP_PASS);
    }
    let Some(view) = parse_ipv4_tcp_at(&frame, l3_off)? else {
        return Ok(xdp_action::XDP_PASS);
    };
    if !is_target(view.ip().saddr, view.tcp().source) {
        return Ok(xdp_action::XDP_PASS);
    }
    report(&frame, &view, load);
    Ok(xdp_action::XDP_DROP)
}
