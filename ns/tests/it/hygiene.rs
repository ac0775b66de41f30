//! Regression tests for the spawn core's hygiene between clone and exec (issue 10): what the
//! child inherits (descriptors, signal handlers), what it writes in a vfork-style spawn
//! (nothing outside its stack: not the parent thread's `errno`), and whether
//! `kill_with_parent` survives identity changes and the init. Each test reproduces the
//! defect against the real kernel.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nook_ns::{Command, Error, IdMap, MountStep, Namespace, NamespaceSet, Stage, Stdio, pidfd_open};
use nook_testutil::{TempDir, require_root, tiny_rootfs};

/// A directory fd on the host's `/`, opened the way a careless host program does: plain
/// `open(2)` without `O_CLOEXEC` (the runc CVE-2024-21626 shape).
fn leaky_host_root() -> OwnedFd {
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0, "open /: {}", std::io::Error::last_os_error());
    // SAFETY: open returned a new descriptor that we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether `fd` polls with one of `events` within `timeout_ms`.
fn polls(fd: BorrowedFd<'_>, events: libc::c_short, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: pfd is one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// Waits (up to 20 s) for the process behind `pidfd` to end; false if it did not.
fn dies(pidfd: BorrowedFd<'_>) -> bool {
    polls(pidfd, libc::POLLIN, 20_000)
}

fn pidfd_kill(pidfd: BorrowedFd<'_>) {
    // SAFETY: integer arguments and a null siginfo.
    unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0u32)
    };
}

// ---------------------------------------------------------------------------------------
// 1. Host descriptors without O_CLOEXEC never reach the program

/// The program's view: whether the host fd is open (and what it shows), and the complete
/// list of its descriptors as `ls` (with its own directory fd 3) sees it.
const PROBE: &str = "if [ -e /proc/self/fd/$NK_FD ]; then echo LEAKED; ls /proc/self/fd/$NK_FD/ | head -3; fi; \
                     ls /proc/self/fd";

fn probe_in_rootfs(rootfs: &Path, host_fd: RawFd) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", PROBE])
        .namespaces(NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid))
        // proc first: in a user namespace the kernel mounts a new proc only while a fully
        // visible one is in the mount namespace, which the detached old root no longer is.
        .mount(MountStep::proc(rootfs.join("proc")))
        .mount(MountStep::pivot_root(rootfs))
        .current_dir("/")
        .env_clear()
        .env("PATH", "/bin:/usr/bin")
        .env("NK_FD", host_fd.to_string());
    cmd
}

