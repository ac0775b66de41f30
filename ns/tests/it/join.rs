//! Joining namespaces against the real kernel: by fd ([`NsFd::enter`]), by path, several at
//! once through a pidfd, with a guard that comes back (also on panic), and on a dedicated
//! thread with [`run_in`]. Every join happens on a thread the test spawns for it, so the
//! test harness's threads never move.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use nook_ns::{
    Child, Command, Error, MountStep, Namespace, NamespaceSet, NetNs, NsFd, NsGuard, NsId, join_path, join_pidfd,
    pidfd_open, run_in,
};
use nook_testutil::{TempDir, require_root, unique_name};

/// The calling thread's namespace of `kind`.
fn current(kind: Namespace) -> NsId {
    NsFd::current(kind).unwrap().id().unwrap()
}

/// The identity behind one of the calling thread's `/proc/thread-self/ns/*` links.
fn thread_ns(link: &str) -> NsId {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(format!("/proc/thread-self/ns/{link}")).unwrap();
    NsId::new(md.dev(), md.ino())
}

fn of_pid(pid: u32, kind: Namespace) -> NsId {
    NsFd::of_pid(pid, kind).unwrap().id().unwrap()
}

/// The calling thread's hostname (`gethostname`, i.e. its UTS namespace).
fn hostname() -> String {
    let mut buf = [0u8; 65];
    // SAFETY: buf is valid for writes of buf.len() bytes; the kernel's hostname is at most
    // 64 bytes, so it is NUL-terminated inside buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname: {}", std::io::Error::last_os_error());
    let end = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(buf[..end].to_vec()).unwrap()
}

/// Runs `f` on a new thread (which may change its own namespaces and dies afterwards) and
/// returns its result; a panic there fails the test.
fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    })
}

/// A `sleep` child with new `set` namespaces (and `hostname`, when given), killed and
/// reaped when the handle drops.
fn sleeper(set: NamespaceSet, hostname: Option<&str>) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").namespaces(set);
    if let Some(h) = hostname {
        cmd.hostname(h);
    }
    let mut child = cmd.spawn().expect("spawn sleep");
    child.kill_on_drop(true);
    child
}

