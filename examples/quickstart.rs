//! nook's main example: a shell command in a sandbox over the host's root file system, with
//! its own hostname and pid namespace, memory and pids limits and no network. It prints
//! what the command sees inside next to what this program sees on the host.
//!
//! Run as root: `cargo run --example quickstart` (unprivileged it runs in a user namespace
//! and without limits if no cgroup is delegated to you).

use std::error::Error;

use nook_sandbox::Sandbox;

/// What both sides report, one line each.
const PROBE: &str = r#"echo "hostname: $(hostname)"
echo "my pid: $$"
echo "processes: $(cd /proc && echo [0-9]* | wc -w)"
echo "pid 1: $(cat /proc/1/comm)"
echo "network devices: $(ls /sys/class/net | tr '\n' ' ')"
echo "memory cgroup: $(grep -m1 memory /proc/self/cgroup || tail -n 1 /proc/self/cgroup)"
echo "root file system: $(stat -f -c %T /)""#;

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let inside = Sandbox::builder()
        .hostname("nk-quickstart")
        .memory_max(256 << 20)
        .pids_max(64)
        .best_effort_limits(!root)
        .command("sh")
        .args(["-c", PROBE])
        .output()?;
    if !inside.outcome.success() {
        return Err(format!(
            "the sandbox ended with {:?}: {}",
            inside.outcome,
            String::from_utf8_lossy(&inside.stderr)
        )
        .into());
    }
    let host = std::process::Command::new("sh").args(["-c", PROBE]).output()?;

    let inside = String::from_utf8_lossy(&inside.stdout);
    let host = String::from_utf8_lossy(&host.stdout);
    println!("{:<44} | on the host", "inside the sandbox");
    println!("{:-<44}-+-{:-<44}", "", "");
    for (i, h) in inside.lines().zip(host.lines()) {
        println!("{i:<44} | {h}");
    }

    // The pids limit at work: a shell starting 100 background processes.
    let bomb = Sandbox::builder()
        .pids_max(16)
        .best_effort_limits(!root)
        .command("sh")
        .args(["-c", "i=0; while [ $i -lt 100 ]; do sleep 10 & i=$((i+1)); echo $i; done 2>/dev/null"])
        .output()?;
    let started = String::from_utf8_lossy(&bomb.stdout).lines().last().unwrap_or("0").to_owned();
    println!("\nwith pids.max = 16, a shell started {started} of 100 background processes ({:?})", bomb.outcome);
    Ok(())
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
