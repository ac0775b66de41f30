//! The facade against the real kernel (as root; the rootless case re-executes this binary
//! as `nobody`). Each test checks what the kernel shows from inside, and that nothing
//! (mount, cgroup, descriptor) is left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nook_ns::{Command as NsCommand, Namespace, NamespaceSet};
use nook_sandbox::{Error, Mount, NetworkMode, Outcome, Rootfs, Sandbox, SandboxBuilder, SandboxSpec, ValidationError};
use nook_testutil::{TempDir, require_root, tiny_rootfs};

fn sh(script: &str) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.command("/bin/sh").args(["-c", script]);
    b
}

fn run(b: &mut SandboxBuilder) -> (Outcome, String, String) {
    let out = b.output().expect("sandbox run");
    (out.outcome, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(b: &mut SandboxBuilder) -> String {
    let (outcome, out, err) = run(b);
    assert_eq!(outcome, Outcome::Exited(0), "stdout:\n{out}\nstderr:\n{err}");
    out
}

/// The mount table of this process (the caller's mount namespace), without the mounts that
/// tests running in parallel make in their own `nk*` temp dirs (owner-record and network
/// tests mount tmpfs and namespace files there; each `TempDir` detaches its mounts on drop,
/// and CI's leak check catches any left): a sandbox mounts only in its own namespace, so a
/// mount it leaked into the caller's would show up anywhere else.
pub(crate) fn mounts() -> BTreeSet<String> {
    let tmp = std::env::temp_dir();
    let in_test_dir = |line: &str| {
        line.split(' ').nth(4).is_some_and(|point| {
            std::path::Path::new(point)
                .strip_prefix(&tmp)
                .ok()
                .and_then(|rest| rest.components().next())
                .is_some_and(|first| first.as_os_str().to_string_lossy().starts_with("nk"))
        })
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| !in_test_dir(l))
        .map(str::to_owned)
        .collect()
}

/// Every `nk-sandbox-<our pid>-*` cgroup directory below the cgroup mounts.
pub(crate) fn our_cgroups() -> Vec<PathBuf> {
    let prefix = format!("nk-sandbox-{}-", std::process::id());
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

/// Tests of this binary run one at a time: several count descriptors and mounts of the
/// whole process (the owner tests, which hold pipes and pidfds, take it too).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn pid_1_is_nooks_init_and_the_payload_sees_only_its_own_processes() {
    require_root!();
    let _serial = serial();
    let out = ok(&mut sh("cat /proc/1/comm; echo $$; cd /proc; echo [0-9]*"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "nk-init", "{out}");
    assert_eq!(lines[1], "2", "the payload is PID 2 behind the init");
    let pids: Vec<u32> = lines[2].split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids, [1, 2], "only the init and the shell itself: {out}");
}

#[test]
fn the_hostname_is_the_sandboxs_and_the_hosts_is_untouched() {
    require_root!();
    let _serial = serial();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = ok(sh("hostname; cat /etc/hostname; grep -c nk-box /etc/hosts; echo $HOSTNAME").hostname("nk-box"));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["nk-box", "nk-box", "1", "nk-box"]);
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host);
}

#[test]
fn the_host_root_is_read_only_below_a_tmpfs_upper() {
    require_root!();
    let _serial = serial();
    // On the root file system itself: the host's other mounts (/tmp may be one) are not
    // part of the sandbox's root.
    let marker = Path::new("/").join(nook_testutil::unique_name("sbro"));
    let before = mounts();
    let out = ok(&mut sh(&format!("echo hi > {m} && cat {m}; cat /proc/self/mountinfo", m = marker.display())));
    assert_eq!(out.lines().next(), Some("hi"), "{out}");
    assert_eq!(fs_type(&out, "/"), Some("overlay"), "{out}");
    assert!(!marker.exists(), "the write went to the sandbox's upper, not the host");
    assert_eq!(mounts(), before, "nothing mounted in the caller's namespace");
}

/// The file system type of mount point `point` in mountinfo `text`.
fn fs_type<'a>(text: &'a str, point: &str) -> Option<&'a str> {
    // The last mount at that point is the one on top.
    text.lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == Some(point))
        .find_map(|l| l.split(" - ").nth(1)?.split(' ').next())
}

