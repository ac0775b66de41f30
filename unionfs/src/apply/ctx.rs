//! What is fixed for one apply: the caller's privileges and umask, the whiteout mode, and the
//! owner/mode/xattr rules that follow from them; [`Fail`], the internal error an entry ends in.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{Gid, Uid, XattrFlags};
use rustix::io::Errno;

use super::meta::Meta;
#[cfg(doc)]
use crate::Error;
use crate::{Limit, UnsafeEntry, WhiteoutFormat};

/// What the caller may do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Privileges {
    pub(super) chown: bool,
    /// `CAP_DAC_OVERRIDE`: can create inside directories without write permission.
    pub(super) dac: bool,
    /// `CAP_SYS_ADMIN`: can set `trusted.*` xattrs.
    pub(super) admin: bool,
}

impl Privileges {
    pub(super) fn current() -> Privileges {
        use rustix::thread::CapabilitySet as C;
        match rustix::thread::capabilities(None) {
            Ok(c) => Privileges {
                chown: c.effective.contains(C::CHOWN),
                dac: c.effective.contains(C::DAC_OVERRIDE),
                admin: c.effective.contains(C::SYS_ADMIN),
            },
            Err(_) => {
                let root = rustix::process::geteuid().is_root();
                Privileges { chown: root, dac: root, admin: root }
            }
        }
    }
}

/// The calling thread's umask, read from procfs (without changing it); `0o777` (so every
/// mode is set explicitly) when it cannot be read.
pub(super) fn current_umask() -> u32 {
    use procfs_core::FromRead;
    procfs_core::process::Status::from_file("/proc/thread-self/status")
        .ok()
        .and_then(|status| status.umask)
        .unwrap_or(0o777)
}

/// An internal failure, turned into an [`Error`] with the entry's context.
#[derive(Debug)]
pub(super) enum Fail {
    Unsafe(UnsafeEntry),
    Sys(&'static str, io::Error),
    Tar(io::Error),
    /// A limit and the value that went over it.
    Limit(Limit, u64),
}

pub(super) fn sys(op: &'static str) -> impl FnOnce(Errno) -> Fail {
    move |e| Fail::Sys(op, e.into())
}

pub(super) fn sys_io(op: &'static str) -> impl FnOnce(io::Error) -> Fail {
    move |e| Fail::Sys(op, e)
}

pub(super) fn bad_tar(msg: &str) -> Fail {
    Fail::Tar(io::Error::new(io::ErrorKind::InvalidData, msg.to_string()))
}

/// Settings fixed for one apply.
pub(super) struct Ctx {
    pub(super) whiteouts: Option<WhiteoutFormat>,
    pub(super) allow_devices: bool,
    pub(super) privs: Privileges,
    pub(super) euid: u32,
    pub(super) egid: u32,
    pub(super) umask: u32,
}

impl Ctx {
    /// Whether a new object needs an explicit chown.
    pub(super) fn needs_chown(&self, meta: &Meta, parent_setgid: bool) -> bool {
        self.privs.chown && (meta.uid != self.euid || meta.gid != self.egid || parent_setgid)
    }

    /// Whether a new non-directory created with `mode & 0o777` needs an explicit chmod.
    pub(super) fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || mode & self.umask != 0
    }

    pub(super) fn chown_args(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
    }

    /// Whether an xattr error may be ignored.
    pub(super) fn xattr_ignorable(&self, e: Errno) -> bool {
        e == Errno::OPNOTSUPP || (e == Errno::PERM && !self.privs.admin)
    }

    pub(super) fn set_xattrs_fd(&self, fd: BorrowedFd<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Fail> {
        for (name, value) in xattrs {
            match rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if self.xattr_ignorable(e) => {}
                Err(e) => return Err(Fail::Sys("fsetxattr", e.into())),
            }
        }
        Ok(())
    }

    /// xattrs on something that cannot be opened for them (symlink, device, fifo): through
    /// `/proc/thread-self/fd/<dir>/<name>` without following the final symlink.
    pub(super) fn set_xattrs_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), Fail> {
        if xattrs.is_empty() {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        let mut p = format!("/proc/thread-self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        for (xname, value) in xattrs {
            match rustix::fs::lsetxattr(p.as_slice(), xname.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if self.xattr_ignorable(e) => {}
                Err(e) => return Err(Fail::Sys("lsetxattr", e.into())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_reads() {
        assert!(current_umask() <= 0o777);
    }
}
