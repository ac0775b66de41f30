//! [`Network`]: a group of endpoints that can talk to each other directly, built by a driver.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipnet::IpNet;

use crate::driver::{Driver, NetworkDriver, OverlayDriver, OverlayEntries, RemoteEndpoint};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::firewall::FirewallConflict;
use crate::host::Host;
use crate::ipam::{IpamError, Owner};
use crate::name::NetworkName;
use crate::registry::{Record, Registry, User};
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

/// A network: built on the host by its driver, its subnets registered with IPAM, its record
/// in the state directory so other processes can [`Network::open`] it.
///
/// # Sharing between processes
///
/// A network outlives the handle — and the process — that made it: its record (id, resolved
/// spec, users) lives in the host's state directory beside IPAM's files, and any process
/// using the same state directory and host namespace attaches to it with [`Network::open`].
/// Every [`Network::create`] or [`Network::open`] registers one *user* (this handle and its
/// clones, with its process's pid and start time); concurrent connects from several processes
/// get distinct addresses from IPAM's locked state and distinct MAC addresses (random, from
/// the kernel, unless given). A network goes away:
///
/// * explicitly: [`Network::remove`] tears it down for everyone, unless an endpoint — of any
///   process — is still attached ([`Error::NetworkInUse`]); other users' handles then fail to
///   connect;
/// * by its last user: [`Network::release`] (and dropping the last clone of a handle, best
///   effort) leaves, and removes the network when no other live user and no live endpoint is
///   left. A user whose process died (crashed, killed) is recognised as gone and does not
///   count;
/// * not at all: [`Network::leave`] leaves without asking for removal, so the network stays
///   for processes that open it later.
///
/// Endpoints keep the network alive: dropping the `Network` (or a refused
/// [`Network::remove`]) while sandboxes of this process are connected leaves it working for
/// them, and it is released when the last endpoint leaves. Teardown order: IPAM closes the
/// network (no more addresses from then on), firewall rules, the driver's links (the bridge),
/// the IPAM registration, the record.
///
/// A network of a custom driver ([`crate::Driver::Custom`]) has no record (the driver does not
/// serialize): it is this process's alone, and torn down when its last handle goes.
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
    /// This handle's entry in the record (`None`: a custom driver's network, no record).
    user: Option<User>,
    /// Removed, released or left: nothing more to do on drop.
    done: AtomicBool,
}

impl Network {
    /// Creates a network.
    ///
    /// Everything is checked before anything changes: the spec ([`NetworkSpec::validate`]),
    /// the host (no network of that name in the state directory — [`Error::NetworkExists`],
    /// [`Network::open`] it instead — parent link exists, bridge name free), then the subnets
    /// are registered with IPAM (which refuses bad CIDRs, gateways and overlaps with other
    /// networks). A spec without subnets gets one from the host's address pools
    /// ([`crate::HostBuilder::address_pools`]): the first that overlaps no route of the host
    /// namespace and no other network, chosen under the state directory's lock so processes
    /// creating networks at once get different ones. Only then does the driver build the
    /// network; if that fails, the IPAM registration is undone and the error carries the cause
    /// and any cleanup failure. Last, the record is written and this handle is its first user.
    pub fn create(host: &Host, spec: &NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let resolved = resolve(spec);
        if !shared(&resolved) {
            return Network::build(host, resolved, None);
        }
        let registry = Registry::new(host.ipam().dir());
        let _lock = registry.lock()?;
        if registry.load(&resolved.name)?.is_some() {
            return Err(Error::NetworkExists { network: resolved.name.to_string() });
        }
        Network::build(host, resolved, Some(&registry))
    }

