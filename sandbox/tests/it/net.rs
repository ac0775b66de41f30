//! Sandboxes on `nook-netmodel` networks, against the real kernel. Everything network lives
//! in a private namespace each test creates to play the host (`Host::builder().netns`); the
//! machine's own namespace is never touched. Each test ends by checking that nothing is
//! left: no link but `lo` in the host namespace, no nftables ruleset there but the one it
//! started with, no IPAM state, no `/etc` files directory of this process, no cgroup.
//!
//! The host namespace's sysctls are set, not inherited from the machine
//! ([`nook_testutil::set_host_state`]): quiet by default, a busy container host's (forwarding
//! on, strict `rp_filter`, foreign nftables tables) with `NK_UNFRIENDLY_HOST=1`, and always so
//! for `the_bridge_scenario_holds_on_an_unfriendly_host`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nook_netmodel::firewall::PortMapping;
use nook_netmodel::netlink::Netlink;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec};
use nook_ns::NetNs;
use nook_sandbox::{Error, NetworkConfig, NetworkMode, Outcome, Sandbox, SandboxBuilder, SandboxSpec, ValidationError};
use nook_testutil::{HostState, TempDir, require_root, set_host_state, unique_name};

/// How long a test waits for something that should happen (a bound so a broken setup fails
/// instead of hanging; not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(10);

/// A private namespace playing the host, with IPAM state in a temp dir.
struct World {
    ns: NetNs,
    state: TempDir,
    host: Host,
    /// The host namespace's ruleset before the test (empty on a quiet host).
    baseline: String,
}

impl World {
    /// A host namespace in the state `NK_UNFRIENDLY_HOST` asks for (quiet by default).
    fn new() -> World {
        World::on(HostState::from_env())
    }

    /// A host namespace put in `start` before anything else happens in it.
    fn on(start: HostState) -> World {
        let ns = NetNs::new().expect("host netns");
        ns.run(|| set_host_state(start)).expect("enter host netns");
        Netlink::open_in(ns.ns()).expect("netlink").set_up(1).expect("lo up");
        let state = TempDir::new("ipam").expect("temp dir");
        let host = Host::builder().netns(ns.ns()).ipam_dir(state.path()).build().expect("host");
        let mut world = World { ns, state, host, baseline: String::new() };
        world.baseline = world.ruleset();
        world
    }

