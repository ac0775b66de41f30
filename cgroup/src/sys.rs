//! The few raw calls of this crate that are not about paths (signals, inotify, eventfd,
//! poll). Every path into cgroupfs is resolved in `at.rs`; the v2 device program's
//! `bpf(2)` calls live in `bpf.rs`.

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::{Error, Result};

/// Sends `sig` to `pid`, ignoring errors (the task may be gone already).
pub(crate) fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: integer-only syscall; the pid came from cgroup.procs of a cgroup we own.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// An inotify instance (non-blocking, close-on-exec) with one watch on `path` for `mask`
/// (e.g. `IN_MODIFY`, which cgroupfs raises when a `*.events` file changes).
pub(crate) fn inotify_watch(path: &Path, mask: u32) -> Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::io("inotify_add_watch", path, std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: flags-only syscall; a non-negative return is a new fd that we own.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(Error::io("inotify_init1", path, std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` was just returned by inotify_init1 and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `fd` is a live inotify fd and `c_path` is NUL-terminated and outlives the call.
    if unsafe { libc::inotify_add_watch(raw, c_path.as_ptr(), mask) } < 0 {
        return Err(Error::io("inotify_add_watch", path, std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// An eventfd with counter 0 (non-blocking, close-on-exec).
pub(crate) fn eventfd() -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: flags-only syscall; a non-negative return is a new fd that we own.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by eventfd and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// One `read(2)` on a non-blocking fd: `Ok(None)` when nothing is pending (`EAGAIN`).
pub(crate) fn read_nonblocking(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes and `fd` is open for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes (`None`: no limit). Returns whether it
/// became readable; an interrupted wait returns `false` early (callers loop on a deadline).
pub(crate) fn poll_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // Round up so a sub-millisecond remainder does not turn into a busy loop.
    let ms = timeout.map_or(-1, |t| t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int);
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINTR) { Ok(false) } else { Err(e) };
    }
    Ok(n > 0)
}

/// Clock ticks per second (`USER_HZ`), the unit of `cpuacct.stat`.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}
