//! The controllers: one file each, and the registry that ties them together.
//!
//! Each `controller/<name>.rs` holds everything about one controller: its part of
//! [`Resources`] (the spec struct), the pure validation of it, the writes for cgroup v1 and
//! for v2 (the [`Part`] trait), the reading of its counters for [`crate::Stats`], and unit
//! tests that run on a temp dir laid out like a cgroup directory (`fixture.rs`: plain files
//! in, check what was written / parse fixture stat files; no root needed).
//!
//! This file is the registry. Adding a controller means a new file plus, here: its
//! [`Controller`] variant (with its arm in [`Controller::ALL`], `v1_name` and `v2`), its
//! field of [`Resources`] and its line in [`Resources::parts`] (which destructures
//! `Resources`, so a field without a line does not compile). The rest of the crate
//! (discovery, planning the directories, validation, apply) goes through the registry.

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuacct;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod net_cls;
pub(crate) mod net_prio;
pub(crate) mod perf_event;
pub(crate) mod pids;

#[cfg(test)]
pub(crate) mod fixture;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, Dir};
use crate::error::{Error, Result, ValidationError};
use crate::hierarchy::Version;
use crate::spec::HostFacts;

use blkio::Blkio;
use cpu::Cpu;
use cpuset::Cpuset;
use devices::DevicePolicy;
use hugetlb::HugetlbLimit;
use memory::Memory;
use net_cls::NetCls;
use net_prio::NetPrio;
use pids::Pids;

/// The twelve controllers the Docker literature names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Controller {
    /// CPU bandwidth and weight (v1 `cpu`, v2 `cpu`).
    Cpu,
    /// CPU accounting (v1 `cpuacct`; on v2 `cpu.stat` of the `cpu` controller, always there).
    Cpuacct,
    /// CPU and memory-node placement (`cpuset`).
    Cpuset,
    /// Memory limits and accounting (`memory`).
    Memory,
    /// Device access (v1 `devices`; v2 a `BPF_PROG_TYPE_CGROUP_DEVICE` program).
    Devices,
    /// Freezing (v1 `freezer`; v2 `cgroup.freeze`, part of the core).
    Freezer,
    /// Network class id for traffic control (v1 `net_cls` only).
    NetCls,
    /// Block I/O (v1 `blkio`, v2 `io`).
    Blkio,
    /// perf events per cgroup (`perf_event`; implicit on v2).
    PerfEvent,
    /// Network priority per interface (v1 `net_prio` only).
    NetPrio,
    /// Huge page limits (`hugetlb`).
    Hugetlb,
    /// Process count limit (`pids`).
    Pids,
}

impl Controller {
    /// All twelve.
    pub const ALL: [Controller; 12] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Devices,
        Controller::Freezer,
        Controller::NetCls,
        Controller::Blkio,
        Controller::PerfEvent,
        Controller::NetPrio,
        Controller::Hugetlb,
        Controller::Pids,
    ];

    /// The v1 subsystem name.
    pub const fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::NetCls => "net_cls",
            Controller::Blkio => "blkio",
            Controller::PerfEvent => "perf_event",
            Controller::NetPrio => "net_prio",
            Controller::Hugetlb => "hugetlb",
            Controller::Pids => "pids",
        }
    }

    /// How v2 provides this controller.
    pub const fn v2(self) -> V2Support {
        match self {
            Controller::Cpu | Controller::Cpuacct => V2Support::Enabled("cpu"),
            Controller::Cpuset => V2Support::Enabled("cpuset"),
            Controller::Memory => V2Support::Enabled("memory"),
            Controller::Blkio => V2Support::Enabled("io"),
            Controller::Hugetlb => V2Support::Enabled("hugetlb"),
            Controller::Pids => V2Support::Enabled("pids"),
            Controller::Freezer => V2Support::Core,
            Controller::Devices => V2Support::Bpf,
            Controller::PerfEvent => V2Support::Implicit,
            Controller::NetCls | Controller::NetPrio => V2Support::None,
        }
    }

    /// Parses a v1 subsystem name.
    pub fn from_v1_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.v1_name() == name)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.v1_name())
    }
}

/// How cgroup v2 provides a controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V2Support {
    /// A controller named so in `cgroup.controllers`, enabled through `subtree_control`.
    Enabled(&'static str),
    /// Part of every non-root v2 cgroup (`cgroup.freeze`).
    Core,
    /// Through a BPF program attached to the cgroup (devices).
    Bpf,
    /// Always on, nothing to enable (perf_event).
    Implicit,
    /// v2 has no equivalent (net_cls, net_prio: use iptables/nftables cgroup matching).
    None,
}

/// Limits per controller. `None` / `false` leaves a controller out (the cgroup is then not
/// created in that controller's v1 hierarchy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Resources {
    /// cpu: weight/shares and bandwidth.
    pub cpu: Option<Cpu>,
    /// cpuacct: accounting only (always readable on v2).
    pub cpuacct: bool,
    /// cpuset: CPUs and memory nodes.
    pub cpuset: Option<Cpuset>,
    /// memory: limits.
    pub memory: Option<Memory>,
    /// devices: access rules.
    pub devices: Option<DevicePolicy>,
    /// freezer: be freezable (v1 freezer hierarchy; v2 always).
    pub freezer: bool,
    /// net_cls: the class id.
    pub net_cls: Option<NetCls>,
    /// blkio / io: weight and per-device throttles.
    pub blkio: Option<Blkio>,
    /// perf_event: join the perf_event hierarchy.
    pub perf_event: bool,
    /// net_prio: per-interface priorities.
    pub net_prio: Option<NetPrio>,
    /// hugetlb: per page-size limits.
    pub hugetlb: Vec<HugetlbLimit>,
    /// pids: process count limit.
    pub pids: Option<Pids>,
}

