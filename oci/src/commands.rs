//! The commands: `create`, `start`, `state`, `kill`, `delete`, `run`, `exec` (and the
//! dispatch of `ps`, `pause`, `resume`, `update`, `features`: [`crate::manage`],
//! [`crate::features`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::state::Status;
use liboci_cli::{CommonCmd, StandardCmd};
use nook_sandbox::detached::{ExecIo, ExecProcess, open_start_gate};
use nook_sandbox::{Outcome, Sandbox, User};

use crate::Command;
use crate::error::{Error, SysContext};
use crate::hooks::{self, Phase};
use crate::lock::IdLock;
use crate::state::{Container, ContainerDir, FIFO, Stored, new_state, rfc3339_now};

/// Runs one command; the process's exit code.
pub(crate) fn dispatch(root: &Path, command: Command) -> Result<i32, Error> {
    match command {
        Command::Standard(StandardCmd::Create(c)) => {
            // The inherited descriptors first: the lock file must not take one of their numbers.
            let opts = CreateOpts {
                console_socket: c.console_socket.as_deref(),
                passed: passed_fds(c.preserve_fds, true)?,
                no_pivot: c.no_pivot,
                no_new_keyring: c.no_new_keyring,
                detach: true,
            };
            locked(root, &c.container_id, || create(root, &c.container_id, &c.bundle, c.pid_file.as_deref(), opts))
                .map(|_| 0)
        }
        Command::Standard(StandardCmd::Start(s)) => {
            locked(root, &s.container_id, || start(root, &s.container_id)).map(|()| 0)
        }
        Command::Standard(StandardCmd::State(s)) => {
            println!("{}", Container::load(root, &s.container_id)?.state_json()?);
            Ok(0)
        }
        Command::Standard(StandardCmd::Kill(k)) => {
            locked(root, &k.container_id, || kill(root, &k.container_id, &k.signal, k.all)).map(|()| 0)
        }
        Command::Standard(StandardCmd::Delete(d)) => {
            locked(root, &d.container_id, || delete(root, &d.container_id, d.force)).map(|()| 0)
        }
        Command::Common(CommonCmd::Run(r)) => {
            if r.keep {
                return Err(Error::Unsupported("run --keep".into()));
            }
            let opts = CreateOpts {
                console_socket: r.console_socket.as_deref(),
                passed: passed_fds(r.preserve_fds, true)?,
                no_pivot: r.no_pivot,
                no_new_keyring: r.no_new_keyring,
                detach: r.detach,
            };
            run(root, &r.container_id, &r.bundle, r.pid_file.as_deref(), opts)
        }
        Command::Common(CommonCmd::Exec(e)) => exec(root, e),
        Command::Common(CommonCmd::Ps(p)) => crate::manage::ps(root, &p).map(|()| 0),
        Command::Common(CommonCmd::Pause(p)) => {
            locked(root, &p.container_id, || crate::manage::pause(root, &p.container_id)).map(|()| 0)
        }
        Command::Common(CommonCmd::Resume(r)) => {
            locked(root, &r.container_id, || crate::manage::resume(root, &r.container_id)).map(|()| 0)
        }
        Command::Common(CommonCmd::Update(u)) => {
            locked(root, &u.container_id, || crate::manage::update(root, &u)).map(|()| 0)
        }
        Command::Common(CommonCmd::Features(_)) => {
            println!("{}", crate::features::document()?);
            Ok(0)
        }
        Command::Common(CommonCmd::List(l)) => crate::list::list(root, &l).map(|()| 0),
        Command::Common(CommonCmd::Events(e)) => crate::events::events(root, &e).map(|()| 0),
        Command::Common(CommonCmd::Spec(s)) => crate::spec_cmd::spec(&s).map(|()| 0),
        Command::Common(other) => Err(Error::Unsupported(format!("command {other:?} (not in this milestone)"))),
    }
}

/// Runs `f` holding the lock of container `id` (`lock.rs`); the lock file goes when the
/// container's directory did.
fn locked<T>(root: &Path, id: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let dir = ContainerDir::new(root, id)?;
    let lock = IdLock::acquire(root, id)?;
    let out = f();
    release(lock, &dir);
    out
}

