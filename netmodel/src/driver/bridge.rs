//! The bridge driver: a Linux bridge in the host namespace carrying the gateway addresses,
//! veth pairs for endpoints, NAT and published ports through the firewall backend.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use nook_ns::NsFd;

use super::{EndpointConfig, EndpointLink, NetworkDriver};
use crate::error::{Error, Result};
use crate::firewall::{FirewallConflict, NetworkRules, PortRule};
use crate::host::Host;
use crate::ifname::IfName;
use crate::netlink::{LinkKind, Netlink, NewLink};
use serde::{Deserialize, Serialize};

use super::Driver;
use crate::spec::NetworkSpec;
use crate::validation::ValidationError;

/// The options of a bridge network ([`Driver::Bridge`]).
///
/// ```
/// use nook_netmodel::driver::BridgeOptions;
///
/// let mut options = BridgeOptions::new();
/// options.bridge("nkbr0");
/// assert_eq!(options.bridge.as_deref(), Some("nkbr0"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BridgeOptions {
    /// The bridge's name (an interface name, [`IfName`]); default `nk-` + 12 hex digits of a
    /// hash of the network's name (the same in every process, so [`crate::Network::recreate`]
    /// finds a crashed one's bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

impl BridgeOptions {
    /// The defaults: the bridge named after the network.
    pub fn new() -> BridgeOptions {
        BridgeOptions::default()
    }

    /// A bridge named `name`.
    pub fn named(name: impl Into<String>) -> BridgeOptions {
        BridgeOptions { bridge: Some(name.into()) }
    }

    /// Names the bridge.
    pub fn bridge(&mut self, name: impl Into<String>) -> &mut Self {
        self.bridge = Some(name.into());
        self
    }

    /// The bridge's name, when given, is an interface name ([`IfName`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        match &self.bridge {
            Some(b) => IfName::for_field("bridge", b.as_str()).map(drop),
            None => Ok(()),
        }
    }

    /// Fills in the default bridge name of `network`.
    pub(crate) fn resolve(&mut self, network: &str) {
        if self.bridge.is_none() {
            self.bridge = Some(default_bridge_name(network));
        }
    }
}

/// `docker network create --driver bridge`.
///
/// Setup: one `RTM_NEWLINK` creating the bridge up with its MTU, the gateway address of every
/// subnet on it, then the firewall's chains for the network (masquerade of its subnets and
/// forwarding, unless `internal`; the backend enables `ip_forward`).
///
/// Connect: one `RTM_NEWLINK` creating a veth pair whose host end (`nk` + 12 hex digits) is
/// attached to the bridge, up, with the MTU, and whose peer is created directly inside the
/// sandbox under its final name (`IFLA_NET_NS_FD` on the peer) — no move, no rename.
#[derive(Debug, Default)]
pub struct BridgeDriver {
    /// The bridge's index once known (0: not yet).
    index: AtomicU32,
}

impl BridgeDriver {
    /// The driver's name.
    pub const NAME: &'static str = "bridge";

    /// A driver for one network.
    pub fn new() -> BridgeDriver {
        BridgeDriver::default()
    }

