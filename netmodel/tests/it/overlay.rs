//! Overlay (VXLAN) networks across "hosts": network namespaces the test creates, joined only
//! by an underlay bridge in a third one.
//!
//! ```text
//!            underlay netns: bridge nkul..  (no overlay address, no route to it)
//!              |                      |
//!   host 0: 192.0.2.1/24       host 1: 192.0.2.2/24
//!   bridge + vxlan (VNI 4242)  bridge + vxlan (VNI 4242)
//!   sandbox a 10.77.0.64/26    sandbox b 10.77.0.128/26   (each host's IPAM range)
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;
use nook_netmodel::driver::OverlayOptions;
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink};
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, RemoteEndpoint, Sandbox};
use nook_ns::NetNs;
use nook_testutil::{HostState, TempDir, require_root, unique_name};

use crate::common::{PATIENCE, listen_in, prepare_host, serve_once, talk, try_connect};

/// One "host": its namespace, its underlay address, its IPAM state and model host.
pub(crate) struct OverlayHost {
    pub ns: NetNs,
    pub underlay: IpAddr,
    pub uplink: String,
    pub state: TempDir,
    pub host: Host,
}

/// The underlay namespace with its bridge and `n` hosts on it.
pub(crate) struct Underlay {
    pub hosts: Vec<OverlayHost>,
    // Dropped last: the hosts' uplinks go with it.
    _ns: NetNs,
}

impl Underlay {
    pub(crate) fn new(n: u8) -> Underlay {
        let ns = NetNs::new().expect("underlay netns");
        prepare_host(&ns, HostState::Quiet);
        let mut nl = Netlink::open_in(ns.ns()).expect("netlink in underlay");
        nl.set_up(1).unwrap();
        let bridge_name = unique_name("ul");
        let mut bridge = NewLink::new(&bridge_name, LinkKind::Bridge);
        bridge.up = true;
        let bridge = nl.add_link(&bridge).expect("underlay bridge").expect("index");
        let mut hosts = Vec::new();
        for i in 0..n {
            let host_ns = NetNs::new().expect("host netns");
            prepare_host(&host_ns, HostState::Quiet);
            let port = unique_name("up");
            let uplink = unique_name("uh");
            let mut link = NewLink::new(
                &port,
                LinkKind::Veth {
                    peer_name: &uplink,
                    peer_netns: Some(host_ns.ns().as_fd()),
                    peer_mtu: None,
                    peer_mac: None,
                },
            );
            link.master = Some(bridge);
            link.up = true;
            nl.add_link(&link).expect("underlay port");
            let underlay: IpAddr = format!("192.0.2.{}", i + 1).parse().unwrap();
            let mut hl = Netlink::open_in(host_ns.ns()).expect("netlink in host");
            hl.set_up(1).unwrap();
            let index = hl.link(&uplink).unwrap().expect("uplink").index;
            hl.add_address(index, IpNet::new(underlay, 24).unwrap()).unwrap();
            hl.set_up(index).unwrap();
            let state = TempDir::new("ipam").expect("temp dir");
            let host = Host::builder().netns(host_ns.ns()).ipam_dir(state.path()).build().expect("host");
            hosts.push(OverlayHost { ns: host_ns, underlay, uplink, state, host });
        }
        Underlay { hosts, _ns: ns }
    }

    /// The overlay network's spec as host `i` gives it: the same name, subnet and VNI
    /// everywhere, the other hosts as peers, host `i`'s own /26 of the /24.
    pub(crate) fn spec(&self, i: usize, name: &str) -> NetworkSpec {
        let mut options = OverlayOptions::new(4242, self.hosts[i].underlay);
        for (j, h) in self.hosts.iter().enumerate() {
            if j != i {
                options.peer(h.underlay);
            }
        }
        let mut spec = NetworkSpec::overlay(name.parse().unwrap(), options);
        let range = format!("10.77.0.{}/26", 64 * (i + 1)).parse().unwrap();
        spec.subnet_range("10.77.0.0/24".parse().unwrap(), None, range);
        spec
    }
}

fn v4(ep: &nook_netmodel::Endpoint) -> IpAddr {
    IpAddr::V4(ep.ipv4().expect("an IPv4 address"))
}

/// `ip -s -j link show dev NAME` in `ns`: the link's transmitted bytes.
fn tx_bytes(ns: &NetNs, name: &str) -> u64 {
    let out = ns
        .run(|| Command::new("ip").args(["-s", "-j", "link", "show", "dev", name]).output())
        .unwrap()
        .expect("run ip");
    let v: serde_json::Value = serde_json::from_str(&nook_testutil::success_stdout(out)).expect("ip -j");
    v[0]["stats64"]["tx"]["bytes"].as_u64().expect("tx bytes")
}

