//! [`ValidationError`]: bad input, found before anything is changed. Every `validate()` of the
//! crate returns it (specs, endpoint options, port mappings, firewall rules, IPAM pools,
//! netlink requests, names, `/etc/hosts` entries, resolver settings); each variant names the
//! field and the value, and the rule it breaks is typed ([`NameRule`], [`AddressRule`],
//! [`MacRule`]), never a string.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ipam::ReservedKind;

/// Bad input, found before anything was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An interface name breaks [`crate::IfName`]'s rules.
    #[error("invalid interface name {value:?} ({field}): {rule}")]
    IfName {
        /// The field (`"ifname"`, `"bridge"`, `"parent"`, `"link name"`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// A network name breaks [`crate::NetworkName`]'s rules.
    #[error("invalid network name {value:?}: {rule}")]
    NetworkName {
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// Another name breaks its rules: a host name or alias, a search domain, a resolver
    /// option, a sysctl key, a firewall table name or endpoint id.
    #[error("invalid {field} {value:?}: {rule}")]
    Name {
        /// The field (`"hostname"`, `"search domain"`, `"resolver option"`, `"sysctl key"`,
        /// `"table"`, `"endpoint"`).
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// A `--network=` value that is none of `none`, `host`, `default`, `container:NAME` or a
    /// network name.
    #[error("invalid network mode {value:?}: expected none, host, default, container:NAME or a network name")]
    NetworkMode {
        /// The value given.
        value: String,
    },
    /// A text is not a CIDR subnet (`10.0.0.0/24`, `fd00::/64`).
    #[error("invalid {field} {value:?}: {source}")]
    Cidr {
        /// The field (`"subnet"`).
        field: &'static str,
        /// The text given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// A subnet has host bits set (`10.0.0.1/24`): ambiguous, so refused.
    #[error("invalid {field} {value}: host bits are set (did you mean {network}?)")]
    HostBits {
        /// The field (`"subnet"`, `"route destination"`).
        field: &'static str,
        /// The subnet given.
        value: IpNet,
        /// The subnet with the host bits cleared.
        network: IpNet,
    },
    /// A network was given no subnet.
    #[error("network {network:?}: no subnets given")]
    NoSubnets {
        /// The network.
        network: String,
    },
    /// An address pool for automatic subnets ([`crate::ipam::AddressPool`]) whose subnet size
    /// is not between its base's prefix length and the smallest usable subnet (`/30`, `/126`).
    #[error("address pool {base}: subnet size /{size} must be in /{}../{}", .base.prefix_len(), .base.max_prefix_len() - 2)]
    AddressPoolSize {
        /// The pool's base.
        base: IpNet,
        /// The size given.
        size: u8,
    },
    /// A subnet cannot hold a gateway plus one address (IPv4 `/31`, `/32`; IPv6 `/127`, `/128`).
    #[error("network {network:?}: subnet {subnet} is too small (it must hold a gateway and at least one address)")]
    SubnetTooSmall {
        /// The network.
        network: String,
        /// The subnet.
        subnet: IpNet,
    },
    /// A gateway is not inside its subnet (or of another address family).
    #[error("network {network:?}: gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet {
        /// The network.
        network: String,
        /// The gateway given.
        gateway: IpAddr,
        /// Its subnet.
        subnet: IpNet,
    },
    /// An address range ([`crate::ipam::Pool::range`]) that is not inside its subnet.
    #[error("network {network:?}: address range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet {
        /// The network.
        network: String,
        /// The range given.
        range: IpNet,
        /// Its subnet.
        subnet: IpNet,
    },
    /// A gateway is the network, broadcast or subnet-router anycast address of its subnet.
    #[error("network {network:?}: gateway {gateway} is the {kind} of subnet {subnet}")]
    GatewayReserved {
        /// The network.
        network: String,
        /// The gateway given.
        gateway: IpAddr,
        /// Its subnet.
        subnet: IpNet,
        /// Which reserved address it is.
        kind: ReservedKind,
    },
    /// Two subnets given for one network overlap.
    #[error("network {network:?}: subnets {subnet} and {other} overlap")]
    OverlappingSubnets {
        /// The network.
        network: String,
        /// One subnet.
        subnet: IpNet,
        /// The other.
        other: IpNet,
    },
    /// An MTU out of range.
    #[error("invalid {field} {value}: must be in {min}..={max}")]
    Mtu {
        /// The field (`"mtu"`, `"peer mtu"`).
        field: &'static str,
        /// The value given.
        value: u32,
        /// The smallest accepted.
        min: u32,
        /// The largest accepted.
        max: u32,
    },
    /// An egress rule's port range is empty (`first` above `last`), starts at 0, or is given
    /// without a protocol ([`crate::EgressRule`]).
    #[error("invalid egress rule for {net}: ports {first}-{last} {}", if *.protocol_given { "(empty range or port 0)" } else { "need a protocol (tcp or udp)" })]
    EgressPorts {
        /// The rule's destination.
        net: IpNet,
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
        /// Whether the rule names a protocol.
        protocol_given: bool,
    },
    /// A port of 0 (ports are 1-65535).
    #[error("invalid {field} 0: ports are 1-65535")]
    PortZero {
        /// The field (`"host_port"`, `"container_port"`).
        field: &'static str,
    },
    /// An address that cannot be used there.
    #[error("invalid {field} {value}: {rule}")]
    Address {
        /// The field (`"ip"`, `"ip6"`, `"host_ip"`, `"container_ip"`, `"route gateway"`,
        /// `"vxlan remote"`).
        field: &'static str,
        /// The value given.
        value: IpAddr,
        /// The rule it breaks.
        rule: AddressRule,
    },
    /// A MAC address that cannot be a link's.
    #[error("invalid {field} {}: {rule}", mac_string(.value))]
    Mac {
        /// The field (`"mac"`, `"peer mac"`).
        field: &'static str,
        /// The value given.
        value: [u8; 6],
        /// The rule it breaks.
        rule: MacRule,
    },
    /// An interface index of 0.
    #[error("invalid {field} 0: not an interface index")]
    ZeroIndex {
        /// The field (`"macvlan parent"`).
        field: &'static str,
    },
    /// An overlay network's option or a remote endpoint it was told about breaks a rule of the
    /// overlay driver ([`crate::driver::OverlayOptions`], [`crate::RemoteEndpoint`]).
    #[error("overlay network {network:?}: {field} {value}: {rule}")]
    Overlay {
        /// The network.
        network: String,
        /// The field (`"vni"`, `"peers"`, `"subnets"`, `"remote endpoint ip"`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: OverlayRule,
    },
    /// A VXLAN network identifier wider than 24 bits.
    #[error("invalid vxlan vni {value}: larger than 24 bits")]
    Vni {
        /// The value given.
        value: u32,
    },
    /// A route to add has neither a gateway nor an output interface.
    #[error("invalid route {route}: needs a gateway or an output interface")]
    RouteWithoutTarget {
        /// The route.
        route: String,
    },
    /// A namespace handle that is not a network namespace.
    #[error("invalid {field}: a {kind:?} namespace is not a network namespace")]
    NotNetNamespace {
        /// The field (`"netns"`).
        field: &'static str,
        /// The kind of namespace given.
        kind: nook_ns::Namespace,
    },
    /// A `/etc/hosts` entry without names.
    #[error("hosts entry for {address} has no name")]
    EmptyHostsEntry {
        /// Its address.
        address: IpAddr,
    },
    /// A spec given to a driver of another kind (a bridge driver asked about a macvlan spec).
    #[error("the {driver} driver cannot build a network of driver {found}")]
    WrongDriver {
        /// The driver asked.
        driver: &'static str,
        /// The spec's driver.
        found: String,
    },
    /// A bridge network whose bridge name was not filled in (drivers get resolved specs).
    #[error("network {network:?}: the bridge driver needs a resolved bridge name")]
    UnresolvedBridge {
        /// The network.
        network: String,
    },
    /// A driver of your own refused a spec ([`crate::NetworkDriver::validate`]).
    #[error("driver {driver}: invalid {field} {value:?}: {source}")]
    Driver {
        /// The driver.
        driver: String,
        /// The field of the spec.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it refuses it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The rule a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameRule {
    /// It is empty.
    Empty,
    /// It is longer than `max` bytes.
    TooLong {
        /// The longest allowed, in bytes.
        max: usize,
    },
    /// It is `.` or `..`.
    DotOrDotDot,
    /// It holds a character outside `allowed`.
    Characters {
        /// What is allowed.
        allowed: &'static str,
    },
    /// It holds one of `forbidden`.
    Forbidden {
        /// What it must not hold.
        forbidden: &'static str,
    },
    /// Its first character is not one of `allowed`.
    Start {
        /// What it may start with.
        allowed: &'static str,
    },
    /// It holds `%` (the kernel would take it as a template it fills in, e.g. `eth%d`).
    Template,
    /// It starts with `/` (a sysctl key is relative to `/proc/sys`).
    Absolute,
    /// It has an empty component or label (`a//b`, `a..b`).
    EmptyComponent,
    /// A component is `.` or `..`.
    DotComponent,
    /// A label is longer than `max` bytes.
    LabelTooLong {
        /// The longest allowed label, in bytes.
        max: usize,
    },
    /// A label starts or ends with `-`.
    LabelHyphen,
    /// It is an IPv4 address.
    Ipv4Address,
    /// It starts a comment (`#`, `;`).
    Comment,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Empty => f.write_str("empty"),
            NameRule::TooLong { max } => write!(f, "longer than {max} bytes"),
            NameRule::DotOrDotDot => f.write_str("`.` and `..` are not names"),
            NameRule::Characters { allowed } => write!(f, "only {allowed} are allowed"),
            NameRule::Forbidden { forbidden } => write!(f, "contains {forbidden}"),
            NameRule::Start { allowed } => write!(f, "must start with {allowed}"),
            NameRule::Template => f.write_str("contains `%` (the kernel would take it as a name template)"),
            NameRule::Absolute => f.write_str("must be relative to /proc/sys"),
            NameRule::EmptyComponent => f.write_str("has an empty label or component"),
            NameRule::DotComponent => f.write_str("`.` and `..` components are not allowed"),
            NameRule::LabelTooLong { max } => write!(f, "has a label longer than {max} bytes"),
            NameRule::LabelHyphen => f.write_str("a label starts or ends with `-`"),
            NameRule::Ipv4Address => f.write_str("is an IPv4 address"),
            NameRule::Comment => f.write_str("starts a comment"),
        }
    }
}

