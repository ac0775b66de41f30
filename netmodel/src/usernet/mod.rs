//! User-mode networking for sandboxes of unprivileged callers: outbound connectivity and
//! published ports through `pasta` (Debian package `passt`) or `slirp4netns`, as rootless
//! Podman and Docker do.
//!
//! An unprivileged caller cannot create a veth pair into the host's namespace, a bridge, or
//! NAT rules there. A user-mode network stack can: a helper process, running as the caller
//! in the caller's network namespace, joins the sandbox's user and network namespaces just
//! long enough to create a tap device there (`/dev/net/tun`), configures it (address,
//! default route, MTU 65520), and from then on translates the sandbox's packets into
//! ordinary socket calls of its own (and host ports it listens on into connections into the
//! sandbox). Connections the sandbox makes come from the caller's own network namespace.
//!
//! Running these helpers is a deliberate exception to "no shelling out": they *are* the
//! network stack (a TCP/IP implementation in user space), not a configuration tool whose
//! job a syscall could do; Docker and Podman run the same programs.
//!
//! | | `pasta` | `slirp4netns` |
//! |---|---|---|
//! | sandbox address | the host's (copied from its default-route interface) | `10.0.2.100/24` |
//! | gateway | the host's gateway; connections to it reach the host's loopback | `10.0.2.2`, which reaches the host's `127.0.0.1` |
//! | needs on the host | a default route (pasta copies addresses and routes) | nothing |
//! | published ports | `-t`/`-u` at start | `add_hostfwd` on its API socket, right after start |
//!
//! [`UserNetSpec::host_loopback`] `false` closes the gateway-to-host-loopback path (pasta
//! `--no-map-gw`, slirp4netns `--disable-host-loopback`).
//!
//! The helper is a child of the caller ([`UserNet`] owns it through a pidfd): it is killed
//! with SIGKILL and reaped by [`UserNet::remove`] or on drop, and it gets SIGKILL when the
//! caller's process dies (parent-death signal); slirp4netns also exits when its exit pipe,
//! held by us, closes. The helper runs with the caller's environment and identity; its
//! stdout goes to `/dev/null`, its stderr to an anonymous file read back only if it fails.

mod error;
mod pasta;
mod slirp;

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::SysContext;
use crate::firewall::PortMapping;

pub use error::UserNetError;

/// How long a helper may take to configure the sandbox's network before it is killed and
/// [`UserNetError::HelperFailed`] is returned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which user-mode network stack to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserNetBackend {
    /// `pasta` if found, else `slirp4netns` (Podman 5's preference).
    #[default]
    Auto,
    /// `pasta` only.
    Pasta,
    /// `slirp4netns` only.
    Slirp4netns,
}

impl UserNetBackend {
    /// The program names looked for, in order.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            UserNetBackend::Auto => &["pasta", "slirp4netns"],
            UserNetBackend::Pasta => &["pasta"],
            UserNetBackend::Slirp4netns => &["slirp4netns"],
        }
    }
}

/// What a sandbox's user-mode network looks like (pure data).
///
/// ```
/// use nook_netmodel::firewall::PortMapping;
/// use nook_netmodel::usernet::{UserNetBackend, UserNetSpec};
///
/// let mut spec = UserNetSpec::new();
/// spec.backend(UserNetBackend::Slirp4netns).port(PortMapping::tcp(8080, 80));
/// spec.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct UserNetSpec {
    /// Which helper.
    pub backend: UserNetBackend,
    /// The helper's path; `None`: searched on `PATH` by name ([`UserNetBackend::programs`]).
    /// With [`UserNetBackend::Auto`] an explicit path is taken as pasta when its file name
    /// starts with `pasta`, else as slirp4netns.
    pub program: Option<PathBuf>,
    /// Host ports forwarded into the sandbox (`host_ip` `None`: every address of the
    /// caller's namespace).
    pub ports: Vec<PortMapping>,
    /// Whether connections to the gateway reach the caller's loopback (`127.0.0.1`), as
    /// both helpers do by default. `false` keeps the sandbox off the host's local services.
    pub host_loopback: bool,
}

impl Default for UserNetSpec {
    fn default() -> UserNetSpec {
        UserNetSpec { backend: UserNetBackend::Auto, program: None, ports: Vec::new(), host_loopback: true }
    }
}

impl UserNetSpec {
    /// [`UserNetBackend::Auto`], found on `PATH`, no ports, host loopback reachable.
    pub fn new() -> UserNetSpec {
        UserNetSpec::default()
    }

    /// Sets the backend.
    pub fn backend(&mut self, backend: UserNetBackend) -> &mut Self {
        self.backend = backend;
        self
    }

    /// Uses this program instead of searching `PATH`.
    pub fn program(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.program = Some(path.into());
        self
    }

    /// Publishes a port.
    pub fn port(&mut self, port: PortMapping) -> &mut Self {
        self.ports.push(port);
        self
    }