    /// Attaches to the network `name` that a process (this one or another, maybe gone) created
    /// on `host`: reads its record from the state directory, checks that what the driver
    /// built is there (the bridge; a macvlan parent) and registers this handle as a user.
    ///
    /// [`Error::NetworkNotFound`] when there is no such network (never created, removed, or of
    /// a custom driver); [`Error::NetworkIncomplete`] when its bridge is gone from the host
    /// namespace ([`Network::recreate`] replaces it).
    pub fn open(host: &Host, name: &str) -> Result<Network> {
        let name = NetworkName::new(name)?;
        let registry = Registry::new(host.ipam().dir());
        let _lock = registry.lock()?;
        let Some(mut record) = registry.load(&name)? else {
            return Err(Error::NetworkNotFound { network: name.to_string() });
        };
        let driver = record.spec.driver.instance();
        driver.check_built(host, &record.spec)?;
        let user = User::current();
        record.users.retain(|u| u.owner.is_alive());
        record.users.push(user.clone());
        registry.save(&record)?;
        Ok(Network::from_parts(record.id, record.spec, host, driver, Some(user)))
    }

    /// Builds a resolved, validated spec; with `registry` (whose lock the caller holds),
    /// records it with this process as its first user.
    fn build(host: &Host, mut spec: NetworkSpec, registry: Option<&Registry<'_>>) -> Result<Network> {
        let id = random_hex(64);
        let driver = spec.driver.instance();
        driver.check_host(host, &spec)?;
        if spec.subnets.is_empty() && !matches!(spec.driver, Driver::Custom(_)) {
            let avoid = host_routes(host)?;
            let pool = host.ipam().add_network_auto(&spec.name, host.address_pools(), &avoid)?;
            spec.subnets.push(pool);
        } else if !spec.subnets.is_empty() {
            host.ipam().add_network(&spec.name, &spec.subnets)?;
        }
        // A custom driver may do without addresses: then IPAM has nothing to manage.
        let registered = !spec.subnets.is_empty();
        let unregister = |spec: &NetworkSpec| -> Vec<Error> {
            if registered {
                host.ipam().remove_network(&spec.name).err().map(Error::from).into_iter().collect()
            } else {
                Vec::new()
            }
        };
        if let Err(e) = driver.setup(host, &spec) {
            return Err(Error::with_cleanup(e, unregister(&spec)));
        }
        let user = match registry {
            None => None,
            Some(registry) => {
                let user = User::current();
                if let Err(e) = registry.save(&Record::new(&id, &spec, user.clone())) {
                    let mut cleanup: Vec<Error> = driver.teardown(host, &spec).err().into_iter().collect();
                    cleanup.extend(unregister(&spec));
                    return Err(Error::with_cleanup(e, cleanup));
                }
                Some(user)
            }
        };
        Ok(Network::from_parts(id, spec, host, driver, user))
    }

    fn from_parts(
        id: String,
        spec: NetworkSpec,
        host: &Host,
        driver: Arc<dyn NetworkDriver>,
        user: Option<User>,
    ) -> Network {
        Network {
            inner: Arc::new(NetworkInner {
                id,
                spec,
                host: host.clone(),
                driver,
                endpoints: Mutex::new(Vec::new()),
                user,
                done: AtomicBool::new(false),
            }),
        }
    }

