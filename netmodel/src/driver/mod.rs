//! Network drivers: what builds a network on the host and the link of each endpoint.
//!
//! Three are built in: [`Driver::Bridge`] ([`BridgeDriver`], [`BridgeOptions`]),
//! [`Driver::Macvlan`] ([`MacvlanDriver`], [`MacvlanOptions`]) and [`Driver::Overlay`]
//! ([`OverlayDriver`], [`OverlayOptions`]: VXLAN across hosts). Each is one file holding the
//! driver, its option type (serde, defaults, validation, and the names it derives) and their
//! unit tests; this module only maps the [`Driver`] enum to them, one line per driver in each
//! `match`. A new built-in driver is a new file plus one variant. Implement [`NetworkDriver`]
//! and use [`Driver::Custom`] to add your own without touching the crate.
//!
//! The model does the common work around a driver: it validates, registers the subnets with
//! IPAM, allocates addresses, and — once the driver has created the endpoint's link inside
//! the sandbox — configures addresses, brings the link up and installs the default routes
//! through the sandbox's own netlink socket. When an endpoint leaves a live sandbox the model
//! also takes the link away (see [`crate::Sandbox::disconnect`]); when a sandbox ends, its
//! links die with its namespace. A driver only creates links and host-side objects.

mod bridge;
mod macvlan;
mod overlay;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use nook_ns::NsFd;
use serde::{Deserialize, Serialize};

pub use bridge::{BridgeDriver, BridgeOptions};
pub use macvlan::{MacvlanDriver, MacvlanOptions};
pub use overlay::{
    OverlayDriver, OverlayEntries, OverlayOptions, RemoteEndpoint, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6,
};

use crate::error::{Error, Result};
use crate::firewall::{FirewallConflict, PortRule};
use crate::host::Host;
use crate::spec::NetworkSpec;
use crate::validation::ValidationError;

/// Which driver builds the network, with its options.
///
/// Serialized with the driver's name as `"type"` beside its options:
/// `{"type": "bridge", "bridge": "nkbr0"}`, `{"type": "macvlan", "parent": "eth0", "mode": "bridge"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
#[non_exhaustive]
pub enum Driver {
    /// A Linux bridge in the host namespace ([`BridgeDriver`]).
    Bridge(BridgeOptions),
    /// Macvlan links on an existing parent link of the host ([`MacvlanDriver`]).
    Macvlan(MacvlanOptions),
    /// A bridge joined to the other hosts' by VXLAN ([`OverlayDriver`]).
    Overlay(OverlayOptions),
    /// A driver of your own (not serializable).
    #[serde(skip)]
    Custom(Arc<dyn NetworkDriver>),
}

impl PartialEq for Driver {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Driver::Bridge(a), Driver::Bridge(b)) => a == b,
            (Driver::Macvlan(a), Driver::Macvlan(b)) => a == b,
            (Driver::Overlay(a), Driver::Overlay(b)) => a == b,
            (Driver::Custom(a), Driver::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Driver {
    /// The driver's name (`"bridge"`, `"macvlan"`, or the custom driver's).
    pub fn name(&self) -> &str {
        match self {
            Driver::Bridge(_) => BridgeDriver::NAME,
            Driver::Macvlan(_) => MacvlanDriver::NAME,
            Driver::Overlay(_) => OverlayDriver::NAME,
            Driver::Custom(d) => d.name(),
        }
    }

    /// The pure checks of a built-in driver's options (a custom driver's
    /// [`NetworkDriver::validate`] runs after the generic checks of the spec).
    pub(crate) fn validate_options(&self) -> Result<(), ValidationError> {
        match self {
            Driver::Bridge(options) => options.validate(),
            Driver::Macvlan(options) => options.validate(),
            // With the spec (its subnets need ranges): OverlayOptions::validate_spec.
            Driver::Overlay(_) | Driver::Custom(_) => Ok(()),
        }
    }

    /// The driver that builds networks of this kind: a new built-in one, or the custom one.
    pub(crate) fn instance(&self) -> Arc<dyn NetworkDriver> {
        match self {
            Driver::Bridge(_) => Arc::new(BridgeDriver::new()),
            Driver::Macvlan(_) => Arc::new(MacvlanDriver::new()),
            Driver::Overlay(_) => Arc::new(OverlayDriver::new()),
            Driver::Custom(d) => Arc::clone(d),
        }
    }

    /// Fills in the names a built-in driver derives from the network's name (a bridge
    /// network's default bridge name, an overlay's bridge and VXLAN device).
    pub(crate) fn resolve(&mut self, network: &str) {
        match self {
            Driver::Bridge(options) => options.resolve(network),
            Driver::Overlay(options) => options.resolve(network),
            Driver::Macvlan(_) | Driver::Custom(_) => {}
        }
    }
}

/// What a driver is given to create one endpoint's link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The endpoint's id (64 hex digits).
    pub id: String,
    /// The name the link must have inside the sandbox (`eth0`, ...).
    pub ifname: String,
    /// A free name for a host-side link, if the driver makes one (`nk` + 12 hex digits).
    pub host_ifname: String,
    /// The addresses IPAM allocated (with the subnet prefix). The model configures them.
    pub addresses: Vec<IpNet>,
    /// The gateways of those addresses' subnets, in the same order.
    pub gateways: Vec<IpAddr>,
    /// MAC address for the sandbox-side link (`None`: random).
    pub mac: Option<[u8; 6]>,
    /// MTU for the links (`None`: the kernel's default).
    pub mtu: Option<u32>,
}

