//! A sandbox dies with its owner, and a crash leaves nothing for long (issue 13 item 6), on
//! the real kernel: `create()` and a limited one-shot run write an owner record into the
//! builder's state dir and remove it after a clean teardown; an owner SIGKILLed with a
//! long-lived sandbox and an `exec`ed process takes every process of the sandbox with it, and
//! `cleanup()` then removes the rest (cgroup, record); an owner SIGKILLed at random points
//! of create/remove cycles leaves no process, and after `cleanup()` no cgroup and no record.
//! The same for what else outlives an owner: an image root's container layer, and on a
//! bridge network the endpoint's IPAM address, its published-port rules and the `/etc`
//! files directory (a live owner's address and port on the same network stay); objects
//! recorded in advance are cleaned whether they were made or not.
//!
//! Every state dir is a private temp dir (never `/run/nook`); cgroups are below the test's
//! own cgroup; every network object is in a namespace the test creates to play the host.

use std::io::{BufRead, BufReader, Lines};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nook_netmodel::firewall::{FirewallBackend, Nftables, PortMapping, PortRule};
use nook_netmodel::ipam::{Ipam, Owner, Request};
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec};
use nook_ns::NetNs;
use nook_ns::Stdio as NsStdio;
use nook_sandbox::state::{Object, ProcessId, StateDir};
use nook_sandbox::{Outcome, Sandbox, SandboxBuilder};
use nook_testutil::{TempDir, require_root, time_factor, unique_name};

const ROLE: &str = "NK_OWNER_ROLE";
const BASE: &str = "NK_OWNER_BASE";
/// Set in the helper's environment and in its sandboxes' (spec env): every process of
/// theirs — the helper, a child still before its exec, the init, an exec'd process — shows
/// it in `/proc/PID/environ`.
pub(crate) const TAG: &str = "NK_OWNER_TAG";

fn helper_role(entry: &str) -> Option<PathBuf> {
    (std::env::var(ROLE).as_deref() == Ok(entry)).then(|| std::env::var_os(BASE).unwrap().into())
}

/// Re-runs this binary as a helper for test `entry`, tagged with `tag`.
fn spawn_helper(entry: &str, base: &Path, tag: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE, entry)
        .env(BASE, base)
        .env(TAG, tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper")
}

/// A quiet builder for the helper's sandboxes: the state dir under `base`, the tag in the
/// environment, no stdio of the helper's (the test reads the helper's stdout).
fn builder(base: &Path) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.state_dir(base.join("state"))
        .env(TAG, std::env::var(TAG).unwrap())
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null());
    b
}

/// Reads the helper's stdout up to a line with `prefix` (the helper's test harness may have
/// written the test's name before it on the same line); returns the line from `prefix` on.
fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find(prefix) {
            return line[at..].to_owned();
        }
    }
    panic!("helper ended without {prefix}");
}

