//! Whiteouts in both formats and conversion between them.
//!
//! - AUFS/OCI: a file `.wh.NAME` deletes `NAME`; `.wh..wh..opq` in a dir makes it opaque.
//! - overlay: a 0/0 character device `NAME` deletes `NAME`; xattr `trusted.overlay.opaque=y`
//!   (or `user.overlay.opaque=y` with `userxattr`) makes a dir opaque.
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::path::Path;

use crate::Result;

/// AUFS whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// AUFS opaque marker file name.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The on-disk whiteout format of a layer dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum WhiteoutFormat {
    /// `.wh.` files and `.wh..wh..opq` markers.
    Aufs,
    /// 0/0 char devices and `trusted.overlay.opaque`.
    Overlay,
    /// 0/0 char devices and `user.overlay.opaque` (overlay with `userxattr`).
    OverlayUserXattr,
}

/// Converts a layer dir in place from one format to the other; returns how many whiteouts
/// and opaque dirs were converted.
pub fn convert(layer: &Path, from: WhiteoutFormat, to: WhiteoutFormat) -> Result<usize> {
    let _ = (layer, from, to);
    todo!()
}
