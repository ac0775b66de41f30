//! `sandbox` group: a one-shot sandbox running `/bin/true` (nook-sandbox: pid, mount, IPC
//! and UTS namespaces, the host root read-only below a tmpfs upper, `/proc`, `/dev`, a
//! cgroup with memory and pids limits) against `std::process::Command` of `/bin/true` and
//! against `bwrap` doing the same (`--ro-bind / / --proc /proc --dev /dev --tmpfs /tmp
//! --unshare-pid --unshare-ipc --unshare-uts`; skipped when bubblewrap is not installed).
//! Also the long-lived form: `create` + one `exec` of `/bin/true` + `remove`. The sandboxes
//! run with the default hardening (Docker's capabilities, no_new_privs, its seccomp profile,
//! masked and read-only paths, the device allowlist); `one_shot_unconfined` is the same run
//! with all of it off (`privileged`), for what hardening costs per spawn (issue 14).
//! `c_floor`: the kernel work of the same one-shot in C, nothing else (`CFloor`), with and
//! without the cgroup — what no library can go below on the machine.

use criterion::Criterion;
use nook_ns::{Namespace, NamespaceSet};
use nook_sandbox::{NetworkMode, Sandbox, SandboxBuilder};

use crate::report::{Report, slow_group};

fn one_shot(limits: bool) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.namespaces(
        NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount).with(Namespace::Ipc).with(Namespace::Uts),
    )
    .network(NetworkMode::Host)
    .command("/bin/true");
    if limits {
        b.memory_max(64 << 20).pids_max(64);
    }
    b
}

fn nook(limits: bool) {
    let outcome = one_shot(limits).status().expect("sandbox");
    assert!(outcome.success(), "{outcome:?}");
}

/// The default hardening without its masked and read-only paths (capabilities,
/// no_new_privs, seccomp, the device allowlist only).
fn nook_no_paths() {
    let mut security = nook_sandbox::Security::default();
    security.masked_paths = Some(Vec::new());
    security.read_only_paths = Some(Vec::new());
    let outcome = one_shot(true).security(security).status().expect("sandbox");
    assert!(outcome.success(), "{outcome:?}");
}

/// The default hardening without seccomp.
fn nook_no_seccomp() {
    let outcome = one_shot(true).seccomp(nook_sandbox::SeccompMode::Unconfined).status().expect("sandbox");
    assert!(outcome.success(), "{outcome:?}");
}

fn nook_unconfined() {
    let outcome = one_shot(true).privileged(true).status().expect("sandbox");
    assert!(outcome.success(), "{outcome:?}");
}

fn std_true() {
    assert!(std::process::Command::new("/bin/true").status().expect("spawn").success());
}

fn bwrap() {
    let status = std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
        .args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "/bin/true"])
        .status()
        .expect("spawn bwrap");
    assert!(status.success(), "bwrap: {status}");
}

/// The one-shot's kernel work in C (`nk_floor_sandbox` in `benches/c/floor.c`): the same
/// namespaces, root file system (overlay on the host's `/` below a tmpfs upper, `/proc`,
/// `/dev`, `/sys`, `pivot_root`) and cgroup limits (one directory per hierarchy of memory and
/// pids below this process's cgroup), `/bin/true` exec'd as PID 1. What it leaves out is
/// nook's own: an init, the hardening, the owner record, the typed errors.
struct CFloor {
    cgroup: crate::floor::Cgroup,
    harden: Option<crate::floor::Harden>,
    stage: nook_testutil::TempDir,
    stage_c: std::ffi::CString,
}

impl CFloor {
    /// With the cgroup (`limits`) or without one; with nook's default hardening or without.
    fn new(limits: bool, hardened: bool) -> CFloor {
        use std::os::unix::ffi::OsStrExt;
        let cgroup = if limits {
            let h = nook_cgroup::Hierarchies::discover().expect("discover the cgroup hierarchies");
            let name = format!("nk-bench-sbfloor-{}-{}", std::process::id(), u8::from(hardened));
            let policy = hardened.then(nook_sandbox::hardening::default_device_policy);
            crate::cgroup::cgroup_floor_same_result(&h, &name, policy.as_ref())
        } else {
            crate::floor::Cgroup::new(&[], &[])
        };
        let stage = nook_testutil::TempDir::new("sbfloor").expect("stage dir");
        let stage_c = std::ffi::CString::new(stage.path().as_os_str().as_bytes()).expect("no NUL");
        CFloor { cgroup, harden: hardened.then(floor_hardening), stage, stage_c }
    }