/// Pids of live processes with `TAG=tag` in their environment (a zombie's is empty).
pub(crate) fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG}={tag}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Waits (up to a deadline that only a failure reaches) until no process carries the tag.
pub(crate) fn no_tagged_process_left(tag: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10 * u64::from(time_factor()));
    loop {
        let left = tagged(tag);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every `nk-sandbox-<pid>-*` cgroup directory below the cgroup mounts.
pub(crate) fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("nk-sandbox-{pid}-");
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

/// The files in the state dir's records directory (records, locks, temporary files).
fn state_files(base: &Path) -> Vec<String> {
    match std::fs::read_dir(base.join("state/sandboxes")) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

pub(crate) fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

/// Whether the process behind `fd` has exited (its pidfd turns readable), waiting up to a
/// deadline that only a failure reaches.
pub(crate) fn exited(fd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let ts = Timespec { tv_sec: 10 * i64::from(time_factor()), tv_nsec: 0 };
    loop {
        match poll(&mut fds, Some(&ts)) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) => return n > 0,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Kills the helper (if still running) and cleans the state dir when a test ends, also on
/// panic.
struct Guard<'a> {
    base: &'a Path,
    helper: Option<Child>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = StateDir::new(self.base.join("state")).cleanup();
    }
}

#[test]
fn create_and_a_limited_one_shot_keep_a_record_until_their_teardown() {
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("rec").unwrap();
    let state = StateDir::new(tmp.join("state"));

    let sb = Sandbox::builder().state_dir(state.root()).create().unwrap();
    let path = sb.record_path().expect("a long-lived sandbox has a record").to_owned();
    let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let rec = state.read(&id).unwrap();
    // The cgroup (with exactly its directories) and the init with its start time.
    match &rec.objects[..] {
        [Object::Cgroup { dirs, .. }, Object::Process { process }] => {
            let mut real: Vec<&Path> = sb.cgroup().unwrap().paths().collect();
            real.sort();
            let mut recorded: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            recorded.sort();
            assert_eq!(recorded, real);
            assert_eq!(process.pid, sb.id());
            assert!(process.is_alive());
        }
        other => panic!("{other:?}"),
    }
    // Its owner (this process) lives: a cleanup leaves it.
    let report = state.cleanup().unwrap();
    assert_eq!(report.live, [id.as_str()], "{report:?}");
    sb.remove().unwrap();
    assert!(!path.exists());
    assert!(state.ids().unwrap().is_empty());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    // A one-shot run with limits: recorded while it runs, removed with its teardown.
    let mut sb = Sandbox::builder().state_dir(state.root()).pids_max(16).command("true").spawn().unwrap();
    let path = sb.record_path().expect("a limited one-shot sandbox has a record").to_owned();
    assert!(path.exists());
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    assert!(!path.exists());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    // Without a cgroup, nothing outlives the owner: no record.
    let sb = Sandbox::builder().state_dir(state.root()).command("true").spawn().unwrap();
    assert!(sb.record_path().is_none());
    drop(sb);
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
}

#[test]
fn owner_sigkilled_takes_the_sandbox_and_its_execs_along_and_cleanup_leaves_nothing() {
    const ME: &str = "owner_sigkilled_takes_the_sandbox_and_its_execs_along_and_cleanup_leaves_nothing";
    if let Some(base) = helper_role(ME) {
        let sb = builder(&base).create().expect("create");
        let child = sb
            .exec(["sleep", "1000"])
            .stdin(NsStdio::null())
            .stdout(NsStdio::null())
            .stderr(NsStdio::null())
            .spawn()
            .expect("exec");
        let record = sb.record_path().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
        println!("NK-PIDS {} {} {record}", sb.id(), child.id());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own").unwrap();
    let tag = unique_name("tag");
    let mut guard = Guard { base: tmp.path(), helper: Some(spawn_helper(ME, tmp.path(), &tag)) };
    let helper = guard.helper.as_mut().unwrap();
    let helper_pid = helper.id();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let line = read_until(&mut lines, "NK-PIDS ");
    let mut words = line.split_whitespace().skip(1);
    let init: u32 = words.next().unwrap().parse().unwrap();
    let exec: u32 = words.next().unwrap().parse().unwrap();
    let id = words.next().unwrap().to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let (init_fd, exec_fd) = (pidfd(init), pidfd(exec));
    let state = StateDir::new(tmp.join("state"));
    let rec = state.read(&id).unwrap();
    let dirs: Vec<PathBuf> = rec
        .objects
        .iter()
        .flat_map(|o| match o {
            Object::Cgroup { dirs, .. } => dirs.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()), "{rec:?}");
    assert!(tagged(&tag).contains(&exec), "the exec'd process carries the tag");

    helper.kill().unwrap(); // SIGKILL: no destructor runs
    helper.wait().unwrap();
    // The owner-death guarantee, before any cleanup: the init (kill_with_parent_process)
    // and with it the pid namespace, so the exec'd process too.
    assert!(exited(&init_fd), "the sandbox's init {init} outlived its owner");
    assert!(exited(&exec_fd), "the exec'd process {exec} outlived its owner");
    assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new());
    // What outlives the owner is the cgroup and the record: cleanup removes both.
    assert!(dirs.iter().any(|d| d.is_dir()));
    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    assert_eq!(cgroups_of(helper_pid), Vec::<PathBuf>::new());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
}

/// A small pseudo-random sequence (no dependency): xorshift seeded from the clock.
pub(crate) fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Spawns helper `me` on `base` (tagged `tag`) and reads its `NK-PIDS ...` line: the guard
/// that kills it, and the words after `NK-PIDS`.
fn spawn_reading_pids<'a>(me: &str, base: &'a Path, tag: &str) -> (Guard<'a>, Vec<String>) {
    let mut guard = Guard { base, helper: Some(spawn_helper(me, base, tag)) };
    let helper = guard.helper.as_mut().unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let line = read_until(&mut lines, "NK-PIDS ");
    std::thread::spawn(move || lines.for_each(drop));
    (guard, line.split_whitespace().skip(1).map(str::to_owned).collect())
}

