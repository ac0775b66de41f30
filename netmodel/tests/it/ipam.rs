//! IPAM integration tests: real processes sharing a state directory (a TempDir), the store
//! lock, persistence, reclaim of dead owners, and errors that leave the state untouched.
//!
//! Tests that need other processes re-execute this test binary on themselves
//! (`--exact ipam::<test> --nocapture`) with `NK_IPAM_ROLE=worker`; the worker allocates as told by
//! environment variables and prints `NKADDR <address>` lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ipnet::IpNet;
use nook_netmodel::ValidationError;
use nook_netmodel::ipam::{
    IpFamily, Ipam, IpamError, Owner, Pool, Request, ReservedKind, parse_subnet, validate_pools,
};
use nook_testutil::TempDir;

const ROLE: &str = "NK_IPAM_ROLE";
const DIR: &str = "NK_IPAM_DIR";
const NETS: &str = "NK_IPAM_NETS";
const COUNT: &str = "NK_IPAM_COUNT";
/// JSON of the owner to allocate for; absent: the worker's own process.
const OWNER: &str = "NK_IPAM_OWNER";
/// `1`: after allocating, print `NKREADY` and wait for stdin to close before exiting.
const HOLD: &str = "NK_IPAM_HOLD";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> IpNet {
    parse_subnet(s).unwrap()
}

/// When run as a worker: waits for stdin to close (the start barrier) unless holding, allocates
/// COUNT v4 addresses in each of NETS, prints them, and returns true.
fn as_worker() -> bool {
    if std::env::var_os(ROLE).is_none_or(|r| r != "worker") {
        return false;
    }
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("worker needs {k}"));
    let hold = std::env::var_os(HOLD).is_some_and(|v| v == "1");
    if !hold {
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink).unwrap();
    }
    let owner = match std::env::var(OWNER) {
        Ok(json) => serde_json::from_str(&json).unwrap(),
        Err(_) => Owner::current_process(),
    };
    let ipam = Ipam::open(env(DIR)).unwrap();
    let count: usize = env(COUNT).parse().unwrap();
    for net in env(NETS).split(',') {
        for _ in 0..count {
            let a = ipam.allocate(net, Request::AnyV4, &owner).unwrap();
            println!("NKADDR {}", a.address.addr());
        }
    }
    if hold {
        println!("NKREADY");
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink).unwrap();
    }
    true
}

/// This test binary as a worker running `test`, with stdin and stdout piped.
fn spawn_worker(test: &str, dir: &Path, nets: &str, count: usize, owner: Option<&Owner>, hold: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, "worker")
        .env(DIR, dir)
        .env(NETS, nets)
        .env(COUNT, count.to_string())
        .env(HOLD, if hold { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match owner {
        Some(o) => cmd.env(OWNER, serde_json::to_string(o).unwrap()),
        None => cmd.env_remove(OWNER),
    };
    cmd.spawn().unwrap()
}

/// The addresses a worker printed (libtest may print on the same line, so look anywhere).
fn addresses(stdout: &str) -> Vec<IpAddr> {
    stdout
        .lines()
        .filter_map(|l| l.split_once("NKADDR ").map(|(_, rest)| ip(rest.split_whitespace().next().unwrap())))
        .collect()
}

/// Every file of the state directory with its content, by name.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn eight_processes_allocate_without_duplicates() {
    if as_worker() {
        return;
    }
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    let net = "nk-conc";
    let sub = subnet("10.77.0.0/22");
    ipam.add_network(net, &[Pool::new(sub)]).unwrap();
    // The workers allocate for this (live) process, so no worker reclaims another's addresses
    // after it exits.
    let owner = Owner::current_process();
    let mut children: Vec<Child> = (0..8)
        .map(|_| {
            spawn_worker("ipam::eight_processes_allocate_without_duplicates", dir.path(), net, 50, Some(&owner), false)
        })
        .collect();
    // Start barrier: every worker waits for its stdin to close.
    for c in &mut children {
        drop(c.stdin.take());
    }
    let mut all = Vec::new();
    for c in children {
        let got = addresses(&nook_testutil::success_stdout(c.wait_with_output().unwrap()));
        assert_eq!(got.len(), 50);
        all.extend(got);
    }
    let distinct: BTreeSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(all.len(), 400);
    assert_eq!(distinct.len(), 400, "duplicate addresses handed out");
    for a in &distinct {
        assert!(sub.contains(a));
        assert!(![sub.network(), sub.broadcast(), ip("10.77.0.1")].contains(a), "{a} handed out");
    }
    let recorded: BTreeSet<IpAddr> = ipam
        .allocations(net)
        .unwrap()
        .into_iter()
        .map(|(a, o)| {
            assert_eq!(o, owner);
            a
        })
        .collect();
    assert_eq!(recorded, distinct);
}