    fn bridge_name<'s>(&self, spec: &'s NetworkSpec) -> Result<&'s str> {
        spec.bridge_ifname().ok_or_else(|| ValidationError::UnresolvedBridge { network: spec.name.to_string() }.into())
    }

    /// The bridge's index: cached, else looked up by name.
    fn bridge_index(&self, host: &Host, spec: &NetworkSpec) -> Result<Option<u32>> {
        let cached = self.index.load(Ordering::Relaxed);
        if cached != 0 {
            return Ok(Some(cached));
        }
        let name = self.bridge_name(spec)?;
        let found = host.netlink().link(name)?.map(|l| l.index);
        if let Some(i) = found {
            self.index.store(i, Ordering::Relaxed);
        }
        Ok(found)
    }
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        BridgeDriver::NAME
    }

    /// [`BridgeOptions::validate`].
    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        match &spec.driver {
            Driver::Bridge(options) => options.validate(),
            other => Err(ValidationError::WrongDriver { driver: BridgeDriver::NAME, found: other.name().to_owned() }),
        }
    }

    fn check_host(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let name = self.bridge_name(spec)?;
        if host.netlink().link(name)?.is_some() {
            return Err(Error::LinkExists { network: spec.name.to_string(), name: name.to_owned() });
        }
        Ok(())
    }

    /// The bridge exists and is a bridge.
    fn check_built(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let name = self.bridge_name(spec)?;
        match host.netlink().link(name)? {
            Some(link) if link.kind.as_deref() == Some("bridge") => {
                self.index.store(link.index, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(Error::NetworkIncomplete { network: spec.name.to_string(), link: name.to_owned() }),
        }
    }

    fn setup(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let name = self.bridge_name(spec)?;
        let index = {
            let mut nl = host.netlink();
            let mut link = NewLink::new(name, LinkKind::Bridge);
            link.mtu = spec.mtu;
            link.up = true;
            let index = match nl.add_link(&link)? {
                Some(i) => i,
                None => {
                    nl.link(name)?
                        .ok_or_else(|| Error::LinkMissing {
                            driver: BridgeDriver::NAME.into(),
                            ifname: name.to_owned(),
                        })?
                        .index
                }
            };
            for gateway in spec.gateway_addresses() {
                if let Err(e) = nl.add_address(index, gateway) {
                    let cleanup = nl.delete_link(index).err().map(Error::from).into_iter().collect();
                    return Err(Error::with_cleanup(e.into(), cleanup));
                }
            }
            index
        };
        self.index.store(index, Ordering::Relaxed);
        let rules = NetworkRules {
            network: spec.name.clone(),
            bridge: name.to_owned(),
            subnets: spec.subnets.iter().map(|p| p.subnet).collect(),
            internal: spec.internal,
        };
        if let Err(e) = host.firewall().setup_network(&rules) {
            // nft applies a batch atomically: nothing of the network's rules is left.
            self.index.store(0, Ordering::Relaxed);
            let deleted = Netlink::open_in(host.netns()).and_then(|mut nl| nl.delete_link(index));
            let cleanup = deleted.err().map(Error::from).into_iter().collect();
            return Err(Error::with_cleanup(e.into(), cleanup));
        }
        Ok(())
    }

    fn teardown(&self, host: &Host, spec: &NetworkSpec) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = host.firewall().teardown_network(&spec.name) {
            errors.push(e.into());
        }
        match self.bridge_index(host, spec) {
            Ok(Some(index)) => {
                if let Err(e) = discard_bridge(host, index)
                    && e.errno() != Some(libc::ENODEV)
                {
                    errors.push(e.into());
                }
                self.index.store(0, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        Error::teardown(format!("bridge of network {}", spec.name), errors)
    }

    fn connect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        sandbox: &NsFd,
        endpoint: &EndpointConfig,
    ) -> Result<EndpointLink> {
        let bridge = self.bridge_index(host, spec)?.ok_or_else(|| Error::LinkMissing {
            driver: BridgeDriver::NAME.into(),
            ifname: self.bridge_name(spec).unwrap_or("").into(),
        })?;
        let mut link = NewLink::new(
            &endpoint.host_ifname,
            LinkKind::Veth {
                peer_name: &endpoint.ifname,
                peer_netns: Some(sandbox.as_fd()),
                peer_mtu: endpoint.mtu,
                peer_mac: endpoint.mac,
            },
        );
        link.mtu = endpoint.mtu;
        link.master = Some(bridge);
        link.up = true;
        let index = host.netlink().add_link(&link)?;
        Ok(EndpointLink::with_host_side(endpoint.host_ifname.clone(), index))
    }

    fn publishes_ports(&self, spec: &NetworkSpec) -> bool {
        !spec.internal
    }

    fn publish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str, ports: &[PortRule]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        if spec.internal {
            return Err(Error::PortsUnsupported {
                network: spec.name.to_string(),
                driver: BridgeDriver::NAME.into(),
                internal: true,
            });
        }
        Ok(host.firewall().add_ports(&spec.name, endpoint, ports)?)
    }

    /// The firewall backend's [`crate::firewall::FirewallBackend::conflicts`].
    fn diagnostics(&self, host: &Host, spec: &NetworkSpec) -> Result<Vec<FirewallConflict>> {
        Ok(host.firewall().conflicts(&spec.name)?)
    }

    fn unpublish(&self, host: &Host, spec: &NetworkSpec, endpoint: &str) -> Result<()> {
        Ok(host.firewall().remove_ports(&spec.name, endpoint)?)
    }
}

/// `nk-` + 12 hex digits of a hash of the network's name: the same name gives the same
/// bridge in every process, so what a crashed process left can be found again
/// ([`crate::Network::recreate`]).
pub(crate) fn default_bridge_name(network: &str) -> String {
    format!("nk-{:012x}", name_hash(network) >> 16)
}

/// FNV-1a of a network's name: the default names of the links a network owns.
pub(crate) fn name_hash(network: &str) -> u64 {
    network.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The name a removed bridge is given until the kernel has deleted it (unique: ifindexes
/// are, in a namespace).
fn tombstone(index: u32) -> String {
    format!("nkgone{index:x}")
}

/// Deletes the bridges other removals left under their [`tombstone`] name (a process killed
/// before its deletion thread was done): down bridges named after their own index, which
/// only a removal names so. Best effort, on the deletion thread: another process deleting
/// the same one at once makes one of the two deletions fail, harmlessly.
fn delete_tombstones(nl: &mut Netlink) {
    let Ok(links) = nl.links() else { return };
    let left: Vec<u32> = links
        .iter()
        .filter(|l| !l.up && l.kind.as_deref() == Some("bridge") && l.name == tombstone(l.index))
        .map(|l| l.index)
        .collect();
    let _ = nl.delete_links(&left);
}

/// Takes a bridge out of the caller's path: deleting a link waits for RCU grace periods
/// (tens of ms), so the bridge is set down (its routes go) and renamed to
/// [`tombstone`] at once — its name is free for the next network — then deleted on a
/// background thread, on a socket of its own (not the host's shared one that every connect
/// needs). If that thread cannot start, the bridge is deleted here. The process waits for
/// that thread when it exits ([`nook_ns::background`]); one killed first leaves the bridge
/// down under its tombstone name, until the next removal in that namespace deletes it
/// ([`delete_tombstones`]).
fn discard_bridge(host: &Host, index: u32) -> std::result::Result<(), crate::netlink::NetlinkError> {
    let mut nl = Netlink::open_in(host.netns())?;
    nl.set_down(index)?;
    nl.rename(index, &tombstone(index))?;
    let (tx, rx) = std::sync::mpsc::channel::<Netlink>();
    let spawned = nook_ns::background::spawn("nk-bridge-delete", move || {
        if let Ok(mut nl) = rx.recv() {
            let _ = nl.delete_link(index);
            delete_tombstones(&mut nl);
        }
    });
    match spawned {
        Ok(_) => {
            let _ = tx.send(nl);
            Ok(())
        }
        Err(_) => nl.delete_link(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_its_own_options() {
        let d = BridgeDriver::new();
        assert!(d.validate(&NetworkSpec::bridge("nk-b".parse().unwrap())).is_ok());
        let mut spec = NetworkSpec::bridge("nk-b".parse().unwrap());
        spec.bridge_name("nkbr0");
        assert!(d.validate(&spec).is_ok());
        for bad in ["", "a/b", "eth%d", "a-very-long-bridge-name"] {
            spec.bridge_name(bad);
            let e = d.validate(&spec).unwrap_err();
            assert!(matches!(e, ValidationError::IfName { field: "bridge", .. }), "{bad:?}: {e}");
        }
        let mut options = BridgeOptions::named("a/b");
        assert!(matches!(options.validate(), Err(ValidationError::IfName { field: "bridge", .. })));
        assert!(options.bridge("nkbr0").validate().is_ok());
        let mut options = BridgeOptions::new();
        options.resolve("nk-b");
        assert_eq!(options.bridge, Some(default_bridge_name("nk-b")));
        let e = d.validate(&NetworkSpec::macvlan("nk-m".parse().unwrap(), "eth0")).unwrap_err();
        assert!(matches!(e, ValidationError::WrongDriver { driver: "bridge", .. }), "{e}");
    }

    #[test]
    fn default_names_are_interface_names() {
        for network in ["bridge", "nk-web", &"n".repeat(64)] {
            let name = default_bridge_name(network);
            assert!(crate::IfName::check(&name).is_ok() && name.len() == 15, "{name}");
        }
    }
}
