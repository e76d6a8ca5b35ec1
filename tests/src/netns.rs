//! Entering a network namespace from the test process (one thread at a time).

use std::{fs::File, marker::PhantomData, os::fd::AsRawFd};

/// While alive, the current thread runs in another network namespace (so
/// interface names, netlink and sockets resolve there). Dropping it returns
/// the thread to the namespace it came from. Not `Send`: `setns` is per thread.
pub struct NetnsGuard {
    original: File,
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Moves the current thread into the named namespace (`ip netns` name).
    pub fn enter(name: &str) -> Self {
        let original =
            File::open("/proc/thread-self/ns/net").expect("open this thread's network namespace");
        let target = File::open(format!("/run/netns/{name}"))
            .unwrap_or_else(|e| panic!("open network namespace {name}: {e}"));
        setns(&target, name);
        Self {
            original,
            _not_send: PhantomData,
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        setns(&self.original, "original");
    }
}

fn setns(ns: &File, name: &str) {
    // SAFETY: a valid namespace fd; CLONE_NEWNET only affects this thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "setns into {name}: {}",
        std::io::Error::last_os_error()
    );
}
