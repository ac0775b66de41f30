//! Small fd-relative filesystem helpers that never follow symlinks (shared by apply, the
//! store and diff).

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What [`clear_slot`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Nothing is there (any more); a non-directory was removed.
    Free,
    /// A directory was removed (recursively).
    FreedDir,
    /// A directory is there and was kept.
    KeptDir,
}

/// Makes room for a new entry `name` in `dir`: removes what is there, except a directory
/// when `keep_dir` (Docker's rule: an entry replaces what exists, unless both are dirs).
pub(crate) fn clear_slot(dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool) -> io::Result<Slot> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Slot::Free),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        if keep_dir {
            return Ok(Slot::KeptDir);
        }
        remove_all_at(dir, name)?;
        return Ok(Slot::FreedDir);
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(Slot::Free),
        Err(e) => Err(e.into()),
    }
}

/// Opens `name` in `dir` as a readable directory, never through a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in a directory (without `.` and `..`), read through a fresh fd.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(CString, FileType)>> {
    let fd = rustix::fs::openat(dir, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for ent in Dir::new(fd)? {
        let ent = ent?;
        let name = ent.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push((name.to_owned(), ent.file_type()));
    }
    Ok(names)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it; never follows
/// symlinks. Returns whether something was removed. Directories without write permission
/// are made writable first (for unprivileged callers).
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open_dir_at(dir, name)?
        }
        Err(e) => return Err(e),
    };
    clear_dir(sub.as_fd())?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Removes everything inside `dir` (an fd open for reading), never following symlinks.
pub(crate) fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    let names = match list_dir(dir) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700))?;
            list_dir(dir)?
        }
        Err(e) => return Err(e),
    };
    for (name, _) in names {
        match remove_all_at(dir, name.to_bytes()) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700))?;
                remove_all_at(dir, name.to_bytes())?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// For an opaque directory in a plain extraction: removes everything below `dir` whose
/// path (`prefix/...`) is not in `keep`, descending into kept directories.
pub(crate) fn clear_except(dir: BorrowedFd<'_>, prefix: &mut Vec<u8>, keep: &HashSet<Vec<u8>>) -> io::Result<()> {
    for (name, ftype) in list_dir(dir)? {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name.to_bytes());
        let r = if keep.contains(prefix.as_slice()) {
            if ftype == FileType::Directory {
                let sub = open_dir_at(dir, name.to_bytes())?;
                clear_except(sub.as_fd(), prefix, keep)
            } else {
                Ok(())
            }
        } else {
            remove_all_at(dir, name.to_bytes()).map(|_| ())
        };
        prefix.truncate(len);
        r?;
    }
    Ok(())
}

/// Removes a directory tree by path (the store's own dirs); fine if it is gone already.
pub(crate) fn remove_tree(path: &std::path::Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let pfd = match rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    use std::os::unix::ffi::OsStrExt;
    remove_all_at(pfd.as_fd(), name.as_bytes()).map(|_| ())
}
