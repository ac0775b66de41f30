//! Errors: one enum for the crate, a validation enum for bad input, and the child-side
//! `SpawnError` that names the stage and errno.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::idmap::{IdKind, IdMapping};
use crate::mount::Propagation;
use crate::namespace::Namespace;

/// Everything that can go wrong in `nook-ns`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was rejected before any system call.
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// The child failed between clone and exec.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A system call made by the parent failed.
    #[error("{call} failed{}: {source}", path_suffix(.path))]
    Sys {
        /// The call or operation (e.g. `"clone3"`, `"write uid_map"`).
        call: &'static str,
        /// The path it worked on, when there is one.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A setup step failed, and undoing what it had done failed too (e.g. a persisted
    /// network namespace whose bind mount could not be removed again).
    #[error("{cause} (and undoing it failed: {})", join_errors(.cleanup))]
    Cleanup {
        /// The error of the step that failed.
        cause: Box<Error>,
        /// Every error of the undo.
        cleanup: Vec<Error>,
    },
    /// A removal kept going after a failure and reports every one (e.g. unmounting and
    /// unlinking a persisted network namespace).
    #[error("removing {what} failed: {}", join_errors(.errors))]
    Teardown {
        /// What was being removed.
        what: String,
        /// Every failure, in order.
        errors: Vec<Error>,
    },
    /// A helper program (`newuidmap` / `newgidmap`) failed.
    #[error("{program} failed ({status}): {stderr}")]
    Helper {
        /// The helper's name.
        program: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A namespace file has a different kind than the caller asked for.
    #[error("{path} is a {actual} namespace, not {expected}")]
    WrongKind {
        /// The file that was opened.
        path: PathBuf,
        /// The kind the caller asked for.
        expected: Namespace,
        /// The kind the kernel reports.
        actual: Namespace,
    },
    /// A Landlock ruleset handles rights the running kernel's Landlock ABI cannot enforce
    /// (and degrading was not allowed: `landlock::Ruleset::allow_degraded`).
    #[error("the kernel's Landlock ABI {abi} cannot enforce the access rights {missing:#x}")]
    LandlockUnsupported {
        /// The kernel's ABI version (0: no Landlock).
        abi: u32,
        /// The rights it cannot enforce (`landlock::AccessFs` bits).
        missing: u64,
    },
    /// User and time namespaces can only be joined by a single-threaded process (the
    /// kernel refuses a thread of a multithreaded one).
    #[error("a {namespace} namespace can only be joined by a single-threaded process (spawn a child into it instead)")]
    NeedsSingleThread {
        /// The namespace kind that was to be joined.
        namespace: Namespace,
    },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" on {}", p.display()),
        None => String::new(),
    }
}

fn join_errors(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    pub(crate) fn sys(call: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Sys { call, path: None, source: source.into() }
    }

    pub(crate) fn sys_path(call: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Error::Sys { call, path: Some(path.into()), source: source.into() }
    }

    /// `Ok` when the undo of a failed step succeeded (`cleanup` is empty): then `cause`;
    /// otherwise [`Error::Cleanup`] carrying both.
    pub(crate) fn with_cleanup(cause: Error, cleanup: Vec<Error>) -> Self {
        if cleanup.is_empty() { cause } else { Error::Cleanup { cause: Box::new(cause), cleanup } }
    }

    /// The OS errno behind this error, if there is one: the child's errno for
    /// [`Error::Spawn`], the cause's for [`Error::Cleanup`], the first failure's for
    /// [`Error::Teardown`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Spawn(e) => Some(e.errno),
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Teardown { errors, .. } => errors.iter().find_map(Error::raw_os_error),
            Error::Invalid(_)
            | Error::Helper { .. }
            | Error::WrongKind { .. }
            | Error::NeedsSingleThread { .. }
            | Error::LandlockUnsupported { .. } => None,
        }
    }
}

/// Adds the failed call (and path) to an `io::Error` or `rustix::io::Errno`, making it an
/// [`Error::Sys`]: `open(path).sys_at("open", path)?` instead of a `map_err` closure.
pub(crate) trait SysContext<T> {
    /// An [`Error::Sys`] without a path.
    fn sys(self, call: &'static str) -> Result<T>;
    /// An [`Error::Sys`] naming the path it worked on.
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, io::Error> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|source| Error::sys(call, source))
    }
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::sys_path(call, path, source))
    }
}

