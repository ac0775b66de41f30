//! Device access control on the real kernel: the v1 `devices` controller and the cgroup v2
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, each proven by a child placed in the cgroup that
//! opens and creates device nodes and gets `EPERM` (or not) from the kernel. The v2 tests run
//! on this hybrid host (its cgroup2 tree takes device programs although `devices` is on v1:
//! the tests hand `Cgroup::create_in` the hierarchies without the v1 one) and unchanged on a
//! pure cgroup v2 kernel.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nook_cgroup::{
    Cgroup, CgroupSpec, Controller, DeviceAccess, DeviceKind, DevicePolicy, DeviceRule, Error, Hierarchies, Layout,
    Resources, ValidationError, Version,
};
use nook_ns::{Command, Stdio};
use nook_testutil::{TempDir, on_private_mount_ns, require_root, unique_name};

const R: DeviceAccess = DeviceAccess::READ;
const W: DeviceAccess = DeviceAccess::WRITE;
const M: DeviceAccess = DeviceAccess::MKNOD;
const RW: DeviceAccess = DeviceAccess::READ.union(DeviceAccess::WRITE);
const RWM: DeviceAccess = DeviceAccess::all();

/// Held by every test that loads BPF programs, so the fd-leak test can count this process's
/// program fds without other tests' programs coming and going.
static BPF_PROGRAMS: Mutex<()> = Mutex::new(());

fn bpf_lock() -> MutexGuard<'static, ()> {
    BPF_PROGRAMS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn rule(allow: bool, kind: DeviceKind, major: Option<u32>, minor: Option<u32>, access: DeviceAccess) -> DeviceRule {
    DeviceRule { allow, kind, major, minor, access }
}

fn devices_spec(policy: DevicePolicy) -> CgroupSpec {
    let mut spec = CgroupSpec::new(unique_name("dev"));
    spec.resources.devices = Some(policy);
    spec
}

fn devices_only(policy: DevicePolicy) -> Resources {
    let mut r = Resources::new();
    r.devices = Some(policy);
    r
}

/// The host's hierarchies with devices managed through cgroup v2: on a hybrid host the v1
/// `devices` hierarchy is left out, so `Cgroup` takes the path it takes on a pure v2 host.
/// `None` (with a printed skip) where no cgroup2 tree is mounted.
fn bpf_hierarchies(test: &str) -> Option<Hierarchies> {
    let mut h = Hierarchies::discover().expect("discover cgroup hierarchies");
    if h.v2.is_none() {
        eprintln!("SKIPPED {test}: no cgroup2 hierarchy is mounted (pure cgroup v1 host)");
        return None;
    }
    h.v1.retain(|x| !x.has("devices"));
    if h.v1.is_empty() {
        h.layout = Layout::V2;
    }
    Some(h)
}

/// Creates the cgroup on the BPF path and checks it really is the v2 directory.
fn create_bpf(h: Hierarchies, policy: DevicePolicy) -> Cgroup {
    let cg = Cgroup::create_in(h, &devices_spec(policy)).expect("create the cgroup with a device program");
    assert_eq!(cg.dir_of(Controller::Devices).map(|(_, v)| v), Some(Version::V2));
    cg
}

/// What a probe does to a device.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `open(O_RDONLY)`
    Read,
    /// `open(O_WRONLY)`
    Write,
    /// `open(O_RDWR)`: one check asking for read and write together.
    ReadWrite,
    /// `mknod`
    Mknod,
}

impl Op {
    const ALL: [Op; 4] = [Op::Read, Op::Write, Op::ReadWrite, Op::Mknod];

    fn access(self) -> DeviceAccess {
        match self {
            Op::Read => R,
            Op::Write => W,
            Op::ReadWrite => RW,
            Op::Mknod => M,
        }
    }
}

/// One access to try: `op` on device `kind major:minor`.
#[derive(Clone, Copy, Debug)]
struct Probe {
    kind: DeviceKind,
    major: u32,
    minor: u32,
    op: Op,
}

/// How the kernel answered one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The call succeeded.
    Done,
    /// `EPERM`: the device controller refused.
    Eperm,
    /// Another error after the device check passed (e.g. `ENXIO`: no driver behind the
    /// node), with the shell's message.
    OtherError(String),
}

impl Outcome {
    fn allowed(&self) -> bool {
        *self != Outcome::Eperm
    }
}

