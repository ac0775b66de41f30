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
pub use store::{Digest, Layer, LayerStore, chain_id};
pub use vfs::is_overlay_xattr;
pub use vfs::{Vfs, materialize};
pub use view::{EntryKind, UnionView, ViewEntry};
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX, WhiteoutFormat, convert};
pub use whiteout::{
    OpaqueValue, TRUSTED_OPAQUE_XATTR, TRUSTED_WHITEOUT_XATTR, USER_OPAQUE_XATTR, USER_WHITEOUT_XATTR, create_whiteout,
    is_opaque, is_overlay_whiteout, is_whiteout_device, is_whiteout_name, set_opaque, whiteout_name_for,
    whiteout_target,
};
