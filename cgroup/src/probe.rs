//! What the running kernel's cgroups offer, found in the files the kernel shows, never by its
//! version.
//!
//! cgroup features are files: a kernel without `cgroup.kill` (before 5.14) has no such file in
//! a non-root cgroup, so there is nothing to fool here, only somewhere to look. Core files
//! (`cgroup.kill`, `cgroup.freeze`, the `*.pressure` files) appear in every non-root v2
//! cgroup, so the probe looks at a fresh one: it creates `nk-probe-<pid>-<n>` below the
//! caller's own v2 cgroup, lists it and removes it. Where it may not create one it looks at
//! the caller's own cgroup if that is not the root.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::at;
use crate::error::{Result, SysContext};
use crate::hierarchy::{Hierarchies, Layout, Version};

/// What the running kernel's cgroups support (see [`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelSupport {
    /// How the host mounts cgroups (v1, hybrid or pure v2).
    pub layout: Layout,
    /// The v2 controllers the caller's own cgroup offers (its `cgroup.controllers`), empty
    /// without a v2 hierarchy.
    pub v2_controllers: Vec<String>,
    /// `cgroup.kill` (Linux 5.14): [`Cgroup::kill_all`](crate::Cgroup::kill_all) kills every
    /// process in one write. Without it the group is frozen, each process signalled, then thawed.
    pub kill: bool,
    /// `cgroup.freeze` (Linux 5.2), the v2 freezer. Without it (or on v1 layouts) the v1
    /// `freezer` controller is used where mounted.
    pub freeze: bool,
    /// Pressure stall information per cgroup (`cpu.pressure`, ...: Linux 4.20, and only when
    /// PSI is compiled in and not disabled: Debian's kernels need `psi=1` on the command line).
    pub pressure: bool,
    /// A peak memory reading: v2 `memory.peak` (Linux 5.19) where memory is a v2 controller
    /// enabled for the probed cgroup, v1 `memory.max_usage_in_bytes` where memory is on v1.
    /// `false` also when memory is not enabled below the caller's v2 cgroup (the probe cannot
    /// see the file then; [`Stats`](crate::Stats) reports no peak either way).
    pub memory_peak: bool,
}

static PROBES: AtomicU32 = AtomicU32::new(0);

/// Probes the running kernel's cgroup support (not cached: the layout can change when the
/// caller moves, and the probe is a few `stat`s and one `mkdir`/`rmdir`).
///
/// Errors when the cgroup mounts cannot be read ([`Hierarchies::discover`]) or the caller's
/// v2 cgroup cannot be reached safely (the mount point is not cgroup2, or a symlink or
/// another mount stands in the path: [`Error::Unsafe`](crate::Error::Unsafe)); a feature the probe cannot see is
/// reported `false`.
pub fn probe() -> Result<KernelSupport> {
    let h = Hierarchies::discover()?;
    let memory_on_v1 = h.v1.iter().any(|x| x.has("memory"));
    let mut support = KernelSupport {
        layout: h.layout,
        v2_controllers: Vec::new(),
        kill: false,
        freeze: false,
        pressure: false,
        memory_peak: memory_on_v1,
    };
    // Reached like every other cgroup path of this crate (crate::at): from the checked
    // cgroup2 mount point, beneath it, no symlink and no mount crossing — so a bind mount
    // over the caller's cgroup path cannot make the probe create or remove anything outside.
    let Some((v2, rel)) = h.v2.as_ref().and_then(|v2| Some((v2, v2.rel_of(&v2.own_cgroup)?))) else {
        return Ok(support);
    };
    let own_path = v2.mount_point.join(&rel);
    let root = at::open_root(&v2.mount_point, Version::V2)?;
    let own = at::open_dir(root.as_fd(), &rel).beneath("openat2", &own_path)?;
    support.v2_controllers = at::read_io(own.as_fd(), "cgroup.controllers")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let is_root = rel.as_os_str().is_empty();
    let name = OsString::from(format!("nk-probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed)));
    let look = |dir: BorrowedFd<'_>| {
        let has = |f: &str| at::exists(dir, f);
        (has("cgroup.kill"), has("cgroup.freeze"), has("cpu.pressure"), has("memory.peak"))
    };
    let seen = if at::mkdir(own.as_fd(), &name).is_ok() {
        let probe_path = own_path.join(&name);
        let seen = at::open_dir(own.as_fd(), Path::new(&name)).map(|dir| look(dir.as_fd()));
        at::rmdir(own.as_fd(), &name).sys_at("unlinkat", &probe_path)?;
        Some(seen.beneath("openat2", &probe_path)?)
    } else if !is_root {
        Some(look(own.as_fd()))
    } else {
        None
    };
    if let Some((kill, freeze, pressure, peak)) = seen {
        support.kill = kill;
        support.freeze = freeze;
        support.pressure = pressure;
        support.memory_peak |= peak;
    }
    Ok(support)
}
