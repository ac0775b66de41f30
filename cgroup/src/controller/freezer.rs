//! The `freezer` controller: joined on v1 (`Resources::freezer`), part of the core on v2
//! (`cgroup.freeze`); [`Cgroup::freeze`] and [`Cgroup::thaw`] use whichever the cgroup has.

use std::time::{Duration, Instant};

use super::{Controller, Join};
use crate::cgroup::{Cgroup, Dir, wait_until};
use crate::error::{Error, Result};
use crate::hierarchy::Version;

/// `Resources::freezer`: join the v1 freezer hierarchy (v2 needs nothing).
pub(crate) static PART: Join = Join(Controller::Freezer);

impl Cgroup {
    /// Freezes every process in the cgroup and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws a frozen cgroup.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    /// Whether the kernel reports the cgroup frozen (by the freezer [`Cgroup::freeze`] uses:
    /// v1 `freezer.state` is `FROZEN`, or v2 `cgroup.events` says `frozen 1`).
    pub fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            (dir, Version::V2) => v2_frozen(dir, true),
            (dir, Version::V1) => Ok(dir.read("freezer.state")?.trim() == "FROZEN"),
        }
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        match self.freezer()? {
            (dir, Version::V2) => {
                dir.write("cgroup.freeze", if frozen { "1" } else { "0" })?;
                wait_until(deadline, "cgroup.events frozen", || v2_frozen(dir, frozen))
            }
            (dir, Version::V1) => {
                let state = if frozen { "FROZEN" } else { "THAWED" };
                wait_until(deadline, "freezer.state", || v1_step(dir, state))
            }
        }
    }

    /// The freezer in use: the v1 freezer directory if the cgroup has one, else v2's
    /// `cgroup.freeze`.
    pub(crate) fn freezer(&self) -> Result<(&Dir, Version)> {
        if let Some(d) = self.entry_of(Controller::Freezer).filter(|d| d.version == Version::V1) {
            return Ok((d, Version::V1));
        }
        self.v2_entry().map(|d| (d, Version::V2)).ok_or_else(|| Error::ControllerUnavailable {
            controller: Controller::Freezer,
            detail: "no v1 freezer directory (set `freezer` in the spec) and no cgroup2 hierarchy".to_owned(),
        })
    }
}

/// Writes the v1 state and reads it back: `true` once the kernel reports `state`.
fn v1_step(dir: &Dir, state: &str) -> Result<bool> {
    dir.write("freezer.state", state)?;
    Ok(dir.read("freezer.state")?.trim() == state)
}

/// Whether v2 `cgroup.events` reports `frozen` as wanted.
fn v2_frozen(dir: &Dir, frozen: bool) -> Result<bool> {
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    Ok(dir.read("cgroup.events")?.lines().any(|l| l == want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn v1_state_is_written_and_read_back() {
        let f = Fixture::new(Version::V1, &[("freezer.state", "THAWED\n")]);
        assert!(v1_step(&f.dir, "FROZEN").unwrap(), "a plain file reads back at once");
        assert_eq!(f.read("freezer.state").trim(), "FROZEN");
    }

    #[test]
    fn v2_events_tell_when_frozen() {
        let f = Fixture::new(Version::V2, &[("cgroup.events", "populated 1\nfrozen 0\n")]);
        assert!(!v2_frozen(&f.dir, true).unwrap());
        assert!(v2_frozen(&f.dir, false).unwrap());
    }
}
