//! File-descriptor based helpers: the one home for the crate's fd and xattr plumbing (the
//! whiteout, view, vfs, apply, diff and store modules use them).
//!
//! Two directory listings with different contracts, named for them:
//! [`list_dir_sorted`] reads through the given fd, resolves `DT_UNKNOWN` with `lstat` and
//! sorts (for walks whose output order matters); [`list_dir_unsorted`] reads through a fresh
//! fd (the caller's fd is not advanced), in directory order, with `d_type` as the file system
//! reports it (for removal and tar writing, which sort or do not care). Every helper returns
//! a bare `Errno` (`rustix::io::Result`): callers match on it, and add the call and the path
//! with [`SysContext`](crate::error::SysContext). The removal helpers (`tree`) take byte names
//! (as `tar` and `getdents` give them); the others take `OsStr` names. xattrs are read and
//! written only here ([`read_xattrs`], [`get_xattr`], [`set_xattr`], [`remove_xattr`]; the
//! view, the copy driver and diff use them).
//!
//! Nothing here follows a symlink inside a layer: names are resolved one component at a time
//! relative to an open directory (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`), or with `openat2`
//! and `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`. Only a layer's root path (given by the caller)
//! is opened the ordinary way.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::{Errno, Result};

mod tree;

pub(crate) use tree::{Slot, chmod_nofollow, clear_except, clear_slot, list_dir_unsorted, remove_all_at, remove_tree};

/// Opens a layer (or target) root directory. The caller's path may itself be a symlink.
pub(crate) fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

