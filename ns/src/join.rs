//! Joining namespaces: by fd or path ([`NsFd::enter`]), several at once through a pidfd
//! ([`join_pidfd`]), temporarily with a guard that always comes back ([`NsGuard`]), and on a
//! dedicated thread ([`run_in`]) so the caller's own thread never moves.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::OFlags;
use rustix::thread::{ThreadNameSpaceType, UnshareFlags};

use crate::error::{Error, Result, SysContext};
use crate::handle::NsFd;
use crate::namespace::{Namespace, NamespaceSet};
use crate::sys;

/// Moves the calling thread into the namespace at `path` (of kind `kind`).
pub fn join_path(path: impl AsRef<Path>, kind: Namespace) -> Result<()> {
    NsFd::open(path, kind)?.enter()
}

/// Moves the calling thread into several namespaces of the process behind `pidfd` in one
/// atomic `setns` (Linux 5.8+). Joining a user namespace needs a single-threaded process.
pub fn join_pidfd(pidfd: BorrowedFd<'_>, set: NamespaceSet) -> Result<()> {
    for namespace in [Namespace::User, Namespace::Time] {
        if set.has(namespace) && !single_threaded() {
            return Err(Error::NeedsSingleThread { namespace });
        }
    }
    let types = ThreadNameSpaceType::from_bits_retain(set.bits() as u32);
    rustix::thread::move_into_thread_name_spaces(pidfd, types).sys("setns(pidfd)")
}

/// Opens a pidfd for `pid` (for [`join_pidfd`] on a process you did not spawn).
pub fn pidfd_open(pid: u32) -> Result<std::os::fd::OwnedFd> {
    sys::pidfd_open(pid as libc::pid_t).sys("pidfd_open")
}

/// `setns` into a user or time namespace moves the caller itself and requires a
/// single-threaded process (EINVAL / EUSERS otherwise).
fn needs_single_thread(kind: Namespace) -> bool {
    matches!(kind, Namespace::User | Namespace::Time)
}

/// Counts the entries of `/proc/self/task` (no file to parse): generating
/// `/proc/self/status` costs the kernel ~100 µs more, which `setns_roundtrip`'s time row showed.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").map(|d| d.count() == 1).unwrap_or(false)
}

/// The calling thread's current namespace of `kind`, in the form `setns` restores: for a pid
/// namespace `setns` changes the namespace *for children*, so that is saved; for a time
/// namespace it moves the caller and its future children, and restoring
/// `time_for_children` brings both back.
fn current_for_restore(kind: Namespace) -> Result<NsFd> {
    match kind {
        Namespace::Pid => NsFd::open("/proc/thread-self/ns/pid_for_children", kind),
        Namespace::Time => NsFd::open("/proc/thread-self/ns/time_for_children", kind),
        _ => NsFd::current(kind),
    }
}

/// Keeps the calling thread in other namespaces until it is dropped or
/// [`NsGuard::restore`]d; then the thread returns to where it was. If coming back fails the
/// process aborts rather than keep running a thread in the wrong namespace.
///
/// The guard is `!Send`: it must be dropped on the thread that entered. Entering a mount
/// namespace first detaches the thread's filesystem context (`unshare(CLONE_FS)`), as the
/// kernel requires; `setns` moves the thread's root and working directory to the root of
/// the namespace it enters, so the guard also takes the working directory back on return.
///
/// ```no_run
/// use nook_ns::{NetNs, NsGuard};
///
/// let ns = NetNs::new()?;
/// {
///     let _inside = NsGuard::enter(ns.ns())?;
///     // sockets opened here belong to `ns`
/// }
/// // back in the original network namespace
/// # Ok::<(), nook_ns::Error>(())
/// ```
#[derive(Debug)]
pub struct NsGuard {
    saved: Vec<NsFd>,
    /// The working directory before a mount namespace was entered.
    cwd: Option<OwnedFd>,
    _not_send: PhantomData<*const ()>,
}

