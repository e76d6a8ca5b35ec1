//! The lab: DESIGN section 7's topology in network namespaces.
//!
//! ```text
//! client 198.18.1.2 --- 198.18.1.1 online 198.18.2.1 --+
//!   (eth0)                (eth0)          (eth1)       |  LAN: bridge br0 in the `lan` namespace
//!                     target 198.18.2.2 (eth0) --------+  route 198.18.1.0/24 via 198.18.2.3
//!                     assistant 198.18.2.3 (eth0) -----+  ip_forward=0
//! ```
//!
//! Every lab has its own namespaces (`tcl-<pid>-<n>-<host>`), so labs can
//! exist side by side. Only addresses from 198.18.0.0/15 are used.
//!
//! A lab keeps what a user's machine has by default: veth links with the
//! offloads veth creates them with (a local stack's packets carry
//! checksums left for the NIC, as between containers or VMs on one host),
//! and the host's bridge netfilter setting as it is. A [`LabSpec`] makes
//! the variants of the environment matrix (offloads off, bridge netfilter
//! on, a VLAN trunk, GRO, jumbo frames, a production server in a
//! container): each is an extra case, never a replacement of the default.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use crate::{
    netns::NetnsGuard,
    wait::{DEADLINE, wait_until},
};

/// Namespace name prefix of every lab.
pub const LAB_PREFIX: &str = "tcl-";

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The online host's address on the client side (production service address).
pub const ONLINE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The online host's address on the LAN (where tcpcopy sends from).
pub const ONLINE_LAN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const TARGET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const ASSISTANT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 3);
/// The client address range whose replies the target routes to the assistant.
pub const CLIENT_NET: &str = "198.18.1.0/24";

/// [`LabSpec::ipv6`]: the same hosts' IPv6 addresses (documentation
/// space), the client side in 2001:db8:1::/64, the LAN in 2001:db8:2::/64.
pub const CLIENT6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const ONLINE6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const ONLINE6_LAN_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const TARGET6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const ASSISTANT6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 3);
/// The client range whose IPv6 replies the target routes to the assistant.
pub const CLIENT6_NET: &str = "2001:db8:1::/64";

/// The production server's address in [`LabSpec::container`]'s container.
pub const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
/// The online host's address on the container's link (its default route).
pub const CONTAINER_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);

/// A machine of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Client,
    Online,
    Target,
    Assistant,
    /// The switch: holds the LAN bridge.
    Lan,
    /// A container on the online host ([`LabSpec::container`] only).
    Container,
}

impl Host {
    pub const ALL: [Self; 6] = [
        Self::Client,
        Self::Online,
        Self::Target,
        Self::Assistant,
        Self::Lan,
        Self::Container,
    ];

    const fn suffix(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Online => "online",
            Self::Target => "target",
            Self::Assistant => "assistant",
            Self::Lan => "lan",
            Self::Container => "container",
        }
    }
}

/// How a lab differs from what a user's machine has by default (every
/// field's default: no difference).
#[derive(Clone, Debug, Default)]
pub struct LabSpec {
    /// Checksum and segmentation offloads off on both ends of the
    /// production link (client - online): frames as on a wire.
    pub offloads_off: bool,
    /// Segmentation offload (TSO/GSO) off on the client, checksum offload
    /// left on: the client sends MTU-sized segments (for GRO to merge).
    pub client_segmentation_off: bool,
    /// bridge-nf-call-{iptables,ip6tables,arptables} in the LAN switch
    /// (`None`: as the host has it), and with `Some(true)` a Kubernetes-like
    /// FORWARD ruleset there that uses conntrack and drops INVALID packets.
    pub bridge_netfilter: Option<bool>,
    /// The production link is a VLAN trunk carrying this tag both ways.
    pub production_vlan: Option<u16>,
    /// MTU of the production link (both ends).
    pub production_mtu: Option<u16>,
    /// GRO on the online host's production interface.
    pub online_gro: bool,
    /// The production server runs in a container: a namespace behind a
    /// veth pair on the online host, which routes to it (ip_forward on).
    pub container: bool,
    /// No assistant host (intercept runs on the target, `--egress`): the
    /// target has no route for the client range, only the default route
    /// every real host has (here via the online host, which does not
    /// forward: a reply that got out ends there, seen on the LAN).
    pub no_assistant: bool,
    /// IPv6 on every link as well ([`CLIENT6_IP`] and the rest, routed
    /// like the IPv4 addresses). Without it the lab has IPv6 off, so a
    /// test's counters see no router solicitations or address probes.
    pub ipv6: bool,
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A lab of five namespaces. Dropping it kills everything running inside
/// and deletes the namespaces (with their links and XDP programs).
pub struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
    children: Mutex<Vec<Child>>,
    spec: LabSpec,
}

