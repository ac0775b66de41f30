//! `oci` group: launch latency of OCI runtimes on the identical bundle — `<tool> --root R run
//! --bundle B nk-bench-N` of `/bin/true` for `nook-oci`, `runc` and `crun` (issue 15).
//!
//! The bundle: a busybox rootfs (the host's busybox-static and a few applet links), the
//! config from `runc spec` with three changes, the same for every tool: `process.terminal`
//! false and `process.args` `["/bin/true"]` (no console socket in a bench), and the `cgroup`
//! mount on `/sys/fs/cgroup` removed (nook-oci refuses it for now). Each run gets its own
//! container id and its own relative `cgroupsPath` `nk-bench-oci-PID-TOOL/N` (below this
//! process's own cgroup in every hierarchy); the config is rewritten before each run, outside
//! the timed part. Only the tool's process is timed (spawn to exit; `run` deletes the
//! container itself); afterwards its state directory is checked and a leftover deleted
//! (`delete --force`). The cgroup directories the tools leave (runc keeps the parents) are
//! removed at the end.
//!
//! The nook-oci binary is a release build: `$NOOK_OCI_BIN`, else `release/nook-oci` in the
//! cargo target directory (`$CARGO_TARGET_DIR` or `target/`); build it first with
//! `cargo build --release -p nook-oci`. A tool that is missing, or fails its first run, is
//! skipped with the reason printed.
//!
//! crun 1.8 refuses this host's hybrid cgroups ("cgroups in hybrid mode not supported, drop
//! all controllers from cgroupv2"). Its runs therefore come from a thread of this process
//! that lives in a private mount namespace (`unshare(CLONE_NEWNS)`, `/` made `MS_REC |
//! MS_PRIVATE`), where `/sys/fs/cgroup/unified` is unmounted (`umount2(MNT_DETACH)`), so
//! crun sees plain cgroup v1. crun also resolves a relative `cgroupsPath` from the root of
//! each hierarchy, not from its own cgroup as runc does; so in the same namespace every v1
//! hierarchy in which this process is not in the root cgroup gets its own cgroup directory
//! bind-mounted over the hierarchy's mount point, and crun's cgroups land in the same place
//! as runc's. The host's mounts are never touched; the namespace goes when the thread ends.
//!
//! `c_floor`: the same run as bare system calls in a process of its own — `nk-floor-run`
//! (`benches/c/floor_run.c`, built by `build.rs`) running `nk_floor_oci` of
//! `benches/c/floor.c` with the bundle's rootfs, host name, capabilities, masked and
//! read-only paths and a cgroup like the runtimes' ([`c_floor_args`]): what no runtime started
//! per container can go below on this machine.
//!
//! The same three under podman (`podman+TOOL`, see [`PodmanEnv`]): `podman --runtime TOOL
//! run --rm` of `/bin/true` on the busybox rootfs imported as an image, in the same run;
//! skipped with the reason printed without podman or conmon.
//!
//! Besides criterion's samples, [`rounds`] measures the tools interleaved (each round runs
//! every tool `PER_ROUND` times, the order rotating) and prints per-tool medians, the range
//! of the round medians and the per-round ratios (to nook-oci driven the same way), and writes them as CSV to
//! `<criterion dir>/oci-launch.csv` (`benches/results/oci-launch.csv` is one such file,
//! `benches/chart/oci-chart.py` draws it).

use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nook_testutil::{own_cgroup_dirs, remove_cgroup_tree};
use serde_json::Value;

use crate::report::{Report, bench_mode, criterion_dir, fmt_ns, slow_group};

/// Interleaved rounds, and runs of each tool per round.
const ROUNDS: usize = 12;
const PER_ROUND: usize = 5;

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The release nook-oci binary (see the module docs).
fn nook_oci_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NOOK_OCI_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let bin = target.join("release/nook-oci");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} is missing: run `cargo build --release -p nook-oci` first", bin.display()))
    }
}