/// What a driver created for an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointLink {
    /// The host-side link's name, if there is one (the bridge end of a veth pair).
    pub host_ifname: Option<String>,
    /// Its index in the host namespace.
    pub host_index: Option<u32>,
}

impl EndpointLink {
    /// A link with a host side.
    pub fn with_host_side(name: impl Into<String>, index: Option<u32>) -> EndpointLink {
        EndpointLink { host_ifname: Some(name.into()), host_index: index }
    }

    /// A link that lives only in the sandbox (macvlan, ...).
    pub fn sandbox_only() -> EndpointLink {
        EndpointLink::default()
    }
}

/// A network driver.
///
/// Every method gets the network's *resolved* spec (the one
/// [`Network::spec`](crate::Network::spec) returns: gateways filled in, bridge named).
/// Methods may be called from several threads at once, for different endpoints.
pub trait NetworkDriver: Send + Sync + fmt::Debug {
    /// A short name for messages (`"bridge"`, `"macvlan"`, ...).
    fn name(&self) -> &str;

    /// Pure checks of the spec, beyond the generic ones (run by [`NetworkSpec::validate`]).
    ///
    /// A driver of your own reports what it refuses as [`ValidationError::Driver`].
    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        let _ = spec;
        Ok(())
    }

    /// Read-only checks against the host, before anything is changed (a parent link exists,
    /// a bridge name is free, ...).
    fn check_host(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let _ = (host, spec);
        Ok(())
    }

    /// Read-only checks that what [`NetworkDriver::setup`] built (maybe in another process)
    /// is there, before [`crate::Network::open`] attaches to it. Default: nothing to check.
    fn check_built(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let _ = (host, spec);
        Ok(())
    }

    /// Builds the network on the host. On failure it must leave nothing behind.
    fn setup(&self, host: &Host, spec: &NetworkSpec) -> Result<()>;

    /// Removes what [`NetworkDriver::setup`] built; keeps going on errors and reports them all.
    fn teardown(&self, host: &Host, spec: &NetworkSpec) -> Result<()>;

    /// Creates the endpoint's link inside `sandbox` (a network namespace), named
    /// `endpoint.ifname`, left down and without addresses (the model configures it). On
    /// failure it must leave nothing behind.
    fn connect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        sandbox: &NsFd,
        endpoint: &EndpointConfig,
    ) -> Result<EndpointLink>;

    /// Removes host-side state of an endpoint other than its link (the link itself is taken
    /// care of by the model). Default: nothing.
    fn disconnect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        endpoint: &EndpointConfig,
        link: &EndpointLink,
    ) -> Result<()> {
        let _ = (host, spec, endpoint, link);
        Ok(())
    }

    /// Publishes ports of an endpoint. Default: refuses any port.
    ///
    /// If it fails, the model calls [`NetworkDriver::unpublish`] for the endpoint (unless the
    /// error is a refusal: [`Error::Invalid`] or a firewall refusal,
    /// [`crate::firewall::FirewallError::is_refusal`]), so rules added before the failure are
    /// removed.
    fn publish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str, ports: &[PortRule]) -> Result<()> {
        let _ = (host, endpoint);
        if ports.is_empty() {
            return Ok(());
        }
        Err(Error::PortsUnsupported { network: spec.name.to_string(), driver: self.name().to_owned(), internal: false })
    }

    /// Whether [`NetworkDriver::publish`] can publish ports on this network (checked before
    /// anything is changed). Default: no.
    fn publishes_ports(&self, spec: &NetworkSpec) -> bool {
        let _ = spec;
        false
    }

    /// What in other software's firewall still drops the network's forwarded traffic
    /// ([`crate::Network::diagnostics`]). Default: nothing.
    fn diagnostics(&self, host: &Host, spec: &NetworkSpec) -> Result<Vec<FirewallConflict>> {
        let _ = (host, spec);
        Ok(Vec::new())
    }

    /// Removes the ports published for `endpoint`; succeeds when there are none. Default:
    /// nothing. While it fails, the endpoint's addresses are not given back to IPAM.
    fn unpublish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str) -> Result<()> {
        let _ = (host, spec, endpoint);
        Ok(())
    }
}
