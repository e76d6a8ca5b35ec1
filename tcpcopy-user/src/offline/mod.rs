//! Offline mode: replaying sessions recorded in a pcap or pcapng file
//! through the same engine, senders and intercept as live mode.
//!
//! [`reader`] reads the file (damage survived), [`link`] finds each
//! frame's IPv4 packet, [`source`] picks the client packets and paces
//! them, [`dryrun`] stands in for the network and the target when asked,
//! [`report`] shows progress and the final summary (`progress` decides
//! when, during a run), and [`writer`] writes pcap files (the dry run's
//! output, test captures).

pub mod dryrun;
pub mod link;
#[cfg(feature = "xdp")]
pub(crate) mod progress;
pub mod reader;
pub mod report;
pub mod source;
pub mod synth;
pub mod writer;

pub use source::{FileReport, OfflineSource, OpenError, Timing};