/// Runs one child in `cg` that performs `ops` (a shell line each, e.g. `true < /dev/null`)
/// and reports how each ended. The child is placed while paused, so everything it does
/// after exec is under the cgroup's rules; it is reaped before this returns (and killed if
/// the test panics first).
fn run_in(cg: &Cgroup, ops: &[String]) -> Vec<Outcome> {
    let mut script = String::from(
        "set -f\n\
         v() { if out=$( { eval \"$1\"; } 2>&1 ); then echo done; else echo err $out; fi; }\n",
    );
    for op in ops {
        script.push_str(&format!("v '{op}'\n"));
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script]).env("LC_ALL", "C").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut paused = cmd.spawn_paused().expect("spawn the probe child");
    paused.kill_on_drop(true);
    cg.add_pid(paused.id()).expect("put the probe child in the cgroup");
    let out = paused.resume().expect("start the probe child").wait_with_output().expect("wait for the probe child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<Outcome> = stdout
        .lines()
        .map(|l| match l.strip_prefix("err").map(str::trim) {
            None if l == "done" => Outcome::Done,
            Some(msg) if msg.contains("Operation not permitted") => Outcome::Eperm,
            Some(msg) => Outcome::OtherError(msg.to_owned()),
            None => panic!("unexpected probe output line {l:?}"),
        })
        .collect();
    assert_eq!(outcomes.len(), ops.len(), "one line per probe:\n{stdout}");
    outcomes
}

fn open_op(path: &Path, op: Op) -> String {
    let p = path.display();
    match op {
        Op::Read => format!("true < {p}"),
        Op::Write => format!("true > {p}"),
        Op::ReadWrite => format!("true <> {p}"),
        Op::Mknod => unreachable!("mknod makes its own node"),
    }
}

/// The device node for `kind major:minor` in `dir`, made (as root, outside the cgroup) if
/// missing. `dir` must be on a filesystem mounted without `nodev`.
fn node(dir: &Path, kind: DeviceKind, major: u32, minor: u32) -> PathBuf {
    let (letter, mode) = match kind {
        DeviceKind::Char => ('c', rustix::fs::FileType::CharacterDevice),
        DeviceKind::Block => ('b', rustix::fs::FileType::BlockDevice),
        DeviceKind::All => unreachable!("a node is a char or block device"),
    };
    let path = dir.join(format!("{letter}{major}_{minor}"));
    if !path.exists() {
        let dev = rustix::fs::makedev(major, minor);
        let r = rustix::fs::mknodat(rustix::fs::CWD, &path, mode, rustix::fs::Mode::from_raw_mode(0o666), dev);
        assert_eq!(r, Ok(()), "mknod {}", path.display());
    }
    path
}

/// Tries every probe from a child in `cg`: opens go to nodes made in `dir`, mknods create
/// (and remove) fresh nodes there.
fn kernel_outcomes(cg: &Cgroup, dir: &Path, probes: &[Probe]) -> Vec<Outcome> {
    let ops: Vec<String> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| match p.op {
            Op::Mknod => {
                let letter = if p.kind == DeviceKind::Block { 'b' } else { 'c' };
                let path = dir.join(format!("made{i}"));
                format!("mknod {} {letter} {} {} && rm {}", path.display(), p.major, p.minor, path.display())
            }
            op => open_op(&node(dir, p.kind, p.major, p.minor), op),
        })
        .collect();
    run_in(cg, &ops)
}

/// Runs `f` with a fresh directory for device nodes: a tmpfs mounted without `nodev` (so
/// opening the nodes reaches the device check) in a private mount namespace, which children
/// spawned from `f` share and which disappears with it.
fn with_node_dir<T: Send>(f: impl FnOnce(&Path) -> T + Send) -> T {
    on_private_mount_ns(|| {
        let dir = TempDir::new("dev").expect("temp dir");
        let r = rustix::mount::mount("nk-dev", dir.path(), "tmpfs", rustix::mount::MountFlags::NOSUID, c"mode=755");
        assert_eq!(r, Ok(()), "mount tmpfs on {}", dir.path().display());
        f(dir.path())
    })
}

