//! The crate's error type.

use std::path::PathBuf;

/// Why a tar entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeEntry {
    /// The path has a `..` component that climbs above the layer root.
    ParentDir,
    /// The path is absolute (leading `/` is refused, not stripped silently).
    Absolute,
    /// A symlink whose target resolves outside the layer.
    SymlinkEscape,
    /// A hardlink whose target is outside the layer (or missing).
    HardlinkEscape,
    /// A write through a symlink (placed earlier in this tar or already in the layer).
    ThroughSymlink,
    /// Resolving the path loops (`ELOOP`).
    SymlinkLoop,
    /// The path is deeper / longer than allowed.
    TooDeep,
    /// A block or character device node without `ApplyOptions::allow_devices`.
    DeviceNode,
    /// A whiteout that names `.` / `..` / nothing.
    BadWhiteout,
    /// A component of the entry's parent path is in the layer but is not a directory (a
    /// regular file, a fifo, ...): e.g. `f/.wh..wh..opq` or `f/x` after a regular file `f`.
    NotADirectory,
}

/// A bound of [`crate::Limits`] (named like its field there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`crate::Limits::max_bytes`]: total size of the regular files extracted (holes of sparse
    /// files included).
    Bytes,
    /// [`crate::Limits::max_entries`]: tar entries.
    Entries,
    /// [`crate::Limits::max_ratio`]: expanded bytes per compressed input byte.
    Ratio,
    /// [`crate::Limits::max_trailing`]: bytes after the end-of-archive block.
    TrailingData,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Bytes => "max_bytes",
            Limit::Entries => "max_entries",
            Limit::Ratio => "max_ratio",
            Limit::TrailingData => "max_trailing",
        })
    }
}

/// Everything that can go wrong in nook-unionfs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input, caught before anything touched the system.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// The field or argument.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Sys {
        /// The call (`"fsconfig(lowerdir+)"`, `"openat2"`, ...).
        op: &'static str,
        /// The path it was about.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A tar entry refused as hostile; nothing was written for it.
    #[error("unsafe layer entry {entry:?}: {reason:?}")]
    Unsafe {
        /// The entry's path as written in the tar.
        entry: PathBuf,
        /// Why.
        reason: UnsafeEntry,
    },
    /// The tar stream itself is malformed or unreadable.
    #[error("layer tar (entry {entry:?}): {source}")]
    Tar {
        /// The entry being read, if known.
        entry: Option<PathBuf>,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A layer went over one of [`crate::Limits`]; the apply stopped there (the store removes
    /// the partial layer). Raise the limit in [`crate::ApplyOptions::limits`] to accept it.
    #[error(
        "layer over its {limit} limit: {value} > {max}{} (raise ApplyOptions::limits.{limit} to accept it)",
        .entry.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default()
    )]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value reached: bytes, entries, the ratio (rounded up), or trailing bytes (at
        /// least this many: reading stopped there).
        value: u64,
        /// The limit's setting.
        max: u64,
        /// The entry being applied, if the limit was reached at one.
        entry: Option<PathBuf>,
    },
    /// No such layer in the store.
    #[error("layer {id} not found")]
    LayerNotFound {
        /// The id asked for.
        id: String,
    },
    /// On-disk state that does not parse.
    #[error("corrupt store state {path:?}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A setup step failed and undoing it failed too.
    #[error("{cause} (and cleanup failed: {cleanup:?})")]
    Cleanup {
        /// The original failure.
        cause: Box<Error>,
        /// Cleanup failures.
        cleanup: Vec<Error>,
    },
    // Overlay mounts.
    /// A mount step failed in the kernel. `log` holds the messages the kernel left in the
    /// mount context's log (read from the `fsopen` fd; e.g. `"e overlay: too many lower
    /// directories, limit is 500"`). Overlayfs reports many failures only to the kernel log
    /// (`dmesg`), so `log` may be empty.
    #[error("{op} {path:?}: {source}{}", crate::overlay::render_log(.log))]
    Mount {
        /// The step (`"fsconfig(lowerdir+)"`, `"fsconfig(create)"`, `"mount(overlay)"`, ...).
        op: &'static str,
        /// The path it was about (the layer for a layer step, else the mount target).
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
        /// The kernel's fs_context messages, oldest first.
        log: Vec<String>,
    },
    /// The `mount(2)` fallback cannot fit the stack into one page of mount data, even with
    /// compacted layer names.
    #[error(
        "overlay mount data needs {len} bytes even compacted, but mount(2) reads at most {limit} (one page); \
         use a kernel with fsconfig lowerdir+ (Linux 6.8+) or fewer layers"
    )]
    MountDataTooLong {
        /// The compacted length.
        len: usize,
        /// The limit ([`crate::MAX_MOUNT_DATA`]).
        limit: usize,
    },
    /// [`crate::MountedStack::remove`] found the mount busy (something still uses it). When
    /// `detached` is true it was detached lazily instead: gone from the mount tree now, freed
    /// once the last user leaves.
    #[error("{target:?} is busy{}", if *.detached { "; detached lazily instead (freed once the last user leaves)" } else { "" })]
    Busy {
        /// The mount target.
        target: std::path::PathBuf,
        /// Whether the lazy detach that followed succeeded.
        detached: bool,
    },
    // Whiteouts, the union view, the copy driver.
    /// Creating a device node was refused: it needs `CAP_MKNOD`. (An overlay whiteout, a 0/0
    /// character device, needs it only before Linux 5.8; later kernels let anyone make one.)
    #[error("mknod {path:?} refused (needs CAP_MKNOD): {source}")]
    MknodDenied {
        /// The node that could not be created.
        path: PathBuf,
        /// The error (`EPERM` / `EACCES`).
        #[source]
        source: std::io::Error,
    },
    /// A union path goes through a symlink; the userspace view does not follow symlinks.
    #[error("union path {path:?} goes through the symlink {symlink:?} (not followed)")]
    SymlinkInPath {
        /// The path looked up (normalised, relative to the union root).
        path: PathBuf,
        /// The symlink component (relative to the union root).
        symlink: PathBuf,
    },
    /// A layer entry that cannot be written in the requested whiteout format.
    #[error("layer entry {path:?} cannot be represented as {format:?}: {reason}")]
    Unconvertible {
        /// The entry.
        path: PathBuf,
        /// The format asked for.
        format: crate::WhiteoutFormat,
        /// Why.
        reason: &'static str,
    },
    // Layer apply, the store, diffs.
    /// A layer cannot be removed: another layer (or a container) is built on it.
    #[error("layer {id} is in use by {by}")]
    LayerInUse {
        /// The layer's ChainID.
        id: String,
        /// Who uses it (a child layer's ChainID, or `container <id>`).
        by: String,
    },
}

#[allow(dead_code)]
impl Error {
    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Sys { op, path: path.into(), source }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
