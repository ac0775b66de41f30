//! Inspecting namespaces against the real kernel: which namespaces a process is in, which
//! processes share one, and the ownership and nesting ioctls (`NS_GET_USERNS`,
//! `NS_GET_PARENT`, `NS_GET_OWNER_UID`).

use std::io::{BufRead, BufReader};

use nook_ns::{
    Child, Command, Namespace, NamespaceSet, NsFd, NsId, PausedChild, Stdio, differing, namespaces_of, ns_id,
    processes_in,
};
use nook_testutil::require_root;

/// A child stopped at the sync point (alive, in its new namespaces); killed and reaped when
/// the handle drops.
fn paused(set: NamespaceSet) -> PausedChild {
    Command::new("true").namespaces(set).spawn_paused().expect("spawn_paused")
}

fn current(kind: Namespace) -> NsId {
    NsFd::current(kind).unwrap().id().unwrap()
}

#[test]
fn namespaces_of_self_lists_all_eight_kinds() {
    let mine = namespaces_of(std::process::id()).unwrap();
    assert_eq!(mine.keys().copied().collect::<Vec<_>>(), Namespace::ALL);
    for (kind, id) in &mine {
        assert_eq!(*id, ns_id(std::process::id(), *kind).unwrap());
        // The `ls -l /proc/PID/ns` view: `net:[4026531840]`.
        let link = std::fs::read_link(format!("/proc/self/ns/{}", kind.proc_name())).unwrap();
        assert_eq!(link.to_str().unwrap(), format!("{kind}:{id}"));
    }
}

#[test]
fn a_container_child_differs_in_exactly_mnt_uts_ipc_pid_net() {
    require_root!();
    let child = paused(NamespaceSet::CONTAINER);
    let me = std::process::id();
    let theirs = namespaces_of(child.id()).unwrap();
    assert_eq!(theirs.len(), 8);

    let diff = differing(me, child.id()).unwrap();
    assert_eq!(diff, [Namespace::Ipc, Namespace::Uts, Namespace::Net, Namespace::Pid, Namespace::Mount]);
    let expected: Vec<Namespace> = NamespaceSet::CONTAINER.kinds().collect();
    let mut sorted = diff.clone();
    sorted.sort();
    assert_eq!(sorted, expected);

    let mine = namespaces_of(me).unwrap();
    for kind in [Namespace::User, Namespace::Cgroup, Namespace::Time] {
        assert_eq!(mine[&kind], theirs[&kind], "{kind}");
    }
    assert!(differing(me, me).unwrap().is_empty());
}

#[test]
fn processes_in_a_childs_uts_namespace_are_it_and_its_descendants() {
    require_root!();
    // A new pid namespace too: when the shell (its pid 1) is killed, the kernel kills the
    // forked `sleep` with it.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 1000 & echo forked; wait"])
        .namespaces(NamespaceSet::UTS | NamespaceSet::PID)
        .stdout(Stdio::Piped);
    let mut child: Child = cmd.spawn().unwrap();
    child.kill_on_drop(true);

    let uts = NsFd::of_pid(child.id(), Namespace::Uts).unwrap().id().unwrap();
    assert_ne!(uts, current(Namespace::Uts));

    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "forked\n");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let grandchild: u32 = children.split_whitespace().next().expect("the shell forked").parse().unwrap();

    let mut expected = vec![child.id(), grandchild];
    expected.sort_unstable();
    assert_eq!(processes_in(Namespace::Uts, uts).unwrap(), expected);
}

#[test]
fn processes_in_a_fresh_uts_namespace_is_exactly_the_child() {
    require_root!();
    let child = paused(NamespaceSet::UTS);
    let uts = NsFd::of_pid(child.id(), Namespace::Uts).unwrap().id().unwrap();
    assert_eq!(processes_in(Namespace::Uts, uts).unwrap(), [child.id()]);
}

#[test]
fn processes_in_our_own_net_namespace_includes_us() {
    let net = ns_id(std::process::id(), Namespace::Net).unwrap();
    let pids = processes_in(Namespace::Net, net).unwrap();
    assert!(pids.contains(&std::process::id()), "{pids:?}");
    assert!(pids.is_sorted());
}

#[test]
fn a_childs_user_namespace_owns_its_net_namespace_and_is_ours_child() {
    require_root!();
    let child = paused(NamespaceSet::USER | NamespaceSet::NET);
    let net = NsFd::of_pid(child.id(), Namespace::Net).unwrap();
    let user = NsFd::of_pid(child.id(), Namespace::User).unwrap();
    let our_user = current(Namespace::User);
    assert_ne!(user.id().unwrap(), our_user);

    let owner = net.owner().unwrap();
    assert_eq!(owner.kind(), Namespace::User);
    assert_eq!(owner.id().unwrap(), user.id().unwrap(), "owner of the child's net ns");

    let parent = user.parent().unwrap();
    assert_eq!(parent.kind(), Namespace::User);
    assert_eq!(parent.id().unwrap(), our_user, "parent of the child's user ns");
    assert_eq!(user.owner_uid().unwrap(), 0, "created by root");

    // Our own net namespace belongs to our user namespace.
    assert_eq!(NsFd::current(Namespace::Net).unwrap().owner().unwrap().id().unwrap(), our_user);
}

#[test]
fn a_childs_pid_namespace_has_ours_as_parent() {
    require_root!();
    let child = paused(NamespaceSet::PID);
    let pid_ns = NsFd::of_pid(child.id(), Namespace::Pid).unwrap();
    let ours = NsFd::current(Namespace::Pid).unwrap();
    assert_ne!(pid_ns.id().unwrap(), ours.id().unwrap());

    let parent = pid_ns.parent().unwrap();
    assert_eq!(parent.kind(), Namespace::Pid);
    assert_eq!(parent.id().unwrap(), ours.id().unwrap());
}

#[test]
fn parent_is_eperm_at_the_top_and_einval_for_other_kinds() {
    let user = NsFd::current(Namespace::User).unwrap();
    let err = user.parent().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let err = NsFd::current(Namespace::Pid).unwrap().parent().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let err = NsFd::current(Namespace::Net).unwrap().parent().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
}

#[test]
fn ns_id_displays_like_proc() {
    let id = NsId::new(4, 4026531840);
    assert_eq!(id.to_string(), "[4026531840]");
}
