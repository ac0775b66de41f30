//! The Container Network Model against the real kernel: sandboxes, endpoints and networks in
//! a private host namespace, with real packets. Every test builds its own [`World`] (a host
//! namespace and an outside-world namespace); its drop checks nothing is left behind.
//! The host namespace starts [`crate::common::HostState::Quiet`]; the scenarios with an
//! `_on(World)` form run again on an unfriendly host in `unfriendly`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    HOST_IP, OUTSIDE_IP, PATIENCE, World, eventually, links_of, listen_in, listen_in_ns, serve_once, talk, try_connect,
    udp_ask, udp_echo_once,
};
use nook_netmodel::files::DnsConfig;
use nook_netmodel::firewall::{FirewallBackend, FirewallError, NetworkRules, Nftables, PortMapping, PortRule};
use nook_netmodel::netlink::{Netlink, Route, write_sysctl};
use nook_netmodel::{
    EndpointOptions, Error, Host, Network, NetworkMode, NetworkSpec, Sandbox, SandboxKind, ValidationError,
};
use nook_testutil::{TempDir, require_root, unique_name};

fn bridge_spec(subnet: &str) -> NetworkSpec {
    let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
    spec.subnet(subnet.parse().unwrap(), None);
    spec
}

fn v4(ep: &nook_netmodel::Endpoint) -> Ipv4Addr {
    ep.ipv4().expect("an IPv4 address")
}

fn tcp(protocol_port: u16, container_port: u16) -> PortMapping {
    PortMapping::tcp(protocol_port, container_port)
}

#[test]
fn two_sandboxes_on_one_bridge_talk_tcp() {
    require_root!();
    two_sandboxes_on_one_bridge_talk_tcp_on(&World::new());
}

/// [`two_sandboxes_on_one_bridge_talk_tcp`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn two_sandboxes_on_one_bridge_talk_tcp_on(world: &World) {
    let net = Network::create(&world.host, &bridge_spec("10.89.1.0/24")).unwrap();
    let mut a = Sandbox::none("alpha").unwrap();
    let mut b = Sandbox::none("beta").unwrap();
    let ea = a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(ea.ifname, "eth0");
    assert_ne!(v4(&ea), v4(&eb));
    assert!(net.spec().subnets[0].subnet.contains(&IpAddr::V4(v4(&ea))));

    let server = serve_once(listen_in(&b, 7000));
    let answer = talk(a.netns(), SocketAddr::new(v4(&eb).into(), 7000), "hello beta").unwrap();
    assert_eq!(answer, "echo: hello beta");
    let (got, peer) = server.join().unwrap();
    assert_eq!(got, "hello beta");
    assert_eq!(peer.ip(), IpAddr::V4(v4(&ea)), "same bridge: no NAT between sandboxes");

    // The veth host ends are on the bridge.
    let mut nl = world.netlink();
    let bridge = nl.link(net.bridge().unwrap()).unwrap().expect("bridge");
    for ep in [&ea, &eb] {
        let host_end = nl.link(ep.host_ifname.as_deref().unwrap()).unwrap().expect("host end");
        assert_eq!(host_end.master, Some(bridge.index));
        assert!(host_end.up);
    }
    a.remove().unwrap();
    b.remove().unwrap();
    net.remove().unwrap();
}

#[test]
fn sandbox_reaches_its_gateway() {
    require_root!();
    sandbox_reaches_its_gateway_on(&World::new());
}

/// [`sandbox_reaches_its_gateway`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn sandbox_reaches_its_gateway_on(world: &World) {
    let net = Network::create(&world.host, &bridge_spec("10.89.2.0/24")).unwrap();
    let gateway = net.gateways()[0];
    assert_eq!(gateway, "10.89.2.1".parse::<IpAddr>().unwrap());
    let mut s = Sandbox::none("gw").unwrap();
    let ep = s.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(ep.gateways, [gateway]);

    let server = serve_once(listen_in_ns(&world.host_ns, SocketAddr::new(gateway, 7001)));
    assert_eq!(talk(s.netns(), SocketAddr::new(gateway, 7001), "hi gw").unwrap(), "echo: hi gw");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(v4(&ep)));

    // The sandbox's default route goes through the gateway.
    let routes = Netlink::open_in(s.netns()).unwrap().routes(false).unwrap();
    assert!(routes.iter().any(|r| r.destination.is_none() && r.gateway == Some(gateway)), "{routes:?}");
    drop(s);
    drop(net);
}

#[test]
fn published_tcp_port_reaches_the_sandbox() {
    require_root!();
    published_tcp_port_reaches_the_sandbox_on(&World::new());
}

/// [`published_tcp_port_reaches_the_sandbox`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn published_tcp_port_reaches_the_sandbox_on(world: &World) {
    let net = Network::create(&world.host, &bridge_spec("10.89.3.0/24")).unwrap();
    let mut s = Sandbox::none("web").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8080, 80));
    let ep = s.connect(&net, &opts).unwrap();
    assert_eq!(ep.ports, [tcp(8080, 80)]);
    let listener = listen_in(&s, 80);
    let published = SocketAddr::new(HOST_IP.into(), 8080);

    // From the outside world, to the host's address.
    let server = serve_once(listener.try_clone().unwrap());
    assert_eq!(talk(world.outside.ns(), published, "from outside").unwrap(), "echo: from outside");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(OUTSIDE_IP), "DNAT keeps the client's address");

    // From the host namespace itself, to its own address.
    let server = serve_once(listener);
    assert_eq!(talk(world.host_ns.ns(), published, "from host").unwrap(), "echo: from host");
    server.join().unwrap();

    s.remove().unwrap();
    // The rule is gone with the endpoint: nothing answers any more.
    assert!(try_connect(world.outside.ns(), published, Duration::from_millis(300)).is_err());
    net.remove().unwrap();
}

