//! [`Cgroup`]: the owning handle. Creates the directories (one per hierarchy that manages
//! a requested controller, plus the v2 directory whenever a v2 tree is mounted), applies
//! limits, adds processes, freezes, kills, and removes on drop what it created.
//!
//! Every directory is reached from the fd of its hierarchy's mount point, never through a
//! path the kernel resolves from `/` (see `at.rs`): the handle keeps an fd of each cgroup
//! directory and of its parent, writes files relative to the first and removes with
//! `unlinkat` relative to the second.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::at;
use crate::controller::{Controller, Resources, V2Support, cpuset, hugetlb};
use crate::error::{Error, Result, SysContext};
use crate::hierarchy::{Hierarchies, Hierarchy, Location, Version};
use crate::spec::{CgroupSpec, HostFacts};
use crate::sys;

/// The limit files [`Cgroup::limit_values`] reads (v1 and v2 names; a directory has some).
pub const LIMIT_FILES: &[&str] = &[
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.swap.max",
    "memory.limit_in_bytes",
    "memory.soft_limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "pids.max",
    "cpu.max",
    "cpu.weight",
    "cpu.cfs_quota_us",
    "cpu.cfs_period_us",
    "cpu.shares",
    "cpuset.cpus",
    "cpuset.mems",
    "io.max",
    "io.weight",
    "blkio.weight",
    "devices.list",
    "cgroup.max.descendants",
    "cgroup.max.depth",
];

/// One directory of the cgroup, in one hierarchy.
#[derive(Debug)]
pub(crate) struct Dir {
    pub version: Version,
    /// For display and the public path accessors; never used to reach the directory.
    pub path: PathBuf,
    /// v1: the controllers of that hierarchy.
    pub controllers: Vec<String>,
    /// The directory, opened beneath the hierarchy root.
    pub fd: OwnedFd,
    /// Its parent directory and its name there (for `unlinkat`).
    parent: OwnedFd,
    name: OsString,
    /// Its device and inode: before removing by name, the name must still be this directory.
    identity: (u64, u64),
}

impl Dir {
    /// Opens the directory `name` of `parent` (beneath it: no symlink, no other mount) as a
    /// cgroup directory of `version` (`path` for display and errors).
    pub(crate) fn open(
        parent: OwnedFd,
        name: OsString,
        path: PathBuf,
        version: Version,
        controllers: Vec<String>,
    ) -> Result<Dir> {
        let fd = at::open_dir(parent.as_fd(), Path::new(&name)).beneath("openat2", &path)?;
        let identity = at::identity(fd.as_fd()).sys_at("fstat", &path)?;
        Ok(Dir { version, path, controllers, fd, parent, name, identity })
    }

    /// Writes `value` to `file` in one `write(2)`.
    pub(crate) fn write(&self, file: &str, value: &str) -> Result<()> {
        at::write(self.fd.as_fd(), &self.path, file, value)
    }

    /// Writes each of `values` to `file`, in order, through one open file.
    pub(crate) fn write_each(&self, file: &str, values: &[&str]) -> Result<()> {
        at::write_each(self.fd.as_fd(), &self.path, file, values)
    }

    /// Reads `file`.
    pub(crate) fn read(&self, file: &str) -> Result<String> {
        at::read(self.fd.as_fd(), &self.path, file)
    }

    /// Whether the directory has `file`.
    pub(crate) fn has(&self, file: &str) -> bool {
        at::exists(self.fd.as_fd(), file)
    }
}

/// A directory made on the way to a cgroup directory (a nested name `a/b`, or a parent that
/// did not exist yet): removed after the cgroup directories if it is empty by then.
#[derive(Debug)]
struct Made {
    parent: OwnedFd,
    name: OsString,
    path: PathBuf,
}

/// A cgroup, created ([`Cgroup::create`]) or opened ([`Cgroup::open`]).
///
/// A created cgroup is owned: dropping the handle kills what is inside and removes its
/// directories (best effort); [`Cgroup::remove`] does the same and reports every failure;
/// [`Cgroup::leak`] keeps it. `create` never adopts a cgroup that is already there: the
/// `mkdir` that makes each directory is the claim, and a name that exists is
/// [`Error::Exists`] (with whatever was made before undone).
///
/// An opened cgroup is not owned: dropping its handle leaves the cgroup and its processes
/// alone. Only an explicit [`Cgroup::kill_all`] or [`Cgroup::remove`] touches them.
///
/// ```no_run
/// use nook_cgroup::{Cgroup, CgroupSpec};
///
/// let mut spec = CgroupSpec::new("nk-doc");
/// spec.resources.pids.get_or_insert_default().max(32);
/// let cg = Cgroup::create(&spec)?;
/// let worker = std::process::Command::new("sleep").arg("60").spawn().expect("spawn");
/// cg.add_pid(worker.id())?;
/// // Dropping `cg` (or `cg.remove()`) kills the worker: never put the calling process in it.
/// # Ok::<(), nook_cgroup::Error>(())
/// ```
#[derive(Debug)]
pub struct Cgroup {
    hierarchies: Hierarchies,
    dirs: Vec<Dir>,
    device_program: Option<OwnedFd>,
    /// Directories above a cgroup directory that creating it made, top-down; removed
    /// (when empty) after the cgroup directories.
    ancestors: Vec<Made>,
    /// Whether dropping the handle tears the cgroup down: set for a created cgroup until
    /// `remove` or `leak`; never for an opened one.
    live: bool,
    /// Created (and so owned) by this handle, not opened.
    owned: bool,
}