/// The rule of the overlay driver an option or a remote endpoint breaks
/// ([`ValidationError::Overlay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayRule {
    /// A VNI must be 1 to 2^24 - 1.
    #[error("must be 1 to 16777215")]
    VniRange,
    /// The local underlay address must be a unicast address.
    #[error("must be a unicast address")]
    NotUnicast,
    /// Peers are unicast addresses of the local address's family.
    #[error("must be a unicast address of the local address's family")]
    PeerFamily,
    /// Peers differ from the local address and from each other.
    #[error("must differ from the local address and from the other peers")]
    PeerRepeated,
    /// The UDP port is not 0.
    #[error("must not be 0")]
    ZeroPort,
    /// An overlay network needs explicit subnets, the same on every host.
    #[error("an overlay network needs explicit subnets, the same on every host")]
    NeedsSubnets,
    /// Every subnet needs this host's address range, disjoint from the other hosts'.
    #[error("needs this host's address range (Pool::range), disjoint from every other host's")]
    NeedsRange,
    /// A remote endpoint's address is outside the network's subnets.
    #[error("is outside the network's subnets")]
    OutsideSubnets,
    /// A remote endpoint's address is in this host's own range (this host hands it out).
    #[error("is in this host's own address range")]
    InOwnRange,
    /// A remote endpoint's address is the gateway.
    #[error("is the gateway")]
    Gateway,
    /// A remote endpoint's host is not one of the network's peers.
    #[error("is not one of the network's peers")]
    NotAPeer,
}

