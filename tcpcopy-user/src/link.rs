//! One TCP connection to an intercept (TCPCopy 1.x protocol, see
//! `tcpcopy_common::proto`): a hello first, then a CLIENT_ADD for every
//! session before its SYN; record frames come back.
//!
//! intercept sends each session's replies on the connection that announced
//! it, so a worker that owns its links gets exactly the replies of its own
//! sessions: no dispatch between threads.
//!
//! The first connection is opened blocking (with a timeout, so a wrong
//! address fails at once with a clear error) and then run non-blocking in
//! the worker's event loop. Writes are buffered up to [`MAX_PENDING`]; past
//! that announcements are dropped and counted (intercept is not reading).
//! A link that fails is reopened when the worker runs with `-L`: a
//! non-blocking connect every [`RETRY_EVERY`] (never holding up the
//! replay), so a restarted intercept is back in use within about that;
//! the worker then announces its open sessions again.
//!
//! IPv6 sessions are announced with the protocol's IPv6 extension (`Add6`)
//! only to an intercept that says it takes them (`CAP_IPV6` in its version
//! answer): an original intercept would read the extension as garbage.
//! Until the answer comes (at most [`VERSION_WAIT`] after connecting),
//! IPv6 announcements wait; to an intercept without IPv6 they are counted
//! (`announce6_unsupported`) and a warning says why.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs},
    time::Duration,
};

use mio::{Interest, Registry, Token, net::TcpStream};
use tcpcopy_common::proto::{
    Add6, CAP_IPV6, CAP_ON_TARGET, ClientMsg, HeaderRecord, ProtoError, ReplyEvent,
    ReplyStreamDecoder, VersionInfo,
};

use crate::{
    clock,
    engine::Instant,
    shard::{AnnounceMsg, ReplyRecord},
};

/// Buffered bytes per link before announcements are dropped.
pub const MAX_PENDING: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A down link is tried again this often (a refused connect on a LAN costs
/// a round trip; a restarted intercept is found within this).
pub const RETRY_EVERY: Duration = Duration::from_millis(100);
/// How long after connecting an intercept has to answer the version query
/// before it is taken for an original (1.x) one, which never answers.
pub const VERSION_WAIT: Duration = Duration::from_secs(2);
/// IPv6 announcements held while the version answer is awaited, at most.
const MAX_HELD6: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot resolve intercept {name}: {source}")]
    Resolve { name: String, source: io::Error },
    #[error(
        "cannot connect to intercept {name} ({addr}): {source}; is intercept running there, and reachable?"
    )]
    Connect {
        name: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("intercept {name} closed the connection")]
    Closed { name: String },
    #[error("connection to intercept {name}: {source}")]
    Io { name: String, source: io::Error },
    #[error("intercept {name} sent bad data ({source}); closing the connection")]
    Protocol { name: String, source: ProtoError },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub records: u64,
    /// IPv6 records among `records`.
    pub records6: u64,
    pub announcements: u64,
    pub announcements_dropped: u64,
    /// IPv6 announcements not sent: the intercept does not take IPv6.
    pub announcements6_unsupported: u64,
    pub reconnects: u64,
    pub failures: u64,
}

impl LinkStats {
    pub fn add(&mut self, o: &Self) {
        self.records += o.records;
        self.records6 += o.records6;
        self.announcements += o.announcements;
        self.announcements_dropped += o.announcements_dropped;
        self.announcements6_unsupported += o.announcements6_unsupported;
        self.reconnects += o.reconnects;
        self.failures += o.failures;
    }
}

pub struct InterceptLink {
    name: String,
    addr: SocketAddr,
    token: Token,
    stream: Option<TcpStream>,
    /// A reconnect under way: its socket and when it gives up.
    connecting: Option<(TcpStream, Instant)>,
    pending: Vec<u8>,
    written: usize,
    decoder: Box<ReplyStreamDecoder>,
    retry_at: Instant,
    /// What the intercept said of itself (`None`: not yet, or a 1.x
    /// intercept, which never answers the version query).
    info: Option<VersionInfo>,
    /// `--compare`: reply payloads asked for, up to this many bytes each.
    payload_cap: Option<u32>,
    /// The payload cap intercept granted (0: none).
    granted: Option<u32>,
    /// IPv6 announcements waiting for the version answer, and when that
    /// wait ends.
    held6: Vec<Add6>,
    version_due: Instant,
    /// The warning that this intercept takes no IPv6 was given.
    warned6: bool,
    pub stats: LinkStats,
}

