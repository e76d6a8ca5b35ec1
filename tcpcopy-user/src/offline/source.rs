//! Offline mode's packet source: client packets out of a capture file, at
//! their recorded pace (or faster, or as fast as the replay allows).
//!
//! Each record is taken down to its IPv4 or IPv6 TCP packet; only packets
//! to an online endpoint of `-x` go on (the recorded server's replies and
//! everything else are counted and dropped). Checksums are the engine's
//! intake's business (`engine::intake`), as for live capture: those left
//! for the NIC by the capturing host's transmit offload are completed
//! there, damaged packets dropped.
//!
//! Timing: a packet is due at the replay start plus its offset in the
//! recording, with idle gaps shortened to `-I` and the result divided by
//! `-a`. When the replay cannot keep that pace (the target is slow, the
//! engine's buffers are full and the worker stops reading), the rest of
//! the recording is shifted later rather than sent in a burst, so sessions
//! keep their relative timing; how far behind the recording this put the
//! replay is reported. `--top-speed` drops the recorded times: packets are
//! due at once and the worker's flow control sets the pace.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    link::{LinkLayer, NotIp},
    reader::{CaptureFileError, CaptureReader, ReaderStats},
};
use crate::{
    clock,
    engine::TransferRule,
    packet::{Address, PacketError, TcpPacket, family::ipv6_strip_extensions},
    worker::PacketSource,
};

/// A packet this late is not sent late: the rest of the recording moves.
const LATE_SLACK_NS: u64 = 20_000_000;
/// A jump forward in recorded time longer than this is a break in the
/// recording (a corrupted timestamp, files of different days merged), not
/// a pause to wait out: replay goes straight on.
const MAX_GAP_NS: u64 = 86_400 * 1_000_000_000;
/// The session count forgets closed flows (kept to tell a retransmitted
/// FIN from a new session) once the table holds this many...
const FLOW_TABLE_PRUNE_AT: usize = 1 << 20;
/// ... and they closed this long ago in recorded time.
const CLOSED_FLOW_MEMORY_NS: u64 = 120 * 1_000_000_000;

/// How the recording's time maps onto the replay's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// `-a`: the recording plays this many times faster.
    pub speed: f64,
    /// `-I`: idle gaps in the recording longer than this are cut to it.
    pub max_idle: Option<Duration>,
    /// `--top-speed`: no recorded timing at all.
    pub top_speed: bool,
    /// `-T`: the file is replayed this many times.
    pub rounds: u16,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            speed: 1.0,
            max_idle: None,
            top_speed: false,
            rounds: 1,
        }
    }
}

/// What reading the file has found, shared with the progress display.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub reader: ReaderStats,
    /// Records read (every round).
    pub frames: u64,
    /// Client packets handed to the replay.
    pub client_packets: u64,
    /// The recorded server's packets (replies), not replayed.
    pub server_packets: u64,
    /// TCP packets of neither side of a `-x` rule.
    pub other_tcp: u64,
    /// Frames of other protocols (ARP, ...).
    pub not_ip: u64,
    /// IPv6 packets (all of them; those of an IPv6 rule are replayed).
    pub ipv6: u64,
    /// IPv6 packets not replayed because no `-x` rule has an IPv6 target.
    pub ipv6_without_rule: u64,
    /// IP packets that are not whole TCP segments (other protocols,
    /// fragments, bad headers).
    pub not_tcp: u64,
    /// Packets cut short by the capture's snapshot length.
    pub truncated: u64,
    /// Frames of a link type offline mode does not read.
    pub unsupported_link: u64,
    /// Client sessions in the file (counted in the first round).
    pub sessions_in_file: u64,
    /// The round being read (0-based) and how many there are.
    pub round: u16,
    pub rounds: u16,
    /// Bytes of the file read in this round, and its size.
    pub file_offset: u64,
    pub file_size: u64,
    /// Recording time covered so far in this round (breaks in the
    /// recording left out).
    pub recording_pos: Duration,
    /// Forward jumps in recorded time of more than a day, not waited out.
    pub time_jumps: u64,
    /// How far behind the recording's pace the replay fell (offline
    /// replay waits rather than bursting).
    pub behind: Duration,
    /// Reading stopped on this error (the replay of what was read goes on).
    pub error: Option<String>,
    /// Every round has been read.
    pub finished: bool,
}

