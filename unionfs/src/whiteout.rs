//! Whiteouts in both formats and conversion between them.
//!
//! - AUFS/OCI: a file `.wh.NAME` deletes `NAME`; `.wh..wh..opq` in a dir makes it opaque.
//! - overlay: a 0/0 character device `NAME` deletes `NAME`; xattr `trusted.overlay.opaque=y`
//!   (or `user.overlay.opaque=y` with `userxattr`) makes a dir opaque.
//!
//! # Semantics (as the kernel's overlayfs implements them, checked on Linux 6.18)
//!
//! - A whiteout hides the name in the layers *below* its own; an opaque dir hides the dirs of
//!   the same name below it. Neither affects entries of its own layer: an AUFS layer holding
//!   both `.wh.X` and `X` shows its own `X`, and when `X` is a directory it is not merged with
//!   the `X` below (the pair means "replaced"), exactly like an opaque `X`.
//! - overlay reads `overlay.opaque` as one byte: `"y"` is opaque; `"x"` (Linux 6.7+) is *not*
//!   opaque but marks a merge dir that holds "xwhiteouts": zero-size regular files with the
//!   xattr `trusted.overlay.whiteout` (`user.overlay.whiteout`), which overlay also takes as
//!   whiteouts in lower layers. Any other value (`"yes"`, `"n"`, ...) means not opaque.
//! - The root of a layer is always merged: overlay ignores `overlay.opaque` on a layer root,
//!   and [`crate::UnionView`] ignores an opaque mark (either format) there too.
//!
//! # Conversion
//!
//! [`convert`] rewrites a layer dir in place. It walks with file descriptors and never
//! follows a symlink inside the layer (`openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`,
//! `O_NOFOLLOW`), validates the whole layer before changing anything, and keeps the
//! timestamps of the directories it edits.
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::SysContext;
use crate::fsutil::{self, XTarget};
use crate::{Error, Result, UnsafeEntry, ValidationError};

/// AUFS whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// AUFS opaque marker file name.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// overlay's opaque-dir xattr (default, needs `CAP_SYS_ADMIN` to set).
pub const TRUSTED_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlay's opaque-dir xattr with the `userxattr` mount option.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// overlay's xattr marking a zero-size regular file as a whiteout ("xwhiteout", Linux 6.7+).
pub const TRUSTED_WHITEOUT_XATTR: &str = "trusted.overlay.whiteout";
/// The xwhiteout xattr with the `userxattr` mount option.
pub const USER_WHITEOUT_XATTR: &str = "user.overlay.whiteout";

/// The xattr namespace overlay keeps its bookkeeping in (default).
const TRUSTED_OVERLAY_PREFIX: &str = "trusted.overlay.";
/// The xattr namespace overlay keeps its bookkeeping in with the `userxattr` mount option.
const USER_OVERLAY_PREFIX: &str = "user.overlay.";

/// Whether the xattr `name` is one of overlay's own, in either namespace (`trusted.overlay.*`,
/// `user.overlay.*`): never taken from a tar, never copied, never written to a diff.
pub(crate) fn is_overlay_xattr_name(name: &[u8]) -> bool {
    name.starts_with(TRUSTED_OVERLAY_PREFIX.as_bytes()) || name.starts_with(USER_OVERLAY_PREFIX.as_bytes())
}

/// The on-disk whiteout format of a layer dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum WhiteoutFormat {
    /// `.wh.` files and `.wh..wh..opq` markers.
    Aufs,
    /// 0/0 char devices and `trusted.overlay.opaque`.
    Overlay,
    /// 0/0 char devices and `user.overlay.opaque` (overlay with `userxattr`).
    OverlayUserXattr,
}

