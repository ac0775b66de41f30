//! Security review: attacks on apply, the store and diff that were not refused before (each
//! test failed before its fix), run as root, everything inside TempDirs.

use crate::tweak;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::tarutil::{Arena, Tar, xattr};
use nook_testutil::{TempDir, require_root};
use nook_unionfs::{
    ApplyOptions, Digest, Error, LayerStore, Limit, UnsafeEntry, ValidationError, WhiteoutFormat, apply_layer,
    write_diff,
};
use tar::{EntryType, Header};

/// A tar stream that is a header claiming `size` bytes of data, then that many bytes
/// (generated, never held in memory), then a small regular file and the end blocks; counts
/// how much of it was read.
struct Claimed {
    head: Vec<u8>,
    claimed: u64,
    tail: Vec<u8>,
    pos: u64,
}

impl Claimed {
    fn new(kind: EntryType, size: u64) -> Claimed {
        let mut h = if kind == EntryType::XHeader { Header::new_ustar() } else { Header::new_gnu() };
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        let name = if kind == EntryType::XHeader { &b"PaxHeaders/x"[..] } else { &b"././@LongLink"[..] };
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut t = Tar::new();
        t.file("after", b"x");
        let padded = size.div_ceil(512) * 512;
        Claimed { head: h.as_bytes().to_vec(), claimed: padded, tail: t.finish(), pos: 0 }
    }

    fn len(&self) -> u64 {
        self.head.len() as u64 + self.claimed + self.tail.len() as u64
    }
}

