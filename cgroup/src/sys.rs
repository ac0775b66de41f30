//! The few raw calls of this crate (file writes with one `write(2)`, signals). The v2
//! device program's `bpf(2)` calls live in `bpf.rs`.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `value` to a cgroup file in a single `write(2)` (cgroupfs parses each write
/// separately). The error names the file and the value.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::Write { path: path.to_owned(), value: value.to_owned(), source: e })?;
    f.write_all(value.as_bytes()).map_err(|e| Error::Write { path: path.to_owned(), value: value.to_owned(), source: e })
}

/// Reads a cgroup file.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    let mut s = String::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| Error::io("read", path, e))?;
    Ok(s)
}

/// Opens a directory `O_RDONLY | O_DIRECTORY | O_CLOEXEC`.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open", path, e))
}

/// Sends `sig` to `pid`, ignoring errors (the task may be gone already).
pub(crate) fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: integer-only syscall; the pid came from cgroup.procs of a cgroup we own.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}
