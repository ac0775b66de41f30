//! The integration tests of `nook-cgroup`, one test binary (one link instead of eight): one
//! module per area, each against the real kernel (root; `NOOK_REQUIRE_PRIV=1` turns a skip
//! into a failure). Test names carry the module (`limits::pids_max_stops_a_fork_bomb`), so
//! `cargo test -p nook-cgroup --test it limits::` runs one area.
//!
//! Layout-agnostic: the same tests run on this hybrid host and in the pure cgroup v2 guest of
//! `.ci/v2-lane`, whose allowed skips (`.ci/v2-lane`, `SKIP_ALLOW`) are the tests of v1
//! files: `*::v1_*`, `*_on_v1` and `*_where_v1_is_mounted`.

mod devices;
mod hostile;
mod layout;
mod lifecycle;
mod limits;
mod stats;
mod v2_io;
mod v2_only;

/// The libtest name of `test` in the module whose `module_path!()` is `module` (`it::stats`
/// → `stats::<test>`), for re-executing this binary with `--exact`.
fn test_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    }
}
