//! The `mount(2)` fallback: one option string of at most one page, compacted when needed
//! (see the parent module's docs).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::mount::MountFlags;

use super::options::render_data;
use super::{MountContext, TmpfsUpper};
use crate::error::SysContext;
use crate::{Error, LayerStack, MAX_MOUNT_DATA, Result, Upper};

/// Mounts `stack` (already validated) at `target` with `mount(2)`.
pub(super) fn mount(stack: &LayerStack, target: &Path, tmpfs: Option<&TmpfsUpper>) -> Result<()> {
    let opts = stack.overlay_options();
    let lowers: Vec<&Path> = stack.lower_dirs().iter().rev().map(PathBuf::as_path).collect();
    let upper_work: Option<(PathBuf, PathBuf)> = match stack.upper_layer() {
        Upper::None => None,
        Upper::Dir { upper, work } => Some((upper.clone(), work.clone())),
        Upper::Tmpfs { .. } => {
            let t = tmpfs.expect("a tmpfs upper is created before the overlay");
            Some((t.proc_path("upper"), t.proc_path("work")))
        }
    };
    let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();

    // 1. Absolute paths, from this thread.
    let lower_names: Vec<&[u8]> = lowers.iter().map(|p| p.as_os_str().as_bytes()).collect();
    let uw = upper_work.as_ref().map(|(u, w)| (bytes(u), bytes(w)));
    let data = render_data(&lower_names, uw, opts);
    if data.len() <= MAX_MOUNT_DATA {
        return mount2(target, data);
    }

    // 2. Relative to the lowers' common parent, from a thread that chdir()s there.
    if let Some(base) = common_parent(&lowers) {
        let rel = |p: &Path| -> Vec<u8> {
            match p.strip_prefix(&base) {
                Ok(r) if r.as_os_str().is_empty() => b".".to_vec(),
                Ok(r) => bytes(r),
                Err(_) => bytes(p),
            }
        };
        let lower_names: Vec<Vec<u8>> = lowers.iter().map(|p| rel(p)).collect();
        let uw = upper_work.as_ref().map(|(u, w)| (rel(u), rel(w)));
        let data = render_data(&lower_names, uw, opts);
        if data.len() <= MAX_MOUNT_DATA {
            return on_thread_with_cwd(&base, || mount2(target, data))?;
        }
    }

    // 3. Every layer as an O_PATH descriptor, named by number under /proc/thread-self/fd.
    let open = |what: &'static str, p: &Path| {
        rustix::fs::openat(CWD, p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).sys_at(what, p)
    };
    let lower_fds = lowers.iter().map(|p| open("open(lower)", p)).collect::<Result<Vec<OwnedFd>>>()?;
    let upper_fds = match stack.upper_layer() {
        Upper::None => None,
        Upper::Dir { upper, work } => Some((open("open(upper)", upper)?, open("open(work)", work)?)),
        Upper::Tmpfs { .. } => {
            let t = tmpfs.expect("a tmpfs upper is created before the overlay");
            Some((t.open_dir("upper")?, t.open_dir("work")?))
        }
    };
    let name = |fd: &OwnedFd| fd.as_raw_fd().to_string().into_bytes();
    let lower_names: Vec<Vec<u8>> = lower_fds.iter().map(name).collect();
    let uw = upper_fds.as_ref().map(|(u, w)| (name(u), name(w)));
    let data = render_data(&lower_names, uw, opts);
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::MountDataTooLong { len: data.len(), limit: MAX_MOUNT_DATA });
    }
    let r = on_thread_with_cwd(Path::new("/proc/thread-self/fd"), || mount2(target, data))?;
    drop((lower_fds, upper_fds));
    r
}

/// `mount("overlay", target, "overlay", 0, data)`.
fn mount2(target: &Path, data: Vec<u8>) -> Result<()> {
    // Validated paths hold no NUL, and neither do fd numbers or option names.
    let data = CString::new(data).map_err(std::io::Error::other).sys_at("mount(overlay)", target)?;
    rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), Some(data.as_c_str())).mount_ctx(
        "mount(overlay)",
        target,
        None,
    )
}

/// The deepest directory that contains every path (`None` when there is none besides `/`,
/// where relative names would save one byte a layer).
pub(crate) fn common_parent(paths: &[&Path]) -> Option<PathBuf> {
    let mut base = paths.first()?.parent()?;
    for p in &paths[1..] {
        while !p.starts_with(base) {
            base = base.parent()?;
        }
    }
    (base.parent().is_some()).then(|| base.to_owned())
}

/// Runs `f` on a short-lived thread whose working directory is `dir` (nook-ns's helper:
/// `unshare(CLONE_FS)`, then `fchdir`), leaving every other thread's untouched. The mount
/// namespace stays shared, so the mount `f` makes is the caller's.
fn on_thread_with_cwd<T: Send>(dir: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    nook_ns::on_thread_with_cwd(dir, f).map_err(Error::from_ns)
}
