//! The C floor (`benches/c/floor.c`): the same system calls as nook, nothing else. Each
//! call returns the wait status or `-errno`.

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_ulong};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nook_ns::NamespaceSet;

unsafe extern "C" {
    fn nk_floor_clone_wait(flags: c_ulong) -> c_long;
    fn nk_floor_clone_exec_wait(flags: c_ulong, path: *const c_char) -> c_long;
    fn nk_floor_fork_wait() -> c_long;
    fn nk_floor_fork_exec_wait(path: *const c_char) -> c_long;
    fn nk_floor_vfork_exec_wait(flags: c_ulong, path: *const c_char) -> c_long;
    fn nk_floor_setns_roundtrip(target_fd: c_int, orig_fd: c_int, nstype: c_int) -> c_long;
    fn nk_floor_cgroup(
        dirs: *const *const c_char,
        ndirs: c_int,
        files: *const *const c_char,
        values: *const *const c_char,
        nfiles: c_int,
    ) -> c_long;
    fn nk_floor_sandbox(
        stage: *const c_char,
        dirs: *const *const c_char,
        ndirs: c_int,
        files: *const *const c_char,
        values: *const *const c_char,
        nfiles: c_int,
        harden: *const HardenC,
    ) -> c_long;
}

/// `struct nk_harden` of `floor.c`.
#[repr(C)]
pub struct HardenC {
    mask_dirs: *const *const c_char,
    nmask_dirs: c_int,
    mask_files: *const *const c_char,
    nmask_files: c_int,
    read_only: *const *const c_char,
    nread_only: c_int,
    filter: *const libc::sock_filter,
    filter_len: c_int,
    caps: u64,
    last_cap: c_int,
}

/// nook-sandbox's default hardening for the C floor's one-shot (`struct nk_harden`): the
/// same masked and read-only paths (those that exist here), Docker's capability set, and
/// nook's compiled default seccomp program.
pub struct Harden {
    c: HardenC,
    _lists: [Vec<*const c_char>; 3],
    _strings: Vec<CString>,
    _filter: Vec<libc::sock_filter>,
}

impl Harden {
    pub fn new(
        mask_dirs: &[PathBuf],
        mask_files: &[PathBuf],
        read_only: &[PathBuf],
        filter: Vec<libc::sock_filter>,
        caps: u64,
        last_cap: c_int,
    ) -> Harden {
        let mut strings = Vec::new();
        let mut list = |paths: &[PathBuf]| -> Vec<*const c_char> {
            paths
                .iter()
                .map(|p| {
                    let s = CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path");
                    let ptr = s.as_ptr();
                    strings.push(s);
                    ptr
                })
                .collect()
        };
        let lists = [list(mask_dirs), list(mask_files), list(read_only)];
        let c = HardenC {
            mask_dirs: lists[0].as_ptr(),
            nmask_dirs: lists[0].len() as c_int,
            mask_files: lists[1].as_ptr(),
            nmask_files: lists[1].len() as c_int,
            read_only: lists[2].as_ptr(),
            nread_only: lists[2].len() as c_int,
            filter: filter.as_ptr(),
            filter_len: filter.len() as c_int,
            caps,
            last_cap,
        };
        // The vectors' heap buffers (what `c` points at) stay put when they are moved.
        Harden { c, _lists: lists, _strings: strings, _filter: filter }
    }
}

/// A cgroup for [`nk_floor_cgroup`]: the directories to make (in order) and the files to
/// write, as C strings kept alive with the pointer arrays that name them.
pub struct Cgroup {
    paths: Vec<PathBuf>,
    dirs: Vec<*const c_char>,
    files: Vec<*const c_char>,
    values: Vec<*const c_char>,
    _strings: Vec<CString>,
}

