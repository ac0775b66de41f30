//! Security review: attacks on apply, the store and diff that were not refused before (each
//! test failed before its fix), run as root, everything inside TempDirs.

mod tarutil;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nook_testutil::{TempDir, require_root};
use nook_unionfs::{ApplyOptions, Digest, Error, LayerStore, UnsafeEntry, WhiteoutFormat, apply_layer, write_diff};
use tar::{EntryType, Header};
use tarutil::{Arena, Tar, xattr};

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
    tarutil::assert_same_tree(&before, &a.outside(), "outside the layer dir");
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
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
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
