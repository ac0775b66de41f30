//! podman (4.3, Debian 12) with `--runtime nook-oci`: `run --rm`, `run -d` + `exec` +
//! `pause`/`unpause` + `stop`, and a pod whose app container joins the infra container's
//! namespaces by path. Everything of podman's is in the test's temporary directory (storage
//! `--root`/`--runroot` with the vfs driver, `--tmpdir`, the network config dir), the
//! configuration is `tests/podman/containers.conf` (CONTAINERS_CONF), networking is `none`,
//! the image is the busybox rootfs imported with `podman import`, and the cgroups go below
//! an `nk` `--cgroup-parent`, removed afterwards. Without podman the tests skip (a failure
//! with `NOOK_REQUIRE_PRIV=1`; the v2 lane's guest has no podman and allows the skip).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nook_testutil::{TempDir, remove_cgroup_tree, unique_name};

use crate::harness::{p, rootfs};

/// One isolated podman: its storage, temp and config dirs in a test directory.
struct Podman {
    tmp: TempDir,
    /// `--cgroup-parent`: absolute, below the test's deepest own cgroup.
    cgroup_parent: String,
}

/// The live podmans and, per hierarchy, the directories of their `--cgroup-parent` paths
/// that did not exist before the first (podman creates the same path in every hierarchy):
/// the last one to go removes them (tests run in parallel and share those ancestors).
static MADE_DIRS: Mutex<(u32, BTreeSet<PathBuf>)> = Mutex::new((0, BTreeSet::new()));

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The cgroup hierarchies' mount points (v1 controllers, named hierarchies, v2).
fn hierarchy_roots() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    text.lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

impl Podman {
    /// A podman with an imported image `nk-busybox`, or `None` (a printed skip) without podman.
    fn new(tag: &str) -> Option<Podman> {
        if which("podman").is_none() {
            nook_testutil::skip(
                &format!("oci::podman::{tag}"),
                "podman is not installed (CI installs it: .ci/run PACKAGES)",
            );
            return None;
        }
        let tmp = TempDir::new(tag).unwrap();
        // The deepest of our own cgroups (on a hybrid host the hierarchies' paths differ).
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let deepest = own.lines().filter_map(|l| l.splitn(3, ':').nth(2)).max_by_key(|p| p.len()).unwrap_or("/");
        let cgroup_parent = format!("{}/{}", deepest.trim_end_matches('/'), unique_name(tag));
        {
            let mut made = MADE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
            made.0 += 1;
            for root in hierarchy_roots() {
                let mut d = root.clone();
                for part in cgroup_parent.trim_start_matches('/').split('/') {
                    d.push(part);
                    if !d.exists() {
                        made.1.insert(d.clone());
                    }
                }
            }
        }
        let pm = Podman { tmp, cgroup_parent };
        let root = rootfs(&pm.tmp);
        // The pod's infra command: waits, and exits 0 on SIGTERM (a bare `sleep` as PID 1
        // ignores it).
        let pause = root.join("bin/nk-pause");
        std::fs::write(&pause, "#!/bin/sh\ntrap 'exit 0' TERM INT\nsleep 100000 &\nwait\n").unwrap();
        std::fs::set_permissions(&pause, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/readlink")).unwrap();
        let tar = pm.tmp.join("rootfs.tar");
        let st = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(st.success(), "tar of the rootfs");
        // The import writes containers/image's blob info cache to /var/lib/containers/cache
        // (no option moves it): it runs in a mount namespace of its own with a tmpfs on
        // /var/lib.
        let mut cmd = pm.command(&["import", p(&tar), "nk-busybox"]);
        // SAFETY: only system calls between fork and exec (private_var_lib).
        unsafe { cmd.pre_exec(private_var_lib) };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
        Some(pm)
    }

    /// A directory in the test's temporary directory, made if missing.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `podman <isolating flags> args...` with the repo's containers.conf.
    fn command(&self, args: &[&str]) -> Command {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/podman/containers.conf");
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", conf)
            .env("TMPDIR", self.dir("tmp"))
            .args(["--root", p(&self.dir("root"))])
            .args(["--runroot", p(&self.dir("runroot"))])
            .args(["--tmpdir", p(&self.dir("libpod"))])
            .args(["--network-config-dir", p(&self.dir("net"))])
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--runtime", env!("CARGO_BIN_EXE_nook-oci")])
            // nook-oci's --root (podman gives none as root: the default /run/nook-oci).
            .args(["--runtime-flag", &format!("root={}", p(&self.dir("oci")))])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success; returns stdout trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "podman {args:?}: {}\n{}", out.stderr, out.stdout);
        out.stdout.trim().to_owned()
    }

