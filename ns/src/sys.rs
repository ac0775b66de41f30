//! The parent side's system calls, in one place.
//!
//! Functions here are thin: they take already-validated, already-converted arguments
//! (`&CStr`, raw fds, plain integers) and return `io::Result` or a raw errno. They go
//! through glibc (which writes `errno` and may take locks), so none of them may run in the
//! child between clone and exec: the child's bare system calls are in
//! [`crate::child::raw`]. [`fork_like`] and [`vfork_like`] are the clone itself; what the
//! child runs after it is [`crate::child`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::child::raw::{self, KERNEL_SIGSET_SIZE, sc};

/// Flags that `libc` does not define (or defines as 0, like `CLONE_INTO_CGROUP` in some
/// versions). Kept as `u64` because clone3 takes 64-bit flags.
pub(crate) mod consts {
    pub const CLONE_PIDFD: u64 = 0x0000_1000;
    pub const CLONE_NEWTIME: u64 = 0x0000_0080;
    pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    pub const NSIO: libc::c_ulong = 0xb7;
    pub const NS_GET_USERNS: libc::c_ulong = NSIO << 8 | 0x1;
    pub const NS_GET_PARENT: libc::c_ulong = NSIO << 8 | 0x2;
    pub const NS_GET_NSTYPE: libc::c_ulong = NSIO << 8 | 0x3;
    pub const NS_GET_OWNER_UID: libc::c_ulong = NSIO << 8 | 0x4;
    pub const P_PIDFD: libc::idtype_t = 3;
    pub const AT_RECURSIVE: libc::c_uint = 0x8000;
    pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
    /// `pidfd_open` flag: a pidfd for this thread, not its thread group (= `O_EXCL`).
    pub const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
    /// `memfd_create` flag: the memfd may be executed (kernel 6.3+).
    pub const MFD_EXEC: libc::c_uint = 0x10;
}

/// The kernel's `struct clone_args` (version 2, 88 bytes, with `cgroup`); also used by the
/// feature probes.
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// What `fork_like` returned in the calling process.
pub(crate) enum Forked {
    /// We are the parent: the child's pid and its pidfd.
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
    /// We are the child.
    Child,
}

/// Creates a child with fork semantics (no shared memory, returns twice) in new namespaces.
///
/// Uses clone3 with `CLONE_PIDFD` (and `CLONE_INTO_CGROUP` when `cgroup` is set); when clone3
/// is missing (ENOSYS) or `force_clone2` is set, falls back to clone(2) with `CLONE_PIDFD`,
/// and `*joined_cgroup` is set to false so the caller can place the child itself.
///
/// # Safety
/// The caller must treat the `Forked::Child` branch like a child after `fork()` in a
/// multithreaded program: only async-signal-safe work, ending in `execve` or `_exit`.
pub(crate) unsafe fn fork_like(
    ns_flags: u64,
    cgroup: Option<RawFd>,
    force_clone2: bool,
    joined_cgroup: &mut bool,
) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    *joined_cgroup = false;
    if !force_clone2 {
        let mut args = CloneArgs {
            flags: ns_flags | consts::CLONE_PIDFD,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = cgroup {
            args.flags |= consts::CLONE_INTO_CGROUP;
            args.cgroup = fd as u64;
        }
        // SAFETY: args is a valid clone_args of the size we pass; no CLONE_VM, so the child
        // gets a copy of this stack and returns here like fork().
        let ret =
            unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
        match ret {
            0 => return Ok(Forked::Child),
            pid if pid > 0 => {
                *joined_cgroup = cgroup.is_some();
                // SAFETY: the kernel stored a new, owned pidfd in `pidfd`.
                let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
                return Ok(Forked::Parent { pid: pid as libc::pid_t, pidfd });
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ENOSYS) {
                    return Err(err);
                }
            }
        }
    }
    // clone(2): flags, stack, parent_tid (receives the pidfd with CLONE_PIDFD), child_tid, tls.
    // SAFETY: no CLONE_VM and a null stack give fork semantics; pidfd points to a live int.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            ns_flags | consts::CLONE_PIDFD | libc::SIGCHLD as u64,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    match ret {
        0 => Ok(Forked::Child),
        pid if pid > 0 => {
            // SAFETY: the kernel stored a new, owned pidfd in `pidfd`.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Forked::Parent { pid: pid as libc::pid_t, pidfd })
        }
        _ => Err(io::Error::last_os_error()),
    }
}

/// A stack for vfork-style children: an anonymous mapping whose lowest page is a guard, so
/// an overflow faults instead of writing below it. Unmapped on drop.
struct VforkStack {
    base: *mut libc::c_void,
    len: usize,
}

impl VforkStack {
    const SIZE: usize = 256 * 1024;

