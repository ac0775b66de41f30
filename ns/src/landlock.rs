//! Landlock, the parent's side: build a ruleset ([`Ruleset`] → [`Landlock`]) once, hand its
//! descriptor to [`crate::Command::landlock`]; the child enforces it on itself
//! (`landlock_restrict_self`) right before seccomp.
//!
//! Best effort per ABI, never silently weaker: an access right the running kernel's
//! Landlock ABI cannot enforce is an error ([`Error::LandlockUnsupported`]) unless the
//! caller allows degrading ([`Ruleset::allow_degraded`]); then it is left out and
//! [`Landlock::unenforced`] says which, with [`Landlock::abi`] the version in use.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result, SysContext, ValidationError};
use crate::sys;

bitflags::bitflags! {
    /// Filesystem access rights (`LANDLOCK_ACCESS_FS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct AccessFs: u64 {
        /// Execute a file.
        const EXECUTE = 1 << 0;
        /// Open a file for writing.
        const WRITE_FILE = 1 << 1;
        /// Open a file for reading.
        const READ_FILE = 1 << 2;
        /// List a directory.
        const READ_DIR = 1 << 3;
        /// Remove a directory.
        const REMOVE_DIR = 1 << 4;
        /// Unlink a file.
        const REMOVE_FILE = 1 << 5;
        /// Create a character device.
        const MAKE_CHAR = 1 << 6;
        /// Create a directory.
        const MAKE_DIR = 1 << 7;
        /// Create a regular file.
        const MAKE_REG = 1 << 8;
        /// Create a socket.
        const MAKE_SOCK = 1 << 9;
        /// Create a fifo.
        const MAKE_FIFO = 1 << 10;
        /// Create a block device.
        const MAKE_BLOCK = 1 << 11;
        /// Create a symlink.
        const MAKE_SYM = 1 << 12;
        /// Link or rename a file into another directory (ABI 2).
        const REFER = 1 << 13;
        /// Truncate a file (ABI 3).
        const TRUNCATE = 1 << 14;
        /// `ioctl` on a device file (ABI 5).
        const IOCTL_DEV = 1 << 15;
    }
}

impl AccessFs {
    /// Reading: files and directories.
    pub const READ: AccessFs = AccessFs::READ_FILE.union(AccessFs::READ_DIR);
    /// Everything that changes a tree: writing, truncating, creating and removing entries.
    pub const WRITE: AccessFs = AccessFs::WRITE_FILE
        .union(AccessFs::TRUNCATE)
        .union(AccessFs::REMOVE_DIR)
        .union(AccessFs::REMOVE_FILE)
        .union(AccessFs::MAKE_CHAR)
        .union(AccessFs::MAKE_DIR)
        .union(AccessFs::MAKE_REG)
        .union(AccessFs::MAKE_SOCK)
        .union(AccessFs::MAKE_FIFO)
        .union(AccessFs::MAKE_BLOCK)
        .union(AccessFs::MAKE_SYM)
        .union(AccessFs::REFER);
    /// The rights that apply to a file (not a directory) in a rule.
    pub const FILE: AccessFs = AccessFs::EXECUTE
        .union(AccessFs::WRITE_FILE)
        .union(AccessFs::READ_FILE)
        .union(AccessFs::TRUNCATE)
        .union(AccessFs::IOCTL_DEV);

    /// The rights Landlock ABI version `abi` can enforce (empty for 0: no Landlock).
    pub fn supported_by(abi: u32) -> AccessFs {
        match abi {
            0 => AccessFs::empty(),
            1 => AccessFs::from_bits_truncate((1 << 13) - 1),
            2 => AccessFs::from_bits_truncate((1 << 14) - 1),
            3 | 4 => AccessFs::from_bits_truncate((1 << 15) - 1),
            _ => AccessFs::all(),
        }
    }
}

/// A Landlock ruleset to build: the rights it **handles** (denied unless a rule allows
/// them) and rules allowing some of them beneath paths.
///
/// ```no_run
/// use nook_ns::Command;
/// use nook_ns::landlock::{AccessFs, Ruleset};
///
/// let landlock = Ruleset::new(AccessFs::READ | AccessFs::EXECUTE | AccessFs::WRITE)
///     .allow("/usr", AccessFs::READ | AccessFs::EXECUTE)
///     .allow("/lib", AccessFs::READ | AccessFs::EXECUTE)
///     .allow("/tmp", AccessFs::READ | AccessFs::WRITE)
///     .create()?;
/// let status = Command::new("/usr/bin/ls").arg("/etc").no_new_privs(true).landlock(landlock).status()?;
/// assert!(!status.success()); // /etc is outside the ruleset
/// # Ok::<(), nook_ns::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ruleset {
    handled: AccessFs,
    rules: Vec<(PathBuf, AccessFs)>,
    allow_degraded: bool,
}

