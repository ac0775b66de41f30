//! Seccomp: the compiled program a [`crate::Command`] installs ([`SeccompProgram`]), and the
//! parent's side of user notification ([`Notifier`]).
//!
//! nook-ns does not compile profiles: it takes classic BPF, as `seccompiler` (used by
//! `nook-sandbox` for Docker/OCI profiles) or a hand-written filter produces it, and installs
//! it in the child with `seccomp(SECCOMP_SET_MODE_FILTER)` as the last step before exec.
//!
//! With [`SeccompProgram::notify`], the filter's `SECCOMP_RET_USER_NOTIF` actions go to a
//! listener (`SECCOMP_FILTER_FLAG_NEW_LISTENER`): the child sends it to the parent over a
//! socket (`SCM_RIGHTS`) before it execs, and [`crate::Child::take_seccomp_notifier`] hands
//! it to the caller, who answers the confined syscalls with [`Notifier::recv`] and
//! [`Notifier::respond`] / [`Notifier::respond_continue`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::sys;

/// `BPF_MAXINSNS`: the kernel refuses longer classic BPF programs.
pub const MAX_INSTRUCTIONS: usize = 4096;

/// A compiled classic BPF seccomp filter, shared: cloning it (or handing it to many
/// [`crate::Command`]s) copies a pointer, not the program, so one compiled profile serves
/// every spawn.
///
/// The filter must allow what the child still does after installing it: `rt_sigprocmask`
/// and `execve`; with [`crate::Command::init`] (the init is confined too) also what the
/// init does before its exec (`prctl`, `rt_sigaction`, `pipe2`, `getpid`, `clone`,
/// `close_range`/`close`, `fcntl`, `execveat`, `wait4`), what the payload does before its
/// exec (`rt_sigaction`, `prctl`, `getppid`, `read`, `close`), and nk-init's own calls
/// (`write`, `close`, `rt_sigaction`, `rt_sigprocmask`, `rt_sigtimedwait`, `wait4`, `kill`,
/// `prctl`, `exit_group`); with [`SeccompProgram::notify`] `sendmsg` and `close` (the
/// listener is sent to the parent after the filter is installed; a notification on those
/// would wait for a parent that does not listen yet). A denied call there fails the spawn
/// with the errno the filter returns (at the stage of that call), or kills the child. A program the kernel refuses fails the spawn at
/// [`crate::Stage::Seccomp`]; nothing runs unconfined.
#[derive(Clone)]
pub struct SeccompProgram {
    pub(crate) filter: Arc<[libc::sock_filter]>,
    pub(crate) flags: libc::c_ulong,
    pub(crate) notify: bool,
}

impl std::fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .field("flags", &self.flags)
            .field("notify", &self.notify)
            .finish()
    }
}

impl SeccompProgram {
    /// The program `filter` (validated by [`crate::Command::validate`]: 1 to
    /// [`MAX_INSTRUCTIONS`] instructions; the kernel checks the rest when installing it).
    pub fn new(filter: impl Into<Arc<[libc::sock_filter]>>) -> SeccompProgram {
        SeccompProgram { filter: filter.into(), flags: 0, notify: false }
    }

    /// Ask for a user-notification listener (`SECCOMP_FILTER_FLAG_NEW_LISTENER`): the
    /// filter's `SECCOMP_RET_USER_NOTIF` syscalls wait until the parent answers them through
    /// [`crate::Child::take_seccomp_notifier`].
    pub fn notify(mut self, enabled: bool) -> SeccompProgram {
        self.notify = enabled;
        self
    }

    /// Extra `SECCOMP_FILTER_FLAG_*` flags (e.g. `SECCOMP_FILTER_FLAG_SPEC_ALLOW`, `_LOG`).
    /// `NEW_LISTENER` is set by [`SeccompProgram::notify`]; `TSYNC` makes no sense in the
    /// single-threaded child and is refused by validation.
    pub fn flags(mut self, flags: libc::c_ulong) -> SeccompProgram {
        self.flags = flags;
        self
    }

    /// Whether the program asks for a user-notification listener ([`SeccompProgram::notify`]).
    pub fn is_notify(&self) -> bool {
        self.notify
    }

    /// The instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }
}

