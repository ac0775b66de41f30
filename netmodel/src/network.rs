//! [`Network`]: a group of endpoints that can talk to each other directly, built by a driver.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::driver::NetworkDriver;
use crate::error::{Error, Result};
use crate::firewall::FirewallConflict;
use crate::host::Host;
use crate::spec::NetworkSpec;
use crate::util::{pool_gateway, random_hex};

/// One endpoint of a network, as the network knows it (for `/etc/hosts` of its peers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkEndpoint {
    /// The endpoint's id.
    pub id: String,
    /// The name of the sandbox it belongs to (its host name).
    pub sandbox: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Extra names it answers to on this network.
    pub aliases: Vec<String>,
}

/// A network: built on the host by its driver, its subnets registered with IPAM.
///
/// Endpoints keep the network alive: dropping the `Network` (or a refused
/// [`Network::remove`]) while sandboxes are connected leaves it working for them, and it is
/// torn down when the last endpoint leaves. Teardown order: firewall rules, then the
/// driver's links (the bridge), then the IPAM registration.
#[derive(Debug)]
pub struct Network {
    inner: Arc<NetworkInner>,
}

#[derive(Debug)]
struct NetworkInner {
    id: String,
    spec: NetworkSpec,
    host: Host,
    driver: Arc<dyn NetworkDriver>,
    endpoints: Mutex<Vec<NetworkEndpoint>>,
    torn_down: AtomicBool,
}

impl Network {
    /// Creates a network.
    ///
    /// Everything is checked before anything changes: the spec ([`NetworkSpec::validate`]),
    /// the host (parent link exists, bridge name free), then the subnets are registered with
    /// IPAM (which refuses bad CIDRs, gateways and overlaps with other networks). Only then
    /// does the driver build the network; if that fails, the IPAM registration is undone and
    /// the error carries the cause and any cleanup failure.
    pub fn create(host: &Host, spec: &NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let id = random_hex(64);
        let spec = resolve(spec);
        let driver = spec.driver.instance();
        driver.check_host(host, &spec)?;
        // A custom driver may do without addresses: then IPAM has nothing to manage.
        let registered = !spec.subnets.is_empty();
        if registered {
            host.ipam().add_network(&spec.name, &spec.subnets)?;
        }
        if let Err(e) = driver.setup(host, &spec) {
            let cleanup = if registered {
                host.ipam().remove_network(&spec.name).err().map(Error::from).into_iter().collect()
            } else {
                Vec::new()
            };
            return Err(Error::with_cleanup(e, cleanup));
        }
        Ok(Network {
            inner: Arc::new(NetworkInner {
                id,
                spec,
                host: host.clone(),
                driver,
                endpoints: Mutex::new(Vec::new()),
                torn_down: AtomicBool::new(false),
            }),
        })
    }

    /// Opens a network that another process (or another [`Network`] of this one) created on
    /// `host` with the same `spec`, so that several processes can connect sandboxes to one
    /// network: IPAM's lock keeps their addresses apart, and each endpoint's link and port
    /// rules are its own.
    ///
    /// The network must be registered with the host's IPAM under the spec's name with the
    /// spec's subnets, and (for a bridge network) its bridge must exist; otherwise
    /// [`Error::NoSuchNetwork`]. The handle never tears the network down — neither on drop nor
    /// with [`Network::remove`] (which only checks that this process has no endpoint left on
    /// it): the creator's handle does.
    pub fn open(host: &Host, spec: &NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let spec = resolve(spec);
        let missing = |why: String| Error::NoSuchNetwork { network: spec.name.to_string(), reason: why };
        if !spec.subnets.is_empty() {
            if !host.ipam().networks()?.iter().any(|n| n == spec.name.as_str()) {
                return Err(missing("not registered with IPAM".to_owned()));
            }
            let registered: Vec<_> = host.ipam().pools(&spec.name)?.into_iter().map(|p| p.subnet).collect();
            let wanted: Vec<_> = spec.subnets.iter().map(|p| p.subnet).collect();
            if registered != wanted {
                return Err(missing(format!("registered with subnets {registered:?}, not {wanted:?}")));
            }
        }
        if let Some(bridge) = spec.bridge_ifname() {
            if host.netlink().link(bridge)?.is_none() {
                return Err(missing(format!("its bridge {bridge} does not exist")));
            }
        }
        let driver = spec.driver.instance();
        Ok(Network {
            inner: Arc::new(NetworkInner {
                id: random_hex(64),
                spec,
                host: host.clone(),
                driver,
                endpoints: Mutex::new(Vec::new()),
                // Not this handle's to tear down.
                torn_down: AtomicBool::new(true),
            }),
        })
    }

    /// Creates a network after a crash: removes what a process that died left of a network
    /// of the same name — its firewall chains and port rules, its bridge (for a bridge
    /// network: the one `spec` names, or the default name, which follows from the network's
    /// name), its IPAM registration — then [`Network::create`]s it.
    ///
    /// Refused with [`Error::NetworkInUse`], changing nothing, while a live process or a
    /// persisted namespace still holds an address on it (IPAM's owners): only a network
    /// nobody uses any more is replaced. A link of the bridge's name that is not a bridge is
    /// refused with [`Error::LinkExists`].
    pub fn recreate(host: &Host, spec: &NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let resolved = resolve(spec);
        let ipam = host.ipam();
        let registered = ipam.networks()?.iter().any(|n| resolved.name == n.as_str());
        if registered {
            ipam.reclaim(&resolved.name)?;
            let held = ipam.allocations(&resolved.name)?;
            if !held.is_empty() {
                return Err(Error::NetworkInUse {
                    network: resolved.name.to_string(),
                    endpoints: held.iter().map(|(address, owner)| format!("{owner}/{address}")).collect(),
                });
            }
        }
        // Checked before anything changes: a link of the bridge's name must be a bridge.
        let stale_bridge = match resolved.bridge_ifname() {
            Some(bridge) => match host.netlink().link(bridge)? {
                Some(link) if link.kind.as_deref() == Some("bridge") => Some(link.index),
                Some(_) => {
                    return Err(Error::LinkExists { network: resolved.name.to_string(), name: bridge.to_owned() });
                }
                None => None,
            },
            None => None,
        };
        // Rules first, then the link, then the registration (the teardown order).
        host.firewall().teardown_network(&resolved.name)?;
        if let Some(index) = stale_bridge {
            // A socket of its own: deleting a link takes tens of ms, and every connect needs
            // the host's shared one.
            crate::netlink::Netlink::open_in(host.netns())?.delete_link(index)?;
        }
        if registered {
            ipam.remove_network(&resolved.name)?;
        }
        Network::create(host, spec)
    }

