//! The tcpcopy <-> intercept wire protocol, compatible with TCPCopy 1.x.
//!
//! Plain TCP; intercept listens on [`INTERCEPT_PORT`]. Everything is packed
//! and in network byte order.
//!
//! - tcpcopy -> intercept: a stream of 14-byte [`ClientMsg`]s. The first is a
//!   hello (all zero, type [`MsgType::Hello`]); then one [`MsgType::Add`] per
//!   session, before its SYN (real or faked).
//! - intercept -> tcpcopy: frames of a `u16` record count (at most
//!   [`MAX_RECORDS_PER_FRAME`]) followed by that many 64-byte
//!   [`HeaderRecord`]s.
//!
//! A [`HeaderRecord`] is what the C intercept sends: the first 20 bytes of
//! the reply's IPv4 header as on the wire (IHL and total length included, so
//! the payload length can be computed), then the TCP header with up to
//! [`MAX_OPTION_LEN`] option bytes, zero padded. The TCP header is always at
//! offset 20, whatever the IHL says.
//!
//! A reply that carries IPv4 options is reported in normalised form
//! ([`HeaderRecord::from_reply`], [`strip_ip_options`]): the C tcpcopy finds
//! the TCP header at `IHL * 4` and computes the payload length as
//! `tot_len - IHL * 4 - doff * 4`, so the record says IHL 5, its total length
//! is reduced by the option bytes (the payload length stays right) and its
//! header checksum is recomputed. The TCP data offset stays as on the wire,
//! also when options beyond [`MAX_OPTION_LEN`] bytes were cut: the payload
//! length depends on it.
//!
//! The decoders here never panic: bad input is an error, and the caller
//! closes that one connection.
//!
//! Extensions are asked for, never assumed: an original tcpcopy never sends
//! them, so it never sees an answer. [`MsgType::VersionQuery`] (after the
//! hello) asks intercept who it is; this intercept answers with one
//! [`VersionInfo`] frame: the count field holds [`VERSION_FRAME_MARK`]
//! (never a record count: those are at most 16), then 64 bytes. The C
//! intercept logs an unknown type and answers nothing, which tells an asker
//! it is talking to a 1.x intercept.
//!
//! [`MsgType::PayloadRequest`] asks for the replies' payload bytes as well
//! (for response comparison), up to a cap per reply carried in the
//! message's client address field. This intercept answers with a
//! [`PAYLOAD_GRANT_MARK`] frame holding the cap it grants (0: none), and
//! from then on sends that peer every record as a payload record frame
//! ([`PAYLOAD_RECORD_MARK`], [`PayloadRecordHead`], then the bytes). A peer
//! that never asks sees only 1.x frames. [`ReplyStreamDecoder`] reads every
//! frame kind.
//!
//! IPv6 sessions are an extension too: their announcements and records
//! have messages and frames of their own, see [`ipv6`].

pub mod ipv6;

pub use ipv6::{
    ADD6_LEN, ADD6_TAIL_LEN, ADD6_TYPE, Add6, CAP_IPV6, HEADER_RECORD6_LEN, HeaderRecord6,
    MAX_FRAME6_LEN, PAYLOAD_ENTRY6_HEAD, PAYLOAD_RECORD6_MARK, PAYLOAD6_HEAD_LEN,
    RECORD6_FRAME_MARK, encode_frame6, encode_payload6_head,
};

/// The TCP port intercept listens on.
pub const INTERCEPT_PORT: u16 = 36524;
/// Bytes of a [`ClientMsg`] on the wire.
pub const CLIENT_MSG_LEN: usize = 14;
/// Bytes of a [`HeaderRecord`] on the wire.
pub const HEADER_RECORD_LEN: usize = 64;
/// TCP option bytes a [`HeaderRecord`] keeps.
pub const MAX_OPTION_LEN: usize = 24;
/// At most this many records follow one count.
pub const MAX_RECORDS_PER_FRAME: usize = 16;
/// Bytes of the largest record frame.
pub const MAX_FRAME_LEN: usize = 2 + MAX_RECORDS_PER_FRAME * HEADER_RECORD_LEN;
/// Offset of the TCP header inside a [`HeaderRecord`].
pub const RECORD_TCP_OFFSET: usize = 20;

/// The `type` field of a [`ClientMsg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgType {
    /// Route this client's replies to the sender.
    Add,
    /// Forget the route (TCPCopy defines it; intercept may ignore it).
    Del,
    /// First message of a connection: the protocol version (6 = 1.x).
    Hello,
    /// Extension: who are you? (Answered with a [`VersionInfo`] frame.)
    VersionQuery,
    /// Extension: send me the replies' payloads too, up to this many bytes
    /// per reply (answered with a grant frame).
    PayloadRequest,
    /// Extension: an IPv6 session announcement; its addresses follow the
    /// 14-byte head (see [`ipv6`]).
    Add6,
}

impl MsgType {
    pub const fn to_wire(self) -> u16 {
        match self {
            Self::Add => 1,
            Self::Del => 2,
            Self::Hello => 6,
            Self::VersionQuery => VERSION_QUERY_TYPE,
            Self::PayloadRequest => PAYLOAD_REQUEST_TYPE,
            Self::Add6 => ADD6_TYPE,
        }
    }

    pub const fn from_wire(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Add),
            2 => Some(Self::Del),
            6 => Some(Self::Hello),
            VERSION_QUERY_TYPE => Some(Self::VersionQuery),
            PAYLOAD_REQUEST_TYPE => Some(Self::PayloadRequest),
            ADD6_TYPE => Some(Self::Add6),
            _ => None,
        }
    }
}

/// The wire type of [`MsgType::VersionQuery`] (`"tv"`: far from TCPCopy's
/// own small numbers).
pub const VERSION_QUERY_TYPE: u16 = 0x7476;
/// The count field of a [`VersionInfo`] frame.
pub const VERSION_FRAME_MARK: u16 = 0x8076;
/// Bytes of a [`VersionInfo`] frame: the mark and 64 bytes.
pub const VERSION_FRAME_LEN: usize = 2 + 64;
const VERSION_MAGIC: [u8; 8] = *b"tcpcp-rs";