    /// A sysctl of the host namespace (path under `/proc/sys/`).
    fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{key}");
        self.ns.run(|| std::fs::read_to_string(&path)).unwrap().unwrap().trim().to_owned()
    }

    fn bridge(&self, subnet: &str) -> Network {
        self.network(subnet, false)
    }

    fn network(&self, subnet: &str, internal: bool) -> Network {
        let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
        spec.subnet(subnet.parse().unwrap(), None);
        spec.internal(internal);
        Network::create(&self.host, &spec).expect("network")
    }

    fn links(&self) -> Vec<String> {
        Netlink::open_in(self.ns.ns()).unwrap().links().unwrap().into_iter().map(|l| l.name).collect()
    }

    fn ruleset(&self) -> String {
        let out = self
            .ns
            .run(|| std::process::Command::new("nft").args(["list", "ruleset"]).output())
            .expect("enter host netns")
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state_files(&self) -> Vec<String> {
        std::fs::read_dir(self.state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The lock files (IPAM's, netmodel's network registry's) stay.
            .filter(|n| n != ".lock" && n != ".networks.lock")
            .collect()
    }

    /// Waits until only `lo` is left, with no ruleset but the baseline, no IPAM state and no files of ours
    /// (links die with their namespaces, asynchronously).
    fn assert_clean(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (links, rules, state, files) = (self.links(), self.ruleset(), self.state_files(), our_files());
            if links == ["lo"] && rules == self.baseline && state.is_empty() && files.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: links {links:?}, ruleset {rules:?}, IPAM {state:?}, files {files:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// This process's per-sandbox `/etc` file directories.
fn our_files() -> Vec<String> {
    let prefix = format!("nk-{}-", std::process::id());
    match std::fs::read_dir(nook_sandbox::net::NET_FILES_DIR) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Tests that count this process's files and links run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sh(script: &str) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.command("/bin/sh").args(["-c", script]);
    b
}

fn ok(b: &mut SandboxBuilder) -> String {
    let out = b.output().expect("sandbox run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.outcome, Outcome::Exited(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout.into_owned()
}

/// An HTTP/1.0 GET from the host namespace, retried until the server answers.
fn http_get_from(ns: &NetNs, addr: SocketAddr) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = ns
            .run(move || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            })
            .expect("enter host netns");
        match got {
            Ok(body) if !body.is_empty() => return body,
            Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("GET {addr} from the host: {other:?}"),
        }
    }
}

/// `sh` script: fetch `url` with busybox wget, retrying until the server is up.
fn wget(url: &str) -> String {
    format!("(for i in $(seq 100); do busybox wget -q -O - {url} && exit 0; sleep 0.1; done; exit 1)")
}

#[test]
fn two_sandboxes_on_a_bridge_talk_and_the_published_port_reaches_the_server() {
    require_root!();
    let _serial = serial();
    bridge_scenario(&World::new());
}

/// Issue 19: the same on a host namespace that starts like a busy container host —
/// forwarding on, strict `rp_filter`, `bridge-nf-call-*` on where `br_netfilter` is loaded,
/// someone else's nftables tables on every hook — whatever `NK_UNFRIENDLY_HOST` says. nook
/// leaves what is not its own (the foreign tables, the host's sysctls) as it found it.
#[test]
fn the_bridge_scenario_holds_on_an_unfriendly_host() {
    require_root!();
    let _serial = serial();
    let world = World::on(HostState::Unfriendly);
    assert!(world.baseline.contains("nkforeign"), "{}", world.baseline);
    let keys = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/rp_filter"];
    for key in keys {
        assert_eq!(world.sysctl(key), "1", "{key} before");
    }
    bridge_scenario(&world);
    for key in keys {
        assert_eq!(world.sysctl(key), "1", "{key}: nook left the host's setting alone");
    }
}

/// Two sandboxes on a bridge, one serving HTTP on a published port; ends clean.
fn bridge_scenario(world: &World) {
    let net = world.bridge("10.131.1.0/24");
    let mut web_opts = EndpointOptions::new();
    web_opts.port(PortMapping::tcp(8080, 80)).alias("www");
    let web = Sandbox::builder().hostname("web").connect(&net, web_opts).create().expect("web");
    let eps = web.endpoints();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].ifname, "eth0");
    let web_ip = eps[0].ipv4().expect("an IPv4 address");
    let mut server = web
        .exec([
            "/bin/sh",
            "-c",
            "mkdir -p /srv && echo hello-from-web >/srv/index.html && exec busybox httpd -f -p 80 -h /srv",
        ])
        .spawn()
        .expect("httpd");

    // The kernel's view inside: eth0 with the endpoint's address.
    let inside = web.exec(["busybox", "ip", "-o", "-4", "addr", "show", "eth0"]).output().unwrap();
    let inside = String::from_utf8_lossy(&inside.stdout);
    assert!(inside.contains(&format!("{web_ip}/24")), "{inside}");

    // The other sandbox finds `web` (and its alias) through the embedded DNS server — not in
    // its /etc/hosts, which lists no peer then, as with Docker — and fetches the page.
    let out = ok(sh(&format!("cat /etc/hosts; {} && {}", wget("http://web/"), wget("http://www/index.html")))
        .hostname("client")
        .connect(&net, EndpointOptions::new()));
    assert!(out.contains("\tclient") && !out.contains(&format!("{web_ip}")), "client's /etc/hosts:\n{out}");
    assert_eq!(out.matches("hello-from-web").count(), 2, "{out}");

    // The host reaches it through the published port (DNAT on the host's own address).
    let gateway = net.gateways()[0];
    let body = http_get_from(&world.ns, SocketAddr::new(gateway, 8080));
    assert!(body.contains("hello-from-web"), "{body}");
    // The rules exist while it runs, and go with it.
    assert!(world.ruleset().contains("8080"), "{}", world.ruleset());

    let _ = server.kill();
    let _ = server.wait();
    drop(server);
    web.remove().expect("remove web");
    net.remove().expect("remove network");
    world.assert_clean();
}

#[test]
fn two_networks_give_two_interfaces_and_etc_files() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let (front, back) = (world.bridge("10.131.2.0/24"), world.bridge("10.131.3.0/24"));
    let mut back_opts = EndpointOptions::new();
    back_opts.static_ip("10.131.3.77".parse().unwrap());
    let mut dns = nook_netmodel::files::DnsConfig::default();
    dns.nameservers.push("192.0.2.53".parse().unwrap());
    dns.search.push("nk.test".into());
    let out = ok(sh("ls /sys/class/net; busybox ip -o -4 addr; cat /etc/resolv.conf; busybox ip route")
        .hostname("twice")
        .connect(&front, EndpointOptions::new())
        .connect(&back, back_opts)
        .dns(dns));
    let names: Vec<&str> = out.lines().take(3).collect();
    assert_eq!(names, ["eth0", "eth1", "lo"], "{out}");
    assert!(out.contains("eth0") && out.contains("10.131.2."), "{out}");
    assert!(out.contains("eth1") && out.contains("10.131.3.77/24"), "{out}");
    // On user-defined networks the embedded server stays the resolver and forwards to the
    // given servers (Docker's `--dns`); search domains are written as given.
    assert!(out.contains("nameserver 127.0.0.11") && out.contains("search nk.test"), "{out}");
    assert!(!out.contains("nameserver 192.0.2.53"), "{out}");
    assert!(out.contains("default via 10.131.2.1 dev eth0"), "the first network carries the default route:\n{out}");
    front.remove().unwrap();
    back.remove().unwrap();
    world.assert_clean();
}

