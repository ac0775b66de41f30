//! Per-endpoint egress policies ([`crate::egress`]): two tables of nook's, `bridge TABLE-egress`
//! and `inet TABLE-egress`, created with the first policy and deleted with the last.
//!
//! ```text
//! table bridge nook-egress {
//!   chain egress-pre { type filter hook prerouting priority -300;  iifname VETH jump nk-eg-ID-pre (nk-egress ID) }
//!   chain egress-fwd { type filter hook forward priority -200;     iifname VETH jump nk-eg-ID-fwd (nk-egress ID) }
//!   set nk-eg-ID-v4 { type ipv4_addr; flags timeout }   set nk-eg-ID-v6 { type ipv6_addr; flags timeout }
//!   chain nk-eg-ID-pre { ether saddr != MAC drop
//!                        meta protocol arp arp saddr ip != V4 drop;  meta protocol ip ip saddr != V4 drop
//!                        meta protocol ip6 ip6 saddr != V6 ip6 saddr != fe80::/10 ip6 saddr != :: drop
//!                        meta protocol != arp meta protocol != ip meta protocol != ip6 drop
//!                        meta mark set meta mark | EGRESS_MARK }
//!   chain nk-eg-ID-fwd { meta protocol arp accept;  icmpv6 type {nd-*} accept
//!                        ALLOWED accept;  ip daddr @nk-eg-ID-v4 accept;  ip6 daddr @nk-eg-ID-v6 accept
//!                        drop }
//! }
//! table inet nook-egress {
//!   chain egress-forward { type filter hook forward priority -30;
//!                          meta mark & M == M ip saddr V4 jump nk-eg-ID (nk-egress ID V4)   (per address, first)
//!                          meta mark & M == M icmpv6 type {nd-*} accept
//!                          meta mark & M == M meta l4proto tcp reject with tcp reset
//!                          meta mark & M == M reject with icmpx port-unreachable }
//!   chain egress-input   { type filter hook input priority -30; the same }
//!   set nk-eg-ID-v4, nk-eg-ID-v6 (as above)
//!   chain nk-eg-ID { ct state established,related accept;  icmpv6 type {nd-*} accept
//!                    ALLOWED accept;  ip daddr @nk-eg-ID-v4 accept;  ip6 daddr @nk-eg-ID-v6 accept
//!                    meta l4proto tcp reject with tcp reset;  reject with icmpx port-unreachable }
//! }
//! ```
//!
//! The sets are filled by the embedded DNS ([`allow`]), with kernel timeouts.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::exec::Ctx;
use super::state::TableState;
use super::{EGRESS_MARK, FirewallError, Protocol};
use crate::egress::{EgressPolicy, EgressRule};

/// Comment prefix of the jumps into an endpoint's chains.
const TAG: &str = "nk-egress";
/// Prefix of every per-endpoint chain and set.
const PREFIX: &str = "nk-eg-";

const BRIDGE: &str = "bridge";
const INET: &str = "inet";

/// `(name, hook, priority)` of the base chains of each table.
const BRIDGE_BASE: [(&str, &str, i32); 2] = [("egress-pre", "prerouting", -300), ("egress-fwd", "forward", -200)];
const INET_BASE: [(&str, &str, i32); 2] = [("egress-forward", "forward", -30), ("egress-input", "input", -30)];

/// The neighbour and router discovery messages always let through.
const DISCOVERY: [&str; 3] = ["nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert"];

/// What the firewall needs to know of an endpoint to bind a policy to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressEndpoint {
    /// The endpoint's id (chains and sets are named after it).
    pub id: String,
    /// Its host-side interface: the bridge port its frames enter by.
    pub host_ifname: String,
    /// The MAC address of its sandbox-side interface.
    pub mac: [u8; 6],
    /// Its addresses (one per family at most).
    pub addresses: Vec<IpAddr>,
}

impl EgressEndpoint {
    /// An endpoint `id` on bridge port `host_ifname`, with `mac` and `addresses`.
    pub fn new(id: impl Into<String>, host_ifname: impl Into<String>, mac: [u8; 6], addresses: Vec<IpAddr>) -> Self {
        EgressEndpoint { id: id.into(), host_ifname: host_ifname.into(), mac, addresses }
    }

