//! Applying a Docker/OCI layer tarball (plain, gzip or zstd) to a directory, safely; see
//! [`apply_layer`].

mod fsops;
mod path;
mod stream;

pub(crate) use fsops::{list_dir, open_dir_at, remove_all_at, remove_tree};
pub(crate) use path::{MAX_DEPTH, MAX_PATH_BYTES};

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use self::fsops::{Slot, chmod_nofollow, clear_except, clear_slot};
use self::path::{clean_path, split_parent, symlink_escapes};
use self::stream::{ExtLimit, Hashing};
use crate::{Digest, Error, Result, UnsafeEntry, WhiteoutFormat};

/// How far an apply has got (reported after each entry and every few MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Compressed (input) bytes read so far.
    pub bytes_read: u64,
    /// Total input bytes, when known (e.g. a file's size).
    pub bytes_total: Option<u64>,
    /// Entries applied so far.
    pub entries: u64,
}

/// Options for [`apply_layer`].
#[derive(Default)]
pub struct ApplyOptions<'a> {
    /// Whiteout format to write into the layer dir (`.wh.` entries are converted to it).
    pub whiteouts: Option<WhiteoutFormat>,
    /// Total input size for progress (else unknown).
    pub bytes_total: Option<u64>,
    /// Called with progress.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Create device nodes (default: only when the caller has CAP_MKNOD); without it a device
    /// entry is an error [`crate::UnsafeEntry::DeviceNode`].
    pub allow_devices: Option<bool>,
}

impl std::fmt::Debug for ApplyOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("whiteouts", &self.whiteouts)
            .field("bytes_total", &self.bytes_total)
            .field("progress", &self.progress.is_some())
            .field("allow_devices", &self.allow_devices)
            .finish()
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream (`sha256:<hex>`), the layer's DiffID.
    pub diff_id: crate::Digest,
    /// Uncompressed bytes.
    pub size: u64,
    /// Entries applied.
    pub entries: u64,
}

/// Size of the data copy buffer.
const COPY_BUF: usize = 1024 * 1024;
/// Progress is reported at least this often (input bytes) within a big entry.
const PROGRESS_EVERY: u64 = 4 * 1024 * 1024;

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
/// | a block or character device without `CAP_MKNOD` (or with `allow_devices: Some(false)`); a 0/0 character device (an overlay whiteout) is always allowed | [`UnsafeEntry::DeviceNode`] |
/// | a whiteout naming nothing, `.` or `..` (`.wh.`, `.wh..`, `.wh...`) | [`UnsafeEntry::BadWhiteout`] |
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
    let ApplyOptions { whiteouts, bytes_total, progress, allow_devices } = options;
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open", root, e.into()))?;
    let root_setgid = rustix::fs::fstat(&root_fd).map(|st| st.st_mode & libc::S_ISGID != 0).unwrap_or(false);
    let privs = Privileges::current();
    let count = Rc::new(Cell::new(0u64));
    let decoded = stream::decoder(input, count.clone()).map_err(|e| Error::Tar { entry: None, source: e })?;
    let limited = ExtLimit::new(Hashing::new(decoded));
    let (pos, watch) = limited.handles();
    let mut archive = tar::Archive::new(limited);

    let mut ap = Applier {
        root_path: root.to_path_buf(),
        dirs: Dirs { root: root_fd, root_setgid, cache_path: Vec::new(), cache: None, openat2: true },
        ctx: Ctx {
            whiteouts,
            allow_devices: allow_devices.unwrap_or(privs.mknod),
            devices_forced: allow_devices == Some(true),
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
    };

    {
        let entries = archive.entries().map_err(|e| Error::Tar { entry: None, source: e })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Tar { entry: None, source: e })?;
            // The header after this entry is watched for oversized extension headers.
            let data = disk_size(&mut entry).map_err(|e| Error::Tar { entry: None, source: e })?;
            watch.set(Some(pos.get() + data.div_ceil(512) * 512));
            ap.entry(&mut entry)?;
        }
    }
    ap.finish_dirs()?;

    // Drain what follows the end-of-archive blocks so the DiffID covers the whole stream.
    watch.set(None);
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| Error::Tar { entry: None, source: e })?;
    let (hash, size) = rest.into_inner().finish();
    ap.reporter.report(ap.entries);
    Ok(Applied { diff_id: Digest::from_sha256_bytes(&hash), size, entries: ap.entries })
}

