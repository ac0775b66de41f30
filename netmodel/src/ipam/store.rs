//! The state directory: the store-wide `flock`, one JSON file per network, atomic replacement.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::state::NetworkState;
use super::validate::validate_network_name;
use super::{IpamError, MAX_STATE_FILE};

const LOCK_FILE: &str = ".lock";
const SUFFIX: &str = ".json";

/// The state directory of an [`Ipam`](super::Ipam).
pub(crate) struct Store<'a> {
    dir: &'a Path,
}

/// A held store lock; released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

impl<'a> Store<'a> {
    pub(crate) fn new(dir: &'a Path) -> Store<'a> {
        Store { dir }
    }

    /// Creates the directory (and parents) and the lock file.
    pub(crate) fn create(dir: &Path) -> Result<(), IpamError> {
        fs::create_dir_all(dir).map_err(|e| IpamError::io("create directory", dir, e))?;
        Store::new(dir).open_lock_file().map(drop)
    }

    fn open_lock_file(&self) -> Result<File, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IpamError::io("open", path, e))
    }

    fn lock(&self, op: FlockOperation) -> Result<Lock, IpamError> {
        let file = self.open_lock_file()?;
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(IpamError::io("flock", self.dir.join(LOCK_FILE), e.into())),
            }
        }
    }

    /// Takes the store lock for reading and writing.
    pub(crate) fn lock_exclusive(&self) -> Result<Lock, IpamError> {
        self.lock(FlockOperation::LockExclusive)
    }

    /// Takes the store lock for reading.
    pub(crate) fn lock_shared(&self) -> Result<Lock, IpamError> {
        self.lock(FlockOperation::LockShared)
    }

    fn path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}{SUFFIX}"))
    }

    fn temp_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!(".{network}{SUFFIX}.tmp"))
    }

    /// Whether the network's file exists.
    pub(crate) fn exists(&self, network: &str) -> Result<bool, IpamError> {
        let path = self.path(network);
        path.try_exists().map_err(|e| IpamError::io("stat", path, e))
    }

    /// The registered networks, by name (files `NAME.json` with a valid name).
    pub(crate) fn list(&self) -> Result<Vec<String>, IpamError> {
        let entries = fs::read_dir(self.dir).map_err(|e| IpamError::io("read directory", self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IpamError::io("read directory", self.dir, e))?;
            let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_suffix(SUFFIX)).map(str::to_owned) else {
                continue;
            };
            if validate_network_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Loads one network ([`IpamError::UnknownNetwork`] if it has no file).
    ///
    /// Reads at most [`MAX_STATE_FILE`] bytes: a bigger file (by `fstat`, or growing while
    /// read) is [`IpamError::Corrupt`] without reading it; so is anything but a regular file
    /// (opened non-blocking, so a FIFO put there does not hang the call).
    pub(crate) fn load(&self, network: &str) -> Result<NetworkState, IpamError> {
        let path = self.path(network);
        let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IpamError::UnknownNetwork { network: network.to_owned() });
            }
            Err(e) => return Err(IpamError::io("open", path, e)),
        };
        let meta = file.metadata().map_err(|e| IpamError::io("fstat", &path, e))?;
        if !meta.is_file() {
            return Err(corrupt(&path, "not a regular file".to_owned()));
        }
        if meta.len() > MAX_STATE_FILE {
            return Err(too_big(&path, meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_STATE_FILE + 1).read_to_end(&mut bytes).map_err(|e| IpamError::io("read", &path, e))?;
        if bytes.len() as u64 > MAX_STATE_FILE {
            return Err(too_big(&path, bytes.len() as u64));
        }
        NetworkState::from_json(&path, network, &bytes)
    }

    /// Loads every network; one whose file is unusable (it does not parse, breaks an
    /// invariant, is too big or unreadable) is skipped, so it blocks nothing but the calls
    /// that name it.
    pub(crate) fn load_usable(&self) -> Result<Vec<NetworkState>, IpamError> {
        let mut out = Vec::new();
        for name in self.list()? {
            match self.load(&name) {
                Ok(state) => out.push(state),
                Err(e) if unusable(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Replaces the network's file atomically: temp file in the same directory, fsync, rename,
    /// fsync of the directory.
    ///
    /// A state bigger than [`MAX_STATE_FILE`] is refused ([`IpamError::StateTooLarge`]): it
    /// could not be read back.
    pub(crate) fn save(&self, state: &NetworkState) -> Result<(), IpamError> {
        let tmp = self.temp_path(&state.name);
        let path = self.path(&state.name);
        let json = state.to_json();
        if json.len() as u64 > MAX_STATE_FILE {
            return Err(IpamError::StateTooLarge {
                network: state.name.clone(),
                size: json.len() as u64,
                max: MAX_STATE_FILE,
            });
        }
        let written = (|| {
            let mut f = File::create(&tmp).map_err(|e| IpamError::io("create", &tmp, e))?;
            f.write_all(&json).map_err(|e| IpamError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| IpamError::io("fsync", &tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| IpamError::io("rename", &tmp, e))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        self.sync_dir()
    }

    /// Deletes the network's file; whether it existed.
    pub(crate) fn remove(&self, network: &str) -> Result<bool, IpamError> {
        let path = self.path(network);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir().map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(IpamError::io("unlink", path, e)),
        }
    }

    fn sync_dir(&self) -> Result<(), IpamError> {
        File::open(self.dir).and_then(|d| d.sync_all()).map_err(|e| IpamError::io("fsync", self.dir, e))
    }
}

fn corrupt(path: &Path, what: String) -> IpamError {
    IpamError::Corrupt {
        path: path.to_owned(),
        source: serde_json::Error::io(io::Error::new(io::ErrorKind::InvalidData, what)),
    }
}

fn too_big(path: &Path, size: u64) -> IpamError {
    corrupt(path, format!("{size} bytes, more than a state file holds ({MAX_STATE_FILE}); not read"))
}

/// Whether a load error is about that one network's file (so other networks stay usable).
fn unusable(e: &IpamError) -> bool {
    matches!(
        e,
        IpamError::Corrupt { .. }
            | IpamError::InvalidState { .. }
            | IpamError::UnsupportedVersion { .. }
            | IpamError::NameMismatch { .. }
            | IpamError::UnknownNetwork { .. }
            | IpamError::Io { op: "open" | "fstat" | "read", .. }
    )
}
