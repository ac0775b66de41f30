//! [`CgroupSpec`]: pure data (serde) describing a cgroup and its limits, with validation
//! that runs before anything is written.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cpuset::CpuSet;
use crate::devices::DevicePolicy;
use crate::error::ValidationError;

/// The smallest memory value accepted: one page.
pub const PAGE_SIZE: u64 = 4096;

/// A cgroup to create: where, and with which limits.
///
/// ```
/// use nook_cgroup::{CgroupSpec, Memory, Pids};
///
/// let mut spec = CgroupSpec::new("nk-demo");
/// spec.resources.memory = Some(Memory { max: Some(64 << 20), ..Memory::default() });
/// spec.resources.pids = Some(Pids { max: Some(20) });
/// assert!(spec.validate().is_ok());
///
/// spec.resources.pids = Some(Pids { max: Some(0) });
/// assert!(spec.validate().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// The cgroup's name below its parent; may be a relative path (`a/b`) to nest. Plain
    /// components only (no `.`, `..` or empty one), at most 255 bytes each. For
    /// [`crate::Cgroup::create`] the cgroup must not exist yet ([`crate::Error::Exists`]);
    /// [`crate::Cgroup::open`] opens an existing one.
    pub name: String,
    /// The parent, as `/proc/self/cgroup` names cgroups (e.g. `/sandboxes`). Default: the
    /// caller's own cgroup in each hierarchy (delegation-friendly). Validated like `name`:
    /// absolute, plain components only (no `.`, `..` or empty component), no NUL or
    /// newline, at most 255 bytes a component and 4095 in all; and it must lie under what
    /// each hierarchy's mount shows. It is resolved beneath the hierarchy's mount point
    /// without following symlinks or crossing mounts.
    pub parent: Option<PathBuf>,
    /// v2 only: if the parent holds processes (which forbids enabling controllers for its
    /// children — the "no internal processes" rule), first move them into this sibling leaf
    /// cgroup (created if needed), as systemd-delegated services must. Default: don't, and
    /// fail with [`crate::Error::NoInternalProcesses`].
    pub leaf_for_parent_processes: Option<String>,
    /// The limits.
    pub resources: Resources,
}

/// Limits per controller. `None` / `false` leaves a controller out (the cgroup is then not
/// created in that controller's v1 hierarchy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// cpu: weight/shares and bandwidth.
    pub cpu: Option<Cpu>,
    /// cpuacct: accounting only (always readable on v2).
    pub cpuacct: bool,
    /// cpuset: CPUs and memory nodes.
    pub cpuset: Option<Cpuset>,
    /// memory: limits.
    pub memory: Option<Memory>,
    /// devices: access rules.
    pub devices: Option<DevicePolicy>,
    /// freezer: be freezable (v1 freezer hierarchy; v2 always).
    pub freezer: bool,
    /// net_cls: the class id.
    pub net_cls: Option<NetCls>,
    /// blkio / io: weight and per-device throttles.
    pub blkio: Option<Blkio>,
    /// perf_event: join the perf_event hierarchy.
    pub perf_event: bool,
    /// net_prio: per-interface priorities.
    pub net_prio: Option<NetPrio>,
    /// hugetlb: per page-size limits.
    pub hugetlb: Vec<HugetlbLimit>,
    /// pids: process count limit.
    pub pids: Option<Pids>,
}

/// CPU weight and bandwidth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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

/// CPUs and memory nodes, in the kernel's list format (`0-3,7`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpuset {
    /// CPUs.
    pub cpus: Option<String>,
    /// Memory nodes.
    pub mems: Option<String>,
}

/// Memory limits in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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

/// Block I/O: weight and per-device limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blkio {
    /// Proportional weight: v2 `io.weight` 1–10000; v1 `blkio.weight` 10–1000 (converted).
    pub weight: Option<u64>,
    /// Per-device throttles.
    pub throttle: Vec<DeviceThrottle>,
}

/// Limits for one block device (`major:minor`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceThrottle {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Read bytes per second.
    pub read_bps: Option<u64>,
    /// Write bytes per second.
    pub write_bps: Option<u64>,
    /// Read operations per second.
    pub read_iops: Option<u64>,
    /// Write operations per second.
    pub write_iops: Option<u64>,
}

