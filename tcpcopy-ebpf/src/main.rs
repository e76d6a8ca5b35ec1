//! XDP programs of the online host (`tcpcopy`): pick the client packets that
//! go to the online server off the NIC. Built for `bpfel-unknown-none` by
//! `ebpf-build`; embedded in and loaded by `tcpcopy-user`.
#![no_std]
#![no_main]

mod inline;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use tcpcopy_common::{
    counters::{COUNTER_SLOTS, CaptureCounter},
    table::EndpointKey,
};

/// Per-CPU verdict counters, indexed by [`CaptureCounter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Online server endpoints to copy (`-x [ip:]port`); value: rule index.
#[map]
static TARGETS: HashMap<EndpointKey, u32> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
fn count(counter: CaptureCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot; nothing else runs on this CPU meanwhile.
        unsafe { *slot += 1 };
    }
}

/// Whether `addr:port` (network byte order) is in `TARGETS`, exactly or by port.
#[inline(always)]
fn is_target(addr: [u8; 4], port: [u8; 2]) -> bool {
    let key = EndpointKey::from_wire(addr, port);
    TARGETS.get_ptr(key).is_some() || TARGETS.get_ptr(key.with_any_addr()).is_some()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