    fn run(&self) {
        let status = self.cgroup.run_sandbox(&self.stage_c, self.harden.as_ref());
        assert_eq!(status, 0, "C floor of the one-shot in {:?}", self.stage.path());
    }
}

/// What nook's one-shot hardens by default, for the C floor: the masked paths that exist
/// here (directories and files apart), the read-only ones, the capability set with a
/// device cgroup, and the default seccomp program compiled for it.
fn floor_hardening() -> crate::floor::Harden {
    use nook_sandbox::hardening::{READ_ONLY_PATHS, Target, paths::default_masked_paths, seccomp::default_compiled};
    use std::path::PathBuf;
    let masked: Vec<PathBuf> = default_masked_paths().into_iter().filter(|p| p.exists()).collect();
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = masked.into_iter().partition(|p| p.is_dir());
    let read_only: Vec<PathBuf> = READ_ONLY_PATHS.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    let caps = nook_sandbox::Security::default().capability_set(true).expect("the default capability set");
    let program = default_compiled(&Target::host(caps).expect("x86_64 or aarch64")).expect("the default profile");
    let last_cap: i32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("a number");
    crate::floor::Harden::new(&dirs, &files, &read_only, program.to_libc(), caps.bits(), last_cap)
}

impl Drop for CFloor {
    fn drop(&mut self) {
        self.cgroup.assert_removed();
    }
}

fn create_exec_remove() {
    let sb = one_shot(true).create().expect("create");
    let status = sb.exec(["/bin/true"]).status().expect("exec");
    assert!(status.success(), "exec: {status:?}");
    sb.remove().expect("remove");
}

pub fn sandbox(c: &mut Criterion, report: &mut Report) {
    let has_bwrap = std::process::Command::new("bwrap").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut g = slow_group(c, "sandbox");
    g.bench_function("one_shot/nook", |b| b.iter(|| nook(true)));
    g.bench_function("one_shot_unconfined/nook", |b| b.iter(nook_unconfined));
    g.bench_function("one_shot_no_masked_paths/nook", |b| b.iter(nook_no_paths));
    g.bench_function("one_shot_no_seccomp/nook", |b| b.iter(nook_no_seccomp));
    g.bench_function("one_shot_no_cgroup/nook", |b| b.iter(|| nook(false)));
    g.bench_function("create_exec_remove/nook", |b| b.iter(create_exec_remove));
    g.bench_function("one_shot/std_command", |b| b.iter(std_true));
    if has_bwrap {
        g.bench_function("one_shot/bwrap", |b| b.iter(bwrap));
    }
    let floor = CFloor::new(true, false);
    g.bench_function("one_shot/c_floor", |b| b.iter(|| floor.run()));
    let floor_hardened = CFloor::new(true, true);
    g.bench_function("one_shot_hardened/c_floor", |b| b.iter(|| floor_hardened.run()));
    let floor_no_cgroup = CFloor::new(false, false);
    g.bench_function("one_shot_no_cgroup/c_floor", |b| b.iter(|| floor_no_cgroup.run()));
    g.finish();
    report.singles.push(("sandbox", "one_shot_no_cgroup/nook".into()));
    report.singles.push(("sandbox", "create_exec_remove/nook".into()));
    report.pair("sandbox", "one-shot /bin/true vs std::process::Command", "one_shot/nook", "one_shot/std_command");
    report.interleave(|| nook(true), std_true);
    report.pair("sandbox", "hardening on vs off (one-shot)", "one_shot/nook", "one_shot_unconfined/nook");
    report.interleave(|| nook(true), nook_unconfined);
    report.pair(
        "sandbox",
        "hardening: masked/read-only paths on vs off",
        "one_shot/nook",
        "one_shot_no_masked_paths/nook",
    );
    report.interleave(|| nook(true), nook_no_paths);
    report.pair("sandbox", "hardening: seccomp on vs off", "one_shot/nook", "one_shot_no_seccomp/nook");
    report.interleave(|| nook(true), nook_no_seccomp);
    if has_bwrap {
        report.pair("sandbox", "one-shot /bin/true vs bwrap", "one_shot/nook", "one_shot/bwrap");
        report.interleave(|| nook(true), bwrap);
    }
    report.pair("sandbox", "one-shot /bin/true vs its C floor", "one_shot/nook", "one_shot/c_floor");
    report.interleave(|| nook(true), || floor.run());
    report.pair("sandbox", "one-shot /bin/true vs its hardened C floor", "one_shot/nook", "one_shot_hardened/c_floor");
    report.interleave(|| nook(true), || floor_hardened.run());
    report.pair("sandbox", "C floor: hardening on vs off", "one_shot_hardened/c_floor", "one_shot/c_floor");
    report.interleave(|| floor_hardened.run(), || floor.run());
    report.pair(
        "sandbox",
        "one-shot without a cgroup vs its C floor",
        "one_shot_no_cgroup/nook",
        "one_shot_no_cgroup/c_floor",
    );
    report.interleave(|| nook(false), || floor_no_cgroup.run());
    report.pair(
        "sandbox",
        "C floor of the one-shot vs std::process::Command",
        "one_shot/c_floor",
        "one_shot/std_command",
    );
    report.interleave(|| floor.run(), std_true);
    if has_bwrap {
        report.pair("sandbox", "C floor of the one-shot vs bwrap", "one_shot/c_floor", "one_shot/bwrap");
        report.interleave(|| floor.run(), bwrap);
    }
    sporadic(c, report, &floor);
}

