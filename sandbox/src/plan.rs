//! From a validated [`SandboxSpec`] to the `nook_ns::Command` that creates the sandbox:
//! the mount plan (rootfs, `/dev`, `/etc` files, extra mounts, `pivot_root`, `/proc`,
//! `/sys`) as a list of [`MountStep`]s, the namespaces, id maps, environment and identity.
//! Pure except for `stat`s of host paths (which entries exist, which scratch directory is
//! free); nothing here changes the system. Everything it describes runs in the child,
//! between clone and exec, in nook-ns's allocation-free executor.

use std::path::{Path, PathBuf};

use nook_ns::{IdMap, MountStep, Namespace, NamespaceSet, Propagation};
use nook_unionfs::Upper;

use crate::error::ValidationError;
use crate::spec::{BindPropagation, DEFAULT_PATH, Mount, Rootfs, SandboxSpec};

/// Host directories the sandbox's private scratch tmpfs may be mounted on (in the child's
/// own mount namespace only, so the host never sees it): the first that exists and holds
/// nothing the plan reads from the host before `pivot_root`.
const SCRATCH_CANDIDATES: &[&str] = &["/tmp", "/mnt", "/run", "/media", "/srv", "/opt", "/var/tmp", "/home"];

/// The device nodes bind-mounted from the host into the sandbox's `/dev` (as Docker and
/// bubblewrap give them).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The longest `mount(2)` data (one page, NUL included).
const MAX_MOUNT_DATA: usize = 4095;

/// The child's side of a sandbox, ready for `nook_ns::Command`.
pub(crate) struct Plan {
    pub namespaces: NamespaceSet,
    pub steps: Vec<MountStep>,
    pub env: Vec<(String, String)>,
    pub uid_map: Option<IdMap>,
    pub gid_map: Option<IdMap>,
}

/// Builds the plan for a spec that passed [`SandboxSpec::validate`].
pub(crate) fn build(spec: &SandboxSpec) -> Result<Plan, ValidationError> {
    build_with(spec, &[])
}

/// One hierarchy of [`SandboxSpec::cgroup_view`]: its name below `/sys/fs/cgroup` (empty: the
/// v2 hierarchy alone, shown on `/sys/fs/cgroup` itself) and the sandbox's cgroup directory
/// in it on the host.
pub(crate) type CgroupView = (String, PathBuf);

/// [`build`], with the hierarchies of the sandbox's cgroup view (see
/// [`SandboxSpec::cgroup_view`]) mounted before `pivot_root`.
pub(crate) fn build_with(spec: &SandboxSpec, cgroup_view: &[CgroupView]) -> Result<Plan, ValidationError> {
    let ns = spec.effective_namespaces();
    // The mounts are made in a non-initial user namespace when one is joined too (its
    // restrictions apply as to a new one's): planned as for a new one.
    let mount_ns = if spec.joins(Namespace::User) { ns.with(Namespace::User) } else { ns };
    let steps = mount_steps(spec, mount_ns, cgroup_view)?;
    let mut env: Vec<(String, String)> = Vec::new();
    if !spec.env.contains_key("PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if let (Some(h), false) = (&spec.hostname, spec.env.contains_key("HOSTNAME")) {
        env.push(("HOSTNAME".into(), h.clone()));
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (uid_map, gid_map) = if ns.has(Namespace::User) {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        (
            Some(spec.uid_map.clone().unwrap_or_else(|| IdMap::single(0, uid, 1))),
            Some(spec.gid_map.clone().unwrap_or_else(|| IdMap::single(0, gid, 1))),
        )
    } else {
        (None, None)
    };
    Ok(Plan { namespaces: ns, steps, env, uid_map, gid_map })
}

/// The host uid of root in the user namespace the spec joins, where its path says whose it is
/// (`/proc/PID/ns/user`: that process's `uid_map`); `None` when it cannot be known (a
/// bind-mounted nsfs file), or root is not mapped there.
fn joined_user_root(spec: &SandboxSpec) -> Option<u32> {
    let j = spec.join_namespaces.iter().find(|j| j.kind == Namespace::User)?;
    let proc_dir = j.path.parent()?.parent()?;
    if proc_dir.parent() != Some(Path::new("/proc")) || !j.path.ends_with("ns/user") {
        return None;
    }
    let map = std::fs::read_to_string(proc_dir.join("uid_map")).ok()?;
    map.lines().find_map(|l| {
        let mut w = l.split_whitespace().map(str::parse::<u32>);
        match (w.next(), w.next()) {
            (Some(Ok(0)), Some(Ok(outside))) => Some(outside),
            _ => None,
        }
    })
}

/// `root` joined with an absolute in-sandbox path.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// One `MakeDir` per component of `path` below `root` (`mkdir -p`, existing ones are fine).
fn mkdir_p(steps: &mut Vec<MountStep>, root: &Path, path: &Path) {
    let mut cur = root.to_path_buf();
    for c in path.components().skip_while(|c| matches!(c, std::path::Component::RootDir)) {
        cur.push(c);
        steps.push(MountStep::mkdir(&cur));
    }
}

/// A free scratch directory: exists, and is not (an ancestor of) a host path the plan
/// reads before `pivot_root`.
fn scratch_dir(spec: &SandboxSpec) -> Result<PathBuf, ValidationError> {
    let mut used: Vec<&Path> = Vec::new();
    match &spec.rootfs {
        Rootfs::HostReadOnly | Rootfs::Image { .. } => {}
        Rootfs::Dir { path, .. } => used.push(path),
        Rootfs::Stack(stack) => {
            used.extend(stack.lower_dirs().iter().map(PathBuf::as_path));
            if let Upper::Dir { upper, work } = stack.upper_layer() {
                used.push(upper);
                used.push(work);
            }
        }
    }
    if let Rootfs::Image { store, .. } = &spec.rootfs {
        used.push(store);
    }
    for m in &spec.mounts {
        if let Mount::Bind { source, .. } = m {
            used.push(source);
        }
    }
    SCRATCH_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|c| c.is_dir() && !used.iter().any(|u| u.starts_with(c)))
        .map(Path::to_path_buf)
        .ok_or(ValidationError::NoScratchDir { candidates: SCRATCH_CANDIDATES })
}