    /// Creates a network after a crash: removes what a process that died left of a network
    /// of the same name — its record, its firewall chains and port rules, its bridge (for a
    /// bridge network: the one `spec` names, or the default name, which follows from the
    /// network's name; an overlay's VXLAN device too), its IPAM registration — then
    /// [`Network::create`]s it.
    ///
    /// Refused, changing nothing, while a live process still has the network open
    /// ([`Error::NetworkHasUsers`]) or a live process or a persisted namespace still holds an
    /// address on it ([`Error::NetworkInUse`], IPAM's owners): only a network nobody uses any
    /// more is replaced. A link of the bridge's name that is not a bridge is refused with
    /// [`Error::LinkExists`].
    pub fn recreate(host: &Host, spec: &NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let resolved = resolve(spec);
        let registry = Registry::new(host.ipam().dir());
        let _lock = if shared(&resolved) { Some(registry.lock()?) } else { None };
        // A record that does not parse is a leftover like the others: replaced.
        let record = match registry.load(&resolved.name) {
            Err(Error::CorruptRecord { .. }) => None,
            other => other?,
        };
        if let Some(record) = record {
            let users: Vec<String> =
                record.users.iter().filter(|u| u.owner.is_alive()).map(|u| u.owner.to_string()).collect();
            if !users.is_empty() {
                return Err(Error::NetworkHasUsers { network: resolved.name.to_string(), users });
            }
        }
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
        // An overlay's VXLAN device, checked the same way.
        let stale_vxlan = match &resolved.driver {
            Driver::Overlay(options) => match options.vxlan.as_deref() {
                Some(name) => match host.netlink().link(name)? {
                    Some(link) if link.kind.as_deref() == Some("vxlan") => Some(link.index),
                    Some(_) => {
                        return Err(Error::LinkExists { network: resolved.name.to_string(), name: name.to_owned() });
                    }
                    None => None,
                },
                None => None,
            },
            _ => None,
        };
        // Rules first, then the links, then the registration (the teardown order).
        host.firewall().teardown_network(&resolved.name)?;
        if let Some(index) = stale_vxlan {
            crate::netlink::Netlink::open_in(host.netns())?.delete_link(index)?;
        }
        if let Some(index) = stale_bridge {
            // A socket of its own: deleting a link takes tens of ms, and every connect needs
            // the host's shared one.
            crate::netlink::Netlink::open_in(host.netns())?.delete_link(index)?;
        }
        if registered {
            ipam.remove_network(&resolved.name)?;
        }
        registry.remove(&resolved.name)?;
        let registry = shared(&resolved).then_some(&registry);
        Network::build(host, resolved, registry)
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

    /// For an overlay network: what the other hosts need to reach `endpoint` (one of this
    /// host's, connected to this network) — one [`RemoteEndpoint`] per address, with its MAC
    /// and this host's underlay address. Hand them to [`Network::add_remote_endpoint`] on
    /// every other host (what Docker's gossip does). Refused for other drivers and for an
    /// endpoint of another network.
    pub fn advertise(&self, endpoint: &Endpoint) -> Result<Vec<RemoteEndpoint>> {
        let spec = &self.inner.spec;
        let Driver::Overlay(options) = &spec.driver else {
            return Err(self.not_overlay("advertise"));
        };
        if endpoint.network != spec.name.as_str() {
            return Err(Error::NotConnected { sandbox: endpoint.sandbox.clone(), network: spec.name.to_string() });
        }
        let mac = endpoint.mac.ok_or_else(|| Error::LinkMissing {
            driver: OverlayDriver::NAME.into(),
            ifname: endpoint.ifname.clone(),
        })?;
        Ok(endpoint.addresses.iter().map(|a| RemoteEndpoint::new(a.addr(), mac, options.local)).collect())
    }

    /// For an overlay network: programs an endpoint of another host — a static neighbour
    /// entry (its IP -> its MAC) and a static FDB entry (its MAC -> its host's underlay
    /// address) on this host's VXLAN device — so this host's sandboxes reach it. Refused
    /// ([`Error::Invalid`], nothing changed) when its address is outside the subnets, inside
    /// this host's own range (another host cannot hold it: ranges are per host), the gateway,
    /// or its host is not one of the network's peers. Programming it again replaces it.
    pub fn add_remote_endpoint(&self, remote: &RemoteEndpoint) -> Result<()> {
        if !matches!(self.inner.spec.driver, Driver::Overlay(_)) {
            return Err(self.not_overlay("add_remote_endpoint"));
        }
        OverlayDriver::add_remote(&self.inner.host, &self.inner.spec, remote)
    }

    /// Removes what [`Network::add_remote_endpoint`] programmed (the endpoint left its
    /// host's network); entries already gone are not an error.
    pub fn remove_remote_endpoint(&self, remote: &RemoteEndpoint) -> Result<()> {
        if !matches!(self.inner.spec.driver, Driver::Overlay(_)) {
            return Err(self.not_overlay("remove_remote_endpoint"));
        }
        OverlayDriver::remove_remote(&self.inner.host, &self.inner.spec, remote)
    }

    /// For an overlay network: the FDB and neighbour entries of this host's VXLAN device,
    /// read from the kernel.
    pub fn overlay_entries(&self) -> Result<OverlayEntries> {
        if !matches!(self.inner.spec.driver, Driver::Overlay(_)) {
            return Err(self.not_overlay("overlay_entries"));
        }
        OverlayDriver::entries(&self.inner.host, &self.inner.spec)
    }

    fn not_overlay(&self, operation: &'static str) -> Error {
        Error::Invalid(crate::validation::ValidationError::WrongDriver {
            driver: OverlayDriver::NAME,
            found: format!("{} ({operation} on network {})", self.inner.spec.driver.name(), self.inner.spec.name),
        })
    }

    /// The endpoints attached now (from this process).
    pub fn endpoints(&self) -> Vec<NetworkEndpoint> {
        self.inner.endpoints().clone()
    }

    /// Removes the network now, for every process: IPAM closes it (no process gets an
    /// address on it from then on), then firewall rules, the driver's links, the IPAM
    /// registration and the record go; every step is attempted and every failure reported.
    /// Other processes' handles stay valid objects, but connecting through them fails. A
    /// bridge is set down and renamed at once and deleted on a background thread (the
    /// kernel takes tens of ms to delete a link): its name is free when this returns.
    ///
    /// Refused with [`Error::NetworkInUse`] while endpoints are attached — of this process,
    /// or any live process's or persisted namespace's address on it; the network then stays
    /// up for them (and, for this process's endpoints, is released when the last one leaves).
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
        self.inner.remove()
    }

