//! The crate-level [`Error`]: every failure of the network model, with context.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::files::FilesError;
use crate::firewall::{FirewallError, Protocol};
use crate::ipam::IpamError;
use crate::netlink::NetlinkError;
use crate::validation::ValidationError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `nook-netmodel`.
///
/// [`Error::Invalid`] (bad input) and the refusals ([`Error::UnknownParent`],
/// [`Error::LinkExists`], [`Error::PortInUse`], ...) are returned before anything is changed.
/// The lower layers' errors are wrapped whole (match on them through their own types), except
/// their validation errors, which become [`Error::Invalid`] so that bad input has one variant
/// whichever layer found it. [`Error::raw_os_error`] finds the OS error through every layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An rtnetlink request failed (links, addresses, routes).
    #[error(transparent)]
    Netlink(NetlinkError),
    /// IP address management failed (including its validation of subnets and addresses).
    #[error(transparent)]
    Ipam(IpamError),
    /// The firewall backend failed (including its validation of port mappings).
    #[error(transparent)]
    Firewall(FirewallError),
    /// A host name, alias, search domain or resolver option is invalid, or a
    /// `resolv.conf` could not be read.
    #[error(transparent)]
    Files(FilesError),
    /// Creating, opening or removing a network namespace failed.
    #[error("network namespace: {0}")]
    Namespace(#[from] nook_ns::Error),
    /// Bad input, found before anything was changed (a spec, endpoint options, a port
    /// mapping, a name, a subnet). Validation errors of the lower layers (netlink, IPAM, the
    /// firewall, the files) are lifted into this variant when they become an [`Error`].
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A system call or file operation failed (reading a host file, starting a thread).
    #[error("{call}{}: {source}", path_suffix(.path))]
    Sys {
        /// The call (`"read"`, `"spawn thread"`, ...).
        call: &'static str,
        /// The file it was about, if any.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// User-mode networking ([`crate::usernet`]) failed: no helper found, `/dev/net/tun`
    /// unusable, the helper failed, a port refused (boxed: it carries the helper's
    /// stderr and the path searched, and would double the size of every `Result`).
    #[error(transparent)]
    UserNet(Box<crate::usernet::UserNetError>),
    /// The network still has endpoints attached.
    #[error("network {network} is in use by {} endpoint(s): {}", .endpoints.len(), .endpoints.join(", "))]
    NetworkInUse {
        /// The network.
        network: String,
        /// Its endpoints (as `sandbox/endpoint-id`).
        endpoints: Vec<String>,
    },
    /// A network of that name already exists on the host (its record is in the state
    /// directory): [`crate::Network::open`] it instead.
    #[error("network {network} already exists")]
    NetworkExists {
        /// The network.
        network: String,
    },
    /// No network of that name exists in the state directory ([`crate::Network::open`]).
    #[error("network {network} not found")]
    NetworkNotFound {
        /// The network.
        network: String,
    },
    /// A network's record exists but what its driver built is gone from the host namespace
    /// (its bridge was deleted, or the state directory belongs to another namespace).
    #[error("network {network}: link {link} is missing from the host namespace")]
    NetworkIncomplete {
        /// The network.
        network: String,
        /// The link expected (the bridge, a macvlan parent).
        link: String,
    },
    /// The network still has users in other processes ([`crate::Network::users`]).
    #[error("network {network} is used by {} other handle(s): {}", .users.len(), .users.join(", "))]
    NetworkHasUsers {
        /// The network.
        network: String,
        /// The users' processes.
        users: Vec<String>,
    },
    /// A network's record in the state directory does not parse, or holds another network.
    #[error("network record {path} is corrupt: {source}")]
    CorruptRecord {
        /// The record.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A macvlan network's parent link does not exist in the host namespace.
    #[error("network {network}: parent link {parent:?} does not exist in the host namespace")]
    UnknownParent {
        /// The network.
        network: String,
        /// The missing parent.
        parent: String,
    },
    /// No link of the host namespace carries an overlay network's local underlay address
    /// ([`crate::driver::OverlayOptions::local`]).
    #[error("overlay network {network}: no link in the host namespace has the underlay address {address}")]
    NoUnderlay {
        /// The network.
        network: String,
        /// The local underlay address.
        address: std::net::IpAddr,
    },
    /// A link the network needs to create already exists (e.g. a bridge name in use).
    #[error("network {network}: a link named {name:?} already exists in the host namespace")]
    LinkExists {
        /// The network.
        network: String,
        /// The link name.
        name: String,
    },
    /// The operation makes no sense in this sandbox's network mode (e.g. connecting a
    /// `host` or `container:` sandbox to a network).
    #[error("{operation} is not supported for a sandbox in {mode} network mode")]
    ModeUnsupported {
        /// The sandbox's mode (`"host"`, `"container"`, ...).
        mode: &'static str,
        /// What was attempted.
        operation: &'static str,
    },
    /// The sandbox is already connected to this network.
    #[error("sandbox {sandbox} is already connected to network {network}")]
    AlreadyConnected {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// The sandbox is not connected to this network.
    #[error("sandbox {sandbox} is not connected to network {network}")]
    NotConnected {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// The interface name is already used by another endpoint of the sandbox.
    #[error("sandbox {sandbox} already has an interface named {ifname:?}")]
    InterfaceInUse {
        /// The sandbox.
        sandbox: String,
        /// The interface name.
        ifname: String,
    },
    /// A host port is already published (by this process) for the same protocol and address.
    #[error("host port {}{host_port}/{protocol:?} is already published", host_ip_prefix(.host_ip))]
    PortInUse {
        /// Protocol.
        protocol: Protocol,
        /// Host address (`None`: all).
        host_ip: Option<IpAddr>,
        /// Host port.
        host_port: u16,
    },
    /// The network's driver cannot publish ports (macvlan, internal networks).
    #[error("network {network} ({driver}) cannot publish ports: {}", if *.internal {
        "an internal network has no way in from outside"
    } else {
        "the driver does not publish ports"
    })]
    PortsUnsupported {
        /// The network.
        network: String,
        /// Its driver.
        driver: String,
        /// Whether it is because the network is internal (else the driver publishes none).
        internal: bool,
    },
    /// An egress policy cannot be bound to an endpoint of this network: its driver leaves no
    /// bridge port on the host (macvlan), where the policy would be enforced.
    #[error("network {network} ({driver}): an egress policy needs a bridge port on the host, this driver has none")]
    EgressUnsupported {
        /// The network.
        network: String,
        /// Its driver.
        driver: String,
    },
    /// A driver created an endpoint link that is not where it should be.
    #[error("driver {driver}: link {ifname:?} was not found in the sandbox after connect")]
    LinkMissing {
        /// The driver.
        driver: String,
        /// The link name expected in the sandbox.
        ifname: String,
    },
    /// A user-provided driver failed with an error of its own.
    #[error("driver {driver}: {op}: {source}")]
    Driver {
        /// The driver.
        driver: String,
        /// What it was doing.
        op: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A step failed and undoing what was already done failed too.
    #[error("{cause} (cleanup after the failure also failed: {})", Errors(.cleanup))]
    Cleanup {
        /// The failure.
        cause: Box<Error>,
        /// What failed while undoing.
        cleanup: Vec<Error>,
    },
    /// Tearing something down failed; every step was still attempted.
    #[error("removing {what}: {}", Errors(.errors))]
    Teardown {
        /// What was being removed (`network NAME`, `sandbox NAME`, `endpoint ID`).
        what: String,
        /// Every failure, in the order met.
        errors: Vec<Error>,
    },
}

fn host_ip_prefix(ip: &Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(a)) => format!("{a}:"),
        Some(IpAddr::V6(a)) => format!("[{a}]:"),
        None => String::new(),
    }
}

