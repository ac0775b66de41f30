//! [`Pool`]: warm sandboxes, made ahead of time from one spec and reused, for programs that
//! sandbox many short jobs.
//!
//! A one-shot sandbox pays for its namespaces, cgroup, mounts and network on every run. A
//! pool pays once per sandbox: each entry is a long-lived [`Sandbox`] made with
//! [`SandboxBuilder::create`] (its `nk-init` holds the namespaces as PID 1, its cgroup has
//! the limits, its root, `/proc` and `/dev` are mounted, its network is up), and a run is an
//! [`Exec`](crate::Exec) in it — the payload joins its namespaces through the init's pidfd
//! and starts in its cgroup, confined as the spec says. After the payload ended, the
//! sandbox is reset and goes back to the pool, or, when the reset cannot prove that nothing
//! of the run is left, it is removed and a new one is built in the background (the rules are
//! in the `reset` module, and below).
//!
//! ```no_run
//! use nook_sandbox::{Pool, SandboxSpec};
//!
//! let mut spec = SandboxSpec::default();
//! spec.hostname = Some("job".into());
//! let pool = Pool::builder(spec).min_idle(2).max_size(8).build()?;
//! let out = pool.run(["sh", "-c", "echo hello from $(hostname)"])?;
//! assert!(out.outcome.success());
//! println!("{} bytes peak", out.stats.memory_peak.unwrap_or(0));
//! # Ok::<(), nook_sandbox::Error>(())
//! ```
//!
//! ## What a reset leaves: nothing
//! After each run, in this order (any failure discards the sandbox):
//! - every process of its cgroup but its init is killed (frozen, SIGKILLed, thawed, until
//!   the init is alone) — a daemon the payload left behind does not survive;
//! - its scratch tmpfs mounts — `/dev/shm`, the spec's [`crate::Mount::Tmpfs`] mounts and the
//!   `/tmp` the pool adds — are emptied from outside, through `/proc/<init>/root`, and must
//!   then use the inodes and blocks they used when made; its POSIX message queues are
//!   unlinked; `/dev` must be unchanged; a writable root (an overlay with a tmpfs upper) must
//!   have no new inode in its upper layer — a run that wrote to the root (outside `/tmp`)
//!   costs a new sandbox rather than being cleaned, because an overlay's upper cannot be
//!   swapped from outside its mount namespace (use [`crate::SandboxBuilder::read_only_rootfs`]
//!   and tmpfs mounts for jobs that write);
//! - its mount table must be unchanged (so a pool refuses binds with slave or shared
//!   [`crate::BindPropagation`]: the host's mounts would change it); no SysV IPC object may be left in its IPC
//!   namespace; its host and domain names are set back; its network namespace must have no
//!   socket (listening, connected, or in `TIME_WAIT`) that it did not have when made; every
//!   cgroup limit must read as when made.
//!
//! Counters are per run ([`RunStats`]): the CPU time and OOM kills of the run (the cgroup's
//! counters before and after it), and its memory peak ([`nook_cgroup::PeakMeter`]: v1
//! `memory.max_usage_in_bytes` reset before the run, v2 `memory.peak` reset for the
//! meter's own descriptor, Linux 6.12+; `None` where neither is possible).
//!
//! Why not a cgroup per run (`cgroup.kill`, fresh counters): on cgroup v2 a sandbox cgroup
//! that holds its init cannot enable controllers for a child (the "no internal processes"
//! rule), so a per-run child would have no memory or pids limit of its own, and on a hybrid
//! host like this project's the controllers are on v1 anyway. Killing all but the init with
//! the freezer works on both, and the counters' deltas give per-run figures.
//!
//! Why not a fresh mount, IPC and UTS namespace per run: creating them is most of what a
//! one-shot sandbox costs (the root's overlay mount, `/proc`, `/dev`), which the pool exists
//! to avoid; verifying that the namespaces are as they were costs a few reads.
//!
//! ## Sizing
//! [`PoolBuilder::min_idle`] sandboxes are kept warm by a background thread (refilled
//! after each discard or use); [`PoolBuilder::max_size`] bounds all sandboxes, warm and in
//! use — a run waits for one when all are busy; a warm sandbox idle for longer than
//! [`PoolBuilder::idle_timeout`] is removed while more than `min_idle` are warm;
//! [`PoolBuilder::memory_limit`] bounds the memory charged to the idle sandboxes' cgroups
//! (measured when built and after each reset; one warm sandbox is always allowed): no
//! sandbox is built or kept warm beyond it. What a sandbox costs outside its cgroup — its
//! namespaces, allocated by the caller when it is cloned, and the pool's thread in its IPC
//! and UTS namespaces (64 KiB stack) — is not counted (about as much again: BENCHMARKS.md
//! §10). [`Pool`] is
//! `Send + Sync`: share it (`Arc<Pool>`) between threads; with the `tokio` feature,
//! `Pool::run_async` runs on tokio's blocking pool. Dropping the pool removes every warm
//! sandbox and stops the thread; a run still going when it is dropped removes its sandbox
//! when it ends.

