//! A comparable snapshot of a directory tree (never following a symlink).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// One entry's kind and what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A character device (rdev).
    Char(u64),
    /// A block device (rdev).
    Block(u64),
    /// A fifo.
    Fifo,
    /// A socket.
    Socket,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Kind and content.
    pub kind: Kind,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// xattrs by name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    /// Whether this is an overlay whiteout (a 0/0 char device).
    pub fn is_overlay_whiteout(&self) -> bool {
        self.kind == Kind::Char(0)
    }
}

/// Relative path (bytes) → entry; the root itself is `b""`.
pub type Tree = BTreeMap<Vec<u8>, Entry>;

/// Snapshots `root`.
pub fn snapshot(root: &Path) -> Tree {
    let mut out = Tree::new();
    walk(root, Vec::new(), &mut out);
    out
}

fn walk(path: &Path, rel: Vec<u8>, out: &mut Tree) {
    let md = fs::symlink_metadata(path).expect("lstat in the tree");
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File(fs::read(path).unwrap_or_default())
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path).map(|t| t.as_os_str().as_bytes().to_vec()).unwrap_or_default())
    } else if ft.is_char_device() {
        Kind::Char(md.rdev())
    } else if ft.is_block_device() {
        Kind::Block(md.rdev())
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    };
    let mut xattrs = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    if let Ok(n) = rustix::fs::llistxattr(path, &mut names) {
        for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let mut value = vec![0u8; 65536];
            let c = std::ffi::CString::new(name).expect("xattr name");
            if let Ok(len) = rustix::fs::lgetxattr(path, c.as_c_str(), &mut value) {
                value.truncate(len);
                xattrs.insert(name.to_vec(), value);
            }
        }
    }
    let is_dir = kind == Kind::Dir;
    out.insert(rel.clone(), Entry { kind, mode: md.mode() & 0o7777, xattrs });
    if is_dir {
        let mut children: Vec<_> = fs::read_dir(path).expect("list a dir in the tree").map(|e| e.unwrap()).collect();
        children.sort_by_key(|e| e.file_name());
        for c in children {
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(c.file_name().as_bytes());
            walk(&c.path(), r, out);
        }
    }
}
