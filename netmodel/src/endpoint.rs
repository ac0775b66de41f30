//! Endpoints: how a sandbox joins a network ([`EndpointOptions`] in, [`Endpoint`] out).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::driver::NetworkDriver;
use crate::error::{Error, Result};
use crate::files::validate_hostname;
use crate::firewall::PortMapping;
use crate::ifname::IfName;
use crate::spec::NetworkSpec;
use crate::util::pool_gateway;
use crate::validation::{AddressRule, ValidationError, check_mac};

/// How to connect a sandbox to a network (`docker network connect` / `docker run` options).
///
/// ```
/// use nook_netmodel::EndpointOptions;
/// use nook_netmodel::firewall::PortMapping;
///
/// let mut opts = EndpointOptions::new();
/// opts.static_ip("10.88.0.10".parse().unwrap())
///     .alias("web")
///     .port(PortMapping::tcp(8080, 80));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// Static IPv4 address (`--ip`); default: the next free one of the network's IPv4 subnets.
    pub ip: Option<Ipv4Addr>,
    /// Static IPv6 address (`--ip6`); default: the next free one of its IPv6 subnets.
    pub ip6: Option<Ipv6Addr>,
    /// Published ports (`-p`).
    pub ports: Vec<PortMapping>,
    /// Extra names the sandbox has on this network (`--network-alias`), listed in the
    /// `/etc/hosts` of its peers.
    pub aliases: Vec<String>,
    /// The interface name in the sandbox; default `eth0`, `eth1`, ... (the first free one).
    pub ifname: Option<String>,
    /// MAC address of the interface (`--mac-address`); default: random.
    pub mac: Option<[u8; 6]>,
}

impl EndpointOptions {
    /// No static address, no ports, no aliases, default interface name.
    pub fn new() -> EndpointOptions {
        EndpointOptions::default()
    }

    /// Sets the static address of its family.
    pub fn static_ip(&mut self, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(a) => self.ip = Some(a),
            IpAddr::V6(a) => self.ip6 = Some(a),
        }
        self
    }

    /// Adds a published port.
    pub fn port(&mut self, mapping: PortMapping) -> &mut Self {
        self.ports.push(mapping);
        self
    }

    /// Adds an alias.
    pub fn alias(&mut self, alias: impl Into<String>) -> &mut Self {
        self.aliases.push(alias.into());
        self
    }

    /// Sets the interface name in the sandbox.
    pub fn ifname(&mut self, name: impl Into<String>) -> &mut Self {
        self.ifname = Some(name.into());
        self
    }

    /// Sets the MAC address.
    pub fn mac(&mut self, mac: [u8; 6]) -> &mut Self {
        self.mac = Some(mac);
        self
    }

    /// Pure checks of the options on their own: interface name, aliases, ports, MAC.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.ifname {
            IfName::for_field("ifname", name.as_str())?;
        }
        for alias in &self.aliases {
            validate_hostname(alias)?;
        }
        for port in &self.ports {
            port.validate()?;
        }
        if let Some(mac) = &self.mac {
            check_mac("mac", mac)?;
        }
        Ok(())
    }

    /// [`EndpointOptions::validate`] plus the checks against a network's (resolved) spec:
    /// static addresses inside one of its subnets and not a gateway; ports only where the
    /// driver can publish them.
    pub fn validate_for(&self, spec: &NetworkSpec, driver: &dyn NetworkDriver) -> Result<()> {
        self.validate()?;
        let statics = self.ip.map(IpAddr::V4).into_iter().chain(self.ip6.map(IpAddr::V6));
        for ip in statics {
            let field = if ip.is_ipv4() { "ip" } else { "ip6" };
            let bad = |rule| Err(ValidationError::Address { field, value: ip, rule }.into());
            let Some(pool) = spec.subnets.iter().find(|p| p.subnet.contains(&ip)) else {
                return bad(AddressRule::OutsideSubnets { network: spec.name.to_string() });
            };
            if pool_gateway(pool) == ip {
                return bad(AddressRule::Gateway { network: spec.name.to_string() });
            }
            if ip == pool.subnet.network() || (ip.is_ipv4() && ip == pool.subnet.broadcast()) {
                return bad(AddressRule::NetworkOrBroadcast { subnet: pool.subnet });
            }
        }
        for port in &self.ports {
            if let Some(ip) = port.host_ip
                && !spec.has_family(ip.is_ipv6())
            {
                let rule = AddressRule::NoSubnetOfFamily { network: spec.name.to_string() };
                return Err(ValidationError::Address { field: "host_ip", value: ip, rule }.into());
            }
        }
        if !self.ports.is_empty() && !driver.publishes_ports(spec) {
            return Err(Error::PortsUnsupported {
                network: spec.name.to_string(),
                driver: driver.name().to_owned(),
                internal: spec.internal,
            });
        }
        Ok(())
    }
}

