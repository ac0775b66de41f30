//! The compiled seccomp programs on the real kernel. nook-sandbox has no unsafe code, so the
//! filter is installed the one way safe code can: on a thread of its own
//! (`seccompiler::apply_filter`, which sets that thread's `no_new_privs` and filter; other
//! threads and the rest of the test binary stay unfiltered, and both die with the thread).
//! Installing in a spawned child is nook-ns's job and is tested there once wired.

use std::io;
use std::path::Path;

use nook_sandbox::hardening::seccomp::{Action, ArgCondition, CmpOp, SyscallRule};
use nook_sandbox::hardening::{CapSet, CompiledProfile, Profile, Target};
use nook_testutil::TempDir;

/// Runs `f` on a new thread confined by `program`.
fn under_filter<T: Send + 'static>(program: &CompiledProfile, f: impl FnOnce() -> T + Send + 'static) -> T {
    let instructions = program.instructions.clone();
    std::thread::spawn(move || {
        seccompiler::apply_filter(&instructions).expect("installing the filter");
        f()
    })
    .join()
    .expect("the filtered thread")
}

fn errno<T>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn host(caps: CapSet) -> Target {
    Target::host(caps).expect("x86_64 or aarch64")
}

#[test]
fn custom_profile_denies_mkdir_with_eperm() {
    let dir = TempDir::new("seccomp").unwrap();
    let mut p = Profile::new(Action::Allow);
    p.rule(SyscallRule::new(["mkdir", "mkdirat"], Action::Errno(libc::EPERM as u16)));
    let c = p.compile(&host(CapSet::docker_default())).unwrap();
    let inside = dir.join("inside");
    let got = under_filter(&c, move || errno(std::fs::create_dir(&inside)));
    assert_eq!(got, Some(libc::EPERM));
    assert!(!dir.join("inside").exists());
    // the same call unfiltered works (the filter stayed on its thread)
    std::fs::create_dir(dir.join("outside")).unwrap();
}

#[test]
fn argument_condition_on_the_kernel() {
    // openat with O_CREAT denied (masked equal on the flags), plain opens allowed
    let dir = TempDir::new("seccomp").unwrap();
    std::fs::write(dir.join("there"), b"x").unwrap();
    let mut p = Profile::new(Action::Allow);
    p.rule(SyscallRule::new(["openat", "open"], Action::Errno(libc::EACCES as u16)).arg(ArgCondition::new(
        2,
        CmpOp::MaskedEq { mask: libc::O_CREAT as u64 },
        libc::O_CREAT as u64,
    )));
    let c = p.compile(&host(CapSet::empty())).unwrap();
    let (there, new) = (dir.join("there"), dir.join("new"));
    let (read, create) =
        under_filter(&c, move || (std::fs::read(&there).map(|_| ()), errno(std::fs::File::create(&new))));
    read.unwrap();
    assert_eq!(create, Some(libc::EACCES));
    assert!(!dir.join("new").exists());
}

#[test]
fn user_notif_is_really_user_notif() {
    // Installed without a listener, SECCOMP_RET_USER_NOTIF fails the call with ENOSYS: proof
    // that the placeholder was rewritten (unrewritten it would be ALLOW and mkdir would work).
    let dir = TempDir::new("seccomp").unwrap();
    let mut p = Profile::new(Action::Allow);
    p.rule(SyscallRule::new(["mkdir", "mkdirat"], Action::UserNotif));
    let c = p.compile(&host(CapSet::empty())).unwrap();
    assert!(c.user_notif);
    let target = dir.join("d");
    assert_eq!(under_filter(&c, move || errno(std::fs::create_dir(&target))), Some(libc::ENOSYS));
    assert!(!dir.join("d").exists());
}

#[test]
fn default_profile_on_the_kernel() {
    // chroot: allowed with CAP_SYS_CHROOT (Docker's default set), EPERM without. Unfiltered a
    // missing directory gives ENOENT, so EPERM can only come from the filter.
    let missing = Path::new("/nk-no-such-dir-for-chroot");
    assert_eq!(errno(rustix::process::chroot(missing).map_err(io::Error::from)), Some(libc::ENOENT));
    let with = nook_sandbox::hardening::seccomp::default_compiled(&host(CapSet::docker_default())).unwrap();
    let got = under_filter(&with, move || errno(rustix::process::chroot(missing).map_err(io::Error::from)));
    assert_eq!(got, Some(libc::ENOENT));
    let caps = CapSet::docker_default().tweak(&[] as &[&str], &["SYS_CHROOT"]).unwrap();
    let without = Profile::docker_default().compile(&host(caps)).unwrap();
    let got = under_filter(&without, move || errno(rustix::process::chroot(missing).map_err(io::Error::from)));
    assert_eq!(got, Some(libc::EPERM));
    // everyday calls pass: files, threads (clone without namespace flags), time
    let dir = TempDir::new("seccomp").unwrap();
    let d = dir.join("x");
    let ok = under_filter(&with, move || {
        std::fs::create_dir(&d)?;
        std::fs::write(d.join("f"), b"hi")?;
        std::thread::spawn(std::time::SystemTime::now).join().map_err(|_| io::Error::other("join"))?;
        std::fs::read(d.join("f"))
    });
    assert_eq!(ok.unwrap(), b"hi");
}