mod reset;
mod run;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, ValidationError};
use crate::run::{Sandbox, SandboxBuilder};
use crate::spec::{BindPropagation, Mount, Rootfs, SandboxSpec};
use reset::{Baseline, Verdict};

pub use run::{PoolChild, PoolCommand, PoolOutput, RunStats};

/// Builds a [`Pool`] ([`Pool::builder`]).
#[derive(Debug)]
pub struct PoolBuilder {
    spec: SandboxSpec,
    networks: Vec<nook_netmodel::Network>,
    state_dir: Option<std::path::PathBuf>,
    min_idle: usize,
    max_size: usize,
    idle_timeout: Option<Duration>,
    memory_limit: Option<u64>,
}

impl PoolBuilder {
    /// Warm sandboxes kept ready (default 1).
    pub fn min_idle(&mut self, n: usize) -> &mut Self {
        self.min_idle = n;
        self
    }

    /// At most this many sandboxes, warm and in use (default 8).
    pub fn max_size(&mut self, n: usize) -> &mut Self {
        self.max_size = n;
        self
    }

    /// Removes a warm sandbox idle for this long, while more than `min_idle` are warm
    /// (default 60 s; `None`: never).
    pub fn idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.idle_timeout = timeout;
        self
    }

    /// At most this many bytes charged to the cgroups of the warm (idle) sandboxes
    /// (default: no bound besides `max_size`).
    pub fn memory_limit(&mut self, bytes: u64) -> &mut Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The handle of a network the spec names ([`crate::NetworkMode::Networks`]).
    pub fn use_network(&mut self, network: &nook_netmodel::Network) -> &mut Self {
        self.networks.push(network.clone());
        self
    }

    /// The state dir of the sandboxes' owner records ([`SandboxBuilder::state_dir`]).
    pub fn state_dir(&mut self, dir: impl Into<std::path::PathBuf>) -> &mut Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Checks the sizes and the spec, builds the first sandbox (so a spec the kernel
    /// refuses fails here), and starts the background thread that keeps `min_idle` warm.
    pub fn build(&self) -> Result<Pool> {
        if self.max_size == 0 || self.min_idle > self.max_size {
            return Err(ValidationError::Pool { reason: "max_size must be at least 1 and at least min_idle" }.into());
        }
        let spec = pool_spec(self.spec.clone())?;
        let inner = Arc::new(Inner {
            spec,
            networks: self.networks.clone(),
            state_dir: self.state_dir.clone(),
            min_idle: self.min_idle,
            max_size: self.max_size,
            idle_timeout: self.idle_timeout,
            memory_limit: self.memory_limit,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let first = inner.build_one()?;
        {
            let mut st = inner.lock();
            st.created += 1;
            st.idle.push(first);
        }
        let bg = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("nk-pool".into())
            .spawn(move || bg.maintain())
            .map_err(|source| Error::Sys { call: "spawn (the pool's thread)", path: None, source })?;
        Ok(Pool { inner, thread: Some(thread) })
    }
}

/// The spec as the pool runs it: a `/tmp` tmpfs added (emptied after each run) where the
/// root has one to mount on, and roots it cannot verify refused.
fn pool_spec(mut spec: SandboxSpec) -> Result<SandboxSpec> {
    let verifiable = match &spec.rootfs {
        Rootfs::HostReadOnly => true,
        Rootfs::Stack(s) => !matches!(s.upper_layer(), nook_unionfs::Upper::Dir { .. }),
        Rootfs::Dir { read_only, .. } => *read_only,
        Rootfs::Image { .. } => false,
    } || spec.security.read_only_rootfs;
    if !verifiable {
        return Err(ValidationError::Pool {
            reason: "the root must be the host's, a layer stack with a tmpfs or no upper, or read-only: a writable directory or container layer on disk cannot be checked between runs",
        }
        .into());
    }
    let tied = |m: &Mount| matches!(m, Mount::Bind { propagation, .. } if *propagation != BindPropagation::Private);
    if spec.mounts.iter().any(tied) {
        return Err(ValidationError::Pool {
            reason: "a bind with slave or shared propagation: the host's later mounts would change a warm sandbox's mount table (no reset could match it again), and a run's mounts could reach the host",
        }
        .into());
    }
    let tmp = std::path::Path::new("/tmp");
    let has_tmp = spec.mounts.iter().any(|m| m.target() == tmp);
    let tmp_exists = match &spec.rootfs {
        Rootfs::HostReadOnly => true,
        Rootfs::Dir { path, .. } => path.join("tmp").is_dir(),
        _ => false,
    };
    if !has_tmp && tmp_exists {
        spec.mounts.push(Mount::tmpfs("/tmp"));
    }
    // The memory controller even without a limit: what a sandbox holds is counted (the
    // memory bound, the per-run peak).
    spec.cgroup.get_or_insert_with(|| nook_cgroup::CgroupSpec::new("")).resources.memory.get_or_insert_default();
    Ok(spec)
}

/// A pool of warm sandboxes made from one spec (see the module docs).
#[derive(Debug)]
pub struct Pool {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

/// Counts of what a pool did, for monitoring (and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Sandboxes built.
    pub created: u64,
    /// Runs after which the sandbox was reset and reused.
    pub reused: u64,
    /// Runs after which the sandbox was removed (the reset could not prove it clean).
    pub discarded: u64,
    /// Why the last one was.
    pub last_discard: Option<String>,
    /// Warm sandboxes now.
    pub idle: usize,
    /// Sandboxes running a payload now.
    pub in_use: usize,
    /// Memory charged to the warm sandboxes' cgroups (bytes): as measured when each was
    /// built, and after each reset when [`PoolBuilder::memory_limit`] is set.
    pub idle_memory: u64,
}

#[derive(Debug)]
struct Inner {
    spec: SandboxSpec,
    networks: Vec<nook_netmodel::Network>,
    state_dir: Option<std::path::PathBuf>,
    min_idle: usize,
    max_size: usize,
    idle_timeout: Option<Duration>,
    memory_limit: Option<u64>,
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Warm>,
    in_use: usize,
    building: usize,
    /// Sandboxes to remove (by the background thread, off the runs' path).
    trash: Vec<Sandbox>,
    closed: bool,
    created: u64,
    reused: u64,
    discarded: u64,
    last_discard: Option<String>,
}

impl State {
    fn total(&self) -> usize {
        self.idle.len() + self.in_use + self.building
    }

    fn idle_memory(&self) -> u64 {
        self.idle.iter().map(|w| w.memory).sum()
    }
}

/// A warm sandbox and what it looked like when made.
#[derive(Debug)]
struct Warm {
    sb: Sandbox,
    base: Baseline,
    since: Instant,
    /// Memory charged to its cgroup after its last reset.
    memory: u64,
    /// Its cgroup's v1 `tasks` files, open for every run's start.
    tasks: Vec<std::os::fd::OwnedFd>,
}

fn memory_of(sb: &Sandbox) -> u64 {
    sb.cgroup().and_then(|c| c.stats().ok()).and_then(|s| s.memory).map_or(0, |m| m.current)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn build_one(&self) -> Result<Warm> {
        let mut b = SandboxBuilder::from_spec(self.spec.clone());
        for n in &self.networks {
            b.use_network(n);
        }
        if let Some(d) = &self.state_dir {
            b.state_dir(d);
        }
        let sb = b.create()?;
        let base = match Baseline::capture(&sb) {
            Ok(b) => b,
            Err(e) => {
                let cleanup = sb.remove().err().into_iter().collect();
                return Err(Error::with_cleanup(e, cleanup));
            }
        };
        let memory = memory_of(&sb);
        let tasks = match sb.cgroup().map(|c| c.v1_tasks_files()).transpose() {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                let cleanup = sb.remove().err().into_iter().collect();
                return Err(Error::with_cleanup(e.into(), cleanup));
            }
        };
        Ok(Warm { sb, base, since: Instant::now(), memory, tasks })
    }

    /// A warm sandbox: an idle one, else a new one (built here) while below `max_size`,
    /// else the next one returned.
    fn take(self: &Arc<Self>) -> Result<Lease> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return Err(Error::Invalid(ValidationError::Pool { reason: "the pool was dropped" }));
            }
            if let Some(w) = st.idle.pop() {
                st.in_use += 1;
                // The background thread refills.
                self.cond.notify_all();
                return Ok(Lease { inner: Arc::clone(self), warm: Some(w) });
            }
            if st.total() < self.max_size {
                st.building += 1;
                drop(st);
                let built = self.build_one();
                let mut st = self.lock();
                st.building -= 1;
                return match built {
                    Ok(w) => {
                        st.created += 1;
                        st.in_use += 1;
                        Ok(Lease { inner: Arc::clone(self), warm: Some(w) })
                    }
                    Err(e) => {
                        self.cond.notify_all();
                        Err(e)
                    }
                };
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Resets a sandbox after its run and returns it to the pool, or hands it to the
    /// background thread to remove.
    fn give_back(&self, mut w: Warm) {
        let verdict = reset::reset(&w.sb, &w.base).unwrap_or_else(|e| Verdict::Discard(e.to_string()));
        if verdict == Verdict::Clean {
            // Read only when bounded (reading `memory.stat` costs ~0.1 ms).
            if self.memory_limit.is_some() {
                w.memory = memory_of(&w.sb);
            }
            w.since = Instant::now();
        }
        let mut st = self.lock();
        st.in_use -= 1;
        match verdict {
            Verdict::Clean
                if !st.closed
                    && self.memory_limit.is_none_or(|l| st.idle_memory() + w.memory <= l || st.idle.is_empty()) =>
            {
                st.reused += 1;
                st.idle.push(w);
            }
            Verdict::Clean => {
                st.reused += 1;
                st.trash.push(w.sb);
            }
            Verdict::Discard(why) => {
                st.discarded += 1;
                st.last_discard = Some(why);
                st.trash.push(w.sb);
            }
        }
        self.cond.notify_all();
    }

    /// The background thread: removes discarded sandboxes, keeps `min_idle` warm within
    /// `max_size` and the memory limit, removes sandboxes idle too long; ends when the pool
    /// is closed.
    fn maintain(&self) {
        let tick = self
            .idle_timeout
            .map_or(Duration::from_secs(1), |t| (t / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            let trash = std::mem::take(&mut st.trash);
            if !trash.is_empty() {
                drop(st);
                for sb in trash {
                    let _ = sb.remove();
                }
                st = self.lock();
                continue;
            }
            if let Some(t) = self.idle_timeout
                && st.idle.len() > self.min_idle
            {
                // The oldest first (the idle list is used from its end).
                if let Some(i) = st.idle.iter().position(|w| w.since.elapsed() >= t) {
                    let w = st.idle.remove(i);
                    st.trash.push(w.sb);
                    continue;
                }
            }
            let memory_ok = self.memory_limit.is_none_or(|l| {
                let per = st.idle.first().map_or(0, |w| w.memory);
                st.idle_memory() + per <= l || st.idle.is_empty()
            });
            if st.idle.len() + st.building < self.min_idle && st.total() < self.max_size && memory_ok {
                st.building += 1;
                drop(st);
                let built = self.build_one();
                st = self.lock();
                st.building -= 1;
                match built {
                    Ok(w) if !st.closed => {
                        st.created += 1;
                        st.idle.push(w);
                        self.cond.notify_all();
                    }
                    Ok(w) => st.trash.push(w.sb),
                    Err(_) => {
                        // The next run reports the error when it builds its own; retry
                        // after a pause.
                        st = self.cond.wait_timeout(st, tick).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
                continue;
            }
            st = self.cond.wait_timeout(st, tick).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// A sandbox taken from the pool: given back (reset) when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    inner: Arc<Inner>,
    warm: Option<Warm>,
}

impl Lease {
    pub(crate) fn sandbox(&self) -> &Sandbox {
        &self.warm.as_ref().expect("a lease holds its sandbox until dropped").sb
    }

    /// Its cgroup's v1 `tasks` files (none on pure v2).
    pub(crate) fn v1_tasks(&self) -> &[std::os::fd::OwnedFd] {
        &self.warm.as_ref().expect("a lease holds its sandbox until dropped").tasks
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(w) = self.warm.take() {
            self.inner.give_back(w);
        }
    }
}

impl Pool {
    /// A builder for a pool of sandboxes made from `spec` (its `args` are not used: each run
    /// names its command).
    pub fn builder(spec: SandboxSpec) -> PoolBuilder {
        PoolBuilder {
            spec,
            networks: Vec::new(),
            state_dir: None,
            min_idle: 1,
            max_size: 8,
            idle_timeout: Some(Duration::from_secs(60)),
            memory_limit: None,
        }
    }

    /// A command to run in a warm sandbox (`args[0]` is the program, searched in `PATH`
    /// inside), shaped like [`crate::Exec`].
    pub fn command<I, S>(&self, args: I) -> PoolCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PoolCommand::new(Arc::clone(&self.inner), args.into_iter().map(Into::into).collect())
    }

    /// Runs `args` in a warm sandbox to the end, stdout and stderr collected (stdin
    /// `/dev/null`); the sandbox is reset and returned (or replaced) before this returns.
    pub fn run<I, S>(&self, args: I) -> Result<PoolOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command(args).output()
    }

    /// Starts `args` in a warm sandbox (stdio inherited); the sandbox goes back to the
    /// pool when the returned child has been waited for or dropped.
    pub fn spawn<I, S>(&self, args: I) -> Result<PoolChild>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command(args).spawn()
    }

    /// [`Pool::run`] on tokio's blocking thread pool (the run blocks a thread while it
    /// starts the payload and resets the sandbox; the async runtime's workers stay free).
    #[cfg(feature = "tokio")]
    pub async fn run_async<I, S>(&self, args: I) -> Result<PoolOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd = self.command(args);
        tokio::task::spawn_blocking(move || {
            let mut cmd = cmd;
            cmd.output()
        })
        .await
        .unwrap_or_else(|e| Err(Error::Sys { call: "spawn_blocking", path: None, source: std::io::Error::other(e) }))
    }

    /// What the pool did so far, and holds now.
    pub fn stats(&self) -> PoolStats {
        let st = self.inner.lock();
        PoolStats {
            created: st.created,
            reused: st.reused,
            discarded: st.discarded,
            last_discard: st.last_discard.clone(),
            idle: st.idle.len(),
            in_use: st.in_use,
            idle_memory: st.idle_memory(),
        }
    }

    /// The spec the sandboxes are made from (with the pool's `/tmp`).
    pub fn spec(&self) -> &SandboxSpec {
        &self.inner.spec
    }

    /// Waits until at least `n` sandboxes are warm (at most `min(n, max_size)`), or
    /// `timeout` passed: whether they are.
    pub fn wait_warm(&self, n: usize, timeout: Duration) -> bool {
        let n = n.min(self.inner.max_size);
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        while st.idle.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.inner.cond.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Removes every warm sandbox and stops the background thread, reporting every
    /// failure (dropping the pool does the same, best effort).
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let (idle, trash) = {
            let mut st = self.inner.lock();
            st.closed = true;
            self.inner.cond.notify_all();
            (std::mem::take(&mut st.idle), std::mem::take(&mut st.trash))
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Whatever the thread had not removed yet.
        let trash = trash.into_iter().chain(std::mem::take(&mut self.inner.lock().trash));
        let errors: Vec<Error> =
            idle.into_iter().map(|w| w.sb).chain(trash).filter_map(|sb| sb.remove().err()).collect();
        if errors.is_empty() { Ok(()) } else { Err(Error::Teardown { what: "the pool".to_owned(), errors }) }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pool>();
        check::<PoolChild>();
    }

    #[test]
    fn pool_spec_adds_tmp_and_refuses_unverifiable_roots() {
        let spec = pool_spec(SandboxSpec::default()).unwrap();
        assert!(spec.mounts.iter().any(|m| m.target() == std::path::Path::new("/tmp")));
        let dir = SandboxSpec {
            rootfs: Rootfs::Dir { path: "/nonexistent".into(), read_only: false },
            ..SandboxSpec::default()
        };
        assert!(matches!(pool_spec(dir), Err(Error::Invalid(ValidationError::Pool { .. }))));
        for p in [BindPropagation::Slave, BindPropagation::Shared] {
            let tied =
                SandboxSpec { mounts: vec![Mount::bind("/srv", "/srv").with_propagation(p)], ..SandboxSpec::default() };
            assert!(matches!(pool_spec(tied), Err(Error::Invalid(ValidationError::Pool { .. }))), "{p:?}");
        }
        let private = SandboxSpec { mounts: vec![Mount::bind("/srv", "/srv")], ..SandboxSpec::default() };
        assert!(pool_spec(private).is_ok());
    }
}