impl Resources {
    /// No controller yet: set the fields (`resources.pids.get_or_insert_default().max(20)`).
    pub fn new() -> Self {
        Resources::default()
    }
}

impl Resources {
    /// The registry: the part of every controller these resources ask for, in
    /// [`Controller::ALL`] order (the order of validation and of the writes).
    pub(crate) fn parts(&self) -> impl Iterator<Item = &dyn Part> {
        let Resources {
            cpu,
            cpuacct,
            cpuset,
            memory,
            devices,
            freezer,
            net_cls,
            blkio,
            perf_event,
            net_prio,
            hugetlb,
            pids,
        } = self;
        let parts: [Option<&dyn Part>; 12] = [
            cpu.as_ref().map(|p| p as _),
            cpuacct.then_some(&cpuacct::PART as _),
            cpuset.as_ref().map(|p| p as _),
            memory.as_ref().map(|p| p as _),
            devices.as_ref().map(|p| p as _),
            freezer.then_some(&freezer::PART as _),
            net_cls.as_ref().map(|p| p as _),
            blkio.as_ref().map(|p| p as _),
            perf_event.then_some(&perf_event::PART as _),
            net_prio.as_ref().map(|p| p as _),
            (!hugetlb.is_empty()).then_some(hugetlb as _),
            pids.as_ref().map(|p| p as _),
        ];
        parts.into_iter().flatten()
    }

    /// The controllers these resources ask for.
    pub(crate) fn requested(&self) -> impl Iterator<Item = Controller> + '_ {
        self.parts().map(|p| p.controller())
    }

    /// The pure checks of every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.parts().try_for_each(|p| p.validate())
    }

    /// The checks that need host facts.
    pub fn validate_against(&self, host: &HostFacts) -> Result<(), ValidationError> {
        self.parts().try_for_each(|p| p.validate_against(host))
    }

    /// Applies every set field, controller by controller.
    pub(crate) fn apply(&self, cg: &mut Cgroup) -> Result<()> {
        self.parts().try_for_each(|p| p.apply(cg))
    }
}

/// One controller's part of [`Resources`]: what each `controller/<name>.rs` implements for
/// its spec struct.
pub(crate) trait Part: fmt::Debug {
    /// The controller.
    fn controller(&self) -> Controller;

    /// The checks that need nothing but the values (ranges, formats).
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// The checks against the host (read before anything is written).
    fn validate_against(&self, _host: &HostFacts) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Writes the values into `dir`, the cgroup directory that manages the controller, in
    /// the file syntax of `version`.
    fn write(&self, _dir: &Dir, _version: Version) -> Result<()> {
        Ok(())
    }

    /// Applies the part to the cgroup: by default [`Part::write`] into the directory that
    /// manages the controller (an error if the cgroup was not created with it).
    fn apply(&self, cg: &mut Cgroup) -> Result<()> {
        let (dir, version) = cg.require_dir(self.controller())?;
        self.write(dir, version)
    }
}

/// The part of a controller that is joined, not configured (`cpuacct`, `freezer`,
/// `perf_event` are `bool`s in [`Resources`]): being in its hierarchy is all it asks.
#[derive(Debug)]
pub(crate) struct Join(pub(crate) Controller);

impl Part for Join {
    fn controller(&self) -> Controller {
        self.0
    }
}

/// A setting the cgroup version in use does not have.
pub(crate) fn unsupported(controller: Controller, setting: &str, version: Version) -> Error {
    Error::ControllerUnavailable { controller, detail: format!("{setting} has no cgroup {version:?} equivalent") }
}

/// A setting this kernel or device does not offer.
pub(crate) fn unsupported_here(controller: Controller, what: &str) -> Error {
    Error::ControllerUnavailable { controller, detail: format!("{what} is not offered by this kernel/device") }
}

/// `value` within `lo..=hi`, else [`ValidationError::OutOfRange`] naming `field`.
pub(crate) fn range(
    field: &'static str,
    value: u64,
    lo: u64,
    hi: u64,
    text: &'static str,
) -> Result<(), ValidationError> {
    if value < lo || value > hi {
        return Err(ValidationError::OutOfRange { field, value: value as i128, range: text });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_every_controller_in_order() {
        let all = Resources {
            cpu: Some(Cpu::default()),
            cpuacct: true,
            cpuset: Some(Cpuset::default()),
            memory: Some(Memory::default()),
            devices: Some(DevicePolicy::deny_by_default(Vec::new())),
            freezer: true,
            net_cls: Some(NetCls::default()),
            blkio: Some(Blkio::default()),
            perf_event: true,
            net_prio: Some(NetPrio::default()),
            hugetlb: vec![HugetlbLimit { page_size: "2MB".into(), limit: 0 }],
            pids: Some(Pids::default()),
        };
        assert_eq!(all.requested().collect::<Vec<_>>(), Controller::ALL);
        assert_eq!(Resources::default().requested().count(), 0);
    }
}
