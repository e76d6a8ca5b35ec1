//! T2: `--metrics` on both daemons in the lab. Prometheus' view is scraped
//! (curl, inside each daemon's namespace) while nginx traffic is replayed:
//! the counters move between scrapes, and once the replay has settled,
//! every value of each daemon's final statistics line is the value its
//! last scrape showed, under the metric name the code gives that key.

use std::collections::HashMap;

use tcpcopy_runtime::metrics::{Exporter, Stat};
use tcpcopy_tests::{
    intercept::{InterceptProcess, StatsLine},
    lab::{ASSISTANT6_IP, Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::start_nginx,
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

/// One scrape: every sample (name with its labels) and its value.
#[derive(Clone, Debug, PartialEq)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, sample: &str) -> f64 {
        *self
            .0
            .get(sample)
            .unwrap_or_else(|| panic!("no sample {sample} in the scrape: {:?}", self.0))
    }

    /// The samples that say what happened (the scrape-relative rate left
    /// out: it is not a total).
    fn totals(&self) -> HashMap<&str, f64> {
        self.0
            .iter()
            .filter(|(k, _)| !k.ends_with("_per_second"))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// `GET http://<at>/metrics` from inside `host`'s namespace.
fn scrape(lab: &Lab, host: Host, at: &str) -> Scrape {
    let out = lab.run(
        host,
        &[
            "curl",
            "-sf",
            "--max-time",
            "10",
            "-w",
            "%{content_type}",
            &format!("http://{at}/metrics"),
        ],
    );
    let (text, content_type) = out
        .rsplit_once("# EOF\n")
        .unwrap_or_else(|| panic!("an OpenMetrics text ends in `# EOF`: {out}"));
    assert_eq!(
        content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "{out}"
    );
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample is `name value`: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number: {line:?}"));
        assert!(
            samples.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    Scrape(samples)
}

/// Scrapes until two scrapes a second apart or more show the same totals;
/// returns the last one. `ready` must hold too.
fn settled(lab: &Lab, host: Host, at: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut prev: Option<(std::time::Instant, Scrape)> = None;
    wait_until(&format!("the metrics at {at} to settle"), DEADLINE, || {
        let now = scrape(lab, host, at);
        let stable = prev.as_ref().is_some_and(|(when, p)| {
            when.elapsed() >= std::time::Duration::from_secs(1) && p.totals() == now.totals()
        });
        if stable && ready(&now) {
            return Ok(now);
        }
        let seen = format!("{:?}", now.totals());
        if !prev
            .as_ref()
            .is_some_and(|(_, p)| p.totals() == now.totals())
        {
            prev = Some((std::time::Instant::now(), now));
        }
        Err(seen)
    })
}

/// Every key of `line` is in `scrape`, as the metric the code makes of
/// that key, with the same value; every other sample of `scrape` is one
/// the line does not print (`allowed`).
fn assert_line_equals_scrape(
    daemon: &str,
    line: &StatsLine,
    scrape: &Scrape,
    exporter: &Exporter,
    every_stat: &[Stat],
    allowed: &[&str],
) {
    let mut covered = Vec::new();
    for (key, value) in line {
        let kind = every_stat
            .iter()
            .find(|s| s.key == key.as_str())
            .unwrap_or_else(|| panic!("{daemon}: {key} is a key the code knows"))
            .kind;
        let (name, want) = exporter.sample(&Stat::new(key.clone(), *value, kind));
        assert_eq!(
            scrape.get(&name),
            want,
            "{daemon}: {key}={value} of the final line vs {name} of the last scrape"
        );
        covered.push(name);
    }
    for sample in scrape.0.keys() {
        let family = sample.split('{').next().unwrap_or_default();
        assert!(
            covered.iter().any(|c| c == sample) || allowed.iter().any(|a| family.starts_with(a)),
            "{daemon}: {sample} is on no statistics line"
        );
    }
}

fn curl(lab: &Lab, from: u32, to: u32) {
    for i in from..to {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{ONLINE_IP}/m/{i}"),
            ],
        );
    }
}

fn requests_at_target(target: &tcpcopy_tests::servers::Nginx, n: usize) {
    wait_until(&format!("{n} requests at the target"), DEADLINE, || {
        let got = target.requests().len();
        if got >= n {
            Ok(())
        } else {
            Err(format!("{got}"))
        }
    });
}

const TCPCOPY_METRICS: &str = "127.0.0.1:9530";
const INTERCEPT_METRICS: &str = "127.0.0.1:9531";

#[test]
fn scraped_metrics_follow_the_replay_and_equal_the_final_statistics() {
    let lab = Lab::new();
    let _online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let intercept = InterceptProcess::start(
        &lab,
        &[
            "--target",
            "198.18.2.2:80",
            "--stats-interval",
            "1",
            "--metrics",
            INTERCEPT_METRICS,
        ],
    );
    let tcpcopy = TcpcopyProcess::start(
        &lab,
        &[
            "-x",
            &format!("80-{TARGET_IP}:80"),
            "-s",
            "198.18.2.3",
            "-i",
            "eth0",
            "-o",
            "eth1",
            "--metrics",
            TCPCOPY_METRICS,
        ],
    );
    let t0 = scrape(&lab, Host::Online, TCPCOPY_METRICS);
    let version = format!(
        "tcpcopy_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(t0.get(&version), 1.0);
    assert_eq!(t0.get("tcpcopy_links_up"), 1.0);
    assert_eq!(t0.get("tcpcopy_captured_total"), 0.0);

    // Traffic, in two rounds; a scrape of each daemon after each.
    const N: u32 = 10;
    curl(&lab, 0, N);
    requests_at_target(&target, N as usize);
    let t1 = scrape(&lab, Host::Online, TCPCOPY_METRICS);
    let i1 = scrape(&lab, Host::Assistant, INTERCEPT_METRICS);
    curl(&lab, N, 2 * N);
    requests_at_target(&target, 2 * N as usize);
    let t2 = scrape(&lab, Host::Online, TCPCOPY_METRICS);
    let i2 = scrape(&lab, Host::Assistant, INTERCEPT_METRICS);
    for counter in [
        "tcpcopy_captured_total",
        "tcpcopy_xdp_copied_total",
        "tcpcopy_sessions_syn_total",
        "tcpcopy_requests_total",
        "tcpcopy_frames_out_total",
        "tcpcopy_link_records_total",
        "tcpcopy_response_time_seconds_count{server=\"target\"}",
    ] {
        assert!(
            t0.0.get(counter).copied().unwrap_or(0.0) < t1.get(counter)
                && t1.get(counter) < t2.get(counter),
            "{counter} moves: {:?} {} {}",
            t0.0.get(counter),
            t1.get(counter),
            t2.get(counter)
        );
    }
    for counter in [
        "intercept_ring_records_total",
        "intercept_delivered_total",
        "intercept_announced_total",
        "intercept_xdp_reported_total",
    ] {
        assert!(
            i1.get(counter) > 0.0 && i1.get(counter) < i2.get(counter),
            "{counter} moves: {} {}",
            i1.get(counter),
            i2.get(counter)
        );
    }
    assert_eq!(i2.get("intercept_peers"), 1.0);

    // Settled: every session closed, nothing moves. The final line at the
    // stop is then what the last scrape said, key by key.
    let t3 = settled(&lab, Host::Online, TCPCOPY_METRICS, |s| {
        s.get("tcpcopy_closed_completed_total") >= f64::from(2 * N)
            && s.get("tcpcopy_sessions") == 0.0
    });
    let (status, fin) = tcpcopy.stop();
    assert!(status.success(), "tcpcopy exit: {status}");
    assert_eq!(fin["closed_completed"], u64::from(2 * N), "{fin:?}");
    assert_line_equals_scrape(
        "tcpcopy",
        &fin,
        &t3,
        &tcpcopy_user::metrics::exporter(),
        &tcpcopy_user::metrics::every_stat(),
        &[
            "tcpcopy_build_info",
            "tcpcopy_captured_per_second",
            "tcpcopy_response_time_seconds",
        ],
    );
    assert_eq!(
        t3.get("tcpcopy_response_time_seconds_count{server=\"target\"}"),
        fin["responses_timed"] as f64,
        "the histogram counts the responses timed"
    );

    // intercept, once tcpcopy's connection is gone.
    let i3 = settled(&lab, Host::Assistant, INTERCEPT_METRICS, |s| {
        s.get("intercept_peers") == 0.0
    });
    let (status, fin) = intercept.stop();
    assert!(status.success(), "intercept exit: {status}");
    assert!(fin["delivered"] > 0, "{fin:?}");
    assert_line_equals_scrape(
        "intercept",
        &fin,
        &i3,
        &intercept_user::metrics::exporter(),
        &intercept_user::metrics::every_stat(),
        &["intercept_build_info"],
    );
}

#[test]
fn metrics_are_served_on_an_ipv6_address() {
    let lab = Lab::with(LabSpec {
        ipv6: true,
        ..LabSpec::default()
    });
    let at = format!("[{ASSISTANT6_IP}]:9531");
    let _intercept =
        InterceptProcess::start(&lab, &["--target", "198.18.2.2:80", "--metrics", &at]);
    let s = scrape(&lab, Host::Assistant, &at);
    assert_eq!(s.get("intercept_peers"), 0.0);
    assert_eq!(s.get("intercept_xdp_matched_total"), 0.0);
    // And from another host of the LAN (the way Prometheus reaches it).
    let from_online = scrape(&lab, Host::Online, &at);
    assert!(from_online.0.contains_key("intercept_ring_records_total"));
}

#[test]
fn scrapes_in_a_tight_loop_take_nothing_from_the_replay() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let _intercept = InterceptProcess::start(
        &lab,
        &["--target", "198.18.2.2:80", "--metrics", INTERCEPT_METRICS],
    );
    let tcpcopy = TcpcopyProcess::start(
        &lab,
        &[
            "-x",
            &format!("80-{TARGET_IP}:80"),
            "-s",
            "198.18.2.3",
            "-i",
            "eth0",
            "-o",
            "eth1",
            "--workers",
            "2",
            "--metrics",
            TCPCOPY_METRICS,
        ],
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let scrapes = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = scrape(&lab, Host::Online, TCPCOPY_METRICS);
                let i = scrape(&lab, Host::Assistant, INTERCEPT_METRICS);
                seen.push((
                    t.get("tcpcopy_captured_total"),
                    i.get("intercept_delivered_total"),
                ));
            }
            seen
        });
        // Keep-alive connections, many requests each, for two seconds.
        lab.run(
            Host::Client,
            &[
                "wrk",
                "-t2",
                "-c8",
                "-d2s",
                &format!("http://{ONLINE_IP}/scraped"),
            ],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        scraper.join().expect("the scraper")
    });
    assert!(scrapes.len() >= 5, "scraped {} times", scrapes.len());
    assert!(
        scrapes
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "counters never go back: {scrapes:?}"
    );
    assert!(
        scrapes.windows(2).any(|w| w[0].0 < w[1].0),
        "captured moved while scraped: {scrapes:?}"
    );
    let want = online.requests_settled(&lab).len();
    assert!(want > 200, "wrk made {want} requests");
    wait_until(&format!("{want} requests at the target"), DEADLINE, || {
        let got = target.requests().len();
        if got == want {
            Ok(())
        } else {
            Err(format!("{got} of {want}"))
        }
    });
    let (status, fin) = tcpcopy.stop();
    assert!(status.success());
    assert_eq!(fin["xdp_ring_full"], 0, "{fin:?}");
    assert_eq!(fin["send_dropped"], 0, "{fin:?}");
}
