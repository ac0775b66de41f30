//! Hardening steps of the spawn core, seen from inside: capability sets, no_new_privs,
//! rlimits, oom_score_adj, umask, Landlock, seccomp (errno and user notification), and a
//! failing step that stops the spawn before anything ran.

use std::fs;
use std::process::Output;

use nook_ns::landlock::{AccessFs, Ruleset};
use nook_ns::seccomp::SeccompProgram;
use nook_ns::{CapSet, Capabilities, Capability, Command, Error, Namespace, NamespaceSet, Resource, Stage};
use nook_testutil::{TempDir, require_root, success_stdout};

// Classic BPF, as `linux/filter.h` and `linux/seccomp.h` spell it.
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH_OFFSET: u32 = 4;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A filter returning `action` for the syscalls in `nrs` and allowing everything else; a
/// foreign architecture is killed.
pub(crate) fn filter(nrs: &[libc::c_long], action: u32) -> SeccompProgram {
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        insn(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, 0),
    ];
    for (i, &nr) in nrs.iter().enumerate() {
        // Jump to the action (after the remaining comparisons and the allow) on a match.
        let left = (nrs.len() - i - 1) as u8;
        p.push(insn(BPF_JEQ_K, left + 1, 0, nr as u32));
    }
    p.push(insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    p.push(insn(BPF_RET_K, 0, 0, action));
    SeccompProgram::new(p)
}

fn mkdir_denied() -> SeccompProgram {
    #[cfg(target_arch = "x86_64")]
    let nrs = [libc::SYS_mkdir, libc::SYS_mkdirat];
    #[cfg(not(target_arch = "x86_64"))]
    let nrs = [libc::SYS_mkdirat];
    filter(&nrs, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)
}

