//! A sandbox dies with its owner, and a crash leaves nothing for long (issue 13 item 6), on
//! the real kernel: `create()` and a limited one-shot run write an owner record into the
//! builder's state dir and remove it after a clean teardown; an owner SIGKILLed with a
//! long-lived sandbox and an `exec`ed process takes every process of the sandbox with it, and
//! `cleanup()` then removes the rest (cgroup, record); an owner SIGKILLed at random points
//! of create/remove cycles leaves no process, and after `cleanup()` no cgroup and no record.
//!
//! Every state dir is a private temp dir (never `/run/nook`); cgroups are below the test's
//! own cgroup.

use std::io::{BufRead, BufReader, Lines};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nook_ns::Stdio as NsStdio;
use nook_sandbox::state::{Object, StateDir};
use nook_sandbox::{Outcome, Sandbox, SandboxBuilder};
use nook_testutil::{TempDir, require_root, time_factor, unique_name};

const ROLE: &str = "NK_OWNER_ROLE";
const BASE: &str = "NK_OWNER_BASE";
/// Set in the helper's environment and in its sandboxes' (spec env): every process of
/// theirs — the helper, a child still before its exec, the init, an exec'd process — shows
/// it in `/proc/PID/environ`.
const TAG: &str = "NK_OWNER_TAG";

fn helper_role(entry: &str) -> Option<PathBuf> {
    (std::env::var(ROLE).as_deref() == Ok(entry)).then(|| std::env::var_os(BASE).unwrap().into())
}

/// Re-runs this binary as a helper for test `entry`, tagged with `tag`.
fn spawn_helper(entry: &str, base: &Path, tag: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE, entry)
        .env(BASE, base)
        .env(TAG, tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper")
}

/// A quiet builder for the helper's sandboxes: the state dir under `base`, the tag in the
/// environment, no stdio of the helper's (the test reads the helper's stdout).
fn builder(base: &Path) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.state_dir(base.join("state"))
        .env(TAG, std::env::var(TAG).unwrap())
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null());
    b
}

/// Reads the helper's stdout up to a line with `prefix` (the helper's test harness may have
/// written the test's name before it on the same line); returns the line from `prefix` on.
fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find(prefix) {
            return line[at..].to_owned();
        }
    }
    panic!("helper ended without {prefix}");
}

/// Pids of live processes with `TAG=tag` in their environment (a zombie's is empty).
fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG}={tag}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Waits (up to a deadline that only a failure reaches) until no process carries the tag.
fn no_tagged_process_left(tag: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10 * u64::from(time_factor()));
    loop {
        let left = tagged(tag);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every `nk-sandbox-<pid>-*` cgroup directory below the cgroup mounts.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("nk-sandbox-{pid}-");
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

/// The files in the state dir's records directory (records, locks, temporary files).
fn state_files(base: &Path) -> Vec<String> {
    match std::fs::read_dir(base.join("state/sandboxes")) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

/// Whether the process behind `fd` has exited (its pidfd turns readable), waiting up to a
/// deadline that only a failure reaches.
fn exited(fd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let ts = Timespec { tv_sec: 10 * i64::from(time_factor()), tv_nsec: 0 };
    loop {
        match poll(&mut fds, Some(&ts)) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) => return n > 0,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Kills the helper (if still running) and cleans the state dir when a test ends, also on
/// panic.
struct Guard<'a> {
    base: &'a Path,
    helper: Option<Child>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = StateDir::new(self.base.join("state")).cleanup();
    }
}

#[test]
fn create_and_a_limited_one_shot_keep_a_record_until_their_teardown() {
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("rec").unwrap();
    let state = StateDir::new(tmp.join("state"));

    let sb = Sandbox::builder().state_dir(state.root()).create().unwrap();
    let path = sb.record_path().expect("a long-lived sandbox has a record").to_owned();
    let id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let rec = state.read(&id).unwrap();
    // The cgroup (with exactly its directories) and the init with its start time.
    match &rec.objects[..] {
        [Object::Cgroup { dirs, .. }, Object::Process { process }] => {
            let mut real: Vec<&Path> = sb.cgroup().unwrap().paths().collect();
            real.sort();
            let mut recorded: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            recorded.sort();
            assert_eq!(recorded, real);
            assert_eq!(process.pid, sb.id());
            assert!(process.is_alive());
        }
        other => panic!("{other:?}"),
    }
    // Its owner (this process) lives: a cleanup leaves it.
    let report = state.cleanup().unwrap();
    assert_eq!(report.live, [id.as_str()], "{report:?}");
    sb.remove().unwrap();
    assert!(!path.exists());
    assert!(state.ids().unwrap().is_empty());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    // A one-shot run with limits: recorded while it runs, removed with its teardown.
    let mut sb = Sandbox::builder().state_dir(state.root()).pids_max(16).command("true").spawn().unwrap();
    let path = sb.record_path().expect("a limited one-shot sandbox has a record").to_owned();
    assert!(path.exists());
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    assert!(!path.exists());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));

    // Without a cgroup, nothing outlives the owner: no record.
    let sb = Sandbox::builder().state_dir(state.root()).command("true").spawn().unwrap();
    assert!(sb.record_path().is_none());
    drop(sb);
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
}

