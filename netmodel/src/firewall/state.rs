//! What nook keeps in its table, and how it reads it back.
//!
//! The backend holds no state of its own: everything it needs to tear a network down or to
//! publish a port later — possibly from another process — is in the kernel's ruleset, in a
//! form it can parse back:
//!
//! - per-network regular chains are named `nk-NETWORK-{fwd,post,pre,raw}`;
//! - the first rule of `nk-NETWORK-fwd` carries the network's metadata as its comment
//!   ([`NetMeta`]: bridge, address families, internal, fingerprint of the whole setup);
//! - each published port is one rule in `nk-NETWORK-pre` whose comment names the endpoint and
//!   the host side of the mapping ([`PortTag`]);
//! - base chains hold only jumps (found by their target) and a few fixed `nk-base` rules.
//!
//! Rule comments are limited to 128 bytes by nftables; names are bounded so every tag fits.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;

use super::{NetworkRules, PortRule, Protocol};

/// Comment of the metadata rule (first rule of `nk-NETWORK-fwd`).
pub(crate) const META_TAG: &str = "nk-meta";
/// Comment prefix of the jumps from base chains into a network's chains.
pub(crate) const NET_TAG: &str = "nk-net";
/// Comment prefix of a published port's rule.
pub(crate) const PORT_TAG: &str = "nk-port";
/// Comment of the fixed rules of the base chains.
pub(crate) const BASE_TAG: &str = "nk-base";

/// The regular chains of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetChain {
    /// Filter, jumped to from the forward hook: isolation, published ports accepted.
    Fwd,
    /// NAT, jumped to from postrouting: masquerade.
    Post,
    /// NAT, jumped to from prerouting and output for local destinations: published ports.
    Pre,
    /// Filter at raw priority, jumped to for packets entering the bridge: loopback guard.
    Raw,
    /// Filter before the filter priority, jumped to from the forward hook: marks the packets
    /// nook accepts, for other tables.
    Mark,
}

impl NetChain {
    /// Every per-network chain.
    pub(crate) const ALL: [NetChain; 5] = [NetChain::Fwd, NetChain::Post, NetChain::Pre, NetChain::Raw, NetChain::Mark];

    fn suffix(self) -> &'static str {
        match self {
            NetChain::Fwd => "fwd",
            NetChain::Post => "post",
            NetChain::Pre => "pre",
            NetChain::Raw => "raw",
            NetChain::Mark => "mark",
        }
    }

    /// The chain's name for `network`.
    pub(crate) fn name(self, network: &str) -> String {
        format!("nk-{network}-{}", self.suffix())
    }

    /// The network owning `chain`, if `chain` is this kind of per-network chain.
    pub(crate) fn network_of(self, chain: &str) -> Option<&str> {
        let rest = chain.strip_prefix("nk-")?.strip_suffix(self.suffix())?.strip_suffix('-')?;
        (!rest.is_empty()).then_some(rest)
    }
}

/// What the backend must know about a network after setup (stored in a rule comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetMeta {
    /// The bridge.
    pub bridge: String,
    /// Has an IPv4 subnet.
    pub ipv4: bool,
    /// Has an IPv6 subnet.
    pub ipv6: bool,
    /// Internal network.
    pub internal: bool,
    /// FNV-1a of bridge, internal and the sorted subnets: a setup with other parameters
    /// differs.
    pub fingerprint: u64,
}

impl NetMeta {
    /// The metadata of `rules` (assumed valid).
    pub(crate) fn of(rules: &NetworkRules) -> NetMeta {
        let mut subnets = rules.subnets.clone();
        subnets.sort();
        subnets.dedup();
        let canonical = format!(
            "{}|{}|{}",
            rules.bridge,
            rules.internal,
            subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        );
        NetMeta {
            bridge: rules.bridge.clone(),
            ipv4: rules.subnets.iter().any(|s| matches!(s, ipnet::IpNet::V4(_))),
            ipv6: rules.subnets.iter().any(|s| matches!(s, ipnet::IpNet::V6(_))),
            internal: rules.internal,
            fingerprint: fnv1a(canonical.as_bytes()),
        }
    }

