//! A sandbox dies with its owner, and a crash leaves nothing for long: owner records and
//! [`cleanup()`].
//!
//! Each sandbox writes, before it creates its first kernel object, a **record** into a state
//! directory: its id, its owner (pid and start time, so a reused pid is never taken for the
//! owner: [`ProcessId`]) and, appended as each is created, every object it made ([`Object`]):
//! its init process, cgroups, mounts, persisted namespaces, firewall rules, IPAM addresses,
//! network endpoints, a sandbox's `/etc` files directory, container layers. An object is appended *before* it is created when
//! possible — as what it may become ([`Object::Endpoint`]: whatever the owner will hold on a
//! network; a cgroup with every directory it can get) and then replaced with what it turned
//! out to be ([`RecordHandle::replace`], [`RecordHandle::replace_with`]) — so an owner
//! killed in between leaves nothing unrecorded. A clean `remove` deletes the record last.
//! What a killed or crashed owner leaves is found by [`cleanup()`] (which the facade also
//! runs, best effort and at most once a second per process and state dir, before a sandbox
//! writes its record: see "Dies with its owner" in the crate docs): for each record whose
//! owner is dead it
//!
//! 1. kills the sandbox's processes — through its cgroup ([`nook_cgroup::Cgroup::kill_all`]:
//!    `cgroup.kill` on v2, freeze + `SIGKILL` of every pid + thaw on v1) and its recorded
//!    init, by pidfd after checking its start time; never by name;
//! 2. removes the objects in reverse order of creation, each through the crate that made it
//!    (`Cgroup::open_in` + `remove`, [`nook_ns::unmount`], unmount + unlink of a persisted
//!    namespace, [`NftNetlink`](nook_netmodel::firewall::NftNetlink) `remove_ports` /
//!    `teardown_network` / `remove_ports_to`, [`Ipam::release`](nook_netmodel::ipam::Ipam::release),
//!    [`LayerStore::unmount_container`](nook_unionfs::LayerStore::unmount_container) and
//!    [`LayerStore::remove_container`](nook_unionfs::LayerStore::remove_container)), going on
//!    after failures;
//! 3. deletes the record only when everything is gone; otherwise it rewrites the record with
//!    what is left (the next cleanup retries only that) and reports every failure
//!    ([`Error::Teardown`]).
//!
//! Objects already gone (or never made) count as removed, and each removal first checks that
//! the object is still the recorded one: a mount by its mount id, a process by its start
//! time, an IPAM address by its owner (an endpoint's port rules go only with the endpoint's
//! id, or towards addresses the dead owner still holds), so nothing that someone else made
//! since at the same place is touched. Records of live owners are never touched; a record that does not parse is reported
//! ([`Error::Corrupt`]) and left, and the others are still cleaned.
//!
//! # Layout and locking
//!
//! ```text
//! DIR/sandboxes/<id>.json   the record (JSON, replaced atomically: a temporary file swapped
//!                           in with renameat2(RENAME_EXCHANGE) and the old one unlinked;
//!                           renamed over it and fsync'd, with nook_ns::statefile::write_atomic,
//!                           when it lists on-disk objects that outlive a reboot)
//! DIR/sandboxes/<id>.lock   its lock (nook_ns::statefile::LockFile)
//! ```
//!
//! `DIR` is [`StateDir::default_root`]: `/run/nook` for root, `$XDG_RUNTIME_DIR/nook`
//! otherwise (or any directory: [`StateDir::new`]). It and `DIR/sandboxes` are created mode
//! 0700 and must stay the caller's alone (owned by it, not writable by group or others, no
//! symlink): records steer what a cleanup kills and removes, so a state dir another user could
//! write is refused ([`Error::Unsafe`]). The owner takes the record's lock for each
//! append; a cleanup takes it (without waiting: a busy record is skipped and reported in
//! [`CleanupReport::busy`]) for the whole teardown, so two concurrent cleanups never free the
//! same object twice, and a record is never cleaned while its owner writes it. A lock file is
//! unlinked only by its holder after the record is gone; a taker checks that the file it
//! locked is still the one at the path, so an unlinked lock file is never used.
//!
//! Liveness is judged in the cleaning process's view of `/proc`: use one state directory per
//! pid namespace (the defaults are per user and per host), and do not mount `/proc` with
//! `hidepid` for the user who cleans (other users' owners would look dead). Likewise, firewall
//! rules recorded without a namespace path are removed in the cleaning process's own network
//! namespace: clean up from the network namespace the owners ran in.
//!
//! # Example
//!
//! ```no_run
//! use nook_sandbox::state::{Object, StateDir};
//!
//! let state = StateDir::new(StateDir::default_root());
//! state.cleanup()?.into_result()?; // what dead owners left
//! let mut record = state.create_record("nk-box")?;
//! nook_ns::mount_tmpfs("/tmp/nk-box".as_ref(), None)?;
//! record.add(Object::mount("/tmp/nk-box")?)?;
//! // ... the sandbox runs; removing it removes the mount, then:
//! nook_ns::unmount("/tmp/nk-box".as_ref(), false)?;
//! record.remove()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod record;
mod teardown;

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nook_ns::statefile::{LockFile, write_atomic};

