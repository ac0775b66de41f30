//! [`Cgroup`]: the owning handle. Creates the directories (one per hierarchy that manages
//! a requested controller, plus the v2 directory whenever a v2 tree is mounted), applies
//! limits, adds processes, freezes, kills, and removes everything on drop.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::apply;
use crate::cpuset::CpuSet;
use crate::error::{Error, Result};
use crate::hierarchy::{Controller, Hierarchies, Location, V2Support, Version};
use crate::spec::{CgroupSpec, HostFacts, Resources, page_size_name};
use crate::sys;

/// One directory of the cgroup, in one hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    pub version: Version,
    pub path: PathBuf,
    /// v1: the controllers of that hierarchy.
    pub controllers: Vec<String>,
}

/// A created cgroup. Dropping it kills what is inside and removes its directories (best
/// effort); [`Cgroup::remove`] does the same and reports every failure; [`Cgroup::leak`]
/// keeps it.
///
/// ```no_run
/// use nook_cgroup::{Cgroup, CgroupSpec, Pids};
///
/// let mut spec = CgroupSpec::new("nk-doc");
/// spec.resources.pids = Some(Pids { max: Some(32) });
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
    /// Directories above a cgroup directory that creating it made (a nested name `a/b`, or a
    /// parent that did not exist yet), top-down; removed after the cgroup directories.
    ancestors: Vec<PathBuf>,
    live: bool,
}

impl Cgroup {
    /// Discovers the host's hierarchies, validates `spec` against them, creates the cgroup
    /// and applies its limits. Nothing is written unless the whole spec is valid; if a later
    /// step fails, what was created is removed again.
    pub fn create(spec: &CgroupSpec) -> Result<Cgroup> {
        Cgroup::create_in(Hierarchies::discover()?, spec)
    }

