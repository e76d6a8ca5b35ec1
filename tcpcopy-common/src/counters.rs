//! Indices of the per-CPU counter arrays (`COUNTERS` map) of each XDP program.
//!
//! Each program owns a `PerCpuArray<u64>` of [`COUNTER_SLOTS`] entries and
//! bumps one slot per verdict; userspace sums the per-CPU values. The arrays
//! have spare slots so a new counter does not change the map definition.

/// Entries in every program's `COUNTERS` map.
pub const COUNTER_SLOTS: u32 = 16;

/// Counters of the capture programs (`tcpcopy-ebpf`).
///
/// Inline: `matched = copied + ring_full`; every frame is passed on.
/// Mirror: `matched = redirected + redirect_failed`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureCounter {
    /// Every frame the program ran on.
    Seen = 0,
    /// IPv4 or IPv6 TCP frames whose destination is in the match table.
    Matched = 1,
    /// Frames cut short or with impossible header lengths.
    Malformed = 2,
    /// Inline: matched frames copied into the ring buffer.
    Copied = 3,
    /// Inline: matched frames not copied, the ring buffer was full
    /// (userspace is behind; production is never delayed).
    RingFull = 4,
    /// Inline: frames larger than `MAX_CAPTURE`, copied cut short.
    Truncated = 5,
    /// Mirror: matched frames redirected into an AF_XDP socket.
    Redirected = 6,
    /// Mirror: matched frames with no socket on their queue (dropped).
    RedirectFailed = 7,
    /// `--compare`: production's answers copied (inline: into the
    /// responses ring; mirror: redirected into an AF_XDP socket).
    Responses = 8,
    /// `--compare`, inline: answers not copied, the responses ring was
    /// full (production is never delayed; the comparison loses them).
    ResponseRingFull = 9,
    /// IPv6 frames among `matched`.
    Matched6 = 10,
    /// IPv6 fragments of any destination (never copied: only a first
    /// fragment would carry the TCP header, and a part of a packet is not
    /// replayed).
    Fragments6 = 11,
}

impl CaptureCounter {
    pub const ALL: [Self; 12] = [
        Self::Seen,
        Self::Matched,
        Self::Malformed,
        Self::Copied,
        Self::RingFull,
        Self::Truncated,
        Self::Redirected,
        Self::RedirectFailed,
        Self::Responses,
        Self::ResponseRingFull,
        Self::Matched6,
        Self::Fragments6,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Matched => "matched",
            Self::Malformed => "malformed",
            Self::Copied => "copied",
            Self::RingFull => "ring_full",
            Self::Truncated => "truncated",
            Self::Redirected => "redirected",
            Self::RedirectFailed => "redirect_failed",
            Self::Responses => "responses",
            Self::ResponseRingFull => "response_ring_full",
            Self::Matched6 => "matched6",
            Self::Fragments6 => "fragments6",
        }
    }
}

/// Counters of the reply programs (`intercept-ebpf`: XDP on an assistant,
/// TC egress on the target itself).
///
/// Invariants after any run: `matched = reported + ring_full` (every matched
/// reply is dropped, reported or not), and `malformed` frames are never
/// reported (they are passed to the stack).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterceptCounter {
    /// Every frame the program ran on.
    Seen = 0,
    /// IPv4 or IPv6 TCP frames whose source is in the target table (all
    /// dropped).
    Matched = 1,
    /// Frames cut short or with impossible header lengths (passed).
    Malformed = 2,
    /// Matched replies whose header record went into the ring buffer.
    Reported = 3,
    /// Matched replies dropped without a record: the ring buffer was full
    /// (userspace is behind). Never blocks, never passes the reply on.
    RingFull = 4,
    /// Egress only: replies from a target to an address neither in the
    /// client ranges nor announced by a tcpcopy (passed: the target's own
    /// traffic, or a reply that beat its session's announcement).
    Unclaimed = 5,
    /// IPv6 replies among `matched` (every matched reply of either family
    /// is in `matched`; this says how many were IPv6).
    Matched6 = 6,
    /// IPv6 fragments of any source (passed untouched, never reported: the
    /// programs do not reassemble, and only a first fragment would carry
    /// the TCP header).
    Fragments6 = 7,
}

impl InterceptCounter {
    pub const ALL: [Self; 8] = [
        Self::Seen,
        Self::Matched,
        Self::Malformed,
        Self::Reported,
        Self::RingFull,
        Self::Unclaimed,
        Self::Matched6,
        Self::Fragments6,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Matched => "matched",
            Self::Malformed => "malformed",
            Self::Reported => "reported",
            Self::RingFull => "ring_full",
            Self::Unclaimed => "unclaimed",
            Self::Matched6 => "matched6",
            Self::Fragments6 => "fragments6",
        }
    }
}
