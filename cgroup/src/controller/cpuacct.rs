//! The `cpuacct` controller (v1 only; on v2 the core's `cpu.stat` counts usage): joined,
//! not configured, and the v1 source of [`crate::CpuUsage`].

use super::{Controller, Join};
use crate::controller::cpu::CpuUsage;
use crate::error::Result;
use crate::stats::read::{At, read_flat, read_u64};
use crate::sys;

/// `Resources::cpuacct`: join the cpuacct hierarchy.
pub(crate) static PART: Join = Join(Controller::Cpuacct);

/// Usage from v1 `cpuacct.usage` (ns) and `cpuacct.stat` (clock ticks).
pub(crate) fn usage(dir: At<'_>) -> Result<Option<CpuUsage>> {
    let Some(ns) = read_u64(&dir.join("cpuacct.usage"))? else {
        return Ok(None);
    };
    let hz = sys::clock_ticks_per_second();
    let stat = read_flat(&dir.join("cpuacct.stat"))?.unwrap_or_default();
    let ticks = |k: &str| stat.get(k).map(|t| t.saturating_mul(1_000_000) / hz);
    Ok(Some(CpuUsage { usage_usec: ns / 1000, user_usec: ticks("user"), system_usec: ticks("system") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;
    use crate::hierarchy::Version;

    #[test]
    fn usage_reads_fixture_cpuacct_files() {
        let hz = sys::clock_ticks_per_second();
        let stat = format!("user {hz}\nsystem {}\n", 2 * hz);
        let f = Fixture::new(Version::V1, &[("cpuacct.usage", "3000000\n"), ("cpuacct.stat", &stat)]);
        let u = usage(At::of(&f.dir)).unwrap().unwrap();
        assert_eq!(u, CpuUsage { usage_usec: 3000, user_usec: Some(1_000_000), system_usec: Some(2_000_000) });
        assert_eq!(usage(At::of(&Fixture::new(Version::V1, &[]).dir)).unwrap(), None, "no cpuacct directory");
    }
}