/// Where one directory of the cgroup goes.
struct Planned<'a> {
    hier: &'a Hierarchy,
    version: Version,
    controllers: Vec<String>,
    /// The parent, relative to the mount point.
    parent_rel: PathBuf,
    /// The name below the parent (`a/b` nests).
    name: &'a Path,
}

impl Planned<'_> {
    fn path(&self) -> PathBuf {
        self.hier.mount_point.join(&self.parent_rel).join(self.name)
    }
}

impl Cgroup {
    /// Discovers the host's hierarchies, validates `spec` against them, creates the cgroup
    /// and applies its limits. Nothing is written unless the whole spec is valid; if a later
    /// step fails, what was created is removed again.
    ///
    /// The cgroup must not exist yet, in any hierarchy: an existing one is
    /// [`Error::Exists`] and is left as it is (use [`Cgroup::open`] for it). A parent that
    /// does not exist is created (and removed again with the cgroup when empty).
    pub fn create(spec: &CgroupSpec) -> Result<Cgroup> {
        Cgroup::create_in(Hierarchies::discover()?, spec)
    }

    /// The directories [`Cgroup::create_in`] would create for `spec`, without creating
    /// anything: each hierarchy's mount point, its version and the cgroup's directory there
    /// (the v2 hierarchy first, then the v1 hierarchies of the requested controllers).
    pub fn planned_dirs(hierarchies: &Hierarchies, spec: &CgroupSpec) -> Result<Vec<(PathBuf, Version, PathBuf)>> {
        Ok(plan_dirs(hierarchies, spec)?.iter().map(|p| (p.hier.mount_point.clone(), p.version, p.path())).collect())
    }

    /// [`Cgroup::create`] with hierarchies discovered (or adjusted) by the caller.
    pub fn create_in(hierarchies: Hierarchies, spec: &CgroupSpec) -> Result<Cgroup> {
        spec.validate()?;
        let facts = {
            let plan = plan_dirs(&hierarchies, spec)?;
            host_facts(&hierarchies, &plan, spec)?
        };
        spec.validate_against(&facts)?;

        let mut cg = Cgroup {
            hierarchies,
            dirs: Vec::new(),
            device_program: None,
            ancestors: Vec::new(),
            live: true,
            owned: true,
        };
        let result = (|| {
            let hierarchies = cg.hierarchies.clone();
            let v2_names = v2_controller_names(&hierarchies, &spec.resources);
            let plan = plan_dirs(&hierarchies, spec)?;
            let mut roots = Vec::with_capacity(plan.len());
            // Where creating a directory first changes the tree above it (v2: processes
            // moved to a leaf, controllers enabled), a cgroup that is already there is
            // refused before anything changes. That is only the early answer: the `mkdir`
            // in `create_one` stays the claim, and a clash there (a race, or a directory of
            // another hierarchy) undoes what was made.
            let prepares = spec.leaf_for_parent_processes.is_some() || !v2_names.is_empty();
            for p in &plan {
                let root = at::open_root(&p.hier.mount_point, p.version)?;
                if prepares && at::open_dir(root.as_fd(), &p.parent_rel.join(p.name)).is_ok() {
                    return Err(Error::Exists { path: p.path() });
                }
                roots.push(root);
            }
            for (p, root) in plan.iter().zip(roots) {
                create_one(&mut cg, p, root, spec, &v2_names)?;
            }
            // Validated above (`update` would validate again).
            spec.resources.apply(&mut cg)
        })();
        match result {
            Ok(()) => Ok(cg),
            Err(cause) => Err(cg.abandon(cause)),
        }
    }

    /// A create failed with `cause`: removes what it made. Errors of that removal are not
    /// dropped: they come back with the cause as [`Error::Cleanup`].
    fn abandon(mut self, cause: Error) -> Error {
        self.live = false;
        Error::with_cleanup(cause, self.remove_dirs().err().into_iter().collect())
    }