/// The net_cls class id (`0xAAAABBBB` = tc handle AAAA:BBBB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCls {
    /// The class id.
    pub classid: u32,
}

/// Per-interface priorities for net_prio.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPrio {
    /// `(interface, priority)` pairs.
    pub ifpriomap: Vec<(String, u32)>,
}

/// A hugetlb limit for one page size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbLimit {
    /// Page size as the cgroup files name it: `2MB`, `1GB`, `64KB`.
    pub page_size: String,
    /// Limit in bytes.
    pub limit: u64,
}

/// Process count limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    /// Maximum number of tasks; `None` = unlimited.
    pub max: Option<u64>,
}

/// Facts about the host that validation needs (read before anything is written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The parent's effective CPUs, if known.
    pub parent_cpus: Option<CpuSet>,
    /// The parent's effective memory nodes, if known.
    pub parent_mems: Option<CpuSet>,
    /// Huge page sizes the host has, as cgroup files name them (`2MB`, `1GB`).
    pub huge_page_sizes: Vec<String>,
}

fn range(field: &'static str, value: u64, lo: u64, hi: u64, text: &'static str) -> Result<(), ValidationError> {
    if value < lo || value > hi {
        return Err(ValidationError::OutOfRange { field, value: value as i128, range: text });
    }
    Ok(())
}

impl CgroupSpec {
    /// A spec for a cgroup called `name` under the caller's own cgroup, with no limits.
    pub fn new(name: impl Into<String>) -> Self {
        CgroupSpec { name: name.into(), ..CgroupSpec::default() }
    }

    /// Checks every value that can be checked without the host: ranges, formats, rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name(&self.name)?;
        if let Some(parent) = &self.parent {
            validate_parent(parent)?;
            if parent.as_os_str().len() + 1 + self.name.len() > MAX_PATH {
                return Err(ValidationError::BadName {
                    name: self.name.clone(),
                    reason: "parent and name are too long",
                });
            }
        }
        if let Some(leaf) = &self.leaf_for_parent_processes {
            validate_name(leaf)?;
        }
        self.resources.validate()
    }

    /// [`CgroupSpec::validate`] plus the checks against the host: cpusets inside the
    /// parent's effective sets, hugetlb page sizes the host has.
    pub fn validate_against(&self, host: &HostFacts) -> Result<(), ValidationError> {
        self.validate()?;
        self.resources.validate_against(host)
    }
}

/// Longest path component (`NAME_MAX`).
const MAX_COMPONENT: usize = 255;
/// Longest relative path (`PATH_MAX` minus the NUL).
const MAX_PATH: usize = 4095;

fn validate_parent(parent: &std::path::Path) -> Result<(), ValidationError> {
    use std::os::unix::ffi::OsStrExt;
    let bad = |reason| Err(ValidationError::BadParent { parent: parent.to_owned(), reason });
    let b = parent.as_os_str().as_bytes();
    if b.first() != Some(&b'/') {
        return bad("must be absolute, as /proc/self/cgroup names cgroups (`/` is the hierarchy root)");
    }
    if b.len() > MAX_PATH {
        return bad("longer than 4095 bytes");
    }
    if b.contains(&0) || b.contains(&b'\n') {
        return bad("contains a NUL or newline");
    }
    if b == b"/" {
        return Ok(());
    }
    for c in b[1..].split(|&x| x == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return bad("has an empty, `.` or `..` component");
        }
        if c.len() > MAX_COMPONENT {
            return bad("has a component longer than 255 bytes");
        }
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), ValidationError> {
    let bad = |reason| Err(ValidationError::BadName { name: name.to_owned(), reason });
    if name.len() > MAX_PATH {
        return bad("longer than 4095 bytes");
    }
    if name.split('/').any(|c| c.len() > MAX_COMPONENT) {
        return bad("has a component longer than 255 bytes");
    }
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('/') {
        return bad("must be relative to the parent");
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("has an empty, `.` or `..` component");
    }
    if name.contains('\0') || name.contains('\n') {
        return bad("contains a NUL or newline");
    }
    Ok(())
}