#[test]
fn a_spec_naming_networks_round_trips_and_finds_them_by_name() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let net = world.bridge("10.131.4.0/24");
    let mut config = NetworkConfig::new();
    config.attach(net.name(), EndpointOptions::new());
    let mut spec = SandboxSpec::default();
    spec.args = vec!["/bin/sh".into(), "-c".into(), "busybox ip -o -4 addr show eth0".into()];
    spec.network = NetworkMode::Networks(config);
    let json = serde_json::to_string(&spec).unwrap();
    let spec: SandboxSpec = serde_json::from_str(&json).unwrap();
    let out = ok(SandboxBuilder::from_spec(spec).use_network(&net));
    assert!(out.contains("10.131.4."), "{out}");
    net.remove().unwrap();
    world.assert_clean();
}

#[test]
fn bad_network_specs_are_typed_and_create_nothing() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let net = world.bridge("10.131.5.0/24");
    let internal = world.network("10.131.6.0/24", true);
    let before = (world.links(), world.ruleset(), world.state_files());
    let invalid = |b: &mut SandboxBuilder| -> ValidationError {
        match b.output() {
            Err(Error::Invalid(v)) => v,
            other => panic!("expected a validation error, got {other:?}"),
        }
    };

    // A network the builder has no handle for.
    let mut config = NetworkConfig::new();
    config.attach("nk-nosuchnet", EndpointOptions::new());
    let v = invalid(sh("true").network(NetworkMode::Networks(config)));
    assert!(matches!(&v, ValidationError::UnknownNetwork { network } if network == "nk-nosuchnet"), "{v:?}");
    // No network at all.
    let v = invalid(sh("true").network(NetworkMode::Networks(NetworkConfig::new())));
    assert!(matches!(v, ValidationError::NoNetworks), "{v:?}");
    // Port 0.
    let mut o = EndpointOptions::new();
    o.port(PortMapping::tcp(0, 80));
    let v = invalid(sh("true").connect(&net, o));
    assert!(matches!(&v, ValidationError::NetworkOption { network, .. } if network == net.name()), "{v:?}");
    // A static address outside the subnet.
    let mut o = EndpointOptions::new();
    o.static_ip("10.99.0.5".parse().unwrap());
    let v = invalid(sh("true").connect(&net, o));
    assert!(matches!(&v, ValidationError::NetworkOption { .. }), "{v:?}");
    // Ports on an internal network.
    let mut o = EndpointOptions::new();
    o.port(PortMapping::tcp(8081, 80));
    let v = invalid(sh("true").connect(&internal, o));
    assert!(matches!(&v, ValidationError::PortsUnsupported { .. }), "{v:?}");
    // The same network twice.
    let v = invalid(sh("true").connect(&net, EndpointOptions::new()).connect(&net, EndpointOptions::new()));
    assert!(matches!(&v, ValidationError::DuplicateNetwork { .. }), "{v:?}");
    // Networks without a network namespace of its own.
    let mut config = NetworkConfig::new();
    config.attach(net.name(), EndpointOptions::new());
    let v = invalid(
        sh("true")
            .network(NetworkMode::Networks(config))
            .namespaces(nook_ns::NamespaceSet::CONTAINER.without(nook_ns::Namespace::Net)),
    );
    assert!(matches!(v, ValidationError::NamespaceConflict { .. }), "{v:?}");

    assert_eq!((world.links(), world.ruleset(), world.state_files()), before, "a refused spec changed the host");
    assert!(our_files().is_empty());
    net.remove().unwrap();
    internal.remove().unwrap();
    world.assert_clean();
}

