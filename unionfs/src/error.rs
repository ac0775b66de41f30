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
    /// Bad input, refused before anything was changed (see [`ValidationError`]).
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// A system call or file operation failed.
    #[error("{call}{}: {source}", path_suffix(.path))]
    Sys {
        /// The call (`"openat2"`, `"mkdirat"`, `"rename"`, ...).
        call: &'static str,
        /// The path it was about, when there is one.
        path: Option<PathBuf>,
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
    /// A removal kept going after a failure and reports every failure, in order:
    /// [`crate::MountedStack::remove`] (the overlay, its lazy detach and a tmpfs beneath it;
    /// the entries of a copy), [`crate::LayerStore::clean_tmp`] (each abandoned entry).
    #[error("removing {what} failed: {}", render_errors(.errors))]
    Teardown {
        /// What was being removed.
        what: String,
        /// Every failure.
        errors: Vec<Error>,
    },
    // Overlay mounts.
    /// A mount step failed in the kernel. `log` holds the messages the kernel left in the
    /// mount context's log (read from the `fsopen` fd; e.g. `"e overlay: too many lower
    /// directories, limit is 500"`). Overlayfs reports many failures only to the kernel log
    /// (`dmesg`), so `log` may be empty.
    #[error("{call} {path:?}: {source}{}", crate::overlay::render_log(.log))]
    Mount {
        /// The step (`"fsconfig(lowerdir+)"`, `"fsconfig(create)"`, `"mount(overlay)"`, ...).
        call: &'static str,
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

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {p:?}"),
        None => String::new(),
    }
}

fn render_errors(errors: &[Error]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&e.to_string());
    }
    out
}

impl Error {
    /// The OS error number behind this error, if there is one: of a failed call ([`Error::Sys`],
    /// [`Error::Mount`], [`Error::MknodDenied`], an I/O error reading a tar), `EBUSY` for
    /// [`Error::Busy`], the cause's for [`Error::Cleanup`], the first failure's that has one for
    /// [`Error::Teardown`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. }
            | Error::Mount { source, .. }
            | Error::MknodDenied { source, .. }
            | Error::Tar { source, .. } => source.raw_os_error(),
            Error::Busy { .. } => Some(libc::EBUSY),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Teardown { errors, .. } => errors.iter().find_map(Error::raw_os_error),
            _ => None,
        }
    }

    /// A failed call about `path`.
    pub(crate) fn sys_at(call: &'static str, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Error {
        Error::Sys { call, path: Some(path.into()), source: source.into() }
    }

    /// A failed nook-ns helper (its helper thread, its state-file policy), as this crate's
    /// [`Error::Sys`].
    pub(crate) fn from_ns(e: nook_ns::Error) -> Error {
        match e {
            nook_ns::Error::Sys { call, path, source } => Error::Sys { call, path, source },
            other => {
                let source = match other.raw_os_error() {
                    Some(errno) => std::io::Error::from_raw_os_error(errno),
                    None => std::io::Error::other(other.to_string()),
                };
                Error::Sys { call: "nook-ns", path: None, source }
            }
        }
    }
}

impl From<nook_ns::statefile::FileError> for Error {
    fn from(e: nook_ns::statefile::FileError) -> Error {
        Error::Sys { call: e.call, path: Some(e.path), source: e.source }
    }
}

/// Which directory of a [`crate::LayerStack`] a [`ValidationError::Overlap`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackDir {
    /// A lower layer, by index (0 = bottom).
    Lower(usize),
    /// The upper dir.
    Upper,
    /// The work dir.
    Work,
}

impl StackDir {
    /// The field's name (`"lower"`, `"upper"`, `"work"`).
    pub fn field(self) -> &'static str {
        match self {
            StackDir::Lower(_) => "lower",
            StackDir::Upper => "upper",
            StackDir::Work => "work",
        }
    }
}

impl std::fmt::Display for StackDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackDir::Lower(i) => write!(f, "lower layer {i} (0 = bottom)"),
            StackDir::Upper => f.write_str("the upper dir"),
            StackDir::Work => f.write_str("the work dir"),
        }
    }
}

/// What is wrong with a directory path ([`ValidationError::Path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The path is empty.
    Empty,
    /// The path is relative (it would depend on the caller's working directory).
    Relative,
    /// The path contains a NUL byte.
    Nul,
    /// The path has a `..` component (give a normalized path).
    ParentDir,
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "empty path",
            PathProblem::Relative => {
                "must be absolute (a relative path would depend on the caller's working directory)"
            }
            PathProblem::Nul => "contains a NUL byte",
            PathProblem::ParentDir => "has a `..` component: give a normalized path",
        })
    }
}

/// What is wrong with a digest string ([`ValidationError::Digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestProblem {
    /// It does not start with `sha256:`.
    Prefix,
    /// It does not have 64 hex digits.
    Length,
    /// A digit is not lowercase hex.
    NotLowercaseHex,
}

impl std::fmt::Display for DigestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DigestProblem::Prefix => "must start with sha256:",
            DigestProblem::Length => "must have 64 hex digits",
            DigestProblem::NotLowercaseHex => "must be lowercase hex",
        })
    }
}

