//! The macvlan driver: each endpoint is a macvlan link on a host parent link, created
//! directly inside the sandbox.

use std::os::fd::AsFd;

use nook_ns::NsFd;

use super::{EndpointConfig, EndpointLink, NetworkDriver};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::ifname::IfName;
use crate::netlink::{LinkKind, NewLink};
use crate::spec::{Driver, NetworkSpec};
use crate::validation::ValidationError;

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
    /// The driver.
    pub fn new() -> MacvlanDriver {
        MacvlanDriver
    }

    fn parent_index(host: &Host, spec: &NetworkSpec) -> Result<u32> {
        let Driver::Macvlan { parent, .. } = &spec.driver else {
            return Err(wrong_driver(spec).into());
        };
        match host.netlink().link(parent)? {
            Some(link) => Ok(link.index),
            None => Err(Error::UnknownParent { network: spec.name.clone(), parent: parent.clone() }),
        }
    }
}

impl NetworkDriver for MacvlanDriver {
    fn name(&self) -> &str {
        "macvlan"
    }

    /// The parent is an interface name ([`crate::IfName`]).
    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        let Driver::Macvlan { parent, .. } = &spec.driver else {
            return Err(wrong_driver(spec));
        };
        IfName::for_field("parent", parent.as_str()).map(drop)
    }

    fn check_host(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        MacvlanDriver::parent_index(host, spec).map(drop)
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
        let Driver::Macvlan { mode, .. } = &spec.driver else {
            return Err(wrong_driver(spec).into());
        };
        let parent = MacvlanDriver::parent_index(host, spec)?;
        let mut link = NewLink::new(&endpoint.ifname, LinkKind::Macvlan { parent, mode: *mode });
        link.netns = Some(sandbox.as_fd());
        link.mtu = endpoint.mtu;
        link.mac = endpoint.mac;
        host.netlink().add_link(&link)?;
        Ok(EndpointLink::sandbox_only())
    }
}

fn wrong_driver(spec: &NetworkSpec) -> ValidationError {
    ValidationError::WrongDriver { driver: "macvlan", found: spec.driver.name().to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_its_own_options() {
        let d = MacvlanDriver::new();
        assert!(d.validate(&NetworkSpec::macvlan("nk-m", "eth0")).is_ok());
        for bad in ["", "a:1", "a b", "0123456789abcdef"] {
            let e = d.validate(&NetworkSpec::macvlan("nk-m", bad)).unwrap_err();
            assert!(matches!(e, ValidationError::IfName { field: "parent", .. }), "{bad:?}: {e}");
        }
        let e = d.validate(&NetworkSpec::bridge("nk-b")).unwrap_err();
        assert!(matches!(e, ValidationError::WrongDriver { driver: "macvlan", .. }), "{e}");
    }
}
