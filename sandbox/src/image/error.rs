//! The image module's error type, [`ImageError`], in the crate-wide shape (issue 12 item 1):
//! typed validation errors, `Sys { call, path, source }`, `Cleanup`, `Teardown`, and one
//! variant per way an image can be wrong, each naming the blob, digest or path.

use std::path::PathBuf;

use nook_unionfs::Digest;

/// A result with an [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Where a blob came from, for error messages: a file of an OCI layout, an entry of a
/// `docker save` archive, or the image store's own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobSource {
    /// A file (an OCI layout's `blobs/sha256/<hex>`, the store's copy).
    File(PathBuf),
    /// An entry of a tar archive (`docker save`).
    ArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name in it.
        entry: String,
    },
}

impl std::fmt::Display for BlobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobSource::File(p) => write!(f, "{}", p.display()),
            BlobSource::ArchiveEntry { archive, entry } => write!(f, "{}:{entry}", archive.display()),
        }
    }
}

/// Which OCI or Docker document a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Document {
    /// `oci-layout`.
    Layout,
    /// An image index (`index.json`, or a manifest list it points to).
    Index,
    /// An image manifest.
    Manifest,
    /// An image configuration.
    Config,
    /// A `docker save` archive's `manifest.json`.
    DockerManifest,
    /// The image store's own record file (`images.json`).
    Records,
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Document::Layout => "oci-layout",
            Document::Index => "image index",
            Document::Manifest => "image manifest",
            Document::Config => "image config",
            Document::DockerManifest => "docker manifest.json",
            Document::Records => "image records",
        })
    }
}

/// Why a caller's value was refused before anything was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageValidationError {
    /// An image reference that is empty, too long, or holds whitespace, control characters
    /// or a NUL.
    #[error("image reference {value:?} must be 1-255 printable characters without whitespace")]
    Reference {
        /// The reference.
        value: String,
    },
    /// A working directory that is not absolute.
    #[error("working dir {value:?} must be an absolute path")]
    WorkingDir {
        /// The value.
        value: String,
    },
    /// A user spec that is not `user`, `uid`, `user:group` or `uid:gid`.
    #[error("user {value:?} must be NAME, UID, NAME:GROUP or UID:GID")]
    User {
        /// The value.
        value: String,
    },
    /// An environment entry without `=` or with an empty name.
    #[error("environment entry {value:?} must be NAME=VALUE")]
    Env {
        /// The entry.
        value: String,
    },
}

