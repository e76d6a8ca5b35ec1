//! `bench-send`: frames per second through tcpcopy's senders on the lab's
//! veth, and how many of them reach the target. Run it through `cargo
//! xtask bench send` (which builds it in release mode).
//!
//! For each frame size, backend and in-flight cap, a sender opened on the
//! online host's `eth1` sends a fixed number of frames as fast as it takes
//! them, in batches of 64 from one `Outbox` (what one engine batch holds),
//! to the target's MAC and an address on the LAN nobody owns: the target's
//! NIC receives every frame and its IP layer discards them quietly. The
//! sender's counters say what it sent and dropped; the veth counters along
//! the path (online eth1 -> bridge -> target eth0) say what arrived and
//! where the rest was lost.

use std::time::{Duration, Instant};

use clap::Parser;
use tcpcopy_tests::{
    flood::mac_of,
    lab::{Host, Lab},
    send::{open_in, outbox_of, sized},
};
use tcpcopy_user::send::{FrameSender, MacAddr, SendBackend, SenderConfig};

#[derive(Debug, Parser)]
#[command(name = "bench-send")]
struct Args {
    /// Frames per run.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Frame sizes on the wire in bytes, Ethernet header included (66:
    /// a bare ACK with timestamps; 1514: an MTU-size segment).
    #[arg(long, value_delimiter = ',', default_value = "66,1514")]
    sizes: Vec<usize>,
    /// Backends to measure side by side.
    #[arg(long, value_delimiter = ',', default_value = "afxdp,raw")]
    backends: Vec<String>,
    /// AF_XDP in-flight caps (the raw backend has none; its socket buffer
    /// plays that part).
    #[arg(long, value_delimiter = ',', default_value = "256")]
    caps: Vec<u32>,
    /// Frames per `send` call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Leave bridge netfilter on in the LAN namespace (when the host has
    /// br_netfilter loaded, bridged frames then cross iptables).
    #[arg(long)]
    bridge_netfilter: bool,
}

/// Packets counted on an interface of the lab.
#[derive(Clone, Copy, Default)]
struct Link {
    tx_packets: u64,
    tx_dropped: u64,
    rx_packets: u64,
    rx_dropped: u64,
}