    /// Sets whether the gateway reaches the host's loopback.
    pub fn host_loopback(&mut self, allow: bool) -> &mut Self {
        self.host_loopback = allow;
        self
    }

    /// Pure checks: each port mapping on its own.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        self.ports.iter().try_for_each(PortMapping::validate)
    }

    /// Finds the helper to run: the explicit program, else the first of the backend's
    /// programs on `PATH` (`search`). `None` when none is there.
    fn locate(&self, search: &str) -> Result<(Helper, PathBuf), UserNetError> {
        let kind_of = |path: &Path| match self.backend {
            UserNetBackend::Pasta => Helper::Pasta,
            UserNetBackend::Slirp4netns => Helper::Slirp4netns,
            UserNetBackend::Auto => {
                let pasta = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pasta"));
                if pasta { Helper::Pasta } else { Helper::Slirp4netns }
            }
        };
        let not_found = |path: Option<PathBuf>| UserNetError::NotFound {
            wanted: self.backend.programs().to_vec(),
            path,
            search: search.to_owned(),
        };
        if let Some(p) = &self.program {
            return if executable(p) { Ok((kind_of(p), p.clone())) } else { Err(not_found(Some(p.clone()))) };
        }
        for name in self.backend.programs() {
            let found =
                search.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).find(|p| executable(p));
            if let Some(p) = found {
                return Ok((kind_of(&p), p));
            }
        }
        Err(not_found(None))
    }
}

/// A regular file the caller may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// The helper programs nook knows how to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Helper {
    /// `pasta` (package `passt`).
    Pasta,
    /// `slirp4netns`.
    Slirp4netns,
}

impl Helper {
    /// The program's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Helper::Pasta => "pasta",
            Helper::Slirp4netns => "slirp4netns",
        }
    }
}

/// A running user-mode network stack for one sandbox's network namespace: the helper
/// process (a child of the caller, held through its pidfd). [`UserNet::remove`] or drop
/// kills and reaps it.
#[derive(Debug)]
pub struct UserNet {
    child: Option<nook_ns::Child>,
    helper: Helper,
    program: PathBuf,
    /// Held open for slirp4netns' `--exit-fd`: it exits when this closes.
    _exit: Option<OwnedFd>,
}

impl UserNet {
    /// Starts the helper for the network namespace of process `pid` (a sandbox's init,
    /// typically still paused before its program runs) and returns once the sandbox's
    /// interface is configured and the ports are published. The helper joins `pid`'s user
    /// namespace too when it is not the caller's (a rootless sandbox).
    ///
    /// Errors: [`UserNetError::NotFound`] (naming what is missing) when no helper is
    /// installed, [`UserNetError::TunUnavailable`], [`UserNetError::HelperFailed`] with its
    /// stderr, [`UserNetError::PortRefused`]. On error nothing is left running.
    pub fn start(spec: &UserNetSpec, pid: u32) -> Result<UserNet, UserNetError> {
        spec.validate()?;
        let search = std::env::var("PATH").unwrap_or_default();
        let (helper, program) = spec.locate(&search)?;
        if let Err(e) = rustix::fs::access("/dev/net/tun", rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK) {
            return Err(UserNetError::TunUnavailable { helper: helper.name(), source: e.into() });
        }
        let own_userns = nook_ns::NsFd::current(nook_ns::Namespace::User)?.id()?;
        let target_userns = nook_ns::NsFd::of_pid(pid, nook_ns::Namespace::User)?.id()?;
        let target = Target { pid, join_userns: own_userns != target_userns };
        match helper {
            Helper::Pasta => pasta::start(spec, &program, target),
            Helper::Slirp4netns => slirp::start(spec, &program, target),
        }
    }

    /// Which helper runs.
    pub fn helper(&self) -> Helper {
        self.helper
    }

    /// The helper's program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The helper's pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(nook_ns::Child::id)
    }

    /// Kills the helper (SIGKILL through its pidfd) and reaps it. The sandbox loses its
    /// connectivity; its namespace is not touched.
    pub fn remove(mut self) -> Result<(), UserNetError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), UserNetError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        // ESRCH: it already exited (the wait reaps it).
        let _ = child.kill();
        child.wait().sys("waitid")?;
        Ok(())
    }
}

impl Drop for UserNet {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The sandbox the helper serves.
#[derive(Clone, Copy, Debug)]
struct Target {
    pid: u32,
    /// Whether its user namespace is not the caller's (a rootless sandbox).
    join_userns: bool,
}

impl Target {
    fn ns_path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.pid)
    }
}

/// A helper being started: the child, its stderr file, the program.
struct Starting {
    child: nook_ns::Child,
    stderr: std::fs::File,
    program: PathBuf,
}

