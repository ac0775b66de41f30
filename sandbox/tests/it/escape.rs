//! The escape suite (issue 14): a default sandbox (as root, with a cgroup and an rlimit)
//! runs every attempt below, each in a forked process of a probe runner (this test binary,
//! re-executed inside), and each must fail. To prove the suite can tell the difference,
//! every attempt is also shown to work where its barrier is absent: the ones hardening
//! stops run again in a privileged sandbox (every confinement off, no rlimit); the ones the
//! namespaces and the root filesystem stop (no hardening setting can open those) run on
//! the host.
//!
//! A probe returns 0 when the attempt got through, else the errno that stopped it. Nothing
//! is written where it would change the host: `/proc/sysrq-trigger`, `core_pattern` and a
//! cgroup's `cgroup.procs` are only opened for writing; `kexec_load`, `init_module`, `bpf`
//! and `perf_event_open` get arguments the kernel refuses right after its permission check
//! (so "got through" is: refused for any other reason than EPERM/EACCES).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nook_ns::Resource;
use nook_sandbox::{Mount, Outcome, Sandbox, SandboxBuilder};
use nook_testutil::{TempDir, require_root};

use crate::sandbox::serial;

const ROLE: &str = "NK_ESCAPE_ROLE";
const ONLY: &str = "NK_ESCAPE_ONLY";
const SECRET: &str = "NK_ESCAPE_SECRET";
const HOST_PID: &str = "NK_ESCAPE_HOST_PID";
const HOST_FD: &str = "NK_ESCAPE_HOST_FD";
const RUNNER: &str = "escape_probe_runner";
/// Where the setuid-root copy of this binary is inside the sandbox (on the sandbox's own
/// `/dev/shm`: a rootless sandbox's root is read-only, and probes mount over `/tmp`).
const SUID_INSIDE: &str = "/dev/shm/nk-suid";
/// The open-file limit of the default run.
const NOFILE: u64 = 64;

/// What shows that an attempt can work at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Control {
    /// It works in a privileged sandbox (hardening stops it).
    Relaxed,
    /// It works on the host (the namespaces and the root stop it).
    Host,
    /// It works in a privileged sandbox when the host has this path.
    RelaxedIfHostHas(&'static str),
}

struct Probe {
    name: &'static str,
    control: Control,
    run: fn(&Ctx) -> i32,
}

