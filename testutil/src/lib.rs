//! Test support shared by the nook crates (publish = false).
//!
//! - [`require_root!`]: skip a privileged test with a printed reason when not root;
//!   `NOOK_REQUIRE_PRIV=1` turns the skip into a failure (CI sets it).
//! - [`unique_name`]: `nk`-prefixed names, unique per process and call, short enough for
//!   interface names (15 bytes).
//! - [`TempDir`]: a private `nk`-prefixed temp dir, removed on drop (after detaching any
//!   mount left below it).
//! - [`tiny_rootfs`]: a minimal root filesystem built from host binaries and their
//!   libraries, so tests need no download.
//! - [`on_private_mount_ns`]: run a closure on a thread with its own mount namespace, so
//!   mounts a test makes vanish with the thread even when it panics.
//! - [`LoopDevice`]: a loop device over a sparse temp file, for block I/O tests.
//! - [`set_host_state`]: put a test-made "host" network namespace in a known
//!   [`HostState`] (quiet, or an unfriendly busy container host) instead of relying on what
//!   it inherited from the machine.

mod cgroups;
mod hoststate;
mod loopdev;

pub use cgroups::{own_cgroup_dirs, remove_cgroup_tree};
pub use hoststate::{FOREIGN_RULESET, FOREIGN_TABLES, HostState, set_host_state};
pub use loopdev::LoopDevice;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether skips must fail (`NOOK_REQUIRE_PRIV=1`).
pub fn skips_forbidden() -> bool {
    std::env::var_os("NOOK_REQUIRE_PRIV").is_some_and(|v| v == "1")
}

/// Reports a skip: prints the reason, or panics when `NOOK_REQUIRE_PRIV=1`.
pub fn skip(test: &str, reason: &str) {
    if skips_forbidden() {
        panic!("{test}: would skip ({reason}) but NOOK_REQUIRE_PRIV=1");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// Reports that the host cannot run a test (a layout or kernel feature it lacks, not a
/// missing privilege): prints `SKIPPED <test>: <reason>` and never panics. CI's v2 lane
/// fails on such a line unless the test is on its documented allowlist.
pub fn skip_unsupported(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// Returns early from a test (with a printed reason) unless running as root.
/// With `NOOK_REQUIRE_PRIV=1` the skip fails the test instead.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip(module_path!(), "needs root (run as root, or unset NOOK_REQUIRE_PRIV to allow skips)");
            return;
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How many times longer than on a native machine a test may wait for something that hangs
/// only when broken (a deadlock detector's deadline): `NOOK_TEST_TIME_FACTOR` (default 1). The
/// emulated VM lane (`.ci/v2-lane`) sets 10: process creation there is 30-45 times slower.
pub fn time_factor() -> u32 {
    std::env::var("NOOK_TEST_TIME_FACTOR").ok().and_then(|v| v.parse().ok()).filter(|&f| f > 0).unwrap_or(1)
}

/// Asserts a finished child succeeded (showing its stdout and stderr if not) and returns its
/// stdout as UTF-8.
#[track_caller]
pub fn success_stdout(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("child stdout is UTF-8")
}

/// A unique `nk`-prefixed name of at most 15 bytes: `nk` + `tag` (first 3 bytes) + pid and
/// a counter in hex. Fits interface names (IFNAMSIZ) and is easy to find in a leak check.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(3).collect();
    let pid = std::process::id() & 0xf_ffff;
    format!("nk{tag}{pid:x}{n:x}").chars().take(15).collect()
}

/// A private temp dir named `nk-...` under `$TMPDIR` (or `/tmp`), removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates it (mode 0755 so processes with other ids in user namespaces can enter).
    pub fn new(tag: &str) -> io::Result<TempDir> {
        let base = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        let path = base.join(format!("{}-{}", unique_name(tag), tag));
        fs::create_dir(&path)?;
        Ok(TempDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        detach_mounts_below(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Lazily unmounts every mount at or below `dir` in the calling thread's mount namespace, deepest
/// first.
pub fn detach_mounts_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/thread-self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())) {
            // SAFETY: c is NUL-terminated.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A mount point as written in mountinfo (space, tab, newline and backslash escaped as
/// `\ooo`), unescaped byte for byte.
pub fn unescape_mount_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The calling thread's mountinfo line of the topmost mount at `target`, if any.
pub fn mountinfo_line(target: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/thread-self/mountinfo").ok()?;
    info.lines().rfind(|l| l.split(' ').nth(4).map(unescape_mount_path).as_deref() == Some(target)).map(str::to_owned)
}

/// Runs `f` on a new thread that first unshares its mount namespace and makes `/`
/// recursively private: mounts made inside never reach the host and disappear with the
/// thread, also when `f` panics (the panic is resumed on the caller's thread).
pub fn on_private_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // SAFETY: unshare on this thread only (CLONE_NEWNS implies CLONE_FS).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWNS): {}", io::Error::last_os_error());
            // SAFETY: all pointers are null or NUL-terminated literals.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "make / rprivate: {}", io::Error::last_os_error());
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Builds a minimal root filesystem in `root`: `/bin/sh` (busybox when the host has it,
/// with its applet links), a few coreutils, their shared libraries (from `ldd`) at the
/// same paths, empty `proc`, `sys`, `tmp`, `etc` directories, and `dev` holding only `null`
/// (a real `/dev/null` node when the caller may make one: masking a file binds `/dev/null`
/// over it, as runc does).
pub fn tiny_rootfs(root: &Path) -> io::Result<()> {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "usr/bin", "lib", "lib64", "old"] {
        fs::create_dir_all(root.join(d))?;
    }
    let null = std::ffi::CString::new(root.join("dev/null").into_os_string().into_encoded_bytes())
        .map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated path; mknod creates nothing else. Without CAP_MKNOD it
    // fails and the rootfs simply has no /dev/null.
    let _ = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    let mut tools: Vec<(String, PathBuf)> = Vec::new();
    for name in
        ["busybox", "sh", "cat", "ls", "echo", "hostname", "id", "sleep", "true", "false", "mkdir", "stat", "readlink"]
    {
        if let Some(p) = which(name) {
            tools.push((name.to_owned(), p));
        }
    }
    for (name, bin) in &tools {
        copy_with_libs(bin, root)?;
        let dst = root.join("bin").join(name);
        if !dst.exists() {
            fs::copy(bin, &dst)?;
        }
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .map(|p| fs::canonicalize(&p).unwrap_or(p))
}

fn copy_with_libs(bin: &Path, root: &Path) -> io::Result<()> {
    copy_into(bin, root)?;
    let out = Command::new("ldd").arg(bin).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = line.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from);
        if let Some(lib) = lib {
            copy_into(&lib, root)?;
        }
    }
    Ok(())
}

fn copy_into(path: &Path, root: &Path) -> io::Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let dst = root.join(rel);
    if dst.exists() {
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(path, &dst)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_unique_and_prefixed() {
        let a = unique_name("veth");
        let b = unique_name("veth");
        assert_ne!(a, b);
        assert!(a.starts_with("nkvet") && a.len() <= 15, "{a}");
    }

    #[test]
    fn temp_dir_is_removed() {
        let d = TempDir::new("t").unwrap();
        let p = d.path().to_owned();
        fs::write(d.join("f"), b"x").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
