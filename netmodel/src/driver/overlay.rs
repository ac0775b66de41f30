//! The overlay driver: one layer-2 network spanning several hosts, each host's part a Linux
//! bridge joined to the others by a VXLAN device, with statically programmed forwarding
//! (Docker's `overlay` driver without its gossip: the caller carries what it would).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use nook_ns::NsFd;
use serde::{Deserialize, Serialize};

use super::bridge::{BridgeDriver, name_hash};
use super::{BridgeOptions, Driver, EndpointConfig, EndpointLink, NetworkDriver};
use crate::error::{Error, Result};
use crate::firewall::{FirewallConflict, PortRule};
use crate::host::Host;
use crate::ifname::IfName;
use crate::netlink::{FdbEntry, LinkKind, NeighbourEntry, Netlink, NewLink, VXLAN_PORT};
use crate::spec::NetworkSpec;
use crate::validation::{OverlayRule, ValidationError, check_mac};

/// Bytes VXLAN adds to every frame over an IPv4 underlay (outer IPv4 20 + UDP 8 + VXLAN 8 +
/// inner Ethernet 14); over IPv6 it is 20 more.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Bytes VXLAN adds over an IPv6 underlay.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// The options of an overlay network ([`Driver::Overlay`]): what every host of the network
/// shares (the VNI, the port) and what is this host's own (its underlay address, its peers,
/// and — in the spec's subnets — its address range).
///
/// ```
/// use nook_netmodel::driver::OverlayOptions;
///
/// let mut options = OverlayOptions::new(4242, "192.0.2.1".parse().unwrap());
/// options.peer("192.0.2.2".parse().unwrap());
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OverlayOptions {
    /// The VXLAN network identifier (1 to 2^24 - 1), the same on every host of the network.
    pub vni: u32,
    /// This host's underlay address (its VTEP): a link of the host namespace must carry it;
    /// the VXLAN device sends from it, over that link, and takes its MTU from it.
    pub local: IpAddr,
    /// The other hosts' underlay addresses (same family as `local`). Broadcast and multicast
    /// frames other than ARP and neighbour discovery (which the VXLAN device answers itself)
    /// are sent to each of them; remote endpoints must be on one of them.
    #[serde(default)]
    pub peers: Vec<IpAddr>,
    /// The UDP port (default [`VXLAN_PORT`], 4789), the same on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The bridge's name (default: `nk-` + 12 hex digits of a hash of the network's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// The VXLAN device's name (default: `nkv` + 12 hex digits of a hash of the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<String>,
}

impl OverlayOptions {
    /// VNI `vni`, this host's underlay address `local`, no peers yet, port 4789.
    pub fn new(vni: u32, local: IpAddr) -> OverlayOptions {
        OverlayOptions { vni, local, peers: Vec::new(), port: None, bridge: None, vxlan: None }
    }

    /// Adds a peer host (its underlay address).
    pub fn peer(&mut self, address: IpAddr) -> &mut Self {
        self.peers.push(address);
        self
    }

    /// Sets the UDP port.
    pub fn port(&mut self, port: u16) -> &mut Self {
        self.port = Some(port);
        self
    }

