//! nook-ns's integration tests against the real kernel, in one test binary (one link, one
//! process): a module per area. Two suites keep a binary of their own because they observe the
//! whole process, which the tests of the other modules, running on parallel threads, would
//! disturb:
//!
//! - `tests/no_alloc.rs` installs a counting `#[global_allocator]` (one per binary) and
//!   asserts the count stays at 0 in the child;
//! - `tests/spawn.rs` compares the process's fd table and its unreaped children before and
//!   after, under a lock only its own tests take: another module's open descriptor or running
//!   child would read as a leak.

mod background;
mod hardening;
mod hygiene;
mod init;
mod inspect;
mod isolation;
mod join;
mod mounts;
mod netns;
mod probe;
mod start_gate;
mod terminal;
mod unprivileged;

/// `/proc` through `procfs-core`, the parsers nook-ns itself uses.
pub(crate) mod procfs {
    use std::path::{Path, PathBuf};

    use procfs_core::FromRead;
    pub(crate) use procfs_core::process::{MountInfo, Stat, Status};

    /// The mounts of the calling thread's mount namespace.
    pub(crate) fn thread_mounts() -> Vec<MountInfo> {
        let f = std::fs::File::open("/proc/thread-self/mountinfo").expect("open mountinfo");
        procfs_core::process::MountInfos::from_read(f).expect("parse mountinfo").0
    }

    /// The mount points of the calling thread's mount namespace.
    pub(crate) fn thread_mount_points() -> Vec<PathBuf> {
        thread_mounts().into_iter().map(|m| m.mount_point).collect()
    }

    /// The topmost mount at `path` in the calling thread's mount namespace.
    pub(crate) fn thread_mount_at(path: &Path) -> Option<MountInfo> {
        thread_mounts().into_iter().rfind(|m| m.mount_point == path)
    }

    /// `/proc/PID/stat` (or `/proc/self/stat` for `"self"`), `None` once the process is gone.
    pub(crate) fn stat(pid: impl std::fmt::Display) -> Option<Stat> {
        Stat::from_read(std::fs::File::open(format!("/proc/{pid}/stat")).ok()?).ok()
    }

    /// A `/proc/PID/stat` line (e.g. printed by a child), parsed.
    pub(crate) fn parse_stat(line: &str) -> Stat {
        Stat::from_read(line.as_bytes()).unwrap_or_else(|e| panic!("parse stat {line:?}: {e}"))
    }

    /// `/proc/PID/status`, `None` once the process is gone.
    pub(crate) fn status(pid: impl std::fmt::Display) -> Option<Status> {
        Status::from_read(std::fs::File::open(format!("/proc/{pid}/status")).ok()?).ok()
    }
}

/// The name libtest gives test `name` of the module at `module` (`module_path!()`: the
/// path without the crate), for re-running this binary with `--exact`.
pub(crate) fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
