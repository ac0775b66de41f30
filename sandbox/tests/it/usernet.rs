//! User-mode networking ([`NetworkMode::UserNet`]) of an unprivileged caller, through
//! slirp4netns and pasta, against the real kernel.
//!
//! Nothing leaves the machine: each test makes a network namespace to play the host (`lo`,
//! and for pasta a veth pair with both ends inside it, an address and a default route,
//! which pasta copies), and re-executes this binary as `nobody` inside it, in a private
//! mount namespace whose `/dev/net/tun` is a node of the test's own (mode 0666, as udev
//! makes it; this VM's is 0600). The unprivileged caller's sandbox then reaches a server on
//! the host namespace's loopback through the helper's gateway mapping, and a client in the
//! host namespace reaches a server in the sandbox through a published port on 127.0.0.1.
//! The caller proves it is unprivileged (uid 65534, no capability at all, so no
//! CAP_NET_ADMIN in the initial user namespace), and that nothing is left: the helper
//! reaped (no child process remains), no namespace of the sandbox held by any process, no
//! API socket directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nook_netmodel::firewall::PortMapping;
use nook_netmodel::netlink::{LinkKind, Netlink, NewLink, Route};
use nook_netmodel::usernet::{Helper, UserNetBackend, UserNetError, UserNetSpec};
use nook_ns::{MountStep, NetNs, Propagation};
use nook_sandbox::{Error, NetworkMode, Outcome, Sandbox};
use nook_testutil::require_root;

const NOBODY: u32 = 65_534;
const ROLE_VAR: &str = "NK_USERNET_ROLE";
/// How long a test waits for something that should happen (a bound so a broken setup fails
/// instead of hanging; not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);
/// The host namespace's address on its veth (pasta copies it into the sandbox) and its
/// gateway (pasta maps connections to it to the host's loopback).
const HOST_ADDR: &str = "10.241.0.2/24";
const HOST_GW: &str = "10.241.0.1";

/// The namespace playing the host: `lo` up; a veth pair (both ends here) with
/// [`HOST_ADDR`] and a default route through [`HOST_GW`].
fn host_ns() -> NetNs {
    let ns = NetNs::new().expect("host netns");
    let mut nl = Netlink::open_in(ns.ns()).expect("netlink");
    nl.set_up(1).expect("lo up");
    let kind = LinkKind::Veth { peer_name: "nkun1", peer_netns: None, peer_mtu: None, peer_mac: None };
    nl.add_link(&NewLink::new("nkun0", kind)).expect("veth");
    let a = nl.link("nkun0").unwrap().expect("nkun0").index;
    let b = nl.link("nkun1").unwrap().expect("nkun1").index;
    nl.set_up(a).unwrap();
    nl.set_up(b).unwrap();
    nl.add_address(a, HOST_ADDR.parse().unwrap()).expect("address");
    nl.add_route(&Route::new(None, Some(HOST_GW.parse().unwrap()), Some(a))).expect("default route");
    ns
}

/// Re-executes this binary as `nobody` to run test `entry`'s unprivileged half: in `host`'s
/// network namespace, in a private mount namespace (recursively private root) where
/// `/dev/net` is a tmpfs holding a tun node of mode `tun_mode`. Returns its stdout.
fn run_as_nobody(entry: &str, host: &NetNs, tun_mode: u32, env: &[(&str, String)]) -> String {
    run_in_host(entry, host, tun_mode, env, Some(NOBODY))
}

