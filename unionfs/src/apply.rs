//! Applying a Docker/OCI layer tarball (plain, gzip or zstd) to a directory, safely; see
//! [`apply_layer`].
//!
//! This file drives an apply (the stream, the entry loop, the end-of-archive drain, directory
//! times at the end); the rest is one concern per submodule:
//!
//! - `options` — the public [`ApplyOptions`], [`Progress`] and [`Applied`];
//! - `limits` — [`Limits`] and how a stopped stream is reported;
//! - `stream` — decompression, counting, hashing, the guards the limits use;
//! - `ctx` — what is fixed for one apply (privileges, umask, whiteout mode) and `Fail`;
//! - `meta` — an entry's metadata from its headers and PAX records;
//! - `report` — progress reports;
//! - `dirs` — parent directories opened safely inside the root;
//! - `path` — cleaning entry names, symlink escapes, depth bounds;
//! - `entries` — one function per entry kind (file, dir, symlink, hard link, node);
//! - `whiteouts` — `.wh.` entries and opaque markers;
//! - (the fd helpers it uses live in `crate::fsutil`, shared with the rest of the crate).

mod ctx;
mod dirs;
mod entries;
mod limits;
mod meta;
mod options;
mod path;
mod report;
mod stream;
mod whiteouts;

pub use limits::Limits;
pub use options::{Applied, ApplyOptions, Progress};

