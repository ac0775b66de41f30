//! Issue 19, items 2 and 3: nook networks on hosts where someone else's firewall drops
//! forwarded traffic — a Docker host (iptables-nft's `ip filter` / `ip6 filter` with
//! `FORWARD` policy `drop` and `DOCKER-USER`, Docker's `nat` table, a `docker0`-like bridge,
//! forwarding and `br_netfilter` on), an iptables-nft host without Docker, a default-drop
//! nftables table of some other owner, and firewalld's table.
//!
//! Each test builds its foreign ruleset with `nft -f` in the test's host namespace, in the form
//! iptables-nft writes it (`nft list ruleset` of a real Docker host; the `xt` matches iptables
//! needs for `addrtype` and `MASQUERADE` are written as their native equivalents) — and
//! [`docker_user_rules_keep_the_table_iptables_compatible`] builds it with Docker's own
//! `iptables-nft` commands. Traffic goes from a sandbox through NAT to a server in the
//! "outside" namespace, and from the outside to a published port. Controls make the tests able
//! to fail: without nook's rules the same traffic is dropped, and traffic that is not nook's
//! (a "stray" namespace routed through the host) is dropped before and after. After teardown
//! the whole ruleset, handles included (`nft -a -s list ruleset`: no counters, which traffic
//! changes), is byte for byte what it was.

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use nook_netmodel::firewall::{Blocker, ConflictOwner, FirewallBackend, NetworkRules};
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink, Route};
use nook_netmodel::{EndpointOptions, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;
use nook_testutil::{require_root, skip_unsupported, unique_name};

use crate::common::{
    HOST_IP, HostState, OUTSIDE_IP, PATIENCE, World, listen_in, listen_in_ns, prepare_host, serve_once, talk,
};
use crate::firewall::nft_program;

/// The host's and the outside's IPv6 addresses on the uplink.
const HOST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5e, 0, 0, 0, 0, 0, 1);
const OUTSIDE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5e, 0, 0, 0, 0, 0, 2);

/// The docker0-like bridge.
const DOCKER_BRIDGE: &str = "nkdocker0";

/// How long a connection that should be dropped is given.
const DROPPED: Duration = Duration::from_millis(400);

/// What `iptables-nft` makes of Docker's rules for one bridge (`dockerd` 24-27, iptables
/// 1.8.9; `-m addrtype` and `-j MASQUERADE` are `xt` expressions there, native here).
fn docker_ruleset(bridge: &str) -> String {
    let filter = |family: &str| {
        format!(
            r#"
table {family} filter {{
    chain DOCKER {{
    }}
    chain DOCKER-ISOLATION-STAGE-1 {{
        iifname "{bridge}" oifname != "{bridge}" counter jump DOCKER-ISOLATION-STAGE-2
        counter return
    }}
    chain DOCKER-ISOLATION-STAGE-2 {{
        oifname "{bridge}" counter drop
        counter return
    }}
    chain DOCKER-USER {{
        counter return
    }}
    chain FORWARD {{
        type filter hook forward priority filter; policy drop;
        counter jump DOCKER-USER
        counter jump DOCKER-ISOLATION-STAGE-1
        oifname "{bridge}" ct state related,established counter accept
        oifname "{bridge}" counter jump DOCKER
        iifname "{bridge}" oifname != "{bridge}" counter accept
        iifname "{bridge}" oifname "{bridge}" counter accept
    }}
}}"#
        )
    };
    format!(
        r#"
table ip nat {{
    chain DOCKER {{
        iifname "{bridge}" counter return
    }}
    chain PREROUTING {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local counter jump DOCKER
    }}
    chain OUTPUT {{
        type nat hook output priority -100; policy accept;
        ip daddr != 127.0.0.0/8 fib daddr type local counter jump DOCKER
    }}
    chain POSTROUTING {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname != "{bridge}" ip saddr 172.17.0.0/16 counter masquerade
    }}
}}
{}
{}
"#,
        filter("ip"),
        filter("ip6")
    )
}

