//! The nftables backend against the real kernel and the real `nft`.
//!
//! Every test works inside network namespaces it creates (a `NetNs` plays "the host"); none
//! touches the machine's own namespace, and each checks that the machine's ruleset and
//! forwarding sysctls are the same afterwards. Rules are read back with `nft -j list ruleset`
//! inside the test namespace.
//!
//! A new namespace inherits IPv4 forwarding (and the rest of IPv4's `all`/`default` devconf)
//! from the machine's, so every test namespace is first put in [`HostState::Quiet`]
//! ([`crate::common::prepare_host`]): the forwarding and `route_localnet` values asserted
//! here are ones the test set, whatever the machine has. `unfriendly` runs the key cases on a
//! host with everything turned the other way.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{HostState, prepare_host};
use nook_netmodel::ValidationError;
use nook_netmodel::firewall::{
    FirewallBackend, FirewallError, NetworkRules, Nftables, PortMapping, PortRule, Protocol,
};
use nook_ns::NetNs;
use nook_testutil::require_root;
use serde_json::Value;

pub(crate) fn nft_program() -> PathBuf {
    Nftables::new(None).expect("backend in the current namespace").program().to_owned()
}

/// `nft -j list ruleset` in `ns` (the machine's namespace when `None`: read-only).
pub(crate) fn ruleset_in(ns: Option<&NetNs>) -> Vec<Value> {
    let list = || Command::new(nft_program()).args(["-j", "list", "ruleset"]).output().expect("run nft");
    let out = match ns {
        Some(ns) => ns.run(list).expect("enter netns"),
        None => list(),
    };
    assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft JSON");
    v["nftables"].as_array().expect("nftables array").iter().filter(|o| o.get("metainfo").is_none()).cloned().collect()
}

/// Human-readable ruleset, for assertion messages.
pub(crate) fn text(ns: &NetNs) -> String {
    let out = ns.run(|| Command::new(nft_program()).args(["list", "ruleset"]).output().unwrap()).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn sysctl(ns: &NetNs, path: &str) -> String {
    ns.run(|| std::fs::read_to_string(path)).unwrap().unwrap().trim().to_owned()
}

pub(crate) const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
pub(crate) const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// The machine's own ruleset and forwarding sysctls, to check nothing leaked there.
pub(crate) struct Machine {
    ruleset: Vec<Value>,
    forward: (String, String),
}

impl Machine {
    pub(crate) fn snapshot() -> Machine {
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        Machine { ruleset: ruleset_in(None), forward: (read(IP_FORWARD), read(IP6_FORWARD)) }
    }

    #[track_caller]
    pub(crate) fn assert_unchanged(&self) {
        let now = Machine::snapshot();
        assert_eq!(now.forward, self.forward, "the machine's forwarding sysctls changed");
        assert_eq!(now.ruleset, self.ruleset, "the machine's ruleset changed");
    }
}

pub(crate) fn tables(rs: &[Value]) -> Vec<String> {
    rs.iter()
        .filter_map(|o| Some(format!("{} {}", o["table"]["family"].as_str()?, o["table"]["name"].as_str()?)))
        .collect()
}

pub(crate) fn chains(rs: &[Value], table: &str) -> Vec<String> {
    rs.iter()
        .filter_map(|o| o.get("chain"))
        .filter(|c| c["table"] == table)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// nook's base chains in ruleset `rs`: type, hook, priority and an accept policy each.
pub(crate) fn assert_base_chains(rs: &[Value]) {
    for (name, kind, hook, prio) in [
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
        ("filter-forward", "filter", "forward", 0),
        ("raw-prerouting", "filter", "prerouting", -300),
        ("mark-forward", "filter", "forward", -20),
    ] {
        let c = chain(rs, "nook", name).unwrap();
        assert_eq!((c["type"].as_str(), c["hook"].as_str(), c["prio"].as_i64()), (Some(kind), Some(hook), Some(prio)));
        assert_eq!(c["policy"], "accept", "{name}");
    }
}

pub(crate) fn chain<'a>(rs: &'a [Value], table: &str, name: &str) -> Option<&'a Value> {
    rs.iter().filter_map(|o| o.get("chain")).find(|c| c["table"] == table && c["name"] == name)
}

