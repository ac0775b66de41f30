//! Owner liveness: process start times (`nook_ns::process_start_time`), namespace bind mounts by their
//! file system type.

use std::io;
use std::path::Path;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the file system of namespace files.
pub(crate) const NSFS_MAGIC: u32 = 0x6e73_6673;

/// The start time of process `pid` (clock ticks after boot, `/proc/PID/stat` field 22, read by
/// nook-ns's one `/proc` reader), as an I/O error that keeps the errno when it cannot be read.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    nook_ns::process_start_time(pid).map_err(|e| match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// Whether process `pid` exists with this start time (`0`: any). Only a missing `/proc` entry
/// or a different start time count as dead.
pub(crate) fn process_alive(pid: u32, expected: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match start_time(pid) {
        Ok(actual) => expected == 0 || actual == expected,
        Err(e) => !is_gone(&e),
    }
}

/// Whether `path` is (a mount of) a namespace file. Only a missing path or another file system
/// count as dead.
pub(crate) fn netns_alive(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        // `f_type` is a signed or unsigned word depending on the architecture; the magic fits
        // 32 bits.
        Ok(st) => st.f_type as u32 == NSFS_MAGIC,
        Err(e) => !is_gone(&io::Error::from(e)),
    }
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH | libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use crate::ipam::Owner;

    #[test]
    fn current_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = Owner::current_process();
        let Owner::Process { pid, start_time } = me.clone() else { panic!("{me:?}") };
        assert_eq!(pid, std::process::id());
        assert_ne!(start_time, 0, "/proc/self/stat readable");
        assert!(me.is_alive());
        assert_eq!(Owner::process(pid).unwrap(), me);
        assert!(!Owner::Process { pid, start_time: start_time + 1 }.is_alive());
        assert!(Owner::Process { pid, start_time: 0 }.is_alive());
        assert!(!Owner::Process { pid: 0, start_time: 0 }.is_alive());
        // Above pid_max (at most 2^22): never a process.
        assert!(!Owner::Process { pid: u32::MAX, start_time: 1 }.is_alive());
        assert!(Owner::process(u32::MAX).is_err());
    }

    #[test]
    fn netns_owner_liveness_without_root() {
        // /proc/self/ns/net resolves into nsfs.
        assert!(Owner::netns("/proc/self/ns/net").is_alive());
        assert!(!Owner::netns("/proc/self/stat").is_alive());
        assert!(!Owner::netns("/nonexistent-nk-netns/x").is_alive());
    }
}
