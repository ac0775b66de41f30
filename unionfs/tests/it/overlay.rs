//! The overlay driver against the real kernel: 500-layer stacks, copy-up, whiteouts, opaque
//! dirs, read-only stacks, tmpfs uppers, every option as the kernel records it, the `mount(2)`
//! fallback (plain and compacted), typed errors, and handle teardown. Everything lives in a
//! `TempDir`, mount points included; handles unmount on drop, and the `TempDir` detaches
//! whatever a panicking test leaves.

use crate::tweak;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nook_testutil::{TempDir, require_root};
use nook_unionfs::{
    Error, LayerStack, MAX_LOWER_LAYERS, MountedStack, Overlay, OverlayOptions, PathProblem, RedirectDir,
    StorageDriver, Upper, ValidationError, supports_lowerdir_plus,
};

/// The `/proc/self/mountinfo` line of the mount at `target` (the topmost one), if any.
fn mountinfo(target: &Path) -> Option<String> {
    nook_testutil::mountinfo_line(target)
}

/// The overlay super options of the mount at `target`.
fn super_options(target: &Path) -> Vec<String> {
    let line = mountinfo(target).unwrap_or_else(|| panic!("{target:?} is not mounted"));
    let after = line.split(" - ").nth(1).unwrap();
    let mut f = after.split(' ');
    assert_eq!(f.next(), Some("overlay"), "{line}");
    f.nth(1).unwrap().split(',').map(str::to_owned).collect()
}

fn is_mounted(target: &Path) -> bool {
    mountinfo(target).is_some_and(|l| l.contains(" - overlay "))
}

/// `n` layer dirs under `base/<name(i)>`, layer `i` holding `f<i>` and `shared` (= `i`).
fn make_layers(base: &Path, n: usize, name: impl Fn(usize) -> String) -> Vec<PathBuf> {
    fs::create_dir_all(base).unwrap();
    (0..n)
        .map(|i| {
            let d = base.join(name(i));
            fs::create_dir(&d).unwrap();
            fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
            fs::write(d.join("shared"), i.to_string()).unwrap();
            d
        })
        .collect()
}

fn mkdir(p: PathBuf) -> PathBuf {
    fs::create_dir_all(&p).unwrap();
    p
}

fn upper_in(tmp: &TempDir, tag: &str) -> Upper {
    Upper::Dir { upper: mkdir(tmp.join(format!("{tag}-upper"))), work: mkdir(tmp.join(format!("{tag}-work"))) }
}

fn legacy() -> OverlayOptions {
    tweak(OverlayOptions::default(), |o| o.legacy_mount = true)
}

/// Every layer's file is visible and the top layer wins `shared`.
#[track_caller]
fn assert_union(target: &Path, n: usize) {
    for i in 0..n {
        assert_eq!(fs::read_to_string(target.join(format!("f{i}"))).unwrap(), i.to_string(), "layer {i}");
    }
    assert_eq!(fs::read_to_string(target.join("shared")).unwrap(), (n - 1).to_string());
}

