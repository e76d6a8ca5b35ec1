//! A minimal raw IP sender (`IPPROTO_RAW`, the IPv4 header included): the
//! kernel routes each frame and resolves the next hop. Stands in until the
//! datalink senders of `send` are wired up.

use std::io;

use crate::{
    engine::Outbox,
    worker::{FrameSink, SinkCounts},
};

pub struct RawIpSink {
    fd: std::os::fd::OwnedFd,
    counts: SinkCounts,
}

impl RawIpSink {
    pub fn open() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            counts: SinkCounts::default(),
        })
    }
}

impl FrameSink for RawIpSink {
    fn send(&mut self, out: &mut Outbox) {
        use std::os::fd::AsRawFd;
        for frame in out.frames() {
            let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            to.sin_family = libc::AF_INET as u16;
            to.sin_addr.s_addr = u32::from_ne_bytes([frame[16], frame[17], frame[18], frame[19]]);
            // SAFETY: valid buffer and address for the duration of the call.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                    (&raw const to).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                )
            };
            if n < 0 {
                self.counts.dropped += 1;
            } else {
                self.counts.frames += 1;
                self.counts.bytes += frame.len() as u64;
            }
        }
    }

    fn poll(&mut self) {}

    fn counts(&self) -> SinkCounts {
        self.counts
    }
}
