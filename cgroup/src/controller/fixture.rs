//! Unit-test fixtures: a temp dir laid out like a cgroup directory (plain files named like
//! the kernel's), reached through a [`Dir`] exactly as a real cgroup directory is, so a
//! controller's writes and reads run unprivileged (as youki's libcgroups tests do). A write
//! lands in the plain file, where the test reads it back; stat files hold fixture text.

use std::os::fd::OwnedFd;

use nook_testutil::TempDir;

use crate::cgroup::Dir;
use crate::hierarchy::Version;

/// A fake cgroup directory `nk-cg` in a temp dir.
pub(crate) struct Fixture {
    _tmp: TempDir,
    pub(crate) dir: Dir,
}

impl Fixture {
    /// A directory of `version` with these files (`(name, content)`); only files that
    /// exist can be written, as in cgroupfs.
    pub(crate) fn new(version: Version, files: &[(&str, &str)]) -> Fixture {
        let tmp = TempDir::new("cgfix").expect("temp dir");
        let path = tmp.join("nk-cg");
        std::fs::create_dir(&path).expect("mkdir");
        for (name, content) in files {
            std::fs::write(path.join(name), content).expect("write fixture file");
        }
        let parent: OwnedFd = std::fs::File::open(tmp.path()).expect("open temp dir").into();
        let dir = Dir::open(parent, "nk-cg".into(), path, version, Vec::new()).expect("open fixture dir");
        Fixture { _tmp: tmp, dir }
    }

    /// The content of `file` now.
    pub(crate) fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path.join(file)).expect("read fixture file")
    }
}