    /// Opens an existing cgroup: the directories `spec` names (its parent and name) in
    /// the hierarchies its controllers need, as [`Cgroup::create`] would place them. Writes
    /// nothing (apply limits with [`Cgroup::update`]).
    ///
    /// The handle does not own the cgroup: dropping it neither kills the processes inside
    /// nor removes anything. A directory that is missing is an [`Error::Sys`] with `ENOENT`.
    pub fn open(spec: &CgroupSpec) -> Result<Cgroup> {
        Cgroup::open_in(Hierarchies::discover()?, spec)
    }

    /// [`Cgroup::open`] with hierarchies discovered (or adjusted) by the caller.
    pub fn open_in(hierarchies: Hierarchies, spec: &CgroupSpec) -> Result<Cgroup> {
        spec.validate()?;
        let mut dirs = Vec::new();
        for p in plan_dirs(&hierarchies, spec)? {
            let root = at::open_root(&p.hier.mount_point, p.version)?;
            let parent_rel = p.parent_rel.join(p.name.parent().unwrap_or(Path::new("")));
            let parent_path = p.hier.mount_point.join(&parent_rel);
            let parent = at::open_dir(root.as_fd(), &parent_rel).beneath("openat2", &parent_path)?;
            let name = p.name.file_name().expect("validated: a name has a last component").to_owned();
            dirs.push(Dir::open(parent, name, p.path(), p.version, p.controllers)?);
        }
        Ok(Cgroup { hierarchies, dirs, device_program: None, ancestors: Vec::new(), live: false, owned: false })
    }

    /// Whether this handle created the cgroup (and removes it on drop) — `false` for
    /// [`Cgroup::open`], and after [`Cgroup::leak`].
    pub fn is_owned(&self) -> bool {
        self.owned && self.live
    }

    /// Applies (or changes) limits on the live cgroup. Only controllers the cgroup was
    /// created with can be set.
    pub fn update(&mut self, resources: &Resources) -> Result<()> {
        resources.validate()?;
        resources.apply(self)
    }

    /// Where the hierarchies are.
    pub fn hierarchies(&self) -> &Hierarchies {
        &self.hierarchies
    }