    /// The VNI fits 24 bits and is not 0; `local` is a unicast address; the peers are unicast
    /// addresses of `local`'s family, neither `local` nor repeated; the port is not 0; the
    /// link names, when given, are interface names.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |field, value: String, rule| ValidationError::Overlay { network: String::new(), field, value, rule };
        if self.vni == 0 || self.vni > 0x00ff_ffff {
            return Err(bad("vni", self.vni.to_string(), OverlayRule::VniRange));
        }
        if !unicast(self.local) {
            return Err(bad("local", self.local.to_string(), OverlayRule::NotUnicast));
        }
        let mut seen = HashSet::new();
        for &peer in &self.peers {
            if !unicast(peer) || peer.is_ipv4() != self.local.is_ipv4() {
                return Err(bad("peers", peer.to_string(), OverlayRule::PeerFamily));
            }
            if peer == self.local || !seen.insert(peer) {
                return Err(bad("peers", peer.to_string(), OverlayRule::PeerRepeated));
            }
        }
        if self.port == Some(0) {
            return Err(bad("port", "0".into(), OverlayRule::ZeroPort));
        }
        if let Some(b) = &self.bridge {
            IfName::for_field("bridge", b.as_str())?;
        }
        if let Some(v) = &self.vxlan {
            IfName::for_field("vxlan", v.as_str())?;
        }
        Ok(())
    }

    /// The rules on the spec around the options: explicit subnets (every host must use the
    /// same; an automatic one would differ), each with this host's address range
    /// ([`crate::ipam::Pool::range`]) so that no two hosts hand out the same address.
    pub(crate) fn validate_spec(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        let bad = |field, value: String, rule| ValidationError::Overlay {
            network: spec.name.to_string(),
            field,
            value,
            rule,
        };
        self.validate().map_err(|e| match e {
            ValidationError::Overlay { field, value, rule, .. } => bad(field, value, rule),
            e => e,
        })?;
        if spec.subnets.is_empty() {
            return Err(bad("subnets", "[]".into(), OverlayRule::NeedsSubnets));
        }
        if let Some(p) = spec.subnets.iter().find(|p| p.range.is_none()) {
            return Err(bad("subnets", p.subnet.to_string(), OverlayRule::NeedsRange));
        }
        Ok(())
    }

    /// Fills in the default link names of `network`.
    pub(crate) fn resolve(&mut self, network: &str) {
        if self.bridge.is_none() {
            self.bridge = Some(super::bridge::default_bridge_name(network));
        }
        if self.vxlan.is_none() {
            self.vxlan = Some(format!("nkv{:012x}", name_hash(network) >> 16));
        }
    }
}

fn unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST))
}

/// An endpoint on another host of an overlay network: what Docker's gossip would carry, what
/// [`crate::Network::advertise`] reports for a local endpoint and
/// [`crate::Network::add_remote_endpoint`] programs on the other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteEndpoint {
    /// Its address on the overlay network.
    pub ip: IpAddr,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The underlay address (VTEP) of the host it is on.
    pub host: IpAddr,
}

impl RemoteEndpoint {
    /// The endpoint `ip` / `mac` on host `host`.
    pub fn new(ip: IpAddr, mac: [u8; 6], host: IpAddr) -> RemoteEndpoint {
        RemoteEndpoint { ip, mac, host }
    }
}

/// What the kernel holds for remote endpoints on this host's VXLAN device (read back through
/// netlink): [`crate::Network::overlay_entries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverlayEntries {
    /// The device's FDB (MAC -> VTEP; the all-zeros MAC is the flood list, one per peer).
    pub fdb: Vec<FdbEntry>,
    /// Its neighbour entries (IP -> MAC), both families.
    pub neighbours: Vec<NeighbourEntry>,
}

/// `docker network create --driver overlay`, one host's part.
///
/// Setup, in the host namespace: the bridge as for a bridge network (gateway addresses,
/// firewall chains: outbound masquerade and forwarding unless `internal`) with the overlay
/// MTU; then one `RTM_NEWLINK` creating the VXLAN device (VNI, `local` address, the underlay
/// link as its device, the port, `nolearning`, `proxy`, MTU = the underlay link's MTU - 50,
/// or - 70 over IPv6) attached to the bridge and up; then one flood entry (all-zeros MAC,
/// `NLM_F_APPEND`) per peer. Every host carries the gateway address on its own bridge: a
/// sandbox's ARP for it is answered locally and the VXLAN device (`proxy`) never floods ARP.
///
/// Connect: a veth pair on the bridge as for a bridge network, with the overlay MTU (the
/// spec's when given; it must fit inside the encapsulation).
///
/// Remote endpoints ([`crate::Network::add_remote_endpoint`]): a static neighbour entry (IP ->
/// MAC, `NUD_PERMANENT`) and a static FDB entry (MAC -> the remote host's VTEP) on the VXLAN
/// device, both `RTM_NEWNEIGH`.
#[derive(Debug, Default)]
pub struct OverlayDriver {
    bridge: BridgeDriver,
    /// The overlay MTU once known (0: not yet).
    mtu: AtomicU32,
}