/// Mount points in the calling thread's mount namespace.
fn thread_mount_points() -> Vec<String> {
    crate::procfs::thread_mount_points().into_iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// The file system type of the mount at `path` in the calling thread's mount namespace.
fn thread_fstype_at(path: &Path) -> Option<String> {
    crate::procfs::thread_mounts().into_iter().find(|m| m.mount_point == path).map(|m| m.fs_type)
}

const UTS_NET: [Namespace; 2] = [Namespace::Uts, Namespace::Net];

#[test]
fn open_checks_the_namespace_kind() {
    match NsFd::open("/proc/self/ns/uts", Namespace::Net) {
        Err(Error::WrongKind { path, expected, actual }) => {
            assert_eq!(path, Path::new("/proc/self/ns/uts"));
            assert_eq!((expected, actual), (Namespace::Net, Namespace::Uts));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert_eq!(NsFd::open("/proc/self/ns/uts", Namespace::Uts).unwrap().kind(), Namespace::Uts);
}

#[test]
fn current_and_of_pid_self_agree() {
    for kind in Namespace::ALL {
        let current = NsFd::current(kind).unwrap();
        let mine = NsFd::of_pid(std::process::id(), kind).unwrap();
        assert_eq!(current.kind(), kind);
        assert_eq!(current.id().unwrap(), mine.id().unwrap(), "{kind}");
    }
}

#[test]
fn run_in_runs_inside_the_target_and_leaves_the_caller() {
    require_root!();
    let ns = NetNs::new().unwrap();
    let target = ns.ns().id().unwrap();
    let before = current(Namespace::Net);
    assert_ne!(before, target);

    let inside = run_in(&[ns.ns()], || current(Namespace::Net)).unwrap();
    assert_eq!(inside, target);
    assert_eq!(current(Namespace::Net), before, "the caller's thread moved");
}

#[test]
fn run_in_propagates_a_panic_and_leaves_the_caller() {
    require_root!();
    let ns = NetNs::new().unwrap();
    let before = current(Namespace::Net);

    let caught = catch_unwind(AssertUnwindSafe(|| run_in(&[ns.ns()], || -> () { panic!("nk-boom inside") })));
    let payload = caught.expect_err("the panic must reach the caller");
    let msg = payload.downcast_ref::<&str>().copied().unwrap_or_default();
    assert_eq!(msg, "nk-boom inside");
    assert_eq!(current(Namespace::Net), before);

    // The namespace is still usable afterwards.
    assert_eq!(run_in(&[ns.ns()], || current(Namespace::Net)).unwrap(), ns.ns().id().unwrap());
}

#[test]
fn run_in_refuses_user_namespaces() {
    let user = NsFd::current(Namespace::User).unwrap();
    let ran = std::sync::atomic::AtomicBool::new(false);
    let result = run_in(&[&user], || ran.store(true, std::sync::atomic::Ordering::SeqCst));
    assert!(matches!(result, Err(Error::NeedsSingleThread { namespace: Namespace::User })), "{result:?}");
    assert!(!ran.into_inner());
}

#[test]
fn join_pidfd_refuses_a_user_namespace_in_a_threaded_process() {
    require_root!();
    let child = sleeper(NamespaceSet::USER, None);
    let result = on_thread(|| join_pidfd(child.pidfd(), NamespaceSet::USER));
    assert!(matches!(result, Err(Error::NeedsSingleThread { namespace: Namespace::User })), "{result:?}");
}

#[test]
fn guard_enters_uts_and_net_and_comes_back() {
    require_root!();
    let name = unique_name("host");
    let child = sleeper(NamespaceSet::UTS | NamespaceSet::NET, Some(&name));
    let (child_uts, child_net) = (of_pid(child.id(), Namespace::Uts), of_pid(child.id(), Namespace::Net));

    on_thread(|| {
        let (uts, net) = (current(Namespace::Uts), current(Namespace::Net));
        let host = hostname();
        assert_ne!(host, name);
        let targets = UTS_NET.map(|k| NsFd::of_pid(child.id(), k).unwrap());
        let guard = NsGuard::enter_all(&[&targets[0], &targets[1]]).unwrap();
        assert_eq!(hostname(), name, "gethostname inside the child's uts namespace");
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), (child_uts, child_net));
        guard.restore().unwrap();
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), (uts, net));
        assert_eq!(hostname(), host);

        // Dropping the guard comes back just the same.
        {
            let _guard = NsGuard::enter(&targets[0]).unwrap();
            assert_eq!(hostname(), name);
        }
        assert_eq!(current(Namespace::Uts), uts);
        assert_eq!(hostname(), host);
    });
}

#[test]
fn guard_comes_back_when_the_thread_panics_inside() {
    require_root!();
    let name = unique_name("pan");
    let child = sleeper(NamespaceSet::UTS | NamespaceSet::NET, Some(&name));
    let targets = UTS_NET.map(|k| NsFd::of_pid(child.id(), k).unwrap());
    let child_ids = (of_pid(child.id(), Namespace::Uts), of_pid(child.id(), Namespace::Net));

    on_thread(|| {
        let original = (current(Namespace::Uts), current(Namespace::Net));
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _guard = NsGuard::enter_all(&[&targets[0], &targets[1]]).unwrap();
            assert_eq!((current(Namespace::Uts), current(Namespace::Net)), child_ids);
            panic!("nk-boom in guard");
        }));
        assert!(caught.is_err());
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), original, "not restored after a panic");
        assert_ne!(hostname(), name);
    });
}