#[test]
fn nothing_outside_a_directory_rootfs_is_reachable() {
    require_root!();
    let _serial = serial();
    let dir = TempDir::new("sbdir").unwrap();
    let root = dir.join("root");
    tiny_rootfs(&root).unwrap();
    let outside = dir.join("outside-secret");
    std::fs::write(&outside, "secret").unwrap();
    let before = mounts();
    let script = format!(
        "ls /; cat {o} 2>/dev/null && echo REACHED; cat /proc/1/root/{o} 2>/dev/null && echo REACHED; \
         echo MOUNTS; cat /proc/self/mountinfo",
        o = outside.display(),
    );
    let out = ok(sh(&script).rootfs(Rootfs::dir(&root)).hostname("nk-dir"));
    assert!(!out.contains("REACHED"), "{out}");
    let (listing, mountinfo) = out.split_once("MOUNTS\n").unwrap();
    let mut entries: Vec<&str> = listing.lines().collect();
    entries.sort_unstable();
    let mut want: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    want.sort_unstable();
    assert_eq!(entries, want, "/ is the rootfs: {out}");
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap();
        assert!(
            ["/", "/proc", "/sys", "/etc/hostname", "/etc/hosts"].contains(&point)
                || point.starts_with("/dev")
                // the masked and read-only paths of the default hardening
                || point.starts_with("/proc/")
                || point.starts_with("/sys/"),
            "only the sandbox's own mounts: {line}"
        );
    }
    assert_eq!(mounts(), before);

    let ro = ok(sh("touch /nk-new 2>/dev/null && echo WROTE; echo done")
        .rootfs(Rootfs::Dir { path: root.clone(), read_only: true }));
    assert_eq!(ro.trim(), "done", "a read-only rootfs refuses writes");
    assert!(!root.join("nk-new").exists());
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    require_root!();
    let _serial = serial();
    let before = our_cgroups();
    // The shell prints how many children it has after each successful fork, and gives up
    // at the first refused one.
    let script = "i=0; while [ $i -lt 64 ]; do sleep 1000 & i=$((i+1)); echo $i; done";
    let state = TempDir::new("state").unwrap();
    let (outcome, out, err) = run(sh(script).pids_max(16).state_dir(state.path()));
    assert_ne!(outcome, Outcome::Exited(0), "{out}\n{err}");
    let n: usize = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!((1..=14).contains(&n), "init + shell + at most 14 children under pids.max 16: {n}");
    assert!(err.contains("fork"), "a fork was refused: {err}");
    assert_eq!(our_cgroups(), before, "the cgroup is removed after the run");
    assert_eq!(records(&state), 0, "and the owner record");
}

#[test]
fn a_memory_hog_is_oom_killed_and_the_outcome_says_so() {
    require_root!();
    let _serial = serial();
    let state = TempDir::new("state").unwrap();
    let (outcome, out, err) = run(sh("tail /dev/zero; echo survived").memory_max(32 << 20).state_dir(state.path()));
    assert!(matches!(outcome, Outcome::OomKilled { .. }), "{outcome:?}\n{out}\n{err}");
    assert!(our_cgroups().is_empty());
}

