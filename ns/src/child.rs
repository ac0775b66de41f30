//! Everything the child runs between clone and exec — the async-signal-safe side of the
//! spawn, in one module: this file and [`raw`], its bare system calls.
//!
//! After clone, [`run_child`] executes the [`Plan`] and [`ChildFds`] the parent built before
//! the clone (`crate::plan`) step by step: shedding and installing descriptors, the sync
//! point, the time namespace, identity, hostname, mount steps ([`run_step`]), the init's
//! fork and gate ([`run_init`]), and the exec. It ends in `execve` or `_exit`; a failure is
//! written as a fixed-size [`ErrorRecord`] to the close-on-exec error pipe, so EOF on that
//! pipe tells the parent that exec succeeded.
//!
//! The rules for code in this module, which must hold for everything it calls:
//! - no allocation and no deallocation (the child of a multithreaded parent may hold a copy
//!   of a lock another thread held in the allocator; a vfork-style child shares the
//!   parent's heap), no locks, no panics, no logging;
//! - system calls only through [`raw`] (bare `syscall` / `svc #0`, no glibc wrapper: those
//!   write `errno` and the cancellation state into the TLS, which a vfork-style child
//!   shares with its suspended parent thread);
//! - memory written only on this stack (the plan is read, never written: a vfork-style
//!   child shares the parent's memory).
//!
//! The only exception is the user's `pre_exec` hooks (`Command::pre_exec`, unsafe for the
//! caller), which never run in a vfork-style child. Outside this module the child runs only
//! the return from the clone system call (`crate::sys::fork_like`, glibc's `clone` wrapper
//! for `crate::sys::vfork_like`) and the match arm in `Command`'s spawn that calls
//! [`run_child`]; a vfork-style child enters at [`vfork_child`].

pub(crate) mod raw;

use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{ErrorRecord, Stage};
use crate::mount::{Beneath, PreparedStep, ReadOnly};
use crate::plan::{CapsPlan, ChildFds, FdRole, Identity, KeyringPlan, Plan, PreExecHook, TerminalPlan};

impl ChildFds {
    /// The child's number of the descriptor with `role` (after [`ChildFds::shed`]).
    pub(crate) fn get(&self, role: FdRole) -> Option<RawFd> {
        self.kept.iter().find(|&&(r, _, _)| r == role).map(|&(_, _, fd)| fd)
    }

    /// The child's numbers of the cgroup v1 `tasks` files ([`FdRole::CgroupTasks`]), in the
    /// order they were given.
    fn cgroup_tasks(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.kept.iter().filter(|k| matches!(k.0, FdRole::CgroupTasks(_))).map(|&(_, _, fd)| fd)
    }

    /// In the child, first thing after clone: closes every descriptor it does not own and
    /// moves the kept ones out of the way of the targets. On failure nothing kept was
    /// closed, so the error pipe still has its parent number: `Err((errno, fd, stage,
    /// step))` names the descriptor to report on, and the passed descriptor whose target
    /// the moves could not get above ([`Stage::PassFd`]), if one did.
    fn shed(&self) -> Result<(), (i32, RawFd, Stage, Option<usize>)> {
        let parent_err = self.kept.iter().find(|k| k.0 == FdRole::Error).map_or(-1, |k| k.1);
        for &(first, last) in &self.close {
            raw::close_range(first, last);
        }
        for &(from, to) in &self.moves {
            let e = raw::dup_to_cloexec(from, to);
            if e != 0 {
                return Err(match self.top_pass {
                    Some(i) => (e, parent_err, Stage::PassFd, Some(i)),
                    None => (e, parent_err, Stage::Fds, None),
                });
            }
        }
        for &(from, _) in &self.moves {
            raw::close(from);
        }
        Ok(())
    }

    /// Puts stdio and passed descriptors on their numbers (without close-on-exec).
    fn install(&self) -> Result<(), (Stage, i32, Option<usize>)> {
        let mut passed = 0;
        for &(role, _, fd) in &self.kept {
            let (target, stage, step) = match role {
                FdRole::Stdio(t) => (t, Stage::Stdio, None),
                FdRole::Pass(t) => {
                    passed += 1;
                    (t, Stage::PassFd, Some(passed - 1))
                }
                _ => continue,
            };
            let e = raw::dup2(fd, target);
            if e != 0 {
                return Err((stage, e, step));
            }
        }
        Ok(())
    }
}

/// Reports a failure to the parent and exits. Allocation-free.
/// The error "descriptor" once the start gate is passed (`Command::start_gate`): the error
/// pipe is closed — the spawn returned long before — so [`fail`] reports on the program's
/// stderr instead, as text (runc's init's words: `exec NAME: no such file or directory`),
/// and the exit status is 1, as runc's.
const AFTER_GATE: RawFd = -2;

fn fail(err_fd: RawFd, stage: Stage, errno: i32, step: Option<usize>) -> ! {
    if err_fd == AFTER_GATE {
        let what: &[u8] = match stage {
            Stage::NoNewPrivs => b"prctl(PR_SET_NO_NEW_PRIVS)",
            Stage::Landlock => b"landlock_restrict_self",
            Stage::Seccomp => b"seccomp",
            Stage::InitExec => b"exec nk-init",
            _ => b"container setup",
        };
        report_after_gate(what, None, errno);
    }
    let rec = ErrorRecord { stage: stage as u32, errno, step: step.map_or(ErrorRecord::NO_STEP, |s| s as u32) };
    raw::write_all(err_fd, &rec.encode());
    raw::exit(127)
}

fn check(err_fd: RawFd, stage: Stage, errno: i32) {
    // A test's injected failure (`failpoints` feature; otherwise 0, inlined away).
    let errno = if errno == 0 { crate::failpoint::child_errno(stage as u32) } else { errno };
    if errno != 0 {
        fail(err_fd, stage, errno, None);
    }
}

/// A test's injected failure of `stage` where the stage reports its own errors (not through
/// [`check`]): nothing without the `failpoints` feature.
#[inline(always)]
fn inject(err_fd: RawFd, stage: Stage) {
    check(err_fd, stage, 0);
}

fn set_identity(err_fd: RawFd, id: &Identity) {
    if let Some(groups) = &id.groups {
        check(err_fd, Stage::SetGroups, raw::setgroups(groups));
    }
    check(err_fd, Stage::SetGid, raw::setresgid(id.gid));
    check(err_fd, Stage::SetUid, raw::setresuid(id.uid));
}

