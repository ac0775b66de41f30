//! Lifecycle and validation of `nook-cgroup` on the real kernel: bad values are typed errors
//! with nothing created, removal leaves no directory in any hierarchy, explicit parents,
//! placing processes (by pid and with `CLONE_INTO_CGROUP`), the cgroup v2 "no internal
//! processes" rule, and which hierarchy each controller is managed in. Layout-agnostic: the
//! same tests run on this hybrid host and on a pure cgroup v2 kernel (`../shared/v2vm`).

use std::fs;
use std::path::{Path, PathBuf};

use nook_cgroup::{
    Cgroup, CgroupSpec, Controller, Cpu, Cpuset, DeviceAccess, DeviceKind, DevicePolicy, DeviceRule, Error,
    Hierarchies, HugetlbLimit, Layout, Location, Memory, Pids, V2Support, ValidationError, Version,
};
use nook_ns::{Child, Command, Stdio};
use nook_testutil::{require_root, unique_name};

/// Every directory `name` would get below the caller's own cgroup, in every mounted hierarchy.
fn candidate_dirs(name: &str) -> Vec<PathBuf> {
    let h = Hierarchies::discover().expect("discover");
    h.v1.iter().chain(h.v2.as_ref()).filter_map(|x| x.own_dir()).map(|d| d.join(name)).collect()
}

#[track_caller]
fn assert_no_dir(name: &str) {
    for d in candidate_dirs(name) {
        assert!(!d.exists(), "{} exists but nothing should have been created", d.display());
    }
}

/// Page sizes the host has, as cgroup files name them (`2MB`).
fn huge_page_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            Some(nook_cgroup::page_size_name(kb))
        })
        .collect()
}

/// A test this host cannot run says so (not `nook_testutil::skip`: that is for missing
/// privilege and fails under `NOOK_REQUIRE_PRIV=1`; CI decides which of these are allowed).
fn skipped(test: &str, reason: &str) {
    nook_testutil::skip_unsupported(test, reason);
}

/// Removes directory trees (deepest first) on drop: the cleanup of a test whose removal
/// under test failed.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        fn rm(dir: &Path) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                    rm(&e.path());
                }
            }
            for _ in 0..200 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        for p in &self.0 {
            rm(p);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn pids_in(dir: &Path) -> Vec<u32> {
    read(&dir.join("cgroup.procs")).lines().map(|l| l.parse().expect("pid")).collect()
}

/// A `sleep` placed in `cg`: with `CLONE_INTO_CGROUP` on pure v2, else paused and added by pid.
fn sleeper_in(cg: &Cgroup) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg("60").stdin(Stdio::null());
    let mut child = if cg.hierarchies().layout == Layout::V2 {
        cmd.cgroup(cg.dir_fd().expect("dir_fd")).spawn().expect("spawn into cgroup")
    } else {
        let paused = cmd.spawn_paused().expect("spawn_paused");
        cg.add_pid(paused.id()).expect("add_pid");
        paused.resume().expect("resume")
    };
    child.kill_on_drop(true);
    child
}

