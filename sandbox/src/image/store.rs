//! [`ImageStore`]: image records and a blob store next to a [`LayerStore`].

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nook_ns::statefile::{LockFile, write_atomic};
use nook_unionfs::{ContainerLayer, Digest, LayerStore};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{BlobSource, Document, ImageError, ImageValidationError, Result, SysContext};

/// One image in the store: what `docker images` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Image {
    /// Its reference (`name:tag`; `:latest` is added to a name without a tag).
    pub reference: String,
    /// The digest of its OCI image manifest (kept in the blob store; for an image imported
    /// from a `docker save` archive, the manifest the import wrote for it).
    pub manifest: Digest,
    /// The digest of its image configuration (kept in the blob store, byte for byte as
    /// imported, so an export gives the same digest back).
    pub config: Digest,
    /// Its layers, bottom first.
    pub layers: Vec<ImageLayer>,
    /// The ChainID of its top layer in the layer store (`None` for an image without layers).
    pub chain_id: Option<Digest>,
}

/// One layer of an [`Image`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageLayer {
    /// The layer blob's digest, as the manifest names it (compressed bytes for a gzip or
    /// zstd layer).
    pub blob: Digest,
    /// The blob's media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...).
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The DiffID: sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The ChainID of the layer stack up to this layer: its name in the layer store.
    pub chain_id: Digest,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Blobs no image references.
    pub blobs: Vec<Digest>,
    /// Layers in no image's chain and used by no container.
    pub layers: Vec<Digest>,
}

/// The record file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Records {
    pub(crate) version: u32,
    pub(crate) images: BTreeMap<String, Image>,
}

const RECORDS_VERSION: u32 = 1;

