//! The `memory` controller: limits (v2 `memory.{min,low,high,max,swap.max}`, v1
//! `memory.{soft_,memsw.,}limit_in_bytes`), memory use (`memory.current` /
//! `memory.usage_in_bytes`, `memory.stat`) and the OOM counters of [`crate::Stats`]. The
//! OOM *watcher* is `stats/oom.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Controller, Part, range, unsupported};
use crate::cgroup::Dir;
use crate::error::{Error, Result, ValidationError};
use crate::hierarchy::Version;
use crate::stats::read::{At, need, read_flat, read_number, read_u64};

/// The smallest memory value accepted: one page.
pub const PAGE_SIZE: u64 = 4096;

/// Memory limits in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Memory {
    /// Hard limit (v2 `memory.max`, v1 `memory.limit_in_bytes`): OOM-kill above it.
    pub max: Option<u64>,
    /// Throttle/reclaim above (v2 `memory.high`, v1 `memory.soft_limit_in_bytes`).
    pub high: Option<u64>,
    /// Best-effort protection (v2 `memory.low`; v2 only).
    pub low: Option<u64>,
    /// Hard protection (v2 `memory.min`; v2 only).
    pub min: Option<u64>,
    /// Swap allowed on top of `max` (v2 `memory.swap.max`; v1 `memsw` = max + swap).
    pub swap: Option<u64>,
}

impl Memory {
    /// No setting yet (the kernel's defaults); set the fields with the setters.
    pub fn new() -> Self {
        Memory::default()
    }

    /// Sets `max`: the hard limit, bytes.
    pub fn max(&mut self, value: u64) -> &mut Self {
        self.max = Some(value);
        self
    }

    /// Sets `high`: the throttle limit, bytes.
    pub fn high(&mut self, value: u64) -> &mut Self {
        self.high = Some(value);
        self
    }

    /// Sets `low`: best-effort protection, bytes (v2 only).
    pub fn low(&mut self, value: u64) -> &mut Self {
        self.low = Some(value);
        self
    }

    /// Sets `min`: hard protection, bytes (v2 only).
    pub fn min(&mut self, value: u64) -> &mut Self {
        self.min = Some(value);
        self
    }

    /// Sets `swap`: swap allowed on top of `max`, bytes.
    pub fn swap(&mut self, value: u64) -> &mut Self {
        self.swap = Some(value);
        self
    }
}

