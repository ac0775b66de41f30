//! Network namespaces as owned handles: anonymous, or persisted under a name exactly like
//! `ip netns add` does (a bind mount of the namespace file in `/run/netns`, which is made a
//! shared mount), so `ip netns exec NAME` works on them.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{self, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use crate::error::{Error, Result, SysContext, ValidationError};
use crate::handle::NsFd;
use crate::join::run_in;
use crate::mount::path_cstring;
use crate::namespace::Namespace;
use crate::sys;

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace.
///
/// Created with [`NetNs::new`] (anonymous: lives while the handle, or a process in it,
/// does) or [`NetNs::create`] (persisted under `/run/netns/NAME`). A handle that created a
/// persisted namespace owns the name: dropping it unmounts and deletes the name
/// (best effort), [`NetNs::remove`] does the same and reports errors, [`NetNs::persist`]
/// gives up ownership so the name outlives the handle. Handles from `open*` never delete.
#[derive(Debug)]
pub struct NetNs {
    ns: NsFd,
    path: Option<PathBuf>,
    owns_path: bool,
}

impl NetNs {
    /// A new anonymous network namespace (holding only a down `lo`).
    pub fn new() -> Result<NetNs> {
        let ns = on_fresh_thread(|| {
            sys::unshare(UnshareFlags::NEWNET).sys("unshare(CLONE_NEWNET)")?;
            NsFd::current(Namespace::Net)
        })?;
        Ok(NetNs { ns, path: None, owns_path: false })
    }

    /// A new network namespace persisted as `/run/netns/NAME`, like `ip netns add NAME`.
    pub fn create(name: &str) -> Result<NetNs> {
        NetNs::create_in(Path::new(NETNS_RUN_DIR), name)
    }

    /// A new network namespace persisted as `DIR/NAME` (a run directory of your own).
    pub fn create_in(dir: &Path, name: &str) -> Result<NetNs> {
        validate_name(name)?;
        let path = dir.join(name);
        let c_path = path_cstring("netns path", &path)?;
        make_shared_run_dir(dir)?;
        fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).sys_at("create", &path)?;
        let made = on_fresh_thread(|| {
            sys::unshare(UnshareFlags::NEWNET).sys("unshare(CLONE_NEWNET)")?;
            mount::mount_bind(c"/proc/thread-self/ns/net", c_path.as_c_str()).sys_at("mount (bind netns)", &path)?;
            NsFd::open(&path, Namespace::Net)
        });
        match made {
            Ok(ns) => Ok(NetNs { ns, path: Some(path), owns_path: true }),
            Err(cause) => {
                // Undo: the bind mount may never have been made (EINVAL: not a mount point).
                let mut cleanup = Vec::new();
                match mount::unmount(c_path.as_c_str(), UnmountFlags::DETACH) {
                    Ok(()) | Err(Errno::INVAL) => {}
                    Err(e) => cleanup.push(Error::sys_path("umount2", &path, e)),
                }
                if let Err(e) = fs::remove_file(&path) {
                    cleanup.push(Error::sys_path("unlink", &path, e));
                }
                Err(Error::with_cleanup(cause, cleanup))
            }
        }
    }

    /// Opens `/run/netns/NAME` (does not take ownership of the name).
    pub fn open(name: &str) -> Result<NetNs> {
        validate_name(name)?;
        NetNs::open_path(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Opens a network namespace file (`/run/netns/X`, `/proc/PID/ns/net`, ...).
    pub fn open_path(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        Ok(NetNs { ns: NsFd::open(path, Namespace::Net)?, path: Some(path.to_owned()), owns_path: false })
    }

    /// The network namespace of process `pid`.
    pub fn of_pid(pid: u32) -> Result<NetNs> {
        Ok(NetNs { ns: NsFd::of_pid(pid, Namespace::Net)?, path: None, owns_path: false })
    }

    /// The namespace handle (for `setns`, [`run_in`], moving links by fd).
    pub fn ns(&self) -> &NsFd {
        &self.ns
    }

    /// The persisted path, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` inside this namespace on a dedicated thread (see [`run_in`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in(&[&self.ns], f)
    }

    /// Gives up ownership of the persisted name (it stays after the handle is dropped);
    /// returns its path.
    pub fn persist(mut self) -> Option<PathBuf> {
        self.owns_path = false;
        self.path.clone()
    }

    /// Deletes the persisted name if this handle owns it (unmount, then unlink), and closes
    /// the handle. The namespace itself ends when nothing else holds it.
    pub fn remove(mut self) -> Result<()> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<()> {
        if !self.owns_path {
            return Ok(());
        }
        self.owns_path = false;
        match &self.path {
            Some(path) => delete_path(path),
            None => Ok(()),
        }
    }

    /// Deletes `/run/netns/NAME` like `ip netns delete NAME`.
    pub fn delete(name: &str) -> Result<()> {
        validate_name(name)?;
        delete_path(&Path::new(NETNS_RUN_DIR).join(name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.remove_inner();
    }
}

/// Unmounts and unlinks a persisted name; both are tried, every failure is reported
/// ([`Error::Teardown`]).
fn delete_path(path: &Path) -> Result<()> {
    let c = path_cstring("netns path", path)?;
    let mut errors = Vec::new();
    if let Err(e) = mount::unmount(c.as_c_str(), UnmountFlags::DETACH) {
        errors.push(Error::sys_path("umount2", path, e));
    }
    if let Err(e) = fs::remove_file(path) {
        errors.push(Error::sys_path("unlink", path, e));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Teardown { what: format!("network namespace {}", path.display()), errors })
    }
}

fn validate_name(name: &str) -> std::result::Result<(), ValidationError> {
    let bad = |reason| Err(ValidationError::BadName { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if name.contains('/') {
        return bad("contains `/`");
    }
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

/// Creates `dir` and makes it a shared mount point, as iproute2 does, so a namespace bind
/// mount made here shows up in mount namespaces created later.
///
/// Serialized within the process: two threads that both find `dir` not yet a mount point
/// would otherwise each bind it onto itself, stacking mounts. (Across processes the race
/// remains, as with iproute2.)
fn make_shared_run_dir(dir: &Path) -> Result<()> {
    static RUN_DIR_SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serialized = RUN_DIR_SETUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    fs::create_dir_all(dir).sys_at("mkdir", dir)?;
    let c = path_cstring("netns run dir", dir)?;
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match mount::mount_change(c.as_c_str(), shared) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount::mount_bind_recursive(c.as_c_str(), c.as_c_str()).sys_at("mount (bind run dir)", dir)?;
            mount::mount_change(c.as_c_str(), shared).sys_at("mount (make shared)", dir)
        }
        Err(e) => Err(Error::sys_path("mount (make shared)", dir, e)),
    }
}

/// Runs `f` on a new thread that exits afterwards (so an `unshare` there never affects the
/// caller's threads).
fn on_fresh_thread<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    crate::thread::on_helper_thread("nook-ns-netns", Some(crate::thread::HELPER_STACK), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert!(validate_name("nk-test_1.a").is_ok());
    }
}
