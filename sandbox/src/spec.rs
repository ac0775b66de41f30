//! [`SandboxSpec`]: the whole description of a sandbox as pure data (serde), and its
//! validation, which runs before anything touches the system.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nook_cgroup::CgroupSpec;
use nook_ns::{ClockOffset, IdMap, Namespace, NamespaceSet, Propagation};
use nook_unionfs::LayerStack;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::plan::DEVICES;
use crate::security::Security;

/// `PATH` in a sandbox when the caller sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything a sandbox is made of. Built by [`crate::SandboxBuilder`] or deserialized;
/// [`SandboxSpec::validate`] checks all of it before anything is created.
///
/// ```
/// use nook_sandbox::SandboxSpec;
///
/// let mut spec = SandboxSpec::default();
/// spec.args = vec!["sh".into(), "-c".into(), "hostname".into()];
/// spec.hostname = Some("box".into());
/// let json = serde_json::to_string(&spec).unwrap();
/// assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), spec);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SandboxSpec {
    /// The program and its arguments (`args[0]` is searched in the sandbox's `PATH` unless
    /// it contains a `/`).
    pub args: Vec<String>,
    /// The namespaces to create. `None`: [`SandboxSpec::default_namespaces`] — every kind but
    /// user and time as root, plus a user namespace when not root; the network namespace
    /// only with [`NetworkMode::None`].
    pub namespaces: Option<NamespaceSet>,
    /// Existing namespaces to join instead of creating them — network, IPC, UTS, pid,
    /// cgroup, time, mount or user, each named by a namespace file
    /// (`/proc/PID/ns/net`, a bind-mounted nsfs file such as `/run/netns/NAME`), as a
    /// pod's containers share their infra container's. A
    /// kind joined here is not also in [`SandboxSpec::namespaces`]; a joined network
    /// namespace goes with [`NetworkMode::Host`] (the sandbox makes no network of its own);
    /// a host or domain name is set in a joined UTS namespace (as runc does: a pod's
    /// containers name the pod); in a joined pid namespace the program is a process of it,
    /// not its init; a joined mount namespace is where the rootfs is set up (changing it,
    /// as runc does with a mount namespace an OCI config names), not with a new user
    /// namespace; a joined user namespace owns the namespaces the sandbox creates and the
    /// program is its root (as a user-namespaced pod's containers under CRI-O); an
    /// [`crate::Sandbox::exec`] joins every joined namespace too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub join_namespaces: Vec<JoinNamespace>,
    /// The root filesystem (default: the host's root, read-only, with a tmpfs upper).
    pub rootfs: Rootfs,
    /// The UTS host name (needs a UTS namespace).
    pub hostname: Option<String>,
    /// The NIS domain name (needs a UTS namespace).
    pub domainname: Option<String>,
    /// Extra mounts, made in order after `/dev` and before the program starts.
    pub mounts: Vec<Mount>,
    /// Device nodes made in the sandbox's `/dev` (an OCI config's `linux.devices`), besides
    /// the standard ones ([`crate::DEVICES`]); `/dev` then allows device nodes. Whether the
    /// sandbox may use one is the cgroup's device allowlist's decision
    /// (`CgroupSpec::resources.devices`; the default allowlist does not list them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceNode>,
    /// Mount the sandbox's own view of its cgroup on `/sys/fs/cgroup`, read-only, as runc
    /// does for an OCI `cgroup` mount: with cgroup v2 alone, the sandbox's cgroup directory
    /// there; with v1 (hybrid too), a tmpfs with one read-only bind per v1 hierarchy the
    /// sandbox's cgroup is in (those of its limits: `memory`, `pids`, `cpu,cpuacct`,
    /// `devices`...), named as on the host, plus a symbolic link per controller of a
    /// co-mounted hierarchy (`cpu -> cpu,cpuacct`). The sandbox sees its own limits at the
    /// usual paths (`/sys/fs/cgroup/memory/memory.limit_in_bytes`, `/sys/fs/cgroup/memory.max`).
    /// Needs a cgroup ([`SandboxSpec::cgroup`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cgroup_view: bool,
    /// The cgroup and its limits. `None`: no cgroup (no limits); the shortcuts
    /// ([`crate::SandboxBuilder::memory_max`], ...) create one. An empty `name` is replaced
    /// by a unique `nk-sandbox-*` name at spawn.
    pub cgroup: Option<CgroupSpec>,
    /// When the cgroup cannot be created because the caller may not (`EACCES`/`EPERM`/
    /// `EROFS`, typically an unprivileged caller without a delegated cgroup), run without
    /// limits instead of failing with [`crate::Error::CgroupUnavailable`]. Default: `false`
    /// (limits that cannot be enforced are an error).
    pub best_effort_limits: bool,
    /// The network.
    pub network: NetworkMode,
    /// The uid map of the user namespace (default: the caller's euid as root inside).
    pub uid_map: Option<IdMap>,
    /// The gid map of the user namespace (default: the caller's egid as root inside).
    pub gid_map: Option<IdMap>,
    /// The environment. The sandbox gets only this (Docker-like, nothing of the caller's),
    /// plus `PATH` = [`DEFAULT_PATH`] and `HOSTNAME` when not set here.
    pub env: BTreeMap<String, String>,
    /// The working directory inside (default `/`).
    pub cwd: PathBuf,
    /// The user and groups inside (default: root, or whoever the caller is without a user
    /// namespace).
    pub user: Option<User>,
    /// Standard input, output and error (default: inherit). The builder can also pass
    /// descriptors ([`crate::SandboxBuilder::stdin`]); those are not part of the spec.
    pub stdio: [StdioMode; 3],
    /// Kill the sandbox after this long ([`crate::Outcome::TimedOut`]).
    pub timeout: Option<Duration>,
    /// How its processes are confined beyond the namespaces (default: as strict as
    /// Docker's defaults, see [`Security`]).
    pub security: Security,
    /// Enter the root with `MS_MOVE` and `chroot` instead of `pivot_root` (runc's
    /// `--no-pivot`: for a caller whose own root is the initramfs, where `pivot_root`
    /// fails). Weaker: the caller's root stays in the mount namespace beneath the sandbox's,
    /// reachable through a chroot escape by a process with `CAP_SYS_CHROOT`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_pivot: bool,
    /// A session keyring of this name that the program (and every [`crate::detached::Detached::exec`])
    /// joins, created if needed — as runc gives each container `_ses.<id>` — instead of
    /// sharing the caller's session keyring (`nook_ns::Command::session_keyring`; made
    /// searchable as runc does). `None`: the caller's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_keyring: Option<String>,
    /// The propagation of the sandbox's root (OCI `linux.rootfsPropagation`): given to its
    /// root after `pivot_root`, and when recursive slave, private or unbindable also to `/`
    /// of its new mount namespace before anything is mounted there (instead of the default
    /// recursive private), as runc does. `None`: private. A shared root is made shared only
    /// after `pivot_root`: while the sandbox is set up its namespace stays recursively
    /// private, so none of the setup's mounts can reach the caller's namespace (runc makes
    /// `/` shared and the root's parent mount private instead); ties with the host's mounts
    /// come from binds with [`BindPropagation::Shared`] or [`BindPropagation::Slave`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_propagation: Option<RootPropagation>,
    /// Offsets of the monotonic and boot-time clocks in the sandbox's new time namespace
    /// (OCI `linux.timeOffsets`); needs [`Namespace::Time`] in
    /// [`SandboxSpec::namespaces`].
    #[serde(skip_serializing_if = "ClockOffsets::is_empty")]
    pub clock_offsets: ClockOffsets,
}

