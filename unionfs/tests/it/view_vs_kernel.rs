//! Property test: random layer stacks (overlay format: 0/0 whiteouts, xwhiteouts, opaque and
//! "x" dirs, files, dirs, symlinks, fifos, random modes/owners/times/xattrs) mounted with the
//! real kernel overlay ([`LayerStack::mount`], read-only, lowers only) must agree with [`UnionView`] on every path
//! found in any layer (plus a few that are in none): kind, metadata, file content, symlink
//! target, and the listing of every directory. [`materialize`] of the same stack must give
//! the tree the kernel shows.
//!
//! The one kernel behaviour the view does not copy: overlay lists a whiteout in a directory it
//! does not merge (and an xwhiteout unless the dir has `overlay.opaque=x`) as a name whose
//! `lstat` fails with `ENOENT`. Such "phantom" names are allowed in the kernel's listing,
//! checked to be whiteouts in some layer, and must be absent from the view's.
//!
//! The view follows overlayfs as of Linux 6.7, which added xwhiteouts (a zero-size file with
//! `overlay.whiteout` in a dir marked `overlay.opaque=x`). On a kernel that does not honour them
//! (6.1 in the VM lane: there they are plain files) the stacks have none, and everything else is
//! still compared.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::layers_util::{Snap, snap_one};
use nook_testutil::{TempDir, on_private_mount_ns, require_root};
use nook_unionfs::{EntryKind, Error, LayerStack, MountedStack, UnionView, WhiteoutFormat, materialize};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const NAMES: &[&str] = &["a", "b", "c", "d"];
const SYMLINK_TARGETS: &[&str] = &["a", "../b", "/nk-nowhere", "c/d"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opq {
    No,
    Y,
    X,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    owner: u32,
    mtime: i64,
    xattr: bool,
}

#[derive(Debug, Clone)]
enum Node {
    File(u8, Attrs),
    Dir(Opq, BTreeMap<String, Node>, Attrs),
    Symlink(usize),
    Whiteout,
    XWhiteout,
    Fifo,
}

fn attrs(modes: &'static [u32]) -> impl Strategy<Value = Attrs> {
    (prop::sample::select(modes), prop::sample::select(&[0u32, 1000][..]), 1_000_000i64..1_000_100, any::<bool>())
        .prop_map(|(mode, owner, mtime, xattr)| Attrs { mode, owner, mtime, xattr })
}

fn opq() -> impl Strategy<Value = Opq> {
    prop_oneof![6 => Just(Opq::No), 3 => Just(Opq::Y), 1 => Just(Opq::X), 1 => Just(Opq::Other)]
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_owned)
}

const FILE_MODES: &[u32] = &[0o644, 0o600, 0o755, 0o4755];
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o555];

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => (any::<u8>(), attrs(FILE_MODES)).prop_map(|(c, a)| Node::File(c, a)),
        1 => (0..SYMLINK_TARGETS.len()).prop_map(Node::Symlink),
        2 => Just(Node::Whiteout),
        1 => Just(Node::XWhiteout),
        1 => Just(Node::Fifo),
        1 => (opq(), attrs(DIR_MODES)).prop_map(|(o, a)| Node::Dir(o, BTreeMap::new(), a)),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        (opq(), prop::collection::btree_map(name(), inner, 0..4), attrs(DIR_MODES))
            .prop_map(|(o, c, a)| Node::Dir(o, c, a))
    })
}

/// Layer roots hold mostly dirs, whiteouts and files of three names, so that the same name
/// meets itself in several layers with different kinds.
fn top_node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => (opq(), prop::collection::btree_map(name(), node(), 0..4), attrs(DIR_MODES))
            .prop_map(|(o, c, a)| Node::Dir(o, c, a)),
        1 => Just(Node::Whiteout),
        1 => (any::<u8>(), attrs(FILE_MODES)).prop_map(|(c, a)| Node::File(c, a)),
        1 => node(),
    ]
}

fn stack() -> impl Strategy<Value = Vec<BTreeMap<String, Node>>> {
    let top_name = prop::sample::select(&NAMES[..3]).prop_map(str::to_owned);
    prop::collection::vec(prop::collection::btree_map(top_name, top_node(), 1..4), 2..=6)
}

