//! Integration tests of the spawn core against the real kernel: thread safety, typed errors,
//! the clone(2) fallback, `CLONE_INTO_CGROUP`, the child handles, id maps and stdio.
//!
//! Fd accounting: the test harness runs these tests as threads of one process, so the fd
//! table is shared. Every test takes [`shared`] for its whole run; the two tests that compare
//! fd tables take [`exclusive`] while they look at it. Because each test closes what it
//! opened before it releases its shared guard, the table seen under the exclusive guard is
//! the quiescent one, and a difference is a real leak (of the test under check or any other).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::time::Duration;

use nook_ns::{
    Command, Error, IdKind, IdMap, IdMapping, MountStep, Namespace, NamespaceSet, SetGroups, SpawnError, Stage, Stdio,
    ValidationError, ns_id, pidfd_open,
};
use nook_testutil::{TempDir, require_root, unique_name};

static FD_TABLE: RwLock<()> = RwLock::new(());

/// Held by every test for its whole run.
fn shared() -> RwLockReadGuard<'static, ()> {
    FD_TABLE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while a test reads the fd table: no other test is running then.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_TABLE.write().unwrap_or_else(PoisonError::into_inner)
}

/// The process's open fds and what they point to.
fn fd_table() -> BTreeMap<i32, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        // The fd of read_dir itself is gone by the time we readlink it.
        if let Ok(target) = fs::read_link(entry.path()) {
            out.insert(fd, target);
        }
    }
    out
}

/// The process's children that were not reaped yet (live or zombie), over all threads.
fn unreaped_children() -> Vec<u32> {
    let mut out = Vec::new();
    for task in fs::read_dir("/proc/self/task").unwrap() {
        let text = fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    }
    out
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    cmd
}

fn stdout_of(cmd: &mut Command) -> String {
    nook_testutil::success_stdout(cmd.output().unwrap())
}

fn spawn_error(result: nook_ns::Result<impl std::fmt::Debug>) -> SpawnError {
    match result {
        Err(Error::Spawn(e)) => e,
        other => panic!("expected a SpawnError, got {other:?}"),
    }
}

/// Whether `pidfd` polls readable within `timeout_ms` (the process exited).
fn pidfd_readable(pidfd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: pfd is one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// `pidfd_send_signal` on a pidfd the test opened itself.
fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> std::io::Result<()> {
    // SAFETY: integer arguments and a null siginfo.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0u32)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Reaps our child behind `pidfd` (`waitid(P_PIDFD)`).
fn pidfd_reap(pidfd: BorrowedFd<'_>) {
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: zeroed siginfo_t is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out-parameter; the pidfd is live.
    let rc = unsafe { libc::waitid(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED) };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
}

/// The state letter and ppid from `/proc/PID/stat`, or None when the process is gone.
fn state_and_ppid(pid: u32) -> Option<(char, u32)> {
    use procfs_core::FromRead;
    let stat = procfs_core::process::Stat::from_read(fs::File::open(format!("/proc/{pid}/stat")).ok()?).ok()?;
    Some((stat.state, stat.ppid as u32))
}

// ---------------------------------------------------------------------------------------
// Thread safety

/// Allocates and frees blocks of many sizes (small bins to mmap-sized) until `stop`.
fn churn(stop: &AtomicBool, seed: usize) -> usize {
    const SIZES: [usize; 8] = [1, 24, 100, 700, 4096, 33_000, 200_000, 1 << 20];
    let mut live: Vec<Box<[u8]>> = Vec::new();
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        let i = seed.wrapping_mul(31).wrapping_add(rounds);
        live.push(vec![i as u8; SIZES[i % SIZES.len()]].into_boxed_slice());
        let mut s = String::new();
        for j in 0..(i % 50) {
            s.push_str(&format!("{j}-{i};"));
        }
        let v: Vec<String> = s.split(';').map(str::to_owned).collect();
        std::hint::black_box(&v);
        if live.len() > 64 {
            live.drain(..32);
        }
        rounds += 1;
    }
    rounds
}

/// 8 threads spawn 500 children in total while 3 threads churn the allocator.
fn spawn_storm() {
    const THREADS: usize = 8;
    const TOTAL: usize = 500;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let churners: Vec<_> = (0..3).map(|k| s.spawn(move || churn(stop, k))).collect();
        let spawners: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut done = 0;
                    for i in (t..TOTAL).step_by(THREADS) {
                        let mut cmd = Command::new("/bin/true");
                        cmd.namespaces(NamespaceSet::new().with(Namespace::Uts).with(Namespace::Ipc));
                        let mut child = if i % 4 == 0 {
                            let paused = cmd.spawn_paused().unwrap();
                            // Allocate while the child waits at the sync point.
                            std::hint::black_box(vec![0u8; 4096 * (i % 7 + 1)]);
                            paused.resume().unwrap()
                        } else {
                            cmd.spawn().unwrap()
                        };
                        let status = child.wait().unwrap();
                        assert!(status.success(), "child {i}: {status:?}");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let results: Vec<_> = spawners.into_iter().map(|h| h.join()).collect();
        stop.store(true, Ordering::Relaxed);
        let churned: usize = churners.into_iter().map(|h| h.join().unwrap()).sum();
        let spawned: usize = results.into_iter().map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p))).sum();
        assert_eq!(spawned, TOTAL);
        assert!(churned > 0);
    });
}

