//! `config.json` → a [`SandboxBuilder`] (read with `oci-spec`).
//!
//! Mapped: `process` (args, env, cwd, user uid/gid/additionalGids/umask, rlimits,
//! capabilities, noNewPrivileges, oomScoreAdj), `root` (path relative to the bundle,
//! readonly), `hostname`, `domainname`, `mounts` (see below), `linux.namespaces` (new
//! ones; no network namespace in the list: the host's, as runc; joined by `path` — see
//! below), `linux.resources` (memory limit/reservation/swap, pids, cpu shares/quota/period
//! ... see [`resources`]), `linux.cgroupsPath` (relative: below nook-oci's own cgroup, as
//! runc's cgroupfs driver; absolute: from the hierarchy's root), `linux.maskedPaths`,
//! `linux.readonlyPaths`, `linux.sysctl`, `linux.seccomp` (compiled by the facade's OCI
//! seccomp compiler; no `seccomp` section: unconfined, as runc), `linux.devices` (nodes made
//! in the container's `/dev` with their type `c`/`u`/`b`/`p`, major/minor, fileMode
//! (default 0666) and uid/gid) and `linux.resources.devices` (see [`device_rules`]: the
//! rules in order, then runc's `c *:* m`, `b *:* m` and nook's default allowlist).
//!
//! Mounts: `proc` on `/proc`, `sysfs` on `/sys`, `tmpfs` on `/dev`, `devpts` on `/dev/pts`,
//! `tmpfs` on `/dev/shm`, `mqueue` on `/dev/mqueue` are the facade's own standard mounts
//! (it always makes them: `/sys` read-only, a minimal `/dev`); `cgroup` (or `cgroup2`) on
//! `/sys/fs/cgroup` with `ro` is the container's own view of its cgroup
//! (`SandboxSpec::cgroup_view`: v1 and hybrid as runc — a tmpfs with a read-only bind of the
//! container's directory per hierarchy, for the hierarchies nook places it in, i.e. those
//! of its limits; v2 alone: its own directory, which is what runc shows with a cgroup
//! namespace — without one runc shows the whole hierarchy); `bind`/`rbind` mounts of a host
//! path (with `ro`) and `tmpfs` mounts elsewhere (with `size=`; `mode=755` is the facade's
//! mode) are extra mounts. A bind's propagation option (`rprivate`, `rslave`, `rshared` and
//! their non-recursive forms; the last one wins; none: the root's, as under runc — `rslave`
//! when `linux.rootfsPropagation` is unset, runc's default for `/`) becomes
//! `nook_sandbox::BindPropagation` for the whole bound tree: `rslave` and `rshared` binds stay
//! tied to the host's mount (Kubernetes' `HostToContainer` and `Bidirectional`).
//! `linux.rootfsPropagation` `rshared`/`shared` makes the root shared after `pivot_root`; the
//! setup itself runs in a private namespace, so none of its mounts reach the host.
//!
//! User namespaces: a new `user` namespace with `uidMappings` and `gidMappings` (both
//! needed; mappings without the namespace are refused). The facade mounts `/proc` and
//! `/sys` before `pivot_root` then, as runc does: the kernel mounts a new proc or sysfs in a
//! new user namespace only while a fully visible one is in the mount namespace. A root
//! directory the namespace's root does not own gets no mount points made in it (those it
//! needs must exist, as in runc's bundles).
//!
//! Namespaces joined by `path` (`/proc/PID/ns/*` or a bind-mounted nsfs file, as CRI-O and
//! `podman pod` give them): network, ipc, uts, pid (the process is then a member of that pid
//! namespace, not its init), cgroup, time, mount and user (`SandboxSpec::join_namespaces`;
//! a joined user namespace owns the container's new namespaces and the process is its root,
//! as runc's nsexec does it; id mappings given with it describe it and are not used). A
//! `hostname` or `domainname` with a joined UTS namespace is set in it, as runc does. A
//! joined mount namespace is where the rootfs is set up — the mounts and `pivot_root` change
//! it for everyone in it, as runc's do (runc joins it and sets the rootfs up there without a
//! new one); not with a new user namespace (refused: its root would hold no CAP_SYS_ADMIN
//! over the joined namespace; runc fails there too). A time namespace joined by path takes no
//! `timeOffsets` (they need a new one).
//!
//! Refused, naming the field (never silently dropped): `process.apparmorProfile`, `process.selinuxLabel`,
//! `process.ioPriority`, `process.scheduler`, `process.capabilities.ambient` and
//! `inheritable` (unless empty, or within the bounding set for uid 0), effective/permitted
//! sets that differ from the bounding set, `process.user.username`, `linux.timeOffsets` without a new time namespace or for other clocks than
//! `monotonic` and `boottime`, an unknown `linux.rootfsPropagation`, id mappings without a new user namespace, other
//! mount types or standard mounts elsewhere or with other options, a `cgroup` mount without
//! `ro`, bind options other than `bind`/`rbind`/`ro`/`rw`/propagation
//! flags/`nosuid`/`nodev`/`noexec`, device rules for fifos, resources nook does not
//! map (blockIO, hugepageLimits, network, rdma, unified, memory
//! kernel/kernelTCP/swappiness/disableOOMKiller, cpu realtime/idle/burst),
//! `linux.mountLabel`, `linux.intelRdt`, `linux.personality`, `linux.memoryPolicy`, `linux.netDevices`, and any non-Linux section.

