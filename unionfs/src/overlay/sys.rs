//! The overlay driver's only unsafe code: a helper thread with its own working directory.

use std::path::Path;

use crate::{Error, Result};

/// Runs `f` on a short-lived thread whose working directory is `dir`, leaving every other
/// thread's (the caller's included) untouched: the thread first unshares its filesystem
/// context (`unshare(CLONE_FS)`: own cwd, root and umask), then `chdir`s. The mount namespace
/// stays shared, so mounts `f` makes are the caller's. A panic in `f` is resumed here.
pub(super) fn with_private_cwd<T: Send>(dir: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("nook-ovl-mount".into())
            .stack_size(256 << 10)
            .spawn_scoped(s, || -> Result<T> {
                // SAFETY: CLONE_FS only gives this thread a private copy of its cwd, root and
                // umask. The hazard `unshare_unsafe` documents is CLONE_FILES (descriptors
                // created on other threads becoming invalid here), which is not requested; the
                // thread ends when `f` returns and shares no fs state with anyone.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                    .map_err(|e| Error::sys("unshare(CLONE_FS)", dir, e.into()))?;
                rustix::process::chdir(dir).map_err(|e| Error::sys("chdir", dir, e.into()))?;
                Ok(f())
            })
            .map_err(|e| Error::sys("spawn mount thread", dir, e))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
