//! [`SandboxChild`]: a process started in a running sandbox by [`Exec`](crate::Exec) —
//! `std::process::Child`'s methods, with an [`Outcome`] as the result.

use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::run::{Outcome, Sandbox, SandboxOutput, wait_or_kill};

/// A process started by [`Exec::spawn`](crate::Exec::spawn), shaped like
/// `std::process::Child`: [`id`](SandboxChild::id), the [`stdin`](SandboxChild::stdin),
/// [`stdout`](SandboxChild::stdout) and [`stderr`](SandboxChild::stderr) pipes,
/// [`wait`](SandboxChild::wait), [`try_wait`](SandboxChild::try_wait),
/// [`wait_timeout`](SandboxChild::wait_timeout), [`kill`](SandboxChild::kill),
/// [`signal`](SandboxChild::signal) and [`wait_with_output`](SandboxChild::wait_with_output)
/// — every wait and signal through its pidfd, so a reused pid is never signalled. With the
/// `tokio` feature, also `wait_async` and `wait_timeout_async`. Dropped unfinished, it is
/// killed and reaped.
///
/// The result is the sandbox's [`Outcome`]: [`Outcome::Exited`] with its exit code,
/// [`Outcome::Signaled`] with the signal that killed it (it is not a child of the sandbox's
/// init, so no `128 + n` translation), or [`Outcome::TimedOut`] when
/// [`wait_timeout`](SandboxChild::wait_timeout) killed it. It is never
/// [`Outcome::OomKilled`]: the OOM counter belongs to the sandbox's cgroup, which all its
/// processes share, so it cannot say *which* process the kernel killed — a SIGKILLed exec
/// in a sandbox whose [`Sandbox::stats`] show a new `oom_kill` is the best one can tell.
///
/// Why it borrows the sandbox: a process that joined the sandbox's pid namespace is the
/// caller's child. When the sandbox ends, the kernel kills it, but PID 1 of the namespace
/// finishes only once every process of it is reaped — by its parent, the caller. So
/// [`Sandbox::remove`] (which takes the sandbox by value) cannot be called while such a
/// child is still unreaped.
#[derive(Debug)]
pub struct SandboxChild<'a> {
    child: nook_ns::Child,
    outcome: Option<Outcome>,
    /// The caller's end of its stdin, when it was piped (closed by the waits, like std).
    pub stdin: Option<File>,
    /// The caller's end of its stdout, when it was piped.
    pub stdout: Option<File>,
    /// The caller's end of its stderr, when it was piped.
    pub stderr: Option<File>,
    _sandbox: PhantomData<&'a Sandbox>,
}

fn waitid_error(source: std::io::Error) -> Error {
    Error::Sys { call: "waitid", path: None, source }
}

/// The outcome of a process that is not the sandbox's init.
fn outcome_of(status: ExitStatus) -> Outcome {
    match status.signal() {
        Some(sig) => Outcome::Signaled(sig),
        None => Outcome::Exited(status.code().unwrap_or(-1)),
    }
}

impl SandboxChild<'_> {
    /// The seccomp user-notification listener, when the sandbox's profile has
    /// [`crate::hardening::Action::UserNotif`] rules (once; `None` afterwards). Answer
    /// its notifications promptly: the process waits in the syscall until then.
    pub fn take_seccomp_notifier(&mut self) -> Option<nook_ns::seccomp::Notifier> {
        self.child.take_seccomp_notifier()
    }

    pub(crate) fn new(mut child: nook_ns::Child) -> Self {
        child.kill_on_drop(true);
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        SandboxChild { child, outcome: None, stdin, stdout, stderr, _sandbox: PhantomData }
    }

    /// Its pid, as the caller's pid namespace sees it.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its pidfd (readable once it exited).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.child.pidfd()
    }

    /// Sends `signal` through the pidfd (`ESRCH` once it was reaped).
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.child.signal(signal).map_err(|source| Error::Sys { call: "pidfd_send_signal", path: None, source })
    }

    /// Sends SIGKILL. Like `std::process::Child::kill`, a process that already ended (and
    /// was waited for) is not an error.
    pub fn kill(&self) -> Result<()> {
        if self.outcome.is_some() {
            return Ok(());
        }
        self.signal(libc::SIGKILL)
    }

    /// Waits for it to end (closing its stdin first, like std).
    pub fn wait(&mut self) -> Result<Outcome> {
        self.wait_until(None)
    }

    /// [`SandboxChild::wait`], killing it if it runs longer than `timeout` from now: then
    /// the result is [`Outcome::TimedOut`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Outcome> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether it has ended, without blocking (`None`: still running).
    pub fn try_wait(&mut self) -> Result<Option<Outcome>> {
        if let Some(o) = self.outcome {
            return Ok(Some(o));
        }
        let status = self.child.try_wait().map_err(waitid_error)?;
        self.outcome = status.map(outcome_of);
        Ok(self.outcome)
    }

    pub(crate) fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Outcome> {
        drop(self.stdin.take());
        if let Some(o) = self.outcome {
            return Ok(o);
        }
        let (status, timed_out) = wait_or_kill(&mut self.child, deadline)?;
        let outcome = if timed_out { Outcome::TimedOut } else { outcome_of(status) };
        self.outcome = Some(outcome);
        Ok(outcome)
    }

    /// Waits for it while collecting its piped stdout and stderr (stdin is closed first).
    pub fn wait_with_output(mut self) -> Result<SandboxOutput> {
        drop(self.stdin.take());
        let out = reader(self.stdout.take());
        let err = reader(self.stderr.take());
        let outcome = self.wait();
        let stdout = join(out)?;
        let stderr = join(err)?;
        Ok(SandboxOutput { outcome: outcome?, stdout, stderr })
    }
}

type Reader = Option<JoinHandle<std::io::Result<Vec<u8>>>>;

/// Reads a pipe to its end on a thread.
pub(crate) fn reader(f: Option<File>) -> Reader {
    f.map(|mut f| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map(|_| buf)
        })
    })
}

/// What a [`reader`] read.
pub(crate) fn join(h: Reader) -> Result<Vec<u8>> {
    match h {
        None => Ok(Vec::new()),
        Some(h) => h
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")))
            .map_err(|source| Error::Sys { call: "read", path: None, source }),
    }
}