pub use error::{Error, Result, ValidationError};
pub use record::{MAX_ID_LEN, Object, ProcessId, RECORD_VERSION, Record, validate_id};

use error::SysContext;

/// Where the records live ([`StateDir::default_root`] or a directory of the caller's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl Default for StateDir {
    fn default() -> StateDir {
        StateDir::new(StateDir::default_root())
    }
}

impl StateDir {
    /// Records under `root` (created when the first record is).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// `/run/nook` for root; otherwise `$XDG_RUNTIME_DIR/nook`, or `/run/user/UID/nook`
    /// where `XDG_RUNTIME_DIR` is not set.
    pub fn default_root() -> PathBuf {
        let uid = rustix::process::geteuid();
        if uid.is_root() {
            return PathBuf::from("/run/nook");
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("nook"),
            None => PathBuf::from(format!("/run/user/{}/nook", uid.as_raw())),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn records_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.lock"))
    }

    pub(crate) fn ensure_dirs(&self) -> Result<()> {
        let dir = self.records_dir();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).sys_at("mkdir", &dir)?;
        self.check_private()
    }

    /// The root and the records dir must be the caller's alone: records steer what a cleanup
    /// kills, unmounts and removes.
    fn check_private(&self) -> Result<()> {
        let euid = rustix::process::geteuid().as_raw();
        for dir in [self.root.clone(), self.records_dir()] {
            let m = std::fs::symlink_metadata(&dir).sys_at("stat", &dir)?;
            let reason = if !m.file_type().is_dir() {
                Some("not a directory (or a symlink)".to_owned())
            } else if m.uid() != euid {
                Some(format!("owned by uid {}, not by the caller (uid {euid})", m.uid()))
            } else if m.mode() & 0o022 != 0 {
                Some(format!("writable by group or others (mode {:o})", m.mode() & 0o7777))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::Unsafe { path: dir, reason });
            }
        }
        Ok(())
    }

    /// Creates the record of sandbox `id`, owned by the calling process. Call it before the
    /// sandbox creates anything; then [`RecordHandle::add`] each object as it is created.
    ///
    /// A record of that id that exists is [`Error::Exists`] (even of a dead owner: run
    /// [`StateDir::cleanup`] first).
    pub fn create_record(&self, id: &str) -> Result<RecordHandle> {
        self.create_record_for(id, ProcessId::current()?)
    }

    /// [`StateDir::create_record`] with its first objects in the same write (one write
    /// fewer than creating it empty and adding them; for an owner that records nothing
    /// before the first object it creates).
    pub fn create_record_with(&self, id: &str, objects: Vec<Object>) -> Result<RecordHandle> {
        self.ensure_dirs()?;
        self.create_record_in_dirs(id, ProcessId::current()?, objects)
    }

    /// [`StateDir::create_record`] on behalf of another process (a supervisor creating for
    /// a client, or a test): the sandbox is cleaned once `owner` is gone.
    pub fn create_record_for(&self, id: &str, owner: ProcessId) -> Result<RecordHandle> {
        self.ensure_dirs()?;
        self.create_record_in_dirs(id, owner, Vec::new())
    }

    /// The record of `id` for `owner` with `objects`, once [`StateDir::ensure_dirs`] made
    /// and checked the directories.
    pub(crate) fn create_record_in_dirs(
        &self,
        id: &str,
        owner: ProcessId,
        objects: Vec<Object>,
    ) -> Result<RecordHandle> {
        validate_id(id)?;
        let path = self.record_path(id);
        let lock_path = self.lock_path(id);
        let _lock = lock(&lock_path, true)?.expect("a blocking lock is always taken");
        match std::fs::symlink_metadata(&path) {
            Ok(_) => return Err(Error::Exists { id: id.to_owned(), path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::sys("stat", &path, e)),
        }
        let record = Record { version: RECORD_VERSION, id: id.to_owned(), owner, objects };
        if let Err(e) = write_record(&path, &record) {
            // No record: the lock file is its holder's (ours) to remove.
            let _ = std::fs::remove_file(&lock_path);
            return Err(e);
        }
        Ok(RecordHandle { record, path, lock_path })
    }

    /// Reads the record of sandbox `id`.
    pub fn read(&self, id: &str) -> Result<Record> {
        validate_id(id)?;
        read_record(&self.record_path(id), id)
    }

    /// The ids of every record (sorted).
    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.records_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::sys("readdir", &dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.sys_at("readdir", &dir)?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && validate_id(id).is_ok()
            {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Cleans up after every dead owner (see the module docs). Fails only when the state
    /// directory cannot be listed or is not private to the caller ([`Error::Unsafe`]); what
    /// happened to each record is in the report.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        if !self.records_dir().exists() {
            return Ok(report);
        }
        self.check_private()?;
        for id in self.ids()? {
            self.cleanup_one(&id, &mut report);
        }
        self.remove_orphans();
        Ok(report)
    }

    fn cleanup_one(&self, id: &str, report: &mut CleanupReport) {
        let lock_path = self.lock_path(id);
        let lock = match lock(&lock_path, false) {
            Ok(Some(l)) => l,
            Ok(None) => return report.busy.push(id.to_owned()),
            Err(e) => return report.failed.push(e),
        };
        let path = self.record_path(id);
        let record = match read_record(&path, id) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                // Removed meanwhile: the lock file is ours to remove.
                let _ = std::fs::remove_file(&lock_path);
                return;
            }
            Err(e) => return report.failed.push(e),
        };
        if record.owner.is_alive() {
            return report.live.push(id.to_owned());
        }
        let kill_errors: Vec<Option<Error>> = record.objects.iter().map(|o| teardown::kill(id, o).err()).collect();
        let mut errors = Vec::new();
        let mut left = Vec::new();
        for (object, kill_error) in record.objects.iter().zip(kill_errors).rev() {
            if let Err(e) = teardown::remove(id, object) {
                errors.extend(kill_error);
                errors.push(e);
                left.push(object.clone());
            }
        }
        if left.is_empty() {
            let removed = std::fs::remove_file(&path).sys_at("unlink", &path);
            match removed {
                Ok(()) => {
                    let _ = std::fs::remove_file(&lock_path);
                    report.removed.push(id.to_owned());
                }
                Err(e) => report.failed.push(Error::Teardown { what: format!("sandbox {id}"), errors: vec![e] }),
            }
        } else {
            left.reverse();
            let rest = Record { objects: left, ..record };
            if let Err(e) = write_record(&path, &rest) {
                errors.push(e);
            }
            report.failed.push(Error::Teardown { what: format!("sandbox {id}"), errors });
        }
        drop(lock);
    }

    /// Lock files without a record (a creation that stopped between the two) and temporary
    /// files of dead writers: removed when nobody holds them.
    fn remove_orphans(&self) {
        let dir = self.records_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".lock") {
                if self.record_path(id).exists() {
                    continue;
                }
                if let Ok(Some(_held)) = lock(&entry.path(), false)
                    && !self.record_path(id).exists()
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            } else if name.starts_with('.') && name.contains(".json.tmp.") {
                // `.<id>.json.tmp.<pid>.<n>` (write_atomic): the writer's pid.
                let pid = name.rsplit('.').nth(1).and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// [`StateDir::cleanup`] of the default state directory.
pub fn cleanup() -> Result<CleanupReport> {
    StateDir::default().cleanup()
}

/// What a [`cleanup()`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Sandboxes of dead owners removed completely (record included).
    pub removed: Vec<String>,
    /// Records of live owners, left untouched.
    pub live: Vec<String>,
    /// Records locked by someone else (their owner writing, or another cleanup): skipped.
    pub busy: Vec<String>,
    /// Every failure: an [`Error::Teardown`] per sandbox that could not be removed
    /// completely (its record keeps what is left), an [`Error::Corrupt`] per unreadable record.
    pub failed: Vec<Error>,
}

