//! TC egress drop-and-report, on the target host itself: a packet leaving
//! the target whose source is a `TARGETS` endpoint and whose destination is
//! a replayed client (in a `CLIENTS` range, or an address `ANNOUNCED` for
//! that target) is a reply to a replayed session. Its header record goes
//! into `RECORDS` (see [`crate::record`]) and the packet is discarded, so
//! it never leaves the host. IPv6 replies are the same with the `*6`
//! tables (`TARGETS6`, `CLIENTS6`, `ANNOUNCED6`, `UNCLAIMED6`); an IPv6
//! fragment is counted (`fragments6`) and passed.
//!
//! How it is discarded matters: `TC_ACT_SHOT` would hand the sender
//! `NET_XMIT_DROP`, and TCP takes a local drop for congestion: it does not
//! count the segment as sent, sends it again and again, and never advances
//! (a replayed session stalls). So the reply is redirected to no device
//! (ifindex 0, which never exists): the kernel frees it and tells the
//! sender it was sent, as for a reply that left toward an assistant. This
//! works the same under TCX and a classic clsact filter. Replies the kernel makes itself (RSTs to stray
//! segments) pass through here too and are treated alike.
//!
//! Everything else passes untouched (verdict "unspecified", so other TC
//! programs on the device still run): the target's other traffic, replies to
//! unclaimed clients (counted `unclaimed`, remembered in `UNCLAIMED`), and
//! anything to a loopback address (127.0.0.0/8 or ::1: a target talking to
//! itself; it never crosses a real device anyway).
//!
//! Invariants: a matched reply is always discarded, also when the ring is
//! full.
//! A malformed packet is counted and passed. Headers are read from the
//! skb's linear part; when the stack left them outside it (never for
//! locally built TCP), they are pulled in first. A GSO packet is one
//! record whose IPv4 total length (IPv6 payload length) covers all of its
//! segments. (An IPv6 BIG TCP packet, above 64 KiB, says payload length 0
//! and is passed as malformed: BIG TCP is off unless a device's
//! `gso_max_size` is raised.)

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::{bpf_redirect, bpf_skb_load_bytes},
    macros::classifier,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Ipv6Parse, Malformed, is_ipv6, link_layer, parse_ipv4_tcp_at, parse_ipv6_tcp},
    table::{AnnouncedKey, AnnouncedKey6},
};

use crate::{
    ANNOUNCED, ANNOUNCED6, CLIENTS, CLIENTS6, ETH_P_IP, UNCLAIMED, UNCLAIMED6, count, is_target,
    is_target6,
    record::{report, report6},
};

/// The verdict for every packet that is not a claimed reply: no opinion,
/// so the next TC program on the device (TCX or a classic filter) and then
/// the stack decide, as if this program were not there.
const NOT_OURS: i32 = TC_ACT_UNSPEC;

/// Bytes of headers the parser may need: Ethernet, two VLAN tags, IPv4 and
/// TCP with their longest options.
const HEADERS_MAX: u32 = 14 + 8 + 60 + 60;
/// As [`HEADERS_MAX`] for anything but IPv4 (IPv6 above all): the fixed
/// IPv6 header and 64 bytes of extension headers (the stack builds a
/// local packet's headers in the linear part anyway).
const HEADERS6_MAX: u32 = 14 + 8 + 40 + 64 + 60;

/// `skb->protocol` of IPv4 (a big-endian 16-bit value in the field).
const SKB_PROTO_IP: u32 = u16::from_ne_bytes(ETH_P_IP) as u32;

/// The IPv6 loopback address, `::1`.
const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[classifier]
pub fn intercept_egress(ctx: TcContext) -> i32 {
    match try_intercept_egress(&ctx) {
        Ok(verdict) => verdict,
        Err(Malformed) => {
            count(InterceptCounter::Malformed);
            NOT_OURS
        }
    }
}

#[inline(always)]
fn try_intercept_egress(ctx: &TcContext) -> Result<i32, Malformed> {
    count(InterceptCounter::Seen);
    let max = if ctx.skb.protocol() == SKB_PROTO_IP {
        HEADERS_MAX
    } else {
        HEADERS6_MAX
    };
    let want = if ctx.len() < max { ctx.len() } else { max };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // Headers outside the linear part: pull them in (may fail for
        // lack of memory; the parser then sees a short packet).
        let _ = ctx.pull_data(want);
    }
    // SAFETY: the skb's linear data range, valid for this run (read after
    // any pull, which moves it).
    let frame = unsafe { Frame::new(ctx.data(), ctx.data_end()) };
    let load = |offset, dst: *mut u8, len| {
        // SAFETY: the helper bounds-checks the skb (linear part and frags)
        // and writes `len` bytes to `dst`, which the caller sized.
        unsafe {
            bpf_skb_load_bytes(
                ctx.skb.skb as *const _,
                offset,
                dst as *mut core::ffi::c_void,
                len,
            )
        }
    };
    let (ether_type, l3_off) = link_layer(&frame)?;
    if is_ipv6(ether_type) {
        let view = match parse_ipv6_tcp(&frame, l3_off)? {
            Ipv6Parse::Tcp(view) => view,
            Ipv6Parse::Fragment => {
                count(InterceptCounter::Fragments6);
                return Ok(NOT_OURS);
            }
            Ipv6Parse::NotTcp => return Ok(NOT_OURS),
        };
        let ip = view.ip();
        if !is_target6(ip.saddr, view.tcp().source) || ip.daddr == LOOPBACK6 {
            return Ok(NOT_OURS);
        }
        let key = AnnouncedKey6::from_wire(ip.daddr, ip.saddr, view.tcp().source);
        let claimed =
            CLIENTS6.get(Key::new(128, ip.daddr)).is_some() || ANNOUNCED6.get_ptr(key).is_some();
        if !claimed {
            count(InterceptCounter::Unclaimed);
            let _ = UNCLAIMED6.insert(key, 1, 0);
            return Ok(NOT_OURS);
        }
        report6(&frame, &view, load);
        return Ok(discard());
    }
    if ether_type != ETH_P_IP {
        return Ok(NOT_OURS);
    }
    let Some(view) = parse_ipv4_tcp_at(&frame, l3_off)? else {
        return Ok(NOT_OURS);
    };
    let ip = view.ip();
    if !is_target(ip.saddr, view.tcp().source) || ip.daddr[0] == 127 {
        return Ok(NOT_OURS);
    }
    let key = AnnouncedKey::from_wire(ip.daddr, ip.saddr, view.tcp().source);
    let claimed = CLIENTS.get(Key::new(32, ip.daddr)).is_some() || ANNOUNCED.get_ptr(key).is_some();
    if !claimed {
        count(InterceptCounter::Unclaimed);
        let _ = UNCLAIMED.insert(key, 1, 0);
        return Ok(NOT_OURS);
    }
    report(&frame, &view, load);
    Ok(discard())
}

/// The verdict that frees a reply as sent (see the module docs): a
/// redirect to ifindex 0, which no device has.
#[inline(always)]
fn discard() -> i32 {
    // SAFETY: a helper that only records the redirect target for the
    // kernel to act on after the program returns.
    unsafe { bpf_redirect(0, 0) as i32 }
}
