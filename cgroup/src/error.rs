//! Errors of `nook-cgroup`: one enum for the crate and one for bad input.

use std::io;
use std::path::{Path, PathBuf};

use crate::controller::Controller;

/// Everything that can go wrong in `nook-cgroup`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec was rejected before anything was written.
    #[error("invalid cgroup spec: {0}")]
    Invalid(#[from] ValidationError),
    /// A system call or file operation failed.
    #[error("{call}{}: {source}", at_path(.path))]
    Sys {
        /// The call (`"mkdirat"`, `"openat2"`, `"read"`, `"unlinkat"`, `"inotify_add_watch"`, ...).
        call: &'static str,
        /// The file or directory it was about, if any.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A write was refused: the value, the file and the OS error.
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host does not offer a controller the spec needs.
    #[error("controller {controller} is not available on this host ({detail})")]
    ControllerUnavailable {
        /// The controller.
        controller: Controller,
        /// Where it was looked for.
        detail: String,
    },
    /// cgroup v2 "no internal processes": controllers cannot be enabled for the children of
    /// a cgroup that has processes of its own.
    #[error(
        "cannot enable {controllers} in {path}/cgroup.subtree_control: that cgroup has processes of its own \
         (cgroup v2 \"no internal processes\" rule). Move them into a leaf cgroup first (e.g. \
         create {path}/init and write their pids to its cgroup.procs — `CgroupSpec::leaf_for_parent_processes` \
         does this for you), or pass an explicit parent that holds no processes"
    )]
    NoInternalProcesses {
        /// The cgroup whose `subtree_control` refused.
        path: PathBuf,
        /// The controllers asked for (`+cpu +memory`).
        controllers: String,
    },
    /// The parent cgroup lies outside what a hierarchy's mount shows (a cgroup namespace or
    /// a bind mount of a subtree).
    #[error("parent cgroup {parent} is not visible under the mount at {mount_point}")]
    ParentNotVisible {
        /// The parent cgroup path.
        parent: PathBuf,
        /// The hierarchy's mount point.
        mount_point: PathBuf,
    },
    /// [`crate::Cgroup::create`] found the cgroup already there: it only makes new cgroups
    /// (the `mkdir` is the claim). Nothing it created before is left behind. Use
    /// [`crate::Cgroup::open`] to work with an existing cgroup.
    #[error("cgroup {path} already exists (create makes new cgroups only; Cgroup::open opens an existing one)")]
    Exists {
        /// The directory that was already there.
        path: PathBuf,
    },
    /// A path was refused on the way into cgroupfs: it would have followed a symlink,
    /// crossed into another mount (a bind mount placed under the parent) or left the
    /// hierarchy, or the hierarchy's mount point is not a cgroup file system.
    #[error("refusing {path}: {reason}")]
    Unsafe {
        /// The path as it would have been resolved.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
        /// The OS error of the refused resolution (`ELOOP`, `EXDEV`).
        #[source]
        source: io::Error,
    },
    /// A file had content that could not be parsed.
    #[error("cannot parse {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Cgroups could not be found at all (no cgroup mount in mountinfo).
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    /// A `bpf(2)` call (v2 device controller) failed.
    #[error("bpf({cmd}) failed: {source}{}", log_suffix(.log))]
    Bpf {
        /// The bpf command.
        cmd: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
        /// The verifier log, if any.
        log: String,
    },
    /// Waiting timed out.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
    /// A setup step failed, and undoing what it had done failed too: `cause` is the
    /// failure, `cleanup` every error met while undoing (e.g. [`crate::Cgroup::create`]
    /// could not remove a directory it had made).
    #[error("{cause} (and undoing it failed: {})", list(.cleanup))]
    Cleanup {
        /// The failure.
        cause: Box<Error>,
        /// What failed while undoing.
        cleanup: Vec<Error>,
    },
    /// Tearing down kept going after a failure; every failure is listed.
    #[error("removing {what} failed: {}", list(.errors))]
    Teardown {
        /// What was being removed (the cgroup's first directory).
        what: String,
        /// Every failure, in the order met.
        errors: Vec<Error>,
    },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() { String::new() } else { format!("; verifier log: {log}") }
}

fn at_path(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(String::new, |p| format!(" {}", p.display()))
}

fn list(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// `cause` alone when `cleanup` is empty, else [`Error::Cleanup`]. A [`Error::Teardown`]
    /// among the cleanup errors is flattened into its errors.
    pub(crate) fn with_cleanup(cause: Error, cleanup: Vec<Error>) -> Error {
        let cleanup: Vec<Error> = cleanup
            .into_iter()
            .flat_map(|e| match e {
                Error::Teardown { errors, .. } => errors,
                other => vec![other],
            })
            .collect();
        if cleanup.is_empty() { cause } else { Error::Cleanup { cause: Box::new(cause), cleanup } }
    }

    /// `Ok` when `errors` is empty, else [`Error::Teardown`].
    pub(crate) fn teardown(what: impl Into<String>, errors: Vec<Error>) -> Result<()> {
        if errors.is_empty() { Ok(()) } else { Err(Error::Teardown { what: what.into(), errors }) }
    }

    /// The OS errno behind this error, if any: the source of a failed call, the cause of a
    /// [`Error::Cleanup`], the first failure with an errno of a [`Error::Teardown`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. }
            | Error::Write { source, .. }
            | Error::Bpf { source, .. }
            | Error::Unsafe { source, .. } => source.raw_os_error(),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Teardown { errors, .. } => errors.iter().find_map(Error::raw_os_error),
            _ => None,
        }
    }
}

