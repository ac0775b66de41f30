//! The built-in backends, acting in one network namespace: [`NftNetlink`] speaks nf_tables
//! netlink itself (the default of the network model), [`Nftables`] drives `nft -j`. Both
//! compute the same batches (`render`) from the same table state (`state`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nook_ns::{Namespace, NsFd};

#[cfg(doc)]
use super::MAX_TABLE_LEN;
use super::egress;
use super::exec::{self, Ctx};
use super::foreign::{Place, Remedy, Ruleset};
use super::names::{validate_endpoint, validate_network, validate_table};
use super::render;
use super::state::{self, NetChain, NetMeta, PortTag};
use super::{DEFAULT_TABLE, EgressEndpoint, FirewallBackend, FirewallConflict, FirewallError, NetworkRules, PortRule};
use crate::egress::EgressPolicy;
use crate::validation::ValidationError;

/// The nftables backend (drives `nft -j`), acting in one network namespace.
///
/// ```no_run
/// use nook_netmodel::firewall::{FirewallBackend, Nftables, NetworkRules, PortMapping, PortRule};
///
/// let host = nook_ns::NetNs::new()?; // the namespace playing "the host"
/// let fw = Nftables::new(Some(host.ns()))?;
/// fw.setup_network(&NetworkRules::new("web".parse()?, "nkbr0", vec!["10.88.0.0/16".parse()?]))?;
/// let http = PortMapping::tcp(8080, 80);
/// fw.add_ports("web", "ep1", &[PortRule::new(http, "10.88.0.2".parse()?)])?;
/// fw.remove_ports("web", "ep1")?;
/// fw.teardown_network("web")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Nftables {
    netns: NsFd,
    table: String,
    program: PathBuf,
    netlink: bool,
    /// The netlink backend's socket, opened in `netns` by the first operation and kept: a
    /// nf_tables socket that closes after a deletion waits for the kernel to free what was
    /// deleted (an RCU grace period, ~10 ms), so closing one per operation put that wait on
    /// every removal. Dropped (reopened by the next operation) after any error.
    conn: std::sync::Mutex<Option<super::nfnl::Conn>>,
}

impl Drop for Nftables {
    fn drop(&mut self) {
        let conn = self.conn.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(conn) = conn {
            super::close_later(conn);
        }
    }
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
        if netns.kind() != Namespace::Net {
            return Err(ValidationError::NotNetNamespace { field: "netns", kind: netns.kind() }.into());
        }
        Ok(Nftables {
            netns,
            table: DEFAULT_TABLE.to_owned(),
            program: exec::default_program(),
            netlink: false,
            conn: std::sync::Mutex::new(None),
        })
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
        Ctx { program: &self.program, table: &self.table, netlink: self.netlink, op, target, conn: &self.conn }
    }

    /// Runs `f` on a short-lived thread inside the backend's namespace
    /// ([`nook_ns::on_thread_in`]).
    fn in_netns<T: Send>(
        &self,
        cx: &Ctx<'_>,
        f: impl FnOnce() -> Result<T, FirewallError> + Send,
    ) -> Result<T, FirewallError> {
        nook_ns::on_thread_in(&[&self.netns], f)
            .unwrap_or_else(|source| Err(FirewallError::Namespace { op: cx.op, target: cx.target.to_owned(), source }))
    }

    /// The comment of `network`'s rules in other tables (`TABLE:NETWORK`).
    fn tag(&self, network: &str) -> String {
        format!("{}:{network}", self.table)
    }

    /// Removes `network` (caller holds the lock, thread in the namespace): its chains and
    /// jumps, and its rules in other tables, in one transaction.
    fn teardown_locked(&self, cx: &Ctx<'_>, network: &str) -> Result<(), FirewallError> {
        let (state, ruleset) = cx.list_all()?;
        let tag = self.tag(network);
        let foreign = ruleset
            .tagged(&self.table, &tag)
            .map(|r| render::delete_foreign(&r.family, &r.table, &r.chain, r.handle))
            .collect();
        let Some(batch) = render::extend(render::teardown_network(&self.table, &state, network), foreign) else {
            return Ok(());
        };
        cx.apply(&batch)?;
        // The bridge usually goes next; if it stays, it should not keep route_localnet.
        let localnet = state.ports().any(|(n, _, t)| n == network && t.needs_route_localnet());
        match state.network(network) {
            Some(meta) if localnet => cx.ensure_sysctl_if_present(&exec::route_localnet(&meta.bridge), "0")?,
            _ => {}
        }
        Ok(())
    }

    /// The chains of other tables where `meta`'s network needs rules (those of its families).
    fn places(&self, ruleset: &Ruleset, meta: &NetMeta) -> BTreeSet<Place> {
        ruleset
            .blockers(&self.table)
            .iter()
            .filter_map(|b| match ruleset.remedy(b) {
                Remedy::Rules(p) => Some(p),
                Remedy::Report(_) => None,
            })
            .filter(|p| (p.family == "ip" && meta.ipv4) || (p.family == "ip6" && meta.ipv6))
            .collect()
    }
}

