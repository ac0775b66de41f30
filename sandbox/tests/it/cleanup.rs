//! Owner records and `cleanup()` on the real kernel: a helper process (this test binary
//! re-executed in a role) creates a cgroup with a process in it, a tmpfs mount, a persisted
//! network namespace, an IPAM address and a container layer under a record it owns, then
//! exits or is SIGKILLed; `cleanup()` must leave nothing. Live owners are never touched, a
//! reused pid with another start time counts as dead, a corrupt record is a typed error while
//! the others are still cleaned, a failing object keeps its record, and concurrent cleanups
//! free each object once.
//!
//! Everything lives below a private temp dir (mounts included: `TempDir` detaches them on
//! drop) and the cgroups below the test's own cgroup.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, CgroupSpec, Pids};
use nook_netmodel::ipam::{Ipam, Owner, Pool, Request};
use nook_netmodel::{Host, Network, NetworkSpec};
use nook_ns::NetNs;
use nook_sandbox::state::{Error, Object, ProcessId, StateDir};
use nook_testutil::{TempDir, require_root, unique_name};
use nook_unionfs::LayerStore;

const ROLE: &str = "NK_CLEANUP_ROLE";
const BASE: &str = "NK_CLEANUP_BASE";
const ID: &str = "NK_CLEANUP_ID";
const NETWORK: &str = "nkclean";
const FW_NETWORK: &str = "nkfw";

/// What the helper made, as the test reads it back from the record.
fn state(base: &Path) -> StateDir {
    StateDir::new(base.join("state"))
}

/// A cleanup whose report has nothing busy: a record's lock can look held for a moment
/// while another test thread spawns a process (the child holds a copy of the lock's
/// descriptor until it execs); a busy record is simply left for the next cleanup, so the
/// tests ask again.
fn settled(st: &StateDir) -> nook_sandbox::CleanupReport {
    for _ in 0..200 {
        let report = st.cleanup().unwrap();
        if report.busy.is_empty() {
            return report;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("records stayed busy");
}

/// Helper side: create every kind of object under a record owned by this process.
// The sleeper is meant to outlive this helper (the cleanup kills it through the cgroup).
#[allow(clippy::zombie_processes)]
fn create_objects(base: &Path, id: &str) {
    let mut rec = state(base).create_record(id).expect("record");

    // A cgroup below our own (the test's) cgroup, with a process in it.
    let mut spec = CgroupSpec::new(unique_name("cg"));
    spec.resources.pids = Some(pids_max(64));
    let cg = Cgroup::create(&spec).expect("cgroup");
    rec.add(Object::cgroup(&spec, cg.paths())).unwrap();
    let sleeper = quiet_sleep();
    cg.add_pid(sleeper.id()).unwrap();
    rec.add(Object::process(sleeper.id()).unwrap()).unwrap();
    let _ = cg.leak();

    // A tmpfs mount in a private dir.
    let mnt = base.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).expect("tmpfs");
    rec.add(Object::mount(&mnt).unwrap()).unwrap();

    // A persisted network namespace in a private run dir.
    let ns = NetNs::create_in(&base.join("netns"), "nkns").expect("netns");
    rec.add(Object::PersistedNs { path: ns.path().unwrap().to_owned() }).unwrap();

    // A bridge network in that namespace (playing the host): its firewall chains in
    // nftables' `inet nook` table there.
    let host = Host::builder().netns(ns.ns()).ipam_dir(base.join("ipam")).build().expect("host");
    let mut spec = NetworkSpec::bridge(FW_NETWORK.parse().expect("network name"));
    spec.subnet("10.124.0.0/24".parse().unwrap(), None);
    let network = Network::create(&host, &spec).expect("network");
    rec.add(Object::Firewall {
        netns: ns.path().map(Path::to_owned),
        table: nook_netmodel::firewall::DEFAULT_TABLE.into(),
        network: FW_NETWORK.into(),
        endpoint: None,
    })
    .unwrap();
    std::mem::forget(network);
    let _ = ns.persist();

    // An IPAM address.
    let ipam = Ipam::open(base.join("ipam")).unwrap();
    ipam.add_network(NETWORK, &[Pool::new("10.123.0.0/24".parse().unwrap())]).unwrap();
    let owner = Owner::current_process();
    let a = ipam.allocate(NETWORK, Request::AnyV4, &owner).unwrap();
    rec.add(Object::IpamAddress {
        state_dir: base.join("ipam"),
        network: NETWORK.into(),
        address: a.address.addr(),
        owner: Some(owner),
    })
    .unwrap();

    // A container layer in a private store.
    let store = LayerStore::open(base.join("store")).unwrap();
    store.create_container(id, None).unwrap();
    rec.add(Object::ContainerLayer { store: base.join("store"), id: id.into() }).unwrap();
    // The handles are gone without a remove: what a crash leaves.
    std::mem::forget(rec);
}

/// Re-runs this binary as a helper for `entry` (which then calls [`create_objects`]).
fn spawn_helper(entry: &str, base: &Path, id: &str) -> Child {
    spawn_helper_with(entry, base, id, &[])
}

fn spawn_helper_with(entry: &str, base: &Path, id: &str, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE, entry)
        .env(BASE, base)
        .env(ID, id)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper")
}

