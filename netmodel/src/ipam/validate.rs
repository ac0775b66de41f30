//! Pure validation and address arithmetic: nothing here touches the state directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Pool, ReservedKind};
use crate::name::NetworkName;
use crate::validation::ValidationError;

/// Longest network name, in bytes ([`NetworkName::MAX`]).
pub const MAX_NETWORK_NAME: usize = NetworkName::MAX;

/// Parses a CIDR subnet (`10.0.0.0/24`, `fd00:1::/64`). Rejects text that is not a CIDR
/// ([`ValidationError::Cidr`]) and subnets with host bits set, such as `10.0.0.1/24`
/// ([`ValidationError::HostBits`], which names the subnet that was probably meant).
pub fn parse_subnet(text: &str) -> Result<IpNet, ValidationError> {
    let net: IpNet = match text.trim().parse() {
        Ok(net) => net,
        Err(source) => return Err(ValidationError::Cidr { field: "subnet", value: text.to_owned(), source }),
    };
    check_host_bits(net)?;
    Ok(net)
}

fn check_host_bits(net: IpNet) -> Result<(), ValidationError> {
    if net.addr() != net.network() {
        return Err(ValidationError::HostBits { field: "subnet", value: net, network: net.trunc() });
    }
    Ok(())
}

/// Checks a network name by [`NetworkName`]'s rules (it names the state file).
pub fn validate_network_name(name: &str) -> Result<(), ValidationError> {
    NetworkName::validate(name)
}

/// Validates the pools of `network` and returns them with every gateway resolved (the first
/// host address when `None`): at least one pool, no host bits, room for a gateway plus one
/// address, gateway inside its subnet and not its network, broadcast or anycast address, no two
/// pools overlapping. Pure: the state directory is not consulted (overlap with other networks
/// is checked by [`Ipam::add_network`](super::Ipam::add_network)).
pub fn validate_pools(network: &str, pools: &[Pool]) -> Result<Vec<Pool>, ValidationError> {
    Ok(resolve_pools(network, pools)?
        .into_iter()
        .map(|p| Pool { range: p.range, ..Pool::with_gateway(p.subnet, p.gateway) })
        .collect())
}

/// [`validate_pools`], as [`ResolvedPool`]s.
pub(crate) fn resolve_pools(network: &str, pools: &[Pool]) -> Result<Vec<ResolvedPool>, ValidationError> {
    if pools.is_empty() {
        return Err(ValidationError::NoSubnets { network: network.to_owned() });
    }
    let mut out: Vec<ResolvedPool> = Vec::with_capacity(pools.len());
    for pool in pools {
        let resolved = validate_pool(network, pool)?;
        if let Some(other) = out.iter().find(|o| overlaps(&o.subnet, &resolved.subnet)) {
            return Err(ValidationError::OverlappingSubnets {
                network: network.to_owned(),
                subnet: other.subnet,
                other: resolved.subnet,
            });
        }
        out.push(resolved);
    }
    Ok(out)
}

/// A validated pool: subnet without host bits, gateway resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResolvedPool {
    /// The subnet.
    pub(crate) subnet: IpNet,
    /// The gateway.
    pub(crate) gateway: IpAddr,
    /// The part of the subnet addresses are handed out from (`None`: all of it).
    pub(crate) range: Option<IpNet>,
}

fn validate_pool(network: &str, pool: &Pool) -> Result<ResolvedPool, ValidationError> {
    let subnet = pool.subnet;
    check_host_bits(subnet)?;
    if subnet.max_prefix_len() - subnet.prefix_len() < 2 {
        return Err(ValidationError::SubnetTooSmall { network: network.to_owned(), subnet });
    }
    let (first, _) = host_range(&subnet);
    let gateway = match pool.gateway {
        Some(g) => g,
        None => from_u128(&subnet, first),
    };
    if !subnet.contains(&gateway) {
        return Err(ValidationError::GatewayOutsideSubnet { network: network.to_owned(), gateway, subnet });
    }
    if let Some(kind) = reserved_by_subnet(&subnet, gateway) {
        return Err(ValidationError::GatewayReserved { network: network.to_owned(), gateway, subnet, kind });
    }
    if let Some(range) = pool.range {
        check_host_bits(range)?;
        if range.addr().is_ipv4() != subnet.addr().is_ipv4() || !subnet.contains(&range) {
            return Err(ValidationError::RangeOutsideSubnet { network: network.to_owned(), range, subnet });
        }
    }
    Ok(ResolvedPool { subnet, gateway, range: pool.range })
}