fn set_attrs(p: &Path, a: &Attrs) {
    std::os::unix::fs::lchown(p, Some(a.owner), Some(a.owner)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(a.mode)).unwrap();
    if a.xattr {
        crate::layers_util::xattr(p, "", "user.nk", format!("v{}", a.mtime).as_bytes());
    }
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: a.mtime, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: a.mtime, tv_nsec: 7 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn build(dir: &Path, children: &BTreeMap<String, Node>) {
    for (name, node) in children {
        let p = dir.join(name);
        match node {
            Node::File(c, a) => {
                fs::write(&p, vec![*c; (*c as usize) % 7 + 1]).unwrap();
                set_attrs(&p, a);
            }
            Node::Dir(o, kids, a) => {
                fs::create_dir(&p).unwrap();
                build(&p, kids);
                let v: &[u8] = match o {
                    Opq::No => b"",
                    Opq::Y => b"y",
                    Opq::X => b"x",
                    Opq::Other => b"n",
                };
                if !v.is_empty() {
                    crate::layers_util::xattr(&p, "", "trusted.overlay.opaque", v);
                }
                set_attrs(&p, a);
            }
            Node::Symlink(i) => std::os::unix::fs::symlink(SYMLINK_TARGETS[*i], &p).unwrap(),
            Node::Whiteout => crate::layers_util::chardev_whiteout(&p, ""),
            Node::XWhiteout => {
                fs::write(&p, b"").unwrap();
                crate::layers_util::xattr(&p, "", "trusted.overlay.whiteout", b"");
            }
            Node::Fifo => rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o640),
                0,
            )
            .unwrap(),
        }
    }
}

/// Every path in a layer tree (not following symlinks).
fn layer_paths(root: &Path, rel: &Path, out: &mut BTreeSet<PathBuf>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let p = rel.join(e.file_name());
        out.insert(p.clone());
        if e.file_type().unwrap().is_dir() {
            layer_paths(root, &p, out);
        }
    }
}

/// Mounts the stack read-only (lowers only) with the crate's overlay driver; the handle
/// unmounts on drop.
/// Whether the running kernel's overlay hides an xwhiteout (Linux 6.7+), found by mounting one.
fn kernel_has_xwhiteouts() -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KNOWN.get_or_init(|| {
        let t = TempDir::new("pvkx").unwrap();
        let (bottom, top, mnt) = (t.join("l0"), t.join("l1"), t.join("mnt"));
        for d in [&bottom, &top, &mnt] {
            fs::create_dir(d).unwrap();
        }
        let a = |mode| Attrs { mode, owner: 0, mtime: 1_000_000, xattr: false };
        let dir = |o, kid: Node| Node::Dir(o, [("f".to_owned(), kid)].into(), a(0o755));
        build(&bottom, &[("d".to_owned(), dir(Opq::No, Node::File(1, a(0o644))))].into());
        build(&top, &[("d".to_owned(), dir(Opq::X, Node::XWhiteout))].into());
        let m = mount_overlay(&[bottom, top], &mnt);
        let hidden = fs::symlink_metadata(mnt.join("d/f")).is_err();
        drop(m);
        hidden
    })
}

/// `stack` without xwhiteouts where the kernel lacks them (see the module docs).
fn for_this_kernel(mut stack: Vec<BTreeMap<String, Node>>) -> Vec<BTreeMap<String, Node>> {
    fn strip(tree: &mut BTreeMap<String, Node>) {
        tree.retain(|_, n| !matches!(n, Node::XWhiteout));
        for n in tree.values_mut() {
            if let Node::Dir(_, kids, _) = n {
                strip(kids);
            }
        }
    }
    if !kernel_has_xwhiteouts() {
        stack.iter_mut().for_each(strip);
    }
    stack
}

fn mount_overlay(layers: &[PathBuf], target: &Path) -> MountedStack {
    let mut stack = LayerStack::new();
    stack.lowers(layers.iter().cloned());
    stack.mount(target).unwrap_or_else(|e| panic!("mount overlay at {target:?}: {e}"))
}

fn kind_of(md: &fs::Metadata) -> EntryKind {
    EntryKind::from_file_type(md.file_type())
}

