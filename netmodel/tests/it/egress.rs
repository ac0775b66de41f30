//! Fail-closed egress policies ([`nook_netmodel::egress`]): a sandbox reaches only its allowed
//! CIDRs/ports and the addresses the embedded DNS answered for its allowed names; everything
//! else is refused in the host namespace's firewall, and nothing the sandbox does in its own
//! namespace (as root there) lifts that. The "internet" is the test's outside namespace, with
//! servers on addresses of its own; the upstream resolver a test server in the host namespace.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nook_netmodel::firewall::{EgressEndpoint, FirewallBackend, FirewallError, NftNetlink, Nftables, Protocol};
use nook_netmodel::netlink::Netlink;
use nook_netmodel::{EgressPolicy, EndpointOptions, Error, Network, NetworkSpec, Sandbox, ValidationError};
use nook_ns::NsFd;
use nook_testutil::{TempDir, require_root, unique_name};

use crate::common::{World, listen_in, listen_in_ns, nft_list_ruleset, serve_once, talk, try_connect};
use crate::dns::{Upstream, ask, host_with_resolver};

/// Servers of the outside world (on its `lo`): one per role.
const ALLOWED_BY_NAME: &str = "203.0.113.10";
const SHORT_LIVED: &str = "203.0.113.11";
const NOT_ALLOWED: &str = "203.0.113.20";
const ALLOWED_CIDR: &str = "203.0.113.30";

/// How long a dropped connect is given (dropped frames: the connect would hang).
const DROPPED: Duration = Duration::from_millis(700);