/// The first bytes on every connection: the hello, then the version query
/// (an original intercept logs its type as unknown and carries on), then
/// with `payload_cap` the payload request.
fn greeting(payload_cap: Option<u32>) -> Vec<u8> {
    let mut b = Vec::with_capacity(42);
    b.extend_from_slice(&ClientMsg::hello().encode());
    b.extend_from_slice(&ClientMsg::version_query().encode());
    if let Some(cap) = payload_cap {
        b.extend_from_slice(&ClientMsg::payload_request(cap).encode());
    }
    b
}

/// Resolves `host:port` to its first IPv4 address, or its first IPv6 one
/// when it has none (an intercept reachable over IPv6 only).
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, LinkError> {
    let name = format!("{host}:{port}");
    let all: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| LinkError::Resolve {
            name: name.clone(),
            source,
        })?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| LinkError::Resolve {
            name,
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        })
}

impl InterceptLink {
    /// Connects (blocking, with a timeout), says hello and registers the
    /// stream with `registry` under `token`.
    pub fn connect(addr: SocketAddr, token: Token, registry: &Registry) -> Result<Self, LinkError> {
        Self::connect_asking(addr, token, registry, None)
    }

    /// As [`connect`](Self::connect), asking for reply payloads of up to
    /// `payload_cap` bytes when given (on every reconnect too).
    pub fn connect_asking(
        addr: SocketAddr,
        token: Token,
        registry: &Registry,
        payload_cap: Option<u32>,
    ) -> Result<Self, LinkError> {
        let mut link = Self {
            name: addr.to_string(),
            addr,
            token,
            stream: None,
            connecting: None,
            pending: Vec::new(),
            written: 0,
            decoder: Box::new(ReplyStreamDecoder::new()),
            retry_at: Instant::ZERO,
            info: None,
            payload_cap,
            granted: None,
            held6: Vec::new(),
            version_due: Instant::ZERO,
            warned6: false,
            stats: LinkStats::default(),
        };
        link.open(registry)?;
        Ok(link)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn token(&self) -> Token {
        self.token
    }

    pub fn is_up(&self) -> bool {
        self.stream.is_some()
    }

    /// When a down link needs the worker next: its next connect attempt,
    /// or when the one under way gives up (`None`: it is up).
    /// What the intercept said of itself, if it did.
    pub fn intercept_info(&self) -> Option<&VersionInfo> {
        self.info.as_ref()
    }

    /// Whether the intercept said it takes IPv6 sessions (`None`: it has
    /// not answered yet).
    pub fn takes_ipv6(&self) -> Option<bool> {
        self.info.map(|i| i.capabilities & CAP_IPV6 != 0)
    }

    /// Whether the intercept said it runs on the target itself.
    pub fn intercept_on_target(&self) -> bool {
        self.info
            .is_some_and(|i| i.capabilities & CAP_ON_TARGET != 0)
    }

    pub fn retry_at(&self) -> Option<Instant> {
        if self.stream.is_some() {
            return None;
        }
        Some(self.connecting.as_ref().map_or(self.retry_at, |c| c.1))
    }

    fn open(&mut self, registry: &Registry) -> Result<(), LinkError> {
        let connect_err = |source| LinkError::Connect {
            name: self.name.clone(),
            addr: self.addr,
            source,
        };
        let mut std =
            StdTcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT).map_err(connect_err)?;
        std.set_nodelay(true).map_err(connect_err)?;
        std.write_all(&greeting(self.payload_cap))
            .map_err(connect_err)?;
        std.set_nonblocking(true).map_err(connect_err)?;
        let mut stream = TcpStream::from_std(std);
        registry
            .register(
                &mut stream,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(connect_err)?;
        self.stream = Some(stream);
        self.pending.clear();
        self.written = 0;
        self.decoder.reset();
        self.info = None;
        self.granted = None;
        self.version_due = clock::now() + VERSION_WAIT;
        Ok(())
    }

    /// Marks the link down (after an error): it is tried again from `now`
    /// plus [`RETRY_EVERY`].
    pub fn close(&mut self, registry: &Registry, now: Instant) {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
            self.stats.failures += 1;
        }
        if let Some((mut s, _)) = self.connecting.take() {
            let _ = registry.deregister(&mut s);
        }
        // Announced again when it comes back.
        self.held6.clear();
        self.retry_at = now + RETRY_EVERY;
    }