impl WhiteoutFormat {
    /// The opaque-dir xattr of an overlay format (`None` for AUFS).
    pub fn opaque_xattr(self) -> Option<&'static str> {
        match self {
            WhiteoutFormat::Aufs => None,
            WhiteoutFormat::Overlay => Some(TRUSTED_OPAQUE_XATTR),
            WhiteoutFormat::OverlayUserXattr => Some(USER_OPAQUE_XATTR),
        }
    }

    /// The xwhiteout xattr of an overlay format (`None` for AUFS).
    pub fn whiteout_xattr(self) -> Option<&'static str> {
        match self {
            WhiteoutFormat::Aufs => None,
            WhiteoutFormat::Overlay => Some(TRUSTED_WHITEOUT_XATTR),
            WhiteoutFormat::OverlayUserXattr => Some(USER_WHITEOUT_XATTR),
        }
    }

    /// The xattr namespace of an overlay format, with the trailing dot (`trusted.overlay.`,
    /// `user.overlay.`; `None` for AUFS).
    pub(crate) fn overlay_xattr_prefix(self) -> Option<&'static str> {
        match self {
            WhiteoutFormat::Aufs => None,
            WhiteoutFormat::Overlay => Some(TRUSTED_OVERLAY_PREFIX),
            WhiteoutFormat::OverlayUserXattr => Some(USER_OVERLAY_PREFIX),
        }
    }

    /// Whether this is one of the overlay formats.
    pub fn is_overlay(self) -> bool {
        self != WhiteoutFormat::Aufs
    }
}

/// What an `overlay.opaque` xattr says about a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpaqueValue {
    /// Absent or any value other than `"y"` / `"x"`: a normal (merged) dir.
    NotOpaque,
    /// `"y"`: the dirs of the same name below are hidden.
    Opaque,
    /// `"x"`: not opaque; the dir holds xwhiteouts (zero-size files with `overlay.whiteout`).
    XWhiteouts,
}

impl OpaqueValue {
    /// Reads an xattr value the way overlay does (exactly one byte, `y` or `x`).
    pub fn parse(value: Option<&[u8]>) -> OpaqueValue {
        match value {
            Some(b"y") => OpaqueValue::Opaque,
            Some(b"x") => OpaqueValue::XWhiteouts,
            _ => OpaqueValue::NotOpaque,
        }
    }
}

/// Whether `name` is an AUFS whiteout `.wh.X` (the opaque marker is not one).
pub fn is_whiteout_name(name: &OsStr) -> bool {
    whiteout_target(name).is_some()
}

/// The name an AUFS whiteout `.wh.X` deletes (`X`); `None` for other names and the opaque
/// marker. `X` may be empty, `.` or `..` here: callers that act on it refuse those.
pub fn whiteout_target(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        return None;
    }
    b.strip_prefix(WHITEOUT_PREFIX.as_bytes()).map(OsStr::from_bytes)
}

/// The AUFS whiteout name (`.wh.NAME`) for `name`; refuses `.`, `..`, empty names, names with
/// `/` or NUL, and names too long for a `.wh.` prefix (255 bytes in all).
pub fn whiteout_name_for(name: &OsStr) -> Result<OsString> {
    if fsutil::bad_component(name) {
        return Err(ValidationError::WhiteoutName { name: name.to_owned() }.into());
    }
    if name.len() + WHITEOUT_PREFIX.len() > 255 {
        return Err(ValidationError::WhiteoutNameTooLong { name: name.to_owned() }.into());
    }
    let mut s = OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    Ok(s)
}

/// Whether a file mode and device number make an overlay whiteout (a 0/0 character device).
pub fn is_whiteout_device(mode: u32, rdev: u64) -> bool {
    FileType::from_raw_mode(mode) == FileType::CharacterDevice && rdev == 0
}

/// Whether metadata (from `symlink_metadata`) is an overlay whiteout (0/0 character device).
pub fn is_overlay_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Creates a whiteout for `name` in the directory `dir`: an empty file `.wh.NAME` (AUFS) or a
/// 0/0 character device `NAME` with mode 0 (overlay formats; before Linux 5.8 that needs
/// `CAP_MKNOD`, else [`Error::MknodDenied`]). Fails if the entry already exists.
pub fn create_whiteout(dir: &Path, name: &OsStr, format: WhiteoutFormat) -> Result<()> {
    let wh = whiteout_name_for(name)?;
    let fd = fsutil::open_root(dir).sys_at("open", dir)?;
    match format {
        WhiteoutFormat::Aufs => create_empty(fd.as_fd(), &wh, &dir.join(&wh)),
        _ => mknod_whiteout(fd.as_fd(), name, &dir.join(name)),
    }
}

