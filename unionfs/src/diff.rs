//! Diff and commit: turn an upper dir into an OCI layer tar (overlay whiteouts become `.wh.`
//! entries, opaque dirs `.wh..wh..opq`) and commit it as a new layer — `docker commit`.
//!
//! API CONTRACT (frozen; the tar/store helper fills the bodies and may add items).

use std::io::Write;
use std::path::Path;

use crate::{Digest, Layer, LayerStore, Result, WhiteoutFormat};

/// Writes the changes in `upper` (in `format`) as an uncompressed OCI layer tar to `out`
/// (deterministic entry order); returns its DiffID.
pub fn write_diff(upper: &Path, format: WhiteoutFormat, out: impl Write) -> Result<Digest> {
    let _ = (upper, format, out);
    todo!()
}

impl LayerStore {
    /// Commits `upper` as a new layer on top of `parent`.
    pub fn commit(&self, upper: &Path, format: WhiteoutFormat, parent: Option<&Digest>) -> Result<Layer> {
        let _ = (upper, format, parent);
        todo!()
    }
}