impl CleanupReport {
    /// Whether nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }

    /// `Ok(self)` if nothing failed, else one [`Error::Teardown`] with every failure.
    pub fn into_result(self) -> Result<CleanupReport> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(Error::Teardown { what: "what dead owners left".into(), errors: self.failed })
        }
    }
}

/// The record of a sandbox being built or running (from [`StateDir::create_record`]).
///
/// Dropping it leaves the record: if the owner never calls [`RecordHandle::remove`] (it
/// crashed, or its teardown failed), the next [`cleanup()`] after the owner's death removes
/// what the record lists.
#[derive(Debug)]
pub struct RecordHandle {
    record: Record,
    path: PathBuf,
    lock_path: PathBuf,
}

impl RecordHandle {
    /// The record as written.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `object` (call it right after creating the object, before the next step):
    /// the record is rewritten atomically under its lock.
    pub fn add(&mut self, object: Object) -> Result<()> {
        let _lock = lock(&self.lock_path, true)?;
        self.record.objects.push(object);
        if let Err(e) = write_record(&self.path, &self.record) {
            self.record.objects.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Drops `object` from the record (the owner removed it itself). Absent: nothing to do.
    pub fn forget(&mut self, object: &Object) -> Result<()> {
        let Some(i) = self.record.objects.iter().rposition(|o| o == object) else { return Ok(()) };
        let _lock = lock(&self.lock_path, true)?;
        let removed = self.record.objects.remove(i);
        if let Err(e) = write_record(&self.path, &self.record) {
            self.record.objects.insert(i, removed);
            return Err(e);
        }
        Ok(())
    }

    /// Replaces `old` with `new` in place (the object as it turned out, after it was
    /// recorded in advance as what it could become). `old` absent: `new` is appended.
    pub fn replace(&mut self, old: &Object, new: Object) -> Result<()> {
        let Some(i) = self.record.objects.iter().rposition(|o| o == old) else { return self.add(new) };
        let _lock = lock(&self.lock_path, true)?;
        let before = std::mem::replace(&mut self.record.objects[i], new);
        if let Err(e) = write_record(&self.path, &self.record) {
            self.record.objects[i] = before;
            return Err(e);
        }
        Ok(())
    }

    /// Replaces `old` with the objects `new` in place, in one write (an object recorded in
    /// advance that turned out to be several, or none). `old` absent: `new` is appended.
    pub fn replace_with(&mut self, old: &Object, new: impl IntoIterator<Item = Object>) -> Result<()> {
        let new: Vec<Object> = new.into_iter().collect();
        let _lock = lock(&self.lock_path, true)?;
        let before = self.record.objects.clone();
        match self.record.objects.iter().rposition(|o| o == old) {
            Some(i) => {
                self.record.objects.splice(i..=i, new);
            }
            None => self.record.objects.extend(new),
        }
        if let Err(e) = write_record(&self.path, &self.record) {
            self.record.objects = before;
            return Err(e);
        }
        Ok(())
    }

    /// Deletes the record (after a clean remove of everything it lists).
    pub fn remove(self) -> Result<()> {
        let _lock = lock(&self.lock_path, true)?;
        std::fs::remove_file(&self.path).sys_at("unlink", &self.path)?;
        let _ = std::fs::remove_file(&self.lock_path);
        Ok(())
    }
}

/// Writes a record atomically: through [`write_atomic`] (`fsync`ed, durable) when it lists an
/// object that outlives a reboot (an IPAM address, a container layer: on-disk state), else
/// with the same temporary file swapped in ([`replace_with_tmp`]) but no `fsync` — what it
/// lists (processes, cgroups, mounts, namespaces, firewall rules) is gone after a reboot
/// anyway, and the page cache keeps the record when only its owner dies. On a disk-backed
/// state dir that is the difference between tens of µs and tens of ms per write.
fn write_record(path: &Path, record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
    nook_ns::failpoint::check("state.record", path.display()).sys_at("write", path)?;
    let durable = record
        .objects
        .iter()
        .any(|o| matches!(o, Object::IpamAddress { .. } | Object::Endpoint { .. } | Object::ContainerLayer { .. }));
    if durable {
        return Ok(write_atomic(path, &bytes)?);
    }
    write_replace(path, &bytes)
}

/// `write_atomic` without the `fsync`s (same temporary name, so a dead writer's leftover is
/// found by `remove_orphans`).
fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().expect("a record path has a file name").to_string_lossy();
    let tmp =
        path.with_file_name(format!(".{name}.tmp.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .sys_at("write", &tmp)
        .and_then(|()| replace_with_tmp(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts `tmp` at `path` atomically. A record that exists is swapped with
/// `renameat2(RENAME_EXCHANGE)` and its old version (now at `tmp`) unlinked: a plain
/// `rename(2)` over an existing file makes ext4 (`auto_da_alloc`) allocate and start writing
/// the new file's blocks at once, ~0.1 ms per write on a disk-backed `/run` — several times
/// per sandbox — and the unlink of those blocks later costs as much again; a swap leaves the
/// data in the page cache like any unsynced write. Readers see the old or the new record,
/// as with `rename`; an owner killed between the swap and the unlink leaves the old version
/// under the temporary name, which [`StateDir::cleanup`] removes (`remove_orphans`). A
/// file system without `RENAME_EXCHANGE`, or no record yet: `rename(2)`.
fn replace_with_tmp(tmp: &Path, path: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => std::fs::remove_file(tmp).sys_at("unlink", tmp),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            std::fs::rename(tmp, path).sys_at("rename", tmp)
        }
        Err(e) => Err(Error::sys("renameat2", tmp, e.into())),
    }
}

fn read_record(path: &Path, id: &str) -> Result<Record> {
    let bytes = std::fs::read(path).sys_at("read", path)?;
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    if record.version != RECORD_VERSION {
        return Err(Error::Corrupt { path: path.to_owned(), reason: format!("unknown version {}", record.version) });
    }
    if record.id != id {
        return Err(Error::Corrupt { path: path.to_owned(), reason: format!("names sandbox {:?}", record.id) });
    }
    Ok(record)
}

/// Takes the lock at `path` (waiting, or `None` if busy when `!wait`), making sure the file
/// locked is still the one at the path (a holder unlinks it after removing the record).
fn lock(path: &Path, wait: bool) -> Result<Option<LockFile>> {
    loop {
        let held = if wait { Some(LockFile::exclusive(path)?) } else { LockFile::try_exclusive(path)? };
        let Some(held) = held else { return Ok(None) };
        let mine = held.file().metadata().sys_at("fstat", path)?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == mine.dev() && now.ino() == mine.ino() => return Ok(Some(held)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::sys("stat", path, e)),
        }
    }
}