/// The rule an address breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressRule {
    /// Not a unicast address (multicast, broadcast, unspecified).
    NotUnicast,
    /// IPv6 loopback: Linux cannot forward from it (there is no `route_localnet` for IPv6).
    Ipv6Loopback,
    /// Not of the family of `other` (no NAT between IPv4 and IPv6; a route's gateway and
    /// destination, a VXLAN's local and remote address, are of one family).
    FamilyMismatch {
        /// The address it must match.
        other: IpAddr,
    },
    /// Not inside any subnet of the network.
    OutsideSubnets {
        /// The network.
        network: String,
    },
    /// The gateway of the network's subnet.
    Gateway {
        /// The network.
        network: String,
    },
    /// The network or broadcast address of `subnet`.
    NetworkOrBroadcast {
        /// The subnet.
        subnet: IpNet,
    },
    /// The network has no subnet of the address's family to forward it to.
    NoSubnetOfFamily {
        /// The network.
        network: String,
    },
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressRule::NotUnicast => f.write_str("not a unicast address"),
            AddressRule::Ipv6Loopback => {
                f.write_str("Linux cannot forward from IPv6 loopback (there is no route_localnet for IPv6)")
            }
            AddressRule::FamilyMismatch { other } => write!(f, "not of the address family of {other}"),
            AddressRule::OutsideSubnets { network } => write!(f, "not inside any subnet of network {network}"),
            AddressRule::Gateway { network } => write!(f, "the gateway of network {network}"),
            AddressRule::NetworkOrBroadcast { subnet } => write!(f, "the network or broadcast address of {subnet}"),
            AddressRule::NoSubnetOfFamily { network } => {
                write!(f, "network {network} has no subnet of its family to forward it to")
            }
        }
    }
}