/// The clock as a xorshift seed (odd, never 0).
pub(crate) fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
}

/// One kill of attempt `attempt`: spawns helper `me` on `base` (it prints `NK-GO`, then
/// creates and removes sandboxes until killed), SIGKILLs it up to `max_delay` after
/// `NK-GO`, checks that none of its processes is left and that a cleanup of `base`'s state
/// dir is clean and leaves no record, then runs `check(why, helper pid)`. Returns how many
/// sandboxes that cleanup removed.
fn kill_at_a_random_point(
    me: &str,
    base: &Path,
    attempt: u32,
    seed: &mut u64,
    max_delay: Duration,
    check: impl FnOnce(&str, u32),
) -> usize {
    let tag = unique_name("tag");
    let mut guard = Guard { base, helper: Some(spawn_helper(me, base, &tag)) };
    let helper = guard.helper.as_mut().unwrap();
    let helper_pid = helper.id();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    read_until(&mut lines, "NK-GO");
    std::thread::spawn(move || lines.for_each(drop));
    let delay = Duration::from_micros(xorshift(seed) % max_delay.as_micros() as u64);
    std::thread::sleep(delay);
    helper.kill().unwrap();
    helper.wait().unwrap();
    let why = format!("attempt {attempt}, killed {delay:?} after NK-GO");

    assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new(), "{why}: processes outlived their owner");
    let report = StateDir::new(base.join("state")).cleanup().unwrap();
    assert!(report.is_clean(), "{why}: {report:?}");
    assert!(report.live.is_empty() && report.busy.is_empty(), "{why}: {report:?}");
    check(&why, helper_pid);
    assert!(state_files(base).is_empty(), "{why}: {:?}", state_files(base));
    drop(guard);
    report.removed.len()
}

#[test]
fn owner_sigkilled_anywhere_in_create_or_remove_leaves_nothing_after_cleanup() {
    const ME: &str = "owner_sigkilled_anywhere_in_create_or_remove_leaves_nothing_after_cleanup";
    if let Some(base) = helper_role(ME) {
        // Create and remove sandboxes until killed: the kill lands at a random point of a
        // cycle (record written, cgroup made, init cloned, paused, released; teardown).
        println!("NK-GO");
        loop {
            let sb = builder(&base).pids_max(16).create().expect("create");
            sb.exec(["true"]).status().expect("exec");
            sb.remove().expect("remove");
        }
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    const ATTEMPTS: u32 = 20;
    let mut with_record = 0;
    let mut seed = clock_seed();
    for attempt in 0..ATTEMPTS {
        let tmp = TempDir::new("kill").unwrap();
        // 0 to 80 ms into the loop (a cycle takes tens of ms here).
        with_record +=
            kill_at_a_random_point(ME, tmp.path(), attempt, &mut seed, Duration::from_millis(80), |why, pid| {
                assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new(), "{why}");
            });
    }
    // How many kills left a sandbox (the others landed between a remove and the next
    // create's record, or before the first).
    println!("{with_record} of {ATTEMPTS} kills left a sandbox to clean");
}

/// The helper's image store (made by the test before the helper runs).
fn image_store(base: &Path) -> nook_sandbox::image::ImageStore {
    nook_sandbox::image::ImageStore::open(base.join("store")).expect("image store")
}

