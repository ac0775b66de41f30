//! Benchmarks of the nook crates against a C floor (`benches/c/floor.c`: the same system
//! calls, nothing else) and against peers (`std::process::Command`, `unshare(1)`, `bwrap(1)`,
//! `ip -batch`, `tar -x`).
//!
//! Run as root: `cargo bench --bench main`. Six groups, each nook measurement next to its
//! baseline in the same run (a filter that names a group, e.g. `-- cgroup`, runs only that
//! group, setup and interleaved ratios included):
//! - `clone_wait`: a child in new namespaces that exits at once (nook: a `pre_exec` hook
//!   that calls `_exit(0)`, so the whole spawn path runs except exec), then wait. A hook
//!   makes nook use its fork-semantics path, so the C floor here forks too (clone3). For
//!   nook's vfork-style path (no hook) the child instead execs a missing file (`nook_vfork`
//!   against `c_vfork`, which does the same with `clone(CLONE_VM | CLONE_VFORK)`).
//! - `setns_roundtrip`: enter a namespace of a long-running holder process and come back.
//! - `spawn_exec`: spawn `/bin/true` and wait. Without hooks, user namespace or init nook
//!   takes its vfork-style path; the C floor is given both forms.
//! - `cgroup`: create a cgroup with memory and pids limits and delete it, below this
//!   process's own cgroup; the C floor makes the directories and writes the files itself.
//! - `netmodel` (`net.rs`): network namespaces and bridge endpoints against `ip -batch`.
//! - `unionfs` (`layers.rs`): overlay mount+unmount with 1–500 layers against the same
//!   syscalls in C; applying a layer tarball against `tar -x`.
//!
//! At the end (in `--bench` mode) a Markdown summary of the medians and the nook/baseline
//! ratios is printed; `BENCHMARKS.md` holds one such run and its analysis.

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_ulong};
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use nook_cgroup::{Cgroup, CgroupSpec, Controller, Hierarchies, Layout, Memory, Pids, Version};
use nook_ns::{Command, Namespace, NamespaceSet, NsFd, NsGuard};

mod layers;
mod net;
mod sandbox;

/// The C floor (see `benches/c/floor.c`). Each call returns the wait status or `-errno`.
mod floor {
    use super::{CStr, CString, NamespaceSet, PathBuf, c_char, c_int, c_long, c_ulong};
    use std::os::unix::ffi::OsStrExt;

    unsafe extern "C" {
        fn nk_floor_clone_wait(flags: c_ulong) -> c_long;
        fn nk_floor_clone_exec_wait(flags: c_ulong, path: *const c_char) -> c_long;
        fn nk_floor_fork_wait() -> c_long;
        fn nk_floor_fork_exec_wait(path: *const c_char) -> c_long;
        fn nk_floor_vfork_exec_wait(flags: c_ulong, path: *const c_char) -> c_long;
        fn nk_floor_setns_roundtrip(target_fd: c_int, orig_fd: c_int, nstype: c_int) -> c_long;
        fn nk_floor_cgroup(
            dirs: *const *const c_char,
            ndirs: c_int,
            files: *const *const c_char,
            values: *const *const c_char,
            nfiles: c_int,
        ) -> c_long;
    }

    /// A cgroup for [`nk_floor_cgroup`]: the directories to make (in order) and the files to
    /// write, as C strings kept alive with the pointer arrays that name them.
    pub struct Cgroup {
        paths: Vec<PathBuf>,
        dirs: Vec<*const c_char>,
        files: Vec<*const c_char>,
        values: Vec<*const c_char>,
        _strings: Vec<CString>,
    }

    impl Cgroup {
        pub fn new(dirs_in: &[PathBuf], writes: &[(PathBuf, String)]) -> Cgroup {
            let c = |s: &[u8]| CString::new(s).expect("no NUL in a cgroup path or value");
            let mut strings = Vec::new();
            // A CString's bytes live on the heap: moving it into `strings` keeps the pointer.
            let mut keep = |s: CString| {
                let p = s.as_ptr();
                strings.push(s);
                p
            };
            let dirs = dirs_in.iter().map(|d| keep(c(d.as_os_str().as_bytes()))).collect();
            let files = writes.iter().map(|(f, _)| keep(c(f.as_os_str().as_bytes()))).collect();
            let values = writes.iter().map(|(_, v)| keep(c(v.as_bytes()))).collect();
            Cgroup { paths: dirs_in.to_vec(), dirs, files, values, _strings: strings }
        }

        /// Panics if a directory of this cgroup exists.
        pub fn assert_removed(&self) {
            for p in &self.paths {
                assert!(!p.exists(), "C floor left {} behind", p.display());
            }
        }