struct Errors<'a>(&'a [Error]);

impl fmt::Display for Errors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Error {
    /// `cause` alone when `cleanup` is empty, else [`Error::Cleanup`].
    pub fn with_cleanup(cause: Error, cleanup: Vec<Error>) -> Error {
        if cleanup.is_empty() { cause } else { Error::Cleanup { cause: Box::new(cause), cleanup } }
    }

    /// `Ok` when `errors` is empty, else [`Error::Teardown`] (a single error is returned as is).
    pub fn teardown(what: impl Into<String>, mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().expect("one error")),
            _ => Err(Error::Teardown { what: what.into(), errors }),
        }
    }

    /// The OS error number behind this error, if there is one: a failed system call or file
    /// operation, a kernel's netlink answer, `nft` that could not be started — looking through
    /// [`Error::Cleanup`]'s cause and the lower layers' errors.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Netlink(e) => e.raw_os_error(),
            Error::Ipam(e) => e.raw_os_error(),
            Error::Firewall(e) => e.raw_os_error(),
            Error::Files(e) => e.raw_os_error(),
            Error::Namespace(e) => e.raw_os_error(),
            Error::UserNet(e) => e.raw_os_error(),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Teardown { errors, .. } => errors.iter().find_map(Error::raw_os_error),
            Error::Driver { source, .. } => {
                source.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error)
            }
            _ => None,
        }
    }

    /// The validation error, if this is bad input ([`Error::Invalid`]).
    pub fn validation(&self) -> Option<&ValidationError> {
        match self {
            Error::Invalid(v) => Some(v),
            _ => None,
        }
    }
}

impl From<crate::usernet::UserNetError> for Error {
    fn from(e: crate::usernet::UserNetError) -> Error {
        Error::UserNet(Box::new(e))
    }
}

