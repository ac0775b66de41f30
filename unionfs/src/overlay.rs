//! The overlay driver: mounts a [`LayerStack`] with the new mount API (`fsopen("overlay")`,
//! one `fsconfig(lowerdir+)` per layer, `fsmount`, `move_mount`), falling back to `mount(2)`.
//!
//! # Why the new mount API
//!
//! `mount(2)` takes all overlay options as one string, and the kernel reads at most one page
//! of it ([`MAX_MOUNT_DATA`](crate::MAX_MOUNT_DATA), 4095 bytes): with layer paths like
//! `/var/lib/docker/overlay2/<64 hex>/diff` that is about 50 layers. Docker's overlay2 driver
//! works around it with short symlinks and still stops at 128 layers; runc fails near 70. The
//! kernel itself stacks up to [`MAX_LOWER_LAYERS`](crate::MAX_LOWER_LAYERS) (500). Since
//! Linux 6.8 overlayfs takes `lowerdir+` through `fsconfig(2)`: one call per layer, each path
//! up to 255 bytes, no overall limit. The first `lowerdir+` given is the **top** layer (checked
//! on the kernel), so the driver feeds a bottom-first [`LayerStack`] in reverse. When a step
//! fails the driver reads the mount context's log (the `fsopen` fd) and puts the kernel's
//! messages into [`Error::Mount`](crate::Error::Mount).
//!
//! A mount costs exactly what a hand-written C program pays: `fsopen`, one `fsconfig` per
//! layer, one per upper/work dir and per option, `fsconfig(CMD_CREATE)`, `fsmount`,
//! `move_mount`, two `close`s. [`LayerStack::validate`] is pure; there is no `stat` per layer
//! and no probe per mount (the one feature [`probe`] is cached per process).
//!
//! # The `mount(2)` fallback
//!
//! Used when the kernel lacks `fsopen` or `lowerdir+` (probed once by [`probe`], which the
//! kernel's legacy `fs_context` wrapper before 6.5 cannot fool), when a path is too long for `fsconfig` (255 bytes), or when
//! [`OverlayOptions::legacy_mount`](crate::OverlayOptions::legacy_mount) asks for it. It tries,
//! in order, the first string that fits in one page:
//!
//! 1. absolute paths ([`LayerStack::mount_data`]), mounted from the calling thread;
//! 2. paths relative to the layers' common parent directory;
//! 3. every layer opened as an `O_PATH` descriptor and named by its number relative to
//!    `/proc/thread-self/fd` (about 4 bytes a layer: 500 layers fit).
//!
//! Forms 2 and 3 need a different working directory while `mount(2)` resolves the paths. The
//! driver runs them on a short-lived helper thread that first unshares its filesystem context
//! (`unshare(CLONE_FS)`), so the caller's working directory never changes, even when other
//! threads run, while the mount namespace stays shared (the mount is the caller's). If nothing
//! fits the mount fails with [`Error::MountDataTooLong`](crate::Error::MountDataTooLong).
//! `/proc/self/mountinfo` then shows the short names the kernel was given.
//!
//! # Tmpfs uppers
//!
//! [`Upper::Tmpfs`] makes a detached tmpfs (`fsopen("tmpfs")`, `fsmount`, never attached to
//! a path), creates `upper` and `work` in it through the mount fd, and hands them to overlayfs
//! with `fsconfig(FSCONFIG_SET_FD)` (falling back to `/proc/self/fd/N/upper` paths where the
//! kernel does not take descriptors). Overlayfs keeps its own private clone of the tmpfs mount,
//! so the tmpfs lives exactly as long as the overlay. Before Linux 6.15 overlayfs refuses a
//! layer on a detached mount (`EINVAL`): there the tmpfs is first attached at the target and the
//! overlay mounted over it (mountinfo shows both; the tmpfs is unmounted with the overlay). [`MountedStack`] keeps the mount fd so
//! [`MountedStack::upper_dir`] can show the upper while the handle lives.
//!
//! # The driver boundary
//!
//! [`StorageDriver`] is what a container runtime needs from a storage backend: turn a stack of
//! layers into a root filesystem at a path, and give back a handle that removes it. Overlay
//! and the copy driver ([`Vfs`](crate::Vfs)) implement it. A block-level driver (devicemapper
//! thin snapshots, zfs or btrfs clones) would implement it too, snapshotting per layer instead
//! of stacking directories; this kernel has neither device-mapper thin provisioning nor zfs,
//! so nook ships none.

