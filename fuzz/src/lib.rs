//! Fuzz targets for the nook crates: each is a `fn(&[u8])` that panics on a bug, driven by
//! libFuzzer (`fuzz_targets/*.rs`, built by `.ci/fuzz`) and replayed on its corpus by
//! `cargo test` in this crate (`tests/corpus.rs`). See RELIABILITY.md, "Fuzzing".

pub mod jail;
pub mod layer;
pub mod tree;