    /// [`Cgroup::create`] with hierarchies discovered (or adjusted) by the caller.
    pub fn create_in(hierarchies: Hierarchies, spec: &CgroupSpec) -> Result<Cgroup> {
        spec.validate()?;
        let plan = plan_dirs(&hierarchies, spec)?;
        let facts = host_facts(&hierarchies, &plan, spec)?;
        spec.validate_against(&facts)?;

        let mut cg = Cgroup { hierarchies, dirs: Vec::new(), device_program: None, ancestors: Vec::new(), live: true };
        let result = (|| {
            for dir in plan {
                let is_cpuset = dir.version == Version::V1 && dir.controllers.iter().any(|c| c == "cpuset");
                // v2 with controllers to enable (or a leaf to fill) prepares the ancestors
                // before the directory exists; otherwise, in the common case of an existing
                // parent, one mkdir is all it takes.
                let v2_prepare = dir.version == Version::V2
                    && (spec.leaf_for_parent_processes.is_some()
                        || !v2_controller_names(&cg.hierarchies, &spec.resources).is_empty());
                if v2_prepare || !try_create_dir(&dir.path)? {
                    // Missing directories above it first (v2 enables controllers in each,
                    // top-down).
                    for ancestor in missing_ancestors(&dir.path) {
                        create_dir(&ancestor)?;
                        cg.ancestors.push(ancestor);
                        if is_cpuset {
                            apply::init_v1_cpuset(cg.ancestors.last().expect("just pushed"))?;
                        }
                    }
                    if dir.version == Version::V2 {
                        if let Some(leaf) = &spec.leaf_for_parent_processes {
                            move_parent_processes_to_leaf(&dir.path, leaf)?;
                        }
                        enable_v2_controllers(&cg.hierarchies, &dir.path, &spec.resources)?;
                    }
                    create_dir(&dir.path)?;
                }
                cg.dirs.push(dir);
                if is_cpuset {
                    let d = cg.dirs.last().expect("just pushed");
                    apply::init_v1_cpuset(&d.path)?;
                }
            }
            // Validated above (`update` would validate again).
            apply::apply(&mut cg, &spec.resources)
        })();
        match result {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = cg.remove_dirs();
                cg.live = false;
                Err(e)
            }
        }
    }

    /// Applies (or changes) limits on the live cgroup. Only controllers the cgroup was
    /// created with can be set.
    pub fn update(&mut self, resources: &Resources) -> Result<()> {
        resources.validate()?;
        apply::apply(self, resources)
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
        self.dirs.iter().find(|d| d.version == Version::V2).map(|d| d.path.as_path())
    }

    /// The directory managing `controller` and its version, if this cgroup has it.
    pub fn dir_of(&self, controller: Controller) -> Option<(&Path, Version)> {
        match self.hierarchies.locate(controller)? {
            Location::V1(h) => self
                .dirs
                .iter()
                .find(|d| d.version == Version::V1 && h.has(controller.v1_name()) && d.controllers == h.controllers)
                .map(|d| (d.path.as_path(), Version::V1)),
            Location::V2(_) => self.v2_dir().map(|p| (p, Version::V2)),
        }
    }

    pub(crate) fn require_dir(&self, controller: Controller) -> Result<(&Path, Version)> {
        self.dir_of(controller).ok_or_else(|| Error::ControllerUnavailable {
            controller,
            detail: "the cgroup was not created with this controller (set it in the spec)".to_owned(),
        })
    }

    pub(crate) fn set_device_program(&mut self, prog: Option<OwnedFd>) -> Option<OwnedFd> {
        std::mem::replace(&mut self.device_program, prog)
    }

    /// Moves process `pid` into the cgroup (every hierarchy).
    pub fn add_pid(&self, pid: u32) -> Result<()> {
        for d in &self.dirs {
            sys::write_file(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens the v2 directory for `CLONE_INTO_CGROUP` (e.g. `nook_ns::Command::cgroup`).
    /// On hybrid hosts the child still has to be added to the v1 directories with
    /// [`Cgroup::add_pid`] (while it is paused).
    pub fn dir_fd(&self) -> Result<OwnedFd> {
        let dir = self.v2_dir().ok_or(Error::ControllerUnavailable {
            controller: Controller::Freezer,
            detail: "CLONE_INTO_CGROUP needs a cgroup2 hierarchy, and none is mounted".to_owned(),
        })?;
        sys::open_dir(dir)
    }

    /// The processes in the cgroup (from the first directory; every hierarchy holds them).
    pub fn procs(&self) -> Result<Vec<u32>> {
        let dir = self.v2_dir().or_else(|| self.dirs.first().map(|d| d.path.as_path())).ok_or(Error::NoHierarchy)?;
        read_pids(&dir.join("cgroup.procs"))
    }

    /// Freezes every process in the cgroup and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws a frozen cgroup.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        match self.freezer()? {
            (dir, Version::V2) => {
                sys::write_file(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                wait_until(deadline, "cgroup.events frozen", || {
                    Ok(sys::read_file(&dir.join("cgroup.events"))?.lines().any(|l| l == want))
                })
            }
            (dir, Version::V1) => {
                let state = if frozen { "FROZEN" } else { "THAWED" };
                let file = dir.join("freezer.state");
                wait_until(deadline, "freezer.state", || {
                    sys::write_file(&file, state)?;
                    Ok(sys::read_file(&file)?.trim() == state)
                })
            }
        }
    }

    /// The freezer in use: the v1 freezer directory if the cgroup has one, else v2's
    /// `cgroup.freeze`.
    fn freezer(&self) -> Result<(&Path, Version)> {
        if let Some((p, Version::V1)) = self.dir_of(Controller::Freezer) {
            return Ok((p, Version::V1));
        }
        self.v2_dir().map(|p| (p, Version::V2)).ok_or_else(|| Error::ControllerUnavailable {
            controller: Controller::Freezer,
            detail: "no v1 freezer directory (set `freezer` in the spec) and no cgroup2 hierarchy".to_owned(),
        })
    }

    /// Kills every process in the cgroup and waits until it is empty: v2 `cgroup.kill`
    /// (Linux 5.14+); otherwise freeze, SIGKILL each task (also those in cgroups below it, in
    /// every hierarchy), thaw, repeat until empty.
    pub fn kill_all(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(dir) = self.v2_dir() {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                sys::write_file(&kill, "1")?;
                return wait_until(deadline, "the cgroup to empty", || Ok(self.procs()?.is_empty()));
            }
        }
        let can_freeze = self.freezer().is_ok();
        wait_until(deadline, "the cgroup to empty", || {
            // Every task of every directory and of the cgroups below them (a v1 task may sit
            // in a nested child, or in one hierarchy only).
            let mut pids = Vec::new();
            for d in &self.dirs {
                tree_pids(&d.path, &mut pids)?;
            }
            pids.sort_unstable();
            pids.dedup();
            if pids.is_empty() {
                return Ok(true);
            }
            if can_freeze {
                self.freeze()?;
            }
            for pid in pids {
                sys::kill(pid, libc::SIGKILL);
            }
            if can_freeze {
                self.thaw()?;
            }
            Ok(false)
        })
    }

    /// Kills what is inside and removes every directory (nested children first, retrying
    /// on EBUSY while processes exit). Reports every failure.
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
            match fs::remove_dir(&d.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
            self.dirs.pop();
        }
        let killed = if self.dirs.is_empty() { Ok(()) } else { self.kill_all() };
        let removed = self.remove_dirs();
        match (killed, removed) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn remove_dirs(&mut self) -> Result<()> {
        let mut failures = Vec::new();
        // The device program goes with the v2 directory; close our fd first.
        self.device_program.take();
        for d in self.dirs.drain(..).rev() {
            if let Err(e) = remove_tree(&d.path) {
                failures.push(e);
            }
        }
        // Deepest first; one that holds another cgroup by now is not ours to remove.
        for dir in self.ancestors.drain(..).rev() {
            match fs::remove_dir(&dir) {
                Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTEMPTY | libc::EBUSY)) => {
                    failures.push(Error::io("rmdir", dir, e));
                }
                _ => {}
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(Error::Remove { failures }) }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.live {
            let _ = self.teardown();
        }
    }
}