/// The nftables backend over netlink, acting in one network namespace: the same table,
/// chains, rules and comments as [`Nftables`], written and read with nf_tables netlink
/// messages from the operation's thread — no `nft` process on the way (but one: reading the
/// whole ruleset when another table has a filter chain on the forward hook, for the foreign
/// rules of the module docs; `nft` must be installed then).
///
/// Rules written by either backend are the same bytecode: one can tear down what the other
/// set up (a network set up by an older nook, or a process using [`Nftables`]).
///
/// ```no_run
/// use nook_netmodel::firewall::{FirewallBackend, NftNetlink, NetworkRules, PortMapping, PortRule};
///
/// let host = nook_ns::NetNs::new()?; // the namespace playing "the host"
/// let fw = NftNetlink::new(Some(host.ns()))?;
/// fw.setup_network(&NetworkRules::new("web".parse()?, "nkbr0", vec!["10.88.0.0/16".parse()?]))?;
/// fw.add_ports("web", "ep1", &[PortRule::new(PortMapping::tcp(8080, 80), "10.88.0.2".parse()?)])?;
/// fw.remove_ports("web", "ep1")?;
/// fw.teardown_network("web")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NftNetlink(Nftables);

impl NftNetlink {
    /// A backend acting in `netns` (`None`: the calling thread's network namespace now); the
    /// handle is duplicated.
    pub fn new(netns: Option<&NsFd>) -> Result<NftNetlink, FirewallError> {
        let mut inner = Nftables::new(netns)?;
        inner.netlink = true;
        Ok(NftNetlink(inner))
    }

    /// Uses table `inet NAME` instead of `inet nook` (see [`Nftables::table_name`]).
    pub fn table_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.0.table_name(name);
        self
    }

    /// The `nft` program run to read the whole ruleset when other tables have forward
    /// chains (see [`Nftables::nft_program`]).
    pub fn nft_program(&mut self, program: impl Into<PathBuf>) -> &mut Self {
        self.0.nft_program(program);
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        self.0.table()
    }
}

