//! What the running kernel's overlayfs takes through the new mount API, probed so that the
//! kernel's legacy `fs_context` wrapper cannot fool it.
//!
//! Before Linux 6.5 overlayfs has no `fs_context` of its own: `fsopen("overlay")` succeeds, but
//! the context is the kernel's *legacy wrapper*, which accepts **any** string key (it only
//! appends `key=value` to a one-page option string handed to the old mount code at
//! `FSCONFIG_CMD_CREATE`). Asking it for `lowerdir+` therefore "succeeds" on 6.1 and proves
//! nothing. So every probe first sets a key no kernel knows (the *canary*): a context that
//! accepts it is the legacy wrapper, and none of the per-key answers count. Only a context that
//! refuses the canary as an unknown parameter (overlayfs's own parser, 6.5+) is asked for the
//! real keys.
//!
//! The decision from the kernel's answers is pure ([`decide`]); the unit tests cover every
//! combination, the integration tests check the answer against the running kernel.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::FsOpenFlags;

use super::read_log;

/// A key no kernel has: a context that accepts it parses nothing itself (the legacy wrapper).
pub(crate) const CANARY_KEY: &str = "nk_probe_no_such_key";

/// What the overlay filesystem of the running kernel supports (see [`probe`]).
///
/// Every field is `false` where the kernel lacks the feature; [`probe`] says how each was
/// found out. The mount driver uses it to choose between the new mount API and the `mount(2)`
/// fallback, so the fallback is what runs wherever a field is `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KernelSupport {
    /// `fsopen("overlay")` works: the new mount API exists (5.2+) and overlayfs is available
    /// (built in, loaded, or loadable by the kernel). `false` also when overlayfs is missing
    /// altogether, in which case no overlay can be mounted.
    pub fsopen: bool,
    /// Overlayfs parses its own mount options in an `fs_context` (Linux 6.5+). `false` means
    /// the kernel's legacy wrapper: options are collected into one page and the mount is the
    /// old `mount(2)` code, with its one-page limit.
    pub native_fs_context: bool,
    /// `fsconfig(FSCONFIG_SET_STRING, "lowerdir+")`: one layer per call, no overall length
    /// limit, up to [`MAX_LOWER_LAYERS`](crate::MAX_LOWER_LAYERS) layers with paths of up to
    /// 255 bytes each (Linux 6.8+). Without it stacks are mounted with `mount(2)` (see the
    /// crate's docs for what that fallback reaches).
    pub lowerdir_plus: bool,
    /// `fsconfig(FSCONFIG_SET_FD)` with `O_PATH` descriptors for `upperdir`/`workdir`: layers
    /// handed over as descriptors (overlayfs takes descriptors since Linux 6.13, `O_PATH` ones
    /// since 6.15). Without it a tmpfs upper is named by a `/proc/self/fd/N/...` path.
    pub layers_by_fd: bool,
}

impl KernelSupport {
    /// The answer for a kernel where none of it is available.
    pub(crate) const NONE: KernelSupport =
        KernelSupport { fsopen: false, native_fs_context: false, lowerdir_plus: false, layers_by_fd: false };
}

/// How a context answered one `fsconfig` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The call succeeded.
    Accepted,
    /// `EINVAL` with "Unknown parameter" in the context's log: no such key.
    UnknownKey,
    /// `EINVAL` with "Bad value" in the log: the key exists but not for this value type
    /// (e.g. a descriptor given to a string-only key); or `EBADF` for an `O_PATH`
    /// descriptor, which `FSCONFIG_SET_FD` takes only since Linux 6.15.
    BadType,
    /// Any other failure: the key exists and the value was refused (e.g. a dir overlayfs will
    /// not take), or the context failed for a reason of its own.
    Refused,
}

impl Answer {
    /// Classifies an `fsconfig` result with the log the context wrote for it.
    pub(crate) fn of(result: Result<(), Errno>, log: &[String]) -> Answer {
        match result {
            Ok(()) => Answer::Accepted,
            Err(Errno::INVAL) if log.iter().any(|m| m.contains("Unknown parameter")) => Answer::UnknownKey,
            Err(Errno::INVAL) if log.iter().any(|m| m.contains("Bad value")) => Answer::BadType,
            Err(Errno::BADF) => Answer::BadType,
            Err(_) => Answer::Refused,
        }
    }
}

