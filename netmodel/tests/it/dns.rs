//! The embedded DNS server (`127.0.0.11` in every sandbox on a user-defined network): names
//! and aliases of the peers (A and AAAA), answers that follow connects and disconnects, and
//! other names forwarded to the host's resolvers — here a test upstream on a loopback
//! address of the test's host namespace, named by a `resolv.conf` of the test's own.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nook_netmodel::dns::EMBEDDED_DNS;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::{NetNs, NsFd};
use nook_testutil::{TempDir, require_root, unique_name};

use crate::common::{PATIENCE, World};

/// What the test upstream answers for [`UPSTREAM_NAME`].
pub const UPSTREAM_ANSWER: &str = "192.0.2.77";
/// The one name the test upstream knows.
pub const UPSTREAM_NAME: &str = "outside.nk.test";

/// A DNS server on `127.0.0.1:53` of `ns` (a namespace the test made): `A` of
/// [`UPSTREAM_NAME`] is [`UPSTREAM_ANSWER`] (or the names given to [`Upstream::with`]), every
/// other name `NXDOMAIN`. Stops when dropped (a last datagram wakes it).
pub struct Upstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    ns: NsFd,
}

impl Upstream {
    pub fn start(ns: &NetNs) -> Upstream {
        Upstream::with(ns, &[(UPSTREAM_NAME, UPSTREAM_ANSWER, 60)])
    }

    /// Answers `A` queries for each `(name, address, ttl)` of `names`.
    pub fn with(ns: &NetNs, names: &[(&str, &str, u32)]) -> Upstream {
        let names: Vec<(String, std::net::Ipv4Addr, u32)> =
            names.iter().map(|(n, a, t)| (n.to_ascii_lowercase(), a.parse().unwrap(), *t)).collect();
        let addr: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let socket = ns.run(|| UdpSocket::bind(addr)).unwrap().expect("bind the test upstream");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Acquire) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.add_queries(q.queries.iter().cloned());
                let known = q.queries.first().filter(|q| q.query_type() == RecordType::A).and_then(|q| {
                    let asked = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    names.iter().find(|(n, _, _)| *n == asked)
                });
                if let Some((_, ip, ttl)) = known {
                    r.add_answer(Record::from_rdata(q.queries[0].name().clone(), *ttl, RData::A(A(*ip))));
                } else {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
                let _ = socket.send_to(&r.to_vec().unwrap(), from);
            }
        });
        Upstream { stop, thread: Some(thread), addr, ns: ns.ns().try_clone().unwrap() }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let addr = self.addr;
        let _ =
            nook_ns::on_thread_in(&[&self.ns], || UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", addr)));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host on `world`'s namespace and state whose resolvers are those of a `resolv.conf` in
/// `dir`: the test upstream on `127.0.0.1`, a search domain and an option.
pub fn host_with_resolver(world: &World, dir: &TempDir) -> Host {
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\nsearch nk.test\noptions ndots:1 timeout:1\n").unwrap();
    Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).resolv_conf(&conf).build().unwrap()
}

/// Asks `127.0.0.11` in `ns` for `name` (over TCP with `tcp`): the response code and the
/// addresses of the answer, or `None` when nothing answers there.
pub fn ask(ns: &NsFd, name: &str, qtype: RecordType, tcp: bool) -> Option<(ResponseCode, Vec<IpAddr>)> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let bytes = query.to_vec().unwrap();
    let server = SocketAddr::new(EMBEDDED_DNS, 53);
    let reply: Option<Vec<u8>> = nook_ns::on_thread_in(&[ns], || -> std::io::Result<Vec<u8>> {
        if tcp {
            let mut s = TcpStream::connect_timeout(&server, PATIENCE)?;
            s.set_read_timeout(Some(PATIENCE))?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            s.write_all(&framed)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut out)?;
            Ok(out)
        } else {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(server)?;
            s.set_read_timeout(Some(PATIENCE))?;
            s.send(&bytes)?;
            let mut buf = vec![0u8; 4096];
            let n = s.recv(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        }
    })
    .unwrap()
    .ok();
    let reply = Message::from_vec(&reply?).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    let addresses = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Some((reply.metadata.response_code, addresses))
}