#[test]
fn published_udp_port_reaches_the_sandbox() {
    require_root!();
    published_udp_port_reaches_the_sandbox_on(&World::new());
}

/// [`published_udp_port_reaches_the_sandbox`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn published_udp_port_reaches_the_sandbox_on(world: &World) {
    let net = Network::create(&world.host, &bridge_spec("10.89.4.0/24")).unwrap();
    let mut s = Sandbox::none("dns").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(PortMapping::udp(5353, 53).host_ip(HOST_IP.into()).clone());
    s.connect(&net, &opts).unwrap();
    let server = udp_echo_once(s.netns(), 53);
    let answer = udp_ask(world.outside.ns(), SocketAddr::new(HOST_IP.into(), 5353), "query").unwrap();
    assert_eq!(answer, "echo: query");
    let (got, from) = server.join().unwrap();
    assert_eq!(got, "query");
    assert_eq!(from.ip(), IpAddr::V4(OUTSIDE_IP));
    drop(s);
    drop(net);
}

#[test]
fn outbound_traffic_is_masqueraded() {
    require_root!();
    outbound_traffic_is_masqueraded_on(&World::new());
}

/// [`outbound_traffic_is_masqueraded`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn outbound_traffic_is_masqueraded_on(world: &World) {
    let net = Network::create(&world.host, &bridge_spec("10.89.5.0/24")).unwrap();
    let mut s = Sandbox::none("client").unwrap();
    s.connect(&net, &EndpointOptions::new()).unwrap();
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9000)));
    let answer = talk(s.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9000), "out").unwrap();
    assert_eq!(answer, "echo: out");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(HOST_IP), "the outside sees the host's address");
    s.remove().unwrap();
    net.remove().unwrap();
}

#[test]
fn internal_network_has_no_way_out() {
    require_root!();
    internal_network_has_no_way_out_on(&World::new());
}

/// [`internal_network_has_no_way_out`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn internal_network_has_no_way_out_on(world: &World) {
    let mut spec = bridge_spec("10.89.6.0/24");
    spec.internal(true);
    let net = Network::create(&world.host, &spec).unwrap();
    let mut a = Sandbox::none("in1").unwrap();
    let mut b = Sandbox::none("in2").unwrap();
    a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();

    // Something listens outside: only the network's isolation can stop the connection.
    let listener = listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9001));
    let out = try_connect(a.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9001), Duration::from_millis(300));
    assert!(out.is_err(), "an internal network must not reach the outside");
    let routes = Netlink::open_in(a.netns()).unwrap().routes(false).unwrap();
    assert!(routes.iter().all(|r| r.destination.is_some()), "no default route: {routes:?}");

    // Not even with a route: the sandbox sends through the gateway (which answers it), the
    // outside world routes the subnet back to the host. On a host with forwarding on, only
    // the network's drop rules stand in the way.
    let gateway = net.gateways()[0];
    let server = serve_once(listen_in_ns(&world.host_ns, SocketAddr::new(gateway, 7003)));
    assert_eq!(talk(a.netns(), SocketAddr::new(gateway, 7003), "gw").unwrap(), "echo: gw");
    server.join().unwrap();
    let outside_net = format!("{OUTSIDE_IP}/32").parse().unwrap();
    Netlink::open_in(a.netns()).unwrap().add_route(&Route::new(Some(outside_net), Some(gateway), None)).unwrap();
    let subnet = net.spec().subnets[0].subnet;
    Netlink::open_in(world.outside.ns())
        .unwrap()
        .add_route(&Route::new(Some(subnet), Some(HOST_IP.into()), None))
        .unwrap();
    let out = try_connect(a.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9001), Duration::from_millis(300));
    assert!(out.is_err(), "an internal network must not reach the outside, even routed there");

    // Inside the network, sandboxes still talk.
    let server = serve_once(listen_in(&b, 7002));
    assert_eq!(talk(a.netns(), SocketAddr::new(v4(&eb).into(), 7002), "inside").unwrap(), "echo: inside");
    server.join().unwrap();

    // Ports cannot be published on it.
    let mut c = Sandbox::none("in3").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8081, 80));
    assert!(matches!(c.connect(&net, &opts), Err(Error::PortsUnsupported { .. })));

    // Control: with forwarding on and nook's table gone, the same connection goes through —
    // it was the network's rules that stopped it, not the test's plumbing.
    write_sysctl(Some(world.host_ns.ns()), "net/ipv4/ip_forward", "1").unwrap();
    let out = world
        .host_ns
        .run(|| std::process::Command::new("nft").args(["delete", "table", "inet", "nook"]).output())
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let control = SocketAddr::new(OUTSIDE_IP.into(), 9001);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match try_connect(a.netns(), control, Duration::from_secs(1)) {
            Ok(()) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the control connection: {e}; ip_forward {}, ruleset {:?}",
                world.sysctl("net/ipv4/ip_forward"),
                world.ruleset()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The listener closed while the path still exists: its reset reaches the sandbox's
    // closed socket, which would otherwise wait in FIN-WAIT-2 (tcp_fin_timeout, 60 s) for a
    // peer it can no longer reach once the bridge is gone — keeping the sandbox's namespace,
    // and so its veth in the host, alive that long (the test's leak check then failed).
    drop(listener);
    drop((a, b, c));
    net.remove().unwrap();
}