    /// Every directory of this cgroup (one per hierarchy it lives in).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// The v2 directory, when a v2 hierarchy is mounted.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2_entry().map(|d| d.path.as_path())
    }

    pub(crate) fn v2_entry(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.version == Version::V2)
    }

    /// The directory managing `controller` and its version, if this cgroup has it.
    pub fn dir_of(&self, controller: Controller) -> Option<(&Path, Version)> {
        self.entry_of(controller).map(|d| (d.path.as_path(), d.version))
    }

    pub(crate) fn entry_of(&self, controller: Controller) -> Option<&Dir> {
        match self.hierarchies.locate(controller)? {
            Location::V1(h) => self
                .dirs
                .iter()
                .find(|d| d.version == Version::V1 && h.has(controller.v1_name()) && d.controllers == h.controllers),
            Location::V2(_) => self.v2_entry(),
        }
    }

    pub(crate) fn require_dir(&self, controller: Controller) -> Result<(&Dir, Version)> {
        self.entry_of(controller).map(|d| (d, d.version)).ok_or_else(|| Error::ControllerUnavailable {
            controller,
            detail: "the cgroup was not created with this controller (set it in the spec)".to_owned(),
        })
    }

    pub(crate) fn set_device_program(&mut self, prog: Option<OwnedFd>) -> Option<OwnedFd> {
        std::mem::replace(&mut self.device_program, prog)
    }

    /// Moves process `pid` into the cgroup (every hierarchy). Each write to `cgroup.procs`
    /// takes the kernel's global threadgroup lock for writing, which waits for an RCU grace
    /// period (~12 ms on the development VM) unless another move happened just before: for a
    /// process about to be started, [`Cgroup::dir_fd`] (`CLONE_INTO_CGROUP`) and
    /// [`Cgroup::v1_tasks_files`] (the child moves itself) avoid it.
    pub fn add_pid(&self, pid: u32) -> Result<()> {
        for d in &self.dirs {
            d.write("cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens the v2 directory for `CLONE_INTO_CGROUP` (e.g. `nook_ns::Command::cgroup`).
    /// On hybrid hosts the child still has to get into the v1 directories: best by moving
    /// itself ([`Cgroup::v1_tasks_files`]), or with [`Cgroup::add_pid`] while it is paused.
    pub fn dir_fd(&self) -> Result<OwnedFd> {
        let dir = self.v2_entry().ok_or(Error::ControllerUnavailable {
            controller: Controller::Freezer,
            detail: "CLONE_INTO_CGROUP needs a cgroup2 hierarchy, and none is mounted".to_owned(),
        })?;
        dir.fd.try_clone().sys_at("dup", &dir.path)
    }

    /// The `tasks` files of the cgroup's v1 directories, opened for writing (close-on-exec),
    /// one per v1 hierarchy (none on a pure v2 host): for a child that moves itself in
    /// (`nook_ns::Command::cgroup_v1`), which costs the kernel far less than
    /// [`Cgroup::add_pid`] (no global lock, no RCU grace period). Together with
    /// [`Cgroup::dir_fd`] (`CLONE_INTO_CGROUP`) a child is born in or moves itself into
    /// every directory of the cgroup.
    pub fn v1_tasks_files(&self) -> Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .filter(|d| d.version == Version::V1)
            .map(|d| at::open_write(d.fd.as_fd(), &d.path, "tasks"))
            .collect()
    }

    /// The processes in the cgroup (from the first directory; every hierarchy holds them).
    pub fn procs(&self) -> Result<Vec<u32>> {
        let dir = self.v2_entry().or_else(|| self.dirs.first()).ok_or(Error::NoHierarchy)?;
        read_pids(dir.fd.as_fd(), &dir.path)
    }

    /// Kills every process in the cgroup and waits until it is empty: v2 `cgroup.kill`
    /// (Linux 5.14+); otherwise freeze, SIGKILL each task (also those in cgroups below it, in
    /// every hierarchy), thaw, repeat until empty.
    pub fn kill_all(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(dir) = self.v2_entry()
            && dir.has("cgroup.kill")
        {
            dir.write("cgroup.kill", "1")?;
            return wait_until(deadline, "the cgroup to empty", || Ok(self.procs()?.is_empty()));
        }
        self.signal_until_only(&[], deadline, "the cgroup to empty")
    }

    /// Kills every process in the cgroup except those in `keep` (a long-lived init that
    /// holds the namespaces of a reused sandbox) and waits until only they are left, or
    /// `timeout` passes (then an error): freeze, SIGKILL each other task (also in cgroups
    /// below it, in every hierarchy), thaw, repeat. Nothing is frozen when nothing but
    /// `keep` is there (the common case costs one read of `cgroup.procs`).
    pub fn kill_all_but(&self, keep: &[u32], timeout: Duration) -> Result<()> {
        self.signal_until_only(keep, Instant::now() + timeout, "the cgroup to hold only the kept processes")
    }

    /// Freeze, SIGKILL every task but `keep` (in every directory and the cgroups below them:
    /// a v1 task may sit in a nested child, or in one hierarchy only), thaw; until only
    /// `keep` is left or `deadline` (an error naming `what`).
    fn signal_until_only(&self, keep: &[u32], deadline: Instant, what: &'static str) -> Result<()> {
        let can_freeze = self.freezer().is_ok();
        wait_until(deadline, what, || {
            let mut pids = Vec::new();
            for d in &self.dirs {
                tree_pids(d.fd.as_fd(), &d.path, &mut pids)?;
            }
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|p| !keep.contains(p));
            if pids.is_empty() {
                return Ok(true);
            }
            if can_freeze {
                self.freeze()?;
            }
            for pid in pids {
                sys::kill(pid);
            }
            if can_freeze {
                self.thaw()?;
            }
            Ok(false)
        })
    }

    /// The limits the cgroup has now, file by file (`memory.max`, `memory.limit_in_bytes`,
    /// `pids.max`, `cpu.max`, `cpu.cfs_quota_us`, ... — whichever of [`LIMIT_FILES`] its
    /// directories have), as the kernel shows them: compare two of them to tell whether a
    /// limit was changed in between.
    pub fn limit_values(&self) -> Result<Vec<(PathBuf, String)>> {
        self.limit_files()?.values()
    }

    /// The limit files of [`Cgroup::limit_values`], opened once: [`LimitFiles::values`]
    /// reads them again through the open descriptors (one `pread` each, no path lookup),
    /// for a caller that compares them often (a pool's reset). A file the kernel adds
    /// later is not among them.
    pub fn limit_files(&self) -> Result<LimitFiles> {
        let mut files = Vec::new();
        for d in &self.dirs {
            for f in LIMIT_FILES {
                match at::open_file(d.fd.as_fd(), f) {
                    Ok(fd) => files.push((d.path.join(f), std::fs::File::from(fd))),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(at::err("open", d.path.join(f), e)),
                }
            }
        }
        Ok(LimitFiles { files })
    }

    /// Kills what is inside and removes every directory (nested children first, retrying
    /// on EBUSY while processes exit). Reports every failure.
    ///
    /// This is explicit, so it also tears down a cgroup opened with [`Cgroup::open`]
    /// (dropping such a handle does not).
    pub fn remove(mut self) -> Result<()> {
        self.live = false;
        self.teardown()
    }

    /// Gives up ownership: the directories stay after the handle is gone. Returns them.
    pub fn leak(mut self) -> Vec<PathBuf> {
        self.live = false;
        self.device_program.take();
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// [`Cgroup::remove`] and drop: kill what is inside, remove every directory.
    fn teardown(&mut self) -> Result<()> {
        // The device program goes with the v2 directory; close our fd first.
        self.device_program.take();
        // Fast path: the kernel removes an empty cgroup without children with one rmdir,
        // and refuses (EBUSY) while it holds processes or child cgroups. So try that first,
        // last directory first as below, and kill and walk the trees only for what is left.
        while let Some(d) = self.dirs.last() {
            match still_there(d).and_then(|()| at::rmdir(d.parent.as_fd(), &d.name).sys_at("unlinkat", &d.path)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(_) => break,
            }
            self.dirs.pop();
        }
        let what = self.what();
        let killed = if self.dirs.is_empty() { Ok(()) } else { self.kill_all() };
        let mut errors: Vec<Error> = killed.err().into_iter().collect();
        match self.remove_dirs() {
            Err(Error::Teardown { errors: more, .. }) => errors.extend(more),
            Err(e) => errors.push(e),
            Ok(()) => {}
        }
        Error::teardown(what, errors)
    }

    /// What a [`Error::Teardown`] names: the cgroup's first directory.
    fn what(&self) -> String {
        match self.dirs.first() {
            Some(d) => format!("cgroup {}", d.path.display()),
            None => "cgroup".to_owned(),
        }
    }

    /// Removes every directory and the ancestors the create made; keeps going after a
    /// failure and reports all of them as [`Error::Teardown`].
    fn remove_dirs(&mut self) -> Result<()> {
        let what = self.what();
        let mut failures = Vec::new();
        // The device program goes with the v2 directory; close our fd first.
        self.device_program.take();
        for d in self.dirs.drain(..).rev() {
            if let Err(e) = still_there(&d).and_then(|()| remove_tree(d.parent.as_fd(), &d.name, &d.path))
                && e.raw_os_error() != Some(libc::ENOENT)
            {
                failures.push(e);
            }
        }
        // Deepest first; one that holds another cgroup by now is not ours to remove.
        for m in self.ancestors.drain(..).rev() {
            match at::rmdir(m.parent.as_fd(), &m.name) {
                Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTEMPTY | libc::EBUSY)) => {
                    failures.push(Error::Sys { call: "unlinkat", path: Some(m.path), source: e });
                }
                _ => {}
            }
        }
        Error::teardown(what, failures)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.live && self.owned {
            let _ = self.teardown();
        }
    }
}

