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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use self::fsops::{Slot, chmod_nofollow, clear_except, clear_slot};
use self::path::{clean_path, split_parent, symlink_escapes};
use self::stream::{ExtLimit, Guard, Hashing, Meter};
use crate::whiteout::{TRUSTED_OPAQUE_XATTR, WHITEOUT_PREFIX, is_overlay_xattr_name};
use crate::{Digest, Error, Limit, Result, UnsafeEntry, WhiteoutFormat};

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

/// Bounds on what one layer may make an apply do; see [`ApplyOptions::limits`].
///
/// A layer is untrusted input: a few KiB of gzip or zstd can decompress to many GiB, a tar of
/// empty files can hold millions of entries, a GNU sparse entry of a few bytes can claim a
/// file of a TiB, and zeros can follow the end of the archive for ever (all of which were
/// seen: a 2.5 MB `.tar.gz` wrote 2.5 GiB; 4 GiB of zeros after the end were read and hashed
/// from a 128 KiB `.tar.zst`). Going over a limit stops the apply at once with
/// [`Error::LimitExceeded`] naming the limit and the value reached; the store removes the
/// partial layer.
///
/// The defaults ([`Limits::default`]) are generous on absolute size — multi-GiB layers are
/// real (CUDA and ML framework layers reach 10–20 GiB) — and strict on what only bombs do:
///
/// | limit | default | why |
/// |---|---|---|
/// | [`max_bytes`](Limits::max_bytes) | 64 GiB | above the largest layers of public images; a last line against filling the disk |
/// | [`max_entries`](Limits::max_entries) | 2 097 152 (2²¹) | big layers (a `node_modules`, TeX Live, a distribution's `/usr`) hold some 100 000s of entries |
/// | [`max_ratio`](Limits::max_ratio) | 100, after a [`ratio_grace`](Limits::ratio_grace) of 64 MiB | real layers decompress 2–20-fold (text-heavy ones up to ~30); only long runs of zeros go beyond 100 (gzip tops out near 1 000, zstd far higher). Apache POI's zip-bomb guard uses the same 1:100 |
/// | [`max_trailing`](Limits::max_trailing) | 1 MiB | GNU tar pads the end to its record size (10 KiB by default, 1 MiB at `-b 2048`); Docker's writer pads nothing |
///
/// A caller that knows its layers (a trusted registry, a layer with a big zero-filled file)
/// raises one field, or uses [`Limits::unlimited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total size of the regular files written, in bytes: each file's size as the tar gives it
    /// (the holes of a sparse file count, since every reader of the file sees them; hardlinks
    /// count nothing). Checked at each file's header, before anything is written for it.
    pub max_bytes: u64,
    /// Tar entries (every header the tar crate gives back, including skipped ones).
    pub max_entries: u64,
    /// Expanded bytes per compressed input byte, where expanded is the decompressed tar
    /// stream plus the holes of sparse files (so a plain tar with a sparse entry is measured
    /// too). Checked continuously, once more than [`Limits::ratio_grace`] bytes came out: the
    /// apply stops when `expanded > max_ratio × input + ratio_grace`.
    pub max_ratio: u64,
    /// Expanded bytes allowed before [`Limits::max_ratio`] applies (small layers with a
    /// zero-filled file, and the read-ahead of the decompressor, stay fine).
    pub ratio_grace: u64,
    /// Bytes of (decompressed) data after the tar's end-of-archive block. They are read and
    /// hashed — the DiffID is the sha256 of the whole stream, so it matches `sha256sum` of the
    /// `.tar` — but only this many: past that the apply stops without reading the rest.
    pub max_trailing: u64,
}

impl Limits {
    /// No limits at all (every field `u64::MAX`): only for layers from a trusted source.
    pub const fn unlimited() -> Limits {
        Limits {
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
            max_ratio: u64::MAX,
            ratio_grace: u64::MAX,
            max_trailing: u64::MAX,
        }
    }
}

