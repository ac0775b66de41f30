//! The state directory: the store-wide `flock`, one JSON file per network, atomic replacement.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nook_ns::statefile::{self, LockFile};

use super::state::NetworkState;
use super::validate::validate_network_name;
use super::{IpamError, MAX_STATE_FILE};
use crate::error::{SysContext, SysError};

const LOCK_FILE: &str = ".lock";
const SUFFIX: &str = ".json";

/// The state directory of an [`Ipam`](super::Ipam).
pub(crate) struct Store<'a> {
    dir: &'a Path,
}

impl<'a> Store<'a> {
    pub(crate) fn new(dir: &'a Path) -> Store<'a> {
        Store { dir }
    }

    /// Creates the directory (and parents) and the lock file.
    pub(crate) fn create(dir: &Path) -> Result<(), IpamError> {
        fs::create_dir_all(dir).sys_at("create directory", dir)?;
        Store::new(dir).lock_shared().map(drop)
    }

    /// Takes the store lock for reading and writing (`flock(2)` through
    /// [`nook_ns::statefile::LockFile`]).
    pub(crate) fn lock_exclusive(&self) -> Result<LockFile, IpamError> {
        Ok(LockFile::exclusive(self.dir.join(LOCK_FILE)).map_err(SysError::from)?)
    }

    /// Takes the store lock for reading.
    pub(crate) fn lock_shared(&self) -> Result<LockFile, IpamError> {
        Ok(LockFile::shared(self.dir.join(LOCK_FILE)).map_err(SysError::from)?)
    }

    fn path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}{SUFFIX}"))
    }

    /// Whether the network's file exists.
    pub(crate) fn exists(&self, network: &str) -> Result<bool, IpamError> {
        let path = self.path(network);
        Ok(path.try_exists().sys_at("stat", path)?)
    }

    /// The registered networks, by name (files `NAME.json` with a valid name).
    pub(crate) fn list(&self) -> Result<Vec<String>, IpamError> {
        let entries = fs::read_dir(self.dir).sys_at("read directory", self.dir)?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.sys_at("read directory", self.dir)?;
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
            Err(e) => return Err(SysError::at("open", path, e).into()),
        };
        let meta = file.metadata().sys_at("fstat", &path)?;
        if !meta.is_file() {
            return Err(corrupt(&path, "not a regular file".to_owned()));
        }
        if meta.len() > MAX_STATE_FILE {
            return Err(too_big(&path, meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_STATE_FILE + 1).read_to_end(&mut bytes).sys_at("read", &path)?;
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

    /// Replaces the network's file atomically and durably
    /// ([`nook_ns::statefile::write_atomic`]: temp file in the same directory, fsync, rename,
    /// fsync of the directory).
    ///
    /// A state bigger than [`MAX_STATE_FILE`] is refused ([`IpamError::StateTooLarge`]): it
    /// could not be read back.
    pub(crate) fn save(&self, state: &NetworkState) -> Result<(), IpamError> {
        let json = state.to_json();
        if json.len() as u64 > MAX_STATE_FILE {
            return Err(IpamError::StateTooLarge {
                network: state.name.clone(),
                size: json.len() as u64,
                max: MAX_STATE_FILE,
            });
        }
        Ok(statefile::write_atomic(self.path(&state.name), &json).map_err(SysError::from)?)
    }

    /// Deletes the network's file; whether it existed.
    pub(crate) fn remove(&self, network: &str) -> Result<bool, IpamError> {
        let path = self.path(network);
        match fs::remove_file(&path) {
            Ok(()) => Ok(statefile::sync_dir(self.dir).map(|()| true).map_err(SysError::from)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SysError::at("unlink", path, e).into()),
        }
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
            | IpamError::Sys { call: "open" | "fstat" | "read", .. }
    )
}
