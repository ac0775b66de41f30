//! Capabilities: the typed [`Capability`] names, [`CapSet`] (a 64-bit set) and
//! [`Capabilities`], the five sets a [`crate::Command`] gives the child.
//!
//! Only the mechanism lives here; which capabilities a sandbox keeps (Docker's default set,
//! additions and drops by name) is policy, in `nook-sandbox`.

use std::fmt;
use std::str::FromStr;

macro_rules! capabilities {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $text:literal;)*) => {
        /// A Linux capability (`capabilities(7)`), numbered as the kernel numbers it.
        ///
        /// Parses from `"CAP_CHOWN"`, `"chown"` or `"cap_chown"` (any case); displays as
        /// `"CAP_CHOWN"`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum Capability {
            $($(#[$doc])* $name = $num,)*
        }

        impl Capability {
            /// Every capability this crate knows, in kernel order.
            pub const ALL: &'static [Capability] = &[$(Capability::$name,)*];

            /// The kernel's name, e.g. `"CAP_CHOWN"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Capability::$name => concat!("CAP_", $text),)*
                }
            }
        }
    };
}

capabilities! {
    /// Change file owners.
    Chown = 0, "CHOWN";
    /// Bypass file read, write and execute permission checks.
    DacOverride = 1, "DAC_OVERRIDE";
    /// Bypass file read and directory search checks.
    DacReadSearch = 2, "DAC_READ_SEARCH";
    /// Bypass the owner checks of operations on files.
    Fowner = 3, "FOWNER";
    /// Keep set-user/group-ID bits on modification.
    Fsetid = 4, "FSETID";
    /// Bypass the permission checks for sending signals.
    Kill = 5, "KILL";
    /// Change gids.
    Setgid = 6, "SETGID";
    /// Change uids.
    Setuid = 7, "SETUID";
    /// Change the capability sets of the calling thread (bounding, inheritable).
    Setpcap = 8, "SETPCAP";
    /// Set `FS_IMMUTABLE_FL` and `FS_APPEND_FL`.
    LinuxImmutable = 9, "LINUX_IMMUTABLE";
    /// Bind ports below 1024.
    NetBindService = 10, "NET_BIND_SERVICE";
    /// Broadcast and listen to multicast (unused by the kernel).
    NetBroadcast = 11, "NET_BROADCAST";
    /// Network administration.
    NetAdmin = 12, "NET_ADMIN";
    /// Raw and packet sockets.
    NetRaw = 13, "NET_RAW";
    /// Lock memory.
    IpcLock = 14, "IPC_LOCK";
    /// Bypass System V IPC permission checks.
    IpcOwner = 15, "IPC_OWNER";
    /// Load and unload kernel modules.
    SysModule = 16, "SYS_MODULE";
    /// Raw I/O (`iopl`, `ioperm`, ...).
    SysRawio = 17, "SYS_RAWIO";
    /// `chroot`.
    SysChroot = 18, "SYS_CHROOT";
    /// `ptrace` any process.
    SysPtrace = 19, "SYS_PTRACE";
    /// Process accounting.
    SysPacct = 20, "SYS_PACCT";
    /// System administration (mount, sethostname, ...).
    SysAdmin = 21, "SYS_ADMIN";
    /// `reboot` and `kexec_load`.
    SysBoot = 22, "SYS_BOOT";
    /// Raise priorities, set other processes' priorities.
    SysNice = 23, "SYS_NICE";
    /// Override resource limits.
    SysResource = 24, "SYS_RESOURCE";
    /// Set the system clock.
    SysTime = 25, "SYS_TIME";
    /// Configure ttys (`vhangup`, ...).
    SysTtyConfig = 26, "SYS_TTY_CONFIG";
    /// `mknod` of device files.
    Mknod = 27, "MKNOD";
    /// File leases.
    Lease = 28, "LEASE";
    /// Write the audit log.
    AuditWrite = 29, "AUDIT_WRITE";
    /// Configure auditing.
    AuditControl = 30, "AUDIT_CONTROL";
    /// Set file capabilities.
    Setfcap = 31, "SETFCAP";
    /// Override MAC.
    MacOverride = 32, "MAC_OVERRIDE";
    /// Configure MAC.
    MacAdmin = 33, "MAC_ADMIN";
    /// Configure the kernel log (`syslog(2)`).
    Syslog = 34, "SYSLOG";
    /// Trigger wakeups (`CLOCK_*_ALARM` timers).
    WakeAlarm = 35, "WAKE_ALARM";
    /// Block system suspend.
    BlockSuspend = 36, "BLOCK_SUSPEND";
    /// Read the audit log.
    AuditRead = 37, "AUDIT_READ";
    /// Performance monitoring (`perf_event_open`).
    Perfmon = 38, "PERFMON";
    /// BPF operations.
    Bpf = 39, "BPF";
    /// Checkpoint/restore.
    CheckpointRestore = 40, "CHECKPOINT_RESTORE";
}

