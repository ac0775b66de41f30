//! User-namespace id maps: typed multi-range maps, their validation, and how the parent
//! writes them (directly, or through `newuidmap` / `newgidmap` for unprivileged multi-range
//! maps).

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext, ValidationError};

/// The kernel's limit on ranges per map (since Linux 4.15).
pub const MAX_RANGES: usize = 340;

/// Whether a map is for user ids or group ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// User ids (`/proc/PID/uid_map`).
    Uid,
    /// Group ids (`/proc/PID/gid_map`).
    Gid,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        })
    }
}

/// One line of an id map: `count` ids starting at `inside` map to ids starting at `outside`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IdMapping {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id outside (in the parent's user namespace).
    pub outside: u32,
    /// How many consecutive ids.
    pub count: u32,
}

impl IdMapping {
    /// A range of `count` ids.
    pub const fn new(inside: u32, outside: u32, count: u32) -> Self {
        IdMapping { inside, outside, count }
    }

    fn end(start: u32, count: u32) -> u64 {
        start as u64 + count as u64
    }
}

impl fmt::Display for IdMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.inside, self.outside, self.count)
    }
}

/// A uid or gid map of up to 340 ranges.
///
/// ```
/// use nook_ns::{IdKind, IdMap, IdMapping};
///
/// let map = IdMap::new()
///     .with(IdMapping::new(0, 1000, 1))
///     .with(IdMapping::new(1, 100_000, 65_536));
/// assert!(map.validate(IdKind::Uid).is_ok());
/// assert_eq!(map.render(), "0 1000 1\n1 100000 65536\n");
///
/// let overlapping = IdMap::new().with(IdMapping::new(0, 1000, 10)).with(IdMapping::new(5, 2000, 1));
/// assert!(overlapping.validate(IdKind::Uid).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    ranges: Vec<IdMapping>,
}

impl IdMap {
    /// An empty map (add ranges with [`IdMap::with`] or [`IdMap::push`]).
    pub fn new() -> Self {
        IdMap::default()
    }

    /// A map of one range.
    pub fn single(inside: u32, outside: u32, count: u32) -> Self {
        IdMap { ranges: vec![IdMapping::new(inside, outside, count)] }
    }

    /// Maps root inside to `outside`: the usual "I am root in my own namespace" map.
    pub fn root_to(outside: u32) -> Self {
        IdMap::single(0, outside, 1)
    }

    /// This map with one more range.
    #[must_use]
    pub fn with(mut self, range: IdMapping) -> Self {
        self.ranges.push(range);
        self
    }

    /// Adds a range.
    pub fn push(&mut self, range: IdMapping) -> &mut Self {
        self.ranges.push(range);
        self
    }

    /// The ranges, in the order given.
    pub fn ranges(&self) -> &[IdMapping] {
        &self.ranges
    }

    /// Maps `id` (inside) to the outside id, if it is mapped. On a map that does not
    /// [validate](IdMap::validate), an id whose outside id would pass 4294967294 is unmapped
    /// (never wrapped around to a low id such as 0).
    pub fn to_outside(&self, id: u32) -> Option<u32> {
        self.ranges
            .iter()
            .find(|r| id >= r.inside && (id as u64) < IdMapping::end(r.inside, r.count))
            .and_then(|r| r.outside.checked_add(id - r.inside))
            .filter(|&outside| outside != u32::MAX)
    }

    /// Checks the map as the kernel would, without touching it: at least one range, at most
    /// 340, no empty range, no range past id 4294967294, no overlap inside or outside.
    pub fn validate(&self, kind: IdKind) -> std::result::Result<(), ValidationError> {
        if self.ranges.is_empty() {
            return Err(ValidationError::IdMapEmpty { kind });
        }
        if self.ranges.len() > MAX_RANGES {
            return Err(ValidationError::IdMapTooManyRanges { kind, count: self.ranges.len() });
        }
        for r in &self.ranges {
            if r.count == 0 {
                return Err(ValidationError::IdMapEmptyRange { kind, range: *r });
            }
            // Ids go up to u32::MAX - 1: (uid_t)-1 is never valid.
            let limit = u32::MAX as u64;
            if IdMapping::end(r.inside, r.count) > limit || IdMapping::end(r.outside, r.count) > limit {
                return Err(ValidationError::IdMapOverflow { kind, range: *r });
            }
        }
        type Start = fn(&IdMapping) -> u32;
        let sides: [(&str, Start); 2] = [("inside", |r| r.inside), ("outside", |r| r.outside)];
        for (side, start) in sides {
            let mut sorted: Vec<&IdMapping> = self.ranges.iter().collect();
            sorted.sort_by_key(|r| start(r));
            for pair in sorted.windows(2) {
                if IdMapping::end(start(pair[0]), pair[0].count) > start(pair[1]) as u64 {
                    return Err(ValidationError::IdMapOverlap { kind, side, first: *pair[0], second: *pair[1] });
                }
            }
        }
        Ok(())
    }