#[test]
fn macvlan_endpoints_on_one_parent_talk() {
    require_root!();
    let world = World::new();
    let parent = world.add_parent();
    let mut spec = NetworkSpec::macvlan(unique_name("mv").parse().unwrap(), &parent);
    spec.subnet("192.0.2.0/24".parse().unwrap(), None);
    let net = Network::create(&world.host, &spec).unwrap();
    let mut a = Sandbox::none("mv1").unwrap();
    let mut b = Sandbox::none("mv2").unwrap();
    let ea = a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(ea.host_ifname, None);

    // The links are macvlans, created in the sandboxes, none in the host.
    let mut nl = Netlink::open_in(a.netns()).unwrap();
    let link = nl.link("eth0").unwrap().expect("eth0 in the sandbox");
    assert_eq!(link.kind.as_deref(), Some("macvlan"));
    assert!(link.up);
    let host_links = world.snapshot().links;
    assert!(host_links.values().all(|(_, _, master)| master.is_none()), "no bridge: {host_links:?}");
    assert!(!host_links.keys().any(|n| n == "eth0"), "{host_links:?}");

    let server = serve_once(listen_in(&b, 7003));
    assert_eq!(talk(a.netns(), SocketAddr::new(v4(&eb).into(), 7003), "mv").unwrap(), "echo: mv");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(v4(&ea)));
    drop((a, b));
    net.remove().unwrap();
    world.delete_link(&parent);
}

#[test]
fn container_mode_shares_the_namespace() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.7.0/24")).unwrap();
    let mut owner = Sandbox::none("owner").unwrap();
    owner.connect(&net, &EndpointOptions::new()).unwrap();
    let joined = Sandbox::new("ignored", NetworkMode::Container(&owner)).unwrap();
    assert_eq!(joined.kind(), SandboxKind::Container);
    assert_eq!(joined.netns().id().unwrap(), owner.netns().id().unwrap());
    assert_eq!(links_of(joined.netns()), links_of(owner.netns()));
    assert_eq!(joined.endpoints(), owner.endpoints());
    assert_eq!(joined.hostname(), "owner");
    assert_eq!(joined.hosts_file().unwrap(), owner.hosts_file().unwrap());

    let mut joined = joined;
    assert!(matches!(
        joined.connect(&net, &EndpointOptions::new()),
        Err(Error::ModeUnsupported { mode: "container", .. })
    ));

    // The owner goes first: its endpoint is down in the shared namespace at once, and
    // deleted on a background thread.
    owner.remove().unwrap();
    let links = links_of(joined.netns());
    assert!(links.iter().all(|(n, up)| n == "lo" || !*up), "{links:?}");
    eventually(
        || links_of(joined.netns()).into_iter().map(|(n, _)| n).collect::<Vec<_>>() == ["lo"],
        "the owner's eth0 deleted",
    );
    assert!(joined.endpoints().is_empty());
    drop(joined);
    net.remove().unwrap();
}

#[test]
fn none_mode_has_only_lo_and_it_is_up() {
    require_root!();
    let _world = World::new();
    let s = Sandbox::new("lonely", NetworkMode::None).unwrap();
    assert_eq!(s.kind(), SandboxKind::Private);
    assert_eq!(links_of(s.netns()), [("lo".to_owned(), true)]);
    // lo works.
    let server = serve_once(listen_in(&s, 7004));
    assert_eq!(talk(s.netns(), "127.0.0.1:7004".parse().unwrap(), "lo").unwrap(), "echo: lo");
    server.join().unwrap();
    s.remove().unwrap();
}

#[test]
fn host_mode_is_the_host_namespace() {
    require_root!();
    let world = World::new();
    let s = Sandbox::new("ignored", NetworkMode::Host(&world.host)).unwrap();
    assert_eq!(s.kind(), SandboxKind::Host);
    assert_eq!(s.netns().id().unwrap(), world.host_ns.ns().id().unwrap());
    let net = Network::create(&world.host, &bridge_spec("10.89.8.0/24")).unwrap();
    let mut s = s;
    assert!(matches!(s.connect(&net, &EndpointOptions::new()), Err(Error::ModeUnsupported { mode: "host", .. })));
    s.remove().unwrap();
    // Removing a host-mode sandbox leaves the host alone.
    assert!(world.netlink().link(&world.uplink).unwrap().is_some());
    net.remove().unwrap();
}

#[test]
fn static_ip_is_honored() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.9.0/24")).unwrap();
    let mut s = Sandbox::none("fixed").unwrap();
    let mut opts = EndpointOptions::new();
    opts.static_ip("10.89.9.77".parse().unwrap()).ifname("lan0").mac([0x02, 0x42, 0, 0, 0, 0x77]);
    let ep = s.connect(&net, &opts).unwrap();
    assert_eq!(v4(&ep), Ipv4Addr::new(10, 89, 9, 77));
    assert_eq!(ep.ifname, "lan0");
    assert_eq!(ep.mac, Some([0x02, 0x42, 0, 0, 0, 0x77]));
    let mut nl = Netlink::open_in(s.netns()).unwrap();
    let link = nl.link("lan0").unwrap().expect("lan0");
    assert_eq!(link.mac, Some([0x02, 0x42, 0, 0, 0, 0x77]));
    let addrs = nl.addresses(link.index).unwrap();
    assert!(addrs.contains(&"10.89.9.77/24".parse().unwrap()), "{addrs:?}");

    // The same address for another sandbox is refused, with nothing changed.
    let mut t = Sandbox::none("clash").unwrap();
    let before = world.snapshot();
    let err = t.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::Ipam(_)), "{err}");
    assert_eq!(world.snapshot(), before);
    assert_eq!(links_of(t.netns()), [("lo".to_owned(), true)]);
    drop((s, t));
    net.remove().unwrap();
}