impl OverlayDriver {
    /// The driver's name.
    pub const NAME: &'static str = "overlay";

    /// A driver for one network.
    pub fn new() -> OverlayDriver {
        OverlayDriver::default()
    }

    fn options(spec: &NetworkSpec) -> Result<&OverlayOptions, ValidationError> {
        match &spec.driver {
            Driver::Overlay(options) => Ok(options),
            other => Err(ValidationError::WrongDriver { driver: OverlayDriver::NAME, found: other.name().to_owned() }),
        }
    }

    fn vxlan_name(spec: &NetworkSpec) -> Result<&str> {
        OverlayDriver::options(spec)?
            .vxlan
            .as_deref()
            .ok_or_else(|| ValidationError::UnresolvedBridge { network: spec.name.to_string() }.into())
    }

    /// The spec the inner bridge driver builds: the same network with a bridge driver, the
    /// overlay MTU.
    fn bridge_spec(spec: &NetworkSpec, mtu: u32) -> Result<NetworkSpec> {
        let options = OverlayDriver::options(spec)?;
        let mut bridge = spec.clone();
        bridge.driver = Driver::Bridge(BridgeOptions { bridge: options.bridge.clone() });
        bridge.mtu = Some(mtu);
        Ok(bridge)
    }

    /// The underlay link (the one carrying `local`): its index and the overlay MTU it
    /// allows.
    fn underlay(host: &Host, spec: &NetworkSpec) -> Result<(u32, u32)> {
        let options = OverlayDriver::options(spec)?;
        let mut nl = host.netlink();
        for link in nl.links()? {
            if nl.addresses(link.index)?.iter().any(|a| a.addr() == options.local) {
                let overhead = if options.local.is_ipv6() { VXLAN_OVERHEAD_V6 } else { VXLAN_OVERHEAD_V4 };
                return Ok((link.index, link.mtu.saturating_sub(overhead)));
            }
        }
        Err(Error::NoUnderlay { network: spec.name.to_string(), address: options.local })
    }

    /// The MTU of the network's links: the spec's, which must fit the underlay, else the
    /// underlay's minus the encapsulation.
    fn pick_mtu(spec: &NetworkSpec, underlay_mtu: u32) -> Result<u32> {
        match spec.mtu {
            Some(mtu) if mtu > underlay_mtu => {
                Err(ValidationError::Mtu { field: "mtu", value: mtu, min: crate::spec::MIN_MTU, max: underlay_mtu }
                    .into())
            }
            Some(mtu) => Ok(mtu),
            None => Ok(underlay_mtu),
        }
    }

    /// The overlay MTU: cached, else read from the VXLAN device.
    fn mtu(&self, host: &Host, spec: &NetworkSpec) -> Result<u32> {
        let cached = self.mtu.load(Ordering::Relaxed);
        if cached != 0 {
            return Ok(cached);
        }
        let name = OverlayDriver::vxlan_name(spec)?;
        let link = host
            .netlink()
            .link(name)?
            .ok_or_else(|| Error::NetworkIncomplete { network: spec.name.to_string(), link: name.to_owned() })?;
        let mtu = spec.mtu.unwrap_or(link.mtu);
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(mtu)
    }

