//! Handles to children: [`PausedChild`] (created, waiting at the sync point) and [`Child`]
//! (running its program). Both hold a pidfd: waiting and signalling go through it, so a
//! recycled pid can never be hit.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};

use crate::error::{Error, ErrorRecord, Result};
use crate::plan::Plan;
use crate::sys;

/// Where a child's stdin, stdout or stderr goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// Share the parent's descriptor (the default).
    #[default]
    Inherit,
    /// `/dev/null` (opened by the parent, so it works after `pivot_root`).
    Null,
    /// A new pipe; the parent's end is on the `Child`.
    Piped,
    /// This descriptor.
    Fd(OwnedFd),
}

impl Stdio {
    /// Share the parent's descriptor.
    pub fn inherit() -> Self {
        Stdio::Inherit
    }
    /// `/dev/null`.
    pub fn null() -> Self {
        Stdio::Null
    }
    /// A pipe to the parent.
    pub fn piped() -> Self {
        Stdio::Piped
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Self {
        Stdio::Fd(fd)
    }
}

impl From<File> for Stdio {
    fn from(f: File) -> Self {
        Stdio::Fd(f.into())
    }
}

/// The parent's ends of the child's stdio pipes.
#[derive(Debug, Default)]
pub(crate) struct ParentPipes {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// A child that exists (in its namespaces, with its id maps written) but has not started
/// its setup yet: it is blocked at the sync point.
///
/// Use the pause to do what needs the child's pid before it continues — move a network link
/// into its namespace, add it to a cgroup — then [`PausedChild::resume`]. Dropping a paused
/// child kills and reaps it.
#[derive(Debug)]
pub struct PausedChild {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    sync: Option<OwnedFd>,
    errors: Option<OwnedFd>,
    pipes: ParentPipes,
    kill_on_drop: bool,
    /// The child's plan, freed only once the child has exec'd or exited (see `resume`).
    plan: Option<Plan>,
    /// Our end of the socket the child sends its seccomp listener over.
    notify: Option<OwnedFd>,
}

impl PausedChild {
    /// `sync`: our end of the sync socket, `None` when the child does not wait for us.
    pub(crate) fn new(
        pid: libc::pid_t,
        pidfd: OwnedFd,
        sync: Option<OwnedFd>,
        errors: OwnedFd,
        pipes: ParentPipes,
        plan: Plan,
    ) -> Self {
        PausedChild {
            pid,
            pidfd: Some(pidfd),
            sync,
            errors: Some(errors),
            pipes,
            kill_on_drop: false,
            plan: Some(plan),
            notify: None,
        }
    }

    /// Our end of the socket the child sends its seccomp listener over.
    pub(crate) fn set_notify_socket(&mut self, sock: OwnedFd) {
        self.notify = Some(sock);
    }

    /// The child's pid, as seen from the caller's pid namespace.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// The child's pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_ref().expect("pidfd present until resume").as_fd()
    }

    /// Sets whether the running child is killed when its [`Child`] handle is dropped.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// Lets the child continue: it finishes its setup and execs. Returns once the exec
    /// happened, or with the typed error of the stage that failed (the child is reaped).
    pub fn resume(mut self) -> Result<Child> {
        let resumed = match self.sync.take() {
            Some(sync) => sys::send_nosignal(sync.as_fd(), &[1]),
            None => Ok(()),
        };
        let errors = File::from(self.errors.take().expect("error pipe present until resume"));
        let outcome = read_error_record(errors);
        // The child has exec'd or exited, so its copy-on-write view of our memory is gone:
        // freeing the plan now no longer makes the kernel copy every page it touches.
        drop(self.plan.take());
        let pidfd = self.pidfd.take().expect("pidfd present until resume");
        let mut child = Child {
            pid: self.pid,
            pidfd,
            status: None,
            kill_on_drop: self.kill_on_drop,
            stdin: self.pipes.stdin.take(),
            stdout: self.pipes.stdout.take(),
            stderr: self.pipes.stderr.take(),
            seccomp_notifier: None,
        };
        match outcome {
            Ok(None) => {
                // EOF: the child exec'd (or exited before reading the byte, which the
                // write error below tells apart).
                if let Err(e) = resumed {
                    let cleanup = kill_and_reap(child.pidfd.as_fd());
                    return Err(Error::with_cleanup(Error::sys("write to sync pipe", e), cleanup));
                }
                // The child sent its seccomp listener before it exec'd.
                if let Some(sock) = self.notify.take() {
                    match crate::seccomp::recv_listener(sock.as_fd()) {
                        Ok(fd) => child.seccomp_notifier = Some(crate::seccomp::Notifier::from_fd(fd)),
                        Err(e) => {
                            let cleanup = kill_and_reap(child.pidfd.as_fd());
                            return Err(Error::with_cleanup(Error::sys("receive seccomp listener", e), cleanup));
                        }
                    }
                }
                Ok(child)
            }
            Ok(Some(record)) => {
                // The child has exited after writing the record: reap it.
                let cleanup = child.wait().err().map(|e| Error::sys("waitid", e)).into_iter().collect();
                Err(Error::with_cleanup(Error::Spawn(record.into_spawn_error()), cleanup))
            }
            Err(e) => {
                let cleanup = kill_and_reap(child.pidfd.as_fd());
                Err(Error::with_cleanup(Error::sys("read error pipe", e), cleanup))
            }
        }
    }

