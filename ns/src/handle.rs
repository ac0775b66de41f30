//! [`NsFd`]: an open namespace of a known kind, and [`NsId`]: a namespace's identity.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::error::{Error, Result, SysContext};
use crate::mount::path_cstring;
use crate::namespace::Namespace;
use crate::sys::{self, consts};

/// A namespace's identity: the device and inode of its nsfs file. Two processes are in
/// the same namespace exactly when these are equal (`/proc/PID/ns/net -> net:[inode]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct NsId {
    /// `st_dev` of the nsfs file.
    pub dev: u64,
    /// `st_ino` of the nsfs file (the number in `net:[...]`).
    pub ino: u64,
}

impl NsId {
    /// The identity with this device and inode (e.g. from `std::fs::metadata` of a
    /// `/proc/PID/ns/*` file).
    pub const fn new(dev: u64, ino: u64) -> Self {
        NsId { dev, ino }
    }
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.ino)
    }
}

/// An open file descriptor to a namespace of a known kind.
///
/// Holding it keeps the namespace alive (even after every process in it has exited).
#[derive(Debug)]
pub struct NsFd {
    fd: OwnedFd,
    kind: Namespace,
}

impl NsFd {
    /// Opens `path` (e.g. `/proc/PID/ns/net`, `/run/netns/NAME`) and checks with
    /// `NS_GET_NSTYPE` that it is a namespace of kind `kind`.
    pub fn open(path: impl AsRef<Path>, kind: Namespace) -> Result<NsFd> {
        let path = path.as_ref();
        let c = path_cstring("namespace path", path)?;
        let fd = sys::open(&c, OFlags::RDONLY).sys_at("open", path)?;
        let actual = nstype(fd.as_fd()).sys_at("ioctl(NS_GET_NSTYPE)", path)?;
        if actual != kind {
            return Err(Error::WrongKind { path: path.to_owned(), expected: kind, actual });
        }
        Ok(NsFd { fd, kind })
    }

    /// The namespace of kind `kind` of process `pid`.
    pub fn of_pid(pid: u32, kind: Namespace) -> Result<NsFd> {
        NsFd::open(format!("/proc/{pid}/ns/{}", kind.proc_name()), kind)
    }

    /// The calling thread's namespace of kind `kind`.
    pub fn current(kind: Namespace) -> Result<NsFd> {
        NsFd::open(format!("/proc/thread-self/ns/{}", kind.proc_name()), kind)
    }

    /// Wraps an fd, asking the kernel for its kind.
    pub fn from_fd(fd: OwnedFd) -> Result<NsFd> {
        let kind = nstype(fd.as_fd()).sys("ioctl(NS_GET_NSTYPE)")?;
        Ok(NsFd { fd, kind })
    }

    /// The kind of this namespace.
    pub fn kind(&self) -> Namespace {
        self.kind
    }

    /// Its identity.
    pub fn id(&self) -> Result<NsId> {
        let (dev, ino) = sys::fstat_id(self.fd.as_fd()).sys("fstat")?;
        Ok(NsId { dev, ino })
    }

    /// The user namespace that owns this namespace (`NS_GET_USERNS`).
    pub fn owner(&self) -> Result<NsFd> {
        let fd = sys::ns_ioctl_fd(self.fd.as_fd(), consts::NS_GET_USERNS).sys("ioctl(NS_GET_USERNS)")?;
        Ok(NsFd { fd, kind: Namespace::User })
    }

    /// The parent of a pid or user namespace (`NS_GET_PARENT`); `EPERM` at the top of the
    /// caller's view, `EINVAL` for other kinds.
    pub fn parent(&self) -> Result<NsFd> {
        let fd = sys::ns_ioctl_fd(self.fd.as_fd(), consts::NS_GET_PARENT).sys("ioctl(NS_GET_PARENT)")?;
        Ok(NsFd { fd, kind: self.kind })
    }

    /// For a user namespace: the uid of its creator, in the caller's user namespace
    /// (`NS_GET_OWNER_UID`).
    pub fn owner_uid(&self) -> Result<u32> {
        sys::ns_owner_uid(self.fd.as_fd()).sys("ioctl(NS_GET_OWNER_UID)")
    }

    /// Duplicates the handle.
    pub fn try_clone(&self) -> Result<NsFd> {
        Ok(NsFd { fd: self.fd.try_clone().sys("dup")?, kind: self.kind })
    }

    /// Moves the *calling thread* into this namespace (`setns`). Prefer [`crate::run_in`]
    /// or [`crate::NsGuard`], which come back.
    pub fn enter(&self) -> Result<()> {
        rustix::thread::move_into_link_name_space(self.fd.as_fd(), Some(self.kind.link_type())).sys("setns")
    }

    /// A path that names this namespace while the fd is open (`/proc/self/fd/N`).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

impl AsFd for NsFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<NsFd> for OwnedFd {
    fn from(ns: NsFd) -> OwnedFd {
        ns.fd
    }
}

fn nstype(fd: BorrowedFd<'_>) -> std::io::Result<Namespace> {
    let t = sys::ns_ioctl_int(fd, consts::NS_GET_NSTYPE)?;
    Namespace::from_clone_flag(t as u32 as u64).ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The identity of `pid`'s namespace of kind `kind` (a `stat` of `/proc/PID/ns/KIND`).
pub fn ns_id(pid: u32, kind: Namespace) -> Result<NsId> {
    let path = format!("/proc/{pid}/ns/{}", kind.proc_name());
    let c = CString::new(path.clone()).expect("no NUL in a formatted path");
    let (dev, ino) = sys::stat_id(&c).sys_at("stat", path)?;
    Ok(NsId { dev, ino })
}
