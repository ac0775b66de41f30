//! The `cgroup` group: create and remove a cgroup with memory and pids limits (nook-cgroup)
//! against the C floor making the same directories and writing the same files.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use nook_cgroup::{Cgroup, CgroupSpec, Controller, DevicePolicy, Hierarchies, Layout, Version};

use crate::floor;
use crate::report::{Report, expect_exit0, slow_group};

/// The limits of the `cgroup` group: 64 MiB of memory, 64 tasks.
const CG_MEMORY: u64 = 64 << 20;
const CG_PIDS: u64 = 64;

fn cgroup_spec(name: &str) -> CgroupSpec {
    let mut spec = CgroupSpec::new(name);
    spec.resources.memory.get_or_insert_default().max(CG_MEMORY);
    spec.resources.pids.get_or_insert_default().max(CG_PIDS);
    spec
}

/// The limit file of the memory or pids controller in a directory of `version`, and the
/// value the `cgroup` group writes there.
fn cgroup_limit(controller: Controller, version: Version) -> (&'static str, String) {
    match (controller, version) {
        (Controller::Memory, Version::V1) => ("memory.limit_in_bytes", CG_MEMORY.to_string()),
        (Controller::Memory, Version::V2) => ("memory.max", CG_MEMORY.to_string()),
        _ => ("pids.max", CG_PIDS.to_string()),
    }
}

