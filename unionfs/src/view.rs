//! A union view in user space: resolve a path and list a directory through a stack of layer
//! dirs without mounting (top-down lookup; whiteouts hide; an opaque dir stops descent).
//!
//! The rules are overlayfs's (`fs/overlayfs/namei.c`), so the view can serve as the oracle
//! a kernel mount is checked against (see `tests/it/view_vs_kernel.rs`):
//!
//! - A name is looked up in the layers of its parent's merged dir, top first. The first layer
//!   that has it decides: a whiteout hides it; a non-directory is the entry (and hides all
//!   below); a directory is the entry and is merged with the directories of the same name
//!   further down, until a layer has a whiteout or a non-directory there (which ends the
//!   merge) or the directory found is opaque. Layers without the name are skipped.
//! - The root of the union merges the roots of all layers (an opaque mark on a layer root is
//!   ignored, as overlay does).
//! - A merged directory lists the union of its layers' names with the entry of the highest
//!   layer, without whiteouts (both whiteout kinds of the overlay formats; AUFS `.wh.*` names
//!   and the opaque marker are never listed or looked up).
//!
//! Where the kernel differs, the view gives the semantic answer: overlay lists a whiteout
//! (as a name whose `lstat` fails with `ENOENT`) in a directory it does not merge (one that
//! exists in a single layer, or is opaque), and lists an xwhiteout unless its directory
//! carries `overlay.opaque=x`; the view never lists a whiteout.
//!
//! Symlinks are never followed (the kernel resolves them at the VFS level, possibly outside
//! the union): [`UnionView::lookup`] reports a symlink as itself, and a path whose
//! *intermediate* component is a symlink in the union is an error
//! ([`crate::Error::SymlinkInPath`]). An intermediate component that is a file (or other
//! non-directory) makes the path not found (`Ok(None)`, the kernel's `ENOTDIR`).
//!
//! Layers are read with file descriptors (`openat` with `O_NOFOLLOW`, `statat` with
//! `AT_SYMLINK_NOFOLLOW`), so nothing inside a layer can lead the view outside it.
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use crate::error::SysContext;
use crate::fsutil;
use crate::whiteout::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::{Error, Result, ValidationError, WhiteoutFormat};

/// What a path resolves to in the union.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViewEntry {
    /// Index of the layer it comes from (0 = bottom).
    pub layer: usize,
    /// Its real path in that layer.
    pub real_path: PathBuf,
    /// File type.
    pub kind: EntryKind,
}

/// File types in a union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

