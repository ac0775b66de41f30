//! The errors of user-mode networking ([`UserNetError`]).

use std::path::PathBuf;
use std::process::ExitStatus;

use crate::error::{SysError, path_suffix};
use crate::firewall::PortMapping;
use crate::validation::ValidationError;

/// Everything that can go wrong starting or stopping a user-mode network stack
/// ([`super::UserNet`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserNetError {
    /// None of the helper programs the spec allows was found: not on `PATH`, or not at the
    /// explicit path given. Install Debian's `passt` (for `pasta`) or `slirp4netns`.
    #[error(
        "no user-mode network helper found: looked for {} {}; install `passt` (pasta) or `slirp4netns`",
        .wanted.join(" or "),
        match .path { Some(p) => format!("at {}", p.display()), None => format!("on PATH ({})", .search) }
    )]
    NotFound {
        /// The programs looked for, in order (`pasta`, `slirp4netns`).
        wanted: Vec<&'static str>,
        /// The explicit path that was not an executable file, if one was given.
        path: Option<PathBuf>,
        /// The `PATH` searched (empty when unset).
        search: String,
    },
    /// `/dev/net/tun` cannot be opened for reading and writing by the caller: the helpers
    /// need it to make the sandbox's tap device (it is mode 0666 on distributions with udev;
    /// a container or minimal VM may have it 0600 or missing).
    #[error("/dev/net/tun is not usable by the caller (needed by {helper}): {source}")]
    TunUnavailable {
        /// The helper that would have needed it.
        helper: &'static str,
        /// Why (`EACCES`, `ENOENT`).
        #[source]
        source: std::io::Error,
    },
    /// The helper exited before its network was ready, or did not get ready in time (then
    /// it was killed): its exit status and what it wrote to stderr.
    #[error("{} failed to set up the sandbox's network ({}): {}", .program.display(),
        match .status { Some(s) => s.to_string(), None => "not ready in time, killed".to_owned() }, .stderr.trim())]
    HelperFailed {
        /// The helper program.
        program: PathBuf,
        /// Its exit status (`None`: it did not get ready in time).
        status: Option<ExitStatus>,
        /// Its stderr (without pasta's syslog noise).
        stderr: String,
    },
    /// The helper refused to publish a port (slirp4netns' `add_hostfwd` answered an error,
    /// e.g. the host port is taken).
    #[error("{program} refused to publish {}/{}: {message}", .port.host_port, .port.protocol)]
    PortRefused {
        /// The helper.
        program: &'static str,
        /// The mapping.
        port: PortMapping,
        /// The helper's message.
        message: String,
    },
    /// Bad input (a port mapping), found before anything was started.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A system call or file operation failed (a pipe, the API socket, `/proc`).
    #[error("{call}{}: {source}", path_suffix(.path))]
    Sys {
        /// The call.
        call: &'static str,
        /// The file it was about, if any.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Spawning the helper failed.
    #[error("start user-mode network helper: {0}")]
    Spawn(#[from] nook_ns::Error),
}

impl From<SysError> for UserNetError {
    fn from(e: SysError) -> UserNetError {
        UserNetError::Sys { call: e.call, path: e.path, source: e.source }
    }
}

impl UserNetError {
    /// The OS error behind this one, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            UserNetError::Sys { source, .. } | UserNetError::TunUnavailable { source, .. } => source.raw_os_error(),
            UserNetError::Spawn(e) => e.raw_os_error(),
            _ => None,
        }
    }
}