pub(crate) fn rules<'a>(rs: &'a [Value], table: &str, chain: &str) -> Vec<&'a Value> {
    rs.iter().filter_map(|o| o.get("rule")).filter(|r| r["table"] == table && r["chain"] == chain).collect()
}

pub(crate) fn comments(rs: &[Value], table: &str, chain: &str) -> Vec<String> {
    rules(rs, table, chain).iter().filter_map(|r| r["comment"].as_str().map(str::to_owned)).collect()
}

/// The rule's expressions as compact JSON, for `contains` checks.
pub(crate) fn expr(rule: &Value) -> String {
    rule["expr"].to_string()
}

pub(crate) fn net(name: &str, bridge: &str, subnets: &[&str], internal: bool) -> NetworkRules {
    let mut rules =
        NetworkRules::new(name.parse().unwrap(), bridge, subnets.iter().map(|s| s.parse().unwrap()).collect());
    rules.internal(internal);
    rules
}

pub(crate) fn port(
    protocol: Protocol,
    host_ip: Option<&str>,
    host_port: u16,
    container_ip: &str,
    container_port: u16,
) -> PortRule {
    let mut mapping = PortMapping::new(protocol, host_port, container_port);
    mapping.host_ip = host_ip.map(|h| h.parse().unwrap());
    PortRule::new(mapping, container_ip.parse().unwrap())
}

/// A test namespace playing the host, put in `state`, and a backend acting in it.
pub(crate) fn host_in(state: HostState) -> (NetNs, Nftables) {
    let ns = NetNs::new().expect("new netns");
    prepare_host(&ns, state);
    let fw = Nftables::new(Some(ns.ns())).expect("backend");
    (ns, fw)
}

/// [`host_in`] a [`HostState::Quiet`] host: forwarding and `route_localnet` off, no ruleset.
pub(crate) fn host() -> (NetNs, Nftables) {
    host_in(HostState::Quiet)
}