/// Client packets out of a capture file.
pub struct OfflineSource {
    path: PathBuf,
    reader: CaptureReader<File>,
    rules: Vec<TransferRule>,
    timing: Timing,
    /// The packet handed out next, its due time and round.
    pending: Vec<u8>,
    pending_due: Option<u64>,
    round: u16,
    /// Replay start of this round (CLOCK_MONOTONIC ns), plus the shift
    /// accumulated by falling behind.
    start_ns: u64,
    shift_ns: u64,
    /// Whether this round has seen a packet, and the latest recorded time.
    started: bool,
    last_ts: u64,
    /// Recorded time covered in this round (gaps summed, breaks left out).
    recording_ns: u64,
    /// Replay offset of the latest packet (before the shift), ns.
    offset_ns: u64,
    /// Sessions counted: client flow -> its SYN's sequence number (first
    /// round; a flow leaves at its FIN or RST).
    flows: Flows,
    /// Whether a rule has an IPv6 target (else IPv6 packets are counted
    /// and left alone).
    ipv6_rules: bool,
    /// Where an IPv6 packet's extension headers are stripped to classify it.
    strip: Vec<u8>,
    report: FileReport,
    shared: Arc<Mutex<FileReport>>,
    /// `--compare`: production's server packets are handed out too (the
    /// engine compares the target's responses with them).
    server_packets: bool,
}

/// Client flows of one family: (client address and port, server address
/// and port) -> what the session count remembers.
type FlowMap<A> = HashMap<(<A as Address>::Packed, <A as Address>::Packed), Flow>;

/// The session count's flows, by family.
#[derive(Default)]
struct Flows {
    v4: FlowMap<[u8; 4]>,
    v6: FlowMap<[u8; 16]>,
}

/// What reading needs of an IP family.
trait FileFamily: Address {
    fn flows(f: &mut Flows) -> &mut FlowMap<Self>;
}

impl FileFamily for [u8; 4] {
    fn flows(f: &mut Flows) -> &mut FlowMap<Self> {
        &mut f.v4
    }
}

impl FileFamily for [u8; 16] {
    fn flows(f: &mut Flows) -> &mut FlowMap<Self> {
        &mut f.v6
    }
}

fn flow_key<A: Address>(p: &TcpPacket<&[u8], A>) -> (A::Packed, A::Packed) {
    (
        p.src_addr().pack(p.src_port(), 0),
        p.dst_addr().pack(p.dst_port(), 0),
    )
}

/// Where a packet of the file goes.
enum Sort {
    /// To the replay (a client packet, or production's answer for
    /// `--compare`): these bytes.
    Replay,
    /// Counted, not replayed.
    Skip,
}

/// The part of the source that sorts packets (borrowed apart from the
/// reader, whose record it reads).
struct Sorter<'a> {
    rules: &'a [TransferRule],
    report: &'a mut FileReport,
    flows: &'a mut Flows,
    strip: &'a mut Vec<u8>,
    server_packets: bool,
    first_round: bool,
}

impl Sorter<'_> {
    /// Sorts the TCP packet `ip` of family `A` recorded at `ts` (`short`:
    /// the capture cut the record); the bytes to replay are `ip` up to the
    /// packet's own length.
    fn sort<A: FileFamily>(&mut self, ip: &[u8], ts: u64, short: bool) -> (Sort, usize) {
        let r = &mut *self.report;
        let (packet, len) = match TcpPacket::<_, A>::new_checked(ip) {
            Ok(p) => {
                let len = p.as_bytes().len();
                (p, len)
            }
            // IPv6 with extension headers: sorted by the packet without
            // them, replayed as recorded (the engine strips them itself).
            Err(PacketError::ExtensionHeaders) => {
                match ipv6_strip_extensions(ip, self.strip) {
                    Ok(_) => {}
                    Err(_) => {
                        r.not_tcp += 1;
                        return (Sort::Skip, 0);
                    }
                }
                let len = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                match TcpPacket::<_, A>::new_checked(&self.strip[..]) {
                    Ok(p) => (p, len.min(ip.len())),
                    Err(_) => {
                        r.not_tcp += 1;
                        return (Sort::Skip, 0);
                    }
                }
            }
            Err(PacketError::Truncated | PacketError::BadTotalLength) if short => {
                r.truncated += 1;
                return (Sort::Skip, 0);
            }
            Err(_) => {
                r.not_tcp += 1;
                return (Sort::Skip, 0);
            }
        };
        let to_online = self
            .rules
            .iter()
            .any(|rule| rule.matches(packet.dst_addr(), packet.dst_port()));
        if !to_online {
            if self
                .rules
                .iter()
                .any(|rule| rule.matches(packet.src_addr(), packet.src_port()))
            {
                r.server_packets += 1;
                if self.server_packets {
                    return (Sort::Replay, len);
                }
            } else {
                r.other_tcp += 1;
            }
            return (Sort::Skip, 0);
        }
        r.client_packets += 1;
        if self.first_round {
            count_session(A::flows(self.flows), &packet, ts, &mut r.sessions_in_file);
        }
        (Sort::Replay, len)
    }
}