/// The child's whole life between clone and exec.
///
/// # Safety
/// Must be called only in a freshly cloned child (single-threaded, fork semantics), with
/// every signal blocked, and with `plan` / `fds` prepared by the parent before the clone —
/// or in a vfork-style child ([`vfork_child`]) under the conditions given there.
pub(crate) unsafe fn run_child(plan: &Plan, fds: &ChildFds, hooks: &mut [PreExecHook], vforked: bool) -> ! {
    // First shed every descriptor we do not own: the host's without O_CLOEXEC must never
    // reach the program, and copies of other threads' pipes must not be held open while we
    // wait at the sync point or set up.
    if let Err((errno, err, stage, step)) = fds.shed() {
        fail(err, stage, errno, step);
    }
    let err = fds.get(FdRole::Error).unwrap_or(-1);
    raw::reset_signal_handlers();

    // Sync point: the parent writes id maps, moves links, places us in a cgroup, then
    // sends one byte. EOF means the parent gave up: leave quietly. Without a sync socket
    // the parent has nothing to do first.
    if let Some(sync) = fds.get(FdRole::Sync) {
        match raw::read_byte(sync) {
            Ok(true) => {}
            Ok(false) => raw::exit(127),
            Err(e) => fail(err, Stage::WaitForParent, e, None),
        }
        raw::close(sync);
    }

    // Into the cgroup v1 hierarchies (`Command::cgroup_v1`), before anything else: a thread
    // moving itself (writing `0` to `tasks`) skips the kernel's global threadgroup lock that
    // a move by pid takes for writing — an RCU grace period, milliseconds, whenever no other
    // move happened just before. Before the joins: the cgroup namespace (new or joined) is
    // rooted where we are when it is made, and the file's opener (the caller) allows the
    // move of a task with our uid, which the identity change below gives up.
    for (i, fd) in fds.cgroup_tasks().enumerate() {
        let injected = crate::failpoint::child_step_errno(Stage::CgroupV1 as u32, i as u32);
        if injected != 0 {
            fail(err, Stage::CgroupV1, injected, Some(i));
        }
        let e = raw::write_all(fd, b"0");
        if e != 0 {
            fail(err, Stage::CgroupV1, e, Some(i));
        }
        raw::close(fd);
    }

    // Joining an existing process's namespaces comes first, while we are single-threaded
    // (the kernel requires that for a user or time namespace) and before anything that acts
    // in them: one atomic setns through its pidfd, the user namespace first. Root and cwd
    // become the target's; a pid namespace applies to our children only, which is why a
    // join with one implies the init (`Command::join`).
    // (A joining child writes its oom_score_adj first, through the caller's /proc: the
    // joined mount namespace's /proc may not show it — a rootless join enters the pid
    // namespace only through the init's fork.)
    if let (Some(_), Some(text)) = (plan.join, &plan.oom_score_adj) {
        write_oom_score_adj(err, text);
    }
    if let Some(flags) = plan.join {
        match fds.get(FdRole::Join) {
            // The pidfd stays open (close-on-exec) like every other kept descriptor.
            Some(fd) => check(err, Stage::Join, raw::setns(fd, flags)),
            None => fail(err, Stage::Join, libc::EBADF, None),
        }
    }
    // Mount and time namespaces joined by handle (`Command::join_ns`): a thread of the
    // caller cannot enter those, the single-threaded child can. The mount steps below then
    // run in the joined mount namespace.
    for (join, role, flag) in [
        (plan.join_mount, FdRole::JoinMount, libc::CLONE_NEWNS),
        (plan.join_time, FdRole::JoinTime, crate::sys::consts::CLONE_NEWTIME as libc::c_int),
    ] {
        if join {
            match fds.get(role) {
                Some(fd) => check(err, Stage::Join, raw::setns(fd, flag)),
                None => fail(err, Stage::Join, libc::EBADF, None),
            }
        }
    }

    // The time namespace comes before the switch to root of the new user namespace: that
    // switch changes the euid (e.g. from global root to the mapped 100000), which makes the
    // process non-dumpable, and /proc/self/timens_offsets of a non-dumpable process belongs
    // to global root — unwritable from inside (EACCES). We still hold every capability in
    // the new user namespace here, which owns the new time namespace.
    if let Some(offsets) = &plan.time_offsets {
        enter_new_time_namespace(err, offsets);
    }

    // oom_score_adj before the switch to root of a new user namespace, for the same reason
    // as timens_offsets: after it the process is non-dumpable and its /proc files belong
    // to global root. /proc is still the caller's here (no mount step has run).
    if let (None, Some(text)) = (plan.join, &plan.oom_score_adj) {
        write_oom_score_adj(err, text);
    }

    // A process joining a running sandbox is visible to the processes already in it (in
    // its pid namespace from birth, or as the payload forked into it) while it still runs
    // the caller's program image: non-dumpable from here to exec (which resets it), none
    // of them can open its /proc/PID/exe — the caller's binary — to overwrite it later
    // (CVE-2019-5736), nor read its memory. Until here it holds every capability of the
    // caller, which the same check requires of whoever looks.
    // A vfork-style child (`Command::join_unobserved`: nothing in the target can look) skips
    // it: the flag belongs to the memory it shares with the caller.
    if plan.join.is_some() && !vforked {
        check(err, Stage::Prctl, raw::prctl(libc::PR_SET_DUMPABLE, 0));
    }

    if let Some(root) = &plan.become_userns_root {
        set_identity(err, root);
    }

    if let Err((stage, errno, step)) = fds.install() {
        fail(err, stage, errno, step);
    }

    // Before the mount steps, as runc joins it, and owned by the new user namespace's root.
    if let Some(ring) = &plan.session_keyring {
        join_session_keyring(err, ring);
    }

    if plan.unshare_cgroup {
        check(err, Stage::CgroupNamespace, raw::unshare(libc::CLONE_NEWCGROUP));
    }

    if let Some(name) = &plan.hostname {
        check(err, Stage::Hostname, raw::sethostname(name.as_bytes()));
    }
    if let Some(name) = &plan.domainname {
        check(err, Stage::Domainname, raw::setdomainname(name.as_bytes()));
    }
    if plan.loopback_up {
        check(err, Stage::Loopback, raw::loopback_up());
    }

    // Peer binds copy their sources while the new namespace's mounts are still in the
    // caller's peer groups: the root propagation below cuts those ties.
    copy_peer_trees(err, plan);
    if let Some(flags) = plan.root_propagation {
        let e = raw::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null());
        check(err, Stage::RootPropagation, e);
    }
    let landlock = fds.get(FdRole::Landlock).unwrap_or(-1);
    let mut masks = MaskSource::default();
    for (i, step) in plan.steps.iter().enumerate() {
        let beneath = plan.beneath.get(i).and_then(Option::as_ref);
        let injected = crate::failpoint::child_step_errno(Stage::Mount as u32, i as u32);
        if injected != 0 {
            fail(err, Stage::Mount, injected, Some(i));
        }
        if let Err((stage, errno)) = run_step(step, landlock, &plan.peer_trees, beneath, &mut masks) {
            fail(err, stage, errno, Some(i));
        }
    }

    if let Some(cwd) = &plan.cwd {
        check(err, Stage::Chdir, raw::chdir(cwd.as_ptr()));
    }

    // In the final root: its /dev/ptmx (a container's own devpts instance).
    if let Some(t) = &plan.terminal {
        open_terminal(err, fds, t);
    }

    // Limits and umask while still privileged: raising a hard limit needs
    // CAP_SYS_RESOURCE, which the capability step below may drop.
    for (i, (resource, limits)) in plan.rlimits.iter().enumerate() {
        inject(err, Stage::Rlimit);
        let e = raw::setrlimit(*resource, limits);
        if e != 0 {
            fail(err, Stage::Rlimit, e, Some(i));
        }
    }
    if let Some(mask) = plan.umask {
        raw::umask(mask);
    }

    // Read before any filter: a notified getpid would wait for a parent that is not
    // listening yet (it takes the listener only once we exec).
    let own_pid = raw::getpid();
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which the identity
    // and capability steps below may drop: then the filter goes in here, before them, as
    // runc does (so those steps, the hooks and the start gate run under it).
    let seccomp_early =
        plan.seccomp.is_some() && !plan.no_new_privs && (plan.caps.is_some() || plan.identity.is_some());
    if seccomp_early {
        install_seccomp(plan, err, fds);
    }

    // The bounding set needs CAP_SETPCAP in the effective set, which the change to a
    // non-root uid clears: drop it first, and keep the permitted set across that change.
    if let Some(caps) = &plan.caps {
        drop_bounding(err, caps);
        if caps.keep_caps && plan.identity.is_some() {
            check(err, Stage::KeepCaps, raw::prctl(libc::PR_SET_KEEPCAPS, 1));
        }
    }

    if let Some(id) = &plan.identity {
        set_identity(err, id);
    }

    if let Some(caps) = &plan.caps {
        set_capabilities(err, caps);
    }

    // After the last identity change: the kernel clears the parent-death signal whenever
    // the effective uid or gid changes (setresuid/setresgid above, the switch to root of a
    // new user namespace).
    if let Some(sig) = plan.pdeathsig {
        arm_parent_death_signal(err, fds, sig);
    }

    for (i, hook) in hooks.iter_mut().enumerate() {
        if let Err(e) = hook() {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            // Dropping the error could free memory: leak it, we exit right away.
            std::mem::forget(e);
            fail(err, Stage::PreExec, errno, Some(i));
        }
    }

    let err = match &plan.start_gate {
        Some(name) => {
            wait_at_start_gate(plan, err, fds, name);
            AFTER_GATE
        }
        None => err,
    };

    // Confinement last, in this order: no_new_privs (which an unprivileged Landlock and
    // seccomp need), Landlock, then seccomp, so that the plan's own calls are not
    // filtered. What follows is only the exec (with an init: its fork and exec).
    if plan.no_new_privs {
        check(err, Stage::NoNewPrivs, raw::prctl4(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0));
    }
    if plan.landlock {
        match fds.get(FdRole::Landlock) {
            Some(fd) => {
                check(err, Stage::Landlock, raw::landlock_restrict_self(fd));
                raw::close(fd);
            }
            None => fail(err, Stage::Landlock, libc::EBADF, None),
        }
    }
    if !seccomp_early {
        install_seccomp(plan, err, fds);
    }

    if plan.init {
        match fds.get(FdRole::InitExe) {
            Some(init_exe) => run_init(plan, init_exe, err, own_pid),
            None => fail(err, Stage::InitExec, libc::EBADF, None),
        }
    }
    exec_payload(plan, err)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`, then `KEYCTL_SETPERM` when asked. `ENOSYS`
/// (no keys in this kernel) is skipped, as runc does.
fn join_session_keyring(err: RawFd, ring: &KeyringPlan) {
    const KEYCTL_SETPERM: libc::c_int = 5;
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    inject(err, Stage::SessionKeyring);
    match raw::keyctl(KEYCTL_JOIN_SESSION_KEYRING, ring.name.as_ptr() as usize, 0) {
        Ok(serial) => {
            if let Some(perm) = ring.perm
                && let Err(e) = raw::keyctl(KEYCTL_SETPERM, serial as usize, perm as usize)
            {
                fail(err, Stage::SessionKeyring, e, None);
            }
        }
        Err(libc::ENOSYS) => {}
        Err(e) => fail(err, Stage::SessionKeyring, e, None),
    }
}

/// The terminal of `Command::terminal` (see there): a new pty from this root's
/// `/dev/ptmx`, its master sent over the console socket, its peer on 0, 1 and 2 and the
/// controlling terminal of a new session.
fn open_terminal(err: RawFd, fds: &ChildFds, t: &TerminalPlan) {
    let Some(sock) = fds.get(FdRole::Console) else { fail(err, Stage::ConsoleSocket, libc::EBADF, None) };
    inject(err, Stage::Terminal);
    let master = match raw::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) {
        Ok(fd) => fd,
        Err(e) => fail(err, Stage::Terminal, e, None),
    };
    let unlock: libc::c_int = 0;
    let terminal = |r: Result<isize, i32>| match r {
        Ok(v) => v,
        Err(e) => fail(err, Stage::Terminal, e, None),
    };
    terminal(raw::ioctl(master, libc::TIOCSPTLCK as libc::c_ulong, &unlock as *const libc::c_int as usize));
    let flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as usize;
    let peer = terminal(raw::ioctl(master, libc::TIOCGPTPEER as libc::c_ulong, flags)) as RawFd;
    if let Some(size) = &t.size {
        terminal(raw::ioctl(master, libc::TIOCSWINSZ as libc::c_ulong, size as *const libc::winsize as usize));
    }
    if let Some(uid) = t.owner {
        check(err, Stage::Terminal, raw::fchown(peer, uid, u32::MAX));
    }
    if t.console {
        bind_console(err, master);
    }
    check(err, Stage::ConsoleSocket, raw::send_fd_named(sock, master, b"/dev/ptmx"));
    raw::close(master);
    raw::close(sock);
    for target in 0..3 {
        check(err, Stage::ControllingTerminal, raw::dup2(peer, target));
    }
    raw::close(peer);
    check(err, Stage::ControllingTerminal, raw::setsid());
    if let Err(e) = raw::ioctl(0, libc::TIOCSCTTY as libc::c_ulong, 0) {
        fail(err, Stage::ControllingTerminal, e, None);
    }
}

/// Writes `prefix` and `n` in decimal, NUL-terminated, into `out` (zeroed, 32 bytes: room
/// for a prefix of up to 21 bytes), on the caller's stack: no allocation.
fn numbered_path(out: &mut [u8; 32], prefix: &[u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let (head, tail) = out.split_at_mut(prefix.len().min(21));
    head.copy_from_slice(&prefix[..head.len()]);
    for (to, digit) in tail.iter_mut().zip(digits[..len].iter().rev()) {
        *to = *digit;
    }
}

/// `/dev/console` becomes the terminal behind `master`: its peer `/dev/pts/N` bind-mounted
/// there, the mount point created (an empty regular file) where there is none.
fn bind_console(err: RawFd, master: RawFd) {
    let mut n: libc::c_uint = 0;
    if let Err(e) = raw::ioctl(master, libc::TIOCGPTN as libc::c_ulong, &mut n as *mut libc::c_uint as usize) {
        fail(err, Stage::Terminal, e, None);
    }
    let mut path = [0u8; 32];
    numbered_path(&mut path, b"/dev/pts/", n);
    let console = c"/dev/console".as_ptr();
    let made = raw::mknodat(libc::AT_FDCWD, console, libc::S_IFREG | 0o666, 0);
    if made != 0 && made != libc::EEXIST {
        fail(err, Stage::Terminal, made, None);
    }
    let source = path.as_ptr().cast::<libc::c_char>();
    check(err, Stage::Terminal, raw::mount(source, console, std::ptr::null(), libc::MS_BIND, std::ptr::null()));
}

/// `seccomp(SECCOMP_SET_MODE_FILTER)` of the plan's program; a notify program's listener
/// goes to the parent over the plan's socket.
fn install_seccomp(plan: &Plan, err: RawFd, fds: &ChildFds) {
    let Some(sc) = &plan.seccomp else { return };
    inject(err, Stage::Seccomp);
    let flags = sc.flags | if sc.notify { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { 0 };
    let listener = match raw::seccomp_filter(&sc.filter, flags) {
        Ok(fd) => fd,
        Err(e) => fail(err, Stage::Seccomp, e, None),
    };
    if sc.notify {
        match fds.get(FdRole::SeccompNotify) {
            Some(sock) => {
                check(err, Stage::SeccompNotify, raw::send_fd(sock, listener));
                raw::close(listener);
                raw::close(sock);
            }
            None => fail(err, Stage::SeccompNotify, libc::EBADF, None),
        }
    }
}

/// The start gate (`Command::start_gate`): checks that the program is there to exec (an
/// executable candidate path, else [`Stage::Exec`] as the exec would report it) and the
/// fifo too ([`Stage::StartGate`]), closes the error pipe (the parent's spawn returns), then
/// opens the fifo for writing — blocking until the starter opens it for reading — writes one
/// byte and closes it. Past the close, a failure can only exit with 127.
fn wait_at_start_gate(plan: &Plan, err: RawFd, fds: &ChildFds, name: &std::ffi::CStr) {
    if !plan.init {
        let mut last = libc::ENOENT;
        let found = plan.exec_candidates.iter().any(|path| {
            last = raw::access(path.as_ptr(), libc::X_OK);
            last == 0
        });
        if !found {
            fail(err, Stage::Exec, last, None);
        }
    }
    let Some(dir) = fds.get(FdRole::StartGate) else { fail(err, Stage::StartGate, libc::EBADF, None) };
    match raw::openat(dir, name.as_ptr(), libc::O_PATH, 0) {
        Ok(fd) => raw::close(fd),
        Err(e) => fail(err, Stage::StartGate, e, None),
    }
    raw::close(err);
    let fifo = match raw::openat(dir, name.as_ptr(), libc::O_WRONLY, 0) {
        Ok(fd) => fd,
        Err(_) => raw::exit(127),
    };
    raw::close(dir);
    if raw::write_all(fifo, b"0") != 0 {
        raw::exit(127);
    }
    raw::close(fifo);
}

/// `PR_SET_PDEATHSIG`, then the check that the parent did not die before it was armed (the
/// kernel only signals a death that happens after the prctl). Two witnesses, read without
/// waiting: the pidfd of the spawning thread (`PIDFD_THREAD`, kernel 6.9+) polls readable
/// once that thread has exited; and the error pipe reports `POLLERR` once its read end is
/// closed, which the parent keeps open until we exec — gone only with the parent process.
/// `getppid()` cannot tell: it is 0 in a new pid namespace, and it names the process, not
/// the thread. If the parent is gone we leave as the signal would have made us (exit
/// status 128 + signal; nothing is reported, nobody is left to read it).
fn arm_parent_death_signal(err: RawFd, fds: &ChildFds, sig: libc::c_int) {
    check(err, Stage::Prctl, raw::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong));
    let thread_gone =
        fds.get(FdRole::ParentThread).is_some_and(|fd| raw::poll_now(fd, libc::POLLIN).is_ok_and(|r| r != 0));
    let process_gone = raw::poll_now(err, libc::POLLOUT).is_ok_and(|r| r & libc::POLLERR != 0);
    if thread_gone || process_gone {
        raw::exit(128 + sig);
    }
}

/// `PR_CAPBSET_DROP` of every capability not in the bounding set. A number above the
/// last capability this crate names that the kernel does not know either (`EINVAL`) is
/// skipped: only asked for when `cap_last_cap` could not be read.
fn drop_bounding(err: RawFd, caps: &CapsPlan) {
    inject(err, Stage::CapBounding);
    for &cap in &caps.bounding_drop {
        let e = raw::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
        if e != 0 && !(e == libc::EINVAL && cap > caps.known_last) {
            fail(err, Stage::CapBounding, e, Some(cap as usize));
        }
    }
}

/// `capset` of the effective, permitted and inheritable sets, then the ambient set (cleared,
/// then raised one by one).
fn set_capabilities(err: RawFd, caps: &CapsPlan) {
    check(err, Stage::Capabilities, raw::capset(caps.effective, caps.permitted, caps.inheritable));
    let e = raw::prctl4(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0);
    check(err, Stage::AmbientCapabilities, e);
    for &cap in &caps.ambient {
        let e = raw::prctl4(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0);
        if e != 0 {
            fail(err, Stage::AmbientCapabilities, e, Some(cap as usize));
        }
    }
}

fn write_oom_score_adj(err: RawFd, text: &CString) {
    let fd = match raw::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY) {
        Ok(fd) => fd,
        Err(e) => fail(err, Stage::OomScoreAdj, e, None),
    };
    let e = raw::write_all(fd, text.as_bytes());
    raw::close(fd);
    check(err, Stage::OomScoreAdj, e);
}

/// What a vfork-style child needs, passed through `clone`'s argument pointer.
pub(crate) struct VforkArgs<'a> {
    pub plan: &'a Plan,
    pub fds: &'a ChildFds,
}

/// Entry point of a child created by [`crate::sys::vfork_like`] (`CLONE_VM | CLONE_VFORK`):
/// it shares the parent's memory, on its own stack, while the parent is suspended until it
/// execs or exits.
///
/// Used only for plans that write no memory but the child's own stack: no `pre_exec` hooks
/// (user code), no init (it forks and never execs), no new time namespace (entering one
/// needs an mm of its own), no sync point (the parent cannot act while suspended), and a
/// join only when the caller promised nothing in the target looks (`Command::
/// join_unobserved`; the child then stays dumpable) and not of a user or time namespace.
/// Everything `run_child` calls is a bare system call ([`raw::sc`]) that writes no
/// `errno` and no cancellation state into the TLS it runs on (the suspended parent
/// thread's); the results live in locals on this stack. The signal handler table and the
/// fd table are not shared (no `CLONE_SIGHAND`, no `CLONE_FILES`), so resetting handlers
/// and shedding descriptors here leaves the parent's alone, as in glibc's `posix_spawn`.
pub(crate) extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `VforkArgs` on the parent's stack; the parent stays suspended
    // (CLONE_VFORK), so it and everything it borrows live until we exec or exit.
    let args = unsafe { &*(arg as *const VforkArgs<'_>) };
    // SAFETY: a fresh child with every signal blocked (inherited mask), plan and fds
    // prepared before the clone, and none of the features listed above.
    unsafe { run_child(args.plan, args.fds, &mut [], true) }
}

/// `unshare(CLONE_NEWTIME)` only affects children; write the offsets (allowed until a
/// process enters), then enter through `/proc/self/ns/time_for_children`.
fn enter_new_time_namespace(err: RawFd, offsets: &CString) {
    check(err, Stage::TimeNamespace, raw::unshare(crate::sys::consts::CLONE_NEWTIME as libc::c_int));
    if !offsets.as_bytes().is_empty() {
        let fd = match raw::open(c"/proc/self/timens_offsets".as_ptr(), libc::O_WRONLY) {
            Ok(fd) => fd,
            Err(e) => fail(err, Stage::TimeOffsets, e, None),
        };
        check(err, Stage::TimeOffsets, raw::write_all(fd, offsets.as_bytes()));
        raw::close(fd);
    }
    let fd = match raw::open(c"/proc/self/ns/time_for_children".as_ptr(), libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => fail(err, Stage::TimeNamespace, e, None),
    };
    check(err, Stage::TimeNamespace, raw::setns(fd, crate::sys::consts::CLONE_NEWTIME as libc::c_int));
    raw::close(fd);
}

/// Tries each candidate path like `execvp`: remember EACCES, skip ENOENT-like failures,
/// stop at any other error.
fn exec_payload(plan: &Plan, err: RawFd) -> ! {
    inject(err, Stage::Exec);
    raw::set_sigmask(0);
    let mut last = libc::ENOENT;
    let mut saw_eacces = false;
    for path in &plan.exec_candidates {
        let e = raw::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        match e {
            libc::EACCES => saw_eacces = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => {
                last = other;
                break;
            }
        }
        last = e;
    }
    if saw_eacces && last != libc::EACCES && matches!(last, libc::ENOENT | libc::ENOTDIR) {
        last = libc::EACCES;
    }
    if err == AFTER_GATE {
        report_after_gate(b"exec", plan.argv.first(), last);
    }
    fail(err, Stage::Exec, last, None)
}

/// After the start gate ([`AFTER_GATE`]): `WHAT[ NAME]: ERROR` on stderr, exit status 1.
/// No allocation: the line is built in a buffer on the stack (cut at its size).
fn report_after_gate(what: &[u8], name: Option<&std::ffi::CStr>, errno: i32) -> ! {
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - 1 - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(what);
    if let Some(name) = name {
        put(b" ");
        put(name.to_bytes());
    }
    put(b": ");
    match errno_text(errno) {
        Some(text) => put(text),
        None => {
            let mut digits = [0u8; 12];
            let text = decimal(errno.unsigned_abs(), &mut digits);
            // SAFETY: `decimal` wrote a NUL-terminated string into `digits`, which lives on.
            let text = unsafe { std::ffi::CStr::from_ptr(text) };
            put(b"errno ");
            put(text.to_bytes());
        }
    }
    put(b"\n");
    raw::write_all(2, &buf[..len]);
    raw::exit(1)
}

/// The text Go (and so runc) prints for the errors an exec reports.
fn errno_text(errno: i32) -> Option<&'static [u8]> {
    Some(match errno {
        libc::ENOENT => b"no such file or directory",
        libc::EACCES => b"permission denied",
        libc::EPERM => b"operation not permitted",
        libc::ENOEXEC => b"exec format error",
        libc::ENOTDIR => b"not a directory",
        libc::EISDIR => b"is a directory",
        libc::ELOOP => b"too many levels of symbolic links",
        libc::E2BIG => b"argument list too long",
        libc::ENOMEM => b"cannot allocate memory",
        libc::ETXTBSY => b"text file busy",
        libc::EINVAL => b"invalid argument",
        libc::ELIBBAD => b"accessing a corrupted shared library",
        _ => return None,
    })
}

