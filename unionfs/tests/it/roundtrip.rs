//! Round trip: apply layers to the store → mount them with an upper → change files through the
//! mount → diff the upper → apply the diff onto a plain copy of the lowers → the same tree as
//! the merged view. Then commit the upper into the store and mount the new chain read-only:
//! the same tree again.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::tarutil::{Tar, assert_same_tree, snapshot};
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{ApplyOptions, LayerStore, WhiteoutFormat, apply_layer, write_diff};

fn layer1() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0\n")
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .file("etc/renamed-soon", b"r")
        .dir("bin", 0o755)
        .file_owned("bin/sh", b"#!sh", 0o755, 0, 0, 1_500_000_000)
        .hardlink("bin/sh2", "bin/sh")
        .file_owned("bin/busybox", b"busybox", 0o755, 0, 0, 1_500_000_000)
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .file("usr/lib/libc.so", b"libc")
        .symlink("lib", "usr/lib")
        .dir("data", 0o755)
        .file("data/a", b"a")
        .dir("data/sub", 0o700)
        .file("data/sub/c", b"c")
        .dir("srv", 0o755)
        .dir("srv/keep", 0o755)
        .file("srv/keep/one", b"1")
        .file("srv/keep/two", b"2")
        .dir_owned("home", 0o755, 0, 0, 1_400_000_000)
        .dir_owned("home/u", 0o750, 1000, 1000, 1_400_000_000)
        .file_owned("home/u/notes", b"notes", 0o600, 1000, 1000, 1_450_000_000)
        .fifo("run-fifo");
    t.finish()
}

fn layer2() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost nook\n")
        .file("etc/.wh.passwd", b"")
        .dir("data", 0o755)
        .file("data/.wh..wh..opq", b"")
        .file("data/from-l2", b"l2")
        .dir("opt", 0o755)
        .dir("opt/app", 0o755)
        .file("opt/app/run", b"run")
        .file_owned("bin/suid", b"suid", 0o4755, 0, 0, 1_500_000_000);
    t.finish()
}

fn layer3() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("bin", 0o755)
        .file_owned("bin/new-tool", b"tool", 0o755, 0, 0, 1_500_000_000)
        .dir("opt", 0o755)
        .file("opt/.wh.app", b"")
        .dir("usr/bin", 0o755)
        .symlink("usr/bin/tool", "/bin/new-tool")
        .pax(&[("SCHILY.xattr.user.nk", b"from-l3")])
        .file("etc/tagged", b"tagged");
    t.finish()
}

/// Changes through the mounted view that exercise every kind of upper entry.
fn change(m: &Path) {
    fs::write(m.join("etc/hosts"), b"10.0.0.1 changed\n").unwrap(); // modify (copy-up)
    fs::remove_file(m.join("bin/busybox")).unwrap(); // delete -> whiteout
    fs::remove_dir_all(m.join("srv/keep")).unwrap(); // delete a dir -> whiteout
    fs::remove_dir_all(m.join("data")).unwrap(); // rmdir + mkdir -> opaque
    fs::create_dir(m.join("data")).unwrap();
    fs::write(m.join("data/fresh"), b"fresh").unwrap();
    fs::create_dir_all(m.join("new/dir/deep")).unwrap(); // new files and dirs
    fs::write(m.join("new/dir/deep/file"), b"deep").unwrap();
    fs::write(m.join("new/big"), vec![0x5a; 3 * 1024 * 1024 + 17]).unwrap();
    symlink("../etc/hosts", m.join("new/hosts-link")).unwrap(); // new symlink
    fs::hard_link(m.join("new/big"), m.join("new/big-link")).unwrap(); // new hardlink
    fs::set_permissions(m.join("bin/sh"), fs::Permissions::from_mode(0o700)).unwrap(); // chmod
    rustix::fs::chown(
        m.join("home/u/notes"),
        Some(rustix::fs::Uid::from_raw(2000)),
        Some(rustix::fs::Gid::from_raw(2001)),
    )
    .unwrap(); // chown
    rustix::fs::setxattr(m.join("usr/lib/libc.so"), "user.nk", b"set-in-upper", rustix::fs::XattrFlags::empty())
        .unwrap(); // xattr on a lower file
    fs::rename(m.join("etc/renamed-soon"), m.join("etc/renamed")).unwrap(); // rename a file
    fs::write(m.join("home/u/notes2"), b"n2").unwrap();
    fs::remove_file(m.join("lib")).unwrap(); // replace a symlink with a dir
    fs::create_dir(m.join("lib")).unwrap();
    fs::write(m.join("lib/x"), b"x").unwrap();
    fs::remove_file(m.join("run-fifo")).unwrap();
    fs::write(m.join("run-fifo"), b"now a file").unwrap(); // replace a fifo with a file
}

#[test]
fn diff_of_the_upper_reapplied_equals_the_merged_view() {
    require_root!();
    let tmp = TempDir::new("nkround").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let tars = [layer1(), layer2(), layer3()];
    let mut top = None;
    for t in &tars {
        top = Some(store.apply(&t[..], top.as_ref(), ApplyOptions::default()).unwrap().chain_id);
    }
    let top = top.unwrap();

    // A plain copy of the lowers: the same tars extracted one over the other.
    let flat = tmp.join("flat");
    fs::create_dir(&flat).unwrap();
    for t in &tars {
        apply_layer(&t[..], &flat, ApplyOptions::default()).unwrap();
    }

    let c = store.create_container("nk-round", Some(&top)).unwrap();
    let mounted = c.stack.mount(&c.merged).unwrap();
    // The overlay view of the store's layers equals the plain extraction.
    assert_same_tree(&snapshot(&c.merged), &snapshot(&flat), "merged lowers vs plain extraction");
    assert!(!c.merged.join("etc/passwd").exists() && !c.merged.join("opt/app").exists());
    assert!(!c.merged.join("data/a").exists() && c.merged.join("data/from-l2").exists());

    change(&c.merged);
    let merged = snapshot(&c.merged);
    // The kernel did it: the upper has whiteouts and an opaque dir.
    let up = fs::symlink_metadata(c.upper.join("bin/busybox")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&up.file_type()));
    assert_eq!(crate::tarutil::xattr(&c.upper.join("data"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));

    let diff_tar = tmp.join("diff.tar");
    let diff_id = write_diff(&c.upper, WhiteoutFormat::Overlay, fs::File::create(&diff_tar).unwrap()).unwrap();
    assert_eq!(diff_id.as_str(), crate::tarutil::sha256sum(&diff_tar));
    let applied = apply_layer(fs::File::open(&diff_tar).unwrap(), &flat, ApplyOptions::default()).unwrap();
    assert_eq!(applied.diff_id, diff_id);
    assert_same_tree(&merged, &snapshot(&flat), "merged view vs lowers + diff");

    // docker commit: the upper becomes a layer; the new chain mounted read-only looks the same.
    let layer = store.commit(&c.upper, WhiteoutFormat::Overlay, Some(&top)).unwrap();
    assert_eq!(layer.diff_id, diff_id);
    let ro_target = tmp.join("ro");
    fs::create_dir(&ro_target).unwrap();
    let ro = store.stack(&layer.chain_id).unwrap().mount(&ro_target).unwrap();
    assert_same_tree(&merged, &snapshot(&ro_target), "merged view vs committed chain");
    ro.remove().unwrap();
    mounted.remove().unwrap();
    store.remove_container("nk-round").unwrap();
    store.remove(&layer.chain_id).unwrap();
}
