//! The child side of the spawn core never allocates: a tattling global allocator counts
//! every allocator call made in any process other than the test process (a cloned child runs
//! this binary's allocator until it execs) in a shared anonymous mapping — memory, not a
//! descriptor, since the child sheds every descriptor it does not own right after clone.
//! Children with every feature that runs between clone and exec must leave the count at 0;
//! a `pre_exec` hook that allocates must raise it, which proves the check can fail.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use nook_ns::landlock::{AccessFs, Ruleset};
use nook_ns::seccomp::SeccompProgram;
use nook_ns::{
    CapSet, Capabilities, Capability, ClockOffset, Command, Error, IdMap, MountStep, Namespace, NamespaceSet, Resource,
    Stage, Stdio,
};
use nook_testutil::{TempDir, require_root, tiny_rootfs};

/// The test process's pid while a check is armed (0: disarmed).
static TEST_PID: AtomicI32 = AtomicI32::new(0);
/// The counter in a `MAP_SHARED` page (null: none): shared with forked children too.
static COUNTER: AtomicPtr<AtomicUsize> = AtomicPtr::new(std::ptr::null_mut());

/// Counts an allocator call made outside the test process. Allocation-free: atomic loads,
/// `getpid` and an atomic add.
fn tattle() {
    let parent = TEST_PID.load(Ordering::SeqCst);
    if parent == 0 {
        return;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == parent {
        return;
    }
    let counter = COUNTER.load(Ordering::SeqCst);
    if !counter.is_null() {
        // SAFETY: the page stays mapped while armed (unmapped only after disarming).
        unsafe { (*counter).fetch_add(1, Ordering::SeqCst) };
    }
}

struct Tattling;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Tattling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tattle();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        tattle();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        tattle();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tattle();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tattling = Tattling;

/// The two tests share the statics: one at a time.
static ARMED: Mutex<()> = Mutex::new(());

/// An armed check: counts the allocator calls children made while it was armed.
struct Tattle {
    page: *mut libc::c_void,
}

const PAGE: usize = 4096;

impl Tattle {
    fn arm() -> Tattle {
        // SAFETY: a fresh shared anonymous mapping; no existing memory is affected.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        COUNTER.store(page.cast(), Ordering::SeqCst);
        // SAFETY: getpid has no preconditions.
        TEST_PID.store(unsafe { libc::getpid() }, Ordering::SeqCst);
        Tattle { page }
    }

    /// Disarms and returns how many allocator calls children made.
    fn count(self) -> usize {
        TEST_PID.store(0, Ordering::SeqCst);
        // SAFETY: the page is mapped until drop; zero-filled, so a valid AtomicUsize.
        unsafe { (*self.page.cast::<AtomicUsize>()).load(Ordering::SeqCst) }
    }
}

impl Drop for Tattle {
    fn drop(&mut self) {
        TEST_PID.store(0, Ordering::SeqCst);
        COUNTER.store(std::ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: our own mapping; no child of the test runs this binary's code any more
        // (every spawn above returned after its exec or exit).
        unsafe { libc::munmap(self.page, PAGE) };
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A seccomp filter that allows everything but a syscall no program here makes
/// (`SECCOMP_RET_USER_NOTIF` for it).
fn never_called() -> SeccompProgram {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    SeccompProgram::new(vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_kexec_load as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_USER_NOTIF),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ])
}

/// A Landlock ruleset that lets the programs here run (read and execute everywhere, write
/// nowhere).
fn landlock() -> nook_ns::landlock::Landlock {
    Ruleset::new(AccessFs::READ | AccessFs::EXECUTE | AccessFs::WRITE)
        .allow("/", AccessFs::READ | AccessFs::EXECUTE)
        .allow_degraded(true)
        .create()
        .unwrap()
}

/// The descriptor sent over `sock` (`SCM_RIGHTS`).
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    recvmsg(sock, &mut [std::io::IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC).unwrap();
    control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("a descriptor")
}

fn run(cmd: &mut Command) -> String {
    nook_testutil::success_stdout(cmd.output().unwrap())
}

#[test]
fn child_side_of_every_feature_is_allocation_free() {
    require_root!();
    let _l = lock();
    // Everything that allocates in the parent only is prepared before arming.
    let dir = TempDir::new("noalloc").unwrap();
    fs::create_dir(dir.join("src")).unwrap();
    fs::write(dir.join("src/file"), "from the bind mount\n").unwrap();
    fs::create_dir(dir.join("mnt")).unwrap();
    let rootfs = dir.join("rootfs");
    tiny_rootfs(&rootfs).unwrap();
    fs::write(rootfs.join("etc/marker"), "in the new root\n").unwrap();
    let mnt = dir.join("mnt");

    let (mut passed_reader, passed_writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let host_fd = fs::File::open("/").unwrap();
    let gate_fifo = dir.join("exec.fifo");
    let gate_status = Command::new("mkfifo").arg(&gate_fifo).status().unwrap();
    assert!(gate_status.success());
    let gate_dir = fs::File::open(dir.path()).unwrap();

    let tattle = Tattle::arm();

    // User (maps written by the parent), cgroup, ipc, uts, net, pid, time and mount
    // namespaces; hostname and domain; tmpfs, mkdir, bind and proc mounts; cwd, env,
    // identity, parent-death signal (armed and checked after the identity change, in the
    // payload too), piped stdio, a passed descriptor, shedding of the rest, and the init.
    let mut full = Command::new("/bin/sh");
    full.args([
        "-c",
        "echo $$ $(hostname) $(cat /proc/sys/kernel/domainname) $(id -u) $NK_VAR $(pwd); cat file; \
         cat /proc/self/timens_offsets | tr -s ' ' | tr '\\n' ' '; echo; echo err >&2; echo passed >&7",
    ])
    .namespaces(NamespaceSet::CONTAINER.with(Namespace::User).with(Namespace::Cgroup).with(Namespace::Time))
    .uid_map(IdMap::root_to(100_000))
    .gid_map(IdMap::root_to(100_000))
    .hostname("nk-noalloc")
    .domainname("nk-domain")
    .mount(MountStep::tmpfs(&mnt, Some("size=1m")))
    .mount(MountStep::mkdir(mnt.join("b")))
    .mount(MountStep::bind(dir.join("src"), mnt.join("b")).read_only())
    .mount(MountStep::write_file(mnt.join("w"), "written"))
    .mount(MountStep::make_file(mnt.join("e")))
    .mount(MountStep::symlink("w", mnt.join("l")))
    .mount(MountStep::proc("/proc"))
    .monotonic_offset(ClockOffset::from_secs(1000))
    .boottime_offset(ClockOffset::new(2000, 5))
    .current_dir(mnt.join("b"))
    .env("NK_VAR", "nk-value")
    .user(0, 0)
    .groups(&[0])
    .kill_with_parent(libc::SIGKILL)
    .preserve_fd(passed_writer, 7)
    .init(true);
    let out = run(&mut full);
    drop(full);

    // The vfork-style path: passed descriptor, parent-death signal, an identity.
    let mut vfork = Command::new("/bin/sh");
    assert_ne!(host_fd.as_raw_fd(), 9);
    let script = format!("echo vfork >&9; if [ -e /proc/self/fd/{} ]; then echo leaked; fi", host_fd.as_raw_fd());
    vfork
        .args(["-c", &script])
        .unshare(Namespace::Uts)
        .user(65534, 65534)
        .kill_with_parent(libc::SIGKILL)
        .preserve_fd(fs::File::create(dir.join("vfork-out")).unwrap(), 9);
    let vfork_out = run(&mut vfork);

    // Hardening on the vfork-style path: rlimits, oom_score_adj, umask, capabilities across
    // a uid change (ambient), no_new_privs, Landlock, and a seccomp filter with a listener
    // sent to the parent.
    let caps = CapSet::EMPTY.with(Capability::NetBindService).with(Capability::Kill);
    let mut hardened = Command::new("/bin/sh");
    hardened
        .args(["-c", "ulimit -n; cat /proc/self/oom_score_adj; umask; grep -E 'CapAmb|NoNewPrivs' /proc/self/status"])
        .unshare(Namespace::Uts)
        .rlimit(Resource::Nofile, 64, 64)
        .oom_score_adj(300)
        .umask(0o077)
        .user(65534, 65534)
        .capabilities(Capabilities::only(caps).with_ambient(CapSet::EMPTY.with(Capability::NetBindService)))
        .no_new_privs(true)
        .landlock(landlock())
        .seccomp(never_called().notify(true));
    let hardened_out = run(&mut hardened);

    // And on the fork path: user namespace (maps written at the sync point), init confined
    // with the payload.
    let mut hardened_init = Command::new("/bin/sh");
    hardened_init
        .args(["-c", "echo $$; grep -E 'CapBnd|NoNewPrivs|Seccomp:' /proc/self/status"])
        .namespaces(NamespaceSet::new().with(Namespace::User).with(Namespace::Pid).with(Namespace::Mount))
        .mount(MountStep::proc("/proc"))
        .rlimit(Resource::Core, 0, 0)
        .capabilities(Capabilities::only(caps))
        .no_new_privs(true)
        .landlock(landlock())
        .seccomp(never_called())
        .init(true);
    let hardened_init_out = run(&mut hardened_init);
    let seccomp_err = Command::new("/bin/true")
        .unshare(Namespace::Uts)
        .no_new_privs(true)
        .seccomp(SeccompProgram::new(vec![libc::sock_filter { code: 0xffff, jt: 0, jf: 0, k: 0 }]))
        .spawn()
        .unwrap_err();

    // Tied to the process: cloned by the spawner thread.
    let mut process = Command::new("/bin/true");
    process.unshare(Namespace::Ipc).kill_with_parent_process(libc::SIGKILL);
    let process_status = process.status().unwrap();

    // pivot_root into a tiny rootfs, without init, through the clone(2) fallback.
    let mut pivot = Command::new("/bin/sh");
    pivot
        .args(["-c", "cat /etc/marker; echo $$"])
        .namespaces(NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid))
        .mount(MountStep::pivot_root(&rootfs))
        .mount(MountStep::proc("/proc"))
        .mount(MountStep::remount_read_only("/"))
        .mount(MountStep::mask("/proc/kcore"))
        .current_dir("/")
        .env_clear()
        .env("PATH", "/bin:/usr/bin")
        .force_clone2(true);
    let pivot_out = run(&mut pivot);

    // A start gate (runc's exec fifo): the child waits on the fifo after its setup, and
    // with no parent-death signal.
    let mut gated = Command::new("/bin/true");
    gated
        .unshare(Namespace::Pid)
        .kill_with_parent(libc::SIGKILL)
        .no_parent_death_signal()
        .start_gate(gate_dir, "exec.fifo");
    let mut gated = gated.spawn().unwrap();
    let mut gate_byte = [0u8; 1];
    fs::File::open(&gate_fifo).unwrap().read_exact(&mut gate_byte).unwrap();
    let gated_status = gated.wait().unwrap();

    // A terminal (its master sent over a socket, the controlling terminal of a new
    // session) with a session keyring; and a root entered with MS_MOVE + chroot.
    let (term_ours, term_theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut termed = Command::new("/bin/sh");
    termed
        .args(["-c", "test -t 0 && echo tty; grep -c ' nk-noalloc-ses: ' /proc/keys"])
        .unshare(Namespace::Uts)
        .session_keyring("nk-noalloc-ses", Some(0x3f1b_0000))
        .terminal(term_theirs)
        .terminal_size(10, 20);
    let mut termed = termed.spawn().unwrap();
    let master = recv_fd(&term_ours);
    let mut moved = Command::new("/bin/sh");
    moved
        .args(["-c", "cat /etc/marker"])
        .namespaces(NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid))
        .mount(MountStep::move_root(&rootfs))
        .current_dir("/")
        .env_clear()
        .env("PATH", "/bin:/usr/bin");
    let moved_out = run(&mut moved);

    // Paused, then resumed; stdin piped.
    let mut cat = Command::new("cat");
    cat.unshare(Namespace::Uts).stdin(Stdio::piped()).stdout(Stdio::piped());
    let cat_out = cat.spawn_paused().unwrap().resume().unwrap().wait_with_output().unwrap();

    // Failures in the child are reported without allocating too.
    let exec_err = Command::new("nk-no-such-program").unshare(Namespace::Uts).spawn().unwrap_err();
    let mount_err = Command::new("/bin/true")
        .unshare(Namespace::Mount)
        .mount(MountStep::bind("/nonexistent/nk-src", &mnt))
        .spawn()
        .unwrap_err();

    let termed_status = termed.wait().unwrap();
    let tattles = tattle.count();
    drop(host_fd);
    let mut term_out = Vec::new();
    let _ = fs::File::from(master).read_to_end(&mut term_out);
    assert!(termed_status.success());
    assert_eq!(String::from_utf8_lossy(&term_out).replace('\r', ""), "tty\n1\n");
    assert_eq!(moved_out, "in the new root\n");

    // The children really did all of it.
    let mut passed = String::new();
    passed_reader.read_to_string(&mut passed).unwrap();
    assert_eq!(passed, "passed\n");
    assert_eq!(vfork_out, "");
    assert_eq!(fs::read_to_string(dir.join("vfork-out")).unwrap(), "vfork\n");
    assert!(process_status.success());
    assert!(gated_status.success() && gate_byte == *b"0");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("2 nk-noalloc nk-domain 0 nk-value {}", mnt.join("b").display()), "{out}");
    assert_eq!(lines[1], "from the bind mount", "{out}");
    assert_eq!(lines[2], "monotonic 1000 0 boottime 2000 5 ", "{out}");
    assert_eq!(pivot_out, "in the new root\n1\n");
    assert!(cat_out.status.success() && cat_out.stdout.is_empty(), "{cat_out:?}");
    assert!(matches!(exec_err, Error::Spawn(e) if e.stage == Stage::Exec && e.errno == libc::ENOENT));
    assert!(matches!(mount_err, Error::Spawn(e) if e.stage == Stage::Mount && e.step == Some(0)));

    assert_eq!(
        hardened_out.split_whitespace().collect::<Vec<_>>(),
        ["64", "300", "0077", "CapAmb:", "0000000000000400", "NoNewPrivs:", "1"],
        "{hardened_out}"
    );
    assert_eq!(
        hardened_init_out.split_whitespace().collect::<Vec<_>>(),
        ["2", "CapBnd:", "0000000000000420", "NoNewPrivs:", "1", "Seccomp:", "2"],
        "{hardened_init_out}"
    );
    assert!(matches!(seccomp_err, Error::Spawn(e) if e.stage == Stage::Seccomp && e.errno == libc::EINVAL));

    assert_eq!(tattles, 0, "children made {tattles} allocator calls between clone and exec");
}

#[test]
fn allocating_pre_exec_hook_is_detected() {
    require_root!();
    let _l = lock();
    let tattle = Tattle::arm();
    let mut cmd = Command::new("/bin/true");
    cmd.unshare(Namespace::Uts);
    // SAFETY: deliberately breaks the "no allocation" rule, in a single-threaded test
    // child, to show the detector works.
    unsafe {
        cmd.pre_exec(|| {
            std::hint::black_box(Box::new(1u64));
            Ok(())
        })
    };
    assert!(cmd.status().unwrap().success());
    let tattles = tattle.count();
    assert!(tattles >= 1, "the hook's allocation was not seen");
}
