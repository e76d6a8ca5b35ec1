//! Driving intercept in the lab: the real `intercept` binary in the
//! assistant namespace, tcpcopy stand-ins that speak the wire protocol from
//! the online host, and client sessions replayed by hand with raw packets
//! (the way tcpcopy sends them: the target sees a client address in
//! 198.18.1.0/24 and routes its replies to the assistant).
//!
//! IPv6 ([`crate::lab::LabSpec::ipv6`]): a stand-in announces IPv6
//! sessions with `Add6` ([`TcpcopyPeer::announce6`]) and reads IPv6 record
//! frames; [`ClientSession6`] replays a session with an IPv6
//! [`RawIpSender`](crate::raw::RawIpSender);
//! [`HttpResponder`] answers on the target for either family.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tcpcopy_common::proto::{
    Add6, ClientMsg, HeaderRecord, HeaderRecord6, INTERCEPT_PORT, RecordFrameDecoder, ReplyEvent,
    ReplyStreamDecoder, VersionInfo,
};

use crate::{
    frames::{ACK, PSH, RST, SYN, Segment},
    frames6::Segment6,
    lab::{ASSISTANT_IP, Host, Lab, TARGET_IP},
    wait::{DEADLINE, signal_and_wait, wait_until},
};

/// The `intercept` binary (built once per test process, never stale).
pub fn intercept_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| crate::workspace_binary("intercept-user", "intercept"))
}

/// Where intercept listens in the lab.
pub fn intercept_addr() -> SocketAddrV4 {
    SocketAddrV4::new(ASSISTANT_IP, INTERCEPT_PORT)
}

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// The statistics of one `stats:` line, by key.
pub type StatsLine = HashMap<String, u64>;