mod legacy;
mod options;
mod probe;

pub use probe::{KernelSupport, probe, supports_lowerdir_plus};

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};

use self::options::{MAX_FSCONFIG_STRING, escaped, escaped_len};
use crate::error::SysContext;
use crate::stack::check_dir;
use crate::{Error, LayerStack, Result, Upper};

/// A mounted stack. Unmounts on drop (best effort); [`MountedStack::remove`] reports errors.
///
/// The handle is `Send + Sync` and needs no particular thread: unmounting goes by path
/// (`umount2(target)`), valid from any thread of the process's mount namespace.
#[derive(Debug)]
pub struct MountedStack {
    target: PathBuf,
    /// The upper dir (for a tmpfs upper: a `/proc/self/fd/N/upper` path through `tmpfs`).
    upper: Option<PathBuf>,
    /// The detached tmpfs mount holding a tmpfs upper and work dir.
    tmpfs: Option<OwnedFd>,
    /// The tmpfs is attached at `target`, beneath the overlay (kernels that refuse a
    /// detached mount as a layer): unmounted right after the overlay.
    tmpfs_beneath: bool,
    /// Whether Drop unmounts.
    armed: bool,
    /// A copy (vfs driver): nothing is mounted; removing deletes the tree under `target`.
    copy: bool,
}

impl MountedStack {
    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The upper dir in use (for `Upper::Tmpfs`, inside the private tmpfs), if any.
    ///
    /// For [`Upper::Dir`] it is the upper dir given. For [`Upper::Tmpfs`] it is
    /// `/proc/self/fd/N/upper`, where `N` is this handle's descriptor of the detached tmpfs: a
    /// path valid in this process only, and only while the handle lives (copy-ups and
    /// whiteouts can be inspected there). `None` for a read-only stack.
    pub fn upper_dir(&self) -> Option<&Path> {
        self.upper.as_deref()
    }

    /// Unmounts (and removes a tmpfs upper); reports every failure.
    ///
    /// Tries a plain `umount2(target, 0)` first. When the mount is busy (`EBUSY`: a process
    /// has a file open or its working directory inside) it detaches it lazily
    /// (`MNT_DETACH`: gone from the mount tree at once, freed when the last user leaves) and
    /// returns [`Error::Busy`] so the caller knows something still used it; if the detach
    /// fails too, or unmounting a tmpfs attached beneath the overlay fails after it, the error
    /// is [`Error::Teardown`] listing every failure. A tmpfs upper is freed with the overlay
    /// (this handle's descriptor of it is closed here).
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        let target = std::mem::take(&mut self.target);
        if self.copy {
            return crate::vfs::remove_copy(&target);
        }
        let mut errors = Vec::new();
        let overlay_gone = match rustix::mount::unmount(&target, UnmountFlags::empty()) {
            Ok(()) => true,
            Err(Errno::BUSY) => {
                let detached = rustix::mount::unmount(&target, UnmountFlags::DETACH);
                errors.push(Error::Busy { target: target.clone(), detached: detached.is_ok() });
                if let Err(e) = detached {
                    errors.push(Error::sys_at("umount2(MNT_DETACH)", &target, e));
                }
                detached.is_ok()
            }
            Err(e) => {
                errors.push(Error::sys_at("umount2", &target, e));
                false
            }
        };
        // The overlay is gone from `target` (unmounted or detached): the tmpfs beneath it is
        // on top now. Nothing else can use it (the overlay has its own clone of it).
        if self.tmpfs_beneath
            && overlay_gone
            && let Err(e) = rustix::mount::unmount(&target, UnmountFlags::DETACH)
        {
            errors.push(Error::sys_at("umount2(tmpfs beneath)", &target, e));
        }
        // The overlay held the tmpfs; closing our descriptor lets it go with the overlay.
        drop(self.tmpfs.take());
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Teardown { what: format!("overlay at {}", target.display()), errors }),
        }
    }

    /// Keeps the mount after this handle is dropped; returns its target.
    ///
    /// A tmpfs upper stays alive with the overlay (which holds its own reference); it is
    /// freed when the overlay is eventually unmounted. Where the tmpfs had to be attached
    /// beneath the overlay (before Linux 6.15) it stays mounted there too.
    pub fn leak(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.target)
    }
}

