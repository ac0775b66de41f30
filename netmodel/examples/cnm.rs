//! The Container Network Model end to end, in private namespaces only: a network namespace
//! plays the host (linked by a veth to another playing the outside world), a bridge network
//! is created on it, two sandboxes join it, one publishes a port; then a client in the outside
//! world reaches the published port, a sandbox reaches the outside through masquerade, and the
//! sandboxes' `/etc/hosts` list each other. Everything goes away at the end.
//!
//! Run as root: `cargo run -p nook-netmodel --example cnm`. Needs the `nft` binary. Nothing
//! is changed in the machine's own network namespace; IPAM state goes to a temp dir.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use nook_netmodel::firewall::{PortMapping, Protocol};
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink, Route};
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::{NetNs, NsFd};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "creating network namespaces needs root: run `sudo cargo run -p nook-netmodel --example cnm`".into()
        );
    }
    let (host_ns, outside) = (NetNs::new()?, NetNs::new()?);
    link_up_the_world(&host_ns, &outside)?;
    let state = std::env::temp_dir().join(format!("nk-cnm-example-{}", std::process::id()));
    let result = demo(&host_ns, &outside, &state);
    let _ = std::fs::remove_dir_all(&state);
    result
}

fn demo(host_ns: &NetNs, outside: &NetNs, state: &std::path::Path) -> Res<()> {
    let host = Host::builder().netns(host_ns.ns()).ipam_dir(state).build()?;

    let mut spec = NetworkSpec::bridge("nk-demo");
    spec.subnet("10.77.0.0/24".parse()?, None);
    let network = Network::create(&host, &spec)?;
    println!(
        "network {} on bridge {}, gateway {:?}",
        network.name(),
        network.bridge().unwrap_or("?"),
        network.gateways()
    );

    let mut web = Sandbox::none("web")?;
    let mut opts = EndpointOptions::new();
    opts.alias("www").port(PortMapping { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, container_port: 80 });
    let ep = web.connect(&network, &opts)?;
    println!(
        "web: {} {} (host end {}), publishes :8080 -> :80",
        ep.ifname,
        ep.addresses[0],
        ep.host_ifname.as_deref().unwrap_or("-")
    );

    let mut client = Sandbox::none("client")?;
    let ep = client.connect(&network, &EndpointOptions::new())?;
    println!("client: {} {}", ep.ifname, ep.addresses[0]);

    // A server in `web`; the outside world calls the host's published port.
    let listener = web.run(|| TcpListener::bind("0.0.0.0:80"))??;
    let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        conn.write_all(b"hello from web\n")?;
        Ok(peer)
    });
    let answer = fetch(outside.ns(), SocketAddr::new(HOST_IP.into(), 8080))?;
    let peer = server.join().map_err(|_| "server thread panicked")??;
    println!("outside -> {HOST_IP}:8080 answered {answer:?} (web saw the caller as {peer})");

    // The client goes out; the outside world sees the host's address (masquerade).
    let listener = outside.run(|| TcpListener::bind((OUTSIDE_IP, 9000)))??;
    let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        conn.write_all(b"hello from outside\n")?;
        Ok(peer)
    });
    let answer = fetch(client.netns(), SocketAddr::new(OUTSIDE_IP.into(), 9000))?;
    let peer = server.join().map_err(|_| "server thread panicked")??;
    println!("client -> {OUTSIDE_IP}:9000 answered {answer:?} (the outside saw {peer})");

    println!("--- /etc/hosts for client ---\n{}", client.hosts_file()?);

    client.remove()?;
    web.remove()?;
    network.remove()?;
    println!("removed: sandboxes, rules, bridge, IPAM registration");
    Ok(())
}

/// Connects from inside `ns` and reads the whole answer.
fn fetch(ns: &NsFd, addr: SocketAddr) -> Res<String> {
    let answer = nook_ns::run_in(&[ns], move || -> std::io::Result<String> {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        let mut s = String::new();
        conn.read_to_string(&mut s)?;
        Ok(s.trim_end().to_owned())
    })??;
    Ok(answer)
}

/// host `198.51.100.1/24` <-veth-> outside `198.51.100.2/24`; the host's default route goes
/// to the outside; `lo` up in both.
fn link_up_the_world(host_ns: &NetNs, outside: &NetNs) -> Res<()> {
    let mut nl = Netlink::open_in(host_ns.ns())?;
    nl.set_up(1)?;
    let mut link = NewLink::new(
        "nkup0",
        LinkKind::Veth { peer_name: "nkup1", peer_netns: Some(outside.ns().as_fd()), peer_mtu: None, peer_mac: None },
    );
    link.up = true;
    let index = nl.add_link(&link)?.ok_or("uplink index")?;
    nl.add_address(index, format!("{HOST_IP}/24").parse()?)?;
    nl.add_route(&Route { destination: None, gateway: Some(IpAddr::V4(OUTSIDE_IP)), oif: Some(index), ipv6: false })?;
    let mut nl = Netlink::open_in(outside.ns())?;
    nl.set_up(1)?;
    let index = nl.link("nkup1")?.ok_or("uplink peer")?.index;
    nl.add_address(index, format!("{OUTSIDE_IP}/24").parse()?)?;
    nl.set_up(index)?;
    Ok(())
}
