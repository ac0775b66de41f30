//! # nook-cgroup — resource control on cgroup v1, v2 and hybrid hosts
//!
//! A typed, serde-serializable [`CgroupSpec`] becomes a [`Cgroup`] handle that owns its
//! directories: it is created under the caller's own cgroup by default (so a sandbox stays
//! inside whatever slice the embedding program was given), limits are validated before any
//! write, and dropping the handle kills what is inside and removes the directories.
//!
//! [`Cgroup::create`] never adopts a cgroup: the `mkdir` of each directory is the claim, and
//! a name that exists is [`Error::Exists`] (whatever was made before is undone).
//! [`Cgroup::open`] opens an existing cgroup instead; its handle is not owned, so dropping it
//! kills and removes nothing.
//!
//! Paths cannot leave cgroupfs. [`CgroupSpec::parent`] is validated like the name (no `.`,
//! `..` or empty component; [`ValidationError::BadParent`]), and every directory and file is
//! reached from an fd of the hierarchy's mount point — checked with `fstatfs` to be a cgroup
//! file system — with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
//! | RESOLVE_NO_XDEV)`, and created and removed with `mkdirat` / `unlinkat` relative to its
//! parent's fd: a symlink or bind mount under a parent cannot redirect a write or a removal
//! ([`Error::Unsafe`]). Stats and OOM counters are read the same way (only the inotify watch
//! of the v2 OOM watcher is set by path; it only decides when to re-read).
//!
//! Discovery ([`Hierarchies::discover`]) reads `/proc/thread-self/mountinfo` and
//! `/proc/self/cgroup` — no hard-coded paths — and places each [`Controller`] where the host
//! has it: its v1 hierarchy on v1 and hybrid hosts, the unified tree on v2. On hybrid hosts
//! the v2 directory is created as well, for `cgroup.freeze`, `cgroup.kill`, hugetlb, PSI and
//! `CLONE_INTO_CGROUP`.
//!
//! Discovery parses both files with `procfs-core`'s parsers (`MountInfo` for the cgroup lines of
//! mountinfo, `ProcessCGroups`).
//!
//! **One file per controller.** `controller/<name>.rs` holds a controller's spec struct
//! (its field of [`Resources`]), its validation, its writes in the v1 and the v2 file syntax
//! and the reading of its [`Stats`] section, with unit tests that run on a temp dir laid out
//! like a cgroup directory (no root). `controller/mod.rs` is the registry: the
//! [`Controller`] enum and `Resources::parts`, which every step (planning the directories,
//! validation, apply) goes through. The v2 device program is `bpf.rs` (the only `unsafe`).
//!
//! The spec structs are `#[non_exhaustive]`: build them with `new()` / `Default` and the
//! setters, or assign their fields:
//!
//! ```
//! use nook_cgroup::{CgroupSpec, DeviceRule, DeviceAccess, DevicePolicy, HugetlbLimit, Resources};
//!
//! let mut spec = CgroupSpec::new("nk-job");
//! spec.parent("/sandboxes").leaf_for_parent_processes("init");
//! spec.resources.memory.get_or_insert_default().max(64 << 20).swap(0);
//! spec.resources.cpu.get_or_insert_default().weight(200).quota_us(50_000);
//! spec.resources.pids.get_or_insert_default().max(64);
//! spec.resources.hugetlb.push(HugetlbLimit::new("2MB", 4 << 20));
//! let mut policy = DevicePolicy::deny_by_default(Vec::new());
//! policy.rule(DeviceRule::allow_char(1, 3, DeviceAccess::all()));
//! spec.resources.devices = Some(policy);
//! assert!(spec.validate().is_ok());
//!
//! let mut later = Resources::new();
//! later.pids.get_or_insert_default().max(128);
//! assert_eq!(later.validate(), Ok(()));
//! ```
//!
//! Errors are one [`Error`] enum: a failed call is [`Error::Sys`] (the call, the path), a
//! refused control-file write [`Error::Write`] (with the value), a create whose undo failed
//! too [`Error::Cleanup`], a removal that kept going [`Error::Teardown`];
//! [`Error::raw_os_error`] finds the errno behind any of them.
//!
//! Why not `cgroups-rs`: see the project's design notes (it treats hybrid hosts as pure v1,
//! creates groups at the hierarchy root, hard-codes `/sys/fs/cgroup`, ignores
//! controller-enable errors, and pulls in a D-Bus stack).

// Unsafe code only where a system call has no safe wrapper (listed, each with a reason).
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod at;
// `bpf(2)` (no safe wrapper) and the descriptors it returns, for the v2 device program.
#[allow(unsafe_code)]
mod bpf;
mod cgroup;
mod controller;
mod error;
mod hierarchy;
mod probe;
mod spec;
mod stats;
mod sys;

/// The pure cgroupfs file parsers, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::BTreeMap;

    /// A flat-keyed file (`cpu.stat`, `memory.stat`).
    pub fn parse_flat(text: &str) -> BTreeMap<String, u64> {
        crate::stats::parse::parse_flat(text)
    }

    /// A nested-keyed file (`io.stat`).
    pub fn parse_nested(text: &str) -> Vec<(&str, Vec<(&str, &str)>)> {
        crate::stats::parse::parse_nested(text)
    }

    /// A number or `max`.
    pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
        crate::stats::parse::parse_limit(text)
    }

    /// A PSI file.
    pub fn parse_psi(text: &str) -> Result<crate::Pressure, String> {
        crate::stats::pressure::parse_psi(text)
    }
}

pub use cgroup::{Cgroup, LIMIT_FILES, LimitFiles};
pub use controller::blkio::{Blkio, DeviceThrottle};
pub use controller::cpu::{Cpu, shares_to_weight, weight_to_shares};
pub use controller::cpuset::{CpuSet, Cpuset};
pub use controller::devices::{DeviceAccess, DeviceKind, DevicePolicy, DeviceRule};
pub use controller::hugetlb::{HugetlbLimit, page_size_name, parse_page_size};
pub use controller::memory::{Memory, PAGE_SIZE};
pub use controller::net_cls::NetCls;
pub use controller::net_prio::NetPrio;
pub use controller::pids::Pids;
pub use controller::{Controller, Resources, V2Support};
pub use error::{Error, Result, ValidationError};
pub use hierarchy::{Hierarchies, Hierarchy, Layout, Location, Version};
pub use probe::{KernelSupport, probe};
pub use spec::{CgroupSpec, HostFacts};
pub use stats::{
    CpuStats, CpuThrottling, CpuUsage, IoDeviceStats, IoStats, MemoryStats, OomEvent, OomStats, OomWatcher, PeakMeter,
    PidsStats, Pressure, PressureLine, PressureStats, Stats,
};
