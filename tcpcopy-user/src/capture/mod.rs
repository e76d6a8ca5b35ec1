//! Capture backends: where the client packets come from.

pub mod xdp;
