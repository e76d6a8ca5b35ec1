//! Recording traffic in the lab with tcpdump, and reworking capture files
//! (other link layers, formats, damage) for offline-mode tests.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use tcpcopy_user::offline::{
    reader::CaptureReader,
    writer::{PcapNgWriter, PcapWriter},
};

use crate::{
    lab::{Host, Lab},
    wait::{DEADLINE, signal_and_wait, wait_until},
};

/// A tcpdump writing a capture file; stopped (and the file complete) by
/// [`Tcpdump::finish`], killed if dropped.
pub struct Tcpdump {
    child: Option<Child>,
    pub file: PathBuf,
    log: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i iface -w <lab dir>/name <extra> <filter>` in
    /// `host`; returns once it is capturing.
    pub fn start(
        lab: &Lab,
        host: Host,
        iface: &str,
        name: &str,
        extra: &[&str],
        filter: &str,
    ) -> Self {
        let file = lab.dir().join(name);
        let log = lab.dir().join(format!("{name}.tcpdump.log"));
        let log_file = std::fs::File::create(&log).expect("create tcpdump's log");
        let child = lab
            .command(host, "tcpdump")
            .args(["-i", iface, "-n", "-B", "131072", "-U", "-w"])
            .arg(&file)
            .args(extra)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup"))
            .stderr(log_file)
            .spawn()
            .expect("start tcpdump");
        let me = Self {
            child: Some(child),
            file,
            log,
        };
        wait_until("tcpdump to start capturing", DEADLINE, || {
            let text = std::fs::read_to_string(&me.log).unwrap_or_default();
            if text.contains("listening on") {
                Ok(())
            } else {
                Err(text)
            }
        });
        me
    }

    /// Stops the capture once the file has stopped growing (see
    /// [`finish_all`]); returns the file.
    pub fn finish(self) -> PathBuf {
        finish_all(vec![self]).remove(0)
    }

    fn stop(mut self) -> PathBuf {
        let mut child = self.child.take().expect("running");
        let status = signal_and_wait(&mut child, libc::SIGINT, "tcpdump (SIGINT)");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "tcpdump failed ({status}): {log}");
        assert!(
            !log.lines().any(|l| l.starts_with("0 packets captured")),
            "tcpdump captured nothing: {log}"
        );
        assert!(
            log.lines().any(|l| l == "0 packets dropped by kernel"),
            "tcpdump lost packets (the recording is incomplete): {log}"
        );
        self.file.clone()
    }
}

/// Stops captures once none of their files has grown for longer than the
/// kernel holds captured packets back (tcpdump's 1 s buffer timeout): the
/// last packets of a close may still be on their way when a client
/// returns. SIGINT makes tcpdump flush and exit. Returns the files.
pub fn finish_all(caps: Vec<Tcpdump>) -> Vec<PathBuf> {
    let sizes = || -> Vec<u64> {
        caps.iter()
            .map(|c| std::fs::metadata(&c.file).map_or(0, |m| m.len()))
            .collect()
    };
    let mut last = sizes();
    wait_until("the capture files to stop growing", DEADLINE, || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let now = sizes();
        let settled = now == last && now.iter().all(|&n| n > 24);
        last = now;
        if settled {
            Ok(())
        } else {
            Err(format!("{last:?} bytes"))
        }
    });
    caps.into_iter().map(Tcpdump::stop).collect()
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every record of a capture file: (time ns, link type, bytes, length on
/// the wire).
pub fn records(path: &Path) -> Vec<(u64, i32, Vec<u8>, u32)> {
    let bytes = std::fs::read(path).expect("read the capture");
    let mut r = CaptureReader::new(&bytes[..]).expect("a capture file");
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().expect("readable") {
        out.push((rec.ts_ns, rec.linktype, rec.data.to_vec(), rec.orig_len));
    }
    out
}

/// Writes an Ethernet capture again as pcapng.
pub fn to_pcapng(src: &Path, dst: &Path) {
    let mut w = PcapNgWriter::new(Vec::new(), 1, 262_144).unwrap();
    for (t, lt, data, len) in records(src) {
        assert_eq!(lt, 1, "an Ethernet capture");
        w.write(t, &data, len as usize).unwrap();
    }
    std::fs::write(dst, w.into_inner()).unwrap();
}

/// Writes an Ethernet capture again with an 802.1Q tag (VLAN `vid`) in
/// every frame.
pub fn with_vlan_tag(src: &Path, dst: &Path, vid: u16) {
    let mut w = PcapWriter::new(Vec::new(), 1, 262_144).unwrap();
    for (t, lt, data, len) in records(src) {
        assert_eq!(lt, 1, "an Ethernet capture");
        let mut f = data[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&data[12..]);
        w.write(t, &f, len as usize + 4).unwrap();
    }
    std::fs::write(dst, w.into_inner()).unwrap();
}

/// Offsets of every record header in a classic pcap file.
pub fn pcap_record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= bytes.len() {
        out.push(at);
        let caplen = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    out
}
