//! A container's state under `--root`: `<root>/<id>/state.json` (the OCI state from
//! `oci-spec`, runc's extra fields, and the facade's [`DetachedRecord`]) and, between
//! `create` and `start`, `<root>/<id>/exec.fifo`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, State};
use serde::{Deserialize, Serialize};

use nook_cgroup::CgroupSpec;
use nook_sandbox::detached::{Detached, DetachedRecord};

use crate::error::{Error, SysContext};

/// The fifo `start` opens (runc's name).
pub(crate) const FIFO: &str = "exec.fifo";

/// A container's status as runc reports it (oci-spec's `ContainerState` has no `paused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// `create` is at work (its hooks), or was killed midway (see
    /// [`ContainerDir::is_partial`]).
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The OCI state as of `create` (status and pid are recomputed on read).
    pub(crate) oci: State,
    /// The rootfs (absolute).
    pub(crate) rootfs: PathBuf,
    /// When it was created (RFC 3339, UTC).
    pub(crate) created: String,
    /// Who created it (runc writes the user name, empty for root).
    pub(crate) owner: String,
    /// How to find the sandbox again.
    pub(crate) record: DetachedRecord,
    /// `config.json`'s hooks (startContainer, poststart and poststop run later).
    #[serde(default)]
    pub(crate) hooks: Option<oci_spec::runtime::Hooks>,
}

/// One container's directory under the root.
#[derive(Debug)]
pub(crate) struct ContainerDir {
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
}

impl ContainerDir {
    /// The directory of `id` (not checked). Ids are one path component of safe characters.
    pub(crate) fn new(root: &Path, id: &str) -> Result<ContainerDir, Error> {
        let ok = !id.is_empty()
            && id != "."
            && id != ".."
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
        if !ok {
            return Err(Error::Usage(format!("invalid container id {id:?}")));
        }
        Ok(ContainerDir { id: id.to_owned(), dir: root.join(id) })
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub(crate) fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    /// The cgroup a `create` in progress places the container in, written before the spawn
    /// and removed when `create` is done (state, hooks, pid file): what is left of a
    /// `create` killed in between is found from it ([`ContainerDir::reap_partial`]).
    fn creating_file(&self) -> PathBuf {
        self.dir.join("creating.json")
    }

    /// Records the cgroup of a `create` about to spawn the container.
    pub(crate) fn begin_create(&self, cgroup: &CgroupSpec) -> Result<(), Error> {
        let path = self.creating_file();
        let text = serde_json::to_vec(cgroup).map_err(|source| Error::Json { path: path.clone(), source })?;
        std::fs::write(&path, text).sys("write", &path)
    }

    /// The `create` in progress is done: the container is no longer partial.
    pub(crate) fn end_create(&self) -> Result<(), Error> {
        let path = self.creating_file();
        std::fs::remove_file(&path).sys("unlink", &path)
    }

    /// Whether the directory is what a `create` killed midway left (checked under the id's
    /// lock, so no `create` is still running): its record of the cgroup is still there, or
    /// it never wrote one.
    pub(crate) fn is_partial(&self) -> bool {
        self.creating_file().exists() || (self.dir.exists() && !self.state_file().exists())
    }

    /// Tears down what a killed `create` left ([`ContainerDir::is_partial`]): every
    /// process of the cgroup it recorded (the container's process waiting at the fifo),
    /// the cgroup, then the directory.
    pub(crate) fn reap_partial(&self) -> Result<(), Error> {
        let path = self.creating_file();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let spec: CgroupSpec =
                    serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
                match nook_cgroup::Cgroup::open(&spec) {
                    Ok(cg) => {
                        cg.kill_all().map_err(nook_sandbox::Error::from)?;
                        cg.remove().map_err(nook_sandbox::Error::from)?;
                    }
                    // Not made yet (or gone).
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(nook_sandbox::Error::from(e).into()),
                }
            }
            // Killed before it recorded anything: nothing was spawned.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).sys("read", path),
        }
        crate::log::debug(&format!("removed what a killed create of {} left", self.id));
        self.remove()
    }

    /// Loads the stored state; [`Error::NotFound`] without one.
    pub(crate) fn load(&self) -> Result<Stored, Error> {
        let path = self.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(self.id.clone())),
            Err(e) => return Err(e).sys("read", path),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })
    }

    /// Writes the state (to a temporary file renamed over the old one).
    pub(crate) fn save(&self, stored: &Stored) -> Result<(), Error> {
        let path = self.state_file();
        let tmp = self.dir.join("state.json.tmp");
        let text = serde_json::to_vec(stored).map_err(|source| Error::Json { path: path.clone(), source })?;
        std::fs::write(&tmp, text).sys("write", &tmp)?;
        std::fs::rename(&tmp, &path).sys("rename", &path)
    }

    /// Removes the directory and everything in it.
    pub(crate) fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).sys("remove_dir_all", &self.dir),
            _ => Ok(()),
        }
    }
}

