//! Whiteout helpers and in-place conversion between the AUFS and overlay formats, on real
//! files (root: 0/0 char devices and `trusted.*` xattrs).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::layers_util::*;
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{Error, OPAQUE_MARKER, UnsafeEntry, WhiteoutFormat, convert};

fn is_chardev_00(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0 && m.mode() & 0o7777 == 0)
}

/// Whiteouts are created anew by a round trip: compare them without their times.
fn snapshot_cmp(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Snap> {
    let mut s = snapshot(root, true);
    for (p, v) in s.iter_mut() {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(".wh.") || (v.kind == 'c' && v.rdev == 0) {
            v.mtime = None;
        }
    }
    s
}

/// A canonical AUFS layer: no redundant whiteouts.
fn aufs_layer(root: &Path) {
    aufs_whiteout(root, "gone");
    file(root, "d/.wh..wh..opq", "", 0o644);
    file(root, "d/keep", "k", 0o600);
    aufs_whiteout(root, "e/x");
    file(root, "e/y", "y", 0o644);
    aufs_whiteout(root, "a/b/c/z");
    symlink(root, "a/link", "../e");
    file(root, "a/b/c/.wh..wh..opq", "", 0o644);
}

#[test]
fn aufs_to_overlay_and_back_round_trips() {
    require_root!();
    let t = TempDir::new("wh-rt").unwrap();
    let l = t.join("layer");
    aufs_layer(&l);
    let before = snapshot_cmp(&l);

    assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay).unwrap(), 5);
    assert!(is_chardev_00(&l.join("gone")));
    assert!(is_chardev_00(&l.join("e/x")));
    // In an opaque dir the whiteout hides nothing: dropped.
    assert!(fs::symlink_metadata(l.join("a/b/c/z")).is_err());
    assert_eq!(xattrs(&l.join("d")).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert_eq!(xattrs(&l.join("a/b/c")).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert!(nook_unionfs::is_opaque(&l.join("d"), WhiteoutFormat::Overlay).unwrap());
    assert!(!nook_unionfs::is_opaque(&l.join("e"), WhiteoutFormat::Overlay).unwrap());
    let left: Vec<_> = snapshot(&l, false).into_keys().filter(|p| p.to_string_lossy().contains(".wh.")).collect();
    assert!(left.is_empty(), "AUFS names left: {left:?}");

    // Back: the dropped whiteout does not come back; the rest is as it was.
    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs).unwrap(), 4);
    let mut expected = before.clone();
    expected.remove(Path::new("a/b/c/.wh.z"));
    let after = snapshot_cmp(&l);
    assert_eq!(after, expected);
    assert!(xattrs(&l.join("d")).is_empty());

    // A second round trip is exact.
    assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::OverlayUserXattr).unwrap(), 4);
    assert_eq!(xattrs(&l.join("d")).get("user.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert!(!xattrs(&l.join("d")).contains_key("trusted.overlay.opaque"));
    assert_eq!(convert(&l, WhiteoutFormat::OverlayUserXattr, WhiteoutFormat::Aufs).unwrap(), 4);
    assert_eq!(snapshot_cmp(&l), expected);
}

#[test]
fn overlay_to_aufs_and_back_round_trips() {
    require_root!();
    let t = TempDir::new("wh-rt2").unwrap();
    let l = t.join("layer");
    chardev_whiteout(&l, "w1");
    chardev_whiteout(&l, "sub/w2");
    file(&l, "sub/f", "f", 0o640);
    dir(&l, "opq/inner");
    xattr(&l, "opq", "trusted.overlay.opaque", b"y");
    xattr(&l, "sub", "user.keep", b"me");
    dir(&l, "notopq");
    xattr(&l, "notopq", "trusted.overlay.opaque", b"yes");
    let before = snapshot_cmp(&l);

    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs).unwrap(), 3);
    assert!(
        l.join(".wh.w1").is_file() && l.join("sub/.wh.w2").is_file() && l.join("opq").join(OPAQUE_MARKER).is_file()
    );
    assert!(fs::symlink_metadata(l.join("w1")).is_err());
    assert_eq!(xattrs(&l.join("sub")).get("user.keep").map(Vec::as_slice), Some(&b"me"[..]));
    // A value other than "y" is not opaque and is left alone.
    assert!(!l.join("notopq").join(OPAQUE_MARKER).exists());

    assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay).unwrap(), 3);
    assert_eq!(snapshot_cmp(&l), before);

    // trusted <-> user xattrs, chardevs kept.
    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::OverlayUserXattr).unwrap(), 3);
    assert_eq!(xattrs(&l.join("opq")).get("user.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert!(is_chardev_00(&l.join("sub/w2")));
    assert_eq!(convert(&l, WhiteoutFormat::OverlayUserXattr, WhiteoutFormat::Overlay).unwrap(), 3);
    assert_eq!(snapshot_cmp(&l), before);
    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Overlay).unwrap(), 0);
}