/// The propagation of a sandbox's root ([`SandboxSpec::root_propagation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootPropagation {
    /// Shared, slave, private or unbindable.
    pub propagation: Propagation,
    /// For every mount below the root too (OCI's `rshared`, `rslave`, ...).
    #[serde(default)]
    pub recursive: bool,
}

/// Clock offsets of a new time namespace ([`SandboxSpec::clock_offsets`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClockOffsets {
    /// `CLOCK_MONOTONIC` (and its variants) moves by this much.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monotonic: Option<ClockOffset>,
    /// `CLOCK_BOOTTIME` (and its variants) moves by this much.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boottime: Option<ClockOffset>,
}

impl ClockOffsets {
    /// No offset at all.
    pub fn is_empty(&self) -> bool {
        self.monotonic.is_none() && self.boottime.is_none()
    }
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            args: Vec::new(),
            namespaces: None,
            join_namespaces: Vec::new(),
            rootfs: Rootfs::default(),
            hostname: None,
            domainname: None,
            mounts: Vec::new(),
            devices: Vec::new(),
            cgroup_view: false,
            cgroup: None,
            best_effort_limits: false,
            network: NetworkMode::None,
            uid_map: None,
            gid_map: None,
            env: BTreeMap::new(),
            cwd: PathBuf::from("/"),
            user: None,
            stdio: [StdioMode::Inherit; 3],
            timeout: None,
            security: Security::default(),
            no_pivot: false,
            session_keyring: None,
            root_propagation: None,
            clock_offsets: ClockOffsets::default(),
        }
    }
}