/// Releases `lock`, removing its file when the container's directory is gone.
fn release(lock: IdLock, dir: &ContainerDir) {
    if dir.dir.exists() { drop(lock) } else { lock.remove() }
}

/// The options of `create` and `run` beyond the bundle.
#[derive(Debug)]
struct CreateOpts<'a> {
    console_socket: Option<&'a Path>,
    /// `--preserve-fds` and the activation descriptors ([`passed_fds`]), taken before the
    /// id's lock file is opened.
    passed: (Vec<(RawFd, OwnedFd)>, i32),
    no_pivot: bool,
    no_new_keyring: bool,
    /// nook-oci does not wait for the process (`create`, `run --detach`).
    detach: bool,
}

/// The descriptors passed to the container's process from 3 on, as runc: systemd's
/// socket-activation descriptors first (`LISTEN_FDS`, when `LISTEN_PID` is nook-oci's pid;
/// only with `listen`: create and run), then `--preserve-fds N` more (the next N numbers of
/// nook-oci's own). Returns them and the number of activation descriptors.
fn passed_fds(preserve_fds: i32, listen: bool) -> Result<(Vec<(RawFd, OwnedFd)>, i32), Error> {
    if preserve_fds < 0 {
        return Err(Error::Usage(format!("--preserve-fds {preserve_fds}: must not be negative")));
    }
    let ours = std::process::id().to_string();
    let activation = match (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) {
        (Ok(pid), Ok(n)) if listen && pid == ours => {
            n.parse::<i32>().map_err(|_| Error::Usage(format!("LISTEN_FDS={n}: not a number")))?
        }
        _ => 0,
    };
    let mut fds = Vec::new();
    for target in 3..3 + activation + preserve_fds {
        let fd =
            nook_ns::inherited_fd(target).sys("fcntl(F_DUPFD_CLOEXEC) of a preserved fd", format!("fd {target}"))?;
        fds.push((target, fd));
    }
    Ok((fds, activation))
}

/// Makes `dir` with `mode` (and its parents 0711), `Err(Exists)` when it is there.
fn make_container_dir(root: &Path, dir: &ContainerDir) -> Result<(), Error> {
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(root).sys("mkdir", root)?;
    match std::fs::DirBuilder::new().mode(0o711).create(&dir.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Exists(dir.id.clone())),
        Err(e) => Err(e).sys("mkdir", &dir.dir),
    }
}

/// The fifo (0622, as runc's: the container's user opens it) and an `O_PATH` descriptor of
/// its directory for the child.
fn make_fifo(dir: &ContainerDir) -> Result<OwnedFd, Error> {
    use rustix::fs::{FileType, Mode, OFlags, mknodat, open};
    let fifo = dir.fifo();
    mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o622), 0)
        .map_err(std::io::Error::from)
        .sys("mknod", &fifo)?;
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622)).sys("chmod", &fifo)?;
    open(&dir.dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(std::io::Error::from)
        .sys("open", &dir.dir)
}

