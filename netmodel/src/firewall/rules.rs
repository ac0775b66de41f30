//! What the model asks the firewall for: a network's rules and published ports, and their
//! pure validation.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::names::validate_ifname;
#[cfg(doc)]
use super::{FirewallBackend, MAX_NETWORK_LEN};
use crate::name::NetworkName;
use crate::validation::{AddressRule, ValidationError};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// `docker run -p [host_ip:]host_port:container_port[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Only on this host address (`None`: every address of the host).
    pub host_ip: Option<IpAddr>,
    /// Port on the host (1-65535).
    pub host_port: u16,
    /// Port in the sandbox (1-65535).
    pub container_port: u16,
}

impl PortMapping {
    /// `host_port` on every address of the host to `container_port`.
    pub fn new(protocol: Protocol, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping { protocol, host_ip: None, host_port, container_port }
    }

    /// A TCP port (`-p HOST:CONTAINER`).
    pub fn tcp(host_port: u16, container_port: u16) -> PortMapping {
        PortMapping::new(Protocol::Tcp, host_port, container_port)
    }

    /// A UDP port (`-p HOST:CONTAINER/udp`).
    pub fn udp(host_port: u16, container_port: u16) -> PortMapping {
        PortMapping::new(Protocol::Udp, host_port, container_port)
    }

    /// Only on host address `ip` (`-p IP:HOST:CONTAINER`).
    pub fn host_ip(&mut self, ip: IpAddr) -> &mut Self {
        self.host_ip = Some(ip);
        self
    }

    /// Validates the ports (0 is refused).
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, value) in [("host_port", self.host_port), ("container_port", self.container_port)] {
            if value == 0 {
                return Err(ValidationError::PortZero { field });
            }
        }
        if let Some(ip) = self.host_ip {
            if ip.is_multicast() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
                return Err(ValidationError::Address { field: "host_ip", value: ip, rule: AddressRule::NotUnicast });
            }
            if ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) {
                return Err(ValidationError::Address { field: "host_ip", value: ip, rule: AddressRule::Ipv6Loopback });
            }
        }
        Ok(())
    }
}

/// The rules one network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkRules {
    /// Network name (chains are named after it).
    pub network: NetworkName,
    /// Bridge interface name in the host namespace.
    pub bridge: String,
    /// The network's subnets.
    pub subnets: Vec<IpNet>,
    /// Internal: no outbound NAT, no forwarding to or from outside.
    pub internal: bool,
}

impl NetworkRules {
    /// The rules of `network` on `bridge` with `subnets`, not internal.
    pub fn new(network: NetworkName, bridge: impl Into<String>, subnets: Vec<IpNet>) -> NetworkRules {
        NetworkRules { network, bridge: bridge.into(), subnets, internal: false }
    }

    /// Sets `internal`.
    pub fn internal(&mut self, internal: bool) -> &mut Self {
        self.internal = internal;
        self
    }

    /// Validates the bridge name (a valid interface name) and the subnets (no host bits set).
    /// The network's name is valid by its type ([`NetworkName`]: at most
    /// [`MAX_NETWORK_LEN`] bytes).
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_ifname(&self.bridge)?;
        for &subnet in &self.subnets {
            if subnet.trunc() != subnet {
                return Err(ValidationError::HostBits { field: "subnets", value: subnet, network: subnet.trunc() });
            }
        }
        Ok(())
    }
}

/// One published port of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortRule {
    /// The mapping as asked.
    pub mapping: PortMapping,
    /// The endpoint's address in the sandbox.
    pub container_ip: IpAddr,
}

impl PortRule {
    /// `mapping` forwarded to `container_ip`.
    pub fn new(mapping: PortMapping, container_ip: IpAddr) -> PortRule {
        PortRule { mapping, container_ip }
    }

    /// Validates the mapping, and that the container address is a unicast address of the
    /// host address's family (there is no NAT between IPv4 and IPv6).
    ///
    /// That the container address's family is one of the network's subnets is checked by
    /// [`FirewallBackend::add_ports`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.mapping.validate()?;
        let c = self.container_ip;
        if c.is_unspecified() || c.is_multicast() || c == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
            return Err(ValidationError::Address { field: "container_ip", value: c, rule: AddressRule::NotUnicast });
        }
        match self.mapping.host_ip {
            Some(h) if h.is_ipv6() != c.is_ipv6() => Err(ValidationError::Address {
                field: "host_ip",
                value: h,
                rule: AddressRule::FamilyMismatch { other: c },
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::FirewallError;

    fn mapping(host_ip: Option<&str>, hp: u16, cp: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: hp,
            container_port: cp,
        }
    }

    fn rule(host_ip: Option<&str>, cip: &str) -> PortRule {
        PortRule { mapping: mapping(host_ip, 8080, 80), container_ip: cip.parse().unwrap() }
    }

    #[test]
    fn zero_ports_are_refused() {
        assert!(mapping(None, 1, 65535).validate().is_ok());
        let e = mapping(None, 0, 80).validate().unwrap_err();
        assert!(matches!(e, ValidationError::PortZero { field: "host_port" }), "{e}");
        assert!(FirewallError::from(e).is_refusal());
        let e = mapping(None, 80, 0).validate().unwrap_err();
        assert!(matches!(e, ValidationError::PortZero { field: "container_port" }), "{e}");
    }

    #[test]
    fn port_rule_addresses() {
        assert!(rule(None, "10.0.0.2").validate().is_ok());
        assert!(rule(Some("0.0.0.0"), "10.0.0.2").validate().is_ok());
        assert!(rule(Some("127.0.0.1"), "10.0.0.2").validate().is_ok());
        assert!(rule(Some("fd00::1"), "fd00::2").validate().is_ok());
        for (host, cip, field) in [
            (Some("fd00::1"), "10.0.0.2", "host_ip"),
            (Some("10.0.0.1"), "fd00::2", "host_ip"),
            (Some("::1"), "fd00::2", "host_ip"),
            (Some("224.0.0.1"), "10.0.0.2", "host_ip"),
            (None, "0.0.0.0", "container_ip"),
            (None, "ff02::1", "container_ip"),
            (None, "255.255.255.255", "container_ip"),
        ] {
            let e = rule(host, cip).validate().unwrap_err();
            match e {
                ValidationError::Address { field: f, .. } => assert_eq!(f, field, "{host:?} {cip}"),
                other => panic!("{host:?} {cip}: {other}"),
            }
        }
    }

    #[test]
    fn network_rules_validate_subnets() {
        let mut r = NetworkRules {
            network: "web".parse().unwrap(),
            bridge: "nkbr0".into(),
            subnets: vec!["10.88.0.0/16".parse().unwrap()],
            internal: false,
        };
        assert!(r.validate().is_ok());
        r.subnets.push("10.89.0.1/16".parse().unwrap());
        assert!(matches!(r.validate(), Err(ValidationError::HostBits { .. })));
    }
}
