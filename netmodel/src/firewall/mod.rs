//! NAT and published ports through nftables: one table for nook, chains per network.
//!
//! [`FirewallBackend`] is what the network model calls; [`Nftables`] is the built-in backend.
//! It drives the `nft` program in JSON mode (`nft -j`, as netavark does) with batches built
//! from the `nftables` crate's schema types. Every operation is one `nft` transaction: it
//! applies completely or not at all.
//!
//! # What it sets up
//!
//! One table, `inet nook` (see [`Nftables::table_name`]), with five base chains created with
//! the first network and deleted with the last one: `nat-prerouting` (dstnat),
//! `nat-output` (-100), `nat-postrouting` (srcnat), `filter-forward` (filter) and
//! `raw-prerouting` (raw). Each network gets regular chains `nk-NETWORK-{fwd,post,pre,raw}`,
//! reached by jumps from the base chains:
//!
//! - **Masquerade** (non-internal networks): `ip saddr SUBNET oifname != BRIDGE masquerade`
//!   for every IPv4 and IPv6 subnet.
//! - **Forwarding**: the base chain accepts established/related traffic; a network accepts
//!   DNAT-ed traffic (its published ports) into its bridge and drops anything else entering
//!   the bridge from another interface — other networks (isolation, as Docker does) and the
//!   outside alike. Outbound traffic passes through the chains' accept policy rather than an
//!   explicit `accept` verdict: an accept would end the evaluation of `filter-forward` and
//!   skip the drops of the networks after it. An **internal** network drops everything
//!   forwarded between its bridge and another interface, and gets no NAT.
//! - **Published ports** ([`PortRule`]): a DNAT rule per port, reached through
//!   `fib daddr type local` from both prerouting (other hosts and namespaces, and sandboxes
//!   of any network: hairpin) and output (the host itself). `host_ip` `None` or unspecified
//!   means every local address of the container address's family; a given `host_ip` must be
//!   a local address of the namespace. IPv4 mappings reachable on a loopback address (no
//!   `host_ip`, or `127.x`) work from the host on `127.0.0.1` like Docker with the userland
//!   proxy off: `route_localnet=1` on the bridge (set only while such a mapping exists) and
//!   masquerade of `ip saddr 127.0.0.0/8 oifname BRIDGE`; a raw-priority rule drops packets
//!   sent to `127.0.0.0/8` from the bridge so sandboxes cannot reach the host's loopback
//!   services through it. IPv6 has no `route_localnet`: `[::1]` is never DNAT-ed (a
//!   `host_ip` of `::1` is refused). A sandbox reaching a published port through a host
//!   address (its own port or a peer's) is masqueraded so replies come back the same way.
//! - **`ip_forward`**: `net.ipv4.ip_forward` (with an IPv4 subnet) and
//!   `net.ipv6.conf.all.forwarding` (with an IPv6 subnet) are set to 1 in the backend's
//!   namespace when a non-internal network is set up, never for internal ones. They are not
//!   turned back off at teardown (other software may rely on them, as with Docker). Note
//!   that IPv6 forwarding makes the kernel ignore router advertisements on interfaces with
//!   `accept_ra=1`.
//!
//! Tables of other software are left alone; note that an accept in nook's table cannot
//! override a drop in another table (e.g. an iptables `FORWARD` policy of `DROP`).
//!
//! # State lives in the kernel
//!
//! The backend keeps no state: chains are named after the network, and rule comments carry
//! what later operations need (the network's bridge and families; the endpoint and host side
//! of each published port). A network set up by one process can be torn down by another.
//! Each operation reads the table (`nft -j list table`), computes a batch, applies it, all
//! under a lock private to the table and the namespace (an abstract unix socket: no file,
//! released when its holder dies), so concurrent nook processes do not interleave.
//!
//! # Namespaces
//!
//! Everything happens in the network namespace given to [`Nftables::new`]: each operation
//! runs on a short-lived thread that entered it (`nft` inherits the thread's namespace, and
//! network sysctls resolve to the namespace of the thread that opens them). The caller's
//! threads never change namespace.
//!
//! # Teardown order
//!
//! Remove a sandbox's ports ([`FirewallBackend::remove_ports`]) and its network's rules
//! ([`FirewallBackend::teardown_network`]) first, then delete the links, then the namespace.
//! Both are idempotent: removing what is not there succeeds.