/// The spec errors, each with the field and value it names. Nothing may be created for any.
#[test]
fn every_bad_value_is_a_typed_error_and_creates_nothing() {
    require_root!();
    let name = unique_name("bad");
    let with = |f: &dyn Fn(&mut CgroupSpec)| {
        let mut spec = CgroupSpec::new(&name);
        f(&mut spec);
        spec
    };
    let cpu = |c: Cpu| with(&move |s| s.resources.cpu = Some(c.clone()));
    let out_of_range = |spec: CgroupSpec, field: &str, value: i128| {
        match Cgroup::create(&spec) {
            Err(Error::Invalid(ValidationError::OutOfRange { field: f, value: v, .. })) => {
                assert_eq!((f, v), (field, value), "{spec:?}")
            }
            other => panic!("{field} = {value}: expected OutOfRange, got {other:?}"),
        }
        assert_no_dir(&name);
    };
    out_of_range(cpu(Cpu::new().weight(0).clone()), "cpu.weight", 0);
    out_of_range(cpu(Cpu::new().weight(10_001).clone()), "cpu.weight", 10_001);
    out_of_range(cpu(Cpu::new().shares(1).clone()), "cpu.shares", 1);
    out_of_range(cpu(Cpu::new().shares(262_145).clone()), "cpu.shares", 262_145);
    out_of_range(cpu(Cpu::new().quota_us(999).clone()), "cpu.quota_us", 999);
    out_of_range(with(&|s| s.resources.memory = Some(Memory::new().max(4095).clone())), "memory.max", 4095);
    out_of_range(with(&|s| s.resources.pids = Some(*Pids::new().max(0))), "pids.max", 0);

    let cpuset = |cpus: &str| {
        let cpus = cpus.to_owned();
        with(&move |s| s.resources.cpuset = Some(Cpuset::new().cpus(cpus.clone()).clone()))
    };
    match Cgroup::create(&cpuset("0-")) {
        Err(Error::Invalid(ValidationError::Malformed { field: "cpuset.cpus", value, .. })) => assert_eq!(value, "0-"),
        other => panic!("cpuset 0-: {other:?}"),
    }
    assert_no_dir(&name);
    match Cgroup::create(&cpuset("9999")) {
        Err(Error::Invalid(ValidationError::NotInParent { field: "cpuset.cpus", value, parent })) => {
            assert_eq!(value, "9999");
            assert!(!parent.is_empty(), "the parent's effective set is named");
        }
        Err(e @ Error::ControllerUnavailable { controller: Controller::Cpuset, .. }) => {
            eprintln!("cpuset unavailable here, NotInParent not checked: {e}")
        }
        other => panic!("cpuset 9999: {other:?}"),
    }
    assert_no_dir(&name);

    let bad_rule =
        DeviceRule { allow: true, kind: DeviceKind::All, major: Some(1), minor: None, access: DeviceAccess::READ };
    match Cgroup::create(&with(&|s| s.resources.devices = Some(DevicePolicy::deny_by_default(vec![bad_rule])))) {
        Err(Error::Invalid(ValidationError::Malformed { field: "devices", .. })) => {}
        other => panic!("malformed device rule: {other:?}"),
    }
    assert_no_dir(&name);
    let no_access = DeviceRule::allow_char(1, 3, DeviceAccess::empty());
    match Cgroup::create(&with(&|s| s.resources.devices = Some(DevicePolicy::deny_by_default(vec![no_access])))) {
        Err(Error::Invalid(ValidationError::Malformed { field: "devices", .. })) => {}
        other => panic!("device rule without access: {other:?}"),
    }
    assert_no_dir(&name);

    let huge = |size: &str| {
        let size = size.to_owned();
        with(&move |s| s.resources.hugetlb = vec![HugetlbLimit::new(size.clone(), 8 << 20)])
    };
    match Cgroup::create(&huge("3MB")) {
        Err(Error::Invalid(ValidationError::Malformed { field: "hugetlb.page_size", value, .. })) => {
            assert_eq!(value, "3MB")
        }
        other => panic!("hugetlb 3MB: {other:?}"),
    }
    assert_no_dir(&name);
    // A well-formed size the host does not have.
    let host_sizes = huge_page_sizes();
    let absent = ["64KB", "16MB", "32MB", "512MB", "16GB"].into_iter().find(|s| !host_sizes.iter().any(|h| h == s));
    let absent = absent.expect("some page size is absent");
    match Cgroup::create(&huge(absent)) {
        Err(Error::Invalid(ValidationError::UnknownHugePageSize { size, .. })) => {
            assert_eq!(size, absent)
        }
        Err(e @ Error::ControllerUnavailable { controller: Controller::Hugetlb, .. }) => {
            eprintln!("hugetlb unavailable here, the page-size check is not reached: {e}")
        }
        other => panic!("hugetlb {absent}: {other:?}"),
    }
    assert_no_dir(&name);

    for bad in ["", "/abs", ".", "..", "a//b", "x\ny"] {
        match Cgroup::create(&CgroupSpec::new(bad)) {
            Err(Error::Invalid(ValidationError::BadName { name: n, .. })) => assert_eq!(n, bad),
            other => panic!("name {bad:?}: {other:?}"),
        }
    }
    // A name escaping the parent: neither its first component nor its target may appear.
    let escape = format!("{name}/../{name}x");
    assert!(matches!(Cgroup::create(&CgroupSpec::new(&escape)), Err(Error::Invalid(ValidationError::BadName { .. }))));
    assert_no_dir(&name);
    assert_no_dir(&format!("{name}x"));
    let mut leaf = CgroupSpec::new(&name);
    leaf.leaf_for_parent_processes = Some("../x".into());
    assert!(matches!(Cgroup::create(&leaf), Err(Error::Invalid(ValidationError::BadName { .. }))));
    assert_no_dir(&name);
}