        /// mkdir every directory, write every file, rmdir the directories in reverse order:
        /// 0 or `-errno` (what was created is removed again).
        pub fn run(&self) -> c_long {
            // SAFETY: the arrays hold `len` pointers to NUL-terminated strings owned by
            // `self._strings`, which outlive the call; the C side only reads them.
            unsafe {
                nk_floor_cgroup(
                    self.dirs.as_ptr(),
                    self.dirs.len() as c_int,
                    self.files.as_ptr(),
                    self.values.as_ptr(),
                    self.files.len() as c_int,
                )
            }
        }
    }

    /// clone(CLONE_VM | CLONE_VFORK) with `set`'s flags, child execs `path`, waitpid.
    pub fn vfork_exec_wait(set: NamespaceSet, path: &CStr) -> c_long {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        unsafe { nk_floor_vfork_exec_wait(set.bits() as c_ulong, path.as_ptr()) }
    }

    /// clone3 with `set`'s flags, child `_exit(0)`, waitpid.
    pub fn clone_wait(set: NamespaceSet) -> c_long {
        // SAFETY: plain C function taking an integer; it forks and reaps its own child.
        unsafe { nk_floor_clone_wait(set.bits() as c_ulong) }
    }

    /// clone3 with `set`'s flags, child execs `path`, waitpid.
    pub fn clone_exec_wait(set: NamespaceSet, path: &CStr) -> c_long {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        unsafe { nk_floor_clone_exec_wait(set.bits() as c_ulong, path.as_ptr()) }
    }

    /// fork, child `_exit(0)`, waitpid.
    pub fn fork_wait() -> c_long {
        // SAFETY: no arguments; the child only calls `_exit`.
        unsafe { nk_floor_fork_wait() }
    }

    /// fork, child execs `path`, waitpid.
    pub fn fork_exec_wait(path: &CStr) -> c_long {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        unsafe { nk_floor_fork_exec_wait(path.as_ptr()) }
    }

    /// setns into `target` and back into `orig`.
    pub fn setns_roundtrip(target: c_int, orig: c_int, nstype: c_int) -> c_long {
        // SAFETY: integer arguments only; both are namespace fds the caller keeps open.
        unsafe { nk_floor_setns_roundtrip(target, orig, nstype) }
    }
}

const TRUE: &CStr = c"/bin/true";

/// pid+mnt+ipc+uts: the set the goals are stated for.
const BASE: NamespaceSet =
    NamespaceSet::PID.union(NamespaceSet::MOUNT).union(NamespaceSet::IPC).union(NamespaceSet::UTS);

/// The `clone_wait` configurations: each kind alone, then growing combinations. Those with
/// a network namespace come last: the kernel tears network namespaces down asynchronously
/// (a `cleanup_net` worker), which keeps a CPU busy for a while after they were measured.
fn clone_configs() -> Vec<(&'static str, NamespaceSet)> {
    vec![
        ("none", NamespaceSet::new()),
        ("mnt", NamespaceSet::MOUNT),
        ("uts", NamespaceSet::UTS),
        ("ipc", NamespaceSet::IPC),
        ("pid", NamespaceSet::PID),
        ("user", NamespaceSet::USER),
        ("cgroup", NamespaceSet::CGROUP),
        ("time", NamespaceSet::TIME),
        ("pid+mnt+ipc+uts", BASE),
        ("net", NamespaceSet::NET),
        ("pid+mnt+ipc+uts+net", BASE.union(NamespaceSet::NET)),
        ("pid+mnt+ipc+uts+net+user", BASE.union(NamespaceSet::NET).union(NamespaceSet::USER)),
        ("all", NamespaceSet::all()),
    ]
}

