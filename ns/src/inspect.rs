//! Inspecting namespaces through `/proc`: which namespaces a process is in, which
//! processes share one.

use std::collections::BTreeMap;
use std::fs;

use crate::error::{Result, SysContext};
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