/// Context for a failed call, instead of hand-written `map_err` closures: the call's name
/// and, with [`SysContext::sys_at`], the path it was about.
pub(crate) trait SysContext<T> {
    /// [`Error::Sys`] without a path.
    fn sys(self, call: &'static str) -> Result<T>;
    /// [`Error::Sys`] about `path`.
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
    /// For a path resolved beneath a hierarchy root (`at.rs`): a symlink (`ELOOP`) or a mount
    /// crossing / escape (`EXDEV`) on the way is [`Error::Unsafe`], anything else
    /// [`Error::Sys`].
    fn beneath(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, io::Error> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|source| Error::Sys { call, path: None, source })
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Sys { call, path: Some(path.into()), source })
    }

    fn beneath(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| crate::at::err(call, path.into(), source))
    }
}

/// A file of a directory, for an error's path: joined only when the error happens (the
/// context traits take `impl Into<PathBuf>` and convert on the error path only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Joined<'a>(pub(crate) &'a Path, pub(crate) &'a str);

impl From<Joined<'_>> for PathBuf {
    fn from(Joined(dir, file): Joined<'_>) -> PathBuf {
        dir.join(file)
    }
}

/// Context for a parser's complaint (a `String`, or `procfs-core`'s error): the file it
/// was reading.
pub(crate) trait ParseContext<T> {
    /// [`Error::Parse`] about `path`.
    fn parse_at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T, D: std::fmt::Display> ParseContext<T> for std::result::Result<T, D> {
    fn parse_at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|detail| Error::Parse { path: path.into(), detail: detail.to_string() })
    }
}

impl<T> SysContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(io::Error::from).sys(call)
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(io::Error::from).sys_at(call, path)
    }

    fn beneath(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(io::Error::from).beneath(call, path)
    }
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value in a [`crate::CgroupSpec`] that is out of range or malformed. Each names the field
/// and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A number is outside its allowed range.
    #[error("{field} = {value} is out of range ({range})")]
    OutOfRange {
        /// The field, e.g. `"cpu.weight"`.
        field: &'static str,
        /// The value given.
        value: i128,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A string value is malformed.
    #[error("{field} = {value:?} is malformed: {reason}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A cpuset is not inside the parent's effective set.
    #[error("{field} = {value:?} is not inside the parent's effective set {parent:?}")]
    NotInParent {
        /// `"cpuset.cpus"` or `"cpuset.mems"`.
        field: &'static str,
        /// The value given.
        value: String,
        /// The parent's effective set.
        parent: String,
    },
    /// A hugetlb page size the host does not have.
    #[error("hugetlb page size {size:?} is not supported here (supported: {supported})")]
    UnknownHugePageSize {
        /// The size given.
        size: String,
        /// What the host supports.
        supported: String,
    },
    /// The parent cgroup path is unusable.
    #[error("cgroup parent {parent:?} is invalid: {reason}")]
    BadParent {
        /// The parent as given.
        parent: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The cgroup name is unusable.
    #[error("cgroup name {name:?} is invalid: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(errno: i32) -> Error {
        Err::<(), _>(io::Error::from_raw_os_error(errno)).sys_at("mkdirat", "/x").unwrap_err()
    }

    #[test]
    fn composition_and_raw_os_error() {
        let cause = sys(libc::EACCES);
        assert!(matches!(Error::with_cleanup(sys(libc::EACCES), Vec::new()), Error::Sys { .. }), "nothing to add");
        let cleanup = Error::teardown("cgroup /x", vec![sys(libc::EBUSY), Error::NoHierarchy]).unwrap_err();
        let err = Error::with_cleanup(cause, vec![cleanup]);
        let Error::Cleanup { cause, cleanup } = &err else { panic!("{err:?}") };
        assert_eq!(cleanup.len(), 2, "a teardown's errors are flattened");
        assert_eq!(cause.raw_os_error(), Some(libc::EACCES));
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "through the cause");
        assert_eq!(
            Error::teardown("t", vec![Error::NoHierarchy, sys(libc::EBUSY)]).unwrap_err().raw_os_error(),
            Some(libc::EBUSY),
            "the first failure with an errno"
        );
        assert!(Error::teardown("t", Vec::new()).is_ok());
        assert_eq!(
            sys(libc::ENOENT).to_string(),
            format!("mkdirat /x: {}", io::Error::from_raw_os_error(libc::ENOENT))
        );
        let no_path = Err::<(), _>(rustix::io::Errno::AGAIN).sys("eventfd").unwrap_err();
        assert!(no_path.to_string().starts_with("eventfd: "), "{no_path}");
        let unsafe_ = Err::<(), _>(io::Error::from_raw_os_error(libc::ELOOP)).beneath("openat2", "/x").unwrap_err();
        assert!(matches!(unsafe_, Error::Unsafe { .. }), "{unsafe_:?}");
        let parse = Err::<(), _>("bad").parse_at("/x/cpu.stat").unwrap_err();
        assert!(matches!(parse, Error::Parse { .. }), "{parse:?}");
    }
}