impl OfflineSource {
    /// Opens `path` and reads its header; errors name the file.
    pub fn open(path: &Path, rules: Vec<TransferRule>, timing: Timing) -> Result<Self, OpenError> {
        let (reader, size) = open_reader(path)?;
        if let Some(lt) = reader.pcap_linktype()
            && LinkLayer::from_linktype(lt).is_none()
        {
            return Err(OpenError::Link {
                path: path.to_owned(),
                linktype: lt,
            });
        }
        let report = FileReport {
            rounds: timing.rounds.max(1),
            file_size: size,
            ..FileReport::default()
        };
        Ok(Self {
            path: path.to_owned(),
            reader,
            ipv6_rules: rules.iter().any(|r| r.target.is_ipv6()),
            rules,
            timing: Timing {
                rounds: timing.rounds.max(1),
                speed: if timing.speed > 0.0 {
                    timing.speed
                } else {
                    1.0
                },
                ..timing
            },
            pending: Vec::with_capacity(65_536),
            pending_due: None,
            round: 0,
            start_ns: clock::now_ns(),
            shift_ns: 0,
            started: false,
            last_ts: 0,
            recording_ns: 0,
            offset_ns: 0,
            flows: Flows::default(),
            strip: Vec::new(),
            shared: Arc::new(Mutex::new(report.clone())),
            server_packets: false,
            report,
        })
    }

    /// The report, shared (updated after every batch).
    /// Hands out production's server packets too (`--compare`).
    pub fn with_server_packets(mut self) -> Self {
        self.server_packets = true;
        self
    }

    pub fn report(&self) -> Arc<Mutex<FileReport>> {
        self.shared.clone()
    }

    fn publish(&mut self) {
        self.report.reader = self.reader.stats().clone();
        self.report.file_offset = self.reader.offset();
        self.report.round = self.round;
        self.report.behind = Duration::from_nanos(self.shift_ns);
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.report.clone();
    }

    /// Reads on to the next client packet and makes it pending, with its
    /// due time. `false`: no more packets in any round.
    fn fill_pending(&mut self, now_ns: u64) -> bool {
        loop {
            match self.read_client_packet() {
                Ok(Some(ts)) => {
                    self.pending_due = Some(self.due(ts, now_ns));
                    return true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot read on; replaying what was read");
                    self.report.error = Some(e.to_string());
                    self.report.finished = true;
                    return false;
                }
            }
            // The end of this round.
            if self.round + 1 >= self.timing.rounds {
                self.report.finished = true;
                return false;
            }
            match open_reader(&self.path) {
                Ok((reader, _)) => {
                    self.reader = reader;
                    self.round += 1;
                    self.started = false;
                    self.recording_ns = 0;
                    self.offset_ns = 0;
                    self.shift_ns = 0;
                    self.start_ns = now_ns;
                    self.flows = Flows::default();
                }
                Err(e) => {
                    self.report.error = Some(e.to_string());
                    self.report.finished = true;
                    return false;
                }
            }
        }
    }

    /// The replay time of a packet recorded at `ts`.
    fn due(&mut self, ts: u64, now_ns: u64) -> u64 {
        if !self.started {
            self.started = true;
            self.last_ts = ts;
            self.start_ns = now_ns;
            self.shift_ns = 0;
            return now_ns;
        }
        // A record older than the latest (a merged file) goes with it.
        let mut gap = ts.saturating_sub(self.last_ts);
        self.last_ts = self.last_ts.max(ts);
        if gap > MAX_GAP_NS {
            self.report.time_jumps += 1;
            gap = 0;
        }
        self.recording_ns = self.recording_ns.saturating_add(gap);
        self.report.recording_pos = Duration::from_nanos(self.recording_ns);
        if self.timing.top_speed {
            return now_ns;
        }
        if let Some(max) = self.timing.max_idle {
            gap = gap.min(u64::try_from(max.as_nanos()).unwrap_or(u64::MAX));
        }
        // f64 to u64 saturates; the sums saturate too (a due time past the
        // end of u64 is simply never).
        let scaled = (gap as f64 / self.timing.speed) as u64;
        self.offset_ns = self.offset_ns.saturating_add(scaled);
        let due = self
            .start_ns
            .saturating_add(self.offset_ns)
            .saturating_add(self.shift_ns);
        if due.saturating_add(LATE_SLACK_NS) < now_ns {
            self.shift_ns = self.shift_ns.saturating_add(now_ns - due);
            return now_ns;
        }
        due
    }

