//! The `cpu` controller: weight (v1 shares) and CFS bandwidth, and the CPU section of
//! [`crate::Stats`] (usage — from `cpuacct` on v1, see `cpuacct.rs` — and throttling).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Controller, Part, cpuacct, range};
use crate::cgroup::{Cgroup, Dir};
use crate::error::{Result, ValidationError};
use crate::hierarchy::Version;
use crate::stats::parse::parse_flat;
use crate::stats::read::{At, need, read_flat, read_opt};

/// CPU weight and bandwidth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Cpu {
    /// v2 weight, 1–10000 (100 is the default). Converted to shares on v1.
    pub weight: Option<u64>,
    /// v1 shares, 2–262144 (1024 is the default). Converted to a weight on v2.
    pub shares: Option<u64>,
    /// Bandwidth quota per period in µs (≥ 1000). `None` = unlimited.
    pub quota_us: Option<u64>,
    /// Bandwidth period in µs, 1000–1000000 (default 100000).
    pub period_us: Option<u64>,
}

impl Cpu {
    /// No setting yet (the kernel's defaults); set the fields with the setters.
    pub fn new() -> Self {
        Cpu::default()
    }

    /// Sets `weight`: the v2 weight, 1–10000.
    pub fn weight(&mut self, value: u64) -> &mut Self {
        self.weight = Some(value);
        self
    }

    /// Sets `shares`: the v1 shares, 2–262144.
    pub fn shares(&mut self, value: u64) -> &mut Self {
        self.shares = Some(value);
        self
    }

    /// Sets `quota_us`: the bandwidth quota per period, µs.
    pub fn quota_us(&mut self, value: u64) -> &mut Self {
        self.quota_us = Some(value);
        self
    }

    /// Sets `period_us`: the bandwidth period, µs.
    pub fn period_us(&mut self, value: u64) -> &mut Self {
        self.period_us = Some(value);
        self
    }
}

/// v1 shares → v2 weight (the formula runc and crun use).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// v2 weight → v1 shares (inverse of [`shares_to_weight`]).
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + ((weight.clamp(1, 10_000) - 1) * 262_142) / 9999
}

impl Part for Cpu {
    fn controller(&self) -> Controller {
        Controller::Cpu
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(w) = self.weight {
            range("cpu.weight", w, 1, 10_000, "1..=10000")?;
        }
        if let Some(s) = self.shares {
            range("cpu.shares", s, 2, 262_144, "2..=262144")?;
        }
        if let Some(q) = self.quota_us {
            range("cpu.quota_us", q, 1_000, u64::MAX / 2, ">= 1000 µs (1 ms)")?;
        }
        if let Some(p) = self.period_us {
            range("cpu.period_us", p, 1_000, 1_000_000, "1000..=1000000 µs")?;
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        match version {
            Version::V1 => {
                if let Some(shares) = self.shares.or(self.weight.map(weight_to_shares)) {
                    dir.write("cpu.shares", &shares.to_string())?;
                }
                if let Some(period) = self.period_us {
                    dir.write("cpu.cfs_period_us", &period.to_string())?;
                }
                if self.quota_us.is_some() || self.period_us.is_some() {
                    let quota = self.quota_us.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                    dir.write("cpu.cfs_quota_us", &quota)?;
                }
            }
            Version::V2 => {
                if let Some(weight) = self.weight.or(self.shares.map(shares_to_weight)) {
                    dir.write("cpu.weight", &weight.to_string())?;
                }
                if self.quota_us.is_some() || self.period_us.is_some() {
                    let quota = self.quota_us.map_or_else(|| "max".to_owned(), |q| q.to_string());
                    let period = self.period_us.unwrap_or(100_000);
                    dir.write("cpu.max", &format!("{quota} {period}"))?;
                }
            }
        }
        Ok(())
    }
}

/// CPU accounting and throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Time used: v1 `cpuacct` (or, on hybrid hosts without a cpuacct directory, the v2
    /// directory's `cpu.stat`, which the kernel always keeps); v2 `cpu.stat`.
    pub usage: Option<CpuUsage>,
    /// Bandwidth throttling (v1 `cpu.stat`, v2 `cpu.stat` with the cpu controller enabled).
    pub throttling: Option<CpuThrottling>,
}

