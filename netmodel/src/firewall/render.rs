//! Pure rendering of nftables JSON batches (`nftables` crate schema), one per operation.
//!
//! The layout (family `inet`, one table):
//!
//! ```text
//! table inet nook {
//!   chain nat-prerouting  { type nat hook prerouting priority dstnat;    fib daddr type local jump nk-NET-pre }
//!   chain nat-output      { type nat hook output priority -100;          ip6 daddr ::1 return (nk-base)
//!                                                                        fib daddr type local jump nk-NET-pre }
//!   chain nat-postrouting { type nat hook postrouting priority srcnat;   jump nk-NET-post }
//!   chain filter-forward  { type filter hook forward priority filter;    ct state established,related accept (nk-base)
//!                                                                        jump nk-NET-fwd }
//!   chain raw-prerouting  { type filter hook prerouting priority raw;    iifname BRIDGE jump nk-NET-raw }
//!   chain mark-forward    { type filter hook forward priority -20;       jump nk-NET-mark }
//!
//!   chain nk-NET-fwd  { oifname BRIDGE ct status dnat accept (nk-meta ...)
//!                       oifname BRIDGE iifname != BRIDGE drop }
//!                     internal: { iifname BRIDGE oifname != BRIDGE drop (nk-meta ...)
//!                                 oifname BRIDGE iifname != BRIDGE drop }
//!   chain nk-NET-post { ip saddr SUBNET oifname != BRIDGE masquerade          (per subnet, ip6 alike)
//!                       ip saddr SUBNET oifname BRIDGE ct status dnat masquerade   (hairpin)
//!                       ip saddr 127.0.0.0/8 oifname BRIDGE masquerade }     (host loopback -> port)
//!   chain nk-NET-pre  { meta nfproto ipv4 [ip daddr HOST_IP] tcp dport HOST_PORT dnat ip to CIP:PORT (nk-port ...) }
//!   chain nk-NET-raw  { ip daddr 127.0.0.0/8 drop }
//!   chain nk-NET-mark { iifname BRIDGE meta mark set meta mark | MARK
//!                       oifname BRIDGE ct state established,related meta mark set meta mark | MARK
//!                       oifname BRIDGE ct status dnat meta mark set meta mark | MARK }
//!                     internal: { iifname BRIDGE oifname BRIDGE meta mark set meta mark | MARK }
//! }
//! ```
//!
//! Internal networks get only `nk-NET-fwd` and `nk-NET-mark` (and their jumps).
//!
//! Rules in other tables ([`super::foreign`]), per network, commented `TABLE:NETWORK`:
//! `iifname BRIDGE meta mark & MARK == MARK counter accept`, and the same with `oifname`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::expr::{
    BinaryOperation, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
};
use nftables::schema::{self as nfs, Chain, NfCmd, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{Counter, JumpTarget, Mangle, Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::foreign::Place;
use super::state::{BASE_TAG, NET_TAG, NetChain, NetMeta, PortTag, TableState};
use super::{FORWARD_MARK, NetworkRules, PortRule, Protocol};

/// Family of nook's table.
pub(crate) const FAMILY: NfFamily = NfFamily::INet;
/// Family of nook's table, as `nft` spells it.
pub(crate) const FAMILY_NAME: &str = "inet";

/// A base chain of the table.
pub(crate) struct BaseChain {
    /// Its name.
    pub name: &'static str,
    kind: NfChainType,
    hook: NfHook,
    prio: i32,
}

/// `nat-prerouting`: published ports reached from other hosts and namespaces.
pub(crate) const NAT_PREROUTING: &str = "nat-prerouting";
/// `nat-output`: published ports reached from the host itself.
pub(crate) const NAT_OUTPUT: &str = "nat-output";
/// `nat-postrouting`: masquerade.
pub(crate) const NAT_POSTROUTING: &str = "nat-postrouting";
/// `filter-forward`: isolation.
pub(crate) const FILTER_FORWARD: &str = "filter-forward";
/// `raw-prerouting`: the loopback guard (before conntrack).
pub(crate) const RAW_PREROUTING: &str = "raw-prerouting";

/// `mark-forward`: marks the packets nook accepts, for other tables.
pub(crate) const MARK_FORWARD: &str = "mark-forward";
/// `mark-forward`'s priority: after mangle (-150), before every filter chain.
pub(crate) const MARK_PRIORITY: i32 = -20;

/// The base chains, created with the table.
pub(crate) const BASE_CHAINS: [BaseChain; 6] = [
    BaseChain { name: NAT_PREROUTING, kind: NfChainType::NAT, hook: NfHook::Prerouting, prio: -100 },
    BaseChain { name: NAT_OUTPUT, kind: NfChainType::NAT, hook: NfHook::Output, prio: -100 },
    BaseChain { name: NAT_POSTROUTING, kind: NfChainType::NAT, hook: NfHook::Postrouting, prio: 100 },
    BaseChain { name: FILTER_FORWARD, kind: NfChainType::Filter, hook: NfHook::Forward, prio: 0 },
    BaseChain { name: RAW_PREROUTING, kind: NfChainType::Filter, hook: NfHook::Prerouting, prio: -300 },
    BaseChain { name: MARK_FORWARD, kind: NfChainType::Filter, hook: NfHook::Forward, prio: MARK_PRIORITY },
];

/// A batch under construction.
struct Batch {
    table: String,
    objects: Vec<NfObject<'static>>,
}

impl Batch {
    fn new(table: &str) -> Batch {
        Batch { table: table.to_owned(), objects: Vec::new() }
    }

    fn cmd(&mut self, cmd: NfCmd<'static>) {
        self.objects.push(NfObject::CmdObject(cmd));
    }

    fn chain(&self, name: &str) -> Chain<'static> {
        Chain { family: FAMILY, table: self.table.clone().into(), name: name.to_owned().into(), ..Chain::default() }
    }

    fn rule(&self, chain: &str, expr: Vec<Statement<'static>>, comment: Option<String>) -> Rule<'static> {
        Rule {
            family: FAMILY,
            table: self.table.clone().into(),
            chain: chain.to_owned().into(),
            expr: expr.into(),
            handle: None,
            index: None,
            comment: comment.map(Cow::Owned),
        }
    }

    fn add_rule(&mut self, chain: &str, expr: Vec<Statement<'static>>, comment: impl Into<Option<String>>) {
        let rule = self.rule(chain, expr, comment.into());
        self.cmd(NfCmd::Add(NfListObject::Rule(rule)));
    }

    fn delete_rule(&mut self, chain: &str, handle: u32) {
        let mut rule = self.rule(chain, Vec::new(), None);
        rule.handle = Some(handle);
        self.cmd(NfCmd::Delete(NfListObject::Rule(rule)));
    }

    fn finish(self) -> nfs::Nftables<'static> {
        nfs::Nftables { objects: self.objects.into() }
    }
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn matches(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(nftables::expr::CT { key: key.into(), family: None, dir: None }))
}

fn prefix(net: IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn ip_proto(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { "ip6" } else { "ip" }
}

fn net_proto(net: IpNet) -> &'static str {
    ip_proto(net.network())
}

fn iifname(op: Operator, name: &str) -> Statement<'static> {
    matches(meta(MetaKey::Iifname), op, s(name))
}

