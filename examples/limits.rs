//! Runs a fork bomb and a memory hog, each in its own limited cgroup, and prints what the
//! kernel reported: the bomb's failed fork and `pids.current` at the cap, the hog's OOM kill
//! (seen through the OOM watcher and the counters), and each group's stats.
//!
//! Run as root: `cargo run --example limits`. Works on cgroup v1, v2 and hybrid hosts; the
//! groups are created below this process's own cgroup and removed at the end.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nook_cgroup::{Cgroup, CgroupSpec, Controller, Layout, Resources, Version};
use nook_ns::{Child, Command, Stdio};

const PIDS_MAX: u64 = 20;
const MEMORY_MAX: u64 = 32 << 20;

/// The environment variable that names this program's role when it runs again as the
/// example's test binary (where the first argument belongs to the test harness).
const ROLE_VAR: &str = "NK_LIMITS_ROLE";

fn main() -> Result<(), Box<dyn Error>> {
    match std::env::var(ROLE_VAR).ok().or_else(|| std::env::args().nth(1)).as_deref() {
        Some("bomb") => bomb(),
        Some("hog") => hog(),
        _ => {}
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("creating cgroups needs root: run `sudo cargo run --example limits`".into());
    }
    fork_bomb()?;
    println!();
    memory_hog()?;
    Ok(())
}

/// This program again, in role `role`, started inside `cg`: born there with
/// `CLONE_INTO_CGROUP` on pure v2, else paused, added by pid to every hierarchy, resumed.
fn spawn_in(cg: &Cgroup, role: &str) -> Result<Child, Box<dyn Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    // As the example's test binary (`cargo test`), the harness runs `main` again through
    // the one test; the role travels in the environment.
    let args: &[&str] = if cfg!(test) { &["--exact", "example_runs", "--nocapture", "--quiet"] } else { &[role] };
    cmd.args(args).env(ROLE_VAR, role).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = if cg.hierarchies().layout == Layout::V2 {
        cmd.cgroup(cg.dir_fd()?).spawn()?
    } else {
        let paused = cmd.spawn_paused()?;
        cg.add_pid(paused.id())?;
        paused.resume()?
    };
    child.kill_on_drop(true);
    Ok(child)
}

fn fork_bomb() -> Result<(), Box<dyn Error>> {
    let mut spec = CgroupSpec::new(format!("nk-example-bomb-{}", std::process::id()));
    spec.resources.pids.get_or_insert_default().max(PIDS_MAX);
    let cg = Cgroup::create(&spec)?;
    let (dir, _) = cg.dir_of(Controller::Pids).ok_or("no pids directory")?;
    println!("fork bomb in {} (pids.max = {PIDS_MAX})", dir.display());

    let mut bomb = spawn_in(&cg, "bomb")?;
    let mut report = String::new();
    // The bomb's one line (under the test harness, after the harness's own lines).
    let mut out = BufReader::new(bomb.stdout.take().ok_or("stdout is piped")?);
    while out.read_line(&mut report)? > 0 && !report.starts_with("forked ") {
        report.clear();
    }
    println!("  the bomb says: {}", report.trim());

    // The bomb and its children wait at the cap: read what the kernel counts now.
    let stats = cg.stats()?;
    if let Some(p) = stats.pids {
        println!("  pids.current = {} (max {})", p.current, p.max.map_or("max".to_owned(), |m| m.to_string()));
    }
    let events = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
    if let Some(refused) = events.lines().find_map(|l| l.strip_prefix("max ")) {
        println!("  pids.events: {refused} fork(s) refused at the limit");
    }
    cg.kill_all()?;
    let status = bomb.wait()?;
    println!("  after kill_all: the bomb ended by signal {:?}, {} processes left", status.signal(), cg.procs()?.len());
    cg.remove()?;
    Ok(())
}

/// Forks until the kernel refuses, reports, and waits (with its children) to be killed.
fn bomb() -> ! {
    let mut forked = 0;
    let mut failure = None;
    for _ in 0..10_000 {
        // SAFETY: this process is single-threaded (its main only got here); the child only
        // calls pause and _exit.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: async-signal-safe calls only.
                unsafe { libc::pause() };
            },
            -1 => {
                failure = Some(std::io::Error::last_os_error());
                break;
            }
            _ => forked += 1,
        }
    }
    match failure {
        Some(e) => println!("forked {forked} children; fork #{} failed: {e}", forked + 1),
        None => println!("forked {forked} children and nothing stopped it"),
    }
    loop {
        // SAFETY: no arguments; returns when a signal is caught (none are).
        unsafe { libc::pause() };
    }
}

fn memory_hog() -> Result<(), Box<dyn Error>> {
    let mut spec = CgroupSpec::new(format!("nk-example-hog-{}", std::process::id()));
    spec.resources.memory.get_or_insert_default().max(MEMORY_MAX);
    let mut cg = Cgroup::create(&spec)?;
    let (dir, version) = cg.dir_of(Controller::Memory).ok_or("no memory directory")?;
    // No swap either, where the kernel accounts it, so the hog cannot escape the limit.
    let swap_file = if version == Version::V1 { "memory.memsw.limit_in_bytes" } else { "memory.swap.max" };
    if dir.join(swap_file).exists() {
        let mut no_swap = Resources::new();
        no_swap.memory.get_or_insert_default().max(MEMORY_MAX).swap(0);
        cg.update(&no_swap)?;
    }
    let (dir, _) = cg.dir_of(Controller::Memory).ok_or("no memory directory")?;
    println!("memory hog in {} (limit {} MiB)", dir.display(), MEMORY_MAX >> 20);

    let mut watcher = cg.oom_watcher()?;
    let mut hog = spawn_in(&cg, "hog")?;
    match watcher.wait(Some(Duration::from_secs(30)))? {
        Some(event) => println!("  OOM watcher: {event:?}"),
        None => println!("  OOM watcher: no event within 30 s"),
    }
    let status = hog.wait()?;
    match status.signal() {
        Some(sig) => {
            println!("  the hog was killed by signal {sig}{}", if sig == libc::SIGKILL { " (SIGKILL)" } else { "" })
        }
        None => println!("  the hog exited with {status} (the limit did not stop it)"),
    }
    while let Some(later) = watcher.poll_event()? {
        println!("  OOM watcher, later: {later:?}");
    }

    let stats = cg.stats()?;
    if let Some(oom) = stats.oom {
        println!(
            "  OOM counters: oom_kill {}, oom {}, failcnt {}",
            oom.oom_kill,
            oom.oom.map_or("-".to_owned(), |n| n.to_string()),
            oom.failcnt.map_or("-".to_owned(), |n| n.to_string())
        );
    }
    if let Some(m) = stats.memory {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / f64::from(1 << 20));
        println!(
            "  memory: current {}, peak {}, limit {}",
            mib(m.current),
            m.peak.map_or("-".to_owned(), mib),
            m.limit.map_or("max".to_owned(), mib)
        );
        let shown: Vec<String> = ["anon", "rss", "file", "cache", "pgfault", "pgmajfault"]
            .iter()
            .filter_map(|k| m.stat.get(*k).map(|v| format!("{k} {v}")))
            .collect();
        println!("  memory.stat: {}", shown.join(", "));
    }
    if let Some(p) = stats.pressure.and_then(|p| p.memory) {
        println!("  memory pressure: some total {} µs", p.some.total_usec);
    }
    cg.remove()?;
    Ok(())
}

/// Touches up to 256 MiB a page at a time; the group's limit must stop it first.
fn hog() -> ! {
    let mut chunks = Vec::new();
    for _ in 0..256 {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    std::process::exit(3);
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
