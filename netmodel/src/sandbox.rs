//! [`Sandbox`]: a network namespace holding endpoints (Docker's "sandbox"), in one of the
//! modes of `docker run --network=`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use nook_ns::{NetNs, NsFd};

use crate::dns::{Bound, DnsHub, Registration, Zone};
use crate::driver::{EndpointConfig, EndpointLink};
use crate::egress::EgressPolicy;
use crate::endpoint::{Endpoint, EndpointOptions};
use crate::error::{Error, Result, SysContext};
use crate::files::{self, DnsConfig, HostsEntry, validate_hostname};
use crate::firewall::{EgressEndpoint, PortRule};
use crate::ifname::IfName;
use crate::ipam::{Owner, Request};
use crate::mode::NetworkMode;
use crate::netlink::{Netlink, Route};
use crate::network::{Network, NetworkEndpoint};
use crate::util::random_hex;

/// The index of `lo` in every network namespace (`LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: u32 = 1;

/// What kind of network namespace a sandbox has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SandboxKind {
    /// Its own network namespace (`--network=none`, or connected to networks).
    Private,
    /// The host's network namespace (`--network=host`).
    Host,
    /// Another sandbox's network namespace (`--network=container:OTHER`).
    Container,
}

impl SandboxKind {
    fn mode_name(self) -> &'static str {
        match self {
            SandboxKind::Private => "private",
            SandboxKind::Host => "host",
            SandboxKind::Container => "container",
        }
    }
}

/// A network namespace holding endpoints.
///
/// * [`Sandbox::none`]: a new anonymous namespace with only `lo` (up);
///   [`Sandbox::persisted`] names it like `ip netns add` does, so it can outlive the process.
///   [`Sandbox::connect`] joins networks.
/// * [`Sandbox::host`]: the host's namespace; nothing is created.
/// * [`Sandbox::container`]: another sandbox's namespace, with its endpoints and host name.
///
/// Teardown ([`Sandbox::remove`], or best effort on drop): published ports first, then the
/// addresses go back to IPAM, then the namespace handle is closed (and a persisted name
/// unmounted). The kernel deletes the endpoint links when the namespace dies, asynchronously,
/// so teardown does not wait for it (deleting one veth synchronously costs ~17 ms). If
/// `container:` sandboxes still share the namespace, the owner's links are taken out of it
/// (see [`Sandbox::disconnect`]) so their addresses cannot linger after being released.
///
/// If an endpoint's published ports cannot be removed (the error reports it), its addresses
/// and host ports are *not* released: a sandbox given such an address would receive the
/// old ports' traffic. They stay allocated to this sandbox's IPAM owner (the process, or the
/// persisted namespace) until it is gone, or until you remove the rules
/// ([`crate::firewall::FirewallBackend::remove_ports`] with the endpoint's id) and release
/// the addresses ([`crate::ipam::Ipam::release`]) yourself.
#[derive(Debug)]
pub struct Sandbox {
    shared: Arc<SandboxShared>,
    kind: SandboxKind,
    /// The namespace this sandbox created (private kind only).
    netns: Option<NetNs>,
    /// Who owns its IPAM allocations.
    owner: Option<Owner>,
    done: bool,
}

/// What a sandbox shares with `container:` sandboxes joined to it.
#[derive(Debug)]
struct SandboxShared {
    name: String,
    netns: NsFd,
    netlink: Mutex<Option<Netlink>>,
    endpoints: Mutex<Vec<EndpointState>>,
    /// Its place on the embedded DNS server, while it is on a user-defined network. Locked
    /// after `endpoints` when both are; never dropped with `endpoints` locked (dropping it
    /// waits for the server thread, which locks `endpoints` to answer).
    dns: Mutex<Option<Registration>>,
    /// The name servers given for it ([`Sandbox::resolv_conf`]): its embedded server's
    /// upstreams instead of the host's.
    upstreams: Mutex<Option<Vec<IpAddr>>>,
    /// Its egress policy ([`Sandbox::set_egress`]), bound to every endpoint.
    egress: Mutex<Option<EgressPolicy>>,
}

#[derive(Debug)]
struct EndpointState {
    info: Endpoint,
    network: Network,
    config: EndpointConfig,
    link: EndpointLink,
    /// Carries the sandbox's default route: `[IPv4, IPv6]`.
    default_route: [bool; 2],
    /// Has an egress policy bound in the host's firewall.
    egress: bool,
    /// Its link was set down because a policy could not be bound to it (fail closed).
    cut: bool,
}

impl SandboxShared {
    fn endpoints(&self) -> MutexGuard<'_, Vec<EndpointState>> {
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the sandbox's netlink socket (opened on first use).
    fn netlink<R>(&self, f: impl FnOnce(&mut Netlink) -> Result<R>) -> Result<R> {
        let mut guard = self.netlink.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(Netlink::open_in(&self.netns)?);
        }
        f(guard.as_mut().expect("opened above"))
    }
}