impl Lab {
    /// Builds a fresh lab with the defaults (after sweeping stale ones).
    pub fn new() -> Self {
        Self::with(LabSpec::default())
    }

    /// Builds a fresh lab differing from the defaults as `spec` says.
    pub fn with(spec: LabSpec) -> Self {
        crate::require_root();
        sweep_stale_labs();
        let prefix = format!(
            "{LAB_PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .expect("create the lab's temporary directory");
        // Exists before any namespace does, so a failing step still cleans up.
        let lab = Self {
            prefix,
            dir,
            children: Mutex::new(Vec::new()),
            spec,
        };
        lab.build();
        lab
    }

    /// How this lab differs from the defaults.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    fn hosts(&self) -> impl Iterator<Item = Host> + '_ {
        Host::ALL
            .into_iter()
            .filter(|h| *h != Host::Container || self.spec.container)
            .filter(|h| *h != Host::Assistant || !self.spec.no_assistant)
    }

    fn build(&self) {
        use Host::*;
        for host in self.hosts() {
            ip(&["netns", "add", &self.ns(host)]);
            self.run(host, &["ip", "link", "set", "lo", "up"]);
            if self.spec.ipv6 {
                // Addresses usable at once (no duplicate address detection
                // on links only the test uses), no router solicitations.
                for conf in ["all", "default"] {
                    for (key, v) in [("accept_dad", "0"), ("router_solicitations", "0")] {
                        let set = format!("net.ipv6.conf.{conf}.{key}={v}");
                        self.run(host, &["sysctl", "-qw", &set]);
                    }
                }
            } else {
                // No IPv6 chatter (router solicitations, DAD) in the counters.
                self.run(host, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
                self.run(
                    host,
                    &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                );
            }
        }
        // client <-> online: a point-to-point link.
        self.veth(Client, "eth0", Online, "eth0");
        // The LAN: a bridge in the lan namespace, one port per LAN host.
        self.ip_in(Lan, &["link", "add", "br0", "type", "bridge"]);
        self.ip_in(Lan, &["link", "set", "br0", "up"]);
        let lan_hosts: Vec<Host> = self.hosts().collect();
        for (host, iface, port) in [
            (Online, "eth1", "online"),
            (Target, "eth0", "target"),
            (Assistant, "eth0", "assistant"),
        ] {
            if !lan_hosts.contains(&host) {
                continue;
            }
            self.veth(host, iface, Lan, port);
            self.ip_in(Lan, &["link", "set", port, "master", "br0"]);
            self.ip_in(Lan, &["link", "set", port, "up"]);
        }
        for (host, iface, addr) in [
            (Client, "eth0", "198.18.1.2/24"),
            (Online, "eth0", "198.18.1.1/24"),
            (Online, "eth1", "198.18.2.1/24"),
            (Target, "eth0", "198.18.2.2/24"),
            (Assistant, "eth0", "198.18.2.3/24"),
        ] {
            if !lan_hosts.contains(&host) {
                continue;
            }
            self.ip_in(host, &["addr", "add", addr, "dev", iface]);
            self.ip_in(host, &["link", "set", iface, "up"]);
        }
        self.ip_in(Client, &["route", "add", "default", "via", "198.18.1.1"]);
        if self.spec.ipv6 {
            self.build_ipv6(&lan_hosts);
        }
        if self.spec.no_assistant {
            self.ip_in(Target, &["route", "add", "default", "via", "198.18.2.1"]);
        } else {
            // The target answers the client range through the assistant ...
            self.ip_in(Target, &["route", "add", CLIENT_NET, "via", "198.18.2.3"]);
            // ... which never forwards them.
            self.run(Assistant, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        }
        self.run(Online, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        self.apply_spec();
    }

    /// [`LabSpec::ipv6`]: the IPv6 addresses and routes, as the IPv4 ones.
    fn build_ipv6(&self, lan_hosts: &[Host]) {
        use Host::*;
        for (host, iface, addr) in [
            (Client, "eth0", "2001:db8:1::2/64"),
            (Online, "eth0", "2001:db8:1::1/64"),
            (Online, "eth1", "2001:db8:2::1/64"),
            (Target, "eth0", "2001:db8:2::2/64"),
            (Assistant, "eth0", "2001:db8:2::3/64"),
        ] {
            if lan_hosts.contains(&host) {
                self.ip_in(host, &["-6", "addr", "add", addr, "dev", iface, "nodad"]);
            }
        }
        self.ip_in(
            Client,
            &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
        );
        let via = if self.spec.no_assistant {
            "2001:db8:2::1"
        } else {
            "2001:db8:2::3"
        };
        self.ip_in(Target, &["-6", "route", "add", CLIENT6_NET, "via", via]);
        for host in [Online, Assistant] {
            if lan_hosts.contains(&host) {
                self.run(host, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"]);
            }
        }
    }

    /// The variants of [`LabSpec`], on top of the default lab.
    fn apply_spec(&self) {
        use Host::*;
        let spec = self.spec.clone();
        if spec.offloads_off {
            for host in [Client, Online] {
                self.run(
                    host,
                    &[
                        "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
                    ],
                );
            }
        }
        if spec.client_segmentation_off {
            self.run(
                Client,
                &["ethtool", "-K", "eth0", "tso", "off", "gso", "off"],
            );
        }
        if let Some(on) = spec.bridge_netfilter {
            let v = u8::from(on);
            for hook in ["iptables", "ip6tables", "arptables"] {
                self.run(
                    Lan,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.bridge.bridge-nf-call-{hook}={v}"),
                    ],
                );
            }
            if on {
                // What kube-proxy and Docker put in FORWARD: conntrack on
                // every bridged frame, INVALID ones dropped.
                for rule in [
                    "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
                    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                    "-A FORWARD -i br0 -o br0 -j ACCEPT",
                    "-P FORWARD DROP",
                ] {
                    let mut argv = vec!["iptables", "-w"];
                    argv.extend(rule.split(' '));
                    self.run(Lan, &argv);
                }
            }
        }
        if let Some(mtu) = spec.production_mtu {
            let mtu = mtu.to_string();
            for host in [Client, Online] {
                self.ip_in(host, &["link", "set", "eth0", "mtu", &mtu]);
            }
        }
        if let Some(vid) = spec.production_vlan {
            for host in [Client, Online] {
                crate::tc::vlan_trunk(self, host, "eth0", vid);
            }
        }
        if spec.online_gro {
            self.run(Online, &["ethtool", "-K", "eth0", "gro", "on"]);
        }
        if spec.container {
            self.veth(Online, "c0", Container, "eth0");
            self.ip_in(Online, &["addr", "add", "198.18.3.1/24", "dev", "c0"]);
            self.ip_in(Online, &["link", "set", "c0", "up"]);
            self.ip_in(Container, &["addr", "add", "198.18.3.2/24", "dev", "eth0"]);
            self.ip_in(Container, &["link", "set", "eth0", "up"]);
            self.ip_in(Container, &["route", "add", "default", "via", "198.18.3.1"]);
            // A container host routes for its containers; the assistant
            // must reach a tcpcopy running in one.
            self.run(Online, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let intercept_host = if spec.no_assistant { Target } else { Assistant };
            self.ip_in(
                intercept_host,
                &["route", "add", "198.18.3.0/24", "via", "198.18.2.1"],
            );
        }
    }

    /// The `ip netns` name of `host`'s namespace.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.prefix, host.suffix())
    }

    /// A scratch directory that lives as long as the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `program` to run inside `host`'s namespace.
    pub fn command(&self, host: Host, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host), program]);
        cmd
    }

