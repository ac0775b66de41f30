//! The overlay driver: mounts a [`LayerStack`] with the new mount API (`fsopen("overlay")`,
//! one `fsconfig(lowerdir+)` per layer, `fsmount`, `move_mount`), falling back to `mount(2)`.
//!
//! API CONTRACT (frozen; the overlay helper fills the bodies and may add items).

use std::path::{Path, PathBuf};

use crate::{LayerStack, Result};

/// A mounted stack. Unmounts on drop (best effort); [`MountedStack::remove`] reports errors.
#[derive(Debug)]
pub struct MountedStack {
    target: PathBuf,
}

impl MountedStack {
    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The upper dir in use (for `Upper::Tmpfs`, inside the private tmpfs), if any.
    pub fn upper_dir(&self) -> Option<&Path> {
        todo!()
    }

    /// Unmounts (and removes a tmpfs upper); reports every failure.
    pub fn remove(self) -> Result<()> {
        todo!()
    }

    /// Keeps the mount after this handle is dropped; returns its target.
    pub fn leak(self) -> PathBuf {
        todo!()
    }
}

/// Whether this kernel takes `lowerdir+` through `fsconfig` (Linux 6.8+).
pub fn supports_lowerdir_plus() -> bool {
    todo!()
}

/// A storage driver: turns a stack into a root filesystem at a target. Overlay and the copy
/// (vfs) driver implement it; a block-level driver (devicemapper, zfs) would too.
pub trait StorageDriver: std::fmt::Debug + Send + Sync {
    /// The driver's name (`"overlay"`, `"vfs"`).
    fn name(&self) -> &'static str;
    /// Makes `stack` available at `target`.
    fn mount(&self, stack: &LayerStack, target: &Path) -> Result<MountedStack>;
}

/// The overlay driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overlay;