#[test]
fn five_hundred_layers_mount_and_the_top_wins() {
    require_root!();
    let tmp = TempDir::new("ovl500").unwrap();
    let layers = make_layers(&tmp.join("layers"), MAX_LOWER_LAYERS, |i| format!("layer-{i:03}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers);
    let m = stack.mount(&target).unwrap();
    assert_union(&target, MAX_LOWER_LAYERS);
    let opts = super_options(&target);
    if supports_lowerdir_plus() {
        // One lowerdir+ per layer, top first.
        let plus: Vec<&String> = opts.iter().filter(|o| o.starts_with("lowerdir+=")).collect();
        assert_eq!(plus.len(), MAX_LOWER_LAYERS);
        assert_eq!(plus[0], &format!("lowerdir+={}", layers[MAX_LOWER_LAYERS - 1].display()));
    }
    assert!(opts.iter().any(|o| o == "ro"), "{opts:?}");
    m.remove().unwrap();
    assert!(!is_mounted(&target));
}

#[test]
fn layer_501_is_refused_and_nothing_is_mounted() {
    require_root!();
    let tmp = TempDir::new("ovl501").unwrap();
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    // The dirs do not even exist: the refusal comes before any syscall.
    stack.lowers((0..=MAX_LOWER_LAYERS).map(|i| tmp.join(format!("l{i}"))));
    assert_eq!(stack.validate(), Err(ValidationError::TooManyLowers { count: 501 }));
    match stack.mount(&target).unwrap_err() {
        Error::Invalid(ValidationError::TooManyLowers { count: 501 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(mountinfo(&target).is_none());
}

#[test]
fn top_layer_wins_on_both_mount_paths() {
    require_root!();
    let tmp = TempDir::new("ovlord").unwrap();
    let layers = make_layers(&tmp.join("l"), 3, |i| format!("{i}"));
    for (tag, opts) in [("new", OverlayOptions::default()), ("old", legacy())] {
        let target = mkdir(tmp.join(format!("mnt-{tag}")));
        let mut stack = LayerStack::new();
        stack.lowers(&layers).upper(upper_in(&tmp, tag)).options(opts.clone());
        let m = stack.mount(&target).unwrap();
        assert_union(&target, 3);
        let so = super_options(&target);
        if opts.legacy_mount {
            let want = format!("lowerdir={}:{}:{}", layers[2].display(), layers[1].display(), layers[0].display());
            assert!(so.contains(&want), "{so:?}");
        } else if supports_lowerdir_plus() {
            assert!(so[1].starts_with("lowerdir+="), "{so:?}");
        }
        drop(m);
        assert!(!is_mounted(&target), "{tag}: drop unmounts");
    }
}

#[test]
fn writing_a_lower_file_copies_it_up() {
    require_root!();
    let tmp = TempDir::new("ovlcopy").unwrap();
    let lower = mkdir(tmp.join("lower"));
    fs::write(lower.join("file"), "lower data").unwrap();
    let (upper, work) = (mkdir(tmp.join("upper")), mkdir(tmp.join("work")));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lower(&lower).upper(Upper::Dir { upper: upper.clone(), work });
    let m = stack.mount(&target).unwrap();
    assert_eq!(m.upper_dir(), Some(upper.as_path()));
    assert!(!upper.join("file").exists());
    fs::OpenOptions::new().append(true).open(target.join("file")).unwrap().write_all(b" + more").unwrap();
    assert_eq!(fs::read_to_string(target.join("file")).unwrap(), "lower data + more");
    assert_eq!(fs::read_to_string(upper.join("file")).unwrap(), "lower data + more");
    assert_eq!(fs::read_to_string(lower.join("file")).unwrap(), "lower data");
    m.remove().unwrap();
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout() {
    require_root!();
    let tmp = TempDir::new("ovlwh").unwrap();
    let lower = mkdir(tmp.join("lower"));
    fs::write(lower.join("gone"), "x").unwrap();
    let upper = mkdir(tmp.join("upper"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lower(&lower).upper(Upper::Dir { upper: upper.clone(), work: mkdir(tmp.join("work")) });
    let m = stack.mount(&target).unwrap();
    fs::remove_file(target.join("gone")).unwrap();
    assert!(!target.join("gone").exists());
    let md = fs::symlink_metadata(upper.join("gone")).unwrap();
    assert!(md.file_type().is_char_device(), "{md:?}");
    assert_eq!(md.rdev(), 0, "whiteout is a 0/0 char device");
    assert!(lower.join("gone").exists());
    m.remove().unwrap();
}

/// rmdir + mkdir of a lower dir: the new upper dir is opaque (hides the lower one's entries).
fn recreate_dir_and_read_opaque(options: OverlayOptions, xattr: &str) {
    let tmp = TempDir::new("ovlopq").unwrap();
    let lower = mkdir(tmp.join("lower"));
    fs::create_dir(lower.join("d")).unwrap();
    fs::write(lower.join("d/old"), "x").unwrap();
    let upper = mkdir(tmp.join("upper"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lower(&lower).upper(Upper::Dir { upper: upper.clone(), work: mkdir(tmp.join("work")) }).options(options);
    let m = stack.mount(&target).unwrap();
    fs::remove_file(target.join("d/old")).unwrap();
    fs::remove_dir(target.join("d")).unwrap();
    fs::create_dir(target.join("d")).unwrap();
    assert_eq!(fs::read_dir(target.join("d")).unwrap().count(), 0);
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(upper.join("d"), xattr, &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"y", "{xattr}");
    assert!(lower.join("d/old").exists());
    m.remove().unwrap();
}

#[test]
fn recreated_dir_is_opaque() {
    require_root!();
    recreate_dir_and_read_opaque(OverlayOptions::default(), "trusted.overlay.opaque");
}

#[test]
fn userxattr_marks_with_user_xattrs() {
    require_root!();
    recreate_dir_and_read_opaque(tweak(OverlayOptions::default(), |o| o.userxattr = true), "user.overlay.opaque");
}

#[test]
fn read_only_stack_refuses_writes() {
    require_root!();
    let tmp = TempDir::new("ovlro").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers);
    let m = stack.mount(&target).unwrap();
    assert_eq!(m.upper_dir(), None);
    for err in [
        fs::write(target.join("new"), "x").unwrap_err(),
        fs::OpenOptions::new().write(true).open(target.join("f0")).unwrap_err(),
        fs::remove_file(target.join("f1")).unwrap_err(),
    ] {
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
    m.remove().unwrap();
}

fn tmpfs_upper(opts: OverlayOptions) {
    let tmp = TempDir::new("ovltmpfs").unwrap();
    let layers = make_layers(&tmp.join("l"), 1, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers).upper(Upper::Tmpfs { size: Some(1 << 20) }).options(opts);
    let m = stack.mount(&target).unwrap();
    fs::write(target.join("new"), "in tmpfs").unwrap();
    fs::write(target.join("f0"), "changed").unwrap();
    let upper = m.upper_dir().unwrap().to_owned();
    assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "in tmpfs");
    assert_eq!(fs::read_to_string(upper.join("f0")).unwrap(), "changed");
    assert_eq!(fs::read_to_string(layers[0].join("f0")).unwrap(), "0");
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o755);
    // The size limit is the tmpfs's: 2 MiB do not fit in 1 MiB.
    let err = fs::write(target.join("big"), vec![7u8; 2 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // Nothing written lands on disk next to the layers.
    let on_disk: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    // Handed over by descriptor (the kernel shows the path inside the tmpfs) or by /proc path.
    let so = super_options(&target);
    assert!(so.iter().any(|o| o == "upperdir=/upper" || o.starts_with("upperdir=/proc/self/fd/")), "{so:?}");
    m.remove().unwrap();
    assert!(!is_mounted(&target));
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    // (Whether the /proc path still leads anywhere is not checked: a parallel test may get
    // the same fd number and, the old tmpfs being freed, the same anonymous device number.)
}

#[test]
fn tmpfs_upper_works_and_leaves_nothing() {
    require_root!();
    tmpfs_upper(OverlayOptions::default());
}

#[test]
fn tmpfs_upper_through_mount2() {
    require_root!();
    tmpfs_upper(tweak(OverlayOptions::default(), |o| {
        o.legacy_mount = true;
        o.volatile = true;
    }));
}

/// Each option set, the super options the kernel must show, and ones it must not.
fn option_cases() -> Vec<(OverlayOptions, &'static [&'static str], &'static [&'static str])> {
    let o = OverlayOptions::default;
    vec![
        (tweak(o(), |o| o.volatile = true), &["fsync=volatile"], &[]),
        (tweak(o(), |o| o.index = Some(true)), &["index=on"], &[]),
        (tweak(o(), |o| o.index = Some(false)), &[], &["index=on"]),
        (tweak(o(), |o| o.metacopy = Some(true)), &["metacopy=on", "redirect_dir=on"], &[]),
        (tweak(o(), |o| o.metacopy = Some(false)), &[], &["metacopy=on"]),
        (tweak(o(), |o| o.redirect_dir = Some(RedirectDir::On)), &["redirect_dir=on"], &[]),
        (tweak(o(), |o| o.redirect_dir = Some(RedirectDir::NoFollow)), &["redirect_dir=nofollow"], &[]),
        (tweak(o(), |o| o.redirect_dir = Some(RedirectDir::Follow)), &[], &["redirect_dir=on"]),
        (tweak(o(), |o| o.redirect_dir = Some(RedirectDir::Off)), &[], &["redirect_dir=on"]),
        (tweak(o(), |o| o.userxattr = true), &["userxattr", "redirect_dir=nofollow"], &[]),
        (
            tweak(o(), |o| {
                o.volatile = true;
                o.index = Some(true);
                o.metacopy = Some(true);
                o.redirect_dir = Some(RedirectDir::On);
            }),
            &["fsync=volatile", "index=on", "metacopy=on", "redirect_dir=on"],
            &[],
        ),
        (
            tweak(o(), |o| {
                o.userxattr = true;
                o.index = Some(true);
                o.redirect_dir = Some(RedirectDir::NoFollow);
            }),
            &["userxattr", "index=on", "redirect_dir=nofollow"],
            &[],
        ),
    ]
}

#[test]
fn every_option_reaches_the_kernel() {
    require_root!();
    let tmp = TempDir::new("ovlopts").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    for (n, (opts, want, not)) in option_cases().into_iter().enumerate() {
        for legacy_mount in [false, true] {
            let tag = format!("{n}-{legacy_mount}");
            let target = mkdir(tmp.join(format!("mnt-{tag}")));
            let mut stack = LayerStack::new();
            let opts = tweak(opts.clone(), |o| o.legacy_mount = legacy_mount);
            stack.lowers(&layers).upper(upper_in(&tmp, &tag)).options(opts.clone());
            let m = stack.mount(&target).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
            let so = super_options(&target);
            for w in want {
                // metacopy=on turns redirect_dir on; overlayfs shows that only since its own
                // option parser (6.5), before it keeps the mode string it was given.
                // (userxattr implies redirect_dir=nofollow likewise.)
                let implied = w.starts_with("redirect_dir=") && opts.redirect_dir.is_none();
                if implied && !nook_unionfs::probe().native_fs_context {
                    continue;
                }
                // Kernels before 6.6 (no fsync= option) show volatile as plain "volatile".
                let seen = so.iter().any(|o| o == w || (*w == "fsync=volatile" && o == "volatile"));
                assert!(seen, "{opts:?}: {w} missing from {so:?}");
            }
            for w in not {
                assert!(!so.iter().any(|o| o == w), "{opts:?}: {w} in {so:?}");
            }
            // The union works with the option in force.
            fs::write(target.join("f0"), "w").unwrap();
            assert_eq!(fs::read_to_string(target.join("shared")).unwrap(), "1");
            m.remove().unwrap();
        }
    }
}

#[test]
fn read_only_stack_takes_metacopy_and_redirect_options() {
    require_root!();
    let tmp = TempDir::new("ovlroopt").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    let opts = tweak(OverlayOptions::default(), |o| {
        o.metacopy = Some(true);
        o.redirect_dir = Some(RedirectDir::On);
    });
    stack.lowers(&layers).options(opts);
    let m = stack.mount(&target).unwrap();
    let so = super_options(&target);
    assert!(so.iter().any(|o| o == "metacopy=on"), "{so:?}");
    m.remove().unwrap();
}

#[test]
fn mount2_fallback_compacts_a_stack_longer_than_a_page() {
    require_root!();
    let tmp = TempDir::new("ovlcompact").unwrap();
    let layers = make_layers(&tmp.join("layers"), MAX_LOWER_LAYERS, |i| format!("{i}"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers).upper(upper_in(&tmp, "u")).options(legacy());
    // The plain string does not fit in one page.
    assert!(stack.mount_data().unwrap().len() > nook_unionfs::MAX_MOUNT_DATA);
    let cwd = std::env::current_dir().unwrap();
    let target = mkdir(tmp.join("mnt"));
    let m = stack.mount(&target).unwrap();
    assert_eq!(std::env::current_dir().unwrap(), cwd, "the caller's cwd never moves");
    assert_union(&target, MAX_LOWER_LAYERS);
    // Relative to the layers' common parent: the kernel got "499:498:...:0".
    let so = super_options(&target);
    let lowerdir = so.iter().find(|o| o.starts_with("lowerdir=")).unwrap();
    let want: Vec<String> = (0..MAX_LOWER_LAYERS).rev().map(|i| i.to_string()).collect();
    assert_eq!(lowerdir, &format!("lowerdir={}", want.join(":")));
    fs::write(target.join("written"), "x").unwrap();
    assert!(tmp.join("u-upper/written").exists());
    m.remove().unwrap();
}

#[test]
fn mount2_fallback_names_layers_by_descriptor_when_paths_stay_long() {
    require_root!();
    let tmp = TempDir::new("ovlfdnames").unwrap();
    // 500 names of 120 bytes: 60 KB relative to their parent, far past a page.
    let layers = make_layers(&tmp.join("layers"), MAX_LOWER_LAYERS, |i| format!("{i:03}-{}", "x".repeat(116)));
    for upper in [upper_in(&tmp, "u"), Upper::Tmpfs { size: None }] {
        let target = mkdir(tmp.join(format!("mnt-{}", matches!(upper, Upper::Tmpfs { .. }))));
        let mut stack = LayerStack::new();
        stack.lowers(&layers).upper(upper).options(legacy());
        let cwd = std::env::current_dir().unwrap();
        let m = stack.mount(&target).unwrap();
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert_union(&target, MAX_LOWER_LAYERS);
        let so = super_options(&target);
        let lowerdir = so.iter().find(|o| o.starts_with("lowerdir=")).unwrap();
        assert!(
            lowerdir["lowerdir=".len()..].split(':').all(|n| n.parse::<u32>().is_ok()),
            "descriptor numbers: {lowerdir}"
        );
        fs::write(target.join("written"), "x").unwrap();
        assert_eq!(fs::read_to_string(m.upper_dir().unwrap().join("written")).unwrap(), "x");
        m.remove().unwrap();
    }
}

#[test]
fn odd_characters_in_paths_survive_both_mount_paths() {
    require_root!();
    let tmp = TempDir::new("ovlodd").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("a:b,c\\d =e{i}"));
    for (tag, opts) in [("new", OverlayOptions::default()), ("old", legacy())] {
        let upper = mkdir(tmp.join(format!("up:{tag},x\\y")));
        let work = mkdir(tmp.join(format!("wk,{tag}:\\")));
        let target = mkdir(tmp.join(format!("mnt {tag}")));
        let mut stack = LayerStack::new();
        stack.lowers(&layers).upper(Upper::Dir { upper: upper.clone(), work }).options(opts);
        let m = stack.mount(&target).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_union(&target, 2);
        fs::write(target.join("w"), "x").unwrap();
        assert!(upper.join("w").exists(), "{tag}");
        m.remove().unwrap();
    }
}

#[test]
fn paths_longer_than_an_fsconfig_string_still_mount() {
    require_root!();
    let tmp = TempDir::new("ovllong").unwrap();
    // A lower path over 255 bytes: fsconfig cannot take it, the driver uses mount(2).
    let deep = tmp.join(format!("{}/{}", "d".repeat(150), "e".repeat(150)));
    let layers = make_layers(&deep, 2, |i| format!("{i}"));
    assert!(layers[0].as_os_str().len() > 255);
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers);
    let m = stack.mount(&target).unwrap();
    assert_union(&target, 2);
    m.remove().unwrap();
}

#[test]
fn bad_input_gives_typed_errors() {
    require_root!();
    let tmp = TempDir::new("ovlbad").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));

    let mut rel = LayerStack::new();
    rel.lower(&layers[0]).lower("relative/dir");
    assert!(matches!(
        rel.mount(&target),
        Err(Error::Invalid(ValidationError::Path { field: "lower", problem: PathProblem::Relative, .. }))
    ));

    let mut ok = LayerStack::new();
    ok.lowers(&layers);
    assert!(matches!(
        ok.mount(Path::new("mnt")),
        Err(Error::Invalid(ValidationError::Path { field: "target", problem: PathProblem::Relative, .. }))
    ));

    // A missing lower: the kernel's ENOENT, naming the layer (new API) or the target (mount(2)).
    let missing = tmp.join("missing");
    for opts in [OverlayOptions::default(), legacy()] {
        let mut s = LayerStack::new();
        s.lower(&layers[0]).lower(&missing).options(opts.clone());
        match s.mount(&target).unwrap_err() {
            Error::Mount { call: op, path, source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{opts:?}");
                if opts.legacy_mount || !supports_lowerdir_plus() {
                    assert_eq!((op, path.as_path()), ("mount(overlay)", target.as_path()));
                } else {
                    assert_eq!((op, path.as_path()), ("fsconfig(lowerdir+)", missing.as_path()));
                }
            }
            other => panic!("{other:?}"),
        }
    }

    // The same dir under two names (a symlink) passes the lexical check; the kernel refuses.
    let alias = tmp.join("alias");
    std::os::unix::fs::symlink(&layers[0], &alias).unwrap();
    let mut s = LayerStack::new();
    s.lower(&layers[0]).lower(&alias);
    s.validate().unwrap();
    match s.mount(&target).unwrap_err() {
        Error::Mount { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ELOOP)),
        other => panic!("{other:?}"),
    }

    // A target that is not a directory.
    let file = tmp.join("file");
    fs::write(&file, "").unwrap();
    assert!(matches!(ok.mount(&file), Err(Error::Mount { .. })));
    assert!(!is_mounted(&target));
}

#[test]
fn drop_unmounts_remove_reports_leak_keeps() {
    require_root!();
    let tmp = TempDir::new("ovlhandle").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers);

    let m = stack.mount(&target).unwrap();
    assert!(is_mounted(&target));
    drop(m);
    assert!(!is_mounted(&target));

    // Busy: remove() reports it and detaches lazily; the open file still reads.
    let m = stack.mount(&target).unwrap();
    let mut open = fs::File::open(target.join("f0")).unwrap();
    match m.remove() {
        Err(Error::Busy { target: t, detached: true }) => assert_eq!(t, target),
        other => panic!("{other:?}"),
    }
    assert!(!is_mounted(&target));
    let mut s = String::new();
    std::io::Read::read_to_string(&mut open, &mut s).unwrap();
    assert_eq!(s, "0");
    drop(open);

    // remove() of a stack someone else unmounted reports that too.
    let m = stack.mount(&target).unwrap();
    rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()).unwrap();
    match m.remove() {
        Err(Error::Sys { call: "umount2", source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EINVAL)),
        other => panic!("{other:?}"),
    }

    // leak() keeps it.
    let m = stack.mount(&target).unwrap();
    assert_eq!(m.leak(), target);
    assert!(is_mounted(&target));
    rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()).unwrap();
}

#[test]
fn storage_driver_trait_mounts_through_overlay() {
    require_root!();
    let tmp = TempDir::new("ovldrv").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let driver: Box<dyn StorageDriver> = Box::new(Overlay);
    assert_eq!(driver.name(), "overlay");
    let mut stack = LayerStack::new();
    stack.lowers(&layers).upper(Upper::Tmpfs { size: None });
    let m: MountedStack = driver.mount(&stack, &target).unwrap();
    assert_union(&target, 2);
    assert_eq!(m.target(), target);
    m.remove().unwrap();
}

#[test]
fn mounts_from_many_threads_at_once() {
    require_root!();
    let tmp = TempDir::new("ovlthreads").unwrap();
    let layers = make_layers(&tmp.join("layers"), 300, |i| format!("{i}"));
    let cwd = std::env::current_dir().unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (tmp, layers) = (&tmp, &layers);
            s.spawn(move || {
                let target = mkdir(tmp.join(format!("mnt{t}")));
                let mut stack = LayerStack::new();
                // Half through mount(2) compaction (helper threads changing their cwd).
                stack
                    .lowers(layers)
                    .upper(Upper::Tmpfs { size: None })
                    .options(tweak(OverlayOptions::default(), |o| o.legacy_mount = t % 2 == 0));
                let m = stack.mount(&target).unwrap();
                assert_union(&target, layers.len());
                fs::write(target.join("mine"), t.to_string()).unwrap();
                assert_eq!(fs::read_to_string(m.upper_dir().unwrap().join("mine")).unwrap(), t.to_string());
                m.remove().unwrap();
            });
        }
    });
    assert_eq!(std::env::current_dir().unwrap(), cwd);
}

