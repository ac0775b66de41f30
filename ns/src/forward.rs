//! [`forward_signals`]: relay the signals a supervisor gets to a process it waits for (what
//! `runc run` does without a terminal), through a `signalfd` polled with the process's pidfd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Result, SysContext};

/// Blocks `signals` on the calling thread, then relays each one received to the process
/// behind `pidfd` until that process exits (its pidfd becomes readable). The signals stay
/// blocked on return — the caller is about to collect the process and exit — so one that
/// arrives after the exit is dropped instead of killing the caller.
///
/// Only the calling thread's mask changes: in a multi-threaded process another thread with
/// the signals unblocked would still take them.
pub fn forward_signals(pidfd: BorrowedFd<'_>, signals: &[i32]) -> Result<()> {
    forward_signals_with(pidfd, signals, |_| false)
}

/// [`forward_signals`], with `handle` asked first for each signal received: when it returns
/// `true` the signal was handled here and is not relayed (e.g. `SIGWINCH` for a supervisor
/// that copies its terminal's size to the process's terminal, as `runc run` does).
///
/// Signals sent before this is called are not lost when the caller blocked them earlier
/// ([`block_signals`], before starting threads that would otherwise take them): the
/// signalfd reads what is pending.
pub fn forward_signals_with(pidfd: BorrowedFd<'_>, signals: &[i32], mut handle: impl FnMut(i32) -> bool) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let set = block_signals(signals)?;
    // SAFETY: -1 asks for a new descriptor; `set` is initialised; the flags are valid.
    let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).sys("signalfd");
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    let sfd = unsafe { OwnedFd::from_raw_fd(raw) };
    loop {
        let (sig_ready, exited) = {
            let mut fds = [PollFd::new(&sfd, PollFlags::IN), PollFd::new(&pidfd, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(std::io::Error::from(e)).sys("poll"),
            }
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
        };
        if sig_ready {
            while let Some(signo) = read_signal(sfd.as_fd())? {
                if handle(signo) {
                    continue;
                }
                if let Some(sig) = rustix::process::Signal::from_named_raw(signo) {
                    // The process may have exited meanwhile: then there is nobody to tell.
                    let _ = rustix::process::pidfd_send_signal(pidfd, sig);
                }
            }
        }
        if exited {
            return Ok(());
        }
    }
}

/// Blocks `signals` on the calling thread (threads it starts afterwards inherit the mask,
/// so none of them takes one of these signals away from [`forward_signals`]); returns the
/// set.
pub fn block_signals(signals: &[i32]) -> Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only reads and writes
    // that initialised set; an invalid signal number makes sigaddset fail, nothing else.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    };
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc)).sys("pthread_sigmask");
    }
    Ok(set)
}

/// One signal from the signalfd, `None` when none is pending.
fn read_signal(sfd: BorrowedFd<'_>) -> Result<Option<i32>> {
    let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is `size` bytes of writable memory that lives across the call.
    let n = unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e).sys("read(signalfd)"),
        };
    }
    if n as usize != size {
        return Ok(None);
    }
    // SAFETY: the kernel filled the whole struct (n == size).
    let info = unsafe { info.assume_init() };
    Ok(Some(info.ssi_signo as i32))
}