#[test]
fn network_none_has_only_lo_and_it_is_up() {
    require_root!();
    let _serial = serial();
    let out = ok(&mut sh("ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert_eq!(lines.len(), 3, "only lo: {out}");
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flags & libc::IFF_UP as u32, 0, "lo is up: {out}");
    // Host networking sees the caller's devices.
    let host = ok(sh("ls /sys/class/net").network(NetworkMode::Host));
    let mine: BTreeSet<String> =
        std::fs::read_dir("/sys/class/net").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(host.lines().map(str::to_owned).collect::<BTreeSet<_>>(), mine);
}

#[test]
fn a_timeout_kills_the_sandbox_and_says_so() {
    require_root!();
    let _serial = serial();
    let (outcome, _, _) = run(sh("sleep 1000").timeout(Duration::from_millis(300)));
    assert_eq!(outcome, Outcome::TimedOut);
    let mut sb = sh("sleep 1000").spawn().unwrap();
    assert_eq!(sb.try_wait().unwrap(), None);
    assert_eq!(sb.wait_timeout(Duration::from_millis(100)).unwrap(), Outcome::TimedOut);
}

#[test]
fn exit_codes_and_signals_come_back() {
    require_root!();
    let _serial = serial();
    assert_eq!(run(&mut sh("exit 3")).0, Outcome::Exited(3));
    assert_eq!(run(&mut sh("kill -9 $$")).0, Outcome::Exited(137), "the init reports 128 + signal");
    let sb = sh("sleep 1000").spawn().unwrap();
    sb.kill().unwrap();
    let mut sb = sb;
    assert_eq!(sb.wait().unwrap(), Outcome::Signaled(libc::SIGKILL));
}

#[test]
fn mounts_env_cwd_and_user_apply() {
    require_root!();
    let _serial = serial();
    let dir = TempDir::new("sbmnt").unwrap();
    std::fs::write(dir.join("file"), "from-host").unwrap();
    let out = ok(sh("cat /data/file; echo; touch /data/x 2>/dev/null || echo RO; stat -f -c %T /scratch/deep; \
                     echo $FOO; pwd; id -u; id -g; echo $PATH")
    .mount(Mount::bind_ro(dir.path(), "/data"))
    .mount(Mount::tmpfs("/scratch/deep"))
    .env("FOO", "bar")
    .current_dir("/scratch")
    .user(1234, 4321));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["from-host", "RO", "tmpfs", "bar", "/scratch", "1234", "4321", nook_sandbox::DEFAULT_PATH],
        "{out}"
    );
}

#[test]
fn the_dev_of_a_sandbox_is_minimal() {
    require_root!();
    let _serial = serial();
    let out = ok(&mut sh("ls /dev | tr '\\n' ' '; echo; readlink /dev/ptmx; \
                          head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; cat /proc/self/mountinfo"));
    let lines: Vec<&str> = out.lines().collect();
    let mut devs: Vec<&str> = lines[0].split_whitespace().collect();
    devs.sort_unstable();
    assert_eq!(
        devs,
        [
            "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
            "urandom", "zero"
        ]
    );
    assert_eq!(&lines[1..4], ["pts/ptmx", "4", "null-ok"], "{out}");
    for (point, fs) in [("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")] {
        assert_eq!(fs_type(&out, point), Some(fs), "{point}: {out}");
    }
}

#[test]
fn bad_specs_are_typed_errors_and_nothing_is_created() {
    require_root!();
    let _serial = serial();
    let before_mounts = mounts();
    let before_fds = fd_count();
    let check = |b: &mut SandboxBuilder, want: &dyn Fn(&ValidationError) -> bool| {
        b.memory_max(64 << 20);
        match b.spawn() {
            Err(Error::Invalid(v)) => assert!(want(&v), "unexpected: {v:?}"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    };
    check(sh("true").rootfs(Rootfs::dir("/nonexistent/nk-missing")), &|v| {
        matches!(v, ValidationError::MissingRootfs { .. })
    });
    check(sh("true").mount(Mount::tmpfs("relative")), &|v| matches!(v, ValidationError::RelativePath { .. }));
    check(sh("true").mount(Mount::tmpfs("/proc")), &|v| matches!(v, ValidationError::ReservedMountTarget { .. }));
    check(sh("true").mount(Mount::bind("/etc", "/sys/x")), &|v| {
        matches!(v, ValidationError::ReservedMountTarget { .. })
    });
    check(sh("true").network(NetworkMode::Host).namespaces(NamespaceSet::CONTAINER), &|v| {
        matches!(v, ValidationError::NamespaceConflict { namespace: Namespace::Net, present: true, .. })
    });
    check(&mut Sandbox::builder(), &|v| matches!(v, ValidationError::EmptyCommand));
    check(sh("true").env("A", "b\0c"), &|v| matches!(v, ValidationError::NulByte { .. }));
    check(sh("true").hostname("bad_name"), &|v| matches!(v, ValidationError::Hostname { .. }));
    check(sh("true").pids_max(0), &|v| matches!(v, ValidationError::Cgroup(_)));
    check(sh("true").domainname("x".repeat(100)), &|v| matches!(v, ValidationError::Ns(_)));
    assert_eq!(mounts(), before_mounts);
    assert_eq!(fd_count(), before_fds);
    assert!(our_cgroups().is_empty(), "no cgroup was created");
}

#[test]
fn a_spec_from_json_runs() {
    require_root!();
    let _serial = serial();
    let spec: SandboxSpec = serde_json::from_str(
        r#"{"args": ["/bin/sh", "-c", "hostname"], "hostname": "nk-json", "stdio": ["null", "piped", "inherit"]}"#,
    )
    .unwrap();
    let mut sb = SandboxBuilder::from_spec(spec).spawn().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(sb.stdio().1.unwrap(), &mut out).unwrap();
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    assert_eq!(out, "nk-json\n");
}

#[test]
fn two_hundred_one_shot_sandboxes_from_eight_threads_leave_nothing() {
    require_root!();
    let _serial = serial();
    let before_mounts = mounts();
    let before_fds = fd_count();
    let state_dir = TempDir::new("state").unwrap();
    let state = state_dir.path();
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..25 {
                    let out =
                        ok(sh("echo $$ $(hostname)").hostname(format!("nk-t{t}-{i}")).pids_max(32).state_dir(state));
                    assert_eq!(out, format!("2 nk-t{t}-{i}\n"));
                }
            });
        }
    });
    assert_eq!(fd_count(), before_fds, "no descriptor left");
    assert_eq!(mounts(), before_mounts, "no mount left");
    assert!(our_cgroups().is_empty(), "no cgroup left");
}