/// Checks that the name of `d` in its parent is still the directory the handle holds (not
/// one someone put there after renaming ours away): `ENOENT` when it is gone.
fn still_there(d: &Dir) -> Result<()> {
    match at::identity_at(d.parent.as_fd(), &d.name) {
        Ok(id) if id == d.identity => Ok(()),
        Ok(_) => Err(Error::Unsafe {
            path: d.path.clone(),
            reason: "the directory there is no longer the cgroup this handle holds (renamed, replaced or mounted over)",
            source: std::io::Error::from_raw_os_error(libc::ESTALE),
        }),
        Err(e) => Err(e).sys_at("fstatat", &d.path),
    }
}

/// Creates one directory of the cgroup: walks from the hierarchy root (`root`) to the parent
/// (creating what is missing, preparing v2 controllers and the leaf), then claims the name
/// with one `mkdir` — `EEXIST` is [`Error::Exists`].
fn create_one(cg: &mut Cgroup, p: &Planned<'_>, root: OwnedFd, spec: &CgroupSpec, v2_names: &[&str]) -> Result<()> {
    let is_cpuset = p.version == Version::V1 && p.controllers.iter().any(|c| c == "cpuset");
    let v2_prepare = p.version == Version::V2 && (spec.leaf_for_parent_processes.is_some() || !v2_names.is_empty());
    let parent_rel = p.parent_rel.join(p.name.parent().unwrap_or(Path::new("")));
    let name: &OsStr = p.name.file_name().expect("validated: a name has a last component");
    let path = p.path();

    // Common case: the parent exists and nothing is to be prepared: one openat2.
    let fast = if v2_prepare {
        None
    } else {
        match at::open_dir(root.as_fd(), &parent_rel) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e).beneath("openat2", p.hier.mount_point.join(&parent_rel)),
        }
    };
    let parent = match fast {
        Some(fd) => fd,
        None => {
            // The chain from the root to the parent, creating what is missing.
            let mut cur_path = p.hier.mount_point.clone();
            let mut chain: Vec<(OwnedFd, PathBuf)> = vec![(root, cur_path.clone())];
            for comp in parent_rel.components() {
                let comp = comp.as_os_str();
                cur_path.push(comp);
                let (cur, _) = chain.last().expect("the root is first");
                let next = match at::open_dir(cur.as_fd(), Path::new(comp)) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        let made = match crate::at::failpoint("cgroup.mkdir", cur_path.display())
                            .and_then(|()| at::mkdir(cur.as_fd(), comp))
                        {
                            Ok(()) => true,
                            // Made by someone else meanwhile: a parent, not ours.
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
                            Err(e) => return Err(e).sys_at("mkdirat", &cur_path),
                        };
                        if made {
                            let parent = cur.try_clone().sys_at("dup", &cur_path)?;
                            cg.ancestors.push(Made { parent, name: comp.to_owned(), path: cur_path.clone() });
                        }
                        let fd = at::open_dir(cur.as_fd(), Path::new(comp)).beneath("openat2", &cur_path)?;
                        if made && is_cpuset {
                            cpuset::init_v1(cur.as_fd(), fd.as_fd(), &cur_path)?;
                        }
                        fd
                    }
                    Err(e) => return Err(e).beneath("openat2", &cur_path),
                };
                chain.push((next, cur_path.clone()));
            }
            if p.version == Version::V2 {
                let (parent, parent_path) = chain.last().expect("the root is first");
                if let Some(leaf) = &spec.leaf_for_parent_processes {
                    move_parent_processes_to_leaf(parent.as_fd(), parent_path, leaf)?;
                }
                enable_v2_controllers(&chain, v2_names)?;
            }
            chain.pop().expect("the root is first").0
        }
    };

    // The claim: exactly one creator gets the mkdir.
    match crate::at::failpoint("cgroup.mkdir", path.display()).and_then(|()| at::mkdir(parent.as_fd(), name)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(Error::Exists { path }),
        Err(e) => return Err(e).sys_at("mkdirat", &path),
    }
    // Ours (just made), not yet in `cg.dirs`: if a step fails before it is, remove it here.
    let undo = |cause: Error| {
        let cleanup = at::rmdir(parent.as_fd(), name).sys_at("unlinkat", &path).err();
        Error::with_cleanup(cause, cleanup.into_iter().collect())
    };
    let fd = at::open_dir(parent.as_fd(), Path::new(name)).beneath("openat2", &path).map_err(undo)?;
    let identity = at::identity(fd.as_fd()).sys_at("fstat", &path).map_err(undo)?;
    let controllers = p.controllers.clone();
    cg.dirs.push(Dir { version: p.version, path, controllers, fd, parent, name: name.to_owned(), identity });
    if is_cpuset {
        let d = cg.dirs.last().expect("just pushed");
        cpuset::init_v1(d.parent.as_fd(), d.fd.as_fd(), &d.path)?;
    }
    Ok(())
}

