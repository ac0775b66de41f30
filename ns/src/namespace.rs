//! The eight namespace kinds and a typed set of them.

use std::fmt;

use bitflags::bitflags;
use serde::{Deserialize, Serialize};

use rustix::thread::LinkNameSpaceType;

use crate::sys::consts;

/// One kind of Linux namespace.
///
/// The declaration order is the order in which nook creates or joins namespaces: the user
/// namespace first (so it owns every other one), the mount namespace last (so that paths
/// still resolve in the caller's view while the others are set up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// User and group ids and capabilities (`CLONE_NEWUSER`).
    User,
    /// The cgroup root (`CLONE_NEWCGROUP`).
    Cgroup,
    /// System V IPC objects and POSIX message queues (`CLONE_NEWIPC`).
    Ipc,
    /// Hostname and NIS domain name (`CLONE_NEWUTS`).
    Uts,
    /// Network devices, addresses, routes, firewall, sockets (`CLONE_NEWNET`).
    Net,
    /// Process ids (`CLONE_NEWPID`).
    Pid,
    /// Offsets for `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` (`CLONE_NEWTIME`).
    Time,
    /// Mount points (`CLONE_NEWNS`).
    Mount,
}

impl Namespace {
    /// All eight kinds, in creation order (user first, mount last).
    pub const ALL: [Namespace; 8] = [
        Namespace::User,
        Namespace::Cgroup,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Net,
        Namespace::Pid,
        Namespace::Time,
        Namespace::Mount,
    ];

    /// The `CLONE_NEW*` flag of this kind.
    pub const fn clone_flag(self) -> u64 {
        match self {
            Namespace::User => libc::CLONE_NEWUSER as u64,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP as u64,
            Namespace::Ipc => libc::CLONE_NEWIPC as u64,
            Namespace::Uts => libc::CLONE_NEWUTS as u64,
            Namespace::Net => libc::CLONE_NEWNET as u64,
            Namespace::Pid => libc::CLONE_NEWPID as u64,
            Namespace::Time => consts::CLONE_NEWTIME,
            Namespace::Mount => libc::CLONE_NEWNS as u64,
        }
    }

    /// The kind whose `CLONE_NEW*` flag is `flag` (as `NS_GET_NSTYPE` reports it).
    pub fn from_clone_flag(flag: u64) -> Option<Namespace> {
        Namespace::ALL.into_iter().find(|ns| ns.clone_flag() == flag)
    }

    /// What `setns` is told to expect of a namespace file of this kind.
    pub(crate) const fn link_type(self) -> LinkNameSpaceType {
        match self {
            Namespace::User => LinkNameSpaceType::User,
            Namespace::Cgroup => LinkNameSpaceType::ControlGroup,
            Namespace::Ipc => LinkNameSpaceType::InterProcessCommunication,
            Namespace::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
            Namespace::Net => LinkNameSpaceType::Network,
            Namespace::Pid => LinkNameSpaceType::ProcessID,
            Namespace::Time => LinkNameSpaceType::Time,
            Namespace::Mount => LinkNameSpaceType::Mount,
        }
    }

