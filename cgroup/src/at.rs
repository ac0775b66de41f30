//! Path resolution that cannot leave a cgroup hierarchy.
//!
//! Every directory and file this crate creates, writes or removes is reached from an fd of
//! the hierarchy's mount point — checked with `fstatfs` to be `cgroup` (v1) or `cgroup2` —
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: no `..` above the root, no symlink, no crossing into another mount
//! (a bind mount placed over a cgroup directory or file is refused, not written through).
//! Directories are then created and removed with `mkdirat` / `unlinkat` relative to the fd
//! of their parent, and files are opened relative to the fd of their cgroup directory.
//!
//! On kernels without `openat2` (before 5.6; or where a seccomp filter refuses it with
//! `EPERM`) the same rules are kept by a walk: one `openat(O_NOFOLLOW)` per component
//! (components are validated to be plain names beforehand) and a check that each opened fd
//! is on the root's mount (`mnt_id` from `/proc/self/fdinfo`, or the device number where
//! that is unreadable).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Joined, Result, SysContext};
use crate::hierarchy::Version;

/// `CGROUP_SUPER_MAGIC` (linux/magic.h): a v1 hierarchy.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// `CGROUP2_SUPER_MAGIC`: the unified hierarchy.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens a hierarchy's mount point and checks that it is a cgroup file system of `version`.
pub(crate) fn open_root(mount_point: &Path, version: Version) -> Result<OwnedFd> {
    let fd = rustix::fs::open(mount_point, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .sys_at("openat2", mount_point)?;
    let st = rustix::fs::fstatfs(&fd).sys_at("fstatfs", mount_point)?;
    let want = match version {
        Version::V1 => CGROUP_SUPER_MAGIC,
        Version::V2 => CGROUP2_SUPER_MAGIC,
    };
    #[allow(clippy::unnecessary_cast, reason = "f_type's width differs between targets")]
    let found = st.f_type as i64;
    if found != want {
        return Err(Error::Unsafe {
            path: mount_point.to_owned(),
            reason: "the hierarchy's mount point is not a cgroup file system of that version",
            source: io::Error::from_raw_os_error(libc::EXDEV),
        });
    }
    Ok(fd)
}

/// Turns a resolution failure into an error: a symlink (`ELOOP`) or a mount crossing /
/// escape (`EXDEV`) is [`Error::Unsafe`]; anything else is [`Error::Sys`] with `call`
/// (used through [`SysContext::beneath`]).
pub(crate) fn err(call: &'static str, path: PathBuf, e: io::Error) -> Error {
    let reason = match e.raw_os_error() {
        Some(libc::ELOOP) => "a symlink is on the way (cgroup paths are resolved without following symlinks)",
        Some(libc::EXDEV) => {
            "the path leaves the cgroup hierarchy's mount (a bind mount or `..`; cgroup paths are \
             resolved beneath the hierarchy root without crossing mounts)"
        }
        _ => return Error::Sys { call, path: Some(path), source: e },
    };
    Error::Unsafe { path, reason, source: e }
}

/// Opens `rel` (plain names only; empty = `dir` itself) below `dir` for `flags`, beneath
/// it, without symlinks and without leaving its mount.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel_c: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    // No O_NOFOLLOW: RESOLVE_NO_SYMLINKS refuses a final symlink too, with ELOOP (O_NOFOLLOW
    // with O_DIRECTORY would make that ENOTDIR).
    match rustix::fs::openat2(dir, rel_c, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
        Err(Errno::NOSYS | Errno::PERM) => walk_beneath(dir, rel, flags),
        other => other.map_err(io::Error::from),
    }
}

/// [`open_beneath`] for kernels without openat2: one `openat(O_NOFOLLOW)` per component,
/// each checked to be on `dir`'s mount. Errors as openat2's: `ELOOP` for a symlink,
/// `EXDEV` for `..` or a mount crossing.
fn walk_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let mount = mount_of(dir)?;
    let mut fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        let Component::Normal(name) = c else {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        };
        let last = comps.peek().is_none();
        let f = if last { flags } else { OFlags::RDONLY | OFlags::DIRECTORY };
        fd = match rustix::fs::openat(&fd, name, f | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(next) => next,
            // A symlink is refused as openat2 refuses it.
            Err(Errno::NOTDIR | Errno::LOOP)
                if rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink()) =>
            {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            Err(e) => return Err(e.into()),
        };
        if mount_of(fd.as_fd())? != mount {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
    }
    Ok(fd)
}