/// The wire type of [`MsgType::PayloadRequest`] (`"tp"`).
pub const PAYLOAD_REQUEST_TYPE: u16 = 0x7470;
/// The count field of a payload grant frame: then the granted cap (`u32`).
pub const PAYLOAD_GRANT_MARK: u16 = 0x8070;
/// Bytes of a payload grant frame.
pub const PAYLOAD_GRANT_LEN: usize = 6;
/// The count field of a payload record frame: then a [`PayloadRecordHead`]
/// and its stored bytes.
pub const PAYLOAD_RECORD_MARK: u16 = 0x8071;
/// The most payload bytes one record carries (an IPv4 packet's limit).
pub const MAX_RECORD_PAYLOAD: u32 = 65_535;
/// Capability bit of [`VersionInfo::capabilities`]: payload records.
pub const CAP_PAYLOADS: u32 = 1;
/// Capability bit of [`VersionInfo::capabilities`]: this intercept runs on
/// the target itself (TC egress), not on an assistant host.
pub const CAP_ON_TARGET: u32 = 2;

/// A reply program's ring entry with payload bytes: the header record, then
/// the reply's payload length and the stored count (both `u32` in the
/// host's byte order: kernel and reader share the machine), then the
/// stored bytes. An entry of exactly [`HEADER_RECORD_LEN`] bytes is a
/// record without payload.
pub const PAYLOAD_ENTRY_HEAD: usize = HEADER_RECORD_LEN + 8;

/// The payload grant frame: mark, then the cap granted per reply.
pub fn encode_payload_grant(granted: u32) -> [u8; PAYLOAD_GRANT_LEN] {
    let mut b = [0u8; PAYLOAD_GRANT_LEN];
    b[0..2].copy_from_slice(&PAYLOAD_GRANT_MARK.to_be_bytes());
    b[2..6].copy_from_slice(&granted.to_be_bytes());
    b
}

/// The fixed part of a payload record frame after its mark: the header
/// record, the reply's payload length and how many of its bytes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadRecordHead {
    pub record: HeaderRecord,
    /// Payload bytes the reply had.
    pub payload_len: u32,
    /// Payload bytes that follow (at most `payload_len`, at most
    /// [`MAX_RECORD_PAYLOAD`]; fewer: the reply was cut at the cap).
    pub stored: u32,
}

/// Bytes of a payload record frame before its payload (mark included).
pub const PAYLOAD_HEAD_LEN: usize = 2 + HEADER_RECORD_LEN + 8;

impl PayloadRecordHead {
    /// The frame's first [`PAYLOAD_HEAD_LEN`] bytes; the stored payload
    /// bytes follow.
    pub fn encode(&self) -> [u8; PAYLOAD_HEAD_LEN] {
        let mut b = [0u8; PAYLOAD_HEAD_LEN];
        b[0..2].copy_from_slice(&PAYLOAD_RECORD_MARK.to_be_bytes());
        b[2..2 + HEADER_RECORD_LEN].copy_from_slice(&self.record.bytes);
        let at = 2 + HEADER_RECORD_LEN;
        b[at..at + 4].copy_from_slice(&self.payload_len.to_be_bytes());
        b[at + 4..at + 8].copy_from_slice(&self.stored.to_be_bytes());
        b
    }
}

/// What an intercept says about itself, answering [`MsgType::VersionQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The program's version, e.g. `0.1.0` (at most 32 bytes, UTF-8).
    pub version: [u8; 32],
    /// Extensions the sender supports, as bits (none defined yet: 0).
    pub capabilities: u32,
}

impl VersionInfo {
    pub fn new(version: &str, capabilities: u32) -> Self {
        let mut v = [0u8; 32];
        let n = version.len().min(32);
        v[..n].copy_from_slice(&version.as_bytes()[..n]);
        Self {
            version: v,
            capabilities,
        }
    }

    /// The version text (up to the first NUL; lossy).
    pub fn version_str(&self) -> &str {
        let end = self.version.iter().position(|&b| b == 0).unwrap_or(32);
        core::str::from_utf8(&self.version[..end]).unwrap_or("?")
    }

    /// The frame: mark, magic, version, capabilities, zero padding.
    pub fn encode(&self) -> [u8; VERSION_FRAME_LEN] {
        let mut b = [0u8; VERSION_FRAME_LEN];
        b[0..2].copy_from_slice(&VERSION_FRAME_MARK.to_be_bytes());
        b[2..10].copy_from_slice(&VERSION_MAGIC);
        b[10..42].copy_from_slice(&self.version);
        b[42..46].copy_from_slice(&self.capabilities.to_be_bytes());
        b
    }

    /// Reads a frame; `None` unless it is one (mark and magic).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; VERSION_FRAME_LEN] = b.get(..VERSION_FRAME_LEN)?.try_into().ok()?;
        if b[0..2] != VERSION_FRAME_MARK.to_be_bytes() || b[2..10] != VERSION_MAGIC {
            return None;
        }
        Some(Self {
            version: b[10..42].try_into().ok()?,
            capabilities: u32::from_be_bytes(b[42..46].try_into().ok()?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// A [`ClientMsg`] with a type this side does not know.
    UnknownType(u16),
    /// A record frame announcing more than [`MAX_RECORDS_PER_FRAME`] records.
    TooManyRecords(u16),
    /// A payload record storing more than it had, or than a record carries.
    BadPayload { payload_len: u32, stored: u32 },
    /// An extension frame this side did not ask for, or a corrupt one.
    UnexpectedFrame(u16),
}

impl core::error::Error for ProtoError {}

impl core::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown message type {t}"),
            Self::TooManyRecords(n) => write!(
                f,
                "record frame announces {n} records (at most {MAX_RECORDS_PER_FRAME})"
            ),
            Self::BadPayload {
                payload_len,
                stored,
            } => write!(
                f,
                "payload record stores {stored} of {payload_len} bytes (at most the reply's, \
                 at most {MAX_RECORD_PAYLOAD})"
            ),
            Self::UnexpectedFrame(mark) => write!(f, "unexpected or corrupt frame {mark:#06x}"),
        }
    }
}

/// tcpcopy -> intercept: 14 bytes `{clt_ip u32, clt_port u16, type u16,
/// target_ip u32, target_port u16}`, network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientMsg {
    /// The client address as the target sees it (after any `-c` rewrite).
    pub client_ip: [u8; 4],
    pub client_port: u16,
    pub kind: MsgType,
    /// The target server.
    pub target_ip: [u8; 4],
    pub target_port: u16,
}

impl ClientMsg {
    /// The first message of every connection.
    pub const fn hello() -> Self {
        Self {
            client_ip: [0; 4],
            client_port: 0,
            kind: MsgType::Hello,
            target_ip: [0; 4],
            target_port: 0,
        }
    }

    /// Extension: asks intercept for reply payloads, up to `cap` bytes per
    /// reply (carried in the client address field).
    pub const fn payload_request(cap: u32) -> Self {
        Self {
            client_ip: cap.to_be_bytes(),
            client_port: 0,
            kind: MsgType::PayloadRequest,
            target_ip: [0; 4],
            target_port: 0,
        }
    }