fn assert_only_stdio(path: &str, out: nook_ns::Result<std::process::Output>) {
    let out = out.unwrap_or_else(|e| panic!("{path}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{path}: {:?} {stdout} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "0\n1\n2\n3\n", "{path}: the program got more than stdio (3 is ls's own)");
}

#[test]
fn host_fd_without_cloexec_never_reaches_the_program_on_any_path() {
    require_root!();
    let dir = TempDir::new("hostfd").unwrap();
    let rootfs = dir.join("rootfs");
    tiny_rootfs(&rootfs).unwrap();
    let host = leaky_host_root();
    let n = host.as_raw_fd();

    // vfork-style (no sync point, no hook, no init, no time namespace).
    assert_only_stdio("vfork", probe_in_rootfs(&rootfs, n).output());
    // No namespaces at all (also vfork-style), on the host's /proc.
    let mut plain = Command::new("/bin/sh");
    plain.args(["-c", PROBE]).env("NK_FD", n.to_string());
    assert_only_stdio("no namespaces", plain.output());
    // Fork semantics through clone3 (a hook forces it) and through clone(2).
    let mut hooked = probe_in_rootfs(&rootfs, n);
    // SAFETY: the hook does nothing.
    unsafe { hooked.pre_exec(|| Ok(())) };
    assert_only_stdio("fork (clone3)", hooked.output());
    assert_only_stdio("fork (clone2)", probe_in_rootfs(&rootfs, n).force_clone2(true).output());
    // Paused at the sync point, then resumed.
    let paused = probe_in_rootfs(&rootfs, n).stdout(Stdio::piped()).spawn_paused().unwrap();
    assert_only_stdio(
        "paused",
        paused.resume().unwrap().wait_with_output().map_err(|e| Error::Sys { call: "wait", path: None, source: e }),
    );
    // With the init: the payload is forked by the init.
    assert_only_stdio("init", probe_in_rootfs(&rootfs, n).init(true).output());
    // In a user namespace (root mapped to 100000).
    let mut userns = probe_in_rootfs(&rootfs, n);
    userns.unshare(Namespace::User).uid_map(IdMap::root_to(100_000)).gid_map(IdMap::root_to(100_000));
    assert_only_stdio("user namespace", userns.output());
    drop(host);
}

/// Makes `close_range` fail with ENOSYS on the calling thread (and the children it creates),
/// as on kernels before 5.9: a seccomp filter, `nr == close_range ? ERRNO(ENOSYS) : ALLOW`.
fn without_close_range() {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let filter = [
        // seccomp_data.nr is at offset 0. (Test binary and child share the architecture.)
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_close_range as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prog points to a valid filter program that outlives the call (the kernel
    // copies it). Only this thread gets it (no TSYNC); root needs no no_new_privs.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
    assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    // SAFETY: an integer-only syscall on an empty range.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 100_000u32, 100_000u32, 0u32) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENOSYS)));
}

#[test]
fn shedding_falls_back_to_a_loop_without_close_range() {
    require_root!();
    let dir = TempDir::new("noclose").unwrap();
    let rootfs = dir.join("rootfs");
    tiny_rootfs(&rootfs).unwrap();
    let host = leaky_host_root();
    let n = host.as_raw_fd();
    // On a thread of its own: the filter stays with that thread (and its children).
    std::thread::spawn(move || {
        without_close_range();
        assert_only_stdio("vfork, no close_range", probe_in_rootfs(&rootfs, n).output());
        let mut hooked = probe_in_rootfs(&rootfs, n);
        // SAFETY: the hook does nothing.
        unsafe { hooked.pre_exec(|| Ok(())) };
        assert_only_stdio("fork, no close_range", hooked.output());
    })
    .join()
    .unwrap();
    drop(host);
}

#[test]
fn preserved_fds_reach_the_program_at_their_numbers_and_nothing_else() {
    require_root!();
    let dir = TempDir::new("passfd").unwrap();
    let rootfs = dir.join("rootfs");
    tiny_rootfs(&rootfs).unwrap();
    fs::write(dir.join("input"), "from the host\n").unwrap();
    let host = leaky_host_root();
    // A target on the host fd's own number (unless that is 3 or 4): the child sheds the
    // host fd and puts the passed one there.
    let third = if host.as_raw_fd() > 4 { host.as_raw_fd() } else { 9 };
    let mut want: Vec<RawFd> = vec![0, 1, 2, 3, 4, third];
    let ls_own = (0..).find(|n| !want.contains(n)).unwrap();
    want.push(ls_own);
    want.sort_unstable();
    let want: String = want.iter().map(|n| format!("{n}\n")).collect();
    // "init": behind nk-init, whose memfd and gate must not reach the payload either.
    for (path, vfork, init) in [("vfork", true, false), ("fork", false, false), ("init", true, true)] {
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "cat <&4 >&3; ls /proc/self/fd >&3"])
            .namespaces(NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid))
            .mount(MountStep::pivot_root(&rootfs))
            .mount(MountStep::proc("/proc"))
            .current_dir("/")
            .env_clear()
            .env("PATH", "/bin:/usr/bin")
            .preserve_fd(fs::File::open("/dev/null").unwrap(), 3)
            .preserve_fd(writer, 3)
            .preserve_fd(fs::File::open(dir.join("input")).unwrap(), 4)
            .preserve_fd(fs::File::open("/dev/null").unwrap(), third);
        if !vfork {
            // SAFETY: the hook does nothing.
            unsafe { cmd.pre_exec(|| Ok(())) };
        }
        cmd.init(init);
        let status = cmd.status().unwrap();
        assert!(status.success(), "{path}: {status:?}");
        drop(cmd);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).unwrap();
        assert_eq!(got, format!("from the host\n{want}"), "{path}");
    }
    drop(host);
    let mut cmd = Command::new("/bin/true");
    cmd.preserve_fd(fs::File::open("/dev/null").unwrap(), 2);
    assert!(matches!(cmd.validate(), Err(nook_ns::ValidationError::BadFdTarget { target: 2, .. })));
    let mut cmd = Command::new("/bin/true");
    cmd.preserve_fd(fs::File::open("/dev/null").unwrap(), -1);
    assert!(matches!(cmd.spawn(), Err(Error::Invalid(nook_ns::ValidationError::BadFdTarget { target: -1, .. }))));
}

/// A target no process can have (above `fs.nr_open`'s maximum, up to `i32::MAX`) is a
/// validation error before any system call. The old code accepted it and panicked in
/// `spawn` on an overflow while planning where the kept descriptors move.
#[test]
fn a_target_above_the_largest_descriptor_number_is_a_validation_error() {
    for target in [i32::MAX, i32::MAX & !63] {
        let mut cmd = Command::new("/bin/true");
        cmd.preserve_fd(fs::File::open("/dev/null").unwrap(), target);
        assert!(
            matches!(cmd.validate(), Err(nook_ns::ValidationError::BadFdTarget { target: t, .. }) if t == target),
            "{target}"
        );
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cmd.spawn().map(drop)));
        assert!(
            matches!(r, Ok(Err(Error::Invalid(nook_ns::ValidationError::BadFdTarget { .. })))),
            "{target}: spawn {}",
            if r.is_err() { "panicked" } else { "did not refuse" }
        );
    }
    // The largest number Linux allows is still taken (the spawn then fails at run time).
    let mut cmd = Command::new("/bin/true");
    cmd.preserve_fd(fs::File::open("/dev/null").unwrap(), (i32::MAX & !63) - 1);
    assert_eq!(cmd.validate(), Ok(()));
    // Far above RLIMIT_NOFILE: the error names the passed descriptor, as the docs say (the
    // old code reported `Stage::Fds`, the move of its own descriptors above the target).
    let mut cmd = Command::new("/bin/true");
    cmd.preserve_fd(fs::File::open("/dev/null").unwrap(), 4)
        .preserve_fd(fs::File::open("/dev/null").unwrap(), (i32::MAX & !63) - 1)
        .preserve_fd(fs::File::open("/dev/null").unwrap(), 5);
    match cmd.spawn().map(drop) {
        Err(Error::Spawn(e)) => {
            assert_eq!((e.stage, e.errno, e.step), (Stage::PassFd, libc::EBADF, Some(1)), "{e:?}")
        }
        other => panic!("a target past RLIMIT_NOFILE: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 2. A paused child holds no other thread's pipes

#[test]
fn paused_child_does_not_hold_an_unrelated_pipe_open() {
    require_root!();
    // Another thread's pipe in flight (close-on-exec, as std and nook make them).
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new descriptors that we own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut cmd = Command::new("/bin/true");
    cmd.unshare(Namespace::Uts);
    let paused = cmd.spawn_paused().unwrap();
    drop(write);
    // The writer is gone: the reader must see the hang-up while the child is still paused.
    let hup = polls(read.as_fd(), libc::POLLIN, 20_000);
    let still_paused = !polls(paused.pidfd(), libc::POLLIN, 0);
    drop(paused);
    assert!(still_paused);
    assert!(hup, "the paused child keeps a copy of the unrelated pipe's write end");
}

// ---------------------------------------------------------------------------------------
// 3. kill_with_parent survives identity changes, reaches the init's payload, and notices a
//    parent that is already gone

/// Runs `f` on a thread and returns its result once the thread is gone: joined, and no
/// longer in `/proc/self/task` (join returns before the kernel has finished the thread's
/// exit, which is when it sends the parent-death signals).
fn on_short_lived_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tid, out) = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        (unsafe { libc::gettid() }, f())
    })
    .join()
    .unwrap();
    let task = format!("/proc/self/task/{tid}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&task).exists() {
        assert!(Instant::now() < deadline, "thread {tid} did not go away");
        std::thread::sleep(Duration::from_millis(1));
    }
    out
}

