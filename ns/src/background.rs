//! Work that runs off the caller's path but must not be lost when the process exits: deleting
//! a link or a bridge waits for RCU grace periods in the kernel (tens of ms), so nook hands
//! such deletions to a background thread and returns at once. A thread of a process that
//! exits is killed with it, and what it had not deleted yet would be left on the machine (a
//! bridge, down, under its tombstone name). [`spawn`] starts such a thread and counts it; the
//! first call registers an `atexit(3)` handler that waits (up to [`EXIT_PATIENCE`]) for
//! every counted thread before the process ends — when `main` returns or
//! [`std::process::exit`] is called (not on `_exit`, a signal's default action or an abort:
//! those leave what was not done, as before). [`wait`] waits the same way, for callers that
//! want it earlier.
//!
//! A child forked (without exec) from the process inherits the count but none of the threads;
//! its `exit` does not wait for them, and its own [`spawn`]s are counted from zero.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use crate::sys;

/// How long the process waits at exit for its background work.
pub const EXIT_PATIENCE: Duration = Duration::from_secs(5);

/// The number of background threads still running.
static PENDING: Mutex<usize> = Mutex::new(0);
static DONE: Condvar = Condvar::new();
/// The process whose threads are counted (0 before the first [`spawn`]).
static OWNER: AtomicI32 = AtomicI32::new(0);
static AT_EXIT: Once = Once::new();

/// Runs `f` on a new thread named `name`, which the process waits for at exit (see the
/// module's documentation). Errors only when the thread cannot be started; `f` is then not run
/// (the caller does the work itself).
///
/// ```
/// let (tx, rx) = std::sync::mpsc::channel();
/// nook_ns::background::spawn("nk-demo", move || tx.send(42).unwrap())?;
/// assert!(nook_ns::background::wait(std::time::Duration::from_secs(5)));
/// assert_eq!(rx.recv()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    AT_EXIT.call_once(|| sys::at_exit(wait_at_exit));
    {
        let mut pending = lock();
        let me = std::process::id() as i32;
        if OWNER.swap(me, Ordering::Relaxed) != me {
            // First here, or a child forked from the process that counted: none of those
            // threads exist in this process, so none of them is waited for.
            *pending = 0;
        }
        *pending += 1;
    }
    let counted = Counted;
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _counted = counted;
        f();
    })?;
    Ok(())
}

/// Waits until every thread [`spawn`] started has finished, or `timeout` has passed: `true`
/// if none is left.
pub fn wait(timeout: Duration) -> bool {
    if OWNER.load(Ordering::Relaxed) != std::process::id() as i32 {
        return true; // none started here (a forked child has none of its parent's threads)
    }
    let deadline = Instant::now() + timeout;
    let mut pending = lock();
    while *pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        pending = DONE.wait_timeout(pending, left).unwrap_or_else(|e| e.into_inner()).0;
    }
    true
}

/// The `atexit(3)` handler.
extern "C" fn wait_at_exit() {
    // A panic must not unwind into libc.
    let _ = std::panic::catch_unwind(|| wait(EXIT_PATIENCE));
}

fn lock() -> std::sync::MutexGuard<'static, usize> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One counted thread: uncounted when dropped (when its work returns or panics, or, if the
/// thread never started, at once).
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        let mut pending = lock();
        *pending -= 1;
        if *pending == 0 {
            DONE.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_the_work_is_done() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        spawn("nk-test-bg", move || {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        assert!(!wait(Duration::from_millis(50)), "the thread waits for the channel");
        tx.send(()).unwrap();
        assert!(wait(Duration::from_secs(10)));
    }

    #[test]
    #[allow(unsafe_code)] // fork, _exit and waitpid of the test's own child
    fn a_forked_child_waits_for_its_own_work_only() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        spawn("nk-test-bg-parent", move || {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        })
        .unwrap();
        // SAFETY: the child only starts a thread, waits and leaves with `_exit`; glibc's
        // fork leaves malloc and thread creation usable in the child.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let started = Instant::now();
            let ok = spawn("nk-test-bg-child", || {}).is_ok()
                && wait(Duration::from_secs(3))
                && started.elapsed() < Duration::from_secs(2);
            // SAFETY: leaves the forked child without running the test harness's exit path.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        tx.send(()).unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        assert!(wait(Duration::from_secs(10)));
    }

    #[test]
    fn a_panicking_task_is_uncounted() {
        spawn("nk-test-bg-panic", || panic!("deliberate")).unwrap();
        assert!(wait(Duration::from_secs(10)));
    }
}