/// Which directories to create: the v2 one whenever v2 is mounted, and the v1 hierarchy of
/// every requested controller that lives on v1. Errors if a requested controller is
/// nowhere, or the parent is not visible under a hierarchy's mount.
fn plan_dirs<'a>(h: &'a Hierarchies, spec: &'a CgroupSpec) -> Result<Vec<Planned<'a>>> {
    let mut dirs: Vec<Planned<'a>> = Vec::new();
    let one = |hier: &'a Hierarchy| -> Result<Planned<'a>> {
        Ok(Planned {
            hier,
            version: hier.version,
            controllers: if hier.version == Version::V1 { hier.controllers.clone() } else { Vec::new() },
            parent_rel: parent_rel(hier, spec)?,
            name: Path::new(&spec.name),
        })
    };
    for controller in spec.resources.requested() {
        match h.require(controller)? {
            Location::V1(hier) => {
                if dirs.iter().any(|d| d.version == Version::V1 && d.controllers == hier.controllers) {
                    continue;
                }
                dirs.push(one(hier)?);
            }
            Location::V2(_) => {}
        }
    }
    if let Some(v2) = &h.v2 {
        dirs.insert(0, one(v2)?);
    } else if dirs.is_empty() {
        // Pure v1 with nothing requested: still create somewhere so the cgroup can hold
        // processes (the pids hierarchy if present, else the first).
        let hier = h.v1.iter().find(|x| x.has("pids")).or(h.v1.first()).ok_or(Error::NoHierarchy)?;
        dirs.push(one(hier)?);
    }
    Ok(dirs)
}

