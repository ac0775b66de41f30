//! # nook-ns — Linux namespaces and the spawn core of nook
//!
//! Create, join and inspect all eight kinds of Linux namespace (mount, uts, ipc, pid, net,
//! user, cgroup, time), and create child processes in them safely from multithreaded
//! programs.
//!
//! - [`Command`] spawns a child in a [`NamespaceSet`] with clone3 (`CLONE_PIDFD`, optional
//!   `CLONE_INTO_CGROUP`; clone(2) fallback). The child runs a precomputed,
//!   allocation-free plan — id maps written by the parent at a sync point, hostname and NIS
//!   domain, mount steps and `pivot_root`, clock offsets, identity — then execs. A failure in
//!   the child comes back as [`SpawnError`] naming the [`Stage`] and errno. When the parent
//!   has nothing to do before the exec, the child is created vfork-style instead (`CLONE_VM
//!   | CLONE_VFORK`, like `posix_spawn`), which costs no page-table copy.
//! - [`Command::spawn_paused`] stops the child at the sync point so the caller can move a
//!   network link into it or put it in a cgroup before it continues.
//! - Only 0, 1, 2 and the descriptors passed with [`Command::preserve_fd`] (at numbers of
//!   the caller's choice, like runc's `--preserve-fds`) reach the program: right after clone
//!   the child closes everything else it inherited, host descriptors without `O_CLOEXEC`
//!   included, so a paused child holds no other thread's pipes either.
//! - [`Command::kill_with_parent`] ties the child to the spawning thread,
//!   [`Command::kill_with_parent_process`] to the whole process; both are armed after the
//!   child's last identity change and reach the payload behind the init.
//! - [`Command::start_gate`] is runc's exec fifo: the child does its whole setup, lets the
//!   spawn return, then waits opening a fifo for writing until someone opens it for reading
//!   (an OCI runtime's `create` / `start`); [`Command::no_parent_death_signal`] lets a child
//!   outlive its spawner.
//! - [`Command::terminal`] is runc's `--console-socket`: the child allocates a pty from its
//!   own `/dev/ptmx` (a container's devpts), sends the master over a socket (`SCM_RIGHTS`)
//!   and makes the peer its stdio and controlling terminal (`setsid`, `TIOCSCTTY`);
//!   [`Command::session_keyring`] joins a named session keyring (runc's `_ses.<id>`).
//! - [`Command::init`] runs a minimal PID 1 that reaps orphans, forwards signals and exits
//!   with the payload's status. It is `nk-init`, a static, freestanding program of about a
//!   kilobyte (`init/init.c`, built by `build.rs` with the target's C compiler) exec'd from a
//!   sealed memfd — not a fork of the caller, so the sandbox cannot read the caller's
//!   memory or environment through its PID 1.
//!   [`Command::init_hold`] runs the init alone, holding the namespaces for processes
//!   that join them later (until SIGTERM, SIGINT or SIGHUP).
//! - Hardening, applied by the child after its last privileged step: [`Capabilities`]
//!   (bounding, effective, permitted, inheritable and ambient sets of typed
//!   [`Capability`]s, kept across the uid change), [`Command::rlimit`],
//!   [`Command::oom_score_adj`], [`Command::umask`], [`Command::no_new_privs`], a Landlock
//!   ruleset ([`landlock::Ruleset`], enforced with [`Command::landlock`]) and a seccomp
//!   filter ([`seccomp::SeccompProgram`], compiled elsewhere and shared across spawns)
//!   installed as the very last step before exec; seccomp user notification is answered
//!   from the parent ([`Child::take_seccomp_notifier`], [`seccomp::Notifier`]). Order in
//!   the child: session keyring → mounts, `pivot_root`, `chdir` → terminal → rlimits, umask → bounding set, keep-caps →
//!   identity → capability sets → parent-death signal → `pre_exec` hooks → start gate →
//!   no_new_privs → Landlock → seccomp → exec (or the init, which is then confined with the payload).
//!   Each step fails closed with its own [`Stage`].
//! - [`IdMap`] multi-range uid/gid maps (`newuidmap`/`newgidmap` when unprivileged).
//! - [`MountStep`] / [`Propagation`]: bind (ro/rw), a peer bind that keeps the ties of a
//!   shared source with the caller's namespace ([`MountStep::PeerBind`]), proc, sysfs, tmpfs,
//!   devpts, mqueue, overlay,
//!   files, symlinks,
//!   propagation changes, `pivot_root` (or `MS_MOVE` + `chroot`: [`MountStep::move_root`],
//!   runc's `--no-pivot`), read-only remount, masking.
//! - [`NetNs`]: network namespaces, anonymous or persisted like `ip netns add`.
//! - [`NsFd`], [`NsGuard`], [`run_in`], [`join_pidfd`]: join by fd, path or pidfd, and come
//!   back.
//! - [`namespaces_of`], [`processes_in`], [`NsFd::owner`], [`NsFd::parent`]: inspection;
//!   [`process_start_time`] for owner records that must survive pid reuse (`/proc` parsed
//!   with `procfs-core`).
//!
//! ```no_run
//! use nook_ns::{Command, MountStep, Namespace, NamespaceSet};
//!
//! let status = Command::new("/bin/sh")
//!     .args(["-c", "echo pid $$ on $(hostname)"])
//!     .namespaces(NamespaceSet::CONTAINER)
//!     .hostname("nk-box")
//!     .mount(MountStep::proc("/proc"))
//!     .init(true)
//!     .status()?;
//! assert!(status.success());
//! # Ok::<(), nook_ns::Error>(())
//! ```
//!
//! ## Design notes
//! - Errors: a failed system call is [`Error::Sys`] naming the call and the path; a failed
//!   step whose undo failed too is [`Error::Cleanup`]; a removal that kept going reports
//!   every failure in [`Error::Teardown`]; [`Error::raw_os_error`] sees through all of them.
//! - One helper-thread runner serves [`run_in`] (comes back), [`on_thread_in`] and
//!   [`on_thread_with_cwd`] (the thread ends instead) and [`NetNs`] creation.
//! - Time and cgroup namespaces are entered by the child *after* the sync point
//!   (`unshare` + writing `timens_offsets` + `setns(time_for_children)`; `unshare
//!   (CLONE_NEWCGROUP)`): clock offsets can only be written before a process enters a time
//!   namespace, and the cgroup namespace must be rooted at the cgroup the parent placed the
//!   child in.
//! - The parent's system calls go through `rustix`; raw `libc` remains for what rustix
//!   cannot express — the clone itself (clone3, clone, the vfork-style child), the nsfs
//!   ioctls, the full signal mask — in the `sys` module, each named there with its reason,
//!   and for the feature probes' deliberately invalid calls. Dependencies: `libc`, `rustix`,
//!   `bitflags`, `thiserror`, `serde`, `procfs-core` (pure `/proc` parsers) and `cc` at
//!   build time, for `nk-init` (x86_64 and aarch64). Between clone and exec the child makes
//!   bare system calls (`core::arch::asm!` `syscall` on x86_64, `svc #0` on aarch64,
//!   returning `-errno` like glibc's internal `INTERNAL_SYSCALL`): glibc's wrappers, even
//!   `syscall(3)`, write `errno` and flip the cancellation state in the calling thread's
//!   TLS, which a vfork-style child shares with its suspended parent thread. On other
//!   architectures the spawn core falls back to `libc::syscall` and never uses the
//!   vfork-style path.
//! - The async-signal-safe boundary is a file boundary: everything that runs between clone
//!   and exec is in the `child` module (`src/child.rs`, and `src/child/raw.rs` for its bare
//!   system calls); the `plan` module (`src/plan.rs`) builds, in the parent, everything the
//!   child reads. Auditing "no allocation, no locks after clone" means reading those files.
//! - The init is a program of its own (see the `init_exe` module): a fork of the caller as
//!   PID 1 showed the caller's environment in `/proc/1/environ` and its heap in
//!   `/proc/1/mem` to root of the sandbox. The child sheds its descriptors (keeping the
//!   sealed memfd), forks the payload, which waits on a pipe, then execs `nk-init` (empty
//!   environment, non-dumpable first thing), which releases the payload; signals stay
//!   blocked, hence pending, across that exec.

