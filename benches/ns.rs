//! The nook-ns groups: `clone_wait`, `setns_roundtrip` and `spawn_exec` (against the C
//! floor and the peers: `std::process::Command`, `unshare(1)`, `bwrap(1)`).

use std::ffi::{CStr, c_int};
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use nook_ns::{Command, Namespace, NamespaceSet, NsFd, NsGuard};

use crate::floor;
use crate::report::{Report, bench_mode, expect_exit0, expect_status, slow_group};

const TRUE: &CStr = c"/bin/true";

/// pid+mnt+ipc+uts: the set the goals are stated for.
const BASE: NamespaceSet =
    NamespaceSet::PID.union(NamespaceSet::MOUNT).union(NamespaceSet::IPC).union(NamespaceSet::UTS);

/// The `clone_wait` configurations: each kind alone, then growing combinations. Those with
/// a network namespace come last: the kernel tears network namespaces down asynchronously
/// (a `cleanup_net` worker), which keeps a CPU busy for a while after they were measured.
fn clone_configs() -> Vec<(&'static str, NamespaceSet)> {
    vec![
        ("none", NamespaceSet::new()),
        ("mnt", NamespaceSet::MOUNT),
        ("uts", NamespaceSet::UTS),
        ("ipc", NamespaceSet::IPC),
        ("pid", NamespaceSet::PID),
        ("user", NamespaceSet::USER),
        ("cgroup", NamespaceSet::CGROUP),
        ("time", NamespaceSet::TIME),
        ("pid+mnt+ipc+uts", BASE),
        ("net", NamespaceSet::NET),
        ("pid+mnt+ipc+uts+net", BASE.union(NamespaceSet::NET)),
        ("pid+mnt+ipc+uts+net+user", BASE.union(NamespaceSet::NET).union(NamespaceSet::USER)),
        ("all", NamespaceSet::all()),
    ]
}

