//! Measurements behind the teardown choices (ignored by default; run with
//! `cargo test -p nook-netmodel --test timing -- --ignored --nocapture`). Prints medians; asserts
//! nothing about time.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::World;
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink};
use nook_netmodel::{EndpointOptions, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;
use nook_testutil::{require_root, unique_name};

const ROUNDS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, v: Vec<Duration>) {
    println!("{what:<55} median {:>9.3} ms", median(v).as_secs_f64() * 1e3);
}

/// A veth pair: `a` in the caller's test namespace `ns`, `b` in `ns` too; returns b's index.
fn veth_in(nl: &mut Netlink) -> u32 {
    let a = unique_name("ta");
    let b = unique_name("tb");
    let mut link = NewLink::new(&a, LinkKind::Veth { peer_name: &b, peer_netns: None, peer_mtu: None, peer_mac: None });
    link.up = true;
    nl.add_link(&link).unwrap();
    let index = nl.link(&b).unwrap().unwrap().index;
    nl.set_up(index).unwrap();
    index
}

#[test]
#[ignore = "measurement; run by hand"]
fn link_removal_strategies() {
    require_root!();
    let ns = NetNs::new().unwrap();
    let mut nl = Netlink::open_in(ns.ns()).unwrap();

    let mut create = Vec::new();
    let mut sync_delete = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let index = veth_in(&mut nl);
        create.push(t.elapsed());
        let t = Instant::now();
        nl.delete_link(index).unwrap();
        sync_delete.push(t.elapsed());
    }
    report("veth create (+ lookup, up)", create);
    report("veth delete_link (synchronous)", sync_delete);

    let mut moved = Vec::new();
    for _ in 0..ROUNDS {
        let index = veth_in(&mut nl);
        let t = Instant::now();
        let grave = NetNs::new().unwrap();
        nl.move_to_netns(index, grave.ns().as_fd()).unwrap();
        drop(grave);
        moved.push(t.elapsed());
    }
    report("move to a fresh netns + drop it", moved);

    let mut background = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..ROUNDS {
        let index = veth_in(&mut nl);
        let t = Instant::now();
        nl.set_down(index).unwrap();
        let fd = ns.ns().try_clone().unwrap();
        threads.push(std::thread::spawn(move || Netlink::open_in(&fd).unwrap().delete_link(index).unwrap()));
        background.push(t.elapsed());
    }
    report("set down + delete on a background thread (caller)", background);
    for t in threads {
        t.join().unwrap();
    }

    let mut netns_drop = Vec::new();
    for _ in 0..ROUNDS {
        let sandbox = NetNs::new().unwrap();
        let a = unique_name("ta");
        let mut link = NewLink::new(
            &a,
            LinkKind::Veth {
                peer_name: "eth0",
                peer_netns: Some(sandbox.ns().as_fd()),
                peer_mtu: None,
                peer_mac: None,
            },
        );
        link.up = true;
        nl.add_link(&link).unwrap();
        let t = Instant::now();
        drop(sandbox);
        netns_drop.push(t.elapsed());
    }
    report("drop a netns holding a veth end (caller)", netns_drop);
}

#[test]
#[ignore = "measurement; run by hand"]
fn endpoint_setup_and_teardown() {
    require_root!();
    let world = World::new();
    let mut spec = NetworkSpec::bridge(unique_name("net"));
    spec.subnet("10.90.0.0/16".parse().unwrap(), None);
    let t = Instant::now();
    let net = Network::create(&world.host, &spec).unwrap();
    report("Network::create (IPAM, bridge, address, nft chains)", vec![t.elapsed()]);
    let (mut none, mut connect, mut disconnect, mut remove) = (vec![], vec![], vec![], vec![]);
    for i in 0..ROUNDS {
        let t = Instant::now();
        let mut s = Sandbox::none(&format!("s{i}")).unwrap();
        none.push(t.elapsed());
        let t = Instant::now();
        s.connect(&net, &EndpointOptions::new()).unwrap();
        connect.push(t.elapsed());
        let t = Instant::now();
        s.disconnect(&net).unwrap();
        disconnect.push(t.elapsed());
        s.connect(&net, &EndpointOptions::new()).unwrap();
        let t = Instant::now();
        s.remove().unwrap();
        remove.push(t.elapsed());
    }
    let (mut connect_port, mut remove_port) = (vec![], vec![]);
    for i in 0..ROUNDS {
        let mut s = Sandbox::none(&format!("p{i}")).unwrap();
        let mut opts = EndpointOptions::new();
        opts.port(nook_netmodel::firewall::PortMapping {
            protocol: nook_netmodel::firewall::Protocol::Tcp,
            host_ip: None,
            host_port: 8000 + i as u16,
            container_port: 80,
        });
        let t = Instant::now();
        s.connect(&net, &opts).unwrap();
        connect_port.push(t.elapsed());
        let t = Instant::now();
        s.remove().unwrap();
        remove_port.push(t.elapsed());
    }
    report("Sandbox::none (netns + lo up)", none);
    report("Sandbox::connect (bridge, IPAM, veth, addr, route)", connect);
    report("Sandbox::disconnect", disconnect);
    report("Sandbox::remove (one endpoint)", remove);
    report("Sandbox::connect with one published port (nft)", connect_port);
    report("Sandbox::remove with one published port (nft)", remove_port);
    let t = Instant::now();
    net.remove().unwrap();
    report("Network::remove (nft teardown, bridge delete, IPAM)", vec![t.elapsed()]);
}
