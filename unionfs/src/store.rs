//! The content-addressed layer store; see [`LayerStore`].

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use nook_ns::statefile::{LockFile, sync_dir, write_atomic};

use crate::error::SysContext;
use crate::fsutil::remove_tree;
use crate::{ApplyOptions, DigestProblem, Error, LayerStack, Result, Upper, ValidationError, WhiteoutFormat};

/// A `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Digest(String);

/// Deserializing validates like [`Digest::parse`] (a digest names directories in the store).
impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Digest> {
        Digest::parse(&s)
    }
}

const SHA256_PREFIX: &str = "sha256:";

impl Digest {
    /// sha256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::from_sha256_bytes(&Sha256::digest(bytes).into())
    }

    /// The digest of a finished sha256.
    pub(crate) fn from_sha256_bytes(hash: &[u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(SHA256_PREFIX.len() + 64);
        s.push_str(SHA256_PREFIX);
        for b in hash {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        Digest(s)
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        let invalid = |problem| Error::from(ValidationError::Digest { value: s.to_owned(), problem });
        let hex = s.strip_prefix(SHA256_PREFIX).ok_or_else(|| invalid(DigestProblem::Prefix))?;
        if hex.len() != 64 {
            return Err(invalid(DigestProblem::Length));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid(DigestProblem::NotLowercaseHex));
        }
        Ok(Digest(s.to_string()))
    }

    /// Parses 64 lowercase hex digits (a store directory name).
    pub fn from_hex(hex: &str) -> Result<Digest> {
        Digest::parse(&format!("{SHA256_PREFIX}{hex}"))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

/// OCI ChainID: `ChainID(L0) = DiffID(L0)`, `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256(format!("{} {}", p.as_str(), diff_id.as_str()).as_bytes()),
    }
}

/// The ChainID of a whole stack of DiffIDs (bottom first); `None` for an empty list.
pub fn chain_id_of(diff_ids: &[Digest]) -> Option<Digest> {
    let mut acc: Option<Digest> = None;
    for d in diff_ids {
        acc = Some(chain_id(acc.as_ref(), d));
    }
    acc
}

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layer {
    /// DiffID.
    pub diff_id: Digest,
    /// ChainID (its name in the store).
    pub chain_id: Digest,
    /// Parent ChainID.
    pub parent: Option<Digest>,
    /// Uncompressed tar size.
    pub size: u64,
    /// Its `diff/` dir.
    pub diff_dir: PathBuf,
}

/// A container's read-write layer: paths and a stack ready to mount at `merged`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerLayer {
    /// Its id.
    pub id: String,
    /// `ROOT/containers/<id>`.
    pub dir: PathBuf,
    /// The upper dir (what `commit` turns into a layer).
    pub upper: PathBuf,
    /// The overlay work dir.
    pub work: PathBuf,
    /// The mount point.
    pub merged: PathBuf,
    /// The top layer below it.
    pub parent: Option<Digest>,
    /// Lowers (bottom first) plus `upper`/`work`: mount it at `merged`.
    pub stack: LayerStack,
}

