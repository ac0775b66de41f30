//! `hardening` group: the seccomp policy's one-time costs and what a spawn pays.
//!
//! - `parse_compile_default`: Docker's default profile from its embedded JSON to a BPF
//!   program for this machine (parse + resolve includes/excludes + compile), what a process
//!   pays once (hakoniwa pays a libseccomp compile, ~16 ms, on every run).
//! - `compile_default`: the compile alone, from the parsed profile.
//! - `cached_default`: `default_compiled` when the program is cached (every later spawn).
//! - `install_default` / `install_small`: `no_new_privs` + `seccomp(SET_MODE_FILTER)` of
//!   the compiled default program / a one-rule program, timed inside a fresh thread (what
//!   a spawn pays per child; the kernel checks and JITs the program and runs it once per
//!   syscall number and ABI to build its allow cache). `install_default_native_abi_only`:
//!   the default without the x86 (32-bit) section on x86_64.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nook_sandbox::hardening::CompiledProfile;
use nook_sandbox::hardening::seccomp::default_compiled;
use nook_sandbox::hardening::{CapSet, Profile, Target};

use crate::report::Report;

pub(crate) fn hardening(c: &mut Criterion, _report: &mut Report) {
    let target = Target::host(CapSet::docker_default()).expect("x86_64 or aarch64");
    let mut g = c.benchmark_group("hardening");
    g.bench_function("parse_compile_default", |b| {
        b.iter(|| {
            let p =
                Profile::from_docker_json(nook_sandbox::hardening::seccomp::DOCKER_DEFAULT_JSON.as_bytes()).unwrap();
            p.compile(&target).unwrap()
        })
    });
    let profile = Profile::docker_default();
    g.bench_function("compile_default", |b| b.iter(|| profile.compile(&target).unwrap()));
    default_compiled(&target).unwrap();
    g.bench_function("cached_default", |b| b.iter(|| default_compiled(&target).unwrap()));
    let program = default_compiled(&target).unwrap();
    g.bench_function("install_default", |b| b.iter_custom(|n| install_time(&program, n)));
    let mut small = Profile::new(nook_sandbox::hardening::Action::Allow);
    small
        .rule(nook_sandbox::hardening::seccomp::SyscallRule::new(["mkdir"], nook_sandbox::hardening::Action::Errno(1)));
    let small = Arc::new(small.compile(&target).unwrap());
    let mut native_only = Profile::docker_default().clone();
    native_only.arches.retain(|a| *a == target.arch);
    let native_only = Arc::new(native_only.compile(&target).unwrap());
    g.bench_function("install_default_native_abi_only", |b| b.iter_custom(|n| install_time(&native_only, n)));
    g.bench_function("install_small", |b| b.iter_custom(|n| install_time(&small, n)));
    g.finish();
}

/// The time `n` installs of `program` take, each on a fresh thread (a filter cannot be
/// removed), timing only the `prctl` + `seccomp` calls inside the thread.
fn install_time(program: &Arc<CompiledProfile>, n: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let p = Arc::clone(program);
        total += std::thread::spawn(move || {
            let start = Instant::now();
            seccompiler::apply_filter(&p.instructions).unwrap();
            start.elapsed()
        })
        .join()
        .unwrap();
    }
    total
}