/// Spawns `cmd` on a thread that exits at once; returns the child.
fn spawn_on_short_lived_thread(mut cmd: Command) -> nook_ns::Child {
    on_short_lived_thread(move || cmd.spawn().unwrap())
}

fn assert_dies_with_spawning_thread(what: &str, cmd: Command) {
    let mut child = spawn_on_short_lived_thread(cmd);
    child.kill_on_drop(true);
    assert!(dies(child.pidfd()), "{what}: the child outlived the thread that spawned it");
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL), "{what}");
}

#[test]
fn kill_with_parent_survives_a_uid_change() {
    require_root!();
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").user(65534, 65534).kill_with_parent(libc::SIGKILL);
    assert_dies_with_spawning_thread(".user(65534, 65534)", cmd);
}

#[test]
fn kill_with_parent_survives_a_user_namespace_mapping() {
    require_root!();
    let mut cmd = Command::new("sleep");
    cmd.arg("1000")
        .unshare(Namespace::User)
        .uid_map(IdMap::root_to(100_000))
        .gid_map(IdMap::root_to(100_000))
        .kill_with_parent(libc::SIGKILL);
    assert_dies_with_spawning_thread("user namespace", cmd);
}

#[test]
fn kill_with_parent_reaches_the_payload_of_the_init() {
    require_root!();
    let mut cmd = Command::new("sleep");
    // No pid namespace: nothing else would kill the payload when the init dies.
    cmd.arg("1000").unshare(Namespace::Uts).init(true).kill_with_parent(libc::SIGKILL);
    let (mut init, payload) = on_short_lived_thread(move || {
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let payload: u32 = children.split_whitespace().next().expect("the init's payload").parse().unwrap();
        (child, pidfd_open(payload).unwrap())
    });
    init.kill_on_drop(true);
    let payload_died = dies(payload.as_fd());
    if !payload_died {
        pidfd_kill(payload.as_fd());
    }
    assert!(dies(init.pidfd()), "the init outlived the thread that spawned it");
    assert!(payload_died, "the payload outlived the init");
}