/// Writes `v` in decimal, NUL-terminated, into `buf`; returns the text's start.
fn decimal(mut v: u32, buf: &mut [u8; 12]) -> *const libc::c_char {
    let mut i = buf.len() - 1;
    buf[i] = 0;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf[i..].as_ptr().cast()
}

/// The init: fork the payload, then become `nk-init` (see [`crate::init_exe`]), which
/// forwards signals to it, reaps every child that ends up with us, and exits with the
/// payload's status (128 + signal if it was killed).
///
/// No process of the sandbox runs code of its own while anything in it still holds the
/// parent's memory image: the payload waits on `gate` until `nk-init` runs and writes one
/// byte (EOF: the init never came up, leave without running the program), and execs only
/// then. Every signal stays blocked throughout — in the payload until it execs, here
/// across `execveat` — so nothing sent to either is lost.
fn run_init(plan: &Plan, init_exe: RawFd, err: RawFd, init_pid: libc::pid_t) -> ! {
    if plan.init_subreaper {
        check(err, Stage::Prctl, raw::prctl(libc::PR_SET_CHILD_SUBREAPER, 1));
    }
    // An ignored SIGCHLD would make the kernel reap the payload for us and lose its
    // status: default until the fork, ignored again in the payload, as exec would keep it.
    let chld_ignored = raw::sigchld_ignored();
    if chld_ignored {
        raw::set_sigchld_ignored(false);
    }
    if plan.init_hold {
        // No payload: nk-init alone holds the namespaces (argv without a payload).
        let mut keep = [err, init_exe];
        keep.sort_unstable();
        raw::close_all_except(&keep);
        let argv = [c"nk-init".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        inject(err, Stage::InitExec);
        let e = raw::execveat_fd(init_exe, &argv, &envp);
        fail(err, Stage::InitExec, e, None);
    }
    inject(err, Stage::InitFork);
    let (gate_read, gate_write) = match raw::pipe_cloexec() {
        Ok(p) => p,
        Err(e) => fail(err, Stage::InitFork, e, None),
    };
    let payload = match raw::fork() {
        Ok(pid) => pid,
        Err(e) => fail(err, Stage::InitFork, e, None),
    };
    if payload == 0 {
        raw::close(gate_write);
        if chld_ignored {
            raw::set_sigchld_ignored(true);
        }
        // fork cleared the parent-death signal: the payload dies with the init. If the init
        // is already gone (we were reparented), leave as the signal would have made us.
        if let Some(sig) = plan.pdeathsig {
            check(err, Stage::Prctl, raw::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong));
            if raw::getppid() != init_pid {
                raw::exit(128 + sig);
            }
        }
        match raw::read_byte(gate_read) {
            Ok(true) => {}
            // The init failed to exec (it reports that) or was killed: do not run.
            _ => raw::exit(127),
        }
        raw::close(gate_read);
        exec_payload(plan, err);
    }
    raw::close(gate_read);
    // Keep only what the exec needs: the error pipe and the memfd (both close-on-exec)
    // and the gate, handed to nk-init. Stdio goes too: readers of the payload's output are
    // not kept waiting on us.
    let mut keep = [err, init_exe, gate_write];
    keep.sort_unstable();
    raw::close_all_except(&keep);
    check(err, Stage::InitExec, raw::clear_cloexec(gate_write));
    let mut pid_buf = [0u8; 12];
    let mut fd_buf = [0u8; 12];
    let argv = [
        c"nk-init".as_ptr(),
        decimal(payload as u32, &mut pid_buf),
        decimal(gate_write as u32, &mut fd_buf),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null()];
    let e = raw::execveat_fd(init_exe, &argv, &envp);
    // The payload sees EOF on the gate and leaves; wait for it so no zombie is left behind.
    raw::close(gate_write);
    raw::wait_pid(payload);
    fail(err, Stage::InitExec, e, None)
}

