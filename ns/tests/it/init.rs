//! Integration tests of the minimal init (`Command::init`): PID 1 of a new pid namespace,
//! orphan reaping, the namespace dying with it, signal forwarding, exit status, the subreaper
//! mode without a pid namespace, nested pid namespaces, and that the init (`nk-init`) holds
//! nothing of the host program: no secret of its environment or heap is readable from inside.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nook_ns::{Child, Command, MountStep, Namespace, NamespaceSet, NsFd, Stdio, processes_in};
use nook_testutil::require_root;

/// A new pid namespace with its own `/proc` (in a new mount namespace).
fn pid_ns() -> NamespaceSet {
    NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount)
}

/// `sh -c script` under the init, in a new pid + mount namespace with `/proc` mounted.
fn init_sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]).namespaces(pid_ns()).mount(MountStep::proc("/proc")).init(true);
    cmd
}

/// The pid, state letter and ppid of a `/proc/PID/stat` line.
fn parse_stat(line: &str) -> (u32, char, u32) {
    let st = crate::procfs::parse_stat(line);
    (st.pid as u32, st.state, st.ppid as u32)
}

/// The pid of host process `pid` inside its own pid namespace.
fn inner_pid(pid: u32) -> Option<u32> {
    let nspid = crate::procfs::status(pid)?.nspid?;
    Some(*nspid.last()? as u32)
}

fn read_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Kills, through a pidfd, a process the test started indirectly, if it is still there.
struct KillOnDrop(OwnedFd);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: integer arguments and a null siginfo; ESRCH when it is gone is fine.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
    }
}

#[test]
fn init_is_pid_1_and_payload_is_pid_2() {
    require_root!();
    let out = init_sh("echo $$; cat /proc/$$/stat; cat /proc/1/comm").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "2", "{stdout}");
    assert_eq!(parse_stat(lines[1]).2, 1, "the payload's parent is pid 1: {stdout}");
    // PID 1 is nk-init, not a fork of this test binary.
    assert_eq!(lines[2], "nk-init", "{stdout}");
}

#[test]
fn init_reaps_orphans() {
    require_root!();
    // Three orphans (their parent subshell exits at once) are re-parented to the init. Then
    // they are killed; only the init can reap them. Zombies would stay visible in /proc.
    let script = r#"
        for i in 1 2 3; do
            p=$(sleep 1000 >/dev/null 2>&1 & echo $!)
            pids="$pids $p"
        done
        for p in $pids; do echo "orphan $(cat /proc/$p/stat)"; done
        kill $pids
        i=0
        while [ $i -lt 400 ]; do
            left=0
            for p in $pids; do [ -e /proc/$p ] && left=1; done
            [ $left = 0 ] && break
            sleep 0.05
            i=$((i + 1))
        done
        echo end
        cat /proc/[0-9]*/stat 2>/dev/null
    "#;
    let out = init_sh(script).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (before, after) = stdout.split_once("end\n").unwrap();
    let orphans: Vec<(u32, char, u32)> =
        before.lines().filter_map(|l| l.strip_prefix("orphan ")).map(parse_stat).collect();
    assert_eq!(orphans.len(), 3, "{stdout}");
    for (pid, state, ppid) in &orphans {
        assert!(*state != 'Z' && *ppid == 1, "orphan {pid} was not adopted by the init: {stdout}");
    }
    let remaining: Vec<(u32, char, u32)> = after.lines().map(parse_stat).collect();
    assert!(remaining.iter().any(|p| p.0 == 1), "{stdout}");
    assert!(remaining.iter().all(|p| p.1 != 'Z'), "zombies left: {stdout}");
    assert!(remaining.iter().all(|p| orphans.iter().all(|o| o.0 != p.0)), "orphans left: {stdout}");
}

