//! [`Security`]: how a sandbox is confined beyond its namespaces — capabilities,
//! `no_new_privs`, seccomp, masked and read-only paths, a read-only root, the device
//! allowlist, rlimits, `oom_score_adj`, sysctls, umask and Landlock — as part of the serde
//! [`crate::SandboxSpec`], and its validation.
//!
//! The default is secure: Docker's default capability set, `no_new_privs`, Docker's default
//! seccomp profile adjusted to the capabilities granted, Docker's masked and read-only
//! paths and its device allowlist. Every relaxation is a field set explicitly. Where nook is
//! stricter than Docker it says so: `mknod` of any device is denied by the device policy,
//! and without a cgroup (no device controller to enforce the allowlist) `CAP_MKNOD` is not
//! granted unless asked for by name.
//!
//! The policy data lives in [`crate::hardening`]; the mechanisms run in nook-ns's child
//! plan (see [`nook_ns::Command::capabilities`] and the neighbouring methods).

use std::collections::BTreeMap;
use std::path::PathBuf;

use nook_ns::{Namespace, NamespaceSet, Resource};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::hardening::CapSet;
use crate::hardening::seccomp::Profile;

/// The confinement of a sandbox's processes (see the module docs). `Security::default()`
/// is the secure default; [`Security::privileged`] turns every confinement off at once
/// (Docker's `--privileged`, without its access to every host device).
///
/// ```
/// use nook_sandbox::{Security, SeccompMode};
///
/// let mut security = Security::default();
/// security.cap_drop = vec!["ALL".into()];
/// security.cap_add = vec!["NET_BIND_SERVICE".into()];
/// security.read_only_rootfs = true;
/// security.sysctls.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
/// assert!(matches!(security.seccomp, SeccompMode::Default));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Security {
    /// Turn every confinement off: all capabilities, no `no_new_privs`, no seccomp, nothing
    /// masked or read-only under `/proc` and `/sys`, every device allowed in the cgroup.
    /// The namespaces, the root filesystem and the fields below that add limits (rlimits,
    /// sysctls, umask, Landlock, a read-only root) still apply.
    pub privileged: bool,
    /// The base capability set (names as in `capabilities(7)`, with or without `CAP_`,
    /// any case). `None`: Docker's default set
    /// ([`crate::hardening::caps::DOCKER_DEFAULT`]).
    pub capabilities: Option<Vec<String>>,
    /// Capabilities added to the base (`"ALL"`: every capability the kernel has), as
    /// `docker run --cap-add`.
    pub cap_add: Vec<String>,
    /// Capabilities removed from the base (`"ALL"`: all but `cap_add`), as
    /// `docker run --cap-drop`.
    pub cap_drop: Vec<String>,
    /// `no_new_privs` (default on): setuid bits and file capabilities grant nothing.
    pub no_new_privs: bool,
    /// The seccomp filter.
    pub seccomp: SeccompMode,
    /// Paths hidden inside (`None`: [`crate::hardening::paths::default_masked_paths`]).
    pub masked_paths: Option<Vec<PathBuf>>,
    /// Paths read-only inside (`None`: [`crate::hardening::READ_ONLY_PATHS`]).
    pub read_only_paths: Option<Vec<PathBuf>>,
    /// Make the root filesystem read-only once everything is mounted (`docker run
    /// --read-only`); `/dev`, `/dev/shm`, tmpfs mounts and bind mounts keep their own mode.
    pub read_only_rootfs: bool,
    /// Resource limits, applied in the sandbox's processes (`docker run --ulimit`).
    pub rlimits: Vec<Rlimit>,
    /// `/proc/self/oom_score_adj` of the sandbox's processes (-1000..=1000).
    pub oom_score_adj: Option<i32>,
    /// Kernel parameters set in the sandbox's own namespaces (`docker run --sysctl`):
    /// `net.*` with a network namespace of its own; `kernel.shm*`, `kernel.msg*`,
    /// `kernel.sem` and `fs.mqueue.*` with an IPC namespace; `kernel.hostname` and
    /// `kernel.domainname` with a UTS namespace. Anything else would change the host and
    /// is refused.
    pub sysctls: BTreeMap<String, String>,
    /// The umask of the sandbox's processes (at most `0o777`; default: the caller's).
    pub umask: Option<u32>,
    /// A Landlock ruleset the sandbox's processes are confined by.
    pub landlock: Option<LandlockSpec>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            privileged: false,
            capabilities: None,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            no_new_privs: true,
            seccomp: SeccompMode::Default,
            masked_paths: None,
            read_only_paths: None,
            read_only_rootfs: false,
            rlimits: Vec::new(),
            oom_score_adj: None,
            sysctls: BTreeMap::new(),
            umask: None,
            landlock: None,
        }
    }
}