/// `ip -d -j link show dev NAME` in `ns`.
fn details(ns: &NetNs, name: &str) -> serde_json::Value {
    let out = ns
        .run(|| Command::new("ip").args(["-d", "-j", "link", "show", "dev", name]).output())
        .unwrap()
        .expect("run ip");
    let v: serde_json::Value = serde_json::from_str(&nook_testutil::success_stdout(out)).expect("ip -j");
    v[0].clone()
}

/// Sends `len` bytes from inside `from` to `to` and returns how many the server counted.
fn bulk(from: &Sandbox, server: &Sandbox, to: SocketAddr, len: usize) -> usize {
    let listener = listen_in(server, to.port());
    let counter = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut n = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).expect("read") {
                0 => break,
                k => n += k,
            }
        }
        n
    });
    from.run(move || {
        let mut s = TcpStream::connect_timeout(&to, PATIENCE).expect("connect");
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&vec![0x5a; len]).expect("send");
    })
    .unwrap();
    counter.join().unwrap()
}

#[test]
fn sandboxes_on_two_hosts_talk_tcp_over_vxlan() {
    require_root!();
    let world = Underlay::new(2);
    let (h0, h1) = (&world.hosts[0], &world.hosts[1]);
    let net0 = Network::create(&h0.host, &world.spec(0, "nk-ov")).unwrap();
    let net1 = Network::create(&h1.host, &world.spec(1, "nk-ov")).unwrap();

    // The VXLAN device: VNI, local address, port, no learning, ARP proxy, MTU 1500 - 50, on
    // the bridge, with one flood entry per peer.
    let vx = net0.spec().driver.clone();
    let nook_netmodel::Driver::Overlay(options) = vx else { panic!("overlay") };
    let vxlan = options.vxlan.clone().unwrap();
    let d = details(&h0.ns, &vxlan);
    let data = &d["linkinfo"]["info_data"];
    assert_eq!(data["id"], 4242, "{d}");
    assert_eq!(data["local"], "192.0.2.1", "{d}");
    assert_eq!(data["port"], 4789, "{d}");
    assert_eq!(data["learning"], false, "{d}");
    assert_eq!(data["proxy"], true, "{d}");
    assert_eq!(d["mtu"], 1450, "{d}");
    assert_eq!(d["master"], net0.bridge().unwrap(), "{d}");
    let flood = net0.overlay_entries().unwrap().fdb;
    assert!(flood.iter().any(|e| e.mac == [0; 6] && e.dst == Some(h1.underlay)), "{flood:?}");

    let mut a = Sandbox::none("ova").unwrap();
    let mut b = Sandbox::none("ovb").unwrap();
    let ea = a.connect(&net0, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net1, &EndpointOptions::new()).unwrap();
    // Each host hands out addresses from its own range only.
    let r0: IpNet = "10.77.0.64/26".parse().unwrap();
    let r1: IpNet = "10.77.0.128/26".parse().unwrap();
    assert!(r0.contains(&v4(&ea)) && r1.contains(&v4(&eb)), "{ea:?} {eb:?}");
    // The sandbox's link has the overlay MTU.
    let eth0 = Netlink::open_in(a.netns()).unwrap().link("eth0").unwrap().unwrap();
    assert_eq!(eth0.mtu, 1450);

    // Nothing programmed yet: host 0 does not know where b is.
    let to_b = SocketAddr::new(v4(&eb), 7100);
    let _unused = listen_in(&b, 7100);
    assert!(try_connect(a.netns(), to_b, Duration::from_millis(500)).is_err(), "reached b without entries");
    drop(_unused);

    // What the other host needs, exchanged as Docker's gossip would.
    let ads_a = net0.advertise(&ea).unwrap();
    let ads_b = net1.advertise(&eb).unwrap();
    assert_eq!(ads_b, [RemoteEndpoint::new(v4(&eb), eb.mac.unwrap(), h1.underlay)]);
    for r in &ads_a {
        net1.add_remote_endpoint(r).unwrap();
    }
    for r in &ads_b {
        net0.add_remote_endpoint(r).unwrap();
    }
    let entries = net0.overlay_entries().unwrap();
    assert!(
        entries.fdb.iter().any(|e| Some(e.mac) == eb.mac && e.dst == Some(h1.underlay) && e.permanent),
        "{entries:?}"
    );
    assert!(entries.neighbours.iter().any(|n| n.ip == v4(&eb) && n.mac == eb.mac && n.permanent), "{entries:?}");

    // TCP across, no NAT; and a bulk transfer (full-size segments fit the encapsulation).
    let vx_before = tx_bytes(&h0.ns, &vxlan);
    let uplink_before = tx_bytes(&h0.ns, &h0.uplink);
    let server = serve_once(listen_in(&b, 7000));
    let answer = talk(a.netns(), SocketAddr::new(v4(&eb), 7000), "over the overlay").unwrap();
    assert_eq!(answer, "echo: over the overlay");
    let (got, peer) = server.join().unwrap();
    assert_eq!(got, "over the overlay");
    assert_eq!(peer.ip(), v4(&ea));
    let len = 2 << 20;
    assert_eq!(bulk(&a, &b, SocketAddr::new(v4(&eb), 7001), len), len);
    // It went through host 0's VXLAN device and out of its underlay link (encapsulated).
    let vx_sent = tx_bytes(&h0.ns, &vxlan) - vx_before;
    let uplink_sent = tx_bytes(&h0.ns, &h0.uplink) - uplink_before;
    assert!(vx_sent >= len as u64, "vxlan sent {vx_sent}");
    assert!(uplink_sent > vx_sent, "underlay sent {uplink_sent}, vxlan {vx_sent}: not encapsulated?");

    // Host 0 refuses an address of its own range as a remote endpoint, and a host that is
    // not a peer; a static address of host 1's range is refused on host 0.
    let own = RemoteEndpoint::new("10.77.0.70".parse().unwrap(), [2, 0, 0, 0, 0, 9], h1.underlay);
    assert!(matches!(net0.add_remote_endpoint(&own), Err(nook_netmodel::Error::Invalid(_))));
    let stranger =
        RemoteEndpoint::new("10.77.0.140".parse().unwrap(), [2, 0, 0, 0, 0, 9], "192.0.2.9".parse().unwrap());
    assert!(matches!(net0.add_remote_endpoint(&stranger), Err(nook_netmodel::Error::Invalid(_))));
    let mut c = Sandbox::none("ovc").unwrap();
    let mut opts = EndpointOptions::new();
    opts.static_ip("10.77.0.130".parse().unwrap());
    let e = c.connect(&net0, &opts).unwrap_err();
    assert!(e.to_string().contains("range"), "{e}");
    drop(c);

    // b leaves: host 1 tells host 0, whose entries for b go.
    b.disconnect(&net1).unwrap();
    for r in &ads_b {
        net0.remove_remote_endpoint(r).unwrap();
    }
    let entries = net0.overlay_entries().unwrap();
    assert!(!entries.fdb.iter().any(|e| Some(e.mac) == eb.mac), "{entries:?}");
    assert!(!entries.neighbours.iter().any(|n| n.ip == v4(&eb)), "{entries:?}");
    assert!(entries.fdb.iter().any(|e| e.mac == [0; 6]), "the flood entry stays: {entries:?}");
    // Removing again is fine.
    net0.remove_remote_endpoint(&ads_b[0]).unwrap();

    a.remove().unwrap();
    b.remove().unwrap();
    net0.remove().unwrap();
    net1.remove().unwrap();
    for h in &world.hosts {
        let mut nl = Netlink::open_in(h.ns.ns()).unwrap();
        crate::common::eventually(
            || nl.links().unwrap().iter().all(|l| l.name == "lo" || l.name == h.uplink),
            "only lo and the uplink left on the host",
        );
        assert!(crate::common::state_files(h.state.path()).is_empty());
    }
}

