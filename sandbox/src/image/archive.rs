//! Reading a `docker save` archive: `manifest.json` plus the config and layer tars, found
//! by name in an uncompressed tar (entries are located once, then read in place).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};

use nook_unionfs::Digest;
use serde::Deserialize;

use super::error::{ArchiveProblem, BlobSource, Document, ImageError, Result, SysContext};
use super::import::{LayerInput, Locator, Resolved};
use super::store::normalize_reference;

/// One image of `manifest.json` (Docker's format, not an OCI document).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An archive entry: a file region, or a symlink to another entry.
#[derive(Debug, Clone)]
enum Entry {
    File { offset: u64, len: u64 },
    Link(String),
}

/// Entries of an archive indexed at most (`docker save` writes a few per layer).
const MAX_ENTRIES: usize = 100_000;

/// Largest `manifest.json` / config read.
const MAX_DOCUMENT: u64 = 16 << 20;

/// Cleans an entry name: `./` and `.` dropped; `..` or an absolute name refused.
fn clean(name: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() { None } else { Some(parts.join("/")) }
}

struct Archive {
    path: PathBuf,
    entries: HashMap<String, Entry>,
}

impl Archive {
    fn open(path: &Path) -> Result<Archive> {
        let mut f = File::open(path).sys_at("open", path)?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).sys_at("read", path)?;
        if head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(ImageError::ArchiveEntry {
                archive: path.to_path_buf(),
                entry: String::new(),
                problem: ArchiveProblem::Compressed,
            });
        }
        f.rewind().sys_at("seek", path)?;
        let mut tar = tar::Archive::new(BufReader::with_capacity(64 << 10, f));
        let mut entries = HashMap::new();
        let tar_err =
            |e: std::io::Error| ImageError::Sys { call: "read tar", path: Some(path.to_path_buf()), source: e };
        for e in tar.entries_with_seek().map_err(tar_err)? {
            let e = e.map_err(tar_err)?;
            if entries.len() >= MAX_ENTRIES {
                return Err(ImageError::ArchiveEntry {
                    archive: path.to_path_buf(),
                    entry: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    problem: ArchiveProblem::TooManyEntries,
                });
            }
            let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let Some(name) = clean(&raw) else { continue };
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    entries.insert(name, Entry::File { offset: e.raw_file_position(), len: e.size() });
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = e.link_name_bytes() else { continue };
                    let target = String::from_utf8_lossy(&target).into_owned();
                    // A symlink is relative to its directory; a hard link names an entry.
                    let full = if e.header().entry_type() == tar::EntryType::Symlink {
                        match name.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target,
                        }
                    } else {
                        target
                    };
                    entries.insert(name, Entry::Link(full));
                }
                _ => {}
            }
        }
        Ok(Archive { path: path.to_path_buf(), entries })
    }

    fn problem(&self, entry: &str, problem: ArchiveProblem) -> ImageError {
        ImageError::ArchiveEntry { archive: self.path.clone(), entry: entry.to_string(), problem }
    }

    /// The file region of `name`, following links inside the archive (at most 8).
    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut cur = clean(name).ok_or_else(|| self.problem(name, ArchiveProblem::UnsafeName))?;
        for _ in 0..8 {
            match self.entries.get(&cur) {
                None => return Err(self.problem(name, ArchiveProblem::Missing)),
                Some(Entry::File { offset, len }) => return Ok((*offset, *len)),
                Some(Entry::Link(t)) => {
                    cur = clean(t).ok_or_else(|| self.problem(name, ArchiveProblem::UnsafeName))?;
                }
            }
        }
        Err(self.problem(name, ArchiveProblem::UnsafeName))
    }

    fn source(&self, name: &str) -> BlobSource {
        BlobSource::ArchiveEntry { archive: self.path.clone(), entry: name.to_string() }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (offset, len) = self.locate(name)?;
        if len > MAX_DOCUMENT {
            return Err(ImageError::DocumentTooLarge { at: self.source(name), size: len, max: MAX_DOCUMENT });
        }
        let mut f = File::open(&self.path).sys_at("open", &self.path)?;
        f.seek(std::io::SeekFrom::Start(offset)).sys_at("seek", &self.path)?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf).sys_at("read", &self.path)?;
        Ok(buf)
    }
}

/// The digest a name carries: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>/layer.tar` does not
/// (a legacy layer id is not a content digest).
fn digest_in_name(name: &str) -> Option<Digest> {
    let clean = clean(name)?;
    if let Some(hex) = clean.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(hex).ok();
    }
    if let Some(hex) = clean.strip_suffix(".json")
        && !hex.contains('/')
    {
        return Digest::from_hex(hex).ok();
    }
    None
}

/// Reads a `docker save` archive and resolves the image to import.
pub(crate) fn resolve_docker_archive(path: &Path, select: Option<&str>) -> Result<Resolved> {
    let archive = Archive::open(path)?;
    let bytes = archive.read("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        document: Document::DockerManifest,
        at: path.join("manifest.json"),
        source,
    })?;
    let tags = |e: &DockerManifestEntry| e.repo_tags.clone().unwrap_or_default();
    let all: Vec<String> =
        entries.iter().map(|e| tags(e).first().cloned().unwrap_or_else(|| e.config.clone())).collect();
    let entry = match select {
        Some(s) => {
            let want = normalize_reference(s)?;
            entries
                .iter()
                .find(|e| tags(e).iter().any(|t| t == s || normalize_reference(t).ok().as_deref() == Some(&want)))
                .ok_or_else(|| ImageError::NoMatchingImage {
                    path: path.to_path_buf(),
                    wanted: s.to_string(),
                    available: all.clone(),
                })?
        }
        None => match entries.as_slice() {
            [one] => one,
            [] => {
                return Err(ImageError::NoMatchingImage {
                    path: path.to_path_buf(),
                    wanted: "an image".into(),
                    available: Vec::new(),
                });
            }
            _ => return Err(ImageError::AmbiguousImage { path: path.to_path_buf(), candidates: all }),
        },
    };
    let config = archive.read(&entry.config)?;
    let config_source = archive.source(&entry.config);
    if let Some(expected) = digest_in_name(&entry.config) {
        let actual = Digest::sha256(&config);
        if actual != expected {
            return Err(ImageError::DigestMismatch { blob: config_source, expected, actual });
        }
    }
    let mut layers = Vec::new();
    for name in &entry.layers {
        let (offset, len) = archive.locate(name)?;
        layers.push(LayerInput {
            source: archive.source(name),
            locator: Locator::Region { file: path.to_path_buf(), offset, len },
            digest: digest_in_name(name).filter(|_| name.contains("blobs/")),
            size: None,
            media_type: None,
        });
    }
    Ok(Resolved { manifest: None, config, config_source, layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean("./a/b").as_deref(), Some("a/b"));
        assert_eq!(clean("a/../b").as_deref(), Some("b"));
        assert_eq!(clean("../b"), None);
        assert_eq!(clean("/etc/passwd"), None);
        assert_eq!(clean("."), None);
    }

    #[test]
    fn digests_in_names() {
        let d = Digest::sha256(b"x");
        assert_eq!(digest_in_name(&format!("blobs/sha256/{}", d.hex())), Some(d.clone()));
        assert_eq!(digest_in_name(&format!("{}.json", d.hex())), Some(d.clone()));
        assert_eq!(digest_in_name(&format!("{}/layer.tar", d.hex())), None);
        assert_eq!(digest_in_name("manifest.json"), None);
    }
}