    /// Undoes a spawn whose parent-side setup failed with `cause`: kills and reaps the child;
    /// an [`Error::Cleanup`] when that fails too.
    pub(crate) fn abort(mut self, cause: Error) -> Error {
        let cleanup = self.pidfd.take().map(|pidfd| kill_and_reap(pidfd.as_fd())).unwrap_or_default();
        Error::with_cleanup(cause, cleanup)
    }
}

/// Kills the child behind `pidfd` and reaps it; returns what failed (a child that already
/// exited is not a failure).
fn kill_and_reap(pidfd: BorrowedFd<'_>) -> Vec<Error> {
    let mut errors = Vec::new();
    match sys::pidfd_send_signal(pidfd, libc::SIGKILL) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => {}
        Err(e) => errors.push(Error::sys("pidfd_send_signal", e)),
    }
    if let Err(e) = sys::waitid_pidfd(pidfd, false) {
        errors.push(Error::sys("waitid", e));
    }
    errors
}

/// Reads the child's error record: `None` at EOF (the child exec'd), or — on the
/// non-blocking pipe of a vfork-style child, which is done when this is called — when
/// there is nothing to read (the record is written whole, before the child exits).
fn read_error_record(mut pipe: File) -> io::Result<Option<ErrorRecord>> {
    let mut buf = [0u8; ErrorRecord::SIZE];
    let mut got = 0;
    while got < buf.len() {
        match pipe.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got == 0 => break,
            Err(e) => return Err(e),
        }
    }
    match got {
        0 => Ok(None),
        ErrorRecord::SIZE => Ok(Some(ErrorRecord::decode(&buf))),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated error record from child")),
    }
}

impl Drop for PausedChild {
    fn drop(&mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = kill_and_reap(pidfd.as_fd());
        }
    }
}

/// A running child. Wait and signal go through its pidfd.
///
/// Like `std::process::Child`, dropping it does not kill the process unless
/// [`Child::kill_on_drop`] was set; in that case drop kills and reaps it.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    /// The parent's end of the child's stdin, when it was `Stdio::Piped`.
    pub stdin: Option<File>,
    /// The parent's end of the child's stdout, when it was `Stdio::Piped`.
    pub stdout: Option<File>,
    /// The parent's end of the child's stderr, when it was `Stdio::Piped`.
    pub stderr: Option<File>,
    seccomp_notifier: Option<crate::seccomp::Notifier>,
}

impl Child {
    /// The seccomp user-notification listener of a child spawned with a
    /// [`crate::seccomp::SeccompProgram::notify`] program (once; `None` afterwards or
    /// without one).
    pub fn take_seccomp_notifier(&mut self) -> Option<crate::seccomp::Notifier> {
        self.seccomp_notifier.take()
    }

    /// The child's pid, as seen from the caller's pid namespace.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// The child's pidfd (pollable: readable once the child exits).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether dropping this handle kills (and reaps) the child.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// Sends `signal` through the pidfd. A child that was already reaped is not signalled
    /// (`ESRCH`). `signal` is a named signal or one of libc's realtime signals
    /// (`SIGRTMIN()..=SIGRTMAX()`); 0 and libc's internal signals are `EINVAL`.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        if self.status.is_some() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(sys::pidfd_send_signal(self.pidfd.as_fd(), signal)?)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Waits for the child to exit (closing its stdin first, like std).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        if let Some(status) = self.status {
            return Ok(status);
        }
        let raw = sys::waitid_pidfd(self.pidfd.as_fd(), false)?.expect("blocking waitid returns a status");
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(status)
    }

    /// Returns the exit status if the child has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = sys::waitid_pidfd(self.pidfd.as_fd(), true)?.map(ExitStatus::from_raw);
        self.status = status;
        Ok(status)
    }

    /// Waits for the child and collects what it wrote to piped stdout and stderr.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let stderr = self.stderr.take();
        let err_reader = stderr.map(|mut f| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map(|_| buf)
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut f) = self.stdout.take() {
            f.read_to_end(&mut stdout)?;
        }
        let stderr = match err_reader {
            Some(h) => h.join().map_err(|_| io::Error::other("stderr reader panicked"))??,
            None => Vec::new(),
        };
        let status = self.wait()?;
        Ok(Output { status, stdout, stderr })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.kill_on_drop && self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

