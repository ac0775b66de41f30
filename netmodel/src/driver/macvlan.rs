//! The macvlan driver: each endpoint is a macvlan link on a host parent link, created
//! directly inside the sandbox.

use std::os::fd::AsFd;

use nook_ns::NsFd;

use super::{EndpointConfig, EndpointLink, NetworkDriver};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::ifname::IfName;
use crate::netlink::{LinkKind, NewLink};
use serde::{Deserialize, Serialize};

use super::Driver;
use crate::netlink::MacvlanMode;
use crate::spec::NetworkSpec;
use crate::validation::ValidationError;

/// The options of a macvlan network ([`Driver::Macvlan`]).
///
/// ```
/// use nook_netmodel::MacvlanMode;
/// use nook_netmodel::driver::MacvlanOptions;
///
/// let mut options = MacvlanOptions::new("eth0");
/// options.mode(MacvlanMode::Private);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MacvlanOptions {
    /// The parent link in the host namespace (an interface name, [`IfName`]).
    pub parent: String,
    /// The macvlan mode (Docker's default: bridge).
    #[serde(default = "default_mode")]
    pub mode: MacvlanMode,
}

fn default_mode() -> MacvlanMode {
    MacvlanMode::Bridge
}

impl MacvlanOptions {
    /// Macvlans on `parent`, in bridge mode.
    pub fn new(parent: impl Into<String>) -> MacvlanOptions {
        MacvlanOptions { parent: parent.into(), mode: default_mode() }
    }

    /// Sets the mode.
    pub fn mode(&mut self, mode: MacvlanMode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// The parent is an interface name ([`IfName`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        IfName::for_field("parent", self.parent.as_str()).map(drop)
    }
}

/// `docker network create --driver macvlan -o parent=LINK`.
///
/// Nothing is built on the host: no bridge, no NAT, no published ports. The parent must exist
/// (checked before anything is changed); each endpoint is one `RTM_NEWLINK` creating a macvlan
/// of the parent straight inside the sandbox under its final name. Sandboxes get a default
/// route through the subnet's gateway (a router on the parent's segment) unless the network is
/// `internal`. As with Docker, the host itself cannot reach its macvlan endpoints through the
/// parent (the kernel does not loop macvlan traffic back to the parent).
#[derive(Debug, Default)]
pub struct MacvlanDriver;

impl MacvlanDriver {
    /// The driver's name.
    pub const NAME: &'static str = "macvlan";

    /// The driver.
    pub fn new() -> MacvlanDriver {
        MacvlanDriver
    }

    fn options(spec: &NetworkSpec) -> Result<&MacvlanOptions, ValidationError> {
        match &spec.driver {
            Driver::Macvlan(options) => Ok(options),
            other => Err(ValidationError::WrongDriver { driver: MacvlanDriver::NAME, found: other.name().to_owned() }),
        }
    }

    fn parent_index(host: &Host, spec: &NetworkSpec) -> Result<u32> {
        let parent = &MacvlanDriver::options(spec)?.parent;
        match host.netlink().link(parent)? {
            Some(link) => Ok(link.index),
            None => Err(Error::UnknownParent { network: spec.name.to_string(), parent: parent.clone() }),
        }
    }
}

impl NetworkDriver for MacvlanDriver {
    fn name(&self) -> &str {
        MacvlanDriver::NAME
    }

    /// [`MacvlanOptions::validate`].
    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        MacvlanDriver::options(spec)?.validate()
    }

    fn check_host(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        MacvlanDriver::parent_index(host, spec).map(drop)
    }

    /// The parent link is still there.
    fn check_built(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        self.check_host(host, spec)
    }

    fn setup(&self, _host: &Host, _spec: &NetworkSpec) -> Result<()> {
        Ok(())
    }

    fn teardown(&self, _host: &Host, _spec: &NetworkSpec) -> Result<()> {
        Ok(())
    }

    fn connect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        sandbox: &NsFd,
        endpoint: &EndpointConfig,
    ) -> Result<EndpointLink> {
        let mode = MacvlanDriver::options(spec)?.mode;
        let parent = MacvlanDriver::parent_index(host, spec)?;
        let mut link = NewLink::new(&endpoint.ifname, LinkKind::Macvlan { parent, mode });
        link.netns = Some(sandbox.as_fd());
        link.mtu = endpoint.mtu;
        link.mac = endpoint.mac;
        host.netlink().add_link(&link)?;
        Ok(EndpointLink::sandbox_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_its_own_options() {
        let d = MacvlanDriver::new();
        assert!(d.validate(&NetworkSpec::macvlan("nk-m".parse().unwrap(), "eth0")).is_ok());
        for bad in ["", "a:1", "a b", "0123456789abcdef"] {
            let e = d.validate(&NetworkSpec::macvlan("nk-m".parse().unwrap(), bad)).unwrap_err();
            assert!(matches!(e, ValidationError::IfName { field: "parent", .. }), "{bad:?}: {e}");
        }
        let e = d.validate(&NetworkSpec::bridge("nk-b".parse().unwrap())).unwrap_err();
        assert!(matches!(e, ValidationError::WrongDriver { driver: "macvlan", .. }), "{e}");
    }
}