#[test]
fn pid_1_exit_kills_the_rest_of_the_namespace() {
    require_root!();
    let mut cmd = init_sh("sleep 1000 >/dev/null 2>&1 & echo $!; read x; exit 3");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    let init_pid = paused.id();
    // Holding the namespace keeps its identity from being reused while we look for it.
    let ns = NsFd::of_pid(init_pid, Namespace::Pid).unwrap();
    let ns_id = ns.id().unwrap();
    let mut child = paused.resume().unwrap();
    let inner_sleep: u32 = read_line(&mut child).parse().unwrap();

    let members = processes_in(Namespace::Pid, ns_id).unwrap();
    assert!(members.contains(&init_pid) && members.len() == 3, "init, sh and sleep: {members:?}");
    // The background job, found by its pid inside the namespace (the last NSpid entry).
    let sleep = *members
        .iter()
        .find(|p| inner_pid(**p) == Some(inner_sleep))
        .unwrap_or_else(|| panic!("pid {inner_sleep} of the namespace is not among {members:?}"));
    let _cleanup = KillOnDrop(nook_ns::pidfd_open(sleep).unwrap());

    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(processes_in(Namespace::Pid, ns_id).unwrap(), Vec::<u32>::new());
    assert!(!Path::new(&format!("/proc/{sleep}")).exists(), "the sleep outlived PID 1");
}

#[test]
fn sigterm_is_forwarded_to_the_payload() {
    require_root!();
    let mut cmd = init_sh(r#"trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done"#);
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    child.kill_on_drop(true);
    assert_eq!(read_line(&mut child), "ready");
    child.signal(libc::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "{status:?}");
}

#[test]
fn sigusr1_kills_the_payload_and_init_exits_128_plus_signal() {
    require_root!();
    let mut cmd = init_sh("echo ready; while :; do sleep 0.05; done");
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    child.kill_on_drop(true);
    assert_eq!(read_line(&mut child), "ready");
    child.signal(libc::SIGUSR1).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGUSR1), "{status:?}");
}