#[test]
fn default_profile_denies_mount_as_root() {
    if !nook_testutil::is_root() {
        nook_testutil::skip("default_profile_denies_mount_as_root", "needs root (unprivileged, mount is EPERM anyway)");
        return;
    }
    // As root an unfiltered mount on a missing target fails with ENOENT; under the default
    // profile (no CAP_SYS_ADMIN) the filter answers EPERM first.
    let mount = || {
        errno(
            rustix::mount::mount("none", "/nk-no-such-mountpoint", "tmpfs", rustix::mount::MountFlags::empty(), None)
                .map_err(io::Error::from),
        )
    };
    assert_eq!(mount(), Some(libc::ENOENT));
    let c = Profile::docker_default().compile(&host(CapSet::docker_default())).unwrap();
    assert_eq!(under_filter(&c, mount), Some(libc::EPERM));
}

// ---------------------------------------------------------------------------------------
// Wired into the facade: what a sandbox's processes really get.

mod wired {
    use nook_sandbox::hardening::seccomp::SyscallRule;
    use nook_sandbox::hardening::{Action, CapSet, Profile};
    use nook_sandbox::{FsAccess, LandlockSpec, Mount, Outcome, Sandbox, SandboxBuilder, SeccompMode};
    use nook_testutil::{TempDir, require_root};

    fn sh(script: &str) -> SandboxBuilder {
        let mut b = Sandbox::builder();
        b.command("/bin/sh").args(["-c", script]).stdout(nook_ns::Stdio::piped()).stderr(nook_ns::Stdio::piped());
        b
    }

