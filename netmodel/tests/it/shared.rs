//! Networks shared between processes ([`Network::open`], [`Network::release`],
//! [`Network::leave`]) and automatic subnets, with real processes.
//!
//! Tests that need other processes re-execute this test binary on themselves
//! (`--exact shared::<test>`) with `NK_SHARED_ROLE` set: the worker joins the test's host
//! namespace through `/proc/<test pid>/fd/<fd>`, uses the same state directory, and talks to
//! the test over its stdin (one line per step) and stdout (`NK...` lines).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ipnet::IpNet;
use nook_netmodel::ipam::{AddressPool, IpamError};
use nook_netmodel::netlink::Route;
use nook_netmodel::{EndpointOptions, Error, Host, Network, NetworkSpec, Sandbox};
use nook_ns::{Namespace, NsFd};
use nook_testutil::{require_root, unique_name};

use crate::common::{World, listen_in, serve_once, state_files, talk};

const ROLE: &str = "NK_SHARED_ROLE";
const NETNS: &str = "NK_SHARED_NETNS";
const DIR: &str = "NK_SHARED_DIR";
const NAME: &str = "NK_SHARED_NAME";
/// The `create` role's subnet (absent: an automatic one).
const SUBNET: &str = "NK_SHARED_SUBNET";

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("worker needs {key}"))
}

/// The worker's host: the test's host namespace and state directory.
fn worker_host() -> Host {
    let netns = NsFd::open(env(NETNS), Namespace::Net).expect("open the test's host netns");
    Host::builder().netns(&netns).ipam_dir(env(DIR)).build().expect("host")
}

/// Reads one line from stdin (a step of the test); `false` at EOF.
fn step(stdin: &mut impl BufRead) -> bool {
    let mut line = String::new();
    stdin.read_line(&mut line).expect("read stdin") > 0
}

/// When run as a worker: does its role and returns true.
///
/// - `create`: creates the bridge network `NAME` with `SUBNET` or an automatic one after
///   the first step, prints `NKSUBNET <subnet> <bridge>` and exits without leaving or
///   removing it — as a process that crashed would.
/// - `remove`: after the first step creates the bridge network `NAME` on `SUBNET`, connects
///   and removes a sandbox, removes the network, prints `NKREMOVED <bridge>` and exits at once.
/// - `join`: after the first step opens `NAME`, connects two sandboxes, serves one TCP
///   connection on port 7100 in the first, prints `NKEP <address> <mac>` per endpoint and
///   `NKREADY`; after the second step removes its sandboxes, releases the network and prints
///   `NKRELEASED <removed>`.
pub(crate) fn as_worker() -> bool {
    let Ok(role) = std::env::var(ROLE) else { return false };
    let mut stdin = std::io::stdin().lock();
    let host = worker_host();
    let name = env(NAME);
    match role.as_str() {
        "create" => {
            step(&mut stdin);
            let mut spec = NetworkSpec::bridge(name.parse().unwrap());
            if let Ok(subnet) = std::env::var(SUBNET) {
                spec.subnet(subnet.parse().unwrap(), None);
            }
            let net = Network::create(&host, &spec).expect("create");
            println!("NKSUBNET {} {}", net.spec().subnets[0].subnet, net.bridge().unwrap());
            std::mem::forget(net);
        }
        "join" => {
            step(&mut stdin);
            let net = Network::open(&host, &name).expect("open");
            let mut sandboxes = Vec::new();
            for i in 0..2 {
                let mut s = Sandbox::none(&format!("w{}-{i}", std::process::id())).unwrap();
                let ep = s.connect(&net, &EndpointOptions::new()).expect("connect");
                let mac = ep.mac.expect("a MAC address");
                println!("NKEP {} {}", ep.ipv4().unwrap(), mac.map(|b| format!("{b:02x}")).join(":"));
                sandboxes.push(s);
            }
            let server = serve_once(listen_in(&sandboxes[0], 7100));
            println!("NKREADY");
            std::io::stdout().flush().unwrap();
            step(&mut stdin);
            server.join().expect("served the test");
            for s in sandboxes {
                s.remove().unwrap();
            }
            println!("NKRELEASED {}", net.release().expect("release"));
        }
        "remove" => {
            step(&mut stdin);
            let net = Network::create(&host, &spec(&name, &env(SUBNET))).expect("create");
            let bridge = net.bridge().unwrap().to_owned();
            let mut sandbox = Sandbox::none(&format!("w{}", std::process::id())).unwrap();
            sandbox.connect(&net, &EndpointOptions::new()).expect("connect");
            sandbox.remove().expect("remove the sandbox");
            // On one CPU, a thread the removal starts runs only when this one lets it: the
            // exit below comes first unless the process waits for it.
            let mut one = rustix::thread::CpuSet::new();
            one.set(rustix::thread::sched_getcpu());
            rustix::thread::sched_setaffinity(None, &one).expect("pin to one CPU");
            net.remove().expect("remove the network");
            println!("NKREMOVED {bridge}");
            std::io::stdout().flush().unwrap();
            // At once, as a program whose last act was removing its network.
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
    true
}

/// A worker process (this test binary running `test` as `role`).
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(test: &str, role: &str, world: &World, name: &str) -> Worker {
        Worker::spawn_with(test, role, world, name, None)
    }

    fn spawn_with(test: &str, role: &str, world: &World, name: &str, subnet: Option<&str>) -> Worker {
        let netns = format!("/proc/{}/fd/{}", std::process::id(), world.host_ns.ns().as_fd().as_raw_fd());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(NETNS, netns)
            .env(DIR, world.state.path())
            .env(NAME, name)
            .envs(subnet.map(|s| (SUBNET, s)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Worker { child, stdin, stdout }
    }

    /// Lets the worker take its next step.
    fn go(&mut self) {
        writeln!(self.stdin.as_mut().unwrap(), "go").unwrap();
    }

    /// The `NK...` lines up to and including one starting with `until` (libtest may print on
    /// the same line, so look anywhere in it).
    fn read_until(&mut self, until: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "worker ended before {until}: {lines:?}");
            if let Some(i) = line.find("NK") {
                let l = line[i..].trim_end().to_owned();
                let done = l.starts_with(until);
                lines.push(l);
                if done {
                    return lines;
                }
            }
        }
    }

    /// Waits for it to exit successfully.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
    }
}

