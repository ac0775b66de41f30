//! Neighbour and forwarding-database entries: `RTM_NEWNEIGH` / `RTM_DELNEIGH` bodies and
//! decoding dumps.
//!
//! Two tables share the message type:
//!
//! - the *FDB* of a device (`AF_BRIDGE`, `NTF_SELF`): on a VXLAN device, "frames for this MAC
//!   go to this remote VTEP" (`NDA_LLADDR` + `NDA_DST`), what `bridge fdb add MAC dev vx dst
//!   IP self permanent` writes; the all-zeros MAC is the flood list (`bridge fdb append`);
//! - the *neighbour* (ARP / NDP) table (`AF_INET` / `AF_INET6`): "this IP has this MAC"
//!   (`NDA_DST` + `NDA_LLADDR`), what `ip neigh add IP lladdr MAC dev vx nud permanent`
//!   writes. A VXLAN device with `proxy` answers ARP and neighbour solicitations from it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::NlasIterator;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourHeader, NeighbourMessage, NeighbourState,
};

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `sizeof(struct ndmsg)`.
const NDMSG_LEN: usize = 12;
/// `NUD_PERMANENT`.
const NUD_PERMANENT: u16 = 0x80;
/// `NTF_SELF`.
const NTF_SELF: u8 = 0x02;

/// An entry of a device's forwarding database (`bridge fdb show dev DEV`), as the kernel
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FdbEntry {
    /// The device.
    pub index: u32,
    /// The MAC address (all zeros: the flood list entry).
    pub mac: [u8; 6],
    /// The remote VTEP the frames go to (VXLAN), if any.
    pub dst: Option<IpAddr>,
    /// `NUD_PERMANENT` (static, never aged out).
    pub permanent: bool,
}

/// An entry of the neighbour (ARP / NDP) table (`ip neigh show dev DEV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeighbourEntry {
    /// The device.
    pub index: u32,
    /// The IP address.
    pub ip: IpAddr,
    /// Its link-layer address, if resolved.
    pub mac: Option<[u8; 6]>,
    /// `NUD_PERMANENT`.
    pub permanent: bool,
}

fn destination(ip: IpAddr) -> NeighbourAttribute {
    NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    })
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet }
}

/// The body adding (`NUD_PERMANENT`) or deleting the FDB entry `mac -> dst` of device `index`.
pub(super) fn fdb_message(index: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header = NeighbourHeader {
        family: AddressFamily::Bridge,
        ifindex: index,
        state: NeighbourState::Permanent,
        flags: NeighbourFlags::Own,
        ..NeighbourHeader::default()
    };
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg.attributes.push(destination(dst));
    msg
}

/// The body adding (`mac: Some`, `NUD_PERMANENT`) or deleting the neighbour entry of `ip` on
/// device `index`.
pub(super) fn neighbour_message(index: u32, ip: IpAddr, mac: Option<[u8; 6]>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header = NeighbourHeader {
        family: family_of(ip),
        ifindex: index,
        state: if mac.is_some() { NeighbourState::Permanent } else { NeighbourState::default() },
        ..NeighbourHeader::default()
    };
    msg.attributes.push(destination(ip));
    if let Some(mac) = mac {
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    msg
}

/// The body of a dump of one family's table (filtered here, by device, when decoded).
pub(super) fn dump_message(family: AddressFamily) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg
}

struct Raw {
    family: u8,
    index: u32,
    state: u16,
    flags: u8,
    dst: Option<IpAddr>,
    lladdr: Option<[u8; 6]>,
}

/// Decodes the `ndmsg` header and the two attributes we report (the packet crate decodes
/// `NDA_DST` by the message's family, which for the FDB is `AF_BRIDGE` though the address is
/// an IP one: so by length here).
fn parse_raw(payload: &[u8]) -> Result<Raw, String> {
    if payload.len() < NDMSG_LEN {
        return Err(format!("neighbour message of {} bytes", payload.len()));
    }
    let mut raw = Raw {
        family: payload[0],
        index: u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]),
        state: u16::from_ne_bytes([payload[8], payload[9]]),
        flags: payload[10],
        dst: None,
        lladdr: None,
    };
    for nla in NlasIterator::new(&payload[NDMSG_LEN..]) {
        let nla = nla.map_err(|e| e.to_string())?;
        let v = nla.value();
        match nla.kind() {
            NDA_DST => {
                raw.dst = match v.len() {
                    4 => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                    16 => <[u8; 16]>::try_from(v).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
                    _ => None,
                }
            }
            NDA_LLADDR => raw.lladdr = v.try_into().ok(),
            _ => {}
        }
    }
    Ok(raw)
}

/// Decodes one `RTM_NEWNEIGH` of an FDB dump: the entry if it is device `index`'s own
/// (`NTF_SELF`).
pub(super) fn parse_fdb(payload: &[u8], index: u32) -> Result<Option<FdbEntry>, String> {
    let raw = parse_raw(payload)?;
    if raw.family != libc::AF_BRIDGE as u8 || raw.index != index || raw.flags & NTF_SELF == 0 {
        return Ok(None);
    }
    let Some(mac) = raw.lladdr else { return Ok(None) };
    Ok(Some(FdbEntry { index, mac, dst: raw.dst, permanent: raw.state & NUD_PERMANENT != 0 }))
}

/// Decodes one `RTM_NEWNEIGH` of a neighbour dump: the entry if it is on device `index`.
pub(super) fn parse_neighbour(payload: &[u8], index: u32) -> Result<Option<NeighbourEntry>, String> {
    let raw = parse_raw(payload)?;
    let inet = raw.family == libc::AF_INET as u8 || raw.family == libc::AF_INET6 as u8;
    if !inet || raw.index != index {
        return Ok(None);
    }
    let Some(ip) = raw.dst else { return Ok(None) };
    Ok(Some(NeighbourEntry { index, ip, mac: raw.lladdr, permanent: raw.state & NUD_PERMANENT != 0 }))
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;

    fn bytes(msg: &NeighbourMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn fdb_entries_round_trip() {
        let mac = [2, 0, 0, 0, 0, 7];
        let dst: IpAddr = "192.0.2.2".parse().unwrap();
        let buf = bytes(&fdb_message(9, mac, dst));
        let e = parse_fdb(&buf, 9).unwrap().unwrap();
        assert_eq!((e.mac, e.dst, e.permanent), (mac, Some(dst), true));
        assert_eq!(parse_fdb(&buf, 8).unwrap(), None);
        assert_eq!(parse_neighbour(&buf, 9).unwrap(), None, "not an ARP entry");
    }

    #[test]
    fn neighbour_entries_round_trip() {
        let mac = [2, 0, 0, 0, 0, 8];
        for ip in ["10.0.0.3", "fd00::3"] {
            let ip: IpAddr = ip.parse().unwrap();
            let buf = bytes(&neighbour_message(4, ip, Some(mac)));
            let e = parse_neighbour(&buf, 4).unwrap().unwrap();
            assert_eq!((e.ip, e.mac, e.permanent), (ip, Some(mac), true));
            assert_eq!(parse_fdb(&buf, 4).unwrap(), None);
        }
        assert!(parse_raw(&[0; 4]).is_err());
    }
}
