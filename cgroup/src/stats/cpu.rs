//! CPU time used (`cpuacct`, `cpu.stat`) and bandwidth throttling (`cpu.stat`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parse::parse_flat;
use super::read::{At, need, read_flat, read_opt, read_u64};
use crate::cgroup::Cgroup;
use crate::error::Result;
use crate::hierarchy::{Controller, Version};
use crate::sys;

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

impl Cgroup {
    pub(super) fn cpu_stats(&self) -> Result<Option<CpuStats>> {
        let usage = match self.entry_of(Controller::Cpuacct) {
            Some(d) if d.version == Version::V1 => v1_cpu_usage(At::of(d))?,
            Some(d) => v2_cpu_usage(At::of(d))?,
            // Hybrid without a cpuacct directory: the v2 core keeps usage for every cgroup.
            None => match self.v2_entry() {
                Some(d) => v2_cpu_usage(At::of(d))?,
                None => None,
            },
        };
        let throttling = match self.entry_of(Controller::Cpu) {
            Some(d) => {
                let path = At::of(d).join("cpu.stat");
                match read_opt(&path)? {
                    Some(text) => throttling(&parse_flat(&text)),
                    None => None,
                }
            }
            None => None,
        };
        Ok((usage.is_some() || throttling.is_some()).then_some(CpuStats { usage, throttling }))
    }
}

fn v1_cpu_usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
    let Some(ns) = read_u64(&dir.join("cpuacct.usage"))? else {
        return Ok(None);
    };
    let hz = sys::clock_ticks_per_second();
    let stat = read_flat(&dir.join("cpuacct.stat"))?.unwrap_or_default();
    let ticks = |k: &str| stat.get(k).map(|t| t.saturating_mul(1_000_000) / hz);
    Ok(Some(CpuUsage { usage_usec: ns / 1000, user_usec: ticks("user"), system_usec: ticks("system") }))
}

fn v2_cpu_usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
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

    #[test]
    fn flat_keyed_files_parse_and_skip_non_numbers() {
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
}
