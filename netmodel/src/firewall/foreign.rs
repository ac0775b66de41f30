//! Other software's tables on the forward hook: what drops nook's traffic, and where nook may
//! let its own packets through.
//!
//! An `accept` in nook's table ends only nook's table: every other base chain on the forward
//! hook still sees the packet, and a `drop` there (a drop policy, or an unconditional `drop` or
//! `reject` rule) is final. So after nook's own chains, each such *blocker* needs a way
//! through for nook's packets, placed by its owner's rules:
//!
//! - **Docker** (iptables-nft: `ip filter` / `ip6 filter`, `FORWARD` jumping to `DOCKER-USER`):
//!   Docker's documented place for its users' rules is `DOCKER-USER`; nook adds its rules there.
//! - **iptables-nft without Docker** (`ip filter` / `ip6 filter` `FORWARD`): nook adds them to
//!   `FORWARD`.
//!
//! Both get, per network, two rules in the form iptables-nft itself writes (so `iptables -S`
//! and Docker keep working on the table): `iifname BRIDGE meta mark & M == M accept` (with
//! `oifname != X` for each of Docker's bridges `X`: Docker's containers stay closed to nook's
//! sandboxes but for their published ports) and `oifname BRIDGE meta mark & M == M accept`,
//! commented `TABLE:NETWORK` (`nook:web`), inserted
//! before the chain's first unconditional verdict (Docker's trailing `return`) or appended —
//! after the rules already there, so the admin's own restrictions still apply. The mark `M`
//! ([`super::FORWARD_MARK`]) is set by nook's own table, before the filter priority, only on
//! packets nook accepts itself: leaving the bridge, replies into it, and published ports. Teardown deletes exactly the
//! rules with the network's comment, by handle.
//!
//! - **firewalld** (`inet firewalld`) rewrites its table on every reload: nook writes nothing
//!   there and reports a [`FirewallConflict`] suggesting the bridge's zone.
//! - **Anything else** (a drop policy in some other table): nook cannot know its owner's
//!   conventions; it reports a [`FirewallConflict`] naming the table and chain and the one rule
//!   that admits every nook network (`meta mark & M == M accept`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::FORWARD_MARK;
use super::conflict::{Blocker, ConflictOwner, FirewallConflict};
use super::render::MARK_PRIORITY;

/// A chain of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub family: String,
    pub table: String,
    pub name: String,
    /// Hook, type, priority and policy, for base chains.
    pub base: Option<BaseInfo>,
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseInfo {
    pub kind: String,
    pub hook: String,
    pub prio: i64,
    pub policy: String,
}

/// A rule of the ruleset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u32,
    pub comment: Option<String>,
    pub expr: Vec<Value>,
}

/// `nft -j list ruleset`, the parts read here.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ruleset {
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
}

/// A foreign chain nook adds its rules to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub family: String,
    pub table: String,
    pub chain: String,
}

/// What to do about one blocker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remedy {
    /// Add nook's rules to this chain.
    Rules(Place),
    /// Report it.
    Report(ConflictOwner),
}

/// A base chain on the forward hook that drops what it does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocking<'a> {
    pub chain: &'a Chain,
    pub blocker: Blocker,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

impl Ruleset {
    /// Parses `nft -j list ruleset` (unknown objects and expressions are kept as they are).
    pub(crate) fn parse(json: &str) -> Result<Ruleset, serde_json::Error> {
        let doc: Value = serde_json::from_str(json)?;
        let mut rs = Ruleset::default();
        let objects = doc.get("nftables").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for o in objects {
            if let Some(c) = o.get("chain") {
                let base = c.get("hook").map(|_| BaseInfo {
                    kind: text(c, "type"),
                    hook: text(c, "hook"),
                    prio: c.get("prio").and_then(Value::as_i64).unwrap_or_default(),
                    policy: text(c, "policy"),
                });
                rs.chains.push(Chain {
                    family: text(c, "family"),
                    table: text(c, "table"),
                    name: text(c, "name"),
                    base,
                });
            } else if let Some(r) = o.get("rule") {
                let handle = r.get("handle").and_then(Value::as_u64).and_then(|h| u32::try_from(h).ok());
                let Some(handle) = handle else { continue };
                rs.rules.push(Rule {
                    family: text(r, "family"),
                    table: text(r, "table"),
                    chain: text(r, "chain"),
                    handle,
                    comment: r.get("comment").and_then(Value::as_str).map(str::to_owned),
                    expr: r.get("expr").and_then(Value::as_array).cloned().unwrap_or_default(),
                });
            }
        }
        Ok(rs)
    }

