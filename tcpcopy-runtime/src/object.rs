//! One loaded eBPF object: the maps every program of ours shares (the
//! `TARGETS` and `TARGETS6` match tables, the `COUNTERS` per-CPU array) and access to the
//! rest. Which program of it runs, and where it is attached, is the
//! business of [`crate::xdp::XdpObject`] and [`crate::tc::EgressObject`].

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, PerCpuArray},
    programs::{Program, ProgramError},
};
use tcpcopy_common::table::{EndpointKey, EndpointKey6};

use crate::xdp::XdpError;

/// Name of the per-CPU counters array in every object.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the endpoint match table in every object.
pub const TARGETS_MAP: &str = "TARGETS";
/// Name of the IPv6 endpoint match table in every object.
pub const TARGETS6_MAP: &str = "TARGETS6";

/// A loaded eBPF object (its maps created; no program loaded yet).
pub struct BpfObject {
    ebpf: Ebpf,
}

impl BpfObject {
    /// Loads `object`; `configure` may set read-only globals and map sizes
    /// first.
    pub fn load<'a>(
        object: &[u8],
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, XdpError> {
        let mut loader = EbpfLoader::new();
        configure(&mut loader);
        let ebpf = loader
            .load(object)
            .map_err(|e| XdpError::Load(Box::new(e)))?;
        Ok(Self { ebpf })
    }

    /// Loads program `name`, of type `P`, into the kernel with `load` (its
    /// type's load call).
    pub fn load_program<P>(
        &mut self,
        name: &'static str,
        load: impl FnOnce(&mut P) -> Result<(), ProgramError>,
    ) -> Result<(), XdpError>
    where
        for<'p> &'p mut P: TryFrom<&'p mut Program, Error = ProgramError>,
    {
        let program: &mut P = self
            .ebpf
            .program_mut(name)
            .ok_or(XdpError::Missing(name))?
            .try_into()
            .map_err(|e| XdpError::program(name, e))?;
        load(program).map_err(|e| XdpError::program(name, e))
    }

    /// Inserts `key -> value` into the `TARGETS` table.
    pub fn insert_target(&mut self, key: EndpointKey, value: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(TARGETS_MAP)
            .ok_or(XdpError::Missing(TARGETS_MAP))?;
        let mut table: HashMap<_, EndpointKey, u32> =
            HashMap::try_from(map).map_err(|e| XdpError::map(TARGETS_MAP, e))?;
        table
            .insert(key, value, 0)
            .map_err(|e| XdpError::map(TARGETS_MAP, e))
    }

    /// Inserts `key -> value` into the `TARGETS6` table (IPv6 endpoints).
    pub fn insert_target6(&mut self, key: EndpointKey6, value: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(TARGETS6_MAP)
            .ok_or(XdpError::Missing(TARGETS6_MAP))?;
        let mut table: HashMap<_, EndpointKey6, u32> =
            HashMap::try_from(map).map_err(|e| XdpError::map(TARGETS6_MAP, e))?;
        table
            .insert(key, value, 0)
            .map_err(|e| XdpError::map(TARGETS6_MAP, e))
    }

    /// The sum over all CPUs of counter slot `index`.
    pub fn counter(&self, index: u32) -> Result<u64, XdpError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or(XdpError::Missing(COUNTERS_MAP))?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| XdpError::map(COUNTERS_MAP, e))?;
        let values = counters
            .get(&index, 0)
            .map_err(|e| XdpError::map(COUNTERS_MAP, e))?;
        Ok(values.iter().sum())
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// For maps a daemon owns itself (ring buffers, session tables).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}