impl Link {
    fn read(lab: &Lab, host: Host, iface: &str) -> Self {
        let stat = |s| lab.link_stat(host, iface, s);
        Self {
            tx_packets: stat("tx_packets"),
            tx_dropped: stat("tx_dropped"),
            rx_packets: stat("rx_packets"),
            rx_dropped: stat("rx_dropped"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            tx_packets: self.tx_packets - before.tx_packets,
            tx_dropped: self.tx_dropped - before.tx_dropped,
            rx_packets: self.rx_packets - before.rx_packets,
            rx_dropped: self.rx_dropped - before.rx_dropped,
        }
    }
}

struct Run {
    backend: SendBackend,
    cap: Option<u32>,
    frame_len: usize,
    sent: u64,
    sender_drops: u64,
    elapsed: Duration,
    /// Frames the target's NIC received.
    received: u64,
    /// Drops on the way: online -> bridge, bridge -> target.
    first_hop_drops: u64,
    second_hop_drops: u64,
}

fn measure(
    lab: &Lab,
    args: &Args,
    target_mac: MacAddr,
    backend: SendBackend,
    cap: u32,
    frame_len: usize,
) -> Run {
    let config = SenderConfig::new("eth1")
        .backend(backend)
        .next_hop_mac(Some(target_mac))
        .max_in_flight(cap);
    let mut sender = open_in(lab, Host::Online, &config)
        .unwrap_or_else(|e| panic!("open {backend} on online eth1: {e}"));
    let packets: Vec<Vec<u8>> = (0..args.batch as u32)
        .map(|i| {
            sized(
                ([198, 18, 1, 50], 45000),
                ([198, 18, 2, 99], 9),
                i,
                frame_len - 14,
            )
        })
        .collect();
    let mut out = outbox_of(&packets);
    let links = || {
        (
            Link::read(lab, Host::Online, "eth1"),
            Link::read(lab, Host::Lan, "target"),
            Link::read(lab, Host::Target, "eth0"),
        )
    };
    let (online0, port0, target0) = links();
    let start = Instant::now();
    let mut offered = 0;
    while offered < args.frames {
        sender.send(&mut out);
        offered += args.batch as u64;
    }
    let elapsed = drain(sender.as_mut(), start);
    let stats = sender.stats();
    // Let the last frames cross the LAN: until every frame sent is
    // accounted for (received or dropped on a hop), or the counters stop
    // moving (a loss no counter sees).
    let mut last = None;
    let settle_start = Instant::now();
    let (online, port, target) = loop {
        let (o, p, t) = links();
        let now = (o.since(online0), p.since(port0), t.since(target0));
        let (o, p, t) = now;
        let accounted = t.rx_packets + t.rx_dropped + p.tx_dropped + o.tx_dropped;
        let key = (o.tx_packets, t.rx_packets, accounted);
        if accounted >= stats.frames
            || last == Some(key)
            || settle_start.elapsed() > Duration::from_secs(5)
        {
            break now;
        }
        last = Some(key);
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(sender);
    Run {
        backend,
        cap: (backend == SendBackend::AfXdp).then_some(cap),
        frame_len,
        sent: stats.frames,
        sender_drops: stats.total_dropped(),
        elapsed,
        received: target.rx_packets,
        first_hop_drops: online.tx_dropped,
        second_hop_drops: port.tx_dropped + target.rx_dropped,
    }
}

/// Polls until every frame has completed; returns the time since `start`.
fn drain(sender: &mut dyn FrameSender, start: Instant) -> Duration {
    loop {
        sender.poll();
        if sender.stats().in_flight == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "frames never completed: {}",
            sender.stats()
        );
    }
}

fn main() {
    let args = Args::parse();
    let backends: Vec<SendBackend> = args
        .backends
        .iter()
        .map(|b| b.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for &size in &args.sizes {
        assert!(
            (54..=1514).contains(&size),
            "frame sizes are 54..=1514 bytes, not {size}"
        );
    }
    let lab = Lab::new();
    if !args.bridge_netfilter {
        // Not the default (the host's setting), on purpose: this measures
        // our senders, and with br_netfilter every bridged frame of the
        // lab's switch also crosses iptables, which a real LAN switch
        // does not do (--bridge-netfilter measures with it; t2_matrix
        // tests replay with it).
        for table in ["iptables", "ip6tables", "arptables"] {
            let key = format!("net.bridge.bridge-nf-call-{table}=0");
            let out = lab.output(Host::Lan, &["sysctl", "-qw", &key]);
            if !out.status.success() {
                println!("(could not set {key}: bridge netfilter stays as it is)");
            }
        }
    }
    let target_mac = MacAddr(mac_of(&lab, Host::Target, "eth0"));
    println!(
        "bench send: {} frames per run, {} per send call, online eth1 -> bridge -> target eth0 (veth)",
        args.frames, args.batch
    );
    println!(
        "{:<7} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "backend",
        "cap",
        "frame",
        "sent",
        "Mpps",
        "Gbit/s",
        "drops",
        "received",
        "loss",
        "hop drops"
    );
    let mut summary = Vec::new();
    for &size in &args.sizes {
        for &backend in &backends {
            let caps: &[u32] = if backend == SendBackend::AfXdp {
                &args.caps
            } else {
                &[256]
            };
            for &cap in caps {
                let r = measure(&lab, &args, target_mac, backend, cap, size);
                let secs = r.elapsed.as_secs_f64();
                let lost = r.sent.saturating_sub(r.received);
                println!(
                    "{:<7} {:>5} {:>6} {:>10} {:>8.3} {:>8.3} {:>8} {:>10} {:>8.3}% {:>4}+{:<4}",
                    r.backend.name(),
                    r.cap.map_or("-".to_owned(), |c| c.to_string()),
                    r.frame_len,
                    r.sent,
                    r.sent as f64 / secs / 1e6,
                    (r.sent * r.frame_len as u64) as f64 * 8.0 / secs / 1e9,
                    r.sender_drops,
                    r.received,
                    100.0 * lost as f64 / r.sent.max(1) as f64,
                    r.first_hop_drops,
                    r.second_hop_drops,
                );
                let cap = r.cap.map_or("-".to_owned(), |c| c.to_string());
                let name = format!("send_{}_{}b_cap{cap}", r.backend.name(), r.frame_len);
                summary.push(format!(
                    "{name}_frames_per_s {:.0} frames/s",
                    r.sent as f64 / secs
                ));
                summary.push(format!(
                    "{name}_loss {:.3} %",
                    100.0 * lost as f64 / r.sent.max(1) as f64
                ));
            }
        }
    }
    println!("summary (name value unit):");
    for line in &summary {
        println!("{line}");
    }
    println!(
        "sent: frames the sender handed to the kernel; drops: frames it dropped and counted (ring full);\n\
         received: rx_packets of the target's eth0; loss: (sent - received) / sent;\n\
         hop drops: veth drops online->bridge + bridge->target."
    );
}
