//! What the running kernel's cgroups offer, found in the files the kernel shows, never by its
//! version.
//!
//! cgroup features are files: a kernel without `cgroup.kill` (before 5.14) has no such file in
//! a non-root cgroup, so there is nothing to fool here, only somewhere to look. Core files
//! (`cgroup.kill`, `cgroup.freeze`, the `*.pressure` files) appear in every non-root v2
//! cgroup, so the probe looks at a fresh one: it creates `nk-probe-<pid>-<n>` below the
//! caller's own v2 cgroup, lists it and removes it. Where it may not create one it looks at
//! the caller's own cgroup if that is not the root.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::hierarchy::{Hierarchies, Layout};

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
/// Errors only when the cgroup mounts cannot be read ([`Hierarchies::discover`]); a feature
/// the probe cannot see is reported `false`.
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
    let Some(own) = h.v2.as_ref().and_then(|v2| v2.own_dir()) else {
        return Ok(support);
    };
    support.v2_controllers = std::fs::read_to_string(own.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let is_root = h.v2.as_ref().is_some_and(|v2| own == v2.mount_point);
    let probe_dir = own.join(format!("nk-probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed)));
    let created = std::fs::create_dir(&probe_dir).is_ok();
    let look = |dir: &Path| {
        let has = |f: &str| dir.join(f).exists();
        (has("cgroup.kill"), has("cgroup.freeze"), has("cpu.pressure"), has("memory.peak"))
    };
    let seen = if created {
        let seen = look(&probe_dir);
        std::fs::remove_dir(&probe_dir).map_err(|e| Error::io("rmdir", probe_dir.clone(), e))?;
        Some(seen)
    } else if !is_root {
        Some(look(&own))
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