/// Has a process (test `test` re-executed, which must start with [`as_worker`]) create the
/// bridge network `name` on `subnet` (or an automatic one) and die without removing it;
/// returns the subnet and the bridge's name.
pub(crate) fn create_in_a_process_that_dies(
    test: &str,
    world: &World,
    name: &str,
    subnet: Option<&str>,
) -> (IpNet, String) {
    let mut creator = Worker::spawn_with(test, "create", world, name, subnet);
    creator.go();
    let line = creator.read_until("NKSUBNET").pop().unwrap();
    creator.finish();
    let words: Vec<&str> = line.split(' ').collect();
    (words[1].parse().unwrap(), words[2].to_owned())
}

fn spec(name: &str, subnet: &str) -> NetworkSpec {
    let mut spec = NetworkSpec::bridge(name.parse().unwrap());
    spec.subnet(subnet.parse().unwrap(), None);
    spec
}

/// The host-side veth ends on `bridge` in the host namespace.
fn ports_of(world: &World, bridge: &str) -> usize {
    let mut nl = world.netlink();
    let index = nl.link(bridge).unwrap().expect("bridge").index;
    nl.links().unwrap().iter().filter(|l| l.master == Some(index)).count()
}

#[test]
fn four_processes_share_a_network_that_outlives_its_creator() {
    if as_worker() {
        return;
    }
    require_root!();
    const TEST: &str = "shared::four_processes_share_a_network_that_outlives_its_creator";
    let world = World::new();
    let name = unique_name("shr");

    // A process creates the network (automatic subnet) and dies without leaving it.
    let (subnet, _) = create_in_a_process_that_dies(TEST, &world, &name, None);
    assert_eq!(subnet, "172.17.0.0/16".parse::<IpNet>().unwrap(), "the first of Docker's pools");

    // This process attaches: the creator's user entry is dead and does not count.
    let net = Network::open(&world.host, &name).unwrap();
    assert_eq!(net.spec().subnets[0].subnet, subnet);
    assert_eq!(net.users().unwrap(), [nook_netmodel::ipam::Owner::current_process()]);
    let bridge = net.bridge().unwrap().to_owned();

    // Four processes open it and connect two sandboxes each, all at once.
    let mut workers: Vec<Worker> = (0..4).map(|_| Worker::spawn(TEST, "join", &world, &name)).collect();
    for w in &mut workers {
        w.go();
    }
    let mut addresses = Vec::new();
    let mut macs = Vec::new();
    let mut servers = Vec::new();
    for w in &mut workers {
        let lines = w.read_until("NKREADY");
        let eps: Vec<Vec<&str>> =
            lines.iter().filter(|l| l.starts_with("NKEP ")).map(|l| l.split(' ').collect()).collect();
        assert_eq!(eps.len(), 2, "{lines:?}");
        servers.push(eps[0][1].parse::<IpAddr>().unwrap());
        for ep in eps {
            addresses.push(ep[1].parse::<IpAddr>().unwrap());
            macs.push(ep[2].to_owned());
        }
    }
    let distinct: BTreeSet<&IpAddr> = addresses.iter().collect();
    assert_eq!(distinct.len(), 8, "addresses handed out twice: {addresses:?}");
    assert!(addresses.iter().all(|a| subnet.contains(a)), "{addresses:?}");
    let distinct: BTreeSet<&String> = macs.iter().collect();
    assert_eq!(distinct.len(), 8, "MAC addresses repeated: {macs:?}");
    // The kernel's view: eight veth ends on the one bridge; five users.
    assert_eq!(ports_of(&world, &bridge), 8);
    assert_eq!(net.users().unwrap().len(), 5);

    // A sandbox of this process reaches a sandbox of each worker over the shared bridge.
    let mut mine = Sandbox::none("tester").unwrap();
    let ep = mine.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(!addresses.contains(&IpAddr::V4(ep.ipv4().unwrap())));
    for (i, server) in servers.iter().enumerate() {
        let answer = talk(mine.netns(), SocketAddr::new(*server, 7100), &format!("hi {i}")).unwrap();
        assert_eq!(answer, format!("echo: hi {i}"));
    }

    // Removal is refused while other processes have endpoints (and changes nothing).
    mine.remove().unwrap();
    let other = Network::open(&world.host, &name).unwrap();
    match other.remove() {
        Err(Error::NetworkInUse { endpoints, .. }) => assert_eq!(endpoints.len(), 8, "{endpoints:?}"),
        other => panic!("{other:?}"),
    }
    assert!(ports_of(&world, &bridge) >= 8, "the bridge and the workers' ends are still there");

    // This process leaves first: not the last user.
    assert!(!net.release().unwrap());
    // One worker is killed (its entry and its endpoints' addresses count as gone), the
    // others release in turn; the last one removes the network.
    let mut killed = workers.remove(1);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let mut removed = Vec::new();
    for mut w in workers {
        w.go();
        let line = w.read_until("NKRELEASED").pop().unwrap();
        removed.push(line == "NKRELEASED true");
        w.finish();
    }
    assert_eq!(removed, [false, false, true], "only the last user removes it");
    // Bridge, firewall rules and state files are gone (World's drop checks it all, waiting
    // for the killed worker's namespaces to die); the name is free again.
    world.assert_clean();
    assert!(matches!(Network::open(&world.host, &name), Err(Error::NetworkNotFound { .. })));
}

