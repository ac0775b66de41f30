//! The copy (vfs) driver: materialises a union into a plain directory, for where overlay cannot
//! be used (an upper on an overlay, some user-namespace setups).
//!
//! [`materialize`] copies exactly what [`crate::UnionView`] shows (same merge rules, same
//! whiteout handling), reading every layer with file descriptors and never following a
//! symlink inside a layer. What it keeps:
//!
//! - regular files: content (`FICLONE` reflink where the file system can, else
//!   `copy_file_range`, else read/write), mode (with set-id bits), owner, atime/mtime, xattrs;
//! - directories: merged per the view; mode, owner, times and xattrs from the highest layer
//!   that has the dir (also for the root: `target` gets the top layer root's attributes);
//! - symlinks: target, owner, times, xattrs;
//! - hardlinks: names that share an inode (same device and inode number in the layers) share
//!   one in `target`;
//! - device nodes, fifos, sockets (`mknodat`; a device needs `CAP_MKNOD`, else
//!   [`crate::Error::MknodDenied`]).
//!
//! overlay's own xattrs (`trusted.overlay.*`, `user.overlay.*`) are never copied; whiteouts and
//! opaque marks are applied, not copied. Directory times are set after their contents.
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::SysContext;
use crate::fsutil::{self, XTarget};
use crate::view::{EntryKind, Merged, UnionView};
use crate::{Error, LayerStack, Result, Upper, ValidationError, WhiteoutFormat};

/// Copies the union of `layers` (bottom first, in `format`) into the empty dir `target`,
/// keeping modes, owners, timestamps, xattrs (except overlay's own), symlinks, hardlinks
/// within a layer and device nodes; whiteouts and opaque markers are applied, not copied.
pub fn materialize(layers: &[&Path], format: WhiteoutFormat, target: &Path) -> Result<()> {
    let view = UnionView::new(layers.iter().map(|p| p.to_path_buf()).collect(), format);
    Copier::new(&view, target)?.run()
}

/// Whether an xattr is overlay's own (never copied).
pub fn is_overlay_xattr(name: &OsStr) -> bool {
    crate::whiteout::is_overlay_xattr_name(name.as_bytes())
}

enum Frame {
    /// Copy the entries of a merged dir (its merge stack, top first).
    Enter(PathBuf, Vec<usize>),
    /// Set a dir's attributes from the given layer, after its entries.
    Leave(PathBuf, usize),
}

