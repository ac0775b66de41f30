//! Detached sandboxes: the shape an OCI runtime needs (`runc create` returns while the
//! container lives on; a later `runc start`, `kill` or `delete` is another process).
//!
//! [`SandboxBuilder::spawn_detached`] differs from [`SandboxBuilder::spawn`] in four ways:
//! - the program is PID 1 of its pid namespace (no `nk-init` in front), so its pid is the
//!   container's;
//! - no parent-death signal: it outlives the process that created it;
//! - no owner record (a [`crate::cleanup`] after the creator's exit must not remove what
//!   lives on): the caller keeps a [`DetachedRecord`] instead, and dropping the returned
//!   [`Sandbox`] leaves the process and its cgroup alone (waiting for it still tears it
//!   down, as for any sandbox);
//! - optionally a start gate (`nook_ns::Command::start_gate`, runc's exec fifo): the
//!   child does its whole setup, then blocks opening a fifo for writing until someone opens
//!   it for reading — the spawn returns before that.
//!
//! A later process reopens it with [`Detached::open`] from the record: signal its process
//! or every process of its cgroup, start another process in it ([`Detached::exec`]), and
//! remove it ([`Detached::remove`]: SIGKILL, wait until the process is gone — its mounts go
//! with its mount namespace — then the cgroup). The process is found again by pid *and*
//! start time, so a reused pid is taken for a stopped container, never signalled.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, CgroupSpec};
use nook_ns::{Namespace, NamespaceSet, Stdio};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, ValidationError};
use crate::hardening::apply::{Confinement, device_policy};
use crate::run::{Sandbox, SandboxBuilder, wait_readable};
use crate::spec::{DEFAULT_PATH, SandboxSpec, User};

/// What [`SandboxBuilder::spawn_detached`] changes in the child's command.
#[derive(Debug)]
pub(crate) struct Detach {
    gate: Option<(OwnedFd, OsString)>,
}

impl Detach {
    /// No init, no parent-death signal, the start gate if any.
    pub(crate) fn apply(self, cmd: &mut nook_ns::Command) {
        cmd.init(false).no_parent_death_signal();
        if let Some((dir, name)) = self.gate {
            cmd.start_gate(dir, name);
        }
    }
}

/// A unique cgroup name for a detached sandbox whose spec names none.
fn unique_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("nk-detached-{}-{nanos}", std::process::id())
}

impl SandboxBuilder {
    /// Spawns the sandbox detached (see the [module docs](crate::detached)): its program is
    /// PID 1, it outlives the caller, and it always gets a cgroup (named uniquely unless
    /// the spec names one). `gate`: the directory (an `O_PATH` descriptor) and name of a
    /// fifo the program waits on before its confinement and exec — the spawn returns
    /// first; opening the fifo for reading lets it go on ([`open_start_gate`]).
    pub fn spawn_detached(&mut self, gate: Option<(OwnedFd, OsString)>) -> Result<Sandbox> {
        let cg = self.spec.cgroup.get_or_insert_with(|| CgroupSpec::new(""));
        if cg.name.is_empty() {
            cg.name = unique_name();
        }
        self.detach = Some(Detach { gate });
        self.spawn()
    }

    /// The spec's confinement, to change in place (an OCI config sets every field).
    pub fn security_mut(&mut self) -> &mut crate::Security {
        &mut self.spec.security
    }
}

