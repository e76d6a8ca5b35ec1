//! The dry run: a [`FrameSender`] that writes every frame tcpcopy would
//! send into a pcap file (raw IPv4 records) instead of sending it, and a
//! simulated target that answers each one as a TCP server would, so the
//! engine replays whole sessions (handshakes, requests paced by responses,
//! closes) without a network.
//!
//! The simulated target accepts every SYN (MSS 1460, timestamps when
//! offered), answers each in-order data segment with a response bigger
//! than any production response the engine waits for (so requests go out
//! as fast as the engine allows), answers a FIN with its own FIN, and
//! forgets a connection at a RST. Segments out of order get a duplicate ACK; a
//! segment of a connection it does not know gets a RST. It answers IPv4 and
//! IPv6 alike, with the records intercept would send for each family.

use std::{
    collections::HashMap,
    fs::File,
    io::BufWriter,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tcpcopy_common::proto::{HeaderRecord, HeaderRecord6};

use super::writer::{LINKTYPE_RAW, PcapWriter, wall_clock_ns};
use crate::{
    packet::{
        Address, SeqNumber, TcpFlags, TcpPacket,
        options::{write_syn_options, write_timestamp_option},
        tcp::SegmentRepr,
    },
    send::{FrameQueue, FrameSender, MacAddr, SenderStats},
    shard::ReplyRecord,
};

/// Payload bytes the simulated target claims for each response: more
/// than production's, so the engine never waits for the rest.
const RESPONSE_BYTES: u16 = 65_000;
const MSS: u16 = 1460;
const WINDOW: u16 = 65_535;

#[derive(Clone, Copy, Debug)]
struct Conn {
    /// Next byte expected from the client.
    rcv_nxt: SeqNumber,
    /// Next sequence number of ours.
    snd_nxt: SeqNumber,
    timestamps: bool,
    /// Our SYN's sequence number (to answer a repeated SYN).
    isn: SeqNumber,
    fin_sent: bool,
}

/// A simulated target's reply, as intercept reports it.
enum Answer {
    V4(HeaderRecord),
    V6(HeaderRecord6),
}

/// Connections by (client, target) endpoint keys of one family.
type Conns<A> = HashMap<(<A as Address>::Packed, <A as Address>::Packed), Conn>;

/// The simulated target's connections, by family.
#[derive(Default)]
struct TargetConns {
    v4: Conns<[u8; 4]>,
    v6: Conns<[u8; 16]>,
}

/// What the simulated target needs of an IP family.
trait Family: Address {
    fn conns(c: &mut TargetConns) -> &mut Conns<Self>;
    /// The record of a reply whose headers (`len` bytes, no payload) are
    /// in `buf`, claiming `payload` bytes of data.
    fn answer(buf: &mut [u8], len: usize, payload: u16) -> Answer;
}

impl Family for [u8; 4] {
    fn conns(c: &mut TargetConns) -> &mut Conns<Self> {
        &mut c.v4
    }
    fn answer(buf: &mut [u8], len: usize, payload: u16) -> Answer {
        // The record says how much data the reply carried.
        buf[2..4].copy_from_slice(&(len as u16 + payload).to_be_bytes());
        Answer::V4(HeaderRecord::from_headers(&buf[..20], &buf[20..len]))
    }
}

impl Family for [u8; 16] {
    fn conns(c: &mut TargetConns) -> &mut Conns<Self> {
        &mut c.v6
    }
    fn answer(buf: &mut [u8], len: usize, payload: u16) -> Answer {
        let tcp_len = (len - Self::HEADER_LEN) as u16;
        buf[4..6].copy_from_slice(&(tcp_len + payload).to_be_bytes());
        let ip: &[u8; 40] = buf[..40].try_into().expect("an IPv6 header");
        Answer::V6(HeaderRecord6::from_headers(ip, 0, &buf[40..len]))
    }
}

/// Frames into a pcap file; answers from a simulated target.
pub struct DryRun {
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: Option<PathBuf>,
    conns: TargetConns,
    replies: Vec<Answer>,
    stats: SenderStats,
    isn_seed: u32,
    write_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create {path}: {source}")]
pub struct DryRunError {
    path: PathBuf,
    source: std::io::Error,
}

impl DryRun {
    /// A dry run writing to `path` (`None`: frames are only counted).
    pub fn new(path: Option<&Path>) -> Result<Self, DryRunError> {
        let writer = match path {
            Some(p) => {
                let err = |source| DryRunError {
                    path: p.to_owned(),
                    source,
                };
                let file = File::create(p).map_err(err)?;
                Some(PcapWriter::new(BufWriter::new(file), LINKTYPE_RAW, 65_535).map_err(err)?)
            }
            None => None,
        };
        Ok(Self {
            writer,
            path: path.map(Path::to_owned),
            conns: TargetConns::default(),
            replies: Vec::new(),
            stats: SenderStats::default(),
            isn_seed: 0x5eed_0001,
            write_error: None,
        })
    }

    /// The first error writing the file, if any.
    pub fn write_error(&self) -> Option<&str> {
        self.write_error.as_deref()
    }

    fn record(&mut self, frame: &[u8]) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.write(wall_clock_ns(), frame, frame.len())
        {
            tracing::error!(error = %e, "writing the dry run's pcap failed; frames are no longer written");
            self.write_error = Some(e.to_string());
            self.writer = None;
        }
    }

    /// The simulated target's answer to one frame.
    fn answer(&mut self, frame: &[u8]) {
        match frame.first().map(|b| b >> 4) {
            Some(4) => self.answer_family::<[u8; 4]>(frame),
            Some(6) => self.answer_family::<[u8; 16]>(frame),
            _ => {}
        }
    }

    fn answer_family<A: Family>(&mut self, frame: &[u8]) {
        let Ok(p) = TcpPacket::<_, A>::new_checked(frame) else {
            return;
        };
        let flags = p.flags();
        let k = (
            p.src_addr().pack(p.src_port(), 0),
            p.dst_addr().pack(p.dst_port(), 0),
        );
        let peer_ts = p.options().timestamp.map(|t| t.0);
        let reply = |seq: SeqNumber,
                     ack: SeqNumber,
                     flags: TcpFlags,
                     ts: Option<u32>,
                     payload: u16,
                     syn_options: bool| {
            let mut opts = [0u8; 20];
            let n = if syn_options {
                write_syn_options(&mut opts, MSS, ts.map(|t| (1, t)), None)
            } else if let Some(t) = ts {
                write_timestamp_option(&mut opts, 1, t)
            } else {
                0
            };
            let repr = SegmentRepr {
                src: p.dst_addr(),
                dst: p.src_addr(),
                src_port: p.dst_port(),
                dst_port: p.src_port(),
                seq,
                ack,
                flags,
                window: WINDOW,
                ttl: 64,
                ip_id: 0,
                options: &opts[..n],
                payload: &[],
            };
            let mut buf = [0u8; 100];
            let len = repr.emit(&mut buf);
            A::answer(&mut buf, len, payload)
        };
        let conns = A::conns(&mut self.conns);
        if flags.rst() {
            conns.remove(&k);
            return;
        }
        if flags.syn() && !flags.ack() {
            let conn = match conns.get(&k) {
                Some(c) if c.rcv_nxt == p.seq() + 1 => *c,
                _ => {
                    self.isn_seed = self.isn_seed.wrapping_mul(747_796_405).wrapping_add(1);
                    let isn = SeqNumber(self.isn_seed);
                    let c = Conn {
                        rcv_nxt: p.seq() + 1,
                        snd_nxt: isn + 1,
                        timestamps: peer_ts.is_some(),
                        isn,
                        fin_sent: false,
                    };
                    conns.insert(k, c);
                    c
                }
            };
            let ts = conn.timestamps.then_some(peer_ts.unwrap_or(0));
            self.replies.push(reply(
                conn.isn,
                conn.rcv_nxt,
                TcpFlags::SYN | TcpFlags::ACK,
                ts,
                0,
                true,
            ));
            return;
        }
        let Some(conn) = conns.get_mut(&k) else {
            if !flags.rst() {
                self.replies
                    .push(reply(p.ack(), SeqNumber(0), TcpFlags::RST, None, 0, false));
            }
            return;
        };
        let ts = conn.timestamps.then_some(peer_ts.unwrap_or(0));
        let len = p.payload().len() as u32;
        if len == 0 && !flags.fin() {
            return; // a pure ACK
        }
        if p.seq() != conn.rcv_nxt {
            let (seq, ack) = (conn.snd_nxt, conn.rcv_nxt);
            self.replies
                .push(reply(seq, ack, TcpFlags::ACK, ts, 0, false));
            return;
        }
        conn.rcv_nxt += len;
        let respond = len > 0;
        if respond {
            let (seq, ack) = (conn.snd_nxt, conn.rcv_nxt);
            conn.snd_nxt += u32::from(RESPONSE_BYTES);
            self.replies.push(reply(
                seq,
                ack,
                TcpFlags::ACK | TcpFlags::PSH,
                ts,
                RESPONSE_BYTES,
                false,
            ));
        } else if !flags.fin() {
            let (seq, ack) = (conn.snd_nxt, conn.rcv_nxt);
            self.replies
                .push(reply(seq, ack, TcpFlags::ACK, ts, 0, false));
        }
        if flags.fin() && !conn.fin_sent {
            conn.rcv_nxt += 1;
            conn.fin_sent = true;
            let (seq, ack) = (conn.snd_nxt, conn.rcv_nxt);
            conn.snd_nxt += 1;
            self.replies
                .push(reply(seq, ack, TcpFlags::FIN | TcpFlags::ACK, ts, 0, false));
        }
    }
}

impl FrameSender for DryRun {
    fn send(&mut self, out: &mut dyn FrameQueue) {
        for i in 0..out.frame_count() {
            let ip = &out.frame_with_headroom(i)[crate::engine::HEADROOM..];
            self.stats.frames += 1;
            self.stats.completed += 1;
            self.stats.bytes += ip.len() as u64;
            self.record(ip);
            self.answer(ip);
        }
    }

    fn poll(&mut self) {}

    fn stats(&self) -> SenderStats {
        self.stats
    }

    fn resolve_next_hop(&mut self, _dst: IpAddr, _wait: Duration) -> Option<MacAddr> {
        None
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!(
                "dry run: frames written to {} (raw IP pcap), a simulated target answers",
                p.display()
            ),
            None => "dry run: frames counted, a simulated target answers".into(),
        }
    }

    fn take_replies(&mut self, on_reply: &mut dyn FnMut(ReplyRecord<'_>)) -> usize {
        let n = self.replies.len();
        for r in self.replies.drain(..) {
            on_reply(match &r {
                Answer::V4(r) => ReplyRecord::V4(r),
                Answer::V6(r) => ReplyRecord::V6(r),
            });
        }
        n
    }
}

impl Drop for DryRun {
    fn drop(&mut self) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            tracing::error!(error = %e, "finishing the dry run's pcap failed");
        }
    }
}