/// What a probe gets from the test (through the environment).
struct Ctx {
    /// A file outside the sandbox's reach (on the host).
    secret: PathBuf,
    /// A process outside the sandbox (a `sleep` of the test's).
    host_pid: i32,
    /// A descriptor of a host directory the test leaked without close-on-exec.
    host_fd: i32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn c(path: impl AsRef<Path>) -> CString {
    CString::new(path.as_ref().as_os_str().as_encoded_bytes()).unwrap()
}

/// 0 when a call returning `r` (-1 on error) succeeded.
fn ok(r: libc::c_long) -> i32 {
    if r < 0 { errno() } else { 0 }
}

/// For calls given arguments the kernel refuses after its permission check: 0 unless
/// the refusal was a permission one.
fn past_permission_check(r: libc::c_long) -> i32 {
    match ok(r) {
        e @ (libc::EPERM | libc::EACCES) => e,
        _ => 0,
    }
}

fn open(path: impl AsRef<Path>, flags: i32) -> Result<OwnedFd, i32> {
    // SAFETY: a NUL-terminated path; the returned descriptor is owned here.
    let fd = unsafe { libc::open(c(path).as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: just opened, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// 0 when `path` opens with `flags`.
fn opens(path: impl AsRef<Path>, flags: i32) -> i32 {
    open(path, flags).err().unwrap_or(0)
}

/// 0 when at least one byte can be read from `path` (a masked file reads as empty).
fn reads_something(path: &str) -> i32 {
    let fd = match open(path, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let mut b = [0u8; 1];
    // SAFETY: reading into a live one-byte buffer.
    match unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) } {
        1 => 0,
        0 => libc::ENODATA,
        _ => errno(),
    }
}

fn probes() -> Vec<Probe> {
    use Control::*;
    vec![
        Probe {
            name: "read_host_file_through_proc_pid_root",
            control: Host,
            run: |x| {
                // PID 1's root, then the outside process's (on this host PID 1's is refused).
                match opens(format!("/proc/1/root{}", x.secret.display()), libc::O_RDONLY) {
                    0 => 0,
                    _ => opens(format!("/proc/{}/root{}", x.host_pid, x.secret.display()), libc::O_RDONLY),
                }
            },
        },
        Probe {
            name: "read_host_file_through_dotdot",
            control: Host,
            run: |x| {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::chdir(c"/".as_ptr()) };
                opens(format!("../../../../../../..{}", x.secret.display()), libc::O_RDONLY)
            },
        },
        Probe {
            name: "open_parent_exe",
            control: Host,
            run: |x| opens(format!("/proc/{}/exe", x.host_pid), libc::O_RDONLY),
        },
        Probe {
            name: "setns_into_a_host_namespace",
            control: Host,
            run: |x| {
                match open(format!("/proc/{}/ns/mnt", x.host_pid), libc::O_RDONLY) {
                    // SAFETY: a live descriptor.
                    Ok(fd) => ok(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) }.into()),
                    Err(e) => e,
                }
            },
        },
        Probe {
            name: "ptrace_a_process_outside",
            control: Host,
            run: |x| {
                // SAFETY: PTRACE_SEIZE does not stop the tracee; the tracer exits right after.
                ok(unsafe { libc::ptrace(libc::PTRACE_SEIZE, x.host_pid, 0, 0) })
            },
        },
        Probe {
            name: "inherited_host_directory_fd",
            control: Host,
            run: |x| {
                let name = x.secret.file_name().unwrap();
                // SAFETY: a NUL-terminated name relative to a descriptor number that may be
                // closed (then EBADF) or another file (then ENOTDIR).
                let fd = unsafe { libc::openat(x.host_fd, c(name).as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 { errno() } else { 0 }
            },
        },
        Probe {
            name: "mount",
            control: Relaxed,
            run: |_| {
                // SAFETY: NUL-terminated strings; a tmpfs over the sandbox's own /tmp.
                ok(unsafe { libc::mount(c"nk".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) }
                    .into())
            },
        },
        Probe {
            name: "umount2",
            control: Relaxed,
            run: |_| {
                // SAFETY: a NUL-terminated path of the sandbox's own mount.
                ok(unsafe { libc::umount2(c"/dev/mqueue".as_ptr(), libc::MNT_DETACH) }.into())
            },
        },
        Probe {
            name: "pivot_root",
            control: Relaxed,
            run: |_| {
                // SAFETY: NUL-terminated paths that do not exist (ENOENT once permitted).
                past_permission_check(unsafe {
                    libc::syscall(libc::SYS_pivot_root, c"/nk-none".as_ptr(), c"/nk-none".as_ptr())
                })
            },
        },
        Probe {
            name: "unshare_user_namespace",
            control: Relaxed,
            run: |_| {
                // SAFETY: affects only this forked probe.
                ok(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())
            },
        },
        Probe {
            name: "kexec_load",
            control: Relaxed,
            run: |_| {
                // SAFETY: no segments and an invalid architecture flag: EINVAL once permitted.
                past_permission_check(unsafe {
                    libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, std::ptr::null::<u8>(), 0xdead_0000usize)
                })
            },
        },
        Probe {
            name: "init_module",
            control: Relaxed,
            run: |_| {
                // SAFETY: an empty image: EFAULT/ENOEXEC once permitted.
                past_permission_check(unsafe {
                    libc::syscall(libc::SYS_init_module, std::ptr::null::<u8>(), 0usize, c"".as_ptr())
                })
            },
        },
        Probe {
            name: "bpf",
            control: Relaxed,
            run: |_| {
                let attr = [0u8; 128];
                // SAFETY: a zeroed BPF_MAP_CREATE attribute (EINVAL once permitted).
                past_permission_check(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), attr.len()) })
            },
        },
        Probe {
            name: "perf_event_open",
            control: Relaxed,
            run: |_| {
                let attr = [0u8; 128];
                // SAFETY: a zeroed attribute (a software event on the calling thread).
                let r = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
                if r >= 0 {
                    // SAFETY: the descriptor just returned.
                    unsafe { libc::close(r as i32) };
                }
                past_permission_check(r)
            },
        },
        Probe {
            name: "keyctl",
            control: Relaxed,
            run: |_| {
                // SAFETY: KEYCTL_GET_KEYRING_ID of the session keyring, created if missing.
                ok(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i32, 1) })
            },
        },
        Probe {
            name: "open_sysrq_trigger_for_writing",
            control: RelaxedIfHostHas("/proc/sysrq-trigger"),
            run: |_| opens("/proc/sysrq-trigger", libc::O_WRONLY),
        },
        Probe {
            name: "open_core_pattern_for_writing",
            control: Relaxed,
            run: |_| opens("/proc/sys/kernel/core_pattern", libc::O_WRONLY),
        },
        Probe {
            name: "open_a_cgroups_cgroup_procs_for_writing",
            control: Relaxed,
            run: |_| {
                // SAFETY: NUL-terminated strings; the sandbox's own cgroup namespace.
                let r =
                    unsafe { libc::mount(c"nk".as_ptr(), c"/tmp".as_ptr(), c"cgroup2".as_ptr(), 0, std::ptr::null()) };
                if r != 0 {
                    return errno();
                }
                opens("/tmp/cgroup.procs", libc::O_WRONLY)
            },
        },
        Probe {
            name: "read_proc_kcore",
            control: RelaxedIfHostHas("/proc/kcore"),
            run: |_| reads_something("/proc/kcore"),
        },
        Probe {
            name: "read_proc_timer_list",
            control: RelaxedIfHostHas("/proc/timer_list"),
            run: |_| reads_something("/proc/timer_list"),
        },
        Probe {
            name: "open_by_handle_at_shocker",
            control: Relaxed,
            run: |_| {
                #[repr(C)]
                struct Handle {
                    bytes: u32,
                    kind: i32,
                    data: [u8; 128],
                }
                let mut h = Handle { bytes: 128, kind: 0, data: [0; 128] };
                let mut mount_id = 0;
                // SAFETY: a live handle buffer of the size it says.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_name_to_handle_at,
                        libc::AT_FDCWD,
                        c"/dev".as_ptr(),
                        &mut h,
                        &mut mount_id,
                        0,
                    )
                };
                if r != 0 {
                    return errno();
                }
                let dir = match open("/dev", libc::O_RDONLY | libc::O_DIRECTORY) {
                    Ok(d) => d,
                    Err(e) => return e,
                };
                // SAFETY: the handle filled above.
                let fd = unsafe { libc::syscall(libc::SYS_open_by_handle_at, dir.as_raw_fd(), &h, libc::O_RDONLY) };
                ok(fd)
            },
        },
        Probe {
            name: "mknod_a_block_device",
            control: Relaxed,
            run: |_| {
                // SAFETY: a NUL-terminated path in the sandbox's /dev/shm.
                let r = unsafe { libc::mknod(c"/dev/shm/nk-sda".as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) };
                ok(r.into())
            },
        },
        Probe {
            name: "raise_a_capability_outside_the_set",
            control: Relaxed,
            run: |_| {
                // CapEff in /proc/self/status must stay within Docker's default set, and
                // raising CAP_SYS_ADMIN must fail.
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                };
                let default = nook_sandbox::hardening::CapSet::docker_default().bits();
                if [field("CapEff:"), field("CapBnd:")].iter().any(|v| v.is_some_and(|v| v & !default != 0)) {
                    return 0;
                }
                #[repr(C)]
                struct Header {
                    version: u32,
                    pid: i32,
                }
                #[repr(C)]
                #[derive(Clone, Copy, Default)]
                struct Data {
                    effective: u32,
                    permitted: u32,
                    inheritable: u32,
                }
                let mut hdr = Header { version: 0x2008_0522, pid: 0 };
                let mut data = [Data::default(); 2];
                // SAFETY: a v3 header and two data words.
                if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } != 0 {
                    return errno();
                }
                data[0].effective |= 1 << 21; // CAP_SYS_ADMIN
                data[0].permitted |= 1 << 21;
                // SAFETY: as above.
                ok(unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) })
            },
        },
        Probe {
            name: "gain_root_through_a_setuid_binary",
            control: Relaxed,
            run: |_| {
                // As uid 1000, exec a setuid-root copy of this binary, which exits 0 when its
                // effective uid is 0.
                let exe = c(SUID_INSIDE);
                let test = CString::new(crate::test_name(module_path!(), "escape_euid_reporter")).unwrap();
                let argv =
                    [exe.as_ptr(), c"--exact".as_ptr(), test.as_ptr(), c"--test-threads=1".as_ptr(), std::ptr::null()];
                let role = CString::new(format!("{ROLE}=euid")).unwrap();
                let envp = [role.as_ptr(), std::ptr::null()];
                // SAFETY: a forked single-purpose process: drop to 1000, silence stdout, exec.
                unsafe {
                    if libc::setgid(1000) != 0 || libc::setuid(1000) != 0 {
                        return errno();
                    }
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                    libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
                errno()
            },
        },
        Probe {
            name: "exceed_the_open_file_limit",
            control: Relaxed,
            run: |_| {
                let mut kept = Vec::new();
                for _ in 0..2 * NOFILE {
                    match open("/dev/null", libc::O_RDONLY) {
                        Ok(fd) => kept.push(fd),
                        Err(e) => return e,
                    }
                }
                0
            },
        },
    ]
}