/// Files left in a state dir's records directory.
fn records(state: &TempDir) -> usize {
    std::fs::read_dir(state.join("sandboxes")).map_or(0, |rd| rd.count())
}

// --- rootless: the same binary re-executed as nobody -----------------------------------

const NOBODY: u32 = 65_534;
const ROLE_VAR: &str = "NK_SANDBOX_UNPRIV_ROLE";

fn run_as_nobody(entry: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = NsCommand::new(&exe)
        .args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, entry)
        .user(NOBODY, NOBODY)
        .groups(&[])
        .output()
        .expect("spawn the unprivileged child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{entry} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("NK-OK {entry}")), "{entry} did not run:\n{stdout}\n{stderr}");
}

#[test]
fn rootless_one_shot_runs_in_a_user_namespace() {
    const ME: &str = "rootless_one_shot_runs_in_a_user_namespace";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
        let out = ok(sh("id -u; cat /proc/self/uid_map; hostname; cat /proc/1/comm; echo hi > /tmp/nk-x && cat /tmp/nk-x; touch /etc/nk-x 2>/dev/null || echo RO")
            .hostname("nk-rootless"));
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, ["0", "0", "65534", "1", "nk-rootless", "nk-init", "hi", "RO"], "{out}");
        assert!(!Path::new("/etc/nk-x").exists() && !Path::new("/tmp/nk-x").exists());
        // Limits without a delegated cgroup: a typed error, or no limits when asked.
        match sh("true").pids_max(8).spawn() {
            Err(Error::CgroupUnavailable { .. }) => {}
            other => panic!("expected CgroupUnavailable, got {other:?}"),
        }
        assert_eq!(run(sh("true").pids_max(8).best_effort_limits(true)).0, Outcome::Exited(0));
        // Its own network namespace has `lo`, up (the child brings it up itself), and it is
        // confined as a root sandbox is (seccomp, no_new_privs).
        let out = ok(&mut sh("cat /sys/class/net/lo/flags; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"));
        let flags = u32::from_str_radix(out.lines().next().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_ne!(flags & libc::IFF_UP as u32, 0, "lo is up: {out}");
        assert!(out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"), "{out}");
        // Its root is read-only: a bind onto an existing file works, a mount point that does
        // not exist is a typed error before anything runs, one on /tmp (a tmpfs) is fine.
        let out = ok(sh("head -c 5 /etc/group; echo; ls -d /tmp/nk-t")
            .mount(Mount::bind_ro("/etc/passwd", "/etc/group"))
            .mount(Mount::tmpfs("/tmp/nk-t")));
        assert_eq!(out, "root:\n/tmp/nk-t\n");
        match sh("true").mount(Mount::tmpfs("/nk-not-there")).spawn() {
            Err(Error::Invalid(ValidationError::MountTargetMissing { .. })) => {}
            other => panic!("expected MountTargetMissing, got {other:?}"),
        }
        // exec into the rootless sandbox (the child joins its user namespace itself).
        let sb = Sandbox::builder()
            .hostname("nk-rootless-long")
            .best_effort_limits(true)
            .oom_score_adj(500)
            .create()
            .unwrap();
        let script = "hostname; id -u; cat /proc/1/comm /proc/self/oom_score_adj";
        let out = sb.exec(["sh", "-c", script]).stdout(nook_ns::Stdio::piped()).output();
        let out = out.expect("exec into a rootless sandbox");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "nk-rootless-long\n0\nnk-init\n500\n");
        sb.remove().unwrap();
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    let _serial = serial();
    run_as_nobody(ME);
}