    /// Runs `argv` in `host` and returns its output, whatever the status.
    pub fn output(&self, host: Host, argv: &[&str]) -> Output {
        self.command(host, argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {host:?}: {e}"))
    }

    /// Runs `argv` in `host`; panics with its stderr unless it succeeds.
    /// Returns stdout.
    pub fn run(&self, host: Host, argv: &[&str]) -> String {
        let out = self.output(host, argv);
        assert!(
            out.status.success(),
            "{argv:?} in {host:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A veth pair: `a_if` in `a`, its peer `b_if` in `b`.
    fn veth(&self, a: Host, a_if: &str, b: Host, b_if: &str) {
        let peer_ns = self.ns(b);
        self.ip_in(
            a,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &peer_ns,
            ],
        );
    }

    /// `ip -n <host's namespace> args...`.
    fn ip_in(&self, host: Host, args: &[&str]) {
        let ns = self.ns(host);
        let mut argv = vec!["-n", ns.as_str()];
        argv.extend_from_slice(args);
        ip(&argv);
    }

    /// Starts a long-running process in `host`; it is killed when the lab
    /// is dropped. Its stdout and stderr go to `<lab dir>/<log_name>`.
    pub fn spawn(&self, host: Host, log_name: &str, argv: &[&str]) {
        let log = std::fs::File::create(self.dir().join(log_name)).expect("create a log file");
        let child = self
            .command(host, argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?} in {host:?}: {e}"));
        self.children.lock().unwrap().push(child);
    }

    /// A mirror port on the online host: every frame arriving on `eth0`
    /// is also sent out of `mirror0` (`tc ... mirred egress mirror`) and
    /// arrives on its veth peer `mirror1`, as a SPAN port would deliver it.
    /// Returns the interface to capture on (`mirror1`).
    pub fn add_mirror_port(&self) -> &'static str {
        use Host::Online;
        self.ip_in(
            Online,
            &[
                "link", "add", "mirror0", "type", "veth", "peer", "name", "mirror1",
            ],
        );
        self.ip_in(Online, &["link", "set", "mirror0", "up"]);
        self.ip_in(Online, &["link", "set", "mirror1", "up"]);
        self.run(Online, &["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
        self.run(
            Online,
            // u32 matching everything (this kernel has no matchall).
            &[
                "tc", "filter", "add", "dev", "eth0", "ingress", "u32", "match", "u32", "0", "0",
                "action", "mirred", "egress", "mirror", "dev", "mirror0",
            ],
        );
        "mirror1"
    }

    /// As [`Lab::add_mirror_port`], with the online host's outgoing frames
    /// mirrored too (a SPAN port of both directions, as switches usually
    /// configure it): production's answers reach the mirror.
    pub fn add_mirror_port_both_ways(&self) -> &'static str {
        let port = self.add_mirror_port();
        self.run(
            Host::Online,
            &[
                "tc", "filter", "add", "dev", "eth0", "egress", "u32", "match", "u32", "0", "0",
                "action", "mirred", "egress", "mirror", "dev", "mirror0",
            ],
        );
        port
    }

    /// Pins every process now running in `host`'s namespace (all their
    /// threads) to CPU `cpu` (benchmarks: to keep production and the replay
    /// side on separate cores, as on separate hosts).
    pub fn pin(&self, host: Host, cpu: usize) {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(host)])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            pin_process(pid, cpu);
        }
    }

    /// Moves the current thread into `host`'s namespace until the guard drops.
    pub fn enter(&self, host: Host) -> NetnsGuard {
        NetnsGuard::enter(&self.ns(host))
    }

    /// An interface statistic (e.g. `rx_packets`) of `iface` in `host`.
    pub fn link_stat(&self, host: Host, iface: &str, stat: &str) -> u64 {
        let path = format!("/sys/class/net/{iface}/statistics/{stat}");
        let text = self.run(host, &["cat", &path]);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {host:?}: {text:?}: {e}"))
    }

    /// Waits until something listens on TCP `addr` in `host`.
    pub fn wait_for_port(&self, host: Host, addr: impl Into<SocketAddr>) {
        let addr = addr.into();
        let what = format!("a listener on {addr} in {host:?}");
        wait_until(&what, DEADLINE, || {
            let out = self.run(host, &["ss", "-Hltn"]);
            let wanted = addr.to_string();
            if out.split_whitespace().any(|w| w == wanted) {
                Ok(())
            } else {
                Err(format!("listeners: {}", out.trim().replace('\n', "; ")))
            }
        });
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for child in children.iter_mut() {
            let _ = child.kill();
        }
        for host in self.hosts() {
            remove_namespace(&self.ns(host));
        }
        for mut child in children.drain(..) {
            let _ = child.wait();
        }
    }
}

