//! `process.terminal` with `--console-socket` (create, exec) and without (a foreground
//! `run` relays), `--preserve-fds` and `LISTEN_FDS`, `--no-pivot`, and the session keyring
//! (`--no-new-keyring`), against runc and nook-oci.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use nook_testutil::{TempDir, require_root};
use serde_json::{Value, json};

use crate::harness::{compare, p};

/// Extra busybox applets these scenarios use, linked into the shared rootfs.
fn applets(tmp: &TempDir) {
    for a in ["tty", "stty", "ls", "cut", "readlink", "stat"] {
        let link = tmp.join("rootfs/bin").join(a);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
}

/// A console socket at `path`: a thread that accepts one connection and receives the
/// terminal master sent over it (`SCM_RIGHTS`) with the message's bytes.
fn console_socket(path: &Path) -> std::thread::JoinHandle<(OwnedFd, Vec<u8>)> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let (conn, _) = listener.accept().unwrap();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 256];
        let got =
            recvmsg(&conn, &mut [std::io::IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC).unwrap();
        let fd = control
            .drain()
            .find_map(|m| match m {
                RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("a descriptor with the message");
        (fd, name[..got.bytes].to_vec())
    })
}

/// Writes `input` to the master, then reads everything until the terminal's last peer is
/// closed (EIO); `\r` dropped (the terminal's ONLCR).
fn converse(master: OwnedFd, input: &str) -> String {
    let mut f = std::fs::File::from(master);
    f.write_all(input.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

/// What a process sees of its terminal: a line read from it, `tty`, `test -t` on its
/// stdio, a controlling terminal (`/dev/tty` opens), its size.
const TTY_SCRIPT: &str = "read line; echo got:$line; tty; for f in 0 1 2; do test -t $f && echo tty$f; done; \
     (echo ctty-ok > /dev/tty) 2>/dev/null || echo no-ctty; stty size";

#[test]
fn create_with_console_socket_gives_a_terminal() {
    require_root!();
    let obs = compare("con", |tmp, rt| {
        applets(tmp);
        let sock = tmp.join(format!("{}-console.sock", rt.name));
        // The container's first process: its terminal is also /dev/console (runc binds it).
        let script = format!(
            "{TTY_SCRIPT}; [ \"$(stat -L -c %t:%T /dev/console)\" = \"$(stat -L -c %t:%T /dev/pts/0)\" ] && echo console-is-the-terminal"
        );
        let b = rt.bundle(tmp, "tty1", &["sh", "-c", &script], |c| {
            c["process"]["terminal"] = json!(true);
            c["process"]["consoleSize"] = json!({"height": 30, "width": 101});
        });
        let mut o = Vec::new();
        let receiver = console_socket(&sock);
        let created = rt.run(&["create", "--console-socket", p(&sock), "--bundle", p(&b), "tty1"]);
        assert_eq!(created.code, 0, "{}: {}", rt.name, created.stderr);
        let (master, name) = receiver.join().unwrap();
        o.push(format!("message {:?}", String::from_utf8_lossy(&name).trim_end_matches('\0')));
        assert_eq!(rt.run(&["start", "tty1"]).code, 0);
        let text = converse(master, "hello\n");
        // The terminal echoes the input line first.
        o.extend(text.lines().map(str::to_owned));
        o.push(format!("status {}", rt.wait_status("tty1", "stopped")));
        assert_eq!(rt.run(&["delete", "tty1"]).code, 0);
        o
    });
    assert_eq!(
        obs,
        [
            "message \"/dev/ptmx\"",
            "hello",
            "got:hello",
            "/dev/pts/0",
            "tty0",
            "tty1",
            "tty2",
            "ctty-ok",
            "30 101",
            "console-is-the-terminal",
            "status stopped"
        ]
    );
}

#[test]
fn exec_tty_with_console_socket_and_the_refusals() {
    require_root!();
    let obs = compare("cex", |tmp, rt| {
        applets(tmp);
        let b = rt.bundle(tmp, "tty2", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "tty2"]).code, 0);
        let mut o = Vec::new();
        let sock = tmp.join(format!("{}-exec.sock", rt.name));
        let receiver = console_socket(&sock);
        let e = rt.run(&["exec", "--detach", "--tty", "--console-socket", p(&sock), "tty2", "sh", "-c", TTY_SCRIPT]);
        assert_eq!(e.code, 0, "{}: {}", rt.name, e.stderr);
        let (master, _) = receiver.join().unwrap();
        let text = converse(master, "there\n");
        o.extend(text.lines().filter(|l| !l.contains(' ')).map(str::to_owned));
        // runc's refusals: a terminal when detaching without a console socket, a console
        // socket without a terminal.
        let no_sock = rt.run(&["exec", "--detach", "--tty", "tty2", "true"]);
        o.push(format!("detached tty without socket fails: {}", no_sock.code != 0));
        let b2 = rt.bundle(tmp, "tty3", &["true"], |c| c["process"]["terminal"] = json!(true));
        o.push(format!("create tty without socket: {}", rt.run(&["create", "--bundle", p(&b2), "tty3"]).code));
        let b3 = rt.bundle(tmp, "tty4", &["true"], |_| {});
        let s = tmp.join(format!("{}-unused.sock", rt.name));
        let socket_alone = rt.run(&["create", "--console-socket", p(&s), "--bundle", p(&b3), "tty4"]);
        o.push(format!("socket without tty: {}", socket_alone.code));
        assert_eq!(rt.run(&["delete", "--force", "tty2"]).code, 0);
        o
    });
    assert_eq!(
        obs,
        [
            "there",
            "got:there",
            "/dev/pts/0",
            "tty0",
            "tty1",
            "tty2",
            "ctty-ok",
            "detached tty without socket fails: true",
            "create tty without socket: 1",
            "socket without tty: 1"
        ]
    );
}