use std::path::{Path, PathBuf};

use nook_cgroup::CgroupSpec;
use nook_ns::{Namespace, NamespaceSet};
use nook_sandbox::{BindPropagation, Mount, NetworkMode, Rootfs, SandboxBuilder, SeccompMode};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

use crate::error::{Error, refuse};

/// A bundle's config, mapped.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) builder: SandboxBuilder,
    pub(crate) rootfs: PathBuf,
    pub(crate) spec: Spec,
    /// The cgroup given to the builder (`create` names it when `cgroupsPath` does not, and
    /// records it before the spawn: see `commands.rs`).
    pub(crate) cgroup: CgroupSpec,
}

/// Loads `<bundle>/config.json`.
pub(crate) fn load(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|source| Error::Oci { path, source })
}

/// The standard mounts the facade makes itself: (type, destination).
const STANDARD: &[(&str, &str)] = &[
    ("proc", "/proc"),
    ("sysfs", "/sys"),
    ("tmpfs", "/dev"),
    ("devpts", "/dev/pts"),
    ("tmpfs", "/dev/shm"),
    ("mqueue", "/dev/mqueue"),
];

/// Maps the whole config or names the first field that cannot be honoured.
pub(crate) fn map(spec: Spec, bundle: &Path) -> Result<Mapped, Error> {
    let mut b = SandboxBuilder::new();
    // hooks: run by the commands (crate::hooks), not part of the sandbox.
    if spec.solaris().is_some() || spec.windows().is_some() || spec.vm().is_some() || spec.zos().is_some() {
        return Err(refuse("solaris/windows/vm/zos", "only the linux section is supported"));
    }
    // root
    let root = spec.root().as_ref().ok_or_else(|| refuse("root", "missing"))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
    let rootfs =
        std::fs::canonicalize(&rootfs).map_err(|e| refuse("root.path", format!("{}: {e}", rootfs.display())))?;
    b.rootfs(Rootfs::Dir { path: rootfs.clone(), read_only: false });
    b.read_only_rootfs(root.readonly().unwrap_or(false));
    if let Some(h) = spec.hostname() {
        b.hostname(h);
    }
    if let Some(d) = spec.domainname() {
        b.domainname(d);
    }
    process(&spec, &mut b)?;
    mounts(&spec, &mut b)?;
    let cgroup = linux(&spec, &mut b)?;
    Ok(Mapped { builder: b, rootfs, spec, cgroup })
}