    /// Moves a down link on, never blocking: starts a connect when one is
    /// due, and finishes one that completed. Returns true when the link
    /// came back (its sessions must be announced again).
    pub fn try_reopen(&mut self, registry: &Registry, now: Instant) -> bool {
        if self.stream.is_some() {
            return false;
        }
        if let Some((stream, deadline)) = self.connecting.as_mut() {
            // Connected once it has a peer; failed once it has an error.
            let failed = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e.to_string()),
                Ok(None) if stream.peer_addr().is_ok() => None,
                Ok(None) if now >= *deadline => Some("connect timed out".to_owned()),
                Ok(None) => return false,
            };
            let (mut stream, _) = self.connecting.take().expect("checked above");
            if let Some(why) = failed {
                let _ = registry.deregister(&mut stream);
                tracing::debug!(intercept = %self.name, why, "reconnect failed");
                self.retry_at = now + RETRY_EVERY;
                return false;
            }
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
            self.pending.clear();
            self.written = 0;
            self.pending.extend_from_slice(&greeting(self.payload_cap));
            self.decoder.reset();
            self.info = None;
            self.granted = None;
            self.version_due = now + VERSION_WAIT;
            self.stats.reconnects += 1;
            tracing::info!(intercept = %self.name, "reconnected to intercept");
            return true;
        }
        if now < self.retry_at {
            return false;
        }
        self.retry_at = now + RETRY_EVERY;
        match TcpStream::connect(self.addr) {
            Ok(mut stream) => {
                let registered = registry.register(
                    &mut stream,
                    self.token,
                    Interest::READABLE | Interest::WRITABLE,
                );
                if registered.is_ok() {
                    self.connecting = Some((stream, now + CONNECT_TIMEOUT));
                }
            }
            Err(e) => tracing::debug!(intercept = %self.name, error = %e, "reconnect failed"),
        }
        false
    }

    /// Queues a message; [`InterceptLink::flush`] writes it.
    pub fn announce(&mut self, msg: &ClientMsg) {
        self.queue(&msg.encode());
    }

    fn queue(&mut self, bytes: &[u8]) {
        if self.stream.is_none() || self.pending.len() - self.written + bytes.len() > MAX_PENDING {
            self.stats.announcements_dropped += 1;
            return;
        }
        self.pending.extend_from_slice(bytes);
        self.stats.announcements += 1;
    }

    /// Queues an announcement of either family (an IPv6 one only to an
    /// intercept that takes IPv6; it waits for the version answer).
    pub fn announce_any(&mut self, msg: &AnnounceMsg, now: Instant) {
        match msg {
            AnnounceMsg::V4(m) => self.announce(m),
            AnnounceMsg::V6(a) => self.announce6(a, now),
        }
    }

    fn announce6(&mut self, a: &Add6, now: Instant) {
        if self.stream.is_none() {
            self.stats.announcements_dropped += 1;
            return;
        }
        match self.takes_ipv6() {
            Some(true) => self.queue(&a.encode()),
            None if now < self.version_due && self.held6.len() < MAX_HELD6 => self.held6.push(*a),
            _ => self.ipv6_unsupported(1),
        }
    }

    /// `n` IPv6 announcements that this intercept cannot take.
    fn ipv6_unsupported(&mut self, n: u64) {
        self.stats.announcements6_unsupported += n;
        if !self.warned6 {
            self.warned6 = true;
            let who = match &self.info {
                Some(i) => format!("its version {} has no IPv6", i.version_str()),
                None => "it never answered the version query: an original (1.x) intercept, \
                         IPv4 only"
                    .to_owned(),
            };
            tracing::warn!(
                intercept = %self.name,
                "IPv6 sessions cannot be replayed through this intercept ({who}); their replies \
                 never come back: run this project's intercept for IPv6 targets"
            );
        }
    }

    /// What the version answer (or its absence) means for the IPv6
    /// announcements held: sent, or counted as unsupported.
    fn settle_held6(&mut self, now: Instant) {
        if self.held6.is_empty() {
            return;
        }
        match self.takes_ipv6() {
            Some(true) => {
                for a in std::mem::take(&mut self.held6) {
                    self.queue(&a.encode());
                }
            }
            Some(false) => {
                let n = std::mem::take(&mut self.held6).len() as u64;
                self.ipv6_unsupported(n);
            }
            None if now >= self.version_due => {
                let n = std::mem::take(&mut self.held6).len() as u64;
                self.ipv6_unsupported(n);
            }
            None => {}
        }
    }

    /// Writes what it can without blocking (IPv6 announcements first
    /// leave the wait once the version answer is known).
    pub fn flush(&mut self) -> Result<(), LinkError> {
        self.settle_held6(clock::now());
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.written < self.pending.len() {
            match stream.write(&self.pending[self.written..]) {
                Ok(0) => {
                    return Err(LinkError::Closed {
                        name: self.name.clone(),
                    });
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LinkError::Io {
                        name: self.name.clone(),
                        source,
                    });
                }
            }
        }
        if self.written == self.pending.len() {
            self.pending.clear();
            self.written = 0;
        } else if self.written > 1 << 20 {
            self.pending.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// The payload cap intercept granted, once it answered the request.
    pub fn granted(&self) -> Option<u32> {
        self.granted
    }

    /// Reads every IPv4 record waiting (until the socket would block),
    /// handing each to `on_record`. Returns how many records came.
    pub fn read(&mut self, mut on_record: impl FnMut(&HeaderRecord)) -> Result<usize, LinkError> {
        self.read_payloads(|r, _| {
            if let ReplyRecord::V4(r) = r {
                on_record(r);
            }
        })
    }

    /// Reads every record waiting, of either family, with each record's
    /// payload bytes when intercept sent them.
    pub fn read_payloads(
        &mut self,
        mut on_record: impl FnMut(ReplyRecord<'_>, Option<&[u8]>),
    ) -> Result<usize, LinkError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let mut buf = [0u8; 64 * 1024];
        let (mut records, mut records6) = (0, 0);
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    return Err(LinkError::Closed {
                        name: self.name.clone(),
                    });
                }
                Ok(n) => {
                    let name = &self.name;
                    let info = &mut self.info;
                    let granted = &mut self.granted;
                    self.decoder
                        .push(&buf[..n], |event| match event {
                            ReplyEvent::Record { record, payload } => {
                                records += 1;
                                on_record(ReplyRecord::V4(record), payload.map(|(bytes, _)| bytes));
                            }
                            ReplyEvent::Record6 { record, payload } => {
                                records6 += 1;
                                on_record(ReplyRecord::V6(record), payload.map(|(bytes, _)| bytes));
                            }
                            ReplyEvent::Version(v) => {
                                tracing::info!(
                                    intercept = %name,
                                    version = v.version_str(),
                                    on_target = v.capabilities & CAP_ON_TARGET != 0,
                                    ipv6 = v.capabilities & CAP_IPV6 != 0,
                                    "intercept answered the version query"
                                );
                                *info = Some(v);
                            }
                            ReplyEvent::PayloadGranted(cap) => {
                                tracing::info!(intercept = %name, cap, "reply payloads granted");
                                *granted = Some(cap);
                            }
                        })
                        .map_err(|source| LinkError::Protocol {
                            name: name.clone(),
                            source,
                        })?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LinkError::Io {
                        name: self.name.clone(),
                        source,
                    });
                }
            }
        }
        self.stats.records += (records + records6) as u64;
        self.stats.records6 += records6 as u64;
        Ok(records + records6)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use mio::Poll;
    use tcpcopy_common::proto::{CLIENT_MSG_LEN, ClientMsgDecoder, MsgType, PeerMsg, encode_frame};

    use super::*;

    #[test]
    fn hello_first_then_announcements_and_records_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let poll = Poll::new().unwrap();
        let mut link = InterceptLink::connect(addr, Token(1), poll.registry()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        link.announce(&ClientMsg::add([198, 18, 1, 2], 40000, [198, 18, 2, 2], 80));
        link.flush().unwrap();
        let mut got = [0u8; 3 * CLIENT_MSG_LEN];
        peer.read_exact(&mut got).unwrap();
        let mut msgs = Vec::new();
        ClientMsgDecoder::new()
            .push(&got, |m| match m {
                PeerMsg::Msg(m) => msgs.push(m),
                PeerMsg::Add6(a) => panic!("an IPv6 announcement: {a:?}"),
            })
            .unwrap();
        assert_eq!(msgs[0].kind, MsgType::Hello);
        assert_eq!(msgs[1].kind, MsgType::VersionQuery);
        assert_eq!(
            msgs[2],
            ClientMsg::add([198, 18, 1, 2], 40000, [198, 18, 2, 2], 80)
        );
        // The answer tells where intercept runs; records flow as before.
        assert!(!link.intercept_on_target());
        let info = tcpcopy_common::proto::VersionInfo::new("0.1.0", CAP_ON_TARGET);
        peer.write_all(&info.encode()).unwrap();

        let mut rec = HeaderRecord::default();
        rec.bytes[0] = 0x45;
        let mut frame = [0u8; tcpcopy_common::proto::MAX_FRAME_LEN];
        let n = encode_frame(&[rec, rec], &mut frame);
        peer.write_all(&frame[..n]).unwrap();
        let mut seen = 0;
        for _ in 0..1000 {
            seen += link.read(|r| assert_eq!(r.bytes[0], 0x45)).unwrap();
            if seen == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(seen, 2);
        assert_eq!(link.stats.records, 2);
        assert!(link.intercept_on_target());
        assert_eq!(
            link.intercept_info().map(|i| i.version_str()),
            Some("0.1.0")
        );

        // Garbage (a count over 16) is a protocol error, not a panic.
        peer.write_all(&[0xff, 0xff]).unwrap();
        let err = (0..1000)
            .find_map(|_| match link.read(|_| {}) {
                Ok(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    None
                }
                Err(e) => Some(e),
            })
            .expect("an error");
        assert!(matches!(err, LinkError::Protocol { .. }), "{err}");
        drop(peer);
    }

    /// Drives `try_reopen` (as the worker does every turn) until the link
    /// is up or `limit` passes; returns whether it came back.
    fn reopen_within(link: &mut InterceptLink, poll: &Poll, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let now = crate::clock::now();
            if link.try_reopen(poll.registry(), now) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_lost_link_reconnects_without_blocking_once_intercept_is_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let poll = Poll::new().unwrap();
        let mut link = InterceptLink::connect(addr, Token(1), poll.registry()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        // intercept goes away: the port refuses.
        drop(peer);
        drop(listener);
        link.close(poll.registry(), crate::clock::now());
        assert!(!link.is_up());
        assert!(link.retry_at().is_some());
        assert!(!reopen_within(&mut link, &poll, Duration::from_millis(300)));
        // Back on the same port: connected within a retry or two, hello first.
        let listener = TcpListener::bind(addr).unwrap();
        assert!(reopen_within(&mut link, &poll, Duration::from_secs(5)));
        assert!(link.is_up());
        assert_eq!(link.stats.reconnects, 1);
        link.announce(&ClientMsg::add([198, 18, 1, 2], 40000, [198, 18, 2, 2], 80));
        let (mut peer, _) = listener.accept().unwrap();
        for _ in 0..100 {
            link.flush().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut got = [0u8; 3 * CLIENT_MSG_LEN];
        peer.read_exact(&mut got).unwrap();
        let mut msgs = Vec::new();
        ClientMsgDecoder::new()
            .push(&got, |m| match m {
                PeerMsg::Msg(m) => msgs.push(m),
                PeerMsg::Add6(a) => panic!("an IPv6 announcement: {a:?}"),
            })
            .unwrap();
        assert_eq!(msgs[0].kind, MsgType::Hello);
        assert_eq!(msgs[1].kind, MsgType::VersionQuery);
        assert_eq!(msgs[2].kind, MsgType::Add);
    }

    #[test]
    fn a_closed_port_fails_at_once_with_a_clear_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let poll = Poll::new().unwrap();
        let err = InterceptLink::connect(addr, Token(1), poll.registry())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("is intercept running there"),
            "{err}"
        );
    }
}