impl<T> SysContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|source| Error::sys(call, source))
    }
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::sys_path(call, path, source))
    }
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Bad input, found before any system call is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// [`crate::Command::join_netns`] or [`crate::Command::join`] together with a new
    /// namespace of the same kind (or both joins with a network namespace).
    #[error("cannot both join an existing {namespace} namespace and create a new one")]
    JoinAndCreate {
        /// The kind.
        namespace: Namespace,
    },
    /// [`crate::Command::join_ns`] was given a mount, user or time namespace, which one
    /// thread of a process cannot enter.
    #[error(
        "cannot join an existing {namespace} namespace by handle (network, IPC, UTS, pid, cgroup, time, user and mount — not mount with a new user namespace)"
    )]
    JoinUnsupported {
        /// The kind.
        namespace: Namespace,
    },
    /// [`crate::MountStep::MakeNode`] with a mode that is not a character or block device
    /// or a fifo.
    #[error("device node {path:?}: mode {mode:#o} is not a character or block device or a fifo")]
    NodeType {
        /// The node's path.
        path: std::path::PathBuf,
        /// The mode given.
        mode: u32,
    },
    /// [`crate::Command::join_netns`] was given a namespace of another kind.
    #[error("expected a {expected} namespace to join, got a {found} namespace")]
    JoinWrongKind {
        /// The kind needed.
        expected: Namespace,
        /// The kind given.
        found: Namespace,
    },
    /// A string handed to the kernel contains a NUL byte.
    #[error("{field} contains a NUL byte: {value:?}")]
    NulByte {
        /// Which input (`"program"`, `"argument"`, `"environment"`, `"path"`, ...).
        field: &'static str,
        /// The offending value, lossily converted.
        value: String,
    },
    /// The program name is empty.
    #[error("the program name is empty")]
    EmptyProgram,
    /// The hostname is longer than the kernel's 64 bytes.
    #[error("hostname is {len} bytes; the kernel allows at most 64")]
    HostnameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The NIS domain name is longer than the kernel's 64 bytes.
    #[error("NIS domain name is {len} bytes; the kernel allows at most 64")]
    DomainnameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// An id-map range has a count of zero.
    #[error("{kind} map range {range} is empty")]
    IdMapEmptyRange {
        /// uid or gid.
        kind: IdKind,
        /// The range.
        range: IdMapping,
    },
    /// An id-map range runs past the largest valid id (4294967294).
    #[error("{kind} map range {range} runs past the largest id")]
    IdMapOverflow {
        /// uid or gid.
        kind: IdKind,
        /// The range.
        range: IdMapping,
    },
    /// Two ranges of an id map overlap (inside or outside).
    #[error("{kind} map ranges {first} and {second} overlap {side} the namespace")]
    IdMapOverlap {
        /// uid or gid.
        kind: IdKind,
        /// `"inside"` or `"outside"`.
        side: &'static str,
        /// One range.
        first: IdMapping,
        /// The other range.
        second: IdMapping,
    },
    /// An id map has more ranges than the kernel accepts (340).
    #[error("{kind} map has {count} ranges; the kernel accepts at most 340")]
    IdMapTooManyRanges {
        /// uid or gid.
        kind: IdKind,
        /// How many were given.
        count: usize,
    },
    /// An id map has no ranges.
    #[error("{kind} map has no ranges")]
    IdMapEmpty {
        /// uid or gid.
        kind: IdKind,
    },
    /// A setting needs a namespace that is not in the set.
    #[error("{setting} needs a new {namespace} namespace, which is not in the namespace set")]
    NeedsNamespace {
        /// What was asked for (`"hostname"`, `"uid map"`, ...).
        setting: &'static str,
        /// The namespace it needs.
        namespace: Namespace,
    },
    /// A path that must be absolute is relative.
    #[error("{field} must be an absolute path: {path}")]
    RelativePath {
        /// Which input.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A namespace name for `/run/netns` is unusable.
    #[error("invalid namespace name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A clock offset is out of range.
    #[error("clock offset nanoseconds must be below 1e9, got {nanos}")]
    BadClockOffset {
        /// The nanoseconds given.
        nanos: u32,
    },
    /// A signal number is invalid.
    #[error("invalid signal number {signal}")]
    BadSignal {
        /// The number given.
        signal: i32,
    },
    /// A descriptor number given to `Command::preserve_fd` cannot be used: below 3 (0, 1
    /// and 2 are set with `stdin`/`stdout`/`stderr`) or negative.
    #[error("descriptor number {target} cannot be passed to the program: {reason}")]
    BadFdTarget {
        /// The number given.
        target: i32,
        /// Why.
        reason: &'static str,
    },
    /// Mount steps in a new mount namespace (without a new user namespace) whose root
    /// propagation would leave the caller's shared mounts shared: the steps' mounts would
    /// propagate into the caller's mount namespace and stay there, also after a failed
    /// spawn. See `Command::root_propagation`.
    #[error(
        "mount steps with root propagation {root_propagation:?} and no new user namespace would propagate into \
         the caller's mount namespace; use a recursive private (the default), slave or unbindable root, or a new \
         user namespace"
    )]
    MountsWouldPropagate {
        /// The root propagation asked for (`None`: keep the caller's).
        root_propagation: Option<(Propagation, bool)>,
    },
    /// A `pivot_root` step under a recursively shared root: the kernel refuses it
    /// (`EINVAL`). Pivot with a private or slave root and make `/` shared with a
    /// propagation step after the pivot.
    #[error(
        "pivot_root (mount step {step}) fails under a recursively shared root; pivot with a private or slave root \
         and add a propagation step for \"/\" after it"
    )]
    PivotRootUnderSharedRoot {
        /// The index of the `pivot_root` step.
        step: usize,
    },
    /// A capability set names a capability the running kernel does not have (above
    /// `/proc/sys/kernel/cap_last_cap`).
    #[error("the {set} capability set has capability number {number}; this kernel's last is {last_cap}")]
    UnknownCapability {
        /// `"bounding"`, `"effective"`, `"permitted"`, `"inheritable"` or `"ambient"`.
        set: &'static str,
        /// The capability's number.
        number: u32,
        /// The kernel's last capability number.
        last_cap: u32,
    },
    /// The capability sets do not nest as the kernel requires.
    #[error("capability set {set} must be a subset of {of}")]
    CapabilitySets {
        /// The set that has too much.
        set: &'static str,
        /// The set(s) it must be within.
        of: &'static str,
    },
    /// A seccomp program is empty or longer than the kernel's 4096 instructions.
    #[error("a seccomp program must have 1 to 4096 instructions, not {len}")]
    SeccompProgramLength {
        /// Its length.
        len: usize,
    },
    /// Seccomp flags the child cannot use (`SECCOMP_FILTER_FLAG_TSYNC`, or
    /// `NEW_LISTENER` given as a flag instead of `SeccompProgram::notify`).
    #[error("seccomp flags {flags:#x} cannot be used here")]
    SeccompFlags {
        /// The flags.
        flags: libc::c_ulong,
    },
    /// `oom_score_adj` outside -1000..=1000.
    #[error("oom_score_adj must be within -1000..=1000, not {value}")]
    OomScoreAdj {
        /// The value given.
        value: i32,
    },
    /// A umask with bits beyond 0o777.
    #[error("umask {mask:#o} has bits beyond 0o777")]
    Umask {
        /// The mask given.
        mask: u32,
    },
    /// An rlimit whose soft limit is above its hard limit.
    #[error("rlimit {resource}: soft limit {soft} is above the hard limit {hard}")]
    Rlimit {
        /// The resource.
        resource: crate::harden::Resource,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// A Landlock rule allows rights the ruleset does not handle (the kernel refuses it).
    #[error("landlock rule for {path} allows rights {access:#x} the ruleset does not handle")]
    LandlockAccessNotHandled {
        /// The rule's path.
        path: PathBuf,
        /// The rights not handled (`landlock::AccessFs` bits).
        access: u64,
    },
    /// A [`crate::MountStep::LandlockRule`] without a ruleset ([`crate::Command::landlock`]).
    #[error("landlock rule step for {path} without a Landlock ruleset")]
    LandlockRuleWithoutRuleset {
        /// The rule's path.
        path: PathBuf,
    },
}