/// Opens the directory `name` in `dir` as a readable directory, never through a symlink.
pub(crate) fn open_dir_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `rel` (relative, normal components only) below `root`, refusing every
/// symlink on the way (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`; a walk with
/// `O_NOFOLLOW` per component on kernels without `openat2`, or where a seccomp filter refuses
/// it with `EPERM`).
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
    let rel_c: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    match rustix::fs::openat2(
        root,
        rel_c,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS | Errno::PERM) => {}
        other => return other,
    }
    let mut fd = rustix::fs::openat(root, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for c in rel.components() {
        match c {
            Component::Normal(name) => fd = open_dir_at(fd.as_fd(), name)?,
            Component::CurDir => {}
            _ => return Err(Errno::INVAL),
        }
    }
    Ok(fd)
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file type of a stat.
pub(crate) fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The names in `dir` (without `.` and `..`), sorted, with their `d_type` (resolved with
/// `lstat` where the file system reports `DT_UNKNOWN`).
pub(crate) fn list_dir_sorted(dir: BorrowedFd<'_>) -> Result<Vec<(OsString, FileType)>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        let mut ft = e.file_type();
        if ft == FileType::Unknown {
            match lstat_at(dir, &name)? {
                Some(st) => ft = kind_of(&st),
                None => continue,
            }
        }
        out.push((name, ft));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The `/proc/thread-self/fd/DIR/NAME` path of an entry (the calling thread's fd table: a
/// thread that unshared its fds has its own): the path-based `l*xattr` calls resolve the
/// directory through its descriptor and do not follow `NAME` if it is a symlink.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/thread-self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

fn absent(e: Errno) -> bool {
    e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// The first byte of xattr `key` on `fd` when the value is exactly one byte long (how overlay
/// reads `overlay.opaque`); `None` when absent, empty or longer.
pub(crate) fn xattr_byte(fd: BorrowedFd<'_>, key: &str) -> Result<Option<u8>> {
    let mut buf = [0u8; 1];
    match rustix::fs::fgetxattr(fd, key, &mut buf[..]) {
        Ok(1) => Ok(Some(buf[0])),
        Ok(_) => Ok(None),
        Err(Errno::RANGE) => Ok(None),
        Err(e) if absent(e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the entry `name` in `dir` (not followed) has the xattr `key`.
pub(crate) fn has_xattr_at(dir: BorrowedFd<'_>, name: &OsStr, key: &str) -> Result<bool> {
    match rustix::fs::lgetxattr_query(proc_path(dir, name), key) {
        Ok(_) => Ok(true),
        Err(e) if absent(e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Where an xattr call goes: an open file, or an entry named relative to a directory.
#[derive(Clone, Copy)]
pub(crate) enum XTarget<'a> {
    /// An open (non-`O_PATH`) file or directory.
    Fd(BorrowedFd<'a>),
    /// `name` in the directory, not followed.
    At(BorrowedFd<'a>, &'a OsStr),
}

fn split_names(raw: &[u8]) -> Vec<OsString> {
    raw.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsString::from_vec(n.to_vec())).collect()
}

/// Calls `call` with a buffer that grows until the result fits: first a 256-byte stack
/// buffer (small lists and values take one call and, when empty, no allocation), then the size
/// `size` reports (again after an `ERANGE`: the value grew between the calls). `None` when the
/// xattr (or xattr support) is absent.
fn read_grown(call: impl Fn(&mut [u8]) -> Result<usize>, size: impl Fn() -> Result<usize>) -> Result<Option<Vec<u8>>> {
    // First into a stack buffer: an entry without xattrs (the common case) costs no allocation.
    let mut small = [0u8; 256];
    match call(&mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(Errno::RANGE) => {}
        Err(e) if absent(e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = Vec::new();
    for _ in 0..8 {
        let want = match size() {
            Ok(n) => n,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e),
        };
        buf.resize(want.max(buf.len() * 2).max(small.len() * 2), 0);
        match call(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => {}
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// All xattrs (name, value) of a target, in the order the file system lists them (an xattr
/// removed between the listing and the read is left out).
pub(crate) fn read_xattrs(t: XTarget<'_>) -> Result<Vec<(OsString, Vec<u8>)>> {
    let names = match t {
        XTarget::Fd(fd) => read_grown(|b| rustix::fs::flistxattr(fd, b), || rustix::fs::flistxattr_query(fd))?,
        XTarget::At(d, n) => {
            let p = proc_path(d, n);
            read_grown(|b| rustix::fs::llistxattr(&p, b), || rustix::fs::llistxattr_query(&p))?
        }
    };
    let names = match names {
        Some(n) if !n.is_empty() => split_names(&n),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if let Some(v) = get_xattr(t, &name)? {
            out.push((name, v));
        }
    }
    Ok(out)
}

/// One xattr's value (`None` when absent).
pub(crate) fn get_xattr(t: XTarget<'_>, key: &OsStr) -> Result<Option<Vec<u8>>> {
    match t {
        XTarget::Fd(fd) => read_grown(|b| rustix::fs::fgetxattr(fd, key, b), || rustix::fs::fgetxattr_query(fd, key)),
        XTarget::At(d, n) => {
            let p = proc_path(d, n);
            read_grown(|b| rustix::fs::lgetxattr(&p, key, b), || rustix::fs::lgetxattr_query(&p, key))
        }
    }
}

/// Sets one xattr.
pub(crate) fn set_xattr(t: XTarget<'_>, key: &OsStr, value: &[u8]) -> Result<()> {
    let flags = rustix::fs::XattrFlags::empty();
    match t {
        XTarget::Fd(fd) => rustix::fs::fsetxattr(fd, key, value, flags),
        XTarget::At(d, n) => rustix::fs::lsetxattr(proc_path(d, n), key, value, flags),
    }
}

/// Removes one xattr; absent is fine.
pub(crate) fn remove_xattr(t: XTarget<'_>, key: &str) -> Result<()> {
    let r = match t {
        XTarget::Fd(fd) => rustix::fs::fremovexattr(fd, key),
        XTarget::At(d, n) => rustix::fs::lremovexattr(proc_path(d, n), key),
    };
    match r {
        Err(e) if absent(e) => Ok(()),
        other => other,
    }
}

/// Whether a name is `.`, `..`, empty or has a `/` (not a single path component).
pub(crate) fn bad_component(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists and values longer than the first 256-byte buffer are read whole, through an fd and
    /// by name; an entry without xattrs reads as none.
    #[test]
    fn xattrs_longer_than_the_first_buffer_are_read_whole() {
        nook_testutil::require_root!();
        let tmp = nook_testutil::TempDir::new("xattr").unwrap();
        std::fs::write(tmp.join("f"), b"").unwrap();
        std::fs::write(tmp.join("plain"), b"").unwrap();
        // A name list of ~370 bytes, and one value of 1500 (an ext4 inode's xattrs share one
        // block).
        let names: Vec<String> = (0..8).map(|i| format!("trusted.nk-a-rather-long-attribute-name-{i:02}")).collect();
        let long_value = vec![b'v'; 1500];
        for (i, n) in names.iter().enumerate() {
            let v: &[u8] = if i == 0 { &long_value } else { b"short" };
            rustix::fs::setxattr(tmp.join("f"), n.as_str(), v, rustix::fs::XattrFlags::empty()).unwrap();
        }
        let dir = open_root(tmp.path()).unwrap();
        let file = rustix::fs::openat(&dir, "f", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        for t in [XTarget::Fd(file.as_fd()), XTarget::At(dir.as_fd(), OsStr::new("f"))] {
            let mut got = read_xattrs(t).unwrap();
            got.sort();
            let want: Vec<(OsString, Vec<u8>)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (OsString::from(n), if i == 0 { long_value.clone() } else { b"short".to_vec() }))
                .collect();
            assert_eq!(got, want);
            assert_eq!(get_xattr(t, OsStr::new(&names[0])).unwrap(), Some(long_value.clone()));
            assert_eq!(get_xattr(t, OsStr::new("trusted.nk-absent")).unwrap(), None);
        }
        assert!(read_xattrs(XTarget::At(dir.as_fd(), OsStr::new("plain"))).unwrap().is_empty());
    }
}
