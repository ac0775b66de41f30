//! `LayerStack`: the pure description of a union (lower layers, upper, options), validated and
//! rendered without touching the system.
//!
//! API CONTRACT (frozen; the overlay helper fills the bodies and may add items).

use std::path::{Path, PathBuf};

/// The kernel's limit on overlay lower layers (`OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

/// Where writes go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Upper {
    /// Read-only stack: no upper layer.
    None,
    /// A persistent upper dir and its work dir (same filesystem, work dir empty).
    Dir {
        /// Upper dir (receives copy-ups and whiteouts).
        upper: PathBuf,
        /// Work dir.
        work: PathBuf,
    },
    /// An upper + work on a fresh tmpfs that vanishes with the mount.
    Tmpfs {
        /// tmpfs size limit in bytes (`None`: the kernel default, half of RAM).
        size: Option<u64>,
    },
}

/// `redirect_dir=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectDir {
    /// `on`.
    On,
    /// `follow`.
    Follow,
    /// `nofollow`.
    NoFollow,
    /// `off`.
    Off,
}

/// Overlay mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverlayOptions {
    /// `volatile`: no syncs to the upper (faster; the upper is unusable after a crash).
    pub volatile: bool,
    /// `index=on|off` (`None`: kernel default).
    pub index: Option<bool>,
    /// `metacopy=on|off` (`None`: kernel default).
    pub metacopy: Option<bool>,
    /// `redirect_dir=` (`None`: kernel default).
    pub redirect_dir: Option<RedirectDir>,
    /// `userxattr`: use `user.overlay.*` xattrs (needed inside a user namespace).
    pub userxattr: bool,
    /// Force the `mount(2)` path instead of `fsopen`/`fsconfig` (for tests and old kernels).
    pub legacy_mount: bool,
}

/// A union: read-only lower layers (bottom first), an optional upper, options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerStack {
    lowers: Vec<PathBuf>,
    upper: Option<Upper>,
    options: OverlayOptions,
}

impl LayerStack {
    /// An empty stack (add at least one lower, or one lower plus an upper).
    pub fn new() -> LayerStack {
        LayerStack::default()
    }

    /// Pushes a lower layer on top of the ones already given (bottom first, like a Dockerfile).
    pub fn lower(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.lowers.push(dir.into());
        self
    }

    /// Pushes several lower layers (bottom first).
    pub fn lowers<I: IntoIterator<Item = P>, P: Into<PathBuf>>(&mut self, dirs: I) -> &mut Self {
        self.lowers.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Sets the upper.
    pub fn upper(&mut self, upper: Upper) -> &mut Self {
        self.upper = Some(upper);
        self
    }

    /// Sets the options.
    pub fn options(&mut self, options: OverlayOptions) -> &mut Self {
        self.options = options;
        self
    }

    /// Lower layers, bottom first.
    pub fn lower_dirs(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// The upper (`Upper::None` when unset).
    pub fn upper_layer(&self) -> &Upper {
        self.upper.as_ref().unwrap_or(&Upper::None)
    }

    /// The options.
    pub fn overlay_options(&self) -> &OverlayOptions {
        &self.options
    }

    /// Pure checks (no syscalls): at least one lower (two when read-only? the kernel accepts
    /// one lower with an upper, two without), at most MAX_LOWER_LAYERS, absolute paths
    /// without `,`, `:` (escaped where the kernel allows) or NUL, upper and work given
    /// together and distinct, option combinations the kernel refuses (e.g. `volatile`
    /// without an upper, `metacopy=on` with `redirect_dir=off`).
    pub fn validate(&self) -> Result<(), crate::Error> {
        todo!()
    }

    /// The `mount(2)` data string (`lowerdir=TOP:...:BOTTOM,upperdir=..,workdir=..,opts`).
    pub fn mount_data(&self) -> Result<String, crate::Error> {
        todo!()
    }

    /// Mounts the stack at `target` (overlay driver).
    pub fn mount(&self, target: &Path) -> Result<crate::MountedStack, crate::Error> {
        let _ = target;
        todo!()
    }
}
