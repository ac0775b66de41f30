//! The copy (vfs) driver: materialises a union into a plain directory, for where overlay cannot
//! be used (an upper on an overlay, some user-namespace setups).
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::path::Path;

use crate::{Result, WhiteoutFormat};

/// Copies the union of `layers` (bottom first, in `format`) into the empty dir `target`,
/// keeping modes, owners, timestamps, xattrs (except overlay's own), symlinks, hardlinks
/// within a layer and device nodes; whiteouts and opaque markers are applied, not copied.
pub fn materialize(layers: &[&Path], format: WhiteoutFormat, target: &Path) -> Result<()> {
    let _ = (layers, format, target);
    todo!()
}

/// The copy driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vfs;