/// The names the embedded DNS server answers in this sandbox: on each user-defined network
/// it is connected to, every endpoint's sandbox name, its aliases, and `NAME.NETWORK`, read
/// at each query (so connects and disconnects show at once).
impl Zone for SandboxShared {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let mut found: Option<Vec<IpAddr>> = None;
        let networks: Vec<Network> =
            self.endpoints().iter().filter(|e| e.network.spec().lists_peers()).map(|e| e.network.share()).collect();
        for network in networks {
            let short = match name.rsplit_once('.') {
                Some((short, suffix)) if suffix.eq_ignore_ascii_case(network.name()) => Some(short),
                _ => None,
            };
            for peer in network.endpoints() {
                let names = std::iter::once(&peer.sandbox).chain(peer.aliases.iter());
                let matched = names
                    .into_iter()
                    .any(|n| n.eq_ignore_ascii_case(name) || short.is_some_and(|s| n.eq_ignore_ascii_case(s)));
                if matched {
                    let list = found.get_or_insert_with(Vec::new);
                    list.extend(peer.addresses.iter().filter(|a| !list.contains(a)).collect::<Vec<_>>());
                }
            }
        }
        found
    }

    fn reverse(&self, ip: IpAddr) -> Option<Vec<String>> {
        let networks: Vec<Network> =
            self.endpoints().iter().filter(|e| e.network.spec().lists_peers()).map(|e| e.network.share()).collect();
        let mut names = Vec::new();
        for network in networks {
            for peer in network.endpoints().iter().filter(|p| p.addresses.contains(&ip)) {
                names.push(format!("{}.{}", peer.sandbox, network.name()));
            }
        }
        (!names.is_empty()).then_some(names)
    }

    fn upstreams(&self) -> Option<Vec<IpAddr>> {
        self.upstreams.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn policed(&self) -> bool {
        self.egress_policy().is_some()
    }

    fn allows_name(&self, name: &str) -> bool {
        self.egress_policy().as_ref().is_none_or(|p| p.allows_name(name))
    }

    fn allow_answered(&self, addresses: &[(IpAddr, Duration)]) -> bool {
        if addresses.is_empty() {
            return true;
        }
        // Copied out: the firewall is not called with `endpoints` locked.
        let bound: Vec<(Network, String)> =
            self.endpoints().iter().filter(|e| e.egress).map(|e| (e.network.share(), e.info.id.clone())).collect();
        bound.iter().all(|(network, id)| network.host().firewall().allow_egress(id, addresses).is_ok())
    }
}

impl SandboxShared {
    fn egress_policy(&self) -> MutexGuard<'_, Option<EgressPolicy>> {
        self.egress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sandbox {
    /// A sandbox in `mode` (see [`NetworkMode`]); `name` is its host name for the private
    /// modes (host mode uses the host's, container mode the other sandbox's).
    pub fn new(name: &str, mode: NetworkMode<'_>) -> Result<Sandbox> {
        match mode {
            NetworkMode::None => Sandbox::none(name),
            NetworkMode::Host(host) => Sandbox::host(host),
            NetworkMode::Network(network, options) => {
                let mut sandbox = Sandbox::none(name)?;
                sandbox.connect(network, options)?;
                Ok(sandbox)
            }
            NetworkMode::Container(other) => Sandbox::container(other),
        }
    }

    /// `--network=none`: a new anonymous network namespace with only `lo`, brought up.
    /// It lives while this handle (or a process inside it) does.
    pub fn none(name: &str) -> Result<Sandbox> {
        validate_hostname(name)?;
        Sandbox::private(name, NetNs::new()?, Owner::current_process())
    }

    /// Like [`Sandbox::none`], but the namespace is persisted as `RUN_DIR/NAME` (a bind mount,
    /// as `ip netns add` makes under [`nook_ns::NETNS_RUN_DIR`]). Its addresses are owned by
    /// that path in IPAM, so they stay reserved if the process dies without tearing down (the
    /// namespace, with its configured links, outlives it) and come back once the name is gone.
    pub fn persisted(name: &str, run_dir: impl AsRef<Path>) -> Result<Sandbox> {
        validate_hostname(name)?;
        let netns = NetNs::create_in(run_dir.as_ref(), name)?;
        let path = netns.path().map(Path::to_owned).unwrap_or_default();
        Sandbox::private(name, netns, Owner::netns(path))
    }

    /// A private sandbox over a network namespace that already exists — typically a
    /// process's new namespace ([`NetNs::of_pid`]) while that process is paused after clone,
    /// which is how `nook-sandbox` connects a container's own namespace to networks. `lo` is
    /// brought up; the namespace lives while this handle (or a process inside it) does.
    /// Addresses are owned by the calling process in IPAM.
    pub fn adopt(name: &str, netns: NetNs) -> Result<Sandbox> {
        validate_hostname(name)?;
        Sandbox::private(name, netns, Owner::current_process())
    }

    fn private(name: &str, netns: NetNs, owner: Owner) -> Result<Sandbox> {
        let mut netlink = Netlink::open_in(netns.ns())?;
        netlink.set_up(LOOPBACK_INDEX)?;
        let shared = SandboxShared {
            name: name.to_owned(),
            netns: netns.ns().try_clone()?,
            netlink: Mutex::new(Some(netlink)),
            endpoints: Mutex::new(Vec::new()),
            dns: Mutex::new(None),
            upstreams: Mutex::new(None),
            egress: Mutex::new(None),
        };
        Ok(Sandbox {
            shared: Arc::new(shared),
            kind: SandboxKind::Private,
            netns: Some(netns),
            owner: Some(owner),
            done: false,
        })
    }

    /// `--network=host`: the host's network namespace itself (nothing is created; no
    /// endpoints can be added). Its name is the host's host name.
    pub fn host(host: &crate::Host) -> Result<Sandbox> {
        let name = host_hostname()?;
        let shared = SandboxShared {
            name,
            netns: host.netns().try_clone()?,
            netlink: Mutex::new(None),
            endpoints: Mutex::new(Vec::new()),
            dns: Mutex::new(None),
            upstreams: Mutex::new(None),
            egress: Mutex::new(None),
        };
        Ok(Sandbox { shared: Arc::new(shared), kind: SandboxKind::Host, netns: None, owner: None, done: false })
    }

    /// `--network=container:OTHER`: shares `other`'s network namespace, endpoints, host
    /// name and host files. It cannot connect to networks itself (connect `other`).
    ///
    /// If `other` is removed first, its endpoints are torn down and their links taken out of
    /// the namespace; this sandbox keeps the namespace (with `lo`) alive until it is dropped.
    pub fn container(other: &Sandbox) -> Result<Sandbox> {
        let kind = if other.kind == SandboxKind::Host { SandboxKind::Host } else { SandboxKind::Container };
        Ok(Sandbox { shared: Arc::clone(&other.shared), kind, netns: None, owner: None, done: false })
    }

    /// The sandbox's name (its host name, and its name in its peers' `/etc/hosts`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The host name processes in the sandbox should have.
    pub fn hostname(&self) -> &str {
        &self.shared.name
    }

    /// Its kind.
    pub fn kind(&self) -> SandboxKind {
        self.kind
    }

    /// The network namespace (to spawn processes into, or `setns`).
    pub fn netns(&self) -> &NsFd {
        &self.shared.netns
    }

    /// The persisted path of the namespace, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.netns.as_ref().and_then(|n| n.path().map(Path::to_owned))
    }

