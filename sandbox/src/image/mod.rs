//! Images: import OCI image layouts and `docker save` archives into a layer store, run
//! from them with their config applied, commit containers and export back to OCI layouts.
//!
//! * [`ImageStore`] — named images over a [`LayerStore`](nook_unionfs::LayerStore) (same
//!   root): image records (reference → manifest, config, layers), a content store of the
//!   blobs as imported, locks and atomic record updates
//!   ([`nook_ns::statefile`]). See its docs for the layout on disk.
//! * Import — [`ImageStore::import_layout`] (an OCI image layout directory, as
//!   `skopeo copy … oci:DIR` or `buildah push … oci:DIR` write it, including an index of
//!   several platforms) and [`ImageStore::import_docker_archive`] (a `docker save` tar).
//!   Every blob's sha256 and size are checked against its descriptor, every layer's DiffID
//!   against the config's `rootfs.diff_ids`; layers (plain, gzip, zstd) are applied with the
//!   layer store's safe extraction and limits. A failed import stores nothing. Progress is
//!   reported per layer ([`ImportOptions::progress`]). The OCI documents are `oci-spec`'s
//!   types; only Docker's own `manifest.json` has a (private) serde type here.
//! * Run values — [`RunDefaults`]: Entrypoint + Cmd, Env, WorkingDir and User of the image
//!   config with the caller's overrides ([`RunOverrides`]) applied as `docker run` does; the
//!   user is resolved against the image's `/etc/passwd` and `/etc/group`
//!   ([`resolve_user`], pure; [`ImageStore::run_defaults`] reads the files from the layers
//!   through [`RootfsFiles`]).
//! * Unprivileged use — an import needs no privilege beyond write access to the store:
//!   owners in the layers are not applied, the overlay whiteouts (0/0 character devices)
//!   are made as any user may on Linux 5.8+ (tested as uid 65534).
//! * Commit and export — [`ImageStore::commit`] turns a container layer's upper dir into a
//!   new image (`docker commit`); [`ImageStore::export_layout`] writes an image as an OCI
//!   layout (`docker save`), byte-identical to what was imported unless the layers are
//!   recompressed ([`LayerCompression`]).
//!
//! ```no_run
//! use nook_sandbox::image::{ImageStore, ImportOptions, RunOverrides};
//!
//! # fn main() -> Result<(), nook_sandbox::image::ImageError> {
//! let store = ImageStore::open("/var/lib/nk-example/images")?;
//! let image = store.import_layout("/tmp/app-oci", "app:1", ImportOptions::default())?;
//! let run = store.run_defaults(&image, &RunOverrides::default())?;
//! println!("{:?} as {}:{} in {}", run.argv, run.user.uid, run.user.gid, run.working_dir.display());
//! let container = store.create_container("nk-app-1", &image)?;
//! // ... mount container.stack at container.merged, run the process, unmount ...
//! let committed = store.commit(&image, &container.upper, "app:2", &Default::default())?;
//! store.export_layout(&committed.reference, "/tmp/app2-oci", &Default::default())?;
//! # Ok(())
//! # }
//! ```

mod archive;
mod config;
mod error;
mod export;
mod import;
mod rootfs;
mod store;

pub use config::{DEFAULT_PATH, ResolvedUser, RunDefaults, RunOverrides, resolve_user};
pub use error::{ArchiveProblem, BlobSource, Document, ImageError, ImageValidationError, LayoutProblem, Result};
pub use export::{CommitOptions, ExportOptions, Exported, LayerCompression};
pub use import::{ImportOptions, ImportPhase, ImportProgress, LAYER_MEDIA_TYPES, Platform};
pub use rootfs::RootfsFiles;
pub use store::{Image, ImageLayer, ImageStore, Pruned, normalize_reference};