fn out(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// `(CapEff, CapPrm, CapBnd, CapAmb, CapInh)` of the program, from its `/proc/self/status`.
fn caps_inside(cmd: &mut Command) -> [u64; 5] {
    caps_of(&success_stdout(out(cmd.args(["/proc/self/status"]))))
}

/// The capability sets in a `/proc/PID/status` text.
fn caps_of(text: &str) -> [u64; 5] {
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    [field("CapEff:"), field("CapPrm:"), field("CapBnd:"), field("CapAmb:"), field("CapInh:")]
}

#[test]
fn root_gets_exactly_the_bounding_set() {
    require_root!();
    let set = CapSet::EMPTY.with(Capability::Chown).with(Capability::Kill).with(Capability::NetBindService);
    let mut cmd = Command::new("/bin/cat");
    cmd.unshare(Namespace::Uts).capabilities(Capabilities::only(set));
    let [eff, prm, bnd, amb, inh] = caps_inside(&mut cmd);
    assert_eq!((eff, prm, bnd, amb, inh), (set.bits(), set.bits(), set.bits(), 0, 0));

    // The same in a new user namespace (root there), with a fresh bounding set.
    let mut cmd = Command::new("/bin/cat");
    cmd.namespaces(NamespaceSet::new().with(Namespace::User).with(Namespace::Pid))
        .capabilities(Capabilities::only(set));
    let [eff, _, bnd, _, _] = caps_inside(&mut cmd);
    assert_eq!((eff, bnd), (set.bits(), set.bits()));

    // Without the step, the child keeps what the test process has: the check can tell.
    let [eff, ..] = caps_inside(Command::new("/bin/cat").unshare(Namespace::Uts));
    let [ours, ..] = caps_of(&fs::read_to_string("/proc/self/status").unwrap());
    assert_ne!(eff, set.bits());
    assert_eq!(eff, ours);
}

#[test]
fn a_non_root_user_keeps_only_its_ambient_capabilities() {
    require_root!();
    let set = CapSet::EMPTY.with(Capability::NetBindService).with(Capability::Chown);
    let ambient = CapSet::EMPTY.with(Capability::NetBindService);
    let mut cmd = Command::new("/bin/cat");
    cmd.unshare(Namespace::Uts).user(65534, 65534).capabilities(Capabilities::only(set).with_ambient(ambient));
    let [eff, prm, bnd, amb, _] = caps_inside(&mut cmd);
    assert_eq!((eff, prm, bnd, amb), (ambient.bits(), ambient.bits(), set.bits(), ambient.bits()));

    // No ambient set: nothing at all after exec.
    let mut cmd = Command::new("/bin/cat");
    cmd.unshare(Namespace::Uts).user(65534, 65534).capabilities(Capabilities::only(set));
    let [eff, prm, bnd, amb, _] = caps_inside(&mut cmd);
    assert_eq!((eff, prm, bnd, amb), (0, 0, set.bits(), 0));
}

/// CVE-2022-24769's shape: a program running as another uid must not gain a capability by
/// executing a file whose *inheritable* file capabilities name it — which it does when the
/// process's inheritable set holds it (the new permitted set takes `pI & fI`). The sets nook
/// gives leave the inheritable set empty, so the file gives nothing.
#[test]
fn a_file_with_inheritable_capabilities_gives_a_non_root_user_nothing() {
    require_root!();
    let dir = TempDir::new("inh").unwrap();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let prog = dir.path().join("cat");
    fs::copy("/bin/cat", &prog).unwrap();
    fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // struct vfs_cap_data, revision 2, effective flag: permitted 0, inheritable CAP_CHOWN.
    let chown = 1u32 << (Capability::Chown as u32);
    let mut xattr = Vec::new();
    for word in [0x0200_0000u32 | 1, 0, chown, 0, 0] {
        xattr.extend_from_slice(&word.to_le_bytes());
    }
    let path = std::ffi::CString::new(prog.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path, name and a buffer of the length passed.
    let rc = unsafe {
        libc::setxattr(path.as_ptr(), c"security.capability".as_ptr(), xattr.as_ptr().cast(), xattr.len(), 0)
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());

    let set = CapSet::EMPTY.with(Capability::Chown).with(Capability::Kill);
    let mut cmd = Command::new(&prog);
    cmd.unshare(Namespace::Uts).user(65534, 65534).capabilities(Capabilities::only(set));
    let [eff, prm, _, amb, inh] = caps_inside(&mut cmd);
    assert_eq!((eff, prm, amb, inh), (0, 0, 0, 0), "the file's inheritable CAP_CHOWN must give nothing");

    // Control: with CAP_CHOWN inheritable the same file does give it (the test can tell).
    let mut caps = Capabilities::only(set);
    caps.inheritable = set;
    let mut cmd = Command::new(&prog);
    cmd.unshare(Namespace::Uts).user(65534, 65534).capabilities(caps);
    let [eff, prm, ..] = caps_inside(&mut cmd);
    assert_eq!((eff, prm), (u64::from(chown), u64::from(chown)), "control: pI & fI reaches the permitted set");
}

#[test]
fn capabilities_the_kernel_lacks_or_that_do_not_nest_are_refused_before_spawning() {
    let mut cmd = Command::new("/bin/true");
    cmd.capabilities(Capabilities::only(CapSet::from_bits(1 << 63)));
    assert!(matches!(
        cmd.validate(),
        Err(nook_ns::ValidationError::UnknownCapability { set: "bounding", number: 63, .. })
    ));
    let mut caps = Capabilities::only(CapSet::EMPTY.with(Capability::Chown));
    caps.ambient = CapSet::EMPTY.with(Capability::Kill);
    cmd.capabilities(caps);
    assert!(matches!(cmd.validate(), Err(nook_ns::ValidationError::CapabilitySets { set: "ambient", .. })));
}

#[test]
fn no_new_privs_is_visible_inside() {
    require_root!();
    let text =
        success_stdout(out(Command::new("/bin/grep").args(["NoNewPrivs", "/proc/self/status"]).no_new_privs(true)));
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "1"]);
    let text = success_stdout(out(Command::new("/bin/grep").args(["NoNewPrivs", "/proc/self/status"])));
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "0"]);
}

#[test]
fn rlimits_oom_score_adj_and_umask_apply() {
    require_root!();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "ulimit -Sn; ulimit -Hn; ulimit -Sc; cat /proc/self/oom_score_adj; umask"])
        .namespaces(NamespaceSet::new().with(Namespace::User).with(Namespace::Pid))
        .rlimit(Resource::Nofile, 32, 64)
        .rlimit(Resource::Core, 0, 0)
        .oom_score_adj(500)
        .umask(0o027);
    let text = success_stdout(out(&mut cmd));
    assert_eq!(text.lines().collect::<Vec<_>>(), ["32", "64", "0", "500", "0027"], "{text}");

    assert!(matches!(
        Command::new("/bin/true").rlimit(Resource::Nofile, 10, 5).validate(),
        Err(nook_ns::ValidationError::Rlimit { .. })
    ));
    assert!(matches!(
        Command::new("/bin/true").oom_score_adj(1001).validate(),
        Err(nook_ns::ValidationError::OomScoreAdj { value: 1001 })
    ));
    assert!(matches!(Command::new("/bin/true").umask(0o1777).validate(), Err(nook_ns::ValidationError::Umask { .. })));
}