fn oifname(op: Operator, name: &str) -> Statement<'static> {
    matches(meta(MetaKey::Oifname), op, s(name))
}

fn ct_status_dnat() -> Statement<'static> {
    matches(ct("status"), Operator::IN, s("dnat"))
}

fn local_destination() -> Statement<'static> {
    let fib = Fib { result: FibResult::Type, flags: HashSet::from([FibFlag::Daddr]) };
    matches(Expression::Named(NamedExpression::Fib(fib)), Operator::EQ, s("local"))
}

fn mark_expr() -> Expression<'static> {
    meta(MetaKey::Mark)
}

/// `meta mark set meta mark | FORWARD_MARK`.
fn set_mark() -> Statement<'static> {
    let or = BinaryOperation::OR(vec![mark_expr(), Expression::Number(FORWARD_MARK)]);
    Statement::Mangle(Mangle { key: mark_expr(), value: Expression::BinaryOperation(Box::new(or)) })
}

/// `meta mark & FORWARD_MARK == FORWARD_MARK`.
fn has_mark() -> Statement<'static> {
    let and = BinaryOperation::AND(mark_expr(), Expression::Number(FORWARD_MARK));
    matches(Expression::BinaryOperation(Box::new(and)), Operator::EQ, Expression::Number(FORWARD_MARK))
}

fn established() -> Statement<'static> {
    matches(ct("state"), Operator::IN, Expression::List(vec![s("established"), s("related")]))
}

fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

fn jump(target: String) -> Statement<'static> {
    Statement::Jump(JumpTarget { target: target.into() })
}

fn loopback_v4() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).expect("8 is a valid prefix length"))
}

/// Adds the table and the base chains it lacks (with their fixed rules).
fn ensure_base(b: &mut Batch, state: &TableState) {
    if !state.exists {
        let table = Table { family: FAMILY, name: b.table.clone().into(), handle: None };
        b.cmd(NfCmd::Add(NfListObject::Table(table)));
    }
    for base in &BASE_CHAINS {
        if state.chains.contains(base.name) {
            continue;
        }
        let chain = Chain {
            _type: Some(base.kind),
            hook: Some(base.hook),
            prio: Some(base.prio),
            policy: Some(NfChainPolicy::Accept),
            ..b.chain(base.name)
        };
        b.cmd(NfCmd::Add(NfListObject::Chain(chain)));
        match base.name {
            FILTER_FORWARD => {
                b.add_rule(FILTER_FORWARD, vec![established(), Statement::Accept(None)], BASE_TAG.to_owned())
            }
            // Linux cannot route ::1 out of `lo` (no route_localnet for IPv6): never DNAT it,
            // or the connection would hang instead of being refused.
            NAT_OUTPUT => b.add_rule(
                NAT_OUTPUT,
                vec![matches(payload("ip6", "daddr"), Operator::EQ, s("::1")), Statement::Return(None)],
                BASE_TAG.to_owned(),
            ),
            _ => {}
        }
    }
}

/// The batch that sets `rules` up (the network must not exist yet; `meta` is its metadata).
pub(crate) fn setup_network(
    table: &str,
    state: &TableState,
    rules: &NetworkRules,
    meta: &NetMeta,
) -> nfs::Nftables<'static> {
    let mut b = Batch::new(table);
    ensure_base(&mut b, state);
    let net = rules.network.as_str();
    let br = rules.bridge.as_str();
    let chains: &[NetChain] = if rules.internal { &[NetChain::Fwd, NetChain::Mark] } else { &NetChain::ALL };
    for c in chains {
        // `create` fails if the chain exists: two setups of one network never interleave.
        let chain = b.chain(&c.name(net));
        b.cmd(NfCmd::Create(NfListObject::Chain(chain)));
    }
    let fwd = NetChain::Fwd.name(net);
    let tag = || format!("{NET_TAG} {net}");
    // The mark other tables can accept nook's traffic by: on what nook itself accepts.
    let mark = NetChain::Mark.name(net);
    if rules.internal {
        b.add_rule(&mark, vec![iifname(Operator::EQ, br), oifname(Operator::EQ, br), set_mark()], None);
    } else {
        b.add_rule(&mark, vec![iifname(Operator::EQ, br), set_mark()], None);
        b.add_rule(&mark, vec![oifname(Operator::EQ, br), established(), set_mark()], None);
        b.add_rule(&mark, vec![oifname(Operator::EQ, br), ct_status_dnat(), set_mark()], None);
    }
    b.add_rule(MARK_FORWARD, vec![jump(mark)], tag());
    if rules.internal {
        b.add_rule(
            &fwd,
            vec![iifname(Operator::EQ, br), oifname(Operator::NEQ, br), counter(), Statement::Drop(None)],
            meta.comment(),
        );
        b.add_rule(
            &fwd,
            vec![oifname(Operator::EQ, br), iifname(Operator::NEQ, br), counter(), Statement::Drop(None)],
            None,
        );
        b.add_rule(FILTER_FORWARD, vec![jump(fwd)], tag());
        return b.finish();
    }
    // Forwarding: published ports (DNAT) get in; nothing else from outside the bridge does
    // (established/related is accepted by the base chain). Outbound traffic is left to the
    // chain's accept policy, so another network's drop still applies to it (isolation).
    b.add_rule(
        &fwd,
        vec![oifname(Operator::EQ, br), ct_status_dnat(), counter(), Statement::Accept(None)],
        meta.comment(),
    );
    b.add_rule(
        &fwd,
        vec![oifname(Operator::EQ, br), iifname(Operator::NEQ, br), counter(), Statement::Drop(None)],
        None,
    );

    let post = NetChain::Post.name(net);
    for &subnet in &rules.subnets {
        let saddr = || matches(payload(net_proto(subnet), "saddr"), Operator::EQ, prefix(subnet));
        // Outbound: leaving through any other interface.
        b.add_rule(&post, vec![saddr(), oifname(Operator::NEQ, br), counter(), Statement::Masquerade(None)], None);
        // Hairpin: a sandbox reaching a published port (its own or a peer's) through a host
        // address comes back into the bridge; masquerade so the reply returns through the host.
        b.add_rule(
            &post,
            vec![saddr(), oifname(Operator::EQ, br), ct_status_dnat(), counter(), Statement::Masquerade(None)],
            None,
        );
    }
    // The host reaching a published port on 127.0.0.1 (needs route_localnet on the bridge).
    let lo = matches(payload("ip", "saddr"), Operator::EQ, prefix(loopback_v4()));
    b.add_rule(&post, vec![lo, oifname(Operator::EQ, br), counter(), Statement::Masquerade(None)], None);

    // With route_localnet=1 a sandbox could address the host's 127.0.0.1 directly: refuse
    // such packets before conntrack (replies to the masqueraded loopback connections carry
    // the bridge's address on the wire, so they pass).
    let raw = NetChain::Raw.name(net);
    let dst_lo = matches(payload("ip", "daddr"), Operator::EQ, prefix(loopback_v4()));
    b.add_rule(&raw, vec![dst_lo, counter(), Statement::Drop(None)], None);

    let pre = NetChain::Pre.name(net);
    b.add_rule(FILTER_FORWARD, vec![jump(fwd)], tag());
    b.add_rule(NAT_POSTROUTING, vec![jump(post)], tag());
    b.add_rule(NAT_PREROUTING, vec![local_destination(), jump(pre.clone())], tag());
    b.add_rule(NAT_OUTPUT, vec![local_destination(), jump(pre)], tag());
    b.add_rule(RAW_PREROUTING, vec![iifname(Operator::EQ, br), jump(raw)], tag());
    b.finish()
}