/// The probes of the table tests: read, write, read+write and mknod on /dev/null, /dev/zero
/// and /dev/full (char 1:3, 1:5, 1:7) and on two block devices of a local/experimental
/// major no driver claims (opens that pass the device check end in `ENXIO`).
fn table_probes() -> Vec<Probe> {
    let devices = [
        (DeviceKind::Char, 1, 3),
        (DeviceKind::Char, 1, 5),
        (DeviceKind::Char, 1, 7),
        (DeviceKind::Block, 60, 0),
        (DeviceKind::Block, 60, 1),
    ];
    devices
        .into_iter()
        .flat_map(|(kind, major, minor)| Op::ALL.into_iter().map(move |op| Probe { kind, major, minor, op }))
        .collect()
}

/// Applies nothing itself: compares what the kernel did for each probe with
/// `DevicePolicy::permits`, and says which differ.
#[track_caller]
fn assert_kernel_agrees(policy: &DevicePolicy, probes: &[Probe], outcomes: &[Outcome]) {
    let mismatches: Vec<String> = probes
        .iter()
        .zip(outcomes)
        .filter(|(p, o)| policy.permits(p.kind, p.major, p.minor, p.op.access()) != o.allowed())
        .map(|(p, o)| {
            let want = policy.permits(p.kind, p.major, p.minor, p.op.access());
            format!("{:?} {}:{} {:?}: kernel {o:?}, permits says {want}", p.kind, p.major, p.minor, p.op)
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "kernel and DevicePolicy::permits disagree under {policy:?}:\n{}",
        mismatches.join("\n")
    );
    // Past the device check only a missing driver may fail an open (not, say, EACCES).
    for (p, o) in probes.iter().zip(outcomes) {
        if let Outcome::OtherError(msg) = o {
            assert!(msg.contains("No such device or address"), "{p:?} failed unexpectedly: {msg}");
        }
    }
    assert!(outcomes.contains(&Outcome::Eperm), "the policy denies something: {outcomes:?}");
    assert!(outcomes.iter().any(Outcome::allowed), "the policy allows something: {outcomes:?}");
}

/// The program fds this process holds (`anon_inode:bpf-prog`), each with its fdinfo.
fn bpf_program_fds() -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").flatten() {
        if fs::read_link(entry.path()).is_ok_and(|l| l == Path::new("anon_inode:bpf-prog")) {
            let info = fs::read_to_string(Path::new("/proc/self/fdinfo").join(entry.file_name())).unwrap_or_default();
            found.push(info);
        }
    }
    found
}

#[test]
fn v1_devices_list_denies_dev_null_and_keeps_dev_zero_where_mounted() {
    require_root!();
    let h = Hierarchies::discover().expect("discover");
    if !h.v1.iter().any(|x| x.has("devices")) {
        eprintln!(
            "SKIPPED v1_devices_list_denies_dev_null_and_keeps_dev_zero_where_mounted: no v1 devices hierarchy \
             (layout {:?})",
            h.layout
        );
        return;
    }
    // Deny by default; /dev/zero read-write; /dev/null all, then its read-write taken back.
    let policy = DevicePolicy::deny_by_default(vec![
        DeviceRule::allow_char(1, 5, RW),
        DeviceRule::allow_char(1, 3, RWM),
        DeviceRule::deny_char(1, 3, RW),
    ]);
    with_node_dir(|dir| {
        let cg = Cgroup::create(&devices_spec(policy.clone())).expect("create");
        let (v1_dir, version) = cg.dir_of(Controller::Devices).expect("a devices directory");
        assert_eq!(version, Version::V1);
        let list = fs::read_to_string(v1_dir.join("devices.list")).expect("read devices.list");
        let mut lines: Vec<&str> = list.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["c 1:3 m", "c 1:5 rw"], "devices.list:\n{list}");

        let ops =
            ["echo x > /dev/null", "true < /dev/null", "echo x > /dev/zero", "true <> /dev/zero"].map(String::from);
        assert_eq!(run_in(&cg, &ops), [Outcome::Eperm, Outcome::Eperm, Outcome::Done, Outcome::Done]);

        let probes: Vec<Probe> = [(3, Op::Mknod), (5, Op::Mknod), (5, Op::ReadWrite), (7, Op::Read)]
            .into_iter()
            .map(|(minor, op)| Probe { kind: DeviceKind::Char, major: 1, minor, op })
            .collect();
        let outcomes = kernel_outcomes(&cg, dir, &probes);
        assert_kernel_agrees(&policy, &probes, &outcomes);
        cg.remove().expect("remove");
    });
}

