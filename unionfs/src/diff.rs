//! Diff and commit (`docker commit`); see [`write_diff`] and [`LayerStore::commit`].

use std::collections::HashMap;
use std::ffi::CString;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::apply::{MAX_DEPTH, MAX_PATH_BYTES};
use crate::error::SysContext;
use crate::fsutil::{self, XTarget, list_dir_unsorted, open_dir_at, remove_tree};
use crate::whiteout::is_overlay_xattr_name;
use crate::{ApplyOptions, Digest, Error, Layer, LayerStore, Result, ValidationError, WhiteoutFormat};

/// Writes the changes in `upper` (in `format`) as an uncompressed OCI layer tar to `out`
/// (deterministic entry order); returns its DiffID (sha256 of the bytes written).
///
/// Overlay whiteouts become `.wh.` entries and opaque dirs `.wh..wh..opq`; with
/// [`LayerStore::commit`] the tar becomes a new layer — `docker commit`.
///
/// The tar is written deterministically: a depth-first walk with the entries of each
/// directory sorted by name (bytes), a directory before its contents, an opaque directory's
/// `.wh..wh..opq` marker right after the directory. Headers are POSIX ustar; a PAX record
/// carries what ustar cannot (long names and link targets, big ids, sizes or times) and the
/// xattrs (`SCHILY.xattr.NAME`). Times are whole seconds (mtime only, like Docker). The
/// archive ends with two zero blocks.
///
/// | in the upper dir | in the tar |
/// |---|---|
/// | regular file, dir, symlink, fifo, device | the same, with mode, owner, mtime, xattrs |
/// | a second name of a file (same inode) | a hardlink entry to the first name written |
/// | 0/0 char device (overlay formats) | `.wh.NAME`, an empty regular file |
/// | dir with `trusted.overlay.opaque=y` (`user.` with [`WhiteoutFormat::OverlayUserXattr`]) | the dir, then `DIR/.wh..wh..opq` |
/// | `.wh.` files ([`WhiteoutFormat::Aufs`]) | kept as they are |
/// | socket | left out (like Docker) |
/// | xattrs `trusted.overlay.*`, `user.overlay.*` | left out (overlay's own bookkeeping) |
///
/// An upper written with `redirect_dir=on` (a renamed directory, `overlay.redirect`) or
/// `metacopy=on` (a metadata-only copy-up, `overlay.metacopy`) cannot be turned into a layer
/// from the upper alone; such entries are refused with [`ValidationError::Undiffable`](crate::ValidationError::Undiffable).
pub fn write_diff(upper: &Path, format: WhiteoutFormat, out: impl Write) -> Result<Digest> {
    let root = rustix::fs::open(upper, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .sys_at("open", upper)?;
    let mut w = TarWriter {
        out: Hashing { inner: BufWriter::with_capacity(256 * 1024, out), hasher: Sha256::new() },
        buf: vec![0u8; 1024 * 1024],
        pax: Vec::new(),
    };
    let mut walk = Walk { upper, format, links: HashMap::new(), w: &mut w };
    let mut rel = Vec::new();
    walk.dir(root.as_fd(), &mut rel)?;
    w.out.write_all(&[0u8; 1024]).sys("write(layer tar)")?;
    w.out.inner.flush().sys("write(layer tar)")?;
    Ok(Digest::from_sha256_bytes(&w.out.hasher.finalize().into()))
}

impl LayerStore {
    /// Commits `upper` as a new layer on top of `parent`: writes the diff tar into the
    /// store's tmp dir, then applies it like any other layer (so the stored layer is exactly
    /// what the tar says), and removes the tar.
    pub fn commit(&self, upper: &Path, format: WhiteoutFormat, parent: Option<&Digest>) -> Result<Layer> {
        let (dir, diff_id) = self.tmp_file(|f| write_diff(upper, format, f))?;
        let tar = dir.join("layer.tar");
        let r = (|| {
            let file = File::open(&tar).sys_at("open", &tar)?;
            let len = file.metadata().map(|m| m.len()).ok();
            let options =
                ApplyOptions { whiteouts: Some(WhiteoutFormat::Overlay), bytes_total: len, ..Default::default() };
            let layer = self.apply(file, parent, options)?;
            if layer.diff_id != diff_id {
                return Err(Error::Corrupt {
                    path: tar.clone(),
                    detail: format!("diff id {} on apply, {} when written", layer.diff_id, diff_id),
                });
            }
            Ok(layer)
        })();
        match (r, remove_tree(&dir)) {
            (Ok(l), Ok(())) => Ok(l),
            (Ok(_), Err(c)) => Err(Error::sys_at("remove", &dir, c)),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(c)) => {
                Err(Error::Cleanup { cause: Box::new(e), cleanup: vec![Error::sys_at("remove", &dir, c)] })
            }
        }
    }
}