#[test]
fn join_pidfd_moves_into_several_namespaces_at_once() {
    require_root!();
    let name = unique_name("pfd");
    let child = sleeper(NamespaceSet::UTS | NamespaceSet::NET, Some(&name));
    let expected = (of_pid(child.id(), Namespace::Uts), of_pid(child.id(), Namespace::Net));

    on_thread(|| {
        let saved = UTS_NET.map(|k| NsFd::current(k).unwrap());
        let original = (saved[0].id().unwrap(), saved[1].id().unwrap());

        join_pidfd(child.pidfd(), NamespaceSet::UTS | NamespaceSet::NET).unwrap();
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), expected);
        assert_eq!(hostname(), name);

        // Back with the saved fds.
        for fd in &saved {
            fd.enter().unwrap();
        }
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), original);
        assert_ne!(hostname(), name);
    });
}

#[test]
fn pidfd_open_gives_a_joinable_pidfd() {
    require_root!();
    let name = unique_name("po");
    let child = sleeper(NamespaceSet::UTS | NamespaceSet::NET, Some(&name));
    let expected = (of_pid(child.id(), Namespace::Uts), of_pid(child.id(), Namespace::Net));
    let pidfd = pidfd_open(child.id()).unwrap();

    on_thread(|| {
        let saved = UTS_NET.map(|k| NsFd::current(k).unwrap());
        // A guard over what we are about to leave, to come back with.
        let guard = NsGuard::enter_all(&[&saved[0], &saved[1]]).unwrap();
        join_pidfd(std::os::fd::AsFd::as_fd(&pidfd), NamespaceSet::UTS | NamespaceSet::NET).unwrap();
        assert_eq!((current(Namespace::Uts), current(Namespace::Net)), expected);
        assert_eq!(hostname(), name);
        guard.restore().unwrap();
        assert_eq!(
            (current(Namespace::Uts), current(Namespace::Net)),
            (saved[0].id().unwrap(), saved[1].id().unwrap())
        );
    });
}

#[test]
fn join_path_enters_a_proc_namespace_file() {
    require_root!();
    let name = unique_name("jp");
    let child = sleeper(NamespaceSet::UTS, Some(&name));
    let child_uts = of_pid(child.id(), Namespace::Uts);

    on_thread(|| {
        let saved = NsFd::current(Namespace::Uts).unwrap();
        join_path(format!("/proc/{}/ns/uts", child.id()), Namespace::Uts).unwrap();
        assert_eq!(current(Namespace::Uts), child_uts);
        assert_eq!(hostname(), name);
        saved.enter().unwrap();
        assert_eq!(current(Namespace::Uts), saved.id().unwrap());
    });

    // The kind is checked before setns.
    let wrong = join_path(format!("/proc/{}/ns/uts", child.id()), Namespace::Net);
    assert!(matches!(wrong, Err(Error::WrongKind { .. })), "{wrong:?}");
}

#[test]
fn mount_namespace_join_sees_the_childs_tmpfs() {
    require_root!();
    let tmp = TempDir::new("mntjoin").unwrap();
    let target = tmp.path().to_owned();
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").namespaces(NamespaceSet::MOUNT).mount(MountStep::tmpfs(&target, Some("size=64k")));
    let mut child = cmd.spawn().unwrap();
    child.kill_on_drop(true);
    let child_mnt = NsFd::of_pid(child.id(), Namespace::Mount).unwrap();
    let child_mnt_id = child_mnt.id().unwrap();
    let own_mnt = current(Namespace::Mount);
    assert_ne!(child_mnt_id, own_mnt);
    assert_eq!(thread_fstype_at(&target), None, "the child's tmpfs leaked into our mount namespace");

    // run_in: a helper thread (the library unshares its fs context first).
    let (id, fstype) = run_in(&[&child_mnt], || (current(Namespace::Mount), thread_fstype_at(&target))).unwrap();
    assert_eq!(id, child_mnt_id);
    assert_eq!(fstype.as_deref(), Some("tmpfs"));

    // NsGuard on our own thread.
    on_thread(|| {
        {
            let _guard = NsGuard::enter(&child_mnt).unwrap();
            assert_eq!(current(Namespace::Mount), child_mnt_id);
            assert_eq!(thread_fstype_at(&target).as_deref(), Some("tmpfs"));
        }
        assert_eq!(current(Namespace::Mount), own_mnt);
        assert_eq!(thread_fstype_at(&target), None);
    });

    // The caller's view never changed.
    assert_eq!(current(Namespace::Mount), own_mnt);
    assert!(!thread_mount_points().iter().any(|p| Path::new(p) == target));
}