/// Pins process `pid` (every thread) to CPU `cpu`.
pub fn pin_process(pid: &str, cpu: usize) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `ip args...`, panicking with stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills whatever still runs in the namespace, then deletes it (its links
/// and the XDP programs attached to them go with it). Best effort: cleanup
/// must not panic inside a panicking test.
fn remove_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) on a pid inside our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Whether `name` is a lab namespace whose creating process is gone.
pub fn is_stale_lab(name: &str, process_exists: impl Fn(u32) -> bool) -> bool {
    let Some(rest) = name.strip_prefix(LAB_PREFIX) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    pid.parse::<u32>().is_ok_and(|pid| !process_exists(pid))
}

/// Namespaces of labs whose test process is gone.
pub fn stale_labs() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| is_stale_lab(name, |pid| Path::new(&format!("/proc/{pid}")).exists()))
        .map(String::from)
        .collect()
}

/// Removes the namespaces of labs whose test process is gone (killed
/// before its cleanup could run).
pub fn sweep_stale_labs() {
    for name in stale_labs() {
        remove_namespace(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::is_stale_lab;

    #[test]
    fn only_lab_namespaces_of_dead_processes_are_stale() {
        let alive = |pid| pid == 100;
        assert!(is_stale_lab("tcl-200-0-client", alive));
        assert!(is_stale_lab("tcl-200-13-lan", alive));
        assert!(!is_stale_lab("tcl-100-0-client", alive));
        assert!(!is_stale_lab("production", alive));
        assert!(!is_stale_lab("tcl-x-0-client", alive));
        assert!(!is_stale_lab("tcl-", alive));
    }
}
