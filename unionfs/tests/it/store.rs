//! The layer store: layout, ChainIDs, reuse, removal rules, containers, commit.

use crate::tweak;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::tarutil::{Tar, sha256sum, sha256sum_of, xattr};
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{
    ApplyOptions, Digest, Error, LayerStore, UnsafeEntry, ValidationError, WhiteoutFormat, chain_id, chain_id_of,
    write_diff,
};
use tar::EntryType;

fn base_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc", 0o755).file("etc/os-release", b"ID=nook\n").dir("bin", 0o755).file("bin/tool", b"v1");
    t.finish()
}

fn second_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("bin", 0o755)
        .file("bin/tool", b"v2")
        .file("etc/.wh.os-release", b"")
        .dir("var", 0o755)
        .file("var/.wh..wh..opq", b"");
    t.finish()
}

#[test]
fn chain_ids_match_the_oci_formula() {
    let a = Digest::sha256(b"layer a");
    let b = Digest::sha256(b"layer b");
    let c = Digest::sha256(b"layer c");
    assert_eq!(chain_id(None, &a), a);
    let ab = chain_id(Some(&a), &b);
    assert_eq!(ab.as_str(), sha256sum_of(&format!("{} {}", a.as_str(), b.as_str())));
    let abc = chain_id(Some(&ab), &c);
    assert_eq!(abc.as_str(), sha256sum_of(&format!("{} {}", ab.as_str(), c.as_str())));
    assert_eq!(chain_id_of(&[a, b, c]), Some(abc));
}