/// Marks the directory `dir` opaque: `.wh..wh..opq` inside it (AUFS) or `overlay.opaque=y`.
pub fn set_opaque(dir: &Path, format: WhiteoutFormat) -> Result<()> {
    let fd = fsutil::open_root(dir).sys_at("open", dir)?;
    match format.opaque_xattr() {
        None => match create_empty(fd.as_fd(), OsStr::new(OPAQUE_MARKER), &dir.join(OPAQUE_MARKER)) {
            Err(Error::Sys { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        },
        Some(key) => {
            fsutil::set_xattr(XTarget::Fd(fd.as_fd()), OsStr::new(key), b"y").sys_at("fsetxattr(overlay.opaque)", dir)
        }
    }
}

/// Whether the directory `dir` is marked opaque in `format` (an AUFS marker file inside it, or
/// `overlay.opaque` = `"y"`; `"x"` is not opaque).
pub fn is_opaque(dir: &Path, format: WhiteoutFormat) -> Result<bool> {
    let fd = fsutil::open_root(dir).sys_at("open", dir)?;
    dir_fd_is_opaque(fd.as_fd(), format).sys_at("opaque check", dir)
}

/// Opaque check on an open directory.
pub(crate) fn dir_fd_is_opaque(fd: BorrowedFd<'_>, format: WhiteoutFormat) -> rustix::io::Result<bool> {
    match format.opaque_xattr() {
        None => Ok(fsutil::lstat_at(fd, OsStr::new(OPAQUE_MARKER))?.is_some()),
        Some(key) => Ok(fsutil::xattr_byte(fd, key)? == Some(b'y')),
    }
}

/// Whether the entry `name` (already `lstat`ed as `st`) in `dir` is an overlay whiteout in an
/// overlay `format`: a 0/0 char device, or a zero-size regular file with `overlay.whiteout`.
pub(crate) fn is_overlay_whiteout_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &rustix::fs::Stat,
    format: WhiteoutFormat,
) -> rustix::io::Result<bool> {
    if is_whiteout_device(st.st_mode, st.st_rdev) {
        return Ok(true);
    }
    match format.whiteout_xattr() {
        Some(key) if fsutil::kind_of(st) == FileType::RegularFile && st.st_size == 0 => {
            fsutil::has_xattr_at(dir, name, key)
        }
        _ => Ok(false),
    }
}

fn create_empty(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<()> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map(drop)
    .sys_at("create", path)
}

fn mknod_whiteout(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<()> {
    match rustix::fs::mknodat(dir, name, FileType::CharacterDevice, Mode::empty(), 0) {
        Ok(()) => Ok(()),
        Err(e @ (Errno::PERM | Errno::ACCESS)) => Err(Error::MknodDenied { path: path.to_owned(), source: e.into() }),
        Err(e) => Err(Error::sys_at("mknodat(whiteout)", path, e)),
    }
}

/// Calls `f(rel, dir_fd, entries)` for every directory of the tree below `root` (the root
/// first, `rel` empty), never following a symlink. `f` may change non-directory entries.
pub(crate) fn walk_dirs(
    root: &Path,
    mut f: impl FnMut(&Path, BorrowedFd<'_>, &[(OsString, FileType)]) -> Result<()>,
) -> Result<()> {
    let root_fd = fsutil::open_root(root).sys_at("open", root)?;
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let fd = fsutil::open_beneath(root_fd.as_fd(), &rel).sys_with("openat2", || root.join(&rel))?;
        let entries = fsutil::list_dir_sorted(fd.as_fd()).sys_with("getdents", || root.join(&rel))?;
        f(&rel, fd.as_fd(), &entries)?;
        for (name, ft) in entries.iter().rev() {
            if *ft == FileType::Directory {
                todo.push(rel.join(name));
            }
        }
    }
    Ok(())
}

/// Converts a layer dir in place from one format to the other; returns how many whiteouts
/// and opaque dirs were converted.
///
/// The count is the number of whiteouts plus opaque marks found in the `from` format (also
/// the redundant ones that are dropped, see below); `from == to` changes nothing and returns 0.
/// The whole layer is checked first ([`Error::Unsafe`] with [`UnsafeEntry::BadWhiteout`] for
/// a `.wh.` entry naming nothing, `.` or `..`; [`Error::Unconvertible`] for what the target
/// format cannot hold), so a refused layer is left as it was.
///
/// AUFS to overlay: `.wh..wh..opq` becomes `overlay.opaque=y`; `.wh.X` becomes a 0/0 char
/// device `X` (before Linux 5.8 only with `CAP_MKNOD`: [`Error::MknodDenied`]) unless `X` exists in the same dir
/// (then a dir `X` is made opaque and a non-dir needs nothing) or the dir is opaque (then the
/// whiteout hides nothing and is dropped, because overlay would list a whiteout in a dir it
/// does not merge; not so in the layer root, which overlay never treats as opaque).
///
/// overlay to AUFS: `overlay.opaque=y` becomes the marker file and `"x"` is removed; 0/0 char
/// devices and xwhiteouts (zero-size files with `overlay.whiteout`) become `.wh.X` files. A
/// real entry whose name starts with `.wh.` cannot be held by AUFS and is refused.
///
/// Between the two overlay formats the `overlay.opaque` and `overlay.whiteout` xattrs move from
/// `trusted.` to `user.` (or back); 0/0 devices stay.
pub fn convert(layer: &Path, from: WhiteoutFormat, to: WhiteoutFormat) -> Result<usize> {
    if from == to {
        return Ok(0);
    }
    walk_dirs(layer, |rel, fd, entries| validate_dir(layer, rel, fd, entries, from, to))?;
    let mut count = 0;
    walk_dirs(layer, |rel, fd, entries| {
        let path = layer.join(rel);
        let before = rustix::fs::fstat(fd).sys_at("fstat", &path)?;
        let (n, changed) = match (from, to) {
            (WhiteoutFormat::Aufs, to) => aufs_to_overlay(&path, rel.as_os_str().is_empty(), fd, entries, to)?,
            (from, WhiteoutFormat::Aufs) => overlay_to_aufs(&path, fd, entries, from)?,
            (from, to) => overlay_to_overlay(&path, fd, entries, from, to)?,
        };
        if changed {
            restore_times(fd, &before).sys_at("futimens", &path)?;
        }
        count += n;
        Ok(())
    })?;
    Ok(count)
}

fn restore_times(fd: BorrowedFd<'_>, st: &rustix::fs::Stat) -> rustix::io::Result<()> {
    let times = Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    };
    rustix::fs::futimens(fd, &times)
}

fn validate_dir(
    layer: &Path,
    rel: &Path,
    fd: BorrowedFd<'_>,
    entries: &[(OsString, FileType)],
    from: WhiteoutFormat,
    to: WhiteoutFormat,
) -> Result<()> {
    let _ = fd;
    for (name, ft) in entries {
        let path = || layer.join(rel).join(name);
        if from == WhiteoutFormat::Aufs {
            if name == OPAQUE_MARKER && *ft == FileType::Directory {
                return Err(Error::Unconvertible {
                    path: path(),
                    format: to,
                    reason: "the opaque marker is a directory",
                });
            }
            if let Some(target) = whiteout_target(name) {
                if fsutil::bad_component(target) {
                    return Err(Error::Unsafe { entry: path(), reason: UnsafeEntry::BadWhiteout });
                }
                if *ft == FileType::Directory {
                    return Err(Error::Unconvertible { path: path(), format: to, reason: "a whiteout is a directory" });
                }
            }
        } else if to == WhiteoutFormat::Aufs {
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(Error::Unconvertible {
                    path: path(),
                    format: to,
                    reason: "names starting with `.wh.` are whiteouts in AUFS",
                });
            }
            if name.len() + WHITEOUT_PREFIX.len() > 255
                && matches!(ft, FileType::CharacterDevice | FileType::RegularFile)
            {
                let st = fsutil::lstat_at(fd, name).sys_with("lstat", path)?;
                if let Some(st) = st
                    && is_overlay_whiteout_at(fd, name, &st, from).sys_with("lgetxattr", path)?
                {
                    return Err(Error::Unconvertible {
                        path: path(),
                        format: to,
                        reason: "the name is too long for a `.wh.` whiteout",
                    });
                }
            }
        }
    }
    Ok(())
}