#[test]
fn owner_sigkilled_takes_the_sandbox_and_its_execs_along_and_cleanup_leaves_nothing() {
    const ME: &str = "owner_sigkilled_takes_the_sandbox_and_its_execs_along_and_cleanup_leaves_nothing";
    if let Some(base) = helper_role(ME) {
        let sb = builder(&base).create().expect("create");
        let child = sb
            .exec(["sleep", "1000"])
            .stdin(NsStdio::null())
            .stdout(NsStdio::null())
            .stderr(NsStdio::null())
            .spawn()
            .expect("exec");
        let record = sb.record_path().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
        println!("NK-PIDS {} {} {record}", sb.id(), child.id());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("own").unwrap();
    let tag = unique_name("tag");
    let mut guard = Guard { base: tmp.path(), helper: Some(spawn_helper(ME, tmp.path(), &tag)) };
    let helper = guard.helper.as_mut().unwrap();
    let helper_pid = helper.id();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let line = read_until(&mut lines, "NK-PIDS ");
    let mut words = line.split_whitespace().skip(1);
    let init: u32 = words.next().unwrap().parse().unwrap();
    let exec: u32 = words.next().unwrap().parse().unwrap();
    let id = words.next().unwrap().to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let (init_fd, exec_fd) = (pidfd(init), pidfd(exec));
    let state = StateDir::new(tmp.join("state"));
    let rec = state.read(&id).unwrap();
    let dirs: Vec<PathBuf> = rec
        .objects
        .iter()
        .flat_map(|o| match o {
            Object::Cgroup { dirs, .. } => dirs.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()), "{rec:?}");
    assert!(tagged(&tag).contains(&exec), "the exec'd process carries the tag");

    helper.kill().unwrap(); // SIGKILL: no destructor runs
    helper.wait().unwrap();
    // The owner-death guarantee, before any cleanup: the init (kill_with_parent_process)
    // and with it the pid namespace, so the exec'd process too.
    assert!(exited(&init_fd), "the sandbox's init {init} outlived its owner");
    assert!(exited(&exec_fd), "the exec'd process {exec} outlived its owner");
    assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new());
    // What outlives the owner is the cgroup and the record: cleanup removes both.
    assert!(dirs.iter().any(|d| d.is_dir()));
    let report = state.cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed, [id.as_str()]);
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    assert_eq!(cgroups_of(helper_pid), Vec::<PathBuf>::new());
    assert!(state_files(tmp.path()).is_empty(), "{:?}", state_files(tmp.path()));
}

/// A small pseudo-random sequence (no dependency): xorshift seeded from the clock.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn owner_sigkilled_anywhere_in_create_or_remove_leaves_nothing_after_cleanup() {
    const ME: &str = "owner_sigkilled_anywhere_in_create_or_remove_leaves_nothing_after_cleanup";
    if let Some(base) = helper_role(ME) {
        // Create and remove sandboxes until killed: the kill lands at a random point of a
        // cycle (record written, cgroup made, init cloned, paused, released; teardown).
        println!("NK-GO");
        loop {
            let sb = builder(&base).pids_max(16).create().expect("create");
            sb.exec(["true"]).status().expect("exec");
            sb.remove().expect("remove");
        }
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    const ATTEMPTS: u32 = 20;
    let mut with_record = 0;
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    for attempt in 0..ATTEMPTS {
        let tmp = TempDir::new("kill").unwrap();
        let tag = unique_name("tag");
        let mut guard = Guard { base: tmp.path(), helper: Some(spawn_helper(ME, tmp.path(), &tag)) };
        let helper = guard.helper.as_mut().unwrap();
        let helper_pid = helper.id();
        let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
        read_until(&mut lines, "NK-GO");
        std::thread::spawn(move || lines.for_each(drop));
        // 0 to 80 ms into the loop (a cycle takes tens of ms here).
        let delay = Duration::from_micros(xorshift(&mut seed) % 80_000);
        std::thread::sleep(delay);
        helper.kill().unwrap();
        helper.wait().unwrap();
        let why = format!("attempt {attempt}, killed {delay:?} after NK-GO");

        assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new(), "{why}: processes outlived their owner");
        let report = StateDir::new(tmp.join("state")).cleanup().unwrap();
        assert!(report.is_clean(), "{why}: {report:?}");
        with_record += report.removed.len();
        assert!(report.live.is_empty() && report.busy.is_empty(), "{why}: {report:?}");
        assert_eq!(cgroups_of(helper_pid), Vec::<PathBuf>::new(), "{why}");
        assert!(state_files(tmp.path()).is_empty(), "{why}: {:?}", state_files(tmp.path()));
        drop(guard);
    }
    // How many kills left a sandbox (the others landed between a remove and the next
    // create's record, or before the first).
    println!("{with_record} of {ATTEMPTS} kills left a sandbox to clean");
}