#[test]
fn entering_a_pid_namespace_changes_it_for_children_only() {
    require_root!();
    let child = sleeper(NamespaceSet::PID, None);
    let child_pid_ns = NsFd::of_pid(child.id(), Namespace::Pid).unwrap();
    let target = child_pid_ns.id().unwrap();

    on_thread(|| {
        let own = thread_ns("pid");
        assert_eq!(thread_ns("pid_for_children"), own);
        {
            let _guard = NsGuard::enter(&child_pid_ns).unwrap();
            assert_eq!(thread_ns("pid_for_children"), target, "setns(pid) sets pid_for_children");
            assert_eq!(thread_ns("pid"), own, "the thread itself stays in its pid namespace");
        }
        assert_eq!(thread_ns("pid_for_children"), own, "guard restores pid_for_children");
        assert_eq!(thread_ns("pid"), own);
    });
}

#[test]
fn entering_a_time_namespace_from_a_threaded_process_fails_cleanly() {
    require_root!();
    // Unlike pid, setns(time) moves the caller itself too, so the kernel demands a
    // single-threaded process (the kernel says EUSERS); nook refuses first with a typed
    // error, and the thread must be left where it was.
    let child = sleeper(NamespaceSet::TIME, None);
    let child_time = NsFd::of_pid(child.id(), Namespace::Time).unwrap();
    assert_ne!(child_time.id().unwrap(), current(Namespace::Time));

    on_thread(|| {
        let before = (thread_ns("time"), thread_ns("time_for_children"));
        let err = NsGuard::enter(&child_time).unwrap_err();
        assert!(matches!(err, Error::NeedsSingleThread { namespace: Namespace::Time }), "{err}");
        // The kernel agrees: a raw setns from this thread is refused with EUSERS.
        let raw = child_time.enter().unwrap_err();
        assert_eq!(raw.raw_os_error(), Some(libc::EUSERS), "{raw}");
        assert_eq!((thread_ns("time"), thread_ns("time_for_children")), before);
    });
}

/// A process joining another's namespaces (`Command::join`, how an exec enters a running
/// sandbox) is non-dumpable until it execs: the processes already in the sandbox cannot open
/// its `/proc/PID/exe` (the caller's binary) while it still runs the caller's image.
#[test]
fn a_joining_child_is_not_dumpable_before_exec() {
    require_root!();
    let mut target = Command::new("/bin/sleep");
    target.arg("100").namespaces(NamespaceSet::new().with(Namespace::Uts).with(Namespace::Pid));
    let mut target = target.spawn().expect("the target");
    target.kill_on_drop(true);
    let pidfd = target.pidfd().try_clone_to_owned().unwrap();
    let mut cmd = Command::new("/bin/true");
    cmd.join(pidfd, NamespaceSet::new().with(Namespace::Uts).with(Namespace::Pid));
    let hook = || {
        // SAFETY: PR_GET_DUMPABLE takes no pointer.
        match unsafe { libc::prctl(libc::PR_GET_DUMPABLE) } {
            0 => Ok(()),
            _ => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
        }
    };
    // SAFETY: the hook only makes a system call.
    unsafe { cmd.pre_exec(hook) };
    let status = cmd.status().expect("the joining child ran its hook and exec'd");
    assert!(status.success());
    target.kill().unwrap();
    target.wait().unwrap();
}

