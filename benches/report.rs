//! What every group shares: the summary of nook/baseline pairs (criterion medians and
//! interleaved ratios), criterion's bench mode, the group settings, status checks.

use std::ffi::c_long;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once
/// (`cargo test --benches`).
pub(crate) fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// One row of the final summary: a nook measurement and the baseline it is compared with.
struct Pair {
    group: &'static str,
    row: String,
    nook: String,
    base: String,
    /// nook/baseline measured interleaved (see [`interleaved_ratio`]).
    interleaved: Option<f64>,
}

/// Records which benchmarks ran and which pairs to report.
#[derive(Default)]
pub(crate) struct Report {
    pairs: Vec<Pair>,
    pub(crate) singles: Vec<(&'static str, String)>,
}

impl Report {
    pub(crate) fn pair(
        &mut self,
        group: &'static str,
        row: impl Into<String>,
        nook: impl Into<String>,
        base: impl Into<String>,
    ) {
        self.pairs.push(Pair { group, row: row.into(), nook: nook.into(), base: base.into(), interleaved: None });
    }

    /// Measures the last pair again, interleaved (only when measuring).
    pub(crate) fn interleave(&mut self, mut nook: impl FnMut(), mut base: impl FnMut()) {
        if bench_mode() {
            let ratio = interleaved_ratio(&mut nook, &mut base);
            if let Some(p) = self.pairs.last_mut() {
                p.interleaved = Some(ratio);
            }
        }
    }
}

/// time(a) / time(b), measured interleaved: 15 rounds of `n` runs of each (alternating
/// which goes first), about 20 ms per half round; the median of the per-round ratios.
/// Criterion measures one benchmark after the other, so load on the machine that comes and
/// goes between them shows up in its ratios; here it hits both sides alike.
fn interleaved_ratio(a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> f64 {
    fn time(f: &mut dyn FnMut(), n: u32) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64()
    }
    let one = time(a, 3).max(time(b, 3)) / 3.0;
    let n = (0.02 / one).clamp(1.0, 100_000.0) as u32;
    let mut ratios: Vec<f64> = (0..15)
        .map(|round| {
            if round % 2 == 0 {
                let ta = time(a, n);
                ta / time(b, n)
            } else {
                let tb = time(b, n);
                time(a, n) / tb
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

pub(crate) fn expect_exit0(what: &str, status: c_long) {
    expect_status(what, status, 0);
}

pub(crate) fn expect_status(what: &str, status: c_long, expected: c_long) {
    assert_eq!(status, expected, "{what}: wait status or -errno {status}");
}

pub(crate) fn slow_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// Where criterion keeps its results (the same rules criterion follows), made absolute
/// while the working directory is still the package root.
pub(crate) fn criterion_dir() -> PathBuf {
    let dir = if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("criterion")
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The median (ns) of benchmark `id` of `group`, if it was measured in this run.
pub(crate) fn median_ns(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    // A `BenchmarkId` with a parameter nests (`id/param`); a plain name with a `/` is flattened.
    let nested = dir.join(group).join(id).join("new/estimates.json");
    let path =
        if nested.exists() { nested } else { dir.join(group).join(id.replace('/', "_")).join("new/estimates.json") };
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Prints the medians of this run as Markdown tables.
pub(crate) fn print_summary(report: &Report, dir: &Path, since: SystemTime) {
    println!("\n## Summary (medians of this run)\n");
    println!("nook / baseline: ratio of the criterion medians. interleaved: the median ratio of");
    println!("15 alternating rounds of both (robust against load changing between benchmarks).\n");
    let mut groups: Vec<&str> = report.pairs.iter().map(|p| p.group).collect();
    groups.dedup();
    for group in groups {
        println!(
            "### {group}\n\n| case | nook | baseline | nook / baseline | interleaved |\n|---|---:|---:|---:|---:|"
        );
        for p in report.pairs.iter().filter(|p| p.group == group) {
            let (Some(n), Some(b)) = (median_ns(dir, group, &p.nook, since), median_ns(dir, group, &p.base, since))
            else {
                continue;
            };
            println!(
                "| {} | {} | {} | {:.2}× | {} |",
                p.row,
                fmt_ns(n),
                fmt_ns(b),
                n / b,
                p.interleaved.map_or(String::new(), |r| format!("{r:.2}×"))
            );
        }
        for (g, id) in report.singles.iter().filter(|(g, _)| *g == group) {
            if let Some(m) = median_ns(dir, g, id, since) {
                if id.ends_with("/nook") {
                    println!("| {id} | {} | | | |", fmt_ns(m));
                } else {
                    println!("| {id} (baseline only) | | {} | | |", fmt_ns(m));
                }
            }
        }
        println!();
    }
}

/// `iters` rounds of `f`, each after `prepare` and a `sync(2)` (written back what the previous
/// round dirtied, so neither side of a comparison pays for the other): the time of `f` alone.
pub(crate) fn timed_rounds(iters: u64, prepare: &dyn Fn(), f: &dyn Fn()) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for _ in 0..iters {
        prepare();
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let start = std::time::Instant::now();
        f();
        total += start.elapsed();
    }
    total
}