    /// The next record that is a client packet, copied into `pending`
    /// (its recording time returned); `None` at the end of the file.
    fn read_client_packet(&mut self) -> Result<Option<u64>, CaptureFileError> {
        loop {
            let Some(rec) = self.reader.next_record()? else {
                return Ok(None);
            };
            let r = &mut self.report;
            r.frames += 1;
            let Some(link) = LinkLayer::from_linktype(rec.linktype) else {
                r.unsupported_link += 1;
                continue;
            };
            let ip = match link.ip(rec.data) {
                Ok(ip) => ip,
                Err(NotIp::OtherProtocol) => {
                    r.not_ip += 1;
                    continue;
                }
                Err(NotIp::Short) => {
                    if (rec.data.len() as u32) < rec.orig_len {
                        r.truncated += 1;
                    } else {
                        r.not_ip += 1;
                    }
                    continue;
                }
            };
            let short = (rec.data.len() as u32) < rec.orig_len;
            let ts = rec.ts_ns;
            let mut sorter = Sorter {
                rules: &self.rules,
                report: r,
                flows: &mut self.flows,
                strip: &mut self.strip,
                server_packets: self.server_packets,
                first_round: self.round == 0,
            };
            let (sort, len) = match ip.first().map(|b| b >> 4) {
                Some(4) => sorter.sort::<[u8; 4]>(ip, ts, short),
                Some(6) => {
                    sorter.report.ipv6 += 1;
                    if !self.ipv6_rules {
                        sorter.report.ipv6_without_rule += 1;
                        continue;
                    }
                    sorter.sort::<[u8; 16]>(ip, ts, short)
                }
                _ => {
                    r.not_ip += 1;
                    continue;
                }
            };
            if let Sort::Replay = sort {
                self.pending.clear();
                self.pending.extend_from_slice(&ip[..len]);
                return Ok(Some(ts));
            }
        }
    }
}

/// What the session count remembers of a client flow.
#[derive(Clone, Copy, Debug)]
struct Flow {
    /// The SYN's sequence number (or one before the first data seen).
    isn: u32,
    /// Recorded time of its FIN or RST, once it closed.
    closed_at: Option<u64>,
}

/// Counts a new session at a SYN (not a retransmitted one) or at the first
/// data of a flow seen without its SYN. A closed flow is remembered for a
/// while, so a retransmitted FIN or data segment is not a new session.
fn count_session<A: Address>(
    flows: &mut FlowMap<A>,
    p: &TcpPacket<&[u8], A>,
    ts: u64,
    count: &mut u64,
) {
    let key = flow_key(p);
    let flags = p.flags();
    if flags.syn() {
        let isn = p.seq().0;
        let known = flows.get(&key).is_some_and(|f| f.isn == isn);
        if !known {
            *count += 1;
            flows.insert(
                key,
                Flow {
                    isn,
                    closed_at: None,
                },
            );
        }
        return;
    }
    if !p.payload().is_empty() && !flows.contains_key(&key) {
        if flows.len() >= FLOW_TABLE_PRUNE_AT {
            flows.retain(|_, f| {
                f.closed_at
                    .is_none_or(|at| ts.saturating_sub(at) < CLOSED_FLOW_MEMORY_NS)
            });
        }
        flows.insert(
            key,
            Flow {
                isn: p.seq().0.wrapping_sub(1),
                closed_at: None,
            },
        );
        *count += 1;
    }
    if (flags.fin() || flags.rst())
        && let Some(f) = flows.get_mut(&key)
    {
        f.closed_at.get_or_insert(ts);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the capture file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        source: CaptureFileError,
    },
    #[error(
        "{path}: link type {linktype} is not one offline mode reads (Ethernet, Linux cooked capture v1/v2, raw IP, BSD loopback)"
    )]
    Link { path: PathBuf, linktype: i32 },
}

fn open_reader(path: &Path) -> Result<(CaptureReader<File>, u64), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let reader = CaptureReader::new(file).map_err(|source| OpenError::Format {
        path: path.to_owned(),
        source,
    })?;
    Ok((reader, size))
}

impl PacketSource for OfflineSource {
    fn drain(&mut self, max: usize, on_packet: &mut dyn FnMut(u64, u16, &[u8])) -> usize {
        if self.report.finished && self.pending_due.is_none() {
            return 0;
        }
        let now = clock::now_ns();
        let mut n = 0;
        while n < max {
            if self.pending_due.is_none() && !self.fill_pending(now) {
                break;
            }
            let due = self.pending_due.expect("filled above");
            if due > now {
                break;
            }
            on_packet(due, self.round, &self.pending);
            self.pending_due = None;
            n += 1;
        }
        self.publish();
        n
    }

    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }

    fn dropped(&self) -> crate::worker::SourceDrops {
        // What the file held that is not replayed is in its report.
        crate::worker::SourceDrops::default()
    }

    fn finished(&self) -> bool {
        self.report.finished && self.pending_due.is_none()
    }

    fn flow_controlled(&self) -> bool {
        true
    }

    fn next_due_ns(&self) -> Option<u64> {
        self.pending_due
    }
}
