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

use tcpcopy_common::{
    counters::InterceptCounter,
    pkt::{Frame, Ipv4Hdr, TCP_MIN_HLEN, TcpHdr, TcpView},
    proto::{HeaderRecord, MAX_OPTION_LEN, RECORD_TCP_OFFSET, strip_ip_options},
};

use crate::{RECORDS, count};

/// Option bytes a record keeps, in 4-byte words (TCP options come in words).
const OPTION_WORDS: usize = MAX_OPTION_LEN / 4;

/// Counts a matched reply and puts its record into `RECORDS` (or counts
/// `ring_full`). The caller drops the reply either way.
#[inline(always)]
pub fn report(frame: &Frame<'_>, view: &TcpView<'_>) {
    count(InterceptCounter::Matched);
    match RECORDS.reserve::<HeaderRecord>(0) {
        Some(mut entry) => {
            entry.write(header_record(frame, view));
            entry.submit(0);
            count(InterceptCounter::Reported);
        }
        None => count(InterceptCounter::RingFull),
    }
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