// ---------------------------------------------------------------------------------------
// Mount steps (`crate::mount::PreparedStep`), run after the hostname and before the chdir.
// ---------------------------------------------------------------------------------------

/// Copies the source tree of every peer bind (`open_tree`) into its slot of
/// `plan.peer_trees`; a failure names the step.
fn copy_peer_trees(err: RawFd, plan: &Plan) {
    for (i, step) in plan.steps.iter().enumerate() {
        if let PreparedStep::PeerBind { source, recursive, slot, .. } = step {
            match raw::open_tree_clone(source.as_ptr(), *recursive) {
                Ok(fd) => plan.peer_trees[*slot].store(fd, Ordering::Relaxed),
                Err(e) => fail(err, Stage::Mount, e, Some(i)),
            }
        }
    }
}

fn opt_ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// Runs a mount step in the child (`landlock`: the Landlock ruleset, -1 without one;
/// `beneath`: where its path lies below a later `pivot_root`'s new root, resolved inside
/// that root). Allocation-free; returns (stage, errno) on failure.
pub(crate) fn run_step(
    step: &PreparedStep,
    landlock: RawFd,
    trees: &[AtomicI32],
    beneath: Option<&Beneath>,
    masks: &mut MaskSource,
) -> Result<(), (Stage, i32)> {
    let fail = |stage: Stage| move |errno: i32| (stage, errno);
    let Some(b) = beneath else {
        return run_step_at(step, landlock, trees, None, masks);
    };
    match step {
        // Created in their parent directory as resolved inside the root.
        PreparedStep::MakeDir { mode, .. } => {
            let dir = FdPath::resolve(b, &b.parent).map_err(fail(Stage::Mount))?;
            match raw::mkdirat(dir.fd, b.name.as_ptr(), *mode) {
                0 | libc::EEXIST => Ok(()),
                e => Err((Stage::Mount, e)),
            }
        }
        PreparedStep::WriteFile { contents, mode, .. } => {
            let dir = FdPath::resolve(b, &b.parent).map_err(fail(Stage::Mount))?;
            write_file_at(dir.fd, b.name.as_ptr(), contents.as_deref(), *mode).map_err(fail(Stage::Mount))
        }
        PreparedStep::MakeNode { mode, dev, uid, gid, .. } => {
            let dir = FdPath::resolve(b, &b.parent).map_err(fail(Stage::Mount))?;
            make_node(dir.fd, b.name.as_ptr(), *mode, *dev, *uid, *gid).map_err(fail(Stage::Mount))
        }
        PreparedStep::Symlink { target, .. } => {
            let dir = FdPath::resolve(b, &b.parent).map_err(fail(Stage::Mount))?;
            match raw::symlinkat(target.as_ptr(), dir.fd, b.name.as_ptr()) {
                0 | libc::EEXIST => Ok(()),
                e => Err((Stage::Mount, e)),
            }
        }
        // Mounted on (or looked at) through the descriptor of the path resolved inside the
        // root (`/proc/self/fd/N`).
        PreparedStep::Mask { .. } => match FdPath::resolve(b, &b.rel) {
            Ok(at) => run_step_at(step, landlock, trees, Some(&at), &mut MaskSource::default()),
            Err(libc::ENOENT) => Ok(()),
            Err(e) => Err((Stage::Mount, e)),
        },
        _ => {
            let at = FdPath::resolve(b, &b.rel).map_err(fail(Stage::Mount))?;
            let result = run_step_at(step, landlock, trees, Some(&at), masks);
            // A read-only bind is remounted on the new mount, which the descriptor (of the
            // mount point beneath it) does not name: resolve again.
            if let (
                Ok(()),
                PreparedStep::Mount { read_only: ro @ (ReadOnly::Top | ReadOnly::Tree), .. }
                | PreparedStep::PeerBind { read_only: ro @ (ReadOnly::Top | ReadOnly::Tree), .. },
            ) = (&result, step)
            {
                let top = FdPath::resolve(b, &b.rel).map_err(fail(Stage::Mount))?;
                return match ro {
                    ReadOnly::Top => remount_ro(top.as_ptr()),
                    _ => remount_ro_tree(top.as_ptr()),
                }
                .map_err(fail(Stage::Mount));
            }
            result
        }
    }
}

