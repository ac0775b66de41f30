//! What the kernel counts for a cgroup ([`Cgroup::stats`]) and a wait for its OOM events
//! ([`Cgroup::oom_watcher`]).
//!
//! Each section of [`Stats`] is read from the directory that manages its controller — the
//! v1 hierarchy on v1 and hybrid hosts, the unified tree on v2 — and is `None` when the
//! cgroup lacks that controller (not created in its v1 hierarchy, or not enabled for it on
//! v2, where the files are then absent). Pressure (PSI) is read from the v2 directory, which
//! hybrid hosts have as well. The parsers are pure functions with unit tests.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::at;
use crate::cgroup::{Cgroup, Dir};
use crate::error::{Error, Result};
use crate::hierarchy::{Controller, Version};
use crate::sys;

/// A snapshot of a cgroup's counters. A section is `None` when the cgroup lacks the
/// controller (or the kernel lacks the files).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time used and bandwidth throttling.
    pub cpu: Option<CpuStats>,
    /// Memory use and limit.
    pub memory: Option<MemoryStats>,
    /// Out-of-memory counters (memory controller).
    pub oom: Option<OomStats>,
    /// Task count and limit.
    pub pids: Option<PidsStats>,
    /// Bytes and operations per block device.
    pub io: Option<IoStats>,
    /// Pressure stall information (v2 directory; `None` without PSI).
    pub pressure: Option<PressureStats>,
}

/// CPU accounting and throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Time used: v1 `cpuacct` (or, on hybrid hosts without a cpuacct directory, the v2
    /// directory's `cpu.stat`, which the kernel always keeps); v2 `cpu.stat`.
    pub usage: Option<CpuUsage>,
    /// Bandwidth throttling (v1 `cpu.stat`, v2 `cpu.stat` with the cpu controller enabled).
    pub throttling: Option<CpuThrottling>,
}

/// CPU time used by the cgroup's tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total, µs (v1 `cpuacct.usage` in ns / 1000; v2 `usage_usec`).
    pub usage_usec: u64,
    /// In user mode, µs (v1 `cpuacct.stat` ticks; v2 `user_usec`).
    pub user_usec: Option<u64>,
    /// In kernel mode, µs (v1 `cpuacct.stat` ticks; v2 `system_usec`).
    pub system_usec: Option<u64>,
}

/// CFS bandwidth throttling counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuThrottling {
    /// Enforcement periods that have elapsed.
    pub nr_periods: u64,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: u64,
    /// Total time throttled, µs (v1 `throttled_time` in ns / 1000).
    pub throttled_usec: u64,
}

/// Memory use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes in use (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    pub current: u64,
    /// Highest use recorded (v2 `memory.peak`, Linux 5.19+; v1 `memory.max_usage_in_bytes`).
    pub peak: Option<u64>,
    /// The hard limit; `None` = unlimited (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    pub limit: Option<u64>,
    /// Swap in use (v2 `memory.swap.current`; v1 memsw usage minus memory usage), where
    /// swap accounting exists.
    pub swap_current: Option<u64>,
    /// `memory.stat`, key by key (the keys differ between v1 and v2).
    pub stat: BTreeMap<String, u64>,
}

/// Out-of-memory counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomStats {
    /// Times the cgroup hit its limit and the OOM killer was invoked (v2 `memory.events`
    /// `oom`; v1 has no such counter).
    pub oom: Option<u64>,
    /// Processes killed by the OOM killer (`oom_kill` of v2 `memory.events`, v1
    /// `memory.oom_control`).
    pub oom_kill: u64,
    /// Times usage was about to exceed `memory.max` (v2 `memory.events` `max`).
    pub max: Option<u64>,
    /// Times usage exceeded `memory.high` (v2 `memory.events` `high`).
    pub high: Option<u64>,
    /// Whether the cgroup is under OOM right now (v1 `memory.oom_control` `under_oom`).
    pub under_oom: Option<bool>,
    /// Times usage hit the limit (v1 `memory.failcnt`).
    pub failcnt: Option<u64>,
}

/// Task count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks (threads included) in the cgroup and below (`pids.current`).
    pub current: u64,
    /// The limit; `None` = unlimited (`pids.max`).
    pub max: Option<u64>,
}

