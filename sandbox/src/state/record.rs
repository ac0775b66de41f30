//! The record format: who owns a sandbox and what it created.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nook_cgroup::CgroupSpec;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result, SysContext, ValidationError};

/// The record format's version (the `version` field).
pub const RECORD_VERSION: u32 = 1;

/// Longest sandbox id.
pub const MAX_ID_LEN: usize = 128;

/// A process, named so that a reused pid is not mistaken for it: its pid and its start time
/// (clock ticks since boot, `/proc/PID/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessId {
    /// Pid (in the pid namespace of whoever reads the record: use one state dir per pid
    /// namespace, as the defaults do).
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process.
    pub fn current() -> Result<ProcessId> {
        ProcessId::of(std::process::id())
    }

    /// Process `pid` as it is now.
    pub fn of(pid: u32) -> Result<ProcessId> {
        let path = PathBuf::from(format!("/proc/{pid}/stat"));
        let text = std::fs::read_to_string(&path).sys_at("read", &path)?;
        let start_time = parse_start_time(&text)
            .ok_or_else(|| Error::Corrupt { path: path.clone(), reason: "no start time in field 22".into() })?;
        Ok(ProcessId { pid, start_time })
    }

    /// Whether this process still exists: `/proc/PID/stat` is there and shows the same start
    /// time. A zombie counts as alive until it is reaped. A `/proc` entry that cannot be read
    /// for another reason than its absence counts as alive too (never clean up what might be
    /// in use).
    pub fn is_alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(text) => parse_start_time(&text).is_none_or(|t| t == self.start_time),
            Err(e) => {
                e.kind() != std::io::ErrorKind::NotFound
                    && e.raw_os_error() != Some(rustix::io::Errno::SRCH.raw_os_error())
            }
        }
    }
}

/// Field 22 of `/proc/PID/stat` (counted after the command name, which may hold spaces and
/// parentheses).
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// One kernel or on-disk object a sandbox created, with what a cleanup needs to remove it
/// from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Object {
    /// A process of the sandbox (its init): killed by pidfd if it is still the same process.
    Process {
        /// Which.
        process: ProcessId,
    },
    /// A cgroup: opened with `spec` ([`nook_cgroup::Cgroup::open_in`]) where its directories
    /// are, killed and removed (`kill_all`, `remove`).
    Cgroup {
        /// The spec it was created with.
        spec: Box<CgroupSpec>,
        /// Its directories (`Cgroup::paths`): where it is in each hierarchy. A spec without a
        /// `parent` was placed below its creator's own cgroup, which the cleaning process does
        /// not know (and the creator may have moved since, e.g. into a leaf): the parent in
        /// each hierarchy is read from these paths instead.
        dirs: Vec<PathBuf>,
    },
    /// A mount: detached ([`nook_ns::unmount`]) if the mount at `target` is still this one.
    Mount {
        /// Where.
        target: PathBuf,
        /// Its mount id (`statx` `STATX_MNT_ID`), so a later mount at the same place is not
        /// taken for it. `None`: only "is a mount point" is checked.
        mount_id: Option<u64>,
    },
    /// A persisted namespace (a bind mount of an nsfs file, like `/run/netns/NAME`):
    /// unmounted and unlinked.
    PersistedNs {
        /// The file.
        path: PathBuf,
    },
    /// A network's firewall rules, or one endpoint's published ports and egress policy
    /// ([`nook_netmodel::firewall::NftNetlink`]).
    Firewall {
        /// The namespace of the rules (a persisted netns file); `None`: the cleaning process's
        /// own network namespace.
        netns: Option<PathBuf>,
        /// The nftables table (`nook` by default).
        table: String,
        /// The network.
        network: String,
        /// `Some`: only this endpoint's published ports; `None`: the network's rules.
        endpoint: Option<String>,
    },
    /// An address allocated from IPAM ([`nook_netmodel::ipam::Ipam`]): released if it is
    /// still held by `owner`.
    IpamAddress {
        /// The IPAM state dir.
        state_dir: PathBuf,
        /// The network.
        network: String,
        /// The address.
        address: IpAddr,
        /// Who holds it in IPAM (`None`: whoever does).
        owner: Option<nook_netmodel::ipam::Owner>,
    },
    /// A network endpoint recorded before it is connected, when neither its addresses (IPAM
    /// picks them) nor its id (the network model makes it) are known yet: every address
    /// `owner` holds on `network`, and the published-port rules and egress policies towards
    /// those addresses
    /// ([`FirewallBackend::remove_ports_to`](nook_netmodel::firewall::FirewallBackend::remove_ports_to),
    /// [`remove_egress_to`](nook_netmodel::firewall::FirewallBackend::remove_egress_to)),
    /// then the addresses are released. Once connected, the owner replaces it with the
    /// endpoint's exact [`Object::IpamAddress`]es and [`Object::Firewall`]. Only a dead
    /// owner's records are cleaned, so whatever that owner still holds is a leftover.
    Endpoint {
        /// The IPAM state dir.
        state_dir: PathBuf,
        /// The network.
        network: String,
        /// Who holds the endpoint's addresses in IPAM.
        owner: nook_netmodel::ipam::Owner,
        /// The namespace of the port rules (a persisted netns file, as in
        /// [`Object::Firewall`]); `None`: the cleaning process's own network namespace.
        netns: Option<PathBuf>,
        /// The nftables table of its port rules (and egress policy); `None`: the endpoint
        /// publishes no port and has no policy.
        table: Option<String>,
    },
    /// The directory of a sandbox's `/etc/hosts` and `/etc/resolv.conf` on the host (in
    /// [`NET_FILES_DIR`](crate::net::NET_FILES_DIR)): those two files are unlinked and the
    /// directory removed (only if nothing else is in it).
    NetFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// A container layer in a layer store: whatever is still mounted on its `merged` dir is
    /// detached ([`nook_unionfs::LayerStore::unmount_container`]), the layer removed
    /// ([`nook_unionfs::LayerStore::remove_container`]), and what dead processes left in the
    /// store's `tmp/` (a removal cut short) cleaned ([`nook_unionfs::LayerStore::clean_tmp`]).
    ContainerLayer {
        /// The store root.
        store: PathBuf,
        /// The container id.
        id: String,
    },
}

