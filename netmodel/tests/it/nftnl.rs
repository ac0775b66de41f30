//! The netlink backend ([`NftNetlink`]) against `nft`: the rules it writes are the ones the
//! `nft -j` backend ([`Nftables`]) writes, as `nft -j list ruleset` shows them, and each
//! backend reads, changes and tears down what the other set up.

use nook_netmodel::firewall::{FirewallBackend, FirewallError, NftNetlink, Nftables, Protocol};
use nook_testutil::require_root;
use serde_json::Value;

use crate::firewall::{Machine, host, net, port, ruleset_in, sysctl, text};

/// The objects of table `inet TABLE` in `rs`, without handles and table name.
fn table_objects(rs: &[Value], table: &str) -> Vec<Value> {
    rs.iter()
        .filter(|o| {
            let inner = o.as_object().and_then(|m| m.values().next());
            inner.is_some_and(|v| v["table"] == table || (o.get("table").is_some() && v["name"] == table))
        })
        .map(|o| {
            let mut o = o.clone();
            if let Some(v) = o.as_object_mut().and_then(|m| m.values_mut().next()).and_then(Value::as_object_mut) {
                v.remove("handle");
                if v.contains_key("table") {
                    v.insert("table".into(), "T".into());
                } else {
                    v.insert("name".into(), "T".into());
                }
            }
            o
        })
        .collect()
}

/// Sets up the same three networks and ports with `fw` (`lo` stands in for web's bridge: IPv4
/// mappings on every address set its `route_localnet`).
fn populate(fw: &dyn FirewallBackend) {
    fw.setup_network(&net("web", "lo", &["10.88.0.0/16", "fd00:88::/64"], false)).unwrap();
    fw.setup_network(&net("db", "nkbr1", &["10.89.0.0/20"], true)).unwrap();
    fw.setup_network(&net("odd", "nkbr2", &["10.90.16.0/21", "fd00:90:8000::/49"], false)).unwrap();
    let ports = [
        port(Protocol::Tcp, None, 8080, "10.88.0.2", 80),
        port(Protocol::Udp, Some("127.0.0.1"), 5353, "10.88.0.2", 53),
        port(Protocol::Tcp, Some("fd00::5"), 8443, "fd00:88::2", 443),
        port(Protocol::Tcp, Some("0.0.0.0"), 9000, "10.88.0.3", 9000),
    ];
    fw.add_ports("web", "ep1", &ports[..3]).unwrap();
    fw.add_ports("web", "ep2", &ports[3..]).unwrap();
}

#[test]
fn netlink_rules_list_as_the_nft_backend_writes_them() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, _) = host();
    let mut cli = Nftables::new(Some(ns.ns())).unwrap();
    cli.table_name("nkcli");
    let mut nl = NftNetlink::new(Some(ns.ns())).unwrap();
    nl.table_name("nknl");
    populate(&cli);
    populate(&nl);
    let rs = ruleset_in(Some(&ns));
    let (by_cli, by_nl) = (table_objects(&rs, "nkcli"), table_objects(&rs, "nknl"));
    assert!(by_cli.len() > 40, "{}", text(&ns));
    assert_eq!(by_nl, by_cli, "{}", text(&ns));

    // A port conflict is found in the rules read back over netlink.
    let err = nl.add_ports("web", "ep3", &[port(Protocol::Tcp, Some("10.0.0.9"), 8080, "10.88.0.4", 80)]).unwrap_err();
    assert!(matches!(err, FirewallError::PortConflict { ref holder, .. } if holder == "ep1"), "{err}");
    assert!(matches!(nl.add_ports("nope", "ep3", &[]), Ok(())));
    let err = nl.add_ports("nope", "ep3", &[port(Protocol::Tcp, None, 1, "10.88.0.4", 80)]).unwrap_err();
    assert!(matches!(err, FirewallError::UnknownNetwork { .. }), "{err}");

    // Removal by endpoint and by address, then teardown, alike.
    for fw in [&cli as &dyn FirewallBackend, &nl] {
        fw.remove_ports("web", "ep1").unwrap();
        fw.remove_ports_to("web", &["10.88.0.3".parse().unwrap()]).unwrap();
    }
    let rs = ruleset_in(Some(&ns));
    assert_eq!(table_objects(&rs, "nknl"), table_objects(&rs, "nkcli"), "{}", text(&ns));
    assert!(!text(&ns).contains("nk-port"), "{}", text(&ns));
    for fw in [&cli as &dyn FirewallBackend, &nl] {
        fw.teardown_network("odd").unwrap();
        fw.teardown_network("web").unwrap();
    }
    let rs = ruleset_in(Some(&ns));
    assert_eq!(table_objects(&rs, "nknl"), table_objects(&rs, "nkcli"), "{}", text(&ns));
    for fw in [&cli as &dyn FirewallBackend, &nl] {
        fw.teardown_network("db").unwrap();
    }
    assert!(ruleset_in(Some(&ns)).is_empty(), "{}", text(&ns));
    machine.assert_unchanged();
}

#[test]
fn each_backend_tears_down_what_the_other_set_up() {
    require_root!();
    let machine = Machine::snapshot();
    let (ns, cli) = host();
    let nl = NftNetlink::new(Some(ns.ns())).unwrap();
    for (make, undo) in [(&cli as &dyn FirewallBackend, &nl as &dyn FirewallBackend), (&nl, &cli)] {
        populate(make);
        assert_eq!(sysctl(&ns, "/proc/sys/net/ipv4/ip_forward"), "1");
        // Ports published by one are seen (conflict) and removed by the other.
        let err = undo.add_ports("web", "ep9", &[port(Protocol::Tcp, None, 9000, "10.88.0.9", 1)]).unwrap_err();
        assert!(matches!(err, FirewallError::PortConflict { .. }), "{err}");
        undo.remove_ports("web", "ep2").unwrap();
        undo.add_ports("web", "ep9", &[port(Protocol::Tcp, None, 9000, "10.88.0.9", 1)]).unwrap();
        make.remove_ports("web", "ep9").unwrap();
        assert!(!text(&ns).contains("ep9") && !text(&ns).contains("ep2"), "{}", text(&ns));
        for network in ["web", "db", "odd"] {
            undo.teardown_network(network).unwrap();
        }
        assert!(ruleset_in(Some(&ns)).is_empty(), "{}", text(&ns));
    }
    // Idempotent on an empty namespace.
    nl.teardown_network("web").unwrap();
    nl.remove_ports("web", "ep1").unwrap();
    assert!(nl.conflicts("web").unwrap().is_empty());
    machine.assert_unchanged();
}
