//! The reset of a warm sandbox between two runs, and the proof that it is complete.
//!
//! [`Baseline::capture`] records, right after the sandbox was made, what every check below
//! compares with; [`reset`] runs after each payload ended and either returns the sandbox
//! to the pool ([`Verdict::Clean`]) or says why it must be discarded ([`Verdict::Discard`]).
//! It cleans what can be cleaned from outside and verifies the rest; a check that fails
//! or cannot be made discards the sandbox (the pool then builds a new one), so a reused
//! sandbox is always one in which every check below held:
//!
//! - **processes**: every process of its cgroup but its init is SIGKILLed (frozen first,
//!   so none can fork meanwhile; [`nook_cgroup::Cgroup::kill_all_but`]) until the cgroup
//!   holds the init alone; then the init must have the children it had when made (none:
//!   `/proc/<init>/task/<init>/children`; what a payload leaves in the pid namespace is
//!   reparented to the init, so this also finds a process that left the cgroup); an init
//!   that died discards it.
//!   The next payload's start relies on it: it shares the pool's memory until exec
//!   ([`nook_ns::Command::join_unobserved`]), safe only while nothing in the sandbox can
//!   look at it;
//! - **files**: the scratch tmpfs mounts (`/tmp`, `/dev/shm`, the spec's tmpfs mounts) are
//!   emptied through `/proc/<init>/root` (never following a symlink, never crossing into
//!   another mount) and must then use as many inodes and blocks as when the sandbox was
//!   made; `/dev` must list the same entries (name, inode) and use as many inodes; a
//!   writable overlay root must use as many inodes and blocks in its upper layer (`statfs`
//!   of an overlay reports its upper file system: any file created, copied up or whited
//!   out there takes an inode; the upper's only earlier inodes are mount points, which
//!   cannot be removed) and its `/etc/hostname` and `/etc/hosts` must be unmodified;
//!   POSIX message queues (files of its `/dev/mqueue`) are unlinked;
//! - **mounts**: `/proc/<init>/mountinfo` must be what it was (this also catches a
//!   remount, e.g. of a read-only root);
//! - **IPC**: its IPC namespace must hold no SysV segment, semaphore set or message queue
//!   (`/proc/sysvipc/*` as opened by a thread that joined that namespace: the files list the
//!   opener's namespace);
//! - **host name**: the UTS namespace's host and domain names are set back to the spec's
//!   (from the same thread, which joined it) and read back;
//! - **network**: the namespace's socket counters (`/proc/<init>/net/sockstat{,6}`: TCP,
//!   UDP, UDP-Lite, raw sockets and fragments in use, TCP `TIME_WAIT`s) and its Unix and
//!   packet sockets (`/proc/<init>/net/{unix,packet}`) must be what they were: no listening
//!   socket, no connection (a `TIME_WAIT` left by the payload discards the sandbox too);
//! - **cgroup limits**: every limit file must read as it did
//!   ([`nook_cgroup::Cgroup::limit_files`]).
//!
//! The files read on every reset (`/proc/<init>/{root,mountinfo,net/*}`, the IPC lists, the
//! limit files) are opened once with the sandbox and read again from offset 0: a path
//! lookup per file and reset cost more than the reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::run::{Sandbox, wait_readable};

/// The `/proc/<init>/net` files that show its sockets (see [`net_state`]).
const NET_FILES: &[&str] = &["sockstat", "sockstat6", "unix", "packet"];

/// How long the leftover processes of a run get to die before the sandbox is discarded.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// Inodes and blocks in use on a file system.
type FsUse = (u64, u64);

