//! User-mode networking of a sandbox ([`crate::NetworkMode::UserNet`]): the connectivity of
//! an unprivileged caller's sandbox, through `pasta` or `slirp4netns`.
//!
//! The sandbox's init is cloned, paused, into its new user and network namespaces; while it
//! waits, [`nook_netmodel::usernet::UserNet::start`] runs the helper for its network
//! namespace and returns once the tap device is configured (address, default route) and the
//! published ports listen in the caller's namespace. Then the child is released: the
//! program starts with its network up. The [`crate::Sandbox`] owns the helper: it is killed
//! (SIGKILL through its pidfd) and reaped when the run ends, on [`crate::Sandbox::remove`]
//! and on drop, and it dies with the caller's process (parent-death signal; slirp4netns
//! also exits when its exit pipe closes), so a user-mode network needs no owner record.
//!
//! Running a helper program is the one place where the facade starts a process that is not
//! the sandbox's: pasta and slirp4netns are not configuration tools whose work a syscall
//! could do, they are the network stack itself (TCP/IP in user space, forwarding the
//! sandbox's connections as the caller's sockets), as for rootless Podman and Docker.
//!
//! Needs `/dev/net/tun` usable by the caller (mode 0666, as udev makes it), a helper on
//! `PATH` (or [`nook_netmodel::usernet::UserNetSpec::program`]), and for pasta a default
//! route in the caller's namespace. Missing pieces are typed errors:
//! [`nook_netmodel::usernet::UserNetError::NotFound`] names the programs looked for and
//! where.

use nook_netmodel::usernet::{UserNet, UserNetSpec};

use crate::error::{Error, Result};

/// Starts the helper for the (paused) process `pid`'s network namespace.
pub(crate) fn start(spec: &UserNetSpec, pid: u32) -> Result<UserNet> {
    UserNet::start(spec, pid).map_err(|e| Error::Netmodel(e.into()))
}

/// Stops the helper (killed and reaped); its error, if any.
pub(crate) fn stop(net: UserNet) -> Option<Error> {
    net.remove().err().map(|e| Error::Netmodel(e.into()))
}

#[cfg(test)]
mod tests {
    use nook_netmodel::firewall::PortMapping;
    use nook_netmodel::usernet::UserNetBackend;
    use nook_ns::{Namespace, NamespaceSet};

    use super::*;
    use crate::{NetworkMode, SandboxSpec, ValidationError};

    fn spec(net: UserNetSpec) -> SandboxSpec {
        SandboxSpec { args: vec!["/bin/true".into()], network: NetworkMode::UserNet(net), ..Default::default() }
    }

    #[test]
    fn a_user_net_spec_gets_a_network_namespace_validates_and_round_trips() {
        let mut net = UserNetSpec::new();
        net.backend(UserNetBackend::Slirp4netns).port(PortMapping::tcp(8080, 80));
        let s = spec(net.clone());
        assert!(s.effective_namespaces().has(Namespace::Net));
        s.validate().unwrap();
        let json = serde_json::to_string(&s.network).unwrap();
        assert!(json.starts_with(r#"{"user_net":"#), "{json}");
        assert_eq!(serde_json::from_str::<NetworkMode>(&json).unwrap(), s.network);
        // No network namespace of its own: refused.
        let mut s = spec(net.clone());
        s.namespaces = Some(NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid).with(Namespace::User));
        assert!(matches!(
            s.validate(),
            Err(ValidationError::NamespaceConflict { namespace: Namespace::Net, present: false, .. })
        ));
        // A bad port: refused before anything runs.
        net.port(PortMapping::tcp(0, 80));
        assert!(matches!(spec(net).validate(), Err(ValidationError::UserNet { .. })));
    }
}
