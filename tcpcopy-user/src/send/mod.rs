//! Senders: put the engine's frames on the wire at the datalink level.
//!
//! A worker thread owns one [`FrameSender`] and hands it the engine's
//! [`Outbox`] after each batch of work. The sender writes each frame's
//! Ethernet header into the outbox headroom (source: the egress interface's
//! MAC; destination: the next hop's, see [`nexthop`]) and transmits the
//! frame, without ever blocking for long: a frame that cannot go out is
//! dropped and counted by [`DropReason`], never an error.
//!
//! Backends ([`SendBackend`]):
//! - [`afxdp`] (default): an AF_XDP socket bound to one TX queue of the
//!   egress interface; each frame is copied once into UMEM, submitted in
//!   batches, with a cap on frames in flight (veth and some drivers report
//!   frames done even when the peer drops them).
//! - [`packet_socket`] (`--send raw`): an `AF_PACKET` socket on the same
//!   interface, for where AF_XDP cannot be used; frames are sent straight
//!   from the outbox with `sendmmsg`.
//!
//! Both put the same bytes on the wire and share the framing step
//! ([`framer`]), so they can be compared and swapped freely.
//!
//! Everything here works in the network namespace of the thread that opens
//! the sender (sockets stay bound to it).

#[cfg(feature = "xdp")]
pub mod afxdp;
pub mod ethernet;
pub mod framer;
pub mod interface;
pub mod netlink;
pub mod nexthop;
pub mod packet_socket;
mod stats;
mod sys;

use std::{fmt, io, net::IpAddr, str::FromStr, time::Duration};

pub use ethernet::{MacAddr, MacParseError};
pub use interface::EgressInterface;
pub use nexthop::{ResolveCounters, ResolvePolicy};
pub use stats::{DropReason, SenderStats};

use crate::{engine::outbox::Outbox, packet::Address, shard::ReplyRecord};

/// The frames a sender puts on the wire: an engine's outbox, of either IP
/// family (the framer reads each packet's version).
pub trait FrameQueue {
    fn frame_count(&self) -> usize;
    /// Frame `i` with its headroom in front.
    fn frame_with_headroom(&self, i: usize) -> &[u8];
    fn frame_with_headroom_mut(&mut self, i: usize) -> &mut [u8];
}

impl<A: Address> FrameQueue for Outbox<A> {
    fn frame_count(&self) -> usize {
        Outbox::frame_count(self)
    }
    fn frame_with_headroom(&self, i: usize) -> &[u8] {
        Outbox::frame_with_headroom(self, i)
    }
    fn frame_with_headroom_mut(&mut self, i: usize) -> &mut [u8] {
        Outbox::frame_with_headroom_mut(self, i)
    }
}

/// Puts frames on the wire. One per worker thread; the worker owns it.
pub trait FrameSender: Send {
    /// Puts every frame of `out` on the wire (or counts why not); writes
    /// the Ethernet header into each frame's headroom. Never blocks for
    /// long; frames that cannot be sent are dropped and counted, never an
    /// error. Does not clear `out` (its announcements and events are the
    /// caller's).
    fn send(&mut self, out: &mut dyn FrameQueue);

    /// Reclaims completed frames and kicks the driver; call when idle too.
    fn poll(&mut self);

    /// Frames and bytes sent, drops by reason, next-hop resolution.
    fn stats(&self) -> SenderStats;

    /// Resolves the next hop of `dst` now, waiting up to `wait` (call at
    /// start for each target, so the first frames are not dropped while
    /// the kernel resolves). `None` when it could not be resolved in time.
    fn resolve_next_hop(&mut self, dst: IpAddr, wait: Duration) -> Option<MacAddr>;

    /// Which backend this is, and how it ended up bound.
    fn describe(&self) -> String;

    /// Replies that came back through the sender itself, handed to
    /// `on_reply` (the dry run's simulated target answers this way; real
    /// targets answer through intercept). Returns how many.
    fn take_replies(&mut self, on_reply: &mut dyn FnMut(ReplyRecord<'_>)) -> usize {
        let _ = on_reply;
        0
    }
}

/// How frames leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendBackend {
    /// AF_XDP TX (zero-copy where the driver allows, else copy mode).
    #[default]
    AfXdp,
    /// An `AF_PACKET` raw socket: the fallback where AF_XDP cannot be used.
    Raw,
}

impl SendBackend {
    pub const fn name(self) -> &'static str {
        match self {
            Self::AfXdp => "afxdp",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for SendBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SendBackend {
    type Err = SendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "afxdp" | "xdp" => Ok(Self::AfXdp),
            "raw" | "packet" => Ok(Self::Raw),
            other => Err(SendError::UnknownBackend(other.to_owned())),
        }
    }
}