/// An iptables-nft host without Docker: `iptables -P FORWARD DROP` (and `ip6tables`), with an
/// admin's rule for some other interface.
const IPTABLES_RULESET: &str = r#"
table ip filter {
    chain FORWARD {
        type filter hook forward priority filter; policy drop;
        iifname "nkadmin0" counter accept
    }
}
table ip6 filter {
    chain FORWARD {
        type filter hook forward priority filter; policy drop;
    }
}
"#;

/// Some other owner's default-drop table.
const SITE_RULESET: &str = r#"
table inet nksite {
    chain fwd_policy {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
    }
}
"#;

/// firewalld's forward chain (firewalld 1.x, nftables backend, trimmed): accept policy, a final
/// reject.
const FIREWALLD_RULESET: &str = r#"
table inet firewalld {
    chain filter_FORWARD {
        type filter hook forward priority filter + 10; policy accept;
        ct state established,related accept
        ct state invalid drop
        iifname "lo" accept
        reject with icmpx admin-prohibited
    }
}
"#;

/// Runs `nft ARGS` in `ns` (feeding `input`); panics on failure.
fn nft_in(ns: &NetNs, args: &[&str], input: Option<&str>) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let input = input.map(str::to_owned);
    let out = ns
        .run(move || {
            let mut child = Command::new(nft_program())
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run nft");
            let mut stdin = child.stdin.take().unwrap();
            if let Some(input) = input {
                stdin.write_all(input.as_bytes()).unwrap();
            }
            drop(stdin);
            child.wait_with_output().unwrap()
        })
        .expect("enter netns");
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The ruleset with handles and without counters: what must come back byte for byte.
fn listing(ns: &NetNs) -> String {
    nft_in(ns, &["-a", "-s", "list", "ruleset"], None)
}

/// Loads `ruleset` into the world's host, which becomes its baseline (what `World` checks
/// is left at the end).
fn load(world: &mut World, ruleset: &str) {
    nft_in(&world.host_ns, &["-f", "-"], Some(ruleset));
    world.baseline_ruleset = world.ruleset();
}

/// Writes a sysctl in the test's host namespace (keys under `/proc/sys/`).
fn set_sysctl(ns: &NetNs, key: &str, value: &str) -> bool {
    let path = format!("/proc/sys/{key}");
    let value = value.to_owned();
    ns.run(move || std::fs::metadata(&path).is_ok() && std::fs::write(&path, value).is_ok()).unwrap()
}

/// A namespace routed through the host that is not nook's: `203.0.113.2` behind a veth whose
/// host end is `203.0.113.1`; the outside routes `203.0.113.0/24` back through the host.
struct Stray {
    ns: NetNs,
    host_link: String,
}

impl Stray {
    fn new(world: &World) -> Stray {
        let (ns, host_link) = namespace_on_veth(world, "str", None, "203.0.113.2/24", "203.0.113.1");
        let mut nl = world.netlink();
        let index = nl.link(&host_link).unwrap().unwrap().index;
        nl.add_address(index, "203.0.113.1/24".parse().unwrap()).unwrap();
        let mut nl = Netlink::open_in(world.outside.ns()).unwrap();
        nl.add_route(&Route::new(Some("203.0.113.0/24".parse().unwrap()), Some(HOST_IP.into()), None))
            .expect("outside route to the stray");
        Stray { ns, host_link }
    }

    /// Whether the stray namespace reaches a server in the outside world within `timeout`.
    fn reaches_outside(&self, world: &World, port: u16, timeout: Duration) -> bool {
        let listener = listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), port));
        let reached = talk_within(self.ns.ns(), SocketAddr::new(OUTSIDE_IP.into(), port), timeout);
        drop(listener);
        reached
    }

    fn remove(self, world: &World) {
        world.delete_link(&self.host_link);
    }
}