#[test]
fn owner_sigkilled_with_an_image_root_leaves_no_container_layer_after_cleanup() {
    const ME: &str = "owner_sigkilled_with_an_image_root_leaves_no_container_layer_after_cleanup";
    if let Some(base) = helper_role(ME) {
        // A one-shot run without limits: its container layer alone makes it keep a record.
        let sb = builder(&base).image(&image_store(&base), "nk-app:1").command("sleep 1000").spawn().expect("spawn");
        let record = sb.record_path().expect("a record").file_stem().unwrap().to_string_lossy().into_owned();
        println!("NK-PIDS {} {record} {}", sb.id(), sb.container_id().expect("a container layer"));
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own-img").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let layers = store.layer_store().root().to_owned();
    let tag = unique_name("tag");
    let (mut guard, words) = spawn_reading_pids(ME, tmp.path(), &tag);
    let (init, id, container) = (words[0].parse::<u32>().unwrap(), words[1].clone(), words[2].clone());
    let init_fd = pidfd(init);
    let state = StateDir::new(tmp.join("state"));
    let containers = || store.layer_store().container_ids().unwrap();

    // The layer is recorded (first: before it was made), then the init.
    let rec = state.read(&id).unwrap();
    match &rec.objects[..] {
        [Object::ContainerLayer { store: s, id: c }, Object::Process { process }] => {
            assert_eq!((s, c), (&layers, &container));
            assert_eq!(process.pid, init);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(containers(), [container.as_str()]);
    // A live owner's layer is untouched.
    let report = state.cleanup().unwrap();
    assert_eq!(report.live, [id.as_str()], "{report:?}");
    assert_eq!(containers(), [container.as_str()]);

    let helper = guard.helper.as_mut().unwrap();
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    assert!(exited(&init_fd), "the sandbox's init {init} outlived its owner");
    assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new());
    // What outlives the owner is the container layer and the record: cleanup removes both.
    assert_eq!(containers(), [container.as_str()]);
    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert!(containers().is_empty(), "{:?}", containers());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
    drop(guard);
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// The network the helper creates in the test's "host" namespace.
const NET: &str = "nkownnet";
const SUBNET: &str = "10.139.0.0/24";
/// An address and an endpoint of a live owner (the test) on the same network.
const BYSTANDER: &str = "10.139.0.200";
const BYSTANDER_EP: &str = "nkbystander";

/// A persisted network namespace in the test's temp dir, playing the host (`lo` up): the
/// helper opens it by path; every link, address and rule of the test lives in it, and goes
/// with it when the handle is dropped (the path removed, nothing else holding it).
fn host_netns(base: &Path) -> NetNs {
    let ns = NetNs::create_in(&base.join("netns"), "nkhost").expect("host netns");
    nook_netmodel::netlink::Netlink::open_in(ns.ns()).expect("netlink").set_up(1).expect("lo up");
    ns
}

fn host_of(base: &Path, ns: &NetNs) -> Host {
    Host::builder().netns(ns.ns()).ipam_dir(base.join("ipam")).build().expect("host")
}

fn bridge(host: &Host) -> Network {
    let mut spec = NetworkSpec::bridge(NET.parse().unwrap());
    spec.subnet(SUBNET.parse().unwrap(), None);
    Network::create(host, &spec).expect("network")
}

fn published(port: u16) -> EndpointOptions {
    let mut o = EndpointOptions::new();
    o.port(PortMapping::tcp(port, 80));
    o
}

/// The `/etc` file directories of process `pid`'s sandboxes.
fn net_files_of(pid: u32) -> Vec<String> {
    let prefix = format!("nk-{pid}-");
    match std::fs::read_dir(nook_sandbox::net::NET_FILES_DIR) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `nft list ruleset` in `ns`.
fn ruleset(ns: &NetNs) -> String {
    let out = ns.run(|| Command::new("nft").args(["list", "ruleset"]).output().expect("run nft")).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The addresses IPAM has on [`NET`] in the test's state, with their owners.
fn held(base: &Path) -> Vec<(IpAddr, Owner)> {
    Ipam::open(base.join("ipam")).unwrap().allocations(NET).unwrap()
}

fn same_ns(path: &Path, ns: &NetNs) -> bool {
    NetNs::open_path(path).unwrap().ns().id().unwrap() == ns.ns().id().unwrap()
}

#[test]
fn owner_sigkilled_on_a_bridge_network_leaves_no_address_nor_port_rule_after_cleanup() {
    const ME: &str = "owner_sigkilled_on_a_bridge_network_leaves_no_address_nor_port_rule_after_cleanup";
    if let Some(base) = helper_role(ME) {
        let ns = NetNs::open_path(base.join("netns/nkhost")).expect("open host netns");
        let host = host_of(&base, &ns);
        let network = bridge(&host);
        let sb = builder(&base).connect(&network, published(8080)).create().expect("create");
        let record = sb.record_path().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
        let ep = &sb.endpoints()[0];
        println!("NK-PIDS {} {record} {} {}", sb.id(), ep.id, ep.ipv4().unwrap());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own-net").unwrap();
    let ns = host_netns(tmp.path());
    let tag = unique_name("tag");
    // Dropped before `ns`: the helper is gone before the namespace is.
    let (mut guard, words) = spawn_reading_pids(ME, tmp.path(), &tag);
    let (init, id, endpoint) = (words[0].parse::<u32>().unwrap(), words[1].clone(), words[2].clone());
    let address: IpAddr = words[3].parse().unwrap();
    let helper_pid = guard.helper.as_ref().unwrap().id();
    assert_eq!(net_files_of(helper_pid).len(), 1, "the sandbox's /etc files");
    let init_fd = pidfd(init);
    let state = StateDir::new(tmp.join("state"));

    // Recorded: its cgroup and init, then the endpoint as it turned out — its address
    // (held by the owner) and its port rules, in the host namespace (found by its path).
    let rec = state.read(&id).unwrap();
    match &rec.objects[..] {
        [
            Object::NetFiles { .. },
            Object::Cgroup { .. },
            Object::Process { .. },
            Object::IpamAddress { state_dir, network, address: a, owner: Some(o) },
            Object::Firewall { netns: Some(p), table, network: n2, endpoint: Some(e) },
        ] => {
            assert_eq!((state_dir.as_path(), network.as_str(), *a), (tmp.join("ipam").as_path(), NET, address));
            assert_eq!(*o, Owner::process(guard.helper.as_ref().unwrap().id()).unwrap());
            assert!(same_ns(p, &ns), "{p:?}");
            assert_eq!((table.as_str(), n2.as_str(), e.as_str()), ("nook", NET, endpoint.as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert!(ruleset(&ns).contains("8080"), "{}", ruleset(&ns));
    assert_eq!(held(tmp.path()).iter().map(|(a, _)| *a).collect::<Vec<_>>(), [address]);

    // A live owner (this test) on the same network: an address and a published port.
    let me = Owner::current_process();
    let ipam = Ipam::open(tmp.join("ipam")).unwrap();
    let bystander: IpAddr = BYSTANDER.parse().unwrap();
    ipam.allocate(NET, Request::Static(bystander), &me).unwrap();
    let fw = Nftables::new(Some(ns.ns())).unwrap();
    fw.add_ports(NET, BYSTANDER_EP, &[PortRule::new(PortMapping::tcp(8081, 80), bystander)]).unwrap();
    let leave_ours = || {
        let _ = fw.remove_ports(NET, BYSTANDER_EP);
        let _ = ipam.release(NET, bystander);
    };

    // While the owner lives, nothing of its is touched.
    let report = state.cleanup().unwrap();
    assert_eq!(report.live, [id.as_str()], "{report:?}");
    assert!(ruleset(&ns).contains("8080"));
    assert!(held(tmp.path()).iter().any(|(a, _)| *a == address));

    guard.helper.as_mut().unwrap().kill().unwrap(); // SIGKILL
    guard.helper.as_mut().unwrap().wait().unwrap();
    assert!(exited(&init_fd), "the sandbox's init {init} outlived its owner");
    assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new());
    // What outlives the owner: the address in IPAM and the port rules in the host namespace.
    assert!(ruleset(&ns).contains("8080"));
    assert!(held(tmp.path()).iter().any(|(a, _)| *a == address));
    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    let rules = ruleset(&ns);
    assert!(!rules.contains("8080"), "the dead owner's port rule is left:\n{rules}");
    // The live owner's port and address, and the network's own chains, stay.
    assert!(rules.contains("8081") && rules.contains(&format!("nk-{NET}-")), "{rules}");
    assert_eq!(held(tmp.path()), [(bystander, me.clone())]);
    assert_eq!(net_files_of(helper_pid), Vec::<String>::new());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
    leave_ours();
    drop(guard);
    drop(ns);
}

/// A sandbox with an egress policy whose owner is SIGKILLed: the policy (chains, sets and
/// jumps in the host namespace's `nook-egress` tables) goes with the cleanup, as its
/// address does. (Was: the record had no firewall object for an endpoint without published
/// ports, so the dead endpoint's policy stayed.)
#[test]
fn owner_sigkilled_with_an_egress_policy_leaves_no_policy_after_cleanup() {
    const ME: &str = "owner_sigkilled_with_an_egress_policy_leaves_no_policy_after_cleanup";
    if let Some(base) = helper_role(ME) {
        let ns = NetNs::open_path(base.join("netns/nkhost")).expect("open host netns");
        let host = host_of(&base, &ns);
        let network = bridge(&host);
        let mut policy = nook_netmodel::EgressPolicy::deny_all();
        policy.allow_net("192.0.2.0/24".parse().unwrap());
        let sb = builder(&base).connect(&network, EndpointOptions::new()).egress(policy).create().expect("create");
        let record = sb.record_path().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
        let ep = &sb.endpoints()[0];
        println!("NK-PIDS {} {record} {} {}", sb.id(), ep.id, ep.ipv4().unwrap());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own-egress").unwrap();
    let ns = host_netns(tmp.path());
    let tag = unique_name("tag");
    let (mut guard, words) = spawn_reading_pids(ME, tmp.path(), &tag);
    let (id, endpoint) = (words[1].clone(), words[2].clone());
    let state = StateDir::new(tmp.join("state"));
    let rules = ruleset(&ns);
    assert!(rules.contains("table inet nook-egress") && rules.contains(&endpoint), "{rules}");

    guard.helper.as_mut().unwrap().kill().unwrap(); // SIGKILL
    guard.helper.as_mut().unwrap().wait().unwrap();
    assert!(ruleset(&ns).contains("nook-egress"), "the policy outlives its owner until a cleanup");
    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    let rules = ruleset(&ns);
    assert!(!rules.contains("nook-egress") && !rules.contains(&endpoint), "the dead owner's policy is left:\n{rules}");
    assert!(held(tmp.path()).is_empty(), "{:?}", held(tmp.path()));
    drop(guard);
    drop(ns);
}

#[test]
fn live_owner_records_its_layer_and_endpoint_and_a_clean_teardown_removes_them_and_the_record() {
    require_root!();
    let _serial = crate::sandbox::serial();
    let _net_serial = crate::net::serial();
    let tmp = TempDir::new("own-live").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let state = StateDir::new(tmp.join("state"));

    // An image root: the layer is listed while the run lasts, and goes with it.
    let store = crate::image_run::store_with_app(&tmp);
    let mut sb = Sandbox::builder()
        .state_dir(state.root())
        .image(&store, "nk-app:1")
        .command("true")
        .stdout(NsStdio::null())
        .spawn()
        .unwrap();
    let path = sb.record_path().expect("a record for the container layer").to_owned();
    let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let container = sb.container_id().unwrap().to_owned();
    assert!(matches!(&state.read(&id).unwrap().objects[0], Object::ContainerLayer { id, .. } if *id == container));
    assert_eq!(state.cleanup().unwrap().live, [id.as_str()]);
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    assert!(!path.exists());
    assert!(store.layer_store().container_ids().unwrap().is_empty());
    // A kept container layer is the caller's: not recorded (and here nothing else is).
    let mut sb = Sandbox::builder()
        .state_dir(state.root())
        .image(&store, "nk-app:1")
        .keep_container(true)
        .command("true")
        .stdout(NsStdio::null())
        .spawn()
        .unwrap();
    assert!(sb.record_path().is_none());
    let kept = sb.container_id().unwrap().to_owned();
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    store.layer_store().remove_container(&kept).unwrap();
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    // An endpoint with a published port: its address and rules are recorded, left alone by
    // a cleanup while this owner lives, and removed with the record by `remove`.
    let ns = host_netns(tmp.path());
    let host = host_of(tmp.path(), &ns);
    let network = bridge(&host);
    let sb = Sandbox::builder().state_dir(state.root()).connect(&network, published(8080)).create().unwrap();
    let path = sb.record_path().unwrap().to_owned();
    let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    assert_eq!(kinds(&state, &sb), ["files", "cgroup", "process", "address", "ports"]);
    for _ in 0..2 {
        assert_eq!(state.cleanup().unwrap().live, [id.as_str()]);
    }
    assert!(ruleset(&ns).contains("8080"));
    assert_eq!(held(tmp.path()).len(), 1);
    sb.remove().unwrap();
    assert!(!path.exists());
    assert!(!ruleset(&ns).contains("8080"));
    assert!(held(tmp.path()).is_empty());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
    network.remove().unwrap();
    drop(host);
    drop(ns);
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// Create/remove cycles of a sandbox with an image root and a published port on a bridge
/// network, the owner SIGKILLed at a random point (recording the layer, creating it, the
/// cgroup, the endpoint recorded but not yet connected, connected, torn down): after
/// `cleanup()` no container layer, no address of the owner and no port rule is left.
#[test]
fn owner_sigkilled_anywhere_with_a_layer_and_an_endpoint_leaves_nothing_after_cleanup() {
    const ME: &str = "owner_sigkilled_anywhere_with_a_layer_and_an_endpoint_leaves_nothing_after_cleanup";
    if let Some(base) = helper_role(ME) {
        let ns = NetNs::open_path(base.join("netns/nkhost")).expect("open host netns");
        let host = host_of(&base, &ns);
        let network = bridge(&host);
        let store = image_store(&base);
        println!("NK-GO");
        loop {
            let sb =
                builder(&base).image(&store, "nk-app:1").connect(&network, published(8080)).create().expect("create");
            sb.remove().expect("remove");
        }
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    const ATTEMPTS: u32 = 12;
    let tmp = TempDir::new("own-any").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let mut with_record = 0;
    let mut seed = clock_seed();
    for attempt in 0..ATTEMPTS {
        let ns = host_netns(tmp.path());
        // 0 to 150 ms into the loop (a cycle takes tens of ms here).
        with_record +=
            kill_at_a_random_point(ME, tmp.path(), attempt, &mut seed, Duration::from_millis(150), |why, pid| {
                let containers = store.layer_store().container_ids().unwrap();
                assert!(containers.is_empty(), "{why}: {containers:?}");
                assert!(held(tmp.path()).is_empty(), "{why}: {:?}", held(tmp.path()));
                let rules = ruleset(&ns);
                assert!(!rules.contains("8080"), "{why}:\n{rules}");
                assert_eq!(net_files_of(pid), Vec::<String>::new(), "{why}");
            });
        // The network itself is the helper's, not the sandbox's: it goes with the namespace
        // (and its IPAM registration with the directory).
        drop(ns);
        let _ = std::fs::remove_dir_all(tmp.join("ipam"));
    }
    println!("{with_record} of {ATTEMPTS} kills left a sandbox to clean");
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// What a dead owner recorded in advance is cleaned whether it was made or not: an endpoint
/// recorded before its connect ([`Object::Endpoint`]) whose address the owner got and whose
/// port rule it published; one on a network IPAM does not know; a container layer never
/// created. A live owner's address and port on the same network stay.
#[test]
fn objects_recorded_in_advance_are_cleaned_made_or_not() {
    require_root!();
    let tmp = TempDir::new("own-adv").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let ns = host_netns(tmp.path());
    let host = host_of(tmp.path(), &ns);
    let network = bridge(&host);
    let ipam = Ipam::open(tmp.join("ipam")).unwrap();
    let fw = Nftables::new(Some(ns.ns())).unwrap();
    // The dead owner: this process's pid with another start time.
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let dead_ipam = Owner::Process { pid: dead.pid, start_time: dead.start_time };
    // Ours first: an allocation reclaims what dead owners hold on the network.
    let me = Owner::current_process();
    let ours: IpAddr = BYSTANDER.parse().unwrap();
    ipam.allocate(NET, Request::Static(ours), &me).unwrap();
    fw.add_ports(NET, BYSTANDER_EP, &[PortRule::new(PortMapping::tcp(8081, 80), ours)]).unwrap();
    let theirs: IpAddr = "10.139.0.50".parse().unwrap();
    ipam.allocate(NET, Request::Static(theirs), &dead_ipam).unwrap();
    fw.add_ports(NET, "nkdeadep", &[PortRule::new(PortMapping::tcp(8082, 80), theirs)]).unwrap();
    assert_eq!(held(tmp.path()).len(), 2);

    let state = StateDir::new(tmp.join("state"));
    let mut rec = state.create_record_for("nk-adv", dead).unwrap();
    rec.add(Object::ContainerLayer { store: tmp.join("store-never"), id: "nk-never".into() }).unwrap();
    for network in [NET, "nkunknown"] {
        rec.add(Object::Endpoint {
            state_dir: tmp.join("ipam"),
            network: network.into(),
            owner: dead_ipam.clone(),
            netns: ns.path().map(Path::to_owned),
            table: Some("nook".into()),
        })
        .unwrap();
    }
    drop(rec);
    assert!(ruleset(&ns).contains("8082"));

    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, ["nk-adv"]);
    assert_eq!(held(tmp.path()), [(ours, me)]);
    let rules = ruleset(&ns);
    assert!(!rules.contains("8082") && rules.contains("8081"), "{rules}");
    assert!(!tmp.join("store-never").exists(), "a cleanup creates no store");
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    fw.remove_ports(NET, BYSTANDER_EP).unwrap();
    ipam.release(NET, ours).unwrap();
    network.remove().unwrap();
}

/// A cgroup that cannot be created because its name is taken (someone else's) leaves no
/// record behind naming it: a cleanup after this owner's death must not remove it. The
/// image root's container layer, made before, goes too.
#[test]
fn a_cgroup_clash_leaves_no_record_of_the_other_cgroup() {
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own-clash").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let store = crate::image_run::store_with_app(&tmp);
    let name = unique_name("theirs");
    let theirs = nook_cgroup::Cgroup::create(&nook_cgroup::CgroupSpec::new(name.clone())).unwrap();
    let dirs: Vec<PathBuf> = theirs.paths().map(Path::to_owned).collect();
    let err = Sandbox::builder()
        .state_dir(tmp.join("state"))
        .image(&store, "nk-app:1")
        .cgroup(nook_cgroup::CgroupSpec::new(name))
        .command("true")
        .spawn()
        .expect_err("the name is taken");
    assert!(err.to_string().contains("exist"), "{err}");
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
    assert!(store.layer_store().container_ids().unwrap().is_empty());
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    theirs.remove().unwrap();
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// The kinds of objects a record lists, in order.
fn kinds(state: &StateDir, sb: &Sandbox) -> Vec<&'static str> {
    let id = sb.record_path().unwrap().file_stem().unwrap().to_str().unwrap().to_owned();
    state
        .read(&id)
        .unwrap()
        .objects
        .iter()
        .map(|o| match o {
            Object::NetFiles { .. } => "files",
            Object::Cgroup { .. } => "cgroup",
            Object::Process { .. } => "process",
            Object::IpamAddress { .. } => "address",
            Object::Firewall { .. } => "ports",
            Object::Endpoint { .. } => "endpoint",
            _ => "other",
        })
        .collect()
}

/// A host namespace that is neither mounted anywhere nor the caller's own cannot be reached
/// by a cleanup in another process: an endpoint publishing ports there is not recorded (its
/// address is left to IPAM's own reclaim, which removes the port rules in the host's
/// namespace first); one without ports has nothing there, and its address is recorded.
#[test]
fn endpoints_on_an_anonymous_host_namespace() {
    require_root!();
    let _serial = crate::sandbox::serial();
    let _net_serial = crate::net::serial();
    let tmp = TempDir::new("own-anon").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let state = StateDir::new(tmp.join("state"));
    let ns = NetNs::new().unwrap();
    nook_netmodel::netlink::Netlink::open_in(ns.ns()).unwrap().set_up(1).unwrap();
    let host = host_of(tmp.path(), &ns);
    let network = bridge(&host);

    let with_ports = Sandbox::builder().state_dir(state.root()).connect(&network, published(8080)).create().unwrap();
    assert_eq!(kinds(&state, &with_ports), ["files", "cgroup", "process"]);
    let without =
        Sandbox::builder().state_dir(state.root()).connect(&network, EndpointOptions::new()).create().unwrap();
    assert_eq!(kinds(&state, &without), ["files", "cgroup", "process", "address"]);
    with_ports.remove().unwrap();
    without.remove().unwrap();
    assert!(held(tmp.path()).is_empty());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
    network.remove().unwrap();
}