impl Object {
    /// A cgroup created from `spec` (`dirs`: its `Cgroup::paths`).
    pub fn cgroup(spec: &CgroupSpec, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Object {
        Object::Cgroup { spec: Box::new(spec.clone()), dirs: dirs.into_iter().map(Into::into).collect() }
    }

    /// The mount at `target` as it is now (with its mount id).
    pub fn mount(target: impl Into<PathBuf>) -> Result<Object> {
        let target = target.into();
        let mount_id = Some(mount_id(&target)?);
        Ok(Object::Mount { target, mount_id })
    }

    /// The process `pid` as it is now.
    pub fn process(pid: u32) -> Result<Object> {
        Ok(Object::Process { process: ProcessId::of(pid)? })
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Object::Process { process } => format!("process {}", process.pid),
            Object::Cgroup { spec, .. } => format!("cgroup {}", spec.name),
            Object::Mount { target, .. } => format!("mount {}", target.display()),
            Object::PersistedNs { path } => format!("namespace {}", path.display()),
            Object::Firewall { network, endpoint: Some(ep), .. } => {
                format!("ports and egress policy of {ep} on {network}")
            }
            Object::Firewall { network, endpoint: None, .. } => format!("firewall rules of {network}"),
            Object::IpamAddress { network, address, .. } => format!("address {address} on {network}"),
            Object::Endpoint { network, owner, .. } => format!("endpoint of {owner} on {network}"),
            Object::NetFiles { dir } => format!("/etc files in {}", dir.display()),
            Object::ContainerLayer { store, id } => format!("container layer {id} in {}", store.display()),
        }
    }
}

/// The mount id of what is mounted at (or contains) `path`.
pub(crate) fn mount_id(path: &Path) -> Result<u64> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID).sys_at("statx", path)?;
    Ok(st.stx_mnt_id)
}

/// One sandbox's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The sandbox id (the record file's name).
    pub id: String,
    /// Who created the sandbox: while it lives, nothing here is touched.
    pub owner: ProcessId,
    /// What was created, in order.
    pub objects: Vec<Object>,
}

/// Checks a sandbox id (see [`ValidationError::BadId`]).
pub fn validate_id(id: &str) -> Result<(), ValidationError> {
    let bad = |reason| Err(ValidationError::BadId { id: id.to_owned(), reason });
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 128 bytes");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return bad("only letters, digits, `_`, `.` and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_a_hostile_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("42 (x"), None);
    }

    #[test]
    fn ids() {
        assert!(validate_id("nk-box_1.a").is_ok());
        for bad in ["", "-x", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        assert!(!ProcessId { start_time: me.start_time + 1, ..me }.is_alive());
    }

    #[test]
    fn objects_round_trip() {
        let o = Object::IpamAddress {
            state_dir: "/run/nook/ipam".into(),
            network: "n".into(),
            address: "10.0.0.2".parse().unwrap(),
            owner: None,
        };
        let j = serde_json::to_string(&o).unwrap();
        assert!(j.contains("\"kind\":\"ipam_address\""), "{j}");
        assert_eq!(serde_json::from_str::<Object>(&j).unwrap(), o);
        let e = Object::Endpoint {
            state_dir: "/run/nook/ipam".into(),
            network: "n".into(),
            owner: nook_netmodel::ipam::Owner::Process { pid: 7, start_time: 9 },
            netns: Some("/run/netns/host".into()),
            table: Some("nook".into()),
        };
        let j = serde_json::to_string(&e).unwrap();
        assert!(j.contains("\"kind\":\"endpoint\""), "{j}");
        assert_eq!(serde_json::from_str::<Object>(&j).unwrap(), e);
    }
}
