//! `Command::terminal` (runc's console socket: a pty whose master is sent over a socket, its
//! peer the child's stdio and controlling terminal) and `Command::session_keyring`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nook_ns::Command;
use nook_testutil::require_root;

/// The descriptor sent over `sock` (`SCM_RIGHTS`) and the message's bytes.
fn recv_fd(sock: &UnixStream) -> (OwnedFd, Vec<u8>) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    let got = recvmsg(sock, &mut [std::io::IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC).unwrap();
    let fd = control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("a descriptor");
    (fd, name[..got.bytes].to_vec())
}

#[test]
fn terminal_is_stdio_and_controlling_terminal_of_a_new_session() {
    require_root!();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let script = "for f in 0 1 2; do test -t $f && echo tty$f; done; \
                  read -r pid comm state ppid pgrp sid tty rest < /proc/self/stat; \
                  [ $sid = $$ ] && echo session-leader; [ $tty != 0 ] && echo has-ctty; stty size";
    let mut child =
        Command::new("/bin/sh").args(["-c", script]).terminal(theirs).terminal_size(24, 91).spawn().unwrap();
    let (master, name) = recv_fd(&ours);
    assert_eq!(name, b"/dev/ptmx");
    let text = read_to_eio(master);
    assert!(child.wait().unwrap().success());
    assert_eq!(text, "tty0\ntty1\ntty2\nsession-leader\nhas-ctty\n24 91\n");
}

#[test]
fn session_keyring_is_joined_with_its_permissions() {
    require_root!();
    let name = format!("nk-ses-{}", std::process::id());
    let out = Command::new("/bin/sh")
        .args(["-c", &format!("grep ' {name}: ' /proc/keys")])
        .session_keyring(&name, Some(0x3f1b_0000))
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.get(4), Some(&"3f1b0000"), "{line:?}");
    assert_eq!(fields.get(7), Some(&"keyring"), "{line:?}");
}

/// Runs `sh -c script` on a new terminal (with `terminal_console`) in `set`; what it printed.
fn on_terminal(set: nook_ns::NamespaceSet, script: &str) -> String {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new("/bin/sh")
        .args(["-c", script])
        .namespaces(set)
        .terminal(theirs)
        .terminal_console(true)
        .spawn()
        .unwrap();
    let (master, _) = recv_fd(&ours);
    let text = read_to_eio(master);
    assert!(child.wait().unwrap().success(), "{text}");
    text
}

/// What a terminal's master reads until EIO (the child's last peer closed), `\r` dropped.
fn read_to_eio(master: OwnedFd) -> String {
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 512];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

/// `Command::terminal_console`: in a mount namespace of its own the child's `/dev/console` is
/// its terminal (the peer bind-mounted there); without one nothing is mounted — the caller's
/// `/dev/console` stays the caller's, for the child too.
#[test]
fn terminal_console_binds_the_terminal_only_in_a_mount_namespace_of_its_own() {
    use std::os::unix::fs::MetadataExt;
    require_root!();
    let host = std::fs::metadata("/dev/console").map(|m| m.rdev()).ok();
    let script = "c=$(stat -L -c %t:%T /dev/console 2>/dev/null); t=$(stat -L -c %t:%T $(tty)); \
                  [ \"$c\" = \"$t\" ] && echo console-is-the-terminal || echo console-is-$c";
    let own = on_terminal(nook_ns::Namespace::Mount.as_set(), script);
    assert_eq!(own, "console-is-the-terminal\n");
    let none = on_terminal(nook_ns::NamespaceSet::new(), script);
    assert_ne!(none, "console-is-the-terminal\n");
    assert_eq!(std::fs::metadata("/dev/console").map(|m| m.rdev()).ok(), host, "the host's /dev/console is untouched");
}