/// What a freshly made warm sandbox looks like (see the module docs).
#[derive(Debug)]
pub(crate) struct Baseline {
    scratch: Vec<(PathBuf, FsUse)>,
    dev: (FsUse, BTreeMap<Vec<u8>, u64>),
    root: Option<FsUse>,
    etc: Vec<(PathBuf, [i64; 5])>,
    mountinfo: String,
    /// The init's children when made (none for a pool's init).
    children: String,
    net: Vec<String>,
    limits: Vec<(PathBuf, String)>,
    /// Descriptors the checks read again on every reset (a path lookup per file and run
    /// would cost more than the reads).
    kept: Kept,
    hostname: Vec<u8>,
    domainname: Vec<u8>,
    /// A thread in its IPC and UTS namespaces.
    ns: NsThread,
    /// `/proc/sysvipc/{shm,sem,msg}`, opened by that thread: they list the objects of the
    /// IPC namespace of whoever opened them.
    ipc: Vec<(&'static str, File)>,
}

/// The files a reset reads, opened once with the sandbox (read again from offset 0: the
/// kernel renders them anew on each read from the start).
#[derive(Debug)]
struct Kept {
    /// `/proc/<init>/root` (`O_PATH`).
    root: OwnedFd,
    /// `/proc/<init>/mountinfo`.
    mountinfo: File,
    /// `/proc/<init>/task/<init>/children` (`None` where the kernel lacks the file).
    children: Option<File>,
    /// [`NET_FILES`] of `/proc/<init>/net`; `None` for a family the kernel lacks.
    net: Vec<(&'static str, Option<File>)>,
    /// The cgroup's limit files.
    limits: Option<nook_cgroup::LimitFiles>,
}

impl Kept {
    fn open(sb: &Sandbox) -> Result<Kept> {
        let pid = sb.id();
        let mut net = Vec::new();
        for f in NET_FILES {
            let path = format!("/proc/{pid}/net/{f}");
            match File::open(&path) {
                Ok(file) => net.push((*f, Some(file))),
                // A family the kernel lacks (no IPv6, no packet sockets).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => net.push((*f, None)),
                Err(e) => return Err(e).sys_at("open", path),
            }
        }
        let mountinfo = format!("/proc/{pid}/mountinfo");
        let children = format!("/proc/{pid}/task/{pid}/children");
        let children = match File::open(&children) {
            Ok(f) => Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e).sys_at("open", children),
        };
        Ok(Kept {
            root: root_of(sb)?,
            mountinfo: File::open(&mountinfo).sys_at("open", mountinfo)?,
            children,
            net,
            limits: sb.cgroup().map(|c| c.limit_files()).transpose()?,
        })
    }

    /// The init's children (empty where the kernel lacks the file).
    fn children(&self) -> Result<String> {
        match &self.children {
            Some(f) => read_from_start(f).sys_at("read", "/proc/<init>/task/<init>/children"),
            None => Ok(String::new()),
        }
    }

    fn mountinfo(&self) -> Result<String> {
        read_from_start(&self.mountinfo).sys_at("read", "mountinfo")
    }

    fn limits(&self) -> Result<Vec<(PathBuf, String)>> {
        Ok(match &self.limits {
            Some(l) => l.values()?,
            None => Vec::new(),
        })
    }
}

/// Reads an open `/proc` (seq) file whole from offset 0 with `pread`.
fn read_from_start(file: &File) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 16 << 10];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The result of [`reset`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing of the last run is left: the sandbox can be reused.
    Clean,
    /// Something is left, or could not be checked: remove the sandbox.
    Discard(String),
}

trait Ctx<T> {
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, Errno> {
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::Sys { call, path: Some(path.into()), source: e.into() })
    }
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn sys_at(self, call: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Sys { call, path: Some(path.into()), source })
    }
}

/// The sandbox's root, as its init sees it (`/proc/<init>/root`).
fn root_of(sb: &Sandbox) -> Result<OwnedFd> {
    let path = format!("/proc/{}/root", sb.id());
    rustix::fs::open(&path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).sys_at("open", path)
}

/// Opens `path` (absolute, as the sandbox sees it) in the sandbox's root without following
/// any symlink.
fn open_in(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

fn fs_use(fd: BorrowedFd<'_>) -> std::result::Result<FsUse, Errno> {
    let s = rustix::fs::fstatfs(fd)?;
    Ok(((s.f_files as u64).saturating_sub(s.f_ffree as u64), (s.f_blocks as u64).saturating_sub(s.f_bfree as u64)))
}

/// `(inode, size, mtime, mtime ns, ctime)` of a file.
fn meta(fd: BorrowedFd<'_>) -> std::result::Result<[i64; 5], Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok([st.st_ino as i64, st.st_size, st.st_mtime, st.st_mtime_nsec as i64, st.st_ctime])
}

/// The entries of a directory: name → inode.
fn listing(dir: BorrowedFd<'_>) -> std::result::Result<BTreeMap<Vec<u8>, u64>, Errno> {
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    let mut out = BTreeMap::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.insert(name.to_vec(), e.ino());
        }
    }
    Ok(out)
}

