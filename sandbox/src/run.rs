//! The builder ([`SandboxBuilder`]), the running sandbox ([`Sandbox`]) and why a run ended
//! ([`Outcome`]).
//!
//! Setup order: validate the whole spec and build the child's plan (pure) → the owner
//! record (`owner.rs`; each object below is recorded before it is created) → an image
//! root's container layer → create the cgroup (limits applied) → clone the child into its namespaces, paused → put it in the
//! cgroup, bring `lo` up in a new network namespace, connect it to its networks ([`crate::net`]) → release it: the child runs the mount
//! plan, `pivot_root`s, and execs `nk-init` as PID 1, which starts the program. Teardown
//! after the wait, in reverse: the pid namespace dies with its init (the kernel kills
//! everything in it and drops its mounts with the mount namespace), then the cgroup is
//! removed. A failure undoes what was done and reports both ([`Error::Cleanup`]).

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, CgroupSpec, Controller, Hierarchies};
use nook_ns::{IdMap, Namespace, NamespaceSet, Stdio};

use nook_netmodel::EndpointOptions;
use nook_netmodel::files::DnsConfig;

use crate::child::{join, reader};
use crate::error::{Error, Result, ValidationError};
use crate::hardening::apply::Confinement;
use crate::image_run::{self, ImageRun};
use crate::net::{self, NetworkConfig};
use crate::owner::Recorder;
use crate::plan;
use crate::security::{LandlockSpec, Rlimit, SeccompMode, Security};
use crate::spec::{Mount, NetworkMode, Rootfs, SandboxSpec, StdioMode, User};

/// Why a sandbox's run ended — one value.
///
/// PID 1 of the sandbox is nook's init, which exits with the program's status, or 128 + the
/// signal that killed the program (as a shell reports it, and Docker). So a program killed
/// by a signal shows as [`Outcome::Exited`] with `128 + signal`; [`Outcome::Signaled`]
/// means the init itself was killed (by the caller, or the sandbox was torn down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The program exited with this code (128 + n: killed by signal n).
    Exited(i32),
    /// The sandbox's init was killed by this signal.
    Signaled(i32),
    /// The kernel's OOM killer killed a process of the sandbox's memory cgroup (from the
    /// cgroup's own counter, so it is reported even when the program survived a killed
    /// child), and the program ended with this status.
    OomKilled {
        /// What the init reported (usually `Exited(137)`).
        status: ExitStatus,
    },
    /// The caller's timeout ([`SandboxBuilder::timeout`], [`Sandbox::wait_timeout`]) expired
    /// and the sandbox was killed.
    TimedOut,
}

impl Outcome {
    /// Exited with 0.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            Outcome::Exited(c) => Some(*c),
            Outcome::OomKilled { status } => status.code(),
            _ => None,
        }
    }
}

/// What [`SandboxBuilder::output`] collected.
#[derive(Debug)]
pub struct SandboxOutput {
    /// Why it ended.
    pub outcome: Outcome,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

/// Builds a [`SandboxSpec`] and runs it, shaped like `std::process::Command`: `&mut self`
/// setters that never fail, and terminal [`spawn`](SandboxBuilder::spawn),
/// [`status`](SandboxBuilder::status) and [`output`](SandboxBuilder::output). Every check
/// happens in those, before anything is created.
///
/// ```no_run
/// use nook_sandbox::Sandbox;
///
/// let out = Sandbox::builder()
///     .hostname("box")
///     .memory_max(256 << 20)
///     .pids_max(64)
///     .command("sh")
///     .args(["-c", "hostname; echo $$; ls /"])
///     .output()?;
/// assert!(out.outcome.success());
/// # Ok::<(), nook_sandbox::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct SandboxBuilder {
    pub(crate) spec: SandboxSpec,
    program: Option<String>,
    args: Vec<String>,
    stdio: [Option<Stdio>; 3],
    /// [`SandboxBuilder::terminal`] (not part of the spec: a descriptor).
    terminal: Option<(OwnedFd, Option<(u16, u16)>)>,
    /// [`SandboxBuilder::preserve_fd`] (not part of the spec).
    preserved: Vec<(RawFd, OwnedFd)>,
    /// Handles of the networks [`NetworkMode::Networks`] names (not part of the spec).
    networks: Vec<nook_netmodel::Network>,
    /// The other sandbox of [`NetworkMode::Container`] (not part of the spec).
    container: Option<net::ContainerNet>,
    /// Where the owner record goes (`None`: [`crate::StateDir::default_root`]).
    state_dir: Option<PathBuf>,
    /// Set by [`SandboxBuilder::spawn_detached`] for its spawn only.
    pub(crate) detach: Option<crate::detached::Detach>,
}

/// A unique cgroup name per sandbox of this process.
/// The hierarchies of [`SandboxSpec::cgroup_view`]: where the cgroup `spec` (named `id`
/// when it names none) will be, as [`Cgroup::create_in`] places it; with v1 hierarchies (a
/// hybrid host too) those, named as their mount points, else the v2 directory alone.
fn cgroup_view(spec: Option<&CgroupSpec>, id: &str) -> Result<Vec<plan::CgroupView>> {
    let Some(spec) = spec else { return Err(ValidationError::CgroupViewWithoutCgroup.into()) };
    let mut cg = spec.clone();
    if cg.name.is_empty() {
        cg.name = id.to_owned();
    }
    let dirs = Cgroup::planned_dirs(&Hierarchies::discover()?, &cg)?;
    let v1: Vec<plan::CgroupView> = dirs
        .iter()
        .filter(|(_, v, _)| *v == nook_cgroup::Version::V1)
        .filter_map(|(mount, _, dir)| Some((mount.file_name()?.to_string_lossy().into_owned(), dir.clone())))
        .collect();
    if !v1.is_empty() {
        return Ok(v1);
    }
    Ok(dirs.into_iter().take(1).map(|(_, _, dir)| (String::new(), dir)).collect())
}

