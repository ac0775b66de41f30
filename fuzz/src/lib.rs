//! Fuzz targets for the nook crates: each is a `fn(&[u8])` that panics on a bug, driven by
//! libFuzzer (`fuzz_targets/*.rs`, built and run by `.ci/fuzz`) and replayed on its corpus by
//! `cargo test` in this crate (`tests/corpus.rs`). See RELIABILITY.md, "Fuzzing".

pub mod image;
pub mod jail;
pub mod layer;
pub mod oci;
pub mod parsers;
pub mod tree;

// nook-oci is a binary: its config mapping and the error type it uses are compiled in here.
#[path = "../../oci/src/config.rs"]
#[allow(dead_code, unreachable_pub, missing_docs, clippy::collapsible_if)]
mod config;
#[path = "../../oci/src/error.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod error;

/// With `NOOK_FUZZ_VERBOSE` set, prints what a target's step gave (to see why a seed is
/// refused).
pub fn verbose(what: &str, result: &dyn std::fmt::Debug) {
    if std::env::var_os("NOOK_FUZZ_VERBOSE").is_some() {
        eprintln!("{what}: {result:?}");
    }
}

/// A target: a name (its binary, its corpus dir) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for the corpus replay test and tools.
pub const TARGETS: &[Target] = &[
    ("layer_apply", layer::layer_apply),
    ("image_import", image::image_import),
    ("image_user", image::image_user),
    ("cgroup_files", parsers::cgroup_files),
    ("idmap", parsers::idmap),
    ("seccomp_profile", parsers::seccomp_profile),
    ("sandbox_spec", parsers::sandbox_spec),
    ("ipam_state", parsers::ipam_state),
    ("oci_config", oci::oci_config),
];