/// The directories the rootfs's files are looked up in on the host, topmost first.
fn rootfs_dirs(rootfs: &Rootfs) -> Vec<PathBuf> {
    match rootfs {
        Rootfs::HostReadOnly => vec![PathBuf::from("/")],
        Rootfs::Dir { path, .. } => vec![path.clone()],
        Rootfs::Stack(stack) => {
            let mut d = Vec::new();
            if let Upper::Dir { upper, .. } = stack.upper_layer() {
                d.push(upper.clone());
            }
            d.extend(stack.lower_dirs().iter().rev().cloned());
            d
        }
        // Resolved to its stack before a plan is built (crate::image_run).
        Rootfs::Image { .. } => Vec::new(),
    }
}

/// What the rootfs has at `rel` (e.g. `etc/hosts`) before the sandbox starts, looked up
/// on the host: `Some(true)` a regular file, `Some(false)` something else (a symlink: not
/// replaced), `None` nothing.
fn rootfs_entry(rootfs: &Rootfs, rel: &str) -> Option<bool> {
    rootfs_metadata(rootfs, Path::new(rel)).map(|(_, m)| m.file_type().is_file())
}

/// The topmost layer's entry at `rel`: where it is and what it is (not followed).
fn rootfs_metadata(rootfs: &Rootfs, rel: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
    rootfs_dirs(rootfs).into_iter().find_map(|d| {
        let p = d.join(rel);
        std::fs::symlink_metadata(&p).ok().map(|m| (p, m))
    })
}

/// `path` (absolute, in the sandbox) with the symbolic links the root file system has along
/// it resolved the way the kernel resolves them inside the root (absolute links from the
/// root, `..` never above it; at most 40 links), so a mount target that is a link — an
/// image's `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf` — is created and
/// mounted where the link leads, as runc does. The child resolves the result inside the
/// root again; this only decides what is created.
fn resolve_in_rootfs(rootfs: &Rootfs, path: &Path) -> PathBuf {
    use std::collections::VecDeque;
    use std::path::Component;
    // The names and `..`s of a path, in order (`/` and `.` say nothing here).
    let names = |p: &Path| -> Vec<std::ffi::OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut rest: VecDeque<std::ffi::OsString> = names(path).into();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = rest.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&c);
        let rel = candidate.strip_prefix("/").unwrap_or(&candidate);
        let link = match rootfs_metadata(rootfs, rel) {
            Some((at, m)) if m.file_type().is_symlink() && links < 40 => std::fs::read_link(at).ok(),
            _ => None,
        };
        match link {
            Some(target) => {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                let mut front = names(&target);
                while let Some(f) = front.pop() {
                    rest.push_front(f);
                }
            }
            None => out = candidate,
        }
    }
    out
}

