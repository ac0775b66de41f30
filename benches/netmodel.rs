//! `netmodel` group: network namespaces and bridge endpoints (nook-netmodel) against
//! `ip -batch` (iproute2) doing the same work.
//!
//! Everything happens inside a private network namespace that plays "the host" (nothing is
//! added to the machine's own namespace); IPAM state lives on a tmpfs (`/dev/shm`), as it
//! does under `/run` on hosts where `/run` is a tmpfs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;

use crate::report::{Report, slow_group};

const SUBNET: &str = "10.77.0.0/16";
const GATEWAY: &str = "10.77.0.1";

/// The bench's private "host": a netns, an IPAM dir on tmpfs, a bridge network.
struct Bench {
    host_ns: NetNs,
    state: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let state = PathBuf::from(format!("/dev/shm/nkbench-{}", std::process::id()));
        std::fs::create_dir_all(&state).expect("state dir");
        Bench { host_ns: NetNs::new().expect("host netns"), state }
    }

    fn host(&self) -> Host {
        Host::builder().netns(self.host_ns.ns()).ipam_dir(self.state.join("ipam")).build().expect("host")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Runs `ip -batch -` inside the bench's host netns, feeding `script` on stdin.
fn ip_batch(bench: &Bench, args: &[&str], script: &str) {
    bench
        .host_ns
        .run(|| {
            use std::io::Write;
            let mut child = std::process::Command::new("ip")
                .args(args)
                .args(["-batch", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn ip");
            child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write batch");
            let status = child.wait().expect("wait ip");
            assert!(status.success(), "ip -batch failed: {status}\n{script}");
        })
        .expect("enter host netns");
}

pub fn netmodel(c: &mut Criterion, report: &mut Report) {
    let bench = Bench::new();
    let host = bench.host();
    let mut spec = NetworkSpec::bridge("nkbench".parse().unwrap());
    spec.subnet(SUBNET.parse().expect("subnet"), None).bridge_name("nkbrbench");
    let network = Network::create(&host, &spec).expect("bridge network");
    let ip = std::process::Command::new("ip").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());

    let mut g = slow_group(c, "netmodel");
    // An anonymous netns made and dropped; iproute2 needs a name (a bind mount in /run/netns).
    g.bench_function("netns_create_delete/nook", |b| b.iter(|| drop(NetNs::new().expect("netns"))));
    if ip {
        g.bench_function("netns_create_delete/ip_batch", |b| {
            b.iter(|| ip_batch(&bench, &[], "netns add nkbS0\nnetns del nkbS0\n"))
        });
        report.pair("netmodel", "netns create + delete", "netns_create_delete/nook", "netns_create_delete/ip_batch");
    }

    // The whole cycle: a sandbox netns, one bridge endpoint (veth, attach, peer into the
    // sandbox as eth0, address, up, default route), teardown.
    let nook_cycle = || {
        let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
        sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
        sandbox.remove().expect("remove");
    };
    g.bench_function("endpoint_cycle/nook", |b| b.iter(nook_cycle));
    // iproute2 cannot switch namespaces inside one batch: the host side is one process, the
    // sandbox side (`ip -n`) a second.
    let mut n = 0u32;
    let mut ip_cycle = || {
        n = n.wrapping_add(1);
        let addr = format!("10.77.{}.{}/16", 128 + (n / 250) % 100, 2 + n % 250);
        // Fresh names each round: the kernel deletes the host end of the veth after the
        // namespace is gone, asynchronously.
        let (ns, veth) = (format!("nkbS{n}"), format!("nkbv{n}"));
        ip_batch(
            &bench,
            &[],
            &format!(
                "netns add {ns}\nlink add {veth} mtu 1500 master nkbrbench up type veth peer name eth0 netns {ns}\n"
            ),
        );
        ip_batch(
            &bench,
            &["-n", &ns],
            &format!("addr add {addr} dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via {GATEWAY}\n"),
        );
        ip_batch(&bench, &[], &format!("netns del {ns}\n"));
    };
    if ip {
        g.bench_function("endpoint_cycle/ip_batch", |b| b.iter(&mut ip_cycle));
        report.pair(
            "netmodel",
            "sandbox + bridge endpoint + teardown",
            "endpoint_cycle/nook",
            "endpoint_cycle/ip_batch",
        );
    }

    // Setup and teardown apart: the sandbox netns is made outside the timed part.
    g.bench_function("endpoint_setup/nook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                let start = Instant::now();
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                total += start.elapsed();
                sandbox.remove().expect("remove");
            }
            total
        })
    });
    g.bench_function("endpoint_teardown/nook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                let start = Instant::now();
                sandbox.remove().expect("remove");
                total += start.elapsed();
            }
            total
        })
    });
    report.singles.push(("netmodel", "endpoint_setup/nook".into()));
    report.singles.push(("netmodel", "endpoint_teardown/nook".into()));
    // Attaching to a network another handle (another process) created, and leaving it: the
    // record read and rewritten under the registry lock, the bridge looked up.
    g.bench_function("network_open_release/nook", |b| {
        b.iter(|| {
            let other = Network::open(&host, network.name()).expect("open");
            assert!(!other.release().expect("release"), "the bench's handle still uses it");
        })
    });
    report.singles.push(("netmodel", "network_open_release/nook".into()));
    // Interleaved with the pair it belongs to (`interleave` applies to the last pair).
    if ip {
        report.interleave(
            || {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                sandbox.remove().expect("remove");
            },
            &mut ip_cycle,
        );
    }
    dns(&mut g, report, &bench);
    g.finish();
    network.remove().expect("remove bench network");
}

