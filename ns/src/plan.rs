//! The child's precomputed plan and the allocation-free code that runs it.
//!
//! Everything the child needs — every `CString`, pointer array, fd number and flag — is built
//! by the parent in [`Plan`]. After clone, [`run_child`] executes the plan step by step using
//! only raw system calls: no allocation, no locks, no panics, no logging. It ends in `execve`
//! or `_exit`; a failure is written as a fixed-size [`ErrorRecord`] to the close-on-exec
//! error pipe, so EOF on that pipe tells the parent that exec succeeded.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::error::{ErrorRecord, Stage};
use crate::mount::PreparedStep;
use crate::sys::raw;

/// A user hook run in the child just before exec (see `Command::pre_exec`).
pub(crate) type PreExecHook = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// A NULL-terminated array of C strings, kept alive together with its pointers.
pub(crate) struct CStringArray {
    _items: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub fn new(items: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = items.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray { _items: items, ptrs }
    }

    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

// SAFETY: the pointers point into the heap buffers of `_items`, which the array owns and
// never changes after `new`; moving or sharing the array moves or shares those buffers
// with it (like std's `Argv` in its `Command`).
unsafe impl Send for CStringArray {}
// SAFETY: as above; nothing is mutated through `&self`.
unsafe impl Sync for CStringArray {}

/// The identity the child switches to.
pub(crate) struct Identity {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// `None`: leave supplementary groups alone (setgroups is denied).
    pub groups: Option<Vec<libc::gid_t>>,
}

/// Everything the child does, decided in the parent.
pub(crate) struct Plan {
    pub argv: CStringArray,
    pub envp: CStringArray,
    /// Paths tried in order with execve (PATH search done without allocating).
    pub exec_candidates: Vec<CString>,
    pub cwd: Option<CString>,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub unshare_cgroup: bool,
    /// `Some(offsets text)` when a new time namespace is wanted.
    pub time_offsets: Option<CString>,
    pub root_propagation: Option<libc::c_ulong>,
    pub steps: Vec<PreparedStep>,
    /// Become root (0/0) of the new user namespace right after the parent wrote the maps.
    pub become_userns_root: Option<Identity>,
    /// The final identity, set just before the hooks and exec.
    pub identity: Option<Identity>,
    pub pdeathsig: Option<libc::c_int>,
    pub init: bool,
    /// Make the init a child subreaper (when it is not PID 1 of a new pid namespace).
    pub init_subreaper: bool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("steps", &self.steps.len()).field("init", &self.init).finish_non_exhaustive()
    }
}

/// What a descriptor the child keeps is for. A new kind of kept descriptor is a new variant
/// here and one more entry in the list given to [`ChildFds::new`]; nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdRole {
    /// The write end of the error pipe.
    Error,
    /// The child's end of the sync socket.
    Sync,
    /// What becomes descriptor 0, 1 or 2 of the program.
    Stdio(RawFd),
    /// A descriptor the caller passes on ([`crate::Command::preserve_fd`]): it becomes this
    /// number in the program.
    Pass(RawFd),
    /// A pidfd (`PIDFD_THREAD`) of the thread the child's parent-death signal is tied to,
    /// checked right after the signal is armed ([`crate::Command::kill_with_parent`]).
    ParentThread,
    /// With [`Plan::init`]: the sealed memfd holding `nk-init` (close-on-exec), which the
    /// child execs after forking the payload ([`crate::Command::init`]).
    InitExe,
}

impl FdRole {
    /// The number the descriptor gets in the program, for the roles that survive exec.
    fn target(self) -> Option<RawFd> {
        match self {
            FdRole::Stdio(t) | FdRole::Pass(t) => Some(t),
            _ => None,
        }
    }
}