#[test]
fn exceeding_an_rlimit_fails_inside() {
    require_root!();
    // With RLIMIT_NOFILE 4, a fifth descriptor cannot be opened.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec 3</dev/null; exec 4</dev/null && echo opened || echo refused"]).rlimit(
        Resource::Nofile,
        4,
        4,
    );
    let output = out(&mut cmd);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("refused") || !output.status.success(), "{output:?}");
    assert!(!text.contains("opened"), "{output:?}");
}

#[test]
fn seccomp_errno_filter_makes_mkdir_fail_with_eperm() {
    require_root!();
    let dir = TempDir::new("seccomp").unwrap();
    let target = dir.join("made");
    let mut cmd = Command::new("/bin/mkdir");
    cmd.arg(&target).unshare(Namespace::Uts).no_new_privs(true).seccomp(mkdir_denied());
    let output = out(&mut cmd);
    assert!(!output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Operation not permitted"), "{output:?}");
    assert!(!target.exists());

    // The same program, reused, under an init in a pid namespace: init and payload are
    // confined alike, and the init still runs the payload to its end.
    let program = mkdir_denied();
    let mut cmd = Command::new("/bin/sh");
    let script =
        format!("mkdir {} || echo denied $$; grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status", target.display());
    cmd.args(["-c", &script])
        .namespaces(NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount))
        .mount(nook_ns::MountStep::proc("/proc"))
        .init(true)
        .no_new_privs(true)
        .seccomp(program.clone());
    let text = success_stdout(out(&mut cmd));
    // nk-init (PID 1) runs under the filter (mode 2) and no_new_privs too.
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["denied", "2", "NoNewPrivs:", "1", "Seccomp:", "2"],
        "{text}"
    );
    assert!(!target.exists());

    // Without the filter, mkdir works: the test can tell.
    assert!(Command::new("/bin/mkdir").arg(&target).status().unwrap().success());
    assert!(target.is_dir());
}

