//! Test helpers: building layer tars (ordinary and hostile) and snapshotting trees.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// A layer tar under construction.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
    pub count: u64,
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar { b: tar::Builder::new(Vec::new()), count: 0 }
    }

    /// PAX records for the next entry (e.g. `SCHILY.xattr.user.x`).
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0, 0, 1_600_000_000)
    }

    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut h = header(EntryType::Directory, mode, uid, gid, mtime, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self.count += 1;
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_owned(path, data, 0o644, 0, 0, 1_600_000_000)
    }

    pub fn file_owned(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut h = header(EntryType::Regular, mode, uid, gid, mtime, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self.count += 1;
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Symlink, 0o777, 0, 0, 1_600_000_000, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self.count += 1;
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Link, 0o644, 0, 0, 1_600_000_000, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self.count += 1;
        self
    }

    pub fn device(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = header(kind, 0o666, 0, 0, 1_600_000_000, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self.count += 1;
        self
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        let mut h = header(EntryType::Fifo, 0o600, 0, 0, 1_600_000_000, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self.count += 1;
        self
    }

    /// An entry with raw name / link bytes, bypassing the Builder's checks (`..`, absolute
    /// names, very long names: those go into a PAX `path` / `linkpath` record).
    pub fn raw(&mut self, kind: EntryType, name: &[u8], link: Option<&[u8]>, data: &[u8]) -> &mut Self {
        let mut records: Vec<(&str, &[u8])> = Vec::new();
        if name.len() > 100 {
            records.push(("path", name));
        }
        if let Some(l) = link
            && l.len() > 100
        {
            records.push(("linkpath", l));
        }
        if !records.is_empty() {
            self.b.append_pax_extensions(records).unwrap();
        }
        let mut h = header(
            kind,
            if kind == EntryType::Directory { 0o755 } else { 0o644 },
            0,
            0,
            1_600_000_000,
            data.len() as u64,
        );
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        if let Some(l) = link {
            let n = l.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self.count += 1;
        self
    }

    /// A GNU sparse file (`tar --sparse`) of `real_size` bytes with `chunks` of data at their
    /// offsets (ascending; every chunk but the last a multiple of 512 bytes long) and holes
    /// elsewhere. More than 4 chunks go into GNU extension sparse headers.
    pub fn sparse(&mut self, path: &str, real_size: u64, chunks: &[(u64, &[u8])]) -> &mut Self {
        let stored: u64 = chunks.iter().map(|c| c.1.len() as u64).sum();
        // A hole at the end is a last, empty chunk at the real size (as GNU tar writes it).
        let mut chunks = chunks.to_vec();
        if chunks.last().is_none_or(|(o, d)| o + d.len() as u64 != real_size) {
            chunks.push((real_size, &[][..]));
        }
        let mut h = header(EntryType::GNUSparse, 0o644, 0, 0, 1_600_000_000, stored);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        let mut exts: Vec<tar::GnuExtSparseHeader> = Vec::new();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.set_real_size(real_size);
            for (i, (off, data)) in chunks.iter().enumerate() {
                let slot = if i < 4 {
                    &mut gnu.sparse[i]
                } else {
                    let k = (i - 4) / 21;
                    if exts.len() <= k {
                        exts.push(tar::GnuExtSparseHeader::new());
                    }
                    &mut exts[k].sparse_mut()[(i - 4) % 21]
                };
                slot.set_offset(*off);
                slot.set_length(data.len() as u64);
            }
            gnu.set_is_extended(!exts.is_empty());
        }
        let n = exts.len();
        for (k, e) in exts.iter_mut().enumerate() {
            e.set_is_extended(k + 1 < n);
        }
        h.set_cksum();
        let out = self.b.get_mut();
        out.extend_from_slice(h.as_bytes());
        for e in &exts {
            out.extend_from_slice(e.as_bytes());
        }
        for (_, data) in &chunks {
            out.extend_from_slice(data);
        }
        out.resize(out.len().div_ceil(512) * 512, 0);
        self.count += 1;
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// `sha256sum FILE` (the real binary), as `sha256:<hex>`.
pub fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", s.split_whitespace().next().unwrap())
}

/// `printf %s TEXT | sha256sum`, as `sha256:<hex>`.
pub fn sha256sum_of(text: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256:{}", String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap())
}

/// One node of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files: contents; symlinks: target; devices: "major:minor".
    pub data: Vec<u8>,
    /// mtime seconds for regular files (None for other kinds).
    pub mtime: Option<i64>,
    /// user.* xattrs.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn user_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let mut v = vec![0u8; 4096];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut v[..]) {
            v.truncate(len);
            out.push((String::from_utf8_lossy(name).into_owned(), v));
        }
    }
    out.sort();
    out
}

