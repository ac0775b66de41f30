//! Integration tests: each namespace kind isolates what the kernel shows the child.
//!
//! Every test spawns a real child with [`nook_ns::Command`] and checks the kernel's own view
//! (`/proc`, `/sys`, system calls) from inside the child and from the parent. They need root
//! and are skipped (with a printed reason) otherwise.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Lines, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nook_ns::{Child, ClockOffset, Command, IdMap, IdMapping, MountStep, Namespace, NamespaceSet, Stdio, differing};
use nook_testutil::{TempDir, require_root, unique_name};
use procfs_core::FromRead;
use procfs_core::process::{MountInfos, Status};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `/bin/sh -c script sh ...`: further `.arg()`s become `$1`, `$2`, ...
fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh"]);
    cmd
}

/// Runs the command to completion, asserts it succeeded and returns its stdout.
fn run(cmd: &mut Command) -> String {
    nook_testutil::success_stdout(cmd.output().expect("spawn child"))
}

/// A child that printed some lines and now blocks reading stdin, so the parent can look at
/// it from outside while it is alive. Killed and reaped on drop (also on panic).
struct Held {
    child: Child,
    _stdout: Lines<BufReader<fs::File>>,
}

/// Appended to a script: say we are ready, then wait until the parent closes stdin.
const HOLD: &str = "echo nk-ready; read _ || true";

/// Spawns `cmd` (whose script must end with [`HOLD`]) and returns it with the lines it
/// printed before `nk-ready`.
fn spawn_held(cmd: &mut Command) -> (Held, Vec<String>) {
    let mut child = cmd.stdin(Stdio::Piped).stdout(Stdio::Piped).spawn().expect("spawn child");
    child.kill_on_drop(true);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut before = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line == "nk-ready" => break,
            Some(Ok(line)) => before.push(line),
            other => panic!("child ended before it was ready ({other:?}); it printed {before:?}"),
        }
    }
    (Held { child, _stdout: lines }, before)
}

impl Held {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin so it exits, and asserts it exited successfully.
    fn release(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for child");
        assert!(status.success(), "held child failed: {status:?}");
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim_end().to_owned()
}

/// The value fields of a `/proc/PID/status` line such as `Uid:`.
fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let path = format!("/proc/{pid}/status");
    let st = Status::from_read(fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}")))
        .unwrap_or_else(|e| panic!("parse {path}: {e}"));
    match field {
        "Uid:" => vec![st.ruid, st.euid, st.suid, st.fuid],
        "Gid:" => vec![st.rgid, st.egid, st.sgid, st.fgid],
        _ => panic!("no {field} in status"),
    }
}

/// The `(inside, outside, count)` lines of `/proc/PID/{uid,gid}_map`.
fn id_map_lines(pid: u32, file: &str) -> Vec<(u32, u32, u32)> {
    read_trimmed(format!("/proc/{pid}/{file}"))
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split_whitespace().map(|n| n.parse().expect("numeric map field")).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

/// Mount points listed in a mountinfo text.
fn mount_points(mountinfo: &str) -> Vec<String> {
    let infos = MountInfos::from_read(mountinfo.as_bytes()).expect("parse mountinfo");
    infos.into_iter().map(|m| m.mount_point.to_string_lossy().into_owned()).collect()
}

/// The interface names in a `/proc/net/dev` text.
fn net_dev_names(text: &str) -> Vec<String> {
    text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_owned()).collect()
}

