//! Test fixture: a private "host" network namespace linked to a private "outside world"
//! namespace, an IPAM state dir in a temp dir, and a [`Host`] built on the host namespace.
//!
//! ```text
//!   outside world netns                 host netns
//!   [nkwo.. 198.51.100.2/24] ==veth== [nkwh.. 198.51.100.1/24]   default via 198.51.100.2
//! ```
//!
//! Dropping the [`World`] (when the test did not panic) asserts that everything the test made
//! is gone: no link but `lo` and the uplink in the host namespace, no nftables ruleset but the
//! one the fixture started with, no IPAM state file. Then both namespaces die with their
//! handles (and every link, address, sysctl and nftables table in them with them).
//!
//! # The host namespace's starting state is set, not inherited
//!
//! A new network namespace is not a blank slate: with `net.core.devconf_inherit_init_net` at
//! 0 (the default) or 1 it copies IPv4 `all`/`default` devconf — `ip_forward`, `rp_filter`,
//! `route_localnet`, … — from the machine's initial namespace (1 copies IPv6's too), and
//! `br_netfilter`'s `bridge-nf-call-*` start at 1 wherever that module is loaded. So every
//! test host namespace goes through [`prepare_host`] ([`nook_testutil::set_host_state`])
//! before nook touches it: [`HostState::Quiet`]
//! for the ordinary tests (forwarding off, so a test can see nook turn it on),
//! [`HostState::Unfriendly`] for the `unfriendly` suite (a busy Docker/podman host). Both only
//! write inside the namespace the test created; the machine's own is never touched.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nook_netmodel::netlink::{LinkKind, Netlink, NewLink, Route, read_sysctl};
use nook_netmodel::{Host, Sandbox};
use nook_ns::{NetNs, NsFd};
pub use nook_testutil::HostState;
use nook_testutil::{TempDir, set_host_state, unique_name};

/// The host's address on the uplink.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The outside world's address on the uplink.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// How long a test waits for something that should happen (not a timing assertion: only a
/// bound so a broken setup fails instead of hanging).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long [`World::assert_clean`] waits for a dead sandbox's links to go. The kernel deletes
/// them when it destroys the namespace, on its own work queue (`cleanup_net`), which runs one
/// batch at a time: with every test of the suite tearing namespaces down on two cores, a CI
/// run once still found a dropped sandbox's host-side veth after 10 s. A leak stays forever, so a long bound only costs time on
/// failure.
pub const NETNS_TEARDOWN_PATIENCE: Duration = Duration::from_secs(60);

/// Puts the network namespace `ns` (one the test created) in `state`; returns its nftables
/// ruleset afterwards (`nft list ruleset`), the baseline a clean end is compared with.
pub fn prepare_host(ns: &NetNs, state: HostState) -> String {
    ns.run(|| set_host_state(state)).expect("enter test netns");
    let ruleset = nft_list_ruleset(ns);
    assert_eq!(ruleset.trim().is_empty(), state == HostState::Quiet, "{state:?} host starts with:\n{ruleset}");
    ruleset
}

/// `nft -s list ruleset` in `ns` (stateless: without counter values, which traffic through
/// foreign rules changes).
pub fn nft_list_ruleset(ns: &NetNs) -> String {
    let out =
        ns.run(|| Command::new("nft").args(["-s", "list", "ruleset"]).output()).expect("enter netns").expect("run nft");
    assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A private host and outside world.
pub struct World {
    /// The namespace playing the host.
    pub host_ns: NetNs,
    /// The namespace playing the outside world.
    pub outside: NetNs,
    /// The uplink's name in the host namespace.
    pub uplink: String,
    /// IPAM state.
    pub state: TempDir,
    /// The model's host, on `host_ns`.
    pub host: Host,
    /// Its ruleset before the test (empty unless [`HostState::Unfriendly`]).
    pub baseline_ruleset: String,
}

/// What the host namespace looks like (to prove a failed call changed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `name -> (index, up, master)` of every link.
    pub links: BTreeMap<String, (u32, bool, Option<u32>)>,
    /// `nft list ruleset`.
    pub ruleset: String,
    /// State files (name and content), without the lock file.
    pub state: BTreeMap<String, String>,
}

