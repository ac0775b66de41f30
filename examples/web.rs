//! Two sandboxes on a bridge network: `web` serves HTTP (busybox `httpd`) on a port it
//! publishes, `client` fetches the page by name, and so does the host side through the
//! published port.
//!
//! ```text
//! sudo cargo run --example web
//! ```
//!
//! Everything network — the bridge, the nftables rules, the IPAM state — is made inside a
//! fresh network namespace that plays the host (and a temporary directory): running it
//! changes nothing on the machine's own network, and the sandboxes and the network are
//! removed at the end. The sandboxes run over the host's root, read-only with a tmpfs upper,
//! so they use the host's `/bin/busybox` (Debian: `busybox-static`). Needs root.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nook_netmodel::firewall::PortMapping;
use nook_netmodel::netlink::Netlink;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec};
use nook_ns::NetNs;
use nook_sandbox::Sandbox;

type BoxError = Box<dyn std::error::Error>;

const BUSYBOX: &str = "/bin/busybox";

fn main() -> Result<(), BoxError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("this example creates network namespaces, links and nftables rules: run it as root");
        std::process::exit(2);
    }
    if !std::path::Path::new(BUSYBOX).exists() {
        eprintln!("this example runs {BUSYBOX} in the sandboxes (Debian: apt-get install busybox-static)");
        std::process::exit(2);
    }
    // The host side: a private network namespace that plays it, with its loopback up.
    let host_ns = NetNs::new()?;
    Netlink::open_in(host_ns.ns())?.set_up(1)?;
    let state = std::env::temp_dir().join(format!("nk-web-example-{}", std::process::id()));
    let host = Host::builder().netns(host_ns.ns()).ipam_dir(state.join("ipam")).build()?;
    let result = run(&host, &host_ns);
    drop(host);
    let _ = std::fs::remove_dir_all(&state);
    result
}

fn run(host: &Host, host_ns: &NetNs) -> Result<(), BoxError> {
    // docker network create --subnet 10.89.7.0/24 nk-web
    let mut spec = NetworkSpec::bridge("nk-web".parse()?);
    spec.subnet("10.89.7.0/24".parse()?, None);
    let network = Network::create(host, &spec)?;
    println!("network {:?}: bridge {:?}, gateway {:?}", network.name(), network.bridge(), network.gateways());

    // docker run -d --network nk-web --hostname web -p 8080:80 ... httpd
    let mut web_options = EndpointOptions::new();
    web_options.port(PortMapping::tcp(8080, 80));
    let web = Sandbox::builder().hostname("web").connect(&network, web_options).create()?;
    let endpoint = &web.endpoints()[0];
    println!("sandbox web:    {} on {}, publishes 8080 -> 80/tcp", endpoint.addresses[0], endpoint.ifname);
    let page = "<h1>hello from the web sandbox</h1>";
    let mut server = web
        .exec([
            BUSYBOX,
            "sh",
            "-c",
            &format!("mkdir -p /srv && echo '{page}' >/srv/index.html && exec {BUSYBOX} httpd -f -p 80 -h /srv"),
        ])
        .spawn()?;

    // docker run --rm --network nk-web --hostname client ... wget http://web/
    // (retried until the server listens: it was started just now).
    let script = format!(
        "echo \"client is $(hostname), resolving web through $(grep nameserver /etc/resolv.conf)\"; \
         for i in $(seq 100); do {BUSYBOX} wget -q -O - http://web/ && exit 0; sleep 0.1; done; exit 1"
    );
    let out = Sandbox::builder()
        .hostname("client")
        .connect(&network, EndpointOptions::new())
        .command(BUSYBOX)
        .args(["sh", "-c", &script])
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.outcome.success() {
        return Err(format!("the client failed: {:?}: {}", out.outcome, String::from_utf8_lossy(&out.stderr)).into());
    }

    // The host side -> the published port, like `curl localhost:8080` (DNAT to web:80).
    let published = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
    let response = host_ns.run(move || http_get(published))??;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    println!("host -> {published} (published): {} -> {body}", response.lines().next().unwrap_or_default());

    // Teardown: the server, the sandbox (published-port rules, address, namespace), the
    // network (bridge, firewall chains, IPAM registration).
    server.kill()?;
    server.wait()?;
    drop(server);
    web.remove()?;
    network.remove()?;
    println!("removed the sandboxes and the network");
    Ok(())
}

/// `GET /` over HTTP/1.0, retried for a while if the connection is refused.
fn http_get(to: SocketAddr) -> std::io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
            Ok(mut stream) => {
                stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                return Ok(response);
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
