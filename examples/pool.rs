//! A warm sandbox pool: 10 000 short commands (`/bin/true`) through a [`Pool`] from several
//! threads, each in a fully isolated sandbox (pid, mount, IPC, UTS and network namespaces,
//! the host root read-only under a tmpfs upper, `/proc`, `/dev`, cgroup limits, Docker's
//! confinement), reset between runs; prints runs per second and latency percentiles.
//!
//! Run as root: `cargo run --release --example pool [RUNS] [THREADS] [SIZE]` (default 10000,
//! 8, and as many warm sandboxes as threads; a smaller SIZE makes the threads queue for a
//! sandbox, as a pool sized to the cores would).

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nook_sandbox::{Outcome, Pool, SandboxSpec};

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the pool's reset joins the sandboxes' namespaces".into());
    }
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(threads), |a| a.parse())?;

    let mut spec = SandboxSpec::default();
    spec.hostname = Some("nk-pool".into());
    let res = &mut spec.cgroup.get_or_insert_with(|| nook_cgroup::CgroupSpec::new("")).resources;
    res.memory.get_or_insert_default().max = Some(64 << 20);
    res.pids.get_or_insert_default().max(32);

    let t = Instant::now();
    let pool = Arc::new(Pool::builder(spec).min_idle(size).max_size(size).build()?);
    pool.wait_warm(size, Duration::from_secs(60));
    println!("{size} warm sandboxes in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);

    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let pool = Arc::clone(&pool);
            let n = runs / threads + usize::from(i < runs % threads);
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    let (outcome, _) = pool.command(["/bin/true"]).status().map_err(|e| e.to_string())?;
                    lat.push(t.elapsed());
                    assert_eq!(outcome, Outcome::Exited(0));
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
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    let st = pool.stats();
    println!(
        "{runs} runs from {threads} threads in {:.2} s: {:.0} runs/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
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