/// Which seccomp filter confines the sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SeccompMode {
    /// Docker's default profile, adjusted to the capabilities granted (compiled once per
    /// capability set and kernel, then reused).
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile of the caller's ([`Profile::from_docker_json`], [`Profile::from_oci_json`]
    /// or built in code), compiled once and reused while it is unchanged. A profile with
    /// [`crate::hardening::Action::UserNotif`] rules hands those syscalls to the caller:
    /// [`crate::Sandbox::take_seccomp_notifier`].
    Profile(Profile),
}

/// One resource limit (`docker run --ulimit name=soft:hard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rlimit {
    /// The resource, by its name (`"nofile"`, `"RLIMIT_NOFILE"`, any case).
    #[serde(with = "resource_name")]
    pub resource: Resource,
    /// The soft limit ([`Resource::INFINITY`]: none).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl Rlimit {
    /// `resource` limited to `soft` / `hard`.
    pub fn new(resource: Resource, soft: u64, hard: u64) -> Rlimit {
        Rlimit { resource, soft, hard }
    }
}

mod resource_name {
    use nook_ns::Resource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&r.name()["RLIMIT_".len()..].to_ascii_lowercase())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(|()| serde::de::Error::custom(format!("unknown resource limit {name:?}")))
    }
}

/// A Landlock ruleset: the access rights it handles are denied everywhere but beneath the
/// rules' paths (paths as the sandbox sees them, after its root is set up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LandlockSpec {
    /// The rights the ruleset handles.
    pub handled: Vec<FsAccess>,
    /// What is allowed where.
    pub rules: Vec<LandlockRule>,
    /// Accept a kernel that cannot enforce every handled right (they are then left out);
    /// otherwise that is an error at spawn.
    #[serde(default)]
    pub allow_degraded: bool,
}

impl LandlockSpec {
    /// A ruleset handling `handled`, with no rule yet.
    pub fn new(handled: impl IntoIterator<Item = FsAccess>) -> LandlockSpec {
        LandlockSpec { handled: handled.into_iter().collect(), rules: Vec::new(), allow_degraded: false }
    }

    /// Allows `access` beneath `path`.
    pub fn allow(mut self, path: impl Into<PathBuf>, access: impl IntoIterator<Item = FsAccess>) -> LandlockSpec {
        self.rules.push(LandlockRule { path: path.into(), access: access.into_iter().collect() });
        self
    }
}

/// One Landlock rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LandlockRule {
    /// The directory (or file) inside the sandbox.
    pub path: PathBuf,
    /// What is allowed beneath it.
    pub access: Vec<FsAccess>,
}

/// A filesystem access right of Landlock, or a group of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FsAccess {
    /// Reading files and listing directories.
    Read,
    /// Everything that changes a tree (writing, truncating, creating, removing, renaming).
    Write,
    /// Executing files.
    Execute,
    /// Opening a file for reading.
    ReadFile,
    /// Listing a directory.
    ReadDir,
    /// Opening a file for writing.
    WriteFile,
    /// Creating a directory.
    MakeDir,
    /// Creating a regular file.
    MakeReg,
    /// Removing a file.
    RemoveFile,
    /// Removing a directory.
    RemoveDir,
    /// Truncating a file (Landlock ABI 3).
    Truncate,
}