    /// `podman inspect --format FORMAT NAME`.
    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
    }

    /// Whether a process other than us still has our directory on its command line
    /// (conmon, podman's exit command `container cleanup`).
    fn busy(&self) -> bool {
        let me = std::process::id().to_string();
        let needle = self.tmp.path().as_os_str().as_encoded_bytes().to_vec();
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let name = e.file_name();
            name.to_str().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && n != me)
                && std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["pod", "rm", "--all", "--force"]);
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        // conmon and the exit commands it starts finish on their own: wait (a hang
        // detector) so they do not recreate what we remove.
        let deadline = Instant::now() + Duration::from_secs(30 * u64::from(nook_testutil::time_factor()));
        while self.busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for root in hierarchy_roots() {
            remove_cgroup_tree(&root.join(self.cgroup_parent.trim_start_matches('/')));
        }
        let mut made = MADE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        made.0 -= 1;
        if made.0 == 0 {
            let mut dirs: Vec<PathBuf> = std::mem::take(&mut made.1).into_iter().collect();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        // The TempDir then unmounts what is left below it (vfs has no layer mounts; the
        // containers' /dev/shm tmpfs are unmounted by `podman rm`) and removes it.
    }
}

/// In the child before exec: a private mount namespace with a tmpfs on `/var/lib`.
fn private_var_lib() -> std::io::Result<()> {
    // SAFETY: plain system calls with NUL-terminated constant strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            || libc::mount(c"nk-varlib".as_ptr(), c"/var/lib".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The namespace `kind` of process `pid` (`self` for ours), as `readlink` shows it.
fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap().display().to_string()
}

#[test]
fn podman_run_rm() {
    nook_testutil::require_root!();
    let Some(pm) = Podman::new("pmrun") else { return };
    let script = "cat /etc/hostname; echo; hostname; test -f /run/.containerenv && echo containerenv; \
                  grep -c ' /dev/shm ' /proc/mounts >/dev/null && echo shm; echo $$; \
                  grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; exit 3";
    let out = pm.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &pm.cgroup_parent,
        "--hostname",
        "nkhost",
        "nk-busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.code, 3, "exit code of the container's process: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    // podman's /etc/hostname bind and the UTS namespace's name; its /run/.containerenv bind;
    // the shell is PID 1; podman's default seccomp profile is in force (filter mode 2)
    // without no_new_privs (installed while nook still held CAP_SYS_ADMIN).
    assert_eq!(
        lines,
        ["nkhost", "nkhost", "containerenv", "shm", "1", "NoNewPrivs:\t0", "Seccomp:\t2"],
        "{}",
        out.stderr
    );
}

/// `-t`: conmon gives nook-oci a console socket (`create --console-socket`, `exec --tty
/// --console-socket`) and receives the terminal's master; the process has a terminal from
/// the container's own devpts instance.
#[test]
fn podman_tty() {
    nook_testutil::require_root!();
    let Some(pm) = Podman::new("pmtty") else { return };
    let script = "tty; for f in 0 1 2; do test -t $f && echo tty$f; done; exit 4";
    let cg = pm.cgroup_parent.clone();
    let base = ["--network", "none", "--cgroup-parent", &cg];
    let mut args = vec!["run", "--rm", "-t"];
    args.extend(base);
    args.extend(["nk-busybox", "sh", "-c", script]);
    let out = pm.run(&args);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stdout.replace('\r', ""), "/dev/pts/0\ntty0\ntty1\ntty2\n", "{}", out.stderr);
    let mut args = vec!["run", "-d", "-t", "--name", "nk-tty"];
    args.extend(base);
    args.extend(["nk-busybox", "/bin/nk-pause"]);
    pm.ok(&args);
    let out = pm.run(&["exec", "-t", "nk-tty", "sh", "-c", script]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stdout.replace('\r', ""), "/dev/pts/1\ntty0\ntty1\ntty2\n", "{}", out.stderr);
    pm.ok(&["rm", "-f", "nk-tty"]);
}

