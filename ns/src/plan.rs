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

/// The descriptors the child uses (numbers only; the parent owns the objects).
pub(crate) struct ChildFds {
    /// The child's end of the sync socket, -1 when the child need not wait for the parent.
    pub sync_read: RawFd,
    /// The parent's end (closed by the child), -1 without a sync point.
    pub sync_write: RawFd,
    pub err_read: RawFd,
    pub err_write: RawFd,
    /// For fd 0, 1, 2: the descriptor to dup2 there, or None to inherit.
    pub stdio: [Option<RawFd>; 3],
    /// With [`Plan::init`]: the sealed memfd holding `nk-init` (close-on-exec), which the
    /// child execs after forking the payload; -1 without an init. The child must keep it.
    pub init_exe: RawFd,
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
    let err = fds.err_write;
    raw::reset_signal_handlers();
    if fds.sync_write >= 0 {
        raw::close(fds.sync_write);
    }
    raw::close(fds.err_read);

    if let Some(sig) = plan.pdeathsig {
        check(err, Stage::Prctl, raw::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong));
    }

    // Sync point: the parent writes id maps, moves links, places us in a cgroup, then
    // sends one byte. EOF means the parent gave up: leave quietly. Without a sync socket
    // the parent has nothing to do first.
    if fds.sync_read >= 0 {
        match raw::read_byte(fds.sync_read) {
            Ok(true) => {}
            Ok(false) => raw::exit(127),
            Err(e) => fail(err, Stage::WaitForParent, e, None),
        }
        raw::close(fds.sync_read);
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

    for (target, from) in fds.stdio.iter().enumerate() {
        if let Some(from) = *from {
            check(err, Stage::Stdio, raw::dup2(from, target as RawFd));
        }
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
        let e = crate::sys::mount_raw(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null());
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

    for (i, hook) in hooks.iter_mut().enumerate() {
        if let Err(e) = hook() {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            // Dropping the error could free memory: leak it, we exit right away.
            std::mem::forget(e);
            fail(err, Stage::PreExec, errno, Some(i));
        }
    }

    if plan.init {
        run_init(plan, fds.init_exe, err)
    }
    exec_payload(plan, err)
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
/// The signal handler table is not shared (no `CLONE_SIGHAND`), so resetting handlers here
/// leaves the parent's alone, as in glibc's `posix_spawn`.
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
    let empty = raw::sigset(&[]);
    raw::set_sigmask(&empty);
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
    let payload = crate::sys::raw_fork();
    if payload < 0 {
        fail(err, Stage::InitFork, crate::sys::errno(), None);
    }
    if payload == 0 {
        raw::close(gate_write);
        if chld_ignored {
            raw::set_sigchld_ignored(true);
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
