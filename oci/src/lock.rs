//! One lock per container id: commands that change a container (`create`, `start`, `kill`,
//! `delete`, `pause`, `resume`, `update`, and `run` until the process is started) hold an
//! exclusive `flock` on `<root>/.locks/<id>` while they work, so two commands on one id at
//! once — a `delete` racing a `start`, two `create`s — run one after the other instead of
//! interleaving their reads and writes of the state (runc 1.2 serialises its commands with
//! a lock per container as well). `state` and `ps` only read (the state file is replaced by
//! rename) and take no lock; nor does `exec`, which runs for as long as its process.
//!
//! The kernel drops the lock with its holder, so a command killed midway never leaves the
//! id locked. A command that removes the container also unlinks the lock file while it
//! holds it; a waiter that then gets the lock on the unlinked file notices (the path no
//! longer names the file it locked) and locks the path again.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, SysContext};

/// The directory of the lock files under the root.
const LOCKS: &str = ".locks";

/// An exclusive lock on one container id, released on drop.
#[derive(Debug)]
pub(crate) struct IdLock {
    file: File,
    path: PathBuf,
}

impl IdLock {
    /// Blocks until this process holds the lock of `id` (an id already checked by
    /// [`crate::state::ContainerDir::new`]).
    pub(crate) fn acquire(root: &Path, id: &str) -> Result<IdLock, Error> {
        let dir = root.join(LOCKS);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).sys("mkdir", &dir)?;
        let path = dir.join(id);
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .sys("open", &path)?;
            loop {
                match flock(&file, FlockOperation::LockExclusive) {
                    Ok(()) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(std::io::Error::from(e)).sys("flock", &path),
                }
            }
            let held = file.metadata().sys("fstat", &path)?;
            // The file we locked is still the one the path names: ours. Otherwise its last
            // holder removed it meanwhile (the container was deleted): lock the new one.
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(IdLock { file, path });
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).sys("stat", &path),
            }
        }
    }

    /// Unlinks the lock file (the container is gone) and releases the lock.
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}
