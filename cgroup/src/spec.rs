//! [`CgroupSpec`]: pure data (serde) describing a cgroup and its limits, with validation
//! that runs before anything is written.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::controller::Resources;
use crate::controller::cpuset::CpuSet;
use crate::error::ValidationError;

/// A cgroup to create: where, and with which limits.
///
/// ```
/// use nook_cgroup::{CgroupSpec, Cpu};
///
/// let mut spec = CgroupSpec::new("nk-demo");
/// spec.parent("/sandboxes");
/// spec.resources.memory.get_or_insert_default().max(64 << 20).swap(0);
/// spec.resources.pids.get_or_insert_default().max(20);
/// let mut cpu = Cpu::new();
/// cpu.quota_us(20_000).period_us(100_000);
/// spec.resources.cpu = Some(cpu);
/// assert!(spec.validate().is_ok());
///
/// spec.resources.pids.get_or_insert_default().max(0);
/// assert!(spec.validate().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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

/// Facts about the host that validation needs (read before anything is written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostFacts {
    /// The parent's effective CPUs, if known.
    pub parent_cpus: Option<CpuSet>,
    /// The parent's effective memory nodes, if known.
    pub parent_mems: Option<CpuSet>,
    /// Huge page sizes the host has, as cgroup files name them (`2MB`, `1GB`).
    pub huge_page_sizes: Vec<String>,
}

impl CgroupSpec {
    /// A spec for a cgroup called `name` under the caller's own cgroup, with no limits.
    pub fn new(name: impl Into<String>) -> Self {
        CgroupSpec { name: name.into(), ..CgroupSpec::default() }
    }

    /// Sets the parent cgroup (as `/proc/self/cgroup` names cgroups, e.g. `/sandboxes`)
    /// instead of the caller's own.
    pub fn parent(&mut self, parent: impl Into<PathBuf>) -> &mut Self {
        self.parent = Some(parent.into());
        self
    }

    /// v2: moves the parent's own processes into this leaf first (see the field).
    pub fn leaf_for_parent_processes(&mut self, leaf: impl Into<String>) -> &mut Self {
        self.leaf_for_parent_processes = Some(leaf.into());
        self
    }

    /// Sets the limits.
    pub fn resources(&mut self, resources: Resources) -> &mut Self {
        self.resources = resources;
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parents() {
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
    }

    #[test]
    fn serde_round_trip() {
        let mut spec = CgroupSpec::new("nk-x");
        spec.resources.pids = Some(crate::Pids { max: Some(20) });
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<CgroupSpec>(&json).unwrap(), spec);
    }

    /// The {"name":"nk-x","parent":"/p","leaf_for_parent_processes":"init","resources":{"cpu":{"weight":100,"shares":null,"quota_us":20000,"period_us":100000},"cpuacct":true,"cpuset":{"cpus":"0-1","mems":"0"},"memory":{"max":67108864,"high":null,"low":4096,"min":null,"swap":0},"devices":{"default_allow":false,"rules":[{"allow":true,"kind":"char","major":1,"minor":3,"access":"READ | WRITE"}]},"freezer":true,"net_cls":{"classid":65537},"blkio":{"weight":500,"throttle":[{"major":8,"minor":0,"read_bps":1048576,"write_bps":null,"read_iops":null,"write_iops":100}]},"perf_event":true,"net_prio":{"ifpriomap":[["lo",5]]},"hugetlb":[{"page_size":"2MB","limit":4194304}],"pids":{"max":20}}} of a spec with every controller is what it was before the controllers got
    /// their own modules and setters (the string is the previous release's output).
    #[test]
    fn serde_shape_is_unchanged() {
        use crate::{DeviceAccess, DevicePolicy, DeviceRule, DeviceThrottle, HugetlbLimit, NetCls};
        let mut spec = CgroupSpec::new("nk-x");
        spec.parent("/p").leaf_for_parent_processes("init");
        let r = &mut spec.resources;
        r.cpu.get_or_insert_default().weight(100).quota_us(20_000).period_us(100_000);
        r.cpuacct = true;
        r.cpuset.get_or_insert_default().cpus("0-1").mems("0");
        r.memory.get_or_insert_default().max(1 << 26).low(4096).swap(0);
        let mut devices = DevicePolicy::deny_by_default(Vec::new());
        devices.rule(DeviceRule::allow_char(1, 3, DeviceAccess::READ | DeviceAccess::WRITE));
        r.devices = Some(devices);
        r.freezer = true;
        r.net_cls = Some(NetCls::new(0x10001));
        r.blkio
            .get_or_insert_default()
            .weight(500)
            .throttle(DeviceThrottle::new(8, 0).read_bps(1 << 20).write_iops(100).clone());
        r.perf_event = true;
        r.net_prio.get_or_insert_default().priority("lo", 5);
        r.hugetlb.push(HugetlbLimit::new("2MB", 1 << 22));
        r.pids.get_or_insert_default().max(20);
        let before = r#"{"name":"nk-x","parent":"/p","leaf_for_parent_processes":"init","resources":{"cpu":{"weight":100,"shares":null,"quota_us":20000,"period_us":100000},"cpuacct":true,"cpuset":{"cpus":"0-1","mems":"0"},"memory":{"max":67108864,"high":null,"low":4096,"min":null,"swap":0},"devices":{"default_allow":false,"rules":[{"allow":true,"kind":"char","major":1,"minor":3,"access":"READ | WRITE"}]},"freezer":true,"net_cls":{"classid":65537},"blkio":{"weight":500,"throttle":[{"major":8,"minor":0,"read_bps":1048576,"write_bps":null,"read_iops":null,"write_iops":100}]},"perf_event":true,"net_prio":{"ifpriomap":[["lo",5]]},"hugetlb":[{"page_size":"2MB","limit":4194304}],"pids":{"max":20}}}"#;
        assert_eq!(serde_json::to_string(&spec).unwrap(), before);
        assert_eq!(serde_json::from_str::<CgroupSpec>(before).unwrap(), spec);
    }
}
