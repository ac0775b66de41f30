//! The netlink layer against the real kernel. Everything happens inside network namespaces
//! the tests create (`NetNs::new()`: anonymous, destroyed with the handle, links and all).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use ipnet::IpNet;
use nook_netmodel::ValidationError;
use nook_netmodel::netlink::{
    LinkInfo, LinkKind, MacvlanMode, Netlink, NetlinkError, NewLink, Route, read_sysctl, write_sysctl,
};
use nook_ns::NetNs;
use nook_testutil::{require_root, unique_name};

fn netns() -> NetNs {
    NetNs::new().expect("new netns")
}

fn nl(ns: &NetNs) -> Netlink {
    Netlink::open_in(ns.ns()).expect("open_in")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn link(nl: &mut Netlink, name: &str) -> LinkInfo {
    nl.link(name).expect("link").unwrap_or_else(|| panic!("no link {name}"))
}

fn add(nl: &mut Netlink, l: &NewLink<'_>) -> u32 {
    nl.add_link(l).expect("add_link").expect("index of a link created here")
}

/// A plain link to hang things on. (A bridge: this host's kernel may lack `dummy`.)
fn plain(nl: &mut Netlink, name: &str, up: bool) -> u32 {
    let mut l = NewLink::new(name, LinkKind::Bridge);
    l.up = up;
    add(nl, &l)
}

/// A veth pair with both ends here and up (so it has carrier); returns both indexes.
fn veth_pair(nl: &mut Netlink) -> (u32, u32) {
    let (a, b) = (unique_name("va"), unique_name("vb"));
    let mut l = NewLink::new(&a, LinkKind::Veth { peer_name: &b, peer_netns: None, peer_mtu: None, peer_mac: None });
    l.up = true;
    let ia = add(nl, &l);
    let ib = link(nl, &b).index;
    nl.set_up(ib).unwrap();
    (ia, ib)
}

/// Whether the kernel has the `dummy` link type (CONFIG_DUMMY); reports a skip if not.
fn dummy_supported(nl: &mut Netlink, test: &str) -> bool {
    let name = unique_name("probe");
    match nl.add_link(&NewLink::new(&name, LinkKind::Dummy)) {
        Ok(Some(index)) => {
            nl.delete_link(index).unwrap();
            true
        }
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
            nook_testutil::skip_unsupported(test, "the kernel has no dummy links (CONFIG_DUMMY)");
            false
        }
        other => panic!("dummy probe: {other:?}"),
    }
}

/// `ip -d -j link show NAME` run inside `ns`: an independent view of what the kernel holds.
fn ip_details(ns: &NetNs, name: &str) -> serde_json::Value {
    let out = ns
        .run(|| Command::new("ip").args(["-d", "-j", "link", "show", "dev", name]).output())
        .unwrap()
        .expect("run ip");
    let stdout = nook_testutil::success_stdout(out);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("ip -j output");
    v[0].clone()
}

fn thread_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn veth_with_peer_created_in_another_netns_in_one_request() {
    require_root!();
    let (host, sandbox) = (netns(), netns());
    let mut h = nl(&host);
    let mut s = nl(&sandbox);
    let (br, veth, peer) = (unique_name("br"), unique_name("vh"), unique_name("vp"));
    let mut b = NewLink::new(&br, LinkKind::Bridge);
    b.up = true;
    let br_index = add(&mut h, &b);

    let mut l = NewLink::new(
        &veth,
        LinkKind::Veth {
            peer_name: &peer,
            peer_netns: Some(sandbox.ns().as_fd()),
            peer_mtu: Some(1400),
            peer_mac: Some([0x02, 0, 0, 0, 0, 0x22]),
        },
    );
    l.mtu = Some(1400);
    l.mac = Some([0x02, 0, 0, 0, 0, 0x11]);
    l.master = Some(br_index);
    l.up = true;
    let index = add(&mut h, &l);

    let got = link(&mut h, &veth);
    assert_eq!(got.index, index, "the echoed index is the link's");
    assert_eq!(got.kind.as_deref(), Some("veth"));
    assert_eq!(got.mtu, 1400);
    assert_eq!(got.mac, Some([0x02, 0, 0, 0, 0, 0x11]));
    assert_eq!(got.master, Some(br_index));
    assert!(got.up);
    assert_eq!(h.link_by_index(index).unwrap().as_ref(), Some(&got));
    assert!(h.links().unwrap().contains(&got));
    assert!(h.link(&peer).unwrap().is_none(), "the peer is not in the host namespace");

    let p = link(&mut s, &peer);
    assert_eq!(p.kind.as_deref(), Some("veth"));
    assert_eq!(p.mtu, 1400);
    assert_eq!(p.mac, Some([0x02, 0, 0, 0, 0, 0x22]));
    assert_eq!(p.master, None);
    assert!(!p.up);

    let b = link(&mut h, &br);
    assert_eq!(b.kind.as_deref(), Some("bridge"));
    assert!(b.up);

    // Detach and re-attach.
    h.set_master(index, None).unwrap();
    assert_eq!(link(&mut h, &veth).master, None);
    h.set_master(index, Some(br_index)).unwrap();
    assert_eq!(link(&mut h, &veth).master, Some(br_index));
}