#[test]
fn concurrent_spawns_under_allocator_churn_neither_deadlock_nor_leak_fds() {
    require_root!();
    let before = {
        let _x = exclusive();
        fd_table()
    };
    {
        let _g = shared();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            spawn_storm();
            let _ = done_tx.send(());
        });
        let deadline = Duration::from_secs(120) * nook_testutil::time_factor();
        match done_rx.recv_timeout(deadline) {
            Ok(()) => worker.join().unwrap(),
            // The worker panicked (dropping the sender): show its panic.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("500 spawns did not finish in {deadline:?}: deadlock?")
            }
        }
    }
    let after = {
        let _x = exclusive();
        fd_table()
    };
    assert_eq!(before, after, "fd table changed: a leak");
}

// ---------------------------------------------------------------------------------------
// Typed errors

#[test]
fn bad_input_is_a_typed_error_before_any_syscall() {
    type Check = fn(&ValidationError) -> bool;
    let mut cases: Vec<(&str, Command, Check)> = Vec::new();

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::User)
        .uid_map(IdMap::new().with(IdMapping::new(0, 100_000, 10)).with(IdMapping::new(5, 200_000, 10)));
    cases.push(("uid ranges overlap inside", c, |e| {
        matches!(e, ValidationError::IdMapOverlap { kind: IdKind::Uid, side: "inside", .. })
    }));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::User)
        .gid_map(IdMap::new().with(IdMapping::new(0, 100_000, 10)).with(IdMapping::new(10, 100_005, 10)));
    cases.push(("gid ranges overlap outside", c, |e| {
        matches!(e, ValidationError::IdMapOverlap { kind: IdKind::Gid, side: "outside", .. })
    }));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::Uts).hostname("h".repeat(65));
    cases.push(("hostname of 65 bytes", c, |e| *e == ValidationError::HostnameTooLong { len: 65 }));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::Uts).domainname("d".repeat(100));
    cases.push(("domain name of 100 bytes", c, |e| *e == ValidationError::DomainnameTooLong { len: 100 }));

    let mut c = Command::new("/bin/true");
    c.arg("ok").arg("a\0b");
    cases.push(("NUL in an argument", c, |e| matches!(e, ValidationError::NulByte { field: "argument", .. })));

    let mut c = Command::new("/bin/true");
    c.env("NK_VAR", "x\0y");
    cases.push(("NUL in an env value", c, |e| matches!(e, ValidationError::NulByte { field: "environment", .. })));

    let mut c = Command::new("/bin/true");
    c.env("NK\0VAR", "x");
    cases.push(("NUL in an env name", c, |e| matches!(e, ValidationError::NulByte { field: "environment", .. })));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::Mount).mount(MountStep::tmpfs("relative/tmp", None));
    cases.push((
        "relative mount target",
        c,
        |e| matches!(e, ValidationError::RelativePath { path, .. } if path == Path::new("relative/tmp")),
    ));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::Ipc).hostname("nk-host");
    cases.push(("hostname without a UTS namespace", c, |e| {
        matches!(e, ValidationError::NeedsNamespace { namespace: Namespace::Uts, setting: "hostname" })
    }));

    let mut c = Command::new("/bin/true");
    c.uid_map(IdMap::root_to(100_000));
    cases.push(("uid map without a user namespace", c, |e| {
        matches!(e, ValidationError::NeedsNamespace { namespace: Namespace::User, .. })
    }));

    let mut c = Command::new("/bin/true");
    c.unshare(Namespace::User).uid_map(IdMap::new());
    cases.push(("empty uid map", c, |e| matches!(e, ValidationError::IdMapEmpty { kind: IdKind::Uid })));

    // Exclusive: no other test opens fds or creates children while we compare.
    let _x = exclusive();
    let fds = fd_table();
    let children = unreaped_children();
    for (what, mut cmd, check) in cases {
        let e = cmd.validate().expect_err(what);
        assert!(check(&e), "{what}: validate gave {e:?}");
        for (call, result) in [
            ("spawn", cmd.spawn().map(drop)),
            ("spawn_paused", cmd.spawn_paused().map(drop)),
            ("status", cmd.status().map(drop)),
            ("output", cmd.output().map(drop)),
        ] {
            match result {
                Err(Error::Invalid(e)) => assert!(check(&e), "{what}: {call} gave {e:?}"),
                other => panic!("{what}: {call} gave {other:?}, not Error::Invalid"),
            }
        }
        // No pipe, socket or pidfd was opened, no child was left behind.
        assert_eq!(fd_table(), fds, "{what}: the fd table changed");
        assert_eq!(unreaped_children(), children, "{what}: a child was created");
    }
}

