//! A run in a pool: [`PoolCommand`] (what to run, shaped like [`crate::Exec`]),
//! [`PoolChild`] (the running payload, which holds its sandbox until it is waited for or
//! dropped) and what a run reports ([`PoolOutput`], [`RunStats`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nook_ns::Stdio;

use super::{Inner, Lease};
use crate::child::{SandboxChild, join, reader};
use crate::error::Result;
use crate::run::Outcome;

/// What one run used: the sandbox cgroup's counters over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStats {
    /// CPU time of the run (µs), `None` without a CPU counter.
    pub cpu_usec: Option<u64>,
    /// The memory peak during the run (bytes), `None` where the kernel cannot reset the
    /// peak (see [`nook_cgroup::PeakMeter`]).
    pub memory_peak: Option<u64>,
    /// Processes the OOM killer killed during the run.
    pub oom_kills: u64,
    /// How long the run took, from taking a warm sandbox to the payload's end.
    pub wall: Duration,
}

/// What [`PoolCommand::output`] (and [`crate::Pool::run`]) collected.
#[derive(Debug)]
pub struct PoolOutput {
    /// Why the payload ended.
    pub outcome: Outcome,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// The run's counters.
    pub stats: RunStats,
}

/// A command for a warm sandbox ([`crate::Pool::command`]): the environment, working
/// directory and user default to the spec's, stdio is inherited.
#[derive(Debug)]
pub struct PoolCommand {
    inner: Arc<Inner>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<std::path::PathBuf>,
    user: Option<(u32, u32)>,
    stdio: [Option<Stdio>; 3],
}

impl PoolCommand {
    pub(super) fn new(inner: Arc<Inner>, args: Vec<String>) -> PoolCommand {
        PoolCommand { inner, args, env: Vec::new(), cwd: None, user: None, stdio: [None, None, None] }
    }

    /// Sets an environment variable (on top of the spec's).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The working directory.
    pub fn current_dir(&mut self, dir: impl Into<std::path::PathBuf>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The uid and gid.
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.user = Some((uid, gid));
        self
    }

    /// Its stdin.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = Some(cfg.into());
        self
    }

    /// Its stdout.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = Some(cfg.into());
        self
    }

    /// Its stderr.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = Some(cfg.into());
        self
    }

    /// Takes a warm sandbox (waiting while `max_size` are in use) and starts the payload
    /// in it. The stdio set here is used by this spawn only.
    pub fn spawn(&mut self) -> Result<PoolChild> {
        let start = Instant::now();
        let lease = self.inner.take()?;
        let sb = lease.sandbox();
        let cg = sb.cgroup();
        let cpu_before = cg.and_then(|c| c.cpu_usage().ok().flatten()).map(|u| u.usage_usec);
        let oom_before = cg.and_then(|c| c.oom_stats().ok().flatten()).map_or(0, |o| o.oom_kill);
        let meter = cg.and_then(|c| c.memory_peak_meter().ok().flatten());
        let mut exec = sb.exec(self.args.iter().cloned());
        // Reset (or fresh): only its init runs in it, nothing can look at the starting child.
        exec.unobserved().v1_tasks(lease.v1_tasks());
        for (k, v) in &self.env {
            exec.env(k, v);
        }
        if let Some(d) = &self.cwd {
            exec.current_dir(d);
        }
        if let Some((u, g)) = self.user {
            exec.user(u, g);
        }
        let [i, o, e] = std::mem::take(&mut self.stdio);
        if let Some(i) = i {
            exec.stdin(i);
        }
        if let Some(o) = o {
            exec.stdout(o);
        }
        if let Some(e) = e {
            exec.stderr(e);
        }
        // A failed start gives the sandbox back (reset) as the lease drops.
        let child = exec.spawn_child()?;
        let child = SandboxChild::new(child);
        Ok(PoolChild {
            stdin: None,
            stdout: None,
            stderr: None,
            child: Some(child),
            lease: Some(lease),
            start,
            cpu_before,
            oom_before,
            meter,
            stats: None,
        }
        .with_pipes())
    }

    /// Runs it to the end (stdio inherited unless set).
    pub fn status(&mut self) -> Result<(Outcome, RunStats)> {
        let mut child = self.spawn()?;
        let outcome = child.wait()?;
        Ok((outcome, child.stats().unwrap_or_default()))
    }

    /// Runs it to the end with stdout and stderr collected (stdin `/dev/null` unless set).
    pub fn output(&mut self) -> Result<PoolOutput> {
        if self.stdio[0].is_none() {
            self.stdio[0] = Some(Stdio::null());
        }
        for i in 1..3 {
            if self.stdio[i].is_none() {
                self.stdio[i] = Some(Stdio::piped());
            }
        }
        self.spawn()?.wait_with_output()
    }
}