impl Starting {
    /// Spawns `cmd` (stdout to `/dev/null`, stderr to an anonymous file, SIGKILL when the
    /// caller's process dies).
    fn spawn(mut cmd: nook_ns::Command, program: &Path) -> Result<Starting, UserNetError> {
        let memfd =
            rustix::fs::memfd_create("nk-usernet-stderr", rustix::fs::MemfdFlags::CLOEXEC).sys("memfd_create")?;
        let stderr = std::fs::File::from(memfd.try_clone().sys("dup")?);
        cmd.stdin(nook_ns::Stdio::null())
            .stdout(nook_ns::Stdio::null())
            .stderr(nook_ns::Stdio::Fd(memfd))
            .kill_with_parent_process(libc::SIGKILL);
        let mut child = cmd.spawn()?;
        // Until it is a `UserNet`: any early return kills and reaps it.
        child.kill_on_drop(true);
        Ok(Starting { child, stderr, program: program.to_owned() })
    }

    /// Waits until `ready` returns true (polled, with `fd` readable as a hint when given),
    /// the helper exits (an error with its stderr), or [`READY_TIMEOUT`] (killed, an error).
    fn wait_ready(
        &mut self,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
        mut ready: impl FnMut() -> Result<bool, UserNetError>,
    ) -> Result<(), UserNetError> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(self.failed(None));
            }
            // Readiness is polled every 5 ms when no descriptor announces it.
            let tick = Timespec { tv_sec: 0, tv_nsec: if fd.is_some() { 100_000_000 } else { 5_000_000 } };
            let pidfd = self.child.pidfd();
            let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
            if let Some(fd) = &fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match poll(&mut fds, Some(&tick)) {
                Err(rustix::io::Errno::INTR) => {}
                polled => {
                    polled.sys("poll")?;
                }
            }
            if fds[0].revents().contains(PollFlags::IN) {
                // Exited: one more look (it may have got ready and then died), then fail.
                let status = self.child.wait().sys("waitid")?;
                return Err(self.failed(Some(status)));
            }
        }
    }

    /// [`UserNetError::HelperFailed`] with the helper's stderr.
    fn failed(&mut self, status: Option<std::process::ExitStatus>) -> UserNetError {
        use std::io::Seek;
        let mut text = String::new();
        let _ = self.stderr.seek(std::io::SeekFrom::Start(0));
        let _ = self.stderr.by_ref().take(16 << 10).read_to_string(&mut text);
        // pasta logs to syslog as well and says so on stderr when there is none.
        let stderr: Vec<&str> = text.lines().filter(|l| !l.starts_with("Failed to send") && !l.is_empty()).collect();
        UserNetError::HelperFailed { program: self.program.clone(), status, stderr: stderr.join("\n") }
    }

    /// The running helper's handle.
    fn into_usernet(self, helper: Helper, exit: Option<OwnedFd>) -> UserNet {
        UserNet { child: Some(self.child), helper, program: self.program, _exit: exit }
    }

    /// Kills and reaps the helper after a failure past readiness, returning `e`.
    fn abort(mut self, e: UserNetError) -> UserNetError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        e
    }
}

/// Whether `fd` (a pipe's read end) is readable now or at EOF.
fn pipe_ready(fd: &OwnedFd) -> Result<bool, UserNetError> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let fd = fd.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    match poll(&mut fds, Some(&zero)) {
        Err(rustix::io::Errno::INTR) => Ok(false),
        polled => Ok(polled.sys("poll")? > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_searches_path_in_order_and_names_what_is_missing() {
        let mut spec = UserNetSpec::new();
        match spec.locate("") {
            Err(UserNetError::NotFound { wanted, path: None, .. }) => assert_eq!(wanted, ["pasta", "slirp4netns"]),
            other => panic!("{other:?}"),
        }
        spec.program("/nk-nonexistent/slirp4netns");
        let e = spec.locate("/usr/bin").unwrap_err();
        assert!(
            matches!(&e, UserNetError::NotFound { path: Some(p), .. } if p == Path::new("/nk-nonexistent/slirp4netns"))
        );
        assert!(e.to_string().contains("/nk-nonexistent/slirp4netns"), "{e}");
        // A directory of the caller's own, with a fake executable named slirp4netns.
        let dir = std::env::temp_dir().join(format!("nk-usernet-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("slirp4netns");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let search = format!("/nk-nonexistent:{}", dir.display());
        let found = UserNetSpec::new().locate(&search);
        let pasta_only = UserNetSpec::new().backend(UserNetBackend::Pasta).locate(&search).map(|_| ());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.unwrap(), (Helper::Slirp4netns, fake));
        assert!(matches!(pasta_only, Err(UserNetError::NotFound { wanted, .. }) if wanted == ["pasta"]));
    }

    #[test]
    fn spec_round_trips_and_validates_ports() {
        let mut spec = UserNetSpec::new();
        spec.backend(UserNetBackend::Pasta).port(PortMapping::tcp(8080, 80)).host_loopback(false);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<UserNetSpec>(&json).unwrap(), spec);
        assert_eq!(serde_json::from_str::<UserNetSpec>("{}").unwrap(), UserNetSpec::new());
        spec.port(PortMapping::tcp(0, 80));
        assert!(spec.validate().is_err());
    }
}