/// A loaded container: its stored state and its reopened sandbox.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) dir: ContainerDir,
    pub(crate) stored: Stored,
    pub(crate) sandbox: Detached,
}

impl Container {
    pub(crate) fn load(root: &Path, id: &str) -> Result<Container, Error> {
        let dir = ContainerDir::new(root, id)?;
        let stored = dir.load()?;
        let sandbox = Detached::open(stored.record.clone())?;
        Ok(Container { dir, stored, sandbox })
    }

    /// creating / created / running / paused / stopped (see the crate docs): creating while
    /// `create` has not finished (its hooks run with it; or it was killed), paused when the
    /// kernel reports its cgroup frozen, whatever it was before (as runc).
    pub(crate) fn status(&self) -> Result<Status, Error> {
        if !self.sandbox.is_running()? {
            Ok(Status::Stopped)
        } else if self.dir.creating_file().exists() {
            Ok(Status::Creating)
        } else if self.is_frozen() {
            Ok(Status::Paused)
        } else if self.dir.fifo().exists() {
            Ok(Status::Created)
        } else {
            Ok(Status::Running)
        }
    }

    /// Whether its cgroup is frozen (`pause`); a cgroup that cannot be read is not.
    fn is_frozen(&self) -> bool {
        self.sandbox.cgroup().ok().and_then(|cg| cg.is_frozen().ok()).unwrap_or(false)
    }

    /// runc's `state` JSON.
    pub(crate) fn state_json(&self) -> Result<String, Error> {
        let status = self.status()?;
        let mut oci = self.stored.oci.clone();
        let pid = if status == Status::Stopped { 0 } else { self.stored.record.pid as i32 };
        oci.set_pid(Some(pid));
        let path = self.dir.state_file();
        let json = |source| Error::Json { path: path.clone(), source };
        let mut v = serde_json::to_value(&oci).map_err(json)?;
        if let Some(m) = v.as_object_mut() {
            // runc's statuses include "paused", which oci-spec's enum lacks.
            m.insert("status".into(), status.to_string().into());
            m.insert("rootfs".into(), self.stored.rootfs.display().to_string().into());
            m.insert("created".into(), self.stored.created.clone().into());
            m.insert("owner".into(), self.stored.owner.clone().into());
        }
        serde_json::to_string_pretty(&v).map_err(json)
    }
}

/// The OCI state written at `create`.
pub(crate) fn new_state(id: &str, pid: u32, bundle: &Path, annotations: Option<HashMap<String, String>>) -> State {
    let mut s = State::default();
    s.set_version(oci_spec::runtime::VERSION.to_owned());
    s.set_id(id.to_owned());
    s.set_status(ContainerState::Created);
    s.set_pid(Some(pid as i32));
    s.set_bundle(bundle.to_owned());
    s.set_annotations(annotations);
    s
}

/// Now as RFC 3339 in UTC with nanoseconds (`2026-12-05T19:11:36.123456789Z`).
pub(crate) fn rfc3339_now() -> String {
    nook_ns::statefile::rfc3339(std::time::SystemTime::now(), true)
}
