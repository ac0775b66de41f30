//! NAT and published ports through nftables: one table for nook, chains per network.
//!
//! [`FirewallBackend`] is what the network model calls. Two built-in backends write the same
//! rules and read each other's:
//!
//! - [`NftNetlink`], the default of the network model ([`crate::HostBuilder`]): nf_tables
//!   netlink messages on a `NETLINK_NETFILTER` socket, no process. It reads the table back
//!   with two dumps (every chain of the namespace; the rules of nook's table: handles,
//!   comments, jump targets, DNAT addresses) and applies each operation as one netlink batch.
//! - [`Nftables`]: drives the `nft` program in JSON mode (`nft -j`, as netavark does).
//!
//! Both build the same batches from the `nftables` crate's schema types (`render`); the
//! netlink backend encodes them expression by expression as `nft` 1.0 compiles them
//! (`nfnl::encode`: the `meta nfproto` / `meta l4proto` dependencies, prefixes, flags
//! matches, comments in the rule's userdata), so `nft list ruleset` shows the same rules and
//! a network set up by one backend can be torn down by the other. Every operation is one
//! transaction: it applies completely or not at all.
//!
//! The one place the netlink backend still runs `nft`: when another table has a filter
//! chain on the forward hook (Docker's, iptables-nft's, firewalld's, any default-drop
//! firewall), the operations that look at other tables (`setup_network`,
//! `teardown_network`, `conflicts`) read the whole ruleset with `nft -j list ruleset`, as
//! the rules of foreign chains must be parsed (below); they still write over netlink. The
//! chain dump tells, so a host without such tables never runs `nft`.
//!
//! # What it sets up
//!
//! One table, `inet nook` (see [`NftNetlink::table_name`]), with six base chains created with
//! the first network and deleted with the last one: `nat-prerouting` (dstnat),
//! `nat-output` (-100), `nat-postrouting` (srcnat), `filter-forward` (filter),
//! `raw-prerouting` (raw) and `mark-forward` (-20). Each network gets regular chains
//! `nk-NETWORK-{fwd,post,pre,raw,mark}` (an internal one: `fwd` and `mark`), reached by jumps
//! from the base chains:
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
//! - **Mark**: `mark-forward` (filter, priority -20: after mangle, before every filter
//!   chain) jumps to `nk-NETWORK-mark`, which ORs [`FORWARD_MARK`] into the
//!   meta mark of the packets nook accepts: leaving the bridge, replies into it, published
//!   ports (an internal network: only traffic between its own ports, which `br_netfilter`
//!   hands to the forward hook). Other tables can accept nook's traffic by that mark alone.
//!
//! # Egress policies
//!
//! [`FirewallBackend::set_egress`] binds a sandbox's [`EgressPolicy`] to one endpoint, in two
//! more tables of nook's, `bridge TABLE-egress` and `inet TABLE-egress`, created with the
//! first policy and deleted with the last (layout in `egress.rs`, model in [`crate::egress`]);
//! [`FirewallBackend::allow_egress`] adds the embedded DNS's answers to the endpoint's sets
//! with kernel timeouts. They are nook's own tables: not reported as conflicts, and their
//! forward chain does not make the netlink backend read the whole ruleset.
//!
//! # Other tables on the forward hook
//!
//! An accept in nook's table ends only nook's table: a drop in another table on the same hook
//! (a Docker host's `FORWARD` policy of `DROP`, any default-drop firewall) still drops nook's
//! packets. Each operation that sets a network up reads the whole ruleset and, for every
//! other filter chain on the forward hook that drops what it does not accept:
//!
//! - Docker (iptables-nft's `ip filter` / `ip6 filter` with `DOCKER-USER` jumped to from
//!   `FORWARD`): nook adds two rules per network to `DOCKER-USER`, the chain Docker keeps for
//!   its users; iptables-nft without Docker: to `FORWARD`. They are
//!   `iifname BRIDGE meta mark & M == M accept` — with `oifname != X` for each of Docker's
//!   bridges `X` (the interfaces `FORWARD` hands to Docker's `DOCKER` chain), so Docker's
//!   containers stay closed to sandboxes but for their published ports — and
//!   `oifname BRIDGE meta mark & M == M accept`
//!   (what `iptables -i BRIDGE -m mark --mark M/M -j ACCEPT` writes, so iptables and Docker
//!   keep working on the table), commented `TABLE:NETWORK` (`nook:web`), placed before the
//!   chain's first unconditional verdict (Docker's trailing `return`) or at its end — after
//!   the admin's own rules, which still apply. Teardown deletes exactly the rules with that
//!   comment, by handle, in the same transaction as nook's own rules; the foreign ruleset is
//!   then what it was.
//! - firewalld (`inet firewalld`, which rewrites its table on reload) and any other table:
//!   nook writes nothing there. [`FirewallBackend::conflicts`] (and
//!   [`crate::Network::diagnostics`]) report each one as a [`FirewallConflict`] naming the
//!   table, chain and hook, and the rule to add: `meta mark & M == M accept` (one rule for
//!   every nook network; by-interface rules for a chain that runs before `mark-forward`), or
//!   for firewalld, the bridge in the `trusted` zone. Setting the network up does not fail:
//!   the network works on the host and between its sandboxes, and the admin can add the rule
//!   at any time. Only `ip`, `ip6` and `inet` tables are read (the bridge family's forward
//!   hook sees frames before any IP hook, where nook's mark is not set yet).
//!
//! Nothing is loosened for traffic that is not nook's: the foreign rules match only packets
//! from or to nook's bridges that nook's own table marked. A nook sandbox opening a
//! connection to a Docker container's address is such a packet, and is let through as a
//! process of the host would be (masqueraded to the host's address on Docker's bridge);
//! Docker's own isolation between its networks is untouched.
//!
//! Cost: the ruleset is read in the same single `nft -j list` run as before, and the foreign
//! rules go in the same transaction. Measured on the development machine with the `nft -j`
//! backend (2 vCPUs, noisy; medians of 30, another network kept so the table stays): setting
//! a network up and tearing it down took 14 / 25 ms with Docker's filter and nat tables (IPv4
//! and IPv6) in the namespace, against 7–10 / 18–22 ms in an empty one. The netlink backend
//! pays the `nft -j list ruleset` run only on such hosts (see `BENCHMARKS.md`, `netfw`).
//!
//! Not handled: iptables-legacy (its rules are invisible to `nft`); a foreign table created
//! after the network is set up (reported by [`FirewallBackend::conflicts`]; setting the
//! network up again adds nook's rules to Docker's or iptables-nft's chain); a host port
//! published both by nook and by another table's DNAT (the first NAT chain to match wins).
//! Docker's `nat` table needs nothing: its masquerade and DNAT match only its own subnets and
//! ports, and a packet is NAT-ed once, by the first NAT chain that matches it.
//!
//! # State lives in the kernel
//!
//! The backend keeps no state: chains are named after the network, and rule comments carry
//! what later operations need (the network's bridge and families; the endpoint and host side
//! of each published port). A network set up by one process can be torn down by another.
//! Each operation reads the table (netlink dumps, or `nft -j list table`), computes a batch,
//! applies it, all
//! under a lock private to the table and the namespace (an abstract unix socket: no file,
//! released when its holder dies), so concurrent nook processes do not interleave.
//!
//! # Namespaces
//!
//! Everything happens in the network namespace given to [`NftNetlink::new`] /
//! [`Nftables::new`]: each operation runs on a short-lived thread that entered it (the
//! netlink socket it opens is bound to that namespace, `nft` inherits the thread's
//! namespace, and network sysctls resolve to the namespace of the thread that opens them).
//! The caller's threads never change namespace.
//!
//! # Teardown order
//!
//! Remove a sandbox's ports ([`FirewallBackend::remove_ports`]) and its network's rules
//! ([`FirewallBackend::teardown_network`]) first, then delete the links, then the namespace.
//! Both are idempotent: removing what is not there succeeds.