impl FsAccess {
    /// The rights as nook-ns names them.
    pub fn bits(self) -> nook_ns::landlock::AccessFs {
        use nook_ns::landlock::AccessFs as A;
        match self {
            FsAccess::Read => A::READ,
            FsAccess::Write => A::WRITE,
            FsAccess::Execute => A::EXECUTE,
            FsAccess::ReadFile => A::READ_FILE,
            FsAccess::ReadDir => A::READ_DIR,
            FsAccess::WriteFile => A::WRITE_FILE,
            FsAccess::MakeDir => A::MAKE_DIR,
            FsAccess::MakeReg => A::MAKE_REG,
            FsAccess::RemoveFile => A::REMOVE_FILE,
            FsAccess::RemoveDir => A::REMOVE_DIR,
            FsAccess::Truncate => A::TRUNCATE,
        }
    }

    /// The union of `list`.
    pub fn union(list: &[FsAccess]) -> nook_ns::landlock::AccessFs {
        list.iter().fold(nook_ns::landlock::AccessFs::empty(), |acc, a| acc | a.bits())
    }
}

/// The capabilities a sandbox can get here: those of the running kernel
/// ([`nook_ns::caps::last_cap`]) in the caller's bounding set (a capability outside it can
/// never be regained, in a new user namespace neither; read once).
fn kernel_caps() -> CapSet {
    static AVAILABLE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let bits = *AVAILABLE.get_or_init(|| {
        let last = nook_ns::caps::last_cap();
        let kernel = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
        let bounding = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let v = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
                u64::from_str_radix(v.trim(), 16).ok()
            })
            .unwrap_or(u64::MAX);
        kernel & bounding
    });
    CapSet::from_bits(bits)
}

/// Where a sysctl may be set, by the namespace it belongs to.
fn sysctl_namespace(key: &str) -> Option<Namespace> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.starts_with("net.") {
        Some(Namespace::Net)
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(Namespace::Ipc)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(Namespace::Uts)
    } else {
        None
    }
}

impl Security {
    /// Every confinement off (see [`Security::privileged`]).
    pub fn privileged() -> Security {
        Security { privileged: true, no_new_privs: false, seccomp: SeccompMode::Unconfined, ..Security::default() }
    }

    /// The capability set the sandbox's processes get; `device_cgroup`: a device allowlist
    /// is enforced (without one, `CAP_MKNOD` is only granted when named).
    pub fn capability_set(&self, device_cgroup: bool) -> Result<CapSet, ValidationError> {
        if self.privileged {
            return Ok(kernel_caps());
        }
        let base = match &self.capabilities {
            Some(names) => CapSet::from_names(names).map_err(ValidationError::Capability)?,
            None => {
                // Docker's set, less what this caller can never grant.
                let mut set = CapSet::from_bits(CapSet::docker_default().bits() & kernel_caps().bits());
                if !device_cgroup {
                    set.remove(crate::hardening::caps::number("MKNOD").unwrap_or(27));
                }
                set
            }
        };
        let set = base.tweak(&self.cap_add, &self.cap_drop).map_err(ValidationError::Capability)?;
        // "ALL" means every capability available here; one that is not, named, is refused.
        let all_named = self.cap_add.iter().any(|a| a.eq_ignore_ascii_case("ALL"));
        let set = if all_named { CapSet::from_bits(set.bits() & kernel_caps().bits()) } else { set };
        if let Some(n) = set.numbers().find(|n| !kernel_caps().contains(*n)) {
            return Err(ValidationError::Capability(crate::hardening::UnknownCapability {
                field: "capabilities",
                name: crate::hardening::caps::name(n).unwrap_or("?").to_owned(),
            }));
        }
        Ok(set)
    }

