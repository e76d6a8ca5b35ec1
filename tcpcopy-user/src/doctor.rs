//! `tcpcopy doctor`: before a replay, checks what it needs on this host
//! and on the path through the target and intercept, and prints a line per
//! check with the fix for each problem.
//!
//! Checks, in order: the capture interface (up, MTU), XDP on it (the
//! capture program is attached and detached again: it passes every frame,
//! production never notices), its offloads, the output interface and `-M`,
//! the sender (AF_XDP or raw), the next hop of each target, each
//! intercept (reachable, and its version through the version-query
//! extension; a 1.x intercept does not answer it), `rp_filter`, and last a
//! probe: a SYN from a client address to the first target, announced to
//! every intercept first, must come back through intercept as a SYN-ACK
//! (a RST says nothing listens there). The probe's half-open connection is
//! reset afterwards.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use clap::Args;
use tcpcopy_common::proto::{
    ClientMsg, HeaderRecord, RecordFrameDecoder, VERSION_FRAME_LEN, VERSION_FRAME_MARK, VersionInfo,
};
use tcpcopy_runtime::{
    doctor::{Report, check_interface, check_xdp_attach},
    netdev::{self, Interface},
    tc::EgressAttach,
    xdp::XdpModePolicy,
};

use crate::{
    capture::xdp::{CaptureMode, CaptureProgram},
    cli::{CaptureKind, Cli, XdpMode},
    engine::Outbox,
    link,
    packet::{SeqNumber, TcpFlags, options::write_syn_options, tcp::SegmentRepr},
    send::{FrameSender, SenderConfig},
};

/// How long the probe waits for the target's answer through intercept.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// How long an intercept may take to answer the version query.
const VERSION_WAIT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const NEXT_HOP_WAIT: Duration = Duration::from_secs(2);

/// `tcpcopy doctor`: the replay's own options, plus the probe's.
#[derive(clap::Parser, Debug)]
#[command(
    name = "tcpcopy doctor",
    about = "Checks what a replay with these options needs: capture, XDP, output, next hop, \
             intercept, and a probe SYN answered through intercept. Prints one line per check \
             with a fix for each problem; exits 1 if any check failed.",
    after_help = "Example:\n  tcpcopy doctor -x 80-10.0.0.2:80 -s 10.0.0.3 -i eth0 -o eth1 --probe-client 192.168.7.9"
)]
pub struct DoctorCli {
    #[command(flatten)]
    pub run: Cli,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Client address the probe SYN comes from: one of the range the target routes to the
    /// assistant [default: from -c, else the probe is skipped].
    #[arg(long = "probe-client", value_name = "IP")]
    pub probe_client: Option<Ipv4Addr>,
}

/// Runs every check; the report says what was found.
pub fn run(cli: &Cli, probe: &ProbeArgs) -> Report {
    let mut r = Report::new(format!(
        "tcpcopy doctor {}: checking what this replay needs",
        env!("CARGO_PKG_VERSION")
    ));
    let offline = cli.offline_file().is_some();
    if offline {
        check_file(&mut r, cli);
    } else {
        check_capture(&mut r, cli);
    }
    let Some(output) = cli.output.as_deref() else {
        r.skip("output", "no -o (a dry run needs no network)");
        return r;
    };
    if !check_output(&mut r, cli, output) {
        return r;
    }
    let sender = match SenderConfig::new(output)
        .backend(cli.send)
        .next_hop_mac(cli.transfer.0.iter().find_map(|t| t.next_hop_mac))
        .queue_id(0)
        .open()
    {
        Ok(s) => {
            r.pass(&format!("sender on {output}"), s.describe());
            Some(s)
        }
        Err(e) => {
            r.fail(
                &format!("sender on {output}"),
                e.to_string(),
                "use --send raw (a packet socket) where AF_XDP cannot be used",
            );
            None
        }
    };
    let mut sender = sender;
    let mut next_hop_ok = true;
    if let Some(s) = sender.as_mut() {
        // --compare-baseline: the baseline is replayed to like a target.
        let baseline = cli.compare_baseline.map(|b| IpAddr::V4(*b.ip()));
        for target in cli
            .transfer
            .0
            .iter()
            .map(|t| t.rule.target.ip())
            .chain(baseline)
        {
            let what = format!("next hop of {target} via {output}");
            match s.resolve_next_hop(target, NEXT_HOP_WAIT) {
                Some(mac) => r.pass(&what, format!("at {mac}")),
                None => {
                    next_hop_ok = false;
                    r.fail(
                        &what,
                        format!("no MAC address after {NEXT_HOP_WAIT:?} (no ARP answer)"),
                        format!(
                            "is {target} (or the gateway to it) up and on {output}'s link? \
                             `ip route get {target}` shows the path; or give the MAC: -x ...@MAC"
                        ),
                    );
                }
            }
        }
    }
    let mut links = check_intercepts(&mut r, cli);
    match netdev::rp_filter(output) {
        Some(v) => r.info(
            &format!("rp_filter on {output}"),
            format!(
                "{v} ({}); tcpcopy's frames are not received here, so it does not matter on \
                 this host; on the target, a strict rp_filter drops them unless the client \
                 range is routed out of the interface they arrive on",
                match v {
                    0 => "off",
                    1 => "strict",
                    _ => "loose",
                }
            ),
        ),
        None => r.info(&format!("rp_filter on {output}"), "unknown"),
    }
    match (sender.as_mut(), next_hop_ok, links.is_empty()) {
        (Some(s), true, false) => probe_target(&mut r, cli, probe, s.as_mut(), &mut links),
        _ => r.skip(
            "probe SYN through intercept",
            "needs a sender, the next hop and an intercept (see the failures above)",
        ),
    }
    r
}

