//! XDP programs of the online host (`tcpcopy`): pick the client packets that
//! go to the online server off the NIC. Built for `bpfel-unknown-none` by
//! `ebpf-build`; embedded in and loaded by `tcpcopy-user`.
#![no_std]
#![no_main]

mod copy;
mod inline;
mod mirror;
mod responses;
mod segment;

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf, XskMap},
};
use tcpcopy_common::{
    capture::SCRATCH_BYTES,
    counters::{COUNTER_SLOTS, CaptureCounter},
    table::{EndpointKey, EndpointKey6},
};

/// Per-CPU verdict counters, indexed by [`CaptureCounter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Online server endpoints to copy (`-x [ip:]port`); value: rule index.
#[map]
static TARGETS: HashMap<EndpointKey, u32> = HashMap::with_max_entries(1024, 0);

/// As `TARGETS`, for IPv6 online server endpoints.
#[map]
static TARGETS6: HashMap<EndpointKey6, u32> = HashMap::with_max_entries(1024, 0);

/// Inline capture: one record per copied frame (see
/// `tcpcopy_common::capture`). The size here is a default; userspace sets
/// the real one at load time.
#[map]
static PACKETS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// Inline capture: 1 while the reader sleeps and wants the next record to
/// wake it (it sets this before sleeping; the program clears it and wakes
/// the reader). While the reader is awake it polls, so records go in
/// without a wake-up: no interrupt per packet on the production CPU.
#[map]
static READER: Array<u32> = Array::with_max_entries(1, 0);

/// Inline capture: where a frame larger than every record class is staged,
/// one entry per CPU (index: the CPU running the program). Userspace sizes
/// it to the possible CPUs at load time.
#[map]
static SCRATCH: Array<[u8; SCRATCH_BYTES]> = Array::with_max_entries(1, 0);

/// Response capture (`--compare`, inline mode): production's answers, in
/// the records `PACKETS` has. Separate from it, so a burst of large
/// responses can never cost a client packet its place.
#[map]
static RESPONSES: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Response capture: `SCRATCH` of the egress program (its own: it may run
/// on a CPU while the inline program's staging there is in use).
#[map]
static RESPONSE_SCRATCH: Array<[u8; SCRATCH_BYTES]> = Array::with_max_entries(1, 0);

/// Mirror capture: one AF_XDP socket per RX queue (index = queue id).
#[map]
static XSKS: XskMap = XskMap::with_max_entries(64, 0);

/// Mirror capture: pass (1) or drop (0) the frames tcpcopy does not want.
#[unsafe(no_mangle)]
static MIRROR_PASS_OTHERS: Global<u8> = Global::new(0);

/// Mirror capture: also redirect production's answers (frames from a
/// `TARGETS` endpoint that carry payload, SYN, FIN or RST), for `--compare`.
#[unsafe(no_mangle)]
static MIRROR_RESPONSES: Global<u8> = Global::new(0);

#[inline(always)]
fn count(counter: CaptureCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot; nothing else runs on this CPU meanwhile.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
