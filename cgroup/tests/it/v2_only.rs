//! What only cgroup v2 has, exercised for real (the pure v2 guest of `.ci/v2-lane` runs these;
//! elsewhere they print `SKIPPED <test>: <reason>`): a caller inside a delegated, non-root
//! cgroup meeting the "no internal processes" rule and moving itself into a leaf;
//! `CLONE_INTO_CGROUP` through the handle's directory fd, the child born under the group's
//! limits; and `hugetlb.<size>.max` stopping a huge page fault (wherever hugetlb is in a
//! cgroup2 tree and huge pages are free — the lane reserves some in the guest).
//!
//! Two tests re-execute this test binary as their child (`--exact <test>` with
//! `NK_V2_ONLY_ROLE` set): the child, born in a cgroup the parent made, is the library's
//! caller there.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use nook_cgroup::{Cgroup, CgroupSpec, Error, Hierarchies, HugetlbLimit, Layout, Memory, Pids, parse_page_size};
use nook_ns::{Command, Stdio};
use nook_testutil::{require_root, unique_name};

const ROLE: &str = "NK_V2_ONLY_ROLE";

/// A skip for a host that lacks what the test needs (not a privilege skip: those use
/// `require_root!`). The v2 lane fails on any skip it does not allow.
fn skip(test: &str, reason: &str) {
    nook_testutil::skip_unsupported(test, reason);
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn pids_in(dir: &Path) -> Vec<u32> {
    read(&dir.join("cgroup.procs")).lines().map(|l| l.parse().unwrap()).collect()
}

/// The value of `key` in a flat-keyed file (`memory.events`, `pids.events`, ...).
fn keyed(path: &Path, key: &str) -> u64 {
    let text = read(path);
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}: {text}", path.display()))
}

/// The layout, or a printed skip unless it is pure v2.
fn pure_v2(test: &str) -> Option<Hierarchies> {
    let h = Hierarchies::discover().unwrap();
    if h.layout == Layout::V2 {
        Some(h)
    } else {
        skip(test, &format!("needs a pure cgroup v2 host, this one is {:?} (.ci/v2-lane runs it)", h.layout));
        None
    }
}