#[test]
fn podman_detached_exec_pause_stop() {
    nook_testutil::require_root!();
    let Some(pm) = Podman::new("pmdet") else { return };
    let id = pm.ok(&[
        "run",
        "-d",
        "--name",
        "nk-det",
        "--network",
        "none",
        "--cgroup-parent",
        &pm.cgroup_parent,
        "nk-busybox",
        "/bin/nk-pause",
    ]);
    assert!(!id.is_empty());
    assert_eq!(pm.inspect("nk-det", "{{.OCIRuntime}}"), env!("CARGO_BIN_EXE_nook-oci"));
    assert_eq!(pm.inspect("nk-det", "{{.State.Status}}"), "running");
    let pid = pm.inspect("nk-det", "{{.State.Pid}}");
    // exec joins the container: its PID 1 is the container's process, its namespaces are it.
    let seen = pm.ok(&["exec", "nk-det", "sh", "-c", "head -c 12 /proc/1/cmdline; echo; readlink /proc/self/ns/pid"]);
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(seen[0].trim_end_matches('\0').replace('\0', " "), "/bin/sh /bin");
    assert_eq!(seen[1], ns(&pid, "pid"));
    assert_eq!(pm.run(&["exec", "nk-det", "sh", "-c", "exit 5"]).code, 5, "exec's exit code");
    // pause: the kernel's freezer has the container's cgroup frozen.
    pm.ok(&["pause", "nk-det"]);
    assert_eq!(pm.inspect("nk-det", "{{.State.Status}}"), "paused");
    assert!(frozen(&pid), "paused but the kernel does not report the cgroup frozen");
    pm.ok(&["unpause", "nk-det"]);
    assert_eq!(pm.inspect("nk-det", "{{.State.Status}}"), "running");
    assert!(!frozen(&pid));
    // stop: SIGTERM reaches the process, whose trap exits 0 (a SIGKILL after the timeout
    // would give 137).
    pm.ok(&["stop", "--time", "60", "nk-det"]);
    assert_eq!(pm.inspect("nk-det", "{{.State.Status}}"), "exited");
    assert_eq!(pm.inspect("nk-det", "{{.State.ExitCode}}"), "0");
    assert!(gone(&pid), "the container's process is still there after stop");
    pm.ok(&["rm", "nk-det"]);
}

/// The process is gone (or its pid reused by another program).
fn gone(pid: &str) -> bool {
    !std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("nk-pause"))
}

/// Whether the kernel reports the process's cgroup frozen: the v1 freezer hierarchy's
/// `freezer.state`, or v2's `cgroup.events`.
fn frozen(pid: &str) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().any(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrl, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let rel = path.trim_start_matches('/');
        if ctrl == "freezer" {
            std::fs::read_to_string(Path::new("/sys/fs/cgroup/freezer").join(rel).join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN")
        } else if ctrl.is_empty() {
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].iter().any(|m| {
                std::fs::read_to_string(Path::new(m).join(rel).join("cgroup.events"))
                    .is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
            })
        } else {
            false
        }
    })
}

#[test]
fn podman_pod_app_joins_the_infra_namespaces() {
    nook_testutil::require_root!();
    let Some(pm) = Podman::new("pmpod") else { return };
    pm.ok(&[
        "pod",
        "create",
        "--name",
        "nk-pod",
        "--network",
        "none",
        "--cgroup-parent",
        &pm.cgroup_parent,
        "--infra-image",
        "localhost/nk-busybox",
        "--infra-command",
        "/bin/nk-pause",
    ]);
    let out = pm.run(&[
        "run",
        "--rm",
        "--pod",
        "nk-pod",
        "nk-busybox",
        "sh",
        "-c",
        "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let infra = pm.ok(&["pod", "inspect", "--format", "{{.InfraContainerID}}", "nk-pod"]);
    assert_eq!(pm.inspect(&infra, "{{.OCIRuntime}}"), env!("CARGO_BIN_EXE_nook-oci"));
    let pid = pm.inspect(&infra, "{{.State.Pid}}");
    let seen: Vec<&str> = out.stdout.lines().collect();
    // The app is in the infra container's network, ipc and uts namespaces (joined by
    // path), and in a pid namespace of its own.
    let infra_ns = [ns(&pid, "net"), ns(&pid, "ipc"), ns(&pid, "uts")];
    assert_eq!(seen[..3], infra_ns);
    assert_ne!(seen[3], ns(&pid, "pid"));
    assert_ne!(ns(&pid, "net"), ns("self", "net"), "the pod has a network namespace of its own");
    assert_eq!(seen[4], "nk-pod", "the pod's host name, set in the infra container's UTS namespace");
    pm.ok(&["pod", "stop", "--time", "60", "nk-pod"]);
    assert_eq!(pm.inspect(&infra, "{{.State.ExitCode}}"), "0");
}