mod exec;
mod render;
mod state;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use ipnet::IpNet;
use nook_ns::{Namespace, NsFd};

use exec::Ctx;
use state::{NetChain, NetMeta, PortTag};

/// The default table name (`inet nook`).
pub const DEFAULT_TABLE: &str = "nook";

/// Longest network name: it is part of chain names and rule comments.
pub const MAX_NETWORK_LEN: usize = 64;

/// Longest endpoint id: it is part of rule comments (128 bytes at most, in nftables).
pub const MAX_ENDPOINT_LEN: usize = 64;

/// Longest table name.
pub const MAX_TABLE_LEN: usize = 64;

/// A firewall failure.
///
/// The variants up to [`FirewallError::InternalNetwork`] are refusals: nothing was changed
/// ([`FirewallError::is_refusal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// A port is out of range (0).
    #[error("firewall: invalid {field} {value}: {reason}")]
    InvalidPort {
        /// `"host_port"` or `"container_port"`.
        field: &'static str,
        /// The value given.
        value: u16,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An address cannot be used.
    #[error("firewall: invalid {field} {address}: {reason}")]
    InvalidAddress {
        /// `"host_ip"` or `"container_ip"`.
        field: &'static str,
        /// The value given.
        address: IpAddr,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A name (network, endpoint, bridge, table) cannot be used.
    #[error("firewall: invalid {what} name {value:?}: {reason}")]
    InvalidName {
        /// `"network"`, `"endpoint"`, `"bridge"` or `"table"`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A subnet of a network cannot be used.
    #[error("firewall: network {network:?}: subnet {subnet} {reason}")]
    InvalidSubnet {
        /// The network.
        network: String,
        /// The subnet given.
        subnet: IpNet,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A port's container address is of a family the network has no subnet of.
    #[error("firewall: network {network:?} has no {} subnet for container address {container_ip}", family(*.container_ip))]
    FamilyNotInNetwork {
        /// The network.
        network: String,
        /// The container address given.
        container_ip: IpAddr,
    },
    /// The host port is already published by nook (same protocol and family, same or
    /// overlapping host address), or twice in one request.
    #[error("firewall: {protocol} port {} is already published (by endpoint {holder:?})", host(*.host_ip, *.host_port))]
    PortConflict {
        /// Protocol.
        protocol: Protocol,
        /// The host address asked for (`None`: any).
        host_ip: Option<IpAddr>,
        /// The host port asked for.
        host_port: u16,
        /// The endpoint that holds it.
        holder: String,
    },
    /// Ports were asked for on a network that is not set up.
    #[error("firewall: network {network:?} is not set up")]
    UnknownNetwork {
        /// The network.
        network: String,
    },
    /// The network is already set up with other parameters (bridge, subnets, internal).
    #[error("firewall: network {network:?} is already set up with other parameters (tear it down first)")]
    NetworkExists {
        /// The network.
        network: String,
    },
    /// Ports cannot be published on an internal network (it has no way in from outside).
    #[error("firewall: network {network:?} is internal: ports cannot be published on it")]
    InternalNetwork {
        /// The network.
        network: String,
    },
    /// `nft` could not be run (not installed, or a pipe failed).
    #[error("firewall: {op} {target}: cannot run {}: {source}", program.display())]
    NftSpawn {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The program (install the `nftables` package if it is missing).
        program: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` failed.
    #[error("firewall: {op} {target}: `{} {command}` failed ({status}): {stderr}", program.display())]
    Nft {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The program.
        program: PathBuf,
        /// Its arguments.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `nft`'s JSON could not be read (or a batch could not be encoded).
    #[error("firewall: {op} {target}: nft JSON: {source}")]
    Json {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A sysctl could not be read or written.
    #[error("firewall: {op} {target}: cannot {action} {}: {source}", path.display())]
    Sysctl {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// `"read"`, `"write 1 to"`, `"write 0 to"`.
        action: &'static str,
        /// The file under `/proc/sys`.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The backend's network namespace could not be entered (or captured, in
    /// [`Nftables::new`]).
    #[error("firewall: {op} {target}: network namespace: {source}")]
    Namespace {
        /// The backend operation.
        op: &'static str,
        /// The network (and endpoint) it was about.
        target: String,
        /// The error.
        #[source]
        source: nook_ns::Error,
    },
    /// The table's lock could not be taken.
    #[error("firewall: cannot lock table {table}: {source}")]
    Lock {
        /// The table.
        table: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another operation held the table's lock too long.
    #[error("firewall: table {table} is still locked by another operation after {waited:?}")]
    LockTimeout {
        /// The table.
        table: String,
        /// How long this operation waited.
        waited: Duration,
    },
    /// An operation failed and undoing its first part failed too.
    #[error("{cause}; undoing it failed too: {cleanup}")]
    Cleanup {
        /// Why the operation failed.
        cause: Box<FirewallError>,
        /// Why the cleanup failed (some rules or settings may remain).
        cleanup: Box<FirewallError>,
    },
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { "IPv6" } else { "IPv4" }
}

fn host(ip: Option<IpAddr>, port: u16) -> String {
    match ip {
        None => format!("*:{port}"),
        Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
    }
}

impl FirewallError {
    /// Whether the request was refused before anything was changed (bad input, a port
    /// already published, a network unknown, internal or set up differently).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FirewallError::InvalidPort { .. }
                | FirewallError::InvalidAddress { .. }
                | FirewallError::InvalidName { .. }
                | FirewallError::InvalidSubnet { .. }
                | FirewallError::FamilyNotInNetwork { .. }
                | FirewallError::PortConflict { .. }
                | FirewallError::UnknownNetwork { .. }
                | FirewallError::NetworkExists { .. }
                | FirewallError::InternalNetwork { .. }
        )
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// `docker run -p [host_ip:]host_port:container_port[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Only on this host address (`None`: every address of the host).
    pub host_ip: Option<IpAddr>,
    /// Port on the host (1-65535).
    pub host_port: u16,
    /// Port in the sandbox (1-65535).
    pub container_port: u16,
}

impl PortMapping {
    /// Validates the ports (0 is refused).
    pub fn validate(&self) -> Result<(), FirewallError> {
        for (field, value) in [("host_port", self.host_port), ("container_port", self.container_port)] {
            if value == 0 {
                return Err(FirewallError::InvalidPort { field, value, reason: "ports are 1-65535" });
            }
        }
        if let Some(ip) = self.host_ip {
            if ip.is_multicast() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
                return Err(FirewallError::InvalidAddress {
                    field: "host_ip",
                    address: ip,
                    reason: "not a unicast address",
                });
            }
            if ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) {
                return Err(FirewallError::InvalidAddress {
                    field: "host_ip",
                    address: ip,
                    reason: "Linux cannot forward from IPv6 loopback (there is no route_localnet for IPv6)",
                });
            }
        }
        Ok(())
    }
}

/// The rules one network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// Network name (chains are named after it).
    pub network: String,
    /// Bridge interface name in the host namespace.
    pub bridge: String,
    /// The network's subnets.
    pub subnets: Vec<IpNet>,
    /// Internal: no outbound NAT, no forwarding to or from outside.
    pub internal: bool,
}

impl NetworkRules {
    /// Validates the names (network: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most
    /// [`MAX_NETWORK_LEN`] bytes; bridge: a valid interface name) and the subnets (no host
    /// bits set).
    pub fn validate(&self) -> Result<(), FirewallError> {
        validate_network(&self.network)?;
        validate_ifname(&self.bridge)?;
        for &subnet in &self.subnets {
            if subnet.trunc() != subnet {
                return Err(FirewallError::InvalidSubnet {
                    network: self.network.clone(),
                    subnet,
                    reason: "has host bits set",
                });
            }
        }
        Ok(())
    }
}

/// One published port of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// The mapping as asked.
    pub mapping: PortMapping,
    /// The endpoint's address in the sandbox.
    pub container_ip: IpAddr,
}

impl PortRule {
    /// Validates the mapping, and that the container address is a unicast address of the
    /// host address's family (there is no NAT between IPv4 and IPv6).
    ///
    /// That the container address's family is one of the network's subnets is checked by
    /// [`FirewallBackend::add_ports`].
    pub fn validate(&self) -> Result<(), FirewallError> {
        self.mapping.validate()?;
        let c = self.container_ip;
        if c.is_unspecified() || c.is_multicast() || c == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
            return Err(FirewallError::InvalidAddress {
                field: "container_ip",
                address: c,
                reason: "not a unicast address",
            });
        }
        match self.mapping.host_ip {
            Some(h) if h.is_ipv6() != c.is_ipv6() => Err(FirewallError::InvalidAddress {
                field: "host_ip",
                address: h,
                reason: "not of the container address's family (no NAT between IPv4 and IPv6)",
            }),
            _ => Ok(()),
        }
    }
}

