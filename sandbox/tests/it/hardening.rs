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