#[test]
fn kill_with_parent_rejects_bad_signals() {
    let _g = shared();
    for signal in [0, -1, 65] {
        let mut cmd = Command::new("/bin/true");
        cmd.kill_with_parent(signal);
        assert_eq!(cmd.validate(), Err(ValidationError::BadSignal { signal }));
        match cmd.spawn() {
            Err(Error::Invalid(ValidationError::BadSignal { signal: s })) => assert_eq!(s, signal),
            other => panic!("signal {signal}: {other:?}"),
        }
    }
}

#[test]
fn kill_with_parent_kills_child_when_spawning_thread_exits() {
    require_root!();
    let _g = shared();
    let mut child = std::thread::spawn(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000").kill_with_parent(libc::SIGKILL);
        let mut child = cmd.spawn().unwrap();
        child.kill_on_drop(true);
        child
    })
    .join()
    .unwrap();
    // The thread that spawned it is gone: PR_SET_PDEATHSIG fires.
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

#[test]
fn missing_program_fails_at_exec_with_enoent() {
    require_root!();
    let _g = shared();
    let e = spawn_error(Command::new("/nonexistent/nk-no-such-program").spawn());
    assert_eq!((e.stage, e.errno), (Stage::Exec, libc::ENOENT), "{e}");
    let e = spawn_error(Command::new("nk-no-such-program").spawn());
    assert_eq!((e.stage, e.errno), (Stage::Exec, libc::ENOENT), "{e}");
    // The same in new namespaces.
    let e = spawn_error(Command::new("/nonexistent/nk-x").namespaces(NamespaceSet::CONTAINER).spawn());
    assert_eq!(e, SpawnError::new(Stage::Exec, libc::ENOENT, None));
}

#[test]
fn path_search_finds_program_by_name() {
    require_root!();
    let _g = shared();
    let status = Command::new("true").env("PATH", "/nonexistent-nk:/usr/bin:/bin").status().unwrap();
    assert!(status.success());
    // Only found through PATH: with a PATH that lacks it, the same name fails.
    let e = spawn_error(Command::new("true").env("PATH", "/nonexistent-nk").spawn());
    assert_eq!((e.stage, e.errno), (Stage::Exec, libc::ENOENT));
}

