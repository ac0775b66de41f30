//! Stats and events of `nook-cgroup` against the real kernel: an OOM kill seen through the
//! watcher and the counters, a CPU quota by the kernel's own usage counter, freeze/thaw of a
//! counting process, kill-all of a process tree, and stats sections that follow the
//! controllers the cgroup has. Layout-agnostic: the same tests run on hybrid and pure v2.

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, CgroupSpec, Controller, Error, Hierarchies, Stats, Version};
use nook_ns::{Child, Command, Stdio};
use nook_testutil::{TempDir, require_root, unique_name};

/// Set in a re-executed copy of this test binary to make it a helper process.
const ROLE: &str = "NK_STATS_ROLE";
/// The counter file of the `count` helper.
const COUNT_FILE: &str = "NK_STATS_COUNT_FILE";
/// Generous bound for waiting on the kernel, only to avoid hangs.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// Runs `cmd` paused, moves it into `cg` (every hierarchy) and lets it continue. The child
/// is killed and reaped when its handle drops.
fn spawn_in(cg: &Cgroup, cmd: &mut Command) -> Child {
    let mut paused = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn_paused().unwrap();
    paused.kill_on_drop(true);
    cg.add_pid(paused.id()).unwrap();
    paused.resume().unwrap()
}

/// This test binary, re-executed to run only `test` with `role` set.
fn helper(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", &crate::test_name(module_path!(), test), "--nocapture", "--test-threads=1"]).env(ROLE, role);
    cmd
}

fn role_is(role: &str) -> bool {
    std::env::var_os(ROLE).is_some_and(|r| r == role)
}

/// Polls `cond` until it holds; panics with `what` after [`HANG_GUARD`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the cgroup has `controller` by the kernel's own account: its directory in the
/// controller's v1 hierarchy, or the controller listed in its v2 `cgroup.controllers`.
fn kernel_says_has(cg: &Cgroup, controller: Controller, v2_name: &str) -> bool {
    match cg.dir_of(controller) {
        Some((_, Version::V1)) => true,
        Some((dir, Version::V2)) => {
            fs::read_to_string(dir.join("cgroup.controllers")).unwrap().split_whitespace().any(|c| c == v2_name)
        }
        None => false,
    }
}