    /// The file name under `/proc/PID/ns/` (`mnt`, `uts`, `ipc`, `pid`, `net`, `user`,
    /// `cgroup`, `time`).
    pub const fn proc_name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Cgroup => "cgroup",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Net => "net",
            Namespace::Pid => "pid",
            Namespace::Time => "time",
            Namespace::Mount => "mnt",
        }
    }

    /// The `NamespaceSet` holding only this kind.
    pub const fn as_set(self) -> NamespaceSet {
        NamespaceSet::from_bits_retain(self.clone_flag())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

bitflags! {
    /// A set of namespace kinds, as the `CLONE_NEW*` bits.
    ///
    /// ```
    /// use nook_ns::{Namespace, NamespaceSet};
    ///
    /// let set = NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount);
    /// assert!(set.has(Namespace::Pid));
    /// assert_eq!(set.kinds().collect::<Vec<_>>(), [Namespace::Pid, Namespace::Mount]);
    /// assert_eq!(NamespaceSet::CONTAINER.kinds().count(), 5);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct NamespaceSet: u64 {
        /// `CLONE_NEWNS`.
        const MOUNT = libc::CLONE_NEWNS as u64;
        /// `CLONE_NEWUTS`.
        const UTS = libc::CLONE_NEWUTS as u64;
        /// `CLONE_NEWIPC`.
        const IPC = libc::CLONE_NEWIPC as u64;
        /// `CLONE_NEWPID`.
        const PID = libc::CLONE_NEWPID as u64;
        /// `CLONE_NEWNET`.
        const NET = libc::CLONE_NEWNET as u64;
        /// `CLONE_NEWUSER`.
        const USER = libc::CLONE_NEWUSER as u64;
        /// `CLONE_NEWCGROUP`.
        const CGROUP = libc::CLONE_NEWCGROUP as u64;
        /// `CLONE_NEWTIME`.
        const TIME = consts::CLONE_NEWTIME;
        /// What Docker gives a container by default: mount, uts, ipc, pid, net.
        const CONTAINER = Self::MOUNT.bits() | Self::UTS.bits() | Self::IPC.bits()
            | Self::PID.bits() | Self::NET.bits();
    }
}

impl Default for NamespaceSet {
    fn default() -> Self {
        NamespaceSet::empty()
    }
}

impl NamespaceSet {
    /// An empty set (the child shares every namespace with its parent).
    pub const fn new() -> Self {
        NamespaceSet::empty()
    }

    /// This set with `ns` added.
    #[must_use]
    pub const fn with(self, ns: Namespace) -> Self {
        NamespaceSet::from_bits_retain(self.bits() | ns.clone_flag())
    }

    /// This set with `ns` removed.
    #[must_use]
    pub const fn without(self, ns: Namespace) -> Self {
        NamespaceSet::from_bits_retain(self.bits() & !ns.clone_flag())
    }

    /// Whether `ns` is in the set.
    pub const fn has(self, ns: Namespace) -> bool {
        self.bits() & ns.clone_flag() != 0
    }

    /// The kinds in the set, in creation order (user first, mount last).
    pub fn kinds(self) -> impl Iterator<Item = Namespace> {
        Namespace::ALL.into_iter().filter(move |ns| self.has(*ns))
    }
}

impl FromIterator<Namespace> for NamespaceSet {
    fn from_iter<I: IntoIterator<Item = Namespace>>(iter: I) -> Self {
        iter.into_iter().fold(NamespaceSet::new(), NamespaceSet::with)
    }
}

impl From<Namespace> for NamespaceSet {
    fn from(ns: Namespace) -> Self {
        ns.as_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_and_round_trip() {
        let mut seen = 0u64;
        for ns in Namespace::ALL {
            assert_eq!(seen & ns.clone_flag(), 0, "{ns} overlaps");
            seen |= ns.clone_flag();
            assert_eq!(Namespace::from_clone_flag(ns.clone_flag()), Some(ns));
        }
        assert_eq!(NamespaceSet::all().bits(), seen);
    }

    #[test]
    fn kinds_come_user_first_mount_last() {
        let kinds: Vec<_> = NamespaceSet::all().kinds().collect();
        assert_eq!(kinds.first(), Some(&Namespace::User));
        assert_eq!(kinds.last(), Some(&Namespace::Mount));
        assert_eq!(kinds.len(), 8);
    }

    #[test]
    fn serde_round_trip() {
        let set = NamespaceSet::new().with(Namespace::Net).with(Namespace::Time);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<NamespaceSet>(&json).unwrap(), set);
        assert_eq!(serde_json::to_string(&Namespace::Mount).unwrap(), "\"mount\"");
    }
}