/// A device node in the sandbox's `/dev` ([`SandboxSpec::devices`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Where, below `/dev` (`/dev/fuse`, `/dev/net/tun`).
    pub path: PathBuf,
    /// The file type and permission bits: `libc::S_IFCHR | 0o666`, `S_IFBLK | ...`,
    /// `S_IFIFO | ...`.
    pub mode: u32,
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
    /// Its owner, as the sandbox sees it.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// An existing namespace a sandbox joins ([`SandboxSpec::join_namespaces`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinNamespace {
    /// Its kind: network, IPC, UTS, pid, cgroup, time or mount (a mount namespace: the
    /// rootfs is set up in it, changing it, as runc does; not with a new user namespace).
    pub kind: Namespace,
    /// Its namespace file (opened, and its kind checked, at spawn).
    pub path: PathBuf,
}

/// The root filesystem of a sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Rootfs {
    /// The host's root file system, read-only below a private tmpfs upper: the program can
    /// write anywhere, and its writes vanish with the sandbox (an overlay with `lowerdir=/`
    /// in the sandbox's mount namespace). The host's other mounts (`/home` on its own file
    /// system, say) are not part of it; bind them with [`Mount::bind`].
    ///
    /// In a user namespace (rootless) overlayfs refuses `/` as a lower layer (its
    /// submounts are locked there), so the root is instead a recursive read-only bind of
    /// the host's `/` with a tmpfs on `/tmp` — what bubblewrap's `--ro-bind / /` gives.
    #[default]
    HostReadOnly,
    /// A directory (bind-mounted, recursively). Mount points the sandbox needs (`/proc`,
    /// `/dev`, `/sys`, `/etc/hostname`, bind targets) are created in it when missing and it
    /// is writable.
    Dir {
        /// The directory.
        path: PathBuf,
        /// Make the root read-only once everything is mounted.
        read_only: bool,
    },
    /// An overlay of a [`LayerStack`], mounted in the sandbox's mount namespace. An
    /// `Upper::Tmpfs` upper lives on the sandbox's private tmpfs.
    Stack(LayerStack),
    /// An image of an [`ImageStore`](crate::image::ImageStore), run as `docker run` runs
    /// it: a fresh container layer of the store is the writable upper over the image's
    /// layers, and the image config's Entrypoint, Cmd, Env, WorkingDir and User apply,
    /// each overridable (see [`crate::image_run`](mod@crate::image_run) for the rules).
    /// The container layer is removed with the sandbox unless `keep_container` is set.
    Image {
        /// The store's root directory ([`ImageStore::root`](crate::image::ImageStore::root)).
        store: PathBuf,
        /// The image reference (`name` means `name:latest`).
        image: String,
        /// Replaces the image's Entrypoint (and drops its Cmd unless the spec has a
        /// command), like `docker run --entrypoint`; an empty vector clears it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entrypoint: Option<Vec<String>>,
        /// Replaces the image's User (`name`, `uid`, `name:group`, `uid:gid`), resolved
        /// against the image's `/etc/passwd` and `/etc/group`, like `docker run -u`. A
        /// numeric [`SandboxSpec::user`] wins over both.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Replaces the image's WorkingDir, like `docker run -w` (a [`SandboxSpec::cwd`]
        /// other than `/` does too).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        working_dir: Option<PathBuf>,
        /// Keep the container layer when the sandbox ends (for a later
        /// [`crate::Sandbox::commit`], or to inspect it); the caller then removes it
        /// ([`crate::Sandbox::container_id`], `LayerStore::remove_container`).
        #[serde(default)]
        keep_container: bool,
    },
}

impl Rootfs {
    /// A writable directory root.
    pub fn dir(path: impl Into<PathBuf>) -> Rootfs {
        Rootfs::Dir { path: path.into(), read_only: false }
    }

    /// The image `reference` of `store`, with no overrides (see [`Rootfs::Image`]).
    pub fn image(store: &crate::image::ImageStore, reference: impl Into<String>) -> Rootfs {
        Rootfs::Image {
            store: store.root().to_path_buf(),
            image: reference.into(),
            entrypoint: None,
            user: None,
            working_dir: None,
            keep_container: false,
        }
    }
}

