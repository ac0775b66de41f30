//! What the running kernel offers this crate, found by asking the kernel, never by its version.
//!
//! Each feature is probed with a call that cannot have an effect: an argument the kernel must
//! refuse, chosen so that *how* it refuses tells whether the feature exists. `clone3` with a
//! size below the smallest `struct clone_args` is `EINVAL` where the call exists and `ENOSYS`
//! where it does not; `CLONE_INTO_CGROUP` with a descriptor no process can hold is `EBADF`
//! where the flag is known (the kernel got as far as looking the descriptor up, after every
//! flag check) and `EINVAL`/`E2BIG` where it is not (an unknown flag, or a `clone_args` larger
//! than the kernel's). A probe whose refusal could come from something else than the feature's
//! absence reports the feature missing, so callers take their fallback.
//!
//! The decisions are pure (`decide_clone3`, ...): unit tests cover every answer;
//! `tests/probe.rs` checks the result on the running kernel (in CI: 6.18 and, in the VM lane,
//! 6.1).

use std::sync::OnceLock;

use crate::namespace::{Namespace, NamespaceSet};
use crate::sys::consts;

/// What the running kernel supports of what `nook-ns` uses (see [`probe`]).
///
/// Features missing here make the crate use its fallback, or fail with a typed error where
/// there is none (listed per field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KernelSupport {
    /// Namespace kinds the kernel has (an entry in `/proc/self/ns`). Time namespaces need
    /// Linux 5.6, cgroup namespaces 4.6; asking for a missing kind fails at spawn.
    pub namespaces: NamespaceSet,
    /// `clone3` (Linux 5.3). Without it children are created with `clone(2)` (with
    /// `CLONE_PIDFD`), which works as well except for `CLONE_INTO_CGROUP`.
    pub clone3: bool,
    /// `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7): the child is born in its cgroup.
    /// Without it the parent writes the child's pid to `cgroup.procs` before letting it run
    /// (the child waits for that), so the child still runs nothing outside its cgroup.
    pub clone_into_cgroup: bool,
    /// `pidfd_open` (Linux 5.3), behind [`pidfd_open`](crate::pidfd_open).
    pub pidfd_open: bool,
    /// `pidfd_send_signal` (Linux 5.1): signals go to the process, never to a recycled pid.
    pub pidfd_send_signal: bool,
    /// `waitid(P_PIDFD)` (Linux 5.4): waiting on a child by its pidfd. Required: spawning
    /// fails without it.
    pub waitid_pidfd: bool,
    /// `setns` with a pidfd (Linux 5.8), behind [`join_pidfd`](crate::join_pidfd); joining
    /// by `/proc/PID/ns/*` paths ([`join_path`](crate::join_path)) works everywhere.
    pub setns_pidfd: bool,
    /// `mount_setattr` (Linux 5.12): read-only bind mounts are made read-only recursively in
    /// one call; without it each is remounted with `MS_REMOUNT | MS_BIND | MS_RDONLY` (the
    /// submounts of a recursive bind stay writable).
    pub mount_setattr: bool,
}

static SUPPORT: OnceLock<KernelSupport> = OnceLock::new();

/// Probes what the running kernel supports, once per process (cached).
///
/// Nothing is created: every probe is a call the kernel refuses (see the module docs), except
/// `pidfd_open` of the caller itself (closed at once) and `setns` with that pidfd into the
/// caller's own UTS namespace on a short-lived thread (no change). A probe that cannot tell
/// reports the feature missing.
pub fn probe() -> KernelSupport {
    *SUPPORT.get_or_init(probe_kernel)
}

/// Whether `CLONE_INTO_CGROUP` can be asked of `clone3` (cached [`probe`]).
pub(crate) fn clone_into_cgroup() -> bool {
    probe().clone_into_cgroup
}

fn probe_kernel() -> KernelSupport {
    let namespaces = Namespace::ALL
        .into_iter()
        .filter(|k| std::fs::symlink_metadata(format!("/proc/self/ns/{}", k.proc_name())).is_ok())
        .collect();
    let self_pidfd = raw::pidfd_open_self();
    let setns_pidfd = match &self_pidfd {
        Ok(fd) => decide_setns_pidfd(raw::setns_own_uts_on_a_thread(fd)),
        Err(_) => false,
    };
    KernelSupport {
        namespaces,
        clone3: decide_clone3(raw::clone3_too_small()),
        clone_into_cgroup: decide_clone_into_cgroup(raw::clone3_into_bad_cgroup()),
        pidfd_open: decide_exists(self_pidfd.as_ref().map(|_| ()).map_err(|&e| e)),
        pidfd_send_signal: decide_bad_fd(raw::pidfd_send_signal_bad_fd()),
        waitid_pidfd: decide_bad_fd(raw::waitid_bad_pidfd()),
        setns_pidfd,
        mount_setattr: decide_exists(raw::mount_setattr_too_small()),
    }
}

