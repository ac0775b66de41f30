//! The `tokio` feature: waits on the pidfd through tokio's reactor, no thread per wait.

use std::io::Write;
use std::time::Duration;

use nook_ns::Stdio;
use nook_sandbox::{Outcome, Sandbox};
use nook_testutil::require_root;

use crate::sandbox::serial;

const ROLE_VAR: &str = "NK_SANDBOX_TOKIO_ROLE";

/// This process's thread count (`Threads:` of /proc/self/status).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs test `entry` alone in a fresh process of this binary (so that no other test's
/// threads are counted) and checks it got to its end.
fn run_alone(entry: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .args(["--exact", crate::test_name(module_path!(), entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, entry)
        .output()
        .expect("re-execute the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{entry} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("NK-OK {entry}")), "{entry} did not run:\n{stdout}\n{stderr}");
}

const N: usize = 50;

#[test]
fn fifty_sandboxes_are_awaited_concurrently_on_one_thread() {
    const ME: &str = "fifty_sandboxes_are_awaited_concurrently_on_one_thread";
    if std::env::var(ROLE_VAR).as_deref() != Ok(ME) {
        require_root!();
        let _serial = serial();
        run_alone(ME);
        return;
    }
    runtime().block_on(async {
        // Each sandbox blocks reading its stdin until the test writes a line to it.
        let mut sandboxes = Vec::new();
        let mut inputs = Vec::new();
        for _ in 0..N {
            let mut sb = Sandbox::builder()
                .command("sh")
                .args(["-c", "read x; exit 7"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            inputs.push(sb.stdio().0.unwrap().try_clone().unwrap());
            sandboxes.push(sb);
        }
        let before = threads();
        let mut waits = tokio::task::JoinSet::new();
        for mut sb in sandboxes {
            waits.spawn(async move { sb.wait_async().await });
        }
        // Let every task start its wait.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let waiting = threads();
        assert!(waits.try_join_next().is_none(), "none ended before its input");
        // A blocking wait per sandbox would be N threads more.
        assert!(waiting <= before + 2, "{N} waits pending: {waiting} threads (before them: {before})");
        for mut input in inputs {
            input.write_all(b"go\n").unwrap();
        }
        let mut ended = 0;
        while let Some(r) = waits.join_next().await {
            assert_eq!(r.unwrap().unwrap(), Outcome::Exited(7));
            ended += 1;
        }
        assert_eq!(ended, N);
        println!("{N} sandboxes awaited; threads: {before} before the waits, {waiting} while they were pending");
    });
    println!("NK-OK {ME}");
}

#[test]
fn a_tokio_timeout_then_kill_and_the_async_timeouts_end_sandboxes() {
    require_root!();
    let _serial = serial();
    runtime().block_on(async {
        let mut sb = Sandbox::builder().command("sleep").arg("1000").spawn().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(100), sb.wait_async()).await;
        assert!(waited.is_err(), "still running after 100 ms: {waited:?}");
        // The dropped wait lost nothing.
        sb.kill().unwrap();
        assert_eq!(sb.wait_async().await.unwrap(), Outcome::Signaled(libc::SIGKILL));
        assert_eq!(sb.wait_async().await.unwrap(), Outcome::Signaled(libc::SIGKILL), "the outcome stays");

        let mut sb = Sandbox::builder().command("sleep").arg("1000").spawn().unwrap();
        assert_eq!(sb.wait_timeout_async(Duration::from_millis(50)).await.unwrap(), Outcome::TimedOut);
        // The spec's own timeout.
        let mut sb =
            Sandbox::builder().timeout(Duration::from_millis(50)).command("sleep").arg("1000").spawn().unwrap();
        assert_eq!(sb.wait_async().await.unwrap(), Outcome::TimedOut);
        let mut sb = Sandbox::builder().command("sh").args(["-c", "exit 9"]).spawn().unwrap();
        assert_eq!(sb.wait_timeout_async(Duration::from_secs(600)).await.unwrap(), Outcome::Exited(9));

        // The same for a process exec'd into a long-lived sandbox.
        let sb = Sandbox::builder().create().unwrap();
        let mut c = sb.exec(["sleep", "1000"]).spawn().unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(100), c.wait_async()).await.is_err());
        c.kill().unwrap();
        assert_eq!(c.wait_async().await.unwrap(), Outcome::Signaled(libc::SIGKILL));
        let mut c = sb.exec(["sleep", "1000"]).spawn().unwrap();
        assert_eq!(c.wait_timeout_async(Duration::from_millis(50)).await.unwrap(), Outcome::TimedOut);
        let mut c = sb.exec(["sh", "-c", "exit 5"]).spawn().unwrap();
        assert_eq!(c.wait_async().await.unwrap(), Outcome::Exited(5));
        drop(c);
        sb.remove().unwrap();
    });
}
