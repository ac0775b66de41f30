//! [`LayerStack`]: the pure description of a union (read-only lower layers, an optional upper,
//! options) and its validation, without touching the system. Rendering it into overlay's
//! option strings ([`LayerStack::mount_data`]) and mounting it ([`LayerStack::mount`]) belong
//! to the overlay driver (`overlay/options.rs`, `overlay.rs`); this module imports neither.
//!
//! # Kernel limits this module encodes
//!
//! - **500 lower layers** ([`MAX_LOWER_LAYERS`], the kernel's `OVL_MAX_STACK`). Docker's
//!   overlay2 driver stops at 128 and runc fails near 70 because both pass every layer in one
//!   `mount(2)` option string; nook hands layers to the kernel one `fsconfig(lowerdir+)` at a
//!   time (see [`crate::Overlay`]).
//! - **One page of `mount(2)` data** ([`MAX_MOUNT_DATA`]): the kernel copies at most one page
//!   of the option string and silently cuts the rest, which turns into confusing errors (a
//!   truncated path that does not exist, or one that overlaps another layer). The `mount(2)`
//!   fallback measures its string first and compacts it (see [`crate::Overlay`]).
//! - **Order**: [`LayerStack`] takes layers bottom first (like a Dockerfile); `lowerdir=` lists
//!   them top first, and so does `lowerdir+` (the first one given is the topmost: checked on
//!   the kernel by a test with a file name in two layers).
//! - **Read-only stacks need two lowers**: with no upper the kernel refuses a single lower
//!   (`at least 2 lowerdir are needed while upperdir nonexistent`, still so on 6.18).
//! - **Escaping**: in `mount(2)` data, and in `upperdir=`/`workdir=` even through `fsconfig`,
//!   overlayfs reads `\` as an escape, `:` as a layer separator and `,` as an option separator;
//!   [`LayerStack::mount_data`] escapes all three with a backslash. `lowerdir+` takes its path
//!   verbatim (no escaping).
//! - **Option conflicts** the kernel refuses (`EINVAL` with a message only in `dmesg`):
//!   `metacopy=on` with any `redirect_dir` other than `on`; `userxattr` with `metacopy=on` or a
//!   `redirect_dir` other than `nofollow`. Options that a read-only stack silently ignores
//!   (`volatile`, `index=on`) are refused too, so a caller never believes they are in effect.

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{PathProblem, StackDir, ValidationError};

/// The kernel's limit on overlay lower layers (`OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

/// The longest `mount(2)` data string the kernel reads whole: one page (4096 bytes on every
/// Linux architecture at least) including the terminating NUL. Longer strings are cut.
pub const MAX_MOUNT_DATA: usize = 4095;

/// Where writes go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Upper {
    /// Read-only stack: no upper layer.
    None,
    /// A persistent upper dir and its work dir (same filesystem, work dir empty).
    Dir {
        /// Upper dir (receives copy-ups and whiteouts).
        upper: PathBuf,
        /// Work dir.
        work: PathBuf,
    },
    /// An upper + work on a fresh tmpfs that vanishes with the mount.
    ///
    /// The tmpfs is created detached (`fsopen("tmpfs")` + `fsmount`), never attached to any
    /// path: the overlay holds its own reference, so the tmpfs and everything written to the
    /// union are freed when the overlay is unmounted. Needs the new mount API (Linux 5.2+);
    /// see [`crate::MountedStack::upper_dir`] for inspecting it while mounted.
    Tmpfs {
        /// tmpfs size limit in bytes (`None`: the kernel default, half of RAM).
        size: Option<u64>,
    },
}

/// `redirect_dir=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectDir {
    /// `on`.
    On,
    /// `follow`.
    Follow,
    /// `nofollow`.
    NoFollow,
    /// `off`.
    Off,
}

impl RedirectDir {
    /// The option value (`"on"`, `"follow"`, `"nofollow"`, `"off"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectDir::On => "on",
            RedirectDir::Follow => "follow",
            RedirectDir::NoFollow => "nofollow",
            RedirectDir::Off => "off",
        }
    }
}

