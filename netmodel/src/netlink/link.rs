//! Links: validation, `RTM_NEWLINK` building, and decoding what the kernel reports.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::NlasIterator;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader,
    LinkInfo as NlLinkInfo, LinkMessage, MacVlanMode as NlMacVlanMode,
};

use super::socket::u32_value;
use super::{LinkInfo, LinkKind, MacvlanMode, NewLink, Result};
use crate::ifname::IfName;
use crate::validation::{AddressRule, ValidationError, check_mac};

/// Longest interface name (`IFNAMSIZ - 1`; the same as [`crate::MAX_IFNAME`]).
pub const MAX_LINK_NAME: usize = crate::ifname::MAX_IFNAME;

/// Default VXLAN UDP port (IANA); the kernel's own default is the pre-IANA 8472.
pub const VXLAN_PORT: u16 = 4789;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_GROUP: u16 = 27;
const IFLA_INFO_KIND: u16 = 1;

/// Checks an interface name by the crate's one rule set ([`crate::IfName`]: the kernel's
/// `dev_valid_name` — 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..` — and no
/// control character or `%`, which would make it a template the kernel fills in, e.g.
/// `veth%d`).
pub fn validate_link_name(name: &str) -> Result<(), ValidationError> {
    IfName::for_field("link name", name).map(drop)
}

impl NewLink<'_> {
    /// Checks everything that can be checked without the kernel (names, MACs, VNI range,
    /// address families). [`super::Netlink::add_link`] calls it before sending anything.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_link_name(self.name)?;
        if let Some(mac) = &self.mac {
            check_mac("mac", mac)?;
        }
        check_mtu("mtu", self.mtu)?;
        match &self.kind {
            LinkKind::Veth { peer_name, peer_mac, peer_mtu, .. } => {
                validate_link_name(peer_name)?;
                if let Some(mac) = peer_mac {
                    check_mac("peer mac", mac)?;
                }
                check_mtu("peer mtu", *peer_mtu)?;
            }
            LinkKind::Macvlan { parent, .. } => {
                if *parent == 0 {
                    return Err(ValidationError::ZeroIndex { field: "macvlan parent" });
                }
            }
            LinkKind::Vxlan { vni, local, remote, .. } => {
                if *vni > 0x00ff_ffff {
                    return Err(ValidationError::Vni { value: *vni });
                }
                if let (Some(l), Some(r)) = (local, remote)
                    && l.is_ipv4() != r.is_ipv4()
                {
                    return Err(ValidationError::Address {
                        field: "vxlan remote",
                        value: *r,
                        rule: AddressRule::FamilyMismatch { other: *l },
                    });
                }
            }
            LinkKind::Bridge | LinkKind::Dummy => {}
        }
        Ok(())
    }
}

/// An MTU of a link request: positive (the kernel checks the device's own range).
fn check_mtu(field: &'static str, mtu: Option<u32>) -> Result<(), ValidationError> {
    match mtu {
        Some(0) => Err(ValidationError::Mtu { field, value: 0, min: 1, max: u32::MAX }),
        _ => Ok(()),
    }
}

fn netns_attr(fd: BorrowedFd<'_>) -> LinkAttribute {
    LinkAttribute::NetNsFd(fd.as_raw_fd())
}