fn process(spec: &Spec, b: &mut SandboxBuilder) -> Result<(), Error> {
    let p = spec.process().as_ref().ok_or_else(|| refuse("process", "missing"))?;
    // process.terminal and consoleSize: the commands' (`tty.rs`), with the console socket.
    if p.apparmor_profile().as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("process.apparmorProfile", "AppArmor is not supported"));
    }
    if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("process.selinuxLabel", "SELinux is not supported"));
    }
    if p.io_priority().is_some() {
        return Err(refuse("process.ioPriority", "not supported"));
    }
    if p.scheduler().is_some() {
        return Err(refuse("process.scheduler", "not supported"));
    }
    let args = p.args().clone().unwrap_or_default();
    let Some((first, rest)) = args.split_first() else { return Err(refuse("process.args", "empty")) };
    b.command(first).args(rest.iter().cloned());
    for kv in p.env().iter().flatten() {
        let (k, v) = kv.split_once('=').ok_or_else(|| refuse("process.env", format!("{kv:?} is not KEY=value")))?;
        b.env(k, v);
    }
    b.current_dir(p.cwd());
    let u = p.user();
    if u.username().as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("process.user.username", "only numeric uid/gid are supported"));
    }
    b.user(u.uid(), u.gid());
    if let Some(g) = u.additional_gids() {
        b.groups(g);
    }
    if let Some(m) = u.umask() {
        b.umask(m);
    }
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let res: nook_ns::Resource =
            name.parse().map_err(|()| refuse("process.rlimits", format!("unknown resource {name}")))?;
        b.rlimit(res, r.soft(), r.hard());
    }
    capabilities(p, b)?;
    b.no_new_privs(p.no_new_privileges().unwrap_or(false));
    if let Some(v) = p.oom_score_adj() {
        b.oom_score_adj(v);
    }
    Ok(())
}

fn capabilities(p: &oci_spec::runtime::Process, b: &mut SandboxBuilder) -> Result<(), Error> {
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut v: Vec<String> = set.iter().flatten().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    let Some(caps) = p.capabilities() else {
        b.security_mut().capabilities = Some(Vec::new());
        return Ok(());
    };
    let bounding = names(caps.bounding());
    for (field, set) in [("effective", caps.effective()), ("permitted", caps.permitted())] {
        if set.is_some() && names(set) != bounding {
            return Err(refuse(
                format!("process.capabilities.{field}"),
                "differs from the bounding set (nook gives one set: bounding = effective = permitted)",
            ));
        }
    }
    // For uid 0 an exec gives the bounding set anyway: inheritable and ambient sets within
    // it change nothing (runc's default config lists them).
    let root = p.user().uid() == 0;
    for (field, set) in [("inheritable", caps.inheritable()), ("ambient", caps.ambient())] {
        let set = names(set);
        if !(set.is_empty() || root && set.iter().all(|c| bounding.contains(c))) {
            return Err(refuse(
                format!("process.capabilities.{field}"),
                "not supported (only empty, or within the bounding set for uid 0)",
            ));
        }
    }
    b.security_mut().capabilities = Some(bounding);
    Ok(())
}

