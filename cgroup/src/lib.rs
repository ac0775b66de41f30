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

pub use cgroup::Cgroup;
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
    CpuStats, CpuThrottling, CpuUsage, IoDeviceStats, IoStats, MemoryStats, OomEvent, OomStats, OomWatcher, PidsStats,
    Pressure, PressureLine, PressureStats, Stats,
};
