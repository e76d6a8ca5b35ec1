//! T2: the environment matrix. The same production traffic (HTTP requests
//! to nginx, and Redis SETs of 20 kB values: requests of many segments)
//! replayed live in labs that differ the way users' hosts do; each case
//! asserts full completeness (the target's access log and Redis data equal
//! production's) and that the condition it stands for really happened
//! (checksums left for the NIC, merged or jumbo packets split, ...).
//!
//! Cases: default offloads; offloads off; bridge netfilter on (with a
//! Kubernetes-like conntrack ruleset); a VLAN trunk as the production link;
//! GRO on the online host; generic-mode capture on a link whose sender
//! keeps segmentation offload (packets of up to 64 KiB); production MTU
//! 9000 with the target link at 1500 (`-M 1500`); the production server in
//! a container (tcpcopy beside it in its namespace); mirror capture of the
//! client's traffic (a local stack's packets, mirrored by `tc mirred`).
//! And the other deployment: no assistant, intercept on the target with
//! its TC egress program (`--egress`), given the client range or only the
//! clients tcpcopy announces.

use std::net::Ipv4Addr;

use tcpcopy_tests::{
    intercept::{InterceptProcess, StatsLine},
    lab::{CONTAINER_IP, Host, Lab, LabSpec, ONLINE_IP, TARGET_IP},
    servers::{start_nginx, start_redis},
    tcpcopy::TcpcopyProcess,
    wait::{DEADLINE, wait_until},
};

/// HTTP requests per case, over this many keep-alive connections.
const HTTP_REQUESTS: usize = 40;
const HTTP_CONNECTIONS: usize = 8;
/// Redis SETs per case and the size of each value.
const REDIS_SETS: &str = "300";
const REDIS_VALUE: &str = "20000";

/// What a case expects of the packets tcpcopy saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checksums {
    /// Some arrived left for the NIC and were completed.
    Completed,
    /// All arrived right.
    Right,
}

