//! The lab's own TC programs (`lab-ebpf`), attached to lab interfaces:
//! a VLAN trunk and an impaired link, which this machine's kernel cannot
//! make otherwise (no 802.1Q module, no netem).
//!
//! Programs are attached with netlink filters on a clsact qdisc and left
//! there: they go away with the lab's namespaces.

use aya::{
    EbpfLoader,
    programs::{
        SchedClassifier,
        tc::{self, NlOptions, TcAttachOptions, TcAttachType},
    },
};

use crate::lab::{Host, Lab};

/// The `lab-ebpf` object, built by `ebpf-build` (see `build.rs`).
pub static LAB_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab-ebpf"));

/// Where a program runs on an interface.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    Ingress,
    Egress,
}

/// Loads `program` of the lab object (`configure` sets its read-only
/// globals) and attaches it to `iface` of `host`.
pub fn attach<'a>(
    lab: &Lab,
    host: Host,
    iface: &str,
    program: &str,
    direction: Direction,
    configure: impl FnOnce(&mut EbpfLoader<'a>),
) {
    let _ns = lab.enter(host);
    let mut loader = EbpfLoader::new();
    configure(&mut loader);
    let mut ebpf = loader
        .load(LAB_OBJECT)
        .unwrap_or_else(|e| panic!("load the lab's TC programs: {e}"));
    // Already there when a second program goes on the same interface.
    let _ = tc::qdisc_add_clsact(iface);
    let prog: &mut SchedClassifier = ebpf
        .program_mut(program)
        .unwrap_or_else(|| panic!("no program {program} in lab-ebpf"))
        .try_into()
        .expect("a classifier");
    prog.load()
        .unwrap_or_else(|e| panic!("load {program}: {e}"));
    let attach_type = match direction {
        Direction::Ingress => TcAttachType::Ingress,
        Direction::Egress => TcAttachType::Egress,
    };
    let link = prog
        .attach_with_options(
            iface,
            attach_type,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
        .unwrap_or_else(|e| panic!("attach {program} to {iface} in {host:?}: {e}"));
    // The filter stays with the interface (and goes with the namespace);
    // dropping the link would detach it.
    std::mem::forget(prog.take_link(link).expect("the link just made"));
}

/// Makes the link at `iface` of `host` one end of a VLAN trunk with tag
/// `vid`: frames leave tagged (in the frame: TX VLAN offload off) and
/// arrive untagged at the stack. Both ends of a link need it.
pub fn vlan_trunk(lab: &Lab, host: Host, iface: &str, vid: u16) {
    lab.run(host, &["ethtool", "-K", iface, "txvlan", "off"]);
    // Offload off: the kernel writes the tag into the frame, so the
    // peer's XDP program sees it (with the offload on it stays metadata).
    let features = lab.run(host, &["ethtool", "-k", iface]);
    assert!(
        features.contains("tx-vlan-offload: off"),
        "TX VLAN offload still on: {features}"
    );
    attach(lab, host, iface, "vlan_push", Direction::Egress, |l| {
        l.override_global("VLAN_ID", &vid, true);
    });
    attach(lab, host, iface, "vlan_pop", Direction::Ingress, |_| {});
}

/// Impairs TCP leaving `iface` of `host`: `loss_per_mille` of the frames
/// dropped, `slow_per_mille` held back in a slow HTB class (about
/// `slow_rate`), so frames sent after them overtake them.
pub fn impair(
    lab: &Lab,
    host: Host,
    iface: &str,
    loss_per_mille: u32,
    slow_per_mille: u32,
    slow_rate: &str,
) {
    for argv in [
        vec![
            "tc", "qdisc", "add", "dev", iface, "root", "handle", "1:", "htb", "default", "1",
        ],
        vec![
            "tc", "class", "add", "dev", iface, "parent", "1:", "classid", "1:1", "htb", "rate",
            "10gbit",
        ],
        vec![
            "tc", "class", "add", "dev", iface, "parent", "1:", "classid", "1:2", "htb", "rate",
            slow_rate, "ceil", slow_rate,
        ],
    ] {
        lab.run(host, &argv);
    }
    attach(lab, host, iface, "impair", Direction::Egress, |l| {
        l.override_global("LOSS_PER_MILLE", &loss_per_mille, true)
            .override_global("SLOW_PER_MILLE", &slow_per_mille, true)
            .override_global("SLOW_CLASS", &0x0001_0002u32, true);
    });
}