/// `update` validates the whole set before writing: a bad field leaves every limit as it was.
#[test]
fn a_rejected_update_writes_nothing() {
    require_root!();
    let mut spec = CgroupSpec::new(unique_name("upd"));
    spec.resources.pids.get_or_insert_default().max(20);
    spec.resources.cpu = Some(Cpu::default());
    let mut cg = Cgroup::create(&spec).unwrap();
    let (dir, _) = cg.dir_of(Controller::Pids).expect("pids dir");
    let pids_max = dir.join("pids.max");
    assert_eq!(read(&pids_max).trim(), "20");

    let mut bad = spec.resources.clone();
    bad.pids.get_or_insert_default().max(30);
    bad.cpu.get_or_insert_default().weight(0);
    let err = cg.update(&bad).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::OutOfRange { field: "cpu.weight", .. })), "{err}");
    assert_eq!(read(&pids_max).trim(), "20", "pids.max was written although the update was rejected");
    cg.remove().unwrap();
}

/// Hand-made nested children (with a process inside) in every hierarchy are removed first,
/// and nothing is left anywhere.
#[test]
fn remove_deletes_nested_children_in_every_hierarchy() {
    require_root!();
    remove_nested(Hierarchies::discover().unwrap());
}

/// The same with the v1 logic alone (no `cgroup.kill`): on a hybrid host, by hiding the v2
/// tree from the cgroup, as on a pure v1 host.
#[test]
fn remove_deletes_nested_children_without_cgroup_kill_on_v1() {
    require_root!();
    let mut h = Hierarchies::discover().unwrap();
    if h.v1.is_empty() {
        return skipped("remove_deletes_nested_children_without_cgroup_kill_on_v1", "no cgroup v1 hierarchy (pure v2)");
    }
    h.v2 = None;
    h.layout = Layout::V1;
    remove_nested(h);
}

fn remove_nested(h: Hierarchies) {
    let name = unique_name("rm");
    let mut spec = CgroupSpec::new(&name);
    spec.resources.pids.get_or_insert_default().max(50);
    spec.resources.memory.get_or_insert_default().max(64 << 20);
    spec.resources.cpu = Some(Cpu::default());
    spec.resources.freezer = true;
    let cg = Cgroup::create_in(h, &spec).unwrap();
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    assert!(!paths.is_empty());

    // If removal fails, still leave nothing behind (after the sleeper is gone).
    let _leftovers = RemoveOnDrop(paths.clone());
    let mut sleeper = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn_paused().unwrap();
    sleeper.kill_on_drop(true);
    for p in &paths {
        let deep = p.join("nkchild").join("nkgrandchild");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    }
    let mut sleeper = sleeper.resume().unwrap();

    cg.remove().expect("remove with nested children and a process in them");
    for p in &paths {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
    assert_no_dir(&name);
    let status = sleeper.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status:?}");
}

#[test]
fn drop_removes_every_directory() {
    require_root!();
    let name = unique_name("drp");
    let mut spec = CgroupSpec::new(&name);
    spec.resources.pids.get_or_insert_default().max(10);
    spec.resources.memory.get_or_insert_default().max(32 << 20);
    let cg = Cgroup::create(&spec).unwrap();
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    let mut child = sleeper_in(&cg);
    for p in &paths {
        assert!(p.is_dir(), "{} was not created", p.display());
    }
    drop(cg);
    for p in &paths {
        assert!(!p.exists(), "{} is left after drop", p.display());
    }
    assert_no_dir(&name);
    assert!(child.wait().is_ok_and(|s| !s.success()), "drop kills what is inside");
}

