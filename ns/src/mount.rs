//! Mount propagation and the mount steps a child runs in its new mount namespace.
//!
//! [`MountStep`] is pure data (serde). The parent turns a list of steps into
//! [`PreparedStep`]s — every path already a `CString`, every flag computed — and the child
//! runs them without allocating ([`crate::child::run_step`]; nothing in this file runs in
//! the child). [`set_propagation`] is the parent-side call for the
//! caller's own mount namespace.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::{Result, SysContext, ValidationError};

/// Mount propagation type (shared subtrees, `Documentation/filesystems/sharedsubtree.rst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// Mount and unmount events propagate to and from peers (`MS_SHARED`).
    Shared,
    /// Events propagate from the master into this mount, not back (`MS_SLAVE`).
    Slave,
    /// No propagation either way (`MS_PRIVATE`).
    Private,
    /// Private, and cannot be bind-mounted (`MS_UNBINDABLE`).
    Unbindable,
}

impl Propagation {
    /// The `MS_*` flag, plus `MS_REC` when `recursive`.
    pub const fn flags(self, recursive: bool) -> libc::c_ulong {
        let base = match self {
            Propagation::Shared => libc::MS_SHARED,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Unbindable => libc::MS_UNBINDABLE,
        };
        if recursive { base | libc::MS_REC } else { base }
    }
}

/// Changes the propagation type of the mount at `path` in the caller's mount namespace.
///
/// Affects every thread sharing the caller's mount namespace; to experiment safely, call
/// it on a thread that did `unshare(CLONE_NEWNS)` or inside a child's namespace.
pub fn set_propagation(path: &Path, propagation: Propagation, recursive: bool) -> Result<()> {
    let c = path_cstring("path", path)?;
    let flags = MountPropagationFlags::from_bits_retain(propagation.flags(recursive) as _);
    rustix::mount::mount_change(c.as_c_str(), flags).sys_at("mount (propagation)", path)
}

/// Bind-mounts `source` onto `target` in the caller's mount namespace (parent-side helper).
pub fn bind(source: &Path, target: &Path, recursive: bool) -> Result<()> {
    let s = path_cstring("source", source)?;
    let t = path_cstring("target", target)?;
    let bound = if recursive {
        rustix::mount::mount_bind_recursive(s.as_c_str(), t.as_c_str())
    } else {
        rustix::mount::mount_bind(s.as_c_str(), t.as_c_str())
    };
    bound.sys_at("mount (bind)", target)
}

/// Mounts a tmpfs at `target` in the caller's mount namespace (parent-side helper).
pub fn mount_tmpfs(target: &Path, options: Option<&str>) -> Result<()> {
    let t = path_cstring("target", target)?;
    let data = options.map(|o| cstring("tmpfs options", o.as_bytes())).transpose()?;
    rustix::mount::mount(c"tmpfs", t.as_c_str(), c"tmpfs", MountFlags::NOSUID | MountFlags::NODEV, data.as_deref())
        .sys_at("mount (tmpfs)", target)
}

/// Unmounts `target` (lazily with `detach`) in the caller's mount namespace.
pub fn unmount(target: &Path, detach: bool) -> Result<()> {
    let t = path_cstring("target", target)?;
    let flags = if detach { UnmountFlags::DETACH } else { UnmountFlags::empty() };
    rustix::mount::unmount(t.as_c_str(), flags).sys_at("umount2", target)
}

