//! Crafted hostile tars are refused with a typed error, and nothing appears (or changes)
//! outside the layer dir.

mod tarutil;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nook_testutil::TempDir;
use nook_unionfs::{ApplyOptions, Error, UnsafeEntry, WhiteoutFormat, apply_layer};
use tar::EntryType;
use tarutil::{Node, Tar, snapshot};

/// A temp dir with a `layer/` to apply into and a `canary/` beside it.
struct Arena {
    tmp: TempDir,
}

impl Arena {
    fn new(tag: &str) -> Arena {
        let tmp = TempDir::new(tag).unwrap();
        fs::create_dir(tmp.join("layer")).unwrap();
        fs::create_dir(tmp.join("canary")).unwrap();
        fs::write(tmp.join("canary/secret"), b"do not touch").unwrap();
        fs::write(tmp.join("canary/passwd"), b"root:x:0:0").unwrap();
        Arena { tmp }
    }

    fn layer(&self) -> PathBuf {
        self.tmp.join("layer")
    }

    fn canary(&self) -> PathBuf {
        self.tmp.join("canary")
    }

    /// Everything in the temp dir except what is inside `layer/`.
    fn outside(&self) -> BTreeMap<PathBuf, Node> {
        let mut s = snapshot(self.tmp.path());
        s.retain(|k, _| !k.starts_with("layer/"));
        s
    }

    /// Applies `tar` expecting `reason`; checks nothing outside the layer changed.
    #[track_caller]
    fn refuses(&self, tar: &[u8], options: ApplyOptions<'_>, reason: UnsafeEntry, bad_entry: &str) {
        let before = self.outside();
        let parent_before = fs::metadata(self.tmp.path().parent().unwrap()).unwrap();
        let r = apply_layer(tar, &self.layer(), options);
        match r {
            Err(Error::Unsafe { entry, reason: got }) => {
                assert_eq!(got, reason, "entry {entry:?}");
                assert_eq!(entry.as_os_str().as_bytes(), bad_entry.as_bytes(), "the refused entry is named");
            }
            other => panic!("expected Unsafe({reason:?}), got {other:?}"),
        }
        let after = self.outside();
        tarutil::assert_same_tree(&before, &after, "outside the layer dir");
        assert_eq!(fs::metadata(self.canary().join("secret")).unwrap().nlink(), 1, "no hardlink to the canary");
        let parent_after = fs::metadata(self.tmp.path().parent().unwrap()).unwrap();
        assert_eq!(parent_before.ino(), parent_after.ino());
    }
}

fn opts() -> ApplyOptions<'static> {
    ApplyOptions::default()
}

/// The canary dir's path as seen from `/`, without the leading slash.
fn from_root(p: &Path) -> String {
    p.strip_prefix("/").unwrap().to_str().unwrap().to_string()
}

#[test]
fn refuses_parent_dir_escape() {
    let a = Arena::new("nkhparent");
    let mut t = Tar::new();
    t.file("ok", b"fine").raw(EntryType::Regular, b"../canary/pwned", None, b"pwned");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ParentDir, "../canary/pwned");
    assert!(!a.canary().join("pwned").exists());

    let mut t = Tar::new();
    t.raw(EntryType::Regular, b"../../x", None, b"x");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ParentDir, "../../x");

    let mut t = Tar::new();
    t.raw(EntryType::Directory, b"a/../../canary/newdir/", None, b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ParentDir, "a/../../canary/newdir/");
}

#[test]
fn refuses_absolute_names() {
    let a = Arena::new("nkhabs");
    let target = a.canary().join("abs-pwned");
    let name = target.to_str().unwrap().to_string();
    let mut t = Tar::new();
    t.raw(EntryType::Regular, name.as_bytes(), None, b"pwned");
    a.refuses(&t.finish(), opts(), UnsafeEntry::Absolute, &name);
    assert!(!target.exists());
    assert!(!a.layer().join(from_root(&target)).exists(), "not stripped either");
}

#[test]
fn refuses_writing_through_an_absolute_symlink() {
    let a = Arena::new("nkhthrough");
    // l -> /, then l/<path of canary>/pwned: would land in the canary if followed.
    let name = format!("l/{}/pwned", from_root(&a.canary()));
    let mut t = Tar::new();
    t.symlink("l", "/").raw(EntryType::Regular, name.as_bytes(), None, b"pwned");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ThroughSymlink, &name);
    assert!(!a.canary().join("pwned").exists());
    // The symlink itself is fine (absolute targets are allowed inside a rootfs).
    assert_eq!(fs::read_link(a.layer().join("l")).unwrap(), Path::new("/"));

    // The classic: l -> / then l/etc/passwd (checked against a symlink to the canary dir, so a
    // bug could not damage the host's /etc).
    let mut t = Tar::new();
    t.symlink("etc", a.canary().to_str().unwrap()).raw(EntryType::Regular, b"etc/passwd", None, b"pwned");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ThroughSymlink, "etc/passwd");
    assert_eq!(fs::read(a.canary().join("passwd")).unwrap(), b"root:x:0:0");
}

