//! nook-sandbox's integration tests, one binary (`cargo test -p nook-sandbox --test it`): a
//! module per area. Tests that re-execute this binary in a role (as `nobody`, or as a helper
//! that owns kernel objects) name themselves through [`test_name`].

#[cfg(feature = "tokio")]
mod asyncwait;
mod child;
mod cleanup;
mod concurrency;
mod crash;
mod detached;
mod escape;
mod faults;
mod hardening;
mod image;
mod image_run;
mod net;
mod owner;
mod pool;
mod probe;
mod sandbox;
mod soak;
mod usernet;
mod world;

/// The libtest name of test `name` in the module whose `module_path!()` is `module` (the
/// crate's own name is not part of it): what `--exact` needs to run just that test.
pub(crate) fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