#[test]
fn a_failure_while_connecting_undoes_everything() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let net = world.bridge("10.131.7.0/24");
    let mut o = EndpointOptions::new();
    o.port(PortMapping::tcp(8090, 80));
    let first = Sandbox::builder().connect(&net, o.clone()).create().expect("first");
    let links_with_first = world.links();
    // The second publishes the same host port: refused while connecting (after the clone),
    // and everything it did so far is undone.
    let err = Sandbox::builder().connect(&net, o).create().expect_err("the host port is taken");
    assert!(!matches!(err, Error::Cleanup { .. }), "undoing failed too: {err}");
    assert!(matches!(err, Error::Netmodel(_)), "{err:?}");
    let deadline = Instant::now() + PATIENCE;
    while world.links() != links_with_first {
        assert!(Instant::now() < deadline, "links left: {:?}", world.links());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(our_files().len(), 1, "only the first sandbox's files");
    first.remove().unwrap();
    net.remove().unwrap();
    world.assert_clean();
}

#[test]
fn a_one_shot_run_tears_its_endpoint_down() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let net = world.bridge("10.131.8.0/24");
    let mut o = EndpointOptions::new();
    o.port(PortMapping::udp(5353, 53));
    let mut b = sh("exit 3");
    b.connect(&net, o);
    assert_eq!(b.status().expect("run"), Outcome::Exited(3));
    // With the run over, its address is free again: a static request for it succeeds.
    let gateway: IpAddr = net.gateways()[0];
    assert_eq!(gateway, "10.131.8.1".parse::<IpAddr>().unwrap());
    let mut again = EndpointOptions::new();
    again.static_ip("10.131.8.2".parse().unwrap());
    let out = ok(sh("busybox ip -o -4 addr show eth0").connect(&net, again));
    assert!(out.contains("10.131.8.2/24"), "{out}");
    net.remove().unwrap();
    world.assert_clean();
}

/// The inode of a process's network namespace, as `readlink /proc/PID/ns/net` shows it.
fn netns_link(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn container_mode_shares_the_other_sandboxs_interfaces_and_files() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let net = world.bridge("10.131.9.0/24");
    let owner = Sandbox::builder().hostname("owner").connect(&net, EndpointOptions::new()).create().expect("owner");
    let owner_ip = owner.endpoints()[0].ipv4().unwrap();

    // A one-shot run in the owner's namespace: the same namespace (inode), its eth0 and
    // address, its /etc/hosts.
    let out = ok(sh("readlink /proc/self/ns/net; ls /sys/class/net; busybox ip -o -4 addr show eth0; cat /etc/hosts")
        .network_container(&owner));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], netns_link(owner.id()), "not the owner's network namespace:\n{out}");
    assert_eq!(&lines[1..3], ["eth0", "lo"], "{out}");
    assert!(out.contains(&format!("{owner_ip}/24")), "{out}");
    assert!(out.contains(&format!("{owner_ip}\towner")), "the owner's /etc/hosts:\n{out}");

    // A long-lived one: `exec` joins the same namespace too.
    let joined = Sandbox::builder().network_container(&owner).create().expect("joined");
    assert_eq!(netns_link(joined.id()), netns_link(owner.id()));
    let got = joined.exec(["readlink", "/proc/self/ns/net"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), netns_link(owner.id()));
    assert!(joined.endpoints().is_empty(), "the endpoints are the owner's");
    joined.remove().unwrap();
    owner.remove().unwrap();
    net.remove().unwrap();
    world.assert_clean();
}