/// Overlay mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct OverlayOptions {
    /// `volatile`: no syncs to the upper (faster; the upper is unusable after a crash).
    pub volatile: bool,
    /// `index=on|off` (`None`: kernel default).
    pub index: Option<bool>,
    /// `metacopy=on|off` (`None`: kernel default).
    pub metacopy: Option<bool>,
    /// `redirect_dir=` (`None`: kernel default).
    pub redirect_dir: Option<RedirectDir>,
    /// `userxattr`: use `user.overlay.*` xattrs (needed inside a user namespace).
    pub userxattr: bool,
    /// Force the `mount(2)` path instead of `fsopen`/`fsconfig` (for tests and old kernels).
    pub legacy_mount: bool,
}

/// A union: read-only lower layers (bottom first), an optional upper, options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LayerStack {
    lowers: Vec<PathBuf>,
    upper: Option<Upper>,
    options: OverlayOptions,
}

impl LayerStack {
    /// An empty stack (add at least one lower, or one lower plus an upper).
    pub fn new() -> LayerStack {
        LayerStack::default()
    }

    /// Pushes a lower layer on top of the ones already given (bottom first, like a Dockerfile).
    pub fn lower(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.lowers.push(dir.into());
        self
    }

    /// Pushes several lower layers (bottom first).
    pub fn lowers<I: IntoIterator<Item = P>, P: Into<PathBuf>>(&mut self, dirs: I) -> &mut Self {
        self.lowers.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Sets the upper.
    pub fn upper(&mut self, upper: Upper) -> &mut Self {
        self.upper = Some(upper);
        self
    }

    /// Sets the options.
    pub fn options(&mut self, options: OverlayOptions) -> &mut Self {
        self.options = options;
        self
    }

    /// Lower layers, bottom first.
    pub fn lower_dirs(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// The upper (`Upper::None` when unset).
    pub fn upper_layer(&self) -> &Upper {
        self.upper.as_ref().unwrap_or(&Upper::None)
    }

    /// The options.
    pub fn overlay_options(&self) -> &OverlayOptions {
        &self.options
    }

    /// Pure checks (no syscalls), each failure a [`ValidationError`] naming the field and the
    /// value (wrapped in [`Error::Invalid`](crate::Error::Invalid) where a mount refuses it):
    ///
    /// - at least one lower layer, and at least two when there is no upper (the kernel
    ///   refuses a read-only stack of one layer); at most [`MAX_LOWER_LAYERS`];
    /// - every path non-empty, absolute, without NUL bytes or `..` components;
    /// - no two of the lowers, the upper and the work dir the same directory or one inside
    ///   another (the kernel refuses overlapping lowers and nested upper/work dirs, and an
    ///   upper inside a lower would show up in the union);
    /// - `Upper::Tmpfs { size: Some(0) }` is refused (tmpfs reads `size=0` as unlimited);
    /// - option combinations the kernel refuses or silently ignores: `volatile` or `index=on`
    ///   without an upper; `metacopy=on` with a `redirect_dir` other than `on`; `userxattr`
    ///   with `metacopy=on` or with `redirect_dir` `on`, `follow` or `off` (the kernel turns
    ///   `off` into `follow` when its `redirect_always_follow` parameter is set, the default,
    ///   and refuses that with `userxattr`; give [`RedirectDir::NoFollow`]).
    ///
    /// Checks are lexical: two different spellings of one directory through a symlink are
    /// caught by the kernel at mount time instead (`ELOOP`, "overlapping lowerdir path").
    pub fn validate(&self) -> Result<(), ValidationError> {
        let n = self.lowers.len();
        if n == 0 {
            return Err(ValidationError::NoLowers);
        }
        if n > MAX_LOWER_LAYERS {
            return Err(ValidationError::TooManyLowers { count: n });
        }
        let has_upper = !matches!(self.upper_layer(), Upper::None);
        if !has_upper && n == 1 {
            return Err(ValidationError::SingleLowerWithoutUpper);
        }
        let mut dirs: Vec<(Cow<'_, [u8]>, StackDir)> = Vec::with_capacity(n + 2);
        for (i, l) in self.lowers.iter().enumerate() {
            dirs.push((checked_dir("lower", l)?, StackDir::Lower(i)));
        }
        match self.upper_layer() {
            Upper::None => {}
            Upper::Dir { upper, work } => {
                dirs.push((checked_dir("upper", upper)?, StackDir::Upper));
                dirs.push((checked_dir("work", work)?, StackDir::Work));
            }
            Upper::Tmpfs { size } => {
                if *size == Some(0) {
                    return Err(ValidationError::TmpfsSizeZero);
                }
            }
        }
        check_overlaps(dirs)?;
        self.check_options(has_upper)
    }
}

/// Refuses the first pair of `dirs` (lexical paths) where one is or contains the other.
fn check_overlaps(mut dirs: Vec<(Cow<'_, [u8]>, StackDir)>) -> Result<(), ValidationError> {
    // With `/` ordered before every other byte, every directory below `a` sorts right
    // after `a` (before any sibling such as `a-b`): checking neighbours finds every equal
    // or nested pair in O(n log n).
    dirs.sort_unstable_by(|a, b| dir_order(&a.0, &b.0));
    for pair in dirs.windows(2) {
        let ((outer, outer_role), (inner, inner_role)) = (&pair[0], &pair[1]);
        if is_within(inner, outer) {
            let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
            return Err(ValidationError::Overlap {
                dir: *inner_role,
                path: path(inner),
                other: *outer_role,
                other_path: path(outer),
                same: inner == outer,
            });
        }
    }
    Ok(())
}

impl LayerStack {
    fn check_options(&self, has_upper: bool) -> Result<(), ValidationError> {
        let o = &self.options;
        if o.volatile && !has_upper {
            return Err(ValidationError::OptionNeedsUpper { option: "volatile" });
        }
        if o.index == Some(true) && !has_upper {
            return Err(ValidationError::OptionNeedsUpper { option: "index" });
        }
        if o.metacopy == Some(true) {
            if let Some(redirect_dir) = o.redirect_dir.filter(|r| *r != RedirectDir::On) {
                return Err(ValidationError::MetacopyRedirect { redirect_dir });
            }
            if o.userxattr {
                return Err(ValidationError::MetacopyUserxattr);
            }
        }
        if o.userxattr
            && let Some(redirect_dir) = o.redirect_dir.filter(|r| *r != RedirectDir::NoFollow)
        {
            return Err(ValidationError::UserxattrRedirect { redirect_dir });
        }
        Ok(())
    }
}

/// Checks one directory path (non-empty, absolute, no NUL, no `..`) and returns its lexical
/// form: without `.` components and repeated or trailing slashes (the directory `Path`'s
/// component comparison sees), borrowed when already so. One pass over the bytes.
pub(crate) fn checked_dir<'a>(field: &'static str, path: &'a Path) -> Result<Cow<'a, [u8]>, ValidationError> {
    let bytes = path.as_os_str().as_bytes();
    let fail = |problem| Err(ValidationError::Path { field, path: path.to_owned(), problem });
    if bytes.is_empty() {
        return fail(PathProblem::Empty);
    }
    if bytes[0] != b'/' {
        return fail(PathProblem::Relative);
    }
    if bytes.contains(&0) {
        return fail(PathProblem::Nul);
    }
    let n = bytes.len();
    let mut clean = true;
    for (i, _) in bytes.iter().enumerate().filter(|(_, c)| **c == b'/') {
        match (bytes.get(i + 1), bytes.get(i + 2), bytes.get(i + 3)) {
            (None, ..) => clean &= n == 1,
            (Some(b'/'), ..) | (Some(b'.'), None | Some(b'/'), _) => clean = false,
            (Some(b'.'), Some(b'.'), None | Some(b'/')) => return fail(PathProblem::ParentDir),
            _ => {}
        }
    }
    if clean {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(n);
    for c in bytes.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

/// [`checked_dir`] without the lexical form.
pub(crate) fn check_dir(field: &'static str, path: &Path) -> Result<(), ValidationError> {
    checked_dir(field, path).map(drop)
}

/// Byte order with `/` first, so a directory's descendants directly follow it.
fn dir_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    let common = common_prefix(a, b);
    match (a.get(common), b.get(common)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// Length of the common prefix of `a` and `b` (eight bytes at a time: layer paths in a store
/// share long prefixes).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Whether lexical path `inner` is `outer` or below it.
fn is_within(inner: &[u8], outer: &[u8]) -> bool {
    inner.starts_with(outer) && (inner.len() == outer.len() || outer.ends_with(b"/") || inner[outer.len()] == b'/')
}

#[cfg(test)]
mod tests;