/// The names a `PTR` query for `ip` gets from `127.0.0.11` in `ns`.
fn ask_ptr(ns: &NsFd, ip: IpAddr) -> Vec<String> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from(ip), RecordType::PTR));
    let bytes = query.to_vec().unwrap();
    let reply = nook_ns::on_thread_in(&[ns], || -> std::io::Result<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.connect(SocketAddr::new(EMBEDDED_DNS, 53))?;
        s.set_read_timeout(Some(PATIENCE))?;
        s.send(&bytes)?;
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    })
    .unwrap()
    .unwrap();
    let reply = Message::from_vec(&reply).unwrap();
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect()
}

fn dual_stack(v4: &str, v6: &str) -> NetworkSpec {
    let mut spec = NetworkSpec::bridge(unique_name("dns").parse().unwrap());
    spec.subnet(v4.parse().unwrap(), None);
    spec.subnet(v6.parse().unwrap(), None);
    spec
}

#[test]
fn peers_aliases_and_forwarded_names_resolve_and_follow_disconnects() {
    require_root!();
    let world = World::new();
    let dir = TempDir::new("dns").unwrap();
    let host = host_with_resolver(&world, &dir);
    let _upstream = Upstream::start(&world.host_ns);
    let net = Network::create(&host, &dual_stack("10.89.60.0/24", "fd00:89:60::/64")).unwrap();
    assert!(!host.embedded_dns_running(), "nothing runs before a sandbox needs it");

    let mut web = Sandbox::none("web").unwrap();
    let mut opts = EndpointOptions::new();
    opts.alias("www");
    let eweb = web.connect(&net, &opts).unwrap();
    assert!(host.embedded_dns_running());
    let mut client = Sandbox::none("client").unwrap();
    assert!(!client.has_embedded_dns(), "no server before a user-defined network");
    assert_eq!(ask(client.netns(), "web", RecordType::A, false), None, "nothing listens at 127.0.0.11 yet");
    client.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(client.has_embedded_dns());

    // Port 53 stays free for the sandbox's own processes (the server's sockets are on other
    // ports, `127.0.0.11:53` is redirected to them).
    let own = client.run(|| UdpSocket::bind("0.0.0.0:53")).unwrap().expect("bind 0.0.0.0:53 inside");
    drop(own);

    // Its /etc/hosts lists no peer: the server answers for them.
    let hosts = client.hosts_file().unwrap();
    assert!(hosts.contains("\tclient") && !hosts.contains("web"), "{hosts}");

    // Its resolv.conf names the embedded server, with the host's search domains and options.
    assert_eq!(client.resolv_conf(None).unwrap(), "nameserver 127.0.0.11\nsearch nk.test\noptions ndots:1 timeout:1\n");

    let web4 = IpAddr::V4(eweb.ipv4().unwrap());
    let web6 = IpAddr::V6(eweb.ipv6().unwrap());
    let ns = client.netns();
    assert_eq!(ask(ns, "web", RecordType::A, false), Some((ResponseCode::NoError, vec![web4])));
    assert_eq!(ask(ns, "WEB.", RecordType::AAAA, false), Some((ResponseCode::NoError, vec![web6])));
    assert_eq!(ask(ns, "www", RecordType::A, false), Some((ResponseCode::NoError, vec![web4])), "alias");
    assert_eq!(
        ask(ns, &format!("web.{}", net.name()), RecordType::A, false),
        Some((ResponseCode::NoError, vec![web4]))
    );
    assert_eq!(ask(ns, "web", RecordType::A, true), Some((ResponseCode::NoError, vec![web4])), "over TCP");
    // Reverse lookups of its addresses (Docker's `NAME.NETWORK`).
    let reverse = format!("web.{}.", net.name());
    assert_eq!(ask_ptr(ns, web4), std::slice::from_ref(&reverse));
    assert_eq!(ask_ptr(ns, web6), [reverse]);
    // Other names go to the host's resolver (the test upstream, reached from the host namespace).
    let forwarded = IpAddr::V4(UPSTREAM_ANSWER.parse().unwrap());
    assert_eq!(ask(ns, UPSTREAM_NAME, RecordType::A, false), Some((ResponseCode::NoError, vec![forwarded])));
    assert_eq!(ask(ns, UPSTREAM_NAME, RecordType::A, true), Some((ResponseCode::NoError, vec![forwarded])));
    assert_eq!(ask(ns, "nowhere.nk.test", RecordType::A, false), Some((ResponseCode::NXDomain, vec![])));

    // Name servers given for one sandbox (`--dns`) replace the host's as its upstreams: one
    // that answers nothing (a loopback address of the test's host namespace where nothing
    // listens) makes its forwarded names fail, while its peers still resolve and other
    // sandboxes still forward to the host's.
    let mut own = nook_netmodel::files::DnsConfig::default();
    own.nameservers = vec!["127.0.0.2".parse().unwrap()];
    own.search = vec!["own.test".into()];
    assert_eq!(web.resolv_conf(Some(&own)).unwrap(), "nameserver 127.0.0.11\nsearch own.test\n");
    let (code, found) = ask(web.netns(), UPSTREAM_NAME, RecordType::A, false).unwrap();
    assert!(code == ResponseCode::ServFail && found.is_empty(), "{code:?} {found:?}");
    assert_eq!(ask(web.netns(), "web", RecordType::A, false), Some((ResponseCode::NoError, vec![web4])));
    assert_eq!(ask(ns, UPSTREAM_NAME, RecordType::A, false), Some((ResponseCode::NoError, vec![forwarded])));

    // A sandbox that connects is found at once, and is gone at once when it disconnects.
    assert_eq!(ask(ns, "db", RecordType::A, false), Some((ResponseCode::NXDomain, vec![])));
    let mut db = Sandbox::none("db").unwrap();
    let edb = db.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(
        ask(ns, "db", RecordType::A, false),
        Some((ResponseCode::NoError, vec![IpAddr::V4(edb.ipv4().unwrap())]))
    );
    db.disconnect(&net).unwrap();
    assert_eq!(ask(ns, "db", RecordType::A, false), Some((ResponseCode::NXDomain, vec![])));
    assert!(!db.has_embedded_dns());
    assert_eq!(ask(db.netns(), "web", RecordType::A, false), None, "the disconnected sandbox's server is closed");

    // The last sandbox's disconnect closes its sockets; the others keep being served.
    let kept = client.netns().try_clone().unwrap();
    client.disconnect(&net).unwrap();
    assert_eq!(ask(&kept, "web", RecordType::A, false), None);
    assert_eq!(ask(web.netns(), "www", RecordType::A, false), Some((ResponseCode::NoError, vec![web4])));
    drop(kept);
    assert!(host.embedded_dns_running(), "web is still served");
    drop((web, client, db));
    assert!(!host.embedded_dns_running(), "the last sandbox gone, the thread is stopped");
    net.remove().unwrap();
    drop(host);
}

