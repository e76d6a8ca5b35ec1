//! One tcpcopy connection: its inbound message stream and outbound frames.
//!
//! Inbound, the first message must be the hello (type 6, zero addresses);
//! then CLIENT_ADD / CLIENT_DEL messages, IPv6 announcements (`Add6`) and
//! the extensions' requests become [`PeerEvent`]s. Anything
//! else (an unknown type, no hello, a stream cut mid-message) closes this
//! connection with a [`PeerClosed`] reason and touches no other peer.
//! Outbound, records pass through the peer's [`Batcher`] into its bounded
//! [`Outbox`]: IPv4 records in 1.x frames (or payload record frames), IPv6
//! records in IPv6 frames. Only a peer that announced IPv6 sessions is
//! ever routed IPv6 records, so a 1.x peer sees 1.x frames only.

use std::{
    io::{self, Read},
    net::SocketAddr,
};

use mio::net::TcpStream;
use tcpcopy_common::proto::{
    ADD6_LEN, CAP_IPV6, CAP_PAYLOADS, CLIENT_MSG_LEN, ClientMsg, ClientMsgDecoder, MsgType,
    PeerMsg, ProtoError, VersionInfo, encode_payload_grant,
};

use crate::{
    batch::{self, Batcher, outbox::Outbox},
    route::table::{PeerId, RouteKey, RouteKey6, SessionKey},
};

/// What a peer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// CLIENT_ADD, or an IPv6 announcement: route this session's replies
    /// to me.
    Announce(SessionKey),
    /// CLIENT_DEL: forget the route.
    Withdraw(SessionKey),
    /// Extension: the peer asks who we are (answered with our version).
    VersionQuery,
    /// Extension: the peer asks for reply payloads, up to this many bytes
    /// per reply.
    PayloadRequest(u32),
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerClosed {
    #[error("closed by tcpcopy")]
    Eof,
    #[error("closed mid-message ({0} of {1} bytes)")]
    MidMessage(usize, usize),
    #[error("protocol error: {0}")]
    Protocol(ProtoError),
    #[error("the first message is not a hello (type 6, zero addresses): {0:?}")]
    NoHello(ClientMsg),
    #[error("the first message is not a hello (type 6, zero addresses): an IPv6 announcement")]
    Add6BeforeHello,
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// The result of reading what a peer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadProgress {
    /// Everything available was read.
    Drained,
    /// The read budget ran out first: read again on the next loop turn.
    MoreWaiting,
}

/// Running totals of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub announced: u64,
    /// IPv6 announcements among `announced`.
    pub announced6: u64,
    /// Records fully written to the socket.
    pub delivered: u64,
    /// Records dropped because the outbox was full.
    pub dropped_slow: u64,
}

/// The inbound half of a connection: bytes in, [`PeerEvent`]s out.
#[derive(Debug, Default)]
pub struct Inbound {
    decoder: ClientMsgDecoder,
    greeted: bool,
}

impl Inbound {
    /// Decodes `bytes`; the first message must be the hello.
    pub fn accept(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(PeerEvent),
    ) -> Result<(), PeerClosed> {
        let mut failure = None;
        let greeted = &mut self.greeted;
        self.decoder
            .push(bytes, |msg| {
                if failure.is_some() {
                    return;
                }
                let msg = match msg {
                    PeerMsg::Msg(msg) => msg,
                    PeerMsg::Add6(add) => {
                        if *greeted {
                            on_event(PeerEvent::Announce(RouteKey6::of_add6(&add).into()));
                        } else {
                            failure = Some(PeerClosed::Add6BeforeHello);
                        }
                        return;
                    }
                };
                if !*greeted {
                    if msg == ClientMsg::hello() {
                        *greeted = true;
                    } else {
                        failure = Some(PeerClosed::NoHello(msg));
                    }
                    return;
                }
                match msg.kind {
                    MsgType::Add => on_event(PeerEvent::Announce(RouteKey::of_msg(&msg).into())),
                    MsgType::Del => on_event(PeerEvent::Withdraw(RouteKey::of_msg(&msg).into())),
                    // A repeated hello changes nothing.
                    MsgType::Hello => {}
                    MsgType::VersionQuery => on_event(PeerEvent::VersionQuery),
                    MsgType::PayloadRequest => {
                        on_event(PeerEvent::PayloadRequest(msg.requested_cap()))
                    }
                    // Never here: the decoder hands an Add6 over whole.
                    MsgType::Add6 => {}
                }
            })
            .map_err(PeerClosed::Protocol)?;
        failure.map_or(Ok(()), Err)
    }

