//! cgroups: layout, the caller's place, and which controllers are delegated to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nook_cgroup::{Controller, Hierarchies, Layout, Location, V2Support, Version};
use serde::{Deserialize, Serialize};

use super::{Caller, Support};

/// One cgroup controller as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ControllerReport {
    /// Which.
    pub controller: Controller,
    /// Where it lives (`None`: no hierarchy has it).
    pub version: Option<Version>,
    /// The caller's cgroup directory in that hierarchy.
    pub dir: Option<PathBuf>,
    /// Whether the caller may create cgroups with it below its own cgroup.
    pub delegated: Support,
}

/// cgroups: layout, the caller's place, and delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cgroups {
    /// v1, v2 or hybrid; `None` when the mounts could not be read (see `error`).
    pub layout: Option<Layout>,
    /// The caller's v2 cgroup, as `/proc/self/cgroup` names it.
    pub own_v2: Option<PathBuf>,
    /// Its directory.
    pub own_v2_dir: Option<PathBuf>,
    /// The controllers of the caller's v2 cgroup (`cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// `cgroup.kill` (v2, Linux 5.14).
    pub kill: bool,
    /// `cgroup.freeze` (v2, Linux 5.2).
    pub freeze: bool,
    /// Every controller nook knows.
    pub controllers: Vec<ControllerReport>,
    /// Why the layout could not be read, if it could not.
    pub error: Option<String>,
}

impl Cgroups {
    /// The report of one controller.
    pub fn controller(&self, c: Controller) -> Option<&ControllerReport> {
        self.controllers.iter().find(|r| r.controller == c)
    }

    /// Whether `c` is delegated to the caller.
    pub fn delegated(&self, c: Controller) -> &Support {
        static NONE: Support = Support::Unknown { reason: String::new() };
        self.controller(c).map(|r| &r.delegated).unwrap_or(&NONE)
    }
}

/// Whether the caller may write `path` (`access(2)` with the effective ids).
fn writable(path: &Path) -> bool {
    rustix::fs::accessat(rustix::fs::CWD, path, rustix::fs::Access::WRITE_OK, rustix::fs::AtFlags::EACCESS).is_ok()
}

/// Delegation of one v2 cgroup directory to the caller: the directory (to make children),
/// `cgroup.subtree_control` (to enable controllers for them) and `cgroup.procs` (to move
/// processes in). `None` when all three are writable, else what is not.
fn v2_dir_not_delegated(dir: &Path) -> Option<String> {
    let missing: Vec<String> = [dir.to_owned(), dir.join("cgroup.subtree_control"), dir.join("cgroup.procs")]
        .iter()
        .filter(|p| !writable(p))
        .map(|p| p.display().to_string())
        .collect();
    (!missing.is_empty()).then(|| format!("the caller may not write {}", missing.join(", ")))
}

fn v1_dir_not_delegated(dir: &Path) -> Option<String> {
    let missing: Vec<String> = [dir.to_owned(), dir.join("cgroup.procs")]
        .iter()
        .filter(|p| !writable(p))
        .map(|p| p.display().to_string())
        .collect();
    (!missing.is_empty()).then(|| format!("the caller may not write {}", missing.join(", ")))
}

pub(super) fn cgroups(caller: &Caller) -> Cgroups {
    let mut out = Cgroups {
        layout: None,
        own_v2: None,
        own_v2_dir: None,
        v2_controllers: Vec::new(),
        kill: false,
        freeze: false,
        controllers: Vec::new(),
        error: None,
    };
    let h = match Hierarchies::discover() {
        Ok(h) => h,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.layout = Some(h.layout);
    match nook_cgroup::probe() {
        Ok(k) => {
            out.v2_controllers = k.v2_controllers;
            out.kill = k.kill;
            out.freeze = k.freeze;
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    if let Some(v2) = &h.v2 {
        out.own_v2 = Some(v2.own_cgroup.clone());
        out.own_v2_dir = v2.own_dir();
    }
    let v2_enabled: BTreeSet<&str> = out.v2_controllers.iter().map(String::as_str).collect();
    let v2_gap = out.own_v2_dir.as_deref().map(v2_dir_not_delegated);
    for c in Controller::ALL {
        let report = match h.locate(c) {
            Some(Location::V1(hier)) => {
                let dir = hier.own_dir();
                let delegated = match &dir {
                    None => Support::no(format!(
                        "the caller's {} cgroup {} is not visible under {}",
                        c,
                        hier.own_cgroup.display(),
                        hier.mount_point.display()
                    )),
                    Some(d) => match v1_dir_not_delegated(d) {
                        None => Support::Available,
                        Some(why) => Support::no(why),
                    },
                };
                ControllerReport { controller: c, version: Some(Version::V1), dir, delegated }
            }
            Some(Location::V2(_)) => {
                let dir = out.own_v2_dir.clone();
                let offered = match c.v2() {
                    V2Support::Enabled(name) => v2_enabled.contains(name).then_some(()).ok_or_else(|| {
                        format!("`{name}` is not in the caller's cgroup.controllers (not delegated by the parent)")
                    }),
                    V2Support::Core => {
                        if out.freeze {
                            Ok(())
                        } else {
                            Err("no cgroup.freeze (Linux < 5.2)".to_owned())
                        }
                    }
                    // Loading a BPF_PROG_TYPE_CGROUP_DEVICE program needs bpf_capable().
                    V2Support::Bpf if !(caller.cap_sys_admin || caller.cap_bpf) => {
                        Err("v2 device rules are a BPF program: loading it needs CAP_BPF or CAP_SYS_ADMIN".to_owned())
                    }
                    V2Support::Bpf | V2Support::Implicit => Ok(()),
                    V2Support::None => Err("cgroup v2 has no such controller".to_owned()),
                };
                let delegated = match (offered, &v2_gap) {
                    (Err(why), _) => Support::no(why),
                    (Ok(()), None) => Support::no("the caller's v2 cgroup is not visible"),
                    (Ok(()), Some(Some(why))) => Support::no(why.clone()),
                    (Ok(()), Some(None)) => Support::Available,
                };
                ControllerReport { controller: c, version: Some(Version::V2), dir, delegated }
            }
            None => ControllerReport {
                controller: c,
                version: None,
                dir: None,
                delegated: Support::no(format!("no mounted cgroup hierarchy has `{c}`")),
            },
        };
        out.controllers.push(report);
    }
    out
}
