//! Routes of the main table: `RTM_NEWROUTE` / `RTM_DELROUTE` bodies and decoding dumps.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType, RouteVia,
};

use super::{Result, Route};
use crate::validation::{AddressRule, ValidationError};

impl Route {
    /// Whether this route is IPv6: from the destination, else the gateway, else the
    /// [`Route::ipv6`] flag (which only matters when both are `None`).
    pub fn is_ipv6(&self) -> bool {
        match (self.destination, self.gateway) {
            (Some(d), _) => matches!(d, IpNet::V6(_)),
            (None, Some(g)) => g.is_ipv6(),
            (None, None) => self.ipv6,
        }
    }

    /// Checks the route without the kernel: destination and gateway of one family and no
    /// host bits in the destination. (Adding also needs a gateway or an interface.)
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let (Some(d), Some(g)) = (self.destination, self.gateway)
            && matches!(d, IpNet::V6(_)) != g.is_ipv6()
        {
            return Err(ValidationError::Address {
                field: "route gateway",
                value: g,
                rule: AddressRule::FamilyMismatch { other: d.addr() },
            });
        }
        if let Some(d) = self.destination
            && d.trunc() != d
        {
            return Err(ValidationError::HostBits { field: "route destination", value: d, network: d.trunc() });
        }
        Ok(())
    }

    /// [`Route::validate`], plus: a route to add needs a gateway or an output interface.
    pub(super) fn validate_for_add(&self) -> Result<(), ValidationError> {
        self.validate()?;
        if self.gateway.is_none() && self.oif.is_none() {
            return Err(ValidationError::RouteWithoutTarget { route: self.to_string() });
        }
        Ok(())
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.destination {
            Some(d) if d.prefix_len() > 0 => write!(f, "{d}")?,
            _ => write!(f, "default{}", if self.is_ipv6() { " (ipv6)" } else { "" })?,
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " oif {o}")?;
        }
        Ok(())
    }
}

fn family(ipv6: bool) -> AddressFamily {
    if ipv6 { AddressFamily::Inet6 } else { AddressFamily::Inet }
}

/// The body adding (`add`) or deleting a main-table route (validated by the caller).
///
/// Adding mirrors `ip route add`: protocol `boot`, type unicast, scope link without a
/// gateway and universe with one. Deleting leaves protocol and type unset and scope
/// "nowhere", which the kernel reads as "any".
pub(super) fn route_message(route: &Route, add: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family(route.is_ipv6());
    h.table = RouteHeader::RT_TABLE_MAIN;
    if add {
        h.protocol = RouteProtocol::Boot;
        h.kind = RouteType::Unicast;
        h.scope = if route.gateway.is_some() { RouteScope::Universe } else { RouteScope::Link };
    } else {
        h.scope = RouteScope::NoWhere;
    }
    if let Some(d) = route.destination.filter(|d| d.prefix_len() > 0) {
        h.destination_prefix_length = d.prefix_len();
        msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(d.addr())));
    }
    if let Some(g) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

/// The body of a route dump limited (with strict checking) to unicast routes of the main
/// table of one family.
pub(super) fn dump_message(ipv6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(ipv6);
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.kind = RouteType::Unicast;
    msg
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Decodes one `RTM_NEWROUTE` answer: the route if it is a unicast route of the main
/// table of the wanted family (the kernel filters too, but not without strict checking).
pub(super) fn parse_route(payload: &[u8], ipv6: bool) -> std::result::Result<Option<Route>, String> {
    let msg = RouteMessage::parse(payload).map_err(|e| e.to_string())?;
    let h = &msg.header;
    if h.address_family != family(ipv6) || h.kind != RouteType::Unicast {
        return Ok(None);
    }
    let mut table = u32::from(h.table);
    let mut destination = None;
    let mut gateway = None;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(o) => oif = Some(*o),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return Ok(None);
    }
    let destination = match destination {
        Some(ip) if h.destination_prefix_length > 0 => {
            Some(IpNet::new(ip, h.destination_prefix_length).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    Ok(Some(Route { destination, gateway, oif, ipv6 }))
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;

    fn bytes(msg: &RouteMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn default_route_round_trips() {
        let r = Route { destination: None, gateway: Some("10.0.0.1".parse().unwrap()), oif: Some(4), ipv6: false };
        r.validate().unwrap();
        let msg = route_message(&r, true);
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(parse_route(&bytes(&msg), false).unwrap(), Some(r.clone()));
        assert_eq!(parse_route(&bytes(&msg), true).unwrap(), None);
        assert_eq!(r.to_string(), "default via 10.0.0.1 oif 4");
    }

    #[test]
    fn family_comes_from_addresses_first() {
        let v6 = Route { destination: None, gateway: Some("fd00::1".parse().unwrap()), oif: None, ipv6: false };
        assert!(v6.is_ipv6());
        let bare = Route { destination: None, gateway: None, oif: Some(1), ipv6: true };
        assert!(bare.is_ipv6());
        let net = Route { destination: Some("10.0.0.0/8".parse().unwrap()), gateway: None, oif: Some(2), ipv6: true };
        assert!(!net.is_ipv6());
        let msg = route_message(&net, true);
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(parse_route(&bytes(&msg), false).unwrap(), Some(Route { ipv6: false, ..net }));
    }

    #[test]
    fn validation() {
        let host_bits =
            Route { destination: Some("10.0.0.1/8".parse().unwrap()), gateway: None, oif: Some(1), ipv6: false };
        assert!(host_bits.validate().is_err());
        let mixed = Route {
            destination: Some("10.0.0.0/8".parse().unwrap()),
            gateway: Some("fd00::1".parse().unwrap()),
            oif: None,
            ipv6: false,
        };
        assert!(mixed.validate().is_err());
        let nowhere = Route { destination: None, gateway: None, oif: None, ipv6: false };
        assert!(nowhere.validate().is_ok(), "fine to delete");
        assert!(nowhere.validate_for_add().is_err());
    }
}