impl Ruleset {
    /// A ruleset handling `handled`: after it is enforced, those accesses are denied
    /// everywhere but beneath the rules' paths.
    pub fn new(handled: AccessFs) -> Ruleset {
        Ruleset { handled, rules: Vec::new(), allow_degraded: false }
    }

    /// Allows `access` (a subset of the handled rights) beneath `path` (a directory, or a
    /// file with [`AccessFs::FILE`] rights only).
    pub fn allow(mut self, path: impl AsRef<Path>, access: AccessFs) -> Ruleset {
        self.rules.push((path.as_ref().to_owned(), access));
        self
    }

    /// Accept a kernel whose Landlock ABI cannot enforce every handled right (or has no
    /// Landlock): the rights it cannot enforce are left out, and [`Landlock::unenforced`]
    /// names them. Off by default: then that is [`Error::LandlockUnsupported`].
    pub fn allow_degraded(mut self, allow: bool) -> Ruleset {
        self.allow_degraded = allow;
        self
    }

    /// Checks the rules without touching the system: every rule's rights are handled.
    pub fn validate(&self) -> std::result::Result<(), ValidationError> {
        for (path, access) in &self.rules {
            let extra = *access - self.handled;
            if !extra.is_empty() {
                return Err(ValidationError::LandlockAccessNotHandled { path: path.clone(), access: extra.bits() });
            }
            if !path.is_absolute() {
                return Err(ValidationError::RelativePath { field: "landlock rule", path: path.clone() });
            }
        }
        Ok(())
    }

    /// Creates the ruleset in the kernel (`landlock_create_ruleset`, `landlock_add_rule`
    /// per path, each opened `O_PATH`).
    pub fn create(&self) -> Result<Landlock> {
        self.validate()?;
        let abi = crate::probe::landlock_abi().unwrap_or(0);
        let supported = AccessFs::supported_by(abi);
        let unenforced = self.handled - supported;
        if !unenforced.is_empty() && !self.allow_degraded {
            return Err(Error::LandlockUnsupported { abi, missing: unenforced.bits() });
        }
        let handled = self.handled & supported;
        if handled.is_empty() {
            return Ok(Landlock { fd: None, abi, handled, unenforced });
        }
        let fd = sys::landlock_create_ruleset(handled.bits()).sys("landlock_create_ruleset")?;
        for (path, access) in &self.rules {
            let dir = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).sys_at("open", path)?;
            let access = *access & handled;
            if access.is_empty() {
                continue;
            }
            sys::landlock_add_path_rule(fd.as_fd(), dir.as_fd(), access.bits()).sys_at("landlock_add_rule", path)?;
        }
        Ok(Landlock { fd: Some(fd), abi, handled, unenforced })
    }
}

/// A ruleset created in the kernel, ready for [`crate::Command::landlock`] (any number of
/// spawns: each child enforces it on itself).
#[derive(Debug)]
pub struct Landlock {
    fd: Option<OwnedFd>,
    abi: u32,
    handled: AccessFs,
    unenforced: AccessFs,
}

impl Landlock {
    /// The kernel's Landlock ABI version (0: none).
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// The rights the ruleset enforces.
    pub fn handled(&self) -> AccessFs {
        self.handled
    }

    /// The handled rights the kernel cannot enforce, left out with
    /// [`Ruleset::allow_degraded`] (empty otherwise).
    pub fn unenforced(&self) -> AccessFs {
        self.unenforced
    }

    /// The ruleset descriptor; `None` when the kernel could enforce none of the rights
    /// (then there is nothing to enforce: only with [`Ruleset::allow_degraded`]).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// The ruleset descriptor, see [`Landlock::as_fd`].
    pub fn into_fd(self) -> Option<OwnedFd> {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_masks_grow() {
        assert!(!AccessFs::supported_by(1).contains(AccessFs::REFER));
        assert!(AccessFs::supported_by(2).contains(AccessFs::REFER));
        assert!(!AccessFs::supported_by(2).contains(AccessFs::TRUNCATE));
        assert!(AccessFs::supported_by(3).contains(AccessFs::TRUNCATE));
        assert!(!AccessFs::supported_by(4).contains(AccessFs::IOCTL_DEV));
        assert_eq!(AccessFs::supported_by(7), AccessFs::all());
        assert!(AccessFs::supported_by(0).is_empty());
    }

    #[test]
    fn rules_must_be_handled() {
        let r = Ruleset::new(AccessFs::READ).allow("/usr", AccessFs::READ | AccessFs::EXECUTE);
        assert!(matches!(r.validate(), Err(ValidationError::LandlockAccessNotHandled { .. })));
        let r = Ruleset::new(AccessFs::READ).allow("usr", AccessFs::READ);
        assert!(matches!(r.validate(), Err(ValidationError::RelativePath { .. })));
    }
}
