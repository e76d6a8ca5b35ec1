//! Response comparison: does the target answer like production?
//!
//! Pure logic, fed byte streams: for each replayed session, the bytes
//! production's server sent its client and the bytes the target sent back
//! to tcpcopy, each in sequence order. How the streams are cut into
//! exchanges depends on the mode:
//!
//! - [`CompareMode::Http`]: each stream is parsed into HTTP/1.x responses
//!   ([`http::ResponseStream`]: keep-alive and pipelining, Content-Length,
//!   chunked, close-delimited bodies); the n-th response of the target is
//!   compared with production's n-th ([`diff::compare_http`]): status,
//!   headers (except ignored ones), body (JSON structurally, with ignored
//!   field paths; anything else byte for byte).
//! - [`CompareMode::Bytes`]: any protocol; the caller marks where each
//!   exchange ends (the next request started), and the bytes of the n-th
//!   exchanges are compared.
//!
//! A response larger than the cap is compared on its first `cap` bytes and
//! counted `truncated`; a stream that cannot be parsed is counted
//! `unparsed` and not compared further. Nothing here panics on any input.

pub mod diff;
pub mod http;
pub mod json;
pub mod report;
pub mod session;
pub mod streams;

/// How responses are compared (`--compare`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareMode {
    Http,
    Bytes,
}

impl std::str::FromStr for CompareMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "bytes" => Ok(Self::Bytes),
            _ => Err(format!(
                "`{s}` is not a comparison: http or bytes (or per port: http,6379=bytes)"
            )),
        }
    }
}

/// `--compare`: a mode for every online port, or per port:
/// `http`, `bytes`, `http,6379=bytes` (port 6379 in bytes mode, the others
/// in http mode), `80=http,6379=bytes` (only those two ports compared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareSpec {
    /// The mode of every port not listed (`None`: those are not compared).
    pub default: Option<CompareMode>,
    pub ports: Vec<(u16, CompareMode)>,
}

impl CompareSpec {
    /// The mode sessions to online port `port` are compared in.
    pub fn mode_for(&self, port: u16) -> Option<CompareMode> {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, m)| *m)
            .or(self.default)
    }

    /// Whether some port is compared in bytes mode.
    pub fn any_bytes(&self) -> bool {
        self.default == Some(CompareMode::Bytes)
            || self.ports.iter().any(|(_, m)| *m == CompareMode::Bytes)
    }
}