/// A call that must fail: the syscall exists unless it says `ENOSYS` (or a seccomp filter
/// refuses it with `EPERM`, which makes it as good as missing).
pub(crate) fn decide_exists(r: Result<(), i32>) -> bool {
    !matches!(r, Err(libc::ENOSYS | libc::EPERM))
}

/// `clone3(NULL, 0)`: `EINVAL` (size below `CLONE_ARGS_SIZE_VER0`) where clone3 exists.
pub(crate) fn decide_clone3(r: Result<(), i32>) -> bool {
    r == Err(libc::EINVAL)
}

/// `clone3(CLONE_INTO_CGROUP, cgroup = INT_MAX)`: `EBADF` from the descriptor lookup, which
/// comes after every flag and size check. `EINVAL` (unknown flag), `E2BIG` (a `clone_args`
/// with a `cgroup` field the kernel does not have) and `ENOSYS` mean no.
pub(crate) fn decide_clone_into_cgroup(r: Result<(), i32>) -> bool {
    r == Err(libc::EBADF)
}

/// A call given a descriptor no process can hold: `EBADF` where the call (or the `P_PIDFD`
/// id type) exists; `EINVAL` (unknown id type) or `ENOSYS` where not.
pub(crate) fn decide_bad_fd(r: Result<(), i32>) -> bool {
    r == Err(libc::EBADF)
}

/// `setns(pidfd, CLONE_NEWUTS)` into the caller's own UTS namespace: `EINVAL` before 5.8 (a
/// pidfd is not a namespace file); success, or `EPERM` without `CAP_SYS_ADMIN`, after.
pub(crate) fn decide_setns_pidfd(r: Result<(), i32>) -> bool {
    matches!(r, Ok(()) | Err(libc::EPERM))
}

/// The Landlock ABI version of the running kernel: `landlock_create_ruleset(NULL, 0,
/// LANDLOCK_CREATE_RULESET_VERSION)`, which creates nothing and returns the highest ABI the
/// kernel implements (1 on Linux 5.13, one more for each release that added access rights).
///
/// Errors as the kernel gives them: `ENOSYS` where the kernel has no Landlock (or a seccomp
/// filter hides the call), `EOPNOTSUPP` where it is built in but not enabled at boot (not in
/// the `lsm=` list). Not cached: the call is cheap.
pub fn landlock_abi() -> std::io::Result<u32> {
    raw::landlock_abi_version().map_err(std::io::Error::from_raw_os_error)
}

/// The probes' system calls. Each returns `Err(errno)`, or `Ok(())` where the call succeeded.
/// Those that must be refused stay raw `libc`: they pass what rustix's types cannot hold (a
/// null or zero-sized argument, a descriptor no process can own, a child that may not exist).
mod raw {
    use std::os::fd::{AsFd, OwnedFd};

    use super::consts;
    use crate::sys::CloneArgs;

    /// A descriptor number no process can hold: above `fs.nr_open`'s maximum (2^30 - 64) and
    /// at most `INT_MAX`, which the kernel's own range checks accept.
    const NO_SUCH_FD: libc::c_int = libc::c_int::MAX;