    fn rules_of<'a>(&'a self, family: &'a str, table: &'a str, chain: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| r.family == family && r.table == table && r.chain == chain)
    }

    fn has_chain(&self, family: &str, table: &str, chain: &str) -> bool {
        self.chains.iter().any(|c| c.family == family && c.table == table && c.name == chain)
    }

    /// The filter base chains on the forward hook of tables other than `inet OWN` that drop
    /// what they do not accept.
    pub(crate) fn blockers(&self, own: &str) -> Vec<Blocking<'_>> {
        // The bridge, netdev and arp families' hooks are other paths (frames, ingress): nook's
        // mark is set on the IP forward hook, and their chains are not read.
        self.chains
            .iter()
            .filter(|c| matches!(c.family.as_str(), "ip" | "ip6" | "inet"))
            .filter(|c| !super::is_own_table(&c.family, &c.table, own))
            .filter_map(|c| {
                let base = c.base.as_ref()?;
                if base.hook != "forward" || base.kind != "filter" {
                    return None;
                }
                if base.policy == "drop" {
                    return Some(Blocking { chain: c, blocker: Blocker::PolicyDrop });
                }
                let rule =
                    self.rules_of(&c.family, &c.table, &c.name).find(|r| final_verdict(&r.expr) == Some(true))?;
                Some(Blocking { chain: c, blocker: Blocker::Rule { handle: rule.handle } })
            })
            .collect()
    }

    /// Where nook's rules go for `blocking`, or who to report it as.
    pub(crate) fn remedy(&self, b: &Blocking<'_>) -> Remedy {
        let c = b.chain;
        if c.family == "inet" && c.table == "firewalld" {
            return Remedy::Report(ConflictOwner::Firewalld);
        }
        if matches!(c.family.as_str(), "ip" | "ip6") && c.table == "filter" && c.name == "FORWARD" {
            let docker = self.has_chain(&c.family, &c.table, DOCKER_USER)
                && self.rules_of(&c.family, &c.table, &c.name).any(|r| jump_target(&r.expr) == Some(DOCKER_USER));
            let chain = if docker { DOCKER_USER } else { "FORWARD" };
            return Remedy::Rules(Place { family: c.family.clone(), table: c.table.clone(), chain: chain.to_owned() });
        }
        Remedy::Report(ConflictOwner::Other)
    }

    /// Docker's bridges in `place`'s table: the interfaces its `FORWARD` chain hands to
    /// Docker's `DOCKER` chain (`oifname X jump DOCKER`). Docker keeps its containers closed
    /// to forwarded traffic there but for published ports, so nook's rule for traffic leaving
    /// its bridge excludes them: a sandbox reaches the outside, and a container's published
    /// ports, as any other host would — not its unpublished ones.
    pub(crate) fn docker_bridges(&self, place: &Place) -> Vec<String> {
        let mut bridges: Vec<String> = self
            .rules_of(&place.family, &place.table, "FORWARD")
            .filter(|r| jump_target(&r.expr) == Some(DOCKER))
            .filter_map(|r| r.expr.iter().find_map(|e| interface_match(e, "oifname")))
            .collect();
        bridges.sort();
        bridges.dedup();
        bridges
    }

    /// The handle of the rule nook's rules go before in `place` (its first unconditional
    /// verdict), or `None` to append.
    pub(crate) fn insert_before(&self, place: &Place) -> Option<u32> {
        self.rules_of(&place.family, &place.table, &place.chain)
            .find(|r| final_verdict(&r.expr).is_some())
            .map(|r| r.handle)
    }

    /// The rules commented `tag`, outside `inet OWN`.
    pub(crate) fn tagged<'a>(&'a self, own: &'a str, tag: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| !(r.family == "inet" && r.table == own) && r.comment.as_deref() == Some(tag))
    }

    /// Whether `place` holds rules commented `tag`.
    pub(crate) fn placed(&self, own: &str, place: &Place, tag: &str) -> bool {
        self.tagged(own, tag).any(|r| r.family == place.family && r.table == place.table && r.chain == place.chain)
    }

    /// Whether the table of `chain` accepts packets carrying nook's mark (the rule a
    /// [`FirewallConflict`] suggests, or an equivalent one).
    pub(crate) fn admits_mark(&self, chain: &Chain) -> bool {
        self.rules
            .iter()
            .filter(|r| r.family == chain.family && r.table == chain.table)
            .any(|r| r.expr.iter().any(|e| e.get("accept").is_some()) && r.expr.iter().any(is_mark_match))
    }

    /// Whether the table of `chain` accepts packets coming from `bridge` (for a chain that runs
    /// before nook's mark is set: the by-interface rules a [`FirewallConflict`] suggests).
    pub(crate) fn admits_bridge(&self, chain: &Chain, bridge: &str) -> bool {
        self.rules.iter().filter(|r| r.family == chain.family && r.table == chain.table).any(|r| {
            r.expr.iter().any(|e| e.get("accept").is_some())
                && r.expr.iter().any(|e| {
                    e.get("match").is_some_and(|m| {
                        m["op"] == "==" && m["left"]["meta"]["key"] == "iifname" && m["right"] == bridge
                    })
                })
        })
    }

    /// The conflicts that still drop `network`'s traffic (bridge `bridge`, families
    /// `families` among `ip` and `ip6`), nook's table being `inet OWN`.
    pub(crate) fn conflicts(
        &self,
        own: &str,
        network: &str,
        bridge: &str,
        tag: &str,
        families: &BTreeSet<&str>,
    ) -> Vec<FirewallConflict> {
        let mut out = Vec::new();
        for b in self.blockers(own) {
            let c = b.chain;
            if matches!(c.family.as_str(), "ip" | "ip6") && !families.contains(c.family.as_str()) {
                continue;
            }
            let base = c.base.as_ref().expect("blockers are base chains");
            let early = base.prio <= i64::from(MARK_PRIORITY);
            if self.admits_mark(c) || (early && self.admits_bridge(c, bridge)) {
                continue;
            }
            // Where the admin's rule goes: nook's place in the table when there is one (nook's
            // rules should be there but are not: someone removed them), else the blocker.
            let (owner, target) = match self.remedy(&b) {
                Remedy::Rules(place) if self.placed(own, &place, tag) => continue,
                Remedy::Rules(place) if place.chain == DOCKER_USER => (ConflictOwner::Docker, place.chain),
                Remedy::Rules(place) => (ConflictOwner::Iptables, place.chain),
                Remedy::Report(owner) => (owner, c.name.clone()),
            };
            let suggested_rule = match owner {
                ConflictOwner::Firewalld => {
                    format!("firewall-cmd --permanent --zone=trusted --add-interface={bridge} && firewall-cmd --reload")
                }
                // A chain that runs before nook's mark is set cannot go by it: by interface,
                // what nook's table accepts.
                _ if early => {
                    let rule = |m: &str| format!("nft insert rule {} {} {target} {m} accept", c.family, c.table);
                    [
                        rule(&format!("oifname \"{bridge}\" ct status dnat")),
                        rule(&format!("oifname \"{bridge}\" ct state established,related")),
                        rule(&format!("iifname \"{bridge}\"")),
                    ]
                    .join(" && ")
                }
                _ => format!(
                    "nft insert rule {} {} {target} meta mark and {FORWARD_MARK:#010x} == {FORWARD_MARK:#010x} accept",
                    c.family, c.table
                ),
            };
            out.push(FirewallConflict {
                network: network.to_owned(),
                family: c.family.clone(),
                table: c.table.clone(),
                chain: c.name.clone(),
                hook: base.hook.clone(),
                priority: base.prio,
                blocker: b.blocker.clone(),
                owner,
                suggested_rule,
            });
        }
        out
    }
}