    fn add_vxlan(host: &Host, spec: &NetworkSpec, underlay: (u32, u32)) -> Result<()> {
        let options = OverlayDriver::options(spec)?;
        let name = OverlayDriver::vxlan_name(spec)?;
        let bridge = spec.bridge_ifname().unwrap_or_default();
        let mut nl = host.netlink();
        let master = nl
            .link(bridge)?
            .ok_or_else(|| Error::LinkMissing { driver: OverlayDriver::NAME.into(), ifname: bridge.to_owned() })?
            .index;
        let mut link = NewLink::new(
            name,
            LinkKind::Vxlan {
                vni: options.vni,
                local: Some(options.local),
                remote: None,
                dev: Some(underlay.0),
                port: Some(options.port.unwrap_or(VXLAN_PORT)),
                static_fdb: true,
            },
        );
        link.mtu = Some(underlay.1);
        link.master = Some(master);
        link.up = true;
        let index = nl
            .add_link(&link)?
            .ok_or_else(|| Error::LinkMissing { driver: OverlayDriver::NAME.into(), ifname: name.to_owned() })?;
        for &peer in &options.peers {
            if let Err(e) = nl.add_fdb(index, [0; 6], peer, true) {
                drop(nl);
                let deleted = Netlink::open_in(host.netns()).and_then(|mut nl| nl.delete_link(index));
                return Err(Error::with_cleanup(e.into(), deleted.err().map(Error::from).into_iter().collect()));
            }
        }
        Ok(())
    }

    /// The VXLAN device's index.
    fn vxlan_index(host: &Host, spec: &NetworkSpec) -> Result<u32> {
        let name = OverlayDriver::vxlan_name(spec)?;
        match host.netlink().link(name)? {
            Some(link) => Ok(link.index),
            None => Err(Error::NetworkIncomplete { network: spec.name.to_string(), link: name.to_owned() }),
        }
    }

    /// Checks a remote endpoint against the network: its address in a subnet but outside
    /// this host's range (another host's), its MAC unicast, its host a peer.
    fn check_remote(spec: &NetworkSpec, remote: &RemoteEndpoint) -> Result<(), ValidationError> {
        let options = OverlayDriver::options(spec)?;
        let bad = |field, value: String, rule| ValidationError::Overlay {
            network: spec.name.to_string(),
            field,
            value,
            rule,
        };
        let Some(pool) = spec.subnets.iter().find(|p| p.subnet.contains(&remote.ip)) else {
            return Err(bad("remote endpoint ip", remote.ip.to_string(), OverlayRule::OutsideSubnets));
        };
        if pool.range.is_some_and(|r| r.contains(&remote.ip)) {
            return Err(bad("remote endpoint ip", remote.ip.to_string(), OverlayRule::InOwnRange));
        }
        if Some(remote.ip) == pool.gateway {
            return Err(bad("remote endpoint ip", remote.ip.to_string(), OverlayRule::Gateway));
        }
        check_mac("remote endpoint mac", &remote.mac)?;
        if !options.peers.contains(&remote.host) {
            return Err(bad("remote endpoint host", remote.host.to_string(), OverlayRule::NotAPeer));
        }
        Ok(())
    }

    /// Programs a remote endpoint: neighbour entry (IP -> MAC) and FDB entry (MAC -> VTEP)
    /// on the VXLAN device; both replace entries already there.
    pub(crate) fn add_remote(host: &Host, spec: &NetworkSpec, remote: &RemoteEndpoint) -> Result<()> {
        OverlayDriver::check_remote(spec, remote)?;
        let index = OverlayDriver::vxlan_index(host, spec)?;
        let mut nl = host.netlink();
        nl.add_fdb(index, remote.mac, remote.host, false)?;
        if let Err(e) = nl.add_neighbour(index, remote.ip, remote.mac) {
            let cleanup = nl.delete_fdb(index, remote.mac, remote.host).err().map(Error::from).into_iter().collect();
            return Err(Error::with_cleanup(e.into(), cleanup));
        }
        Ok(())
    }