#[test]
fn leak_keeps_the_directories() {
    require_root!();
    let mut spec = CgroupSpec::new(unique_name("lk"));
    spec.resources.pids.get_or_insert_default().max(10);
    let cg = Cgroup::create(&spec).unwrap();
    let expected: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    let kept = cg.leak();
    assert_eq!(kept, expected);
    let mut failures = Vec::new();
    for p in kept.iter().rev() {
        if !p.is_dir() {
            failures.push(format!("{} is gone after leak", p.display()));
        }
        let _ = fs::remove_dir(p);
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// Names may nest (`a/b`): the cgroup works (controllers enabled through the intermediate
/// directory on v2, v1 cpusets initialised in it) and the intermediate directory it created
/// goes with it.
#[test]
fn a_nested_name_works_and_leaves_no_intermediate_directory() {
    require_root!();
    let top = unique_name("nst");
    let mut spec = CgroupSpec::new(format!("{top}/inner"));
    spec.resources.pids.get_or_insert_default().max(10);
    spec.resources.memory.get_or_insert_default().max(32 << 20);
    if Hierarchies::discover().unwrap().locate(Controller::Cpuset).is_some() {
        spec.resources.cpuset = Some(Cpuset::default());
    }
    let cg = Cgroup::create(&spec).unwrap();
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    for p in &paths {
        assert!(p.ends_with(format!("{top}/inner")) && p.is_dir(), "{}", p.display());
    }
    let (pids_dir, _) = cg.dir_of(Controller::Pids).unwrap();
    assert_eq!(read(&pids_dir.join("pids.max")).trim(), "10");
    let child = sleeper_in(&cg);
    for p in &paths {
        assert_eq!(pids_in(p), vec![child.id()], "{}", p.display());
    }
    drop(child);
    cg.remove().unwrap();
    assert_no_dir(&top);
}

/// A cgroup path as `/proc/PID/cgroup` shows it for the hierarchy whose line matches.
fn proc_cgroup_line(pid: u32, hierarchy_matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let text = read(Path::new(&format!("/proc/{pid}/cgroup")));
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        hierarchy_matches(ctrls).then(|| PathBuf::from(path))
    })
}

/// `parent` places the cgroup below another cgroup instead of the caller's own.
#[test]
fn an_explicit_parent_is_used() {
    require_root!();
    let h = Hierarchies::discover().unwrap();
    // One cgroup path has to name the parent in every hierarchy used: take the v2 own cgroup
    // (or, on pure v1, the pids one), and use pids only where its own cgroup is the same.
    let base = match (&h.v2, h.locate(Controller::Pids)) {
        (Some(v2), _) => v2.own_cgroup.clone(),
        (None, Some(loc)) => loc.hierarchy().own_cgroup.clone(),
        (None, None) => {
            return skipped("an_explicit_parent_is_used", "no v2 and no pids hierarchy");
        }
    };
    let use_pids = h.locate(Controller::Pids).is_some_and(|l| l.hierarchy().own_cgroup == base);

    let parent_name = unique_name("par");
    let mut parent_spec = CgroupSpec::new(&parent_name);
    if use_pids {
        parent_spec.resources.pids.get_or_insert_default().max(100);
    }
    let parent = Cgroup::create(&parent_spec).unwrap();

    let mut spec = CgroupSpec::new("nkkid");
    spec.parent = Some(base.join(&parent_name));
    if use_pids {
        spec.resources.pids.get_or_insert_default().max(7);
    }
    let child_cg = Cgroup::create(&spec).unwrap();
    let parent_paths: Vec<&Path> = parent.paths().collect();
    for p in child_cg.paths() {
        assert!(
            parent_paths.contains(&p.parent().unwrap()),
            "{} is not below the parent {parent_paths:?}",
            p.display()
        );
    }
    if use_pids {
        let (dir, _) = child_cg.dir_of(Controller::Pids).unwrap();
        assert_eq!(read(&dir.join("pids.max")).trim(), "7");
    }

    // The kernel agrees: a process in the child is in <base>/<parent>/nkkid.
    let child = sleeper_in(&child_cg);
    let want = base.join(&parent_name).join("nkkid");
    if h.v2.is_some() {
        assert_eq!(proc_cgroup_line(child.id(), |c| c.is_empty()), Some(want.clone()));
    }
    if use_pids && h.locate(Controller::Pids).is_some_and(|l| l.version() == Version::V1) {
        assert_eq!(proc_cgroup_line(child.id(), |c| c.split(',').any(|x| x == "pids")), Some(want));
    }
    drop(child);
    child_cg.remove().unwrap();
    parent.remove().unwrap();
    assert_no_dir(&parent_name);
}