/// The kernel's answers to the probe's questions, each on a fresh overlay context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answers {
    /// [`CANARY_KEY`] set as a string.
    pub canary: Answer,
    /// `lowerdir+` set to `/`.
    pub lowerdir_plus: Answer,
    /// `upperdir` set to an `O_PATH` descriptor of a directory.
    pub upperdir_fd: Answer,
}

/// The pure decision: what the answers of a context that `fsopen` gave mean.
///
/// A context that accepts the canary is the legacy wrapper: nothing is native, whatever it
/// said to the other keys. A context that refuses the canary as unknown parses its own keys;
/// then a key it does not know is missing, and a key it knows is supported even when the
/// probe's value was refused. A canary refused any other way means the probe cannot tell:
/// everything is reported missing, so the driver takes the `mount(2)` path, which works
/// everywhere.
pub(crate) fn decide(a: Answers) -> KernelSupport {
    if a.canary != Answer::UnknownKey {
        return KernelSupport { fsopen: true, ..KernelSupport::NONE };
    }
    let known = |x: Answer| !matches!(x, Answer::UnknownKey | Answer::BadType);
    KernelSupport {
        fsopen: true,
        native_fs_context: true,
        lowerdir_plus: known(a.lowerdir_plus),
        layers_by_fd: known(a.lowerdir_plus) && known(a.upperdir_fd),
    }
}

static SUPPORT: OnceLock<KernelSupport> = OnceLock::new();

/// Probes what the running kernel's overlayfs supports, once per process.
///
/// Opens a few overlay contexts (`fsopen("overlay")`) that are never created, so nothing is
/// mounted: on each it sets a key no kernel knows, then one real key (`lowerdir+` to `/`,
/// `upperdir` to a descriptor of `/`). A context that accepts the unknown key is the kernel's
/// legacy wrapper (overlayfs before Linux 6.5), which accepts every key and so says nothing
/// about any: then only [`KernelSupport::fsopen`] is `true`.
///
/// The result is cached. When `fsopen` is refused for lack of privilege (`EPERM`, `EACCES`),
/// everything is reported `false` and nothing is cached, so a later call with privilege probes
/// again.
pub fn probe() -> KernelSupport {
    if let Some(&known) = SUPPORT.get() {
        return known;
    }
    match probe_kernel() {
        Some(known) => *SUPPORT.get_or_init(|| known),
        None => KernelSupport::NONE,
    }
}

/// Whether this kernel takes `lowerdir+` through `fsconfig` (Linux 6.8+):
/// [`probe`]`().lowerdir_plus`.
pub fn supports_lowerdir_plus() -> bool {
    probe().lowerdir_plus
}

/// `None` when the probe could not tell (no privilege).
fn probe_kernel() -> Option<KernelSupport> {
    let fresh = || rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC);
    let ask = |f: &dyn Fn(&OwnedFd) -> Result<(), Errno>| -> Option<Answer> {
        let fs = fresh().ok()?;
        let r = f(&fs);
        Some(Answer::of(r, &if r.is_err() { read_log(&fs) } else { Vec::new() }))
    };
    match fresh() {
        Ok(_) => {}
        Err(Errno::PERM | Errno::ACCESS) => return None,
        // ENOSYS: no new mount API; ENODEV: no overlay filesystem.
        Err(_) => return Some(KernelSupport::NONE),
    }
    let canary = ask(&|fs| rustix::mount::fsconfig_set_string(fs, CANARY_KEY, "1"))?;
    let lowerdir_plus = ask(&|fs| rustix::mount::fsconfig_set_string(fs, "lowerdir+", "/"))?;
    let root = rustix::fs::openat(CWD, "/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok();
    let upperdir_fd = match &root {
        Some(root) => ask(&|fs| rustix::mount::fsconfig_set_fd(fs, "upperdir", root.as_fd()))?,
        None => Answer::Refused,
    };
    Some(decide(Answers { canary, lowerdir_plus, upperdir_fd }))
}
