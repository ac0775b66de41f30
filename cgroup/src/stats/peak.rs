//! [`PeakMeter`]: the memory peak of one stretch of time (a run of a reused cgroup), not
//! of the cgroup's whole life.
//!
//! v1: `memory.max_usage_in_bytes` is reset by writing `0` to it (it then restarts from the
//! current use), and read back from the same file. v2: `memory.peak` (Linux 5.19) takes a
//! write since Linux 6.12, which resets the peak *for the writing file descriptor only*:
//! the meter keeps that descriptor and reads through it, so other readers (and other
//! meters) are undisturbed. Older v2 kernels have no reset: no meter then.

use std::io::{self, Read, Seek};
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};

use crate::cgroup::Cgroup;
use crate::controller::Controller;
use crate::error::{Error, Result, SysContext};
use crate::hierarchy::Version;

/// The memory peak since [`Cgroup::memory_peak_meter`] made it (see the module docs).
#[derive(Debug)]
pub struct PeakMeter {
    file: std::fs::File,
    path: PathBuf,
}

impl PeakMeter {
    /// The highest memory use of the cgroup (bytes) since the meter was made.
    pub fn read(&mut self) -> Result<u64> {
        let mut s = String::new();
        self.file.rewind().sys_at("lseek", &self.path)?;
        self.file.read_to_string(&mut s).sys_at("read", &self.path)?;
        s.trim().parse().map_err(|_| Error::Parse { path: self.path.clone(), detail: format!("not a number: {s:?}") })
    }
}

impl Cgroup {
    /// A meter of the memory peak from now on (see [`PeakMeter`]); `None` when the cgroup
    /// has no memory controller or the kernel cannot reset the peak (v2 before Linux 6.12).
    pub fn memory_peak_meter(&self) -> Result<Option<PeakMeter>> {
        let Some(dir) = self.entry_of(Controller::Memory) else { return Ok(None) };
        let (name, reset) = match dir.version {
            Version::V1 => ("memory.max_usage_in_bytes", "0"),
            Version::V2 => ("memory.peak", "reset"),
        };
        let path = dir.path.join(name);
        let fd = match rustix::fs::openat(dir.fd.as_fd(), name, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::Sys { call: "openat", path: Some(path), source: e.into() }),
        };
        match rustix::io::write(&fd, reset.as_bytes()) {
            Ok(_) => Ok(Some(PeakMeter { file: fd.into(), path })),
            // No reset on this kernel.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::ACCESS | rustix::io::Errno::PERM)
                if dir.version == Version::V2 =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::Write { path, value: reset.to_owned(), source: io::Error::from(e) }),
        }
    }
}
