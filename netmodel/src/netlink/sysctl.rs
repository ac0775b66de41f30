//! Sysctls under `/proc/sys/`, read and written as seen from a network namespace.
//!
//! `/proc/sys/net/*` is per network namespace, and which namespace a file belongs to is
//! decided when it is *opened* (by the opening thread's namespace), not by which `/proc`
//! it was reached through. So the file is opened on a short-lived thread that entered the
//! namespace; the caller's threads never move.

use std::fs::OpenOptions;
use std::io::{Read, Write};

use nook_ns::{Namespace, NsFd};

use std::path::PathBuf;

use super::Result;
use crate::error::SysContext;
use crate::validation::{NameRule, ValidationError};

/// Checks a sysctl key: relative (`net/ipv4/ip_forward`, not `/proc/sys/...`), made of
/// `[A-Za-z0-9_.-]` components separated by single `/`, none of them `.` or `..`.
/// (Upper case is allowed because interface names, e.g. in `net/ipv4/conf/NAME/...`, may
/// hold it.)
pub fn validate_sysctl_key(key: &str) -> Result<(), ValidationError> {
    let bad = |rule| Err(ValidationError::Name { field: "sysctl key", value: key.to_owned(), rule });
    if key.is_empty() {
        return bad(NameRule::Empty);
    }
    if key.starts_with('/') {
        return bad(NameRule::Absolute);
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')) {
        return bad(NameRule::Characters { allowed: "letters, digits, `_`, `.`, `-` and `/`" });
    }
    for part in key.split('/') {
        match part {
            "" => return bad(NameRule::EmptyComponent),
            "." | ".." => return bad(NameRule::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

/// Runs `f` in `netns` (on a short-lived thread, [`nook_ns::on_thread_in`]) or, for `None`,
/// right here.
fn in_netns<T: Send>(netns: Option<&NsFd>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match netns {
        None => f(),
        Some(ns) => on_thread_in(ns, f),
    }
}

/// Runs `f` on a short-lived thread inside the network namespace `ns`
/// ([`nook_ns::on_thread_in`]: the thread ends right after, so it is never moved back, and
/// the caller's threads are never touched) — after checking that `ns` is a network namespace.
pub(super) fn on_thread_in<T: Send>(ns: &NsFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    check_net(ns)?;
    nook_ns::on_thread_in(&[ns], f)?
}

/// Refuses a namespace handle that is not a network namespace (entering it would leave the
/// thread in the caller's network namespace and silently act there).
pub(super) fn check_net(ns: &NsFd) -> Result<(), ValidationError> {
    match ns.kind() {
        Namespace::Net => Ok(()),
        kind => Err(ValidationError::NotNetNamespace { field: "netns", kind }),
    }
}

pub(super) fn write(netns: Option<&NsFd>, key: &str, value: &str) -> Result<()> {
    validate_sysctl_key(key)?;
    let path = PathBuf::from(format!("/proc/sys/{key}"));
    in_netns(netns, || {
        let mut f = OpenOptions::new().write(true).open(&path).sys_at("open", &path)?;
        // One write: a sysctl takes the value from the first write.
        Ok(f.write_all(value.as_bytes()).sys_at("write", &path)?)
    })
}

pub(super) fn read(netns: Option<&NsFd>, key: &str) -> Result<String> {
    validate_sysctl_key(key)?;
    let path = PathBuf::from(format!("/proc/sys/{key}"));
    in_netns(netns, || {
        let mut f = OpenOptions::new().read(true).open(&path).sys_at("open", &path)?;
        let mut s = String::new();
        f.read_to_string(&mut s).sys_at("read", &path)?;
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