/// The embedded DNS server (`127.0.0.11`), against the host's resolver it forwards to. The
/// "host's resolver" is a tiny UDP responder the bench runs on `127.0.0.1:53` of its private
/// host namespace (named by a `resolv.conf` of the bench's, [`HostBuilder::resolv_conf`]):
/// no query leaves the bench's namespaces. Each case sends one query and waits for the
/// answer on a socket made once inside the namespace it asks from.
///
/// [`HostBuilder::resolv_conf`]: nook_netmodel::HostBuilder::resolv_conf
fn dns(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, report: &mut Report, bench: &Bench) {
    use std::net::UdpSocket;
    let conf = bench.state.join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\n").expect("resolv.conf");
    nook_netmodel::netlink::Netlink::open_in(bench.host_ns.ns()).expect("netlink").set_up(1).expect("lo up");
    let upstream = bench.host_ns.run(|| UdpSocket::bind("127.0.0.1:53")).expect("enter").expect("bind upstream");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responder = {
        let (socket, stop) = (upstream.try_clone().expect("dup"), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&dns_answer(&buf[..n]), from);
                }
            }
        })
    };
    let host = Host::builder()
        .netns(bench.host_ns.ns())
        .ipam_dir(bench.state.join("ipam"))
        .resolv_conf(&conf)
        .build()
        .expect("host");
    let mut spec = NetworkSpec::bridge("nkbenchdns".parse().unwrap());
    spec.subnet("10.78.0.0/24".parse().expect("subnet"), None).bridge_name("nkbrbenchd");
    let network = Network::create(&host, &spec).expect("dns network");
    let mut peer = Sandbox::none("nkpeer").expect("peer");
    peer.connect(&network, &EndpointOptions::new()).expect("connect peer");
    let mut client = Sandbox::none("nkclient").expect("client");
    client.connect(&network, &EndpointOptions::new()).expect("connect client");

    let ask = |socket: &UdpSocket, query: &[u8]| {
        let mut buf = [0u8; 1500];
        socket.send(query).expect("send");
        let n = socket.recv(&mut buf).expect("answer");
        assert!(n > 12, "an answer");
    };
    let in_client = client.run(|| UdpSocket::bind("127.0.0.1:0")).expect("enter").expect("socket");
    in_client.connect("127.0.0.11:53").expect("connect");
    in_client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let in_host = bench.host_ns.run(|| UdpSocket::bind("127.0.0.1:0")).expect("enter").expect("socket");
    in_host.connect("127.0.0.1:53").expect("connect");
    in_host.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let (peer_query, outside_query) = (dns_query("nkpeer"), dns_query("outside.nk.bench"));

    g.bench_function("dns_query_peer/embedded", |b| b.iter(|| ask(&in_client, &peer_query)));
    g.bench_function("dns_query_forwarded/embedded", |b| b.iter(|| ask(&in_client, &outside_query)));
    g.bench_function("dns_query_forwarded/host_resolver", |b| b.iter(|| ask(&in_host, &outside_query)));
    report.pair(
        "netmodel",
        "DNS query, sandbox name (A)",
        "dns_query_peer/embedded",
        "dns_query_forwarded/host_resolver",
    );
    report.pair(
        "netmodel",
        "DNS query, forwarded name (A)",
        "dns_query_forwarded/embedded",
        "dns_query_forwarded/host_resolver",
    );
    // The cost of the server on a connect: the same endpoint setup with it turned off.
    let plain_host = Host::builder()
        .netns(bench.host_ns.ns())
        .ipam_dir(bench.state.join("ipam"))
        .embedded_dns(false)
        .build()
        .expect("host");
    let mut spec = NetworkSpec::bridge("nkbenchnodns".parse().unwrap());
    spec.subnet("10.79.0.0/24".parse().expect("subnet"), None).bridge_name("nkbrbenchn");
    let plain = Network::create(&plain_host, &spec).expect("network without dns");
    g.bench_function("endpoint_setup_no_dns/nook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                let start = Instant::now();
                sandbox.connect(&plain, &EndpointOptions::new()).expect("connect");
                total += start.elapsed();
                sandbox.remove().expect("remove");
            }
            total
        })
    });
    report.singles.push(("netmodel", "endpoint_setup_no_dns/nook".into()));

    drop((client, peer, in_client, in_host));
    network.remove().expect("remove dns network");
    plain.remove().expect("remove network without dns");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = upstream.send_to(b"x", "127.0.0.1:53");
    let _ = responder.join();
}