fn outside_servers(world: &World) {
    let mut nl = Netlink::open_in(world.outside.ns()).unwrap();
    for ip in [ALLOWED_BY_NAME, SHORT_LIVED, NOT_ALLOWED, ALLOWED_CIDR] {
        nl.add_address(1, format!("{ip}/32").parse().unwrap()).unwrap();
    }
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// A one-connection echo server of the outside world at `ip:port`.
fn serve_outside(world: &World, ip: &str, port: u16) -> std::thread::JoinHandle<(String, SocketAddr)> {
    serve_once(listen_in_ns(&world.outside, at(ip, port)))
}

fn refused(ns: &NsFd, addr: SocketAddr) -> bool {
    matches!(try_connect(ns, addr, DROPPED), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

fn spec(subnet: &str) -> NetworkSpec {
    let mut spec = NetworkSpec::bridge(unique_name("eg").parse().unwrap());
    spec.subnet(subnet.parse().unwrap(), None);
    spec
}

fn names(policy: &mut EgressPolicy) -> &mut EgressPolicy {
    policy.allow_domain("allowed.nk.test").allow_domain("*.short.nk.test").allow_port(
        format!("{ALLOWED_CIDR}/32").parse().unwrap(),
        Protocol::Tcp,
        7000,
    )
}

#[test]
fn only_allowed_cidrs_ports_and_answered_names_are_reachable() {
    require_root!();
    let world = World::new();
    let dir = TempDir::new("egress").unwrap();
    let host = host_with_resolver(&world, &dir);
    let _upstream = Upstream::with(
        &world.host_ns,
        &[
            ("allowed.nk.test", ALLOWED_BY_NAME, 300),
            ("a.short.nk.test", SHORT_LIVED, 1),
            ("denied.nk.test", NOT_ALLOWED, 300),
        ],
    );
    outside_servers(&world);
    let net = Network::create(&host, &spec("10.89.70.0/24")).unwrap();

    let mut agent = Sandbox::none("agent").unwrap();
    let mut policy = EgressPolicy::deny_all();
    names(&mut policy);
    agent.set_egress(Some(policy.clone())).unwrap();
    let eagent = agent.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(agent.egress(), Some(policy.clone()));
    // A sandbox without a policy on the same network: what it reaches, the agent is refused
    // by its policy, not by routing.
    let mut free = Sandbox::none("free").unwrap();
    let efree = free.connect(&net, &EndpointOptions::new()).unwrap();
    let agent_ns = agent.netns().try_clone().unwrap();
    let ns = &agent_ns;

    // An allowed name resolves, and its address is reachable.
    let by_name: IpAddr = ALLOWED_BY_NAME.parse().unwrap();
    assert_eq!(ask(ns, "allowed.nk.test", RecordType::A, false), Some((ResponseCode::NoError, vec![by_name])));
    let server = serve_outside(&world, ALLOWED_BY_NAME, 80);
    assert_eq!(talk(ns, at(ALLOWED_BY_NAME, 80), "hi").unwrap(), "echo: hi");
    server.join().unwrap();

    // Another name gets no answer; its address, tried directly, is refused at once — while
    // the sandbox without a policy reaches it.
    assert_eq!(ask(ns, "denied.nk.test", RecordType::A, false), Some((ResponseCode::Refused, vec![])));
    assert_eq!(ask(ns, "allowed.nk.test.evil.test", RecordType::A, false), Some((ResponseCode::Refused, vec![])));
    let server = serve_outside(&world, NOT_ALLOWED, 80);
    assert!(refused(ns, at(NOT_ALLOWED, 80)));
    assert_eq!(talk(free.netns(), at(NOT_ALLOWED, 80), "free").unwrap(), "echo: free");
    server.join().unwrap();
    // Nor a service of the host itself, nor a peer (peers are dropped at the bridge).
    let host_service = SocketAddr::new(IpAddr::V4(crate::common::HOST_IP), 2222);
    let _host_service = listen_in_ns(&world.host_ns, host_service);
    assert!(refused(ns, host_service));
    let peer_listener = listen_in(&free, 8080);
    let peer = SocketAddr::new(IpAddr::V4(efree.ipv4().unwrap()), 8080);
    assert!(try_connect(ns, peer, DROPPED).is_err(), "the peer is not allowed");

    // An allowed CIDR on its port only.
    let server = serve_outside(&world, ALLOWED_CIDR, 7000);
    let _other_port = listen_in_ns(&world.outside, at(ALLOWED_CIDR, 7001));
    assert_eq!(talk(ns, at(ALLOWED_CIDR, 7000), "cidr").unwrap(), "echo: cidr");
    server.join().unwrap();
    assert!(refused(ns, at(ALLOWED_CIDR, 7001)));

    // An answer's address is allowed for its TTL (1 s here), then refused again; a
    // connection opened meanwhile lives on.
    let short: IpAddr = SHORT_LIVED.parse().unwrap();
    let listener = listen_in_ns(&world.outside, at(SHORT_LIVED, 80));
    assert_eq!(ask(ns, "a.short.nk.test", RecordType::A, false), Some((ResponseCode::NoError, vec![short])));
    let open = nook_ns::run_in(&[ns], || TcpStream::connect_timeout(&at(SHORT_LIVED, 80), DROPPED))
        .unwrap()
        .expect("allowed while the answer lives");
    let (accepted, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(refused(ns, at(SHORT_LIVED, 80)), "the answer expired");
    {
        use std::io::{Read, Write};
        let (mut open, mut accepted) = (open, accepted);
        open.write_all(b"still here").unwrap();
        let mut got = [0u8; 10];
        accepted.set_read_timeout(Some(crate::common::PATIENCE)).unwrap();
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"still here", "an established connection outlives the answer");
        // Both ends closed now: a side left waiting for the other's FIN would keep its
        // namespace alive for tcp_fin_timeout.
        drop(open);
        drop(accepted);
    }
    drop(listener);

    // Replacing the policy: the peer allowed by name (the embedded DNS answers for it).
    let mut wider = policy.clone();
    wider.allow_domain("free");
    agent.set_egress(Some(wider)).unwrap();
    let peer_ip = IpAddr::V4(efree.ipv4().unwrap());
    assert_eq!(ask(ns, "free", RecordType::A, false), Some((ResponseCode::NoError, vec![peer_ip])));
    let server = serve_once(peer_listener);
    assert_eq!(talk(ns, peer, "peer").unwrap(), "echo: peer");
    server.join().unwrap();
    assert!(refused(ns, at(NOT_ALLOWED, 80)), "still refused");

    // Lifting the policy opens the way.
    agent.set_egress(None).unwrap();
    let server = serve_outside(&world, NOT_ALLOWED, 80);
    assert_eq!(talk(ns, at(NOT_ALLOWED, 80), "open").unwrap(), "echo: open");
    server.join().unwrap();
    assert!(!world.ruleset().contains("nook-egress"), "the last policy takes its tables with it");
    let _ = eagent;

    drop((agent, free, agent_ns));
    net.remove().unwrap();
    drop(host);
    world.assert_clean();
}

/// What root inside the sandbox (`CAP_NET_ADMIN` of its own namespace) can try: its own
/// firewall, another address (a policy-free peer's), another MAC. None of it lifts the policy.
#[test]
fn root_inside_the_sandbox_cannot_lift_its_policy() {
    require_root!();
    let world = World::new();
    outside_servers(&world);
    let net = Network::create(&world.host, &spec("10.89.71.0/24")).unwrap();
    let mut agent = Sandbox::none("agent").unwrap();
    let mut policy = EgressPolicy::deny_all();
    policy.allow_net(format!("{ALLOWED_CIDR}/32").parse().unwrap());
    agent.set_egress(Some(policy)).unwrap();
    let eagent = agent.connect(&net, &EndpointOptions::new()).unwrap();
    let mut free = Sandbox::none("free").unwrap();
    let efree = free.connect(&net, &EndpointOptions::new()).unwrap();
    let ns = agent.netns();
    let _target = listen_in_ns(&world.outside, at(NOT_ALLOWED, 80));
    let server = serve_outside(&world, ALLOWED_CIDR, 80);
    assert_eq!(talk(ns, at(ALLOWED_CIDR, 80), "ok").unwrap(), "echo: ok");
    server.join().unwrap();

    // Its own ruleset is empty and the host's tables are not in it; flushing it changes nothing.
    let inside = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        agent.run(move || std::process::Command::new("nft").args(&args).output().unwrap()).unwrap()
    };
    let listed = inside(&["list", "ruleset"]);
    assert!(listed.status.success() && !String::from_utf8_lossy(&listed.stdout).contains("egress"));
    assert!(inside(&["flush", "ruleset"]).status.success());
    assert!(refused(ns, at(NOT_ALLOWED, 80)));

    // Taking the policy-free peer's address: its packets are dropped at the bridge port.
    let index = eagent.index;
    let stolen = efree.ipv4().unwrap();
    agent
        .run(move || {
            let mut nl = Netlink::open_in(&NsFd::current(nook_ns::Namespace::Net).unwrap()).unwrap();
            nl.add_address(index, format!("{stolen}/32").parse().unwrap()).unwrap();
        })
        .unwrap();
    let spoofed = nook_ns::run_in(&[ns], move || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(stolen), 0).into())?;
        socket.connect_timeout(&at(NOT_ALLOWED, 80).into(), DROPPED)
    })
    .unwrap();
    assert!(spoofed.is_err(), "a stolen source address gets nowhere");

    // Another MAC: nothing passes any more, not even what the policy allows.
    agent
        .run(move || {
            let status = std::process::Command::new("ip")
                .args(["link", "set", "dev", "eth0", "address", "02:00:00:00:be:ef"])
                .status()
                .unwrap();
            assert!(status.success());
        })
        .unwrap();
    let _allowed = listen_in_ns(&world.outside, at(ALLOWED_CIDR, 81));
    assert!(try_connect(ns, at(ALLOWED_CIDR, 81), DROPPED).is_err(), "another MAC is dropped");

    drop((agent, free));
    net.remove().unwrap();
    world.assert_clean();
}