/// The mount of an fd: `mnt_id` from `/proc/self/fdinfo` (Linux 3.15+), else its device.
fn mount_of(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut text = String::new();
    let fdinfo = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    if std::fs::File::open(fdinfo).and_then(|mut f| f.read_to_string(&mut text)).is_ok()
        && let Some(id) = text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok())
    {
        return Ok((0, id));
    }
    let st = rustix::fs::fstat(fd)?;
    #[allow(clippy::unnecessary_cast, reason = "st_dev's width differs between targets")]
    Ok((1, st.st_dev as u64))
}

/// Opens the directory `rel` below `dir` (see the module docs).
pub(crate) fn open_dir(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(dir, rel, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// Creates the directory `name` (one component) in `dir`.
pub(crate) fn mkdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::mkdirat(dir, name, Mode::from_bits_truncate(0o755)).map_err(io::Error::from)
}

/// Removes the (empty) directory `name` (one component) from `dir`.
pub(crate) fn rmdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io::Error::from)
}

/// The identity (device, inode) of an open file.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    #[allow(clippy::unnecessary_cast, reason = "st_dev's and st_ino's widths differ between targets")]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// The identity of `name` (one component) in `dir`, not following a symlink. A mount
/// point shows the mounted root's identity, so a mount placed there does not match.
pub(crate) fn identity_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    #[allow(clippy::unnecessary_cast, reason = "st_dev's and st_ino's widths differ between targets")]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// A test's injected failure of step `name` (with the `failpoints` feature: see
/// `nook_ns::failpoint`); without it always `Ok`, inlined away.
#[inline(always)]
pub(crate) fn failpoint(name: &'static str, detail: impl std::fmt::Display) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        nook_ns::failpoint::check(name, detail)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (name, detail);
        Ok(())
    }
}

/// Writes `value` to the cgroup file `file` of `dir` in a single `write(2)` (cgroupfs
/// parses each write separately). `dir_path` is for the error, which names the file and
/// the value.
pub(crate) fn write(dir: BorrowedFd<'_>, dir_path: &Path, file: &str, value: &str) -> Result<()> {
    let werr = |e: io::Error| match e.raw_os_error() {
        Some(libc::ELOOP | libc::EXDEV) => err("openat2", dir_path.join(file), e),
        _ => Error::Write { path: dir_path.join(file), value: value.to_owned(), source: e },
    };
    crate::at::failpoint("cgroup.write", format_args!("{}/{file}", dir_path.display())).map_err(werr)?;
    let fd = open_beneath(dir, Path::new(file), OFlags::WRONLY).map_err(werr)?;
    let n = rustix::io::write(&fd, value.as_bytes()).map_err(|e| werr(e.into()))?;
    if n != value.len() {
        return Err(werr(io::Error::from_raw_os_error(libc::EIO)));
    }
    Ok(())
}

/// Opens the cgroup file `file` of `dir` for writing (close-on-exec), beneath it.
pub(crate) fn open_write(dir: BorrowedFd<'_>, dir_path: &Path, file: &str) -> Result<OwnedFd> {
    crate::at::failpoint("cgroup.open", format_args!("{}/{file}", dir_path.display()))
        .and_then(|()| open_beneath(dir, Path::new(file), OFlags::WRONLY))
        .beneath("openat2", Joined(dir_path, file))
}

/// [`write`] of several values to one file, in order, each with its own `write(2)` (the
/// kernel takes one value — a device rule — per write) on one open file.
pub(crate) fn write_each(dir: BorrowedFd<'_>, dir_path: &Path, file: &str, values: &[&str]) -> Result<()> {
    let werr = |e: io::Error, value: &str| match e.raw_os_error() {
        Some(libc::ELOOP | libc::EXDEV) => err("openat2", dir_path.join(file), e),
        _ => Error::Write { path: dir_path.join(file), value: value.to_owned(), source: e },
    };
    let Some(first) = values.first() else { return Ok(()) };
    crate::at::failpoint("cgroup.write", format_args!("{}/{file}", dir_path.display())).map_err(|e| werr(e, first))?;
    let fd = open_beneath(dir, Path::new(file), OFlags::WRONLY).map_err(|e| werr(e, first))?;
    for value in values {
        let n = rustix::io::write(&fd, value.as_bytes()).map_err(|e| werr(e.into(), value))?;
        if n != value.len() {
            return Err(werr(io::Error::from_raw_os_error(libc::EIO), value));
        }
    }
    Ok(())
}