/// Parses the `key=value` pairs after `marker` in the last line that has it.
pub fn last_stats(log: &str, marker: &str) -> Option<StatsLine> {
    let line = log.lines().rev().find(|l| l.contains(marker))?;
    let (_, pairs) = line.split_once(marker)?;
    Some(
        pairs
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

/// An `intercept` process in the assistant namespace, on `eth0`, listening
/// on 198.18.2.3:36524, logging to a file in the lab directory.
pub struct InterceptProcess {
    child: Option<Child>,
    pub log: PathBuf,
    pub out: PathBuf,
    pub pid_file: PathBuf,
}

impl InterceptProcess {
    /// Starts intercept with `args` added; returns once it listens.
    pub fn start(lab: &Lab, args: &[&str]) -> Self {
        Self::start_binary(lab, intercept_binary(), args)
    }

    /// As [`start`](Self::start), with a given intercept binary.
    pub fn start_binary(lab: &Lab, binary: &Path, args: &[&str]) -> Self {
        Self::start_bound(lab, binary, ASSISTANT_IP.into(), args)
    }

    /// As [`start_binary`](Self::start_binary), listening for tcpcopy on
    /// `bind` (an address of the assistant, of either family).
    pub fn start_bound(lab: &Lab, binary: &Path, bind: IpAddr, args: &[&str]) -> Self {
        let bind_arg = bind.to_string();
        let mut argv = vec!["-i", "eth0", "-b", &bind_arg];
        argv.extend_from_slice(args);
        Self::spawn(lab, Host::Assistant, binary, bind, &argv)
    }

    /// Starts intercept on the target itself (`--egress eth0`, no
    /// assistant) with `args` added (`--clients` among them); returns once
    /// it listens on the target's address.
    pub fn start_egress(lab: &Lab, args: &[&str]) -> Self {
        Self::start_egress_binary(lab, intercept_binary(), args)
    }

    /// As [`start_egress`](Self::start_egress), with a given intercept binary.
    pub fn start_egress_binary(lab: &Lab, binary: &Path, args: &[&str]) -> Self {
        let mut argv = vec!["--egress", "eth0", "-b", "198.18.2.2"];
        argv.extend_from_slice(args);
        Self::spawn(lab, Host::Target, binary, TARGET_IP.into(), &argv)
    }

    fn spawn(lab: &Lab, host: Host, binary: &Path, bind: IpAddr, args: &[&str]) -> Self {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let log = lab.dir().join(format!("intercept-{n}.log"));
        let out = lab.dir().join(format!("intercept-{n}.out"));
        let pid_file = lab.dir().join(format!("intercept-{n}.pid"));
        let out_file = std::fs::File::create(&out).expect("create intercept's output file");
        let bin = binary.to_string_lossy().into_owned();
        let mut cmd = lab.command(host, &bin);
        cmd.arg("-l")
            .arg(&log)
            .arg("-P")
            .arg(&pid_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file);
        let child = cmd.spawn().expect("start intercept");
        let mut me = Self {
            child: Some(child),
            log,
            out,
            pid_file,
        };
        me.wait_listening(lab, host, SocketAddr::new(bind, INTERCEPT_PORT));
        me
    }

    fn wait_listening(&mut self, lab: &Lab, host: Host, addr: SocketAddr) {
        let wanted = addr.to_string();
        wait_until("intercept listening", DEADLINE, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                panic!(
                    "intercept exited early ({status}): {}\n{}",
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    self.log_text()
                );
            }
            let listeners = lab.run(host, &["ss", "-Hltn"]);
            if listeners.split_whitespace().any(|w| w == wanted) {
                Ok(())
            } else {
                Err(listeners)
            }
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a periodic `stats:` line satisfying `pred`; returns it.
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&StatsLine) -> bool) -> StatsLine {
        wait_until(what, DEADLINE, || {
            match last_stats(&self.log_text(), " stats: ") {
                Some(s) if pred(&s) => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_until(&format!("{needle:?} in intercept's log"), DEADLINE, || {
            let text = self.log_text();
            match text.lines().find(|l| l.contains(needle)) {
                Some(line) => Ok(line.to_owned()),
                None => Err(text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")),
            }
        })
    }

    /// SIGTERM, then waits for the exit; returns the status and the final
    /// statistics.
    pub fn stop(mut self) -> (ExitStatus, StatsLine) {
        let mut child = self.child.take().expect("running");
        let status = signal_and_wait(&mut child, libc::SIGTERM, "intercept (SIGTERM)");
        let log = self.log_text();
        let stats = last_stats(&log, "final stats: ")
            .unwrap_or_else(|| panic!("no final stats in the log:\n{log}"));
        (status, stats)
    }

    /// SIGKILL (no cleanup in the process: its XDP link goes with it),
    /// then waits for the exit.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        child.wait().expect("reap intercept")
    }
}

impl Drop for InterceptProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tcpcopy stand-in: connects from the online host, speaks the protocol,
/// collects the records intercept sends.
pub struct TcpcopyPeer {
    stream: TcpStream,
    decoder: PeerDecoder,
    pub records: Vec<HeaderRecord>,
    /// Extension peers: each record's payload (stored bytes, the reply's
    /// payload length), in the order of `records`.
    pub payloads: Vec<Option<(Vec<u8>, u32)>>,
    /// Extension peers: the payload cap intercept granted.
    pub granted: Option<u32>,
    /// IPv6 peers: the IPv6 records, in arrival order.
    pub records6: Vec<HeaderRecord6>,
    /// IPv6 peers: each IPv6 record's payload, in the order of `records6`.
    pub payloads6: Vec<Option<(Vec<u8>, u32)>>,
    /// Extension peers: intercept's answer to the version query.
    pub version: Option<VersionInfo>,
    closed: Option<String>,
}

/// A 1.x peer decodes 1.x frames only (any extension frame is an error);
/// one that asked for payloads reads every frame kind.
enum PeerDecoder {
    Legacy(RecordFrameDecoder),
    Extended(Box<ReplyStreamDecoder>),
}

impl TcpcopyPeer {
    /// Connects from the online host (198.18.2.1) to intercept.
    pub fn connect(lab: &Lab) -> Self {
        Self::connect_to(lab, intercept_addr())
    }

    /// Connects from the online host to an intercept at `addr` (e.g. one
    /// on the target).
    pub fn connect_to(lab: &Lab, addr: SocketAddrV4) -> Self {
        let stream = {
            let _ns = lab.enter(Host::Online);
            TcpStream::connect_timeout(&addr.into(), DEADLINE).expect("connect to intercept")
        };
        stream.set_nonblocking(true).expect("non-blocking");
        Self {
            stream,
            decoder: PeerDecoder::Legacy(RecordFrameDecoder::new()),
            records: Vec::new(),
            payloads: Vec::new(),
            granted: None,
            records6: Vec::new(),
            payloads6: Vec::new(),
            version: None,
            closed: None,
        }
    }

    /// From now on this peer reads extension frames (every frame kind). A
    /// 1.x peer never does: any extension frame fails its decoder.
    fn speak_extensions(&mut self) {
        if let PeerDecoder::Legacy(d) = &self.decoder {
            assert!(d.at_boundary(), "switching decoders mid-frame");
            self.decoder = PeerDecoder::Extended(Box::new(ReplyStreamDecoder::new()));
        }
    }

    /// Asks for reply payloads of up to `cap` bytes (after the hello);
    /// from now on this peer reads extension frames.
    pub fn request_payloads(&mut self, cap: u32) {
        self.speak_extensions();
        self.send_bytes(&ClientMsg::payload_request(cap).encode());
    }

    /// Asks intercept for its version (after the hello); from now on this
    /// peer reads extension frames.
    pub fn query_version(&mut self) {
        self.speak_extensions();
        self.send_bytes(&ClientMsg::version_query().encode());
    }

    /// Waits for the answer to [`query_version`](Self::query_version).
    pub fn wait_version(&mut self) -> VersionInfo {
        wait_until("intercept's version answer", DEADLINE, || {
            self.poll();
            self.version.ok_or_else(|| "no answer yet".to_owned())
        })
    }

    /// Sends raw bytes (blocking until all are written).
    pub fn send_bytes(&mut self, mut bytes: &[u8]) {
        wait_until("sending to intercept", DEADLINE, || {
            while !bytes.is_empty() {
                match self.stream.write(bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Err("socket full".to_owned());
                    }
                    Err(e) => panic!("sending to intercept: {e}"),
                }
            }
            Ok(())
        });
    }

    pub fn hello(&mut self) {
        self.send_bytes(&ClientMsg::hello().encode());
    }

    /// CLIENT_ADD for `session`.
    pub fn announce(&mut self, session: &ClientSession) {
        self.send_bytes(&session.client_add().encode());
    }

    /// The IPv6 announcement (`Add6`) of `session`; from now on this peer
    /// reads extension frames (IPv6 records come in IPv6 frames).
    pub fn announce6(&mut self, session: &ClientSession6) {
        self.speak_extensions();
        self.send_bytes(&session.add6().encode());
    }

    /// Reads what intercept sent so far; returns whether the connection is
    /// still open.
    pub fn poll(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        while self.closed.is_none() {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = Some("EOF".into()),
                Ok(n) => {
                    let (records, payloads, granted) =
                        (&mut self.records, &mut self.payloads, &mut self.granted);
                    let (records6, payloads6, version) =
                        (&mut self.records6, &mut self.payloads6, &mut self.version);
                    match &mut self.decoder {
                        PeerDecoder::Legacy(d) => d.push(&buf[..n], |r| {
                            records.push(*r);
                            payloads.push(None);
                        }),
                        PeerDecoder::Extended(d) => d.push(&buf[..n], |e| match e {
                            ReplyEvent::Record { record, payload } => {
                                records.push(*record);
                                payloads.push(payload.map(|(b, n)| (b.to_vec(), n)));
                            }
                            ReplyEvent::PayloadGranted(cap) => *granted = Some(cap),
                            ReplyEvent::Version(v) => *version = Some(v),
                            ReplyEvent::Record6 { record, payload } => {
                                records6.push(*record);
                                payloads6.push(payload.map(|(b, n)| (b.to_vec(), n)));
                            }
                        }),
                    }
                    .expect("intercept sent a malformed record stream");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.closed = Some(e.to_string()),
            }
        }
        if self.closed.is_some() {
            let at_boundary = match &self.decoder {
                PeerDecoder::Legacy(d) => d.at_boundary(),
                PeerDecoder::Extended(d) => d.at_boundary(),
            };
            assert!(at_boundary, "intercept's stream ended mid-frame");
        }
        self.closed.is_none()
    }

    /// The records of `session`, in arrival order.
    pub fn records_of(&mut self, session: &ClientSession) -> Vec<HeaderRecord> {
        self.poll();
        self.records
            .iter()
            .filter(|r| session.owns(r))
            .copied()
            .collect()
    }

    /// Waits for a record of `session` satisfying `pred`; returns it.
    pub fn wait_record(
        &mut self,
        session: &ClientSession,
        what: &str,
        pred: impl Fn(&HeaderRecord) -> bool,
    ) -> HeaderRecord {
        wait_until(what, DEADLINE, || {
            let got = self.records_of(session);
            got.iter()
                .find(|r| pred(r))
                .copied()
                .ok_or_else(|| format!("{} records of the session: {got:?}", got.len()))
        })
    }

    /// The IPv6 records of `session`, in arrival order.
    pub fn records6_of(&mut self, session: &ClientSession6) -> Vec<HeaderRecord6> {
        self.poll();
        self.records6
            .iter()
            .filter(|r| session.owns(r))
            .copied()
            .collect()
    }

    /// Waits for an IPv6 record of `session` satisfying `pred`; returns it.
    pub fn wait_record6(
        &mut self,
        session: &ClientSession6,
        what: &str,
        pred: impl Fn(&HeaderRecord6) -> bool,
    ) -> HeaderRecord6 {
        wait_until(what, DEADLINE, || {
            let got = self.records6_of(session);
            got.iter()
                .find(|r| pred(r))
                .copied()
                .ok_or_else(|| format!("{} IPv6 records of the session: {got:?}", got.len()))
        })
    }

    /// Waits until intercept has closed this connection.
    pub fn wait_closed(&mut self) -> String {
        wait_until("intercept to close the connection", DEADLINE, || {
            if self.poll() {
                Err("still open".into())
            } else {
                Ok(self.closed.clone().unwrap_or_default())
            }
        })
    }
}

/// The SYN options of our sessions: MSS 1460, SACK permitted, window scale 7.
const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];

/// A client session replayed by hand with raw packets from the online host.
#[derive(Clone, Copy, Debug)]
pub struct ClientSession {
    pub client: ([u8; 4], u16),
    pub target: ([u8; 4], u16),
    pub isn: u32,
}

impl ClientSession {
    pub fn new(client: ([u8; 4], u16), target: ([u8; 4], u16)) -> Self {
        Self {
            client,
            target,
            isn: 0x1000_0000 ^ (u32::from(client.1) << 8),
        }
    }

    pub fn client_add(&self) -> ClientMsg {
        ClientMsg::add(self.client.0, self.client.1, self.target.0, self.target.1)
    }

    /// Whether `rec` is a reply of this session.
    pub fn owns(&self, rec: &HeaderRecord) -> bool {
        (rec.src_addr(), rec.src_port()) == self.target
            && (rec.dst_addr(), rec.dst_port()) == self.client
    }

    fn segment(&self, flags: u8, seq: u32, ack: u32) -> Segment {
        let mut s = Segment::new(self.client, self.target);
        s.flags = flags;
        s.seq = seq;
        s.ack = ack;
        s.ip_id = self.client.1;
        s
    }

    pub fn syn(&self) -> Segment {
        let mut s = self.segment(SYN, self.isn, 0);
        s.tcp_options = SYN_OPTIONS.to_vec();
        s
    }

    /// The handshake's ACK carrying the request (after the SYN-ACK).
    pub fn request(&self, syn_ack: &HeaderRecord, payload: &[u8]) -> Segment {
        let mut s = self.segment(ACK | PSH, self.isn + 1, syn_ack.seq().wrapping_add(1));
        s.payload = payload.to_vec();
        s
    }

    /// A reset at sequence `seq`.
    pub fn rst(&self, seq: u32) -> Segment {
        self.segment(RST, seq, 0)
    }
}

/// The record intercept must report for a captured frame (Ethernet, IPv4
/// without options, TCP), written out independently of intercept's code:
/// the IPv4 header as sent, the TCP header with at most 24 option bytes,
/// zero padded to 64 bytes. `None` for anything but IPv4/TCP.
pub fn expected_record(frame: &[u8]) -> Option<HeaderRecord> {
    let packet = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv4(ipv4)) = packet.net else {
        return None;
    };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    let ip = ipv4.header().slice();
    assert_eq!(ip.len(), 20, "lab replies carry no IP options");
    let tcp = tcp.header_slice();
    let mut rec = HeaderRecord::default();
    rec.bytes[..20].copy_from_slice(ip);
    let kept = tcp.len().min(44);
    rec.bytes[20..20 + kept].copy_from_slice(&tcp[..kept]);
    Some(rec)
}

/// An IPv6 client session replayed by hand with raw packets from the
/// online host (as [`ClientSession`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientSession6 {
    pub client: ([u8; 16], u16),
    pub target: ([u8; 16], u16),
    pub isn: u32,
}