/// The `RTM_NEWLINK` message creating `link` (validated by the caller).
pub(super) fn new_link_message(link: &NewLink<'_>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    if link.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    let attrs = &mut msg.attributes;
    attrs.push(LinkAttribute::IfName(link.name.to_owned()));
    if let Some(mtu) = link.mtu {
        attrs.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = link.mac {
        attrs.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(master) = link.master {
        attrs.push(LinkAttribute::Controller(master));
    }
    if let Some(fd) = link.netns {
        attrs.push(netns_attr(fd));
    }
    let (kind, data) = match &link.kind {
        LinkKind::Veth { peer_name, peer_netns, peer_mtu, peer_mac } => {
            let mut peer = LinkMessage::default();
            peer.attributes.push(LinkAttribute::IfName((*peer_name).to_owned()));
            if let Some(fd) = peer_netns {
                peer.attributes.push(netns_attr(*fd));
            }
            if let Some(mtu) = peer_mtu {
                peer.attributes.push(LinkAttribute::Mtu(*mtu));
            }
            if let Some(mac) = peer_mac {
                peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
            }
            (InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(peer))))
        }
        LinkKind::Bridge => (InfoKind::Bridge, None),
        LinkKind::Dummy => (InfoKind::Dummy, None),
        LinkKind::Macvlan { parent, mode } => {
            attrs.push(LinkAttribute::Link(*parent));
            (InfoKind::MacVlan, Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(macvlan_mode(*mode))])))
        }
        LinkKind::Vxlan { vni, local, remote, dev, port, static_fdb } => {
            let mut v = vec![InfoVxlan::Id(*vni)];
            match local {
                Some(IpAddr::V4(a)) => v.push(InfoVxlan::Local(*a)),
                Some(IpAddr::V6(a)) => v.push(InfoVxlan::Local6(*a)),
                None => {}
            }
            // `remote` and `group` are the same attribute: the kernel tells them apart by
            // whether the address is multicast.
            match remote {
                Some(IpAddr::V4(a)) => v.push(InfoVxlan::Group(*a)),
                Some(IpAddr::V6(a)) => v.push(InfoVxlan::Group6(*a)),
                None => {}
            }
            if let Some(dev) = dev {
                v.push(InfoVxlan::Link(*dev));
            }
            v.push(InfoVxlan::Port(port.unwrap_or(VXLAN_PORT)));
            if *static_fdb {
                v.push(InfoVxlan::Learning(false));
                v.push(InfoVxlan::Proxy(true));
            }
            (InfoKind::Vxlan, Some(InfoData::Vxlan(v)))
        }
    };
    let mut info = vec![NlLinkInfo::Kind(kind)];
    if let Some(data) = data {
        info.push(NlLinkInfo::Data(data));
    }
    attrs.push(LinkAttribute::LinkInfo(info));
    msg
}

fn macvlan_mode(mode: MacvlanMode) -> NlMacVlanMode {
    match mode {
        MacvlanMode::Private => NlMacVlanMode::Private,
        MacvlanMode::Vepa => NlMacVlanMode::Vepa,
        MacvlanMode::Bridge => NlMacVlanMode::Bridge,
        MacvlanMode::Passthru => NlMacVlanMode::Passthrough,
    }
}

/// An `RTM_SETLINK`/`RTM_GETLINK`/`RTM_DELLINK` body addressing a link by index.
pub(super) fn by_index(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes = attributes;
    msg
}

/// The body of an `RTM_SETLINK` changing only `IFF_UP`.
pub(super) fn set_flags(index: u32, up: bool) -> LinkMessage {
    let mut msg = by_index(index, Vec::new());
    msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
    msg.header.change_mask = LinkFlags::Up;
    msg
}

/// Asks the kernel to leave statistics out of link answers (we report none of them).
pub(super) fn skip_stats() -> LinkAttribute {
    LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
}

