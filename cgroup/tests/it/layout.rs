//! Discovery, the same code on every layout: each controller is found in the hierarchy the
//! mount table says manages it — its v1 hierarchy on this hybrid host (the unified tree for
//! the ones v1 does not mount), the unified tree everywhere in the pure v2 guest of
//! `.ci/v2-lane` (net_cls and net_prio nowhere) — and a cgroup created from that is where the
//! kernel puts its process. `NOOK_EXPECT_LAYOUT=v1|hybrid|v2` (the v2 lane sets `v2`) makes the
//! tests also assert the layout itself, so a lane that booted the wrong kernel fails instead
//! of quietly testing the wrong thing.

use std::fs;
use std::path::{Path, PathBuf};

use nook_cgroup::{
    Blkio, Cgroup, CgroupSpec, Controller, Cpuset, Error, Hierarchies, HugetlbLimit, Layout, Resources, Version,
};
use nook_testutil::{require_root, unique_name};

/// One cgroup mount, read from mountinfo by the test itself (the oracle the library is
/// compared with).
#[derive(Debug)]
struct CgroupMount {
    v2: bool,
    point: PathBuf,
    /// v1: the controllers in the super options (`rw,cpu,cpuacct` → cpu, cpuacct).
    controllers: Vec<String>,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let v1_names: Vec<&str> = Controller::ALL.iter().map(|c| c.v1_name()).collect();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let super_opts = right.nth(1).unwrap_or("");
            let controllers =
                super_opts.split(',').filter(|o| v1_names.contains(o)).map(str::to_owned).collect::<Vec<_>>();
            match fstype {
                "cgroup2" => Some(CgroupMount { v2: true, point: point.into(), controllers: Vec::new() }),
                "cgroup" if !controllers.is_empty() => {
                    Some(CgroupMount { v2: false, point: point.into(), controllers })
                }
                _ => None,
            }
        })
        .collect()
}

/// Where the kernel documentation says `c` is managed, given the mounts and the controllers
/// the v2 root offers: the v1 hierarchy that has it; else the unified tree when v2 provides
/// it (a controller listed in the root's `cgroup.controllers`; always for the freezer
/// (`cgroup.freeze`), devices (BPF), perf_event (implicit) and cpuacct (`cpu.stat`)); else
/// nowhere (net_cls and net_prio have no v2 equivalent).
fn expected(c: Controller, mounts: &[CgroupMount], v2_offers: &[String]) -> Option<(Version, PathBuf)> {
    if let Some(m) = mounts.iter().find(|m| !m.v2 && m.controllers.iter().any(|n| n == c.v1_name())) {
        return Some((Version::V1, m.point.clone()));
    }
    let v2 = mounts.iter().find(|m| m.v2)?;
    let needs = match c {
        Controller::Cpu => Some("cpu"),
        Controller::Cpuset => Some("cpuset"),
        Controller::Memory => Some("memory"),
        Controller::Blkio => Some("io"),
        Controller::Hugetlb => Some("hugetlb"),
        Controller::Pids => Some("pids"),
        Controller::Cpuacct | Controller::Freezer | Controller::Devices | Controller::PerfEvent => None,
        Controller::NetCls | Controller::NetPrio => return None,
    };
    match needs {
        Some(name) if !v2_offers.iter().any(|o| o == name) => None,
        _ => Some((Version::V2, v2.point.clone())),
    }
}

fn located(h: &Hierarchies, c: Controller) -> Option<(Version, PathBuf)> {
    h.locate(c).map(|l| (l.version(), l.hierarchy().mount_point.clone()))
}

fn expected_layout(mounts: &[CgroupMount]) -> Layout {
    match (mounts.iter().any(|m| !m.v2), mounts.iter().any(|m| m.v2)) {
        (true, true) => Layout::Hybrid,
        (false, true) => Layout::V2,
        (true, false) => Layout::V1,
        (false, false) => panic!("no cgroup mount at all"),
    }
}

