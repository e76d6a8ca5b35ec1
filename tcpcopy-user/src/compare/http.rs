//! HTTP/1.x responses out of a byte stream, incrementally.
//!
//! [`ResponseStream::push`] takes the server's bytes as they come (any
//! split); complete responses queue up for [`ResponseStream::pop`]. Bodies
//! are framed as RFC 9112 says for responses: none for 1xx, 204 and 304;
//! chunked when the last transfer coding is chunked; else Content-Length;
//! else until the connection ends ([`ResponseStream::finish`]). Interim 1xx
//! responses are skipped (both sides send them alike). A body beyond the
//! cap is consumed but not kept (`truncated`). Bytes that are not HTTP make
//! the stream fail once; it then ignores everything. (A response to HEAD
//! has no body whatever it says: the stream cannot know the request, so a
//! HEAD answer with a Content-Length misframes; comparison then counts the
//! stream unparsed rather than guess.)

use std::collections::VecDeque;

/// Header lines parsed per response at most.
const MAX_HEADERS: usize = 96;
/// A head larger than this is not HTTP we can compare.
const MAX_HEAD: usize = 64 << 10;

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercase, values as sent (trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked framing removed), at most the cap.
    pub body: Vec<u8>,
    /// The body was longer than the cap.
    pub truncated: bool,
}

impl HttpResponse {
    /// Memory the response takes, about.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 48)
                .sum::<usize>()
            + 64
    }

    /// The values of header `name` (lowercase), joined by `, `.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    /// In a chunk's data: bytes left (then its CRLF).
    Chunk(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
    Close,
}

#[derive(Debug)]
enum State {
    Head,
    Body(HttpResponse, Framing),
    Failed(String),
}

/// The responses in one direction of one connection.
#[derive(Debug)]
pub struct ResponseStream {
    buf: Vec<u8>,
    cap: usize,
    state: State,
    ready: VecDeque<HttpResponse>,
    /// Memory the ready responses take.
    ready_bytes: usize,
}