/// Opens a start gate's fifo for reading (which releases the waiting child, see
/// `nook_ns::Command::start_gate`) and reads its byte. `Ok(false)`: the child ended
/// without writing it. The fifo is opened non-blocking (a reader opens at once, and the
/// child's blocked open for writing then completes) and polled together with the child's
/// pidfd, so a child that died while waiting does not hang the caller.
pub fn open_start_gate(fifo: &std::path::Path, pidfd: std::os::fd::BorrowedFd<'_>) -> Result<bool> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let sys = |call: &'static str| move |source: std::io::Error| Error::Sys { call, path: Some(fifo.into()), source };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .map_err(sys("open"))?;
    let mut byte = [0u8; 1];
    loop {
        // The byte stays in the fifo while we hold it open, even after the child went on.
        match f.read(&mut byte) {
            Ok(1) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(sys("read")(e)),
        }
        let (fifo_events, child_exited) = {
            let mut fds = [PollFd::new(&f, PollFlags::IN), PollFd::new(&pidfd, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(sys("poll")(e.into())),
            }
            (fds[0].revents(), !fds[1].revents().is_empty())
        };
        if child_exited {
            // One last look: it may have written the byte, then exec'd and ended.
            return Ok(matches!(f.read(&mut byte), Ok(1)));
        }
        if fifo_events.contains(PollFlags::HUP) && !fifo_events.contains(PollFlags::IN) {
            // The writer closed without a byte: the child is exiting (status 127).
            wait_readable(pidfd, Instant::now() + Duration::from_secs(10))?;
            return Ok(false);
        }
    }
}

/// What a later process needs to find a detached sandbox again (serde: keep it in a
/// state file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DetachedRecord {
    /// The program's pid (PID 1 of the sandbox), as the creator's pid namespace sees it.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`), to tell a reused pid apart.
    pub start_time: u64,
    /// The spec it runs (its cgroup named).
    pub spec: SandboxSpec,
}

impl Sandbox {
    /// The record to reopen this (detached) sandbox with, from another process.
    pub fn detached_record(&self) -> Result<DetachedRecord> {
        let pid = self.id();
        Ok(DetachedRecord { pid, start_time: nook_ns::process_start_time(pid)?, spec: self.spec().clone() })
    }
}

/// A detached sandbox reopened from its [`DetachedRecord`]: it owns nothing (dropping it
/// changes nothing); [`Detached::remove`] tears the sandbox down.
#[derive(Debug)]
pub struct Detached {
    record: DetachedRecord,
    /// `None`: the process is gone (or its pid was reused).
    pidfd: Option<OwnedFd>,
}

/// A process to start in a detached sandbox ([`Detached::exec`]); unset fields default to
/// the sandbox's.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExecProcess {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// The environment (replacing the sandbox's when not empty).
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// The user.
    pub user: Option<User>,
}

/// Descriptors for [`Detached::exec_with`] (not `Clone`, unlike [`ExecProcess`]).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExecIo {
    /// A new terminal as the process's stdio and controlling terminal, its master sent over
    /// this console socket, with this (rows, columns) size
    /// ([`SandboxBuilder::terminal`]).
    pub terminal: Option<(OwnedFd, Option<(u16, u16)>)>,
    /// Descriptors passed on: (the process's number, the descriptor).
    pub preserved: Vec<(std::os::fd::RawFd, OwnedFd)>,
}

impl Detached {
    /// Finds the sandbox's process again (a pidfd, when the pid still has the recorded
    /// start time).
    pub fn open(record: DetachedRecord) -> Result<Detached> {
        let pidfd = match nook_ns::pidfd_open(record.pid) {
            Ok(fd) => match nook_ns::process_start_time(record.pid) {
                Ok(t) if t == record.start_time => Some(fd),
                _ => None,
            },
            Err(_) => None,
        };
        Ok(Detached { record, pidfd })
    }

    /// The record it was opened from.
    pub fn record(&self) -> &DetachedRecord {
        &self.record
    }

    /// The process's pidfd, while it runs.
    pub fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Whether the process still runs (not exited; a zombie has).
    pub fn is_running(&self) -> Result<bool> {
        match &self.pidfd {
            Some(fd) => Ok(!wait_readable(fd.as_fd(), Instant::now())?),
            None => Ok(false),
        }
    }