#[test]
fn non_executable_file_fails_with_eacces() {
    require_root!();
    let _g = shared();
    let dir = TempDir::new("noexec").unwrap();
    let script = dir.join("script");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let e = spawn_error(Command::new(&script).spawn());
    assert_eq!((e.stage, e.errno), (Stage::Exec, libc::EACCES), "{e}");
    // Found through PATH: EACCES is remembered over the later ENOENT candidates.
    let e =
        spawn_error(Command::new("script").env("PATH", format!("{}:/nonexistent-nk", dir.path().display())).spawn());
    assert_eq!((e.stage, e.errno), (Stage::Exec, libc::EACCES), "{e}");
}

#[test]
fn missing_working_directory_fails_at_chdir() {
    require_root!();
    let _g = shared();
    let e = spawn_error(Command::new("/bin/true").current_dir("/nonexistent/nk-dir").spawn());
    assert_eq!((e.stage, e.errno), (Stage::Chdir, libc::ENOENT), "{e}");
}

// ---------------------------------------------------------------------------------------
// clone(2) fallback and CLONE_INTO_CGROUP

#[test]
fn clone2_fallback_creates_new_namespaces() {
    require_root!();
    let _g = shared();
    let mut cmd = sh("echo $$ $(hostname); readlink /proc/self/ns/ipc");
    cmd.force_clone2(true).namespaces(NamespaceSet::CONTAINER).hostname("nk-clone2").mount(MountStep::proc("/proc"));
    let out = stdout_of(&mut cmd);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1 nk-clone2"), "{out}");
    let my_ipc = fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_ne!(lines.next().map(PathBuf::from), Some(my_ipc), "{out}");
}

/// A cgroup2 directory below the test process's own cgroup, removed on drop.
struct TestCgroup {
    path: PathBuf,
    /// As `/proc/PID/cgroup` names it (`0::<name>`).
    name: String,
}

impl TestCgroup {
    fn create() -> Option<TestCgroup> {
        use procfs_core::FromRead;
        use procfs_core::ProcessCGroups;
        use procfs_core::process::MountInfos;
        let mounts = MountInfos::from_read(fs::File::open("/proc/self/mountinfo").unwrap()).unwrap();
        let mount = mounts.into_iter().find(|m| m.fs_type == "cgroup2")?.mount_point;
        let groups = ProcessCGroups::from_read(fs::File::open("/proc/self/cgroup").unwrap()).unwrap();
        let own = groups.into_iter().find(|g| g.hierarchy == 0)?.pathname;
        let leaf = unique_name("cg");
        let name = if own == "/" { format!("/{leaf}") } else { format!("{own}/{leaf}") };
        let path = mount.join(name.trim_start_matches('/'));
        fs::create_dir(&path).unwrap();
        Some(TestCgroup { path, name })
    }

