//! The `pids` controller: the task limit (`pids.max`) and count (`pids.current`).

use serde::{Deserialize, Serialize};

use super::{Controller, Part, range};
use crate::cgroup::Dir;
use crate::error::{Result, ValidationError};
use crate::hierarchy::Version;
use crate::stats::read::{At, read_number, read_u64};

/// Process count limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pids {
    /// Maximum number of tasks; `None` = unlimited.
    pub max: Option<u64>,
}

impl Pids {
    /// No limit (`pids.max` = `max`).
    pub fn new() -> Self {
        Pids::default()
    }

    /// Sets `max`: at most `value` tasks (leave `max` `None` for no limit).
    pub fn max(&mut self, value: u64) -> &mut Self {
        self.max = Some(value);
        self
    }
}

impl Part for Pids {
    fn controller(&self) -> Controller {
        Controller::Pids
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self.max {
            Some(max) => range("pids.max", max, 1, i64::MAX as u64, ">= 1"),
            None => Ok(()),
        }
    }

    /// Same file on v1 and v2.
    fn write(&self, dir: &Dir, _version: Version) -> Result<()> {
        dir.write("pids.max", &self.max.map_or_else(|| "max".to_owned(), |m| m.to_string()))
    }
}

/// Task count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks (threads included) in the cgroup and below (`pids.current`).
    pub current: u64,
    /// The limit; `None` = unlimited (`pids.max`).
    pub max: Option<u64>,
}

/// The pids section of [`crate::Stats`].
pub(crate) fn stats(dir: At<'_>) -> Result<Option<PidsStats>> {
    let Some(current) = read_u64(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    Ok(Some(PidsStats { current, max: read_number(&dir.join("pids.max"))?.flatten() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn limit_is_checked_written_and_read_back() {
        assert!(matches!(
            Pids { max: Some(0) }.validate(),
            Err(ValidationError::OutOfRange { field: "pids.max", value: 0, .. })
        ));
        let f = Fixture::new(Version::V2, &[("pids.max", ""), ("pids.current", "3\n")]);
        Pids { max: Some(20) }.write(&f.dir, Version::V2).unwrap();
        assert_eq!(f.read("pids.max"), "20");
        assert_eq!(stats(At::of(&f.dir)).unwrap(), Some(PidsStats { current: 3, max: Some(20) }));
        Pids { max: None }.write(&f.dir, Version::V2).unwrap();
        assert_eq!(stats(At::of(&f.dir)).unwrap(), Some(PidsStats { current: 3, max: None }));
        let f = Fixture::new(Version::V2, &[("pids.current", "x\n")]);
        assert!(matches!(stats(At::of(&f.dir)), Err(crate::Error::Parse { .. })));
    }
}