/// Where firewall rules go. nftables is the built-in backend; the trait lets a user plug in
/// another (or a no-op one for `internal`-only setups).
pub trait FirewallBackend: Send + Sync + std::fmt::Debug {
    /// Creates the network's chains: masquerade of its subnets leaving through other
    /// interfaces (unless internal), forwarding accepted (unless internal); enables
    /// `ip_forward` when needed.
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError>;
    /// Removes the network's chains (and the table when it is empty).
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError>;
    /// Publishes ports of one endpoint (`endpoint` is a unique id used to remove them).
    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError>;
    /// Removes the ports published for `endpoint`.
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError>;
    /// Removes every port published on `network` towards one of `addresses`, whoever
    /// published it: the model calls it for addresses IPAM reclaimed from a dead owner, whose
    /// rules a crashed process left behind (they would otherwise send that port's traffic to
    /// the address's next owner, and keep the host port taken). The default does nothing,
    /// for backends that keep no state across processes.
    fn remove_ports_to(&self, network: &str, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        let _ = (network, addresses);
        Ok(())
    }
}

/// The nftables backend (drives `nft -j`), acting in one network namespace.
///
/// ```no_run
/// use nook_netmodel::firewall::{FirewallBackend, Nftables, NetworkRules, PortMapping, PortRule, Protocol};
///
/// let host = nook_ns::NetNs::new()?; // the namespace playing "the host"
/// let fw = Nftables::new(Some(host.ns()))?;
/// fw.setup_network(&NetworkRules {
///     network: "web".into(),
///     bridge: "nkbr0".into(),
///     subnets: vec!["10.88.0.0/16".parse()?],
///     internal: false,
/// })?;
/// let http = PortMapping { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, container_port: 80 };
/// fw.add_ports("web", "ep1", &[PortRule { mapping: http, container_ip: "10.88.0.2".parse()? }])?;
/// fw.remove_ports("web", "ep1")?;
/// fw.teardown_network("web")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Nftables {
    netns: NsFd,
    table: String,
    program: PathBuf,
}