    fn open(&self) -> OwnedFd {
        fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(&self.path).unwrap().into()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

fn child_cgroup2_line(force_clone2: bool) {
    require_root!();
    let _g = shared();
    let Some(cg) = TestCgroup::create() else {
        nook_testutil::skip(module_path!(), "no cgroup2 mount");
        return;
    };
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/cgroup").force_clone2(force_clone2).cgroup(cg.open());
    let out = stdout_of(&mut cmd);
    let line = out.lines().find(|l| l.starts_with("0::")).unwrap();
    assert_eq!(line, format!("0::{}", cg.name), "{out}");
    // Only the reaped child was in it.
    assert_eq!(fs::read_to_string(cg.path.join("cgroup.procs")).unwrap(), "");
}

#[test]
fn clone_into_cgroup_creates_child_in_cgroup() {
    child_cgroup2_line(false);
}

#[test]
fn clone2_fallback_places_child_in_cgroup() {
    child_cgroup2_line(true);
}

/// A directory below the test process's own cgroup in the v1 hierarchy of `controller`,
/// removed on drop; `None` where no such v1 hierarchy is mounted.
struct TestCgroupV1 {
    path: PathBuf,
    /// As `/proc/PID/cgroup` names it (`N:controller:<name>`).
    line: String,
}

impl TestCgroupV1 {
    fn create(controller: &str) -> Option<TestCgroupV1> {
        use procfs_core::FromRead;
        use procfs_core::ProcessCGroups;
        use procfs_core::process::MountInfos;
        let mounts = MountInfos::from_read(fs::File::open("/proc/self/mountinfo").unwrap()).unwrap();
        let mount =
            mounts.into_iter().find(|m| m.fs_type == "cgroup" && m.super_options.keys().any(|k| k == controller))?;
        let groups = ProcessCGroups::from_read(fs::File::open("/proc/self/cgroup").unwrap()).unwrap();
        let own = groups.into_iter().find(|g| g.controllers.iter().any(|c| c == controller))?;
        let leaf = unique_name("cg");
        let name = if own.pathname == "/" { format!("/{leaf}") } else { format!("{}/{leaf}", own.pathname) };
        let path = mount.mount_point.join(name.trim_start_matches('/'));
        fs::create_dir(&path).unwrap();
        Some(TestCgroupV1 { path, line: format!("{}:{}:{name}", own.hierarchy, own.controllers.join(",")) })
    }

    fn tasks(&self) -> OwnedFd {
        fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(self.path.join("tasks")).unwrap().into()
    }
}

impl Drop for TestCgroupV1 {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(e) = fs::remove_dir(&self.path)
        {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// `Command::cgroup_v1`: the child moves itself into the v1 directories (and, with the
/// cgroup2 directory, is born there), before it makes its namespaces: its new cgroup
/// namespace is rooted there.
#[test]
fn child_moves_itself_into_v1_cgroups_where_v1_is_mounted() {
    require_root!();
    let _g = shared();
    let (Some(pids), Some(memory)) = (TestCgroupV1::create("pids"), TestCgroupV1::create("memory")) else {
        nook_testutil::skip_unsupported(module_path!(), "no v1 pids and memory hierarchies (pure cgroup v2 host)");
        return;
    };
    let v2 = TestCgroup::create();
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/cgroup").cgroup_v1(pids.tasks()).cgroup_v1(memory.tasks());
    if let Some(v2) = &v2 {
        cmd.cgroup(v2.open());
    }
    let out = stdout_of(&mut cmd);
    assert!(out.lines().any(|l| l == pids.line), "{out}\nwant {}", pids.line);
    assert!(out.lines().any(|l| l == memory.line), "{out}\nwant {}", memory.line);
    if let Some(v2) = &v2 {
        assert!(out.lines().any(|l| l == format!("0::{}", v2.name)), "{out}");
    }
    // In a new cgroup namespace (and pid and user namespaces) made after the move, the
    // child's cgroups are the namespace's roots.
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/cgroup")
        .namespaces(NamespaceSet::new().with(Namespace::Cgroup).with(Namespace::Pid).with(Namespace::Mount))
        .cgroup_v1(pids.tasks());
    let out = stdout_of(&mut cmd);
    let prefix = pids.line.split(':').take(2).collect::<Vec<_>>().join(":");
    assert!(out.lines().any(|l| l == format!("{prefix}:/")), "{out}");
    // Only the reaped children were in them.
    assert_eq!(fs::read_to_string(pids.path.join("cgroup.procs")).unwrap(), "");
}

/// A move the kernel refuses comes back as `Stage::CgroupV1` naming the file's index.
#[test]
fn failed_v1_cgroup_move_names_the_stage_and_file_where_v1_is_mounted() {
    require_root!();
    let _g = shared();
    let (Some(good), Some(gone)) = (TestCgroupV1::create("pids"), TestCgroupV1::create("pids")) else {
        nook_testutil::skip_unsupported(module_path!(), "no v1 pids hierarchy (pure cgroup v2 host)");
        return;
    };
    let stale = gone.tasks();
    fs::remove_dir(&gone.path).unwrap();
    let mut cmd = Command::new("true");
    cmd.cgroup_v1(good.tasks()).cgroup_v1(stale);
    let err = cmd.spawn().unwrap_err();
    let Error::Spawn(e) = &err else { panic!("{err:?}") };
    assert_eq!((e.stage, e.step), (Stage::CgroupV1, Some(1)), "{err}");
    assert_eq!(fs::read_to_string(good.path.join("cgroup.procs")).unwrap(), "");
}

// ---------------------------------------------------------------------------------------
// Child handles

#[test]
fn child_has_pid_and_matching_pidfd() {
    require_root!();
    let _g = shared();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    child.kill_on_drop(true);
    let pid = child.id();
    let fdinfo = fs::read_to_string(format!("/proc/self/fdinfo/{}", child.pidfd().as_raw_fd())).unwrap();
    assert!(fdinfo.lines().any(|l| l == format!("Pid:\t{pid}")), "{fdinfo}");
    // spawn returns while the kernel is still inside the child's execve: on the vfork path
    // the parent is woken (exec_mm_release) before the new mm is installed, so
    // /proc/PID/cmdline can still show the old image's argv; on the fork path EOF on the error
    // pipe comes before the new argv is set up, so it can be empty for a moment (as after
    // std's). Wait for the new image's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let cmdline = loop {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline == b"sleep\x001000\x00" || std::time::Instant::now() > deadline {
            break cmdline;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(cmdline, b"sleep\x001000\x00");
    assert_eq!(state_and_ppid(pid).unwrap().1, std::process::id());
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn try_wait_is_none_while_running_and_some_after_exit() {
    require_root!();
    let _g = shared();
    let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    child.kill_on_drop(true);
    assert!(child.try_wait().unwrap().is_none());
    assert!(!pidfd_readable(child.pidfd(), 0));
    assert!(child.try_wait().unwrap().is_none(), "still running: cat waits on stdin");
    drop(child.stdin.take());
    assert!(pidfd_readable(child.pidfd(), 60_000), "cat did not exit after EOF");
    let status = child.try_wait().unwrap().expect("exited");
    assert!(status.success());
    assert_eq!(child.wait().unwrap(), status);
    assert_eq!(child.try_wait().unwrap(), Some(status));
}

#[test]
fn signal_goes_through_pidfd() {
    require_root!();
    let _g = shared();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    child.kill_on_drop(true);
    child.signal(libc::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert_eq!(child.signal(libc::SIGTERM).unwrap_err().raw_os_error(), Some(libc::ESRCH));
}

#[test]
fn kill_on_drop_kills_and_reaps() {
    require_root!();
    let _g = shared();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    child.kill_on_drop(true);
    let pid = child.id();
    let mine = pidfd_open(pid).unwrap();
    assert!(!pidfd_readable(mine.as_fd(), 0));
    drop(child);
    assert!(pidfd_readable(mine.as_fd(), 0), "still running after drop");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "not reaped: /proc/{pid} is still there");
    assert_eq!(pidfd_signal(mine.as_fd(), 0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
}

#[test]
fn drop_without_kill_on_drop_leaves_child_running() {
    require_root!();
    let _g = shared();
    let child = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = child.id();
    let mine = pidfd_open(pid).unwrap();
    drop(child);
    let alive = !pidfd_readable(mine.as_fd(), 0);
    let state = state_and_ppid(pid);
    pidfd_signal(mine.as_fd(), libc::SIGKILL).unwrap();
    pidfd_reap(mine.as_fd());
    assert!(alive && matches!(state, Some((s, _)) if s != 'Z'), "{state:?}");
}

#[test]
fn paused_child_exists_but_has_not_execed_until_resume() {
    require_root!();
    let _g = shared();
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").unshare(Namespace::Uts);
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    let pid = paused.id();
    assert_ne!(ns_id(pid, Namespace::Uts).unwrap(), ns_id(std::process::id(), Namespace::Uts).unwrap());
    assert_eq!(
        fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        fs::read("/proc/self/cmdline").unwrap(),
        "the paused child is still a copy of the test process"
    );
    assert_eq!(fs::read_link(format!("/proc/{pid}/exe")).unwrap(), std::env::current_exe().unwrap());
    let mut child = paused.resume().unwrap();
    assert_eq!(child.id(), pid);
    // The error pipe closes (close-on-exec) before execve has set up the new arguments, so
    // right after resume the cmdline may still read empty: wait for the exec to finish.
    let deadline = std::time::Instant::now() + Duration::from_secs(10) * nook_testutil::time_factor();
    let cmdline = loop {
        let c = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if !c.is_empty() || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(cmdline, b"sleep\x001000\x00");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn dropping_paused_child_kills_and_reaps_it() {
    require_root!();
    let _g = shared();
    let paused = Command::new("/bin/true").unshare(Namespace::Uts).spawn_paused().unwrap();
    let pid = paused.id();
    let mine = pidfd_open(pid).unwrap();
    assert!(!pidfd_readable(mine.as_fd(), 0), "it waits at the sync point");
    drop(paused);
    assert!(pidfd_readable(mine.as_fd(), 0));
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "not reaped");
}

// ---------------------------------------------------------------------------------------
// Id maps

fn map_lines(path: String) -> Vec<Vec<u64>> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect()
}

#[test]
fn parent_writes_id_maps_and_setgroups_deny() {
    require_root!();
    let _g = shared();
    let mut cmd = sh("id -u; id -g; cat /proc/self/setgroups");
    cmd.unshare(Namespace::User)
        .uid_map(IdMap::single(0, 100_000, 65_536))
        .gid_map(IdMap::single(0, 200_000, 65_536))
        .setgroups(SetGroups::Deny)
        .stdout(Stdio::piped());
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    let pid = paused.id();
    // Written by the parent before spawn_paused returned, while the child waits.
    assert_eq!(map_lines(format!("/proc/{pid}/uid_map")), [[0, 100_000, 65_536]]);
    assert_eq!(map_lines(format!("/proc/{pid}/gid_map")), [[0, 200_000, 65_536]]);
    assert_eq!(fs::read_to_string(format!("/proc/{pid}/setgroups")).unwrap(), "deny\n");
    let out = paused.resume().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0\n0\ndeny\n");
}

const ROLE: &str = "NK_SPAWN_ROLE";

/// The unprivileged half: runs as uid 65534 in a re-executed test binary.
fn unprivileged_role() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 65534);
    let mut cmd = sh("id -u; id -g; cat /proc/self/uid_map /proc/self/setgroups");
    cmd.unshare(Namespace::User);
    let out = stdout_of(&mut cmd);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines, [vec!["0"], vec!["0"], vec!["0", "65534", "1"], vec!["deny"]], "{out}");
    println!("NK_UNPRIVILEGED_OK");
}

#[test]
fn unprivileged_caller_maps_itself_to_root() {
    if std::env::var_os(ROLE).is_some_and(|r| r == "unprivileged") {
        return unprivileged_role();
    }
    require_root!();
    let _g = shared();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["--exact", "unprivileged_caller_maps_itself_to_root", "--nocapture", "--test-threads=1"])
        .env(ROLE, "unprivileged")
        .current_dir("/")
        .user(65534, 65534);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("Permission denied") && !stdout.contains("running 1 test") {
        nook_testutil::skip(module_path!(), "uid 65534 cannot run the test binary");
        return;
    }
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("NK_UNPRIVILEGED_OK"), "{stdout}\n{stderr}");
}

// ---------------------------------------------------------------------------------------
// stdio

#[test]
fn output_captures_stdout_and_stderr() {
    require_root!();
    let _g = shared();
    let out = sh("echo to-out; echo to-err >&2; exit 3").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"to-out\n");
    assert_eq!(out.stderr, b"to-err\n");
}

#[test]
fn piped_stdin_reaches_the_child() {
    require_root!();
    let _g = shared();
    let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.kill_on_drop(true);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"first line\n").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first line\n", "cat echoes while still running");
    stdin.write_all(b"second\n").unwrap();
    drop(stdin);
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");
    line.clear();
    assert_eq!(stdout.read_line(&mut line).unwrap(), 0, "EOF after cat exits");
    assert!(child.wait().unwrap().success());
}

#[test]
fn stdio_null_and_fd() {
    require_root!();
    let _g = shared();
    let dir = TempDir::new("stdio").unwrap();
    let file = fs::File::create(dir.join("out")).unwrap();
    let status = sh("echo into-file; cat").stdin(Stdio::null()).stdout(file).status().unwrap();
    assert!(status.success());
    // `cat` read /dev/null: nothing more was written.
    assert_eq!(fs::read_to_string(dir.join("out")).unwrap(), "into-file\n");
}
