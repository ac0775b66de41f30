//! Applying layer tars: formats, metadata, DiffID, progress, whiteouts, replacement rules.

use crate::tweak;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::tarutil::{Tar, gzip, sha256sum, xattr, zstd};
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{ApplyOptions, Error, Progress, UnsafeEntry, WhiteoutFormat, apply_layer};
use tar::EntryType;

const LONG_DIR: &str = "nk-a-rather-long-directory-name-that-goes-on/and-on-and-on-for-quite-a-while/until-it-needs";

/// A tar with one of everything.
fn rich_tar() -> Tar {
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .dir("bin", 0o755)
        .file_owned("bin/su", b"\x7fELF fake su", 0o4755, 0, 0, 1_500_000_000)
        .file_owned("bin/wall", b"wall", 0o2755, 0, 5, 1_500_000_001)
        .hardlink("bin/su2", "bin/su")
        .symlink("bin/sh", "/bin/busybox")
        .symlink("lib", "usr/lib")
        .dir_owned("home", 0o755, 0, 0, 1_400_000_000)
        .dir_owned("home/u", 0o750, 1000, 1000, 1_400_000_001)
        .file_owned("home/u/notes", b"private", 0o640, 1000, 1000, 1_500_000_002)
        .dir_owned("tmp", 0o1777, 0, 0, 1_400_000_002)
        .dir_owned("secret", 0o500, 0, 0, 1_400_000_003)
        .file_owned("secret/key", b"k", 0o400, 0, 0, 1_500_000_003)
        .pax(&[("SCHILY.xattr.user.nk", b"hello"), ("mtime", b"1500000004.25")])
        .file("etc/with-xattr", b"x")
        .pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
        .dir("etc/not-opaque", 0o755)
        .fifo("run-fifo")
        .file(&format!("{LONG_DIR}/a-gnu-long-name-extension-because-it-is-longer-than-a-hundred-bytes.txt"), b"long");
    t
}

fn check_rich(root: &Path) {
    let md = |p: &str| fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"root:x:0:0:root:/root:/bin/sh\n");
    let su = md("bin/su");
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(su.mtime(), 1_500_000_000);
    let wall = md("bin/wall");
    assert_eq!(wall.mode() & 0o7777, 0o2755, "setgid kept after chown");
    assert_eq!(wall.gid(), 5);
    assert_eq!(md("bin/su2").ino(), su.ino(), "hardlink shares the inode");
    assert_eq!(su.nlink(), 2);
    assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!(fs::read_link(root.join("lib")).unwrap(), Path::new("usr/lib"));
    assert_eq!(md("bin/sh").mtime(), 1_600_000_000, "symlink times set without following");
    let u = md("home/u");
    assert_eq!((u.uid(), u.gid(), u.mode() & 0o7777), (1000, 1000, 0o750));
    assert_eq!(u.mtime(), 1_400_000_001, "dir mtime set after its contents");
    let notes = md("home/u/notes");
    assert_eq!((notes.uid(), notes.gid(), notes.mode() & 0o7777), (1000, 1000, 0o640));
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("secret").mode() & 0o7777, 0o500);
    assert_eq!(md("secret").mtime(), 1_400_000_003);
    assert_eq!(fs::read(root.join("secret/key")).unwrap(), b"k");
    assert_eq!(xattr(&root.join("etc/with-xattr"), "user.nk").as_deref(), Some(&b"hello"[..]));
    let wx = md("etc/with-xattr");
    assert_eq!((wx.mtime(), wx.mtime_nsec()), (1_500_000_004, 250_000_000), "PAX mtime");
    assert_eq!(
        xattr(&root.join("etc/not-opaque"), "trusted.overlay.opaque"),
        None,
        "overlay xattrs not taken from a tar"
    );
    assert!(md("run-fifo").file_type().is_fifo());
    let long = format!("{LONG_DIR}/a-gnu-long-name-extension-because-it-is-longer-than-a-hundred-bytes.txt");
    assert_eq!(fs::read(root.join(long)).unwrap(), b"long");
}

