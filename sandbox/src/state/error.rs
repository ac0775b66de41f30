//! The state module's errors, in the shape every nook crate uses (`Invalid`, `Sys`, `Cleanup`,
//! `Teardown`), plus the crates' own errors for the objects a cleanup removes.

use std::io;
use std::path::PathBuf;

use nook_netmodel::firewall::FirewallError;
use nook_netmodel::ipam::IpamError;

/// A record id that cannot be used (checked before anything is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A sandbox id must be 1 to [`MAX_ID_LEN`](super::MAX_ID_LEN) bytes of
    /// `[A-Za-z0-9][A-Za-z0-9_.-]*` (it names the record file).
    #[error("sandbox id {id:?}: {reason}")]
    BadId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What went wrong with a record or a cleanup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A system call or file operation failed.
    #[error("{call}{} failed: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Sys {
        /// The call.
        call: &'static str,
        /// The file it worked on.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A record for this sandbox id exists already.
    #[error("a record for sandbox {id} exists ({})", path.display())]
    Exists {
        /// The id.
        id: String,
        /// The record file.
        path: PathBuf,
    },
    /// A record file that does not parse (or names itself wrongly): left as it is, reported.
    #[error("corrupt sandbox record {}: {reason}", path.display())]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state directory is not private to the caller (another user could write records
    /// that steer a cleanup): it must be a directory owned by the caller, not writable by
    /// group or others, and not a symlink.
    #[error("state directory {} is not private: {reason}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A process of a dead owner's sandbox survived `SIGKILL` (or could not be signalled).
    #[error("process {pid} of sandbox {id} is still there after SIGKILL")]
    Survived {
        /// The sandbox.
        id: String,
        /// The pid.
        pid: u32,
    },
    /// An object is not what the record says it was (e.g. a netns path that is a directory):
    /// left alone.
    #[error("{} is not {expected}: left alone", path.display())]
    NotWhatWasRecorded {
        /// The path.
        path: PathBuf,
        /// What the record says it is.
        expected: &'static str,
    },
    /// From nook-cgroup.
    #[error(transparent)]
    Cgroup(#[from] nook_cgroup::Error),
    /// From nook-ns.
    #[error(transparent)]
    Ns(#[from] nook_ns::Error),
    /// From nook-unionfs.
    #[error(transparent)]
    Unionfs(#[from] nook_unionfs::Error),
    /// From nook-netmodel's IPAM.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// From nook-netmodel's firewall.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A step failed and undoing what was done before failed too.
    #[error("{cause} (and undoing it failed: {})", join(cleanup))]
    Cleanup {
        /// The failure.
        cause: Box<Error>,
        /// What failed while undoing.
        cleanup: Vec<Error>,
    },
    /// A removal went on after failures and reports each.
    #[error("removing {what}: {}", join(errors))]
    Teardown {
        /// What was being removed.
        what: String,
        /// Every failure.
        errors: Vec<Error>,
    },
}

fn join(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// The OS error number, if there is one (looking through `Cleanup`'s cause, a one-error
    /// `Teardown` and the crates' errors).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Teardown { errors, .. } if errors.len() == 1 => errors[0].raw_os_error(),
            Error::Cgroup(e) => e.raw_os_error(),
            Error::Ns(e) => e.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn sys(call: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Sys { call, path: Some(path.into()), source }
    }
}

impl From<nook_ns::statefile::FileError> for Error {
    fn from(e: nook_ns::statefile::FileError) -> Error {
        Error::Sys { call: e.call, path: Some(e.path), source: e.source }
    }
}

/// The module's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Context for failed calls: the call and the path.
pub(crate) trait SysContext<T> {
    /// The call failed (no path).
    #[allow(dead_code)]
    fn sys(self, call: &'static str) -> Result<T>;
    /// The call on `path` failed.
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, io::Error> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|source| Error::Sys { call, path: None, source })
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Sys { call, path: Some(path.into()), source })
    }
}

impl<T> SysContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(io::Error::from).sys(call)
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(io::Error::from).sys_at(call, path)
    }
}