/// The batch that removes `network` (its jumps, then its chains; the whole table when no
/// other network remains), or `None` when nothing of it is in the table.
pub(crate) fn teardown_network(table: &str, state: &TableState, network: &str) -> Option<nfs::Nftables<'static>> {
    let chains: Vec<String> =
        NetChain::ALL.iter().map(|c| c.name(network)).filter(|c| state.chains.contains(c)).collect();
    let jumps = state.jumps_into(network);
    if chains.is_empty() && jumps.is_empty() {
        return None;
    }
    let mut b = Batch::new(table);
    if state.networks().iter().all(|n| *n == network) {
        let table = Table { family: FAMILY, name: b.table.clone().into(), handle: None };
        b.cmd(NfCmd::Delete(NfListObject::Table(table)));
        return Some(b.finish());
    }
    for r in jumps {
        b.delete_rule(&r.chain, r.handle);
    }
    for c in chains {
        // Deleting a chain deletes its rules (the published ports) with it.
        let chain = b.chain(&c);
        b.cmd(NfCmd::Delete(NfListObject::Chain(chain)));
    }
    Some(b.finish())
}

/// The batch that publishes `ports` of `endpoint` in `network` (all assumed validated).
pub(crate) fn add_ports(table: &str, network: &str, endpoint: &str, ports: &[PortRule]) -> nfs::Nftables<'static> {
    let mut b = Batch::new(table);
    let pre = NetChain::Pre.name(network);
    for p in ports {
        let tag = PortTag::of(endpoint, p);
        let (nfproto, family) =
            if p.container_ip.is_ipv6() { ("ipv6", NATFamily::IP6) } else { ("ipv4", NATFamily::IP) };
        let mut expr = vec![matches(meta(MetaKey::Nfproto), Operator::EQ, s(nfproto))];
        if let Some(host) = tag.host_ip {
            expr.push(matches(payload(ip_proto(host), "daddr"), Operator::EQ, s(host.to_string())));
        }
        let l4 = match p.mapping.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        expr.push(matches(payload(l4, "dport"), Operator::EQ, Expression::Number(u32::from(p.mapping.host_port))));
        expr.push(counter());
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(s(p.container_ip.to_string())),
            family: Some(family),
            port: Some(Expression::Number(u32::from(p.mapping.container_port))),
            flags: None,
        })));
        b.add_rule(&pre, expr, tag.comment());
    }
    b.finish()
}