#[test]
fn applies_plain_gzip_and_zstd_keeping_metadata() {
    require_root!();
    let tmp = TempDir::new("nkapply").unwrap();
    let t = rich_tar();
    let count = t.count;
    let plain = t.finish();
    for (name, bytes) in [("plain", plain.clone()), ("gzip", gzip(&plain)), ("zstd", zstd(&plain))] {
        let root = tmp.join(name);
        fs::create_dir(&root).unwrap();
        let applied = apply_layer(&bytes[..], &root, ApplyOptions::default()).unwrap();
        assert_eq!(applied.entries, count, "{name}");
        assert_eq!(applied.size, plain.len() as u64, "{name}: uncompressed size");
        assert_eq!(applied.diff_id, nook_unionfs::Digest::sha256(&plain), "{name}: DiffID of the uncompressed tar");
        check_rich(&root);
    }
}

#[test]
fn diff_id_equals_sha256sum_of_the_tar() {
    let tmp = TempDir::new("nkdiffid").unwrap();
    let mut t = Tar::new();
    t.dir("a", 0o755).file("a/b", b"bbb");
    let mut bytes = t.finish();
    // What GNU tar does: pad the archive to a 10 KiB record after the end-of-archive blocks.
    bytes.resize(bytes.len().div_ceil(10240) * 10240 + 10240, 0);
    let tar_path = tmp.join("layer.tar");
    fs::write(&tar_path, &bytes).unwrap();
    let expected = sha256sum(&tar_path);
    for (name, input) in [("plain", bytes.clone()), ("gzip", gzip(&bytes)), ("zstd", zstd(&bytes))] {
        let root = tmp.join(name);
        fs::create_dir(&root).unwrap();
        let applied = apply_layer(&input[..], &root, ApplyOptions::default()).unwrap();
        assert_eq!(applied.diff_id.as_str(), expected, "{name}");
        assert_eq!(applied.size, bytes.len() as u64);
        assert_eq!(fs::read(root.join("a/b")).unwrap(), b"bbb");
    }
}

#[test]
fn reports_progress() {
    let tmp = TempDir::new("nkprogress").unwrap();
    let mut t = Tar::new();
    let big = vec![7u8; 10 * 1024 * 1024];
    t.file("big", &big);
    for i in 0..50 {
        t.file(&format!("small{i}"), b"s");
    }
    let count = t.count;
    let bytes = t.finish();
    let mut seen: Vec<Progress> = Vec::new();
    let mut cb = |p: Progress| seen.push(p);
    let root = tmp.join("root");
    fs::create_dir(&root).unwrap();
    let total = bytes.len() as u64;
    let mut options = ApplyOptions::default();
    options.bytes_total = Some(total);
    options.progress = Some(&mut cb);
    let applied = apply_layer(&bytes[..], &root, options).unwrap();
    assert_eq!(applied.entries, count);
    assert!(seen.len() as u64 > count, "reports within the big entry too ({} reports)", seen.len());
    assert!(seen.iter().take_while(|p| p.entries == 0).count() >= 2, "at least two reports while copying 10 MiB");
    for w in seen.windows(2) {
        assert!(w[0].bytes_read <= w[1].bytes_read && w[0].entries <= w[1].entries, "monotonic: {w:?}");
    }
    assert!(seen.iter().all(|p| p.bytes_total == Some(total)));
    let last = seen.last().unwrap();
    assert_eq!(last.entries, count);
    assert_eq!(last.bytes_read, total, "all input read by the end");
    // gzip: bytes_read counts compressed bytes.
    let gz = gzip(&bytes);
    let mut seen: Vec<Progress> = Vec::new();
    let mut cb = |p: Progress| seen.push(p);
    let root = tmp.join("root-gz");
    fs::create_dir(&root).unwrap();
    let mut options = ApplyOptions::default();
    options.progress = Some(&mut cb);
    apply_layer(&gz[..], &root, options).unwrap();
    assert_eq!(seen.last().unwrap().bytes_read, gz.len() as u64);
    assert_eq!(seen.last().unwrap().bytes_total, None);
}

fn whiteout_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("a", 0o755)
        .file("a/.wh.b", b"")
        .dir("a/.wh.gone-dir-parent-missing-ok", 0o755) // a dir named .wh.X is a whiteout too
        .dir("c", 0o755)
        .file("c/.wh..wh..opq", b"")
        .file("c/new", b"new")
        .dir("c/kept", 0o755)
        .file("c/kept/inner", b"inner")
        .file(".wh..wh.plnk", b""); // AUFS metadata: skipped
    t.finish()
}