/// Block I/O per device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    /// One entry per device with I/O (v2 `io.stat`; v1 `blkio.throttle.io_service_bytes`
    /// and `blkio.throttle.io_serviced`).
    pub devices: Vec<IoDeviceStats>,
}

/// I/O counters of one block device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDeviceStats {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

/// Pressure stall information of the cgroup (`cpu.pressure`, `memory.pressure`,
/// `io.pressure` in the v2 directory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureStats {
    /// CPU pressure.
    pub cpu: Option<Pressure>,
    /// Memory pressure.
    pub memory: Option<Pressure>,
    /// I/O pressure.
    pub io: Option<Pressure>,
}

/// One PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: PressureLine,
    /// All non-idle tasks stalled at once (absent from old kernels' `cpu.pressure`).
    pub full: Option<PressureLine>,
}

/// One line of a PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureLine {
    /// Share of time stalled over the last 10 s, in percent.
    pub avg10: f64,
    /// Over the last 60 s, in percent.
    pub avg60: f64,
    /// Over the last 300 s, in percent.
    pub avg300: f64,
    /// Total stall time, µs.
    pub total_usec: u64,
}

impl Cgroup {
    /// Reads every counter the cgroup has. Sections for controllers the cgroup lacks are
    /// `None`; a file that exists but cannot be read or parsed is an error.
    ///
    /// ```no_run
    /// use nook_cgroup::{Cgroup, CgroupSpec, Pids};
    ///
    /// let mut spec = CgroupSpec::new("nk-doc-stats");
    /// spec.resources.pids = Some(Pids { max: Some(32) });
    /// let cg = Cgroup::create(&spec)?;
    /// let stats = cg.stats()?;
    /// println!("{} tasks", stats.pids.map_or(0, |p| p.current));
    /// # Ok::<(), nook_cgroup::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let at_of = |c: Controller| self.entry_of(c).map(|d| (At::of(d), d.version));
        let (memory, oom) = match at_of(Controller::Memory) {
            Some((dir, version)) => (memory_stats(dir, version)?, oom_stats(dir, version)?),
            None => (None, None),
        };
        Ok(Stats {
            cpu: self.cpu_stats()?,
            memory,
            oom,
            pids: match at_of(Controller::Pids) {
                Some((dir, _)) => pids_stats(dir)?,
                None => None,
            },
            io: match at_of(Controller::Blkio) {
                Some((dir, version)) => io_stats(dir, version)?,
                None => None,
            },
            pressure: match self.v2_entry() {
                Some(d) => pressure_stats(At::of(d))?,
                None => None,
            },
        })
    }

    fn cpu_stats(&self) -> Result<Option<CpuStats>> {
        let usage = match self.entry_of(Controller::Cpuacct) {
            Some(d) if d.version == Version::V1 => v1_cpu_usage(At::of(d))?,
            Some(d) => v2_cpu_usage(At::of(d))?,
            // Hybrid without a cpuacct directory: the v2 core keeps usage for every cgroup.
            None => match self.v2_entry() {
                Some(d) => v2_cpu_usage(At::of(d))?,
                None => None,
            },
        };
        let throttling = match self.entry_of(Controller::Cpu) {
            Some(d) => {
                let path = At::of(d).join("cpu.stat");
                match read_opt(&path)? {
                    Some(text) => throttling(&parse_flat(&text)),
                    None => None,
                }
            }
            None => None,
        };
        Ok((usage.is_some() || throttling.is_some()).then_some(CpuStats { usage, throttling }))
    }

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
                let efd = sys::eventfd().map_err(|e| Error::io("eventfd", &oom_control, e))?;
                let control = at::open_file(dir.fd.as_fd(), "memory.oom_control")
                    .map_err(|e| at::err("open", &oom_control, e))?;
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
        Ok(Owned { fd: d.fd.try_clone().map_err(|e| Error::io("dup", &d.path, e))?, path: d.path.clone() })
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
            sys::poll_readable(self.as_fd(), remaining).map_err(|e| Error::io("poll", self.path(), e))?;
        }
    }

    /// Checks without blocking: drains the fd, re-reads the counters and returns an event if
    /// `oom` or `oom_kill` grew since the previous event.
    pub fn poll_event(&mut self) -> Result<Option<OomEvent>> {
        let now = match &self.source {
            Source::V2 { inotify, dir } => {
                let mut buf = [0u8; 1024];
                while sys::read_nonblocking(inotify.as_fd(), &mut buf)
                    .map_err(|e| Error::io("read inotify", dir.path.join("memory.events"), e))?
                    .is_some_and(|n| n > 0)
                {}
                read_v2_events(dir.at())?
            }
            Source::V1 { eventfd, dir } => {
                let mut buf = [0u8; 8];
                let notified = match sys::read_nonblocking(eventfd.as_fd(), &mut buf)
                    .map_err(|e| Error::io("read eventfd", dir.path.join("memory.oom_control"), e))?
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

// ---- reading -------------------------------------------------------------------------

/// A cgroup directory to read from: its fd (opened beneath the hierarchy root, see
/// `at.rs`) and its path (for errors).
#[derive(Clone, Copy)]
struct At<'a> {
    fd: BorrowedFd<'a>,
    dir: &'a Path,
}

impl<'a> At<'a> {
    fn of(d: &'a Dir) -> At<'a> {
        At { fd: d.fd.as_fd(), dir: &d.path }
    }

    fn join(self, name: &str) -> File<'a> {
        File { fd: self.fd, name: name.to_owned(), path: self.dir.join(name) }
    }
}

/// One file of a cgroup directory, read through the directory's fd.
struct File<'a> {
    fd: BorrowedFd<'a>,
    name: String,
    path: PathBuf,
}

impl AsRef<Path> for File<'_> {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Reads a file, `None` if it does not exist (the cgroup lacks that controller or the
/// kernel that feature).
fn read_opt(f: &File<'_>) -> Result<Option<String>> {
    match at::read_io(f.fd, &f.name) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at::err("read", &f.path, e)),
    }
}

