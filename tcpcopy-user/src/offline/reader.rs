//! Reading capture files: pcap (micro- or nanosecond timestamps, either byte
//! order) and pcapng (any number of sections and interfaces), parsed by
//! `pcap-parser`, streamed through one buffer so files of any size are read
//! in constant memory.
//!
//! Damage is survived, not fatal: a record that cannot be right (a length
//! past any snapshot length, a block whose trailing length disagrees) makes
//! the reader scan forward for the next place where records parse again
//! (for pcap: a plausible record header followed by another one or the end
//! of the file; for pcapng: a known block type whose two lengths agree and
//! which parses), counting the damage and the bytes skipped. A file cut off
//! in the middle of a record ends there, with the cut counted.

use std::io::{self, Read};

use pcap_parser::{
    Block, PcapError, nom,
    pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header},
    pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock},
    traits::PcapNGPacketBlock,
};

/// The largest packet record accepted (pcap caplen; pcapng block length is
/// allowed this plus room for options).
pub const MAX_RECORD: usize = 1 << 20;
const MAX_BLOCK: usize = MAX_RECORD + 64 * 1024;
/// Records up to this are accepted whatever the snapshot length says
/// (tcpdump's default snapshot length; some writers understate it).
const MIN_CAPLEN_LIMIT: usize = 262_144;
/// Past damage, give up after scanning this far without finding records.
const MAX_SCAN: usize = 64 << 20;
/// A record found while scanning past damage must be this close in time to
/// the last good one.
const MAX_RESYNC_JUMP_NS: u64 = 86_400 * 1_000_000_000;
const READ_CHUNK: usize = 256 * 1024;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
/// The section header's byte-order magic, as read in its own order.
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;
/// Interfaces described per section, at most (more are ignored: their
/// packets count as of undescribed interfaces).
const MAX_INTERFACES: usize = 1 << 16;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_NRB: u32 = 4;
const PCAPNG_ISB: u32 = 5;
const PCAPNG_EPB: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum CaptureFileError {
    #[error("reading: {0}")]
    Io(#[from] io::Error),
    #[error("empty file: not a pcap or pcapng capture")]
    Empty,
    #[error(
        "not a pcap or pcapng capture (it starts with {0:02x?}; expected a pcap magic such as d4 c3 b2 a1 or a pcapng section header 0a 0d 0d 0a)"
    )]
    NotCapture(Vec<u8>),
    #[error("damaged {0} header: {1}")]
    BadHeader(&'static str, String),
    #[error(
        "no packet records found in the {scanned} bytes after the damage at offset {offset}: the file is damaged beyond repair"
    )]
    Lost { offset: u64, scanned: usize },
}

/// What reading a file has found besides packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Packet records read.
    pub records: u64,
    /// Places where the file was damaged (each followed by a scan forward).
    pub damaged: u64,
    /// Bytes skipped to get past damage.
    pub skipped_bytes: u64,
    /// Bytes of an incomplete last record (the file was cut off).
    pub cut_bytes: u64,
    /// pcapng packets of an interface that was never described.
    pub unknown_interface: u64,
}

/// One packet record. `data` is what was captured (`orig_len` may be more).
#[derive(Debug)]
pub struct Record<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The record's link type (LINKTYPE_* value).
    pub linktype: i32,
    pub data: &'a [u8],
    pub orig_len: u32,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    units: u64,
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        /// Records longer than this are damage.
        max_caplen: usize,
        linktype: i32,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// What one parse step found.
enum Found {
    /// A packet: `data` at `buf[start..start + len]`.
    Packet {
        start: usize,
        len: usize,
        ts_ns: u64,
        linktype: i32,
        orig_len: u32,
    },
    Nothing,
    End,
}