impl From<NetlinkError> for Error {
    fn from(e: NetlinkError) -> Error {
        match e {
            NetlinkError::Invalid(v) => Error::Invalid(v),
            e => Error::Netlink(e),
        }
    }
}

impl From<IpamError> for Error {
    fn from(e: IpamError) -> Error {
        match e {
            IpamError::Invalid(v) => Error::Invalid(v),
            e => Error::Ipam(e),
        }
    }
}

impl From<FirewallError> for Error {
    fn from(e: FirewallError) -> Error {
        match e {
            FirewallError::Invalid(v) => Error::Invalid(v),
            e => Error::Firewall(e),
        }
    }
}

impl From<FilesError> for Error {
    fn from(e: FilesError) -> Error {
        match e {
            FilesError::Invalid(v) => Error::Invalid(v),
            e => Error::Files(e),
        }
    }
}

pub(crate) fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

/// A failed system call or file operation on its way into a crate error's `Sys` variant
/// (every error type of this crate converts it with `From`, so `?` picks the right one).
#[derive(Debug)]
pub(crate) struct SysError {
    pub(crate) call: &'static str,
    pub(crate) path: Option<PathBuf>,
    pub(crate) source: std::io::Error,
}

impl SysError {
    /// `call` on `path` failed with `source`.
    pub(crate) fn at(call: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> SysError {
        SysError { call, path: Some(path.into()), source }
    }
}

impl From<SysError> for Error {
    fn from(e: SysError) -> Error {
        Error::Sys { call: e.call, path: e.path, source: e.source }
    }
}

impl From<nook_ns::statefile::FileError> for SysError {
    fn from(e: nook_ns::statefile::FileError) -> SysError {
        SysError { call: e.call, path: Some(e.path), source: e.source }
    }
}

/// Context for a failed system call, instead of a hand-written `map_err` closure:
/// `file.sync_all().sys_at("fsync", &path)?`.
pub(crate) trait SysContext<T> {
    /// The error as a failed `call`.
    fn sys(self, call: &'static str) -> Result<T, SysError>;
    /// The error as a failed `call` on `path`.
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T, SysError>;
}

impl<T> SysContext<T> for std::result::Result<T, std::io::Error> {
    fn sys(self, call: &'static str) -> Result<T, SysError> {
        self.map_err(|source| SysError { call, path: None, source })
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T, SysError> {
        self.map_err(|source| SysError { call, path: Some(path.into()), source })
    }
}

impl<T> SysContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn sys(self, call: &'static str) -> Result<T, SysError> {
        self.map_err(std::io::Error::from).sys(call)
    }

    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T, SysError> {
        self.map_err(std::io::Error::from).sys_at(call, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(value: u32) -> Error {
        ValidationError::Mtu { field: "mtu", value, min: 68, max: 65_535 }.into()
    }

    #[test]
    fn messages_carry_context() {
        assert_eq!(invalid(20).to_string(), "invalid mtu 20: must be in 68..=65535");
        let e = Error::NetworkInUse { network: "nk-a".into(), endpoints: vec!["s1/ab".into(), "s2/cd".into()] };
        assert_eq!(e.to_string(), "network nk-a is in use by 2 endpoint(s): s1/ab, s2/cd");
        let e = Error::PortInUse { protocol: Protocol::Tcp, host_ip: Some("::1".parse().unwrap()), host_port: 80 };
        assert_eq!(e.to_string(), "host port [::1]:80/Tcp is already published");
        let e = Error::with_cleanup(invalid(1), vec![invalid(2)]);
        assert_eq!(
            e.to_string(),
            "invalid mtu 1: must be in 68..=65535 (cleanup after the failure also failed: invalid mtu 2: must be in \
             68..=65535)"
        );
        assert!(matches!(Error::with_cleanup(invalid(1), vec![]), Error::Invalid(_)));
        assert!(Error::teardown("x", vec![]).is_ok());
        let e: Error = std::fs::read("/nonexistent/nk").sys_at("read", "/nonexistent/nk").unwrap_err().into();
        assert_eq!(e.to_string(), "read /nonexistent/nk: No such file or directory (os error 2)");
    }

    #[test]
    fn raw_os_error_looks_through_layers() {
        let sys = || SysError { call: "open", path: None, source: std::io::Error::from_raw_os_error(libc::EACCES) };
        let e = Error::with_cleanup(Error::Ipam(sys().into()), vec![]);
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        let e = Error::with_cleanup(Error::Netlink(sys().into()), vec![invalid(1)]);
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        assert_eq!(Error::from(FilesError::from(sys())).raw_os_error(), Some(libc::EACCES));
        assert_eq!(invalid(1).raw_os_error(), None);
        // A lower layer's validation error becomes Error::Invalid.
        let v = ValidationError::PortZero { field: "host_port" };
        assert!(matches!(Error::from(FirewallError::from(v)), Error::Invalid(ValidationError::PortZero { .. })));
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