#[test]
fn three_hosts_reach_each_other() {
    require_root!();
    let world = Underlay::new(3);
    let nets: Vec<Network> =
        (0..3).map(|i| Network::create(&world.hosts[i].host, &world.spec(i, "nk-ov3")).unwrap()).collect();
    let mut sandboxes: Vec<Sandbox> = (0..3).map(|i| Sandbox::none(&format!("ov3-{i}")).unwrap()).collect();
    let eps: Vec<_> =
        sandboxes.iter_mut().zip(&nets).map(|(s, n)| s.connect(n, &EndpointOptions::new()).unwrap()).collect();
    for (i, n) in nets.iter().enumerate() {
        for r in n.advertise(&eps[i]).unwrap() {
            for (j, other) in nets.iter().enumerate() {
                if i != j {
                    other.add_remote_endpoint(&r).unwrap();
                }
            }
        }
    }
    for i in 0..3 {
        let j = (i + 1) % 3;
        let port = 7200 + i as u16;
        let server = serve_once(listen_in(&sandboxes[j], port));
        let to = SocketAddr::new(v4(&eps[j]), port);
        assert_eq!(talk(sandboxes[i].netns(), to, "hop").unwrap(), "echo: hop");
        assert_eq!(server.join().unwrap().1.ip(), v4(&eps[i]));
    }
    drop(sandboxes);
    for n in nets {
        n.remove().unwrap();
    }
}