fn mount_steps(
    spec: &SandboxSpec,
    ns: NamespaceSet,
    cgroup_view: &[CgroupView],
) -> Result<Vec<MountStep>, ValidationError> {
    let s = scratch_dir(spec)?;
    let mut steps = Vec::with_capacity(48);
    let tmpfs_size = match &spec.rootfs {
        Rootfs::Stack(stack) => match stack.upper_layer() {
            Upper::Tmpfs { size: Some(n) } => Some(format!("mode=755,size={n}")),
            _ => None,
        },
        _ => None,
    };
    steps.push(MountStep::tmpfs(&s, Some(tmpfs_size.as_deref().unwrap_or("mode=755"))));
    let root = match &spec.rootfs {
        Rootfs::HostReadOnly if ns.has(Namespace::User) => {
            // overlayfs cannot take `/` as a lower layer in a user namespace: the host's
            // submounts below it are locked there, and the kernel refuses to clone such a
            // mount ("failed to clone lowerpath"). So rootless, the host root is a
            // recursive read-only bind (as bubblewrap does) with a tmpfs on /tmp.
            steps.push(MountStep::mkdir(s.join("root")));
            steps.push(MountStep::bind("/", s.join("root")).recursive().read_only());
            steps.push(MountStep::tmpfs(s.join("root/tmp"), Some("mode=1777")));
            s.join("root")
        }
        Rootfs::HostReadOnly => {
            for d in ["upper", "work", "root"] {
                steps.push(MountStep::mkdir(s.join(d)));
            }
            let data =
                format!("lowerdir=/,upperdir={},workdir={}", s.join("upper").display(), s.join("work").display());
            steps.push(MountStep::overlay(s.join("root"), data));
            s.join("root")
        }
        Rootfs::Dir { path, .. } => path.clone(),
        Rootfs::Stack(stack) => {
            let mut data = stack.mount_data().map_err(|e| ValidationError::LayerStack { source: e })?;
            if let Upper::Tmpfs { .. } = stack.upper_layer() {
                steps.push(MountStep::mkdir(s.join("upper")));
                steps.push(MountStep::mkdir(s.join("work")));
                data.push_str(&format!(",upperdir={},workdir={}", s.join("upper").display(), s.join("work").display()));
            }
            if data.len() > MAX_MOUNT_DATA {
                return Err(ValidationError::LayerStackTooLong { len: data.len(), max: MAX_MOUNT_DATA });
            }
            steps.push(MountStep::mkdir(s.join("root")));
            steps.push(MountStep::overlay(s.join("root"), data));
            s.join("root")
        }
        Rootfs::Image { .. } => return Err(ValidationError::ImageNotResolved),
    };

    // Whether mount points can be created in the root before `pivot_root`.
    let writable = match &spec.rootfs {
        Rootfs::HostReadOnly => !ns.has(Namespace::User),
        // In a user namespace, only where the namespace's root owns the directory (a root
        // file system of the host's root, unmapped there, is not).
        Rootfs::Dir { path, .. } if ns.has(Namespace::User) => {
            use std::os::unix::fs::MetadataExt;
            let root_outside = if spec.joins(Namespace::User) {
                joined_user_root(spec)
            } else {
                Some(
                    spec.uid_map
                        .as_ref()
                        .and_then(|m| m.ranges().iter().find(|r| r.inside == 0).map(|r| r.outside))
                        .unwrap_or_else(|| rustix::process::geteuid().as_raw()),
                )
            };
            root_outside.is_some_and(|r| std::fs::metadata(path).is_ok_and(|m| m.uid() == r))
        }
        Rootfs::Dir { .. } => true,
        Rootfs::Stack(stack) => !matches!(stack.upper_layer(), Upper::None),
        // Resolved into a stack with a container layer before planning (refused above).
        Rootfs::Image { .. } => true,
    };

    // /dev: a small tmpfs with the host's harmless device nodes bound in, a private devpts,
    // shm and mqueue.
    let dev = root.join("dev");
    steps.push(MountStep::mkdir(&dev));
    let dev_opts = if spec.devices.is_empty() { "mode=755,size=64k" } else { "mode=755,size=64k,dev" };
    steps.push(MountStep::tmpfs(&dev, Some(dev_opts)));
    for d in DEVICES {
        steps.push(MountStep::make_file(dev.join(d)));
        steps.push(MountStep::bind(Path::new("/dev").join(d), dev.join(d)));
    }
    for d in &spec.devices {
        if let Some(parent) = d.path.parent() {
            mkdir_p(&mut steps, &root, parent);
        }
        steps.push(MountStep::make_node(inside(&root, &d.path), d.mode, d.major, d.minor, d.uid, d.gid));
    }
    for d in ["pts", "shm", "mqueue"] {
        steps.push(MountStep::mkdir(dev.join(d)));
    }
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        steps.push(MountStep::symlink(target, dev.join(link)));
    }
    steps.push(MountStep::devpts(dev.join("pts")));
    steps.push(MountStep::tmpfs(dev.join("shm"), Some("mode=1777,size=64m")));
    if ns.has(Namespace::Ipc) || spec.joins(Namespace::Ipc) {
        steps.push(MountStep::mqueue(dev.join("mqueue")));
    }
    steps.push(MountStep::mkdir(root.join("proc")));
    steps.push(MountStep::mkdir(root.join("sys")));

    // /etc/hostname and /etc/hosts for the sandbox's own host name, written on the scratch
    // tmpfs and bound over the rootfs's files (a symlink there is left alone).
    if let Some(h) = &spec.hostname {
        let etc = s.join("etc");
        steps.push(MountStep::mkdir(&etc));
        let files = [("hostname", format!("{h}\n")), ("hosts", nook_netmodel::files::hosts_file(h, &[], &[]))];
        for (name, contents) in files {
            let rel = format!("etc/{name}");
            let target = root.join(&rel);
            match rootfs_entry(&spec.rootfs, &rel) {
                Some(false) => continue,
                Some(true) => {}
                // Nowhere to make a mount point on a read-only root: no such file then.
                None if !writable => continue,
                None => {
                    steps.push(MountStep::mkdir(root.join("etc")));
                    steps.push(MountStep::make_file(&target));
                }
            }
            steps.push(MountStep::write_file(etc.join(name), contents));
            steps.push(MountStep::bind(etc.join(name), &target));
        }
    }

    // The caller's mounts, in order. On a root where no mount point can be made (the
    // rootless host root, a stack without an upper), a target must already exist or lie on
    // a tmpfs mounted before it.
    // (`/dev` is the sandbox's own tmpfs.)
    let mut tmpfs_targets: Vec<&Path> = vec![Path::new("/dev")];
    if matches!(spec.rootfs, Rootfs::HostReadOnly) && ns.has(Namespace::User) {
        tmpfs_targets.push(Path::new("/tmp"));
    }
    let resolved: Vec<PathBuf> = spec.mounts.iter().map(|m| resolve_in_rootfs(&spec.rootfs, m.target())).collect();
    for (m, at) in spec.mounts.iter().zip(&resolved) {
        let target = inside(&root, at);
        if !writable {
            let on_tmpfs = tmpfs_targets.iter().any(|t| at.starts_with(t));
            let rel = at.strip_prefix("/").unwrap_or(at).to_string_lossy().into_owned();
            if !on_tmpfs && rootfs_entry(&spec.rootfs, &rel).is_none() {
                return Err(ValidationError::MountTargetMissing { target: m.target().to_owned() });
            }
        }
        if let Mount::Tmpfs { .. } = m {
            tmpfs_targets.push(at);
        }
        match m {
            Mount::Bind { source, read_only, propagation, .. } => {
                if source.is_dir() {
                    mkdir_p(&mut steps, &root, at);
                } else {
                    if let Some(parent) = at.parent() {
                        mkdir_p(&mut steps, &root, parent);
                    }
                    steps.push(MountStep::make_file(&target));
                }
                // Private: a bind in the namespace, whose `/` is private — or a slave under a
                // slave root, made private then. Slave and shared: a peer of the host's mount
                // (copied before the namespace's ties are cut), made a slave for one way.
                let step = match propagation {
                    BindPropagation::Private => MountStep::bind(source, &target).recursive(),
                    _ => MountStep::peer_bind(source, &target).recursive(),
                };
                steps.push(if *read_only { step.read_only() } else { step });
                let slave_root =
                    spec.root_propagation.is_some_and(|p| p.recursive && p.propagation == Propagation::Slave);
                match propagation {
                    BindPropagation::Private if slave_root => {
                        steps.push(MountStep::propagation(&target, Propagation::Private, true));
                    }
                    BindPropagation::Slave => steps.push(MountStep::propagation(&target, Propagation::Slave, true)),
                    _ => {}
                }
            }
            Mount::Tmpfs { size, .. } => {
                mkdir_p(&mut steps, &root, at);
                let opts = size.map(|n| format!("mode=755,size={n}"));
                steps.push(MountStep::tmpfs(&target, Some(opts.as_deref().unwrap_or("mode=755"))));
            }
        }
    }

    // /sys: a new read-only sysfs shows the sandbox's own network namespace; one can only be
    // mounted where the caller may administer that namespace, else the host's is bound in.
    let own_sysfs = ns.has(Namespace::Net) || !ns.has(Namespace::User);
    if !own_sysfs {
        steps.push(MountStep::bind("/sys", root.join("sys")).recursive().read_only());
    }
    // In a new user namespace (of a root caller's id mappings) the kernel mounts a new
    // proc or sysfs only while a fully visible one is in the mount namespace: before
    // `pivot_root`, as runc does. The cgroup view binds the host's cgroup directories: before
    // `pivot_root` too, on a sysfs mounted then.
    let view = !cgroup_view.is_empty();
    let early = ns.has(Namespace::User) && rustix::process::geteuid().is_root();
    if early {
        steps.push(MountStep::proc(root.join("proc")));
    }
    if (view || early) && own_sysfs {
        steps.push(MountStep::sysfs(root.join("sys")));
    }
    if view {
        steps.extend(cgroup_view_steps(&root.join("sys/fs/cgroup"), cgroup_view));
    }
    steps.push(if spec.no_pivot { MountStep::move_root(&root) } else { MountStep::pivot_root(&root) });
    // runc applies a requested root propagation again to the new root (the bind of the
    // root onto itself took its propagation from the old `/`).
    if let Some(p) = spec.root_propagation {
        steps.push(MountStep::propagation("/", p.propagation, p.recursive));
    }
    if !early {
        steps.push(MountStep::proc("/proc"));
    }
    if own_sysfs && !view && !early {
        steps.push(MountStep::sysfs("/sys"));
    }
    // Hardening: sysctls, masked and read-only paths, Landlock rules (as the sandbox sees
    // its paths), then the read-only root.
    steps.extend(crate::hardening::apply::mount_steps(&spec.security));
    if let Some(l) = &spec.security.landlock {
        for rule in &l.rules {
            // The path must exist in the sandbox: in its root, or at or below a mount of
            // the sandbox's own (`/proc`, `/sys`, `/dev`, the caller's mounts).
            let rel = rule.path.strip_prefix("/").unwrap_or(&rule.path).to_string_lossy().into_owned();
            let mounted = ["/proc", "/sys", "/dev"].iter().map(Path::new).any(|m| rule.path.starts_with(m))
                || spec.mounts.iter().any(|m| rule.path.starts_with(m.target()) || m.target().starts_with(&rule.path));
            if !mounted && !rel.is_empty() && rootfs_entry(&spec.rootfs, &rel).is_none() {
                return Err(ValidationError::Landlock {
                    path: Some(rule.path.clone()),
                    reason: "no such path in the sandbox",
                });
            }
            steps.push(MountStep::landlock_rule(&rule.path, crate::security::FsAccess::union(&rule.access)));
        }
    }
    if matches!(spec.rootfs, Rootfs::Dir { read_only: true, .. }) || spec.security.read_only_rootfs {
        steps.push(MountStep::remount_read_only("/"));
    }
    Ok(steps)
}