impl World {
    /// Builds it, on a [`HostState::Quiet`] host — or an unfriendly one when
    /// `NK_UNFRIENDLY_HOST=1` (to run every CNM scenario on one:
    /// `NK_UNFRIENDLY_HOST=1 cargo test -p nook-netmodel --test it cnm::`).
    pub fn new() -> World {
        World::on(HostState::from_env())
    }

    /// Builds it, on a [`HostState::Unfriendly`] host.
    pub fn unfriendly() -> World {
        World::on(HostState::Unfriendly)
    }

    /// Builds it, the host namespace prepared as `start` before anything else happens in it.
    pub fn on(start: HostState) -> World {
        let host_ns = NetNs::new().expect("host netns");
        let baseline_ruleset = prepare_host(&host_ns, start);
        let outside = NetNs::new().expect("outside netns");
        // The outside world is not under test: always quiet (no inherited rp_filter).
        prepare_host(&outside, HostState::Quiet);
        let uplink = unique_name("wh");
        let peer = unique_name("wo");
        {
            let mut nl = Netlink::open_in(host_ns.ns()).expect("netlink in host");
            nl.set_up(1).expect("lo up (host)");
            let mut link = NewLink::new(
                &uplink,
                LinkKind::Veth {
                    peer_name: &peer,
                    peer_netns: Some(outside.ns().as_fd()),
                    peer_mtu: None,
                    peer_mac: None,
                },
            );
            link.up = true;
            nl.add_link(&link).expect("uplink veth");
            let index = nl.link(&uplink).unwrap().expect("uplink").index;
            nl.add_address(index, format!("{HOST_IP}/24").parse().unwrap()).unwrap();
            nl.add_route(&Route::new(None, Some(IpAddr::V4(OUTSIDE_IP)), Some(index))).expect("host default route");

            let mut nl = Netlink::open_in(outside.ns()).expect("netlink in outside");
            nl.set_up(1).expect("lo up (outside)");
            let index = nl.link(&peer).unwrap().expect("uplink peer").index;
            nl.add_address(index, format!("{OUTSIDE_IP}/24").parse().unwrap()).unwrap();
            nl.set_up(index).unwrap();
        }
        let state = TempDir::new("ipam").expect("temp dir");
        let host = Host::builder().netns(host_ns.ns()).ipam_dir(state.path()).build().expect("host");
        World { host_ns, outside, uplink, state, host, baseline_ruleset }
    }

    /// A netlink socket in the host namespace.
    pub fn netlink(&self) -> Netlink {
        Netlink::open_in(self.host_ns.ns()).expect("netlink in host")
    }

    /// Adds a link (up) in the host namespace to serve as a macvlan parent; returns its
    /// name. A dummy link where the kernel has them (`CONFIG_DUMMY`), else one end of a veth
    /// pair whose other end is up beside it (deleting either deletes both).
    pub fn add_parent(&self) -> String {
        let name = unique_name("par");
        let mut nl = self.netlink();
        let mut link = NewLink::new(&name, LinkKind::Dummy);
        link.up = true;
        match nl.add_link(&link) {
            Ok(_) => return name,
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => panic!("dummy parent: {e}"),
        }
        let peer = unique_name("pap");
        let mut link =
            NewLink::new(&name, LinkKind::Veth { peer_name: &peer, peer_netns: None, peer_mtu: None, peer_mac: None });
        link.up = true;
        nl.add_link(&link).expect("veth parent");
        let index = nl.link(&peer).unwrap().expect("veth parent peer").index;
        nl.set_up(index).unwrap();
        name
    }

    /// Deletes a link of the host namespace by name.
    pub fn delete_link(&self, name: &str) {
        let mut nl = self.netlink();
        if let Some(l) = nl.link(name).unwrap() {
            nl.delete_link(l.index).unwrap();
        }
    }

    /// The host namespace now.
    pub fn snapshot(&self) -> Snapshot {
        let links =
            self.netlink().links().expect("links").into_iter().map(|l| (l.name, (l.index, l.up, l.master))).collect();
        Snapshot { links, ruleset: self.ruleset(), state: state_files(self.state.path()) }
    }

    /// `nft list ruleset` in the host namespace.
    pub fn ruleset(&self) -> String {
        nft_list_ruleset(&self.host_ns)
    }

