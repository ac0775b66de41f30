//! `.wh.NAME` and `.wh..wh..opq` entries: deleted (plain extraction), turned into overlay
//! whiteouts and opaque xattrs (the format's own names), or kept as they are (AUFS).

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;

use super::Applier;
use super::ctx::{Ctx, Fail, sys};
use crate::UnsafeEntry;
use crate::fsutil::{Slot, clear_except, clear_slot, open_dir_at, remove_all_at};
use crate::whiteout::TRUSTED_OPAQUE_XATTR;

impl Applier<'_> {
    /// A `.wh.` entry (not in AUFS mode).
    pub(super) fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<(), Fail> {
        if name == crate::OPAQUE_MARKER.as_bytes() {
            return self.opaque(parent);
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(()); // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs, ...): not content
        }
        let target = &name[crate::WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Fail::Unsafe(UnsafeEntry::BadWhiteout));
        }
        match self.ctx.whiteouts {
            None => {
                if !self.dirs.enter(parent, false, None)? {
                    return Ok(()); // nothing there to delete
                }
                let pfd = self.dirs.fd(parent);
                let was_dir = rustix::fs::statat(pfd, target, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                remove_all_at(pfd, target).map_err(sys("remove"))?;
                if was_dir {
                    self.dirs.invalidate();
                }
            }
            Some(_) => {
                self.enter(parent)?;
                let pfd = self.dirs.fd(parent);
                let dev = rustix::fs::makedev(0, 0);
                let mut freed_dir = false;
                match rustix::fs::mknodat(pfd, target, FileType::CharacterDevice, Mode::empty(), dev) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        freed_dir = clear_slot(pfd, target, false).map_err(sys("replace"))? == Slot::FreedDir;
                        rustix::fs::mknodat(pfd, target, FileType::CharacterDevice, Mode::empty(), dev)
                            .map_err(sys("mknodat(whiteout)"))?;
                    }
                    Err(e) => return Err(Fail::Sys("mknodat(whiteout)", e.into())),
                }
                let meta = &self.meta;
                if self.ctx.privs.chown && (meta.uid != self.ctx.euid || meta.gid != self.ctx.egid) {
                    let (u, g) = Ctx::chown_args(meta);
                    rustix::fs::chownat(pfd, target, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(sys("chownat"))?;
                }
                if freed_dir {
                    self.dirs.invalidate();
                }
            }
        }
        Ok(())
    }

    /// `DIR/.wh..wh..opq`.
    pub(super) fn opaque(&mut self, parent: &[u8]) -> Result<(), Fail> {
        match self.ctx.whiteouts {
            None => {
                if !self.dirs.enter(parent, false, None)? {
                    return Ok(());
                }
                let dfd = open_dir_at(self.dirs.fd(parent), c".").map_err(sys("open"))?;
                let keep = self.unpacked.as_ref().expect("plain extraction tracks unpacked paths");
                let mut prefix = parent.to_vec();
                let r = clear_except(dfd.as_fd(), &mut prefix, keep).map_err(sys("clear opaque dir"));
                // Directories below the cached parent may be gone.
                self.dirs.invalidate();
                r?;
            }
            Some(format) => {
                self.enter(parent)?;
                let xattr = format.opaque_xattr().unwrap_or(TRUSTED_OPAQUE_XATTR);
                let dfd = open_dir_at(self.dirs.fd(parent), c".").map_err(sys("open"))?;
                rustix::fs::fsetxattr(&dfd, xattr, b"y", XattrFlags::empty()).map_err(sys("fsetxattr(opaque)"))?;
            }
        }
        Ok(())
    }
}