#[test]
fn a_policy_is_refused_where_it_cannot_be_enforced() {
    require_root!();
    let world = World::new();
    // Bad input: nothing is stored.
    let mut agent = Sandbox::none("agent").unwrap();
    let mut bad = EgressPolicy::deny_all();
    bad.allow_domain("exa mple.com");
    let err = agent.set_egress(Some(bad)).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::Name { field: "egress domain", .. })), "{err}");
    assert_eq!(agent.egress(), None);
    // The host's own namespace has no port to bind a policy to.
    let mut on_host = Sandbox::host(&world.host).unwrap();
    let err = on_host.set_egress(Some(EgressPolicy::deny_all())).unwrap_err();
    assert!(matches!(err, Error::ModeUnsupported { .. }), "{err}");
    // Nor a macvlan endpoint: refused before anything is created.
    let parent = world.add_parent();
    let mv = Network::create(&world.host, &NetworkSpec::macvlan(unique_name("mv").parse().unwrap(), &parent)).unwrap();
    agent.set_egress(Some(EgressPolicy::deny_all())).unwrap();
    let before = world.snapshot();
    let err = agent.connect(&mv, &EndpointOptions::new()).unwrap_err();
    assert!(matches!(err, Error::EgressUnsupported { .. }), "{err}");
    assert_eq!(world.snapshot(), before);
    assert!(agent.endpoints().is_empty());
    drop(agent);
    mv.remove().unwrap();
    world.delete_link(&parent);
    world.assert_clean();
}

