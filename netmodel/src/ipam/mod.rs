//! IP address management: subnets per network, dynamic and static addresses, persistent and
//! locked state shared by every process on the host, reclaim of addresses whose owner is gone.
//!
//! API CONTRACT (frozen for the other modules; helper B fills the bodies and may add items).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/nook/ipam";

/// An IPAM failure. Validation variants are returned before any state is touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// Placeholder: helper B replaces this with the real variants (InvalidCidr,
    /// GatewayOutsideSubnet, Overlap, Exhausted, AddressInUse, ... , State io errors).
    #[error("ipam: {0}")]
    Todo(String),
}

/// One subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    /// The subnet (host bits must be zero).
    pub subnet: IpNet,
    /// The gateway; `None` means the first host address. It is reserved, never handed out.
    pub gateway: Option<IpAddr>,
}

/// Who holds an address: the address is reclaimable once the owner is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Owner {
    /// A process (pid plus its start time, so a reused pid is not mistaken for it).
    Process {
        /// Pid.
        pid: u32,
        /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
        start_time: u64,
    },
    /// A persisted network namespace (alive while the nsfs bind mount exists at the path).
    Netns {
        /// Path such as `/run/netns/NAME`.
        path: PathBuf,
    },
}

impl Owner {
    /// The calling process.
    pub fn current_process() -> Owner {
        todo!()
    }

    /// Whether the owner still exists.
    pub fn is_alive(&self) -> bool {
        todo!()
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

/// Handle on an IPAM state directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ipam, IpamError> {
        let _ = dir.as_ref();
        todo!()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers a network with its pools: validated (CIDR, gateway inside, no overlap with
    /// the other pools given nor with any other registered network) before anything is written.
    pub fn add_network(&self, network: &str, pools: &[Pool]) -> Result<(), IpamError> {
        let _ = (network, pools);
        todo!()
    }

    /// Forgets a network and its allocations.
    pub fn remove_network(&self, network: &str) -> Result<(), IpamError> {
        let _ = network;
        todo!()
    }

    /// Allocates one address.
    pub fn allocate(&self, network: &str, request: Request, owner: &Owner) -> Result<Allocation, IpamError> {
        let _ = (network, request, owner);
        todo!()
    }

    /// Releases one address (releasing a free address is not an error).
    pub fn release(&self, network: &str, address: IpAddr) -> Result<(), IpamError> {
        let _ = (network, address);
        todo!()
    }

    /// The pools of a registered network.
    pub fn pools(&self, network: &str) -> Result<Vec<Pool>, IpamError> {
        let _ = network;
        todo!()
    }
}