    /// The network's id (64 hex digits, random).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The resolved spec: every gateway filled in, the bridge named.
    pub fn spec(&self) -> &NetworkSpec {
        &self.inner.spec
    }

    /// The bridge's name, for a bridge network.
    pub fn bridge(&self) -> Option<&str> {
        self.inner.spec.bridge_ifname()
    }

    /// The gateway of every subnet.
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.inner.spec.subnets.iter().map(pool_gateway).collect()
    }

    /// The host it lives on.
    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// Its driver.
    pub fn driver(&self) -> &dyn NetworkDriver {
        &*self.inner.driver
    }

    /// What in other software's firewall drops this network's forwarded traffic now, read
    /// from the host's live ruleset: one [`FirewallConflict`] per foreign chain on the forward
    /// hook that drops what it does not accept and that nook could not add its rules to
    /// (firewalld's table, any table but Docker's and iptables-nft's `filter`), each naming
    /// the table, the chain and the rule the admin has to add. Empty when nothing blocks
    /// (and for drivers that do not use the firewall, e.g. macvlan).
    ///
    /// [`Network::create`] does not fail on such conflicts — the network works between its
    /// sandboxes and with the host, and the admin can add the rule later — so call this after
    /// creating a network that must reach the outside or publish ports.
    pub fn diagnostics(&self) -> Result<Vec<FirewallConflict>> {
        self.inner.driver.diagnostics(&self.inner.host, &self.inner.spec)
    }

    /// The endpoints attached now (from this process).
    pub fn endpoints(&self) -> Vec<NetworkEndpoint> {
        self.inner.endpoints().clone()
    }

    /// Removes the network: firewall rules, the driver's links, the IPAM registration; every
    /// step is attempted and every failure reported.
    ///
    /// Refused with [`Error::NetworkInUse`] while endpoints are attached; the network then
    /// stays up for them and is torn down (best effort) when the last one leaves.
    pub fn remove(self) -> Result<()> {
        {
            let endpoints = self.inner.endpoints();
            if !endpoints.is_empty() {
                return Err(Error::NetworkInUse {
                    network: self.name().to_owned(),
                    endpoints: endpoints
                        .iter()
                        .map(|e| format!("{}/{}", e.sandbox, &e.id[..12.min(e.id.len())]))
                        .collect(),
                });
            }
        }
        self.inner.teardown()
    }

    /// Another handle on the same network (for endpoints).
    pub(crate) fn share(&self) -> Network {
        Network { inner: Arc::clone(&self.inner) }
    }

    pub(crate) fn same(&self, other: &Network) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn register(&self, endpoint: NetworkEndpoint) {
        self.inner.endpoints().push(endpoint);
    }

    pub(crate) fn unregister(&self, id: &str) {
        self.inner.endpoints().retain(|e| e.id != id);
    }
}

/// Another handle on the same network (what [`Network::remove`] removes is shared: removing
/// through one handle removes it for all; the network lives while a handle or an endpoint
/// does).
impl Clone for Network {
    fn clone(&self) -> Network {
        self.share()
    }
}

impl NetworkInner {
    fn endpoints(&self) -> MutexGuard<'_, Vec<NetworkEndpoint>> {
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn teardown(&self) -> Result<()> {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut errors = Vec::new();
        if let Err(e) = self.driver.teardown(&self.host, &self.spec) {
            errors.push(e);
        }
        if !self.spec.subnets.is_empty() {
            if let Err(e) = self.host.ipam().remove_network(&self.spec.name) {
                errors.push(e.into());
            }
        }
        Error::teardown(format!("network {}", self.spec.name), errors)
    }
}

impl Drop for NetworkInner {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The spec as built: gateways filled in, the default bridge name chosen.
fn resolve(spec: &NetworkSpec) -> NetworkSpec {
    let mut spec = spec.clone();
    spec.driver.resolve(&spec.name);
    for pool in &mut spec.subnets {
        pool.gateway = Some(pool_gateway(pool));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_fills_in() {
        let mut spec = NetworkSpec::bridge("nk-n".parse().unwrap());
        spec.subnet("10.3.0.0/24".parse().unwrap(), None);
        let r = resolve(&spec);
        let bridge = r.bridge_ifname().unwrap().to_owned();
        assert!(bridge.starts_with("nk-") && bridge.len() == 15, "{bridge}");
        assert_eq!(resolve(&spec).bridge_ifname(), Some(bridge.as_str()), "the same name, the same bridge");
        assert_ne!(resolve(&NetworkSpec::bridge("nk-m".parse().unwrap())).bridge_ifname(), Some(bridge.as_str()));
        assert_eq!(r.subnets[0].gateway, Some("10.3.0.1".parse().unwrap()));
        spec.bridge_name("nkbr0");
        assert_eq!(resolve(&spec).bridge_ifname(), Some("nkbr0"));
    }
}