/// The step of child setup that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Stage {
    /// The child was never created (clone3/clone failed in the parent).
    Clone = 1,
    /// Reading the parent's "go" byte.
    WaitForParent,
    /// `prctl(PR_SET_PDEATHSIG)` or `PR_SET_CHILD_SUBREAPER`.
    Prctl,
    /// Redirecting stdin/stdout/stderr.
    Stdio,
    /// Shedding the descriptors the child does not own, right after clone, or moving its
    /// own out of the way of the program's descriptor numbers.
    Fds,
    /// Putting a descriptor passed with `Command::preserve_fd` on its number; see
    /// `SpawnError::step` for which one (in the order they were added).
    PassFd,
    /// `unshare(CLONE_NEWCGROUP)` after the parent placed the child in its cgroup.
    CgroupNamespace,
    /// `unshare(CLONE_NEWTIME)` or entering the new time namespace.
    TimeNamespace,
    /// Writing `/proc/self/timens_offsets`.
    TimeOffsets,
    /// `sethostname`.
    Hostname,
    /// `setdomainname`.
    Domainname,
    /// Making `/` private (or the chosen propagation) in the new mount namespace.
    RootPropagation,
    /// A mount step: see `SpawnError::step` for which one.
    Mount,
    /// `pivot_root` (or the bind / chdir / detach around it), or the `MS_MOVE` and `chroot`
    /// of `MountStep::move_root`.
    PivotRoot,
    /// `chdir` to the working directory.
    Chdir,
    /// `setgroups`.
    SetGroups,
    /// `setresgid`.
    SetGid,
    /// `setresuid`.
    SetUid,
    /// A user `pre_exec` hook; see `SpawnError::step` for which one.
    PreExec,
    /// The init process could not fork the payload (or create the pipe it waits on).
    InitFork,
    /// The init process could not exec `nk-init` (its sealed memfd).
    InitExec,
    /// `execve` of the program (every candidate path failed).
    Exec,
    /// `prlimit64` of one rlimit; see `SpawnError::step` for which one (in the order they
    /// were added).
    Rlimit,
    /// Writing `/proc/self/oom_score_adj`.
    OomScoreAdj,
    /// `prctl(PR_SET_KEEPCAPS)` before the identity change.
    KeepCaps,
    /// `prctl(PR_CAPBSET_DROP)`; `SpawnError::step` is the capability's number.
    CapBounding,
    /// `capset` of the effective, permitted and inheritable sets.
    Capabilities,
    /// `prctl(PR_CAP_AMBIENT)`; `SpawnError::step` is the capability's number raised (none
    /// for the clear).
    AmbientCapabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// `landlock_restrict_self`.
    Landlock,
    /// `seccomp(SECCOMP_SET_MODE_FILTER)`: the kernel refused the program (`EINVAL`), or
    /// neither no_new_privs nor `CAP_SYS_ADMIN` was there (`EACCES`).
    Seccomp,
    /// Sending the seccomp notification listener to the parent.
    SeccompNotify,
    /// `setns(pidfd, …)` into the namespaces of the process given to `Command::join`.
    Join,
    /// Bringing `lo` up in the new network namespace (`Command::loopback_up`).
    Loopback,
    /// Finding the start gate (`Command::start_gate`) before waiting on it.
    StartGate,
    /// Allocating the pseudo-terminal of `Command::terminal`: opening `/dev/ptmx`,
    /// unlocking it, opening its peer, setting its size.
    Terminal,
    /// Sending the terminal's master over the console socket (`Command::terminal`).
    ConsoleSocket,
    /// Making the terminal the program's stdio and controlling terminal (`dup3`, `setsid`,
    /// `ioctl(TIOCSCTTY)`).
    ControllingTerminal,
    /// Joining the session keyring of `Command::session_keyring`, or setting its
    /// permissions.
    SessionKeyring,
    /// Moving into a cgroup v1 hierarchy (writing `0` to a `tasks` file given to
    /// `Command::cgroup_v1`); `SpawnError::step` is which one (in the order they were given).
    CgroupV1,
}

