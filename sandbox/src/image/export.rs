//! Writing images back out: [`ImageStore::export_layout`] (an OCI image layout, what
//! `docker save` / `skopeo copy … oci:DIR` give) and [`ImageStore::commit`] (a container
//! layer's changes as a new image, `docker commit`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nook_unionfs::{ApplyOptions, Digest, WhiteoutFormat, write_diff};
use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfiguration, ImageIndexBuilder,
    ImageManifest, MediaType, OciLayoutBuilder,
};
use sha2::{Digest as _, Sha256};

use super::error::{Document, ImageError, Result, SysContext};
use super::import::{decompressed, undo_layers};
use super::store::{Image, ImageLayer, ImageStore, digest_of};

/// How layer blobs are written by an export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerCompression {
    /// As kept in the store (the imported blobs byte for byte: same digests); a layer whose
    /// blob was not kept is regenerated and gzipped.
    #[default]
    AsStored,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip,
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    Uncompressed,
}

/// Options of an export. `Default`: layers as stored, the image's reference as the
/// `org.opencontainers.image.ref.name` annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// How layer blobs are written.
    pub compression: LayerCompression,
    /// The `org.opencontainers.image.ref.name` annotation of the image in `index.json`
    /// (default: the image's reference).
    pub ref_name: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exported {
    /// The manifest's digest.
    pub manifest: Digest,
    /// The config's digest.
    pub config: Digest,
    /// The layer blobs' digests, bottom first.
    pub layers: Vec<Digest>,
}

/// Options of a commit. `Default`: no comment, no author, pause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitOptions {
    /// The history entry's comment (`docker commit -m`).
    pub comment: Option<String>,
    /// The history entry's author (`docker commit -a`).
    pub author: Option<String>,
    /// [`crate::Sandbox::commit`] freezes a running sandbox's processes while it reads the
    /// container layer (`docker commit --pause`, default `true`). [`ImageStore::commit`]
    /// itself does not look at it: it knows no processes.
    pub pause: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions { comment: None, author: None, pause: true }
    }
}

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const PLAIN: &str = "application/vnd.oci.image.layer.v1.tar";

fn is_gzip(media_type: &str) -> bool {
    media_type.ends_with("gzip")
}
fn is_plain(media_type: &str) -> bool {
    media_type.ends_with(".tar") || media_type.ends_with("diff.tar")
}

/// Writes into `blobs/sha256/` of a layout under a temporary name, hashing; renamed to its
/// digest by [`BlobWriter::finish`].
struct BlobWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    count: u64,
}