fn check_file(r: &mut Report, cli: &Cli) {
    let path = cli.offline_file().expect("offline");
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => r.pass(
            &format!("capture file {}", path.display()),
            format!("{} bytes", m.len()),
        ),
        Ok(_) => r.fail(
            &format!("capture file {}", path.display()),
            "not a regular file",
            "-i names an interface or a pcap/pcapng file",
        ),
        Err(e) => r.fail(
            &format!("capture file {}", path.display()),
            e.to_string(),
            "check the path and its permissions",
        ),
    }
}

fn check_capture(r: &mut Report, cli: &Cli) {
    let dev = cli.input.as_str();
    let Some(iface) = check_interface(
        r,
        &format!("capture interface {dev}"),
        dev,
        "-i names the one production traffic arrives on",
    ) else {
        return;
    };
    let mode = match cli.capture {
        CaptureKind::Inline => CaptureMode::Inline {
            ring_bytes: cli.ring_size,
        },
        CaptureKind::Mirror => CaptureMode::Mirror {
            queues: 1,
            pass_others: true,
        },
    };
    let policy = match cli.xdp_mode {
        XdpMode::Auto => XdpModePolicy::Auto,
        XdpMode::Native => XdpModePolicy::Native,
        XdpMode::Generic => XdpModePolicy::Generic,
    };
    let attached = CaptureProgram::load(mode).and_then(|mut p| {
        let m = p.attach_with(dev, policy)?;
        p.detach_all()?;
        Ok(m)
    });
    check_xdp_attach(r, dev, policy, attached, "tcpcopy");
    if cli.compare.is_some() {
        check_response_capture(r, cli, dev);
    }
    let o = iface.offloads;
    let flag = |v: Option<bool>| match v {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    let found = format!(
        "GRO {}, LRO {}, TSO {}, TX checksum {}",
        flag(o.gro),
        flag(o.lro),
        flag(o.tso),
        flag(o.tx_checksum)
    );
    if o.lro == Some(true) {
        r.warn(
            &format!("offloads of {dev}"),
            format!("{found}: LRO merges frames in the NIC, where many drivers refuse XDP"),
            format!("ethtool -K {dev} lro off"),
        );
    } else {
        r.info(
            &format!("offloads of {dev}"),
            format!(
                "{found} (native XDP sees frames before GRO; packets merged by GRO or left \
                 with checksums for the NIC are completed and split by tcpcopy)"
            ),
        );
    }
}

/// `--compare`: where production's answers will come from.
fn check_response_capture(r: &mut Report, cli: &Cli, dev: &str) {
    let what = format!("production's answers on {dev} (--compare)");
    if cli.capture == CaptureKind::Mirror {
        r.info(
            &what,
            "taken from the mirror port: it must carry both directions (the `xdp_responses` \
             counter stays 0 when it carries only the clients' side)",
        );
        return;
    }
    // An empty target table: attached for a moment, it copies nothing.
    let attached = CaptureProgram::load_with_responses(
        CaptureMode::Inline {
            ring_bytes: cli.ring_size,
        },
        cli.response_ring(),
    )
    .and_then(|mut p| {
        let how = p.attach_responses(dev)?;
        p.detach_all()?;
        Ok(how)
    });
    match attached {
        Ok(Some(EgressAttach::Tcx)) => r.pass(
            &what,
            "TC egress program: TCX link (attached and detached again; it never delays or \
             drops a packet, and goes with tcpcopy however it stops)",
        ),
        Ok(Some(EgressAttach::Filter)) => r.warn(
            &what,
            "TC egress program as a clsact filter only (kernel without TCX, < 6.6): it works \
             (never delays or drops a packet), but stays on the device if tcpcopy is killed",
            format!("after a crash: tc filter del dev {dev} egress"),
        ),
        Ok(None) => r.fail(&what, "the response program did not load", "report a bug"),
        Err(e) => r.fail(
            &what,
            e.to_string(),
            "are we root? `tc filter show dev DEV egress` and `bpftool net` show what is attached",
        ),
    }
}

/// Whether the output interface is there (up or not, the rest can go on).
fn check_output(r: &mut Report, cli: &Cli, output: &str) -> bool {
    let what = format!("output interface {output}");
    let Some(iface) = Interface::lookup(output) else {
        r.fail(
            &what,
            "no such interface in this network namespace",
            "`ip link` lists the interfaces; -o names the one that reaches the target",
        );
        return false;
    };
    if !iface.up {
        r.fail(
            &what,
            format!("down (operstate {})", iface.operstate),
            format!("ip link set {output} up"),
        );
        return true;
    }
    let m = u32::from(cli.mtu);
    if iface.mtu < m {
        r.fail(
            &what,
            format!(
                "MTU {} is below -M {m}: frames of up to {m} bytes would be dropped (too_big)",
                iface.mtu
            ),
            format!("-M {}", iface.mtu),
        );
        return true;
    }
    let capture_mtu = if cli.offline_file().is_none() {
        Interface::lookup(&cli.input).map(|i| i.mtu)
    } else {
        None
    };
    let split = match capture_mtu {
        Some(c) if c > m => {
            format!(
                "; packets of up to {c} bytes captured on {} are split to {m}",
                cli.input
            )
        }
        _ => String::new(),
    };
    r.pass(&what, format!("up, MTU {} (-M {m}){split}", iface.mtu));
    true
}

/// A connection to one intercept, kept for the probe.
struct Probe {
    name: String,
    stream: TcpStream,
    decoder: RecordFrameDecoder,
}

fn check_intercepts(r: &mut Report, cli: &Cli) -> Vec<Probe> {
    let mut out = Vec::new();
    for (host, port) in cli.intercept_list() {
        let what = format!("intercept {host}:{port}");
        let addr = match link::resolve(host, *port) {
            Ok(a) => a,
            Err(e) => {
                r.fail(&what, e.to_string(), "check the name in -s");
                continue;
            }
        };
        let started = Instant::now();
        let mut stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                r.fail(
                    &what,
                    format!("cannot connect to {addr}: {e}"),
                    format!(
                        "is intercept running on {host} (listening on port {port}), is the port \
                         open in any firewall between, and does its --allow include this host?"
                    ),
                );
                continue;
            }
        };
        let connected = started.elapsed();
        let _ = stream.set_nodelay(true);
        let mut hello = ClientMsg::hello().encode().to_vec();
        hello.extend_from_slice(&ClientMsg::version_query().encode());
        if let Err(e) = stream.write_all(&hello) {
            r.fail(
                &what,
                format!("connected, then: {e}"),
                "check intercept's log",
            );
            continue;
        }
        let version = read_version(&mut stream);
        let found = match &version {
            Ok(Some(v)) => format!(
                "connected in {:.1} ms; tcpcopy-rs intercept {}{}",
                connected.as_secs_f64() * 1e3,
                v.version_str(),
                if v.capabilities & tcpcopy_common::proto::CAP_PAYLOADS != 0 {
                    " (reply payloads on request)"
                } else {
                    ""
                }
            ),
            Ok(None) => format!(
                "connected in {:.1} ms; no answer to the version query in {VERSION_WAIT:?}: \
                 an original (1.x) intercept, which works the same for replay",
                connected.as_secs_f64() * 1e3
            ),
            Err(e) => {
                r.fail(
                    &what,
                    format!("connected, then closed: {e}"),
                    "intercept refused this host (see its log: --allow?)",
                );
                continue;
            }
        };
        r.pass(&what, found);
        out.push(Probe {
            name: format!("{host}:{port}"),
            stream,
            decoder: RecordFrameDecoder::new(),
        });
    }
    out
}