#[test]
fn invalid_requests_fail_typed_and_change_nothing() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.10.0/24")).unwrap();
    let mut s = Sandbox::none("err").unwrap();
    let before = world.snapshot();
    let sandbox_links = links_of(s.netns());

    // Overlapping another network's subnet.
    let err = Network::create(&world.host, &bridge_spec("10.89.10.128/25")).unwrap_err();
    assert!(matches!(err, Error::Ipam(_)), "{err}");
    assert_eq!(world.snapshot(), before);

    // A gateway outside its subnet.
    let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
    spec.subnet("10.89.11.0/24".parse().unwrap(), Some("10.89.12.1".parse().unwrap()));
    let err = Network::create(&world.host, &spec).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::GatewayOutsideSubnet { .. })), "{err}");
    assert_eq!(world.snapshot(), before);

    // An invalid CIDR (host bits set).
    let err = Network::create(&world.host, &bridge_spec("10.89.11.1/24")).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::HostBits { .. })), "{err}");
    assert_eq!(world.snapshot(), before);

    // A missing macvlan parent.
    let mut spec = NetworkSpec::macvlan(unique_name("mv").parse().unwrap(), "nknoparent0");
    spec.subnet("10.89.13.0/24".parse().unwrap(), None);
    let err = Network::create(&world.host, &spec).unwrap_err();
    assert!(matches!(&err, Error::UnknownParent { parent, .. } if parent == "nknoparent0"), "{err}");
    assert_eq!(world.snapshot(), before);

    // A bridge name already taken.
    let mut spec = bridge_spec("10.89.14.0/24");
    spec.bridge_name(world.uplink.clone());
    let err = Network::create(&world.host, &spec).unwrap_err();
    assert!(matches!(err, Error::LinkExists { .. }), "{err}");
    assert_eq!(world.snapshot(), before);

    // A bad port.
    let mut opts = EndpointOptions::new();
    opts.port(tcp(0, 80));
    let err = s.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::PortZero { field: "host_port" })), "{err}");
    // A static address outside the subnet.
    let mut opts = EndpointOptions::new();
    opts.static_ip("10.1.1.1".parse().unwrap());
    let err = s.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::Address { field: "ip", .. })), "{err}");
    assert_eq!(world.snapshot(), before);
    assert_eq!(links_of(s.netns()), sandbox_links);

    // The same host port twice.
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8082, 80));
    s.connect(&net, &opts).unwrap();
    let mut t = Sandbox::none("err2").unwrap();
    let before = world.snapshot();
    let err = t.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::PortInUse { host_port: 8082, .. }), "{err}");
    assert_eq!(world.snapshot(), before);
    // Twice the same network.
    let err = s.connect(&net, &EndpointOptions::new()).unwrap_err();
    assert!(matches!(err, Error::AlreadyConnected { .. }), "{err}");
    drop((s, t));
    net.remove().unwrap();
}

/// nftables, except that publishing ports is refused (after the endpoint's link, addresses and
/// routes are in place: the last step of a connect); counts the calls to remove ports.
#[derive(Debug)]
struct PortsFail(Nftables, std::sync::atomic::AtomicUsize);

impl FirewallBackend for PortsFail {
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        self.0.setup_network(rules)
    }
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        self.0.teardown_network(network)
    }
    fn add_ports(&self, _network: &str, _endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError> {
        let _ = ports;
        Err(FirewallError::Invalid(ValidationError::PortZero { field: "test" }))
    }
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.remove_ports(network, endpoint)
    }
}

#[test]
fn a_failure_late_in_connect_undoes_everything() {
    require_root!();
    let world = World::new();
    let failing = Arc::new(PortsFail(Nftables::new(Some(world.host_ns.ns())).unwrap(), Default::default()));
    let host = Host::builder()
        .netns(world.host_ns.ns())
        .ipam_dir(world.state.path())
        .firewall(failing.clone())
        .build()
        .unwrap();
    let mut spec = bridge_spec("10.89.21.0/24");
    spec.subnet("fd00:89:21::/64".parse().unwrap(), None);
    let net = Network::create(&host, &spec).unwrap();
    let mut s = Sandbox::none("late").unwrap();
    let before = world.snapshot();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8083, 80));
    let err = s.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::PortZero { field: "test" })), "{err}");
    // A refusal changed nothing: there is nothing to unpublish.
    assert_eq!(failing.1.load(std::sync::atomic::Ordering::Relaxed), 0, "a refusal is not undone");
    assert!(s.endpoints().is_empty());
    assert!(net.endpoints().is_empty());
    // The sandbox side is down at once (unreachable), and deleted on a background thread.
    let up: Vec<_> = links_of(s.netns()).into_iter().filter(|(_, up)| *up).collect();
    assert_eq!(up, [("lo".to_owned(), true)], "only lo is up in the sandbox at once");
    crate::common::eventually(|| links_of(s.netns()) == [("lo".to_owned(), true)], "the sandbox side is gone");
    // The addresses went back (IPAM's cursor moved on: its file changed) ...
    assert!(world.host.ipam().allocations(net.name()).unwrap().is_empty());
    // ... and the host end goes with the deleted pair (on a background thread).
    crate::common::eventually(
        || {
            let now = world.snapshot();
            now.links == before.links && now.ruleset == before.ruleset
        },
        "the host is as before",
    );
    // Without ports the same connect works.
    s.connect(&net, &EndpointOptions::new()).unwrap();
    drop(s);
    net.remove().unwrap();
}