#[test]
fn recreate_replaces_a_left_overlay() {
    require_root!();
    let world = Underlay::new(2);
    let h0 = &world.hosts[0];
    let spec = world.spec(0, "nk-ovr");
    let net = Network::create(&h0.host, &spec).unwrap();
    let nook_netmodel::Driver::Overlay(options) = net.spec().driver.clone() else { panic!("overlay") };
    let vxlan = options.vxlan.unwrap();
    let old = Netlink::open_in(h0.ns.ns()).unwrap().link(&vxlan).unwrap().expect("vxlan").index;
    // Another handle (as another process would) attaches to what is built.
    let other = Network::open(&h0.host, "nk-ovr").unwrap();
    assert_eq!(other.spec(), net.spec());
    assert!(other.overlay_entries().is_ok());
    assert!(!other.release().unwrap());
    // Left behind (as by a process that crashed): the bridge and the VXLAN device stay.
    net.leave().unwrap();
    assert!(matches!(Network::create(&h0.host, &spec), Err(nook_netmodel::Error::NetworkExists { .. })));
    let net = Network::recreate(&h0.host, &spec).unwrap();
    let new = Netlink::open_in(h0.ns.ns()).unwrap().link(&vxlan).unwrap().expect("vxlan again");
    assert_ne!(new.index, old, "a new device");
    assert_eq!(new.mtu, 1450);
    assert!(
        net.overlay_entries().unwrap().fdb.iter().any(|e| e.mac == [0; 6] && e.dst == Some(world.hosts[1].underlay))
    );
    net.remove().unwrap();
    let mut nl = Netlink::open_in(h0.ns.ns()).unwrap();
    assert!(nl.links().unwrap().iter().all(|l| l.name == "lo" || l.name == h0.uplink));
}

#[test]
fn dual_stack_endpoints_share_one_fdb_entry() {
    require_root!();
    let world = Underlay::new(2);
    let specs: Vec<NetworkSpec> = (0..2)
        .map(|i| {
            let mut spec = world.spec(i, "nk-ov6");
            let range = format!("fd77::{}:0/112", i + 1).parse().unwrap();
            spec.subnet_range("fd77::/64".parse().unwrap(), None, range);
            spec
        })
        .collect();
    let net0 = Network::create(&world.hosts[0].host, &specs[0]).unwrap();
    let net1 = Network::create(&world.hosts[1].host, &specs[1]).unwrap();
    let mut a = Sandbox::none("ov6a").unwrap();
    let mut b = Sandbox::none("ov6b").unwrap();
    let ea = a.connect(&net0, &EndpointOptions::new()).unwrap();
    let eb = b.connect(&net1, &EndpointOptions::new()).unwrap();
    let b6 = IpAddr::V6(eb.ipv6().expect("an IPv6 address"));
    assert!("fd77::2:0/112".parse::<IpNet>().unwrap().contains(&b6), "{b6}");
    let ads_b = net1.advertise(&eb).unwrap();
    assert_eq!(ads_b.len(), 2, "one per address: {ads_b:?}");
    for r in net0.advertise(&ea).unwrap() {
        net1.add_remote_endpoint(&r).unwrap();
    }
    for r in &ads_b {
        net0.add_remote_endpoint(r).unwrap();
    }
    // TCP over IPv6 across the overlay (neighbour discovery answered by the VXLAN proxy).
    let listener = b.run(|| std::net::TcpListener::bind("[::]:7400")).unwrap().unwrap();
    let server = serve_once(listener);
    assert_eq!(talk(a.netns(), SocketAddr::new(b6, 7400), "six").unwrap(), "echo: six");
    assert_eq!(server.join().unwrap().1.ip(), IpAddr::V6(ea.ipv6().unwrap()));

    // Removing the IPv4 one keeps the MAC's FDB entry for the IPv6 one; removing both drops it.
    let v4_ad = ads_b.iter().find(|r| r.ip.is_ipv4()).unwrap();
    net0.remove_remote_endpoint(v4_ad).unwrap();
    let entries = net0.overlay_entries().unwrap();
    assert!(entries.fdb.iter().any(|e| Some(e.mac) == eb.mac), "{entries:?}");
    assert!(!entries.neighbours.iter().any(|n| n.ip == v4_ad.ip), "{entries:?}");
    assert!(entries.neighbours.iter().any(|n| n.ip == b6), "{entries:?}");
    for r in &ads_b {
        net0.remove_remote_endpoint(r).unwrap();
    }
    let entries = net0.overlay_entries().unwrap();
    assert!(!entries.fdb.iter().any(|e| Some(e.mac) == eb.mac), "{entries:?}");
    assert!(!entries.neighbours.iter().any(|n| n.ip == b6), "{entries:?}");
    drop((a, b));
    net0.remove().unwrap();
    net1.remove().unwrap();
}
