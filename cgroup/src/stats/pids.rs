//! Task count and limit (`pids.current`, `pids.max`).

use serde::{Deserialize, Serialize};

use super::read::{At, read_number, read_u64};
use crate::error::Result;

/// Task count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks (threads included) in the cgroup and below (`pids.current`).
    pub current: u64,
    /// The limit; `None` = unlimited (`pids.max`).
    pub max: Option<u64>,
}

pub(super) fn pids_stats(dir: At<'_>) -> Result<Option<PidsStats>> {
    let Some(current) = read_u64(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    Ok(Some(PidsStats { current, max: read_number(&dir.join("pids.max"))?.flatten() }))
}
