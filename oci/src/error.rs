//! The runtime's errors: each says what failed, with the container or field it is about.

use std::path::PathBuf;

/// Why a command failed (printed, or logged as `"level":"error"`; exit status 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A bad command line.
    #[error("{0}")]
    Usage(String),
    /// Something nook-oci does not do (yet), named.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A `config.json` field nook cannot honour (never silently ignored).
    #[error("config.json: {field}: {reason}")]
    Config {
        /// The field, as the OCI runtime spec names it.
        field: String,
        /// Why.
        reason: String,
    },
    /// No container with this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// The container is not in a state the command needs.
    #[error("container {id} is {status}: {what}")]
    State {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// What cannot be done.
        what: String,
    },
    /// The container's program is not there to exec (runc's words).
    #[error("exec: {name:?}: {source}")]
    Exec {
        /// `process.args[0]`.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A system call or file operation.
    #[error("{call} {}: {source}", path.display())]
    Sys {
        /// The call.
        call: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An OCI document could not be read or written.
    #[error("{}: {source}", path.display())]
    Oci {
        /// The document.
        path: PathBuf,
        /// Why.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A state file could not be (de)serialized.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The sandbox layer (boxed: it is large).
    #[error(transparent)]
    Sandbox(Box<nook_sandbox::Error>),
}

impl From<nook_sandbox::Error> for Error {
    fn from(e: nook_sandbox::Error) -> Self {
        Error::Sandbox(Box::new(e))
    }
}

/// `Sys` context for I/O results, instead of `map_err` closures.
pub(crate) trait SysContext<T> {
    /// Names the call and path of a failed operation.
    fn sys(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn sys(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Sys { call, path: path.into(), source })
    }
}

/// A config field nook refuses.
pub(crate) fn refuse(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Config { field: field.into(), reason: reason.into() }
}