/// Lets the asynchronous teardown of the network namespaces measured before finish, so it
/// does not run during the next measurement (only when measuring, not in test mode).
fn settle() {
    if bench_mode() {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once
/// (`cargo test --benches`).
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// One row of the final summary: a nook measurement and the baseline it is compared with.
struct Pair {
    group: &'static str,
    row: String,
    nook: String,
    base: String,
    /// nook/baseline measured interleaved (see [`interleaved_ratio`]).
    interleaved: Option<f64>,
}

/// Records which benchmarks ran and which pairs to report.
#[derive(Default)]
pub(crate) struct Report {
    pairs: Vec<Pair>,
    singles: Vec<(&'static str, String)>,
}

impl Report {
    fn pair(&mut self, group: &'static str, row: impl Into<String>, nook: impl Into<String>, base: impl Into<String>) {
        self.pairs.push(Pair { group, row: row.into(), nook: nook.into(), base: base.into(), interleaved: None });
    }

    /// Measures the last pair again, interleaved (only when measuring).
    fn interleave(&mut self, mut nook: impl FnMut(), mut base: impl FnMut()) {
        if bench_mode() {
            let ratio = interleaved_ratio(&mut nook, &mut base);
            if let Some(p) = self.pairs.last_mut() {
                p.interleaved = Some(ratio);
            }
        }
    }
}

/// time(a) / time(b), measured interleaved: 15 rounds of `n` runs of each (alternating
/// which goes first), about 20 ms per half round; the median of the per-round ratios.
/// Criterion measures one benchmark after the other, so load on the machine that comes and
/// goes between them shows up in its ratios; here it hits both sides alike.
fn interleaved_ratio(a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> f64 {
    fn time(f: &mut dyn FnMut(), n: u32) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64()
    }
    let one = time(a, 3).max(time(b, 3)) / 3.0;
    let n = (0.02 / one).clamp(1.0, 100_000.0) as u32;
    let mut ratios: Vec<f64> = (0..15)
        .map(|round| {
            if round % 2 == 0 {
                let ta = time(a, n);
                ta / time(b, n)
            } else {
                let tb = time(b, n);
                time(a, n) / tb
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn expect_exit0(what: &str, status: c_long) {
    expect_status(what, status, 0);
}

fn expect_status(what: &str, status: c_long, expected: c_long) {
    assert_eq!(status, expected, "{what}: wait status or -errno {status}");
}

/// A nook command whose child runs the whole spawn path, then `_exit(0)` instead of exec.
fn nook_exit0(set: NamespaceSet) -> Command {
    let mut cmd = Command::new("/bin/true");
    cmd.namespaces(set);
    // SAFETY: the hook only calls `_exit`, which is async-signal-safe and does not allocate.
    unsafe {
        cmd.pre_exec(|| -> std::io::Result<()> { libc::_exit(0) });
    }
    cmd
}

fn run_nook(cmd: &mut Command) {
    let status = cmd.status().expect("nook spawn");
    assert!(status.success(), "nook child: {status}");
}

pub(crate) fn slow_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// Group 1: clone + wait, nook vs the C floor, per kind and combined; fork+wait baseline.
fn clone_wait(c: &mut Criterion, report: &mut Report) {
    let mut g = slow_group(c, "clone_wait");
    expect_exit0("fork_wait", floor::fork_wait());
    g.bench_function("fork_wait", |b| b.iter(|| expect_exit0("fork_wait", black_box(floor::fork_wait()))));
    report.singles.push(("clone_wait", "fork_wait".into()));
    for (name, set) in clone_configs() {
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        let mut cmd = nook_exit0(set);
        run_nook(&mut cmd);
        expect_exit0(name, floor::clone_wait(set));
        g.bench_with_input(BenchmarkId::new("nook", name), &set, |b, _| b.iter(|| run_nook(&mut cmd)));
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        g.bench_with_input(BenchmarkId::new("c_floor", name), &set, |b, &set| {
            b.iter(|| expect_exit0(name, black_box(floor::clone_wait(set))))
        });
        report.pair("clone_wait", name, format!("nook/{name}"), format!("c_floor/{name}"));
        if set.contains(NamespaceSet::NET) {
            settle();
        }
        report.interleave(|| run_nook(&mut cmd), || expect_exit0(name, floor::clone_wait(set)));
        // nook's vfork-style path (no hook): the child execs a missing file and exits 127
        // after reporting ENOENT, against C doing the same with clone(CLONE_VM|CLONE_VFORK).
        if name == "none" || set == BASE {
            let mut missing = Command::new(MISSING.to_str().expect("UTF-8"));
            missing.namespaces(set);
            run_nook_enoent(&mut missing);
            expect_status(name, floor::vfork_exec_wait(set, MISSING), 127 << 8);
            g.bench_with_input(BenchmarkId::new("nook_vfork", name), &set, |b, _| {
                b.iter(|| run_nook_enoent(&mut missing))
            });
            g.bench_with_input(BenchmarkId::new("c_vfork", name), &set, |b, &set| {
                b.iter(|| expect_status(name, black_box(floor::vfork_exec_wait(set, MISSING)), 127 << 8))
            });
            report.pair(
                "clone_wait",
                format!("{name}, vfork path (exec → ENOENT)"),
                format!("nook_vfork/{name}"),
                format!("c_vfork/{name}"),
            );
            report.interleave(
                || run_nook_enoent(&mut missing),
                || expect_status(name, floor::vfork_exec_wait(set, MISSING), 127 << 8),
            );
        }
    }
    g.finish();
}

/// A path that does not exist: exec fails with ENOENT.
const MISSING: &CStr = c"/nonexistent/nk-missing";

/// Runs a nook command whose exec must fail with ENOENT (the child is reaped by nook).
fn run_nook_enoent(cmd: &mut Command) {
    match cmd.status() {
        Err(nook_ns::Error::Spawn(e)) if e.stage == nook_ns::Stage::Exec && e.errno == libc::ENOENT => {}
        other => panic!("expected ENOENT at exec, got {other:?}"),
    }
}

/// The path naming the calling thread's namespace of `kind` in the form `setns` changes:
/// for pid and time that is the namespace for children.
fn own_ns_path(kind: Namespace) -> String {
    match kind {
        Namespace::Pid => "/proc/thread-self/ns/pid_for_children".into(),
        Namespace::Time => "/proc/thread-self/ns/time_for_children".into(),
        _ => format!("/proc/thread-self/ns/{}", kind.proc_name()),
    }
}

fn own_ns(kind: Namespace) -> NsFd {
    NsFd::open(own_ns_path(kind), kind).expect("open own namespace")
}

/// Group 2: setns into a holder's namespace and back: `NsGuard::enter` + drop, a pair of
/// `NsFd::enter` calls on already open fds, and the C floor (two `setns` calls).
///
/// Runs on criterion's (main) thread: entering a time namespace needs a single-threaded
/// process, and a mount namespace needs an unshared fs context (the first `NsGuard` does
/// `unshare(CLONE_FS)`, a no-op for a single-threaded process). This bench process does
/// nothing else, so moving its main thread for a few microseconds is harmless; `NsGuard`
/// aborts the process if it cannot come back. A raw `setns` into a mount namespace moves
/// the working directory to its root (`NsGuard` takes it back), so it is restored after
/// each kind. A user namespace cannot be left again (`setns` back into the parent user namespace
/// needs `CAP_SYS_ADMIN` there), so it is not measured.
fn setns_roundtrip(c: &mut Criterion, report: &mut Report) {
    let cwd = std::env::current_dir().expect("working directory");
    let mut holder = Command::new("/bin/sleep");
    holder.arg("infinity").namespaces(NamespaceSet::all().without(Namespace::User)).kill_with_parent(libc::SIGKILL);
    let mut child = holder.spawn().expect("spawn the namespace holder");
    child.kill_on_drop(true);
    settle();

    let mut g = c.benchmark_group("setns_roundtrip");
    for kind in [
        Namespace::Net,
        Namespace::Uts,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Cgroup,
        Namespace::Time,
        Namespace::Pid,
    ] {
        let name = kind.proc_name();
        let target = NsFd::of_pid(child.id(), kind).expect("open holder namespace");
        let orig = own_ns(kind);
        let before = orig.id().expect("id");
        assert_ne!(target.id().expect("id"), before, "{name}: the holder must be in its own namespace");
        {
            let _inside = NsGuard::enter(&target).expect("NsGuard::enter");
            assert_eq!(own_ns(kind).id().expect("id"), target.id().expect("id"), "{name}: entered");
        }
        assert_eq!(own_ns(kind).id().expect("id"), before, "{name}: came back");
        assert_eq!(std::env::current_dir().ok(), Some(cwd.clone()), "{name}: same working directory");
        let nstype = kind.clone_flag() as c_int;
        let (tfd, ofd) = (target.as_fd().as_raw_fd(), orig.as_fd().as_raw_fd());
        expect_exit0(name, floor::setns_roundtrip(tfd, ofd, nstype));

        g.bench_function(BenchmarkId::new("nook_guard", name), |b| {
            b.iter(|| drop(black_box(NsGuard::enter(&target).expect("NsGuard::enter"))))
        });
        g.bench_function(BenchmarkId::new("nook_nsfd", name), |b| {
            b.iter(|| {
                target.enter().expect("enter");
                orig.enter().expect("come back");
            })
        });
        g.bench_function(BenchmarkId::new("c_floor", name), |b| {
            b.iter(|| expect_exit0(name, black_box(floor::setns_roundtrip(tfd, ofd, nstype))))
        });
        assert_eq!(own_ns(kind).id().expect("id"), before, "{name}: came back after the bench");
        let c_floor = || expect_exit0(name, floor::setns_roundtrip(tfd, ofd, nstype));
        report.pair(
            "setns_roundtrip",
            format!("{name} (NsGuard)"),
            format!("nook_guard/{name}"),
            format!("c_floor/{name}"),
        );
        report.interleave(|| drop(NsGuard::enter(&target).expect("NsGuard::enter")), c_floor);
        report.pair(
            "setns_roundtrip",
            format!("{name} (NsFd::enter ×2)"),
            format!("nook_nsfd/{name}"),
            format!("c_floor/{name}"),
        );
        report.interleave(
            || {
                target.enter().expect("enter");
                orig.enter().expect("come back");
            },
            c_floor,
        );
        std::env::set_current_dir(&cwd).expect("restore the working directory");
    }
    g.finish();
    drop(child);
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_std(cmd: &mut std::process::Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?}: {status}");
}

/// Group 3: spawn `/bin/true` and wait: nook against `std::process::Command`, the C floor
/// (fork-style clone3 and vfork-style clone), `unshare -fpmiu` and (when installed) bwrap.
/// Rows without a user namespace take nook's vfork-style path; `+user` takes the
/// fork-semantics path with the sync point (the parent writes the id maps).
fn spawn_exec(c: &mut Criterion, report: &mut Report) {
    let mut g = slow_group(c, "spawn_exec");
    let base = "pid+mnt+ipc+uts";
    let user = "pid+mnt+ipc+uts+user";
    let base_user = BASE.union(NamespaceSet::USER);

    let mut std_cmd = std::process::Command::new("/bin/true");
    run_std(&mut std_cmd);
    g.bench_function(BenchmarkId::new("std_command", "none"), |b| b.iter(|| run_std(&mut std_cmd)));
    expect_exit0("fork_exec", floor::fork_exec_wait(TRUE));
    g.bench_function(BenchmarkId::new("c_fork_exec", "none"), |b| {
        b.iter(|| expect_exit0("fork_exec", black_box(floor::fork_exec_wait(TRUE))))
    });
    expect_exit0("vfork_exec", floor::vfork_exec_wait(NamespaceSet::new(), TRUE));
    g.bench_function(BenchmarkId::new("c_vfork", "none"), |b| {
        b.iter(|| expect_exit0("vfork_exec", black_box(floor::vfork_exec_wait(NamespaceSet::new(), TRUE))))
    });
    let mut nook_plain = Command::new("/bin/true");
    run_nook(&mut nook_plain);
    g.bench_function(BenchmarkId::new("nook", "none"), |b| b.iter(|| run_nook(&mut nook_plain)));

    let mut nook_ns = Command::new("/bin/true");
    nook_ns.namespaces(BASE);
    run_nook(&mut nook_ns);
    g.bench_function(BenchmarkId::new("nook", base), |b| b.iter(|| run_nook(&mut nook_ns)));
    expect_exit0("clone_exec", floor::clone_exec_wait(BASE, TRUE));
    g.bench_function(BenchmarkId::new("c_floor", base), |b| {
        b.iter(|| expect_exit0("clone_exec", black_box(floor::clone_exec_wait(BASE, TRUE))))
    });
    expect_exit0("vfork_exec", floor::vfork_exec_wait(BASE, TRUE));
    g.bench_function(BenchmarkId::new("c_vfork", base), |b| {
        b.iter(|| expect_exit0("vfork_exec", black_box(floor::vfork_exec_wait(BASE, TRUE))))
    });
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["-fpmiu", "/bin/true"]);
    run_std(&mut unshare);
    g.bench_function(BenchmarkId::new("unshare_fpmiu", base), |b| b.iter(|| run_std(&mut unshare)));
    let mut bwrap = have("bwrap").then(|| {
        let mut bwrap = std::process::Command::new("bwrap");
        bwrap.args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--bind", "/", "/", "/bin/true"]);
        run_std(&mut bwrap);
        bwrap
    });
    if let Some(bwrap) = bwrap.as_mut() {
        g.bench_function(BenchmarkId::new("bwrap", base), |b| b.iter(|| run_std(bwrap)));
    } else {
        eprintln!("spawn_exec: bwrap not installed, peer skipped");
    }

    let mut nook_user = Command::new("/bin/true");
    nook_user.namespaces(base_user);
    run_nook(&mut nook_user);
    g.bench_function(BenchmarkId::new("nook", user), |b| b.iter(|| run_nook(&mut nook_user)));
    expect_exit0("clone_exec", floor::clone_exec_wait(base_user, TRUE));
    g.bench_function(BenchmarkId::new("c_floor", user), |b| {
        b.iter(|| expect_exit0("clone_exec", black_box(floor::clone_exec_wait(base_user, TRUE))))
    });
    g.finish();

    let r = report;
    let base_c = || expect_exit0("clone_exec", floor::clone_exec_wait(BASE, TRUE));
    let base_v = || expect_exit0("vfork_exec", floor::vfork_exec_wait(BASE, TRUE));
    r.pair("spawn_exec", "nook vs std::process::Command (no namespaces)", "nook/none", "std_command/none");
    r.interleave(|| run_nook(&mut nook_plain), || run_std(&mut std_cmd));
    r.pair("spawn_exec", "nook vs C fork+exec (no namespaces)", "nook/none", "c_fork_exec/none");
    r.interleave(|| run_nook(&mut nook_plain), || expect_exit0("fork_exec", floor::fork_exec_wait(TRUE)));
    r.pair("spawn_exec", "nook vs C vfork+exec (no namespaces)", "nook/none", "c_vfork/none");
    r.interleave(
        || run_nook(&mut nook_plain),
        || expect_exit0("vfork_exec", floor::vfork_exec_wait(NamespaceSet::new(), TRUE)),
    );
    r.pair(
        "spawn_exec",
        format!("nook {base} vs std::process::Command (none)"),
        format!("nook/{base}"),
        "std_command/none",
    );
    r.interleave(|| run_nook(&mut nook_ns), || run_std(&mut std_cmd));
    r.pair(
        "spawn_exec",
        format!("nook {base} vs C clone3+exec {base}"),
        format!("nook/{base}"),
        format!("c_floor/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), base_c);
    r.pair(
        "spawn_exec",
        format!("nook {base} vs C vfork+exec {base}"),
        format!("nook/{base}"),
        format!("c_vfork/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), base_v);
    r.pair(
        "spawn_exec",
        format!("nook {base} vs unshare -fpmiu"),
        format!("nook/{base}"),
        format!("unshare_fpmiu/{base}"),
    );
    r.interleave(|| run_nook(&mut nook_ns), || run_std(&mut unshare));
    if let Some(bwrap) = bwrap.as_mut() {
        r.pair("spawn_exec", format!("nook {base} vs bwrap"), format!("nook/{base}"), format!("bwrap/{base}"));
        r.interleave(|| run_nook(&mut nook_ns), || run_std(bwrap));
    }
    r.pair(
        "spawn_exec",
        format!("nook {user} vs C clone3+exec {user}"),
        format!("nook/{user}"),
        format!("c_floor/{user}"),
    );
    r.interleave(|| run_nook(&mut nook_user), || expect_exit0("clone_exec", floor::clone_exec_wait(base_user, TRUE)));
}

/// The limits of the `cgroup` group: 64 MiB of memory, 64 tasks.
const CG_MEMORY: u64 = 64 << 20;
const CG_PIDS: u64 = 64;

fn cgroup_spec(name: &str) -> CgroupSpec {
    let mut spec = CgroupSpec::new(name);
    spec.resources.memory = Some(Memory { max: Some(CG_MEMORY), ..Memory::default() });
    spec.resources.pids = Some(Pids { max: Some(CG_PIDS) });
    spec
}

/// The limit file of the memory or pids controller in a directory of `version`, and the
/// value the `cgroup` group writes there.
fn cgroup_limit(controller: Controller, version: Version) -> (&'static str, String) {
    match (controller, version) {
        (Controller::Memory, Version::V1) => ("memory.limit_in_bytes", CG_MEMORY.to_string()),
        (Controller::Memory, Version::V2) => ("memory.max", CG_MEMORY.to_string()),
        _ => ("pids.max", CG_PIDS.to_string()),
    }
}

/// The C floor for "the same result": one directory `name` below this process's own cgroup
/// in the hierarchy of memory and in that of pids (one directory if they share it, as on
/// pure v2), and the two limit files.
fn cgroup_floor_same_result(h: &Hierarchies, name: &str) -> floor::Cgroup {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut writes = Vec::new();
    for controller in [Controller::Memory, Controller::Pids] {
        let location = h.require(controller).expect("memory and pids are available");
        let dir = location.hierarchy().own_dir().expect("own cgroup visible").join(name);
        let (file, value) = cgroup_limit(controller, location.version());
        writes.push((dir.join(file), value));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    floor::Cgroup::new(&dirs, &writes)
}

/// The C floor for "the same system calls as nook": every directory nook creates for
/// `spec` (on a hybrid host also the v2 one), in nook's order, taken from a nook cgroup
/// created and removed once, and the two limit files.
fn cgroup_floor_same_as_nook(h: &Hierarchies, spec: &CgroupSpec) -> floor::Cgroup {
    let cg = Cgroup::create_in(h.clone(), spec).expect("nook create_in");
    let dirs: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    let writes = [Controller::Memory, Controller::Pids].map(|controller| {
        let (dir, version) = cg.dir_of(controller).expect("created with memory and pids");
        let (file, value) = cgroup_limit(controller, version);
        (dir.join(file), value)
    });
    cg.remove().expect("nook remove");
    floor::Cgroup::new(&dirs, &writes)
}

/// Creates `spec` with nook once and checks what the kernel shows: both limits read back,
/// and no directory is left after `remove`.
fn check_nook_cgroup(h: &Hierarchies, spec: &CgroupSpec) {
    let cg = Cgroup::create_in(h.clone(), spec).expect("nook create_in");
    for controller in [Controller::Memory, Controller::Pids] {
        let (dir, version) = cg.dir_of(controller).expect("created with memory and pids");
        let (file, value) = cgroup_limit(controller, version);
        let read = std::fs::read_to_string(dir.join(file)).expect("read the limit back");
        assert_eq!(read.trim(), value, "{controller} limit in {}", dir.display());
    }
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    cg.remove().expect("nook remove");
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// Group 4: create a cgroup with memory and pids limits and delete it, below this process's
/// own cgroup. nook: `Cgroup::create_in` with hierarchies discovered once (cloned per
/// iteration, as `create_in` takes them by value), then `remove()`; also `Cgroup::create`
/// (discovery included) and, on a hybrid host, `create_in` with the v2 tree left out of the
/// hierarchies (the v1 directories only). Baselines: the C floor for the same result (the
/// memory and pids directories) and for the same system calls as nook (plus the v2
/// directory nook makes on hybrid hosts for freeze, kill and `CLONE_INTO_CGROUP`).
fn cgroup(c: &mut Criterion, report: &mut Report) {
    let h = match Hierarchies::discover() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cgroup: skipped, no cgroup hierarchies: {e}");
            return;
        }
    };
    // One name for each side, reused: every iteration removes what it created.
    let name = nook_testutil::unique_name("cgn");
    let c_name = nook_testutil::unique_name("cgc");
    let spec = cgroup_spec(&name);
    if let Err(e) = Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove) {
        eprintln!("cgroup: skipped, nook cannot create {name} here: {e}");
        return;
    }
    check_nook_cgroup(&h, &spec);
    let same_result = cgroup_floor_same_result(&h, &c_name);
    let same_syscalls = cgroup_floor_same_as_nook(&h, &cgroup_spec(&c_name));
    for floor in [&same_result, &same_syscalls] {
        expect_exit0("cgroup floor", floor.run());
        floor.assert_removed();
    }
    // On hybrid: the same hierarchies without the v2 tree (as on a pure v1 host), so nook
    // makes only the v1 directories of memory and pids, as the "same result" floor does.
    let v1_only = h.v2.is_some()
        && [Controller::Memory, Controller::Pids]
            .iter()
            .all(|&c| h.locate(c).is_some_and(|l| l.version() == Version::V1));
    let h_v1 = v1_only.then(|| Hierarchies { layout: Layout::V1, v2: None, ..h.clone() });

    let nook_in = || Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove).expect("nook create_in + remove");
    let nook_create = || Cgroup::create(&spec).and_then(Cgroup::remove).expect("nook create + remove");
    let nook_v1 = |h: &Hierarchies| {
        Cgroup::create_in(h.clone(), &spec).and_then(Cgroup::remove).expect("nook create_in (v1 only) + remove")
    };
    let c_same_result = || expect_exit0("c_same_result", black_box(same_result.run()));
    let c_same_syscalls = || expect_exit0("c_same_syscalls", black_box(same_syscalls.run()));

    let mut g = slow_group(c, "cgroup");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    g.bench_function("nook_create_in", |b| b.iter(nook_in));
    g.bench_function("nook_create", |b| b.iter(nook_create));
    if let Some(h_v1) = &h_v1 {
        g.bench_function("nook_create_in_v1_only", |b| b.iter(|| nook_v1(h_v1)));
    }
    g.bench_function("c_same_result", |b| b.iter(c_same_result));
    g.bench_function("c_same_syscalls", |b| b.iter(c_same_syscalls));
    g.bench_function("hierarchies_discover", |b| b.iter(|| black_box(Hierarchies::discover().expect("discover"))));
    g.finish();
    report.singles.push(("cgroup", "hierarchies_discover".into()));

    let r = report;
    r.pair("cgroup", "create_in + remove vs C, same result", "nook_create_in", "c_same_result");
    r.interleave(nook_in, c_same_result);
    r.pair("cgroup", "create_in + remove vs C, same syscalls as nook", "nook_create_in", "c_same_syscalls");
    r.interleave(nook_in, c_same_syscalls);
    r.pair("cgroup", "create (discovery included) + remove vs C, same result", "nook_create", "c_same_result");
    r.interleave(nook_create, c_same_result);
    if let Some(h_v1) = &h_v1 {
        r.pair(
            "cgroup",
            "create_in without the v2 tree + remove vs C, same result",
            "nook_create_in_v1_only",
            "c_same_result",
        );
        r.interleave(|| nook_v1(h_v1), c_same_result);
    }
    for floor in [&same_result, &same_syscalls] {
        floor.assert_removed();
    }
}

/// The groups of this harness, in the order they run.
const GROUPS: [&str; 7] = ["clone_wait", "setns_roundtrip", "spawn_exec", "cgroup", "netmodel", "unionfs", "sandbox"];

/// criterion's positional arguments (its benchmark filters).
fn filters() -> Vec<String> {
    const TAKES_VALUE: [&str; 19] = [
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            out.push(arg);
        }
    }
    out
}

/// Whether to run `group`. A filter that starts with a group's name (`cgroup`,
/// `^spawn_exec/`, `clone_wait/nook/pid`) selects that group, and then only the groups so
/// named run: the others' setup, pauses and interleaved ratios are skipped too. Any other
/// filter, or none, runs every group and leaves the choice to criterion.
fn selected(group: &str) -> bool {
    let named: Vec<&str> = filters()
        .iter()
        .flat_map(|f| GROUPS.into_iter().filter(move |g| f.trim_start_matches('^').starts_with(g)))
        .collect();
    named.is_empty() || named.contains(&group)
}

/// Where criterion keeps its results (the same rules criterion follows), made absolute
/// while the working directory is still the package root.
fn criterion_dir() -> PathBuf {
    let dir = if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("criterion")
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The median (ns) of benchmark `id` of `group`, if it was measured in this run.
fn median_ns(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    // A `BenchmarkId` with a parameter nests (`id/param`); a plain name with a `/` is flattened.
    let nested = dir.join(group).join(id).join("new/estimates.json");
    let path =
        if nested.exists() { nested } else { dir.join(group).join(id.replace('/', "_")).join("new/estimates.json") };
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Prints the medians of this run as Markdown tables.
fn print_summary(report: &Report, dir: &Path, since: SystemTime) {
    println!("\n## Summary (medians of this run)\n");
    println!("nook / baseline: ratio of the criterion medians. interleaved: the median ratio of");
    println!("15 alternating rounds of both (robust against load changing between benchmarks).\n");
    let mut groups: Vec<&str> = report.pairs.iter().map(|p| p.group).collect();
    groups.dedup();
    for group in groups {
        println!(
            "### {group}\n\n| case | nook | baseline | nook / baseline | interleaved |\n|---|---:|---:|---:|---:|"
        );
        for p in report.pairs.iter().filter(|p| p.group == group) {
            let (Some(n), Some(b)) = (median_ns(dir, group, &p.nook, since), median_ns(dir, group, &p.base, since))
            else {
                continue;
            };
            println!(
                "| {} | {} | {} | {:.2}× | {} |",
                p.row,
                fmt_ns(n),
                fmt_ns(b),
                n / b,
                p.interleaved.map_or(String::new(), |r| format!("{r:.2}×"))
            );
        }
        for (g, id) in report.singles.iter().filter(|(g, _)| *g == group) {
            if let Some(m) = median_ns(dir, g, id, since) {
                if id.ends_with("/nook") {
                    println!("| {id} | {} | | | |", fmt_ns(m));
                } else {
                    println!("| {id} (baseline only) | | {} | | |", fmt_ns(m));
                }
            }
        }
        println!();
    }
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the nook benchmarks create namespaces and cgroups and need root");
        return;
    }
    let since = SystemTime::now();
    let results = criterion_dir();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut report = Report::default();
    if selected("clone_wait") {
        clone_wait(&mut c, &mut report);
    }
    if selected("setns_roundtrip") {
        setns_roundtrip(&mut c, &mut report);
    }
    if selected("spawn_exec") {
        spawn_exec(&mut c, &mut report);
    }
    if selected("cgroup") {
        cgroup(&mut c, &mut report);
    }
    if selected("netmodel") {
        net::netmodel(&mut c, &mut report);
    }
    if selected("unionfs") {
        layers::unionfs(&mut c, &mut report);
    }
    if selected("sandbox") {
        sandbox::sandbox(&mut c, &mut report);
    }
    c.final_summary();
    if bench_mode() {
        print_summary(&report, &results, since);
    }
}