impl BlobWriter {
    fn new(blobs: &Path, n: usize) -> Result<BlobWriter> {
        let path = blobs.join(format!(".incoming-{n}"));
        let file = File::create_new(&path).sys_at("create", &path)?;
        Ok(BlobWriter { path, out: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), count: 0 })
    }

    fn finish(mut self) -> Result<(Digest, u64)> {
        self.out.flush().sys_at("write", &self.path)?;
        let digest = digest_of(&self.hasher.finalize().into());
        let dest = self.path.with_file_name(digest.hex());
        std::fs::rename(&self.path, &dest).sys_at("rename", &self.path)?;
        Ok((digest, self.count))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// sha256 of what is written through it (the uncompressed tar, to check a DiffID).
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ImageStore {
    /// Writes the image `reference` as an OCI image layout into `dir` (created; must be
    /// empty if it exists): `oci-layout`, `index.json` (one entry, annotated with its
    /// reference), `blobs/sha256/` with the manifest, the config and the layers.
    ///
    /// With [`LayerCompression::AsStored`] an imported image comes out with the digests it
    /// came in with (blobs, manifest, config; so DiffIDs and ChainIDs too). Converting to
    /// gzip or plain tar gives new blob digests and a new manifest, the same DiffIDs and
    /// config. Every blob read from the store is checked against its digest, and every
    /// converted layer against its DiffID.
    pub fn export_layout(&self, reference: &str, dir: impl AsRef<Path>, options: &ExportOptions) -> Result<Exported> {
        let image = self.image(reference)?;
        let dir = dir.as_ref();
        let created = match std::fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(ImageError::TargetNotEmpty { path: dir.to_path_buf() });
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).sys_at("mkdir", dir)?;
                true
            }
            Err(e) => return Err(e).sys_at("read dir", dir),
        };
        self.export_into(&image, dir, options).map_err(|e| {
            // Leave the target as it was: gone if this made it, else empty.
            let undo = if created {
                std::fs::remove_dir_all(dir).sys_at("remove", dir)
            } else {
                ["blobs", "index.json", "oci-layout"]
                    .iter()
                    .map(|n| dir.join(n))
                    .filter(|p| p.symlink_metadata().is_ok())
                    .try_for_each(|p| {
                        if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }
                            .sys_at("remove", p)
                    })
            };
            ImageError::with_cleanup(e, undo.err().into_iter().collect())
        })
    }

    fn export_into(&self, image: &Image, dir: &Path, options: &ExportOptions) -> Result<Exported> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).sys_at("mkdir", &blobs)?;

        let mut layers: Vec<(Digest, u64, String)> = Vec::new();
        for (i, l) in image.layers.iter().enumerate() {
            layers.push(self.export_layer(l, &blobs, i, options.compression)?);
        }
        let unchanged = layers.iter().zip(&image.layers).all(|((d, _, _), l)| *d == l.blob);
        let config = self.read_blob(&image.config)?;
        std::fs::write(blobs.join(image.config.hex()), &config).sys_at("write", &blobs)?;
        let manifest_bytes = self.read_blob(&image.manifest)?;
        let manifest_bytes = if unchanged {
            manifest_bytes
        } else {
            let doc_err =
                |source| ImageError::Document { document: Document::Manifest, at: image.manifest.to_string(), source };
            let mut manifest = ImageManifest::from_reader(&manifest_bytes[..]).map_err(doc_err)?;
            to_oci_manifest(&mut manifest);
            let descs = layers
                .iter()
                .map(|(d, size, mt)| Descriptor::new(MediaType::from(to_oci_media_type(mt)), *size, oci_digest(d)))
                .collect();
            manifest.set_layers(descs);
            manifest.to_string().map_err(doc_err)?.into_bytes()
        };
        let manifest_digest = Digest::sha256(&manifest_bytes);
        // index.json names the manifest by its own media type (a Docker v2 manifest kept
        // byte for byte stays one).
        let manifest_type = ImageManifest::from_reader(&manifest_bytes[..])
            .ok()
            .and_then(|m| m.media_type().clone())
            .unwrap_or(MediaType::ImageManifest);
        std::fs::write(blobs.join(manifest_digest.hex()), &manifest_bytes).sys_at("write", &blobs)?;

        let doc_err =
            |source| ImageError::Document { document: Document::Index, at: dir.display().to_string(), source };
        let ref_name = options.ref_name.clone().unwrap_or_else(|| image.reference.clone());
        let desc = DescriptorBuilder::default()
            .media_type(manifest_type)
            .size(manifest_bytes.len() as u64)
            .digest(oci_digest(&manifest_digest))
            .annotations(HashMap::from([(ANNOTATION_REF_NAME.to_string(), ref_name)]))
            .build()
            .map_err(doc_err)?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![desc])
            .build()
            .map_err(doc_err)?;
        let index_bytes = index.to_string().map_err(doc_err)?;
        std::fs::write(dir.join("index.json"), index_bytes).sys_at("write", dir.join("index.json"))?;
        let layout =
            OciLayoutBuilder::default().image_layout_version("1.0.0".to_string()).build().map_err(|source| {
                ImageError::Document { document: Document::Layout, at: dir.display().to_string(), source }
            })?;
        let layout_bytes = layout.to_string().map_err(|source| ImageError::Document {
            document: Document::Layout,
            at: dir.display().to_string(),
            source,
        })?;
        std::fs::write(dir.join("oci-layout"), layout_bytes).sys_at("write", dir.join("oci-layout"))?;
        Ok(Exported {
            manifest: manifest_digest,
            config: image.config.clone(),
            layers: layers.into_iter().map(|l| l.0).collect(),
        })
    }

    /// One layer blob into `blobs`; returns its digest, size and media type.
    fn export_layer(
        &self,
        l: &ImageLayer,
        blobs: &Path,
        n: usize,
        compression: LayerCompression,
    ) -> Result<(Digest, u64, String)> {
        let stored = self.blob_path(&l.blob);
        let kept = stored.is_file();
        let verbatim = kept
            && match compression {
                LayerCompression::AsStored => true,
                LayerCompression::Gzip => is_gzip(&l.media_type),
                LayerCompression::Uncompressed => is_plain(&l.media_type),
            };
        let mut w = BlobWriter::new(blobs, n)?;
        if verbatim {
            let f = File::open(&stored).sys_at("open", &stored)?;
            io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut w).sys_at("copy", &stored)?;
            let (d, size) = w.finish()?;
            if d != l.blob {
                let _ = std::fs::remove_file(blobs.join(d.hex()));
                return Err(ImageError::DigestMismatch {
                    blob: super::error::BlobSource::File(stored),
                    expected: l.blob.clone(),
                    actual: d,
                });
            }
            return Ok((d, size, l.media_type.clone()));
        }
        let gzip = !matches!(compression, LayerCompression::Uncompressed);
        let media_type = if gzip { GZIP } else { PLAIN }.to_string();
        let diff_id = if gzip {
            let mut gz = flate2::write::GzEncoder::new(&mut w, flate2::Compression::fast());
            let d = self.layer_tar(l, kept.then_some(stored.as_path()), &mut gz)?;
            gz.finish().sys_at("write", blobs)?;
            d
        } else {
            self.layer_tar(l, kept.then_some(stored.as_path()), &mut w)?
        };
        let (d, size) = w.finish()?;
        if diff_id != l.diff_id {
            let _ = std::fs::remove_file(blobs.join(d.hex()));
            return Err(ImageError::LayerNotReproducible {
                chain_id: l.chain_id.clone(),
                expected: l.diff_id.clone(),
                actual: diff_id,
            });
        }
        Ok((d, size, media_type))
    }

    /// Writes a layer's uncompressed tar to `out` (from its kept blob, or regenerated from
    /// its layer dir); returns the tar's sha256.
    fn layer_tar(&self, l: &ImageLayer, stored: Option<&Path>, out: &mut dyn Write) -> Result<Digest> {
        let mut hw = HashingWriter { inner: out, hasher: Sha256::new() };
        match stored {
            Some(stored) => {
                let f = File::open(stored).sys_at("open", stored)?;
                let mut r = decompressed(BufReader::with_capacity(1 << 20, f)).sys_at("read", stored)?;
                io::copy(&mut r, &mut hw).sys_at("copy", stored)?;
            }
            None => {
                let layer = self.layer_store().layer(&l.chain_id)?;
                write_diff(&layer.diff_dir, WhiteoutFormat::Overlay, &mut hw)?;
            }
        }
        Ok(digest_of(&hw.hasher.finalize().into()))
    }

    /// Commits the changes in a container layer's upper dir (`upper`, in the overlay
    /// whiteout format, e.g. [`ContainerLayer::upper`](nook_unionfs::ContainerLayer::upper))
    /// on top of `base` as the new image `reference` (`docker commit`): the diff becomes an
    /// uncompressed layer blob and a layer of the store, the config gets its DiffID and a
    /// history entry, a new manifest is written. All or nothing, like an import.
    // `ApplyOptions` is another crate's: default + assignment, never a struct literal (its
    // fields may grow; issue 12 item 6).
    #[allow(clippy::field_reassign_with_default)]
    pub fn commit(&self, base: &Image, upper: &Path, reference: &str, options: &CommitOptions) -> Result<Image> {
        let reference = super::store::normalize_reference(reference)?;
        let base_config = self.read_blob(&base.config)?;
        let base_manifest = self.read_blob(&base.manifest)?;
        let _gc = self.gc_shared()?;
        let staging = self.staging()?;
        let mut created = Vec::new();
        let r = (|| {
            let tar_path = staging.scratch(0);
            let diff_id = {
                let f = File::create_new(&tar_path).sys_at("create", &tar_path)?;
                let mut w = BufWriter::with_capacity(1 << 20, f);
                let d = write_diff(upper, WhiteoutFormat::Overlay, &mut w)?;
                w.flush().sys_at("write", &tar_path)?;
                d
            };
            let size = std::fs::metadata(&tar_path).sys_at("stat", &tar_path)?.len();
            let mut apply = ApplyOptions::default();
            apply.bytes_total = Some(size);
            let f = File::open(&tar_path).sys_at("open", &tar_path)?;
            let layer = self
                .layer_store()
                .apply(BufReader::with_capacity(1 << 20, f), base.chain_id.as_ref(), apply)
                .map_err(|source| ImageError::Layer { blob: diff_id.clone(), source })?;
            created.push(layer.chain_id.clone());
            if layer.diff_id != diff_id {
                return Err(ImageError::LayerNotReproducible {
                    chain_id: layer.chain_id,
                    expected: diff_id,
                    actual: layer.diff_id,
                });
            }
            std::fs::rename(&tar_path, staging.blob(&diff_id)).sys_at("rename", &tar_path)?;

            let cfg_err =
                |source| ImageError::Document { document: Document::Config, at: base.config.to_string(), source };
            let now = rfc3339_now();
            let mut history = HistoryBuilder::default().created(now.clone()).created_by("nook commit".to_string());
            if let Some(c) = &options.comment {
                history = history.comment(c.clone());
            }
            if let Some(a) = &options.author {
                history = history.author(a.clone());
            }
            let entry = history.build().map_err(cfg_err)?;
            let config_bytes = extend_config(&base_config, &diff_id, &entry, &now).map_err(cfg_err)?;
            let config_digest = staging.write_blob(&config_bytes)?;

            let man_err =
                |source| ImageError::Document { document: Document::Manifest, at: base.manifest.to_string(), source };
            let mut manifest = ImageManifest::from_reader(&base_manifest[..]).map_err(man_err)?;
            to_oci_manifest(&mut manifest);
            let mut config_desc = manifest.config().clone();
            config_desc.set_digest(oci_digest(&config_digest));
            config_desc.set_size(config_bytes.len() as u64);
            manifest.set_config(config_desc);
            manifest.layers_mut().push(Descriptor::new(MediaType::ImageLayer, size, oci_digest(&diff_id)));
            let manifest_bytes = manifest.to_string().map_err(man_err)?.into_bytes();
            let manifest_digest = staging.write_blob(&manifest_bytes)?;

            let mut layers = base.layers.clone();
            layers.push(ImageLayer {
                blob: diff_id.clone(),
                media_type: PLAIN.to_string(),
                size,
                diff_id,
                chain_id: layer.chain_id.clone(),
            });
            let image = Image {
                reference: reference.clone(),
                manifest: manifest_digest,
                config: config_digest,
                layers,
                chain_id: Some(layer.chain_id),
            };
            self.publish(&staging, image)
        })();
        match r {
            Ok(image) => {
                staging.remove()?;
                Ok(image)
            }
            Err(e) => {
                let mut cleanup = undo_layers(self, &created);
                if let Err(c) = staging.remove() {
                    cleanup.push(c);
                }
                Err(ImageError::with_cleanup(e, cleanup))
            }
        }
    }
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.as_str().parse().expect("a sha256 digest is a valid OCI digest")
}