#[test]
fn init_exits_with_the_payload_status() {
    require_root!();
    let status = init_sh("exit 7").status().unwrap();
    assert_eq!(status.code(), Some(7));
    let status = init_sh("kill -9 $$").status().unwrap();
    assert_eq!(status.code(), Some(128 + 9));
    let status = init_sh("true").status().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn init_without_pid_namespace_is_a_subreaper() {
    require_root!();
    // The orphan is adopted by the init (a subreaper), and reaped by it once killed.
    let script = r#"
        p=$(sleep 1000 >/dev/null 2>&1 & echo $!)
        echo $p
        read x
        kill -9 $p
        i=0
        while [ -e /proc/$p ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
        [ -e /proc/$p ] && exit 99
        exit 5
    "#;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]).init(true).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.kill_on_drop(true);
    let orphan: u32 = read_line(&mut child).parse().unwrap();
    let _cleanup = KillOnDrop(nook_ns::pidfd_open(orphan).unwrap());
    let stat = crate::procfs::stat(orphan).expect("the orphan is alive");
    assert_eq!(stat.ppid as u32, child.id(), "the orphan's parent is the init: {stat:?}");
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "99 means the orphan was never reaped");
}

#[test]
fn init_keeps_no_descriptor_open() {
    require_root!();
    // The init never execs, so close-on-exec does not clean up after it: it must close
    // everything itself, or it keeps pipe ends of unrelated children (other threads' spawns)
    // open and they never see EOF.
    let mut cmd = init_sh("echo ready; read x; exit 0");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.kill_on_drop(true);
    assert_eq!(read_line(&mut child), "ready");
    let fd_dir = format!("/proc/{}/fd", child.id());
    let open_fds = || fs::read_dir(&fd_dir).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
    // The init closes its descriptors right after forking the payload; give it time.
    let mut left = open_fds();
    for _ in 0..1000 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = open_fds();
    }
    assert!(left.is_empty(), "the init holds fds {left:?}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

const ROLE: &str = "NK_NESTED_ROLE";
const NESTED_TEST: &str = "nested_pid_namespace_inside_pid_namespace";

/// The inner half: PID 1 of a new pid namespace (with its own /proc), creating another.
fn nested_inner() {
    assert_eq!(std::process::id(), 1, "the re-executed test binary is PID 1");
    let own = NsFd::current(Namespace::Pid).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo $$"]).unshare(Namespace::Pid).stdout(Stdio::piped());
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    let grandchild = NsFd::of_pid(paused.id(), Namespace::Pid).unwrap();
    assert_ne!(grandchild.id().unwrap(), own.id().unwrap());
    assert_eq!(grandchild.parent().unwrap().id().unwrap(), own.id().unwrap());
    let out = paused.resume().unwrap().wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"1\n");
    println!("NK_NESTED_INNER_OK");
}

#[test]
fn nested_pid_namespace_inside_pid_namespace() {
    if std::env::var_os(ROLE).is_some_and(|r| r == "inner") {
        return nested_inner();
    }
    require_root!();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", crate::test_name(module_path!(), NESTED_TEST).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE, "inner")
        .namespaces(pid_ns())
        .mount(MountStep::proc("/proc"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    let inner = NsFd::of_pid(paused.id(), Namespace::Pid).unwrap();
    let ours = NsFd::current(Namespace::Pid).unwrap();
    assert_eq!(inner.parent().unwrap().id().unwrap(), ours.id().unwrap());
    let out = paused.resume().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("NK_NESTED_INNER_OK"), "{stdout}\n{stderr}");
    // The test did run (not filtered out).
    assert!(stdout.contains("1 passed"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// PID 1 holds nothing of the embedding program (issue 11, item 3)
// ---------------------------------------------------------------------------------------
//
// Three processes: the test ("outer") re-executes this binary as the "host" with a secret
// in its environment; the host puts a second secret on its heap and spawns the sandbox,
// whose payload is this binary again as the "reader". The reader does not know either
// secret: it dumps what the sandbox can see of its init — every `/proc/*/environ` and
// `/proc/*/cmdline`, PID 1's whole readable memory through `/proc/PID/mem` (the ptrace
// interface), and whether `ptrace` attaches — and the host searches the dump.

const SECRET_ROLE: &str = "NK_INIT_SECRET_ROLE";
const SECRET_VARIANT: &str = "NK_INIT_SECRET_VARIANT";
const SECRET_ENV: &str = "NK_INIT_SECRET";
const SECTION: &[u8] = b"\n@@NK-SECTION@@ ";

fn random_hex() -> String {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Re-runs only `test` of this binary with `envs`; returns its stdout.
fn rerun_self(test: &str, envs: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), test).as_str(), "--nocapture", "--test-threads=1"])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The reader, inside the sandbox: dumps everything it can read of its init (its parent).
fn secret_reader() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let init = std::os::unix::process::parent_id();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut section = |name: &str, data: &[u8]| {
        out.write_all(SECTION).unwrap();
        out.write_all(name.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        out.write_all(data).unwrap();
    };
    for entry in fs::read_dir("/proc").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.parse::<u32>().is_err() {
            continue;
        }
        for file in ["environ", "cmdline"] {
            match fs::read(format!("/proc/{name}/{file}")) {
                Ok(data) => section(&format!("{file} {name}"), &data),
                Err(e) => section(&format!("{file} {name} unreadable {e}"), b""),
            }
        }
    }
    let maps = fs::read_to_string(format!("/proc/{init}/maps")).unwrap_or_default();
    match fs::File::open(format!("/proc/{init}/mem")) {
        Err(e) => section(&format!("mem-unreadable {}", e.raw_os_error().unwrap_or(0)), b""),
        Ok(mem) => {
            let mut total = 0u64;
            for line in maps.lines() {
                let mut f = line.split_whitespace();
                let (range, perms) = (f.next().unwrap(), f.next().unwrap());
                if !perms.starts_with('r') {
                    continue;
                }
                let (start, end) = range.split_once('-').unwrap();
                let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
                let mut buf = vec![0u8; 1 << 16];
                let mut at = start;
                while at < end {
                    let len = buf.len().min((end - at) as usize);
                    match mem.read_at(&mut buf[..len], at) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            section(&format!("mem {line}"), &buf[..n]);
                            total += n as u64;
                            at += n as u64;
                        }
                    }
                }
            }
            section(&format!("mem-total {total}"), b"");
        }
    }
    // SAFETY: integer arguments only; a seized tracee is released when we exit.
    let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, init as libc::pid_t, 0usize, 0usize) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    section(&format!("ptrace {}", if rc == 0 { 0 } else { errno }), b"");
    out.flush().unwrap();
}

/// The reader's dump as (section name, data).
fn sections(dump: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut rest = dump;
    while let Some(pos) = rest.windows(SECTION.len()).position(|w| w == SECTION) {
        rest = &rest[pos + SECTION.len()..];
        let end = rest.windows(SECTION.len()).position(|w| w == SECTION).unwrap_or(rest.len());
        let (body, next) = rest.split_at(end);
        let nl = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
        out.push((String::from_utf8_lossy(&body[..nl]).into_owned(), &body[(nl + 1).min(body.len())..]));
        rest = next;
    }
    out
}

