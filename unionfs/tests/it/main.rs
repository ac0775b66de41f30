//! nook-unionfs's integration tests: one test binary (one link, one process per run), a module
//! per area. They run against the real kernel as root (each skips with a printed reason
//! otherwise; `NOOK_REQUIRE_PRIV=1` turns a skip into a failure) and keep everything they make
//! inside a `TempDir`.
//!
//! - [`overlay`]: the overlay driver (500 layers, copy-up, whiteouts, options, `mount(2)`
//!   fallback, typed errors, teardown);
//! - [`apply`], [`hostile`], [`untrusted_input`]: applying layer tars, hostile and crafted
//!   input;
//! - [`store`], [`roundtrip`]: the layer store, diff and commit;
//! - [`view`], [`view_vs_kernel`], [`vfs`], [`whiteout`]: the user-space union view against
//!   the kernel, the copy driver, whiteout formats.
//!
//! Shared helpers: [`layers_util`] (layer trees, snapshots) and [`tarutil`] (tar building).

mod layers_util;
mod tarutil;

mod apply;
mod hostile;
mod overlay;
mod roundtrip;
mod store;
mod untrusted_input;
mod vfs;
mod view;
mod view_vs_kernel;
mod whiteout;

/// `t` changed by `f`: builds the crate's `#[non_exhaustive]` option structs (no struct
/// literals outside nook-unionfs), e.g. `tweak(OverlayOptions::default(), |o| o.volatile = true)`.
fn tweak<T>(mut t: T, f: impl FnOnce(&mut T)) -> T {
    f(&mut t);
    t
}
