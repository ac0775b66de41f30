//! Network namespaces against the real kernel and iproute2: anonymous ones, ones persisted
//! under `/run/netns` exactly like `ip netns add`, ownership (remove, drop, persist), and
//! name validation.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command as StdCommand;

use nook_ns::{Child, Command, Error, NETNS_RUN_DIR, Namespace, NamespaceSet, NetNs, NsFd, NsId, ValidationError};
use nook_testutil::{TempDir, require_root, unique_name};

/// Interface names listed in `/proc/thread-self/net/dev`: the network namespace of the
/// calling *thread* (`/sys/class/net` shows the netns of the sysfs mount, `/proc/self/net`
/// that of the thread group leader).
fn thread_interfaces() -> Vec<String> {
    let dev = fs::read_to_string("/proc/thread-self/net/dev").expect("read /proc/thread-self/net/dev");
    dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_owned()).collect()
}

fn is_mounted(path: &Path) -> bool {
    crate::procfs::thread_mount_points().iter().any(|p| p == path)
}

/// The identity of a file as `stat` sees it (for a bind-mounted namespace: the nsfs inode).
fn stat_id(path: &Path) -> NsId {
    let md = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    NsId::new(md.dev(), md.ino())
}

/// Runs iproute2's `ip` and returns its stdout; fails the test on a non-zero exit.
fn ip(args: &[&str]) -> String {
    let out = StdCommand::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 from ip")
}

/// Names `ip netns list` shows (first word of each line; it may append `(id: N)`).
fn ip_netns_list() -> Vec<String> {
    ip(&["netns", "list"]).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

fn current_net_id() -> NsId {
    NsFd::current(Namespace::Net).unwrap().id().unwrap()
}

/// A `sleep` child in `set`, killed and reaped when the handle drops.
fn sleeper(set: NamespaceSet) -> Child {
    let mut child = Command::new("sleep").arg("1000").namespaces(set).spawn().expect("spawn sleep");
    child.kill_on_drop(true);
    child
}

/// Deletes a persisted name on drop (for names whose handle gave up ownership).
struct DeleteOnDrop(String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = NetNs::delete(&self.0);
    }
}

#[test]
fn anonymous_netns_holds_only_lo_and_is_not_ours() {
    require_root!();
    let ns = NetNs::new().unwrap();
    assert_eq!(ns.path(), None);
    let (inside_id, ifaces) = ns.run(|| (current_net_id(), thread_interfaces())).unwrap();
    assert_eq!(ifaces, ["lo"]);
    assert_eq!(inside_id, ns.ns().id().unwrap(), "run() must execute inside the namespace");
    assert_ne!(ns.ns().id().unwrap(), current_net_id());
    assert_eq!(ns.ns().kind(), Namespace::Net);
}

#[test]
fn created_netns_is_an_ip_netns_bind_mount() {
    require_root!();
    let name = unique_name("ns");
    let ns = NetNs::create(&name).unwrap();
    let path = Path::new(NETNS_RUN_DIR).join(&name);
    assert_eq!(ns.path(), Some(path.as_path()));

    // Persisted the way iproute2 does it: a bind mount of the nsfs file.
    assert!(path.exists());
    assert!(is_mounted(&path), "{} not in mountinfo", path.display());
    let id = ns.ns().id().unwrap();
    assert_eq!(stat_id(&path), id, "the file at the path is the namespace");
    assert_ne!(id, current_net_id());

    // iproute2 sees it, can enter it, and finds only lo there.
    assert!(ip_netns_list().contains(&name), "ip netns list: {:?}", ip_netns_list());
    let links = ip(&["netns", "exec", &name, "ip", "-o", "link"]);
    let links: Vec<&str> = links.lines().collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].contains(": lo:"), "{links:?}");
    assert_eq!(ip(&["netns", "exec", &name, "ip", "netns", "identify"]).trim(), name);

    // Inside, from our side: only lo.
    assert_eq!(ns.run(thread_interfaces).unwrap(), ["lo"]);
    ns.remove().unwrap();
}

#[test]
fn open_and_open_path_name_the_same_namespace_without_owning_it() {
    require_root!();
    let name = unique_name("op");
    let ns = NetNs::create(&name).unwrap();
    let id = ns.ns().id().unwrap();

    let by_name = NetNs::open(&name).unwrap();
    assert_eq!(by_name.ns().id().unwrap(), id);
    let by_path = NetNs::open_path(Path::new(NETNS_RUN_DIR).join(&name)).unwrap();
    assert_eq!(by_path.ns().id().unwrap(), id);
    assert_eq!(by_path.path(), ns.path());

    // Handles from open* do not delete the name.
    drop(by_name);
    drop(by_path);
    let path = ns.path().unwrap().to_owned();
    assert!(path.exists() && is_mounted(&path));
    ns.remove().unwrap();
}