/// Removes everything in `dir`, on its own file system only (a mount below makes the
/// `rmdir` of its mount point fail: then the sandbox is discarded anyway).
fn wipe(dir: BorrowedFd<'_>) -> std::result::Result<(), Errno> {
    let dev = rustix::fs::fstat(dir)?.st_dev;
    for (name, _) in listing(dir)? {
        let name = std::ffi::OsStr::from_bytes(&name);
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::ISDIR | Errno::PERM) => {
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if rustix::fs::fstat(&sub)?.st_dev != dev {
                    return Err(Errno::BUSY);
                }
                wipe(sub.as_fd())?;
                rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The sockets of the sandbox's network namespace: the per-namespace counters of
/// `sockstat` and `sockstat6` (`inuse` per protocol — listening, connected and orphaned
/// sockets — TCP's `tw`, and `sockets: used`; the other fields are global), and the lists of
/// its Unix and packet sockets. (`/proc/net/tcp` would list them too, but it walks the whole
/// host's connection hash table: milliseconds.)
fn net_state(files: &[(&'static str, Option<File>)]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (f, file) in files {
        let text = match file {
            Some(file) => read_from_start(file).sys_at("read", format!("net/{f}"))?,
            None => String::new(),
        };
        if f.starts_with("sockstat") {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let Some(proto) = words.next() else { continue };
                let words: Vec<&str> = words.collect();
                for pair in words.chunks(2) {
                    if let [k @ ("inuse" | "tw" | "used"), v] = pair {
                        out.push(format!("{proto} {k} {v}"));
                    }
                }
            }
        } else {
            out.push(text);
        }
    }
    Ok(out)
}

/// What the pool cleans and checks in one sandbox: its scratch mounts.
pub(crate) fn scratch_mounts(spec: &crate::SandboxSpec) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/dev/shm")];
    out.extend(spec.mounts.iter().filter(|m| matches!(m, crate::Mount::Tmpfs { .. })).map(|m| m.target().to_owned()));
    out
}

/// Whether the root is an overlay with a tmpfs upper the payload can write (its `statfs`
/// then counts the upper's inodes).
fn root_is_overlay_upper(spec: &crate::SandboxSpec) -> bool {
    use nook_unionfs::Upper;
    let writable = !spec.security.read_only_rootfs;
    writable
        && match &spec.rootfs {
            // Rootless, the host root is a read-only bind (no upper).
            crate::Rootfs::HostReadOnly => !spec.effective_namespaces().has(nook_ns::Namespace::User),
            crate::Rootfs::Stack(s) => matches!(s.upper_layer(), Upper::Tmpfs { .. }),
            _ => false,
        }
}

impl Baseline {
    /// Records the state of a freshly made sandbox.
    pub(crate) fn capture(sb: &Sandbox) -> Result<Baseline> {
        let spec = sb.spec();
        let kept = Kept::open(sb)?;
        let root = &kept.root;
        let mut scratch = Vec::new();
        for p in scratch_mounts(spec) {
            let fd = open_in(root.as_fd(), &p, OFlags::RDONLY | OFlags::DIRECTORY).sys_at("openat2", &p)?;
            scratch.push((p.clone(), fs_use(fd.as_fd()).sys_at("fstatfs", &p)?));
        }
        let dev_fd =
            open_in(root.as_fd(), Path::new("/dev"), OFlags::RDONLY | OFlags::DIRECTORY).sys_at("openat2", "/dev")?;
        let dev =
            (fs_use(dev_fd.as_fd()).sys_at("fstatfs", "/dev")?, listing(dev_fd.as_fd()).sys_at("getdents", "/dev")?);
        let root_use =
            if root_is_overlay_upper(spec) { Some(fs_use(root.as_fd()).sys_at("fstatfs", "/")?) } else { None };
        let mut etc = Vec::new();
        for p in ["/etc/hostname", "/etc/hosts"] {
            if let Ok(fd) = open_in(root.as_fd(), Path::new(p), OFlags::PATH) {
                etc.push((PathBuf::from(p), meta(fd.as_fd()).sys_at("fstat", p)?));
            }
        }
        let pid = sb.id();
        // The names its UTS namespace has now (the spec's, or the caller's when it was made).
        let (ns, ipc) = NsThread::start(pid)?;
        let (hostname, domainname) = ns.run(|| {
            let u = rustix::system::uname();
            Ok((u.nodename().to_bytes().to_vec(), u.domainname().to_bytes().to_vec()))
        })?;
        Ok(Baseline {
            scratch,
            dev,
            root: root_use,
            etc,
            mountinfo: kept.mountinfo()?,
            children: kept.children()?,
            net: net_state(&kept.net)?,
            limits: kept.limits()?,
            kept,
            hostname,
            domainname,
            ns,
            ipc,
        })
    }
}

/// Cleans the sandbox after a run and checks that nothing of it is left (see the module
/// docs). An `Err` is a failure of the pool's own calls; either way the caller discards the
/// sandbox unless the verdict is [`Verdict::Clean`].
pub(crate) fn reset(sb: &Sandbox, base: &Baseline) -> Result<Verdict> {
    macro_rules! discard {
        ($($t:tt)*) => { return Ok(Verdict::Discard(format!($($t)*))) };
    }
    if wait_readable(sb.pidfd(), Instant::now())? {
        discard!("its init exited");
    }
    let pid = sb.id();
    // Processes.
    let Some(cg) = sb.cgroup() else { discard!("no cgroup") };
    if let Err(e) = cg.kill_all_but(&[pid], KILL_TIMEOUT) {
        discard!("processes of the last run are still there: {e}");
    }
    // Its pid namespace holds what it held when made: every process left there is the
    // init's descendant (the payload, our child, was reaped; what it left was reparented
    // to the init), so the init has the children it had — also counting any that left the
    // cgroup. The next run's start relies on it (`Exec::unobserved`).
    if base.kept.children()? != base.children {
        discard!("processes of the last run are still in its pid namespace");
    }
    let root = &base.kept.root;
    // Files: the scratch mounts emptied, then counted.
    for (p, used) in &base.scratch {
        let fd = open_in(root.as_fd(), p, OFlags::RDONLY | OFlags::DIRECTORY).sys_at("openat2", p)?;
        if let Err(e) = wipe(fd.as_fd()) {
            discard!("cannot empty {}: {e}", p.display());
        }
        let now = fs_use(fd.as_fd()).sys_at("fstatfs", p)?;
        if now != *used {
            discard!("{} uses {now:?} (inodes, blocks) after emptying, {used:?} when made", p.display());
        }
    }
    // POSIX message queues: files of the mqueue file system mounted for its namespace.
    if let Ok(fd) = open_in(root.as_fd(), Path::new("/dev/mqueue"), OFlags::RDONLY | OFlags::DIRECTORY) {
        if let Err(e) = wipe(fd.as_fd()) {
            discard!("cannot remove its POSIX message queues: {e}");
        }
        if !listing(fd.as_fd()).sys_at("getdents", "/dev/mqueue")?.is_empty() {
            discard!("POSIX message queues are left");
        }
    }
    let dev_fd =
        open_in(root.as_fd(), Path::new("/dev"), OFlags::RDONLY | OFlags::DIRECTORY).sys_at("openat2", "/dev")?;
    let dev = (fs_use(dev_fd.as_fd()).sys_at("fstatfs", "/dev")?, listing(dev_fd.as_fd()).sys_at("getdents", "/dev")?);
    if dev != base.dev {
        discard!("/dev changed");
    }
    if let Some(used) = base.root {
        let now = fs_use(root.as_fd()).sys_at("fstatfs", "/")?;
        if now != used {
            discard!("the root's upper layer uses {now:?} (inodes, blocks), {used:?} when made");
        }
    }
    for (p, m) in &base.etc {
        let now = open_in(root.as_fd(), p, OFlags::PATH).and_then(|fd| meta(fd.as_fd()));
        if now.as_ref().ok() != Some(m) {
            discard!("{} changed", p.display());
        }
    }
    // Mounts.
    if base.kept.mountinfo()? != base.mountinfo {
        discard!("its mount table changed");
    }
    // Network.
    if net_state(&base.kept.net)? != base.net {
        discard!("sockets are left in its network namespace");
    }
    // Cgroup limits.
    if base.kept.limits()? != base.limits {
        discard!("a cgroup limit changed");
    }
    // IPC objects, through the files its namespace thread opened.
    for (kind, file) in &base.ipc {
        let s = read_from_start(file).sys_at("read", format!("/proc/sysvipc/{kind}"))?;
        if s.lines().skip(1).any(|l| !l.trim().is_empty()) {
            discard!("SysV IPC objects ({kind}) are left");
        }
    }
    // The host name, from the thread in its UTS namespace.
    let names = (base.hostname.clone(), base.domainname.clone());
    if let Some(why) = base.ns.run(move || check_names(&names.0, &names.1))? {
        discard!("{why}");
    }
    Ok(Verdict::Clean)
}

/// A job for an [`NsThread`].
type Job = Box<dyn FnOnce() + Send>;

/// A thread that lives in the sandbox's IPC and UTS namespaces (`setns` changes only the
/// calling thread): joined once, when the sandbox is made, and then asked to run the
/// checks of each reset (a thread started and joined per reset costs milliseconds on a
/// loaded machine). It ends when its sandbox leaves the pool (the channel closes).
#[derive(Debug)]
pub(crate) struct NsThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl NsThread {
    /// Starts the thread; also returns `/proc/sysvipc/{shm,sem,msg}` as it opened them.
    fn start(pid: u32) -> Result<(NsThread, Vec<(&'static str, File)>)> {
        use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
        let open = |kind: &str| -> Result<File> {
            let p = format!("/proc/{pid}/ns/{kind}");
            File::open(&p).sys_at("open", p)
        };
        let (ipc, uts) = (open("ipc")?, open("uts")?);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        type Ipc = Vec<(&'static str, File)>;
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<Ipc>>();
        std::thread::Builder::new()
            .name("nk-pool-ns".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let joined = move_into_link_name_space(ipc.as_fd(), Some(LinkNameSpaceType::InterProcessCommunication))
                    .sys_at("setns", format!("/proc/{pid}/ns/ipc"))
                    .and_then(|()| {
                        move_into_link_name_space(uts.as_fd(), Some(LinkNameSpaceType::HostNameAndNISDomainName))
                            .sys_at("setns", format!("/proc/{pid}/ns/uts"))
                    })
                    .and_then(|()| {
                        ["shm", "sem", "msg"]
                            .into_iter()
                            .map(|kind| {
                                let p = format!("/proc/sysvipc/{kind}");
                                File::open(&p).sys_at("open", p).map(|f| (kind, f))
                            })
                            .collect::<Result<Ipc>>()
                    });
                let ok = joined.is_ok();
                let _ = ready_tx.send(joined);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })
            .sys_at("spawn (a thread in the sandbox's namespaces)", format!("/proc/{pid}/ns"))?;
        let ipc = ready.recv().unwrap_or_else(|_| Err(thread_gone()))?;
        Ok((NsThread { jobs }, ipc))
    }

    /// Runs `f` on the thread, in the sandbox's IPC and UTS namespaces.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| thread_gone())?;
        rx.recv().unwrap_or_else(|_| Err(thread_gone()))
    }
}

fn thread_gone() -> Error {
    Error::Sys { call: "the thread in the sandbox's namespaces", path: None, source: std::io::Error::other("it ended") }
}

/// In the sandbox's UTS namespace: the host and domain names are set back to the
/// baseline's. `Some(reason)` when that fails.
fn check_names(hostname: &[u8], domainname: &[u8]) -> Result<Option<String>> {
    let u = rustix::system::uname();
    if u.nodename().to_bytes() != hostname {
        rustix::system::sethostname(hostname).sys_at("sethostname", "/proc/sys/kernel/hostname")?;
    }
    if u.domainname().to_bytes() != domainname {
        rustix::system::setdomainname(domainname).sys_at("setdomainname", "/proc/sys/kernel/domainname")?;
    }
    let u = rustix::system::uname();
    if u.nodename().to_bytes() != hostname || u.domainname().to_bytes() != domainname {
        return Ok(Some("its host name could not be set back".to_owned()));
    }
    Ok(None)
}