/// How many bytes of data follow an entry's header(s) in the archive (for a GNU sparse file
/// that is what is stored, not its size), as the tar crate computes it: the header's size,
/// or a PAX `size` record's (which extension-type entries ignore).
fn disk_size<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<u64> {
    let t = entry.header().entry_type();
    if !t.is_gnu_sparse() {
        return Ok(entry.size());
    }
    let mut size = entry.header().entry_size()?;
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let Ok(ext) = ext else { break };
            if ext.key_bytes() == b"size" {
                if let Some(v) = ext.value().ok().and_then(|v| v.parse::<u64>().ok()) {
                    size = v;
                }
                break;
            }
        }
    }
    Ok(size)
}

/// What the caller may do.
#[derive(Debug, Clone, Copy)]
struct Privileges {
    chown: bool,
    mknod: bool,
    /// `CAP_DAC_OVERRIDE`: can create inside directories without write permission.
    dac: bool,
    /// `CAP_SYS_ADMIN`: can set `trusted.*` xattrs.
    admin: bool,
}

impl Privileges {
    fn current() -> Privileges {
        use rustix::thread::CapabilitySet as C;
        match rustix::thread::capabilities(None) {
            Ok(c) => Privileges {
                chown: c.effective.contains(C::CHOWN),
                mknod: c.effective.contains(C::MKNOD),
                dac: c.effective.contains(C::DAC_OVERRIDE),
                admin: c.effective.contains(C::SYS_ADMIN),
            },
            Err(_) => {
                let root = rustix::process::geteuid().is_root();
                Privileges { chown: root, mknod: root, dac: root, admin: root }
            }
        }
    }
}

/// The calling thread's umask, read from procfs (without changing it); `0o777` (so every
/// mode is set explicitly) when it cannot be read.
fn current_umask() -> u32 {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else { return 0o777 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o777)
}