fn is_whiteout_in_a_layer(layers: &[PathBuf], rel: &Path) -> bool {
    layers.iter().any(|l| {
        fs::symlink_metadata(l.join(rel)).is_ok_and(|m| {
            (m.file_type().is_char_device() && m.rdev() == 0)
                || (m.is_file()
                    && m.len() == 0
                    && crate::layers_util::xattrs(&l.join(rel)).contains_key("trusted.overlay.whiteout"))
        })
    })
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The kernel's and the view's answer for one path.
fn check_path(view: &UnionView, mnt: &Path, rel: &Path) -> Result<(), TestCaseError> {
    let k = fs::symlink_metadata(mnt.join(rel));
    match view.lookup(rel) {
        Err(Error::SymlinkInPath { symlink, .. }) => {
            let m = fs::symlink_metadata(mnt.join(&symlink));
            prop_assert!(
                m.as_ref().is_ok_and(|m| m.file_type().is_symlink()),
                "{rel:?}: view says {symlink:?} is a symlink, kernel: {m:?}"
            );
        }
        Err(e) => return Err(TestCaseError::fail(format!("{rel:?}: view error {e}"))),
        Ok(None) => {
            prop_assert!(
                k.as_ref().is_err_and(|e| [libc::ENOENT, libc::ENOTDIR].contains(&errno(e))),
                "{rel:?}: view says absent, kernel: {k:?}"
            );
        }
        Ok(Some(e)) => {
            let Ok(k) = k else {
                return Err(TestCaseError::fail(format!("{rel:?}: view has {e:?}, kernel: {k:?}")));
            };
            prop_assert_eq!(kind_of(&k), e.kind, "{:?}: kind", rel);
            let real = fs::symlink_metadata(&e.real_path).unwrap();
            prop_assert_eq!(
                (k.mode(), k.uid(), k.gid(), k.mtime(), k.mtime_nsec()),
                (real.mode(), real.uid(), real.gid(), real.mtime(), real.mtime_nsec()),
                "{:?}: metadata of {:?}",
                rel,
                e.real_path
            );
            match e.kind {
                EntryKind::File => {
                    prop_assert_eq!(fs::read(mnt.join(rel)).unwrap(), fs::read(&e.real_path).unwrap(), "{:?}", rel)
                }
                EntryKind::Symlink => {
                    prop_assert_eq!(fs::read_link(mnt.join(rel)).unwrap(), fs::read_link(&e.real_path).unwrap())
                }
                EntryKind::Other => prop_assert_eq!(k.rdev(), real.rdev()),
                EntryKind::Dir => check_dir(view, mnt, rel)?,
            }
            let abs = Path::new("/").join(rel);
            prop_assert_eq!(view.lookup(&abs).unwrap(), Some(e), "absolute {:?}", abs);
        }
    }
    Ok(())
}

fn check_dir(view: &UnionView, mnt: &Path, rel: &Path) -> Result<(), TestCaseError> {
    let listed = view.read_dir(rel).unwrap();
    let mut kernel = BTreeSet::new();
    for e in fs::read_dir(mnt.join(rel)).unwrap() {
        let name = e.unwrap().file_name();
        let p = rel.join(&name);
        match fs::symlink_metadata(mnt.join(&p)) {
            Ok(m) => {
                let v = listed.get(&name);
                prop_assert_eq!(v.map(|v| v.kind), Some(kind_of(&m)), "{:?}: listed by the kernel", p);
                kernel.insert(name);
            }
            Err(err) if errno(&err) == libc::ENOENT => {
                prop_assert!(!listed.contains_key(&name), "{p:?}: phantom listed by the view");
                prop_assert!(is_whiteout_in_a_layer(view.layers(), &p), "{p:?}: phantom that is no whiteout");
            }
            Err(err) => return Err(TestCaseError::fail(format!("{p:?}: {err}"))),
        }
    }
    let view_names: BTreeSet<_> = listed.keys().cloned().collect();
    prop_assert_eq!(view_names, kernel, "listing of {:?}", rel);
    Ok(())
}

/// A tree as the kernel shows it (phantom whiteouts skipped), with times and xattrs.
fn kernel_tree(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Some(s) = snap_one(&root.join(&rel), true) else { continue };
        if s.kind == 'd' {
            for e in fs::read_dir(root.join(&rel)).unwrap() {
                todo.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.insert(rel, s);
    }
    out
}

fn check_stack(stack: &[BTreeMap<String, Node>]) -> Result<(), TestCaseError> {
    let t = TempDir::new("pvk").unwrap();
    let layers: Vec<PathBuf> = (0..stack.len()).map(|i| t.join(format!("l{i}"))).collect();
    for (l, tree) in layers.iter().zip(stack) {
        fs::create_dir(l).unwrap();
        build(l, tree);
    }
    let mnt = t.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _m = mount_overlay(&layers, &mnt);
    let view = UnionView::new(layers.clone(), WhiteoutFormat::Overlay);

    let mut paths = BTreeSet::new();
    for l in &layers {
        layer_paths(l, Path::new(""), &mut paths);
    }
    for extra in ["zz", "a/zz", "a/b/zz", "d/c/b/a", "l/a", "c/b/x"] {
        paths.insert(PathBuf::from(extra));
    }
    check_path(&view, &mnt, Path::new(""))?;
    for p in &paths {
        check_path(&view, &mnt, p)?;
    }

    // The copy driver gives what the kernel shows.
    let mat = t.join("mat");
    fs::create_dir(&mat).unwrap();
    let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
    materialize(&refs, WhiteoutFormat::Overlay, &mat).unwrap();
    let k = kernel_tree(&mnt);
    let m = kernel_tree(&mat);
    let kp: Vec<_> = k.keys().collect();
    let mp: Vec<_> = m.keys().collect();
    prop_assert_eq!(kp, mp, "materialized paths");
    for (p, ks) in &k {
        prop_assert_eq!(Some(ks), m.get(p), "materialized {:?}", p);
    }
    Ok(())
}

#[test]
fn view_agrees_with_kernel_overlay() {
    require_root!();
    on_private_mount_ns(|| {
        let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
        let result = runner.run(&stack(), |s| check_stack(&for_this_kernel(s)));
        if let Err(e) = result {
            panic!("{e}");
        }
    });
}

/// A fixed stack with every rule in it, so a regression does not depend on the random draw.
#[test]
fn fixed_stack_agrees_with_kernel_overlay() {
    require_root!();
    let a = |mode| Attrs { mode, owner: 0, mtime: 1_000_000, xattr: true };
    let file = |c| Node::File(c, a(0o644));
    let dir =
        |o, kids: Vec<(&str, Node)>| Node::Dir(o, kids.into_iter().map(|(n, k)| (n.to_owned(), k)).collect(), a(0o755));
    let layer = |kids: Vec<(&str, Node)>| -> BTreeMap<String, Node> {
        kids.into_iter().map(|(n, k)| (n.to_owned(), k)).collect()
    };
    let l0 = layer(vec![
        ("a", dir(Opq::No, vec![("a", file(1)), ("b", file(2)), ("c", file(3))])),
        ("b", dir(Opq::No, vec![("a", file(4))])),
        ("c", file(5)),
        ("d", dir(Opq::No, vec![("d", file(6))])),
        ("e", dir(Opq::No, vec![("x", file(11))])),
        ("f", dir(Opq::No, vec![("z", file(12))])),
        ("g", dir(Opq::No, vec![("z", file(13))])),
        ("h", dir(Opq::No, vec![("z", file(14))])),
        ("i", dir(Opq::No, vec![("z", file(19))])),
        ("j", dir(Opq::No, vec![("z", file(20))])),
    ]);
    let l1 = layer(vec![
        ("a", dir(Opq::X, vec![("a", Node::XWhiteout), ("d", file(7))])),
        ("b", file(8)),
        ("c", dir(Opq::No, vec![("b", file(9))])),
        ("d", Node::Whiteout),
        ("h", Node::Fifo),
        ("i", Node::Whiteout),
        ("j", file(21)),
    ]);
    let l2 = layer(vec![
        ("a", dir(Opq::No, vec![("b", Node::Whiteout)])),
        ("b", dir(Opq::No, vec![("c", file(10))])),
        ("d", dir(Opq::Y, vec![("a", Node::Symlink(1)), ("b", Node::Whiteout)])),
        ("e", dir(Opq::Y, vec![("y", file(15))])),
        ("f", dir(Opq::X, vec![("y", file(16))])),
        ("g", dir(Opq::Other, vec![("y", file(17))])),
        ("h", dir(Opq::No, vec![("y", file(18))])),
        ("i", dir(Opq::No, vec![("y", file(22))])),
        ("j", dir(Opq::No, vec![("y", file(23))])),
        ("l", Node::Symlink(0)),
    ]);
    // The detection cannot quietly thin out the test on a kernel that has xwhiteouts.
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (v.next().unwrap(), v.next().unwrap());
    let has = on_private_mount_ns(kernel_has_xwhiteouts);
    assert_eq!(has, version >= (6, 7), "kernel {release}: xwhiteouts honoured: {has}");
    let r = on_private_mount_ns(|| check_stack(&for_this_kernel(vec![l0, l1, l2])));
    if let Err(e) = r {
        panic!("{e}");
    }
}
