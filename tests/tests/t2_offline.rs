//! T2: offline mode in the lab. Real traffic is recorded with tcpdump on
//! the online host while real clients talk to production, then replayed
//! from the file, through intercept, against the target: every recorded
//! request must reach it. The same recording is replayed as pcapng, as
//! Linux cooked captures (v1 and v2, recorded with `tcpdump -i any`), with
//! VLAN tags, with garbage in the middle and cut off.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tcpcopy_tests::{
    capture::{Tcpdump, finish_all, pcap_record_offsets, records, to_pcapng, with_vlan_tag},
    intercept::InterceptProcess,
    lab::{Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::{Nginx, start_nginx, start_redis},
    tcpcopy::{Finished, run_to_end},
    wait::{DEADLINE, wait_until},
};

const RUN_DEADLINE: Duration = Duration::from_secs(120);

fn replay(lab: &Lab, port: u16, file: &Path, extra: &[&str]) -> Finished {
    let rule = format!("{port}-{TARGET_IP}:{port}");
    let mut args = vec![
        "-x",
        &rule,
        "-s",
        "198.18.2.3",
        "-i",
        file.to_str().unwrap(),
        "-o",
        "eth1",
    ];
    args.extend_from_slice(extra);
    let done = run_to_end(lab, &args, RUN_DEADLINE);
    assert!(
        done.status.success(),
        "tcpcopy {args:?} failed ({}):\n{}\n{}",
        done.status,
        done.stdout,
        done.log
    );
    done
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits until the target logged `want` more requests than `before`;
/// returns the new ones.
fn new_requests(target: &Nginx, before: usize, want: usize) -> Vec<String> {
    wait_until(
        &format!("{want} new requests at the target"),
        DEADLINE,
        || {
            let all = target.requests();
            let new = all.len() - before;
            if new >= want {
                Ok(all[before..].to_vec())
            } else {
                Err(format!("{new} of {want}"))
            }
        },
    )
}

/// Client traffic to production: single-request connections and
/// keep-alive connections with several requests each.
fn http_traffic(lab: &Lab) {
    for i in 0..12 {
        lab.run(
            Host::Client,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{ONLINE_IP}/single/{i}?x={}", i * 3),
            ],
        );
    }
    for i in 0..6 {
        let urls: Vec<String> = (0..5)
            .map(|k| format!("http://{ONLINE_IP}/keepalive/{i}/{k}"))
            .collect();
        let mut argv = vec!["curl", "-sf"];
        for u in &urls {
            argv.extend(["-o", "/dev/null", u.as_str()]);
        }
        lab.run(Host::Client, &argv);
    }
}

