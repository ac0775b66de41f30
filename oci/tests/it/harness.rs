//! The fixture: a busybox rootfs from the host's busybox, bundles with `runc spec`'s config
//! (or oci-spec's default when runc is missing), and a [`Runtime`] per tool with its own
//! `--root` that deletes (with `--force`) every container it created, and the cgroups, on
//! drop — also when a test fails.

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nook_testutil::{TempDir, own_cgroup_dirs, remove_cgroup_tree};
use serde_json::Value;

/// The tools under test: nook-oci always, runc when installed.
/// Runs `scenario` with each runtime and asserts they observed the same; returns the last.
pub(crate) fn compare<T: std::fmt::Debug + PartialEq>(tag: &str, scenario: impl Fn(&TempDir, &Runtime) -> T) -> T {
    let tmp = TempDir::new(tag).unwrap();
    rootfs(&tmp);
    let rts = runtimes(&tmp, tag);
    let seen: Vec<(&str, T)> = rts.iter().map(|rt| (rt.name, scenario(&tmp, rt))).collect();
    for (name, obs) in &seen[1..] {
        assert_eq!(&seen[0].1, obs, "{} vs {name} differ", seen[0].0);
    }
    let (_, last) = seen.into_iter().last().unwrap();
    drop(rts);
    last
}