/// One mount-namespace step run by the child, in order, after `/` got its propagation.
///
/// Paths are absolute. Paths after a [`MountStep::PivotRoot`] are inside the new root.
///
/// ```
/// use nook_ns::MountStep;
///
/// let steps = [
///     MountStep::bind("/srv/rootfs", "/srv/rootfs").recursive(),
///     MountStep::proc("/srv/rootfs/proc"),
///     MountStep::tmpfs("/srv/rootfs/tmp", Some("size=16m,mode=1777")),
///     MountStep::pivot_root("/srv/rootfs"),
///     MountStep::remount_read_only("/"),
///     MountStep::mask("/proc/kcore"),
/// ];
/// assert_eq!(steps.len(), 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum MountStep {
    /// Bind `source` onto `target`, optionally recursive and read-only.
    Bind {
        /// What to bind.
        source: PathBuf,
        /// Where.
        target: PathBuf,
        /// Remount the bind read-only afterwards.
        read_only: bool,
        /// `MS_REC`: bring submounts along (and make them read-only too).
        recursive: bool,
    },
    /// Bind `source` onto `target` as a **peer** of the source's mount in the caller's mount
    /// namespace — what `mount --bind` gives in a namespace whose `/` is shared, and what
    /// Docker's `:rshared` volumes and Kubernetes' `Bidirectional` mount propagation need:
    /// mounts made beneath either side appear on the other. The tree is copied with
    /// `open_tree(OPEN_TREE_CLONE)` before the new namespace's `/` gets its root propagation
    /// (which cuts every other tie with the caller's mounts) and attached with `move_mount` at
    /// its turn. Follow it with a [`MountStep::Propagation`] of [`Propagation::Slave`] on
    /// `target` for one-way propagation (Kubernetes' `HostToContainer`, `:rslave`).
    ///
    /// The ties are the kernel's: they exist only where the source's mount is shared in the
    /// caller's namespace (`findmnt -o PROPAGATION`), and in a new user namespace the copy is a
    /// slave (the kernel lets nothing propagate from a less privileged namespace). Needs
    /// Linux 5.2 (`open_tree`); before, the spawn fails at this step with `ENOSYS`.
    PeerBind {
        /// What to bind.
        source: PathBuf,
        /// Where.
        target: PathBuf,
        /// Remount the bind read-only afterwards (per mount: not propagated).
        read_only: bool,
        /// Bring submounts along (`AT_RECURSIVE`).
        recursive: bool,
    },
    /// A new `proc` instance (shows the child's pid namespace).
    Proc {
        /// Mount point.
        target: PathBuf,
    },
    /// A new `sysfs` instance (shows the child's network namespace).
    Sysfs {
        /// Mount point.
        target: PathBuf,
        /// Mount it read-only.
        read_only: bool,
    },
    /// A new `tmpfs`, with optional options such as `size=64m,mode=755`.
    Tmpfs {
        /// Mount point.
        target: PathBuf,
        /// The data string.
        options: Option<String>,
    },
    /// A new, private `devpts` instance (`newinstance,ptmxmode=0666,mode=0620` by default).
    Devpts {
        /// Mount point.
        target: PathBuf,
        /// The data string.
        options: Option<String>,
    },
    /// A new `mqueue` instance (shows the child's IPC namespace's POSIX queues).
    Mqueue {
        /// Mount point.
        target: PathBuf,
    },
    /// Change the propagation type of a mount.
    Propagation {
        /// The mount.
        target: PathBuf,
        /// The new type.
        propagation: Propagation,
        /// Apply to all submounts.
        recursive: bool,
    },
    /// Make `new_root` the root: it is bind-mounted onto itself, `pivot_root` moves the old
    /// root on top of it, and the old root is detached (no `put_old` directory needed).
    PivotRoot {
        /// The new root directory.
        new_root: PathBuf,
    },
    /// Make `new_root` the root without `pivot_root` (runc's `--no-pivot`, for a caller whose
    /// root is the initramfs, where `pivot_root` fails with `EINVAL`): it is bind-mounted onto
    /// itself, moved onto `/` (`MS_MOVE`), and the child `chroot`s into it. The old root stays
    /// in the mount namespace beneath it (a process with `CAP_SYS_CHROOT` can get back to it
    /// through a chroot escape): prefer [`MountStep::PivotRoot`].
    MoveRoot {
        /// The new root directory.
        new_root: PathBuf,
    },
    /// Remount an existing mount read-only (keeping its nosuid/nodev/noexec flags).
    RemountReadOnly {
        /// The mount.
        target: PathBuf,
        /// Also every submount (`mount_setattr(AT_RECURSIVE)`).
        recursive: bool,
    },
    /// Hide a path: a read-only empty tmpfs over a directory, `/dev/null` over a file.
    /// A path that does not exist is skipped.
    Mask {
        /// The path to hide.
        target: PathBuf,
    },
    /// Allow `access` (Landlock `LANDLOCK_ACCESS_FS_*` bits) beneath `path` in the
    /// Landlock ruleset of [`crate::Command::landlock`], as the child sees `path` at this
    /// point (inside its new root, after `pivot_root`): a rule for a path of an overlay or
    /// another mount only the child has must be added by the child. The ruleset must be
    /// fresh for each spawn (rules added to it stay). A failure is
    /// [`crate::Stage::Landlock`]; without a ruleset the step is an error too.
    LandlockRule {
        /// The file or directory.
        path: PathBuf,
        /// The rights allowed beneath it.
        access: u64,
    },
    /// Create a directory (an existing one is fine).
    MakeDir {
        /// The directory.
        path: PathBuf,
        /// Its mode (before the umask).
        mode: u32,
    },
    /// A new `overlay` mount with the given `mount(2)` data (`lowerdir=..,upperdir=..,
    /// workdir=..`; at most one page, as `mount(2)` takes it).
    Overlay {
        /// Mount point.
        target: PathBuf,
        /// The data string.
        options: String,
    },
    /// Create a file (an existing one is left as it is): a mount point for a file bind.
    MakeFile {
        /// The file.
        path: PathBuf,
        /// Its mode (before the umask).
        mode: u32,
    },
    /// Create or truncate a file and write `contents` into it (e.g. `/etc/hostname` on a
    /// tmpfs, to be bind-mounted into the new root).
    WriteFile {
        /// The file.
        path: PathBuf,
        /// What it holds.
        contents: Vec<u8>,
        /// Its mode when created (before the umask).
        mode: u32,
    },
    /// Create a device node (or fifo) at `path` with `mknod`, then set its permission bits
    /// exactly (no umask) and its owner. An existing entry at `path` is left as it is (never
    /// changed: it may be a bind-mounted host node). The file system must allow device
    /// nodes: a tmpfs with the `dev` option ([`MountStep::tmpfs`]).
    MakeNode {
        /// Where.
        path: PathBuf,
        /// The file type and permission bits (`S_IFCHR | 0o666`, `S_IFBLK`, `S_IFIFO`).
        mode: u32,
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
    /// Create a symbolic link at `path` pointing to `target` (an existing entry is fine).
    Symlink {
        /// What the link points to (taken verbatim; may be relative).
        target: PathBuf,
        /// Where the link is created.
        path: PathBuf,
    },
}