    /// `nk-meta br=BRIDGE [v4] [v6] [internal] id=FINGERPRINT` (at most 60 bytes).
    pub(crate) fn comment(&self) -> String {
        let mut c = format!("{META_TAG} br={}", self.bridge);
        if self.ipv4 {
            c.push_str(" v4");
        }
        if self.ipv6 {
            c.push_str(" v6");
        }
        if self.internal {
            c.push_str(" internal");
        }
        c.push_str(&format!(" id={:016x}", self.fingerprint));
        c
    }

    /// Parses [`NetMeta::comment`]'s output.
    pub(crate) fn parse(comment: &str) -> Option<NetMeta> {
        let mut words = comment.split_whitespace();
        if words.next()? != META_TAG {
            return None;
        }
        let (mut bridge, mut fingerprint) = (None, None);
        let (mut ipv4, mut ipv6, mut internal) = (false, false, false);
        for w in words {
            match w {
                "v4" => ipv4 = true,
                "v6" => ipv6 = true,
                "internal" => internal = true,
                _ => {
                    if let Some(b) = w.strip_prefix("br=") {
                        bridge = Some(b.to_owned());
                    } else if let Some(id) = w.strip_prefix("id=") {
                        fingerprint = Some(u64::from_str_radix(id, 16).ok()?);
                    } else {
                        return None;
                    }
                }
            }
        }
        Some(NetMeta { bridge: bridge?, ipv4, ipv6, internal, fingerprint: fingerprint? })
    }

    /// Whether the network has a subnet of `ip`'s family.
    pub(crate) fn has_family_of(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        }
    }
}

/// The host side of one published port, as stored in its rule's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortTag {
    /// The endpoint that published it.
    pub endpoint: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Family of the mapping (that of the container address).
    pub ipv6: bool,
    /// The host address it is limited to; `None`: every local address of the family
    /// (`host_ip` absent or unspecified).
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
}

impl PortTag {
    /// The tag of `rule` published by `endpoint` (rule assumed valid).
    pub(crate) fn of(endpoint: &str, rule: &PortRule) -> PortTag {
        PortTag {
            endpoint: endpoint.to_owned(),
            protocol: rule.mapping.protocol,
            ipv6: rule.container_ip.is_ipv6(),
            host_ip: rule.mapping.host_ip.filter(|ip| !ip.is_unspecified()),
            host_port: rule.mapping.host_port,
        }
    }

    /// `nk-port ENDPOINT PROTO 4|6 HOST_IP|* HOST_PORT` (at most 126 bytes).
    pub(crate) fn comment(&self) -> String {
        let host = self.host_ip.map_or_else(|| "*".to_owned(), |ip| ip.to_string());
        let family = if self.ipv6 { 6 } else { 4 };
        format!("{PORT_TAG} {} {} {family} {host} {}", self.endpoint, self.protocol, self.host_port)
    }

    /// Parses [`PortTag::comment`]'s output.
    pub(crate) fn parse(comment: &str) -> Option<PortTag> {
        let w: Vec<&str> = comment.split_whitespace().collect();
        let [tag, endpoint, protocol, family, host, port] = w.as_slice() else { return None };
        if *tag != PORT_TAG {
            return None;
        }
        let protocol = match *protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        let ipv6 = match *family {
            "4" => false,
            "6" => true,
            _ => return None,
        };
        let host_ip = match *host {
            "*" => None,
            h => Some(h.parse().ok()?),
        };
        Some(PortTag { endpoint: (*endpoint).to_owned(), protocol, ipv6, host_ip, host_port: port.parse().ok()? })
    }

    /// Whether both would catch the same packets (so the second would never be reached).
    pub(crate) fn overlaps(&self, other: &PortTag) -> bool {
        self.protocol == other.protocol
            && self.ipv6 == other.ipv6
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Whether the mapping is reachable on an IPv4 loopback address, which needs
    /// `route_localnet` on the bridge.
    pub(crate) fn needs_route_localnet(&self) -> bool {
        !self.ipv6 && self.host_ip.is_none_or(|ip| ip.is_loopback())
    }
}

/// A rule as listed by `nft -j list table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedRule {
    /// Its chain.
    pub chain: String,
    /// Its handle (unique in the table).
    pub handle: u32,
    /// Its comment.
    pub comment: Option<String>,
    /// The chain it jumps (or goes) to, if it does.
    pub jump: Option<String>,
    /// The address it DNATs to, if it does.
    pub dnat: Option<IpAddr>,
}

