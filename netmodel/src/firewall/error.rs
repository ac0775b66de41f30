//! The firewall's error type.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::Protocol;
#[cfg(doc)]
use super::{NftNetlink, Nftables};
use crate::error::SysError;
use crate::validation::ValidationError;

/// A firewall failure.
///
/// [`FirewallError::Invalid`] and the variants up to [`FirewallError::InternalNetwork`] are refusals: nothing was changed
/// ([`FirewallError::is_refusal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// Bad input: a port, an address, a name (network, endpoint, bridge, table), a subnet
    /// with host bits.
    #[error("firewall: {0}")]
    Invalid(#[from] ValidationError),
    /// A port's container address is of a family the network has no subnet of.
    #[error("firewall: network {network:?} has no {} subnet for container address {container_ip}", family(*.container_ip))]
    FamilyNotInNetwork {
        /// The network.
        network: String,
        /// The container address given.
        container_ip: IpAddr,
    },
    /// The host port is already published by nook (same protocol and family, same or
    /// overlapping host address), or twice in one request.
    #[error("firewall: {protocol} port {} is already published (by endpoint {holder:?})", host(*.host_ip, *.host_port))]
    PortConflict {
        /// Protocol.
        protocol: Protocol,
        /// The host address asked for (`None`: any).
        host_ip: Option<IpAddr>,
        /// The host port asked for.
        host_port: u16,
        /// The endpoint that holds it.
        holder: String,
    },
    /// Ports were asked for on a network that is not set up.
    #[error("firewall: network {network:?} is not set up")]
    UnknownNetwork {
        /// The network.
        network: String,
    },
    /// The network is already set up with other parameters (bridge, subnets, internal).
    #[error("firewall: network {network:?} is already set up with other parameters (tear it down first)")]
    NetworkExists {
        /// The network.
        network: String,
    },
    /// Ports cannot be published on an internal network (it has no way in from outside).
    #[error("firewall: network {network:?} is internal: ports cannot be published on it")]
    InternalNetwork {
        /// The network.
        network: String,
    },
    /// The backend does not implement this operation (egress policies on a backend of
    /// your own that does not provide them).
    #[error("firewall: this backend does not support {op}")]
    Unsupported {
        /// The operation (`"egress policies"`).
        op: &'static str,
    },
    /// `nft` could not be run (not installed, or a pipe failed).
    #[error("firewall: {op} {target}: cannot run {}: {source}", program.display())]
    NftSpawn {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The program (install the `nftables` package if it is missing).
        program: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` failed.
    #[error("firewall: {op} {target}: `{} {command}` failed ({status}): {stderr}", program.display())]
    Nft {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The program.
        program: PathBuf,
        /// Its arguments.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `nft`'s JSON could not be read (or a batch could not be encoded).
    #[error("firewall: {op} {target}: nft JSON: {source}")]
    Json {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A request to nf_tables over netlink failed (the [`NftNetlink`] backend): the kernel
    /// refused it (`source` carries the errno), the socket failed, or an answer could not be
    /// read (`InvalidData`).
    #[error("firewall: {op} {target}: nf_tables netlink {request}: {source}")]
    Netlink {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The request (`add rule inet nook nk-web-pre`, `dump rules`, `socket`, ...).
        request: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A system call or file operation failed (a sysctl under `/proc/sys` could not be
    /// read or written).
    #[error("firewall: {call}{}: {source}", path.as_deref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Sys {
        /// The call (`"read"`, `"write"`).
        call: &'static str,
        /// The file.
        path: Option<PathBuf>,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The backend's network namespace could not be entered (or captured, in
    /// [`Nftables::new`]).
    #[error("firewall: {op} {target}: network namespace: {source}")]
    Namespace {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The error.
        #[source]
        source: nook_ns::Error,
    },
    /// The table's lock could not be taken.
    #[error("firewall: cannot lock table {table}: {source}")]
    Lock {
        /// The table.
        table: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another operation held the table's lock too long.
    #[error("firewall: table {table} is still locked by another operation after {waited:?}")]
    LockTimeout {
        /// The table.
        table: String,
        /// How long this operation waited.
        waited: Duration,
    },
    /// An operation failed and undoing its first part failed too.
    #[error("{cause}; undoing it failed too: {cleanup}")]
    Cleanup {
        /// Why the operation failed.
        cause: Box<FirewallError>,
        /// Why the cleanup failed (some rules or settings may remain).
        cleanup: Box<FirewallError>,
    },
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { "IPv6" } else { "IPv4" }
}

fn host(ip: Option<IpAddr>, port: u16) -> String {
    match ip {
        None => format!("*:{port}"),
        Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
    }
}

impl From<SysError> for FirewallError {
    fn from(e: SysError) -> FirewallError {
        FirewallError::Sys { call: e.call, path: e.path, source: e.source }
    }
}

impl FirewallError {
    /// The OS error number behind this error, if there is one (a failed file operation, `nft`
    /// that could not be run, a netlink request, the lock, the namespace).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FirewallError::Sys { source, .. }
            | FirewallError::NftSpawn { source, .. }
            | FirewallError::Netlink { source, .. }
            | FirewallError::Lock { source, .. } => source.raw_os_error(),
            FirewallError::Namespace { source, .. } => source.raw_os_error(),
            FirewallError::Cleanup { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel (or `nft`, by its message) answered `errno`.
    pub(crate) fn is_errno(&self, errno: i32) -> bool {
        if self.raw_os_error() == Some(errno) {
            return true;
        }
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        matches!(self, FirewallError::Nft { stderr, .. } if stderr.contains(text))
    }

    /// Whether the request was refused before anything was changed (bad input, a port
    /// already published, a network unknown, internal or set up differently).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FirewallError::Invalid(_)
                | FirewallError::FamilyNotInNetwork { .. }
                | FirewallError::PortConflict { .. }
                | FirewallError::UnknownNetwork { .. }
                | FirewallError::NetworkExists { .. }
                | FirewallError::InternalNetwork { .. }
                | FirewallError::Unsupported { .. }
        )
    }
}