fn unique_cgroup_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("nk-sandbox-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl SandboxBuilder {
    /// A builder with safe defaults: the host root read-only with a tmpfs upper, every
    /// namespace but user and time (plus user when not root), no network, a clean
    /// environment, no limits.
    pub fn new() -> Self {
        SandboxBuilder::default()
    }

    /// A builder for an existing spec (its `args` are the command).
    pub fn from_spec(spec: SandboxSpec) -> Self {
        let mut args = spec.args.clone().into_iter();
        let program = args.next();
        SandboxBuilder {
            program,
            args: args.collect(),
            spec,
            stdio: [None, None, None],
            terminal: None,
            preserved: Vec::new(),
            networks: Vec::new(),
            container: None,
            state_dir: None,
            detach: None,
        }
    }

    /// The spec as built so far (with the command).
    pub fn to_spec(&self) -> SandboxSpec {
        let mut spec = self.spec.clone();
        spec.args = self.program.iter().chain(self.args.iter()).cloned().collect();
        spec
    }

    /// The program to run (searched in the sandbox's `PATH` unless it has a `/`).
    pub fn command(&mut self, program: impl Into<String>) -> &mut Self {
        self.program = Some(program.into());
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (the sandbox starts with a clean environment).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.spec.env.insert(key.into(), value.into());
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.spec.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The working directory inside.
    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.spec.cwd = dir.into();
        self
    }

    /// The namespaces to create instead of the defaults.
    pub fn namespaces(&mut self, set: NamespaceSet) -> &mut Self {
        self.spec.namespaces = Some(set);
        self
    }

    /// Joins the existing namespace of `kind` at `path` instead of creating one (see
    /// [`SandboxSpec::join_namespaces`]); leave `kind` out of [`SandboxBuilder::namespaces`].
    pub fn join_namespace(&mut self, kind: nook_ns::Namespace, path: impl Into<PathBuf>) -> &mut Self {
        self.spec.join_namespaces.push(crate::spec::JoinNamespace { kind, path: path.into() });
        self
    }

    /// The root filesystem.
    pub fn rootfs(&mut self, rootfs: Rootfs) -> &mut Self {
        self.spec.rootfs = rootfs;
        self
    }

    /// The host name inside (also written to `/etc/hostname` and `/etc/hosts`).
    pub fn hostname(&mut self, name: impl Into<String>) -> &mut Self {
        self.spec.hostname = Some(name.into());
        self
    }

    /// The NIS domain name inside.
    pub fn domainname(&mut self, name: impl Into<String>) -> &mut Self {
        self.spec.domainname = Some(name.into());
        self
    }

    /// Adds a mount.
    /// Makes a device node in the sandbox's `/dev` (see [`SandboxSpec::devices`]).
    pub fn device(&mut self, node: crate::DeviceNode) -> &mut Self {
        self.spec.devices.push(node);
        self
    }

    /// Mounts the sandbox's own view of its cgroup on `/sys/fs/cgroup`, read-only (see
    /// [`SandboxSpec::cgroup_view`]).
    pub fn cgroup_view(&mut self, on: bool) -> &mut Self {
        self.spec.cgroup_view = on;
        self
    }

    /// An extra mount.
    pub fn mount(&mut self, mount: Mount) -> &mut Self {
        self.spec.mounts.push(mount);
        self
    }

    /// The cgroup (its limits; an empty name gets a unique one).
    pub fn cgroup(&mut self, spec: CgroupSpec) -> &mut Self {
        self.spec.cgroup = Some(spec);
        self
    }

    fn resources(&mut self) -> &mut nook_cgroup::Resources {
        &mut self.spec.cgroup.get_or_insert_with(|| CgroupSpec::new("")).resources
    }

    /// Memory limit in bytes (`memory.max`; OOM-kill above it).
    pub fn memory_max(&mut self, bytes: u64) -> &mut Self {
        let mut m = self.resources().memory.clone().unwrap_or_default();
        m.max = Some(bytes);
        // No swap on top of the limit, so the limit is what the sandbox can use.
        m.swap = Some(0);
        self.resources().memory = Some(m);
        self
    }

    /// Process limit (`pids.max`).
    pub fn pids_max(&mut self, max: u64) -> &mut Self {
        let mut p = self.resources().pids.unwrap_or_default();
        p.max = Some(max);
        self.resources().pids = Some(p);
        self
    }

    /// CPU bandwidth: `quota_us` of CPU time per `period_us` (e.g. 50_000 / 100_000 = half
    /// a CPU).
    pub fn cpu_max(&mut self, quota_us: u64, period_us: u64) -> &mut Self {
        let mut c = self.resources().cpu.clone().unwrap_or_default();
        c.quota_us = Some(quota_us);
        c.period_us = Some(period_us);
        self.resources().cpu = Some(c);
        self
    }

    /// Run without limits when no cgroup can be created for them (see
    /// [`SandboxSpec::best_effort_limits`]).
    pub fn best_effort_limits(&mut self, yes: bool) -> &mut Self {
        self.spec.best_effort_limits = yes;
        self
    }

    /// The network.
    pub fn network(&mut self, mode: NetworkMode) -> &mut Self {
        self.spec.network = mode;
        self
    }

    /// Connects the sandbox to `network` with `options` (static address, published ports,
    /// aliases, ...): switches to [`NetworkMode::Networks`] and adds it; call again for more
    /// networks (`eth0`, `eth1`, ...). The builder keeps a handle on the network.
    pub fn connect(&mut self, network: &nook_netmodel::Network, options: EndpointOptions) -> &mut Self {
        if !matches!(self.spec.network, NetworkMode::Networks(_)) {
            self.spec.network = NetworkMode::Networks(NetworkConfig::new());
        }
        if let NetworkMode::Networks(config) = &mut self.spec.network {
            config.attach(network.name(), options);
        }
        self.use_network(network)
    }

    /// `--network=container:OTHER`: the sandbox shares `other`'s network namespace (its
    /// interfaces, addresses, published ports) and, when `other` is on networks, its
    /// `/etc/hosts` and `/etc/resolv.conf` ([`NetworkMode::Container`]). The namespace is
    /// opened now: it stays usable for this builder even if `other` is removed meanwhile.
    pub fn network_container(&mut self, other: &Sandbox) -> &mut Self {
        self.spec.network = NetworkMode::Container { pid: other.id() };
        self.container = Some(net::ContainerNet::of(other));
        self
    }

    /// Gives the builder a network handle without connecting to it: a spec built elsewhere
    /// (deserialized, [`SandboxBuilder::from_spec`]) names its networks, and they are found
    /// among these handles.
    pub fn use_network(&mut self, network: &nook_netmodel::Network) -> &mut Self {
        if !self.networks.iter().any(|n| n.name() == network.name()) {
            self.networks.push(network.clone());
        }
        self
    }

    /// The resolver configuration of a sandbox on networks (default: the host's, without
    /// loopback resolvers). Switches to [`NetworkMode::Networks`] if needed.
    pub fn dns(&mut self, dns: DnsConfig) -> &mut Self {
        if !matches!(self.spec.network, NetworkMode::Networks(_)) {
            self.spec.network = NetworkMode::Networks(NetworkConfig::new());
        }
        if let NetworkMode::Networks(config) = &mut self.spec.network {
            config.dns(dns);
        }
        self
    }

    /// A fail-closed egress policy for a sandbox on networks ([`NetworkConfig::egress`]):
    /// it reaches only what `policy` allows, enforced by the host's firewall. Switches to
    /// [`NetworkMode::Networks`] if needed.
    ///
    /// ```no_run
    /// use nook_netmodel::{EgressPolicy, EndpointOptions, Host, Network, NetworkSpec};
    /// use nook_sandbox::Sandbox;
    ///
    /// let host = Host::builder().build()?;
    /// let net = Network::create(&host, &NetworkSpec::bridge("agents".parse()?))?;
    /// let mut policy = EgressPolicy::deny_all();
    /// policy.allow_domain("crates.io").allow_domain("*.crates.io");
    /// let out = Sandbox::builder()
    ///     .command("/bin/sh")
    ///     .args(["-c", "wget -q -O - https://example.com || echo refused"])
    ///     .connect(&net, EndpointOptions::new())
    ///     .egress(policy)
    ///     .output()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn egress(&mut self, policy: nook_netmodel::EgressPolicy) -> &mut Self {
        if !matches!(self.spec.network, NetworkMode::Networks(_)) {
            self.spec.network = NetworkMode::Networks(NetworkConfig::new());
        }
        if let NetworkMode::Networks(config) = &mut self.spec.network {
            config.egress(policy);
        }
        self
    }

    /// The uid map of the user namespace.
    pub fn uid_map(&mut self, map: IdMap) -> &mut Self {
        self.spec.uid_map = Some(map);
        self
    }

    /// The gid map of the user namespace.
    pub fn gid_map(&mut self, map: IdMap) -> &mut Self {
        self.spec.gid_map = Some(map);
        self
    }

    /// The uid and gid inside.
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        let u = self.spec.user.get_or_insert_with(User::default);
        u.uid = uid;
        u.gid = gid;
        self
    }

    /// Supplementary groups inside.
    pub fn groups(&mut self, groups: &[u32]) -> &mut Self {
        self.spec.user.get_or_insert_with(User::default).groups = groups.to_vec();
        self
    }

    /// Gives the program a new pseudo-terminal as its stdin, stdout, stderr and controlling
    /// terminal, allocated in the sandbox's own `/dev/ptmx` (its devpts instance), whose
    /// master is sent over `console_socket` (`SCM_RIGHTS`): runc's `--console-socket`
    /// (see `nook_ns::Command::terminal`). The terminal is also the sandbox's `/dev/console`
    /// (bind-mounted there, as runc does). `size`: (rows, columns). Used by the next spawn
    /// only; not part of the spec.
    pub fn terminal(&mut self, console_socket: OwnedFd, size: Option<(u16, u16)>) -> &mut Self {
        self.terminal = Some((console_socket, size));
        self
    }

    /// Passes `fd` to the program as descriptor `target` (runc's `--preserve-fds`; see
    /// `nook_ns::Command::preserve_fd`). Used by the next spawn only; not part of the spec.
    pub fn preserve_fd(&mut self, fd: OwnedFd, target: RawFd) -> &mut Self {
        self.preserved.push((target, fd));
        self
    }

    /// Enter the root with `MS_MOVE` and `chroot` instead of `pivot_root`
    /// ([`SandboxSpec::no_pivot`]).
    pub fn no_pivot(&mut self, yes: bool) -> &mut Self {
        self.spec.no_pivot = yes;
        self
    }

    /// A session keyring of its own, named `name` ([`SandboxSpec::session_keyring`]).
    pub fn session_keyring(&mut self, name: impl Into<String>) -> &mut Self {
        self.spec.session_keyring = Some(name.into());
        self
    }

    /// The propagation of the sandbox's root ([`SandboxSpec::root_propagation`]), as OCI's
    /// `rootfsPropagation` (`recursive`: `rshared`, `rslave`, ...).
    pub fn root_propagation(&mut self, propagation: nook_ns::Propagation, recursive: bool) -> &mut Self {
        self.spec.root_propagation = Some(crate::RootPropagation { propagation, recursive });
        self
    }

    /// A new time namespace with these clock offsets ([`SandboxSpec::clock_offsets`]): adds
    /// [`Namespace::Time`] to the namespaces.
    pub fn clock_offsets(&mut self, offsets: crate::ClockOffsets) -> &mut Self {
        let ns = self.spec.effective_namespaces().with(Namespace::Time);
        self.spec.namespaces = Some(ns);
        self.spec.clock_offsets = offsets;
        self
    }

    /// What the next spawn passes besides the spec.
    fn take_io(&mut self) -> Io {
        Io {
            stdio: std::mem::take(&mut self.stdio),
            terminal: self.terminal.take(),
            preserved: std::mem::take(&mut self.preserved),
        }
    }

    /// The program's stdin (a descriptor passed here is used by the next spawn only).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = Some(cfg.into());
        self
    }

    /// The program's stdout.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = Some(cfg.into());
        self
    }

    /// The program's stderr.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = Some(cfg.into());
        self
    }

    /// The whole confinement at once (replaces what the methods below set).
    pub fn security(&mut self, security: Security) -> &mut Self {
        self.spec.security = security;
        self
    }

    /// Every confinement off (see [`Security::privileged`]).
    pub fn privileged(&mut self, yes: bool) -> &mut Self {
        self.spec.security = if yes { Security::privileged() } else { Security::default() };
        self
    }

    /// Adds a capability (`"NET_ADMIN"`, `"CAP_SYS_PTRACE"`, `"ALL"`), as `--cap-add`.
    pub fn cap_add(&mut self, name: impl Into<String>) -> &mut Self {
        self.spec.security.cap_add.push(name.into());
        self
    }

    /// Drops a capability (`"ALL"`: all but the added ones), as `--cap-drop`.
    pub fn cap_drop(&mut self, name: impl Into<String>) -> &mut Self {
        self.spec.security.cap_drop.push(name.into());
        self
    }

    /// `no_new_privs` (default on).
    pub fn no_new_privs(&mut self, yes: bool) -> &mut Self {
        self.spec.security.no_new_privs = yes;
        self
    }

    /// The seccomp filter (default: Docker's default profile).
    pub fn seccomp(&mut self, mode: SeccompMode) -> &mut Self {
        self.spec.security.seccomp = mode;
        self
    }

    /// A read-only root filesystem, as `--read-only`.
    pub fn read_only_rootfs(&mut self, yes: bool) -> &mut Self {
        self.spec.security.read_only_rootfs = yes;
        self
    }

    /// A resource limit, as `--ulimit` (setting a resource again replaces it).
    pub fn rlimit(&mut self, resource: nook_ns::Resource, soft: u64, hard: u64) -> &mut Self {
        let rlimits = &mut self.spec.security.rlimits;
        rlimits.retain(|r| r.resource != resource);
        rlimits.push(Rlimit::new(resource, soft, hard));
        self
    }

    /// A kernel parameter in the sandbox's own namespaces, as `--sysctl`.
    pub fn sysctl(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.spec.security.sysctls.insert(key.into(), value.into());
        self
    }

    /// The `oom_score_adj` of the sandbox's processes.
    pub fn oom_score_adj(&mut self, value: i32) -> &mut Self {
        self.spec.security.oom_score_adj = Some(value);
        self
    }

    /// The umask of the sandbox's processes.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.spec.security.umask = Some(mask);
        self
    }

    /// A Landlock ruleset for the sandbox's processes.
    pub fn landlock(&mut self, ruleset: LandlockSpec) -> &mut Self {
        self.spec.security.landlock = Some(ruleset);
        self
    }

    /// Kill the sandbox after this long; the run then ends with [`Outcome::TimedOut`].
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.spec.timeout = Some(timeout);
        self
    }

    /// The state directory for the sandbox's owner record (see "Dies with its owner" in the
    /// crate docs): by default [`crate::StateDir::default_root`] (`/run/nook` for root,
    /// `$XDG_RUNTIME_DIR/nook` otherwise), which is skipped when it cannot be created; a
    /// directory set here must be usable (it is created mode 0700 and must be the caller's
    /// alone). Run [`crate::StateDir::cleanup`] on the same directory to clean up after a
    /// dead owner. A runtime option, not part of the [`SandboxSpec`].
    pub fn state_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Checks the whole spec and the process it becomes, changing nothing.
    pub fn validate(&self) -> Result<()> {
        let spec = self.to_spec();
        spec.validate()?;
        let (spec, image) = image_run::resolve(spec, false)?;
        if let NetworkMode::Networks(config) = &spec.network {
            net::resolve(config, &self.networks)?;
        }
        let plan = match &image {
            Some(run) => plan::build(&run.mount_spec(&spec)?)?,
            None => plan::build(&spec)?,
        };
        command(&spec, plan, Io::default(), false).validate().map_err(ValidationError::from)?;
        Ok(())
    }

    /// Creates the sandbox and starts the program in it.
    pub fn spawn(&mut self) -> Result<Sandbox> {
        let io = self.take_io();
        let detach = self.detach.take();
        spawn(self.to_spec(), io, false, &self.networks, self.container.as_ref(), self.state_dir.as_deref(), detach)
    }

    /// Creates a long-lived sandbox (like `docker create` + `start`): everything is set up
    /// and the namespaces are held by nook's init alone, as PID 1; no command runs (one set
    /// with [`SandboxBuilder::command`] is not used). Start processes in it with
    /// [`Sandbox::exec`]; [`Sandbox::pause`], [`Sandbox::resume`], [`Sandbox::stats`] and
    /// [`Sandbox::remove`] manage it. It always gets a cgroup (with the limits set, if any),
    /// so that pausing, stats and `exec` work — unprivileged without a delegated cgroup,
    /// only with [`SandboxBuilder::best_effort_limits`].
    pub fn create(&mut self) -> Result<Sandbox> {
        let io = self.take_io();
        let mut spec = self.to_spec();
        spec.cgroup.get_or_insert_with(|| CgroupSpec::new(""));
        spawn(spec, io, true, &self.networks, self.container.as_ref(), self.state_dir.as_deref(), None)
    }

    /// Runs the program to the end (stdio inherited unless set) and tears the sandbox down.
    pub fn status(&mut self) -> Result<Outcome> {
        self.spawn()?.wait()
    }

    /// Runs the program to the end with stdout and stderr piped (stdin `/dev/null` unless
    /// set) and collects them.
    pub fn output(&mut self) -> Result<SandboxOutput> {
        if self.stdio[0].is_none() && self.spec.stdio[0] == StdioMode::Inherit {
            self.stdio[0] = Some(Stdio::null());
        }
        for i in 1..3 {
            if self.stdio[i].is_none() {
                self.stdio[i] = Some(Stdio::piped());
            }
        }
        self.spawn()?.wait_with_output()
    }
}

