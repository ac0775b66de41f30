//! The masked and read-only paths of Docker/OCI, as nook-ns mount steps.
//!
//! The lists are Docker's current defaults (moby `oci/defaults.go`, 28.x: the OCI runtime
//! spec's list plus `/proc/interrupts` and `/sys/devices/virtual/powercap`, and each CPU's
//! `thermal_throttle` directory); `oci-spec`'s `get_default_maskedpaths` is a subset.
//! A masked path is hidden ([`MountStep::Mask`]: a read-only empty tmpfs over a directory,
//! `/dev/null` over a file); a read-only path is bound onto itself read-only, submounts
//! included. A path that does not exist is skipped, as runc does: for paths under `/proc`
//! and `/sys` that is decided on the host's (the sandbox's `/proc` and `/sys` show the same
//! kernel, and are not mounted yet when the plan is built), for other paths under the
//! sandbox's root.

use std::path::{Path, PathBuf};

use nook_ns::MountStep;

/// Paths hidden from the sandbox by default.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the sandbox sees read-only by default.
pub const READ_ONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The default masked paths with this host's `/sys/devices/system/cpu/cpuN/thermal_throttle`
/// directories (Docker masks them too).
pub fn default_masked_paths() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = MASKED_PATHS.iter().map(PathBuf::from).collect();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        let mut cpus: Vec<PathBuf> = dir
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.strip_prefix("cpu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|e| e.path().join("thermal_throttle"))
            .filter(|p| p.exists())
            .collect();
        cpus.sort();
        out.extend(cpus);
    }
    out
}

/// Where a path of the sandbox is looked for at plan time (see the module docs).
fn exists(root: &Path, path: &Path) -> bool {
    if path.starts_with("/proc") || path.starts_with("/sys") {
        path.exists()
    } else {
        root.join(path.strip_prefix("/").unwrap_or(path)).exists()
    }
}

/// Mount steps that mask `masked` and make `read_only` read-only, for a sandbox whose root
/// is `root` at the time the steps run (`/` after `pivot_root`). Paths are absolute paths
/// inside the sandbox; those that do not exist are left out.
pub fn path_steps<M: AsRef<Path>, R: AsRef<Path>>(root: &Path, masked: &[M], read_only: &[R]) -> Vec<MountStep> {
    let at = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut steps = Vec::new();
    for p in masked.iter().map(AsRef::as_ref).filter(|p| exists(root, p)) {
        steps.push(MountStep::mask(at(p)));
    }
    for p in read_only.iter().map(AsRef::as_ref).filter(|p| exists(root, p)) {
        steps.push(MountStep::bind(at(p), at(p)).recursive().read_only());
    }
    steps
}

/// The default steps: [`default_masked_paths`] and [`READ_ONLY_PATHS`] under `root`.
pub fn default_path_steps(root: &Path) -> Vec<MountStep> {
    path_steps(root, &default_masked_paths(), &READ_ONLY_PATHS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_steps_mask_and_bind_read_only() {
        let steps = default_path_steps(Path::new("/"));
        // /proc/keys and /proc/sys exist on every Linux host with procfs (/proc/kcore not here)
        assert!(steps.contains(&MountStep::mask("/proc/keys")));
        assert!(steps.contains(&MountStep::bind("/proc/sys", "/proc/sys").recursive().read_only()));
        let sysrq = MountStep::bind("/proc/sysrq-trigger", "/proc/sysrq-trigger").recursive().read_only();
        assert_eq!(steps.contains(&sysrq), Path::new("/proc/sysrq-trigger").exists());
        // every step is one of the two kinds, and nothing is listed twice
        for s in &steps {
            assert!(matches!(s, MountStep::Mask { .. } | MountStep::Bind { read_only: true, recursive: true, .. }));
        }
        let mut dedup = steps.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), steps.len());
    }

    #[test]
    fn root_prefix_and_missing_paths() {
        let steps = path_steps(Path::new("/srv/rootfs"), &["/proc/keys", "/proc/nk-no-such-file"], &["/proc/sys"]);
        assert_eq!(
            steps,
            vec![
                MountStep::mask("/srv/rootfs/proc/keys"),
                MountStep::bind("/srv/rootfs/proc/sys", "/srv/rootfs/proc/sys").recursive().read_only(),
            ]
        );
        // outside /proc and /sys, existence is decided under the root
        let dir = std::env::temp_dir();
        let steps = path_steps(&dir, &["/nk-not-here"], &[] as &[&str]);
        assert!(steps.is_empty());
    }

    #[test]
    fn lists_cover_the_issue() {
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/sched_debug",
            "/proc/acpi",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ] {
            assert!(MASKED_PATHS.contains(&p), "{p}");
        }
        for p in oci_spec::runtime::get_default_maskedpaths() {
            assert!(MASKED_PATHS.contains(&p.as_str()), "{p}");
        }
        for p in oci_spec::runtime::get_default_readonly_paths() {
            assert!(READ_ONLY_PATHS.contains(&p.as_str()), "{p}");
        }
    }
}