/// CPU time used by the cgroup's tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total, µs (v1 `cpuacct.usage` in ns / 1000; v2 `usage_usec`).
    pub usage_usec: u64,
    /// In user mode, µs (v1 `cpuacct.stat` ticks; v2 `user_usec`).
    pub user_usec: Option<u64>,
    /// In kernel mode, µs (v1 `cpuacct.stat` ticks; v2 `system_usec`).
    pub system_usec: Option<u64>,
}

/// CFS bandwidth throttling counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuThrottling {
    /// Enforcement periods that have elapsed.
    pub nr_periods: u64,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: u64,
    /// Total time throttled, µs (v1 `throttled_time` in ns / 1000).
    pub throttled_usec: u64,
}

/// The CPU section of [`crate::Stats`].
impl Cgroup {
    /// Only the CPU time used (the `usage` of [`Cgroup::stats`]'s cpu section), without
    /// reading the other stat files.
    pub fn cpu_usage(&self) -> Result<Option<CpuUsage>> {
        match self.entry_of(Controller::Cpuacct) {
            Some(d) if d.version == Version::V1 => cpuacct::usage(At::of(d)),
            Some(d) => v2_usage(At::of(d)),
            // Hybrid without a cpuacct directory: the v2 core keeps usage for every cgroup.
            None => match self.v2_entry() {
                Some(d) => v2_usage(At::of(d)),
                None => Ok(None),
            },
        }
    }
}

pub(crate) fn stats(cg: &Cgroup) -> Result<Option<CpuStats>> {
    let usage = cg.cpu_usage()?;
    let throttling = match cg.entry_of(Controller::Cpu) {
        Some(d) => match read_opt(&At::of(d).join("cpu.stat"))? {
            Some(text) => throttling(&parse_flat(&text)),
            None => None,
        },
        None => None,
    };
    Ok((usage.is_some() || throttling.is_some()).then_some(CpuStats { usage, throttling }))
}

/// Usage from a v2 `cpu.stat` (there with or without the cpu controller).
fn v2_usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
    let path = dir.join("cpu.stat");
    let Some(stat) = read_flat(&path)? else {
        return Ok(None);
    };
    Ok(Some(CpuUsage {
        usage_usec: need(&stat, "usage_usec", &path)?,
        user_usec: stat.get("user_usec").copied(),
        system_usec: stat.get("system_usec").copied(),
    }))
}