/// Issue 20: before 6.5 the legacy fs_context wrapper accepted the old probe's `lowerdir+`, so
/// every overlay mount on 6.1 went to fsconfig and failed. Each field against the release.
#[test]
fn probe_matches_the_kernel_release() {
    require_root!();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (v.next().unwrap(), v.next().unwrap());
    let k = nook_unionfs::probe();
    assert!(k.fsopen, "kernel {release}: {k:?}");
    assert_eq!(k.native_fs_context, version >= (6, 5), "kernel {release}: {k:?}");
    assert_eq!(k.lowerdir_plus, version >= (6, 8), "kernel {release}: {k:?}");
    assert_eq!(k.layers_by_fd, version >= (6, 15), "kernel {release}: {k:?}");
    assert_eq!(supports_lowerdir_plus(), k.lowerdir_plus);
    // Cached: the same answer again.
    assert_eq!(nook_unionfs::probe(), k);
}

/// A context the probe calls legacy really takes any key (the trap of issue 20), and a native
/// one really refuses an unknown key and takes `lowerdir+` exactly when reported.
#[test]
fn the_probe_agrees_with_a_raw_context() {
    require_root!();
    let k = nook_unionfs::probe();
    assert!(k.fsopen, "overlayfs and fsopen are available on every tested kernel: {k:?}");
    let fresh = || rustix::mount::fsopen("overlay", rustix::mount::FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
    let unknown = rustix::mount::fsconfig_set_string(fresh(), "nk_no_kernel_has_this_key", "1");
    assert_eq!(unknown.is_ok(), !k.native_fs_context, "{k:?}");
    let plus = rustix::mount::fsconfig_set_string(fresh(), "lowerdir+", "/");
    if k.native_fs_context {
        assert_eq!(plus.is_ok(), k.lowerdir_plus, "{k:?}");
    } else {
        // The legacy wrapper "accepts" lowerdir+ too: what fooled the old probe.
        assert!(plus.is_ok(), "{plus:?}");
        assert!(!k.lowerdir_plus);
    }
}

/// The driver picks its path from the probe: on a kernel without `lowerdir+` a default mount
/// goes through `mount(2)` (mountinfo shows `lowerdir=`), on one with it through fsconfig.
#[test]
fn the_mount_path_follows_the_probe() {
    require_root!();
    let tmp = TempDir::new("ovlpath").unwrap();
    let layers = make_layers(&tmp.join("l"), 2, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let mut stack = LayerStack::new();
    stack.lowers(&layers).upper(Upper::Tmpfs { size: None });
    let m = stack.mount(&target).unwrap();
    assert_union(&target, 2);
    let so = super_options(&target);
    let plus = so.iter().any(|o| o.starts_with("lowerdir+="));
    assert_eq!(plus, supports_lowerdir_plus(), "{so:?}");
    if !plus {
        let want = format!("lowerdir={}:{}", layers[1].display(), layers[0].display());
        assert!(so.contains(&want), "{so:?}");
    }
    fs::write(target.join("new"), "x").unwrap();
    assert_eq!(fs::read_to_string(m.upper_dir().unwrap().join("new")).unwrap(), "x");
    m.remove().unwrap();
}

#[test]
fn a_missing_upper_dir_is_a_kernel_error_on_the_upper() {
    require_root!();
    let tmp = TempDir::new("ovlnoup").unwrap();
    let layers = make_layers(&tmp.join("l"), 1, |i| format!("{i}"));
    let target = mkdir(tmp.join("mnt"));
    let upper = tmp.join("no-upper");
    let mut stack = LayerStack::new();
    stack.lowers(&layers).upper(Upper::Dir { upper: upper.clone(), work: mkdir(tmp.join("work")) });
    match stack.mount(&target).unwrap_err() {
        Error::Mount { call: op, path, source, .. } => {
            assert_eq!(source.kind(), ErrorKind::NotFound);
            if supports_lowerdir_plus() {
                assert_eq!((op, path), ("fsconfig(upperdir)", upper));
            }
        }
        other => panic!("{other:?}"),
    }
}
