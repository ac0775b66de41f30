//! Removal and replacement helpers that never follow symlinks (apply, the store and diff use
//! them). Names are bytes (what `tar` and `getdents` give); errors are `Errno`s like the rest
//! of [`super`].

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::{Errno, Result};

use super::open_dir_at;

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
pub(crate) fn clear_slot(dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool) -> Result<Slot> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Slot::Free),
        Err(e) => return Err(e),
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
        Err(e) => Err(e),
    }
}

/// Sets the mode of `name` in `dir` without following a symlink that someone put there since
/// it was created: the node is pinned with `O_PATH | O_NOFOLLOW`, checked not to be a
/// symlink (`ELOOP` if it is), and changed through its `/proc/thread-self/fd` link, which
/// names that very inode. (`fchmodat` has no working no-follow flag before Linux 6.6, and
/// `fchmod` refuses `O_PATH` fds.)
pub(crate) fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<()> {
    let fd = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    let link = format!("/proc/thread-self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmodat(rustix::fs::CWD, link.as_str(), Mode::from_raw_mode(mode), AtFlags::empty())
}

/// The names in a directory (without `.` and `..`), read through a fresh fd (`dir` itself is
/// not advanced), in directory order, with `d_type` as reported (may be `Unknown`).
pub(crate) fn list_dir_unsorted(dir: BorrowedFd<'_>) -> Result<Vec<(CString, FileType)>> {
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
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open_dir_at(dir, name)?
        }
        Err(e) => return Err(e),
    };
    clear_dir(sub.as_fd())?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes everything inside `dir` (an fd open for reading), never following symlinks.
///
/// Iterative, holding one directory fd at a time: a tree a container made in its upper can be
/// far deeper than a recursion could go (a stack overflow aborts the whole program) or than
/// there are fds for. Going back up is `openat(cur, "..")`, checked against the device and
/// inode recorded on the way down (a directory moved meanwhile is `ESTALE`, never a walk
/// outside the tree).
pub(crate) fn clear_dir(dir: BorrowedFd<'_>) -> Result<()> {
    struct Level {
        /// This dir's name in its parent (unused for the top).
        name: CString,
        id: (u64, u64),
        names: std::vec::IntoIter<(CString, FileType)>,
    }
    let id = |fd: BorrowedFd<'_>| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    let list = |fd: BorrowedFd<'_>| -> Result<std::vec::IntoIter<(CString, FileType)>> {
        match list_dir_unsorted(fd) {
            Ok(n) => Ok(n.into_iter()),
            Err(Errno::ACCESS) => {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(0o700))?;
                Ok(list_dir_unsorted(fd)?.into_iter())
            }
            Err(e) => Err(e),
        }
    };
    let mut cur: OwnedFd =
        rustix::fs::openat(dir, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut stack = vec![Level { name: CString::default(), id: id(cur.as_fd())?, names: list(cur.as_fd())? }];
    loop {
        let top = stack.last_mut().expect("the top level stays");
        match top.names.next() {
            Some((name, _)) => {
                let n = name.to_bytes();
                let r = match rustix::fs::unlinkat(&cur, n, AtFlags::empty()) {
                    Err(Errno::ACCESS) => {
                        rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o700))?;
                        rustix::fs::unlinkat(&cur, n, AtFlags::empty())
                    }
                    r => r,
                };
                match r {
                    Ok(()) | Err(Errno::NOENT) => continue,
                    Err(Errno::ISDIR) | Err(Errno::PERM) => {}
                    Err(e) => return Err(e),
                }
                // A directory: go down into it.
                let sub = match open_dir_at(cur.as_fd(), n) {
                    Ok(fd) => fd,
                    Err(Errno::ACCESS) => {
                        rustix::fs::chmodat(&cur, n, Mode::from_raw_mode(0o700), AtFlags::empty())?;
                        open_dir_at(cur.as_fd(), n)?
                    }
                    Err(e) => return Err(e),
                };
                let level = Level { name, id: id(sub.as_fd())?, names: list(sub.as_fd())? };
                stack.push(level);
                cur = sub;
            }
            None if stack.len() == 1 => return Ok(()),
            None => {
                // `cur` is empty now: back up to its parent and remove it there.
                let done = stack.pop().expect("a level");
                let parent = open_dir_at(cur.as_fd(), c"..")?;
                if id(parent.as_fd())? != stack.last().expect("a parent level").id {
                    // A directory was moved during the removal: stop rather than walk outside.
                    return Err(Errno::STALE);
                }
                cur = parent;
                let n = done.name.to_bytes();
                let r = match rustix::fs::unlinkat(&cur, n, AtFlags::REMOVEDIR) {
                    Err(Errno::ACCESS) => {
                        rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o700))?;
                        rustix::fs::unlinkat(&cur, n, AtFlags::REMOVEDIR)
                    }
                    r => r,
                };
                match r {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// For an opaque directory in a plain extraction: removes everything below `dir` whose
/// path (`prefix/...`) is not in `keep`, descending into kept directories.
pub(crate) fn clear_except(dir: BorrowedFd<'_>, prefix: &mut Vec<u8>, keep: &HashSet<Vec<u8>>) -> Result<()> {
    for (name, ftype) in list_dir_unsorted(dir)? {
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
pub(crate) fn remove_tree(path: &std::path::Path) -> Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(Errno::INVAL),
    };
    let pfd = match rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    use std::os::unix::ffi::OsStrExt;
    remove_all_at(pfd.as_fd(), name.as_bytes()).map(|_| ())
}

#[cfg(test)]
mod chmod_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn chmod_nofollow_changes_the_node_and_refuses_a_symlink() {
        let tmp = nook_testutil::TempDir::new("chmod").unwrap();
        let outside = tmp.join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir(tmp.join("layer")).unwrap();
        std::os::unix::fs::symlink(&outside, tmp.join("layer/swapped")).unwrap();
        std::fs::write(tmp.join("layer/file"), b"y").unwrap();
        let dir = open_dir_at(rustix::fs::CWD, tmp.join("layer").as_os_str().as_encoded_bytes()).unwrap();

        let err = chmod_nofollow(dir.as_fd(), b"swapped", 0o4777).unwrap_err();
        assert_eq!(err, Errno::LOOP, "{err}");
        let mode = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the symlink's target was not touched");

        chmod_nofollow(dir.as_fd(), b"file", 0o640).unwrap();
        let mode = std::fs::metadata(tmp.join("layer/file")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }
}
