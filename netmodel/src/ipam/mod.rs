//! IP address management: subnets per network, dynamic and static addresses, persistent and
//! locked state shared by every process on the host, reclaim of addresses whose owner is gone.
//!
//! # Model
//!
//! A *network* (a name such as `nk-bridge0`) has one or more [`Pool`]s: IPv4 and/or IPv6
//! subnets, each with a gateway (the first host address unless given). Addresses are handed out
//! dynamically ([`Request::AnyV4`], [`Request::AnyV6`]) or as requested ([`Request::Static`]) and
//! each allocation records its [`Owner`]: the process or the persisted network namespace that
//! uses it.
//!
//! Never handed out: the network address (for IPv6 that is the subnet-router anycast address),
//! the IPv4 broadcast address, and the gateway. A subnet must hold a gateway plus at least one
//! address, so IPv4 `/31`, `/32` and IPv6 `/127`, `/128` are rejected.
//!
//! # Validation first
//!
//! Every request is validated before any state is touched, with typed errors (bad input is
//! [`IpamError::Invalid`] with a [`crate::ValidationError`]; the rest [`IpamError`]):
//! CIDR text ([`parse_subnet`] rejects host bits, e.g. `10.0.0.1/24`), gateway inside its subnet
//! and not a reserved address, subnet size, pools overlapping within a network or with another
//! registered network (the error names both networks and subnets), duplicate or unknown network
//! names, static addresses outside every pool, reserved or in use, and exhaustion. A failed call
//! never changes the state directory.
//!
//! # State layout
//!
//! The state directory ([`DEFAULT_STATE_DIR`], or any directory given to [`Ipam::open`]) holds:
//!
//! - `<network>.json`: one file per network, `{"version": 1, "network", "pools": [{"subnet",
//!   "gateway", "cursor"}], "allocations": [{"address", "owner"}]}`. `cursor` is the last
//!   address handed out dynamically in that pool.
//!   `"closing": true` is added when [`Ipam::close_network`] marks the network as being
//!   removed (then nothing more is allocated on it).
//! - `.lock`: an empty file, the store-wide lock.
//! - `<network>.network`, `.networks.lock`: not IPAM's — the network model's records of the
//!   networks ([`crate::Network::open`]) and their lock, taken before IPAM's, never inside it.
//! - `.<network>.json.tmp.<pid>.<n>`: transiently, the next version of a network file.
//!
//! Network names follow [`crate::NetworkName`]'s rules (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most
//! [`MAX_NETWORK_NAME`] bytes), so they are safe file names.
//!
//! # Locking and atomic updates
//!
//! The lock and the atomic replacement are nook's one policy for state files,
//! [`nook_ns::statefile`]. Every operation takes `flock(2)` on `<dir>/.lock` (mode 0600):
//! exclusive for anything that writes, shared for reads, held across the whole
//! read-modify-write. Locks belong to the open file description,
//! so two processes, or two threads each with their own call, exclude each other: concurrent
//! processes never hand out the same address. A file is replaced by writing the temporary file in
//! the same directory, `fsync`ing it, renaming it over the old one and `fsync`ing the directory,
//! so a crash leaves the old or the new version, never a torn one. A file that does not parse is
//! reported ([`IpamError::Corrupt`], [`IpamError::InvalidState`], naming the path), never reset.
//! A file bigger than [`MAX_STATE_FILE`] is `Corrupt` without being read (its size is checked
//! with `fstat` and the read is bounded), and no state grows past it.
//!
//! An unusable file (corrupt, invalid, of another version, too big, unreadable) makes only its
//! own network unusable: the calls that name it report the error, the others go on.
//! [`Ipam::release_owner`] and [`Ipam::reclaim_all`] skip it, and [`Ipam::add_network`] checks
//! overlaps against the usable networks only — the broken network's subnets are unknown, so
//! a new network may overlap them. The way out is [`Ipam::remove_network`] (which never reads
//! the file), then registering the network again.
//!
//! # Reclaim (moby#27404)
//!
//! Docker's IPAM kept its allocations in the daemon's memory and its store and, after a daemon
//! restart, could hand out an address still used by a running container (moby#27404). Here the
//! allocation *is* the persistent record, and an address only comes back when its owner is
//! verifiably gone:
//!
//! - [`Owner::Process`]: `/proc/PID/stat` is absent, or shows a different start time (the pid was
//!   reused). A zombie still counts as alive until it is reaped.
//! - [`Owner::Netns`]: the path is no longer a mount of the namespace filesystem (`nsfs`).
//!
//! Anything uncertain (an unreadable `/proc` entry, a permission error) counts as alive: an
//! address is rather kept too long than handed out twice. Every [`Ipam::allocate`] first
//! reclaims the network's dead owners (so a crashed process's addresses come back, and a
//! restart never duplicates a live one); [`Ipam::reclaim`] does it on demand.
//!
//! Liveness is judged in the caller's view of `/proc` and of mounts: use one state directory
//! from the host's pid and mount namespaces (where the network namespaces are persisted).
//!
//! # Automatic subnets
//!
//! [`Ipam::add_network_auto`] registers a network with the first subnet of a list of
//! [`AddressPool`]s (Docker's `default-address-pools`; [`default_address_pools`] are
//! Docker's defaults) that overlaps no registered network and none of the ranges the caller
//! gives (the model gives the host namespace's routes). The choice and the write are one
//! locked update, so concurrent processes never get the same subnet. The search skips past
//! each overlapping range at once: at most (taken ranges + 1) steps per pool, so a large IPv6
//! pool is never iterated.
//!
//! # Allocation order
//!
//! Like Docker, dynamic allocation continues after the last address handed out in the pool
//! (wrapping around at the end), so a just-released address is not reused at once. The search
//! skips allocated addresses one by one, so it takes at most (allocated + 2) steps however large
//! the subnet is (an IPv6 `/64` is never iterated).