/// Runs this test binary again, only `test`, with `NK_V2_ONLY_ROLE=role` and `env`, born in
/// the cgroup `dir` (CLONE_INTO_CGROUP).
fn rerun_in(cg: &Cgroup, test: &str, role: &str, env: &[(&str, String)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", &crate::test_name(module_path!(), test), "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .cgroup(cg.dir_fd().unwrap())
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "{:?}\n--- child stdout:\n{}\n--- child stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Like a service systemd started with `Delegate=yes`: the caller runs in a non-root cgroup
/// that was given the memory and pids controllers, and is itself the process in it. The
/// kernel refuses to enable controllers for that cgroup's children while it holds the caller,
/// so the library reports `NoInternalProcesses` naming the caller's cgroup and creates
/// nothing; with `leaf_for_parent_processes` it moves the caller into the leaf, enables the
/// controllers and creates the group with its limit.
#[test]
fn a_caller_in_a_delegated_cgroup_moves_itself_into_a_leaf_on_v2() {
    const TEST: &str = "a_caller_in_a_delegated_cgroup_moves_itself_into_a_leaf_on_v2";
    if std::env::var(ROLE).as_deref() == Ok("delegated") {
        return delegated_caller();
    }
    require_root!();
    let Some(_) = pure_v2(TEST) else { return };
    // The delegated cgroup: memory and pids are enabled for it in our own cgroup.
    let mut spec = CgroupSpec::new(unique_name("dlg"));
    spec.resources.memory = Some(Memory::default());
    spec.resources.pids = Some(Pids::default());
    let service = match Cgroup::create(&spec) {
        Ok(cg) => cg,
        Err(e @ Error::NoInternalProcesses { .. }) => {
            // A developer's session scope: our own cgroup holds processes we must not move.
            return skip(TEST, &format!("cannot delegate from the test's own cgroup: {e}"));
        }
        Err(e) => panic!("{e}"),
    };
    let dir = service.v2_dir().unwrap().to_owned();
    let delegated = read(&dir.join("cgroup.controllers"));
    assert!(delegated.contains("memory") && delegated.contains("pids"), "delegated: {delegated}");
    assert_eq!(read(&dir.join("cgroup.subtree_control")).trim(), "", "nothing enabled below it yet");

    let out = rerun_in(&service, TEST, "delegated", &[("NK_SERVICE_DIR", dir.display().to_string())]);
    assert!(out.status.success(), "the delegated caller: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("delegated caller: ok"), "{}", show(&out));

    // The child moved itself into the leaf; it has exited, the leaf is empty.
    assert!(dir.join("nk-leaf").is_dir());
    assert_eq!(pids_in(&dir.join("nk-leaf")), Vec::<u32>::new());
    service.remove().unwrap();
    assert!(!dir.exists());
}

/// The child's side: it was born in the delegated cgroup and is the only process there.
fn delegated_caller() {
    let service = PathBuf::from(std::env::var("NK_SERVICE_DIR").unwrap());
    let me = std::process::id();
    let h = Hierarchies::discover().unwrap();
    assert_eq!(h.v2.as_ref().unwrap().own_dir().as_deref(), Some(service.as_path()), "discovery finds our cgroup");
    assert_eq!(pids_in(&service), vec![me]);

    let mut spec = CgroupSpec::new("nk-sub");
    spec.resources.memory.get_or_insert_default().max(64 << 20);
    spec.resources.pids.get_or_insert_default().max(16);
    match Cgroup::create(&spec) {
        Err(Error::NoInternalProcesses { path, controllers }) => {
            assert_eq!(path, service, "the rule is about our own cgroup");
            assert!(controllers.contains("+memory") && controllers.contains("+pids"), "{controllers}");
        }
        other => panic!("expected NoInternalProcesses, got {other:?}"),
    }
    assert!(!service.join("nk-sub").exists(), "nothing created when the kernel refuses");
    assert_eq!(pids_in(&service), vec![me], "nothing moved either");

    spec.leaf_for_parent_processes = Some("nk-leaf".into());
    let sub = Cgroup::create(&spec).expect("create with a leaf for the delegated cgroup's processes");
    let leaf = service.join("nk-leaf");
    assert_eq!(pids_in(&leaf), vec![me], "the caller moved itself into the leaf");
    assert_eq!(pids_in(&service), Vec::<u32>::new());
    let own = read(Path::new("/proc/self/cgroup"));
    let rel = leaf.strip_prefix(&h.v2.as_ref().unwrap().mount_point).unwrap();
    assert_eq!(own.trim(), format!("0::/{}", rel.display()), "the kernel agrees");
    let enabled = read(&service.join("cgroup.subtree_control"));
    assert!(enabled.contains("memory") && enabled.contains("pids"), "enabled below the service: {enabled}");
    let sub_dir = sub.v2_dir().unwrap().to_owned();
    assert_eq!(sub_dir, service.join("nk-sub"));
    assert_eq!(read(&sub_dir.join("memory.max")).trim(), (64u64 << 20).to_string());
    assert_eq!(read(&sub_dir.join("pids.max")).trim(), "16");
    sub.remove().unwrap();
    assert!(!sub_dir.exists());
    println!("delegated caller: ok");
}

/// A child spawned with the handle's directory fd is created inside the group
/// (`CLONE_INTO_CGROUP`): before it runs a single instruction of its own it is the group's
/// only process, counted by `pids.current`, with no other cgroup; so `pids.max=1` already
/// stops its first fork (the kernel counts it in `pids.events`).
#[test]
fn clone_into_cgroup_starts_the_child_in_the_group_under_its_pids_limit_on_v2() {
    const TEST: &str = "clone_into_cgroup_starts_the_child_in_the_group_under_its_pids_limit_on_v2";
    require_root!();
    let Some(h) = pure_v2(TEST) else { return };
    let name = unique_name("cic");
    let mut spec = CgroupSpec::new(&name);
    spec.resources.pids.get_or_insert_default().max(1);
    let cg = Cgroup::create(&spec).unwrap();
    let dir = cg.v2_dir().unwrap().to_owned();

    let mut paused = Command::new("/bin/sh")
        .args(["-c", "(exit 0) & echo forked"])
        .cgroup(cg.dir_fd().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_paused()
        .unwrap();
    paused.kill_on_drop(true);
    let pid = paused.id();
    assert_eq!(cg.procs().unwrap(), vec![pid], "born in the group, no add_pid");
    let own = h.v2.as_ref().unwrap().own_cgroup.join(&name);
    assert_eq!(read(Path::new(&format!("/proc/{pid}/cgroup"))), format!("0::{}\n", own.display()));
    assert_eq!(read(&dir.join("pids.current")).trim(), "1");

    let out = paused.resume().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("forked"), "the fork must fail: {out:?}");
    assert!(keyed(&dir.join("pids.events"), "max") >= 1, "pids.events: {}", read(&dir.join("pids.events")));
    cg.remove().unwrap();
    assert!(!dir.exists());
}

/// The smallest huge page size and how many pages of it are free.
fn free_huge_pages() -> Option<(String, u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    for e in fs::read_dir("/sys/kernel/mm/hugepages").ok()?.flatten() {
        let name = e.file_name();
        let Some(kb) =
            name.to_str().and_then(|n| n.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse::<u64>().ok())
        else {
            continue;
        };
        let free = fs::read_to_string(e.path().join("free_hugepages")).ok()?.trim().parse().ok()?;
        if best.is_none_or(|(k, _)| kb < k) {
            best = Some((kb, free));
        }
    }
    let (kb, free) = best?;
    Some((nook_cgroup::page_size_name(kb), kb << 10, free))
}

/// `hugetlb.<size>.max` of one page: the group's first huge page faults in, the second is
/// refused and the process gets SIGBUS; `hugetlb.<size>.events` counts the refusal.
#[test]
fn hugetlb_max_stops_the_fault_past_the_limit_on_v2() {
    const TEST: &str = "hugetlb_max_stops_the_fault_past_the_limit_on_v2";
    if std::env::var(ROLE).as_deref() == Ok("hugetlb") {
        return touch_two_huge_pages();
    }
    require_root!();
    let h = Hierarchies::discover().unwrap();
    match h.locate(nook_cgroup::Controller::Hugetlb) {
        Some(l) if l.version() == nook_cgroup::Version::V2 => {}
        other => {
            return skip(TEST, &format!("hugetlb is not in a cgroup2 tree here ({other:?})"));
        }
    }
    let Some((size, bytes, free)) = free_huge_pages() else {
        return skip(TEST, "the kernel has no huge page sizes");
    };
    if free < 2 {
        return skip(TEST, &format!("{free} free {size} huge pages, 2 needed (echo 2 > /proc/sys/vm/nr_hugepages)"));
    }
    assert_eq!(parse_page_size(&size).unwrap(), bytes);
    let mut spec = CgroupSpec::new(unique_name("hug"));
    spec.resources.hugetlb = vec![HugetlbLimit::new(size.clone(), bytes)];
    let cg = Cgroup::create(&spec).unwrap();
    let dir = cg.v2_dir().unwrap().to_owned();
    assert_eq!(read(&dir.join(format!("hugetlb.{size}.max"))).trim(), bytes.to_string());

    let out = rerun_in(&cg, TEST, "hugetlb", &[("NK_HUGE_PAGE_BYTES", bytes.to_string())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("touched page 1"), "the first page is within the limit: {}", show(&out));
    assert!(!stdout.contains("touched page 2"), "the second is not: {}", show(&out));
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{}", show(&out));
    let events = dir.join(format!("hugetlb.{size}.events"));
    assert!(keyed(&events, "max") >= 1, "{}: {}", events.display(), read(&events));
    assert_eq!(read(&dir.join(format!("hugetlb.{size}.current"))).trim(), "0", "freed with the process");
    cg.remove().unwrap();
}

/// The child's side: map two huge pages and write to each.
fn touch_two_huge_pages() {
    let bytes: usize = std::env::var("NK_HUGE_PAGE_BYTES").unwrap().parse().unwrap();
    // SAFETY: an anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap MAP_HUGETLB: {}", std::io::Error::last_os_error());
    for page in 0..2 {
        // SAFETY: inside the mapping just made; a refused fault is SIGBUS, which ends us.
        unsafe { std::ptr::write_volatile(p.cast::<u8>().add(page * bytes), 1) };
        println!("touched page {}", page + 1);
    }
}