/// `add_pid` puts the process in every directory of the cgroup; `procs` lists it.
#[test]
fn add_pid_places_a_process_in_every_hierarchy() {
    require_root!();
    let mut spec = CgroupSpec::new(unique_name("add"));
    spec.resources.pids.get_or_insert_default().max(10);
    spec.resources.memory.get_or_insert_default().max(32 << 20);
    spec.resources.freezer = true;
    let cg = Cgroup::create(&spec).unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());

    let mut child = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap();
    child.kill_on_drop(true);
    cg.add_pid(child.id()).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![child.id()]);
    for p in cg.paths() {
        assert_eq!(pids_in(p), vec![child.id()], "{}", p.display());
    }
    // Also as the kernel reports the process's own membership, hierarchy by hierarchy.
    let h = cg.hierarchies();
    for (c, want_ctrl) in [(Controller::Pids, "pids"), (Controller::Memory, "memory")] {
        if let Some((dir, Version::V1)) = cg.dir_of(c) {
            let hier = h.locate(c).unwrap().hierarchy();
            let rel = dir.strip_prefix(&hier.mount_point).unwrap();
            let got = proc_cgroup_line(child.id(), |x| x.split(',').any(|n| n == want_ctrl)).unwrap();
            assert_eq!(got, hier.mount_root.join(rel));
        }
    }
    cg.kill_all().unwrap();
    assert!(!child.wait().unwrap().success());
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    cg.remove().unwrap();
}

/// `dir_fd` + `nook_ns::Command::cgroup`: the child is born in the v2 directory
/// (`CLONE_INTO_CGROUP`), as its own `/proc/self/cgroup` says. On hybrid hosts the v2 tree
/// is mounted too, so this runs there as well.
#[test]
fn clone_into_cgroup_starts_the_child_in_the_v2_dir_where_cgroup2_is_mounted() {
    require_root!();
    let name = unique_name("cic");
    let cg = Cgroup::create(&CgroupSpec::new(&name)).unwrap();
    let Some(v2) = cg.hierarchies().v2.clone() else {
        assert!(matches!(cg.dir_fd(), Err(Error::ControllerUnavailable { .. })));
        return skipped(
            "clone_into_cgroup_starts_the_child_in_the_v2_dir_where_cgroup2_is_mounted",
            "no cgroup2 hierarchy mounted",
        );
    };
    let out = Command::new("cat").arg("/proc/self/cgroup").cgroup(cg.dir_fd().unwrap()).output().unwrap();
    let text = nook_testutil::success_stdout(out);
    let line = text.lines().find(|l| l.starts_with("0::")).expect("a 0:: line");
    assert_eq!(Path::new(&line[3..]), v2.own_cgroup.join(&name), "{text}");
    cg.remove().unwrap();
}

/// A v2 *domain* controller this host can enable for a child, with a limit that uses it.
/// (Threaded controllers — pids, cpu, cpuset, perf_event — are exempt from the "no internal
/// processes" rule: the kernel lets them be enabled next to processes.)
fn some_v2_domain_controller(h: &Hierarchies) -> Option<(&'static str, nook_cgroup::Resources)> {
    let mut r = nook_cgroup::Resources::default();
    let on_v2 = |c: Controller| matches!(h.locate(c), Some(Location::V2(_)));
    if on_v2(Controller::Memory) {
        r.memory.get_or_insert_default().max(64 << 20);
        return Some(("memory", r));
    }
    if on_v2(Controller::Hugetlb) {
        let size = huge_page_sizes().into_iter().next()?;
        let bytes = nook_cgroup::parse_page_size(&size).ok()?;
        r.hugetlb = vec![HugetlbLimit::new(size, bytes * 2)];
        return Some(("hugetlb", r));
    }
    None
}