impl Nftables {
    /// A backend acting in `netns` (`None`: the caller's network namespace, that of the
    /// calling thread now — later calls act there even from other threads).
    ///
    /// The handle is duplicated: the namespace lives at least as long as the backend.
    pub fn new(netns: Option<&NsFd>) -> Result<Nftables, FirewallError> {
        let ns = match netns {
            Some(ns) => ns.try_clone(),
            None => NsFd::current(Namespace::Net),
        };
        let netns =
            ns.map_err(|source| FirewallError::Namespace { op: "new", target: "nftables backend".to_owned(), source })?;
        Ok(Nftables { netns, table: DEFAULT_TABLE.to_owned(), program: exec::default_program() })
    }

    /// Uses table `inet NAME` instead of `inet nook` (letters, digits, `_` and `-`; at most
    /// [`MAX_TABLE_LEN`] bytes; checked by each operation).
    pub fn table_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.table = name.into();
        self
    }

    /// Runs this program instead of the `nft` found on `PATH` (or in `/usr/sbin`, `/sbin`,
    /// `/usr/local/sbin`).
    pub fn nft_program(&mut self, program: impl Into<PathBuf>) -> &mut Self {
        self.program = program.into();
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `nft` program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn ctx<'a>(&'a self, op: &'static str, target: &'a str) -> Ctx<'a> {
        Ctx { program: &self.program, table: &self.table, op, target }
    }

    /// Runs `f` on a thread inside the backend's namespace.
    fn in_netns<T: Send>(
        &self,
        cx: &Ctx<'_>,
        f: impl FnOnce() -> Result<T, FirewallError> + Send,
    ) -> Result<T, FirewallError> {
        nook_ns::run_in(&[&self.netns], f)
            .unwrap_or_else(|source| Err(FirewallError::Namespace { op: cx.op, target: cx.target.to_owned(), source }))
    }

    /// Removes `network` (caller holds the lock, thread in the namespace).
    fn teardown_locked(&self, cx: &Ctx<'_>, network: &str) -> Result<(), FirewallError> {
        let state = cx.list()?;
        let Some(batch) = render::teardown_network(&self.table, &state, network) else { return Ok(()) };
        cx.apply(&batch)?;
        // The bridge usually goes next; if it stays, it should not keep route_localnet.
        let localnet = state.ports().any(|(n, _, t)| n == network && t.needs_route_localnet());
        match state.network(network) {
            Some(meta) if localnet => cx.ensure_sysctl_if_present(&exec::route_localnet(&meta.bridge), "0")?,
            _ => {}
        }
        Ok(())
    }
}