/// The parts of the table the backend reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableState {
    /// Whether the table exists.
    pub exists: bool,
    /// Names of its chains.
    pub chains: BTreeSet<String>,
    /// Its rules.
    pub rules: Vec<ListedRule>,
}

#[derive(Deserialize)]
struct Document {
    nftables: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawChain {
    name: String,
}

#[derive(Deserialize)]
struct RawRule {
    chain: String,
    handle: u32,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    expr: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawTable {
    family: String,
    name: String,
}

impl TableState {
    /// Parses the output of `nft -j list table FAMILY NAME` (only chains and rules are read;
    /// anything else in the table is ignored).
    pub(crate) fn parse(json: &str) -> Result<TableState, serde_json::Error> {
        let doc: Document = serde_json::from_str(json)?;
        TableState::read(doc.nftables.iter().filter(|o| o.get("table").is_none()), true)
    }

    /// Table `family name` in the output of `nft -j list ruleset` (absent: empty).
    pub(crate) fn from_ruleset(json: &str, family: &str, name: &str) -> Result<TableState, serde_json::Error> {
        let doc: Document = serde_json::from_str(json)?;
        let ours = |v: &serde_json::Value, key: &str| v["family"] == family && v[key] == name;
        let exists = doc.nftables.iter().any(|o| o.get("table").is_some_and(|t| ours(t, "name")));
        let objects =
            doc.nftables.iter().filter(|o| o.get("chain").or_else(|| o.get("rule")).is_some_and(|v| ours(v, "table")));
        TableState::read(objects, exists)
    }

    fn read<'a>(
        objects: impl Iterator<Item = &'a serde_json::Map<String, serde_json::Value>>,
        exists: bool,
    ) -> Result<TableState, serde_json::Error> {
        let mut state = TableState { exists, ..TableState::default() };
        for obj in objects {
            if let Some(c) = obj.get("chain") {
                state.chains.insert(RawChain::deserialize(c)?.name);
            } else if let Some(r) = obj.get("rule") {
                let r = RawRule::deserialize(r)?;
                let jump = r.expr.iter().find_map(|e| {
                    let target = e.get("jump").or_else(|| e.get("goto"))?.get("target")?;
                    target.as_str().map(str::to_owned)
                });
                let dnat = r.expr.iter().find_map(|e| e.get("dnat")?.get("addr")?.as_str()?.parse().ok());
                state.rules.push(ListedRule { chain: r.chain, handle: r.handle, comment: r.comment, jump, dnat });
            }
        }
        Ok(state)
    }

    /// The networks set up in the table (those with a forward chain).
    pub(crate) fn networks(&self) -> Vec<&str> {
        self.chains.iter().filter_map(|c| NetChain::Fwd.network_of(c)).collect()
    }

    /// The metadata of `network`, if it is set up.
    pub(crate) fn network(&self, network: &str) -> Option<NetMeta> {
        let fwd = NetChain::Fwd.name(network);
        if !self.chains.contains(&fwd) {
            return None;
        }
        self.rules.iter().filter(|r| r.chain == fwd).find_map(|r| NetMeta::parse(r.comment.as_deref()?))
    }

    /// Every published port in the table: the network, the rule's handle, the tag.
    pub(crate) fn ports(&self) -> impl Iterator<Item = (&str, u32, PortTag)> {
        self.rules.iter().filter_map(|r| {
            let network = NetChain::Pre.network_of(&r.chain)?;
            Some((network, r.handle, PortTag::parse(r.comment.as_deref()?)?))
        })
    }

    /// The published ports of `network` whose rules DNAT to one of `addresses`: the rule's
    /// handle and tag.
    pub(crate) fn ports_to(&self, network: &str, addresses: &[IpAddr]) -> Vec<(u32, PortTag)> {
        let chain = NetChain::Pre.name(network);
        self.rules
            .iter()
            .filter(|r| r.chain == chain && r.dnat.is_some_and(|a| addresses.contains(&a)))
            .filter_map(|r| Some((r.handle, PortTag::parse(r.comment.as_deref()?)?)))
            .collect()
    }

