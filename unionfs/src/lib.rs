//! nook-unionfs: the union filesystem behind images and containers, as a library.
//!
//! * [`LayerStack`] is pure data: read-only lower layers (bottom first), an optional upper
//!   ([`Upper::Dir`], or [`Upper::Tmpfs`] that vanishes with the mount), overlay options
//!   (`volatile`, `index`, `metacopy`, `redirect_dir`, `userxattr`). [`LayerStack::validate`]
//!   checks it against the rules the kernel enforces, before anything is mounted.
//! * A [`StorageDriver`] makes a stack available at a target and returns a [`MountedStack`]
//!   handle (unmounted or deleted on drop; [`MountedStack::remove`] reports errors):
//!   - [`Overlay`] mounts it with the new mount API — `fsopen("overlay")`, one
//!     `fsconfig(lowerdir+)` per layer, `fsmount`, `move_mount` — so there is no one-page limit
//!     on the option string and a stack can have the kernel's full 500 layers
//!     ([`MAX_LOWER_LAYERS`]). Where `lowerdir+` is missing (before Linux 6.8) it falls back to
//!     `mount(2)` with the option string compacted to fit one page (500 layers still fit, named
//!     by descriptor). [`probe`] reports what the running kernel's overlayfs takes
//!     ([`KernelSupport`]); it is not fooled by the legacy `fs_context` wrapper that accepts
//!     every key on kernels before 6.5.
//!   - [`Vfs`], the copy driver, materialises the union into a plain directory
//!     ([`materialize`]), for where overlay cannot be used (an upper on an overlay).
//!
//!   The boundary is the trait: a block-level driver (devicemapper thin snapshots, zfs
//!   clones) would implement [`StorageDriver`] the same way, turning a stack into a mounted
//!   snapshot. None is provided: the kernels this was built on have neither device-mapper nor
//!   zfs.
//! * Whiteouts in both formats ([`WhiteoutFormat`]): AUFS/OCI `.wh.NAME` files and
//!   `.wh..wh..opq` markers, as in layer tarballs; overlay 0/0 character devices and
//!   `trusted.overlay.opaque` (`user.overlay.opaque` with `userxattr`), as on disk.
//!   [`convert`] turns a layer dir from one into the other.
//! * [`UnionView`] resolves paths and lists directories through a stack in user space
//!   (top-down lookup, whiteouts hide, an opaque dir stops the descent), for inspection
//!   without mounting; the tests check the kernel's overlay against it on random stacks.
//! * [`LayerStore`] keeps layers like Docker does, each named by the OCI ChainID computed
//!   from the sha256 DiffIDs of their uncompressed tars ([`Digest`], [`chain_id`]):
//!   `ROOT/layers/<chain-id>/{diff/,diff-id,parent,size}` and
//!   `ROOT/containers/<id>/{upper,work,merged}` ([`ContainerLayer`]).
//!   [`LayerStore::apply`] / [`apply_layer`] apply a layer tarball (plain, gzip or zstd) with
//!   progress reports ([`Progress`]); [`write_diff`] and [`LayerStore::commit`] turn an upper
//!   dir back into a layer (`docker commit`).
//!
//! # Applying untrusted tarballs
//!
//! The tar crate is used only to read headers; nothing goes through its `unpack`. Every
//! entry's parent is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` from the
//! layer root, files are created with `O_EXCL | O_NOFOLLOW`, and an entry that climbs out
//! (`..`, an absolute name), writes through a symlink, links outside the layer, loops, or is
//! absurdly deep is refused with [`Error::Unsafe`] naming the entry and the [`UnsafeEntry`]
//! reason — before anything is written for it. Device nodes are refused unless
//! [`ApplyOptions::allow_devices`] asks for them. An apply is bounded ([`Limits`], in
//! [`ApplyOptions::limits`]): total file bytes, entries, expansion ratio (decompressed per
//! compressed byte) and data after the end of the archive, with defaults that take any real
//! image layer but stop decompression bombs; going over one is [`Error::LimitExceeded`]
//! naming the limit. GNU sparse files are written sparse.
//!
//! # Errors
//!
//! One [`Error`] enum, in the shape every nook crate shares: [`Error::Invalid`] wraps a typed
//! [`ValidationError`] (what [`LayerStack::validate`] and the other argument checks return,
//! each variant naming the field and the value, before anything is touched);
//! [`Error::Sys`] names the failed call and the path; [`Error::Cleanup`] carries a failed
//! step's cause and what failed while undoing it; [`Error::Teardown`] lists every failure of a
//! removal that kept going ([`MountedStack::remove`], [`LayerStore::clean_tmp`]).
//! [`Error::raw_os_error`] finds the errno behind any of them.
//!
//! # Building options
//!
//! The spec, option and result structs ([`LayerStack`], [`Upper`], [`OverlayOptions`],
//! [`ApplyOptions`], [`Limits`], ...) are `#[non_exhaustive]`, so a new field or variant is not
//! a breaking change. Outside this crate, start from `Default::default()` (or a constructor
//! such as [`Limits::unlimited`]) and assign the public fields:
//!
//! ```
//! let mut options = nook_unionfs::ApplyOptions::default();
//! options.allow_devices = true;
//! options.limits.max_entries = 10_000;
//! ```
//!
//! # Example
//!
//! ```no_run
//! use nook_unionfs::{ApplyOptions, LayerStore, Upper};
//!
//! # fn main() -> nook_unionfs::Result<()> {
//! let store = LayerStore::open("/var/lib/nk-example/layers")?;
//! let tarball = std::fs::File::open("layer.tar.gz").expect("a layer");
//! let layer = store.apply(tarball, None, ApplyOptions::default())?;
//! let mut stack = store.stack(&layer.chain_id)?;
//! stack.upper(Upper::Tmpfs { size: Some(64 << 20) });
//! let root = stack.mount(std::path::Path::new("/mnt/nk-root"))?;
//! // ... use /mnt/nk-root as a container's root filesystem ...
//! root.remove()?;
//! # Ok(())
//! # }
//! ```

// No unsafe code: the one helper thread that needed it (`unshare(CLONE_FS)` for the mount(2)
// fallback's private working directory) is nook-ns's `on_thread_with_cwd`.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod apply;
mod diff;
mod error;
mod fsutil;
mod overlay;
mod stack;
mod store;
mod vfs;
mod view;
mod whiteout;

pub use apply::{Applied, ApplyOptions, Limits, Progress, apply_layer};
pub use diff::write_diff;
pub use error::{DigestProblem, Error, Limit, PathProblem, Result, StackDir, UnsafeEntry, ValidationError};
pub use overlay::{KernelSupport, MountedStack, Overlay, StorageDriver, probe, supports_lowerdir_plus};
pub use stack::{LayerStack, MAX_LOWER_LAYERS, MAX_MOUNT_DATA, OverlayOptions, RedirectDir, Upper};
pub use store::{ContainerLayer, Digest, Layer, LayerStore, chain_id, chain_id_of};
pub use vfs::is_overlay_xattr;
pub use vfs::{Vfs, materialize};
pub use view::{EntryKind, UnionView, ViewEntry};
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX, WhiteoutFormat, convert};
pub use whiteout::{
    OpaqueValue, TRUSTED_OPAQUE_XATTR, TRUSTED_WHITEOUT_XATTR, USER_OPAQUE_XATTR, USER_WHITEOUT_XATTR, create_whiteout,
    is_opaque, is_overlay_whiteout, is_whiteout_device, is_whiteout_name, set_opaque, whiteout_name_for,
    whiteout_target,
};