impl EntryKind {
    /// The kind of a file type.
    pub fn from_file_type(ft: std::fs::FileType) -> EntryKind {
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        }
    }

    pub(crate) fn from_rustix(ft: FileType) -> EntryKind {
        match ft {
            FileType::Directory => EntryKind::Dir,
            FileType::RegularFile => EntryKind::File,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

/// A read-only union of layer dirs (bottom first), in one whiteout format.
#[derive(Debug, Clone)]
pub struct UnionView {
    layers: Vec<PathBuf>,
    format: WhiteoutFormat,
}

/// A merged directory: the layers that hold it (index, open dir), top first.
pub(crate) type Stack = Vec<(usize, OwnedFd)>;

/// How one name looks in one layer's directory.
enum Probe {
    Missing,
    Whiteout,
    Entry { kind: EntryKind, dir: Option<(OwnedFd, bool)> },
}

/// One entry of a merged listing, with what the copy driver needs.
#[derive(Debug)]
pub(crate) struct Merged {
    /// The layer the entry comes from.
    pub(crate) layer: usize,
    /// Its `lstat` in that layer.
    pub(crate) st: Stat,
    /// Its kind.
    pub(crate) kind: EntryKind,
    /// For a directory: the layers merged into it, top first.
    pub(crate) sub: Vec<usize>,
    open: bool,
}

enum Slot {
    Hidden,
    Found(Merged),
}

impl UnionView {
    /// A view over `layers` (bottom first).
    pub fn new(layers: Vec<PathBuf>, format: WhiteoutFormat) -> UnionView {
        UnionView { layers, format }
    }

    /// The layer dirs, bottom first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The whiteout format.
    pub fn format(&self) -> WhiteoutFormat {
        self.format
    }

    /// Normalises a union path: an absolute path is taken relative to the union root, `.` is
    /// dropped and `..` is resolved lexically; a `..` that climbs above the root is refused.
    pub fn normalize(path: &Path) -> Result<PathBuf> {
        let mut out = PathBuf::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        return Err(ValidationError::UnionPathEscapes { path: path.to_owned() }.into());
                    }
                }
                Component::Normal(n) => out.push(n),
            }
        }
        Ok(out)
    }

    /// Resolves `path` (relative to the union root; symlinks are not followed).
    pub fn lookup(&self, path: &Path) -> Result<Option<ViewEntry>> {
        let rel = Self::normalize(path)?;
        Ok(self.resolve(&rel, false)?.map(|(e, _)| e))
    }

    /// Lists a directory of the union.
    pub fn read_dir(&self, path: &Path) -> Result<BTreeMap<std::ffi::OsString, ViewEntry>> {
        let rel = Self::normalize(path)?;
        let stack = match self.resolve(&rel, true)? {
            Some((e, _)) if e.kind != EntryKind::Dir => {
                return Err(Error::sys_at("read_dir", e.real_path, Errno::NOTDIR));
            }
            Some((_, stack)) => stack,
            None => return Err(Error::sys_at("read_dir", rel, Errno::NOENT)),
        };
        let merged = self.merged(&rel, &stack, false)?;
        Ok(merged
            .into_iter()
            .map(|(name, m)| {
                let real_path = self.layers[m.layer].join(&rel).join(&name);
                (name, ViewEntry { layer: m.layer, real_path, kind: m.kind })
            })
            .collect())
    }

    /// Every path of the union below its root (not the root itself), parents before their
    /// children, names in byte order.
    pub fn walk(&self) -> Result<Vec<(PathBuf, ViewEntry)>> {
        let roots = self.open_roots()?;
        let mut out = Vec::new();
        let mut todo = vec![(PathBuf::new(), self.root_stack())];
        while let Some((rel, layers)) = todo.pop() {
            let stack = self.open_stack(&roots, &rel, &layers)?;
            let merged = self.merged(&rel, &stack, true)?;
            let mut subdirs = Vec::new();
            for (name, m) in merged {
                let p = rel.join(&name);
                let real_path = self.layers[m.layer].join(&p);
                if m.kind == EntryKind::Dir {
                    subdirs.push((p.clone(), m.sub));
                }
                out.push((p, ViewEntry { layer: m.layer, real_path, kind: m.kind }));
            }
            todo.extend(subdirs.into_iter().rev());
        }
        // Depth-first order: parents come first because each dir is listed before its subdirs.
        Ok(out)
    }

    /// The root's merge stack: every layer, top first.
    pub(crate) fn root_stack(&self) -> Vec<usize> {
        (0..self.layers.len()).rev().collect()
    }

    /// Opens the root of every layer (index = layer).
    pub(crate) fn open_roots(&self) -> Result<Vec<OwnedFd>> {
        if self.layers.is_empty() {
            return Err(ValidationError::NoLayers.into());
        }
        self.layers.iter().map(|l| fsutil::open_root(l).sys_at("open", l)).collect()
    }

    /// Opens the dir `rel` in each of `layers`.
    pub(crate) fn open_stack(&self, roots: &[OwnedFd], rel: &Path, layers: &[usize]) -> Result<Stack> {
        layers
            .iter()
            .map(|&l| {
                fsutil::open_beneath(roots[l].as_fd(), rel)
                    .map(|fd| (l, fd))
                    .sys_with("openat2", || self.layers[l].join(rel))
            })
            .collect()
    }

    /// Resolves a normalised path; with `want_stack`, a directory comes with its merge stack.
    fn resolve(&self, rel: &Path, want_stack: bool) -> Result<Option<(ViewEntry, Stack)>> {
        let top = self.layers.len().saturating_sub(1);
        let comps: Vec<&OsStr> = rel.iter().collect();
        let mut stack: Stack = self.open_roots()?.into_iter().enumerate().rev().collect();
        if comps.is_empty() {
            let e = ViewEntry { layer: top, real_path: self.layers[top].clone(), kind: EntryKind::Dir };
            return Ok(Some((e, stack)));
        }
        let mut sofar = PathBuf::new();
        for (i, name) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            sofar.push(name);
            if self.format == WhiteoutFormat::Aufs && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Ok(None);
            }
            // Only an intermediate dir (or a dir whose listing is wanted) needs its merge stack.
            let need_dirs = !last || want_stack;
            let mut found: Option<(usize, EntryKind)> = None;
            let mut next: Stack = Vec::new();
            for (l, fd) in &stack {
                let real = || self.layers[*l].join(&sofar);
                match self.probe(fd.as_fd(), name, need_dirs, &real)? {
                    Probe::Missing => continue,
                    Probe::Whiteout => break,
                    Probe::Entry { kind, dir, .. } => {
                        if found.is_none() {
                            found = Some((*l, kind));
                        } else if kind != EntryKind::Dir {
                            break;
                        }
                        if !need_dirs || kind != EntryKind::Dir {
                            break;
                        }
                        let (dfd, opaque) = dir.expect("probe opened the dir");
                        next.push((*l, dfd));
                        if opaque {
                            break;
                        }
                    }
                }
            }
            let Some((layer, kind)) = found else { return Ok(None) };
            if last {
                let e = ViewEntry { layer, real_path: self.layers[layer].join(&sofar), kind };
                return Ok(Some((e, next)));
            }
            match kind {
                EntryKind::Dir => stack = next,
                EntryKind::Symlink => return Err(Error::SymlinkInPath { path: rel.to_owned(), symlink: sofar }),
                _ => return Ok(None),
            }
        }
        unreachable!("the loop returns at the last component")
    }

    /// Looks at `name` in one layer dir. With `open_dir`, a directory is opened and its opacity
    /// read.
    fn probe(&self, dir: BorrowedFd<'_>, name: &OsStr, open_dir: bool, real: &dyn Fn() -> PathBuf) -> Result<Probe> {
        let st = fsutil::lstat_at(dir, name).sys_with("lstat", real)?;
        let Some(st) = st else {
            if self.format == WhiteoutFormat::Aufs {
                let wh = aufs_whiteout(name);
                if let Some(wh) = wh
                    && fsutil::lstat_at(dir, &wh).sys_with("lstat", real)?.is_some()
                {
                    return Ok(Probe::Whiteout);
                }
            }
            return Ok(Probe::Missing);
        };
        if self.format.is_overlay()
            && whiteout::is_overlay_whiteout_at(dir, name, &st, self.format).sys_with("lgetxattr", real)?
        {
            return Ok(Probe::Whiteout);
        }
        let kind = EntryKind::from_rustix(fsutil::kind_of(&st));
        let mut dirinfo = None;
        if open_dir && kind == EntryKind::Dir {
            let fd = fsutil::open_dir_at(dir, name).sys_with("openat", real)?;
            let mut opaque = whiteout::dir_fd_is_opaque(fd.as_fd(), self.format).sys_with("opaque", real)?;
            if !opaque && self.format == WhiteoutFormat::Aufs {
                // `.wh.X` beside a dir `X` of the same layer: X replaces the dirs below.
                if let Some(wh) = aufs_whiteout(name) {
                    opaque = fsutil::lstat_at(dir, &wh).sys_with("lstat", real)?.is_some();
                }
            }
            dirinfo = Some((fd, opaque));
        }
        Ok(Probe::Entry { kind, dir: dirinfo })
    }

    /// The merged listing of a directory whose merge stack (top first) is `stack`. With
    /// `want_sub`, each subdirectory comes with its own merge stack.
    pub(crate) fn merged(
        &self,
        rel: &Path,
        stack: &[(usize, OwnedFd)],
        want_sub: bool,
    ) -> Result<BTreeMap<OsString, Merged>> {
        let mut slots: BTreeMap<OsString, Slot> = BTreeMap::new();
        for (l, fd) in stack {
            let fd = fd.as_fd();
            let dpath = || self.layers[*l].join(rel);
            let entries = fsutil::list_dir_sorted(fd).sys_with("getdents", dpath)?;
            let mut whiteouts: Vec<OsString> = Vec::new();
            for (name, _) in entries {
                if self.format == WhiteoutFormat::Aufs && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                    if name != OPAQUE_MARKER
                        && let Some(t) = whiteout::whiteout_target(&name)
                        && !fsutil::bad_component(t)
                    {
                        whiteouts.push(t.to_owned());
                    }
                    continue;
                }
                let epath = || dpath().join(&name);
                if matches!(slots.get(&name), Some(Slot::Hidden)) {
                    continue;
                }
                if let Some(Slot::Found(m)) = slots.get(&name)
                    && !m.open
                {
                    continue;
                }
                let Some(st) = fsutil::lstat_at(fd, &name).sys_with("lstat", epath)? else {
                    continue;
                };
                if self.format.is_overlay()
                    && whiteout::is_overlay_whiteout_at(fd, &name, &st, self.format).sys_with("lgetxattr", epath)?
                {
                    whiteouts.push(name);
                    continue;
                }
                let kind = EntryKind::from_rustix(fsutil::kind_of(&st));
                let opaque = || -> Result<bool> {
                    let dfd = fsutil::open_dir_at(fd, &name).sys_with("openat", epath)?;
                    whiteout::dir_fd_is_opaque(dfd.as_fd(), self.format).sys_with("opaque", epath)
                };
                match slots.get_mut(&name) {
                    None => {
                        let open = want_sub && kind == EntryKind::Dir && !opaque()?;
                        let sub = if kind == EntryKind::Dir { vec![*l] } else { Vec::new() };
                        slots.insert(name, Slot::Found(Merged { layer: *l, st, kind, sub, open }));
                    }
                    Some(Slot::Found(m)) => {
                        if kind == EntryKind::Dir {
                            m.sub.push(*l);
                            m.open = !opaque()?;
                        } else {
                            m.open = false;
                        }
                    }
                    Some(Slot::Hidden) => {}
                }
            }
            for t in whiteouts {
                match slots.get_mut(&t) {
                    None => {
                        slots.insert(t, Slot::Hidden);
                    }
                    Some(Slot::Found(m)) => m.open = false,
                    Some(Slot::Hidden) => {}
                }
            }
        }
        Ok(slots
            .into_iter()
            .filter_map(|(n, s)| match s {
                Slot::Found(m) => Some((n, m)),
                Slot::Hidden => None,
            })
            .collect())
    }
}

/// `.wh.NAME`, when it fits in a file name.
fn aufs_whiteout(name: &OsStr) -> Option<OsString> {
    if name.len() + WHITEOUT_PREFIX.len() > 255 {
        return None;
    }
    let mut s = OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        let n = |p: &str| UnionView::normalize(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(n("/a/b").unwrap(), "a/b");
        assert_eq!(n("a/./b/").unwrap(), "a/b");
        assert_eq!(n("a/../b").unwrap(), "b");
        assert_eq!(n("/").unwrap(), "");
        assert_eq!(n("").unwrap(), "");
        assert!(n("..").is_err());
        assert!(n("/a/../..").is_err());
        assert!(n("a/../../b").is_err());
    }

    #[test]
    fn no_layers_is_an_error() {
        let v = UnionView::new(Vec::new(), WhiteoutFormat::Overlay);
        assert!(matches!(v.lookup(Path::new("x")), Err(Error::Invalid(ValidationError::NoLayers))));
    }

    #[test]
    fn aufs_whiteout_names() {
        assert_eq!(aufs_whiteout(OsStr::new("a")).unwrap(), ".wh.a");
        assert!(aufs_whiteout(OsStr::new(&"a".repeat(252))).is_none());
    }
}