/// A new network namespace on a veth pair from the host namespace (the host end up, in
/// `master` if given), with `address` on its end and a default route via `gateway`: returns
/// it and the host end's name.
fn namespace_on_veth(world: &World, tag: &str, master: Option<u32>, address: &str, gateway: &str) -> (NetNs, String) {
    let ns = NetNs::new().expect("netns");
    prepare_host(&ns, HostState::Quiet);
    let host_link = unique_name(&format!("{tag}h"));
    let peer = unique_name(&format!("{tag}p"));
    let mut link = NewLink::new(
        &host_link,
        LinkKind::Veth { peer_name: &peer, peer_netns: Some(ns.ns().as_fd()), peer_mtu: None, peer_mac: None },
    );
    link.up = true;
    link.master = master;
    world.netlink().add_link(&link).expect("veth");
    let mut nl = Netlink::open_in(ns.ns()).unwrap();
    nl.set_up(1).unwrap();
    let index = nl.link(&peer).unwrap().unwrap().index;
    nl.add_address(index, address.parse().unwrap()).unwrap();
    nl.set_up(index).unwrap();
    nl.add_route(&Route::new(None, Some(gateway.parse().unwrap()), Some(index))).unwrap();
    (ns, host_link)
}

/// Whether a TCP connection from `ns` to `addr` is established within `timeout`.
fn talk_within(ns: &nook_ns::NsFd, addr: SocketAddr, timeout: Duration) -> bool {
    crate::common::try_connect(ns, addr, timeout).is_ok()
}

/// Forwarding on, as Docker leaves it (and `br_netfilter`'s switches, where the module is
/// loaded: Docker loads it, so bridged packets cross the IP forward hook). Returns whether
/// `br_netfilter` is there.
fn docker_like_sysctls(world: &World) -> bool {
    assert!(set_sysctl(&world.host_ns, "net/ipv4/ip_forward", "1"));
    assert!(set_sysctl(&world.host_ns, "net/ipv6/conf/all/forwarding", "1"));
    let br = set_sysctl(&world.host_ns, "net/bridge/bridge-nf-call-iptables", "1");
    set_sysctl(&world.host_ns, "net/bridge/bridge-nf-call-ip6tables", "1");
    br
}

/// IPv6 on the uplink: `fd00:5e::1` (host, default route via the outside) and `fd00:5e::2`.
fn uplink_v6(world: &World) {
    let mut nl = world.netlink();
    let index = nl.link(&world.uplink).unwrap().unwrap().index;
    nl.add_address(index, format!("{HOST_IP6}/64").parse().unwrap()).unwrap();
    nl.add_route(&Route::new(None, Some(IpAddr::V6(OUTSIDE_IP6)), Some(index))).unwrap();
    let mut nl = Netlink::open_in(world.outside.ns()).unwrap();
    let peer = nl.links().unwrap().into_iter().find(|l| l.name != "lo").unwrap().index;
    nl.add_address(peer, format!("{OUTSIDE_IP6}/64").parse().unwrap()).unwrap();
}

/// A docker0-like bridge with Docker's gateway address, up.
fn docker_bridge(world: &World) {
    let mut nl = world.netlink();
    let mut link = NewLink::new(DOCKER_BRIDGE, LinkKind::Bridge);
    link.up = true;
    nl.add_link(&link).unwrap();
    let index = nl.link(DOCKER_BRIDGE).unwrap().unwrap().index;
    nl.add_address(index, "172.17.0.1/16".parse().unwrap()).unwrap();
}

fn spec(subnets: &[&str]) -> NetworkSpec {
    let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
    for s in subnets {
        spec.subnet(s.parse().unwrap(), None);
    }
    spec
}

/// The firewall rules of `net`, as the bridge driver asks for them.
fn rules_of(net: &Network) -> NetworkRules {
    let subnets = net.spec().subnets.iter().map(|p| p.subnet).collect();
    NetworkRules::new(net.name().parse().unwrap(), net.bridge().unwrap(), subnets)
}

/// `(handle, text)` of the rules of `family filter CHAIN`, in order.
fn chain_rules(ns: &NetNs, family: &str, chain: &str) -> Vec<(u32, String)> {
    let out = nft_in(ns, &["-a", "-s", "list", "chain", family, "filter", chain], None);
    out.lines()
        .filter_map(|l| {
            let (rule, handle) = l.trim().rsplit_once(" # handle ")?;
            Some((handle.parse().ok()?, rule.to_owned()))
        })
        .filter(|(_, r)| !r.starts_with("chain ") && !r.starts_with("table "))
        .collect()
}

