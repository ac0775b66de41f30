//! `pool` group (issue 18): runs per second of `/bin/true` in a full sandbox — pid, mount,
//! IPC, UTS and network namespaces, the host root read-only under a tmpfs upper, `/proc`,
//! `/dev`, a cgroup with memory and pids limits, Docker's confinement on — from 1, 2 and 8
//! threads: a [`Pool`] (warm sandboxes, reset between runs) against the one-shot facade
//! (`SandboxBuilder::status`), `bwrap` (`--unshare-pid/ipc/uts/net`, `--ro-bind / /`,
//! `--proc`, `--dev`, `--tmpfs /tmp`) and `crun run` of the `oci` group's busybox bundle
//! (one crun state dir, bundle and private mount namespace per thread; see `oci.rs`).
//!
//! Each criterion iteration is one run; `iter_custom` spreads the iterations over the
//! threads and reports wall time / runs, so the time per iteration is the inverse of the
//! throughput (runs/s = 1 s / time). In bench mode the group also prints the memory one idle
//! warm sandbox costs: `MemAvailable` before and after warming 32 of them, per sandbox.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nook_sandbox::{Pool, SandboxBuilder, SandboxSpec};

use crate::oci::{NsRunner, Scratch, Tool, base_config, which};
use crate::report::{Report, bench_mode, slow_group};

const THREADS: [usize; 3] = [1, 2, 8];

fn spec() -> SandboxSpec {
    let mut spec = SandboxSpec::default();
    spec.hostname = Some("nk-bench".into());
    let res = &mut spec.cgroup.get_or_insert_with(|| nook_cgroup::CgroupSpec::new("")).resources;
    let m = res.memory.get_or_insert_default();
    m.max = Some(64 << 20);
    m.swap = Some(0);
    res.pids.get_or_insert_default().max(32);
    spec
}

/// `iters` runs of `f(thread)` spread over `threads` threads: wall time scaled to `iters`.
fn threaded(threads: usize, iters: u64, f: &(dyn Fn(usize) + Sync)) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for _ in 0..per {
                    f(t);
                }
            });
        }
    });
    start.elapsed().mul_f64(iters as f64 / (per * threads as u64) as f64)
}

fn one_shot() {
    let mut b = SandboxBuilder::from_spec(spec());
    b.command("/bin/true");
    assert!(b.status().expect("one-shot").success());
}

fn bwrap() {
    let status = std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
        .args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "/bin/true"])
        .status()
        .expect("spawn bwrap");
    assert!(status.success(), "bwrap: {status}");
}

/// One crun per thread (its own dirs and private mount namespace), or why not.
fn cruns(dir: &std::path::Path, n: usize) -> Result<Vec<Mutex<Tool>>, String> {
    let bin = which("crun").ok_or("crun is not installed")?;
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    let config = base_config(dir)?;
    let mut out = Vec::new();
    for i in 0..n {
        let d = dir.join(format!("t{i}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let ns = if hybrid { Some(NsRunner::start()?) } else { None };
        let mut t = Tool::new("crun", bin.clone(), &d, &config, ns);
        t.launch()?;
        out.push(Mutex::new(t));
    }
    Ok(out)
}

/// `MemAvailable` in bytes.
fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn pool(c: &mut Criterion, _report: &mut Report) {
    let has_bwrap = which("bwrap").is_some();
    let dir = std::env::temp_dir().join(format!("nk-bench-pool-{}", std::process::id()));
    let _scratch = Scratch(dir.clone());
    let crun = cruns(&dir, 8).map_err(|e| eprintln!("pool: crun skipped: {e}")).ok();
    let mut g = slow_group(c, "pool");
    g.measurement_time(Duration::from_secs(4));
    for t in THREADS {
        let pool = Pool::builder(spec()).min_idle(t).max_size(t).build().expect("pool");
        pool.wait_warm(t, Duration::from_secs(60));
        g.bench_function(format!("true/pool/{t}"), |b| {
            b.iter_custom(|iters| {
                threaded(t, iters, &|_| {
                    let (o, _) = pool.command(["/bin/true"]).status().expect("pool run");
                    assert!(o.success());
                })
            })
        });
        drop(pool);
        g.bench_function(format!("true/one_shot/{t}"), |b| b.iter_custom(|iters| threaded(t, iters, &|_| one_shot())));
        if has_bwrap {
            g.bench_function(format!("true/bwrap/{t}"), |b| b.iter_custom(|iters| threaded(t, iters, &|_| bwrap())));
        }
        if let Some(crun) = &crun {
            g.bench_function(format!("true/crun/{t}"), |b| {
                b.iter_custom(|iters| {
                    threaded(t, iters, &|i| {
                        crun[i].lock().unwrap().launch().unwrap_or_else(|e| panic!("{e}"));
                    })
                })
            });
        }
    }
    g.finish();
    for t in crun.iter().flatten() {
        t.lock().unwrap().remove_cgroups();
    }
    if bench_mode() {
        let before = mem_available();
        let pool = Pool::builder(spec()).min_idle(32).max_size(32).build().expect("pool");
        pool.wait_warm(32, Duration::from_secs(120));
        std::thread::sleep(Duration::from_secs(1));
        let after = mem_available();
        let st = pool.stats();
        println!(
            "\npool: memory per idle warm sandbox: {:.0} KiB (MemAvailable, 32 sandboxes), {} KiB charged to its cgroup",
            before.saturating_sub(after) as f64 / 32.0 / 1024.0,
            st.idle_memory / 32 / 1024
        );
    }
}