struct Copier<'a> {
    view: &'a UnionView,
    roots: Vec<OwnedFd>,
    target: &'a Path,
    tfd: OwnedFd,
    /// (st_dev, st_ino) of a source inode with several links -> its first path in `target`.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<'a> Copier<'a> {
    fn new(view: &'a UnionView, target: &'a Path) -> Result<Copier<'a>> {
        let roots = view.open_roots()?;
        let tfd = fsutil::open_root(target).sys_at("open", target)?;
        let present = fsutil::list_dir_sorted(tfd.as_fd()).sys_at("getdents", target)?;
        if !present.is_empty() {
            return Err(ValidationError::TargetNotEmpty { path: target.to_owned() }.into());
        }
        Ok(Copier { view, roots, target, tfd, links: HashMap::new() })
    }

    fn run(mut self) -> Result<()> {
        let root_stack = self.view.root_stack();
        let top = root_stack[0];
        let mut todo = vec![Frame::Leave(PathBuf::new(), top), Frame::Enter(PathBuf::new(), root_stack)];
        while let Some(frame) = todo.pop() {
            match frame {
                Frame::Enter(rel, layers) => {
                    let subdirs = self.copy_dir_entries(&rel, &layers)?;
                    for (p, sub, layer) in subdirs.into_iter().rev() {
                        todo.push(Frame::Leave(p.clone(), layer));
                        todo.push(Frame::Enter(p, sub));
                    }
                }
                Frame::Leave(rel, layer) => self.finish_dir(&rel, layer)?,
            }
        }
        Ok(())
    }

    fn layer_path(&self, layer: usize, rel: &Path) -> PathBuf {
        self.view.layers()[layer].join(rel)
    }

    /// Creates the entries of one merged dir; returns its subdirs (path, merge stack, layer).
    fn copy_dir_entries(&mut self, rel: &Path, layers: &[usize]) -> Result<Vec<(PathBuf, Vec<usize>, usize)>> {
        let stack = self.view.open_stack(&self.roots, rel, layers)?;
        let merged = self.view.merged(rel, &stack, true)?;
        let dst = fsutil::open_beneath(self.tfd.as_fd(), rel).sys_with("openat2", || self.target.join(rel))?;
        let mut subdirs = Vec::new();
        for (name, m) in merged {
            let src = stack.iter().find(|(l, _)| *l == m.layer).map(|(_, fd)| fd.as_fd()).expect("layer in stack");
            let p = rel.join(&name);
            if m.kind == EntryKind::Dir {
                rustix::fs::mkdirat(dst.as_fd(), &name, Mode::from_raw_mode(0o700))
                    .sys_with("mkdirat", || self.target.join(&p))?;
                subdirs.push((p, m.sub, m.layer));
            } else {
                self.copy_nondir(src, &name, &m, dst.as_fd(), &p)?;
            }
        }
        Ok(subdirs)
    }

    fn copy_nondir(
        &mut self,
        src_dir: BorrowedFd<'_>,
        name: &OsStr,
        m: &Merged,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<()> {
        let st = &m.st;
        let spath = self.layer_path(m.layer, rel);
        let dpath = self.target.join(rel);
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1
            && let Some(first) = self.links.get(&key)
        {
            return rustix::fs::linkat(self.tfd.as_fd(), first, dst_dir, name, AtFlags::empty())
                .sys_at("linkat", &dpath);
        }
        match m.kind {
            EntryKind::File => {
                let src = rustix::fs::openat(
                    src_dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .sys_at("openat", &spath)?;
                let now = rustix::fs::fstat(&src).sys_at("fstat", &spath)?;
                if (now.st_dev, now.st_ino) != key || fsutil::kind_of(&now) != FileType::RegularFile {
                    return Err(Error::sys_at("openat (changed while copying)", &spath, Errno::STALE));
                }
                let src = File::from(src);
                let dst = rustix::fs::openat(
                    dst_dir,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .sys_at("create", &dpath)?;
                let dst = File::from(dst);
                copy_data(&src, &dst, &spath, &dpath)?;
                copy_attrs(Some(XTarget::Fd(src.as_fd())), XTarget::Fd(dst.as_fd()), st, &spath, &dpath)?;
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(src_dir, name, Vec::new()).sys_at("readlinkat", &spath)?;
                rustix::fs::symlinkat(target.as_c_str(), dst_dir, name).sys_at("symlinkat", &dpath)?;
                copy_attrs(Some(XTarget::At(src_dir, name)), XTarget::At(dst_dir, name), st, &spath, &dpath)?;
            }
            EntryKind::Other => {
                let ft = fsutil::kind_of(st);
                let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
                match rustix::fs::mknodat(dst_dir, name, ft, mode, st.st_rdev) {
                    Ok(()) => {}
                    Err(e @ (Errno::PERM | Errno::ACCESS))
                        if matches!(ft, FileType::CharacterDevice | FileType::BlockDevice) =>
                    {
                        return Err(Error::MknodDenied { path: dpath, source: e.into() });
                    }
                    Err(e) => return Err(Error::sys_at("mknodat", &dpath, e)),
                }
                copy_attrs(Some(XTarget::At(src_dir, name)), XTarget::At(dst_dir, name), st, &spath, &dpath)?;
            }
            EntryKind::Dir => unreachable!("dirs are copied by copy_dir_entries"),
        }
        if st.st_nlink > 1 {
            self.links.insert(key, rel.to_owned());
        }
        Ok(())
    }

    /// Sets a dir's owner, mode, xattrs and times from `layer`, once its entries exist.
    fn finish_dir(&self, rel: &Path, layer: usize) -> Result<()> {
        let spath = self.layer_path(layer, rel);
        let dpath = self.target.join(rel);
        let src = fsutil::open_beneath(self.roots[layer].as_fd(), rel).sys_at("openat2", &spath)?;
        let st = rustix::fs::fstat(&src).sys_at("fstat", &spath)?;
        let dst = fsutil::open_beneath(self.tfd.as_fd(), rel).sys_at("openat2", &dpath)?;
        copy_attrs(Some(XTarget::Fd(src.as_fd())), XTarget::Fd(dst.as_fd()), &st, &spath, &dpath)
    }
}

/// Copies file data: a reflink where possible, else `copy_file_range`, else read/write.
fn copy_data(src: &File, dst: &File, spath: &Path, dpath: &Path) -> Result<()> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut copied = 0u64;
    loop {
        match rustix::fs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) if copied == 0 => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::sys_at("copy_file_range", dpath, e)),
        }
    }
    std::io::copy(&mut &*src, &mut &*dst).map(drop).sys_at("read/write copy", spath)
}

fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    }
}

/// Owner, mode (not for symlinks), xattrs (except overlay's), then times, in that order (a
/// chown clears set-id bits and file capabilities).
fn copy_attrs(src: Option<XTarget<'_>>, dst: XTarget<'_>, st: &Stat, spath: &Path, dpath: &Path) -> Result<()> {
    let ft = fsutil::kind_of(st);
    let uid = Some(rustix::fs::Uid::from_raw(st.st_uid));
    let gid = Some(rustix::fs::Gid::from_raw(st.st_gid));
    let chown = match dst {
        XTarget::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
        XTarget::At(d, n) => rustix::fs::chownat(d, n, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
    };
    if let Err(e) = chown {
        // Unprivileged: fine when the copy already has the owner asked for.
        let cur = match dst {
            XTarget::Fd(fd) => rustix::fs::fstat(fd),
            XTarget::At(d, n) => rustix::fs::statat(d, n, AtFlags::SYMLINK_NOFOLLOW),
        }
        .sys_at("fstat", dpath)?;
        if e != Errno::PERM || cur.st_uid != st.st_uid || cur.st_gid != st.st_gid {
            return Err(Error::sys_at("chown", dpath, e));
        }
    }
    if ft != FileType::Symlink {
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        match dst {
            XTarget::Fd(fd) => rustix::fs::fchmod(fd, mode),
            XTarget::At(d, n) => rustix::fs::chmodat(d, n, mode, AtFlags::empty()),
        }
        .sys_at("chmod", dpath)?;
    }
    if let Some(src) = src {
        for (key, value) in fsutil::read_xattrs(src).sys_at("listxattr", spath)? {
            if is_overlay_xattr(&key) {
                continue;
            }
            fsutil::set_xattr(dst, &key, &value).sys_at("setxattr", dpath)?;
        }
    }
    let times = times_of(st);
    match dst {
        XTarget::Fd(fd) => rustix::fs::futimens(fd, &times),
        XTarget::At(d, n) => rustix::fs::utimensat(d, n, &times, AtFlags::SYMLINK_NOFOLLOW),
    }
    .sys_at("utimensat", dpath)
}

/// The copy driver.
///
/// It turns a [`LayerStack`] into a plain directory tree: the stack's lower layers (bottom
/// first) and, for [`Upper::Dir`], the upper dir as the top layer (so the whiteouts and opaque
/// dirs an earlier overlay session left there are applied) are materialised into the target.
/// The layers are read in overlay format (`user.overlay.*` xattrs when the stack's options
/// have `userxattr`). The target itself is then the writable root: writes go to it and are not
/// copied back into an upper dir (the work dir is unused), and [`Upper::Tmpfs`]'s size limit
/// does not apply (the copy lives on the target's file system).
#[derive(Debug, Default, Clone, Copy)]
pub struct Vfs;

impl Vfs {
    /// The layers (bottom first) and whiteout format the copy driver uses for `stack`.
    pub fn layers_of(stack: &LayerStack) -> Result<(Vec<PathBuf>, WhiteoutFormat)> {
        let mut layers = stack.lower_dirs().to_vec();
        if let Upper::Dir { upper, .. } = stack.upper_layer() {
            layers.push(upper.clone());
        }
        if layers.is_empty() {
            return Err(ValidationError::NoLayers.into());
        }
        let format =
            if stack.overlay_options().userxattr { WhiteoutFormat::OverlayUserXattr } else { WhiteoutFormat::Overlay };
        Ok((layers, format))
    }

    /// Materialises `stack` into the empty directory `target` (see [`Vfs`] for which layers
    /// and [`materialize`] for what is kept).
    pub fn materialize_stack(&self, stack: &LayerStack, target: &Path) -> Result<()> {
        let (layers, format) = Vfs::layers_of(stack)?;
        let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        materialize(&refs, format, target)
    }
}

impl crate::StorageDriver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    /// Materialises `stack` into the empty dir `target` (see [`Vfs`]). The handle's
    /// [`remove`](crate::MountedStack::remove) (or drop) deletes the copy, leaving `target`
    /// empty; [`leak`](crate::MountedStack::leak) keeps it. A failed copy is deleted.
    fn mount(&self, stack: &LayerStack, target: &Path) -> Result<crate::MountedStack> {
        match self.materialize_stack(stack, target) {
            Ok(()) => Ok(crate::MountedStack::copied(target.to_owned())),
            Err(e @ Error::Invalid(_)) => Err(e),
            Err(e) => match remove_copy(target) {
                Ok(()) => Err(e),
                Err(c) => Err(Error::Cleanup { cause: Box::new(e), cleanup: vec![c] }),
            },
        }
    }
}

