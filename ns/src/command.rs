//! [`Command`]: a `std::process::Command`-shaped builder that creates the child in new
//! namespaces.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};

use rustix::fs::OFlags;

use crate::caps::{CapSet, Capabilities, Capability};
use crate::child::{VforkArgs, run_child, vfork_child};
use crate::error::{Error, Result, SpawnError, Stage, SysContext, ValidationError};
use crate::handle::NsFd;
use crate::harden::Resource;
use crate::idmap::{self, IdKind, IdMap, MapWriter, SetGroups};
use crate::landlock::Landlock;
use crate::mount::{MountStep, Propagation, abs_cstring, cstring, path_cstring};
use crate::namespace::{Namespace, NamespaceSet};
use crate::plan::{
    CStringArray, CapsPlan, ChildFds, FdRole, Identity, KeyringPlan, Plan, PreExecHook, SeccompPlan, TerminalPlan,
};
use crate::process::{ParentPipes, PausedChild, Stdio, spawner};
use crate::seccomp::SeccompProgram;
use crate::sys::{self, Forked};

/// The kernel's limit for hostnames and NIS domain names (`__NEW_UTS_LEN`).
pub const MAX_UTS_NAME: usize = 64;

/// The first descriptor number the kernel never hands out: `fs.nr_open` cannot be set
/// higher (`INT_MAX` rounded down to a multiple of `BITS_PER_LONG`, 64 on x86_64 and
/// aarch64).
const MAX_FD_LIMIT: RawFd = RawFd::MAX & !63;

/// Namespaces a vfork-style child cannot join: the kernel refuses a user namespace to a
/// process whose memory is shared, and entering a time namespace remaps that memory's vvar.
const VFORK_UNJOINABLE: libc::c_int = libc::CLONE_NEWUSER | sys::consts::CLONE_NEWTIME as libc::c_int;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which death [`Command::kill_with_parent`] / [`Command::kill_with_parent_process`]
/// follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeathOf {
    /// The thread that spawned the child.
    Thread,
    /// The process (through the spawner thread).
    Process,
}

/// An offset for one clock in a new time namespace (may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ClockOffset {
    /// Whole seconds (negative moves the clock back).
    pub secs: i64,
    /// Additional nanoseconds, below 1e9.
    pub nanos: u32,
}

impl ClockOffset {
    /// An offset of `secs` seconds and `nanos` nanoseconds (below 1e9, checked by
    /// [`Command::validate`]).
    pub const fn new(secs: i64, nanos: u32) -> Self {
        ClockOffset { secs, nanos }
    }

    /// An offset of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        ClockOffset { secs, nanos: 0 }
    }
}

/// A process builder that creates the child in new namespaces.
///
/// Shaped like [`std::process::Command`]: setters take `&mut self` and return `&mut Self`;
/// [`Command::spawn`], [`Command::status`] and [`Command::output`] run it. Nothing touches
/// the system until one of those is called, and every input is validated first
/// ([`Command::validate`]).
///
/// The child is created with clone3 (`CLONE_PIDFD`, plus `CLONE_INTO_CGROUP` with
/// [`Command::cgroup`]), waits at a sync point while the parent writes its id maps (and, with
/// [`Command::spawn_paused`], whatever else the caller needs), then runs a precomputed plan
/// without allocating — time namespace, user namespace identity, stdio, cgroup namespace,
/// hostname, mounts, pivot_root, working directory, identity, `pre_exec` hooks — and execs.
///
/// When the parent has nothing to do before the child continues (not
/// [`Command::spawn_paused`], no user namespace, no [`Command::cgroup`], not
/// [`Command::kill_with_parent_process`]) and the plan needs no memory of the child's own
/// (no `pre_exec` hook, no [`Command::init`], no time namespace), the child is created
/// vfork-style instead, like `posix_spawn` does
/// (`CLONE_VM | CLONE_VFORK` on a private stack, clone(2) with `CLONE_PIDFD`): no page
/// tables are copied and no page is copied on write, so spawning does not get slower as
/// the parent's memory grows.
///
/// ```no_run
/// use nook_ns::{Command, Namespace, NamespaceSet};
///
/// let out = Command::new("hostname")
///     .namespaces(NamespaceSet::new().with(Namespace::Uts))
///     .hostname("nk-demo")
///     .output()?;
/// assert_eq!(out.stdout, b"nk-demo\n");
/// # Ok::<(), nook_ns::Error>(())
/// ```
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    namespaces: NamespaceSet,
    uid_map: Option<IdMap>,
    gid_map: Option<IdMap>,
    setgroups: SetGroups,
    hostname: Option<OsString>,
    loopback_up: bool,
    domainname: Option<OsString>,
    root_propagation: Option<(Propagation, bool)>,
    mounts: Vec<MountStep>,
    monotonic_offset: Option<ClockOffset>,
    boottime_offset: Option<ClockOffset>,
    init: bool,
    init_hold: bool,
    cgroup: Option<OwnedFd>,
    cgroup_v1: Vec<OwnedFd>,
    stdio: [Option<Stdio>; 3],
    user: Option<(u32, u32)>,
    groups: Option<Vec<u32>>,
    pdeathsig: Option<(i32, DeathOf)>,
    preserved: Vec<(RawFd, OwnedFd)>,
    pre_exec: Vec<PreExecHook>,
    force_clone2: bool,
    /// `Command::join_unobserved`.
    join_unobserved: bool,
    join_netns: Option<NsFd>,
    join: Option<(OwnedFd, NamespaceSet)>,
    /// `Command::join_ns`: namespaces the cloning thread enters for the clone.
    join_fds: Vec<NsFd>,
    rlimits: Vec<(Resource, u64, u64)>,
    oom_score_adj: Option<i32>,
    umask: Option<u32>,
    capabilities: Option<Capabilities>,
    no_new_privs: bool,
    landlock: Option<OwnedFd>,
    /// A ruleset was given (it may enforce nothing on this kernel, then `landlock` is None).
    landlock_given: bool,
    seccomp: Option<SeccompProgram>,
    /// `Command::start_gate`: the fifo's directory and name.
    start_gate: Option<(OwnedFd, OsString)>,
    /// `Command::terminal`: the console socket and the window size (rows, columns).
    terminal: Option<(OwnedFd, Option<(u16, u16)>)>,
    /// `Command::terminal_console`.
    terminal_console: bool,
    /// `Command::session_keyring`: its name and the permissions set on it.
    session_keyring: Option<(OsString, Option<u32>)>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("namespaces", &self.namespaces)
            .field("hostname", &self.hostname)
            .field("mounts", &self.mounts)
            .field("init", &self.init)
            .field("preserved_fds", &self.preserved.iter().map(|(target, _)| target).collect::<Vec<_>>())
            .field("pre_exec_hooks", &self.pre_exec.len())
            .finish_non_exhaustive()
    }
}

impl Command {
    /// A command for `program`, with safe defaults: no new namespaces, the parent's
    /// environment, inherited stdio. With a new mount namespace, `/` is made recursively
    /// private first so nothing leaks to the caller's mounts; with a new user namespace and
    /// no maps, the caller's uid and gid are mapped to root.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            namespaces: NamespaceSet::new(),
            uid_map: None,
            gid_map: None,
            setgroups: SetGroups::Auto,
            hostname: None,
            loopback_up: false,
            domainname: None,
            root_propagation: Some((Propagation::Private, true)),
            mounts: Vec::new(),
            monotonic_offset: None,
            boottime_offset: None,
            init: false,
            init_hold: false,
            cgroup: None,
            cgroup_v1: Vec::new(),
            stdio: [None, None, None],
            user: None,
            groups: None,
            pdeathsig: None,
            preserved: Vec::new(),
            pre_exec: Vec::new(),
            force_clone2: false,
            terminal_console: false,
            join_unobserved: false,
            join_netns: None,
            join: None,
            join_fds: Vec::new(),
            rlimits: Vec::new(),
            oom_score_adj: None,
            umask: None,
            capabilities: None,
            no_new_privs: false,
            landlock: None,
            landlock_given: false,
            seccomp: None,
            start_gate: None,
            terminal: None,
            session_keyring: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts from an empty environment instead of the parent's.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The child's working directory (inside the new root, after any `pivot_root`).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The namespaces the child gets new instances of (replaces the set).
    pub fn namespaces(&mut self, set: NamespaceSet) -> &mut Self {
        self.namespaces = set;
        self
    }

    /// Adds one namespace kind to the set.
    pub fn unshare(&mut self, ns: Namespace) -> &mut Self {
        self.namespaces = self.namespaces.with(ns);
        self
    }

    /// The uid map of the new user namespace.
    pub fn uid_map(&mut self, map: IdMap) -> &mut Self {
        self.uid_map = Some(map);
        self
    }

    /// The gid map of the new user namespace.
    pub fn gid_map(&mut self, map: IdMap) -> &mut Self {
        self.gid_map = Some(map);
        self
    }

    /// Whether `setgroups(2)` stays allowed in the new user namespace.
    pub fn setgroups(&mut self, policy: SetGroups) -> &mut Self {
        self.setgroups = policy;
        self
    }

    /// Brings the loopback device `lo` up in the new network namespace (a new namespace's
    /// `lo` starts down), done by the child itself right after the hostname — so it works
    /// in a namespace owned by a new user namespace (rootless) too, where the caller may not
    /// administer it. Needs [`Namespace::Net`]. A failure is [`crate::Stage::Loopback`].
    pub fn loopback_up(&mut self, enabled: bool) -> &mut Self {
        self.loopback_up = enabled;
        self
    }