impl Read for Claimed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let h = self.head.len() as u64;
        let n = if self.pos < h {
            let n = buf.len().min((h - self.pos) as usize);
            buf[..n].copy_from_slice(&self.head[self.pos as usize..self.pos as usize + n]);
            n
        } else if self.pos < h + self.claimed {
            // PAX-looking filler ("a" everywhere: never a valid record).
            let n = (buf.len() as u64).min(h + self.claimed - self.pos) as usize;
            buf[..n].fill(b'a');
            n
        } else {
            let off = (self.pos - h - self.claimed) as usize;
            let n = buf.len().min(self.tail.len() - off);
            buf[..n].copy_from_slice(&self.tail[off..off + n]);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// A GNU long name / long link or a PAX header claiming 256 MiB is refused at its header: the
/// tar crate would read it all into memory (a few KiB of zstd can claim many GiB, and the
/// whole multithreaded program dies of OOM). Docker (Go's archive/tar) caps them at 1 MiB.
#[test]
fn huge_extension_headers_are_refused_before_being_buffered() {
    let a = Arena::new("nkrvext");
    for kind in [EntryType::GNULongName, EntryType::GNULongLink, EntryType::XHeader] {
        let mut input = Claimed::new(kind, 256 << 20);
        let total = input.len();
        let r = apply_layer(&mut input, &a.layer(), ApplyOptions::default());
        let short = format!("{r:?}").chars().take(300).collect::<String>();
        assert!(matches!(r, Err(Error::Tar { .. })), "{kind:?}: {short}");
        assert!(input.pos < 4 << 20, "{kind:?}: read {} of {} bytes before refusing", input.pos, total);
    }
    // Up to 1 MiB is fine (a long xattr, a long name).
    let mut t = Tar::new();
    let big = vec![b'v'; 2000];
    let comment = vec![b'c'; 900 * 1024];
    t.pax(&[("comment", &comment[..]), ("SCHILY.xattr.user.big", &big[..])]).file("f", b"data");
    t.raw(EntryType::Regular, "n/".repeat(1000).as_bytes(), None, b"deep but fine");
    apply_layer(&t.finish()[..], &a.layer(), ApplyOptions::default()).unwrap();
    assert_eq!(xattr(&a.layer().join("f"), "user.big").map(|v| v.len()), Some(big.len()));
    assert_eq!(fs::read(a.layer().join("n/".repeat(999)).join("n")).unwrap(), b"deep but fine");
}

/// A hardlink to a symlink makes a second symlink with the same target at another depth:
/// `a/b/l -> ../../x` stays inside, but a link `h` to it at the top climbs out of the root.
#[test]
fn hardlink_to_a_symlink_cannot_move_it_out_of_the_root() {
    require_root!();
    let a = Arena::new("nkrvhlsym");
    let before = a.outside();
    let mut t = Tar::new();
    t.dir("a", 0o755).dir("a/b", 0o755).symlink("a/b/l", "../../canary/secret").hardlink("h", "a/b/l");
    match apply_layer(&t.finish()[..], &a.layer(), ApplyOptions::default()) {
        Err(Error::Unsafe { entry, reason: UnsafeEntry::SymlinkEscape }) => assert_eq!(entry, Path::new("h")),
        other => panic!("expected SymlinkEscape for h, got {other:?}"),
    }
    assert!(fs::symlink_metadata(a.layer().join("h")).is_err(), "no escaping symlink at the top");
    crate::tarutil::assert_same_tree(&before, &a.outside(), "outside the layer dir");
    // A hardlink to a symlink that stays inside from its new place is fine (GNU tar makes them).
    let mut t = Tar::new();
    t.dir("c", 0o755).symlink("c/l", "../a").hardlink("c/h", "c/l").symlink("abs", "/x").hardlink("h2", "abs");
    apply_layer(&t.finish()[..], &a.layer(), ApplyOptions::default()).unwrap();
    assert_eq!(fs::read_link(a.layer().join("c/h")).unwrap(), Path::new("../a"));
    assert_eq!(fs::read_link(a.layer().join("h2")).unwrap(), Path::new("/x"));
}

fn cvt(r: libc::c_int) -> RawFd {
    assert!(r >= 0, "{}", io::Error::last_os_error());
    r
}

/// A thread that has its own fd table (`unshare(CLONE_FILES)`, as some runtimes do before
/// `setns`) must not have xattrs meant for a node in the layer land on whatever the
/// thread-group leader's fd of the same number is: `/proc/self/fd/N` is the leader's table,
/// `/proc/thread-self/fd/N` the caller's.
#[test]
fn xattrs_on_nodes_use_the_calling_threads_fds() {
    require_root!();
    let a = Arena::new("nkrvfdtab");
    let canary = a.canary();
    let layer = a.layer();
    let mut t = Tar::new();
    t.pax(&[("SCHILY.xattr.trusted.nkpwn", &b"1"[..])]).fifo("secret");
    let tar = t.finish();
    // The shared table gets fd X (>= 200) = the canary dir; the thread then unshares, closes
    // its copy of X and fills every lower free slot, so the apply's root fd is X there.
    let x = std::thread::scope(|s| {
        s.spawn(|| {
            let c = std::ffi::CString::new(canary.to_str().unwrap()).unwrap();
            // SAFETY: plain syscalls on a NUL-terminated path and on fds this test owns.
            unsafe {
                let dir = cvt(libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC));
                let x = cvt(libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 200));
                libc::close(dir);
                cvt(libc::unshare(libc::CLONE_FILES));
                libc::close(x);
                let mut fill = Vec::new();
                loop {
                    let fd = cvt(libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC));
                    if fd == x {
                        libc::close(fd);
                        break;
                    }
                    fill.push(OwnedFd::from_raw_fd(fd));
                }
                let r = apply_layer(&tar[..], &layer, ApplyOptions::default());
                drop(fill);
                r.unwrap();
                x
            }
        })
        .join()
        .unwrap()
    });
    // SAFETY: x is the fd this test dup'ed into the shared table above.
    drop(unsafe { OwnedFd::from_raw_fd(x) });
    assert_eq!(xattr(&canary.join("secret"), "trusted.nkpwn"), None, "xattr set outside the layer");
    assert_eq!(xattr(&layer.join("secret"), "trusted.nkpwn").as_deref(), Some(&b"1"[..]));
}