    fn v4(&self) -> Option<IpAddr> {
        self.addresses.iter().copied().find(IpAddr::is_ipv4)
    }

    fn v6(&self) -> Option<IpAddr> {
        self.addresses.iter().copied().find(IpAddr::is_ipv6)
    }
}

/// The egress tables' name for nook's table `base`.
pub(crate) fn table_name(base: &str) -> String {
    format!("{base}-egress")
}

fn inet_chain(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn pre_chain(id: &str) -> String {
    format!("{PREFIX}{id}-pre")
}

fn fwd_chain(id: &str) -> String {
    format!("{PREFIX}{id}-fwd")
}

fn set_name(id: &str, v6: bool) -> String {
    format!("{PREFIX}{id}-{}", if v6 { "v6" } else { "v4" })
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn marked() -> Value {
    m(json!({"&": [meta("mark"), EGRESS_MARK]}), "==", json!(EGRESS_MARK))
}

fn accept() -> Value {
    json!({"accept": null})
}

fn drop() -> Value {
    json!({"drop": null})
}

fn ip_proto(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { "ip6" } else { "ip" }
}

fn net_value(net: IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The rejections that end every policy: TCP reset, then ICMP port unreachable.
fn rejections(prefix: &[Value]) -> [Vec<Value>; 2] {
    let mut tcp = prefix.to_vec();
    tcp.extend([m(meta("l4proto"), "==", json!("tcp")), json!({"reject": {"type": "tcp reset"}})]);
    let mut other = prefix.to_vec();
    other.push(json!({"reject": {"type": "icmpx", "expr": "port-unreachable"}}));
    [tcp, other]
}

/// A batch under construction for the two egress tables.
struct Batch {
    table: String,
    cmds: Vec<Value>,
}

impl Batch {
    fn obj(&self, family: &str, kind: &str, mut body: Value) -> Value {
        body["family"] = json!(family);
        body["table"] = json!(self.table);
        json!({ kind: body })
    }

    fn push(&mut self, verb: &str, family: &str, kind: &str, body: Value) {
        let obj = self.obj(family, kind, body);
        self.cmds.push(json!({ verb: obj }));
    }

    fn rule(&mut self, verb: &str, family: &str, chain: &str, expr: Vec<Value>, comment: Option<String>) {
        let mut body = json!({"chain": chain, "expr": expr});
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        self.push(verb, family, "rule", body);
    }

    fn table(&mut self, family: &str, verb: &str) {
        self.cmds.push(json!({ verb: {"table": {"family": family, "name": self.table}}}));
    }

    fn base_chains(&mut self, family: &str, chains: &[(&str, &str, i32)]) {
        for (name, hook, prio) in chains {
            let body = json!({"name": name, "type": "filter", "hook": hook, "prio": prio, "policy": "accept"});
            self.push("add", family, "chain", body);
        }
    }

    fn finish(self) -> Value {
        json!({"nftables": self.cmds})
    }
}

/// The rules allowing `rule`'s traffic (`prefix` first: the bridge family's `meta protocol`).
fn allow_rule(rule: &EgressRule, bridge: bool) -> Vec<Value> {
    let proto = ip_proto(rule.net.addr());
    let mut expr = Vec::new();
    if bridge {
        expr.push(m(meta("protocol"), "==", json!(proto)));
    }
    if rule.net.prefix_len() > 0 {
        expr.push(m(payload(proto, "daddr"), "==", net_value(rule.net)));
    } else if !bridge {
        // `ip daddr 0.0.0.0/0` is only its family.
        expr.push(m(meta("nfproto"), "==", json!(if rule.net.addr().is_ipv6() { "ipv6" } else { "ipv4" })));
    }
    if let Some(protocol) = rule.protocol {
        let l4 = match protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        expr.push(m(meta("l4proto"), "==", json!(l4)));
        if let Some((first, last)) = rule.ports {
            let ports = if first == last { json!(first) } else { json!({"range": [first, last]}) };
            expr.push(m(payload(l4, "dport"), "==", ports));
        }
    }
    expr.push(accept());
    expr
}

fn discovery(prefix: &[Value]) -> Vec<Vec<Value>> {
    DISCOVERY
        .iter()
        .map(|t| {
            let mut e = prefix.to_vec();
            e.extend([
                m(meta("l4proto"), "==", json!("icmpv6")),
                m(payload("icmpv6", "type"), "==", json!(t)),
                accept(),
            ]);
            e
        })
        .collect()
}

/// The rules of the endpoint's three chains for `policy`: `(family, chain, rules)`.
fn policy_rules(ep: &EgressEndpoint, policy: &EgressPolicy) -> Vec<(&'static str, String, Vec<Vec<Value>>)> {
    let id = &ep.id;
    // At the bridge port: the endpoint's own addresses and MAC, then the mark.
    let mut pre = vec![vec![m(payload("ether", "saddr"), "!=", json!(mac_text(ep.mac))), drop()]];
    match ep.v4() {
        Some(v4) => {
            let v4 = json!(v4.to_string());
            pre.push(vec![
                m(meta("protocol"), "==", json!("arp")),
                m(payload("arp", "saddr ip"), "!=", v4.clone()),
                drop(),
            ]);
            pre.push(vec![m(meta("protocol"), "==", json!("ip")), m(payload("ip", "saddr"), "!=", v4), drop()]);
        }
        None => {
            pre.push(vec![m(meta("protocol"), "==", json!("arp")), drop()]);
            pre.push(vec![m(meta("protocol"), "==", json!("ip")), drop()]);
        }
    }
    let mut v6 = vec![m(meta("protocol"), "==", json!("ip6"))];
    if let Some(a) = ep.v6() {
        v6.push(m(payload("ip6", "saddr"), "!=", json!(a.to_string())));
    }
    v6.push(m(payload("ip6", "saddr"), "!=", json!({"prefix": {"addr": "fe80::", "len": 10}})));
    v6.push(m(payload("ip6", "saddr"), "!=", json!("::")));
    v6.push(drop());
    pre.push(v6);
    let mut others: Vec<Value> = ["arp", "ip", "ip6"].iter().map(|p| m(meta("protocol"), "!=", json!(p))).collect();
    others.push(drop());
    pre.push(others);
    pre.push(vec![json!({"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), EGRESS_MARK]}}})]);

    // Frames to peers on the bridge: stateless, dropped unless allowed.
    let mut fwd = vec![vec![m(meta("protocol"), "==", json!("arp")), accept()]];
    fwd.extend(discovery(&[m(meta("protocol"), "==", json!("ip6"))]));
    fwd.extend(policy.allow.iter().map(|r| allow_rule(r, true)));
    for v6 in [false, true] {
        let proto = if v6 { "ip6" } else { "ip" };
        fwd.push(vec![
            m(meta("protocol"), "==", json!(proto)),
            m(payload(proto, "daddr"), "==", json!(format!("@{}", set_name(id, v6)))),
            accept(),
        ]);
    }
    fwd.push(vec![drop()]);

    // Routed and local traffic: stateful, rejected unless allowed.
    let mut routed = vec![vec![m(json!({"ct": {"key": "state"}}), "in", json!(["established", "related"])), accept()]];
    routed.extend(discovery(&[]));
    routed.extend(policy.allow.iter().map(|r| allow_rule(r, false)));
    for v6 in [false, true] {
        let proto = if v6 { "ip6" } else { "ip" };
        routed.push(vec![m(payload(proto, "daddr"), "==", json!(format!("@{}", set_name(id, v6)))), accept()]);
    }
    routed.extend(rejections(&[]));

    vec![(BRIDGE, pre_chain(id), pre), (BRIDGE, fwd_chain(id), fwd), (INET, inet_chain(id), routed)]
}

/// The endpoint ids with chains in the inet table.
fn endpoints_in(state: &TableState) -> Vec<&str> {
    state
        .chains
        .iter()
        .filter_map(|c| c.strip_prefix(PREFIX))
        .filter(|id| !id.ends_with("-pre") && !id.ends_with("-fwd"))
        .collect()
}

/// The jumps of `id` (by their comment `nk-egress ID [ADDRESS]`).
fn jumps_of<'a>(state: &'a TableState, id: &'a str) -> impl Iterator<Item = (&'a str, u32)> + 'a {
    state.rules.iter().filter_map(move |r| {
        let mut words = r.comment.as_deref()?.split_whitespace();
        (words.next() == Some(TAG) && words.next() == Some(id)).then_some((r.chain.as_str(), r.handle))
    })
}

/// Commands removing endpoint `id` (jumps, chains, sets) from both tables.
fn remove_endpoint(b: &mut Batch, bridge: &TableState, inet: &TableState, id: &str) {
    for (family, state) in [(BRIDGE, bridge), (INET, inet)] {
        for (chain, handle) in jumps_of(state, id) {
            b.push("delete", family, "rule", json!({"chain": chain, "handle": handle}));
        }
    }
    for (family, state, chain) in
        [(BRIDGE, bridge, pre_chain(id)), (BRIDGE, bridge, fwd_chain(id)), (INET, inet, inet_chain(id))]
    {
        if state.chains.contains(&chain) {
            b.push("delete", family, "chain", json!({"name": chain}));
        }
    }
    for (family, state) in [(BRIDGE, bridge), (INET, inet)] {
        if state.exists {
            for v6 in [false, true] {
                b.push("delete", family, "set", json!({"name": set_name(id, v6)}));
            }
        }
    }
}

/// The ids of other endpoints holding one of `addresses` (left by an owner that died): their
/// policy would apply to the new endpoint's packets.
fn stale_holders(inet: &TableState, id: &str, addresses: &[IpAddr]) -> Vec<String> {
    let mut stale: Vec<String> = inet
        .rules
        .iter()
        .filter_map(|r| {
            let mut words = r.comment.as_deref()?.split_whitespace();
            if words.next() != Some(TAG) {
                return None;
            }
            let holder = words.next()?;
            let address: IpAddr = words.next()?.parse().ok()?;
            (holder != id && addresses.contains(&address)).then(|| holder.to_owned())
        })
        .collect();
    stale.sort();
    stale.dedup();
    stale
}

/// Binds `policy` to `ep` (replacing its rules if it has some), one transaction. The caller
/// holds the table lock, on a thread in the namespace.
pub(crate) fn set(cx: &Ctx<'_>, ep: &EgressEndpoint, policy: &EgressPolicy) -> Result<(), FirewallError> {
    let table = table_name(cx.table);
    let bridge = cx.list_in(BRIDGE, &table)?;
    let inet = cx.list_in(INET, &table)?;
    let mut b = Batch { table, cmds: Vec::new() };
    if !bridge.exists {
        b.table(BRIDGE, "add");
        b.base_chains(BRIDGE, &BRIDGE_BASE);
    }
    if !inet.exists {
        b.table(INET, "add");
        b.base_chains(INET, &INET_BASE);
        for (chain, _, _) in INET_BASE {
            let mut catch_all = discovery(&[marked()]);
            catch_all.extend(rejections(&[marked()]));
            for expr in catch_all {
                b.rule("add", INET, chain, expr, None);
            }
        }
    }
    let id = &ep.id;
    for holder in stale_holders(&inet, id, &ep.addresses) {
        remove_endpoint(&mut b, &bridge, &inet, &holder);
    }
    let rules = policy_rules(ep, policy);
    if inet.chains.contains(&inet_chain(id)) {
        for (family, chain, _) in &rules {
            b.push("flush", family, "chain", json!({"name": chain}));
        }
    } else {
        for family in [BRIDGE, INET] {
            for (v6, kind) in [(false, "ipv4_addr"), (true, "ipv6_addr")] {
                b.push("add", family, "set", json!({"name": set_name(id, v6), "type": kind, "flags": ["timeout"]}));
            }
        }
        for (family, chain, _) in &rules {
            b.push("add", family, "chain", json!({"name": chain}));
        }
        let port = m(meta("iifname"), "==", json!(ep.host_ifname));
        let tag = format!("{TAG} {id}");
        b.rule(
            "insert",
            BRIDGE,
            BRIDGE_BASE[0].0,
            vec![port.clone(), json!({"jump": {"target": pre_chain(id)}})],
            Some(tag.clone()),
        );
        b.rule("insert", BRIDGE, BRIDGE_BASE[1].0, vec![port, json!({"jump": {"target": fwd_chain(id)}})], Some(tag));
        for address in &ep.addresses {
            for (chain, _, _) in INET_BASE {
                let expr = vec![
                    marked(),
                    m(payload(ip_proto(*address), "saddr"), "==", json!(address.to_string())),
                    json!({"jump": {"target": inet_chain(id)}}),
                ];
                b.rule("insert", INET, chain, expr, Some(format!("{TAG} {id} {address}")));
            }
        }
    }
    for (family, chain, list) in rules {
        for expr in list {
            b.rule("add", family, &chain, expr, None);
        }
    }
    cx.apply_json(&b.finish())
}

/// Removes `id`'s policy (both tables when it was the last), one transaction; nothing to do
/// when it has none.
pub(crate) fn remove(cx: &Ctx<'_>, id: &str) -> Result<(), FirewallError> {
    let table = table_name(cx.table);
    let bridge = cx.list_in(BRIDGE, &table)?;
    let inet = cx.list_in(INET, &table)?;
    let present = endpoints_in(&inet);
    let has_own = present.contains(&id) || jumps_of(&bridge, id).next().is_some();
    if !has_own {
        return Ok(());
    }
    let mut b = Batch { table, cmds: Vec::new() };
    if present.iter().all(|p| *p == id) {
        for (family, state) in [(BRIDGE, &bridge), (INET, &inet)] {
            if state.exists {
                b.table(family, "delete");
            }
        }
    } else {
        remove_endpoint(&mut b, &bridge, &inet, id);
    }
    cx.apply_json(&b.finish())
}

/// Removes the policies of every endpoint holding one of `addresses` (left by owners that
/// died), one transaction; both tables go when nothing else is left in them.
pub(crate) fn remove_to(cx: &Ctx<'_>, addresses: &[IpAddr]) -> Result<(), FirewallError> {
    let table = table_name(cx.table);
    let bridge = cx.list_in(BRIDGE, &table)?;
    let inet = cx.list_in(INET, &table)?;
    let holders = stale_holders(&inet, "", addresses);
    if holders.is_empty() {
        return Ok(());
    }
    let mut b = Batch { table, cmds: Vec::new() };
    if endpoints_in(&inet).iter().all(|p| holders.iter().any(|h| h == p)) {
        for (family, state) in [(BRIDGE, &bridge), (INET, &inet)] {
            if state.exists {
                b.table(family, "delete");
            }
        }
    } else {
        for holder in &holders {
            remove_endpoint(&mut b, &bridge, &inet, holder);
        }
    }
    cx.apply_json(&b.finish())
}

/// The shortest time an answered address is allowed for (a TTL of 0 still lets the connect
/// that follows the answer through).
pub(crate) const MIN_ALLOW: Duration = Duration::from_secs(1);

fn element_cmds(b: &mut Batch, verb: &str, id: &str, addresses: &[(IpAddr, Duration)]) {
    for family in [BRIDGE, INET] {
        for (address, ttl) in addresses {
            let elem = if verb == "delete" {
                json!(address.to_string())
            } else {
                json!({"elem": {"val": address.to_string(), "timeout": ttl.max(&MIN_ALLOW).as_secs()}})
            };
            b.push(verb, family, "element", json!({"name": set_name(id, address.is_ipv6()), "elem": [elem]}));
        }
    }
}

/// Adds `addresses` to `id`'s allow sets, each for its time (at least [`MIN_ALLOW`]); an
/// address already there gets the new time.
pub(crate) fn allow(cx: &Ctx<'_>, id: &str, addresses: &[(IpAddr, Duration)]) -> Result<(), FirewallError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let table = table_name(cx.table);
    let batch = |verbs: &[&str], list: &[(IpAddr, Duration)]| {
        let mut b = Batch { table: table.clone(), cmds: Vec::new() };
        for verb in verbs {
            element_cmds(&mut b, verb, id, list);
        }
        b.finish()
    };
    match cx.apply_json(&batch(&["create"], addresses)) {
        Err(e) if e.is_errno(libc::EEXIST) => {}
        other => return other,
    }
    // Some are there already: one by one, replaced (delete and add: one transaction).
    for one in addresses.chunks(1) {
        match cx.apply_json(&batch(&["create"], one)) {
            Err(e) if e.is_errno(libc::EEXIST) => {}
            other => {
                other?;
                continue;
            }
        }
        match cx.apply_json(&batch(&["delete", "add"], one)) {
            // Expired between the two: it can be created now.
            Err(e) if e.is_errno(libc::ENOENT) => cx.apply_json(&batch(&["add"], one))?,
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> EgressEndpoint {
        EgressEndpoint::new(
            "ab12",
            "nkveth0",
            [2, 0x42, 10, 0, 0, 2],
            vec!["10.88.0.2".parse().unwrap(), "fd00:88::2".parse().unwrap()],
        )
    }

    fn policy() -> EgressPolicy {
        let mut p = EgressPolicy::deny_all();
        p.allow_ports("10.1.0.0/16".parse().unwrap(), Protocol::Tcp, 8000..=8100)
            .allow_net("fd00:99::1/128".parse().unwrap())
            .allow_port("0.0.0.0/0".parse().unwrap(), Protocol::Udp, 123);
        p
    }

    #[test]
    fn every_policy_batch_encodes_for_netlink() {
        let ep = endpoint();
        for (family, chain, rules) in policy_rules(&ep, &policy()) {
            let mut b = Batch { table: "nook-egress".into(), cmds: Vec::new() };
            b.table(family, "add");
            if family == BRIDGE {
                b.base_chains(BRIDGE, &BRIDGE_BASE);
            } else {
                b.base_chains(INET, &INET_BASE);
            }
            for v6 in [false, true] {
                let kind = if v6 { "ipv6_addr" } else { "ipv4_addr" };
                b.push("add", family, "set", json!({"name": set_name("ab12", v6), "type": kind, "flags": ["timeout"]}));
            }
            b.push("add", family, "chain", json!({"name": chain}));
            b.push("flush", family, "chain", json!({"name": chain}));
            for expr in rules {
                b.rule("add", family, &chain, expr, Some("nk-egress ab12".into()));
            }
            for expr in rejections(&[marked()]).into_iter().chain(discovery(&[marked()])) {
                b.rule("insert", INET, "egress-input", expr, None);
            }
            element_cmds(&mut b, "create", "ab12", &[("10.0.0.9".parse().unwrap(), Duration::from_secs(30))]);
            element_cmds(&mut b, "delete", "ab12", &[("fd00::9".parse().unwrap(), Duration::ZERO)]);
            b.push("delete", family, "set", json!({"name": set_name("ab12", false)}));
            crate::firewall::encodes(&b.finish());
        }
    }

    #[test]
    fn the_routed_chain_ends_in_rejections_and_the_bridged_one_in_a_drop() {
        let rules = policy_rules(&endpoint(), &policy());
        let routed = &rules[2].2;
        assert_eq!(
            routed.last().unwrap().last().unwrap(),
            &json!({"reject": {"type": "icmpx", "expr": "port-unreachable"}})
        );
        assert_eq!(routed[0][0]["match"]["right"], json!(["established", "related"]));
        let fwd = &rules[1].2;
        assert_eq!(fwd.last().unwrap(), &vec![drop()]);
        // The anti-spoofing checks name the endpoint's own MAC and addresses.
        let pre = &rules[0].2;
        assert_eq!(pre[0][0]["match"]["right"], "02:42:0a:00:00:02");
        assert_eq!(pre[1][1]["match"]["right"], "10.88.0.2");
        // A port range is a range; 0.0.0.0/0 is only the family.
        assert_eq!(routed[4][2]["match"]["right"], json!({"range": [8000, 8100]}));
        assert_eq!(routed[6][0]["match"]["left"], meta("nfproto"));
    }

    #[test]
    fn stale_holders_are_found_by_address() {
        let mut inet = TableState::default();
        inet.rules.push(super::super::state::ListedRule {
            chain: "egress-forward".into(),
            handle: 4,
            comment: Some("nk-egress old 10.88.0.2".into()),
            jump: Some("nk-eg-old".into()),
            dnat: None,
        });
        assert_eq!(stale_holders(&inet, "new", &["10.88.0.2".parse().unwrap()]), ["old"]);
        assert!(stale_holders(&inet, "old", &["10.88.0.2".parse().unwrap()]).is_empty());
        assert!(stale_holders(&inet, "new", &["10.88.0.3".parse().unwrap()]).is_empty());
    }
}