/// A foreground `run` with a terminal and no console socket: nook-oci relays between its
/// own stdio and the terminal, as runc does (runc also needs its own stdin to be a
/// terminal, which it puts in raw mode; nook-oci relays from any stdin).
#[test]
fn foreground_run_relays_the_terminal() {
    require_root!();
    let tmp = TempDir::new("crl").unwrap();
    crate::harness::rootfs(&tmp);
    applets(&tmp);
    let rt = crate::harness::runtimes(&tmp, "crl").pop().unwrap();
    let b = rt.bundle(&tmp, "tty5", &["sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty; exit 3"], |c| {
        c["process"]["terminal"] = json!(true);
    });
    let out = rt.run(&["run", "--bundle", p(&b), "tty5"]);
    assert_eq!(out.code, 3, "{out:?}");
    // ONLCR is cleared on the master: plain newlines.
    assert_eq!(out.stdout, "/dev/pts/0\nstdin-is-a-tty\n", "{out:?}");
}

/// A pseudo-terminal of `rows` × `cols`: (master, peer), both close-on-exec (`openpty(3)`
/// makes inheritable descriptors, which the tools other tests start at the same time would
/// inherit: a terminal held open by a stranger, and numbers 3.. open in them).
fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt takes flags only; a new descriptor, or -1.
    let fd = unsafe { libc::posix_openpt(flags) };
    assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor that we own.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: unlockpt and TIOCGPTPEER act on the master we own; TIOCGPTPEER returns a new
    // descriptor of the peer, or -1.
    let peer = unsafe {
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt: {}", std::io::Error::last_os_error());
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags)
    };
    assert!(peer >= 0, "TIOCGPTPEER: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor that we own.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }, 0);
    (master, peer)
}

/// Reads the terminal's master into `seen` until it contains `want`, or the terminal's
/// last peer is closed; fails after 30 s (the supervisor is killed then).
fn read_until(master: &mut std::fs::File, seen: &mut String, want: &str, tool: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut buf = [0u8; 1024];
    while !seen.contains(want) {
        if std::time::Instant::now() > deadline {
            let _ = tool.kill();
            let _ = tool.wait();
            panic!("no {want:?} on the terminal within 30 s; it showed {seen:?}");
        }
        let mut fds = [rustix::event::PollFd::new(&*master, rustix::event::PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 })).unwrap_or(0)
            == 0
        {
            continue;
        }
        match master.read(&mut buf) {
            Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            // EIO: every peer closed (the supervisor exited).
            _ => break,
        }
    }
}