/// The intercept's answer to the version query, if it gives one.
fn read_version(stream: &mut TcpStream) -> std::io::Result<Option<VersionInfo>> {
    let deadline = Instant::now() + VERSION_WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; VERSION_FRAME_LEN];
    while got.len() < VERSION_FRAME_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[..VERSION_FRAME_LEN - got.len()]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= 2 && got[..2] != VERSION_FRAME_MARK.to_be_bytes() {
                    return Ok(None);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(VersionInfo::decode(&got))
}

/// The probe: a SYN from a client address, announced to every intercept,
/// must come back through one of them.
fn probe_target(
    r: &mut Report,
    cli: &Cli,
    args: &ProbeArgs,
    sender: &mut dyn FrameSender,
    links: &mut [Probe],
) {
    const WHAT: &str = "probe SYN through intercept";
    // The probe speaks IPv4: the first IPv4 rule's target.
    let Some(target) = cli
        .transfer
        .0
        .iter()
        .find_map(|t| crate::engine::Endpoint::<[u8; 4]>::from_socket(t.rule.target))
    else {
        r.skip(WHAT, "no IPv4 rule: the probe SYN is IPv4 only");
        return;
    };
    let nonce = std::process::id().wrapping_mul(2_654_435_761) ^ now_nanos();
    let client = match (args.probe_client, &cli.client_pool) {
        (Some(ip), _) => ip.octets(),
        (None, Some(pool)) => match pool.map(nonce.to_be_bytes(), 0, |a| a == target.addr) {
            Some(a) => a,
            None => {
                r.skip(WHAT, "the -c pool has no usable address");
                return;
            }
        },
        (None, None) => {
            r.skip(
                WHAT,
                "no client address known: give --probe-client IP (an address of the client \
                 range the target routes to the assistant)",
            );
            return;
        }
    };
    let port = 32768 + (nonce % 28000) as u16;
    let isn = SeqNumber(nonce.rotate_left(13));
    let add = ClientMsg::add(client, port, target.addr, target.port).encode();
    for l in links.iter_mut() {
        if let Err(e) = l.stream.write_all(&add) {
            r.fail(
                WHAT,
                format!("intercept {} closed the connection: {e}", l.name),
                "see intercept's log",
            );
            return;
        }
    }
    let from = format!("{}:{port}", Ipv4Addr::from(client));
    send_segment(
        sender,
        client,
        port,
        target,
        isn,
        SeqNumber(0),
        TcpFlags::SYN,
    );
    let started = Instant::now();
    let mut answer: Option<(HeaderRecord, String)> = None;
    'wait: while started.elapsed() < PROBE_WAIT {
        sender.poll();
        for l in links.iter_mut() {
            let _ = l.stream.set_read_timeout(Some(Duration::from_millis(20)));
            let mut buf = [0u8; 4096];
            let n = match l.stream.read(&mut buf) {
                Ok(0) => break 'wait,
                Ok(n) => n,
                Err(_) => continue,
            };
            let mut found = None;
            let _ = l.decoder.push(&buf[..n], |rec| {
                if rec.src_addr() == target.addr
                    && rec.src_port() == target.port
                    && rec.dst_addr() == client
                    && rec.dst_port() == port
                {
                    found.get_or_insert(*rec);
                }
            });
            if let Some(rec) = found {
                answer = Some((rec, l.name.clone()));
                break 'wait;
            }
        }
    }
    let took = started.elapsed();
    match answer {
        Some((rec, via)) if rec.tcp_flags() & 0x12 == 0x12 => {
            // Reset the half-open connection we made on the target.
            send_segment(
                sender,
                client,
                port,
                target,
                isn + 1,
                SeqNumber(0),
                TcpFlags::RST,
            );
            sender.poll();
            r.pass(
                WHAT,
                format!(
                    "SYN {from} -> {target} answered with a SYN-ACK, reported by intercept {via} \
                     in {:.1} ms",
                    took.as_secs_f64() * 1e3
                ),
            );
        }
        Some((rec, via)) if rec.tcp_flags() & 0x04 != 0 => r.fail(
            WHAT,
            format!("SYN {from} -> {target}: the target answered with a RST (via {via})"),
            format!(
                "nothing listens on {target} (or a firewall there rejects): start the service \
                 on the target, or correct -x"
            ),
        ),
        Some((rec, via)) => r.fail(
            WHAT,
            format!(
                "SYN {from} -> {target}: intercept {via} reported an unexpected reply (flags \
                 {:#04x})",
                rec.tcp_flags()
            ),
            "see intercept's log",
        ),
        None => r.fail(
            WHAT,
            format!(
                "SYN {from} -> {target} sent; no answer came back through intercept in \
                 {PROBE_WAIT:?}"
            ),
            format!(
                "most likely first: (1) the target has no route for the client range via the \
                 assistant: on the target, `ip route add <client range incl. {}> via <the \
                 assistant>`; (2) intercept's filter does not match: run it with --target \
                 {target}; (3) the assistant forwards the replies (net.ipv4.ip_forward=1 there); \
                 (4) the target does not get the SYN (tcpdump on the target; a strict rp_filter \
                 there drops it when the client range is routed out of another interface)",
                Ipv4Addr::from(client)
            ),
        ),
    }
}