impl std::str::FromStr for CompareSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = Self {
            default: None,
            ports: Vec::new(),
        };
        for item in s.split(',').map(str::trim) {
            match item.split_once('=') {
                Some((port, mode)) => {
                    let port: u16 = port
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{port}` in `{item}` is not a port"))?;
                    if spec.ports.iter().any(|(p, _)| *p == port) {
                        return Err(format!("port {port} is given twice"));
                    }
                    spec.ports.push((port, mode.trim().parse()?));
                }
                None if spec.default.is_some() => {
                    return Err(format!("`{s}` gives more than one mode for every port"));
                }
                None => spec.default = Some(item.parse()?),
            }
        }
        Ok(spec)
    }
}

/// What to leave out of a comparison (`--compare-ignore`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    /// Header names, lowercase.
    pub headers: Vec<String>,
    /// JSON field paths, e.g. `meta.request_id` or `items[*].ts`.
    pub json_paths: Vec<json::JsonPath>,
}

impl IgnoreRules {
    /// The defaults: headers that differ between any two answers of the
    /// same build (the time of the answer, its connection handling).
    pub fn with_defaults() -> Self {
        Self {
            headers: ["date", "connection", "keep-alive"]
                .map(String::from)
                .to_vec(),
            json_paths: Vec::new(),
        }
    }

    /// Adds one `--compare-ignore` item: a JSON path when it starts with
    /// `$.` or contains `.`/`[`, else a header name.
    pub fn add(&mut self, item: &str) -> Result<(), String> {
        let item = item.trim();
        if let Some(path) = item.strip_prefix("$.") {
            self.json_paths.push(path.parse()?);
        } else if item.contains(['.', '[']) {
            self.json_paths.push(item.parse()?);
        } else if !item.is_empty()
            && item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            self.headers.push(item.to_ascii_lowercase());
        } else {
            return Err(format!(
                "`{item}` is neither a header name nor a JSON path ($.a.b, a.items[*].id)"
            ));
        }
        Ok(())
    }
}

/// How one exchange compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Equal,
    Different(Vec<Difference>),
}

/// One way two responses differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    Status {
        production: u16,
        target: u16,
    },
    /// A header present in one only, or with other values (lowercase name).
    Header {
        name: String,
        production: Option<String>,
        target: Option<String>,
    },
    /// JSON bodies differing at this path.
    JsonField {
        path: String,
    },
    /// Bodies (or, in bytes mode, exchanges) differing from this offset.
    Bytes {
        offset: usize,
        production_len: usize,
        target_len: usize,
    },
}

impl Difference {
    /// Whether `other` (a difference of the baseline's answer from
    /// production's) is the same difference as this one (the target's):
    /// the status, the same header, the same JSON field, or the body.
    pub fn same_place(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Status { .. }, Self::Status { .. }) => true,
            (Self::Header { name: a, .. }, Self::Header { name: b, .. }) => a == b,
            (Self::JsonField { path: a }, Self::JsonField { path: b }) => a == b,
            (Self::Bytes { .. }, Self::Bytes { .. }) => true,
            _ => false,
        }
    }

    /// The kind, for counters: `status`, `header`, `body`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Header { .. } => "header",
            Self::JsonField { .. } | Self::Bytes { .. } => "body",
        }
    }
}

/// Running totals of a comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompareCounts {
    pub compared: u64,
    pub equal: u64,
    pub different: u64,
    /// Exchanges with a status difference (one exchange may count in
    /// several kinds).
    pub status: u64,
    pub header: u64,
    pub body: u64,
    /// Responses compared on their first `cap` bytes only.
    pub truncated: u64,
    /// Streams that could not be parsed (counted once, then left).
    pub unparsed: u64,
    /// Sessions left uncompared: a stream had a hole (counted once).
    pub gaps: u64,
    /// `--compare-baseline`: exchanges whose every difference from
    /// production the baseline (production's own build) showed too: noise,
    /// not counted `different`.
    pub noise: u64,
    /// `--compare-baseline`: differing exchanges judged without the
    /// baseline's answer (it had none for the exchange, or not in time).
    pub unconfirmed: u64,
    /// Bytes mode: sessions left because the replay pipelined (the target
    /// fell behind production, so requests went out before the answers
    /// before them were whole, and the answers can no longer be told
    /// apart).
    pub unaligned: u64,
    /// Sessions left because one side ran too far ahead of the other (the
    /// replay lagged production by more than the answers kept allow).
    pub behind: u64,
}

impl CompareCounts {
    /// The totals in words (the summary's and the log's comparison line).
    pub fn describe(&self) -> String {
        format!(
            "{} responses, {} equal, {} different (status {}, headers {}, body {}){}; {} cut \
             at --compare-cap, {} sessions not HTTP, {} with a stream hole, {} pipelined in \
             bytes mode, {} too far behind production (not compared further)",
            self.compared,
            self.equal,
            self.different,
            self.status,
            self.header,
            self.body,
            if self.noise + self.unconfirmed > 0 {
                format!(
                    ", {} noise (the baseline differed alike), {} of the different without the \
                     baseline's answer",
                    self.noise, self.unconfirmed
                )
            } else {
                String::new()
            },
            self.truncated,
            self.unparsed,
            self.gaps,
            self.unaligned,
            self.behind
        )
    }

    /// An exchange whose differences the baseline showed too.
    pub fn record_noise(&mut self) {
        self.compared += 1;
        self.noise += 1;
    }

    pub fn record(&mut self, outcome: &Outcome) {
        self.compared += 1;
        match outcome {
            Outcome::Equal => self.equal += 1,
            Outcome::Different(diffs) => {
                self.different += 1;
                for kind in ["status", "header", "body"] {
                    if diffs.iter().any(|d| d.kind() == kind) {
                        match kind {
                            "status" => self.status += 1,
                            "header" => self.header += 1,
                            _ => self.body += 1,
                        }
                    }
                }
            }
        }
    }

    pub fn add(&mut self, o: &Self) {
        self.compared += o.compared;
        self.equal += o.equal;
        self.different += o.different;
        self.status += o.status;
        self.header += o.header;
        self.body += o.body;
        self.truncated += o.truncated;
        self.unparsed += o.unparsed;
        self.gaps += o.gaps;
        self.noise += o.noise;
        self.unconfirmed += o.unconfirmed;
        self.unaligned += o.unaligned;
        self.behind += o.behind;
    }
}

/// Compares two exchanges' bytes (bytes mode).
pub fn compare_bytes(production: &[u8], target: &[u8]) -> Outcome {
    match diff::first_difference(production, target) {
        None => Outcome::Equal,
        Some(offset) => Outcome::Different(vec![Difference::Bytes {
            offset,
            production_len: production.len(),
            target_len: target.len(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_items_are_header_names_or_json_paths() {
        let mut rules = IgnoreRules::with_defaults();
        rules.add("X-Request-Id").unwrap();
        rules.add("$.meta.ts").unwrap();
        rules.add("items[*].id").unwrap();
        assert!(rules.headers.contains(&"x-request-id".to_owned()));
        assert_eq!(rules.json_paths.len(), 2);
        assert!(rules.add("a b").is_err());
        assert!(rules.add("").is_err());
    }

    #[test]
    fn bytes_mode_reports_where_exchanges_part() {
        assert_eq!(compare_bytes(b"+OK\r\n", b"+OK\r\n"), Outcome::Equal);
        assert_eq!(
            compare_bytes(b"$3\r\nabc\r\n", b"$3\r\nabd\r\n"),
            Outcome::Different(vec![Difference::Bytes {
                offset: 6,
                production_len: 9,
                target_len: 9
            }])
        );
        let mut counts = CompareCounts::default();
        counts.record(&compare_bytes(b"a", b"a"));
        counts.record(&compare_bytes(b"a", b"ab"));
        assert_eq!((counts.compared, counts.equal, counts.body), (2, 1, 1));
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn modes_are_given_for_every_port_or_per_port() {
        let all: CompareSpec = "http".parse().unwrap();
        assert_eq!(all.mode_for(80), Some(CompareMode::Http));
        let mixed: CompareSpec = "http, 6379=bytes".parse().unwrap();
        assert_eq!(mixed.mode_for(6379), Some(CompareMode::Bytes));
        assert_eq!(mixed.mode_for(8080), Some(CompareMode::Http));
        assert!(mixed.any_bytes() && !all.any_bytes());
        let only: CompareSpec = "80=http".parse().unwrap();
        assert_eq!(
            (only.mode_for(80), only.mode_for(81)),
            (Some(CompareMode::Http), None)
        );
        for bad in [
            "xml",
            "http,bytes",
            "80=xml",
            "x=http",
            "80=http,80=bytes",
            "",
        ] {
            assert!(bad.parse::<CompareSpec>().is_err(), "{bad}");
        }
    }
}