/// `create`: everything set up, the process waiting at the fifo. Returns the sandbox
/// (dropping it leaves the container alone) and, for a foreground command with a terminal,
/// the terminal's master (see `tty.rs`).
fn create(
    root: &Path,
    id: &str,
    bundle: &Path,
    pid_file: Option<&Path>,
    opts: CreateOpts<'_>,
) -> Result<(Sandbox, ContainerDir, Option<OwnedFd>), Error> {
    let dir = ContainerDir::new(root, id)?;
    let bundle = std::fs::canonicalize(bundle).sys("canonicalize", bundle)?;
    let mut mapped = crate::config::map(crate::config::load(&bundle)?, &bundle)?;
    let process = mapped.spec.process().clone().unwrap_or_default();
    let console = if crate::tty::check(process.terminal().unwrap_or(false), opts.console_socket, opts.detach)? {
        let mut size = process.console_size().map(|b| (b.height() as u16, b.width() as u16));
        if opts.console_socket.is_none() {
            size = crate::tty::initial_size(size);
        }
        let c = crate::tty::Console::new(opts.console_socket)?;
        mapped.builder.terminal(c.child_end, size);
        c.relay
    } else {
        None
    };
    let (fds, activation) = opts.passed;
    if activation > 0 {
        mapped.builder.env("LISTEN_FDS", activation.to_string()).env("LISTEN_PID", "1");
    }
    for (target, fd) in fds {
        mapped.builder.preserve_fd(fd, target);
    }
    mapped.builder.no_pivot(opts.no_pivot);
    if !opts.no_new_keyring {
        // runc's name; `exec` joins it again.
        mapped.builder.session_keyring(format!("_ses.{id}"));
    }
    // What a `create` killed midway left (we hold the id's lock: no create is running).
    if dir.is_partial() {
        dir.reap_partial()?;
    }
    make_container_dir(root, &dir)?;
    // The cgroup is named here (not by the facade at spawn) so it can be recorded first.
    let mut cgroup = mapped.cgroup.clone();
    if cgroup.name.is_empty() {
        cgroup.name = format!("nk-oci-{id}-{}", std::process::id());
        mapped.builder.cgroup(cgroup.clone());
    }
    let made = (|| {
        dir.begin_create(&cgroup)?;
        let gate = make_fifo(&dir)?;
        let sb =
            mapped.builder.spawn_detached(Some((gate, OsString::from(FIFO)))).map_err(|e| exec_error(e, &process))?;
        let written = (|| {
            let record = sb.detached_record()?;
            let annotations = mapped.spec.annotations().clone();
            let oci = new_state(id, sb.id(), &bundle, annotations);
            let hooks = mapped.spec.hooks().clone();
            // The state before the hooks (they may ask for it); the container is partial
            // (`creating.json`) until `create` is done.
            let stored = Stored {
                oci: oci.clone(),
                rootfs: mapped.rootfs.clone(),
                created: rfc3339_now(),
                owner: String::new(),
                record,
                hooks: hooks.clone(),
            };
            dir.save(&stored)?;
            for phase in [Phase::Prestart, Phase::CreateRuntime, Phase::CreateContainer] {
                hooks::run(phase, hooks.as_ref(), &oci, sb.id())?;
            }
            if let Some(p) = pid_file {
                write_pid_file(p, sb.id())?;
            }
            dir.end_create()?;
            crate::log::debug(&format!("created {id}: pid {}, bundle {}", sb.id(), bundle.display()));
            Ok(())
        })();
        match written {
            Ok(()) => Ok(sb),
            Err(e) => {
                // Kill it and tear it down (waiting is the teardown of an attached one).
                let mut sb = sb;
                let _ = sb.kill();
                let _ = sb.wait();
                Err(e)
            }
        }
    })();
    let made = made.and_then(|sb| match &console {
        Some(sock) => match crate::tty::recv_master(sock.as_fd()) {
            Ok(master) => Ok((sb, Some(master))),
            Err(e) => {
                let mut sb = sb;
                let _ = sb.kill();
                let _ = sb.wait();
                Err(e)
            }
        },
        None => Ok((sb, None)),
    });
    match made {
        Ok((sb, master)) => Ok((sb, dir, master)),
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

/// A spawn that failed because the program is not there to exec says so with its name, as
/// runc's `create` does (`exec: "NAME": no such file or directory`); other errors as they are.
fn exec_error(e: nook_sandbox::Error, process: &oci_spec::runtime::Process) -> Error {
    match &e {
        nook_sandbox::Error::Ns(nook_ns::Error::Spawn(s)) if s.stage == nook_ns::Stage::Exec => {
            let name = process.args().as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
            Error::Exec { name, source: std::io::Error::from_raw_os_error(s.errno) }
        }
        _ => e.into(),
    }
}

fn write_pid_file(path: &Path, pid: u32) -> Result<(), Error> {
    // Written whole then renamed, as runc does, so a reader never sees a partial pid.
    let tmp = path.with_extension("nk-tmp");
    std::fs::write(&tmp, pid.to_string()).sys("write", &tmp)?;
    std::fs::rename(&tmp, path).sys("rename", path)
}

fn start(root: &Path, id: &str) -> Result<(), Error> {
    if ContainerDir::new(root, id)?.is_partial() {
        let what = "its create did not finish (delete it)".into();
        return Err(Error::State { id: id.into(), status: "creating".into(), what });
    }
    let c = Container::load(root, id)?;
    match c.status()? {
        Status::Created => {}
        other => {
            return Err(Error::State { id: id.into(), status: other.to_string(), what: "cannot start it".into() });
        }
    }
    let pidfd = c.sandbox.pidfd().ok_or_else(|| Error::NotFound(id.into()))?;
    let started = (|| {
        let hooks = c.stored.hooks.as_ref();
        hooks::run(Phase::StartContainer, hooks, &c.stored.oci, c.stored.record.pid)?;
        open_gate(&c.dir, pidfd, id)?;
        hooks::run(Phase::Poststart, hooks, &c.stored.oci, c.stored.record.pid)
    })();
    if started.is_err() {
        // As runc: a failed start leaves no half-started container running.
        let _ = c.sandbox.signal(libc::SIGKILL);
    }
    started
}

fn open_gate(dir: &ContainerDir, pidfd: std::os::fd::BorrowedFd<'_>, id: &str) -> Result<(), Error> {
    let fifo = dir.fifo();
    let released = open_start_gate(&fifo, pidfd)?;
    std::fs::remove_file(&fifo).sys("unlink", &fifo)?;
    crate::log::debug(&format!("start {id}: released {released}"));
    if !released {
        return Err(Error::State { id: id.into(), status: "stopped".into(), what: "it ended before start".into() });
    }
    Ok(())
}

fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<(), Error> {
    let sig = crate::signal::parse(signal)?;
    let c = Container::load(root, id)?;
    if c.status()? == Status::Stopped {
        return Err(Error::State { id: id.into(), status: "stopped".into(), what: "container not running".into() });
    }
    if all {
        c.sandbox.signal_all(sig)?
    } else {
        c.sandbox.signal(sig)?
    }
    Ok(())
}

fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    // What a `create` killed before writing the state left: nothing runs it any more (we
    // hold the id's lock), so it goes, with or without --force.
    let dir = ContainerDir::new(root, id)?;
    if dir.is_partial() {
        return dir.reap_partial();
    }
    let c = Container::load(root, id)?;
    let status = c.status()?;
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::State {
            id: id.into(),
            status: status.to_string(),
            what: "cannot delete a running container without --force".into(),
        });
    }
    if status == Status::Paused {
        // A frozen process ends on SIGKILL only once thawed (v1 freezer).
        let _ = sandbox_kill_thaw(&c);
    }
    let Container { dir, sandbox, stored } = c;
    sandbox.remove()?;
    crate::log::debug(&format!("delete {id}: was {status}"));
    hooks::run(Phase::Poststop, stored.hooks.as_ref(), &stored.oci, stored.record.pid)?;
    dir.remove()
}

