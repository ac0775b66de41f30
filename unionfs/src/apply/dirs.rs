//! Parent directories inside the layer root: opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS)` (or walked one component at a time), the last one cached.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::ctx::Fail;
use crate::UnsafeEntry;

/// The root and the last parent directory opened.
pub(super) struct Dirs {
    pub(super) root: OwnedFd,
    pub(super) root_setgid: bool,
    pub(super) cache_path: Vec<u8>,
    pub(super) cache: Option<(OwnedFd, bool)>,
    pub(super) openat2: bool,
}

pub(super) const RESOLVE_STRICT: ResolveFlags =
    ResolveFlags::IN_ROOT.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);
pub(super) const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

impl Dirs {
    /// The current directory for entries whose parent is `parent` (after [`Dirs::enter`]).
    pub(super) fn fd(&self, parent: &[u8]) -> BorrowedFd<'_> {
        if parent.is_empty() {
            return self.root.as_fd();
        }
        match &self.cache {
            Some((fd, _)) => fd.as_fd(),
            None => self.root.as_fd(),
        }
    }

    pub(super) fn setgid(&self, parent: &[u8]) -> bool {
        if parent.is_empty() {
            return self.root_setgid;
        }
        self.cache.as_ref().is_some_and(|c| c.1)
    }

    /// Forgets the cached parent (after a directory was removed).
    pub(super) fn invalidate(&mut self) {
        self.cache = None;
        self.cache_path.clear();
    }

    /// Makes `parent` (a cleaned path, empty for the root) current. Missing directories are
    /// created (mode 0755) when `create` (and recorded in `created`); otherwise a missing
    /// parent gives `Ok(false)`.
    pub(super) fn enter(
        &mut self,
        parent: &[u8],
        create: bool,
        created: Option<&mut HashSet<Vec<u8>>>,
    ) -> Result<bool, Fail> {
        if parent.is_empty() || (self.cache.is_some() && self.cache_path == parent) {
            return Ok(true);
        }
        self.invalidate();
        let fd = match self.open_strict(parent) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(false),
            Err(Errno::NOENT) | Err(Errno::NOSYS) => match self.walk(parent, create, created)? {
                Some(fd) => fd,
                None => return Ok(false),
            },
            Err(e) => return Err(self.classify(parent, e)),
        };
        let setgid = rustix::fs::fstat(&fd).map(|st| st.st_mode & libc::S_ISGID != 0).unwrap_or(false);
        self.cache = Some((fd, setgid));
        self.cache_path.extend_from_slice(parent);
        Ok(true)
    }

    /// Opens an existing directory inside the root, refusing symlinks anywhere on the way.
    pub(super) fn open_strict(&mut self, path: &[u8]) -> Result<OwnedFd, Errno> {
        if !self.openat2 {
            return Err(Errno::NOSYS);
        }
        let mut again = 0;
        loop {
            match rustix::fs::openat2(&self.root, path, DIR_PATH, Mode::empty(), RESOLVE_STRICT) {
                Err(Errno::AGAIN) | Err(Errno::INTR) if again < 8 => again += 1,
                Err(Errno::NOSYS) => {
                    self.openat2 = false;
                    return Err(Errno::NOSYS);
                }
                r => return r,
            }
        }
    }

    /// Turns a resolution error into a typed refusal where it is one.
    pub(super) fn classify(&self, path: &[u8], e: Errno) -> Fail {
        match e {
            Errno::LOOP => {
                // A symlink on the way: a loop if following symlinks (inside the root) loops too.
                let flags = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
                match rustix::fs::openat2(&self.root, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), flags) {
                    Err(Errno::LOOP) => Fail::Unsafe(UnsafeEntry::SymlinkLoop),
                    _ => Fail::Unsafe(UnsafeEntry::ThroughSymlink),
                }
            }
            Errno::NAMETOOLONG => Fail::Unsafe(UnsafeEntry::TooDeep),
            Errno::XDEV => Fail::Unsafe(UnsafeEntry::ParentDir),
            // A file (or fifo, ...) where the path needs a directory.
            Errno::NOTDIR => Fail::Unsafe(UnsafeEntry::NotADirectory),
            e => Fail::Sys("openat2", e.into()),
        }
    }

    /// Component-by-component walk from the root (creating missing dirs when `create`); also
    /// the fallback on kernels without `openat2`. Single components, opened `O_NOFOLLOW`.
    pub(super) fn walk(
        &self,
        path: &[u8],
        create: bool,
        mut created: Option<&mut HashSet<Vec<u8>>>,
    ) -> Result<Option<OwnedFd>, Fail> {
        let mut cur: Option<OwnedFd> = None;
        let mut end = 0usize;
        for comp in path.split(|&b| b == b'/') {
            end += comp.len();
            let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            let open = |at: BorrowedFd<'_>| rustix::fs::openat(at, comp, DIR_PATH | OFlags::NOFOLLOW, Mode::empty());
            let next = match open(at) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            if let Some(set) = created.as_deref_mut() {
                                set.insert(path[..end].to_vec());
                            }
                        }
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(Fail::Sys("mkdirat", e.into())),
                    }
                    open(at).map_err(|e| self.classify_component(at, comp, e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.classify_component(at, comp, e)),
            };
            cur = Some(next);
            end += 1;
        }
        Ok(cur)
    }

    pub(super) fn classify_component(&self, at: BorrowedFd<'_>, comp: &[u8], e: Errno) -> Fail {
        match e {
            Errno::LOOP | Errno::NOTDIR => match rustix::fs::statat(at, comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Fail::Unsafe(UnsafeEntry::ThroughSymlink)
                }
                Ok(_) if e == Errno::NOTDIR => Fail::Unsafe(UnsafeEntry::NotADirectory),
                _ => Fail::Sys("openat", e.into()),
            },
            Errno::NAMETOOLONG => Fail::Unsafe(UnsafeEntry::TooDeep),
            e => Fail::Sys("openat", e.into()),
        }
    }
}