/// Decodes the parts of an `RTM_NEWLINK` answer that [`LinkInfo`] reports. Only these
/// attributes are looked at (a link answer carries kilobytes of configuration and
/// statistics that would otherwise be parsed into allocations for nothing).
pub(super) fn parse_link(payload: &[u8]) -> std::result::Result<LinkInfo, String> {
    let header = LinkHeader::parse(payload).map_err(|e| e.to_string())?;
    let mut info = LinkInfo {
        index: header.index,
        name: String::new(),
        kind: None,
        mtu: 0,
        mac: None,
        up: header.flags.contains(LinkFlags::Up),
        master: None,
    };
    let attrs = payload.get(16..).unwrap_or(&[]);
    for nla in NlasIterator::new(attrs) {
        let nla = nla.map_err(|e| e.to_string())?;
        let value = nla.value();
        match nla.kind() {
            IFLA_IFNAME => info.name = c_string(value),
            IFLA_MTU => info.mtu = u32_value(value).unwrap_or(0),
            IFLA_ADDRESS => info.mac = value.try_into().ok(),
            IFLA_MASTER => info.master = u32_value(value).filter(|&m| m != 0),
            IFLA_LINKINFO => {
                for inner in NlasIterator::new(value) {
                    let inner = inner.map_err(|e| e.to_string())?;
                    if inner.kind() == IFLA_INFO_KIND {
                        info.kind = Some(c_string(inner.value()));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Decodes only the index and `IFLA_GROUP` of an `RTM_NEWLINK` answer.
pub(super) fn parse_index_group(payload: &[u8]) -> std::result::Result<(u32, u32), String> {
    let header = LinkHeader::parse(payload).map_err(|e| e.to_string())?;
    let mut group = 0;
    for nla in NlasIterator::new(payload.get(16..).unwrap_or(&[])) {
        let nla = nla.map_err(|e| e.to_string())?;
        if nla.kind() == IFLA_GROUP {
            group = u32_value(nla.value()).unwrap_or(0);
        }
    }
    Ok((header.index, group))
}

/// A random link group number that none of `used` has (and not 0, the default group).
/// The high bit is set to stay clear of the small numbers people assign by hand.
pub(super) fn unused_group(used: impl Iterator<Item = u32> + Clone) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut n = 0u64;
    loop {
        let mut h = state.build_hasher();
        h.write_u64(n);
        let candidate = (h.finish() as u32) | 0x8000_0000;
        if !used.clone().any(|g| g == candidate) {
            return candidate;
        }
        n += 1;
    }
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;

    #[test]
    fn link_names() {
        for good in ["a", "nk-veth0", "eth0.100", "x".repeat(15).as_str()] {
            assert!(validate_link_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\tb", "a:1", "nk%d", "x".repeat(16).as_str(), "a\0"] {
            assert!(matches!(validate_link_name(bad), Err(ValidationError::IfName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn new_link_validation() {
        let veth = |peer| {
            NewLink::new("nk0", LinkKind::Veth { peer_name: peer, peer_netns: None, peer_mtu: None, peer_mac: None })
        };
        assert!(veth("nk1").validate().is_ok());
        assert!(veth("0123456789abcdef").validate().is_err());
        let mut l = NewLink::new("nk0", LinkKind::Dummy);
        l.mac = Some([1, 0, 0, 0, 0, 1]);
        assert!(l.validate().is_err(), "multicast MAC");
        l.mac = Some([2, 0, 0, 0, 0, 1]);
        assert!(l.validate().is_ok());
        let vx = |vni, local: &str, remote: &str| {
            NewLink::new(
                "nk0",
                LinkKind::Vxlan {
                    vni,
                    local: Some(local.parse().unwrap()),
                    remote: Some(remote.parse().unwrap()),
                    dev: None,
                    port: None,
                    static_fdb: false,
                },
            )
            .validate()
        };
        assert!(vx(42, "10.0.0.1", "10.0.0.2").is_ok());
        assert!(vx(1 << 24, "10.0.0.1", "10.0.0.2").is_err());
        assert!(vx(42, "10.0.0.1", "fd00::2").is_err());
        assert!(NewLink::new("nk0", LinkKind::Macvlan { parent: 0, mode: MacvlanMode::Bridge }).validate().is_err());
    }

    #[test]
    fn new_link_round_trips_through_the_parser() {
        let mut l = NewLink::new("nk-br", LinkKind::Bridge);
        l.mtu = Some(1400);
        l.mac = Some([2, 1, 2, 3, 4, 5]);
        l.master = Some(9);
        l.up = true;
        let msg = new_link_message(&l);
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        let info = parse_link(&buf).unwrap();
        assert_eq!(info.name, "nk-br");
        assert_eq!(info.mtu, 1400);
        assert_eq!(info.mac, Some([2, 1, 2, 3, 4, 5]));
        assert_eq!(info.master, Some(9));
        assert_eq!(info.kind.as_deref(), Some("bridge"));
        assert!(info.up);
    }

    #[test]
    fn vxlan_port_defaults_to_iana() {
        let l = NewLink::new(
            "nk-vx",
            LinkKind::Vxlan { vni: 7, local: None, remote: None, dev: None, port: None, static_fdb: false },
        );
        let msg = new_link_message(&l);
        let has_port = msg.attributes.iter().any(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| match i {
                NlLinkInfo::Data(InfoData::Vxlan(v)) => v.contains(&InfoVxlan::Port(VXLAN_PORT)),
                _ => false,
            }),
            _ => false,
        });
        assert!(has_port);
    }

    #[test]
    fn unused_groups_avoid_used_ones() {
        let g = unused_group([0u32, 1, 2].into_iter());
        assert!(g & 0x8000_0000 != 0);
        assert_ne!(unused_group([g].into_iter()), g);
    }
}
