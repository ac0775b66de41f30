//! Discovery: which cgroup hierarchies are mounted, which controllers each has, and where
//! the caller's own cgroup is in each — from `/proc/thread-self/mountinfo` and
//! `/proc/self/cgroup`, never from hard-coded paths.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use procfs_core::process::MountInfo;
use procfs_core::{FromBufRead, ProcessCGroups};

use crate::controller::{Controller, V2Support};
use crate::error::{Error, ParseContext, Result, SysContext};

/// cgroup v1 or v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// A v1 hierarchy (one or more controllers per mount).
    V1,
    /// The unified v2 hierarchy.
    V2,
}

/// The layout of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// Only the unified v2 hierarchy.
    V2,
    /// v1 hierarchies for the controllers plus a v2 tree (systemd's "hybrid").
    Hybrid,
}

/// One mounted hierarchy and the caller's place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup path the mount shows at its mount point (`/` unless bind-mounted or in a
    /// cgroup namespace).
    pub mount_root: PathBuf,
    /// v1: the controllers bound to it (`name=systemd`-style named hierarchies have none).
    /// v2: the controllers in the caller's cgroup's `cgroup.controllers`... as found at the
    /// hierarchy root (`cgroup.controllers` of the mount point).
    pub controllers: Vec<String>,
    /// The caller's cgroup in this hierarchy, as `/proc/self/cgroup` names it.
    pub own_cgroup: PathBuf,
}

impl Hierarchy {
    /// The directory of a cgroup path (as `/proc/self/cgroup` names cgroups) under this
    /// mount, or `None` if the mount does not show it.
    /// `None` too for a path that would leave the mount (a `..` or `.` component).
    pub fn dir_of(&self, cgroup: &Path) -> Option<PathBuf> {
        Some(self.mount_point.join(self.rel_of(cgroup)?))
    }

    /// A cgroup path relative to the mount point: plain components only, or `None` when the
    /// mount does not show it (or the path has a `..`, `.` or relative form — in a cgroup
    /// namespace `/proc/self/cgroup` may name a cgroup outside it with `..`).
    pub(crate) fn rel_of(&self, cgroup: &Path) -> Option<PathBuf> {
        use std::path::Component;
        let mut comps = cgroup.components();
        if comps.next() != Some(Component::RootDir) {
            return None;
        }
        if comps.clone().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        // A mount root that is not absolute (an empty mountinfo field) strips nothing: the
        // cgroup's absolute path would replace the mount point in `dir_of` (found by the
        // cgroup_files fuzz target).
        if !self.mount_root.has_root() {
            return None;
        }
        let rel = cgroup.strip_prefix(&self.mount_root).ok()?;
        Some(rel.to_owned())
    }

    /// The caller's own cgroup directory in this hierarchy.
    pub fn own_dir(&self) -> Option<PathBuf> {
        self.dir_of(&self.own_cgroup)
    }

    /// Whether this hierarchy offers `name` (v1 subsystem or v2 controller name).
    pub fn has(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == name)
    }
}

/// Every cgroup hierarchy visible to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchies {
    /// v1, v2 or hybrid.
    pub layout: Layout,
    /// The v1 hierarchies (with controllers; named ones such as `name=systemd` excluded).
    pub v1: Vec<Hierarchy>,
    /// The v2 hierarchy, if mounted.
    pub v2: Option<Hierarchy>,
}

/// Where a controller lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location<'a> {
    /// In this v1 hierarchy.
    V1(&'a Hierarchy),
    /// In the v2 hierarchy.
    V2(&'a Hierarchy),
}

impl<'a> Location<'a> {
    /// The hierarchy.
    pub fn hierarchy(&self) -> &'a Hierarchy {
        match self {
            Location::V1(h) | Location::V2(h) => h,
        }
    }

    /// Its version.
    pub fn version(&self) -> Version {
        self.hierarchy().version
    }
}