/// The store's dirs are private: layers hold setuid-root files and device nodes from
/// untrusted images, which host users must not reach (Docker: 0710/0700).
#[test]
fn store_dirs_are_private() {
    let tmp = TempDir::new("nkrvperm").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    for sub in ["layers", "tmp", "containers"] {
        let mode = fs::metadata(store.root().join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{sub} is {mode:o}: others must not get in");
    }
}

/// A Digest from serde is validated like `Digest::parse` (it names store paths).
#[test]
fn digest_deserialize_validates() {
    let ok = Digest::sha256(b"x");
    let json = serde_json::to_string(&ok).unwrap();
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), ok);
    for bad in [
        "\"sha256:../../../../../etc\"",
        "\"x\"",
        "\"/etc/passwd/../../../../../../../../../../../../../../../../../../../../../../../..\"",
    ] {
        assert!(serde_json::from_str::<Digest>(bad).is_err(), "{bad} accepted");
    }
}

/// Deep upper trees are refused by diff (the tar could not be applied anyway) instead of
/// recursing without bound.
#[test]
fn diff_refuses_an_upper_deeper_than_apply_accepts() {
    let tmp = TempDir::new("nkrvdeep").unwrap();
    let upper = tmp.join("upper");
    let mut p = upper.clone();
    fs::create_dir(&p).unwrap();
    // 1100 levels, built relative to an fd (the absolute path would pass PATH_MAX).
    let mut fd: OwnedFd = rustix::fs::open(&p, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    for _ in 0..1100 {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    }
    p.push("d");
    let r = write_diff(&upper, WhiteoutFormat::Overlay, io::sink());
    assert!(
        matches!(
            r,
            Err(Error::Invalid(ValidationError::Undiffable { reason: "deeper or longer than a layer may be", .. }))
        ),
        "{r:?}"
    );
}

/// A container's upper can be made arbitrarily deep by the container; removing the container
/// must not recurse without bound (a stack overflow aborts the whole program).
#[test]
fn removing_a_container_with_a_very_deep_upper() {
    let tmp = TempDir::new("nkrvrmdeep").unwrap();
    let store = LayerStore::open(tmp.join("store")).unwrap();
    let c = store.create_container("nkdeep", None).unwrap();
    let mut fd: OwnedFd = rustix::fs::open(&c.upper, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    for _ in 0..3000 {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    }
    drop(fd);
    store.remove_container("nkdeep").unwrap();
    assert!(!c.dir.exists());
}

/// The vfs driver's copy is the container's writable root: whatever depth the container
/// gives it, removing the copy must work (and not overflow the stack).
#[test]
fn removing_a_vfs_copy_with_a_very_deep_tree() {
    use nook_unionfs::{LayerStack, StorageDriver, Vfs};
    let tmp = TempDir::new("nkrvvfsdeep").unwrap();
    fs::create_dir(tmp.join("lower")).unwrap();
    fs::write(tmp.join("lower/f"), b"x").unwrap();
    fs::create_dir(tmp.join("target")).unwrap();
    let mut stack = LayerStack::new();
    stack.lower(tmp.join("lower"));
    let m = Vfs.mount(&stack, &tmp.join("target")).unwrap();
    let mut fd: OwnedFd =
        rustix::fs::open(tmp.join("target"), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    for _ in 0..3000 {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
    }
    drop(fd);
    m.remove().unwrap();
    assert_eq!(fs::read_dir(tmp.join("target")).unwrap().count(), 0);
}

/// A running container can swap a file in its upper for a device node between diff's `stat`
/// and `open`: the host must not open the device and copy it into the layer (here /dev/zero's
/// 1:5, so a hit shows as a regular file of zeros; a disk would leak, a FIFO would hang).
#[test]
fn diff_never_reads_a_device_swapped_in_for_a_file() {
    require_root!();
    let tmp = TempDir::new("nkrvswap").unwrap();
    let (upper, alts) = (tmp.join("upper"), tmp.join("alts"));
    fs::create_dir(&upper).unwrap();
    fs::create_dir(&alts).unwrap();
    const N: usize = 64;
    for i in 0..N {
        fs::write(upper.join(format!("f{i}")), vec![b'A'; 4096]).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            alts.join(format!("a{i}")),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut hits, mut runs) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for i in 0..N {
                    let _ = rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        upper.join(format!("f{i}")),
                        rustix::fs::CWD,
                        alts.join(format!("a{i}")),
                        rustix::fs::RenameFlags::EXCHANGE,
                    );
                }
            }
        });
        for _ in 0..400 {
            let mut out = Vec::new();
            if write_diff(&upper, WhiteoutFormat::Overlay, &mut out).is_err() {
                continue; // changed while read: refused, fine
            }
            runs += 1;
            let mut ar = tar::Archive::new(&out[..]);
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                if e.header().entry_type() == EntryType::Regular {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    if data.contains(&0) {
                        hits += 1;
                    }
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(hits, 0, "device data read as file content ({hits} times in {runs} diffs)");
}

// ---- Issue 11 item 4: applying a layer is bounded ----

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn counted<R: Read>(inner: R) -> Counted<R> {
    Counted { inner, read: 0 }
}

#[track_caller]
fn expect_limit<T: std::fmt::Debug>(r: nook_unionfs::Result<T>, want: Limit) -> (u64, u64, Option<std::path::PathBuf>) {
    match r {
        Err(Error::LimitExceeded { limit, value, max, entry }) if limit == want => {
            assert!(value > max, "{limit}: value {value} not over max {max}");
            (value, max, entry)
        }
        other => {
            let s = format!("{other:?}").chars().take(400).collect::<String>();
            panic!("expected LimitExceeded({want}), got {s}")
        }
    }
}

/// Compression of the bombs: gzip or zstd members/frames concatenated (both formats decode
/// a concatenation as one stream), so a huge stream is built from one small piece.
#[derive(Clone, Copy, Debug)]
enum Comp {
    Gzip,
    Zstd,
}

impl Comp {
    fn one(self, data: &[u8]) -> Vec<u8> {
        match self {
            Comp::Gzip => {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Comp::Zstd => zstd::encode_all(data, 19).unwrap(),
        }
    }

    /// `head`, then `zeros` zero bytes (in 1 MiB pieces), then `tail`, compressed.
    fn stream(self, head: &[u8], zeros: u64, tail: &[u8]) -> Vec<u8> {
        let mut out = self.one(head);
        let piece = self.one(&vec![0u8; 1 << 20]);
        assert_eq!(zeros % (1 << 20), 0);
        for _ in 0..zeros >> 20 {
            out.extend_from_slice(&piece);
        }
        out.extend_from_slice(&self.one(tail));
        out
    }
}

/// A tar header for a regular file of `size` bytes (its data to follow).
fn file_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A layer whose files add up to more than `max_bytes` stops at the file that goes over,
/// before creating it; through the store, nothing is left in `tmp/`.
#[test]
fn total_bytes_are_bounded() {
    let a = Arena::new("nkrvbytes");
    let mb = vec![7u8; 1 << 20];
    let mut t = Tar::new();
    t.file("f0", &mb).file("f1", &mb).file("f2", &mb).file("f3", &mb);
    let tar = crate::tarutil::gzip(&t.finish());
    let mut o = ApplyOptions::default();
    o.limits.max_bytes = (5 << 20) / 2;
    let (value, max, entry) = expect_limit(apply_layer(&tar[..], &a.layer(), o), Limit::Bytes);
    assert_eq!((value, max), (3 << 20, (5 << 20) / 2));
    assert_eq!(entry.as_deref(), Some(Path::new("f2")));
    assert!(a.layer().join("f1").exists());
    assert!(!a.layer().join("f2").exists(), "the file over the limit is not created");

    let store = LayerStore::open(a.canary().join("store")).unwrap();
    let mut o = ApplyOptions::default();
    o.limits.max_bytes = 1 << 20;
    expect_limit(store.apply(&tar[..], None, o), Limit::Bytes);
    assert!(store.layers().unwrap().is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0, "partial layer removed");
    // The same layer under the default limits is fine.
    store.apply(&tar[..], None, ApplyOptions::default()).unwrap();
}

/// A tar of many empty entries stops at `max_entries`.
#[test]
fn entries_are_bounded() {
    let a = Arena::new("nkrventries");
    let mut t = Tar::new();
    for i in 0..1000 {
        t.file(&format!("e{i}"), b"");
    }
    let tar = crate::tarutil::zstd(&t.finish());
    let mut o = ApplyOptions::default();
    o.limits.max_entries = 100;
    let (value, max, entry) = expect_limit(apply_layer(&tar[..], &a.layer(), o), Limit::Entries);
    assert_eq!((value, max), (101, 100));
    assert_eq!(entry.as_deref(), Some(Path::new("e100")));
    assert_eq!(fs::read_dir(a.layer()).unwrap().count(), 100);
}

/// A gzip or zstd bomb (160 MiB of zeros in a file, from ~160 KiB of gzip or a few KiB of
/// zstd) stops at the default expansion ratio: the file on disk stays far below its size.
/// Below the ratio's grace such a file is fine; without the grace it is not.
#[test]
fn decompression_bombs_stop_at_the_ratio() {
    for comp in [Comp::Gzip, Comp::Zstd] {
        let a = Arena::new("nkrvratio");
        let size = 160u64 << 20;
        let bomb = comp.stream(&file_header("bomb", size), size, &[0u8; 1024]);
        let mut input = counted(&bomb[..]);
        let r = apply_layer(&mut input, &a.layer(), ApplyOptions::default());
        let (ratio, max, entry) = expect_limit(r, Limit::Ratio);
        assert_eq!(max, 100, "{comp:?}");
        assert!(ratio > 100, "{comp:?}: {ratio}");
        assert_eq!(entry.as_deref(), Some(Path::new("bomb")), "{comp:?}");
        let written = fs::metadata(a.layer().join("bomb")).map(|m| m.len()).unwrap_or(0);
        assert!(written < 100 << 20, "{comp:?}: {written} bytes written before stopping");

        let small = 8u64 << 20;
        let layer = comp.stream(&file_header("zeros", small), small, &[0u8; 1024]);
        apply_layer(&layer[..], &a.layer(), ApplyOptions::default()).unwrap();
        assert_eq!(fs::metadata(a.layer().join("zeros")).unwrap().len(), small);
        let mut o = ApplyOptions::default();
        o.limits.ratio_grace = 0;
        expect_limit(apply_layer(&layer[..], &a.layer(), o), Limit::Ratio);
    }
}

/// Zeros after the end of the archive are read only up to `max_trailing`: not 1 GiB of them
/// (plain, counted at the reader), not 256 MiB from a small zstd stream. GNU tar's padding to
/// a 10 KiB record is fine and hashed into the DiffID.
#[test]
fn trailing_data_after_the_end_is_bounded() {
    let a = Arena::new("nkrvtrail");
    let mut t = Tar::new();
    t.file("f", b"data");
    let tar = t.finish();
    let endless = 1u64 << 30;
    let mut input = counted(tar.as_slice().chain(io::repeat(0).take(endless)));
    expect_limit(apply_layer(&mut input, &a.layer(), ApplyOptions::default()), Limit::TrailingData);
    assert!(input.read < 8 << 20, "read {} bytes of a {} byte stream", input.read, tar.len() as u64 + endless);

    let bomb = Comp::Zstd.stream(&tar, 256 << 20, b"");
    let mut input = counted(&bomb[..]);
    expect_limit(apply_layer(&mut input, &a.layer(), ApplyOptions::default()), Limit::TrailingData);

    // GNU tar pads to 20 blocks: accepted, and the DiffID is that of the whole stream.
    let mut padded = tar.clone();
    padded.resize(padded.len().div_ceil(10240) * 10240 + 10240, 0);
    let applied = apply_layer(&padded[..], &a.layer(), ApplyOptions::default()).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256(&padded));
    assert_eq!(applied.size, padded.len() as u64);
}

/// A GNU sparse entry is written sparse: holes are not written as zeros (a 2 KiB entry once
/// allocated 1 GiB on disk), the content reads back right, the size is the real size.
#[test]
fn sparse_entries_are_written_sparse() {
    use std::os::unix::fs::MetadataExt;
    let a = Arena::new("nkrvsparse");
    let head = vec![b'h'; 1024];
    let mid = vec![b'm'; 4096];
    let chunks: Vec<(u64, Vec<u8>)> =
        (0..7u64).map(|i| (i * (8 << 20), if i == 0 { head.clone() } else { mid.clone() })).collect();
    let refs: Vec<(u64, &[u8])> = chunks.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    let real = 60u64 << 20;
    let mut t = Tar::new();
    t.sparse("sp", real, &refs).file("after", b"next entry fine");
    let tar = t.finish();
    assert!(tar.len() < 64 << 10);
    apply_layer(&tar[..], &a.layer(), ApplyOptions::default()).unwrap();
    let p = a.layer().join("sp");
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.len(), real);
    assert!(md.blocks() * 512 < 1 << 20, "{} bytes allocated for {} of data", md.blocks() * 512, 1024 + 6 * 4096);
    let data = fs::read(&p).unwrap();
    for (off, d) in &chunks {
        assert_eq!(&data[*off as usize..*off as usize + d.len()], d.as_slice());
    }
    let nonzero: usize = data.iter().filter(|&&b| b != 0).count();
    assert_eq!(nonzero, 1024 + 6 * 4096, "holes read back as zeros");
    assert_eq!(fs::read(a.layer().join("after")).unwrap(), b"next entry fine");

    // The case: a 1 GiB file from a 2 KiB entry. It goes over the default ratio
    // (holes count as expansion); allowed, it is written sparse.
    let mut t = Tar::new();
    t.sparse("big", 1 << 30, &[(0, &[b'x'; 512]), (1 << 29, b"y")]);
    let tar = t.finish();
    expect_limit(apply_layer(&tar[..], &a.layer(), ApplyOptions::default()), Limit::Ratio);
    let mut o = ApplyOptions::default();
    o.limits.max_ratio = u64::MAX;
    apply_layer(&tar[..], &a.layer(), o).unwrap();
    let md = fs::metadata(a.layer().join("big")).unwrap();
    assert_eq!(md.len(), 1 << 30);
    assert!(md.blocks() * 512 < 1 << 20, "{} bytes allocated", md.blocks() * 512);
}

