//! Types shared by the kernel side (the XDP programs in `tcpcopy-ebpf` and
//! `intercept-ebpf`) and the userspace daemons.
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of implicit padding,
//! so the same bytes mean the same thing on both sides of a BPF map. Each
//! shared type carries a size assertion; byte order is documented per field.
//! The `user` feature adds the `aya::Pod` impls userspace needs.
#![no_std]

pub mod capture;
pub mod counters;
pub mod pkt;
pub mod proto;
pub mod table;
