//! Reading files of an image's root filesystem straight from its layers (no mount):
//! [`RootfsFiles`], and [`ImageStore::run_defaults`] on top of it.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use nook_unionfs::{EntryKind, UnionView, WhiteoutFormat};

use super::config::{RunDefaults, RunOverrides};
use super::error::{Result, SysContext};
use super::store::{Image, ImageStore};

/// Symlinks followed at most while resolving one path (the kernel's limit).
const MAX_HOPS: usize = 40;
/// Largest file read.
const MAX_FILE: u64 = 16 << 20;

/// The files of an image's root filesystem, read through its layer chain in user space
/// (top layer wins, whiteouts hide, symlinks resolve inside the image's root as they would
/// after `chroot`).
#[derive(Debug)]
pub struct RootfsFiles {
    view: UnionView,
}

impl RootfsFiles {
    /// The files of `image` in `store`.
    pub fn new(store: &ImageStore, image: &Image) -> Result<RootfsFiles> {
        let layers = match &image.chain_id {
            Some(top) => store.layer_store().chain(top)?.into_iter().map(|l| l.diff_dir).collect(),
            None => Vec::new(),
        };
        Ok(RootfsFiles { view: UnionView::new(layers, WhiteoutFormat::Overlay) })
    }

    /// Reads the regular file at `path` (absolute inside the image), following symlinks
    /// inside the image; `None` when it does not exist or is not a regular file.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(real) = self.resolve(path)? else { return Ok(None) };
        let file = match rustix::fs::open(
            &real,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => std::fs::File::from(fd),
            Err(e) => return Err(e).sys_at("open", real),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE).read_to_end(&mut bytes).sys_at("read", &real)?;
        Ok(Some(bytes))
    }

    /// A text file (lossy UTF-8), see [`RootfsFiles::read`].
    pub fn read_string(&self, path: &Path) -> Result<Option<String>> {
        Ok(self.read(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The real path (in one layer dir) of the regular file `path` resolves to.
    fn resolve(&self, path: &Path) -> Result<Option<PathBuf>> {
        let mut pending: VecDeque<PathBuf> = components(path).into();
        let mut cur = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            if c.as_os_str() == ".." {
                cur.pop();
                continue;
            }
            let cand = cur.join(&c);
            let Some(entry) = self.view.lookup(&cand)? else { return Ok(None) };
            match entry.kind {
                EntryKind::Symlink => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Ok(None);
                    }
                    let target = std::fs::read_link(&entry.real_path).sys_at("readlink", &entry.real_path)?;
                    if target.is_absolute() {
                        cur = PathBuf::new();
                    }
                    for t in components(&target).into_iter().rev() {
                        pending.push_front(t);
                    }
                }
                EntryKind::File if pending.is_empty() => return Ok(Some(entry.real_path)),
                EntryKind::Dir => cur = cand,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// The normal and `..` components of a path (root and `.` dropped).
fn components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

impl ImageStore {
    /// What a process of `image` runs with: its config's Entrypoint + Cmd, Env, WorkingDir
    /// and User with `overrides` applied (see [`RunDefaults::resolve`]); the user is resolved
    /// against the image's own `/etc/passwd` and `/etc/group`, read from its layers.
    pub fn run_defaults(&self, image: &Image, overrides: &RunOverrides) -> Result<RunDefaults> {
        let config = self.config(image)?;
        let files = RootfsFiles::new(self, image)?;
        let passwd = files.read_string(Path::new("/etc/passwd"))?;
        let group = files.read_string(Path::new("/etc/group"))?;
        RunDefaults::resolve(&image.reference, config.config().as_ref(), overrides, passwd.as_deref(), group.as_deref())
    }
}