/// Sandbox → outside (v4 and, when `v6`, v6) through NAT; outside → published port 8080.
fn assert_traffic_flows(world: &World, client: &Sandbox, web: &Sandbox, v6: bool) {
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9100)));
    assert_eq!(talk(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9100), "out").unwrap(), "echo: out");
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V4(HOST_IP), "masqueraded to the host's address");
    if v6 {
        let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP6.into(), 9100)));
        assert_eq!(talk(client.netns(), SocketAddr::new(OUTSIDE_IP6.into(), 9100), "out6").unwrap(), "echo: out6");
        assert_eq!(server.join().unwrap().1.ip(), IpAddr::V6(HOST_IP6), "masqueraded to the host's address");
    }
    let listener = listen_in(web, 80);
    let server = serve_once(listener);
    assert_eq!(talk(world.outside.ns(), SocketAddr::new(HOST_IP.into(), 8080), "in").unwrap(), "echo: in");
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V4(OUTSIDE_IP));
    if v6 {
        let listener = web.run(|| std::net::TcpListener::bind("[::]:80")).unwrap().unwrap();
        let server = serve_once(listener);
        assert_eq!(talk(world.outside.ns(), SocketAddr::new(HOST_IP6.into(), 8080), "in6").unwrap(), "echo: in6");
        assert_eq!(server.join().unwrap().1.ip(), IpAddr::V6(OUTSIDE_IP6));
    }
}

fn published(port: u16) -> EndpointOptions {
    let mut opts = EndpointOptions::new();
    opts.port(nook_netmodel::firewall::PortMapping::tcp(port, 80));
    opts
}

#[test]
fn docker_host_lets_nook_networks_through_docker_user() {
    require_root!();
    let mut world = World::new();
    let br_netfilter = docker_like_sysctls(&world);
    uplink_v6(&world);
    docker_bridge(&world);
    let stray = Stray::new(&world);
    assert!(stray.reaches_outside(&world, 9101, PATIENCE), "control: the stray namespace is routed through the host");
    load(&mut world, &docker_ruleset(DOCKER_BRIDGE));
    let before = listing(&world.host_ns);
    assert!(!stray.reaches_outside(&world, 9102, DROPPED), "Docker's FORWARD policy drops what it does not accept");

    let net = Network::create(&world.host, &spec(&["10.89.40.0/24", "fd00:89:40::/64"])).unwrap();
    let bridge = net.bridge().unwrap().to_owned();
    let tag = format!("nook:{}", net.name());
    // Two rules per family in DOCKER-USER, before Docker's return; FORWARD untouched.
    for family in ["ip", "ip6"] {
        let rules = chain_rules(&world.host_ns, family, "DOCKER-USER");
        let texts: Vec<&str> = rules.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                // Not towards Docker's bridge: its containers stay closed but for published ports.
                format!(
                    r#"iifname "{bridge}" oifname != "{DOCKER_BRIDGE}" meta mark & 0x00100000 == 0x00100000 counter accept comment "{tag}""#
                ),
                format!(r#"oifname "{bridge}" meta mark & 0x00100000 == 0x00100000 counter accept comment "{tag}""#),
                "counter return".to_owned(),
            ],
            "{family}"
        );
    }
    assert_eq!(
        chain_rules(&world.host_ns, "ip", "FORWARD"),
        chain_rules_of(&before, "ip", "FORWARD"),
        "nothing but DOCKER-USER changes"
    );
    assert_eq!(net.diagnostics().unwrap(), [], "nothing left to report");

    let mut client = Sandbox::none("client").unwrap();
    let mut web = Sandbox::none("web").unwrap();
    client.connect(&net, &EndpointOptions::new()).unwrap();
    let ep = web.connect(&net, &published(8080)).unwrap();
    assert_traffic_flows(&world, &client, &web, true);
    let web_ip = SocketAddr::new(ep.ipv4().unwrap().into(), 7000);
    if br_netfilter {
        // Bridged between two sandboxes, yet through the IP forward hook (br_netfilter).
        let _l = listen_in(&web, 7000);
        assert!(talk_within(client.netns(), web_ip, Duration::from_secs(5)), "sandboxes on the bridge talk");
    }
    assert!(!stray.reaches_outside(&world, 9103, DROPPED), "nothing is loosened for traffic that is not nook's");

    // Control: without nook's rules in DOCKER-USER the same traffic is dropped, and the
    // network says why.
    for (handle, _) in chain_rules(&world.host_ns, "ip", "DOCKER-USER").into_iter().filter(|(_, t)| t.contains(&tag)) {
        nft_in(&world.host_ns, &["delete", "rule", "ip", "filter", "DOCKER-USER", "handle", &handle.to_string()], None);
    }
    let _l = listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9104));
    assert!(!talk_within(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9104), DROPPED), "dropped by Docker");
    if br_netfilter {
        let _l = listen_in(&web, 7000);
        assert!(!talk_within(client.netns(), web_ip, DROPPED), "bridged traffic dropped by Docker");
    }
    let diagnostics = net.diagnostics().unwrap();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.family.as_str(), d.table.as_str(), d.chain.as_str(), d.hook.as_str(), &d.blocker, d.owner),
        ("ip", "filter", "FORWARD", "forward", &Blocker::PolicyDrop, ConflictOwner::Docker)
    );
    assert!(d.suggested_rule.contains("ip filter DOCKER-USER meta mark and 0x00100000"), "{d}");
    // Setting the network up again puts them back.
    world.host.firewall().setup_network(&rules_of(&net)).unwrap();
    assert_eq!(net.diagnostics().unwrap(), []);
    assert_traffic_flows(&world, &client, &web, false);

    client.remove().unwrap();
    web.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(listing(&world.host_ns), before, "the foreign ruleset is back, byte for byte");
    stray.remove(&world);
    world.delete_link(DOCKER_BRIDGE);
}