impl ClientSession6 {
    pub fn new(client: ([u8; 16], u16), target: ([u8; 16], u16)) -> Self {
        Self {
            client,
            target,
            isn: 0x2000_0000 ^ (u32::from(client.1) << 8),
        }
    }

    /// The IPv6 announcement of this session.
    pub fn add6(&self) -> Add6 {
        Add6 {
            client_ip: self.client.0,
            client_port: self.client.1,
            target_ip: self.target.0,
            target_port: self.target.1,
        }
    }

    /// Whether `rec` is a reply of this session.
    pub fn owns(&self, rec: &HeaderRecord6) -> bool {
        (rec.src_addr(), rec.src_port()) == self.target
            && (rec.dst_addr(), rec.dst_port()) == self.client
    }

    fn segment(&self, flags: u8, seq: u32, ack: u32) -> Segment6 {
        let mut s = Segment6::new(self.client, self.target);
        s.flags = flags;
        s.seq = seq;
        s.ack = ack;
        s
    }

    pub fn syn(&self) -> Segment6 {
        let mut s = self.segment(SYN, self.isn, 0);
        // MSS 1440, SACK permitted, window scale 7.
        s.tcp_options = vec![2, 4, 0x05, 0xa0, 1, 1, 4, 2, 1, 3, 3, 7];
        s
    }

