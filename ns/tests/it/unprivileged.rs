//! User namespaces created by an unprivileged caller: mapping one's own uid to root works
//! without helpers, and multi-range maps go through `newuidmap`/`newgidmap`.
//!
//! Each test re-executes this test binary as `nobody` (uid 65534), running the same test
//! again; in that child (marked by `NK_UNPRIV_ROLE`) the test plays the unprivileged side.

use std::path::Path;

use nook_ns::{Command, IdMap, IdMapping, MountStep, Namespace, NamespaceSet, ValidationError};
use nook_testutil::{TempDir, require_root};

const NOBODY: u32 = 65_534;
const ROLE_VAR: &str = "NK_UNPRIV_ROLE";

/// Re-runs this binary as `nobody`, executing only the test `entry` (which then sees
/// [`in_child_role`] true).
fn run_as_nobody(entry: &str, cmd_setup: impl FnOnce(&mut Command)) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(&exe);
    cmd.args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, entry)
        .user(NOBODY, NOBODY);
    cmd_setup(&mut cmd);
    let out = cmd.output().expect("spawn the unprivileged child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{entry} failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("NK-OK {entry}")), "{entry} did not report success:\n{stdout}\n{stderr}");
    stdout
}

/// Whether this process is the unprivileged child re-executed for test `entry`.
fn in_child_role(entry: &str) -> bool {
    if std::env::var(ROLE_VAR).as_deref() != Ok(entry) {
        return false;
    }
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, NOBODY, "the child must run unprivileged");
    true
}

#[test]
fn unprivileged_caller_maps_itself_to_root_without_helpers() {
    const ME: &str = "unprivileged_caller_maps_itself_to_root_without_helpers";
    if in_child_role(ME) {
        return self_map_as_nobody(ME);
    }
    require_root!();
    run_as_nobody(ME, |_| {});
}

fn self_map_as_nobody(me: &str) {
    let out = Command::new("/bin/sh")
        .args(["-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/setgroups; hostname"])
        .unshare(Namespace::User)
        .unshare(Namespace::Uts)
        .hostname("nk-unpriv")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("unprivileged spawn with a self map");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(out.status.success(), "{out:?}");
    // uid 0 and gid 0 inside, one line `0 65534 1`, setgroups denied, our hostname.
    assert_eq!(words, ["0", "0", "0", "65534", "1", "deny", "nk-unpriv"], "{text}");
    println!("NK-OK {me}");
}

#[test]
fn unprivileged_multi_range_maps_use_newuidmap() {
    const ME: &str = "unprivileged_multi_range_maps_use_newuidmap";
    if in_child_role(ME) {
        return multi_range_as_nobody(ME);
    }
    require_root!();
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        assert!(Path::new(tool).exists(), "{tool} missing: install the `uidmap` package (.ci/run does)");
    }
    // Grant nobody a subordinate range, visible only in the child's mount namespace.
    let dir = TempDir::new("subid").expect("temp dir");
    std::fs::write(dir.join("subuid"), "nobody:200000:1000\n").unwrap();
    std::fs::write(dir.join("subgid"), "nobody:200000:1000\n").unwrap();
    // The bind targets must exist; create empty ones only where missing, and remove those
    // again afterwards (also on panic).
    let _created = CreatedFiles(
        ["/etc/subuid", "/etc/subgid"]
            .into_iter()
            .filter(|f| !Path::new(f).exists())
            .inspect(|f| std::fs::write(f, "").unwrap_or_else(|e| panic!("cannot create {f}: {e}")))
            .collect(),
    );
    run_as_nobody(ME, |cmd| {
        cmd.unshare(Namespace::Mount)
            .mount(MountStep::bind(dir.join("subuid"), "/etc/subuid"))
            .mount(MountStep::bind(dir.join("subgid"), "/etc/subgid"));
    });
}

/// Files this test created on the host, removed on drop.
struct CreatedFiles(Vec<&'static str>);

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn multi_range_as_nobody(me: &str) {
    let map = IdMap::new().with(IdMapping::new(0, NOBODY, 1)).with(IdMapping::new(1, 200_000, 1000));
    let out = Command::new("/bin/sh")
        .args(["-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map"])
        .unshare(Namespace::User)
        .uid_map(map.clone())
        .gid_map(map)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("unprivileged spawn with a multi-range map (newuidmap)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let expected_map = ["0", "65534", "1", "1", "200000", "1000"];
    assert_eq!(words[0], "0", "{text}");
    assert_eq!(&words[1..7], expected_map, "uid_map: {text}");
    assert_eq!(&words[7..13], expected_map, "gid_map: {text}");
    println!("NK-OK {me}");
}

/// The namespaces of a process a child can join with [`Command::join`], as the test names
/// them, and what `/proc/PID/ns/*` shows of them.
const JOINED: [&str; 4] = ["user", "mnt", "uts", "pid"];

fn ns_links(pid: &str) -> Vec<String> {
    JOINED.iter().map(|k| std::fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap().display().to_string()).collect()
}

/// A process in new user, pid, uts and mount namespaces, then a child joined to all of them
/// through its pidfd: it reports the same namespace identities, the target's hostname, and
/// pid 2 (the target is PID 1 of its pid namespace). As root the cloning thread enters the
/// pid namespace; as nobody (a rootless container) the child joins it and the init forks
/// the program into it.
fn join_through_a_pidfd(me: &str) {
    let set =
        NamespaceSet::new().with(Namespace::User).with(Namespace::Pid).with(Namespace::Uts).with(Namespace::Mount);
    let mut target = Command::new("/bin/sleep");
    target.arg("1000").namespaces(set).hostname("nk-target").env("PATH", "/usr/bin:/bin");
    let mut target = target.spawn().expect("spawn the target");
    target.kill_on_drop(true);
    let pidfd = target.pidfd().try_clone_to_owned().unwrap();
    let script = format!("echo $$ $(hostname); for k in {}; do readlink /proc/self/ns/$k; done", JOINED.join(" "));
    // Not together with a new namespace of a joined kind.
    let err =
        Command::new("/bin/true").unshare(Namespace::Uts).join(pidfd.try_clone().unwrap(), set).validate().unwrap_err();
    assert_eq!(err, ValidationError::JoinAndCreate { namespace: Namespace::Uts });
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .join(pidfd, set)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("spawn the joined child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("2 nk-target"), "{text}");
    let joined: Vec<String> = lines.map(str::to_owned).collect();
    assert_eq!(joined, ns_links(&target.id().to_string()), "the joined child is in the target's namespaces");
    assert_ne!(joined, ns_links("self"));
    // Killed and reaped, not only dropped: a live target would keep the re-executed test's
    // output pipe open.
    target.kill().expect("kill the target");
    target.wait().expect("reap the target");
    println!("NK-OK {me}");
}

#[test]
fn a_child_joins_every_namespace_of_a_process_through_its_pidfd() {
    const ME: &str = "a_child_joins_every_namespace_of_a_process_through_its_pidfd";
    if in_child_role(ME) {
        return join_through_a_pidfd(ME);
    }
    require_root!();
    join_through_a_pidfd(ME);
    run_as_nobody(ME, |_| {});
}
