//! The facade's owner records: what a sandbox creates is written to its record in a
//! [`StateDir`] as it is created, so that [`cleanup()`](crate::cleanup) can remove it after
//! the owner dies (see the [`state`](crate::state) module docs, and "Dies with its owner" in
//! the crate docs).
//!
//! A setup step that creates something calls [`Recorder::record`] with the [`Object`] right
//! before creating it (a cleanup takes an absent object as removed, so recording first leaves
//! no window in which it exists unrecorded): the `/etc` files directory of a sandbox on
//! networks and a container layer (their names are chosen in advance), a cgroup (with every
//! directory it can get, then replaced with the ones it got in the write that records the
//! init: [`Recorder::replace_with`]), a network
//! endpoint (as [`Object::Endpoint`]: whatever the owner holds on that network, then
//! [`Recorder::replace_with`] its addresses and port rules). Only the init process, which
//! dies with the owner anyway, is recorded right after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::state::{self, Object, RecordHandle, StateDir};

/// How often a process runs the cleanup of a state dir before creating a sandbox there (the
/// first create always does). Cleaning takes a lock and reads each record, so a process
/// with many live sandboxes does not pay that on every create.
pub(crate) const CLEANUP_INTERVAL: Duration = Duration::from_secs(1);

/// The record of one sandbox being built or running (or none: a one-shot sandbox without a
/// cgroup, networks or a container layer to remove, whose only object, its init, dies with
/// the owner; or the default state dir could not be created).
///
/// The record file is written first with the first object (until then there is nothing a
/// cleanup would have to remove): `pending` holds its state dir and id until then.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    handle: Option<RecordHandle>,
    pending: Option<(StateDir, String)>,
}

impl Recorder {
    /// No record.
    pub(crate) fn none() -> Recorder {
        Recorder::default()
    }

    /// Writes the pending record with `objects` as its first content.
    fn create_with(&mut self, objects: Vec<Object>) -> Result<()> {
        if let Some((dir, id)) = self.pending.as_ref() {
            // `begin` made and checked the directories.
            self.handle = Some(dir.create_record_in_dirs(id, state::ProcessId::current()?, objects)?);
            self.pending = None;
        }
        Ok(())
    }

    /// Cleans up after dead owners in the state dir (best effort, at most once per
    /// [`CLEANUP_INTERVAL`] per process and dir), then prepares the record of sandbox `id`
    /// (its directory made and checked; the file is written with the first object).
    ///
    /// `state`: the caller's state dir (its errors are errors), or `None` for the default
    /// ([`StateDir::default_root`]), which is skipped when it cannot be created (no
    /// `$XDG_RUNTIME_DIR` for an unprivileged caller, a read-only `/run`): the sandbox then
    /// runs without a record.
    pub(crate) fn begin(state: Option<&Path>, id: &str) -> Result<Recorder> {
        let explicit = state.is_some();
        let dir = StateDir::new(state.map_or_else(StateDir::default_root, Path::to_owned));
        cleanup_now_and_then(&dir);
        match dir.ensure_dirs() {
            Ok(()) => Ok(Recorder { handle: None, pending: Some((dir, id.to_owned())) }),
            Err(state::Error::Sys { call: "mkdir", source, .. })
                if !explicit
                    && matches!(
                        source.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)
                    ) =>
            {
                Ok(Recorder::none())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `object` to the record (no-op without a record).
    pub(crate) fn record(&mut self, object: Object) -> Result<()> {
        if self.pending.is_some() {
            return self.create_with(vec![object]);
        }
        match &mut self.handle {
            Some(h) => Ok(h.add(object)?),
            None => Ok(()),
        }
    }

    /// Replaces `old` with the objects `new` (what an object recorded in advance turned out
    /// to be: an endpoint's addresses and port rules), in one write.
    pub(crate) fn replace_with(&mut self, old: &Object, new: Vec<Object>) -> Result<()> {
        // Not written yet: `old` was never recorded.
        if self.pending.is_some() {
            return self.create_with(new);
        }
        match &mut self.handle {
            Some(h) => Ok(h.replace_with(old, new)?),
            None => Ok(()),
        }
    }

    /// Drops `object` from the record (it was not made after all).
    pub(crate) fn forget(&mut self, object: &Object) -> Result<()> {
        match &mut self.handle {
            Some(h) => Ok(h.forget(object)?),
            None => Ok(()),
        }
    }

    /// Whether there is a record (else recording is a no-op, and what it needs need not be
    /// computed).
    pub(crate) fn is_active(&self) -> bool {
        self.handle.is_some() || self.pending.is_some()
    }

    /// The record file, if there is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.handle.as_ref().map(RecordHandle::path)
    }

    /// Deletes the record: everything it lists is gone.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.pending = None;
        match self.handle.take() {
            Some(h) => Ok(h.remove()?),
            None => Ok(()),
        }
    }
}

/// Runs [`StateDir::cleanup`] unless this process did so for `dir` less than
/// [`CLEANUP_INTERVAL`] ago. Failures are not the new sandbox's: they stay for an explicit
/// [`cleanup()`](crate::cleanup) to report.
fn cleanup_now_and_then(dir: &StateDir) {
    static LAST: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
    let now = Instant::now();
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let map = last.get_or_insert_with(HashMap::new);
        if map.get(dir.root()).is_some_and(|t| now.duration_since(*t) < CLEANUP_INTERVAL) {
            return;
        }
        map.insert(dir.root().to_owned(), now);
    }
    let _ = dir.cleanup();
}