fn family_of(name: &str) -> NfFamily {
    match name {
        "ip" => NfFamily::IP,
        "ip6" => NfFamily::IP6,
        "arp" => NfFamily::ARP,
        "bridge" => NfFamily::Bridge,
        "netdev" => NfFamily::NetDev,
        _ => NfFamily::INet,
    }
}

fn foreign_rule(family: &str, table: &str, chain: &str) -> Rule<'static> {
    Rule {
        family: family_of(family),
        table: table.to_owned().into(),
        chain: chain.to_owned().into(),
        expr: Vec::new().into(),
        handle: None,
        index: None,
        comment: None,
    }
}

/// Commands adding a network's two rules to another table's chain `place` (before the rule
/// `before`, or at the end): packets from or to `bridge` that carry nook's mark are accepted,
/// those from it only when they are not headed for one of the `closed` interfaces (Docker's
/// bridges: see `Ruleset::docker_bridges`).
pub(crate) fn add_foreign(
    place: &Place,
    before: Option<u32>,
    bridge: &str,
    closed: &[String],
    tag: &str,
) -> Vec<NfObject<'static>> {
    let outbound: Vec<Statement<'static>> = std::iter::once(iifname(Operator::EQ, bridge))
        .chain(closed.iter().map(|x| oifname(Operator::NEQ, x)))
        .collect();
    [outbound, vec![oifname(Operator::EQ, bridge)]]
        .into_iter()
        .map(|mut expr| {
            expr.extend([has_mark(), counter(), Statement::Accept(None)]);
            let rule = Rule {
                expr: expr.into(),
                handle: before,
                comment: Some(Cow::Owned(tag.to_owned())),
                ..foreign_rule(&place.family, &place.table, &place.chain)
            };
            // `insert` with a handle goes before that rule; `add` without one, at the end.
            let cmd = if before.is_some() {
                NfCmd::Insert(NfListObject::Rule(rule))
            } else {
                NfCmd::Add(NfListObject::Rule(rule))
            };
            NfObject::CmdObject(cmd)
        })
        .collect()
}

/// The command deleting a rule of another table.
pub(crate) fn delete_foreign(family: &str, table: &str, chain: &str, handle: u32) -> NfObject<'static> {
    let rule = Rule { handle: Some(handle), ..foreign_rule(family, table, chain) };
    NfObject::CmdObject(NfCmd::Delete(NfListObject::Rule(rule)))
}

/// `batch` followed by `more`, as one transaction.
pub(crate) fn extend(
    batch: Option<nfs::Nftables<'static>>,
    more: Vec<NfObject<'static>>,
) -> Option<nfs::Nftables<'static>> {
    let mut objects: Vec<NfObject<'static>> = batch.map(|b| b.objects.into_owned()).unwrap_or_default();
    objects.extend(more);
    (!objects.is_empty()).then(|| nfs::Nftables { objects: objects.into() })
}