#[test]
fn link_created_in_another_netns_returns_no_index() {
    require_root!();
    let (a, b) = (netns(), netns());
    let mut na = nl(&a);
    let mut nb = nl(&b);
    let name = unique_name("br");
    let mut l = NewLink::new(&name, LinkKind::Bridge);
    l.netns = Some(b.ns().as_fd());
    l.up = true;
    assert_eq!(na.add_link(&l).unwrap(), None);
    assert!(na.link(&name).unwrap().is_none());
    let got = link(&mut nb, &name);
    assert_eq!((got.kind.as_deref(), got.up), (Some("bridge"), true));

    // A veth whose two ends are both created elsewhere, each in its own namespace.
    let (c, d) = (netns(), netns());
    let (x, y) = (unique_name("vx"), unique_name("vy"));
    let mut l = NewLink::new(
        &x,
        LinkKind::Veth { peer_name: &y, peer_netns: Some(d.ns().as_fd()), peer_mtu: None, peer_mac: None },
    );
    l.netns = Some(c.ns().as_fd());
    assert_eq!(na.add_link(&l).unwrap(), None);
    assert_eq!(link(&mut nl(&c), &x).kind.as_deref(), Some("veth"));
    assert_eq!(link(&mut nl(&d), &y).kind.as_deref(), Some("veth"));
    assert!(na.link(&x).unwrap().is_none() && na.link(&y).unwrap().is_none());

    // Created elsewhere, attached to a bridge there (the master index is the target's); the
    // peer without a namespace of its own stays with the socket.
    let mut nc = nl(&c);
    let br = unique_name("br");
    let br_index = add(&mut nc, &NewLink::new(&br, LinkKind::Bridge));
    let (p, q) = (unique_name("vp"), unique_name("vq"));
    let mut l = NewLink::new(&p, LinkKind::Veth { peer_name: &q, peer_netns: None, peer_mtu: None, peer_mac: None });
    l.netns = Some(c.ns().as_fd());
    l.master = Some(br_index);
    assert_eq!(na.add_link(&l).unwrap(), None);
    assert_eq!(link(&mut nc, &p).master, Some(br_index));
    assert_eq!(link(&mut na, &q).kind.as_deref(), Some("veth"));
}

#[test]
fn dummy_link() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    if !dummy_supported(&mut n, "dummy_link") {
        return;
    }
    let name = unique_name("dm");
    let mut l = NewLink::new(&name, LinkKind::Dummy);
    l.mtu = Some(9000);
    l.up = true;
    let index = add(&mut n, &l);
    let got = link(&mut n, &name);
    assert_eq!((got.index, got.kind.as_deref(), got.mtu, got.up), (index, Some("dummy"), 9000, true));
}

#[test]
fn bridge_and_veth_with_mtu_mac_master_and_state() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let (br, dm, peer) = (unique_name("br"), unique_name("ve"), unique_name("vp"));
    let br_index = add(&mut n, &NewLink::new(&br, LinkKind::Bridge));
    let mut d =
        NewLink::new(&dm, LinkKind::Veth { peer_name: &peer, peer_netns: None, peer_mtu: None, peer_mac: None });
    d.mtu = Some(9000);
    d.master = Some(br_index);
    let dm_index = add(&mut n, &d);

    let got = link(&mut n, &dm);
    assert_eq!((got.kind.as_deref(), got.mtu, got.master, got.up), (Some("veth"), 9000, Some(br_index), false));
    assert_eq!(link(&mut n, &peer).master, None);
    assert_eq!(link(&mut n, &br).kind.as_deref(), Some("bridge"));

    n.set_up(dm_index).unwrap();
    assert!(link(&mut n, &dm).up);
    n.set_down(dm_index).unwrap();
    assert!(!link(&mut n, &dm).up);
    n.set_mtu(dm_index, 1280).unwrap();
    assert_eq!(link(&mut n, &dm).mtu, 1280);
    n.set_mac(dm_index, [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]).unwrap();
    assert_eq!(link(&mut n, &dm).mac, Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));

    let lo = link(&mut n, "lo");
    assert_eq!(lo.kind, None, "lo has no kind");
    assert_eq!(lo.index, 1);
}

