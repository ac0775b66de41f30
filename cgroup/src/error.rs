//! Errors of `nook-cgroup`: one enum for the crate and one for bad input.

use std::io;
use std::path::PathBuf;

use crate::hierarchy::Controller;

/// Everything that can go wrong in `nook-cgroup`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec was rejected before anything was written.
    #[error("invalid cgroup spec: {0}")]
    Invalid(#[from] ValidationError),
    /// A file operation on cgroupfs failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done (`"mkdir"`, `"write"`, `"read"`, `"rmdir"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
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
    /// Removal failed for some directories; every failure is listed.
    #[error("removing the cgroup failed: {}", list(.failures))]
    Remove {
        /// Each failure.
        failures: Vec<Error>,
    },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() { String::new() } else { format!("; verifier log: {log}") }
}

fn list(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// The OS errno behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Write { source, .. }
            | Error::Bpf { source, .. }
            | Error::Unsafe { source, .. } => source.raw_os_error(),
            _ => None,
        }
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
