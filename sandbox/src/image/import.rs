//! Importing images: an OCI image layout directory ([`ImageStore::import_layout`]) and a
//! `docker save` archive ([`ImageStore::import_docker_archive`]), both through one checked
//! pipeline ([`import_resolved`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use nook_unionfs::{ApplyOptions, Digest, Limits, chain_id};
use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, DescriptorBuilder, ImageConfiguration, ImageIndex, ImageManifest,
    ImageManifestBuilder, MediaType, OciLayout,
};

use super::error::{BlobSource, Document, ImageError, LayoutProblem, Result, SysContext};
use super::store::{HashingReader, Image, ImageLayer, ImageStore, Staging, normalize_reference};

/// A platform to pick from a multi-platform image (an index / manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Platform {
    /// `linux`, ...
    pub os: String,
    /// `amd64`, `arm64`, ... (the Go names the image spec uses).
    pub architecture: String,
    /// `v8`, `v7`, ... (`None`: any).
    pub variant: Option<String>,
}

impl Platform {
    /// A platform by OS and architecture (Go names: `linux`, `amd64`).
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform { os: os.to_string(), architecture: architecture.to_string(), variant: None }
    }

    /// The running host's platform (`linux` and the Go name of this CPU architecture).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new("linux", arch)
    }

    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && self.variant.as_ref().is_none_or(|v| p.variant().as_deref() == Some(v.as_str()))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What an import is doing with a layer, in an [`ImportProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportPhase {
    /// Applying the layer into the layer store (reading, checking and extracting its blob).
    Applying,
    /// The layer is in the layer store already: reading its blob only to check its digest
    /// and DiffID.
    Verifying,
    /// The layer is done (checked and stored).
    Done,
}

/// A progress report of an import: one layer's bytes done out of its blob's size.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportProgress {
    /// The layer's index (0 = bottom).
    pub layer: usize,
    /// How many layers the image has.
    pub layers: usize,
    /// Where its blob is read from.
    pub blob: BlobSource,
    /// Blob bytes (compressed, as stored) read so far.
    pub bytes_done: u64,
    /// The blob's size.
    pub bytes_total: u64,
    /// What is being done.
    pub phase: ImportPhase,
}

/// Options of an import. Build with `ImportOptions::default()` and set fields.
#[non_exhaustive]
pub struct ImportOptions<'a> {
    /// Which image of a layout or archive that holds several: matched against the
    /// `org.opencontainers.image.ref.name` annotation (and containerd's
    /// `io.containerd.image.name`) of `index.json`'s entries, or against a `docker save`
    /// archive's `RepoTags`. `None`: the only image there.
    pub select: Option<String>,
    /// The platform to pick from a multi-platform index (default: [`Platform::host`]).
    pub platform: Option<Platform>,
    /// Keep the layer blobs in the store (default `true`), so an export gives the same
    /// digests back; without them an export regenerates each layer tar from the layer dir.
    pub keep_blobs: bool,
    /// Bounds on each layer's apply (see [`nook_unionfs::Limits`]).
    pub limits: Limits,
    /// Called with progress reports (after each entry and every few MiB of a layer).
    pub progress: Option<&'a mut dyn FnMut(&ImportProgress)>,
}

impl Default for ImportOptions<'_> {
    fn default() -> Self {
        ImportOptions { select: None, platform: None, keep_blobs: true, limits: Limits::default(), progress: None }
    }
}

impl std::fmt::Debug for ImportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("select", &self.select)
            .field("platform", &self.platform)
            .field("keep_blobs", &self.keep_blobs)
            .field("limits", &self.limits)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Where a layer blob's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Locator {
    /// A whole file.
    File(PathBuf),
    /// A region of a file (an entry of an uncompressed tar archive).
    Region { file: PathBuf, offset: u64, len: u64 },
}

impl Locator {
    fn len(&self) -> Result<u64> {
        match self {
            Locator::File(p) => {
                let m = std::fs::metadata(p).sys_at("stat", p)?;
                if !m.is_file() {
                    return Err(ImageError::NotAFile { at: BlobSource::File(p.clone()) });
                }
                Ok(m.len())
            }
            Locator::Region { len, .. } => Ok(*len),
        }
    }

    fn open(&self) -> Result<Box<dyn Read>> {
        match self {
            Locator::File(p) => Ok(Box::new(open_regular(p).sys_at("open", p)?)),
            Locator::Region { file, offset, len } => {
                let mut f = File::open(file).sys_at("open", file)?;
                f.seek(io::SeekFrom::Start(*offset)).sys_at("seek", file)?;
                Ok(Box::new(f.take(*len)))
            }
        }
    }
}

/// One layer to import.
#[derive(Debug)]
pub(crate) struct LayerInput {
    pub(crate) source: BlobSource,
    pub(crate) locator: Locator,
    /// The digest the manifest names (`None`: a legacy `docker save` layer, checked through
    /// its DiffID only).
    pub(crate) digest: Option<Digest>,
    /// The size the manifest names.
    pub(crate) size: Option<u64>,
    /// The manifest's media type (`None`: found from the blob's first bytes).
    pub(crate) media_type: Option<String>,
}

/// An image whose documents have been read and checked, ready to import.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The manifest's bytes (checked against its descriptor), or `None` (docker archive:
    /// a manifest is written for it).
    pub(crate) manifest: Option<Vec<u8>>,
    /// The config's bytes (checked against its descriptor or name).
    pub(crate) config: Vec<u8>,
    /// Where the config came from.
    pub(crate) config_source: BlobSource,
    pub(crate) layers: Vec<LayerInput>,
}

/// Layer media types this importer applies (OCI and Docker; compression is read from the
/// blob's first bytes, so the `+gzip` / `+zstd` suffix only has to be one of these).
pub const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: &[&str] =
    &["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// containerd's (and Docker's) annotation for the full image name in `index.json`.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;
/// Largest JSON document read (index.json, manifests, configs).
const MAX_DOCUMENT: u64 = 16 << 20;

/// A sha256 digest of the OCI kind as nook's [`Digest`] (other algorithms are refused).
pub(crate) fn to_digest(d: &oci_spec::image::Digest) -> Result<Digest> {
    let s = d.to_string();
    Digest::parse(&s).map_err(|_| ImageError::UnsupportedDigest { digest: s })
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.as_str().parse().expect("a sha256 digest is a valid OCI digest")
}

/// Opens a file for reading without blocking on a fifo (`O_NONBLOCK` changes nothing for a
/// regular file; anything else is refused by the callers' `is_file` checks).
fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Reads a whole JSON document (at most [`MAX_DOCUMENT`] bytes; exactly `size` bytes when
/// its descriptor gives one). `name` is what a missing file is reported as.
fn read_document(path: &Path, name: &str, size: Option<u64>, source: &BlobSource) -> Result<Vec<u8>> {
    let f = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::BlobMissing { digest: name.to_string(), at: source.clone() });
        }
        Err(e) => return Err(e).sys_at("open", path),
    };
    let meta = f.metadata().sys_at("stat", path)?;
    if !meta.is_file() {
        return Err(ImageError::NotAFile { at: source.clone() });
    }
    let len = meta.len();
    if let Some(size) = size
        && len != size
    {
        return Err(ImageError::SizeMismatch { blob: source.clone(), expected: size, actual: len });
    }
    if len > MAX_DOCUMENT {
        return Err(ImageError::DocumentTooLarge { at: source.clone(), size: len, max: MAX_DOCUMENT });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes).sys_at("read", path)?;
    Ok(bytes)
}

/// Checks bytes against a digest and size.
fn check_blob(bytes: &[u8], digest: &Digest, size: Option<u64>, source: &BlobSource) -> Result<()> {
    if let Some(size) = size
        && bytes.len() as u64 != size
    {
        return Err(ImageError::SizeMismatch { blob: source.clone(), expected: size, actual: bytes.len() as u64 });
    }
    let actual = Digest::sha256(bytes);
    if actual != *digest {
        return Err(ImageError::DigestMismatch { blob: source.clone(), expected: digest.clone(), actual });
    }
    Ok(())
}

/// An OCI image layout directory being read.
struct Layout<'p> {
    dir: &'p Path,
}

impl Layout<'_> {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Reads a small blob named by a descriptor, checking digest and size.
    fn read_blob(&self, desc: &Descriptor) -> Result<(Vec<u8>, BlobSource)> {
        let d = to_digest(desc.digest())?;
        let path = self.blob_path(&d);
        let source = BlobSource::File(path.clone());
        let bytes = read_document(&path, d.as_str(), Some(desc.size()), &source)?;
        check_blob(&bytes, &d, Some(desc.size()), &source)?;
        Ok((bytes, source))
    }
}

fn describe(desc: &Descriptor) -> String {
    let name = desc.annotations().as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME).or_else(|| a.get(CONTAINERD_NAME)));
    let platform = desc.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture()));
    match (name, platform) {
        (Some(n), Some(p)) => format!("{n} ({p})"),
        (Some(n), None) => n.clone(),
        (None, Some(p)) => p,
        (None, None) => desc.digest().to_string(),
    }
}

fn names_match(desc: &Descriptor, wanted: &str) -> bool {
    let Some(a) = desc.annotations() else { return false };
    let norm = |s: &str| normalize_reference(s).unwrap_or_else(|_| s.to_string());
    [ANNOTATION_REF_NAME, CONTAINERD_NAME]
        .iter()
        .filter_map(|k| a.get(*k))
        .any(|v| v == wanted || norm(v) == norm(wanted) || v.rsplit(':').next() == Some(wanted))
}

/// Picks one manifest (or nested index) descriptor out of an index's entries.
fn pick<'d>(
    path: &Path,
    entries: &'d [Descriptor],
    select: Option<&str>,
    platform: &Platform,
) -> Result<&'d Descriptor> {
    let available = || entries.iter().map(describe).collect::<Vec<_>>();
    let named: Vec<&Descriptor> = match select {
        Some(s) => {
            let v: Vec<&Descriptor> = entries.iter().filter(|d| names_match(d, s)).collect();
            if v.is_empty() {
                return Err(ImageError::NoMatchingImage {
                    path: path.to_path_buf(),
                    wanted: s.to_string(),
                    available: available(),
                });
            }
            v
        }
        None => entries.iter().collect(),
    };
    if named.len() == 1 {
        return Ok(named[0]);
    }
    if named.is_empty() {
        return Err(ImageError::NoMatchingImage {
            path: path.to_path_buf(),
            wanted: "an image".into(),
            available: Vec::new(),
        });
    }
    // Several: choose by platform when they carry one.
    if named.iter().any(|d| d.platform().is_some()) {
        return named.iter().copied().find(|d| d.platform().as_ref().is_some_and(|p| platform.matches(p))).ok_or_else(
            || ImageError::NoMatchingImage {
                path: path.to_path_buf(),
                wanted: platform.to_string(),
                available: available(),
            },
        );
    }
    Err(ImageError::AmbiguousImage { path: path.to_path_buf(), candidates: available() })
}

/// Reads an OCI layout and resolves the image to import.
fn resolve_layout(dir: &Path, options: &ImportOptions<'_>) -> Result<Resolved> {
    let layout_file = dir.join("oci-layout");
    if !layout_file.is_file() {
        return Err(ImageError::NotALayout { path: dir.to_path_buf(), problem: LayoutProblem::NoLayoutFile });
    }
    let src = BlobSource::File(layout_file.clone());
    let bytes = read_document(&layout_file, "oci-layout", None, &src)?;
    let layout = OciLayout::from_reader(&bytes[..]).map_err(|source| ImageError::Document {
        document: Document::Layout,
        at: layout_file.display().to_string(),
        source,
    })?;
    let version = layout.image_layout_version();
    if version != "1.0.0" && !version.starts_with("1.") {
        return Err(ImageError::NotALayout {
            path: dir.to_path_buf(),
            problem: LayoutProblem::Version(version.clone()),
        });
    }
    let index_path = dir.join("index.json");
    if !index_path.is_file() {
        return Err(ImageError::NotALayout { path: dir.to_path_buf(), problem: LayoutProblem::NoIndex });
    }
    let src = BlobSource::File(index_path.clone());
    let bytes = read_document(&index_path, "index.json", None, &src)?;
    let index = ImageIndex::from_reader(&bytes[..]).map_err(|source| ImageError::Document {
        document: Document::Index,
        at: index_path.display().to_string(),
        source,
    })?;
    let layout = Layout { dir };
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let mut desc = pick(dir, index.manifests(), options.select.as_deref(), &platform)?.clone();
    let mut depth = 0;
    let (manifest_bytes, manifest_src) = loop {
        let mt = desc.media_type().to_string();
        if INDEX_TYPES.contains(&mt.as_str()) {
            depth += 1;
            if depth > MAX_INDEX_DEPTH {
                return Err(ImageError::IndexTooDeep { path: dir.to_path_buf(), depth });
            }
            let (bytes, src) = layout.read_blob(&desc)?;
            let nested = ImageIndex::from_reader(&bytes[..]).map_err(|source| ImageError::Document {
                document: Document::Index,
                at: src.to_string(),
                source,
            })?;
            desc = pick(dir, nested.manifests(), None, &platform)?.clone();
        } else if MANIFEST_TYPES.contains(&mt.as_str()) {
            break layout.read_blob(&desc)?;
        } else {
            return Err(ImageError::UnsupportedMediaType { blob: desc.digest().to_string(), media_type: mt });
        }
    };
    let manifest = ImageManifest::from_reader(&manifest_bytes[..]).map_err(|source| ImageError::Document {
        document: Document::Manifest,
        at: manifest_src.to_string(),
        source,
    })?;
    let (config, config_source) = layout.read_blob(manifest.config())?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        let d = to_digest(l.digest())?;
        let path = layout.blob_path(&d);
        let source = BlobSource::File(path.clone());
        if !path.exists() {
            return Err(ImageError::BlobMissing { digest: d.to_string(), at: source });
        }
        layers.push(LayerInput {
            source,
            locator: Locator::File(path),
            digest: Some(d),
            size: Some(l.size()),
            media_type: Some(l.media_type().to_string()),
        });
    }
    Ok(Resolved { manifest: Some(manifest_bytes), config, config_source, layers })
}

impl ImageStore {
    /// Imports the image of an OCI image layout directory (`oci-layout`, `index.json`,
    /// `blobs/sha256/…`: what `skopeo copy … oci:DIR` and `buildah push … oci:DIR` write)
    /// under the reference `reference`.
    ///
    /// `index.json` may list one image, several (pick one with
    /// [`ImportOptions::select`]), or point to a multi-platform index (the entry for
    /// [`ImportOptions::platform`], default the host's, is taken). Every blob's sha256 and
    /// size are checked against its descriptor and every layer's DiffID against the
    /// config's `rootfs.diff_ids`; layers are applied through [`LayerStore::apply`]
    /// (safe extraction, [`Limits`]). On any error nothing is stored: no record, no blob,
    /// and the layers this import applied are removed again.
    ///
    /// A layer the store has already — the same blob digest with the same DiffID on the
    /// same parent, its blob kept — is not read again (the stored, checked copy is what the
    /// manifest names); one whose layer is there but whose blob is not is read and checked
    /// (digest, DiffID) but not extracted again ([`ImportPhase::Verifying`]).
    ///
    /// [`LayerStore::apply`]: nook_unionfs::LayerStore::apply
    pub fn import_layout(&self, dir: impl AsRef<Path>, reference: &str, options: ImportOptions<'_>) -> Result<Image> {
        let reference = normalize_reference(reference)?;
        let resolved = resolve_layout(dir.as_ref(), &options)?;
        import_resolved(self, &reference, resolved, options)
    }

    /// Imports an image of a `docker save` archive (a plain tar holding `manifest.json`, the
    /// config and the layer tars; the legacy `<id>/layer.tar` layout and the OCI-style
    /// `blobs/sha256/…` layout of Docker 25+ both work) under `reference`.
    ///
    /// The archive may hold several images ([`ImportOptions::select`] matches their
    /// `RepoTags`). The config is checked against its name when that is a digest, each
    /// layer against its name when that is a digest and always against the config's
    /// DiffIDs. All or nothing, like [`ImageStore::import_layout`].
    pub fn import_docker_archive(
        &self,
        archive: impl AsRef<Path>,
        reference: &str,
        options: ImportOptions<'_>,
    ) -> Result<Image> {
        let reference = normalize_reference(reference)?;
        let resolved = super::archive::resolve_docker_archive(archive.as_ref(), options.select.as_deref())?;
        import_resolved(self, &reference, resolved, options)
    }
}

/// Media type of a layer from its first bytes.
fn detect_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    }
}

/// A decompressing reader chosen by the stream's magic bytes.
pub(crate) fn decompressed<'r>(input: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let head = r.fill_buf()?.to_vec();
    Ok(match detect_media_type(&head) {
        t if t.ends_with("gzip") => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        t if t.ends_with("zstd") => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        _ => Box::new(r),
    })
}

/// The pipeline shared by both formats: checks, applies, stages, publishes; undoes on error.
pub(crate) fn import_resolved(
    store: &ImageStore,
    reference: &str,
    resolved: Resolved,
    mut options: ImportOptions<'_>,
) -> Result<Image> {
    let Resolved { manifest, config, config_source, layers } = resolved;
    let parsed = ImageConfiguration::from_reader(&config[..]).map_err(|source| ImageError::Document {
        document: Document::Config,
        at: config_source.to_string(),
        source,
    })?;
    let diff_ids = parsed
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d).map_err(|_| ImageError::UnsupportedDigest { digest: d.clone() }))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::LayerCountMismatch { layers: layers.len(), diff_ids: diff_ids.len() });
    }
    // Everything that can be checked without reading the layers, before anything is stored.
    let mut lens = Vec::with_capacity(layers.len());
    for l in &layers {
        if let Some(mt) = &l.media_type
            && !LAYER_MEDIA_TYPES.contains(&mt.as_str())
        {
            return Err(ImageError::UnsupportedMediaType { blob: l.source.to_string(), media_type: mt.clone() });
        }
        let len = l.locator.len()?;
        if let Some(size) = l.size
            && size != len
        {
            return Err(ImageError::SizeMismatch { blob: l.source.clone(), expected: size, actual: len });
        }
        lens.push(len);
    }

    let _gc = store.gc_shared()?;
    let staging = store.staging()?;
    let mut created: Vec<Digest> = Vec::new();
    let result = import_layers(store, &staging, &layers, &lens, &diff_ids, &mut created, &mut options).and_then(
        |image_layers| {
            let config_digest = staging.write_blob(&config)?;
            let manifest_bytes = match manifest {
                Some(m) => m,
                None => manifest_for(&config_digest, config.len() as u64, &image_layers)?,
            };
            let manifest_digest = staging.write_blob(&manifest_bytes)?;
            let image = Image {
                reference: reference.to_string(),
                manifest: manifest_digest,
                config: config_digest,
                chain_id: image_layers.last().map(|l| l.chain_id.clone()),
                layers: image_layers,
            };
            store.publish(&staging, image)
        },
    );
    match result {
        Ok(image) => {
            staging.remove()?;
            Ok(image)
        }
        Err(e) => {
            let mut cleanup = undo_layers(store, &created);
            if let Err(c) = staging.remove() {
                cleanup.push(c);
            }
            Err(ImageError::with_cleanup(e, cleanup))
        }
    }
}

/// Removes layers an import applied (top first), unless an image record uses them now or
/// another layer or container was built on them meanwhile.
pub(crate) fn undo_layers(store: &ImageStore, created: &[Digest]) -> Vec<ImageError> {
    let mut errors = Vec::new();
    let used: std::collections::HashSet<Digest> = match store.read_records() {
        Ok(r) => r.images.values().flat_map(|i| i.layers.iter().map(|l| l.chain_id.clone())).collect(),
        Err(e) => {
            errors.push(e);
            return errors;
        }
    };
    for chain in created.iter().rev() {
        if used.contains(chain) {
            continue;
        }
        match store.layer_store().remove(chain) {
            Ok(()) | Err(nook_unionfs::Error::LayerInUse { .. }) | Err(nook_unionfs::Error::LayerNotFound { .. }) => {}
            Err(e) => errors.push(e.into()),
        }
    }
    errors
}

/// An OCI manifest for an image that came without one (a `docker save` archive).
pub(crate) fn manifest_for(config: &Digest, config_size: u64, layers: &[ImageLayer]) -> Result<Vec<u8>> {
    let doc_err = |source| ImageError::Document { document: Document::Manifest, at: config.to_string(), source };
    let config_desc = Descriptor::new(MediaType::ImageConfig, config_size, oci_digest(config));
    let layer_descs = layers
        .iter()
        .map(|l| {
            DescriptorBuilder::default()
                .media_type(MediaType::from(l.media_type.as_str()))
                .size(l.size)
                .digest(oci_digest(&l.blob))
                .build()
                .map_err(doc_err)
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(doc_err)?;
    Ok(manifest.to_string().map_err(doc_err)?.into_bytes())
}

type ProgressFn<'a> = Option<&'a mut dyn FnMut(&ImportProgress)>;

// `ApplyOptions` is another crate's: default + assignment, never a struct literal (its
// fields may grow; issue 12 item 6).
#[allow(clippy::field_reassign_with_default)]
fn import_layers(
    store: &ImageStore,
    staging: &Staging,
    layers: &[LayerInput],
    lens: &[u64],
    diff_ids: &[Digest],
    created: &mut Vec<Digest>,
    options: &mut ImportOptions<'_>,
) -> Result<Vec<ImageLayer>> {
    let total = layers.len();
    let limits = options.limits;
    let keep_blobs = options.keep_blobs;
    let progress: &mut ProgressFn<'_> = &mut options.progress;
    // Layers the store has already, with their blob and DiffID checked when they came in:
    // (blob, DiffID, ChainID) -> the stored layer record.
    let known: std::collections::HashMap<(Digest, Digest, Digest), ImageLayer> = store
        .read_records()?
        .images
        .into_values()
        .flat_map(|i| i.layers)
        .map(|l| ((l.blob.clone(), l.diff_id.clone(), l.chain_id.clone()), l))
        .collect();
    let mut parent: Option<Digest> = None;
    let mut out = Vec::with_capacity(total);
    for (i, l) in layers.iter().enumerate() {
        let expected_diff = &diff_ids[i];
        let chain = chain_id(parent.as_ref(), expected_diff);
        // The same blob with the same DiffID on the same parent is in the store already (its
        // blob kept, its layer there): nothing to read, the stored copy is what the
        // manifest names (what containerd does with content it has).
        if let Some(digest) = &l.digest
            && let Some(k) = known.get(&(digest.clone(), expected_diff.clone(), chain.clone()))
            && store.blob_path(digest).is_file()
            && store.layer_store().layer(&chain).is_ok()
        {
            if let Some(cb) = progress.as_mut() {
                cb(&ImportProgress {
                    layer: i,
                    layers: total,
                    blob: l.source.clone(),
                    bytes_done: lens[i],
                    bytes_total: lens[i],
                    phase: ImportPhase::Done,
                });
            }
            out.push(k.clone());
            parent = Some(chain);
            continue;
        }
        let read_err = |e: io::Error| ImageError::Sys { call: "read", path: Some(source_path(&l.source)), source: e };
        let media_type = match &l.media_type {
            Some(m) => m.clone(),
            None => {
                let mut head = [0u8; 4];
                let mut r = l.locator.open()?;
                let n = read_up_to(&mut r, &mut head).map_err(read_err)?;
                detect_media_type(&head[..n]).to_string()
            }
        };
        let stored_already = l.digest.as_ref().is_some_and(|d| store.blob_path(d).is_file());
        let copy_path = staging.scratch(i);
        let copy = if keep_blobs && !stored_already {
            Some(File::create_new(&copy_path).sys_at("create", &copy_path)?)
        } else {
            None
        };
        let input = BufReader::with_capacity(1 << 20, l.locator.open()?);
        let mut reader = HashingReader::new(input, copy);
        let exists = store.layer_store().layer(&chain).is_ok();
        let report = |progress: &mut ProgressFn<'_>, done: u64, phase: ImportPhase| {
            if let Some(cb) = progress.as_mut() {
                cb(&ImportProgress {
                    layer: i,
                    layers: total,
                    blob: l.source.clone(),
                    bytes_done: done,
                    bytes_total: lens[i],
                    phase,
                });
            }
        };
        let actual_diff = if exists {
            // In the store already: only check (decompress and hash, no extraction).
            report(progress, 0, ImportPhase::Verifying);
            // Bounded like an apply: a blob that expands past `max_ratio` is a bomb.
            let max = limits.max_ratio.saturating_mul(lens[i]).saturating_add(limits.ratio_grace);
            let mut d = HashingReader::new(decompressed(&mut reader).map_err(read_err)?, None);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match d.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                }
                if d.count > max {
                    return Err(ImageError::LimitExceeded {
                        blob: l.source.clone(),
                        limit: nook_unionfs::Limit::Ratio,
                        value: d.count.div_ceil(lens[i].max(1)),
                        max: limits.max_ratio,
                    });
                }
            }
            d.finish().map_err(read_err)?.0
        } else {
            let mut cb = |p: nook_unionfs::Progress| report(progress, p.bytes_read, ImportPhase::Applying);
            let mut apply = ApplyOptions::default();
            apply.bytes_total = Some(lens[i]);
            apply.limits = limits;
            apply.progress = Some(&mut cb);
            let blob = l.digest.clone().unwrap_or_else(|| expected_diff.clone());
            let layer = match store.layer_store().apply(&mut reader, parent.as_ref(), apply) {
                Ok(layer) => layer,
                Err(source) => {
                    // A blob that is not what the manifest names is the real cause of
                    // whatever its extraction hit: read the rest and say so.
                    if let (Some(expected), Ok((actual, _))) = (&l.digest, reader.finish())
                        && *expected != actual
                    {
                        return Err(ImageError::DigestMismatch {
                            blob: l.source.clone(),
                            expected: expected.clone(),
                            actual,
                        });
                    }
                    return Err(ImageError::Layer { blob, source });
                }
            };
            created.push(layer.chain_id.clone());
            layer.diff_id
        };
        let (blob_digest, count) = reader.finish().map_err(read_err)?;
        if count != lens[i] {
            return Err(ImageError::SizeMismatch { blob: l.source.clone(), expected: lens[i], actual: count });
        }
        if let Some(expected) = &l.digest
            && *expected != blob_digest
        {
            return Err(ImageError::DigestMismatch {
                blob: l.source.clone(),
                expected: expected.clone(),
                actual: blob_digest,
            });
        }
        if actual_diff != *expected_diff {
            return Err(ImageError::DiffIdMismatch {
                layer: i,
                blob: l.source.clone(),
                expected: expected_diff.clone(),
                actual: actual_diff,
            });
        }
        if keep_blobs && !stored_already {
            let dest = staging.blob(&blob_digest);
            std::fs::rename(&copy_path, &dest).sys_at("rename", &copy_path)?;
        }
        report(progress, count, ImportPhase::Done);
        out.push(ImageLayer {
            blob: blob_digest,
            media_type,
            size: count,
            diff_id: actual_diff,
            chain_id: chain.clone(),
        });
        parent = Some(chain);
    }
    Ok(out)
}

fn source_path(s: &BlobSource) -> PathBuf {
    match s {
        BlobSource::File(p) => p.clone(),
        BlobSource::ArchiveEntry { archive, .. } => archive.clone(),
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