/// The `hog` helper: touches 256 MiB a page at a time; the cgroup's limit must kill it.
fn hog() -> ! {
    let mut chunks = Vec::new();
    for _ in 0..256 {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    // Reaching this means the limit did not hold.
    std::process::exit(3);
}

#[test]
fn memory_hog_is_oom_killed_and_the_watcher_and_counters_see_it() {
    if role_is("hog") {
        hog();
    }
    require_root!();
    let limit = 32 << 20;
    let mut spec = CgroupSpec::new(unique_name("oom"));
    spec.resources.memory.get_or_insert_default().max(limit);
    let cg = Cgroup::create(&spec).unwrap();
    let mut watcher = cg.oom_watcher().unwrap();
    // Nothing yet: the wait times out (and the non-blocking check agrees).
    let quiet = watcher.wait(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(quiet, None, "no OOM before the hog runs");
    assert_eq!(watcher.poll_event().unwrap(), None);

    let mut child = spawn_in(&cg, &mut helper("memory_hog_is_oom_killed_and_the_watcher_and_counters_see_it", "hog"));
    let event = watcher.wait(Some(HANG_GUARD)).unwrap().expect("an OOM event within the hang guard");
    assert!(event.oom + event.oom_kill >= 1, "{event:?}");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the hog was killed, not exited: {status:?}");

    // On v1 the notification comes before the kill: collect what followed.
    let mut seen = event;
    while let Some(more) = watcher.poll_event().unwrap() {
        seen.oom += more.oom;
        seen.oom_kill += more.oom_kill;
    }
    let stats = cg.stats().unwrap();
    let oom = stats.oom.expect("memory cgroup has OOM counters");
    assert!(oom.oom_kill >= 1, "{oom:?}");
    assert_eq!(seen.oom_kill, oom.oom_kill, "the watcher saw every kill the counter has: {seen:?} {oom:?}");
    if let Some(n) = oom.oom {
        assert!(n >= 1, "v2 memory.events counts the OOM: {oom:?}");
    }
    let memory = stats.memory.expect("memory section");
    eprintln!("OOM: first event {event:?}, all seen {seen:?}, counters {oom:?}, peak {:?}", memory.peak);
    assert_eq!(memory.limit, Some(limit));
    if let Some(peak) = memory.peak {
        assert!(peak > limit / 2 && peak <= limit, "peak {peak} near the limit {limit}");
    }
    assert!(!memory.stat.is_empty(), "memory.stat parsed");
    cg.remove().unwrap();
}

#[test]
fn busy_loop_under_a_20_percent_quota_stays_near_20_percent_by_the_kernel_counter() {
    require_root!();
    let mut spec = CgroupSpec::new(unique_name("cpu"));
    spec.resources.cpu.get_or_insert_default().quota_us(20_000).period_us(100_000);
    spec.resources.cpuacct = true;
    let cg = Cgroup::create(&spec).unwrap();
    let _child = spawn_in(&cg, Command::new("/bin/sh").args(["-c", "while :; do :; done"]));

    let cpu = |cg: &Cgroup| cg.stats().unwrap().cpu.expect("cpu section");
    // The kernel throttled the loop at least once.
    wait_for("nr_throttled > 0", || cpu(&cg).throttling.expect("throttling counters").nr_throttled > 0);

    let usage = |cg: &Cgroup| cpu(cg).usage.expect("usage counter").usage_usec;
    let (t0, u0) = (Instant::now(), usage(&cg));
    std::thread::sleep(Duration::from_secs(1));
    let (u1, wall) = (usage(&cg), t0.elapsed());
    let used = Duration::from_micros(u1 - u0);
    let share = used.as_secs_f64() / wall.as_secs_f64();
    eprintln!("busy loop under 20% quota: {used:?} of CPU in {wall:?} of wall time ({:.1}%)", share * 100.0);
    assert!(u1 > u0, "the loop ran");
    assert!(share <= 0.35, "{used:?} CPU in {wall:?}: the quota did not hold");
}

/// The `count` helper: writes an ever-growing, fixed-width counter to a file, about once a
/// millisecond.
fn count() -> ! {
    let file = fs::OpenOptions::new().write(true).open(std::env::var_os(COUNT_FILE).unwrap()).unwrap();
    for n in 1u64.. {
        file.write_all_at(format!("{n:020}\n").as_bytes(), 0).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    unreachable!()
}

fn read_count(path: &Path) -> u64 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap_or(0)
}

#[test]
fn freeze_stops_a_counting_process_and_thaw_resumes_it() {
    if role_is("count") {
        count();
    }
    require_root!();
    let dir = TempDir::new("frz").unwrap();
    let file = dir.join("count");
    fs::write(&file, "").unwrap();
    let mut spec = CgroupSpec::new(unique_name("frz"));
    spec.resources.freezer = true;
    let cg = Cgroup::create(&spec).unwrap();
    let mut cmd = helper("freeze_stops_a_counting_process_and_thaw_resumes_it", "count");
    let _child = spawn_in(&cg, cmd.env(COUNT_FILE, &file));
    wait_for("the counter to start", || read_count(&file) > 0);

    cg.freeze().unwrap();
    let frozen_at = read_count(&file);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read_count(&file), frozen_at, "the counter moved while frozen");

    cg.thaw().unwrap();
    wait_for("the counter to move after thaw", || read_count(&file) > frozen_at);
}

#[test]
fn kill_all_kills_a_tree_of_forked_descendants_and_pids_current_counts_them() {
    require_root!();
    let mut spec = CgroupSpec::new(unique_name("kil"));
    spec.resources.pids.get_or_insert_default().max(32);
    let cg = Cgroup::create(&spec).unwrap();
    // sh, a subshell, and four sleeps: two levels below the child.
    let tree = "(sleep 1000 & sleep 1000 & wait) & sleep 1000 & sleep 1000 & wait";
    let mut child = spawn_in(&cg, Command::new("/bin/sh").args(["-c", tree]));
    wait_for("six processes in the cgroup", || cg.procs().unwrap().len() >= 6);

    let procs = cg.procs().unwrap();
    let pids = cg.stats().unwrap().pids.expect("pids section");
    assert_eq!(pids.max, Some(32));
    assert_eq!(pids.current, procs.len() as u64, "single-threaded tasks: pids.current = cgroup.procs {procs:?}");

    cg.kill_all().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    for pid in procs {
        // Gone, a zombie awaiting its (new) parent's wait, or dead while being reaped ('X':
        // its reaper got to it between the listing and this read).
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            assert!(matches!(state, Some('Z' | 'X')), "pid {pid} survived kill_all: {stat}");
        }
    }
    cg.remove().unwrap();
}

#[test]
fn stats_sections_follow_the_controllers_the_cgroup_has() {
    require_root!();
    let layout = Hierarchies::discover().unwrap().layout;
    let mut spec = CgroupSpec::new(unique_name("sec"));
    spec.resources.pids.get_or_insert_default().max(20);
    let cg = Cgroup::create(&spec).unwrap();
    let stats: Stats = cg.stats().unwrap();
    eprintln!("{layout:?}: {}", serde_json::to_string(&stats).unwrap());

    let pids = stats.pids.expect("pids section");
    assert_eq!((pids.current, pids.max), (0, Some(20)), "an empty cgroup with pids.max 20");
    let has_memory = kernel_says_has(&cg, Controller::Memory, "memory");
    assert_eq!(stats.memory.is_some(), has_memory, "{:?}", stats.memory);
    assert_eq!(stats.oom.is_some(), has_memory, "{:?}", stats.oom);
    assert_eq!(stats.io.is_some(), kernel_says_has(&cg, Controller::Blkio, "io"), "{:?}", stats.io);
    let throttling = stats.cpu.as_ref().and_then(|c| c.throttling);
    assert_eq!(throttling.is_some(), kernel_says_has(&cg, Controller::Cpu, "cpu"), "{throttling:?}");
    if let Some(v2) = cg.v2_dir() {
        assert!(stats.cpu.and_then(|c| c.usage).is_some(), "the v2 core keeps cpu usage for every cgroup");
        let psi = fs::read_to_string(v2.join("cpu.pressure")).is_ok();
        assert_eq!(stats.pressure.is_some_and(|p| p.cpu.is_some()), psi, "PSI where the kernel has it");
    }

    // The OOM watcher needs the memory controller: a typed error without it.
    match cg.oom_watcher() {
        Ok(_) => assert!(has_memory, "watcher without memory controller"),
        Err(Error::ControllerUnavailable { controller, .. }) => {
            assert!(!has_memory);
            assert_eq!(controller, Controller::Memory);
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    cg.remove().unwrap();
}