#[test]
fn open_finds_only_networks_that_exist() {
    require_root!();
    let world = World::new();
    assert!(
        matches!(Network::open(&world.host, "nk-none"), Err(Error::NetworkNotFound { network }) if network == "nk-none")
    );
    assert!(matches!(Network::open(&world.host, "../x"), Err(Error::Invalid(_))));

    let name = unique_name("opn");
    let net = Network::create(&world.host, &spec(&name, "10.91.1.0/24")).unwrap();
    // A second create of the same network is refused by name, changing nothing.
    let before = world.snapshot();
    assert!(matches!(Network::create(&world.host, &spec(&name, "10.91.2.0/24")), Err(Error::NetworkExists { .. })));
    assert_eq!(world.snapshot(), before);
    let again = Network::open(&world.host, &name).unwrap();
    assert_eq!((again.id(), again.spec()), (net.id(), net.spec()));
    assert_eq!(again.users().unwrap().len(), 2);
    // Two handles on one network are one network to a sandbox.
    let mut s = Sandbox::none("twice").unwrap();
    s.connect(&net, &EndpointOptions::new()).unwrap();
    assert!(s.endpoint(&again).is_some());
    assert!(s.connect(&again, &EndpointOptions::new()).is_err(), "connected once only");
    s.remove().unwrap();

    // The bridge deleted behind the model's back: open refuses.
    world.delete_link(net.bridge().unwrap());
    assert!(
        matches!(Network::open(&world.host, &name), Err(Error::NetworkIncomplete { link, .. }) if Some(link.as_str()) == net.bridge())
    );
    drop(again);
    // Removal takes what is left (a missing bridge is no error).
    net.remove().unwrap();
    assert!(state_files(world.state.path()).is_empty());
}