/// [`chain_rules`] of a listing.
fn chain_rules_of(listing: &str, family: &str, chain: &str) -> Vec<(u32, String)> {
    let header = format!("table {family} filter {{");
    let table = listing.split(&header).nth(1).expect("table in listing");
    let body = table.split(&format!("chain {chain} {{")).nth(1).expect("chain in listing");
    body.lines()
        .take_while(|l| l.trim() != "}")
        .filter_map(|l| {
            let (rule, handle) = l.trim().rsplit_once(" # handle ")?;
            Some((handle.parse().ok()?, rule.to_owned()))
        })
        .filter(|(_, r)| !r.starts_with("type "))
        .collect()
}

#[test]
fn iptables_host_without_docker_gets_rules_in_forward() {
    require_root!();
    let mut world = World::new();
    docker_like_sysctls(&world);
    let stray = Stray::new(&world);
    load(&mut world, IPTABLES_RULESET);
    let before = listing(&world.host_ns);
    assert!(!stray.reaches_outside(&world, 9111, DROPPED), "the FORWARD policy drops");

    // IPv4 only: nothing goes to ip6 filter.
    let net = Network::create(&world.host, &spec(&["10.89.41.0/24"])).unwrap();
    let tag = format!("nook:{}", net.name());
    let forward = chain_rules(&world.host_ns, "ip", "FORWARD");
    let texts: Vec<&str> = forward.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[0], r#"iifname "nkadmin0" counter accept"#, "after the admin's rules");
    assert!(texts[1..].iter().all(|t| t.ends_with(&format!(r#"counter accept comment "{tag}""#))), "{texts:?}");
    assert!(chain_rules(&world.host_ns, "ip6", "FORWARD").is_empty());
    assert_eq!(net.diagnostics().unwrap(), []);

    let mut client = Sandbox::none("client").unwrap();
    let mut web = Sandbox::none("web").unwrap();
    client.connect(&net, &EndpointOptions::new()).unwrap();
    web.connect(&net, &published(8081)).unwrap();
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9112)));
    assert_eq!(talk(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9112), "out").unwrap(), "echo: out");
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V4(HOST_IP));
    let server = serve_once(listen_in(&web, 80));
    assert_eq!(talk(world.outside.ns(), SocketAddr::new(HOST_IP.into(), 8081), "in").unwrap(), "echo: in");
    server.join().unwrap();
    assert!(!stray.reaches_outside(&world, 9113, DROPPED), "nothing is loosened for traffic that is not nook's");

    client.remove().unwrap();
    web.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(listing(&world.host_ns), before, "the foreign ruleset is back, byte for byte");
    stray.remove(&world);
}