mod owner;
mod pools;
mod state;
mod store;
mod validate;

/// The state file parser, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::net::IpAddr;
    use std::path::Path;

    use super::{Allocation, IpamError, Owner, Request};

    /// One network's state, as read from its file.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct State(super::state::NetworkState);

    impl State {
        /// Parses and checks the state file of network `name`.
        pub fn from_json(name: &str, bytes: &[u8]) -> Result<State, IpamError> {
            super::state::NetworkState::from_json(Path::new("fuzz"), name, bytes).map(State)
        }

        /// The state file's content.
        pub fn to_json(&self) -> Vec<u8> {
            self.0.to_json()
        }

        /// Allocates per `request` for one fixed owner.
        pub fn allocate(&mut self, request: Request) -> Result<Allocation, IpamError> {
            self.0.allocate(request, &Owner::Process { pid: 1, start_time: 1 })
        }

        /// Whether `address` could be given out (in a pool, not reserved; allocations aside).
        pub fn allowed(&self, address: IpAddr) -> bool {
            self.0.check_static(address).is_ok()
        }

        /// Whether `address` is allocated.
        pub fn is_allocated(&self, address: IpAddr) -> bool {
            self.0.allocations.contains_key(&address)
        }
    }
}

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::error::{SysContext, SysError};
use crate::validation::ValidationError;

pub use pools::{AddressPool, default_address_pools};
use state::NetworkState;
use store::Store;
pub use validate::{MAX_NETWORK_NAME, parse_subnet, validate_network_name, validate_pools};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/nook/ipam";

/// Largest state file read or written, in bytes (32 MiB).
///
/// A state file is small: a fully allocated IPv4 `/16` (65 533 addresses, each owned by a
/// process with a 10-digit pid and a 20-digit start time) takes about 11 MiB, a `/24` 40 KiB.
/// The cap leaves room for that and more (netns owners with long paths, IPv6 pools beside it)
/// while keeping one call from reading (and holding in memory) whatever a damaged or hostile
/// file claims to be: a bigger file is [`IpamError::Corrupt`] without being read, and an
/// allocation that would grow a state past it is refused ([`IpamError::StateTooLarge`]).
pub const MAX_STATE_FILE: u64 = 32 << 20;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(address: IpAddr) -> IpFamily {
        match address {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// An address of a subnet that is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservedKind {
    /// The IPv4 network address (all host bits zero).
    NetworkAddress,
    /// The IPv4 broadcast address (all host bits one).
    Broadcast,
    /// The IPv6 subnet-router anycast address (all host bits zero).
    SubnetRouterAnycast,
    /// The subnet's gateway.
    Gateway,
}

impl fmt::Display for ReservedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservedKind::NetworkAddress => "network address",
            ReservedKind::Broadcast => "broadcast address",
            ReservedKind::SubnetRouterAnycast => "subnet-router anycast address",
            ReservedKind::Gateway => "gateway",
        })
    }
}