/// Everything that can go wrong importing, exporting or reading images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A caller's value was refused (nothing was touched).
    #[error(transparent)]
    Invalid(#[from] ImageValidationError),
    /// A system call or file operation failed.
    #[error("{call}{} failed: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Sys {
        /// The call (`"open"`, `"read"`, `"rename"`, ...).
        call: &'static str,
        /// The file it worked on.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The layer store refused or failed an operation that is not about one blob.
    #[error("layer store: {0}")]
    Store(#[source] nook_unionfs::Error),
    /// Applying a layer blob failed (an unsafe entry, a limit, a broken tar, an I/O error).
    #[error("layer {blob}: {source}")]
    Layer {
        /// The layer's blob digest (or, for a layer without one, its DiffID).
        blob: Digest,
        /// What the layer store said.
        #[source]
        source: nook_unionfs::Error,
    },
    /// A blob's sha256 is not the digest its descriptor names.
    #[error("blob {blob}: digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Where the blob was read from.
        blob: BlobSource,
        /// The digest the descriptor names.
        expected: Digest,
        /// The digest of the bytes read.
        actual: Digest,
    },
    /// A blob's size is not the size its descriptor names.
    #[error("blob {blob}: {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Where the blob was read from.
        blob: BlobSource,
        /// The size the descriptor names.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A layer blob that was only checked (its layer is in the store already) went over one
    /// of the apply limits while it was decompressed ([`nook_unionfs::Limits`]; a blob that
    /// is applied reports the layer store's own limit error in [`ImageError::Layer`]).
    #[error("blob {blob}: over the {limit} limit ({value} > {max})")]
    LimitExceeded {
        /// The blob.
        blob: BlobSource,
        /// Which limit.
        limit: nook_unionfs::Limit,
        /// The value reached (for the ratio: expanded bytes per blob byte, rounded up).
        value: u64,
        /// The limit's setting.
        max: u64,
    },
    /// A layer's DiffID (sha256 of its uncompressed tar) is not the one the image config lists
    /// at its position in `rootfs.diff_ids`.
    #[error("layer {layer} ({blob}): diff id {actual}, config says {expected}")]
    DiffIdMismatch {
        /// Its index in the manifest (0 = bottom).
        layer: usize,
        /// Its blob.
        blob: BlobSource,
        /// The DiffID the config lists.
        expected: Digest,
        /// The DiffID of the uncompressed tar.
        actual: Digest,
    },
    /// The manifest and the config list different numbers of layers.
    #[error("manifest has {layers} layers, config has {diff_ids} diff ids")]
    LayerCountMismatch {
        /// Layers in the manifest.
        layers: usize,
        /// `rootfs.diff_ids` in the config.
        diff_ids: usize,
    },
    /// A JSON document (index, manifest, config, `manifest.json`) larger than this importer
    /// reads.
    #[error("{at}: {size} bytes, documents are read up to {max}")]
    DocumentTooLarge {
        /// Where it is.
        at: BlobSource,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A digest with an algorithm other than sha256, or malformed.
    #[error("unsupported or malformed digest {digest:?}")]
    UnsupportedDigest {
        /// The digest as written.
        digest: String,
    },
    /// A layer (or manifest) media type this importer does not handle.
    #[error("blob {blob}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The blob.
        blob: String,
        /// Its media type.
        media_type: String,
    },
    /// A document (manifest, index, config, `manifest.json`) could not be parsed or written.
    #[error("{document} {at}: {source}")]
    Document {
        /// Which document.
        document: Document,
        /// Where it was read from (or what it was built for).
        at: String,
        /// The parse error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A JSON document that is not an OCI one (`manifest.json`, the store's records) could not
    /// be parsed or written.
    #[error("{document} {at}: {source}")]
    Json {
        /// Which document.
        document: Document,
        /// Where it was read from.
        at: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A directory that is not an OCI image layout (no `oci-layout`, no `index.json`, an
    /// unknown layout version).
    #[error("{} is not an OCI image layout: {problem}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: LayoutProblem,
    },
    /// A blob the image needs is not in the layout or archive.
    #[error("blob {digest} missing: {at} does not exist")]
    BlobMissing {
        /// The blob.
        digest: String,
        /// Where it was looked for.
        at: BlobSource,
    },
    /// A blob or document of a layout that is not a regular file (a directory, a fifo, a
    /// device): refused before it is read.
    #[error("{at} is not a regular file")]
    NotAFile {
        /// The path.
        at: BlobSource,
    },
    /// A `docker save` archive entry is missing, not a regular file, or named unsafely.
    #[error("archive {}: entry {entry:?}: {problem}", archive.display())]
    ArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry name.
        entry: String,
        /// What is wrong with it.
        problem: ArchiveProblem,
    },
    /// No image in the layout or archive matches the reference or platform asked for.
    #[error("{}: no image matches {wanted} (available: {available:?})", path.display())]
    NoMatchingImage {
        /// The layout or archive.
        path: PathBuf,
        /// The reference or platform asked for.
        wanted: String,
        /// What is there (references, platforms).
        available: Vec<String>,
    },
    /// The layout or archive holds several images and the caller named none.
    #[error("{} holds several images, name one of {candidates:?}", path.display())]
    AmbiguousImage {
        /// The layout or archive.
        path: PathBuf,
        /// The references (or manifest digests) in it.
        candidates: Vec<String>,
    },
    /// Index nesting deeper than this importer follows (a loop).
    #[error("{}: image indexes nested deeper than {depth}", path.display())]
    IndexTooDeep {
        /// The layout.
        path: PathBuf,
        /// The depth reached.
        depth: usize,
    },
    /// No image with this reference in the store.
    #[error("no image {reference:?} in the store")]
    ImageNotFound {
        /// The reference.
        reference: String,
    },
    /// The image's user (or the caller's override) names a user that the image's
    /// `/etc/passwd` does not have.
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser {
        /// The user name.
        user: String,
    },
    /// The user spec names a group that the image's `/etc/group` does not have.
    #[error("group {group:?} not found in the image's /etc/group")]
    UnknownGroup {
        /// The group name.
        group: String,
    },
    /// Neither the image (Entrypoint, Cmd) nor the caller names a command.
    #[error("image {reference:?} has no Entrypoint or Cmd and no command was given")]
    NoCommand {
        /// The image.
        reference: String,
    },
    /// An export target that exists and is not empty.
    #[error("export target {} exists and is not empty", path.display())]
    TargetNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A stored layer whose tar could not be reproduced with its DiffID (its blob was not
    /// kept and the layer dir does not give the same tar back).
    #[error("layer {chain_id}: regenerated tar has diff id {actual}, stored {expected}")]
    LayerNotReproducible {
        /// The layer.
        chain_id: Digest,
        /// The stored DiffID.
        expected: Digest,
        /// The regenerated tar's DiffID.
        actual: Digest,
    },
    /// A setup step failed and undoing it failed too.
    #[error("{cause} (and cleaning up failed: {cleanup:?})")]
    Cleanup {
        /// What failed first.
        cause: Box<ImageError>,
        /// What failed while undoing it.
        cleanup: Vec<ImageError>,
    },
    /// A removal kept going and reports every failure.
    #[error("removing {what}: {errors:?}")]
    Teardown {
        /// What was being removed.
        what: String,
        /// Every failure.
        errors: Vec<ImageError>,
    },
}

/// What is wrong with a directory given as an OCI image layout.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutProblem {
    /// No `oci-layout` file.
    NoLayoutFile,
    /// No `index.json`.
    NoIndex,
    /// An `imageLayoutVersion` other than 1.x.
    Version(String),
}

impl std::fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutProblem::NoLayoutFile => f.write_str("no oci-layout file"),
            LayoutProblem::NoIndex => f.write_str("no index.json"),
            LayoutProblem::Version(v) => write!(f, "image layout version {v:?} (1.x supported)"),
        }
    }
}