fn stdio_of(mode: StdioMode) -> Stdio {
    match mode {
        StdioMode::Inherit => Stdio::inherit(),
        StdioMode::Null => Stdio::null(),
        StdioMode::Piped => Stdio::piped(),
    }
}

/// What a spawn passes besides the spec: stdio descriptors, a terminal, passed descriptors.
#[derive(Debug, Default)]
pub(crate) struct Io {
    stdio: [Option<Stdio>; 3],
    terminal: Option<(OwnedFd, Option<(u16, u16)>)>,
    preserved: Vec<(RawFd, OwnedFd)>,
}

/// The permissions runc gives the session keyring it creates: the kernel's for a new one
/// (possessor: all; user: view, read, link) plus search, for the user (without a user
/// namespace) or for others (with one), so that a later exec can join it by name.
pub(crate) fn keyring_perm(user_ns: bool) -> u32 {
    0x3f13_0000 | if user_ns { 0x8 } else { 0x8_0000 }
}

/// The `nook_ns::Command` for a spec and its plan.
fn command(spec: &SandboxSpec, plan: plan::Plan, io: Io, hold: bool) -> nook_ns::Command {
    let mut cmd = nook_ns::Command::new(spec.args.first().map_or("nk-init", String::as_str));
    if hold {
        cmd.init_hold(true);
    } else {
        cmd.args(&spec.args[1..]);
    }
    cmd.env_clear().envs(plan.env).current_dir(&spec.cwd).namespaces(plan.namespaces);
    if let Some(m) = plan.uid_map {
        cmd.uid_map(m);
    }
    if let Some(m) = plan.gid_map {
        cmd.gid_map(m);
    }
    if let Some(h) = &spec.hostname {
        cmd.hostname(h);
    }
    if let Some(d) = &spec.domainname {
        cmd.domainname(d);
    }
    if let Some(u) = &spec.user {
        cmd.user(u.uid, u.gid).groups(&u.groups);
    }
    // A new network namespace's `lo` starts down; the child brings it up itself (rootless
    // too, where the caller may not administer the namespace).
    cmd.loopback_up(plan.namespaces.has(Namespace::Net));
    cmd.mounts(plan.steps).init(true).kill_with_parent_process(libc::SIGKILL);
    if let Some(name) = &spec.session_keyring {
        let user_ns = plan.namespaces.has(Namespace::User) || spec.joins(Namespace::User);
        cmd.session_keyring(name, Some(keyring_perm(user_ns)));
    }
    // A non-recursive propagation would leave the host's other mounts as they are (shared
    // with the caller's, for setup mounts to reach): `/` gets the default recursive private
    // then, and the root after `pivot_root` what was asked (the plan's step). So does a
    // shared one: its ties with the host come from peer binds (see `root_propagation`).
    if let Some(p) = spec.root_propagation.filter(|p| p.recursive && p.propagation != nook_ns::Propagation::Shared) {
        cmd.root_propagation(Some((p.propagation, true)));
    }
    if let Some(o) = spec.clock_offsets.monotonic {
        cmd.monotonic_offset(o);
    }
    if let Some(o) = spec.clock_offsets.boottime {
        cmd.boottime_offset(o);
    }
    let Io { stdio: [i, o, e], terminal, preserved } = io;
    cmd.stdin(i.unwrap_or_else(|| stdio_of(spec.stdio[0])));
    cmd.stdout(o.unwrap_or_else(|| stdio_of(spec.stdio[1])));
    cmd.stderr(e.unwrap_or_else(|| stdio_of(spec.stdio[2])));
    if let Some((socket, size)) = terminal {
        // The sandbox's first process: its terminal is the sandbox's /dev/console (runc's).
        cmd.terminal(socket).terminal_console(true);
        if let Some((rows, cols)) = size {
            cmd.terminal_size(rows, cols);
        }
    }
    for (target, fd) in preserved {
        cmd.preserve_fd(fd, target);
    }
    cmd
}