    /// Removes what [`OverlayDriver::add_remote`] programmed; entries already gone are fine.
    /// The FDB entry stays while another neighbour entry still uses its MAC (an endpoint
    /// with an IPv4 and an IPv6 address is two remote endpoints with one MAC).
    pub(crate) fn remove_remote(host: &Host, spec: &NetworkSpec, remote: &RemoteEndpoint) -> Result<()> {
        OverlayDriver::options(spec)?;
        let index = OverlayDriver::vxlan_index(host, spec)?;
        let mut nl = host.netlink();
        let mut errors = Vec::new();
        if let Err(e) = nl.delete_neighbour(index, remote.ip)
            && e.errno() != Some(libc::ENOENT)
        {
            errors.push(e.into());
        }
        let mut still_used = false;
        for ipv6 in [false, true] {
            still_used |= nl.neighbours(index, ipv6)?.iter().any(|n| n.mac == Some(remote.mac) && n.permanent);
        }
        if !still_used
            && let Err(e) = nl.delete_fdb(index, remote.mac, remote.host)
            && e.errno() != Some(libc::ENOENT)
        {
            errors.push(e.into());
        }
        Error::teardown(format!("remote endpoint {} of network {}", remote.ip, spec.name), errors)
    }

    /// What the VXLAN device holds now.
    pub(crate) fn entries(host: &Host, spec: &NetworkSpec) -> Result<OverlayEntries> {
        let index = OverlayDriver::vxlan_index(host, spec)?;
        let mut nl = host.netlink();
        let fdb = nl.fdb(index)?;
        let mut neighbours = nl.neighbours(index, false)?;
        neighbours.extend(nl.neighbours(index, true)?);
        Ok(OverlayEntries { fdb, neighbours })
    }
}