#[test]
fn a_default_drop_table_of_another_owner_gets_a_diagnostic() {
    require_root!();
    let mut world = World::new();
    docker_like_sysctls(&world);
    let stray = Stray::new(&world);
    load(&mut world, SITE_RULESET);
    let before = listing(&world.host_ns);

    let site = || nft_in(&world.host_ns, &["-a", "-s", "list", "table", "inet", "nksite"], None);
    let site_before = site();
    assert!(before.contains(&site_before) && !site_before.contains("mark"), "{site_before}");
    let net = Network::create(&world.host, &spec(&["10.89.42.0/24"])).unwrap();
    assert_eq!(site(), site_before, "nook wrote nothing into the other table");
    let diagnostics = net.diagnostics().unwrap();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.network.as_str(), d.family.as_str(), d.table.as_str(), d.chain.as_str(), d.hook.as_str(), d.priority),
        (net.name(), "inet", "nksite", "fwd_policy", "forward", 0)
    );
    assert_eq!((&d.blocker, d.owner), (&Blocker::PolicyDrop, ConflictOwner::Other));
    assert_eq!(
        d.suggested_rule,
        "nft insert rule inet nksite fwd_policy meta mark and 0x00100000 == 0x00100000 accept"
    );
    let message = d.to_string();
    assert!(
        message.contains("chain fwd_policy of table inet nksite") && message.contains(&d.suggested_rule),
        "{message}"
    );

    let mut client = Sandbox::none("client").unwrap();
    let mut web = Sandbox::none("web").unwrap();
    client.connect(&net, &EndpointOptions::new()).unwrap();
    web.connect(&net, &published(8082)).unwrap();
    // Control: as reported, the other table drops the network's traffic.
    let outside = SocketAddr::new(OUTSIDE_IP.into(), 9121);
    let _l = listen_in_ns(&world.outside, outside);
    assert!(!talk_within(client.netns(), outside, DROPPED), "dropped by the other table");
    let _w = listen_in(&web, 80);
    assert!(!talk_within(world.outside.ns(), SocketAddr::new(HOST_IP.into(), 8082), DROPPED));
    drop((_l, _w));

    // The admin adds the suggested rule: nook's traffic flows, nothing else does.
    let words: Vec<&str> = d.suggested_rule.split_whitespace().collect();
    assert_eq!(words[0], "nft");
    nft_in(&world.host_ns, &words[1..], None);
    let with_admin_rule = site();
    assert_eq!(net.diagnostics().unwrap(), []);
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9122)));
    assert_eq!(talk(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9122), "out").unwrap(), "echo: out");
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V4(HOST_IP));
    let server = serve_once(listen_in(&web, 80));
    assert_eq!(talk(world.outside.ns(), SocketAddr::new(HOST_IP.into(), 8082), "in").unwrap(), "echo: in");
    server.join().unwrap();
    assert!(!stray.reaches_outside(&world, 9123, DROPPED), "the mark is on nook's packets only");

    client.remove().unwrap();
    web.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(site(), with_admin_rule, "the other table as the admin left it");
    // Without the admin's rule, the whole ruleset is what it was, byte for byte.
    let admin_rule = with_admin_rule.lines().find(|l| l.contains("meta mark")).unwrap();
    let handle = admin_rule.rsplit_once("# handle ").unwrap().1.trim();
    nft_in(&world.host_ns, &["delete", "rule", "inet", "nksite", "fwd_policy", "handle", handle], None);
    assert_eq!(listing(&world.host_ns), before);
    stray.remove(&world);
}