#[test]
fn macvlan_in_each_mode_on_a_parent() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let parent_name = unique_name("pa");
    let parent = plain(&mut n, &parent_name, true);
    for (mode, shown) in [
        (MacvlanMode::Private, "private"),
        (MacvlanMode::Vepa, "vepa"),
        (MacvlanMode::Bridge, "bridge"),
        (MacvlanMode::Passthru, "passthru"),
    ] {
        let name = unique_name("mv");
        let mut l = NewLink::new(&name, LinkKind::Macvlan { parent, mode });
        l.up = true;
        let index = add(&mut n, &l);
        let got = link(&mut n, &name);
        assert_eq!((got.index, got.kind.as_deref(), got.up), (index, Some("macvlan"), true));
        let details = ip_details(&ns, &name);
        assert_eq!(details["linkinfo"]["info_data"]["mode"], shown, "{details}");
        assert_eq!(details["link"], parent_name.as_str(), "{details}");
        // Passthru takes the parent over; remove it before the next mode.
        n.delete_link(index).unwrap();
    }
}

#[test]
fn vxlan_with_vni_addresses_device_and_port() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let under = plain(&mut n, &unique_name("un"), true);
    n.add_address(under, net("192.0.2.1/24")).unwrap();

    let name = unique_name("vx");
    let l = NewLink::new(
        &name,
        LinkKind::Vxlan {
            vni: 4242,
            local: Some(ip("192.0.2.1")),
            remote: Some(ip("192.0.2.2")),
            dev: Some(under),
            port: None,
            static_fdb: false,
        },
    );
    add(&mut n, &l);
    assert_eq!(link(&mut n, &name).kind.as_deref(), Some("vxlan"));
    let d = ip_details(&ns, &name)["linkinfo"]["info_data"].clone();
    assert_eq!(d["id"], 4242, "{d}");
    assert_eq!(d["local"], "192.0.2.1", "{d}");
    assert_eq!(d["remote"], "192.0.2.2", "{d}");
    assert_eq!(d["port"], 4789, "{d}");

    let name6 = unique_name("vx");
    let l6 = NewLink::new(
        &name6,
        LinkKind::Vxlan {
            vni: 7,
            local: None,
            remote: Some(ip("ff05::42")),
            dev: Some(under),
            port: Some(8472),
            static_fdb: false,
        },
    );
    add(&mut n, &l6);
    let d = ip_details(&ns, &name6)["linkinfo"]["info_data"].clone();
    assert_eq!(
        (d["id"].clone(), d["group6"].clone(), d["port"].clone()),
        (7.into(), "ff05::42".into(), 8472.into()),
        "{d}"
    );
}

#[test]
fn rename_a_down_link() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let (old, new) = (unique_name("rn"), unique_name("rn"));
    let index = plain(&mut n, &old, false);
    n.rename(index, &new).unwrap();
    assert!(n.link(&old).unwrap().is_none());
    assert_eq!(link(&mut n, &new).index, index);
    assert!(matches!(n.rename(index, "0123456789abcdef"), Err(NetlinkError::Invalid(_))));
    assert_eq!(link(&mut n, &new).index, index);
}

#[test]
fn move_to_netns_moves_the_link() {
    require_root!();
    let (a, b) = (netns(), netns());
    let mut na = nl(&a);
    let mut nb = nl(&b);
    let (index, _) = veth_pair(&mut na);
    let name = na.link_by_index(index).unwrap().unwrap().name;
    na.move_to_netns(index, b.ns().as_fd()).unwrap();
    assert!(na.link(&name).unwrap().is_none());
    assert!(na.link_by_index(index).unwrap().is_none());
    assert_eq!(link(&mut nb, &name).kind.as_deref(), Some("veth"));
    // Bridges are namespace-local: the kernel refuses, and says so.
    let br = plain(&mut na, &unique_name("br"), false);
    assert!(na.move_to_netns(br, b.ns().as_fd()).unwrap_err().errno().is_some());
}