/// Default cap on AF_XDP frames in flight (TOOLCHAIN section 6: lossless
/// on veth at about this many).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// Everything a sender needs to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// The egress interface (`-o dev`).
    pub interface: String,
    /// The next hop's MAC (`-x ...@mac`); `None`: resolve from the kernel.
    pub next_hop_mac: Option<MacAddr>,
    /// The interface queue to send on (AF_XDP binds to it).
    pub queue_id: u32,
    pub backend: SendBackend,
    /// AF_XDP: frames submitted and not yet completed, at most (1..=4096).
    pub max_in_flight: u32,
    /// How often the kernel is asked about next hops.
    pub resolve: ResolvePolicy,
}

impl SenderConfig {
    /// AF_XDP on queue 0 of `interface`, next hops from the kernel.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            next_hop_mac: None,
            queue_id: 0,
            backend: SendBackend::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            resolve: ResolvePolicy::default(),
        }
    }

    pub fn backend(mut self, backend: SendBackend) -> Self {
        self.backend = backend;
        self
    }

    pub fn next_hop_mac(mut self, mac: Option<MacAddr>) -> Self {
        self.next_hop_mac = mac;
        self
    }

    pub fn queue_id(mut self, queue_id: u32) -> Self {
        self.queue_id = queue_id;
        self
    }

    pub fn max_in_flight(mut self, frames: u32) -> Self {
        self.max_in_flight = frames;
        self
    }

    pub fn resolve_policy(mut self, policy: ResolvePolicy) -> Self {
        self.resolve = policy;
        self
    }

    /// Opens the configured backend in the calling thread's network
    /// namespace.
    pub fn open(&self) -> Result<Box<dyn FrameSender>, SendError> {
        match self.backend {
            #[cfg(feature = "xdp")]
            SendBackend::AfXdp => Ok(Box::new(afxdp::AfXdpSender::open(self)?)),
            #[cfg(not(feature = "xdp"))]
            SendBackend::AfXdp => Err(SendError::AfXdpNotBuilt),
            SendBackend::Raw => Ok(Box::new(packet_socket::PacketSocketSender::open(self)?)),
        }
    }
}

/// Why a sender could not open. (Once open, a sender never fails: it
/// counts.)
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "no network interface named {0:?} here (see `ip link`; check -o and the network namespace)"
    )]
    NoInterface(String),
    #[error("{0:?} is not a valid interface name (1 to 15 bytes, no NUL or '/')")]
    BadInterfaceName(String),
    #[error(
        "{iface} is not an Ethernet interface (ARPHRD {link_type}); tcpcopy sends Ethernet frames"
    )]
    NotEthernet { iface: String, link_type: u16 },
    #[error("cannot read {what} of {iface}: {source}")]
    InterfaceQuery {
        iface: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("unknown send backend {0:?}: use afxdp or raw")]
    UnknownBackend(String),
    #[error("this build has no AF_XDP support (the `xdp` feature is off); use --send raw")]
    AfXdpNotBuilt,
    #[error("the in-flight cap must be between 1 and 4096 frames, not {0}")]
    BadInFlightCap(u32),
    #[error("{iface} has MTU {mtu}: too small for IPv4/TCP (at least 68)")]
    MtuTooSmall { iface: String, mtu: usize },
    #[error("the next-hop MAC {0} is not a unicast address")]
    BadNextHopMac(MacAddr),
    #[error("cannot set up AF_XDP memory for {iface}: {reason}")]
    Umem { iface: String, reason: String },
    #[error(
        "cannot bind an AF_XDP socket to {iface} queue {queue}: zero-copy: {zero_copy}; \
         copy mode: {copy} (are we root, and does the queue exist? `--send raw` is the fallback)"
    )]
    AfXdpBind {
        iface: String,
        queue: u32,
        zero_copy: String,
        copy: String,
    },
    #[error("cannot open a packet socket on {iface}: {source} (root or CAP_NET_RAW needed)")]
    PacketSocket { iface: String, source: io::Error },
    #[error("cannot open a netlink socket to resolve next hops: {0} (or give the MAC: -x ...@mac)")]
    Netlink(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_from_their_cli_names() {
        assert_eq!("afxdp".parse::<SendBackend>().unwrap(), SendBackend::AfXdp);
        assert_eq!("raw".parse::<SendBackend>().unwrap(), SendBackend::Raw);
        let e = "pcap".parse::<SendBackend>().unwrap_err();
        assert!(e.to_string().contains("use afxdp or raw"), "{e}");
        assert_eq!(SendBackend::default(), SendBackend::AfXdp);
    }

    #[test]
    fn opening_on_a_missing_interface_says_which() {
        // Without the `xdp` feature there is no AF_XDP backend to ask.
        let backends: &[SendBackend] = if cfg!(feature = "xdp") {
            &[SendBackend::AfXdp, SendBackend::Raw]
        } else {
            &[SendBackend::Raw]
        };
        for &backend in backends {
            let e = SenderConfig::new("tcpcopy-none0")
                .backend(backend)
                .open()
                .err()
                .expect("no such interface");
            assert!(matches!(e, SendError::NoInterface(_)), "{backend}: {e}");
        }
    }
}