#[test]
fn firewalld_is_reported_not_written_to() {
    require_root!();
    let mut world = World::new();
    docker_like_sysctls(&world);
    load(&mut world, FIREWALLD_RULESET);
    let before = listing(&world.host_ns);
    let net = Network::create(&world.host, &spec(&["10.89.43.0/24"])).unwrap();
    let diagnostics = net.diagnostics().unwrap();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.table.as_str(), d.chain.as_str(), d.owner),
        ("firewalld", "filter_FORWARD", ConflictOwner::Firewalld)
    );
    assert!(matches!(d.blocker, Blocker::Rule { .. }), "{d}");
    let bridge = net.bridge().unwrap();
    assert!(d.suggested_rule.contains(&format!("--zone=trusted --add-interface={bridge}")), "{d}");
    let mut client = Sandbox::none("client").unwrap();
    client.connect(&net, &EndpointOptions::new()).unwrap();
    let outside = SocketAddr::new(OUTSIDE_IP.into(), 9131);
    let _l = listen_in_ns(&world.outside, outside);
    assert!(!talk_within(client.netns(), outside, DROPPED), "control: firewalld's reject");
    client.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(listing(&world.host_ns), before);
}

/// Docker's rules made by `iptables-nft` itself (as `dockerd` runs it): nook's rules go into
/// `DOCKER-USER` in a form iptables reads back, so `iptables -S` and Docker's own later
/// `iptables` calls keep working on the table.
#[test]
fn docker_user_rules_keep_the_table_iptables_compatible() {
    require_root!();
    let Some(iptables) =
        ["/usr/sbin/iptables-nft", "/sbin/iptables-nft"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        skip_unsupported(module_path!(), "iptables-nft is not installed (apt-get install iptables)");
        return;
    };
    let ns = NetNs::new().unwrap();
    prepare_host(&ns, HostState::Quiet);
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let argv = args.clone();
        let out = ns.run(move || Command::new(iptables).args(&argv).output().unwrap()).unwrap();
        assert!(out.status.success(), "iptables {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for cmd in [
        "-t nat -N DOCKER",
        "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o nkdocker0 -j MASQUERADE",
        "-N DOCKER",
        "-N DOCKER-USER",
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -o nkdocker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -o nkdocker0 -j DOCKER",
        "-A FORWARD -i nkdocker0 ! -o nkdocker0 -j ACCEPT",
        "-A DOCKER-USER -j RETURN",
    ] {
        run(&cmd.split_whitespace().collect::<Vec<_>>());
    }
    let before = listing(&ns);
    // Both backends: `nft -j`, and netlink (which writes the foreign rules itself).
    let backends: [Box<dyn FirewallBackend>; 2] = [
        Box::new(nook_netmodel::firewall::Nftables::new(Some(ns.ns())).unwrap()),
        Box::new(nook_netmodel::firewall::NftNetlink::new(Some(ns.ns())).unwrap()),
    ];
    for fw in backends {
        fw.setup_network(&crate::firewall::net("web", "nkbr0", &["10.89.44.0/24"], false)).unwrap();
        assert_eq!(
            run(&["-S", "DOCKER-USER"]),
            "-N DOCKER-USER\n\
             -A DOCKER-USER -i nkbr0 ! -o nkdocker0 -m mark --mark 0x100000/0x100000 -m comment --comment \"nook:web\" -j ACCEPT\n\
             -A DOCKER-USER -o nkbr0 -m mark --mark 0x100000/0x100000 -m comment --comment \"nook:web\" -j ACCEPT\n\
             -A DOCKER-USER -j RETURN\n"
        );
        // Docker can still change its table (a container's published port).
        let published = "DOCKER -d 172.17.0.2/32 ! -i nkdocker0 -o nkdocker0 -p tcp -m tcp --dport 80 -j ACCEPT";
        for op in ["-A", "-D"] {
            let args: Vec<&str> = std::iter::once(op).chain(published.split_whitespace()).collect();
            run(&args);
        }
        fw.teardown_network("web").unwrap();
        assert_eq!(run(&["-S", "DOCKER-USER"]), "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n");
        assert_eq!(listing(&ns), before);
    }
}

