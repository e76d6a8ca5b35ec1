//! The test lab's own TC programs, for conditions this machine's kernel
//! has no other way to make (it has no 802.1Q module and no netem):
//!
//! - `vlan_push` / `vlan_pop`: a VLAN trunk between two hosts. Egress
//!   frames get the tag `VLAN_ID` (with the device's TX VLAN offload off,
//!   the kernel writes it into the frame, so the peer's XDP program sees a
//!   tagged frame, as on a trunk port); ingress frames lose their tag
//!   before the stack sees them (no VLAN device needed).
//! - `impair`: an impaired link. Of the IPv4/TCP frames leaving a device,
//!   `LOSS_PER_MILLE` are dropped and `SLOW_PER_MILLE` are put in the
//!   device's HTB class `SLOW_CLASS` (a slow class: they leave after
//!   frames sent later, i.e. reordered). Other traffic (ARP) passes.
//!
//! - `tcp_responder` (XDP, in [`responder`]): a near-free target for
//!   benchmarks, answering TCP itself without state.
//!
//! Built for `bpfel-unknown-none` by `ebpf-build`; embedded in and loaded
//! by the `tcpcopy-tests` crate. Never shipped.
#![no_std]
#![no_main]

mod responder;

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_get_prandom_u32, bpf_skb_vlan_pop, bpf_skb_vlan_push},
    macros::classifier,
    programs::TcContext,
};

/// The tag `vlan_push` adds (host byte order).
#[unsafe(no_mangle)]
static VLAN_ID: Global<u16> = Global::new(100);
/// `impair`: frames dropped, per thousand.
#[unsafe(no_mangle)]
static LOSS_PER_MILLE: Global<u32> = Global::new(0);
/// `impair`: frames put in the slow class, per thousand.
#[unsafe(no_mangle)]
static SLOW_PER_MILLE: Global<u32> = Global::new(0);
/// `impair`: the HTB class (major:minor as `0xMMMMmmmm`) of slow frames.
#[unsafe(no_mangle)]
static SLOW_CLASS: Global<u32> = Global::new(0x0001_0002);

const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;

#[classifier]
pub fn vlan_push(ctx: TcContext) -> i32 {
    // SAFETY: a helper on our own context.
    unsafe {
        bpf_skb_vlan_push(ctx.skb.skb, ETH_P_8021Q.to_be(), VLAN_ID.load());
    }
    TC_ACT_OK
}

#[classifier]
pub fn vlan_pop(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is this run's context.
    let tagged = unsafe { (*ctx.skb.skb).vlan_present } != 0;
    if tagged {
        // SAFETY: a helper on our own context.
        unsafe { bpf_skb_vlan_pop(ctx.skb.skb) };
    }
    TC_ACT_OK
}

#[classifier]
pub fn impair(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is this run's context.
    let protocol = unsafe { (*ctx.skb.skb).protocol };
    if protocol != u32::from(ETH_P_IP.to_be()) {
        return TC_ACT_OK;
    }
    match ctx.load::<u8>(14 + 9) {
        Ok(IPPROTO_TCP) => {}
        _ => return TC_ACT_OK,
    }
    // SAFETY: a helper without arguments.
    let roll = unsafe { bpf_get_prandom_u32() } % 1000;
    let loss = LOSS_PER_MILLE.load();
    if roll < loss {
        return TC_ACT_SHOT;
    }
    if roll < loss + SLOW_PER_MILLE.load() {
        // SAFETY: `priority` is writable for TC programs; HTB takes a
        // priority that names one of its classes as the class.
        unsafe { (*ctx.skb.skb).priority = SLOW_CLASS.load() };
    }
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
