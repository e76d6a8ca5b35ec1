//! Real servers inside the lab (from Debian's packages), each with its own
//! configuration and logs in the lab's directory.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use crate::{
    lab::{Host, Lab},
    wait::{DEADLINE, wait_until},
};

/// An nginx instance answering `200 ok` on every URI.
pub struct Nginx {
    pub addr: SocketAddr,
    /// The lab host it runs in.
    pub host: Host,
    /// One line per request: `$request_method $request_uri $status`.
    pub access_log: PathBuf,
    /// Files served as `/files/<name>`.
    pub files: PathBuf,
}

impl Nginx {
    /// The requests logged so far, one `METHOD URI STATUS` string each.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The requests logged once nginx holds no open connection on its
    /// address any more. nginx writes a request's log line after sending
    /// the answer, and a load generator stopped by its clock abandons
    /// requests in flight that nginx still serves and logs: read right
    /// after the client exits, the log can miss the last few.
    pub fn requests_settled(&self, lab: &Lab) -> Vec<String> {
        let local = self.addr.to_string();
        wait_until(
            &format!("nginx at {local} to finish its connections"),
            DEADLINE,
            || {
                let out = lab.run(self.host, &["ss", "-Htan"]);
                let open: Vec<&str> = out
                    .lines()
                    .filter(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        cols.len() >= 4
                            && cols[3] == local
                            && !matches!(cols[0], "LISTEN" | "TIME-WAIT")
                    })
                    .collect();
                if open.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} open: {:?}",
                        open.len(),
                        &open[..open.len().min(3)]
                    ))
                }
            },
        );
        self.requests()
    }
}

/// Starts nginx in `host` listening on each of `ports` at `addr`; returns
/// once the first port accepts.
pub fn start_nginx(lab: &Lab, host: Host, addr: impl Into<IpAddr>, ports: &[u16]) -> Nginx {
    start_nginx_with(lab, host, addr, ports, "")
}