impl NetworkDriver for OverlayDriver {
    fn name(&self) -> &str {
        OverlayDriver::NAME
    }

    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        OverlayDriver::options(spec)?.validate_spec(spec)
    }

    /// The bridge and VXLAN names are free, the underlay link is there, the MTU fits.
    fn check_host(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let (_, underlay_mtu) = OverlayDriver::underlay(host, spec)?;
        let mtu = OverlayDriver::pick_mtu(spec, underlay_mtu)?;
        self.bridge.check_host(host, &OverlayDriver::bridge_spec(spec, mtu)?)?;
        let name = OverlayDriver::vxlan_name(spec)?;
        if host.netlink().link(name)?.is_some() {
            return Err(Error::LinkExists { network: spec.name.to_string(), name: name.to_owned() });
        }
        Ok(())
    }

    /// The bridge exists, and the VXLAN device.
    fn check_built(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let mtu = self.mtu(host, spec)?;
        self.bridge.check_built(host, &OverlayDriver::bridge_spec(spec, mtu)?)
    }

    fn setup(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let underlay = OverlayDriver::underlay(host, spec)?;
        let mtu = OverlayDriver::pick_mtu(spec, underlay.1)?;
        let bridge_spec = OverlayDriver::bridge_spec(spec, mtu)?;
        self.bridge.setup(host, &bridge_spec)?;
        if let Err(e) = OverlayDriver::add_vxlan(host, spec, underlay) {
            let cleanup = self.bridge.teardown(host, &bridge_spec).err().into_iter().collect();
            return Err(Error::with_cleanup(e, cleanup));
        }
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    /// The VXLAN device (with its FDB and neighbour entries), then the bridge and its rules.
    fn teardown(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let mut errors = Vec::new();
        match OverlayDriver::vxlan_index(host, spec) {
            Ok(index) => {
                let deleted = Netlink::open_in(host.netns()).and_then(|mut nl| nl.delete_link(index));
                if let Err(e) = deleted
                    && e.errno() != Some(libc::ENODEV)
                {
                    errors.push(e.into());
                }
            }
            Err(Error::NetworkIncomplete { .. }) => {}
            Err(e) => errors.push(e),
        }
        let mtu = self.mtu.load(Ordering::Relaxed).max(1);
        match OverlayDriver::bridge_spec(spec, mtu) {
            Ok(bridge_spec) => {
                if let Err(e) = self.bridge.teardown(host, &bridge_spec) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(e),
        }
        self.mtu.store(0, Ordering::Relaxed);
        Error::teardown(format!("overlay of network {}", spec.name), errors)
    }

    fn connect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        sandbox: &NsFd,
        endpoint: &EndpointConfig,
    ) -> Result<EndpointLink> {
        let mtu = self.mtu(host, spec)?;
        let mut endpoint = endpoint.clone();
        endpoint.mtu = Some(mtu);
        self.bridge.connect(host, &OverlayDriver::bridge_spec(spec, mtu)?, sandbox, &endpoint)
    }

    fn publishes_ports(&self, spec: &NetworkSpec) -> bool {
        !spec.internal
    }

    /// Published ports on this host, as on a bridge network.
    fn publish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str, ports: &[PortRule]) -> Result<()> {
        let mtu = self.mtu(host, spec)?;
        self.bridge.publish(host, &OverlayDriver::bridge_spec(spec, mtu)?, endpoint, ports)
    }

    fn diagnostics(&self, host: &Host, spec: &NetworkSpec) -> Result<Vec<FirewallConflict>> {
        Ok(host.firewall().conflicts(&spec.name)?)
    }

    fn unpublish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str) -> Result<()> {
        Ok(host.firewall().remove_ports(&spec.name, endpoint)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Pool;

    fn spec() -> NetworkSpec {
        let mut options = OverlayOptions::new(42, "192.0.2.1".parse().unwrap());
        options.peer("192.0.2.2".parse().unwrap());
        let mut spec = NetworkSpec::new("nk-ov".parse().unwrap(), Driver::Overlay(options));
        spec.subnets.push(Pool::new("10.7.0.0/24".parse().unwrap()).with_range("10.7.0.64/26".parse().unwrap()));
        spec
    }

    #[test]
    fn validates_options_and_spec() {
        spec().validate().unwrap();
        let d = OverlayDriver::new();
        assert!(d.validate(&spec()).is_ok());
        let field = |s: NetworkSpec| match s.validate().unwrap_err() {
            ValidationError::Overlay { field, .. } => field,
            e => panic!("{e}"),
        };
        for vni in [0, 1 << 24] {
            let mut s = spec();
            if let Driver::Overlay(o) = &mut s.driver {
                o.vni = vni;
            }
            assert_eq!(field(s), "vni");
        }
        for peer in ["192.0.2.1", "fd00::2", "224.0.0.1"] {
            let mut s = spec();
            if let Driver::Overlay(o) = &mut s.driver {
                o.peer(peer.parse().unwrap());
            }
            assert_eq!(field(s), "peers", "{peer}");
        }
        let mut s = spec();
        s.subnets[0].range = None;
        assert_eq!(field(s), "subnets");
        let mut s = spec();
        s.subnets.clear();
        assert_eq!(field(s), "subnets");
        let mut s = spec();
        s.subnets[0].range = Some("10.8.0.0/26".parse().unwrap());
        assert!(matches!(s.validate(), Err(ValidationError::RangeOutsideSubnet { .. })));
    }

    #[test]
    fn remote_endpoints_are_checked() {
        let s = spec();
        let host: IpAddr = "192.0.2.2".parse().unwrap();
        let ok = RemoteEndpoint::new("10.7.0.130".parse().unwrap(), [2, 0, 0, 0, 0, 1], host);
        OverlayDriver::check_remote(&s, &ok).unwrap();
        for bad in [
            RemoteEndpoint { ip: "10.7.0.70".parse().unwrap(), ..ok },
            RemoteEndpoint { ip: "10.9.0.5".parse().unwrap(), ..ok },
            RemoteEndpoint { host: "192.0.2.9".parse().unwrap(), ..ok },
            RemoteEndpoint { mac: [1, 0, 0, 0, 0, 1], ..ok },
        ] {
            assert!(OverlayDriver::check_remote(&s, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let mut s = spec();
        if let Driver::Overlay(o) = &mut s.driver {
            o.port(8472);
        }
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""type":"overlay""#) && json.contains(r#""range":"10.7.0.64/26""#), "{json}");
        let back: NetworkSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn default_names() {
        let mut o = OverlayOptions::new(1, "192.0.2.1".parse().unwrap());
        o.resolve("nk-ov");
        let (b, v) = (o.bridge.unwrap(), o.vxlan.unwrap());
        assert!(b.starts_with("nk-") && v.starts_with("nkv") && v.len() == 15 && b[3..] == v[3..], "{b} {v}");
    }
}