#[test]
fn bpf_program_denies_dev_null_and_update_replaces_it_on_cgroup2() {
    require_root!();
    let Some(h) = bpf_hierarchies("bpf_program_denies_dev_null_and_update_replaces_it_on_cgroup2") else { return };
    let _lock = bpf_lock();
    let ops = ["echo x > /dev/null", "true < /dev/null", "true <> /dev/zero", "echo x > /dev/zero"].map(String::from);

    let mut cg = create_bpf(h, DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 3, RW)]));
    let dir = cg.v2_dir().expect("v2 directory").to_owned();
    assert_eq!(run_in(&cg, &ops), [Outcome::Eperm, Outcome::Eperm, Outcome::Done, Outcome::Done]);

    // The new program replaces the old one: were both attached, /dev/null would stay denied.
    cg.update(&devices_only(DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 5, W)]))).expect("update");
    assert_eq!(run_in(&cg, &ops), [Outcome::Done, Outcome::Done, Outcome::Eperm, Outcome::Eperm]);

    // A malformed update is refused before the kernel sees it; the program in force stays.
    let bad = DevicePolicy::allow_by_default(vec![rule(false, DeviceKind::Char, None, Some(3), RW)]);
    match cg.update(&devices_only(bad)) {
        Err(Error::Invalid(ValidationError::Malformed { field: "devices", .. })) => {}
        other => panic!("malformed update: {other:?}"),
    }
    assert_eq!(run_in(&cg, &ops), [Outcome::Done, Outcome::Done, Outcome::Eperm, Outcome::Eperm]);

    cg.remove().expect("remove");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn bpf_verdicts_match_device_policy_permits_on_cgroup2() {
    require_root!();
    let Some(h) = bpf_hierarchies("bpf_verdicts_match_device_policy_permits_on_cgroup2") else { return };
    let _lock = bpf_lock();
    let policies = [
        // Per access type: O_RDWR of /dev/null is refused by a write-only deny.
        DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 3, W)]),
        // Container-like: mknod anything, rw on char major 1 except writing /dev/full, read b 60:0.
        DevicePolicy::deny_by_default(vec![
            rule(true, DeviceKind::Char, None, None, M),
            rule(true, DeviceKind::Block, None, None, M),
            rule(true, DeviceKind::Char, Some(1), None, RW),
            DeviceRule::deny_char(1, 7, W),
            rule(true, DeviceKind::Block, Some(60), Some(0), R),
        ]),
        // Rules for all devices, overridden by later, narrower ones.
        DevicePolicy::allow_by_default(vec![
            rule(false, DeviceKind::All, None, None, M),
            rule(true, DeviceKind::Block, Some(60), Some(0), M),
            rule(false, DeviceKind::Block, Some(60), None, RW),
            rule(true, DeviceKind::Block, Some(60), Some(1), W),
        ]),
        // Read and write allowed by different rules; a later deny takes read back.
        DevicePolicy::deny_by_default(vec![
            rule(true, DeviceKind::Char, Some(1), None, R),
            DeviceRule::allow_char(1, 3, W),
            rule(true, DeviceKind::Block, Some(60), Some(1), RWM),
            rule(false, DeviceKind::Block, Some(60), Some(1), R),
        ]),
    ];
    let probes = table_probes();
    with_node_dir(|dir| {
        // One cgroup, every policy after the first applied by update: each check also proves
        // the previous program is gone.
        let mut cg = create_bpf(h, policies[0].clone());
        for (i, policy) in policies.iter().enumerate() {
            if i > 0 {
                cg.update(&devices_only(policy.clone())).expect("update the device policy");
            }
            let outcomes = kernel_outcomes(&cg, dir, &probes);
            assert_kernel_agrees(policy, &probes, &outcomes);
        }
        cg.remove().expect("remove");
    });
}