/// A content-addressed layer store rooted at a directory, laid out like Docker's: each layer
/// named by the OCI ChainID built from the sha256 DiffIDs of the uncompressed layer tars.
///
/// ```text
/// ROOT/layers/<chain-id-hex>/diff/      the layer's files (overlay whiteout format)
/// ROOT/layers/<chain-id-hex>/diff-id    sha256:...
/// ROOT/layers/<chain-id-hex>/parent     parent chain id (absent for a base layer)
/// ROOT/layers/<chain-id-hex>/size       uncompressed tar size
/// ROOT/containers/<id>/{upper,work,merged}
/// ROOT/containers/<id>/parent           the container's top layer (absent: none)
/// ROOT/containers/<id>/empty/           the lower of a container without layers
/// ROOT/tmp/                             layers being applied, files being committed
/// ```
///
/// A layer is applied into `ROOT/tmp/<pid>.<start>-<n>-<nanos>/diff` (named after the process
/// doing it, so [`LayerStore::clean_tmp`] can tell what a crashed process left), its metadata
/// files written next to it,
/// and the whole directory renamed to `layers/<chain-id-hex>` in one `rename(2)`: a layer is
/// either complete or absent, and metadata files are never seen half-written. When a layer
/// with the same ChainID exists already (same parent, same DiffID), the new copy is discarded
/// and the existing one returned. Removal renames the layer out of `layers/` first. A store
/// lock (`flock` on `ROOT/.lock`) makes removal exclusive against placing a layer on its
/// parent and creating a container on it, across threads and processes: a layer is never
/// left with its parent gone.
///
/// `ApplyOptions::whiteouts` of `None` means [`WhiteoutFormat::Overlay`] here (a plain
/// extraction makes no sense for one layer's diff dir); the other formats are honoured but the
/// store does not record which one a layer uses — keep to one per store.
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

/// Longest parent chain walked before the store is called corrupt (a cycle).
const MAX_CHAIN: usize = 4096;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `PID.STARTTIME` of the calling process (read each time: a forked child has its own).
fn process_tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", process_start_time(pid).unwrap_or(0))
}