/// The host: a secret in its (initial) environment and one on its heap; spawns the reader
/// under the init and reports which dump sections hold a secret.
fn secret_host(test: &str, variant: &str) {
    let env_secret = std::env::var(SECRET_ENV).unwrap();
    let heap_secret: &'static mut String = Box::leak(Box::new(format!("nkheap{}", random_hex())));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", crate::test_name(module_path!(), test).as_str(), "--nocapture", "--test-threads=1"])
        .env(SECRET_ROLE, "reader")
        .env_remove(SECRET_ENV)
        .init(true)
        .stdout(Stdio::piped());
    match variant {
        "pid" => cmd.namespaces(pid_ns()).mount(MountStep::proc("/proc")),
        "pid-user" => cmd.namespaces(pid_ns().with(Namespace::User)).mount(MountStep::proc("/proc")),
        "subreaper-user" => cmd.namespaces(Namespace::User.as_set()),
        other => panic!("unknown variant {other}"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let (mut checked, mut mem_total, mut ptrace) = (0, None, None);
    for (name, data) in sections(&out.stdout) {
        if let Some(t) = name.strip_prefix("mem-total ") {
            mem_total = Some(t.to_owned());
        }
        if let Some(t) = name.strip_prefix("ptrace ") {
            ptrace = Some(t.to_owned());
        }
        for (kind, secret) in [("env", env_secret.as_bytes()), ("heap", heap_secret.as_bytes())] {
            if find(data, secret) {
                println!("NK-LEAK {kind} secret in {name}");
            }
        }
        checked += 1;
    }
    println!("NK-CHECKED sections={checked} mem-total={mem_total:?} ptrace={ptrace:?}");
    std::hint::black_box(&heap_secret);
}

/// One variant of the secret test: `Some(stdout of the host)` or `None` when this process
/// is the host or the reader (its work is done then).
fn secret_test(test: &str, variant: &str) -> Option<String> {
    match std::env::var(SECRET_ROLE).as_deref() {
        Ok("reader") => {
            secret_reader();
            return None;
        }
        Ok("host") => {
            secret_host(test, variant);
            return None;
        }
        _ => {}
    }
    let secret = format!("nkenv{}", random_hex());
    Some(rerun_self(test, &[(SECRET_ROLE, "host"), (SECRET_VARIANT, variant), (SECRET_ENV, &secret)]))
}

fn assert_no_leak(stdout: &str, readable_mem: bool) {
    eprintln!("{stdout}");
    let leaks: Vec<&str> = stdout.lines().filter(|l| l.contains("NK-LEAK")).collect();
    assert!(leaks.is_empty(), "the sandbox can read the host's secrets:\n{}", leaks.join("\n"));
    let checked = stdout.lines().find(|l| l.contains("NK-CHECKED")).unwrap_or_else(|| panic!("{stdout}"));
    if readable_mem {
        // Root of the sandbox may read the init's memory: it must find only nk-init there.
        assert!(checked.contains("mem-total=Some(\""), "PID 1's memory was read: {checked}");
        assert!(!checked.contains("mem-total=Some(\"0\")"), "PID 1's memory was read: {checked}");
    }
}

#[test]
fn init_holds_no_host_secret_in_a_pid_namespace() {
    const TEST: &str = "init_holds_no_host_secret_in_a_pid_namespace";
    if std::env::var_os(SECRET_ROLE).is_none() {
        require_root!();
    }
    if let Some(stdout) = secret_test(TEST, "pid") {
        assert_no_leak(&stdout, true);
    }
}

#[test]
fn init_holds_no_host_secret_in_a_user_and_pid_namespace() {
    const TEST: &str = "init_holds_no_host_secret_in_a_user_and_pid_namespace";
    if std::env::var_os(SECRET_ROLE).is_none() {
        require_root!();
    }
    if let Some(stdout) = secret_test(TEST, "pid-user") {
        assert_no_leak(&stdout, true);
    }
}

#[test]
fn subreaper_init_holds_no_host_secret_in_a_user_namespace() {
    const TEST: &str = "subreaper_init_holds_no_host_secret_in_a_user_namespace";
    if std::env::var_os(SECRET_ROLE).is_none() {
        require_root!();
    }
    if let Some(stdout) = secret_test(TEST, "subreaper-user") {
        assert_no_leak(&stdout, true);
    }
}

#[test]
fn init_is_not_dumpable_for_an_unprivileged_payload() {
    const TEST: &str = "init_is_not_dumpable_for_an_unprivileged_payload";
    if std::env::var(SECRET_ROLE).as_deref() == Ok("reader") {
        return secret_reader();
    }
    require_root!();
    // The payload runs as nobody, like the init (which execs after the identity change): a
    // dumpable init would be open to it (same uid, no capability needed).
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), TEST).as_str(), "--nocapture", "--test-threads=1"])
        .env(SECRET_ROLE, "reader")
        .namespaces(pid_ns())
        .mount(MountStep::proc("/proc"))
        .user(65534, 65534)
        .init(true)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = sections(&out.stdout).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n.starts_with("environ 1 unreadable")), "{names:?}");
    assert!(names.contains(&format!("mem-unreadable {}", libc::EACCES)), "{names:?}");
    assert!(names.contains(&format!("ptrace {}", libc::EPERM)), "{names:?}");
}