/// Reads the cgroup file `file` of `dir`.
pub(crate) fn read(dir: BorrowedFd<'_>, dir_path: &Path, file: &str) -> Result<String> {
    read_io(dir, file).beneath("read", Joined(dir_path, file))
}

/// [`read`] with the bare OS error (`ENOENT` for a file the cgroup does not have).
pub(crate) fn read_io(dir: BorrowedFd<'_>, file: &str) -> io::Result<String> {
    let mut s = String::new();
    std::fs::File::from(open_file(dir, file)?).read_to_string(&mut s)?;
    Ok(s)
}

/// Reads an open cgroup (kernfs) file whole from offset 0 with `pread`: the kernel renders
/// it again, so a descriptor kept open reads the current value each time.
pub(crate) fn read_from_start(file: &std::fs::File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Opens the cgroup file `file` of `dir` read-only.
pub(crate) fn open_file(dir: BorrowedFd<'_>, file: &str) -> io::Result<OwnedFd> {
    open_beneath(dir, Path::new(file), OFlags::RDONLY)
}

/// Whether `dir` has the file `file` (a plain name).
pub(crate) fn exists(dir: BorrowedFd<'_>, file: &str) -> bool {
    rustix::fs::statat(dir, file, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// The names of the directories in `dir` (child cgroups).
pub(crate) fn subdirs(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." || e.file_type() != rustix::fs::FileType::Directory {
            continue;
        }
        out.push(OsStr::from_bytes(name).to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both resolutions (openat2, and the walk of older kernels) refuse the same things.
    #[test]
    fn beneath_refuses_symlinks_dotdot_and_mount_crossings() {
        let t = nook_testutil::TempDir::new("at").unwrap();
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::create_dir_all(t.join("m")).unwrap();
        std::fs::write(t.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("b", t.join("a/l")).unwrap();
        std::os::unix::fs::symlink("/", t.join("a/abs")).unwrap();
        let root = rustix::fs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        type Open = fn(BorrowedFd<'_>, &Path, OFlags) -> io::Result<OwnedFd>;
        let ways: [(&str, Open); 2] = [("openat2", open_beneath), ("walk", walk_beneath)];
        for (way, open) in ways {
            let dir = |rel: &str| open(root.as_fd(), Path::new(rel), OFlags::RDONLY | OFlags::DIRECTORY);
            let errno = |r: io::Result<OwnedFd>| r.map(drop).map_err(|e| e.raw_os_error());
            assert!(dir("a/b").is_ok(), "{way}");
            assert!(open(root.as_fd(), Path::new("a/b/f"), OFlags::RDONLY).is_ok(), "{way}");
            assert_eq!(errno(dir("a/l")), Err(Some(libc::ELOOP)), "{way}: a symlink");
            assert_eq!(errno(dir("a/l/f")), Err(Some(libc::ELOOP)), "{way}: a symlink on the way");
            assert_eq!(errno(dir("a/abs")), Err(Some(libc::ELOOP)), "{way}: an absolute symlink");
            assert_eq!(errno(dir("a/../..")), Err(Some(libc::EXDEV)), "{way}: `..` out");
            assert_eq!(errno(dir("/etc")), Err(Some(libc::EXDEV)), "{way}: absolute");
            assert_eq!(errno(dir("a/nope")), Err(Some(libc::ENOENT)), "{way}");
        }
        // A mount below the root (needs root and a private mount namespace).
        if !nook_testutil::is_root() {
            return nook_testutil::skip("beneath_refuses_symlinks_dotdot_and_mount_crossings (mounts)", "needs root");
        }
        nook_testutil::on_private_mount_ns(|| {
            rustix::mount::mount_bind(t.join("a"), t.join("m")).expect("bind a on m");
            let root = rustix::fs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            for (way, open) in ways {
                let r = open(root.as_fd(), Path::new("m/b"), OFlags::RDONLY | OFlags::DIRECTORY);
                assert_eq!(r.map(drop).map_err(|e| e.raw_os_error()), Err(Some(libc::EXDEV)), "{way}: a bind mount");
                let r = open(root.as_fd(), Path::new("m"), OFlags::RDONLY | OFlags::DIRECTORY);
                assert_eq!(
                    r.map(drop).map_err(|e| e.raw_os_error()),
                    Err(Some(libc::EXDEV)),
                    "{way}: the mount itself"
                );
            }
            nook_testutil::detach_mounts_below(t.path());
        });
    }
}
