//! The [`OomWatcher`]: a pollable wait for a cgroup's OOM events (inotify on v2
//! `memory.events`, an eventfd through `cgroup.event_control` on v1).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::parse::parse_flat;
use super::read::{At, need};
use crate::at;
use crate::cgroup::{Cgroup, Dir};
use crate::controller::Controller;
use crate::error::{Error, Joined, Result, SysContext};
use crate::hierarchy::Version;
use crate::sys;

impl Cgroup {
    /// Starts watching the cgroup for OOM events (needs the memory controller). Events that
    /// happen after this call are reported by [`OomWatcher::wait`] / [`OomWatcher::poll_event`].
    ///
    /// v2: inotify on `memory.events`, whose `oom` / `oom_kill` counters are re-read on
    /// every change. v1: an eventfd registered through `cgroup.event_control` for
    /// `memory.oom_control`, which the kernel signals when the cgroup enters OOM (before
    /// the kill; the kill count is read from `memory.oom_control`).
    pub fn oom_watcher(&self) -> Result<OomWatcher> {
        let (dir, version) = self.require_dir(Controller::Memory)?;
        match version {
            Version::V2 => {
                let events = dir.path.join("memory.events");
                if !dir.has("memory.events") {
                    return Err(Error::ControllerUnavailable {
                        controller: Controller::Memory,
                        detail: format!("{} is missing: memory is not enabled for this cgroup", events.display()),
                    });
                }
                let owned = Owned::of(dir)?;
                // Watch first, then read the baseline: nothing in between is lost. (The watch
                // is set by path; the counters are read through the directory's fd.)
                let inotify = sys::inotify_watch(&events, rustix::fs::inotify::WatchFlags::MODIFY)?;
                let last = read_v2_events(owned.at())?;
                Ok(OomWatcher { source: Source::V2 { inotify, dir: owned }, last })
            }
            Version::V1 => {
                let oom_control = dir.path.join("memory.oom_control");
                let efd = sys::eventfd().sys("eventfd")?;
                let control = at::open_file(dir.fd.as_fd(), "memory.oom_control").beneath("openat2", &oom_control)?;
                let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
                dir.write("cgroup.event_control", &line)?;
                // The kernel keeps its own reference to the eventfd, not to the file.
                drop(control);
                let owned = Owned::of(dir)?;
                let last = Counts { oom: 0, oom_kill: read_v1_oom_kill(owned.at())? };
                Ok(OomWatcher { source: Source::V1 { eventfd: efd, dir: owned }, last })
            }
        }
    }
}

/// OOM events seen by an [`OomWatcher`]: how much each counter grew since the previous
/// event (or since the watcher was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomEvent {
    /// New OOM situations (v2 `memory.events` `oom`; v1 the eventfd's count of OOM
    /// notifications).
    pub oom: u64,
    /// New OOM kills. On v1 the notification comes as the OOM starts, so a kill may show up
    /// only in a later event (or in [`Cgroup::stats`]).
    pub oom_kill: u64,
}

/// A pollable watch for OOM events of one cgroup, from [`Cgroup::oom_watcher`].
///
/// Its fd ([`AsFd`]) becomes readable when something may have happened; call
/// [`OomWatcher::poll_event`] then (it never blocks), or block in [`OomWatcher::wait`].
/// The watcher keeps no reference to the [`Cgroup`]: once the cgroup is removed, reading
/// the counters fails with an error.
#[derive(Debug)]
pub struct OomWatcher {
    source: Source,
    last: Counts,
}

#[derive(Debug)]
enum Source {
    V2 { inotify: OwnedFd, dir: Owned },
    V1 { eventfd: OwnedFd, dir: Owned },
}

/// The memory directory a watcher reads its counters from: its own fd (a dup of the
/// cgroup's) and path.
#[derive(Debug)]
struct Owned {
    fd: OwnedFd,
    path: PathBuf,
}

impl Owned {
    fn of(d: &Dir) -> Result<Owned> {
        Ok(Owned { fd: d.fd.try_clone().sys_at("dup", &d.path)?, path: d.path.clone() })
    }

    fn at(&self) -> At<'_> {
        At { fd: self.fd.as_fd(), dir: &self.path }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    oom: u64,
    oom_kill: u64,
}

impl OomWatcher {
    /// Blocks until an OOM event or until `timeout` passes (`None`: no limit). Returns the
    /// event, or `None` on timeout. Events that came before the call (since the previous
    /// one) are returned at once.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<OomEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.poll_event()? {
                return Ok(Some(event));
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            sys::poll_readable(self.as_fd(), remaining).sys_at("poll", self.path())?;
        }
    }

    /// Checks without blocking: drains the fd, re-reads the counters and returns an event if
    /// `oom` or `oom_kill` grew since the previous event.
    pub fn poll_event(&mut self) -> Result<Option<OomEvent>> {
        let now = match &self.source {
            Source::V2 { inotify, dir } => {
                let mut buf = [0u8; 1024];
                while sys::read_nonblocking(inotify.as_fd(), &mut buf)
                    .sys_at("read", Joined(&dir.path, "memory.events"))?
                    .is_some_and(|n| n > 0)
                {}
                read_v2_events(dir.at())?
            }
            Source::V1 { eventfd, dir } => {
                let mut buf = [0u8; 8];
                let notified = match sys::read_nonblocking(eventfd.as_fd(), &mut buf)
                    .sys_at("read", Joined(&dir.path, "memory.oom_control"))?
                {
                    Some(8) => u64::from_ne_bytes(buf),
                    _ => 0,
                };
                Counts { oom: self.last.oom + notified, oom_kill: read_v1_oom_kill(dir.at())? }
            }
        };
        let event = OomEvent {
            oom: now.oom.saturating_sub(self.last.oom),
            oom_kill: now.oom_kill.saturating_sub(self.last.oom_kill),
        };
        self.last = now;
        Ok((event.oom > 0 || event.oom_kill > 0).then_some(event))
    }

    fn path(&self) -> &Path {
        match &self.source {
            Source::V2 { dir, .. } | Source::V1 { dir, .. } => &dir.path,
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V2 { inotify, .. } => inotify.as_fd(),
            Source::V1 { eventfd, .. } => eventfd.as_fd(),
        }
    }
}

fn read_v2_events(dir: At<'_>) -> Result<Counts> {
    let path = dir.dir.join("memory.events");
    let ev = parse_flat(&at::read(dir.fd, dir.dir, "memory.events")?);
    Ok(Counts { oom: need(&ev, "oom", &path)?, oom_kill: need(&ev, "oom_kill", &path)? })
}

fn read_v1_oom_kill(dir: At<'_>) -> Result<u64> {
    let text = at::read(dir.fd, dir.dir, "memory.oom_control")?;
    need(&parse_flat(&text), "oom_kill", dir.dir.join("memory.oom_control"))
}