/// Bad input, refused before anything was changed: what [`crate::LayerStack::validate`] and
/// the other checks of arguments return (inside [`Error::Invalid`]). Each variant names the
/// field or argument and carries the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `lowers`: a stack has no lower layer.
    #[error("lowers []: at least one lower layer is needed")]
    NoLowers,
    /// `lowers`: more layers than the kernel stacks ([`crate::MAX_LOWER_LAYERS`],
    /// `OVL_MAX_STACK`).
    #[error("lowers ({count} layers): the kernel stacks at most {max} lower layers (OVL_MAX_STACK)", max = crate::MAX_LOWER_LAYERS)]
    TooManyLowers {
        /// The number of lower layers given.
        count: usize,
    },
    /// `lowers`: one lower layer and no upper (the kernel refuses a read-only stack of one
    /// layer: "at least 2 lowerdir are needed while upperdir nonexistent").
    #[error(
        "lowers (1 layer): a read-only stack (no upper) needs at least two lower layers: the kernel refuses one \
         (\"at least 2 lowerdir are needed while upperdir nonexistent\"); add a layer or an upper"
    )]
    SingleLowerWithoutUpper,
    /// A directory path (`field` is `"lower"`, `"upper"`, `"work"` or `"target"`) that is
    /// empty, relative, has a NUL byte or a `..` component.
    #[error("{field} {path:?}: {problem}")]
    Path {
        /// The field or argument.
        field: &'static str,
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// Two directories of a stack are the same or one is inside the other (lexically).
    #[error(
        "{} {path:?}: {dir} is {} {other} {other_path:?}: overlay layers must not overlap",
        .dir.field(), if *.same { "the same directory as" } else { "inside" }
    )]
    Overlap {
        /// The inner directory.
        dir: StackDir,
        /// Its path (lexical form).
        path: PathBuf,
        /// The directory it is or is inside.
        other: StackDir,
        /// That one's path (lexical form).
        other_path: PathBuf,
        /// Whether the two are the same directory (else `dir` is inside `other`).
        same: bool,
    },
    /// `Upper::Tmpfs { size: Some(0) }` (tmpfs reads `size=0` as unlimited).
    #[error("tmpfs size 0: tmpfs reads size=0 as unlimited; give None for the kernel default (half of RAM)")]
    TmpfsSizeZero,
    /// `options.volatile` or `options.index` (`option`) on a stack without an upper: the
    /// kernel ignores them there.
    #[error("options.{option}: only has an effect with an upper layer; the kernel ignores it on a read-only stack")]
    OptionNeedsUpper {
        /// `"volatile"` or `"index"`.
        option: &'static str,
    },
    /// `options.metacopy` on with a `redirect_dir` other than `on` (the kernel refuses it).
    #[error(
        "options.metacopy (on with redirect_dir={}): metacopy=on needs redirect_dir=on (or unset: the kernel \
         then turns it on); the kernel refuses this pair", .redirect_dir.as_str()
    )]
    MetacopyRedirect {
        /// The `redirect_dir` given.
        redirect_dir: crate::RedirectDir,
    },
    /// `options.metacopy` on together with `userxattr` (the kernel refuses it).
    #[error("options.metacopy (on with userxattr): the kernel refuses metacopy=on together with userxattr")]
    MetacopyUserxattr,
    /// `options.redirect_dir` other than `nofollow` with `userxattr`.
    #[error(
        "options.redirect_dir ({} with userxattr): userxattr needs redirect_dir=nofollow (or unset); the kernel \
         refuses on/follow, and turns off into follow when redirect_always_follow is set (the default)",
        .redirect_dir.as_str()
    )]
    UserxattrRedirect {
        /// The `redirect_dir` given.
        redirect_dir: crate::RedirectDir,
    },
    /// [`crate::LayerStack::mount_data`] returns a `String`: a layer path is not UTF-8.
    #[error("lowers ({data:?}): mount_data() returns a String: a layer path is not UTF-8")]
    NotUtf8 {
        /// The option string (lossily converted).
        data: String,
    },
    /// A union path (of [`crate::UnionView`]) whose `..` climbs above the union root.
    #[error("union path {path:?}: `..` climbs above the union root")]
    UnionPathEscapes {
        /// The path given.
        path: PathBuf,
    },
    /// A union view, materialisation or copy-driver stack without any layer.
    #[error("layers []: a union needs at least one layer (a lower or an upper dir)")]
    NoLayers,
    /// A whiteout name that is not one path component (empty, `.`, `..`, with `/` or NUL).
    #[error("whiteout name {name:?}: must be one path component (not empty, `.`, `..`, no `/` or NUL)")]
    WhiteoutName {
        /// The name given.
        name: std::ffi::OsString,
    },
    /// A whiteout name too long for a `.wh.` prefix (`NAME_MAX` is 255).
    #[error("whiteout name {name:?}: too long for a `.wh.` prefix (NAME_MAX is 255)")]
    WhiteoutNameTooLong {
        /// The name given.
        name: std::ffi::OsString,
    },
    /// A digest that is not `sha256:<64 lowercase hex>`.
    #[error("digest {value:?}: {problem}")]
    Digest {
        /// The string given.
        value: String,
        /// What is wrong with it.
        problem: DigestProblem,
    },
    /// A container id that does not match `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
    #[error("container id {id:?}: must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}")]
    ContainerId {
        /// The id given.
        id: String,
    },
    /// A container id that is taken already.
    #[error("container id {id:?}: a container with this id exists")]
    ContainerExists {
        /// The id given.
        id: String,
    },
    /// A container id the store does not have.
    #[error("container id {id:?}: no such container")]
    NoSuchContainer {
        /// The id given.
        id: String,
    },
    /// A container whose `merged` dir is still mounted (unmount it first).
    #[error("container id {id:?}: {merged:?} is still mounted")]
    ContainerMounted {
        /// The id given.
        id: String,
        /// Its merged dir.
        merged: PathBuf,
    },
    /// An entry of an upper dir that cannot be diffed from the upper alone.
    #[error("upper dir entry {path:?}: {reason}: cannot be diffed from the upper dir alone")]
    Undiffable {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// A materialisation target that is not empty.
    #[error("materialize target {path:?}: the directory is not empty")]
    TargetNotEmpty {
        /// The target given.
        path: PathBuf,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a failed call's `io::Error` or `Errno` into [`Error::Sys`] naming the call (and the
/// path): the crate's one way to add context to a system call's error.
pub(crate) trait SysContext<T> {
    /// [`Error::Sys`] without a path.
    fn sys(self, call: &'static str) -> Result<T>;
    /// [`Error::Sys`] about `path` (converted only on failure).
    fn sys_at<P: Into<PathBuf>>(self, call: &'static str, path: P) -> Result<T>;
    /// [`Error::Sys`] about the path `path()` computes (called only on failure: for paths
    /// that cost an allocation to build).
    fn sys_with<P: Into<PathBuf>>(self, call: &'static str, path: impl FnOnce() -> P) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> SysContext<T> for std::result::Result<T, E> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|e| Error::Sys { call, path: None, source: e.into() })
    }

    fn sys_at<P: Into<PathBuf>>(self, call: &'static str, path: P) -> Result<T> {
        self.map_err(|e| Error::Sys { call, path: Some(path.into()), source: e.into() })
    }

    fn sys_with<P: Into<PathBuf>>(self, call: &'static str, path: impl FnOnce() -> P) -> Result<T> {
        self.map_err(|e| Error::Sys { call, path: Some(path().into()), source: e.into() })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustix::io::Errno;

    use super::*;

    #[test]
    fn sys_context_names_the_call_and_the_path() {
        let e = Err::<(), _>(Errno::NOENT).sys_at("openat", Path::new("/l/x")).unwrap_err();
        match &e {
            Error::Sys { call: "openat", path: Some(p), source } => {
                assert_eq!(p, Path::new("/l/x"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), format!("openat \"/l/x\": {}", std::io::Error::from_raw_os_error(libc::ENOENT)));
        let e = Err::<(), _>(std::io::Error::from_raw_os_error(libc::EIO)).sys("write(layer tar)").unwrap_err();
        assert!(matches!(e, Error::Sys { call: "write(layer tar)", path: None, .. }), "{e:?}");
        let mut built = false;
        let ok: Result<u8> = Ok::<u8, Errno>(1).sys_with("lstat", || {
            built = true;
            PathBuf::from("/never")
        });
        assert_eq!(ok.unwrap(), 1);
        assert!(!built, "the path is built only on failure");
    }

    #[test]
    fn raw_os_error_looks_through_every_variant() {
        let sys = |errno| Error::sys_at("x", "/p", std::io::Error::from_raw_os_error(errno));
        assert_eq!(sys(libc::EPERM).raw_os_error(), Some(libc::EPERM));
        let mount =
            Error::Mount { call: "fsconfig(create)", path: "/t".into(), source: Errno::INVAL.into(), log: Vec::new() };
        assert_eq!(mount.raw_os_error(), Some(libc::EINVAL));
        let cleanup = Error::Cleanup { cause: Box::new(sys(libc::ENOSPC)), cleanup: vec![sys(libc::EBUSY)] };
        assert_eq!(cleanup.raw_os_error(), Some(libc::ENOSPC), "the cause's errno");
        let teardown = Error::Teardown {
            what: "x".into(),
            errors: vec![ValidationError::NoLayers.into(), sys(libc::EACCES), sys(libc::EIO)],
        };
        assert_eq!(teardown.raw_os_error(), Some(libc::EACCES), "the first failure with an errno");
        assert_eq!(Error::Busy { target: "/t".into(), detached: true }.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(Error::from(ValidationError::TmpfsSizeZero).raw_os_error(), None);
    }

    #[test]
    fn nook_ns_errors_become_sys() {
        let e = Error::from(nook_ns::statefile::FileError::new("flock", Path::new("/s/.lock"), Errno::INTR.into()));
        assert!(matches!(&e, Error::Sys { call: "flock", path: Some(p), .. } if p == Path::new("/s/.lock")), "{e:?}");
        assert_eq!(e.raw_os_error(), Some(libc::EINTR));
    }
}