/// A private directory for the bench, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The busybox rootfs and `runc spec`'s config (made for the bench, see the module docs).
pub(crate) fn base_config(dir: &Path) -> Result<Value, String> {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("mkdir: {e}"))?;
    }
    let busybox = which("busybox").ok_or("busybox (busybox-static) is not installed")?;
    std::fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| format!("copy busybox: {e}"))?;
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(|e| format!("symlink: {e}"))?;
    }
    let spec = dir.join("spec");
    std::fs::create_dir_all(&spec).map_err(|e| format!("mkdir: {e}"))?;
    let runc = which("runc").ok_or("runc is not installed (the bundle's config comes from `runc spec`)")?;
    let st = Command::new(runc).arg("spec").current_dir(&spec).status().map_err(|e| format!("runc spec: {e}"))?;
    if !st.success() {
        return Err(format!("runc spec: {st}"));
    }
    let text = std::fs::read(spec.join("config.json")).map_err(|e| format!("read config.json: {e}"))?;
    let mut c: Value = serde_json::from_slice(&text).map_err(|e| format!("config.json: {e}"))?;
    c["process"]["terminal"] = Value::Bool(false);
    c["process"]["args"] = Value::Array(vec![Value::String("/bin/true".into())]);
    c["root"]["path"] = Value::String(root.display().to_string());
    if let Some(m) = c["mounts"].as_array_mut() {
        m.retain(|m| m["type"] != "cgroup");
    }
    Ok(c)
}

/// One runtime binary with its own `--root`, bundle directory and cgroup base.
pub(crate) struct Tool {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
    pub(crate) cgroup_base: String,
    config: Value,
    /// crun: the runs go through the thread in the private mount namespace.
    ns: Option<NsRunner>,
    /// `podman --runtime <bin> run --rm` instead of `<bin> run`.
    podman: Option<Arc<PodmanEnv>>,
    /// `nk-floor-run`: these arguments instead of a bundle and a `run`.
    floor: Option<Vec<String>>,
    runs: u32,
}

impl Tool {
    pub(crate) fn new(name: &'static str, bin: PathBuf, dir: &Path, config: &Value, ns: Option<NsRunner>) -> Tool {
        let bundle = dir.join(format!("bundle-{name}"));
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        Tool {
            name,
            bin,
            root: dir.join(format!("root-{name}")),
            bundle,
            cgroup_base: format!("nk-bench-oci-{}-{name}", std::process::id()),
            config: config.clone(),
            ns,
            podman: None,
            floor: None,
            runs: 0,
        }
    }

    /// The runtime of this tool driven by podman (see [`PodmanEnv`]).
    fn with_podman(mut self, podman: Arc<PodmanEnv>) -> Tool {
        self.podman = Some(podman);
        self
    }