/// Parses the `PID.STARTTIME` prefix of a tmp entry name (`PID.STARTTIME-N-NANOS`).
fn parse_process_tag(name: &str) -> Option<(u32, u64)> {
    let (tag, _) = name.split_once('-')?;
    let (pid, start) = tag.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// A process's start time in clock ticks since boot (nook-ns's one `/proc` reader), if it exists.
fn process_start_time(pid: u32) -> Option<u64> {
    nook_ns::process_start_time(pid).ok()
}

fn not_found(id: &Digest) -> Error {
    Error::LayerNotFound { id: id.as_str().to_string() }
}

impl LayerStore {
    /// Opens (creating) a store.
    ///
    /// `layers/`, `containers/` and `tmp/` are created private (mode 0700, like containerd's
    /// snapshot dirs): layers from untrusted images hold setuid-root files and device nodes
    /// that no other user of the host may reach. Existing dirs keep their mode.
    pub fn open(root: impl AsRef<Path>) -> Result<LayerStore> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.as_ref();
        std::fs::create_dir_all(root).sys_at("mkdir", root)?;
        for sub in ["layers", "containers", "tmp"] {
            let p = root.join(sub);
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(e) => return Err(Error::sys_at("mkdir", &p, e)),
            }
        }
        Ok(LayerStore { root: root.to_path_buf() })
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Takes the store's lock (nook-ns's [`LockFile`]: `flock` on `ROOT/.lock`, a new open
    /// file description per call, so threads of one process exclude each other too; `EINTR`
    /// retried): exclusive for [`LayerStore::remove`], shared for the steps that make
    /// something depend on a layer (placing a layer on its parent, creating a container on
    /// it). Held only around those short steps, never while a layer is being extracted.
    fn lock(&self, exclusive: bool) -> Result<LockFile> {
        let path = self.root.join(".lock");
        Ok(if exclusive { LockFile::exclusive(path)? } else { LockFile::shared(path)? })
    }

    /// A fresh private directory under `ROOT/tmp`.
    fn tmp_dir(&self) -> Result<PathBuf> {
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = self.root.join("tmp").join(format!("{}-{n}-{nanos:08x}", process_tag()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::sys_at("mkdir", &p, e)),
            }
        }
    }

    /// Removes what crashed processes left under `ROOT/tmp` (a half-applied layer, a
    /// half-written commit); returns how many entries went.
    ///
    /// Every entry there is named after the process that made it (pid and start time), and
    /// only entries whose process is gone are removed: a live apply of another process is
    /// left alone, and so is anything not named that way. Processes are looked up in this
    /// process's `/proc`: if processes of another pid namespace also use this store, they are
    /// invisible here and their work in progress would look abandoned — call it only where
    /// every user of the store shares the caller's pid namespace.
    ///
    /// A failure to remove one entry does not stop the others; if any failed, the error is
    /// that failure, or [`Error::Teardown`] listing all of them.
    pub fn clean_tmp(&self) -> Result<usize> {
        let tmp = self.root.join("tmp");
        let mut removed = 0;
        let mut errors = Vec::new();
        for entry in std::fs::read_dir(&tmp).sys_at("read dir", &tmp)? {
            let entry = entry.sys_at("read dir", &tmp)?;
            let name = entry.file_name();
            let Some((pid, start)) = name.to_str().and_then(parse_process_tag) else {
                continue;
            };
            if process_start_time(pid) == Some(start) {
                continue;
            }
            let path = entry.path();
            match remove_tree(&path) {
                Ok(()) => removed += 1,
                Err(Errno::NOENT) => {}
                Err(e) => errors.push(Error::sys_at("remove", &path, e)),
            }
        }
        match errors.len() {
            0 => Ok(removed),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Teardown { what: format!("abandoned entries of {}", tmp.display()), errors }),
        }
    }

    /// Applies a layer tar on top of `parent` (atomically: applied into a temp dir, renamed
    /// into place; an identical layer already present is reused).
    pub fn apply(&self, input: impl Read, parent: Option<&Digest>, mut options: ApplyOptions<'_>) -> Result<Layer> {
        if let Some(p) = parent {
            self.layer(p)?;
        }
        options.whiteouts.get_or_insert(WhiteoutFormat::Overlay);
        let tmp = self.tmp_dir()?;
        let r = nook_ns::failpoint::check("layer.apply", tmp.display())
            .sys_at("apply", &tmp)
            .and_then(|()| self.apply_in(&tmp, input, parent, options));
        if let Ok(Placed::New(layer)) = r {
            // `tmp` itself was renamed into place.
            return Ok(layer);
        }
        let cleanup = remove_tree(&tmp).sys_at("remove", &tmp);
        let r = match r {
            Ok(Placed::New(_)) => unreachable!(),
            Ok(Placed::Existing(chain)) => self.layer(&chain),
            Err(e) => Err(e),
        };
        match (r, cleanup) {
            (Ok(l), Ok(())) => Ok(l),
            (Ok(_), Err(c)) => Err(c),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(c)) => Err(Error::Cleanup { cause: Box::new(e), cleanup: vec![c] }),
        }
    }

    /// Applies into `tmp`, writes metadata, renames into place.
    fn apply_in(
        &self,
        tmp: &Path,
        input: impl Read,
        parent: Option<&Digest>,
        options: ApplyOptions<'_>,
    ) -> Result<Placed> {
        let diff = tmp.join("diff");
        std::fs::create_dir(&diff).sys_at("mkdir", &diff)?;
        let applied = crate::apply_layer(input, &diff, options)?;
        let chain = chain_id(parent, &applied.diff_id);
        let dest = self.layer_dir(&chain);
        if dest.exists() {
            return Ok(Placed::Existing(chain));
        }
        // From here until the rename the parent must not be removed.
        let _lock = self.lock(false)?;
        if let Some(p) = parent
            && !self.layer_dir(p).is_dir()
        {
            return Err(not_found(p));
        }
        write_file(&tmp.join("diff-id"), applied.diff_id.as_str())?;
        write_file(&tmp.join("size"), &applied.size.to_string())?;
        if let Some(p) = parent {
            write_file(&tmp.join("parent"), p.as_str())?;
        }
        match std::fs::rename(tmp, &dest) {
            Ok(()) => {}
            // Placed by someone else meanwhile.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                return Ok(Placed::Existing(chain));
            }
            Err(e) => return Err(Error::sys_at("rename", tmp, e)),
        }
        sync_dir(self.root.join("layers"))?;
        Ok(Placed::New(Layer {
            diff_id: applied.diff_id,
            chain_id: chain,
            parent: parent.cloned(),
            size: applied.size,
            diff_dir: dest.join("diff"),
        }))
    }

    /// A layer by ChainID.
    pub fn layer(&self, chain_id: &Digest) -> Result<Layer> {
        match self.read_layer(chain_id) {
            // Removed while its files were read (removal renames the dir away first): gone,
            // not broken.
            Err(e) if !matches!(e, Error::LayerNotFound { .. }) && !self.layer_dir(chain_id).exists() => {
                Err(not_found(chain_id))
            }
            r => r,
        }
    }

    fn read_layer(&self, chain_id: &Digest) -> Result<Layer> {
        let dir = self.layer_dir(chain_id);
        let diff_id_path = dir.join("diff-id");
        let diff_id = match std::fs::read_to_string(&diff_id_path) {
            Ok(s) => parse_digest_file(&diff_id_path, &s)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(chain_id)),
            Err(e) => return Err(Error::sys_at("read", &diff_id_path, e)),
        };
        let size_path = dir.join("size");
        let size = std::fs::read_to_string(&size_path)
            .sys_at("read", &size_path)?
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::Corrupt { path: size_path.clone(), detail: e.to_string() })?;
        let parent_path = dir.join("parent");
        let parent = match std::fs::read_to_string(&parent_path) {
            Ok(s) => Some(parse_digest_file(&parent_path, &s)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::sys_at("read", &parent_path, e)),
        };
        if self::chain_id(parent.as_ref(), &diff_id) != *chain_id {
            return Err(Error::Corrupt {
                path: dir,
                detail: format!("chain id does not match parent {parent:?} and diff id {diff_id}"),
            });
        }
        Ok(Layer { diff_id, chain_id: chain_id.clone(), parent, size, diff_dir: dir.join("diff") })
    }

    /// All layers (sorted by ChainID).
    pub fn layers(&self) -> Result<Vec<Layer>> {
        let dir = self.root.join("layers");
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&dir).sys_at("readdir", &dir)? {
            let ent = ent.sys_at("readdir", &dir)?;
            let name = ent.file_name();
            let Some(id) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else { continue };
            match self.layer(&id) {
                Ok(l) => out.push(l),
                Err(Error::LayerNotFound { .. }) => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(out)
    }

    /// The chain from the base layer up to `top` (bottom first).
    pub fn chain(&self, top: &Digest) -> Result<Vec<Layer>> {
        let mut chain = Vec::new();
        let mut cur = Some(top.clone());
        while let Some(id) = cur {
            if chain.len() >= MAX_CHAIN {
                return Err(Error::Corrupt {
                    path: self.layer_dir(top),
                    detail: format!("parent chain longer than {MAX_CHAIN} (a cycle?)"),
                });
            }
            let layer = self.layer(&id)?;
            cur = layer.parent.clone();
            chain.push(layer);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The lower stack for a layer chain (bottom first), ready for an upper.
    pub fn stack(&self, top: &Digest) -> Result<LayerStack> {
        let mut stack = LayerStack::new();
        stack.lowers(self.chain(top)?.into_iter().map(|l| l.diff_dir));
        Ok(stack)
    }

    /// Removes a layer (refused while another layer has it as parent, or a container uses
    /// it).
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let _lock = self.lock(true)?;
        self.layer(chain_id)?;
        for l in self.layers()? {
            if l.parent.as_ref() == Some(chain_id) {
                return Err(Error::LayerInUse { id: chain_id.to_string(), by: l.chain_id.to_string() });
            }
        }
        for c in self.container_ids()? {
            if self.container_parent(&c)?.as_ref() == Some(chain_id) {
                return Err(Error::LayerInUse { id: chain_id.to_string(), by: format!("container {c}") });
            }
        }
        let dir = self.layer_dir(chain_id);
        let tmp = self.tmp_dir()?;
        let doomed = tmp.join("layer");
        std::fs::rename(&dir, &doomed).sys_at("rename", &dir)?;
        remove_tree(&tmp).sys_at("remove", &tmp)
    }

    /// Creates a container layer `id` on top of `parent`: `upper`, `work` and `merged` dirs
    /// and a [`LayerStack`] (the chain's diff dirs plus `Upper::Dir`) ready to mount at
    /// `merged`. Without a parent the only lower is an empty dir.
    pub fn create_container(&self, id: &str, parent: Option<&Digest>) -> Result<ContainerLayer> {
        validate_container_id(id)?;
        let _lock = self.lock(false)?;
        if let Some(p) = parent {
            self.layer(p)?;
        }
        let dir = self.container_dir(id);
        match nook_ns::failpoint::check("layer.container", dir.display()).and_then(|()| std::fs::create_dir(&dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ValidationError::ContainerExists { id: id.to_owned() }.into());
            }
            Err(e) => return Err(Error::sys_at("mkdir", &dir, e)),
        }
        let r = (|| {
            for sub in ["upper", "work", "merged"] {
                let p = dir.join(sub);
                nook_ns::failpoint::check("layer.container", p.display())
                    .and_then(|()| std::fs::create_dir(&p))
                    .sys_at("mkdir", &p)?;
            }
            match parent {
                Some(p) => write_file(&dir.join("parent"), p.as_str()),
                None => {
                    let p = dir.join("empty");
                    std::fs::create_dir(&p).sys_at("mkdir", &p)
                }
            }
        })();
        if let Err(e) = r {
            return match remove_tree(&dir) {
                Ok(()) => Err(e),
                Err(c) => Err(Error::Cleanup { cause: Box::new(e), cleanup: vec![Error::sys_at("remove", &dir, c)] }),
            };
        }
        self.container(id)
    }

    /// An existing container layer.
    pub fn container(&self, id: &str) -> Result<ContainerLayer> {
        validate_container_id(id)?;
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            return Err(Error::from(ValidationError::NoSuchContainer { id: id.to_owned() }));
        }
        let parent = self.container_parent(id)?;
        let mut stack = match &parent {
            Some(p) => self.stack(p)?,
            None => {
                let mut s = LayerStack::new();
                s.lower(dir.join("empty"));
                s
            }
        };
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        stack.upper(Upper::Dir { upper: upper.clone(), work: work.clone() });
        Ok(ContainerLayer { id: id.to_string(), dir, upper, work, merged, parent, stack })
    }

    /// Ids of all container layers.
    pub fn container_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("containers");
        let mut ids = Vec::new();
        for ent in std::fs::read_dir(&dir).sys_at("readdir", &dir)? {
            let ent = ent.sys_at("readdir", &dir)?;
            if let Some(n) = ent.file_name().to_str() {
                ids.push(n.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn container_parent(&self, id: &str) -> Result<Option<Digest>> {
        let p = self.container_dir(id).join("parent");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(parse_digest_file(&p, &s)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::sys_at("read", &p, e)),
        }
    }

    /// Detaches whatever is mounted on container `id`'s `merged` dir in the caller's mount
    /// namespace (every stacked mount, lazily: a process still using it keeps its view until
    /// it lets go) — what an owner that died between mounting the container's stack and
    /// unmounting it leaves, and what [`LayerStore::remove_container`] refuses to remove.
    /// Returns how many mounts it detached; a container without a mount is `Ok(0)`.
    pub fn unmount_container(&self, id: &str) -> Result<usize> {
        validate_container_id(id)?;
        let dir = self.container_dir(id);
        let merged = dir.join("merged");
        let mut detached = 0;
        loop {
            let (a, b) = match (rustix::fs::stat(&dir), rustix::fs::lstat(&merged)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(rustix::io::Errno::NOENT), _) => {
                    return Err(Error::from(ValidationError::NoSuchContainer { id: id.to_owned() }));
                }
                (Err(e), _) => return Err(Error::sys_at("stat", &dir, e)),
                (_, Err(rustix::io::Errno::NOENT)) => return Ok(detached),
                (_, Err(e)) => return Err(Error::sys_at("stat", &merged, e)),
            };
            if a.st_dev == b.st_dev {
                return Ok(detached);
            }
            rustix::mount::unmount(
                &merged,
                rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
            )
            .sys_at("umount2", &merged)?;
            detached += 1;
        }
    }

    /// Removes a container layer (its upper, work and mount point). Refused while something
    /// is mounted on `merged`.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        validate_container_id(id)?;
        let dir = self.container_dir(id);
        let merged = dir.join("merged");
        if let (Ok(a), Ok(b)) = (rustix::fs::stat(&dir), rustix::fs::stat(&merged))
            && a.st_dev != b.st_dev
        {
            return Err(ValidationError::ContainerMounted { id: id.to_owned(), merged }.into());
        }
        if !dir.exists() {
            return Err(Error::from(ValidationError::NoSuchContainer { id: id.to_owned() }));
        }
        let tmp = self.tmp_dir()?;
        std::fs::rename(&dir, tmp.join("container")).sys_at("rename", &dir)?;
        remove_tree(&tmp).sys_at("remove", &tmp)
    }

    /// Writes `f` into a fresh file under `ROOT/tmp` and returns its path (for commit).
    pub(crate) fn tmp_file<T>(&self, f: impl FnOnce(&mut std::fs::File) -> Result<T>) -> Result<(PathBuf, T)> {
        let dir = self.tmp_dir()?;
        let path = dir.join("layer.tar");
        let r = (|| {
            let mut file = std::fs::File::create_new(&path).sys_at("create", &path)?;
            let v = f(&mut file)?;
            file.flush().sys_at("write", &path)?;
            Ok(v)
        })();
        match r {
            Ok(v) => Ok((dir, v)),
            Err(e) => {
                let _ = remove_tree(&dir);
                Err(e)
            }
        }
    }
}

