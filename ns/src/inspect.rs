//! Inspecting namespaces and processes through `/proc`: which namespaces a process is in,
//! which processes share one, when a process started. `/proc` files are parsed with
//! `procfs-core` (pure parsers over the file's bytes), the one `/proc` reader of nook.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use procfs_core::FromRead;
use procfs_core::process::Stat;

use crate::error::{Error, Result, SysContext};
use crate::handle::{NsId, ns_id};
use crate::namespace::Namespace;

/// The identity of every namespace of `pid`, by kind (the `ls -l /proc/PID/ns` view).
/// Kinds the running kernel lacks are left out.
pub fn namespaces_of(pid: u32) -> Result<BTreeMap<Namespace, NsId>> {
    let mut out = BTreeMap::new();
    for kind in Namespace::ALL {
        match ns_id(pid, kind) {
            Ok(id) => {
                out.insert(kind, id);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && is_alive(pid) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn is_alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Every process (by pid, in the caller's pid namespace) whose namespace of kind `kind`
/// is `id`. Processes that exit during the scan, or that the caller may not inspect, are
/// skipped.
pub fn processes_in(kind: Namespace, id: NsId) -> Result<Vec<u32>> {
    let entries = fs::read_dir("/proc").sys_at("read_dir", "/proc")?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| ns_id(pid, kind).is_ok_and(|other| other == id))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The kinds in which two processes are in different namespaces.
pub fn differing(a: u32, b: u32) -> Result<Vec<Namespace>> {
    let (na, nb) = (namespaces_of(a)?, namespaces_of(b)?);
    Ok(Namespace::ALL.into_iter().filter(|k| na.get(k) != nb.get(k)).collect())
}

/// When process `pid` started, in clock ticks after boot (field 22 of `/proc/PID/stat`).
///
/// With the pid it identifies a process across pid reuse: an owner record that stores both
/// (a lock holder, a temporary directory's creator) is stale when the pid is gone or has
/// another start time. A process that does not exist is an [`Error::Sys`] with `ENOENT`
/// (or `ESRCH` while it is being reaped).
///
/// ```
/// let me = nook_ns::process_start_time(std::process::id())?;
/// assert_eq!(nook_ns::process_start_time(std::process::id())?, me);
/// # Ok::<(), nook_ns::Error>(())
/// ```
pub fn process_start_time(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat: Stat = parse_proc_file(Path::new(&path))?;
    Ok(stat.starttime)
}

/// Reads a `/proc` file in one go and parses it: an I/O error keeps its errno, a file that
/// does not parse is `EINVAL` naming the parser's complaint.
fn parse_proc_file<T: FromRead>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).sys_at("read", path)?;
    T::from_read(bytes.as_slice())
        .map_err(|e| Error::sys_path("parse", path, io::Error::new(io::ErrorKind::InvalidData, e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_and_of_none() {
        let me = process_start_time(std::process::id()).unwrap();
        assert!(me > 0);
        // The kernel's pid limit is at most 2^22: this pid never exists.
        let gone = process_start_time(u32::MAX).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ENOENT), "{gone}");
    }
}
