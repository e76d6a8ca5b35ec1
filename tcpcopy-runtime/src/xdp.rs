//! One loaded XDP program: load, attach with fallback, and the object's
//! tables and counters (through [`BpfObject`]).

use aya::{
    EbpfError, EbpfLoader,
    maps::MapError,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use tcpcopy_common::table::EndpointKey;

use crate::object::BpfObject;
pub use crate::object::{COUNTERS_MAP, TARGETS_MAP, TARGETS6_MAP};

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("cannot load the eBPF object: {0}")]
    Load(Box<EbpfError>),
    #[error("the eBPF object has no program or map named {0}")]
    Missing(&'static str),
    #[error("the kernel rejected program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<ProgramError>,
    },
    #[error(
        "cannot attach XDP to {iface}: native mode: {native}; generic mode: {generic} \
         (is the interface name right, and are we root?)"
    )]
    Attach {
        iface: String,
        native: String,
        generic: String,
    },
    #[error(
        "cannot attach XDP to {iface} in native mode: {native} (the driver may lack native \
         XDP: try --xdp-mode auto, which falls back to generic mode)"
    )]
    AttachNative { iface: String, native: String },
    #[error(
        "cannot attach XDP to {iface} in generic mode: {generic} (is the interface name \
         right, and are we root?)"
    )]
    AttachGeneric { iface: String, generic: String },
    #[error(
        "cannot attach the TC egress program to {iface}: TCX: {tcx}; clsact filter: {filter} \
         (is the interface name right, and are we root?)"
    )]
    AttachEgress {
        iface: String,
        tcx: String,
        filter: String,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<MapError>,
    },
}

/// `e` and every error under it (aya's syscall errors keep the errno in
/// their source), joined by ": ".
pub fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

impl XdpError {
    pub fn program(name: &'static str, e: ProgramError) -> Self {
        Self::Program {
            name,
            source: Box::new(e),
        }
    }

    pub fn map(map: &'static str, e: MapError) -> Self {
        Self::Map {
            map,
            source: Box::new(e),
        }
    }
}

/// How a program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver: the fast path.
    Native,
    /// Generic (skb) mode: works everywhere, costs an skb per frame.
    Generic,
}

/// Which XDP attach modes to try (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpModePolicy {
    /// Native mode, generic mode (with a warning) when the driver refuses.
    #[default]
    Auto,
    /// Native mode or nothing.
    Native,
    /// Generic (skb) mode: after the stack built an skb, so it sees
    /// packets merged by GRO; for drivers whose native mode misbehaves.
    Generic,
}

impl std::str::FromStr for XdpModePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" | "skb" => Ok(Self::Generic),
            _ => Err(format!("{s:?} is not an XDP mode: auto, native or generic")),
        }
    }
}

/// A loaded eBPF object and the name of its XDP program.
pub struct XdpObject {
    object: BpfObject,
    program: &'static str,
    links: Vec<XdpLinkId>,
}

impl XdpObject {
    /// Loads `object` and its XDP program `program` into the kernel (not
    /// attached yet). `configure` may set read-only globals
    /// (`EbpfLoader::override_global`) before the load.
    pub fn load<'a>(
        object: &[u8],
        program: &'static str,
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, XdpError> {
        let mut object = BpfObject::load(object, configure)?;
        object.load_program(program, Xdp::load)?;
        Ok(Self {
            object,
            program,
            links: Vec::new(),
        })
    }

    /// The loaded program (e.g. for `TestRun`).
    pub fn program(&self) -> &Xdp {
        self.object
            .ebpf()
            .program(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.object
            .ebpf_mut()
            .program_mut(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    /// Attaches to `iface` in the calling thread's network namespace: native
    /// mode first, generic mode (with a warning) when the driver refuses.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        self.attach_with(iface, XdpModePolicy::Auto)
    }

    /// Attaches to `iface` in the modes `policy` allows.
    pub fn attach_with(
        &mut self,
        iface: &str,
        policy: XdpModePolicy,
    ) -> Result<AttachMode, XdpError> {
        let program = self.program_mut();
        let native = if policy == XdpModePolicy::Generic {
            None
        } else {
            match program.attach(iface, XdpMode::Driver) {
                Ok(link) => {
                    self.links.push(link);
                    return Ok(AttachMode::Native);
                }
                Err(e) if policy == XdpModePolicy::Native => {
                    return Err(XdpError::AttachNative {
                        iface: iface.to_owned(),
                        native: with_sources(&e),
                    });
                }
                Err(e) => Some(e),
            }
        };
        match program.attach(iface, XdpMode::Skb) {
            Ok(link) => {
                if let Some(native) = &native {
                    tracing::warn!(
                        iface,
                        error = %native,
                        "native XDP refused; attached in generic (skb) mode, which is slower"
                    );
                }
                self.links.push(link);
                Ok(AttachMode::Generic)
            }
            Err(generic) => Err(match native {
                Some(native) => XdpError::Attach {
                    iface: iface.to_owned(),
                    native: with_sources(&native),
                    generic: with_sources(&generic),
                },
                None => XdpError::AttachGeneric {
                    iface: iface.to_owned(),
                    generic: with_sources(&generic),
                },
            }),
        }
    }

    /// Detaches from every interface (also happens on drop).
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        let links = std::mem::take(&mut self.links);
        let program = self.program_mut();
        for link in links {
            program
                .detach(link)
                .map_err(|e| XdpError::program("detach", e))?;
        }
        Ok(())
    }

    /// Inserts `key -> value` into the `TARGETS` table.
    pub fn insert_target(&mut self, key: EndpointKey, value: u32) -> Result<(), XdpError> {
        self.object.insert_target(key, value)
    }

    /// Inserts `key -> value` into the `TARGETS6` table (IPv6 endpoints).
    pub fn insert_target6(
        &mut self,
        key: tcpcopy_common::table::EndpointKey6,
        value: u32,
    ) -> Result<(), XdpError> {
        self.object.insert_target6(key, value)
    }

    /// The sum over all CPUs of counter slot `index`.
    pub fn counter(&self, index: u32) -> Result<u64, XdpError> {
        self.object.counter(index)
    }

    /// The underlying object, for maps a daemon reads itself (ring buffers).
    pub fn ebpf_mut(&mut self) -> &mut aya::Ebpf {
        self.object.ebpf_mut()
    }

    /// The object (maps shared by every program in it).
    pub fn object(&self) -> &BpfObject {
        &self.object
    }

    pub fn object_mut(&mut self) -> &mut BpfObject {
        &mut self.object
    }
}