/// `NOOK_EXPECT_LAYOUT`, if set.
fn layout_from_env() -> Option<Layout> {
    let v = std::env::var("NOOK_EXPECT_LAYOUT").ok()?;
    Some(match v.as_str() {
        "v1" => Layout::V1,
        "hybrid" => Layout::Hybrid,
        "v2" => Layout::V2,
        other => panic!("NOOK_EXPECT_LAYOUT={other}: expected v1, hybrid or v2"),
    })
}

fn live() -> (Hierarchies, Vec<CgroupMount>, Vec<String>) {
    let h = Hierarchies::discover().expect("discover");
    let mounts = cgroup_mounts(&fs::read_to_string("/proc/thread-self/mountinfo").unwrap());
    let v2_offers = match mounts.iter().find(|m| m.v2) {
        Some(m) => fs::read_to_string(m.point.join("cgroup.controllers"))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    (h, mounts, v2_offers)
}

fn describe(l: &Option<(Version, PathBuf)>) -> String {
    match l {
        Some((v, p)) => format!("{v:?} {}", p.display()),
        None => "nowhere".to_owned(),
    }
}

#[test]
fn discovery_reports_the_layout_the_mount_table_shows() {
    let (h, mounts, _) = live();
    assert_eq!(h.layout, expected_layout(&mounts), "mounts: {mounts:#?}");
    if let Some(want) = layout_from_env() {
        assert_eq!(h.layout, want, "NOOK_EXPECT_LAYOUT; mounts: {mounts:#?}");
    }
    assert_eq!(h.v1.len(), mounts.iter().filter(|m| !m.v2).count(), "one entry per v1 hierarchy: {:#?}", h.v1);
    assert_eq!(h.v2.is_some(), mounts.iter().any(|m| m.v2));
}

#[test]
fn each_controller_is_located_where_the_host_mounts_it() {
    let (h, mounts, v2_offers) = live();
    println!("layout {:?}; v2 root offers [{}]", h.layout, v2_offers.join(" "));
    for c in Controller::ALL {
        let want = expected(c, &mounts, &v2_offers);
        let got = located(&h, c);
        println!("  {c:<10} -> {}", describe(&got));
        assert_eq!(got, want, "{c}: mounts {mounts:#?}");
        match (got, h.require(c)) {
            (Some(_), Ok(_)) => {}
            (None, Err(Error::ControllerUnavailable { controller, detail })) => {
                assert_eq!(controller, c);
                assert!(!detail.is_empty());
            }
            (got, other) => panic!("{c}: locate {got:?} but require {other:?}"),
        }
    }
}

/// The pure v2 guest runs a stock distribution kernel: every controller v2 has must be there,
/// in the unified tree, or the lane is not testing v2.
#[test]
fn every_controller_but_net_cls_and_net_prio_is_in_the_unified_tree_on_v2() {
    let (h, mounts, _) = live();
    if h.layout != Layout::V2 {
        // Not a privilege skip: this host's layout has no such case (see the other tests).
        eprintln!(
            "SKIPPED every_controller_but_net_cls_and_net_prio_is_in_the_unified_tree_on_v2: the layout is {:?}",
            h.layout
        );
        assert_ne!(layout_from_env(), Some(Layout::V2), "NOOK_EXPECT_LAYOUT=v2 but discovery says {:?}", h.layout);
        return;
    }
    let root = mounts.iter().find(|m| m.v2).unwrap().point.clone();
    for c in Controller::ALL {
        let got = located(&h, c);
        match c {
            Controller::NetCls | Controller::NetPrio => {
                assert_eq!(got, None, "{c}");
                let err = h.require(c).unwrap_err().to_string();
                assert!(err.contains(c.v1_name()) && err.contains("no equivalent"), "{err}");
            }
            _ if layout_from_env() == Some(Layout::V2) => {
                assert_eq!(got, Some((Version::V2, root.clone())), "{c}")
            }
            _ => {}
        }
    }
}

/// `own_cgroup` of every hierarchy is the caller's entry in `/proc/self/cgroup`, and its
/// directory holds this process.
#[test]
fn own_cgroup_of_each_hierarchy_is_the_one_proc_self_cgroup_names() {
    let (h, _, _) = live();
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap();
    let me = std::process::id().to_string();
    for hier in h.v1.iter().chain(h.v2.as_ref()) {
        let line = proc_line(&proc_cgroup, hier.version, &hier.controllers)
            .unwrap_or_else(|| panic!("no /proc/self/cgroup line for {hier:?}"));
        assert_eq!(hier.own_cgroup, Path::new(line), "{hier:?}");
        let dir = hier.own_dir().expect("own cgroup visible under its mount");
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|p| p == me), "{} holds pid {me}: {procs}", dir.display());
    }
}