fn parse_err(path: impl AsRef<Path>, detail: impl Into<String>) -> Error {
    Error::Parse { path: path.as_ref().to_owned(), detail: detail.into() }
}

/// Reads a one-number file (`max` = `None`); `Ok(None)` if absent too — callers that need
/// to tell the two apart read the file themselves.
fn read_number(path: &File<'_>) -> Result<Option<Option<u64>>> {
    match read_opt(path)? {
        Some(text) => parse_limit(&text).map(Some).map_err(|d| parse_err(path, d)),
        None => Ok(None),
    }
}

/// Reads a file holding one number; `None` if absent.
fn read_u64(path: &File<'_>) -> Result<Option<u64>> {
    match read_number(path)? {
        Some(Some(n)) => Ok(Some(n)),
        Some(None) => Err(parse_err(path, "\"max\" where a number was expected")),
        None => Ok(None),
    }
}

fn read_flat(path: &File<'_>) -> Result<Option<BTreeMap<String, u64>>> {
    Ok(read_opt(path)?.map(|t| parse_flat(&t)))
}

fn need(map: &BTreeMap<String, u64>, key: &str, path: impl AsRef<Path>) -> Result<u64> {
    map.get(key).copied().ok_or_else(|| parse_err(path, format!("no {key:?} key")))
}

fn v1_cpu_usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
    let Some(ns) = read_u64(&dir.join("cpuacct.usage"))? else {
        return Ok(None);
    };
    let hz = sys::clock_ticks_per_second();
    let stat = read_flat(&dir.join("cpuacct.stat"))?.unwrap_or_default();
    let ticks = |k: &str| stat.get(k).map(|t| t.saturating_mul(1_000_000) / hz);
    Ok(Some(CpuUsage { usage_usec: ns / 1000, user_usec: ticks("user"), system_usec: ticks("system") }))
}

fn v2_cpu_usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
    let path = dir.join("cpu.stat");
    let Some(stat) = read_flat(&path)? else {
        return Ok(None);
    };
    Ok(Some(CpuUsage {
        usage_usec: need(&stat, "usage_usec", &path)?,
        user_usec: stat.get("user_usec").copied(),
        system_usec: stat.get("system_usec").copied(),
    }))
}