/// A step on its path as written, or (`at`) on a descriptor's `/proc/self/fd/N` path, where
/// the read-only remount of a bind is left to the caller.
fn run_step_at(
    step: &PreparedStep,
    landlock: RawFd,
    trees: &[AtomicI32],
    at: Option<&FdPath>,
    masks: &mut MaskSource,
) -> Result<(), (Stage, i32)> {
    let fail = |stage: Stage| move |errno: i32| (stage, errno);
    let path_of = |written: &CString| at.map_or(written.as_ptr(), FdPath::as_ptr);
    match step {
        PreparedStep::Mount { source, target, fstype, flags, data, read_only } => {
            let target = path_of(target);
            let e = raw::mount(opt_ptr(source), target, opt_ptr(fstype), *flags, opt_ptr(data));
            if e != 0 {
                return Err((Stage::Mount, e));
            }
            match (read_only, at) {
                (ReadOnly::No, _) | (_, Some(_)) => Ok(()),
                (ReadOnly::Top, None) => remount_ro(target).map_err(fail(Stage::Mount)),
                (ReadOnly::Tree, None) => remount_ro_tree(target).map_err(fail(Stage::Mount)),
            }
        }
        PreparedStep::Propagation { target, flags } => {
            nonzero(raw::mount(std::ptr::null(), path_of(target), std::ptr::null(), *flags, std::ptr::null()))
                .map_err(fail(Stage::Mount))
        }
        PreparedStep::PeerBind { target, read_only, slot, .. } => {
            let target = path_of(target);
            let tree = trees[*slot].swap(-1, Ordering::Relaxed);
            let e = raw::move_mount_to(tree, target);
            raw::close(tree);
            nonzero(e).map_err(fail(Stage::Mount))?;
            match (read_only, at) {
                (ReadOnly::No, _) | (_, Some(_)) => Ok(()),
                (ReadOnly::Top, None) => remount_ro(target).map_err(fail(Stage::Mount)),
                (ReadOnly::Tree, None) => remount_ro_tree(target).map_err(fail(Stage::Mount)),
            }
        }
        PreparedStep::PivotRoot { new_root } => pivot_root(new_root.as_ptr()).map_err(fail(Stage::PivotRoot)),
        PreparedStep::MoveRoot { new_root } => move_root(new_root.as_ptr()).map_err(fail(Stage::PivotRoot)),
        PreparedStep::RemountReadOnly { target, recursive } => {
            let target = path_of(target);
            if *recursive { remount_ro_tree(target) } else { remount_ro(target) }.map_err(fail(Stage::Mount))
        }
        PreparedStep::Mask { target } => match at {
            // Masked through a descriptor path (below a later new root): on its own.
            Some(at) => mask(at.as_ptr(), &mut MaskSource::default()).map_err(fail(Stage::Mount)),
            None => mask(target.as_ptr(), masks).map_err(fail(Stage::Mount)),
        },
        PreparedStep::LandlockRule { path, access } => {
            // A ruleset that enforces nothing on this kernel (allowed degraded) has no
            // descriptor: its rules have nothing to allow. Without any ruleset the step
            // was refused by validation.
            if landlock < 0 {
                return Ok(());
            }
            let fd = raw::open(path_of(path), libc::O_PATH).map_err(fail(Stage::Landlock))?;
            let e = raw::landlock_add_path_rule(landlock, fd, *access);
            raw::close(fd);
            nonzero(e).map_err(fail(Stage::Landlock))
        }
        PreparedStep::MakeDir { path, mode } => match raw::mkdir(path.as_ptr(), *mode) {
            0 | libc::EEXIST => Ok(()),
            e => Err((Stage::Mount, e)),
        },
        PreparedStep::WriteFile { path, contents, mode } => {
            write_file_at(libc::AT_FDCWD, path.as_ptr(), contents.as_deref(), *mode).map_err(fail(Stage::Mount))
        }
        PreparedStep::MakeNode { path, mode, dev, uid, gid } => {
            make_node(libc::AT_FDCWD, path.as_ptr(), *mode, *dev, *uid, *gid).map_err(fail(Stage::Mount))
        }
        PreparedStep::Symlink { target, path } => match raw::symlink(target.as_ptr(), path.as_ptr()) {
            0 | libc::EEXIST => Ok(()),
            e => Err((Stage::Mount, e)),
        },
    }
}