    /// Checks everything without touching the system; `ns`: the namespaces the sandbox
    /// creates.
    pub(crate) fn validate(&self, ns: NamespaceSet) -> Result<(), ValidationError> {
        self.capability_set(true)?;
        if let SeccompMode::Profile(p) = &self.seccomp {
            p.validate().map_err(ValidationError::Seccomp)?;
        }
        for list in [&self.masked_paths, &self.read_only_paths].into_iter().flatten() {
            for p in list {
                crate::spec::absolute("masked/read-only path", p)?;
            }
        }
        let mut seen = Vec::new();
        for r in &self.rlimits {
            if r.soft > r.hard {
                return Err(ValidationError::Rlimit { resource: r.resource, soft: r.soft, hard: r.hard });
            }
            if seen.contains(&r.resource) {
                return Err(ValidationError::DuplicateRlimit { resource: r.resource });
            }
            seen.push(r.resource);
        }
        if let Some(v) = self.oom_score_adj
            && !(-1000..=1000).contains(&v)
        {
            return Err(ValidationError::OomScoreAdj { value: v });
        }
        if let Some(m) = self.umask
            && m > 0o777
        {
            return Err(ValidationError::Umask { value: m });
        }
        for (key, value) in &self.sysctls {
            let refuse = |reason: &'static str| ValidationError::Sysctl { key: key.clone(), reason };
            let well_formed = !key.is_empty()
                && key.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                });
            if !well_formed {
                return Err(refuse("not a sysctl name (dot-separated words)"));
            }
            if value.contains('\0') || value.contains('\n') {
                return Err(refuse("the value contains a NUL or a newline"));
            }
            match sysctl_namespace(key) {
                None => return Err(refuse("not namespaced: setting it would change the host")),
                Some(n) if !ns.has(n) => {
                    return Err(refuse("its namespace is shared with the host (the sandbox has none of its own)"));
                }
                Some(_) => {}
            }
            // The same kernel shows the same keys, but for the per-device ones of the
            // sandbox's own interfaces (`net.ipv4.conf.eth0.*`, `net.ipv6.neigh.eth0.*`).
            let per_device = key.contains(".conf.") || key.contains(".neigh.");
            let path = std::path::Path::new("/proc/sys").join(key.replace('.', "/"));
            if !per_device && std::fs::symlink_metadata(&path).is_err() {
                return Err(refuse("no such kernel parameter"));
            }
        }
        if let Some(l) = &self.landlock {
            let handled = FsAccess::union(&l.handled);
            if handled.is_empty() {
                return Err(ValidationError::Landlock { path: None, reason: "the ruleset handles no access right" });
            }
            for rule in &l.rules {
                crate::spec::absolute("landlock rule", &rule.path)?;
                if !(FsAccess::union(&rule.access) - handled).is_empty() {
                    return Err(ValidationError::Landlock {
                        path: Some(rule.path.clone()),
                        reason: "the rule allows a right the ruleset does not handle",
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn ns() -> NamespaceSet {
        NamespaceSet::CONTAINER
    }

    #[test]
    fn default_is_dockers_set_without_mknod_when_no_device_cgroup() {
        let s = Security::default();
        let with = s.capability_set(true).unwrap();
        assert_eq!(with.bits(), CapSet::docker_default().bits() & kernel_caps().bits());
        let without = s.capability_set(false).unwrap();
        assert!(!without.contains_name("MKNOD") && without.contains_name("CHOWN"));
        let mut named = Security::default();
        named.cap_add = vec!["mknod".into()];
        assert!(named.capability_set(false).unwrap().contains_name("MKNOD"));
        assert!(s.no_new_privs && s.seccomp == SeccompMode::Default);
    }

    #[test]
    fn add_drop_all_and_unknown_names() {
        let mut s = Security::default();
        s.cap_drop = vec!["ALL".into()];
        s.cap_add = vec!["NET_ADMIN".into()];
        assert_eq!(s.capability_set(true).unwrap().names(), vec!["CAP_NET_ADMIN"]);
        s.cap_add = vec!["ALL".into()];
        s.cap_drop = vec![];
        assert_eq!(s.capability_set(true).unwrap(), kernel_caps());
        s.cap_add = vec!["CAP_NOPE".into()];
        assert!(matches!(s.validate(ns()), Err(ValidationError::Capability(_))));
        assert_eq!(Security::privileged().capability_set(false).unwrap(), kernel_caps());
    }

    #[test]
    fn sysctls_only_in_own_namespaces() {
        let check = |key: &str, ns: NamespaceSet| {
            let mut s = Security::default();
            s.sysctls.insert(key.into(), "1".into());
            s.validate(ns)
        };
        assert!(check("net.ipv4.ip_forward", ns()).is_ok());
        assert!(check("kernel.shmmax", ns()).is_ok());
        assert!(check("fs.mqueue.msg_max", ns()).is_ok());
        assert!(check("kernel.hostname", ns()).is_ok());
        assert!(check("net.ipv4.conf.eth0.forwarding", ns()).is_ok(), "interfaces inside may not exist here");
        assert!(matches!(check("net.ipv4.nk_no_such_key", ns()), Err(ValidationError::Sysctl { .. })));
        for (key, set) in [
            ("net.ipv4.ip_forward", ns().without(Namespace::Net)),
            ("kernel.shmmax", ns().without(Namespace::Ipc)),
            ("kernel.domainname", ns().without(Namespace::Uts)),
            ("kernel.core_pattern", ns()),
            ("vm.overcommit_memory", ns()),
            ("net/../../kernel/core_pattern", ns()),
            ("net..x", ns()),
            ("", ns()),
        ] {
            assert!(matches!(check(key, set), Err(ValidationError::Sysctl { .. })), "{key}");
        }
        let mut s = Security::default();
        s.sysctls.insert("net.ipv4.ip_forward".into(), "1\nkernel.core_pattern=x".into());
        assert!(matches!(s.validate(ns()), Err(ValidationError::Sysctl { .. })));
    }

    #[test]
    fn bad_values_are_typed() {
        let mut s = Security::default();
        s.rlimits = vec![Rlimit::new(Resource::Nofile, 10, 5)];
        assert!(matches!(s.validate(ns()), Err(ValidationError::Rlimit { .. })));
        s.rlimits = vec![Rlimit::new(Resource::Nofile, 5, 10), Rlimit::new(Resource::Nofile, 5, 10)];
        assert!(matches!(s.validate(ns()), Err(ValidationError::DuplicateRlimit { .. })));
        let mut s = Security::default();
        s.oom_score_adj = Some(1001);
        assert!(matches!(s.validate(ns()), Err(ValidationError::OomScoreAdj { .. })));
        let mut s = Security::default();
        s.umask = Some(0o1000);
        assert!(matches!(s.validate(ns()), Err(ValidationError::Umask { .. })));
        let mut s = Security::default();
        s.masked_paths = Some(vec!["proc/kcore".into()]);
        assert!(matches!(s.validate(ns()), Err(ValidationError::RelativePath { .. })));
        let mut s = Security::default();
        s.landlock = Some(LandlockSpec::new([FsAccess::Read]).allow("/usr", [FsAccess::Write]));
        assert!(matches!(s.validate(ns()), Err(ValidationError::Landlock { .. })));
        let mut s = Security::default();
        s.landlock = Some(LandlockSpec::new([FsAccess::Read]).allow("usr", [FsAccess::Read]));
        assert!(matches!(s.validate(ns()), Err(ValidationError::RelativePath { .. })));
    }

    #[test]
    fn json_round_trip() {
        let mut s = Security::default();
        s.cap_add = vec!["SYS_PTRACE".into()];
        s.rlimits = vec![Rlimit::new(Resource::Nofile, 64, 128)];
        s.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        s.landlock = Some(LandlockSpec::new([FsAccess::Read, FsAccess::Execute]).allow("/usr", [FsAccess::Read]));
        let mut p = Profile::new(crate::hardening::Action::Allow);
        p.rule(crate::hardening::seccomp::SyscallRule::new(["mkdir"], crate::hardening::Action::Errno(1)));
        s.seccomp = SeccompMode::Profile(p);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"resource\":\"nofile\""), "{json}");
        assert_eq!(serde_json::from_str::<Security>(&json).unwrap(), s);
        assert_eq!(serde_json::from_str::<Security>("{}").unwrap(), Security::default());
    }
}
