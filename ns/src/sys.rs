//! The parent side's system calls that need more than one `rustix` call, and the few that
//! stay raw.
//!
//! Parent-side system calls go through `rustix` (here, or directly where a single call
//! does). Raw `libc` remains only where rustix cannot express the call, each with its reason:
//!
//! - [`fork_like`] (`clone3`, `clone`) and [`vfork_like`] (glibc's `clone`, or a `clone3`
//!   stub in assembly to pass `CLONE_INTO_CGROUP`, with
//!   `CLONE_VM | CLONE_VFORK` and a child function on a stack of its own, with `mmap`,
//!   `mprotect`, `munmap` for that stack): the clone itself, which returns twice; rustix
//!   offers no clone (and its `mm` functions are as unsafe as libc's for the stack).
//! - [`ns_ioctl_fd`], [`ns_ioctl_int`], [`ns_owner_uid`]: the nsfs ioctls (`NS_GET_USERNS`,
//!   `NS_GET_PARENT`, `NS_GET_NSTYPE`, `NS_GET_OWNER_UID`), which rustix does not name; its
//!   generic `ioctl` is as unsafe as libc's.
//! - [`block_all_signals`] / [`restore_signals`]: the bare `rt_sigprocmask` of
//!   [`crate::child::raw`], because the mask must include glibc's internal signals (32, 33),
//!   which `pthread_sigmask` and rustix's safe API leave out.
//!
//!
//! One rustix call is unsafe too: [`unshare`] (`unshare_unsafe`, because of `CLONE_FILES`,
//! which nook never passes).
//!
//! None of these may run in the child between clone and exec (rustix's and glibc's
//! wrappers are not written for a vfork-style child): the child's bare system calls are in
//! [`crate::child::raw`]. What the child runs after the clone is [`crate::child`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::fs::{self, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::net;
use rustix::pipe::PipeFlags;
use rustix::process::{self, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use rustix::thread::UnshareFlags;

use crate::child::raw::{self, KERNEL_SIGSET_SIZE, sc};

/// Flags that `libc` does not define (or defines as 0, like `CLONE_INTO_CGROUP` in some
/// versions). Kept as `u64` because clone3 takes 64-bit flags.
pub(crate) mod consts {
    pub(crate) const CLONE_PIDFD: u64 = 0x0000_1000;
    pub(crate) const CLONE_NEWTIME: u64 = 0x0000_0080;
    pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    pub(crate) const NSIO: libc::c_ulong = 0xb7;
    pub(crate) const NS_GET_USERNS: libc::c_ulong = NSIO << 8 | 0x1;
    pub(crate) const NS_GET_PARENT: libc::c_ulong = NSIO << 8 | 0x2;
    pub(crate) const NS_GET_NSTYPE: libc::c_ulong = NSIO << 8 | 0x3;
    pub(crate) const NS_GET_OWNER_UID: libc::c_ulong = NSIO << 8 | 0x4;
    pub(crate) const P_PIDFD: libc::idtype_t = 3;
    pub(crate) const AT_RECURSIVE: libc::c_uint = 0x8000;
    /// `open_tree(2)`: a detached copy of the mount tree (Linux 5.2).
    pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;
    /// `move_mount(2)`: the source is the descriptor itself (empty path).
    pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    /// `move_mount(2)`: follow a symlink at the target, as `mount(2)` does (and the magic
    /// link of a `/proc/self/fd/N` path resolved inside a new root).
    pub(crate) const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;
    pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
    /// `pidfd_open` flag: a pidfd for this thread, not its thread group (= `O_EXCL`).
    pub(crate) const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
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

/// Creates a child in the user namespace behind `user` (a `/proc/PID/ns/user` file or a
/// bind-mounted nsfs file), its new namespaces (`ns_flags`) owned by that one, in two
/// stages: a first child (a copy of this thread, single-threaded) enters the user namespace
/// — which no thread of a multithreaded process can — and clones the real child with
/// `CLONE_PARENT`, so that it is our child like any other; it sends the child's pidfd back
/// over a socket pair and exits. With `cgroup`, the real child is born in it
/// (`CLONE_INTO_CGROUP`, `*joined_cgroup` set). Errors: from the first fork, `setns` or the
/// second clone (their errno).
///
/// # Safety
/// As [`fork_like`]'s: the `Forked::Child` branch is the real child.
pub(crate) unsafe fn fork_in_user_ns(
    user: RawFd,
    ns_flags: u64,
    cgroup: Option<RawFd>,
    joined_cgroup: &mut bool,
) -> io::Result<Forked> {
    *joined_cgroup = false;
    let (ours, theirs) = socketpair_cloexec()?;
    let mut unused = false;
    // SAFETY: the child branch below makes bare system calls only and ends in `exit`, or
    // returns `Forked::Child` as the real child (the caller's contract).
    match unsafe { fork_like(0, None, false, &mut unused)? } {
        Forked::Child => {
            let report = |stage: u8, errno: i32| {
                let mut msg = [stage, 0, 0, 0, 0];
                msg[1..].copy_from_slice(&errno.to_le_bytes());
                raw::write_all(theirs.as_raw_fd(), &msg);
                raw::exit(1)
            };
            // EINVAL: already in it (the kernel refuses to enter one's own user namespace;
            // nothing else makes a single-threaded process's setns of a user namespace
            // handle fail with EINVAL): nothing to enter.
            let e = raw::setns(user, libc::CLONE_NEWUSER);
            if e != 0 && e != libc::EINVAL {
                report(1, e);
            }
            let mut pidfd: libc::c_int = -1;
            let mut args = CloneArgs {
                flags: ns_flags
                    | consts::CLONE_PIDFD
                    | libc::CLONE_PARENT as u64
                    | cgroup.map_or(0, |_| consts::CLONE_INTO_CGROUP),
                pidfd: &mut pidfd as *mut libc::c_int as u64,
                cgroup: cgroup.unwrap_or(0) as u64,
                ..CloneArgs::default()
            };
            // SAFETY: a valid clone_args of the size passed; no CLONE_VM: fork semantics.
            let ret = unsafe {
                sc::syscall(libc::SYS_clone3, &[&mut args as *mut CloneArgs as usize, std::mem::size_of::<CloneArgs>()])
            };
            if ret == 0 {
                // The real child. The socket pair is close-on-exec and not among the
                // descriptors it keeps (it sheds the rest first thing): not dropped here.
                std::mem::forget((ours, theirs));
                return Ok(Forked::Child);
            }
            if ret < 0 {
                report(2, -ret as i32);
            }
            raw::send_fd_named(theirs.as_raw_fd(), pidfd, &[0, 0, 0, 0, 0]);
            raw::exit(0)
        }
        Forked::Parent { pidfd: first, .. } => {
            drop(theirs);
            let received = recv_report(ours.as_fd());
            // The first stage has exited (or is about to): reaped here.
            let _ = waitid_pidfd(first.as_fd(), false);
            let (msg, fd) = received?;
            let errno = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
            match (msg[0], fd) {
                (0, Some(pidfd)) => {
                    let pid = pid_of_pidfd(pidfd.as_fd())?;
                    *joined_cgroup = cgroup.is_some();
                    Ok(Forked::Parent { pid, pidfd })
                }
                _ => Err(io::Error::from_raw_os_error(if errno > 0 { errno } else { libc::EPROTO })),
            }
        }
    }
}

/// The first stage's report ([`fork_in_user_ns`]): five bytes (stage, errno), and the real
/// child's pidfd when it succeeded.
fn recv_report(sock: BorrowedFd<'_>) -> io::Result<([u8; 5], Option<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut msg = [0u8; 5];
    let got = recvmsg(sock, &mut [io::IoSliceMut::new(&mut msg)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let fd = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    if got.bytes != msg.len() {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    Ok((msg, fd))
}

/// The pid (in our pid namespace) of the process behind `pidfd`: the `Pid:` line of its
/// `/proc/self/fdinfo` entry.
fn pid_of_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<libc::pid_t> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse::<libc::pid_t>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
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
        let page = rustix::param::page_size();
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

    /// The lowest usable address (above the guard page); `SIZE` bytes up to [`Self::top`].
    fn bottom(&self) -> *mut libc::c_void {
        self.base.cast::<u8>().wrapping_add(self.len - Self::SIZE).cast()
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
/// for the next spawn. With `cgroup` (a cgroup2 directory), the child is born in it
/// (`clone3` with `CLONE_INTO_CGROUP`; `ENOSYS` where [`VFORK_INTO_CGROUP`] is false).
/// Errors as from clone(2) / clone3; `EINVAL` also when the calling thread's time namespace
/// for children differs from its own (then use [`fork_like`]).
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
    cgroup: Option<RawFd>,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> io::Result<(libc::pid_t, OwnedFd)> {
    let ns = libc::c_int::try_from(ns_flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if cgroup.is_some() && !VFORK_INTO_CGROUP {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let stack = match VFORK_STACK.try_with(std::cell::Cell::take).ok().flatten() {
        Some(stack) => stack,
        None => VforkStack::new()?,
    };
    let mut pidfd: libc::c_int = -1;
    let pid = match cgroup {
        Some(cgroup) => {
            let mut args = CloneArgs {
                flags: ns_flags
                    | (libc::CLONE_VM | libc::CLONE_VFORK) as u64
                    | consts::CLONE_PIDFD
                    | consts::CLONE_INTO_CGROUP,
                pidfd: &mut pidfd as *mut libc::c_int as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.bottom() as u64,
                stack_size: VforkStack::SIZE as u64,
                cgroup: cgroup as u64,
                ..CloneArgs::default()
            };
            // SAFETY: `args` is a valid clone_args naming our stack mapping (above its guard
            // page) and a live int for the pidfd; `child` and `arg` satisfy this function's
            // contract. CLONE_VFORK returns only after the child has exec'd or exited.
            let ret = unsafe { clone3_on_stack(&mut args, child, arg) };
            if ret < 0 {
                // SAFETY: writes this thread's errno, which `last_os_error` reads below.
                unsafe { *libc::__errno_location() = (-ret) as libc::c_int };
                -1
            } else {
                ret as libc::pid_t
            }
        }
        None => {
            let flags = ns | libc::CLONE_VM | libc::CLONE_VFORK | consts::CLONE_PIDFD as libc::c_int | libc::SIGCHLD;
            // SAFETY: the stack top is the end of our mapping; `child` and `arg` satisfy this
            // function's contract; with CLONE_PIDFD the kernel stores the pidfd through the
            // parent_tid argument, a live int. CLONE_VFORK returns only after the child has
            // exec'd or exited, so the stack is free again when it does.
            unsafe { libc::clone(child, stack.top(), flags, arg, &mut pidfd as *mut libc::c_int) }
        }
    };
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

/// Whether [`vfork_like`] can place its child in a cgroup (`clone3` with
/// `CLONE_INTO_CGROUP`, which glibc's `clone` cannot pass): the stub below exists for
/// x86_64 only; elsewhere such a spawn forks.
pub(crate) const VFORK_INTO_CGROUP: bool = cfg!(target_arch = "x86_64");

/// `clone3(args)` where `args` has `CLONE_VM` and a stack of its own: the child starts on
/// that stack with nothing to return to, so it must call `child(arg)` and `exit` with its
/// result before touching any memory — in assembly, as glibc's `clone` does for clone(2)
/// (glibc has no public clone3). Returns the raw result: the pid, or `-errno`.
///
/// # Safety
/// As [`vfork_like`]'s; `args.stack`/`stack_size` must describe a writable mapping whose
/// top is 16-byte aligned.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_on_stack(
    args: &mut CloneArgs,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the system call preserves every register but rax, rcx and r11; the parent
    // continues at `2:` with only those changed. The child (rax = 0) runs on the new stack,
    // whose top the kernel put in rsp (16-byte aligned, as the call requires), calls
    // `child(arg)` and ends with the bare `exit` system call: it never returns into this
    // function's frame, which belongs to the suspended parent.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r8",
            "call rdx",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("rdx") child,
            in("r8") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_on_stack(
    _args: &mut CloneArgs,
    _child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> i64 {
    -(libc::ENOSYS as i64)
}

/// Creates a pipe with both ends close-on-exec.
pub(crate) fn pipe_cloexec() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
}

/// Creates a pipe with both ends close-on-exec and non-blocking.
pub(crate) fn pipe_cloexec_nonblock() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
}

/// Makes a descriptor blocking again.
pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let flags = fs::fcntl_getfl(fd)?;
    fs::fcntl_setfl(fd, flags - OFlags::NONBLOCK)
}

/// A connected `AF_UNIX` stream socket pair, both ends close-on-exec. Used for the sync
/// point so the parent can write with `MSG_NOSIGNAL` (no SIGPIPE if the child is gone).
pub(crate) fn socketpair_cloexec() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    net::socketpair(net::AddressFamily::UNIX, net::SocketType::STREAM, net::SocketFlags::CLOEXEC, None)
}

/// Sends bytes on a socket without raising SIGPIPE.
pub(crate) fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    let n = net::send(fd, buf, net::SendFlags::NOSIGNAL)?;
    if n != buf.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Writes `data` to the file `name` relative to directory `dir` (one write call).
pub(crate) fn write_at(dir: BorrowedFd<'_>, name: &CStr, data: &[u8]) -> rustix::io::Result<()> {
    let fd = fs::openat(dir, name, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&fd, data)?;
    Ok(())
}

/// Opens a path with `O_CLOEXEC` added.
pub(crate) fn open(path: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
}

/// Sends a signal through a pidfd. Named signals and libc's realtime range
/// (`SIGRTMIN()..=SIGRTMAX()`); anything else is `EINVAL`, as the kernel would say.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> rustix::io::Result<()> {
    let signal = match Signal::from_named_raw(sig) {
        Some(signal) => signal,
        None if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) => {
            // SAFETY: a realtime signal in the range libc leaves to applications (not one of
            // its reserved internal signals), non-zero.
            unsafe { Signal::from_raw_unchecked(sig) }
        }
        None => return Err(Errno::INVAL),
    };
    process::pidfd_send_signal(pidfd, signal)
}

/// Opens a pidfd for an existing pid (`ESRCH` for pid 0 or one that does not fit).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> rustix::io::Result<OwnedFd> {
    process::pidfd_open(Pid::from_raw(pid).ok_or(Errno::SRCH)?, PidfdFlags::empty())
}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// A pidfd for one thread (`PIDFD_THREAD`, kernel 6.9+): it polls readable once that
/// thread has exited. `None` on kernels without thread pidfds (EINVAL).
pub(crate) fn pidfd_open_thread(tid: libc::pid_t) -> rustix::io::Result<Option<OwnedFd>> {
    let tid = Pid::from_raw(tid).ok_or(Errno::SRCH)?;
    // rustix names no `PIDFD_THREAD`; the kernel's value is `O_EXCL`.
    match process::pidfd_open(tid, PidfdFlags::from_bits_retain(consts::PIDFD_THREAD)) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::INVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits on a pidfd. Returns the raw wait status (as `waitpid` would give it), or `None`
/// with `WNOHANG` when the child has not exited yet.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> rustix::io::Result<Option<i32>> {
    let options = WaitIdOptions::EXITED | if nohang { WaitIdOptions::NOHANG } else { WaitIdOptions::empty() };
    let status = loop {
        match process::waitid(WaitId::PidFd(pidfd), options) {
            Err(Errno::INTR) => continue,
            r => break r?,
        }
    };
    Ok(status.map(|st| {
        let sig = st.terminating_signal().unwrap_or(0) & 0x7f;
        match st.exit_status() {
            Some(code) => (code & 0xff) << 8,
            None if st.dumped() => sig | 0x80,
            None => sig,
        }
    }))
}

/// `unshare(2)` of the calling thread's filesystem context or namespaces; never of its
/// descriptor table.
pub(crate) fn unshare(flags: UnshareFlags) -> rustix::io::Result<()> {
    assert!(!flags.contains(UnshareFlags::FILES), "nook-ns never unshares the descriptor table");
    // SAFETY: without CLONE_FILES every thread keeps seeing the same descriptors (rustix makes
    // the call unsafe only for that flag).
    unsafe { rustix::thread::unshare_unsafe(flags) }
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
pub(crate) fn fstat_id(fd: BorrowedFd<'_>) -> rustix::io::Result<(u64, u64)> {
    let st = fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// `stat(2)`: (st_dev, st_ino), following symlinks (as /proc/PID/ns/* links must be).
pub(crate) fn stat_id(path: &CStr) -> rustix::io::Result<(u64, u64)> {
    let st = fs::stat(path)?;
    Ok((st.st_dev, st.st_ino))
}

/// `atexit(3)`: `f` runs when the process exits through `exit` (after `main` returns too).
/// A registration that fails (libc is out of memory) is ignored: the process then does not
/// wait at exit.
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that lives as long as the process; libc copies the
    // pointer into its own list.
    let _ = unsafe { libc::atexit(f) };
}

/// The effective uid and gid of the calling process.
pub(crate) fn geteuid_egid() -> (libc::uid_t, libc::gid_t) {
    (process::geteuid().as_raw(), process::getegid().as_raw())
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
pub(crate) fn sealed_exec_memfd(name: &CStr, bytes: &[u8]) -> rustix::io::Result<OwnedFd> {
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match fs::memfd_create(name, base | MemfdFlags::EXEC) {
        // Unknown before 6.3.
        Err(Errno::INVAL) => fs::memfd_create(name, base)?,
        r => r?,
    };
    let mut off = 0;
    while off < bytes.len() {
        match rustix::io::write(&fd, &bytes[off..]) {
            Ok(n) => off += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    if fs::fcntl_add_seals(&fd, seals | SealFlags::EXEC).is_err() {
        // Without F_SEAL_EXEC (unknown before 6.3).
        fs::fcntl_add_seals(&fd, seals)?;
    }
    Ok(fd)
}

// ---------------------------------------------------------------------------------------
// Hardening, parent side: the seccomp notification ioctls and the Landlock ruleset calls,
// which rustix does not name (its generic `ioctl` is as unsafe as libc's).
// ---------------------------------------------------------------------------------------

/// `SECCOMP_IOCTL_NOTIF_RECV`: blocks until a notification arrives.
pub(crate) fn seccomp_notif_recv(fd: BorrowedFd<'_>) -> io::Result<libc::seccomp_notif> {
    // SAFETY: the kernel wants a zeroed `struct seccomp_notif`; all-zero is a valid value
    // of this plain-integer struct.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `notif` is a live, writable `struct seccomp_notif` of the size the ioctl
        // number encodes.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) };
        match cvt(r) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(notif),
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_SEND`.
pub(crate) fn seccomp_notif_send(fd: BorrowedFd<'_>, resp: &libc::seccomp_notif_resp) -> io::Result<()> {
    let mut resp = *resp;
    // SAFETY: `resp` is a live `struct seccomp_notif_resp` of the size the ioctl encodes.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) }).map(drop)
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`.
pub(crate) fn seccomp_notif_id_valid(fd: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let mut id = id;
    // SAFETY: `id` is a live u64, as the ioctl encodes.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) }).map(drop)
}

/// `landlock_create_ruleset(&attr, 8, 0)` with only `handled_access_fs` (the first field,
/// which every ABI has).
pub(crate) fn landlock_create_ruleset(handled_access_fs: u64) -> io::Result<OwnedFd> {
    let attr = handled_access_fs;
    // SAFETY: `attr` is the 8-byte prefix of `struct landlock_ruleset_attr`; the kernel
    // reads exactly the size given. The returned descriptor is new and ours.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const u64, 8usize, 0u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor (close-on-exec) owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {allowed, parent}, 0)`.
pub(crate) fn landlock_add_path_rule(ruleset: BorrowedFd<'_>, parent: BorrowedFd<'_>, allowed: u64) -> io::Result<()> {
    /// `struct landlock_path_beneath_attr` (packed in the UAPI header).
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneath { allowed_access: allowed, parent_fd: parent.as_raw_fd() };
    // SAFETY: `attr` is a live `struct landlock_path_beneath_attr`; both descriptors are
    // borrowed for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A close-on-exec duplicate of descriptor number `fd`, which this process inherited at
/// exec (a `LISTEN_FDS` socket of systemd's socket activation, runc's `--preserve-fds`):
/// how a caller takes such a number without `unsafe` of its own. `EBADF` when it is not
/// open.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is not -1; the borrow lives only for the `fcntl` below, which fails with
    // EBADF for a number that is not open, and the duplicate it makes is owned by the
    // result.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(rustix::io::fcntl_dupfd_cloexec(borrowed, 3)?)
}
