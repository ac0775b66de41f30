//! User namespaces (the sysctls and LSMs that block them, and a real try) and id mapping
//! (`newuidmap`/`newgidmap`, the caller's subordinate ids).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Caller, Support, find_program, read_trim, read_u64};

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

pub(super) fn user_namespaces(caller: &Caller) -> UserNamespaces {
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

pub(super) fn id_mapping(caller: &Caller) -> IdMapping {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