/// How long a sporadic caller waits between two sandboxes: long enough for the kernel's
/// cgroup threadgroup lock to fall back to its slow-writer state (a grace period after the
/// last move), which back-to-back runs never see.
const SPORADIC_PAUSE: std::time::Duration = std::time::Duration::from_millis(40);

/// `sporadic` group: the same one-shot, and an `exec` into a long-lived sandbox, each after
/// an untimed pause — what a caller that starts sandboxes now and then pays. Moving a
/// process into a cgroup by pid (`cgroup.procs`) waits for an RCU grace period there; the
/// facade's children are born in their cgroup2 directory and move themselves into the v1
/// ones, which does not.
fn sporadic(c: &mut Criterion, report: &mut Report, floor: &CFloor) {
    let mut g = slow_group(c, "sporadic");
    g.sample_size(10).warm_up_time(std::time::Duration::from_millis(300));
    g.measurement_time(std::time::Duration::from_secs(1));
    let paused = |b: &mut criterion::Bencher<'_>, f: &dyn Fn()| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(SPORADIC_PAUSE);
                let start = std::time::Instant::now();
                f();
                total += start.elapsed();
            }
            total
        })
    };
    g.bench_function("one_shot/nook", |b| paused(b, &|| nook(true)));
    g.bench_function("one_shot_no_cgroup/nook", |b| paused(b, &|| nook(false)));
    let sb = one_shot(true).create().expect("create");
    g.bench_function("exec/nook", |b| paused(b, &|| assert!(sb.exec(["/bin/true"]).status().expect("exec").success())));
    sb.remove().expect("remove");
    g.bench_function("one_shot/std_command", |b| paused(b, &std_true));
    g.bench_function("one_shot/c_floor", |b| paused(b, &|| floor.run()));
    g.finish();
    report.pair("sporadic", "one-shot after a 40 ms pause vs its C floor", "one_shot/nook", "one_shot/c_floor");
    report.pair(
        "sporadic",
        "C floor of the one-shot after a 40 ms pause vs std::process::Command",
        "one_shot/c_floor",
        "one_shot/std_command",
    );
    report.pair(
        "sporadic",
        "one-shot after a 40 ms pause vs std::process::Command",
        "one_shot/nook",
        "one_shot/std_command",
    );
}