/// `sleep 1000` with no stdio of ours (it may outlive a failing test).
fn quiet_sleep() -> Child {
    Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sleep")
}

fn helper_role(entry: &str) -> Option<(PathBuf, String)> {
    if std::env::var(ROLE).as_deref() != Ok(entry) {
        return None;
    }
    Some((std::env::var_os(BASE).unwrap().into(), std::env::var(ID).unwrap()))
}

/// Reads the helper's stdout until `NK-READY`; the rest is drained on a thread (the helper's
/// test harness still writes its result).
fn wait_ready(child: &mut Child) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("NK-READY") {
            std::thread::spawn(move || lines.for_each(drop));
            return;
        }
    }
    panic!("helper ended without NK-READY: {:?}", child.wait());
}

/// Kills the helper (if still running) and cleans the state dir when a test ends, also on
/// panic, so a failing test leaves nothing either.
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
        let _ = state(self.base).cleanup();
    }
}

/// `nft list tables` inside the namespace held by `ns`.
fn nft_tables(ns: &NetNs) -> String {
    let out = ns.run(|| Command::new("nft").args(["list", "tables"]).output().unwrap()).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn is_mounted(p: &Path) -> bool {
    nook_testutil::mountinfo_line(p).is_some()
}

/// Gone, or a zombie waiting for init to reap it (SIGKILLed, holding nothing).
fn process_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z') => return true,
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Every object of the record exists (checked on the kernel and on disk).
fn assert_all_there(base: &Path, id: &str) -> Vec<Object> {
    let rec = state(base).read(id).expect("record written");
    assert_eq!(rec.objects.len(), 7, "{rec:?}");
    for o in &rec.objects {
        match o {
            Object::Cgroup { dirs, .. } => assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}"),
            Object::Process { process } => assert!(process.is_alive(), "{process:?}"),
            Object::Mount { target, .. } => assert!(is_mounted(target), "{}", target.display()),
            Object::PersistedNs { path } => assert!(is_mounted(path), "{}", path.display()),
            Object::IpamAddress { state_dir, network, address, .. } => {
                let held = Ipam::open(state_dir).unwrap().allocations(network).unwrap();
                assert!(held.iter().any(|(a, _)| a == address), "{held:?}");
            }
            Object::ContainerLayer { store, id } => {
                assert!(LayerStore::open(store).unwrap().container_ids().unwrap().contains(id))
            }
            Object::Firewall { netns, table, .. } => {
                let ns = NetNs::open_path(netns.as_ref().unwrap()).unwrap();
                assert!(nft_tables(&ns).contains(&format!("inet {table}")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    rec.objects
}

/// Handles on the namespaces the record's firewall rules live in (so the test can look
/// after the cleanup removed their names).
fn firewall_namespaces(objects: &[Object]) -> Vec<(NetNs, String)> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Firewall { netns: Some(p), table, .. } => Some((NetNs::open_path(p).unwrap(), table.clone())),
            _ => None,
        })
        .collect()
}

/// Nothing of `objects` is left, nor the record.
fn assert_all_gone(base: &Path, id: &str, objects: &[Object]) {
    for o in objects {
        match o {
            Object::Cgroup { dirs, .. } => assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}"),
            Object::Process { process } => assert!(process_gone(process.pid), "{process:?} still runs"),
            Object::Mount { target, .. } => assert!(!is_mounted(target), "{}", target.display()),
            Object::PersistedNs { path } => assert!(!is_mounted(path) && !path.exists(), "{}", path.display()),
            Object::IpamAddress { state_dir, network, .. } => {
                let held = Ipam::open(state_dir).unwrap().allocations(network).unwrap();
                assert!(held.is_empty(), "{held:?}");
            }
            Object::ContainerLayer { store, id } => {
                assert!(!LayerStore::open(store).unwrap().container_ids().unwrap().contains(id))
            }
            Object::Firewall { .. } => {} // checked through firewall_namespaces
            other => panic!("unexpected {other:?}"),
        }
    }
    let dir = base.join("state/sandboxes");
    assert!(!dir.join(format!("{id}.json")).exists() && !dir.join(format!("{id}.lock")).exists());
    assert!(state(base).ids().unwrap().is_empty());
}

#[test]
fn dead_owner_leaves_nothing_after_cleanup() {
    const ME: &str = "dead_owner_leaves_nothing_after_cleanup";
    if let Some((base, id)) = helper_role(ME) {
        create_objects(&base, &id);
        println!("NK-READY");
        return; // exits: the owner is dead, its objects stay
    }
    require_root!();
    let tmp = TempDir::new("clean").unwrap();
    let id = unique_name("sb");
    let mut guard = Guard { base: tmp.path(), helper: Some(spawn_helper(ME, tmp.path(), &id)) };
    let helper = guard.helper.as_mut().unwrap();
    wait_ready(helper);
    assert!(helper.wait().unwrap().success());
    let objects = assert_all_there(tmp.path(), &id);

    let fw = firewall_namespaces(&objects);
    let report = settled(&state(tmp.path()));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert_all_gone(tmp.path(), &id, &objects);
    for (ns, table) in &fw {
        assert!(!nft_tables(ns).contains(&format!("inet {table}")), "{table} left");
    }

    // A second cleanup finds nothing.
    let again = settled(&state(tmp.path()));
    assert!(again.removed.is_empty() && again.is_clean(), "{again:?}");
}

#[test]
fn owner_sigkilled_after_creating_leaves_nothing_after_cleanup() {
    const ME: &str = "owner_sigkilled_after_creating_leaves_nothing_after_cleanup";
    if let Some((base, id)) = helper_role(ME) {
        create_objects(&base, &id);
        println!("NK-READY");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let tmp = TempDir::new("kill").unwrap();
    let id = unique_name("sb");
    let mut guard = Guard { base: tmp.path(), helper: Some(spawn_helper(ME, tmp.path(), &id)) };
    let helper = guard.helper.as_mut().unwrap();
    wait_ready(helper);
    let objects = assert_all_there(tmp.path(), &id);
    // While the owner lives, nothing is touched.
    let report = settled(&state(tmp.path()));
    assert_eq!(report.live, [id.as_str()], "{report:?}");
    assert_all_there(tmp.path(), &id);

    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    let fw = firewall_namespaces(&objects);
    let report = settled(&state(tmp.path()));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert_all_gone(tmp.path(), &id, &objects);
    for (ns, table) in &fw {
        assert!(!nft_tables(ns).contains(&format!("inet {table}")), "{table} left");
    }
}

/// A live owner's sandbox is untouched by any number of cleanups; once the owner is gone, the
/// next cleanup removes it.
#[test]
fn live_owner_untouched_until_it_dies() {
    require_root!();
    let tmp = TempDir::new("live").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let mut owner = quiet_sleep();
    let st = state(tmp.path());
    let mut rec = st.create_record_for("nk-live", ProcessId::of(owner.id()).unwrap()).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).unwrap();
    rec.add(Object::mount(&mnt).unwrap()).unwrap();
    std::fs::write(mnt.join("data"), "kept").unwrap();

    for _ in 0..2 {
        let report = settled(&st);
        assert_eq!(report.live, ["nk-live"], "{report:?}");
        assert!(report.removed.is_empty());
    }
    assert_eq!(std::fs::read_to_string(mnt.join("data")).unwrap(), "kept");
    assert!(is_mounted(&mnt));

    owner.kill().unwrap();
    owner.wait().unwrap();
    let report = settled(&st);
    assert_eq!(report.removed, ["nk-live"], "{report:?}");
    assert!(!is_mounted(&mnt));
    assert!(st.ids().unwrap().is_empty());
}

/// The owner's pid is in use (by this very test) but with another start time: a reused pid,
/// so the owner is dead and its sandbox is cleaned.
#[test]
fn reused_pid_with_another_start_time_counts_as_dead() {
    require_root!();
    let tmp = TempDir::new("reuse").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let me = ProcessId::current().unwrap();
    let mut ghost = me;
    ghost.start_time = me.start_time.wrapping_sub(1);
    let st = state(tmp.path());
    let mut rec = st.create_record_for("nk-reused", ghost).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).unwrap();
    rec.add(Object::mount(&mnt).unwrap()).unwrap();
    // And a record of the real us: untouched.
    let mut mine = st.create_record("nk-mine").unwrap();
    let mnt2 = tmp.join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    nook_ns::mount_tmpfs(&mnt2, None).unwrap();
    mine.add(Object::mount(&mnt2).unwrap()).unwrap();

    let report = settled(&st);
    assert_eq!(report.removed, ["nk-reused"], "{report:?}");
    assert_eq!(report.live, ["nk-mine"], "{report:?}");
    assert!(!is_mounted(&mnt) && is_mounted(&mnt2));
    nook_ns::unmount(&mnt2, false).unwrap();
    mine.remove().unwrap();
    assert!(st.ids().unwrap().is_empty());
}

