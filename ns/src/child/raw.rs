//! The bare system calls of the child: what runs between clone and exec calls the kernel
//! only through this module.
//!
//! [`sc`] is the system call instruction itself; the functions here wrap it per call. Each
//! returns 0 on success or the errno (positive) (or `Result<_, errno>`): no `errno`, no
//! cancellation point, no lock, no TLS, no allocation. The parent may call them too (e.g.
//! `crate::sys::block_all_signals`); the child may call nothing else.

use std::os::fd::RawFd;

use crate::sys::consts;

/// The raw system call instruction, for the code that runs between clone and exec.
///
/// glibc's wrappers (and even `libc::syscall`) store `errno` in the calling thread's TLS on
/// failure, and its wrappers of cancellation points (`read`, `write`, `close`, `open`, ...)
/// flip the thread's cancellation state. A vfork-style child runs on the TLS of the
/// suspended parent thread, so any of that would write the parent's memory. These functions
/// are the `syscall` (x86_64) / `svc #0` (aarch64) instruction and nothing else: they touch
/// no memory but the registers and return the kernel's value as is, `-errno` on failure
/// (like glibc's internal `INTERNAL_SYSCALL`).
///
/// On other architectures they fall back to `libc::syscall` (which writes `errno`), and
/// [`TOUCHES_NO_TLS`](sc::TOUCHES_NO_TLS) is false: the spawn path then never uses the
/// vfork-style child, whose memory is the parent's.
pub(crate) mod sc {
    /// Whether these calls leave the thread's TLS alone (see the module docs).
    pub(crate) const TOUCHES_NO_TLS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