/// A sandbox's new cgroup, and how its owner record lists it: `planned` (every directory it
/// could get, recorded before the `mkdir`s) until the init is recorded, which replaces it with
/// `exact` (the directories it got) in the same write.
struct Created {
    cgroup: Cgroup,
    planned: crate::state::Object,
    exact: crate::state::Object,
}

/// Whether a cgroup creation failed because the caller may not create one there.
fn not_permitted(e: &nook_cgroup::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS))
}

/// The sandbox's cgroup (named `id` when the spec has no name). `None` when the caller may
/// not create one and accepted running without limits.
///
/// Recorded before it is created, with every directory it can get (its parent — the spec's
/// or the caller's cgroup — in each hierarchy): an owner killed during the `mkdir`s leaves
/// nothing unrecorded, and a cleanup takes the directories that were not made as removed
/// (and `rmdir`s the empty ones that were). Once created, the record gets its exact
/// directories with the init (one write fewer; see [`Created`]). A failure (a creation
/// undoes itself) is returned with whether some of its directories are left (then the
/// record must stay); the caller undoes the rest and ends the record.
fn create_cgroup(
    spec: &CgroupSpec,
    id: &str,
    best_effort: bool,
    owner: &mut Recorder,
) -> std::result::Result<Option<Created>, (Box<Error>, bool)> {
    let mut cg = spec.clone();
    if cg.name.is_empty() {
        cg.name = id.to_owned();
    }
    let hierarchies = Hierarchies::discover().map_err(|e| (Box::new(e.into()), false))?;
    let parent = |h: &nook_cgroup::Hierarchy| h.dir_of(cg.parent.as_ref().unwrap_or(&h.own_cgroup));
    let dirs: Vec<PathBuf> =
        hierarchies.v2.iter().chain(&hierarchies.v1).filter_map(|h| Some(parent(h)?.join(&cg.name))).collect();
    let planned = crate::state::Object::cgroup(&cg, dirs);
    owner.record(planned.clone()).map_err(|e| (Box::new(e), false))?;
    match Cgroup::create_in(hierarchies, &cg) {
        Ok(c) => {
            let exact = crate::state::Object::cgroup(&cg, c.paths());
            Ok(Some(Created { cgroup: c, planned, exact }))
        }
        // A failed creation undid itself (`Cgroup::abandon`; a failure of that is reported in
        // the error). Directories that exist now may be someone else's (`EEXIST` is a clash,
        // and nothing is adopted): the planned cgroup must leave the record, or a cleanup
        // after our death would remove them.
        Err(e) if not_permitted(&e) && best_effort => {
            // Running without limits.
            owner.forget(&planned).map(|()| None).map_err(|f| (Box::new(f), false))
        }
        Err(e) => {
            let cause = if not_permitted(&e) { Error::CgroupUnavailable { source: e } } else { e.into() };
            let forgotten = owner.forget(&planned).err();
            Err((Box::new(Error::with_cleanup(cause, forgotten.into_iter().collect())), false))
        }
    }
}