#[test]
fn addresses_v4_and_v6() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let (index, other) = veth_pair(&mut n);
    let (v4, v6) = (net("10.9.8.7/24"), net("fd00:9::7/64"));
    n.add_address(index, v4).unwrap();
    n.add_address(index, v6).unwrap();
    n.add_address(other, net("10.9.9.1/24")).unwrap();

    let got = n.addresses(index).unwrap();
    assert!(got.contains(&v4) && got.contains(&v6), "{got:?}");
    assert!(!got.contains(&net("10.9.9.1/24")), "only this link's addresses: {got:?}");

    let dup = n.add_address(index, v4).unwrap_err();
    assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");

    // NODAD: the IPv6 address is not tentative (ip shows no "tentative" flag).
    let out = ns.run(|| Command::new("ip").args(["-6", "-j", "addr", "show", "to", "fd00:9::7/64"]).output()).unwrap();
    let shown = nook_testutil::success_stdout(out.unwrap());
    assert!(shown.contains("nodad") && !shown.contains("tentative"), "{shown}");

    n.delete_address(index, v4).unwrap();
    n.delete_address(index, v6).unwrap();
    let got = n.addresses(index).unwrap();
    assert!(!got.contains(&v4) && !got.contains(&v6), "{got:?}");
    let missing = n.delete_address(index, v4).unwrap_err();
    assert_eq!(missing.errno(), Some(libc::EADDRNOTAVAIL), "{missing}");
}

#[test]
fn routes_v4_and_v6_including_default_via_gateway() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let (index, _) = veth_pair(&mut n);
    n.add_address(index, net("10.20.0.1/24")).unwrap();
    n.add_address(index, net("fd00:20::1/64")).unwrap();

    let subnet = Route::new(Some(net("10.21.0.0/16")), Some(ip("10.20.0.254")), None);
    let default4 = Route::new(None, Some(ip("10.20.0.254")), Some(index));
    let direct = Route::new(Some(net("10.22.0.0/16")), None, Some(index));
    let default6 = Route::new(None, Some(ip("fd00:20::fe")), Some(index));
    for r in [&subnet, &default4, &direct, &default6] {
        n.add_route(r).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    let dup = n.add_route(&default4).unwrap_err();
    assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");

    let v4 = n.routes(false).unwrap();
    assert!(v4.contains(&default4), "{v4:?}");
    assert!(v4.contains(&direct), "{v4:?}");
    assert!(v4.contains(&Route::new(subnet.destination, subnet.gateway, Some(index))), "{v4:?}");
    assert!(v4.contains(&Route::new(Some(net("10.20.0.0/24")), None, Some(index))));
    assert!(v4.iter().all(|r| !r.ipv6));
    let v6 = n.routes(true).unwrap();
    assert!(v6.contains(&default6), "{v6:?}");
    assert!(v6.iter().all(|r| r.ipv6 && r.destination.is_none_or(|d| matches!(d, IpNet::V6(_)))));

    // The kernel really routes with them.
    let out = ns.run(|| Command::new("ip").args(["-j", "route", "get", "10.21.3.4"]).output()).unwrap();
    assert!(nook_testutil::success_stdout(out.unwrap()).contains("10.20.0.254"));

    for r in [&subnet, &default4, &direct, &default6] {
        n.delete_route(r).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    let v4 = n.routes(false).unwrap();
    assert!(!v4.contains(&default4) && !v4.contains(&direct), "{v4:?}");
    assert!(v4.iter().all(|r| r.destination != subnet.destination), "{v4:?}");
    assert!(!n.routes(true).unwrap().contains(&default6));
    let gone = n.delete_route(&default4).unwrap_err();
    assert_eq!(gone.errno(), Some(libc::ESRCH), "{gone}");
}

#[test]
fn delete_links_batch_leaves_none() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let mut indexes = Vec::new();
    let mut names = Vec::new();
    for _ in 0..6 {
        let (a, b) = (unique_name("ba"), unique_name("bb"));
        let l = NewLink::new(&a, LinkKind::Veth { peer_name: &b, peer_netns: None, peer_mtu: None, peer_mac: None });
        indexes.push(add(&mut n, &l));
        // Both ends: the second one is gone with the first (ENODEV counts as success).
        indexes.push(link(&mut n, &b).index);
        names.extend([a, b]);
    }
    let keep = plain(&mut n, &unique_name("kp"), false);
    indexes.push(999_999);
    let errors = n.delete_links(&indexes);
    assert!(errors.is_empty(), "{errors:?}");
    let left: Vec<String> = n.links().unwrap().into_iter().map(|l| l.name).collect();
    assert!(names.iter().all(|name| !left.contains(name)), "{left:?}");
    assert!(n.link_by_index(keep).unwrap().is_some(), "only the listed links go");
    assert!(n.delete_links(&[]).is_empty());
    // A failure other than ENODEV is reported: lo cannot be deleted.
    let errors = n.delete_links(&[1]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].errno().is_some_and(|e| e != libc::ENODEV), "{errors:?}");

    // In a batch, an undeletable link makes the kernel refuse the group delete: the others
    // still go, the failure names lo, and lo is left as it was (its group restored).
    let (x, _) = veth_pair(&mut n);
    let (y, _) = veth_pair(&mut n);
    let errors = n.delete_links(&[x, 1, y]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].to_string().contains("ifindex 1"), "{}", errors[0]);
    assert!(n.link_by_index(x).unwrap().is_none() && n.link_by_index(y).unwrap().is_none());
    assert!(link(&mut n, "lo").index == 1);
    assert_eq!(ip_details(&ns, "lo")["group"], "default");
}