/// An extra mount inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Mount {
    /// A recursive bind mount of a host path.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Where inside.
        target: PathBuf,
        /// Read-only (the whole tree).
        read_only: bool,
        /// Whether mounts made later beneath the source (on the host) or the target (in the
        /// sandbox) appear on the other side ([`BindPropagation`]; default: neither).
        #[serde(default, skip_serializing_if = "BindPropagation::is_private")]
        propagation: BindPropagation,
    },
    /// A new tmpfs.
    Tmpfs {
        /// Where inside.
        target: PathBuf,
        /// Its size limit in bytes (`None`: the kernel's default, half of RAM; it is charged
        /// to the sandbox's memory cgroup either way).
        size: Option<u64>,
    },
}

/// The mount propagation of a [`Mount::Bind`] (Docker's `bind-propagation`, Kubernetes'
/// `mountPropagation`), for the whole bound tree.
///
/// The ties are the kernel's peer groups: they exist only where the source's mount is shared
/// on the host (`findmnt -o PROPAGATION SOURCE`; systemd makes `/` shared), and in a new user
/// namespace (rootless) the kernel lets nothing propagate out of the sandbox, so `Shared`
/// acts as `Slave` there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BindPropagation {
    /// No ties (`rprivate`, the default): the sandbox sees the source's mounts as they were
    /// when it started, and its own mounts there stay its own.
    #[default]
    Private,
    /// One way, host to sandbox (`rslave`, Kubernetes' `HostToContainer`): what the host
    /// mounts beneath the source later appears in the sandbox; nothing goes back.
    Slave,
    /// Both ways (`rshared`, Kubernetes' `Bidirectional`): what the sandbox mounts beneath
    /// the target appears on the host beneath the source too, and the other way round —
    /// give it only to a sandbox trusted to mount on the host (it needs `CAP_SYS_ADMIN`).
    Shared,
}

impl BindPropagation {
    fn is_private(&self) -> bool {
        *self == BindPropagation::Private
    }
}