/// An `A` query for `name`.
fn dns_query(name: &str) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
    m.to_vec().expect("encode")
}

/// The bench upstream's answer: `192.0.2.77` for any `A` query.
fn dns_answer(query: &[u8]) -> Vec<u8> {
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let Ok(q) = Message::from_vec(query) else { return Vec::new() };
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_available = true;
    if let Some(query) = q.queries.first() {
        r.add_query(query.clone());
        r.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A([192, 0, 2, 77].into()))));
    }
    r.to_vec().unwrap_or_default()
}

/// `nft -f -` inside the bench's host netns, feeding `script`.
fn nft_script(bench: &Bench, script: &str) {
    bench
        .host_ns
        .run(|| {
            use std::io::Write;
            let mut child =
                std::process::Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().expect("spawn nft");
            child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write script");
            let status = child.wait().expect("wait nft");
            assert!(status.success(), "nft -f failed: {status}\n{script}");
        })
        .expect("enter host netns");
}

/// Waits until the bridges `Network::remove` handed to a background thread are deleted, so a
/// timed run does not wait for the previous run's deletion (it holds the kernel's RTNL lock).
fn settle(bench: &Bench) {
    let mut nl = nook_netmodel::netlink::Netlink::open_in(bench.host_ns.ns()).expect("netlink");
    while nl.links().expect("links").iter().any(|l| l.name.starts_with("nkgone")) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Times `f` alone, `iters` times, with `before` and `after` around each run untimed.
fn timed<T>(
    iters: u64,
    mut before: impl FnMut() -> T,
    mut f: impl FnMut(&mut T),
    mut after: impl FnMut(T),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut x = before();
        let start = Instant::now();
        f(&mut x);
        total += start.elapsed();
        after(x);
    }
    total
}