impl Capability {
    /// The kernel's number.
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The capability with this kernel number, if this crate knows it.
    pub fn from_number(n: u32) -> Option<Capability> {
        Capability::ALL.get(n as usize).copied()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A capability name that names no known capability.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        Capability::ALL.iter().copied().find(|c| &c.name()[4..] == bare).ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

/// A set of capabilities: bit `n` is capability number `n` (the kernel's layout).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// Every capability this crate knows ([`Capability::ALL`]).
    pub const fn all() -> CapSet {
        CapSet((1u64 << (Capability::CheckpointRestore as u32 + 1)) - 1)
    }

    /// The set with these bits (bit `n`: capability number `n`, also numbers this crate
    /// does not name, for kernels newer than it).
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// This set plus `cap`.
    pub const fn with(self, cap: Capability) -> CapSet {
        CapSet(self.0 | 1 << cap as u32)
    }

    /// This set without `cap`.
    pub const fn without(self, cap: Capability) -> CapSet {
        CapSet(self.0 & !(1 << cap as u32))
    }

    /// Adds `cap`.
    pub fn insert(&mut self, cap: Capability) {
        *self = self.with(cap);
    }

    /// Removes `cap`.
    pub fn remove(&mut self, cap: Capability) {
        *self = self.without(cap);
    }

    /// Whether `cap` is in the set.
    pub const fn contains(self, cap: Capability) -> bool {
        self.0 & 1 << cap as u32 != 0
    }

    /// Whether every capability of `other` is in this set.
    pub const fn is_superset(self, other: CapSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in both sets.
    pub const fn intersection(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// The highest capability number in the set.
    pub fn highest(self) -> Option<u32> {
        (self.0 != 0).then(|| 63 - self.0.leading_zeros())
    }

    /// The named capabilities in the set, in kernel order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.iter().copied().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter().fold(CapSet::EMPTY, CapSet::with)
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_set();
        l.entries(self.iter().map(Capability::name));
        let unnamed = self.0 & !CapSet::all().0;
        if unnamed != 0 {
            l.entry(&format_args!("{unnamed:#x}"));
        }
        l.finish()
    }
}

/// The capability sets of the child (`capabilities(7)`), applied after its last privileged
/// step and before exec ([`crate::Command::capabilities`]).
///
/// What the program ends up with after exec follows the kernel's rules: a program running
/// as uid 0 gets its permitted and effective sets from the **bounding** set (plus the
/// inheritable one), so the bounding set is what confines root; a program running as
/// another uid gets the **ambient** set (a capability must be permitted and inheritable to
/// be ambient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The bounding set: every capability not in it is dropped (`PR_CAPBSET_DROP`), up to
    /// the running kernel's last capability; none can be regained.
    pub bounding: CapSet,
    /// The effective set (must be in `permitted`).
    pub effective: CapSet,
    /// The permitted set.
    pub permitted: CapSet,
    /// The inheritable set (must be in `bounding`).
    pub inheritable: CapSet,
    /// The ambient set (must be in `permitted` and `inheritable`).
    pub ambient: CapSet,
}

impl Capabilities {
    /// Docker's shape: `set` as bounding, effective and permitted set, empty inheritable and
    /// ambient sets. An inheritable set would let a program running as another uid gain
    /// those capabilities by executing a file whose inheritable file capabilities name them
    /// (CVE-2022-24769: Docker and runc since leave it empty).
    pub const fn only(set: CapSet) -> Capabilities {
        Capabilities {
            bounding: set,
            effective: set,
            permitted: set,
            inheritable: CapSet::EMPTY,
            ambient: CapSet::EMPTY,
        }
    }

    /// No capability at all (every set empty).
    pub const fn none() -> Capabilities {
        Capabilities::only(CapSet::EMPTY)
    }

    /// The same sets with `ambient` as the ambient set, and in the inheritable set (the
    /// kernel keeps a capability ambient only while it is inheritable too).
    pub const fn with_ambient(mut self, ambient: CapSet) -> Capabilities {
        self.ambient = ambient;
        self.inheritable = CapSet::from_bits(self.inheritable.bits() | ambient.bits());
        self
    }
}

/// What `/proc/sys/kernel/cap_last_cap` says, read once: `Some(n)`, or `None` when it cannot
/// be read.
fn read_last_cap() -> Option<u32> {
    static LAST: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok()?.trim().parse().ok())
}

/// The running kernel's last capability number (`CAP_LAST_CAP`), from
/// `/proc/sys/kernel/cap_last_cap` (read once). When that cannot be read: 63, the most a
/// capability set can hold — the child then drops every number up to it from the bounding
/// set and skips those above [`Capability::CheckpointRestore`] the kernel refuses.
pub fn last_cap() -> u32 {
    read_last_cap().unwrap_or(63).min(63)
}

/// Whether [`last_cap`] came from the kernel.
pub(crate) fn last_cap_known() -> bool {
    read_last_cap().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_display() {
        assert_eq!(Capability::ALL.len(), 41);
        for (i, c) in Capability::ALL.iter().enumerate() {
            assert_eq!(c.number() as usize, i);
            assert_eq!(c.to_string().parse::<Capability>(), Ok(*c));
            assert_eq!(c.name()[4..].to_ascii_lowercase().parse::<Capability>(), Ok(*c));
        }
        assert_eq!("chown".parse::<Capability>(), Ok(Capability::Chown));
        assert_eq!("cap_net_raw".parse::<Capability>(), Ok(Capability::NetRaw));
        assert_eq!(Capability::SysAdmin.to_string(), "CAP_SYS_ADMIN");
        assert!("CAP_NOPE".parse::<Capability>().is_err());
        assert_eq!(Capability::from_number(40), Some(Capability::CheckpointRestore));
        assert_eq!(Capability::from_number(41), None);
    }

    #[test]
    fn sets() {
        let s: CapSet = [Capability::Chown, Capability::Kill].into_iter().collect();
        assert_eq!(s.bits(), 0b10_0001);
        assert!(s.contains(Capability::Kill) && !s.contains(Capability::Setuid));
        assert_eq!(s.highest(), Some(5));
        assert_eq!(CapSet::all().bits(), (1 << 41) - 1);
        assert!(CapSet::all().is_superset(s));
        assert_eq!(format!("{s:?}"), r#"{"CAP_CHOWN", "CAP_KILL"}"#);
        assert_eq!(s.without(Capability::Kill), CapSet::EMPTY.with(Capability::Chown));
    }
}