#[test]
fn hosts_and_resolv_conf_list_the_peers() {
    require_root!();
    let world = World::new();
    // Without the embedded DNS server (which answers for the peers instead: see `dns.rs`).
    let host = nook_netmodel::Host::builder()
        .netns(world.host_ns.ns())
        .ipam_dir(world.state.path())
        .embedded_dns(false)
        .build()
        .unwrap();
    let net = Network::create(&host, &bridge_spec("10.89.15.0/24")).unwrap();
    let mut web = Sandbox::none("web").unwrap();
    let mut db = Sandbox::none("db").unwrap();
    let eweb = web.connect(&net, &EndpointOptions::new()).unwrap();
    let mut opts = EndpointOptions::new();
    opts.alias("database");
    let edb = db.connect(&net, &opts).unwrap();

    let hosts = web.hosts_file().unwrap();
    let line_of =
        |ip: Ipv4Addr| hosts.lines().find(|l| l.split_whitespace().next() == Some(&ip.to_string())).map(str::to_owned);
    let own = line_of(v4(&eweb)).unwrap_or_else(|| panic!("own address missing:\n{hosts}"));
    assert!(own.split_whitespace().any(|n| n == "web"), "{hosts}");
    let peer = line_of(v4(&edb)).unwrap_or_else(|| panic!("peer missing:\n{hosts}"));
    assert!(peer.split_whitespace().any(|n| n == "db"), "{hosts}");
    assert!(peer.split_whitespace().any(|n| n == "database"), "{hosts}");
    assert!(hosts.contains("localhost"), "{hosts}");

    // A sandbox on no network sees no peer.
    let alone = Sandbox::none("alone").unwrap();
    assert!(!alone.hosts_file().unwrap().contains(&v4(&edb).to_string()));

    let mut dns = DnsConfig::default();
    dns.nameservers = vec![IpAddr::V4(OUTSIDE_IP)];
    dns.search = vec!["example.test".into()];
    dns.options = vec!["ndots:2".into()];
    let resolv = alone.resolv_conf(Some(&dns)).unwrap();
    assert!(resolv.contains("nameserver 198.51.100.2"), "{resolv}");
    assert!(resolv.contains("search example.test"), "{resolv}");
    // From the host's file, loopback resolvers are useless in a private namespace.
    let resolv = web.resolv_conf(None).unwrap();
    assert!(resolv.lines().any(|l| l.starts_with("nameserver")), "{resolv}");
    assert!(!resolv.lines().any(|l| l.starts_with("nameserver 127.") || l == "nameserver ::1"), "{resolv}");

    // When the peer leaves, it leaves the hosts file.
    db.disconnect(&net).unwrap();
    assert!(!web.hosts_file().unwrap().contains(&v4(&edb).to_string()));
    drop((web, db, alone));
    net.remove().unwrap();
}

#[test]
fn disconnect_from_a_live_sandbox() {
    require_root!();
    let world = World::new();
    let net1 = Network::create(&world.host, &bridge_spec("10.89.16.0/24")).unwrap();
    let net2 = Network::create(&world.host, &bridge_spec("10.89.17.0/24")).unwrap();
    let mut s = Sandbox::none("multi").unwrap();
    let e1 = s.connect(&net1, &EndpointOptions::new()).unwrap();
    let e2 = s.connect(&net2, &EndpointOptions::new()).unwrap();
    assert_eq!((e1.ifname.as_str(), e2.ifname.as_str()), ("eth0", "eth1"));

    s.disconnect(&net1).unwrap();
    // At once: eth0 is down (or already deleted); its deletion runs on a background thread.
    let links = links_of(s.netns());
    assert!(links.iter().all(|(n, up)| n != "eth0" || !*up), "{links:?}");
    eventually(
        || links_of(s.netns()).into_iter().map(|(n, _)| n).collect::<Vec<_>>() == ["lo", "eth1"],
        "eth0 deleted",
    );
    // The default route moved to the remaining network, which reaches the outside.
    let routes = Netlink::open_in(s.netns()).unwrap().routes(false).unwrap();
    assert!(routes.iter().any(|r| r.destination.is_none() && r.gateway == Some(e2.gateways[0])), "{routes:?}");
    let server = serve_once(listen_in_ns(&world.outside, SocketAddr::new(OUTSIDE_IP.into(), 9002)));
    talk(s.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9002), "still out").unwrap();
    server.join().unwrap();
    assert!(matches!(s.disconnect(&net1), Err(Error::NotConnected { .. })));

    // The first network has no endpoint left: it can go while the sandbox lives.
    assert!(net1.endpoints().is_empty());
    net1.remove().unwrap();
    // The second cannot.
    let err = net2.remove().unwrap_err();
    assert!(matches!(&err, Error::NetworkInUse { endpoints, .. } if endpoints.len() == 1), "{err}");
    // ... and is torn down once its last endpoint leaves (the World checks).
    s.remove().unwrap();
}

#[test]
fn persisted_sandbox_is_named_and_unnamed() {
    require_root!();
    let world = World::new();
    let run_dir = TempDir::new("netns").unwrap();
    let net = Network::create(&world.host, &bridge_spec("10.89.18.0/24")).unwrap();
    let name = unique_name("ps");
    let mut s = Sandbox::persisted(&name, run_dir.path()).unwrap();
    let path = s.path().expect("persisted path");
    assert_eq!(path, run_dir.join(&name));
    let ep = s.connect(&net, &EndpointOptions::new()).unwrap();
    // The allocation is owned by the namespace path.
    let state = std::fs::read_to_string(world.state.join(format!("{}.json", net.name()))).unwrap();
    assert!(state.contains(&path.display().to_string()), "{state}");
    // Reopening the path reaches the same namespace, with the endpoint.
    let reopened = nook_ns::NetNs::open_path(&path).unwrap();
    assert_eq!(reopened.ns().id().unwrap(), s.netns().id().unwrap());
    drop(reopened);
    assert!(v4(&ep).octets()[0] == 10);
    s.remove().unwrap();
    assert!(!path.exists(), "the name is gone");
    net.remove().unwrap();
}

#[test]
fn dual_stack_sandboxes_talk_over_ipv6() {
    require_root!();
    dual_stack_sandboxes_talk_over_ipv6_on(&World::new());
}