/// The keys (first column) of `/proc/sysvipc/shm`.
fn shm_keys(text: &str) -> Vec<libc::key_t> {
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

fn clock_now(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-parameter for clock_gettime.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    ts
}

fn secs(ts: libc::timespec) -> f64 {
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn uptime_secs(text: &str) -> f64 {
    text.split_whitespace().next().and_then(|v| v.parse().ok()).expect("uptime seconds")
}

// ---------------------------------------------------------------------------------------
// UTS
// ---------------------------------------------------------------------------------------

/// Puts the host's hostname and NIS domain back if a broken build changed them.
struct RestoreUts {
    hostname: String,
    domainname: String,
}

impl Drop for RestoreUts {
    fn drop(&mut self) {
        if read_trimmed("/proc/sys/kernel/hostname") != self.hostname {
            let _ = fs::write("/proc/sys/kernel/hostname", &self.hostname);
        }
        if read_trimmed("/proc/sys/kernel/domainname") != self.domainname {
            let _ = fs::write("/proc/sys/kernel/domainname", &self.domainname);
        }
    }
}

#[test]
fn uts_namespace_gives_child_its_own_hostname_and_nis_domain() {
    require_root!();
    let host = RestoreUts {
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        domainname: read_trimmed("/proc/sys/kernel/domainname"),
    };
    let name = format!("nk-{}", unique_name("uts"));
    let domain = format!("nk-{}.nis", unique_name("nis"));

    let out = run(sh("hostname; cat /proc/sys/kernel/domainname")
        .namespaces(Namespace::Uts.as_set())
        .hostname(&name)
        .domainname(&domain));

    assert_eq!(out, format!("{name}\n{domain}\n"));
    assert_eq!(read_trimmed("/proc/sys/kernel/hostname"), host.hostname, "host hostname changed");
    assert_eq!(read_trimmed("/proc/sys/kernel/domainname"), host.domainname, "host NIS domain changed");
}

// ---------------------------------------------------------------------------------------
// PID
// ---------------------------------------------------------------------------------------

#[test]
fn pid_namespace_makes_child_pid_1_and_its_proc_shows_only_itself() {
    require_root!();
    // The glob is expanded by the shell itself: no other process exists in the namespace.
    let out = run(sh("echo $$; for p in /proc/[0-9]*; do echo \"${p#/proc/}\"; done")
        .namespaces(NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount))
        .mount(MountStep::proc("/proc")));

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["1", "1"], "getpid() and the pids in the new proc");
    // The host's proc shows far more than one process, including us.
    assert!(Path::new(&format!("/proc/{}", std::process::id())).exists());
}

// ---------------------------------------------------------------------------------------
// IPC
// ---------------------------------------------------------------------------------------

/// Removes the SysV segment with this key from the host's IPC namespace, should one leak.
struct HostShmGuard(libc::key_t);

