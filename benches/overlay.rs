//! `overlay` group: TCP throughput between two sandboxes on an overlay (VXLAN) network
//! spanning two "hosts", against the same pair of sandboxes on one bridge network.
//!
//! Three private network namespaces: an underlay with a bridge, and two hosts on it
//! (192.0.2.1 and .2); the overlay network (VNI 4242, 10.78.0.0/24, each host its own /26)
//! has one sandbox on each host. The bridge case is a bridge network on host 0 with both
//! sandboxes on it. The transfer is the bench's own small TCP client and server (iperf3-like:
//! one connection, kept open; each iteration sends 4 MiB and waits for the server's one-byte
//! acknowledgement that it read them all). Nothing touches the machine's own namespace.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::thread::JoinHandle;

use criterion::{Criterion, Throughput};
use nook_netmodel::driver::OverlayOptions;
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink};
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;

use crate::report::{Report, slow_group};

/// Bytes per iteration.
const CHUNK: usize = 4 << 20;

/// The underlay and its two hosts.
struct Hosts {
    hosts: Vec<(NetNs, Host, IpAddr)>,
    state: PathBuf,
    // Dropped last.
    _underlay: NetNs,
}

impl Hosts {
    fn new() -> Hosts {
        let state = PathBuf::from(format!("/dev/shm/nkbench-ov-{}", std::process::id()));
        std::fs::create_dir_all(&state).expect("state dir");
        let underlay = NetNs::new().expect("underlay netns");
        let mut nl = Netlink::open_in(underlay.ns()).expect("netlink");
        nl.set_up(1).expect("lo up");
        let mut bridge = NewLink::new("nkbulbr", LinkKind::Bridge);
        bridge.up = true;
        let bridge = nl.add_link(&bridge).expect("underlay bridge").expect("index");
        let mut hosts = Vec::new();
        for i in 0..2u8 {
            let ns = NetNs::new().expect("host netns");
            let (port, uplink) = (format!("nkbulp{i}"), format!("nkbulh{i}"));
            let mut link = NewLink::new(
                &port,
                LinkKind::Veth {
                    peer_name: &uplink,
                    peer_netns: Some(ns.ns().as_fd()),
                    peer_mtu: None,
                    peer_mac: None,
                },
            );
            link.master = Some(bridge);
            link.up = true;
            nl.add_link(&link).expect("underlay port");
            let address: IpAddr = format!("192.0.2.{}", i + 1).parse().unwrap();
            let mut hl = Netlink::open_in(ns.ns()).expect("netlink in host");
            hl.set_up(1).expect("lo up");
            let index = hl.link(&uplink).unwrap().expect("uplink").index;
            hl.add_address(index, format!("{address}/24").parse().unwrap()).expect("underlay address");
            hl.set_up(index).expect("uplink up");
            let host = Host::builder().netns(ns.ns()).ipam_dir(state.join(format!("ipam{i}"))).build().expect("host");
            hosts.push((ns, host, address));
        }
        Hosts { hosts, state, _underlay: underlay }
    }

    fn overlay_spec(&self, i: usize) -> NetworkSpec {
        let mut options = OverlayOptions::new(4242, self.hosts[i].2);
        options.peer(self.hosts[1 - i].2);
        let mut spec = NetworkSpec::overlay("nkbench-ov".parse().unwrap(), options);
        let range = format!("10.78.0.{}/26", 64 * (i + 1)).parse().unwrap();
        spec.subnet_range("10.78.0.0/24".parse().unwrap(), None, range);
        spec
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A client connected to a server in `server`'s sandbox that reads [`CHUNK`] bytes and
/// acknowledges each chunk with one byte.
struct Pipe {
    client: TcpStream,
    buf: Vec<u8>,
    server: Option<JoinHandle<()>>,
}

impl Pipe {
    fn new(client: &Sandbox, server: &Sandbox, to: IpAddr) -> Pipe {
        let listener = server.run(|| TcpListener::bind(("0.0.0.0", 7300))).expect("enter").expect("bind");
        let thread = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let mut left = CHUNK;
                while left > 0 {
                    match s.read(&mut buf[..left.min(256 * 1024)]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left -= n,
                    }
                }
                if s.write_all(&[1]).is_err() {
                    return;
                }
            }
        });
        let to = SocketAddr::new(to, 7300);
        let stream = client.run(move || TcpStream::connect(to)).expect("enter").expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Pipe { client: stream, buf: vec![0x5a; CHUNK], server: Some(thread) }
    }

    fn send(&mut self) {
        self.client.write_all(&self.buf).expect("send");
        let mut ack = [0u8; 1];
        self.client.read_exact(&mut ack).expect("ack");
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.client.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

pub fn overlay(c: &mut Criterion, report: &mut Report) {
    let world = Hosts::new();
    let (h0, h1) = (&world.hosts[0].1, &world.hosts[1].1);
    let net0 = Network::create(h0, &world.overlay_spec(0)).expect("overlay on host 0");
    let net1 = Network::create(h1, &world.overlay_spec(1)).expect("overlay on host 1");
    let mut a = Sandbox::none("nkbench-a").expect("sandbox");
    let mut b = Sandbox::none("nkbench-b").expect("sandbox");
    let ea = a.connect(&net0, &EndpointOptions::new()).expect("connect a");
    let eb = b.connect(&net1, &EndpointOptions::new()).expect("connect b");
    for r in net0.advertise(&ea).expect("advertise a") {
        net1.add_remote_endpoint(&r).expect("program a on host 1");
    }
    for r in net1.advertise(&eb).expect("advertise b") {
        net0.add_remote_endpoint(&r).expect("program b on host 0");
    }
    let mut bridge_spec = NetworkSpec::bridge("nkbench-br".parse().unwrap());
    bridge_spec.subnet("10.79.0.0/24".parse().unwrap(), None);
    let bridge = Network::create(h0, &bridge_spec).expect("bridge on host 0");
    let mut c1 = Sandbox::none("nkbench-c").expect("sandbox");
    let mut d1 = Sandbox::none("nkbench-d").expect("sandbox");
    c1.connect(&bridge, &EndpointOptions::new()).expect("connect c");
    let ed = d1.connect(&bridge, &EndpointOptions::new()).expect("connect d");

    let mut over = Pipe::new(&a, &b, IpAddr::V4(eb.ipv4().expect("b's address")));
    let mut local = Pipe::new(&c1, &d1, IpAddr::V4(ed.ipv4().expect("d's address")));

    let mut g = slow_group(c, "overlay");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("tcp_4MiB/overlay_two_hosts", |bench| bench.iter(|| over.send()));
    g.bench_function("tcp_4MiB/one_bridge", |bench| bench.iter(|| local.send()));
    g.finish();
    report.pair(
        "overlay",
        "TCP 4 MiB: overlay across two hosts vs one bridge",
        "tcp_4MiB/overlay_two_hosts",
        "tcp_4MiB/one_bridge",
    );
    report.interleave(|| over.send(), || local.send());

    drop((over, local));
    drop((a, b, c1, d1));
    net0.remove().expect("remove overlay 0");
    net1.remove().expect("remove overlay 1");
    bridge.remove().expect("remove bridge");
}