fn lower_rootfs(root: &Path) {
    fs::create_dir_all(root.join("a/b-dir-sibling")).unwrap();
    fs::write(root.join("a/b"), b"old b").unwrap();
    fs::write(root.join("a/keep"), b"keep").unwrap();
    fs::create_dir_all(root.join("c/olddir/deep")).unwrap();
    fs::write(root.join("c/olddir/deep/x"), b"x").unwrap();
    fs::write(root.join("c/old1"), b"old1").unwrap();
    fs::create_dir_all(root.join("c/kept")).unwrap();
    fs::write(root.join("c/kept/lower-only"), b"lower").unwrap();
}

#[test]
fn whiteouts_overlay_format() {
    require_root!();
    let tmp = TempDir::new("nkwhov").unwrap();
    let root = tmp.join("layer");
    fs::create_dir(&root).unwrap();
    let opts = tweak(ApplyOptions::default(), |o| o.whiteouts = Some(WhiteoutFormat::Overlay));
    apply_layer(&whiteout_tar()[..], &root, opts).unwrap();
    let b = fs::symlink_metadata(root.join("a/b")).unwrap();
    assert!(b.file_type().is_char_device() && b.rdev() == 0, "a/b is a 0/0 char device");
    let g = fs::symlink_metadata(root.join("a/gone-dir-parent-missing-ok")).unwrap();
    assert!(g.file_type().is_char_device() && g.rdev() == 0);
    assert_eq!(xattr(&root.join("c"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(fs::read(root.join("c/new")).unwrap(), b"new");
    assert!(!root.join("a/.wh.b").exists() && !root.join("c/.wh..wh..opq").exists());
    assert!(!root.join(".wh..wh.plnk").exists());
}

#[test]
fn whiteouts_overlay_userxattr_format() {
    let tmp = TempDir::new("nkwhux").unwrap();
    let root = tmp.join("layer");
    fs::create_dir(&root).unwrap();
    let opts = tweak(ApplyOptions::default(), |o| o.whiteouts = Some(WhiteoutFormat::OverlayUserXattr));
    apply_layer(&whiteout_tar()[..], &root, opts).unwrap();
    assert_eq!(xattr(&root.join("c"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&root.join("c"), "trusted.overlay.opaque"), None);
    let b = fs::symlink_metadata(root.join("a/b")).unwrap();
    assert!(b.file_type().is_char_device() && b.rdev() == 0);
}

#[test]
fn whiteouts_aufs_format_kept_as_files() {
    let tmp = TempDir::new("nkwhau").unwrap();
    let root = tmp.join("layer");
    fs::create_dir(&root).unwrap();
    let opts = tweak(ApplyOptions::default(), |o| o.whiteouts = Some(WhiteoutFormat::Aufs));
    apply_layer(&whiteout_tar()[..], &root, opts).unwrap();
    assert!(fs::symlink_metadata(root.join("a/.wh.b")).unwrap().is_file());
    assert!(fs::symlink_metadata(root.join("c/.wh..wh..opq")).unwrap().is_file());
    assert!(root.join(".wh..wh.plnk").exists());
    assert!(!root.join("a/b").exists());
}

#[test]
fn whiteouts_plain_extraction_deletes() {
    let tmp = TempDir::new("nkwhnone").unwrap();
    let root = tmp.join("rootfs");
    lower_rootfs(&root);
    apply_layer(&whiteout_tar()[..], &root, ApplyOptions::default()).unwrap();
    assert!(!root.join("a/b").exists(), "whiteout deleted a/b");
    assert!(root.join("a/b-dir-sibling").is_dir());
    assert_eq!(fs::read(root.join("a/keep")).unwrap(), b"keep");
    assert!(!root.join("c/old1").exists(), "opaque dir cleared");
    assert!(!root.join("c/olddir").exists(), "opaque dir cleared recursively");
    assert!(!root.join("c/kept/lower-only").exists(), "opaque clears below kept dirs too");
    assert_eq!(fs::read(root.join("c/kept/inner")).unwrap(), b"inner");
    assert_eq!(fs::read(root.join("c/new")).unwrap(), b"new");
    assert!(!root.join("a/.wh.b").exists() && !root.join("c/.wh..wh..opq").exists());
    // A whiteout for something absent, under a missing parent: nothing to do, nothing created.
    let mut t = Tar::new();
    t.file("nope/deeper/.wh.x", b"");
    apply_layer(&t.finish()[..], &root, ApplyOptions::default()).unwrap();
    assert!(!root.join("nope").exists());
}

#[test]
fn replaces_existing_entries_like_docker() {
    let tmp = TempDir::new("nkreplace").unwrap();
    let root = tmp.join("rootfs");
    let outside = tmp.join("outside");
    fs::create_dir_all(root.join("x/sub")).unwrap();
    fs::write(root.join("x/sub/f"), b"f").unwrap();
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d/lower"), b"lower").unwrap();
    fs::write(root.join("f"), b"file").unwrap();
    fs::write(&outside, b"outside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("s")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("s2")).unwrap();

    let mut t = Tar::new();
    t.file("x", b"now a file")
        .dir("d", 0o700)
        .file("d/upper", b"upper")
        .symlink("f", "target")
        .file("s", b"replaces the symlink")
        .dir("s2", 0o755);
    apply_layer(&t.finish()[..], &root, ApplyOptions::default()).unwrap();

    assert_eq!(fs::read(root.join("x")).unwrap(), b"now a file", "a file replaces a dir tree");
    assert_eq!(fs::read(root.join("d/lower")).unwrap(), b"lower", "dir over dir merges");
    assert_eq!(fs::read(root.join("d/upper")).unwrap(), b"upper");
    assert_eq!(fs::metadata(root.join("d")).unwrap().permissions().mode() & 0o7777, 0o700, "and updates metadata");
    assert_eq!(fs::read_link(root.join("f")).unwrap(), Path::new("target"));
    assert_eq!(fs::read(root.join("s")).unwrap(), b"replaces the symlink");
    assert!(fs::symlink_metadata(root.join("s2")).unwrap().is_dir());
    assert_eq!(fs::read(&outside).unwrap(), b"outside", "never written through the old symlink");
}

#[test]
fn devices_need_permission() {
    require_root!();
    let tmp = TempDir::new("nkdev").unwrap();
    let mut t = Tar::new();
    t.device("dev/null", EntryType::Char, 1, 3).device("dev/loopx", EntryType::Block, 7, 200);
    let bytes = t.finish();

    let root = tmp.join("refused");
    fs::create_dir(&root).unwrap();
    let err = apply_layer(&bytes[..], &root, ApplyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unsafe { reason: UnsafeEntry::DeviceNode, .. }), "{err:?}");
    assert!(!root.join("dev/null").exists());

    let root = tmp.join("allowed");
    fs::create_dir(&root).unwrap();
    apply_layer(&bytes[..], &root, tweak(ApplyOptions::default(), |o| o.allow_devices = true)).unwrap();
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev())), (1, 3));
    let blk = fs::symlink_metadata(root.join("dev/loopx")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!((rustix::fs::major(blk.rdev()), rustix::fs::minor(blk.rdev())), (7, 200));

    // A 0/0 char device (an overlay whiteout in a tar) is fine even when devices are refused.
    let mut t = Tar::new();
    t.device("wh", EntryType::Char, 0, 0);
    let root = tmp.join("whiteout-dev");
    fs::create_dir(&root).unwrap();
    apply_layer(&t.finish()[..], &root, ApplyOptions::default()).unwrap();
    assert!(fs::symlink_metadata(root.join("wh")).unwrap().file_type().is_char_device());
}

#[test]
fn root_entry_and_missing_parents() {
    require_root!();
    let tmp = TempDir::new("nkrootent").unwrap();
    let root = tmp.join("layer");
    fs::create_dir(&root).unwrap();
    let mut t = Tar::new();
    t.dir_owned("./", 0o711, 0, 0, 1_300_000_000).file("./deep/er/file", b"f");
    apply_layer(&t.finish()[..], &root, ApplyOptions::default()).unwrap();
    let md = fs::metadata(&root).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o711);
    assert_eq!(md.mtime(), 1_300_000_000);
    assert_eq!(fs::read(root.join("deep/er/file")).unwrap(), b"f");
    assert!(fs::symlink_metadata(root.join("deep/er")).unwrap().is_dir(), "missing parents created");
}

#[test]
fn truncated_tar_is_a_tar_error() {
    let tmp = TempDir::new("nktrunc").unwrap();
    let mut t = Tar::new();
    t.file("f", &vec![1u8; 4096]);
    let bytes = t.finish();
    let root = tmp.join("layer");
    fs::create_dir(&root).unwrap();
    let err = apply_layer(&bytes[..1024], &root, ApplyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Tar { .. }), "{err:?}");
    let err =
        apply_layer(&b"this is not a tar archive at all, just text padding it out"[..], &root, ApplyOptions::default());
    assert!(matches!(err, Err(Error::Tar { .. })), "{err:?}");
}