/// An internal failure, turned into an [`Error`] with the entry's context.
#[derive(Debug)]
enum Fail {
    Unsafe(UnsafeEntry),
    Sys(&'static str, io::Error),
    Tar(io::Error),
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> Fail {
    move |e| Fail::Sys(op, e.into())
}

fn sys_io(op: &'static str) -> impl FnOnce(io::Error) -> Fail {
    move |e| Fail::Sys(op, e)
}

fn bad_tar(msg: &str) -> Fail {
    Fail::Tar(io::Error::new(io::ErrorKind::InvalidData, msg.to_string()))
}

/// Settings fixed for one apply.
struct Ctx {
    whiteouts: Option<WhiteoutFormat>,
    allow_devices: bool,
    devices_forced: bool,
    privs: Privileges,
    euid: u32,
    egid: u32,
    umask: u32,
}

impl Ctx {
    /// Whether a new object needs an explicit chown.
    fn needs_chown(&self, meta: &Meta, parent_setgid: bool) -> bool {
        self.privs.chown && (meta.uid != self.euid || meta.gid != self.egid || parent_setgid)
    }

    /// Whether a new non-directory created with `mode & 0o777` needs an explicit chmod.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || mode & self.umask != 0
    }

    fn chown_args(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
    }

    /// Whether an xattr error may be ignored.
    fn xattr_ignorable(&self, e: Errno) -> bool {
        e == Errno::OPNOTSUPP || (e == Errno::PERM && !self.privs.admin)
    }

    fn set_xattrs_fd(&self, fd: BorrowedFd<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Fail> {
        for (name, value) in xattrs {
            match rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if self.xattr_ignorable(e) => {}
                Err(e) => return Err(Fail::Sys("fsetxattr", e.into())),
            }
        }
        Ok(())
    }

    /// xattrs on something that cannot be opened for them (symlink, device, fifo): through
    /// `/proc/thread-self/fd/<dir>/<name>` without following the final symlink.
    fn set_xattrs_at(&self, dir: BorrowedFd<'_>, name: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Fail> {
        if xattrs.is_empty() {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        let mut p = format!("/proc/thread-self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        for (xname, value) in xattrs {
            match rustix::fs::lsetxattr(p.as_slice(), xname.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if self.xattr_ignorable(e) => {}
                Err(e) => return Err(Fail::Sys("lsetxattr", e.into())),
            }
        }
        Ok(())
    }
}

/// An entry's metadata.
#[derive(Default)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    atime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
        let h = entry.header();
        self.mode = h.mode()? & 0o7777;
        self.uid = id32(h.uid()?)?;
        self.gid = id32(h.gid()?)?;
        self.mtime = (h.mtime()? as i64, 0);
        self.atime = None;
        self.xattrs.clear();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    self.mtime = parse_pax_time(ext.value_bytes()).unwrap_or(self.mtime);
                } else if key == b"atime" {
                    self.atime = parse_pax_time(ext.value_bytes());
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                        continue;
                    }
                    self.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(())
    }

    fn timestamps(&self) -> Timestamps {
        let ts = |(s, ns): (i64, u32)| Timespec { tv_sec: s, tv_nsec: ns as _ };
        Timestamps { last_access: ts(self.atime.unwrap_or(self.mtime)), last_modification: ts(self.mtime) }
    }
}

fn id32(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("uid/gid {v} out of range")))
}

/// Parses a PAX time (`seconds[.fraction]`, possibly negative).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut ns: u32 = 0;
    let mut digits = 0;
    for c in frac.chars() {
        let d = c.to_digit(10)?;
        if digits < 9 {
            ns = ns * 10 + d;
            digits += 1;
        }
    }
    while digits < 9 {
        ns *= 10;
        digits += 1;
    }
    if s.starts_with('-') && ns != 0 {
        // -1.25 is 1.25 s before the epoch: (-2, 0.75 s).
        return Some((secs - 1, 1_000_000_000 - ns));
    }
    Some((secs, ns))
}

/// Progress reporting.
struct Reporter<'o> {
    cb: Option<&'o mut dyn FnMut(Progress)>,
    counter: Rc<Cell<u64>>,
    total: Option<u64>,
    /// Input bytes at the last report.
    last: u64,
    /// Entry data written since the last report (a well-compressed big file reads little
    /// input but still takes time to write).
    data_since: u64,
}

impl Reporter<'_> {
    fn report(&mut self, entries: u64) {
        if let Some(cb) = self.cb.as_mut() {
            let bytes_read = self.counter.get();
            self.last = bytes_read;
            self.data_since = 0;
            cb(Progress { bytes_read, bytes_total: self.total, entries });
        }
    }

    /// Within a big entry, after `data` more bytes were written: reports when enough input
    /// was read or enough data written since the last report.
    fn tick(&mut self, entries: u64, data: u64) {
        if self.cb.is_some() {
            self.data_since += data;
            if self.counter.get() - self.last >= PROGRESS_EVERY || self.data_since >= PROGRESS_EVERY {
                self.report(entries);
            }
        }
    }
}

/// The root and the last parent directory opened.
struct Dirs {
    root: OwnedFd,
    root_setgid: bool,
    cache_path: Vec<u8>,
    cache: Option<(OwnedFd, bool)>,
    openat2: bool,
}

const RESOLVE_STRICT: ResolveFlags =
    ResolveFlags::IN_ROOT.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);
const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