fn aufs_to_overlay(
    path: &Path,
    is_root: bool,
    fd: BorrowedFd<'_>,
    entries: &[(OsString, FileType)],
    to: WhiteoutFormat,
) -> Result<(usize, bool)> {
    let key = OsStr::new(to.opaque_xattr().expect("overlay format"));
    let mut count = 0;
    let mut changed = false;
    let opaque = entries.iter().any(|(n, _)| n == OPAQUE_MARKER);
    if opaque {
        rustix::fs::unlinkat(fd, OPAQUE_MARKER, AtFlags::empty()).sys_with("unlinkat", || path.join(OPAQUE_MARKER))?;
        fsutil::set_xattr(XTarget::Fd(fd), key, b"y").sys_at("fsetxattr(overlay.opaque)", path)?;
        count += 1;
        changed = true;
    }
    for (name, _) in entries {
        let Some(target) = whiteout_target(name) else { continue };
        rustix::fs::unlinkat(fd, name.as_os_str(), AtFlags::empty()).sys_with("unlinkat", || path.join(name))?;
        count += 1;
        changed = true;
        if opaque && !is_root {
            continue;
        }
        let tpath = path.join(target);
        match fsutil::lstat_at(fd, target).sys_at("lstat", &tpath)? {
            Some(st) if fsutil::kind_of(&st) == FileType::Directory => {
                let dfd = fsutil::open_dir_at(fd, target).sys_at("openat", &tpath)?;
                fsutil::set_xattr(XTarget::Fd(dfd.as_fd()), key, b"y").sys_at("fsetxattr(overlay.opaque)", &tpath)?;
            }
            Some(_) => {}
            None => mknod_whiteout(fd, target, &tpath)?,
        }
    }
    Ok((count, changed))
}