pub(crate) use path::{MAX_DEPTH, MAX_PATH_BYTES};

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{Mode, OFlags, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use self::ctx::{Ctx, Fail, Privileges, bad_tar, current_umask};
use self::dirs::{Dirs, RESOLVE_STRICT};
use self::limits::{disk_size, limit_max, stream_error};
use self::meta::Meta;
use self::path::{clean_path, split_parent, symlink_escapes};
use self::report::Reporter;
use self::stream::{ExtLimit, Guard, Hashing, Meter};
use crate::error::SysContext;
use crate::fsutil::open_dir_at;
use crate::whiteout::WHITEOUT_PREFIX;
use crate::{Digest, Error, Limit, Result, UnsafeEntry, WhiteoutFormat};

/// Size of the data copy buffer.
const COPY_BUF: usize = 1024 * 1024;

/// Applies a layer tar read from `input` (compression detected from magic bytes: gzip, zstd or
/// plain) onto the directory `root`.
///
/// The tar crate is used only to iterate entries and read headers (incl. PAX records and GNU
/// long names); every file is written by nook, never by `tar::Entry::unpack` (which has
/// an open symlink-escape bug). The root is opened once; each entry's parent directory is
/// opened with `openat2(root, parent, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)` (the last one is cached, so consecutive entries of one directory cost
/// one `openat2`), and the entry itself is created relative to that fd with `O_NOFOLLOW` /
/// `O_EXCL`, so neither `..`, an absolute name nor a symlink can lead outside the root.
///
/// # What is refused
/// Each refusal is a typed [`Error::Unsafe`] naming the entry; nothing is written for it and the
/// apply stops (the directory keeps what earlier entries wrote — the store applies into a
/// temporary dir and discards it).
///
/// | entry | reason |
/// |---|---|
/// | a `..` that climbs above the root (`../../x`, `a/../../x`) | [`UnsafeEntry::ParentDir`] |
/// | an absolute name (`/etc/passwd`; refused, not stripped like Docker does) | [`UnsafeEntry::Absolute`] |
/// | a name whose parent path goes through a symlink — one placed earlier in the same tar (`l -> /`, then `l/etc/passwd`) or one already in the directory | [`UnsafeEntry::ThroughSymlink`] |
/// | a name whose parent path loops (`a -> b`, `b -> a`, then `a/x`) | [`UnsafeEntry::SymlinkLoop`] |
/// | a relative symlink target whose `..` climbs above the root, resolved lexically from the link's directory (`l -> ../../..`) | [`UnsafeEntry::SymlinkEscape`] |
/// | a hardlink whose target is outside the root, absolute, missing, or reached through a symlink | [`UnsafeEntry::HardlinkEscape`] |
/// | a name longer than `PATH_MAX`, deeper than 1024 components, or with a component longer than `NAME_MAX` (checked lexically first: a 10 000-deep name creates nothing) | [`UnsafeEntry::TooDeep`] |
/// | a block or character device unless [`ApplyOptions::allow_devices`] (a 0/0 character device, an overlay whiteout, is always allowed) | [`UnsafeEntry::DeviceNode`] |
/// | a whiteout naming nothing, `.` or `..` (`.wh.`, `.wh..`, `.wh...`) | [`UnsafeEntry::BadWhiteout`] |
/// | a name (or an opaque marker) below something that is not a directory (`f/.wh..wh..opq` after a file `f`) | [`UnsafeEntry::NotADirectory`] |
///
/// # Limits
/// Going over one of [`ApplyOptions::limits`] (total file bytes, entries, expansion ratio,
/// data after the end of the archive; see [`Limits`]) stops the apply with
/// [`Error::LimitExceeded`] naming the limit and the value, before the file that would go
/// over is created (bytes), or as soon as the stream shows it (ratio, trailing data).
///
/// # Sparse files
/// GNU sparse entries (`tar --sparse`) are written sparse: data at its offsets, holes skipped
/// (never written as zeros), the file cut to its real size. Holes count into
/// [`Limits::max_bytes`] and [`Limits::max_ratio`].
///
/// Absolute symlink *targets* are allowed (`usr/bin/foo -> /bin/busybox` is everywhere in real
/// images): inside a container they resolve against the container's root, and nook never
/// follows a symlink while extracting.
///
/// # Replacing existing entries (Docker's rules)
/// An entry replaces whatever is at its path; a directory over an existing directory keeps it
/// (merging contents) and updates its metadata. A file replacing a directory removes the
/// directory tree first. Missing parent directories are created (mode 0755).
///
/// # Whiteouts ([`ApplyOptions::whiteouts`])
/// - `Some(WhiteoutFormat::Overlay)` / `Some(WhiteoutFormat::OverlayUserXattr)`: for a layer
///   dir used as an overlay lower. `.wh.NAME` becomes a 0/0 character device `NAME`;
///   `DIR/.wh..wh..opq` sets `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) on `DIR`.
/// - `Some(WhiteoutFormat::Aufs)`: `.wh.` files are kept as the tar has them.
/// - `None`: a plain extraction onto a full root filesystem (the flattened image, the vfs
///   driver): `.wh.NAME` deletes `NAME` (recursively), and `DIR/.wh..wh..opq` deletes
///   everything in `DIR` that this layer did not itself create.
///
/// In the overlay formats and `None`, AUFS metadata entries (`.wh..wh.*` other than the opaque
/// marker) are skipped. xattrs in overlay's own namespaces (`trusted.overlay.*`,
/// `user.overlay.*`) are never taken from a tar: only whiteout entries make whiteouts and
/// opaque dirs.
///
/// # Metadata
/// Modes (incl. setuid/setgid/sticky, set after the owner change that clears them), owners
/// (when the caller has `CAP_CHOWN`; skipped otherwise), xattrs from PAX `SCHILY.xattr.*`
/// records (set after chown, which clears `security.capability`; `EOPNOTSUPP` is ignored, and
/// `EPERM` too for unprivileged callers), mtime and atime (PAX fractional times when present).
/// Directory times — and, for unprivileged callers, modes that lack owner `rwx` — are set at
/// the end, after their contents. Hardlinks share their target's metadata.
///
/// # Progress and DiffID
/// The DiffID is the sha256 of the uncompressed stream, hashed as it is read; after the tar's
/// end-of-archive the rest of the stream is drained into the hash too, so it equals
/// `sha256sum` of the `.tar` file exactly. Progress ([`Progress`]) is reported after each entry
/// and every 4 MiB of input read or data written within big entries; `bytes_read` counts
/// compressed (input) bytes.
pub fn apply_layer(input: impl Read, root: &Path, options: ApplyOptions<'_>) -> Result<Applied> {
    let ApplyOptions { whiteouts, bytes_total, progress, allow_devices, limits } = options;
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .sys_at("open", root)?;
    let root_setgid = rustix::fs::fstat(&root_fd).map(|st| st.st_mode & libc::S_ISGID != 0).unwrap_or(false);
    let privs = Privileges::current();
    let count = Rc::new(Cell::new(0u64));
    let meter = Rc::new(Meter::new(count.clone(), limits.max_ratio, limits.ratio_grace));
    let tar_err = |e: io::Error| stream_error(&meter, &limits, None, e);
    let decoded = stream::decoder(input, count.clone()).map_err(tar_err)?;
    let limited = ExtLimit::new(Hashing::new(Guard::new(decoded, meter.clone())));
    let (pos, watch) = limited.handles();
    let mut archive = tar::Archive::new(limited);

    let mut ap = Applier {
        root_path: root.to_path_buf(),
        dirs: Dirs { root: root_fd, root_setgid, cache_path: Vec::new(), cache: None, openat2: true },
        ctx: Ctx {
            whiteouts,
            allow_devices,
            privs,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: current_umask(),
        },
        reporter: Reporter { cb: progress, counter: count, total: bytes_total, last: 0, data_since: 0 },
        buf: vec![0u8; COPY_BUF],
        raw: Vec::new(),
        path: Vec::new(),
        link: Vec::new(),
        meta: Meta::default(),
        dir_fixes: Vec::new(),
        unpacked: if whiteouts.is_none() { Some(HashSet::new()) } else { None },
        entries: 0,
        limits,
        meter: meter.clone(),
        served: pos.clone(),
        file_bytes: 0,
    };

    {
        let entries = archive.entries().map_err(tar_err)?;
        let mut seen = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(tar_err)?;
            seen += 1;
            if seen > limits.max_entries {
                return Err(Error::LimitExceeded {
                    limit: Limit::Entries,
                    value: seen,
                    max: limits.max_entries,
                    entry: Some(PathBuf::from(OsStr::from_bytes(&entry.path_bytes()))),
                });
            }
            // The header after this entry is watched for oversized extension headers.
            let data = disk_size(&mut entry).map_err(tar_err)?;
            watch.set(Some(pos.get() + data.div_ceil(512) * 512));
            ap.entry(&mut entry)?;
        }
    }
    ap.finish_dirs()?;

    // Drain what follows the end-of-archive block so the DiffID covers the whole stream (GNU
    // tar pads to its record size), but only up to the limit: zeros can follow for ever.
    watch.set(None);
    let mut rest = archive.into_inner();
    let mut trailing = 0u64;
    loop {
        let n = match rest.read(&mut ap.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tar_err(e)),
        };
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if trailing > limits.max_trailing {
            return Err(Error::LimitExceeded {
                limit: Limit::TrailingData,
                value: trailing,
                max: limits.max_trailing,
                entry: None,
            });
        }
    }
    let (hash, size) = rest.into_inner().finish();
    ap.reporter.report(ap.entries);
    Ok(Applied { diff_id: Digest::from_sha256_bytes(&hash), size, entries: ap.entries })
}