/// [`dual_stack_sandboxes_talk_over_ipv6`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn dual_stack_sandboxes_talk_over_ipv6_on(world: &World) {
    let mut spec = bridge_spec("10.89.19.0/24");
    spec.subnet("fd00:89:19::/64".parse().unwrap(), None);
    let net = Network::create(&world.host, &spec).unwrap();
    let mut a = Sandbox::none("six1").unwrap();
    let mut b = Sandbox::none("six2").unwrap();
    let ea = a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();
    let (a6, b6) = (ea.ipv6().expect("v6"), eb.ipv6().expect("v6"));
    let listener = b.run(|| std::net::TcpListener::bind("[::]:7005")).unwrap().unwrap();
    let server = serve_once(listener);
    assert_eq!(talk(a.netns(), SocketAddr::new(b6.into(), 7005), "six").unwrap(), "echo: six");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V6(a6));
    drop((a, b));
    net.remove().unwrap();
}

#[test]
fn parallel_connects_get_distinct_addresses() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.20.0/24")).unwrap();
    let sandboxes: Vec<Sandbox> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let net = &net;
                scope.spawn(move || {
                    let mut s = Sandbox::none(&format!("par{i}")).unwrap();
                    s.connect(net, &EndpointOptions::new()).unwrap();
                    s
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<Ipv4Addr> = sandboxes.iter().map(|s| v4(&s.endpoints()[0])).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 8);
    assert_eq!(net.endpoints().len(), 8);
    // Every sandbox reaches the last one.
    let last = sandboxes.last().unwrap();
    let target = SocketAddr::new(v4(&last.endpoints()[0]).into(), 7006);
    let listener = listen_in(last, 7006);
    for s in &sandboxes[..7] {
        let server = serve_once(listener.try_clone().unwrap());
        assert_eq!(talk(s.netns(), target, s.name()).unwrap(), format!("echo: {}", s.name()));
        server.join().unwrap();
    }
    drop(listener);
    drop(sandboxes);
    assert!(net.endpoints().is_empty());
    net.remove().unwrap();
}

/// `docker run` without `--network`: the default `bridge` network (bridge `nook0`,
/// 10.88.0.0/16) carries traffic and NAT like any bridge network, but its sandboxes do not
/// get each other's names.
#[test]
fn default_bridge_network_talks_but_lists_no_peers() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &NetworkSpec::default_bridge()).unwrap();
    assert_eq!(net.name(), nook_netmodel::DEFAULT_NETWORK);
    assert_eq!(net.bridge(), Some(nook_netmodel::DEFAULT_BRIDGE));
    assert!(world.netlink().link(nook_netmodel::DEFAULT_BRIDGE).unwrap().is_some(), "no nook0 in the host netns");
    let mut a = Sandbox::none("a").unwrap();
    let mut b = Sandbox::none("b").unwrap();
    let ea = a.connect(&net, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net, &EndpointOptions::new()).unwrap();
    let subnet: ipnet::IpNet = nook_netmodel::DEFAULT_SUBNET.parse().unwrap();
    assert!(subnet.contains(&IpAddr::V4(v4(&ea))) && subnet.contains(&IpAddr::V4(v4(&eb))));

    // b -> a over the bridge.
    let server = serve_once(listen_in(&a, 7100));
    let reply = talk(b.netns(), SocketAddr::new(IpAddr::V4(v4(&ea)), 7100), "over nook0").unwrap();
    let (got, from) = server.join().unwrap();
    assert_eq!(got, "over nook0");
    assert_eq!(from.ip(), IpAddr::V4(v4(&eb)));
    assert!(!reply.is_empty());

    // a -> the outside world, masqueraded behind the host's address.
    let outside = listen_in_ns(&world.outside, SocketAddr::new(IpAddr::V4(OUTSIDE_IP), 7101));
    let server = serve_once(outside);
    talk(a.netns(), SocketAddr::new(IpAddr::V4(OUTSIDE_IP), 7101), "out").unwrap();
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V4(HOST_IP));

    let hosts = a.hosts_file().unwrap();
    assert!(hosts.lines().any(|l| l.starts_with(&v4(&ea).to_string())), "own address missing:\n{hosts}");
    assert!(!hosts.contains(&v4(&eb).to_string()), "the default network lists no peers:\n{hosts}");
    drop((a, b));
    net.remove().unwrap();
}

/// nftables, with switches to make publishing fail after the rules are in (a backend that
/// is not atomic) and to make removing ports fail.
#[derive(Debug)]
struct Flaky {
    inner: Nftables,
    add_then_fail: std::sync::atomic::AtomicBool,
    remove_fails: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn new(world: &World) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: Nftables::new(Some(world.host_ns.ns())).unwrap(),
            add_then_fail: false.into(),
            remove_fails: false.into(),
        })
    }
}

fn test_failure() -> FirewallError {
    FirewallError::Lock { table: "test".into(), source: std::io::Error::other("test") }
}

impl FirewallBackend for Flaky {
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        self.inner.setup_network(rules)
    }
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        self.inner.teardown_network(network)
    }
    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError> {
        self.inner.add_ports(network, endpoint, ports)?;
        if self.add_then_fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(test_failure());
        }
        Ok(())
    }
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        if self.remove_fails.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(test_failure());
        }
        self.inner.remove_ports(network, endpoint)
    }
}

