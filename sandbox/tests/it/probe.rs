//! `nook_sandbox::probe()` on this host: every part of the report agrees with facts the test
//! checks on its own (the /proc and /sys files, mountinfo, the kernel's answers to real calls),
//! as root and re-executed as `nobody` (where nothing may be reported delegated).

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use nook_cgroup::{Controller, Layout, Version};
use nook_sandbox::probe::{Requirement, Support};
use nook_testutil::require_root;

const NOBODY: u32 = 65_534;
const ROLE_VAR: &str = "NK_PROBE_ROLE";

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn which(name: &str) -> Option<PathBuf> {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// v1 mounts with their controllers.
type V1Mounts = Vec<(PathBuf, Vec<String>)>;

/// The layout from mountinfo alone: cgroup2 mounts and v1 mounts with controllers.
fn layout_from_mountinfo() -> (Layout, V1Mounts, Option<PathBuf>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in info.lines() {
        let (pre, post) = line.split_once(" - ").unwrap();
        let mut post = post.split(' ');
        let fstype = post.next().unwrap();
        let opts = post.nth(1).unwrap_or("");
        let mount_point = PathBuf::from(pre.split(' ').nth(4).unwrap());
        match fstype {
            "cgroup2" => v2 = Some(mount_point),
            "cgroup" => {
                let ctrls: Vec<String> = opts
                    .split(',')
                    .filter(|o| Controller::ALL.iter().any(|c| c.v1_name() == *o))
                    .map(str::to_owned)
                    .collect();
                if !ctrls.is_empty() {
                    v1.push((mount_point, ctrls));
                }
            }
            _ => {}
        }
    }
    let layout = match (v1.is_empty(), v2.is_some()) {
        (true, true) => Layout::V2,
        (false, true) => Layout::Hybrid,
        _ => Layout::V1,
    };
    (layout, v1, v2)
}

#[test]
fn the_report_agrees_with_the_host() {
    let r = nook_sandbox::probe();
    println!("{r}");

    // Round trip through JSON.
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<nook_sandbox::HostReport>(&json).unwrap(), r);

    // Kernel and caller.
    // SAFETY: a zeroed utsname is a valid out-parameter for uname(2).
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
    // SAFETY: uname fills `release` with a NUL-terminated string.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    assert_eq!(r.kernel_release, release.to_str().unwrap());
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!((r.caller.uid, r.caller.gid, r.caller.root), (euid, egid, euid == 0));

    // User namespaces: the knobs as the files say, and the verdict as a real unshare(1) says.
    let u = &r.user_namespaces;
    assert_eq!(u.max_user_namespaces, read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse().ok()));
    assert_eq!(
        u.unprivileged_userns_clone,
        read("/proc/sys/kernel/unprivileged_userns_clone").and_then(|v| v.parse().ok())
    );
    assert_eq!(
        u.apparmor_restrict_unprivileged_userns,
        read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").and_then(|v| v.parse().ok())
    );
    if let Some(unshare) = which("unshare") {
        let ok = StdCommand::new(unshare).args(["--user", "true"]).status().unwrap().success();
        assert_eq!(u.support.is_available(), ok, "{:?}", u);
    }

    // Id mapping helpers.
    assert_eq!(r.id_mapping.newuidmap.is_some(), which("newuidmap").is_some());
    assert_eq!(r.id_mapping.newgidmap.is_some(), which("newgidmap").is_some());

    // cgroups: layout, own v2 cgroup and its controllers, where each controller lives.
    let (layout, v1, v2) = layout_from_mountinfo();
    let g = &r.cgroups;
    assert_eq!(g.layout, Some(layout));
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_v2 = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(PathBuf::from);
    if let Some(v2) = &v2 {
        assert_eq!(g.own_v2, own_v2);
        let dir = v2.join(own_v2.as_ref().unwrap().strip_prefix("/").unwrap());
        let ctrls: Vec<String> = std::fs::read_to_string(dir.join("cgroup.controllers"))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(g.v2_controllers, ctrls);
        assert_eq!(g.own_v2_dir.as_deref().map(|p| p.components().collect::<PathBuf>()), Some(dir.clone()));
    }
    for c in Controller::ALL {
        let rep = g.controller(c).unwrap();
        let on_v1 = v1.iter().find(|(_, cs)| cs.iter().any(|n| n == c.v1_name()));
        match on_v1 {
            Some((mp, _)) => {
                assert_eq!(rep.version, Some(Version::V1), "{c}");
                assert!(rep.dir.as_ref().unwrap().starts_with(mp), "{c}: {:?}", rep.dir);
                // Root may write everything: a mounted controller is delegated.
                if euid == 0 {
                    assert_eq!(rep.delegated, Support::Available, "{c}");
                }
            }
            None if v2.is_some() => {
                assert_ne!(rep.version, Some(Version::V1), "{c}");
            }
            None => assert!(!rep.delegated.is_available(), "{c}"),
        }
    }

    // Kernel features: the crates' probes, passed on.
    let ns = nook_ns::probe();
    assert_eq!(r.clone3.is_available(), ns.clone3);
    assert_eq!(r.clone_into_cgroup.is_available(), ns.clone_into_cgroup);
    assert_eq!(r.pidfd.is_available(), ns.pidfd_open && ns.waitid_pidfd && ns.pidfd_send_signal);
    if euid == 0 {
        let uf = nook_unionfs::probe();
        assert_eq!(r.overlay.is_available(), uf.fsopen);
        assert_eq!(r.overlay_lowerdir_plus.is_available(), uf.lowerdir_plus);
    }

    // Landlock: the version a raw landlock_create_ruleset gives.
    // SAFETY: the documented version query: null attr, size 0, LANDLOCK_CREATE_RULESET_VERSION.
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    assert_eq!(r.landlock.abi, (abi > 0).then_some(abi as u32));

    // seccomp: /proc/self/status and the sysctl dir.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let seccomp_mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|v| v.trim().parse().unwrap());
    assert_eq!(r.seccomp.caller_mode, seccomp_mode);
    assert_eq!(r.seccomp.filter.is_available(), Path::new("/proc/sys/kernel/seccomp/actions_avail").exists());

    // nftables: the binary, and (as root) a table made in a fresh netns by unshare(1).
    assert_eq!(r.nftables.binary.is_some(), which("nft").is_some());
    if euid == 0
        && let (Some(unshare), Some(nft)) = (which("unshare"), which("nft"))
    {
        let ok = StdCommand::new(unshare)
            .arg("--net")
            .arg(nft)
            .args(["add", "table", "inet", "nkprobetest"])
            .status()
            .unwrap()
            .success();
        assert_eq!(r.nftables.support.is_available(), ok, "{:?}", r.nftables);
    }

    // The text form names every part.
    let text = r.to_string();
    for word in ["kernel", "user namespaces", "cgroups", "overlay", "clone3", "Landlock", "seccomp", "nftables"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn requirements_follow_the_report() {
    let r = nook_sandbox::probe();
    let all = [
        Requirement::MemoryLimit,
        Requirement::PidsLimit,
        Requirement::CpuLimit,
        Requirement::Freeze,
        Requirement::Cgroup,
        Requirement::UserNamespace,
        Requirement::MultiRangeIdMap,
        Requirement::Overlay,
        Requirement::BridgeNetwork,
        Requirement::PublishedPorts,
        Requirement::Landlock,
        Requirement::Seccomp,
        Requirement::Clone3,
        Requirement::Pidfd,
    ];
    let unmet = r.unmet(&all);
    // Each unmet requirement has a reason; each met one really is available in the report.
    for u in &unmet {
        assert!(!u.reason.is_empty(), "{u:?}");
    }
    let is_unmet = |q: Requirement| unmet.iter().any(|u| u.requirement == q);
    assert_eq!(is_unmet(Requirement::MemoryLimit), !r.cgroups.delegated(Controller::Memory).is_available());
    assert_eq!(is_unmet(Requirement::PidsLimit), !r.cgroups.delegated(Controller::Pids).is_available());
    assert_eq!(is_unmet(Requirement::UserNamespace), !r.user_namespaces.support.is_available());
    assert_eq!(is_unmet(Requirement::BridgeNetwork), !r.caller.cap_net_admin);
    assert_eq!(is_unmet(Requirement::Landlock), r.landlock.abi.is_none());
    match r.require(&all) {
        Ok(()) => assert!(unmet.is_empty()),
        Err(e) => {
            assert_eq!(e.unmet, unmet);
            let text = e.to_string();
            assert!(text.contains(&unmet[0].reason), "{text}");
        }
    }
    assert_eq!(r.require(&[]), Ok(()));
}

/// As `nobody`: no controller is delegated (nothing below the caller's cgroups is writable by
/// it), so memory and pids limits are unmet, as is a bridge network; user namespaces are what
/// the sysctls and a real try say.
#[test]
fn unprivileged_caller_gets_nothing_delegated() {
    const ME: &str = "unprivileged_caller_gets_nothing_delegated";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        return as_nobody(ME);
    }
    require_root!();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = nook_ns::Command::new(&exe);
    cmd.args(["--exact", crate::test_name(module_path!(), ME).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, ME)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .user(NOBODY, NOBODY)
        .current_dir("/");
    let out = cmd.output().expect("re-run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{}:\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("NK-OK {ME}")), "{stdout}\n{stderr}");
}

fn as_nobody(me: &str) {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, NOBODY);
    let r = nook_sandbox::probe();
    println!("{r}");
    assert_eq!(r.caller.uid, NOBODY);
    assert!(!r.caller.root && !r.caller.cap_sys_admin && !r.caller.cap_net_admin);
    for rep in &r.cgroups.controllers {
        // Independently: nobody can write none of the cgroup dirs it is in.
        if let Some(dir) = &rep.dir {
            let probe_dir = dir.join(format!("nk-probe-nobody-{}", std::process::id()));
            let made = std::fs::create_dir(&probe_dir);
            if made.is_ok() {
                let _ = std::fs::remove_dir(&probe_dir);
            }
            assert!(made.is_err(), "{} is writable by nobody", dir.display());
        }
        assert!(!rep.delegated.is_available(), "{:?} reported delegated to nobody", rep.controller);
    }
    let unmet = r.unmet(&[Requirement::MemoryLimit, Requirement::PidsLimit, Requirement::BridgeNetwork]);
    assert_eq!(unmet.len(), 3, "{unmet:?}");
    assert!(unmet[0].reason.contains("not delegated"), "{unmet:?}");
    assert!(r.require(&[Requirement::MemoryLimit]).is_err());
    // Overlay and nftables cannot be asked without privilege: unknown, never "available".
    assert!(matches!(r.overlay, Support::Unknown { .. }), "{:?}", r.overlay);
    assert!(matches!(r.nftables.support, Support::Unknown { .. } | Support::Unavailable { .. }));
    // User namespaces: no blocker on this host's sysctls means the try decides, and a
    // separate unshare(1) agrees.
    if let Some(unshare) = which("unshare") {
        let ok = StdCommand::new(unshare).args(["--user", "true"]).status().unwrap().success();
        assert_eq!(r.user_namespaces.support.is_available(), ok, "{:?}", r.user_namespaces);
    }
    println!("NK-OK {me}");
}

/// A v2 cgroup delegated to `nobody` the way systemd delegates one (the directory and its
/// `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads` chowned to the user), with
/// the user's process started inside it: the report says the v2 controllers offered there are
/// delegated, the v1 ones (the caller's v1 cgroups still belong to root) are not.
#[test]
fn delegated_v2_cgroup_is_reported_delegated() {
    const ME: &str = "delegated_v2_cgroup_is_reported_delegated";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        return delegated_as_nobody(ME);
    }
    require_root!();
    let h = nook_cgroup::Hierarchies::discover().unwrap();
    let Some(own) = h.v2.as_ref().and_then(|v2| v2.own_dir()) else {
        return nook_testutil::skip_unsupported(ME, "no cgroup2 hierarchy");
    };
    let dir = own.join(nook_testutil::unique_name("dlg"));
    std::fs::create_dir(&dir).unwrap();
    struct Rmdir(PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rmdir(dir.clone());
    for p in [dir.clone(), dir.join("cgroup.procs"), dir.join("cgroup.subtree_control"), dir.join("cgroup.threads")] {
        std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let offered = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap();
    let cg_fd = std::fs::File::open(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = nook_ns::Command::new(&exe);
    cmd.args(["--exact", crate::test_name(module_path!(), ME).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, ME)
        .env("NK_OFFERED", offered.trim())
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .user(NOBODY, NOBODY)
        .current_dir("/")
        .cgroup(cg_fd.into());
    let out = cmd.output().expect("run as nobody in the delegated cgroup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{}:\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("NK-OK {ME}")), "{stdout}\n{stderr}");
}

fn delegated_as_nobody(me: &str) {
    let r = nook_sandbox::probe();
    println!("{r}");
    let offered: Vec<String> = std::env::var("NK_OFFERED").unwrap().split_whitespace().map(str::to_owned).collect();
    assert_eq!(r.cgroups.v2_controllers, offered);
    for rep in &r.cgroups.controllers {
        match rep.version {
            Some(Version::V2) => {
                let delegable = match rep.controller.v2() {
                    nook_cgroup::V2Support::Enabled(n) => offered.iter().any(|o| o == n),
                    // Device rules are a BPF program nobody may not load.
                    nook_cgroup::V2Support::Bpf => false,
                    _ => true,
                };
                if delegable {
                    assert_eq!(rep.delegated, Support::Available, "{:?}", rep.controller);
                } else {
                    assert!(!rep.delegated.is_available(), "{:?} is not offered", rep.controller);
                }
            }
            _ => assert!(!rep.delegated.is_available(), "{:?} is not delegated to nobody", rep.controller),
        }
    }
    if offered.iter().any(|c| c == "hugetlb") {
        assert_eq!(r.check(Requirement::HugetlbLimit), None);
    }
    // The freezer is v2's core on a pure v2 host (delegated here); on hybrid hosts it is v1's.
    assert!(r.check(Requirement::Cgroup).is_none());
    println!("NK-OK {me}");
}