impl Default for Limits {
    /// The defaults in the table above.
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 1 << 21,
            max_ratio: 100,
            ratio_grace: 64 << 20,
            max_trailing: 1 << 20,
        }
    }
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
    /// Create block and character device nodes (default `false`: a device entry is refused
    /// with [`crate::UnsafeEntry::DeviceNode`]). A layer can name any device — the host's root
    /// disk, `/dev/mem` — and a node for it in a layer dir is reachable by whoever can reach
    /// the dir or mounts it without `nodev`. Image layers have no need for them (a container
    /// runtime creates `/dev` itself). Needs `CAP_MKNOD` when set. A 0/0 character device (an
    /// overlay whiteout written into a tar) is always allowed.
    pub allow_devices: bool,
    /// Bounds on the apply (default [`Limits::default`]).
    pub limits: Limits,
}

impl std::fmt::Debug for ApplyOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("whiteouts", &self.whiteouts)
            .field("bytes_total", &self.bytes_total)
            .field("progress", &self.progress.is_some())
            .field("allow_devices", &self.allow_devices)
            .field("limits", &self.limits)
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
        .map_err(|e| Error::sys("open", root, e.into()))?;
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

/// A read error of the stream: the limit that stopped it, if one did, else a tar error.
fn stream_error(meter: &Meter, limits: &Limits, entry: Option<PathBuf>, source: io::Error) -> Error {
    match meter.hit.get() {
        Some((limit, value)) => Error::LimitExceeded { limit, value, max: limit_max(limits, limit), entry },
        None => Error::Tar { entry, source },
    }
}

/// The setting of one limit.
fn limit_max(limits: &Limits, limit: Limit) -> u64 {
    match limit {
        Limit::Bytes => limits.max_bytes,
        Limit::Entries => limits.max_entries,
        Limit::Ratio => limits.max_ratio,
        _ => limits.max_trailing,
    }
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
                dac: c.effective.contains(C::DAC_OVERRIDE),
                admin: c.effective.contains(C::SYS_ADMIN),
            },
            Err(_) => {
                let root = rustix::process::geteuid().is_root();
                Privileges { chown: root, dac: root, admin: root }
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
    /// A limit and the value that went over it.
    Limit(Limit, u64),
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
                    if is_overlay_xattr_name(name) {
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
            // A file (or fifo, ...) where the path needs a directory.
            Errno::NOTDIR => Fail::Unsafe(UnsafeEntry::NotADirectory),
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
                Ok(_) if e == Errno::NOTDIR => Fail::Unsafe(UnsafeEntry::NotADirectory),
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
            Fail::Sys(op, source) => Error::Sys { op, path: self.root_path.join(OsStr::from_bytes(clean)), source },
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

    fn file<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, parent: &[u8], name: &[u8]) -> Result<(), Fail> {
        let size = entry.size();
        let total = self.file_bytes.saturating_add(size);
        if total > self.limits.max_bytes {
            return Err(Fail::Limit(Limit::Bytes, total));
        }
        self.file_bytes = total;
        let sparse = entry.header().entry_type().is_gnu_sparse();
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
        let mut left = size;
        let mut off = 0u64;
        while left > 0 {
            let want = (left.min(self.buf.len() as u64)) as usize;
            let before = self.served.get();
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(0) => return Err(Fail::Tar(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Tar(e)),
            };
            // The tar crate serves a sparse file's holes as zeros of its own, one run per
            // read, without taking anything from the stream: skip them instead of writing.
            if sparse && self.served.get() == before {
                self.meter.expand(n as u64).map_err(Fail::Tar)?;
            } else if sparse {
                file.write_all_at(&self.buf[..n], off).map_err(sys_io("pwrite"))?;
            } else {
                file.write_all(&self.buf[..n]).map_err(sys_io("write"))?;
            }
            off += n as u64;
            left -= n as u64;
            self.reporter.tick(self.entries, n as u64);
        }
        if sparse {
            // A hole at the end: the size is set, no block allocated.
            rustix::fs::ftruncate(&file, size).map_err(sys("ftruncate"))?;
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
            // Only a 0/0 whiteout gets here without allow_devices (kernels before 5.8).
            Err(Errno::PERM) if !self.ctx.allow_devices && ftype != FileType::Fifo => {
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
                let xattr = format.opaque_xattr().unwrap_or(TRUSTED_OPAQUE_XATTR);
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
