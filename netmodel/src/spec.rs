//! [`NetworkSpec`]: pure data (serde) describing a network, validated before anything is
//! changed.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::driver::{BridgeOptions, Driver, MacvlanOptions, NetworkDriver, OverlayOptions};
use crate::ipam::Pool;
use crate::name::NetworkName;
use crate::netlink::MacvlanMode;
use crate::util::pool_gateway;
use crate::validation::ValidationError;

/// The smallest MTU the kernel accepts for IPv4.
pub const MIN_MTU: u32 = 68;
/// The smallest MTU IPv6 works with.
pub const MIN_MTU_V6: u32 = 1280;
/// The largest MTU accepted.
pub const MAX_MTU: u32 = 65_535;

/// A network to create.
///
/// ```
/// use nook_netmodel::NetworkSpec;
///
/// let mut spec = NetworkSpec::bridge("nk-web".parse().unwrap());
/// spec.subnet("10.88.0.0/24".parse().unwrap(), None).mtu(1400);
/// assert!(spec.validate().is_ok());
///
/// spec.subnet("10.88.0.128/25".parse().unwrap(), None); // overlaps the first
/// assert!(spec.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkSpec {
    /// The network's name ([`NetworkName`]: it names IPAM's state file and the firewall's
    /// chains); unique on the host (IPAM refuses a second network of the same name).
    pub name: NetworkName,
    /// The driver.
    pub driver: Driver,
    /// Its subnets (IPv4 and/or IPv6), each with an optional gateway (default: the first
    /// host address). None: for a built-in driver, one IPv4 subnet is chosen when the network
    /// is created — the first free one of the host's address pools
    /// ([`crate::HostBuilder::address_pools`], Docker's defaults) overlapping no route of the
    /// host namespace and no other network; a custom driver then works without addresses.
    #[serde(default)]
    pub subnets: Vec<Pool>,
    /// No outbound NAT, no forwarding to or from outside, no default route in sandboxes, no
    /// published ports (`docker network create --internal`).
    #[serde(default)]
    pub internal: bool,
    /// MTU of the bridge and of every endpoint link (default: the kernel's, 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// The name of the default network (`docker run` without `--network`).
pub const DEFAULT_NETWORK: &str = "bridge";
/// The bridge interface of the default network (Docker's is `docker0`).
pub const DEFAULT_BRIDGE: &str = "nook0";
/// The subnet of the default network. Docker's `docker0` uses 172.17.0.0/16; nook takes
/// podman's default instead, so both can live on one host.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

impl NetworkSpec {
    /// The default network, like Docker's `bridge`: named [`DEFAULT_NETWORK`], bridge
    /// [`DEFAULT_BRIDGE`], subnet [`DEFAULT_SUBNET`] with its first address as the gateway,
    /// outbound NAT. As on Docker's default network, its sandboxes are not given each other's
    /// names in `/etc/hosts` (only user-defined networks are; see
    /// [`NetworkSpec::lists_peers`]).
    pub fn default_bridge() -> NetworkSpec {
        let name = NetworkName::new(DEFAULT_NETWORK).expect("DEFAULT_NETWORK is a valid name");
        let mut spec = NetworkSpec::new(name, Driver::Bridge(BridgeOptions::named(DEFAULT_BRIDGE)));
        spec.subnet(DEFAULT_SUBNET.parse().expect("DEFAULT_SUBNET is a valid CIDR"), None);
        spec
    }

    /// Whether sandboxes on this network find each other by name (in `/etc/hosts`): every
    /// network but the default one ([`DEFAULT_NETWORK`]), as with Docker.
    pub fn lists_peers(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }

    /// A spec for `name` built by `driver`, with no subnets yet.
    pub fn new(name: NetworkName, driver: Driver) -> NetworkSpec {
        NetworkSpec { name, driver, subnets: Vec::new(), internal: false, mtu: None }
    }

