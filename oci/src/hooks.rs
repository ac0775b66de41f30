//! The OCI hooks (`config.json` `hooks`): each an exec of `path` with `args` (its
//! `args[0]` as argv\[0\]) and `env`, the container's state JSON on stdin, killed after
//! `timeout` seconds. A failing hook fails the command (the container is torn down), except
//! `poststop`, whose failures are logged and the rest goes on — as the runtime spec says.
//!
//! When they run, with which state `status`:
//! - `prestart`, `createRuntime` (runtime namespace) and `createContainer` (the container's
//!   namespaces) during `create`, status `creating`, once the container's process has done
//!   its setup and waits at the exec fifo;
//! - `startContainer` (the container's namespaces) during `start`, status `created`, just
//!   before the fifo releases the process to exec;
//! - `poststart` (runtime namespace) after that, status `running`;
//! - `poststop` (runtime namespace) during `delete`, status `stopped`.
//!
//! Deviations from runc 1.1: runc 1.1 runs `poststart` at the end of `create` (status
//! `created`, a known bug fixed in runc 1.2); nook-oci runs it where the runtime spec puts it,
//! after the process was released, before `start` returns. And nook's container process does its whole setup, `pivot_root`
//! included, before it waits at the fifo, and then runs nothing of its own; so
//! `createContainer` and `startContainer` are run by nook-oci itself, joining the
//! container's mount, uts, ipc, network, pid and cgroup namespaces (a helper thread,
//! `nook_ns::run_in`). Their `path` therefore resolves in the container's root, also for
//! `createContainer` (runc runs it before `pivot_root`, where the path resolves in the
//! runtime's view).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nook_ns::{Namespace, NsFd};
use oci_spec::runtime::{ContainerState, Hook, Hooks, State};

use crate::error::{Error, SysContext};

/// Which hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    fn status(self) -> ContainerState {
        match self {
            Phase::Prestart | Phase::CreateRuntime | Phase::CreateContainer => ContainerState::Creating,
            Phase::StartContainer => ContainerState::Created,
            Phase::Poststart => ContainerState::Running,
            Phase::Poststop => ContainerState::Stopped,
        }
    }

    fn in_container(self) -> bool {
        matches!(self, Phase::CreateContainer | Phase::StartContainer)
    }

    fn list(self, h: &Hooks) -> Vec<Hook> {
        #[allow(deprecated)]
        let l = match self {
            Phase::Prestart => h.prestart(),
            Phase::CreateRuntime => h.create_runtime(),
            Phase::CreateContainer => h.create_container(),
            Phase::StartContainer => h.start_container(),
            Phase::Poststart => h.poststart(),
            Phase::Poststop => h.poststop(),
        };
        l.clone().unwrap_or_default()
    }
}

/// Runs the hooks of `phase` (none when `hooks` is `None`) with `state` (its status set
/// for the phase). `pid`: the container's process, whose namespaces the in-container
/// hooks join. `poststop` failures are logged, not returned.
pub(crate) fn run(phase: Phase, hooks: Option<&Hooks>, state: &State, pid: u32) -> Result<(), Error> {
    let Some(hooks) = hooks else { return Ok(()) };
    let list = phase.list(hooks);
    if list.is_empty() {
        return Ok(());
    }
    let mut state = state.clone();
    state.set_status(phase.status());
    // As runc: the in-container hooks get the pid as the container sees it (its PID 1), a
    // stopped container's state has none.
    if phase.in_container() {
        state.set_pid(Some(1));
    } else if phase == Phase::Poststop {
        state.set_pid(None);
    }
    let input = serde_json::to_vec(&state).map_err(|source| Error::Json { path: "state".into(), source })?;
    for hook in &list {
        let done = if phase.in_container() { in_container(hook, &input, pid) } else { exec(hook, &input) };
        crate::log::debug(&format!("hook {} {}: {:?}", phase.name(), hook.path().display(), done.as_ref().err()));
        match done {
            Ok(()) => {}
            Err(e) if phase == Phase::Poststop => crate::log::warn(&format!("poststop hook: {e}")),
            Err(e) => return Err(Error::Usage(format!("{} hook {}: {e}", phase.name(), hook.path().display()))),
        }
    }
    Ok(())
}

/// Runs one hook in the container's namespaces (a helper thread that joined them; the
/// hook, its child, is in them too — the pid namespace applies to children).
fn in_container(hook: &Hook, input: &[u8], pid: u32) -> Result<(), Error> {
    let kinds = [Namespace::Mount, Namespace::Uts, Namespace::Ipc, Namespace::Net, Namespace::Pid, Namespace::Cgroup];
    let fds = kinds
        .iter()
        .map(|&k| NsFd::of_pid(pid, k))
        .collect::<Result<Vec<NsFd>, nook_ns::Error>>()
        .map_err(nook_sandbox::Error::from)?;
    let targets: Vec<&NsFd> = fds.iter().collect();
    nook_ns::run_in(&targets, || exec(hook, input)).map_err(nook_sandbox::Error::from)?
}

/// Execs one hook, feeds it the state, waits (killing it after its timeout).
fn exec(hook: &Hook, input: &[u8]) -> Result<(), Error> {
    let path = hook.path();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some((first, rest)) = args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().sys("exec", path)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(input);
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait().sys("waitid", path)? {
            let out = child.wait_with_output().sys("read", path)?;
            if status.success() {
                return Ok(());
            }
            return Err(Error::Usage(format!(
                "{status}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Usage(format!("timed out after {}s", hook.timeout().unwrap_or(0))));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