/// If a sandbox's published ports cannot be removed, its addresses must not go back to IPAM:
/// the next sandbox given one would receive the old sandbox's published traffic.
#[test]
fn a_failed_port_removal_keeps_the_addresses() {
    require_root!();
    let world = World::new();
    let flaky = Flaky::new(&world);
    let host =
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).firewall(flaky.clone()).build().unwrap();
    let net = Network::create(&host, &bridge_spec("10.89.22.0/24")).unwrap();
    let mut s = Sandbox::none("stuck").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8084, 80));
    let ep = s.connect(&net, &opts).unwrap();
    let address = IpAddr::V4(v4(&ep));

    flaky.remove_fails.store(true, std::sync::atomic::Ordering::Relaxed);
    let err = s.remove().unwrap_err();
    assert!(matches!(err, Error::Firewall(FirewallError::Lock { .. })), "{err}");
    assert!(world.ruleset().contains("nk-port"), "the DNAT rule is still there");
    let held: Vec<IpAddr> = host.ipam().allocations(net.name()).unwrap().into_iter().map(|(a, _)| a).collect();
    assert_eq!(held, [address], "the address stays allocated while its DNAT rule exists");
    // The host port stays taken too.
    let mut t = Sandbox::none("next").unwrap();
    let err = t.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::PortInUse { host_port: 8084, .. }), "{err}");
    let other = t.connect(&net, &EndpointOptions::new()).unwrap();
    assert_ne!(IpAddr::V4(v4(&other)), address);
    t.remove().unwrap();

    // Clean up by hand what the failure left.
    flaky.remove_fails.store(false, std::sync::atomic::Ordering::Relaxed);
    flaky.inner.remove_ports(net.name(), &ep.id).unwrap();
    host.ipam().release(net.name(), address).unwrap();
    net.remove().unwrap();
}

/// A backend whose publish fails after adding some rules: connect's undo removes them.
#[test]
fn a_publish_that_fails_halfway_is_undone() {
    require_root!();
    let world = World::new();
    let flaky = Flaky::new(&world);
    flaky.add_then_fail.store(true, std::sync::atomic::Ordering::Relaxed);
    let host =
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).firewall(flaky.clone()).build().unwrap();
    let net = Network::create(&host, &bridge_spec("10.89.23.0/24")).unwrap();
    let mut s = Sandbox::none("half").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8085, 80));
    let err = s.connect(&net, &opts).unwrap_err();
    assert!(matches!(err, Error::Firewall(FirewallError::Lock { .. })), "{err}");
    assert!(!world.ruleset().contains("nk-port"), "no port rule is left: {}", world.ruleset());
    assert!(host.ipam().allocations(net.name()).unwrap().is_empty());
    drop(s);
    net.remove().unwrap();
}

/// An IPv6-only bridge network: addresses, default route, a published port reached from the
/// outside world over IPv6, and outbound masquerade.
#[test]
fn ipv6_only_network_works() {
    require_root!();
    ipv6_only_network_works_on(&World::new());
}

/// [`ipv6_only_network_works`] on `world` (also run on an unfriendly host by `unfriendly`).
pub(crate) fn ipv6_only_network_works_on(world: &World) {
    // Give the uplink IPv6 addresses (the fixture sets up IPv4 only).
    let host6: std::net::Ipv6Addr = "fd00:5100::1".parse().unwrap();
    let outside6: std::net::Ipv6Addr = "fd00:5100::2".parse().unwrap();
    {
        let mut nl = world.netlink();
        let uplink = nl.link(&world.uplink).unwrap().unwrap().index;
        nl.add_address(uplink, "fd00:5100::1/64".parse().unwrap()).unwrap();
        let mut out = Netlink::open_in(world.outside.ns()).unwrap();
        let peer = out.links().unwrap().into_iter().find(|l| l.name != "lo").unwrap().index;
        out.add_address(peer, "fd00:5100::2/64".parse().unwrap()).unwrap();
    }
    let mut spec = NetworkSpec::bridge(unique_name("v6o").parse().unwrap());
    spec.subnet("fd00:89:24::/64".parse().unwrap(), None);
    let net = Network::create(&world.host, &spec).unwrap();
    let mut s = Sandbox::none("sixonly").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8086, 80));
    let ep = s.connect(&net, &opts).unwrap();
    assert!(ep.ipv4().is_none());
    let a6 = ep.ipv6().expect("an IPv6 address");

    // Published port from the outside world, to the host's IPv6 address.
    let listener = s.run(|| std::net::TcpListener::bind("[::]:80")).unwrap().unwrap();
    let server = serve_once(listener);
    let answer = talk(world.outside.ns(), SocketAddr::new(host6.into(), 8086), "in6").unwrap();
    assert_eq!(answer, "echo: in6");
    server.join().unwrap();

    // Outbound: masqueraded to the host's uplink address.
    let listener = listen_in_ns(&world.outside, SocketAddr::new(outside6.into(), 7010));
    let server = serve_once(listener);
    assert_eq!(talk(s.netns(), SocketAddr::new(outside6.into(), 7010), "out6").unwrap(), "echo: out6");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V6(host6), "masqueraded (the sandbox's own {a6} is private)");
    s.remove().unwrap();
    net.remove().unwrap();
}

/// Deleting a bridge takes the kernel tens of milliseconds (RCU grace periods): it must not
/// happen under the host's shared netlink socket, which every connect of the process needs.
#[test]
fn network_removal_does_not_hold_the_hosts_netlink_socket() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.25.0/24")).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let guard = world.host.netlink();
    let remover = std::thread::spawn(move || done_tx.send(net.remove()).unwrap());
    let removed = done_rx.recv_timeout(crate::common::PATIENCE);
    drop(guard);
    remover.join().unwrap();
    removed.expect("Network::remove finished while another thread held Host::netlink").unwrap();
}