/// cgroup v2 forbids enabling controllers for the children of a (non-root) cgroup with
/// processes of its own: the error says so and what to do; `leaf_for_parent_processes`
/// moves the processes into a leaf and succeeds. Here on the hybrid host the unified tree
/// offers hugetlb, which is enough; on pure v2 memory is used.
#[test]
fn no_internal_processes_is_reported_and_the_leaf_option_resolves_it_on_cgroup2() {
    const TEST: &str = "no_internal_processes_is_reported_and_the_leaf_option_resolves_it_on_cgroup2";
    require_root!();
    let h = Hierarchies::discover().unwrap();
    let Some(v2) = h.v2.clone() else {
        return skipped(TEST, "no cgroup2 hierarchy mounted");
    };
    let Some((controller, resources)) = some_v2_domain_controller(&h) else {
        return skipped(TEST, "the cgroup2 tree offers no domain controller to enable");
    };

    // A v2-only parent with a process in it.
    let parent_name = unique_name("nip");
    let parent = Cgroup::create(&CgroupSpec::new(&parent_name)).unwrap();
    let parent_dir = parent.v2_dir().unwrap().to_owned();
    let mut proc_child =
        Command::new("sleep").arg("60").stdin(Stdio::null()).cgroup(parent.dir_fd().unwrap()).spawn().unwrap();
    proc_child.kill_on_drop(true);
    assert_eq!(pids_in(&parent_dir), vec![proc_child.id()]);

    let mut spec = CgroupSpec::new("nkc");
    spec.parent = Some(v2.own_cgroup.join(&parent_name));
    spec.resources = resources;
    match Cgroup::create(&spec) {
        Err(e @ Error::NoInternalProcesses { .. }) => {
            let Error::NoInternalProcesses { path, controllers } = &e else { unreachable!() };
            assert_eq!(path, &parent_dir);
            assert!(controllers.contains(&format!("+{controller}")), "{controllers}");
            let msg = e.to_string();
            assert!(msg.contains("no internal processes") && msg.contains("leaf"), "says what to do: {msg}");
        }
        other => panic!("expected NoInternalProcesses, got {other:?}"),
    }
    assert!(!parent_dir.join("nkc").exists(), "nothing is created when the rule refuses");
    assert_eq!(pids_in(&parent_dir), vec![proc_child.id()], "the process was not moved");

    spec.leaf_for_parent_processes = Some("leaf".into());
    let child_cg = Cgroup::create(&spec).expect("create with a leaf for the parent's processes");
    assert_eq!(pids_in(&parent_dir), Vec::<u32>::new(), "the parent holds no process now");
    assert_eq!(pids_in(&parent_dir.join("leaf")), vec![proc_child.id()], "the process moved to the leaf");
    let enabled = read(&parent_dir.join("cgroup.subtree_control"));
    assert!(enabled.split_whitespace().any(|c| c == controller), "{controller} enabled: {enabled}");
    assert_eq!(child_cg.v2_dir().unwrap(), parent_dir.join("nkc"));

    child_cg.remove().unwrap();
    parent.remove().unwrap();
    assert!(!proc_child.wait().unwrap().success(), "removing the parent kills the process in its leaf");
    assert_no_dir(&parent_name);
}

/// A file that exists in a cgroup directory only when `controller` manages it there.
fn marker(controller: Controller, version: Version, huge: &str) -> Option<String> {
    use Controller as C;
    use Version::{V1, V2};
    Some(match (controller, version) {
        (C::Cpu, V1) => "cpu.shares".into(),
        (C::Cpu, V2) => "cpu.weight".into(),
        (C::Cpuacct, V1) => "cpuacct.usage".into(),
        (C::Cpuacct, V2) => "cpu.stat".into(),
        (C::Cpuset, _) => "cpuset.cpus".into(),
        (C::Memory, V1) => "memory.limit_in_bytes".into(),
        (C::Memory, V2) => "memory.max".into(),
        (C::Devices, V1) => "devices.list".into(),
        (C::Freezer, V1) => "freezer.state".into(),
        (C::Freezer, V2) => "cgroup.freeze".into(),
        (C::NetCls, V1) => "net_cls.classid".into(),
        (C::NetPrio, V1) => "net_prio.ifpriomap".into(),
        (C::Blkio, V1) => "blkio.throttle.read_bps_device".into(),
        (C::Blkio, V2) => "io.max".into(),
        (C::Hugetlb, V1) => format!("hugetlb.{huge}.limit_in_bytes"),
        (C::Hugetlb, V2) => format!("hugetlb.{huge}.max"),
        (C::Pids, _) => "pids.max".into(),
        // No file: devices on v2 is a BPF program, perf_event on v2 is implicit, and a v1
        // perf_event directory has only the core files.
        _ => return None,
    })
}