#[test]
fn every_forwarded_signal_reaches_the_payload() {
    require_root!();
    let script = r#"
        for s in TERM INT HUP USR1 USR2; do trap "echo got-$s" $s; done
        trap "echo got-QUIT; exit 9" QUIT
        echo ready
        while :; do sleep 0.05; done
    "#;
    let mut child = init_sh(script).stdout(Stdio::piped()).spawn().unwrap();
    child.kill_on_drop(true);
    assert_eq!(read_line(&mut child), "ready");
    let names = ["TERM", "INT", "HUP", "USR1", "USR2", "QUIT"];
    assert_eq!(nook_ns::FORWARDED_SIGNALS.len(), names.len());
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for (sig, name) in nook_ns::FORWARDED_SIGNALS.iter().zip(names) {
        child.signal(*sig).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("got-{name}"));
    }
    assert_eq!(child.wait().unwrap().code(), Some(9));
}

#[test]
fn a_signal_sent_before_the_init_runs_is_not_lost() {
    require_root!();
    // Sent while the child waits at the sync point: every signal is blocked there and
    // stays pending across the exec of nk-init, which then forwards it to the payload.
    let mut cmd = init_sh("exec sleep 1000");
    let mut paused = cmd.spawn_paused().unwrap();
    paused.kill_on_drop(true);
    // SAFETY: integer arguments and a null siginfo on a live pidfd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            paused.pidfd().as_raw_fd(),
            libc::SIGTERM,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let mut child = paused.resume().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn unprivileged_caller_gets_nk_init_in_its_user_namespace() {
    const TEST: &str = "unprivileged_caller_gets_nk_init_in_its_user_namespace";
    if std::env::var(SECRET_ROLE).as_deref() == Ok("unprivileged") {
        // SAFETY: geteuid cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 65534, "the caller must be unprivileged");
        // This process creates (and owns) the memfd; its init runs inside the new user ns.
        let out = init_sh("cat /proc/1/comm; echo $$; exit 3")
            .namespaces(pid_ns().with(Namespace::User))
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "nk-init\n2\n");
        println!("NK-UNPRIV-OK");
        return;
    }
    require_root!();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", crate::test_name(module_path!(), TEST).as_str(), "--nocapture", "--test-threads=1"])
        .env(SECRET_ROLE, "unprivileged")
        .user(65534, 65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("NK-UNPRIV-OK"), "{stdout}");
}

#[test]
fn a_holding_init_keeps_the_namespaces_until_sigterm() {
    require_root!();
    let mut child =
        Command::new("/nonexistent/ignored").namespaces(pid_ns()).init_hold(true).spawn().expect("holding init");
    child.kill_on_drop(true);
    let pid = child.id();
    // The exec of the sealed memfd names the process `memfd:nk-init` until the init renames
    // itself (its first instruction): wait for that, without a timing assertion.
    let comm = || fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while comm() != "nk-init\n" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(comm(), "nk-init\n");
    assert_eq!(inner_pid(pid), Some(1), "PID 1 of its own namespace");
    // A process joins the pid namespace: PID 2. (Only spawn on the helper thread: a thread
    // whose pid namespace for children differs from its own cannot start threads.)
    let pidns = NsFd::of_pid(pid, Namespace::Pid).unwrap();
    let joined = nook_ns::on_thread_in(&[&pidns], || {
        Command::new("/bin/sh").args(["-c", "echo $$"]).stdout(Stdio::piped()).spawn().expect("join")
    })
    .unwrap();
    let out = joined.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "the joined process is PID 2");
    assert_eq!(child.try_wait().unwrap(), None, "still holding with no child at all");
    child.signal(libc::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "SIGTERM ends the hold with 0");
}
