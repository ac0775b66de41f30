//! Owner liveness: process start times from `/proc/PID/stat`, namespace bind mounts by their
//! file system type.

use std::io;
use std::path::Path;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the file system of namespace files.
pub(crate) const NSFS_MAGIC: u32 = 0x6e73_6673;

/// Field 22 of a `/proc/PID/stat` line (start time, clock ticks after boot).
///
/// Field 2 is the command name in parentheses and may itself hold spaces and parentheses
/// (`(a) (b)`), so the fields are counted after the *last* `)`: there, field 3 is the first.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The start time recorded in a `/proc/.../stat` file.
pub(crate) fn start_time(path: &Path) -> io::Result<u64> {
    let stat = std::fs::read_to_string(path)?;
    parse_start_time(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no start time (field 22)"))
}

/// Whether process `pid` exists with this start time (`0`: any). Only a missing `/proc` entry
/// or a different start time count as dead.
pub(crate) fn process_alive(pid: u32, expected: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match start_time(Path::new(&format!("/proc/{pid}/stat"))) {
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
    use super::*;
    use crate::ipam::Owner;

    const STAT: &str = "1234 (nk) (a b) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";

    #[test]
    fn start_time_is_field_22_even_with_odd_comm() {
        assert_eq!(parse_start_time(STAT), Some(987654));
        let plain = "42 (sh) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_start_time(plain), Some(5));
        assert_eq!(parse_start_time("42 (sh) R 1 2 3"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

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