    /// Reads a sysctl (key relative to `/proc/sys`) in the host namespace.
    pub fn sysctl(&self, key: &str) -> String {
        read_sysctl(Some(self.host_ns.ns()), key).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// Waits until the host namespace holds only `lo` and the uplink, no nftables ruleset but
    /// the one it started with and no IPAM state file; panics with what is left otherwise. Links go away
    /// asynchronously (the kernel deletes a sandbox's veths when its namespace dies): see
    /// [`NETNS_TEARDOWN_PATIENCE`].
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + NETNS_TEARDOWN_PATIENCE;
        loop {
            let snap = self.snapshot();
            let extra: Vec<&String> = snap.links.keys().filter(|n| *n != "lo" && **n != self.uplink).collect();
            let clean = extra.is_empty() && snap.ruleset == self.baseline_ruleset && snap.state.is_empty();
            if clean {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "left behind: links {extra:?}, ruleset {:?} (started with {:?}), state files {:?}",
                    snap.ruleset,
                    self.baseline_ruleset,
                    snap.state.keys().collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

/// Waits (up to [`PATIENCE`]) for `check` to hold; panics with `what` otherwise.
pub fn eventually(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state dir's files (name -> content), without the lock files (IPAM's, the networks
/// registry's).
pub fn state_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("read state dir")
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".lock" && e.file_name() != ".networks.lock")
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default()))
        .collect()
}

/// The links of a namespace: `(name, up)`.
pub fn links_of(ns: &NsFd) -> Vec<(String, bool)> {
    let mut nl = Netlink::open_in(ns).expect("netlink");
    nl.links().expect("links").into_iter().map(|l| (l.name, l.up)).collect()
}

/// Binds a TCP listener inside `sandbox` (the socket stays in its namespace).
pub fn listen_in(sandbox: &Sandbox, port: u16) -> TcpListener {
    sandbox.run(move || TcpListener::bind(("0.0.0.0", port))).expect("enter sandbox").expect("bind in sandbox")
}

/// Binds a TCP listener inside a namespace.
pub fn listen_in_ns(ns: &NetNs, addr: SocketAddr) -> TcpListener {
    ns.run(move || TcpListener::bind(addr)).expect("enter netns").expect("bind in netns")
}

/// Accepts one connection: reads a line, answers `echo: LINE`, returns the line and the
/// peer's address.
pub fn serve_once(listener: TcpListener) -> JoinHandle<(String, SocketAddr)> {
    std::thread::spawn(move || {
        let (stream, peer) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).expect("read request");
        let line = line.trim_end().to_owned();
        let mut stream = stream;
        stream.write_all(format!("echo: {line}\n").as_bytes()).expect("answer");
        (line, peer)
    })
}

/// Connects to `addr` from inside `ns`, sends `message`, returns the answer.
pub fn talk(ns: &NsFd, addr: SocketAddr, message: &str) -> std::io::Result<String> {
    let message = message.to_owned();
    nook_ns::run_in(&[ns], move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.write_all(format!("{message}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.trim_end().to_owned())
    })
    .expect("enter netns")
}

/// Tries to connect from inside `ns` with a short timeout; the result only.
pub fn try_connect(ns: &NsFd, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    nook_ns::run_in(&[ns], move || TcpStream::connect_timeout(&addr, timeout).map(drop)).expect("enter netns")
}

/// A UDP echo server inside `ns` on `port`, answering one datagram: returns what it got and
/// from where.
pub fn udp_echo_once(ns: &NsFd, port: u16) -> JoinHandle<(String, SocketAddr)> {
    let socket = nook_ns::run_in(&[ns], move || UdpSocket::bind(("0.0.0.0", port))).expect("enter").expect("bind udp");
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = socket.recv_from(&mut buf).expect("udp recv");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        socket.send_to(format!("echo: {got}").as_bytes(), from).expect("udp answer");
        (got, from)
    })
}

/// Sends `message` over UDP from inside `ns` to `addr` (a few times, until answered).
pub fn udp_ask(ns: &NsFd, addr: SocketAddr, message: &str) -> std::io::Result<String> {
    let message = message.to_owned();
    nook_ns::run_in(&[ns], move || -> std::io::Result<String> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 512];
        loop {
            socket.send_to(message.as_bytes(), addr)?;
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => continue,
            }
        }
    })
    .expect("enter netns")
}