#[test]
fn user_notification_answers_getpid_from_the_parent() {
    require_root!();
    let program = filter(&[libc::SYS_getpid], libc::SECCOMP_RET_USER_NOTIF).notify(true);
    // The shell's `$$` is its getpid() (nothing caches it; no compiler needed).
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo $$"])
        .unshare(Namespace::Uts)
        .no_new_privs(true)
        .seccomp(program)
        .stdout(nook_ns::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let notifier = child.take_seccomp_notifier().expect("a listener");
    assert!(child.take_seccomp_notifier().is_none());
    // Answer every getpid with 4242 until no process uses the filter any more (POLLHUP).
    let answered = std::thread::scope(|s| {
        let answering = s.spawn(|| {
            notifier.serve(|n| {
                assert_eq!(n.nr as libc::c_long, libc::SYS_getpid);
                nook_ns::seccomp::Reply::Value(4242)
            })
        });
        let output = child.wait_with_output().unwrap();
        assert_eq!(success_stdout(output), "4242\n");
        answering.join().unwrap().unwrap()
    });
    assert!(answered >= 1);
}

#[test]
fn landlock_denies_reading_outside_the_ruleset() {
    require_root!();
    let dir = TempDir::new("landlock").unwrap();
    fs::create_dir(dir.join("allowed")).unwrap();
    fs::create_dir(dir.join("denied")).unwrap();
    fs::write(dir.join("allowed/file"), "allowed\n").unwrap();
    fs::write(dir.join("denied/file"), "secret\n").unwrap();
    let ruleset = || {
        // Writing only as far as this kernel's ABI can enforce it (Debian 12's 6.1 has ABI 2,
        // without TRUNCATE); reading is what the test is about.
        let write = AccessFs::WRITE & AccessFs::supported_by(nook_ns::landlock_abi().unwrap_or(0));
        let mut r = Ruleset::new(AccessFs::READ | AccessFs::EXECUTE | write)
            .allow("/etc", AccessFs::READ)
            .allow(dir.join("allowed"), AccessFs::READ);
        // Programs and libraries wherever this system keeps them (the v2 lane's guest has a
        // /bin and /lib of its own, not links into /usr).
        for d in ["/usr", "/bin", "/sbin", "/lib", "/lib64"] {
            if std::path::Path::new(d).exists() {
                r = r.allow(d, AccessFs::READ | AccessFs::EXECUTE);
            }
        }
        r.create()
    };
    let landlock = match ruleset() {
        Ok(l) => l,
        Err(Error::LandlockUnsupported { abi, .. }) => {
            nook_testutil::skip_unsupported(
                "landlock_denies_reading_outside_the_ruleset",
                &format!("Landlock ABI {abi}"),
            );
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(landlock.abi() >= 1 && landlock.unenforced().is_empty());
    let mut cmd = Command::new("/bin/cat");
    cmd.arg(dir.join("allowed/file")).no_new_privs(true).landlock(landlock);
    assert_eq!(success_stdout(out(&mut cmd)), "allowed\n");

    let mut cmd = Command::new("/bin/cat");
    cmd.arg(dir.join("denied/file")).no_new_privs(true).landlock(ruleset().unwrap());
    let output = out(&mut cmd);
    assert!(!output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Permission denied"), "{output:?}");

    // Without the ruleset the same read works.
    assert_eq!(success_stdout(out(Command::new("/bin/cat").arg(dir.join("denied/file")))), "secret\n");
}

#[test]
fn a_failing_hardening_step_is_a_typed_stage_error_and_nothing_ran() {
    require_root!();
    let dir = TempDir::new("failclosed").unwrap();
    let marker = dir.join("ran");
    // A program the kernel refuses: an unknown opcode.
    let bad = SeccompProgram::new(vec![insn(0xffff, 0, 0, 0)]);
    let mut cmd = Command::new("/bin/touch");
    cmd.arg(&marker).unshare(Namespace::Uts).no_new_privs(true).seccomp(bad);
    let err = cmd.spawn().unwrap_err();
    assert!(matches!(&err, Error::Spawn(e) if e.stage == Stage::Seccomp && e.errno == libc::EINVAL), "{err}");
    assert!(!marker.exists());

    // As another user without no_new_privs (the change to it drops CAP_SYS_ADMIN, which a
    // filter needs then), the filter goes in before the identity change, as runc does:
    // the program runs filtered (mode 2), not unfiltered and not refused.
    let mut cmd = Command::new("/bin/grep");
    cmd.args(["^Seccomp:", "/proc/self/status"]).unshare(Namespace::Uts).user(65534, 65534).seccomp(mkdir_denied());
    assert_eq!(success_stdout(out(&mut cmd)), "Seccomp:\t2\n");

    // An rlimit the kernel refuses even to root (RLIMIT_NOFILE above fs.nr_open): the
    // second limit, so the step says which.
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
    let mut cmd = Command::new("/bin/touch");
    cmd.arg(&marker)
        .unshare(Namespace::Uts)
        .rlimit(Resource::Core, 0, 0)
        .rlimit(Resource::Nofile, nr_open + 64, nr_open + 64)
        .no_new_privs(true)
        .seccomp(mkdir_denied());
    let err = cmd.spawn().unwrap_err();
    assert!(
        matches!(&err, Error::Spawn(e) if e.stage == Stage::Rlimit && e.step == Some(1) && e.errno == libc::EPERM),
        "{err}"
    );
    assert!(!marker.exists());

    // An empty program is refused before anything happens.
    assert!(matches!(
        Command::new("/bin/true").seccomp(SeccompProgram::new(Vec::new())).validate(),
        Err(nook_ns::ValidationError::SeccompProgramLength { len: 0 })
    ));
}

#[test]
fn oom_score_adj_of_a_vfork_style_child_leaves_the_parent_alone() {
    require_root!();
    let ours = || fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let before = ours();
    let mut cmd = Command::new("/bin/cat");
    cmd.arg("/proc/self/oom_score_adj").unshare(Namespace::Uts).oom_score_adj(777);
    assert_eq!(success_stdout(out(&mut cmd)), "777\n");
    assert_eq!(ours(), before);
}

#[test]
fn the_ruleset_and_the_listener_never_reach_the_program() {
    require_root!();
    for fork_path in [false, true] {
        let landlock = Ruleset::new(AccessFs::READ | AccessFs::EXECUTE)
            .allow("/", AccessFs::READ | AccessFs::EXECUTE)
            .allow_degraded(true)
            .create()
            .unwrap();
        let mut cmd = Command::new("/bin/ls");
        cmd.args(["-1", "/proc/self/fd"])
            .unshare(Namespace::Uts)
            .no_new_privs(true)
            .landlock(landlock)
            .seccomp(filter(&[libc::SYS_kexec_load], libc::SECCOMP_RET_USER_NOTIF).notify(true));
        if fork_path {
            cmd.unshare(Namespace::User);
        }
        let mut child = cmd.stdout(nook_ns::Stdio::piped()).spawn().unwrap();
        assert!(child.take_seccomp_notifier().is_some());
        let text = success_stdout(child.wait_with_output().unwrap());
        // 0, 1, 2 and ls's own directory descriptor.
        assert_eq!(text.lines().collect::<Vec<_>>(), ["0", "1", "2", "3"], "fork path {fork_path}: {text}");
    }
}