/// Device nodes are refused by default, as root too (a layer made a block device for the
/// host's root disk, 254:0); `allow_devices` creates them.
#[test]
fn device_nodes_are_refused_by_default() {
    require_root!();
    let a = Arena::new("nkrvdev");
    let mut t = Tar::new();
    t.device("disk", EntryType::Block, 254, 0);
    let tar = t.finish();
    a.refuses(&tar, ApplyOptions::default(), UnsafeEntry::DeviceNode, "disk");
    assert!(fs::symlink_metadata(a.layer().join("disk")).is_err());
    apply_layer(&tar[..], &a.layer(), tweak(ApplyOptions::default(), |o| o.allow_devices = true)).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::symlink_metadata(a.layer().join("disk")).unwrap();
    assert!(md.file_type().is_block_device());
    assert_eq!((rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())), (254, 0));
}

/// An opaque marker (or any entry) below a regular file is a typed refusal, not a raw
/// `ENOTDIR`, in every whiteout format.
#[test]
fn entries_below_a_file_are_typed_refusals() {
    let a = Arena::new("nkrvnotdir");
    for w in [None, Some(WhiteoutFormat::Overlay), Some(WhiteoutFormat::OverlayUserXattr)] {
        for name in ["f/.wh..wh..opq", "f/.wh.x", "f/x", "f/d/x"] {
            let _ = fs::remove_file(a.layer().join("f"));
            let mut t = Tar::new();
            t.file("f", b"a file").raw(EntryType::Regular, name.as_bytes(), None, b"");
            a.refuses(
                &t.finish(),
                tweak(ApplyOptions::default(), |o| o.whiteouts = w),
                UnsafeEntry::NotADirectory,
                name,
            );
        }
    }
}