#[test]
fn kill_with_parent_child_leaves_if_the_spawning_thread_died_while_paused() {
    require_root!();
    // The child sees the thread's death through a PIDFD_THREAD pidfd (6.9+); before that
    // only the death of the whole process is caught (documented on `kill_with_parent`).
    // SAFETY: integer-only syscall; a returned descriptor is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::gettid(), libc::O_EXCL as libc::c_uint) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        nook_testutil::skip_unsupported(
            "kill_with_parent_child_leaves_if_the_spawning_thread_died_while_paused",
            &format!("no PIDFD_THREAD pidfds (kernel 6.9+): {e}"),
        );
        return;
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    let dir = TempDir::new("pdeath").unwrap();
    let marker = dir.join("ran");
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &format!("echo ran > {}", marker.display())])
        .unshare(Namespace::Uts)
        .kill_with_parent(libc::SIGKILL);
    let paused = on_short_lived_thread(move || cmd.spawn_paused().unwrap());
    // The thread is gone (joined) before the child continues: its death signal is armed
    // only now, against a dead thread, so it must leave instead of running the program.
    match paused.resume() {
        Ok(mut child) => assert!(!child.wait().unwrap().success()),
        Err(e) => eprintln!("resume: {e}"),
    }
    assert!(!marker.exists(), "the program ran after the thread it was tied to had exited");
}

const ROLE: &str = "NK_HYGIENE_ROLE";

/// The helper process of the process-level test: spawns `sleep` tied to the process from a
/// thread that exits at once, prints its pid, waits for a line on stdin, exits.
fn process_owner_role() {
    let child = spawn_on_short_lived_thread({
        let mut cmd = Command::new("sleep");
        cmd.arg("1000").unshare(Namespace::Uts).init(true).kill_with_parent_process(libc::SIGKILL);
        cmd
    });
    println!("{}", child.id());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    std::mem::forget(child);
}

#[test]
fn kill_with_parent_process_outlives_threads_but_not_the_process() {
    if std::env::var_os(ROLE).is_some_and(|r| r == "process-owner") {
        return process_owner_role();
    }
    require_root!();
    // The spawning thread exits: the child lives on.
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").kill_with_parent_process(libc::SIGKILL);
    let mut child = spawn_on_short_lived_thread(cmd);
    child.kill_on_drop(true);
    assert!(!polls(child.pidfd(), libc::POLLIN, 500), "killed when the spawning thread exited");
    drop(child);

    // The process exits: the child dies.
    let exe = std::env::current_exe().unwrap();
    let mut helper = std::process::Command::new(exe)
        .args([
            "--exact",
            crate::test_name(module_path!(), "kill_with_parent_process_outlives_threads_but_not_the_process").as_str(),
            "--nocapture",
        ])
        .env(ROLE, "process-owner")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(helper.stdout.take().unwrap());
    let pid = loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the helper ended early");
        if let Ok(pid) = line.trim().parse::<u32>() {
            break pid;
        }
    };
    let init = pidfd_open(pid).unwrap();
    assert!(!polls(init.as_fd(), libc::POLLIN, 0));
    writeln!(helper.stdin.take().unwrap()).unwrap();
    assert!(helper.wait().unwrap().success());
    let died = dies(init.as_fd());
    if !died {
        pidfd_kill(init.as_fd());
    }
    assert!(died, "the child outlived the process");
}