/// The spawner thread behind [`crate::Command::kill_with_parent_process`]: one thread per
/// process that blocks every signal and never exits, so a child it clones gets its
/// `PR_SET_PDEATHSIG` when the process ends, not when some thread does.
pub(crate) mod spawner {
    use std::io;
    use std::sync::Mutex;
    use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

    /// A call to run on the spawner thread: `run(ctx)`, then a message on `done`.
    struct Job {
        run: unsafe fn(*mut ()),
        ctx: *mut (),
        done: SyncSender<()>,
    }

    // SAFETY: `ctx` points to a closure and its result slot on the stack of the thread in
    // `run`, which blocks until `done` (or until the job is dropped) and whose closure is
    // `Send`; nothing else refers to it meanwhile.
    unsafe impl Send for Job {}

    struct Spawner {
        /// The process that started it (after a fork the thread does not exist any more).
        pid: u32,
        tid: libc::pid_t,
        jobs: Sender<Job>,
    }

    static SPAWNER: Mutex<Option<Spawner>> = Mutex::new(None);

    fn with_spawner<T>(f: impl FnOnce(&Spawner) -> T) -> io::Result<T> {
        let mut guard = SPAWNER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.as_ref().is_none_or(|s| s.pid != std::process::id()) {
            let (jobs, receiver) = mpsc::channel::<Job>();
            let (tid_tx, tid_rx) = mpsc::sync_channel(1);
            std::thread::Builder::new().name("nook-spawner".into()).spawn(move || serve(receiver, tid_tx))?;
            let tid = tid_rx.recv().map_err(|_| io::Error::other("the spawner thread did not start"))?;
            *guard = Some(Spawner { pid: std::process::id(), tid, jobs });
        }
        Ok(f(guard.as_ref().expect("set above")))
    }

    fn serve(jobs: Receiver<Job>, tid: SyncSender<libc::pid_t>) {
        // Process-directed signals go to the other threads, never to this one: the host's
        // handlers keep running where the host expects them.
        crate::sys::block_all_signals();
        let _ = tid.send(crate::sys::gettid());
        for job in jobs {
            // SAFETY: `run` and `ctx` were built together by `run` below, whose caller
            // waits for `done`.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (job.run)(job.ctx) }));
            if ran.is_ok() {
                let _ = job.done.send(());
            }
        }
    }

    /// The spawner thread's id (starting it on first use).
    pub(crate) fn tid() -> io::Result<libc::pid_t> {
        with_spawner(|s| s.tid)
    }

    /// Runs `f` on the spawner thread and returns its result; blocks until then.
    pub(crate) fn run<F, R>(f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        type Slot<F, R> = (Option<F>, Option<R>);
        /// # Safety
        /// `ctx` must point to a live `Slot<F, R>` that nothing else uses meanwhile.
        unsafe fn trampoline<F: FnOnce() -> R, R>(ctx: *mut ()) {
            // SAFETY: the caller's contract.
            let slot = unsafe { &mut *ctx.cast::<Slot<F, R>>() };
            if let Some(f) = slot.0.take() {
                slot.1 = Some(f());
            }
        }
        let mut slot: Slot<F, R> = (Some(f), None);
        let (done, finished) = mpsc::sync_channel(1);
        let job = Job { run: trampoline::<F, R>, ctx: (&mut slot as *mut Slot<F, R>).cast(), done };
        with_spawner(|s| s.jobs.send(job))?.map_err(|_| io::Error::other("the spawner thread is gone"))?;
        // Ok: it ran. Err: the job was dropped — it panicked, or the thread is gone; either
        // way nothing refers to `slot` any more.
        let _ = finished.recv();
        slot.1.ok_or_else(|| io::Error::other("the spawner thread failed to run the spawn"))
    }
}
