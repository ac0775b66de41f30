//! The `tokio` feature: waits that are futures on tokio's reactor. A pidfd becomes readable
//! when its process exits, so a wait is an [`AsyncFd`] on a duplicate of it — no blocking
//! thread per sandbox — and a deadline is a `timerfd` on the same reactor (it does not need
//! tokio's time driver). The reaping (`waitid`) and the teardown then run inline: the
//! process has ended, so neither blocks for long.
//!
//! Cancel-safe: dropping a wait's future loses nothing; the process is still waited for by
//! the next wait (or killed and reaped on drop, as always).

use std::future::poll_fn;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::child::SandboxChild;
use crate::error::{Error, Result};
use crate::run::{Outcome, Sandbox};

fn sys(call: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Sys { call, path: None, source }
}

/// A non-blocking timerfd that becomes readable at `deadline`.
fn timer(deadline: Instant) -> Result<OwnedFd> {
    let fd = rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK)
        .map_err(|e| sys("timerfd_create")(e.into()))?;
    // A zero it_value disarms the timer: a deadline already passed is one nanosecond away.
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_nanos(1));
    let value = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
    let spec = Itimerspec { it_interval: Timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
    rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)
        .map_err(|e| sys("timerfd_settime")(e.into()))?;
    Ok(fd)
}

/// An [`AsyncFd`] registered for readability. `AsyncFd::with_interest` is deprecated since
/// tokio 1.54 because a generic `T` may not keep its descriptor open, for which the
/// replacement is `unsafe`; an [`OwnedFd`] always does, so the safe form is sound here (and
/// keeps this crate `forbid(unsafe_code)` and usable with older tokio 1.x).
#[allow(deprecated)]
fn readable(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(fd, Interest::READABLE).map_err(sys("epoll_ctl"))
}

/// Waits, on the current tokio runtime's reactor, until `pidfd` is readable (the process
/// exited: `true`) or `deadline` passes (`false`).
async fn exited(pidfd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool> {
    let pidfd = pidfd.try_clone_to_owned().map_err(sys("fcntl(F_DUPFD_CLOEXEC)"))?;
    let pidfd = readable(pidfd)?;
    let timer = match deadline {
        Some(d) => Some(readable(timer(d)?)?),
        None => None,
    };
    poll_fn(|cx| {
        if let Poll::Ready(ready) = pidfd.poll_read_ready(cx) {
            return Poll::Ready(ready.map(|_| true).map_err(sys("epoll_wait")));
        }
        if let Some(timer) = &timer
            && let Poll::Ready(ready) = timer.poll_read_ready(cx)
        {
            return Poll::Ready(ready.map(|_| false).map_err(sys("epoll_wait")));
        }
        Poll::Pending
    })
    .await
}

/// With the `tokio` feature. Must be awaited inside a tokio runtime with I/O enabled
/// (`enable_io`, or `enable_all`); a `current_thread` runtime is enough.
impl Sandbox {
    /// [`Sandbox::wait`] as a future: the run's end (or the spec's timeout) without a
    /// blocking thread, then the teardown.
    pub async fn wait_async(&mut self) -> Result<Outcome> {
        let deadline = self.deadline();
        self.wait_until_async(deadline).await
    }

    /// [`Sandbox::wait_timeout`] as a future: kills the sandbox if it runs longer than
    /// `timeout` from now ([`Outcome::TimedOut`]).
    pub async fn wait_timeout_async(&mut self, timeout: Duration) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        let deadline = self.deadline().map_or(deadline, |d| d.min(deadline));
        self.wait_until_async(Some(deadline)).await
    }

    async fn wait_until_async(&mut self, deadline: Option<Instant>) -> Result<Outcome> {
        if exited(self.pidfd(), deadline).await? {
            self.wait_until(None)
        } else {
            // Past the deadline: kills it unless it ended just now.
            self.wait_until(Some(Instant::now()))
        }
    }
}

/// With the `tokio` feature (inside a tokio runtime with I/O enabled).
impl SandboxChild<'_> {
    /// [`SandboxChild::wait`] as a future, without a blocking thread.
    pub async fn wait_async(&mut self) -> Result<Outcome> {
        self.wait_until_async(None).await
    }

    /// [`SandboxChild::wait_timeout`] as a future: kills it if it runs longer than
    /// `timeout` from now ([`Outcome::TimedOut`]).
    pub async fn wait_timeout_async(&mut self, timeout: Duration) -> Result<Outcome> {
        self.wait_until_async(Some(Instant::now() + timeout)).await
    }

    async fn wait_until_async(&mut self, deadline: Option<Instant>) -> Result<Outcome> {
        drop(self.stdin.take());
        if exited(self.pidfd(), deadline).await? {
            self.wait_until(None)
        } else {
            self.wait_until(Some(Instant::now()))
        }
    }
}
