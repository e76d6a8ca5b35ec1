//! A paced HTTP load from the lab's client, for the fault tests: a few
//! connections at once, each a session of a fixed number of keep-alive
//! requests with unique URIs (`/<tag>/<conn>/<session>/<request>`), paced
//! to an overall rate. Records every session: when it started and ended
//! and which requests production answered, so a test can say which
//! sessions production completed after a fault ended and check each of
//! them at the target.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    lab::{Host, Lab},
    netns::NetnsGuard,
};

/// One session (connection) production served.
#[derive(Clone, Debug)]
pub struct Session {
    pub started: Instant,
    pub ended: Instant,
    /// `GET <uri>` of each request production answered, in order.
    pub requests: Vec<String>,
}

/// A running load; [`Load::stop`] ends it and returns every session.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl Load {
    /// `conns` connections to `server` from the client host, sessions of
    /// `per_session` requests, `rate` requests per second in all.
    pub fn start(
        lab: &Lab,
        server: SocketAddr,
        tag: &str,
        conns: usize,
        per_session: usize,
        rate: f64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let gap = Duration::from_secs_f64(conns as f64 / rate);
        let threads = (0..conns)
            .map(|c| {
                let ns = lab.ns(Host::Client);
                let (stop, sessions, tag) = (stop.clone(), sessions.clone(), tag.to_owned());
                std::thread::spawn(move || {
                    let _in = NetnsGuard::enter(&ns);
                    let mut s = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(done) = session(server, &tag, c, s, per_session, gap, &stop) {
                            sessions.lock().unwrap().push(done);
                        }
                        s += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            threads,
            sessions,
        }
    }

    /// Ends the load (the sessions under way finish first).
    pub fn stop(self) -> Vec<Session> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let mut all = self.sessions.lock().unwrap().clone();
        all.sort_by_key(|s| s.started);
        all
    }
}

/// One keep-alive session; `None` if production failed it (it never does
/// in these tests: the faults are on the replay's side).
fn session(
    server: SocketAddr,
    tag: &str,
    conn: usize,
    s: usize,
    n: usize,
    gap: Duration,
    stop: &AtomicBool,
) -> Option<Session> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.set_nodelay(true).ok()?;
    let mut requests = Vec::new();
    let mut next = Instant::now();
    for r in 0..n {
        if r > 0 && stop.load(Ordering::Relaxed) {
            break;
        }
        let uri = format!("/{tag}/{conn}/{s}/{r}");
        let req = format!("GET {uri} HTTP/1.1\r\nHost: lab\r\n\r\n");
        stream.write_all(req.as_bytes()).ok()?;
        read_response(&mut stream)?;
        requests.push(format!("GET {uri}"));
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    drop(stream);
    Some(Session {
        started,
        ended: Instant::now(),
        requests,
    })
}

/// Reads one response with a Content-Length body.
fn read_response(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(());
        }
    }
}