/// The parent of the cgroup in `hier`, relative to its mount point: the spec's parent or
/// the caller's own cgroup.
fn parent_rel(hier: &Hierarchy, spec: &CgroupSpec) -> Result<PathBuf> {
    let parent = spec.parent.as_ref().unwrap_or(&hier.own_cgroup);
    hier.rel_of(parent)
        .ok_or_else(|| Error::ParentNotVisible { parent: parent.clone(), mount_point: hier.mount_point.clone() })
}

fn host_facts(h: &Hierarchies, plan: &[Planned<'_>], spec: &CgroupSpec) -> Result<HostFacts> {
    let mut facts = HostFacts::default();
    if spec.resources.cpuset.is_some()
        && let Some(p) = plan_dir_of(h, plan, Controller::Cpuset)
    {
        // The cgroup's parent; when it does not exist yet, the nearest ancestor that does.
        let root = at::open_root(&p.hier.mount_point, p.version)?;
        let mut rel = p.parent_rel.join(p.name.parent().unwrap_or(Path::new("")));
        let parent = loop {
            match at::open_dir(root.as_fd(), &rel) {
                Ok(fd) => break fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && rel.pop() => {}
                Err(e) => return Err(e).beneath("openat2", p.hier.mount_point.join(&rel)),
            }
        };
        let parent_path = p.hier.mount_point.join(&rel);
        (facts.parent_cpus, facts.parent_mems) = cpuset::parent_sets(parent.as_fd(), &parent_path, p.version)?;
    }
    if !spec.resources.hugetlb.is_empty() {
        facts.huge_page_sizes = hugetlb::host_page_sizes();
    }
    Ok(facts)
}

fn plan_dir_of<'p, 'a>(h: &Hierarchies, plan: &'p [Planned<'a>], c: Controller) -> Option<&'p Planned<'a>> {
    match h.locate(c)? {
        Location::V1(hier) => plan.iter().find(|d| d.version == Version::V1 && d.controllers == hier.controllers),
        Location::V2(_) => plan.iter().find(|d| d.version == Version::V2),
    }
}

/// Enables the v2 controllers `names` in the `cgroup.subtree_control` of every directory of
/// `chain` (the hierarchy root down to the new cgroup's parent), top-down.
fn enable_v2_controllers(chain: &[(OwnedFd, PathBuf)], names: &[&str]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    for (fd, path) in chain {
        let enabled = at::read(fd.as_fd(), path, "cgroup.subtree_control")?;
        let missing: Vec<String> =
            names.iter().filter(|n| !enabled.split_whitespace().any(|e| e == **n)).map(|n| format!("+{n}")).collect();
        if missing.is_empty() {
            continue;
        }
        let value = missing.join(" ");
        if let Err(e) = at::write(fd.as_fd(), path, "cgroup.subtree_control", &value) {
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::NoInternalProcesses { path: path.clone(), controllers: value },
                _ => e,
            });
        }
    }
    Ok(())
}

/// Moves every process of the v2 cgroup `parent` into its child `leaf` (created if needed;
/// an existing leaf is used as it is and never removed), so controllers can be enabled for
/// the parent's children.
fn move_parent_processes_to_leaf(parent: BorrowedFd<'_>, parent_path: &Path, leaf: &str) -> Result<()> {
    let procs = read_pids(parent, parent_path)?;
    if procs.is_empty() {
        return Ok(());
    }
    let mut cur = parent.try_clone_to_owned().sys_at("dup", parent_path)?;
    let mut cur_path = parent_path.to_owned();
    for comp in Path::new(leaf).components() {
        let comp = comp.as_os_str();
        cur_path.push(comp);
        match crate::at::failpoint("cgroup.mkdir", cur_path.display()).and_then(|()| at::mkdir(cur.as_fd(), comp)) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e).sys_at("mkdirat", &cur_path),
            _ => {}
        }
        cur = at::open_dir(cur.as_fd(), Path::new(comp)).beneath("openat2", &cur_path)?;
    }
    for pid in procs {
        match at::write(cur.as_fd(), &cur_path, "cgroup.procs", &pid.to_string()) {
            // Exited meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(())
}

/// The v2 controllers (`subtree_control` names) the resources need.
fn v2_controller_names(h: &Hierarchies, r: &Resources) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for c in r.requested() {
        if let (Some(Location::V2(_)), V2Support::Enabled(name)) = (h.locate(c), c.v2())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// Appends the pids in `dir` and in every cgroup below it.
fn tree_pids(dir: BorrowedFd<'_>, path: &Path, out: &mut Vec<u32>) -> Result<()> {
    match read_pids(dir, path) {
        Ok(pids) => out.extend(pids),
        // Removed meanwhile.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    for name in at::subdirs(dir).unwrap_or_default() {
        let child_path = path.join(&name);
        match at::open_dir(dir, Path::new(&name)) {
            Ok(fd) => tree_pids(fd.as_fd(), &child_path, out)?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e).beneath("openat2", &child_path),
        }
    }
    Ok(())
}

fn read_pids(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<Vec<u32>> {
    let text = at::read(dir, dir_path, "cgroup.procs")?;
    text.lines()
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| Error::Parse { path: dir_path.join("cgroup.procs"), detail: format!("pid {l:?}") })
        })
        .collect()
}

