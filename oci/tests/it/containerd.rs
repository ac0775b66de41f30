//! containerd (1.6, Debian 12) with nook-oci as the runc binary of its `io.containerd.runc.v2`
//! shim (`ctr run --runc-binary`): a containerd of the test's own (its config, root, state,
//! sockets and the runtime's `--root` in the test's temporary directory; killed by pid at the
//! end), an image built here as an OCI layout tarball from the busybox rootfs and imported
//! with `ctr images import` (no download), `run --rm` (output, exit code), and a detached task
//! (`run -d`: nook-oci's state, `task exec`, `task kill`, `task delete`). The container's
//! cgroup is a relative `cgroupsPath` (`--cgroup`), below the test's own cgroup, removed
//! afterwards. What stays on the machine: containerd's shim socket directory
//! `/run/containerd/s` (a fixed path in 1.6), empty; ctr's fifos go to the test's directory
//! (`--fifo-dir`). Without containerd the tests skip (a
//! failure with `NOOK_REQUIRE_PRIV=1`; the v2 lane's guest has no containerd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nook_testutil::{TempDir, own_cgroup_dirs, remove_cgroup_tree, unique_name};
use serde_json::json;

use crate::harness::{p, rootfs};

const NOOK: &str = env!("CARGO_BIN_EXE_nook-oci");
const IMAGE: &str = "docker.io/library/nk-busybox:latest";