/// A process that died without tearing down left an address and its published port's DNAT
/// rule. When IPAM reclaims the address, the next connect removes that rule first: the
/// port's traffic must never reach the address's next owner, and the host port is free again.
#[test]
fn rules_of_a_dead_owner_go_with_its_reclaimed_address() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &bridge_spec("10.89.24.0/24")).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = nook_netmodel::ipam::Owner::Process { pid: gone.id(), start_time: 1 };
    gone.wait().unwrap();
    let stale: IpAddr = "10.89.24.50".parse().unwrap();
    world.host.ipam().allocate(net.name(), nook_netmodel::ipam::Request::Static(stale), &dead).unwrap();
    let rule = PortRule::new(tcp(8086, 80), stale);
    world.host.firewall().add_ports(net.name(), "deadbeef", &[rule]).unwrap();
    assert!(world.ruleset().contains("deadbeef"), "the crashed process's rule is in place");

    let mut s = Sandbox::none("heir").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8086, 80));
    let ep = s.connect(&net, &opts).expect("the stale rule was removed, so the host port is free");
    let ruleset = world.ruleset();
    assert!(!ruleset.contains("deadbeef"), "the dead owner's rule is gone:\n{ruleset}");
    assert!(!ruleset.contains(&stale.to_string()), "nothing DNATs to the reclaimed address:\n{ruleset}");
    assert!(ruleset.contains(&v4(&ep).to_string()), "the new endpoint's port is published:\n{ruleset}");
    let held: Vec<IpAddr> = world.host.ipam().allocations(net.name()).unwrap().into_iter().map(|(a, _)| a).collect();
    assert_eq!(held, [IpAddr::V4(v4(&ep))], "the dead owner's address was reclaimed");
    s.remove().unwrap();
    net.remove().unwrap();
}

/// A process created a network, published a port and died without tearing down: a new
/// process cannot create the network again (its record, IPAM and its bridge still have it),
/// but `recreate` removes the leftovers — the record, the rules, the bridge (found again: its
/// default name follows from the network's name), the registration — and builds it anew. A
/// network a live owner still uses is never replaced.
#[test]
fn a_network_left_by_a_crash_is_recreated() {
    if crate::shared::as_worker() {
        return;
    }
    require_root!();
    let world = World::new();
    let spec = bridge_spec("10.89.25.0/24");
    let name = spec.name.to_string();
    // The crash: a process creates the network and dies without tearing anything down.
    let (_, bridge) = crate::shared::create_in_a_process_that_dies(
        "cnm::a_network_left_by_a_crash_is_recreated",
        &world,
        &name,
        Some("10.89.25.0/24"),
    );
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = nook_netmodel::ipam::Owner::Process { pid: gone.id(), start_time: 1 };
    gone.wait().unwrap();
    let stale: IpAddr = "10.89.25.9".parse().unwrap();
    world.host.ipam().allocate(&name, nook_netmodel::ipam::Request::Static(stale), &dead).unwrap();
    let rule = PortRule::new(tcp(8087, 80), stale);
    world.host.firewall().add_ports(&name, "deadbeef", &[rule]).unwrap();

    // Its record, bridge and IPAM registration are still there.
    let err = Network::create(&world.host, &spec).unwrap_err();
    assert!(matches!(err, Error::NetworkExists { .. }), "{err}");

    let net = Network::recreate(&world.host, &spec).unwrap();
    assert_eq!(net.bridge(), Some(bridge.as_str()), "the same name gives the same bridge");
    let ruleset = world.ruleset();
    assert!(!ruleset.contains("deadbeef"), "the dead process's port rule is gone:\n{ruleset}");
    assert!(world.host.ipam().allocations(net.name()).unwrap().is_empty());
    let mut s = Sandbox::none("again").unwrap();
    let mut opts = EndpointOptions::new();
    opts.port(tcp(8087, 80));
    let ep = s.connect(&net, &opts).expect("the host port is free again");
    // Traffic over the recreated bridge, through the published port, from outside.
    let server = serve_once(listen_in(&s, 80));
    talk(world.outside.ns(), SocketAddr::new(IpAddr::V4(HOST_IP), 8087), "after the crash").unwrap();
    assert_eq!(server.join().unwrap().0, "after the crash");

    // Open in a live process (this one), and in use by a live owner (through `s`): refused,
    // nothing changed.
    let before = world.snapshot();
    let err = Network::recreate(&world.host, &spec).unwrap_err();
    assert!(matches!(err, Error::NetworkHasUsers { .. }), "{err}");
    assert_eq!(world.snapshot(), before, "a refused recreate changes nothing");
    assert!(world.ruleset().contains(&v4(&ep).to_string()));
    s.remove().unwrap();
    net.remove().unwrap();
}

/// `Network::remove` hands the bridge's deletion (tens of ms of RCU grace periods) to a
/// background thread: the bridge is down and renamed at once, so a network of the same name,
/// bridge and subnet can be created right away; the old bridge is gone soon after.
#[test]
fn a_removed_bridge_is_renamed_at_once_and_deleted_in_the_background() {
    require_root!();
    let world = World::new();
    let spec = bridge_spec("10.89.26.0/24");
    let net = Network::create(&world.host, &spec).unwrap();
    let bridge = net.bridge().unwrap().to_owned();
    let index = world.netlink().link(&bridge).unwrap().expect("the bridge").index;
    net.remove().unwrap();
    assert!(world.netlink().link(&bridge).unwrap().is_none(), "the name is free at once");
    let again = Network::create(&world.host, &spec).unwrap();
    assert_eq!(again.bridge(), Some(bridge.as_str()));
    let mut s = Sandbox::none("again").unwrap();
    s.connect(&again, &EndpointOptions::new()).unwrap();
    s.remove().unwrap();
    again.remove().unwrap();
    // Both old bridges go (the kernel deletes them off the caller's path).
    let start = std::time::Instant::now();
    loop {
        let links = world.netlink().links().unwrap();
        let left: Vec<String> = links.into_iter().map(|l| l.name).filter(|n| n.starts_with("nkgone")).collect();
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < crate::common::PATIENCE, "bridges left behind: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(world.netlink().link_by_index(index).unwrap().is_none());
}
