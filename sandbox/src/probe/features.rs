//! Kernel features passed on or asked directly: overlay, Landlock, seccomp, nftables.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Caller, Support, find_program, read_trim, status_field};

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

pub(super) fn overlay_support(fsopen: bool, lowerdir_plus: bool, privileged: bool) -> (Support, Support) {
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

pub(super) fn seccomp(status: &str) -> Seccomp {
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

pub(super) fn nftables(caller: &Caller) -> Nftables {
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

#[cfg(test)]
mod tests {
    use super::*;

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
