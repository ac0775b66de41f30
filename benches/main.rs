//! Benchmarks of the nook crates against a C floor (`benches/c/floor.c`: the same system
//! calls, nothing else) and against peers (`std::process::Command`, `unshare(1)`, `bwrap(1)`,
//! `ip -batch`, `tar -x`).
//!
//! Run as root: `cargo bench --bench main`. Six groups, each nook measurement next to its
//! baseline in the same run (a filter that names a group, e.g. `-- cgroup`, runs only that
//! group, setup and interleaved ratios included):
//! - `clone_wait`: a child in new namespaces that exits at once (nook: a `pre_exec` hook
//!   that calls `_exit(0)`, so the whole spawn path runs except exec), then wait. A hook
//!   makes nook use its fork-semantics path, so the C floor here forks too (clone3). For
//!   nook's vfork-style path (no hook) the child instead execs a missing file (`nook_vfork`
//!   against `c_vfork`, which does the same with `clone(CLONE_VM | CLONE_VFORK)`).
//! - `setns_roundtrip`: enter a namespace of a long-running holder process and come back.
//! - `spawn_exec`: spawn `/bin/true` and wait. Without hooks, user namespace or init nook
//!   takes its vfork-style path; the C floor is given both forms.
//! - `cgroup`: create a cgroup with memory and pids limits and delete it, below this
//!   process's own cgroup; the C floor makes the directories and writes the files itself.
//! - `netmodel` (`netmodel.rs`): network namespaces and bridge endpoints against `ip -batch`.
//! - `overlay` (`overlay.rs`): TCP throughput across an overlay (VXLAN) network of two
//!   "hosts" against the same pair of sandboxes on one bridge.
//! - `netfw` (`netmodel.rs`): published ports and bridge networks, netlink nftables backend
//!   against the `nft -j` one and `ip` + `nft` processes.
//! - `unionfs` (`unionfs.rs`): overlay mount+unmount with 1–500 layers against the same
//!   syscalls in C; applying a layer tarball against `tar -x`.
//! - `oci` (`oci.rs`): `nook-oci run` of `/bin/true` against `runc run` and `crun run` on
//!   the identical bundle, and `podman --runtime` with each (build `cargo build --release -p
//!   nook-oci` first).
//!
//! At the end (in `--bench` mode) a Markdown summary of the medians and the nook/baseline
//! ratios is printed; `BENCHMARKS.md` holds one such run and its analysis.
//!
//! This file only wires the groups: `ns.rs` (the first three), `cgroup.rs`, `netmodel.rs`,
//! `unionfs.rs`, `image.rs`, `sandbox.rs`, `hardening.rs` (seccomp compile and install), `oci.rs` (`nook-oci run` against runc
//! and crun on one bundle); `floor.rs` is the C floor's interface, `report.rs` the summary and the
//! helpers every group shares.

use std::time::{Duration, SystemTime};

use criterion::Criterion;

use crate::report::{Report, bench_mode, criterion_dir, print_summary};

mod cgroup;
mod floor;
mod hardening;
mod image;
mod netmodel;
mod ns;
mod oci;
mod overlay;
mod pool;
mod report;
mod sandbox;
mod unionfs;

/// The groups of this harness, in the order they run.
const GROUPS: [&str; 13] = [
    "clone_wait",
    "pool",
    "setns_roundtrip",
    "spawn_exec",
    "cgroup",
    "netmodel",
    "overlay",
    "netfw",
    "unionfs",
    "image",
    "sandbox",
    "hardening",
    "oci",
];

/// criterion's positional arguments (its benchmark filters).
fn filters() -> Vec<String> {
    const TAKES_VALUE: [&str; 19] = [
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            out.push(arg);
        }
    }
    out
}

/// Whether to run `group`. A filter that starts with a group's name (`cgroup`,
/// `^spawn_exec/`, `clone_wait/nook/pid`) selects that group, and then only the groups so
/// named run: the others' setup, pauses and interleaved ratios are skipped too. Any other
/// filter, or none, runs every group and leaves the choice to criterion.
fn selected(group: &str) -> bool {
    let named: Vec<&str> = filters()
        .iter()
        .flat_map(|f| GROUPS.into_iter().filter(move |g| f.trim_start_matches('^').starts_with(g)))
        .collect();
    named.is_empty() || named.contains(&group)
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the nook benchmarks create namespaces and cgroups and need root");
        return;
    }
    let since = SystemTime::now();
    let results = criterion_dir();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut report = Report::default();
    if selected("clone_wait") {
        ns::clone_wait(&mut c, &mut report);
    }
    if selected("setns_roundtrip") {
        ns::setns_roundtrip(&mut c, &mut report);
    }
    if selected("spawn_exec") {
        ns::spawn_exec(&mut c, &mut report);
    }
    if selected("cgroup") {
        cgroup::cgroup(&mut c, &mut report);
    }
    if selected("netmodel") {
        netmodel::netmodel(&mut c, &mut report);
    }
    if selected("overlay") {
        overlay::overlay(&mut c, &mut report);
    }
    if selected("netfw") {
        netmodel::netfw(&mut c, &mut report);
    }
    if selected("unionfs") {
        unionfs::unionfs(&mut c, &mut report);
    }
    if selected("image") {
        image::image(&mut c, &mut report);
    }
    if selected("sandbox") {
        sandbox::sandbox(&mut c, &mut report);
    }
    if selected("hardening") {
        hardening::hardening(&mut c, &mut report);
    }
    if selected("pool") {
        pool::pool(&mut c, &mut report);
    }
    if selected("oci") {
        oci::oci(&mut c, &mut report);
    }
    c.final_summary();
    if bench_mode() {
        print_summary(&report, &results, since);
    }
}