/// A payload running in a warm sandbox ([`PoolCommand::spawn`], [`crate::Pool::spawn`]),
/// shaped like [`SandboxChild`]. The sandbox goes back to the pool (reset) once the payload
/// was waited for — before `wait` returns — or when this is dropped (the payload is killed
/// then).
#[derive(Debug)]
pub struct PoolChild {
    /// The caller's end of its stdin, when piped.
    pub stdin: Option<std::fs::File>,
    /// The caller's end of its stdout, when piped.
    pub stdout: Option<std::fs::File>,
    /// The caller's end of its stderr, when piped.
    pub stderr: Option<std::fs::File>,
    // Dropped before the lease (see `Drop`): the payload is killed and reaped before its
    // sandbox is reset.
    child: Option<SandboxChild<'static>>,
    lease: Option<Lease>,
    start: Instant,
    cpu_before: Option<u64>,
    oom_before: u64,
    meter: Option<nook_cgroup::PeakMeter>,
    stats: Option<RunStats>,
}

impl PoolChild {
    fn with_pipes(mut self) -> Self {
        if let Some(c) = self.child.as_mut() {
            self.stdin = c.stdin.take();
            self.stdout = c.stdout.take();
            self.stderr = c.stderr.take();
        }
        self
    }

    /// Its pid (of the `nk-init` that runs it in the sandbox's pid namespace), as the
    /// caller sees it.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(SandboxChild::id)
    }

    /// Sends SIGKILL (nothing when it already ended).
    pub fn kill(&self) -> Result<()> {
        self.child.as_ref().map_or(Ok(()), SandboxChild::kill)
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.child.as_ref().map_or(Ok(()), |c| c.signal(signal))
    }

    /// The run's counters, once it was waited for.
    pub fn stats(&self) -> Option<RunStats> {
        self.stats
    }

    /// Waits for the payload, then resets the sandbox and gives it back.
    pub fn wait(&mut self) -> Result<Outcome> {
        self.wait_until(None)
    }

    /// [`PoolChild::wait`], killing the payload if it runs longer than `timeout`
    /// ([`Outcome::TimedOut`]).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Outcome> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Outcome> {
        drop(self.stdin.take());
        let Some(child) = self.child.as_mut() else {
            return Err(crate::ValidationError::Pool { reason: "the run was already waited for" }.into());
        };
        let outcome = child.wait_until(deadline)?;
        self.finish();
        Ok(outcome)
    }

    /// The counters, then the sandbox back to the pool.
    fn finish(&mut self) {
        let cg = self.lease.as_ref().and_then(|l| l.sandbox().cgroup());
        let cpu_after = cg.and_then(|c| c.cpu_usage().ok().flatten()).map(|u| u.usage_usec);
        let oom_after = cg.and_then(|c| c.oom_stats().ok().flatten()).map_or(0, |o| o.oom_kill);
        self.stats = Some(RunStats {
            cpu_usec: cpu_after.zip(self.cpu_before).map(|(a, b)| a.saturating_sub(b)),
            memory_peak: self.meter.as_mut().and_then(|m| m.read().ok()),
            oom_kills: oom_after.saturating_sub(self.oom_before),
            wall: self.start.elapsed(),
        });
        self.meter = None;
        self.child = None;
        self.lease = None;
    }

    /// Waits while collecting its piped stdout and stderr (stdin closed first).
    pub fn wait_with_output(mut self) -> Result<PoolOutput> {
        drop(self.stdin.take());
        let out = reader(self.stdout.take());
        let err = reader(self.stderr.take());
        let outcome = self.wait();
        let stdout = join(out)?;
        let stderr = join(err)?;
        Ok(PoolOutput { outcome: outcome?, stdout, stderr, stats: self.stats.unwrap_or_default() })
    }
}

impl Drop for PoolChild {
    fn drop(&mut self) {
        // Killed and reaped first (a `SandboxChild` does so when dropped), then reset.
        self.child = None;
        self.lease = None;
    }
}