/// An `O_PATH` descriptor of a path resolved inside a new root, and its
/// `/proc/self/fd/N` name (closed on drop).
pub(crate) struct FdPath {
    fd: RawFd,
    path: [u8; 32],
}

impl FdPath {
    /// `rel` (of `b`) resolved inside `b.root`: with `openat2(RESOLVE_IN_ROOT)`, where
    /// absolute symlinks and `..` stay inside; before Linux 5.6, one component at a time,
    /// refusing any symbolic link or `..` (fail closed: ELOOP / EXDEV).
    fn resolve(b: &Beneath, rel: &CString) -> Result<FdPath, i32> {
        let root = raw::open(b.root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY)?;
        let fd = match raw::openat2_in_root(root, rel.as_ptr()) {
            Err(libc::ENOSYS) => walk_without_symlinks(root, rel.to_bytes()),
            other => other,
        };
        raw::close(root);
        let fd = fd?;
        let mut path = [0u8; 32];
        numbered_path(&mut path, b"/proc/self/fd/", fd as u32);
        Ok(FdPath { fd, path })
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.path.as_ptr().cast()
    }
}

impl Drop for FdPath {
    fn drop(&mut self) {
        raw::close(self.fd);
    }
}

/// `rel` below `root`, component by component without following anything.
fn walk_without_symlinks(root: RawFd, rel: &[u8]) -> Result<RawFd, i32> {
    let mut cur = raw::openat(root, c".".as_ptr(), libc::O_PATH, 0)?;
    for comp in rel.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        let mut name = [0u8; 256];
        if comp == b".." || comp.len() >= name.len() {
            raw::close(cur);
            return Err(if comp == b".." { libc::EXDEV } else { libc::ENAMETOOLONG });
        }
        name[..comp.len()].copy_from_slice(comp);
        let next = raw::openat(cur, name.as_ptr().cast(), libc::O_PATH | libc::O_NOFOLLOW, 0);
        raw::close(cur);
        let next = next?;
        match raw::is_symlink_fd(next) {
            Ok(false) => cur = next,
            Ok(true) => {
                raw::close(next);
                return Err(libc::ELOOP);
            }
            Err(e) => {
                raw::close(next);
                return Err(e);
            }
        }
    }
    Ok(cur)
}