    /// The hostname in the new UTS namespace.
    pub fn hostname(&mut self, name: impl AsRef<OsStr>) -> &mut Self {
        self.hostname = Some(name.as_ref().to_owned());
        self
    }

    /// The NIS domain name in the new UTS namespace.
    pub fn domainname(&mut self, name: impl AsRef<OsStr>) -> &mut Self {
        self.domainname = Some(name.as_ref().to_owned());
        self
    }

    /// The propagation `/` gets first in the new mount namespace (default: private,
    /// recursive). `None` keeps what was copied from the parent.
    ///
    /// Without a new user namespace, the copies of the caller's shared mounts are peers of
    /// the originals: whatever the mount steps mount below them would appear in the
    /// caller's mount namespace and stay there, also when the spawn fails. So with mount
    /// steps and no new user namespace, only a *recursive* private, slave or unbindable
    /// root is accepted; `None`, shared, or a non-recursive change is refused with
    /// [`ValidationError::MountsWouldPropagate`] before anything happens — whatever the
    /// caller's mount table looks like right now (a program that works on a host with a
    /// private `/` would leak on one with a shared `/`, as systemd makes it). In a new user
    /// namespace the kernel turns copied shared mounts into slaves, so nothing propagates
    /// back and any value is accepted; a recursively shared root with a `pivot_root` step
    /// (and no propagation step before it) is refused
    /// ([`ValidationError::PivotRootUnderSharedRoot`]): `pivot_root` fails with `EINVAL`
    /// there. Without mount steps any value is accepted (what the program itself mounts
    /// is its own business).
    pub fn root_propagation(&mut self, propagation: Option<(Propagation, bool)>) -> &mut Self {
        self.root_propagation = propagation;
        self
    }

    /// Adds a mount step (run in order, in the new mount namespace).
    pub fn mount(&mut self, step: MountStep) -> &mut Self {
        self.mounts.push(step);
        self
    }

    /// Adds mount steps.
    pub fn mounts(&mut self, steps: impl IntoIterator<Item = MountStep>) -> &mut Self {
        self.mounts.extend(steps);
        self
    }

    /// `CLOCK_MONOTONIC` offset in the new time namespace.
    pub fn monotonic_offset(&mut self, offset: ClockOffset) -> &mut Self {
        self.monotonic_offset = Some(offset);
        self
    }

    /// `CLOCK_BOOTTIME` offset in the new time namespace.
    pub fn boottime_offset(&mut self, offset: ClockOffset) -> &mut Self {
        self.boottime_offset = Some(offset);
        self
    }

    /// Runs a minimal init as the child: it forks the program, forwards
    /// SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2/SIGQUIT to it, reaps orphans, and exits with the
    /// program's status (128 + signal when it was killed). In a new pid namespace the init
    /// is PID 1 and the program PID 2; otherwise the init is a child subreaper.
    ///
    /// The init is `nk-init`, a small static program embedded in this crate and exec'd from
    /// a sealed memfd right after the fork (before the program may run), not a copy of the
    /// calling process: it has an empty environment, is non-dumpable, and holds nothing of
    /// the caller's memory. It is built for x86_64 and aarch64; elsewhere a spawn with an
    /// init fails with [`Error::Sys`] (`ErrorKind::Unsupported`).
    pub fn init(&mut self, enabled: bool) -> &mut Self {
        self.init = enabled;
        self
    }

    /// Runs only the init ([`Command::init`]), holding the child's namespaces open: no
    /// program is started (the program and arguments are ignored). The init reaps whatever
    /// is reparented to it, and exits with 0 on SIGTERM, SIGINT or SIGHUP. Processes join the
    /// namespaces through its pidfd (a long-lived sandbox, like `docker create`).
    pub fn init_hold(&mut self, enabled: bool) -> &mut Self {
        self.init_hold = enabled;
        if enabled {
            self.init = true;
        }
        self
    }

    /// A cgroup2 directory fd: the child is created directly in that cgroup
    /// (`CLONE_INTO_CGROUP`; on kernels without clone3 the parent writes the pid to its
    /// `cgroup.procs` before resuming the child).
    pub fn cgroup(&mut self, dir: OwnedFd) -> &mut Self {
        self.cgroup = Some(dir);
        self
    }

    /// A cgroup v1 `tasks` file, opened for writing (`O_CLOEXEC`): the child moves itself
    /// into that cgroup first thing after the clone, by writing `0` to it, before it joins or
    /// makes any namespace. Call once per v1 hierarchy; a failure is
    /// [`Stage::CgroupV1`](crate::Stage::CgroupV1) with the file's index as the step.
    ///
    /// Why not the parent writing the child's pid to `cgroup.procs`: a move by pid takes the
    /// kernel's global `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace
    /// period (~12 ms measured here) unless another move happened just before — every
    /// sporadic spawn paid it, and concurrent spawns queued on it. A thread moving itself
    /// takes no such lock (~35 µs). The kernel checks the move against the file's opener,
    /// so the child needs no privilege of its own for it.
    pub fn cgroup_v1(&mut self, tasks_file: OwnedFd) -> &mut Self {
        self.cgroup_v1.push(tasks_file);
        self
    }

