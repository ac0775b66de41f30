//! From a [`Security`] to what nook-ns applies: the process-side settings of every process
//! of a sandbox (its init and payload, and each `exec`), the mount steps that mask paths
//! and set sysctls, and the device allowlist of its cgroup.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use nook_cgroup::CgroupSpec;
use nook_ns::seccomp::SeccompProgram;
use nook_ns::{Capabilities, MountStep};

use super::seccomp::{CompiledProfile, Profile, Target};
use super::{CapSet, READ_ONLY_PATHS, default_device_policy, paths};
use crate::error::{Error, Result, ValidationError};
use crate::security::{FsAccess, LandlockSpec, SeccompMode, Security};

/// The settings every process of a sandbox is started with (resolved once per sandbox,
/// the seccomp program compiled once per profile, capability set and kernel).
#[derive(Debug, Clone)]
pub(crate) struct Confinement {
    caps: Capabilities,
    no_new_privs: bool,
    seccomp: Option<SeccompProgram>,
    rlimits: Vec<crate::security::Rlimit>,
    oom_score_adj: Option<i32>,
    umask: Option<u32>,
    landlock: Option<LandlockSpec>,
}

impl Confinement {
    /// Resolves `security`; `device_cgroup`: the sandbox's cgroup enforces a device
    /// allowlist.
    pub(crate) fn resolve(security: &Security, device_cgroup: bool) -> Result<Confinement, ValidationError> {
        let set = security.capability_set(device_cgroup)?;
        let seccomp = match &security.seccomp {
            SeccompMode::Unconfined => None,
            _ if security.privileged => None,
            SeccompMode::Default => Some(program(None, set)?),
            SeccompMode::Profile(p) => Some(program(Some(p), set)?),
        };
        Ok(Confinement {
            caps: Capabilities::only(nook_ns::CapSet::from_bits(set.bits())),
            no_new_privs: security.no_new_privs,
            seccomp,
            rlimits: security.rlimits.clone(),
            oom_score_adj: security.oom_score_adj,
            umask: security.umask,
            landlock: security.landlock.clone(),
        })
    }

    /// Applies the settings to `cmd`. The Landlock ruleset is created here, fresh for each
    /// process; `landlock_root`: `None` when the rules are steps of the child's plan (added
    /// by the child inside its new root, see `plan.rs`), else the directory the sandbox's
    /// paths are opened under (`/proc/INIT/root` for an `exec`).
    /// Returns what the Landlock ruleset enforces, when there is one.
    pub(crate) fn apply(
        &self,
        cmd: &mut nook_ns::Command,
        landlock_root: Option<&Path>,
    ) -> Result<Option<LandlockStatus>> {
        cmd.capabilities(self.caps).no_new_privs(self.no_new_privs);
        for r in &self.rlimits {
            cmd.rlimit(r.resource, r.soft, r.hard);
        }
        if let Some(v) = self.oom_score_adj {
            cmd.oom_score_adj(v);
        }
        if let Some(m) = self.umask {
            cmd.umask(m);
        }
        if let Some(p) = &self.seccomp {
            cmd.seccomp(p.clone());
        }
        if let Some(spec) = &self.landlock {
            let mut ruleset =
                nook_ns::landlock::Ruleset::new(FsAccess::union(&spec.handled)).allow_degraded(spec.allow_degraded);
            if let Some(root) = landlock_root {
                for rule in &spec.rules {
                    let inside = root.join(rule.path.strip_prefix("/").unwrap_or(&rule.path));
                    ruleset = ruleset.allow(inside, FsAccess::union(&rule.access));
                }
            }
            let ruleset = ruleset.create().map_err(Error::from)?;
            let status =
                LandlockStatus { abi: ruleset.abi(), handled: ruleset.handled(), unenforced: ruleset.unenforced() };
            cmd.landlock(ruleset);
            return Ok(Some(status));
        }
        Ok(None)
    }
}

/// What a sandbox's Landlock ruleset enforces on this kernel ([`crate::Sandbox::landlock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LandlockStatus {
    /// The kernel's Landlock ABI version in use.
    pub abi: u32,
    /// The rights enforced.
    pub handled: nook_ns::landlock::AccessFs,
    /// The rights asked for that this kernel cannot enforce (left out because the spec
    /// allowed degrading; empty otherwise).
    pub unenforced: nook_ns::landlock::AccessFs,
}

/// The seccomp program of `profile` (`None`: Docker's default) for a process with `caps`,
/// compiled on first use and kept for the life of the process.
fn program(profile: Option<&Profile>, caps: CapSet) -> Result<SeccompProgram, ValidationError> {
    type Entry = (Option<Profile>, Target, SeccompProgram);
    /// At most this many custom profiles are kept (the oldest goes first).
    const KEPT: usize = 32;
    static CACHE: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    let target = Target::host(caps).ok_or_else(|| {
        ValidationError::Seccomp(super::SeccompError::UnsupportedArch { arch: std::env::consts::ARCH.into() })
    })?;
    let cache = CACHE.get_or_init(Default::default);
    let hit = |entries: &Vec<Entry>| {
        entries.iter().find(|(p, t, _)| p.as_ref() == profile && *t == target).map(|(_, _, prog)| prog.clone())
    };
    if let Some(p) = hit(&cache.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(p);
    }
    let compiled: Arc<CompiledProfile> = match profile {
        None => super::seccomp::default_compiled(&target),
        Some(p) => p.compile(&target).map(Arc::new),
    }
    .map_err(ValidationError::Seccomp)?;
    let prog = SeccompProgram::new(compiled.to_libc()).notify(compiled.user_notif);
    let mut entries = cache.lock().unwrap_or_else(|e| e.into_inner());
    if entries.len() >= KEPT {
        entries.remove(0);
    }
    entries.push((profile.cloned(), target, prog.clone()));
    Ok(prog)
}

/// The mount steps of `security` that run after `/proc` and `/sys` are mounted (root `/`,
/// after `pivot_root`): sysctls (written before `/proc/sys` turns read-only), masked
/// paths, read-only paths, Landlock rules' checks.
pub(crate) fn mount_steps(security: &Security) -> Vec<MountStep> {
    let mut steps: Vec<MountStep> = security
        .sysctls
        .iter()
        .map(|(key, value)| MountStep::write_file(Path::new("/proc/sys").join(key.replace('.', "/")), value.clone()))
        .collect();
    if security.privileged {
        return steps;
    }
    let masked = security.masked_paths.clone().unwrap_or_else(paths::default_masked_paths);
    let read_only: Vec<PathBuf> =
        security.read_only_paths.clone().unwrap_or_else(|| READ_ONLY_PATHS.iter().map(PathBuf::from).collect());
    steps.extend(paths::path_steps(Path::new("/"), &masked, &read_only));
    steps
}

/// Puts the device allowlist into the sandbox's cgroup spec (the default one unless the
/// spec sets its own, none when privileged). Whether a device policy is then enforced.
pub(crate) fn device_policy(security: &Security, cgroup: &mut Option<CgroupSpec>) -> bool {
    match cgroup {
        Some(cg) if !security.privileged => {
            cg.resources.devices.get_or_insert_with(default_device_policy);
            true
        }
        _ => false,
    }
}