/// Adds more undo failures to an error (into its `Cleanup` list when it has one).
fn with_more_cleanup(cause: Error, more: Vec<Error>) -> Error {
    match cause {
        _ if more.is_empty() => cause,
        Error::Cleanup { cause, mut cleanup } => {
            cleanup.extend(more);
            Error::Cleanup { cause, cleanup }
        }
        cause => Error::with_cleanup(cause, more),
    }
}

fn spawn(
    spec: SandboxSpec,
    io: Io,
    hold: bool,
    networks: &[nook_netmodel::Network],
    container: Option<&net::ContainerNet>,
    state_dir: Option<&Path>,
    detach: Option<crate::detached::Detach>,
) -> Result<Sandbox> {
    spec.validate_for(!hold)?;
    // An image root: its config applied, its user resolved (nothing created yet).
    let (spec, mut image) = image_run::resolve(spec, hold)?;
    // Networks: resolved and checked against their handles (pure), and the files for
    // `/etc/hosts` and `/etc/resolv.conf` named for the plan to bind (made, empty, once
    // recorded).
    let mut prepared = match &spec.network {
        NetworkMode::Networks(config) => Some(net::prepare(config, networks)?),
        _ => None,
    };
    let net_files = match (&prepared, &spec.network) {
        (Some(p), _) => p.mounts(&spec.mounts),
        (None, NetworkMode::Container { .. }) => net::container_mounts(container, &spec.mounts),
        _ => Vec::new(),
    };
    let mut mount_spec = match &image {
        Some(run) => run.mount_spec(&spec)?,
        None => spec.clone(),
    };
    mount_spec.mounts.extend(net_files);
    // Hardening: the device allowlist into the cgroup spec, then every process setting.
    let mut spec = spec;
    let device_cgroup = crate::hardening::apply::device_policy(&spec.security, &mut spec.cgroup);
    let mut confinement = Confinement::resolve(&spec.security, device_cgroup)?;
    let id = unique_cgroup_name();
    let view = if spec.cgroup_view { cgroup_view(spec.cgroup.as_ref(), &id)? } else { Vec::new() };
    let plan = plan::build_with(&mount_spec, &view)?;
    let memory_limited = spec.cgroup.as_ref().is_some_and(|c| c.resources.memory.is_some());
    let mut cmd = command(&spec, plan, io, hold);
    // Detached (`crate::detached`): the program is PID 1, outlives us, and has no record.
    let detached = detach.map(|d| d.apply(&mut cmd)).is_some();
    if detached && matches!(spec.network, NetworkMode::UserNet(_)) {
        return Err(ValidationError::UserNetDetached.into());
    }
    if let NetworkMode::Container { pid } = spec.network {
        cmd.join_netns(net::container_netns(pid, container)?);
    }
    for j in &spec.join_namespaces {
        cmd.join_ns(nook_ns::NsFd::open(&j.path, j.kind)?);
    }
    let mut landlock = confinement.apply(&mut cmd, None)?;
    cmd.validate().map_err(ValidationError::from)?;

    // Owner record (issue 13 item 6), before the first kernel object, for a sandbox that
    // creates something that outlives a killed owner: the network files, a container layer
    // (unless kept: then the caller owns it), a cgroup, network endpoints (IPAM addresses,
    // port rules). Its init
    // dies with the owner (`kill_with_parent_process`), so a one-shot sandbox with none of
    // those needs no record.
    let layer = image.as_ref().and_then(ImageRun::recorded);
    let mut owner = if detached {
        Recorder::none()
    } else if spec.cgroup.is_some() || layer.is_some() || prepared.is_some() {
        Recorder::begin(state_dir, &id)?
    } else {
        Recorder::none()
    };
    if let Some(p) = &mut prepared
        && let Err(e) = p.create_files(&mut owner)
    {
        let cleanup = if p.files_left() { Vec::new() } else { owner.finish().err().into_iter().collect() };
        return Err(Error::with_cleanup(e, cleanup));
    }
    // Undoes the first steps (files, container layer) of a setup that failed before the
    // child existed, then ends the record if nothing is left (`left`: the failed step
    // left something).
    let early_undo =
        |prepared: Option<net::Prepared>, image: Option<&mut ImageRun>, left: bool, owner: &mut Recorder| {
            let mut cleanup: Vec<Error> = image.and_then(|r| r.remove_layer().err()).into_iter().collect();
            cleanup.extend(prepared.map(net::Prepared::discard).unwrap_or_default());
            if !left && cleanup.is_empty() {
                cleanup.extend(owner.finish().err());
            }
            cleanup
        };
    if let Some(run) = &mut image {
        // Recorded first: an owner killed while the store makes it leaves nothing unrecorded.
        let made = match &layer {
            Some(o) => owner.record(o.clone()).and_then(|()| run.create_layer()),
            None => run.create_layer(),
        };
        if let Err(e) = made {
            // The store removes what it made of a layer it failed to create; the record goes
            // unless some of it is left.
            let left = run.layer_left();
            return Err(Error::with_cleanup(e, early_undo(prepared, None, left, &mut owner)));
        }
    }
    let (cgroup, cgroup_objects) = match &spec.cgroup {
        Some(cg) => match create_cgroup(cg, &id, spec.best_effort_limits, &mut owner) {
            Ok(Some(Created { cgroup, planned, exact })) => (Some(cgroup), Some((planned, exact))),
            Ok(None) => (None, None),
            Err((e, left)) => {
                return Err(with_more_cleanup(*e, early_undo(prepared, image.as_mut(), left, &mut owner)));
            }
        },
        None => (None, None),
    };
    if device_cgroup && cgroup.is_none() {
        // Running without limits (best effort): no device allowlist either, so no
        // CAP_MKNOD unless named.
        let again = Confinement::resolve(&spec.security, false).map_err(Error::from);
        match again.and_then(|c| c.apply(&mut cmd, None).map(|l| (c, l))) {
            Ok((c, l)) => (confinement, landlock) = (c, l),
            Err(e) => {
                let cleanup = early_undo(prepared, image.as_mut(), false, &mut owner);
                return Err(Error::with_cleanup(e, cleanup));
            }
        }
    }
    // Set when a failed step leaves something it could not undo itself (the record stays).
    let step_left = std::cell::Cell::new(false);
    // Undoes what this setup made, in reverse: the networks, the cgroup, the container
    // layer; then the owner record, if nothing it lists is left.
    let mut fail = |cause: Error,
                    cgroup: Option<Cgroup>,
                    prepared: Option<net::Prepared>,
                    attached: Option<net::Attached>,
                    owner: &mut Recorder|
     -> Error {
        let mut more: Vec<Error> = attached.map(net::Attached::teardown).unwrap_or_default();
        more.extend(prepared.map(net::Prepared::discard).unwrap_or_default());
        more.extend(cgroup.and_then(|c| c.remove().err()).map(Error::from));
        more.extend(image.as_mut().and_then(|r| r.remove_layer().err()));
        if more.is_empty() && !step_left.get() {
            more.extend(owner.finish().err());
        }
        with_more_cleanup(cause, more)
    };
    if let Some(cg) = &cgroup
        && let Err(e) = start_in_cgroup(&mut cmd, cg)
    {
        return Err(fail(e, cgroup, prepared, None, &mut owner));
    }
    let paused = match cmd.spawn_paused() {
        Ok(p) => p,
        Err(e) => return Err(fail(e.into(), cgroup, prepared, None, &mut owner)),
    };
    // Dropping a paused child kills and reaps it.
    // The init, and the cgroup's exact directories in place of the planned ones: one write.
    let recorded =
        crate::state::Object::process(paused.id()).map_err(Error::from).and_then(|init| match cgroup_objects {
            Some((planned, exact)) => owner.replace_with(&planned, vec![exact, init]),
            None => owner.record(init),
        });
    if let Err(e) = recorded {
        drop(paused);
        return Err(fail(e, cgroup, prepared, None, &mut owner));
    }
    // The child's new network namespace joins the networks while it waits (`attach`
    // undoes its own steps on failure).
    let net = match prepared {
        Some(p) => {
            let name = spec.hostname.clone().unwrap_or_else(|| format!("nk-{}", paused.id()));
            match net::attach(p, paused.id(), &name, &mut owner) {
                Ok(a) => Some(a),
                Err((e, left)) => {
                    drop(paused);
                    step_left.set(left);
                    return Err(fail(*e, cgroup, None, None, &mut owner));
                }
            }
        }
        None => None,
    };
    // A user-mode network: the helper configures the child's namespace while it waits
    // (`crate::usernet`); dropping the handle kills and reaps it.
    let usernet = match &spec.network {
        NetworkMode::UserNet(u) => match crate::usernet::start(u, paused.id()) {
            Ok(n) => Some(n),
            Err(e) => {
                drop(paused);
                return Err(fail(e, cgroup, None, net, &mut owner));
            }
        },
        _ => None,
    };
    let child = match paused.resume() {
        Ok(c) => c,
        Err(e) => return Err(fail(e.into(), cgroup, None, net, &mut owner)),
    };
    // A new cgroup has seen no OOM kill yet: the counter is read once, after the run.
    let oom_before = (memory_limited && cgroup.is_some()).then_some(0);
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    Ok(Sandbox {
        child,
        cgroup,
        net,
        usernet,
        deadline,
        oom_before,
        outcome: None,
        spec,
        image,
        paused: AtomicBool::new(false),
        owner,
        confinement,
        landlock,
        detached,
    })
}