    /// The child's stdin.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = Some(cfg.into());
        self
    }

    /// The child's stdout.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = Some(cfg.into());
        self
    }

    /// The child's stderr.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = Some(cfg.into());
        self
    }

    /// Run the program as `uid`/`gid` (ids as seen inside the user namespace, if any).
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.user = Some((uid, gid));
        self
    }

    /// Supplementary groups for [`Command::user`] (default: none).
    pub fn groups(&mut self, groups: &[u32]) -> &mut Self {
        self.groups = Some(groups.to_vec());
        self
    }

    /// Deliver `signal` to the child when the **thread** that spawned it exits
    /// (`PR_SET_PDEATHSIG`).
    ///
    /// The kernel ties this signal to the thread that called clone, not to the process: if
    /// that thread ends (a worker of a thread pool, a `std::thread` that returns) the child
    /// gets the signal although the process lives on. Spawn from a thread that lives as long
    /// as the child should, or use [`Command::kill_with_parent_process`], which ties the
    /// signal to the whole process.
    ///
    /// The signal is armed after the last identity change of the child (the kernel clears
    /// it when the effective uid or gid changes, as [`Command::user`] and a user namespace
    /// do), and with [`Command::init`] the program gets it too when the init dies. If the
    /// spawning thread is already gone when the child arms it (possible with
    /// [`Command::spawn_paused`]: the thread may exit before [`PausedChild::resume`]), the
    /// child exits before exec with status 128 + `signal`. A setuid program the child
    /// execs, and a `pre_exec` hook that changes the identity, clear it again (kernel
    /// rules).
    pub fn kill_with_parent(&mut self, signal: i32) -> &mut Self {
        self.pdeathsig = Some((signal, DeathOf::Thread));
        self
    }

    /// Deliver `signal` to the child when the **process** that spawned it exits (or execs),
    /// whichever of its threads spawned it: the owner-death guarantee.
    ///
    /// The child is cloned by nook's spawner thread, a thread started once per process that
    /// blocks every signal and never exits, so `PR_SET_PDEATHSIG` (which follows the thread
    /// that called clone) fires exactly when the process ends — `exit`, a crash, a kill, or
    /// an `execve` of the process, which ends every other thread. Everything else is as
    /// with [`Command::kill_with_parent`]; the child is created with fork semantics (the
    /// spawner hands the clone back at once instead of waiting for the child's setup), which
    /// costs one hand-over to the spawner thread and back per spawn.
    ///
    /// ```no_run
    /// use nook_ns::{Command, NamespaceSet};
    ///
    /// // A worker thread spawns; the sandbox outlives the worker but not the program.
    /// let child = std::thread::spawn(|| {
    ///     Command::new("sleep")
    ///         .arg("infinity")
    ///         .namespaces(NamespaceSet::CONTAINER)
    ///         .init(true)
    ///         .kill_with_parent_process(libc::SIGKILL)
    ///         .spawn()
    /// })
    /// .join()
    /// .unwrap()?;
    /// # drop(child);
    /// # Ok::<(), nook_ns::Error>(())
    /// ```
    pub fn kill_with_parent_process(&mut self, signal: i32) -> &mut Self {
        self.pdeathsig = Some((signal, DeathOf::Process));
        self
    }

    /// Clears a parent-death signal set with [`Command::kill_with_parent`] or
    /// [`Command::kill_with_parent_process`]: the child outlives whoever spawned it (as an
    /// OCI runtime's container outlives `create`).
    pub fn no_parent_death_signal(&mut self) -> &mut Self {
        self.pdeathsig = None;
        self
    }

    /// A start gate, like runc's exec fifo: after its whole setup (mounts, `pivot_root`,
    /// identity, capabilities, `pre_exec` hooks) and before no_new_privs, Landlock, seccomp
    /// and the exec, the child opens the fifo `name` in the directory `dir` (an `O_PATH`
    /// descriptor, so no path needs to resolve in the child's new root) for writing, which
    /// blocks until another process opens it for reading; then it writes one byte (`0`),
    /// closes it and goes on.
    ///
    /// The spawn returns before the child blocks: once the program is found (an executable
    /// candidate path, checked with `faccessat(X_OK)`; [`Stage::Exec`] if none, as runc's
    /// `create` fails) and the gate too (`openat(O_PATH)`; [`Stage::StartGate`] if not) the
    /// child closes its error pipe, so a failure of a later step (confinement, the exec
    /// itself) is not reported as a [`SpawnError`]: the child writes it to its stderr as
    /// runc's init does (`exec NAME: no such file or directory`; `seccomp: …` and the like
    /// for the confinement steps) and exits with status 1, as runc's; a failure to open or
    /// write the fifo exits with status 127 silently. The child's signals stay blocked while it waits (they
    /// are delivered at exec); `SIGKILL` ends it. Never vfork-style.
    pub fn start_gate(&mut self, dir: impl Into<OwnedFd>, name: impl AsRef<OsStr>) -> &mut Self {
        self.start_gate = Some((dir.into(), name.as_ref().to_owned()));
        self
    }

    /// Gives the program a new pseudo-terminal as its stdin, stdout, stderr and controlling
    /// terminal, and sends the terminal's master over `console_socket` (a connected unix
    /// socket: `SCM_RIGHTS`, with `/dev/ptmx` as the message's bytes) — runc's
    /// `--console-socket` contract, which container engines (conmon, containerd's shim)
    /// implement on the other end.
    ///
    /// As runc does, the child allocates it itself after its mount steps and working
    /// directory: `/dev/ptmx` is opened in the child's own root (in a container, its own
    /// `devpts` instance, so `tty` names a `/dev/pts/N` that exists there; a child joining a
    /// running container's namespaces uses that container's), unlocked, its peer opened
    /// (`TIOCGPTPEER`), sized (`rows`/`cols` of [`Command::terminal_size`]), the master
    /// sent, and the peer put on 0, 1 and 2 (replacing any [`Command::stdin`]...
    /// setting); then `setsid()` and `ioctl(0, TIOCSCTTY)` make it the controlling terminal
    /// of a new session. With a non-root [`Command::user`] the terminal is given to that
    /// uid (as runc's `fixStdioPermissions`). Failures are [`Stage::Terminal`],
    /// [`Stage::ConsoleSocket`] and [`Stage::ControllingTerminal`].
    pub fn terminal(&mut self, console_socket: impl Into<OwnedFd>) -> &mut Self {
        let size = self.terminal.take().and_then(|(_, size)| size);
        self.terminal = Some((console_socket.into(), size));
        self
    }

    /// Also makes [`Command::terminal`]'s terminal the root's `/dev/console`: its peer
    /// (`/dev/pts/N` of the root's devpts) is bind-mounted there, the file created first
    /// (mode 0666) where `/dev` has none — what runc does for a container's first process,
    /// so programs that write to the console reach the container's terminal, not the
    /// host's. Only in a new mount namespace of the child's own (without one, or in a joined
    /// one, nothing is mounted); a failure is [`Stage::Terminal`]. Without a terminal it does
    /// nothing.
    pub fn terminal_console(&mut self, console: bool) -> &mut Self {
        self.terminal_console = console;
        self
    }

    /// The window size of [`Command::terminal`]'s terminal (OCI `process.consoleSize`).
    /// Without a terminal it does nothing.
    pub fn terminal_size(&mut self, rows: u16, cols: u16) -> &mut Self {
        if let Some((_, size)) = &mut self.terminal {
            *size = Some((rows, cols));
        }
        self
    }

    /// Joins the session keyring `name`, creating it if there is none of that name the child
    /// may search (`keyctl(KEYCTL_JOIN_SESSION_KEYRING)`), so the program does not share the
    /// caller's session keyring — what runc does for every container (`_ses.<id>`, joined
    /// again by `runc exec`). `perm`: set with `KEYCTL_SETPERM` afterwards (runc makes a
    /// new one searchable: see `nook_sandbox`). Done right after the switch to the new user
    /// namespace's root (so the keyring belongs to it) and before the mount steps. A kernel
    /// without keys (`ENOSYS`) is not an error, as with runc; other failures are
    /// [`Stage::SessionKeyring`].
    pub fn session_keyring(&mut self, name: impl AsRef<OsStr>, perm: Option<u32>) -> &mut Self {
        self.session_keyring = Some((name.as_ref().to_owned(), perm));
        self
    }

    /// Starts the child in an existing network namespace — another container's, as
    /// `docker run --network container:X` does — instead of the caller's. The thread that
    /// clones (this one, or nook's spawner thread with
    /// [`Command::kill_with_parent_process`]) enters `netns` for the clone only and goes
    /// back to its own namespace right after; the child inherits the joined one. Not
    /// together with a new network namespace ([`Namespace::Net`]):
    /// [`ValidationError::JoinAndCreate`]. `netns` must be a network namespace
    /// ([`ValidationError::JoinWrongKind`] otherwise).
    pub fn join_netns(&mut self, netns: NsFd) -> &mut Self {
        self.join_netns = Some(netns);
        self
    }

    /// Starts the child in an existing namespace of kind network, IPC, UTS, pid or cgroup
    /// given by a handle — a `/proc/PID/ns/*` file or a bind-mounted nsfs file, as an OCI
    /// config's `namespaces[].path` names one (CRI-O's and `podman pod`'s pods) — instead
    /// of the caller's. Several kinds can be joined (one call each). As with
    /// [`Command::join_netns`], the thread that clones enters each for the clone only and
    /// goes back to its own right after; the child inherits them. For a pid namespace the
    /// thread enters it for its children (`pid_for_children`), which the kernel allows with
    /// CAP_SYS_ADMIN: the program is a process of that namespace, not its init.
    ///
    /// A host or domain name ([`Command::hostname`], [`Command::domainname`]) is set in a
    /// UTS namespace joined here (as runc does for a pod's containers).
    ///
    /// A mount or time namespace cannot be entered by one thread of a multithreaded
    /// process: the child joins those itself, single-threaded, right after the sync point
    /// (after [`Command::join`]'s). A joined mount namespace is where the mount steps then
    /// run — they change it, as runc's rootfs setup changes a mount namespace an OCI config
    /// names by path — and it stands for [`Namespace::Mount`] for them; not with a new user
    /// namespace (the child would no longer hold CAP_SYS_ADMIN over it:
    /// [`ValidationError::JoinUnsupported`]).
    ///
    /// A user namespace joined here (a pod's, as CRI-O names it) owns the namespaces the
    /// child creates: a first child — a copy of the cloning thread, single-threaded, which a
    /// thread of a multithreaded caller is not — enters it and clones the real child with
    /// `CLONE_PARENT` (it is the caller's child like any other), as runc's nsexec stages
    /// do. The child becomes root of that namespace (uid and gid 0 must be mapped there; the
    /// caller's supplementary groups are dropped, which the namespace must allow —
    /// `/proc/PID/setgroups` — or the spawn fails at [`Stage::SetGroups`]); its mappings are
    /// the namespace's, never written by the caller. Never vfork-style.
    /// Not together with a new namespace of the same kind, nor twice the same kind, nor a
    /// kind [`Command::join_netns`] or [`Command::join`] joins too
    /// ([`ValidationError::JoinAndCreate`]).
    pub fn join_ns(&mut self, ns: NsFd) -> &mut Self {
        self.join_fds.push(ns);
        self
    }

    /// Starts the child in the namespaces `set` of the process behind `pidfd` — every
    /// namespace of a running container, as `docker exec` / runc's nsexec do — instead of the
    /// caller's.
    ///
    /// The child joins them itself, right after clone and the sync point, before anything
    /// else acts in a namespace: one atomic `setns(pidfd, set)` (Linux 5.8+), which the
    /// kernel applies user namespace first. The child is single-threaded there, so a user
    /// (or time) namespace can be joined from a multithreaded caller, which `setns` on a
    /// thread of the caller cannot ([`crate::join_pidfd`]); no thread of the caller moves.
    /// After the join the child's root and working directory are the target's root (the
    /// mount namespace's); [`Command::current_dir`] is applied after it, inside.
    ///
    /// A pid namespace applies to the children of whoever joins it, never to itself. When
    /// the caller may enter one (CAP_SYS_ADMIN in its own user namespace), the thread that
    /// clones enters the target's pid namespace for its children for the clone only (as
    /// [`Command::join_netns`] does with a network namespace) and the program is the child,
    /// a process of that namespace. Otherwise (an unprivileged caller joining its rootless
    /// container) the child joins it too, and the [init](Command::init) is implied: the
    /// child — in every namespace of the target but its pid namespace — forks the program
    /// into it and stays as `nk-init`, forwarding signals and exiting with the program's
    /// status (128 + signal when it was killed), as runc's second fork does;
    /// [`Child::id`](crate::Child::id) is then the init's pid.
    ///
    /// The kinds in `set` cannot also be created ([`ValidationError::JoinAndCreate`]);
    /// mount steps, hostname and domain still need a namespace of their own. A start in a
    /// cgroup ([`Command::cgroup`] or by the caller while paused) happens before the join.
    pub fn join(&mut self, pidfd: OwnedFd, set: NamespaceSet) -> &mut Self {
        self.join = Some((pidfd, set));
        self
    }

    /// Promises that no process in the namespaces joined with [`Command::join`] can act
    /// while this child starts — e.g. a pooled sandbox just reset, where only its init
    /// runs — so the join may use the vfork-style clone: the child shares this process's
    /// memory until it execs (no page table copied, no page copied on write; with a cgroup
    /// from [`Command::cgroup`], `clone3` with `CLONE_INTO_CGROUP`). Without the promise a
    /// joining child is forked and marks itself non-dumpable until exec, so that a process
    /// already in the target cannot open its `/proc/PID/exe` (the caller's binary,
    /// CVE-2019-5736) or its memory; a vfork-style child cannot, because the flag belongs
    /// to the memory it shares with the caller. A join of a user or time namespace, which
    /// needs a child with memory of its own, still forks.
    pub fn join_unobserved(&mut self, unobserved: bool) -> &mut Self {
        self.join_unobserved = unobserved;
        self
    }

    /// Passes `fd` to the program as descriptor number `target` (3 or above), like runc's
    /// `--preserve-fds` or Go's `ExtraFiles`.
    ///
    /// Only 0, 1, 2 and the descriptors passed here reach the program: the child closes
    /// every other descriptor it inherited right after clone — also those the host opened
    /// without `O_CLOEXEC` — so nothing of the host leaks into the sandbox. The command
    /// keeps `fd` (and can spawn again with it); each spawn passes a copy. Passing a second
    /// descriptor for the same `target` replaces the first. The descriptor is installed
    /// before the mount steps and `pivot_root`, so it may refer to anything the host can
    /// open; it is passed without `O_CLOEXEC`, so the program keeps it across exec.
    /// `target` must be below the child's `RLIMIT_NOFILE` (or the spawn fails with
    /// [`Stage::PassFd`] and `EBADF`); one no process can have (past `fs.nr_open`'s
    /// maximum, `i32::MAX` rounded down to a multiple of 64) is a
    /// [`ValidationError::BadFdTarget`].
    ///
    /// ```no_run
    /// use nook_ns::{Command, Namespace};
    /// use std::io::Read;
    ///
    /// // The program writes to fd 3; we read the other end of the pipe.
    /// let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let status = Command::new("/bin/sh")
    ///     .args(["-c", "echo hello >&3"])
    ///     .unshare(Namespace::Pid)
    ///     .preserve_fd(writer, 3)
    ///     .status()?;
    /// assert!(status.success());
    /// let mut got = String::new();
    /// reader.read_to_string(&mut got).unwrap();
    /// assert_eq!(got, "hello\n");
    /// # Ok::<(), nook_ns::Error>(())
    /// ```
    pub fn preserve_fd(&mut self, fd: impl Into<OwnedFd>, target: RawFd) -> &mut Self {
        let fd = fd.into();
        match self.preserved.iter_mut().find(|(t, _)| *t == target) {
            Some(slot) => slot.1 = fd,
            None => self.preserved.push((target, fd)),
        }
        self
    }

    /// Schedules a closure to run in the child just before exec, after every namespace
    /// step, like `std::os::unix::process::CommandExt::pre_exec`.
    ///
    /// # Safety
    /// The closure runs in a child cloned from a possibly multithreaded process: it must
    /// only do async-signal-safe work — no allocation, no locks (including stdio and
    /// logging) — since another thread may have held them at clone time. It runs after
    /// `pivot_root` and the identity change, with every signal blocked. It sees only
    /// descriptors 0, 1, 2 and those passed with [`Command::preserve_fd`] (already on their
    /// numbers) besides nook's own close-on-exec ones: pass what the hook needs, and close
    /// it in the hook if the program should not have it. Hooks run with the final
    /// capability sets ([`Command::capabilities`]), before no_new_privs, Landlock and
    /// seccomp. An `Err` aborts the
    /// spawn with `Stage::PreExec` and the error's errno.
    pub unsafe fn pre_exec<F>(&mut self, f: F) -> &mut Self
    where
        F: FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    {
        self.pre_exec.push(Box::new(f));
        self
    }

    /// Sets resource limit `resource` to `soft` / `hard` ([`Resource::INFINITY`]: none) in
    /// the child (`prlimit64`), after the mount steps and before the identity and
    /// capability changes (raising a hard limit needs `CAP_SYS_RESOURCE`). Setting the same
    /// resource again replaces it. A failure is [`Stage::Rlimit`] with the index of the
    /// limit; a soft limit above the hard one is [`ValidationError::Rlimit`].
    pub fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) -> &mut Self {
        match self.rlimits.iter_mut().find(|(r, _, _)| *r == resource) {
            Some(slot) => *slot = (resource, soft, hard),
            None => self.rlimits.push((resource, soft, hard)),
        }
        self
    }

    /// Writes `value` (-1000..=1000) to the child's `/proc/self/oom_score_adj`, first thing
    /// after the sync point (lowering it needs `CAP_SYS_RESOURCE` in the initial user
    /// namespace). A failure is [`Stage::OomScoreAdj`].
    pub fn oom_score_adj(&mut self, value: i32) -> &mut Self {
        self.oom_score_adj = Some(value);
        self
    }

    /// The child's umask (at most `0o777`), set with the rlimits.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask);
        self
    }

    /// The child's capability sets ([`Capabilities`]), applied after the last step that
    /// needs privilege and before the `pre_exec` hooks and exec:
    ///
    /// 1. before the identity change ([`Command::user`]): `PR_CAPBSET_DROP` of every
    ///    capability not in the bounding set, up to the running kernel's last
    ///    (`/proc/sys/kernel/cap_last_cap`, read once); then `PR_SET_KEEPCAPS` when the
    ///    identity is set, so the permitted set survives leaving uid 0;
    /// 2. after it: `capset` (v3) of the effective, permitted and inheritable sets, then the
    ///    ambient set (`PR_CAP_AMBIENT` clear, then a raise per capability).
    ///
    /// A capability the running kernel does not have is a
    /// [`ValidationError::UnknownCapability`] in a set that grants it; sets that do not nest
    /// (effective ⊆ permitted, inheritable ⊆ bounding, ambient ⊆ permitted ∩ inheritable)
    /// are [`ValidationError::CapabilitySets`]. The steps fail with [`Stage::CapBounding`],
    /// [`Stage::KeepCaps`], [`Stage::Capabilities`] and [`Stage::AmbientCapabilities`] (for
    /// instance when the child does not hold a capability it asks to keep).
    pub fn capabilities(&mut self, caps: Capabilities) -> &mut Self {
        self.capabilities = Some(caps);
        self
    }

    /// Sets `no_new_privs` (`PR_SET_NO_NEW_PRIVS`) in the child before Landlock and seccomp:
    /// execve can no longer grant privileges (setuid bits and file capabilities are ignored),
    /// and an unprivileged child may install a seccomp filter or a Landlock ruleset. A
    /// failure is [`Stage::NoNewPrivs`].
    pub fn no_new_privs(&mut self, enabled: bool) -> &mut Self {
        self.no_new_privs = enabled;
        self
    }

    /// Enforces a Landlock ruleset ([`crate::landlock::Ruleset`]) in the child
    /// (`landlock_restrict_self`) after no_new_privs and before seccomp; the kernel needs
    /// no_new_privs ([`Command::no_new_privs`]) or `CAP_SYS_ADMIN` for it. A ruleset with
    /// nothing the kernel could enforce (built with `allow_degraded` on a kernel without
    /// Landlock) adds no step. A failure is [`Stage::Landlock`].
    pub fn landlock(&mut self, ruleset: Landlock) -> &mut Self {
        self.landlock = ruleset.into_fd();
        self.landlock_given = true;
        self
    }

    /// Enforces the Landlock ruleset open at `ruleset_fd` (from `landlock_create_ruleset`),
    /// as [`Command::landlock`].
    pub fn landlock_fd(&mut self, ruleset_fd: OwnedFd) -> &mut Self {
        self.landlock = Some(ruleset_fd);
        self.landlock_given = true;
        self
    }

    /// Installs a seccomp filter in the child (`seccomp(SECCOMP_SET_MODE_FILTER)`) as the
    /// very last step before exec, after no_new_privs and Landlock, so the plan's own
    /// calls are not filtered; the program must allow `execve` (see [`SeccompProgram`] for
    /// what else). Unprivileged, it needs [`Command::no_new_privs`]. With
    /// [`Command::init`] the filter is installed before the init forks, so it confines
    /// `nk-init` (PID 1) and the payload alike. Without [`Command::no_new_privs`], when
    /// the plan changes the identity or the capabilities (which may drop the CAP_SYS_ADMIN
    /// an unconfined filter install needs), the filter is installed before those steps
    /// instead, as runc does: they, the `pre_exec` hooks and the start gate then run under
    /// it, so the program must allow them too. A program the kernel refuses fails the
    /// spawn at [`Stage::Seccomp`]; the listener of a
    /// [`SeccompProgram::notify`] program is on [`crate::Child::take_seccomp_notifier`].
    pub fn seccomp(&mut self, program: SeccompProgram) -> &mut Self {
        self.seccomp = Some(program);
        self
    }

    /// Use clone(2) instead of clone3 (the fallback path for old kernels); for tests.
    #[doc(hidden)]
    pub fn force_clone2(&mut self, force: bool) -> &mut Self {
        self.force_clone2 = force;
        self
    }

    /// The namespaces this command will create.
    pub fn get_namespaces(&self) -> NamespaceSet {
        self.namespaces
    }

    /// Checks every input without touching the system.
    pub fn validate(&self) -> std::result::Result<(), ValidationError> {
        self.prepare_with(false).map(drop)
    }

    /// Spawns the child and lets it run to exec. See [`Command::spawn_paused`] to act
    /// between clone and exec.
    pub fn spawn(&mut self) -> Result<crate::Child> {
        self.spawn_inner(false)?.resume()
    }

    /// Spawns, waits, and returns the exit status.
    pub fn status(&mut self) -> Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.wait().sys("waitid")
    }

    /// Spawns with stdout and stderr piped (stdin from `/dev/null` unless set), waits, and
    /// returns everything.
    pub fn output(&mut self) -> Result<Output> {
        if self.stdio[0].is_none() {
            self.stdio[0] = Some(Stdio::Null);
        }
        for i in 1..3 {
            if self.stdio[i].is_none() {
                self.stdio[i] = Some(Stdio::Piped);
            }
        }
        let child = self.spawn()?;
        child.wait_with_output().sys("wait_with_output")
    }

    /// Creates the child and stops it at the sync point, after its id maps are written.
    ///
    /// The returned [`PausedChild`] has the pid and pidfd; do what must happen before the
    /// child continues (move a veth into its network namespace, join it to a cgroup), then
    /// call [`PausedChild::resume`].
    pub fn spawn_paused(&mut self) -> Result<PausedChild> {
        self.spawn_inner(true)
    }

    /// Creates the child. With `pause` (or when the parent must write id maps or place the
    /// child in a cgroup) the child waits at the sync point until resumed.
    fn spawn_inner(&mut self, pause: bool) -> Result<PausedChild> {
        // A pid namespace to join: the cloning thread enters it for its children when the
        // caller may (CAP_SYS_ADMIN in its own user namespace, which the kernel requires);
        // otherwise the child joins it and the init forks the program into it.
        let joins_pid = self.join.as_ref().is_some_and(|(_, set)| set.has(Namespace::Pid));
        let child_joins_pid = joins_pid && !may_enter_pid_namespaces();
        let plan = self.prepare_with(child_joins_pid)?;
        let (euid, egid) = sys::geteuid_egid();
        let privileged = euid == 0;
        let uid_writer = self.effective_uid_map(euid).map(|m| {
            let w = idmap::choose_writer(&m, IdKind::Uid, euid, privileged);
            (m, w)
        });
        let gid_writer = self.effective_gid_map(egid).map(|m| {
            let w = idmap::choose_writer(&m, IdKind::Gid, egid, privileged);
            (m, w)
        });
        let setgroups_deny = match self.setgroups {
            SetGroups::Deny => gid_writer.is_some(),
            SetGroups::Allow => false,
            SetGroups::Auto => matches!(&gid_writer, Some((_, MapWriter::Direct))) && !privileged,
        };
        let mut plan = plan;
        if let Some(root) = plan.become_userns_root.as_mut()
            && setgroups_deny
        {
            root.groups = None;
        }
        // An unprivileged caller joining a user namespace (its own rootless sandbox's, whose
        // `setgroups` is denied): its groups stay as they are, which is all it may do.
        let joins_user = !self.namespaces.has(Namespace::User)
            && (self.child_joined(Namespace::User).is_some()
                || self.join.as_ref().is_some_and(|(_, set)| set.has(Namespace::User)));
        if let Some(root) = plan.become_userns_root.as_mut()
            && joins_user
            && !privileged
        {
            root.groups = None;
        }

        // Born in its cgroup by clone3 (`CLONE_INTO_CGROUP`): nothing for the parent to do
        // before the child goes on, so no sync point for it.
        let cgroup_by_clone = self.cgroup.is_some() && !self.force_clone2 && crate::probe::clone_into_cgroup();
        let needs_sync =
            pause || uid_writer.is_some() || gid_writer.is_some() || (self.cgroup.is_some() && !cgroup_by_clone);
        let sync = if needs_sync { Some(sys::socketpair_cloexec().sys("socketpair")?) } else { None };
        let process_owner = matches!(self.pdeathsig, Some((_, DeathOf::Process)));
        // vfork-style when the plan allows it (see `vfork_child` and the type's docs), and
        // the child's system calls leave the parent's TLS alone on this architecture.
        // Process-level death signals take the fork path: the spawner thread is then busy
        // for the clone only, not for the child's whole setup.
        let join_user = self.child_joined(Namespace::User).map(|ns| ns.as_fd().as_raw_fd());
        let vfork = !needs_sync
            && join_user.is_none()
            && self.pre_exec.is_empty()
            && !plan.init
            && plan.join.is_none_or(|flags| self.join_unobserved && flags & VFORK_UNJOINABLE == 0)
            // A switch to another uid or gid makes the kernel reset the dumpable flag of the
            // child's memory — shared with the caller until exec, which would stay
            // non-dumpable (no core dumps, /proc/PID owned by root): such a child forks.
            && plan.identity.as_ref().is_none_or(|id| (id.uid, id.gid) == (euid, egid))
            && (self.cgroup.is_none() || sys::VFORK_INTO_CGROUP)
            && !plan.join_mount
            && !plan.join_time
            && plan.time_offsets.is_none()
            && !self.force_clone2
            && !process_owner
            && self.start_gate.is_none()
            && crate::child::raw::sc::TOUCHES_NO_TLS;
        // A vfork-style child has exec'd or exited (after writing any error record) when the
        // clone returns, so the parent reads its error pipe without waiting: no record means
        // the exec succeeded, like `posix_spawn`, without waiting for the close-on-exec.
        let (err_read, err_write) =
            if vfork { sys::pipe_cloexec_nonblock() } else { sys::pipe_cloexec() }.sys("pipe2")?;
        let (child_stdio, pipes) = self.open_stdio()?;
        // Passed descriptors: close-on-exec copies, so the child's own copies vanish at exec
        // and only the numbers it installs remain.
        let passed = self
            .preserved
            .iter()
            .map(|(target, fd)| Ok((*target, fd.try_clone().sys("dup")?)))
            .collect::<Result<Vec<_>>>()?;
        // The thread the death signal is tied to: this one, or the spawner thread.
        let parent_thread = match self.pdeathsig {
            None => None,
            Some((_, owner)) => {
                let tid = match owner {
                    DeathOf::Thread => sys::gettid(),
                    DeathOf::Process => spawner::tid().sys("start spawner thread")?,
                };
                sys::pidfd_open_thread(tid).sys("pidfd_open")?
            }
        };

        // Every descriptor the child keeps; it sheds all others right after clone.
        let mut kept = vec![(FdRole::Error, err_write.as_raw_fd())];
        if let Some((_, child)) = &sync {
            kept.push((FdRole::Sync, child.as_raw_fd()));
        }
        for (i, fd) in child_stdio.iter().enumerate() {
            if let Some(fd) = fd {
                kept.push((FdRole::Stdio(i as RawFd), fd.as_raw_fd()));
            }
        }
        kept.extend(passed.iter().map(|(target, fd)| (FdRole::Pass(*target), fd.as_raw_fd())));
        if let Some(fd) = &parent_thread {
            kept.push((FdRole::ParentThread, fd.as_raw_fd()));
        }
        if let Some((fd, _)) = &self.join {
            kept.push((FdRole::Join, fd.as_raw_fd()));
        }
        if let Some(ns) = self.child_joined(Namespace::Mount) {
            kept.push((FdRole::JoinMount, ns.as_fd().as_raw_fd()));
        }
        if let Some(ns) = self.child_joined(Namespace::Time) {
            kept.push((FdRole::JoinTime, ns.as_fd().as_raw_fd()));
        }
        if plan.init {
            let memfd = crate::init_exe::memfd().sys("nk-init memfd")?;
            kept.push((FdRole::InitExe, memfd));
        }
        // The ruleset is kept open by the command (close-on-exec): the child enforces it
        // before exec.
        if let Some(fd) = &self.landlock {
            kept.push((FdRole::Landlock, fd.as_raw_fd()));
        }
        if let Some((fd, _)) = &self.start_gate {
            kept.push((FdRole::StartGate, fd.as_raw_fd()));
        }
        if let Some((fd, _)) = &self.terminal {
            kept.push((FdRole::Console, fd.as_raw_fd()));
        }
        for (i, fd) in self.cgroup_v1.iter().enumerate() {
            kept.push((FdRole::CgroupTasks(i), fd.as_raw_fd()));
        }
        let notify = match plan.seccomp.as_ref().filter(|s| s.notify) {
            Some(_) => Some(sys::socketpair_cloexec().sys("socketpair")?),
            None => None,
        };
        if let Some((_, child)) = &notify {
            kept.push((FdRole::SeccompNotify, child.as_raw_fd()));
        }
        let fds = ChildFds::new(kept);
        let clone_flags = self.namespaces.bits() & !(Namespace::Time.clone_flag() | Namespace::Cgroup.clone_flag());
        // Where clone3 does not know CLONE_INTO_CGROUP (before 5.7: EINVAL, not ENOSYS) the
        // child is placed by the parent below, as after the clone(2) fallback.
        let cgroup_fd = self.cgroup.as_ref().filter(|_| crate::probe::clone_into_cgroup()).map(|fd| fd.as_raw_fd());

        let force_clone2 = self.force_clone2;
        let join_netns = self.join_netns.as_ref();
        let hooks = &mut self.pre_exec;
        let (plan_ref, fds_ref, err_read_ref) = (&plan, &fds, &err_read);
        let mut clone = move || -> std::io::Result<(libc::pid_t, OwnedFd, bool)> {
            let (plan, fds, err_read) = (plan_ref, fds_ref, err_read_ref);
            let old_mask = sys::block_all_signals();
            let mut joined_cgroup = false;
            let vforked = if vfork {
                let args = VforkArgs { plan, fds };
                let arg = &args as *const VforkArgs<'_> as *mut libc::c_void;
                // SAFETY: `vfork_child` runs `run_child` without hooks, init or time
                // namespace: allocation-free, bare system calls writing only its own stack
                // (`sc::TOUCHES_NO_TLS`), ending in execve or _exit; every signal is blocked;
                // `args` lives on this stack while we are suspended.
                let r = unsafe { sys::vfork_like(clone_flags, cgroup_fd, vfork_child, arg) };
                match r {
                    // Our time namespace for children differs from our own: fork instead,
                    // and wait for the error pipe's EOF as usual.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match sys::set_blocking(err_read.as_fd()) {
                        Ok(()) => None,
                        Err(e) => Some(Err(e.into())),
                    },
                    r => {
                        joined_cgroup = r.is_ok() && cgroup_fd.is_some();
                        Some(r.map(|(pid, pidfd)| Forked::Parent { pid, pidfd }))
                    }
                }
            } else {
                None
            };
            let forked = match vforked {
                Some(r) => r,
                None => match join_user {
                    // SAFETY: as below; the first stage makes bare system calls only.
                    Some(user) => unsafe { sys::fork_in_user_ns(user, clone_flags, cgroup_fd, &mut joined_cgroup) },
                    // SAFETY: the child branch only runs `run_child`, which is allocation-free
                    // and ends in execve or _exit; everything it touches was prepared above.
                    None => unsafe { sys::fork_like(clone_flags, cgroup_fd, force_clone2, &mut joined_cgroup) },
                },
            };
            match forked {
                // SAFETY: we are the freshly cloned child with all signals blocked.
                Ok(Forked::Child) => unsafe { run_child(plan, fds, hooks, false) },
                Ok(Forked::Parent { pid, pidfd }) => {
                    sys::restore_signals(old_mask);
                    Ok((pid, pidfd, joined_cgroup))
                }
                Err(e) => {
                    sys::restore_signals(old_mask);
                    Err(e)
                }
            }
        };
        // With a network namespace to join: the cloning thread enters it for the clone only.
        let mut clone = move || -> std::io::Result<Cloned> {
            let Some(target) = join_netns else { return clone() };
            let own = NsFd::current(Namespace::Net).map_err(ns_io_error)?;
            clone_entered(own, || target.enter().map_err(ns_io_error), &mut clone)
        };
        // Namespaces joined by handle: the cloning thread enters each for the clone only.
        // (Mount and time namespaces: the child joins those itself.)
        // (A user namespace: the first stage of `fork_in_user_ns` enters it.)
        let join_fds: Vec<&NsFd> = self
            .join_fds
            .iter()
            .filter(|t| !matches!(t.kind(), Namespace::Mount | Namespace::Time | Namespace::User))
            .collect();
        let join_fds = join_fds.as_slice();
        let mut clone = move || -> std::io::Result<Cloned> { clone_entered_all(join_fds, &mut clone) };
        // With a pid namespace to join from here: the cloning thread enters it for its
        // children only (its own pid namespace never changes) and comes back right after.
        let join_pid = self.join.as_ref().filter(|_| joins_pid && !child_joins_pid).map(|(fd, _)| fd);
        let mut clone = move || -> std::io::Result<Cloned> {
            let Some(target) = join_pid else { return clone() };
            let own = NsFd::open("/proc/thread-self/ns/pid_for_children", Namespace::Pid).map_err(ns_io_error)?;
            let enter = || crate::join::join_pidfd(target.as_fd(), Namespace::Pid.as_set()).map_err(ns_io_error);
            clone_entered(own, enter, &mut clone)
        };
        let cloned = if process_owner { spawner::run(clone).sys("spawner thread")? } else { clone() };
        let (pid, pidfd, joined_cgroup) = cloned.map_err(|e| {
            Error::Spawn(SpawnError {
                stage: Stage::Clone,
                errno: e.raw_os_error().unwrap_or(libc::EINVAL),
                step: None,
            })
        })?;
        drop(parent_thread);
        drop(passed);
        let sync_parent = sync.map(|(parent, _child)| parent);
        drop(err_write);
        drop(child_stdio);
        // The plan goes with the paused child: freed only after the child exec'd (freeing it
        // now would make the kernel copy each page it touches, still shared with the child).
        let mut paused = PausedChild::new(pid, pidfd, sync_parent, err_read, pipes, plan);
        if let Some((parent, _child)) = notify {
            paused.set_notify_socket(parent);
        }

        // A failure from here on kills and reaps the child (and says so if that fails too).
        if uid_writer.is_some() || gid_writer.is_some() {
            let written = idmap::write_maps(
                pid,
                uid_writer.as_ref().map(|(m, w)| (m, w)),
                gid_writer.as_ref().map(|(m, w)| (m, w)),
                setgroups_deny,
            );
            if let Err(e) = written {
                return Err(paused.abort(e));
            }
        }
        if let (Some(dir), false) = (&self.cgroup, joined_cgroup) {
            let placed = sys::write_at(dir.as_fd(), c"cgroup.procs", pid.to_string().as_bytes());
            if let Err(e) = placed.sys_at("write", "cgroup.procs") {
                return Err(paused.abort(e));
            }
        }
        Ok(paused)
    }

    fn effective_uid_map(&self, euid: u32) -> Option<IdMap> {
        self.namespaces.has(Namespace::User).then(|| self.uid_map.clone().unwrap_or_else(|| IdMap::root_to(euid)))
    }

    fn effective_gid_map(&self, egid: u32) -> Option<IdMap> {
        self.namespaces.has(Namespace::User).then(|| self.gid_map.clone().unwrap_or_else(|| IdMap::root_to(egid)))
    }

    /// Opens the child's stdio; returns (child ends, parent ends).
    fn open_stdio(&mut self) -> Result<([Option<OwnedFd>; 3], ParentPipes)> {
        let mut child: [Option<OwnedFd>; 3] = [None, None, None];
        let mut pipes = ParentPipes::default();
        for (i, slot) in child.iter_mut().enumerate() {
            let fd = match self.stdio[i].as_ref() {
                None | Some(Stdio::Inherit) => None,
                Some(Stdio::Null) => Some(
                    sys::open(c"/dev/null", if i == 0 { OFlags::RDONLY } else { OFlags::WRONLY })
                        .sys_at("open", "/dev/null")?,
                ),
                Some(Stdio::Fd(fd)) => Some(fd.try_clone().sys("dup")?),
                Some(Stdio::Piped) => {
                    let (r, w) = sys::pipe_cloexec().sys("pipe2")?;
                    let (mine, theirs) = if i == 0 { (w, r) } else { (r, w) };
                    let mine = Some(std::fs::File::from(mine));
                    match i {
                        0 => pipes.stdin = mine,
                        1 => pipes.stdout = mine,
                        _ => pipes.stderr = mine,
                    }
                    Some(theirs)
                }
            };
            *slot = fd;
        }
        Ok((child, pipes))
    }

    /// The namespace of `kind` (mount or time) the child joins itself ([`Command::join_ns`]).
    fn child_joined(&self, kind: Namespace) -> Option<&NsFd> {
        self.join_fds.iter().find(|t| t.kind() == kind)
    }

    /// Validates everything and builds the child's plan. Pure: no system calls.
    #[cfg_attr(not(test), allow(dead_code))]
    fn prepare(&self) -> std::result::Result<Plan, ValidationError> {
        self.prepare_with(false)
    }

    /// [`Command::prepare`]; `child_joins_pid`: the child joins the pid namespace of
    /// [`Command::join`] itself (then the init is implied), not the cloning thread.
    fn prepare_with(&self, child_joins_pid: bool) -> std::result::Result<Plan, ValidationError> {
        let ns = self.namespaces;
        if let Some(target) = &self.join_netns {
            if target.kind() != Namespace::Net {
                return Err(ValidationError::JoinWrongKind { expected: Namespace::Net, found: target.kind() });
            }
            if ns.has(Namespace::Net) {
                return Err(ValidationError::JoinAndCreate { namespace: Namespace::Net });
            }
        }
        if let Some((_, set)) = &self.join {
            let also_net = self.join_netns.is_some().then_some(Namespace::Net);
            if let Some(namespace) = set.kinds().find(|k| ns.has(*k) || Some(*k) == also_net) {
                return Err(ValidationError::JoinAndCreate { namespace });
            }
        }
        for (i, target) in self.join_fds.iter().enumerate() {
            let kind = target.kind();
            if kind == Namespace::Mount && ns.has(Namespace::User) {
                return Err(ValidationError::JoinUnsupported { namespace: kind });
            }
            let twice = self.join_fds[..i].iter().any(|t| t.kind() == kind)
                || (kind == Namespace::Net && self.join_netns.is_some())
                || self.join.as_ref().is_some_and(|(_, set)| set.has(kind));
            if ns.has(kind) || twice {
                return Err(ValidationError::JoinAndCreate { namespace: kind });
            }
        }
        let init = self.init || child_joins_pid;
        let need = |setting: &'static str, namespace: Namespace| {
            if ns.has(namespace) { Ok(()) } else { Err(ValidationError::NeedsNamespace { setting, namespace }) }
        };

        if self.program.is_empty() {
            return Err(ValidationError::EmptyProgram);
        }
        let program = os_cstring("program", &self.program)?;
        let mut argv = vec![program.clone()];
        for a in &self.args {
            argv.push(os_cstring("argument", a)?);
        }
        let env = self.build_env()?;
        let exec_candidates = self.exec_candidates(&env)?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring("environment", &kv)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;

        let uts_name = |setting: &'static str, name: &Option<OsString>, too_long: fn(usize) -> ValidationError| {
            name.as_ref()
                .map(|n| {
                    // A UTS namespace joined by handle (`join_ns`) takes the name too, as
                    // runc sets a pod container's host name in the pod's namespace.
                    if !self.join_fds.iter().any(|t| t.kind() == Namespace::Uts) {
                        need(setting, Namespace::Uts)?;
                    }
                    if n.len() > MAX_UTS_NAME {
                        return Err(too_long(n.len()));
                    }
                    os_cstring(setting, n)
                })
                .transpose()
        };
        if self.loopback_up {
            need("loopback_up", Namespace::Net)?;
        }
        let hostname = uts_name("hostname", &self.hostname, |len| ValidationError::HostnameTooLong { len })?;
        let domainname = uts_name("domainname", &self.domainname, |len| ValidationError::DomainnameTooLong { len })?;

        for (map, kind, setting) in [(&self.uid_map, IdKind::Uid, "uid map"), (&self.gid_map, IdKind::Gid, "gid map")] {
            if let Some(m) = map {
                need(setting, Namespace::User)?;
                m.validate(kind)?;
            }
        }

        let mut steps = Vec::with_capacity(self.mounts.len());
        let mut peer_trees = Vec::new();
        let joins_mount = self.child_joined(Namespace::Mount).is_some();
        for step in &self.mounts {
            if !joins_mount {
                need("mount steps", Namespace::Mount)?;
            }
            if let (MountStep::LandlockRule { path, .. }, false) = (step, self.landlock_given) {
                return Err(ValidationError::LandlockRuleWithoutRuleset { path: path.clone() });
            }
            steps.push(step.prepare(peer_trees.len())?);
            if let MountStep::PeerBind { .. } = step {
                peer_trees.push(std::sync::atomic::AtomicI32::new(-1));
            }
        }
        // In a joined user namespace as in a new one, the new mount namespace belongs to a
        // less privileged user namespace than the one it is copied from: the kernel turns
        // the copies of shared mounts into slaves.
        let joins_user = self.child_joined(Namespace::User).is_some()
            || self.join.as_ref().is_some_and(|(_, set)| set.has(Namespace::User));
        crate::mount::check_root_propagation(
            self.root_propagation,
            ns.has(Namespace::User) || joins_user,
            &self.mounts,
        )?;
        let root_propagation = if ns.has(Namespace::Mount) || joins_mount {
            self.root_propagation.map(|(p, rec)| p.flags(rec))
        } else {
            None
        };

        let time_offsets = if ns.has(Namespace::Time) {
            let mut text = String::new();
            for (name, off) in [("monotonic", self.monotonic_offset), ("boottime", self.boottime_offset)] {
                if let Some(o) = off {
                    if o.nanos >= 1_000_000_000 {
                        return Err(ValidationError::BadClockOffset { nanos: o.nanos });
                    }
                    text.push_str(&format!("{name} {} {}\n", o.secs, o.nanos));
                }
            }
            Some(cstring("time offsets", text.as_bytes())?)
        } else {
            if self.monotonic_offset.is_some() || self.boottime_offset.is_some() {
                need("clock offsets", Namespace::Time)?;
            }
            None
        };

        let cwd = self.cwd.as_deref().map(|p| path_cstring("working directory", p)).transpose()?;
        if let Some((sig, _)) = self.pdeathsig
            && !(1..=64).contains(&sig)
        {
            return Err(ValidationError::BadSignal { signal: sig });
        }
        for &(target, _) in &self.preserved {
            let reason = match target {
                t if t < 0 => "negative",
                0..=2 => "0, 1 and 2 are stdin, stdout and stderr: set them with Command::stdin/stdout/stderr",
                t if t >= MAX_FD_LIMIT => "above the largest descriptor number Linux allows (fs.nr_open's maximum)",
                _ => continue,
            };
            return Err(ValidationError::BadFdTarget { target, reason });
        }

        let in_userns = ns.has(Namespace::User);
        let maps_root = |m: &Option<IdMap>| m.as_ref().is_none_or(|m| m.to_outside(0).is_some());
        // A joined user namespace (by handle, or with `Command::join`): its root too, before
        // any `Command::user` (uid and gid 0 must be mapped there, or the spawn fails at
        // `Stage::SetUid`/`SetGid`), the caller's supplementary groups dropped.
        let become_userns_root = ((in_userns && maps_root(&self.uid_map) && maps_root(&self.gid_map)) || joins_user)
            .then(|| Identity { uid: 0, gid: 0, groups: Some(Vec::new()) });
        let identity =
            self.user.map(|(uid, gid)| Identity { uid, gid, groups: Some(self.groups.clone().unwrap_or_default()) });

        let mut rlimits = Vec::with_capacity(self.rlimits.len());
        for &(resource, soft, hard) in &self.rlimits {
            if soft > hard {
                return Err(ValidationError::Rlimit { resource, soft, hard });
            }
            rlimits.push((resource as u32, libc::rlimit64 { rlim_cur: soft, rlim_max: hard }));
        }
        let oom_score_adj = self
            .oom_score_adj
            .map(|value| {
                if !(-1000..=1000).contains(&value) {
                    return Err(ValidationError::OomScoreAdj { value });
                }
                cstring("oom_score_adj", value.to_string().as_bytes())
            })
            .transpose()?;
        if let Some(mask) = self.umask
            && mask & !0o777 != 0
        {
            return Err(ValidationError::Umask { mask });
        }
        let caps = self.capabilities.map(|c| caps_plan(&c, self.user.is_some_and(|(uid, _)| uid != 0))).transpose()?;
        let seccomp = self
            .seccomp
            .as_ref()
            .map(|p| {
                let len = p.filter.len();
                if len == 0 || len > crate::seccomp::MAX_INSTRUCTIONS {
                    return Err(ValidationError::SeccompProgramLength { len });
                }
                if p.flags & (libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER) != 0 {
                    return Err(ValidationError::SeccompFlags { flags: p.flags });
                }
                Ok(SeccompPlan { filter: p.filter.clone(), flags: p.flags, notify: p.notify })
            })
            .transpose()?;

        Ok(Plan {
            argv: CStringArray::new(argv),
            envp: CStringArray::new(envp),
            exec_candidates,
            cwd,
            hostname,
            loopback_up: self.loopback_up,
            domainname,
            unshare_cgroup: ns.has(Namespace::Cgroup),
            time_offsets,
            root_propagation,
            steps,
            peer_trees,
            beneath: crate::mount::beneath_roots(&self.mounts)?,
            become_userns_root,
            identity,
            pdeathsig: self.pdeathsig.map(|(sig, _)| sig),
            init,
            init_hold: init && self.init_hold,
            init_subreaper: init && !ns.has(Namespace::Pid),
            rlimits,
            oom_score_adj,
            umask: self.umask.map(|m| m as libc::mode_t),
            caps,
            no_new_privs: self.no_new_privs,
            landlock: self.landlock.is_some(),
            seccomp,
            join: self
                .join
                .as_ref()
                .map(|(_, set)| if child_joins_pid { *set } else { set.without(Namespace::Pid) })
                .filter(|set| !set.is_empty())
                .map(|set| set.bits() as libc::c_int),
            join_mount: joins_mount,
            join_time: self.child_joined(Namespace::Time).is_some(),
            start_gate: self.start_gate.as_ref().map(|(_, name)| cstring("start gate", name.as_bytes())).transpose()?,
            terminal: self.terminal.as_ref().map(|(_, size)| TerminalPlan {
                size: size.map(|(rows, cols)| libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }),
                owner: self.user.map(|(uid, _)| uid).filter(|uid| *uid != 0),
                // Never over the caller's /dev/console: only in a mount namespace of its own.
                console: self.terminal_console && self.namespaces.has(Namespace::Mount),
            }),
            session_keyring: self
                .session_keyring
                .as_ref()
                .map(|(name, perm)| {
                    Ok::<_, ValidationError>(KeyringPlan {
                        name: cstring("session keyring", name.as_bytes())?,
                        perm: *perm,
                    })
                })
                .transpose()?,
        })
    }

    fn build_env(&self) -> std::result::Result<BTreeMap<OsString, OsString>, ValidationError> {
        let mut env: BTreeMap<OsString, OsString> =
            if self.env_clear { BTreeMap::new() } else { std::env::vars_os().collect() };
        for (k, v) in &self.env {
            if k.as_bytes().contains(&b'=') || k.is_empty() {
                return Err(ValidationError::NulByte { field: "environment name", value: k.to_string_lossy().into() });
            }
            match v {
                Some(v) => env.insert(k.clone(), v.clone()),
                None => env.remove(k),
            };
        }
        Ok(env)
    }

    /// The paths execve tries, resolved against the child's PATH (the search itself happens
    /// in the child, so it sees the new root).
    fn exec_candidates(
        &self,
        env: &BTreeMap<OsString, OsString>,
    ) -> std::result::Result<Vec<CString>, ValidationError> {
        let program = Path::new(&self.program);
        if self.program.as_bytes().contains(&b'/') {
            return Ok(vec![path_cstring("program", program)?]);
        }
        let path = env.get(OsStr::new("PATH")).cloned().unwrap_or_else(|| DEFAULT_PATH.into());
        let mut out = Vec::new();
        for dir in std::env::split_paths(&path) {
            let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
            out.push(path_cstring("program", &dir.join(program))?);
        }
        if out.is_empty() {
            out.push(abs_cstring("program", &Path::new("/usr/bin").join(program))?);
        }
        Ok(out)
    }
}