/// An IPAM failure. Validation variants are returned before any state is touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// Bad input: a network name, a subnet, a gateway, pools overlapping within one network
    /// (nothing was touched).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A pool overlaps a pool of another registered network.
    #[error("network {network:?}: subnet {subnet} overlaps subnet {other_subnet} of network {other_network:?}")]
    NetworkOverlap {
        /// The network being registered.
        network: String,
        /// Its subnet.
        subnet: IpNet,
        /// The registered network it collides with.
        other_network: String,
        /// That network's subnet.
        other_subnet: IpNet,
    },
    /// A network of that name is already registered.
    #[error("network {network:?} already exists")]
    NetworkExists {
        /// The network.
        network: String,
    },
    /// No subnet of the address pools is free: each overlaps a registered network or a
    /// range to avoid (the host's routes).
    #[error("network {network:?}: no free subnet left in the address pools ({})", list(.pools))]
    NoFreeSubnet {
        /// The network being registered.
        network: String,
        /// The pools' bases.
        pools: Vec<IpNet>,
    },
    /// [`Ipam::close_network`] refused: live owners still hold addresses.
    #[error("network {network:?} still has {} address(es) of live owners", .allocations.len())]
    NetworkInUse {
        /// The network.
        network: String,
        /// The addresses and their owners.
        allocations: Vec<(IpAddr, Owner)>,
    },
    /// The network is being removed ([`Ipam::close_network`]): nothing more is allocated.
    #[error("network {network:?} is being removed")]
    NetworkClosing {
        /// The network.
        network: String,
    },
    /// No network of that name is registered.
    #[error("unknown network {network:?}")]
    UnknownNetwork {
        /// The network.
        network: String,
    },
    /// A dynamic request for a family the network has no pool of.
    #[error("network {network:?} has no {family} pool")]
    NoPoolForFamily {
        /// The network.
        network: String,
        /// The family requested.
        family: IpFamily,
    },
    /// A static address outside every pool of the network.
    #[error("network {network:?}: address {address} is outside every pool ({})", list(.subnets))]
    AddressOutsidePools {
        /// The network.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// The network's subnets.
        subnets: Vec<IpNet>,
    },
    /// A static address inside the network's subnet but outside the address range of its
    /// pool ([`Pool::range`]: on an overlay network, another host's part of the subnet).
    #[error("network {network:?}: address {address} is outside this host's address range {range}")]
    AddressOutsideRange {
        /// The network.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// The pool's range.
        range: IpNet,
    },
    /// A static address that is never handed out (network, broadcast, anycast, gateway).
    #[error("network {network:?}: address {address} is the {kind} of subnet {subnet}")]
    AddressReserved {
        /// The network.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// The pool's subnet.
        subnet: IpNet,
        /// Which reserved address it is.
        kind: ReservedKind,
    },
    /// A static address already allocated to a live owner.
    #[error("network {network:?}: address {address} is in use by {owner}")]
    AddressInUse {
        /// The network.
        network: String,
        /// The address requested.
        address: IpAddr,
        /// Who holds it.
        owner: Owner,
    },
    /// Every address of the family's pools is allocated to a live owner.
    #[error("network {network:?}: no free {family} address left in {}", list(.subnets))]
    Exhausted {
        /// The network.
        network: String,
        /// The family requested.
        family: IpFamily,
        /// The full subnets.
        subnets: Vec<IpNet>,
    },
    /// A file system operation on the state (or on `/proc`) failed.
    #[error("ipam: {call} {}: {source}", path.as_deref().unwrap_or(Path::new("")).display())]
    Sys {
        /// The operation (e.g. `"rename"`, `"flock"`).
        call: &'static str,
        /// The path it worked on.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A state file is not valid JSON of the expected shape.
    #[error("ipam state file {path} is corrupt: {source}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A state file parses but breaks an invariant (a wrong name or version, an invalid pool, an
    /// allocation outside the pools, a duplicate).
    #[error("ipam state file {path} is invalid: {source}")]
    InvalidState {
        /// The state file.
        path: PathBuf,
        /// What is wrong, as the validation error it amounts to.
        #[source]
        source: Box<IpamError>,
    },
    /// A state file has a format version this code does not know.
    #[error("ipam state file {path} has version {version}, expected {expected}")]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// Its version.
        version: u32,
        /// The version this code reads and writes.
        expected: u32,
    },
    /// An allocation would make the network's state file bigger than [`MAX_STATE_FILE`];
    /// nothing was written. Release addresses (or spread the owners over more networks).
    #[error("network {network:?}: state would be {size} bytes, more than the {max} a state file may hold")]
    StateTooLarge {
        /// The network.
        network: String,
        /// The size it would have.
        size: u64,
        /// [`MAX_STATE_FILE`].
        max: u64,
    },
    /// A state file holds a different network than its name says.
    #[error("ipam state file {path} holds network {found:?}")]
    NameMismatch {
        /// The state file.
        path: PathBuf,
        /// The network named inside it.
        found: String,
    },
    /// An allocation appears twice in a state file.
    #[error("network {network:?}: address {address} is allocated twice")]
    DuplicateAllocation {
        /// The network.
        network: String,
        /// The address.
        address: IpAddr,
    },
}