fn send_segment(
    sender: &mut dyn FrameSender,
    client: [u8; 4],
    port: u16,
    target: crate::engine::Endpoint,
    seq: SeqNumber,
    ack: SeqNumber,
    flags: TcpFlags,
) {
    let mut options = [0u8; 40];
    let n = if flags.syn() {
        write_syn_options(&mut options, 1460, None, None)
    } else {
        0
    };
    let repr = SegmentRepr {
        src: client,
        dst: target.addr,
        src_port: port,
        dst_port: target.port,
        seq,
        ack,
        flags,
        window: 65535,
        ttl: 64,
        ip_id: 0,
        options: &options[..n],
        payload: &[],
    };
    let mut out = Outbox::<[u8; 4]>::default();
    let len = repr.len();
    repr.emit(out.push_frame(len));
    sender.send(&mut out);
}

fn now_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use clap::Parser;

    use super::*;

    fn cli_for(intercept: &str) -> Cli {
        Cli::try_parse_from([
            "tcpcopy",
            "-x",
            "80-127.0.0.2:80",
            "-s",
            intercept,
            "-i",
            "lo",
            "-o",
            "lo",
        ])
        .unwrap()
    }

    /// An intercept on loopback that reads everything and answers with
    /// `answer` (nothing: what the C intercept does with the query).
    fn fake_intercept(answer: Option<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 28];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got[..14], ClientMsg::hello().encode());
            assert_eq!(got[14..], ClientMsg::version_query().encode());
            if let Some(a) = answer {
                s.write_all(&a).unwrap();
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        addr.to_string()
    }

    #[test]
    fn the_version_of_our_intercept_is_named_and_a_1x_intercept_still_passes() {
        let ours = fake_intercept(Some(VersionInfo::new("9.8.7", 0).encode().to_vec()));
        let mut r = Report::new("t");
        let links = check_intercepts(&mut r, &cli_for(&ours));
        assert_eq!(links.len(), 1);
        assert!(r.ok(), "{r}");
        assert!(r.to_string().contains("tcpcopy-rs intercept 9.8.7"), "{r}");

        let old = fake_intercept(None);
        let mut r = Report::new("t");
        let links = check_intercepts(&mut r, &cli_for(&old));
        assert_eq!(links.len(), 1, "usable for the probe");
        assert!(r.ok(), "{r}");
        assert!(r.to_string().contains("an original (1.x) intercept"), "{r}");
    }

    #[test]
    fn a_closed_intercept_port_fails_with_its_fix() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let mut r = Report::new("t");
        assert!(check_intercepts(&mut r, &cli_for(&addr)).is_empty());
        assert!(!r.ok());
        assert!(r.to_string().contains("is intercept running"), "{r}");
    }
}
