//! What this host can give a sandbox, and why not: [`probe`] → [`HostReport`].
//!
//! A program that embeds nook calls [`probe`] once to learn what the kernel, its
//! configuration and the caller's privileges allow, and degrades knowingly (no memory limit
//! where the memory controller is not delegated, no bridge network without `CAP_NET_ADMIN`)
//! instead of failing late inside a half-built sandbox. Each feature is a [`Support`]: available,
//! or not with a reason in words, or unknown (the probe could not tell, and says why).
//!
//! | part | how it is found |
//! |---|---|
//! | caller | `/proc/self/status` (`Uid`, `Gid`, `CapEff`: `CAP_SYS_ADMIN`, `CAP_NET_ADMIN`) |
//! | user namespaces | `/proc/self/ns/user`; the sysctls that block them: `user.max_user_namespaces` (0 blocks everyone), Debian's `kernel.unprivileged_userns_clone` (0 blocks unprivileged callers), Ubuntu's `kernel.apparmor_restrict_unprivileged_userns` (1: unprivileged callers get a namespace without capabilities unless an AppArmor profile allows it), SELinux enforcing (its policy may deny `user_namespace { create }`); then a real try: a child in a new user namespace (`/bin/true` through [`nook_ns::Command`]) |
//! | id mapping | `newuidmap`/`newgidmap` on the usual paths (setuid or with file capabilities), the caller's ranges in `/etc/subuid` and `/etc/subgid` (by name and by uid) |
//! | cgroups | [`nook_cgroup::Hierarchies::discover`] (layout, the caller's cgroup per hierarchy) and [`nook_cgroup::probe`]; per controller where it lives and whether it is **delegated** to the caller: on v2 it is in the caller's `cgroup.controllers` and the caller may write the cgroup directory, its `cgroup.subtree_control` and `cgroup.procs`; on v1 the caller may write its cgroup directory in that hierarchy and its `cgroup.procs` |
//!
//! (On v2 the caller's own cgroup holds the caller, so enabling a controller for a child
//! cgroup needs the caller's processes moved into a leaf first — the "no internal processes"
//! rule: `nook_cgroup::CgroupSpec::leaf_for_parent_processes` does that. Delegated here means
//! the caller has the rights to do it.)
//!
//! | part | how it is found |
//! |---|---|
//! | overlay, `lowerdir+` | [`nook_unionfs::probe`] (needs `CAP_SYS_ADMIN` to ask; unknown otherwise) |
//! | clone3, pidfd, `CLONE_INTO_CGROUP` | [`nook_ns::probe`] |
//! | Landlock | [`nook_ns::landlock_abi`] (`landlock_create_ruleset` with `LANDLOCK_CREATE_RULESET_VERSION`) |
//! | seccomp | `/proc/sys/kernel/seccomp/actions_avail` (filter mode built in), the caller's `Seccomp` and `Seccomp_filters` in `/proc/self/status` |
//! | nftables | the `nft` binary on `PATH` or the sbin dirs; then `nft add table inet nkprobe` inside a throwaway network namespace (never the host's): the table dies with the namespace |
//!
//! The report is serde-serializable (for logs and tooling) and [`Display`](std::fmt::Display)s as
//! a short human summary.
//!
//! # Unenforceable limits are errors
//!
//! [`HostReport::unmet`] takes the [`Requirement`]s of a spec (a memory limit, a pids limit, a
//! user namespace, a bridge network, ...) and returns every one this host cannot enforce, each
//! with the reason; [`HostReport::require`] turns a non-empty answer into an
//! [`Unsupported`] error. The facade calls it before anything is created, so a limit that
//! cannot be enforced is an error, never silently dropped — unless the caller explicitly
//! removes that requirement (runs without limits).
//!
//! Everything is probed afresh on each call except what the crates cache themselves (the
//! kernel feature probes of nook-ns and nook-unionfs). A probe never changes the host: the
//! only things it creates are a cgroup `nk-probe-*` below the caller's own v2 cgroup (made and
//! removed by [`nook_cgroup::probe`]), a short-lived child in a user namespace, and a network
//! namespace that dies with the probe.
//!
//! Files: `mod.rs` (the report, [`probe`], the text form), `userns.rs` (user namespaces, id
//! mapping), `cgroups.rs` (layout, delegation), `features.rs` (overlay, Landlock, seccomp,
//! nftables), `require.rs` ([`Requirement`] → [`Unmet`]). The decisions are pure functions with
//! unit tests; `tests/probe.rs` checks the report against the host.