    /// Leaves the network, and removes it (as [`Network::remove`]) if this was its last user:
    /// no other live process has it open and no endpoint is attached. Returns whether it was
    /// removed. Users whose process is gone do not count (nor do their endpoints, whose
    /// addresses IPAM reclaims).
    ///
    /// While other clones of this handle or this process's endpoints still use it, nothing
    /// happens yet (`Ok(false)`): the last of them releases it when it goes.
    pub fn release(self) -> Result<bool> {
        if Arc::strong_count(&self.inner) > 1 {
            return Ok(false);
        }
        self.inner.release()
    }

    /// Leaves the network without asking for its removal: it stays on the host for other
    /// processes (and this process's endpoints keep working), to be [`Network::open`]ed later.
    /// Applies to every clone of this handle. A custom driver's network (which has no record)
    /// is left in place too, but nothing can open it again.
    pub fn leave(self) -> Result<()> {
        self.inner.leave()
    }

    /// The processes that have the network open now (live users; a process appears once per
    /// handle it opened), this one included. Empty for a custom driver's network.
    pub fn users(&self) -> Result<Vec<Owner>> {
        if self.inner.user.is_none() {
            return Ok(Vec::new());
        }
        let registry = Registry::new(self.inner.host.ipam().dir());
        let _lock = registry.lock()?;
        Ok(match registry.load(self.name())? {
            Some(record) if record.id == self.inner.id => {
                record.users.into_iter().map(|u| u.owner).filter(Owner::is_alive).collect()
            }
            _ => Vec::new(),
        })
    }

    /// Another handle on the same network (for endpoints).
    pub(crate) fn share(&self) -> Network {
        Network { inner: Arc::clone(&self.inner) }
    }

    /// The same network: one handle's clones, or handles opened on one record.
    pub(crate) fn same(&self, other: &Network) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.id == other.inner.id
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