/// Removes the directory `name` of `parent` and every cgroup below it, deepest first,
/// retrying EBUSY for a while. Each level is opened beneath the one above (no symlink, no
/// other mount), so a bind mount placed in the tree is refused, not descended into.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<()> {
    let dir = match at::open_dir(parent, Path::new(name)) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).beneath("openat2", path),
    };
    for child in at::subdirs(dir.as_fd()).sys_at("getdents64", path)? {
        remove_tree(dir.as_fd(), &child, &path.join(&child))?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match at::rmdir(parent, name) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).sys_at("unlinkat", path),
        }
    }
}

pub(crate) fn wait_until(deadline: Instant, what: &'static str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let mut pause = Duration::from_micros(100);
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout { what });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A cgroup's limit files held open ([`Cgroup::limit_files`]).
#[derive(Debug)]
pub struct LimitFiles {
    files: Vec<(PathBuf, std::fs::File)>,
}

impl LimitFiles {
    /// Each file's path and what it reads now (from offset 0: the kernel renders the
    /// value again on every read from the start), in [`LIMIT_FILES`] order per directory.
    pub fn values(&self) -> Result<Vec<(PathBuf, String)>> {
        self.files
            .iter()
            .map(|(path, file)| match at::read_from_start(file) {
                Ok(v) => Ok((path.clone(), v)),
                Err(e) => Err(at::err("read", path.clone(), e)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::Layout;

    /// A handle over plain directories of a temp dir (removal works the same there): a
    /// directory that cannot be removed (it holds a file, so `unlinkat` says ENOTEMPTY)
    /// makes a failed create report the cause and the failed cleanup.
    #[test]
    fn a_failed_create_reports_the_cleanup_that_failed_too() {
        let t = nook_testutil::TempDir::new("cleanup").unwrap();
        let made = |name: &str, stray_file: bool| {
            std::fs::create_dir(t.join(name)).unwrap();
            if stray_file {
                std::fs::write(t.join(name).join("stray"), "x").unwrap();
            }
            let parent: OwnedFd = std::fs::File::open(t.path()).unwrap().into();
            let fd = at::open_dir(parent.as_fd(), Path::new(name)).unwrap();
            let identity = at::identity(fd.as_fd()).unwrap();
            let path = t.join(name);
            Dir { version: Version::V2, path, controllers: Vec::new(), fd, parent, name: name.into(), identity }
        };
        let cg = |dirs| Cgroup {
            hierarchies: Hierarchies { layout: Layout::V2, v1: Vec::new(), v2: None },
            dirs,
            device_program: None,
            ancestors: Vec::new(),
            live: true,
            owned: true,
        };
        let cause = || Error::Exists { path: t.join("elsewhere") };

        // Undo works: only the cause comes back, and the directory is gone.
        let err = cg(vec![made("nk-ok", false)]).abandon(cause());
        assert!(matches!(err, Error::Exists { .. }), "{err:?}");
        assert!(!t.join("nk-ok").exists());

        // Undo fails for one of two directories: the other is still removed, and both the
        // cause and the cleanup failure are reported.
        let err = cg(vec![made("nk-stuck", true), made("nk-fine", false)]).abandon(cause());
        assert!(!t.join("nk-fine").exists(), "the cleanup kept going");
        let Error::Cleanup { cause, cleanup } = &err else { panic!("expected Cleanup: {err:?}") };
        assert!(matches!(**cause, Error::Exists { .. }), "{err:?}");
        assert_eq!(cleanup.len(), 1, "{err:?}");
        assert_eq!(cleanup[0].raw_os_error(), Some(libc::ENOTEMPTY), "{err:?}");
        assert!(matches!(&cleanup[0], Error::Sys { call: "unlinkat", path: Some(p), .. } if p.ends_with("nk-stuck")));
        assert_eq!(err.raw_os_error(), None, "the cause (Exists) has no errno");
        assert!(err.to_string().contains("undoing it failed"), "{err}");
    }
}