#[test]
fn setup_creates_the_table_base_chains_and_network_chains() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("0", "0"));
    let web = net("web", "nkbr0", &["10.88.0.0/16", "fd00:88::/64"], false);
    fw.setup_network(&web).unwrap();

    let rs = ruleset_in(Some(&ns));
    assert_eq!(tables(&rs), ["inet nook"], "{}", text(&ns));
    let mut names = chains(&rs, "nook");
    names.sort();
    assert_eq!(
        names,
        [
            "filter-forward",
            "mark-forward",
            "nat-output",
            "nat-postrouting",
            "nat-prerouting",
            "nk-web-fwd",
            "nk-web-mark",
            "nk-web-post",
            "nk-web-pre",
            "nk-web-raw",
            "raw-prerouting"
        ]
    );
    assert_base_chains(&rs);
    // Every base chain jumps into the network, once.
    for (base, target) in [
        ("nat-prerouting", "nk-web-pre"),
        ("nat-output", "nk-web-pre"),
        ("nat-postrouting", "nk-web-post"),
        ("filter-forward", "nk-web-fwd"),
        ("raw-prerouting", "nk-web-raw"),
        ("mark-forward", "nk-web-mark"),
    ] {
        let jumps: Vec<_> = rules(&rs, "nook", base)
            .into_iter()
            .filter(|r| expr(r).contains(&format!("\"target\":\"{target}\"")))
            .collect();
        assert_eq!(jumps.len(), 1, "{base} -> {target}\n{}", text(&ns));
        if base.starts_with("nat-pre") || base == "nat-output" {
            assert!(expr(jumps[0]).contains(r#"{"fib":{"flags":["daddr"],"result":"type"}}"#), "{}", expr(jumps[0]));
        }
    }
    // Masquerade of both subnets leaving through any other interface.
    let post = rules(&rs, "nook", "nk-web-post");
    for (proto, addr, len) in [("ip", "10.88.0.0", 16), ("ip6", "fd00:88::", 64)] {
        let saddr = format!(
            r#"{{"match":{{"left":{{"payload":{{"field":"saddr","protocol":"{proto}"}}}},"op":"==","right":{{"prefix":{{"addr":"{addr}","len":{len}}}}}}}}}"#
        );
        let masq: Vec<_> = post
            .iter()
            .filter(|r| expr(r).contains(&saddr) && expr(r).contains(r#""op":"!=","right":"nkbr0""#))
            .filter(|r| expr(r).contains(r#"{"masquerade":null}"#))
            .collect();
        assert_eq!(masq.len(), 1, "{proto} masquerade\n{}", text(&ns));
    }
    assert!(
        post.iter().any(|r| expr(r).contains(r#""addr":"127.0.0.0","len":8"#) && expr(r).contains("masquerade")),
        "loopback masquerade\n{}",
        text(&ns)
    );
    // Forwarding: established accepted in the base chain; DNAT accepted, the rest dropped.
    let fwd = rules(&rs, "nook", "filter-forward");
    assert!(expr(fwd[0]).contains(r#""right":["established","related"]"#) && expr(fwd[0]).contains("accept"));
    let net_fwd = rules(&rs, "nook", "nk-web-fwd");
    assert!(expr(net_fwd[0]).contains(r#""right":"dnat""#) && expr(net_fwd[0]).contains("accept"));
    assert!(expr(net_fwd[1]).contains("drop"));
    // ip_forward is on in the test namespace, for both families.
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("1", "1"));

    // Setting up the same network again changes nothing; other parameters are refused.
    fw.setup_network(&web).unwrap();
    assert_eq!(ruleset_in(Some(&ns)), rs);
    let other = net("web", "nkbr0", &["10.89.0.0/16"], false);
    let err = fw.setup_network(&other).unwrap_err();
    assert!(matches!(err, FirewallError::NetworkExists { .. }) && err.is_refusal(), "{err}");
    assert_eq!(ruleset_in(Some(&ns)), rs);

    fw.teardown_network("web").unwrap();
    assert!(ruleset_in(Some(&ns)).is_empty(), "{}", text(&ns));
    machine.assert_unchanged();
}

#[test]
fn internal_networks_get_isolation_but_no_nat_or_forwarding() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("0", "0"));
    fw.setup_network(&net("priv", "nkbr1", &["10.90.0.0/24", "fd00:90::/64"], true)).unwrap();
    let rs = ruleset_in(Some(&ns));
    let mut names = chains(&rs, "nook");
    names.retain(|c| c.starts_with("nk-"));
    assert_eq!(names, ["nk-priv-fwd", "nk-priv-mark"], "{}", text(&ns));
    let fwd = rules(&rs, "nook", "nk-priv-fwd");
    assert_eq!(fwd.len(), 2);
    assert!(fwd.iter().all(|r| expr(r).ends_with(r#"{"drop":null}]"#)), "{}", text(&ns));
    assert!(!rs.iter().any(|o| o.to_string().contains("masquerade") || o.to_string().contains("dnat")));
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("0", "0"));

    // No ports on an internal network.
    let err = fw.add_ports("priv", "ep", &[port(Protocol::Tcp, None, 8080, "10.90.0.2", 80)]).unwrap_err();
    assert!(matches!(err, FirewallError::InternalNetwork { .. }), "{err}");
    assert_eq!(ruleset_in(Some(&ns)), rs);
    machine.assert_unchanged();
}

#[test]
fn ip_forward_follows_the_families_of_non_internal_networks() {
    require_root!();
    let (ns, fw) = host();
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("0", "0"));
    fw.setup_network(&net("v6only", "nkbr2", &["fd00:91::/64"], false)).unwrap();
    assert_eq!((sysctl(&ns, IP_FORWARD).as_str(), sysctl(&ns, IP6_FORWARD).as_str()), ("0", "1"));
    fw.setup_network(&net("v4only", "nkbr3", &["10.91.0.0/24"], false)).unwrap();
    assert_eq!(sysctl(&ns, IP_FORWARD), "1");
}

#[test]
fn tearing_down_one_network_leaves_the_other_intact() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    fw.setup_network(&net("a", "nkbra", &["10.92.0.0/24"], false)).unwrap();
    fw.setup_network(&net("b", "nkbrb", &["10.93.0.0/24", "fd00:93::/64"], false)).unwrap();
    fw.setup_network(&net("c", "nkbrc", &["10.94.0.0/24"], true)).unwrap();
    fw.add_ports("a", "ep-a", &[port(Protocol::Tcp, Some("10.0.0.1"), 8080, "10.92.0.2", 80)]).unwrap();
    fw.add_ports("b", "ep-b", &[port(Protocol::Udp, Some("10.0.0.1"), 5353, "10.93.0.2", 53)]).unwrap();

    let before = ruleset_in(Some(&ns));
    let of = |rs: &[Value], net: &str| -> Vec<Value> {
        // Everything of `net`: its chains, their rules, and the jumps into them (handles included).
        rs.iter()
            .filter(|o| {
                let s = o.to_string();
                s.contains(&format!("\"nk-{net}-"))
            })
            .cloned()
            .collect()
    };
    let b_before = of(&before, "b");
    let c_before = of(&before, "c");
    assert!(b_before.len() > 8 && c_before.len() == 7, "{}", text(&ns));

    fw.teardown_network("a").unwrap();
    let after = ruleset_in(Some(&ns));
    assert!(of(&after, "a").is_empty(), "{}", text(&ns));
    assert_eq!(of(&after, "b"), b_before);
    assert_eq!(of(&after, "c"), c_before);
    // Base chains and their fixed rules stay while networks remain.
    assert_eq!(comments(&after, "nook", "filter-forward"), ["nk-base", "nk-net b", "nk-net c"]);

    // Idempotent; unknown networks are fine to tear down.
    fw.teardown_network("a").unwrap();
    fw.teardown_network("never").unwrap();
    assert_eq!(ruleset_in(Some(&ns)), after);

    fw.teardown_network("b").unwrap();
    fw.teardown_network("c").unwrap();
    assert!(ruleset_in(Some(&ns)).is_empty(), "the last network takes the table: {}", text(&ns));
    machine.assert_unchanged();
}

#[test]
fn ports_are_added_and_removed_per_endpoint() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    // `lo` stands in for web's bridge: v4 mappings on every address set its route_localnet.
    fw.setup_network(&net("web", "lo", &["10.95.0.0/24", "fd00:95::/64"], false)).unwrap();
    fw.setup_network(&net("db", "nkbr1", &["10.96.0.0/24"], false)).unwrap();
    let empty_web = rules(&ruleset_in(Some(&ns)), "nook", "nk-web-pre").len();
    assert_eq!(empty_web, 0);

    fw.add_ports(
        "web",
        "ep1",
        &[
            port(Protocol::Tcp, None, 8080, "10.95.0.2", 80),
            port(Protocol::Tcp, None, 8080, "fd00:95::2", 80),
            port(Protocol::Udp, Some("10.0.0.1"), 5353, "10.95.0.2", 53),
        ],
    )
    .unwrap();
    fw.add_ports("web", "ep2", &[port(Protocol::Tcp, Some("fd00::1"), 8443, "fd00:95::3", 443)]).unwrap();
    fw.add_ports("db", "ep3", &[port(Protocol::Tcp, Some("10.0.0.1"), 5432, "10.96.0.2", 5432)]).unwrap();

    let rs = ruleset_in(Some(&ns));
    assert_eq!(
        comments(&rs, "nook", "nk-web-pre"),
        [
            "nk-port ep1 tcp 4 * 8080",
            "nk-port ep1 tcp 6 * 8080",
            "nk-port ep1 udp 4 10.0.0.1 5353",
            "nk-port ep2 tcp 6 fd00::1 8443"
        ]
    );
    let web = rules(&rs, "nook", "nk-web-pre");
    assert!(expr(web[0]).contains(r#"{"dnat":{"addr":"10.95.0.2","family":"ip","port":80}}"#), "{}", expr(web[0]));
    assert!(expr(web[0]).contains(r#""protocol":"tcp"}},"op":"==","right":8080"#), "{}", expr(web[0]));
    assert!(expr(web[1]).contains(r#"{"dnat":{"addr":"fd00:95::2","family":"ip6","port":80}}"#), "{}", expr(web[1]));
    assert!(
        expr(web[2]).contains(r#"{"field":"daddr","protocol":"ip"}},"op":"==","right":"10.0.0.1"}"#),
        "{}",
        expr(web[2])
    );
    assert!(expr(web[2]).contains(r#""protocol":"udp"}},"op":"==","right":5353"#), "{}", expr(web[2]));
    assert_eq!(comments(&rs, "nook", "nk-db-pre"), ["nk-port ep3 tcp 4 10.0.0.1 5432"]);

    // Removing ep1 leaves exactly ep2's rule and the other network's.
    let before_db = rules(&rs, "nook", "nk-db-pre").into_iter().cloned().collect::<Vec<_>>();
    let ep2 = rules(&rs, "nook", "nk-web-pre")[3].clone();
    fw.remove_ports("web", "ep1").unwrap();
    let rs = ruleset_in(Some(&ns));
    assert_eq!(rules(&rs, "nook", "nk-web-pre"), [&ep2]);
    assert_eq!(rules(&rs, "nook", "nk-db-pre").into_iter().cloned().collect::<Vec<_>>(), before_db);

    // Unknown endpoint, unknown network, twice: nothing changes.
    fw.remove_ports("web", "ep1").unwrap();
    fw.remove_ports("web", "nobody").unwrap();
    fw.remove_ports("db", "ep2").unwrap();
    fw.remove_ports("never", "ep2").unwrap();
    assert_eq!(ruleset_in(Some(&ns)), rs);

    // A freed port can be published again, by someone else.
    fw.add_ports("db", "ep4", &[port(Protocol::Tcp, Some("10.0.0.1"), 8080, "10.96.0.3", 80)]).unwrap();
    fw.remove_ports("web", "ep2").unwrap();
    fw.remove_ports("db", "ep3").unwrap();
    fw.remove_ports("db", "ep4").unwrap();
    let rs = ruleset_in(Some(&ns));
    assert!(rules(&rs, "nook", "nk-web-pre").is_empty() && rules(&rs, "nook", "nk-db-pre").is_empty());
    machine.assert_unchanged();
}

#[test]
fn bad_ports_are_refused_with_nothing_applied() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    fw.setup_network(&net("web", "nkbr0", &["10.97.0.0/24"], false)).unwrap();
    fw.setup_network(&net("db", "nkbr1", &["10.98.0.0/24"], false)).unwrap();
    fw.add_ports("web", "ep1", &[port(Protocol::Tcp, Some("10.0.0.1"), 8080, "10.97.0.2", 80)]).unwrap();
    let before = ruleset_in(Some(&ns));

    type Check = fn(&FirewallError) -> bool;
    let cases: Vec<(&str, &str, Vec<PortRule>, Check)> = vec![
        ("web", "ep2", vec![port(Protocol::Tcp, None, 0, "10.97.0.3", 80)], |e| {
            matches!(e, FirewallError::Invalid(ValidationError::PortZero { field: "host_port" }))
        }),
        ("web", "ep2", vec![port(Protocol::Tcp, None, 80, "10.97.0.3", 0)], |e| {
            matches!(e, FirewallError::Invalid(ValidationError::PortZero { field: "container_port" }))
        }),
        // The network has no IPv6 subnet.
        ("web", "ep2", vec![port(Protocol::Tcp, None, 80, "fd00::3", 80)], |e| {
            matches!(e, FirewallError::FamilyNotInNetwork { .. })
        }),
        ("web", "ep2", vec![port(Protocol::Tcp, Some("fd00::1"), 80, "10.97.0.3", 80)], |e| {
            matches!(e, FirewallError::Invalid(ValidationError::Address { field: "host_ip", .. }))
        }),
        // Same protocol, address and port as ep1's; and a wildcard overlapping it, from
        // another network.
        (
            "web",
            "ep2",
            vec![port(Protocol::Tcp, Some("10.0.0.1"), 8080, "10.97.0.3", 80)],
            |e| matches!(e, FirewallError::PortConflict { holder, host_port: 8080, .. } if holder == "ep1"),
        ),
        (
            "db",
            "ep3",
            vec![port(Protocol::Tcp, None, 8080, "10.98.0.3", 80)],
            |e| matches!(e, FirewallError::PortConflict { holder, .. } if holder == "ep1"),
        ),
        // Twice in one request; the valid first one is not applied either.
        (
            "web",
            "ep2",
            vec![port(Protocol::Udp, None, 9000, "10.97.0.3", 80), port(Protocol::Udp, None, 9000, "10.97.0.3", 81)],
            |e| matches!(e, FirewallError::PortConflict { holder, .. } if holder == "ep2"),
        ),
        ("nope", "ep2", vec![port(Protocol::Tcp, None, 80, "10.97.0.3", 80)], |e| {
            matches!(e, FirewallError::UnknownNetwork { .. })
        }),
        ("web", "bad id", vec![port(Protocol::Tcp, None, 80, "10.97.0.3", 80)], |e| {
            matches!(e, FirewallError::Invalid(ValidationError::Name { field: "endpoint", .. }))
        }),
    ];
    for (network, endpoint, ports, check) in cases {
        let err = fw.add_ports(network, endpoint, &ports).unwrap_err();
        assert!(check(&err), "{network} {endpoint} {ports:?}: unexpected {err:?}");
        assert!(err.is_refusal(), "{err}");
        assert_eq!(ruleset_in(Some(&ns)), before, "{err}: something was applied");
    }
    // UDP on the same port as a TCP mapping is no conflict.
    fw.add_ports("web", "ep2", &[port(Protocol::Udp, Some("10.0.0.1"), 8080, "10.97.0.3", 80)]).unwrap();
    machine.assert_unchanged();
}

#[test]
fn route_localnet_is_set_only_while_a_loopback_mapping_needs_it() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    // `lo` stands in for the bridge: it exists in every namespace, and only its sysctl is
    // looked at here (no packets).
    let localnet = "/proc/sys/net/ipv4/conf/lo/route_localnet";
    fw.setup_network(&net("web", "lo", &["10.99.0.0/24", "fd00:99::/64"], false)).unwrap();
    assert_eq!(sysctl(&ns, localnet), "0");
    // Neither a specific address nor IPv6 needs it.
    fw.add_ports("web", "ep1", &[port(Protocol::Tcp, Some("10.0.0.1"), 80, "10.99.0.2", 80)]).unwrap();
    fw.add_ports("web", "ep2", &[port(Protocol::Tcp, None, 81, "fd00:99::2", 80)]).unwrap();
    assert_eq!(sysctl(&ns, localnet), "0");
    // Any address, or 127.x, does.
    fw.add_ports("web", "ep3", &[port(Protocol::Udp, None, 53, "10.99.0.3", 53)]).unwrap();
    assert_eq!(sysctl(&ns, localnet), "1");
    fw.add_ports("web", "ep4", &[port(Protocol::Tcp, Some("127.0.0.1"), 82, "10.99.0.4", 80)]).unwrap();
    fw.remove_ports("web", "ep3").unwrap();
    assert_eq!(sysctl(&ns, localnet), "1", "ep4 still needs it");
    fw.remove_ports("web", "ep4").unwrap();
    assert_eq!(sysctl(&ns, localnet), "0");
    fw.add_ports("web", "ep5", &[port(Protocol::Tcp, Some("0.0.0.0"), 83, "10.99.0.5", 80)]).unwrap();
    assert_eq!(sysctl(&ns, localnet), "1");
    fw.teardown_network("web").unwrap();
    assert_eq!(sysctl(&ns, localnet), "0");
    machine.assert_unchanged();
}

#[test]
fn a_loopback_mapping_on_a_missing_bridge_fails_with_nothing_applied() {
    require_root!();
    let (ns, fw) = host();
    fw.setup_network(&net("web", "nkmissing", &["10.100.0.0/24"], false)).unwrap();
    let before = ruleset_in(Some(&ns));
    let err = fw.add_ports("web", "ep1", &[port(Protocol::Tcp, None, 80, "10.100.0.2", 80)]).unwrap_err();
    match &err {
        FirewallError::Sys { path: Some(path), call: "read", .. } => {
            assert!(path.ends_with("nkmissing/route_localnet"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_refusal());
    assert_eq!(ruleset_in(Some(&ns)), before);
    // Without a loopback address involved, the bridge is not needed.
    fw.add_ports("web", "ep1", &[port(Protocol::Tcp, Some("10.0.0.1"), 80, "10.100.0.2", 80)]).unwrap();
}

#[test]
fn nft_failures_are_typed_with_stderr_and_atomic() {
    require_root!();
    let (ns, fw) = host();
    assert_eq!(sysctl(&ns, IP_FORWARD), "0");
    // Someone left a chain named like one of ours: `create chain` fails, the whole batch with it.
    let out = ns
        .run(|| {
            Command::new(nft_program()).args(["add table inet nook; add chain inet nook nk-web-pre"]).output().unwrap()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = ruleset_in(Some(&ns));
    let err = fw.setup_network(&net("web", "nkbr0", &["10.101.0.0/24"], false)).unwrap_err();
    match &err {
        FirewallError::Nft { op: "setup_network", target, stderr, command, .. } => {
            assert_eq!(target, "web");
            assert_eq!(command, "-j -f -");
            assert!(stderr.contains("File exists"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ruleset_in(Some(&ns)), before, "a failed batch applies nothing");
    assert_eq!(sysctl(&ns, IP_FORWARD), "0");

    let mut missing = Nftables::new(Some(ns.ns())).unwrap();
    missing.nft_program("/nonexistent/nft");
    let err = missing.teardown_network("web").unwrap_err();
    assert!(matches!(&err, FirewallError::NftSpawn { source, .. } if source.kind() == ErrorKind::NotFound), "{err:?}");
}

#[test]
fn a_backend_made_without_a_namespace_acts_where_it_was_made() {
    require_root!();
    let machine = Machine::snapshot();
    let ns = NetNs::new().unwrap();
    prepare_host(&ns, HostState::Quiet);
    let mut fw = ns.run(|| Nftables::new(None)).unwrap().unwrap();
    let table = nook_testutil::unique_name("fw");
    fw.table_name(table.replace(|c: char| !c.is_ascii_alphanumeric(), ""));
    // Called from the test's own thread (in the machine's namespace), it acts in `ns`.
    assert_eq!(sysctl(&ns, IP_FORWARD), "0");
    fw.setup_network(&net("web", "nkbr0", &["10.102.0.0/24"], false)).unwrap();
    assert_eq!(tables(&ruleset_in(Some(&ns))), [format!("inet {}", fw.table())]);
    assert_eq!(sysctl(&ns, IP_FORWARD), "1");
    machine.assert_unchanged();

    let mut bad = Nftables::new(Some(ns.ns())).unwrap();
    bad.table_name("no spaces");
    let err = bad.setup_network(&net("web", "nkbr0", &["10.102.0.0/24"], false)).unwrap_err();
    assert!(matches!(err, FirewallError::Invalid(ValidationError::Name { field: "table", .. })), "{err}");
}

#[test]
fn concurrent_operations_do_not_interleave() {
    require_root!();
    let machine = Machine::snapshot();
    let ns = Arc::new(NetNs::new().unwrap());
    prepare_host(&ns, HostState::Quiet);
    // Eight backends (as if eight processes) set up a network each and race for one port.
    let results: Vec<Result<(), FirewallError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ns = Arc::clone(&ns);
                s.spawn(move || {
                    let fw = Nftables::new(Some(ns.ns())).unwrap();
                    let name = format!("n{i}");
                    fw.setup_network(&net(&name, &format!("nkbr{i}"), &[&format!("10.103.{i}.0/24")], false)).unwrap();
                    let p = port(Protocol::Tcp, Some("10.0.0.1"), 8080, &format!("10.103.{i}.2"), 80);
                    fw.add_ports(&name, &format!("ep{i}"), &[p])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(e, FirewallError::PortConflict { .. }), "{e}");
    }
    let rs = ruleset_in(Some(&ns));
    let mut nets: Vec<String> = chains(&rs, "nook").into_iter().filter(|c| c.ends_with("-fwd")).collect();
    nets.sort();
    assert_eq!(nets, (0..8).map(|i| format!("nk-n{i}-fwd")).collect::<Vec<_>>());
    assert_eq!(comments(&rs, "nook", "filter-forward").len(), 9, "one base rule and eight jumps");
    machine.assert_unchanged();
}

// --- A real packet: DNAT from the host itself, all on loopback inside the test namespace ---

/// One rtnetlink request in the calling thread's namespace, expecting an ACK.
fn rtnl(msg: netlink_packet_route::RouteNetlinkMessage, flags: u16) {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let mut sock = Socket::new(NETLINK_ROUTE).unwrap();
    sock.bind_auto().unwrap();
    sock.connect(&SocketAddr::new(0, 0)).unwrap();
    let mut req = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0).unwrap();
    let mut reply = Vec::with_capacity(8192);
    sock.recv(&mut reply, 0).unwrap();
    let reply = NetlinkMessage::<netlink_packet_route::RouteNetlinkMessage>::deserialize(&reply).unwrap();
    match reply.payload {
        NetlinkPayload::Error(e) => assert!(e.code.is_none(), "rtnetlink: {e:?}"),
        other => panic!("rtnetlink: unexpected {other:?}"),
    }
}

/// Brings `lo` (always index 1 in a new namespace) up and gives it `addrs` (/32).
fn loopback_with(addrs: &[std::net::Ipv4Addr]) {
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::link::{LinkFlags, LinkMessage};
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    let mut link = LinkMessage::default();
    link.header.index = 1;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    rtnl(RouteNetlinkMessage::SetLink(link), 0);
    for a in addrs {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = 32;
        msg.header.index = 1;
        msg.attributes = vec![AddressAttribute::Local(IpAddr::V4(*a)), AddressAttribute::Address(IpAddr::V4(*a))];
        rtnl(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL);
    }
}

#[test]
fn published_ports_forward_real_packets_from_the_host() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, fw) = host();
    let host_ip: std::net::Ipv4Addr = "10.104.0.1".parse().unwrap();
    let container_ip: std::net::Ipv4Addr = "10.104.0.2".parse().unwrap();
    // Both addresses on `lo` of the test namespace: the "container" is a listener on one
    // local address, the published port is on the other. The bridge is only a name here.
    ns.run(|| loopback_with(&[host_ip, container_ip])).unwrap();
    fw.setup_network(&net("web", "nkbr0", &["10.104.0.0/24"], false)).unwrap();
    let (tcp_l, udp_l) = ns
        .run(|| (TcpListener::bind((container_ip, 8000)).unwrap(), UdpSocket::bind((container_ip, 5300)).unwrap()))
        .unwrap();
    let hp = |p| SocketAddr::new(IpAddr::V4(host_ip), p);
    // Nothing published yet: refused.
    let refused = ns.run(|| TcpStream::connect(hp(18000)).map(drop)).unwrap();
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);

    let h = Some("10.104.0.1");
    fw.add_ports(
        "web",
        "ep1",
        &[port(Protocol::Tcp, h, 18000, "10.104.0.2", 8000), port(Protocol::Udp, h, 15300, "10.104.0.2", 5300)],
    )
    .unwrap();
    // TCP: a connection to host_ip:18000 lands on the container's listener.
    let mut client = ns.run(|| TcpStream::connect(hp(18000))).unwrap().unwrap();
    let (mut served, _) = tcp_l.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut got = [0; 4];
    served.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    // UDP alike.
    let sender = ns.run(|| UdpSocket::bind((host_ip, 0)).unwrap()).unwrap();
    sender.send_to(b"dns?", hp(15300)).unwrap();
    udp_l.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0; 16];
    let (n, _) = udp_l.recv_from(&mut buf).expect("the datagram reaches the published UDP port");
    assert_eq!(&buf[..n], b"dns?");
    drop((client, served));

    // Removed: refused again.
    fw.remove_ports("web", "ep1").unwrap();
    let refused = ns.run(|| TcpStream::connect(hp(18000)).map(drop)).unwrap();
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    fw.teardown_network("web").unwrap();
    machine.assert_unchanged();
}

#[test]
fn a_backend_refuses_a_namespace_that_is_not_a_network_namespace() {
    let mnt = nook_ns::NsFd::current(nook_ns::Namespace::Mount).unwrap();
    let err = Nftables::new(Some(&mnt)).unwrap_err();
    assert!(
        matches!(err, FirewallError::Invalid(ValidationError::NotNetNamespace { kind: nook_ns::Namespace::Mount, .. })),
        "{err}"
    );
}