impl MountStep {
    /// A device node (see [`MountStep::MakeNode`]).
    pub fn make_node(path: impl Into<PathBuf>, mode: u32, major: u32, minor: u32, uid: u32, gid: u32) -> Self {
        MountStep::MakeNode { path: path.into(), mode, major, minor, uid, gid }
    }

    /// A non-recursive, read-write bind mount (see [`MountStep::read_only`],
    /// [`MountStep::recursive`]).
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        MountStep::Bind { source: source.into(), target: target.into(), read_only: false, recursive: false }
    }

    /// A non-recursive, read-write bind that stays a peer of the source's mount (see
    /// [`MountStep::PeerBind`], [`MountStep::recursive`], [`MountStep::read_only`]).
    pub fn peer_bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        MountStep::PeerBind { source: source.into(), target: target.into(), read_only: false, recursive: false }
    }

    /// A `proc` mount.
    pub fn proc(target: impl Into<PathBuf>) -> Self {
        MountStep::Proc { target: target.into() }
    }

    /// A read-only `sysfs` mount.
    pub fn sysfs(target: impl Into<PathBuf>) -> Self {
        MountStep::Sysfs { target: target.into(), read_only: true }
    }

    /// A `tmpfs` mount.
    pub fn tmpfs(target: impl Into<PathBuf>, options: Option<&str>) -> Self {
        MountStep::Tmpfs { target: target.into(), options: options.map(str::to_owned) }
    }

    /// A private `devpts` mount.
    pub fn devpts(target: impl Into<PathBuf>) -> Self {
        MountStep::Devpts { target: target.into(), options: None }
    }

    /// An `mqueue` mount.
    pub fn mqueue(target: impl Into<PathBuf>) -> Self {
        MountStep::Mqueue { target: target.into() }
    }

    /// A propagation change.
    pub fn propagation(target: impl Into<PathBuf>, propagation: Propagation, recursive: bool) -> Self {
        MountStep::Propagation { target: target.into(), propagation, recursive }
    }

    /// `pivot_root` into `new_root`.
    pub fn pivot_root(new_root: impl Into<PathBuf>) -> Self {
        MountStep::PivotRoot { new_root: new_root.into() }
    }

    /// `MS_MOVE` of `new_root` onto `/` and a `chroot` into it (see [`MountStep::MoveRoot`]).
    pub fn move_root(new_root: impl Into<PathBuf>) -> Self {
        MountStep::MoveRoot { new_root: new_root.into() }
    }

    /// A non-recursive read-only remount.
    pub fn remount_read_only(target: impl Into<PathBuf>) -> Self {
        MountStep::RemountReadOnly { target: target.into(), recursive: false }
    }

    /// Mask a path.
    pub fn mask(target: impl Into<PathBuf>) -> Self {
        MountStep::Mask { target: target.into() }
    }

    /// A Landlock rule added by the child (see [`MountStep::LandlockRule`]).
    pub fn landlock_rule(path: impl Into<PathBuf>, access: crate::landlock::AccessFs) -> Self {
        MountStep::LandlockRule { path: path.into(), access: access.bits() }
    }

    /// Create a directory with mode 0755.
    pub fn mkdir(path: impl Into<PathBuf>) -> Self {
        MountStep::MakeDir { path: path.into(), mode: 0o755 }
    }

    /// An overlay mount at `target` with the `mount(2)` data `options`.
    pub fn overlay(target: impl Into<PathBuf>, options: impl Into<String>) -> Self {
        MountStep::Overlay { target: target.into(), options: options.into() }
    }

    /// Create an empty file with mode 0644 (kept if it exists).
    pub fn make_file(path: impl Into<PathBuf>) -> Self {
        MountStep::MakeFile { path: path.into(), mode: 0o644 }
    }

    /// Write a file with mode 0644.
    pub fn write_file(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        MountStep::WriteFile { path: path.into(), contents: contents.into(), mode: 0o644 }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(target: impl Into<PathBuf>, path: impl Into<PathBuf>) -> Self {
        MountStep::Symlink { target: target.into(), path: path.into() }
    }

    /// For `Bind`, `PeerBind` and `Sysfs`: make it read-only. Other steps are returned unchanged.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        if let MountStep::Bind { read_only, .. }
        | MountStep::PeerBind { read_only, .. }
        | MountStep::Sysfs { read_only, .. } = &mut self
        {
            *read_only = true;
        }
        self
    }

    /// For `Bind`, `PeerBind`, `Propagation` and `RemountReadOnly`: apply to submounts too.
    #[must_use]
    pub fn recursive(mut self) -> Self {
        if let MountStep::Bind { recursive, .. }
        | MountStep::PeerBind { recursive, .. }
        | MountStep::Propagation { recursive, .. }
        | MountStep::RemountReadOnly { recursive, .. } = &mut self
        {
            *recursive = true;
        }
        self
    }

    /// Converts to the child's allocation-free form, validating paths and options. `peer_slot`:
    /// the index of this step's copy among the plan's peer-bind descriptors
    /// (`Plan::peer_trees`), for a [`MountStep::PeerBind`].
    pub(crate) fn prepare(&self, peer_slot: usize) -> std::result::Result<PreparedStep, ValidationError> {
        const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let fs = |source: &'static std::ffi::CStr,
                  target: &Path,
                  fstype: &'static std::ffi::CStr,
                  flags: libc::c_ulong,
                  data: Option<&str>| {
            Ok(PreparedStep::Mount {
                source: Some(source.to_owned()),
                target: abs_cstring("mount target", target)?,
                fstype: Some(fstype.to_owned()),
                flags,
                data: data.map(|d| cstring("mount options", d.as_bytes())).transpose()?,
                read_only: ReadOnly::No,
            })
        };
        match self {
            MountStep::Bind { source, target, read_only, recursive } => Ok(PreparedStep::Mount {
                source: Some(abs_cstring("bind source", source)?),
                target: abs_cstring("bind target", target)?,
                fstype: None,
                flags: libc::MS_BIND | if *recursive { libc::MS_REC } else { 0 },
                data: None,
                read_only: read_only_of(*read_only, *recursive),
            }),
            MountStep::PeerBind { source, target, read_only, recursive } => Ok(PreparedStep::PeerBind {
                source: abs_cstring("bind source", source)?,
                target: abs_cstring("bind target", target)?,
                recursive: *recursive,
                read_only: read_only_of(*read_only, *recursive),
                slot: peer_slot,
            }),
            MountStep::Proc { target } => fs(c"proc", target, c"proc", NOSUID_NODEV_NOEXEC, None),
            MountStep::Sysfs { target, read_only } => {
                fs(c"sysfs", target, c"sysfs", NOSUID_NODEV_NOEXEC | if *read_only { libc::MS_RDONLY } else { 0 }, None)
            }
            MountStep::Tmpfs { target, options } => {
                // `dev` (as mount(8) spells it) lifts the default `nodev`; tmpfs itself does not
                // know the option.
                let words: Vec<&str> = options.as_deref().map(|o| o.split(',').collect()).unwrap_or_default();
                let dev = words.contains(&"dev");
                let rest = words.iter().filter(|w| **w != "dev").copied().collect::<Vec<_>>().join(",");
                let data = if dev { (!rest.is_empty()).then_some(rest.as_str()) } else { options.as_deref() };
                let flags = libc::MS_NOSUID | if dev { 0 } else { libc::MS_NODEV };
                fs(c"tmpfs", target, c"tmpfs", flags, data)
            }
            MountStep::Devpts { target, options } => fs(
                c"devpts",
                target,
                c"devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some(options.as_deref().unwrap_or("newinstance,ptmxmode=0666,mode=0620")),
            ),
            MountStep::Mqueue { target } => fs(c"mqueue", target, c"mqueue", NOSUID_NODEV_NOEXEC, None),
            MountStep::Propagation { target, propagation, recursive } => Ok(PreparedStep::Propagation {
                target: abs_cstring("propagation target", target)?,
                flags: propagation.flags(*recursive),
            }),
            MountStep::PivotRoot { new_root } => {
                Ok(PreparedStep::PivotRoot { new_root: abs_cstring("pivot_root new root", new_root)? })
            }
            MountStep::MoveRoot { new_root } => {
                Ok(PreparedStep::MoveRoot { new_root: abs_cstring("moved root", new_root)? })
            }
            MountStep::RemountReadOnly { target, recursive } => Ok(PreparedStep::RemountReadOnly {
                target: abs_cstring("read-only remount target", target)?,
                recursive: *recursive,
            }),
            MountStep::Mask { target } => Ok(PreparedStep::Mask { target: abs_cstring("masked path", target)? }),
            MountStep::LandlockRule { path, access } => {
                Ok(PreparedStep::LandlockRule { path: abs_cstring("landlock rule", path)?, access: *access })
            }
            MountStep::MakeDir { path, mode } => {
                Ok(PreparedStep::MakeDir { path: abs_cstring("directory", path)?, mode: *mode as libc::mode_t })
            }
            MountStep::Overlay { target, options } => fs(c"overlay", target, c"overlay", 0, Some(options)),
            MountStep::MakeFile { path, mode } => Ok(PreparedStep::WriteFile {
                path: abs_cstring("file", path)?,
                contents: None,
                mode: *mode as libc::mode_t,
            }),
            MountStep::WriteFile { path, contents, mode } => Ok(PreparedStep::WriteFile {
                path: abs_cstring("file", path)?,
                contents: Some(contents.clone()),
                mode: *mode as libc::mode_t,
            }),
            MountStep::MakeNode { path, mode, major, minor, uid, gid } => {
                let kind = *mode & libc::S_IFMT;
                if ![libc::S_IFCHR, libc::S_IFBLK, libc::S_IFIFO].contains(&kind) {
                    return Err(ValidationError::NodeType { path: path.clone(), mode: *mode });
                }
                Ok(PreparedStep::MakeNode {
                    path: abs_cstring("device node", path)?,
                    mode: *mode as libc::mode_t,
                    dev: libc::makedev(*major, *minor),
                    uid: *uid,
                    gid: *gid,
                })
            }
            MountStep::Symlink { target, path } => Ok(PreparedStep::Symlink {
                target: path_cstring("symlink target", target)?,
                path: abs_cstring("symlink", path)?,
            }),
        }
    }
}