/// A directory whose times (and maybe mode) are set at the end.
struct DirFix {
    path: Vec<u8>,
    times: Timestamps,
    mode: Option<u32>,
}

struct Applier<'o> {
    root_path: PathBuf,
    dirs: Dirs,
    ctx: Ctx,
    reporter: Reporter<'o>,
    buf: Vec<u8>,
    raw: Vec<u8>,
    path: Vec<u8>,
    link: Vec<u8>,
    meta: Meta,
    dir_fixes: Vec<DirFix>,
    /// Paths this layer created (plain extraction only: opaque dirs keep them).
    unpacked: Option<HashSet<Vec<u8>>>,
    entries: u64,
    limits: Limits,
    meter: Rc<Meter>,
    /// Bytes the tar crate has taken from the stream (data read from a sparse entry without
    /// moving it came from a hole).
    served: Rc<Cell<u64>>,
    /// Regular file bytes so far ([`Limits::max_bytes`]).
    file_bytes: u64,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        if etype.is_pax_local_extensions() || etype.is_gnu_longname() || etype.is_gnu_longlink() {
            // Only reaches here with a header the tar crate does not take for ustar/GNU: not
            // an extension then, and reading its PAX records would buffer all its data.
            return Err(Error::Tar {
                entry: None,
                source: io::Error::new(io::ErrorKind::InvalidData, format!("unsupported entry type {etype:?}")),
            });
        }
        self.raw.clear();
        self.raw.extend_from_slice(&entry.path_bytes());
        let mut path = std::mem::take(&mut self.path);
        let r = self.apply_entry(entry, etype, &mut path);
        let r = r.map_err(|f| self.error(f, &path));
        self.path = path;
        r?;
        self.entries += 1;
        self.reporter.report(self.entries);
        Ok(())
    }

    fn error(&self, fail: Fail, clean: &[u8]) -> Error {
        let entry = PathBuf::from(OsStr::from_bytes(&self.raw));
        match fail {
            Fail::Unsafe(reason) => Error::Unsafe { entry, reason },
            Fail::Sys(call, source) => Error::sys_at(call, self.root_path.join(OsStr::from_bytes(clean)), source),
            Fail::Tar(source) => stream_error(&self.meter, &self.limits, Some(entry), source),
            Fail::Limit(limit, value) => {
                Error::LimitExceeded { limit, value, max: limit_max(&self.limits, limit), entry: Some(entry) }
            }
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        etype: EntryType,
        path: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        if self.raw.contains(&0) {
            return Err(bad_tar("NUL byte in entry name"));
        }
        let depth = clean_path(&self.raw, path).map_err(Fail::Unsafe)?;
        self.meta.read(entry).map_err(Fail::Tar)?;
        let (parent, name) = split_parent(path);

        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) && self.ctx.whiteouts != Some(WhiteoutFormat::Aufs) {
            return self.whiteout(parent, name);
        }
        if name.is_empty() {
            // The root itself ("./"): only a directory entry makes sense; it sets the root's
            // metadata.
            if etype != EntryType::Directory {
                return Err(bad_tar("a non-directory entry names the layer root"));
            }
            return self.root_dir();
        }
        if let Some(set) = self.unpacked.as_mut() {
            set.insert(path.clone());
        }
        match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => self.file(entry, parent, name),
            EntryType::Directory => self.dir(parent, name, path),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| bad_tar("symlink without a target"))?;
                if target.contains(&0) {
                    return Err(bad_tar("NUL byte in symlink target"));
                }
                if symlink_escapes(depth, &target) {
                    return Err(Fail::Unsafe(UnsafeEntry::SymlinkEscape));
                }
                self.symlink(parent, name, &target)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| bad_tar("hardlink without a target"))?;
                let mut link = std::mem::take(&mut self.link);
                let r = self.hardlink(parent, name, depth, &target, &mut link);
                self.link = link;
                r
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => self.node(entry, etype, parent, name),
            _ => Err(bad_tar(&format!("unsupported entry type {:?}", etype))),
        }
    }

    /// `create` variant of [`Dirs::enter`], recording created dirs for opaque handling.
    fn enter(&mut self, parent: &[u8]) -> Result<(), Fail> {
        self.dirs.enter(parent, true, self.unpacked.as_mut()).map(|_| ())
    }

    /// Directory times (and deferred modes), after all contents are in place.
    fn finish_dirs(&mut self) -> Result<()> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for fix in self.dir_fixes.iter().rev() {
            let p: &[u8] = if fix.path.is_empty() { b"." } else { &fix.path };
            let fd = if self.dirs.openat2 {
                match rustix::fs::openat2(&self.dirs.root, p, flags, Mode::empty(), RESOLVE_STRICT) {
                    Ok(fd) => fd,
                    // Replaced or removed by a later entry.
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                    Err(e) => return Err(Error::sys_at("openat2", self.root_path.join(OsStr::from_bytes(p)), e)),
                }
            } else {
                let (parent, name) = split_parent(p);
                match self.dirs.walk(parent, false, None) {
                    Ok(dir) => {
                        let at = dir.as_ref().map(|f| f.as_fd()).unwrap_or(self.dirs.root.as_fd());
                        match open_dir_at(at, name) {
                            Ok(fd) => fd,
                            Err(_) => continue,
                        }
                    }
                    Err(_) => continue,
                }
            };
            let path = || self.root_path.join(OsStr::from_bytes(p));
            if let Some(mode) = fix.mode {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).sys_with("fchmod", path)?;
            }
            rustix::fs::futimens(&fd, &fix.times).sys_with("futimens", path)?;
        }
        Ok(())
    }
}