/// Docker's chain for its users' rules.
pub(crate) const DOCKER_USER: &str = "DOCKER-USER";
/// Docker's chain of what may enter its bridges (published ports).
const DOCKER: &str = "DOCKER";

/// Statements that neither match nor decide.
fn is_passive(e: &Value) -> bool {
    e.get("counter").is_some()
        || e.get("log").is_some()
        || e.get("xt").is_some_and(|x| {
            x.get("type").and_then(Value::as_str) == Some("match")
                && x.get("name").and_then(Value::as_str) == Some("comment")
        })
}

/// For a rule with no match, its verdict: `Some(true)` when it drops (`drop`, `reject`, an
/// iptables `DROP` / `REJECT` target), `Some(false)` for another verdict (`accept`,
/// `return`); `None` for a rule that matches something or has no verdict.
fn final_verdict(expr: &[Value]) -> Option<bool> {
    let (last, rest) = expr.split_last()?;
    if !rest.iter().all(is_passive) {
        return None;
    }
    if last.get("drop").is_some() || last.get("reject").is_some() {
        return Some(true);
    }
    if let Some(xt) = last.get("xt") {
        let target = xt.get("type").and_then(Value::as_str) == Some("target");
        let name = xt.get("name").and_then(Value::as_str).unwrap_or_default();
        return (target && matches!(name, "DROP" | "REJECT")).then_some(true);
    }
    (last.get("accept").is_some() || last.get("return").is_some()).then_some(false)
}