/// The mounts of [`SandboxSpec::cgroup_view`] on `at` (`<root>/sys/fs/cgroup`).
fn cgroup_view_steps(at: &Path, view: &[CgroupView]) -> Vec<MountStep> {
    if let [(name, dir)] = view
        && name.is_empty()
    {
        return vec![MountStep::bind(dir, at).read_only()];
    }
    let mut steps = vec![MountStep::tmpfs(at, Some("mode=755"))];
    for (name, dir) in view.iter().filter(|(name, _)| !name.is_empty()) {
        steps.push(MountStep::mkdir(at.join(name)));
        steps.push(MountStep::bind(dir, at.join(name)).read_only());
        if name.contains(',') {
            for c in name.split(',') {
                steps.push(MountStep::symlink(name, at.join(c)));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_pivots_into_an_overlay_of_the_host_root() {
        let spec = SandboxSpec {
            args: vec!["true".into()],
            hostname: Some("box".into()),
            mounts: vec![Mount::tmpfs("/work/a")],
            ..SandboxSpec::default()
        };
        let plan = build(&spec).unwrap();
        let pos = |want: &dyn Fn(&MountStep) -> bool| plan.steps.iter().position(want).unwrap();
        let overlay = pos(&|s| matches!(s, MountStep::Overlay { options, .. } if options.starts_with("lowerdir=/,")));
        let pivot = pos(&|s| matches!(s, MountStep::PivotRoot { .. }));
        let proc_ = pos(&|s| matches!(s, MountStep::Proc { target } if target == Path::new("/proc")));
        let work = pos(&|s| matches!(s, MountStep::Tmpfs { target, .. } if target.ends_with("root/work/a")));
        assert!(overlay < work && work < pivot && pivot < proc_);
        assert!(plan.env.contains(&("PATH".into(), DEFAULT_PATH.into())));
        assert!(plan.env.contains(&("HOSTNAME".into(), "box".into())));
        assert!(
            plan.steps.iter().any(|s| matches!(s, MountStep::WriteFile { path, .. } if path.ends_with("etc/hostname")))
        );
    }

    #[test]
    fn mount_targets_follow_the_roots_symlinks_inside_it() {
        let dir = std::env::temp_dir().join(format!("nk-plan-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", dir.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("/srv/data", dir.join("data")).unwrap();
        std::os::unix::fs::symlink("../../../../..", dir.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        let rootfs = Rootfs::dir(&dir);
        let r = |p: &str| resolve_in_rootfs(&rootfs, Path::new(p));
        assert_eq!(r("/etc/resolv.conf"), Path::new("/run/systemd/resolve/stub-resolv.conf"));
        assert_eq!(r("/data/x"), Path::new("/srv/data/x"));
        assert_eq!(r("/up/etc/passwd"), Path::new("/etc/passwd"), "never above the root");
        assert_eq!(r("/loop"), Path::new("/loop"), "a loop ends after 40 links");
        assert_eq!(r("/plain/path"), Path::new("/plain/path"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cgroup_view_is_mounted_before_pivot_root_on_an_early_sysfs() {
        let spec = SandboxSpec {
            args: vec!["true".into()],
            rootfs: Rootfs::dir("/tmp/nk-some-root"),
            ..SandboxSpec::default()
        };
        let view = [("cpu,cpuacct".to_owned(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/nk"))];
        let plan = build_with(&spec, &view).unwrap();
        let pos = |want: &dyn Fn(&MountStep) -> bool| plan.steps.iter().position(want);
        let pivot = pos(&|s| matches!(s, MountStep::PivotRoot { .. })).unwrap();
        let sysfs = pos(&|s| matches!(s, MountStep::Sysfs { .. })).unwrap();
        let bind = pos(&|s| {
            matches!(s, MountStep::Bind { target, read_only: true, .. } if target.ends_with("sys/fs/cgroup/cpu,cpuacct"))
        })
        .unwrap();
        let link = pos(&|s| matches!(s, MountStep::Symlink { path, .. } if path.ends_with("sys/fs/cgroup/cpuacct")));
        assert!(sysfs < bind && bind < pivot && link.is_some(), "{:#?}", plan.steps);
        assert_eq!(plan.steps.iter().filter(|s| matches!(s, MountStep::Sysfs { .. })).count(), 1);
    }

    #[test]
    fn the_scratch_dir_never_hides_the_rootfs() {
        let spec = SandboxSpec {
            args: vec!["true".into()],
            rootfs: Rootfs::dir("/tmp/nk-some-root"),
            ..SandboxSpec::default()
        };
        let s = scratch_dir(&spec).unwrap();
        assert!(!Path::new("/tmp/nk-some-root").starts_with(&s), "{s:?}");
    }
}
