//! The `hugetlb` controller: a limit per huge page size (v1
//! `hugetlb.<size>.limit_in_bytes`, v2 `hugetlb.<size>.max`), checked against the page
//! sizes the host has.

use serde::{Deserialize, Serialize};

use super::{Controller, Part};
use crate::cgroup::Dir;
use crate::error::{Result, ValidationError};
use crate::hierarchy::Version;
use crate::spec::HostFacts;

/// A hugetlb limit for one page size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HugetlbLimit {
    /// Page size as the cgroup files name it: `2MB`, `1GB`, `64KB`.
    pub page_size: String,
    /// Limit in bytes.
    pub limit: u64,
}

impl HugetlbLimit {
    /// A limit of `limit` bytes for pages of `page_size` (`2MB`, `1GB`, `64KB`).
    pub fn new(page_size: impl Into<String>, limit: u64) -> Self {
        HugetlbLimit { page_size: page_size.into(), limit }
    }
}

/// `Resources::hugetlb`: every limit (the list is left out of the registry when empty).
impl Part for Vec<HugetlbLimit> {
    fn controller(&self) -> Controller {
        Controller::Hugetlb
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for h in self {
            parse_page_size(&h.page_size).map_err(|reason| ValidationError::Malformed {
                field: "hugetlb.page_size",
                value: h.page_size.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    fn validate_against(&self, host: &HostFacts) -> Result<(), ValidationError> {
        for h in self {
            if !host.huge_page_sizes.iter().any(|s| s == &h.page_size) {
                return Err(ValidationError::UnknownHugePageSize {
                    size: h.page_size.clone(),
                    supported: host.huge_page_sizes.join(", "),
                });
            }
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        for h in self {
            let file = match version {
                Version::V1 => format!("hugetlb.{}.limit_in_bytes", h.page_size),
                Version::V2 => format!("hugetlb.{}.max", h.page_size),
            };
            dir.write(&file, &h.limit.to_string())?;
        }
        Ok(())
    }
}

/// Parses a hugetlb page size as cgroup files name it (`64KB`, `2MB`, `1GB`) into bytes.
pub fn parse_page_size(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let Ok(n) = num.parse::<u64>() else {
        return Err("expected a number followed by KB, MB or GB".to_owned());
    };
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
    if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// The huge page sizes the host has (`/sys/kernel/mm/hugepages/hugepages-NkB`), as cgroup
/// files name them; none when that directory cannot be read.
pub(crate) fn host_page_sizes() -> Vec<String> {
    let mut sizes = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(kb) = name.strip_prefix("hugepages-").and_then(|s| s.strip_suffix("kB"))
                && let Ok(kb) = kb.parse::<u64>()
            {
                sizes.push(page_size_name(kb));
            }
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn page_sizes_parse_and_print() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        assert_eq!(parse_page_size("2MB"), Ok(2 << 20));
        for bad in ["2XB", "MB", "3MB", "0KB"] {
            assert!(parse_page_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_are_checked_against_the_host() {
        let host = HostFacts { huge_page_sizes: vec!["2MB".into(), "1GB".into()], ..HostFacts::default() };
        let limits = vec![HugetlbLimit { page_size: "16MB".into(), limit: 1 << 24 }];
        assert!(limits.validate().is_ok());
        assert!(matches!(limits.validate_against(&host), Err(ValidationError::UnknownHugePageSize { .. })));
        assert!(vec![HugetlbLimit { page_size: "2XB".into(), limit: 1 }].validate().is_err());
    }

    #[test]
    fn limits_go_to_each_versions_file() {
        let f = Fixture::new(Version::V1, &[("hugetlb.2MB.limit_in_bytes", ""), ("hugetlb.1GB.limit_in_bytes", "")]);
        let limits = vec![
            HugetlbLimit { page_size: "2MB".into(), limit: 4 << 20 },
            HugetlbLimit { page_size: "1GB".into(), limit: 0 },
        ];
        limits.write(&f.dir, Version::V1).unwrap();
        assert_eq!(
            (f.read("hugetlb.2MB.limit_in_bytes"), f.read("hugetlb.1GB.limit_in_bytes")),
            ("4194304".into(), "0".into())
        );
        let f = Fixture::new(Version::V2, &[("hugetlb.2MB.max", "")]);
        limits[..1].to_vec().write(&f.dir, Version::V2).unwrap();
        assert_eq!(f.read("hugetlb.2MB.max"), "4194304");
    }
}