#[test]
fn xwhiteouts_convert_to_aufs_and_x_marks_go() {
    require_root!();
    let t = TempDir::new("wh-xw").unwrap();
    let l = t.join("layer");
    file(&l, "d/xw", "", 0o644);
    xattr(&l, "d/xw", "trusted.overlay.whiteout", b"");
    xattr(&l, "d", "trusted.overlay.opaque", b"x");
    file(&l, "d/notxw", "data", 0o644);
    xattr(&l, "d/notxw", "trusted.overlay.whiteout", b"");
    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs).unwrap(), 1);
    assert!(l.join("d/.wh.xw").is_file() && !l.join("d/xw").exists());
    assert!(!l.join("d").join(OPAQUE_MARKER).exists());
    assert!(!xattrs(&l.join("d")).contains_key("trusted.overlay.opaque"));
    // Not zero-size: not a whiteout.
    assert_eq!(fs::read(l.join("d/notxw")).unwrap(), b"data");
}

#[test]
fn same_dir_marker_whiteouts_and_siblings() {
    require_root!();
    let t = TempDir::new("wh-same").unwrap();
    let l = t.join("layer");
    // Root: opaque marks on a layer root are ignored by overlay, so whiteouts there are kept.
    file(&l, OPAQUE_MARKER, "", 0o644);
    aufs_whiteout(&l, "rootgone");
    // `.wh.X` beside a dir X: X replaces the dirs below (opaque).
    dir(&l, "rep/inside");
    aufs_whiteout(&l, "rep");
    // `.wh.X` beside a file X: nothing to do.
    file(&l, "f", "f", 0o644);
    aufs_whiteout(&l, "f");
    // Marker and whiteouts in one (non-root) dir.
    file(&l, "m/.wh..wh..opq", "", 0o644);
    aufs_whiteout(&l, "m/a");
    aufs_whiteout(&l, "m/b");
    file(&l, "m/c", "c", 0o644);
    assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay).unwrap(), 7);
    assert!(is_chardev_00(&l.join("rootgone")));
    assert_eq!(xattrs(&l).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert!(l.join("rep/inside").is_dir());
    assert_eq!(xattrs(&l.join("rep")).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
    assert_eq!(fs::read(l.join("f")).unwrap(), b"f");
    let names: Vec<_> = fs::read_dir(l.join("m")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![OsStr::new("c")]);
    assert_eq!(xattrs(&l.join("m")).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));
}

#[test]
fn bad_whiteouts_are_refused_before_anything_changes() {
    require_root!();
    for bad in [".wh.", ".wh..", ".wh..."] {
        let t = TempDir::new("wh-bad").unwrap();
        let l = t.join("layer");
        aufs_whiteout(&l, "ok");
        file(&l, &format!("sub/{bad}"), "", 0o644);
        let before = snapshot(&l, true);
        match convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay) {
            Err(Error::Unsafe { entry, reason: UnsafeEntry::BadWhiteout }) => {
                assert_eq!(entry, l.join("sub").join(bad))
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(snapshot(&l, true), before, "{bad}: layer changed");
    }
}

#[test]
fn names_aufs_cannot_hold_are_refused() {
    require_root!();
    let t = TempDir::new("wh-unc").unwrap();
    let l = t.join("layer");
    chardev_whiteout(&l, "w");
    file(&l, "d/.wh.real", "x", 0o644);
    let before = snapshot(&l, true);
    assert!(matches!(
        convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs),
        Err(Error::Unconvertible { format: WhiteoutFormat::Aufs, .. })
    ));
    assert_eq!(snapshot(&l, true), before);
}