    /// Sends `signal` to the sandbox's PID 1. `ESRCH` when it is gone.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let gone = || Error::Sys {
            call: "pidfd_send_signal",
            path: None,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        };
        let fd = self.pidfd.as_ref().ok_or_else(gone)?;
        rustix::process::pidfd_send_signal(
            fd,
            rustix::process::Signal::from_named_raw(signal).ok_or_else(|| Error::Sys {
                call: "pidfd_send_signal",
                path: None,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            })?,
        )
        .map_err(|e| Error::Sys { call: "pidfd_send_signal", path: None, source: e.into() })
    }

    /// The sandbox's cgroup (not owned: dropping it removes nothing).
    pub fn cgroup(&self) -> Result<Cgroup> {
        let spec = self.record.spec.cgroup.as_ref().ok_or_else(crate::run::no_cgroup)?;
        Ok(Cgroup::open(spec)?)
    }

    /// Sends `signal` to every process of the sandbox's cgroup.
    pub fn signal_all(&self, signal: i32) -> Result<()> {
        for pid in self.cgroup()?.procs()? {
            // A process that exited meanwhile is fine.
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
                && let Some(sig) = rustix::process::Signal::from_named_raw(signal)
            {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
        Ok(())
    }

    /// Tears the sandbox down: SIGKILL to every process, waits until its PID 1 is gone
    /// (its parent reaps it; the mounts go with its mount namespace), then removes the
    /// cgroup. Every failure is reported.
    pub fn remove(self) -> Result<()> {
        let mut errors = Vec::new();
        if let Some(fd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            match wait_readable(fd.as_fd(), Instant::now() + Duration::from_secs(10)) {
                Ok(true) => {}
                Ok(false) => errors.push(Error::Sys {
                    call: "poll (the sandbox's process did not end after SIGKILL)",
                    path: None,
                    source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                }),
                Err(e) => errors.push(e),
            }
        }
        match self.cgroup() {
            Ok(cg) => {
                if let Err(e) = cg.remove() {
                    errors.push(e.into());
                }
            }
            // Already removed.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => errors.push(e),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown { what: format!("detached sandbox {}", self.record.pid), errors })
        }
    }

    /// Starts another process in the running sandbox, as [`Sandbox::exec`] does (every
    /// namespace joined through its PID 1, its cgroup, its confinement), with stdio
    /// inherited. The caller waits for it.
    pub fn exec(&self, process: &ExecProcess) -> Result<nook_ns::Child> {
        self.exec_with(process, ExecIo::default())
    }

    /// [`Detached::exec`] with a terminal and passed descriptors; it joins the sandbox's
    /// session keyring ([`SandboxSpec::session_keyring`]) when it has one.
    pub fn exec_with(&self, process: &ExecProcess, io: ExecIo) -> Result<nook_ns::Child> {
        let spec = &self.record.spec;
        let pidfd = self.pidfd.as_ref().filter(|_| self.is_running().unwrap_or(false)).ok_or_else(|| Error::Sys {
            call: "pidfd (the sandbox's process has exited)",
            path: None,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        })?;
        if process.args.first().is_none_or(String::is_empty) {
            return Err(ValidationError::EmptyCommand.into());
        }
        let env: BTreeMap<String, String> = if process.env.is_empty() {
            let mut env = BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]);
            env.extend(spec.env.clone());
            env
        } else {
            process.env.clone()
        };
        let mut cmd = nook_ns::Command::new(&process.args[0]);
        cmd.args(&process.args[1..]).env_clear().envs(env);
        cmd.current_dir(process.cwd.clone().unwrap_or_else(|| spec.cwd.clone()));
        if let Some(u) = process.user.as_ref().or(spec.user.as_ref()) {
            cmd.user(u.uid, u.gid).groups(&u.groups);
        }
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        if let Some((socket, size)) = io.terminal {
            cmd.terminal(socket);
            if let Some((rows, cols)) = size {
                cmd.terminal_size(rows, cols);
            }
        }
        for (target, fd) in io.preserved {
            cmd.preserve_fd(fd, target);
        }
        if let Some(name) = &spec.session_keyring {
            cmd.session_keyring(name, None);
        }
        let device_cgroup = device_policy(&spec.security, &mut spec.cgroup.clone());
        let root = PathBuf::from(format!("/proc/{}/root", self.record.pid));
        Confinement::resolve(&spec.security, device_cgroup)?.apply(&mut cmd, Some(&root))?;
        let mut set = NamespaceSet::new();
        for kind in spec.effective_namespaces().kinds() {
            set = set.with(kind);
        }
        if matches!(spec.network, crate::NetworkMode::Container { .. }) {
            set = set.with(Namespace::Net);
        }
        for j in &spec.join_namespaces {
            set = set.with(j.kind);
        }
        let dup = pidfd.try_clone().map_err(|source| Error::Sys { call: "dup (the pidfd)", path: None, source })?;
        cmd.join(dup, set);
        cmd.validate().map_err(ValidationError::from)?;
        if let Ok(cg) = self.cgroup() {
            crate::run::start_in_cgroup(&mut cmd, &cg)?;
        }
        Ok(cmd.spawn()?)
    }
}