/// The egress tables, as each backend writes them: `nft` reads them, and either backend
/// removes what the other wrote.
#[test]
fn both_backends_write_readable_egress_rules_and_remove_each_others() {
    require_root!();
    let world = World::new();
    let ns = world.host_ns.ns();
    let netlink = NftNetlink::new(Some(ns)).unwrap();
    let nft = Nftables::new(Some(ns)).unwrap();
    let mut policy = EgressPolicy::deny_all();
    names(&mut policy).allow_net("fd00:99::/64".parse().unwrap());
    let ep = |id: &str, last: u8| {
        let addresses = vec![format!("10.89.72.{last}").parse().unwrap(), format!("fd00:72::{last}").parse().unwrap()];
        EgressEndpoint::new(id, format!("nkv{id}"), [2, 0, 0, 0, 0, last], addresses)
    };
    let backends: [(&dyn FirewallBackend, &dyn FirewallBackend); 2] = [(&netlink, &nft), (&nft, &netlink)];
    for (writer, remover) in backends {
        writer.set_egress(&ep("aa01", 2), &policy).unwrap();
        writer.set_egress(&ep("aa02", 3), &policy).unwrap();
        // Again: the rules are replaced, not added twice.
        writer.set_egress(&ep("aa02", 3), &policy).unwrap();
        writer.allow_egress("aa01", &[("192.0.2.5".parse().unwrap(), Duration::from_secs(60))]).unwrap();
        // Refreshing an address already there.
        writer.allow_egress("aa01", &[("192.0.2.5".parse().unwrap(), Duration::from_secs(90))]).unwrap();
        let listed = nft_list_ruleset(&world.host_ns);
        for needle in [
            "table bridge nook-egress",
            "table inet nook-egress",
            "iifname \"nkvaa01\" jump nk-eg-aa01-pre",
            "ether saddr != 02:00:00:00:00:02 drop",
            "ip daddr @nk-eg-aa01-v4 accept",
            "reject with tcp reset",
            "tcp dport 7000 accept",
            "192.0.2.5 timeout",
        ] {
            assert!(listed.contains(needle), "{needle:?} missing from:\n{listed}");
        }
        assert_eq!(listed.matches("jump nk-eg-aa02 ").count() + listed.matches("jump nk-eg-aa02\n").count(), 4);
        assert_eq!(listed.matches("ct state established,related accept").count(), 2, "{listed}");
        remover.remove_egress("aa01").unwrap();
        assert!(!nft_list_ruleset(&world.host_ns).contains("aa01"));
        remover.remove_egress("aa01").unwrap();
        remover.remove_egress("aa02").unwrap();
        assert_eq!(nft_list_ruleset(&world.host_ns), world.baseline_ruleset);
    }
    // A backend of one's own that does not enforce policies says so.
    #[derive(Debug)]
    struct Plain;
    impl FirewallBackend for Plain {
        fn setup_network(
            &self,
            _: &nook_netmodel::firewall::NetworkRules,
        ) -> Result<(), nook_netmodel::firewall::FirewallError> {
            Ok(())
        }
        fn teardown_network(&self, _: &str) -> Result<(), nook_netmodel::firewall::FirewallError> {
            Ok(())
        }
        fn add_ports(
            &self,
            _: &str,
            _: &str,
            _: &[nook_netmodel::firewall::PortRule],
        ) -> Result<(), nook_netmodel::firewall::FirewallError> {
            Ok(())
        }
        fn remove_ports(&self, _: &str, _: &str) -> Result<(), nook_netmodel::firewall::FirewallError> {
            Ok(())
        }
    }
    let err = Plain.set_egress(&ep("aa03", 4), &policy).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    world.assert_clean();
}