fn overlay_to_aufs(
    path: &Path,
    fd: BorrowedFd<'_>,
    entries: &[(OsString, FileType)],
    from: WhiteoutFormat,
) -> Result<(usize, bool)> {
    let key = from.opaque_xattr().expect("overlay format");
    let mut count = 0;
    let mut changed = false;
    match fsutil::xattr_byte(fd, key).sys_at("fgetxattr(overlay.opaque)", path)? {
        Some(b'y') => {
            fsutil::remove_xattr(XTarget::Fd(fd), key).sys_at("fremovexattr", path)?;
            create_empty(fd, OsStr::new(OPAQUE_MARKER), &path.join(OPAQUE_MARKER))?;
            count += 1;
            changed = true;
        }
        Some(b'x') => fsutil::remove_xattr(XTarget::Fd(fd), key).sys_at("fremovexattr", path)?,
        _ => {}
    }
    for (name, ft) in entries {
        if !matches!(ft, FileType::CharacterDevice | FileType::RegularFile) {
            continue;
        }
        let epath = path.join(name);
        let Some(st) = fsutil::lstat_at(fd, name).sys_at("lstat", &epath)? else { continue };
        if !is_overlay_whiteout_at(fd, name, &st, from).sys_at("lgetxattr", &epath)? {
            continue;
        }
        rustix::fs::unlinkat(fd, name.as_os_str(), AtFlags::empty()).sys_at("unlinkat", &epath)?;
        let wh = whiteout_name_for(name)?;
        create_empty(fd, &wh, &path.join(&wh))?;
        count += 1;
        changed = true;
    }
    Ok((count, changed))
}