    /// `syscall(n, a..)`: the kernel's return value (`-errno` on failure).
    ///
    /// # Safety
    /// The arguments must be valid for system call `n` (pointers to live memory of the
    /// sizes the call reads or writes).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    pub(crate) unsafe fn syscall6(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the kernel's syscall ABI. x86_64: number in rax, arguments in rdi, rsi,
        // rdx, r10, r8, r9, result in rax; rcx and r11 are clobbered; the red zone is not
        // touched by `syscall`. aarch64: number in x8, arguments in x0..x5, result in x0.
        // The caller vouches for the arguments.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        // SAFETY: as above (aarch64).
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!(
                "svc #0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                in("x5") a[5],
                options(nostack),
            );
        }
        ret
    }

    /// Fallback for other architectures: `libc::syscall`, which writes `errno` (see the
    /// module docs).
    ///
    /// # Safety
    /// As for the assembly version.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub unsafe fn syscall6(n: libc::c_long, a: [usize; 6]) -> isize {
        // SAFETY: the caller vouches for the arguments.
        let ret = unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if ret == -1 {
            -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) as isize)
        } else {
            ret as isize
        }
    }

    /// `syscall6` with fewer arguments (the rest are zero).
    ///
    /// # Safety
    /// As for [`syscall6`].
    #[inline(always)]
    pub(crate) unsafe fn syscall(n: libc::c_long, args: &[usize]) -> isize {
        let mut a = [0usize; 6];
        let mut i = 0;
        while i < args.len() && i < 6 {
            a[i] = args[i];
            i += 1;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { syscall6(n, a) }
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction` (x86_64 and aarch64 both have
/// `sa_restorer`); not glibc's, which is larger and is translated by its wrapper.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The kernel's `struct statfs` on 64-bit architectures (`asm-generic/statfs.h` with a
/// 64-bit `__statfs_word`, x86_64 and aarch64 alike); glibc's `statvfs` would be a wrapper.
#[repr(C)]
#[derive(Default)]
struct KernelStatfs {
    kind: i64,
    bsize: i64,
    blocks: u64,
    bfree: u64,
    bavail: u64,
    files: u64,
    ffree: u64,
    fsid: [i32; 2],
    namelen: i64,
    frsize: i64,
    /// `ST_*` mount flags (plus `ST_VALID`).
    flags: i64,
    spare: [i64; 4],
}

/// The size of the kernel's signal set (64 signals), as `rt_sig*` calls want it.
pub(crate) const KERNEL_SIGSET_SIZE: usize = 8;

/// The highest signal number the kernel knows (`_NSIG`); `SIGRTMAX` is 64.
pub(crate) const NSIG: libc::c_int = 64;

/// The kernel's `struct mount_attr`.
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// 0 or the (positive) errno of a raw return value.
#[inline]
fn ok(ret: isize) -> i32 {
    if ret < 0 { -ret as i32 } else { 0 }
}

/// The value or the (positive) errno of a raw return value.
#[inline]
fn val(ret: isize) -> Result<isize, i32> {
    if ret < 0 { Err(-ret as i32) } else { Ok(ret) }
}

macro_rules! call {
    ($n:expr $(, $a:expr)* $(,)?) => {
        // SAFETY: every caller passes integers, or pointers to live memory of the sizes
        // the call uses (NUL-terminated strings from the prepared plan, locals).
        unsafe { sc::syscall($n, &[$($a as usize),*]) }
    };
}

pub(crate) fn close(fd: RawFd) {
    call!(libc::SYS_close, fd);
}

/// Closes `first..=last`: `close_range`, or one by one on kernels without it (before
/// 5.9), up to the `RLIMIT_NOFILE` soft limit (no descriptor can be open above it unless
/// the limit was lowered after it was opened).
pub(crate) fn close_range(first: RawFd, last: RawFd) {
    if first > last || first < 0 {
        return;
    }
    if call!(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0) == 0 {
        return;
    }
    let mut lim = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    let max = if call!(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 0, &mut lim as *mut libc::rlimit64) == 0 {
        lim.rlim_cur.min(1 << 20) as RawFd
    } else {
        1024
    };
    let mut fd = first;
    while fd <= last && fd < max {
        close(fd);
        fd += 1;
    }
}

/// Closes every descriptor from `first` up.
pub(crate) fn close_from(first: RawFd) {
    close_range(first, RawFd::MAX);
}

/// `dup3(from, to, O_CLOEXEC)`: `to` now refers to `from`'s file, close-on-exec.
pub(crate) fn dup_to_cloexec(from: RawFd, to: RawFd) -> i32 {
    ok(call!(libc::SYS_dup3, from, to, libc::O_CLOEXEC))
}

/// Reads exactly one byte; returns Ok(true) for a byte, Ok(false) for EOF.
pub(crate) fn read_byte(fd: RawFd) -> Result<bool, i32> {
    let mut b = 0u8;
    loop {
        match call!(libc::SYS_read, fd, &mut b as *mut u8, 1) {
            1 => return Ok(true),
            0 => return Ok(false),
            e if e == -(libc::EINTR as isize) => {}
            e => return Err(-e as i32),
        }
    }
}

/// Writes the whole buffer (pipe writes under PIPE_BUF are atomic).
pub(crate) fn write_all(fd: RawFd, buf: &[u8]) -> i32 {
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let n = call!(libc::SYS_write, fd, rest.as_ptr(), rest.len());
        if n < 0 {
            if n == -(libc::EINTR as isize) {
                continue;
            }
            return -n as i32;
        }
        off += n as usize;
    }
    0
}

pub(crate) fn fchdir(fd: RawFd) -> i32 {
    ok(call!(libc::SYS_fchdir, fd))
}

pub(crate) fn open(path: *const libc::c_char, flags: libc::c_int) -> Result<RawFd, i32> {
    val(call!(libc::SYS_openat, libc::AT_FDCWD, path, flags | libc::O_CLOEXEC, 0)).map(|fd| fd as RawFd)
}

/// `symlinkat(target, AT_FDCWD, path)`.
pub(crate) fn symlink(target: *const libc::c_char, path: *const libc::c_char) -> i32 {
    ok(call!(libc::SYS_symlinkat, target, libc::AT_FDCWD, path))
}

/// Whether `fd` polls with any of `events` set (or `POLLERR`/`POLLHUP`), without waiting.
pub(crate) fn poll_now(fd: RawFd, events: libc::c_short) -> Result<libc::c_short, i32> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    val(call!(libc::SYS_ppoll, &mut pfd as *mut libc::pollfd, 1, &zero as *const libc::timespec, 0, 0))?;
    Ok(pfd.revents)
}

pub(crate) fn getpid() -> libc::pid_t {
    call!(libc::SYS_getpid) as libc::pid_t
}

pub(crate) fn getppid() -> libc::pid_t {
    call!(libc::SYS_getppid) as libc::pid_t
}

/// Plain fork (`clone(SIGCHLD)`) without glibc's atfork handlers or its TLS updates:
/// Ok(0) in the child, Ok(pid) in the parent.
pub(crate) fn fork() -> Result<libc::pid_t, i32> {
    // clone(flags, newsp, parent_tid, child_tid/tls, tls/child_tid): all zero but flags.
    val(call!(libc::SYS_clone, libc::SIGCHLD)).map(|pid| pid as libc::pid_t)
}

pub(crate) fn unshare(flags: libc::c_int) -> i32 {
    ok(call!(libc::SYS_unshare, flags))
}

pub(crate) fn setns(fd: RawFd, nstype: libc::c_int) -> i32 {
    ok(call!(libc::SYS_setns, fd, nstype))
}

pub(crate) fn sethostname(name: &[u8]) -> i32 {
    ok(call!(libc::SYS_sethostname, name.as_ptr(), name.len()))
}

/// `lo` up: `SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with `IFF_UP`, on a datagram socket of the
/// calling thread's network namespace.
pub(crate) fn loopback_up() -> i32 {
    /// `struct ifreq` with the flags member of its union (40 bytes on 64-bit Linux).
    #[repr(C)]
    struct IfreqFlags {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let sock = match val(call!(libc::SYS_socket, libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)) {
        Ok(fd) => fd as RawFd,
        Err(e) => return e,
    };
    let mut req = IfreqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
    req.name[..2].copy_from_slice(b"lo");
    let mut e = ok(call!(libc::SYS_ioctl, sock, libc::SIOCGIFFLAGS, &mut req as *mut IfreqFlags));
    if e == 0 {
        req.flags |= libc::IFF_UP as libc::c_short;
        e = ok(call!(libc::SYS_ioctl, sock, libc::SIOCSIFFLAGS, &req as *const IfreqFlags));
    }
    close(sock);
    e
}

pub(crate) fn setdomainname(name: &[u8]) -> i32 {
    ok(call!(libc::SYS_setdomainname, name.as_ptr(), name.len()))
}

pub(crate) fn chdir(path: *const libc::c_char) -> i32 {
    ok(call!(libc::SYS_chdir, path))
}

pub(crate) fn chroot(path: *const libc::c_char) -> i32 {
    ok(call!(libc::SYS_chroot, path))
}

/// `ioctl(fd, request, arg)` with an integer or pointer argument.
pub(crate) fn ioctl(fd: RawFd, request: libc::c_ulong, arg: usize) -> Result<isize, i32> {
    val(call!(libc::SYS_ioctl, fd, request, arg))
}

/// `setsid()`: a new session (and process group) led by the caller.
pub(crate) fn setsid() -> i32 {
    ok(call!(libc::SYS_setsid))
}

/// `fchown(fd, uid, gid)` (`u32::MAX`: leave it).
pub(crate) fn fchown(fd: RawFd, uid: u32, gid: u32) -> i32 {
    ok(call!(libc::SYS_fchown, fd, uid, gid))
}

/// `keyctl(op, a2, a3)`: the key serial (or 0) or the errno.
pub(crate) fn keyctl(op: libc::c_int, a2: usize, a3: usize) -> Result<isize, i32> {
    val(call!(libc::SYS_keyctl, op, a2, a3))
}

pub(crate) fn pivot_root(new_root: *const libc::c_char, put_old: *const libc::c_char) -> i32 {
    ok(call!(libc::SYS_pivot_root, new_root, put_old))
}

/// `mount(2)`; each pointer may be null where the kernel allows.
pub(crate) fn mount(
    source: *const libc::c_char,
    target: *const libc::c_char,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
) -> i32 {
    ok(call!(libc::SYS_mount, source, target, fstype, flags, data))
}

pub(crate) fn umount2(target: *const libc::c_char, flags: libc::c_int) -> i32 {
    ok(call!(libc::SYS_umount2, target, flags))
}

pub(crate) fn mkdir(path: *const libc::c_char, mode: libc::mode_t) -> i32 {
    ok(call!(libc::SYS_mkdirat, libc::AT_FDCWD, path, mode))
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: RawFd, name: *const libc::c_char, mode: libc::mode_t) -> i32 {
    ok(call!(libc::SYS_mkdirat, dir, name, mode))
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: RawFd,
    name: *const libc::c_char,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<RawFd, i32> {
    val(call!(libc::SYS_openat, dir, name, flags | libc::O_CLOEXEC, mode)).map(|fd| fd as RawFd)
}

/// `faccessat(AT_FDCWD, path, mode, 0)`: checked with the real uid and gid.
pub(crate) fn access(path: *const libc::c_char, mode: libc::c_int) -> i32 {
    ok(call!(libc::SYS_faccessat, libc::AT_FDCWD, path, mode))
}

/// `mknodat(dir, name, mode, dev)`.
pub(crate) fn mknodat(dir: RawFd, name: *const libc::c_char, mode: libc::mode_t, dev: libc::dev_t) -> i32 {
    ok(call!(libc::SYS_mknodat, dir, name, mode, dev))
}

/// `fchmodat(dir, name, mode, 0)`.
pub(crate) fn fchmodat(dir: RawFd, name: *const libc::c_char, mode: libc::mode_t) -> i32 {
    ok(call!(libc::SYS_fchmodat, dir, name, mode))
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn fchownat(dir: RawFd, name: *const libc::c_char, uid: u32, gid: u32) -> i32 {
    ok(call!(libc::SYS_fchownat, dir, name, uid, gid, libc::AT_SYMLINK_NOFOLLOW))
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlinkat(target: *const libc::c_char, dir: RawFd, name: *const libc::c_char) -> i32 {
    ok(call!(libc::SYS_symlinkat, target, dir, name))
}

/// `openat2(dir, path, {O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS})`: `path`
/// resolved as if `dir` were the root (absolute symlinks and `..` never leave it). ENOSYS
/// before Linux 5.6.
pub(crate) fn openat2_in_root(dir: RawFd, path: *const libc::c_char) -> Result<RawFd, i32> {
    /// `struct open_how`.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // EAGAIN: a `..` was resolved while a rename or a mount happened anywhere on the system
    // (the kernel cannot prove it stayed inside); the call may simply be repeated. Bounded,
    // so a flood of mounts cannot keep the child here for ever.
    let mut tries = 0;
    loop {
        // The kernel only reads `how`.
        let r = val(call!(libc::SYS_openat2, dir, path, &how as *const OpenHow, std::mem::size_of::<OpenHow>()));
        match r {
            Err(libc::EAGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            r => return r.map(|fd| fd as RawFd),
        }
    }
}

/// How often [`openat2_in_root`] repeats a lookup the kernel refused with `EAGAIN`.
pub(crate) const OPENAT2_RETRIES: u32 = 256;

/// Whether the file at descriptor `fd` (an `O_PATH` one too) is a symbolic link.
pub(crate) fn is_symlink_fd(fd: RawFd) -> Result<bool, i32> {
    // SAFETY: zeroed stat is a valid out-parameter (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    val(call!(libc::SYS_newfstatat, fd, c"".as_ptr(), &mut st as *mut libc::stat, libc::AT_EMPTY_PATH))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// The mount flags (`MS_*`) currently in effect at `path`, from statfs.
pub(crate) fn mount_flags(path: *const libc::c_char) -> Result<libc::c_ulong, i32> {
    let mut st = KernelStatfs::default();
    val(call!(libc::SYS_statfs, path, &mut st as *mut KernelStatfs))?;
    let f = st.flags as libc::c_ulong;
    let mut out = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st_flag != 0 {
            out |= ms_flag;
        }
    }
    Ok(out)
}

/// `open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`: a descriptor of a
/// detached copy of the mount at `path` (with its submounts when `recursive`), in the peer
/// groups of the originals; ENOSYS before Linux 5.2.
pub(crate) fn open_tree_clone(path: *const libc::c_char, recursive: bool) -> Result<RawFd, i32> {
    let flags =
        consts::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | if recursive { consts::AT_RECURSIVE } else { 0 };
    val(call!(libc::SYS_open_tree, libc::AT_FDCWD, path, flags)).map(|fd| fd as RawFd)
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS)`:
/// attaches the detached tree `fd` at `target` (symlinks followed, as by `mount(2)`).
pub(crate) fn move_mount_to(fd: RawFd, target: *const libc::c_char) -> i32 {
    let flags = consts::MOVE_MOUNT_F_EMPTY_PATH | consts::MOVE_MOUNT_T_SYMLINKS;
    ok(call!(libc::SYS_move_mount, fd, c"".as_ptr(), libc::AT_FDCWD, target, flags))
}

/// `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`; ENOSYS on old kernels.
pub(crate) fn make_tree_read_only(path: *const libc::c_char) -> i32 {
    let attr = MountAttr { attr_set: consts::MOUNT_ATTR_RDONLY, ..Default::default() };
    ok(call!(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path,
        consts::AT_RECURSIVE,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    ))
}

/// Whether `path` is a directory (follows symlinks). Err(errno) if it cannot be stat'ed.
pub(crate) fn is_dir(path: *const libc::c_char) -> Result<bool, i32> {
    // SAFETY: zeroed stat is a valid out-parameter (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    val(call!(libc::SYS_newfstatat, libc::AT_FDCWD, path, &mut st as *mut libc::stat, 0))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `dup2(from, to)` (as `dup3`; with `from == to` it clears `FD_CLOEXEC` instead, so the
/// descriptor survives exec).
pub(crate) fn dup2(from: RawFd, to: RawFd) -> i32 {
    if from == to {
        return ok(call!(libc::SYS_fcntl, from, libc::F_SETFD, 0));
    }
    ok(call!(libc::SYS_dup3, from, to, 0))
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> i32 {
    // The raw call is per thread (glibc's wrapper broadcasts to every thread, taking
    // locks); the child has one thread.
    ok(call!(libc::SYS_setgroups, groups.len(), groups.as_ptr()))
}

pub(crate) fn setresgid(gid: libc::gid_t) -> i32 {
    ok(call!(libc::SYS_setresgid, gid, gid, gid))
}

pub(crate) fn setresuid(uid: libc::uid_t) -> i32 {
    ok(call!(libc::SYS_setresuid, uid, uid, uid))
}

pub(crate) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> i32 {
    ok(call!(libc::SYS_prctl, option, arg, 0, 0, 0))
}

/// Resets every caught signal to its default action, SIGPIPE too (Rust programs ignore
/// it); keeps other ignored signals ignored, as exec would. All 64 signals, `SIGRTMAX`
/// and glibc's internal 32 and 33 included: the kernel's `rt_sigaction`, not glibc's
/// wrapper (which refuses 32 and 33).
pub(crate) fn reset_signal_handlers() {
    let dfl = KernelSigaction::default();
    let mut sig = 1;
    while sig <= NSIG {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            let mut old = KernelSigaction::default();
            let got = call!(libc::SYS_rt_sigaction, sig, 0, &mut old as *mut KernelSigaction, KERNEL_SIGSET_SIZE);
            if got == 0 && old.handler != libc::SIG_DFL && (old.handler != libc::SIG_IGN || sig == libc::SIGPIPE) {
                call!(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, 0, KERNEL_SIGSET_SIZE);
            }
        }
        sig += 1;
    }
}

/// Sets the signal mask of the calling thread.
pub(crate) fn set_sigmask(mask: u64) {
    call!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &mask as *const u64, 0, KERNEL_SIGSET_SIZE);
}

pub(crate) fn execve(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> i32 {
    // Only returns on failure.
    ok(call!(libc::SYS_execve, path, argv, envp))
}

/// `exit_group(code)`: ends the process; no atexit handlers, no flushing.
pub(crate) fn exit(code: i32) -> ! {
    loop {
        call!(libc::SYS_exit_group, code);
    }
}

// -------------------------------------------------------------------------------
// The init (`Command::init`): the child forks the payload and execs `nk-init` from
// a memfd (see `child::run_init`). Allocation-free like everything in this module.
// -------------------------------------------------------------------------------

/// A pipe with both ends close-on-exec: (read, write).
pub(crate) fn pipe_cloexec() -> Result<(RawFd, RawFd), i32> {
    let mut fds = [0 as libc::c_int; 2];
    val(call!(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    Ok((fds[0], fds[1]))
}

/// Clears `FD_CLOEXEC`: the descriptor survives exec.
pub(crate) fn clear_cloexec(fd: RawFd) -> i32 {
    ok(call!(libc::SYS_fcntl, fd, libc::F_SETFD, 0))
}

/// Closes every descriptor but those in `keep` (ascending, non-negative).
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let mut first: RawFd = 0;
    for &k in keep {
        if k > first {
            close_range(first, k - 1);
        }
        first = first.max(k + 1);
    }
    close_from(first);
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the program open at `fd`.
/// Returns the errno (it only returns on failure).
pub(crate) fn execveat_fd(fd: RawFd, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
    // argv and envp are null-terminated arrays of NUL-terminated strings on the caller's
    // stack, alive until exec replaces the image; "" is a static C string.
    ok(call!(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH))
}

/// Waits for child `pid` to end (any status).
pub(crate) fn wait_pid(pid: libc::pid_t) {
    let mut status: libc::c_int = 0;
    while call!(libc::SYS_wait4, pid, &mut status as *mut libc::c_int, 0, 0) == -(libc::EINTR as isize) {}
}

/// Whether SIGCHLD is ignored (`SIG_IGN`: children would be reaped automatically).
pub(crate) fn sigchld_ignored() -> bool {
    let mut old = KernelSigaction::default();
    let got = call!(libc::SYS_rt_sigaction, libc::SIGCHLD, 0, &mut old as *mut KernelSigaction, KERNEL_SIGSET_SIZE);
    got == 0 && old.handler == libc::SIG_IGN
}

/// Sets SIGCHLD to `SIG_IGN` or `SIG_DFL`.
pub(crate) fn set_sigchld_ignored(ignored: bool) {
    let act =
        KernelSigaction { handler: if ignored { libc::SIG_IGN } else { libc::SIG_DFL }, ..KernelSigaction::default() };
    call!(libc::SYS_rt_sigaction, libc::SIGCHLD, &act as *const KernelSigaction, 0, KERNEL_SIGSET_SIZE);
}

// -------------------------------------------------------------------------------
// Hardening (`Command::rlimit`, `capabilities`, `no_new_privs`, `landlock`,
// `seccomp`): allocation-free like everything in this module.
// -------------------------------------------------------------------------------

/// `prlimit64(0, resource, &limits, NULL)`.
pub(crate) fn setrlimit(resource: u32, limits: &libc::rlimit64) -> i32 {
    ok(call!(libc::SYS_prlimit64, 0, resource, limits as *const libc::rlimit64, 0))
}

/// `umask(mask)` (cannot fail).
pub(crate) fn umask(mask: libc::mode_t) {
    call!(libc::SYS_umask, mask);
}

/// `prctl` with all four arguments.
pub(crate) fn prctl4(option: libc::c_int, a2: libc::c_ulong, a3: libc::c_ulong, a4: libc::c_ulong) -> i32 {
    ok(call!(libc::SYS_prctl, option, a2, a3, a4, 0))
}

/// The kernel's `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// The kernel's `struct __user_cap_data_struct` (two of them for 64 capabilities).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two `CapData`s.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capset` (v3) of the calling thread's effective, permitted and inheritable sets.
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> i32 {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let half = |shift: u32| CapData {
        effective: (effective >> shift) as u32,
        permitted: (permitted >> shift) as u32,
        inheritable: (inheritable >> shift) as u32,
    };
    let data = [half(0), half(32)];
    ok(call!(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()))
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`: the listener fd with
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`, else 0.
pub(crate) fn seccomp_filter(filter: &[libc::sock_filter], flags: libc::c_ulong) -> Result<RawFd, i32> {
    let prog = libc::sock_fprog { len: filter.len() as libc::c_ushort, filter: filter.as_ptr().cast_mut() };
    // The kernel only reads the program (it copies it).
    val(call!(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog as *const libc::sock_fprog))
        .map(|fd| fd as RawFd)
}

/// `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {allowed, parent}, 0)`.
pub(crate) fn landlock_add_path_rule(ruleset: RawFd, parent: RawFd, allowed: u64) -> i32 {
    /// `struct landlock_path_beneath_attr` (packed in the UAPI header).
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneath { allowed_access: allowed, parent_fd: parent };
    // The kernel only reads `attr` (it copies it).
    ok(call!(libc::SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &attr as *const PathBeneath, 0))
}

/// `landlock_restrict_self(ruleset, 0)`.
pub(crate) fn landlock_restrict_self(ruleset: RawFd) -> i32 {
    ok(call!(libc::SYS_landlock_restrict_self, ruleset, 0))
}

/// Sends descriptor `fd` over the unix socket `sock` (`SCM_RIGHTS`, one data byte), with the
/// control message built on this stack.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> i32 {
    send_fd_named(sock, fd, &[0])
}

/// [`send_fd`] with `data` as the message's bytes (runc sends a file's name with it).
pub(crate) fn send_fd_named(sock: RawFd, fd: RawFd, data: &[u8]) -> i32 {
    /// `struct cmsghdr` followed by one int, padded to `CMSG_SPACE(sizeof(int))`.
    #[repr(C)]
    struct Cmsg {
        len: usize,
        level: libc::c_int,
        kind: libc::c_int,
        fd: libc::c_int,
        pad: libc::c_int,
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // CMSG_LEN(sizeof(int)): the header (16 bytes on 64-bit) plus the int.
    let mut cmsg = Cmsg { len: 16 + 4, level: libc::SOL_SOCKET, kind: libc::SCM_RIGHTS, fd, pad: 0 };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths); fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut Cmsg).cast();
    msg.msg_controllen = std::mem::size_of::<Cmsg>() as _;
    loop {
        match call!(libc::SYS_sendmsg, sock, &msg as *const libc::msghdr, libc::MSG_NOSIGNAL) {
            e if e == -(libc::EINTR as isize) => {}
            e => return ok(e),
        }
    }
}
