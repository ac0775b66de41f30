//! The networks' records in the state directory: what lets another process open a network
//! ([`crate::Network::open`]) and tells who still uses it.
//!
//! One file per network, `<network>.network` beside IPAM's `<network>.json`:
//! `{"version": 1, "id", "spec", "users": [{"handle", "owner"}]}` — the network's id, its
//! resolved spec (bridge named, gateways filled in, automatic subnet chosen) and one entry per
//! open handle ([`crate::Network::create`] or [`crate::Network::open`] in some process), each
//! with its process as an IPAM [`Owner`] (pid and start time: a crashed user is recognised as
//! gone, a reused pid is not mistaken for it). Every read-modify-write of a record, and a
//! network's whole creation and removal, happen under `flock(2)` on `<dir>/.networks.lock`
//! (exclusive), taken before IPAM's own lock and never while holding it. Files are replaced
//! atomically ([`nook_ns::statefile::write_atomic`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nook_ns::statefile::{self, LockFile};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext, SysError};
use crate::ipam::Owner;
use crate::spec::NetworkSpec;
use crate::util::random_hex;

const LOCK_FILE: &str = ".networks.lock";
const SUFFIX: &str = ".network";
const VERSION: u32 = 1;
/// Largest record read (a spec and a few thousand users).
const MAX_RECORD: u64 = 4 << 20;

/// One open handle on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    /// Random, per handle (a process may hold several).
    pub(crate) handle: String,
    /// Its process.
    pub(crate) owner: Owner,
}

impl User {
    /// A new handle of the calling process.
    pub(crate) fn current() -> User {
        User { handle: random_hex(16), owner: Owner::current_process() }
    }
}

/// A network's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) version: u32,
    pub(crate) id: String,
    pub(crate) spec: NetworkSpec,
    pub(crate) users: Vec<User>,
}

impl Record {
    pub(crate) fn new(id: &str, spec: &NetworkSpec, user: User) -> Record {
        Record { version: VERSION, id: id.to_owned(), spec: spec.clone(), users: vec![user] }
    }

    /// Drops `handle` and the users whose process is gone; whether a live user is left.
    pub(crate) fn leave(&mut self, handle: &str) -> bool {
        self.users.retain(|u| u.handle != handle && u.owner.is_alive());
        !self.users.is_empty()
    }
}

/// The records of one state directory.
pub(crate) struct Registry<'a> {
    dir: &'a Path,
}

impl<'a> Registry<'a> {
    pub(crate) fn new(dir: &'a Path) -> Registry<'a> {
        Registry { dir }
    }

    /// Takes the registry lock (exclusive) for the guard's lifetime.
    pub(crate) fn lock(&self) -> Result<LockFile> {
        Ok(LockFile::exclusive(self.dir.join(LOCK_FILE)).map_err(SysError::from)?)
    }

    fn path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}{SUFFIX}"))
    }

    /// The record of `network`, if there is one.
    pub(crate) fn load(&self, network: &str) -> Result<Option<Record>> {
        let path = self.path(network);
        let bytes = match fs::File::open(&path) {
            Ok(f) => {
                let len = f.metadata().sys_at("fstat", &path)?.len();
                if len > MAX_RECORD {
                    return Err(corrupt(path, format!("{len} bytes, more than a record holds ({MAX_RECORD})")));
                }
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut io::Read::take(f, MAX_RECORD), &mut bytes).sys_at("read", &path)?;
                bytes
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SysError::at("open", path, e).into()),
        };
        let record: Record = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(source) => return Err(Error::CorruptRecord { path, source }),
        };
        if record.version != VERSION || record.spec.name != network {
            let what = format!("version {} of network {:?}", record.version, record.spec.name.as_str());
            return Err(corrupt(path, what));
        }
        Ok(Some(record))
    }

    /// Writes `record` (atomically).
    pub(crate) fn save(&self, record: &Record) -> Result<()> {
        let path = self.path(&record.spec.name);
        let mut json = match serde_json::to_vec_pretty(record) {
            Ok(j) => j,
            // Only a custom driver does not serialize; the model writes no record for one.
            Err(source) => return Err(Error::CorruptRecord { path, source }),
        };
        json.push(b'\n');
        Ok(statefile::write_atomic(path, &json).map_err(SysError::from)?)
    }

    /// Deletes the record of `network` (absent is fine).
    pub(crate) fn remove(&self, network: &str) -> Result<()> {
        let path = self.path(network);
        match fs::remove_file(&path) {
            Ok(()) => Ok(statefile::sync_dir(self.dir).map_err(SysError::from)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SysError::at("unlink", path, e).into()),
        }
    }
}

fn corrupt(path: PathBuf, what: String) -> Error {
    Error::CorruptRecord { path, source: serde_json::Error::io(io::Error::new(io::ErrorKind::InvalidData, what)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_dead_users_leave() {
        let dir = nook_testutil::TempDir::new("registry").unwrap();
        let registry = Registry::new(dir.path());
        let _lock = registry.lock().unwrap();
        assert!(registry.load("nk-r").unwrap().is_none());
        let mut spec = NetworkSpec::bridge("nk-r".parse().unwrap());
        spec.subnet("10.5.0.0/24".parse().unwrap(), None);
        let me = User::current();
        let mut record = Record::new("abc", &spec, me.clone());
        let dead = User { handle: "dead".into(), owner: Owner::Process { pid: u32::MAX, start_time: 1 } };
        record.users.push(dead);
        registry.save(&record).unwrap();
        let mut back = registry.load("nk-r").unwrap().unwrap();
        assert_eq!((back.id.as_str(), &back.spec, back.users.len()), ("abc", &spec, 2));
        let other = User::current();
        back.users.push(other.clone());
        assert!(back.leave(&me.handle), "another live user is left");
        assert_eq!(back.users, std::slice::from_ref(&other), "the dead user went with it");
        assert!(!back.leave(&other.handle));
        registry.remove("nk-r").unwrap();
        registry.remove("nk-r").unwrap();
        assert!(registry.load("nk-r").unwrap().is_none());
        // A record that does not parse, or names another network, is reported.
        std::fs::write(dir.join("nk-x.network"), "{").unwrap();
        assert!(matches!(registry.load("nk-x"), Err(Error::CorruptRecord { .. })));
        registry.save(&record).unwrap();
        std::fs::rename(dir.join("nk-r.network"), dir.join("nk-y.network")).unwrap();
        assert!(matches!(registry.load("nk-y"), Err(Error::CorruptRecord { .. })));
    }
}
