//! Detached sandboxes (`SandboxBuilder::spawn_detached`, `nook_sandbox::detached`): the
//! program is PID 1, it outlives its handle, waits at a start gate, and a reopened handle
//! signals, execs into and removes it (cgroup included).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::Path;

use nook_sandbox::detached::{Detached, ExecProcess, open_start_gate};
use nook_sandbox::{Rootfs, Sandbox, SeccompMode};
use nook_testutil::{TempDir, require_root, tiny_rootfs};

#[test]
fn outlives_its_handle_and_is_removed_from_the_record() {
    require_root!();
    let tmp = TempDir::new("det").unwrap();
    let root = tmp.join("root");
    tiny_rootfs(&root).unwrap();
    let fifo = tmp.join("exec.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let dir = rustix::fs::open(
        tmp.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let mut b = Sandbox::builder();
    b.rootfs(Rootfs::dir(&root))
        .seccomp(SeccompMode::Unconfined)
        .command("/bin/sh")
        .args(["-c", "echo $$ > /tmp/pid; exec sleep 1000"]);
    let sb = b.spawn_detached(Some((dir, OsString::from("exec.fifo")))).unwrap();
    let record = sb.detached_record().unwrap();
    let cgroup_dirs: Vec<_> = sb.cgroup().unwrap().paths().map(Path::to_path_buf).collect();
    assert!(!cgroup_dirs.is_empty());
    // Waiting at the gate: not exec'd yet.
    assert_ne!(std::fs::read_link(format!("/proc/{}/exe", record.pid)).unwrap().file_name().unwrap(), "sleep");
    drop(sb);
    // Dropping the handle left it and its cgroup.
    let d = Detached::open(record.clone()).unwrap();
    assert!(d.is_running().unwrap());
    assert!(cgroup_dirs.iter().all(|p| p.exists()));
    assert!(open_start_gate(&fifo, d.pidfd().unwrap().as_fd()).unwrap());
    // The program is PID 1 of its pid namespace.
    let mut pid1 = String::new();
    for _ in 0..500 {
        pid1 = std::fs::read_to_string(format!("/proc/{}/root/tmp/pid", record.pid)).unwrap_or_default();
        if !pid1.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pid1.trim(), "1");
    // exec joins it.
    let mut p = ExecProcess::default();
    p.args = vec!["/bin/sh".into(), "-c".into(), "exit $(( $(cat /tmp/pid) + 6 ))".into()];
    let status = d.exec(&p).unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(7));
    d.signal(libc::SIGKILL).unwrap();
    d.remove().unwrap();
    assert!(!Detached::open(record).unwrap().is_running().unwrap());
    assert!(cgroup_dirs.iter().all(|p| !p.exists()), "{cgroup_dirs:?}");
}