/// The path of the `/proc/PID/cgroup` line for a hierarchy (`0::path` for v2, the line whose
/// controller list has the hierarchy's controllers for v1).
fn proc_line<'a>(text: &'a str, version: Version, controllers: &[String]) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match version {
            Version::V2 => id == "0" && ctrls.is_empty(),
            Version::V1 => ctrls.split(',').any(|c| controllers.first().is_some_and(|f| f == c)),
        };
        hit.then_some(path)
    })
}

/// A file that exists in a cgroup directory only when `c` manages it there.
fn marker(c: Controller, v: Version, huge: Option<&str>) -> Option<String> {
    use Controller as C;
    Some(match (c, v) {
        (C::Cpu, Version::V1) => "cpu.shares".into(),
        (C::Cpu, Version::V2) => "cpu.weight".into(),
        (C::Cpuacct, Version::V1) => "cpuacct.usage".into(),
        (C::Cpuacct, Version::V2) => "cpu.stat".into(),
        (C::Cpuset, _) => "cpuset.cpus".into(),
        (C::Memory, Version::V1) => "memory.limit_in_bytes".into(),
        (C::Memory, Version::V2) => "memory.max".into(),
        (C::Freezer, Version::V1) => "freezer.state".into(),
        (C::Freezer, Version::V2) => "cgroup.freeze".into(),
        (C::Blkio, Version::V1) => "blkio.throttle.read_bps_device".into(),
        (C::Blkio, Version::V2) => "io.stat".into(),
        (C::Hugetlb, Version::V1) => format!("hugetlb.{}.limit_in_bytes", huge?),
        (C::Hugetlb, Version::V2) => format!("hugetlb.{}.max", huge?),
        (C::Pids, _) => "pids.max".into(),
        // perf_event has no files of its own; devices is a BPF program on v2.
        _ => return None,
    })
}

fn huge_page_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok())
        .collect();
    sizes.sort_unstable();
    sizes.into_iter().map(nook_cgroup::page_size_name).collect()
}