/// An image store: named images over a content-addressed [`LayerStore`], laid out like
/// containerd keeps them (a content store of blobs plus unpacked snapshots):
///
/// ```text
/// ROOT/layers/ ROOT/containers/ ROOT/tmp/   the LayerStore (unpacked layers, container layers)
/// ROOT/blobs/sha256/<hex>                   blobs as imported: manifests, configs, layer blobs
/// ROOT/images.json                          records: reference -> manifest, config, layers
/// ROOT/images.lock                          flock around a change of images.json
/// ROOT/gc.lock                              shared while an import or commit runs,
///                                           exclusive while prune removes what nothing uses
/// ROOT/image-tmp/<pid>.<start>-<n>-<nanos>/ an import's blobs before it is published
/// ```
///
/// Why "store" and the names: it is the image-level twin of [`LayerStore`] (which knows
/// layers, not images); Docker calls the same thing its image store, containerd its image
/// and content stores.
///
/// Layer blobs are kept as they were imported so that an export gives the very same
/// digests, DiffIDs and ChainIDs back (Docker gets there with tar-split metadata instead;
/// regenerating a tar from an unpacked layer gives another byte stream, hence another
/// DiffID). [`ImportOptions::keep_blobs`](super::ImportOptions::keep_blobs) turns that off
/// to save the disk space; an export then regenerates each tar from the layer dir and
/// refuses ([`ImageError::LayerNotReproducible`]) a layer whose regenerated tar has another
/// DiffID.
///
/// An import is all or nothing: its blobs are staged under `image-tmp/` and moved into
/// `blobs/` only when every digest, size and DiffID has been checked, together with the
/// record (under `images.lock`); layers it applied to the layer store before a failure are
/// removed again (a layer is only visible there once complete, and is named by its
/// content). `images.json` is replaced atomically ([`write_atomic`]).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    layers: LayerStore,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<ImageStore> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.as_ref().to_path_buf();
        let layers = LayerStore::open(&root)?;
        for sub in ["blobs", "blobs/sha256", "image-tmp"] {
            let p = root.join(sub);
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(e) => return Err(e).sys_at("mkdir", p),
            }
        }
        Ok(ImageStore { root, layers })
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layer store underneath (same root).
    pub fn layer_store(&self) -> &LayerStore {
        &self.layers
    }

    /// Where a blob is kept (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Reads a blob whole, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::BlobMissing { digest: digest.to_string(), at: BlobSource::File(path) });
            }
            Err(e) => return Err(e).sys_at("read", path),
        };
        let actual = Digest::sha256(&bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch { blob: BlobSource::File(path), expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// Every image, sorted by reference.
    pub fn images(&self) -> Result<Vec<Image>> {
        Ok(self.read_records()?.images.into_values().collect())
    }

    /// The image `reference` (`name` means `name:latest`).
    pub fn image(&self, reference: &str) -> Result<Image> {
        let reference = normalize_reference(reference)?;
        self.read_records()?.images.remove(&reference).ok_or(ImageError::ImageNotFound { reference })
    }

    /// The image's configuration (read from its blob, digest checked).
    pub fn config(&self, image: &Image) -> Result<ImageConfiguration> {
        let bytes = self.read_blob(&image.config)?;
        ImageConfiguration::from_reader(&bytes[..]).map_err(|source| ImageError::Document {
            document: Document::Config,
            at: image.config.to_string(),
            source,
        })
    }

    /// Gives the image `existing` a second reference `new` (replacing what `new` named).
    pub fn tag(&self, existing: &str, new: &str) -> Result<Image> {
        let existing = normalize_reference(existing)?;
        let new = normalize_reference(new)?;
        let _lock = self.records_lock()?;
        let mut records = self.read_records()?;
        let mut image =
            records.images.get(&existing).cloned().ok_or(ImageError::ImageNotFound { reference: existing })?;
        image.reference = new.clone();
        records.images.insert(new, image.clone());
        self.write_records(&records)?;
        Ok(image)
    }

    /// Removes the reference `reference` (what `docker rmi` does to a tag). Its blobs and
    /// layers stay until [`ImageStore::prune`] finds nothing else uses them.
    pub fn remove(&self, reference: &str) -> Result<Image> {
        let reference = normalize_reference(reference)?;
        let _lock = self.records_lock()?;
        let mut records = self.read_records()?;
        let image = records.images.remove(&reference).ok_or(ImageError::ImageNotFound { reference })?;
        self.write_records(&records)?;
        Ok(image)
    }

    /// Removes blobs and layers that no image references (and, for layers, that no container
    /// layer is built on). Waits for imports and commits in progress to finish (`gc.lock`).
    pub fn prune(&self) -> Result<Pruned> {
        let _gc = LockFile::exclusive(self.root.join("gc.lock"))?;
        let records = self.read_records()?;
        let mut blobs_used = std::collections::HashSet::new();
        let mut layers_used = std::collections::HashSet::new();
        for image in records.images.values() {
            blobs_used.insert(image.manifest.clone());
            blobs_used.insert(image.config.clone());
            for l in &image.layers {
                blobs_used.insert(l.blob.clone());
                layers_used.insert(l.chain_id.clone());
            }
        }
        let mut pruned = Pruned::default();
        let dir = self.root.join("blobs/sha256");
        for ent in std::fs::read_dir(&dir).sys_at("read dir", &dir)? {
            let ent = ent.sys_at("read dir", &dir)?;
            let Some(d) = ent.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) else { continue };
            if !blobs_used.contains(&d) {
                let p = ent.path();
                std::fs::remove_file(&p).sys_at("unlink", p)?;
                pruned.blobs.push(d);
            }
        }
        // Top layers first: a layer goes once nothing is built on it any more.
        loop {
            let mut progress = false;
            let all = self.layers.layers()?;
            let parents: std::collections::HashSet<Digest> = all.iter().filter_map(|l| l.parent.clone()).collect();
            for l in all {
                if layers_used.contains(&l.chain_id) || parents.contains(&l.chain_id) {
                    continue;
                }
                match self.layers.remove(&l.chain_id) {
                    Ok(()) => {
                        pruned.layers.push(l.chain_id);
                        progress = true;
                    }
                    // A container layer is built on it.
                    Err(nook_unionfs::Error::LayerInUse { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !progress {
                break;
            }
        }
        Ok(pruned)
    }

    /// A container layer `id` on top of the image (what the facade mounts as a container's
    /// root): see [`LayerStore::create_container`].
    pub fn create_container(&self, id: &str, image: &Image) -> Result<ContainerLayer> {
        Ok(self.layers.create_container(id, image.chain_id.as_ref())?)
    }

    /// Removes what crashed imports left under `image-tmp/` and what crashed layer applies
    /// left under `tmp/` (see [`LayerStore::clean_tmp`]); returns how many entries went.
    pub fn clean_tmp(&self) -> Result<usize> {
        let mut removed = self.layers.clean_tmp()?;
        let tmp = self.root.join("image-tmp");
        for entry in std::fs::read_dir(&tmp).sys_at("read dir", &tmp)? {
            let entry = entry.sys_at("read dir", &tmp)?;
            let Some((pid, start)) = entry.file_name().to_str().and_then(parse_process_tag) else { continue };
            if process_start_time(pid) == Some(start) {
                continue;
            }
            let p = entry.path();
            match std::fs::remove_dir_all(&p) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).sys_at("remove", p),
            }
        }
        Ok(removed)
    }

    // ---- crate-internal: records, staging, publishing ----

    pub(crate) fn records_lock(&self) -> Result<LockFile> {
        Ok(LockFile::exclusive(self.root.join("images.lock"))?)
    }

    /// Held (shared) while an import or commit runs, so prune leaves its layers alone.
    pub(crate) fn gc_shared(&self) -> Result<LockFile> {
        Ok(LockFile::shared(self.root.join("gc.lock"))?)
    }

    pub(crate) fn read_records(&self) -> Result<Records> {
        let path = self.root.join("images.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                document: Document::Records,
                at: path,
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Records { version: RECORDS_VERSION, images: BTreeMap::new() })
            }
            Err(e) => Err(e).sys_at("read", path),
        }
    }

    pub(crate) fn write_records(&self, records: &Records) -> Result<()> {
        let path = self.root.join("images.json");
        let bytes = serde_json::to_vec_pretty(records).map_err(|source| ImageError::Json {
            document: Document::Records,
            at: path.clone(),
            source,
        })?;
        Ok(write_atomic(&path, &bytes)?)
    }

    /// A fresh staging dir under `image-tmp/`, named after this process.
    pub(crate) fn staging(&self) -> Result<Staging> {
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let start = process_start_time(pid).unwrap_or(0);
            let p = self.root.join("image-tmp").join(format!("{pid}.{start}-{n}-{nanos:08x}"));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Staging { dir: Some(p) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).sys_at("mkdir", p),
            }
        }
    }

    /// Moves the staged blobs into `blobs/` and writes the record, under the records lock;
    /// checks first that the image's layers are (still) in the layer store.
    pub(crate) fn publish(&self, staging: &Staging, image: Image) -> Result<Image> {
        let _lock = self.records_lock()?;
        if let Some(top) = &image.chain_id {
            self.layers.layer(top)?;
        }
        let dir = staging.path();
        for ent in std::fs::read_dir(dir).sys_at("read dir", dir)? {
            let ent = ent.sys_at("read dir", dir)?;
            let Some(d) = ent.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) else { continue };
            let dest = self.blob_path(&d);
            if dest.exists() {
                continue;
            }
            let src = ent.path();
            std::fs::rename(&src, &dest).sys_at("rename", src)?;
        }
        let mut records = self.read_records()?;
        records.version = RECORDS_VERSION;
        records.images.insert(image.reference.clone(), image.clone());
        self.write_records(&records)?;
        Ok(image)
    }
}