/// IPv6 goes through the same checks: on a dual-stack network, an allowed IPv6 destination
/// is reached (neighbour discovery with the gateway passes the policy), another is refused,
/// and so are IPv4 destinations the policy does not list.
#[test]
fn ipv6_destinations_are_policed_like_ipv4_ones() {
    require_root!();
    let world = World::new();
    outside_servers(&world);
    {
        let mut nl = world.netlink();
        let uplink = nl.link(&world.uplink).unwrap().unwrap().index;
        nl.add_address(uplink, "fd00:5100::1/64".parse().unwrap()).unwrap();
        let gateway: IpAddr = "fd00:5100::2".parse().unwrap();
        nl.add_route(&nook_netmodel::netlink::Route::new(None, Some(gateway), Some(uplink))).unwrap();
        let mut out = Netlink::open_in(world.outside.ns()).unwrap();
        let peer = out.links().unwrap().into_iter().find(|l| l.name != "lo").unwrap().index;
        out.add_address(peer, "fd00:5100::2/64".parse().unwrap()).unwrap();
        for ip in ["fd00:5200::10/128", "fd00:5200::20/128"] {
            out.add_address(1, ip.parse().unwrap()).unwrap();
        }
    }
    let mut spec = spec("10.89.73.0/24");
    spec.subnet("fd00:89:73::/64".parse().unwrap(), None);
    let net = Network::create(&world.host, &spec).unwrap();
    let mut agent = Sandbox::none("agent6").unwrap();
    let mut policy = EgressPolicy::deny_all();
    policy.allow_port("fd00:5200::10/128".parse().unwrap(), Protocol::Tcp, 80);
    agent.set_egress(Some(policy)).unwrap();
    let e = agent.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(e.ipv6().is_some());
    let ns = agent.netns();
    let six = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
    let server = serve_once(listen_in_ns(&world.outside, six("fd00:5200::10", 80)));
    assert_eq!(talk(ns, six("fd00:5200::10", 80), "v6").unwrap(), "echo: v6");
    server.join().unwrap();
    let _other = listen_in_ns(&world.outside, six("fd00:5200::20", 80));
    let _other_port = listen_in_ns(&world.outside, six("fd00:5200::10", 81));
    assert!(refused(ns, six("fd00:5200::20", 80)));
    assert!(refused(ns, six("fd00:5200::10", 81)), "its other ports are not allowed");
    let _v4 = listen_in_ns(&world.outside, at(NOT_ALLOWED, 80));
    assert!(refused(ns, at(NOT_ALLOWED, 80)));
    drop(agent);
    net.remove().unwrap();
    world.assert_clean();
}

/// nftables as usual, except that binding a policy fails while `fail` is set (a full
/// ruleset, a lost netlink socket).
#[derive(Debug)]
struct FailingEgress {
    inner: NftNetlink,
    fail: std::sync::atomic::AtomicBool,
}

impl FirewallBackend for FailingEgress {
    fn setup_network(&self, rules: &nook_netmodel::firewall::NetworkRules) -> Result<(), FirewallError> {
        self.inner.setup_network(rules)
    }
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        self.inner.teardown_network(network)
    }
    fn add_ports(
        &self,
        network: &str,
        endpoint: &str,
        ports: &[nook_netmodel::firewall::PortRule],
    ) -> Result<(), FirewallError> {
        self.inner.add_ports(network, endpoint, ports)
    }
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        self.inner.remove_ports(network, endpoint)
    }
    fn set_egress(&self, endpoint: &EgressEndpoint, policy: &EgressPolicy) -> Result<(), FirewallError> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FirewallError::Lock { table: "test".into(), source: std::io::Error::other("test") });
        }
        self.inner.set_egress(endpoint, policy)
    }
    fn remove_egress(&self, endpoint: &str) -> Result<(), FirewallError> {
        self.inner.remove_egress(endpoint)
    }
    fn allow_egress(&self, endpoint: &str, addresses: &[(IpAddr, Duration)]) -> Result<(), FirewallError> {
        self.inner.allow_egress(endpoint, addresses)
    }
}