impl Mount {
    /// A read-write bind mount.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Mount {
        Mount::Bind { source: source.into(), target: target.into(), read_only: false, propagation: Default::default() }
    }

    /// A read-only bind mount.
    pub fn bind_ro(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Mount {
        Mount::Bind { source: source.into(), target: target.into(), read_only: true, propagation: Default::default() }
    }

    /// For a bind: its propagation (see [`BindPropagation`]); other mounts are returned as
    /// they are.
    ///
    /// ```
    /// use nook_sandbox::{BindPropagation, Mount};
    /// // A volume the sandbox may mount file systems into, seen by the host (a CSI driver's).
    /// let m = Mount::bind("/var/lib/kubelet/pods", "/pods").with_propagation(BindPropagation::Shared);
    /// assert!(matches!(m, Mount::Bind { propagation: BindPropagation::Shared, .. }));
    /// ```
    #[must_use]
    pub fn with_propagation(mut self, p: BindPropagation) -> Mount {
        if let Mount::Bind { propagation, .. } = &mut self {
            *propagation = p;
        }
        self
    }

    /// A tmpfs.
    pub fn tmpfs(target: impl Into<PathBuf>) -> Mount {
        Mount::Tmpfs { target: target.into(), size: None }
    }

    /// Where it goes inside.
    pub fn target(&self) -> &Path {
        match self {
            Mount::Bind { target, .. } | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// How the sandbox reaches the network (see the crate docs' networking section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NetworkMode {
    /// Its own network namespace with only the loopback device, up (`--network=none`).
    #[default]
    None,
    /// The caller's network namespace (`--network=host`).
    Host,
    /// Its own network namespace connected to one or more `nook_netmodel` networks (bridge,
    /// macvlan, a driver of your own): one interface per network (`eth0`, `eth1`, ...),
    /// published ports, `/etc/hosts` with its addresses and peers, `/etc/resolv.conf`
    /// (`docker run --network=NAME -p ...`, then `docker network connect`). The networks
    /// are found by name among the handles given to the builder
    /// ([`crate::SandboxBuilder::connect`], [`crate::SandboxBuilder::use_network`]).
    Networks(crate::net::NetworkConfig),
    /// Another sandbox's network namespace (`--network=container:X`): its interfaces,
    /// addresses and ports, its `/etc/hosts` and `/etc/resolv.conf` when it is on networks.
    /// Set with [`crate::SandboxBuilder::network_container`]; `pid` is the other sandbox's
    /// init as the caller sees it ([`crate::Sandbox::id`]). The sandbox gets no network
    /// namespace of its own, and no host name of its own (as Docker refuses `--hostname`
    /// here: the name belongs to the namespace's owner).
    Container {
        /// The other sandbox's init.
        pid: u32,
    },
    /// Its own network namespace with a user-mode network stack: `pasta` (Debian package
    /// `passt`) or `slirp4netns`, run by the caller as a helper process that the sandbox
    /// owns (see [`crate::usernet`]). Outbound connections leave from the caller's own
    /// network namespace, published ports listen there. Works for unprivileged callers
    /// (rootless Podman's and Docker's networking); a typed error names what is missing
    /// when no helper is installed.
    UserNet(nook_netmodel::usernet::UserNetSpec),
}

/// The identity of the program inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// What a standard stream of the program is connected to (the serializable part of
/// [`nook_ns::Stdio`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioMode {
    /// The caller's.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe to the caller.
    Piped,
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl SandboxSpec {
    /// The default namespaces for this caller and network: mount, UTS, IPC, pid and cgroup
    /// (plus network with [`NetworkMode::None`]); a user namespace too when not root.
    pub fn default_namespaces(network: &NetworkMode, root: bool) -> NamespaceSet {
        let mut set = NamespaceSet::new()
            .with(Namespace::Mount)
            .with(Namespace::Uts)
            .with(Namespace::Ipc)
            .with(Namespace::Pid)
            .with(Namespace::Cgroup);
        if matches!(network, NetworkMode::None | NetworkMode::Networks(_) | NetworkMode::UserNet(_)) {
            set = set.with(Namespace::Net);
        }
        if !root {
            set = set.with(Namespace::User);
        }
        set
    }

    /// Whether the sandbox joins an existing namespace of `kind`.
    pub fn joins(&self, kind: Namespace) -> bool {
        self.join_namespaces.iter().any(|j| j.kind == kind)
    }

    /// The namespaces this spec creates (the explicit set, or the defaults).
    pub fn effective_namespaces(&self) -> NamespaceSet {
        self.namespaces.unwrap_or_else(|| SandboxSpec::default_namespaces(&self.network, euid() == 0))
    }

    /// Checks the whole spec without changing anything: the command, every path and
    /// string, the rootfs and bind sources (they must exist), mount targets, the
    /// namespaces against the options that need them, the host name, the cgroup limits and
    /// the layer stack. [`crate::SandboxBuilder::spawn`] runs this first (and then
    /// `nook-ns`'s own validation of the process it builds, before any clone).
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_for(true)
    }

    /// [`SandboxSpec::validate`]; a long-lived sandbox (`create`) needs no command.
    pub(crate) fn validate_for(&self, command: bool) -> Result<(), ValidationError> {
        let ns = self.effective_namespaces();
        // An image brings its own command (checked once its config is applied).
        let image = matches!(self.rootfs, Rootfs::Image { .. });
        if command && !image && (self.args.is_empty() || self.args[0].is_empty()) {
            return Err(ValidationError::EmptyCommand);
        }
        for a in &self.args {
            no_nul("argument", a)?;
        }
        check_env(&self.env)?;
        absolute("cwd", &self.cwd)?;
        let need = |option: &'static str, namespace: Namespace| {
            if ns.has(namespace) {
                Ok(())
            } else {
                Err(ValidationError::NamespaceConflict { option, namespace, present: false })
            }
        };
        if !self.joins(Namespace::Mount) {
            need("rootfs", Namespace::Mount)?;
        }
        if !self.clock_offsets.is_empty() {
            need("clock_offsets", Namespace::Time)?;
        }
        for off in [self.clock_offsets.monotonic, self.clock_offsets.boottime].into_iter().flatten() {
            if off.nanos >= 1_000_000_000 {
                return Err(nook_ns::ValidationError::BadClockOffset { nanos: off.nanos }.into());
            }
        }
        if !self.joins(Namespace::Pid) {
            need("/proc of the sandbox", Namespace::Pid)?;
        }
        for (i, j) in self.join_namespaces.iter().enumerate() {
            absolute("namespace path", &j.path)?;
            let twice = self.join_namespaces[..i].iter().any(|k| k.kind == j.kind);
            // A mount namespace joined with a new user namespace: the new one's root would
            // hold no CAP_SYS_ADMIN over it.
            let unjoinable = j.kind == Namespace::Mount && ns.has(Namespace::User);
            if unjoinable || twice || ns.has(j.kind) {
                return Err(ValidationError::NamespaceConflict {
                    option: "join_namespaces",
                    namespace: j.kind,
                    present: true,
                });
            }
            if j.kind == Namespace::Net && self.network != NetworkMode::Host {
                return Err(ValidationError::NamespaceConflict {
                    option: "a joined network namespace (network: host)",
                    namespace: Namespace::Net,
                    present: true,
                });
            }
        }
        match &self.network {
            NetworkMode::None => need("network: none", Namespace::Net)?,
            NetworkMode::Networks(config) => {
                need("network: networks", Namespace::Net)?;
                if euid() != 0 {
                    return Err(ValidationError::NetworkNeedsRoot);
                }
                config.validate()?;
            }
            NetworkMode::UserNet(spec) => {
                need("network: user_net", Namespace::Net)?;
                spec.validate().map_err(|source| ValidationError::UserNet { source })?;
            }
            NetworkMode::Host if ns.has(Namespace::Net) => {
                return Err(ValidationError::NamespaceConflict {
                    option: "network: host",
                    namespace: Namespace::Net,
                    present: true,
                });
            }
            NetworkMode::Host => {}
            NetworkMode::Container { .. } if ns.has(Namespace::Net) => {
                return Err(ValidationError::NamespaceConflict {
                    option: "network: container",
                    namespace: Namespace::Net,
                    present: true,
                });
            }
            NetworkMode::Container { .. } if self.hostname.is_some() => {
                return Err(ValidationError::ContainerNetworkConflict { option: "hostname" });
            }
            NetworkMode::Container { pid: 0 } => {
                return Err(ValidationError::ContainerNetworkConflict { option: "pid 0" });
            }
            NetworkMode::Container { .. } => {}
        }
        if let Some(h) = &self.hostname {
            if !self.joins(Namespace::Uts) {
                need("hostname", Namespace::Uts)?;
            }
            no_nul("hostname", h)?;
            nook_netmodel::files::validate_hostname(h)
                .map_err(|source| ValidationError::Hostname { value: h.clone(), source })?;
        }
        if let Some(d) = &self.domainname {
            if !self.joins(Namespace::Uts) {
                need("domainname", Namespace::Uts)?;
            }
            no_nul("domainname", d)?;
        }
        if self.uid_map.is_some() || self.gid_map.is_some() {
            need("uid_map/gid_map", Namespace::User)?;
        }
        if !ns.has(Namespace::User) && !self.joins(Namespace::User) && euid() != 0 {
            need("running unprivileged", Namespace::User)?;
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ValidationError::ZeroTimeout);
        }
        match &self.rootfs {
            Rootfs::HostReadOnly => {}
            Rootfs::Dir { path, .. } => {
                absolute("rootfs", path)?;
                match std::fs::metadata(path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(ValidationError::MissingRootfs {
                            path: path.clone(),
                            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                        });
                    }
                    Err(source) => return Err(ValidationError::MissingRootfs { path: path.clone(), source }),
                }
            }
            Rootfs::Stack(stack) => {
                stack.validate().map_err(|e| ValidationError::LayerStack { source: e })?;
            }
            Rootfs::Image { .. } => crate::image_run::validate(&self.rootfs)?,
        }
        let mut targets: Vec<&Path> = Vec::new();
        for m in &self.mounts {
            let target = m.target();
            absolute("mount target", target)?;
            if reserved(target) {
                return Err(ValidationError::ReservedMountTarget { target: target.to_owned() });
            }
            if targets.iter().any(|t| same_path(t, target)) {
                return Err(ValidationError::DuplicateMountTarget { target: target.to_owned() });
            }
            targets.push(target);
            if let Mount::Bind { source, .. } = m {
                absolute("bind source", source)?;
                if let Err(source_err) = std::fs::metadata(source) {
                    return Err(ValidationError::MissingMountSource { path: source.clone(), source: source_err });
                }
            }
        }
        self.security.validate(ns)?;
        for d in &self.devices {
            absolute("device node", &d.path)?;
            let below_dev = d.path.strip_prefix("/dev").is_ok_and(|r| r.components().next().is_some());
            if !below_dev || DEVICES.iter().any(|s| d.path == Path::new("/dev").join(s)) {
                return Err(ValidationError::DeviceNodePath { path: d.path.clone() });
            }
        }
        if self.cgroup_view && self.cgroup.is_none() {
            return Err(ValidationError::CgroupViewWithoutCgroup);
        }
        if let Some(cg) = &self.cgroup {
            let mut cg = cg.clone();
            if cg.name.is_empty() {
                cg.name = "nk-sandbox".to_owned();
            }
            cg.validate()?;
        }
        Ok(())
    }
}