/// Throttling from a v1 or v2 `cpu.stat`; `None` without the bandwidth keys (v2 without
/// the cpu controller).
fn throttling(stat: &BTreeMap<String, u64>) -> Option<CpuThrottling> {
    let throttled_usec = match (stat.get("throttled_usec"), stat.get("throttled_time")) {
        (Some(us), _) => *us,
        (None, Some(ns)) => ns / 1000,
        (None, None) => return None,
    };
    Some(CpuThrottling {
        nr_periods: *stat.get("nr_periods")?,
        nr_throttled: *stat.get("nr_throttled")?,
        throttled_usec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn ranges_name_field_and_value() {
        let cpu = |c: Cpu| c.validate();
        assert_eq!(
            cpu(Cpu { weight: Some(0), ..Cpu::default() }),
            Err(ValidationError::OutOfRange { field: "cpu.weight", value: 0, range: "1..=10000" })
        );
        assert!(matches!(
            cpu(Cpu { shares: Some(1), ..Cpu::default() }),
            Err(ValidationError::OutOfRange { field: "cpu.shares", value: 1, .. })
        ));
        assert!(matches!(
            cpu(Cpu { quota_us: Some(999), ..Cpu::default() }),
            Err(ValidationError::OutOfRange { field: "cpu.quota_us", .. })
        ));
        assert!(matches!(
            cpu(Cpu { period_us: Some(2_000_000), ..Cpu::default() }),
            Err(ValidationError::OutOfRange { field: "cpu.period_us", .. })
        ));
        assert_eq!(cpu(Cpu { weight: Some(100), quota_us: Some(50_000), ..Cpu::default() }), Ok(()));
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }

    #[test]
    fn v1_writes_shares_period_and_quota() {
        let f = Fixture::new(Version::V1, &[("cpu.shares", ""), ("cpu.cfs_period_us", ""), ("cpu.cfs_quota_us", "")]);
        let cpu = Cpu { weight: Some(10_000), period_us: Some(50_000), ..Cpu::default() };
        cpu.write(&f.dir, Version::V1).unwrap();
        assert_eq!(f.read("cpu.shares"), "262144", "the weight converted to shares");
        assert_eq!(f.read("cpu.cfs_period_us"), "50000");
        assert_eq!(f.read("cpu.cfs_quota_us"), "-1", "a period alone: unlimited quota");
    }

    #[test]
    fn v2_writes_weight_and_max() {
        let f = Fixture::new(Version::V2, &[("cpu.weight", ""), ("cpu.max", "")]);
        let cpu = Cpu { shares: Some(1024), quota_us: Some(20_000), ..Cpu::default() };
        cpu.write(&f.dir, Version::V2).unwrap();
        assert_eq!(f.read("cpu.weight"), "39", "the shares converted to a weight");
        assert_eq!(f.read("cpu.max"), "20000 100000", "the default period");
        // A file the kernel does not have (no cpu controller) is the write's error, with
        // the value.
        let f = Fixture::new(Version::V2, &[]);
        let err = Cpu { weight: Some(5), ..Cpu::default() }.write(&f.dir, Version::V2).unwrap_err();
        assert!(
            matches!(&err, crate::Error::Write { value, .. } if value == "5")
                && err.raw_os_error() == Some(libc::ENOENT),
            "{err:?}"
        );
    }

    #[test]
    fn throttling_parses_v1_and_v2_cpu_stat() {
        let v1 = "nr_periods 12\nnr_throttled 5\nthrottled_time 7000000\nnr_bursts 0\nburst_time 0\n";
        let m = parse_flat(v1);
        assert_eq!(m["nr_periods"], 12);
        assert_eq!(
            throttling(&m),
            Some(CpuThrottling { nr_periods: 12, nr_throttled: 5, throttled_usec: 7000 }),
            "v1 throttled_time is in ns"
        );
        let v2 = "usage_usec 500\nuser_usec 300\nsystem_usec 200\nnr_periods 3\nnr_throttled 1\nthrottled_usec 42\n";
        assert_eq!(throttling(&parse_flat(v2)).unwrap().throttled_usec, 42);
        // v2 cpu.stat without the cpu controller has no bandwidth keys.
        assert_eq!(throttling(&parse_flat("usage_usec 1\nuser_usec 1\nsystem_usec 0\n")), None);
        let odd = parse_flat("a 1\nweird x\n\nb 2 3\nc 18446744073709551615\n");
        assert_eq!(odd.into_iter().collect::<Vec<_>>(), vec![("a".to_owned(), 1), ("c".to_owned(), u64::MAX)]);
    }

    #[test]
    fn v2_usage_reads_a_fixture_cpu_stat() {
        let f = Fixture::new(Version::V2, &[("cpu.stat", "usage_usec 500\nuser_usec 300\nsystem_usec 200\n")]);
        let usage = v2_usage(At::of(&f.dir)).unwrap().unwrap();
        assert_eq!(usage, CpuUsage { usage_usec: 500, user_usec: Some(300), system_usec: Some(200) });
        let f = Fixture::new(Version::V2, &[("cpu.stat", "user_usec 300\n")]);
        assert!(matches!(v2_usage(At::of(&f.dir)), Err(crate::Error::Parse { .. })), "usage_usec is required");
        assert_eq!(v2_usage(At::of(&Fixture::new(Version::V2, &[]).dir)).unwrap(), None, "absent file");
    }
}