/// The descriptors the child keeps, and how it sheds everything else.
///
/// A cloned child starts with a copy of the whole fd table of the parent: the host's
/// descriptors opened without `O_CLOEXEC`, and the pipes other threads had in flight. Right
/// after clone, [`ChildFds::shed`] closes every descriptor but 0, 1, 2 and the kept ones
/// (`close_range` over the gaps between them), and moves kept ones that sit where a program
/// descriptor must go (0..=2, a [`FdRole::Pass`] target) above every target. Before exec,
/// [`ChildFds::install`] puts stdio and passed descriptors on their numbers. Every kept
/// descriptor is close-on-exec, so the program gets exactly 0, 1, 2 and the passed ones.
///
/// Everything is computed here, in the parent: the child only reads this (a vfork-style
/// child must write nothing but its own stack).
pub(crate) struct ChildFds {
    /// Every kept descriptor: its role, its number in the parent, and its number in the
    /// child after `shed`.
    kept: Vec<(FdRole, RawFd, RawFd)>,
    /// The inclusive ranges `shed` closes: everything but 0, 1, 2 and the kept descriptors.
    close: Vec<(RawFd, RawFd)>,
    /// (from, to): kept descriptors moved out of the way of the targets.
    moves: Vec<(RawFd, RawFd)>,
    /// The index (among the passed descriptors, in order) of the one with the highest
    /// target, when that is above 2: the moves go above it, so a move that fails (`EBADF`:
    /// past `RLIMIT_NOFILE`) fails because of that target.
    top_pass: Option<usize>,
}

impl ChildFds {
    /// `kept`: every descriptor the child keeps, with its number in the parent. Each must be
    /// open and close-on-exec in the parent until the child has exec'd or exited.
    pub fn new(kept: Vec<(FdRole, RawFd)>) -> ChildFds {
        let mut sources: Vec<RawFd> = kept.iter().map(|&(_, fd)| fd).collect();
        sources.sort_unstable();
        sources.dedup();
        // Where program descriptors go: 0, 1, 2 and the passed targets. Kept descriptors
        // below `top` move to free numbers at or above it.
        let top = kept.iter().filter_map(|&(role, _)| role.target()).fold(2, RawFd::max) + 1;
        let mut moves = Vec::new();
        let mut next = top;
        for &fd in sources.iter().filter(|&&fd| fd < top) {
            while sources.binary_search(&next).is_ok() {
                next += 1;
            }
            moves.push((fd, next));
            next += 1;
        }
        let mut keep: Vec<RawFd> = vec![0, 1, 2];
        keep.extend(&sources);
        keep.sort_unstable();
        keep.dedup();
        let mut close = Vec::new();
        let mut first = 0;
        for &fd in &keep {
            if fd > first {
                close.push((first, fd - 1));
            }
            first = fd + 1;
        }
        close.push((first, RawFd::MAX));
        let moved = |fd: RawFd| moves.iter().find(|&&(from, _)| from == fd).map_or(fd, |&(_, to)| to);
        let top_pass = kept
            .iter()
            .filter_map(|&(role, _)| if let FdRole::Pass(t) = role { Some(t) } else { None })
            .enumerate()
            .filter(|&(_, t)| t + 1 == top)
            .map(|(i, _)| i)
            .next();
        let kept = kept.into_iter().map(|(role, fd)| (role, fd, moved(fd))).collect();
        ChildFds { kept, close, moves, top_pass }
    }