/// What a clone gives: the child's pid, its pidfd, whether it started in its cgroup.
type Cloned = (libc::pid_t, OwnedFd, bool);

/// Runs `clone` with the calling thread moved by `enter` into another namespace (for the
/// clone only) and back into `own` right after. If it cannot come back, nothing more may be
/// cloned from this thread and the child must not run on: it is killed and reaped.
fn clone_entered(
    own: NsFd,
    enter: impl FnOnce() -> std::io::Result<()>,
    mut clone: impl FnMut() -> std::io::Result<Cloned>,
) -> std::io::Result<Cloned> {
    enter()?;
    let cloned = clone();
    if let Err(e) = own.enter() {
        if let Ok((_, pidfd, _)) = &cloned {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
        }
        return Err(ns_io_error(e));
    }
    cloned
}

/// [`clone_entered`] for every namespace of `targets`, in order: each entered before the
/// clone and left right after (for a pid namespace: the one for children).
fn clone_entered_all(targets: &[&NsFd], clone: &mut dyn FnMut() -> std::io::Result<Cloned>) -> std::io::Result<Cloned> {
    let Some((first, rest)) = targets.split_first() else { return clone() };
    let own = match first.kind() {
        Namespace::Pid => NsFd::open("/proc/thread-self/ns/pid_for_children", Namespace::Pid),
        kind => NsFd::current(kind),
    }
    .map_err(ns_io_error)?;
    clone_entered(own, || first.enter().map_err(ns_io_error), || clone_entered_all(rest, &mut *clone))
}

