//! Memory use (`memory.current` / `memory.usage_in_bytes`, `memory.stat`) and the OOM
//! counters of [`Stats`](super::Stats).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::{At, need, read_flat, read_number, read_u64};
use crate::error::Result;
use crate::hierarchy::Version;

/// Memory use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes in use (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    pub current: u64,
    /// Highest use recorded (v2 `memory.peak`, Linux 5.19+; v1 `memory.max_usage_in_bytes`).
    pub peak: Option<u64>,
    /// The hard limit; `None` = unlimited (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    pub limit: Option<u64>,
    /// Swap in use (v2 `memory.swap.current`; v1 memsw usage minus memory usage), where
    /// swap accounting exists.
    pub swap_current: Option<u64>,
    /// `memory.stat`, key by key (the keys differ between v1 and v2).
    pub stat: BTreeMap<String, u64>,
}

/// Out-of-memory counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomStats {
    /// Times the cgroup hit its limit and the OOM killer was invoked (v2 `memory.events`
    /// `oom`; v1 has no such counter).
    pub oom: Option<u64>,
    /// Processes killed by the OOM killer (`oom_kill` of v2 `memory.events`, v1
    /// `memory.oom_control`).
    pub oom_kill: u64,
    /// Times usage was about to exceed `memory.max` (v2 `memory.events` `max`).
    pub max: Option<u64>,
    /// Times usage exceeded `memory.high` (v2 `memory.events` `high`).
    pub high: Option<u64>,
    /// Whether the cgroup is under OOM right now (v1 `memory.oom_control` `under_oom`).
    pub under_oom: Option<bool>,
    /// Times usage hit the limit (v1 `memory.failcnt`).
    pub failcnt: Option<u64>,
}

/// v1 `memory.limit_in_bytes` shows "unlimited" as the page counter's maximum (about
/// `i64::MAX`, rounded down to a page): anything this large is no limit.
const V1_UNLIMITED: u64 = i64::MAX as u64 / 2;

fn v1_limit(bytes: u64) -> Option<u64> {
    (bytes < V1_UNLIMITED).then_some(bytes)
}

pub(super) fn memory_stats(dir: At<'_>, version: Version) -> Result<Option<MemoryStats>> {
    let number = |file: &str| read_u64(&dir.join(file));
    let stats = match version {
        Version::V2 => {
            let Some(current) = number("memory.current")? else {
                return Ok(None);
            };
            MemoryStats {
                current,
                peak: number("memory.peak")?,
                limit: read_number(&dir.join("memory.max"))?.flatten(),
                swap_current: number("memory.swap.current")?,
                stat: read_flat(&dir.join("memory.stat"))?.unwrap_or_default(),
            }
        }
        Version::V1 => {
            let Some(current) = number("memory.usage_in_bytes")? else {
                return Ok(None);
            };
            MemoryStats {
                current,
                peak: number("memory.max_usage_in_bytes")?,
                limit: number("memory.limit_in_bytes")?.and_then(v1_limit),
                swap_current: number("memory.memsw.usage_in_bytes")?.map(|memsw| memsw.saturating_sub(current)),
                stat: read_flat(&dir.join("memory.stat"))?.unwrap_or_default(),
            }
        }
    };
    Ok(Some(stats))
}

pub(super) fn oom_stats(dir: At<'_>, version: Version) -> Result<Option<OomStats>> {
    match version {
        Version::V2 => {
            let path = dir.join("memory.events");
            let Some(ev) = read_flat(&path)? else {
                return Ok(None);
            };
            Ok(Some(OomStats {
                oom: Some(need(&ev, "oom", &path)?),
                oom_kill: need(&ev, "oom_kill", &path)?,
                max: ev.get("max").copied(),
                high: ev.get("high").copied(),
                under_oom: None,
                failcnt: None,
            }))
        }
        Version::V1 => {
            let path = dir.join("memory.oom_control");
            let Some(ctl) = read_flat(&path)? else {
                return Ok(None);
            };
            // Kernels before 4.13 do not count kills: no section rather than a made-up 0.
            let Some(&oom_kill) = ctl.get("oom_kill") else {
                return Ok(None);
            };
            let failcnt = dir.join("memory.failcnt");
            Ok(Some(OomStats {
                oom: None,
                oom_kill,
                max: None,
                high: None,
                under_oom: ctl.get("under_oom").map(|u| *u != 0),
                failcnt: read_number(&failcnt)?.flatten(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_unlimited_is_no_limit() {
        assert_eq!(v1_limit(9223372036854771712), None, "v1 'unlimited' with 4 KiB pages");
        assert_eq!(v1_limit(9223372036854710272), None, "v1 'unlimited' with 64 KiB pages");
        assert_eq!(v1_limit(32 << 20), Some(32 << 20));
    }
}