/// Whether two subnets share an address (CIDR blocks are nested or disjoint).
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The address as a number (IPv4 in the low 32 bits).
pub(crate) fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of `subnet`'s family with value `n` (which must fit the family).
pub(crate) fn from_u128(subnet: &IpNet, n: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The first and last address that may be handed out (or be the gateway): the subnet minus its
/// network address and, for IPv4, its broadcast address. Only for subnets that passed
/// validation (at least 2 host bits).
pub(crate) fn host_range(subnet: &IpNet) -> (u128, u128) {
    let first = to_u128(subnet.network()) + 1;
    let last = match subnet {
        IpNet::V4(_) => to_u128(subnet.broadcast()) - 1,
        IpNet::V6(_) => to_u128(subnet.broadcast()),
    };
    (first, last)
}

/// Which address of the subnet itself (not the gateway) `address` is, if reserved.
pub(crate) fn reserved_by_subnet(subnet: &IpNet, address: IpAddr) -> Option<ReservedKind> {
    match subnet {
        IpNet::V4(_) if address == subnet.network() => Some(ReservedKind::NetworkAddress),
        IpNet::V4(_) if address == subnet.broadcast() => Some(ReservedKind::Broadcast),
        IpNet::V6(_) if address == subnet.network() => Some(ReservedKind::SubnetRouterAnycast),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_subnet_accepts_networks() {
        assert_eq!(parse_subnet("10.0.0.0/24").unwrap(), net("10.0.0.0/24"));
        assert_eq!(parse_subnet(" fd00:1::/64 ").unwrap(), net("fd00:1::/64"));
        assert_eq!(parse_subnet("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
    }

    #[test]
    fn parse_subnet_rejects_host_bits_and_garbage() {
        match parse_subnet("10.0.0.1/24") {
            Err(e @ ValidationError::HostBits { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("10.0.0.1/24") && msg.contains("10.0.0.0/24"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_subnet("fd00::1/64"), Err(ValidationError::HostBits { .. })));
        for bad in ["", "10.0.0.0", "10.0.0.0/33", "10.0.0/24", "fd00::/129", "nk", "10.0.0.0/-1"] {
            assert!(matches!(parse_subnet(bad), Err(ValidationError::Cidr { .. })), "{bad}");
        }
    }

    #[test]
    fn network_names() {
        for good in ["a", "nk-br0", "net_1.v2", "0"] {
            validate_network_name(good).unwrap();
        }
        let long = "a".repeat(MAX_NETWORK_NAME + 1);
        for bad in ["", ".lock", "-x", "a/b", "..", "a b", "ä", long.as_str()] {
            assert!(matches!(validate_network_name(bad), Err(ValidationError::NetworkName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn pools_resolve_the_default_gateway() {
        let pools = validate_pools("n", &[Pool::new(net("10.0.0.0/24")), Pool::new(net("fd00::/64"))]).unwrap();
        assert_eq!(pools[0].gateway, Some(ip("10.0.0.1")));
        assert_eq!(pools[1].gateway, Some(ip("fd00::1")));
        let pools = validate_pools("n", &[Pool::with_gateway(net("10.0.0.0/24"), ip("10.0.0.254"))]).unwrap();
        assert_eq!(pools[0].gateway, Some(ip("10.0.0.254")));
    }

    #[test]
    fn pool_errors() {
        assert!(matches!(validate_pools("n", &[]), Err(ValidationError::NoSubnets { .. })));
        let host_bits = Pool::new(IpNet::new(ip("10.0.0.1"), 24).unwrap());
        assert!(matches!(validate_pools("n", &[host_bits]), Err(ValidationError::HostBits { .. })));
        let outside = Pool::with_gateway(net("10.0.0.0/24"), ip("10.0.1.1"));
        assert!(matches!(validate_pools("n", &[outside]), Err(ValidationError::GatewayOutsideSubnet { .. })));
        let family = Pool::with_gateway(net("10.0.0.0/24"), ip("fd00::1"));
        assert!(matches!(validate_pools("n", &[family]), Err(ValidationError::GatewayOutsideSubnet { .. })));
        for (gw, kind) in [("10.0.0.0", ReservedKind::NetworkAddress), ("10.0.0.255", ReservedKind::Broadcast)] {
            let p = Pool::with_gateway(net("10.0.0.0/24"), ip(gw));
            match validate_pools("n", &[p]) {
                Err(ValidationError::GatewayReserved { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{other:?}"),
            }
        }
        let p = Pool::with_gateway(net("fd00::/64"), ip("fd00::"));
        assert!(matches!(
            validate_pools("n", &[p]),
            Err(ValidationError::GatewayReserved { kind: ReservedKind::SubnetRouterAnycast, .. })
        ));
        // The last IPv6 address is a host address (no broadcast in IPv6).
        validate_pools("n", &[Pool::with_gateway(net("fd00::/64"), ip("fd00::ffff:ffff:ffff:ffff"))]).unwrap();
        for small in ["10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::/128"] {
            let p = Pool::new(IpNet::new(net(small).network(), net(small).prefix_len()).unwrap());
            assert!(matches!(validate_pools("n", &[p]), Err(ValidationError::SubnetTooSmall { .. })), "{small}");
        }
        validate_pools("n", &[Pool::new(net("10.0.0.0/30"))]).unwrap();
        validate_pools("n", &[Pool::new(net("fd00::/126"))]).unwrap();
    }

    #[test]
    fn overlapping_pools() {
        let r = validate_pools("n", &[Pool::new(net("10.0.0.0/16")), Pool::new(net("10.0.5.0/24"))]);
        match r {
            Err(e @ ValidationError::OverlappingSubnets { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("10.0.0.0/16") && msg.contains("10.0.5.0/24"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        // Disjoint pools and pools of different families are fine.
        validate_pools("n", &[Pool::new(net("10.0.0.0/24")), Pool::new(net("10.0.1.0/24")), Pool::new(net("::/0"))])
            .unwrap();
    }

    #[test]
    fn overlap_is_symmetric_and_family_aware() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.2.0/24")));
        assert!(overlaps(&net("10.1.2.0/24"), &net("10.0.0.0/8")));
        assert!(overlaps(&net("10.1.2.0/24"), &net("10.1.2.0/24")));
        assert!(!overlaps(&net("10.1.2.0/24"), &net("10.1.3.0/24")));
        assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
    }

    #[test]
    fn host_ranges() {
        let s = net("10.0.0.0/30");
        assert_eq!(host_range(&s), (to_u128(ip("10.0.0.1")), to_u128(ip("10.0.0.2"))));
        let s = net("fd00::/126");
        assert_eq!(host_range(&s), (to_u128(ip("fd00::1")), to_u128(ip("fd00::3"))));
        let s = net("::/0");
        assert_eq!(host_range(&s), (1, u128::MAX));
        assert_eq!(from_u128(&net("10.0.0.0/8"), to_u128(ip("10.1.2.3"))), ip("10.1.2.3"));
    }
}
