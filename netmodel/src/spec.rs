//! [`NetworkSpec`]: pure data (serde) describing a network, validated before anything is
//! changed.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::driver::NetworkDriver;
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

/// Which driver builds the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
#[non_exhaustive]
pub enum Driver {
    /// A Linux bridge in the host namespace; endpoints are veth pairs, one end on the bridge,
    /// the other in the sandbox. Outbound traffic is masqueraded (unless `internal`) and ports
    /// can be published.
    Bridge {
        /// The bridge's name; default `nk-` + 12 hex digits of a hash of the network's name (the
        /// same in every process, so [`crate::Network::recreate`] finds a crashed one's bridge).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
    },
    /// Macvlan links on an existing parent link of the host; each endpoint is a macvlan link
    /// created directly inside its sandbox. No bridge, no NAT, no published ports; the
    /// gateway is a router on the parent's segment.
    Macvlan {
        /// The parent link in the host namespace.
        parent: String,
        /// The macvlan mode (Docker's default: bridge).
        #[serde(default = "default_macvlan_mode")]
        mode: MacvlanMode,
    },
    /// A driver of your own (not serializable).
    #[serde(skip)]
    Custom(Arc<dyn NetworkDriver>),
}

fn default_macvlan_mode() -> MacvlanMode {
    MacvlanMode::Bridge
}