/// Creates `name` in `dir` (kept as it is when `contents` is `None`), or truncates it and
/// writes `contents`; never through a symbolic link at `name`.
/// `mknodat`, then the exact permission bits and the owner; an existing entry is left alone.
fn make_node(
    dir: RawFd,
    name: *const libc::c_char,
    mode: libc::mode_t,
    dev: libc::dev_t,
    uid: u32,
    gid: u32,
) -> Result<(), i32> {
    match raw::mknodat(dir, name, mode, dev) {
        0 => {}
        libc::EEXIST => return Ok(()),
        e => return Err(e),
    }
    nonzero(raw::fchmodat(dir, name, mode & 0o7777))?;
    nonzero(raw::fchownat(dir, name, uid, gid))
}

fn write_file_at(
    dir: RawFd,
    name: *const libc::c_char,
    contents: Option<&[u8]>,
    mode: libc::mode_t,
) -> Result<(), i32> {
    if contents.is_none() {
        // Kept as it is: an existing file needs no write access (a read-only root's
        // existing mount point is fine).
        if let Ok(fd) = raw::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            raw::close(fd);
            return Ok(());
        }
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | if contents.is_some() { libc::O_TRUNC } else { 0 };
    let fd = raw::openat(dir, name, flags, mode)?;
    let e = contents.map_or(0, |c| raw::write_all(fd, c));
    raw::close(fd);
    nonzero(e)
}

