//! Compiles the C floor of the benchmarks (`benches/c/floor.c`) into a static library.
//!
//! It is one small file, so compiling it for every build of this package is cheap; only
//! the benchmarks (`benches/floor.rs`) call into it (unreferenced objects of a static library are not linked
//! into the examples).

fn main() {
    println!("cargo::rerun-if-changed=benches/c/floor.c");
    println!("cargo::rerun-if-changed=build.rs");
    cc::Build::new().file("benches/c/floor.c").opt_level(2).warnings(true).extra_warnings(true).compile("nkfloor");
}