fn enable_forwarding(cx: &Ctx<'_>, meta: &NetMeta) -> Result<(), FirewallError> {
    if meta.ipv4 {
        cx.ensure_sysctl(Path::new(exec::IPV4_FORWARD), "1")?;
    }
    if meta.ipv6 {
        cx.ensure_sysctl(Path::new(exec::IPV6_FORWARD), "1")?;
    }
    Ok(())
}

impl FirewallBackend for Nftables {
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        rules.validate()?;
        let meta = NetMeta::of(rules);
        let cx = self.ctx("setup_network", &rules.network);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            let state = cx.list()?;
            let created = match state.network(&rules.network) {
                // Set up before with the same parameters: nothing to add.
                Some(existing) if existing == meta => false,
                Some(_) => return Err(FirewallError::NetworkExists { network: rules.network.clone() }),
                None => {
                    cx.apply(&render::setup_network(&self.table, &state, rules, &meta))?;
                    true
                }
            };
            if rules.internal {
                return Ok(());
            }
            match enable_forwarding(&cx, &meta) {
                Ok(()) => Ok(()),
                Err(cause) if created => match self.teardown_locked(&cx, &rules.network) {
                    Ok(()) => Err(cause),
                    Err(cleanup) => Err(FirewallError::Cleanup { cause: Box::new(cause), cleanup: Box::new(cleanup) }),
                },
                Err(cause) => Err(cause),
            }
        })
    }

    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_network(network)?;
        let cx = self.ctx("teardown_network", network);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            self.teardown_locked(&cx, network)
        })
    }

    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_network(network)?;
        validate_endpoint(endpoint)?;
        let mut tags: Vec<PortTag> = Vec::with_capacity(ports.len());
        for p in ports {
            p.validate()?;
            let tag = PortTag::of(endpoint, p);
            if tags.iter().any(|t| t.overlaps(&tag)) {
                return Err(conflict(&tag, endpoint));
            }
            tags.push(tag);
        }
        if ports.is_empty() {
            return Ok(());
        }
        let target = format!("{network}/{endpoint}");
        let cx = self.ctx("add_ports", &target);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            let state = cx.list()?;
            let meta =
                state.network(network).ok_or_else(|| FirewallError::UnknownNetwork { network: network.into() })?;
            if meta.internal {
                return Err(FirewallError::InternalNetwork { network: network.into() });
            }
            if let Some(p) = ports.iter().find(|p| !meta.has_family_of(p.container_ip)) {
                return Err(FirewallError::FamilyNotInNetwork {
                    network: network.into(),
                    container_ip: p.container_ip,
                });
            }
            for (_, _, existing) in state.ports() {
                if let Some(tag) = tags.iter().find(|t| t.overlaps(&existing)) {
                    return Err(conflict(tag, &existing.endpoint));
                }
            }
            let localnet = exec::route_localnet(&meta.bridge);
            let changed = tags.iter().any(PortTag::needs_route_localnet) && cx.ensure_sysctl(&localnet, "1")?;
            match cx.apply(&render::add_ports(&self.table, network, endpoint, ports)) {
                Ok(()) => Ok(()),
                Err(cause) if changed => match cx.ensure_sysctl(&localnet, "0") {
                    Ok(_) => Err(cause),
                    Err(cleanup) => Err(FirewallError::Cleanup { cause: Box::new(cause), cleanup: Box::new(cleanup) }),
                },
                Err(cause) => Err(cause),
            }
        })
    }

    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_network(network)?;
        validate_endpoint(endpoint)?;
        let target = format!("{network}/{endpoint}");
        let cx = self.ctx("remove_ports", &target);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            let state = cx.list()?;
            let removed: Vec<(u32, PortTag)> = state
                .ports()
                .filter(|(n, _, t)| *n == network && t.endpoint == endpoint)
                .map(|(_, h, t)| (h, t))
                .collect();
            self.delete_ports(&cx, &state, network, &removed)
        })
    }

    fn remove_ports_to(&self, network: &str, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_network(network)?;
        if addresses.is_empty() {
            return Ok(());
        }
        let cx = self.ctx("remove_ports_to", network);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            let state = cx.list()?;
            let removed = state.ports_to(network, addresses);
            self.delete_ports(&cx, &state, network, &removed)
        })
    }
}