    fn new() -> io::Result<VforkStack> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = Self::SIZE + page;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = VforkStack { base, len };
        // SAFETY: `base` starts our own mapping of `len > page` bytes.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer (the end of the mapping; page-aligned).
    fn top(&self) -> *mut libc::c_void {
        self.base.cast::<u8>().wrapping_add(self.len).cast()
    }
}

impl Drop for VforkStack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our own mapping, which no child uses any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

thread_local! {
    /// This thread's vfork stack, kept between spawns (mapping, guarding and unmapping one
    /// per spawn costs three system calls and a TLB flush). Only this thread uses it, and
    /// only while it is suspended in `clone(CLONE_VFORK)`: never two children at once.
    static VFORK_STACK: std::cell::Cell<Option<VforkStack>> = const { std::cell::Cell::new(None) };
}

/// Creates a child that shares our memory until it execs or exits (`CLONE_VM |
/// CLONE_VFORK`, as glibc's `posix_spawn` does), in the namespaces of `ns_flags`, with a
/// pidfd. The calling thread is suspended until then, so no page table is copied and no
/// page is copied on write afterwards — the cost of a fork grows with the parent's memory,
/// this does not. `child(arg)` runs on a private stack with a guard page, kept per thread
/// for the next spawn. Errors as from clone(2); `EINVAL` also when the calling thread's
/// time namespace for children differs from its own (then use [`fork_like`]).
///
/// # Safety
/// `child` must never return, must end in `execve` or `_exit`, and must write no memory
/// but its own stack: it runs on the calling thread's TLS while that thread is suspended,
/// and other threads of the parent keep running — so it may only make the bare system
/// calls of [`crate::child::raw`] (no glibc wrapper: those write `errno` and the cancellation
/// state into that TLS). Every signal must be blocked, glibc's internal ones too
/// ([`block_all_signals`]). glibc's `clone` wrapper itself touches no TLS in the child: it
/// calls `child` and then the bare `exit` system call with its result.
pub(crate) unsafe fn vfork_like(
    ns_flags: u64,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> io::Result<(libc::pid_t, OwnedFd)> {
    let ns = libc::c_int::try_from(ns_flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let stack = match VFORK_STACK.try_with(std::cell::Cell::take).ok().flatten() {
        Some(stack) => stack,
        None => VforkStack::new()?,
    };
    let mut pidfd: libc::c_int = -1;
    let flags = ns | libc::CLONE_VM | libc::CLONE_VFORK | consts::CLONE_PIDFD as libc::c_int | libc::SIGCHLD;
    // SAFETY: the stack top is the end of our mapping; `child` and `arg` satisfy this
    // function's contract; with CLONE_PIDFD the kernel stores the pidfd through the
    // parent_tid argument, a live int. CLONE_VFORK returns only after the child has exec'd
    // or exited, so the stack is free again when it does.
    let pid = unsafe { libc::clone(child, stack.top(), flags, arg, &mut pidfd as *mut libc::c_int) };
    let result = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel stored a new, owned pidfd in `pidfd`.
        Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
    };
    // Keep the stack for the next spawn (dropped, i.e. unmapped, with the thread).
    let _ = VFORK_STACK.try_with(|cached| cached.set(Some(stack)));
    result
}

/// Creates a pipe with both ends close-on-exec.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_with(libc::O_CLOEXEC)
}

/// Creates a pipe with both ends close-on-exec and non-blocking.
pub(crate) fn pipe_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_with(libc::O_CLOEXEC | libc::O_NONBLOCK)
}

/// Makes a descriptor blocking again.
pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer-only fcntl calls on a live descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    Ok(())
}

fn pipe_with(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    // SAFETY: pipe2 succeeded, so both are new, owned descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected `AF_UNIX` stream socket pair, both ends close-on-exec. Used for the sync
/// point so the parent can write with `MSG_NOSIGNAL` (no SIGPIPE if the child is gone).
pub(crate) fn socketpair_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, so both are new, owned descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends bytes on a socket without raising SIGPIPE.
pub(crate) fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is a live slice; fd is a live socket.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr() as *const libc::c_void, buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Writes `data` to the file `name` relative to directory `dir` (one write call).
pub(crate) fn write_at(dir: BorrowedFd<'_>, name: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: name is NUL-terminated; dir is a live directory descriptor.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: openat returned a new descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: data is a live slice; fd is open for writing.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr() as *const libc::c_void, data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a path with `O_CLOEXEC` added.
pub(crate) fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; the mode is only read with O_CREAT.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644 as libc::c_uint) })?;
    // SAFETY: open succeeded, the descriptor is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends a signal through a pidfd.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd is a live descriptor; a null siginfo means "as kill() would".
    cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0u32)
    })?;
    Ok(())
}

/// Opens a pidfd for an existing pid.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })?;
    // SAFETY: pidfd_open returned a new, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// A pidfd for one thread (`PIDFD_THREAD`, kernel 6.9+): it polls readable once that