/// Throttling from a v1 or v2 `cpu.stat`; `None` without the bandwidth keys (v2 without
/// the cpu controller).
fn throttling(stat: &BTreeMap<String, u64>) -> Option<CpuThrottling> {
    let throttled_usec = match (stat.get("throttled_usec"), stat.get("throttled_time")) {
        (Some(us), _) => *us,
        (None, Some(ns)) => ns / 1000,
        (None, None) => return None,
    };
    Some(CpuThrottling {
        nr_periods: *stat.get("nr_periods")?,
        nr_throttled: *stat.get("nr_throttled")?,
        throttled_usec,
    })
}

/// v1 `memory.limit_in_bytes` shows "unlimited" as the page counter's maximum (about
/// `i64::MAX`, rounded down to a page): anything this large is no limit.
const V1_UNLIMITED: u64 = i64::MAX as u64 / 2;

fn v1_limit(bytes: u64) -> Option<u64> {
    (bytes < V1_UNLIMITED).then_some(bytes)
}

fn memory_stats(dir: At<'_>, version: Version) -> Result<Option<MemoryStats>> {
    let number = |file: &str| read_u64(&dir.join(file));
    let stats = match version {
        Version::V2 => {
            let Some(current) = number("memory.current")? else {
                return Ok(None);
            };
            MemoryStats {
                current,
                peak: number("memory.peak")?,
                limit: read_number(&dir.join("memory.max"))?.flatten(),
                swap_current: number("memory.swap.current")?,
                stat: read_flat(&dir.join("memory.stat"))?.unwrap_or_default(),
            }
        }
        Version::V1 => {
            let Some(current) = number("memory.usage_in_bytes")? else {
                return Ok(None);
            };
            MemoryStats {
                current,
                peak: number("memory.max_usage_in_bytes")?,
                limit: number("memory.limit_in_bytes")?.and_then(v1_limit),
                swap_current: number("memory.memsw.usage_in_bytes")?.map(|memsw| memsw.saturating_sub(current)),
                stat: read_flat(&dir.join("memory.stat"))?.unwrap_or_default(),
            }
        }
    };
    Ok(Some(stats))
}

fn oom_stats(dir: At<'_>, version: Version) -> Result<Option<OomStats>> {
    match version {
        Version::V2 => {
            let path = dir.join("memory.events");
            let Some(ev) = read_flat(&path)? else {
                return Ok(None);
            };
            Ok(Some(OomStats {
                oom: Some(need(&ev, "oom", &path)?),
                oom_kill: need(&ev, "oom_kill", &path)?,
                max: ev.get("max").copied(),
                high: ev.get("high").copied(),
                under_oom: None,
                failcnt: None,
            }))
        }
        Version::V1 => {
            let path = dir.join("memory.oom_control");
            let Some(ctl) = read_flat(&path)? else {
                return Ok(None);
            };
            // Kernels before 4.13 do not count kills: no section rather than a made-up 0.
            let Some(&oom_kill) = ctl.get("oom_kill") else {
                return Ok(None);
            };
            let failcnt = dir.join("memory.failcnt");
            Ok(Some(OomStats {
                oom: None,
                oom_kill,
                max: None,
                high: None,
                under_oom: ctl.get("under_oom").map(|u| *u != 0),
                failcnt: read_number(&failcnt)?.flatten(),
            }))
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

fn pids_stats(dir: At<'_>) -> Result<Option<PidsStats>> {
    let Some(current) = read_u64(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    Ok(Some(PidsStats { current, max: read_number(&dir.join("pids.max"))?.flatten() }))
}

fn io_stats(dir: At<'_>, version: Version) -> Result<Option<IoStats>> {
    match version {
        Version::V2 => {
            let path = dir.join("io.stat");
            let Some(text) = read_opt(&path)? else {
                return Ok(None);
            };
            let devices = parse_io_stat(&text).map_err(|d| parse_err(&path, d))?;
            Ok(Some(IoStats { devices }))
        }
        Version::V1 => {
            let bytes_path = dir.join("blkio.throttle.io_service_bytes");
            let (Some(bytes), Some(ios)) = (read_opt(&bytes_path)?, read_opt(&dir.join("blkio.throttle.io_serviced"))?)
            else {
                return Ok(None);
            };
            let devices = parse_blkio(&bytes, &ios).map_err(|d| parse_err(&bytes_path, d))?;
            Ok(Some(IoStats { devices }))
        }
    }
}

fn pressure_stats(dir: At<'_>) -> Result<Option<PressureStats>> {
    let read = |file: &str| -> Result<Option<Pressure>> {
        let path = dir.dir.join(file);
        match at::read_io(dir.fd, file) {
            Ok(text) => parse_psi(&text).map(Some).map_err(|d| parse_err(&path, d)),
            // Absent, or PSI disabled at boot (`psi=0`: EOPNOTSUPP).
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(at::err("read", &path, e)),
        }
    };
    let p = PressureStats { cpu: read("cpu.pressure")?, memory: read("memory.pressure")?, io: read("io.pressure")? };
    Ok((p.cpu.is_some() || p.memory.is_some() || p.io.is_some()).then_some(p))
}

// ---- pure parsers ----------------------------------------------------------------------

/// A flat-keyed file (`key value` per line: `cpu.stat`, `memory.stat`, `memory.events`).
/// Lines whose value is not a number are skipped, so new kernel keys cannot break it.
pub(crate) fn parse_flat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (key, value, None) = (parts.next()?, parts.next()?, parts.next()) else {
                return None;
            };
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A nested-keyed file (`key sub=value sub=value` per line: `io.stat`, PSI files).
pub(crate) fn parse_nested(text: &str) -> Vec<(&str, Vec<(&str, &str)>)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            Some((key, parts.filter_map(|kv| kv.split_once('=')).collect()))
        })
        .collect()
}

/// A single number, or `max` (→ `None`).
pub(crate) fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "max" => Ok(None),
        t => t.parse().map(Some).map_err(|_| format!("expected a number or \"max\", found {t:?}")),
    }
}