impl Part for Memory {
    fn controller(&self) -> Controller {
        Controller::Memory
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (field, v) in
            [("memory.max", self.max), ("memory.high", self.high), ("memory.low", self.low), ("memory.min", self.min)]
        {
            if let Some(v) = v {
                range(field, v, PAGE_SIZE, u64::MAX / 2, ">= one page (4096 bytes)")?;
            }
        }
        if let Some(v) = self.swap {
            range("memory.swap", v, 0, u64::MAX / 4, "a byte count")?;
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        match version {
            Version::V1 => {
                if self.low.is_some() {
                    return Err(unsupported(Controller::Memory, "memory.low", version));
                }
                if self.min.is_some() {
                    return Err(unsupported(Controller::Memory, "memory.min", version));
                }
                if let Some(high) = self.high {
                    dir.write("memory.soft_limit_in_bytes", &high.to_string())?;
                }
                match (self.max, self.swap) {
                    (Some(max), Some(swap)) => {
                        // memsw must stay >= limit: order the writes by whether it grows.
                        let memsw = "memory.memsw.limit_in_bytes";
                        let limit = "memory.limit_in_bytes";
                        let total = (max + swap).to_string();
                        match dir.write(limit, &max.to_string()) {
                            Ok(()) => dir.write(memsw, &total)?,
                            // The kernel's answer when the limit would rise above memsw: memsw
                            // first. Any other failure is the caller's to see, not masked by
                            // a retry in the other order.
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                                dir.write(memsw, &total)?;
                                dir.write(limit, &max.to_string())?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (Some(max), None) => dir.write("memory.limit_in_bytes", &max.to_string())?,
                    (None, Some(_)) => {
                        return Err(Error::Invalid(ValidationError::Malformed {
                            field: "memory.swap",
                            value: "swap without max".to_owned(),
                            reason: "on cgroup v1 swap is limited as memory+swap, which needs `max`".to_owned(),
                        }));
                    }
                    (None, None) => {}
                }
            }
            Version::V2 => {
                for (file, value) in [
                    ("memory.min", self.min),
                    ("memory.low", self.low),
                    ("memory.high", self.high),
                    ("memory.max", self.max),
                ] {
                    if let Some(value) = value {
                        dir.write(file, &value.to_string())?;
                    }
                }
                if let Some(swap) = self.swap {
                    dir.write("memory.swap.max", &swap.to_string())?;
                }
            }
        }
        Ok(())
    }
}

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

pub(crate) fn stats(dir: At<'_>, version: Version) -> Result<Option<MemoryStats>> {
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

pub(crate) fn oom_stats(dir: At<'_>, version: Version) -> Result<Option<OomStats>> {
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
    use crate::controller::fixture::Fixture;

    const MIB: u64 = 1 << 20;

    #[test]
    fn values_below_a_page_are_refused() {
        let m = Memory { max: Some(4095), ..Memory::default() };
        assert!(matches!(m.validate(), Err(ValidationError::OutOfRange { field: "memory.max", value: 4095, .. })));
        let m = Memory { min: Some(1), ..Memory::default() };
        assert!(matches!(m.validate(), Err(ValidationError::OutOfRange { field: "memory.min", .. })));
        assert_eq!(Memory { max: Some(PAGE_SIZE), swap: Some(0), ..Memory::default() }.validate(), Ok(()));
    }

    #[test]
    fn v2_writes_every_limit() {
        let files = ["memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max"].map(|f| (f, ""));
        let f = Fixture::new(Version::V2, &files);
        let m =
            Memory { max: Some(64 * MIB), high: Some(48 * MIB), low: Some(8 * MIB), min: Some(4 * MIB), swap: Some(0) };
        m.write(&f.dir, Version::V2).unwrap();
        assert_eq!(f.read("memory.max"), (64 * MIB).to_string());
        assert_eq!(f.read("memory.high"), (48 * MIB).to_string());
        assert_eq!(f.read("memory.low"), (8 * MIB).to_string());
        assert_eq!(f.read("memory.min"), (4 * MIB).to_string());
        assert_eq!(f.read("memory.swap.max"), "0", "swap.max is swap alone, not memory + swap");
    }

    #[test]
    fn v1_writes_limits_and_memsw_and_refuses_v2_only_settings() {
        let files =
            ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes"].map(|f| (f, ""));
        let f = Fixture::new(Version::V1, &files);
        let m = Memory { max: Some(64 * MIB), swap: Some(16 * MIB), high: Some(32 * MIB), ..Memory::default() };
        m.write(&f.dir, Version::V1).unwrap();
        assert_eq!(f.read("memory.limit_in_bytes"), (64 * MIB).to_string());
        assert_eq!(f.read("memory.memsw.limit_in_bytes"), (80 * MIB).to_string(), "memsw = max + swap");
        assert_eq!(f.read("memory.soft_limit_in_bytes"), (32 * MIB).to_string());
        let low = Memory { low: Some(8 * MIB), ..Memory::default() }.write(&f.dir, Version::V1).unwrap_err();
        assert!(matches!(low, Error::ControllerUnavailable { controller: Controller::Memory, .. }), "{low:?}");
        let swap = Memory { swap: Some(MIB), ..Memory::default() }.write(&f.dir, Version::V1).unwrap_err();
        assert!(matches!(swap, Error::Invalid(ValidationError::Malformed { field: "memory.swap", .. })), "{swap:?}");
    }

    #[test]
    fn stats_read_fixture_files_of_both_versions() {
        let f = Fixture::new(
            Version::V2,
            &[
                ("memory.current", "4096\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 4096\nfile 0\n"),
                ("memory.events", "low 0\nhigh 2\nmax 3\noom 1\noom_kill 1\n"),
            ],
        );
        let m = stats(At::of(&f.dir), Version::V2).unwrap().unwrap();
        assert_eq!((m.current, m.peak, m.limit, m.swap_current), (4096, None, None, None));
        assert_eq!(m.stat["anon"], 4096);
        let o = oom_stats(At::of(&f.dir), Version::V2).unwrap().unwrap();
        assert_eq!((o.oom, o.oom_kill, o.max, o.high), (Some(1), 1, Some(3), Some(2)));
        let f = Fixture::new(
            Version::V1,
            &[
                ("memory.usage_in_bytes", "8192\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.usage_in_bytes", "12288\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 1\noom_kill 2\n"),
                ("memory.failcnt", "7\n"),
            ],
        );
        let m = stats(At::of(&f.dir), Version::V1).unwrap().unwrap();
        assert_eq!((m.current, m.limit, m.swap_current), (8192, None, Some(4096)));
        let o = oom_stats(At::of(&f.dir), Version::V1).unwrap().unwrap();
        assert_eq!((o.oom, o.oom_kill, o.under_oom, o.failcnt), (None, 2, Some(true), Some(7)));
        assert_eq!(stats(At::of(&Fixture::new(Version::V2, &[]).dir), Version::V2).unwrap(), None);
    }

    #[test]
    fn v1_unlimited_is_no_limit() {
        assert_eq!(v1_limit(9223372036854771712), None, "v1 'unlimited' with 4 KiB pages");
        assert_eq!(v1_limit(9223372036854710272), None, "v1 'unlimited' with 64 KiB pages");
        assert_eq!(v1_limit(32 << 20), Some(32 << 20));
    }
}
