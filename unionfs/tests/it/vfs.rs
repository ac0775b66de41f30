//! The copy driver: `materialize` gives exactly the union (as UnionView sees it) and keeps
//! modes, owners, times, xattrs, hardlinks, symlinks and special files (root).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layers_util::*;
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{EntryKind, Error, UnionView, ValidationError, WhiteoutFormat, convert, materialize};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

fn set_times(p: &Path, atime: i64, mtime: i64) {
    let t = Timestamps {
        last_access: Timespec { tv_sec: atime, tv_nsec: 11 },
        last_modification: Timespec { tv_sec: mtime, tv_nsec: 22 },
    };
    rustix::fs::utimensat(CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn mknod(p: &Path, ft: FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(CWD, p, ft, Mode::from_raw_mode(mode), dev).unwrap();
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Two layers with every kind of entry and attribute; whiteouts and opaque dirs in overlay
/// format.
fn rich_stack(root: &Path) -> Vec<PathBuf> {
    let (l0, l1) = (root.join("l0"), root.join("l1"));
    file(&l0, "bin/sh", "#!sh", 0o4755);
    chown(&l0.join("bin/sh"), 1000, 1001);
    // (chown cleared the set-uid bit)
    fs::set_permissions(l0.join("bin/sh"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    xattr(&l0, "bin/sh", "user.a", b"1");
    xattr(&l0, "bin/sh", "trusted.t", b"2");
    xattr(&l0, "bin/sh", "trusted.overlay.junk", b"no");
    set_times(&l0.join("bin/sh"), 1_000_000, 1_000_001);
    fs::hard_link(l0.join("bin/sh"), l0.join("bin/sh2")).unwrap();
    fs::hard_link(l0.join("bin/sh"), l0.join("bin/sh3")).unwrap();
    symlink(&l0, "lib", "usr/lib");
    chown(&l0.join("lib"), 7, 8);
    set_times(&l0.join("lib"), 1_000_010, 1_000_011);
    dir(&l0, "dev");
    mknod(&l0.join("dev/null"), FileType::CharacterDevice, 0o666, rustix::fs::makedev(1, 3));
    mknod(&l0.join("dev/fifo"), FileType::Fifo, 0o620, 0);
    mknod(&l0.join("dev/sock"), FileType::Socket, 0o600, 0);
    chown(&l0.join("dev/fifo"), 3, 4);
    file(&l0, "etc/passwd", "root", 0o644);
    file(&l0, "etc/old", "old", 0o644);
    file(&l0, "run/pid", "1", 0o644);
    file(&l0, "usr/lib/libc", "libc", 0o755);
    file(&l0, "big", &"0123456789".repeat(100_000), 0o644);
    file(&l0, "empty", "", 0o600);

    file(&l1, "bin/sh3", "other", 0o755);
    file(&l1, "etc/hosts", "127.0.0.1", 0o644);
    xattr(&l1, "etc", "trusted.overlay.opaque", b"y");
    xattr(&l1, "etc", "user.d", b"dir");
    chown(&l1.join("etc"), 5, 6);
    fs::set_permissions(l1.join("etc"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    chardev_whiteout(&l1, "run");
    file(&l1, "usr/lib/libm", "libm", 0o755);
    file(&l1, "usr/lib/lowlink", "", 0o644);
    fs::hard_link(l1.join("usr/lib/lowlink"), l1.join("usr/lib/lowlink2")).unwrap();
    dir(&l1, "ro");
    file(&l1, "ro/inside", "x", 0o400);
    fs::set_permissions(l1.join("ro"), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    for d in ["etc", "usr/lib", "usr", "ro", "bin", ""] {
        set_times(&l1.join(d), 1_000_100, 1_000_200);
    }
    xattr(&l1, "", "user.root", b"top");
    vec![l0, l1]
}

fn without_overlay_xattrs(mut s: Snap) -> Snap {
    s.xattrs.retain(|k, _| !k.starts_with("trusted.overlay.") && !k.starts_with("user.overlay."));
    s
}

/// Every union path (and the root) in `target` is what the view says, with the source's
/// attributes; nothing else is in `target`.
fn assert_is_union(view: &UnionView, target: &Path) {
    let mut expected = vec![(PathBuf::new(), view.lookup(Path::new("")).unwrap().unwrap())];
    expected.extend(view.walk().unwrap());
    let got = snapshot(target, true);
    let want: Vec<&PathBuf> = expected.iter().map(|(p, _)| p).collect();
    let have: Vec<&PathBuf> = got.keys().collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(have, want_sorted);
    for (p, e) in &expected {
        let src = without_overlay_xattrs(snap_one(&e.real_path, true).unwrap());
        assert_eq!(got[p], src, "{p:?} (from {:?})", e.real_path);
        let kind = EntryKind::from_file_type(fs::symlink_metadata(target.join(p)).unwrap().file_type());
        assert_eq!(kind, e.kind, "{p:?}");
    }
}

#[test]
fn materialize_copies_exactly_the_union() {
    require_root!();
    let t = TempDir::new("vfs-rich").unwrap();
    let layers = rich_stack(t.path());
    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
    materialize(&refs, WhiteoutFormat::Overlay, &target).unwrap();
    // (before anything reads the files: a read may update atime)
    let sh = fs::symlink_metadata(target.join("bin/sh")).unwrap();
    assert_eq!((sh.atime(), sh.atime_nsec(), sh.mtime(), sh.mtime_nsec()), (1_000_000, 11, 1_000_001, 22));
    let view = UnionView::new(layers.clone(), WhiteoutFormat::Overlay);
    assert_is_union(&view, &target);

    // Spot checks of what assert_is_union covers, so a failure is easy to read.
    let sh = fs::symlink_metadata(target.join("bin/sh")).unwrap();
    assert_eq!((sh.mode() & 0o7777, sh.uid(), sh.gid()), (0o4755, 1000, 1001));
    let x = xattrs(&target.join("bin/sh"));
    assert_eq!(x.get("user.a").map(Vec::as_slice), Some(&b"1"[..]));
    assert_eq!(x.get("trusted.t").map(Vec::as_slice), Some(&b"2"[..]));
    assert!(!x.contains_key("trusted.overlay.junk"));
    // Hardlinks within a layer are kept; the one replaced by the upper layer is not linked.
    let sh2 = fs::symlink_metadata(target.join("bin/sh2")).unwrap();
    assert_eq!((sh2.ino(), sh.nlink()), (sh.ino(), 2));
    assert_eq!(fs::read_to_string(target.join("bin/sh3")).unwrap(), "other");
    let (a, b) = (target.join("usr/lib/lowlink"), target.join("usr/lib/lowlink2"));
    assert_eq!(fs::symlink_metadata(a).unwrap().ino(), fs::symlink_metadata(b).unwrap().ino());
    // Symlink, devices, fifo, socket.
    assert_eq!(fs::read_link(target.join("lib")).unwrap(), Path::new("usr/lib"));
    let lib = fs::symlink_metadata(target.join("lib")).unwrap();
    assert_eq!((lib.uid(), lib.gid(), lib.mtime()), (7, 8, 1_000_011));
    let null = fs::symlink_metadata(target.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device() && null.rdev() == rustix::fs::makedev(1, 3));
    assert!(fs::symlink_metadata(target.join("dev/fifo")).unwrap().file_type().is_fifo());
    assert!(fs::symlink_metadata(target.join("dev/sock")).unwrap().file_type().is_socket());
    // Whiteouts and opaque dirs applied, not copied.
    assert!(!target.join("run").exists());
    let etc: Vec<_> = fs::read_dir(target.join("etc")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(etc, ["hosts"]);
    let etcx = xattrs(&target.join("etc"));
    assert!(!etcx.contains_key("trusted.overlay.opaque"));
    assert_eq!(etcx.get("user.d").map(Vec::as_slice), Some(&b"dir"[..]));
    let etcm = fs::symlink_metadata(target.join("etc")).unwrap();
    assert_eq!((etcm.mode() & 0o7777, etcm.uid(), etcm.gid(), etcm.mtime()), (0o750, 5, 6, 1_000_200));
    // Merged dir, read-only dir, root attributes from the top layer.
    let libs: Vec<_> = fs::read_dir(target.join("usr/lib")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(libs.len(), 4);
    assert_eq!(fs::symlink_metadata(target.join("ro")).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(fs::read_to_string(target.join("ro/inside")).unwrap(), "x");
    assert_eq!(xattrs(&target).get("user.root").map(Vec::as_slice), Some(&b"top"[..]));
    assert_eq!(fs::read(target.join("big")).unwrap(), fs::read(layers[0].join("big")).unwrap());
}

#[test]
fn aufs_and_overlay_stacks_materialize_alike() {
    require_root!();
    let t = TempDir::new("vfs-fmt").unwrap();
    let mut out = Vec::new();
    for (i, format) in [WhiteoutFormat::Overlay, WhiteoutFormat::Aufs].into_iter().enumerate() {
        let layers = rich_stack(&t.join(format!("s{i}")));
        if format == WhiteoutFormat::Aufs {
            for l in &layers {
                convert(l, WhiteoutFormat::Overlay, WhiteoutFormat::Aufs).unwrap();
            }
        }
        let target = t.join(format!("t{i}"));
        fs::create_dir(&target).unwrap();
        let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        materialize(&refs, format, &target).unwrap();
        assert_is_union(&UnionView::new(layers.clone(), format), &target);
        // Directory times differ between the two builds (conversion keeps them, but the
        // builds ran at different times): compare without times.
        out.push(snapshot(&target, false));
    }
    assert_eq!(out[0], out[1]);
}

#[test]
fn target_must_be_an_empty_dir() {
    require_root!();
    let t = TempDir::new("vfs-tgt").unwrap();
    let l0 = t.join("l0");
    file(&l0, "f", "f", 0o644);
    let target = t.join("target");
    file(&target, "already", "", 0o644);
    assert!(matches!(
        materialize(&[&l0], WhiteoutFormat::Aufs, &target),
        Err(Error::Invalid(ValidationError::TargetNotEmpty { .. }))
    ));
    assert!(matches!(materialize(&[&l0], WhiteoutFormat::Aufs, &t.join("missing")), Err(Error::Sys { .. })));
    assert!(matches!(
        materialize(&[], WhiteoutFormat::Aufs, &t.join("l0")),
        Err(Error::Invalid(ValidationError::NoLayers))
    ));
}

#[test]
fn symlinks_are_copied_not_followed() {
    require_root!();
    let t = TempDir::new("vfs-sym").unwrap();
    let outside = t.join("outside");
    file(&outside, "secret", "s", 0o600);
    let l0 = t.join("l0");
    symlink(&l0, "esc", outside.to_str().unwrap());
    symlink(&l0, "dangling", "/nk-nowhere");
    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    materialize(&[&l0], WhiteoutFormat::Overlay, &target).unwrap();
    assert!(fs::symlink_metadata(target.join("esc")).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(target.join("esc")).unwrap(), outside);
    assert_eq!(fs::read_link(target.join("dangling")).unwrap(), Path::new("/nk-nowhere"));
    let names: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn devices_need_cap_mknod() {
    require_root!();
    let t = TempDir::new("vfs-cap").unwrap();
    let l0 = t.join("l0");
    dir(&l0, "dev");
    mknod(&l0.join("dev/null"), FileType::CharacterDevice, 0o666, rustix::fs::makedev(1, 3));
    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    without_cap_mknod(|| match materialize(&[&l0], WhiteoutFormat::Overlay, &target) {
        Err(Error::MknodDenied { path, .. }) => assert_eq!(path, target.join("dev/null")),
        other => panic!("{other:?}"),
    });
}

/// The copy driver on a stack whose upper dir an overlay session wrote (kernel whiteouts,
/// opaque dirs, overlay's own xattrs): the target holds what that overlay showed.
#[test]
fn vfs_driver_applies_an_overlay_upper() {
    use nook_unionfs::{LayerStack, Upper, Vfs};
    require_root!();
    let t = TempDir::new("vfs-upper").unwrap();
    let l0 = t.join("l0");
    file(&l0, "a", "a", 0o644);
    file(&l0, "keep", "keep", 0o644);
    file(&l0, "d/x", "x", 0o644);
    file(&l0, "d/y", "y", 0o644);
    file(&l0, "e/old", "old", 0o644);
    let (upper, work, mnt) = (t.join("upper"), t.join("work"), t.join("mnt"));
    for d in [&upper, &work, &mnt] {
        fs::create_dir(d).unwrap();
    }
    let mut stack = LayerStack::new();
    stack.lower(&l0).upper(Upper::Dir { upper: upper.clone(), work: work.clone() });
    let mounted = stack.mount(&mnt).unwrap();
    fs::remove_file(mnt.join("a")).unwrap();
    fs::remove_dir_all(mnt.join("d")).unwrap();
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/z"), "z").unwrap();
    fs::write(mnt.join("e/new"), "new").unwrap();
    fs::write(mnt.join("keep"), "changed").unwrap();
    let shown = snapshot(&mnt, false);
    mounted.remove().unwrap();
    // The kernel wrote its own whiteout and opaque dir into the upper.
    let a = fs::symlink_metadata(upper.join("a")).unwrap();
    assert!(a.file_type().is_char_device() && a.rdev() == 0);
    assert_eq!(xattrs(&upper.join("d")).get("trusted.overlay.opaque").map(Vec::as_slice), Some(&b"y"[..]));

    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    Vfs.materialize_stack(&stack, &target).unwrap();
    let mut got = snapshot(&target, false);
    let mut want = shown;
    // The roots are the target dir and the mount point: their attributes may differ.
    got.remove(Path::new(""));
    want.remove(Path::new(""));
    assert_eq!(got, want);
    let names: Vec<PathBuf> = got.into_keys().collect();
    let expected: Vec<PathBuf> = ["d", "d/z", "e", "e/new", "e/old", "keep"].iter().map(PathBuf::from).collect();
    assert_eq!(names, expected);
    assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "changed");
}

#[test]
fn vfs_is_a_storage_driver() {
    use nook_unionfs::{LayerStack, StorageDriver, Vfs};
    require_root!();
    let t = TempDir::new("vfs-drv").unwrap();
    let (l0, l1) = (t.join("l0"), t.join("l1"));
    file(&l0, "a", "a", 0o644);
    file(&l0, "d/x", "x", 0o644);
    chardev_whiteout(&l1, "a");
    file(&l1, "b", "b", 0o644);
    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    let mut stack = LayerStack::new();
    stack.lowers([&l0, &l1]);
    let driver: &dyn StorageDriver = &Vfs;
    assert_eq!(driver.name(), "vfs");
    let m = driver.mount(&stack, &target).unwrap();
    assert_eq!(m.target(), target);
    let names: Vec<PathBuf> = snapshot(&target, false).into_keys().collect();
    assert_eq!(names, ["", "b", "d", "d/x"].iter().map(PathBuf::from).collect::<Vec<_>>());
    m.remove().unwrap();
    assert!(target.is_dir() && fs::read_dir(&target).unwrap().next().is_none());
    assert!(l0.join("d/x").is_file(), "the layers are untouched");
    // Drop removes too; leak keeps.
    drop(driver.mount(&stack, &target).unwrap());
    assert!(fs::read_dir(&target).unwrap().next().is_none());
    let kept = driver.mount(&stack, &target).unwrap().leak();
    assert!(kept.join("b").is_file());
}

/// Removing a copy keeps going past an entry it cannot remove and reports every failure
/// (`Error::Teardown`): two dirs with a mount on them (`EBUSY`) stay, everything else goes.
#[test]
fn removing_a_copy_keeps_going_and_reports_every_failure() {
    use nook_unionfs::{LayerStack, StorageDriver, Vfs};
    use rustix::mount::{MountFlags, UnmountFlags};
    require_root!();
    let t = TempDir::new("vfs-td").unwrap();
    let l0 = t.join("l0");
    for f in ["a/f", "b/f", "c/f", "d"] {
        file(&l0, f, "x", 0o644);
    }
    let target = t.join("target");
    fs::create_dir(&target).unwrap();
    let mut stack = LayerStack::new();
    stack.lower(&l0).upper(nook_unionfs::Upper::Dir { upper: t.join("up"), work: t.join("work") });
    fs::create_dir(t.join("up")).unwrap();
    fs::create_dir(t.join("work")).unwrap();
    let m = Vfs.mount(&stack, &target).unwrap();
    for busy in ["a", "c"] {
        let p = target.join(busy);
        rustix::mount::mount(&p, &p, "", MountFlags::BIND, None).unwrap();
    }
    let err = m.remove().unwrap_err();
    for busy in ["a", "c"] {
        rustix::mount::unmount(target.join(busy), UnmountFlags::empty()).unwrap();
    }
    match &err {
        Error::Teardown { errors, .. } => {
            assert_eq!(errors.len(), 2, "{err}");
            assert!(errors.iter().all(|e| e.raw_os_error() == Some(libc::EBUSY)), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
    let left: Vec<PathBuf> = snapshot(&target, false).into_keys().collect();
    assert!(!left.contains(&PathBuf::from("b")) && !left.contains(&PathBuf::from("d")), "kept going: {left:?}");
    assert!(left.contains(&PathBuf::from("a")) && left.contains(&PathBuf::from("c")), "{left:?}");
}