    /// The cap a [`MsgType::PayloadRequest`] asks for.
    pub const fn requested_cap(&self) -> u32 {
        u32::from_be_bytes(self.client_ip)
    }

    /// Extension: asks intercept for its [`VersionInfo`].
    pub const fn version_query() -> Self {
        Self {
            client_ip: [0; 4],
            client_port: 0,
            kind: MsgType::VersionQuery,
            target_ip: [0; 4],
            target_port: 0,
        }
    }

    /// Announces a session: replies to `client` from `target` go to the sender.
    pub const fn add(
        client_ip: [u8; 4],
        client_port: u16,
        target_ip: [u8; 4],
        target_port: u16,
    ) -> Self {
        Self {
            client_ip,
            client_port,
            kind: MsgType::Add,
            target_ip,
            target_port,
        }
    }

    pub fn encode(&self) -> [u8; CLIENT_MSG_LEN] {
        let mut b = [0u8; CLIENT_MSG_LEN];
        b[0..4].copy_from_slice(&self.client_ip);
        b[4..6].copy_from_slice(&self.client_port.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_wire().to_be_bytes());
        b[8..12].copy_from_slice(&self.target_ip);
        b[12..14].copy_from_slice(&self.target_port.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; CLIENT_MSG_LEN]) -> Result<Self, ProtoError> {
        let kind = u16::from_be_bytes([b[6], b[7]]);
        Ok(Self {
            client_ip: [b[0], b[1], b[2], b[3]],
            client_port: u16::from_be_bytes([b[4], b[5]]),
            kind: MsgType::from_wire(kind).ok_or(ProtoError::UnknownType(kind))?,
            target_ip: [b[8], b[9], b[10], b[11]],
            target_port: u16::from_be_bytes([b[12], b[13]]),
        })
    }
}

/// What a tcpcopy sends: a 14-byte message, or an IPv6 announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    Msg(ClientMsg),
    Add6(Add6),
}

/// A stream decoder for what a tcpcopy sends (intercept's side of a
/// connection): [`ClientMsg`]s and [`Add6`] announcements.
#[derive(Clone, Debug)]
pub struct ClientMsgDecoder {
    partial: [u8; ADD6_LEN],
    have: usize,
}

impl Default for ClientMsgDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientMsgDecoder {
    pub const fn new() -> Self {
        Self {
            partial: [0; ADD6_LEN],
            have: 0,
        }
    }

    /// Feeds received bytes; calls `on_msg` for every complete message. On
    /// error the connection is beyond repair (the caller closes it).
    pub fn push(
        &mut self,
        mut input: &[u8],
        mut on_msg: impl FnMut(PeerMsg),
    ) -> Result<(), ProtoError> {
        while !input.is_empty() {
            // A message's head, then (for an IPv6 announcement) its tail.
            let want = if self.have >= CLIENT_MSG_LEN
                && u16::from_be_bytes([self.partial[6], self.partial[7]]) == ADD6_TYPE
            {
                ADD6_LEN
            } else {
                CLIENT_MSG_LEN
            };
            let take = (want - self.have).min(input.len());
            self.partial[self.have..self.have + take].copy_from_slice(&input[..take]);
            self.have += take;
            input = &input[take..];
            if self.have < want {
                continue;
            }
            if want == CLIENT_MSG_LEN {
                let head: &[u8; CLIENT_MSG_LEN] = self.partial[..CLIENT_MSG_LEN]
                    .try_into()
                    .expect("the head's length");
                let msg = ClientMsg::decode(head)?;
                if msg.kind == MsgType::Add6 {
                    continue; // its tail comes next
                }
                self.have = 0;
                on_msg(PeerMsg::Msg(msg));
            } else {
                self.have = 0;
                let tail: &[u8; ADD6_TAIL_LEN] = self.partial[CLIENT_MSG_LEN..]
                    .try_into()
                    .expect("the tail's length");
                on_msg(PeerMsg::Add6(Add6::decode_tail(tail)));
            }
        }
        Ok(())
    }

    /// Bytes of an incomplete message held (non-zero at EOF = cut mid-message).
    pub const fn pending(&self) -> usize {
        self.have
    }
}

/// One reply header as intercept reports it: 64 bytes, see the module docs.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderRecord {
    pub bytes: [u8; HEADER_RECORD_LEN],
}

const _: () = assert!(core::mem::size_of::<HeaderRecord>() == HEADER_RECORD_LEN);

impl core::fmt::Debug for HeaderRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeaderRecord")
            .field("src", &(self.src_addr(), self.src_port()))
            .field("dst", &(self.dst_addr(), self.dst_port()))
            .field("ip_total_len", &self.ip_total_len())
            .finish_non_exhaustive()
    }
}

impl Default for HeaderRecord {
    fn default() -> Self {
        Self {
            bytes: [0; HEADER_RECORD_LEN],
        }
    }
}

impl HeaderRecord {
    /// Builds a record from a reply's IPv4 header (`ip`, options included)
    /// and TCP header (`tcp`, options included): keeps the IPv4 header's
    /// first 20 bytes as they are and up to [`MAX_OPTION_LEN`] option bytes.
    pub fn from_headers(ip: &[u8], tcp: &[u8]) -> Self {
        let mut rec = Self::default();
        let ip_len = ip.len().min(RECORD_TCP_OFFSET);
        rec.bytes[..ip_len].copy_from_slice(&ip[..ip_len]);
        let tcp_len = tcp.len().min(HEADER_RECORD_LEN - RECORD_TCP_OFFSET);
        rec.bytes[RECORD_TCP_OFFSET..RECORD_TCP_OFFSET + tcp_len].copy_from_slice(&tcp[..tcp_len]);
        rec
    }

