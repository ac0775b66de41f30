//! The child's precomputed plan: pure data, built by the parent before the clone.
//!
//! Everything the child needs — every `CString`, pointer array, fd number and flag — is built
//! here, in the parent, where allocating is fine: [`Plan`], and [`ChildFds`] with the whole
//! descriptor-shedding plan. Nothing in this file runs in the child. The child only reads
//! these values, in [`crate::child`], which executes them without allocating.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::mount::PreparedStep;

/// A user hook run in the child just before exec (see `Command::pre_exec`).
pub(crate) type PreExecHook = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// A NULL-terminated array of C strings, kept alive together with its pointers.
pub(crate) struct CStringArray {
    items: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub(crate) fn new(items: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = items.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray { items, ptrs }
    }

    /// The first string (a program's `argv[0]`).
    pub(crate) fn first(&self) -> Option<&std::ffi::CStr> {
        self.items.first().map(CString::as_c_str)
    }

    pub(crate) fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

// SAFETY: the pointers point into the heap buffers of `items`, which the array owns and
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
    /// Bring `lo` up in the new network namespace.
    pub loopback_up: bool,
    pub unshare_cgroup: bool,
    /// `Some(offsets text)` when a new time namespace is wanted.
    pub time_offsets: Option<CString>,
    pub root_propagation: Option<libc::c_ulong>,
    pub steps: Vec<PreparedStep>,
    /// The detached copies of the peer binds' sources (`PreparedStep::PeerBind::slot`): made
    /// by the child before the root propagation, -1 until then (atomics: the child writes
    /// them without allocating, also when it shares the caller's memory).
    pub peer_trees: Vec<std::sync::atomic::AtomicI32>,
    /// Per step: where it lies beneath a later `pivot_root`'s new root (resolved there).
    pub beneath: Vec<Option<crate::mount::Beneath>>,
    /// Become root (0/0) of the new user namespace right after the parent wrote the maps.
    pub become_userns_root: Option<Identity>,
    /// The final identity, set just before the hooks and exec.
    pub identity: Option<Identity>,
    pub pdeathsig: Option<libc::c_int>,
    pub init: bool,
    /// Run only the init, holding the namespaces: no payload is forked.
    pub init_hold: bool,
    /// Make the init a child subreaper (when it is not PID 1 of a new pid namespace).
    pub init_subreaper: bool,
    /// `(resource, limits)` set with `prlimit64`, in order.
    pub rlimits: Vec<(u32, libc::rlimit64)>,
    /// The text written to `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<CString>,
    pub umask: Option<libc::mode_t>,
    pub caps: Option<CapsPlan>,
    pub no_new_privs: bool,
    /// Enforce the Landlock ruleset passed as [`FdRole::Landlock`].
    pub landlock: bool,
    pub seccomp: Option<SeccompPlan>,
    /// `setns(pidfd, flags)` into the process passed as [`FdRole::Join`], right after the
    /// sync point (see `Command::join`).
    pub join: Option<libc::c_int>,
    /// `setns` into the mount namespace passed as [`FdRole::JoinMount`] right after
    /// [`Plan::join`]: the mount steps then run in it (see `Command::join_ns`).
    pub join_mount: bool,
    /// `setns` into the time namespace passed as [`FdRole::JoinTime`], with the mount one.
    pub join_time: bool,
    /// The name of the fifo in the directory passed as [`FdRole::StartGate`] that the child
    /// opens for writing (blocking until a reader comes) before its confinement and exec
    /// (see `Command::start_gate`).
    pub start_gate: Option<CString>,
    /// A new pseudo-terminal as stdio and controlling terminal, its master sent over
    /// [`FdRole::Console`] (see `Command::terminal`).
    pub terminal: Option<TerminalPlan>,
    /// Join (create) a named session keyring (see `Command::session_keyring`).
    pub session_keyring: Option<KeyringPlan>,
}

/// The terminal step, decided in the parent.
pub(crate) struct TerminalPlan {
    /// The window size set on it.
    pub size: Option<libc::winsize>,
    /// The owner the terminal is given (the final uid, when not root), as runc does, so the
    /// program may reopen it (`/dev/tty`, `/proc/self/fd/0`).
    pub owner: Option<libc::uid_t>,
    /// Bind its peer onto `/dev/console` (see `Command::terminal_console`).
    pub console: bool,
}

/// The session keyring step, decided in the parent.
pub(crate) struct KeyringPlan {
    pub name: CString,
    /// `KEYCTL_SETPERM` after joining it.
    pub perm: Option<u32>,
}

/// The capability steps, decided in the parent.
pub(crate) struct CapsPlan {
    /// Every capability number up to the kernel's last that is not in the bounding set.
    pub bounding_drop: Vec<u32>,
    /// Capabilities above the last one this crate names are dropped only if the kernel
    /// has them: `EINVAL` for those is skipped (only when `cap_last_cap` was unreadable).
    pub known_last: u32,
    /// `PR_SET_KEEPCAPS` before the identity change (the identity leaves uid 0).
    pub keep_caps: bool,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    /// The ambient capabilities to raise (after clearing all).
    pub ambient: Vec<u32>,
}

/// The seccomp step: the shared program and its flags.
pub(crate) struct SeccompPlan {
    pub filter: Arc<[libc::sock_filter]>,
    pub flags: libc::c_ulong,
    /// Send the listener (`SECCOMP_FILTER_FLAG_NEW_LISTENER`) over [`FdRole::SeccompNotify`].
    pub notify: bool,
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
    /// A Landlock ruleset the child enforces on itself ([`crate::Command::landlock`]).
    Landlock,
    /// The child's end of the socket the seccomp listener is sent over.
    SeccompNotify,
    /// The pidfd of the process whose namespaces the child joins ([`crate::Command::join`]).
    Join,
    /// A mount namespace file the child joins itself ([`crate::Command::join_ns`]).
    JoinMount,
    /// A time namespace file the child joins itself ([`crate::Command::join_ns`]).
    JoinTime,
    /// An `O_PATH` descriptor of the directory holding the start gate's fifo
    /// ([`crate::Command::start_gate`]).
    StartGate,
    /// The console socket the terminal's master is sent over ([`crate::Command::terminal`]).
    Console,
    /// A cgroup v1 `tasks` file the child moves itself into ([`crate::Command::cgroup_v1`]),
    /// the n-th given.
    CgroupTasks(usize),
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
    pub(crate) kept: Vec<(FdRole, RawFd, RawFd)>,
    /// The inclusive ranges `shed` closes: everything but 0, 1, 2 and the kept descriptors.
    pub(crate) close: Vec<(RawFd, RawFd)>,
    /// (from, to): kept descriptors moved out of the way of the targets.
    pub(crate) moves: Vec<(RawFd, RawFd)>,
    /// The index (among the passed descriptors, in order) of the one with the highest
    /// target, when that is above 2: the moves go above it, so a move that fails (`EBADF`:
    /// past `RLIMIT_NOFILE`) fails because of that target.
    pub(crate) top_pass: Option<usize>,
}

impl ChildFds {
    /// `kept`: every descriptor the child keeps, with its number in the parent. Each must be
    /// open and close-on-exec in the parent until the child has exec'd or exited.
    pub(crate) fn new(kept: Vec<(FdRole, RawFd)>) -> ChildFds {
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
}

/// The signals the minimal init ([`crate::Command::init`]) forwards to the payload (the
/// list `nk-init`, `init/init.c`, is built with).
pub const FORWARDED_SIGNALS: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGQUIT];

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
