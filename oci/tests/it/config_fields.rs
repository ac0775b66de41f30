//! config.json fields real engines generate, each run against runc and nook-oci and
//! compared: namespaces joined by `path` (a pod: an infra container and an app container in
//! its network, IPC and UTS namespaces, by `/proc/PID/ns/*` and by a bind-mounted nsfs file;
//! an app in the infra's pid namespace).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nook_testutil::require_root;
use serde_json::{Value, json};

use crate::harness::{compare, p};

/// The inode of a namespace file.
fn ns_ino(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display())).ino()
}

/// Polls until process `pid`'s command name is `want` (a hang detector, not a timing check).
fn wait_comm(pid: u64, want: &str) -> bool {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(20 * u64::from(nook_testutil::time_factor()));
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == want {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A bind mount of a namespace file (as `ip netns add` / CRI-O pin them), unmounted and
/// removed on drop.
struct PinnedNs(PathBuf);

impl PinnedNs {
    fn new(source: &Path, target: PathBuf) -> PinnedNs {
        std::fs::write(&target, b"").unwrap();
        let pinned = PinnedNs(target);
        let (s, t) = (CString::new(source.as_os_str().as_bytes()).unwrap(), cstr(&pinned.0));
        // SAFETY: valid NUL-terminated paths; a null fstype and data are allowed for MS_BIND.
        let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        assert_eq!(r, 0, "bind {source:?}: {}", std::io::Error::last_os_error());
        pinned
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

impl Drop for PinnedNs {
    fn drop(&mut self) {
        let t = cstr(&self.0);
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The namespaces of `c` with those of `join` (type → path) replacing the new ones.
fn join(c: &mut Value, join: &[(&str, String)]) {
    let list = c["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|n| !join.iter().any(|(t, _)| n["type"] == *t));
    for (t, path) in join {
        list.push(json!({"type": t, "path": path}));
    }
}

/// A pod: the infra container (`sleep`, host name `nk-infra`, new namespaces), then an app
/// container joining its network namespace by a bind-mounted nsfs file and its IPC and UTS
/// namespaces by `/proc/PID/ns/*`. The app sees the infra's host name (which an app with a `hostname` sets
/// there, as runc does), network devices and
/// POSIX message queues; its namespaces are the infra's (inodes, from the host), its pid and
/// mount namespaces its own.
#[test]
fn pod_joins_the_infra_namespaces_by_path() {
    require_root!();
    let obs = compare("pod", |tmp, rt| {
        let mut o: Vec<String> = Vec::new();
        let infra = rt.bundle(tmp, "infra", &["sleep", "1000"], |c| c["hostname"] = json!("nk-infra"));
        o.push(format!("infra run {}", rt.run(&["run", "--detach", "--bundle", p(&infra), "infra"]).code));
        let ipid = rt.state("infra").unwrap()["pid"].as_u64().unwrap();
        let pin = PinnedNs::new(Path::new(&format!("/proc/{ipid}/ns/net")), tmp.join(format!("nk-netns-{}", rt.name)));
        let net_path = p(&pin.0).to_owned();
        let app = rt.bundle(tmp, "app", &["sleep", "1000"], |c| {
            c.as_object_mut().unwrap().remove("hostname");
            join(
                c,
                &[
                    ("network", net_path.clone()),
                    ("ipc", format!("/proc/{ipid}/ns/ipc")),
                    ("uts", format!("/proc/{ipid}/ns/uts")),
                ],
            );
        });
        // A host name in a joined UTS namespace is set there (runc's behaviour; a pod's
        // containers name the pod): the infra then has it too.
        let named = rt.bundle(tmp, "app-named", &["true"], |c| {
            c["hostname"] = json!("nk-pod");
            join(c, &[("uts", format!("/proc/{ipid}/ns/uts"))]);
        });
        o.push(format!("named app {}", rt.run(&["run", "--bundle", p(&named), "app-named"]).code));
        o.push(format!("infra renamed {}", rt.run(&["exec", "infra", "hostname"]).stdout.trim()));
        let out = rt.run(&["run", "--detach", "--bundle", p(&app), "app"]);
        o.push(format!("app run {} {}", out.code, out.stderr.trim().is_empty()));
        let apid = rt.state("app").unwrap()["pid"].as_u64().unwrap();
        for ns in ["net", "ipc", "uts", "pid", "mnt"] {
            let same = ns_ino(format!("/proc/{ipid}/ns/{ns}")) == ns_ino(format!("/proc/{apid}/ns/{ns}"));
            o.push(format!("{ns} shared {same}"));
        }
        let host = ns_ino("/proc/self/ns/net") == ns_ino(format!("/proc/{apid}/ns/net"));
        o.push(format!("net is the host's {host}"));
        let seen = rt.run(&["exec", "app", "hostname"]);
        o.push(format!("app hostname {} {}", seen.code, seen.stdout.trim()));
        // What the infra sees of its network namespace, seen from the app too.
        let links = |id: &str| rt.run(&["exec", id, "cat", "/proc/net/dev"]).stdout;
        o.push(format!("same links {}", links("infra") == links("app")));
        // A POSIX message queue the infra makes is in the app's /dev/mqueue (its own mqueue
        // mount, of the joined IPC namespace).
        o.push(format!("infra mq {}", rt.run(&["exec", "infra", "touch", "/dev/mqueue/nkq"]).code));
        o.push(format!("app sees mq {}", rt.run(&["exec", "app", "ls", "/dev/mqueue"]).stdout.trim()));
        drop(pin);
        for id in ["app", "infra"] {
            o.push(format!("kill {id} {}", rt.run(&["kill", id, "KILL"]).code));
            rt.wait_status(id, "stopped");
            o.push(format!("delete {id} {}", rt.run(&["delete", id]).code));
        }
        o
    });
    for want in [
        "infra run 0",
        "named app 0",
        "infra renamed nk-pod",
        "app run 0 true",
        "net shared true",
        "ipc shared true",
        "uts shared true",
        "pid shared false",
        "mnt shared false",
        "net is the host's false",
        "app hostname 0 nk-pod",
        "same links true",
        "infra mq 0",
        "app sees mq nkq",
        "delete infra 0",
    ] {
        assert!(obs.contains(&want.to_owned()), "missing {want:?} in {obs:#?}");
    }
}

/// An app container joining the infra's pid namespace by path: its program is a process of
/// that namespace (the infra's `sleep` is PID 1 there), not its init.
#[test]
fn joined_pid_namespace_shows_the_infra_as_pid_1() {
    require_root!();
    let obs = compare("jpid", |tmp, rt| {
        let mut o: Vec<String> = Vec::new();
        let infra = rt.bundle(tmp, "pinfra", &["sleep", "1000"], |_| {});
        o.push(format!("infra run {}", rt.run(&["run", "--detach", "--bundle", p(&infra), "pinfra"]).code));
        let ipid = rt.state("pinfra").unwrap()["pid"].as_u64().unwrap();
        // `start` returns once the process may exec (runc's init execs a moment later).
        o.push(format!("infra execd {}", wait_comm(ipid, "sleep")));
        let app =
            rt.bundle(tmp, "papp", &["sh", "-c", "cat /proc/1/comm; echo self-is-1=$(test $$ = 1 && echo y)"], |c| {
                join(c, &[("pid", format!("/proc/{ipid}/ns/pid"))]);
            });
        let out = rt.run(&["run", "--bundle", p(&app), "papp"]);
        o.push(format!("app run {} {}", out.code, out.stdout.trim().replace('\n', " ")));
        o.push(format!("kill {}", rt.run(&["kill", "pinfra", "KILL"]).code));
        rt.wait_status("pinfra", "stopped");
        o.push(format!("delete {}", rt.run(&["delete", "pinfra"]).code));
        o
    });
    assert!(obs.contains(&"infra execd true".to_owned()), "{obs:#?}");
    assert!(obs.contains(&"app run 0 sleep self-is-1=".to_owned()), "{obs:#?}");
    assert!(obs.contains(&"delete 0".to_owned()), "{obs:#?}");
}

/// runc's default `cgroup` mount (`/sys/fs/cgroup`, read-only): the container sees its own
/// cgroup there — its limits at the usual paths (v1: per hierarchy, `memory/`, `pids/`; v2:
/// at the top), its own PID 1 in it, and no way to write.
#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    require_root!();
    let script = "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then m=/sys/fs/cgroup/memory.max; p=/sys/fs/cgroup; \
                  else m=/sys/fs/cgroup/memory/memory.limit_in_bytes; p=/sys/fs/cgroup/pids; fi; \
                  echo mem=$(cat $m) pids=$(cat $p/pids.max); \
                  grep -qx 1 $p/cgroup.procs && echo own-pid-1; \
                  (echo 5 > $p/pids.max) 2>/dev/null && echo writable || echo read-only";
    let obs = compare("cgm", |tmp, rt| {
        let b = rt.bundle(tmp, "cgm", &["sh", "-c", script], |c| {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }));
            // cgroup v2 alone: runc mounts a new cgroup2, which shows the container's own cgroup
            // only in a cgroup namespace (without one it shows the whole hierarchy, where nook
            // binds the container's own directory): give it one there.
            // (`runc spec` on such a host already has one.)
            let namespaces = c["linux"]["namespaces"].as_array_mut().unwrap();
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
                && !namespaces.iter().any(|n| n["type"] == "cgroup")
            {
                namespaces.push(json!({"type": "cgroup"}));
            }
            c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
            c["linux"]["resources"]["pids"] = json!({"limit": 50});
        });
        let out = rt.run(&["run", "--bundle", p(&b), "cgm"]);
        format!("{} {} {}", out.code, out.stdout.trim().replace('\n', " "), out.stderr.trim())
    });
    assert_eq!(obs, format!("0 mem={} pids=50 own-pid-1 read-only ", 64 << 20));
}

/// `linux.devices` and `linux.resources.devices`: nodes made with their type, numbers, mode
/// and owner; opening them decided by the rules (in order, then the default allowlist):
/// `c 10:229` (fuse) allowed for reading only, `c 1:3` (/dev/null's numbers) by the default
/// list, writing `c 1:11` (kmsg, mode 0600 of root) by nothing; a node the container's root (without
/// CAP_DAC_OVERRIDE) does not own with mode 0640 refused by the permission bits. Only
/// opened, never read or written.
#[test]
fn device_nodes_and_rules() {
    require_root!();
    let script = "ls -ln /dev/nk-priv /dev/nk-kmsg /dev/nk-null /dev/nk-fuse /dev/nk/sub | \
                  while read m l u g ma mi rest; do echo $m $u $g $ma $mi; done; \
                  for d in nk-kmsg nk-null nk-fuse nk-priv; do \
                    (: < /dev/$d) 2>/dev/null && echo read-$d || echo no-read-$d; \
                    (: > /dev/$d) 2>/dev/null && echo write-$d || echo no-write-$d; done";
    let obs = compare("dev", |tmp, rt| {
        let b = rt.bundle(tmp, "dev", &["sh", "-c", script], |c| {
            c["linux"]["devices"] = json!([
                {"path": "/dev/nk-priv", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1, "gid": 2},
                {"path": "/dev/nk-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600},
                {"path": "/dev/nk-null", "type": "c", "major": 1, "minor": 3},
                {"path": "/dev/nk-fuse", "type": "c", "major": 10, "minor": 229},
                {"path": "/dev/nk/sub", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600, "uid": 3, "gid": 4},
            ]);
            c["linux"]["resources"]["devices"] = json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"},
            ]);
        });
        let out = rt.run(&["run", "--bundle", p(&b), "dev"]);
        format!("{}\n{}{}", out.code, out.stdout, out.stderr)
    });
    // Opening fuse's node needs its driver (the kernel loads the module on the first open, if
    // it has one: the v2 lane's guest does not): the rule's read access shows only where fuse
    // is there; elsewhere both runtimes see the open fail alike.
    let fuse = Path::new("/sys/class/misc/fuse").exists();
    for want in [
        "crw-r----- 1 2 1, 3",
        "crw------- 0 0 1, 11",
        "crw-rw-rw- 0 0 1, 3",
        "crw-rw-rw- 0 0 10, 229",
        "brw------- 3 4 7, 200",
        "no-write-nk-kmsg",
        "read-nk-null",
        "write-nk-null",
        if fuse { "read-nk-fuse" } else { "no-read-nk-fuse" },
        "no-write-nk-fuse",
        "no-read-nk-priv",
    ] {
        assert!(obs.lines().any(|l| l == want), "missing {want:?} in {obs}");
    }
}

/// A user namespace with `uidMappings`/`gidMappings` (container root = host 100000): the
/// process is root inside and 100000 outside, sees the maps, its own /proc (mounted before
/// `pivot_root`, which the kernel requires in a new user namespace), and the rootfs of the
/// host's root as the overflow id; writing there is refused.
#[test]
fn user_namespace_with_id_mappings() {
    require_root!();
    let script = "id; cat /proc/self/uid_map /proc/self/gid_map; echo pid1=$(cat /proc/1/comm); \
                  ls -ldn / | while read m l u g rest; do echo root-owner $u $g; done; \
                  touch /nk-x 2>/dev/null && echo wrote || echo no-write";
    let userns = |c: &mut serde_json::Value| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    };
    let obs = compare("usr", |tmp, rt| {
        let b = rt.bundle(tmp, "usr", &["sh", "-c", script], userns);
        let out = rt.run(&["run", "--bundle", p(&b), "usr"]);
        let mut o: Vec<String> = vec![format!("run {}", out.code)];
        o.extend(out.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")));
        // Seen from the host: uid 100000.
        let b = rt.bundle(tmp, "usr2", &["sleep", "100"], userns);
        o.push(format!("run2 {}", rt.run(&["run", "--detach", "--bundle", p(&b), "usr2"]).code));
        let pid = rt.state("usr2").unwrap()["pid"].as_u64().unwrap();
        o.push(uid_line(pid));
        o.push(format!("exec id {}", rt.run(&["exec", "usr2", "id", "-u"]).stdout.trim()));
        o.push(format!("kill {}", rt.run(&["kill", "usr2", "KILL"]).code));
        rt.wait_status("usr2", "stopped");
        o.push(format!("delete {}", rt.run(&["delete", "usr2"]).code));
        o
    });
    assert_eq!(
        obs,
        [
            "run 0",
            "uid=0(root) gid=0",
            "0 100000 65536",
            "0 100000 65536",
            "pid1=sh",
            "root-owner 65534 65534",
            "no-write",
            "run2 0",
            "Uid: 100000 100000 100000 100000",
            "exec id 0",
            "kill 0",
            "delete 0"
        ]
    );
}

/// `linux.rootfsPropagation`: `/` of the container's mount namespace gets the propagation
/// asked for before the root is set up, and the root after `pivot_root` — the root's
/// `/proc/self/mountinfo` line as with runc (peer group numbers dropped); a value runc does
/// not know is refused by both. (`rshared`: `shared_root_and_bind_propagation`.)
#[test]
fn rootfs_propagation_is_applied_to_the_containers_root() {
    require_root!();
    // The optional fields of the root's mountinfo line, peer group numbers dropped.
    let script = r#"awk '$5=="/" { f=""; for (i=7; $i!="-"; i++) { sub(/:[0-9]+$/, "", $i); f=f" "$i }; print "root" f }' /proc/self/mountinfo"#;
    let obs = compare("rprop", |tmp, rt| {
        let mut o = Vec::new();
        for value in ["rprivate", "rslave", "private", "runbindable", "bogus"] {
            let id = format!("rp-{value}");
            let b = rt.bundle(tmp, &id, &["sh", "-c", script], |c| {
                c["linux"]["rootfsPropagation"] = json!(value);
            });
            let out = rt.run(&["run", "--bundle", p(&b), &id]);
            o.push(format!("{value}: {} {}", out.code, out.stdout.trim()).trim().to_owned());
            if out.code != 0 {
                rt.run(&["delete", "--force", &id]);
            }
        }
        o
    });
    assert_eq!(obs, ["rprivate: 0 root", "rslave: 0 root", "private: 0 root", "runbindable: 1", "bogus: 1"]);

    // The kernel did it: an `unbindable` root says so in the container's mountinfo (runc
    // 1.1 fails that one: it makes the old root unbindable before `pivot_root`).
    let tmp = nook_testutil::TempDir::new("rpu").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = crate::harness::runtimes(&tmp, "rpu").pop().unwrap();
    let b = rt.bundle(&tmp, "rpu", &["sh", "-c", script], |c| c["linux"]["rootfsPropagation"] = json!("unbindable"));
    let out = rt.run(&["run", "--bundle", p(&b), "rpu"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "root unbindable"), "{out:?}");
}

/// A new time namespace with `linux.timeOffsets`: the container's clocks are moved (its
/// `/proc/self/timens_offsets`, its uptime a day ahead of the host's) and an exec joins the
/// same time namespace. runc 1.1 has no time namespaces, so this is nook's alone.
#[test]
fn time_namespace_with_offsets() {
    require_root!();
    let tmp = nook_testutil::TempDir::new("tns").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = crate::harness::runtimes(&tmp, "tns").pop().unwrap();
    let b = rt.bundle(&tmp, "tns", &["sleep", "1000"], |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 5}, "boottime": {"secs": 86400}});
    });
    assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "tns"]).code, 0);
    let pid = rt.state("tns").unwrap()["pid"].as_u64().unwrap();
    let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
    let offsets: Vec<String> = offsets.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(offsets, ["monotonic 86400 5", "boottime 86400 0"]);
    assert_ne!(ns_ino(format!("/proc/{pid}/ns/time")), ns_ino("/proc/self/ns/time"), "a new time namespace");
    let uptime = |text: &str| text.split_whitespace().next().unwrap().parse::<f64>().unwrap();
    let inside = rt.run(&["exec", "tns", "cat", "/proc/uptime"]);
    assert_eq!(inside.code, 0, "{inside:?}");
    let host = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(uptime(&inside.stdout) > host + 80000.0, "uptime inside {} vs host {host}", inside.stdout);
    assert_eq!(rt.run(&["kill", "tns", "KILL"]).code, 0);
    rt.wait_status("tns", "stopped");
    assert_eq!(rt.run(&["delete", "tns"]).code, 0);
}