/// The batch that deletes rules by handle.
pub(crate) fn delete_rules(table: &str, rules: &[(&str, u32)]) -> nfs::Nftables<'static> {
    let mut b = Batch::new(table);
    for (chain, handle) in rules {
        b.delete_rule(chain, *handle);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::PortMapping;
    use crate::firewall::test_rules as rules;
    use serde_json::{Value, json};

    fn render(batch: &nfs::Nftables<'static>) -> Vec<Value> {
        let v = serde_json::to_value(batch).unwrap();
        v["nftables"].as_array().unwrap().clone()
    }

    fn rules_in<'a>(cmds: &'a [Value], chain: &str) -> Vec<&'a Value> {
        cmds.iter().filter_map(|c| c.get("add")?.get("rule")).filter(|r| r["chain"] == chain).collect()
    }

    #[test]
    fn setup_on_an_empty_table_creates_table_base_chains_and_network() {
        let r = rules(false);
        let cmds = render(&setup_network("nook", &TableState::default(), &r, &NetMeta::of(&r)));
        assert_eq!(cmds[0], json!({"add": {"table": {"family": "inet", "name": "nook"}}}));
        let base: Vec<&Value> = cmds.iter().filter_map(|c| c.get("add")?.get("chain")).collect();
        assert_eq!(base.len(), 6);
        assert_eq!(
            *base[0],
            json!({"family": "inet", "table": "nook", "name": "nat-prerouting", "type": "nat",
                   "hook": "prerouting", "prio": -100, "policy": "accept"})
        );
        let created: Vec<&str> =
            cmds.iter().filter_map(|c| c.get("create")?.get("chain")?.get("name")?.as_str()).collect();
        assert_eq!(created, ["nk-web-fwd", "nk-web-post", "nk-web-pre", "nk-web-raw", "nk-web-mark"]);
        // The mark: on what leaves the bridge, replies into it, and published ports.
        let mark = rules_in(&cmds, "nk-web-mark");
        assert_eq!(mark.len(), 3);
        assert_eq!(
            mark[0]["expr"],
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "nkbr0"}},
                {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 0x0010_0000]}}}
            ])
        );

        let fwd = rules_in(&cmds, "nk-web-fwd");
        assert_eq!(fwd.len(), 2);
        assert_eq!(NetMeta::parse(fwd[0]["comment"].as_str().unwrap()), Some(NetMeta::of(&r)));
        let post = rules_in(&cmds, "nk-web-post");
        assert_eq!(post.len(), 5, "2 per subnet + loopback");
        assert_eq!(
            post[0]["expr"],
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
                {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "nkbr0"}},
                {"counter": null},
                {"masquerade": null}
            ])
        );
        assert_eq!(post[2]["expr"][0]["match"]["left"]["payload"]["protocol"], "ip6");
        for base in
            ["filter-forward", "nat-postrouting", "nat-prerouting", "nat-output", "raw-prerouting", "mark-forward"]
        {
            let jumps: Vec<_> = rules_in(&cmds, base).into_iter().filter(|r| r["comment"] == "nk-net web").collect();
            assert_eq!(jumps.len(), 1, "{base}");
        }
        let pre_jump = rules_in(&cmds, "nat-prerouting")[0];
        assert_eq!(
            pre_jump["expr"],
            json!([
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                {"jump": {"target": "nk-web-pre"}}
            ])
        );
        // The fixed base rules come once, with the base chains.
        assert_eq!(rules_in(&cmds, "filter-forward")[0]["comment"], "nk-base");
        assert_eq!(rules_in(&cmds, "nat-output")[0]["comment"], "nk-base");
    }

    #[test]
    fn setup_on_an_existing_table_adds_only_the_network() {
        let mut state = TableState { exists: true, ..TableState::default() };
        for b in &BASE_CHAINS {
            state.chains.insert(b.name.to_owned());
        }
        let r = rules(true);
        let cmds = render(&setup_network("nook", &state, &r, &NetMeta::of(&r)));
        assert!(cmds.iter().all(|c| c.get("add").is_none_or(|a| a.get("table").is_none() && a.get("chain").is_none())));
        // Internal: the forward chain, two drops, one jump; the mark of traffic within the
        // bridge, one jump.
        let created: Vec<&str> =
            cmds.iter().filter_map(|c| c.get("create")?.get("chain")?.get("name")?.as_str()).collect();
        assert_eq!(created, ["nk-web-fwd", "nk-web-mark"]);
        let fwd = rules_in(&cmds, "nk-web-fwd");
        assert_eq!(fwd.len(), 2);
        assert!(fwd.iter().all(|r| r["expr"].as_array().unwrap().last().unwrap() == &json!({"drop": null})));
        assert_eq!(rules_in(&cmds, "filter-forward").len(), 1);
        let mark = rules_in(&cmds, "nk-web-mark");
        assert_eq!(mark.len(), 1);
        assert_eq!(
            mark[0]["expr"][1],
            json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "nkbr0"}})
        );
        assert_eq!(rules_in(&cmds, "mark-forward").len(), 1);
        assert_eq!(cmds.len(), 7);
    }

    fn port(proto: Protocol, host_ip: Option<&str>, hp: u16, cip: &str, cp: u16) -> PortRule {
        PortRule {
            mapping: PortMapping {
                protocol: proto,
                host_ip: host_ip.map(|h| h.parse().unwrap()),
                host_port: hp,
                container_port: cp,
            },
            container_ip: cip.parse().unwrap(),
        }
    }

    #[test]
    fn ports_render_dnat_rules_tagged_with_the_endpoint() {
        let ports = [
            port(Protocol::Tcp, None, 8080, "10.88.0.2", 80),
            port(Protocol::Udp, Some("fd00::5"), 53, "fd00:88::2", 5353),
        ];
        let cmds = render(&add_ports("nook", "web", "ep1", &ports));
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[0],
            json!({"add": {"rule": {"family": "inet", "table": "nook", "chain": "nk-web-pre",
            "comment": "nk-port ep1 tcp 4 * 8080",
            "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                {"counter": null},
                {"dnat": {"addr": "10.88.0.2", "family": "ip", "port": 80}}
            ]}}})
        );
        let r = &cmds[1]["add"]["rule"];
        assert_eq!(r["comment"], "nk-port ep1 udp 6 fd00::5 53");
        assert_eq!(
            r["expr"][1],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00::5"}})
        );
        assert_eq!(r["expr"][4], json!({"dnat": {"addr": "fd00:88::2", "family": "ip6", "port": 5353}}));
    }

    fn listed(json: Value) -> TableState {
        TableState::parse(&json.to_string()).unwrap()
    }

    fn chain(name: &str) -> Value {
        json!({"chain": {"family": "inet", "table": "nook", "name": name, "handle": 1}})
    }

    fn rule(chain: &str, handle: u32, target: &str) -> Value {
        json!({"rule": {"family": "inet", "table": "nook", "chain": chain, "handle": handle,
                        "expr": [{"jump": {"target": target}}]}})
    }

    #[test]
    fn teardown_removes_jumps_then_chains_or_the_whole_table() {
        let two = listed(json!({"nftables": [
            chain("filter-forward"), chain("nat-postrouting"),
            chain("nk-a-fwd"), chain("nk-a-post"), chain("nk-b-fwd"),
            rule("filter-forward", 10, "nk-a-fwd"), rule("nat-postrouting", 11, "nk-a-post"),
            rule("filter-forward", 12, "nk-b-fwd"),
        ]}));
        let cmds = render(&teardown_network("nook", &two, "a").unwrap());
        assert_eq!(
            cmds,
            vec![
                json!({"delete": {"rule": {"family": "inet", "table": "nook", "chain": "filter-forward", "expr": [], "handle": 10}}}),
                json!({"delete": {"rule": {"family": "inet", "table": "nook", "chain": "nat-postrouting", "expr": [], "handle": 11}}}),
                json!({"delete": {"chain": {"family": "inet", "table": "nook", "name": "nk-a-fwd"}}}),
                json!({"delete": {"chain": {"family": "inet", "table": "nook", "name": "nk-a-post"}}}),
            ]
        );
        // The last network takes the table with it.
        let one = listed(
            json!({"nftables": [chain("filter-forward"), chain("nk-b-fwd"), rule("filter-forward", 12, "nk-b-fwd")]}),
        );
        let cmds = render(&teardown_network("nook", &one, "b").unwrap());
        assert_eq!(cmds, vec![json!({"delete": {"table": {"family": "inet", "name": "nook"}}})]);
        // Unknown network: nothing to do.
        assert!(teardown_network("nook", &two, "c").is_none());
        assert!(teardown_network("nook", &TableState::default(), "a").is_none());
    }

    #[test]
    fn foreign_rules_are_what_iptables_writes() {
        let place = Place { family: "ip".into(), table: "filter".into(), chain: "DOCKER-USER".into() };
        let cmds: Vec<Value> = add_foreign(&place, Some(7), "nkbr0", &[], "nook:web")
            .iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        assert_eq!(
            cmds[0],
            json!({"insert": {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 7,
                "comment": "nook:web", "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "nkbr0"}},
                {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 0x0010_0000]}, "right": 0x0010_0000}},
                {"counter": null},
                {"accept": null}
            ]}}})
        );
        assert_eq!(cmds[1]["insert"]["rule"]["expr"][0]["match"]["left"], json!({"meta": {"key": "oifname"}}));
        let appended = serde_json::to_value(&add_foreign(&place, None, "nkbr0", &[], "nook:web")[0]).unwrap();
        assert!(appended["add"]["rule"].get("handle").is_none(), "{appended}");
        assert_eq!(
            serde_json::to_value(delete_foreign("ip6", "filter", "FORWARD", 9)).unwrap(),
            json!({"delete": {"rule": {"family": "ip6", "table": "filter", "chain": "FORWARD", "expr": [], "handle": 9}}})
        );
    }

    #[test]
    fn delete_rules_by_handle() {
        let cmds = render(&delete_rules("t", &[("nk-a-pre", 7)]));
        assert_eq!(
            cmds,
            vec![
                json!({"delete": {"rule": {"family": "inet", "table": "t", "chain": "nk-a-pre", "expr": [], "handle": 7}}})
            ]
        );
    }
}
