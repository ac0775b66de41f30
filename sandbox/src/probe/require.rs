//! What a spec asks of the host, and what this host cannot give ([`HostReport::check`]).

use std::fmt;

use nook_cgroup::Controller;
use serde::{Deserialize, Serialize};

use super::{HostReport, Support};

/// Something a sandbox spec asks of the host (see [`HostReport::unmet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Requirement {
    /// A memory limit (the memory controller, delegated).
    MemoryLimit,
    /// A pids limit.
    PidsLimit,
    /// A CPU limit (bandwidth or weight).
    CpuLimit,
    /// A cpuset.
    Cpuset,
    /// A block I/O limit.
    IoLimit,
    /// A hugetlb limit.
    HugetlbLimit,
    /// Pausing (freezer).
    Freeze,
    /// Device access rules (v1 `devices`, v2 a BPF program).
    DeviceRules,
    /// A cgroup at all (processes tracked and killed as a group).
    Cgroup,
    /// A user namespace.
    UserNamespace,
    /// Id maps beyond the caller's own id (as an unprivileged caller: newuidmap/newgidmap).
    MultiRangeIdMap,
    /// An overlay root filesystem.
    Overlay,
    /// A bridge network (links in the host namespace).
    BridgeNetwork,
    /// Published ports or NAT (nftables).
    PublishedPorts,
    /// Landlock rules.
    Landlock,
    /// A seccomp filter.
    Seccomp,
    /// `clone3`.
    Clone3,
    /// pidfds.
    Pidfd,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Requirement::MemoryLimit => "memory limit",
            Requirement::PidsLimit => "pids limit",
            Requirement::CpuLimit => "cpu limit",
            Requirement::Cpuset => "cpuset",
            Requirement::IoLimit => "block I/O limit",
            Requirement::HugetlbLimit => "hugetlb limit",
            Requirement::Freeze => "freezer",
            Requirement::DeviceRules => "device rules",
            Requirement::Cgroup => "cgroup",
            Requirement::UserNamespace => "user namespace",
            Requirement::MultiRangeIdMap => "multi-range id map",
            Requirement::Overlay => "overlay root filesystem",
            Requirement::BridgeNetwork => "bridge network",
            Requirement::PublishedPorts => "published ports",
            Requirement::Landlock => "Landlock",
            Requirement::Seccomp => "seccomp filter",
            Requirement::Clone3 => "clone3",
            Requirement::Pidfd => "pidfd",
        };
        f.write_str(s)
    }
}

/// A requirement this host cannot meet, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Unmet {
    /// What was asked.
    pub requirement: Requirement,
    /// Why it cannot be had here.
    pub reason: String,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.requirement, self.reason)
    }
}

/// Requirements the host cannot meet ([`HostReport::require`]): what was asked cannot be
/// enforced here, so nothing was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this host cannot enforce: {}", .unmet.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
#[non_exhaustive]
pub struct Unsupported {
    /// Every requirement not met, with its reason.
    pub unmet: Vec<Unmet>,
}

impl HostReport {
    /// Whether this host can meet `requirement`: `None` if it can, else why not. An
    /// [`Support::Unknown`] counts as not met (a limit that might not hold is not enforced).
    pub fn check(&self, requirement: Requirement) -> Option<String> {
        let cg = |c: Controller| -> Option<String> {
            match self.cgroups.delegated(c) {
                Support::Available => None,
                s => Some(format!("the `{c}` controller is not delegated to the caller: {}", s.reason().unwrap_or(""))),
            }
        };
        let s = |s: &Support| s.reason().map(str::to_owned);
        match requirement {
            Requirement::MemoryLimit => cg(Controller::Memory),
            Requirement::PidsLimit => cg(Controller::Pids),
            Requirement::CpuLimit => cg(Controller::Cpu),
            Requirement::Cpuset => cg(Controller::Cpuset),
            Requirement::IoLimit => cg(Controller::Blkio),
            Requirement::HugetlbLimit => cg(Controller::Hugetlb),
            Requirement::Freeze => cg(Controller::Freezer),
            Requirement::DeviceRules => cg(Controller::Devices),
            Requirement::Cgroup => {
                // Some hierarchy the caller may create a cgroup in.
                let any = self.cgroups.controllers.iter().any(|r| r.delegated.is_available());
                (!any).then(|| {
                    self.cgroups
                        .error
                        .clone()
                        .unwrap_or_else(|| "no cgroup hierarchy is delegated to the caller".into())
                })
            }
            Requirement::UserNamespace => s(&self.user_namespaces.support),
            Requirement::MultiRangeIdMap => {
                s(&self.user_namespaces.support).or_else(|| s(&self.id_mapping.multi_range))
            }
            Requirement::Overlay => s(&self.overlay),
            Requirement::BridgeNetwork => (!self.caller.cap_net_admin).then(|| {
                "a bridge network needs CAP_NET_ADMIN in the host namespace (rootless: use no network or the host's)"
                    .to_owned()
            }),
            Requirement::PublishedPorts => self.check(Requirement::BridgeNetwork).or_else(|| s(&self.nftables.support)),
            Requirement::Landlock => s(&self.landlock.support),
            Requirement::Seccomp => s(&self.seccomp.filter),
            Requirement::Clone3 => s(&self.clone3),
            Requirement::Pidfd => s(&self.pidfd),
        }
    }

    /// Every requirement of `wanted` this host cannot meet, in the order asked.
    pub fn unmet(&self, wanted: &[Requirement]) -> Vec<Unmet> {
        wanted.iter().filter_map(|&r| self.check(r).map(|reason| Unmet { requirement: r, reason })).collect()
    }

    /// `Ok` if every requirement can be met, else [`Unsupported`] listing each that cannot.
    pub fn require(&self, wanted: &[Requirement]) -> Result<(), Unsupported> {
        let unmet = self.unmet(wanted);
        if unmet.is_empty() { Ok(()) } else { Err(Unsupported { unmet }) }
    }
}
