//! Crafted hostile tars are refused with a typed error, and nothing appears (or changes)
//! outside the layer dir.

use crate::tweak;
use std::fs;
use std::path::Path;

use crate::tarutil::{Arena, Tar};
use nook_unionfs::{ApplyOptions, Error, UnsafeEntry, WhiteoutFormat, apply_layer};
use tar::EntryType;

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
    let ov = tweak(ApplyOptions::default(), |o| o.whiteouts = Some(WhiteoutFormat::Overlay));
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
    a.refuses(&t.finish(), opts(), UnsafeEntry::DeviceNode, "sda");
}
