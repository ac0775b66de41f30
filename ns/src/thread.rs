//! Running a closure on a short-lived helper thread that is somewhere else than the caller:
//! inside other namespaces ([`on_thread_in`]) or in its own working directory
//! ([`on_thread_with_cwd`]). The thread ends when the closure returns, so it is never moved
//! back: cheaper than [`crate::run_in`] (no handle to the old namespaces is opened, no second
//! `setns`), and the caller's threads are never touched. This is the one implementation the
//! other nook crates use (netlink and sysctls inside a network namespace, overlay mounts with
//! relative layer paths).

use std::os::fd::AsFd;
use std::path::Path;

use rustix::thread::UnshareFlags;

use crate::error::{Result, SysContext};
use crate::handle::NsFd;
use crate::join::{NsGuard, refuse_single_thread_kinds};
use crate::sys;

/// Stack of the helper threads: what they run is shallow (syscalls, netlink messages, JSON of
/// a firewall ruleset), and a small stack keeps the per-call cost at one small mapping.
pub(crate) const HELPER_STACK: usize = 256 << 10;

/// Runs `f` on a short-lived scoped thread that first enters `targets` (user first, mount
/// last; entering a mount namespace first gives the thread its own filesystem context, as the
/// kernel requires) and returns what `f` returned. A panic in `f` is resumed on the caller's
/// thread.
///
/// User and time namespaces cannot be entered by a thread of a multithreaded process:
/// [`Error::NeedsSingleThread`](crate::Error::NeedsSingleThread), before any thread is started.
///
/// ```no_run
/// use nook_ns::{NetNs, on_thread_in};
///
/// let ns = NetNs::new()?;
/// let dev = on_thread_in(&[ns.ns()], || std::fs::read_to_string("/proc/thread-self/net/dev"))??;
/// assert_eq!(dev.lines().count(), 3); // two header lines and `lo`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn on_thread_in<T: Send>(targets: &[&NsFd], f: impl FnOnce() -> T + Send) -> Result<T> {
    refuse_single_thread_kinds(targets)?;
    on_helper_thread("nook-ns-in", Some(HELPER_STACK), || {
        // Nothing saved: the thread ends instead of coming back.
        let _stay = NsGuard::enter_ordered(targets, false)?;
        Ok(f())
    })
}

/// Runs `f` on a short-lived scoped thread whose working directory is `dir`, leaving every
/// other thread's (the caller's included) untouched: the thread first unshares its filesystem
/// context (`unshare(CLONE_FS)`: own cwd, root and umask), then `chdir`s. Namespaces stay
/// shared, so mounts `f` makes are the caller's. A panic in `f` is resumed on the caller's
/// thread.
///
/// ```
/// let here = nook_ns::on_thread_with_cwd(std::path::Path::new("/"), || std::env::current_dir())??;
/// assert_eq!(here, std::path::Path::new("/"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn on_thread_with_cwd<T: Send>(dir: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    on_helper_thread("nook-ns-cwd", Some(HELPER_STACK), || {
        sys::unshare(UnshareFlags::FS).sys_at("unshare(CLONE_FS)", dir)?;
        let d = std::fs::File::open(dir).sys_at("open", dir)?;
        rustix::process::fchdir(d.as_fd()).sys_at("fchdir", dir)?;
        Ok(f())
    })
}

/// The one helper-thread runner of the crate ([`on_thread_in`], [`on_thread_with_cwd`],
/// [`crate::run_in`], creating network namespaces): runs `body` on a named scoped thread
/// (with `stack` bytes of stack, or the default) and returns its result; a panic is resumed
/// on the caller's thread.
pub(crate) fn on_helper_thread<T: Send>(
    name: &str,
    stack: Option<usize>,
    body: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|scope| {
        let mut builder = std::thread::Builder::new().name(name.into());
        if let Some(size) = stack {
            builder = builder.stack_size(size);
        }
        let handle = builder.spawn_scoped(scope, body).sys("spawn helper thread")?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