#[test]
fn errors_are_typed() {
    require_root!();
    let ns = netns();
    let mut n = nl(&ns);
    let name = unique_name("er");
    plain(&mut n, &name, false);
    let dup = n.add_link(&NewLink::new(&name, LinkKind::Dummy)).unwrap_err();
    assert!(matches!(&dup, NetlinkError::Kernel { op: "RTM_NEWLINK", .. }), "{dup:?}");
    assert_eq!(dup.errno(), Some(libc::EEXIST));

    let missing = n.set_up(999_999).unwrap_err();
    assert_eq!(missing.errno(), Some(libc::ENODEV), "{missing}");
    assert!(n.delete_link(999_999).unwrap_err().errno() == Some(libc::ENODEV));
    assert!(n.link_by_index(999_999).unwrap().is_none());
    assert!(n.link("nk-not-there").unwrap().is_none());

    let before = n.links().unwrap();
    let long = "nk456789abcdefgh";
    assert_eq!(long.len(), 16);
    let bad = n.add_link(&NewLink::new(long, LinkKind::Dummy)).unwrap_err();
    assert!(matches!(bad, NetlinkError::Invalid(ValidationError::IfName { field: "link name", .. })), "{bad:?}");
    assert_eq!(bad.errno(), None);
    let peer_bad =
        NewLink::new("nkok", LinkKind::Veth { peer_name: long, peer_netns: None, peer_mtu: None, peer_mac: None });
    assert!(matches!(n.add_link(&peer_bad), Err(NetlinkError::Invalid(_))));
    assert_eq!(n.links().unwrap(), before, "nothing was created");
    assert!(matches!(n.link(long), Err(NetlinkError::Invalid(_))));
}

#[test]
fn open_in_does_not_move_the_calling_thread() {
    require_root!();
    let ns = netns();
    let before = thread_netns_inode();
    let mut n = Netlink::open_in(ns.ns()).unwrap();
    assert_eq!(thread_netns_inode(), before);
    // The socket acts in `ns`: a fresh namespace holds only lo, and a link made through
    // it is seen from inside.
    let names: Vec<String> = n.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo"]);
    let name = unique_name("in");
    plain(&mut n, &name, false);
    let seen = ns.run(|| Netlink::open().unwrap().link(&name).unwrap()).unwrap();
    assert!(seen.is_some());
    assert_eq!(thread_netns_inode(), before);

    // A handle that is not a network namespace is refused rather than silently used.
    let mnt = nook_ns::NsFd::current(nook_ns::Namespace::Mount).unwrap();
    assert!(matches!(Netlink::open_in(&mnt), Err(NetlinkError::Invalid(_))));
}

