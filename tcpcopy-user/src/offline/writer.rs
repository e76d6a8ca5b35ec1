//! Writing classic pcap files (microsecond timestamps, this host's byte
//! order): the dry run's output, and test and benchmark captures.

use std::io::{self, Write};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// LINKTYPE_RAW: each record is an IP packet.
pub const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_LINUX_SLL.
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// LINKTYPE_LINUX_SLL2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// A pcap file being written.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W, linktype: u32, snaplen: u32) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // thiszone, sigfigs: 0
        h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
        h[20..24].copy_from_slice(&linktype.to_ne_bytes());
        out.write_all(&h)?;
        Ok(Self { out, snaplen })
    }

    /// Writes one record: `data` as captured (cut to the snapshot length),
    /// `orig_len` its length on the wire.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: usize) -> io::Result<()> {
        let cap = data.len().min(self.snaplen as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1000) as u32).to_ne_bytes());
        h[8..12].copy_from_slice(&(cap as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(orig_len.max(cap) as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..cap])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Now, in nanoseconds since the Unix epoch (for record timestamps).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A pcapng file being written: one section, one interface, nanosecond
/// timestamps, enhanced packet blocks (this host's byte order).
pub struct PcapNgWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header and the interface description.
    pub fn new(mut out: W, linktype: u16, snaplen: u32) -> io::Result<Self> {
        // Section header block: type, length, byte-order magic, version
        // 1.0, section length unknown (-1), no options, length.
        let mut shb = Vec::with_capacity(28);
        shb.extend_from_slice(&0x0A0D_0D0Au32.to_ne_bytes());
        shb.extend_from_slice(&28u32.to_ne_bytes());
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_ne_bytes());
        shb.extend_from_slice(&1u16.to_ne_bytes());
        shb.extend_from_slice(&0u16.to_ne_bytes());
        shb.extend_from_slice(&(-1i64).to_ne_bytes());
        shb.extend_from_slice(&28u32.to_ne_bytes());
        out.write_all(&shb)?;
        // Interface description block with if_tsresol = 9 (nanoseconds)
        // and the end-of-options marker.
        let mut idb = Vec::with_capacity(32);
        idb.extend_from_slice(&1u32.to_ne_bytes());
        idb.extend_from_slice(&32u32.to_ne_bytes());
        idb.extend_from_slice(&linktype.to_ne_bytes());
        idb.extend_from_slice(&0u16.to_ne_bytes());
        idb.extend_from_slice(&snaplen.to_ne_bytes());
        idb.extend_from_slice(&9u16.to_ne_bytes());
        idb.extend_from_slice(&1u16.to_ne_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&0u32.to_ne_bytes());
        idb.extend_from_slice(&32u32.to_ne_bytes());
        out.write_all(&idb)?;
        Ok(Self { out, snaplen })
    }

    /// Writes one enhanced packet block.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: usize) -> io::Result<()> {
        let cap = data.len().min(self.snaplen as usize);
        let padded = cap.div_ceil(4) * 4;
        let len = (32 + padded) as u32;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&6u32.to_ne_bytes());
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // interface 0
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_ne_bytes());
        b.extend_from_slice(&(cap as u32).to_ne_bytes());
        b.extend_from_slice(&(orig_len.max(cap) as u32).to_ne_bytes());
        b.extend_from_slice(&data[..cap]);
        b.resize(28 + padded, 0);
        b.extend_from_slice(&len.to_ne_bytes());
        self.out.write_all(&b)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
