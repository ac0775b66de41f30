//! A union view in user space: resolve a path and list a directory through a stack of layer
//! dirs without mounting (top-down lookup; whiteouts hide; an opaque dir stops descent).
//!
//! API CONTRACT (frozen; the whiteout/view helper fills the bodies and may add items).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Result, WhiteoutFormat};

/// What a path resolves to in the union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    /// Index of the layer it comes from (0 = bottom).
    pub layer: usize,
    /// Its real path in that layer.
    pub real_path: PathBuf,
    /// File type.
    pub kind: EntryKind,
}

/// File types in a union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// A read-only union of layer dirs (bottom first), in one whiteout format.
#[derive(Debug, Clone)]
pub struct UnionView {
    layers: Vec<PathBuf>,
    format: WhiteoutFormat,
}

impl UnionView {
    /// A view over `layers` (bottom first).
    pub fn new(layers: Vec<PathBuf>, format: WhiteoutFormat) -> UnionView {
        UnionView { layers, format }
    }

    /// Resolves `path` (relative to the union root; symlinks are not followed).
    pub fn lookup(&self, path: &Path) -> Result<Option<ViewEntry>> {
        let _ = (path, &self.layers, self.format);
        todo!()
    }

    /// Lists a directory of the union.
    pub fn read_dir(&self, path: &Path) -> Result<BTreeMap<std::ffi::OsString, ViewEntry>> {
        let _ = path;
        todo!()
    }
}