/// `X` of a match `KEY == "X"` (`iifname` / `oifname`).
fn interface_match(e: &Value, key: &str) -> Option<String> {
    let m = e.get("match")?;
    let left_key = m.get("left")?.get("meta")?.get("key")?.as_str()?;
    (left_key == key && m.get("op")?.as_str()? == "==").then(|| m.get("right")?.as_str().map(str::to_owned))?
}

fn jump_target(expr: &[Value]) -> Option<&str> {
    expr.iter().find_map(|e| e.get("jump").or_else(|| e.get("goto"))?.get("target")?.as_str())
}

/// `meta mark & M == M` (or `== M` after a mask including `M`) for nook's mark `M`.
fn is_mark_match(e: &Value) -> bool {
    let Some(m) = e.get("match") else { return false };
    let right = m.get("right").and_then(Value::as_u64);
    let left = m.get("left");
    let is_mark = |v: &Value| v.get("meta").and_then(|m| m.get("key")).and_then(Value::as_str) == Some("mark");
    let mark = u64::from(FORWARD_MARK);
    match (left, right) {
        (Some(l), Some(r)) if m.get("op").and_then(Value::as_str) == Some("==") => {
            if let Some([key, mask]) = l.get("&").and_then(Value::as_array).map(Vec::as_slice) {
                is_mark(key) && mask.as_u64().is_some_and(|k| k & mark == mark) && r & mark == mark
            } else {
                false
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's filter table (as iptables-nft 1.8.9 writes it, trimmed), a firewalld-like table
    /// and some other drop policy.
    const RULESET: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "ip", "name": "filter", "handle": 2}},
        {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 4}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 5, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 20, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}},
        {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 21, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER-USER"}}]}},
        {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 22, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}}, {"counter": null}, {"accept": null}]}},
        {"table": {"family": "ip6", "name": "filter", "handle": 3}},
        {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "ip6", "table": "filter", "chain": "FORWARD", "handle": 2, "expr": [{"counter": null}, {"xt": {"type": "target", "name": "REJECT"}}]}},
        {"table": {"family": "inet", "name": "firewalld", "handle": 4}},
        {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_FORWARD", "handle": 9, "expr": [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}},
        {"table": {"family": "inet", "name": "site", "handle": 5}},
        {"chain": {"family": "inet", "table": "site", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "site", "name": "nat", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
        {"table": {"family": "inet", "name": "early", "handle": 7}},
        {"chain": {"family": "inet", "table": "early", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": -150, "policy": "drop"}},
        {"table": {"family": "bridge", "name": "frames", "handle": 8}},
        {"chain": {"family": "bridge", "table": "frames", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"table": {"family": "inet", "name": "nook", "handle": 6}},
        {"chain": {"family": "inet", "table": "nook", "name": "filter-forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}
    ]}"#;

    #[test]
    fn docker_bridges_are_the_interfaces_forward_hands_to_docker() {
        let rs = Ruleset::parse(
            r#"{"nftables": [
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 1, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"counter": null}, {"jump": {"target": "DOCKER"}}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br-1a2b"}}, {"counter": null}, {"jump": {"target": "DOCKER"}}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"counter": null}, {"accept": null}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth9"}}, {"jump": {"target": "DOCKER"}}]}},
            {"rule": {"family": "ip6", "table": "filter", "chain": "FORWARD", "handle": 1, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"jump": {"target": "DOCKER"}}]}}
        ]}"#,
        )
        .unwrap();
        let place = |family: &str, chain: &str| Place {
            family: family.to_owned(),
            table: "filter".to_owned(),
            chain: chain.to_owned(),
        };
        assert_eq!(rs.docker_bridges(&place("ip", DOCKER_USER)), ["br-1a2b", "docker0"]);
        assert_eq!(rs.docker_bridges(&place("ip6", "FORWARD")), ["docker0"]);
        let none = Ruleset::parse(RULESET).unwrap();
        assert!(none.docker_bridges(&place("ip", DOCKER_USER)).is_empty());
    }

    #[test]
    fn finds_blockers_and_their_remedies() {
        let rs = Ruleset::parse(RULESET).unwrap();
        let blockers = rs.blockers("nook");
        let found: Vec<(String, String, Blocker)> =
            blockers.iter().map(|b| (b.chain.family.clone(), b.chain.table.clone(), b.blocker.clone())).collect();
        assert_eq!(
            found,
            [
                ("ip".into(), "filter".into(), Blocker::PolicyDrop),
                ("ip6".into(), "filter".into(), Blocker::Rule { handle: 2 }),
                ("inet".into(), "firewalld".into(), Blocker::Rule { handle: 9 }),
                ("inet".into(), "site".into(), Blocker::PolicyDrop),
                ("inet".into(), "early".into(), Blocker::PolicyDrop),
            ]
        );
        let place =
            |f: &str, c: &str| Remedy::Rules(Place { family: f.into(), table: "filter".into(), chain: c.into() });
        assert_eq!(rs.remedy(&blockers[0]), place("ip", "DOCKER-USER"));
        assert_eq!(rs.remedy(&blockers[1]), place("ip6", "FORWARD"));
        assert_eq!(rs.remedy(&blockers[2]), Remedy::Report(ConflictOwner::Firewalld));
        assert_eq!(rs.remedy(&blockers[3]), Remedy::Report(ConflictOwner::Other));
        // Before Docker's trailing return; before the ip6 table's final REJECT.
        let Remedy::Rules(p) = rs.remedy(&blockers[0]) else { unreachable!() };
        assert_eq!(rs.insert_before(&p), Some(20));
        let Remedy::Rules(p) = rs.remedy(&blockers[1]) else { unreachable!() };
        assert_eq!(rs.insert_before(&p), Some(2));

        let families = BTreeSet::from(["ip"]);
        let c = rs.conflicts("nook", "web", "nkbr0", "nook:web", &families);
        // ip: nook's rules are missing from DOCKER-USER; ip6 is not the network's family.
        let names: Vec<(&str, &str, ConflictOwner)> =
            c.iter().map(|c| (c.table.as_str(), c.chain.as_str(), c.owner)).collect();
        assert_eq!(
            names,
            [
                ("filter", "FORWARD", ConflictOwner::Docker),
                ("firewalld", "filter_FORWARD", ConflictOwner::Firewalld),
                ("site", "fwd", ConflictOwner::Other),
                ("early", "fwd", ConflictOwner::Other)
            ]
        );
        // Before nook's mark is set: by interface.
        assert_eq!(
            c[3].suggested_rule,
            "nft insert rule inet early fwd oifname \"nkbr0\" ct status dnat accept && \
             nft insert rule inet early fwd oifname \"nkbr0\" ct state established,related accept && \
             nft insert rule inet early fwd iifname \"nkbr0\" accept"
        );
        assert_eq!(
            c[0].suggested_rule,
            "nft insert rule ip filter DOCKER-USER meta mark and 0x00100000 == 0x00100000 accept"
        );
        assert_eq!(c[2].suggested_rule, "nft insert rule inet site fwd meta mark and 0x00100000 == 0x00100000 accept");
        assert!(c[1].suggested_rule.contains("--zone=trusted --add-interface=nkbr0"), "{}", c[1].suggested_rule);
    }

    #[test]
    fn the_suggested_rule_and_nooks_own_rules_admit() {
        let mut doc: Value = serde_json::from_str(RULESET).unwrap();
        let objects = doc["nftables"].as_array_mut().unwrap();
        objects.push(serde_json::json!({"rule": {"family": "inet", "table": "site", "chain": "fwd", "handle": 7,
            "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 1048576]}, "right": 1048576}}, {"accept": null}]}}));
        objects
            .push(serde_json::json!({"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 30,
            "comment": "nook:web", "expr": [{"accept": null}]}}));
        let rs = Ruleset::parse(&doc.to_string()).unwrap();
        let c = rs.conflicts("nook", "web", "nkbr0", "nook:web", &BTreeSet::from(["ip", "ip6"]));
        let left: Vec<&str> = c.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(left, ["filter", "firewalld", "early"], "ip filter admitted; ip6 filter's REJECT still there");
        assert_eq!(c[0].family, "ip6");
        assert_eq!(rs.tagged("nook", "nook:web").map(|r| r.handle).collect::<Vec<_>>(), [30]);
        // The early chain, once it accepts what comes from the bridge.
        let mut doc: Value = serde_json::from_str(&doc.to_string()).unwrap();
        doc["nftables"].as_array_mut().unwrap().push(serde_json::json!({"rule": {"family": "inet", "table": "early",
            "chain": "fwd", "handle": 9, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "nkbr0"}}, {"accept": null}]}}));
        let rs = Ruleset::parse(&doc.to_string()).unwrap();
        let c = rs.conflicts("nook", "web", "nkbr0", "nook:web", &BTreeSet::from(["ip", "ip6"]));
        assert_eq!(c.iter().map(|c| c.table.as_str()).collect::<Vec<_>>(), ["filter", "firewalld"]);
        assert_eq!(rs.tagged("nook", "nook:db").count(), 0);
    }
}