/// The runner's side: every probe named in `$NK_ESCAPE_ONLY` (or all), each in a forked
/// process, one `NK-PROBE name code` line each.
fn run_probes() {
    let ctx = Ctx {
        secret: std::env::var_os(SECRET).map(PathBuf::from).unwrap(),
        host_pid: std::env::var(HOST_PID).unwrap().parse().unwrap(),
        host_fd: std::env::var(HOST_FD).unwrap().parse().unwrap(),
    };
    let only: Option<Vec<String>> = std::env::var(ONLY).ok().map(|s| s.split(',').map(str::to_owned).collect());
    for p in probes() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == p.name)) {
            continue;
        }
        // SAFETY: the child runs one probe (system calls, small allocations on a process
        // whose other threads wait in libtest) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = (p.run)(&ctx);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        println!("NK-PROBE {} {code}", p.name);
    }
}

#[test]
fn escape_probe_runner() {
    if std::env::var(ROLE).as_deref() == Ok("probes") {
        run_probes();
    }
}

#[test]
fn escape_euid_reporter() {
    if std::env::var(ROLE).as_deref() == Ok("euid") {
        // SAFETY: geteuid cannot fail.
        std::process::exit(if unsafe { libc::geteuid() } == 0 { 0 } else { 1 });
    }
}

