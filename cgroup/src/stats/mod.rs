//! What the kernel counts for a cgroup ([`Cgroup::stats`]) and a wait for its OOM events
//! ([`Cgroup::oom_watcher`]).
//!
//! Each section of [`Stats`] is read from the directory that manages its controller — the
//! v1 hierarchy on v1 and hybrid hosts, the unified tree on v2 — and is `None` when the
//! cgroup lacks that controller (not created in its v1 hierarchy, or not enabled for it on
//! v2, where the files are then absent). Pressure (PSI) is read from the v2 directory, which
//! hybrid hosts have as well. The parsers are pure functions with unit tests.
//!
//! A controller's section (its types, reader and parser) lives in the controller's file
//! (`controller/cpu.rs` with `cpuacct.rs`, `memory.rs` with the OOM counters, `pids.rs`,
//! `blkio.rs`); this module composes them. Pressure (PSI, part of the v2 core, not a
//! controller) is `pressure.rs`; the [`OomWatcher`] is `oom.rs`; reading a file through the
//! directory fd is `read.rs` and the formats every controller shares (flat-keyed,
//! nested-keyed, number-or-`max`) are `parse.rs`.

mod oom;
pub(crate) mod parse;
mod peak;
pub(crate) mod pressure;
pub(crate) mod read;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::controller::{Controller, blkio, cpu, memory, pids};
use crate::error::Result;
use pressure::pressure_stats;
use read::At;

pub use crate::controller::blkio::{IoDeviceStats, IoStats};
pub use crate::controller::cpu::{CpuStats, CpuThrottling, CpuUsage};
pub use crate::controller::memory::{MemoryStats, OomStats};
pub use crate::controller::pids::PidsStats;
pub use oom::{OomEvent, OomWatcher};
pub use peak::PeakMeter;
pub use pressure::{Pressure, PressureLine, PressureStats};

/// A snapshot of a cgroup's counters. A section is `None` when the cgroup lacks the
/// controller (or the kernel lacks the files).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time used and bandwidth throttling.
    pub cpu: Option<CpuStats>,
    /// Memory use and limit.
    pub memory: Option<MemoryStats>,
    /// Out-of-memory counters (memory controller).
    pub oom: Option<OomStats>,
    /// Task count and limit.
    pub pids: Option<PidsStats>,
    /// Bytes and operations per block device.
    pub io: Option<IoStats>,
    /// Pressure stall information (v2 directory; `None` without PSI).
    pub pressure: Option<PressureStats>,
}

impl Cgroup {
    /// Only the OOM counters (v2 `memory.events`, v1 `memory.oom_control`), without reading
    /// the other stat files: what a caller checks after a run to tell an OOM kill. `None`
    /// when the cgroup has no memory controller.
    pub fn oom_stats(&self) -> Result<Option<OomStats>> {
        match self.entry_of(Controller::Memory) {
            Some(d) => memory::oom_stats(At::of(d), d.version),
            None => Ok(None),
        }
    }

    /// Reads every counter the cgroup has. Sections for controllers the cgroup lacks are
    /// `None`; a file that exists but cannot be read or parsed is an error.
    ///
    /// ```no_run
    /// use nook_cgroup::{Cgroup, CgroupSpec};
    ///
    /// let mut spec = CgroupSpec::new("nk-doc-stats");
    /// spec.resources.pids.get_or_insert_default().max(32);
    /// let cg = Cgroup::create(&spec)?;
    /// let stats = cg.stats()?;
    /// println!("{} tasks", stats.pids.map_or(0, |p| p.current));
    /// # Ok::<(), nook_cgroup::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let at_of = |c: Controller| self.entry_of(c).map(|d| (At::of(d), d.version));
        let (memory, oom) = match at_of(Controller::Memory) {
            Some((dir, version)) => (memory::stats(dir, version)?, memory::oom_stats(dir, version)?),
            None => (None, None),
        };
        Ok(Stats {
            cpu: cpu::stats(self)?,
            memory,
            oom,
            pids: match at_of(Controller::Pids) {
                Some((dir, _)) => pids::stats(dir)?,
                None => None,
            },
            io: match at_of(Controller::Blkio) {
                Some((dir, version)) => blkio::stats(dir, version)?,
                None => None,
            },
            pressure: match self.v2_entry() {
                Some(d) => pressure_stats(At::of(d))?,
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_serialize_to_json_shape() {
        let s = Stats {
            pids: Some(PidsStats { current: 3, max: None }),
            pressure: Some(PressureStats { cpu: Some(Pressure::default()), ..PressureStats::default() }),
            ..Stats::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pids"]["current"], 3);
        assert!(v["pids"]["max"].is_null());
        assert!(v["memory"].is_null());
        assert_eq!(v["pressure"]["cpu"]["some"]["total_usec"], 0);
    }
}