/// A capture file, read record by record.
pub struct CaptureReader<R> {
    input: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[0]`.
    base: u64,
    format: Format,
    last_ts_ns: u64,
    stats: ReaderStats,
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(input: R) -> Result<Self, CaptureFileError> {
        let mut r = Self {
            input,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            eof: false,
            base: 0,
            format: Format::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
            },
            last_ts_ns: 0,
            stats: ReaderStats::default(),
        };
        r.ensure(24)?;
        let head = r.available();
        if head.is_empty() {
            return Err(CaptureFileError::Empty);
        }
        if head.len() >= 4 && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == PCAPNG_SHB
        {
            r.ensure(MAX_BLOCK.min(64 * 1024))?;
            let avail = r.available();
            let (used, big_endian) = match parse_sectionheaderblock(avail) {
                Ok((rest, shb)) => (avail.len() - rest.len(), shb.big_endian()),
                Err(e) => return Err(CaptureFileError::BadHeader("pcapng section", brief(&e))),
            };
            r.pos += used;
            r.format = Format::PcapNg {
                big_endian,
                interfaces: Vec::new(),
            };
            return Ok(r);
        }
        match parse_pcap_header(head) {
            Ok((_, h)) => {
                if h.is_modified_format() {
                    return Err(CaptureFileError::BadHeader(
                        "pcap",
                        "the \"modified\" (Kuznetzov) pcap format is not supported".into(),
                    ));
                }
                r.format = Format::Pcap {
                    big_endian: h.is_bigendian(),
                    nanos: h.is_nanosecond_precision(),
                    max_caplen: (h.snaplen as usize).clamp(MIN_CAPLEN_LIMIT, MAX_RECORD),
                    linktype: h.network.0,
                };
                r.pos = 24;
                Ok(r)
            }
            Err(nom::Err::Incomplete(_)) if head.len() < 24 && r.eof => Err(
                CaptureFileError::BadHeader("pcap", "the file ends inside its header".into()),
            ),
            Err(_) => Err(CaptureFileError::NotCapture(
                head[..head.len().min(8)].to_vec(),
            )),
        }
    }

    /// What has been found besides packets so far.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The link type of a pcap file (pcapng: per interface, `None`).
    pub fn pcap_linktype(&self) -> Option<i32> {
        match self.format {
            Format::Pcap { linktype, .. } => Some(linktype),
            Format::PcapNg { .. } => None,
        }
    }

    pub fn is_pcapng(&self) -> bool {
        matches!(self.format, Format::PcapNg { .. })
    }

    /// The next packet record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureFileError> {
        loop {
            let found = match self.format {
                Format::Pcap { .. } => self.step_pcap()?,
                Format::PcapNg { .. } => self.step_pcapng()?,
            };
            match found {
                Found::Nothing => continue,
                Found::End => return Ok(None),
                Found::Packet {
                    start,
                    len,
                    ts_ns,
                    linktype,
                    orig_len,
                } => {
                    self.stats.records += 1;
                    self.last_ts_ns = ts_ns;
                    return Ok(Some(Record {
                        ts_ns,
                        linktype,
                        data: &self.buf[start..start + len],
                        orig_len,
                    }));
                }
            }
        }
    }

    // ----- the buffer -------------------------------------------------------

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Makes at least `n` unread bytes available unless the file ends
    /// first; returns whether they are.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.pos < n && !self.eof {
            if self.buf.len() - self.pos < n.max(READ_CHUNK) {
                // Move the unread bytes to the front (and grow if a record
                // is bigger than the buffer).
                self.buf.copy_within(self.pos..self.end, 0);
                self.base += self.pos as u64;
                self.end -= self.pos;
                self.pos = 0;
                let want = n.max(READ_CHUNK) + READ_CHUNK;
                if self.buf.len() < want {
                    self.buf.resize(want, 0);
                }
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.pos >= n)
    }

    /// The rest of the file is an incomplete record: count it and stop.
    fn cut(&mut self) -> Found {
        self.stats.cut_bytes += (self.end - self.pos) as u64;
        self.pos = self.end;
        Found::End
    }

    fn u32_at(&self, at: usize, big_endian: bool) -> u32 {
        let b = [
            self.buf[self.pos + at],
            self.buf[self.pos + at + 1],
            self.buf[self.pos + at + 2],
            self.buf[self.pos + at + 3],
        ];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    // ----- damage -------------------------------------------------------------

    /// Past damage at the current position: skips to where records parse
    /// again, or to the end of the file.
    fn resync(&mut self) -> Result<(), CaptureFileError> {
        self.stats.damaged += 1;
        match self.find_next()? {
            Some(skip) => {
                self.stats.skipped_bytes += skip as u64;
                self.pos += skip;
            }
            None => {
                self.stats.skipped_bytes += (self.end - self.pos) as u64;
                self.pos = self.end;
            }
        }
        Ok(())
    }

    /// A record that runs past the end of the file: the file was cut off
    /// there, unless records parse again further on (then it was damage).
    fn cut_or_damage(&mut self) -> Result<Found, CaptureFileError> {
        match self.find_next()? {
            Some(skip) => {
                self.stats.damaged += 1;
                self.stats.skipped_bytes += skip as u64;
                self.pos += skip;
                Ok(Found::Nothing)
            }
            None => Ok(self.cut()),
        }
    }

    /// How far past the current position records parse again (`None`: not
    /// before the end of the file).
    fn find_next(&mut self) -> Result<Option<usize>, CaptureFileError> {
        let damage_at = self.offset();
        let mut skip = 1;
        loop {
            if skip > MAX_SCAN {
                return Err(CaptureFileError::Lost {
                    offset: damage_at,
                    scanned: skip,
                });
            }
            let found = match self.format {
                Format::Pcap { .. } => self.pcap_resumes_at(skip)?,
                Format::PcapNg { big_endian, .. } => self.pcapng_resumes_at(skip, big_endian)?,
            };
            match found {
                Some(true) => return Ok(Some(skip)),
                Some(false) => skip += 1,
                None => return Ok(None),
            }
        }
    }

    // ----- pcap -------------------------------------------------------------

    fn step_pcap(&mut self) -> Result<Found, CaptureFileError> {
        let Format::Pcap {
            big_endian,
            nanos,
            linktype,
            ..
        } = self.format
        else {
            unreachable!("pcap step on a pcapng file")
        };
        if !self.ensure(16)? {
            if self.end == self.pos {
                return Ok(Found::End);
            }
            return self.cut_or_damage();
        }
        if self.plausible_pcap_header(0, false).is_none() {
            self.resync()?;
            return Ok(Found::Nothing);
        }
        let avail = self.available();
        let n = avail.len();
        let parsed = if big_endian {
            parse_pcap_frame_be(avail)
        } else {
            parse_pcap_frame(avail)
        };
        match parsed {
            Ok((rest, rec)) => {
                let ts_ns = u64::from(rec.ts_sec) * 1_000_000_000
                    + u64::from(rec.ts_usec) * if nanos { 1 } else { 1000 };
                let (len, orig_len) = (rec.caplen as usize, rec.origlen);
                let start = self.pos + 16;
                self.pos += n - rest.len();
                Ok(Found::Packet {
                    start,
                    len,
                    ts_ns,
                    linktype,
                    orig_len,
                })
            }
            Err(nom::Err::Incomplete(needed)) => {
                let more = match needed {
                    nom::Needed::Size(s) => s.get(),
                    nom::Needed::Unknown => 1,
                };
                if !self.ensure(n + more)? {
                    return self.cut_or_damage();
                }
                Ok(Found::Nothing)
            }
            Err(_) => {
                self.resync()?;
                Ok(Found::Nothing)
            }
        }
    }

    /// Whether a pcap record header at `at` (unread-relative, 16 bytes
    /// available) could be real; returns its caplen. `near_in_time`: it
    /// must also be within a day of the last record (when scanning).
    fn plausible_pcap_header(&self, at: usize, near_in_time: bool) -> Option<usize> {
        let Format::Pcap {
            big_endian,
            nanos,
            max_caplen,
            ..
        } = self.format
        else {
            return None;
        };
        let sec = self.u32_at(at, big_endian);
        let frac = self.u32_at(at + 4, big_endian);
        let caplen = self.u32_at(at + 8, big_endian);
        let origlen = self.u32_at(at + 12, big_endian);
        let frac_max = if nanos { 1_000_000_000 } else { 1_000_000 };
        let ts_ns = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nanos { 1 } else { 1000 };
        let close_in_time = !near_in_time
            || self.stats.records == 0
            || ts_ns.abs_diff(self.last_ts_ns) <= MAX_RESYNC_JUMP_NS;
        (caplen as usize <= max_caplen
            && origlen >= caplen
            && origlen as usize <= MAX_BLOCK * 16
            && frac < frac_max
            && close_in_time)
            .then_some(caplen as usize)
    }

    /// Whether pcap records resume `skip` bytes on: a plausible header
    /// whose record is followed by another plausible header or ends the
    /// file. `None`: the file ends before a header fits.
    fn pcap_resumes_at(&mut self, skip: usize) -> Result<Option<bool>, CaptureFileError> {
        if !self.ensure(skip + 16)? {
            return Ok(None);
        }
        let Some(caplen) = self.plausible_pcap_header(skip, true) else {
            return Ok(Some(false));
        };
        let next = skip + 16 + caplen;
        let confirmed = if self.ensure(next + 16)? {
            self.plausible_pcap_header(next, true).is_some()
        } else {
            self.end - self.pos == next
        };
        Ok(Some(confirmed))
    }

    // ----- pcapng -----------------------------------------------------------

    fn step_pcapng(&mut self) -> Result<Found, CaptureFileError> {
        let Format::PcapNg { big_endian, .. } = self.format else {
            unreachable!("pcapng step on a pcap file")
        };
        if !self.ensure(12)? {
            if self.end == self.pos {
                return Ok(Found::End);
            }
            return self.cut_or_damage();
        }
        // A section header carries its own byte order (its magic at 8).
        let shb = self.u32_at(0, false) == PCAPNG_SHB;
        let declared_be = if shb {
            self.u32_at(8, false) != PCAPNG_BOM
        } else {
            big_endian
        };
        let declared = self.u32_at(4, declared_be) as usize;
        if !(12..=MAX_BLOCK).contains(&declared) || !declared.is_multiple_of(4) {
            self.resync()?;
            return Ok(Found::Nothing);
        }
        if !self.ensure(declared)? {
            return self.cut_or_damage();
        }
        let avail = &self.buf[self.pos..self.end];
        let n = avail.len();
        let parsed = if big_endian {
            parse_block_be(avail)
        } else {
            parse_block_le(avail)
        };
        enum Seen {
            Section(bool),
            Interface(Interface),
            Packet {
                iface: Option<u32>,
                ts: u64,
                data_off: usize,
                len: usize,
                orig_len: u32,
            },
            Other,
        }
        let base_ptr = self.buf.as_ptr() as usize;
        let seen = match parsed {
            Ok((rest, block)) => {
                let used = n - rest.len();
                let seen = match block {
                    Block::SectionHeader(shb) => Seen::Section(shb.big_endian()),
                    Block::InterfaceDescription(idb) => Seen::Interface(Interface {
                        linktype: idb.linktype.0,
                        units: ts_units(idb.if_tsresol).unwrap_or(1_000_000),
                        // pcap-parser reads the offset option little-endian
                        // whatever the section's byte order.
                        offset_s: if big_endian {
                            idb.ts_offset().swap_bytes()
                        } else {
                            idb.ts_offset()
                        },
                    }),
                    Block::EnhancedPacket(epb) => {
                        let data = epb.packet_data();
                        Seen::Packet {
                            iface: Some(epb.if_id),
                            ts: (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low),
                            data_off: data.as_ptr() as usize - base_ptr,
                            len: data.len(),
                            orig_len: epb.orig_len(),
                        }
                    }
                    Block::SimplePacket(spb) => {
                        let data = spb.packet_data();
                        Seen::Packet {
                            iface: None,
                            ts: 0,
                            data_off: data.as_ptr() as usize - base_ptr,
                            len: data.len(),
                            orig_len: spb.orig_len(),
                        }
                    }
                    _ => Seen::Other,
                };
                self.pos += used;
                seen
            }
            // The whole declared block is buffered: a parser still wanting
            // more means lengths inside it disagree with it. Damage.
            Err(_) => {
                self.resync()?;
                return Ok(Found::Nothing);
            }
        };
        let Format::PcapNg {
            big_endian,
            interfaces,
        } = &mut self.format
        else {
            unreachable!()
        };
        match seen {
            Seen::Section(be) => {
                *big_endian = be;
                interfaces.clear();
                Ok(Found::Nothing)
            }
            Seen::Interface(i) => {
                if interfaces.len() < MAX_INTERFACES {
                    interfaces.push(i);
                }
                Ok(Found::Nothing)
            }
            Seen::Other => Ok(Found::Nothing),
            Seen::Packet {
                iface,
                ts,
                data_off,
                len,
                orig_len,
            } => {
                let Some(&i) = interfaces.get(iface.unwrap_or(0) as usize) else {
                    self.stats.unknown_interface += 1;
                    return Ok(Found::Nothing);
                };
                let ts_ns = match iface {
                    // A simple packet block has no time: it goes with the last.
                    None => self.last_ts_ns,
                    Some(_) => {
                        let ns = u128::from(ts) * 1_000_000_000 / u128::from(i.units);
                        let ns = ns as i128 + i128::from(i.offset_s) * 1_000_000_000;
                        ns.clamp(0, i128::from(u64::MAX)) as u64
                    }
                };
                Ok(Found::Packet {
                    start: data_off,
                    len,
                    ts_ns,
                    linktype: i.linktype,
                    orig_len,
                })
            }
        }
    }

    /// Whether pcapng blocks resume `skip` bytes on: a known block type
    /// whose two lengths agree and which parses. `None`: the file ends
    /// before a block header fits.
    fn pcapng_resumes_at(
        &mut self,
        skip: usize,
        big_endian: bool,
    ) -> Result<Option<bool>, CaptureFileError> {
        if !self.ensure(skip + 12)? {
            return Ok(None);
        }
        let kind = self.u32_at(skip, big_endian);
        let len = self.u32_at(skip + 4, big_endian) as usize;
        let known = matches!(
            kind,
            PCAPNG_SHB | PCAPNG_IDB | PCAPNG_SPB | PCAPNG_NRB | PCAPNG_ISB | PCAPNG_EPB
        );
        if !known
            || !(12..=MAX_BLOCK).contains(&len)
            || !len.is_multiple_of(4)
            || !self.ensure(skip + len)?
            || self.u32_at(skip + len - 4, big_endian) as usize != len
        {
            return Ok(Some(false));
        }
        let candidate = &self.buf[self.pos + skip..self.end];
        let ok = if kind == PCAPNG_SHB {
            parse_sectionheaderblock(candidate).is_ok()
        } else if big_endian {
            parse_block_be(candidate).is_ok()
        } else {
            parse_block_le(candidate).is_ok()
        };
        Ok(Some(ok))
    }
}

/// Timestamp units per second of a pcapng `if_tsresol` value: a power of
/// ten, or of two when the top bit is set; `None` when it does not fit.
fn ts_units(resol: u8) -> Option<u64> {
    let units = if resol & 0x80 != 0 {
        1u64.checked_shl(u32::from(resol & 0x7f))
    } else {
        10u64.checked_pow(u32::from(resol))
    };
    units.filter(|&u| u > 0)
}

/// A short description of a parse error (no data dump).
fn brief(e: &nom::Err<PcapError<&[u8]>>) -> String {
    match e {
        nom::Err::Incomplete(_) => "the file ends inside it".into(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::NomError(_, kind) => format!("{kind:?}"),
            PcapError::HeaderNotRecognized => "byte-order magic not recognized".into(),
            other => format!("{:?}", other.to_owned_vec()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::writer::{LINKTYPE_ETHERNET, PcapNgWriter, PcapWriter};

    /// Frames whose bytes say which they are.
    fn frames(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| (0..60 + i * 7).map(|b| (b + i) as u8).collect())
            .collect()
    }

    const T0: u64 = 1_700_000_000_123_456_000;

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 65_535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(T0 + i as u64 * 1_000_000, f, f.len()).unwrap();
        }
        w.into_inner()
    }

    fn pcapng(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = PcapNgWriter::new(Vec::new(), 1, 65_535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(T0 + i as u64 * 1_000_001, f, f.len()).unwrap();
        }
        w.into_inner()
    }

    /// Everything a reader yields: (time, link type, bytes).
    fn read_all(bytes: &[u8]) -> (Vec<(u64, i32, Vec<u8>)>, ReaderStats) {
        let mut r = CaptureReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.ts_ns, rec.linktype, rec.data.to_vec()));
        }
        (out, r.stats().clone())
    }

    #[test]
    fn pcap_records_come_back_with_their_times() {
        let f = frames(5);
        let (got, stats) = read_all(&pcap(&f));
        assert_eq!(got.len(), 5);
        for (i, (ts, lt, data)) in got.iter().enumerate() {
            assert_eq!(*ts, T0 + i as u64 * 1_000_000);
            assert_eq!(*lt, 1);
            assert_eq!(data, &f[i]);
        }
        assert_eq!(stats.records, 5);
        assert_eq!(
            (stats.damaged, stats.skipped_bytes, stats.cut_bytes),
            (0, 0, 0)
        );
    }

    #[test]
    fn big_endian_nanosecond_pcap() {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65_535u32.to_be_bytes());
        b.extend_from_slice(&113u32.to_be_bytes());
        for (sec, nsec) in [(10u32, 999_999_999u32), (11, 5)] {
            b.extend_from_slice(&sec.to_be_bytes());
            b.extend_from_slice(&nsec.to_be_bytes());
            b.extend_from_slice(&4u32.to_be_bytes());
            b.extend_from_slice(&4u32.to_be_bytes());
            b.extend_from_slice(&[1, 2, 3, 4]);
        }
        let (got, _) = read_all(&b);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 10_999_999_999);
        assert_eq!(got[1].0, 11_000_000_005);
        assert_eq!(got[0].1, 113);
        assert_eq!(got[1].2, vec![1, 2, 3, 4]);
    }

    #[test]
    fn pcapng_records_come_back_with_their_times() {
        let f = frames(4);
        let bytes = pcapng(&f);
        let r = CaptureReader::new(&bytes[..]).unwrap();
        assert!(r.is_pcapng());
        let (got, stats) = read_all(&bytes);
        assert_eq!(got.len(), 4);
        for (i, (ts, lt, data)) in got.iter().enumerate() {
            assert_eq!(*ts, T0 + i as u64 * 1_000_001, "nanosecond resolution");
            assert_eq!(*lt, 1);
            assert_eq!(data, &f[i], "padding stripped");
        }
        assert_eq!(stats.damaged, 0);
    }

    #[test]
    fn garbage_between_records_is_skipped_and_counted() {
        let f = frames(6);
        for (name, clean, split) in [
            (
                "pcap",
                pcap(&f),
                24 + 3 * 16 + f[..3].iter().map(Vec::len).sum::<usize>(),
            ),
            (
                "pcapng",
                pcapng(&f),
                28 + 32
                    + f[..3]
                        .iter()
                        .map(|x| 32 + x.len().div_ceil(4) * 4)
                        .sum::<usize>(),
            ),
        ] {
            for garbage_len in [1usize, 7, 100, 5000] {
                // Deterministic junk, with bytes that look like lengths.
                let junk: Vec<u8> = (0..garbage_len)
                    .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] | 0x80)
                    .collect();
                let mut bytes = clean[..split].to_vec();
                bytes.extend_from_slice(&junk);
                bytes.extend_from_slice(&clean[split..]);
                let (got, stats) = read_all(&bytes);
                let back: Vec<usize> = got.iter().map(|g| g.2.len()).collect();
                let want: Vec<usize> = f.iter().map(Vec::len).collect();
                assert_eq!(
                    back, want,
                    "{name} with {garbage_len} bytes of garbage: every record back"
                );
                assert!(got.iter().zip(&f).all(|(g, f)| &g.2 == f), "{name}");
                assert_eq!(stats.damaged, 1, "{name} {garbage_len}");
                assert_eq!(stats.skipped_bytes, garbage_len as u64, "{name}");
            }
        }
    }

    #[test]
    fn a_record_overwritten_with_garbage_costs_only_itself() {
        let f = frames(6);
        let mut bytes = pcap(&f);
        // Overwrite record 2's header with 0xff: a caplen of 4 GiB.
        let at = 24 + 2 * 16 + f[..2].iter().map(Vec::len).sum::<usize>();
        bytes[at..at + 16].fill(0xff);
        let (got, stats) = read_all(&bytes);
        let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.2).collect();
        assert!(data == [&f[..2], &f[3..]].concat(), "records 0, 1, 3, 4, 5");
        assert_eq!(stats.damaged, 1);
        assert_eq!(stats.skipped_bytes, (16 + f[2].len()) as u64);
    }

    #[test]
    fn a_file_cut_inside_a_record_ends_there() {
        let f = frames(3);
        for bytes in [pcap(&f), pcapng(&f)] {
            for cut in [5, 17, 40] {
                let (got, stats) = read_all(&bytes[..bytes.len() - cut]);
                assert_eq!(got.len(), 2, "cut {cut}");
                assert!(stats.cut_bytes > 0, "cut {cut}");
                assert_eq!(stats.damaged, 0);
            }
        }
    }

    #[test]
    fn what_is_not_a_capture_says_so() {
        let e = CaptureReader::new(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..])
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a pcap or pcapng"), "{e}");
        let e = CaptureReader::new(&b""[..]).err().unwrap();
        assert!(matches!(e, CaptureFileError::Empty), "{e}");
        let e = CaptureReader::new(&pcap(&[])[..10]).err().unwrap();
        assert!(e.to_string().contains("header"), "{e}");
        // A header alone is a capture with no packets.
        let (got, _) = read_all(&pcap(&[]));
        assert!(got.is_empty());
    }

    #[test]
    fn records_bigger_than_the_buffer_are_read_whole() {
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 1 << 20).unwrap();
        w.write(T0, &big, big.len()).unwrap();
        w.write(T0 + 1, &big[..100], 100).unwrap();
        let (got, stats) = read_all(&w.into_inner());
        assert_eq!(stats.damaged, 0);
        assert_eq!(got.len(), 2);
        assert!(got[0].2 == big, "the big record whole");
        assert_eq!(got[1].2.len(), 100);
    }

    #[test]
    fn only_garbage_after_the_header_reads_as_no_packets() {
        let mut bytes = pcap(&[]);
        bytes.extend((0..10_000u32).map(|i| (i.wrapping_mul(40_503) >> 3) as u8));
        let (got, stats) = read_all(&bytes);
        assert!(got.is_empty());
        assert_eq!(stats.damaged, 1);
        assert!(stats.skipped_bytes + stats.cut_bytes > 9_000);
    }

    #[test]
    fn a_pcapng_block_whose_packet_overruns_it_is_damage() {
        let f = frames(4);
        let mut bytes = pcapng(&f);
        // Block 1 (after SHB 28 + IDB 32): caplen one byte more than its block holds.
        let epb = 28 + 32 + 32 + f[0].len().div_ceil(4) * 4;
        let caplen_at = epb + 20;
        let caplen = u32::from_ne_bytes(bytes[caplen_at..caplen_at + 4].try_into().unwrap());
        let padded = (f[1].len().div_ceil(4) * 4) as u32;
        bytes[caplen_at..caplen_at + 4]
            .copy_from_slice(&(padded + 1).max(caplen + 1).to_ne_bytes());
        let started = std::time::Instant::now();
        let (got, stats) = read_all(&bytes);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "no re-parse storm"
        );
        assert_eq!(stats.damaged, 1);
        let lens: Vec<usize> = got.iter().map(|g| g.2.len()).collect();
        assert_eq!(lens, [f[0].len(), f[2].len(), f[3].len()]);
    }

    #[test]
    fn pcapng_binary_time_resolutions() {
        assert_eq!(ts_units(6), Some(1_000_000));
        assert_eq!(ts_units(9), Some(1_000_000_000));
        assert_eq!(ts_units(0x80 | 10), Some(1024));
        assert_eq!(ts_units(0x80 | 30), Some(1 << 30));
        assert_eq!(ts_units(0x80 | 64), None);
        assert_eq!(ts_units(20), None);
    }
}
