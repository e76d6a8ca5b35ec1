//! The TC egress reply program, for the target host itself.
//!
//! Attached at the egress of the target's devices, the program shoots every
//! packet from a target endpoint to a replayed client and reports its
//! header record (see `intercept-ebpf/src/egress.rs`). A replayed client is
//! an address in one of the client ranges ([`EgressProgram::add_client_net`],
//! `--clients`) or a client address a tcpcopy announced for that target
//! ([`AnnouncedTable`]). The target needs no route for the clients and no
//! assistant host. Each family has its own tables (`CLIENTS6`,
//! `ANNOUNCED6`, `UNCLAIMED6` for IPv6); the API takes either.

use std::net::IpAddr;

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{HashMap, LpmTrie, MapData, lpm_trie::Key},
};
use tcpcopy_common::table::{AnnouncedKey, AnnouncedKey6, ClientNetKey, ClientNetKey6};
use tcpcopy_runtime::{
    object::BpfObject,
    tc::{EgressAttach, EgressObject},
    xdp::XdpError,
};

use super::{INTERCEPT_OBJECT, RECORDS_MAP, ReplyCapture, SCRATCH_MAP, possible_cpus};
use crate::{access::Cidr, route::table::SessionKey};

/// Map of client ranges (LPM trie).
pub const CLIENTS_MAP: &str = "CLIENTS";
/// Map of announced client addresses per target endpoint (LRU hash).
pub const ANNOUNCED_MAP: &str = "ANNOUNCED";
/// Map of unclaimed replies' keys (LRU hash), filled by the program.
pub const UNCLAIMED_MAP: &str = "UNCLAIMED";
/// The IPv6 client ranges.
pub const CLIENTS6_MAP: &str = "CLIENTS6";
/// The announced IPv6 client addresses.
pub const ANNOUNCED6_MAP: &str = "ANNOUNCED6";
/// The unclaimed IPv6 replies' keys.
pub const UNCLAIMED6_MAP: &str = "UNCLAIMED6";

/// Announced client addresses kept at most (the oldest go first): 256 Ki,
/// about 20 MiB of kernel memory.
pub const ANNOUNCED_MAX: u32 = 1 << 18;

/// Sets the egress program's tables to their smallest, for an object whose
/// egress program is not used.
pub(crate) fn shrink_egress_tables(loader: &mut EbpfLoader<'_>) {
    for map in [
        ANNOUNCED_MAP,
        UNCLAIMED_MAP,
        CLIENTS_MAP,
        ANNOUNCED6_MAP,
        UNCLAIMED6_MAP,
        CLIENTS6_MAP,
    ] {
        loader.map_max_entries(map, 1);
    }
}

/// The TC egress reply program, loaded into the kernel.
pub struct EgressProgram {
    object: EgressObject,
}

impl EgressProgram {
    /// Name of the program in the object.
    pub const NAME: &'static str = "intercept_egress";

    /// Loads the program with a ring buffer of `ring_bytes` (a power of two
    /// multiple of the page size) and room for `announced_max` announced
    /// client addresses of each family (not attached yet).
    pub fn load(ring_bytes: u32, announced_max: u32) -> Result<Self, XdpError> {
        let object = EgressObject::load(INTERCEPT_OBJECT, Self::NAME, |loader| {
            loader
                .map_max_entries(RECORDS_MAP, ring_bytes)
                .map_max_entries(SCRATCH_MAP, possible_cpus())
                .map_max_entries(ANNOUNCED_MAP, announced_max.max(1))
                .map_max_entries(ANNOUNCED6_MAP, announced_max.max(1));
        })?;
        Ok(Self { object })
    }

    /// Replies to any address of `net` (either family) are intercepted.
    pub fn add_client_net(&mut self, net: Cidr) -> Result<(), XdpError> {
        let name = if net.is_ipv6() {
            CLIENTS6_MAP
        } else {
            CLIENTS_MAP
        };
        let map = self
            .object
            .object_mut()
            .ebpf_mut()
            .map_mut(name)
            .ok_or(XdpError::Missing(name))?;
        let prefix = u32::from(net.prefix());
        match net.network() {
            IpAddr::V4(a) => {
                let mut trie: LpmTrie<_, ClientNetKey, u32> =
                    LpmTrie::try_from(map).map_err(|e| XdpError::map(name, e))?;
                trie.insert(&Key::new(prefix, a.octets()), 0, 0)
            }
            IpAddr::V6(a) => {
                let mut trie: LpmTrie<_, ClientNetKey6, u32> =
                    LpmTrie::try_from(map).map_err(|e| XdpError::map(name, e))?;
                trie.insert(&Key::new(prefix, a.octets()), 0, 0)
            }
        }
        .map_err(|e| XdpError::map(name, e))
    }