#[test]
fn sysctl_in_a_test_netns_leaves_the_host_alone() {
    require_root!();
    let ns = netns();
    let key = "net/ipv4/ip_forward";
    let host_before = read_sysctl(None, key).unwrap();
    let before = thread_netns_inode();
    let target = if read_sysctl(Some(ns.ns()), key).unwrap() == "1" { "0" } else { "1" };
    write_sysctl(Some(ns.ns()), key, target).unwrap();
    assert_eq!(read_sysctl(Some(ns.ns()), key).unwrap(), target);
    assert_eq!(read_sysctl(None, key).unwrap(), host_before);
    assert_eq!(thread_netns_inode(), before);
    // Independent check from inside.
    let inside = ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()).unwrap();
    assert_eq!(inside.trim(), target);

    assert!(matches!(read_sysctl(Some(ns.ns()), "net/../kernel/hostname"), Err(NetlinkError::Invalid(_))));
    assert!(matches!(write_sysctl(Some(ns.ns()), "/proc/sys/net/ipv4/ip_forward", "1"), Err(NetlinkError::Invalid(_))));
    let missing = read_sysctl(Some(ns.ns()), "net/ipv4/nk_no_such_key").unwrap_err();
    assert!(matches!(missing, NetlinkError::Sys { call: "open", path: Some(_), .. }), "{missing:?}");
    assert_eq!(missing.errno(), Some(libc::ENOENT));
}

/// Two veth ends in two namespaces with addresses: a TCP connection crosses them.
#[test]
fn tcp_connects_across_a_veth_pair() {
    require_root!();
    let (a, b) = (netns(), netns());
    let mut na = nl(&a);
    let mut nb = nl(&b);
    let (ea, eb) = (unique_name("ta"), unique_name("tb"));
    let mut l = NewLink::new(
        &ea,
        LinkKind::Veth { peer_name: &eb, peer_netns: Some(b.ns().as_fd()), peer_mtu: None, peer_mac: None },
    );
    l.up = true;
    let ia = add(&mut na, &l);
    let ib = link(&mut nb, &eb).index;
    na.add_address(ia, net("10.77.0.1/24")).unwrap();
    na.add_address(ia, net("fd00:77::1/64")).unwrap();
    nb.add_address(ib, net("10.77.0.2/24")).unwrap();
    nb.add_address(ib, net("fd00:77::2/64")).unwrap();
    nb.set_up(ib).unwrap();

    for server in ["10.77.0.2:0", "[fd00:77::2]:0"] {
        let listener = b.run(|| TcpListener::bind(server)).unwrap().expect("bind in b");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let served = std::thread::spawn(move || {
            let (mut conn, peer) = listener.accept().unwrap();
            conn.write_all(b"nook").unwrap();
            peer.ip()
        });
        let got = a
            .run(|| {
                let mut s = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))?;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf)?;
                std::io::Result::Ok(buf)
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        assert_eq!(got, b"nook");
        let peer = served.join().unwrap();
        assert!(peer == ip("10.77.0.1") || peer == ip("fd00:77::1"), "{peer}");
    }
}

/// The endpoint setup a sandbox does: veth created with its peer directly in the sandbox
/// namespace, attached to the bridge and up in one request; then inside the sandbox the
/// address, up and the default route. Checks the result (and prints the time taken).
#[test]
fn endpoint_setup() {
    require_root!();
    let (host, sandbox) = (netns(), netns());
    let mut h = nl(&host);
    let br = unique_name("br");
    let mut b = NewLink::new(&br, LinkKind::Bridge);
    b.up = true;
    let br_index = add(&mut h, &b);
    h.add_address(br_index, net("10.88.0.1/24")).unwrap();

    let mut timings = Vec::new();
    for i in 0..5 {
        let (hv, sv) = (unique_name("eh"), unique_name("es"));
        let start = std::time::Instant::now();
        let mut l = NewLink::new(
            &hv,
            LinkKind::Veth { peer_name: &sv, peer_netns: Some(sandbox.ns().as_fd()), peer_mtu: None, peer_mac: None },
        );
        l.master = Some(br_index);
        l.up = true;
        h.add_link(&l).unwrap();
        let mut s = Netlink::open_in(sandbox.ns()).unwrap();
        let idx = s.link(&sv).unwrap().unwrap().index;
        let addr = net(&format!("10.88.0.{}/24", 10 + i));
        s.add_address(idx, addr).unwrap();
        s.set_up(idx).unwrap();
        if i == 0 {
            s.add_route(&Route::new(None, Some(ip("10.88.0.1")), Some(idx))).unwrap();
        }
        timings.push(start.elapsed());
        assert!(s.addresses(idx).unwrap().contains(&addr));
    }
    eprintln!("endpoint setup times: {timings:?}");
    let mut s = nl(&sandbox);
    assert!(s.routes(false).unwrap().iter().any(|r| r.destination.is_none() && r.gateway == Some(ip("10.88.0.1"))));
    assert!(h.links().unwrap().iter().filter(|l| l.master == Some(br_index)).count() == 5);
}