impl Dirs {
    /// The current directory for entries whose parent is `parent` (after [`Dirs::enter`]).
    fn fd(&self, parent: &[u8]) -> BorrowedFd<'_> {
        if parent.is_empty() {
            return self.root.as_fd();
        }
        match &self.cache {
            Some((fd, _)) => fd.as_fd(),
            None => self.root.as_fd(),
        }
    }

    fn setgid(&self, parent: &[u8]) -> bool {
        if parent.is_empty() {
            return self.root_setgid;
        }
        self.cache.as_ref().is_some_and(|c| c.1)
    }

    /// Forgets the cached parent (after a directory was removed).
    fn invalidate(&mut self) {
        self.cache = None;
        self.cache_path.clear();
    }

    /// Makes `parent` (a cleaned path, empty for the root) current. Missing directories are
    /// created (mode 0755) when `create` (and recorded in `created`); otherwise a missing
    /// parent gives `Ok(false)`.
    fn enter(&mut self, parent: &[u8], create: bool, created: Option<&mut HashSet<Vec<u8>>>) -> Result<bool, Fail> {
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
    fn open_strict(&mut self, path: &[u8]) -> Result<OwnedFd, Errno> {
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
    fn classify(&self, path: &[u8], e: Errno) -> Fail {
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
            e => Fail::Sys("openat2", e.into()),
        }
    }

    /// Component-by-component walk from the root (creating missing dirs when `create`); also
    /// the fallback on kernels without `openat2`. Single components, opened `O_NOFOLLOW`.
    fn walk(
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

    fn classify_component(&self, at: BorrowedFd<'_>, comp: &[u8], e: Errno) -> Fail {
        match e {
            Errno::LOOP | Errno::NOTDIR => match rustix::fs::statat(at, comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Fail::Unsafe(UnsafeEntry::ThroughSymlink)
                }
                _ => Fail::Sys("openat", e.into()),
            },
            Errno::NAMETOOLONG => Fail::Unsafe(UnsafeEntry::TooDeep),
            e => Fail::Sys("openat", e.into()),
        }
    }
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
            Fail::Sys(op, source) => Error::Sys { op, path: self.root_path.join(OsStr::from_bytes(clean)), source },
            Fail::Tar(source) => Error::Tar { entry: Some(entry), source },
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

        if name.starts_with(b".wh.") && self.ctx.whiteouts != Some(WhiteoutFormat::Aufs) {
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

    fn file<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, parent: &[u8], name: &[u8]) -> Result<(), Fail> {
        self.enter(parent)?;
        let mode = self.meta.mode;
        let pfd = self.dirs.fd(parent);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let create_mode = Mode::from_raw_mode(mode & 0o777);
        let mut freed_dir = false;
        let fd = match rustix::fs::openat(pfd, name, flags, create_mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                freed_dir = clear_slot(pfd, name, false).map_err(sys_io("replace"))? == Slot::FreedDir;
                rustix::fs::openat(pfd, name, flags, create_mode).map_err(sys("openat"))?
            }
            Err(e) => return Err(Fail::Sys("openat", e.into())),
        };
        let setgid = self.dirs.setgid(parent);
        let mut file = File::from(fd);
        let mut left = entry.size();
        while left > 0 {
            let want = (left.min(self.buf.len() as u64)) as usize;
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(0) => return Err(Fail::Tar(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Tar(e)),
            };
            file.write_all(&self.buf[..n]).map_err(sys_io("write"))?;
            left -= n as u64;
            self.reporter.tick(self.entries, n as u64);
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

    fn dir(&mut self, parent: &[u8], name: &[u8], path: &[u8]) -> Result<(), Fail> {
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
            Err(Errno::EXIST) => match clear_slot(pfd, name, true).map_err(sys_io("replace"))? {
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
            let dfd = open_dir_at(pfd, name).map_err(sys_io("open"))?;
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
    fn root_dir(&mut self) -> Result<(), Fail> {
        let meta = &self.meta;
        let fd = open_dir_at(self.dirs.root.as_fd(), b".").map_err(sys_io("open"))?;
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

    fn symlink(&mut self, parent: &[u8], name: &[u8], target: &[u8]) -> Result<(), Fail> {
        self.enter(parent)?;
        let pfd = self.dirs.fd(parent);
        let mut freed_dir = false;
        match rustix::fs::symlinkat(target, pfd, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                freed_dir = clear_slot(pfd, name, false).map_err(sys_io("replace"))? == Slot::FreedDir;
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
    fn finish_node(&self, parent: &[u8], name: &[u8], chmod: bool) -> Result<(), Fail> {
        let pfd = self.dirs.fd(parent);
        let meta = &self.meta;
        if self.ctx.needs_chown(meta, self.dirs.setgid(parent)) {
            let (u, g) = Ctx::chown_args(meta);
            rustix::fs::chownat(pfd, name, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(sys("chownat"))?;
        }
        if chmod && self.ctx.needs_chmod(meta.mode) {
            chmod_nofollow(pfd, name, meta.mode).map_err(sys_io("chmod"))?;
        }
        self.ctx.set_xattrs_at(pfd, name, &meta.xattrs)?;
        rustix::fs::utimensat(pfd, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW).map_err(sys("utimensat"))?;
        Ok(())
    }

    fn hardlink(
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
                freed_dir = clear_slot(pfd, name, false).map_err(sys_io("replace"))? == Slot::FreedDir;
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

    fn node<R: Read>(
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
                freed_dir = clear_slot(pfd, name, false).map_err(sys_io("replace"))? == Slot::FreedDir;
                rustix::fs::mknodat(pfd, name, ftype, mode, dev)
            }
            r => r,
        };
        match r {
            Ok(()) => {}
            Err(Errno::PERM) if !self.ctx.devices_forced && ftype != FileType::Fifo => {
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

    /// A `.wh.` entry (not in AUFS mode).
    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<(), Fail> {
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
                remove_all_at(pfd, target).map_err(sys_io("remove"))?;
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
                        freed_dir = clear_slot(pfd, target, false).map_err(sys_io("replace"))? == Slot::FreedDir;
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
    fn opaque(&mut self, parent: &[u8]) -> Result<(), Fail> {
        match self.ctx.whiteouts {
            None => {
                if !self.dirs.enter(parent, false, None)? {
                    return Ok(());
                }
                let dfd = open_dir_at(self.dirs.fd(parent), b".").map_err(sys_io("open"))?;
                let keep = self.unpacked.as_ref().expect("plain extraction tracks unpacked paths");
                let mut prefix = parent.to_vec();
                let r = clear_except(dfd.as_fd(), &mut prefix, keep).map_err(sys_io("clear opaque dir"));
                // Directories below the cached parent may be gone.
                self.dirs.invalidate();
                r?;
            }
            Some(format) => {
                self.enter(parent)?;
                let xattr: &[u8] = match format {
                    WhiteoutFormat::OverlayUserXattr => b"user.overlay.opaque",
                    _ => b"trusted.overlay.opaque",
                };
                let dfd = open_dir_at(self.dirs.fd(parent), b".").map_err(sys_io("open"))?;
                rustix::fs::fsetxattr(&dfd, xattr, b"y", XattrFlags::empty()).map_err(sys("fsetxattr(opaque)"))?;
            }
        }
        Ok(())
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
                    Err(e) => return Err(Error::sys("openat2", self.root_path.join(OsStr::from_bytes(p)), e.into())),
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
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                    .map_err(|e| Error::sys("fchmod", path(), e.into()))?;
            }
            rustix::fs::futimens(&fd, &fix.times).map_err(|e| Error::sys("futimens", path(), e.into()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn ids_in_range() {
        assert_eq!(id32(1000).unwrap(), 1000);
        assert!(id32(u64::from(u32::MAX)).is_err());
        assert!(id32(1 << 40).is_err());
    }

    #[test]
    fn umask_reads() {
        assert!(current_umask() <= 0o777);
    }
}
