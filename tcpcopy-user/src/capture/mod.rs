//! Capture backends: where the client packets come from.

#[cfg(feature = "xdp")]
pub mod ring;
#[cfg(feature = "xdp")]
pub mod xdp;
#[cfg(feature = "xdp")]
pub mod xsk;
