//! One loaded TC classifier attached at the egress of devices: load,
//! attach (TCX where the kernel has it, a clsact filter otherwise), and the
//! object's tables and counters (through [`BpfObject`]).
//!
//! A TCX attachment is a bpf_link owned by this process: it goes away when
//! the process dies, however it dies. A classic clsact filter (kernels
//! before 6.6) stays on the device after a crash; it is detached on every
//! orderly exit, and [`EgressAttach::Filter`] says which one a caller got.

use aya::{
    EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcAttachType},
    },
};

use crate::{
    object::BpfObject,
    xdp::{XdpError, with_sources},
};

/// How a program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressAttach {
    /// A TCX link (kernel >= 6.6): gone when this process is.
    Tcx,
    /// A filter on the device's clsact qdisc: survives a crash of this
    /// process (detached on every orderly exit).
    Filter,
}

/// A loaded eBPF object and the name of its TC classifier.
pub struct EgressObject {
    object: BpfObject,
    program: &'static str,
    links: Vec<SchedClassifierLinkId>,
}

impl EgressObject {
    /// Loads `object` and its classifier `program` (not attached yet);
    /// `configure` may set globals and map sizes before the load.
    pub fn load<'a>(
        object: &[u8],
        program: &'static str,
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, XdpError> {
        let mut object = BpfObject::load(object, configure)?;
        object.load_program(program, SchedClassifier::load)?;
        Ok(Self {
            object,
            program,
            links: Vec::new(),
        })
    }

    /// The loaded program (e.g. for `TestRun`).
    pub fn program(&self) -> &SchedClassifier {
        self.object
            .ebpf()
            .program(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    fn program_mut(&mut self) -> &mut SchedClassifier {
        self.object
            .ebpf_mut()
            .program_mut(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    /// Attaches at the egress of `iface` (in the calling thread's network
    /// namespace), after any TC program already there: a TCX link, or a
    /// clsact filter where the kernel has no TCX.
    pub fn attach_egress(&mut self, iface: &str) -> Result<EgressAttach, XdpError> {
        let (how, link) = attach_egress(self.program_mut(), iface)?;
        self.links.push(link);
        Ok(how)
    }

    /// Detaches from every device (also happens on drop).
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

    /// The object (maps shared by every program in it).
    pub fn object(&self) -> &BpfObject {
        &self.object
    }

    pub fn object_mut(&mut self) -> &mut BpfObject {
        &mut self.object
    }
}

/// Attaches `program` at the egress of `iface` (in the calling thread's
/// network namespace), after any TC program already there: a TCX link, or
/// a clsact filter where the kernel has no TCX (with a warning: such a
/// filter outlives a crash). The link goes away with the program, or with
/// `program.detach(link)`.
pub fn attach_egress(
    program: &mut SchedClassifier,
    iface: &str,
) -> Result<(EgressAttach, SchedClassifierLinkId), XdpError> {
    let tcx = match program.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(link) => return Ok((EgressAttach::Tcx, link)),
        Err(e) => with_sources(&e),
    };
    // Already there is fine; any other failure shows in the attach.
    let _ = tc::qdisc_add_clsact(iface);
    match program.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::Netlink(NlOptions::default()),
    ) {
        Ok(link) => {
            tracing::warn!(
                iface,
                tcx = %tcx,
                "no TCX (kernel < 6.6?): attached as a clsact filter, which stays on \
                 the device if this process is killed; remove it with \
                 `tc filter del dev {iface} egress`"
            );
            Ok((EgressAttach::Filter, link))
        }
        Err(e) => Err(XdpError::AttachEgress {
            iface: iface.to_owned(),
            tcx,
            filter: with_sources(&e),
        }),
    }
}