/// A cgroup asking for every controller the host has (devices aside: its own tests cover the
/// v1 lists and the v2 BPF program) gets one directory per hierarchy discovery chose, below
/// the caller's own cgroup there, with that controller's files in it; a process added to it
/// is, by the kernel's own `/proc/PID/cgroup`, in exactly those cgroups.
#[test]
fn a_cgroup_lands_in_each_controllers_hierarchy_and_the_kernel_agrees() {
    require_root!();
    let h = Hierarchies::discover().unwrap();
    let huge = huge_page_sizes().into_iter().next();
    let has = |c| h.locate(c).is_some();
    let mut r = Resources::default();
    if has(Controller::Cpu) {
        r.cpu.get_or_insert_default().weight(100);
    }
    r.cpuacct = has(Controller::Cpuacct);
    if has(Controller::Cpuset) {
        r.cpuset = Some(Cpuset::default());
    }
    if has(Controller::Memory) {
        r.memory.get_or_insert_default().max(1 << 30);
    }
    r.freezer = has(Controller::Freezer);
    if has(Controller::Blkio) {
        r.blkio = Some(Blkio::default());
    }
    r.perf_event = has(Controller::PerfEvent);
    if let (true, Some(size)) = (has(Controller::Hugetlb), &huge) {
        r.hugetlb = vec![HugetlbLimit::new(size.clone(), 1 << 30)];
    }
    if has(Controller::Pids) {
        r.pids.get_or_insert_default().max(64);
    }
    let name = unique_name("lay");
    let mut spec = CgroupSpec::new(&name);
    spec.resources = r;
    let cg = Cgroup::create(&spec).expect("create with every controller the host has");

    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let added = cg.add_pid(child.id());
    let child_cgroup = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    added.unwrap();

    let mut checked = Vec::new();
    for c in Controller::ALL {
        let Some(loc) = h.locate(c) else { continue };
        if c == Controller::Devices || (c == Controller::Hugetlb && huge.is_none()) {
            continue;
        }
        let hier = loc.hierarchy();
        let (dir, version) =
            cg.dir_of(c).unwrap_or_else(|| panic!("{c}: no directory, paths {:?}", cg.paths().collect::<Vec<_>>()));
        assert_eq!(version, loc.version(), "{c}");
        assert_eq!(dir, hier.own_dir().unwrap().join(&name), "{c} below the caller's own cgroup of {loc:?}");
        if let Some(file) = marker(c, version, huge.as_deref()) {
            assert!(dir.join(&file).exists(), "{c}: {} has no {file}", dir.display());
        }
        let line = proc_line(&child_cgroup, version, &hier.controllers)
            .unwrap_or_else(|| panic!("{c}: no line in the child's /proc/PID/cgroup:\n{child_cgroup}"));
        assert_eq!(Path::new(line), hier.own_cgroup.join(&name), "{c}: the kernel placed the child");
        checked.push(format!("{c}={version:?}"));
    }
    println!("checked: {}", checked.join(" "));
    assert!(checked.len() >= 4, "too few controllers on this host to prove anything: {checked:?}");

    let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
    cg.remove().unwrap();
    for p in paths {
        assert!(!p.exists(), "{} removed", p.display());
    }
}

// ---------------------------------------------------------------- the same code on fixed tables

const V1_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuset
32 25 0:29 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,devices
33 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
34 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
35 25 0:32 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,perf_event
36 25 0:33 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,hugetlb
37 25 0:34 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,pids
";
const V1_CGROUP: &str = "\
12:pids:/user.slice/user-1000.slice/session-2.scope
11:hugetlb:/
10:perf_event:/
9:blkio:/user.slice
8:freezer:/
7:devices:/user.slice
6:cpuset:/
5:memory:/user.slice/user-1000.slice/session-2.scope
4:net_cls,net_prio:/
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";

/// This host's kind: v1 for eight controllers, a unified tree offering hugetlb only.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

const V2_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
const V2_CGROUP: &str = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/nk.scope\n";
const V2_OFFERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

fn parsed(mountinfo: &str, proc_cgroup: &str, v2_offers: &str) -> Hierarchies {
    let mut h = Hierarchies::parse(mountinfo, proc_cgroup).unwrap();
    if let Some(v2) = h.v2.as_mut() {
        v2.controllers = v2_offers.split_whitespace().map(str::to_owned).collect();
    }
    h
}

/// Checks `h` against the oracle for every controller and the own directory of each.
fn check_table(h: &Hierarchies, mountinfo: &str, v2_offers: &str, own: &[(Controller, &str)]) {
    let mounts = cgroup_mounts(mountinfo);
    let offers: Vec<String> = v2_offers.split_whitespace().map(str::to_owned).collect();
    assert_eq!(h.layout, expected_layout(&mounts));
    for c in Controller::ALL {
        assert_eq!(located(h, c), expected(c, &mounts, &offers), "{c} in {:?}", h.layout);
    }
    for (c, dir) in own {
        let got = h.locate(*c).and_then(|l| l.hierarchy().own_dir());
        assert_eq!(got.as_deref(), Some(Path::new(dir)), "{c} in {:?}", h.layout);
    }
}

