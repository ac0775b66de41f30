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

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use nook_cgroup::{Controller, Hierarchies, Layout, Location, V2Support, Version};
use serde::{Deserialize, Serialize};

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

/// What blocks user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserNsBlocker {
    /// The kernel has no user namespaces (`CONFIG_USER_NS` off: no `/proc/self/ns/user`).
    NoKernelSupport,
    /// `user.max_user_namespaces = 0`: nobody may create one, not even root.
    MaxUserNamespacesZero,
    /// Debian's `kernel.unprivileged_userns_clone = 0`: only `CAP_SYS_ADMIN` may.
    UnprivilegedUsernsClone,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns = 1`: an unprivileged caller
    /// gets a namespace whose capabilities AppArmor denies, unless a profile allows `userns`.
    AppArmorRestricted,
    /// SELinux is enforcing: its policy may deny `user_namespace { create }`.
    SelinuxEnforcing,
}

impl UserNsBlocker {
    fn describe(self) -> &'static str {
        match self {
            UserNsBlocker::NoKernelSupport => "the kernel has no user namespaces (no /proc/self/ns/user)",
            UserNsBlocker::MaxUserNamespacesZero => "user.max_user_namespaces = 0",
            UserNsBlocker::UnprivilegedUsernsClone => "kernel.unprivileged_userns_clone = 0 (unprivileged callers)",
            UserNsBlocker::AppArmorRestricted => {
                "kernel.apparmor_restrict_unprivileged_userns = 1 (no capabilities inside without an AppArmor profile allowing userns)"
            }
            UserNsBlocker::SelinuxEnforcing => "SELinux is enforcing (policy may deny user_namespace create)",
        }
    }
}

/// User namespaces: the knobs, and whether the caller can create one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserNamespaces {
    /// Whether the caller can create a usable user namespace (see the module docs).
    pub support: Support,
    /// `/proc/sys/user/max_user_namespaces`, if readable.
    pub max_user_namespaces: Option<u64>,
    /// `/proc/sys/kernel/unprivileged_userns_clone` (Debian kernels only).
    pub unprivileged_userns_clone: Option<u64>,
    /// `/proc/sys/kernel/apparmor_restrict_unprivileged_userns` (Ubuntu kernels only).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
    /// `/sys/fs/selinux/enforce`, where SELinux is mounted.
    pub selinux_enforcing: Option<bool>,
    /// What blocks (or may block) them for this caller; empty when nothing does.
    pub blockers: Vec<UserNsBlocker>,
    /// The result of creating a child in a new user namespace: `None` when it was not tried
    /// (no `true` binary found), `Some(Ok)` when it worked, `Some(Err(errno))` otherwise.
    pub tried: Option<Result<(), i32>>,
}

/// One line of `/etc/subuid` or `/etc/subgid` that names the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIdRange {
    /// First subordinate id.
    pub start: u64,
    /// How many.
    pub count: u64,
}

/// Multi-range id maps for unprivileged callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IdMapping {
    /// `newuidmap`, where found.
    pub newuidmap: Option<PathBuf>,
    /// `newgidmap`, where found.
    pub newgidmap: Option<PathBuf>,
    /// The caller's ranges in `/etc/subuid`.
    pub subuid: Vec<SubIdRange>,
    /// The caller's ranges in `/etc/subgid`.
    pub subgid: Vec<SubIdRange>,
    /// Whether a map beyond the caller's own id can be written: root can write any map;
    /// otherwise both helpers and at least one range each are needed.
    pub multi_range: Support,
}

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

/// Landlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Landlock {
    /// The kernel's ABI version, where Landlock is enabled.
    pub abi: Option<u32>,
    /// Whether it can be used.
    pub support: Support,
}

/// seccomp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Seccomp {
    /// Filter mode (`SECCOMP_MODE_FILTER`): `/proc/sys/kernel/seccomp/actions_avail` exists.
    pub filter: Support,
    /// The actions the kernel offers (`actions_avail`).
    pub actions: Vec<String>,
    /// The caller's own mode (`Seccomp` in `/proc/self/status`: 0 none, 1 strict, 2 filter).
    pub caller_mode: Option<u32>,
    /// How many filters the caller runs under (`Seccomp_filters`).
    pub caller_filters: Option<u32>,
}

/// nftables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Nftables {
    /// The `nft` binary, where found.
    pub binary: Option<PathBuf>,
    /// Whether a table can be made (tried in a throwaway network namespace).
    pub support: Support,
}

/// Probes the host (see the module docs). Never fails: what cannot be found out is
/// [`Support::Unknown`] with the reason.
pub fn probe() -> HostReport {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caller = caller_from_status(&status);
    let ns = nook_ns::probe();
    let privileged = caller.cap_sys_admin;
    let uf = nook_unionfs::probe();
    let (overlay, overlay_lowerdir_plus) = overlay_support(uf.fsopen, uf.lowerdir_plus, privileged);
    let pidfd_ok = ns.pidfd_open && ns.pidfd_send_signal && ns.waitid_pidfd;
    HostReport {
        kernel_release: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
        user_namespaces: user_namespaces(&caller),
        id_mapping: id_mapping(&caller),
        cgroups: cgroups(&caller),
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
        landlock: landlock(nook_ns::landlock_abi()),
        seccomp: seccomp(&status),
        nftables: nftables(&caller),
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

fn overlay_support(fsopen: bool, lowerdir_plus: bool, privileged: bool) -> (Support, Support) {
    if fsopen {
        let plus = Support::from_bool(lowerdir_plus, || {
            "overlayfs does not take lowerdir+ (Linux < 6.8): stacks are limited by one page of mount options".into()
        });
        return (Support::Available, plus);
    }
    let listed = std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.lines().any(|l| l.ends_with("overlay")));
    if !privileged {
        let why = "asking overlayfs needs CAP_SYS_ADMIN (in a user namespace of its own the caller may mount overlay since Linux 5.11)";
        return (Support::unknown(why), Support::unknown(why));
    }
    let why = if listed {
        "fsopen(\"overlay\") failed (no new mount API, or refused)".to_owned()
    } else {
        "no overlay filesystem (not in /proc/filesystems; modprobe overlay)".to_owned()
    };
    (Support::no(why.clone()), Support::no(why))
}

/// The blockers the sysctls and LSMs name for a caller (pure).
pub(crate) fn userns_blockers(
    kernel: bool,
    max: Option<u64>,
    unpriv_clone: Option<u64>,
    apparmor: Option<u64>,
    selinux: Option<bool>,
    privileged: bool,
) -> Vec<UserNsBlocker> {
    let mut b = Vec::new();
    if !kernel {
        b.push(UserNsBlocker::NoKernelSupport);
    }
    if max == Some(0) {
        b.push(UserNsBlocker::MaxUserNamespacesZero);
    }
    if !privileged && unpriv_clone == Some(0) {
        b.push(UserNsBlocker::UnprivilegedUsernsClone);
    }
    if !privileged && apparmor.is_some_and(|v| v != 0) {
        b.push(UserNsBlocker::AppArmorRestricted);
    }
    if selinux == Some(true) {
        b.push(UserNsBlocker::SelinuxEnforcing);
    }
    b
}

/// Whether the caller can use user namespaces, from the blockers and the try (pure). A hard
/// blocker or a failed try says no; SELinux alone decides nothing (the try does).
pub(crate) fn decide_userns(blockers: &[UserNsBlocker], tried: Option<Result<(), i32>>) -> Support {
    let hard: Vec<&str> =
        blockers.iter().filter(|b| !matches!(b, UserNsBlocker::SelinuxEnforcing)).map(|b| b.describe()).collect();
    if !hard.is_empty() {
        return Support::no(hard.join("; "));
    }
    match tried {
        Some(Ok(())) => Support::Available,
        Some(Err(errno)) => Support::no(format!(
            "creating a child in a new user namespace failed: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
        None => Support::unknown("nothing blocks them, but no `true` binary was found to try"),
    }
}

fn user_namespaces(caller: &Caller) -> UserNamespaces {
    let kernel = Path::new("/proc/self/ns/user").exists();
    let max_user_namespaces = read_u64("/proc/sys/user/max_user_namespaces");
    let unprivileged_userns_clone = read_u64("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor_restrict_unprivileged_userns = read_u64("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let selinux_enforcing = read_trim("/sys/fs/selinux/enforce").map(|v| v == "1");
    let blockers = userns_blockers(
        kernel,
        max_user_namespaces,
        unprivileged_userns_clone,
        apparmor_restrict_unprivileged_userns,
        selinux_enforcing,
        caller.cap_sys_admin,
    );
    let tried = if kernel { try_user_namespace() } else { None };
    UserNamespaces {
        support: decide_userns(&blockers, tried),
        max_user_namespaces,
        unprivileged_userns_clone,
        apparmor_restrict_unprivileged_userns,
        selinux_enforcing,
        blockers,
        tried,
    }
}

/// Runs `true` in a new user namespace (the caller mapped to root inside, as nook-ns does
/// without a map). The exit status is checked too: a child that could not exec is a no.
fn try_user_namespace() -> Option<Result<(), i32>> {
    let program = ["/bin/true", "/usr/bin/true"].into_iter().find(|p| Path::new(p).exists())?;
    let mut cmd = nook_ns::Command::new(program);
    cmd.unshare(nook_ns::Namespace::User).env_clear();
    Some(match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(rustix::io::Errno::CHILD.raw_os_error()),
        Err(e) => Err(e.raw_os_error().unwrap_or(rustix::io::Errno::INVAL.raw_os_error())),
    })
}

/// The ranges `/etc/subuid`-format text grants user `name` / `id` (pure).
pub(crate) fn subid_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<SubIdRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != id && Some(who) != name {
                return None;
            }
            Some(SubIdRange { start: start.parse().ok()?, count: count.parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// The user name of `uid` from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let uid = uid.to_string();
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_owned())
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn id_mapping(caller: &Caller) -> IdMapping {
    let name = user_name(caller.uid);
    let ranges =
        |file| std::fs::read_to_string(file).map(|t| subid_ranges(&t, name.as_deref(), caller.uid)).unwrap_or_default();
    let (newuidmap, newgidmap) = (find_program("newuidmap"), find_program("newgidmap"));
    let (subuid, subgid) = (ranges("/etc/subuid"), ranges("/etc/subgid"));
    let multi_range = if caller.cap_sys_admin {
        Support::Available
    } else {
        let mut missing = Vec::new();
        if newuidmap.is_none() || newgidmap.is_none() {
            missing.push("newuidmap/newgidmap not found (package uidmap)".to_owned());
        }
        for helper in [&newuidmap, &newgidmap].into_iter().flatten() {
            if !privileged_helper(helper) {
                missing.push(format!("{} is neither setuid root nor has file capabilities", helper.display()));
            }
        }
        if subuid.is_empty() {
            missing.push(format!("no range for {} in /etc/subuid", name.as_deref().unwrap_or("the caller")));
        }
        if subgid.is_empty() {
            missing.push(format!("no range for {} in /etc/subgid", name.as_deref().unwrap_or("the caller")));
        }
        if missing.is_empty() { Support::Available } else { Support::no(missing.join("; ")) }
    };
    IdMapping { newuidmap, newgidmap, subuid, subgid, multi_range }
}

/// Whether an id-map helper can act for an unprivileged caller: setuid root, or file
/// capabilities (`security.capability`, as Fedora ships them).
fn privileged_helper(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let setuid_root = std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
    setuid_root || rustix::fs::getxattr(path, "security.capability", &mut [0u8; 64][..]).is_ok()
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

fn cgroups(caller: &Caller) -> Cgroups {
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

/// Landlock from the ABI call's answer (pure).
pub(crate) fn landlock(abi: std::io::Result<u32>) -> Landlock {
    match abi {
        Ok(abi) => Landlock { abi: Some(abi), support: Support::Available },
        Err(e) => {
            let reason = match e.raw_os_error() {
                Some(libc_enosys) if libc_enosys == rustix::io::Errno::NOSYS.raw_os_error() => {
                    "landlock_create_ruleset is ENOSYS: the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK)"
                        .to_owned()
                }
                Some(e) if e == rustix::io::Errno::OPNOTSUPP.raw_os_error() => {
                    "Landlock is built in but not enabled at boot (add it to the lsm= list)".to_owned()
                }
                _ => format!("landlock_create_ruleset failed: {e}"),
            };
            Landlock { abi: None, support: Support::no(reason) }
        }
    }
}

fn seccomp(status: &str) -> Seccomp {
    let actions_avail = read_trim("/proc/sys/kernel/seccomp/actions_avail");
    let field = |k| status_field(status, k).and_then(|v| v.parse().ok());
    let caller_mode: Option<u32> = field("Seccomp");
    let filter = match (&actions_avail, caller_mode) {
        (Some(_), Some(1)) => Support::no("the caller runs in seccomp strict mode"),
        (Some(_), _) => Support::Available,
        (None, None) => Support::no("the kernel has no seccomp (no Seccomp field in /proc/self/status)"),
        (None, Some(_)) => {
            Support::no("no /proc/sys/kernel/seccomp/actions_avail: the kernel has no seccomp filter mode")
        }
    };
    Seccomp {
        filter,
        actions: actions_avail.map(|a| a.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
        caller_mode,
        caller_filters: field("Seccomp_filters"),
    }
}

fn nftables(caller: &Caller) -> Nftables {
    let binary = find_program("nft");
    let support = match &binary {
        None => Support::no("no `nft` binary (Debian package nftables)"),
        Some(_) if !caller.cap_sys_admin => {
            Support::unknown("trying nf_tables needs a network namespace of its own (CAP_SYS_ADMIN)")
        }
        Some(nft) => try_nftables(nft),
    };
    Nftables { binary, support }
}

/// Makes a table in a throwaway network namespace: proves the binary runs and the kernel's
/// nf_tables answers (loading its modules if needed). The namespace, and the table with it,
/// is gone when this returns.
fn try_nftables(nft: &Path) -> Support {
    let ns = match nook_ns::NetNs::new() {
        Ok(ns) => ns,
        Err(e) => return Support::unknown(format!("no throwaway network namespace: {e}")),
    };
    let run = nook_ns::on_thread_in(&[ns.ns()], || {
        std::process::Command::new(nft)
            .args(["add", "table", "inet", "nkprobe"])
            .stdin(std::process::Stdio::null())
            .output()
    });
    match run {
        Ok(Ok(out)) if out.status.success() => Support::Available,
        Ok(Ok(out)) => Support::no(format!(
            "`nft add table` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Support::no(format!("cannot run {}: {e}", nft.display())),
        Err(e) => Support::unknown(format!("cannot enter the throwaway network namespace: {e}")),
    }
}

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

    #[test]
    fn userns_blockers_per_knob() {
        use UserNsBlocker::*;
        assert_eq!(userns_blockers(true, Some(100), None, None, None, false), vec![]);
        assert_eq!(userns_blockers(false, None, None, None, None, true), vec![NoKernelSupport]);
        // max_user_namespaces = 0 blocks root too; the other two only unprivileged callers.
        assert_eq!(userns_blockers(true, Some(0), Some(0), Some(1), None, true), vec![MaxUserNamespacesZero]);
        assert_eq!(
            userns_blockers(true, Some(5), Some(0), Some(1), Some(true), false),
            vec![UnprivilegedUsernsClone, AppArmorRestricted, SelinuxEnforcing]
        );
        assert_eq!(userns_blockers(true, Some(5), Some(1), Some(0), Some(false), false), vec![]);
    }

    #[test]
    fn userns_decision() {
        assert_eq!(decide_userns(&[], Some(Ok(()))), Support::Available);
        assert!(matches!(decide_userns(&[], Some(Err(1))), Support::Unavailable { .. }));
        assert!(matches!(decide_userns(&[], None), Support::Unknown { .. }));
        let s = decide_userns(&[UserNsBlocker::UnprivilegedUsernsClone], Some(Ok(())));
        assert!(s.reason().unwrap().contains("unprivileged_userns_clone"), "{s}");
        // SELinux alone: the try decides.
        assert_eq!(decide_userns(&[UserNsBlocker::SelinuxEnforcing], Some(Ok(()))), Support::Available);
    }

    #[test]
    fn subid_ranges_by_name_and_uid() {
        let t = "alice:100000:65536\n1001:200000:10\nbob:300000:5\nalice:400000:0\nbad line\n";
        assert_eq!(
            subid_ranges(t, Some("alice"), 1001),
            vec![SubIdRange { start: 100000, count: 65536 }, SubIdRange { start: 200000, count: 10 }]
        );
        assert_eq!(subid_ranges(t, None, 42), vec![]);
    }

    #[test]
    fn landlock_reasons() {
        assert_eq!(landlock(Ok(6)).abi, Some(6));
        let l = landlock(Err(std::io::Error::from_raw_os_error(rustix::io::Errno::OPNOTSUPP.raw_os_error())));
        assert!(l.support.reason().unwrap().contains("lsm="), "{:?}", l);
        let l = landlock(Err(std::io::Error::from_raw_os_error(rustix::io::Errno::NOSYS.raw_os_error())));
        assert!(l.support.reason().unwrap().contains("no Landlock"), "{:?}", l);
    }

    #[test]
    fn seccomp_from_status() {
        let s = seccomp("Seccomp:\t2\nSeccomp_filters:\t3\n");
        assert_eq!((s.caller_mode, s.caller_filters), (Some(2), Some(3)));
    }
}