#[test]
fn of_pid_is_the_childs_network_namespace() {
    require_root!();
    let child = sleeper(NamespaceSet::NET);
    let ns = NetNs::of_pid(child.id()).unwrap();
    let expected = NsFd::of_pid(child.id(), Namespace::Net).unwrap().id().unwrap();
    assert_eq!(ns.ns().id().unwrap(), expected);
    assert_ne!(expected, current_net_id());
    assert_eq!(ns.path(), None);
    assert_eq!(ns.run(thread_interfaces).unwrap(), ["lo"]);
}

#[test]
fn remove_deletes_file_and_mount() {
    require_root!();
    let name = unique_name("rm");
    let ns = NetNs::create(&name).unwrap();
    let path = ns.path().unwrap().to_owned();
    assert!(is_mounted(&path));
    ns.remove().unwrap();
    assert!(!path.exists(), "{} still exists", path.display());
    assert!(!is_mounted(&path), "{} still mounted", path.display());
    assert!(!ip_netns_list().contains(&name));
}

#[test]
fn dropping_the_owning_handle_deletes_the_name() {
    require_root!();
    let name = unique_name("dr");
    let ns = NetNs::create(&name).unwrap();
    let path = ns.path().unwrap().to_owned();
    assert!(path.exists());
    drop(ns);
    assert!(!path.exists(), "{} still exists", path.display());
    assert!(!is_mounted(&path));
}

#[test]
fn persist_keeps_the_name_until_delete() {
    require_root!();
    let name = unique_name("pe");
    let cleanup = DeleteOnDrop(name.clone());
    let ns = NetNs::create(&name).unwrap();
    let id = ns.ns().id().unwrap();
    let path = ns.persist().expect("a persisted namespace has a path");

    // The handle is gone; the namespace lives on in /run/netns.
    assert!(path.exists() && is_mounted(&path));
    assert_eq!(stat_id(&path), id);
    assert_eq!(NetNs::open(&name).unwrap().ns().id().unwrap(), id);
    assert!(ip_netns_list().contains(&name));

    NetNs::delete(&name).unwrap();
    assert!(!path.exists() && !is_mounted(&path));
    drop(cleanup);
}

#[test]
fn creating_an_existing_name_fails_with_eexist_and_keeps_the_original() {
    require_root!();
    let name = unique_name("ex");
    let first = NetNs::create(&name).unwrap();
    let id = first.ns().id().unwrap();

    let err = NetNs::create(&name).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");

    let path = first.path().unwrap().to_owned();
    assert!(is_mounted(&path));
    assert_eq!(stat_id(&path), id, "the failed create must not replace the original");
    first.remove().unwrap();
}

#[test]
fn bad_names_are_rejected_before_anything_is_created() {
    // No root needed: validation comes before any system call.
    let tmp = TempDir::new("badname").unwrap();
    let run_dir = tmp.join("run");
    for bad in ["a/b", "..", ".", ""] {
        match NetNs::create_in(&run_dir, bad) {
            Err(Error::Invalid(ValidationError::BadName { name, .. })) => assert_eq!(name, bad),
            other => panic!("create_in({bad:?}): expected BadName, got {other:?}"),
        }
        assert!(!run_dir.exists(), "create_in({bad:?}) touched the file system");
        for result in [NetNs::open(bad).map(drop), NetNs::delete(bad)] {
            assert!(matches!(result, Err(Error::Invalid(ValidationError::BadName { .. }))), "{bad:?}: {result:?}");
        }
    }
}

