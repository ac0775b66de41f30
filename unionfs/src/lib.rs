//! nook-unionfs (in progress).

mod apply;
mod diff;
mod error;
mod overlay;
mod stack;
mod store;
mod vfs;
mod view;
mod whiteout;

pub use apply::{Applied, ApplyOptions, Progress, apply_layer};
pub use diff::write_diff;
pub use error::{Error, Result, UnsafeEntry};
pub use overlay::{MountedStack, Overlay, StorageDriver, supports_lowerdir_plus};
pub use stack::{LayerStack, MAX_LOWER_LAYERS, MAX_MOUNT_DATA, OverlayOptions, RedirectDir, Upper};
pub use store::{ContainerLayer, Digest, Layer, LayerStore, chain_id, chain_id_of};
pub use vfs::{Vfs, materialize};
pub use view::{EntryKind, UnionView, ViewEntry};
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX, WhiteoutFormat, convert};