impl Stage {
    /// The stage numbered `v` (its `u32` value: what the child reports, and what
    /// [`failpoint::arm_child_stage`](crate::failpoint) takes).
    pub fn from_raw(v: u32) -> Option<Stage> {
        Stage::from_u32(v)
    }

    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 40] = [
            Clone,
            WaitForParent,
            Prctl,
            Stdio,
            Fds,
            PassFd,
            CgroupNamespace,
            TimeNamespace,
            TimeOffsets,
            Hostname,
            Domainname,
            RootPropagation,
            Mount,
            PivotRoot,
            Chdir,
            SetGroups,
            SetGid,
            SetUid,
            PreExec,
            InitFork,
            InitExec,
            Exec,
            Rlimit,
            OomScoreAdj,
            KeepCaps,
            CapBounding,
            Capabilities,
            AmbientCapabilities,
            NoNewPrivs,
            Landlock,
            Seccomp,
            SeccompNotify,
            Join,
            Loopback,
            StartGate,
            Terminal,
            ConsoleSocket,
            ControllingTerminal,
            SessionKeyring,
            CgroupV1,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failure of the child between clone and exec: which stage and the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnError {
    /// The stage that failed.
    pub stage: Stage,
    /// The errno it failed with.
    pub errno: i32,
    /// For `Stage::Mount`, `Stage::PreExec`, `Stage::PassFd` and `Stage::CgroupV1`: the
    /// index of the step, hook, passed descriptor or `tasks` file.
    pub step: Option<usize>,
}

impl SpawnError {
    /// A failure at `stage` with `errno` (and the step index, for the stages that have one).
    pub const fn new(stage: Stage, errno: i32, step: Option<usize>) -> Self {
        SpawnError { stage, errno, step }
    }

    /// The errno as an `io::Error`.
    pub fn io_error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "child setup failed at stage {}", self.stage)?;
        if let Some(step) = self.step {
            write!(f, " (step {step})")?;
        }
        write!(f, ": {}", self.io_error())
    }
}