    fn run(b: &mut SandboxBuilder) -> (Outcome, String, String) {
        let out = b.output().expect("sandbox run");
        (
            out.outcome,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status_caps(text: &str, field: &str) -> u64 {
        let line = text.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("{field} in {text}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    #[test]
    fn default_sandbox_has_dockers_capabilities_no_new_privs_and_seccomp() {
        require_root!();
        let script = "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status";
        let (outcome, out, err) = run(sh(script).pids_max(32));
        assert_eq!(outcome, Outcome::Exited(0), "{err}");
        let docker = CapSet::docker_default().bits();
        assert_eq!(status_caps(&out, "CapBnd:"), docker, "{out}");
        assert_eq!(status_caps(&out, "CapEff:"), docker, "{out}");
        assert!(out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"), "{out}");
        // Without a cgroup (no device allowlist) CAP_MKNOD is not granted.
        let (_, out, _) = run(&mut sh(script));
        assert_eq!(status_caps(&out, "CapBnd:"), docker & !(1 << 27), "{out}");
        // Privileged: none of it.
        let (_, out, _) = run(sh(script).privileged(true));
        assert!(out.contains("NoNewPrivs:\t0") && out.contains("Seccomp:\t0"), "{out}");
        // --cap-drop ALL --cap-add NET_BIND_SERVICE
        let (_, out, _) = run(sh(script).cap_drop("ALL").cap_add("NET_BIND_SERVICE"));
        assert_eq!(status_caps(&out, "CapEff:"), 1 << 10, "{out}");
    }

    #[test]
    fn exec_is_confined_like_the_first_process() {
        require_root!();
        let mut b = Sandbox::builder();
        b.cap_drop("ALL").cap_add("CHOWN").pids_max(16);
        let sb = b.create().expect("create");
        let out = sb
            .exec(["/bin/sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"])
            .stdout(nook_ns::Stdio::piped())
            .output()
            .expect("exec");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(status_caps(&text, "CapEff:"), 1, "{text}");
        assert!(text.contains("NoNewPrivs:\t1") && text.contains("Seccomp:\t2"), "{text}");
        sb.remove().expect("remove");
    }

    #[test]
    fn a_custom_profile_denying_mkdir_makes_mkdir_fail_with_eperm() {
        require_root!();
        let mut p = Profile::new(Action::Allow);
        p.rule(SyscallRule::new(["mkdir", "mkdirat"], Action::Errno(libc::EPERM as u16)));
        let (outcome, out, err) =
            run(sh("mkdir /tmp/nk-x; echo rc=$?; touch /tmp/nk-y && echo touched").seccomp(SeccompMode::Profile(p)));
        assert_eq!(outcome, Outcome::Exited(0), "{err}");
        assert!(out.contains("rc=1") && out.contains("touched"), "{out}");
        assert!(err.contains("Operation not permitted"), "{err}");
    }

    #[test]
    fn a_user_notification_handler_answers_getpid_with_4242() {
        require_root!();
        let mut p = Profile::new(Action::Allow);
        p.rule(SyscallRule::new(["getpid"], Action::UserNotif));
        let mut b = sh("echo $$");
        b.seccomp(SeccompMode::Profile(p));
        let mut sb = b.spawn().expect("spawn");
        let notifier = sb.take_seccomp_notifier().expect("a listener");
        let answering = std::thread::spawn(move || notifier.serve(|_| nook_ns::seccomp::Reply::Value(4242)));
        let out = sb.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "4242\n");
        assert!(answering.join().unwrap().unwrap() >= 1);
    }

    #[test]
    fn landlock_rules_apply_inside_the_sandboxs_root() {
        require_root!();
        if nook_ns::landlock_abi().unwrap_or(0) < 1 {
            nook_testutil::skip_unsupported("landlock_rules_apply_inside_the_sandboxs_root", "no Landlock");
            return;
        }
        let dir = TempDir::new("sblandlock").unwrap();
        std::fs::write(dir.join("secret"), "secret\n").unwrap();
        let exec = [FsAccess::Read, FsAccess::Execute];
        let ruleset = LandlockSpec::new([FsAccess::Read, FsAccess::Execute])
            .allow("/usr", exec)
            .allow("/bin", exec)
            .allow("/lib", exec)
            .allow("/etc", [FsAccess::Read]);
        let mut ruleset = ruleset;
        if std::path::Path::new("/lib64").exists() {
            ruleset = ruleset.allow("/lib64", exec);
        }
        let script = "cat /etc/hostname; cat /data/secret && echo READ";
        // A rule for a path the sandbox does not have is refused before anything runs.
        let missing = LandlockSpec::new([FsAccess::Read]).allow("/nk-nowhere", [FsAccess::Read]);
        match sh("true").landlock(missing).spawn() {
            Err(nook_sandbox::Error::Invalid(nook_sandbox::ValidationError::Landlock { path: Some(p), .. })) => {
                assert_eq!(p, std::path::Path::new("/nk-nowhere"));
            }
            other => panic!("expected a Landlock validation error, got {other:?}"),
        }
        // The sandbox says what the ruleset enforces here.
        let mut sb = sh("true").landlock(ruleset.clone()).spawn().expect("spawn");
        let status = sb.landlock().expect("a ruleset");
        assert_eq!(status.abi, nook_ns::landlock_abi().unwrap());
        assert!(status.unenforced.is_empty() && status.handled.contains(nook_ns::landlock::AccessFs::READ_FILE));
        assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
        let mut confined = sh(script);
        confined.hostname("nk-ll").mount(Mount::bind_ro(dir.path(), "/data")).landlock(ruleset);
        let (_, out, err) = run(&mut confined);
        assert!(out.contains("nk-ll") && !out.contains("READ"), "{out}\n{err}");
        assert!(err.contains("Permission denied"), "{err}");
        let (_, out, _) = run(sh(script).hostname("nk-ll").mount(Mount::bind_ro(dir.path(), "/data")));
        assert!(out.contains("READ"), "{out}");
    }

    #[test]
    fn sysctls_read_only_root_and_rlimits_apply() {
        require_root!();
        let script = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni; \
                      ulimit -n; umask; touch /nk-rw 2>/dev/null && echo WROTE; touch /tmp/ok && echo TMP; \
                      (echo 1 > /proc/sys/kernel/shmmni) 2>/dev/null && echo PROCSYS; true";
        let mut b = sh(script);
        b.sysctl("net.ipv4.ip_unprivileged_port_start", "80")
            .sysctl("kernel.shmmni", "1000")
            .rlimit(nook_ns::Resource::Nofile, 77, 77)
            .umask(0o027)
            .read_only_rootfs(true)
            .mount(Mount::tmpfs("/tmp"));
        let (outcome, out, err) = run(&mut b);
        assert_eq!(outcome, Outcome::Exited(0), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..4], ["80", "1000", "77", "0027"], "{out}");
        assert!(!out.contains("WROTE") && out.contains("TMP") && !out.contains("PROCSYS"), "{out}");
        // A sysctl outside the sandbox's namespaces is refused before anything runs.
        let err = sh("true").sysctl("kernel.core_pattern", "x").output().unwrap_err();
        assert!(matches!(err, nook_sandbox::Error::Invalid(nook_sandbox::ValidationError::Sysctl { .. })), "{err}");
    }
}