struct Case {
    name: &'static str,
    spec: LabSpec,
    /// Where production (and tcpcopy) run.
    production: Host,
    /// tcpcopy's options besides -x and -s.
    tcpcopy: Vec<String>,
    checksums: Checksums,
    /// Captured packets larger than the target link's MTU were split.
    splits: bool,
    /// A mirror port carries the copy (`-i` is its interface).
    mirror: bool,
    /// Intercept on the target (`--egress`, with these `--clients`)
    /// instead of on the assistant; the lab has no assistant.
    egress_clients: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, spec: LabSpec) -> Self {
        Self {
            name,
            spec,
            production: Host::Online,
            tcpcopy: args(&["-i", "eth0", "-o", "eth1"]),
            checksums: Checksums::Completed,
            splits: false,
            mirror: false,
            egress_clients: None,
        }
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn production_ip(host: Host) -> Ipv4Addr {
    match host {
        Host::Container => CONTAINER_IP,
        _ => ONLINE_IP,
    }
}

/// Runs the case's traffic; returns tcpcopy's final statistics after the
/// target has everything production has.
fn run(case: Case) -> StatsLine {
    let lab = Lab::with(case.spec);
    let prod_ip = production_ip(case.production);
    let mirror = case.mirror.then(|| lab.add_mirror_port());
    let prod_web = start_nginx(&lab, case.production, prod_ip, &[80]);
    let prod_kv = start_redis(&lab, case.production, prod_ip, 6379);
    let target_web = start_nginx(&lab, Host::Target, TARGET_IP, &[80]);
    let target_kv = start_redis(&lab, Host::Target, TARGET_IP, 6379);
    let targets = format!("{TARGET_IP}:80,{TARGET_IP}:6379");
    let (intercept, intercept_ip) = match case.egress_clients {
        None => (
            InterceptProcess::start(&lab, &["--target", &targets]),
            "198.18.2.3",
        ),
        Some(clients) => (
            InterceptProcess::start_egress(&lab, &["--target", &targets, "--clients", clients]),
            "198.18.2.2",
        ),
    };
    let mut argv = args(&[
        "-x",
        &format!("80-{TARGET_IP}:80,6379-{TARGET_IP}:6379"),
        "-s",
        intercept_ip,
    ]);
    argv.extend(case.tcpcopy.iter().cloned());
    if let Some(port) = mirror {
        let i = argv.iter().position(|a| a == "-i").expect("-i") + 1;
        argv[i] = port.to_owned();
        argv.extend(args(&["--capture", "mirror"]));
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let tcpcopy = TcpcopyProcess::start_in(&lab, case.production, &argv);

    // HTTP: keep-alive connections of several requests, unique URIs.
    let per = HTTP_REQUESTS / HTTP_CONNECTIONS;
    for c in 0..HTTP_CONNECTIONS {
        let mut curl = vec!["curl".to_owned(), "-sf".to_owned()];
        for r in 0..per {
            curl.extend(["-o".to_owned(), "/dev/null".to_owned()]);
            curl.push(format!("http://{prod_ip}/{}/{c}/{r}", case.name));
        }
        let curl: Vec<&str> = curl.iter().map(String::as_str).collect();
        lab.run(Host::Client, &curl);
    }
    // Redis: SETs of large values (requests of many segments).
    let ip = prod_ip.to_string();
    lab.run(
        Host::Client,
        &[
            "redis-benchmark",
            "-h",
            &ip,
            "-p",
            "6379",
            "-t",
            "set",
            "-n",
            REDIS_SETS,
            "-r",
            "1000000",
            "-c",
            "4",
            "-d",
            REDIS_VALUE,
            "-q",
        ],
    );

    let mut want_web = prod_web.requests();
    assert_eq!(
        want_web.len(),
        HTTP_REQUESTS,
        "production served every request"
    );
    let want_kv = prod_kv.dump(&lab, case.production);
    assert!(
        want_kv.len() > 250,
        "production holds {} keys",
        want_kv.len()
    );
    let got_web = wait_until(
        &format!(
            "{}: the target's access log equal to production's",
            case.name
        ),
        DEADLINE,
        || {
            let got = target_web.requests();
            if got.len() >= want_web.len() {
                Ok(got)
            } else {
                Err(format!("{} of {} requests", got.len(), want_web.len()))
            }
        },
    );
    wait_until(
        &format!("{}: the target holding production's keys", case.name),
        DEADLINE,
        || {
            let n = target_kv.dbsize(&lab, Host::Target);
            if n >= want_kv.len() as u64 {
                Ok(())
            } else {
                Err(format!("{n} of {} keys", want_kv.len()))
            }
        },
    );
    let got_kv = target_kv.dump(&lab, Host::Target);
    let mut got_web = got_web;
    got_web.sort();
    want_web.sort();
    assert_eq!(got_web, want_web, "{}: access logs", case.name);
    let same = got_kv.len() == want_kv.len() && got_kv.iter().zip(&want_kv).all(|(a, b)| a == b);
    assert!(
        same,
        "{}: Redis data differs ({} keys vs {})",
        case.name,
        got_kv.len(),
        want_kv.len()
    );
    if lab.spec().bridge_netfilter == Some(true) {
        // Every bridged frame went through iptables (and conntrack).
        let rules = lab.run(
            Host::Lan,
            &["iptables", "-w", "-L", "FORWARD", "-v", "-n", "-x"],
        );
        let accepted: u64 = rules
            .lines()
            .filter(|l| l.contains("ACCEPT"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        assert!(accepted > 1000, "bridged frames through FORWARD: {rules}");
    }
    let (status, stats) = tcpcopy.stop();
    assert!(status.success(), "{}: tcpcopy exit {status}", case.name);
    let (status, istats) = intercept.stop();
    assert!(status.success(), "{}: intercept exit {status}", case.name);
    if case.egress_clients.is_some() {
        println!(
            "matrix {}: intercept on the target: reported={} unclaimed={} escaped_before_announce={}",
            case.name,
            istats["xdp_reported"],
            istats["xdp_unclaimed"],
            istats["escaped_before_announce"]
        );
    }
    println!(
        "matrix {}: http {}/{} (100.00 %), redis {}/{} keys equal (100.00 %); \
         checksum_completed={} bad_checksum={} split_packets={} captured={}",
        case.name,
        got_web.len(),
        want_web.len(),
        got_kv.len(),
        want_kv.len(),
        stats["checksum_completed"],
        stats["bad_checksum"],
        stats["split_packets"],
        stats["captured"],
    );
    assert_eq!(stats["bad_checksum"], 0, "{}: {stats:?}", case.name);
    assert_eq!(stats["xdp_ring_full"], 0, "{}: {stats:?}", case.name);
    assert_eq!(stats["source_dropped"], 0, "{}: {stats:?}", case.name);
    assert_eq!(stats["send_dropped"], 0, "{}: {stats:?}", case.name);
    match case.checksums {
        Checksums::Completed => assert!(
            stats["checksum_completed"] > 0,
            "{}: no packet arrived with checksums left for the NIC: {stats:?}",
            case.name
        ),
        Checksums::Right => assert_eq!(stats["checksum_completed"], 0, "{}: {stats:?}", case.name),
    }
    if case.splits {
        assert!(
            stats["split_packets"] > 0,
            "{}: no captured packet was larger than the target link: {stats:?}",
            case.name
        );
    }
    stats
}

#[test]
fn matrix_default_offloads() {
    run(Case::new("default", LabSpec::default()));
}

#[test]
fn matrix_offloads_off() {
    run(Case {
        checksums: Checksums::Right,
        ..Case::new(
            "offloads-off",
            LabSpec {
                offloads_off: true,
                ..LabSpec::default()
            },
        )
    });
}

#[test]
fn matrix_bridge_netfilter_on() {
    run(Case::new(
        "bridge-netfilter",
        LabSpec {
            bridge_netfilter: Some(true),
            ..LabSpec::default()
        },
    ));
}

#[test]
fn matrix_vlan_tagged_production_link() {
    run(Case::new(
        "vlan",
        LabSpec {
            production_vlan: Some(100),
            ..LabSpec::default()
        },
    ));
}

#[test]
fn matrix_gro_on_the_online_host() {
    // The client sends MTU-sized segments, the online host merges them
    // (GRO); native XDP runs before GRO, so the capture still sees each.
    run(Case::new(
        "gro",
        LabSpec {
            client_segmentation_off: true,
            online_gro: true,
            ..LabSpec::default()
        },
    ));
}

#[test]
fn matrix_generic_mode_capture_of_segmentation_offload() {
    // Generic (skb) mode, on a veth whose peer keeps TSO (nothing native
    // on it): the capture sees the local stack's packets of up to 64 KiB,
    // with checksums left for the NIC, and the engine splits them.
    run(Case {
        tcpcopy: args(&["-i", "eth0", "-o", "eth1", "--xdp-mode", "generic"]),
        splits: true,
        ..Case::new("generic-tso", LabSpec::default())
    });
}

#[test]
fn matrix_jumbo_production_link_with_a_1500_target_link() {
    run(Case {
        tcpcopy: args(&["-i", "eth0", "-o", "eth1", "-M", "1500"]),
        splits: true,
        ..Case::new(
            "mtu9000",
            LabSpec {
                production_mtu: Some(9000),
                ..LabSpec::default()
            },
        )
    });
}

#[test]
fn matrix_production_server_in_a_container() {
    run(Case {
        production: Host::Container,
        tcpcopy: args(&["-i", "eth0", "-o", "eth0"]),
        ..Case::new(
            "container",
            LabSpec {
                container: true,
                ..LabSpec::default()
            },
        )
    });
}

#[test]
fn matrix_mirror_capture_of_local_traffic() {
    run(Case {
        mirror: true,
        ..Case::new("mirror", LabSpec::default())
    });
}

#[test]
fn matrix_no_assistant_intercept_on_the_target_with_the_client_range() {
    run(Case {
        egress_clients: Some("198.18.1.0/24"),
        ..Case::new(
            "no-assistant",
            LabSpec {
                no_assistant: true,
                ..LabSpec::default()
            },
        )
    });
}

#[test]
fn matrix_no_assistant_intercept_on_the_target_with_announced_clients_only() {
    run(Case {
        egress_clients: Some("announced"),
        ..Case::new(
            "no-assistant-announced",
            LabSpec {
                no_assistant: true,
                ..LabSpec::default()
            },
        )
    });
}
