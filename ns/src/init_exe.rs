//! `nk-init`, the program that runs as the sandbox's init ([`crate::Command::init`]).
//!
//! Why a program of its own: an init that is only a fork of the embedding program keeps a
//! copy of that program's whole memory and environment as PID 1 of the sandbox — readable
//! from inside through `/proc/1/environ`, `/proc/1/mem` or `ptrace` by anyone allowed to
//! (root of the sandbox, with or without a user namespace). So the child that forks the
//! payload replaces itself with `nk-init` (`init/init.c`, built by `build.rs`): a static,
//! freestanding executable of about a kilobyte that holds nothing but its own code, runs
//! with an empty environment and makes itself non-dumpable first thing.
//!
//! It is embedded in the crate and written once per process into a sealed memfd, created
//! in the parent before the clone and kept open (close-on-exec) for every later spawn; the
//! child execs it with `execveat(memfd, "", AT_EMPTY_PATH)`. So it needs no file on disk,
//! nothing in the new root (it works after `pivot_root` into any rootfs), and nobody can
//! change it: the memfd is sealed against writes, resizing and (6.3+) `chmod`. Shipping it
//! as a file next to the binary was the alternative; it would have to be found, trusted
//! and be reachable from inside every mount namespace.
//!
//! Ordering (see `child::run_init`): the payload is forked first and waits on a pipe for
//! one byte that `nk-init` writes once it runs; EOF instead (the exec failed, or the init
//! was killed) makes the payload leave without running the program. Every signal stays
//! blocked across the exec, so signals sent to the init before it runs are pending, not
//! lost, and `nk-init` reaps before it waits, so a payload that ended early is not missed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::sys;

/// The executable built from `init/init.c`.
static NK_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nk-init"));

/// The process's sealed memfd holding [`NK_INIT`] and its identity (device, inode),
/// created on first use.
static MEMFD: OnceLock<(OwnedFd, (u64, u64))> = OnceLock::new();

/// The descriptor of the sealed `nk-init` memfd (close-on-exec), created on first use.
/// Called in the parent, before the clone. Checks that the descriptor still is that memfd
/// (one `fstat`): if other code of the process closed it and the number was reused, the
/// child would exec whatever file now has it.
pub(crate) fn memfd() -> io::Result<RawFd> {
    if NK_INIT.is_empty() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "nk-init is built for x86_64 and aarch64 only"));
    }
    let (fd, id) = match MEMFD.get() {
        Some(entry) => entry,
        None => {
            let fd = sys::sealed_exec_memfd(c"nk-init", NK_INIT)?;
            let id = sys::fstat_id(fd.as_fd())?;
            // Another thread may have won the race: keep its memfd, drop ours.
            let _ = MEMFD.set((fd, id));
            MEMFD.get().expect("set above")
        }
    };
    if sys::fstat_id(fd.as_fd()).ok() != Some(*id) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the nk-init memfd was closed by other code of this process",
        ));
    }
    Ok(fd.as_raw_fd())
}

#[cfg(test)]
#[allow(unsafe_code)] // borrows the raw memfd number
mod tests {
    use super::*;

    #[test]
    fn embedded_init_is_a_small_static_elf_executable() {
        assert_eq!(&NK_INIT[..4], b"\x7fELF");
        // e_type at offset 16: ET_EXEC (2), not a shared object needing an interpreter.
        assert_eq!(u16::from_le_bytes([NK_INIT[16], NK_INIT[17]]), 2);
        assert!(NK_INIT.len() < 64 * 1024, "{} bytes", NK_INIT.len());
        assert!(!NK_INIT.windows(7).any(|w| w == b"ld-linu"), "no dynamic loader");
    }

    #[test]
    fn memfd_is_created_once_sealed_and_close_on_exec() {
        let fd = memfd().unwrap();
        assert_eq!(memfd().unwrap(), fd, "one memfd per process");
        // SAFETY: the memfd stays open for the whole process (see `memfd`).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
        let want = rustix::fs::SealFlags::SEAL
            | rustix::fs::SealFlags::SHRINK
            | rustix::fs::SealFlags::GROW
            | rustix::fs::SealFlags::WRITE;
        assert!(seals.contains(want), "seals {seals:?}");
        assert!(rustix::io::fcntl_getfd(fd).unwrap().contains(rustix::io::FdFlags::CLOEXEC));
        assert_eq!(rustix::io::pwrite(fd, b"x", 0), Err(rustix::io::Errno::PERM));
        let mut buf = vec![0u8; NK_INIT.len() + 1];
        let n = rustix::io::pread(fd, &mut buf, 0).unwrap();
        assert_eq!(&buf[..n as usize], NK_INIT);
    }
}
