//! Reply capture: the XDP side of intercept. [`xdp::ReplyProgram`] loads the
//! drop-and-report program, fills its target table and attaches it;
//! [`ring::ReplyRing`] reads the header records it reports.

pub mod ring;
pub mod xdp;