    /// [`Network::remove`], once the local endpoints are known to be gone.
    fn remove(&self) -> Result<()> {
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.user.is_none() {
            return self.destroy(None);
        }
        let registry = Registry::new(self.host.ipam().dir());
        let _lock = registry.lock()?;
        match registry.load(&self.spec.name)? {
            Some(record) if record.id == self.id => self.destroy(Some(&registry)),
            // Removed already (by another user; maybe replaced by a network of the same name).
            _ => {
                self.done.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    /// [`Network::release`]: leave, and remove when no live user and no endpoint is left.
    fn release(&self) -> Result<bool> {
        if self.done.load(Ordering::Acquire) {
            return Ok(false);
        }
        let Some(user) = &self.user else {
            return self.destroy(None).map(|()| true);
        };
        let registry = Registry::new(self.host.ipam().dir());
        let _lock = registry.lock()?;
        let mut record = match registry.load(&self.spec.name)? {
            Some(record) if record.id == self.id => record,
            _ => {
                self.done.store(true, Ordering::Release);
                return Ok(false);
            }
        };
        if record.leave(&user.handle) {
            registry.save(&record)?;
            self.done.store(true, Ordering::Release);
            return Ok(false);
        }
        match self.destroy(Some(&registry)) {
            Ok(()) => Ok(true),
            // Endpoints of other processes (or persisted namespaces) keep it, without users.
            Err(Error::NetworkInUse { .. }) => {
                registry.save(&record)?;
                self.done.store(true, Ordering::Release);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Network::leave`].
    fn leave(&self) -> Result<()> {
        if self.done.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let Some(user) = &self.user else { return Ok(()) };
        let registry = Registry::new(self.host.ipam().dir());
        let _lock = registry.lock()?;
        if let Some(mut record) = registry.load(&self.spec.name)?
            && record.id == self.id
        {
            record.leave(&user.handle);
            registry.save(&record)?;
        }
        Ok(())
    }

    /// Tears the network down (with `registry`'s lock held, for a recorded one): IPAM closes
    /// it unless a live owner holds an address ([`Error::NetworkInUse`], nothing changed),
    /// then firewall rules and links, the IPAM registration, the record.
    fn destroy(&self, registry: Option<&Registry<'_>>) -> Result<()> {
        let ipam = self.host.ipam();
        let registered = !self.spec.subnets.is_empty();
        let mut errors = Vec::new();
        if registered {
            match ipam.close_network(&self.spec.name) {
                Ok(()) | Err(IpamError::UnknownNetwork { .. }) => {}
                Err(IpamError::NetworkInUse { network, allocations }) => {
                    return Err(Error::NetworkInUse {
                        network,
                        endpoints: allocations.iter().map(|(address, owner)| format!("{owner}/{address}")).collect(),
                    });
                }
                // An unusable state file: it cannot say who holds addresses; tear down anyway
                // (as before there were records), and report it.
                Err(e) => errors.push(e.into()),
            }
        }
        self.done.store(true, Ordering::Release);
        if let Err(e) = self.driver.teardown(&self.host, &self.spec) {
            errors.push(e);
        }
        if registered && let Err(e) = ipam.remove_network(&self.spec.name) {
            errors.push(e.into());
        }
        if let Some(registry) = registry
            && let Err(e) = registry.remove(&self.spec.name)
        {
            errors.push(e);
        }
        Error::teardown(format!("network {}", self.spec.name), errors)
    }
}

impl Drop for NetworkInner {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Whether the network gets a record (shared between processes): every built-in driver's.
fn shared(spec: &NetworkSpec) -> bool {
    !matches!(spec.driver, Driver::Custom(_))
}

/// The destinations of the host namespace's routes (main table, both families, without the
/// default routes): automatic subnets must not overlap them.
fn host_routes(host: &Host) -> Result<Vec<IpNet>> {
    let v6 = host.address_pools().iter().any(|p| p.base.addr().is_ipv6());
    let mut nl = host.netlink();
    let mut routes = nl.routes(false)?;
    if v6 {
        routes.extend(nl.routes(true)?);
    }
    Ok(routes.into_iter().filter_map(|r| r.destination).filter(|d| d.prefix_len() > 0).collect())
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
