//! One entry kind each: regular files (sparse-aware, bounded), directories, the root, symlinks,
//! hard links and device/fifo nodes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::ctx::{Ctx, Fail, sys, sys_io};
use super::path::{clean_path, split_parent, symlink_escapes};
use super::{Applier, DirFix};
use crate::fsutil::{Slot, chmod_nofollow, clear_slot, open_dir_at};
use crate::{Limit, UnsafeEntry};

impl Applier<'_> {
    pub(super) fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &[u8],
        name: &[u8],
    ) -> Result<(), Fail> {
        let size = entry.size();
        let total = self.file_bytes.saturating_add(size);
        if total > self.limits.max_bytes {
            return Err(Fail::Limit(Limit::Bytes, total));
        }
        self.file_bytes = total;
        let sparse = entry.header().entry_type().is_gnu_sparse();
        self.enter(parent)?;
        let mode = self.meta.mode;
        let pfd = self.dirs.fd(parent);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let create_mode = Mode::from_raw_mode(mode & 0o777);
        let mut freed_dir = false;
        let fd = match rustix::fs::openat(pfd, name, flags, create_mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                freed_dir = clear_slot(pfd, name, false).map_err(sys("replace"))? == Slot::FreedDir;
                rustix::fs::openat(pfd, name, flags, create_mode).map_err(sys("openat"))?
            }
            Err(e) => return Err(Fail::Sys("openat", e.into())),
        };
        let setgid = self.dirs.setgid(parent);
        let mut file = File::from(fd);
        let mut left = size;
        let mut off = 0u64;
        while left > 0 {
            let want = (left.min(self.buf.len() as u64)) as usize;
            let before = self.served.get();
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(0) => return Err(Fail::Tar(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Tar(e)),
            };
            // The tar crate serves a sparse file's holes as zeros of its own, one run per
            // read, without taking anything from the stream: skip them instead of writing.
            if sparse && self.served.get() == before {
                self.meter.expand(n as u64).map_err(Fail::Tar)?;
            } else if sparse {
                file.write_all_at(&self.buf[..n], off).map_err(sys_io("pwrite"))?;
            } else {
                file.write_all(&self.buf[..n]).map_err(sys_io("write"))?;
            }
            off += n as u64;
            left -= n as u64;
            self.reporter.tick(self.entries, n as u64);
        }
        if sparse {
            // A hole at the end: the size is set, no block allocated.
            rustix::fs::ftruncate(&file, size).map_err(sys("ftruncate"))?;
        }
        let meta = &self.meta;
        let chowned = self.ctx.needs_chown(meta, setgid);
        if chowned {
            let (u, g) = Ctx::chown_args(meta);
            rustix::fs::fchown(&file, u, g).map_err(sys("fchown"))?;
        }
        if self.ctx.needs_chmod(mode) {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(sys("fchmod"))?;
        }
        self.ctx.set_xattrs_fd(file.as_fd(), &meta.xattrs)?;
        rustix::fs::futimens(&file, &meta.timestamps()).map_err(sys("futimens"))?;
        drop(file);
        if freed_dir {
            self.dirs.invalidate();
        }
        Ok(())
    }

    pub(super) fn dir(&mut self, parent: &[u8], name: &[u8], path: &[u8]) -> Result<(), Fail> {
        self.enter(parent)?;
        let mode = self.meta.mode;
        // Unprivileged: keep the dir writable for its contents, set the real mode at the end.
        let defer_mode = !self.ctx.privs.dac && mode & 0o700 != 0o700;
        let create_mode = Mode::from_raw_mode(if defer_mode { mode | 0o700 } else { mode } & 0o1777);
        let pfd = self.dirs.fd(parent);
        let setgid = self.dirs.setgid(parent);
        let mut freed_dir = false;
        let existed = match rustix::fs::mkdirat(pfd, name, create_mode) {
            Ok(()) => false,
            Err(Errno::EXIST) => match clear_slot(pfd, name, true).map_err(sys("replace"))? {
                Slot::KeptDir => true,
                s => {
                    freed_dir = s == Slot::FreedDir;
                    rustix::fs::mkdirat(pfd, name, create_mode).map_err(sys("mkdirat"))?;
                    false
                }
            },
            Err(e) => return Err(Fail::Sys("mkdirat", e.into())),
        };
        let meta = &self.meta;
        if self.ctx.privs.chown && (existed || self.ctx.needs_chown(meta, setgid)) {
            let (u, g) = Ctx::chown_args(meta);
            rustix::fs::chownat(pfd, name, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(sys("chownat"))?;
        }
        let chmod = !defer_mode && (existed || setgid || mode & 0o6000 != 0 || mode & self.ctx.umask != 0);
        if chmod || !meta.xattrs.is_empty() {
            // Through an fd opened without following symlinks: a symlink swapped in for the
            // new dir by another writer is refused, never chmod'ed through.
            let dfd = open_dir_at(pfd, name).map_err(sys("open"))?;
            if chmod {
                rustix::fs::fchmod(&dfd, Mode::from_raw_mode(mode)).map_err(sys("fchmod"))?;
            }
            self.ctx.set_xattrs_fd(dfd.as_fd(), &meta.xattrs)?;
        }
        self.dir_fixes.push(DirFix {
            path: path.to_vec(),
            times: meta.timestamps(),
            mode: if defer_mode { Some(mode) } else { None },
        });
        if freed_dir {
            self.dirs.invalidate();
        }
        Ok(())
    }

    /// A `./` entry: metadata for the root directory itself.
    pub(super) fn root_dir(&mut self) -> Result<(), Fail> {
        let meta = &self.meta;
        let fd = open_dir_at(self.dirs.root.as_fd(), c".").map_err(sys("open"))?;
        if self.ctx.privs.chown {
            let (u, g) = Ctx::chown_args(meta);
            rustix::fs::fchown(&fd, u, g).map_err(sys("fchown"))?;
        }
        let defer_mode = !self.ctx.privs.dac && meta.mode & 0o700 != 0o700;
        if !defer_mode {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(sys("fchmod"))?;
        }
        self.ctx.set_xattrs_fd(fd.as_fd(), &meta.xattrs)?;
        self.dir_fixes.push(DirFix {
            path: Vec::new(),
            times: meta.timestamps(),
            mode: if defer_mode { Some(meta.mode) } else { None },
        });
        Ok(())
    }

    pub(super) fn symlink(&mut self, parent: &[u8], name: &[u8], target: &[u8]) -> Result<(), Fail> {
        self.enter(parent)?;
        let pfd = self.dirs.fd(parent);
        let mut freed_dir = false;
        match rustix::fs::symlinkat(target, pfd, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                freed_dir = clear_slot(pfd, name, false).map_err(sys("replace"))? == Slot::FreedDir;
                rustix::fs::symlinkat(target, pfd, name).map_err(sys("symlinkat"))?;
            }
            Err(e) => return Err(Fail::Sys("symlinkat", e.into())),
        }
        self.finish_node(parent, name, false)?;
        if freed_dir {
            self.dirs.invalidate();
        }
        Ok(())
    }

    /// Owner, mode, xattrs and times of something created by name (symlink, device, fifo).
    pub(super) fn finish_node(&self, parent: &[u8], name: &[u8], chmod: bool) -> Result<(), Fail> {
        let pfd = self.dirs.fd(parent);
        let meta = &self.meta;
        if self.ctx.needs_chown(meta, self.dirs.setgid(parent)) {
            let (u, g) = Ctx::chown_args(meta);
            rustix::fs::chownat(pfd, name, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(sys("chownat"))?;
        }
        if chmod && self.ctx.needs_chmod(meta.mode) {
            chmod_nofollow(pfd, name, meta.mode).map_err(sys("chmod"))?;
        }
        self.ctx.set_xattrs_at(pfd, name, &meta.xattrs)?;
        rustix::fs::utimensat(pfd, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW).map_err(sys("utimensat"))?;
        Ok(())
    }

    pub(super) fn hardlink(
        &mut self,
        parent: &[u8],
        name: &[u8],
        depth: usize,
        target: &[u8],
        link: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        let escape = || Fail::Unsafe(UnsafeEntry::HardlinkEscape);
        if target.contains(&0) {
            return Err(escape());
        }
        clean_path(target, link).map_err(|_| escape())?;
        if link.is_empty() {
            return Err(escape());
        }
        let (tparent, tname) = split_parent(link);
        // The target's directory, resolved strictly inside the root (no symlinks).
        let tdir: Option<OwnedFd> = if tparent.is_empty() {
            None
        } else {
            match self.dirs.open_strict(tparent) {
                Ok(fd) => Some(fd),
                Err(Errno::NOSYS) => match self.dirs.walk(tparent, false, None) {
                    Ok(Some(fd)) => Some(fd),
                    _ => return Err(escape()),
                },
                Err(_) => return Err(escape()),
            }
        };
        let tfd = tdir.as_ref().map(|f| f.as_fd()).unwrap_or(self.dirs.root.as_fd());
        // A hardlink to a symlink is a second symlink with the same target at another depth:
        // it must stay inside the root from there too (`a/b/l -> ../../x` linked as `h`).
        match rustix::fs::readlinkat(tfd, tname, Vec::new()) {
            Ok(t) if symlink_escapes(depth, t.as_bytes()) => return Err(Fail::Unsafe(UnsafeEntry::SymlinkEscape)),
            _ => {} // not a symlink (EINVAL), missing (linkat says so), or fine
        }
        self.enter(parent)?;
        let pfd = self.dirs.fd(parent);
        let tfd = tdir.as_ref().map(|f| f.as_fd()).unwrap_or(self.dirs.root.as_fd());
        let mut freed_dir = false;
        match rustix::fs::linkat(tfd, tname, pfd, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(escape()),
            Err(Errno::EXIST) => {
                if tparent == parent && tname == name {
                    return Ok(()); // a link to itself: already there
                }
                freed_dir = clear_slot(pfd, name, false).map_err(sys("replace"))? == Slot::FreedDir;
                match rustix::fs::linkat(tfd, tname, pfd, name, AtFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::NOENT) => return Err(escape()),
                    Err(e) => return Err(Fail::Sys("linkat", e.into())),
                }
            }
            Err(e) => return Err(Fail::Sys("linkat", e.into())),
        }
        if freed_dir {
            self.dirs.invalidate();
        }
        Ok(())
    }

    pub(super) fn node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        etype: EntryType,
        parent: &[u8],
        name: &[u8],
    ) -> Result<(), Fail> {
        let (ftype, dev) = match etype {
            EntryType::Fifo => (FileType::Fifo, 0),
            _ => {
                let h = entry.header();
                let major = h.device_major().map_err(Fail::Tar)?.unwrap_or(0);
                let minor = h.device_minor().map_err(Fail::Tar)?.unwrap_or(0);
                let ftype = if etype == EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                let whiteout = ftype == FileType::CharacterDevice && major == 0 && minor == 0;
                if !whiteout && !self.ctx.allow_devices {
                    return Err(Fail::Unsafe(UnsafeEntry::DeviceNode));
                }
                (ftype, rustix::fs::makedev(major, minor))
            }
        };
        self.enter(parent)?;
        let pfd = self.dirs.fd(parent);
        let mode = Mode::from_raw_mode(self.meta.mode & 0o777);
        let mut freed_dir = false;
        let r = match rustix::fs::mknodat(pfd, name, ftype, mode, dev) {
            Err(Errno::EXIST) => {
                freed_dir = clear_slot(pfd, name, false).map_err(sys("replace"))? == Slot::FreedDir;
                rustix::fs::mknodat(pfd, name, ftype, mode, dev)
            }
            r => r,
        };
        match r {
            Ok(()) => {}
            // Only a 0/0 whiteout gets here without allow_devices (kernels before 5.8).
            Err(Errno::PERM) if !self.ctx.allow_devices && ftype != FileType::Fifo => {
                return Err(Fail::Unsafe(UnsafeEntry::DeviceNode));
            }
            Err(e) => return Err(Fail::Sys("mknodat", e.into())),
        }
        self.finish_node(parent, name, true)?;
        if freed_dir {
            self.dirs.invalidate();
        }
        Ok(())
    }
}