    /// Runs `f` inside the sandbox's network namespace, on a dedicated short-lived thread
    /// ([`nook_ns::on_thread_in`]; sockets made there belong to the sandbox).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        Ok(nook_ns::on_thread_in(&[&self.shared.netns], f)?)
    }

    /// Its endpoints (a snapshot).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.shared.endpoints().iter().map(|e| e.info.clone()).collect()
    }

    /// Its endpoint on `network`, if connected.
    pub fn endpoint(&self, network: &Network) -> Option<Endpoint> {
        self.shared.endpoints().iter().find(|e| e.network.same(network)).map(|e| e.info.clone())
    }

    fn require_private(&self, operation: &'static str) -> Result<()> {
        if self.kind == SandboxKind::Private {
            Ok(())
        } else {
            Err(Error::ModeUnsupported { mode: self.kind.mode_name(), operation })
        }
    }

    /// Connects the sandbox to `network` (`docker network connect`).
    ///
    /// Checked first, with nothing changed: the options against the network, not already
    /// connected, interface name free, host ports not already published by this process
    /// (a port another process published is found by the firewall when the ports are
    /// published, the last step, and everything is undone). Then: addresses from IPAM (static or
    /// the next free, one per family the network has); the driver creates the link inside the
    /// sandbox (bridge: one request creating the veth pair, host end on the bridge and up,
    /// peer created in the sandbox under its final name); on the sandbox's own netlink socket:
    /// addresses, up, default route through the gateway for each family that has none yet
    /// (not on internal networks); then published ports. A failure undoes every step already
    /// done and reports the cause with any cleanup failure.
    pub fn connect(&mut self, network: &Network, options: &EndpointOptions) -> Result<Endpoint> {
        self.require_private("connect")?;
        let spec = network.spec();
        options.validate_for(spec, network.driver())?;
        if self.shared.egress_policy().is_some() {
            check_egress_driver(network, None)?;
        }
        let mut endpoints = self.shared.endpoints();
        if endpoints.iter().any(|e| e.network.same(network)) {
            return Err(Error::AlreadyConnected { sandbox: self.shared.name.clone(), network: spec.name.to_string() });
        }
        let ifname = match &options.ifname {
            // Checked by `validate_for` already: this only gives it its type.
            Some(n) => IfName::for_field("ifname", n.as_str())?,
            None => (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !endpoints.iter().any(|e| &e.info.ifname == n))
                .map(|n| IfName::new(n).expect("ethN is an interface name"))
                .expect("a free ethN"),
        };
        if endpoints.iter().any(|e| ifname == *e.info.ifname) {
            return Err(Error::InterfaceInUse { sandbox: self.shared.name.clone(), ifname: ifname.into_string() });
        }
        network.host().reserve_ports(&options.ports)?;
        let mut progress = Progress::default();
        let owner = self.owner.as_ref().expect("a private sandbox has an IPAM owner");
        // The embedded DNS's sockets are made inside the sandbox while the link is created.
        let dns_bound = self.bind_dns_meanwhile(network);
        match self.connect_steps(network, options, ifname, owner, &endpoints, &mut progress) {
            Ok(state) => {
                if let Err(e) = self.serve_dns(network, dns_bound) {
                    let cleanup = teardown_endpoint(&self.shared, &state, true);
                    return Err(Error::with_cleanup(e, cleanup));
                }
                let info = state.info.clone();
                endpoints.push(state);
                Ok(info)
            }
            Err(cause) => {
                let cleanup = progress.undo(&self.shared, network, options);
                Err(Error::with_cleanup(cause, cleanup))
            }
        }
    }

    /// When `network` will need the embedded DNS in this sandbox (user-defined, not served
    /// yet), starts making its sockets on another thread ([`crate::dns`]); `None` otherwise,
    /// or when no thread can be made (then [`Sandbox::serve_dns`] makes them itself).
    fn bind_dns_meanwhile(&self, network: &Network) -> Option<std::thread::JoinHandle<Result<Bound>>> {
        network.host().dns().filter(|_| network.spec().lists_peers())?;
        if self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).is_some() {
            return None;
        }
        let netns = self.shared.netns.try_clone().ok()?;
        std::thread::Builder::new().name("nk-dns-bind".into()).spawn(move || DnsHub::bind(&netns)).ok()
    }

    /// Registers the sandbox with the embedded DNS server of `network`'s host when `network`
    /// is user-defined and the sandbox is not served yet ([`crate::dns`]), on the sockets
    /// `bound` made if given.
    fn serve_dns(&self, network: &Network, bound: Option<std::thread::JoinHandle<Result<Bound>>>) -> Result<()> {
        let bound = bound.map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        let Some(hub) = network.host().dns().filter(|_| network.spec().lists_peers()) else { return Ok(()) };
        let mut dns = self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner);
        if dns.is_none() {
            let zone: Weak<dyn Zone> = Arc::downgrade(&self.shared) as Weak<dyn Zone>;
            let bound = match bound {
                Some(b) => b?,
                None => DnsHub::bind(&self.shared.netns)?,
            };
            *dns = Some(hub.serve(bound, zone)?);
        }
        Ok(())
    }

    /// Sets (or with `None` removes) the sandbox's egress policy ([`crate::egress`]): from
    /// then on everything its endpoints send that the policy does not allow is rejected by
    /// the host's firewall. Endpoints connected later get it before their link is up;
    /// endpoints already connected get it at once (replacing the policy they had; a failure
    /// on one endpoint is reported after the others were tried). Fail closed: an endpoint
    /// the policy could not be bound to is cut off (the host side of its link, the bridge
    /// port, set down: the sandbox's side keeps its addresses and routes, without carrier)
    /// until a later `set_egress` binds one — never left with less than asked for. Checked first: the policy
    /// ([`EgressPolicy::validate`]), a private sandbox (not `host` or `container:`), every
    /// endpoint on a network with a bridge port ([`Error::EgressUnsupported`]).
    ///
    /// Names need the embedded DNS ([`crate::dns`], user-defined networks): elsewhere an
    /// allowed domain never resolves, and only the allowed CIDRs are reachable.
    pub fn set_egress(&mut self, policy: Option<EgressPolicy>) -> Result<()> {
        self.require_private("egress policy")?;
        if let Some(p) = &policy {
            p.validate()?;
        }
        let mut endpoints = self.shared.endpoints();
        for e in endpoints.iter() {
            check_egress_driver(&e.network, Some(&e.link))?;
        }
        *self.shared.egress_policy() = policy.clone();
        let mut errors = Vec::new();
        for e in endpoints.iter_mut() {
            let firewall = e.network.host().firewall();
            let done = match &policy {
                Some(p) => firewall.set_egress(&egress_endpoint(&e.info, &e.link), p).map(|()| true),
                None => firewall.remove_egress(&e.info.id).map(|()| false),
            };
            match done {
                Ok(bound) => {
                    e.egress = bound;
                    // Bound now (or no policy asked for): a link cut by an earlier failure
                    // carries traffic again.
                    if e.cut {
                        match set_host_side(&e.network, &e.link, true) {
                            Ok(()) => e.cut = false,
                            Err(err) => errors.push(err),
                        }
                    }
                }
                // Fail closed: the policy asked for is not in force on this endpoint (it has
                // none, or the one it had), so it carries nothing until a policy is bound.
                Err(err) if policy.is_some() => {
                    errors.push(Error::from(err));
                    match set_host_side(&e.network, &e.link, false) {
                        Ok(()) => e.cut = true,
                        Err(err) => errors.push(err),
                    }
                }
                // A policy that could not be removed stays in force: closed already.
                Err(err) => errors.push(Error::from(err)),
            }
        }
        drop(endpoints);
        Error::teardown(format!("egress policy of sandbox {}", self.shared.name), errors)
    }

    /// The sandbox's egress policy, if it has one.
    pub fn egress(&self) -> Option<EgressPolicy> {
        self.shared.egress_policy().clone()
    }

    /// Whether the embedded DNS server answers in this sandbox (at [`crate::dns::EMBEDDED_DNS`]):
    /// while it is connected to a user-defined network.
    pub fn has_embedded_dns(&self) -> bool {
        self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    fn connect_steps(
        &self,
        network: &Network,
        options: &EndpointOptions,
        ifname: IfName,
        owner: &Owner,
        endpoints: &[EndpointState],
        progress: &mut Progress,
    ) -> Result<EndpointState> {
        let spec = network.spec();
        let host = network.host();
        let id = random_hex(64);
        progress.id = id.clone();
        let mut allocations = Vec::new();
        for ipv6 in [false, true] {
            if !spec.has_family(ipv6) {
                continue;
            }
            let request = match (ipv6, options.ip, options.ip6) {
                (false, Some(ip), _) => Request::Static(IpAddr::V4(ip)),
                (true, _, Some(ip)) => Request::Static(IpAddr::V6(ip)),
                (false, None, _) => Request::AnyV4,
                (true, _, None) => Request::AnyV6,
            };
            let (allocation, reclaimed) = host.ipam().allocate_reclaiming(&spec.name, request, owner)?;
            progress.allocated.push(allocation.address.addr());
            allocations.push(allocation);
            // Addresses of owners that died without tearing down may still have their
            // published ports' rules: remove them before any address serves a new owner.
            if !reclaimed.is_empty() && network.driver().publishes_ports(spec) {
                host.firewall().remove_ports_to(&spec.name, &reclaimed)?;
            }
            // And their egress policies (harmless to the new owner, whose port differs, but
            // what a dead owner left must not stay).
            if !reclaimed.is_empty() {
                host.firewall().remove_egress_to(&reclaimed)?;
            }
        }
        let config = EndpointConfig {
            id: id.clone(),
            ifname: ifname.to_string(),
            host_ifname: format!("nk{}", random_hex(12)),
            addresses: allocations.iter().map(|a| a.address).collect(),
            gateways: allocations.iter().map(|a| a.gateway).collect(),
            mac: options.mac,
            mtu: spec.mtu,
        };
        let policy = self.shared.egress_policy().clone();
        let link = network.driver().connect(host, spec, &self.shared.netns, &config)?;
        progress.link = Some((config.clone(), link.clone()));
        // The policy is bound before the sandbox side is up: nothing leaves unchecked.
        if let Some(policy) = &policy {
            check_egress_driver(network, Some(&link))?;
            let mac = self.shared.netlink(|nl| {
                nl.link(&ifname)?.map(|info| info.mac.unwrap_or_default()).ok_or_else(|| Error::LinkMissing {
                    driver: network.driver().name().to_owned(),
                    ifname: ifname.to_string(),
                })
            })?;
            let addresses: Vec<IpAddr> = config.addresses.iter().map(|a| a.addr()).collect();
            let bound = EgressEndpoint::new(&id, link.host_ifname.clone().unwrap_or_default(), mac, addresses);
            progress.egress = true;
            host.firewall().set_egress(&bound, policy)?;
        }

        // Configure the sandbox side, on the sandbox's own socket.
        let mut default_route = [false, false];
        let (index, mac) = self.shared.netlink(|nl| {
            let info = nl.link(&ifname)?.ok_or_else(|| Error::LinkMissing {
                driver: network.driver().name().to_owned(),
                ifname: ifname.to_string(),
            })?;
            for address in &config.addresses {
                nl.add_address(info.index, *address)?;
            }
            nl.set_up(info.index)?;
            if !spec.internal {
                for (address, gateway) in config.addresses.iter().zip(&config.gateways) {
                    let family = usize::from(address.addr().is_ipv6());
                    let taken = endpoints.iter().any(|e| e.default_route[family]) || default_route[family];
                    if taken {
                        continue;
                    }
                    match add_default_route(nl, info.index, *gateway) {
                        Ok(true) => default_route[family] = true,
                        Ok(false) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok((info.index, info.mac))
        })?;

        // Published ports, for each address of a family the mapping applies to.
        // Marked before the call: a backend that fails halfway may have added some rules,
        // and the undo removes them (removing what is not there succeeds). A refusal
        // changed nothing.
        let rules = port_rules(options, &config.addresses);
        progress.published = !rules.is_empty();
        if let Err(e) = network.driver().publish(host, spec, &id, &rules) {
            // A firewall refusal: bad input (lifted to Error::Invalid) or one of its refusals.
            if matches!(&e, Error::Invalid(_)) || matches!(&e, Error::Firewall(f) if f.is_refusal()) {
                progress.published = false;
            }
            return Err(e);
        }

        let info = Endpoint {
            id: id.clone(),
            network: spec.name.to_string(),
            sandbox: self.shared.name.clone(),
            ifname: ifname.into_string(),
            index,
            host_ifname: link.host_ifname.clone(),
            addresses: config.addresses.clone(),
            gateways: config.gateways.clone(),
            mac,
            aliases: options.aliases.clone(),
            ports: options.ports.clone(),
        };
        network.register(NetworkEndpoint {
            id,
            sandbox: self.shared.name.clone(),
            addresses: config.addresses.iter().map(|a| a.addr()).collect(),
            aliases: options.aliases.clone(),
        });
        Ok(EndpointState {
            info,
            network: network.share(),
            config,
            link,
            default_route,
            egress: policy.is_some(),
            cut: false,
        })
    }

    /// Disconnects the sandbox from `network` (`docker network disconnect`): its published
    /// ports are removed, its link is taken out of the sandbox, its addresses go back to IPAM
    /// (unless its ports' rules could not be removed: see [`Sandbox`]). If it carried the
    /// default route, another endpoint's gateway takes over.
    ///
    /// The link is not deleted synchronously (that costs the kernel ~17 ms per veth, and
    /// moving it to a throwaway namespace costs as much): it is set down at once — its routes
    /// go, its addresses are unreachable — and deleted on a background thread. See the crate
    /// docs for the measurements behind this choice.
    pub fn disconnect(&mut self, network: &Network) -> Result<()> {
        self.require_private("disconnect")?;
        let mut endpoints = self.shared.endpoints();
        let Some(i) = endpoints.iter().position(|e| e.network.same(network)) else {
            return Err(Error::NotConnected { sandbox: self.shared.name.clone(), network: network.name().to_owned() });
        };
        let gone = endpoints.remove(i);
        let mut errors = teardown_endpoint(&self.shared, &gone, true);
        // The last user-defined network gone: no embedded DNS any more (dropped below, with
        // `endpoints` unlocked).
        let dns = match endpoints.iter().any(|e| e.network.spec().lists_peers()) {
            true => None,
            false => self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).take(),
        };
        for family in [0, 1] {
            if !gone.default_route[family] {
                continue;
            }
            let next = endpoints.iter_mut().find(|e| {
                !e.network.spec().internal && e.info.addresses.iter().any(|a| usize::from(a.addr().is_ipv6()) == family)
            });
            if let Some(next) = next {
                let gateway = next
                    .info
                    .addresses
                    .iter()
                    .zip(&next.info.gateways)
                    .find(|(a, _)| usize::from(a.addr().is_ipv6()) == family)
                    .map(|(_, g)| *g);
                if let Some(gateway) = gateway {
                    let index = next.info.index;
                    match self.shared.netlink(|nl| add_default_route(nl, index, gateway)) {
                        Ok(added) => next.default_route[family] = added,
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        drop(endpoints);
        drop(dns);
        Error::teardown(format!("endpoint {} of sandbox {}", &gone.info.id[..12], self.shared.name), errors)
    }

    /// The `/etc/hosts` for processes in the sandbox: the loopback names and its own
    /// addresses with its name. Peers are not listed while the embedded DNS server serves the
    /// sandbox ([`crate::dns`], the default on user-defined networks, as with Docker): it
    /// answers for them, and follows connects and disconnects where a file would go stale.
    /// When the host turned it off ([`crate::HostBuilder::embedded_dns`]), every peer is
    /// listed — the other endpoints of the user-defined networks it is connected to (not of
    /// the default network, [`NetworkSpec::default_bridge`](crate::NetworkSpec::default_bridge),
    /// as with Docker), with their sandbox's name and their aliases; that content reflects the
    /// moment of the call (write it again when peers come and go). A `host` sandbox gets the
    /// host's `/etc/hosts` as it is; a `container:` sandbox the same file as the sandbox it
    /// joined.
    pub fn hosts_file(&self) -> Result<String> {
        if self.kind == SandboxKind::Host {
            let path = "/etc/hosts";
            return Ok(std::fs::read_to_string(path).sys_at("read", path)?);
        }
        let endpoints = self.shared.endpoints();
        let own: Vec<IpAddr> = endpoints.iter().flat_map(|e| e.info.addresses.iter().map(|a| a.addr())).collect();
        let mut peers: Vec<HostsEntry> = Vec::new();
        let served = self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        for endpoint in endpoints.iter().filter(|e| e.network.spec().lists_peers() && !served) {
            for peer in endpoint.network.endpoints() {
                if endpoints.iter().any(|e| e.info.id == peer.id) {
                    continue;
                }
                let mut names = vec![peer.sandbox.clone()];
                names.extend(peer.aliases.iter().filter(|a| **a != peer.sandbox).cloned());
                for address in &peer.addresses {
                    let entry = HostsEntry { address: *address, names: names.clone() };
                    if !peers.contains(&entry) {
                        peers.push(entry);
                    }
                }
            }
        }
        Ok(files::hosts_file(&self.shared.name, &own, &peers))
    }

    /// The `/etc/resolv.conf` for processes in the sandbox.
    ///
    /// Served by the embedded DNS server ([`crate::dns`]: on a user-defined network):
    /// `nameserver 127.0.0.11` with the search domains and options of `dns` if given, else of
    /// the host's `resolv.conf`; the name servers of `dns`, if any, become the server's
    /// upstreams for this sandbox (Docker's `--dns`), from this call on.
    ///
    /// Otherwise: `dns` if given (validated, used as is), else the host's configuration made
    /// reachable from the sandbox's own namespace ([`DnsConfig::from_host`]: loopback
    /// resolvers dropped, Docker's public fallback if none remains). A `host` sandbox shares
    /// the host's resolvers: without `dns`, it gets the host's `/etc/resolv.conf` as it is.
    pub fn resolv_conf(&self, dns: Option<&DnsConfig>) -> Result<String> {
        let served = self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        if let Some(dns) = dns {
            dns.validate()?;
            if !served {
                return Ok(dns.render());
            }
            // As Docker's `--dns` on a user-defined network: the embedded server stays the
            // sandbox's resolver and forwards to the given servers.
            let servers = (!dns.nameservers.is_empty()).then(|| dns.nameservers.clone());
            *self.shared.upstreams.lock().unwrap_or_else(PoisonError::into_inner) = servers;
            let conf = DnsConfig {
                nameservers: vec![crate::dns::EMBEDDED_DNS],
                search: dns.search.clone(),
                options: dns.options.clone(),
            };
            return Ok(conf.render());
        }
        if self.kind == SandboxKind::Host {
            let path = files::RESOLV_CONF;
            return Ok(std::fs::read_to_string(path).sys_at("read", path)?);
        }
        if let Some(dns) = self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let host = dns.host_config()?;
            let conf =
                DnsConfig { nameservers: vec![crate::dns::EMBEDDED_DNS], search: host.search, options: host.options };
            return Ok(conf.render());
        }
        Ok(DnsConfig::from_host()?.render())
    }

    /// Tears the sandbox down (see the type's docs for the order); every step is attempted
    /// and every failure reported. For `host` and `container:` sandboxes this only closes
    /// the handle.
    pub fn remove(mut self) -> Result<()> {
        let errors = self.teardown();
        Error::teardown(format!("sandbox {}", self.shared.name), errors)
    }

    fn teardown(&mut self) -> Vec<Error> {
        if std::mem::replace(&mut self.done, true) || self.kind != SandboxKind::Private {
            return Vec::new();
        }
        // Others (container-mode sandboxes) keep the namespace alive: take the links out so
        // the released addresses do not linger on them.
        let shared_by_others = Arc::strong_count(&self.shared) > 1;
        let endpoints = std::mem::take(&mut *self.shared.endpoints());
        let mut errors = Vec::new();
        for endpoint in &endpoints {
            errors.extend(teardown_endpoint(&self.shared, endpoint, shared_by_others));
        }
        drop(endpoints);
        // Its sockets closed before the namespace handle goes (they hold the namespace).
        drop(self.shared.dns.lock().unwrap_or_else(PoisonError::into_inner).take());
        if !shared_by_others {
            // The socket holds a reference on the namespace.
            *self.shared.netlink.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        if let Some(netns) = self.netns.take()
            && let Err(e) = netns.remove()
        {
            errors.push(e.into());
        }
        errors
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// What [`Sandbox::connect`] has done so far, to undo on failure.
#[derive(Default)]
struct Progress {
    id: String,
    allocated: Vec<IpAddr>,
    link: Option<(EndpointConfig, EndpointLink)>,
    published: bool,
    egress: bool,
}

impl Progress {
    fn undo(self, shared: &SandboxShared, network: &Network, options: &EndpointOptions) -> Vec<Error> {
        let (host, spec, driver) = (network.host(), network.spec(), network.driver());
        let mut errors = Vec::new();
        // As in `teardown_endpoint`: rules that could not be removed keep their addresses.
        let mut ports_left = false;
        if self.published
            && let Err(e) = driver.unpublish(host, spec, &self.id)
        {
            errors.push(e);
            ports_left = true;
        }
        if self.egress
            && let Err(e) = host.firewall().remove_egress(&self.id)
        {
            errors.push(e.into());
        }
        if let Some((config, link)) = &self.link {
            let ifname = &config.ifname;
            let taken = shared.netlink(|nl| Ok(nl.link(ifname)?)).and_then(|found| match found {
                Some(info) => discard_link(shared, info.index),
                None => Ok(()),
            });
            if let Err(e) = taken {
                errors.push(e);
            }
            if let Err(e) = driver.disconnect(host, spec, config, link) {
                errors.push(e);
            }
        }
        if !ports_left {
            for address in &self.allocated {
                if let Err(e) = host.ipam().release(&spec.name, *address) {
                    errors.push(e.into());
                }
            }
            host.release_ports(&options.ports);
        }
        errors
    }
}

/// Tears one endpoint down: published ports, the link (only if `take_link`: when the
/// sandbox's namespace lives on), the addresses, the driver's state, the network's record.
fn teardown_endpoint(shared: &SandboxShared, endpoint: &EndpointState, take_link: bool) -> Vec<Error> {
    let network = &endpoint.network;
    let (host, spec, driver) = (network.host(), network.spec(), network.driver());
    let mut errors = Vec::new();
    // Published ports whose rules could not be removed keep their addresses (and host ports)
    // taken: a sandbox given the address next would receive their traffic.
    let mut ports_left = false;
    if !endpoint.info.ports.is_empty() {
        match driver.unpublish(host, spec, &endpoint.info.id) {
            Ok(()) => host.release_ports(&endpoint.info.ports),
            Err(e) => {
                errors.push(e);
                ports_left = true;
            }
        }
    }
    if endpoint.egress
        && let Err(e) = host.firewall().remove_egress(&endpoint.info.id)
    {
        errors.push(e.into());
    }
    if take_link && let Err(e) = discard_link(shared, endpoint.info.index) {
        errors.push(e);
    }
    if !ports_left {
        for address in &endpoint.info.addresses {
            if let Err(e) = host.ipam().release(&spec.name, address.addr()) {
                errors.push(e.into());
            }
        }
    }
    if let Err(e) = driver.disconnect(host, spec, &endpoint.config, &endpoint.link) {
        errors.push(e);
    }
    network.unregister(&endpoint.info.id);
    errors
}

/// Takes a link out of a live sandbox without making the caller wait for its deletion (the
/// kernel takes ~17 ms or more to delete a veth, and as long to move a link to another
/// namespace): the link is set down at once (which also drops its routes, so its addresses
/// are unreachable), then deleted on a background thread with a socket of its own. Deleting
/// either end of a veth pair deletes both.
///
/// The process waits for that thread when it exits ([`nook_ns::background`]); if it is killed
/// first, the link stays, down, until its namespace dies (at once for an anonymous sandbox;
/// for a persisted one, when its name is removed).
fn discard_link(shared: &SandboxShared, index: u32) -> Result<()> {
    match shared.netlink(|nl| Ok(nl.set_down(index)?)) {
        Ok(()) => {}
        Err(Error::Netlink(e)) if e.errno() == Some(libc::ENODEV) => return Ok(()),
        Err(e) => return Err(e),
    }
    let netns = shared.netns.try_clone()?;
    nook_ns::background::spawn("nk-link-delete", move || {
        if let Ok(mut nl) = Netlink::open_in(&netns) {
            let _ = nl.delete_link(index);
        }
    })
    .sys("spawn the link deletion thread")?;
    Ok(())
}

/// Adds a default route through `gateway` on link `index`; `Ok(false)` if one exists already.
fn add_default_route(nl: &mut Netlink, index: u32, gateway: IpAddr) -> Result<bool> {
    let route = Route { destination: None, gateway: Some(gateway), oif: Some(index), ipv6: gateway.is_ipv6() };
    match nl.add_route(&route) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The firewall rules for the published ports: each mapping for each endpoint address of a
/// family it applies to (a host address of one family only forwards to that family).
fn port_rules(options: &EndpointOptions, addresses: &[ipnet::IpNet]) -> Vec<PortRule> {
    let mut rules = Vec::new();
    for mapping in &options.ports {
        for address in addresses {
            let ip = address.addr();
            if mapping.host_ip.is_some_and(|h| h.is_ipv6() != ip.is_ipv6()) {
                continue;
            }
            rules.push(PortRule { mapping: mapping.clone(), container_ip: ip });
        }
    }
    rules
}

/// The caller's host name (`/proc/sys/kernel/hostname`: the caller's UTS namespace).
fn host_hostname() -> Result<String> {
    let path = "/proc/sys/kernel/hostname";
    Ok(std::fs::read_to_string(path).sys_at("read", path)?.trim_end().to_owned())
}

/// Refuses an egress policy on a network whose endpoints have no bridge port on the host
/// (`link`: the endpoint's; `None` checks the network alone).
fn check_egress_driver(network: &Network, link: Option<&EndpointLink>) -> Result<()> {
    if network.bridge().is_none() || link.is_some_and(|l| l.host_ifname.is_none()) {
        return Err(Error::EgressUnsupported {
            network: network.name().to_owned(),
            driver: network.driver().name().to_owned(),
        });
    }
    Ok(())
}

/// Sets the host side of an endpoint's link (its bridge port) up or down, in the host's
/// namespace: how an endpoint whose egress policy could not be bound is cut off.
fn set_host_side(network: &Network, link: &EndpointLink, up: bool) -> Result<()> {
    let unsupported =
        || Error::EgressUnsupported { network: network.name().to_owned(), driver: network.driver().name().to_owned() };
    let mut nl = network.host().netlink();
    let index = match (link.host_index, &link.host_ifname) {
        (Some(index), _) => index,
        (None, Some(name)) => nl.link(name)?.map(|l| l.index).ok_or_else(unsupported)?,
        (None, None) => return Err(unsupported()),
    };
    if up {
        nl.set_up(index)?
    } else {
        nl.set_down(index)?
    }
    Ok(())
}

/// What the firewall binds a policy to for an endpoint.
fn egress_endpoint(info: &Endpoint, link: &EndpointLink) -> EgressEndpoint {
    let addresses = info.addresses.iter().map(|a| a.addr()).collect();
    EgressEndpoint::new(&info.id, link.host_ifname.clone().unwrap_or_default(), info.mac.unwrap_or_default(), addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{PortMapping, Protocol};

    #[test]
    fn rules_per_family() {
        let addresses: Vec<ipnet::IpNet> = vec!["10.0.0.2/24".parse().unwrap(), "fd00::2/64".parse().unwrap()];
        let mut o = EndpointOptions::new();
        o.port(PortMapping { protocol: Protocol::Tcp, host_ip: None, host_port: 80, container_port: 8080 });
        o.port(PortMapping {
            protocol: Protocol::Udp,
            host_ip: Some("192.0.2.1".parse().unwrap()),
            host_port: 53,
            container_port: 53,
        });
        let rules = port_rules(&o, &addresses);
        let got: Vec<(u16, IpAddr)> = rules.iter().map(|r| (r.mapping.host_port, r.container_ip)).collect();
        assert_eq!(
            got,
            [(80, "10.0.0.2".parse().unwrap()), (80, "fd00::2".parse().unwrap()), (53, "10.0.0.2".parse().unwrap())]
        );
    }

    #[test]
    fn sandbox_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Sandbox>();
    }
}