/// Whether the calling thread may `setns` into a pid namespace: the kernel requires
/// CAP_SYS_ADMIN in the caller's own user namespace (and in the target's owner).
fn may_enter_pid_namespaces() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_ADMIN))
}

/// The child's capability steps for `caps`; `leaves_root`: the identity change leaves
/// uid 0 (then the permitted set must be kept across it).
fn caps_plan(caps: &Capabilities, leaves_root: bool) -> std::result::Result<CapsPlan, ValidationError> {
    let last = crate::caps::last_cap();
    for (set, s) in [
        ("bounding", caps.bounding),
        ("effective", caps.effective),
        ("permitted", caps.permitted),
        ("inheritable", caps.inheritable),
        ("ambient", caps.ambient),
    ] {
        if let Some(number) = s.highest().filter(|&n| n > last) {
            return Err(ValidationError::UnknownCapability { set, number, last_cap: last });
        }
    }
    let nest = |set, sub: CapSet, of, sup: CapSet| {
        if sup.is_superset(sub) { Ok(()) } else { Err(ValidationError::CapabilitySets { set, of }) }
    };
    nest("effective", caps.effective, "permitted", caps.permitted)?;
    nest("inheritable", caps.inheritable, "bounding", caps.bounding)?;
    nest("ambient", caps.ambient, "permitted and inheritable", caps.permitted.intersection(caps.inheritable))?;
    let named_last = Capability::CheckpointRestore.number();
    Ok(CapsPlan {
        bounding_drop: (0..=last).filter(|&n| caps.bounding.bits() & (1 << n) == 0).collect(),
        known_last: if crate::caps::last_cap_known() { last } else { named_last },
        keep_caps: leaves_root,
        effective: caps.effective.bits(),
        permitted: caps.permitted.bits(),
        inheritable: caps.inheritable.bits(),
        ambient: (0..=last).filter(|&n| caps.ambient.bits() & (1 << n) != 0).collect(),
    })
}