/// sha256 of everything written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One header's worth of metadata.
#[derive(Clone, Copy)]
struct Head<'a> {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<&'a [u8]>,
    dev: (u32, u32),
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

struct TarWriter<W: Write> {
    out: Hashing<BufWriter<W>>,
    buf: Vec<u8>,
    pax: Vec<u8>,
}

/// Splits a path into ustar (prefix, name), like Go's archive/tar.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    let search = &path[..(path.len() - 1).min(156)];
    let i = search.iter().rposition(|&b| b == b'/')?;
    let (prefix, name) = (&path[..i], &path[i + 1..]);
    if i == 0 || name.is_empty() || name.len() > 100 || prefix.len() > 155 {
        return None;
    }
    Some((prefix, name))
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl<W: Write> TarWriter<W> {
    fn header(&mut self, path: &[u8], h: &Head<'_>) -> io::Result<()> {
        self.pax.clear();
        let ustar = split_ustar(path);
        if ustar.is_none() {
            pax_record(&mut self.pax, b"path", path);
        }
        if let Some(link) = h.link
            && link.len() > 100
        {
            pax_record(&mut self.pax, b"linkpath", link);
        }
        if h.uid > USTAR_MAX_ID {
            pax_record(&mut self.pax, b"uid", h.uid.to_string().as_bytes());
        }
        if h.gid > USTAR_MAX_ID {
            pax_record(&mut self.pax, b"gid", h.gid.to_string().as_bytes());
        }
        if h.size > USTAR_MAX_SIZE {
            pax_record(&mut self.pax, b"size", h.size.to_string().as_bytes());
        }
        if h.mtime < 0 || h.mtime as u64 > USTAR_MAX_SIZE {
            pax_record(&mut self.pax, b"mtime", h.mtime.to_string().as_bytes());
        }
        for (name, value) in h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax_record(&mut self.pax, &key, value);
        }
        if !self.pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            set_name(&mut x, b"././@PaxHeader");
            x.set_mode(0o644);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(self.pax.len() as u64);
            x.set_entry_type(EntryType::XHeader);
            x.set_cksum();
            self.out.write_all(x.as_bytes())?;
            let pax = std::mem::take(&mut self.pax);
            let r = self.data_from_slice(&pax);
            self.pax = pax;
            r?;
        }

        let mut t = tar::Header::new_ustar();
        match ustar {
            Some((prefix, name)) => {
                set_name(&mut t, name);
                if let Some(u) = t.as_ustar_mut() {
                    u.prefix[..prefix.len()].copy_from_slice(prefix);
                }
            }
            None => set_name(&mut t, &path[..100]),
        }
        t.set_mode(h.mode);
        t.set_uid(if h.uid > USTAR_MAX_ID { 0 } else { h.uid });
        t.set_gid(if h.gid > USTAR_MAX_ID { 0 } else { h.gid });
        t.set_mtime(if h.mtime < 0 || h.mtime as u64 > USTAR_MAX_SIZE { 0 } else { h.mtime as u64 });
        t.set_size(if h.size > USTAR_MAX_SIZE { 0 } else { h.size });
        t.set_entry_type(h.kind);
        if let Some(link) = h.link {
            let n = link.len().min(100);
            t.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        }
        if matches!(h.kind, EntryType::Char | EntryType::Block) {
            t.set_device_major(h.dev.0)?;
            t.set_device_minor(h.dev.1)?;
        }
        t.set_cksum();
        self.out.write_all(t.as_bytes())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    fn data_from_slice(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Copies exactly `size` bytes of `file` (refusing one that shrank meanwhile).
    fn data_from_file(&mut self, file: &mut File, size: u64) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        self.pad(size)
    }
}

fn set_name(h: &mut tar::Header, name: &[u8]) {
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
}

