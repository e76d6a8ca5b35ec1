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
//! Both report IPv4 and IPv6 replies: an IPv6 reply is matched against
//! the `*6` tables of the same meaning and reported as a `HeaderRecord6`
//! (see [`record`]) in the same ring.
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
    proto::{PAYLOAD_ENTRY_HEAD, PAYLOAD_ENTRY6_HEAD},
    table::{AnnouncedKey, AnnouncedKey6, ClientNetKey, ClientNetKey6, EndpointKey, EndpointKey6},
};

/// The EtherType of IPv4, as on the wire.
const ETH_P_IP: [u8; 2] = [0x08, 0x00];

/// Per-CPU verdict counters, indexed by [`InterceptCounter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Target server endpoints whose replies are intercepted; value: unused (0).
#[map]
static TARGETS: HashMap<EndpointKey, u32> = HashMap::with_max_entries(1024, 0);

/// IPv6 target server endpoints (as `TARGETS`; the all-zero address
/// matches any IPv6 address).
#[map]
static TARGETS6: HashMap<EndpointKey6, u32> = HashMap::with_max_entries(1024, 0);

/// One 64-byte `HeaderRecord` (88-byte `HeaderRecord6` for IPv6) per
/// reported reply; with payloads, the record, two lengths and the bytes.
/// The size here is a default; userspace sets the real one at load time
/// (`--ring-size`).
#[map]
static RECORDS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Payload bytes copied per reply (entry 0): the largest cap a connected
/// tcpcopy was granted; 0 (the default): headers only.
#[map]
static PAYLOAD_CAP: Array<u32> = Array::with_max_entries(1, 0);

/// Bytes of one CPU's staging buffer for a reply with payload: the larger
/// entry head (IPv6's) and the most payload a record carries.
pub const SCRATCH_BYTES: usize = max(PAYLOAD_ENTRY_HEAD, PAYLOAD_ENTRY6_HEAD) + 65_536;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

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

/// Egress: IPv6 client ranges (as `CLIENTS`).
#[map]
static CLIENTS6: LpmTrie<ClientNetKey6, u32> = LpmTrie::with_max_entries(1024, 0);

/// Egress: IPv6 client addresses announced per target endpoint (as
/// `ANNOUNCED`, from IPv6 announcements).
#[map]
static ANNOUNCED6: LruHashMap<AnnouncedKey6, u32> = LruHashMap::with_max_entries(1 << 16, 0);

/// Egress: IPv6 replies to an unclaimed client address (as `UNCLAIMED`).
#[map]
static UNCLAIMED6: LruHashMap<AnnouncedKey6, u32> = LruHashMap::with_max_entries(4096, 0);

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

/// Whether `addr:port` (network byte order) is in `TARGETS6`, exactly or
/// by port.
#[inline(always)]
fn is_target6(addr: [u8; 16], port: [u8; 2]) -> bool {
    let key = EndpointKey6::from_wire(addr, port);
    TARGETS6.get_ptr(key).is_some() || TARGETS6.get_ptr(key.with_any_addr()).is_some()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