/// [`Command::join_unobserved`]: a join of a target nothing watches may start vfork-style
/// (sharing the caller's memory until exec; `clone3` into a cgroup2 directory). The child is
/// in every joined namespace (the target's host name, PID 2 of its pid namespace) and in the
/// cgroup; and the caller stays dumpable — a joining child marks itself non-dumpable when it
/// has memory of its own, and that flag belongs to the memory.
#[test]
fn an_unobserved_join_starts_in_the_cgroup_and_leaves_the_caller_dumpable() {
    require_root!();
    let Some(mount) = crate::isolation::cgroup2_mount() else {
        nook_testutil::skip(module_path!(), "no cgroup2 hierarchy mounted");
        return;
    };
    let cgroup = crate::isolation::TestCgroup::create(&mount).expect("a test cgroup");
    let dump = || {
        // SAFETY: PR_GET_DUMPABLE takes no pointer.
        unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }
    };
    assert_eq!(dump(), 1, "the test process starts dumpable");
    let set = [Namespace::Uts, Namespace::Ipc, Namespace::Net, Namespace::Mount, Namespace::Pid]
        .into_iter()
        .fold(NamespaceSet::new(), NamespaceSet::with);
    let mut target = Command::new("/bin/sleep");
    target.arg("100").namespaces(set).hostname("nk-unobserved");
    let mut target = target.spawn().expect("the target");
    target.kill_on_drop(true);
    for _ in 0..3 {
        let dir: std::os::fd::OwnedFd = std::fs::File::open(&cgroup.path).unwrap().into();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "hostname; echo $$; grep '^0::' /proc/self/cgroup"])
            .join(target.pidfd().try_clone_to_owned().unwrap(), set)
            .join_unobserved(true)
            .cgroup(dir)
            .stdout(nook_ns::Stdio::Piped);
        let out = cmd.output().expect("the joined child");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"nk-unobserved"), "{text}");
        assert_ne!(lines.get(1), Some(&"1"), "a member of the target's pid namespace, not its init: {text}");
        assert!(lines.get(1).and_then(|l| l.parse::<u32>().ok()).is_some_and(|p| p < 10), "{text}");
        assert_eq!(lines.get(2).copied(), Some(format!("0::{}", cgroup.rel).as_str()), "{text}");
        assert_eq!(dump(), 1, "the caller is still dumpable");
    }
    target.kill().unwrap();
    target.wait().unwrap();
}

/// [`Command::join_ns`]: a holder child with its own UTS, IPC and pid namespaces; a second
/// child joins all three by handle (`/proc/PID/ns/*` opened as [`NsFd`]s): same namespaces,
/// the holder's host name, and a member (not the init) of its pid namespace. The cloning
/// thread is back in its own namespaces after; a mount namespace is refused.
#[test]
fn join_ns_enters_uts_ipc_and_pid_namespaces_by_handle() {
    require_root!();
    let mut holder = Command::new("/bin/sleep");
    holder.arg("100").namespaces(NamespaceSet::new().with(Namespace::Uts).with(Namespace::Ipc).with(Namespace::Pid));
    holder.hostname("nk-holder");
    let mut holder = holder.spawn().unwrap();
    let hpid = holder.id();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "hostname; echo $$; sleep 100"]);
    for kind in [Namespace::Uts, Namespace::Ipc, Namespace::Pid] {
        cmd.join_ns(NsFd::of_pid(hpid, kind).unwrap());
    }
    cmd.stdout(nook_ns::Stdio::Piped);
    let mut child = cmd.spawn().unwrap();
    let cpid = child.id();
    for kind in [Namespace::Uts, Namespace::Ipc, Namespace::Pid] {
        assert_eq!(of_pid(cpid, kind), of_pid(hpid, kind), "{kind}");
    }
    for (kind, link) in [(Namespace::Uts, "uts"), (Namespace::Ipc, "ipc"), (Namespace::Pid, "pid_for_children")] {
        assert_ne!(thread_ns(link), of_pid(hpid, kind), "the cloning thread went back ({link})");
    }
    let mut out = child.stdout.take().unwrap();
    let mut text = String::new();
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(&mut out);
    for _ in 0..2 {
        r.read_line(&mut text).unwrap();
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "nk-holder");
    assert_ne!(lines[1], "1", "a member of the joined pid namespace, not its init");
    child.kill().unwrap();
    child.wait().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();

    // A mount namespace cannot be joined with a new user namespace (mount and time ones are
    // joined by the child: nook-oci's tests run them; a user namespace: the test below).
    let mut mnt = Command::new("/bin/true");
    mnt.join_ns(NsFd::current(Namespace::Mount).unwrap()).unshare(Namespace::User);
    assert_eq!(mnt.validate(), Err(nook_ns::ValidationError::JoinUnsupported { namespace: Namespace::Mount }));
    let mut both = Command::new("/bin/true");
    both.join_ns(NsFd::current(Namespace::Uts).unwrap()).unshare(Namespace::Uts);
    assert_eq!(both.validate(), Err(nook_ns::ValidationError::JoinAndCreate { namespace: Namespace::Uts }));
}