#[test]
fn v1_table_puts_every_controller_in_its_own_hierarchy() {
    let h = parsed(V1_MOUNTINFO, V1_CGROUP, "");
    assert_eq!(h.layout, Layout::V1);
    assert_eq!(h.v1.len(), 10, "name=systemd is not a controller hierarchy");
    for c in Controller::ALL {
        assert_eq!(located(&h, c).map(|l| l.0), Some(Version::V1), "{c}");
    }
    check_table(
        &h,
        V1_MOUNTINFO,
        "",
        &[
            (Controller::Cpu, "/sys/fs/cgroup/cpu,cpuacct/user.slice"),
            (Controller::Cpuacct, "/sys/fs/cgroup/cpu,cpuacct/user.slice"),
            (Controller::Memory, "/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope"),
            (Controller::NetPrio, "/sys/fs/cgroup/net_cls,net_prio"),
            (Controller::Pids, "/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-2.scope"),
        ],
    );
}

#[test]
fn hybrid_table_prefers_v1_and_falls_back_to_the_unified_tree() {
    let h = parsed(HYBRID_MOUNTINFO, HYBRID_CGROUP, "hugetlb");
    assert_eq!(h.layout, Layout::Hybrid);
    let v1 = |c| located(&h, c).map(|l| l.0) == Some(Version::V1);
    for c in [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Devices,
        Controller::Freezer,
        Controller::Blkio,
        Controller::Pids,
    ] {
        assert!(v1(c), "{c} on v1");
    }
    let unified = Some((Version::V2, PathBuf::from("/sys/fs/cgroup/unified")));
    assert_eq!(located(&h, Controller::Hugetlb), unified, "hugetlb only in the unified tree");
    assert_eq!(located(&h, Controller::PerfEvent), unified, "perf_event not on v1: implicit on v2");
    assert_eq!(located(&h, Controller::NetCls), None);
    check_table(
        &h,
        HYBRID_MOUNTINFO,
        "hugetlb",
        &[
            (Controller::Memory, "/sys/fs/cgroup/memory/process_api/abc"),
            (Controller::Freezer, "/sys/fs/cgroup/freezer"),
            (Controller::Hugetlb, "/sys/fs/cgroup/unified"),
        ],
    );
    // The same mounts with a unified tree that offers nothing: hugetlb is nowhere, and says so.
    let bare = parsed(HYBRID_MOUNTINFO, HYBRID_CGROUP, "");
    let err = bare.require(Controller::Hugetlb).unwrap_err().to_string();
    assert!(err.contains("hugetlb") && err.contains("/sys/fs/cgroup/unified"), "{err}");
}

#[test]
fn v2_table_puts_everything_in_the_unified_tree_and_net_cls_nowhere() {
    let h = parsed(V2_MOUNTINFO, V2_CGROUP, V2_OFFERS);
    assert_eq!(h.layout, Layout::V2);
    assert!(h.v1.is_empty());
    for c in Controller::ALL {
        let want = match c {
            Controller::NetCls | Controller::NetPrio => None,
            _ => Some((Version::V2, PathBuf::from("/sys/fs/cgroup"))),
        };
        assert_eq!(located(&h, c), want, "{c}");
    }
    let own = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/nk.scope";
    check_table(&h, V2_MOUNTINFO, V2_OFFERS, &[(Controller::Memory, own), (Controller::Freezer, own)]);
    // A kernel built without cpuset and hugetlb: those two are nowhere, the error names them.
    let small = parsed(V2_MOUNTINFO, V2_CGROUP, "cpu io memory pids");
    check_table(&small, V2_MOUNTINFO, "cpu io memory pids", &[]);
    assert_eq!(located(&small, Controller::Cpuset), None);
    let err = small.require(Controller::Cpuset).unwrap_err().to_string();
    assert!(err.contains("cpuset") && err.contains("cpu io memory pids"), "{err}");
}