impl PartialEq for Driver {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Driver::Bridge { bridge: a }, Driver::Bridge { bridge: b }) => a == b,
            (Driver::Macvlan { parent: a, mode: m }, Driver::Macvlan { parent: b, mode: n }) => a == b && m == n,
            (Driver::Custom(a), Driver::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Driver {
    /// The driver's name (`"bridge"`, `"macvlan"`, or the custom driver's).
    pub fn name(&self) -> &str {
        match self {
            Driver::Bridge { .. } => "bridge",
            Driver::Macvlan { .. } => "macvlan",
            Driver::Custom(d) => d.name(),
        }
    }
}

/// A network to create.
///
/// ```
/// use nook_netmodel::NetworkSpec;
///
/// let mut spec = NetworkSpec::bridge("nk-web");
/// spec.subnet("10.88.0.0/24".parse().unwrap(), None).mtu(1400);
/// assert!(spec.validate().is_ok());
///
/// spec.subnet("10.88.0.128/25".parse().unwrap(), None); // overlaps the first
/// assert!(spec.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The network's name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 bytes: it names IPAM's
    /// state file and the firewall's chains); unique on the host (IPAM refuses a second
    /// network of the same name).
    pub name: String,
    /// The driver.
    pub driver: Driver,
    /// Its subnets (IPv4 and/or IPv6), each with an optional gateway (default: the first
    /// host address). At least one.
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
        let mut spec = NetworkSpec::new(DEFAULT_NETWORK, Driver::Bridge { bridge: Some(DEFAULT_BRIDGE.into()) });
        spec.subnet(DEFAULT_SUBNET.parse().expect("DEFAULT_SUBNET is a valid CIDR"), None);
        spec
    }

    /// Whether sandboxes on this network find each other by name (in `/etc/hosts`): every
    /// network but the default one ([`DEFAULT_NETWORK`]), as with Docker.
    pub fn lists_peers(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }

    /// A spec for `name` built by `driver`, with no subnets yet.
    pub fn new(name: impl Into<String>, driver: Driver) -> NetworkSpec {
        NetworkSpec { name: name.into(), driver, subnets: Vec::new(), internal: false, mtu: None }
    }

    /// A bridge network with the default bridge name.
    pub fn bridge(name: impl Into<String>) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Bridge { bridge: None })
    }

    /// A macvlan network (bridge mode) on `parent`.
    pub fn macvlan(name: impl Into<String>, parent: impl Into<String>) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Macvlan { parent: parent.into(), mode: MacvlanMode::Bridge })
    }

    /// A network built by your own driver.
    pub fn custom(name: impl Into<String>, driver: Arc<dyn NetworkDriver>) -> NetworkSpec {
        NetworkSpec::new(name, Driver::Custom(driver))
    }

    /// Adds a subnet (`gateway: None` = the first host address).
    pub fn subnet(&mut self, subnet: IpNet, gateway: Option<IpAddr>) -> &mut Self {
        self.subnets.push(Pool { subnet, gateway });
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
        if let Driver::Bridge { bridge } = &mut self.driver {
            *bridge = Some(name.into());
        }
        self
    }

    /// For a macvlan network: sets the mode (no effect on other drivers).
    pub fn macvlan_mode(&mut self, mode: MacvlanMode) -> &mut Self {
        if let Driver::Macvlan { mode: m, .. } = &mut self.driver {
            *m = mode;
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

    /// The bridge name, when it is a bridge network and the name is set (it is, on a spec
    /// returned by [`crate::Network::spec`]).
    pub fn bridge_ifname(&self) -> Option<&str> {
        match &self.driver {
            Driver::Bridge { bridge } => bridge.as_deref(),
            _ => None,
        }
    }

    /// Checks everything that can be checked without the host: name, link names, subnets
    /// (IPAM's pure checks: host bits, size, gateway inside and usable, no overlap between
    /// them), MTU, and the driver's own rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        NetworkName::validate(&self.name)?;
        // A built-in driver's own rules (its link names) come before the generic ones; a
        // custom driver's after them.
        let custom = matches!(self.driver, Driver::Custom(_));
        if !custom {
            crate::driver::instance(&self.driver).validate(self)?;
        }
        // The built-in drivers need addresses; a custom driver may do without.
        if !self.subnets.is_empty() || !custom {
            crate::ipam::validate_pools(&self.name, &self.subnets)?;
        }
        if let Some(mtu) = self.mtu {
            let min = if self.has_family(true) { MIN_MTU_V6 } else { MIN_MTU };
            if !(min..=MAX_MTU).contains(&mtu) {
                return Err(ValidationError::Mtu { field: "mtu", value: mtu, min, max: MAX_MTU });
            }
        }
        if let Driver::Custom(d) = &self.driver {
            d.validate(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> NetworkSpec {
        let mut s = NetworkSpec::bridge("nk-t");
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
        let mut s = NetworkSpec::macvlan("nk-m", "eth0");
        s.subnet("192.168.5.0/24".parse().unwrap(), Some("192.168.5.254".parse().unwrap()))
            .subnet("fd00:5::/64".parse().unwrap(), None)
            .mtu(1500)
            .internal(true);
        s.validate().unwrap();
    }

    #[test]
    fn invalid_specs() {
        let mut s = bridge();
        s.name = "bad name".into();
        assert_eq!(field_of(s.validate().unwrap_err()), "name");

        let mut s = bridge();
        s.name = "n".repeat(65);
        assert_eq!(field_of(s.validate().unwrap_err()), "name");

        let mut s = bridge();
        s.bridge_name("a-very-long-bridge-name");
        assert_eq!(field_of(s.validate().unwrap_err()), "bridge");

        // Subnet checks are IPAM's (pure, before anything is written).
        let mut s = bridge();
        s.subnets.clear();
        assert_eq!(field_of(s.validate().unwrap_err()), "ipam");
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

        let s = NetworkSpec::macvlan("nk-m", "");
        assert_eq!(field_of(s.validate().unwrap_err()), "parent");
    }

    #[test]
    fn serde_round_trip() {
        let mut s = NetworkSpec::macvlan("nk-m", "eth0");
        s.subnet("192.168.5.0/24".parse().unwrap(), None).mtu(9000);
        let json = serde_json::to_string(&s).unwrap();
        let back: NetworkSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        let json = r#"{"name":"nk-b","driver":{"type":"bridge"},"subnets":[{"subnet":"10.1.0.0/16","gateway":null}]}"#;
        let s: NetworkSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.driver, Driver::Bridge { bridge: None });
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