impl ResponseStream {
    /// Bodies are kept up to `cap` bytes each.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            state: State::Head,
            ready: VecDeque::new(),
            ready_bytes: 0,
        }
    }

    /// Why the stream could not be parsed, once it could not.
    pub fn failure(&self) -> Option<&str> {
        match &self.state {
            State::Failed(why) => Some(why),
            _ => None,
        }
    }

    /// The next complete response.
    pub fn pop(&mut self) -> Option<HttpResponse> {
        let r = self.ready.pop_front()?;
        self.ready_bytes -= r.size();
        Some(r)
    }

    /// Memory the complete responses waiting take.
    pub fn waiting_bytes(&self) -> usize {
        self.ready_bytes
    }

    fn push_ready(&mut self, resp: HttpResponse) {
        self.ready_bytes += resp.size();
        self.ready.push_back(resp);
    }

    /// Complete responses waiting to be popped.
    pub fn waiting(&self) -> usize {
        self.ready.len()
    }

    /// Drops everything and ignores the rest of the stream.
    pub fn abandon(&mut self, why: &str) {
        self.ready.clear();
        self.ready_bytes = 0;
        self.fail(why.to_owned());
    }

    /// Puts a response taken by [`pop`](Self::pop) back in front.
    pub fn unpop(&mut self, resp: HttpResponse) {
        self.ready_bytes += resp.size();
        self.ready.push_front(resp);
    }

    /// Feeds the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.advance();
    }

    /// The connection ended: a close-delimited body is complete now.
    pub fn finish(&mut self) {
        if let State::Body(_, Framing::Close) = self.state {
            let State::Body(resp, _) = std::mem::replace(&mut self.state, State::Head) else {
                unreachable!()
            };
            self.push_ready(resp);
        }
    }

    fn fail(&mut self, why: impl Into<String>) {
        self.state = State::Failed(why.into());
        self.buf = Vec::new();
    }

    fn advance(&mut self) {
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Head) {
                State::Failed(why) => {
                    self.state = State::Failed(why);
                    return;
                }
                State::Head => self.head(),
                State::Body(resp, framing) => self.body(resp, framing),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Parses a head; whether it consumed one.
    fn head(&mut self) -> bool {
        if self.buf.is_empty() {
            return false;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let n = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() > MAX_HEAD {
                    self.fail("a response head over 64 KiB");
                }
                return false;
            }
            Err(e) => {
                self.fail(format!("not an HTTP/1.x response: {e}"));
                return false;
            }
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_owned(),
                )
            })
            .collect();
        self.buf.drain(..n);
        let resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
            truncated: false,
        };
        if (100..200).contains(&status) {
            // Interim: the final response follows.
            return true;
        }
        let chunked = resp
            .header("transfer-encoding")
            .and_then(|te| {
                te.rsplit(',')
                    .next()
                    .map(|c| c.trim().eq_ignore_ascii_case("chunked"))
            })
            .unwrap_or(false);
        let framing = if status == 204 || status == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::ChunkSize
        } else if let Some(len) = resp.header("content-length") {
            match len.split(',').next().unwrap_or("").trim().parse::<u64>() {
                Ok(n) => Framing::Length(n),
                Err(_) => {
                    self.fail(format!("a Content-Length that is no number: {len:?}"));
                    return false;
                }
            }
        } else {
            Framing::Close
        };
        self.state = State::Body(resp, framing);
        true
    }

    /// Keeps up to the cap of `bytes` in `resp`'s body.
    fn keep(cap: usize, resp: &mut HttpResponse, bytes: &[u8]) {
        let room = cap.saturating_sub(resp.body.len());
        if bytes.len() > room {
            resp.truncated = true;
        }
        resp.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Reads body bytes; whether it made progress.
    fn body(&mut self, mut resp: HttpResponse, framing: Framing) -> bool {
        let (next, used, done) = match framing {
            Framing::Length(left) => {
                let take = (left as usize).min(self.buf.len());
                Self::keep(self.cap, &mut resp, &self.buf[..take]);
                let left = left - take as u64;
                (Framing::Length(left), take, left == 0)
            }
            Framing::Close => {
                let take = self.buf.len();
                Self::keep(self.cap, &mut resp, &self.buf[..take]);
                (Framing::Close, take, false)
            }
            Framing::Chunk(left) => {
                let take = (left as usize).min(self.buf.len());
                Self::keep(self.cap, &mut resp, &self.buf[..take]);
                let left = left - take as u64;
                let next = if left == 0 {
                    Framing::ChunkEnd
                } else {
                    Framing::Chunk(left)
                };
                (next, take, false)
            }
            Framing::ChunkSize | Framing::ChunkEnd | Framing::Trailers => {
                let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    if self.buf.len() > 4096 {
                        self.fail("a chunk line over 4 KiB");
                    } else {
                        self.state = State::Body(resp, framing);
                    }
                    return false;
                };
                let line = &self.buf[..eol];
                let used = eol + 2;
                match framing {
                    Framing::ChunkEnd if line.is_empty() => (Framing::ChunkSize, used, false),
                    Framing::ChunkEnd => {
                        self.fail("chunk data not followed by CRLF");
                        return false;
                    }
                    Framing::Trailers if line.is_empty() => (Framing::Trailers, used, true),
                    Framing::Trailers => (Framing::Trailers, used, false),
                    _ => {
                        let text = String::from_utf8_lossy(line);
                        let size = text.split(';').next().unwrap_or("").trim();
                        match u64::from_str_radix(size, 16) {
                            Ok(0) => (Framing::Trailers, used, false),
                            Ok(n) => (Framing::Chunk(n), used, false),
                            Err(_) => {
                                self.fail(format!("a chunk size that is no number: {text:?}"));
                                return false;
                            }
                        }
                    }
                }
            }
        };
        self.buf.drain(..used);
        if done {
            self.push_ready(resp);
            self.state = State::Head;
            return true;
        }
        self.state = State::Body(resp, next);
        used > 0 && !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(stream: &mut ResponseStream) -> Vec<HttpResponse> {
        std::iter::from_fn(|| stream.pop()).collect()
    }

    const PIPELINED: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello\
        HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nnot\r\n6\r\n found\r\n0\r\nX-T: 2\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n\
        HTTP/1.0 200 OK\r\n\r\nuntil the end";

    #[test]
    fn keep_alive_pipelined_chunked_and_close_delimited_responses_split_anywhere() {
        for step in 1..PIPELINED.len() {
            let mut s = ResponseStream::new(1 << 20);
            for chunk in PIPELINED.chunks(step) {
                s.push(chunk);
            }
            s.finish();
            let got = all(&mut s);
            let summary: Vec<(u16, String)> = got
                .iter()
                .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
                .collect();
            assert_eq!(
                summary,
                [
                    (200, "hello".to_owned()),
                    (404, "not found".to_owned()),
                    (304, String::new()),
                    (200, "until the end".to_owned()),
                ],
                "split every {step} bytes"
            );
            assert_eq!(got[0].header("x-a").as_deref(), Some("1"));
            assert!(s.failure().is_none());
        }
    }

    #[test]
    fn bodies_beyond_the_cap_are_consumed_and_marked_truncated() {
        let mut s = ResponseStream::new(3);
        s.push(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdefHTTP/1.1 204 No Content\r\n\r\n",
        );
        let got = all(&mut s);
        assert_eq!(got.len(), 2);
        assert_eq!((&got[0].body[..], got[0].truncated), (&b"abc"[..], true));
        assert_eq!((got[1].status, got[1].truncated), (204, false));
    }

    #[test]
    fn bytes_that_are_not_http_fail_the_stream_once() {
        let mut s = ResponseStream::new(100);
        s.push(b"+OK\r\n");
        assert!(s.failure().is_some());
        s.push(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(s.pop().is_none());
        let mut s = ResponseStream::new(100);
        s.push(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
        assert!(s.failure().unwrap().contains("Content-Length"));
        let mut s = ResponseStream::new(100);
        s.push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(s.failure().unwrap().contains("chunk size"));
    }
}
