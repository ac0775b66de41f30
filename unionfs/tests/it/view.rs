//! UnionView on real layer dirs: whiteouts hide, opaque stops descent, top wins, file over dir
//! and dir over file, symlinks are not followed; the AUFS and overlay formats (built directly,
//! or converted) give the same answers for the same stack.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use crate::layers_util::*;
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{
    EntryKind, Error, UnionView, ValidationError, WhiteoutFormat, convert, create_whiteout, set_opaque,
};

/// One item of a layer.
enum E {
    /// A file with content.
    F(&'static str, &'static str),
    /// A dir.
    D(&'static str),
    /// A symlink.
    L(&'static str, &'static str),
    /// A whiteout (AUFS `.wh.` file; overlay 0/0 char device, or opaque when a dir of the
    /// same name is already in the layer, which is what AUFS's `.wh.X` beside `X/` means).
    W(&'static str),
    /// An opaque dir.
    O(&'static str),
}

fn split(p: &str) -> (PathBuf, &OsStr) {
    let p = Path::new(p);
    (p.parent().unwrap().to_owned(), p.file_name().unwrap())
}

fn build(root: &Path, format: WhiteoutFormat, items: &[E]) {
    fs::create_dir_all(root).unwrap();
    for item in items {
        match *item {
            E::F(p, c) => file(root, p, c, 0o644),
            E::D(p) => dir(root, p),
            E::L(p, t) => symlink(root, p, t),
            E::W(p) => {
                let (parent, name) = split(p);
                let parent = root.join(parent);
                fs::create_dir_all(&parent).unwrap();
                if format.is_overlay() && parent.join(name).is_dir() {
                    set_opaque(&parent.join(name), format).unwrap();
                } else {
                    create_whiteout(&parent, name, format).unwrap();
                }
            }
            E::O(p) => {
                dir(root, p);
                set_opaque(&root.join(p), format).unwrap();
            }
        }
    }
}

fn stack() -> Vec<Vec<E>> {
    use E::*;
    vec![
        vec![
            F("a/x", "0x"),
            F("a/y", "0y"),
            F("b", "0b"),
            F("c/z", "0z"),
            F("d/dd", "0dd"),
            F("keep", "0keep"),
            F("gone", "0gone"),
            F("e/old", "0old"),
            F("f/old", "0fold"),
            F("g/deep/file", "0g"),
            L("s", "a"),
            F("h/h0", ""),
            F("i/zz", ""),
        ],
        vec![
            W("a/x"),
            F("b/new", "1new"),
            F("c", "1c"),
            W("gone"),
            O("e"),
            F("e/new", "1new"),
            D("f"),
            F("f/new", "1fnew"),
            W("f"),
            F("h/h1", ""),
            W("i"),
        ],
        vec![F("keep", "2keep"), W("d"), D("s2"), L("a/link", "../b"), W("nothing"), F("i/top", "")],
    ]
}

fn build_stack(root: &Path, format: WhiteoutFormat) -> Vec<PathBuf> {
    stack()
        .iter()
        .enumerate()
        .map(|(i, items)| {
            let l = root.join(format!("l{i}"));
            build(&l, format, items);
            l
        })
        .collect()
}

fn names(m: &BTreeMap<OsString, nook_unionfs::ViewEntry>) -> Vec<(String, usize, EntryKind)> {
    m.iter().map(|(n, e)| (n.to_string_lossy().into_owned(), e.layer, e.kind)).collect()
}

fn found(v: &UnionView, p: &str) -> Option<(usize, EntryKind)> {
    v.lookup(Path::new(p)).unwrap().map(|e| (e.layer, e.kind))
}

/// The answers the stack above must give, in any format.
fn check_rules(v: &UnionView) {
    use EntryKind::*;
    // Whiteouts hide; the whiteout itself is not there.
    assert_eq!(found(v, "a/x"), None);
    assert_eq!(found(v, "gone"), None);
    assert_eq!(found(v, "nothing"), None);
    assert_eq!(found(v, "d"), None);
    assert_eq!(found(v, "d/dd"), None);
    assert_eq!(found(v, ".wh.gone"), None);
    assert_eq!(found(v, "a/.wh.x"), None);
    // Merged dir: the highest layer's entry, names from all layers.
    assert_eq!(found(v, "a"), Some((2, Dir)));
    assert_eq!(found(v, "a/y"), Some((0, File)));
    assert_eq!(names(&v.read_dir(Path::new("a")).unwrap()), [("link".into(), 2, Symlink), ("y".into(), 0, File)]);
    assert_eq!(names(&v.read_dir(Path::new("h")).unwrap()), [("h0".into(), 0, File), ("h1".into(), 1, File)]);
    // Dir over file, file over dir.
    assert_eq!(found(v, "b"), Some((1, Dir)));
    assert_eq!(names(&v.read_dir(Path::new("b")).unwrap()), [("new".into(), 1, File)]);
    assert_eq!(found(v, "c"), Some((1, File)));
    assert_eq!(found(v, "c/z"), None);
    // Top wins.
    let keep = v.lookup(Path::new("keep")).unwrap().unwrap();
    assert_eq!((keep.layer, keep.kind), (2, File));
    assert_eq!(fs::read_to_string(&keep.real_path).unwrap(), "2keep");
    assert_eq!(keep.real_path, v.layers()[2].join("keep"));
    // Opaque stops descent (a marker, or a whiteout beside the dir in its own layer).
    assert_eq!(names(&v.read_dir(Path::new("e")).unwrap()), [("new".into(), 1, File)]);
    assert_eq!(found(v, "e/old"), None);
    assert_eq!(names(&v.read_dir(Path::new("f")).unwrap()), [("new".into(), 1, File)]);
    assert_eq!(found(v, "f/old"), None);
    // A whiteout between two dirs ends the merge.
    assert_eq!(found(v, "i"), Some((2, Dir)));
    assert_eq!(names(&v.read_dir(Path::new("i")).unwrap()), [("top".into(), 2, File)]);
    assert_eq!(found(v, "i/zz"), None);
    // Deep paths through merged and single-layer dirs.
    assert_eq!(found(v, "g/deep/file"), Some((0, File)));
    // Symlinks are reported, not followed.
    assert_eq!(found(v, "s"), Some((0, Symlink)));
    match v.lookup(Path::new("s/y")) {
        Err(Error::SymlinkInPath { path, symlink }) => {
            assert_eq!((path, symlink), (PathBuf::from("s/y"), PathBuf::from("s")))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(v.read_dir(Path::new("a/link")), Err(Error::Sys { .. })));
    // A file as an intermediate component: not found.
    assert_eq!(found(v, "keep/x"), None);
    // Path forms.
    assert_eq!(found(v, "/a/../a/./y"), Some((0, File)));
    assert_eq!(found(v, ""), Some((2, Dir)));
    assert_eq!(found(v, "/"), Some((2, Dir)));
    assert!(matches!(v.lookup(Path::new("a/../..")), Err(Error::Invalid(ValidationError::UnionPathEscapes { .. }))));
    assert!(matches!(v.read_dir(Path::new("keep")), Err(Error::Sys { .. })));
    assert!(matches!(v.read_dir(Path::new("d")), Err(Error::Sys { .. })));
    // The root lists neither whiteouts nor `.wh.` names.
    let root: Vec<String> =
        v.read_dir(Path::new("/")).unwrap().into_keys().map(|n| n.to_string_lossy().into()).collect();
    assert_eq!(root, ["a", "b", "c", "e", "f", "g", "h", "i", "keep", "s", "s2"]);
}

/// The whole union as (path, layer, kind), via walk().
fn walked(v: &UnionView) -> Vec<(PathBuf, usize, EntryKind)> {
    let mut w: Vec<_> = v.walk().unwrap().into_iter().map(|(p, e)| (p, e.layer, e.kind)).collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn aufs_stack_follows_the_rules() {
    let t = TempDir::new("view-aufs").unwrap();
    let layers = build_stack(t.path(), WhiteoutFormat::Aufs);
    let v = UnionView::new(layers, WhiteoutFormat::Aufs);
    check_rules(&v);
    let w = walked(&v);
    assert!(w.iter().all(|(p, _, _)| !p.to_string_lossy().contains(".wh.")), "{w:?}");
    assert!(w.contains(&(PathBuf::from("g/deep/file"), 0, EntryKind::File)));
    // walk() lists parents before children.
    let order: Vec<PathBuf> = v.walk().unwrap().into_iter().map(|(p, _)| p).collect();
    for (i, p) in order.iter().enumerate() {
        if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            assert!(order[..i].iter().any(|q| q == parent), "{p:?} before {parent:?}");
        }
    }
}

#[test]
fn overlay_formats_give_the_same_answers() {
    require_root!();
    let t = TempDir::new("view-ovl").unwrap();
    let aufs = UnionView::new(build_stack(&t.join("aufs"), WhiteoutFormat::Aufs), WhiteoutFormat::Aufs);
    let expected = walked(&aufs);
    for format in [WhiteoutFormat::Overlay, WhiteoutFormat::OverlayUserXattr] {
        // Built directly in the format.
        let v = UnionView::new(build_stack(&t.join(format!("{format:?}")), format), format);
        check_rules(&v);
        assert_eq!(walked(&v), expected, "{format:?}");
        // Built as AUFS and converted.
        let conv = build_stack(&t.join(format!("conv{format:?}")), WhiteoutFormat::Aufs);
        for l in &conv {
            convert(l, WhiteoutFormat::Aufs, format).unwrap();
        }
        let v = UnionView::new(conv.clone(), format);
        check_rules(&v);
        assert_eq!(walked(&v), expected, "converted to {format:?}");
        // And back.
        for l in &conv {
            convert(l, format, WhiteoutFormat::Aufs).unwrap();
        }
        let v = UnionView::new(conv, WhiteoutFormat::Aufs);
        check_rules(&v);
        assert_eq!(walked(&v), expected, "converted back from {format:?}");
    }
}

#[test]
fn formats_are_not_mixed() {
    require_root!();
    let t = TempDir::new("view-mix").unwrap();
    let l0 = t.join("l0");
    let l1 = t.join("l1");
    file(&l0, "x", "x", 0o644);
    file(&l0, "y", "y", 0o644);
    chardev_whiteout(&l1, "x");
    aufs_whiteout(&l1, "y");
    // overlay: the char device hides x; `.wh.y` is a plain file.
    let v = UnionView::new(vec![l0.clone(), l1.clone()], WhiteoutFormat::Overlay);
    assert_eq!(found(&v, "x"), None);
    assert_eq!(found(&v, "y"), Some((0, EntryKind::File)));
    assert_eq!(found(&v, ".wh.y"), Some((1, EntryKind::File)));
    // AUFS: `.wh.y` hides y; the char device is a device.
    let v = UnionView::new(vec![l0, l1], WhiteoutFormat::Aufs);
    assert_eq!(found(&v, "x"), Some((1, EntryKind::Other)));
    assert_eq!(found(&v, "y"), None);
    assert_eq!(found(&v, ".wh.y"), None);
}

#[test]
fn xwhiteouts_and_x_dirs() {
    require_root!();
    let t = TempDir::new("view-xw").unwrap();
    let (l0, l1) = (t.join("l0"), t.join("l1"));
    file(&l0, "d/gone", "g", 0o644);
    file(&l0, "d/stay", "s", 0o644);
    file(&l0, "rootgone", "r", 0o644);
    file(&l1, "d/gone", "", 0o644);
    xattr(&l1, "d/gone", "trusted.overlay.whiteout", b"");
    xattr(&l1, "d", "trusted.overlay.opaque", b"x");
    file(&l1, "rootgone", "", 0o644);
    xattr(&l1, "rootgone", "trusted.overlay.whiteout", b"");
    // A non-empty file with the xattr is no whiteout.
    file(&l1, "d/stay", "not empty", 0o644);
    xattr(&l1, "d/stay", "trusted.overlay.whiteout", b"");
    let v = UnionView::new(vec![l0, l1], WhiteoutFormat::Overlay);
    assert_eq!(found(&v, "d/gone"), None);
    assert_eq!(found(&v, "rootgone"), None);
    assert_eq!(found(&v, "d/stay"), Some((1, EntryKind::File)));
    // "x" is not opaque: d is merged.
    assert_eq!(names(&v.read_dir(Path::new("d")).unwrap()), [("stay".into(), 1, EntryKind::File)]);
    assert!(!v.read_dir(Path::new("")).unwrap().contains_key(OsStr::new("rootgone")));
}

#[test]
fn symlinks_in_layers_are_not_followed() {
    let t = TempDir::new("view-sym").unwrap();
    let outside = t.join("outside");
    file(&outside, "secret", "s", 0o644);
    let (l0, l1) = (t.join("l0"), t.join("l1"));
    symlink(&l0, "esc", outside.to_str().unwrap());
    symlink(&l0, "hidden", "/");
    dir(&l1, "hidden");
    file(&l1, "hidden/mine", "m", 0o644);
    let v = UnionView::new(vec![l0, l1], WhiteoutFormat::Aufs);
    assert!(matches!(v.lookup(Path::new("esc/secret")), Err(Error::SymlinkInPath { .. })));
    assert!(matches!(v.read_dir(Path::new("esc")), Err(Error::Sys { .. })));
    // A symlink below a dir of the same name is hidden by the dir (not merged, not followed).
    assert_eq!(found(&v, "hidden/mine"), Some((1, EntryKind::File)));
    assert_eq!(names(&v.read_dir(Path::new("hidden")).unwrap()), [("mine".into(), 1, EntryKind::File)]);
    // A layer root given as a symlink is followed (it is the caller's path).
    let link = t.join("l1link");
    std::os::unix::fs::symlink(t.join("l1"), &link).unwrap();
    let v = UnionView::new(vec![link], WhiteoutFormat::Aufs);
    assert_eq!(found(&v, "hidden/mine"), Some((0, EntryKind::File)));
}

#[test]
fn one_layer_and_missing_layers() {
    let t = TempDir::new("view-one").unwrap();
    let l0 = t.join("l0");
    file(&l0, "f", "f", 0o644);
    let v = UnionView::new(vec![l0.clone()], WhiteoutFormat::Aufs);
    assert_eq!(found(&v, "f"), Some((0, EntryKind::File)));
    assert_eq!(v.lookup(Path::new("")).unwrap().unwrap().real_path, l0);
    let v = UnionView::new(vec![l0, t.join("nope")], WhiteoutFormat::Aufs);
    assert!(matches!(v.lookup(Path::new("f")), Err(Error::Sys { .. })));
}
