//! The reply programs of `intercept`: the target server's replies are
//! dropped (the real clients must never see them) and their headers
//! reported to userspace through the `RECORDS` ring buffer. Two programs,
//! one per deployment, sharing the maps and the record ([`record`]):
//!
//! - `intercept_reply` ([`reply`]): XDP on an assistant host, to which the
//!   target routes the client range;
//! - `intercept_egress` ([`egress`]): TC egress on the target itself, no
//!   assistant and no route needed.
//!
//! Userspace loads one of them. Built for `bpfel-unknown-none` by
//! `ebpf-build`; embedded in and loaded by `intercept-user`.
#![no_std]
#![no_main]

mod egress;
mod record;
mod reply;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use tcpcopy_common::{
    counters::{COUNTER_SLOTS, InterceptCounter},
    table::{AnnouncedKey, ClientNetKey, EndpointKey},
};

/// Per-CPU verdict counters, indexed by [`InterceptCounter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Target server endpoints whose replies are intercepted; value: unused (0).
#[map]
static TARGETS: HashMap<EndpointKey, u32> = HashMap::with_max_entries(1024, 0);

/// One 64-byte `HeaderRecord` per reported reply. The size here is a default;
/// userspace sets the real one at load time (`--ring-size`).
#[map]
static RECORDS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Payload bytes copied per reply (entry 0): the largest cap a connected
/// tcpcopy was granted; 0 (the default): headers only.
#[map]
static PAYLOAD_CAP: Array<u32> = Array::with_max_entries(1, 0);

/// Bytes of one CPU's staging buffer for a reply with payload: the entry
/// head and the most payload a record carries.
pub const SCRATCH_BYTES: usize = tcpcopy_common::proto::PAYLOAD_ENTRY_HEAD + 65_536;

/// One staging buffer per CPU (indexed by CPU; userspace sizes the array
/// to the CPUs), for ring entries too large to reserve by type.
#[map]
static SCRATCH: Array<[u8; SCRATCH_BYTES]> = Array::with_max_entries(1, 0);

/// Egress: client ranges (`--clients`) whose replies are intercepted.
#[map]
static CLIENTS: LpmTrie<ClientNetKey, u32> = LpmTrie::with_max_entries(1024, 0);

/// Egress: client addresses announced per target endpoint (CLIENT_ADD),
/// filled by userspace. The oldest go first when it is full; userspace sets
/// the size at load time.
#[map]
static ANNOUNCED: LruHashMap<AnnouncedKey, u32> = LruHashMap::with_max_entries(1 << 16, 0);

/// Egress: replies from a target to an unclaimed client address, by the key
/// they would have had in `ANNOUNCED`; userspace looks an announcement up
/// here to learn that a reply left before it (a race it counts).
#[map]
static UNCLAIMED: LruHashMap<AnnouncedKey, u32> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn count(counter: InterceptCounter) {
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
