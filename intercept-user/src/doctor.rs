//! `intercept doctor`: checks what intercept needs on this host and prints
//! a line per check with the fix for each problem.
//!
//! On an assistant (`-i`): each interface (up, MTU), XDP on it (the reply
//! program is attached and detached again; while it is attached it drops
//! the targets' replies, which is its job here), its offloads,
//! `ip_forward` (must be 0: a forwarding assistant hands the target's
//! replies to the real clients whenever intercept is not dropping them),
//! `rp_filter`. On the target (`--egress`): each interface, the TC egress
//! program on it (attached and detached again), and that the replies to
//! each client range leave through an intercepted interface (the stack
//! needs a route to send them at all; any route will do). Both: the
//! address tcpcopy connects to (free, or taken by a running intercept).

use std::net::{SocketAddr, TcpListener};

use tcpcopy_runtime::{
    doctor::{Report, check_interface, check_xdp_attach},
    netdev,
    tc::EgressAttach,
    xdp::XdpModePolicy,
};

use crate::{
    access::Cidr,
    capture::{DEFAULT_RING_BYTES, ReplyCapture, egress::EgressProgram, xdp::ReplyProgram},
    cli::Cli,
    daemon::ReplyPath,
};

/// Runs every check for the daemon `cli` describes.
pub fn run(cli: &Cli) -> Report {
    let config = cli.daemon_config();
    let mut r = Report::new(format!(
        "intercept doctor {}: checking what intercept needs on this host",
        env!("CARGO_PKG_VERSION")
    ));
    let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
    r.info("targets", targets.join(", "));
    match &config.path {
        ReplyPath::Assistant { xdp_mode } => {
            for dev in &config.interfaces {
                check_assistant_interface(&mut r, dev, &config.targets, *xdp_mode);
            }
            check_ip_forward(&mut r);
        }
        ReplyPath::Egress { clients } => {
            for dev in &config.interfaces {
                check_egress_interface(&mut r, dev);
            }
            check_client_routes(&mut r, clients, &config.interfaces);
        }
    }
    let listen = SocketAddr::V4(config.listen);
    match TcpListener::bind(listen) {
        Ok(_) => r.pass(
            &format!("listen address {listen}"),
            "free: tcpcopy connects here (-s)",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => r.info(
            &format!("listen address {listen}"),
            "in use: intercept is already running here (or another program holds the port)",
        ),
        Err(e) => r.fail(
            &format!("listen address {listen}"),
            e.to_string(),
            "-b must be an address of this host (or 0.0.0.0), -p a free port",
        ),
    }
    r
}

fn check_egress_interface(r: &mut Report, dev: &str) {
    if check_interface(
        r,
        &format!("interface {dev}"),
        dev,
        "--egress names the one the target's replies leave by",
    )
    .is_none()
    {
        return;
    }
    let what = format!("TC egress on {dev}");
    // An empty target table: attached for a moment, it matches nothing.
    let attached = EgressProgram::load(DEFAULT_RING_BYTES, 1).and_then(|mut p| {
        let how = p.attach_egress(dev)?;
        p.detach_all()?;
        Ok(how)
    });
    match attached {
        Ok(EgressAttach::Tcx) => r.pass(
            &what,
            "TCX link (attached and detached again; gone with intercept, however it stops)",
        ),
        Ok(EgressAttach::Filter) => r.warn(
            &what,
            "clsact filter only (kernel without TCX, < 6.6): it works, but stays on the device \
             if intercept is killed, dropping the replies until removed",
            format!("after a crash: tc filter del dev {dev} egress"),
        ),
        Err(e) => r.fail(
            &what,
            e.to_string(),
            "are we root? `tc filter show dev DEV egress` and `bpftool net` show what is attached",
        ),
    }
}

/// The stack sends a reply only along a route; it must leave through an
/// intercepted interface, or it is never seen (and reaches the network).
fn check_client_routes(r: &mut Report, clients: &[Cidr], interfaces: &[String]) {
    if clients.is_empty() {
        r.info(
            "client ranges",
            "none (--clients announced): replies to the client addresses tcpcopy announces \
             are dropped; a session's first SYN-ACK can beat its announcement and leave",
        );
        return;
    }
    for net in clients {
        let what = format!("route to clients {net}");
        let probe = net.network();
        match netdev::route_device(probe) {
            Some(dev) if interfaces.contains(&dev) => r.pass(
                &what,
                format!("replies leave by {dev}, which is intercepted (no route change needed)"),
            ),
            Some(dev) => r.fail(
                &what,
                format!("replies to {probe} leave by {dev}, which is not intercepted"),
                format!("add {dev} to --egress"),
            ),
            None => r.fail(
                &what,
                format!("no route to {probe}: the target cannot send its replies at all"),
                "any route will do, e.g. the default route the host has anyway",
            ),
        }
    }
}

fn check_ip_forward(r: &mut Report) {
    match netdev::ipv4_sysctl("ip_forward") {
        Some(0) => r.pass(
            "ip_forward",
            "0: replies that get past intercept are dropped here, never forwarded to the clients",
        ),
        Some(v) => r.fail(
            "ip_forward",
            format!(
                "{v}: this host forwards what intercept does not drop, so whenever intercept is \
                 stopped (or misses a reply) the target's replies reach the real clients"
            ),
            "sysctl -w net.ipv4.ip_forward=0 (and in /etc/sysctl.d, to keep it)",
        ),
        None => r.warn(
            "ip_forward",
            "unreadable (/proc/sys/net/ipv4/ip_forward)",
            "check it is 0",
        ),
    }
}

fn check_assistant_interface(
    r: &mut Report,
    dev: &str,
    targets: &[crate::targets::Target],
    policy: XdpModePolicy,
) {
    let Some(iface) = check_interface(
        r,
        &format!("interface {dev}"),
        dev,
        "-i names the one the target's replies arrive on",
    ) else {
        return;
    };
    let attached = ReplyProgram::load().and_then(|mut p| {
        for t in targets {
            p.add_target(t.addr, t.port)?;
        }
        let mode = p.attach_with(dev, policy)?;
        p.detach_all()?;
        Ok(mode)
    });
    check_xdp_attach(r, dev, policy, attached, "intercept");
    if let Some(v) = netdev::rp_filter(dev) {
        r.info(
            &format!("rp_filter on {dev}"),
            format!(
                "{v}: the XDP program takes the replies before the stack's filters, so it does \
                 not matter for intercept"
            ),
        );
    }
    if iface.offloads.lro == Some(true) {
        r.warn(
            &format!("offloads of {dev}"),
            "LRO on: many drivers refuse XDP with it",
            format!("ethtool -K {dev} lro off"),
        );
    }
}