/// The C floor for "the same result": one directory `name` below this process's own cgroup
/// in the hierarchy of memory and in that of pids (one directory if they share it, as on
/// pure v2), and the two limit files.
pub(crate) fn cgroup_floor_same_result(h: &Hierarchies, name: &str, devices: Option<&DevicePolicy>) -> floor::Cgroup {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut writes = Vec::new();
    for controller in [Controller::Memory, Controller::Pids] {
        let location = h.require(controller).expect("memory and pids are available");
        let dir = location.hierarchy().own_dir().expect("own cgroup visible").join(name);
        let (file, value) = cgroup_limit(controller, location.version());
        writes.push((dir.join(file), value));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    // A device allowlist on a v1 `devices` hierarchy: its rules, each file's run through
    // one open file (on cgroup v2 it is a BPF program, which the floor leaves out).
    if let Some(policy) = devices
        && let Ok(location) = h.require(Controller::Devices)
        && location.version() == Version::V1
    {
        let dir = location.hierarchy().own_dir().expect("own cgroup visible").join(name);
        for run in policy.v1_writes().chunk_by(|a, b| a.0 == b.0) {
            let lines: Vec<&str> = run.iter().map(|(_, line)| line.as_str()).collect();
            writes.push((dir.join(run[0].0), lines.join("\n")));
        }
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    floor::Cgroup::new(&dirs, &writes)
}

/// The C floor for "the same system calls as nook": every directory nook creates for
/// `spec` (on a hybrid host also the v2 one), in nook's order, taken from a nook cgroup
/// created and removed once, and the two limit files.
fn cgroup_floor_same_as_nook(h: &Hierarchies, spec: &CgroupSpec) -> floor::Cgroup {
    let cg = Cgroup::create_in(h.clone(), spec).expect("nook create_in");
    let dirs: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    let writes = [Controller::Memory, Controller::Pids].map(|controller| {
        let (dir, version) = cg.dir_of(controller).expect("created with memory and pids");
        let (file, value) = cgroup_limit(controller, version);
        (dir.join(file), value)
    });
    cg.remove().expect("nook remove");
    floor::Cgroup::new(&dirs, &writes)
}

/// Creates `spec` with nook once and checks what the kernel shows: both limits read back,
/// and no directory is left after `remove`.
fn check_nook_cgroup(h: &Hierarchies, spec: &CgroupSpec) {
    let cg = Cgroup::create_in(h.clone(), spec).expect("nook create_in");
    for controller in [Controller::Memory, Controller::Pids] {
        let (dir, version) = cg.dir_of(controller).expect("created with memory and pids");
        let (file, value) = cgroup_limit(controller, version);
        let read = std::fs::read_to_string(dir.join(file)).expect("read the limit back");
        assert_eq!(read.trim(), value, "{controller} limit in {}", dir.display());
    }
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    cg.remove().expect("nook remove");
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// Group 4: create a cgroup with memory and pids limits and delete it, below this process's
/// own cgroup. nook: `Cgroup::create_in` with hierarchies discovered once (cloned per
/// iteration, as `create_in` takes them by value), then `remove()`; also `Cgroup::create`
/// (discovery included) and, on a hybrid host, `create_in` with the v2 tree left out of the
/// hierarchies (the v1 directories only). Baselines: the C floor for the same result (the
/// memory and pids directories) and for the same system calls as nook (plus the v2
/// directory nook makes on hybrid hosts for freeze, kill and `CLONE_INTO_CGROUP`).
pub(crate) fn cgroup(c: &mut Criterion, report: &mut Report) {
    let h = match Hierarchies::discover() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cgroup: skipped, no cgroup hierarchies: {e}");
            return;
        }
    };
    // One name for each side, reused: every iteration removes what it created.
    let name = nook_testutil::unique_name("cgn");
    let c_name = nook_testutil::unique_name("cgc");
    let spec = cgroup_spec(&name);
    if let Err(e) = Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove) {
        eprintln!("cgroup: skipped, nook cannot create {name} here: {e}");
        return;
    }
    check_nook_cgroup(&h, &spec);
    let same_result = cgroup_floor_same_result(&h, &c_name, None);
    let same_syscalls = cgroup_floor_same_as_nook(&h, &cgroup_spec(&c_name));
    for floor in [&same_result, &same_syscalls] {
        expect_exit0("cgroup floor", floor.run());
        floor.assert_removed();
    }
    // On hybrid: the same hierarchies without the v2 tree (as on a pure v1 host), so nook
    // makes only the v1 directories of memory and pids, as the "same result" floor does.
    let v1_only = h.v2.is_some()
        && [Controller::Memory, Controller::Pids]
            .iter()
            .all(|&c| h.locate(c).is_some_and(|l| l.version() == Version::V1));
    let h_v1 = v1_only.then(|| Hierarchies { layout: Layout::V1, v2: None, ..h.clone() });

    let nook_in = || Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove).expect("nook create_in + remove");
    let nook_create = || Cgroup::create(&spec).and_then(Cgroup::remove).expect("nook create + remove");
    let nook_v1 = |h: &Hierarchies| {
        Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove).expect("nook create_in (v1 only) + remove")
    };
    let c_same_result = || expect_exit0("c_same_result", black_box(same_result.run()));
    let c_same_syscalls = || expect_exit0("c_same_syscalls", black_box(same_syscalls.run()));

    let mut g = slow_group(c, "cgroup");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    g.bench_function("nook_create_in", |b| b.iter(nook_in));
    g.bench_function("nook_create", |b| b.iter(nook_create));
    if let Some(h_v1) = &h_v1 {
        g.bench_function("nook_create_in_v1_only", |b| b.iter(|| nook_v1(h_v1)));
    }
    g.bench_function("c_same_result", |b| b.iter(c_same_result));
    g.bench_function("c_same_syscalls", |b| b.iter(c_same_syscalls));
    g.bench_function("hierarchies_discover", |b| b.iter(|| black_box(Hierarchies::discover().expect("discover"))));
    g.finish();
    report.singles.push(("cgroup", "hierarchies_discover".into()));

    let r = report;
    r.pair("cgroup", "create_in + remove vs C, same result", "nook_create_in", "c_same_result");
    r.interleave(nook_in, c_same_result);
    r.pair("cgroup", "create_in + remove vs C, same syscalls as nook", "nook_create_in", "c_same_syscalls");
    r.interleave(nook_in, c_same_syscalls);
    r.pair("cgroup", "create (discovery included) + remove vs C, same result", "nook_create", "c_same_result");
    r.interleave(nook_create, c_same_result);
    if let Some(h_v1) = &h_v1 {
        r.pair(
            "cgroup",
            "create_in without the v2 tree + remove vs C, same result",
            "nook_create_in_v1_only",
            "c_same_result",
        );
        r.interleave(|| nook_v1(h_v1), c_same_result);
    }
    for floor in [&same_result, &same_syscalls] {
        floor.assert_removed();
    }
}