#[test]
fn create_in_a_custom_run_dir() {
    require_root!();
    let tmp = TempDir::new("netnsrun").unwrap();
    let run_dir = tmp.join("netns");
    let name = unique_name("ci");
    let ns = NetNs::create_in(&run_dir, &name).unwrap();
    let path = run_dir.join(&name);
    assert_eq!(ns.path(), Some(path.as_path()));

    // The run dir became a shared mount (like /run/netns), the name a bind mount in it.
    let dir = crate::procfs::thread_mount_at(&run_dir).expect("run dir is a mount point");
    let shared = dir.opt_fields.iter().any(|f| matches!(f, procfs_core::process::MountOptFields::Shared(_)));
    assert!(shared, "run dir not shared: {dir:?}");
    assert!(is_mounted(&path));
    assert_eq!(stat_id(&path), ns.ns().id().unwrap());
    assert_eq!(ns.run(thread_interfaces).unwrap(), ["lo"]);
    assert_eq!(NetNs::open_path(&path).unwrap().ns().id().unwrap(), ns.ns().id().unwrap());

    ns.remove().unwrap();
    assert!(!path.exists() && !is_mounted(&path));

    // TempDir's drop detaches the run dir's self bind mount.
    let root = tmp.path().to_owned();
    drop(tmp);
    assert!(
        !crate::procfs::thread_mount_points().iter().any(|p| p.starts_with(&root)),
        "mounts left below {}",
        root.display()
    );
    assert!(!root.exists());
}

#[test]
fn concurrent_creates_mount_a_fresh_run_dir_once() {
    require_root!();
    // Several threads racing to set up the same new run dir must not stack self bind mounts.
    for _ in 0..5 {
        let tmp = TempDir::new("race").unwrap();
        let run_dir = tmp.join("netns");
        let handles: Vec<NetNs> = std::thread::scope(|s| {
            let spawned: Vec<_> = (0..4).map(|_| s.spawn(|| NetNs::create_in(&run_dir, &unique_name("rc")))).collect();
            spawned.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        let times = crate::procfs::thread_mount_points().iter().filter(|p| **p == run_dir).count();
        assert_eq!(times, 1, "{} is mounted {times} times", run_dir.display());
        for ns in handles {
            ns.remove().unwrap();
        }
        assert_eq!(crate::procfs::thread_mount_points().iter().filter(|p| p.starts_with(&run_dir)).count(), 1);
    }
}

#[test]
fn deleting_a_name_that_is_not_there_reports_every_failure() {
    require_root!();
    let name = unique_name("td");
    assert!(!Path::new(NETNS_RUN_DIR).join(&name).exists());
    // Neither mounted nor there: the unmount and the unlink both fail, both are reported.
    let err = NetNs::delete(&name).unwrap_err();
    match &err {
        Error::Teardown { errors, .. } => {
            let codes: Vec<_> = errors.iter().map(Error::raw_os_error).collect();
            assert_eq!(codes, [Some(libc::ENOENT), Some(libc::ENOENT)], "{err}");
        }
        other => panic!("expected Teardown, got {other}"),
    }
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "the first failure's errno");
}

/// `readlink` of a process's network namespace (`net:[INODE]`).
fn net_link(pid: u32) -> String {
    fs::read_link(format!("/proc/{pid}/ns/net")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn join_netns_starts_the_child_in_that_namespace_and_the_cloning_thread_returns() {
    require_root!();
    let target = NetNs::new().expect("netns");
    let target_link = format!("net:[{}]", target.ns().id().unwrap().ino);
    let own = net_link(std::process::id());
    for process_owner in [false, true] {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "readlink /proc/self/ns/net"]).join_netns(target.ns().try_clone().unwrap());
        if process_owner {
            // Cloned by the spawner thread: it must go back to its own namespace too.
            cmd.kill_with_parent_process(libc::SIGKILL);
        }
        let out = cmd.output().expect("spawn in the joined netns");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), target_link);
        // The next child of either thread is in the caller's namespace again.
        let mut plain = Command::new("/bin/sh");
        plain.args(["-c", "readlink /proc/self/ns/net"]).kill_with_parent_process(libc::SIGKILL);
        assert_eq!(String::from_utf8_lossy(&plain.output().unwrap().stdout).trim(), own);
        let out = Command::new("/bin/sh").args(["-c", "readlink /proc/self/ns/net"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), own);
        assert_eq!(fs::read_link("/proc/thread-self/ns/net").unwrap().to_string_lossy(), own);
    }

    // Refused before any system call: joining and creating, or a namespace of another kind.
    let mut both = Command::new("/bin/true");
    both.join_netns(target.ns().try_clone().unwrap()).unshare(Namespace::Net);
    assert_eq!(both.validate(), Err(ValidationError::JoinAndCreate { namespace: Namespace::Net }));
    let mut wrong = Command::new("/bin/true");
    wrong.join_netns(NsFd::current(Namespace::Uts).unwrap());
    assert!(matches!(wrong.validate(), Err(ValidationError::JoinWrongKind { found: Namespace::Uts, .. })));
}