// --- the long-lived form ----------------------------------------------------------------

/// The namespace identities of a process (`/proc/PID/ns/*` link texts), by kind.
fn ns_ids(pid: u32) -> BTreeSet<String> {
    ["mnt", "uts", "ipc", "net", "pid", "cgroup"]
        .iter()
        .map(|k| format!("{k} {}", std::fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap().display()))
        .collect()
}

#[test]
fn exec_joins_every_namespace_and_the_cgroup_of_a_long_lived_sandbox() {
    require_root!();
    let _serial = serial();
    let before = mounts();
    let state = TempDir::new("state").unwrap();
    let sb =
        Sandbox::builder().hostname("nk-long").pids_max(32).env("FOO", "bar").state_dir(state.path()).create().unwrap();
    let init = sb.id();
    // argv[0] is set by the exec itself (its name only once it ran its first instruction).
    assert_eq!(std::fs::read_to_string(format!("/proc/{init}/cmdline")).unwrap(), "nk-init\0");
    let init_ns = ns_ids(init);

    let mut child = sb
        .exec(["sh", "-c", "read x; echo $$ $(hostname) $FOO $x; cat /proc/1/comm"])
        .stdin(nook_ns::Stdio::piped())
        .stdout(nook_ns::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(ns_ids(pid), init_ns, "the exec'd process is in every namespace of the sandbox");
    assert!(sb.processes().unwrap().contains(&pid), "and in its cgroup");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 nk-long bar in\nnk-init\n");

    let out = sb.exec(["id", "-u"]).user(7, 7).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n");
    // Only the init is left — once the exec's short-lived helpers are reaped, which their
    // reaper (the init, for what it inherits) does a moment after `output()` returned.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut current = sb.stats().unwrap().pids.map(|p| p.current);
    while current != Some(1) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        current = sb.stats().unwrap().pids.map(|p| p.current);
    }
    assert_eq!(current, Some(1), "only the init is left");
    let cgroups = our_cgroups();
    assert!(!cgroups.is_empty());
    sb.remove().unwrap();
    assert!(our_cgroups().is_empty(), "remove removes the cgroup");
    assert_eq!(records(&state), 0, "and the owner record");
    assert_eq!(mounts(), before);
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    require_root!();
    let _serial = serial();
    let state = TempDir::new("state").unwrap();
    let sb = Sandbox::builder().state_dir(state.path()).create().unwrap();
    let counter = sb.exec(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done"]).spawn().unwrap();
    let read = || -> u64 {
        let out = sb.exec(["cat", "/tmp/count"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    };
    while read() == 0 {}
    sb.pause().unwrap();
    // While frozen nothing runs in the cgroup; an exec would be frozen too, so read the
    // counter through the init's root instead.
    let path = format!("/proc/{}/root/tmp/count", sb.id());
    let frozen = std::fs::read_to_string(&path).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), frozen, "no progress while paused");
    sb.resume().unwrap();
    // (Frozen between the shell's truncate and write, the file is empty.)
    let after: u64 = frozen.trim().parse().unwrap_or(0);
    while std::fs::read_to_string(&path).unwrap().trim().parse::<u64>().unwrap_or(0) <= after {}
    drop(counter);
    sb.remove().unwrap();
}

#[test]
fn a_sandbox_dies_with_its_owner() {
    const ME: &str = "a_sandbox_dies_with_its_owner";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        // The owner: a long-lived sandbox with a process in it, then wait to be killed.
        let state = std::env::var_os("NK_OWNER_STATE").expect("state dir");
        let sb = Sandbox::builder().pids_max(8).state_dir(std::path::PathBuf::from(state)).create().unwrap();
        let child = sb.exec(["sleep", "1000"]).spawn().unwrap();
        println!("PIDS {} {}", sb.id(), child.id());
        std::thread::sleep(Duration::from_secs(1000));
        return;
    }
    require_root!();
    let _serial = serial();
    // Processes exec'd into a sandbox are its owner's children: when the owner dies they are
    // reparented to the nearest subreaper (else the host's init) and must be reaped there
    // before the sandbox's PID 1 can finish. Play that role here (as systemd does for a
    // service), so nothing depends on how fast this machine's init reaps.
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::from_raw(1).unwrap())).unwrap();
    let state = TempDir::new("own").unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut owner = NsCommand::new(&exe)
        .args(["--exact", crate::test_name(module_path!(), ME).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, ME)
        .env("NK_OWNER_STATE", state.path())
        .stdout(nook_ns::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(owner.stdout.take().unwrap());
    // (libtest's "test NAME ... " precedes it on the same line.)
    while !line.contains("PIDS ") {
        line.clear();
        assert_ne!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap(), 0, "the owner ended early");
    }
    let pids: Vec<u32> =
        line[line.find("PIDS ").unwrap()..].split_whitespace().skip(1).map(|p| p.parse().unwrap()).collect();
    for pid in &pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists());
    }
    owner.kill().unwrap();
    owner.wait().unwrap();
    // Both the sandbox's init and the exec'd process end (and, reparented to us, are
    // reaped here); neither would if the sandbox outlived its owner.
    let deadline = std::time::Instant::now() + Duration::from_secs(10 * nook_testutil::time_factor() as u64);
    let mut left: Vec<u32> = pids.clone();
    while !left.is_empty() {
        if std::time::Instant::now() >= deadline {
            // Leave nothing behind, then fail.
            for &p in &left {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(p as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
            panic!("processes of the sandbox outlived its owner: {left:?}");
        }
        left.retain(|&p| {
            let pid = rustix::process::Pid::from_raw(p as i32).unwrap();
            match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                Ok(Some(_)) => false,
                Ok(None) => true,
                // Not (yet) our child: still there while /proc has it.
                Err(_) => Path::new(&format!("/proc/{p}")).exists(),
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    // What the owner could not remove is cleanup's job: its cgroup and its record.
    let report = nook_sandbox::StateDir::new(state.path()).cleanup().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(nook_sandbox::StateDir::new(state.path()).ids().unwrap().is_empty());
    let mut spec = nook_cgroup::CgroupSpec::new(format!("nk-sandbox-{}-0", owner.id()));
    spec.resources.pids = Some(nook_cgroup::Pids::new());
    assert!(nook_cgroup::Cgroup::open(&spec).is_err(), "cleanup removed the owner's cgroup");
}

/// A mount target that is a symbolic link in the root file system (an image's
/// `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`, dangling until the
/// sandbox runs) is mounted where the link leads, inside the root: the link then shows the
/// mounted file.
#[test]
fn a_mount_target_that_is_a_symlink_in_the_root_is_mounted_where_it_leads() {
    require_root!();
    let _serial = serial();
    let dir = TempDir::new("linkroot").unwrap();
    let root = dir.join("root");
    tiny_rootfs(&root).unwrap();
    std::os::unix::fs::symlink("../run/nk-resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
    let source = dir.join("resolv.conf");
    std::fs::write(&source, "nameserver 192.0.2.53\n").unwrap();
    let out = ok(sh("cat /etc/resolv.conf; readlink /etc/resolv.conf")
        .rootfs(Rootfs::dir(&root))
        .mount(Mount::bind_ro(&source, "/etc/resolv.conf")));
    assert_eq!(out, "nameserver 192.0.2.53\n../run/nk-resolve/stub-resolv.conf\n");
    assert!(root.join("run/nk-resolve/stub-resolv.conf").exists(), "the mount point was made inside the root");
}

/// `Sandbox::exec` in a sandbox that joined namespaces by path (a pod's container): the
/// process joins those too — the holder's host name, its user namespace (root there, the
/// holder's mapping) — not only the sandbox's new ones. (Was: an exec stayed in the
/// caller's UTS and user namespaces: host root in a container meant to be unprivileged.)
#[test]
fn exec_enters_the_namespaces_the_sandbox_joined_by_path() {
    require_root!();
    let _serial = serial();
    let map = nook_ns::IdMap::single(0, 100_000, 65_536);
    let mut holder = NsCommand::new("/bin/sleep");
    holder.arg("100").namespaces(NamespaceSet::new().with(Namespace::User).with(Namespace::Uts));
    holder.uid_map(map.clone()).gid_map(map).hostname("nk-holder");
    let mut holder = holder.spawn().unwrap();
    holder.kill_on_drop(true);
    let hpid = holder.id();
    let set = NamespaceSet::new().with(Namespace::Mount).with(Namespace::Pid).with(Namespace::Ipc);
    let sb = Sandbox::builder()
        .namespaces(set)
        .join_namespace(Namespace::User, format!("/proc/{hpid}/ns/user"))
        .join_namespace(Namespace::Uts, format!("/proc/{hpid}/ns/uts"))
        .network(NetworkMode::Host)
        .create()
        .expect("a sandbox in the holder's user and UTS namespaces");
    let out = sb.exec(["sh", "-c", "hostname; head -1 /proc/self/uid_map; id -u"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(lines, ["nk-holder", "0 100000 65536", "0"], "{out:?}");
    sb.remove().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// A bind's propagation (Docker's `bind-propagation`, Kubernetes' `mountPropagation`), seen
/// by the kernel both ways on a shared host mount: shared — the sandbox's mount shows on the
/// host and the host's in the sandbox; slave — only the host's reaches the sandbox; private
/// (the default) — neither. Each time, nothing else of the sandbox's reaches the host.
#[test]
fn bind_propagation_follows_the_hosts_mounts_as_asked() {
    use nook_sandbox::BindPropagation::{Private, Shared, Slave};
    require_root!();
    let _serial = serial();
    for (propagation, want) in [(Shared, ("hello", true)), (Slave, ("hello", false)), (Private, ("none", false))] {
        let dir = TempDir::new("sbprop").unwrap();
        let a = dir.join("a");
        std::fs::create_dir(&a).unwrap();
        nook_ns::mount_tmpfs(&a, Some("size=64k")).unwrap();
        nook_ns::set_propagation(&a, nook_ns::Propagation::Shared, false).unwrap();
        for d in ["fromchild", "fromhost"] {
            std::fs::create_dir(a.join(d)).unwrap();
        }
        let before = mounts();
        let sb = sh(r#"mount -t tmpfs -o size=64k nksbprop /vol/fromchild || exit 9
                       : > /vol/ready
                       i=0; while [ ! -e /vol/fromhost/marker ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
                       cat /vol/fromhost/marker 2>/dev/null || echo none"#)
        .privileged(true)
        .mount(Mount::bind(&a, "/vol").with_propagation(propagation))
        .stdout(nook_ns::Stdio::piped())
        .spawn()
        .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !a.join("ready").exists() {
            assert!(std::time::Instant::now() < deadline, "{propagation:?}: the sandbox did not get ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let from_child = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == a.join("fromchild").to_str());
        nook_ns::mount_tmpfs(&a.join("fromhost"), Some("size=64k")).unwrap();
        std::fs::write(a.join("fromhost/marker"), "hello").unwrap();
        let out = sb.wait_with_output().unwrap();
        assert_eq!(out.outcome, Outcome::Exited(0), "{propagation:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(
            (text.as_str(), from_child),
            want,
            "{propagation:?}: (marker in the sandbox, its mount on the host)"
        );
        for m in ["fromhost", "fromchild"] {
            let _ = nook_ns::unmount(&a.join(m), true);
        }
        let _ = nook_ns::unmount(&a, true);
        assert_eq!(mounts(), before, "{propagation:?}: the sandbox's other mounts stayed its own");
    }
}