    /// The handshake's ACK carrying the request (after the SYN-ACK).
    pub fn request(&self, syn_ack: &HeaderRecord6, payload: &[u8]) -> Segment6 {
        let (seq, _) = seq_ack6(syn_ack);
        let mut s = self.segment(ACK | PSH, self.isn + 1, seq.wrapping_add(1));
        s.payload = payload.to_vec();
        s
    }

    /// A reset at sequence `seq`.
    pub fn rst(&self, seq: u32) -> Segment6 {
        self.segment(RST, seq, 0)
    }
}

/// The sequence and acknowledgment numbers of an IPv6 record.
pub fn seq_ack6(rec: &HeaderRecord6) -> (u32, u32) {
    let word = |at: usize| u32::from_be_bytes(rec.bytes[at..at + 4].try_into().expect("4 bytes"));
    (word(44), word(48))
}

/// The record intercept must report for a captured IPv6 frame (Ethernet,
/// IPv6 without extension headers, TCP), written out independently of
/// intercept's code: the fixed IPv6 header as sent, the TCP header with at
/// most 24 option bytes, zero padded to 88 bytes. `None` for anything else.
pub fn expected_record6(frame: &[u8]) -> Option<HeaderRecord6> {
    let packet = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv6(ipv6)) = packet.net else {
        return None;
    };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    assert!(
        ipv6.extensions().is_empty(),
        "lab replies carry no extension headers"
    );
    let mut rec = HeaderRecord6::default();
    rec.bytes[..40].copy_from_slice(ipv6.header().slice());
    let tcp = tcp.header_slice();
    let kept = tcp.len().min(44);
    rec.bytes[40..40 + kept].copy_from_slice(&tcp[..kept]);
    Some(rec)
}