/// [`Command::join_ns`] of a user namespace (a pod's, held by another process, named by its
/// `/proc/PID/ns/user`): the child is root of that namespace (its mapping, not the
/// caller's), and the namespaces it creates — mount, UTS, pid — belong to it, as a pod's
/// container's do under CRI-O; the caller's thread never moved. A user namespace joined
/// together with a new one is refused.
#[test]
fn join_ns_of_a_user_namespace_creates_the_new_namespaces_in_it() {
    require_root!();
    let map = nook_ns::IdMap::single(0, 100_000, 65_536);
    let mut holder = Command::new("/bin/sleep");
    holder.arg("100").namespaces(NamespaceSet::new().with(Namespace::User)).uid_map(map.clone()).gid_map(map);
    let mut holder = holder.spawn().expect("the holder of the user namespace");
    holder.kill_on_drop(true);
    let user = NsFd::of_pid(holder.id(), Namespace::User).unwrap();
    let user_id = user.id().unwrap();
    let set = NamespaceSet::new().with(Namespace::Mount).with(Namespace::Uts).with(Namespace::Pid);
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "cat /proc/self/uid_map; id -u; echo $$; hostname; sleep 100"])
        .namespaces(set)
        .hostname("nk-pod")
        .join_ns(user.try_clone().unwrap())
        .stdout(nook_ns::Stdio::Piped);
    let mut child = cmd.spawn().expect("a child in the joined user namespace");
    child.kill_on_drop(true);
    let cpid = child.id();
    assert_eq!(of_pid(cpid, Namespace::User), user_id);
    for kind in [Namespace::Mount, Namespace::Uts, Namespace::Pid] {
        let owner = NsFd::of_pid(cpid, kind).unwrap().owner().unwrap().id().unwrap();
        assert_eq!(owner, user_id, "the new {kind} namespace belongs to the joined user namespace");
    }
    assert_ne!(thread_ns("user"), user_id, "the caller's thread never moved");
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        lines.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    assert_eq!(lines, ["0 100000 65536", "0", "1", "nk-pod"]);
    child.kill().unwrap();
    child.wait().unwrap();

    let mut twice = Command::new("/bin/true");
    twice.namespaces(Namespace::User.as_set()).join_ns(user);
    assert_eq!(twice.validate(), Err(nook_ns::ValidationError::JoinAndCreate { namespace: Namespace::User }));
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// Joining the user namespace one is in (an OCI config naming the host's, `/proc/1/ns/user`)
/// changes nothing: the child runs, in the caller's user namespace.
#[test]
fn join_ns_of_the_callers_own_user_namespace_is_a_no_op() {
    require_root!();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "id -u"]).join_ns(NsFd::current(Namespace::User).unwrap()).stdout(nook_ns::Stdio::Piped);
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}