#[test]
fn recorded_http_traffic_is_replayed_completely_in_every_file_form() {
    let lab = Lab::new();
    let online = start_nginx(&lab, Host::Online, ONLINE_IP, &[80]);
    let target = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    // Three recordings of the same traffic: Ethernet on the NIC, and
    // Linux cooked captures v1 and v2 on the "any" device.
    let eth = Tcpdump::start(&lab, Host::Online, "eth0", "http.pcap", &[], "tcp port 80");
    let sll = Tcpdump::start(
        &lab,
        Host::Online,
        "any",
        "http-sll.pcap",
        &["-y", "LINUX_SLL"],
        "tcp port 80",
    );
    let sll2 = Tcpdump::start(
        &lab,
        Host::Online,
        "any",
        "http-sll2.pcap",
        &["-y", "LINUX_SLL2"],
        "tcp port 80",
    );
    http_traffic(&lab);
    let want = sorted(online.requests());
    assert_eq!(want.len(), 42, "production served every request");
    let [eth, sll, sll2]: [PathBuf; 3] = finish_all(vec![eth, sll, sll2])
        .try_into()
        .expect("three files");
    assert_eq!(records(&sll)[0].1, 113, "tcpdump -y LINUX_SLL writes it");
    assert_eq!(records(&sll2)[0].1, 276, "tcpdump -y LINUX_SLL2 writes it");

    let pcapng = lab.dir().join("http.pcapng");
    to_pcapng(&eth, &pcapng);
    let vlan = lab.dir().join("http-vlan.pcap");
    with_vlan_tag(&eth, &vlan, 100);
    let garbage = lab.dir().join("http-garbage.pcap");
    {
        let bytes = std::fs::read(&eth).unwrap();
        let offsets = pcap_record_offsets(&bytes);
        let mid = offsets[offsets.len() / 2];
        let mut damaged = bytes[..mid].to_vec();
        damaged.extend((0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
        damaged.extend_from_slice(&bytes[mid..]);
        std::fs::write(&garbage, damaged).unwrap();
    }

    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    for (what, file) in [
        ("pcap", &eth),
        ("pcapng", &pcapng),
        ("Linux cooked v1", &sll),
        ("Linux cooked v2", &sll2),
        ("VLAN-tagged", &vlan),
        ("garbage in the middle", &garbage),
    ] {
        let before = target.requests().len();
        // One of them through two workers (a dispatcher shards the file).
        let extra: &[&str] = if what == "Linux cooked v2" {
            &["--top-speed", "--workers", "2"]
        } else {
            &["--top-speed"]
        };
        let done = replay(&lab, 80, file, extra);
        let got = new_requests(&target, before, want.len());
        assert_eq!(
            sorted(got),
            want,
            "{what}: the target saw exactly the recorded requests\n{}",
            done.stdout
        );
        assert_eq!(done.summary_number("sessions in the file:"), 18, "{what}");
        assert_eq!(
            done.summary_number("completed:"),
            18,
            "{what}: {}",
            done.stdout
        );
        assert_eq!(done.summary_number("failed:"), 0, "{what}: {}", done.stdout);
        assert_eq!(done.summary_number("sent:"), 42, "{what}: {}", done.stdout);
        if what.starts_with("garbage") {
            assert!(
                done.stdout.contains("damaged in 1 places (1000 B skipped)"),
                "{}",
                done.stdout
            );
        }
        let stats = done.stats.expect("final stats");
        assert_eq!(stats["send_dropped"], 0, "{what}");
    }

    // Cut off in its last quarter: the sessions before the cut are
    // replayed, the exit is clean and the cut is reported.
    let cut = lab.dir().join("http-cut.pcap");
    {
        let bytes = std::fs::read(&eth).unwrap();
        let offsets = pcap_record_offsets(&bytes);
        std::fs::write(&cut, &bytes[..offsets[offsets.len() * 3 / 4] + 20]).unwrap();
    }
    let before = target.requests().len();
    let done = replay(&lab, 80, &cut, &["--top-speed"]);
    assert!(
        done.stdout.contains("cut off inside its last record"),
        "{}",
        done.stdout
    );
    let sent = done.summary_number("sent:") as usize;
    assert!((20..42).contains(&sent), "{}", done.stdout);
    let got = new_requests(&target, before, sent);
    assert!(
        got.iter().all(|r| want.contains(r)),
        "only recorded requests: {got:?}"
    );

    // At the recorded pace sped up 5 times, twice over: every request
    // twice, the second round from new client ports.
    let before = target.requests().len();
    let done = replay(&lab, 80, &eth, &["-a", "5", "-T", "2"]);
    let got = new_requests(&target, before, 2 * want.len());
    let mut twice: Vec<String> = want.iter().chain(want.iter()).cloned().collect();
    twice.sort();
    assert_eq!(sorted(got), twice, "{}", done.stdout);
    assert_eq!(done.summary_number("completed:"), 36, "{}", done.stdout);
}

#[test]
fn recorded_redis_traffic_leaves_the_target_with_productions_keys() {
    let lab = Lab::new();
    let online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let rec = Tcpdump::start(
        &lab,
        Host::Online,
        "eth0",
        "redis.pcap",
        &[],
        "tcp port 6379",
    );
    lab.run(
        Host::Client,
        &[
            "redis-benchmark",
            "-h",
            "198.18.1.1",
            "-p",
            "6379",
            "-t",
            "set,incr,lpush",
            "-n",
            "2000",
            "-r",
            "100000",
            "-c",
            "10",
            "-d",
            "24",
            "-q",
        ],
    );
    let file = rec.finish();
    let want = online.dump(&lab, Host::Online);
    assert!(want.len() > 1000, "production holds {} keys", want.len());
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let done = replay(&lab, 6379, &file, &["--top-speed"]);
    assert_eq!(done.summary_number("failed:"), 0, "{}", done.stdout);
    let want_size = online.dbsize(&lab, Host::Online);
    wait_until("the target to hold production's keys", DEADLINE, || {
        let n = target.dbsize(&lab, Host::Target);
        if n >= want_size {
            Ok(())
        } else {
            Err(format!("{n} of {want_size} keys"))
        }
    });
    // Counters and lists too: every command, in order, exactly once.
    assert!(
        target.dump(&lab, Host::Target) == want,
        "the target's keys and values equal production's\n{}",
        done.stdout
    );
}

/// A recording made with tcpdump on a production host with GRO on (as on
/// most hosts with real NICs) holds merged packets of many segments, whose
/// TCP checksum field holds only the pseudo-header sum. Replayed, they are
/// completed and split to the target's MTU: the target ends with
/// production's keys.
#[test]
fn a_recording_made_on_a_host_with_gro_replays_completely() {
    let lab = Lab::with(LabSpec {
        client_segmentation_off: true,
        online_gro: true,
        ..LabSpec::default()
    });
    let online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let rec = Tcpdump::start(&lab, Host::Online, "eth0", "gro.pcap", &[], "tcp port 6379");
    lab.run(
        Host::Client,
        &[
            "redis-benchmark",
            "-h",
            "198.18.1.1",
            "-p",
            "6379",
            "-t",
            "set",
            "-n",
            "200",
            "-r",
            "100000",
            "-c",
            "4",
            "-d",
            "30000",
            "-q",
        ],
    );
    let file = rec.finish();
    let merged = records(&file)
        .iter()
        .filter(|(_, _, _, len)| *len > 1514)
        .count();
    assert!(merged > 0, "GRO merged no packet in the recording");
    let want = online.dump(&lab, Host::Online);
    assert!(want.len() > 150, "production holds {} keys", want.len());
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let done = replay(&lab, 6379, &file, &["--top-speed"]);
    assert_eq!(done.summary_number("failed:"), 0, "{}", done.stdout);
    wait_until("the target to hold production's keys", DEADLINE, || {
        let n = target.dbsize(&lab, Host::Target);
        if n >= want.len() as u64 {
            Ok(())
        } else {
            Err(format!("{n} of {} keys", want.len()))
        }
    });
    assert!(
        target.dump(&lab, Host::Target) == want,
        "the target's keys and values equal production's\n{}",
        done.stdout
    );
    let stats = done.stats.as_ref().expect("final stats");
    assert!(stats["split_packets"] > 0, "{stats:?}");
    assert!(stats["checksum_completed"] > 0, "{stats:?}");
    assert_eq!(stats["bad_checksum"], 0, "{stats:?}");
    assert!(
        done.stdout.contains("checksums left for the NIC"),
        "the summary says so: {}",
        done.stdout
    );
}

/// The summary's comparison line (printed) and the final statistics of a
/// `--compare` replay.
fn comparison(
    stdout: &str,
    stats: Option<&tcpcopy_tests::intercept::StatsLine>,
) -> (String, tcpcopy_tests::intercept::StatsLine) {
    let line = stdout
        .lines()
        .find(|l| l.contains("compared with production"))
        .unwrap_or_else(|| panic!("no comparison in the summary:\n{stdout}"))
        .to_owned();
    println!("{line}");
    (line, stats.expect("final statistics").clone())
}

#[test]
fn compare_finds_exactly_the_planted_differences_in_the_targets_responses() {
    let lab = Lab::new();
    let online = tcpcopy_tests::servers::start_nginx_with(
        &lab,
        Host::Online,
        ONLINE_IP,
        &[80],
        tcpcopy_tests::servers::COMPARE_PRODUCTION,
    );
    let _target = tcpcopy_tests::servers::start_nginx_with(
        &lab,
        Host::Target,
        TARGET_IP,
        &[80],
        tcpcopy_tests::servers::COMPARE_TARGET,
    );
    let cap = Tcpdump::start(&lab, Host::Online, "eth0", "cmp.pcap", &[], "tcp port 80");
    let paths = ["same", "status", "body", "header", "json"];
    // One keep-alive connection with all five, then one connection each.
    let mut all = vec!["curl", "-s"];
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://{ONLINE_IP}/cmp/{p}"))
        .collect();
    for u in &urls {
        all.extend(["-o", "/dev/null", u.as_str()]);
    }
    lab.run(Host::Client, &all);
    for u in &urls {
        lab.run(Host::Client, &["curl", "-s", "-o", "/dev/null", u]);
    }
    assert_eq!(online.requests().len(), 10);
    let file = cap.finish();
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:80"]);
    let report = lab.dir().join("cmp-report");
    let report_arg = report.to_string_lossy().into_owned();
    let done = replay(
        &lab,
        80,
        &file,
        &[
            "--compare",
            "http",
            "--top-speed",
            "--compare-report",
            &report_arg,
        ],
    );
    let (line, stats) = comparison(done.stdout.as_str(), done.stats.as_ref());
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(got("compared"), 10, "{line}\n{}", done.log);
    assert_eq!(
        got("compare_equal"),
        4,
        "same and the reordered JSON, twice: {line}"
    );
    assert_eq!(got("compare_different"), 6, "{line}\n{}", done.log);
    assert_eq!(
        (
            got("compare_status"),
            got("compare_header"),
            got("compare_body")
        ),
        (2, 2, 2),
        "{line}\n{}",
        done.log
    );
    assert_eq!(
        (got("compare_unparsed"), got("compare_gaps")),
        (0, 0),
        "{line}"
    );
    // The log names what differed.
    for what in [
        "status 200 in production, 503 at the target",
        "header x-extra",
        "body differs",
    ] {
        assert!(
            done.log.contains(what),
            "{what:?} not in the log:\n{}",
            done.log
        );
    }
    // The report: one JSON line per differing exchange, both sides in it.
    let lines = std::fs::read_to_string(report.join("differences.jsonl")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let with = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(with(r#""kinds":["status"]"#), 2, "{lines:#?}");
    assert_eq!(with(r#""kinds":["header"]"#), 2, "{lines:#?}");
    assert_eq!(with(r#""kinds":["body"]"#), 2, "{lines:#?}");
    assert_eq!(with("target   body!!"), 2, "{lines:#?}");

    // The page, rendered by a real browser: its script puts the totals in.
    let page = report.join("report.html");
    let url = format!("file://{}", page.display());
    let chromium = |extra: &[&str]| {
        let out = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = chromium(&["--dump-dom"]);
    for rendered in [
        r#"<b id="compared">10</b>"#,
        r#"<b id="equal">4</b>"#,
        r#"<b id="different">6</b>"#,
        "<svg",
        "target   body!!",
        // The endpoint table, drawn from the requests in the file.
        "GET /cmp/status",
    ] {
        assert!(dom.contains(rendered), "{rendered:?} not rendered:\n{dom}");
    }
    assert!(!dom.contains("rendering..."), "the page's script ran");
    let shot = report.join("report.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(&[&shot_arg, "--window-size=1200,1400"]);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot of {} bytes",
        png.len()
    );
    println!(
        "report page rendered; screenshot {} ({} bytes)",
        shot.display(),
        png.len()
    );
}

#[test]
fn compare_bytes_finds_the_one_key_the_target_holds_differently() {
    let lab = Lab::new();
    let _online = start_redis(&lab, Host::Online, ONLINE_IP, 6379);
    let _target = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    // The same keys on both, before any recording; one value differs.
    tcpcopy_tests::servers::redis_keys_with_one_planted_difference(&lab);
    let cap = Tcpdump::start(
        &lab,
        Host::Online,
        "eth0",
        "cmp-redis.pcap",
        &[],
        "tcp port 6379",
    );
    tcpcopy_tests::servers::redis_get_exchanges(&lab);
    let file = cap.finish();
    let _intercept = InterceptProcess::start(&lab, &["--target", "198.18.2.2:6379"]);
    let done = replay(&lab, 6379, &file, &["--compare", "bytes", "--top-speed"]);
    let (line, stats) = comparison(done.stdout.as_str(), done.stats.as_ref());
    let got = |k: &str| stats.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(got("compared"), 10, "{line}\n{}", done.log);
    assert_eq!(
        (
            got("compare_equal"),
            got("compare_different"),
            got("compare_body")
        ),
        (8, 2, 2),
        "GET k3, twice: {line}\n{}",
        done.log
    );
    assert!(done.log.contains("body differs from byte"), "{}", done.log);
}