/// The rule a MAC address breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MacRule {
    /// The multicast bit is set.
    Multicast,
    /// All zeros.
    Zero,
}

impl fmt::Display for MacRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacRule::Multicast => "multicast bit set",
            MacRule::Zero => "all zeros",
        })
    }
}

/// Checks a MAC address a link can take: not multicast, not all zeros.
pub(crate) fn check_mac(field: &'static str, mac: &[u8; 6]) -> Result<(), ValidationError> {
    let rule = if mac[0] & 1 != 0 {
        MacRule::Multicast
    } else if mac == &[0; 6] {
        MacRule::Zero
    } else {
        return Ok(());
    };
    Err(ValidationError::Mac { field, value: *mac, rule })
}

fn mac_string(mac: &[u8; 6]) -> String {
    crate::util::mac_string(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_value() {
        let e = ValidationError::IfName {
            field: "bridge",
            value: "a/b".into(),
            rule: NameRule::Characters { allowed: "x" },
        };
        assert_eq!(e.to_string(), "invalid interface name \"a/b\" (bridge): only x are allowed");
        let e = check_mac("mac", &[1, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.to_string(), "invalid mac 01:00:00:00:00:00: multicast bit set");
        assert!(check_mac("mac", &[0; 6]).is_err() && check_mac("mac", &[2, 0, 0, 0, 0, 1]).is_ok());
        let e = ValidationError::Address {
            field: "host_ip",
            value: "::1".parse().unwrap(),
            rule: AddressRule::Ipv6Loopback,
        };
        assert!(e.to_string().starts_with("invalid host_ip ::1: Linux cannot forward"), "{e}");
    }
}