/// An endpoint: one sandbox's attachment to one network (a snapshot; the sandbox owns it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// Id (64 hex digits; also what published ports are registered under).
    pub id: String,
    /// The network's name.
    pub network: String,
    /// The sandbox's name.
    pub sandbox: String,
    /// The interface name in the sandbox.
    pub ifname: String,
    /// The interface index in the sandbox.
    pub index: u32,
    /// The host-side link (the veth end on the bridge), if any.
    pub host_ifname: Option<String>,
    /// Its addresses, with the subnet prefix.
    pub addresses: Vec<IpNet>,
    /// The gateway of each address's subnet, in the same order.
    pub gateways: Vec<IpAddr>,
    /// The interface's MAC address.
    pub mac: Option<[u8; 6]>,
    /// Aliases on the network.
    pub aliases: Vec<String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

impl Endpoint {
    /// The IPv4 address, if any.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        })
    }

    /// The IPv6 address, if any.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V6(v) => Some(v),
            IpAddr::V4(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{BridgeDriver, MacvlanDriver};
    use crate::firewall::Protocol;

    fn spec(internal: bool) -> NetworkSpec {
        let mut s = NetworkSpec::bridge("nk-e".parse().unwrap());
        s.subnet("10.7.0.0/24".parse().unwrap(), None).subnet("fd00:7::/64".parse().unwrap(), None);
        s.internal(internal);
        s
    }

    fn field_of(e: Error) -> &'static str {
        match e {
            Error::Invalid(
                ValidationError::Address { field, .. }
                | ValidationError::IfName { field, .. }
                | ValidationError::Mac { field, .. }
                | ValidationError::Name { field, .. },
            ) => field,
            e => panic!("not Invalid: {e}"),
        }
    }

    #[test]
    fn options_against_a_network() {
        let bridge = BridgeDriver::new();
        let mut o = EndpointOptions::new();
        o.static_ip("10.7.0.9".parse().unwrap()).static_ip("fd00:7::9".parse().unwrap()).alias("db");
        o.validate_for(&spec(false), &bridge).unwrap();

        let mut o = EndpointOptions::new();
        o.static_ip("10.8.0.9".parse().unwrap());
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "ip");
        let mut o = EndpointOptions::new();
        o.static_ip("10.7.0.1".parse().unwrap());
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "ip");
        let mut o = EndpointOptions::new();
        o.static_ip("fd00:7::".parse().unwrap());
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "ip6");
        let mut o = EndpointOptions::new();
        o.ifname("a/b");
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "ifname");
        let mut o = EndpointOptions::new();
        o.alias("not an alias");
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "hostname");
        let mut o = EndpointOptions::new();
        o.mac([1, 2, 3, 4, 5, 6]);
        assert_eq!(field_of(o.validate_for(&spec(false), &bridge).unwrap_err()), "mac");

        let mut o = EndpointOptions::new();
        o.port(PortMapping { protocol: Protocol::Tcp, host_ip: None, host_port: 80, container_port: 80 });
        assert!(matches!(o.validate_for(&spec(true), &bridge), Err(Error::PortsUnsupported { internal: true, .. })));
        let mut v6_only = NetworkSpec::bridge("nk-6".parse().unwrap());
        v6_only.subnet("fd00:6::/64".parse().unwrap(), None);
        let mut o6 = EndpointOptions::new();
        o6.port(PortMapping {
            protocol: Protocol::Tcp,
            host_ip: Some("192.0.2.1".parse().unwrap()),
            host_port: 80,
            container_port: 80,
        });
        assert_eq!(field_of(o6.validate_for(&v6_only, &bridge).unwrap_err()), "host_ip");
        assert!(matches!(
            o.validate_for(&spec(false), &MacvlanDriver::new()),
            Err(Error::PortsUnsupported { internal: false, .. })
        ));
    }

    #[test]
    fn serde_defaults() {
        let o: EndpointOptions = serde_json::from_str(r#"{"ip":"10.7.0.3"}"#).unwrap();
        assert_eq!(o.ip, Some("10.7.0.3".parse().unwrap()));
        assert!(o.ports.is_empty());
    }
}