/// An internal network on a Docker host: its sandboxes talk across the bridge, which
/// `br_netfilter` (loaded by Docker) hands to the IP forward hook — where Docker's `FORWARD`
/// policy drops whatever nook's rules in `DOCKER-USER` do not let through. Its way out stays
/// shut.
#[test]
fn an_internal_network_on_a_docker_host_talks_within_its_bridge() {
    require_root!();
    let mut world = World::new();
    if !docker_like_sysctls(&world) {
        skip_unsupported(module_path!(), "br_netfilter is not loaded: bridged traffic skips the IP hooks");
        return;
    }
    load(&mut world, &docker_ruleset(DOCKER_BRIDGE));
    let before = listing(&world.host_ns);
    let mut spec = spec(&["10.89.45.0/24"]);
    spec.internal(true);
    let net = Network::create(&world.host, &spec).unwrap();
    let tag = format!("nook:{}", net.name());
    let mut a = Sandbox::none("a").unwrap();
    let mut b = Sandbox::none("b").unwrap();
    a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();
    let to_b = SocketAddr::new(eb.ipv4().unwrap().into(), 7000);
    let server = serve_once(listen_in(&b, 7000));
    assert_eq!(talk(a.netns(), to_b, "peer").unwrap(), "echo: peer");
    server.join().unwrap();
    assert_eq!(net.diagnostics().unwrap(), []);
    let _l = listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9141));
    assert!(!talk_within(a.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9141), DROPPED), "internal: no way out");

    // Control: without nook's rules, Docker's policy drops the bridged traffic.
    for (handle, _) in chain_rules(&world.host_ns, "ip", "DOCKER-USER").into_iter().filter(|(_, t)| t.contains(&tag)) {
        nft_in(&world.host_ns, &["delete", "rule", "ip", "filter", "DOCKER-USER", "handle", &handle.to_string()], None);
    }
    let _l = listen_in(&b, 7001);
    assert!(!talk_within(a.netns(), SocketAddr::new(to_b.ip(), 7001), DROPPED), "dropped by Docker");

    a.remove().unwrap();
    b.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(listing(&world.host_ns), before);
}

/// A Docker container's namespace on the docker0-like bridge: 172.17.0.2, routed through
/// Docker's gateway 172.17.0.1.
struct DockerContainer {
    ns: NetNs,
    host_link: String,
}

impl DockerContainer {
    fn new(world: &World) -> DockerContainer {
        let bridge = world.netlink().link(DOCKER_BRIDGE).unwrap().expect("the docker0-like bridge").index;
        let (ns, host_link) = namespace_on_veth(world, "dk", Some(bridge), "172.17.0.2/16", "172.17.0.1");
        DockerContainer { ns, host_link }
    }

    fn remove(self, world: &World) {
        world.delete_link(&self.host_link);
        drop(self.ns);
    }
}

/// Docker keeps a container's unpublished ports closed to forwarded traffic (its `DOCKER`
/// chain accepts only published ones, then `FORWARD`'s policy drops): nook's rules in
/// `DOCKER-USER` let nook's own traffic out, but not past that — a sandbox reaches the outside,
/// not a Docker container's unpublished port.
#[test]
fn docker_containers_unpublished_ports_stay_closed_to_sandboxes() {
    require_root!();
    let mut world = World::new();
    docker_like_sysctls(&world);
    docker_bridge(&world);
    let container = DockerContainer::new(&world);
    load(&mut world, &docker_ruleset(DOCKER_BRIDGE));
    let before = listing(&world.host_ns);
    let unpublished = SocketAddr::new("172.17.0.2".parse().unwrap(), 7777);
    let _listener = listen_in_ns(&container.ns, unpublished);
    // Control: the container listens, and the host itself (not forwarded) reaches it.
    assert!(talk_within(world.host_ns.ns(), unpublished, PATIENCE), "the host reaches the container");

    let net = Network::create(&world.host, &spec(&["10.89.41.0/24"])).unwrap();
    let mut client = Sandbox::none("client").unwrap();
    client.connect(&net, &EndpointOptions::new()).unwrap();
    // Control: nook's traffic does get through Docker's FORWARD chain to the outside.
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9110)));
    assert_eq!(talk(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9110), "out").unwrap(), "echo: out");
    server.join().unwrap();
    assert!(
        !talk_within(client.netns(), unpublished, DROPPED),
        "a sandbox must not reach a Docker container's unpublished port"
    );

    client.remove().unwrap();
    net.remove().unwrap();
    assert_eq!(listing(&world.host_ns), before, "the foreign ruleset is back, byte for byte");
    container.remove(&world);
    world.delete_link(DOCKER_BRIDGE);
}