fn list(subnets: &[IpNet]) -> String {
    subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

impl IpamError {
    /// The OS error number, if this is a failed file operation.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IpamError::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<SysError> for IpamError {
    fn from(e: SysError) -> IpamError {
        IpamError::Sys { call: e.call, path: e.path, source: e.source }
    }
}

/// One subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Pool {
    /// The subnet (host bits must be zero).
    pub subnet: IpNet,
    /// The gateway; `None` means the first host address. It is reserved, never handed out.
    pub gateway: Option<IpAddr>,
    /// Hand addresses out only from this part of the subnet (Docker's `--ip-range`), both
    /// dynamic and static ones (a static address outside it is refused with
    /// [`IpamError::AddressOutsideRange`]); `None`: the whole subnet. An overlay network's
    /// hosts each get their own range of the shared subnet, so no two hosts hand out the same
    /// address ([`crate::driver::OverlayOptions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<IpNet>,
}

impl Pool {
    /// A pool with the default gateway (the first host address).
    pub fn new(subnet: IpNet) -> Pool {
        Pool { subnet, gateway: None, range: None }
    }

    /// A pool with an explicit gateway.
    pub fn with_gateway(subnet: IpNet, gateway: IpAddr) -> Pool {
        Pool { subnet, gateway: Some(gateway), range: None }
    }

    /// Restricts the addresses handed out to `range` (inside the subnet).
    pub fn with_range(mut self, range: IpNet) -> Pool {
        self.range = Some(range);
        self
    }
}

/// Who holds an address: the address is reclaimable once the owner is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// A process (pid plus its start time, so a reused pid is not mistaken for it).
    Process {
        /// Pid.
        pid: u32,
        /// Start time in clock ticks since boot (`/proc/PID/stat` field 22). `0` means unknown:
        /// then only the pid is checked.
        start_time: u64,
    },
    /// A persisted network namespace (alive while the nsfs bind mount exists at the path).
    Netns {
        /// Path such as `/run/netns/NAME`.
        path: PathBuf,
    },
}

impl Owner {
    /// The calling process. If `/proc/self/stat` cannot be read, the start time is `0`
    /// (unknown), and liveness checks only the pid.
    pub fn current_process() -> Owner {
        let pid = std::process::id();
        let start_time = owner::start_time(pid).unwrap_or(0);
        Owner::Process { pid, start_time }
    }

    /// Process `pid` (a sandbox's init, for example), with its start time read from
    /// `/proc/PID/stat`.
    pub fn process(pid: u32) -> Result<Owner, IpamError> {
        let start_time = owner::start_time(pid).sys_at("read", format!("/proc/{pid}/stat"))?;
        Ok(Owner::Process { pid, start_time })
    }

    /// A persisted network namespace at `path`.
    pub fn netns(path: impl Into<PathBuf>) -> Owner {
        Owner::Netns { path: path.into() }
    }

    /// Whether the owner still exists. Anything uncertain counts as alive (see the module
    /// docs): a process whose `/proc` entry cannot be read, a namespace path that cannot be
    /// examined for another reason than its absence.
    pub fn is_alive(&self) -> bool {
        match self {
            Owner::Process { pid, start_time } => owner::process_alive(*pid, *start_time),
            Owner::Netns { path } => owner::netns_alive(path),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Process { pid, start_time } => write!(f, "process {pid} (started at tick {start_time})"),
            Owner::Netns { path } => write!(f, "network namespace {}", path.display()),
        }
    }
}