fn sandbox_kill_thaw(c: &Container) -> Result<(), Error> {
    c.sandbox.signal(libc::SIGKILL)?;
    c.sandbox.cgroup()?.thaw().map_err(nook_sandbox::Error::from)?;
    Ok(())
}

fn run(root: &Path, id: &str, bundle: &Path, pid_file: Option<&Path>, opts: CreateOpts<'_>) -> Result<i32, Error> {
    let detach = opts.detach;
    // The id's lock until the process is started (not while it runs: a `delete --force`
    // or `kill` must reach it), and again for the teardown.
    let lock = IdLock::acquire(root, &ContainerDir::new(root, id)?.id)?;
    let (mut sb, dir, master) = match create(root, id, bundle, pid_file, opts) {
        Ok(made) => made,
        Err(e) => {
            release(lock, &ContainerDir::new(root, id)?);
            return Err(e);
        }
    };
    let stored = dir.load()?;
    let hooks = stored.hooks.as_ref();
    let started = (|| {
        hooks::run(Phase::StartContainer, hooks, &stored.oci, sb.id())?;
        open_gate(&dir, sb.pidfd(), id)?;
        hooks::run(Phase::Poststart, hooks, &stored.oci, sb.id())
    })();
    if let Err(e) = started {
        let _ = sb.kill();
        let _ = sb.wait();
        let _ = dir.remove();
        release(lock, &dir);
        return Err(e);
    }
    drop(lock);
    if detach {
        return Ok(0);
    }
    // We are its parent: relay signals to it (as runc), and its terminal while it runs;
    // wait, tear it down (its cgroup), forget it. The signals are blocked before the
    // relay's threads start, so none of those takes one.
    nook_ns::block_signals(&FORWARDED).map_err(nook_sandbox::Error::from)?;
    let relay = master.map(crate::tty::Relay::start).transpose()?;
    supervise(sb.pidfd(), relay.as_ref())?;
    let outcome = sb.wait();
    if let Some(r) = relay {
        r.finish();
    }
    hooks::run(Phase::Poststop, hooks, &stored.oci, stored.record.pid)?;
    // Its state goes unless a `delete` removed it meanwhile (and a new container of the
    // same id may be there: only ours is removed).
    let lock = IdLock::acquire(root, id)?;
    let ours =
        dir.load().is_ok_and(|s| s.record.pid == stored.record.pid && s.record.start_time == stored.record.start_time);
    let removed = if ours { dir.remove() } else { Ok(()) };
    release(lock, &dir);
    let code = exit_code(outcome?);
    removed?;
    Ok(code)
}