mod cgroups;
mod features;
mod require;
mod userns;

use std::fmt;
use std::path::{Path, PathBuf};

use nook_cgroup::Version;
use serde::{Deserialize, Serialize};

pub use cgroups::{Cgroups, ControllerReport};
pub use features::{Landlock, Nftables, Seccomp};
pub use require::{Requirement, Unmet, Unsupported};
pub use userns::{IdMapping, SubIdRange, UserNamespaces, UserNsBlocker};

/// Whether a feature is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Support {
    /// It is.
    Available,
    /// It is not, and why.
    Unavailable {
        /// Why, in words (the sysctl, the missing binary, the errno).
        reason: String,
    },
    /// The probe could not tell (e.g. asking needs a privilege the caller lacks).
    Unknown {
        /// Why not.
        reason: String,
    },
}

impl Support {
    /// Whether it is available.
    pub fn is_available(&self) -> bool {
        matches!(self, Support::Available)
    }

    /// The reason, when not available.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Support::Available => None,
            Support::Unavailable { reason } | Support::Unknown { reason } => Some(reason),
        }
    }

    fn no(reason: impl Into<String>) -> Support {
        Support::Unavailable { reason: reason.into() }
    }

    fn unknown(reason: impl Into<String>) -> Support {
        Support::Unknown { reason: reason.into() }
    }

    fn from_bool(ok: bool, reason: impl FnOnce() -> String) -> Support {
        if ok { Support::Available } else { Support::no(reason()) }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Available => f.write_str("yes"),
            Support::Unavailable { reason } => write!(f, "no ({reason})"),
            Support::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

/// Everything [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostReport {
    /// `uname -r`.
    pub kernel_release: String,
    /// Who is asking.
    pub caller: Caller,
    /// User namespaces.
    pub user_namespaces: UserNamespaces,
    /// `newuidmap`/`newgidmap` and the caller's subordinate ids.
    pub id_mapping: IdMapping,
    /// cgroup layout and delegation.
    pub cgroups: Cgroups,
    /// overlayfs (mountable by the caller).
    pub overlay: Support,
    /// overlayfs's `lowerdir+` through `fsconfig` (Linux 6.8): stacks beyond one page of
    /// options.
    pub overlay_lowerdir_plus: Support,
    /// `clone3` (Linux 5.3).
    pub clone3: Support,
    /// pidfds: `pidfd_open`, `pidfd_send_signal` and `waitid(P_PIDFD)` (nook-ns needs them).
    pub pidfd: Support,
    /// `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7).
    pub clone_into_cgroup: Support,
    /// Landlock.
    pub landlock: Landlock,
    /// seccomp.
    pub seccomp: Seccomp,
    /// nftables (NAT and published ports of bridge networks).
    pub nftables: Nftables,
}

/// The calling process's identity and privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Caller {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Effective uid 0.
    pub root: bool,
    /// `CAP_SYS_ADMIN` in the effective set (namespaces, mounts).
    pub cap_sys_admin: bool,
    /// `CAP_NET_ADMIN` in the effective set (links, firewall).
    pub cap_net_admin: bool,
    /// `CAP_BPF` in the effective set (with `CAP_SYS_ADMIN`: loading cgroup device programs).
    pub cap_bpf: bool,
}