impl Nftables {
    /// Deletes port rules of `network` (`removed`, by handle) and turns `route_localnet` off
    /// when no remaining port of the network needs it.
    fn delete_ports(
        &self,
        cx: &exec::Ctx<'_>,
        state: &state::TableState,
        network: &str,
        removed: &[(u32, PortTag)],
    ) -> Result<(), FirewallError> {
        let Some(meta) = state.network(network) else { return Ok(()) };
        if removed.is_empty() {
            return Ok(());
        }
        let chain = NetChain::Pre.name(network);
        let handles: Vec<(&str, u32)> = removed.iter().map(|(h, _)| (chain.as_str(), *h)).collect();
        cx.apply(&render::delete_rules(&self.table, &handles))?;
        let gone: Vec<u32> = removed.iter().map(|(h, _)| *h).collect();
        let kept_needs = state
            .ports()
            .filter(|(n, h, _)| *n == network && !gone.contains(h))
            .any(|(_, _, t)| t.needs_route_localnet());
        if removed.iter().any(|(_, t)| t.needs_route_localnet()) && !kept_needs {
            cx.ensure_sysctl_if_present(&exec::route_localnet(&meta.bridge), "0")?;
        }
        Ok(())
    }
}

fn conflict(tag: &PortTag, holder: &str) -> FirewallError {
    FirewallError::PortConflict {
        protocol: tag.protocol,
        host_ip: tag.host_ip,
        host_port: tag.host_port,
        holder: holder.to_owned(),
    }
}

fn bad_name(what: &'static str, value: &str, reason: &'static str) -> FirewallError {
    FirewallError::InvalidName { what, value: value.to_owned(), reason }
}

fn validate_network(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("network", name, reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NETWORK_LEN {
        return bad("longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return bad("only letters, digits, `_`, `.` and `-` are allowed");
    }
    Ok(())
}

fn validate_endpoint(id: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("endpoint", id, reason));
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ENDPOINT_LEN {
        return bad("longer than 64 bytes");
    }
    if !id.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
        return bad("only printable ASCII without spaces, `\"` and `\\` is allowed");
    }
    Ok(())
}