impl Drop for HostShmGuard {
    fn drop(&mut self) {
        // SAFETY: integer-only syscalls; a null buffer is allowed for IPC_RMID.
        unsafe {
            let id = libc::shmget(self.0, 0, 0);
            if id >= 0 {
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
}

#[test]
fn ipc_namespace_keeps_sysv_shm_segment_from_the_host() {
    require_root!();
    let key: libc::key_t = 0x6e6b_0000 | (std::process::id() & 0xffff) as libc::key_t;
    let host_before = read_trimmed("/proc/sysvipc/shm");
    assert!(!shm_keys(&host_before).contains(&key), "key {key:#x} already in use on the host");
    let _leak = HostShmGuard(key);

    // Runs in the child, after setup: one raw syscall, no allocation.
    let create_segment = move || {
        // SAFETY: integer-only syscall.
        let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        if id < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/sysvipc/shm").namespaces(Namespace::Ipc.as_set());
    // SAFETY: the hook is async-signal-safe (shmget only) and does not allocate.
    unsafe { cmd.pre_exec(create_segment) };
    let inside = run(&mut cmd);

    assert_eq!(shm_keys(&inside), [key], "the child's IPC namespace holds exactly its own segment");
    assert!(!shm_keys(&read_trimmed("/proc/sysvipc/shm")).contains(&key), "segment visible on the host");
    // SAFETY: integer-only syscall.
    let host_id = unsafe { libc::shmget(key, 0, 0) };
    assert_eq!(host_id, -1, "shmget finds the child's key on the host");
    assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::ENOENT));
}

/// Unlinks the POSIX queue with this name from the host's IPC namespace, should one leak.
struct HostMqGuard(CString);

impl Drop for HostMqGuard {
    fn drop(&mut self) {
        // SAFETY: the name is NUL-terminated.
        unsafe { libc::mq_unlink(self.0.as_ptr()) };
    }
}

#[test]
fn ipc_namespace_keeps_posix_message_queue_from_the_host() {
    require_root!();
    let mq_dir = TempDir::new("mq").unwrap();
    let short = unique_name("mq");
    let name = CString::new(format!("/{short}")).unwrap();
    let _leak = HostMqGuard(name.clone());

    let child_name = name.clone();
    // Runs in the child, after the mqueue mount: one raw syscall, no allocation.
    let create_queue = move || {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: the name is NUL-terminated; a null attr asks for the defaults.
        let mqd = unsafe {
            libc::mq_open(child_name.as_ptr(), flags, 0o600 as libc::mode_t, std::ptr::null_mut::<libc::mq_attr>())
        };
        if mqd < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    let mut cmd = sh("ls -A \"$1\"");
    cmd.arg(mq_dir.path())
        .namespaces(NamespaceSet::new().with(Namespace::Ipc).with(Namespace::Mount))
        .mount(MountStep::mqueue(mq_dir.path()));
    // SAFETY: the hook is async-signal-safe (mq_open only) and does not allocate.
    unsafe { cmd.pre_exec(create_queue) };
    let inside = run(&mut cmd);

    assert_eq!(inside.lines().collect::<Vec<_>>(), [short.as_str()], "the child's mqueue fs lists its queue");
    // SAFETY: the name is NUL-terminated; no O_CREAT, so no further arguments.
    let mqd = unsafe { libc::mq_open(name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let err = io::Error::last_os_error();
    if mqd >= 0 {
        // SAFETY: mqd is a descriptor we own.
        unsafe { libc::mq_close(mqd) };
    }
    assert_eq!(mqd, -1, "the host's IPC namespace has the child's queue");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(fs::read_dir(mq_dir.path()).unwrap().count(), 0, "mqueue mount leaked to the host");
}

// ---------------------------------------------------------------------------------------
// NET
// ---------------------------------------------------------------------------------------

#[test]
fn net_namespace_shows_only_loopback() {
    require_root!();
    let out = run(sh("ls /sys/class/net; echo --; cat /proc/net/dev")
        .namespaces(NamespaceSet::new().with(Namespace::Net).with(Namespace::Mount))
        .mount(MountStep::sysfs("/sys")));

    let (sysfs, proc_net) = out.split_once("--\n").expect("separator");
    assert_eq!(sysfs.lines().collect::<Vec<_>>(), ["lo"], "/sys/class/net in the child");
    assert_eq!(net_dev_names(proc_net), ["lo"], "/proc/net/dev in the child");
    let host = net_dev_names(&read_trimmed("/proc/net/dev"));
    assert!(host.iter().any(|n| n == "lo"), "host interfaces: {host:?}");
}

// ---------------------------------------------------------------------------------------
// USER
// ---------------------------------------------------------------------------------------

#[test]
fn user_namespace_maps_root_inside_to_uid_100000_outside() {
    require_root!();
    let (held, inside) = spawn_held(
        sh(&format!("id -u; id -g; {HOLD}"))
            .namespaces(Namespace::User.as_set())
            .uid_map(IdMap::root_to(100_000))
            .gid_map(IdMap::root_to(100_000)),
    );

    assert_eq!(inside, ["0", "0"], "id -u / id -g inside");
    assert_eq!(status_ids(held.pid(), "Uid:"), [100_000; 4], "real, effective, saved, fs uid outside");
    assert_eq!(status_ids(held.pid(), "Gid:"), [100_000; 4], "real, effective, saved, fs gid outside");
    held.release();
}

#[test]
fn user_namespace_writes_multi_range_id_maps_exactly() {
    require_root!();
    let map = IdMap::new().with(IdMapping::new(0, 100_000, 1)).with(IdMapping::new(1, 200_000, 1000));
    let expected = [(0, 100_000, 1), (1, 200_000, 1000)];

    // The maps as the kernel shows them while the child waits at the sync point.
    let paused = Command::new("/bin/true")
        .namespaces(Namespace::User.as_set())
        .uid_map(map.clone())
        .gid_map(map.clone())
        .spawn_paused()
        .expect("spawn paused child");
    assert_eq!(id_map_lines(paused.id(), "uid_map"), expected);
    assert_eq!(id_map_lines(paused.id(), "gid_map"), expected);
    let status = paused.resume().expect("resume").wait().unwrap();
    assert!(status.success());

    // The second range is live: uid 1000 inside is 200999 outside.
    let (held, inside) = spawn_held(
        sh(&format!("id -u; id -g; {HOLD}"))
            .namespaces(Namespace::User.as_set())
            .uid_map(map.clone())
            .gid_map(map)
            .user(1000, 1000),
    );
    assert_eq!(inside, ["1000", "1000"]);
    assert_eq!(status_ids(held.pid(), "Uid:"), [200_999; 4]);
    assert_eq!(status_ids(held.pid(), "Gid:"), [200_999; 4]);
    held.release();
}

// ---------------------------------------------------------------------------------------
// CGROUP
// ---------------------------------------------------------------------------------------

/// Where the cgroup2 hierarchy is mounted, from our mountinfo.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    crate::procfs::thread_mounts().into_iter().find(|m| m.fs_type == "cgroup2").map(|m| m.mount_point)
}

/// A cgroup2 directory below our own cgroup; removed on drop.
pub(crate) struct TestCgroup {
    pub(crate) path: PathBuf,
    /// The path as `/proc/PID/cgroup` shows it (relative to the hierarchy root).
    pub(crate) rel: String,
}

impl TestCgroup {
    pub(crate) fn create(mount: &Path) -> io::Result<TestCgroup> {
        let own = read_trimmed("/proc/self/cgroup");
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).expect("cgroup2 line in /proc/self/cgroup");
        let rel = format!("{}/{}", own.trim_end_matches('/'), unique_name("cg"));
        let path = mount.join(rel.trim_start_matches('/'));
        fs::create_dir(&path)?;
        Ok(TestCgroup { path, rel })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

#[test]
fn cgroup_namespace_roots_every_hierarchy_at_the_child() {
    require_root!();
    let Some(mount) = cgroup2_mount() else {
        nook_testutil::skip(module_path!(), "no cgroup2 hierarchy mounted");
        return;
    };
    // A fresh cgroup for the child, so that outside and inside views must differ.
    let cgroup = TestCgroup::create(&mount).expect("create test cgroup");
    let dir: OwnedFd = fs::File::open(&cgroup.path).expect("open cgroup dir").into();

    let (held, inside) =
        spawn_held(sh(&format!("cat /proc/self/cgroup; {HOLD}")).namespaces(Namespace::Cgroup.as_set()).cgroup(dir));
    let outside = read_trimmed(format!("/proc/{}/cgroup", held.pid()));
    held.release();

    assert!(!inside.is_empty());
    for line in &inside {
        assert_eq!(line.splitn(3, ':').nth(2), Some("/"), "inside the cgroup namespace: {inside:#?}");
    }
    assert!(
        outside.lines().any(|l| l == format!("0::{}", cgroup.rel)),
        "outside, the child is in {}: {outside}",
        cgroup.rel
    );
}

// ---------------------------------------------------------------------------------------
// TIME
// ---------------------------------------------------------------------------------------

#[test]
fn time_namespace_offsets_monotonic_and_boottime_clocks() {
    require_root!();
    const OFFSET: i64 = 10 * 86_400;
    const SLACK: f64 = 1.0;
    const CEILING: f64 = 3_600.0;
    let (mut reader, writer) = io::pipe().unwrap();
    // The child keeps only the descriptors passed to it: the pipe becomes its fd 9.
    let fd = 9;

    // Runs in the child inside the new time namespace: reads both clocks and writes the raw
    // timespecs to the pipe (then closes it: `cat` need not have it). Stack buffers and raw
    // syscalls only.
    let report_clocks = move || {
        let mut buf = [0u8; 32];
        for (i, clock) in [libc::CLOCK_MONOTONIC, libc::CLOCK_BOOTTIME].into_iter().enumerate() {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: ts is a valid out-parameter.
            if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
                return Err(io::Error::last_os_error());
            }
            buf[i * 16..i * 16 + 8].copy_from_slice(&ts.tv_sec.to_ne_bytes());
            buf[i * 16 + 8..i * 16 + 16].copy_from_slice(&ts.tv_nsec.to_ne_bytes());
        }
        // SAFETY: fd is the pipe's write end, open in the child; buf is 32 valid bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        let written = if n == 32 { Ok(()) } else { Err(io::Error::last_os_error()) };
        // SAFETY: closes the child's copy of the passed pipe.
        unsafe { libc::close(fd) };
        written
    };

    let parent_mono = secs(clock_now(libc::CLOCK_MONOTONIC));
    let parent_boot = secs(clock_now(libc::CLOCK_BOOTTIME));
    let parent_uptime = uptime_secs(&read_trimmed("/proc/uptime"));
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/uptime")
        .namespaces(Namespace::Time.as_set())
        .monotonic_offset(ClockOffset::from_secs(OFFSET))
        .boottime_offset(ClockOffset::from_secs(OFFSET))
        .preserve_fd(writer, fd);
    // SAFETY: the hook is async-signal-safe (clock_gettime, write) and does not allocate.
    unsafe { cmd.pre_exec(report_clocks) };
    let child_uptime = uptime_secs(&run(&mut cmd));
    drop(cmd);
    let mut raw = [0u8; 32];
    reader.read_exact(&mut raw).expect("the hook reported both clocks");
    let field = |i: usize| i64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap()) as f64;
    let child_mono = field(0) + field(1) / 1e9;
    let child_boot = field(2) + field(3) / 1e9;

    let offset = OFFSET as f64;
    for (what, child, parent) in [
        ("CLOCK_MONOTONIC", child_mono, parent_mono),
        ("CLOCK_BOOTTIME", child_boot, parent_boot),
        ("/proc/uptime", child_uptime, parent_uptime),
    ] {
        let diff = child - parent;
        assert!(
            diff >= offset - SLACK && diff < offset + CEILING,
            "{what}: child {child} - parent {parent} = {diff}, expected about {offset}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// MOUNT
// ---------------------------------------------------------------------------------------

#[test]
fn mount_namespace_keeps_child_tmpfs_out_of_host_mount_table() {
    require_root!();
    let dir = TempDir::new("mnt").unwrap();
    let (held, inside) = spawn_held(
        sh(&format!("echo child > \"$1/marker\"; cat /proc/self/mountinfo; {HOLD}"))
            .arg(dir.path())
            .namespaces(Namespace::Mount.as_set())
            .mount(MountStep::tmpfs(dir.path(), Some("size=1m"))),
    );
    let target = dir.path().to_str().unwrap().to_owned();
    let host_while_alive = read_trimmed("/proc/thread-self/mountinfo");
    let marker_on_host = dir.join("marker").exists();
    held.release();

    assert!(mount_points(&inside.join("\n")).contains(&target), "the child has its tmpfs");
    assert!(!mount_points(&host_while_alive).contains(&target), "the child's tmpfs is in the host mount table");
    assert!(!marker_on_host, "a file written on the child's tmpfs appeared on the host");
    assert!(!mount_points(&read_trimmed("/proc/thread-self/mountinfo")).contains(&target));
}

// ---------------------------------------------------------------------------------------
// All at once
// ---------------------------------------------------------------------------------------

#[test]
fn all_eight_namespaces_at_once_still_run_a_program() {
    require_root!();
    let status = Command::new("/bin/true").namespaces(NamespaceSet::all()).status().expect("spawn /bin/true");
    assert!(status.success(), "{status:?}");

    let (held, _) = spawn_held(sh(HOLD).namespaces(NamespaceSet::all()));
    let differ = differing(std::process::id(), held.pid()).expect("inspect namespaces");
    held.release();
    assert_eq!(differ, Namespace::ALL, "the kernel shows a new namespace of every kind");
}

/// `loopback_up`: the child brings `lo` up in its new network namespace (it starts down);
/// without a network namespace of its own the setting is refused before anything runs.
#[test]
fn loopback_up_brings_lo_up_in_the_new_network_namespace() {
    require_root!();
    for up in [true, false] {
        let out = Command::new("/bin/cat")
            .arg("/sys/class/net/lo/flags")
            .namespaces(NamespaceSet::new().with(Namespace::Net).with(Namespace::Mount))
            // a sysfs of the new network namespace
            .mount(MountStep::sysfs("/sys"))
            .loopback_up(up)
            .output()
            .expect("spawn");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{out:?}");
        let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & libc::IFF_UP as u32 != 0, up, "lo flags {text}");
    }
    let err = Command::new("/bin/true").loopback_up(true).validate().unwrap_err();
    assert!(matches!(err, nook_ns::ValidationError::NeedsNamespace { namespace: Namespace::Net, .. }), "{err}");
}