/// `netfw` group: what published ports and bridge networks cost on the caller's path, with
/// the netlink nftables backend (`NftNetlink`, the default), the `nft -j` backend
/// (`Nftables`, the former default) and `ip` + `nft` processes doing the same work.
pub fn netfw(c: &mut Criterion, report: &mut Report) {
    use nook_netmodel::firewall::{Nftables, PortMapping};
    use std::sync::Arc;

    let bench = Bench::new();
    let nl_host = bench.host();
    let cli_host = Host::builder()
        .netns(bench.host_ns.ns())
        .ipam_dir(bench.state.join("ipam"))
        .firewall(Arc::new(Nftables::new(Some(bench.host_ns.ns())).expect("nft backend")))
        .build()
        .expect("host");
    let mut spec = NetworkSpec::bridge("nkbfw".parse().unwrap());
    spec.subnet("10.78.0.0/16".parse().expect("subnet"), None).bridge_name("nkbrfw");
    let network = Network::create(&nl_host, &spec).expect("bridge network");
    let cli_network = Network::open(&cli_host, network.name()).expect("open");
    let tools = ["ip", "nft"]
        .iter()
        .all(|p| std::process::Command::new(p).arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success()));

    let mut g = slow_group(c, "netfw");
    // A sandbox connecting with one published port (`-p 8080:80`), and its removal.
    for (id, net) in [("netlink", &network), ("nft_cli", &cli_network)] {
        let opts = || {
            let mut o = EndpointOptions::new();
            o.port(PortMapping::tcp(8080, 80));
            o
        };
        g.bench_function(format!("port_connect/{id}"), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || Sandbox::none("nkbench").expect("sandbox"),
                    |s| drop(s.connect(net, &opts()).expect("connect")),
                    |s| s.remove().expect("remove"),
                )
            })
        });
        g.bench_function(format!("port_remove/{id}"), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || {
                        let mut s = Sandbox::none("nkbench").expect("sandbox");
                        s.connect(net, &opts()).expect("connect");
                        Some(s)
                    },
                    |s| s.take().expect("sandbox").remove().expect("remove"),
                    drop,
                )
            })
        });
    }
    // The same rule by `nft` processes: add, then flush the chain (the netlink backend reads
    // the chain and deletes the rule by handle).
    if tools {
        g.bench_function("port_rule/nft_processes", |b| {
            b.iter(|| {
                nft_script(
                    &bench,
                    "add rule inet nook nk-nkbfw-pre meta nfproto ipv4 tcp dport 8081 counter dnat ip to 10.78.0.9:80 comment \"nk-port x tcp 4 * 8081\"\n",
                );
                nft_script(&bench, "flush chain inet nook nk-nkbfw-pre\n");
            })
        });
    }
    report.pair(
        "netfw",
        "connect with `-p 8080:80` (nft -j backend: before)",
        "port_connect/netlink",
        "port_connect/nft_cli",
    );
    report.pair("netfw", "its removal (nft -j backend: before)", "port_remove/netlink", "port_remove/nft_cli");

    // A bridge network (one IPv4 subnet) created, and removed.
    let spec_of = |n: &str| {
        let mut s = NetworkSpec::bridge(n.parse().unwrap());
        s.subnet("10.79.0.0/24".parse().expect("subnet"), None).bridge_name("nkbrfw2");
        s
    };
    for (id, host) in [("netlink", &nl_host), ("nft_cli", &cli_host)] {
        g.bench_function(format!("network_create/{id}"), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || None,
                    |n| *n = Some(Network::create(host, &spec_of("nkbfw2")).expect("create")),
                    |n: Option<Network>| {
                        n.expect("network").remove().expect("remove");
                        settle(&bench);
                    },
                )
            })
        });
        g.bench_function(format!("network_remove/{id}"), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || Some(Network::create(host, &spec_of("nkbfw2")).expect("create")),
                    |n| n.take().expect("network").remove().expect("remove"),
                    |_| settle(&bench),
                )
            })
        });
    }
    // The same by processes: `ip -batch` for the bridge, one `nft -f` for the network's
    // chains and rules (those nook writes for it), in a table of their own whose base chains
    // exist already; removal flushes the base chains (only this network's jumps are there),
    // deletes the chains, then the bridge.
    if tools {
        let t = "inet nkipnft";
        let mut base = format!("add table {t}\n");
        for (name, kind, hook, prio) in [
            ("nat-prerouting", "nat", "prerouting", -100),
            ("nat-output", "nat", "output", -100),
            ("nat-postrouting", "nat", "postrouting", 100),
            ("filter-forward", "filter", "forward", 0),
            ("raw-prerouting", "filter", "prerouting", -300),
            ("mark-forward", "filter", "forward", -20),
        ] {
            base.push_str(&format!("add chain {t} {name} {{ type {kind} hook {hook} priority {prio}; }}\n"));
        }
        nft_script(&bench, &base);
        let mut setup = String::new();
        for c in ["fwd", "post", "pre", "raw", "mark"] {
            setup.push_str(&format!("add chain {t} nk-x-{c}\n"));
        }
        for rule in [
            "nk-x-mark iifname \"nkbrfw2\" meta mark set meta mark | 0x00100000",
            "nk-x-mark oifname \"nkbrfw2\" ct state established,related meta mark set meta mark | 0x00100000",
            "nk-x-mark oifname \"nkbrfw2\" ct status dnat meta mark set meta mark | 0x00100000",
            "nk-x-fwd oifname \"nkbrfw2\" ct status dnat counter accept comment \"nk-meta br=nkbrfw2 v4\"",
            "nk-x-fwd oifname \"nkbrfw2\" iifname != \"nkbrfw2\" counter drop",
            "nk-x-post ip saddr 10.79.0.0/24 oifname != \"nkbrfw2\" counter masquerade",
            "nk-x-post ip saddr 10.79.0.0/24 oifname \"nkbrfw2\" ct status dnat counter masquerade",
            "nk-x-post ip saddr 127.0.0.0/8 oifname \"nkbrfw2\" counter masquerade",
            "nk-x-raw ip daddr 127.0.0.0/8 counter drop",
            "mark-forward jump nk-x-mark",
            "filter-forward jump nk-x-fwd",
            "nat-postrouting jump nk-x-post",
            "nat-prerouting fib daddr type local jump nk-x-pre",
            "nat-output fib daddr type local jump nk-x-pre",
            "raw-prerouting iifname \"nkbrfw2\" jump nk-x-raw",
        ] {
            setup.push_str(&format!("add rule {t} {rule}\n"));
        }
        let mut teardown = String::new();
        for c in ["mark-forward", "filter-forward", "nat-postrouting", "nat-prerouting", "nat-output", "raw-prerouting"]
        {
            teardown.push_str(&format!("flush chain {t} {c}\n"));
        }
        for c in ["fwd", "post", "pre", "raw", "mark"] {
            teardown.push_str(&format!("delete chain {t} nk-x-{c}\n"));
        }
        let create = || {
            ip_batch(
                &bench,
                &[],
                "link add nkbrfw2 type bridge\naddr add 10.79.0.1/24 dev nkbrfw2\nlink set nkbrfw2 up\n",
            );
            nft_script(&bench, &setup);
        };
        let remove = || {
            nft_script(&bench, &teardown);
            ip_batch(&bench, &[], "link del nkbrfw2\n");
        };
        g.bench_function("network_create/ip_nft", |b| {
            b.iter_custom(|iters| timed(iters, || (), |_| create(), |_| remove()))
        });
        g.bench_function("network_remove/ip_nft", |b| {
            b.iter_custom(|iters| timed(iters, &create, |_| remove(), |_| ()))
        });
        nft_script(&bench, &format!("delete table {t}\n"));
        report.pair("netfw", "bridge network create (vs ip + nft)", "network_create/netlink", "network_create/ip_nft");
        report.pair("netfw", "bridge network remove (vs ip + nft)", "network_remove/netlink", "network_remove/ip_nft");
    }
    report.pair(
        "netfw",
        "bridge network create (nft -j backend: before)",
        "network_create/netlink",
        "network_create/nft_cli",
    );
    report.pair(
        "netfw",
        "bridge network remove (nft -j backend: before)",
        "network_remove/netlink",
        "network_remove/nft_cli",
    );
    g.finish();
    drop(cli_network);
    network.remove().expect("remove bench network");
}