/// Dead owner's record with a mount, plus a record that does not parse: the corrupt one is a
/// typed error (and left), the other is still cleaned.
#[test]
fn corrupt_record_is_reported_and_others_still_cleaned() {
    require_root!();
    let tmp = TempDir::new("corrupt").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let st = state(tmp.path());
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let mut rec = st.create_record_for("nk-good", dead).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).unwrap();
    rec.add(Object::mount(&mnt).unwrap()).unwrap();
    let bad = tmp.join("state/sandboxes/nk-bad.json");
    std::fs::write(&bad, b"{\"version\": 1, \"id\": \"nk-bad\", \"owner\": ").unwrap();
    // A record that names another sandbox than its file is corrupt too.
    let other = tmp.join("state/sandboxes/nk-other.json");
    let text = std::fs::read_to_string(tmp.join("state/sandboxes/nk-good.json")).unwrap();
    std::fs::write(&other, text.replace("\"nk-good\"", "\"nk-elsewhere\"")).unwrap();

    let report = settled(&st);
    assert_eq!(report.removed, ["nk-good"], "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    for e in &report.failed {
        match e {
            Error::Corrupt { path, .. } => assert!(path == &bad || path == &other, "{path:?}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert!(!is_mounted(&mnt));
    assert!(bad.exists() && other.exists(), "corrupt records are left for a human");
    assert!(report.into_result().is_err());
}

/// An object that cannot be removed keeps the record (with only what is left) and is
/// reported as a Teardown; what could be removed is gone.
#[test]
fn failing_object_keeps_its_record() {
    require_root!();
    let tmp = TempDir::new("fail").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let st = state(tmp.path());
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let mut rec = st.create_record_for("nk-stuck", dead).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).unwrap();
    rec.add(Object::mount(&mnt).unwrap()).unwrap();
    // "A persisted namespace" that is a file with data: not what was recorded, left alone.
    let not_ns = tmp.join("not-a-netns");
    std::fs::write(&not_ns, "precious").unwrap();
    let stuck = Object::PersistedNs { path: not_ns.clone() };
    rec.add(stuck.clone()).unwrap();

    let report = settled(&st);
    assert!(report.removed.is_empty(), "{report:?}");
    match &report.failed[..] {
        [Error::Teardown { errors, .. }] => {
            assert!(matches!(errors[..], [Error::NotWhatWasRecorded { .. }]), "{errors:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!is_mounted(&mnt), "the removable object is removed");
    assert_eq!(std::fs::read_to_string(&not_ns).unwrap(), "precious");
    assert_eq!(st.read("nk-stuck").unwrap().objects, [stuck], "the record keeps what is left");
}

/// Concurrent cleanups of the same state dir: each dead sandbox is removed exactly once.
#[test]
fn concurrent_cleanups_remove_each_sandbox_once() {
    require_root!();
    let tmp = TempDir::new("conc").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let st = state(tmp.path());
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let mut mounts = Vec::new();
    for i in 0..6 {
        let mut rec = st.create_record_for(&format!("nk-c{i}"), dead).unwrap();
        let mnt = tmp.join(format!("mnt{i}"));
        std::fs::create_dir(&mnt).unwrap();
        nook_ns::mount_tmpfs(&mnt, None).unwrap();
        rec.add(Object::mount(&mnt).unwrap()).unwrap();
        mounts.push(mnt);
    }
    let reports: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| st.cleanup().unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut removed: Vec<String> = reports.iter().flat_map(|r| r.removed.clone()).collect();
    removed.sort();
    assert_eq!(removed, (0..6).map(|i| format!("nk-c{i}")).collect::<Vec<_>>(), "{reports:?}");
    assert!(reports.iter().all(|r| r.is_clean()), "{reports:?}");
    assert!(mounts.iter().all(|m| !is_mounted(m)));
    // Whatever was busy for one cleanup was removed by another; nothing is left.
    assert!(st.ids().unwrap().is_empty());
    let left: Vec<_> =
        std::fs::read_dir(tmp.join("state/sandboxes")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The owner's own view: create, append, forget, remove.
#[test]
fn record_lifecycle_of_a_clean_owner() {
    let tmp = TempDir::new("life").unwrap();
    let st = state(tmp.path());
    let mut rec = st.create_record("nk-life").unwrap();
    assert!(matches!(st.create_record("nk-life"), Err(Error::Exists { .. })));
    assert!(matches!(st.create_record("../x"), Err(Error::Invalid(_))));
    let a = Object::ContainerLayer { store: tmp.join("store"), id: "a".into() };
    let b = Object::ContainerLayer { store: tmp.join("store"), id: "b".into() };
    rec.add(a.clone()).unwrap();
    rec.add(b.clone()).unwrap();
    assert_eq!(st.read("nk-life").unwrap().objects, [a.clone(), b.clone()]);
    rec.forget(&a).unwrap();
    assert_eq!(st.read("nk-life").unwrap().objects, [b]);
    assert_eq!(st.read("nk-life").unwrap().owner, ProcessId::current().unwrap());
    rec.remove().unwrap();
    assert!(st.ids().unwrap().is_empty());
    let left: Vec<_> =
        std::fs::read_dir(tmp.join("state/sandboxes")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A record listing only what a reboot removes anyway (processes here) is rewritten without
/// `fsync`, by swapping a new file in (`RENAME_EXCHANGE`) and unlinking the old one: every
/// rewrite is read back whole, each is a new file, and no temporary file is left.
#[test]
fn non_durable_record_rewrites_are_whole_and_leave_no_temp_files() {
    use std::os::unix::fs::MetadataExt;
    let tmp = TempDir::new("swap").unwrap();
    let st = state(tmp.path());
    let mut rec = st.create_record("nk-swap").unwrap();
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(tmp.join("state/sandboxes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let path = rec.path().to_owned();
    let inode = || std::fs::metadata(&path).unwrap().ino();
    let me = ProcessId::current().unwrap();
    let other = |n: u64| Object::Process { process: ProcessId { pid: me.pid, start_time: me.start_time + n } };
    let mut inodes = vec![inode()];
    rec.add(other(1)).unwrap();
    inodes.push(inode());
    rec.add(other(2)).unwrap();
    inodes.push(inode());
    rec.replace(&other(1), other(3)).unwrap();
    inodes.push(inode());
    assert_eq!(st.read("nk-swap").unwrap().objects, [other(3), other(2)]);
    rec.replace_with(&other(3), vec![other(4), other(5)]).unwrap();
    assert_eq!(st.read("nk-swap").unwrap().objects, [other(4), other(5), other(2)]);
    assert_eq!(files(), ["nk-swap.json", "nk-swap.lock"]);
    inodes.dedup();
    assert_eq!(inodes.len(), 4, "each rewrite puts a new file in place: {inodes:?}");
    rec.remove().unwrap();
    assert!(files().is_empty(), "{:?}", files());
}

/// A recorded process (a sandbox init outside any cgroup) is killed by pidfd; a recorded pid
/// that now belongs to another process (another start time) is left alone.
#[test]
fn recorded_process_is_killed_only_if_still_the_same() {
    require_root!();
    let tmp = TempDir::new("proc").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let st = state(tmp.path());
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let mut init = quiet_sleep();
    let mut bystander = quiet_sleep();
    let mut reused = ProcessId::of(bystander.id()).unwrap();
    reused.start_time += 1;
    let mut rec = st.create_record_for("nk-proc", dead).unwrap();
    rec.add(Object::process(init.id()).unwrap()).unwrap();
    rec.add(Object::Process { process: reused }).unwrap();

    let report = settled(&st);
    assert_eq!(report.removed, ["nk-proc"], "{report:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(init.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(bystander.try_wait().unwrap().is_none(), "the process that reused the pid was killed");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

/// A state dir another user could write is refused: a record planted there (by "another
/// user") naming a mount is not acted on.
#[test]
fn state_dir_writable_by_others_is_refused() {
    require_root!();
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("unsafe").unwrap();
    let _guard = Guard { base: tmp.path(), helper: None };
    let st = state(tmp.path());
    let mut dead = ProcessId::current().unwrap();
    dead.start_time += 1;
    let mut rec = st.create_record_for("nk-planted", dead).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nook_ns::mount_tmpfs(&mnt, None).unwrap();
    rec.add(Object::mount(&mnt).unwrap()).unwrap();
    let dir = tmp.join("state/sandboxes");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();

    match st.cleanup() {
        Err(Error::Unsafe { path, .. }) => assert_eq!(path, dir),
        other => panic!("expected Unsafe, got {other:?}"),
    }
    assert!(is_mounted(&mnt), "nothing is acted on in an unsafe state dir");
    assert!(matches!(st.create_record("nk-new"), Err(Error::Unsafe { .. })));

    // Made private again, the same record is cleaned.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(settled(&st).removed, ["nk-planted"]);
    assert!(!is_mounted(&mnt));
}

/// The creator moved into another cgroup before creating the sandbox's (and, on v2, further
/// into a leaf, as `leaf_for_parent_processes` does): the cleaner, in its own cgroup, still
/// finds the sandbox's cgroup from the recorded directories and removes it.
#[test]
fn cgroup_of_a_creator_in_another_cgroup_is_found() {
    const ME: &str = "cgroup_of_a_creator_in_another_cgroup_is_found";
    if let Some((base, id)) = helper_role(ME) {
        let me = std::process::id().to_string();
        for dir in std::env::var("NK_MOVE_TO").unwrap().split(':') {
            std::fs::write(Path::new(dir).join("cgroup.procs"), &me).unwrap();
        }
        let mut rec = state(&base).create_record(&id).unwrap();
        let mut spec = CgroupSpec::new(unique_name("cg"));
        spec.resources.pids = Some(pids_max(16));
        spec.leaf_for_parent_processes = Some("nkleaf".into());
        let cg = Cgroup::create(&spec).expect("cgroup below the moved creator");
        rec.add(Object::cgroup(&spec, cg.paths())).unwrap();
        let sleeper = quiet_sleep();
        cg.add_pid(sleeper.id()).unwrap();
        let _ = cg.leak();
        std::mem::forget((rec, sleeper));
        println!("NK-READY");
        return;
    }
    require_root!();
    let tmp = TempDir::new("moved").unwrap();
    let mut pspec = CgroupSpec::new(unique_name("par"));
    pspec.resources.pids = Some(pids_max(64));
    let parent = Cgroup::create(&pspec).unwrap();
    let parent_dirs: Vec<PathBuf> = parent.paths().map(Path::to_owned).collect();
    let move_to = parent_dirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let id = unique_name("sb");
    let mut guard =
        Guard { base: tmp.path(), helper: Some(spawn_helper_with(ME, tmp.path(), &id, &[("NK_MOVE_TO", move_to)])) };
    let helper = guard.helper.as_mut().unwrap();
    wait_ready(helper);
    assert!(helper.wait().unwrap().success());

    let objects = state(tmp.path()).read(&id).unwrap().objects;
    let Object::Cgroup { dirs, .. } = &objects[0] else { panic!("{objects:?}") };
    assert!(dirs.iter().all(|d| parent_dirs.iter().any(|p| d.starts_with(p)) && d.is_dir()), "{dirs:?}");
    let report = settled(&state(tmp.path()));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    drop(guard);
    parent.remove().unwrap();
    assert!(parent_dirs.iter().all(|d| !d.exists()));
}

/// A pids limit, built from `Default` (other crates' spec structs may gain fields).
#[allow(clippy::field_reassign_with_default)]
fn pids_max(max: u64) -> Pids {
    let mut pids = Pids::default();
    pids.max = Some(max);
    pids
}