/// A syscall waiting for the parent's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// The notification's id (answer with it).
    pub id: u64,
    /// The calling thread, in the listener's pid namespace (0 if not visible there).
    pub pid: u32,
    /// The syscall number.
    pub nr: i32,
    /// The `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// The instruction pointer at the call.
    pub instruction_pointer: u64,
    /// The six arguments.
    pub args: [u64; 6],
}

/// How [`Notifier::serve`] answers a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The syscall returns this value.
    Value(i64),
    /// The syscall fails with this (positive) errno.
    Errno(i32),
    /// The syscall runs as if allowed ([`Notifier::respond_continue`]).
    Continue,
}

/// The parent's end of a seccomp user-notification listener.
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
}

impl Notifier {
    /// Wraps a listener descriptor.
    pub fn from_fd(fd: OwnedFd) -> Notifier {
        Notifier { fd }
    }

    /// Waits for the next notification (`SECCOMP_IOCTL_NOTIF_RECV`); `ENOENT` when the
    /// caller died before it could be received. It does not return when the last confined
    /// process exits: poll [`Notifier::as_fd`] first, which reports `POLLHUP` then.
    pub fn recv(&self) -> io::Result<Notification> {
        let n = sys::seccomp_notif_recv(self.fd.as_fd())?;
        Ok(Notification {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            instruction_pointer: n.data.instruction_pointer,
            args: n.data.args,
        })
    }

    /// Answers `id`: the syscall returns `val` (`error` 0), or fails with `-1` / errno
    /// `error` (positive errno).
    pub fn respond(&self, id: u64, val: i64, error: i32) -> io::Result<()> {
        let resp = libc::seccomp_notif_resp { id, val, error: -error, flags: 0 };
        sys::seccomp_notif_send(self.fd.as_fd(), &resp)
    }

    /// Lets the syscall run as if the filter had allowed it
    /// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`; kernel 5.5+). Not a security decision: the
    /// target may have changed its arguments' memory since.
    pub fn respond_continue(&self, id: u64) -> io::Result<()> {
        let resp =
            libc::seccomp_notif_resp { id, val: 0, error: 0, flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 };
        sys::seccomp_notif_send(self.fd.as_fd(), &resp)
    }

    /// Whether notification `id` is still pending (its caller still waits): check after
    /// reading the target's memory, before acting on it.
    pub fn id_valid(&self, id: u64) -> bool {
        sys::seccomp_notif_id_valid(self.fd.as_fd(), id).is_ok()
    }

    /// Answers every notification with `answer` until no process uses the filter any more
    /// (the listener reports `POLLHUP`); returns how many were answered. A notification
    /// whose caller died before it was received or answered is skipped. Blocks: run it on
    /// a thread of its own (or poll [`Notifier::as_fd`] yourself).
    ///
    /// ```no_run
    /// # fn demo(notifier: nook_ns::seccomp::Notifier) -> std::io::Result<()> {
    /// use nook_ns::seccomp::Reply;
    /// // Every supervised call returns 4242.
    /// let answered = notifier.serve(|_call| Reply::Value(4242))?;
    /// # Ok(()) }
    /// ```
    pub fn serve(&self, mut answer: impl FnMut(&Notification) -> Reply) -> io::Result<u64> {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut answered = 0;
        loop {
            let fd = self.fd.as_fd();
            let mut pfd = [PollFd::new(&fd, PollFlags::IN)];
            match poll(&mut pfd, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let revents = pfd[0].revents();
            if revents.contains(PollFlags::IN) {
                let n = match self.recv() {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                let sent = match answer(&n) {
                    Reply::Value(v) => self.respond(n.id, v, 0),
                    Reply::Errno(e) => self.respond(n.id, 0, e),
                    Reply::Continue => self.respond_continue(n.id),
                };
                match sent {
                    Ok(()) => answered += 1,
                    // The caller died meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            } else if revents.intersects(PollFlags::HUP | PollFlags::ERR) {
                return Ok(answered);
            }
        }
    }

    /// The listener descriptor (pollable: readable when a notification waits).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the listener descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Receives the listener the child sent over `sock` (`SCM_RIGHTS`), without waiting: the
/// child sent it before it exec'd.
pub(crate) fn recv_listener(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(sock, &mut [io::IoSliceMut::new(&mut byte)], &mut anc, RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC)?;
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EBADMSG))
}