fn nonzero(errno: i32) -> Result<(), i32> {
    if errno == 0 { Ok(()) } else { Err(errno) }
}

/// Bind-remount read-only, keeping the flags the kernel may have locked (nosuid, nodev,
/// noexec, atime flags) — dropping them is EPERM inside a user namespace.
fn remount_ro(target: *const libc::c_char) -> Result<(), i32> {
    let kept = raw::mount_flags(target)?;
    let flags = kept | libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    nonzero(raw::mount(std::ptr::null(), target, std::ptr::null(), flags, std::ptr::null()))
}

fn remount_ro_tree(target: *const libc::c_char) -> Result<(), i32> {
    match raw::make_tree_read_only(target) {
        0 => Ok(()),
        libc::ENOSYS => remount_ro(target),
        e => Err(e),
    }
}

fn pivot_root(new_root: *const libc::c_char) -> Result<(), i32> {
    let dot = c".".as_ptr();
    // The new root must be a mount point: bind it onto itself.
    nonzero(raw::mount(new_root, new_root, std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
    let old_root = raw::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY)?;
    let result = (|| {
        nonzero(raw::chdir(new_root))?;
        // pivot_root(".", "."): the old root ends up stacked on top of the new one at "/".
        nonzero(raw::pivot_root(dot, dot))?;
        // Into the old root (as runc): "." must name it, not the new root below it, which the
        // next step would otherwise change too (a peer bind made a slave).
        nonzero(raw::fchdir(old_root))?;
        // Never let the detach below propagate back to the host's mounts.
        nonzero(raw::mount(std::ptr::null(), dot, std::ptr::null(), libc::MS_SLAVE | libc::MS_REC, std::ptr::null()))?;
        nonzero(raw::umount2(dot, libc::MNT_DETACH))?;
        nonzero(raw::chdir(c"/".as_ptr()))
    })();
    raw::close(old_root);
    result
}

/// runc's `msMoveRoot`: the new root (made a mount point) moved onto `/`, then `chroot`.
fn move_root(new_root: *const libc::c_char) -> Result<(), i32> {
    let dot = c".".as_ptr();
    nonzero(raw::mount(new_root, new_root, std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
    nonzero(raw::chdir(new_root))?;
    nonzero(raw::mount(dot, c"/".as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()))?;
    nonzero(raw::chroot(dot))?;
    nonzero(raw::chdir(c"/".as_ptr()))
}

/// The first directory a plan masked (its read-only empty tmpfs), which later masked
/// directories bind instead of mounting a tmpfs each (a bind costs about half as much).
/// Points into the plan's steps, which outlive the loop.
#[derive(Default)]
pub(crate) struct MaskSource(Option<*const libc::c_char>);

fn mask(target: *const libc::c_char, source: &mut MaskSource) -> Result<(), i32> {
    let is_dir = match raw::is_dir(target) {
        Ok(d) => d,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let e = match (is_dir, source.0) {
        (true, Some(empty)) => raw::mount(empty, target, std::ptr::null(), libc::MS_BIND, std::ptr::null()),
        (true, None) => {
            let e =
                raw::mount(c"tmpfs".as_ptr(), target, c"tmpfs".as_ptr(), libc::MS_RDONLY, c"size=0,mode=000".as_ptr());
            if e == 0 {
                source.0 = Some(target);
            }
            e
        }
        (false, _) => raw::mount(c"/dev/null".as_ptr(), target, std::ptr::null(), libc::MS_BIND, std::ptr::null()),
    };
    nonzero(e)
}

#[cfg(test)]
mod numbered_path_tests {
    use super::numbered_path;

    fn text(prefix: &[u8], n: u32) -> String {
        let mut out = [0u8; 32];
        numbered_path(&mut out, prefix, n);
        let end = out.iter().position(|&b| b == 0).expect("NUL-terminated");
        String::from_utf8(out[..end].to_vec()).unwrap()
    }

    #[test]
    fn prefix_and_decimal_number_nul_terminated() {
        assert_eq!(text(b"/dev/pts/", 0), "/dev/pts/0");
        assert_eq!(text(b"/dev/pts/", 17), "/dev/pts/17");
        assert_eq!(text(b"/proc/self/fd/", u32::MAX), "/proc/self/fd/4294967295");
    }
}