// Unsafe code only in the modules named below, each with its reason; the rest of the crate
// (handles, joining, inspection, id maps, mount steps' data, network namespaces) has none.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod background;
pub mod caps;
// What the child runs between clone and exec: bare system calls (`asm!`), raw pointers
// into the plan, the vfork-style entry point.
#[allow(unsafe_code)]
mod child;
pub mod failpoint;
// The clone itself (`sys::fork_like` / `sys::vfork_like`), running the child, and the
// unsafe `Command::pre_exec`.
#[allow(unsafe_code)]
mod command;
mod error;
// sigset_t, signalfd and reading its records (raw libc: rustix has no signalfd).
#[allow(unsafe_code)]
mod forward;
mod handle;
mod harden;
mod idmap;
mod init_exe;
mod inspect;
mod join;
pub mod landlock;
mod mount;
mod namespace;
mod netns;
// `CStringArray` holds raw pointers into its own strings (`unsafe impl Send, Sync`).
#[allow(unsafe_code)]
mod plan;
// Feature probes: raw system calls with arguments the kernel must refuse.
#[allow(unsafe_code)]
mod probe;
// The spawner thread runs type-erased jobs through raw pointers.
#[allow(unsafe_code)]
mod process;
pub mod seccomp;
pub mod statefile;
// The clone, the nsfs ioctls and the full signal mask (raw libc); the other parent-side
// helpers over rustix.
#[allow(unsafe_code)]
mod sys;
mod thread;

pub use caps::{CapSet, Capabilities, Capability};
pub use command::{ClockOffset, Command, MAX_UTS_NAME};
pub use error::{Error, Result, SpawnError, Stage, ValidationError};
pub use forward::{block_signals, forward_signals, forward_signals_with};
pub use handle::{NsFd, NsId, ns_id};
pub use harden::Resource;
pub use idmap::{IdKind, IdMap, IdMapping, MAX_RANGES, SetGroups};
pub use inspect::{differing, namespaces_of, process_start_time, processes_in};
pub use join::{NsGuard, join_path, join_pidfd, pidfd_open, run_in};
pub use mount::{MountStep, Propagation, bind, mount_tmpfs, set_propagation, unmount};
pub use namespace::{Namespace, NamespaceSet};
pub use netns::{NETNS_RUN_DIR, NetNs};
pub use plan::FORWARDED_SIGNALS;
pub use probe::{KernelSupport, landlock_abi, probe};
pub use process::{Child, PausedChild, Stdio};
pub use sys::inherited_fd;
pub use thread::{on_thread_in, on_thread_with_cwd};