/// The xattrs of an entry (read with [`fsutil::read_xattrs`]), overlay's own left out; also
/// says whether the overlay `opaque` xattr of `format` is `y`, and refuses redirect/metacopy.
fn read_xattrs(src: XTarget<'_>, format: WhiteoutFormat) -> Result<(Xattrs, bool, Option<&'static str>), Errno> {
    let mut out = Vec::new();
    let mut opaque = false;
    let mut refused = None;
    for (name, value) in fsutil::read_xattrs(src)? {
        let name = name.into_vec();
        if let Some(own) = format.overlay_xattr_prefix()
            && let Some(key) = name.strip_prefix(own.as_bytes())
        {
            match key {
                b"opaque" => opaque = value == b"y",
                b"redirect" => refused = Some("renamed directory (overlay redirect_dir)"),
                b"metacopy" => refused = Some("metadata-only copy-up (overlay metacopy)"),
                _ => {}
            }
        }
        if is_overlay_xattr_name(&name) {
            continue;
        }
        out.push((name, value));
    }
    Ok((out, opaque, refused))
}

/// Opens `name` in `dir` for reading only if it is still the regular file `st` describes.
///
/// The upper belongs to a running container, which may swap a file for a FIFO (an open
/// would block the commit forever) or a device node it made (the host would open the
/// device — a disk, a watchdog — and copy it into the layer) between the `stat` and the
/// `open`. So: an `O_PATH` open (no device open, no blocking), checked with `fstat`, then
/// reopened for reading through `/proc/thread-self/fd` (the same inode, whatever the name
/// is now).
fn open_regular(dir: BorrowedFd<'_>, name: &[u8], st: &rustix::fs::Stat) -> Result<OwnedFd, Errno> {
    let path = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    let now = rustix::fs::fstat(&path)?;
    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
        || (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
    {
        return Err(Errno::STALE); // changed between the stat and the open
    }
    rustix::fs::open(
        format!("/proc/thread-self/fd/{}", path.as_raw_fd()),
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

struct Walk<'a, W: Write> {
    upper: &'a Path,
    format: WhiteoutFormat,
    /// (dev, ino) of multiply linked files → the first path written.
    links: HashMap<(u64, u64), Vec<u8>>,
    w: &'a mut TarWriter<W>,
}

impl<W: Write> Walk<'_, W> {
    /// The path of an entry (for errors).
    fn path(&self, rel: &[u8]) -> PathBuf {
        self.upper.join(OsStr::from_bytes(rel))
    }

    fn refuse(&self, rel: &[u8], reason: &'static str) -> Error {
        ValidationError::Undiffable { path: self.path(rel), reason }.into()
    }

    fn sorted_names(&self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<std::vec::IntoIter<(CString, FileType)>> {
        let mut names = list_dir_unsorted(dir).sys_with("readdir", || self.path(rel))?;
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(names.into_iter())
    }

    /// The depth-first walk, with an explicit stack (an upper is written by the container,
    /// and may be far deeper than the call stack could recurse): refuses what apply would
    /// refuse as too deep or too long anyway.
    fn dir(&mut self, root: BorrowedFd<'_>, rel: &mut Vec<u8>) -> Result<()> {
        struct Level {
            fd: Option<OwnedFd>,
            names: std::vec::IntoIter<(CString, FileType)>,
            /// `rel`'s length before this dir's name.
            len: usize,
        }
        let overlay = self.format != WhiteoutFormat::Aufs;
        let mut stack = vec![Level { fd: None, names: self.sorted_names(root, rel)?, len: rel.len() }];
        loop {
            let depth = stack.len();
            let Some(top) = stack.last_mut() else { break };
            let Some((name, _)) = top.names.next() else {
                let done = stack.pop().expect("a level");
                rel.truncate(done.len);
                continue;
            };
            let dir = top.fd.as_ref().map(|f| f.as_fd()).unwrap_or(root);
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            if depth > MAX_DEPTH || rel.len() > MAX_PATH_BYTES {
                return Err(self.refuse(rel, "deeper or longer than a layer may be"));
            }
            match self.one(dir, name.as_bytes(), rel, overlay)? {
                Some(sub) => {
                    let names = self.sorted_names(sub.as_fd(), rel)?;
                    stack.push(Level { fd: Some(sub), names, len });
                }
                None => rel.truncate(len),
            }
        }
        Ok(())
    }

    /// Writes one entry; a directory's fd is returned for its contents.
    fn one(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &mut Vec<u8>, overlay: bool) -> Result<Option<OwnedFd>> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).sys_with("stat", || self.path(rel))?;
        let ftype = FileType::from_raw_mode(st.st_mode);
        let mode = st.st_mode & 0o7777;
        let (uid, gid, mtime) = (u64::from(st.st_uid), u64::from(st.st_gid), st.st_mtime);
        let mut head =
            Head { kind: EntryType::Regular, mode, uid, gid, mtime, size: 0, link: None, dev: (0, 0), xattrs: &[] };
        match ftype {
            FileType::Directory => {
                let sub = open_dir_at(dir, name).sys_with("open", || self.path(rel))?;
                let (xattrs, opaque, refused) =
                    read_xattrs(XTarget::Fd(sub.as_fd()), self.format).sys_with("xattrs", || self.path(rel))?;
                if let Some(why) = refused {
                    return Err(self.refuse(rel, why));
                }
                rel.push(b'/');
                head.kind = EntryType::Directory;
                head.xattrs = &xattrs;
                self.w.header(rel, &head).sys("write(layer tar)")?;
                rel.pop();
                if opaque && overlay {
                    let len = rel.len();
                    rel.push(b'/');
                    rel.extend_from_slice(crate::OPAQUE_MARKER.as_bytes());
                    let marker = Head { kind: EntryType::Regular, mode: mode & 0o777, mtime: 0, xattrs: &[], ..head };
                    let r = self.w.header(rel, &marker).sys("write(layer tar)");
                    rel.truncate(len);
                    r?;
                }
                Ok(Some(sub))
            }
            FileType::CharacterDevice if overlay && st.st_rdev == 0 => {
                // An overlay whiteout.
                let len = rel.len();
                let base = rel.len() - name.len();
                rel.truncate(base);
                rel.extend_from_slice(crate::WHITEOUT_PREFIX.as_bytes());
                rel.extend_from_slice(name);
                head.mode = 0;
                let r = self.w.header(rel, &head).sys("write(layer tar)");
                rel.truncate(base);
                rel.extend_from_slice(name);
                debug_assert_eq!(rel.len(), len);
                r.map(|()| None)
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        head.kind = EntryType::Link;
                        head.link = Some(&first);
                        return self.w.header(rel, &head).map(|()| None).sys("write(layer tar)");
                    }
                    self.links.insert(key, rel.clone());
                }
                let fd = open_regular(dir, name, &st).sys_with("open", || self.path(rel))?;
                let (xattrs, _, refused) =
                    read_xattrs(XTarget::Fd(fd.as_fd()), self.format).sys_with("xattrs", || self.path(rel))?;
                if let Some(why) = refused {
                    return Err(self.refuse(rel, why));
                }
                let mut file = File::from(fd);
                head.size = st.st_size as u64;
                head.xattrs = &xattrs;
                self.w.header(rel, &head).sys("write(layer tar)")?;
                self.w.data_from_file(&mut file, st.st_size as u64).sys_with("read", || self.path(rel))?;
                Ok(None)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).sys_with("readlink", || self.path(rel))?;
                let (xattrs, _, _) = read_xattrs(XTarget::At(dir, OsStr::from_bytes(name)), self.format)
                    .sys_with("xattrs", || self.path(rel))?;
                head.kind = EntryType::Symlink;
                head.link = Some(target.as_bytes());
                head.xattrs = &xattrs;
                self.w.header(rel, &head).map(|()| None).sys("write(layer tar)")
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                let (xattrs, _, _) = read_xattrs(XTarget::At(dir, OsStr::from_bytes(name)), self.format)
                    .sys_with("xattrs", || self.path(rel))?;
                head.kind = match ftype {
                    FileType::Fifo => EntryType::Fifo,
                    FileType::CharacterDevice => EntryType::Char,
                    _ => EntryType::Block,
                };
                head.dev = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                head.xattrs = &xattrs;
                self.w.header(rel, &head).map(|()| None).sys("write(layer tar)")
            }
            // Sockets (and anything unknown) are not layer content.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_split() {
        assert_eq!(split_ustar(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let long = [b"p".repeat(120), b"n".repeat(90)].join(&b'/');
        assert_eq!(split_ustar(&long), Some((&long[..120], &long[121..])));
        let dir = [b"p".repeat(120), b"n".repeat(90), b"".to_vec()].join(&b'/');
        assert_eq!(split_ustar(&dir), Some((&dir[..120], &dir[121..])));
        assert_eq!(split_ustar(&b"x".repeat(101)), None);
        let too_long_prefix = [b"p".repeat(160), b"n".repeat(10)].join(&b'/');
        assert_eq!(split_ustar(&too_long_prefix), None);
    }

    #[test]
    fn pax_lengths_count_themselves() {
        for vlen in [0usize, 1, 5, 88, 89, 90, 91, 989, 990, 995, 9990] {
            let mut out = Vec::new();
            let v = vec![b'v'; vlen];
            pax_record(&mut out, b"path", &v);
            let (len, _) = out.split_at(out.iter().position(|&b| b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {vlen}");
        }
    }
}