/// A minimal HTTP server in a lab host, for either family: every request
/// (read up to its blank line) gets `200 ok` and the connection is closed
/// (the server's FIN follows the response). Stops when dropped.
pub struct HttpResponder {
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpResponder {
    /// The response every request gets.
    pub const RESPONSE: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

    /// Listens on every address of `addrs` in `host` (they must be the
    /// host's), and serves until dropped.
    pub fn start(lab: &Lab, host: Host, addrs: &[SocketAddr]) -> Self {
        let listeners: Vec<TcpListener> = {
            let _ns = lab.enter(host);
            addrs
                .iter()
                .map(|a| {
                    let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("listen on {a}: {e}"));
                    l.set_nonblocking(true).expect("non-blocking listener");
                    l
                })
                .collect()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || serve(&listeners, &stop, &requests))
        };
        Self {
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// The request lines answered so far (`GET /path HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("the request log").clone()
    }
}

impl Drop for HttpResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listeners: &[TcpListener], stop: &AtomicBool, requests: &Mutex<Vec<String>>) {
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for listener in listeners {
            match listener.accept() {
                Ok((stream, _)) => {
                    idle = false;
                    if let Some(line) = answer(stream) {
                        requests.lock().expect("the request log").push(line);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        if idle {
            // Nothing to accept: look again soon (the server's own pace,
            // not a test waiting on a condition).
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Reads one request up to its blank line and answers it; returns the
/// request line.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    stream.write_all(HttpResponder::RESPONSE).ok()?;
    let text = String::from_utf8_lossy(&request);
    text.lines().next().map(str::to_owned)
}