/// Which directories to create: the v2 one whenever v2 is mounted, and the v1 hierarchy of
/// every requested controller that lives on v1. Errors if a requested controller is
/// nowhere.
fn plan_dirs(h: &Hierarchies, spec: &CgroupSpec) -> Result<Vec<Dir>> {
    let mut dirs: Vec<Dir> = Vec::new();
    for controller in requested(&spec.resources) {
        match h.require(controller)? {
            Location::V1(hier) => {
                if dirs.iter().any(|d| d.version == Version::V1 && d.controllers == hier.controllers) {
                    continue;
                }
                dirs.push(Dir {
                    version: Version::V1,
                    path: cgroup_dir(hier, spec)?,
                    controllers: hier.controllers.clone(),
                });
            }
            Location::V2(_) => {}
        }
    }
    if let Some(v2) = &h.v2 {
        dirs.insert(0, Dir { version: Version::V2, path: cgroup_dir(v2, spec)?, controllers: Vec::new() });
    } else if dirs.is_empty() {
        // Pure v1 with nothing requested: still create somewhere so the cgroup can hold
        // processes (the pids hierarchy if present, else the first).
        let hier = h.v1.iter().find(|x| x.has("pids")).or(h.v1.first()).ok_or(Error::NoHierarchy)?;
        dirs.push(Dir { version: Version::V1, path: cgroup_dir(hier, spec)?, controllers: hier.controllers.clone() });
    }
    Ok(dirs)
}

/// The controllers a set of resources asks for.
pub(crate) fn requested(r: &Resources) -> Vec<Controller> {
    let mut out = Vec::new();
    let mut want = |cond: bool, c: Controller| {
        if cond {
            out.push(c);
        }
    };
    want(r.cpu.is_some(), Controller::Cpu);
    want(r.cpuacct, Controller::Cpuacct);
    want(r.cpuset.is_some(), Controller::Cpuset);
    want(r.memory.is_some(), Controller::Memory);
    want(r.devices.is_some(), Controller::Devices);
    want(r.freezer, Controller::Freezer);
    want(r.net_cls.is_some(), Controller::NetCls);
    want(r.blkio.is_some(), Controller::Blkio);
    want(r.perf_event, Controller::PerfEvent);
    want(r.net_prio.is_some(), Controller::NetPrio);
    want(!r.hugetlb.is_empty(), Controller::Hugetlb);
    want(r.pids.is_some(), Controller::Pids);
    out
}

fn cgroup_dir(hier: &crate::hierarchy::Hierarchy, spec: &CgroupSpec) -> Result<PathBuf> {
    let parent = match &spec.parent {
        Some(p) => hier.dir_of(p),
        None => hier.own_dir(),
    };
    let parent = parent.ok_or_else(|| Error::ParentNotVisible {
        parent: spec.parent.clone().unwrap_or_else(|| hier.own_cgroup.clone()),
        mount_point: hier.mount_point.clone(),
    })?;
    Ok(parent.join(&spec.name))
}