impl NsGuard {
    /// Enters one namespace.
    pub fn enter(target: &NsFd) -> Result<NsGuard> {
        NsGuard::enter_all(&[target])
    }

    /// Enters several namespaces, user first and mount last. If one fails, those already
    /// entered are left again before the error is returned.
    pub fn enter_all(targets: &[&NsFd]) -> Result<NsGuard> {
        NsGuard::enter_ordered(targets, true)
    }

    /// Enters `targets` user first and mount last; a mount namespace first gets the thread a
    /// filesystem context of its own. With `come_back`, saves where the thread was (and
    /// returns there on failure or drop); without, the guard holds nothing and the thread
    /// stays (for a thread that ends right after, see [`crate::on_thread_in`]).
    pub(crate) fn enter_ordered(targets: &[&NsFd], come_back: bool) -> Result<NsGuard> {
        let mut sorted: Vec<&NsFd> = targets.to_vec();
        sorted.sort_by_key(|t| t.kind());
        let saved = Vec::with_capacity(if come_back { sorted.len() } else { 0 });
        let mut guard = NsGuard { saved, cwd: None, _not_send: PhantomData };
        for target in sorted {
            if needs_single_thread(target.kind()) && !single_threaded() {
                return Err(Error::NeedsSingleThread { namespace: target.kind() });
            }
            if target.kind() == Namespace::Mount {
                sys::unshare(UnshareFlags::FS).sys("unshare(CLONE_FS)")?;
                if come_back {
                    guard.cwd = Some(sys::open(c".", OFlags::PATH | OFlags::DIRECTORY).sys("open(\".\")")?);
                }
            }
            let saved = if come_back { Some(current_for_restore(target.kind())?) } else { None };
            target.enter()?;
            guard.saved.extend(saved);
        }
        Ok(guard)
    }

    /// Returns to the saved namespaces (in reverse order), reporting the first failure.
    pub fn restore(mut self) -> Result<()> {
        self.restore_inner()
    }

    fn restore_inner(&mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(saved) = self.saved.pop() {
            if let Err(e) = saved.enter() {
                first_err.get_or_insert(e);
            }
        }
        if let Some(cwd) = self.cwd.take()
            && let Err(e) = rustix::process::fchdir(cwd.as_fd())
        {
            first_err.get_or_insert(Error::sys("fchdir", e));
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore_inner() {
            eprintln!("nook-ns: cannot return the thread to its namespace ({e}); aborting");
            std::process::abort();
        }
    }
}

/// Runs `f` on a dedicated thread that first enters `targets`, and returns its result.
/// The caller's thread never changes namespace; the helper thread restores its namespaces
/// (also when `f` panics — the panic is then resumed on the caller's thread) and exits.
///
/// User and time namespaces cannot be entered this way (a thread of a multithreaded
/// process may not join one): [`Error::NeedsSingleThread`].
///
/// ```no_run
/// use nook_ns::{NetNs, run_in};
///
/// let ns = NetNs::new()?;
/// // Not /sys/class/net: sysfs shows the namespace of whoever mounted it, not the thread's.
/// let dev = run_in(&[ns.ns()], || std::fs::read_to_string("/proc/thread-self/net/dev"))??;
/// assert_eq!(dev.lines().count(), 3); // two header lines and `lo`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_in<T, F>(targets: &[&NsFd], f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    refuse_single_thread_kinds(targets)?;
    // The thread's stack is the default one: `f` is the caller's code.
    crate::thread::on_helper_thread("nook-ns-run-in", None, || {
        let guard = NsGuard::enter_all(targets)?;
        let out = f();
        guard.restore()?;
        Ok(out)
    })
}

/// [`Error::NeedsSingleThread`] for a user or time namespace among `targets`: a helper
/// thread of a multithreaded process cannot enter one.
pub(crate) fn refuse_single_thread_kinds(targets: &[&NsFd]) -> Result<()> {
    match targets.iter().find(|t| needs_single_thread(t.kind())) {
        Some(t) => Err(Error::NeedsSingleThread { namespace: t.kind() }),
        None => Ok(()),
    }
}
