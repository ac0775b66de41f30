//! `SandboxChild`, the process `exec` starts in a long-lived sandbox: std::process::Child's
//! methods, an `Outcome` as the result, and every wait and signal through the pidfd.

use std::path::Path;
use std::time::Duration;

use nook_ns::Stdio;
use nook_sandbox::{Outcome, Sandbox};
use nook_testutil::require_root;

use crate::sandbox::serial;

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn an_exec_child_waits_signals_times_out_and_says_why_it_ended() {
    require_root!();
    let _serial = serial();
    let sb = Sandbox::builder().create().unwrap();

    // An exit code, then the cached outcome; killing an ended child is not an error (std).
    let mut c = sb.exec(["sh", "-c", "exit 3"]).spawn().unwrap();
    assert!(sb.processes().unwrap().contains(&c.id()) || c.try_wait().unwrap().is_some());
    assert_eq!(c.wait().unwrap(), Outcome::Exited(3));
    assert_eq!(c.try_wait().unwrap(), Some(Outcome::Exited(3)));
    c.kill().unwrap();
    assert!(gone(c.id()), "waited for: reaped");

    // A signal through the pidfd, seen as the signal (no 128 + n: not a child of nk-init).
    let mut c = sb.exec(["sleep", "1000"]).spawn().unwrap();
    assert_eq!(c.try_wait().unwrap(), None, "still running");
    c.signal(libc::SIGTERM).unwrap();
    assert_eq!(c.wait().unwrap(), Outcome::Signaled(libc::SIGTERM));
    let err = c.signal(libc::SIGTERM).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "a reaped child is never signalled: {err}");

    // A timeout kills it and says so.
    let mut c = sb.exec(["sleep", "1000"]).spawn().unwrap();
    let pid = c.id();
    assert_eq!(c.wait_timeout(Duration::from_millis(50)).unwrap(), Outcome::TimedOut);
    assert!(gone(pid), "killed and reaped");
    assert_eq!(c.wait().unwrap(), Outcome::TimedOut, "the outcome stays");
    // One that ends in time is not TimedOut.
    let mut c = sb.exec(["true"]).spawn().unwrap();
    assert_eq!(c.wait_timeout(Duration::from_secs(600)).unwrap(), Outcome::Exited(0));

    // status and output.
    assert_eq!(sb.exec(["false"]).status().unwrap(), Outcome::Exited(1));
    let out = sb.exec(["sh", "-c", "echo out; echo err >&2; exit 4"]).output().unwrap();
    assert_eq!(out.outcome, Outcome::Exited(4));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    // The stdio pipes are fields, like std's; wait closes stdin.
    let mut c = sb.exec(["cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"through the pipe").unwrap();
    let mut stdout = c.stdout.take().unwrap();
    assert_eq!(c.wait().unwrap(), Outcome::Exited(0), "cat saw EOF: wait closed its stdin");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut got).unwrap();
    assert_eq!(got, "through the pipe");

    // Dropped unfinished: killed and reaped.
    let c = sb.exec(["sleep", "1000"]).spawn().unwrap();
    let pid = c.id();
    assert!(!gone(pid));
    drop(c);
    assert!(gone(pid), "dropping a running child kills and reaps it");

    assert_eq!(sb.processes().unwrap(), [sb.id()], "only the init is left");
    sb.remove().unwrap();
}