fn mounts(spec: &Spec, b: &mut SandboxBuilder) -> Result<(), Error> {
    // A bind without a propagation option gets the root's, as under runc (where the bind
    // inherits the propagation `/` was given before it).
    let root = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone()).filter(|p| !p.is_empty());
    let bind_default = match root.as_deref().map(root_propagation).transpose()? {
        Some((nook_ns::Propagation::Shared, _)) => BindPropagation::Shared,
        // Unset: runc's `rslave`.
        Some((nook_ns::Propagation::Slave, _)) | None => BindPropagation::Slave,
        _ => BindPropagation::Private,
    };
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().display().to_string();
        let field = format!("mounts[{dest}]");
        let typ = m.typ().as_deref().unwrap_or(if m.options().iter().flatten().any(|o| o == "bind" || o == "rbind") {
            "bind"
        } else {
            ""
        });
        let opts: Vec<&str> = m.options().iter().flatten().map(String::as_str).collect();
        if STANDARD.contains(&(typ, dest.as_str())) {
            // The facade's own mount: proc, sysfs (read-only), the minimal /dev and its
            // devpts, shm and mqueue.
            continue;
        }
        match typ {
            "cgroup" | "cgroup2" if dest == "/sys/fs/cgroup" => {
                // runc's view of the container's own cgroup (see SandboxSpec::cgroup_view).
                // `private`/`rprivate` (podman's): the facade's mounts are private already
                // (the new mount namespace's `/` is made rprivate first).
                let allowed = ["nosuid", "noexec", "nodev", "relatime", "ro", "private", "rprivate"];
                if let Some(o) = opts.iter().find(|o| !allowed.contains(*o)) {
                    return Err(refuse(field, format!("cgroup mount option {o:?} is not supported")));
                }
                if !opts.contains(&"ro") {
                    return Err(refuse(field, "only a read-only cgroup mount (option \"ro\") is supported"));
                }
                b.cgroup_view(true);
            }
            "bind" | "none" if opts.iter().any(|o| *o == "bind" || *o == "rbind") => {
                let allowed = [
                    "bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "slave", "rslave",
                    "shared", "rshared",
                ];
                if let Some(o) = opts.iter().find(|o| !allowed.contains(o)) {
                    return Err(refuse(field, format!("bind option {o:?} is not supported")));
                }
                let source = m.source().clone().ok_or_else(|| refuse(field.clone(), "a bind mount needs a source"))?;
                let read_only = opts.contains(&"ro");
                // The last propagation option wins, as runc applies them in order; each is
                // given to the whole bound tree (runc: `slave` and `shared` to its top mount).
                let propagation = opts
                    .iter()
                    .rev()
                    .find_map(|o| match *o {
                        "private" | "rprivate" => Some(BindPropagation::Private),
                        "slave" | "rslave" => Some(BindPropagation::Slave),
                        "shared" | "rshared" => Some(BindPropagation::Shared),
                        _ => None,
                    })
                    .unwrap_or(bind_default);
                let bind = if read_only {
                    Mount::bind_ro(source, m.destination())
                } else {
                    Mount::bind(source, m.destination())
                };
                b.mount(bind.with_propagation(propagation));
            }
            "tmpfs" => {
                let mut size = None;
                for o in &opts {
                    match o.strip_prefix("size=") {
                        Some(s) => {
                            size = Some(parse_size(s).ok_or_else(|| refuse(field.clone(), format!("bad size {s:?}")))?)
                        }
                        // The facade's tmpfs mounts are mode 755 (containerd's `/run`).
                        None if [
                            "nosuid",
                            "nodev",
                            "noexec",
                            "rw",
                            "strictatime",
                            "relatime",
                            "mode=755",
                            "mode=0755",
                        ]
                        .contains(o) => {}
                        None => return Err(refuse(field, format!("tmpfs option {o:?} is not supported"))),
                    }
                }
                b.mount(Mount::Tmpfs { target: m.destination().clone(), size });
            }
            other => {
                return Err(refuse(
                    field,
                    format!(
                        "type {other:?} here is not supported (nook mounts proc, sysfs, /dev, devpts, shm, mqueue and a read-only cgroup view on /sys/fs/cgroup itself)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `64m`, `1g`, `4096`.
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `linux.rootfsPropagation` as runc reads it.
fn root_propagation(value: &str) -> Result<(nook_ns::Propagation, bool), Error> {
    use nook_ns::Propagation::*;
    let (recursive, name) = match value.strip_prefix('r') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let propagation = match name {
        "shared" => Shared,
        "slave" => Slave,
        "private" => Private,
        "unbindable" => Unbindable,
        _ => return Err(refuse("linux.rootfsPropagation", format!("unknown propagation {value:?}"))),
    };
    Ok((propagation, recursive))
}

/// `linux.timeOffsets`: `monotonic` and `boottime`, as the kernel names its clocks.
fn clock_offsets(
    offsets: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<nook_sandbox::ClockOffsets, Error> {
    let mut out = nook_sandbox::ClockOffsets::default();
    for (clock, o) in offsets {
        let offset = nook_ns::ClockOffset::new(o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0));
        if offset.nanos >= 1_000_000_000 {
            return Err(refuse(format!("linux.timeOffsets.{clock}.nanosecs"), "must be below 1e9"));
        }
        match clock.as_str() {
            "monotonic" => out.monotonic = Some(offset),
            "boottime" => out.boottime = Some(offset),
            _ => return Err(refuse(format!("linux.timeOffsets.{clock}"), "unknown clock (monotonic or boottime)")),
        }
    }
    Ok(out)
}

fn linux(spec: &Spec, b: &mut SandboxBuilder) -> Result<CgroupSpec, Error> {
    let Some(l) = spec.linux() else { return Err(refuse("linux", "missing")) };
    let unsupported: [(&str, bool); 5] = [
        ("linux.mountLabel", l.mount_label().as_deref().is_some_and(|s| !s.is_empty())),
        ("linux.intelRdt", l.intel_rdt().is_some()),
        ("linux.personality", l.personality().is_some()),
        ("linux.memoryPolicy", l.memory_policy().is_some()),
        ("linux.netDevices", l.net_devices().is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(refuse(*field, "not supported yet"));
    }
    devices(l.devices().as_deref().unwrap_or_default(), b)?;
    // Namespaces.
    let mut set = NamespaceSet::new();
    let mut net = false;
    let mut joined = NamespaceSet::new();
    for ns in l.namespaces().iter().flatten() {
        let name = match ns.typ() {
            LinuxNamespaceType::Mount => "mount".to_owned(),
            LinuxNamespaceType::Network => "network".to_owned(),
            other => other.to_string(),
        };
        if let Some(path) = ns.path() {
            let kind = match ns.typ() {
                LinuxNamespaceType::Network => Namespace::Net,
                LinuxNamespaceType::Ipc => Namespace::Ipc,
                LinuxNamespaceType::Uts => Namespace::Uts,
                LinuxNamespaceType::Pid => Namespace::Pid,
                LinuxNamespaceType::Cgroup => Namespace::Cgroup,
                LinuxNamespaceType::Time => Namespace::Time,
                LinuxNamespaceType::Mount => Namespace::Mount,
                LinuxNamespaceType::User => Namespace::User,
            };
            if kind == Namespace::Mount && same_file(path, Path::new("/proc/self/ns/mnt")) {
                // runc would set the rootfs up there, pivoting the root of every process
                // of the host's namespace: refused.
                return Err(refuse(
                    format!("linux.namespaces[{name}].path"),
                    "the runtime's own mount namespace (the rootfs would be set up in it)",
                ));
            }
            b.join_namespace(kind, path);
            joined = joined.with(kind);
            continue;
        }
        let kind = match ns.typ() {
            LinuxNamespaceType::Mount => Namespace::Mount,
            LinuxNamespaceType::Cgroup => Namespace::Cgroup,
            LinuxNamespaceType::Uts => Namespace::Uts,
            LinuxNamespaceType::Ipc => Namespace::Ipc,
            LinuxNamespaceType::Pid => Namespace::Pid,
            LinuxNamespaceType::Time => Namespace::Time,
            LinuxNamespaceType::Network => {
                net = true;
                Namespace::Net
            }
            LinuxNamespaceType::User => {
                let maps = |v: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
                    v.map(|m| {
                        m.iter().fold(nook_ns::IdMap::new(), |acc, r| {
                            acc.with(nook_ns::IdMapping::new(r.container_id(), r.host_id(), r.size()))
                        })
                    })
                };
                let (uids, gids) = (maps(l.uid_mappings().as_ref()), maps(l.gid_mappings().as_ref()));
                let (Some(uids), Some(gids)) = (uids, gids) else {
                    return Err(refuse("linux.uidMappings/gidMappings", "a user namespace needs both"));
                };
                b.uid_map(uids).gid_map(gids);
                Namespace::User
            }
        };
        set = set.with(kind);
    }
    let mapped = l.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || l.gid_mappings().as_ref().is_some_and(|v| !v.is_empty());
    // With a user namespace joined by path the mappings describe that one (CRI-O gives
    // both); runc takes them and uses none: nor does nook.
    if mapped && !set.has(Namespace::User) && !joined.has(Namespace::User) {
        return Err(refuse("linux.uidMappings/gidMappings", "id mappings need a new user namespace"));
    }
    if joined.has(Namespace::Mount) && set.has(Namespace::User) {
        return Err(refuse(
            "linux.namespaces[mount].path",
            "a mount namespace joined by path with a new user namespace (its root could not set the rootfs up in it)",
        ));
    }
    if !(set.has(Namespace::Mount) || joined.has(Namespace::Mount))
        || !(set.has(Namespace::Pid) || joined.has(Namespace::Pid))
    {
        return Err(refuse(
            "linux.namespaces",
            "nook needs a new or joined mount namespace and a new or joined pid namespace",
        ));
    }
    b.namespaces(set);
    b.network(if net { NetworkMode::None } else { NetworkMode::Host });
    if let Some(offsets) = l.time_offsets() {
        let offsets = clock_offsets(offsets)?;
        if !offsets.is_empty() && !set.has(Namespace::Time) {
            return Err(refuse("linux.timeOffsets", "clock offsets need a new time namespace"));
        }
        b.clock_offsets(offsets);
    }
    // Unset: `rslave`, as runc (its `prepareRoot`), so mounts the host makes later below a
    // bound directory reach the container (never the other way).
    let (propagation, recursive) = match l.rootfs_propagation().as_deref().filter(|p| !p.is_empty()) {
        Some(p) => root_propagation(p)?,
        None => (nook_ns::Propagation::Slave, true),
    };
    b.root_propagation(propagation, recursive);
    // Cgroup.
    let mut cg = match l.cgroups_path() {
        Some(p) => cgroup_spec(p)?,
        None => CgroupSpec::new(""),
    };
    if let Some(r) = l.resources() {
        resources(r, &mut cg)?;
    }
    let nodes = l.devices().as_ref().is_some_and(|d| !d.is_empty());
    device_rules(l.resources().as_ref().and_then(|r| r.devices().as_deref()), nodes, &mut cg)?;
    b.cgroup(cg.clone());
    // Confinement.
    let sec = b.security_mut();
    sec.masked_paths = Some(l.masked_paths().iter().flatten().map(PathBuf::from).collect());
    sec.read_only_paths = Some(l.readonly_paths().iter().flatten().map(PathBuf::from).collect());
    sec.sysctls = l.sysctl().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    sec.seccomp = match l.seccomp() {
        None => SeccompMode::Unconfined,
        Some(s) => {
            let json = serde_json::to_vec(s).map_err(|e| refuse("linux.seccomp", e.to_string()))?;
            let profile = nook_sandbox::hardening::Profile::from_oci_json(&json)
                .map_err(|e| refuse("linux.seccomp", e.to_string()))?;
            SeccompMode::Profile(profile)
        }
    };
    Ok(cg)
}

/// Whether `a` and `b` are the same file (namespace files: the same namespace); `false`
/// when either cannot be read (the spawn reports a bad path).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// `cgroupsPath`: relative → below our own cgroup (the spec's parent left to the default);
/// absolute → that path from each hierarchy's root.
fn cgroup_spec(p: &Path) -> Result<CgroupSpec, Error> {
    let bad = || {
        refuse(
            "linux.cgroupsPath",
            format!("{} is not a cgroupfs path (a systemd slice:name:scope is not supported)", p.display()),
        )
    };
    if p.to_string_lossy().contains(':') {
        return Err(bad());
    }
    if p.is_absolute() {
        let name = p.file_name().ok_or_else(bad)?.to_string_lossy().into_owned();
        let mut cg = CgroupSpec::new(name);
        let parent = p.parent().ok_or_else(bad)?;
        cg.parent = Some(parent.to_path_buf());
        Ok(cg)
    } else {
        Ok(CgroupSpec::new(p.to_string_lossy().into_owned()))
    }
}

/// `linux.resources`: memory, pids and cpu (devices: [`device_rules`]) into the cgroup spec;
/// anything else refused.
fn resources(r: &LinuxResources, cg: &mut CgroupSpec) -> Result<(), Error> {
    let mapped = map_resources(r, "linux.resources")?;
    let res = &mut cg.resources;
    if let Some(m) = mapped.memory {
        let t = res.memory.get_or_insert_with(Default::default);
        (t.max, t.low, t.swap) = (m.max, m.low, m.swap.or(t.swap));
    }
    if let Some(p) = mapped.pids {
        res.pids.get_or_insert_with(Default::default).max = p.max;
    }
    if let Some(c) = mapped.cpu {
        let t = res.cpu.get_or_insert_with(Default::default);
        (t.shares, t.quota_us, t.period_us) = (c.shares, c.quota_us, c.period_us);
    }
    Ok(())
}

/// The part of `LinuxResources` nook maps — memory (limit, reservation → low, swap: OCI's is
/// memory+swap, the cgroup's swap alone), pids, cpu (shares, quota, period) — for `create`
/// and `update` alike. Every other field but `devices` (which the caller handles) is refused,
/// named `{prefix}.{field}`: never silently dropped.
pub(crate) fn map_resources(r: &LinuxResources, prefix: &str) -> Result<nook_cgroup::Resources, Error> {
    let refused: [(&str, bool); 5] = [
        ("blockIO", r.block_io().is_some()),
        ("hugepageLimits", r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty())),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().is_some()),
        ("unified", r.unified().as_ref().is_some_and(|v| !v.is_empty())),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(refuse(format!("{prefix}.{field}"), "not supported yet"));
    }
    let mut res = nook_cgroup::Resources::new();
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
    if let Some(m) = r.memory() {
        let extra = [
            ("kernel", m.kernel().is_some()),
            ("kernelTCP", m.kernel_tcp().is_some()),
            ("swappiness", m.swappiness().is_some()),
            ("disableOOMKiller", m.disable_oom_killer().unwrap_or(false)),
        ];
        if let Some((f, _)) = extra.iter().find(|(_, s)| *s) {
            return Err(refuse(format!("{prefix}.memory.{f}"), "not supported"));
        }
        let mem = res.memory.get_or_insert_with(Default::default);
        mem.max = positive(m.limit());
        mem.low = positive(m.reservation());
        if let (Some(total), Some(limit)) = (positive(m.swap()), mem.max) {
            mem.swap = Some(total.saturating_sub(limit));
        }
    }
    if let Some(p) = r.pids()
        && p.limit() > 0
    {
        res.pids.get_or_insert_with(Default::default).max = Some(p.limit() as u64);
    }
    if let Some(c) = r.cpu() {
        let extra = [
            ("realtimeRuntime", c.realtime_runtime().is_some()),
            ("realtimePeriod", c.realtime_period().is_some()),
            ("idle", c.idle().is_some()),
            ("burst", c.burst().is_some()),
            ("cpus", c.cpus().as_deref().is_some_and(|s| !s.is_empty())),
            ("mems", c.mems().as_deref().is_some_and(|s| !s.is_empty())),
        ];
        if let Some((f, _)) = extra.iter().find(|(_, s)| *s) {
            return Err(refuse(format!("{prefix}.cpu.{f}"), "not supported yet"));
        }
        let cpu = res.cpu.get_or_insert_with(Default::default);
        cpu.shares = c.shares();
        cpu.quota_us = positive(c.quota());
        cpu.period_us = c.period();
    }
    Ok(res)
}

/// `linux.devices`: nodes made in the container's `/dev` (`c`/`u`, `b`, `p`; fileMode
/// default 0666, uid/gid default 0).
fn devices(list: &[oci_spec::runtime::LinuxDevice], b: &mut SandboxBuilder) -> Result<(), Error> {
    use oci_spec::runtime::LinuxDeviceType as T;
    for d in list {
        let field = format!("linux.devices[{}]", d.path().display());
        let kind = match d.typ() {
            T::C | T::U => libc::S_IFCHR,
            T::B => libc::S_IFBLK,
            T::P => libc::S_IFIFO,
            T::A => return Err(refuse(field, "type \"a\" is not a device node type")),
        };
        let num = |n: i64| u32::try_from(n).map_err(|_| refuse(field.clone(), format!("bad device number {n}")));
        let mode = d.file_mode().unwrap_or(0o666);
        if mode & !0o7777 != 0 {
            return Err(refuse(field, format!("fileMode {mode:#o} has bits beyond the permission bits")));
        }
        b.device(nook_sandbox::DeviceNode {
            path: d.path().clone(),
            mode: kind | mode,
            major: num(d.major())?,
            minor: num(d.minor())?,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(())
}

/// `linux.resources.devices` and `linux.devices` → the cgroup's device policy, as runc builds
/// it: the config's rules in order (a rule for all devices with `rwm` sets the default and
/// drops the rules before it), then the default allowlist (nook's, Docker's set, where
/// runc adds its own, with runc's `c *:* m` and `b *:* m`); later rules win. As with runc,
/// a node of `linux.devices` is not allowed by being listed: the rules decide. Without
/// rules or nodes the facade's default policy applies.
fn device_rules(
    rules: Option<&[oci_spec::runtime::LinuxDeviceCgroup]>,
    nodes: bool,
    cg: &mut CgroupSpec,
) -> Result<(), Error> {
    use nook_cgroup::{DeviceAccess, DeviceKind, DevicePolicy, DeviceRule};
    use oci_spec::runtime::LinuxDeviceType as T;
    let rules = rules.unwrap_or_default();
    if rules.is_empty() && !nodes {
        return Ok(());
    }
    let field = "linux.resources.devices";
    let mut policy = DevicePolicy::deny_by_default(Vec::new());
    for r in rules {
        let access = match r.access().as_deref() {
            None | Some("") => DeviceAccess::all(),
            Some(a) => {
                let mut acc = DeviceAccess::empty();
                for c in a.chars() {
                    acc |= match c {
                        'r' => DeviceAccess::READ,
                        'w' => DeviceAccess::WRITE,
                        'm' => DeviceAccess::MKNOD,
                        _ => return Err(refuse(field, format!("bad access {a:?}"))),
                    };
                }
                acc
            }
        };
        let kind = match r.typ() {
            None | Some(T::A) => DeviceKind::All,
            Some(T::C | T::U) => DeviceKind::Char,
            Some(T::B) => DeviceKind::Block,
            Some(T::P) => return Err(refuse(field, "a rule for fifos (type \"p\") is not a device rule")),
        };
        let num = |n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| refuse(field, format!("bad device number {n}"))),
        };
        let (major, minor) = (num(r.major())?, num(r.minor())?);
        if kind == DeviceKind::All && major.is_none() && minor.is_none() && access == DeviceAccess::all() {
            policy = if r.allow() {
                DevicePolicy::allow_by_default(Vec::new())
            } else {
                DevicePolicy::deny_by_default(Vec::new())
            };
            continue;
        }
        policy.rule(DeviceRule { allow: r.allow(), kind, major, minor, access });
    }
    if !policy.default_allow {
        // As runc's default list: mknod of any device (CAP_MKNOD still decides; the nodes of
        // `linux.devices` are made inside the cgroup), then the default allowlist.
        for kind in [DeviceKind::Char, DeviceKind::Block] {
            policy.rule(DeviceRule { allow: true, kind, major: None, minor: None, access: DeviceAccess::MKNOD });
        }
        for rule in nook_sandbox::hardening::default_device_policy().rules {
            policy.rule(rule);
        }
    }
    policy.validate().map_err(|e| refuse(field, e.to_string()))?;
    cg.resources.devices = Some(policy);
    Ok(())
}