/// How a bind is made read-only after it is mounted.
fn read_only_of(read_only: bool, recursive: bool) -> ReadOnly {
    match (read_only, recursive) {
        (false, _) => ReadOnly::No,
        (true, false) => ReadOnly::Top,
        (true, true) => ReadOnly::Tree,
    }
}

/// Refuses root propagations under which mount steps cannot work or would reach the
/// caller's mount namespace (see `Command::root_propagation`). Pure.
pub(crate) fn check_root_propagation(
    root: Option<(Propagation, bool)>,
    new_user_ns: bool,
    steps: &[MountStep],
) -> std::result::Result<(), ValidationError> {
    if steps.is_empty() {
        return Ok(());
    }
    let isolating = matches!(root, Some((Propagation::Private | Propagation::Slave | Propagation::Unbindable, true)));
    if !new_user_ns && !isolating {
        return Err(ValidationError::MountsWouldPropagate { root_propagation: root });
    }
    if root == Some((Propagation::Shared, true)) {
        for (i, step) in steps.iter().enumerate() {
            match step {
                // A propagation step may make the pivot's parent mount non-shared first.
                MountStep::Propagation { .. } => break,
                MountStep::PivotRoot { .. } | MountStep::MoveRoot { .. } => {
                    return Err(ValidationError::PivotRootUnderSharedRoot { step: i });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether and how a mount is made read-only after it is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOnly {
    No,
    Top,
    Tree,
}

/// A mount step with every string converted; run by the child without allocating
/// ([`crate::child::run_step`]).
#[derive(Debug)]
pub(crate) enum PreparedStep {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        read_only: ReadOnly,
    },
    Propagation {
        target: CString,
        flags: libc::c_ulong,
    },
    /// Copied (`source`) by the child before the root propagation, into
    /// `Plan::peer_trees[slot]`; attached at `target` at its turn.
    PeerBind {
        source: CString,
        target: CString,
        recursive: bool,
        read_only: ReadOnly,
        slot: usize,
    },
    PivotRoot {
        new_root: CString,
    },
    MoveRoot {
        new_root: CString,
    },
    RemountReadOnly {
        target: CString,
        recursive: bool,
    },
    Mask {
        target: CString,
    },
    LandlockRule {
        path: CString,
        access: u64,
    },
    MakeDir {
        path: CString,
        mode: libc::mode_t,
    },
    /// `contents: None`: create if missing (keep what is there); `Some`: create or truncate
    /// and write.
    WriteFile {
        path: CString,
        contents: Option<Vec<u8>>,
        mode: libc::mode_t,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    MakeNode {
        path: CString,
        mode: libc::mode_t,
        dev: libc::dev_t,
        uid: u32,
        gid: u32,
    },
}

/// A step's path that lies beneath the new root of a later `pivot_root`: the child resolves it
/// inside that root (`openat2` with `RESOLVE_IN_ROOT`), so a symbolic link in the root file
/// system — an image's, say — can never make a step create or mount something outside it.
#[derive(Debug)]
pub(crate) struct Beneath {
    /// The new root.
    pub root: CString,
    /// The path below it (no leading `/`).
    pub rel: CString,
    /// Its parent below the root (`.` for the root itself).
    pub parent: CString,
    /// Its last component.
    pub name: CString,
}

impl MountStep {
    /// The path this step creates or mounts on (none for `pivot_root`).
    fn acts_on(&self) -> Option<&Path> {
        match self {
            MountStep::Bind { target, .. }
            | MountStep::PeerBind { target, .. }
            | MountStep::Proc { target }
            | MountStep::Sysfs { target, .. }
            | MountStep::Tmpfs { target, .. }
            | MountStep::Devpts { target, .. }
            | MountStep::Mqueue { target }
            | MountStep::Propagation { target, .. }
            | MountStep::RemountReadOnly { target, .. }
            | MountStep::Mask { target }
            | MountStep::Overlay { target, .. } => Some(target),
            MountStep::LandlockRule { path, .. }
            | MountStep::MakeDir { path, .. }
            | MountStep::MakeFile { path, .. }
            | MountStep::WriteFile { path, .. }
            | MountStep::Symlink { path, .. }
            | MountStep::MakeNode { path, .. } => Some(path),
            MountStep::PivotRoot { .. } | MountStep::MoveRoot { .. } => None,
        }
    }
}

/// For each step, where it lies beneath the root of the first `pivot_root` that follows it.
pub(crate) fn beneath_roots(steps: &[MountStep]) -> std::result::Result<Vec<Option<Beneath>>, ValidationError> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let root = steps[i..].iter().find_map(|s| match s {
            MountStep::PivotRoot { new_root } | MountStep::MoveRoot { new_root } => Some(new_root.as_path()),
            _ => None,
        });
        let beneath = match (root, step.acts_on()) {
            (Some(root), Some(path)) => match path.strip_prefix(root) {
                Ok(rel) if !rel.as_os_str().is_empty() => {
                    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b".");
                    Some(Beneath {
                        root: abs_cstring("pivot_root new root", root)?,
                        rel: cstring("mount path", rel.as_os_str().as_bytes())?,
                        parent: cstring("mount path", parent.as_os_str().as_bytes())?,
                        name: cstring("mount path", name)?,
                    })
                }
                _ => None,
            },
            _ => None,
        };
        out.push(beneath);
    }
    Ok(out)
}

pub(crate) fn cstring(field: &'static str, bytes: &[u8]) -> std::result::Result<CString, ValidationError> {
    CString::new(bytes)
        .map_err(|_| ValidationError::NulByte { field, value: String::from_utf8_lossy(bytes).into_owned() })
}

pub(crate) fn path_cstring(field: &'static str, path: &Path) -> std::result::Result<CString, ValidationError> {
    use std::os::unix::ffi::OsStrExt;
    cstring(field, path.as_os_str().as_bytes())
}

pub(crate) fn abs_cstring(field: &'static str, path: &Path) -> std::result::Result<CString, ValidationError> {
    if !path.is_absolute() {
        return Err(ValidationError::RelativePath { field, path: path.to_owned() });
    }
    path_cstring(field, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_flags() {
        assert_eq!(Propagation::Private.flags(true), libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(Propagation::Slave.flags(false), libc::MS_SLAVE);
    }

    #[test]
    fn prepare_rejects_relative_and_nul() {
        assert!(matches!(MountStep::proc("proc").prepare(0), Err(ValidationError::RelativePath { .. })));
        assert!(matches!(
            MountStep::tmpfs("/tmp/x", Some("size=1\0")).prepare(0),
            Err(ValidationError::NulByte { field: "mount options", .. })
        ));
        let ro = MountStep::bind("/a", "/b").read_only().recursive().prepare(0).unwrap();
        assert!(
            matches!(ro, PreparedStep::Mount { read_only: ReadOnly::Tree, flags, .. } if flags & libc::MS_REC != 0)
        );
    }

    #[test]
    fn root_propagations_that_reach_the_caller_or_break_pivot_root_are_refused() {
        use Propagation::*;
        let steps = [MountStep::proc("/p"), MountStep::pivot_root("/r")];
        for root in [None, Some((Shared, true)), Some((Shared, false)), Some((Private, false)), Some((Slave, false))] {
            assert_eq!(
                check_root_propagation(root, false, &steps),
                Err(ValidationError::MountsWouldPropagate { root_propagation: root })
            );
            // Without steps nothing of ours is mounted: any value.
            assert_eq!(check_root_propagation(root, false, &[]), Ok(()));
        }
        for root in [Some((Private, true)), Some((Slave, true)), Some((Unbindable, true))] {
            assert_eq!(check_root_propagation(root, false, &steps), Ok(()));
            assert_eq!(check_root_propagation(root, true, &steps), Ok(()));
        }
        // A new user namespace makes copied shared mounts slaves: nothing propagates back.
        assert_eq!(check_root_propagation(None, true, &steps), Ok(()));
        assert_eq!(check_root_propagation(Some((Shared, false)), true, &steps), Ok(()));
        assert_eq!(
            check_root_propagation(Some((Shared, true)), true, &steps),
            Err(ValidationError::PivotRootUnderSharedRoot { step: 1 })
        );
        let fixed = [MountStep::propagation("/r", Private, false), MountStep::pivot_root("/r")];
        assert_eq!(check_root_propagation(Some((Shared, true)), true, &fixed), Ok(()));
        assert_eq!(check_root_propagation(Some((Shared, true)), true, &steps[..1]), Ok(()));
    }

    #[test]
    fn serde_shape() {
        let step = MountStep::bind("/a", "/b").read_only();
        let json = serde_json::to_string(&step).unwrap();
        assert!(json.contains("\"type\":\"bind\""), "{json}");
        assert_eq!(serde_json::from_str::<MountStep>(&json).unwrap(), step);
    }
}