/// Deletes everything under `target` (symlinks are removed, never followed), keeping `target`.
/// An entry that cannot be removed does not stop the others: the error is that failure, or
/// [`Error::Teardown`] listing all of them.
pub(crate) fn remove_copy(target: &Path) -> Result<()> {
    let entries = std::fs::read_dir(target).sys_at("read_dir", target)?;
    let mut errors = Vec::new();
    for e in entries {
        let e = e.sys_at("read_dir", target)?;
        let p = e.path();
        let removed = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p).sys_at("remove", &p),
            Ok(_) => std::fs::remove_file(&p).sys_at("remove", &p),
            Err(err) => Err(Error::sys_at("lstat", &p, err)),
        };
        errors.extend(removed.err());
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Teardown { what: format!("the copy at {}", target.display()), errors }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_of_a_stack() {
        let mut s = LayerStack::new();
        assert!(matches!(Vfs::layers_of(&s), Err(Error::Invalid(crate::ValidationError::NoLayers))));
        s.lowers(["/l0", "/l1"]);
        assert_eq!(
            Vfs::layers_of(&s).unwrap(),
            (vec![PathBuf::from("/l0"), PathBuf::from("/l1")], WhiteoutFormat::Overlay)
        );
        s.upper(Upper::Dir { upper: "/up".into(), work: "/work".into() });
        s.options(crate::OverlayOptions { userxattr: true, ..Default::default() });
        let (l, f) = Vfs::layers_of(&s).unwrap();
        assert_eq!((l.len(), l[2].as_path(), f), (3, Path::new("/up"), WhiteoutFormat::OverlayUserXattr));
        s.upper(Upper::Tmpfs { size: None });
        assert_eq!(Vfs::layers_of(&s).unwrap().0.len(), 2);
    }

    #[test]
    fn overlay_xattrs_are_recognised() {
        assert!(is_overlay_xattr(OsStr::new("trusted.overlay.opaque")));
        assert!(is_overlay_xattr(OsStr::new("user.overlay.whiteout")));
        assert!(!is_overlay_xattr(OsStr::new("user.overlayx")));
        assert!(!is_overlay_xattr(OsStr::new("security.capability")));
        assert!(!is_overlay_xattr(OsStr::new("user.mime_type")));
    }
}