/// The signals `run` relays to the container's process (runc relays every signal; these
/// are the ones a supervisor sends: the job-control ones and SIGKILL cannot be caught).
const FORWARDED: [i32; 8] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGPIPE,
];

/// Relays [`FORWARDED`] signals to the process behind `pidfd` until it exits; with a
/// terminal relay, `SIGWINCH` resizes the process's terminal to ours instead (as runc).
fn supervise(pidfd: std::os::fd::BorrowedFd<'_>, relay: Option<&crate::tty::Relay>) -> Result<(), Error> {
    nook_ns::forward_signals_with(pidfd, &FORWARDED, |sig| match relay {
        Some(r) if sig == libc::SIGWINCH => {
            r.resize();
            true
        }
        _ => false,
    })
    .map_err(nook_sandbox::Error::from)?;
    Ok(())
}

/// An outcome as a shell's exit code (128 + signal).
fn exit_code(o: Outcome) -> i32 {
    match o {
        Outcome::Signaled(s) => 128 + s,
        other => other.code().unwrap_or(255),
    }
}

fn exec(root: &Path, e: liboci_cli::Exec) -> Result<i32, Error> {
    if !e.cap.is_empty() || e.no_new_privs || e.process_label.is_some() || e.apparmor.is_some() || e.cgroup.is_some() {
        return Err(Error::Unsupported(
            "exec --cap/--no-new-privs/--process-label/--apparmor/--cgroup (an exec is confined as the container)"
                .into(),
        ));
    }
    let c = Container::load(root, &e.container_id)?;
    if c.status()? == Status::Stopped {
        return Err(Error::State {
            id: e.container_id.clone(),
            status: "stopped".into(),
            what: "cannot exec in a stopped container".into(),
        });
    }
    let mut p = ExecProcess::default();
    let (mut p_terminal, mut p_size) = (e.tty, None);
    match &e.process {
        Some(file) => {
            let text = std::fs::read(file).sys("read", file)?;
            let proc: oci_spec::runtime::Process =
                serde_json::from_slice(&text).map_err(|source| Error::Json { path: file.clone(), source })?;
            p_terminal = proc.terminal().unwrap_or(false);
            p_size = proc.console_size().map(|b| (b.height() as u16, b.width() as u16));
            same_confinement(&proc, &c)?;
            p.args = proc.args().clone().unwrap_or_default();
            p.env = env_map(proc.env().iter().flatten().map(String::as_str))?;
            p.cwd = Some(proc.cwd().clone());
            let u = proc.user();
            p.user = Some(user(u.uid(), u.gid(), u.additional_gids().clone().unwrap_or_default()));
        }
        None => {
            p.args = e.command.clone();
            if !e.env.is_empty() {
                let mut env: BTreeMap<String, String> =
                    BTreeMap::from([("PATH".into(), nook_sandbox::DEFAULT_PATH.into())]);
                env.extend(c.stored.record.spec.env.clone());
                env.extend(e.env.iter().cloned());
                p.env = env;
            }
            p.cwd = e.cwd.clone();
            if let Some((uid, gid)) = e.user {
                p.user = Some(user(uid, gid.unwrap_or(0), e.additional_gids.clone()));
            }
        }
    }
    if p.args.is_empty() {
        return Err(Error::Usage("exec: no command (give ARGS or --process)".into()));
    }
    // runc: `--tty` (or the process file's `terminal`) with a console socket, or relayed
    // by a foreground exec.
    let mut io = ExecIo::default();
    let console = if crate::tty::check(p_terminal, e.console_socket.as_deref(), e.detach)? {
        let con = crate::tty::Console::new(e.console_socket.as_deref())?;
        if con.relay.is_some() {
            p_size = crate::tty::initial_size(p_size);
        }
        io.terminal = Some((con.child_end, p_size));
        con.relay
    } else {
        None
    };
    io.preserved = passed_fds(e.preserve_fds, false)?.0;
    if !e.detach {
        // Before the relay's threads start (see `run`).
        nook_ns::block_signals(&FORWARDED).map_err(nook_sandbox::Error::from)?;
    }
    let mut child = c.sandbox.exec_with(&p, io)?;
    let relay = match &console {
        Some(sock) => {
            let started = crate::tty::recv_master(sock.as_fd()).and_then(crate::tty::Relay::start);
            if started.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(started?)
        }
        None => None,
    };
    if let Some(path) = &e.pid_file {
        write_pid_file(path, child.id())?;
    }
    if e.detach {
        return Ok(0);
    }
    // Signals relayed as by `run` (runc's exec does the same).
    supervise(child.pidfd(), relay.as_ref())?;
    let status = child.wait().sys("waitid", format!("/proc/{}", child.id()))?;
    if let Some(r) = relay {
        r.finish();
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// An exec is confined as the container's process (capabilities, no_new_privs, rlimits,
/// seccomp, ...): a process file that asks for other settings is refused, naming the field.
fn same_confinement(exec: &oci_spec::runtime::Process, c: &Container) -> Result<(), Error> {
    let config = crate::config::load(c.stored.oci.bundle())?;
    let Some(first) = config.process() else { return Ok(()) };
    let fields: [(&str, serde_json::Value, serde_json::Value); 9] = [
        ("capabilities", caps_json(exec.capabilities()), caps_json(first.capabilities())),
        ("noNewPrivileges", json(exec.no_new_privileges()), json(first.no_new_privileges())),
        ("rlimits", json(exec.rlimits()), json(first.rlimits())),
        ("apparmorProfile", json(exec.apparmor_profile()), json(first.apparmor_profile())),
        ("selinuxLabel", json(exec.selinux_label()), json(first.selinux_label())),
        ("oomScoreAdj", json(exec.oom_score_adj()), json(first.oom_score_adj())),
        ("ioPriority", json(exec.io_priority()), json(first.io_priority())),
        ("scheduler", json(exec.scheduler()), json(first.scheduler())),
        ("user.umask", json(exec.user().umask()), json(first.user().umask())),
    ];
    for (field, asked, has) in fields {
        if !asked.is_null() && asked != has {
            return Err(crate::error::refuse(
                format!("exec process.{field}"),
                "differs from the container's (an exec is confined as the container's process)",
            ));
        }
    }
    Ok(())
}

/// Capability sets as JSON with each set sorted: oci-spec keeps them in `HashSet`s, whose
/// order differs between two parses of the same list.
fn caps_json(caps: &Option<oci_spec::runtime::LinuxCapabilities>) -> serde_json::Value {
    let mut v = json(caps);
    if let Some(sets) = v.as_object_mut() {
        for set in sets.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    v
}

/// A field as JSON, for comparing.
fn json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn user(uid: u32, gid: u32, groups: Vec<u32>) -> User {
    User { uid, gid, groups }
}

fn env_map<'a>(vars: impl Iterator<Item = &'a str>) -> Result<BTreeMap<String, String>, Error> {
    vars.map(|kv| {
        kv.split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .ok_or_else(|| crate::error::refuse("process.env", format!("{kv:?} is not KEY=value")))
    })
    .collect()
}
