//! `process.terminal`: runc's console contract.
//!
//! With `--console-socket PATH` (create, `run --detach`, `exec --detach` or any exec given
//! one) nook-oci connects to the unix socket at `PATH` and hands the connection to the
//! container's process, which allocates a pseudo-terminal from its own `/dev/ptmx` (the
//! container's devpts instance) and sends the master over it (`SCM_RIGHTS`, `/dev/ptmx` as
//! the message, as runc) before `create` returns; the terminal's peer is its stdin, stdout,
//! stderr and controlling terminal (`nook_ns::Command::terminal`), and — for the container's
//! first process, not an exec — bind-mounted on its `/dev/console` (runc's `mountConsole`). The engine (conmon,
//! containerd's shim) then owns the master.
//!
//! A foreground `run` or `exec` with a terminal and no console socket does what runc does:
//! it receives the master itself over a socket pair and copies between its own stdio and
//! the terminal (its stdin put in raw mode while it is a terminal, `ONLCR` cleared on the
//! master so output keeps its `\n`) until the process ends. While our stdin is a terminal,
//! its size is the process's terminal's size: given to the terminal when it is made (unless
//! the process's `consoleSize` says otherwise), so the process sees it from its first
//! instruction, and copied again when the relay starts and on every `SIGWINCH` (as runc
//! resizes; runc sets it only once the process runs, which a fast process can beat).
//!
//! As runc: a terminal without a console socket when nook-oci will detach (`create`,
//! `--detach`) is refused, and so is a console socket without a terminal or with a
//! foreground `run`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{Error, SysContext};

/// The runc-compatible checks; `Ok(true)` when a terminal is to be made.
pub(crate) fn check(terminal: bool, console_socket: Option<&Path>, detach: bool) -> Result<bool, Error> {
    match (terminal, console_socket.is_some(), detach) {
        (true, false, true) => {
            Err(Error::Usage("cannot allocate tty if nook-oci will detach without setting console socket".into()))
        }
        (false, true, _) | (true, true, false) => {
            Err(Error::Usage("cannot use console socket if nook-oci will not detach or allocate tty".into()))
        }
        _ => Ok(terminal),
    }
}

/// Where the terminal's master goes: the engine's console socket, or our own socket pair
/// (`relay`: our end) for a foreground command.
#[derive(Debug)]
pub(crate) struct Console {
    /// What the container's process sends the master over.
    pub(crate) child_end: OwnedFd,
    /// Our end, for a foreground command that relays.
    pub(crate) relay: Option<UnixStream>,
}

impl Console {
    /// Connects to the console socket at `path`, or (`None`) makes a pair to relay.
    pub(crate) fn new(path: Option<&Path>) -> Result<Console, Error> {
        match path {
            Some(p) => Ok(Console { child_end: UnixStream::connect(p).sys("connect", p)?.into(), relay: None }),
            None => {
                let (ours, theirs) = UnixStream::pair().sys("socketpair", "(console)")?;
                Ok(Console { child_end: theirs.into(), relay: Some(ours) })
            }
        }
    }
}

/// The size (rows, columns) a relayed terminal starts with: `configured` (the process's
/// `consoleSize`), else our stdin's when it is a terminal, else the kernel's default.
pub(crate) fn initial_size(configured: Option<(u16, u16)>) -> Option<(u16, u16)> {
    use rustix::termios::{isatty, tcgetwinsize};
    let stdin = std::io::stdin();
    configured.or_else(|| {
        isatty(stdin.as_fd())
            .then(|| tcgetwinsize(stdin.as_fd()).ok())
            .flatten()
            .filter(|w| w.ws_row > 0 && w.ws_col > 0)
            .map(|w| (w.ws_row, w.ws_col))
    })
}

/// Receives the master the container's process sent over `sock`, with `ONLCR` cleared
/// ([`clear_onlcr`]).
pub(crate) fn recv_master(sock: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let master = recv_fd(sock)?;
    clear_onlcr(master.as_fd())?;
    Ok(master)
}

fn recv_fd(sock: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    let got = recvmsg(sock, &mut [std::io::IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(std::io::Error::from)
        .sys("recvmsg", "(console)")?;
    let _ = got;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::EPROTO)).sys("recvmsg (no terminal received)", "(console)")
}

/// Clears `ONLCR` on a relayed terminal (as runc does for the master it receives), so the
/// process's `\n` reaches our stdout as it is: before the process runs.
pub(crate) fn clear_onlcr(master: BorrowedFd<'_>) -> Result<(), Error> {
    use rustix::termios::{OptionalActions, OutputModes, tcgetattr, tcsetattr};
    let mut t = tcgetattr(master).map_err(std::io::Error::from).sys("tcgetattr", "(terminal)")?;
    t.output_modes.remove(OutputModes::ONLCR);
    tcsetattr(master, OptionalActions::Now, &t).map_err(std::io::Error::from).sys("tcsetattr", "(terminal)")
}

/// A running relay between our stdio and a terminal's master.
#[derive(Debug)]
pub(crate) struct Relay {
    output: std::thread::JoinHandle<()>,
    /// The master, for [`Relay::resize`].
    master: OwnedFd,
    /// Our stdin's terminal settings before raw mode, restored at the end.
    restore: Option<rustix::termios::Termios>,
}

impl Relay {
    /// Starts copying: our stdin to the master (a thread left to end with the process),
    /// the master to our stdout (until the terminal's last peer is closed).
    pub(crate) fn start(master: OwnedFd) -> Result<Relay, Error> {
        use rustix::termios::{OptionalActions, isatty, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let restore = if isatty(stdin.as_fd()) {
            let saved = tcgetattr(stdin.as_fd()).map_err(std::io::Error::from).sys("tcgetattr", "stdin")?;
            let mut raw = saved.clone();
            raw.make_raw();
            tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
                .map_err(std::io::Error::from)
                .sys("tcsetattr", "stdin")?;
            Some(saved)
        } else {
            None
        };
        let mut to_master = std::fs::File::from(master.try_clone().sys("dup", "(terminal)")?);
        let kept = master.try_clone().sys("dup", "(terminal)")?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to_master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut from_master = std::fs::File::from(master);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            // EIO once the last peer is closed: the process and everything it started ended.
            while let Ok(n) = from_master.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        });
        let relay = Relay { output, master: kept, restore };
        relay.resize();
        Ok(relay)
    }

    /// Gives the process's terminal our stdin's size, when our stdin is a terminal (best
    /// effort, as runc: a failure leaves the size as it was).
    pub(crate) fn resize(&self) {
        use rustix::termios::{isatty, tcgetwinsize, tcsetwinsize};
        let stdin = std::io::stdin();
        if isatty(stdin.as_fd())
            && let Ok(size) = tcgetwinsize(stdin.as_fd())
        {
            let _ = tcsetwinsize(self.master.as_fd(), size);
        }
    }

    /// Waits for the output to be copied to the end, and restores our terminal.
    pub(crate) fn finish(self) {
        let _ = self.output.join();
        if let Some(saved) = self.restore {
            let _ = rustix::termios::tcsetattr(std::io::stdin().as_fd(), rustix::termios::OptionalActions::Now, &saved);
        }
    }
}