/// [`run_as_nobody`], as `user` (`None`: as root).
fn run_in_host(entry: &str, host: &NetNs, tun_mode: u32, env: &[(&str, String)], user: Option<u32>) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = nook_ns::Command::new(&exe);
    cmd.args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, entry)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .join_netns(host.ns().try_clone().unwrap())
        .unshare(nook_ns::Namespace::Mount)
        .root_propagation(Some((Propagation::Private, true)))
        .mount(MountStep::tmpfs("/dev/net", Some("dev,mode=755")))
        .mount(MountStep::make_node("/dev/net/tun", libc::S_IFCHR | tun_mode, 10, 200, 0, 0))
        .current_dir("/");
    if let Some(uid) = user {
        cmd.user(uid, uid).groups(&[]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("re-run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{entry} as {user:?}: {}:\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("NK-OK {entry}")), "{entry} did not run:\n{stdout}\n{stderr}");
    stdout
}

/// A server on the host namespace's loopback: accepts one connection, reads a line,
/// answers `NK-HOST <line>` and returns the peer and the line.
fn loopback_server(host: &NetNs) -> (u16, std::thread::JoinHandle<(SocketAddr, String)>) {
    let listener = host.run(|| TcpListener::bind("127.0.0.1:0")).unwrap().expect("bind in the host namespace");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let (mut conn, peer) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("no connection from the sandbox: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        let line = line.trim().to_owned();
        conn.write_all(format!("NK-HOST {line}\n").as_bytes()).unwrap();
        (peer, line)
    });
    (port, server)
}

/// In the unprivileged half: this process has no privilege at all.
fn assert_unprivileged() {
    assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
    assert_eq!(rustix::process::getuid().as_raw(), NOBODY);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for set in ["CapEff:", "CapPrm:"] {
        let line = status.lines().find(|l| l.starts_with(set)).unwrap();
        let caps = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(caps, 0, "{line}");
    }
    // We are in the initial user namespace: no capability there means no CAP_NET_ADMIN.
    assert_eq!(
        std::fs::read_to_string("/proc/self/uid_map").unwrap().split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
}

/// This process's children (every thread's): none may be left once a sandbox is gone.
fn children() -> Vec<String> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        kids.extend(text.split_whitespace().map(str::to_owned));
    }
    kids
}

/// Whether any process still holds the network namespace `link` (`net:[inode]`).
fn netns_held(link: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|p| std::fs::read_link(p.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == link))
}

/// Whether a TCP socket listens on 127.0.0.1:`port` in this process's network namespace.
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
    // sl local_address rem_address st ...; 0100007F is 127.0.0.1, 0A is LISTEN.
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == local && f[3] == "0A"
    })
}

