//! The few calls of this crate that are not about paths (signals, inotify, eventfd, poll),
//! through `rustix`. Every path into cgroupfs is resolved in `at.rs`; the v2 device
//! program's `bpf(2)` calls (no safe wrapper exists) live in `bpf.rs`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use crate::error::{Result, SysContext};

/// Sends `SIGKILL` to `pid`, ignoring errors (the task may be gone already). A pid that is
/// not a positive `pid_t` (never in `cgroup.procs`) is skipped.
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

/// An inotify instance (non-blocking, close-on-exec) with one watch on `path` for `mask`
/// (e.g. `MODIFY`, which cgroupfs raises when a `*.events` file changes).
pub(crate) fn inotify_watch(path: &Path, mask: inotify::WatchFlags) -> Result<OwnedFd> {
    let fd =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).sys_at("inotify_init1", path)?;
    inotify::add_watch(&fd, path, mask).sys_at("inotify_add_watch", path)?;
    Ok(fd)
}

/// An eventfd with counter 0 (non-blocking, close-on-exec).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?)
}

/// One `read(2)` on a non-blocking fd: `Ok(None)` when nothing is pending (`EAGAIN`).
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes (`None`: no limit). Returns whether it
/// became readable; an interrupted wait returns `false` early (callers loop on a deadline).
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    // At most ~24 days per wait (what `poll(2)`'s millisecond timeout allowed); callers loop.
    let timeout = timeout
        .map(|t| t.min(Duration::from_millis(i32::MAX as u64)))
        .map(|t| Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Clock ticks per second (`USER_HZ`), the unit of `cpuacct.stat`.
pub(crate) fn clock_ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        hz => hz,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn inotify_watch_wakes_poll_on_a_write_and_drains() {
        let dir = nook_testutil::TempDir::new("sys").unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "0").unwrap();
        let fd = inotify_watch(&file, inotify::WatchFlags::MODIFY).unwrap();
        let mut buf = [0u8; 1024];
        assert_eq!(read_nonblocking(fd.as_fd(), &mut buf).unwrap(), None, "nothing pending yet");
        assert!(!poll_readable(fd.as_fd(), Some(Duration::ZERO)).unwrap());
        std::fs::write(&file, "1").unwrap();
        assert!(poll_readable(fd.as_fd(), None).unwrap(), "the kernel queued an IN_MODIFY event");
        assert!(read_nonblocking(fd.as_fd(), &mut buf).unwrap().is_some_and(|n| n > 0));
        while read_nonblocking(fd.as_fd(), &mut buf).unwrap().is_some() {}
        assert!(!poll_readable(fd.as_fd(), Some(Duration::from_millis(1))).unwrap(), "drained");
        let missing = dir.join("missing");
        let err = inotify_watch(&missing, inotify::WatchFlags::MODIFY).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    }

    #[test]
    fn eventfd_counts_writes_and_reads_back_the_sum() {
        let fd = eventfd().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read_nonblocking(fd.as_fd(), &mut buf).unwrap(), None, "counter 0 is not readable");
        rustix::io::write(&fd, &2u64.to_ne_bytes()).unwrap();
        rustix::io::write(&fd, &3u64.to_ne_bytes()).unwrap();
        assert!(poll_readable(fd.as_fd(), Some(Duration::from_secs(5))).unwrap());
        assert_eq!(read_nonblocking(fd.as_fd(), &mut buf).unwrap(), Some(8));
        assert_eq!(u64::from_ne_bytes(buf), 5);
        assert_eq!(read_nonblocking(fd.as_fd(), &mut buf).unwrap(), None, "read resets the counter");
    }
}
