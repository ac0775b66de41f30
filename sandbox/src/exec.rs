//! [`Exec`]: another process in a running sandbox, as `docker exec` starts one — it joins
//! every namespace of the sandbox (through its init) and starts in its cgroup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use nook_ns::{Namespace, NamespaceSet, Stdio};

use crate::child::SandboxChild;
use crate::error::{Error, Result, ValidationError};
use crate::run::{Outcome, Sandbox, SandboxOutput, wait_readable};
use crate::spec::{DEFAULT_PATH, User, absolute, check_env, no_nul};

/// A process to start in a running [`Sandbox`] ([`Sandbox::exec`]), shaped like
/// `std::process::Command`. By default it gets the sandbox's environment, working directory
/// and user; stdio is inherited.
///
/// The child joins every namespace of the sandbox itself, right after clone, through its
/// init's pidfd ([`nook_ns::Command::join`], as runc's nsexec does): user (when the sandbox
/// has one, so rootless sandboxes are joined too), mount, UTS, IPC, network, cgroup, time
/// and pid. It is born in the sandbox's cgroup2 directory and moves itself into its v1 ones
/// before it runs. A caller with `CAP_SYS_ADMIN` clones it from a thread that entered the
/// pid namespace for the clone, so it is born there; otherwise (a rootless caller) the
/// program runs as the child of a small `nk-init` that stays outside the pid namespace (a
/// pid namespace applies to the children of whoever joins it), forwards signals to the
/// program and exits with its status: [`SandboxChild::id`] is then that init's pid, as seen
/// by the caller.
#[derive(Debug)]
pub struct Exec<'a> {
    sandbox: &'a Sandbox,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    user: Option<User>,
    stdio: [Option<Stdio>; 3],
    /// Nothing but the init runs in the sandbox (a pool's sandbox just reset): see
    /// [`nook_ns::Command::join_unobserved`].
    unobserved: bool,
    /// The cgroup's v1 `tasks` files, opened by the caller once for many starts.
    v1_tasks: Option<&'a [std::os::fd::OwnedFd]>,
}

impl Sandbox {
    /// A process to start in this sandbox: `args[0]` is the program (searched in `PATH`
    /// inside), the rest its arguments.
    pub fn exec<I, S>(&self, args: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec {
            sandbox: self,
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            stdio: [None, None, None],
            unobserved: false,
            v1_tasks: None,
        }
    }
}

impl<'a> Exec<'a> {
    /// Sets an environment variable (on top of the sandbox's environment).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The working directory (default: the sandbox's).
    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The uid and gid (default: the sandbox's user).
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        let u = self.user.get_or_insert_with(User::default);
        u.uid = uid;
        u.gid = gid;
        self
    }

    /// Supplementary groups.
    pub fn groups(&mut self, groups: &[u32]) -> &mut Self {
        self.user.get_or_insert_with(User::default).groups = groups.to_vec();
        self
    }

    /// Its stdin.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = Some(cfg.into());
        self
    }

    /// Its stdout.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = Some(cfg.into());
        self
    }

    /// Its stderr.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = Some(cfg.into());
        self
    }

    /// Only the init runs in the sandbox, so the start may share the caller's memory until
    /// exec (the pool, after a reset that proved it; see
    /// [`nook_ns::Command::join_unobserved`]).
    pub(crate) fn unobserved(&mut self) -> &mut Self {
        self.unobserved = true;
        self
    }

    /// The sandbox cgroup's v1 `tasks` files, already open (the pool keeps them).
    pub(crate) fn v1_tasks(&mut self, files: &'a [std::os::fd::OwnedFd]) -> &mut Self {
        self.v1_tasks = Some(files);
        self
    }

    /// Starts the process.
    pub fn spawn(&mut self) -> Result<SandboxChild<'a>> {
        Ok(SandboxChild::new(self.spawn_child()?))
    }

    pub(crate) fn spawn_child(&mut self) -> Result<nook_ns::Child> {
        let spec = self.sandbox.spec();
        if self.args.first().is_none_or(String::is_empty) {
            return Err(ValidationError::EmptyCommand.into());
        }
        for a in &self.args {
            no_nul("argument", a)?;
        }
        check_env(&self.env)?;
        let cwd = self.cwd.clone().unwrap_or_else(|| spec.cwd.clone());
        absolute("cwd", &cwd)?;

        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), DEFAULT_PATH.into());
        if let Some(h) = &spec.hostname {
            env.insert("HOSTNAME".into(), h.clone());
        }
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut cmd = nook_ns::Command::new(&self.args[0]);
        cmd.args(&self.args[1..]).env_clear().envs(env).current_dir(cwd);
        if let Some(u) = self.user.as_ref().or(spec.user.as_ref()) {
            cmd.user(u.uid, u.gid).groups(&u.groups);
        }
        let [i, o, e] = std::mem::take(&mut self.stdio);
        cmd.stdin(i.unwrap_or_else(Stdio::inherit));
        cmd.stdout(o.unwrap_or_else(Stdio::inherit));
        cmd.stderr(e.unwrap_or_else(Stdio::inherit));
        // Confined as the sandbox's first process is (capabilities, no_new_privs, seccomp,
        // rlimits, ...), as `docker exec` does; Landlock rules open the sandbox's paths
        // through its init's root.
        let root = PathBuf::from(format!("/proc/{}/root", self.sandbox.id()));
        self.sandbox.confinement.apply(&mut cmd, Some(&root))?;
        cmd.validate().map_err(ValidationError::from)?;

        // Every namespace the sandbox made, joined by the child itself right after clone
        // through the init's pidfd (no pid to be reused in between); the network namespace
        // too in `container:` mode, where the init joined another sandbox's.
        let mut set = NamespaceSet::new();
        for kind in spec.effective_namespaces().kinds() {
            set = set.with(kind);
        }
        if matches!(spec.network, crate::NetworkMode::Container { .. }) {
            set = set.with(Namespace::Net);
        }
        // And those it joined by path (a pod's): the init is in them.
        for j in &spec.join_namespaces {
            set = set.with(j.kind);
        }
        if wait_readable(self.sandbox.init_pidfd(), Instant::now())? {
            return Err(Error::Sys {
                call: "pidfd (the sandbox's init has exited)",
                path: None,
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            });
        }
        let pidfd = self.sandbox.init_pidfd().try_clone_to_owned().map_err(|source| Error::Sys {
            call: "dup (the init's pidfd)",
            path: None,
            source,
        })?;
        cmd.join(pidfd, set).join_unobserved(self.unobserved);
        // Born in the sandbox's cgroup2 directory, and moving itself into its v1 ones before
        // it joins the sandbox's cgroup namespace (see `start_in_cgroup`).
        if let Some(cg) = self.sandbox.cgroup() {
            crate::run::start_in_cgroup_with(&mut cmd, cg, self.v1_tasks)?;
        }
        Ok(cmd.spawn()?)
    }

    /// Runs it to the end (stdio inherited unless set); why it ended, as an [`Outcome`].
    pub fn status(&mut self) -> Result<Outcome> {
        self.spawn()?.wait()
    }

    /// Runs it to the end with stdout and stderr piped (stdin `/dev/null` unless set) and
    /// collects them.
    pub fn output(&mut self) -> Result<SandboxOutput> {
        if self.stdio[0].is_none() {
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