#[test]
fn a_network_left_stays_until_its_last_user_releases_it() {
    require_root!();
    let world = World::new();
    let name = unique_name("lv");
    let net = Network::create(&world.host, &spec(&name, "10.91.3.0/24")).unwrap();
    let bridge = net.bridge().unwrap().to_owned();
    let mut s = Sandbox::none("stay").unwrap();
    s.connect(&net, &EndpointOptions::new()).unwrap();
    net.leave().unwrap();
    // The sandbox keeps working on it; dropping the sandbox does not remove the network.
    s.remove().unwrap();
    assert!(world.netlink().link(&bridge).unwrap().is_some());
    assert!(state_files(world.state.path()).contains_key(&format!("{name}.network")));

    let net = Network::open(&world.host, &name).unwrap();
    let clone = net.clone();
    assert!(!net.release().unwrap(), "a clone still uses it");
    assert!(clone.release().unwrap(), "the last user removes it");
    assert!(world.netlink().link(&bridge).unwrap().is_none());
}

#[test]
fn a_removed_network_refuses_other_users_connects() {
    require_root!();
    let world = World::new();
    let name = unique_name("rm");
    let net = Network::create(&world.host, &spec(&name, "10.91.4.0/24")).unwrap();
    let other = Network::open(&world.host, &name).unwrap();
    net.remove().unwrap();
    let mut s = Sandbox::none("late").unwrap();
    let e = s.connect(&other, &EndpointOptions::new()).unwrap_err();
    assert!(
        matches!(e, Error::Ipam(IpamError::UnknownNetwork { .. }) | Error::Ipam(IpamError::NetworkClosing { .. })),
        "{e}"
    );
    // The stale handle's release is a no-op, also once the name is taken again.
    let new = Network::create(&world.host, &spec(&name, "10.91.5.0/24")).unwrap();
    assert!(!other.release().unwrap());
    assert_eq!(new.users().unwrap().len(), 1);
    drop(s);
    new.remove().unwrap();
}

#[test]
fn automatic_subnets_skip_networks_and_host_routes() {
    require_root!();
    let world = World::new();
    let auto = |host: &Host| Network::create(host, &NetworkSpec::bridge(unique_name("au").parse().unwrap()));
    let a = auto(&world.host).unwrap();
    let b = auto(&world.host).unwrap();
    let subnet = |n: &Network| n.spec().subnets[0].subnet.to_string();
    assert_eq!((subnet(&a), subnet(&b)), ("172.17.0.0/16".into(), "172.18.0.0/16".into()));
    // The kernel has the gateway on the bridge, and a sandbox gets an address in it.
    let mut nl = world.netlink();
    let index = nl.link(a.bridge().unwrap()).unwrap().unwrap().index;
    let v4: Vec<IpNet> = nl.addresses(index).unwrap().into_iter().filter(|a| a.addr().is_ipv4()).collect();
    assert_eq!(v4, ["172.17.0.1/16".parse::<IpNet>().unwrap()]);
    let mut s = Sandbox::none("auto").unwrap();
    assert_eq!(s.connect(&a, &EndpointOptions::new()).unwrap().ipv4().unwrap().to_string(), "172.17.0.2");

    // A route of the host namespace inside the next pool: that pool is skipped.
    let uplink = nl.link(&world.uplink).unwrap().unwrap().index;
    nl.add_route(&Route::new(
        Some("172.19.8.0/24".parse().unwrap()),
        Some("198.51.100.2".parse().unwrap()),
        Some(uplink),
    ))
    .unwrap();
    let c = auto(&world.host).unwrap();
    assert_eq!(subnet(&c), "172.20.0.0/16");

    // Pools of one's own, and what happens when they run out.
    let pools = [AddressPool::new("10.123.0.0/16".parse().unwrap(), 24)];
    let host =
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).address_pools(pools).build().unwrap();
    let d = auto(&host).unwrap();
    assert_eq!(subnet(&d), "10.123.0.0/24");
    let tiny = [AddressPool::new("10.124.0.0/30".parse().unwrap(), 30)];
    let host =
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).address_pools(tiny).build().unwrap();
    let e = auto(&host).unwrap();
    assert_eq!(subnet(&e), "10.124.0.0/30");
    let before = world.snapshot();
    assert!(matches!(auto(&host), Err(Error::Ipam(IpamError::NoFreeSubnet { .. }))));
    assert_eq!(world.snapshot(), before, "a refused network changes nothing");
    let bad = [AddressPool::new("10.125.0.0/24".parse().unwrap(), 16)];
    assert!(matches!(
        Host::builder().netns(world.host_ns.ns()).ipam_dir(world.state.path()).address_pools(bad).build(),
        Err(Error::Invalid(_))
    ));

    s.remove().unwrap();
    for n in [a, b, c, d, e] {
        n.remove().unwrap();
    }
    nl.delete_route(&Route::new(Some("172.19.8.0/24".parse().unwrap()), None, None)).unwrap();
}

