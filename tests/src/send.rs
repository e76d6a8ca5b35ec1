//! Driving tcpcopy's senders in the lab: crafted client segments (built
//! with the workspace's own `SegmentRepr`, checksums and all) in an
//! `Outbox`, as the engine would leave them, and senders opened inside a
//! lab namespace.

use tcpcopy_user::{
    engine::outbox::Outbox,
    packet::{Address, SeqNumber, TcpFlags, tcp::SegmentRepr},
    send::{FrameSender, SendError, SenderConfig},
};

use crate::lab::{Host, Lab};

/// nginx on the target.
pub const TARGET: ([u8; 4], u16) = ([198, 18, 2, 2], 80);
/// The MSS option of the SYNs (4 bytes, already padded).
const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

/// A SYN from `client` to `target` with sequence number `isn`.
pub fn syn(client: ([u8; 4], u16), target: ([u8; 4], u16), isn: u32) -> Vec<u8> {
    segment(client, target, isn, TcpFlags::SYN, &MSS_1460, &[])
}

/// An IPv6 SYN from `client` to `target` with sequence number `isn`.
pub fn syn6(client: ([u8; 16], u16), target: ([u8; 16], u16), isn: u32) -> Vec<u8> {
    segment(client, target, isn, TcpFlags::SYN, &MSS_1460, &[])
}

/// An IPv4/TCP packet of exactly `ip_len` bytes (a PSH|ACK whose payload
/// is a byte pattern), so tests and benchmarks can pick frame sizes.
pub fn sized(client: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, ip_len: usize) -> Vec<u8> {
    assert!(ip_len >= 40, "an IPv4/TCP packet is at least 40 bytes");
    let payload: Vec<u8> = (0..ip_len - 40).map(|i| (i % 251) as u8).collect();
    segment(
        client,
        dst,
        seq,
        TcpFlags::PSH | TcpFlags::ACK,
        &[],
        &payload,
    )
}

/// A packet of `src`'s family (IPv4 or IPv6) carrying one TCP segment.
pub fn segment<A: Address>(
    src: (A, u16),
    dst: (A, u16),
    seq: u32,
    flags: TcpFlags,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let repr = SegmentRepr {
        src: src.0,
        dst: dst.0,
        src_port: src.1,
        dst_port: dst.1,
        seq: SeqNumber(seq),
        ack: SeqNumber(if flags.ack() { 1 } else { 0 }),
        flags,
        window: 65535,
        ttl: 64,
        ip_id: (seq & 0xffff) as u16,
        options,
        payload,
    };
    let mut out = vec![0u8; repr.len()];
    repr.emit(&mut out);
    out
}

/// An outbox holding `packets`, in order.
pub fn outbox_of<P: AsRef<[u8]>>(packets: &[P]) -> Outbox {
    let mut out = Outbox::default();
    for p in packets {
        out.push_packet(p.as_ref());
    }
    out
}

/// Opens `config`'s sender inside `host`'s namespace (its sockets stay
/// there; the sender can then be used from anywhere).
pub fn open_in(
    lab: &Lab,
    host: Host,
    config: &SenderConfig,
) -> Result<Box<dyn FrameSender>, SendError> {
    let _ns = lab.enter(host);
    config.open()
}