impl Hierarchies {
    /// Reads `/proc/thread-self/mountinfo` (the calling thread's mount namespace),
    /// `/proc/self/cgroup` and the v2 root's `cgroup.controllers`.
    ///
    /// The files are read on every call; parsing them is not repeated while they read as
    /// they did last time in this process (the last result is kept, by content: two
    /// identical inputs give the same hierarchies). That saves the parse, ~20 µs of ~93 µs on
    /// the benchmark machine (the reads are the rest); nothing stays open.
    pub fn discover() -> Result<Hierarchies> {
        let mountinfo = read(MOUNTINFO)?;
        let proc_cgroup = read("/proc/self/cgroup")?;
        {
            let last = LAST_DISCOVERY.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = last.as_ref()
                && d.mountinfo == mountinfo
                && d.proc_cgroup == proc_cgroup
            {
                let controllers = match &d.found.v2 {
                    Some(v2) => Some(read(v2.mount_point.join("cgroup.controllers"))?),
                    None => None,
                };
                if controllers == d.v2_controllers {
                    return Ok(d.found.clone());
                }
            }
        }
        let mut found = Hierarchies::parse(&mountinfo, &proc_cgroup)?;
        let mut v2_controllers = None;
        if let Some(v2) = found.v2.as_mut() {
            let text = read(v2.mount_point.join("cgroup.controllers"))?;
            v2.controllers = text.split_whitespace().map(str::to_owned).collect();
            v2_controllers = Some(text);
        }
        let kept = Discovery { mountinfo, proc_cgroup, v2_controllers, found: found.clone() };
        *LAST_DISCOVERY.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept);
        Ok(found)
    }

    /// The pure part of [`Hierarchies::discover`]: parses mountinfo and `/proc/PID/cgroup`
    /// text (the v2 controller list is left empty). Both go through `procfs-core`'s parsers.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Result<Hierarchies> {
        // /proc/self/cgroup: "ID:controller,list:/path" (v2: "0::/path").
        let cgroups = ProcessCGroups::from_buf_read(proc_cgroup.as_bytes()).parse_at("/proc/self/cgroup")?;
        let mut own_v1: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut own_v2 = None;
        for cg in cgroups {
            if cg.hierarchy == 0 && cg.controllers.is_empty() {
                own_v2 = Some(PathBuf::from(cg.pathname));
            } else {
                for c in cg.controllers {
                    own_v1.insert(c, PathBuf::from(&cg.pathname));
                }
            }
        }

        // Only the cgroup mounts are parsed (a host has many other mounts, and each parsed line
        // costs two maps): those whose file system type, after the ` - ` separator, is
        // `cgroup` or `cgroup2`. Each is parsed by procfs-core's mountinfo line parser.
        let mounts = mountinfo
            .lines()
            .filter(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup")))
            .map(MountInfo::from_line)
            .collect::<Result<Vec<_>, _>>()
            .parse_at("/proc/thread-self/mountinfo")?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for m in mounts {
            // procfs-core leaves mountinfo's octal escapes (`\040` for a space) in place.
            let mount_point = PathBuf::from(unescape(&m.mount_point.to_string_lossy()));
            let mount_root = PathBuf::from(unescape(&m.root));
            match m.fs_type.as_str() {
                // The same hierarchy may be mounted twice: keep the first mount.
                "cgroup2" if v2.is_none() => {
                    if let Some(own) = &own_v2 {
                        v2 = Some(Hierarchy {
                            version: Version::V2,
                            mount_point,
                            mount_root,
                            controllers: Vec::new(),
                            own_cgroup: own.clone(),
                        });
                    }
                }
                "cgroup" => {
                    // The super options name the controllers; in `Controller::ALL` order.
                    let controllers: Vec<String> = Controller::ALL
                        .iter()
                        .map(|c| c.v1_name())
                        .filter(|name| m.super_options.contains_key(*name))
                        .map(str::to_owned)
                        .collect();
                    let Some(first) = controllers.first() else { continue };
                    // The same hierarchy may be mounted twice: keep the first mount.
                    if v1.iter().any(|h: &Hierarchy| h.has(first)) {
                        continue;
                    }
                    let Some(own) = own_v1.get(first) else { continue };
                    v1.push(Hierarchy {
                        version: Version::V1,
                        mount_point,
                        mount_root,
                        controllers,
                        own_cgroup: own.clone(),
                    });
                }
                _ => {}
            }
        }
        let layout = match (v1.is_empty(), v2.is_some()) {
            (false, false) => Layout::V1,
            (true, true) => Layout::V2,
            (false, true) => Layout::Hybrid,
            (true, false) => return Err(Error::NoHierarchy),
        };
        Ok(Hierarchies { layout, v1, v2 })
    }

    /// Where `controller` is managed: its v1 hierarchy if one has it, else v2 when v2
    /// provides it (listed in the v2 root's `cgroup.controllers`, or core / BPF / implicit).
    pub fn locate(&self, controller: Controller) -> Option<Location<'_>> {
        if let Some(h) = self.v1.iter().find(|h| h.has(controller.v1_name())) {
            return Some(Location::V1(h));
        }
        let v2 = self.v2.as_ref()?;
        match controller.v2() {
            V2Support::Enabled(name) if v2.has(name) => Some(Location::V2(v2)),
            // A v2 cpu.stat exists without the cpu controller enabled.
            V2Support::Enabled("cpu") if controller == Controller::Cpuacct => Some(Location::V2(v2)),
            V2Support::Core | V2Support::Bpf | V2Support::Implicit => Some(Location::V2(v2)),
            _ => None,
        }
    }

    /// [`Hierarchies::locate`], or a typed error naming the controller and what was looked at.
    pub fn require(&self, controller: Controller) -> Result<Location<'_>> {
        self.locate(controller)
            .ok_or_else(|| Error::ControllerUnavailable { controller, detail: self.describe_search(controller) })
    }

    fn describe_search(&self, controller: Controller) -> String {
        let v1: Vec<String> = self.v1.iter().map(|h| h.mount_point.display().to_string()).collect();
        let v2 = match (&self.v2, controller.v2()) {
            (Some(h), V2Support::Enabled(name)) => {
                format!("v2 at {} offers [{}], not {name}", h.mount_point.display(), h.controllers.join(" "))
            }
            (Some(_), V2Support::None) => "v2 has no equivalent".to_owned(),
            (Some(_), _) => "v2 present".to_owned(),
            (None, _) => "no v2 hierarchy".to_owned(),
        };
        format!("no v1 hierarchy with {controller} among [{}]; {v2}", v1.join(", "))
    }
}

const MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// The last [`Hierarchies::discover`] of this process and the files it was made from.
static LAST_DISCOVERY: Mutex<Option<Discovery>> = Mutex::new(None);

struct Discovery {
    mountinfo: String,
    proc_cgroup: String,
    /// The v2 root's `cgroup.controllers`, if there is a v2 hierarchy.
    v2_controllers: Option<String>,
    found: Hierarchies,
}

fn read(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    fs::read_to_string(path).sys_at("read", path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (exactly three octal
/// digits, at most `\377`); anything else is kept as it is.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a multi-byte character after the backslash is no char
        // boundary to slice at (found by the cgroup_files fuzz target).
        if let [b'\\', d0 @ b'0'..=b'3', d1 @ b'0'..=b'7', d2 @ b'0'..=b'7', ..] = b[i..] {
            out.push((d0 - b'0') << 6 | (d1 - b'0') << 3 | (d2 - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_is_found_with_own_paths() {
        let mut h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap();
        assert_eq!(h.layout, Layout::Hybrid);
        assert_eq!(h.v1.len(), 4, "named systemd hierarchy is skipped");
        h.v2.as_mut().unwrap().controllers = vec!["hugetlb".into()];
        let mem = h.locate(Controller::Memory).unwrap();
        assert_eq!(mem.version(), Version::V1);
        assert_eq!(mem.hierarchy().own_dir().unwrap(), Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(h.locate(Controller::Hugetlb).unwrap().version(), Version::V2);
        assert_eq!(h.locate(Controller::Freezer).unwrap().version(), Version::V2);
        assert!(h.locate(Controller::NetCls).is_none());
        let err = h.require(Controller::NetCls).unwrap_err().to_string();
        assert!(err.contains("net_cls") && err.contains("no equivalent"), "{err}");
    }

    #[test]
    fn pure_v2_and_namespaced_roots() {
        let mi = "30 25 0:26 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchies::parse(mi, "0::/user.slice/me.scope\n").unwrap();
        assert_eq!(h.layout, Layout::V2);
        let v2 = h.v2.as_ref().unwrap();
        assert_eq!(v2.own_dir().unwrap(), Path::new("/sys/fs/cgroup/me.scope"));
        assert_eq!(v2.dir_of(Path::new("/other")), None);
        assert_eq!(v2.dir_of(Path::new("/user.slice/../../etc")), None);
        assert_eq!(v2.dir_of(Path::new("user.slice/x")), None);
        assert_eq!(v2.dir_of(Path::new("/user.slice/./x")), Some(PathBuf::from("/sys/fs/cgroup/x")));
    }

    /// Found by the cgroup_files fuzz target (fuzz/regressions/cgroup_files/): a backslash
    /// followed by a multi-byte character made `unescape` slice inside that character and
    /// panic; `\+12` passed for an octal escape.
    #[test]
    fn unescape_takes_only_three_octal_digits() {
        assert_eq!(unescape("/nk\\04\u{507}"), "/nk\\04\u{507}");
        assert_eq!(unescape("/a\\\u{e9}xyz"), "/a\\\u{e9}xyz");
        assert_eq!(unescape("/a\\+12"), "/a\\+12");
        assert_eq!(unescape("/a\\400"), "/a\\400");
        assert_eq!(unescape("/a\\134b\\011c\\012"), "/a\\b\tc\n");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        let mi = "35 28 0:33 /nk\\04\u{507} /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let h = Hierarchies::parse(mi, "12:pids:/nk\\04\u{507}/y\n").unwrap();
        assert_eq!(h.v1[0].mount_root, Path::new("/nk\\04\u{507}"));
    }

    /// Found by the cgroup_files fuzz target (fuzz/regressions/cgroup_files/empty-mount-root):
    /// a mountinfo line with an empty root field (two spaces) gave a mount root of "", which
    /// every path "starts with", so `own_dir` was the cgroup path itself — `/user.slice`, a
    /// directory outside the cgroup mount.
    #[test]
    fn an_empty_mount_root_shows_nothing() {
        let mi = "29 28 0:27  //sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::parse(mi, "0::/user.slice\n").unwrap();
        let v2 = h.v2.as_ref().unwrap();
        assert_eq!(v2.mount_root, Path::new(""));
        assert_eq!(v2.own_dir(), None);
        assert_eq!(v2.dir_of(Path::new("/user.slice")), None);
    }

    #[test]
    fn escaped_mount_points() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert!(Hierarchies::parse("", "").is_err());
        // Through procfs-core: the escapes are undone, the controllers come in a fixed order,
        // and a malformed line is a typed parse error, not a panic.
        let mi = "36 31 0:33 / /sys/fs/cgroup/net\\040x rw - cgroup cgroup rw,net_prio,net_cls\n";
        let h = Hierarchies::parse(mi, "3:net_cls,net_prio:/\n").unwrap();
        assert_eq!(h.v1[0].mount_point, Path::new("/sys/fs/cgroup/net x"));
        assert_eq!(h.v1[0].controllers, ["net_cls", "net_prio"]);
        assert!(matches!(
            Hierarchies::parse("x 1 0:2 / /c rw - cgroup2 cgroup2 rw\n", "0::/\n"),
            Err(Error::Parse { .. })
        ));
        assert!(matches!(Hierarchies::parse("garbage\n", "0::/\n"), Err(Error::NoHierarchy)), "not a cgroup mount");
        assert!(matches!(Hierarchies::parse(mi, "x:y\n"), Err(Error::Parse { .. })));
    }
}