#[test]
fn processes_creating_networks_at_once_get_different_subnets() {
    if as_worker() {
        return;
    }
    require_root!();
    const TEST: &str = "shared::processes_creating_networks_at_once_get_different_subnets";
    let world = World::new();
    let names: Vec<String> = (0..4).map(|_| unique_name("cc")).collect();
    let mut workers: Vec<Worker> = names.iter().map(|n| Worker::spawn(TEST, "create", &world, n)).collect();
    for w in &mut workers {
        w.go();
    }
    let mut subnets = BTreeSet::new();
    for mut w in workers {
        subnets.insert(w.read_until("NKSUBNET")[0].split(' ').nth(1).unwrap().to_owned());
        w.finish();
    }
    let expected: BTreeSet<String> = (17..=20).map(|b| format!("172.{b}.0.0/16")).collect();
    assert_eq!(subnets, expected);
    // Each network is there, on its own bridge; their creators are gone, so a release here
    // removes them.
    for name in &names {
        let net = Network::open(&world.host, name).unwrap();
        assert!(net.release().unwrap());
    }
}

/// Regression: `Network::remove` deletes the bridge on a background thread (the caller does
/// not wait the kernel's grace periods); a process that exited right after it used to leave
/// the bridge behind, down, as `nkgoneINDEX`. The exit now waits for that thread.
#[test]
fn a_process_exiting_right_after_remove_leaves_no_bridge() {
    if as_worker() {
        return;
    }
    require_root!();
    const TEST: &str = "shared::a_process_exiting_right_after_remove_leaves_no_bridge";
    let world = World::new();
    for round in 0..5 {
        let name = unique_name("rmx");
        let mut worker = Worker::spawn_with(TEST, "remove", &world, &name, Some("10.79.0.0/24"));
        worker.go();
        let line = worker.read_until("NKREMOVED").pop().unwrap();
        let bridge = line.split(' ').nth(1).unwrap().to_owned();
        worker.finish();
        // Right after the exit, without waiting: nothing of the network may be left.
        let left: Vec<String> = crate::common::links_of(world.host_ns.ns())
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("nkgone") || *name == bridge)
            .collect();
        assert!(left.is_empty(), "round {round}: the exited process left {left:?}");
    }
}

/// A process killed before its bridge deletion was done leaves the bridge down under its
/// tombstone name (`nkgone` + its index in hex). The next `Network::remove` in that
/// namespace deletes such tombstones — and nothing that only looks like one.
#[test]
fn the_next_remove_deletes_bridges_a_killed_process_left() {
    use nook_netmodel::netlink::{LinkKind, NewLink};
    require_root!();
    let world = World::new();
    let mut nl = world.netlink();
    // As a killed process left it: a bridge, down, renamed to its tombstone.
    let dead = unique_name("ded");
    let index = nl.add_link(&NewLink::new(&dead, LinkKind::Bridge)).unwrap().expect("index");
    let tombstone = format!("nkgone{index:x}");
    nl.rename(index, &tombstone).unwrap();
    // Not tombstones: a down bridge whose name is another index's, and an up one named after
    // its own index.
    let other = unique_name("oth");
    let other_index = nl.add_link(&NewLink::new(&other, LinkKind::Bridge)).unwrap().expect("index");
    let lookalike = format!("nkgone{:x}", other_index + 1000);
    nl.rename(other_index, &lookalike).unwrap();
    let up = unique_name("upb");
    let up_index = nl.add_link(&NewLink::new(&up, LinkKind::Bridge)).unwrap().expect("index");
    let up_name = format!("nkgone{up_index:x}");
    nl.rename(up_index, &up_name).unwrap();
    nl.set_up(up_index).unwrap();

    let net = Network::create(&world.host, &spec(&unique_name("tmb"), "10.79.1.0/24")).unwrap();
    net.remove().unwrap();
    assert!(nook_ns::background::wait(std::time::Duration::from_secs(30)), "the deletion thread ended");
    let names: Vec<String> = crate::common::links_of(world.host_ns.ns()).into_iter().map(|(n, _)| n).collect();
    assert!(!names.contains(&tombstone), "the tombstone {tombstone} is still there: {names:?}");
    assert!(names.contains(&lookalike) && names.contains(&up_name), "only tombstones go: {names:?}");
    world.delete_link(&lookalike);
    world.delete_link(&up_name);
}