/// As [`start_nginx`], with `locations` (nginx `location` blocks) in the
/// server before the catch-all one.
pub fn start_nginx_with(
    lab: &Lab,
    host: Host,
    addr: impl Into<IpAddr>,
    ports: &[u16],
    locations: &str,
) -> Nginx {
    let addr = addr.into();
    let dir = lab
        .dir()
        .join(format!("nginx-{host:?}-{addr}-{}", ports[0]));
    std::fs::create_dir_all(dir.join("files")).expect("create the nginx directory");
    let access_log = dir.join("access.log");
    let listens: String = ports
        .iter()
        .map(|p| {
            let at = SocketAddr::new(addr, *p);
            format!("        listen {at} reuseport backlog=4096;\n")
        })
        .collect();
    let d = dir.display();
    let conf = format!(
        "daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         user root;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   log_format requests '$request_method $request_uri $status';\n\
         \x20   access_log {d}/access.log requests;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   server {{\n\
         {listens}\
         {locations}\
         \x20       location / {{ return 200 \"ok\\n\"; }}\n\
         \x20       location /files/ {{ alias {d}/files/; }}\n\
         \x20   }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let conf_arg = conf_path.to_string_lossy().into_owned();
    let prefix = dir.to_string_lossy().into_owned();
    let log_name = format!("nginx-{host:?}-{}.out", ports[0]);
    lab.spawn(
        host,
        &log_name,
        &["nginx", "-p", &prefix, "-e", "stderr", "-c", &conf_arg],
    );
    for port in ports {
        lab.wait_for_port(host, SocketAddr::new(addr, *port));
    }
    Nginx {
        addr: SocketAddr::new(addr, ports[0]),
        host,
        access_log,
        files: dir.join("files"),
    }
}

/// A redis-server instance without persistence.
pub struct Redis {
    pub addr: SocketAddr,
}

/// Starts redis-server in `host` on `addr:port`; returns once it accepts.
pub fn start_redis(lab: &Lab, host: Host, addr: impl Into<IpAddr>, port: u16) -> Redis {
    let addr = addr.into();
    let dir = lab.dir().join(format!("redis-{host:?}-{port}"));
    std::fs::create_dir_all(&dir).expect("create the redis directory");
    let dir_arg = dir.to_string_lossy().into_owned();
    let (addr_arg, port_arg) = (addr.to_string(), port.to_string());
    let log_name = format!("redis-{host:?}-{port}.out");
    lab.spawn(
        host,
        &log_name,
        &[
            "redis-server",
            "--bind",
            &addr_arg,
            "--port",
            &port_arg,
            "--dir",
            &dir_arg,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ],
    );
    let sock = SocketAddr::new(addr, port);
    lab.wait_for_port(host, sock);
    Redis { addr: sock }
}

impl Redis {
    /// Every key and its value, sorted (`--scan`, then MGETs through
    /// redis-cli's standard input, 500 keys each).
    pub fn dump(&self, lab: &Lab, host: Host) -> Vec<(String, String)> {
        use std::io::Write;
        let (h, p) = (self.addr.ip().to_string(), self.addr.port().to_string());
        let keys = lab.run(host, &["redis-cli", "-h", &h, "-p", &p, "--scan"]);
        let mut keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        keys.sort_unstable();
        if keys.is_empty() {
            return Vec::new();
        }
        let mut child = lab
            .command(host, "redis-cli")
            .args(["-h", &h, "-p", &p, "--raw"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start redis-cli");
        let mut stdin = child.stdin.take().expect("piped");
        let commands: String = keys
            .chunks(500)
            .map(|c| format!("MGET {}\n", c.join(" ")))
            .collect();
        let writer = std::thread::spawn(move || stdin.write_all(commands.as_bytes()));
        let out = child.wait_with_output().expect("redis-cli finished");
        writer
            .join()
            .expect("writer thread")
            .expect("write the commands");
        let values = String::from_utf8_lossy(&out.stdout).into_owned();
        let values: Vec<&str> = values.lines().collect();
        assert_eq!(values.len(), keys.len(), "one value per key");
        keys.into_iter()
            .zip(values)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Waits until this Redis (in `host`: a replay's target) holds as many
    /// keys as `production` (in `production_host`), then asserts every key
    /// and value is the same (counters and lists too: every command, in
    /// order, exactly once). Production must hold more than `min_keys`.
    pub fn assert_same_keys_as(
        &self,
        lab: &Lab,
        host: Host,
        production: &Redis,
        production_host: Host,
        min_keys: usize,
    ) {
        let want = production.dump(lab, production_host);
        assert!(
            want.len() > min_keys,
            "production holds {} keys",
            want.len()
        );
        let want_size = production.dbsize(lab, production_host);
        wait_until("the target to hold production's keys", DEADLINE, || {
            let n = self.dbsize(lab, host);
            if n >= want_size {
                Ok(())
            } else {
                Err(format!("{n} of {want_size} keys"))
            }
        });
        let got = self.dump(lab, host);
        let differ: Vec<_> = want
            .iter()
            .zip(&got)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert_eq!(got.len(), want.len(), "key count");
        assert!(differ.is_empty(), "values differ: {differ:?}");
    }

    /// DBSIZE.
    pub fn dbsize(&self, lab: &Lab, host: Host) -> u64 {
        let (h, p) = (self.addr.ip().to_string(), self.addr.port().to_string());
        let out = lab.run(host, &["redis-cli", "-h", &h, "-p", &p, "DBSIZE"]);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("DBSIZE said {out:?}: {e}"))
    }
}

/// redis-benchmark from the client to `host` (an IPv4 or IPv6 address):
/// SET, INCR and LPUSH over random keys, 3,000 requests each, 20
/// connections.
pub fn redis_benchmark(lab: &Lab, host: &str) {
    lab.run(
        Host::Client,
        &[
            "redis-benchmark",
            "-h",
            host,
            "-p",
            "6379",
            "-t",
            "set,incr,lpush",
            "-n",
            "3000",
            "-r",
            "100000",
            "-c",
            "20",
            "-d",
            "24",
            "-q",
        ],
    );
}

/// `--compare` tests: the ten exchanges of [`COMPARE_PRODUCTION`]'s URIs
/// on `base` (e.g. `http://198.18.1.1`): one keep-alive connection asking
/// all five, then one connection each; six of them different at a target
/// serving [`COMPARE_TARGET`].
pub fn compare_http_exchanges(lab: &Lab, base: &str) {
    let urls: Vec<String> = ["same", "status", "body", "header", "json"]
        .iter()
        .map(|p| format!("{base}/cmp/{p}"))
        .collect();
    let mut all = vec!["curl", "-gs"];
    for u in &urls {
        all.extend(["-o", "/dev/null", u.as_str()]);
    }
    lab.run(Host::Client, &all);
    for u in &urls {
        lab.run(Host::Client, &["curl", "-gs", "-o", "/dev/null", u]);
    }
}

/// `--compare` tests: nginx locations of production, and of the target: the same on two URIs (one a
/// JSON object with its members reordered), different on three: the
/// status, the body (of the same length), an extra header.
pub const COMPARE_PRODUCTION: &str = "\
        location = /cmp/same { return 200 \"same\\n\"; }
        location = /cmp/status { return 200 \"fine\\n\"; }
        location = /cmp/body { return 200 \"production body\\n\"; }
        location = /cmp/header { return 200 \"h\\n\"; }
        location = /cmp/json { default_type application/json; return 200 '{\"a\":1,\"b\":[1,2],\"c\":{\"d\":\"x\"}}'; }
";
pub const COMPARE_TARGET: &str = "\
        location = /cmp/same { return 200 \"same\\n\"; }
        location = /cmp/status { return 503 \"fine\\n\"; }
        location = /cmp/body { return 200 \"target   body!!\\n\"; }
        location = /cmp/header { add_header X-Extra yes; return 200 \"h\\n\"; }
        location = /cmp/json { default_type application/json; return 200 '{\"c\":{\"d\":\"x\"},\"b\":[1,2],\"a\":1}'; }
";

/// `--compare bytes` tests: keys `k1`..`k5` set alike on production's and
/// the target's Redis (`value-N`), but for `k3`, which holds `changed` at
/// the target.
pub fn redis_keys_with_one_planted_difference(lab: &Lab) {
    for (host, addr) in [(Host::Online, "198.18.1.1"), (Host::Target, "198.18.2.2")] {
        for k in 1..=5 {
            let value = if k == 3 && host == Host::Target {
                "changed".to_owned()
            } else {
                format!("value-{k}")
            };
            lab.run(
                host,
                &["redis-cli", "-h", addr, "SET", &format!("k{k}"), &value],
            );
        }
    }
}

/// `--compare bytes` tests: ten GETs of `k1`..`k5` to production's Redis:
/// one connection per GET, then all five on one connection, each answered
/// before the next (bash's /dev/tcp: redis-cli would begin with COMMAND
/// DOCS, whose answer lists commands in each server's own order).
pub fn redis_get_exchanges(lab: &Lab) {
    for k in 1..=5 {
        lab.run(
            Host::Client,
            &["redis-cli", "-h", "198.18.1.1", "GET", &format!("k{k}")],
        );
    }
    lab.run(
        Host::Client,
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/198.18.1.1/6379; for k in 1 2 3 4 5; do printf 'GET k%s\\r\\n' $k >&3; \
             read -r a <&3; read -r b <&3; echo \"$b\"; done; exec 3>&-",
        ],
    );
}