impl MountedStack {
    /// The handle of a tree the copy driver materialised at `target` (nothing mounted):
    /// [`MountedStack::remove`] and drop delete what is under `target` (not `target` itself).
    pub(crate) fn copied(target: PathBuf) -> MountedStack {
        MountedStack { target, upper: None, tmpfs: None, tmpfs_beneath: false, armed: true, copy: true }
    }
}

impl Drop for MountedStack {
    fn drop(&mut self) {
        if self.armed && self.copy {
            let _ = crate::vfs::remove_copy(&self.target);
        } else if self.armed {
            let overlay = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
            if self.tmpfs_beneath && overlay.is_ok() {
                let _ = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
            }
        }
    }
}

/// A storage driver: turns a stack into a root filesystem at a target. Overlay and the copy
/// (vfs) driver implement it; a block-level driver (devicemapper, zfs) would too.
pub trait StorageDriver: std::fmt::Debug + Send + Sync {
    /// The driver's name (`"overlay"`, `"vfs"`).
    fn name(&self) -> &'static str;
    /// Makes `stack` available at `target`.
    fn mount(&self, stack: &LayerStack, target: &Path) -> Result<MountedStack>;
}

/// The overlay driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overlay;

impl StorageDriver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn mount(&self, stack: &LayerStack, target: &Path) -> Result<MountedStack> {
        mount_stack(stack, target)
    }
}

/// Renders fs_context log lines for [`Error::Mount`]'s message.
pub(crate) fn render_log(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    let mut out = String::from(" (kernel: ");
    for (i, m) in log.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(m);
    }
    out.push(')');
    out
}

/// Drains the fs_context log of an `fsopen` fd (each `read` returns one message, prefixed
/// `e `, `w ` or `i ` for error, warning, info).
fn read_log(fs: &OwnedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // The kernel keeps at most 8 messages; the bound only guards against surprises.
    for _ in 0..16 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
            _ => break,
        }
    }
    out
}

/// Turns a failed mount step into [`Error::Mount`]: the step, the path, and the kernel's
/// messages from the mount context `fs` (when there is one).
pub(crate) trait MountContext<T> {
    fn mount_ctx(self, call: &'static str, path: &Path, fs: Option<&OwnedFd>) -> Result<T>;
}

impl<T> MountContext<T> for rustix::io::Result<T> {
    fn mount_ctx(self, call: &'static str, path: &Path, fs: Option<&OwnedFd>) -> Result<T> {
        self.map_err(|e| Error::Mount {
            call,
            path: path.to_owned(),
            source: e.into(),
            log: fs.map(read_log).unwrap_or_default(),
        })
    }
}

/// The detached tmpfs of an [`Upper::Tmpfs`], with `upper` and `work` dirs made in it.
pub(crate) struct TmpfsUpper {
    mnt: OwnedFd,
}

impl TmpfsUpper {
    fn create(size: Option<u64>) -> Result<TmpfsUpper> {
        let here = Path::new("tmpfs");
        let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).mount_ctx("fsopen(tmpfs)", here, None)?;
        if let Some(size) = size {
            rustix::mount::fsconfig_set_string(&fs, "size", size.to_string()).mount_ctx(
                "fsconfig(tmpfs size)",
                here,
                Some(&fs),
            )?;
        }
        rustix::mount::fsconfig_create(&fs).mount_ctx("fsconfig(tmpfs create)", here, Some(&fs))?;
        let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).mount_ctx(
            "fsmount(tmpfs)",
            here,
            Some(&fs),
        )?;
        for dir in ["upper", "work"] {
            rustix::fs::mkdirat(&mnt, dir, Mode::from_raw_mode(0o755)).sys_at("mkdirat(tmpfs)", dir)?;
        }
        // The union's root takes the upper dir's mode: make it 0755 whatever the umask.
        rustix::fs::chmodat(&mnt, "upper", Mode::from_raw_mode(0o755), rustix::fs::AtFlags::empty())
            .sys_at("chmodat(tmpfs)", "upper")?;
        Ok(TmpfsUpper { mnt })
    }

    /// `/proc/self/fd/N/<name>`: a path to a dir in the detached tmpfs.
    fn proc_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.mnt.as_raw_fd()))
    }

    /// An `O_PATH` descriptor of a dir in the tmpfs.
    fn open_dir(&self, name: &str) -> Result<OwnedFd> {
        rustix::fs::openat(&self.mnt, name, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .sys_at("openat(tmpfs)", name)
    }
}