impl FirewallBackend for NftNetlink {
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        self.0.setup_network(rules)
    }

    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        self.0.teardown_network(network)
    }

    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError> {
        self.0.add_ports(network, endpoint, ports)
    }

    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        self.0.remove_ports(network, endpoint)
    }

    fn remove_ports_to(&self, network: &str, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        self.0.remove_ports_to(network, addresses)
    }

    fn conflicts(&self, network: &str) -> Result<Vec<FirewallConflict>, FirewallError> {
        self.0.conflicts(network)
    }

    fn set_egress(&self, endpoint: &EgressEndpoint, policy: &EgressPolicy) -> Result<(), FirewallError> {
        self.0.set_egress(endpoint, policy)
    }

    fn remove_egress(&self, endpoint: &str) -> Result<(), FirewallError> {
        self.0.remove_egress(endpoint)
    }

    fn remove_egress_to(&self, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        self.0.remove_egress_to(addresses)
    }

    fn allow_egress(&self, endpoint: &str, addresses: &[(IpAddr, Duration)]) -> Result<(), FirewallError> {
        self.0.allow_egress(endpoint, addresses)
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
            let (state, ruleset) = cx.list_all()?;
            let (own, created) = match state.network(&rules.network) {
                // Set up before with the same parameters: nothing to add to nook's table.
                Some(existing) if existing == meta => (None, false),
                Some(_) => return Err(FirewallError::NetworkExists { network: rules.network.to_string() }),
                None => (Some(render::setup_network(&self.table, &state, rules, &meta)), true),
            };
            // Rules in other tables that drop what they do not accept (Docker's and
            // iptables-nft's filter tables), where missing; in the same transaction.
            let tag = self.tag(&rules.network);
            let foreign = self.places(&ruleset, &meta).into_iter().filter(|p| !ruleset.placed(&self.table, p, &tag));
            let foreign = foreign.flat_map(|p| {
                let closed = ruleset.docker_bridges(&p);
                render::add_foreign(&p, ruleset.insert_before(&p), &rules.bridge, &closed, &tag)
            });
            if let Some(batch) = render::extend(own, foreign.collect()) {
                cx.apply(&batch)?;
            }
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

    fn conflicts(&self, network: &str) -> Result<Vec<FirewallConflict>, FirewallError> {
        validate_table(&self.table)?;
        validate_network(network)?;
        let cx = self.ctx("conflicts", network);
        self.in_netns(&cx, || {
            let (state, ruleset) = cx.list_all()?;
            let Some(meta) = state.network(network) else { return Ok(Vec::new()) };
            let mut families = BTreeSet::new();
            if meta.ipv4 {
                families.insert("ip");
            }
            if meta.ipv6 {
                families.insert("ip6");
            }
            Ok(ruleset.conflicts(&self.table, network, &meta.bridge, &self.tag(network), &families))
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

    fn set_egress(&self, endpoint: &EgressEndpoint, policy: &EgressPolicy) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_endpoint(&endpoint.id)?;
        policy.validate()?;
        crate::ifname::IfName::for_field("host_ifname", endpoint.host_ifname.as_str())?;
        let cx = self.ctx("set_egress", &endpoint.id);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            egress::set(&cx, endpoint, policy)
        })
    }

    fn remove_egress(&self, endpoint: &str) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_endpoint(endpoint)?;
        let cx = self.ctx("remove_egress", endpoint);
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            egress::remove(&cx, endpoint)
        })
    }

    fn remove_egress_to(&self, addresses: &[IpAddr]) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        if addresses.is_empty() {
            return Ok(());
        }
        let cx = self.ctx("remove_egress_to", "");
        self.in_netns(&cx, || {
            let _lock = cx.lock()?;
            egress::remove_to(&cx, addresses)
        })
    }

    fn allow_egress(&self, endpoint: &str, addresses: &[(IpAddr, Duration)]) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        validate_endpoint(endpoint)?;
        // No lock: adding set elements reads nothing back.
        let cx = self.ctx("allow_egress", endpoint);
        self.in_netns(&cx, || egress::allow(&cx, endpoint, addresses))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{PortMapping, Protocol};

    fn rule(host_ip: Option<&str>, cip: &str) -> PortRule {
        let mapping = PortMapping {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 8080,
            container_port: 80,
        };
        PortRule { mapping, container_ip: cip.parse().unwrap() }
    }

    #[test]
    fn errors_read_well() {
        let e = conflict(&PortTag::of("ep", &rule(Some("fd00::1"), "fd00::2")), "other");
        assert_eq!(e.to_string(), "firewall: tcp port [fd00::1]:8080 is already published (by endpoint \"other\")");
        let e = FirewallError::FamilyNotInNetwork { network: "web".into(), container_ip: "fd00::2".parse().unwrap() };
        assert_eq!(e.to_string(), "firewall: network \"web\" has no IPv6 subnet for container address fd00::2");
    }
}
