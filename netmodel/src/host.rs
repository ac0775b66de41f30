//! [`Host`]: the host side of the model — the network namespace where bridges, nftables rules
//! and `ip_forward` live, the IPAM state directory, and the firewall backend.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nook_ns::{Namespace, NsFd};

use crate::dns::DnsHub;
use crate::error::{Error, Result};
use crate::files::RESOLV_CONF;
use crate::firewall::{FirewallBackend, NftNetlink, PortMapping, Protocol};
use crate::ipam::{AddressPool, DEFAULT_STATE_DIR, Ipam, default_address_pools};
use crate::netlink::Netlink;
use crate::validation::ValidationError;

/// The host side of the network model.
///
/// Cheap to clone (shared); `Send + Sync`. Networks and sandboxes keep a clone.
///
/// ```no_run
/// use nook_netmodel::Host;
///
/// // The caller's network namespace, IPAM state in /run/nook/ipam, nftables.
/// let host = Host::current()?;
/// # Ok::<(), nook_netmodel::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

#[derive(Debug)]
struct HostInner {
    netns: NsFd,
    ipam: Ipam,
    firewall: Arc<dyn FirewallBackend>,
    netlink: Mutex<Netlink>,
    /// Where automatic subnets come from.
    address_pools: Vec<AddressPool>,
    /// Host ports published by this process: `(protocol, host_ip, port)`.
    ports: Mutex<HashSet<(Protocol, Option<IpAddr>, u16)>>,
    /// The embedded DNS server of the sandboxes on its user-defined networks.
    dns: Option<Arc<DnsHub>>,
}

/// Builds a [`Host`]: which namespace plays the host, where IPAM keeps its state, which
/// firewall backend to use.
#[derive(Debug, Clone)]
pub struct HostBuilder<'a> {
    netns: Option<&'a NsFd>,
    ipam_dir: PathBuf,
    firewall: Option<Arc<dyn FirewallBackend>>,
    address_pools: Vec<AddressPool>,
    resolv_conf: PathBuf,
    embedded_dns: bool,
}

impl Default for HostBuilder<'_> {
    fn default() -> Self {
        HostBuilder {
            netns: None,
            ipam_dir: PathBuf::from(DEFAULT_STATE_DIR),
            firewall: None,
            address_pools: default_address_pools(),
            resolv_conf: PathBuf::from(RESOLV_CONF),
            embedded_dns: true,
        }
    }
}

impl<'a> HostBuilder<'a> {
    /// The defaults: the calling thread's network namespace, [`DEFAULT_STATE_DIR`], nftables
    /// over netlink ([`NftNetlink`]).
    pub fn new() -> Self {
        HostBuilder::default()
    }

    /// Use this network namespace as the host (it is duplicated; the caller keeps its own).
    pub fn netns(&mut self, netns: &'a NsFd) -> &mut Self {
        self.netns = Some(netns);
        self
    }

    /// Keep the state — IPAM's files and the networks' records — in `dir` (shared, locked,
    /// by every process using the same dir: they see the same networks).
    pub fn ipam_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.ipam_dir = dir.as_ref().to_owned();
        self
    }

    /// Use this firewall backend instead of nftables over netlink ([`NftNetlink`]; the `nft`
    /// program: [`crate::firewall::Nftables`]).
    pub fn firewall(&mut self, backend: Arc<dyn FirewallBackend>) -> &mut Self {
        self.firewall = Some(backend);
        self
    }

    /// Cut automatic subnets (a network spec without subnets) from these pools, in order,
    /// instead of Docker's defaults ([`default_address_pools`]; Docker's
    /// `default-address-pools`). Give the same pools in every process sharing the state
    /// directory. An empty list turns automatic subnets off.
    pub fn address_pools(&mut self, pools: impl IntoIterator<Item = AddressPool>) -> &mut Self {
        self.address_pools = pools.into_iter().collect();
        self
    }

    /// Read the host's resolvers from this file instead of [`RESOLV_CONF`]: the upstream
    /// servers of the embedded DNS ([`crate::dns`]; its `nameserver`s are reached from the
    /// host namespace) and the `search` and `options` lines of the sandboxes' `resolv.conf`.
    pub fn resolv_conf(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.resolv_conf = path.as_ref().to_owned();
        self
    }

    /// Whether sandboxes on user-defined networks get the embedded DNS server ([`crate::dns`];
    /// on by default, as in Docker). Off, a connect saves the server's setup (an `nft` run in
    /// the sandbox's namespace, a few ms) and peers are found through `/etc/hosts` only
    /// ([`crate::Sandbox::hosts_file`]), whose lines are a snapshot.
    pub fn embedded_dns(&mut self, on: bool) -> &mut Self {
        self.embedded_dns = on;
        self
    }

    /// Opens the namespace, a netlink socket in it, the IPAM state and the firewall backend.
    pub fn build(&self) -> Result<Host> {
        let netns = match self.netns {
            Some(ns) => ns.try_clone()?,
            None => NsFd::current(Namespace::Net)?,
        };
        if netns.kind() != Namespace::Net {
            return Err(ValidationError::NotNetNamespace { field: "netns", kind: netns.kind() }.into());
        }
        for pool in &self.address_pools {
            pool.validate()?;
        }
        let ipam = Ipam::open(&self.ipam_dir)?;
        let firewall: Arc<dyn FirewallBackend> = match &self.firewall {
            Some(f) => Arc::clone(f),
            None => Arc::new(NftNetlink::new(Some(&netns))?),
        };
        let netlink = Netlink::open_in(&netns)?;
        let dns = match self.embedded_dns {
            true => Some(Arc::new(DnsHub::new(netns.try_clone()?, self.resolv_conf.clone()))),
            false => None,
        };
        Ok(Host {
            inner: Arc::new(HostInner {
                netns,
                ipam,
                firewall,
                netlink: Mutex::new(netlink),
                address_pools: self.address_pools.clone(),
                ports: Mutex::new(HashSet::new()),
                dns,
            }),
        })
    }
}