#[test]
fn threads_of_one_process_allocate_without_duplicates() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-thr", &[Pool::new(subnet("fd00:77::/64"))]).unwrap();
    let owner = Owner::current_process();
    let all: Vec<IpAddr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let ipam = Ipam::open(dir.path()).unwrap();
                    (0..25)
                        .map(|_| ipam.allocate("nk-thr", Request::AnyV6, &owner).unwrap().address.addr())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 100);
    assert!(!distinct.contains(&ip("fd00:77::")) && !distinct.contains(&ip("fd00:77::1")));
}

#[test]
fn state_survives_a_new_process() {
    if as_worker() {
        return;
    }
    let dir = TempDir::new("ipam").unwrap();
    let net = "nk-surv";
    Ipam::open(dir.path()).unwrap().add_network(net, &[Pool::new(subnet("10.78.0.0/29"))]).unwrap();
    // A child process allocates for this live process and exits.
    let owner = Owner::current_process();
    let child = spawn_worker("ipam::state_survives_a_new_process", dir.path(), net, 1, Some(&owner), false);
    let taken = addresses(&nook_testutil::success_stdout(child.wait_with_output().unwrap()));
    assert_eq!(taken.len(), 1);
    let taken = taken[0];

    // A fresh handle (as after a restart) sees it and never hands it out.
    let ipam = Ipam::open(dir.path()).unwrap();
    assert_eq!(ipam.allocations(net).unwrap(), vec![(taken, owner.clone())]);
    let me = Owner::current_process();
    let mut mine = Vec::new();
    loop {
        match ipam.allocate(net, Request::AnyV4, &me) {
            Ok(a) => mine.push(a.address.addr()),
            Err(IpamError::Exhausted { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(mine.len(), 4, "a /29 has 5 addresses besides the gateway, one taken");
    assert!(!mine.contains(&taken));
    assert!(matches!(
        ipam.allocate(net, Request::Static(taken), &me),
        Err(IpamError::AddressInUse { address, .. }) if address == taken
    ));
}

#[test]
fn addresses_of_a_dead_owner_are_reclaimed() {
    if as_worker() {
        return;
    }
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    // One address each besides the gateway.
    ipam.add_network("nk-dead-a", &[Pool::new(subnet("10.79.0.0/30"))]).unwrap();
    ipam.add_network("nk-dead-b", &[Pool::new(subnet("10.79.1.0/30"))]).unwrap();
    // The child allocates for itself and stays alive until its stdin closes.
    let mut child =
        spawn_worker("ipam::addresses_of_a_dead_owner_are_reclaimed", dir.path(), "nk-dead-a,nk-dead-b", 1, None, true);
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    while !out.contains("NKREADY") {
        assert_ne!(lines.read_line(&mut out).unwrap(), 0, "worker ended early: {out}");
    }
    assert_eq!(addresses(&out), [ip("10.79.0.2"), ip("10.79.1.2")]);
    let child_owner = Owner::process(child.id()).unwrap();

    // While it lives, its address is never handed out, not even after reclaim.
    let me = Owner::current_process();
    assert_eq!(ipam.reclaim("nk-dead-a").unwrap(), 0);
    assert!(matches!(ipam.allocate("nk-dead-a", Request::AnyV4, &me), Err(IpamError::Exhausted { .. })));
    match ipam.allocate("nk-dead-a", Request::Static(ip("10.79.0.2")), &me) {
        Err(IpamError::AddressInUse { owner, .. }) => assert_eq!(owner, child_owner),
        other => panic!("{other:?}"),
    }

    // It exits (crash or not, it is gone once reaped).
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(!child_owner.is_alive());
    assert_eq!(ipam.allocations("nk-dead-b").unwrap(), vec![(ip("10.79.1.2"), child_owner.clone())]);
    assert_eq!(ipam.reclaim("nk-dead-b").unwrap(), 1);
    assert_eq!(ipam.allocations("nk-dead-b").unwrap(), vec![]);
    // Allocation reclaims by itself.
    let a = ipam.allocate("nk-dead-a", Request::AnyV4, &me).unwrap();
    assert_eq!(a.address.addr(), ip("10.79.0.2"));
    assert_eq!(ipam.allocations("nk-dead-a").unwrap(), vec![(ip("10.79.0.2"), me)]);
}

#[test]
fn failed_requests_leave_the_state_dir_unchanged() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    let me = Owner::current_process();
    ipam.add_network("nk-a", &[Pool::new(subnet("10.80.0.0/24")), Pool::new(subnet("fd00:80::/64"))]).unwrap();
    ipam.add_network("nk-small", &[Pool::new(subnet("10.80.9.0/30"))]).unwrap();
    ipam.allocate("nk-a", Request::AnyV4, &me).unwrap();
    ipam.allocate("nk-a", Request::Static(ip("10.80.0.50")), &me).unwrap();
    ipam.allocate("nk-small", Request::AnyV4, &me).unwrap();
    let before = snapshot(dir.path());
    assert!(before.contains_key(".lock") && before.contains_key("nk-a.json") && before.contains_key("nk-small.json"));

    // Invalid CIDR text.
    match parse_subnet("10.0.0.1/24") {
        Err(e @ ValidationError::HostBits { .. }) => assert!(e.to_string().contains("10.0.0.0/24"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse_subnet("10.0.0.0/40"), Err(ValidationError::Cidr { .. })));
    let host_bits = Pool::new(IpNet::new(ip("10.81.0.1"), 24).unwrap());
    assert!(matches!(
        ipam.add_network("nk-b", &[host_bits]),
        Err(IpamError::Invalid(ValidationError::HostBits { .. }))
    ));
    // Gateway outside its subnet, or reserved.
    let outside = Pool::with_gateway(subnet("10.81.0.0/24"), ip("10.81.1.1"));
    assert!(matches!(
        ipam.add_network("nk-b", &[outside]),
        Err(IpamError::Invalid(ValidationError::GatewayOutsideSubnet { .. }))
    ));
    let bcast = Pool::with_gateway(subnet("10.81.0.0/24"), ip("10.81.0.255"));
    assert!(matches!(
        ipam.add_network("nk-b", &[bcast]),
        Err(IpamError::Invalid(ValidationError::GatewayReserved { kind: ReservedKind::Broadcast, .. }))
    ));
    assert!(matches!(
        ipam.add_network("nk-b", &[Pool::new(subnet("10.81.0.0/31"))]),
        Err(IpamError::Invalid(ValidationError::SubnetTooSmall { .. }))
    ));
    // Overlapping pools, overlapping networks, duplicate and invalid names.
    assert!(matches!(
        ipam.add_network("nk-b", &[Pool::new(subnet("10.81.0.0/16")), Pool::new(subnet("10.81.3.0/24"))]),
        Err(IpamError::Invalid(ValidationError::OverlappingSubnets { .. }))
    ));
    match ipam.add_network("nk-b", &[Pool::new(subnet("10.82.0.0/24")), Pool::new(subnet("10.80.0.128/25"))]) {
        Err(e @ IpamError::NetworkOverlap { .. }) => {
            let msg = e.to_string();
            for part in ["nk-b", "10.80.0.128/25", "nk-a", "10.80.0.0/24"] {
                assert!(msg.contains(part), "{msg} lacks {part}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ipam.add_network("nk-b", &[Pool::new(subnet("fd00::/16"))]),
        Err(IpamError::NetworkOverlap { .. })
    ));
    assert!(matches!(
        ipam.add_network("nk-a", &[Pool::new(subnet("10.99.0.0/24"))]),
        Err(IpamError::NetworkExists { .. })
    ));
    assert!(matches!(
        ipam.add_network("../nk", &[Pool::new(subnet("10.99.0.0/24"))]),
        Err(IpamError::Invalid(ValidationError::NetworkName { .. }))
    ));
    // Unknown network, bad static requests, exhaustion.
    assert!(matches!(ipam.allocate("nk-none", Request::AnyV4, &me), Err(IpamError::UnknownNetwork { .. })));
    assert!(matches!(ipam.release("nk-none", ip("10.80.0.2")), Err(IpamError::UnknownNetwork { .. })));
    assert!(matches!(ipam.remove_network("nk-none"), Err(IpamError::UnknownNetwork { .. })));
    assert!(matches!(ipam.reclaim("nk-none"), Err(IpamError::UnknownNetwork { .. })));
    for (addr, kind) in [
        ("10.80.0.1", ReservedKind::Gateway),
        ("10.80.0.0", ReservedKind::NetworkAddress),
        ("10.80.0.255", ReservedKind::Broadcast),
        ("fd00:80::", ReservedKind::SubnetRouterAnycast),
    ] {
        match ipam.allocate("nk-a", Request::Static(ip(addr)), &me) {
            Err(IpamError::AddressReserved { kind: k, .. }) => assert_eq!(k, kind),
            other => panic!("{addr}: {other:?}"),
        }
    }
    assert!(matches!(
        ipam.allocate("nk-a", Request::Static(ip("10.80.1.1")), &me),
        Err(IpamError::AddressOutsidePools { .. })
    ));
    assert!(matches!(
        ipam.allocate("nk-a", Request::Static(ip("10.80.0.50")), &me),
        Err(IpamError::AddressInUse { .. })
    ));
    assert!(matches!(
        ipam.allocate("nk-small", Request::AnyV6, &me),
        Err(IpamError::NoPoolForFamily { family: IpFamily::V6, .. })
    ));
    match ipam.allocate("nk-small", Request::AnyV4, &me) {
        Err(e @ IpamError::Exhausted { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("nk-small") && msg.contains("10.80.9.0/30"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Releasing a free address changes nothing either.
    ipam.release("nk-a", ip("10.80.0.77")).unwrap();

    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn corrupt_state_is_reported_not_reset() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-c", &[Pool::new(subnet("10.83.0.0/24"))]).unwrap();
    let file = dir.join("nk-c.json");
    std::fs::write(&file, b"{\"version\": 1, \"network\": \"nk-c\", \"pools\": [").unwrap();
    let before = snapshot(dir.path());
    match ipam.allocate("nk-c", Request::AnyV4, &Owner::current_process()) {
        Err(e @ IpamError::Corrupt { .. }) => assert!(e.to_string().contains(file.to_str().unwrap()), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ipam.pools("nk-c"), Err(IpamError::Corrupt { .. })));
    assert!(matches!(
        ipam.add_network("nk-c", &[Pool::new(subnet("10.84.0.0/24"))]),
        Err(IpamError::NetworkExists { .. })
    ));
    assert_eq!(snapshot(dir.path()), before);
    // The way out: remove the network.
    ipam.remove_network("nk-c").unwrap();
    assert_eq!(ipam.networks().unwrap(), Vec::<String>::new());
}

#[test]
fn networks_pools_release_and_release_owner() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.join("nested/state")).unwrap();
    ipam.add_network("nk-y", &[Pool::new(subnet("10.85.0.0/24"))]).unwrap();
    ipam.add_network(
        "nk-x",
        &[Pool::with_gateway(subnet("10.86.0.0/24"), ip("10.86.0.254")), Pool::new(subnet("fd00:86::/64"))],
    )
    .unwrap();
    assert_eq!(ipam.networks().unwrap(), ["nk-x", "nk-y"]);
    assert_eq!(
        ipam.pools("nk-x").unwrap(),
        validate_pools("nk-x", &[Pool::new(subnet("10.86.0.0/24")), Pool::new(subnet("fd00:86::/64"))])
            .map(|mut p| {
                p[0].gateway = Some(ip("10.86.0.254"));
                p
            })
            .unwrap()
    );
    let one = Owner::Process { pid: std::process::id(), start_time: 0 };
    let two = Owner::current_process();
    let a = ipam.allocate("nk-x", Request::AnyV4, &one).unwrap();
    assert_eq!(a.address, "10.86.0.1/24".parse::<IpNet>().unwrap());
    assert_eq!(a.gateway, ip("10.86.0.254"));
    let b = ipam.allocate("nk-x", Request::AnyV6, &one).unwrap();
    assert_eq!(b.address, "fd00:86::2/64".parse::<IpNet>().unwrap());
    assert_eq!(b.gateway, ip("fd00:86::1"));
    ipam.allocate("nk-y", Request::AnyV4, &one).unwrap();
    let keep = ipam.allocate("nk-y", Request::AnyV4, &two).unwrap();

    assert_eq!(ipam.release_owner(&one).unwrap(), 3);
    assert_eq!(ipam.allocations("nk-x").unwrap(), vec![]);
    assert_eq!(ipam.allocations("nk-y").unwrap(), vec![(keep.address.addr(), two.clone())]);
    ipam.release("nk-y", keep.address.addr()).unwrap();
    ipam.release("nk-y", keep.address.addr()).unwrap();
    assert_eq!(ipam.allocations("nk-y").unwrap(), vec![]);
    // Released addresses are not handed out again at once.
    assert_ne!(ipam.allocate("nk-y", Request::AnyV4, &two).unwrap().address, keep.address);

    ipam.remove_network("nk-x").unwrap();
    assert_eq!(ipam.networks().unwrap(), ["nk-y"]);
    // Its subnet is free again.
    ipam.add_network("nk-z", &[Pool::new(subnet("10.86.0.0/16"))]).unwrap();
    assert_eq!(ipam.reclaim_all().unwrap(), 0);
}

#[test]
fn netns_owner_lives_while_its_bind_mount_does() {
    nook_testutil::require_root!();
    let dir = TempDir::new("ipam").unwrap();
    let run = TempDir::new("netns").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-ns", &[Pool::new(subnet("10.87.0.0/24"))]).unwrap();
    nook_testutil::on_private_mount_ns(|| {
        let ns = nook_ns::NetNs::create_in(run.path(), &nook_testutil::unique_name("ipam")).unwrap();
        let owner = Owner::netns(ns.path().unwrap());
        assert!(owner.is_alive());
        let a = ipam.allocate("nk-ns", Request::AnyV4, &owner).unwrap();
        assert_eq!(ipam.reclaim("nk-ns").unwrap(), 0);
        let path = ns.path().unwrap().to_owned();
        ns.remove().unwrap();
        assert!(!path.exists());
        assert!(!owner.is_alive());
        // The file left without the mount does not count either.
        std::fs::write(&path, b"").unwrap();
        assert!(!owner.is_alive());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(ipam.allocations("nk-ns").unwrap(), vec![(a.address.addr(), owner)]);
        assert_eq!(ipam.reclaim("nk-ns").unwrap(), 1);
    });
}

/// Bytes this thread has read (`rchar` of `/proc/thread-self/io`: every read(2), whatever
/// file; per thread, so tests running beside this one do not count).
fn thread_rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap()
}

/// A state file of 1 GiB (sparse: nothing on disk) is Corrupt at once: not read (every call
/// used to read all of it, peak RSS 1 GiB, before answering Corrupt).
#[test]
fn a_huge_state_file_is_corrupt_without_being_read() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-huge", &[Pool::new(subnet("10.87.0.0/24"))]).unwrap();
    let file = dir.join("nk-huge.json");
    let f = std::fs::OpenOptions::new().write(true).truncate(true).open(&file).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let me = Owner::current_process();
    type Call<'a> = &'a dyn Fn() -> Result<(), IpamError>;
    let calls: [(&str, Call<'_>); 4] = [
        ("allocate", &|| ipam.allocate("nk-huge", Request::AnyV4, &me).map(drop)),
        ("pools", &|| ipam.pools("nk-huge").map(drop)),
        ("allocations", &|| ipam.allocations("nk-huge").map(drop)),
        ("reclaim", &|| ipam.reclaim("nk-huge").map(drop)),
    ];
    for (name, call) in calls {
        let before = thread_rchar();
        match call() {
            Err(e @ IpamError::Corrupt { .. }) => assert!(e.to_string().contains(file.to_str().unwrap()), "{e}"),
            other => panic!("{name}: {other:?}"),
        }
        let read = thread_rchar() - before;
        assert!(read < 1 << 20, "{name} read {read} bytes of a 1 GiB state file");
    }
    // One byte over the cap is refused the same way; the cap itself is a size a state may have.
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(nook_netmodel::ipam::MAX_STATE_FILE + 1).unwrap();
    drop(f);
    let before = thread_rchar();
    assert!(matches!(ipam.pools("nk-huge"), Err(IpamError::Corrupt { .. })));
    assert!(thread_rchar() - before < 1 << 20);
    ipam.remove_network("nk-huge").unwrap();
}

/// A broken network's file makes only that network unusable: registering another network,
/// allocating in it, releasing an owner everywhere and reclaiming everywhere go on.
#[test]
fn a_corrupt_network_blocks_only_itself() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-bad", &[Pool::new(subnet("10.88.0.0/24"))]).unwrap();
    ipam.add_network("nk-big", &[Pool::new(subnet("10.88.1.0/24"))]).unwrap();
    ipam.add_network("nk-good", &[Pool::new(subnet("10.88.2.0/24"))]).unwrap();
    let me = Owner::current_process();
    let dead = Owner::Process { pid: u32::MAX - 1, start_time: 1 };
    ipam.allocate("nk-good", Request::AnyV4, &me).unwrap();
    ipam.allocate("nk-good", Request::AnyV4, &dead).unwrap();
    std::fs::write(dir.join("nk-bad.json"), b"{\"version\": 1, \"network\": \"nk-bad\", \"pools\": [").unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(dir.join("nk-big.json")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);

    ipam.add_network("nk-new", &[Pool::new(subnet("10.88.3.0/24"))]).unwrap();
    let a = ipam.allocate("nk-new", Request::AnyV4, &me).unwrap();
    assert_eq!(a.address, "10.88.3.2/24".parse::<IpNet>().unwrap());
    assert_eq!(ipam.reclaim_all().unwrap(), 1, "the dead owner's address in nk-good");
    assert_eq!(ipam.release_owner(&me).unwrap(), 2);
    assert_eq!(ipam.allocations("nk-good").unwrap(), vec![]);
    assert_eq!(ipam.networks().unwrap(), ["nk-bad", "nk-big", "nk-good", "nk-new"]);
    // The broken ones still say so when named, and can be removed.
    for net in ["nk-bad", "nk-big"] {
        assert!(matches!(ipam.allocate(net, Request::AnyV4, &me), Err(IpamError::Corrupt { .. })), "{net}");
        ipam.remove_network(net).unwrap();
    }
    ipam.add_network("nk-bad", &[Pool::new(subnet("10.88.0.0/24"))]).unwrap();
}

/// A closed network hands out nothing more; closing is refused (changing nothing) while a
/// live owner holds an address, and a dead owner's address does not count.
#[test]
fn close_network_refuses_live_owners_then_stops_allocations() {
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    ipam.add_network("nk-close", &[Pool::new(subnet("10.89.0.0/24"))]).unwrap();
    let me = Owner::current_process();
    let dead = Owner::Process { pid: u32::MAX - 1, start_time: 1 };
    let mine = ipam.allocate("nk-close", Request::AnyV4, &me).unwrap().address.addr();
    ipam.allocate("nk-close", Request::AnyV4, &dead).unwrap();
    let before = snapshot(dir.path());
    match ipam.close_network("nk-close") {
        Err(IpamError::NetworkInUse { allocations, .. }) => assert_eq!(allocations, [(mine, me.clone())]),
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(dir.path()), before, "a refused close changes nothing");
    ipam.release("nk-close", mine).unwrap();
    ipam.close_network("nk-close").unwrap();
    assert!(
        String::from_utf8(std::fs::read(dir.join("nk-close.json")).unwrap()).unwrap().contains("\"closing\": true")
    );
    assert!(matches!(ipam.allocate("nk-close", Request::AnyV4, &me), Err(IpamError::NetworkClosing { .. })));
    ipam.close_network("nk-close").unwrap();
    ipam.remove_network("nk-close").unwrap();
    assert!(matches!(ipam.close_network("nk-close"), Err(IpamError::UnknownNetwork { .. })));
}

/// Automatic subnets: the first subnet of the pools that no network and no range to avoid
/// overlaps; threads registering at once get different ones; a full pool is a typed error.
#[test]
fn automatic_subnets_come_from_the_pools_in_order() {
    use nook_netmodel::ipam::AddressPool;
    let dir = TempDir::new("ipam").unwrap();
    let ipam = Ipam::open(dir.path()).unwrap();
    let pools = [AddressPool::new(subnet("10.90.0.0/16"), 24), AddressPool::new(subnet("10.91.0.0/23"), 24)];
    ipam.add_network("nk-fixed", &[Pool::new(subnet("10.90.0.0/23"))]).unwrap();
    let avoid = [subnet("10.90.2.128/25")];
    let got = ipam.add_network_auto("nk-auto0", &pools, &avoid).unwrap();
    assert_eq!((got.subnet, got.gateway), (subnet("10.90.3.0/24"), Some(ip("10.90.3.1"))));
    assert_eq!(ipam.pools("nk-auto0").unwrap(), [got]);
    assert!(matches!(ipam.add_network_auto("nk-auto0", &pools, &[]), Err(IpamError::NetworkExists { .. })));

    let subnets: BTreeSet<IpNet> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4)
            .map(|i| {
                let (dir, pools) = (dir.path(), &pools);
                s.spawn(move || {
                    Ipam::open(dir).unwrap().add_network_auto(&format!("nk-auto{i}"), pools, &avoid).unwrap().subnet
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(subnets, (4..=7).map(|i| subnet(&format!("10.90.{i}.0/24"))).collect());

    let small = [AddressPool::new(subnet("10.91.0.0/23"), 24)];
    ipam.add_network_auto("nk-auto5", &small, &[]).unwrap();
    ipam.add_network_auto("nk-auto6", &small, &[]).unwrap();
    let before = snapshot(dir.path());
    assert!(matches!(ipam.add_network_auto("nk-auto7", &small, &[]), Err(IpamError::NoFreeSubnet { .. })));
    let bad = [AddressPool::new(subnet("10.92.0.0/24"), 20)];
    assert!(matches!(ipam.add_network_auto("nk-auto7", &bad, &[]), Err(IpamError::Invalid(_))));
    assert_eq!(snapshot(dir.path()), before, "refusals change nothing");
}