#[test]
fn the_default_network_has_no_embedded_dns() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &NetworkSpec::default_bridge()).unwrap();
    let mut s = Sandbox::none("plain").unwrap();
    s.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(!s.has_embedded_dns());
    assert_eq!(ask(s.netns(), "plain", RecordType::A, false), None);
    assert!(!s.resolv_conf(None).unwrap().contains("127.0.0.11"));
    drop(s);
    net.remove().unwrap();
}

#[test]
fn a_host_can_turn_the_embedded_dns_off() {
    require_root!();
    let world = World::new();
    let host =
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).embedded_dns(false).build().unwrap();
    let net = Network::create(&host, &dual_stack("10.89.62.0/24", "fd00:89:62::/64")).unwrap();
    let mut s = Sandbox::none("plain").unwrap();
    s.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(!s.has_embedded_dns());
    assert_eq!(ask(s.netns(), "plain", RecordType::A, false), None);
    assert!(!s.resolv_conf(None).unwrap().contains("127.0.0.11"));
    drop(s);
    net.remove().unwrap();
}

#[test]
fn tcp_clients_that_stall_are_dropped_without_holding_up_the_others() {
    require_root!();
    let world = World::new();
    let net = Network::create(&world.host, &dual_stack("10.89.63.0/24", "fd00:89:63::/64")).unwrap();
    let mut a = Sandbox::none("alpha").unwrap();
    let ea = a.connect(&net, &EndpointOptions::new()).unwrap();
    let server = SocketAddr::new(EMBEDDED_DNS, 53);
    // One client sends half a length prefix and stops.
    let mut stalled = a.run(|| TcpStream::connect_timeout(&server, PATIENCE)).unwrap().unwrap();
    stalled.write_all(&[0]).unwrap();
    // Another is answered meanwhile (over TCP too, and over UDP).
    let want = Some((ResponseCode::NoError, vec![IpAddr::V4(ea.ipv4().unwrap())]));
    assert_eq!(ask(a.netns(), "alpha", RecordType::A, true), want);
    assert_eq!(ask(a.netns(), "alpha", RecordType::A, false), want);
    // The stalled one is closed by the server (EOF), not left open.
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    assert_eq!(stalled.read_to_end(&mut rest).unwrap(), 0, "closed without an answer");
    drop((stalled, a));
    net.remove().unwrap();
}