fn overlay_to_overlay(
    path: &Path,
    fd: BorrowedFd<'_>,
    entries: &[(OsString, FileType)],
    from: WhiteoutFormat,
    to: WhiteoutFormat,
) -> Result<(usize, bool)> {
    let (okey, nkey) = (from.opaque_xattr().expect("overlay"), to.opaque_xattr().expect("overlay"));
    let (wkey, nwkey) = (from.whiteout_xattr().expect("overlay"), to.whiteout_xattr().expect("overlay"));
    let mut count = 0;
    if let Some(v @ (b'y' | b'x')) = fsutil::xattr_byte(fd, okey).sys_at("fgetxattr(overlay.opaque)", path)? {
        fsutil::set_xattr(XTarget::Fd(fd), OsStr::new(nkey), &[v]).sys_at("fsetxattr", path)?;
        fsutil::remove_xattr(XTarget::Fd(fd), okey).sys_at("fremovexattr", path)?;
        if v == b'y' {
            count += 1;
        }
    }
    for (name, ft) in entries {
        if !matches!(ft, FileType::CharacterDevice | FileType::RegularFile) {
            continue;
        }
        let epath = path.join(name);
        let Some(st) = fsutil::lstat_at(fd, name).sys_at("lstat", &epath)? else { continue };
        if is_whiteout_device(st.st_mode, st.st_rdev) {
            count += 1;
        } else if is_overlay_whiteout_at(fd, name, &st, from).sys_at("lgetxattr", &epath)? {
            let at = XTarget::At(fd, name);
            let v = fsutil::get_xattr(at, OsStr::new(wkey)).sys_at("lgetxattr", &epath)?.unwrap_or_default();
            fsutil::set_xattr(at, OsStr::new(nwkey), &v).sys_at("lsetxattr", &epath)?;
            fsutil::remove_xattr(at, wkey).sys_at("lremovexattr", &epath)?;
            count += 1;
        }
    }
    Ok((count, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert!(is_whiteout_name(OsStr::new(".wh.foo")));
        assert!(!is_whiteout_name(OsStr::new(OPAQUE_MARKER)));
        assert!(!is_whiteout_name(OsStr::new("foo")));
        assert!(!is_whiteout_name(OsStr::new(".wh")));
        assert_eq!(whiteout_target(OsStr::new(".wh.foo")), Some(OsStr::new("foo")));
        assert_eq!(whiteout_target(OsStr::new(".wh.")), Some(OsStr::new("")));
        assert_eq!(whiteout_target(OsStr::new(".wh..wh.x")), Some(OsStr::new(".wh.x")));
        assert_eq!(whiteout_name_for(OsStr::new("a b")).unwrap(), OsString::from(".wh.a b"));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(whiteout_name_for(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        assert!(whiteout_name_for(OsStr::new(&"x".repeat(251))).is_ok());
        assert!(whiteout_name_for(OsStr::new(&"x".repeat(252))).is_err());
    }

    #[test]
    fn devices_and_opaque_values() {
        let chr = libc::S_IFCHR;
        assert!(is_whiteout_device(chr, 0));
        assert!(!is_whiteout_device(chr, rustix::fs::makedev(1, 3)));
        assert!(!is_whiteout_device(libc::S_IFBLK, 0));
        assert!(!is_whiteout_device(libc::S_IFREG, 0));
        assert_eq!(OpaqueValue::parse(Some(b"y")), OpaqueValue::Opaque);
        assert_eq!(OpaqueValue::parse(Some(b"x")), OpaqueValue::XWhiteouts);
        assert_eq!(OpaqueValue::parse(Some(b"yes")), OpaqueValue::NotOpaque);
        assert_eq!(OpaqueValue::parse(Some(b"")), OpaqueValue::NotOpaque);
        assert_eq!(OpaqueValue::parse(None), OpaqueValue::NotOpaque);
    }

    #[test]
    fn format_xattrs() {
        assert_eq!(WhiteoutFormat::Aufs.opaque_xattr(), None);
        assert_eq!(WhiteoutFormat::Overlay.opaque_xattr(), Some("trusted.overlay.opaque"));
        assert_eq!(WhiteoutFormat::OverlayUserXattr.opaque_xattr(), Some("user.overlay.opaque"));
        assert_eq!(WhiteoutFormat::OverlayUserXattr.whiteout_xattr(), Some("user.overlay.whiteout"));
        assert!(!WhiteoutFormat::Aufs.is_overlay());
    }
}