    /// One timed `run` of a fresh container; the state directory checked afterwards.
    pub(crate) fn launch(&mut self) -> Result<Duration, String> {
        if let Some(args) = &self.floor {
            let mut cmd = Command::new(&self.bin);
            cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
            let (elapsed, status) = timed(cmd)?;
            return if status.success() { Ok(elapsed) } else { Err(format!("{}: {status}", self.name)) };
        }
        if let Some(pm) = &self.podman {
            let mut cmd = pm.run_true(&self.bin, &self.root);
            let err = self.root.with_extension("stderr");
            cmd.stderr(File::create(&err).map_err(|e| format!("stderr file: {e}"))?);
            let (elapsed, status) = match &self.ns {
                Some(ns) => ns.run(cmd)?,
                None => timed(cmd)?,
            };
            if !status.success() {
                let text = std::fs::read_to_string(&err).unwrap_or_default();
                return Err(format!("{}: {status}: {}", self.name, text.trim()));
            }
            return Ok(elapsed);
        }
        self.runs += 1;
        let id = format!("nk-bench-{}", self.runs);
        self.config["linux"]["cgroupsPath"] = Value::String(format!("{}/{}", self.cgroup_base, self.runs));
        std::fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(&self.config).expect("json"))
            .map_err(|e| format!("write config.json: {e}"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root).args(["run", "--bundle"]).arg(&self.bundle).arg(&id);
        let err = self.root.with_extension("stderr");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).map_err(|e| format!("stderr file: {e}"))?);
        let (elapsed, status) = match &self.ns {
            Some(ns) => ns.run(cmd)?,
            None => timed(cmd)?,
        };
        let leftover = self.root.join(&id).exists();
        if leftover {
            let mut del = Command::new(&self.bin);
            del.arg("--root").arg(&self.root).args(["delete", "--force", &id]).stdout(Stdio::null());
            let _ = match &self.ns {
                Some(ns) => ns.run(del).map(|_| ()),
                None => del.status().map(|_| ()).map_err(|e| e.to_string()),
            };
        }
        if !status.success() {
            let text = std::fs::read_to_string(&err).unwrap_or_default();
            return Err(format!("{} run {id}: {status}: {}", self.name, text.trim()));
        }
        Ok(elapsed)
    }

    /// Removes this tool's cgroup directories (every hierarchy, host view).
    pub(crate) fn remove_cgroups(&self) {
        for d in own_cgroup_dirs() {
            remove_cgroup_tree(&d.join(&self.cgroup_base));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn timed(mut cmd: Command) -> Result<(Duration, std::process::ExitStatus), String> {
    let start = Instant::now();
    let status = cmd.status().map_err(|e| format!("spawn: {e}"))?;
    Ok((start.elapsed(), status))
}

type Job = (Command, mpsc::Sender<Result<(Duration, std::process::ExitStatus), String>>);

/// A thread in a private mount namespace without the cgroup2 mount (see the module docs)
/// that runs and times the commands it is sent.
pub(crate) struct NsRunner {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRunner {
    pub(crate) fn start() -> Result<NsRunner, String> {
        NsRunner::start_with(true)
    }

    /// `own_cgroups`: bind this process's own v1 cgroups over the hierarchies' mount points
    /// (for crun's relative `cgroupsPath`; podman gives it an absolute one: no binds).
    fn start_with(own_cgroups: bool) -> Result<NsRunner, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            let setup = private_cgroup_v1_view(own_cgroups);
            let ok = setup.is_ok();
            let _ = ready_tx.send(setup);
            if !ok {
                return;
            }
            for (cmd, reply) in jobs_rx {
                let _ = reply.send(timed(cmd));
            }
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NsRunner { jobs: Some(jobs_tx), thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err("namespace thread died".into()),
        }
    }

    fn run(&self, cmd: Command) -> Result<(Duration, std::process::ExitStatus), String> {
        let (tx, rx) = mpsc::channel();
        self.jobs.as_ref().expect("running").send((cmd, tx)).map_err(|_| "namespace thread gone")?;
        rx.recv().map_err(|_| "namespace thread gone")?
    }
}

impl Drop for NsRunner {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in path")
}

fn last_os_error(call: &str, path: &Path) -> String {
    format!("{call} {}: {}", path.display(), std::io::Error::last_os_error())
}

/// On the calling thread only: a private mount namespace in which the cgroup2 mount of the
/// hybrid layout is gone and each v1 hierarchy's mount point shows this process's own cgroup.
fn private_cgroup_v1_view(own_cgroups: bool) -> Result<(), String> {
    // SAFETY: unshare has no memory preconditions; CLONE_NEWNS (with the implied CLONE_FS)
    // affects only this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(last_os_error("unshare(CLONE_NEWNS)", Path::new("")));
    }
    let root = cstr(Path::new("/"));
    // SAFETY: valid NUL-terminated path; null source/type/data are allowed for a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(last_os_error("mount(MS_PRIVATE)", Path::new("/")));
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.controllers").exists() {
        let p = cstr(unified);
        // SAFETY: valid NUL-terminated path; in this thread's private namespace.
        if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(last_os_error("umount2", unified));
        }
    }
    for own in own_cgroup_dirs().into_iter().filter(|_| own_cgroups) {
        let Some(mount) = v1_mount_point(&own) else { continue };
        if own == mount {
            continue;
        }
        let (src, dst) = (cstr(&own), cstr(&mount));
        // SAFETY: valid NUL-terminated paths; a bind mount in this thread's private namespace.
        let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        if rc != 0 {
            return Err(last_os_error("mount(MS_BIND)", &own));
        }
    }
    Ok(())
}

