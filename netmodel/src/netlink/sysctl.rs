//! Sysctls under `/proc/sys/`, read and written as seen from a network namespace.
//!
//! `/proc/sys/net/*` is per network namespace, and which namespace a file belongs to is
//! decided when it is *opened* (by the opening thread's namespace), not by which `/proc`
//! it was reached through. So the file is opened on a short-lived thread that entered the
//! namespace; the caller's threads never move.

use std::fs::OpenOptions;
use std::io::{Read, Write};

use nook_ns::{Namespace, NsFd};

use super::{NetlinkError, Result};

/// Checks a sysctl key: relative (`net/ipv4/ip_forward`, not `/proc/sys/...`), made of
/// `[A-Za-z0-9_.-]` components separated by single `/`, none of them `.` or `..`.
/// (Upper case is allowed because interface names, e.g. in `net/ipv4/conf/NAME/...`, may
/// hold it.)
pub fn validate_sysctl_key(key: &str) -> Result<()> {
    let bad = |reason| Err(NetlinkError::Invalid { what: "sysctl key", value: key.to_owned(), reason });
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("must be relative to /proc/sys");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')) {
        return bad("only letters, digits, `_`, `.`, `-` and `/` are allowed");
    }
    for part in key.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` and `..` components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

fn sysctl_err(op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> NetlinkError {
    move |source| NetlinkError::Sysctl { op, key: key.to_owned(), source }
}

/// Runs `f` in `netns` (on a short-lived thread) or, for `None`, right here.
fn in_netns<T: Send>(netns: Option<&NsFd>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match netns {
        None => f(),
        Some(ns) => on_thread_in(ns, f),
    }
}

/// Runs `f` on a scoped thread that first enters the network namespace `ns`. The thread
/// ends right after, so it is never moved back: cheaper than [`nook_ns::run_in`] (no
/// handle to the old namespace is opened, no second `setns`), and the caller's threads
/// are never touched.
pub(super) fn on_thread_in<T: Send>(ns: &NsFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    check_net(ns)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn_scoped(scope, || {
                ns.enter()?;
                f()
            })
            .map_err(|source| NetlinkError::Socket { op: "spawn thread to enter the netns", source })?;
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Refuses a namespace handle that is not a network namespace (entering it would leave the
/// thread in the caller's network namespace and silently act there).
pub(super) fn check_net(ns: &NsFd) -> Result<()> {
    if ns.kind() == Namespace::Net {
        Ok(())
    } else {
        Err(NetlinkError::Invalid {
            what: "namespace",
            value: format!("{:?}", ns.kind()),
            reason: "not a network namespace",
        })
    }
}

pub(super) fn write(netns: Option<&NsFd>, key: &str, value: &str) -> Result<()> {
    validate_sysctl_key(key)?;
    let path = format!("/proc/sys/{key}");
    in_netns(netns, || {
        let mut f = OpenOptions::new().write(true).open(&path).map_err(sysctl_err("open", key))?;
        // One write: a sysctl takes the value from the first write.
        f.write_all(value.as_bytes()).map_err(sysctl_err("write", key))
    })
}

pub(super) fn read(netns: Option<&NsFd>, key: &str) -> Result<String> {
    validate_sysctl_key(key)?;
    let path = format!("/proc/sys/{key}");
    in_netns(netns, || {
        let mut f = OpenOptions::new().read(true).open(&path).map_err(sysctl_err("open", key))?;
        let mut s = String::new();
        f.read_to_string(&mut s).map_err(sysctl_err("read", key))?;
        let trimmed = s.trim_end_matches('\n').len();
        s.truncate(trimmed);
        Ok(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["net/ipv4/ip_forward", "net/ipv6/conf/nkBr0/disable_ipv6", "net/ipv4/conf/eth0.100/rp_filter"] {
            assert!(validate_sysctl_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/proc/sys/net", "net/../kernel", "net//ipv4", "net/ipv4/", "./net", "net/ip v4", "net/ipv4\0"]
        {
            assert!(validate_sysctl_key(bad).is_err(), "{bad:?}");
        }
    }
}