/// An import's private directory under `image-tmp/`; removed on drop (best effort) or by
/// [`Staging::remove`].
#[derive(Debug)]
pub(crate) struct Staging {
    dir: Option<PathBuf>,
}

impl Staging {
    pub(crate) fn path(&self) -> &Path {
        self.dir.as_deref().expect("staging dir present until removed")
    }

    /// Where a staged blob goes.
    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.path().join(digest.hex())
    }

    /// A file name for a blob whose digest is not known yet.
    pub(crate) fn scratch(&self, n: usize) -> PathBuf {
        self.path().join(format!("incoming-{n}"))
    }

    /// Writes a small blob (config, manifest).
    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256(bytes);
        let p = self.blob(&d);
        std::fs::write(&p, bytes).sys_at("write", p)?;
        Ok(d)
    }

    pub(crate) fn remove(mut self) -> Result<()> {
        match self.dir.take() {
            Some(d) => std::fs::remove_dir_all(&d).sys_at("remove", d),
            None => Ok(()),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Checks a reference and adds `:latest` to one without a tag or digest.
pub fn normalize_reference(reference: &str) -> Result<String> {
    let ok = !reference.is_empty()
        && reference.len() <= 255
        && reference.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if !ok {
        return Err(ImageValidationError::Reference { value: reference.to_string() }.into());
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || reference.contains('@') {
        Ok(reference.to_string())
    } else {
        Ok(format!("{reference}:latest"))
    }
}

/// A sha256 over everything read through it, with a byte count and an optional copy to a
/// file (the staged blob).
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) count: u64,
    pub(crate) copy: Option<std::io::BufWriter<std::fs::File>>,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, copy: Option<std::fs::File>) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            copy: copy.map(|f| std::io::BufWriter::with_capacity(1 << 20, f)),
        }
    }

    /// Reads the rest (what the consumer left) and returns the digest and the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some(mut c) = self.copy.take() {
            use std::io::Write;
            c.flush()?;
        }
        let hash: [u8; 32] = self.hasher.finalize().into();
        Ok((digest_of(&hash), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(c) = self.copy.as_mut() {
            use std::io::Write;
            c.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// The digest of a finished sha256.
pub(crate) fn digest_of(hash: &[u8; 32]) -> Digest {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    Digest::from_hex(&s).expect("64 lowercase hex digits")
}

/// Parses the `PID.STARTTIME` prefix of a tmp entry name (`PID.STARTTIME-N-NANOS`).
fn parse_process_tag(name: &str) -> Option<(u32, u64)> {
    let (tag, _) = name.split_once('-')?;
    let (pid, start) = tag.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat` field 22).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_latest() {
        assert_eq!(normalize_reference("app").unwrap(), "app:latest");
        assert_eq!(normalize_reference("app:1").unwrap(), "app:1");
        assert_eq!(normalize_reference("reg:5000/app").unwrap(), "reg:5000/app:latest");
        assert_eq!(normalize_reference("reg:5000/app:2").unwrap(), "reg:5000/app:2");
        assert!(normalize_reference("").is_err());
        assert!(normalize_reference("a b").is_err());
        assert!(normalize_reference("a\0b").is_err());
    }

    #[test]
    fn hashing_reader_hashes_and_counts() {
        let data = b"hello world".to_vec();
        let mut r = HashingReader::new(&data[..], None);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::sha256(&data));
    }

    #[test]
    fn process_tags() {
        assert_eq!(parse_process_tag("12.34-1-2"), Some((12, 34)));
        assert_eq!(parse_process_tag("x"), None);
        assert!(process_start_time(std::process::id()).is_some());
    }
}
