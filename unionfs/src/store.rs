//! A content-addressed layer store laid out like Docker's: each layer named by the sha256
//! DiffID of its uncompressed tar, chained by OCI ChainIDs.
//!
//! ```text
//! ROOT/layers/<chain-id-hex>/diff/      the layer's files (overlay whiteout format)
//! ROOT/layers/<chain-id-hex>/diff-id    sha256:...
//! ROOT/layers/<chain-id-hex>/parent     parent chain id (absent for a base layer)
//! ROOT/layers/<chain-id-hex>/size       uncompressed tar size
//! ROOT/containers/<id>/{upper,work,merged}
//! ```
//!
//! API CONTRACT (frozen; the tar/store helper fills the bodies and may add items).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{ApplyOptions, LayerStack, Result};

/// A `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Digest(String);

impl Digest {
    /// sha256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        let _ = bytes;
        todo!()
    }
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        let _ = s;
        todo!()
    }
    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        todo!()
    }
    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// OCI ChainID: `ChainID(L0) = DiffID(L0)`, `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    let _ = (parent, diff_id);
    todo!()
}

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// DiffID.
    pub diff_id: Digest,
    /// ChainID (its name in the store).
    pub chain_id: Digest,
    /// Parent ChainID.
    pub parent: Option<Digest>,
    /// Uncompressed tar size.
    pub size: u64,
    /// Its `diff/` dir.
    pub diff_dir: PathBuf,
}

/// A layer store rooted at a directory.
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

impl LayerStore {
    /// Opens (creating) a store.
    pub fn open(root: impl AsRef<Path>) -> Result<LayerStore> {
        let _ = root.as_ref();
        todo!()
    }
    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Applies a layer tar on top of `parent` (atomically: applied into a temp dir, renamed
    /// into place; an identical layer already present is reused).
    pub fn apply(&self, input: impl Read, parent: Option<&Digest>, options: ApplyOptions<'_>) -> Result<Layer> {
        let _ = (input, parent, options);
        todo!()
    }
    /// A layer by ChainID.
    pub fn layer(&self, chain_id: &Digest) -> Result<Layer> {
        let _ = chain_id;
        todo!()
    }
    /// All layers.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        todo!()
    }
    /// The lower stack for a layer chain (bottom first), ready for an upper.
    pub fn stack(&self, top: &Digest) -> Result<LayerStack> {
        let _ = top;
        todo!()
    }
    /// Removes a layer (refused while another layer has it as parent).
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let _ = chain_id;
        todo!()
    }
}