pub(crate) fn oom_kills(cg: &Cgroup) -> Result<u64> {
    Ok(cg.oom_stats()?.map_or(0, |o| o.oom_kill))
}

/// A running sandbox: its PID 1 (nook's init, running the program) and its cgroup.
///
/// Named for what it is from the caller's side — the whole isolated environment — as
/// opposed to [`nook_netmodel::Sandbox`], which is only the network part (CNM's "sandbox":
/// a network namespace with endpoints). Waiting tears it down: the pid namespace ends with
/// its init, and the cgroup is removed. Dropping it kills everything inside and removes the
/// cgroup (best effort; [`Sandbox::wait`] reports errors).
#[derive(Debug)]
pub struct Sandbox {
    child: nook_ns::Child,
    pub(crate) cgroup: Option<Cgroup>,
    /// Its networks (with [`NetworkMode::Networks`]).
    net: Option<net::Attached>,
    /// Its user-mode network's helper (with [`NetworkMode::UserNet`]).
    usernet: Option<nook_netmodel::usernet::UserNet>,
    deadline: Option<Instant>,
    pub(crate) oom_before: Option<u64>,
    pub(crate) outcome: Option<Outcome>,
    /// What it was made from (`exec` starts processes with its environment, directory and
    /// user unless told otherwise); for an image root, with the image's values applied.
    spec: SandboxSpec,
    /// The image and container layer of a [`Rootfs::Image`] root.
    pub(crate) image: Option<ImageRun>,
    /// Frozen by [`Sandbox::pause`].
    paused: AtomicBool,
    /// Its owner record (removed after a clean teardown).
    owner: Recorder,
    /// How its processes are confined (`exec` starts its processes the same way).
    pub(crate) confinement: Confinement,
    /// What its Landlock ruleset enforces.
    landlock: Option<crate::hardening::LandlockStatus>,
    /// Spawned detached: dropping it leaves everything (see `crate::detached`).
    pub(crate) detached: bool,
}