/// `probe()` against the running kernel: the layout discovery finds, and each v2 core file
/// exactly on the kernels that have it (tested on 6.18 hybrid and 6.1 pure v2). The probe's
/// scratch cgroup is gone afterwards.
#[test]
fn probe_reports_what_the_kernel_has() {
    nook_testutil::require_root!();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (v.next().unwrap(), v.next().unwrap());
    let h = nook_cgroup::Hierarchies::discover().unwrap();
    let k = nook_cgroup::probe().unwrap();
    assert_eq!(k.layout, h.layout);
    let Some(v2) = h.v2.as_ref() else {
        assert!(!k.kill && !k.freeze && k.v2_controllers.is_empty(), "{k:?}");
        return;
    };
    assert_eq!(k.kill, version >= (5, 14), "kernel {release}: {k:?}");
    assert_eq!(k.freeze, version >= (5, 2), "kernel {release}: {k:?}");
    if k.pressure {
        assert!(std::path::Path::new("/proc/pressure/cpu").exists(), "{k:?}");
    }
    let own = v2.own_dir().unwrap();
    let offered = std::fs::read_to_string(own.join("cgroup.controllers")).unwrap();
    assert_eq!(k.v2_controllers, offered.split_whitespace().collect::<Vec<_>>());
    let subtree = std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap();
    if subtree.split_whitespace().any(|c| c == "memory") || h.v1.iter().any(|x| x.has("memory")) {
        assert_eq!(k.memory_peak, version >= (5, 19) || h.v1.iter().any(|x| x.has("memory")), "{k:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&own)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("nk-probe-{}-", std::process::id())))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `Hierarchies::discover` keeps its last result while the mount table, the caller's cgroup
/// and the v2 controllers stay as they were: a mount change in the caller's namespace is seen
/// by the very next call, in whichever thread (here one with a mount namespace of its own).
#[test]
fn discovery_sees_a_mount_change_at_once() {
    require_root!();
    nook_testutil::on_private_mount_ns(|| {
        let first = Hierarchies::discover().expect("discover");
        assert_eq!(Hierarchies::discover().expect("discover again"), first, "nothing changed");
        // An unrelated mount: discovered anew, the same result.
        let dir = nook_testutil::TempDir::new("cgdisc").unwrap();
        nook_ns::mount_tmpfs(dir.path(), Some("size=64k")).expect("tmpfs");
        assert_eq!(Hierarchies::discover().expect("after a mount"), first);
        // One hierarchy unmounted in this namespace: gone from the next discovery.
        let gone = first.v1.last().or(first.v2.as_ref()).expect("a hierarchy").mount_point.clone();
        nook_ns::unmount(&gone, true).expect("unmount a hierarchy");
        match Hierarchies::discover() {
            Ok(after) => {
                let points: Vec<&Path> = after.v1.iter().chain(&after.v2).map(|h| h.mount_point.as_path()).collect();
                assert!(!points.contains(&gone.as_path()), "{} still discovered: {points:?}", gone.display());
            }
            // It was the only one (pure v2).
            Err(e) => assert!(matches!(e, Error::NoHierarchy), "{e}"),
        }
        nook_ns::unmount(dir.path(), true).expect("unmount the tmpfs");
    });
    // Back in the caller's namespace: every hierarchy again.
    let here = Hierarchies::discover().expect("discover");
    assert_eq!(
        here.v1.len() + here.v2.iter().count(),
        cgroup_mounts(&fs::read_to_string("/proc/thread-self/mountinfo").unwrap()).len()
    );
}