fn validate_table(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("table", name, reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TABLE_LEN {
        return bad("longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("must start with a letter");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return bad("only letters, digits, `_` and `-` are allowed");
    }
    Ok(())
}

/// The kernel's rules for interface names (`dev_valid_name`).
fn validate_ifname(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("bridge", name, reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 15 {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not interface names");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return bad("contains `/`, `:`, whitespace or a control character");
    }
    Ok(())
}

/// The network the unit tests of the firewall modules render and parse rules for: `web` on
/// bridge `nkbr0`, dual stack.
#[cfg(test)]
pub(crate) fn test_rules(internal: bool) -> NetworkRules {
    NetworkRules {
        network: "web".into(),
        bridge: "nkbr0".into(),
        subnets: vec!["10.88.0.0/16".parse().unwrap(), "fd00:88::/64".parse().unwrap()],
        internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: Option<&str>, hp: u16, cp: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: hp,
            container_port: cp,
        }
    }

    fn rule(host_ip: Option<&str>, cip: &str) -> PortRule {
        PortRule { mapping: mapping(host_ip, 8080, 80), container_ip: cip.parse().unwrap() }
    }

    #[test]
    fn zero_ports_are_refused() {
        assert!(mapping(None, 1, 65535).validate().is_ok());
        let e = mapping(None, 0, 80).validate().unwrap_err();
        assert!(matches!(e, FirewallError::InvalidPort { field: "host_port", value: 0, .. }), "{e}");
        assert!(e.is_refusal());
        let e = mapping(None, 80, 0).validate().unwrap_err();
        assert!(matches!(e, FirewallError::InvalidPort { field: "container_port", .. }), "{e}");
    }

    #[test]
    fn port_rule_addresses() {
        assert!(rule(None, "10.0.0.2").validate().is_ok());
        assert!(rule(Some("0.0.0.0"), "10.0.0.2").validate().is_ok());
        assert!(rule(Some("127.0.0.1"), "10.0.0.2").validate().is_ok());
        assert!(rule(Some("fd00::1"), "fd00::2").validate().is_ok());
        for (host, cip, field) in [
            (Some("fd00::1"), "10.0.0.2", "host_ip"),
            (Some("10.0.0.1"), "fd00::2", "host_ip"),
            (Some("::1"), "fd00::2", "host_ip"),
            (Some("224.0.0.1"), "10.0.0.2", "host_ip"),
            (None, "0.0.0.0", "container_ip"),
            (None, "ff02::1", "container_ip"),
            (None, "255.255.255.255", "container_ip"),
        ] {
            let e = rule(host, cip).validate().unwrap_err();
            match e {
                FirewallError::InvalidAddress { field: f, .. } => assert_eq!(f, field, "{host:?} {cip}"),
                other => panic!("{host:?} {cip}: {other}"),
            }
        }
    }

    #[test]
    fn names() {
        assert!(validate_network("web").is_ok());
        assert!(validate_network("my_net.1-x").is_ok());
        assert!(validate_network(&"n".repeat(64)).is_ok());
        for bad in ["", "-x", ".x", "a b", "a/b", "é", &"n".repeat(65)] {
            assert!(
                matches!(validate_network(bad), Err(FirewallError::InvalidName { what: "network", .. })),
                "{bad:?}"
            );
        }
        assert!(validate_endpoint("3f2a:eth0/1").is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", &"e".repeat(65)] {
            assert!(validate_endpoint(bad).is_err(), "{bad:?}");
        }
        assert!(validate_table("nook").is_ok() && validate_table("nk-test_1").is_ok());
        for bad in ["", "1a", "a.b", "a b"] {
            assert!(validate_table(bad).is_err(), "{bad:?}");
        }
        assert!(validate_ifname("br-0.1").is_ok());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_rules_validate_subnets() {
        let mut r = NetworkRules {
            network: "web".into(),
            bridge: "nkbr0".into(),
            subnets: vec!["10.88.0.0/16".parse().unwrap()],
            internal: false,
        };
        assert!(r.validate().is_ok());
        r.subnets.push("10.89.0.1/16".parse().unwrap());
        assert!(matches!(r.validate(), Err(FirewallError::InvalidSubnet { .. })));
    }

    #[test]
    fn errors_read_well() {
        let e = conflict(&PortTag::of("ep", &rule(Some("fd00::1"), "fd00::2")), "other");
        assert_eq!(e.to_string(), "firewall: tcp port [fd00::1]:8080 is already published (by endpoint \"other\")");
        let e = FirewallError::FamilyNotInNetwork { network: "web".into(), container_ip: "fd00::2".parse().unwrap() };
        assert_eq!(e.to_string(), "firewall: network \"web\" has no IPv6 subnet for container address fd00::2");
    }
}