impl Sandbox {
    /// A builder (the same as [`SandboxBuilder::new`]).
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::new()
    }

    /// What the sandbox's Landlock ruleset enforces here: the ABI version in use and any
    /// right left out because the kernel cannot enforce it (only with
    /// [`crate::LandlockSpec::allow_degraded`]). `None` without a ruleset.
    pub fn landlock(&self) -> Option<crate::hardening::LandlockStatus> {
        self.landlock
    }

    /// The seccomp user-notification listener of the sandbox's first process (its init
    /// and payload), when its profile has [`crate::hardening::Action::UserNotif`] rules
    /// (once; `None` afterwards or without such rules). The supervised syscalls wait until
    /// answered ([`nook_ns::seccomp::Notifier::respond`], `respond_continue`).
    pub fn take_seccomp_notifier(&mut self) -> Option<nook_ns::seccomp::Notifier> {
        self.child.take_seccomp_notifier()
    }

    /// The pid of the sandbox's init, as the caller's pid namespace sees it.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The init's pidfd (readable once it exited).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.child.pidfd()
    }

    /// The sandbox's cgroup, when it has one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The cgroup's stats (memory, pids, cpu, OOM counters).
    pub fn stats(&self) -> Result<nook_cgroup::Stats> {
        Ok(self.cgroup.as_ref().ok_or_else(no_cgroup)?.stats()?)
    }

    /// Its owner record in the state dir (see [`SandboxBuilder::state_dir`]), while there is
    /// one: a sandbox with a cgroup, a container layer it does not keep, or networks has one
    /// from before its first kernel object until its teardown removed everything (see "Dies
    /// with its owner" in the crate docs).
    pub fn record_path(&self) -> Option<&Path> {
        self.owner.path()
    }

    /// The spec the sandbox was made from.
    pub fn spec(&self) -> &SandboxSpec {
        &self.spec
    }

    /// Its endpoints on networks ([`NetworkMode::Networks`]; empty otherwise): interface,
    /// addresses, gateways, published ports.
    pub fn endpoints(&self) -> Vec<nook_netmodel::Endpoint> {
        self.net.as_ref().map(net::Attached::endpoints).unwrap_or_default()
    }

    /// The network part (CNM's sandbox: the namespace with its endpoints), with
    /// [`NetworkMode::Networks`]. [`nook_netmodel::Sandbox::run`] runs a closure in its
    /// network namespace.
    pub fn network_sandbox(&self) -> Option<&nook_netmodel::Sandbox> {
        self.net.as_ref().map(net::Attached::sandbox)
    }

    /// Its user-mode network's helper ([`NetworkMode::UserNet`]) until the run ends: which
    /// program runs, its pid.
    pub fn user_net(&self) -> Option<&nook_netmodel::usernet::UserNet> {
        self.usernet.as_ref()
    }

    /// Its `/etc/hosts` and `/etc/resolv.conf` on the host (with networks).
    pub(crate) fn net_files(&self) -> Option<[PathBuf; 2]> {
        self.net.as_ref().map(net::Attached::files)
    }

    /// Rewrites the sandbox's `/etc/hosts` with the peers its networks have now (peers that
    /// joined after it was created are listed only then, as with Docker's legacy links).
    /// Nothing to do without networks; and nothing changes while the embedded DNS server
    /// answers for the peers (the file then lists none; see `nook_netmodel::dns`).
    pub fn refresh_hosts(&self) -> Result<()> {
        self.net.as_ref().map_or(Ok(()), net::Attached::refresh_hosts)
    }

    /// The processes in the sandbox (host pids, from its cgroup).
    pub fn processes(&self) -> Result<Vec<u32>> {
        match &self.cgroup {
            Some(cg) => Ok(cg.procs()?),
            None => Err(no_cgroup()),
        }
    }

    /// Freezes every process of the sandbox (cgroup freezer) until [`Sandbox::resume`].
    pub fn pause(&self) -> Result<()> {
        self.cgroup.as_ref().ok_or_else(no_cgroup)?.freeze()?;
        self.paused.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Thaws a paused sandbox.
    pub fn resume(&self) -> Result<()> {
        self.cgroup.as_ref().ok_or_else(no_cgroup)?.thaw()?;
        self.paused.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Whether [`Sandbox::pause`] froze it (and no [`Sandbox::resume`] followed).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Stops the sandbox and tears it down, reporting every failure: SIGKILL to its init
    /// (the kernel ends the pid namespace, and with its last process the mount and other
    /// namespaces), then the cgroup is removed. A sandbox whose run already ended is only
    /// torn down.
    pub fn remove(mut self) -> Result<()> {
        if self.outcome.is_none() {
            // ESRCH: it ended on its own; the wait below reaps it.
            let _ = self.child.kill();
        }
        self.wait_until(None).map(drop)
    }

    pub(crate) fn init_pidfd(&self) -> BorrowedFd<'_> {
        self.child.pidfd()
    }

    /// The program's stdin, stdout and stderr pipes (when piped).
    pub fn stdio(&mut self) -> (Option<&mut std::fs::File>, Option<&mut std::fs::File>, Option<&mut std::fs::File>) {
        (self.child.stdin.as_mut(), self.child.stdout.as_mut(), self.child.stderr.as_mut())
    }

    /// Sends `signal` to the sandbox's init (which forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT,
    /// SIGUSR1 and SIGUSR2 to the program).
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.child.signal(signal).map_err(|source| Error::Sys { call: "pidfd_send_signal", path: None, source })
    }

    /// Kills the sandbox: SIGKILL to its init ends its pid namespace, and so every process
    /// in it.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Waits until the run ends (or the spec's timeout expires) and tears the sandbox down.
    pub fn wait(&mut self) -> Result<Outcome> {
        let deadline = self.deadline;
        self.wait_until(deadline)
    }

    /// [`Sandbox::wait`], killing the sandbox if it runs longer than `timeout` from now.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        self.wait_until(Some(self.deadline.map_or(deadline, |d| d.min(deadline))))
    }

    /// Whether the run has ended, without blocking (`None`: still running). A deadline that
    /// passed kills the sandbox here.
    pub fn try_wait(&mut self) -> Result<Option<Outcome>> {
        if let Some(o) = self.outcome {
            return Ok(Some(o));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return self.wait_until(Some(Instant::now())).map(Some);
        }
        match self.child.try_wait().map_err(|source| Error::Sys { call: "waitid", path: None, source })? {
            Some(status) => self.finish(status, false).map(Some),
            None => Ok(None),
        }
    }

    /// The spec's deadline, if it set a timeout.
    #[cfg(feature = "tokio")]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Waits until the run ends or `deadline` (then kills it: [`Outcome::TimedOut`]) and
    /// tears the sandbox down. `Some(now)` after the pidfd became readable does not block.
    pub(crate) fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Outcome> {
        if let Some(o) = self.outcome {
            return Ok(o);
        }
        let (status, timed_out) = wait_or_kill(&mut self.child, deadline)?;
        self.finish(status, timed_out)
    }

    /// The outcome of an ended run, then the teardown (the cgroup is removed; every failure
    /// is reported).
    fn finish(&mut self, status: ExitStatus, timed_out: bool) -> Result<Outcome> {
        let mut errors = Vec::new();
        let mut oom = false;
        if let (Some(before), Some(cg)) = (self.oom_before, &self.cgroup) {
            match oom_kills(cg) {
                Ok(n) => oom = n > before,
                Err(e) => errors.push(e),
            }
        }
        let outcome = if timed_out {
            Outcome::TimedOut
        } else if oom {
            Outcome::OomKilled { status }
        } else if let Some(sig) = status.signal() {
            Outcome::Signaled(sig)
        } else {
            Outcome::Exited(status.code().unwrap_or(-1))
        };
        self.outcome = Some(outcome);
        let before_teardown = errors.len();
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            errors.push(e.into());
        }
        if let Some(net) = self.net.take() {
            errors.extend(net.teardown());
        }
        if let Some(u) = self.usernet.take() {
            errors.extend(crate::usernet::stop(u));
        }
        if let Some(Err(e)) = self.image.as_mut().map(ImageRun::teardown) {
            errors.push(e);
        }
        // Everything recorded is gone (else the record stays for a cleanup after our death).
        if errors.len() == before_teardown
            && let Err(e) = self.owner.finish()
        {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(outcome)
        } else {
            Err(Error::Teardown { what: format!("sandbox {} (run ended: {outcome:?})", self.child.id()), errors })
        }
    }

    /// Waits for the run while collecting piped stdout and stderr.
    pub fn wait_with_output(mut self) -> Result<SandboxOutput> {
        drop(self.child.stdin.take());
        let out = reader(self.child.stdout.take());
        let err = reader(self.child.stderr.take());
        let outcome = self.wait();
        let stdout = join(out)?;
        let stderr = join(err)?;
        Ok(SandboxOutput { outcome: outcome?, stdout, stderr })
    }
}