#[test]
fn refuses_writing_through_a_symlink_already_in_the_layer() {
    let a = Arena::new("nkhexisting");
    std::os::unix::fs::symlink(a.canary(), a.layer().join("d")).unwrap();
    let mut t = Tar::new();
    t.file("d/pwned", b"pwned");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ThroughSymlink, "d/pwned");
    // Also for a relative symlink that stays inside, and for whiteouts.
    fs::create_dir(a.layer().join("real")).unwrap();
    std::os::unix::fs::symlink("real", a.layer().join("alias")).unwrap();
    let mut t = Tar::new();
    t.file("alias/x", b"x");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ThroughSymlink, "alias/x");
    let mut t = Tar::new();
    t.file("d/.wh.secret", b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::ThroughSymlink, "d/.wh.secret");
    assert!(a.canary().join("secret").exists());
    let mut t = Tar::new();
    t.file("d/.wh.secret", b"");
    let ov = ApplyOptions { whiteouts: Some(WhiteoutFormat::Overlay), ..Default::default() };
    a.refuses(&t.finish(), ov, UnsafeEntry::ThroughSymlink, "d/.wh.secret");
}

#[test]
fn refuses_symlinks_climbing_out() {
    let a = Arena::new("nkhsymesc");
    let mut t = Tar::new();
    t.symlink("l", "../../..");
    a.refuses(&t.finish(), opts(), UnsafeEntry::SymlinkEscape, "l");
    assert!(fs::symlink_metadata(a.layer().join("l")).is_err(), "nothing written for it");
    let mut t = Tar::new();
    t.dir("a", 0o755).symlink("a/up", "../../canary");
    a.refuses(&t.finish(), opts(), UnsafeEntry::SymlinkEscape, "a/up");
    // Within the root is fine.
    let mut t = Tar::new();
    t.dir("b", 0o755).symlink("b/up", "../a").symlink("b/abs", "/etc/passwd");
    apply_layer(&t.finish()[..], &a.layer(), opts()).unwrap();
}

#[test]
fn refuses_hardlinks_outside() {
    let a = Arena::new("nkhhard");
    let mut t = Tar::new();
    t.raw(EntryType::Link, b"h", Some(b"../../etc/passwd"), b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::HardlinkEscape, "h");
    let mut t = Tar::new();
    t.raw(EntryType::Link, b"h", Some(b"../canary/secret"), b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::HardlinkEscape, "h");
    let abs = a.canary().join("secret");
    let mut t = Tar::new();
    t.raw(EntryType::Link, b"h", Some(abs.to_str().unwrap().as_bytes()), b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::HardlinkEscape, "h");
    // Through a symlink placed earlier in the same tar.
    let mut t = Tar::new();
    t.symlink("c", a.canary().to_str().unwrap()).raw(EntryType::Link, b"h", Some(b"c/secret"), b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::HardlinkEscape, "h");
    // To something missing.
    let mut t = Tar::new();
    t.raw(EntryType::Link, b"h", Some(b"no/such/file"), b"");
    a.refuses(&t.finish(), opts(), UnsafeEntry::HardlinkEscape, "h");
    assert!(fs::symlink_metadata(a.layer().join("h")).is_err());
}

#[test]
fn refuses_symlink_loops() {
    let a = Arena::new("nkhloop");
    let mut t = Tar::new();
    t.symlink("a", "b").symlink("b", "a").raw(EntryType::Regular, b"a/x", None, b"x");
    a.refuses(&t.finish(), opts(), UnsafeEntry::SymlinkLoop, "a/x");
    let mut t = Tar::new();
    t.symlink("self", "self").file("self/y", b"y");
    a.refuses(&t.finish(), opts(), UnsafeEntry::SymlinkLoop, "self/y");
}

#[test]
fn refuses_a_10000_deep_path_quickly_and_creates_nothing() {
    let a = Arena::new("nkhdeep");
    let name = "d/".repeat(10_000) + "f";
    let mut t = Tar::new();
    t.raw(EntryType::Regular, name.as_bytes(), None, b"deep");
    a.refuses(&t.finish(), opts(), UnsafeEntry::TooDeep, &name);
    assert_eq!(fs::read_dir(a.layer()).unwrap().count(), 0, "no directory created");
    // Also as a directory entry and with a GNU long name.
    let mut t = Tar::new();
    t.dir(&"x/".repeat(10_000), 0o755);
    let err = apply_layer(&t.finish()[..], &a.layer(), opts()).unwrap_err();
    assert!(matches!(err, Error::Unsafe { reason: UnsafeEntry::TooDeep, .. }), "{err:?}");
    assert_eq!(fs::read_dir(a.layer()).unwrap().count(), 0);
}

#[test]
fn refuses_bad_whiteouts() {
    let a = Arena::new("nkhbadwh");
    for name in ["x/.wh..", "x/.wh.", ".wh..."] {
        let mut t = Tar::new();
        t.raw(EntryType::Regular, name.as_bytes(), None, b"");
        a.refuses(&t.finish(), opts(), UnsafeEntry::BadWhiteout, name);
    }
    // `.wh...` would otherwise delete the parent of the layer.
    assert!(a.canary().exists() && a.layer().exists());
}

#[test]
fn refuses_device_nodes_when_not_allowed() {
    let a = Arena::new("nkhdev");
    let mut t = Tar::new();
    t.device("sda", EntryType::Block, 8, 0);
    let o = ApplyOptions { allow_devices: Some(false), ..Default::default() };
    a.refuses(&t.finish(), o, UnsafeEntry::DeviceNode, "sda");
}
