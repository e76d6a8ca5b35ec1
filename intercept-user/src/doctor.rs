//! `intercept doctor`: checks what intercept needs on the assistant host
//! and prints a line per check with the fix for each problem.
//!
//! Checks: each interface (up, MTU), XDP on it (the reply program is
//! attached and detached again; while it is attached it drops the targets'
//! replies, which is its job here), its offloads, `ip_forward` (must be 0:
//! a forwarding assistant hands the target's replies to the real clients
//! whenever intercept is not dropping them), `rp_filter`, and the address
//! tcpcopy connects to (free, or taken by a running intercept).

use std::net::{SocketAddr, TcpListener};

use tcpcopy_runtime::{
    doctor::{Report, check_interface, check_xdp_attach},
    netdev,
    xdp::XdpModePolicy,
};

use crate::{capture::xdp::ReplyProgram, cli::Cli};

/// Runs every check for the daemon `cli` describes.
pub fn run(cli: &Cli) -> Report {
    let config = cli.daemon_config();
    let mut r = Report::new(format!(
        "intercept doctor {}: checking what intercept needs on this host",
        env!("CARGO_PKG_VERSION")
    ));
    let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
    r.info("targets", targets.join(", "));
    for dev in &config.interfaces {
        check_assistant_interface(&mut r, dev, &config.targets, cli.xdp_mode);
    }
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
