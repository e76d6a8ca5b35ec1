//! The header record of a reply, shared by both reply programs (XDP on an
//! assistant, TC egress on the target):
//!
//! - IPv4: the IPv4 header's first 20 bytes, normalised when the reply has
//!   IP options, then the TCP header with up to 24 option bytes (64 bytes,
//!   `HeaderRecord`, see `tcpcopy_common::proto`);
//! - IPv6: the fixed IPv6 header as if there were no extension headers
//!   (next header TCP, payload length without them), then the TCP header
//!   with up to 24 option bytes, zero padded (88 bytes, `HeaderRecord6`).
//!
//! A ring entry is the record alone, or (while some tcpcopy asked for
//! payloads and the reply has some) the record, the payload length and
//! the stored count (`u32` each, host order), then the stored bytes.
//! Userspace tells the families apart by the first byte's version nibble.
//!
//! Invariants: a record is written only for a reply the caller validated
//! (`parse_ipv4_tcp_at`, `parse_ipv6_tcp`) and is about to drop; the
//! program never waits on userspace (a full ring is counted `ring_full`).
//! Every loop is bounded (six option words).

use core::mem::size_of;

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Ipv4Hdr, Ipv6Hdr, TCP_MIN_HLEN, Tcp6View, TcpHdr, TcpView},
    proto::{
        HeaderRecord, HeaderRecord6, MAX_OPTION_LEN, MAX_RECORD_PAYLOAD, PAYLOAD_ENTRY_HEAD,
        PAYLOAD_ENTRY6_HEAD, RECORD_TCP_OFFSET, ipv6::normalize_ipv6_header, strip_ip_options,
    },
};

use crate::{PAYLOAD_CAP, RECORDS, SCRATCH, SCRATCH_BYTES, count};

/// Payload bytes loaded per helper call (the helpers copy at most 0xffff).
const CHUNK: u32 = 32_768;
const _: () = assert!(PAYLOAD_ENTRY_HEAD + 2 * CHUNK as usize <= SCRATCH_BYTES);
const _: () = assert!(PAYLOAD_ENTRY6_HEAD + 2 * CHUNK as usize <= SCRATCH_BYTES);
const _: () = assert!(MAX_RECORD_PAYLOAD < 2 * CHUNK);
// An entry with payload is the record, then two `u32`s, for both families.
const _: () = assert!(PAYLOAD_ENTRY_HEAD == size_of::<HeaderRecord>() + 8);
const _: () = assert!(PAYLOAD_ENTRY6_HEAD == size_of::<HeaderRecord6>() + 8);

/// Option bytes a record keeps, in 4-byte words (TCP options come in words).
const OPTION_WORDS: usize = MAX_OPTION_LEN / 4;

/// A bytes helper of the program type: `load(offset, dst, len)` copies
/// `len` packet bytes from `offset` to `dst`; 0 on success.
pub trait Load: Fn(u32, *mut u8, u32) -> i64 {}
impl<F: Fn(u32, *mut u8, u32) -> i64> Load for F {}

/// Counts a matched IPv4 reply and puts its record into `RECORDS` (or
/// counts `ring_full`), with payload bytes while some tcpcopy asked for
/// them. The caller drops the reply either way.
#[inline(always)]
pub fn report(frame: &Frame<'_>, view: &TcpView<'_>, load: impl Load) {
    count(InterceptCounter::Matched);
    // The parser checked that the total length covers both headers.
    let headers = view.ip_hdr_len + view.tcp_hdr_len;
    let payload_len = (view.ip_total_len() as usize).saturating_sub(headers) as u32;
    let payload_off = (view.tcp_off() + view.tcp_hdr_len) as u32;
    submit(header_record(frame, view), payload_off, payload_len, &load);
}

/// As [`report`], for an IPv6 reply (also counted `matched6`).
#[inline(always)]
pub fn report6(frame: &Frame<'_>, view: &Tcp6View<'_>, load: impl Load) {
    count(InterceptCounter::Matched);
    count(InterceptCounter::Matched6);
    // The parser checked that the payload length covers the extension
    // headers and the TCP header.
    let headers = view.ext_len + view.tcp_hdr_len;
    let payload_len =
        (u16::from_be_bytes(view.ip().payload_len) as usize).saturating_sub(headers) as u32;
    let payload_off = (view.tcp_off() + view.tcp_hdr_len) as u32;
    submit(header_record6(frame, view), payload_off, payload_len, &load);
}