impl std::error::Error for SpawnError {}

/// The fixed-size record the child writes on the error pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorRecord {
    pub stage: u32,
    pub errno: i32,
    pub step: u32,
}

impl ErrorRecord {
    pub(crate) const SIZE: usize = 12;
    pub(crate) const NO_STEP: u32 = u32::MAX;

    pub(crate) fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.stage.to_ne_bytes());
        b[4..8].copy_from_slice(&self.errno.to_ne_bytes());
        b[8..12].copy_from_slice(&self.step.to_ne_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; Self::SIZE]) -> Self {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        ErrorRecord {
            stage: u32::from_ne_bytes(word(0)),
            errno: i32::from_ne_bytes(word(4)),
            step: u32::from_ne_bytes(word(8)),
        }
    }

    pub(crate) fn into_spawn_error(self) -> SpawnError {
        SpawnError {
            stage: Stage::from_u32(self.stage).unwrap_or(Stage::Exec),
            errno: self.errno,
            step: (self.step != Self::NO_STEP).then_some(self.step as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = ErrorRecord { stage: Stage::PivotRoot as u32, errno: libc::EINVAL, step: 3 };
        let e = ErrorRecord::decode(&r.encode()).into_spawn_error();
        assert_eq!(e, SpawnError { stage: Stage::PivotRoot, errno: libc::EINVAL, step: Some(3) });
        for v in 1..=40 {
            assert_eq!(Stage::from_u32(v).map(|s| s as u32), Some(v));
        }
        assert_eq!(Stage::from_u32(0), None);
        assert_eq!(Stage::from_u32(41), None);
        assert_eq!(Stage::SessionKeyring as u32, 39);
        assert_eq!(Stage::CgroupV1 as u32, 40);
        assert_eq!(Stage::SeccompNotify as u32, 32);
        assert_eq!(Stage::Join as u32, 33);
        assert_eq!(Stage::Exec as u32, 22);
    }

    #[test]
    fn raw_os_error_looks_through_cleanup_and_teardown() {
        let sys = |errno| Error::sys("umount2", io::Error::from_raw_os_error(errno));
        let cleanup = Error::with_cleanup(sys(libc::EPERM), vec![sys(libc::EBUSY)]);
        assert!(matches!(cleanup, Error::Cleanup { .. }));
        assert_eq!(cleanup.raw_os_error(), Some(libc::EPERM));
        assert!(cleanup.to_string().contains("undoing it failed"), "{cleanup}");
        assert!(matches!(Error::with_cleanup(sys(libc::EPERM), vec![]), Error::Sys { .. }));
        let teardown = Error::Teardown { what: "x".into(), errors: vec![sys(libc::EINVAL), sys(libc::ENOENT)] };
        assert_eq!(teardown.raw_os_error(), Some(libc::EINVAL));
        let spawn = Error::Spawn(SpawnError { stage: Stage::Exec, errno: libc::ENOENT, step: None });
        assert_eq!(spawn.raw_os_error(), Some(libc::ENOENT));
        let errno: std::result::Result<(), rustix::io::Errno> = Err(rustix::io::Errno::ACCESS);
        assert_eq!(errno.sys_at("open", "/x").unwrap_err().raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn display_names_stage_and_errno() {
        let e = SpawnError { stage: Stage::Exec, errno: libc::ENOENT, step: None };
        let s = e.to_string();
        assert!(s.contains("Exec") && s.contains("No such file"), "{s}");
    }
}