fn device(key: &str) -> Result<(u32, u32), String> {
    key.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("bad device {key:?}"))
}

/// v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
pub(crate) fn parse_io_stat(text: &str) -> Result<Vec<IoDeviceStats>, String> {
    parse_nested(text)
        .into_iter()
        .map(|(key, fields)| {
            let (major, minor) = device(key)?;
            let mut d = IoDeviceStats { major, minor, ..IoDeviceStats::default() };
            for (k, v) in fields {
                let slot = match k {
                    "rbytes" => &mut d.rbytes,
                    "wbytes" => &mut d.wbytes,
                    "rios" => &mut d.rios,
                    "wios" => &mut d.wios,
                    _ => continue,
                };
                *slot = v.parse().map_err(|_| format!("{key} {k}={v:?} is not a number"))?;
            }
            Ok(d)
        })
        .collect()
}

/// v1 `blkio.throttle.io_service_bytes` and `.io_serviced`: `MAJ:MIN Read N` lines (also
/// Write, Sync, Async, Discard, Total) and a final `Total N`.
pub(crate) fn parse_blkio(bytes: &str, ios: &str) -> Result<Vec<IoDeviceStats>, String> {
    let mut devices: BTreeMap<(u32, u32), IoDeviceStats> = BTreeMap::new();
    for (text, is_bytes) in [(bytes, true), (ios, false)] {
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [dev, op, value] = parts[..] else {
                continue;
            };
            let (major, minor) = device(dev)?;
            let value: u64 = value.parse().map_err(|_| format!("{line:?}: not a number"))?;
            let d = devices.entry((major, minor)).or_insert(IoDeviceStats { major, minor, ..IoDeviceStats::default() });
            match (op, is_bytes) {
                ("Read", true) => d.rbytes = value,
                ("Write", true) => d.wbytes = value,
                ("Read", false) => d.rios = value,
                ("Write", false) => d.wios = value,
                _ => {}
            }
        }
    }
    Ok(devices.into_values().collect())
}