impl Resources {
    /// The pure checks of every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(cpu) = &self.cpu {
            if let Some(w) = cpu.weight {
                range("cpu.weight", w, 1, 10_000, "1..=10000")?;
            }
            if let Some(s) = cpu.shares {
                range("cpu.shares", s, 2, 262_144, "2..=262144")?;
            }
            if let Some(q) = cpu.quota_us {
                range("cpu.quota_us", q, 1_000, u64::MAX / 2, ">= 1000 µs (1 ms)")?;
            }
            if let Some(p) = cpu.period_us {
                range("cpu.period_us", p, 1_000, 1_000_000, "1000..=1000000 µs")?;
            }
        }
        if let Some(cs) = &self.cpuset {
            for (field, v) in [("cpuset.cpus", &cs.cpus), ("cpuset.mems", &cs.mems)] {
                if let Some(v) = v {
                    CpuSet::parse(v).map_err(|reason| ValidationError::Malformed {
                        field,
                        value: v.clone(),
                        reason,
                    })?;
                }
            }
        }
        if let Some(m) = &self.memory {
            for (field, v) in
                [("memory.max", m.max), ("memory.high", m.high), ("memory.low", m.low), ("memory.min", m.min)]
            {
                if let Some(v) = v {
                    range(field, v, PAGE_SIZE, u64::MAX / 2, ">= one page (4096 bytes)")?;
                }
            }
            if let Some(v) = m.swap {
                range("memory.swap", v, 0, u64::MAX / 4, "a byte count")?;
            }
        }
        if let Some(d) = &self.devices {
            d.validate()?;
        }
        if let Some(b) = &self.blkio {
            if let Some(w) = b.weight {
                range("io.weight", w, 1, 10_000, "1..=10000")?;
            }
            for t in &b.throttle {
                for (field, v) in [
                    ("io.max rbps", t.read_bps),
                    ("io.max wbps", t.write_bps),
                    ("io.max riops", t.read_iops),
                    ("io.max wiops", t.write_iops),
                ] {
                    if let Some(v) = v {
                        range(field, v, 1, u64::MAX / 2, ">= 1")?;
                    }
                }
            }
        }
        if let Some(np) = &self.net_prio {
            for (ifname, _) in &np.ifpriomap {
                if ifname.is_empty() || ifname.len() > 15 || ifname.contains([' ', '/', '\n', '\0']) {
                    return Err(ValidationError::Malformed {
                        field: "net_prio.ifpriomap",
                        value: ifname.clone(),
                        reason: "not an interface name (1-15 bytes, no space or /)".to_owned(),
                    });
                }
            }
        }
        for h in &self.hugetlb {
            parse_page_size(&h.page_size).map_err(|reason| ValidationError::Malformed {
                field: "hugetlb.page_size",
                value: h.page_size.clone(),
                reason,
            })?;
        }
        if let Some(p) = &self.pids {
            if let Some(max) = p.max {
                range("pids.max", max, 1, i64::MAX as u64, ">= 1")?;
            }
        }
        Ok(())
    }

    /// The checks that need host facts.
    pub fn validate_against(&self, host: &HostFacts) -> Result<(), ValidationError> {
        if let Some(cs) = &self.cpuset {
            for (field, v, parent) in
                [("cpuset.cpus", &cs.cpus, &host.parent_cpus), ("cpuset.mems", &cs.mems, &host.parent_mems)]
            {
                if let (Some(v), Some(parent)) = (v, parent) {
                    let set = CpuSet::parse(v).map_err(|reason| ValidationError::Malformed {
                        field,
                        value: v.clone(),
                        reason,
                    })?;
                    if !set.is_subset_of(parent) {
                        return Err(ValidationError::NotInParent {
                            field,
                            value: v.clone(),
                            parent: parent.to_string(),
                        });
                    }
                }
            }
        }
        for h in &self.hugetlb {
            if !host.huge_page_sizes.iter().any(|s| s == &h.page_size) {
                return Err(ValidationError::UnknownHugePageSize {
                    size: h.page_size.clone(),
                    supported: host.huge_page_sizes.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Parses a hugetlb page size as cgroup files name it (`64KB`, `2MB`, `1GB`) into bytes.
pub fn parse_page_size(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| "expected a number followed by KB, MB or GB".to_owned())?;
    let mult = match unit {
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err("unit must be KB, MB or GB".to_owned()),
    };
    if n == 0 || !n.is_power_of_two() {
        return Err("page sizes are powers of two".to_owned());
    }
    Ok(n * mult)
}

/// The cgroup-file name of a page size in kB as `/sys/kernel/mm/hugepages/hugepages-NkB`
/// names it: 2048 → `2MB`.
pub fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb % (1 << 20) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb % (1 << 10) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_field_and_value() {
        let mut r = Resources { cpu: Some(Cpu { weight: Some(0), ..Cpu::default() }), ..Resources::default() };
        assert_eq!(
            r.validate(),
            Err(ValidationError::OutOfRange { field: "cpu.weight", value: 0, range: "1..=10000" })
        );
        r.cpu = Some(Cpu { shares: Some(1), ..Cpu::default() });
        assert!(matches!(r.validate(), Err(ValidationError::OutOfRange { field: "cpu.shares", value: 1, .. })));
        r.cpu = Some(Cpu { quota_us: Some(999), ..Cpu::default() });
        assert!(matches!(r.validate(), Err(ValidationError::OutOfRange { field: "cpu.quota_us", .. })));
        r.cpu = None;
        r.memory = Some(Memory { max: Some(4095), ..Memory::default() });
        assert!(matches!(r.validate(), Err(ValidationError::OutOfRange { field: "memory.max", value: 4095, .. })));
        r.memory = None;
        r.cpuset = Some(Cpuset { cpus: Some("0-".into()), mems: None });
        assert!(matches!(r.validate(), Err(ValidationError::Malformed { field: "cpuset.cpus", .. })));
    }

    #[test]
    fn host_checks() {
        let host = HostFacts {
            parent_cpus: Some(CpuSet::parse("0-1").unwrap()),
            parent_mems: Some(CpuSet::parse("0").unwrap()),
            huge_page_sizes: vec!["2MB".into(), "1GB".into()],
        };
        let mut r = Resources {
            cpuset: Some(Cpuset { cpus: Some("1".into()), mems: Some("0".into()) }),
            ..Resources::default()
        };
        assert_eq!(r.validate_against(&host), Ok(()));
        r.cpuset = Some(Cpuset { cpus: Some("0-2".into()), mems: None });
        assert!(matches!(r.validate_against(&host), Err(ValidationError::NotInParent { field: "cpuset.cpus", .. })));
        r.cpuset = None;
        r.hugetlb = vec![HugetlbLimit { page_size: "16MB".into(), limit: 1 << 24 }];
        assert!(r.validate().is_ok());
        assert!(matches!(r.validate_against(&host), Err(ValidationError::UnknownHugePageSize { .. })));
        r.hugetlb = vec![HugetlbLimit { page_size: "2XB".into(), limit: 1 }];
        assert!(r.validate().is_err());
    }

    #[test]
    fn names_and_conversions() {
        for bad in ["", "/abs", "a/../b", "a//b", "."] {
            assert!(CgroupSpec::new(bad).validate().is_err(), "{bad:?}");
        }
        assert!(CgroupSpec::new("nk-a/b").validate().is_ok());
        assert!(CgroupSpec::new("x".repeat(256)).validate().is_err());
        for bad in ["/../../../../tmp", "/a/../b", "/a/..", "/./a", "a/b", "", "//a", "/a/", "/a//b", "/a\0b", "/a\nb"]
        {
            let mut spec = CgroupSpec::new("nk-x");
            spec.parent = Some(bad.into());
            assert!(matches!(spec.validate(), Err(ValidationError::BadParent { .. })), "{bad:?}");
        }
        let mut spec = CgroupSpec::new("nk-x");
        spec.parent = Some(format!("/{}", "y".repeat(256)).into());
        assert!(matches!(spec.validate(), Err(ValidationError::BadParent { .. })));
        for good in ["/", "/a", "/a.b/c..d/.e"] {
            spec.parent = Some(good.into());
            assert_eq!(spec.validate(), Ok(()), "{good:?}");
        }
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(parse_page_size("2MB"), Ok(2 << 20));
    }

    #[test]
    fn serde_round_trip() {
        let mut spec = CgroupSpec::new("nk-x");
        spec.resources.pids = Some(Pids { max: Some(20) });
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<CgroupSpec>(&json).unwrap(), spec);
    }
}
