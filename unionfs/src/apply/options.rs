//! The public knobs and results of an apply: [`ApplyOptions`], [`Progress`], [`Applied`].

use super::Limits;
#[cfg(doc)]
use super::apply_layer;
use crate::WhiteoutFormat;

/// How far an apply has got (reported after each entry and every few MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Compressed (input) bytes read so far.
    pub bytes_read: u64,
    /// Total input bytes, when known (e.g. a file's size).
    pub bytes_total: Option<u64>,
    /// Entries applied so far.
    pub entries: u64,
}

/// Options for [`apply_layer`].
#[derive(Default)]
#[non_exhaustive]
pub struct ApplyOptions<'a> {
    /// Whiteout format to write into the layer dir (`.wh.` entries are converted to it).
    pub whiteouts: Option<WhiteoutFormat>,
    /// Total input size for progress (else unknown).
    pub bytes_total: Option<u64>,
    /// Called with progress.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Create block and character device nodes (default `false`: a device entry is refused
    /// with [`crate::UnsafeEntry::DeviceNode`]). A layer can name any device — the host's root
    /// disk, `/dev/mem` — and a node for it in a layer dir is reachable by whoever can reach
    /// the dir or mounts it without `nodev`. Image layers have no need for them (a container
    /// runtime creates `/dev` itself). Needs `CAP_MKNOD` when set. A 0/0 character device (an
    /// overlay whiteout written into a tar) is always allowed.
    pub allow_devices: bool,
    /// Bounds on the apply (default [`Limits::default`]).
    pub limits: Limits,
}

impl std::fmt::Debug for ApplyOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("whiteouts", &self.whiteouts)
            .field("bytes_total", &self.bytes_total)
            .field("progress", &self.progress.is_some())
            .field("allow_devices", &self.allow_devices)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// sha256 of the uncompressed tar stream (`sha256:<hex>`), the layer's DiffID.
    pub diff_id: crate::Digest,
    /// Uncompressed bytes.
    pub size: u64,
    /// Entries applied.
    pub entries: u64,
}