#[test]
fn conversion_never_follows_symlinks() {
    require_root!();
    let t = TempDir::new("wh-sym").unwrap();
    let outside = t.join("outside");
    aufs_whiteout(&outside, "victim");
    file(&outside, "victim", "v", 0o644);
    file(&outside, OPAQUE_MARKER, "", 0o644);
    chardev_whiteout(&outside, "odev");
    dir(&outside, "odir");
    xattr(&outside, "odir", "trusted.overlay.opaque", b"y");
    let before = snapshot(&outside, true);

    let l = t.join("layer");
    symlink(&l, "abs", outside.to_str().unwrap());
    symlink(&l, "sub/rel", "../../outside");
    aufs_whiteout(&l, "mine");
    // A whiteout for the symlink itself: a non-dir beside it, nothing to create.
    aufs_whiteout(&l, "abs");

    assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay).unwrap(), 2);
    assert!(is_chardev_00(&l.join("mine")));
    assert!(fs::symlink_metadata(l.join("abs")).unwrap().file_type().is_symlink());
    assert_eq!(snapshot(&outside, true), before);
    assert_eq!(convert(&l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs).unwrap(), 1);
    assert_eq!(snapshot(&outside, true), before);
}

#[test]
fn helpers_create_and_detect() {
    require_root!();
    let t = TempDir::new("wh-help").unwrap();
    let d = t.join("d");
    dir(&d, "");
    nook_unionfs::create_whiteout(&d, OsStr::new("a"), WhiteoutFormat::Overlay).unwrap();
    assert!(is_chardev_00(&d.join("a")));
    assert!(nook_unionfs::is_overlay_whiteout(&fs::symlink_metadata(d.join("a")).unwrap()));
    nook_unionfs::create_whiteout(&d, OsStr::new("b"), WhiteoutFormat::Aufs).unwrap();
    assert!(d.join(".wh.b").is_file());
    assert!(nook_unionfs::create_whiteout(&d, OsStr::new(".."), WhiteoutFormat::Aufs).is_err());
    assert!(nook_unionfs::create_whiteout(&d, OsStr::new("a"), WhiteoutFormat::Overlay).is_err());
    for f in [WhiteoutFormat::Aufs, WhiteoutFormat::Overlay, WhiteoutFormat::OverlayUserXattr] {
        let o = t.join(format!("o{f:?}"));
        dir(&o, "");
        assert!(!nook_unionfs::is_opaque(&o, f).unwrap());
        nook_unionfs::set_opaque(&o, f).unwrap();
        nook_unionfs::set_opaque(&o, f).unwrap();
        assert!(nook_unionfs::is_opaque(&o, f).unwrap());
    }
    // "x" is not opaque.
    dir(&d, "x");
    xattr(&d, "x", "trusted.overlay.opaque", b"x");
    assert!(!nook_unionfs::is_opaque(&d.join("x"), WhiteoutFormat::Overlay).unwrap());
}

/// Since Linux 5.8 the kernel lets anyone create a 0/0 char device (a whiteout), so without
/// CAP_MKNOD whiteouts still work ([`Error::MknodDenied`] is what older kernels give); a real
/// device node is refused (see `tests/vfs.rs`).
#[test]
fn overlay_whiteouts_without_cap_mknod() {
    require_root!();
    let t = TempDir::new("wh-cap").unwrap();
    let l = t.join("layer");
    aufs_whiteout(&l, "gone");
    without_cap_mknod(|| {
        let dev = rustix::fs::mknodat(
            rustix::fs::CWD,
            l.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(1, 3),
        );
        assert_eq!(dev, Err(rustix::io::Errno::PERM), "CAP_MKNOD was not dropped");
        match nook_unionfs::create_whiteout(&l, OsStr::new("x"), WhiteoutFormat::Overlay) {
            Ok(()) => {
                assert!(is_chardev_00(&l.join("x")));
                assert_eq!(convert(&l, WhiteoutFormat::Aufs, WhiteoutFormat::Overlay).unwrap(), 1);
                assert!(is_chardev_00(&l.join("gone")));
            }
            Err(Error::MknodDenied { path, .. }) => assert_eq!(path, l.join("x")),
            Err(e) => panic!("{e}"),
        }
    });
}