impl Host {
    /// The calling thread's network namespace, IPAM state in [`DEFAULT_STATE_DIR`], nftables.
    pub fn current() -> Result<Host> {
        HostBuilder::new().build()
    }

    /// A builder (see [`HostBuilder`]).
    pub fn builder<'a>() -> HostBuilder<'a> {
        HostBuilder::new()
    }

    /// The host network namespace.
    pub fn netns(&self) -> &NsFd {
        &self.inner.netns
    }

    /// The IPAM state.
    pub fn ipam(&self) -> &Ipam {
        &self.inner.ipam
    }

    /// The pools automatic subnets are cut from ([`HostBuilder::address_pools`]).
    pub fn address_pools(&self) -> &[AddressPool] {
        &self.inner.address_pools
    }

    /// The firewall backend.
    pub fn firewall(&self) -> &dyn FirewallBackend {
        &*self.inner.firewall
    }

    /// The netlink socket in the host namespace (locked for the guard's lifetime: keep it
    /// short, never hold it across another `Host` call).
    pub fn netlink(&self) -> MutexGuard<'_, Netlink> {
        self.inner.netlink.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the embedded DNS server's thread runs now: while a sandbox on one of this
    /// host's user-defined networks exists ([`crate::dns`]). It stops, its sockets closed,
    /// when the last one is removed or disconnected.
    pub fn embedded_dns_running(&self) -> bool {
        self.inner.dns.as_ref().is_some_and(|d| d.is_running())
    }

    /// The embedded DNS server's hub (`None` when turned off).
    pub(crate) fn dns(&self) -> Option<&Arc<DnsHub>> {
        self.inner.dns.as_ref()
    }

    /// Reserves the host side of `ports` for this process, all or none.
    pub(crate) fn reserve_ports(&self, ports: &[PortMapping]) -> Result<()> {
        let mut used = self.inner.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken: Vec<(Protocol, Option<IpAddr>, u16)> = Vec::new();
        for p in ports {
            let key = (p.protocol, p.host_ip, p.host_port);
            if taken.iter().chain(used.iter()).any(|k| ports_clash(k, &key)) {
                return Err(Error::PortInUse { protocol: p.protocol, host_ip: p.host_ip, host_port: p.host_port });
            }
            taken.push(key);
        }
        used.extend(taken);
        Ok(())
    }

    /// Releases what [`Host::reserve_ports`] reserved.
    pub(crate) fn release_ports(&self, ports: &[PortMapping]) {
        let mut used = self.inner.ports.lock().unwrap_or_else(PoisonError::into_inner);
        for p in ports {
            used.remove(&(p.protocol, p.host_ip, p.host_port));
        }
    }
}

/// Two host-side ports clash when protocol and port are equal and the addresses overlap:
/// equal, or either is "every address" (`None`), or either is the unspecified address of the
/// other's family (every address of that family, as the firewall reads it).
fn ports_clash(a: &(Protocol, Option<IpAddr>, u16), b: &(Protocol, Option<IpAddr>, u16)) -> bool {
    let addresses = match (a.1, b.1) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => x == y || (x.is_ipv6() == y.is_ipv6() && (x.is_unspecified() || y.is_unspecified())),
    };
    a.0 == b.0 && a.2 == b.2 && addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Host>();
    }

    #[test]
    fn clashes() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(ports_clash(&(Protocol::Tcp, None, 80), &(Protocol::Tcp, Some(ip), 80)));
        assert!(ports_clash(&(Protocol::Tcp, Some(ip), 80), &(Protocol::Tcp, Some(ip), 80)));
        assert!(!ports_clash(&(Protocol::Tcp, Some(other), 80), &(Protocol::Tcp, Some(ip), 80)));
        assert!(!ports_clash(&(Protocol::Udp, None, 80), &(Protocol::Tcp, None, 80)));
        assert!(!ports_clash(&(Protocol::Tcp, None, 81), &(Protocol::Tcp, None, 80)));
        // An unspecified address means every address of its family (as in the firewall).
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(ports_clash(&(Protocol::Tcp, Some(any4), 80), &(Protocol::Tcp, Some(ip), 80)));
        assert!(ports_clash(&(Protocol::Tcp, Some(ip), 80), &(Protocol::Tcp, Some(any4), 80)));
        assert!(ports_clash(&(Protocol::Tcp, Some(any6), 80), &(Protocol::Tcp, Some(v6), 80)));
        assert!(!ports_clash(&(Protocol::Tcp, Some(any4), 80), &(Protocol::Tcp, Some(v6), 80)));
        assert!(!ports_clash(&(Protocol::Tcp, Some(any4), 80), &(Protocol::Tcp, Some(any6), 80)));
    }
}