/// The OCI name of a Docker (v2 schema 2) media type; other names unchanged.
pub(crate) fn to_oci_media_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.distribution.manifest.v2+json" => "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.container.image.v1+json" => "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => PLAIN,
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
}

/// Turns a manifest that is about to be rewritten (recompressed layers, a commit) into an
/// OCI one: its own media type, its config's and its layers' (a Docker v2 manifest with an
/// OCI layer in it is neither).
fn to_oci_manifest(manifest: &mut ImageManifest) {
    manifest.set_media_type(Some(MediaType::ImageManifest));
    let mut config = manifest.config().clone();
    config.set_media_type(MediaType::from(to_oci_media_type(config.media_type().as_ref())));
    manifest.set_config(config);
    for l in manifest.layers_mut() {
        let mt = MediaType::from(to_oci_media_type(l.media_type().as_ref()));
        l.set_media_type(mt);
    }
}

/// The base image's config with one more layer: its DiffID appended to `rootfs.diff_ids`,
/// a history entry, a new `created`. Edited as JSON so that fields outside the OCI spec
/// (Docker's `Healthcheck`, `OnBuild`, `container_config`, ...) survive, as `docker commit`
/// keeps them; checked with `oci-spec` before and after.
fn extend_config(
    base: &[u8],
    diff_id: &Digest,
    entry: &oci_spec::image::History,
    now: &str,
) -> std::result::Result<Vec<u8>, oci_spec::OciSpecError> {
    ImageConfiguration::from_reader(base)?;
    let mut v: serde_json::Value = serde_json::from_slice(base)?;
    let obj = v.as_object_mut().ok_or_else(|| oci_spec::OciSpecError::Other("config is not an object".into()))?;
    let diff_ids = obj
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(|d| d.as_array_mut())
        .ok_or_else(|| oci_spec::OciSpecError::Other("config has no rootfs.diff_ids".into()))?;
    diff_ids.push(diff_id.as_str().into());
    let history = obj.entry("history").or_insert_with(|| serde_json::Value::Array(Vec::new()));
    match history.as_array_mut() {
        Some(h) => h.push(serde_json::to_value(entry)?),
        None => *history = serde_json::Value::Array(vec![serde_json::to_value(entry)?]),
    }
    obj.insert("created".into(), now.into());
    let bytes = serde_json::to_vec(&v)?;
    ImageConfiguration::from_reader(&bytes[..])?;
    Ok(bytes)
}

/// Now as RFC 3339 UTC (`2026-12-05T14:02:51Z`), for config `created` fields.
fn rfc3339_now() -> String {
    nook_ns::statefile::rfc3339(std::time::SystemTime::now(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_config_keeps_fields_outside_the_spec() {
        let base = br#"{"architecture":"amd64","os":"linux","docker_version":"27.0",
            "config":{"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"]}},
            "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let d = Digest::sha256(b"layer");
        let entry = HistoryBuilder::default().created_by("nook commit".to_string()).build().unwrap();
        let out = extend_config(base, &d, &entry, "2026-12-05T00:00:00Z").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["docker_version"], "27.0");
        assert_eq!(v["config"]["Healthcheck"]["Test"][1], "true");
        assert_eq!(v["rootfs"]["diff_ids"][1], d.as_str());
        assert_eq!(v["history"][0]["created_by"], "nook commit");
        assert_eq!(v["created"], "2026-12-05T00:00:00Z");
        assert!(extend_config(b"[]", &d, &entry, "x").is_err());
    }
}