#[test]
fn layout_like_docker_and_reuse() {
    require_root!();
    let tmp = TempDir::new("nkstore").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let base_bytes = base_tar();
    fs::write(tmp.join("base.tar"), &base_bytes).unwrap();
    let base = store.apply(&crate::tarutil::gzip(&base_bytes)[..], None, ApplyOptions::default()).unwrap();
    assert_eq!(base.diff_id.as_str(), sha256sum(&tmp.join("base.tar")), "DiffID = sha256sum of the tar");
    assert_eq!(base.chain_id, base.diff_id, "a base layer's ChainID is its DiffID");
    assert_eq!(base.parent, None);
    assert_eq!(base.size, base_bytes.len() as u64);
    let dir = tmp.join("store/layers").join(base.chain_id.hex());
    assert_eq!(base.diff_dir, dir.join("diff"));
    assert_eq!(fs::read_to_string(dir.join("diff-id")).unwrap(), base.diff_id.as_str());
    assert_eq!(fs::read_to_string(dir.join("size")).unwrap(), base_bytes.len().to_string());
    assert!(!dir.join("parent").exists());
    assert_eq!(fs::read(dir.join("diff/bin/tool")).unwrap(), b"v1");

    let second = store.apply(&second_tar()[..], Some(&base.chain_id), ApplyOptions::default()).unwrap();
    assert_eq!(second.chain_id.as_str(), sha256sum_of(&format!("{} {}", base.chain_id, second.diff_id)));
    let sdir = tmp.join("store/layers").join(second.chain_id.hex());
    assert_eq!(fs::read_to_string(sdir.join("parent")).unwrap(), base.chain_id.as_str());
    // The store keeps overlay-format whiteouts.
    let wh = fs::symlink_metadata(sdir.join("diff/etc/os-release")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(xattr(&sdir.join("diff/var"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));

    assert_eq!(store.layer(&second.chain_id).unwrap(), second);
    let mut all = vec![base.clone(), second.clone()];
    all.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
    assert_eq!(store.layers().unwrap(), all);
    let stack = store.stack(&second.chain_id).unwrap();
    assert_eq!(stack.lower_dirs(), &[base.diff_dir.clone(), second.diff_dir.clone()], "bottom first");

    // The same layer again (plain this time): reused, nothing left in tmp.
    let again = store.apply(&base_bytes[..], None, ApplyOptions::default()).unwrap();
    assert_eq!(again, base);
    assert_eq!(store.layers().unwrap().len(), 2);
    assert_eq!(fs::read_dir(tmp.join("store/tmp")).unwrap().count(), 0);

    // Same DiffID on another parent: another layer.
    let other = store.apply(&base_bytes[..], Some(&second.chain_id), ApplyOptions::default()).unwrap();
    assert_eq!(other.diff_id, base.diff_id);
    assert_ne!(other.chain_id, base.chain_id);
    assert_eq!(store.chain(&other.chain_id).unwrap(), vec![base.clone(), second.clone(), other.clone()]);
}

#[test]
fn remove_refuses_while_in_use() {
    let tmp = TempDir::new("nkstorerm").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let base = store.apply(&base_tar()[..], None, ApplyOptions::default()).unwrap();
    let mut t = Tar::new();
    t.file("child", b"c");
    let child = store.apply(&t.finish()[..], Some(&base.chain_id), ApplyOptions::default()).unwrap();

    let err = store.remove(&base.chain_id).unwrap_err();
    match &err {
        Error::LayerInUse { id, by } => {
            assert_eq!(id, base.chain_id.as_str());
            assert_eq!(by, child.chain_id.as_str());
        }
        other => panic!("expected LayerInUse, got {other:?}"),
    }
    assert!(base.diff_dir.exists(), "still there");

    let c = store.create_container("nk-c1", Some(&child.chain_id)).unwrap();
    assert!(c.upper.is_dir() && c.work.is_dir() && c.merged.is_dir());
    assert_eq!(c.stack.lower_dirs(), &[base.diff_dir.clone(), child.diff_dir.clone()]);
    match c.stack.upper_layer() {
        nook_unionfs::Upper::Dir { upper, work } => assert_eq!((upper, work), (&c.upper, &c.work)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.remove(&child.chain_id), Err(Error::LayerInUse { .. })), "a container uses it");
    assert!(
        matches!(
            store.create_container("nk-c1", None),
            Err(Error::Invalid(ValidationError::ContainerExists { id })) if id == "nk-c1"
        ),
        "ids are unique"
    );
    assert!(matches!(
        store.create_container("../evil", None),
        Err(Error::Invalid(ValidationError::ContainerId { id })) if id == "../evil"
    ));
    assert_eq!(store.container("nk-c1").unwrap(), c);
    store.remove_container("nk-c1").unwrap();
    assert!(!c.dir.exists());

    store.remove(&child.chain_id).unwrap();
    assert!(matches!(store.layer(&child.chain_id), Err(Error::LayerNotFound { .. })));
    store.remove(&base.chain_id).unwrap();
    assert!(store.layers().unwrap().is_empty());
    assert!(matches!(store.remove(&base.chain_id), Err(Error::LayerNotFound { .. })));
    assert!(matches!(
        store.apply(&base_tar()[..], Some(&base.chain_id), ApplyOptions::default()),
        Err(Error::LayerNotFound { .. })
    ));
    assert_eq!(fs::read_dir(tmp.join("store/tmp")).unwrap().count(), 0);
}

#[test]
fn failed_apply_leaves_nothing() {
    let tmp = TempDir::new("nkstorefail").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let mut t = Tar::new();
    t.file("fine", b"x").raw(EntryType::Regular, b"../../escape", None, b"x");
    let err = store.apply(&t.finish()[..], None, ApplyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unsafe { reason: UnsafeEntry::ParentDir, .. }), "{err:?}");
    assert!(store.layers().unwrap().is_empty());
    assert_eq!(fs::read_dir(tmp.join("store/tmp")).unwrap().count(), 0);
    assert!(!tmp.join("escape").exists());
}

#[test]
fn commit_an_upper_dir() {
    require_root!();
    let tmp = TempDir::new("nkcommit").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let base = store.apply(&base_tar()[..], None, ApplyOptions::default()).unwrap();
    // An upper dir as overlay leaves it.
    let upper = tmp.join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/os-release"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    fs::create_dir_all(upper.join("opaque")).unwrap();
    rustix::fs::setxattr(upper.join("opaque"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty())
        .unwrap();
    rustix::fs::setxattr(upper.join("etc"), "trusted.overlay.origin", b"junk", rustix::fs::XattrFlags::empty())
        .unwrap();
    fs::write(upper.join("opaque/f"), b"f").unwrap();
    fs::write(upper.join("new"), b"new").unwrap();
    fs::hard_link(upper.join("new"), upper.join("new-link")).unwrap();
    std::os::unix::fs::symlink("new", upper.join("sym")).unwrap();

    let mut a = Vec::new();
    let mut b = Vec::new();
    let d1 = write_diff(&upper, WhiteoutFormat::Overlay, &mut a).unwrap();
    let d2 = write_diff(&upper, WhiteoutFormat::Overlay, &mut b).unwrap();
    assert_eq!(a, b, "deterministic");
    assert_eq!(d1, d2);
    assert_eq!(d1, Digest::sha256(&a));
    fs::write(tmp.join("diff.tar"), &a).unwrap();
    assert_eq!(d1.as_str(), sha256sum(&tmp.join("diff.tar")));

    // What the tar says, read back with the tar crate.
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(&a[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let exts: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|x| x.map(|x| x.unwrap().key().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert!(exts.iter().all(|k| !k.contains("overlay")), "no overlay xattrs in the tar: {exts:?}");
        names.push((String::from_utf8(e.path_bytes().to_vec()).unwrap(), e.header().entry_type()));
    }
    let expect = [
        ("etc/", EntryType::Directory),
        ("etc/.wh.os-release", EntryType::Regular),
        ("new", EntryType::Regular),
        ("new-link", EntryType::Link),
        ("opaque/", EntryType::Directory),
        ("opaque/.wh..wh..opq", EntryType::Regular),
        ("opaque/f", EntryType::Regular),
        ("sym", EntryType::Symlink),
    ];
    let expect: Vec<(String, EntryType)> = expect.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    assert_eq!(names, expect);

    let layer = store.commit(&upper, WhiteoutFormat::Overlay, Some(&base.chain_id)).unwrap();
    assert_eq!(layer.diff_id, d1);
    assert_eq!(layer.parent.as_ref(), Some(&base.chain_id));
    let wh = fs::symlink_metadata(layer.diff_dir.join("etc/os-release")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(xattr(&layer.diff_dir.join("opaque"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&layer.diff_dir.join("etc"), "trusted.overlay.origin"), None);
    let n = fs::metadata(layer.diff_dir.join("new")).unwrap();
    assert_eq!(n.ino(), fs::metadata(layer.diff_dir.join("new-link")).unwrap().ino());
    assert_eq!(fs::read_link(layer.diff_dir.join("sym")).unwrap().to_str(), Some("new"));
    assert_eq!(fs::read_dir(tmp.join("store/tmp")).unwrap().count(), 0, "the tar is gone");

    // A renamed dir (redirect) cannot be diffed from the upper alone.
    rustix::fs::setxattr(upper.join("opaque"), "trusted.overlay.redirect", b"/x", rustix::fs::XattrFlags::empty())
        .unwrap();
    let err = write_diff(&upper, WhiteoutFormat::Overlay, std::io::sink()).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError::Undiffable { .. })), "{err:?}");
}

#[test]
fn diff_userxattr_and_aufs_formats_and_long_names() {
    let tmp = TempDir::new("nkdifffmt").unwrap();
    let upper = tmp.join("upper");
    let deep = "d".repeat(90) + "/" + &"e".repeat(90) + "/" + &"f".repeat(90);
    fs::create_dir_all(upper.join(&deep)).unwrap();
    fs::write(upper.join(&deep).join("g".repeat(60)), b"long").unwrap();
    std::os::unix::fs::symlink("t".repeat(200), upper.join("long-target")).unwrap();
    fs::create_dir(upper.join("op")).unwrap();
    rustix::fs::setxattr(upper.join("op"), "user.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::setxattr(upper.join("op"), "user.keep", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();

    let mut tar = Vec::new();
    let id = write_diff(&upper, WhiteoutFormat::OverlayUserXattr, &mut tar).unwrap();
    assert_eq!(id, Digest::sha256(&tar));
    let root = tmp.join("applied");
    fs::create_dir(&root).unwrap();
    let opts = tweak(ApplyOptions::default(), |o| o.whiteouts = Some(WhiteoutFormat::Aufs));
    nook_unionfs::apply_layer(&tar[..], &root, opts).unwrap();
    assert_eq!(fs::read(root.join(&deep).join("g".repeat(60))).unwrap(), b"long", "PAX path");
    assert_eq!(fs::read_link(root.join("long-target")).unwrap().to_str().unwrap(), "t".repeat(200), "PAX linkpath");
    assert!(root.join("op/.wh..wh..opq").is_file(), "user.overlay.opaque made the marker");
    assert!(root.join(".wh.gone").is_file(), "the 0/0 device became a .wh. file");
    assert_eq!(xattr(&root.join("op"), "user.keep").as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr(&root.join("op"), "user.overlay.opaque"), None, "overlay's own xattr left out");

    // Aufs: the .wh. files are content already; a 0/0 device is just a device.
    let mut again = Vec::new();
    write_diff(&root, WhiteoutFormat::Aufs, &mut again).unwrap();
    let names: Vec<String> = tar::Archive::new(&again[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert!(names.contains(&".wh.gone".to_string()) && names.contains(&"op/.wh..wh..opq".to_string()), "{names:?}");
}

/// What a crashed process left under ROOT/tmp goes; work of live processes, and anything not
/// named after a process, stays.
#[test]
fn clean_tmp_removes_only_what_dead_processes_left() {
    let dir = TempDir::new("store").unwrap();
    let store = LayerStore::open(dir.join("s")).unwrap();
    let tmp = store.root().join("tmp");
    // A process that has exited (reaped, so its pid is free).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let own_start: u64 = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
    let own = std::process::id();
    let entries = [
        (format!("{dead}.{own_start}-0-00000001"), false),      // gone
        (format!("{own}.{}-0-00000002", own_start + 1), false), // pid reused by someone else
        (format!("{own}.{own_start}-7-00000003"), true),        // this process, still working
        ("not-a-tag".to_owned(), true),                         // unknown: left alone
    ];
    for (name, _) in &entries {
        fs::create_dir_all(tmp.join(name).join("diff/deep")).unwrap();
        fs::write(tmp.join(name).join("diff/deep/file"), b"half applied").unwrap();
    }
    assert_eq!(store.clean_tmp().unwrap(), 2);
    for (name, kept) in &entries {
        assert_eq!(tmp.join(name).exists(), *kept, "{name}");
    }
    assert_eq!(store.clean_tmp().unwrap(), 0);
}

/// `clean_tmp` keeps going past an entry it cannot remove (here: a mount inside it, `EBUSY`)
/// and reports every failure in one `Error::Teardown`.
#[test]
fn clean_tmp_keeps_going_and_reports_every_failure() {
    use rustix::mount::{MountFlags, UnmountFlags};
    require_root!();
    let dir = TempDir::new("store").unwrap();
    let store = LayerStore::open(dir.join("s")).unwrap();
    let tmp = store.root().join("tmp");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let names: Vec<String> = (1..=3).map(|i| format!("{dead}.1-0-0000000{i}")).collect();
    for name in &names {
        fs::create_dir_all(tmp.join(name).join("diff/mnt")).unwrap();
    }
    let busy: Vec<_> = names[..2].iter().map(|n| tmp.join(n).join("diff/mnt")).collect();
    for p in &busy {
        rustix::mount::mount(p, p, "", MountFlags::BIND, None).unwrap();
    }
    let err = store.clean_tmp().unwrap_err();
    for p in &busy {
        rustix::mount::unmount(p, UnmountFlags::empty()).unwrap();
    }
    match &err {
        Error::Teardown { errors, .. } => {
            assert_eq!(errors.len(), 2, "{err}");
            assert!(errors.iter().all(|e| e.raw_os_error() == Some(libc::EBUSY)), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.join(&names[2]).exists(), "the removable entry went");
    assert_eq!(store.clean_tmp().unwrap(), 2, "the others go once unmounted");
}

/// Removing a layer while another thread builds on it: either the removal wins (the new layer
/// is refused, its parent being gone) or the new layer does (the removal is refused), never
/// both — a layer whose parent is gone.
#[test]
fn removing_a_layer_races_with_building_on_it() {
    let dir = TempDir::new("store").unwrap();
    let store = LayerStore::open(dir.join("s")).unwrap();
    let (base_bytes, second_bytes) = (base_tar(), second_tar());
    let (mut removal_won, mut child_won) = (0, 0);
    for round in 0..30 {
        let base = store.apply(base_bytes.as_slice(), None, ApplyOptions::default()).unwrap();
        let (removed, child) = std::thread::scope(|s| {
            let child = s.spawn(|| store.apply(second_bytes.as_slice(), Some(&base.chain_id), ApplyOptions::default()));
            let removed = s.spawn(|| store.remove(&base.chain_id));
            (removed.join().unwrap(), child.join().unwrap())
        });
        match (removed, child) {
            (Ok(()), Err(Error::LayerNotFound { .. })) => removal_won += 1,
            (Err(Error::LayerInUse { .. }), Ok(child)) => {
                child_won += 1;
                store.remove(&child.chain_id).unwrap();
                store.remove(&base.chain_id).unwrap();
            }
            (removed, child) => panic!("round {round}: removal {removed:?}, child {child:?}"),
        }
        assert!(store.layers().unwrap().is_empty(), "round {round}: {:?}", store.layers().unwrap());
    }
    println!("removal won {removal_won} times, the child {child_won} times");
}