    /// Whether the hello has arrived.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// Why the stream ended, given that it just did.
    pub fn at_eof(&self) -> PeerClosed {
        match self.decoder.pending() {
            0 => PeerClosed::Eof,
            // Past a head, only an IPv6 announcement's tail can be missing.
            n if n > CLIENT_MSG_LEN => PeerClosed::MidMessage(n, ADD6_LEN),
            n => PeerClosed::MidMessage(n, CLIENT_MSG_LEN),
        }
    }
}

pub struct Peer {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub stream: TcpStream,
    inbound: Inbound,
    pub batcher: Batcher,
    pub outbox: Outbox,
    /// The last write hit `WouldBlock`: wait for a writable event.
    pub write_blocked: bool,
    pub counts: PeerCounts,
    /// Extension: payload bytes per reply this peer was granted (`None`:
    /// it never asked, and gets 1.x frames only).
    pub payload_cap: Option<u32>,
}

impl Peer {
    pub fn new(id: PeerId, addr: SocketAddr, stream: TcpStream, outbox_limit: usize) -> Self {
        Self {
            id,
            addr,
            stream,
            inbound: Inbound::default(),
            batcher: Batcher::default(),
            outbox: Outbox::new(outbox_limit),
            write_blocked: false,
            counts: PeerCounts::default(),
            payload_cap: None,
        }
    }