impl Cgroup {
    pub fn new(dirs_in: &[PathBuf], writes: &[(PathBuf, String)]) -> Cgroup {
        let c = |s: &[u8]| CString::new(s).expect("no NUL in a cgroup path or value");
        let mut strings = Vec::new();
        // A CString's bytes live on the heap: moving it into `strings` keeps the pointer.
        let mut keep = |s: CString| {
            let p = s.as_ptr();
            strings.push(s);
            p
        };
        let dirs = dirs_in.iter().map(|d| keep(c(d.as_os_str().as_bytes()))).collect();
        let files = writes.iter().map(|(f, _)| keep(c(f.as_os_str().as_bytes()))).collect();
        let values = writes.iter().map(|(_, v)| keep(c(v.as_bytes()))).collect();
        Cgroup { paths: dirs_in.to_vec(), dirs, files, values, _strings: strings }
    }

    /// Panics if a directory of this cgroup exists.
    pub fn assert_removed(&self) {
        for p in &self.paths {
            assert!(!p.exists(), "C floor left {} behind", p.display());
        }
    }

    /// mkdir every directory, write every file, rmdir the directories in reverse order:
    /// 0 or `-errno` (what was created is removed again).
    pub fn run(&self) -> c_long {
        // SAFETY: the arrays hold `len` pointers to NUL-terminated strings owned by
        // `self._strings`, which outlive the call; the C side only reads them.
        unsafe {
            nk_floor_cgroup(
                self.dirs.as_ptr(),
                self.dirs.len() as c_int,
                self.files.as_ptr(),
                self.values.as_ptr(),
                self.files.len() as c_int,
            )
        }
    }

    /// The one-shot sandbox's kernel work in this cgroup (`nk_floor_sandbox`: its comment
    /// lists the steps), its root built in `stage`, hardened as `harden` says: the wait
    /// status of `/bin/true` or `-errno`.
    pub fn run_sandbox(&self, stage: &CStr, harden: Option<&Harden>) -> c_long {
        // SAFETY: as in `run`; `stage` is NUL-terminated and outlives the call; `harden`'s
        // pointers name memory it owns (see `Harden::new`).
        unsafe {
            nk_floor_sandbox(
                stage.as_ptr(),
                self.dirs.as_ptr(),
                self.dirs.len() as c_int,
                self.files.as_ptr(),
                self.values.as_ptr(),
                self.files.len() as c_int,
                harden.map_or(std::ptr::null(), |h| &h.c),
            )
        }
    }
}

/// clone(CLONE_VM | CLONE_VFORK) with `set`'s flags, child execs `path`, waitpid.
pub fn vfork_exec_wait(set: NamespaceSet, path: &CStr) -> c_long {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { nk_floor_vfork_exec_wait(set.bits() as c_ulong, path.as_ptr()) }
}

/// clone3 with `set`'s flags, child `_exit(0)`, waitpid.
pub fn clone_wait(set: NamespaceSet) -> c_long {
    // SAFETY: plain C function taking an integer; it forks and reaps its own child.
    unsafe { nk_floor_clone_wait(set.bits() as c_ulong) }
}

/// clone3 with `set`'s flags, child execs `path`, waitpid.
pub fn clone_exec_wait(set: NamespaceSet, path: &CStr) -> c_long {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { nk_floor_clone_exec_wait(set.bits() as c_ulong, path.as_ptr()) }
}

/// fork, child `_exit(0)`, waitpid.
pub fn fork_wait() -> c_long {
    // SAFETY: no arguments; the child only calls `_exit`.
    unsafe { nk_floor_fork_wait() }
}

/// fork, child execs `path`, waitpid.
pub fn fork_exec_wait(path: &CStr) -> c_long {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { nk_floor_fork_exec_wait(path.as_ptr()) }
}

/// setns into `target` and back into `orig`.
pub fn setns_roundtrip(target: c_int, orig: c_int, nstype: c_int) -> c_long {
    // SAFETY: integer arguments only; both are namespace fds the caller keeps open.
    unsafe { nk_floor_setns_roundtrip(target, orig, nstype) }
}
