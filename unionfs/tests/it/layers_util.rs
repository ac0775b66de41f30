//! Helpers shared by the whiteout, view, vfs and view-vs-kernel tests: building layer trees,
//! snapshotting trees for comparison, dropping CAP_MKNOD on one thread.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn at(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() { root.to_owned() } else { root.join(rel) }
}

/// Writes a file (creating parents), with a mode.
pub fn file(root: &Path, rel: &str, content: &str, mode: u32) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates a dir (and parents).
pub fn dir(root: &Path, rel: &str) {
    fs::create_dir_all(root.join(rel)).unwrap();
}

/// Creates a symlink (parents created).
pub fn symlink(root: &Path, rel: &str, target: &str) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &p).unwrap();
}

/// Creates a 0/0 char device (an overlay whiteout).
pub fn chardev_whiteout(root: &Path, rel: &str) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, &p, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
        .unwrap();
}

/// An empty AUFS whiteout file `.wh.NAME` for `rel` (= DIR/NAME).
pub fn aufs_whiteout(root: &Path, rel: &str) {
    let p = at(root, rel);
    let name = p.file_name().unwrap().to_str().unwrap().to_owned();
    file(root, &Path::new(rel).with_file_name(format!(".wh.{name}")).to_string_lossy(), "", 0o644);
}

/// Sets an xattr (not following symlinks).
pub fn xattr(root: &Path, rel: &str, key: &str, value: &[u8]) {
    rustix::fs::lsetxattr(at(root, rel), key, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// All xattrs of a path (not followed).
pub fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        let mut v = vec![0u8; 65536];
        let m = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
        v.truncate(m);
        out.insert(name, v);
    }
    out
}

/// What a snapshot records for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    /// File content or symlink target.
    pub data: Vec<u8>,
    pub mtime: Option<(i64, i64)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// One path's snapshot (`None` if it does not exist).
pub fn snap_one(p: &Path, with_mtime: bool) -> Option<Snap> {
    let md = fs::symlink_metadata(p).ok()?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    let data = match kind {
        'f' => fs::read(p).unwrap(),
        'l' => fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec(),
        _ => Vec::new(),
    };
    Some(Snap {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev(),
        data,
        mtime: with_mtime.then(|| (md.mtime(), md.mtime_nsec())),
        xattrs: xattrs(p),
    })
}

/// A whole tree (the root itself under ""), without following symlinks.
pub fn snapshot(root: &Path, with_mtime: bool) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        let s = snap_one(&p, with_mtime).unwrap();
        if s.kind == 'd' {
            let mut names: Vec<OsString> = fs::read_dir(&p).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            for n in names {
                todo.push(rel.join(n));
            }
        }
        out.insert(rel, s);
    }
    out
}

/// Runs `f` on a thread whose effective and permitted capabilities lack CAP_MKNOD (capabilities
/// are per thread; the rest of the process keeps them).
pub fn without_cap_mknod<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
            let mut caps = capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::MKNOD);
            caps.permitted.remove(CapabilitySet::MKNOD);
            caps.inheritable.remove(CapabilitySet::MKNOD);
            set_capabilities(None, caps).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}