/// What to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Any free IPv4 address.
    AnyV4,
    /// Any free IPv6 address.
    AnyV6,
    /// This exact address.
    Static(IpAddr),
}

/// An allocated address with what a sandbox needs to configure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Address with the subnet's prefix length (e.g. `10.0.0.2/24`).
    pub address: IpNet,
    /// The subnet's gateway.
    pub gateway: IpAddr,
}

/// Handle on an IPAM state directory. Cheap to clone; holds no open file between calls (every
/// call takes the store lock for its own duration), so handles in many processes can share a
/// directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// Opens (creating if needed, with its parents) the state directory and its lock file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ipam, IpamError> {
        let dir = dir.as_ref().to_path_buf();
        Store::create(&dir)?;
        Ok(Ipam { dir })
    }

    /// Opens [`DEFAULT_STATE_DIR`].
    pub fn open_default() -> Result<Ipam, IpamError> {
        Ipam::open(DEFAULT_STATE_DIR)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn store(&self) -> Store<'_> {
        Store::new(&self.dir)
    }

    /// Registers a network with its pools: validated (CIDR, gateway inside, no overlap with
    /// the other pools given nor with any other registered network) before anything is written.
    /// Pools without a gateway get the first host address. A network whose state file is
    /// unusable (see the module docs) does not block this; its subnets are not checked.
    pub fn add_network(&self, network: &str, pools: &[Pool]) -> Result<(), IpamError> {
        validate_network_name(network)?;
        let pools = validate::resolve_pools(network, pools)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        if store.exists(network)? {
            return Err(IpamError::NetworkExists { network: network.to_owned() });
        }
        for other in store.load_usable()? {
            for pool in &pools {
                if let Some(o) = other.pools.iter().find(|o| validate::overlaps(&pool.subnet, &o.subnet)) {
                    return Err(IpamError::NetworkOverlap {
                        network: network.to_owned(),
                        subnet: pool.subnet,
                        other_network: other.name.clone(),
                        other_subnet: o.subnet,
                    });
                }
            }
        }
        store.save(&NetworkState::new(network, &pools))
    }

    /// Registers a network with one subnet chosen automatically: the first subnet of `pools`
    /// (in order; see [`AddressPool`], [`default_address_pools`]) that overlaps no registered
    /// network's subnet and none of `avoid` (the host's routes, for the model). Chosen and
    /// written under the store's exclusive lock, so processes registering networks at the same
    /// time get different subnets. Returns the pool registered (gateway: the first host
    /// address). Networks whose state file is unusable are not seen (as in
    /// [`Ipam::add_network`]).
    pub fn add_network_auto(&self, network: &str, pools: &[AddressPool], avoid: &[IpNet]) -> Result<Pool, IpamError> {
        validate_network_name(network)?;
        for pool in pools {
            pool.validate()?;
        }
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        if store.exists(network)? {
            return Err(IpamError::NetworkExists { network: network.to_owned() });
        }
        let mut taken: Vec<IpNet> = avoid.to_vec();
        for other in store.load_usable()? {
            taken.extend(other.pools.iter().map(|p| p.subnet));
        }
        let Some(subnet) = pools::first_free(pools, &taken) else {
            return Err(IpamError::NoFreeSubnet {
                network: network.to_owned(),
                pools: pools.iter().map(|p| p.base).collect(),
            });
        };
        let resolved = validate::resolve_pools(network, &[Pool::new(subnet)])?;
        store.save(&NetworkState::new(network, &resolved))?;
        Ok(Pool::with_gateway(resolved[0].subnet, resolved[0].gateway))
    }

    /// Marks a network as being removed, in one locked update, unless a live owner holds one
    /// of its addresses ([`IpamError::NetworkInUse`]): from then on [`Ipam::allocate`] refuses
    /// it ([`IpamError::NetworkClosing`]), so no process can take an address while the network
    /// is torn down. Its subnets stay registered until [`Ipam::remove_network`].
    pub fn close_network(&self, network: &str) -> Result<(), IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut state = store.load(network)?;
        let mut alive = HashMap::new();
        let live: Vec<(IpAddr, Owner)> = state
            .allocations
            .iter()
            .filter(|(_, o)| *alive.entry((*o).clone()).or_insert_with(|| o.is_alive()))
            .map(|(a, o)| (*a, o.clone()))
            .collect();
        if !live.is_empty() {
            return Err(IpamError::NetworkInUse { network: network.to_owned(), allocations: live });
        }
        if !state.closing {
            state.closing = true;
            store.save(&state)?;
        }
        Ok(())
    }

    /// Forgets a network and its allocations.
    pub fn remove_network(&self, network: &str) -> Result<(), IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        if store.remove(network)? { Ok(()) } else { Err(IpamError::UnknownNetwork { network: network.to_owned() }) }
    }

    /// Allocates one address to `owner`. First reclaims the network's addresses whose owner is
    /// gone. Nothing is written when it fails.
    pub fn allocate(&self, network: &str, request: Request, owner: &Owner) -> Result<Allocation, IpamError> {
        self.allocate_reclaiming(network, request, owner).map(|(allocation, _)| allocation)
    }

    /// [`Ipam::allocate`], also returning the addresses it reclaimed from dead owners on the
    /// way (in the same locked update). Whoever keeps state keyed by address elsewhere — the
    /// model's published-port rules — must clean it up for these before the addresses serve
    /// a new owner.
    pub fn allocate_reclaiming(
        &self,
        network: &str,
        request: Request,
        owner: &Owner,
    ) -> Result<(Allocation, Vec<IpAddr>), IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut state = store.load(network)?;
        let reclaimed = state.reclaim_listed(Owner::is_alive);
        let allocation = state.allocate(request, owner)?;
        nook_ns::failpoint::check("ipam.allocate", network).map_err(|source| IpamError::Sys {
            call: "write",
            path: Some(self.dir().join(network)),
            source,
        })?;
        store.save(&state)?;
        Ok((allocation, reclaimed))
    }

    /// Releases one address (releasing a free address is not an error).
    pub fn release(&self, network: &str, address: IpAddr) -> Result<(), IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut state = store.load(network)?;
        if state.release(address) {
            store.save(&state)?;
        }
        Ok(())
    }

    /// Releases every address held by `owner` in every network; returns how many. Networks
    /// whose state file is unusable are skipped (their addresses stay as they are).
    pub fn release_owner(&self, owner: &Owner) -> Result<usize, IpamError> {
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut released = 0;
        for mut state in store.load_usable()? {
            let n = state.release_owner(owner);
            if n > 0 {
                store.save(&state)?;
                released += n;
            }
        }
        Ok(released)
    }

    /// Releases the network's addresses whose owner is gone; returns how many.
    pub fn reclaim(&self, network: &str) -> Result<usize, IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut state = store.load(network)?;
        let n = state.reclaim(Owner::is_alive);
        if n > 0 {
            store.save(&state)?;
        }
        Ok(n)
    }

    /// [`Ipam::reclaim`] over every network; returns how many addresses came back. Networks
    /// whose state file is unusable are skipped.
    pub fn reclaim_all(&self) -> Result<usize, IpamError> {
        let store = self.store();
        let _lock = store.lock_exclusive()?;
        let mut alive = HashMap::new();
        let mut total = 0;
        for mut state in store.load_usable()? {
            let n = state.reclaim_cached(&mut alive, Owner::is_alive);
            if n > 0 {
                store.save(&state)?;
                total += n;
            }
        }
        Ok(total)
    }

    /// The allocated addresses of a network with their owners, by address.
    pub fn allocations(&self, network: &str) -> Result<Vec<(IpAddr, Owner)>, IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_shared()?;
        let state = store.load(network)?;
        Ok(state.allocations.into_iter().collect())
    }

    /// The pools of a registered network, with their gateways resolved.
    pub fn pools(&self, network: &str) -> Result<Vec<Pool>, IpamError> {
        validate_network_name(network)?;
        let store = self.store();
        let _lock = store.lock_shared()?;
        let state = store.load(network)?;
        Ok(state.pools.iter().map(|p| Pool { range: p.range, ..Pool::with_gateway(p.subnet, p.gateway) }).collect())
    }

    /// The registered networks, by name.
    pub fn networks(&self) -> Result<Vec<String>, IpamError> {
        let store = self.store();
        let _lock = store.lock_shared()?;
        store.list()
    }
}