    fn result(ret: libc::c_long) -> Result<(), i32> {
        if ret == -1 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(()) }
    }

    pub(super) fn clone3_too_small() -> Result<(), i32> {
        // SAFETY: size 0 is below CLONE_ARGS_SIZE_VER0: the kernel refuses before reading
        // the (null) argument or creating anything.
        result(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) })
    }

    pub(super) fn clone3_into_bad_cgroup() -> Result<(), i32> {
        let mut args = CloneArgs {
            flags: consts::CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: NO_SUCH_FD as u64,
            ..CloneArgs::default()
        };
        // SAFETY: a valid clone_args of the size passed. No CLONE_VM: were a child created
        // after all (a kernel that ignored the descriptor), it would have its own copy of
        // the address space and leaves at once through _exit below.
        let ret =
            unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
        match ret {
            // SAFETY: we are that unexpected child: leave without running anything.
            0 => unsafe { libc::_exit(0) },
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: reaping the child just created; status is a valid out-parameter.
                unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                Ok(())
            }
            _ => result(-1),
        }
    }

    pub(super) fn pidfd_open_self() -> Result<OwnedFd, i32> {
        rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty())
            .map_err(rustix::io::Errno::raw_os_error)
    }

    pub(super) fn pidfd_send_signal_bad_fd() -> Result<(), i32> {
        // SAFETY: signal 0 to a descriptor that cannot exist: refused, nothing is sent.
        result(unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, NO_SUCH_FD, 0, std::ptr::null::<libc::siginfo_t>(), 0u32)
        })
    }

    pub(super) fn waitid_bad_pidfd() -> Result<(), i32> {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; the descriptor cannot exist.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; WNOHANG, so nothing waits even if the id type were ignored.
        let ret = unsafe {
            libc::waitid(consts::P_PIDFD, NO_SUCH_FD as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG)
        };
        result(ret as libc::c_long)
    }

    pub(super) fn landlock_abi_version() -> Result<u32, i32> {
        /// `LANDLOCK_CREATE_RULESET_VERSION` (include/uapi/linux/landlock.h).
        const VERSION: u32 = 1;
        // SAFETY: a null attribute pointer with size 0 and the VERSION flag is the documented
        // way to ask for the ABI version: nothing is read, nothing is created.
        let ret = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, VERSION) };
        result(ret)?;
        Ok(ret as u32)
    }

    pub(super) fn mount_setattr_too_small() -> Result<(), i32> {
        // SAFETY: size 0 is below MOUNT_ATTR_SIZE_VER0: refused before anything is read.
        result(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint,
                std::ptr::null::<u8>(),
                0usize,
            )
        })
    }

    /// `setns(pidfd of self, CLONE_NEWUTS)` on a thread of its own (the UTS namespace is the
    /// caller's already, so nothing changes, and the thread ends right after).
    pub(super) fn setns_own_uts_on_a_thread(pidfd: &OwnedFd) -> Result<(), i32> {
        use rustix::thread::{ThreadNameSpaceType, move_into_thread_name_spaces};
        std::thread::scope(|s| {
            s.spawn(|| {
                move_into_thread_name_spaces(pidfd.as_fd(), ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME)
                    .map_err(rustix::io::Errno::raw_os_error)
            })
            .join()
            .unwrap_or(Err(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone3_exists_unless_enosys() {
        assert!(decide_clone3(Err(libc::EINVAL)));
        assert!(!decide_clone3(Err(libc::ENOSYS)));
        // A seccomp filter (Docker's default profile answers ENOSYS, others EPERM).
        assert!(!decide_clone3(Err(libc::EPERM)));
    }

    #[test]
    fn clone_into_cgroup_only_when_the_descriptor_was_looked_up() {
        assert!(decide_clone_into_cgroup(Err(libc::EBADF)));
        // 5.3-5.6: unknown flag (EINVAL) or clone_args larger than the kernel's (E2BIG).
        for e in [libc::EINVAL, libc::E2BIG, libc::ENOSYS, libc::EPERM] {
            assert!(!decide_clone_into_cgroup(Err(e)), "{e}");
        }
        // A kernel that created a child anyway did not check the cgroup: no.
        assert!(!decide_clone_into_cgroup(Ok(())));
    }

    #[test]
    fn bad_descriptor_probes() {
        assert!(decide_bad_fd(Err(libc::EBADF)));
        // waitid before 5.4: P_PIDFD is an unknown id type.
        assert!(!decide_bad_fd(Err(libc::EINVAL)));
        assert!(!decide_bad_fd(Err(libc::ENOSYS)));
    }

    #[test]
    fn setns_with_a_pidfd() {
        assert!(decide_setns_pidfd(Ok(())));
        assert!(decide_setns_pidfd(Err(libc::EPERM)));
        assert!(!decide_setns_pidfd(Err(libc::EINVAL)));
        assert!(!decide_setns_pidfd(Err(libc::EBADF)));
    }

    #[test]
    fn plain_existence() {
        assert!(decide_exists(Ok(())));
        assert!(decide_exists(Err(libc::EINVAL)));
        assert!(decide_exists(Err(libc::EBADF)));
        assert!(!decide_exists(Err(libc::ENOSYS)));
    }
}
