//! The test process's own cgroup, for tests and benchmarks that create cgroups below it (as
//! the house rules ask) through tools that take a path (runc, crun, nook-oci).

use std::path::PathBuf;

/// Our own cgroup's directory in every mounted hierarchy (named ones too: runc joins
/// `name=systemd`), from `/proc/self/cgroup`; empty if it cannot be read.
pub fn own_cgroup_dirs() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let rel = path.trim_start_matches('/');
        let mount = if ctrl.is_empty() {
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.join("cgroup.procs").exists())
        } else if let Some(name) = ctrl.strip_prefix("name=") {
            Some(PathBuf::from("/sys/fs/cgroup").join(name))
        } else {
            std::iter::once(ctrl)
                .chain(ctrl.split(','))
                .map(|c| PathBuf::from("/sys/fs/cgroup").join(c))
                .find(|p| p.exists())
        };
        if let Some(m) = mount {
            out.push(m.join(rel));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Removes a cgroup tree bottom-up (`rmdir` of each directory, children first); what cannot
/// be removed (a cgroup with processes) stays.
pub fn remove_cgroup_tree(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}
