//! `Command::start_gate` (runc's exec fifo): the spawn returns with the child set up but
//! not exec'd; opening the fifo for reading lets it exec; a missing fifo is
//! `Stage::StartGate`; the child does not die with its spawner without a death signal.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nook_ns::{Command, Error, MountStep, Namespace, NamespaceSet, Stage, Stdio};
use nook_testutil::{TempDir, require_root};

fn fifo_dir(tmp: &TempDir) -> OwnedFd {
    let fifo = tmp.join("exec.fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o622), 0)
        .unwrap();
    rustix::fs::open(tmp.path(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
        .unwrap()
}

/// The program named in `/proc/PID/exe` (its basename).
fn exe(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap().file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn child_waits_at_the_gate_until_a_reader_opens_it() {
    require_root!();
    let tmp = TempDir::new("gat").unwrap();
    let dir = fifo_dir(&tmp);
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo started; exit 4"])
        .namespaces(NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount))
        .mount(MountStep::proc("/proc"))
        .stdout(Stdio::piped())
        .start_gate(dir, "exec.fifo");
    let mut child = cmd.spawn().unwrap();
    // Set up (its /proc mounted), but still the spawner's image: not exec'd.
    assert!(child.try_wait().unwrap().is_none());
    assert_ne!(exe(child.id()), "dash");
    assert_ne!(exe(child.id()), "sh");
    // The child is blocked in open(2) of the fifo: a reader releases it and gets its byte.
    let mut fifo = std::fs::File::open(tmp.join("exec.fifo")).unwrap();
    let mut byte = [0u8; 1];
    fifo.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"0");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "started\n");
    assert_eq!(child.wait().unwrap().code(), Some(4));
}

#[test]
fn missing_fifo_is_a_start_gate_error() {
    require_root!();
    let tmp = TempDir::new("gam").unwrap();
    let dir = rustix::fs::open(
        tmp.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let err = Command::new("/bin/true").unshare(Namespace::Pid).start_gate(dir, "nk-missing").spawn().unwrap_err();
    match err {
        Error::Spawn(e) => {
            assert_eq!(e.stage, Stage::StartGate);
            assert_eq!(e.errno, libc::ENOENT);
        }
        other => panic!("expected a start-gate spawn error, got {other:?}"),
    }
}

#[test]
fn a_missing_program_fails_the_spawn_before_the_gate() {
    require_root!();
    let tmp = TempDir::new("gae").unwrap();
    let dir = fifo_dir(&tmp);
    let err =
        Command::new("nk-no-such-program").unshare(Namespace::Pid).start_gate(dir, "exec.fifo").spawn().unwrap_err();
    assert!(matches!(&err, Error::Spawn(e) if e.stage == Stage::Exec && e.errno == libc::ENOENT), "{err:?}");
}

#[test]
fn no_parent_death_signal_clears_it() {
    require_root!();
    let tmp = TempDir::new("gap").unwrap();
    let marker = tmp.join("alive");
    // A spawner thread that exits: with the death signal tied to it the child would die.
    let script = format!("sleep 0.3; echo yes > {}", marker.display());
    let mut child = std::thread::spawn(move || {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &script]).kill_with_parent(libc::SIGKILL).no_parent_death_signal();
        cmd.spawn().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(Path::new(&marker).exists());
}
