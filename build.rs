//! Compiles the C floor of the benchmarks (`benches/c/floor.c`) into a static library, and
//! `nk-floor-run` (`benches/c/floor_run.c`: the OCI floor as a process of its own) into
//! `OUT_DIR`, its path in `NK_FLOOR_RUN` for the benchmarks.
//!
//! It is one small file, so compiling it for every build of this package is cheap; only
//! the benchmarks (`benches/floor.rs`) call into it (unreferenced objects of a static library are not linked
//! into the examples).

fn main() {
    println!("cargo::rerun-if-changed=benches/c/floor.c");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=benches/c/floor_run.c");
    println!("cargo::rerun-if-changed=benches/c/floor.h");
    cc::Build::new().file("benches/c/floor.c").opt_level(2).warnings(true).extra_warnings(true).compile("nkfloor");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("nk-floor-run");
    let status = cc::Build::new()
        .opt_level(2)
        .get_compiler()
        .to_command()
        .args(["benches/c/floor_run.c", "benches/c/floor.c", "-o"])
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling nk-floor-run: {status}");
    println!("cargo::rustc-env=NK_FLOOR_RUN={}", out.display());
}