/// Lets the asynchronous teardown of the network namespaces measured before finish, so it
/// does not run during the next measurement (only when measuring, not in test mode).
fn settle() {
    if bench_mode() {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// A nook command whose child runs the whole spawn path, then `_exit(0)` instead of exec.
fn nook_exit0(set: NamespaceSet) -> Command {
    let mut cmd = Command::new("/bin/true");
    cmd.namespaces(set);
    // SAFETY: the hook only calls `_exit`, which is async-signal-safe and does not allocate.
    unsafe {
        cmd.pre_exec(|| -> std::io::Result<()> { libc::_exit(0) });
    }
    cmd
}

fn run_nook(cmd: &mut Command) {
    let status = cmd.status().expect("nook spawn");
    assert!(status.success(), "nook child: {status}");
}

/// Group 1: clone + wait, nook vs the C floor, per kind and combined; fork+wait baseline.
pub(crate) fn clone_wait(c: &mut Criterion, report: &mut Report) {
    let mut g = slow_group(c, "clone_wait");
    expect_exit0("fork_wait", floor::fork_wait());
    g.bench_function("fork_wait", |b| b.iter(|| expect_exit0("fork_wait", black_box(floor::fork_wait()))));
    report.singles.push(("clone_wait", "fork_wait".into()));
    for (name, set) in clone_configs() {
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        let mut cmd = nook_exit0(set);
        run_nook(&mut cmd);
        expect_exit0(name, floor::clone_wait(set));
        g.bench_with_input(BenchmarkId::new("nook", name), &set, |b, _| b.iter(|| run_nook(&mut cmd)));
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        g.bench_with_input(BenchmarkId::new("c_floor", name), &set, |b, &set| {
            b.iter(|| expect_exit0(name, black_box(floor::clone_wait(set))))
        });
        report.pair("clone_wait", name, format!("nook/{name}"), format!("c_floor/{name}"));
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        report.interleave(|| run_nook(&mut cmd), || expect_exit0(name, floor::clone_wait(set)));
        // nook's vfork-style path (no hook): the child execs a missing file and exits 127
        // after reporting ENOENT, against C doing the same with clone(CLONE_VM|CLONE_VFORK).
        if name == "none" || set == BASE {
            let mut missing = Command::new(MISSING.to_str().expect("UTF-8"));
            missing.namespaces(set);
            run_nook_enoent(&mut missing);
            expect_status(name, floor::vfork_exec_wait(set, MISSING), 127 << 8);
            g.bench_with_input(BenchmarkId::new("nook_vfork", name), &set, |b, _| {
                b.iter(|| run_nook_enoent(&mut missing))
            });
            g.bench_with_input(BenchmarkId::new("c_vfork", name), &set, |b, &set| {
                b.iter(|| expect_status(name, black_box(floor::vfork_exec_wait(set, MISSING)), 127 << 8))
            });
            report.pair(
                "clone_wait",
                format!("{name}, vfork path (exec → ENOENT)"),
                format!("nook_vfork/{name}"),
                format!("c_vfork/{name}"),
            );
            report.interleave(
                || run_nook_enoent(&mut missing),
                || expect_status(name, floor::vfork_exec_wait(set, MISSING), 127 << 8),
            );
        }
    }
    g.finish();
}

/// A path that does not exist: exec fails with ENOENT.
const MISSING: &CStr = c"/nonexistent/nk-missing";

/// Runs a nook command whose exec must fail with ENOENT (the child is reaped by nook).
fn run_nook_enoent(cmd: &mut Command) {
    match cmd.status() {
        Err(nook_ns::Error::Spawn(e)) if e.stage == nook_ns::Stage::Exec && e.errno == libc::ENOENT => {}
        other => panic!("expected ENOENT at exec, got {other:?}"),
    }
}

/// The path naming the calling thread's namespace of `kind` in the form `setns` changes:
/// for pid and time that is the namespace for children.
fn own_ns_path(kind: Namespace) -> String {
    match kind {
        Namespace::Pid => "/proc/thread-self/ns/pid_for_children".into(),
        Namespace::Time => "/proc/thread-self/ns/time_for_children".into(),
        _ => format!("/proc/thread-self/ns/{}", kind.proc_name()),
    }
}

fn own_ns(kind: Namespace) -> NsFd {
    NsFd::open(own_ns_path(kind), kind).expect("open own namespace")
}

/// Group 2: setns into a holder's namespace and back: `NsGuard::enter` + drop, a pair of
/// `NsFd::enter` calls on already open fds, and the C floor (two `setns` calls).
///
/// Runs on criterion's (main) thread: entering a time namespace needs a single-threaded
/// process, and a mount namespace needs an unshared fs context (the first `NsGuard` does
/// `unshare(CLONE_FS)`, a no-op for a single-threaded process). This bench process does
/// nothing else, so moving its main thread for a few microseconds is harmless; `NsGuard`
/// aborts the process if it cannot come back. A raw `setns` into a mount namespace moves
/// the working directory to its root (`NsGuard` takes it back), so it is restored after
/// each kind. A user namespace cannot be left again (`setns` back into the parent user namespace
/// needs `CAP_SYS_ADMIN` there), so it is not measured.
pub(crate) fn setns_roundtrip(c: &mut Criterion, report: &mut Report) {
    let cwd = std::env::current_dir().expect("working directory");
    let mut holder = Command::new("/bin/sleep");
    holder.arg("infinity").namespaces(NamespaceSet::all().without(Namespace::User)).kill_with_parent(libc::SIGKILL);
    let mut child = holder.spawn().expect("spawn the namespace holder");
    child.kill_on_drop(true);
    settle();

    let mut g = c.benchmark_group("setns_roundtrip");
    for kind in [
        Namespace::Net,
        Namespace::Uts,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Cgroup,
        Namespace::Time,
        Namespace::Pid,
    ] {
        let name = kind.proc_name();
        let target = NsFd::of_pid(child.id(), kind).expect("open holder namespace");
        let orig = own_ns(kind);
        let before = orig.id().expect("id");
        assert_ne!(target.id().expect("id"), before, "{name}: the holder must be in its own namespace");
        {
            let _inside = NsGuard::enter(&target).expect("NsGuard::enter");
            assert_eq!(own_ns(kind).id().expect("id"), target.id().expect("id"), "{name}: entered");
        }
        assert_eq!(own_ns(kind).id().expect("id"), before, "{name}: came back");
        assert_eq!(std::env::current_dir().ok(), Some(cwd.clone()), "{name}: same working directory");
        let nstype = kind.clone_flag() as c_int;
        let (tfd, ofd) = (target.as_fd().as_raw_fd(), orig.as_fd().as_raw_fd());
        expect_exit0(name, floor::setns_roundtrip(tfd, ofd, nstype));

        g.bench_function(BenchmarkId::new("nook_guard", name), |b| {
            b.iter(|| drop(black_box(NsGuard::enter(&target).expect("NsGuard::enter"))))
        });
        g.bench_function(BenchmarkId::new("nook_nsfd", name), |b| {
            b.iter(|| {
                target.enter().expect("enter");
                orig.enter().expect("come back");
            })
        });
        g.bench_function(BenchmarkId::new("c_floor", name), |b| {
            b.iter(|| expect_exit0(name, black_box(floor::setns_roundtrip(tfd, ofd, nstype))))
        });
        assert_eq!(own_ns(kind).id().expect("id"), before, "{name}: came back after the bench");
        let c_floor = || expect_exit0(name, floor::setns_roundtrip(tfd, ofd, nstype));
        report.pair(
            "setns_roundtrip",
            format!("{name} (NsGuard)"),
            format!("nook_guard/{name}"),
            format!("c_floor/{name}"),
        );
        report.interleave(|| drop(NsGuard::enter(&target).expect("NsGuard::enter")), c_floor);
        report.pair(
            "setns_roundtrip",
            format!("{name} (NsFd::enter ×2)"),
            format!("nook_nsfd/{name}"),
            format!("c_floor/{name}"),
        );
        report.interleave(
            || {
                target.enter().expect("enter");
                orig.enter().expect("come back");
            },
            c_floor,
        );
        std::env::set_current_dir(&cwd).expect("restore the working directory");
    }
    g.finish();
    drop(child);
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_std(cmd: &mut std::process::Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?}: {status}");
}

/// Group 3: spawn `/bin/true` and wait: nook against `std::process::Command`, the C floor
/// (fork-style clone3 and vfork-style clone), `unshare -fpmiu` and (when installed) bwrap.
/// Rows without a user namespace take nook's vfork-style path; `+user` takes the
/// fork-semantics path with the sync point (the parent writes the id maps).
pub(crate) fn spawn_exec(c: &mut Criterion, report: &mut Report) {
    let mut g = slow_group(c, "spawn_exec");
    let base = "pid+mnt+ipc+uts";
    let user = "pid+mnt+ipc+uts+user";
    let base_user = BASE.union(NamespaceSet::USER);

    let mut std_cmd = std::process::Command::new("/bin/true");
    run_std(&mut std_cmd);
    g.bench_function(BenchmarkId::new("std_command", "none"), |b| b.iter(|| run_std(&mut std_cmd)));
    expect_exit0("fork_exec", floor::fork_exec_wait(TRUE));
    g.bench_function(BenchmarkId::new("c_fork_exec", "none"), |b| {
        b.iter(|| expect_exit0("fork_exec", black_box(floor::fork_exec_wait(TRUE))))
    });
    expect_exit0("vfork_exec", floor::vfork_exec_wait(NamespaceSet::new(), TRUE));
    g.bench_function(BenchmarkId::new("c_vfork", "none"), |b| {
        b.iter(|| expect_exit0("vfork_exec", black_box(floor::vfork_exec_wait(NamespaceSet::new(), TRUE))))
    });
    let mut nook_plain = Command::new("/bin/true");
    run_nook(&mut nook_plain);
    g.bench_function(BenchmarkId::new("nook", "none"), |b| b.iter(|| run_nook(&mut nook_plain)));

    let mut nook_ns = Command::new("/bin/true");
    nook_ns.namespaces(BASE);
    run_nook(&mut nook_ns);
    g.bench_function(BenchmarkId::new("nook", base), |b| b.iter(|| run_nook(&mut nook_ns)));
    expect_exit0("clone_exec", floor::clone_exec_wait(BASE, TRUE));
    g.bench_function(BenchmarkId::new("c_floor", base), |b| {
        b.iter(|| expect_exit0("clone_exec", black_box(floor::clone_exec_wait(BASE, TRUE))))
    });
    expect_exit0("vfork_exec", floor::vfork_exec_wait(BASE, TRUE));
    g.bench_function(BenchmarkId::new("c_vfork", base), |b| {
        b.iter(|| expect_exit0("vfork_exec", black_box(floor::vfork_exec_wait(BASE, TRUE))))
    });
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["-fpmiu", "/bin/true"]);
    run_std(&mut unshare);
    g.bench_function(BenchmarkId::new("unshare_fpmiu", base), |b| b.iter(|| run_std(&mut unshare)));
    let mut bwrap = have("bwrap").then(|| {
        let mut bwrap = std::process::Command::new("bwrap");
        bwrap.args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--bind", "/", "/", "/bin/true"]);
        run_std(&mut bwrap);
        bwrap
    });
    if let Some(bwrap) = bwrap.as_mut() {
        g.bench_function(BenchmarkId::new("bwrap", base), |b| b.iter(|| run_std(bwrap)));
    } else {
        eprintln!("spawn_exec: bwrap not installed, peer skipped");
    }

    // Hardening on top of the same namespaces: a Docker-sized capability set, no_new_privs
    // and a small seccomp filter (the filter is compiled once and shared by every spawn).
    let hardened_name = format!("{base}+caps+nnp+seccomp");
    let mut nook_hardened = hardened(BASE);
    run_nook(&mut nook_hardened);
    g.bench_function(BenchmarkId::new("nook", &hardened_name), |b| b.iter(|| run_nook(&mut nook_hardened)));

    let mut nook_user = Command::new("/bin/true");
    nook_user.namespaces(base_user);
    run_nook(&mut nook_user);
    g.bench_function(BenchmarkId::new("nook", user), |b| b.iter(|| run_nook(&mut nook_user)));
    expect_exit0("clone_exec", floor::clone_exec_wait(base_user, TRUE));
    g.bench_function(BenchmarkId::new("c_floor", user), |b| {
        b.iter(|| expect_exit0("clone_exec", black_box(floor::clone_exec_wait(base_user, TRUE))))
    });
    g.finish();

    let r = report;
    let base_c = || expect_exit0("clone_exec", floor::clone_exec_wait(BASE, TRUE));
    let base_v = || expect_exit0("vfork_exec", floor::vfork_exec_wait(BASE, TRUE));
    r.pair("spawn_exec", "nook vs std::process::Command (no namespaces)", "nook/none", "std_command/none");
    r.interleave(|| run_nook(&mut nook_plain), || run_std(&mut std_cmd));
    r.pair("spawn_exec", "nook vs C fork+exec (no namespaces)", "nook/none", "c_fork_exec/none");
    r.interleave(|| run_nook(&mut nook_plain), || expect_exit0("fork_exec", floor::fork_exec_wait(TRUE)));
    r.pair("spawn_exec", "nook vs C vfork+exec (no namespaces)", "nook/none", "c_vfork/none");
    r.interleave(
        || run_nook(&mut nook_plain),
        || expect_exit0("vfork_exec", floor::vfork_exec_wait(NamespaceSet::new(), TRUE)),
    );
    r.pair(
        "spawn_exec",
        format!("nook {base} vs std::process::Command (none)"),
        format!("nook/{base}"),
        "std_command/none",
    );
    r.interleave(|| run_nook(&mut nook_ns), || run_std(&mut std_cmd));
    r.pair(
        "spawn_exec",
        format!("nook {base} vs C clone3+exec {base}"),
        format!("nook/{base}"),
        format!("c_floor/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), base_c);
    r.pair(
        "spawn_exec",
        format!("nook {base} vs C vfork+exec {base}"),
        format!("nook/{base}"),
        format!("c_vfork/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), base_v);
    r.pair(
        "spawn_exec",
        format!("nook {base} vs unshare -fpmiu"),
        format!("nook/{base}"),
        format!("unshare_fpmiu/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), || run_std(&mut unshare));
    if let Some(bwrap) = bwrap.as_mut() {
        r.pair("spawn_exec", format!("nook {base} vs bwrap"), format!("nook/{base}"), format!("bwrap/{base}"));
        r.interleave(|| run_nook(&mut nook_ns), || run_std(bwrap));
    }
    r.pair(
        "spawn_exec",
        format!("nook {user} vs C clone3+exec {user}"),
        format!("nook/{user}"),
        format!("c_floor/{user}"),
    );
    r.interleave(|| run_nook(&mut nook_user), || expect_exit0("clone_exec", floor::clone_exec_wait(base_user, TRUE)));
    r.pair(
        "spawn_exec",
        format!("nook {hardened_name} vs nook {base} (hardening's cost)"),
        format!("nook/{hardened_name}"),
        format!("nook/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_hardened), || run_nook(&mut nook_ns));
}

/// `/bin/true` in `set` with Docker's default capability set (bounding, effective,
/// permitted, inheritable), no_new_privs and a seccomp filter of a dozen instructions that
/// returns `EPERM` for a few syscalls `/bin/true` does not make.
fn hardened(set: NamespaceSet) -> Command {
    use nook_ns::seccomp::SeccompProgram;
    use nook_ns::{CapSet, Capabilities, Capability as C};

    let docker: CapSet = [
        C::Chown,
        C::DacOverride,
        C::Fsetid,
        C::Fowner,
        C::Mknod,
        C::NetRaw,
        C::Setgid,
        C::Setuid,
        C::Setfcap,
        C::Setpcap,
        C::NetBindService,
        C::SysChroot,
        C::Kill,
        C::AuditWrite,
    ]
    .into_iter()
    .collect();
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |nr: libc::c_long, to_deny: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: to_deny,
        jf: 0,
        k: nr as u32,
    };
    let denied = [libc::SYS_kexec_load, libc::SYS_init_module, libc::SYS_finit_module, libc::SYS_bpf, libc::SYS_ptrace];
    let mut filter = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0)];
    for (i, nr) in denied.iter().enumerate() {
        filter.push(jeq(*nr, (denied.len() - i) as u8));
    }
    filter.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    filter.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
    let mut cmd = Command::new("/bin/true");
    cmd.namespaces(set)
        .capabilities(Capabilities::only(docker))
        .no_new_privs(true)
        .seccomp(SeccompProgram::new(filter));
    cmd
}
