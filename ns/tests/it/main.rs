//! nook-ns's integration tests against the real kernel, in one test binary (one link, one
//! process): a module per area. Two suites keep a binary of their own because they observe the
//! whole process, which the tests of the other modules, running on parallel threads, would
//! disturb:
//!
//! - `tests/no_alloc.rs` installs a counting `#[global_allocator]` (one per binary) and
//!   asserts the count stays at 0 in the child;
//! - `tests/spawn.rs` compares the process's fd table and its unreaped children before and
//!   after, under a lock only its own tests take: another module's open descriptor or running
//!   child would read as a leak.

mod hygiene;
mod init;
mod inspect;
mod isolation;
mod join;
mod mounts;
mod netns;
mod probe;
mod unprivileged;

/// The name libtest gives test `name` of the module at `module` (`module_path!()`: the
/// path without the crate), for re-running this binary with `--exact`.
pub(crate) fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