    /// A bridge network with the default bridge name.
    pub fn bridge(name: NetworkName) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Bridge(BridgeOptions::new()))
    }

    /// A macvlan network (bridge mode) on `parent`.
    pub fn macvlan(name: NetworkName, parent: impl Into<String>) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Macvlan(MacvlanOptions::new(parent)))
    }

    /// An overlay (VXLAN) network's part on this host ([`OverlayOptions`]): add its subnets
    /// with this host's address range ([`NetworkSpec::subnet_range`]).
    pub fn overlay(name: NetworkName, options: OverlayOptions) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Overlay(options))
    }

    /// A network built by your own driver.
    pub fn custom(name: NetworkName, driver: Arc<dyn NetworkDriver>) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Custom(driver))
    }

    /// Adds a subnet (`gateway: None` = the first host address).
    pub fn subnet(&mut self, subnet: IpNet, gateway: Option<IpAddr>) -> &mut Self {
        self.subnets.push(Pool { subnet, gateway, range: None });
        self
    }

    /// Adds a subnet from which this host hands out only `range` (an overlay network's hosts
    /// each take a disjoint range of the shared subnet; [`Pool::range`]).
    pub fn subnet_range(&mut self, subnet: IpNet, gateway: Option<IpAddr>, range: IpNet) -> &mut Self {
        self.subnets.push(Pool { subnet, gateway, range: Some(range) });
        self
    }

    /// Sets `internal`.
    pub fn internal(&mut self, internal: bool) -> &mut Self {
        self.internal = internal;
        self
    }

    /// Sets the MTU.
    pub fn mtu(&mut self, mtu: u32) -> &mut Self {
        self.mtu = Some(mtu);
        self
    }

    /// For a bridge network: names the bridge (no effect on other drivers).
    pub fn bridge_name(&mut self, name: impl Into<String>) -> &mut Self {
        if let Driver::Bridge(options) = &mut self.driver {
            options.bridge(name);
        }
        self
    }

    /// For a macvlan network: sets the mode (no effect on other drivers).
    pub fn macvlan_mode(&mut self, mode: MacvlanMode) -> &mut Self {
        if let Driver::Macvlan(options) = &mut self.driver {
            options.mode(mode);
        }
        self
    }

    /// Whether the network has an IPv4 / IPv6 subnet.
    pub fn has_family(&self, ipv6: bool) -> bool {
        self.subnets.iter().any(|p| p.subnet.addr().is_ipv6() == ipv6)
    }

    /// The gateway of every subnet with the subnet's prefix (what a bridge carries), in
    /// the order of `subnets`.
    pub fn gateway_addresses(&self) -> Vec<IpNet> {
        self.subnets
            .iter()
            .map(|p| IpNet::new(pool_gateway(p), p.subnet.prefix_len()).expect("prefix of a valid subnet"))
            .collect()
    }

    /// The bridge name, when it is a bridge or overlay network and the name is set (it is,
    /// on a spec returned by [`crate::Network::spec`]).
    pub fn bridge_ifname(&self) -> Option<&str> {
        match &self.driver {
            Driver::Bridge(options) => options.bridge.as_deref(),
            Driver::Overlay(options) => options.bridge.as_deref(),
            _ => None,
        }
    }

    /// Checks everything that can be checked without the host (the name is valid by its
    /// type): link names, subnets
    /// (IPAM's pure checks: host bits, size, gateway inside and usable, no overlap between
    /// them), MTU, and the driver's own rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        // A built-in driver's own options (its link names) come before the generic checks; a
        // custom driver's checks after them.
        self.driver.validate_options()?;
        // No subnets: a built-in driver gets one chosen at creation, a custom one does without.
        if !self.subnets.is_empty() {
            crate::ipam::validate_pools(&self.name, &self.subnets)?;
        }
        if let Some(mtu) = self.mtu {
            let min = if self.has_family(true) { MIN_MTU_V6 } else { MIN_MTU };
            if !(min..=MAX_MTU).contains(&mtu) {
                return Err(ValidationError::Mtu { field: "mtu", value: mtu, min, max: MAX_MTU });
            }
        }
        match &self.driver {
            Driver::Custom(d) => d.validate(self)?,
            Driver::Overlay(options) => options.validate_spec(self)?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> NetworkSpec {
        let mut s = NetworkSpec::bridge("nk-t".parse().unwrap());
        s.subnet("10.9.0.0/24".parse().unwrap(), None);
        s
    }

    fn field_of(e: ValidationError) -> &'static str {
        match e {
            ValidationError::IfName { field, .. } | ValidationError::Mtu { field, .. } => field,
            ValidationError::NetworkName { .. } => "name",
            _ => "ipam",
        }
    }

    #[test]
    fn valid_specs() {
        bridge().validate().unwrap();
        let mut s = NetworkSpec::macvlan("nk-m".parse().unwrap(), "eth0");
        s.subnet("192.168.5.0/24".parse().unwrap(), Some("192.168.5.254".parse().unwrap()))
            .subnet("fd00:5::/64".parse().unwrap(), None)
            .mtu(1500)
            .internal(true);
        s.validate().unwrap();
    }

    #[test]
    fn invalid_specs() {
        // The name is checked by its type, also when deserialized.
        let json = r#"{"name":"../x","driver":{"type":"bridge"},"subnets":[]}"#;
        let e = serde_json::from_str::<NetworkSpec>(json).unwrap_err();
        assert!(e.to_string().contains("invalid network name"), "{e}");

        let mut s = bridge();
        s.bridge_name("a-very-long-bridge-name");
        assert_eq!(field_of(s.validate().unwrap_err()), "bridge");

        // Subnet checks are IPAM's (pure, before anything is written).
        // No subnet is fine: one is chosen when the network is created.
        let mut s = bridge();
        s.subnets.clear();
        assert!(s.validate().is_ok());
        let mut s = bridge();
        s.subnets[0].subnet = "10.9.0.1/24".parse().unwrap();
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");
        let mut s = bridge();
        s.subnets[0].gateway = Some("10.9.1.1".parse().unwrap());
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");
        let mut s = bridge();
        s.subnets[0].gateway = Some("10.9.0.255".parse().unwrap());
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");
        let mut s = bridge();
        s.subnet("10.9.0.0/16".parse().unwrap(), None);
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");
        let mut s = bridge();
        s.subnet("10.10.0.0/31".parse().unwrap(), None);
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");

        let mut s = bridge();
        s.mtu(67);
        assert_eq!(field_of(s.validate().unwrap_err()), "mtu");

        let mut s = bridge();
        s.mtu(1000).subnet("fd00::/64".parse().unwrap(), None);
        assert_eq!(field_of(s.validate().unwrap_err()), "mtu");

        let s = NetworkSpec::macvlan("nk-m".parse().unwrap(), "");
        assert_eq!(field_of(s.validate().unwrap_err()), "parent");
    }

    #[test]
    fn serde_round_trip() {
        let mut s = NetworkSpec::macvlan("nk-m".parse().unwrap(), "eth0");
        s.subnet("192.168.5.0/24".parse().unwrap(), None).mtu(9000);
        let json = serde_json::to_string(&s).unwrap();
        let back: NetworkSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        let json = r#"{"name":"nk-b","driver":{"type":"bridge"},"subnets":[{"subnet":"10.1.0.0/16","gateway":null}]}"#;
        let s: NetworkSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.driver, Driver::Bridge(BridgeOptions::new()));
        assert!(!s.internal);
        s.validate().unwrap();
    }

    #[test]
    fn gateways_with_prefix() {
        let mut s = bridge();
        s.subnet("fd00:9::/64".parse().unwrap(), Some("fd00:9::99".parse().unwrap()));
        let gws: Vec<String> = s.gateway_addresses().iter().map(|g| g.to_string()).collect();
        assert_eq!(gws, ["10.9.0.1/24", "fd00:9::99/64"]);
    }
}
