//! Interface addresses: `RTM_NEWADDR` / `RTM_DELADDR` bodies and decoding dumps.

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope};

/// The body adding (`add`) or deleting an address on link `index`.
///
/// IPv4 carries `IFA_LOCAL` and `IFA_ADDRESS` (both the address: no peer), plus the
/// subnet broadcast when adding a prefix shorter than /31; addresses in 127.0.0.0/8 get
/// host scope as with iproute2. IPv6 carries `IFA_ADDRESS` and `IFA_F_NODAD`, so the
/// address is usable at once instead of after duplicate address detection.
pub(super) fn address_message(index: u32, address: IpNet, add: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = address.prefix_len();
    match address {
        IpNet::V4(net) => {
            let ip = net.addr();
            msg.header.family = AddressFamily::Inet;
            if ip.is_loopback() {
                msg.header.scope = AddressScope::Host;
            }
            msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
            msg.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
            if add && net.prefix_len() < 31 {
                msg.attributes.push(AddressAttribute::Broadcast(net.broadcast()));
            }
        }
        IpNet::V6(net) => {
            msg.header.family = AddressFamily::Inet6;
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Address(IpAddr::V6(net.addr())));
        }
    }
    msg
}

/// The body of an address dump limited (with strict checking) to link `index`.
pub(super) fn dump_message(index: u32) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg
}

/// Decodes one `RTM_NEWADDR` answer: the address if it belongs to link `index`.
pub(super) fn parse_address(payload: &[u8], index: u32) -> Result<Option<IpNet>, String> {
    let msg = AddressMessage::parse(payload).map_err(|e| e.to_string())?;
    if msg.header.index != index {
        return Ok(None);
    }
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // The interface's own address is IFA_LOCAL when present (IFA_ADDRESS is then the peer
    // of a point-to-point link); IPv6 reports only IFA_ADDRESS unless a peer is set.
    match local.or(address) {
        Some(ip) => IpNet::new(ip, msg.header.prefix_len).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// The IPv4 broadcast address of a subnet (used by tests of [`address_message`]).
#[cfg(test)]
fn broadcast_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Broadcast(b) => Some(*b),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;

    fn round_trip(msg: &AddressMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn ipv4_carries_local_address_and_broadcast() {
        let net: IpNet = "10.1.2.3/24".parse().unwrap();
        let msg = address_message(5, net, true);
        assert_eq!(broadcast_of(&msg), Some("10.1.2.255".parse().unwrap()));
        assert_eq!(parse_address(&round_trip(&msg), 5).unwrap(), Some(net));
        assert_eq!(parse_address(&round_trip(&msg), 6).unwrap(), None);
        assert_eq!(broadcast_of(&address_message(5, "10.1.2.3/31".parse().unwrap(), true)), None);
        assert_eq!(broadcast_of(&address_message(5, net, false)), None);
        assert_eq!(address_message(1, "127.0.0.2/8".parse().unwrap(), true).header.scope, AddressScope::Host);
    }

    #[test]
    fn ipv6_is_nodad() {
        let net: IpNet = "fd00::5/64".parse().unwrap();
        let msg = address_message(3, net, true);
        assert!(msg.header.flags.contains(AddressHeaderFlags::Nodad));
        assert_eq!(parse_address(&round_trip(&msg), 3).unwrap(), Some(net));
    }
}