    /// Reads at most about `budget` bytes and turns them into events.
    pub fn read_events(
        &mut self,
        budget: usize,
        scratch: &mut [u8],
        mut on_event: impl FnMut(PeerEvent),
    ) -> Result<ReadProgress, PeerClosed> {
        let mut read = 0;
        while read < budget {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Err(self.inbound.at_eof()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadProgress::Drained);
                }
                Err(e) => return Err(PeerClosed::Io(e)),
            };
            read += n;
            let counts = &mut self.counts;
            self.inbound.accept(&scratch[..n], |event| {
                if let PeerEvent::Announce(key) = event {
                    counts.announced += 1;
                    counts.announced6 += u64::from(key.is_ipv6());
                }
                on_event(event);
            })?;
        }
        Ok(ReadProgress::MoreWaiting)
    }

    /// Moves the waiting records into the outbox (see
    /// [`batch::queue_replies`]: IPv4 and IPv6 records in frames of their
    /// family). Returns how many were dropped because the outbox is full.
    pub fn flush_batch(&mut self) -> usize {
        if self.batcher.is_empty() {
            return 0;
        }
        let replies = self.batcher.take();
        let dropped = batch::queue_replies(&mut self.outbox, &replies, self.payload_cap);
        self.counts.dropped_slow += dropped as u64;
        dropped
    }

    /// Extension: grants this peer payloads of up to `granted` bytes per
    /// reply (0: none) and tells it so, after the records already waiting.
    pub fn grant_payloads(&mut self, granted: u32) {
        self.flush_batch();
        self.payload_cap = (granted > 0).then_some(granted);
        let _ = self.outbox.push_raw(&encode_payload_grant(granted));
    }

    /// Queues our [`VersionInfo`] with `capabilities` (beyond payloads and
    /// IPv6, which every deployment offers), after the records already
    /// waiting, so the stream stays a sequence of whole frames.
    pub fn answer_version(&mut self, capabilities: u32) {
        self.flush_batch();
        let info = VersionInfo::new(
            env!("CARGO_PKG_VERSION"),
            CAP_PAYLOADS | CAP_IPV6 | capabilities,
        );
        // An outbox too full for 66 bytes belongs to a peer that is not
        // reading: it will not miss the answer.
        let _ = self.outbox.push_raw(&info.encode());
    }

    /// Writes what the outbox holds until the socket would block. Returns
    /// how many records were fully written.
    pub fn write_out(&mut self) -> Result<u64, PeerClosed> {
        let done = self.outbox.write_to(&mut self.stream)?;
        self.counts.delivered += done;
        self.write_blocked = !self.outbox.is_empty();
        Ok(done)
    }

    /// Whether the peer has said hello yet.
    pub fn greeted(&self) -> bool {
        self.inbound.greeted()
    }

    /// Records accepted for this peer that it will now never get.
    pub fn undelivered(&self) -> u64 {
        self.outbox.pending_records() + self.batcher.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use tcpcopy_common::proto::Add6;

    use super::*;

    fn add(port: u16) -> ClientMsg {
        ClientMsg::add([198, 18, 1, 2], port, [198, 18, 2, 2], 80)
    }

    fn add6(port: u16) -> Add6 {
        Add6 {
            client_ip: [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            client_port: port,
            target_ip: [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            target_port: 80,
        }
    }

    fn wire(msgs: &[ClientMsg]) -> Vec<u8> {
        msgs.iter().flat_map(|m| m.encode()).collect()
    }

    fn events(inbound: &mut Inbound, bytes: &[u8]) -> Result<Vec<PeerEvent>, PeerClosed> {
        let mut got = Vec::new();
        inbound.accept(bytes, |e| got.push(e))?;
        Ok(got)
    }

    #[test]
    fn a_version_query_after_the_hello_asks_for_our_version() {
        let mut inbound = Inbound::default();
        let got = events(
            &mut inbound,
            &wire(&[ClientMsg::hello(), ClientMsg::version_query(), add(1)]),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                PeerEvent::VersionQuery,
                PeerEvent::Announce(RouteKey::of_msg(&add(1)).into())
            ]
        );
        // Before the hello it is no hello.
        let mut fresh = Inbound::default();
        assert!(matches!(
            events(&mut fresh, &wire(&[ClientMsg::version_query()])),
            Err(PeerClosed::NoHello(_))
        ));
    }

    #[test]
    fn a_payload_request_after_the_hello_carries_its_cap() {
        let mut inbound = Inbound::default();
        let got = events(
            &mut inbound,
            &wire(&[ClientMsg::hello(), ClientMsg::payload_request(4096), add(1)]),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                PeerEvent::PayloadRequest(4096),
                PeerEvent::Announce(RouteKey::of_msg(&add(1)).into())
            ]
        );
    }

    #[test]
    fn hello_then_announcements_become_events() {
        let mut inbound = Inbound::default();
        let mut del = add(2);
        del.kind = MsgType::Del;
        let got = events(
            &mut inbound,
            &wire(&[ClientMsg::hello(), add(1), del, ClientMsg::hello()]),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                PeerEvent::Announce(RouteKey::of_msg(&add(1)).into()),
                PeerEvent::Withdraw(RouteKey::of_msg(&add(2)).into()),
            ]
        );
        assert!(matches!(inbound.at_eof(), PeerClosed::Eof));
        assert!(inbound.greeted());
    }

    #[test]
    fn a_stream_without_a_hello_is_refused() {
        let mut inbound = Inbound::default();
        let err = events(&mut inbound, &wire(&[add(1), add(2)])).unwrap_err();
        assert!(
            matches!(err, PeerClosed::NoHello(m) if m == add(1)),
            "{err}"
        );
        // A hello-typed message with addresses is no hello either.
        let mut fake = ClientMsg::hello();
        fake.client_port = 9;
        let err = events(&mut Inbound::default(), &fake.encode()).unwrap_err();
        assert!(matches!(err, PeerClosed::NoHello(_)), "{err}");
    }

    #[test]
    fn garbage_after_the_hello_is_a_protocol_error_and_nothing_after_it_counts() {
        let mut inbound = Inbound::default();
        let mut bytes = wire(&[ClientMsg::hello(), add(1)]);
        bytes.extend_from_slice(&[0xde; 14]);
        bytes.extend_from_slice(&add(2).encode());
        let mut got = Vec::new();
        let err = inbound.accept(&bytes, |e| got.push(e)).unwrap_err();
        assert!(
            matches!(err, PeerClosed::Protocol(ProtoError::UnknownType(0xdede))),
            "{err}"
        );
        assert_eq!(got, [PeerEvent::Announce(RouteKey::of_msg(&add(1)).into())]);
        assert!(err.to_string().contains("unknown message type"), "{err}");
    }

    #[test]
    fn a_stream_cut_mid_message_says_so() {
        let mut inbound = Inbound::default();
        let bytes = wire(&[ClientMsg::hello(), add(1)]);
        let got = events(&mut inbound, &bytes[..14 + 5]).unwrap();
        assert!(got.is_empty());
        let reason = inbound.at_eof();
        assert!(matches!(reason, PeerClosed::MidMessage(5, 14)), "{reason}");
        assert_eq!(reason.to_string(), "closed mid-message (5 of 14 bytes)");
    }

    #[test]
    fn ipv6_announcements_after_the_hello_announce_ipv6_sessions() {
        let mut bytes = wire(&[ClientMsg::hello(), add(1)]);
        bytes.extend_from_slice(&add6(2).encode());
        bytes.extend_from_slice(&add(3).encode());
        bytes.extend_from_slice(&add6(4).encode());
        let want = [
            PeerEvent::Announce(RouteKey::of_msg(&add(1)).into()),
            PeerEvent::Announce(RouteKey6::of_add6(&add6(2)).into()),
            PeerEvent::Announce(RouteKey::of_msg(&add(3)).into()),
            PeerEvent::Announce(RouteKey6::of_add6(&add6(4)).into()),
        ];
        assert_eq!(events(&mut Inbound::default(), &bytes).unwrap(), want);
        // The same bytes one at a time: the announcements cross any split.
        let mut inbound = Inbound::default();
        let mut got = Vec::new();
        for b in &bytes {
            inbound
                .accept(std::slice::from_ref(b), |e| got.push(e))
                .unwrap();
        }
        assert_eq!(got, want);
        assert!(matches!(got[1], PeerEvent::Announce(k) if k.is_ipv6()));
    }

    #[test]
    fn an_ipv6_announcement_before_the_hello_is_refused() {
        let err = events(&mut Inbound::default(), &add6(1).encode()).unwrap_err();
        assert!(matches!(err, PeerClosed::Add6BeforeHello), "{err}");
        assert!(
            err.to_string()
                .starts_with("the first message is not a hello"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_cut_inside_an_ipv6_announcement_says_so() {
        let mut inbound = Inbound::default();
        let mut bytes = wire(&[ClientMsg::hello()]);
        bytes.extend_from_slice(&add6(1).encode()[..20]);
        assert!(events(&mut inbound, &bytes).unwrap().is_empty());
        let reason = inbound.at_eof();
        assert_eq!(reason.to_string(), "closed mid-message (20 of 50 bytes)");
        // Cut inside its head, it is a message like any.
        let mut inbound = Inbound::default();
        let mut bytes = wire(&[ClientMsg::hello()]);
        bytes.extend_from_slice(&add6(1).encode()[..9]);
        events(&mut inbound, &bytes).unwrap();
        assert_eq!(
            inbound.at_eof().to_string(),
            "closed mid-message (9 of 14 bytes)"
        );
    }
}