/// Walks `root` (not following symlinks) into path → node.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let dir = root.join(rel);
    let mut ents: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    ents.sort();
    for name in ents {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let (kind, data, mtime) = if ft.is_dir() {
            ("dir", Vec::new(), None)
        } else if ft.is_file() {
            ("file", fs::read(&path).unwrap(), Some(md.mtime()))
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&path).unwrap().as_os_str().as_bytes().to_vec(), None)
        } else if ft.is_char_device() {
            ("char", format!("{}:{}", rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())).into_bytes(), None)
        } else if ft.is_block_device() {
            ("block", format!("{}:{}", rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())).into_bytes(), None)
        } else if ft.is_fifo() {
            ("fifo", Vec::new(), None)
        } else {
            ("other", Vec::new(), None)
        };
        let mode = if ft.is_symlink() { 0 } else { md.mode() & 0o7777 };
        out.insert(
            rel.clone(),
            Node { kind, mode, uid: md.uid(), gid: md.gid(), data, mtime, xattrs: user_xattrs(&path) },
        );
        if ft.is_dir() {
            walk(root, &rel, out);
        }
    }
}

/// Asserts two snapshots are equal, listing the differences.
#[track_caller]
pub fn assert_same_tree(a: &BTreeMap<PathBuf, Node>, b: &BTreeMap<PathBuf, Node>, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => diffs.push(format!("only in left: {}", k.display())),
            Some(w) if w != v => {
                diffs.push(format!("differs: {}\n  left  {:?}\n  right {:?}", k.display(), short(v), short(w)))
            }
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            diffs.push(format!("only in right: {}", k.display()));
        }
    }
    assert!(diffs.is_empty(), "{what}: trees differ:\n{}", diffs.join("\n"));
}

fn short(n: &Node) -> Node {
    let mut n = n.clone();
    if n.data.len() > 64 {
        n.data.truncate(64);
    }
    n
}

/// getxattr (not following symlinks) or None.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut v[..]).ok()?;
    v.truncate(n);
    Some(v)
}

/// A temp dir with a `layer/` to apply into and a `canary/` beside it (files a hostile layer
/// must never reach).
pub struct Arena {
    tmp: nook_testutil::TempDir,
}

impl Arena {
    /// Makes one (`tag` names the temp dir).
    pub fn new(tag: &str) -> Arena {
        let tmp = nook_testutil::TempDir::new(tag).unwrap();
        fs::create_dir(tmp.join("layer")).unwrap();
        fs::create_dir(tmp.join("canary")).unwrap();
        fs::write(tmp.join("canary/secret"), b"do not touch").unwrap();
        fs::write(tmp.join("canary/passwd"), b"root:x:0:0").unwrap();
        Arena { tmp }
    }

    /// The layer dir.
    pub fn layer(&self) -> PathBuf {
        self.tmp.join("layer")
    }

    /// The canary dir.
    pub fn canary(&self) -> PathBuf {
        self.tmp.join("canary")
    }

    /// Everything in the temp dir except what is inside `layer/`.
    pub fn outside(&self) -> BTreeMap<PathBuf, Node> {
        let mut s = snapshot(self.tmp.path());
        s.retain(|k, _| !k.starts_with("layer/"));
        s
    }

    /// Applies `tar` expecting `reason`; checks nothing outside the layer changed.
    #[track_caller]
    pub fn refuses(
        &self,
        tar: &[u8],
        options: nook_unionfs::ApplyOptions<'_>,
        reason: nook_unionfs::UnsafeEntry,
        bad_entry: &str,
    ) {
        let before = self.outside();
        let parent_before = fs::metadata(self.tmp.path().parent().unwrap()).unwrap();
        let r = nook_unionfs::apply_layer(tar, &self.layer(), options);
        match r {
            Err(nook_unionfs::Error::Unsafe { entry, reason: got }) => {
                assert_eq!(got, reason, "entry {entry:?}");
                assert_eq!(entry.as_os_str().as_bytes(), bad_entry.as_bytes(), "the refused entry is named");
            }
            other => panic!("expected Unsafe({reason:?}), got {other:?}"),
        }
        let after = self.outside();
        assert_same_tree(&before, &after, "outside the layer dir");
        assert_eq!(fs::metadata(self.canary().join("secret")).unwrap().nlink(), 1, "no hardlink to the canary");
        let parent_after = fs::metadata(self.tmp.path().parent().unwrap()).unwrap();
        assert_eq!(parent_before.ino(), parent_after.ino());
    }
}
