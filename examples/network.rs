//! Two sandboxes on a user-defined bridge network talk to each other; one publishes a port
//! that the host side connects to.
//!
//! ```text
//! cargo run --example network              # inside a private namespace that plays the host
//! cargo run --example network -- --real-host   # against this machine's own namespace
//! ```
//!
//! By default everything — the bridge, the nftables rules, `ip_forward`, the IPAM state — is
//! made inside a fresh network namespace that plays the host, and the IPAM state goes to a
//! temporary directory: running it changes nothing on the machine. With `--real-host` the
//! bridge and rules are made in the caller's own network namespace and the state goes to
//! `/run/nook/ipam`, as a real embedding program would do (all of it is removed at the end).
//! Needs root.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nook_netmodel::firewall::PortMapping;
use nook_netmodel::netlink::Netlink;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("this example creates network namespaces, links and nftables rules: run it as root");
        std::process::exit(2);
    }
    let real_host = std::env::args().any(|a| a == "--real-host");

    // The host side: the caller's namespace, or a private one that plays it.
    let private_host = if real_host { None } else { Some(private_host()?) };
    let state = std::env::temp_dir().join(format!("nk-network-example-{}", std::process::id()));
    let host = match &private_host {
        Some(ns) => Host::builder().netns(ns.ns()).ipam_dir(state.join("ipam")).build()?,
        None => Host::current()?,
    };
    let result = run(&host, private_host.as_ref());
    drop(host);
    let _ = std::fs::remove_dir_all(&state);
    result
}

fn run(host: &Host, private_host: Option<&NetNs>) -> Result<(), BoxError> {
    println!(
        "host side: {}",
        if private_host.is_some() { "a private network namespace" } else { "this machine's network namespace" }
    );

    // docker network create --subnet 10.89.0.0/24 nk-example
    let mut spec = NetworkSpec::bridge("nk-example".parse().unwrap());
    spec.subnet("10.89.0.0/24".parse()?, None).bridge_name("nkexbr0");
    let network = Network::create(host, &spec)?;
    println!("network {:?}: bridge {:?}, gateway {:?}", network.name(), network.bridge(), network.gateways());

    // docker run --network nk-example --name web -p 8080:80 ...
    let mut web = Sandbox::none("web")?;
    let mut web_options = EndpointOptions::new();
    web_options.port(PortMapping::tcp(8080, 80));
    let web_ep = web.connect(&network, &web_options)?;
    // docker run --network nk-example --name client ...
    let mut client = Sandbox::none("client")?;
    let client_ep = client.connect(&network, &EndpointOptions::new())?;
    let web_ip = web_ep.ipv4().ok_or("web has no IPv4 address")?;
    let client_ip = client_ep.ipv4().ok_or("client has no IPv4 address")?;
    println!(
        "sandbox web:    {} on {} (veth {:?}), publishes 8080 -> 80/tcp",
        web_ip, web_ep.ifname, web_ep.host_ifname
    );
    println!("sandbox client: {} on {} (veth {:?})", client_ip, client_ep.ifname, client_ep.host_ifname);

    // A server in `web` on port 80 that answers every connection with what it read, reversed.
    let listener = web.run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)))??;
    let server = std::thread::spawn(move || -> std::io::Result<Vec<String>> {
        let mut log = Vec::new();
        for _ in 0..2 {
            let (mut stream, peer) = listener.accept()?;
            let mut line = String::new();
            stream.read_to_string(&mut line)?;
            let reply: String = line.chars().rev().collect();
            stream.write_all(reply.as_bytes())?;
            log.push(format!("web got {line:?} from {peer}, answered {reply:?}"));
        }
        Ok(log)
    });

    // client -> web over the bridge.
    let to_web = SocketAddr::new(IpAddr::V4(web_ip), 80);
    let answer = client.run(move || exchange(to_web, "hello from client"))??;
    println!("client -> {to_web}: sent \"hello from client\", got {answer:?}");

    // The host side -> the published port, like `curl localhost:8080` (DNAT to web:80).
    let published = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
    let answer = match private_host {
        Some(ns) => ns.run(move || exchange(published, "hello from the host"))??,
        None => exchange(published, "hello from the host")?,
    };
    println!("host -> {published} (published): sent \"hello from the host\", got {answer:?}");

    for line in server.join().map_err(|_| "server thread panicked")?? {
        println!("{line}");
    }
    println!("\n/etc/hosts of client:\n{}", client.hosts_file()?);

    // Teardown: rules, then addresses, then the namespaces (the kernel deletes the veths).
    web.remove()?;
    client.remove()?;
    network.remove()?;
    println!("removed the sandboxes and the network");
    Ok(())
}

/// A fresh network namespace to play the host, with its loopback up.
fn private_host() -> Result<NetNs, BoxError> {
    let ns = NetNs::new()?;
    let mut netlink = Netlink::open_in(ns.ns())?;
    let lo = netlink.link("lo")?.ok_or("no lo in a new namespace")?;
    netlink.set_up(lo.index)?;
    Ok(ns)
}

fn exchange(to: SocketAddr, message: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.write_all(message.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
