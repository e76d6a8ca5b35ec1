//! The header record of a reply, shared by both reply programs (XDP on an
//! assistant, TC egress on the target): the IPv4 header's first 20 bytes,
//! normalised when the reply has IP options, then the TCP header with up to
//! 24 option bytes (see `tcpcopy_common::proto`).
//!
//! Invariants: a record is written only for a reply the caller validated
//! (`parse_ipv4_tcp`) and is about to drop; the program never waits on
//! userspace (a full ring is counted `ring_full`). Every loop is bounded
//! (six option words).

use core::mem::size_of;

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Ipv4Hdr, TCP_MIN_HLEN, TcpHdr, TcpView},
    proto::{
        HEADER_RECORD_LEN, HeaderRecord, MAX_OPTION_LEN, MAX_RECORD_PAYLOAD, PAYLOAD_ENTRY_HEAD,
        RECORD_TCP_OFFSET, strip_ip_options,
    },
};

use crate::{PAYLOAD_CAP, RECORDS, SCRATCH, SCRATCH_BYTES, count};

/// Payload bytes loaded per helper call (the helpers copy at most 0xffff).
const CHUNK: u32 = 32_768;
const _: () = assert!(PAYLOAD_ENTRY_HEAD + 2 * CHUNK as usize <= SCRATCH_BYTES);
const _: () = assert!(MAX_RECORD_PAYLOAD < 2 * CHUNK);

/// Option bytes a record keeps, in 4-byte words (TCP options come in words).
const OPTION_WORDS: usize = MAX_OPTION_LEN / 4;

/// Counts a matched reply and puts its record into `RECORDS` (or counts
/// `ring_full`): with up to `PAYLOAD_CAP` payload bytes while some tcpcopy
/// asked for them, read with `load(offset, dst, len)` (the program type's
/// bytes helper; 0 on success). The caller drops the reply either way.
#[inline(always)]
pub fn report(frame: &Frame<'_>, view: &TcpView<'_>, load: impl Fn(u32, *mut u8, u32) -> i64) {
    count(InterceptCounter::Matched);
    let cap = PAYLOAD_CAP.get(0).copied().unwrap_or(0);
    if cap > 0 {
        let headers = view.ip_hdr_len + view.tcp_hdr_len;
        let total = view.ip_total_len() as usize;
        if total > headers {
            if report_with_payload(frame, view, (total - headers) as u32, cap, &load) {
                count(InterceptCounter::Reported);
            } else {
                count(InterceptCounter::RingFull);
            }
            return;
        }
    }
    match RECORDS.reserve::<HeaderRecord>(0) {
        Some(mut entry) => {
            entry.write(header_record(frame, view));
            entry.submit(0);
            count(InterceptCounter::Reported);
        }
        None => count(InterceptCounter::RingFull),
    }
}

/// Stages the record, the lengths and up to `cap` payload bytes in this
/// CPU's scratch buffer, then writes them to the ring at their size.
/// Whether an entry went into the ring (a failed load still reports the
/// record, with 0 bytes stored).
#[inline(always)]
fn report_with_payload(
    frame: &Frame<'_>,
    view: &TcpView<'_>,
    payload_len: u32,
    cap: u32,
    load: &impl Fn(u32, *mut u8, u32) -> i64,
) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        return false;
    };
    let buf = buf as *mut u8;
    let mut stored = payload_len.min(cap).min(MAX_RECORD_PAYLOAD);
    let first = stored.min(CHUNK);
    let rest = stored - first;
    // SAFETY: reads of locals (kept, so the masks below are not dropped).
    let (first, rest) = unsafe {
        (
            core::ptr::read_volatile(&first),
            core::ptr::read_volatile(&rest),
        )
    };
    // Ranges the verifier sees: first in [1, CHUNK], rest in [0, CHUNK - 1]
    // (the masks change nothing: 1 <= stored <= MAX_RECORD_PAYLOAD).
    let first = (first.wrapping_sub(1) & (CHUNK - 1)) + 1;
    let rest = rest & (CHUNK - 1);
    let offset = (view.tcp_off() + view.tcp_hdr_len) as u32;
    // SAFETY: `buf` is this CPU's scratch value of SCRATCH_BYTES (nothing
    // else runs on this CPU meanwhile); the head and `first + rest` bytes
    // fit (asserted above).
    let loaded = unsafe {
        let data = buf.add(PAYLOAD_ENTRY_HEAD);
        let mut r = load(offset, data, first);
        if r == 0 && rest > 0 {
            r = load(offset + CHUNK, data.add(CHUNK as usize), rest);
        }
        r
    };
    let (first, rest) = if loaded == 0 {
        (first, rest)
    } else {
        stored = 0;
        (0, 0)
    };
    // SAFETY: inside the scratch value, see above.
    let entry = unsafe {
        *(buf as *mut HeaderRecord) = header_record(frame, view);
        *(buf.add(HEADER_RECORD_LEN) as *mut u32) = payload_len;
        *(buf.add(HEADER_RECORD_LEN + 4) as *mut u32) = stored;
        core::slice::from_raw_parts(buf, PAYLOAD_ENTRY_HEAD + (first + rest) as usize)
    };
    RECORDS.output::<[u8]>(entry, 0).is_ok()
}

/// A [`HeaderRecord`] laid out by part, so the program fills it without
/// slice indexing (no bounds-check panic paths for the verifier to reject).
#[repr(C)]
struct RecordParts {
    ip: [u8; RECORD_TCP_OFFSET],
    tcp: TcpHdr,
    options: [[u8; 4]; OPTION_WORDS],
}

const _: () = assert!(size_of::<RecordParts>() == size_of::<HeaderRecord>());

/// The record of a validated reply (see the module docs).
#[inline(always)]
fn header_record(frame: &Frame<'_>, view: &TcpView<'_>) -> HeaderRecord {
    let ip: &Ipv4Hdr = view.ip();
    let mut first = [0u8; RECORD_TCP_OFFSET];
    first[0] = ip.version_ihl;
    first[1] = ip.tos;
    first[2..4].copy_from_slice(&ip.tot_len);
    first[4..6].copy_from_slice(&ip.id);
    first[6..8].copy_from_slice(&ip.frag_off);
    first[8] = ip.ttl;
    first[9] = ip.protocol;
    first[10..12].copy_from_slice(&ip.check);
    first[12..16].copy_from_slice(&ip.saddr);
    first[16..20].copy_from_slice(&ip.daddr);
    if view.ip_hdr_len > RECORD_TCP_OFFSET {
        strip_ip_options(&mut first, view.ip_hdr_len);
    }
    let mut parts = RecordParts {
        ip: first,
        tcp: *view.tcp(),
        options: [[0; 4]; OPTION_WORDS],
    };
    // Options, one word at a time; the parser checked that all of them lie
    // inside the frame, `ptr_at` checks again for the verifier.
    let option_words = (view.tcp_hdr_len - TCP_MIN_HLEN) / 4;
    let options_off = view.tcp_off() + TCP_MIN_HLEN;
    for (i, slot) in parts.options.iter_mut().enumerate() {
        if i >= option_words {
            break;
        }
        let Some(word) = frame.ptr_at::<[u8; 4]>(options_off + i * 4) else {
            break;
        };
        // SAFETY: bounds-checked by `ptr_at`.
        *slot = unsafe { *word };
    }
    // SAFETY: both are plain 64-byte arrays of bytes (asserted above);
    // every bit pattern is a valid `HeaderRecord`.
    unsafe { core::mem::transmute::<RecordParts, HeaderRecord>(parts) }
}