    /// The text the kernel expects in `/proc/PID/{uid,gid}_map`.
    pub fn render(&self) -> String {
        self.ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect()
    }

    /// Whether an unprivileged process with effective id `own` may write this map itself
    /// (one range of one id that maps to its own id).
    pub fn is_self_map(&self, own: u32) -> bool {
        matches!(self.ranges.as_slice(), [r] if r.count == 1 && r.outside == own)
    }
}

/// Whether `setgroups(2)` stays allowed in the new user namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetGroups {
    /// Allow when the map is written with privilege (root, or newgidmap), deny when the
    /// kernel requires it (an unprivileged process writing its own gid map).
    #[default]
    Auto,
    /// Keep `setgroups` allowed (fails for unprivileged self-maps).
    Allow,
    /// Write `deny` to `/proc/PID/setgroups` (groups can then never be dropped inside).
    Deny,
}

/// How the parent will write the maps; decided before the child exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MapWriter {
    /// Write `/proc/PID/*_map` directly.
    Direct,
    /// Run the given `newuidmap` / `newgidmap` helper.
    Helper(PathBuf),
}

/// Decides how to write a map for a caller with effective id `own` (`privileged` when the
/// caller is root in the initial namespace). Pure apart from looking up the helper on PATH.
pub(crate) fn choose_writer(map: &IdMap, kind: IdKind, own: u32, privileged: bool) -> MapWriter {
    if privileged || map.is_self_map(own) {
        return MapWriter::Direct;
    }
    let helper = match kind {
        IdKind::Uid => "newuidmap",
        IdKind::Gid => "newgidmap",
    };
    match find_on_path(helper) {
        Some(path) => MapWriter::Helper(path),
        // Let the kernel refuse: the error will say EPERM on the map file.
        None => MapWriter::Direct,
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Writes both maps (and `setgroups`) for `pid`, as the parent does between clone and resume.
pub(crate) fn write_maps(
    pid: libc::pid_t,
    uid: Option<(&IdMap, &MapWriter)>,
    gid: Option<(&IdMap, &MapWriter)>,
    setgroups_deny: bool,
) -> Result<()> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if let Some((map, writer)) = uid {
        write_one(&proc_dir, pid, IdKind::Uid, map, writer)?;
    }
    if setgroups_deny {
        write_file(&proc_dir.join("setgroups"), b"deny")?;
    }
    if let Some((map, writer)) = gid {
        write_one(&proc_dir, pid, IdKind::Gid, map, writer)?;
    }
    Ok(())
}

fn write_one(proc_dir: &Path, pid: libc::pid_t, kind: IdKind, map: &IdMap, writer: &MapWriter) -> Result<()> {
    match writer {
        MapWriter::Direct => write_file(&proc_dir.join(format!("{kind}_map")), map.render().as_bytes()),
        MapWriter::Helper(program) => {
            let mut cmd = std::process::Command::new(program);
            cmd.arg(pid.to_string());
            for r in map.ranges() {
                cmd.args([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
            }
            let out = cmd.output().sys_at("run id-map helper", program)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(Error::Helper {
                    program: if kind == IdKind::Uid { "newuidmap" } else { "newgidmap" },
                    status: out.status,
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                })
            }
        }
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    // One write(2): the kernel requires the whole map in a single write.
    fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(data)).sys_at("write", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_inside_and_outside_are_caught() {
        let inside = IdMap::new().with(IdMapping::new(0, 1000, 10)).with(IdMapping::new(9, 5000, 1));
        assert!(matches!(inside.validate(IdKind::Uid), Err(ValidationError::IdMapOverlap { side: "inside", .. })));
        let outside = IdMap::new().with(IdMapping::new(0, 1000, 10)).with(IdMapping::new(100, 1005, 1));
        assert!(matches!(outside.validate(IdKind::Gid), Err(ValidationError::IdMapOverlap { side: "outside", .. })));
        let adjacent = IdMap::new().with(IdMapping::new(0, 1000, 10)).with(IdMapping::new(10, 1010, 1));
        assert_eq!(adjacent.validate(IdKind::Uid), Ok(()));
    }

    #[test]
    fn limits() {
        assert!(matches!(IdMap::new().validate(IdKind::Uid), Err(ValidationError::IdMapEmpty { .. })));
        assert!(matches!(IdMap::single(0, 0, 0).validate(IdKind::Uid), Err(ValidationError::IdMapEmptyRange { .. })));
        assert!(matches!(
            IdMap::single(u32::MAX - 1, 0, 2).validate(IdKind::Uid),
            Err(ValidationError::IdMapOverflow { .. })
        ));
        assert_eq!(IdMap::single(u32::MAX - 1, 0, 1).validate(IdKind::Uid), Ok(()));
        let mut many = IdMap::new();
        for i in 0..341 {
            many.push(IdMapping::new(i, i, 1));
        }
        assert!(matches!(many.validate(IdKind::Uid), Err(ValidationError::IdMapTooManyRanges { count: 341, .. })));
    }

    #[test]
    fn lookup_and_self_map() {
        let map = IdMap::new().with(IdMapping::new(0, 1000, 1)).with(IdMapping::new(1, 100_000, 10));
        assert_eq!(map.to_outside(0), Some(1000));
        assert_eq!(map.to_outside(5), Some(100_004));
        assert_eq!(map.to_outside(11), None);
        assert!(IdMap::root_to(1000).is_self_map(1000));
        assert!(!map.is_self_map(1000));
        assert_eq!(choose_writer(&map, IdKind::Uid, 0, true), MapWriter::Direct);
    }

    /// Found by the `idmap` fuzz target (fuzz/regressions/idmap/wrap): on a map that does not
    /// validate, `to_outside` overflowed — a panic in debug builds, and in release builds id 1
    /// "mapped" to outside id 0, root.
    #[test]
    fn lookup_in_an_unvalidated_map_never_wraps() {
        let map = IdMap::single(0, u32::MAX, 2);
        assert!(map.validate(IdKind::Uid).is_err());
        assert_eq!(map.to_outside(0), None, "(uid_t)-1 is no id");
        assert_eq!(map.to_outside(1), None);
        assert_eq!(IdMap::single(0, u32::MAX - 1, 1).to_outside(0), Some(u32::MAX - 1));
    }

    proptest::proptest! {
        /// A map that validates is a bijection between its inside and outside ranges:
        /// `to_outside` agrees with the range arithmetic at each range's ends and at any id,
        /// and two different mapped ids never share an outside id.
        #[test]
        fn validated_maps_are_one_to_one(
            ranges in proptest::collection::vec((0u32..5000, 0u32..5000, 1u32..300), 1..6),
            probes in proptest::collection::vec(0u32..6000, 1..40),
        ) {
            let mut map = IdMap::new();
            for (inside, outside, count) in ranges {
                map.push(IdMapping::new(inside, outside, count));
            }
            proptest::prop_assume!(map.validate(IdKind::Uid).is_ok());
            for r in map.ranges() {
                proptest::prop_assert_eq!(map.to_outside(r.inside), Some(r.outside));
                proptest::prop_assert_eq!(map.to_outside(r.inside + r.count - 1), Some(r.outside + r.count - 1));
            }
            let mut seen = std::collections::BTreeMap::new();
            for id in probes {
                let inside = map.ranges().iter().find(|r| id >= r.inside && id - r.inside < r.count);
                let outside = map.to_outside(id);
                proptest::prop_assert_eq!(outside, inside.map(|r| r.outside + (id - r.inside)));
                if let Some(o) = outside
                    && let Some(prev) = seen.insert(o, id)
                {
                    proptest::prop_assert_eq!(prev, id, "two ids map to {}", o);
                }
            }
        }
    }
}