/// Where an applied layer ended up.
enum Placed {
    New(Layer),
    Existing(Digest),
}

/// Container ids: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
fn validate_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(ValidationError::ContainerId { id: id.to_owned() }.into()) }
}

fn parse_digest_file(path: &Path, s: &str) -> Result<Digest> {
    Digest::parse(s.trim()).map_err(|e| Error::Corrupt { path: path.to_path_buf(), detail: e.to_string() })
}

/// Writes a small metadata file atomically and durably (nook-ns's [`write_atomic`]: a temp
/// file, `fsync`, `rename`, `fsync` of the dir).
fn write_file(path: &Path, contents: &str) -> Result<()> {
    Ok(write_atomic(path, contents.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_tags_round_trip() {
        let tag = process_tag();
        let (pid, start) = parse_process_tag(&format!("{tag}-3-0000abcd")).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(process_start_time(pid), Some(start));
        assert!(start > 0);
        for bad in ["", "x", "12-3-4", "a.b-1-2", "12.x-1-2", "12.34"] {
            assert_eq!(parse_process_tag(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn digest_parse_and_hex() {
        let d = Digest::sha256(b"abc");
        assert_eq!(d.as_str(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.hex().len(), 64);
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse("md5:00").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
    }

    #[test]
    fn chain_ids_follow_oci() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        assert_eq!(chain_id(None, &a), a);
        let ab = chain_id(Some(&a), &b);
        assert_eq!(ab, Digest::sha256(format!("{a} {b}").as_bytes()));
        assert_eq!(chain_id_of(&[a.clone(), b.clone()]), Some(ab));
        assert_eq!(chain_id_of(&[]), None);
    }

    #[test]
    fn container_ids() {
        assert!(validate_container_id("nk-1.a_b").is_ok());
        assert!(validate_container_id("").is_err());
        assert!(validate_container_id(".x").is_err());
        assert!(validate_container_id("a/b").is_err());
        assert!(validate_container_id("..").is_err());
    }
}