fn os_cstring(field: &'static str, s: &OsStr) -> std::result::Result<CString, ValidationError> {
    cstring(field, s.as_bytes())
}

/// An error of entering a namespace, as the `io::Error` the clone path reports.
fn ns_io_error(e: Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdMapping;

    #[test]
    fn rejects_bad_input_before_any_syscall() {
        let mut c = Command::new("/bin/true");
        c.arg("a\0b");
        assert!(matches!(c.validate(), Err(ValidationError::NulByte { field: "argument", .. })));

        let mut c = Command::new("/bin/true");
        c.unshare(Namespace::Uts).hostname("h".repeat(65));
        assert_eq!(c.validate(), Err(ValidationError::HostnameTooLong { len: 65 }));
        c.hostname("h".repeat(64));
        assert_eq!(c.validate(), Ok(()));

        let mut c = Command::new("/bin/true");
        c.hostname("x");
        assert!(matches!(c.validate(), Err(ValidationError::NeedsNamespace { namespace: Namespace::Uts, .. })));

        let mut c = Command::new("/bin/true");
        c.unshare(Namespace::User)
            .uid_map(IdMap::new().with(IdMapping::new(0, 1000, 2)).with(IdMapping::new(1, 2000, 1)));
        assert!(matches!(c.validate(), Err(ValidationError::IdMapOverlap { .. })));

        assert_eq!(Command::new("").validate().err(), Some(ValidationError::EmptyProgram));
        let mut c = Command::new("/bin/true");
        c.mount(MountStep::proc("/proc"));
        assert!(matches!(c.validate(), Err(ValidationError::NeedsNamespace { namespace: Namespace::Mount, .. })));
        let mut c = Command::new("/bin/true");
        c.unshare(Namespace::Time).monotonic_offset(ClockOffset { secs: 1, nanos: 1_000_000_000 });
        assert!(matches!(c.validate(), Err(ValidationError::BadClockOffset { .. })));
    }

    #[test]
    fn hardening_plan_and_bad_input() {
        let last = crate::caps::last_cap();
        let set = CapSet::EMPTY.with(Capability::Chown).with(Capability::NetBindService);
        let mut c = Command::new("/bin/true");
        c.capabilities(Capabilities::only(set).with_ambient(CapSet::EMPTY.with(Capability::NetBindService)))
            .user(1000, 1000)
            .rlimit(Resource::Nofile, 10, 20)
            .rlimit(Resource::Nofile, 30, 40)
            .oom_score_adj(-5)
            .umask(0o22)
            .no_new_privs(true)
            .seccomp(SeccompProgram::new(vec![libc::sock_filter { code: 6, jt: 0, jf: 0, k: 0x7fff_0000 }]));
        let plan = c.prepare().unwrap();
        let caps = plan.caps.as_ref().unwrap();
        assert_eq!(caps.bounding_drop.len() as u32, last + 1 - 2);
        assert!(
            !caps.bounding_drop.contains(&0) && !caps.bounding_drop.contains(&10) && caps.bounding_drop.contains(&1)
        );
        assert!(caps.keep_caps);
        assert_eq!(caps.ambient, [10]);
        assert_eq!(plan.rlimits.len(), 1);
        assert_eq!(plan.rlimits[0].1.rlim_cur, 30);
        assert_eq!(plan.oom_score_adj.as_deref(), Some(c"-5"));
        assert!(plan.no_new_privs && plan.seccomp.is_some() && !plan.landlock);

        let mut c = Command::new("/bin/true");
        c.seccomp(SeccompProgram::new(vec![libc::sock_filter { code: 6, jt: 0, jf: 0, k: 0 }; 4097]));
        assert_eq!(c.validate(), Err(ValidationError::SeccompProgramLength { len: 4097 }));
        c.seccomp(
            SeccompProgram::new(vec![libc::sock_filter { code: 6, jt: 0, jf: 0, k: 0 }])
                .flags(libc::SECCOMP_FILTER_FLAG_TSYNC),
        );
        assert!(matches!(c.validate(), Err(ValidationError::SeccompFlags { .. })));
        let mut c = Command::new("/bin/true");
        let mut caps = Capabilities::only(CapSet::EMPTY);
        caps.effective = CapSet::EMPTY.with(Capability::Kill);
        c.capabilities(caps);
        assert_eq!(c.validate(), Err(ValidationError::CapabilitySets { set: "effective", of: "permitted" }));
    }

    #[test]
    fn path_search_candidates() {
        let mut c = Command::new("sh");
        c.env_clear().env("PATH", "/a:/b");
        let plan = c.prepare().unwrap();
        let got: Vec<_> = plan.exec_candidates.iter().map(|c| c.to_str().unwrap().to_owned()).collect();
        assert_eq!(got, ["/a/sh", "/b/sh"]);
        let plan = Command::new("/bin/sh").prepare().unwrap();
        assert_eq!(plan.exec_candidates.len(), 1);
    }

    #[test]
    fn time_offsets_render() {
        let mut c = Command::new("/bin/true");
        c.unshare(Namespace::Time)
            .monotonic_offset(ClockOffset::from_secs(86_400))
            .boottime_offset(ClockOffset { secs: -5, nanos: 7 });
        let plan = c.prepare().unwrap();
        assert_eq!(plan.time_offsets.unwrap().to_str().unwrap(), "monotonic 86400 0\nboottime -5 7\n");
    }
}
