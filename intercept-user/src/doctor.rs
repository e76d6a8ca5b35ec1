//! `intercept doctor`: checks what intercept needs on this host and prints
//! a line per check with the fix for each problem.
//!
//! On an assistant (`-i`): each interface (up, MTU), XDP on it (the reply
//! program is attached and detached again with the targets of both
//! families; while it is attached it drops the targets' replies, which is
//! its job here), its offloads, `ip_forward` (must be 0: a forwarding
//! assistant hands the target's replies to the real clients whenever
//! intercept is not dropping them; with IPv6 targets, IPv6 forwarding as
//! well), `rp_filter`. On the target (`--egress`): each interface, the TC
//! egress program on it (attached and detached again), and that the
//! replies to each client range (IPv4 or IPv6) leave through an
//! intercepted interface (the stack needs a route to send them at all; any
//! route will do). Both: the address tcpcopy connects to (free, or taken
//! by a running intercept).

use std::net::{IpAddr, Ipv6Addr, TcpListener};

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
            if config.targets.iter().any(|t| t.is_ipv6()) {
                check_ipv6_forwarding(&mut r);
            }
        }
        ReplyPath::Egress { clients } => {
            for dev in &config.interfaces {
                check_egress_interface(&mut r, dev);
            }
            check_client_routes(&mut r, clients, &config.interfaces);
        }
    }
    let listen = config.listen;
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
        let device = match probe {
            IpAddr::V4(a) => netdev::route_device(a),
            IpAddr::V6(a) => route_device6(a),
        };
        match device {
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

/// With IPv6 targets: an assistant that forwards IPv6 hands the target's
/// IPv6 replies to the clients whenever intercept is not dropping them.
fn check_ipv6_forwarding(r: &mut Report) {
    let path = "/proc/sys/net/ipv6/conf/all/forwarding";
    match std::fs::read_to_string(path)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        Some(0) => r.pass(
            "IPv6 forwarding",
            "0: IPv6 replies that get past intercept are dropped here, never forwarded",
        ),
        Some(v) => r.fail(
            "IPv6 forwarding",
            format!(
                "{v}: this host forwards the IPv6 replies intercept does not drop, so whenever \
                 intercept is stopped the target's IPv6 replies reach the real clients"
            ),
            "sysctl -w net.ipv6.conf.all.forwarding=0 (and in /etc/sysctl.d, to keep it)",
        ),
        None => r.warn(
            "IPv6 forwarding",
            format!("unreadable ({path})"),
            "check it is 0",
        ),
    }
}

/// The device of the kernel's best IPv6 route to `addr`
/// (`/proc/net/ipv6_route`), as `netdev::route_device` for IPv4.
fn route_device6(addr: Ipv6Addr) -> Option<String> {
    route_device6_in(&std::fs::read_to_string("/proc/net/ipv6_route").ok()?, addr)
}

/// [`route_device6`] over the text of `/proc/net/ipv6_route`: destination
/// (32 hex digits), prefix length (hex), source, its prefix, next hop,
/// metric (hex), use and reference counts, flags (hex), device. The
/// longest matching prefix wins, then the lowest metric; routes that are
/// down or reject (unreachable, prohibit) do not count.
fn route_device6_in(table: &str, addr: Ipv6Addr) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    const RTF_REJECT: u32 = 0x200;
    let target = u128::from(addr);
    let mut best: Option<(u32, u32, &str)> = None; // (prefix bits, metric, dev)
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Ok(dest), Ok(bits), Ok(metric), Ok(flags)) = (
            u128::from_str_radix(f[0], 16),
            u32::from_str_radix(f[1], 16),
            u32::from_str_radix(f[5], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if bits > 128 || flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
            continue;
        }
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        if target & mask != dest & mask {
            continue;
        }
        if best.is_none_or(|(b, m, _)| bits > b || (bits == b && metric < m)) {
            best = Some((bits, metric, f[9]));
        }
    }
    best.map(|(_, _, dev)| dev.to_owned())
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
            p.add(t)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A target's IPv6 table: its LAN, the client range via the assistant,
    /// the default route, the kernel's unreachable catch-all and a local
    /// address.
    const TABLE: &str = "\
20010db8000200000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
20010db8000100000000000000000000 40 00000000000000000000000000000000 00 20010db8000200000000000000000003 00000400 00000001 00000000 00000003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000200000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
20010db8000200000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
";

    fn dev(addr: &str) -> Option<String> {
        route_device6_in(TABLE, addr.parse().unwrap())
    }

    #[test]
    fn the_longest_ipv6_prefix_wins_and_reject_routes_never_do() {
        assert_eq!(dev("2001:db8:1::7").as_deref(), Some("eth1"));
        assert_eq!(dev("2001:db8:2::9").as_deref(), Some("eth0"));
        assert_eq!(dev("2001:db8:9::1").as_deref(), Some("eth0"), "default");
        // Without the default route only the reject route would match.
        let no_default: String = TABLE
            .lines()
            .filter(|l| !l.contains("20010db8000200000000000000000001 00000400"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            route_device6_in(&no_default, "2001:db8:9::1".parse().unwrap()),
            None
        );
        assert_eq!(route_device6_in("garbage\n\n", Ipv6Addr::LOCALHOST), None);
    }
}