/// A PSI file: a `some` line and, on most files, a `full` line, each
/// `avg10=.. avg60=.. avg300=.. total=..`.
pub(crate) fn parse_psi(text: &str) -> Result<Pressure, String> {
    let mut some = None;
    let mut full = None;
    for (key, fields) in parse_nested(text) {
        let mut line = PressureLine::default();
        let mut seen = 0;
        for (k, v) in fields {
            let bad = || format!("{key} {k}={v:?} is not a number");
            match k {
                "avg10" => line.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => line.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => line.avg300 = v.parse().map_err(|_| bad())?,
                "total" => line.total_usec = v.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(format!("{key} line lacks avg10/avg60/avg300/total"));
        }
        match key {
            "some" => some = Some(line),
            "full" => full = Some(line),
            _ => {}
        }
    }
    Ok(Pressure { some: some.ok_or("no \"some\" line")?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_parse_and_skip_non_numbers() {
        let v1 = "nr_periods 12\nnr_throttled 5\nthrottled_time 7000000\nnr_bursts 0\nburst_time 0\n";
        let m = parse_flat(v1);
        assert_eq!(m["nr_periods"], 12);
        assert_eq!(
            throttling(&m),
            Some(CpuThrottling { nr_periods: 12, nr_throttled: 5, throttled_usec: 7000 }),
            "v1 throttled_time is in ns"
        );
        let v2 = "usage_usec 500\nuser_usec 300\nsystem_usec 200\nnr_periods 3\nnr_throttled 1\nthrottled_usec 42\n";
        assert_eq!(throttling(&parse_flat(v2)).unwrap().throttled_usec, 42);
        // v2 cpu.stat without the cpu controller has no bandwidth keys.
        assert_eq!(throttling(&parse_flat("usage_usec 1\nuser_usec 1\nsystem_usec 0\n")), None);
        let odd = parse_flat("a 1\nweird x\n\nb 2 3\nc 18446744073709551615\n");
        assert_eq!(odd.into_iter().collect::<Vec<_>>(), vec![("a".to_owned(), 1), ("c".to_owned(), u64::MAX)]);
    }

    #[test]
    fn limits_parse_max_as_none() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("33554432\n"), Ok(Some(32 << 20)));
        assert!(parse_limit("lots").is_err());
        assert_eq!(v1_limit(9223372036854771712), None, "v1 'unlimited' with 4 KiB pages");
        assert_eq!(v1_limit(9223372036854710272), None, "v1 'unlimited' with 64 KiB pages");
        assert_eq!(v1_limit(32 << 20), Some(32 << 20));
    }

    #[test]
    fn io_stat_v2_parses_per_device() {
        let text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n";
        let d = parse_io_stat(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], IoDeviceStats { major: 8, minor: 0, rbytes: 4096, wbytes: 8192, rios: 1, wios: 2 });
        assert_eq!((d[1].major, d[1].minor, d[1].wbytes), (253, 1, 512));
        assert_eq!(parse_io_stat("").unwrap(), vec![]);
        assert!(parse_io_stat("sda rbytes=1\n").is_err());
        assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
    }

    #[test]
    fn blkio_v1_merges_bytes_and_ops() {
        let bytes =
            "8:0 Read 4096\n8:0 Write 1024\n8:0 Sync 5120\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 5120\nTotal 5120\n";
        let ios = "8:0 Read 1\n8:0 Write 3\n8:0 Sync 4\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 4\nTotal 4\n";
        let d = parse_blkio(bytes, ios).unwrap();
        assert_eq!(d, vec![IoDeviceStats { major: 8, minor: 0, rbytes: 4096, wbytes: 1024, rios: 1, wios: 3 }]);
        assert_eq!(parse_blkio("Total 0\n", "Total 0\n").unwrap(), vec![]);
    }

    #[test]
    fn psi_lines_parse_with_and_without_full() {
        let text = "some avg10=1.74 avg60=2.46 avg300=4.43 total=202186517\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let p = parse_psi(text).unwrap();
        assert_eq!(p.some, PressureLine { avg10: 1.74, avg60: 2.46, avg300: 4.43, total_usec: 202186517 });
        assert_eq!(p.full.unwrap().total_usec, 0);
        let old_cpu = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").unwrap();
        assert_eq!((old_cpu.some.total_usec, old_cpu.full), (5, None));
        assert!(parse_psi("").is_err());
        assert!(parse_psi("some avg10=0.00 total=1\n").is_err());
        assert!(parse_psi("some avg10=x avg60=0 avg300=0 total=1\n").is_err());
    }

    #[test]
    fn stats_serialize_to_json_shape() {
        let s = Stats {
            pids: Some(PidsStats { current: 3, max: None }),
            pressure: Some(PressureStats { cpu: Some(Pressure::default()), ..PressureStats::default() }),
            ..Stats::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pids"]["current"], 3);
        assert!(v["pids"]["max"].is_null());
        assert!(v["memory"].is_null());
        assert_eq!(v["pressure"]["cpu"]["some"]["total_usec"], 0);
    }
}