/// API socket directories of this process left in the temp dir.
fn api_dirs() -> Vec<String> {
    let prefix = format!("nk-usernet-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The unprivileged half of the outbound + published-port tests for `backend`: a sandbox
/// connects to the host's loopback server through `gateway`, then another publishes a port
/// the test connects to on 127.0.0.1.
fn unprivileged_round_trip(backend: UserNetBackend, helper: Helper, gateway: &str, ifname: &str) {
    assert_unprivileged();
    round_trip_inside(backend, helper, gateway, ifname);
}

/// The outbound and published-port checks, as whoever runs them.
fn round_trip_inside(backend: UserNetBackend, helper: Helper, gateway: &str, ifname: &str) {
    let port: u16 = std::env::var("NK_USERNET_PORT").unwrap().parse().unwrap();
    let nonce = std::env::var("NK_USERNET_NONCE").unwrap();

    // Outbound: the sandbox's own namespace, its interface, and a connection to the host.
    let mut spec = UserNetSpec::new();
    spec.backend(backend);
    // bash's /dev/tcp: no half-close after the line (pasta of Debian 12 drops the reply
    // after the sandbox's FIN, see the crate docs).
    let script = format!("ls /sys/class/net; exec 3<>/dev/tcp/{gateway}/{port}; echo {nonce} >&3; cat <&3");
    let mut sb = Sandbox::builder()
        .network(NetworkMode::UserNet(spec))
        .timeout(PATIENCE)
        .command("/bin/bash")
        .args(["-c", &script])
        .stdout(nook_ns::Stdio::piped())
        .spawn()
        .expect("spawn with a user-mode network");
    let used = sb.user_net().expect("the helper");
    assert_eq!(used.helper(), helper);
    let helper_pid = used.pid().unwrap();
    let netns = std::fs::read_link(format!("/proc/{}/ns/net", sb.id())).unwrap().to_string_lossy().into_owned();
    assert_ne!(netns, std::fs::read_link("/proc/self/ns/net").unwrap().to_string_lossy(), "its own namespace");
    let mut out = String::new();
    sb.stdio().1.unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0), "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["lo", ifname, "NK-HOST", nonce.as_str()], "{out}");
    // The helper is reaped, the namespace gone with the last process holding it.
    assert!(!Path::new(&format!("/proc/{helper_pid}")).exists(), "helper {helper_pid} left");
    assert_eq!(children(), Vec::<String>::new());
    assert!(!netns_held(&netns), "{netns} still held");

    if helper == Helper::Slirp4netns {
        // host_loopback(false): the same gateway no longer reaches the host's loopback,
        // where a listener (never accepting: the handshake would complete in its backlog)
        // is kept open for the whole test. Only slirp4netns refuses at once; pasta's gateway
        // without the mapping is an address nobody answers for.
        let guard: u16 = std::env::var("NK_USERNET_GUARD").unwrap().parse().unwrap();
        let probe = |host_loopback: bool| {
            let mut spec = UserNetSpec::new();
            spec.backend(backend).host_loopback(host_loopback);
            let script = format!("exec 3<>/dev/tcp/{gateway}/{guard} && echo CONNECTED || echo REFUSED");
            let out = Sandbox::builder()
                .network(NetworkMode::UserNet(spec))
                .timeout(PATIENCE)
                .command("/bin/bash")
                .args(["-c", &script])
                .output()
                .expect("run the probe");
            assert_eq!(out.outcome, Outcome::Exited(0));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(probe(true), "CONNECTED");
        assert_eq!(probe(false), "REFUSED");
        assert_eq!(children(), Vec::<String>::new());
    }

    // Published port: a server in the sandbox, a client here (the host namespace) on
    // 127.0.0.1.
    let host_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut published = PortMapping::tcp(host_port, 8080);
    published.host_ip = Some(IpAddr::from([127, 0, 0, 1]));
    let mut spec = UserNetSpec::new();
    spec.backend(backend).port(published);
    let script = format!("echo NK-SANDBOX {nonce} | busybox nc -l -p 8080");
    let mut sb = Sandbox::builder()
        .network(NetworkMode::UserNet(spec))
        .timeout(PATIENCE)
        .command("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawn with a published port");
    let helper_pid = sb.user_net().unwrap().pid().unwrap();
    // The spawn returned with the port already published: the helper listens here.
    assert!(listening(host_port), "127.0.0.1:{host_port} not listening once the spawn returned");
    let start = Instant::now();
    // The helper accepts before the sandbox's server listens: retry until it answers.
    let line = loop {
        let mut line = String::new();
        if let Ok(conn) = TcpStream::connect(("127.0.0.1", host_port)) {
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = BufReader::new(&conn).read_line(&mut line);
        }
        if line.contains("NK-SANDBOX") || start.elapsed() > PATIENCE {
            break line;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(line.trim(), format!("NK-SANDBOX {nonce}"));
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    assert!(!Path::new(&format!("/proc/{helper_pid}")).exists(), "helper {helper_pid} left");
    assert_eq!(children(), Vec::<String>::new());
    assert_eq!(api_dirs(), Vec::<String>::new());
    // The port is closed with the helper.
    assert!(!listening(host_port), "port {host_port} still listening");
    assert!(TcpStream::connect(("127.0.0.1", host_port)).is_err(), "port {host_port} still open");
}

/// The privileged half: the host namespace with its loopback server, the unprivileged
/// caller in it, and what the server saw.
fn round_trip(entry: &str) {
    round_trip_with(entry, Some(NOBODY), "");
}

/// [`round_trip`] with the caller as `user` (`None`: root), `NK_USERNET_BACKEND` set to
/// `backend`.
fn round_trip_with(entry: &str, user: Option<u32>, backend: &str) {
    let host = host_ns();
    let (port, server) = loopback_server(&host);
    let nonce = format!("nk{}x{}", std::process::id(), port);
    let guard = host.run(|| TcpListener::bind("127.0.0.1:0")).unwrap().expect("bind the guard listener");
    let env = [
        ("NK_USERNET_GUARD", guard.local_addr().unwrap().port().to_string()),
        ("NK_USERNET_PORT", port.to_string()),
        ("NK_USERNET_NONCE", nonce.clone()),
        ("NK_USERNET_BACKEND", backend.to_owned()),
    ];
    run_in_host(entry, &host, 0o666, &env, user);
    let (peer, line) = server.join().expect("server");
    assert_eq!(line, nonce, "the sandbox's line reached the host's loopback server");
    assert!(peer.ip().is_loopback(), "the helper connects from the host's loopback: {peer}");
}

#[test]
fn slirp4netns_gives_an_unprivileged_sandbox_outbound_and_published_ports() {
    const ME: &str = "slirp4netns_gives_an_unprivileged_sandbox_outbound_and_published_ports";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        // 10.0.2.2 is slirp4netns' gateway, mapped to the host's 127.0.0.1.
        unprivileged_round_trip(UserNetBackend::Slirp4netns, Helper::Slirp4netns, "10.0.2.2", "tap0");
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    // The parent holds descriptors (namespaces, listeners) that other tests would count.
    let _serial = crate::sandbox::serial();
    round_trip(ME);
}

#[test]
fn pasta_gives_an_unprivileged_sandbox_outbound_and_published_ports() {
    const ME: &str = "pasta_gives_an_unprivileged_sandbox_outbound_and_published_ports";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        // pasta copies the host's address and gateway, and maps the gateway to the host's
        // loopback; the interface keeps the host interface's name.
        unprivileged_round_trip(UserNetBackend::Pasta, Helper::Pasta, HOST_GW, "nkun0");
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    // The parent holds descriptors (namespaces, listeners) that other tests would count.
    let _serial = crate::sandbox::serial();
    round_trip(ME);
}

/// An owner that dies without tearing its sandbox down takes the helper with it (its
/// parent-death signal; slirp4netns' exit pipe closes too): nothing of the user-mode
/// network outlives the unprivileged caller.
#[test]
fn the_helper_dies_with_its_unprivileged_owner() {
    const ME: &str = "the_helper_dies_with_its_unprivileged_owner";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        assert_unprivileged();
        let backend = match std::env::var("NK_USERNET_BACKEND").as_deref() {
            Ok("pasta") => UserNetBackend::Pasta,
            _ => UserNetBackend::Slirp4netns,
        };
        let mut spec = UserNetSpec::new();
        spec.backend(backend);
        let sb = Sandbox::builder()
            .network(NetworkMode::UserNet(spec))
            .command("/bin/sleep")
            .arg("1000")
            .spawn()
            .expect("spawn with a user-mode network");
        println!("NK-HELPER {} NK-INIT {}", sb.user_net().unwrap().pid().unwrap(), sb.id());
        println!("NK-OK {ME}");
        // Die without any teardown.
        std::mem::forget(sb);
        std::process::exit(0);
    }
    require_root!();
    // The parent holds descriptors (namespaces, listeners) that other tests would count.
    let _serial = crate::sandbox::serial();
    let host = host_ns();
    for backend in ["slirp4netns", "pasta"] {
        let out = run_as_nobody(ME, &host, 0o666, &[("NK_USERNET_BACKEND", backend.to_owned())]);
        let words: Vec<&str> = out.split_whitespace().collect();
        let pid_after = |tag: &str| words[words.iter().position(|w| *w == tag).unwrap() + 1].to_owned();
        for pid in [pid_after("NK-HELPER"), pid_after("NK-INIT")] {
            let start = Instant::now();
            // Ended: gone, or a zombie — reaped here when it was reparented to this test
            // process (another test of this binary makes it a child subreaper).
            while still_running(&pid) {
                assert!(start.elapsed() < PATIENCE, "{backend}: process {pid} outlived its owner");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether `pid` still runs: not gone and not a zombie. A zombie that is this process's
/// child (an orphan reparented to it) is reaped.
fn still_running(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name's closing parenthesis.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    if state == Some('Z')
        && let Ok(p) = pid.parse::<i32>()
    {
        // SAFETY: waitpid with WNOHANG on one pid; ECHILD when it is not our child.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
    }
    // 'X': dead, being reaped right now.
    !matches!(state, Some('Z' | 'X'))
}

/// The user-mode network error of a failed spawn.
fn usernet_error(spawned: Result<(), Error>) -> UserNetError {
    match spawned {
        Err(Error::Netmodel(nook_netmodel::Error::UserNet(e))) => *e,
        other => panic!("expected a user-mode network error, got {other:?}"),
    }
}

/// A root caller's sandbox has no user namespace of its own: the helpers join only its
/// network namespace (pasta `--netns`, slirp4netns `--netns-type=path`), and work the same.
#[test]
fn a_root_callers_sandbox_gets_the_same_user_mode_network() {
    const ME: &str = "a_root_callers_sandbox_gets_the_same_user_mode_network";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        assert_eq!(rustix::process::geteuid().as_raw(), 0);
        match std::env::var("NK_USERNET_BACKEND").as_deref() {
            Ok("pasta") => round_trip_inside(UserNetBackend::Pasta, Helper::Pasta, HOST_GW, "nkun0"),
            _ => round_trip_inside(UserNetBackend::Slirp4netns, Helper::Slirp4netns, "10.0.2.2", "tap0"),
        }
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    // The parent holds descriptors (namespaces, listeners) that other tests would count.
    let _serial = crate::sandbox::serial();
    for backend in ["slirp4netns", "pasta"] {
        round_trip_with(ME, None, backend);
    }
}

#[test]
fn missing_helper_or_tun_is_a_typed_error_and_leaves_nothing() {
    const ME: &str = "missing_helper_or_tun_is_a_typed_error_and_leaves_nothing";
    if std::env::var(ROLE_VAR).as_deref() == Ok(ME) {
        assert_unprivileged();
        let spawn = |spec: UserNetSpec| {
            usernet_error(Sandbox::builder().network(NetworkMode::UserNet(spec)).command("/bin/true").spawn().map(drop))
        };
        if std::env::var("NK_USERNET_TUN").as_deref() == Ok("usable") {
            let mut spec = UserNetSpec::new();
            spec.program("/nk-nonexistent/slirp4netns");
            match spawn(spec) {
                UserNetError::NotFound { path: Some(p), wanted, .. } => {
                    assert_eq!(p, Path::new("/nk-nonexistent/slirp4netns"));
                    assert_eq!(wanted, ["pasta", "slirp4netns"]);
                }
                other => panic!("expected NotFound, got {other:?}"),
            }
            // A detached sandbox outlives its creator, the helper would not: refused.
            let mut b = Sandbox::builder();
            b.network(NetworkMode::UserNet(UserNetSpec::new())).command("/bin/true");
            match b.spawn_detached(None) {
                Err(Error::Invalid(nook_sandbox::ValidationError::UserNetDetached)) => {}
                other => panic!("expected UserNetDetached, got {other:?}"),
            }
            // A helper that is there but fails (not a network stack at all): its failure,
            // typed, with what it said.
            let mut spec = UserNetSpec::new();
            spec.backend(UserNetBackend::Slirp4netns).program("/bin/false");
            match spawn(spec) {
                UserNetError::HelperFailed { status, .. } => {
                    assert_eq!(status.and_then(|s| s.code()), Some(1));
                }
                other => panic!("expected HelperFailed, got {other:?}"),
            }
        } else {
            match spawn(UserNetSpec::new()) {
                UserNetError::TunUnavailable { source, .. } => {
                    assert_eq!(source.raw_os_error(), Some(libc::EACCES));
                }
                other => panic!("expected TunUnavailable, got {other:?}"),
            }
        }
        // The paused sandbox and any helper were killed and reaped.
        assert_eq!(children(), Vec::<String>::new());
        assert_eq!(api_dirs(), Vec::<String>::new());
        println!("NK-OK {ME}");
        return;
    }
    require_root!();
    // The parent holds descriptors (namespaces, listeners) that other tests would count.
    let _serial = crate::sandbox::serial();
    let host = host_ns();
    run_as_nobody(ME, &host, 0o666, &[("NK_USERNET_TUN", "usable".to_owned())]);
    run_as_nobody(ME, &host, 0o600, &[("NK_USERNET_TUN", "root-only".to_owned())]);
}