/// A foreground `run` on a terminal: what is typed reaches the process while it runs, and
/// the process's terminal takes our terminal's size — when the relay starts and on every
/// `SIGWINCH` (as runc). (Was: the relay started only once the process had ended, so
/// nothing typed reached it; the size was never copied.)
#[test]
fn foreground_run_on_a_terminal_relays_input_and_window_size() {
    require_root!();
    let tmp = TempDir::new("cwz").unwrap();
    crate::harness::rootfs(&tmp);
    applets(&tmp);
    let rt = crate::harness::runtimes(&tmp, "cwz").pop().unwrap();
    let script = "stty size; read line; echo got:$line; i=0; \
         while [ $i -lt 100 ]; do s=$(stty size); [ \"$s\" = '30 100' ] && break; i=$((i+1)); sleep 0.1; done; \
         echo size:$s.";
    let b = rt.bundle(&tmp, "tty6", &["sh", "-c", script], |c| c["process"]["terminal"] = json!(true));
    let (master, peer) = openpty(24, 80);
    let mut tool = rt.spawn_on_terminal(&["run", "--bundle", p(&b), "tty6"], &peer);
    drop(peer);
    let mut term = std::fs::File::from(master);
    let mut seen = String::new();
    read_until(&mut term, &mut seen, "24 80", &mut tool);
    term.write_all(b"hello\n").unwrap();
    read_until(&mut term, &mut seen, "got:hello", &mut tool);
    // Our terminal grows: the kernel sends SIGWINCH to its foreground process group.
    let size = libc::winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    assert_eq!(unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&term), libc::TIOCSWINSZ, &size) }, 0);
    read_until(&mut term, &mut seen, ".", &mut tool);
    read_until(&mut term, &mut seen, "\u{0}", &mut tool);
    let status = tool.wait().unwrap();
    assert!(seen.contains("size:30 100."), "{seen:?}");
    assert_eq!(status.code(), Some(0), "{seen:?}");
}

/// A foreground `exec --tty` on a terminal: the process's terminal has our terminal's size
/// from its first instruction (given when the terminal is made; was: copied once the relay
/// started, which a process asking at once could beat and see 0 rows).
#[test]
fn foreground_exec_on_a_terminal_starts_at_its_size() {
    require_root!();
    let tmp = TempDir::new("cws").unwrap();
    crate::harness::rootfs(&tmp);
    applets(&tmp);
    let rt = crate::harness::runtimes(&tmp, "cws").pop().unwrap();
    let b = rt.bundle(&tmp, "tty7", &["sleep", "1000"], |_| {});
    assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "tty7"]).code, 0);
    for round in 0..5 {
        let (master, peer) = openpty(33 + round, 111);
        let mut tool = rt.spawn_on_terminal(&["exec", "--tty", "tty7", "stty", "size"], &peer);
        drop(peer);
        let mut term = std::fs::File::from(master);
        let mut seen = String::new();
        read_until(&mut term, &mut seen, "\u{0}", &mut tool);
        assert_eq!(tool.wait().unwrap().code(), Some(0), "{seen:?}");
        assert_eq!(seen.trim(), format!("{} 111", 33 + round));
    }
    assert_eq!(rt.run(&["delete", "--force", "tty7"]).code, 0);
}

/// `--preserve-fds N` passes nook-oci's descriptors 3..3+N; `LISTEN_FDS` (with
/// `LISTEN_PID` its own pid) passes systemd's sockets first and sets `LISTEN_FDS` and
/// `LISTEN_PID=1` in the container.
#[test]
fn preserve_fds_and_listen_fds() {
    require_root!();
    let obs = compare("pfd", |tmp, rt| {
        applets(tmp);
        let input = tmp.join("nk-in.txt");
        std::fs::write(&input, "from-fd-3\n").unwrap();
        let sink = tmp.join(format!("{}-sink.txt", rt.name));
        let script = "cat <&3; echo to-fd-4 >&4; echo listen=$LISTEN_FDS/$LISTEN_PID; \
                      for f in 5 6; do [ -e /proc/self/fd/$f ] && echo fd$f-open; done; true";
        let b = rt.bundle(tmp, "pf1", &["sh", "-c", script], |_| {});
        let redirs = format!("3<{} 4>{} 5</dev/null", input.display(), sink.display());
        let mut o = Vec::new();
        let out = rt.run_sh("", &["run", "--preserve-fds", "2", "--bundle", p(&b), "pf1"], &redirs);
        o.push(format!("preserve: {} {:?}", out.code, out.stdout));
        o.push(format!("sink: {:?}", std::fs::read_to_string(&sink).unwrap_or_default()));
        // systemd socket activation: fd 3 is the activation descriptor, 4 the preserved one.
        let b = rt.bundle(tmp, "pf2", &["sh", "-c", script], |_| {});
        let out = rt.run_sh(
            "export LISTEN_PID=$$ LISTEN_FDS=1",
            &["run", "--preserve-fds", "1", "--bundle", p(&b), "pf2"],
            &redirs,
        );
        o.push(format!("listen: {} {:?}", out.code, out.stdout));
        // A preserved number that is not open fails.
        let b = rt.bundle(tmp, "pf3", &["true"], |_| {});
        o.push(format!(
            "missing fd fails: {}",
            rt.run(&["run", "--preserve-fds", "5", "--bundle", p(&b), "pf3"]).code != 0
        ));
        o
    });
    assert_eq!(obs[0], "preserve: 0 \"from-fd-3\\nlisten=/\\n\"");
    assert_eq!(obs[1], "sink: \"to-fd-4\\n\"");
    assert_eq!(obs[2], "listen: 0 \"from-fd-3\\nlisten=1/1\\n\"");
    assert_eq!(obs[3], "missing fd fails: true");
}