/// Names without `=`, not empty; no NUL anywhere.
pub(crate) fn check_env(env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(ValidationError::EnvName { name: k.clone() });
        }
        no_nul("env", k)?;
        no_nul("env", v)?;
    }
    Ok(())
}

pub(crate) fn no_nul(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.contains('\0') {
        return Err(ValidationError::NulByte { field, value: s.to_owned() });
    }
    Ok(())
}

/// Absolute, without `..`, no NUL.
pub(crate) fn absolute(field: &'static str, path: &Path) -> Result<(), ValidationError> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(ValidationError::NulByte { field, value: path.to_string_lossy().into_owned() });
    }
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(ValidationError::RelativePath { field, path: path.to_owned() });
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

/// `/`, `/proc`, `/sys` and everything below them, and `/dev` itself.
fn reserved(target: &Path) -> bool {
    let mut c = target.components().filter(|c| *c != Component::CurDir);
    c.next(); // RootDir
    match c.next() {
        None => true,
        Some(first) => {
            let first = first.as_os_str();
            first == "proc" || first == "sys" || (first == "dev" && c.next().is_none())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> SandboxSpec {
        SandboxSpec { args: args.iter().map(|a| (*a).to_owned()).collect(), ..SandboxSpec::default() }
    }

    #[test]
    fn json_round_trip_of_every_field() {
        let mut s = spec(&["sh", "-c", "true"]);
        s.namespaces = Some(NamespaceSet::CONTAINER);
        s.rootfs = Rootfs::Dir { path: "/srv/root".into(), read_only: true };
        s.hostname = Some("box".into());
        s.domainname = Some("example".into());
        s.mounts = vec![
            Mount::bind_ro("/etc", "/mnt/etc"),
            Mount::bind("/srv", "/srv").with_propagation(BindPropagation::Slave),
            Mount::Tmpfs { target: "/scratch".into(), size: Some(1 << 20) },
        ];
        let mut cg = CgroupSpec::new("");
        cg.resources.pids.get_or_insert_default().max(64);
        s.cgroup = Some(cg);
        s.best_effort_limits = true;
        s.network = NetworkMode::Host;
        s.uid_map = Some(IdMap::root_to(1000));
        s.gid_map = Some(IdMap::single(0, 1000, 1));
        s.env.insert("A".into(), "b".into());
        s.cwd = "/tmp".into();
        s.user = Some(User { uid: 1, gid: 2, groups: vec![3] });
        s.stdio = [StdioMode::Null, StdioMode::Piped, StdioMode::Inherit];
        s.timeout = Some(Duration::from_millis(1500));
        s.security.cap_add = vec!["SYS_PTRACE".into()];
        s.security.read_only_rootfs = true;
        s.security.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let json = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), s);

        let mut stack = LayerStack::new();
        stack.lower("/l1").upper(nook_unionfs::Upper::Tmpfs { size: None });
        s.rootfs = Rootfs::Stack(stack);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), s);
        assert_eq!(serde_json::from_str::<SandboxSpec>("{}").unwrap(), SandboxSpec::default());

        s.rootfs = Rootfs::Image {
            store: "/var/lib/nk-images".into(),
            image: "app:1".into(),
            entrypoint: Some(vec!["/bin/app".into()]),
            user: Some("app:wheel".into()),
            working_dir: Some("/srv".into()),
            keep_container: true,
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), s);
        let minimal: Rootfs =
            serde_json::from_str(r#"{"type":"image","store":"/var/lib/nk-images","image":"app"}"#).unwrap();
        assert!(matches!(minimal, Rootfs::Image { entrypoint: None, keep_container: false, .. }));
    }

    #[test]
    fn bad_image_roots_are_typed() {
        let image = |store: &str, image: &str| Rootfs::Image {
            store: store.into(),
            image: image.into(),
            entrypoint: None,
            user: None,
            working_dir: None,
            keep_container: false,
        };
        let mut s = spec(&[]);
        s.rootfs = image("/", "app");
        assert!(s.validate().is_ok(), "an image root needs no command");
        s.rootfs = image("/", "");
        assert!(matches!(s.validate(), Err(ValidationError::Image(_))));
        s.rootfs = image("/", "has space");
        assert!(matches!(s.validate(), Err(ValidationError::Image(_))));
        s.rootfs = image("relative", "app");
        assert!(matches!(s.validate(), Err(ValidationError::RelativePath { field: "image store", .. })));
        s.rootfs = image("/nonexistent/nk-store", "app");
        assert!(matches!(s.validate(), Err(ValidationError::MissingRootfs { .. })));
        s.rootfs = image("/", "app");
        if let Rootfs::Image { working_dir, .. } = &mut s.rootfs {
            *working_dir = Some("srv".into());
        }
        assert!(matches!(s.validate(), Err(ValidationError::RelativePath { field: "image working dir", .. })));
        s.rootfs = image("/", "app");
        if let Rootfs::Image { entrypoint, .. } = &mut s.rootfs {
            *entrypoint = Some(vec!["a\0b".into()]);
        }
        assert!(matches!(s.validate(), Err(ValidationError::NulByte { field: "entrypoint", .. })));
    }

    #[test]
    fn bad_specs_are_typed() {
        assert!(matches!(spec(&[]).validate(), Err(ValidationError::EmptyCommand)));
        assert!(matches!(spec(&["a\0b"]).validate(), Err(ValidationError::NulByte { field: "argument", .. })));
        let mut s = spec(&["true"]);
        s.mounts.push(Mount::tmpfs("tmp"));
        assert!(matches!(s.validate(), Err(ValidationError::RelativePath { field: "mount target", .. })));
        for t in ["/proc", "/proc/sys", "/sys/fs", "/dev", "/", "/./proc"] {
            let mut s = spec(&["true"]);
            s.mounts.push(Mount::tmpfs(t));
            assert!(matches!(s.validate(), Err(ValidationError::ReservedMountTarget { .. })), "{t}");
        }
        let mut s = spec(&["true"]);
        s.mounts.push(Mount::tmpfs("/dev/shm2"));
        s.mounts.push(Mount::tmpfs("/a/../b"));
        assert!(matches!(s.validate(), Err(ValidationError::RelativePath { .. })));
        let mut s = spec(&["true"]);
        s.mounts = vec![Mount::tmpfs("/x"), Mount::tmpfs("/x/")];
        assert!(matches!(s.validate(), Err(ValidationError::DuplicateMountTarget { .. })));
        let mut s = spec(&["true"]);
        s.rootfs = Rootfs::dir("/nonexistent/nk-root");
        assert!(matches!(s.validate(), Err(ValidationError::MissingRootfs { .. })));
        let mut s = spec(&["true"]);
        s.mounts.push(Mount::bind("/nonexistent/nk-src", "/x"));
        assert!(matches!(s.validate(), Err(ValidationError::MissingMountSource { .. })));
        let mut s = spec(&["true"]);
        s.network = NetworkMode::Host;
        s.namespaces = Some(NamespaceSet::CONTAINER);
        assert!(matches!(
            s.validate(),
            Err(ValidationError::NamespaceConflict { namespace: Namespace::Net, present: true, .. })
        ));
        let mut s = spec(&["true"]);
        s.namespaces = Some(NamespaceSet::CONTAINER.without(Namespace::Net));
        assert!(matches!(
            s.validate(),
            Err(ValidationError::NamespaceConflict { namespace: Namespace::Net, present: false, .. })
        ));
        let mut s = spec(&["true"]);
        s.namespaces = Some(NamespaceSet::CONTAINER.without(Namespace::Uts));
        s.hostname = Some("box".into());
        assert!(matches!(s.validate(), Err(ValidationError::NamespaceConflict { option: "hostname", .. })));
        let mut s = spec(&["true"]);
        s.hostname = Some("no_underscores".into());
        assert!(matches!(s.validate(), Err(ValidationError::Hostname { .. })));
        let mut s = spec(&["true"]);
        s.env.insert("A=B".into(), "c".into());
        assert!(matches!(s.validate(), Err(ValidationError::EnvName { .. })));
        let mut s = spec(&["true"]);
        let mut cg = CgroupSpec::new("");
        cg.resources.pids.get_or_insert_default().max(0);
        s.cgroup = Some(cg);
        assert!(matches!(s.validate(), Err(ValidationError::Cgroup(_))));
        let mut s = spec(&["true"]);
        s.timeout = Some(Duration::ZERO);
        assert!(matches!(s.validate(), Err(ValidationError::ZeroTimeout)));
        // Clock offsets need a new time namespace, and nanoseconds below a second.
        let mut s = spec(&["true"]);
        s.clock_offsets.monotonic = Some(ClockOffset::from_secs(5));
        assert!(matches!(
            s.validate(),
            Err(ValidationError::NamespaceConflict { namespace: Namespace::Time, present: false, .. })
        ));
        s.namespaces = Some(s.effective_namespaces().with(Namespace::Time));
        assert!(s.validate().is_ok());
        s.clock_offsets.boottime = Some(ClockOffset::new(0, 1_000_000_000));
        assert!(matches!(s.validate(), Err(ValidationError::Ns(_))));
        let mut s = spec(&["true"]);
        s.rootfs = Rootfs::Stack(LayerStack::new());
        assert!(matches!(s.validate(), Err(ValidationError::LayerStack { .. })));
    }
}
