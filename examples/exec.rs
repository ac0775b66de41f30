//! A long-lived sandbox, like `docker create` + `docker exec`: several processes started in
//! it, each with its own environment, user, working directory and stdio; pause and resume
//! (a counter stops while the sandbox is frozen); stats (memory, pids, the processes
//! inside); then remove, which leaves nothing behind (no cgroup, no mount).
//!
//! Run as root: `cargo run --example exec` (joining a rootless sandbox's user namespace
//! needs a single-threaded caller, which an embedding program seldom is).

use std::error::Error;
use std::io::{Read, Write};
use std::thread::sleep;
use std::time::Duration;

use nook_ns::Stdio;
use nook_sandbox::{Outcome, Sandbox};

/// The counter's value, read through the sandbox's init's root (no exec needed: an exec into
/// a frozen sandbox would freeze too).
fn counter(sb: &Sandbox) -> Result<u64, Box<dyn Error>> {
    let text = match std::fs::read_to_string(format!("/proc/{}/root/tmp/count", sb.id())) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0), // not written yet
        r => r?,
    };
    // Frozen between the shell's truncate and its write, the file is empty.
    Ok(text.trim().parse().unwrap_or(0))
}

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: exec joins the sandbox's namespaces with setns".into());
    }
    let sb =
        Sandbox::builder().hostname("nk-exec").memory_max(128 << 20).pids_max(32).env("GREETING", "hello").create()?;
    let cgroups: Vec<_> = sb.cgroup().map(|c| c.paths().map(|p| p.to_owned()).collect()).unwrap_or_default();
    println!(
        "sandbox: init pid {} (host), cgroup {}",
        sb.id(),
        cgroups.first().map_or("none".into(), |p| p.display().to_string())
    );

    // 1. The sandbox's defaults: its environment, hostname, PID 1 = nook's init.
    let out =
        sb.exec(["sh", "-c", "echo $GREETING from $(hostname), pid $$, pid 1 is $(cat /proc/1/comm)"]).output()?;
    print!("exec 1 (defaults)      : {}", String::from_utf8_lossy(&out.stdout));

    // 2. Its own env, user and working directory.
    let out = sb
        .exec(["sh", "-c", "echo GREETING=$GREETING uid=$(id -u) gid=$(id -g) cwd=$(pwd)"])
        .env("GREETING", "bonjour")
        .user(1000, 1000)
        .current_dir("/tmp")
        .output()?;
    print!("exec 2 (env/user/cwd)  : {}", String::from_utf8_lossy(&out.stdout));

    // 3. Piped stdin and stdout, stderr apart, an exit code.
    let mut child = sb
        .exec(["sh", "-c", "tr a-z A-Z; echo 'to stderr' >&2; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.as_mut().ok_or("no stdin")?.write_all(b"shouted through a pipe\n")?;
    let out = child.wait_with_output()?;
    print!("exec 3 (piped)         : {}", String::from_utf8_lossy(&out.stdout));
    println!("                         stderr {:?}, {:?}", String::from_utf8_lossy(&out.stderr).trim(), out.outcome);

    // 4. A background counter: pause freezes it, resume thaws it.
    let mut count = sb.exec(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done"]).spawn()?;
    while counter(&sb)? < 1000 {
        sleep(Duration::from_millis(10));
    }
    sb.pause()?;
    let frozen = counter(&sb)?;
    sleep(Duration::from_millis(300));
    let still = counter(&sb)?;
    println!("exec 4 (counter)       : paused at {frozen}, 300 ms later {still}");
    if still != frozen {
        return Err("the counter moved while the sandbox was paused".into());
    }
    sb.resume()?;
    while counter(&sb)? <= frozen {
        sleep(Duration::from_millis(10));
    }
    println!("                         resumed: {}", counter(&sb)?);

    // 5. Stats: memory, pids, and the processes inside (host pids, from the cgroup).
    let stats = sb.stats()?;
    if let Some(m) = &stats.memory {
        let limit = m.limit.map_or("no limit".to_owned(), |l| format!("limit {} MiB", l >> 20));
        println!("stats                  : memory {} KiB ({limit})", m.current / 1024);
    }
    if let Some(p) = &stats.pids {
        println!("                         pids {} (max {:?})", p.current, p.max);
    }
    for pid in sb.processes()? {
        let mut comm = String::new();
        std::fs::File::open(format!("/proc/{pid}/comm"))?.read_to_string(&mut comm)?;
        println!("                         process {pid}: {}", comm.trim());
    }

    // 6. Stop the counter and remove the sandbox: nothing is left.
    count.kill()?;
    let ended = count.wait()?;
    println!("counter                : {ended:?}");
    if ended != Outcome::Signaled(libc::SIGKILL) {
        return Err(format!("the counter ended with {ended:?}").into());
    }
    sb.remove()?;
    if let Some(path) = cgroups.iter().find(|p| p.exists()) {
        return Err(format!("{} is still there", path.display()).into());
    }
    println!("removed: no cgroup, no process left");
    Ok(())
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
