//! The `cpuset` controller: CPUs and memory nodes (same file names on v1 and v2), checked
//! against the parent's effective sets before anything is written; and [`CpuSet`], the
//! kernel's list format (`0-3,7`).

use std::collections::BTreeSet;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Controller, Part};
use crate::at;
use crate::cgroup::Dir;
use crate::error::{Joined, ParseContext, Result, ValidationError};
use crate::hierarchy::Version;
use crate::spec::HostFacts;

/// CPUs and memory nodes, in the kernel's list format (`0-3,7`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Cpuset {
    /// CPUs.
    pub cpus: Option<String>,
    /// Memory nodes.
    pub mems: Option<String>,
}

impl Cpuset {
    /// No setting yet (the kernel's defaults); set the fields with the setters.
    pub fn new() -> Self {
        Cpuset::default()
    }

    /// Sets `cpus`: the CPUs (`0-3,7`).
    pub fn cpus(&mut self, value: impl Into<String>) -> &mut Self {
        self.cpus = Some(value.into());
        self
    }

    /// Sets `mems`: the memory nodes (`0`).
    pub fn mems(&mut self, value: impl Into<String>) -> &mut Self {
        self.mems = Some(value.into());
        self
    }
}

impl Cpuset {
    fn fields(&self) -> [(&'static str, &Option<String>); 2] {
        [("cpuset.cpus", &self.cpus), ("cpuset.mems", &self.mems)]
    }
}

fn parse_field(field: &'static str, value: &str) -> Result<CpuSet, ValidationError> {
    CpuSet::parse(value).map_err(|reason| ValidationError::Malformed { field, value: value.to_owned(), reason })
}

impl Part for Cpuset {
    fn controller(&self) -> Controller {
        Controller::Cpuset
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (field, v) in self.fields() {
            if let Some(v) = v {
                parse_field(field, v)?;
            }
        }
        Ok(())
    }