mod conflict;
mod egress;
mod error;
mod exec;
mod foreign;
mod names;
mod nfnl;
mod nftables;
mod render;
mod rules;
mod state;

use std::net::IpAddr;
use std::time::Duration;

use crate::egress::EgressPolicy;

pub use conflict::{Blocker, ConflictOwner, FirewallConflict};
pub use egress::EgressEndpoint;
pub use error::FirewallError;
pub use nftables::{NftNetlink, Nftables};
pub use rules::{NetworkRules, PortMapping, PortRule, Protocol};

/// The default table name (`inet nook`).
pub const DEFAULT_TABLE: &str = "nook";

/// Longest network name ([`crate::NetworkName::MAX`]): it is part of chain names and rule
/// comments.
pub const MAX_NETWORK_LEN: usize = crate::NetworkName::MAX;

/// Longest endpoint id: it is part of rule comments (128 bytes at most, in nftables).
pub const MAX_ENDPOINT_LEN: usize = 64;

/// Longest table name (the comment `TABLE:NETWORK` of nook's rules in other tables must fit
/// nftables' 128 bytes).
pub const MAX_TABLE_LEN: usize = 63;

/// The bit nook ORs into the meta mark of the forwarded packets it accepts (see the module
/// docs): other tables accept nook's traffic with `meta mark & 0x00100000 == 0x00100000 accept`.
pub const FORWARD_MARK: u32 = 0x0010_0000;