#[test]
fn container_mode_of_a_sandbox_without_networks_shares_its_loopback_only_namespace() {
    require_root!();
    let _serial = serial();
    let owner = Sandbox::builder().create().expect("owner");
    let out = ok(sh("readlink /proc/self/ns/net; ls /sys/class/net").network_container(&owner));
    assert_eq!(out.lines().collect::<Vec<_>>(), [netns_link(owner.id()).as_str(), "lo"], "{out}");
    assert_ne!(netns_link(owner.id()), netns_link(std::process::id()));

    // Docker's refusals: a host name of its own, a network namespace of its own.
    let refused = sh("true").network_container(&owner).hostname("mine").output();
    assert!(
        matches!(refused, Err(Error::Invalid(ValidationError::ContainerNetworkConflict { option: "hostname" }))),
        "{refused:?}"
    );
    let refused = sh("true").network_container(&owner).namespaces(nook_ns::NamespaceSet::CONTAINER).output();
    assert!(matches!(refused, Err(Error::Invalid(ValidationError::NamespaceConflict { .. }))), "{refused:?}");
    owner.remove().unwrap();
    assert!(our_files().is_empty());
}

#[test]
fn sandboxes_on_a_macvlan_network_reach_each_other() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    // A link of the private host as the macvlan parent: a dummy, or a veth pair (both ends
    // up) where the kernel has no dummy driver.
    use nook_netmodel::netlink::{LinkKind, NewLink};
    let parent = unique_name("par");
    let mut nl = Netlink::open_in(world.ns.ns()).unwrap();
    let mut link = NewLink::new(&parent, LinkKind::Dummy);
    link.up = true;
    if let Err(e) = nl.add_link(&link) {
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "dummy parent: {e}");
        let peer = unique_name("pap");
        let mut link = NewLink::new(
            &parent,
            LinkKind::Veth { peer_name: &peer, peer_netns: None, peer_mtu: None, peer_mac: None },
        );
        link.up = true;
        nl.add_link(&link).expect("veth parent");
        let peer_index = nl.link(&peer).unwrap().expect("veth parent peer").index;
        nl.set_up(peer_index).unwrap();
    }
    let parent_index = nl.link(&parent).unwrap().expect("parent").index;

    let mut spec = NetworkSpec::macvlan(unique_name("mv").parse().unwrap(), parent.clone());
    spec.subnet("10.131.10.0/24".parse().unwrap(), None);
    let macvlan = Network::create(&world.host, &spec).expect("macvlan network");
    let bridge = world.bridge("10.131.11.0/24");
    let mut fixed = EndpointOptions::new();
    fixed.static_ip("10.131.10.20".parse().unwrap());
    let a = Sandbox::builder().hostname("mva").connect(&macvlan, fixed).create().expect("a");
    // b is on the macvlan network and on a bridge: two interfaces of two drivers.
    let out = ok(sh("ls /sys/class/net; busybox ping -c 1 -W 5 mva")
        .hostname("mvb")
        .connect(&macvlan, EndpointOptions::new())
        .connect(&bridge, EndpointOptions::new()));
    assert!(out.starts_with("eth0\neth1\nlo\n"), "{out}");
    assert!(out.contains("1 packets received"), "{out}");

    // Published ports are refused on macvlan, before anything is made.
    let mut o = EndpointOptions::new();
    o.port(PortMapping::tcp(8082, 80));
    let refused = sh("true").connect(&macvlan, o).output();
    assert!(matches!(refused, Err(Error::Invalid(ValidationError::PortsUnsupported { .. }))), "{refused:?}");

    a.remove().unwrap();
    macvlan.remove().unwrap();
    bridge.remove().unwrap();
    nl.delete_link(parent_index).expect("delete the parent");
    world.assert_clean();
}