    fn validate_against(&self, host: &HostFacts) -> Result<(), ValidationError> {
        for ((field, v), parent) in self.fields().into_iter().zip([&host.parent_cpus, &host.parent_mems]) {
            if let (Some(v), Some(parent)) = (v, parent)
                && !parse_field(field, v)?.is_subset_of(parent)
            {
                return Err(ValidationError::NotInParent { field, value: v.clone(), parent: parent.to_string() });
            }
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, _version: Version) -> Result<()> {
        // Same file names on v1 and v2.
        for (file, v) in self.fields() {
            if let Some(v) = v {
                dir.write(file, v)?;
            }
        }
        Ok(())
    }
}

/// A new v1 cpuset cgroup starts with empty `cpus`/`mems` and cannot take tasks: copy the
/// parent's. `dir` is the new cgroup (at `path`), `parent` the directory it was made in.
pub(crate) fn init_v1(parent: BorrowedFd<'_>, dir: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let parent_path = path.parent().unwrap_or(path);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = at::read(dir, path, file)?;
        if current.trim().is_empty() {
            let from_parent = at::read(parent, parent_path, file)?;
            at::write(dir, path, file, from_parent.trim())?;
        }
    }
    Ok(())
}

/// The effective CPUs and memory nodes of the cgroup `parent` (at `parent_path`), for
/// [`HostFacts`]; `None` for a file that cannot be read.
pub(crate) fn parent_sets(
    parent: BorrowedFd<'_>,
    parent_path: &Path,
    version: Version,
) -> Result<(Option<CpuSet>, Option<CpuSet>)> {
    let (cpus, mems) = match version {
        Version::V1 => ("cpuset.effective_cpus", "cpuset.effective_mems"),
        Version::V2 => ("cpuset.cpus.effective", "cpuset.mems.effective"),
    };
    let read_set = |f: &str| -> Result<Option<CpuSet>> {
        match at::read(parent, parent_path, f) {
            Ok(s) => CpuSet::parse(&s).map(Some).parse_at(Joined(parent_path, f)),
            Err(_) => Ok(None),
        }
    };
    Ok((read_set(cpus)?, read_set(mems)?))
}

/// A set of CPU (or memory node) numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// Parses `0-3,7` (empty text is the empty set, as cgroup files show it).
    pub fn parse(text: &str) -> Result<CpuSet, String> {
        let mut set = BTreeSet::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            let num = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{s:?} is not a number"));
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("range {part} runs backwards"));
                    }
                    if b - a > 65_536 {
                        return Err(format!("range {part} is too large"));
                    }
                    set.extend(a..=b);
                }
                None => {
                    set.insert(num(part)?);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// Whether every member is also in `other`.
    pub fn is_subset_of(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether `n` is a member.
    pub fn contains(&self, n: u32) -> bool {
        self.0.contains(&n)
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CpuSet {
    /// Prints the compact kernel form (`0-3,7`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end = iter.next().expect("peeked");
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end { write!(f, "{start}")? } else { write!(f, "{start}-{end}")? }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn parse_and_print() {
        let s = CpuSet::parse("0-3,7,5\n").unwrap();
        assert_eq!(s.to_string(), "0-3,5,7");
        assert!(CpuSet::parse("").unwrap().is_empty());
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("a").is_err());
        assert!(CpuSet::parse("1").unwrap().is_subset_of(&s));
        assert!(!CpuSet::parse("4").unwrap().is_subset_of(&s));
    }

    #[test]
    fn malformed_and_outside_the_parent() {
        let bad = Cpuset { cpus: Some("0-".into()), mems: None };
        assert!(matches!(bad.validate(), Err(ValidationError::Malformed { field: "cpuset.cpus", .. })));
        let host = HostFacts {
            parent_cpus: Some(CpuSet::parse("0-1").unwrap()),
            parent_mems: Some(CpuSet::parse("0").unwrap()),
            ..HostFacts::default()
        };
        assert_eq!(Cpuset { cpus: Some("1".into()), mems: Some("0".into()) }.validate_against(&host), Ok(()));
        let wide = Cpuset { cpus: Some("0-2".into()), mems: None };
        assert!(matches!(wide.validate_against(&host), Err(ValidationError::NotInParent { field: "cpuset.cpus", .. })));
        let wide = Cpuset { cpus: None, mems: Some("1".into()) };
        assert!(matches!(wide.validate_against(&host), Err(ValidationError::NotInParent { field: "cpuset.mems", .. })));
    }

    #[test]
    fn writes_and_reads_fixture_files() {
        let f = Fixture::new(Version::V2, &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        Cpuset { cpus: Some("0-1".into()), mems: None }.write(&f.dir, Version::V2).unwrap();
        assert_eq!((f.read("cpuset.cpus").as_str(), f.read("cpuset.mems").as_str()), ("0-1", ""));
        let f = Fixture::new(Version::V2, &[("cpuset.cpus.effective", "0-3\n"), ("cpuset.mems.effective", "0\n")]);
        let (cpus, mems) = parent_sets(f.dir.fd.as_fd(), &f.dir.path, Version::V2).unwrap();
        assert_eq!((cpus.unwrap().to_string(), mems.unwrap().to_string()), ("0-3".to_owned(), "0".to_owned()));
        let f = Fixture::new(Version::V1, &[("cpuset.effective_cpus", "x\n")]);
        assert!(parent_sets(f.dir.fd.as_fd(), &f.dir.path, Version::V1).is_err(), "unparsable");
    }

    #[test]
    fn a_new_v1_cpuset_gets_the_parents_sets() {
        let parent = Fixture::new(Version::V1, &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")]);
        let child = Fixture::new(Version::V1, &[("cpuset.cpus", "\n"), ("cpuset.mems", "1")]);
        init_v1(parent.dir.fd.as_fd(), child.dir.fd.as_fd(), &child.dir.path).unwrap();
        assert_eq!(child.read("cpuset.cpus"), "0-1", "empty: copied");
        assert_eq!(child.read("cpuset.mems"), "1", "set: kept");
    }
}