/// Whether every path fits an `fsconfig` string value (255 bytes; upper/work escaped).
fn fits_fsconfig(stack: &LayerStack) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let lowers_fit = stack.lower_dirs().iter().all(|l| l.as_os_str().len() <= MAX_FSCONFIG_STRING);
    lowers_fit
        && match stack.upper_layer() {
            Upper::Dir { upper, work } => {
                [upper, work].iter().all(|p| escaped_len(p.as_os_str().as_bytes()) <= MAX_FSCONFIG_STRING)
            }
            Upper::None | Upper::Tmpfs { .. } => true,
        }
}

impl LayerStack {
    /// Mounts the stack at `target` (an absolute path to an existing directory) with the
    /// overlay driver: validates, then mounts through `fsopen`/`fsconfig(lowerdir+)`/`fsmount`/
    /// `move_mount`, or through `mount(2)` where that is missing (see [`crate::Overlay`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), nook_unionfs::Error> {
    /// use nook_unionfs::{LayerStack, Upper};
    /// let mut stack = LayerStack::new();
    /// stack.lowers(["/layers/base", "/layers/app"]).upper(Upper::Tmpfs { size: Some(64 << 20) });
    /// let mounted = stack.mount("/run/rootfs".as_ref())?;
    /// // ... use /run/rootfs ...
    /// mounted.remove()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn mount(&self, target: &Path) -> Result<MountedStack> {
        mount_stack(self, target)
    }
}

/// [`LayerStack::mount`] and [`Overlay`]'s [`StorageDriver::mount`]: validates, then mounts.
pub(crate) fn mount_stack(stack: &LayerStack, target: &Path) -> Result<MountedStack> {
    stack.validate()?;
    check_dir("target", target)?;
    let tmpfs = match stack.upper_layer() {
        Upper::Tmpfs { size } => Some(TmpfsUpper::create(*size)?),
        Upper::None | Upper::Dir { .. } => None,
    };
    let support = probe();
    // Before Linux 6.15 overlayfs refuses a layer on a mount outside the caller's mount
    // namespace (`clone_private_mount`: EINVAL), which a detached tmpfs is; those kernels take
    // no O_PATH layer descriptors either (`layers_by_fd`). There the tmpfs is attached at the
    // target first and the overlay mounted over it; it is unmounted with the overlay.
    let tmpfs_beneath = tmpfs.is_some() && !support.layers_by_fd;
    if let (Some(t), true) = (&tmpfs, tmpfs_beneath) {
        rustix::mount::move_mount(&t.mnt, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).mount_ctx(
            "move_mount(tmpfs)",
            target,
            None,
        )?;
    }
    let legacy = stack.overlay_options().legacy_mount || !fits_fsconfig(stack) || !support.lowerdir_plus;
    let mounted = if legacy {
        legacy::mount(stack, target, tmpfs.as_ref())
    } else {
        mount_new_api(stack, target, tmpfs.as_ref())
    };
    if let Err(e) = mounted {
        if tmpfs_beneath && let Err(u) = rustix::mount::unmount(target, UnmountFlags::DETACH) {
            let cleanup = Error::sys_at("umount2(tmpfs beneath)", target, u);
            return Err(Error::Cleanup { cause: Box::new(e), cleanup: vec![cleanup] });
        }
        return Err(e);
    }
    let upper = match stack.upper_layer() {
        Upper::None => None,
        Upper::Dir { upper, .. } => Some(upper.clone()),
        Upper::Tmpfs { .. } => tmpfs.as_ref().map(|t| t.proc_path("upper")),
    };
    Ok(MountedStack {
        target: target.to_owned(),
        upper,
        tmpfs: tmpfs.map(|t| t.mnt),
        tmpfs_beneath,
        armed: true,
        copy: false,
    })
}