/// thread has exited. `None` on kernels without thread pidfds (EINVAL).
pub(crate) fn pidfd_open_thread(tid: libc::pid_t) -> io::Result<Option<OwnedFd>> {
    // SAFETY: plain syscall with integer arguments.
    match cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, tid, consts::PIDFD_THREAD) }) {
        // SAFETY: pidfd_open returned a new, owned (close-on-exec) descriptor.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits on a pidfd. Returns the raw wait status (as `waitpid` would give it), or `None`
/// with `WNOHANG` when the child has not exited yet.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<i32>> {
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: info is a valid out-parameter; the pidfd is live.
        let ret = unsafe { libc::waitid(consts::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: after a successful waitid these union fields are initialised (pid 0 means
        // WNOHANG found nothing).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_KILLED => status & 0x7f,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status,
        };
        return Ok(Some(raw));
    }
}

/// `setns(2)`.
pub(crate) fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is a live descriptor.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) })?;
    Ok(())
}

/// `fchdir(2)`.
pub(crate) fn fchdir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: dir is a live descriptor.
    cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    Ok(())
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with an integer argument.
    cvt(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// An `ioctl` on a namespace fd that returns a new fd (`NS_GET_USERNS`, `NS_GET_PARENT`).
pub(crate) fn ns_ioctl_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<OwnedFd> {
    // SAFETY: these ioctls take no argument and return a new descriptor.
    let ret = cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _) })?;
    // SAFETY: the ioctl returned a new, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// An `ioctl` on a namespace fd that returns an integer (`NS_GET_NSTYPE`).
pub(crate) fn ns_ioctl_int(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: this ioctl takes no argument and returns an integer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _) })
}

/// `NS_GET_OWNER_UID`: the uid (in the caller's user namespace) owning a user namespace.
pub(crate) fn ns_owner_uid(fd: BorrowedFd<'_>) -> io::Result<libc::uid_t> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: this ioctl writes one uid_t to the pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), consts::NS_GET_OWNER_UID as _, &mut uid) })?;
    Ok(uid)
}

/// `fstat(2)`: (st_dev, st_ino).
pub(crate) fn fstat_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is live; st is a valid out-parameter.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_dev, st.st_ino))
}

/// `stat(2)`: (st_dev, st_ino), following symlinks (as /proc/PID/ns/* links must be).
pub(crate) fn stat_id(path: &CStr) -> io::Result<(u64, u64)> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is a valid out-parameter.
    cvt(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok((st.st_dev, st.st_ino))
}

/// `mount(2)` with optional source, fstype and data.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ret = raw::mount(
        source.map_or(std::ptr::null(), CStr::as_ptr),
        target.as_ptr(),
        fstype.map_or(std::ptr::null(), CStr::as_ptr),
        flags,
        data.map_or(std::ptr::null(), CStr::as_ptr),
    );
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: target is NUL-terminated.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// The effective uid and gid of the calling process.
pub(crate) fn geteuid_egid() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: these calls cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Blocks every signal on the calling thread — glibc's internal ones (32, 33) too, which
/// `pthread_sigmask` leaves out — and returns the previous mask. What glibc's `posix_spawn`
/// does around clone.
pub(crate) fn block_all_signals() -> u64 {
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: both pointers point to live 8-byte sets, the size passed.
    unsafe {
        sc::syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &all as *const u64 as usize,
                &mut old as *mut u64 as usize,
                KERNEL_SIGSET_SIZE,
            ],
        )
    };
    old
}

/// Restores a signal mask saved by [`block_all_signals`].
pub(crate) fn restore_signals(old: u64) {
    raw::set_sigmask(old);
}

/// A sealed, close-on-exec memfd holding `bytes`, for `execveat(AT_EMPTY_PATH)`: the
/// contents can no longer change (write, grow, shrink and further seals are sealed; so is
/// the exec bit where the kernel knows `F_SEAL_EXEC`). Asks for an executable memfd
/// (`MFD_EXEC`, kernel 6.3+, needed when `vm.memfd_noexec` is 1) and falls back to plain
/// flags on kernels that reject it.
pub(crate) fn sealed_exec_memfd(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: name is NUL-terminated; integer flags.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | consts::MFD_EXEC) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above, without MFD_EXEC (unknown before 6.3).
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    let fd = cvt(fd)?;
    // SAFETY: memfd_create returned a new descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: the pointer and length describe the live remainder of `bytes`.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes[off..].as_ptr().cast(), bytes.len() - off) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        off += n as usize;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: integer-only fcntl on our descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals | libc::F_SEAL_EXEC) } != 0 {
        // SAFETY: as above, without F_SEAL_EXEC (unknown before 6.3).
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    }
    Ok(fd)
}