/// A DNS server on `127.0.0.1:53` of `ns` (a namespace the test made), standing in for the
/// host's resolver: `A` of `outside.nk.test` is `192.0.2.77` (other types of it: no data),
/// every other name `NXDOMAIN`. Stops on drop.
struct TestUpstream {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    ns: nook_ns::NsFd,
}

impl TestUpstream {
    fn start(ns: &NetNs) -> TestUpstream {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{RData, Record, RecordType};
        let socket = ns.run(|| std::net::UdpSocket::bind("127.0.0.1:53")).unwrap().expect("bind the test upstream");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = q.queries.first() else { continue };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.add_query(query.clone());
                if query.name().to_ascii().trim_end_matches('.').eq_ignore_ascii_case("outside.nk.test") {
                    if query.query_type() == RecordType::A {
                        let ip = "192.0.2.77".parse().unwrap();
                        r.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A(ip))));
                    }
                } else {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
                let _ = socket.send_to(&r.to_vec().unwrap(), from);
            }
        });
        TestUpstream { stop, thread: Some(thread), ns: ns.ns().try_clone().unwrap() }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = nook_ns::on_thread_in(&[&self.ns], || {
            std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", "127.0.0.1:53"))
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `args` run in `sandbox`: exit code and stdout.
fn run_in(sandbox: &Sandbox, args: &[&str]) -> (Outcome, String) {
    let out = sandbox.exec(args.iter().copied()).output().expect("exec");
    (out.outcome, String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The embedded DNS server (`127.0.0.11`) as programs in a sandbox use it: glibc's resolver
/// (`getent`, through the sandbox's `/etc/resolv.conf`) and busybox `nslookup` find a peer
/// that started after them (so not in their `/etc/hosts`), its alias, its IPv6 address on a
/// dual-stack network, names forwarded to the host's resolver (a test upstream on a
/// loopback address of the test's host namespace, named by a `resolv.conf` of the test's),
/// and the peer's name stops resolving once it is gone.
#[test]
fn sandboxes_resolve_each_other_through_the_embedded_dns() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let dir = TempDir::new("dns").unwrap();
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    let host = Host::builder().netns(world.ns.ns()).ipam_dir(world.state.path()).resolv_conf(&conf).build().unwrap();
    let upstream = TestUpstream::start(&world.ns);
    let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
    spec.subnet("10.131.40.0/24".parse().unwrap(), None);
    spec.subnet("fd00:131:40::/64".parse().unwrap(), None);
    let net = Network::create(&host, &spec).expect("network");

    let client = Sandbox::builder().hostname("client").connect(&net, EndpointOptions::new()).create().expect("client");
    let mut web_opts = EndpointOptions::new();
    web_opts.alias("www");
    let web = Sandbox::builder().hostname("web").connect(&net, web_opts).create().expect("web");
    let web_ep = &web.endpoints()[0];
    let (web4, web6) = (web_ep.ipv4().unwrap().to_string(), web_ep.ipv6().unwrap().to_string());

    let (outcome, out) = run_in(&client, &["cat", "/etc/resolv.conf", "/etc/hosts"]);
    assert_eq!(outcome, Outcome::Exited(0), "{out}");
    assert!(out.starts_with("nameserver 127.0.0.11\n"), "{out}");
    assert!(!out.contains(&web4), "web is not in the client's /etc/hosts:\n{out}");

    let expect = |args: &[&str], want: &str| {
        let (outcome, out) = run_in(&client, args);
        assert_eq!(outcome, Outcome::Exited(0), "{args:?}:\n{out}");
        assert!(out.contains(want), "{args:?} should give {want}:\n{out}");
    };
    expect(&["getent", "ahostsv4", "web"], &web4);
    expect(&["getent", "ahostsv6", "web"], &web6);
    // `getent hosts` asks for IPv6 first.
    expect(&["getent", "hosts", "www"], &web6);
    expect(&["getent", "ahostsv4", "www"], &web4);
    expect(&["busybox", "nslookup", "web"], &web4);
    expect(&["busybox", "nslookup", "-type=AAAA", "www"], &web6);
    expect(&["getent", "ahostsv4", "outside.nk.test"], "192.0.2.77");
    expect(&["busybox", "nslookup", "outside.nk.test"], "192.0.2.77");

    web.remove().expect("remove web");
    let (outcome, out) = run_in(&client, &["getent", "hosts", "web"]);
    assert_eq!(outcome, Outcome::Exited(2), "web is gone, its name too:\n{out}");
    let (outcome, out) = run_in(&client, &["busybox", "nslookup", "www"]);
    assert_ne!(outcome, Outcome::Exited(0), "{out}");
    assert!(!out.contains(&web4), "{out}");

    client.remove().expect("remove client");
    drop(upstream);
    net.remove().expect("remove network");
    drop(host);
    world.assert_clean();
}

/// A fail-closed egress policy through the facade: inside the sandbox, glibc resolves the
/// allowed name (through the embedded DNS) and busybox fetches from its address; another
/// name does not resolve, and an address no allowed answer gave is refused — though both
/// servers are there (a sandbox without the policy reaches the second one).
#[test]
fn an_egress_policy_lets_through_only_allowed_names_and_refuses_the_rest() {
    require_root!();
    let _serial = serial();
    let world = World::new();
    let dir = TempDir::new("egress").unwrap();
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    let host = Host::builder().netns(world.ns.ns()).ipam_dir(world.state.path()).resolv_conf(&conf).build().unwrap();
    let upstream = TestUpstream::start(&world.ns);
    // Two web servers of "the internet", on addresses of the host namespace's `lo`.
    let mut nl = Netlink::open_in(world.ns.ns()).unwrap();
    for ip in ["192.0.2.77/32", "192.0.2.78/32"] {
        nl.add_address(1, ip.parse().unwrap()).unwrap();
    }
    let serve = |ip: &str, connections: usize| {
        let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
        let listener = world.ns.run(move || std::net::TcpListener::bind(addr)).unwrap().unwrap();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = s.read(&mut request);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            }
        })
    };
    let allowed = serve("192.0.2.77", 1);
    let other = serve("192.0.2.78", 1);
    let net = {
        let mut spec = NetworkSpec::bridge(unique_name("net").parse().unwrap());
        spec.subnet("10.131.50.0/24".parse().unwrap(), None);
        Network::create(&host, &spec).expect("network")
    };
    let mut policy = nook_netmodel::EgressPolicy::deny_all();
    policy.allow_domain("outside.nk.test");
    let script = "getent ahostsv4 outside.nk.test | head -n1; busybox wget -q -O - http://outside.nk.test:8080/; echo; \
                  getent hosts denied.nk.test; echo denied=$?; \
                  busybox wget -q -T 2 -O - http://192.0.2.78:8080/; echo direct=$?";
    let out = ok(sh(script).connect(&net, EndpointOptions::new()).egress(policy.clone()));
    assert!(out.starts_with("192.0.2.77"), "{out}");
    assert!(out.contains("hello\n"), "the allowed name's server answered:\n{out}");
    assert!(out.contains("denied=2"), "another name does not resolve:\n{out}");
    assert!(out.contains("direct=1") && !out.contains("hellohello"), "a raw address is refused:\n{out}");
    allowed.join().unwrap();
    // The server at the refused address was there: a sandbox without a policy reaches it.
    let out = ok(sh("busybox wget -q -O - http://192.0.2.78:8080/").connect(&net, EndpointOptions::new()));
    assert_eq!(out, "hello");
    other.join().unwrap();

    // A bad policy is refused before anything runs.
    let mut bad = nook_netmodel::EgressPolicy::deny_all();
    bad.allow_domain("not a name");
    let err = sh("true").connect(&net, EndpointOptions::new()).egress(bad).output().unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::Egress { .. })), "{err}");

    drop(upstream);
    net.remove().expect("remove network");
    drop(host);
    drop(nl);
    world.assert_clean();
}