    /// The rules outside `network`'s chains that jump into them.
    pub(crate) fn jumps_into(&self, network: &str) -> Vec<&ListedRule> {
        let own: Vec<String> = NetChain::ALL.iter().map(|c| c.name(network)).collect();
        self.rules
            .iter()
            .filter(|r| !own.contains(&r.chain) && r.jump.as_ref().is_some_and(|t| own.contains(t)))
            .collect()
    }
}

/// Whether the output of `nft -j list tables` names table `family name`.
pub(crate) fn lists_table(json: &str, family: &str, name: &str) -> Result<bool, serde_json::Error> {
    let doc: Document = serde_json::from_str(json)?;
    for obj in doc.nftables {
        if let Some(t) = obj.get("table") {
            let t = RawTable::deserialize(t)?;
            if t.family == family && t.name == name {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// 64-bit FNV-1a: stable across builds and versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::PortMapping;
    use crate::firewall::test_rules as rules;

    fn port(host_ip: Option<&str>, host_port: u16, container_ip: &str) -> PortRule {
        PortRule {
            mapping: PortMapping {
                protocol: Protocol::Tcp,
                host_ip: host_ip.map(|h| h.parse().unwrap()),
                host_port,
                container_port: 80,
            },
            container_ip: container_ip.parse().unwrap(),
        }
    }

    #[test]
    fn chain_names_round_trip() {
        for c in NetChain::ALL {
            assert_eq!(c.network_of(&c.name("a-pre")), Some("a-pre"));
            assert_eq!(c.network_of(&c.name("x")), Some("x"));
        }
        assert_eq!(NetChain::Pre.network_of("nk-a-post"), None);
        assert_eq!(NetChain::Pre.network_of("nk--pre"), None);
        assert_eq!(NetChain::Pre.network_of("nat-prerouting"), None);
        assert_eq!(NetChain::Fwd.network_of("nk-a-fwd-fwd"), Some("a-fwd"));
    }

    #[test]
    fn meta_round_trips_and_fingerprints_the_setup() {
        let m = NetMeta::of(&rules(false));
        assert!(m.ipv4 && m.ipv6 && !m.internal);
        assert_eq!(NetMeta::parse(&m.comment()), Some(m.clone()));
        let i = NetMeta::of(&rules(true));
        assert!(i.comment().contains(" internal "));
        assert_eq!(NetMeta::parse(&i.comment()), Some(i.clone()));
        assert_ne!(m.fingerprint, i.fingerprint);
        // Subnet order does not matter; subnets do.
        let mut r = rules(false);
        r.subnets.reverse();
        assert_eq!(NetMeta::of(&r), m);
        r.subnets[0] = "fd00:99::/64".parse().unwrap();
        assert_ne!(NetMeta::of(&r).fingerprint, m.fingerprint);
        assert!(m.comment().len() < 128);
        assert_eq!(NetMeta::parse("nk-meta br=x id=zz"), None);
        assert_eq!(NetMeta::parse("nk-meta id=00"), None);
        assert_eq!(NetMeta::parse("nk-port a tcp 4 * 80"), None);
    }

    #[test]
    fn port_tags_round_trip() {
        let t = PortTag::of("ep1", &port(None, 8080, "10.88.0.2"));
        assert_eq!(t.comment(), "nk-port ep1 tcp 4 * 8080");
        assert_eq!(PortTag::parse(&t.comment()), Some(t));
        let t = PortTag::of("ep1", &port(Some("fd00::1"), 53, "fd00:88::2"));
        assert_eq!(t.comment(), "nk-port ep1 tcp 6 fd00::1 53");
        assert_eq!(PortTag::parse(&t.comment()), Some(t));
        // Unspecified means any.
        assert_eq!(PortTag::of("e", &port(Some("0.0.0.0"), 1, "10.88.0.2")).host_ip, None);
        let long = "e".repeat(super::super::MAX_ENDPOINT_LEN);
        let v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
        assert!(PortTag::of(&long, &port(Some(v6), 65535, "fd00:88::2")).comment().len() < 128);
        assert_eq!(PortTag::parse("nk-port e sctp 4 * 1"), None);
        assert_eq!(PortTag::parse("nk-port e tcp 5 * 1"), None);
        assert_eq!(PortTag::parse("nk-port e tcp 4 * 70000"), None);
        assert_eq!(PortTag::parse("nk-port e tcp 4 *"), None);
    }

    #[test]
    fn overlap_and_localnet() {
        let any = PortTag::of("a", &port(None, 80, "10.88.0.2"));
        let lo = PortTag::of("b", &port(Some("127.0.0.1"), 80, "10.88.0.3"));
        let other = PortTag::of("b", &port(Some("10.0.0.1"), 80, "10.88.0.3"));
        let v6 = PortTag::of("c", &port(None, 80, "fd00:88::2"));
        assert!(any.overlaps(&lo) && lo.overlaps(&any) && any.overlaps(&other));
        assert!(!lo.overlaps(&other));
        assert!(!any.overlaps(&v6));
        let mut udp = any.clone();
        udp.protocol = Protocol::Udp;
        assert!(!any.overlaps(&udp));
        assert!(any.needs_route_localnet() && lo.needs_route_localnet());
        assert!(!other.needs_route_localnet() && !v6.needs_route_localnet());
    }

    #[test]
    fn parses_a_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "nook", "handle": 1}},
            {"chain": {"family": "inet", "table": "nook", "name": "filter-forward", "handle": 1,
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
            {"chain": {"family": "inet", "table": "nook", "name": "nk-web-fwd", "handle": 2}},
            {"chain": {"family": "inet", "table": "nook", "name": "nk-web-pre", "handle": 3}},
            {"rule": {"family": "inet", "table": "nook", "chain": "filter-forward", "handle": 4,
                "comment": "nk-net web", "expr": [{"jump": {"target": "nk-web-fwd"}}]}},
            {"rule": {"family": "inet", "table": "nook", "chain": "nk-web-fwd", "handle": 5,
                "comment": "nk-meta br=nkbr0 v4 id=00000000000000ff",
                "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "nkbr0"}},
                         {"accept": null}]}},
            {"rule": {"family": "inet", "table": "nook", "chain": "nk-web-pre", "handle": 6,
                "comment": "nk-port ep1 udp 4 * 53", "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}
        ]}"#;
        let s = TableState::parse(json).unwrap();
        assert!(s.exists);
        assert_eq!(s.networks(), vec!["web"]);
        let meta = s.network("web").unwrap();
        assert_eq!((meta.bridge.as_str(), meta.ipv4, meta.ipv6, meta.fingerprint), ("nkbr0", true, false, 255));
        assert_eq!(s.network("other"), None);
        let ports: Vec<_> = s.ports().collect();
        assert_eq!(ports.len(), 1);
        assert_eq!((ports[0].0, ports[0].1, ports[0].2.host_port), ("web", 6, 53));
        let jumps = s.jumps_into("web");
        assert_eq!(jumps.len(), 1);
        assert_eq!(jumps[0].handle, 4);
        assert!(lists_table(json, "inet", "nook").unwrap());
        // The same table read out of a whole ruleset: another table's chains and rules are not
        // nook's, even of the same name.
        let other = json
            .replace(r#""table": "nook""#, r#""table": "other""#)
            .replace(r#""name": "nook""#, r#""name": "other""#);
        let mut doc: serde_json::Value = serde_json::from_str(json).unwrap();
        let more: serde_json::Value = serde_json::from_str(&other).unwrap();
        doc["nftables"].as_array_mut().unwrap().extend(more["nftables"].as_array().unwrap().iter().cloned());
        assert_eq!(TableState::from_ruleset(&doc.to_string(), "inet", "nook").unwrap(), s);
        let absent = TableState::from_ruleset(&other, "inet", "nook").unwrap();
        assert!(!absent.exists && absent.chains.is_empty() && absent.rules.is_empty());
        assert!(!lists_table(json, "ip", "nook").unwrap());
        assert!(TableState::parse("{").is_err());
    }
}