/// What is wrong with an entry of a `docker save` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveProblem {
    /// Not in the archive.
    Missing,
    /// Not a regular file (nor a symlink to one inside the archive).
    NotAFile,
    /// The name climbs out of the archive (`..`, absolute) or its links loop.
    UnsafeName,
    /// The archive is compressed: `docker save` writes a plain tar; decompress it first.
    Compressed,
    /// The archive has more entries than a `docker save` archive would (100 000).
    TooManyEntries,
}

impl std::fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArchiveProblem::Missing => "missing",
            ArchiveProblem::NotAFile => "not a regular file",
            ArchiveProblem::UnsafeName => "unsafe name or link loop",
            ArchiveProblem::Compressed => "the archive is compressed (docker save writes a plain tar)",
            ArchiveProblem::TooManyEntries => "more entries than a docker save archive has",
        })
    }
}

impl ImageError {
    /// The OS error number behind this error, if any (looking through `Cleanup`'s cause and
    /// the layer store's errors).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ImageError::Sys { source, .. } => source.raw_os_error(),
            ImageError::Store(e) | ImageError::Layer { source: e, .. } => io_errno(e),
            ImageError::Cleanup { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }

    /// A cause plus what failed while undoing it (the cause alone when nothing did).
    pub(crate) fn with_cleanup(cause: ImageError, cleanup: Vec<ImageError>) -> ImageError {
        if cleanup.is_empty() { cause } else { ImageError::Cleanup { cause: Box::new(cause), cleanup } }
    }
}

/// The errno of the first `io::Error` in an error's source chain.
fn io_errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

impl From<nook_unionfs::Error> for ImageError {
    fn from(e: nook_unionfs::Error) -> ImageError {
        ImageError::Store(e)
    }
}

impl From<nook_ns::statefile::FileError> for ImageError {
    fn from(e: nook_ns::statefile::FileError) -> ImageError {
        ImageError::Sys { call: e.call, path: Some(e.path), source: e.source }
    }
}

/// Context for I/O results: the call and the path.
pub(crate) trait SysContext<T> {
    /// Names the call.
    #[allow(dead_code)]
    fn sys(self, call: &'static str) -> Result<T>;
    /// Names the call and the path.
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, std::io::Error> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|source| ImageError::Sys { call, path: None, source })
    }
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| ImageError::Sys { call, path: Some(path.into()), source })
    }
}

impl<T> SysContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn sys(self, call: &'static str) -> Result<T> {
        self.map_err(|e| ImageError::Sys { call, path: None, source: e.into() })
    }
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| ImageError::Sys { call, path: Some(path.into()), source: e.into() })
    }
}