/// A policy that cannot be bound to a connected sandbox fails closed: the call errs, and
/// the sandbox reaches nothing — not what it reached before — until a policy is bound;
/// then it reaches what that policy allows. (Was: the endpoint kept no policy at all while
/// `egress()` reported the one asked for.)
#[test]
fn a_policy_that_cannot_be_bound_cuts_the_endpoint_off() {
    require_root!();
    let world = World::new();
    outside_servers(&world);
    let backend = std::sync::Arc::new(FailingEgress {
        inner: NftNetlink::new(Some(world.host_ns.ns())).unwrap(),
        fail: false.into(),
    });
    let host = nook_netmodel::Host::builder()
        .netns(world.host_ns.ns())
        .ipam_dir(world.state.path())
        .firewall(backend.clone())
        .build()
        .unwrap();
    let net = Network::create(&host, &spec("10.89.74.0/24")).unwrap();
    let mut agent = Sandbox::none("agent").unwrap();
    agent.connect(&net, &EndpointOptions::new()).unwrap();
    let ns = agent.netns().try_clone().unwrap();
    let server = serve_outside(&world, NOT_ALLOWED, 80);
    assert_eq!(talk(&ns, at(NOT_ALLOWED, 80), "before").unwrap(), "echo: before");
    server.join().unwrap();

    backend.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut policy = EgressPolicy::deny_all();
    policy.allow_net(format!("{ALLOWED_CIDR}/32").parse().unwrap());
    assert!(agent.set_egress(Some(policy.clone())).is_err());
    let _listener = listen_in_ns(&world.outside, at(NOT_ALLOWED, 80));
    assert!(try_connect(&ns, at(NOT_ALLOWED, 80), DROPPED).is_err(), "cut off: the policy is not bound");

    backend.fail.store(false, std::sync::atomic::Ordering::Relaxed);
    agent.set_egress(Some(policy)).unwrap();
    let server = serve_outside(&world, ALLOWED_CIDR, 80);
    assert_eq!(talk(&ns, at(ALLOWED_CIDR, 80), "after").unwrap(), "echo: after");
    server.join().unwrap();
    assert!(refused(&ns, at(NOT_ALLOWED, 80)), "the bound policy refuses the rest");

    drop((agent, ns, _listener));
    net.remove().unwrap();
    drop(host);
    world.assert_clean();
}

/// `remove_egress_to`: the policies of endpoints holding one of the addresses go (what a
/// dead owner left: the model calls it for reclaimed addresses), the others stay; the
/// tables go with the last.
#[test]
fn policies_towards_reclaimed_addresses_are_removed() {
    require_root!();
    let world = World::new();
    let ns = world.host_ns.ns();
    let policy = EgressPolicy::deny_all();
    let ep = |id: &str, last: u8| {
        EgressEndpoint::new(
            id,
            format!("nkv{id}"),
            [2, 0, 0, 0, 0, last],
            vec![format!("10.89.73.{last}").parse().unwrap()],
        )
    };
    for backend in [&NftNetlink::new(Some(ns)).unwrap() as &dyn FirewallBackend, &Nftables::new(Some(ns)).unwrap()] {
        backend.set_egress(&ep("bb01", 2), &policy).unwrap();
        backend.set_egress(&ep("bb02", 3), &policy).unwrap();
        backend.remove_egress_to(&["10.89.73.2".parse().unwrap(), "10.89.73.9".parse().unwrap()]).unwrap();
        let listed = nft_list_ruleset(&world.host_ns);
        assert!(!listed.contains("bb01") && listed.contains("bb02"), "{listed}");
        // Nobody holds it any more: nothing to do.
        backend.remove_egress_to(&["10.89.73.2".parse().unwrap()]).unwrap();
        backend.remove_egress_to(&["10.89.73.3".parse().unwrap()]).unwrap();
        assert_eq!(nft_list_ruleset(&world.host_ns), world.baseline_ruleset);
    }
    world.assert_clean();
}