fn host_facts(h: &Hierarchies, plan: &[Dir], spec: &CgroupSpec) -> Result<HostFacts> {
    let mut facts = HostFacts::default();
    if spec.resources.cpuset.is_some() {
        if let Some((dir, version)) = plan_dir_of(h, plan, Controller::Cpuset) {
            let parent = dir.parent().unwrap_or(dir);
            let (cpus, mems) = match version {
                Version::V1 => ("cpuset.effective_cpus", "cpuset.effective_mems"),
                Version::V2 => ("cpuset.cpus.effective", "cpuset.mems.effective"),
            };
            let read_set = |f: &str| -> Result<Option<CpuSet>> {
                let path = parent.join(f);
                match fs::read_to_string(&path) {
                    Ok(s) => CpuSet::parse(&s).map(Some).map_err(|detail| Error::Parse { path, detail }),
                    Err(_) => Ok(None),
                }
            };
            facts.parent_cpus = read_set(cpus)?;
            facts.parent_mems = read_set(mems)?;
        }
    }
    if !spec.resources.hugetlb.is_empty() {
        if let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(kb) = name.strip_prefix("hugepages-").and_then(|s| s.strip_suffix("kB")) {
                    if let Ok(kb) = kb.parse::<u64>() {
                        facts.huge_page_sizes.push(page_size_name(kb));
                    }
                }
            }
        }
    }
    Ok(facts)
}

fn plan_dir_of<'a>(h: &Hierarchies, plan: &'a [Dir], c: Controller) -> Option<(&'a Path, Version)> {
    match h.locate(c)? {
        Location::V1(hier) => plan
            .iter()
            .find(|d| d.version == Version::V1 && d.controllers == hier.controllers)
            .map(|d| (d.path.as_path(), Version::V1)),
        Location::V2(_) => plan.iter().find(|d| d.version == Version::V2).map(|d| (d.path.as_path(), Version::V2)),
    }
}

/// Enables, in every ancestor's `cgroup.subtree_control` from the hierarchy root down to
/// the new cgroup's parent, the v2 controllers the resources need.
fn enable_v2_controllers(h: &Hierarchies, dir: &Path, r: &Resources) -> Result<()> {
    let Some(v2) = &h.v2 else { return Ok(()) };
    let names = v2_controller_names(h, r);
    if names.is_empty() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir);
    let rel = parent.strip_prefix(&v2.mount_point).unwrap_or(Path::new(""));
    let mut cur = v2.mount_point.clone();
    let mut chain = vec![cur.clone()];
    for comp in rel.components() {
        cur.push(comp);
        chain.push(cur.clone());
    }
    for ancestor in chain {
        let file = ancestor.join("cgroup.subtree_control");
        let enabled = sys::read_file(&file)?;
        let missing: Vec<String> =
            names.iter().filter(|n| !enabled.split_whitespace().any(|e| e == **n)).map(|n| format!("+{n}")).collect();
        if missing.is_empty() {
            continue;
        }
        let value = missing.join(" ");
        if let Err(e) = sys::write_file(&file, &value) {
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::NoInternalProcesses { path: ancestor, controllers: value },
                _ => e,
            });
        }
    }
    Ok(())
}

/// Moves every process of the v2 parent of `dir` into the sibling leaf `leaf` (created if
/// needed), so controllers can be enabled for the parent's children.
fn move_parent_processes_to_leaf(dir: &Path, leaf: &str) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    let procs = read_pids(&parent.join("cgroup.procs"))?;
    if procs.is_empty() {
        return Ok(());
    }
    let leaf_dir = parent.join(leaf);
    if !leaf_dir.exists() {
        create_dir(&leaf_dir)?;
    }
    for pid in procs {
        match sys::write_file(&leaf_dir.join("cgroup.procs"), &pid.to_string()) {
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
    for c in requested(r) {
        if let (Some(Location::V2(_)), V2Support::Enabled(name)) = (h.locate(c), c.v2()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// One `mkdir`: `Ok(false)` when the parent does not exist (the caller then creates the
/// ancestors); an existing directory counts as created, as with [`create_dir`].
fn try_create_dir(path: &Path) -> Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(true),
        Err(e) => Err(Error::io("mkdir", path, e)),
    }
}

/// The ancestors of `path` that do not exist yet, top-down.
fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = path.ancestors().skip(1).take_while(|a| !a.exists()).map(Path::to_owned).collect();
    missing.reverse();
    missing
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))
}

/// Appends the pids in `dir` and in every cgroup below it.
fn tree_pids(dir: &Path, out: &mut Vec<u32>) -> Result<()> {
    match read_pids(&dir.join("cgroup.procs")) {
        Ok(pids) => out.extend(pids),
        // Removed meanwhile.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                tree_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

fn read_pids(path: &Path) -> Result<Vec<u32>> {
    let text = sys::read_file(path)?;
    text.lines()
        .map(|l| l.trim().parse().map_err(|_| Error::Parse { path: path.to_owned(), detail: format!("pid {l:?}") }))
        .collect()
}

/// Removes `dir` and every cgroup below it, deepest first, retrying EBUSY for a while.
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io("rmdir", dir, e)),
        }
    }
}

fn wait_until(deadline: Instant, what: &'static str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
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