/// `--no-pivot`: the root is moved onto `/` (`MS_MOVE`) and chrooted into, so the caller's
/// root mount stays in the container's mount namespace beneath it; `pivot_root` detaches it.
/// Seen from the host: detach the top mount of the namespace's root (`umount -l /` after
/// `nsenter -m`) and enter again: with `--no-pivot` the root is then the caller's root mount
/// with its mounts, where the test's own directory is; with `pivot_root` it is the
/// namespace's bottom mount (the initial rootfs: empty here, without the guest's `/tmp`
/// mount in the v2 lane), where it is not.
#[test]
fn no_pivot_moves_the_root() {
    require_root!();
    let Some(nsenter) = ["/usr/bin/nsenter", "/bin/nsenter"].into_iter().find(|p| Path::new(p).exists()) else {
        nook_testutil::skip_unsupported("oci::console::no_pivot_moves_the_root", "needs nsenter (util-linux)");
        return;
    };
    let obs = compare("npv", |tmp, rt| {
        let mut o = Vec::new();
        for (id, flags) in [("np1", vec![]), ("np2", vec!["--no-pivot"])] {
            let b = rt.bundle(tmp, id, &["sleep", "1000"], |_| {});
            let b = b.display().to_string();
            let mut args = vec!["run", "--detach"];
            args.extend(flags);
            args.extend(["--bundle", &b, id]);
            assert_eq!(rt.run(&args).code, 0);
            let pid = rt.state(id).unwrap()["pid"].as_u64().unwrap().to_string();
            let enter = |cmd: &[&str]| {
                let out = std::process::Command::new(nsenter)
                    .args(["-m", "-t", &pid, "--", "/bin/busybox"])
                    .args(cmd)
                    .output()
                    .unwrap();
                (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
            };
            assert!(enter(&["true"]).0, "nsenter into {id}");
            assert!(enter(&["umount", "-l", "/"]).0);
            let ours = tmp.join("rootfs/bin/busybox").display().to_string();
            let (beneath, _) = enter(&["test", "-e", &ours]);
            o.push(format!("{id}: beneath the container's root the caller's: {beneath}"));
            assert_eq!(rt.run(&["delete", "--force", id]).code, 0);
        }
        o
    });
    assert_eq!(
        obs,
        [
            "np1: beneath the container's root the caller's: false",
            "np2: beneath the container's root the caller's: true"
        ]
    );
}

/// The session keyring: `_ses.<id>`, made searchable by its owner (perm 3f1b0000), unless
/// `--no-new-keyring`.
#[test]
fn session_keyring_and_no_new_keyring() {
    require_root!();
    let obs = compare("key", |tmp, rt| {
        applets(tmp);
        let mut o = Vec::new();
        for (id, flags) in [("nkk1", vec![]), ("nkk2", vec!["--no-new-keyring"])] {
            let script =
                format!("grep -c ' _ses.{id}: ' /proc/keys; set -- $(grep ' _ses.{id}: ' /proc/keys); echo $5");
            let b = rt.bundle(tmp, id, &["sh", "-c", &script], unmask_keys);
            let mut args = vec!["run"];
            args.extend(flags);
            let b = b.display().to_string();
            args.extend(["--bundle", &b, id]);
            let out = rt.run(&args);
            o.push(format!("{id}: {:?}", out.stdout));
        }
        o
    });
    assert_eq!(obs, ["nkk1: \"1\\n3f1b0000\\n\"", "nkk2: \"0\\n\\n\""]);
}

/// `/proc/keys` out of `maskedPaths` (runc spec masks it).
fn unmask_keys(c: &mut Value) {
    if let Some(m) = c["linux"]["maskedPaths"].as_array_mut() {
        m.retain(|p| p != "/proc/keys");
    }
}