    /// Builds the record intercept reports for a reply: as
    /// [`from_headers`](Self::from_headers), with any IPv4 options stripped
    /// from the IP part ([`strip_ip_options`]). `ip` must hold at least the
    /// whole IPv4 header its IHL announces, or it is copied as it is.
    pub fn from_reply(ip: &[u8], tcp: &[u8]) -> Self {
        let mut rec = Self::from_headers(ip, tcp);
        let ip_hdr_len = rec.ip_header_len();
        if ip_hdr_len > RECORD_TCP_OFFSET && ip.len() >= ip_hdr_len {
            let mut first = [0u8; RECORD_TCP_OFFSET];
            first.copy_from_slice(&rec.bytes[..RECORD_TCP_OFFSET]);
            strip_ip_options(&mut first, ip_hdr_len);
            rec.bytes[..RECORD_TCP_OFFSET].copy_from_slice(&first);
        }
        rec
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// The reply's IPv4 total length (header + TCP header + payload).
    pub fn ip_total_len(&self) -> u16 {
        self.u16_at(2)
    }
    /// The reply's IPv4 header length from its IHL (options included).
    pub fn ip_header_len(&self) -> usize {
        ((self.bytes[0] & 0x0f) as usize) * 4
    }
    pub fn src_addr(&self) -> [u8; 4] {
        [
            self.bytes[12],
            self.bytes[13],
            self.bytes[14],
            self.bytes[15],
        ]
    }
    pub fn dst_addr(&self) -> [u8; 4] {
        [
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        ]
    }
    pub fn src_port(&self) -> u16 {
        self.u16_at(RECORD_TCP_OFFSET)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(RECORD_TCP_OFFSET + 2)
    }
    /// The TCP header and the option bytes kept (`..44` bytes).
    pub fn tcp_bytes(&self) -> &[u8] {
        &self.bytes[RECORD_TCP_OFFSET..]
    }
    /// The TCP sequence number.
    pub fn seq(&self) -> u32 {
        let at = RECORD_TCP_OFFSET + 4;
        u32::from_be_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }
    /// The TCP acknowledgment number.
    pub fn ack_seq(&self) -> u32 {
        let at = RECORD_TCP_OFFSET + 8;
        u32::from_be_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub fn tcp_flags(&self) -> u8 {
        self.bytes[RECORD_TCP_OFFSET + 13]
    }
    /// The TCP header length from its data offset (options included, also
    /// those a record cannot keep).
    pub fn tcp_header_len(&self) -> usize {
        ((self.bytes[RECORD_TCP_OFFSET + 12] >> 4) as usize) * 4
    }
    /// Payload bytes of the reply, as a C tcpcopy computes them
    /// (`tot_len - IHL * 4 - doff * 4`); `None` when the lengths cannot be.
    pub fn payload_len(&self) -> Option<usize> {
        (self.ip_total_len() as usize).checked_sub(self.ip_header_len() + self.tcp_header_len())
    }
}

/// Rewrites the first 20 bytes of an IPv4 header of `ip_hdr_len` bytes (as
/// its IHL announces) whose options are left out of a record: IHL becomes 5,
/// the total length shrinks by the option bytes and the header checksum is
/// recomputed, so the payload length computed from the record is the reply's.
/// The kernel program and the host side share this one definition.
#[inline(always)]
pub fn strip_ip_options(ip: &mut [u8; RECORD_TCP_OFFSET], ip_hdr_len: usize) {
    let option_len = ip_hdr_len.saturating_sub(RECORD_TCP_OFFSET) as u16;
    ip[0] = (ip[0] & 0xf0) | 5;
    let tot_len = u16::from_be_bytes([ip[2], ip[3]]).saturating_sub(option_len);
    ip[2..4].copy_from_slice(&tot_len.to_be_bytes());
    ip[10] = 0;
    ip[11] = 0;
    let check = ipv4_header_checksum(ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
}

/// The Internet checksum of a 20-byte IPv4 header (its checksum field
/// included as it is: zero it first to compute a fresh one).
#[inline(always)]
pub fn ipv4_header_checksum(ip: &[u8; RECORD_TCP_OFFSET]) -> u16 {
    let mut sum: u32 = 0;
    // Word by word; indices stay provably in bounds (no panic path in BPF).
    let mut word = 0;
    while word < RECORD_TCP_OFFSET / 2 {
        sum += u16::from_be_bytes([ip[2 * word], ip[2 * word + 1]]) as u32;
        word += 1;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Writes one frame: `u16` count then the records. `records.len()` must be
/// at most [`MAX_RECORDS_PER_FRAME`]; returns the bytes written to `out`.
pub fn encode_frame(records: &[HeaderRecord], out: &mut [u8; MAX_FRAME_LEN]) -> usize {
    let n = records.len().min(MAX_RECORDS_PER_FRAME);
    out[0..2].copy_from_slice(&(n as u16).to_be_bytes());
    for (i, rec) in records[..n].iter().enumerate() {
        let at = 2 + i * HEADER_RECORD_LEN;
        out[at..at + HEADER_RECORD_LEN].copy_from_slice(&rec.bytes);
    }
    2 + n * HEADER_RECORD_LEN
}

/// A stream decoder for record frames (tcpcopy's side of a connection).
#[derive(Clone)]
pub struct RecordFrameDecoder {
    header: [u8; 2],
    header_have: usize,
    /// Records still expected in the current frame.
    remaining: u16,
    partial: HeaderRecord,
    have: usize,
}

impl Default for RecordFrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordFrameDecoder {
    pub const fn new() -> Self {
        Self {
            header: [0; 2],
            header_have: 0,
            remaining: 0,
            partial: HeaderRecord {
                bytes: [0; HEADER_RECORD_LEN],
            },
            have: 0,
        }
    }

    /// Feeds received bytes; calls `on_record` for every complete record.
    /// On error the stream is beyond repair (the caller closes it).
    pub fn push(
        &mut self,
        mut input: &[u8],
        mut on_record: impl FnMut(&HeaderRecord),
    ) -> Result<(), ProtoError> {
        while !input.is_empty() {
            if self.remaining == 0 {
                let take = (2 - self.header_have).min(input.len());
                self.header[self.header_have..self.header_have + take]
                    .copy_from_slice(&input[..take]);
                self.header_have += take;
                input = &input[take..];
                if self.header_have == 2 {
                    self.header_have = 0;
                    let n = u16::from_be_bytes(self.header);
                    if n as usize > MAX_RECORDS_PER_FRAME {
                        return Err(ProtoError::TooManyRecords(n));
                    }
                    self.remaining = n;
                }
                continue;
            }
            let take = (HEADER_RECORD_LEN - self.have).min(input.len());
            self.partial.bytes[self.have..self.have + take].copy_from_slice(&input[..take]);
            self.have += take;
            input = &input[take..];
            if self.have == HEADER_RECORD_LEN {
                self.have = 0;
                self.remaining -= 1;
                on_record(&self.partial);
            }
        }
        Ok(())
    }

    /// Whether the stream stopped at a frame boundary (false at EOF = cut
    /// mid-frame).
    pub const fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.header_have == 0
    }
}

/// One thing [`ReplyStreamDecoder`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyEvent<'a> {
    /// A reply's record; `payload` for a payload record frame (the stored
    /// bytes, and the reply's whole payload length).
    Record {
        record: &'a HeaderRecord,
        payload: Option<(&'a [u8], u32)>,
    },
    /// The answer to a [`MsgType::VersionQuery`].
    Version(VersionInfo),
    /// The answer to a [`MsgType::PayloadRequest`]: the cap granted.
    PayloadGranted(u32),
    /// An IPv6 reply's record (see [`ipv6`]), as [`ReplyEvent::Record`].
    Record6 {
        record: &'a HeaderRecord6,
        payload: Option<(&'a [u8], u32)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyState {
    /// Reading a frame's first two bytes.
    Mark,
    /// A 1.x frame: this many records still to come.
    Records(u16),
    /// An IPv6 record frame: this many records still to come.
    Records6(u16),
    /// The rest of an extension frame of fixed size after its mark.
    Fixed { mark: u16, len: usize },
    /// A payload record's bytes: this many in all (of the IPv6 record
    /// frame when `v6`).
    Payload { stored: u32, v6: bool },
}

/// Bytes of the largest fixed-size part the decoder reads at once.
const FIXED_MAX: usize = {
    let a = if PAYLOAD_HEAD_LEN > PAYLOAD6_HEAD_LEN {
        PAYLOAD_HEAD_LEN
    } else {
        PAYLOAD6_HEAD_LEN
    };
    if a > HEADER_RECORD6_LEN {
        a
    } else {
        HEADER_RECORD6_LEN
    }
};

/// A stream decoder for everything intercept sends a tcpcopy: 1.x record
/// frames and this protocol's extension frames (see the module docs).
/// Holds up to one record's payload, so it is large: box it.
pub struct ReplyStreamDecoder {
    state: ReplyState,
    /// Bytes of the current fixed-size part (mark, record, extension frame).
    fixed: [u8; FIXED_MAX],
    have: usize,
    head: PayloadRecordHead,
    /// The current IPv6 payload record: the record, its payload length.
    head6: (HeaderRecord6, u32),
    payload: [u8; MAX_RECORD_PAYLOAD as usize],
    payload_have: usize,
}

impl Default for ReplyStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyStreamDecoder {
    pub const fn new() -> Self {
        Self {
            state: ReplyState::Mark,
            fixed: [0; FIXED_MAX],
            have: 0,
            head6: (
                HeaderRecord6 {
                    bytes: [0; HEADER_RECORD6_LEN],
                },
                0,
            ),
            head: PayloadRecordHead {
                record: HeaderRecord {
                    bytes: [0; HEADER_RECORD_LEN],
                },
                payload_len: 0,
                stored: 0,
            },
            payload: [0; MAX_RECORD_PAYLOAD as usize],
            payload_have: 0,
        }
    }

    /// Back to the start of a stream (a new connection), keeping the
    /// buffers.
    pub fn reset(&mut self) {
        self.state = ReplyState::Mark;
        self.have = 0;
        self.payload_have = 0;
    }

    /// Takes up to `want` bytes into `fixed`; whether it now holds `want`.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = (want - self.have).min(input.len());
        self.fixed[self.have..self.have + take].copy_from_slice(&input[..take]);
        self.have += take;
        *input = &input[take..];
        self.have == want
    }

    /// Feeds received bytes; calls `on_event` for everything complete. On
    /// error the stream is beyond repair (the caller closes it).
    pub fn push(
        &mut self,
        mut input: &[u8],
        mut on_event: impl FnMut(ReplyEvent<'_>),
    ) -> Result<(), ProtoError> {
        while !input.is_empty() {
            match self.state {
                ReplyState::Mark => {
                    if !self.fill(&mut input, 2) {
                        continue;
                    }
                    self.have = 0;
                    let mark = u16::from_be_bytes([self.fixed[0], self.fixed[1]]);
                    self.state = match mark {
                        0 => ReplyState::Mark,
                        n if n as usize <= MAX_RECORDS_PER_FRAME => ReplyState::Records(n),
                        VERSION_FRAME_MARK => ReplyState::Fixed {
                            mark,
                            len: VERSION_FRAME_LEN - 2,
                        },
                        PAYLOAD_GRANT_MARK => ReplyState::Fixed {
                            mark,
                            len: PAYLOAD_GRANT_LEN - 2,
                        },
                        PAYLOAD_RECORD_MARK => ReplyState::Fixed {
                            mark,
                            len: PAYLOAD_HEAD_LEN - 2,
                        },
                        RECORD6_FRAME_MARK => ReplyState::Fixed { mark, len: 2 },
                        PAYLOAD_RECORD6_MARK => ReplyState::Fixed {
                            mark,
                            len: PAYLOAD6_HEAD_LEN - 2,
                        },
                        n => return Err(ProtoError::TooManyRecords(n)),
                    };
                }
                ReplyState::Records6(n) => {
                    if !self.fill(&mut input, HEADER_RECORD6_LEN) {
                        continue;
                    }
                    self.have = 0;
                    let mut record = HeaderRecord6::default();
                    record
                        .bytes
                        .copy_from_slice(&self.fixed[..HEADER_RECORD6_LEN]);
                    on_event(ReplyEvent::Record6 {
                        record: &record,
                        payload: None,
                    });
                    self.state = if n > 1 {
                        ReplyState::Records6(n - 1)
                    } else {
                        ReplyState::Mark
                    };
                }
                ReplyState::Records(n) => {
                    if !self.fill(&mut input, HEADER_RECORD_LEN) {
                        continue;
                    }
                    self.have = 0;
                    let mut record = HeaderRecord::default();
                    record
                        .bytes
                        .copy_from_slice(&self.fixed[..HEADER_RECORD_LEN]);
                    on_event(ReplyEvent::Record {
                        record: &record,
                        payload: None,
                    });
                    self.state = if n > 1 {
                        ReplyState::Records(n - 1)
                    } else {
                        ReplyState::Mark
                    };
                }
                ReplyState::Fixed { mark, len } => {
                    if !self.fill(&mut input, len) {
                        continue;
                    }
                    self.have = 0;
                    self.state = ReplyState::Mark;
                    let b = &self.fixed[..len];
                    match mark {
                        VERSION_FRAME_MARK => {
                            let mut frame = [0u8; VERSION_FRAME_LEN];
                            frame[..2].copy_from_slice(&mark.to_be_bytes());
                            frame[2..].copy_from_slice(b);
                            let info = VersionInfo::decode(&frame)
                                .ok_or(ProtoError::UnexpectedFrame(mark))?;
                            on_event(ReplyEvent::Version(info));
                        }
                        PAYLOAD_GRANT_MARK => {
                            let granted = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                            on_event(ReplyEvent::PayloadGranted(granted));
                        }
                        RECORD6_FRAME_MARK => {
                            let n = u16::from_be_bytes([b[0], b[1]]);
                            if n as usize > MAX_RECORDS_PER_FRAME {
                                return Err(ProtoError::TooManyRecords(n));
                            }
                            if n > 0 {
                                self.state = ReplyState::Records6(n);
                            }
                        }
                        PAYLOAD_RECORD6_MARK => {
                            let mut record = HeaderRecord6::default();
                            record.bytes.copy_from_slice(&b[..HEADER_RECORD6_LEN]);
                            let (payload_len, stored) = payload_counts(&b[HEADER_RECORD6_LEN..])?;
                            self.head6 = (record, payload_len);
                            self.payload_have = 0;
                            if stored == 0 {
                                on_event(ReplyEvent::Record6 {
                                    record: &self.head6.0,
                                    payload: Some((&[], payload_len)),
                                });
                            } else {
                                self.state = ReplyState::Payload { stored, v6: true };
                            }
                        }
                        _ => {
                            let mut record = HeaderRecord::default();
                            record.bytes.copy_from_slice(&b[..HEADER_RECORD_LEN]);
                            let (payload_len, stored) = payload_counts(&b[HEADER_RECORD_LEN..])?;
                            self.head = PayloadRecordHead {
                                record,
                                payload_len,
                                stored,
                            };
                            self.payload_have = 0;
                            if stored == 0 {
                                on_event(ReplyEvent::Record {
                                    record: &self.head.record,
                                    payload: Some((&[], payload_len)),
                                });
                            } else {
                                self.state = ReplyState::Payload { stored, v6: false };
                            }
                        }
                    }
                }
                ReplyState::Payload { stored, v6 } => {
                    let want = stored as usize - self.payload_have;
                    let take = want.min(input.len());
                    self.payload[self.payload_have..self.payload_have + take]
                        .copy_from_slice(&input[..take]);
                    self.payload_have += take;
                    input = &input[take..];
                    if self.payload_have == stored as usize {
                        self.state = ReplyState::Mark;
                        let bytes = &self.payload[..self.payload_have];
                        on_event(if v6 {
                            ReplyEvent::Record6 {
                                record: &self.head6.0,
                                payload: Some((bytes, self.head6.1)),
                            }
                        } else {
                            ReplyEvent::Record {
                                record: &self.head.record,
                                payload: Some((bytes, self.head.payload_len)),
                            }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the stream stopped at a frame boundary (false at EOF = cut
    /// mid-frame).
    pub fn at_boundary(&self) -> bool {
        self.state == ReplyState::Mark && self.have == 0
    }
}

/// A payload record's payload length and stored count (`u32` each), checked.
fn payload_counts(b: &[u8]) -> Result<(u32, u32), ProtoError> {
    let payload_len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let stored = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    if stored > payload_len || stored > MAX_RECORD_PAYLOAD {
        return Err(ProtoError::BadPayload {
            payload_len,
            stored,
        });
    }
    Ok((payload_len, stored))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn hello_is_all_zero_with_type_6() {
        assert_eq!(
            ClientMsg::hello().encode(),
            [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn client_add_layout_is_byte_exact() {
        let msg = ClientMsg::add([198, 18, 1, 2], 0xabcd, [198, 18, 2, 2], 80);
        let wire = msg.encode();
        assert_eq!(
            wire,
            [198, 18, 1, 2, 0xab, 0xcd, 0, 1, 198, 18, 2, 2, 0, 80]
        );
        assert_eq!(ClientMsg::decode(&wire), Ok(msg));
    }

    #[test]
    fn client_msgs_decode_across_any_split() {
        let add6 = Add6 {
            client_ip: [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
            client_port: 40001,
            target_ip: [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            target_port: 80,
        };
        let msgs = [
            PeerMsg::Msg(ClientMsg::hello()),
            PeerMsg::Msg(ClientMsg::add([1, 2, 3, 4], 5, [6, 7, 8, 9], 10)),
            PeerMsg::Add6(add6),
            PeerMsg::Msg(ClientMsg::add(
                [198, 18, 1, 2],
                40000,
                [198, 18, 2, 2],
                6379,
            )),
            PeerMsg::Add6(Add6 {
                client_port: 40002,
                ..add6
            }),
        ];
        let wire: Vec<u8> = msgs
            .iter()
            .flat_map(|m| match m {
                PeerMsg::Msg(m) => m.encode().to_vec(),
                PeerMsg::Add6(m) => m.encode().to_vec(),
            })
            .collect();
        for split in 0..=wire.len() {
            let mut dec = ClientMsgDecoder::new();
            let mut got = Vec::new();
            dec.push(&wire[..split], |m| got.push(m)).unwrap();
            dec.push(&wire[split..], |m| got.push(m)).unwrap();
            assert_eq!(got, msgs, "split at {split}");
            assert_eq!(dec.pending(), 0);
        }
    }

    #[test]
    fn unknown_client_msg_type_is_an_error() {
        let mut wire = ClientMsg::hello().encode();
        wire[7] = 9;
        let mut dec = ClientMsgDecoder::new();
        assert_eq!(dec.push(&wire, |_| {}), Err(ProtoError::UnknownType(9)));
    }

    #[test]
    fn the_version_query_and_its_answer_are_byte_exact() {
        let q = ClientMsg::version_query().encode();
        assert_eq!(q, [0, 0, 0, 0, 0, 0, 0x74, 0x76, 0, 0, 0, 0, 0, 0]);
        let mut dec = ClientMsgDecoder::new();
        let mut got = Vec::new();
        dec.push(&q, |m| got.push(m)).unwrap();
        assert_eq!(got, [PeerMsg::Msg(ClientMsg::version_query())]);

        let info = VersionInfo::new("0.1.0", 0);
        let frame = info.encode();
        assert_eq!(&frame[..10], b"\x80\x76tcpcp-rs");
        assert_eq!(&frame[10..15], b"0.1.0");
        assert!(frame[15..].iter().all(|&b| b == 0));
        let back = VersionInfo::decode(&frame).unwrap();
        assert_eq!((back, back.version_str()), (info, "0.1.0"));
        // Never taken for a record frame, and a record frame never for it.
        let mut rec_dec = RecordFrameDecoder::new();
        assert!(rec_dec.push(&frame, |_| {}).is_err());
        let mut recs = [0u8; MAX_FRAME_LEN];
        let n = encode_frame(&[record(3)], &mut recs);
        assert_eq!(VersionInfo::decode(&recs[..n]), None);
        assert_eq!(VersionInfo::decode(&frame[..20]), None);
    }

    fn record(n: u8) -> HeaderRecord {
        let mut r = HeaderRecord::default();
        for (i, b) in r.bytes.iter_mut().enumerate() {
            *b = n.wrapping_add(i as u8);
        }
        r
    }

    #[test]
    fn record_frames_are_byte_exact() {
        let recs = [record(1), record(100)];
        let mut out = [0u8; MAX_FRAME_LEN];
        let n = encode_frame(&recs, &mut out);
        assert_eq!(n, 2 + 128);
        assert_eq!(&out[..2], &[0, 2]);
        assert_eq!(&out[2..66], &recs[0].bytes);
        assert_eq!(&out[66..130], &recs[1].bytes);
    }

    #[test]
    fn record_frames_decode_across_any_split() {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, count) in [3usize, 0, 16, 1].into_iter().enumerate() {
            let recs: Vec<HeaderRecord> = (0..count).map(|j| record((i * 20 + j) as u8)).collect();
            let mut out = [0u8; MAX_FRAME_LEN];
            let n = encode_frame(&recs, &mut out);
            wire.extend_from_slice(&out[..n]);
            want.extend(recs);
        }
        for split in 0..=wire.len() {
            let mut dec = RecordFrameDecoder::new();
            let mut got = Vec::new();
            dec.push(&wire[..split], |r| got.push(*r)).unwrap();
            dec.push(&wire[split..], |r| got.push(*r)).unwrap();
            assert!(got == want, "split at {split}");
            assert!(dec.at_boundary());
        }
        let mut dec = RecordFrameDecoder::new();
        dec.push(&wire[..5], |_| {}).unwrap();
        assert!(!dec.at_boundary(), "cut mid-frame");
    }

    #[test]
    fn record_frame_with_too_many_records_is_an_error() {
        let mut dec = RecordFrameDecoder::new();
        assert_eq!(
            dec.push(&[0, 17], |_| {}),
            Err(ProtoError::TooManyRecords(17))
        );
        let mut dec = RecordFrameDecoder::new();
        assert_eq!(
            dec.push(&[0xff, 0xff, 1, 2], |_| {}),
            Err(ProtoError::TooManyRecords(0xffff))
        );
    }

    #[test]
    fn record_from_headers_keeps_20_ip_bytes_and_24_option_bytes() {
        let mut ip = [0u8; 24];
        ip[0] = 0x46; // IHL 6: 4 option bytes, dropped
        ip[2..4].copy_from_slice(&100u16.to_be_bytes());
        ip[20..24].copy_from_slice(&[0xee; 4]);
        let mut tcp = [0u8; 60];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0xf0; // 60-byte header: 40 option bytes, 24 kept
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let rec = HeaderRecord::from_headers(&ip, &tcp);
        assert_eq!(rec.ip_header_len(), 24);
        assert_eq!(rec.ip_total_len(), 100);
        assert_eq!(rec.src_port(), 80);
        assert_eq!(&rec.bytes[..20], &ip[..20]);
        assert_eq!(&rec.bytes[20..64], &tcp[..44]);
    }

    /// A 20-byte IPv4 header with a correct checksum.
    fn ipv4_header(ihl: u8, tot_len: u16) -> [u8; 20] {
        let mut ip = [0u8; 20];
        ip[0] = 0x40 | ihl;
        ip[2..4].copy_from_slice(&tot_len.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, 2, 2]);
        ip[16..20].copy_from_slice(&[198, 18, 1, 2]);
        let check = ipv4_header_checksum(&ip);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        ip
    }

    #[test]
    fn ipv4_checksum_of_a_valid_header_verifies_to_zero() {
        let ip = ipv4_header(5, 40);
        assert_eq!(ipv4_header_checksum(&ip), 0);
        // A known header (RFC 1071 style worked example, checked with etherparse).
        let mut etherparse_hdr = Vec::new();
        etherparse::Ipv4Header::new(
            4,
            64,
            etherparse::IpNumber::TCP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap()
        .write(&mut etherparse_hdr)
        .unwrap();
        let fixed: [u8; 20] = etherparse_hdr.try_into().unwrap();
        assert_eq!(ipv4_header_checksum(&fixed), 0);
    }

    #[test]
    fn reply_with_ip_options_is_normalised_to_ihl_5() {
        // 8 option bytes, 20-byte TCP header, 100 payload bytes.
        let mut ip = [0u8; 28];
        ip[..20].copy_from_slice(&ipv4_header(7, 28 + 20 + 100));
        ip[20..28].copy_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x18;
        let rec = HeaderRecord::from_reply(&ip, &tcp);
        assert_eq!(rec.bytes[0], 0x45);
        assert_eq!(rec.ip_header_len(), 20);
        assert_eq!(rec.ip_total_len(), 20 + 20 + 100);
        assert_eq!(rec.payload_len(), Some(100));
        let first: [u8; 20] = rec.bytes[..20].try_into().unwrap();
        assert_eq!(ipv4_header_checksum(&first), 0, "checksum recomputed");
        // Everything else of the IP header is untouched.
        assert_eq!(&rec.bytes[4..10], &ip[4..10]);
        assert_eq!(&rec.bytes[12..20], &ip[12..20]);
        assert_eq!(&rec.bytes[20..40], &tcp);
        assert_eq!(&rec.bytes[40..], &[0u8; 24]);
    }

    #[test]
    fn reply_without_ip_options_is_kept_as_on_the_wire() {
        let ip = ipv4_header(5, 20 + 32 + 7);
        let mut tcp = [0u8; 32];
        tcp[12] = 0x80; // 12 option bytes
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        let rec = HeaderRecord::from_reply(&ip, &tcp);
        assert_eq!(&rec.bytes[..20], &ip);
        assert_eq!(&rec.bytes[20..52], &tcp);
        assert_eq!(&rec.bytes[52..], &[0u8; 12]);
        assert_eq!(rec.payload_len(), Some(7));
    }

    #[test]
    fn long_tcp_options_are_cut_but_data_offset_kept() {
        let ip = ipv4_header(5, 20 + 60 + 5);
        let mut tcp = [0u8; 60];
        tcp[12] = 0xf0;
        tcp[13] = 0x12;
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = 0x80 | i as u8;
        }
        let rec = HeaderRecord::from_reply(&ip, &tcp);
        assert_eq!(rec.tcp_header_len(), 60, "doff as on the wire");
        assert_eq!(rec.payload_len(), Some(5));
        assert_eq!(&rec.bytes[20..64], &tcp[..44]);
        assert_eq!(rec.tcp_flags(), 0x12);
    }

    #[test]
    fn record_accessors_read_network_order() {
        let ip = ipv4_header(5, 40);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&6379u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40001u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        tcp[8..12].copy_from_slice(&0xa0b0_c0d0u32.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x04;
        let rec = HeaderRecord::from_reply(&ip, &tcp);
        assert_eq!(rec.src_addr(), [198, 18, 2, 2]);
        assert_eq!(rec.dst_addr(), [198, 18, 1, 2]);
        assert_eq!((rec.src_port(), rec.dst_port()), (6379, 40001));
        assert_eq!((rec.seq(), rec.ack_seq()), (0x0102_0304, 0xa0b0_c0d0));
        assert_eq!(rec.tcp_flags(), 0x04);
        assert_eq!(rec.payload_len(), Some(0));
        let mut bad = rec;
        bad.bytes[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(bad.payload_len(), None);
    }

    #[test]
    fn the_payload_request_and_its_frames_are_byte_exact() {
        let req = ClientMsg::payload_request(65_536);
        assert_eq!(
            req.encode(),
            [0, 1, 0, 0, 0, 0, 0x74, 0x70, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ClientMsg::decode(&req.encode()), Ok(req));
        assert_eq!(req.requested_cap(), 65_536);
        assert_eq!(encode_payload_grant(1500), [0x80, 0x70, 0, 0, 0x05, 0xdc]);
        let head = PayloadRecordHead {
            record: record(7),
            payload_len: 300,
            stored: 2,
        }
        .encode();
        assert_eq!(&head[..2], &[0x80, 0x71]);
        assert_eq!(&head[2..66], &record(7).bytes);
        assert_eq!(&head[66..], &[0, 0, 1, 44, 0, 0, 0, 2]);
    }

    /// Every frame kind in one stream: a 1.x frame, a grant, a version
    /// answer, payload records (cut at the cap, empty), another 1.x frame.
    fn mixed_stream() -> Vec<u8> {
        let mut wire = Vec::new();
        let mut frame = [0u8; MAX_FRAME_LEN];
        let n = encode_frame(&[record(1), record(2)], &mut frame);
        wire.extend_from_slice(&frame[..n]);
        wire.extend_from_slice(&encode_payload_grant(4));
        wire.extend_from_slice(&VersionInfo::new("0.1.0", CAP_PAYLOADS).encode());
        let head = PayloadRecordHead {
            record: record(3),
            payload_len: 6,
            stored: 4,
        };
        wire.extend_from_slice(&head.encode());
        wire.extend_from_slice(b"HTTP");
        let empty = PayloadRecordHead {
            record: record(4),
            payload_len: 0,
            stored: 0,
        };
        wire.extend_from_slice(&empty.encode());
        let n = encode_frame(&[record(5)], &mut frame);
        wire.extend_from_slice(&frame[..n]);
        let mut frame6 = [0u8; MAX_FRAME6_LEN];
        let n = encode_frame6(&[record6(6), record6(7)], &mut frame6);
        wire.extend_from_slice(&frame6[..n]);
        wire.extend_from_slice(&encode_payload6_head(&record6(8), 9, 3));
        wire.extend_from_slice(b"GET");
        wire.extend_from_slice(&encode_payload6_head(&record6(9), 0, 0));
        let n = encode_frame6(&[], &mut frame6);
        wire.extend_from_slice(&frame6[..n]);
        let n = encode_frame(&[record(10)], &mut frame);
        wire.extend_from_slice(&frame[..n]);
        wire
    }

    fn record6(n: u8) -> HeaderRecord6 {
        let mut r = HeaderRecord6::default();
        r.bytes[0] = 0x60;
        r.bytes[1] = n;
        r.bytes[87] = n;
        r
    }

    fn decode_all(wire: &[u8], step: usize) -> Vec<std::string::String> {
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        let mut got = Vec::new();
        for chunk in wire.chunks(step) {
            d.push(chunk, |e| {
                got.push(match e {
                    ReplyEvent::Record { record, payload } => std::format!(
                        "rec {} {:?}",
                        record.bytes[0],
                        payload.map(|(b, n)| (
                            std::string::String::from_utf8_lossy(b).into_owned(),
                            n
                        ))
                    ),
                    ReplyEvent::Version(v) => std::format!("version {}", v.version_str()),
                    ReplyEvent::PayloadGranted(n) => std::format!("granted {n}"),
                    ReplyEvent::Record6 { record, payload } => {
                        assert_eq!(record.bytes[1], record.bytes[87], "a whole record");
                        std::format!(
                            "rec6 {} {:?}",
                            record.bytes[1],
                            payload.map(|(b, n)| (
                                std::string::String::from_utf8_lossy(b).into_owned(),
                                n
                            ))
                        )
                    }
                })
            })
            .unwrap();
        }
        assert!(d.at_boundary());
        got
    }

    #[test]
    fn the_reply_stream_decoder_reads_every_frame_kind_across_any_split() {
        let wire = mixed_stream();
        let want = decode_all(&wire, wire.len());
        assert_eq!(
            want,
            [
                "rec 1 None",
                "rec 2 None",
                "granted 4",
                "version 0.1.0",
                "rec 3 Some((\"HTTP\", 6))",
                "rec 4 Some((\"\", 0))",
                "rec 5 None",
                "rec6 6 None",
                "rec6 7 None",
                "rec6 8 Some((\"GET\", 9))",
                "rec6 9 Some((\"\", 0))",
                "rec 10 None"
            ]
        );
        for step in 1..wire.len() {
            assert_eq!(decode_all(&wire, step), want, "split every {step} bytes");
        }
    }

    #[test]
    fn bad_extension_frames_are_errors_not_panics() {
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        let bad = PayloadRecordHead {
            record: record(1),
            payload_len: 2,
            stored: 3,
        };
        assert_eq!(
            d.push(&bad.encode(), |_| {}),
            Err(ProtoError::BadPayload {
                payload_len: 2,
                stored: 3
            })
        );
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        assert_eq!(
            d.push(&[0x80, 0x99], |_| {}),
            Err(ProtoError::TooManyRecords(0x8099))
        );
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        let mut fake_version = VersionInfo::new("x", 0).encode();
        fake_version[2] = b'X';
        assert_eq!(
            d.push(&fake_version, |_| {}),
            Err(ProtoError::UnexpectedFrame(VERSION_FRAME_MARK))
        );
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        assert_eq!(
            d.push(&[0x80, 0x06, 0, 17], |_| {}),
            Err(ProtoError::TooManyRecords(17))
        );
        let mut d = std::boxed::Box::new(ReplyStreamDecoder::new());
        assert_eq!(
            d.push(&encode_payload6_head(&record6(1), 2, 3), |_| {}),
            Err(ProtoError::BadPayload {
                payload_len: 2,
                stored: 3
            })
        );
    }
}