/// The v1 controllers mounted in this mount namespace, read from mountinfo by the test itself.
fn mounted_v1_controllers() -> Vec<String> {
    let info = read(Path::new("/proc/thread-self/mountinfo"));
    info.lines()
        .filter_map(|l| l.split_once(" - "))
        .filter(|(_, right)| right.starts_with("cgroup "))
        .flat_map(|(_, right)| right.split(' ').nth(2).unwrap_or("").split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Each controller is managed where the host has it: on this hybrid host memory, cpu,
/// cpuset, devices, freezer, blkio and pids on their v1 hierarchies, hugetlb and perf_event
/// on the unified tree, net_cls/net_prio nowhere (typed error); on pure v2 everything but
/// net_cls/net_prio on v2. A cgroup created with every available controller then has each
/// controller's files in the directory `dir_of` names.
#[test]
fn each_controller_is_managed_in_the_right_hierarchy() {
    require_root!();
    let h = Hierarchies::discover().unwrap();
    let v1_mounted = mounted_v1_controllers();
    let v2_offers = |name: &str| h.v2.as_ref().is_some_and(|v| v.has(name));
    for c in Controller::ALL {
        let expected: Option<Version> = match h.layout {
            Layout::V2 => match c.v2() {
                V2Support::Enabled(name) => (v2_offers(name) || c == Controller::Cpuacct).then_some(Version::V2),
                V2Support::None => None,
                _ => Some(Version::V2),
            },
            Layout::V1 | Layout::Hybrid => {
                if v1_mounted.iter().any(|m| m == c.v1_name()) {
                    Some(Version::V1)
                } else {
                    match (c.v2(), &h.v2) {
                        (_, None) | (V2Support::None, _) => None,
                        (V2Support::Enabled(name), Some(_)) => v2_offers(name).then_some(Version::V2),
                        (_, Some(_)) => Some(Version::V2),
                    }
                }
            }
        };
        assert_eq!(h.locate(c).map(|l| l.version()), expected, "{c} on a {:?} host", h.layout);
        if expected.is_none() {
            let err = h.require(c).unwrap_err();
            assert!(matches!(err, Error::ControllerUnavailable { controller, .. } if controller == c), "{c}: {err:?}");
            assert!(err.to_string().contains(c.v1_name()), "the error names the controller: {err}");
        }
    }
    // The issue names these for this host; check them where the layout is this host's.
    if h.layout == Layout::Hybrid && v1_mounted.iter().any(|m| m == "memory") && v2_offers("hugetlb") {
        assert_eq!(h.locate(Controller::Memory).unwrap().version(), Version::V1);
        assert_eq!(h.locate(Controller::Hugetlb).unwrap().version(), Version::V2);
    }
    if h.layout == Layout::V2 {
        for c in [Controller::NetCls, Controller::NetPrio] {
            assert!(matches!(h.require(c), Err(Error::ControllerUnavailable { .. })));
        }
    }

    // Create with everything available and look for each controller's files.
    let huge = huge_page_sizes().into_iter().next().unwrap_or_default();
    let mut spec = CgroupSpec::new(unique_name("all"));
    let r = &mut spec.resources;
    let has = |c| h.locate(c).is_some();
    r.cpu = has(Controller::Cpu).then(Cpu::default);
    r.cpuacct = has(Controller::Cpuacct);
    r.cpuset = has(Controller::Cpuset).then(Cpuset::default);
    r.memory = has(Controller::Memory).then(Memory::default);
    // A v1 devices hierarchy takes the rules as text; the v2 program is tested elsewhere.
    r.devices = matches!(h.locate(Controller::Devices), Some(Location::V1(_)))
        .then(|| DevicePolicy::allow_by_default(Vec::new()));
    r.freezer = has(Controller::Freezer);
    r.blkio = has(Controller::Blkio).then(Default::default);
    r.perf_event = has(Controller::PerfEvent);
    r.pids = has(Controller::Pids).then(Pids::default);
    if has(Controller::Hugetlb) && !huge.is_empty() {
        let bytes = nook_cgroup::parse_page_size(&huge).unwrap();
        r.hugetlb = vec![HugetlbLimit::new(huge.clone(), bytes * 4)];
    }
    let cg = Cgroup::create(&spec).unwrap();
    for c in Controller::ALL {
        let Some(loc) = h.locate(c) else {
            assert_eq!(cg.dir_of(c), None);
            continue;
        };
        if c == Controller::Devices && loc.version() == Version::V2 {
            continue;
        }
        if c == Controller::Hugetlb && huge.is_empty() {
            continue;
        }
        let (dir, version) = cg.dir_of(c).unwrap_or_else(|| panic!("{c} has no directory"));
        assert_eq!(version, loc.version(), "{c}");
        assert!(dir.starts_with(&loc.hierarchy().mount_point), "{c}: {}", dir.display());
        if let Some(file) = marker(c, version, &huge) {
            assert!(dir.join(&file).exists(), "{c}: {} has no {file}", dir.display());
        }
    }
    cg.remove().unwrap();
}