/// A path as the `&str` a command line takes.
pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(crate) fn runtimes(tmp: &TempDir, tag: &str) -> Vec<Runtime> {
    let mut v = Vec::new();
    if let Some(runc) = which("runc") {
        v.push(Runtime::new("runc", runc, tmp, tag));
    } else {
        eprintln!("note: runc is not installed: nook-oci runs alone (no comparison)");
    }
    v.push(Runtime::new("nook", PathBuf::from(env!("CARGO_BIN_EXE_nook-oci")), tmp, tag));
    v
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A busybox root filesystem in `dir/rootfs` (read-only in the bundles).
pub(crate) fn rootfs(tmp: &TempDir) -> PathBuf {
    let root = tmp.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = which("busybox").expect("busybox (busybox-static) is installed");
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for applet in
        ["sh", "echo", "cat", "sleep", "true", "false", "hostname", "id", "ls", "touch", "grep", "pwd", "env", "head"]
    {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    root
}

/// `runc spec`'s config (oci-spec's default without runc), made for tests: no terminal,
/// no cgroup mount (nook refuses it for now, see the crate docs), the shared rootfs.
fn base_config(tmp: &TempDir) -> Value {
    let dir = tmp.join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    if !config.exists() {
        match which("runc") {
            Some(runc) => {
                let st = Command::new(runc).arg("spec").current_dir(&dir).status().unwrap();
                assert!(st.success(), "runc spec");
            }
            None => oci_default().save(&config).unwrap(),
        }
    }
    serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap()
}

fn oci_default() -> oci_spec::runtime::Spec {
    oci_spec::runtime::Spec::default()
}

/// One tool with its own root and cgroup base, cleaning up after itself.
pub(crate) struct Runtime {
    pub(crate) name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    /// Relative cgroupsPath prefix (below our own cgroup), removed on drop.
    cgroup_base: String,
    created: RefCell<Vec<String>>,
    runs: RefCell<u32>,
}

/// What a command did.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Runtime {
    fn new(name: &'static str, bin: PathBuf, tmp: &TempDir, tag: &str) -> Runtime {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Runtime {
            name,
            bin,
            root: dir.join("root"),
            cgroup_base: format!("{}-{name}", nook_testutil::unique_name(tag)),
            dir,
            created: RefCell::new(Vec::new()),
            runs: RefCell::new(0),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `<tool> --root ROOT args...` with stdin closed and stdout and stderr going to the next
    /// numbered pair of files (returned); a container id it may create is remembered for
    /// the guard's cleanup when `creates`.
    fn command(&self, args: &[&str], creates: bool) -> (Command, PathBuf, PathBuf) {
        let n = {
            let mut r = self.runs.borrow_mut();
            *r += 1;
            *r
        };
        let (o, e) = (self.dir.join(format!("{n}.out")), self.dir.join(format!("{n}.err")));
        if creates && let Some(id) = args.last() {
            self.created.borrow_mut().push((*id).to_owned());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&o).unwrap())
            .stderr(File::create(&e).unwrap());
        only_stdio(&mut cmd);
        (cmd, o, e)
    }

    /// Runs `<tool> --root ROOT args...` with stdio in files (a container inherits the
    /// stdio of `create`: pipes would be held open by it).
    pub(crate) fn run(&self, args: &[&str]) -> Out {
        let creates = args.iter().any(|a| *a == "create" || *a == "run");
        let (mut cmd, o, e) = self.command(args, creates);
        let status = cmd.status().unwrap();
        Out {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        }
    }

    /// `sh -c 'exec <tool> --root ROOT args... REDIRS'` with `pre` run first in that shell
    /// (so the tool inherits the descriptors the redirections open, and `$$` is its pid).
    pub(crate) fn run_sh(&self, pre: &str, args: &[&str], redirs: &str) -> Out {
        let mut words = vec!["exec".to_owned(), "\"$0\"".to_owned(), "--root".into(), self.root.display().to_string()];
        words.extend(args.iter().map(|a| format!("'{a}'")));
        words.push(redirs.to_owned());
        if let Some(id) = args.last() {
            self.created.borrow_mut().push((*id).to_owned());
        }
        let script = format!("{pre}\n{}", words.join(" "));
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script).arg(&self.bin).stdin(Stdio::null());
        only_stdio(&mut sh);
        let out = sh.output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `<tool> --root ROOT args...` without waiting; stdout and stderr go to the
    /// returned files.
    pub(crate) fn spawn(&self, args: &[&str]) -> (std::process::Child, PathBuf, PathBuf) {
        let (mut cmd, o, e) = self.command(args, true);
        (cmd.spawn().unwrap(), o, e)
    }

    /// Starts `<tool> --root ROOT args...` as the leader of a new session whose controlling
    /// terminal — and stdin, stdout and stderr — is `tty` (a pseudo-terminal's peer), as
    /// in a shell on a terminal.
    pub(crate) fn spawn_on_terminal(&self, args: &[&str], tty: &std::os::fd::OwnedFd) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let (mut cmd, _, _) = self.command(args, true);
        cmd.stdin(tty.try_clone().unwrap()).stdout(tty.try_clone().unwrap()).stderr(tty.try_clone().unwrap());
        // SAFETY: the hook makes two system calls and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// A bundle for container `id` running `args`, the config changed by `tweak`.
    pub(crate) fn bundle(&self, tmp: &TempDir, id: &str, args: &[&str], tweak: impl Fn(&mut Value)) -> PathBuf {
        let rootfs = tmp.join("rootfs");
        let mut c = base_config(tmp);
        c["process"]["terminal"] = Value::Bool(false);
        c["process"]["args"] = args.iter().map(|a| Value::String((*a).to_owned())).collect();
        c["root"]["path"] = Value::String(rootfs.display().to_string());
        if let Some(m) = c["mounts"].as_array_mut() {
            m.retain(|m| m["type"] != "cgroup");
        }
        c["linux"]["cgroupsPath"] = Value::String(format!("{}/{id}", self.cgroup_base));
        tweak(&mut c);
        let dir = self.dir.join(format!("bundle-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        dir
    }

    /// `state ID` parsed, or `None` when it fails.
    pub(crate) fn state(&self, id: &str) -> Option<Value> {
        let out = self.run(&["state", id]);
        if out.code != 0 {
            return None;
        }
        Some(
            serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{}: state JSON {e}: {}", self.name, out.stdout)),
        )
    }

    pub(crate) fn status(&self, id: &str) -> String {
        self.state(id).map_or("(none)".into(), |s| s["status"].as_str().unwrap_or("").to_owned())
    }

    /// Polls until the status is `want` (a hang detector, not a timing check: 20 s).
    pub(crate) fn wait_status(&self, id: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20 * u64::from(nook_testutil::time_factor()));
        loop {
            let s = self.status(id);
            if s == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's cgroup directories that exist now (every hierarchy).
    pub(crate) fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        own_cgroup_dirs().into_iter().map(|d| d.join(&self.cgroup_base).join(id)).filter(|d| d.exists()).collect()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.created.borrow().iter() {
            if self.root.join(id).exists() {
                let _ = self.run(&["delete", "--force", id]);
            }
        }
        for d in own_cgroup_dirs() {
            remove_cgroup_tree(&d.join(&self.cgroup_base));
        }
    }
}

/// Closes every descriptor from 3 on in what `cmd` starts: the tools see only what a test
/// gives them (`--preserve-fds` counts on it), whatever the test process inherited or
/// another test holds open without close-on-exec at that moment.
fn only_stdio(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook makes one system call and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
