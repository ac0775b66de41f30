//! A warm sandbox pool: 10 000 short commands (`/bin/true`) through a [`Pool`] from several
//! threads, each in a fully isolated sandbox (pid, mount, IPC, UTS and network namespaces,
//! the host root read-only under a tmpfs upper, `/proc`, `/dev`, cgroup limits, Docker's
//! confinement), reset between runs; prints runs per second and latency percentiles.
//!
//! Run as root: `cargo run --release --example pool [RUNS] [THREADS] [SIZE]` (default 10000,
//! 8, and as many warm sandboxes as threads; a smaller SIZE makes the threads queue for a
//! sandbox, as a pool sized to the cores would). `SIZE` = `command`: the same runs as plain
//! `std::process::Command`s of `/bin/true`, no sandbox — what starting a process at all
//! costs from that many threads on this machine, the floor under any pool's latency.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nook_sandbox::{Outcome, Pool, SandboxSpec};

/// One run, as the caller sees it.
type Run = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let size = args.next();
    if size.as_deref() == Some("command") {
        let run: Run = Arc::new(|| {
            let status = std::process::Command::new("/bin/true").status().map_err(|e| e.to_string())?;
            if status.success() { Ok(()) } else { Err(format!("/bin/true: {status}")) }
        });
        let (elapsed, lat) = measure(runs, threads, run)?;
        report("std::process::Command", runs, threads, elapsed, &lat);
        return Ok(());
    }
    let size: usize = size.map_or(Ok(threads), |a| a.parse())?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the pool's reset joins the sandboxes' namespaces".into());
    }

    let mut spec = SandboxSpec::default();
    spec.hostname = Some("nk-pool".into());
    let res = &mut spec.cgroup.get_or_insert_with(|| nook_cgroup::CgroupSpec::new("")).resources;
    res.memory.get_or_insert_default().max = Some(64 << 20);
    res.pids.get_or_insert_default().max(32);

    let t = Instant::now();
    let pool = Arc::new(Pool::builder(spec).min_idle(size).max_size(size).build()?);
    pool.wait_warm(size, Duration::from_secs(60));
    println!("{size} warm sandboxes in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);

    let in_pool = Arc::clone(&pool);
    let run: Run = Arc::new(move || {
        let (outcome, _) = in_pool.command(["/bin/true"]).status().map_err(|e| e.to_string())?;
        if outcome == Outcome::Exited(0) { Ok(()) } else { Err(format!("/bin/true: {outcome:?}")) }
    });
    let (elapsed, lat) = measure(runs, threads, run)?;
    report("pool", runs, threads, elapsed, &lat);
    let st = pool.stats();
    println!(
        "sandboxes built {}, runs reset and reused {}, discarded {}; warm now {} ({} KiB charged to their cgroups)",
        st.created,
        st.reused,
        st.discarded,
        st.idle,
        st.idle_memory / 1024
    );
    match Arc::try_unwrap(pool) {
        Ok(pool) => pool.close()?,
        Err(_) => unreachable!("every worker ended"),
    }
    Ok(())
}

/// `runs` runs of `run` spread over `threads` threads: the wall time, and each run's latency
/// (sorted).
fn measure(runs: usize, threads: usize, run: Run) -> Result<(Duration, Vec<Duration>), Box<dyn Error>> {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let run = Arc::clone(&run);
            let n = runs / threads + usize::from(i < runs % threads);
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    run()?;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(runs);
    for w in workers {
        lat.extend(w.join().map_err(|_| "a worker panicked")??);
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    Ok((elapsed, lat))
}

fn report(what: &str, runs: usize, threads: usize, elapsed: Duration, lat: &[Duration]) {
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{what}: {runs} runs from {threads} threads in {:.2} s: {:.0} runs/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
