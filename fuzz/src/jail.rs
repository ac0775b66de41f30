//! A private directory the file-system targets work in, and the check that nothing escaped it.
//!
//! The directory is `nk-fuzz-<target>-<pid>` under `$NOOK_FUZZ_TMP` (set by `.ci/fuzz`, which
//! removes it) or the system temp dir. When the process is root it `chroot`s into it once,
//! before the first input, so that an applier bug that follows an absolute symlink or a `..`
//! lands in the jail, where [`Jail::check`] sees it, and never on the machine's own files.
//! The working directory is left outside: libFuzzer's relative corpus and artifact paths keep
//! working. At exit (`atexit`) the process goes back to the real root through a saved
//! descriptor and removes the directory; a crash (abort) leaves it to `.ci/fuzz`'s cleanup.
//! Nothing is mounted.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The sentinel's name and content in `outside/`.
const SENTINEL: &str = "sentinel";
const SENTINEL_DATA: &[u8] = b"nook fuzz sentinel: must never change\n";

/// A jail: `top` is its root as this process sees it (`/` after a chroot).
#[derive(Debug)]
pub struct Jail {
    /// The jail's root in this process's view.
    pub top: PathBuf,
    /// The real directory (outside view), removed at exit.
    real: PathBuf,
    /// The real root, kept to leave the chroot at exit.
    real_root: Option<OwnedFd>,
}

static JAIL: OnceLock<Jail> = OnceLock::new();

extern "C" fn leave_and_remove() {
    if let Some(j) = JAIL.get() {
        if let Some(fd) = &j.real_root {
            // SAFETY: fchdir on a directory descriptor we own; chroot(".") with a valid C string.
            unsafe {
                if libc::fchdir(fd.as_raw_fd()) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                    return;
                }
            }
        }
        let _ = fs::remove_dir_all(&j.real);
    }
}

impl Jail {
    /// The process's jail for `target`, made (and entered, when root) on first use.
    pub fn get(target: &str) -> &'static Jail {
        JAIL.get_or_init(|| {
            let base = std::env::var_os("NOOK_FUZZ_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
            let real = base.join(format!("nk-fuzz-{target}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&real);
            fs::create_dir_all(real.join("outside")).expect("create the fuzz jail");
            let sentinel = real.join("outside").join(SENTINEL);
            fs::write(&sentinel, SENTINEL_DATA).expect("write the sentinel");
            fs::set_permissions(&sentinel, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0 && std::env::var_os("NOOK_FUZZ_NO_CHROOT").is_none();
            let (top, real_root) = if root {
                let real_root: OwnedFd = fs::File::open("/").expect("open /").into();
                let c = std::ffi::CString::new(real.as_os_str().as_encoded_bytes()).expect("jail path");
                // SAFETY: chroot with a valid C string; the cwd stays where it was (outside).
                if unsafe { libc::chroot(c.as_ptr()) } != 0 {
                    panic!("chroot {}: {}", real.display(), std::io::Error::last_os_error());
                }
                (PathBuf::from("/"), Some(real_root))
            } else {
                eprintln!("nook-fuzz: not root, no chroot: escapes are checked next to {}", real.display());
                (real.clone(), None)
            };
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(leave_and_remove) };
            Jail { top, real, real_root }
        })
    }

    /// A fresh, empty work directory `name` in the jail (what was there is removed).
    pub fn fresh(&self, name: &str) -> PathBuf {
        let p = self.top.join(name);
        if p.symlink_metadata().is_ok() {
            fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p)).expect("clear the work dir");
        }
        fs::create_dir(&p).expect("create the work dir");
        p
    }

    /// Panics when anything but the work dirs (`w`, `bundle`) and `outside/` appeared at the
    /// jail's top, or `outside/` changed: the code under test wrote outside its directory.
    pub fn check(&self) {
        let allowed = ["w", "bundle"];
        for e in fs::read_dir(&self.top).expect("list the jail") {
            let name = e.expect("jail entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                name == "outside" || allowed.contains(&name.as_ref()),
                "escape: {name:?} appeared at the jail's top (outside the target dir)"
            );
        }
        let outside = self.top.join("outside");
        let md = outside.symlink_metadata().expect("escape: outside/ was removed");
        assert!(md.is_dir(), "escape: outside/ was replaced");
        let names: Vec<_> = fs::read_dir(&outside).expect("list outside/").map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "escape: outside/ now holds {names:?}");
        let s = outside.join(SENTINEL);
        let smd = s.symlink_metadata().expect("escape: the sentinel was removed");
        assert!(smd.is_file(), "escape: the sentinel was replaced");
        assert_eq!(smd.nlink(), 1, "escape: the sentinel was hard-linked");
        assert_eq!(smd.mode() & 0o7777, 0o644, "escape: the sentinel's mode changed");
        assert_eq!(fs::read(&s).expect("read the sentinel"), SENTINEL_DATA, "escape: the sentinel was written");
    }
}
