//! The crate-level [`Error`]: every failure of the network model, with context.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::files::FilesError;
use crate::firewall::{FirewallError, Protocol};
use crate::ipam::IpamError;
use crate::netlink::NetlinkError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `nook-netmodel`.
///
/// Validation variants ([`Error::InvalidSpec`], [`Error::UnknownParent`], [`Error::LinkExists`],
/// [`Error::PortInUse`], ...) are returned before anything is changed. The lower layers' errors
/// are wrapped whole; match on them through their own types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An rtnetlink request failed (links, addresses, routes).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// IP address management failed (including its validation of subnets and addresses).
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The firewall backend failed (including its validation of port mappings).
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A host name, alias, search domain or resolver option is invalid, or a
    /// `resolv.conf` could not be read.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// Creating, opening or removing a network namespace failed.
    #[error("network namespace: {0}")]
    Namespace(#[from] nook_ns::Error),
    /// Reading a host file (`/etc/hosts`, the host name) failed.
    #[error("reading {path}: {source}")]
    HostFile {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A field of a spec or of endpoint options is invalid (nothing was changed).
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidSpec {
        /// The field, e.g. `"name"`, `"subnets"`, `"mtu"`, `"ip"`.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The network still has endpoints attached.
    #[error("network {network} is in use by {} endpoint(s): {}", .endpoints.len(), .endpoints.join(", "))]
    NetworkInUse {
        /// The network.
        network: String,
        /// Its endpoints (as `sandbox/endpoint-id`).
        endpoints: Vec<String>,
    },
    /// A macvlan network's parent link does not exist in the host namespace.
    #[error("network {network}: parent link {parent:?} does not exist in the host namespace")]
    UnknownParent {
        /// The network.
        network: String,
        /// The missing parent.
        parent: String,
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
    #[error("network {network} ({driver}) cannot publish ports: {reason}")]
    PortsUnsupported {
        /// The network.
        network: String,
        /// Its driver.
        driver: String,
        /// Why.
        reason: &'static str,
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
    /// A thread could not be started.
    #[error("cannot {op}: {source}")]
    Thread {
        /// What the thread was for.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
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

    pub(crate) fn invalid(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Error {
        Error::InvalidSpec { field, value: value.to_string(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_context() {
        let e = Error::invalid("mtu", 20, "below 68");
        assert_eq!(e.to_string(), "invalid mtu \"20\": below 68");
        let e = Error::NetworkInUse { network: "nk-a".into(), endpoints: vec!["s1/ab".into(), "s2/cd".into()] };
        assert_eq!(e.to_string(), "network nk-a is in use by 2 endpoint(s): s1/ab, s2/cd");
        let e = Error::PortInUse { protocol: Protocol::Tcp, host_ip: Some("::1".parse().unwrap()), host_port: 80 };
        assert_eq!(e.to_string(), "host port [::1]:80/Tcp is already published");
        let e = Error::with_cleanup(Error::invalid("a", 1, "x"), vec![Error::invalid("b", 2, "y")]);
        assert_eq!(e.to_string(), "invalid a \"1\": x (cleanup after the failure also failed: invalid b \"2\": y)");
        assert!(matches!(Error::with_cleanup(Error::invalid("a", 1, "x"), vec![]), Error::InvalidSpec { .. }));
        assert!(Error::teardown("x", vec![]).is_ok());
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