/// The bit nook ORs into the meta mark of every frame entering a bridge from the port of a
/// sandbox with an egress policy ([`crate::egress`]), after checking its source; the inet
/// chains of the policy match it. Marks do not cross network namespaces, so only the host
/// sets it.
pub const EGRESS_MARK: u32 = 0x0020_0000;

/// Where firewall rules go. nftables is the built-in backend ([`NftNetlink`], [`Nftables`]);
/// the trait lets a user plug in another (or a no-op one for `internal`-only setups).
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
    /// Binds an egress policy to an endpoint ([`crate::egress`]): everything it sends that
    /// `policy` does not allow is rejected (replaces the endpoint's policy if it has one).
    /// The default refuses ([`FirewallError::Unsupported`]): a backend that cannot enforce a
    /// policy must not pretend to.
    fn set_egress(&self, endpoint: &EgressEndpoint, policy: &EgressPolicy) -> Result<(), FirewallError> {
        let _ = (endpoint, policy);
        Err(FirewallError::Unsupported { op: "egress policies" })
    }
    /// Removes endpoint `endpoint`'s egress policy (nothing to do when it has none).
    fn remove_egress(&self, endpoint: &str) -> Result<(), FirewallError> {
        let _ = endpoint;
        Ok(())
    }
    /// Removes the egress policies bound to endpoints holding one of `addresses`, whoever
    /// bound them: the model calls it for addresses reclaimed from a dead owner, whose
    /// policies a crashed process left behind. The default does nothing, as
    /// [`FirewallBackend::remove_ports_to`]'s.
    fn remove_egress_to(&self, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        let _ = addresses;
        Ok(())
    }
    /// Lets endpoint `endpoint` reach `addresses`, each for its time (the embedded DNS's
    /// answers for allowed names). The default refuses.
    fn allow_egress(&self, endpoint: &str, addresses: &[(IpAddr, Duration)]) -> Result<(), FirewallError> {
        let _ = (endpoint, addresses);
        Err(FirewallError::Unsupported { op: "egress policies" })
    }
    /// What in other software's firewall still drops `network`'s forwarded traffic, read from
    /// the live ruleset (empty when nothing does, or the network is not set up). The default
    /// reports nothing.
    fn conflicts(&self, network: &str) -> Result<Vec<FirewallConflict>, FirewallError> {
        let _ = network;
        Ok(Vec::new())
    }
}

/// Whether `family table` is one of nook's own tables (`inet OWN`, or its egress tables).
pub(crate) fn is_own_table(family: &str, table: &str, own: &str) -> bool {
    (family == "inet" || family == "bridge") && (table == own || table == egress::table_name(own))
}

/// Applies an nftables JSON batch (`{"nftables": [...]}`, the subset the netlink encoder
/// understands: see `nfnl::encode`) in the calling thread's network namespace, over netlink
/// in one transaction — for tables of nook's own outside [`FirewallBackend`] (the embedded
/// DNS's redirect inside a sandbox). No `nft` process.
pub(crate) fn apply_here(batch: &serde_json::Value) -> std::io::Result<()> {
    let to_io = |e: nfnl::NlError| std::io::Error::new(e.source.kind(), format!("{}: {}", e.request, e.source));
    let encoded = nfnl::encode::batch(batch).map_err(to_io)?;
    let mut conn = nfnl::Conn::open().map_err(to_io)?;
    conn.apply(encoded).map_err(to_io)?;
    close_later(conn);
    Ok(())
}

/// Closes an nf_tables socket off the caller's path: the kernel makes the closing thread
/// wait for its pending destroy work (an RCU grace period, ~10 ms) whenever anything was
/// deleted just before — by anyone, in any namespace. (When no thread can be made, the
/// refused closure, and the socket with it, is dropped here.)
fn close_later(conn: nfnl::Conn) {
    let _ = std::thread::Builder::new().name("nk-nfnl-close".into()).spawn(move || drop(conn));
}

/// Panics unless the netlink encoder takes `batch` (for unit tests of batches built
/// elsewhere in the crate).
#[cfg(test)]
pub(crate) fn encodes(batch: &serde_json::Value) {
    if let Err(e) = nfnl::encode::batch(batch) {
        panic!("{}: {}", e.request, e.source);
    }
}

/// The network the unit tests of the firewall modules render and parse rules for: `web` on
/// bridge `nkbr0`, dual stack.
#[cfg(test)]
pub(crate) fn test_rules(internal: bool) -> NetworkRules {
    NetworkRules {
        network: "web".parse().unwrap(),
        bridge: "nkbr0".into(),
        subnets: vec!["10.88.0.0/16".parse().unwrap(), "fd00:88::/64".parse().unwrap()],
        internal,
    }
}