/// `/sys/fs/cgroup/<hierarchy>` of a v1 cgroup directory (None for the cgroup2 one).
fn v1_mount_point(dir: &Path) -> Option<PathBuf> {
    let rel = dir.strip_prefix("/sys/fs/cgroup").ok()?;
    let first = rel.components().next()?;
    let mount = Path::new("/sys/fs/cgroup").join(first);
    (mount != Path::new("/sys/fs/cgroup/unified") && dir != Path::new("/sys/fs/cgroup")).then_some(mount)
}

/// The tools that are installed and pass a first run.
fn tools(dir: &Path) -> Vec<Tool> {
    let config = match base_config(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oci: skipped: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut add = |name: &'static str, bin: Result<PathBuf, String>, ns: Option<Result<NsRunner, String>>| {
        let bin = match bin {
            Ok(b) => b,
            Err(e) => return eprintln!("oci: {name} skipped: {e}"),
        };
        let ns = match ns.transpose() {
            Ok(ns) => ns,
            Err(e) => return eprintln!("oci: {name} skipped: private mount namespace: {e}"),
        };
        let mut t = Tool::new(name, bin, dir, &config, ns);
        match t.launch() {
            Ok(_) => out.push(t),
            Err(e) => {
                eprintln!("oci: {name} skipped: its first run failed: {e}");
                t.remove_cgroups();
            }
        }
    };
    add("nook-oci", nook_oci_bin(), None);
    add("runc", which("runc").ok_or_else(|| "runc is not installed".into()), None);
    // crun needs the private mount namespace only on a hybrid host.
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    add(
        "crun",
        which("crun").ok_or_else(|| "crun is not installed (apt-get install crun)".into()),
        hybrid.then(NsRunner::start),
    );
    // The kernel floor of the same run, as a process of its own.
    match c_floor_args(dir, &config, &format!("nk-bench-oci-{}-c_floor", std::process::id())) {
        Ok(args) => {
            let mut t = Tool::new("c_floor", PathBuf::from(env!("NK_FLOOR_RUN")), dir, &config, None);
            t.floor = Some(args);
            match t.launch() {
                Ok(_) => out.push(t),
                Err(e) => eprintln!("oci: c_floor skipped: its first run failed: {e}"),
            }
        }
        Err(e) => eprintln!("oci: c_floor skipped: {e}"),
    }
    // The same runtimes under podman.
    let pm = match PodmanEnv::new(dir) {
        Ok(pm) => Arc::new(pm),
        Err(e) => {
            eprintln!("oci: podman rows skipped: {e}");
            return out;
        }
    };
    let direct: Vec<(&'static str, PathBuf)> =
        out.iter().filter(|t| t.floor.is_none()).map(|t| (t.name, t.bin.clone())).collect();
    for (name, bin) in direct {
        let podman_name = match name {
            "nook-oci" => "podman+nook-oci",
            "runc" => "podman+runc",
            _ => "podman+crun",
        };
        // crun: podman (and conmon, and crun) in the private namespace without cgroup2.
        let ns = match (name == "crun" && hybrid).then(|| NsRunner::start_with(false)).transpose() {
            Ok(ns) => ns,
            Err(e) => {
                eprintln!("oci: {podman_name} skipped: private mount namespace: {e}");
                continue;
            }
        };
        let mut t = Tool::new(podman_name, bin, dir, &config, ns).with_podman(pm.clone());
        match t.launch() {
            Ok(_) => out.push(t),
            Err(e) => eprintln!("oci: {podman_name} skipped: its first run failed: {e}"),
        }
    }
    out
}

/// The devices a runc-style runtime allows for `runc spec`'s config (deny all): what
/// nook-oci leaves in a v1 `devices.list` for it.
const OCI_DEFAULT_DEVICES: &str =
    "c *:* m\nb *:* m\nc 1:3 rw\nc 1:5 rw\nc 1:7 rw\nc 1:8 rw\nc 1:9 rw\nc 5:0 rw\nc 5:2 rw\nc 136:* rw";

/// `nk-floor-run`'s arguments for the bundle's run (see `nk_floor_oci` in
/// `benches/c/floor.c`): its rootfs and host name, the config's bounding capabilities, a
/// cgroup `name` below this process's own in the unified hierarchy (born in it) and the v1
/// `devices` one with the default allowlist (on a pure v2 host the device program is left
/// out), the config's masked and read-only paths that exist here.
fn c_floor_args(dir: &Path, config: &Value, name: &str) -> Result<Vec<String>, String> {
    use nook_cgroup::{Controller, Hierarchies, Version};
    let mut caps = 0u64;
    for c in config["process"]["capabilities"]["bounding"].as_array().ok_or("no bounding capabilities")? {
        let name = c.as_str().ok_or("a capability is not a string")?;
        let n = nook_sandbox::hardening::caps::number(name.trim_start_matches("CAP_"))
            .ok_or_else(|| format!("capability {name}"))?;
        caps |= 1 << n;
    }
    let last_cap =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").map_err(|e| format!("cap_last_cap: {e}"))?;
    let mut args = vec![
        dir.join("rootfs").display().to_string(),
        config["hostname"].as_str().unwrap_or("runc").to_owned(),
        format!("{caps:x}"),
        last_cap.trim().to_owned(),
    ];
    let h = Hierarchies::discover().map_err(|e| format!("cgroups: {e}"))?;
    if let Some(v2) = h.v2.as_ref().and_then(|v2| v2.own_dir()) {
        args.extend(["-d".into(), v2.join(name).display().to_string()]);
    }
    if let Ok(loc) = h.require(Controller::Devices)
        && loc.version() == Version::V1
    {
        let d = loc.hierarchy().own_dir().ok_or("own devices cgroup not visible")?.join(name);
        args.extend(["-d".into(), d.display().to_string()]);
        args.extend(["-w".into(), d.join("devices.deny").display().to_string(), "a".into()]);
        args.extend(["-w".into(), d.join("devices.allow").display().to_string(), OCI_DEFAULT_DEVICES.into()]);
    }
    let paths = |key: &str| -> Vec<PathBuf> {
        config["linux"][key].as_array().into_iter().flatten().filter_map(Value::as_str).map(PathBuf::from).collect()
    };
    for p in paths("maskedPaths").into_iter().filter(|p| p.exists()) {
        args.extend([if p.is_dir() { "-m" } else { "-f" }.to_owned(), p.display().to_string()]);
    }
    for p in paths("readonlyPaths").into_iter().filter(|p| p.exists()) {
        args.extend(["-r".to_owned(), p.display().to_string()]);
    }
    Ok(args)
}

/// podman 4.3 (Debian) with a tool as `--runtime`: `podman run --rm --network none
/// --cgroup-parent P nk-busybox /bin/true`, spawn to exit, everything of podman's in the
/// bench directory (storage with the vfs driver, runroot, tmpdir, network config), the
/// repo's `oci/tests/podman/containers.conf` (as `oci/tests/it/podman.rs`), the image the
/// bench's busybox rootfs imported with `podman import` (no download), the cgroups below an
/// `nk` `--cgroup-parent` under the bench's own cgroup, removed at the end with the
/// directories of that path podman made.
pub(crate) struct PodmanEnv {
    dir: PathBuf,
    cgroup_parent: String,
    /// The directories of `cgroup_parent` (every hierarchy) that did not exist before.
    made: Vec<PathBuf>,
}

impl PodmanEnv {
    fn new(bench_dir: &Path) -> Result<PodmanEnv, String> {
        which("podman").ok_or("podman is not installed")?;
        which("conmon").ok_or("conmon is not installed")?;
        let dir = bench_dir.join("podman");
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let deepest = own.lines().filter_map(|l| l.splitn(3, ':').nth(2)).max_by_key(|p| p.len()).unwrap_or("/");
        let cgroup_parent = format!("{}/nk-bench-podman-{}", deepest.trim_end_matches('/'), std::process::id());
        let mut made = Vec::new();
        for root in hierarchy_roots() {
            let mut d = root.clone();
            for part in cgroup_parent.trim_start_matches('/').split('/') {
                d.push(part);
                if !d.exists() {
                    made.push(d.clone());
                }
            }
        }
        let pm = PodmanEnv { dir, cgroup_parent, made };
        let tar = pm.dir.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(bench_dir.join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(|e| format!("tar: {e}"))?;
        if !st.success() {
            return Err(format!("tar of the rootfs: {st}"));
        }
        let mut import = pm.command();
        import.arg("import").arg(&tar).arg("nk-busybox").stdout(Stdio::null()).stderr(Stdio::piped());
        // `podman import` writes containers/image's blob info cache to
        // /var/lib/containers/cache whatever the flags: a private tmpfs on /var/lib.
        // SAFETY: only system calls between fork and exec (`private_var_lib`).
        unsafe { import.pre_exec(private_var_lib) };
        let out = import.output().map_err(|e| format!("podman import: {e}"))?;
        if !out.status.success() {
            return Err(format!("podman import: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(pm)
    }

    fn sub(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        let _ = std::fs::create_dir_all(&d);
        d
    }

    /// `podman` with the isolating flags (no runtime yet).
    fn command(&self) -> Command {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("oci/tests/podman/containers.conf");
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", conf)
            .env("TMPDIR", self.sub("tmp"))
            .arg("--root")
            .arg(self.sub("root"))
            .arg("--runroot")
            .arg(self.sub("runroot"))
            .arg("--tmpdir")
            .arg(self.sub("libpod"))
            .arg("--network-config-dir")
            .arg(self.sub("net"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// The timed command: `run --rm` of `/bin/true` with `runtime` (its `--root` `root`).
    fn run_true(&self, runtime: &Path, root: &Path) -> Command {
        let mut cmd = self.command();
        cmd.arg("--runtime")
            .arg(runtime)
            .arg("--runtime-flag")
            .arg(format!("root={}", root.display()))
            .args(["run", "--rm", "--network", "none", "--cgroup-parent", &self.cgroup_parent])
            .args(["nk-busybox", "/bin/true"]);
        cmd
    }

    /// Whether a process other than us still has our directory on its command line
    /// (conmon, podman's exit command `container cleanup`).
    fn busy(&self) -> bool {
        let me = std::process::id().to_string();
        let needle = self.dir.as_os_str().as_encoded_bytes().to_vec();
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let name = e.file_name();
            name.to_str().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && n != me)
                && std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
    }
}

impl Drop for PodmanEnv {
    fn drop(&mut self) {
        for args in [&["rm", "--all", "--force", "--time", "0"][..], &["rmi", "--all", "--force"][..]] {
            let _ = self.command().args(args).stderr(Stdio::null()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for root in hierarchy_roots() {
            remove_cgroup_tree(&root.join(self.cgroup_parent.trim_start_matches('/')));
        }
        self.made.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
        for d in &self.made {
            let _ = std::fs::remove_dir(d);
        }
    }
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The interleaved rounds (see the module docs): prints the table and writes the CSV.
fn rounds(tools: &mut [Tool]) {
    let k = tools.len();
    // round_medians[tool][round], all[tool]: every run.
    let mut round_medians = vec![Vec::new(); k];
    let mut all = vec![Vec::new(); k];
    for round in 0..ROUNDS {
        let mut per = vec![Vec::new(); k];
        for i in 0..PER_ROUND {
            for j in 0..k {
                let t = (j + round + i) % k;
                let d = tools[t].launch().unwrap_or_else(|e| panic!("{e}"));
                per[t].push(d.as_secs_f64() * 1e9);
            }
        }
        for t in 0..k {
            all[t].extend_from_slice(&per[t]);
            round_medians[t].push(median(&mut per[t]));
        }
    }
    let ratios =
        |a: usize, b: usize| -> Vec<f64> { (0..ROUNDS).map(|r| round_medians[a][r] / round_medians[b][r]).collect() };
    let mut csv =
        String::from("tool,median_ms,round_min_ms,round_max_ms,runs,nook_ratio_median,nook_ratio_min,nook_ratio_max\n");
    println!("\n### oci: interleaved rounds ({ROUNDS} rounds × {PER_ROUND} runs of each tool)\n");
    println!("| tool | median | round medians (min–max) | nook-oci / tool (median, min–max of rounds) |");
    println!("|---|---:|---:|---:|");
    // Each row's ratio is to nook-oci driven the same way (directly, or by podman).
    let nook_of = |t: usize| {
        let want = if tools[t].podman.is_some() { "podman+nook-oci" } else { "nook-oci" };
        tools.iter().position(|x| x.name == want)
    };
    for t in 0..k {
        let nook = nook_of(t);
        let m = median(&mut all[t].clone());
        let mut rm = round_medians[t].clone();
        rm.sort_by(f64::total_cmp);
        let (lo, hi) = (rm[0], rm[rm.len() - 1]);
        let (ratio_md, ratio_cells) = match nook {
            Some(n) if n != t => {
                let mut r = ratios(n, t);
                let md = median(&mut r);
                (
                    format!("{md:.3}× ({:.3}–{:.3})", r[0], r[r.len() - 1]),
                    format!("{md:.4},{:.4},{:.4}", r[0], r[r.len() - 1]),
                )
            }
            _ => (String::new(), ",,".into()),
        };
        println!("| {} | {} | {} – {} | {ratio_md} |", tools[t].name, fmt_ns(m), fmt_ns(lo), fmt_ns(hi));
        csv.push_str(&format!(
            "{},{:.3},{:.3},{:.3},{},{ratio_cells}\n",
            tools[t].name,
            m / 1e6,
            lo / 1e6,
            hi / 1e6,
            all[t].len()
        ));
    }
    let path = criterion_dir().join("oci-launch.csv");
    let _ = std::fs::create_dir_all(criterion_dir());
    match std::fs::write(&path, csv) {
        Ok(()) => println!("\n(written to {})\n", path.display()),
        Err(e) => eprintln!("oci: writing {}: {e}", path.display()),
    }
}

pub fn oci(c: &mut Criterion, report: &mut Report) {
    let dir = std::env::temp_dir().join(format!("nk-bench-oci-{}", std::process::id()));
    let _scratch = Scratch(dir.clone());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("oci: skipped: {}: {e}", dir.display());
        return;
    }
    let mut tools = tools(&dir);
    if !tools.is_empty() {
        let mut g = slow_group(c, "oci");
        g.measurement_time(Duration::from_secs(4));
        for t in &mut tools {
            g.bench_function(format!("run_true/{}", t.name), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| t.launch().unwrap_or_else(|e| panic!("{e}"))).sum())
            });
        }
        g.finish();
        let names: Vec<&'static str> = tools.iter().map(|t| t.name).collect();
        for base in &names {
            let nook = if base.starts_with("podman+") { "podman+nook-oci" } else { "nook-oci" };
            if *base != nook && names.contains(&nook) {
                report.pair(
                    "oci",
                    format!("run /bin/true: {nook} vs {base}"),
                    format!("run_true/{nook}"),
                    format!("run_true/{base}"),
                );
            }
        }
        if bench_mode() {
            rounds(&mut tools);
        }
    }
    for t in &tools {
        t.remove_cgroups();
    }
}