/// Probes the host (see the module docs). Never fails: what cannot be found out is
/// [`Support::Unknown`] with the reason.
pub fn probe() -> HostReport {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caller = caller_from_status(&status);
    let ns = nook_ns::probe();
    let privileged = caller.cap_sys_admin;
    let uf = nook_unionfs::probe();
    let (overlay, overlay_lowerdir_plus) = features::overlay_support(uf.fsopen, uf.lowerdir_plus, privileged);
    let pidfd_ok = ns.pidfd_open && ns.pidfd_send_signal && ns.waitid_pidfd;
    HostReport {
        kernel_release: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
        user_namespaces: userns::user_namespaces(&caller),
        id_mapping: userns::id_mapping(&caller),
        cgroups: cgroups::cgroups(&caller),
        overlay,
        overlay_lowerdir_plus,
        clone3: Support::from_bool(ns.clone3, || "clone3 is ENOSYS (Linux < 5.3, or a seccomp filter)".into()),
        pidfd: Support::from_bool(pidfd_ok, || {
            format!(
                "pidfd_open {}, pidfd_send_signal {}, waitid(P_PIDFD) {} (Linux 5.4 has all three)",
                ns.pidfd_open, ns.pidfd_send_signal, ns.waitid_pidfd
            )
        }),
        clone_into_cgroup: Support::from_bool(ns.clone_into_cgroup, || {
            "clone3 refuses CLONE_INTO_CGROUP (Linux < 5.7): children are moved into their cgroup before they run"
                .into()
        }),
        landlock: features::landlock(nook_ns::landlock_abi()),
        seccomp: features::seccomp(&status),
        nftables: features::nftables(&caller),
        caller,
    }
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_u64(path: &str) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

/// A `Key:\tvalue` field of `/proc/PID/status`.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The caller from its `/proc/self/status` (pure).
pub(crate) fn caller_from_status(status: &str) -> Caller {
    // Uid/Gid: real, effective, saved, filesystem.
    let second = |key| status_field(status, key).and_then(|v| v.split_whitespace().nth(1)?.parse().ok());
    let uid = second("Uid").unwrap_or(u32::MAX);
    let gid = second("Gid").unwrap_or(u32::MAX);
    let cap_eff = status_field(status, "CapEff").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    Caller {
        uid,
        gid,
        root: uid == 0,
        cap_sys_admin: has(CAP_SYS_ADMIN),
        cap_net_admin: has(CAP_NET_ADMIN),
        cap_bpf: has(CAP_BPF),
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.caller;
        writeln!(f, "kernel {}", self.kernel_release)?;
        writeln!(
            f,
            "caller: uid {} gid {}{}{}",
            c.uid,
            c.gid,
            if c.cap_sys_admin { ", CAP_SYS_ADMIN" } else { "" },
            if c.cap_net_admin { ", CAP_NET_ADMIN" } else { "" }
        )?;
        writeln!(f, "user namespaces: {}", self.user_namespaces.support)?;
        let m = &self.id_mapping;
        writeln!(
            f,
            "multi-range id maps: {} (subuid {:?}, subgid {:?})",
            m.multi_range,
            m.subuid.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
            m.subgid.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>()
        )?;
        let g = &self.cgroups;
        match g.layout {
            Some(l) => writeln!(
                f,
                "cgroups: {:?}, own v2 cgroup {}",
                l,
                g.own_v2.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into())
            )?,
            None => writeln!(f, "cgroups: unknown ({})", g.error.as_deref().unwrap_or(""))?,
        }
        for r in &g.controllers {
            let v = match r.version {
                Some(Version::V1) => "v1",
                Some(Version::V2) => "v2",
                None => "--",
            };
            writeln!(f, "  {:<10} {v} delegated: {}", r.controller.to_string(), r.delegated)?;
        }
        writeln!(f, "overlay: {}; lowerdir+: {}", self.overlay, self.overlay_lowerdir_plus)?;
        writeln!(f, "clone3: {}; pidfd: {}; CLONE_INTO_CGROUP: {}", self.clone3, self.pidfd, self.clone_into_cgroup)?;
        match self.landlock.abi {
            Some(abi) => writeln!(f, "Landlock: ABI {abi}")?,
            None => writeln!(f, "Landlock: {}", self.landlock.support)?,
        }
        writeln!(f, "seccomp filter: {}", self.seccomp.filter)?;
        write!(f, "nftables: {}", self.nftables.support)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_from_status_reads_effective_ids_and_caps() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t5\t5\t5\nCapEff:\t0000000000201000\n";
        let c = caller_from_status(s);
        assert_eq!((c.uid, c.gid, c.root), (0, 5, true));
        assert!(c.cap_sys_admin && c.cap_net_admin);
        let c = caller_from_status("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n");
        assert_eq!((c.uid, c.root, c.cap_sys_admin), (1000, false, false));
    }
}