/// `NK-PROBE` lines → name → code.
fn results(stdout: &str) -> BTreeMap<String, i32> {
    stdout
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("NK-PROBE ")?;
            let mut w = rest.split(' ');
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}

struct Setup {
    _dir: TempDir,
    secret: PathBuf,
    suid: PathBuf,
    sleeper: std::process::Child,
    leaked: OwnedFd,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

fn setup() -> Setup {
    let dir = TempDir::new("escape").unwrap();
    let secret = dir.join("nk-secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    let suid = dir.join("nk-suid");
    std::fs::copy(std::env::current_exe().unwrap(), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let sleeper = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    // The CVE-2024-21626 shape: a descriptor of a host directory without close-on-exec.
    // SAFETY: a NUL-terminated path; the descriptor is owned by the setup.
    let fd = unsafe { libc::open(c(dir.path()).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0);
    // SAFETY: just opened.
    let leaked = unsafe { OwnedFd::from_raw_fd(fd) };
    Setup { _dir: dir, secret, suid, sleeper, leaked }
}

fn runner(s: &Setup) -> SandboxBuilder {
    let exe = std::env::current_exe().unwrap();
    let mut b = Sandbox::builder();
    b.command(exe.to_str().unwrap())
        .args(["--exact", &crate::test_name(module_path!(), RUNNER), "--nocapture", "--test-threads=1"])
        .env(ROLE, "probes")
        .env(SECRET, s.secret.to_str().unwrap())
        .env(HOST_PID, s.sleeper.id().to_string())
        .env(HOST_FD, s.leaked.as_raw_fd().to_string())
        // the host's temp dir (with the secret) is not part of the sandbox
        .mount(Mount::tmpfs(s.secret.parent().unwrap().parent().unwrap()))
        .mount(Mount::bind_ro(&s.suid, SUID_INSIDE))
        .memory_max(512 << 20)
        .pids_max(64)
        .stdout(nook_ns::Stdio::piped());
    b
}

fn run(b: &mut SandboxBuilder) -> BTreeMap<String, i32> {
    let out = b.output().expect("the probe runner's sandbox");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.outcome, Outcome::Exited(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r = results(&stdout);
    assert_eq!(r.len(), probes().len(), "every probe reported: {stdout}");
    r
}

#[test]
fn escape_attempts_fail_in_a_default_sandbox_and_work_where_their_barrier_is_absent() {
    require_root!();
    let _serial = serial();
    let s = setup();

    let confined = run(runner(&s).rlimit(Resource::Nofile, NOFILE, NOFILE));
    let got_through: Vec<_> = confined.iter().filter(|(_, code)| **code == 0).collect();
    assert!(got_through.is_empty(), "escapes from a default sandbox: {got_through:?} (all: {confined:?})");

    let relaxed = run(runner(&s).privileged(true));
    for p in probes() {
        let expected = match p.control {
            Control::Relaxed => true,
            Control::RelaxedIfHostHas(path) => Path::new(path).exists(),
            Control::Host => false,
        };
        if expected {
            assert_eq!(relaxed[p.name], 0, "{} must work in a privileged sandbox: {relaxed:?}", p.name);
        }
    }

    // On the host, through std (which keeps the leaked descriptor).
    let host_only: Vec<&str> = probes().iter().filter(|p| p.control == Control::Host).map(|p| p.name).collect();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &crate::test_name(module_path!(), RUNNER), "--nocapture", "--test-threads=1"])
        .env(ROLE, "probes")
        .env(ONLY, host_only.join(","))
        .env(SECRET, &s.secret)
        .env(HOST_PID, s.sleeper.id().to_string())
        .env(HOST_FD, s.leaked.as_raw_fd().to_string())
        .output()
        .unwrap();
    let host = results(&String::from_utf8_lossy(&out.stdout));
    for name in host_only {
        assert_eq!(host.get(name), Some(&0), "{name} must work on the host: {host:?}");
    }
}

const ROOTLESS_ROLE: &str = "NK_ESCAPE_ROOTLESS";

/// The same attempts from a rootless sandbox (a user namespace, no delegated cgroup: run
/// without limits), started by `nobody`: each must fail there too.
#[test]
fn escape_attempts_fail_in_a_rootless_sandbox() {
    const ME: &str = "escape_attempts_fail_in_a_rootless_sandbox";
    if std::env::var(ROOTLESS_ROLE).as_deref() == Ok(ME) {
        let s = setup();
        let confined = run(runner(&s).best_effort_limits(true).rlimit(Resource::Nofile, NOFILE, NOFILE));
        let got_through: Vec<_> = confined.iter().filter(|(_, code)| **code == 0).collect();
        assert!(got_through.is_empty(), "escapes from a rootless sandbox: {got_through:?} (all: {confined:?})");
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    let _serial = serial();
    let out = nook_ns::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), ME).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROOTLESS_ROLE, ME)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .user(65_534, 65_534)
        .groups(&[])
        .current_dir("/")
        .output()
        .expect("re-run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains(&format!("NK-OK {ME}")), "{stdout}\n{stderr}");
}

/// A root file system whose `etc` and `data` are symbolic links to a host directory (what a
/// malicious image can ship) cannot make the sandbox's setup create files on the host: the
/// `/etc/hostname` and `/etc/hosts` files and a mount target below `data` are resolved
/// inside the root, where the links land in a directory of the root's own.
#[test]
fn rootfs_symlinks_cannot_make_the_setup_write_on_the_host() {
    require_root!();
    let dir = TempDir::new("evilroot").unwrap();
    let root = dir.join("root");
    nook_testutil::tiny_rootfs(&root).unwrap();
    let host = dir.join("host-dir");
    std::fs::create_dir(&host).unwrap();
    std::fs::remove_dir(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&host, root.join("etc")).unwrap();
    let climb = format!("{}{}", "../".repeat(12), host.strip_prefix("/").unwrap().display());
    std::os::unix::fs::symlink(&climb, root.join("data")).unwrap();
    // Inside the root, the links name this directory.
    let landing = root.join(host.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&landing).unwrap();
    let out = Sandbox::builder()
        .rootfs(nook_sandbox::Rootfs::dir(&root))
        .hostname("nk-evil")
        .mount(Mount::tmpfs("/data/cache/nk"))
        .command("/bin/sh")
        .args(["-c", "cat /etc/hostname; ls -d /data/cache/nk"])
        .stdout(nook_ns::Stdio::piped())
        .output()
        .expect("the sandbox runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.outcome, Outcome::Exited(0), "{stdout}");
    assert_eq!(stdout, "nk-evil\n/data/cache/nk\n");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "nothing was made on the host");
    assert!(landing.join("hostname").exists() && landing.join("cache/nk").is_dir());
}