    /// Attaches at the egress of `iface` in the calling thread's network
    /// namespace.
    pub fn attach_egress(&mut self, iface: &str) -> Result<EgressAttach, XdpError> {
        self.object.attach_egress(iface)
    }

    /// Takes the announced-client tables out of the object (once), for the
    /// daemon to fill from CLIENT_ADD messages.
    pub fn take_announced(&mut self) -> Result<AnnouncedTable, XdpError> {
        let ebpf = self.object.object_mut().ebpf_mut();
        Ok(AnnouncedTable {
            announced: take_hash(ebpf, ANNOUNCED_MAP)?,
            unclaimed: take_hash(ebpf, UNCLAIMED_MAP)?,
            announced6: take_hash(ebpf, ANNOUNCED6_MAP)?,
            unclaimed6: take_hash(ebpf, UNCLAIMED6_MAP)?,
        })
    }

    pub fn tc(&self) -> &EgressObject {
        &self.object
    }
}

/// Takes hash map `name` with keys `K` out of the object.
fn take_hash<K: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, u32>, XdpError> {
    let map = ebpf.take_map(name).ok_or(XdpError::Missing(name))?;
    HashMap::try_from(map).map_err(|e| XdpError::map(name, e))
}

impl ReplyCapture for EgressProgram {
    fn object(&self) -> &BpfObject {
        self.object.object()
    }

    fn object_mut(&mut self) -> &mut BpfObject {
        self.object.object_mut()
    }

    fn detach_all(&mut self) -> Result<(), XdpError> {
        self.object.detach_all()
    }
}

/// What one announcement did to the kernel's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The client address is claimed for the target from now on.
    Now,
    /// Claimed now, but a reply to it left the host before (its SYN-ACK
    /// beat the announcement, or the address was served before replay).
    AfterAReplyEscaped,
}

/// The program's `ANNOUNCED` and `UNCLAIMED` tables (and their IPv6
/// twins).
///
/// An announcement claims the client *address* for that target (every port
/// of it), and stays until the table is full and it is the oldest: a
/// withdrawal (session over) leaves it, so that the target's late
/// retransmissions to a finished session never leave the host either.
pub struct AnnouncedTable {
    announced: HashMap<MapData, AnnouncedKey, u32>,
    unclaimed: HashMap<MapData, AnnouncedKey, u32>,
    announced6: HashMap<MapData, AnnouncedKey6, u32>,
    unclaimed6: HashMap<MapData, AnnouncedKey6, u32>,
}

impl AnnouncedTable {
    /// Claims `session`'s client address for its target, in its family's
    /// table.
    pub fn announce(&mut self, session: &SessionKey) -> Result<Claimed, XdpError> {
        let escaped = match session {
            SessionKey::V4(route) => {
                let key = AnnouncedKey::from_wire(
                    route.client_ip,
                    route.target_ip,
                    route.target_port.to_be_bytes(),
                );
                self.announced
                    .insert(key, 0, 0)
                    .map_err(|e| XdpError::map(ANNOUNCED_MAP, e))?;
                self.unclaimed.remove(&key).is_ok()
            }
            SessionKey::V6(route) => {
                let key = AnnouncedKey6::from_wire(
                    route.client_ip,
                    route.target_ip,
                    route.target_port.to_be_bytes(),
                );
                self.announced6
                    .insert(key, 0, 0)
                    .map_err(|e| XdpError::map(ANNOUNCED6_MAP, e))?;
                self.unclaimed6.remove(&key).is_ok()
            }
        };
        Ok(if escaped {
            Claimed::AfterAReplyEscaped
        } else {
            Claimed::Now
        })
    }
}