    /// The child's number of the descriptor with `role` (after [`ChildFds::shed`]).
    pub fn get(&self, role: FdRole) -> Option<RawFd> {
        self.kept.iter().find(|&&(r, _, _)| r == role).map(|&(_, _, fd)| fd)
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
fn fail(err_fd: RawFd, stage: Stage, errno: i32, step: Option<usize>) -> ! {
    let rec = ErrorRecord { stage: stage as u32, errno, step: step.map_or(ErrorRecord::NO_STEP, |s| s as u32) };
    raw::write_all(err_fd, &rec.encode());
    raw::exit(127)
}

fn check(err_fd: RawFd, stage: Stage, errno: i32) {
    if errno != 0 {
        fail(err_fd, stage, errno, None);
    }
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
pub(crate) unsafe fn run_child(plan: &Plan, fds: &ChildFds, hooks: &mut [PreExecHook]) -> ! {
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

    // The time namespace comes before the switch to root of the new user namespace: that
    // switch changes the euid (e.g. from global root to the mapped 100000), which makes the
    // process non-dumpable, and /proc/self/timens_offsets of a non-dumpable process belongs
    // to global root — unwritable from inside (EACCES). We still hold every capability in
    // the new user namespace here, which owns the new time namespace.
    if let Some(offsets) = &plan.time_offsets {
        enter_new_time_namespace(err, offsets);
    }

    if let Some(root) = &plan.become_userns_root {
        set_identity(err, root);
    }

    if let Err((stage, errno, step)) = fds.install() {
        fail(err, stage, errno, step);
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

    if let Some(flags) = plan.root_propagation {
        let e = raw::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null());
        check(err, Stage::RootPropagation, e);
    }
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err((stage, errno)) = step.run() {
            fail(err, stage, errno, Some(i));
        }
    }

    if let Some(cwd) = &plan.cwd {
        check(err, Stage::Chdir, raw::chdir(cwd.as_ptr()));
    }

    if let Some(id) = &plan.identity {
        set_identity(err, id);
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

    if plan.init {
        match fds.get(FdRole::InitExe) {
            Some(init_exe) => run_init(plan, init_exe, err),
            None => fail(err, Stage::InitExec, libc::EBADF, None),
        }
    }
    exec_payload(plan, err)
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
/// needs an mm of its own), and no sync point (the parent cannot act while suspended).
/// Everything `run_child` calls is a bare system call ([`crate::sys::sc`]) that writes no
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
    unsafe { run_child(args.plan, args.fds, &mut []) }
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
    fail(err, Stage::Exec, last, None)
}

/// The signals the minimal init ([`crate::Command::init`]) forwards to the payload (the
/// list `nk-init`, `init/init.c`, is built with).
pub const FORWARDED_SIGNALS: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGQUIT];

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
fn run_init(plan: &Plan, init_exe: RawFd, err: RawFd) -> ! {
    if plan.init_subreaper {
        check(err, Stage::Prctl, raw::prctl(libc::PR_SET_CHILD_SUBREAPER, 1));
    }
    // An ignored SIGCHLD would make the kernel reap the payload for us and lose its
    // status: default until the fork, ignored again in the payload, as exec would keep it.
    let chld_ignored = raw::sigchld_ignored();
    if chld_ignored {
        raw::set_sigchld_ignored(false);
    }
    let (gate_read, gate_write) = match raw::pipe_cloexec() {
        Ok(p) => p,
        Err(e) => fail(err, Stage::InitFork, e, None),
    };
    let init_pid = raw::getpid();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_plan_keeps_only_its_own_and_moves_them_out_of_the_targets_way() {
        let fds =
            ChildFds::new(vec![(FdRole::Error, 5), (FdRole::Stdio(1), 7), (FdRole::Pass(5), 9), (FdRole::Pass(6), 3)]);
        // Everything but 0, 1, 2 and the kept 3, 5, 7, 9 is closed.
        assert_eq!(fds.close, [(4, 4), (6, 6), (8, 8), (10, RawFd::MAX)]);
        // 3 and 5 sit below the highest target (6): moved to the first free numbers above.
        assert_eq!(fds.moves, [(3, 8), (5, 10)]);
        assert_eq!(fds.get(FdRole::Error), Some(10));
        assert_eq!(fds.get(FdRole::Stdio(1)), Some(7));
        assert_eq!(fds.get(FdRole::Pass(5)), Some(9));
        assert_eq!(fds.get(FdRole::Pass(6)), Some(8));
        assert_eq!(fds.get(FdRole::Sync), None);
        // The passed descriptor with the highest target (the second passed, 6) is the one a
        // failed move is reported on.
        assert_eq!(fds.top_pass, Some(1));
    }

    #[test]
    fn kept_descriptors_on_stdio_numbers_are_moved_too() {
        // The parent's stdin and stdout were closed, so its pipes got 0 and 1.
        let fds = ChildFds::new(vec![(FdRole::Error, 1), (FdRole::Stdio(0), 0), (FdRole::Sync, 4)]);
        assert_eq!(fds.close, [(3, 3), (5, RawFd::MAX)]);
        assert_eq!(fds.moves, [(0, 3), (1, 5)]);
        assert_eq!(fds.get(FdRole::Stdio(0)), Some(3));
        assert_eq!(fds.get(FdRole::Error), Some(5));
        assert_eq!(fds.get(FdRole::Sync), Some(4));
        // The common case: nothing to move, two close_range calls.
        let fds = ChildFds::new(vec![(FdRole::Error, 6)]);
        assert_eq!(fds.close, [(3, 5), (7, RawFd::MAX)]);
        assert!(fds.moves.is_empty());
        assert_eq!(fds.top_pass, None);
    }
}
