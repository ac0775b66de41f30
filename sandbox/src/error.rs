//! Errors of `nook-sandbox`: one enum for the crate ([`Error`], wrapping the four crates'
//! errors with `#[from]`) and one for a spec refused before anything happened
//! ([`ValidationError`]).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `nook-sandbox`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec was refused before anything touched the system.
    #[error("invalid sandbox spec: {0}")]
    Invalid(#[from] ValidationError),
    /// A system call or file operation of the facade itself failed.
    #[error("{call}{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Sys {
        /// The call (`"poll"`, `"waitid"`, ...).
        call: &'static str,
        /// The path it was made on, if any.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A setup step failed, and undoing what was done before it failed too.
    #[error("{cause} (and cleaning up failed: {})", list(.cleanup))]
    Cleanup {
        /// The failure that started the cleanup.
        cause: Box<Error>,
        /// Every failure of the cleanup.
        cleanup: Vec<Error>,
    },
    /// A teardown kept going after failures; every one is listed.
    #[error("tearing down {what} failed: {}", list(.errors))]
    Teardown {
        /// What was torn down.
        what: String,
        /// Every failure.
        errors: Vec<Error>,
    },
    /// The cgroup for the sandbox's limits could not be created. Unprivileged, this usually
    /// means no cgroup is delegated to the caller; [`crate::SandboxSpec::best_effort_limits`]
    /// runs without limits instead.
    #[error("cannot create the sandbox's cgroup (limits need a cgroup the caller may write): {source}")]
    CgroupUnavailable {
        /// What `nook-cgroup` said.
        #[source]
        source: nook_cgroup::Error,
    },
    /// From `nook-ns` (spawning, namespaces).
    #[error(transparent)]
    Ns(#[from] nook_ns::Error),
    /// From `nook-cgroup` (limits, stats, removal).
    #[error(transparent)]
    Cgroup(#[from] nook_cgroup::Error),
    /// From `nook-unionfs` (layer stacks).
    #[error(transparent)]
    Unionfs(#[from] nook_unionfs::Error),
    /// From `nook-netmodel` (network namespaces, `/etc` files).
    #[error(transparent)]
    Netmodel(#[from] nook_netmodel::Error),
    /// From the image store: the image of a [`crate::Rootfs::Image`] (not found, its user
    /// unknown to its `/etc/passwd`, no command, ...), its container layer, a commit.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The sandbox has no container layer to commit: its root is not an image, or the
    /// layer was removed when the run ended (set `keep_container` to commit afterwards).
    #[error("the sandbox has no container layer to commit ({reason})")]
    NoContainerLayer {
        /// Why.
        reason: &'static str,
    },
    /// From the owner records and [`crate::cleanup()`] ([`crate::state`]); boxed, as it
    /// carries every crate's errors (a cleanup removes every kind of object).
    #[error(transparent)]
    State(Box<crate::state::Error>),
}

impl From<crate::state::Error> for Error {
    fn from(e: crate::state::Error) -> Error {
        Error::State(Box::new(e))
    }
}

fn list(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// The OS errno behind this error, if there is one: looks through `Cleanup`'s cause,
    /// the wrapped crates' errors and their sources.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Cleanup { cause, .. } => cause.raw_os_error(),
            Error::Ns(e) => e.raw_os_error(),
            Error::Cgroup(e) | Error::CgroupUnavailable { source: e } => e.raw_os_error(),
            Error::Image(e) => e.raw_os_error(),
            Error::State(e) => e.raw_os_error(),
            other => {
                let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(other);
                while let Some(e) = cur {
                    if let Some(io) = e.downcast_ref::<io::Error>() {
                        return io.raw_os_error();
                    }
                    cur = e.source();
                }
                None
            }
        }
    }

    /// `cause`, or [`Error::Cleanup`] when undoing failed too.
    pub(crate) fn with_cleanup(cause: Error, cleanup: Vec<Error>) -> Error {
        if cleanup.is_empty() { cause } else { Error::Cleanup { cause: Box::new(cause), cleanup } }
    }
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spec refused by [`crate::SandboxSpec::validate`], before any kernel change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// No program to run.
    #[error("no command: the argument list is empty")]
    EmptyCommand,
    /// A [`crate::Pool`] cannot be made or used this way.
    #[error("pool: {reason}")]
    Pool {
        /// Why.
        reason: &'static str,
    },
    /// A string handed to the kernel contains a NUL byte.
    #[error("{field} contains a NUL byte: {value:?}")]
    NulByte {
        /// Which input (`"argument"`, `"env"`, `"hostname"`, ...).
        field: &'static str,
        /// The value, lossily converted.
        value: String,
    },
    /// A path that must be absolute is not (or has `..` components).
    #[error("{field} must be an absolute path without `..`: {path:?}")]
    RelativePath {
        /// Which input (`"mount target"`, `"cwd"`, ...).
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The root filesystem directory does not exist or is not a directory.
    #[error("rootfs {path:?} is not a directory: {source}")]
    MissingRootfs {
        /// The directory.
        path: PathBuf,
        /// What `stat` said (`ENOTDIR` when it is something else).
        #[source]
        source: io::Error,
    },
    /// A bind mount's source does not exist.
    #[error("bind mount source {path:?} cannot be used: {source}")]
    MissingMountSource {
        /// The source.
        path: PathBuf,
        /// What `stat` said.
        #[source]
        source: io::Error,
    },
    /// A mount over `/`, or over or below `/proc`, `/sys`, or over `/dev`: the sandbox owns those.
    #[error("mount target {target:?} is reserved: the sandbox mounts /, /proc, /sys and /dev itself")]
    ReservedMountTarget {
        /// The target.
        target: PathBuf,
    },
    /// A mount target that does not exist on a root where no mount point can be made (the
    /// host root of a rootless sandbox, a layer stack without an upper); mount a tmpfs at
    /// or above it first, or use an existing path (`/tmp` is a tmpfs in a rootless sandbox).
    #[error("mount target {target} does not exist, and the root file system is read-only here")]
    MountTargetMissing {
        /// The target.
        target: PathBuf,
    },
    /// Two mounts at the same target.
    #[error("two mounts at {target:?}")]
    DuplicateMountTarget {
        /// The target.
        target: PathBuf,
    },
    /// A [`crate::DeviceNode`] not below `/dev`, or on a standard node ([`crate::DEVICES`]).
    #[error("device node {path:?}: must be below /dev and not one of the standard nodes")]
    DeviceNodePath {
        /// The path.
        path: std::path::PathBuf,
    },
    /// [`crate::SandboxSpec::cgroup_view`] without a cgroup to show.
    #[error("cgroup_view needs a cgroup (SandboxSpec::cgroup)")]
    CgroupViewWithoutCgroup,
    /// The namespaces and the other options do not fit together.
    #[error("{option} needs {namespace} namespace{}", if *.present { " to be absent" } else { "" })]
    NamespaceConflict {
        /// The option (`"network: host"`, `"hostname"`, `"rootfs"`, `"uid_map"`, ...).
        option: &'static str,
        /// The namespace it needs (or needs absent).
        namespace: nook_ns::Namespace,
        /// `true`: the option needs the namespace *not* to be created.
        present: bool,
    },
    /// The host name is not a valid RFC 1123 name.
    #[error("invalid hostname {value:?}: {source}")]
    Hostname {
        /// The name.
        value: String,
        /// What `nook-netmodel` said.
        #[source]
        source: nook_netmodel::ValidationError,
    },
    /// An environment variable name is empty or contains `=`.
    #[error("invalid environment variable name {name:?}")]
    EnvName {
        /// The name.
        name: String,
    },
    /// A timeout of zero.
    #[error("the timeout must be longer than zero")]
    ZeroTimeout,
    /// The layer stack of [`crate::Rootfs::Stack`] was refused by `nook-unionfs`.
    #[error("rootfs layer stack: {source}")]
    LayerStack {
        /// What `nook-unionfs` said.
        #[source]
        source: nook_unionfs::ValidationError,
    },
    /// The layer stack's overlay options do not fit in one `mount(2)` page.
    #[error("rootfs layer stack: the overlay options are {len} bytes, more than one page ({max})")]
    LayerStackTooLong {
        /// The length of the rendered options.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// None of the host directories the sandbox's private scratch tmpfs can be mounted on
    /// (in its own mount namespace) is free: each is missing or holds the rootfs or a bind
    /// source.
    #[error("no free directory for the sandbox's scratch tmpfs among {candidates:?}")]
    NoScratchDir {
        /// The directories tried.
        candidates: &'static [&'static str],
    },
    /// The cgroup spec was refused by `nook-cgroup`.
    #[error("cgroup: {0}")]
    Cgroup(#[from] nook_cgroup::ValidationError),
    /// The process options were refused by `nook-ns` (id maps, names, signal, ...).
    #[error("process: {0}")]
    Ns(#[from] nook_ns::ValidationError),
    /// A mount plan was asked for a [`crate::Rootfs::Image`] root before the image's
    /// layers were resolved into an overlay stack (a bug of this crate: the facade always
    /// resolves it first).
    #[error("image rootfs not resolved into its layer stack before planning the mounts")]
    ImageNotResolved,
    /// A value of [`crate::Rootfs::Image`] was refused (the reference, an override).
    #[error("image rootfs: {0}")]
    Image(#[from] crate::image::ImageValidationError),
    /// [`crate::NetworkMode::Networks`] needs root: connecting a namespace to a bridge or
    /// macvlan network changes the host's network (links, firewall rules).
    #[error("connecting a sandbox to networks needs root (unprivileged: network none or host)")]
    NetworkNeedsRoot,
    /// [`crate::NetworkMode::Networks`] with no network.
    #[error("network mode `networks` lists no network")]
    NoNetworks,
    /// The same network twice.
    #[error("network {network:?} is listed twice")]
    DuplicateNetwork {
        /// Its name.
        network: String,
    },
    /// A network the builder was given no handle for.
    #[error("unknown network {network:?} (give the builder its handle: connect or use_network)")]
    UnknownNetwork {
        /// Its name.
        network: String,
    },
    /// The endpoint options for a network were refused (interface name, alias, port, MAC,
    /// static address outside the network's subnets, ...).
    #[error("network {network:?}: {source}")]
    NetworkOption {
        /// The network.
        network: String,
        /// What `nook-netmodel` said.
        #[source]
        source: nook_netmodel::ValidationError,
    },
    /// Published ports on a network whose driver cannot publish them (macvlan, an internal
    /// bridge).
    #[error("network {network:?} (driver {driver}) cannot publish ports")]
    PortsUnsupported {
        /// The network.
        network: String,
        /// Its driver.
        driver: String,
    },
    /// Two networks' endpoints would get the same interface name.
    #[error("interface name {ifname:?} is used by two networks")]
    DuplicateInterface {
        /// The name.
        ifname: String,
    },
    /// The user-mode network's spec was refused (a port mapping).
    #[error("user_net: {source}")]
    UserNet {
        /// What `nook-netmodel` said.
        #[source]
        source: nook_netmodel::ValidationError,
    },
    /// [`crate::NetworkMode::UserNet`] with a detached sandbox: the helper process is the
    /// caller's child and dies with it, while a detached sandbox outlives its creator.
    #[error("a detached sandbox cannot have a user-mode network (its helper dies with the creator)")]
    UserNetDetached,
    /// An option that does not go with [`crate::NetworkMode::Container`] (the other
    /// sandbox owns the network namespace and its name).
    #[error("{option} conflicts with network mode container")]
    ContainerNetworkConflict {
        /// The option (`"hostname"`, or `"pid 0"` for a missing sandbox).
        option: &'static str,
    },
    /// The DNS configuration was refused.
    #[error("dns: {source}")]
    Dns {
        /// What `nook-netmodel` said.
        #[source]
        source: nook_netmodel::ValidationError,
    },
    /// The egress policy was refused.
    #[error("egress policy: {source}")]
    Egress {
        /// What `nook-netmodel` said.
        #[source]
        source: nook_netmodel::ValidationError,
    },
    /// A capability name that is not one (or one the running kernel does not have).
    #[error(transparent)]
    Capability(crate::hardening::UnknownCapability),
    /// The seccomp profile cannot be used (malformed, or cannot be compiled here).
    #[error(transparent)]
    Seccomp(crate::hardening::SeccompError),
    /// A soft limit above its hard limit.
    #[error("rlimit {resource}: soft limit {soft} is above the hard limit {hard}")]
    Rlimit {
        /// The resource.
        resource: nook_ns::Resource,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// The same resource limited twice.
    #[error("rlimit {resource} is given twice")]
    DuplicateRlimit {
        /// The resource.
        resource: nook_ns::Resource,
    },
    /// An `oom_score_adj` outside -1000..=1000.
    #[error("oom_score_adj {value} is outside -1000..=1000")]
    OomScoreAdj {
        /// The value.
        value: i32,
    },
    /// A umask above `0o777`.
    #[error("umask {value:#o} is above 0o777")]
    Umask {
        /// The value.
        value: u32,
    },
    /// A sysctl that may not be set in this sandbox.
    #[error("sysctl {key:?}: {reason}")]
    Sysctl {
        /// The key.
        key: String,
        /// Why not.
        reason: &'static str,
    },
    /// A Landlock ruleset that cannot be built.
    #[error("landlock{}: {reason}", path.as_ref().map(|p| format!(" rule for {}", p.display())).unwrap_or_default())]
    Landlock {
        /// The rule's path, when one rule is at fault.
        path: Option<PathBuf>,
        /// Why.
        reason: &'static str,
    },
}
