//! Reply capture: the XDP side of intercept.

pub mod xdp;