/// The ids of the programs behind `fds` (`bpf_program_fds`), sorted, without repeats.
fn program_ids(fds: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = fds
        .iter()
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|v| v.trim().parse().ok()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[test]
fn bpf_program_fds_are_closed_on_update_and_removal_on_cgroup2() {
    require_root!();
    let Some(h) = bpf_hierarchies("bpf_program_fds_are_closed_on_update_and_removal_on_cgroup2") else { return };
    let _lock = bpf_lock();
    let before = bpf_program_fds().len();
    // A policy no other test uses: its program is not loaded yet.
    let policy = DevicePolicy::deny_by_default(vec![DeviceRule::allow_char(1, 3, RW), DeviceRule::allow_char(1, 9, R)]);

    let mut cg = create_bpf(h.clone(), policy.clone());
    let held = bpf_program_fds();
    assert_eq!(held.len(), before + 2, "the handle holds its program, and the process keeps it for the next cgroup");
    assert!(held.iter().any(|info| info.contains("prog_type:\t15")), "a cgroup device program:\n{held:?}");

    for minor in [5, 7] {
        cg.update(&devices_only(DevicePolicy::deny_by_default(vec![DeviceRule::allow_char(1, minor, RW)])))
            .expect("update");
        assert_eq!(bpf_program_fds().len(), before + 2, "the replaced program's fd is closed");
    }
    drop(cg);
    assert_eq!(bpf_program_fds().len(), before + 1, "dropping the cgroup closes its program fd (the kept one stays)");

    // The kept program is what the next cgroup with the policy gets: no new one is loaded.
    let cg = create_bpf(h, policy);
    assert_eq!(bpf_program_fds().len(), before + 2);
    drop(cg);
    assert_eq!(bpf_program_fds().len(), before + 1);
}

#[test]
fn a_policy_is_loaded_once_and_shared_until_a_cgroup_updates_on_cgroup2() {
    require_root!();
    let Some(h) = bpf_hierarchies("a_policy_is_loaded_once_and_shared_until_a_cgroup_updates_on_cgroup2") else {
        return;
    };
    let _lock = bpf_lock();
    let ids_before = program_ids(&bpf_program_fds());
    let ops = ["echo x > /dev/null", "echo x > /dev/zero"].map(String::from);
    let policy = DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 3, W), DeviceRule::deny_char(1, 4, W)]);

    let mut first = create_bpf(h.clone(), policy.clone());
    let second = create_bpf(h, policy);
    let new_ids: Vec<u32> = program_ids(&bpf_program_fds()).into_iter().filter(|id| !ids_before.contains(id)).collect();
    assert_eq!(new_ids.len(), 1, "both cgroups have the one program loaded for the policy: {new_ids:?}");
    assert_eq!(run_in(&first, &ops), [Outcome::Eperm, Outcome::Done]);
    assert_eq!(run_in(&second, &ops), [Outcome::Eperm, Outcome::Done]);

    // An update replaces the program in that cgroup only.
    first.update(&devices_only(DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 5, W)]))).expect("update");
    assert_eq!(run_in(&first, &ops), [Outcome::Done, Outcome::Eperm]);
    assert_eq!(run_in(&second, &ops), [Outcome::Eperm, Outcome::Done], "the other cgroup keeps the shared program");
    first.remove().expect("remove");
    assert_eq!(run_in(&second, &ops), [Outcome::Eperm, Outcome::Done]);
    second.remove().expect("remove");
}

#[test]
fn malformed_device_rules_are_rejected_before_any_directory_exists() {
    require_root!();
    let malformed = [
        rule(true, DeviceKind::Char, Some(1), Some(3), DeviceAccess::empty()),
        rule(false, DeviceKind::All, Some(1), None, R),
        rule(true, DeviceKind::Block, None, Some(0), RW),
    ];
    let discovered = Hierarchies::discover().expect("discover");
    let layouts =
        [Some(discovered), bpf_hierarchies("malformed_device_rules_are_rejected_before_any_directory_exists")];
    for h in layouts.into_iter().flatten() {
        for bad in malformed {
            let spec = devices_spec(DevicePolicy::deny_by_default(vec![DeviceRule::allow_char(1, 5, RW), bad]));
            match Cgroup::create_in(h.clone(), &spec) {
                Err(Error::Invalid(ValidationError::Malformed { field: "devices", value, .. })) => {
                    assert_eq!(value, bad.to_string(), "the error names the rule");
                }
                other => panic!("{bad}: expected a validation error, got {other:?}"),
            }
            for x in h.v1.iter().chain(h.v2.as_ref()) {
                let dir = x.own_dir().expect("own cgroup visible").join(&spec.name);
                assert!(!dir.exists(), "{} was created for an invalid spec", dir.display());
            }
        }
    }
}