/// Writes one ring entry for record `R` (see the module docs) and counts
/// the outcome.
#[inline(always)]
fn submit<R: Copy + 'static>(record: R, payload_off: u32, payload_len: u32, load: &impl Load) {
    let cap = PAYLOAD_CAP.get(0).copied().unwrap_or(0);
    if cap > 0 && payload_len > 0 {
        if report_with_payload(&record, payload_off, payload_len, cap, load) {
            count(InterceptCounter::Reported);
        } else {
            count(InterceptCounter::RingFull);
        }
        return;
    }
    match RECORDS.reserve::<R>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(0);
            count(InterceptCounter::Reported);
        }
        None => count(InterceptCounter::RingFull),
    }
}

/// Stages the record, the lengths and up to `cap` payload bytes (from
/// `payload_off`) in this CPU's scratch buffer, then writes them to the
/// ring at their size. Whether an entry went into the ring (a failed load
/// still reports the record, with 0 bytes stored).
#[inline(always)]
fn report_with_payload<R: Copy>(
    record: &R,
    payload_off: u32,
    payload_len: u32,
    cap: u32,
    load: &impl Load,
) -> bool {
    let head = size_of::<R>() + 8;
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
    // SAFETY: `buf` is this CPU's scratch value of SCRATCH_BYTES (nothing
    // else runs on this CPU meanwhile); the head and `first + rest` bytes
    // fit (asserted above for both record sizes).
    let loaded = unsafe {
        let data = buf.add(head);
        let mut r = load(payload_off, data, first);
        if r == 0 && rest > 0 {
            r = load(payload_off + CHUNK, data.add(CHUNK as usize), rest);
        }
        r
    };
    let (first, rest) = if loaded == 0 {
        (first, rest)
    } else {
        stored = 0;
        (0, 0)
    };
    // SAFETY: inside the scratch value, see above; the map value is 8-byte
    // aligned and both record sizes are multiples of 4, so the lengths are
    // aligned; a record is plain bytes (alignment 1).
    let entry = unsafe {
        *(buf as *mut R) = *record;
        *(buf.add(head - 8) as *mut u32) = payload_len;
        *(buf.add(head - 4) as *mut u32) = stored;
        core::slice::from_raw_parts(buf, head + (first + rest) as usize)
    };
    RECORDS.output::<[u8]>(entry, 0).is_ok()
}

/// The TCP options a record keeps, read one word at a time from
/// `options_off`; the parser checked that all `option_words` lie inside
/// the frame, `ptr_at` checks again for the verifier.
#[inline(always)]
fn option_words(
    frame: &Frame<'_>,
    options_off: usize,
    option_words: usize,
) -> [[u8; 4]; OPTION_WORDS] {
    let mut options = [[0u8; 4]; OPTION_WORDS];
    for (i, slot) in options.iter_mut().enumerate() {
        if i >= option_words {
            break;
        }
        let Some(word) = frame.ptr_at::<[u8; 4]>(options_off + i * 4) else {
            break;
        };
        // SAFETY: bounds-checked by `ptr_at`.
        *slot = unsafe { *word };
    }
    options
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

/// The record of a validated IPv4 reply (see the module docs).
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
    let parts = RecordParts {
        ip: first,
        tcp: *view.tcp(),
        options: option_words(
            frame,
            view.tcp_off() + TCP_MIN_HLEN,
            (view.tcp_hdr_len - TCP_MIN_HLEN) / 4,
        ),
    };
    // SAFETY: both are plain 64-byte arrays of bytes (asserted above);
    // every bit pattern is a valid `HeaderRecord`.
    unsafe { core::mem::transmute::<RecordParts, HeaderRecord>(parts) }
}

/// A [`HeaderRecord6`] laid out by part (as [`RecordParts`]).
#[repr(C)]
struct Record6Parts {
    ip: Ipv6Hdr,
    tcp: TcpHdr,
    options: [[u8; 4]; OPTION_WORDS],
    _pad: [u8; 4],
}

const _: () = assert!(size_of::<Record6Parts>() == size_of::<HeaderRecord6>());

/// The record of a validated IPv6 reply (see the module docs).
#[inline(always)]
fn header_record6(frame: &Frame<'_>, view: &Tcp6View<'_>) -> HeaderRecord6 {
    let parts = Record6Parts {
        ip: *view.ip(),
        tcp: *view.tcp(),
        options: option_words(
            frame,
            view.tcp_off() + TCP_MIN_HLEN,
            (view.tcp_hdr_len - TCP_MIN_HLEN) / 4,
        ),
        _pad: [0; 4],
    };
    // SAFETY: both are plain 88-byte arrays of bytes (asserted above);
    // every bit pattern is a valid `HeaderRecord6`.
    let mut record = unsafe { core::mem::transmute::<Record6Parts, HeaderRecord6>(parts) };
    // At most MAX_EXT_HEADERS headers of at most 2 KiB each: fits a u16.
    normalize_ipv6_header(&mut record.bytes, view.ext_len as u16);
    record
}