/// A mount namespace pinned on a file (`unshare --mount=FILE`, as a tool preparing one for a
/// container would), in a private bind mount of a directory of its own (the kernel refuses
/// to pin a mount namespace where the pin would propagate into it); both unmounted on drop.
struct PinnedMountNs {
    dir: PathBuf,
    file: PathBuf,
}

impl PinnedMountNs {
    fn new(dir: PathBuf) -> PinnedMountNs {
        std::fs::create_dir_all(&dir).unwrap();
        let d = cstr(&dir);
        // SAFETY: valid NUL-terminated paths; null fstype and data are allowed for these flags.
        let r = unsafe { libc::mount(d.as_ptr(), d.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        assert_eq!(r, 0, "bind {dir:?}: {}", std::io::Error::last_os_error());
        let pinned = PinnedMountNs { file: dir.join("mnt"), dir };
        // SAFETY: as above.
        let r =
            unsafe { libc::mount(std::ptr::null(), d.as_ptr(), std::ptr::null(), libc::MS_PRIVATE, std::ptr::null()) };
        assert_eq!(r, 0, "private {:?}: {}", pinned.dir, std::io::Error::last_os_error());
        std::fs::write(&pinned.file, b"").unwrap();
        let st = std::process::Command::new("unshare")
            .arg(format!("--mount={}", pinned.file.display()))
            .args(["--propagation", "private", "true"])
            .status()
            .unwrap();
        assert!(st.success(), "unshare --mount");
        pinned
    }
}

impl Drop for PinnedMountNs {
    fn drop(&mut self) {
        for p in [&self.file, &self.dir] {
            let t = cstr(p);
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A mount namespace joined by `path` (a pinned nsfs file): the container is in it (same
/// namespace inode) and its rootfs is set up in it — runc's behaviour: the namespace is
/// changed for good, a process entering it later finds the container's root as `/`.
#[test]
fn joined_mount_namespace_gets_the_rootfs() {
    require_root!();
    let obs = compare("jmnt", |tmp, rt| {
        let mut o: Vec<String> = Vec::new();
        let pin = PinnedMountNs::new(tmp.join(format!("nk-pin-{}", rt.name)));
        let pinned_ino = ns_ino(&pin.file);
        let path = p(&pin.file).to_owned();
        let b = rt.bundle(tmp, "jmnt", &["sleep", "1000"], |c| join(c, &[("mount", path.clone())]));
        let out = rt.run(&["run", "--detach", "--bundle", p(&b), "jmnt"]);
        o.push(format!("run {} {}", out.code, out.stderr.trim()));
        let pid = rt.state("jmnt").unwrap()["pid"].as_u64().unwrap();
        o.push(format!("in the pinned namespace {}", ns_ino(format!("/proc/{pid}/ns/mnt")) == pinned_ino));
        o.push(format!(
            "root {}",
            rt.run(&["exec", "jmnt", "ls", "/"]).stdout.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
        o.push(format!("kill {}", rt.run(&["kill", "jmnt", "KILL"]).code));
        rt.wait_status("jmnt", "stopped");
        o.push(format!("delete {}", rt.run(&["delete", "jmnt"]).code));
        // The namespace keeps the container's root: `ls` there is the rootfs's busybox.
        let later = std::process::Command::new("nsenter")
            .arg(format!("--mount={path}"))
            .args(["--", "/bin/ls", "/"])
            .output()
            .unwrap();
        o.push(format!(
            "pinned root later {}",
            String::from_utf8_lossy(&later.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
        ));
        drop(pin);
        o
    });
    assert_eq!(
        obs,
        [
            "run 0 ",
            "in the pinned namespace true",
            "root bin dev etc proc root sys tmp",
            "kill 0",
            "delete 0",
            "pinned root later bin dev etc proc root sys tmp",
        ]
    );
}

/// A pod with user namespaces (CRI-O's): the infra container has a new user namespace
/// (0 → 100000, 65536 ids) and IPC and UTS namespaces; the app container joins its user,
/// IPC and UTS namespaces by `/proc/PID/ns/*` (with the mappings in its config too, as CRI-O
/// writes them) and creates its own mount and pid namespaces — which then belong to the
/// joined user namespace: the app is root there (uid 100000 on the host), its `/proc` is
/// its own pid namespace's, and an `exec` enters the same user namespace. As runc.
#[test]
fn pod_with_a_user_namespace_joined_by_path() {
    require_root!();
    let mapped = |c: &mut Value| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    };
    let obs = compare("jus", |tmp, rt| {
        let infra = rt.bundle(tmp, "jus-infra", &["sleep", "100"], |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
            mapped(c);
            c["hostname"] = json!("nk-infra");
        });
        let mut o = vec![format!("infra {}", rt.run(&["run", "--detach", "--bundle", p(&infra), "jus-infra"]).code)];
        let ipid = rt.state("jus-infra").unwrap()["pid"].as_u64().unwrap();
        let script = "cat /proc/self/uid_map; id -u; hostname; echo pid1=$(cat /proc/1/comm)";
        let app = rt.bundle(tmp, "jus-app", &["sh", "-c", script], |c| {
            join(
                c,
                &[
                    ("user", format!("/proc/{ipid}/ns/user")),
                    ("ipc", format!("/proc/{ipid}/ns/ipc")),
                    ("uts", format!("/proc/{ipid}/ns/uts")),
                ],
            );
            mapped(c);
            c.as_object_mut().unwrap().remove("hostname");
        });
        let out = rt.run(&["run", "--bundle", p(&app), "jus-app"]);
        o.push(format!("app {} {}", out.code, out.stderr.trim()));
        o.extend(out.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")));
        // Detached: its namespaces from the host; an exec joins them.
        let app2 = rt.bundle(tmp, "jus-app2", &["sleep", "100"], |c| {
            join(c, &[("user", format!("/proc/{ipid}/ns/user"))]);
            mapped(c);
        });
        let out2 = rt.run(&["run", "--detach", "--bundle", p(&app2), "jus-app2"]);
        o.push(format!("app2 {}", out2.code));
        assert_eq!(out2.code, 0, "{}: {out2:?} (app: {o:?})", rt.name);
        let apid = rt.state("jus-app2").unwrap()["pid"].as_u64().unwrap();
        let user = |pid: u64| ns_ino(format!("/proc/{pid}/ns/user"));
        o.push(format!("same user namespace {}", user(apid) == user(ipid)));
        let infra_user = nook_ns::NsFd::of_pid(ipid as u32, nook_ns::Namespace::User).unwrap().id().unwrap();
        let owned = |kind: nook_ns::Namespace| {
            nook_ns::NsFd::of_pid(apid as u32, kind).unwrap().owner().unwrap().id().unwrap() == infra_user
        };
        let (mnt, pid) = (owned(nook_ns::Namespace::Mount), owned(nook_ns::Namespace::Pid));
        o.push(format!("its mount and pid namespaces belong to it {mnt} {pid}"));
        o.push(uid_line(apid));
        o.push(format!("exec id {}", rt.run(&["exec", "jus-app2", "id", "-u"]).stdout.trim()));
        for id in ["jus-app2", "jus-infra"] {
            o.push(format!("delete {}", rt.run(&["delete", "--force", id]).code));
        }
        o.push(format!("delete app {}", rt.run(&["delete", "jus-app"]).code));
        o
    });
    assert_eq!(
        obs,
        [
            "infra 0",
            "app 0 ",
            "0 100000 65536",
            "0",
            "nk-infra",
            "pid1=sh",
            "app2 0",
            "same user namespace true",
            "its mount and pid namespaces belong to it true true",
            "Uid: 100000 100000 100000 100000",
            "exec id 0",
            "delete 0",
            "delete 0",
            "delete app 1"
        ]
    );
}

/// A mount namespace joined by `path` with a new user namespace is refused, naming the
/// field (the new user namespace's root would hold no CAP_SYS_ADMIN over it). Nothing is
/// left behind.
#[test]
fn joined_mount_namespace_with_a_new_user_namespace_is_refused_by_name() {
    require_root!();
    let tmp = nook_testutil::TempDir::new("juser").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = crate::harness::runtimes(&tmp, "juser").pop().unwrap();
    let mount = rt.bundle(&tmp, "jmu", &["true"], |c| {
        join(c, &[("mount", "/proc/self/ns/mnt".to_owned())]);
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    });
    let out = rt.run(&["create", "--bundle", p(&mount), "jmu"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("linux.namespaces[mount].path"), "{out:?}");
    assert!(!rt.root().join("jmu").exists());
    assert!(rt.cgroup_dirs("jmu").is_empty());
}

/// A time namespace joined by `path`: an app container in an infra container's time
/// namespace (same inode, the infra's clock offsets). runc 1.1 has no time namespaces: nook's
/// alone.
#[test]
fn joined_time_namespace_shares_the_offsets() {
    require_root!();
    let tmp = nook_testutil::TempDir::new("jtns").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = crate::harness::runtimes(&tmp, "jtns").pop().unwrap();
    let infra = rt.bundle(&tmp, "jtinfra", &["sleep", "1000"], |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400}});
    });
    assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&infra), "jtinfra"]).code, 0);
    let ipid = rt.state("jtinfra").unwrap()["pid"].as_u64().unwrap();
    let app = rt.bundle(&tmp, "jtapp", &["sleep", "1000"], |c| join(c, &[("time", format!("/proc/{ipid}/ns/time"))]));
    let out = rt.run(&["run", "--detach", "--bundle", p(&app), "jtapp"]);
    assert_eq!(out.code, 0, "{out:?}");
    let apid = rt.state("jtapp").unwrap()["pid"].as_u64().unwrap();
    assert_eq!(ns_ino(format!("/proc/{apid}/ns/time")), ns_ino(format!("/proc/{ipid}/ns/time")));
    assert_ne!(ns_ino(format!("/proc/{apid}/ns/time")), ns_ino("/proc/self/ns/time"));
    let uptime = |text: &str| text.split_whitespace().next().unwrap().parse::<f64>().unwrap();
    let inside = rt.run(&["exec", "jtapp", "cat", "/proc/uptime"]);
    let host = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(uptime(&inside.stdout) > host + 80000.0, "uptime inside {} vs host {host}", inside.stdout);
    for id in ["jtapp", "jtinfra"] {
        assert_eq!(rt.run(&["kill", id, "KILL"]).code, 0);
        rt.wait_status(id, "stopped");
        assert_eq!(rt.run(&["delete", id]).code, 0);
    }
}

/// Kubernetes' mount propagation as CRI asks for it, against runc: `Bidirectional`
/// (`rootfsPropagation: rshared`, a bind with `rshared`) — a file system the container mounts
/// in the volume shows on the host, and one the host mounts there shows in the container, and
/// the container's root is shared; `HostToContainer` (`rslave` both) — only the host's reaches
/// the container; `None` (`rprivate` bind) — neither. The volume is a shared tmpfs of the
/// test's, unmounted after each run; the container gets `CAP_SYS_ADMIN` to mount.
#[test]
fn shared_root_and_bind_propagation() {
    require_root!();
    let script = r#"mount -t tmpfs -o size=64k nkoci /vol/fromchild || echo mount-failed
        : > /vol/ready
        i=0; while [ ! -e /vol/fromhost/marker ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
        cat /vol/fromhost/marker 2>/dev/null || echo none
        awk '$5=="/vol" { t="private"; for (i=7; $i!="-"; i++) { if ($i ~ /^shared/) t="shared"; if ($i ~ /^master/) t="slave" }; print $5 " " t }' /proc/self/mountinfo"#;
    let obs = compare("kprop", |tmp, rt| {
        let bin = tmp.join("rootfs/bin");
        for applet in ["mount", "awk"] {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        let mut o = Vec::new();
        // "unset": neither `rootfsPropagation` nor a propagation option on the bind — runc
        // makes `/` rslave then, and the bind takes that.
        for (root, bind) in [("rshared", "rshared"), ("rslave", "rslave"), ("rprivate", "rprivate"), ("unset", "")] {
            let vol = tmp.join(format!("{}-{root}-vol", rt.name));
            std::fs::create_dir(&vol).unwrap();
            nook_ns::mount_tmpfs(&vol, Some("size=64k")).unwrap();
            nook_ns::set_propagation(&vol, nook_ns::Propagation::Shared, false).unwrap();
            for d in ["fromchild", "fromhost"] {
                std::fs::create_dir(vol.join(d)).unwrap();
            }
            let id = format!("kp-{root}");
            let b = rt.bundle(tmp, &id, &["sh", "-c", script], |c| {
                let mut options = vec!["rbind"];
                if root != "unset" {
                    c["linux"]["rootfsPropagation"] = json!(root);
                    options.push(bind);
                }
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/vol", "type": "bind", "source": vol, "options": options}));
                let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
                c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
            });
            let (mut child, out, _) = rt.spawn(&["run", "--bundle", p(&b), &id]);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !vol.join("ready").exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let on_host = |m: &Path| {
                std::fs::read_to_string("/proc/self/mountinfo")
                    .unwrap()
                    .lines()
                    .any(|l| l.split(' ').nth(4) == m.to_str())
            };
            let from_child = on_host(&vol.join("fromchild"));
            nook_ns::mount_tmpfs(&vol.join("fromhost"), Some("size=64k")).unwrap();
            std::fs::write(vol.join("fromhost/marker"), "hello\n").unwrap();
            let status = child.wait().unwrap();
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            o.push(format!("{root}: exit {:?}, the container's mount on the host: {from_child}", status.code()));
            o.extend(text.lines().map(|l| format!("{root}: {l}")));
            for m in [vol.join("fromhost"), vol.join("fromchild"), vol.clone()] {
                let _ = nook_ns::unmount(&m, true);
            }
            assert!(!on_host(&vol), "{root}: the volume is unmounted");
        }
        o
    });
    assert_eq!(
        obs,
        [
            "rshared: exit Some(0), the container's mount on the host: true",
            "rshared: hello",
            "rshared: /vol shared",
            "rslave: exit Some(0), the container's mount on the host: false",
            "rslave: hello",
            "rslave: /vol slave",
            "rprivate: exit Some(0), the container's mount on the host: false",
            "rprivate: none",
            "rprivate: /vol private",
            "unset: exit Some(0), the container's mount on the host: false",
            "unset: hello",
            "unset: /vol slave",
        ]
    );

    // The root itself is shared (in a peer group of its own: nothing of the setup reached the
    // host). runc 1.1 leaves it private: it gives the propagation to `/` before the root is
    // set up only, and the root's bind then takes its parent's (made private); newer runc and
    // the OCI spec give it to the root.
    let tmp = nook_testutil::TempDir::new("kpr").unwrap();
    crate::harness::rootfs(&tmp);
    let _ = std::os::unix::fs::symlink("busybox", tmp.join("rootfs/bin/awk"));
    let rt = crate::harness::runtimes(&tmp, "kpr").pop().unwrap();
    let script = r#"awk '$5=="/" { t="private"; for (i=7; $i!="-"; i++) if ($i ~ /^shared/) t="shared"; print t }' /proc/self/mountinfo"#;
    let host_mounts = || -> std::collections::BTreeSet<String> {
        let ours = std::env::temp_dir();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| {
                let first = Path::new(m).strip_prefix(&ours).ok().and_then(|r| r.components().next());
                !first.is_some_and(|f| f.as_os_str().to_string_lossy().starts_with("nk"))
            })
            .collect()
    };
    let before = host_mounts();
    let b = rt.bundle(&tmp, "kpr", &["sh", "-c", script], |c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    let out = rt.run(&["run", "--bundle", p(&b), "kpr"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "shared"), "{out:?}");
    // Other tests mount in their own `nk*` temp dirs meanwhile: those aside, nothing new.
    let after = host_mounts();
    let leaked: Vec<&String> = after.difference(&before).collect();
    assert!(leaked.is_empty(), "the shared container's mounts reached the host: {leaked:?}");
}

/// The `Uid:` line of `/proc/PID/status` (real, effective, saved, fs uid as the host sees
/// them), its fields joined by single spaces; empty if the process is gone.
fn uid_line(pid: impl std::fmt::Display) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
}