/// The fs_context steps up to (not including) `fsmount`: returns the configured context.
/// No validation here (callers validate; tests use it to reach the kernel's own checks).
pub(crate) fn configure_new_api(stack: &LayerStack, target: &Path, tmpfs: Option<&TmpfsUpper>) -> Result<OwnedFd> {
    let fs =
        rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).mount_ctx("fsopen(overlay)", target, None)?;
    // The first lowerdir+ is the top layer.
    for l in stack.lower_dirs().iter().rev() {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", l).mount_ctx("fsconfig(lowerdir+)", l, Some(&fs))?;
    }
    match stack.upper_layer() {
        Upper::None => {}
        Upper::Dir { upper, work } => {
            use std::os::unix::ffi::OsStrExt;
            // upperdir=/workdir= are unescaped by overlayfs even through fsconfig.
            rustix::mount::fsconfig_set_string(&fs, "upperdir", escaped(upper.as_os_str().as_bytes())).mount_ctx(
                "fsconfig(upperdir)",
                upper,
                Some(&fs),
            )?;
            rustix::mount::fsconfig_set_string(&fs, "workdir", escaped(work.as_os_str().as_bytes())).mount_ctx(
                "fsconfig(workdir)",
                work,
                Some(&fs),
            )?;
        }
        Upper::Tmpfs { .. } => {
            let tmpfs = tmpfs.expect("a tmpfs upper is created before the overlay");
            for (key, name, op) in
                [("upperdir", "upper", "fsconfig(upperdir)"), ("workdir", "work", "fsconfig(workdir)")]
            {
                let dir = tmpfs.open_dir(name)?;
                match rustix::mount::fsconfig_set_fd(&fs, key, dir.as_fd()) {
                    Ok(()) => {}
                    // Kernels before layers by descriptor (EINVAL, 6.13) or before O_PATH
                    // descriptors in FSCONFIG_SET_FD (EBADF, 6.15): name the dir through /proc.
                    Err(Errno::INVAL | Errno::BADF) => {
                        let _ = read_log(&fs); // drop the "not supported" note
                        let path = tmpfs.proc_path(name);
                        rustix::mount::fsconfig_set_string(&fs, key, &path).mount_ctx(op, &path, Some(&fs))?;
                    }
                    Err(e) => return Err(e).mount_ctx(op, &tmpfs.proc_path(name), Some(&fs)),
                }
            }
        }
    }
    for o in stack.overlay_options().settings() {
        let r = match o.value {
            Some(v) => rustix::mount::fsconfig_set_string(&fs, o.key, v),
            None => rustix::mount::fsconfig_set_flag(&fs, o.key),
        };
        r.mount_ctx(o.op, target, Some(&fs))?;
    }
    rustix::mount::fsconfig_create(&fs).mount_ctx("fsconfig(create)", target, Some(&fs))?;
    Ok(fs)
}

/// The new mount API path: configure, `fsmount`, `move_mount` onto `target`.
fn mount_new_api(stack: &LayerStack, target: &Path, tmpfs: Option<&TmpfsUpper>) -> Result<()> {
    let fs = configure_new_api(stack, target, tmpfs)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).mount_ctx(
        "fsmount(overlay)",
        target,
        Some(&fs),
    )?;
    rustix::mount::move_mount(&mnt, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).mount_ctx(
        "move_mount",
        target,
        None,
    )
}

#[cfg(test)]
mod tests;
