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

/// One crun per thread (its own state dir, bundle, cgroups and private mount namespace);
/// their cgroups are removed on drop (also after a failed run).
struct Cruns(Vec<Mutex<Tool>>);

impl Drop for Cruns {
    fn drop(&mut self) {
        for t in &self.0 {
            t.lock().unwrap_or_else(|e| e.into_inner()).remove_cgroups();
        }
    }
}

/// One crun per thread, or why not.
fn cruns(dir: &std::path::Path, n: usize) -> Result<Cruns, String> {
    let bin = which("crun").ok_or("crun is not installed")?;
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    let config = base_config(dir)?;
    let mut out = Cruns(Vec::new());
    for i in 0..n {
        let d = dir.join(format!("t{i}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let ns = if hybrid { Some(NsRunner::start()?) } else { None };
        let mut t = Tool::new("crun", bin.clone(), &d, &config, ns);
        t.cgroup_base = format!("nk-bench-pool-{}-crun{i}", std::process::id());
        out.0.push(Mutex::new(t));
        out.0[i].lock().unwrap().launch()?;
    }
    Ok(out)
}

/// `/proc/meminfo` fields, in bytes.
fn meminfo(keys: &[&str]) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    keys.iter()
        .filter_map(|k| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// Memory per idle warm sandbox: three rounds of warming 32 sandboxes, each measured as the
/// change of `MemAvailable`, and of the kernel's own memory (`Slab` + `KernelStack` +
/// `PageTables` + `Shmem`, which the tmpfs mounts use) plus this process's RSS — the
/// machine is shared, so both are noisy; the second is less so.
fn memory_per_sandbox() {
    const N: u64 = 32;
    let kernel = || meminfo(&["Slab", "KernelStack", "PageTables", "Shmem"]) + meminfo_self_rss();
    for round in 0..3 {
        let (avail, kern) = (meminfo(&["MemAvailable"]), kernel());
        let pool = Pool::builder(spec()).min_idle(N as usize).max_size(N as usize).build().expect("pool");
        pool.wait_warm(N as usize, Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(500));
        let (avail2, kern2) = (meminfo(&["MemAvailable"]), kernel());
        let charged = pool.stats().idle_memory / N;
        drop(pool);
        println!(
            "pool: round {round}: per idle warm sandbox: MemAvailable -{:.0} KiB, kernel + RSS +{:.0} KiB, charged to its cgroup {} KiB",
            avail.saturating_sub(avail2) as f64 / N as f64 / 1024.0,
            kern2.saturating_sub(kern) as f64 / N as f64 / 1024.0,
            charged / 1024
        );
    }
}

fn meminfo_self_rss() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
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
                        crun.0[i].lock().unwrap().launch().unwrap_or_else(|e| panic!("{e}"));
                    })
                })
            });
        }
    }
    g.finish();
    drop(crun);
    if bench_mode() {
        memory_per_sandbox();
    }
}