/// A containerd of the test's own.
struct Containerd {
    tmp: TempDir,
    daemon: Child,
    /// Relative cgroupsPath prefix (below our own cgroup), removed on drop.
    cgroup_base: String,
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// Puts `path` in `blobs/sha256` of the layout `dir`; its descriptor.
fn blob(dir: &Path, path: &Path, media_type: &str) -> serde_json::Value {
    let digest = sha256(path);
    let size = std::fs::metadata(path).unwrap().len();
    std::fs::rename(path, dir.join("blobs/sha256").join(&digest)).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{digest}"), "size": size})
}

/// An OCI image layout tarball of the busybox rootfs (one uncompressed layer), named
/// [`IMAGE`].
fn image_tarball(tmp: &TempDir) -> PathBuf {
    let root = rootfs(tmp);
    let dir = tmp.join("layout");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer = tmp.join("layer.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&layer).arg(".").status().unwrap().success());
    let diff_id = format!("sha256:{}", sha256(&layer));
    let layer = blob(&dir, &layer, "application/vnd.oci.image.layer.v1.tar");
    let config = tmp.join("config.json");
    let c = json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let config = blob(&dir, &config, "application/vnd.oci.image.config.v1+json");
    let manifest = tmp.join("manifest.json");
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let mut manifest = blob(&dir, &manifest, "application/vnd.oci.image.manifest.v1+json");
    manifest["annotations"] = json!({"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tar = tmp.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success());
    tar
}

impl Containerd {
    /// A running containerd with [`IMAGE`] imported, or `None` (a printed skip) without one.
    fn new(tag: &str) -> Option<Containerd> {
        if !Path::new("/usr/bin/containerd").exists() || !Path::new("/usr/bin/ctr").exists() {
            nook_testutil::skip(
                &format!("oci::containerd::{tag}"),
                "containerd is not installed (CI installs it: .ci/run PACKAGES)",
            );
            return None;
        }
        let tmp = TempDir::new(tag).unwrap();
        let t = tmp.path().display().to_string();
        let config = format!(
            "version = 2\nroot = \"{t}/root\"\nstate = \"{t}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.aufs\"]\n\
             [grpc]\n  address = \"{t}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{t}/containerd-ttrpc.sock\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{t}/opt\"\n"
        );
        std::fs::write(tmp.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(tmp.join("containerd.log")).unwrap();
        let daemon = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(tmp.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let cd = Containerd { tmp, daemon, cgroup_base: unique_name(tag) };
        // A hang detector (not a timing check): until it answers.
        let deadline = Instant::now() + Duration::from_secs(30 * u64::from(nook_testutil::time_factor()));
        while cd.ctr(&["version"]).0 != 0 {
            assert!(Instant::now() < deadline, "containerd did not start: {}", cd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let tar = image_tarball(&cd.tmp);
        let (code, out) = cd.ctr(&["images", "import", p(&tar)]);
        assert_eq!(code, 0, "ctr images import: {out}\n{}", cd.log());
        Some(cd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK --namespace nk args...`: exit code and output (stdout, stderr).
    fn ctr(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new("/usr/bin/ctr")
            .args(["--address", p(&self.tmp.join("containerd.sock")), "--namespace", "nk"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `ctr run` flags: nook-oci as the shim's runc, its root here, the cgroup below ours.
    fn run_flags(&self, id: &str) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            NOOK.into(),
            "--runc-root".into(),
            p(&self.tmp.join("runc")).into(),
            "--cgroup".into(),
            format!("{}/{id}", self.cgroup_base),
            // ctr's stdio fifos (default: /run/containerd/fifo).
            "--fifo-dir".into(),
            p(&self.tmp.join("fifo")).into(),
        ]
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims of ours left by a failed test (their command line names our socket).
        let needle = self.tmp.path().as_os_str().as_encoded_bytes().to_vec();
        let me = std::process::id();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != me
                && pid != self.daemon.id()
                && cmdline.starts_with(b"/usr/bin/containerd-shim")
                && cmdline.windows(needle.len()).any(|w| w == needle)
            {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        let _ = Command::new("kill").args(["-TERM", &self.daemon.id().to_string()]).status();
        let _ = self.daemon.wait();
        // Mounts a task left (its rootfs), deepest first.
        let prefix = format!("{} ", self.tmp.path().display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(|m| format!("{m} ")))
            .filter(|m| m.starts_with(&prefix) || m.starts_with(prefix.trim_end()))
            .map(|m| m.trim_end().to_owned())
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        for d in own_cgroup_dirs() {
            remove_cgroup_tree(&d.join(&self.cgroup_base));
        }
    }
}

#[test]
fn ctr_run_with_nook_oci() {
    nook_testutil::require_root!();
    let Some(cd) = Containerd::new("ctrrun") else { return };
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    args.extend(cd.run_flags("nkc1"));
    args.extend([IMAGE, "nkc1", "sh", "-c", "echo hello; echo $$; exit 3"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = cd.ctr(&args);
    assert_eq!(code, 3, "{out}\n{}", cd.log());
    // Its output, and it is PID 1 of its pid namespace.
    assert_eq!(out, "hello\n1\n", "{}", cd.log());
}

#[test]
fn ctr_detached_task_exec_kill_delete() {
    nook_testutil::require_root!();
    let Some(cd) = Containerd::new("ctrdet") else { return };
    let mut args: Vec<String> = vec!["run".into(), "-d".into()];
    args.extend(cd.run_flags("nkc2"));
    args.extend([IMAGE, "nkc2", "sleep", "1000"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = cd.ctr(&args);
    assert_eq!(code, 0, "{out}\n{}", cd.log());
    // nook-oci keeps the container: its state under the root containerd gave it.
    let state = cd.tmp.join("runc/nk/nkc2/state.json");
    let text = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}\n{}", state.display(), cd.log()));
    assert!(text.contains("\"record\""), "not nook-oci's state: {text}");
    let (code, out) = cd.ctr(&["task", "ls"]);
    assert!(code == 0 && out.lines().any(|l| l.starts_with("nkc2") && l.contains("RUNNING")), "{out}");
    let fifo = cd.tmp.join("fifo").display().to_string();
    let exec =
        ["task", "exec", "--fifo-dir", &fifo, "--exec-id", "nke1", "nkc2", "sh", "-c", "cat /proc/1/cmdline; exit 5"];
    let (code, out) = cd.ctr(&exec);
    assert_eq!(code, 5, "{out}");
    assert_eq!(out.replace('\0', " "), "sleep 1000 ");
    let (code, out) = cd.ctr(&["task", "kill", "--signal", "SIGKILL", "nkc2"]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(20 * u64::from(nook_testutil::time_factor()));
    while !cd.ctr(&["task", "ls"]).1.lines().any(|l| l.starts_with("nkc2") && l.contains("STOPPED")) {
        assert!(Instant::now() < deadline, "task did not stop: {}", cd.ctr(&["task", "ls"]).1);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cd.ctr(&["task", "delete", "nkc2"]).0, 0);
    assert!(!state.exists(), "nook-oci's state is left after task delete");
    assert_eq!(cd.ctr(&["container", "delete", "nkc2"]).0, 0);
}