pub(crate) fn no_cgroup() -> Error {
    Error::Cgroup(nook_cgroup::Error::ControllerUnavailable {
        controller: Controller::Freezer,
        detail: "the sandbox has no cgroup (set limits, or use create(), to get one)".to_owned(),
    })
}

/// Reaps `child`, killing it at `deadline` if it still runs then: its status, and whether it
/// was killed for the deadline.
pub(crate) fn wait_or_kill(child: &mut nook_ns::Child, deadline: Option<Instant>) -> Result<(ExitStatus, bool)> {
    let mut timed_out = false;
    if let Some(deadline) = deadline
        && !wait_readable(child.pidfd(), deadline)?
    {
        timed_out = true;
        // ESRCH: it ended just now; the wait below reaps it.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| Error::Sys { call: "waitid", path: None, source })?;
    Ok((status, timed_out))
}

/// Polls `fd` until readable or `deadline`; `false` on timeout.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant) -> Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::Sys { call: "poll", path: None, source: e.into() }),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.detached && self.outcome.is_none() {
            if let Some(cg) = self.cgroup.take() {
                cg.leak();
            }
            return;
        }
        if self.outcome.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What stays keeps the record: a cleanup after our death retries.
        let mut all_gone = true;
        if let Some(net) = self.net.take() {
            all_gone &= net.teardown().is_empty();
        }
        // Killed and reaped (nothing of it is recorded: it dies with its owner).
        drop(self.usernet.take());
        if let Some(cg) = self.cgroup.take() {
            all_gone &= cg.remove().is_ok();
        }
        if let Some(run) = self.image.as_mut() {
            all_gone &= run.teardown().is_ok();
        }
        if all_gone {
            let _ = self.owner.finish();
        }
    }
}

/// Makes `cmd`'s child start in `cgroup`: born in its cgroup2 directory
/// (`CLONE_INTO_CGROUP`; the parent writes its pid where the kernel lacks that), moving
/// itself into its v1 directories first thing (see `nook_ns::Command::cgroup_v1`: no
/// migration by pid, whose global lock costs an RCU grace period).
pub(crate) fn start_in_cgroup(cmd: &mut nook_ns::Command, cgroup: &Cgroup) -> Result<()> {
    start_in_cgroup_with(cmd, cgroup, None)
}

/// [`start_in_cgroup`] with the v1 `tasks` files already open (copies of `tasks` are
/// passed: a caller that starts many processes in one cgroup opens them once).
pub(crate) fn start_in_cgroup_with(
    cmd: &mut nook_ns::Command,
    cgroup: &Cgroup,
    tasks: Option<&[std::os::fd::OwnedFd]>,
) -> Result<()> {
    if cgroup.v2_dir().is_some() {
        cmd.cgroup(cgroup.dir_fd()?);
    }
    match tasks {
        Some(files) => {
            for f in files {
                let copy = f.try_clone().map_err(|source| Error::Sys {
                    call: "dup (a cgroup tasks file)",
                    path: None,
                    source,
                })?;
                cmd.cgroup_v1(copy);
            }
        }
        None => {
            for f in cgroup.v1_tasks_files()? {
                cmd.cgroup_v1(f);
            }
        }
    }
    Ok(())
}