// ---------------------------------------------------------------------------------------
// 4. Every signal handler is reset, SIGRTMAX and glibc's 32 and 33 included

extern "C" fn host_handler(_: libc::c_int) {}

/// The kernel's sigaction (x86_64 / aarch64 layout).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

fn kernel_handler(sig: i32) -> usize {
    let mut old = KernelSigaction::default();
    // SAFETY: a null new action only reads; old is a valid out-parameter of 8-byte mask.
    let rc = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, std::ptr::null::<u8>(), &mut old, 8usize) };
    assert_eq!(rc, 0);
    old.handler
}

#[test]
fn host_handlers_up_to_sigrtmax_are_reset_in_the_child() {
    require_root!();
    let sig = libc::SIGRTMAX();
    // SAFETY: installs a handler that does nothing; restored below.
    let old = unsafe { libc::signal(sig, host_handler as *const () as libc::sighandler_t) };
    assert_eq!(kernel_handler(sig), host_handler as *const () as usize);
    let mut cmd = Command::new("/bin/true");
    cmd.unshare(Namespace::Uts);
    // SAFETY: the hook makes raw rt_sigaction calls only.
    unsafe {
        cmd.pre_exec(move || {
            for s in [sig, 32, 33] {
                // SIG_DFL or SIG_IGN (ignored stays ignored, as exec keeps it), never a
                // function of the host.
                let h = kernel_handler(s);
                if h != libc::SIG_DFL && h != libc::SIG_IGN {
                    return Err(std::io::Error::from_raw_os_error(s * 1000 + h.min(999) as i32));
                }
            }
            Ok(())
        })
    };
    let result = cmd.status();
    // SAFETY: restores what was there.
    unsafe { libc::signal(sig, old) };
    match result {
        Ok(status) => assert!(status.success()),
        Err(Error::Spawn(e)) if e.stage == Stage::PreExec => {
            panic!("signal {} still has a handler in the child ({})", e.errno / 1000, e.errno % 1000)
        }
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------
// 5. The vfork-style child writes nothing of the parent thread's: errno stays

fn errno_location() -> *mut i32 {
    // SAFETY: __errno_location has no preconditions.
    unsafe { libc::__errno_location() }
}

#[test]
fn vfork_spawn_leaves_the_parent_threads_errno_alone() {
    require_root!();
    const SENTINEL: i32 = 4242;
    std::thread::spawn(|| {
        // A failing exec and a failing chdir: the child's failed calls set errno in a
        // glibc wrapper; the parent's side of these spawns makes no failing call.
        let mut missing = Command::new("/nonexistent/nk-missing");
        missing.unshare(Namespace::Uts);
        let mut bad_dir = Command::new("/bin/true");
        bad_dir.current_dir("/nonexistent/nk-dir");
        for (what, mut cmd, stage) in [("exec", missing, Stage::Exec), ("chdir", bad_dir, Stage::Chdir)] {
            // SAFETY: this thread's errno.
            unsafe { *errno_location() = SENTINEL };
            let result = cmd.spawn();
            // SAFETY: as above.
            let errno = unsafe { *errno_location() };
            match result {
                Err(Error::Spawn(e)) => assert_eq!((e.stage, e.errno), (stage, libc::ENOENT), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
            assert_eq!(errno, SENTINEL, "{what}: the vfork child wrote the parent thread's errno");
        }
    })
    .join()
    .unwrap();
}

/// A child that switches to another user must not leave the caller non-dumpable: the kernel
/// resets the dumpable flag of the memory of a process whose uid or gid changes, and a
/// vfork-style child shares the caller's memory until it execs — the caller would lose its
/// core dumps and its `/proc/PID` files would belong to root. (Was: every spawn with
/// [`Command::user`] through the vfork-style path.)
#[test]
fn a_child_switching_user_leaves_the_caller_dumpable() {
    require_root!();
    let dumpable = || {
        // SAFETY: PR_GET_DUMPABLE takes no pointer.
        unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }
    };
    assert_eq!(dumpable(), 1, "the test process starts dumpable");
    for (uid, gid) in [(65534, 65534), (0, 65534), (65534, 0)] {
        let status = Command::new("/bin/true").user(uid, gid).status().expect("spawn as another user");
        assert!(status.success());
        assert_eq!(dumpable(), 1, "still dumpable after a child switched to {uid}:{gid}");
    }
}
