//! The one module that talks rtnetlink (links, addresses, routes), synchronously, through
//! `netlink-packet-route` + `netlink-sys`.
//!
//! A [`Netlink`] handle is a socket bound to one network namespace: the namespace of the
//! thread that opened it. [`Netlink::open_in`] opens one inside another namespace without
//! moving the calling thread (a short-lived thread does `setns` and hands the socket back).
//!
//! API CONTRACT (frozen for the other modules; helper A fills the bodies):
//! every `todo!()` below must be replaced by a real implementation; signatures stay.

use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use ipnet::IpNet;
use nook_ns::NsFd;

/// A failed netlink operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The kernel answered a request with an error.
    #[error("netlink {op} {target}: {source}")]
    Kernel {
        /// What was asked, e.g. `"RTM_NEWLINK"`.
        op: &'static str,
        /// The object it was about (link name, address, route).
        target: String,
        /// The errno the kernel returned.
        #[source]
        source: std::io::Error,
    },
    /// The socket itself failed (open, bind, send, receive).
    #[error("netlink socket ({op}): {source}")]
    Socket {
        /// The socket call.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel sent something that could not be decoded.
    #[error("netlink: cannot decode the kernel's answer to {op}: {detail}")]
    Decode {
        /// The request being answered.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// Entering the target namespace to open the socket failed.
    #[error("netlink: cannot enter the network namespace: {0}")]
    Namespace(#[from] nook_ns::Error),
    /// Bad input caught before anything was sent (e.g. a link name longer than 15 bytes).
    #[error("netlink: invalid {what} {value:?}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl NetlinkError {
    /// The errno the kernel returned, if this is a kernel error.
    pub fn errno(&self) -> Option<i32> {
        todo!()
    }
}

/// Result alias for this module.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// What the kernel reports about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`"veth"`, `"bridge"`, `"macvlan"`, ...), `None` for e.g. `lo`.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address (6 bytes for Ethernet), if any.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the master (bridge) this link is attached to.
    pub master: Option<u32>,
}

/// Macvlan modes (`ip link add ... type macvlan mode MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// No traffic between macvlans on the same parent.
    Private,
    /// Traffic between macvlans goes out to the switch (reflective relay).
    Vepa,
    /// Macvlans on one parent talk to each other directly.
    Bridge,
    /// One macvlan takes over the parent.
    Passthru,
}

/// The type-specific part of a new link.
#[derive(Debug, Clone)]
pub enum LinkKind<'a> {
    /// A veth pair; the peer may be created directly inside another namespace.
    Veth {
        /// The peer's name.
        peer_name: &'a str,
        /// Create the peer inside this network namespace (`IFLA_NET_NS_FD`), else beside.
        peer_netns: Option<BorrowedFd<'a>>,
        /// The peer's MTU (defaults to the kernel's).
        peer_mtu: Option<u32>,
        /// The peer's MAC (random when `None`).
        peer_mac: Option<[u8; 6]>,
    },
    /// A Linux bridge.
    Bridge,
    /// A macvlan on `parent` (an interface index in the namespace of this socket).
    Macvlan {
        /// Parent link index.
        parent: u32,
        /// Mode.
        mode: MacvlanMode,
    },
    /// A VXLAN device.
    Vxlan {
        /// VXLAN network identifier (24 bits).
        vni: u32,
        /// Local source address.
        local: Option<IpAddr>,
        /// Remote (unicast) or group (multicast) address.
        remote: Option<IpAddr>,
        /// Underlying device index.
        dev: Option<u32>,
        /// UDP destination port (4789 when `None`).
        port: Option<u16>,
    },
    /// A dummy link.
    Dummy,
}

/// Everything needed to create a link in one `RTM_NEWLINK` request.
#[derive(Debug, Clone)]
pub struct NewLink<'a> {
    /// Name (at most 15 bytes).
    pub name: &'a str,
    /// Type-specific part.
    pub kind: LinkKind<'a>,
    /// MTU.
    pub mtu: Option<u32>,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// Attach to this master (bridge) index.
    pub master: Option<u32>,
    /// Create it inside this network namespace instead of the socket's.
    pub netns: Option<BorrowedFd<'a>>,
    /// Bring it up in the same request.
    pub up: bool,
}

impl<'a> NewLink<'a> {
    /// A link with only a name and a kind; everything else default.
    pub fn new(name: &'a str, kind: LinkKind<'a>) -> NewLink<'a> {
        NewLink { name, kind, mtu: None, mac: None, master: None, netns: None, up: false }
    }
}

/// A route (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination; `None` is the default route of `family`.
    pub destination: Option<IpNet>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Whether this is IPv6 (needed when destination and gateway are both `None`).
    pub ipv6: bool,
}

/// A synchronous rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    _private: (),
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        todo!()
    }

    /// Opens a socket in `netns` (the caller's threads are not moved).
    pub fn open_in(netns: &NsFd) -> Result<Netlink> {
        let _ = netns;
        todo!()
    }

    /// The link called `name`, if any.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        let _ = name;
        todo!()
    }

    /// The link with index `index`, if any.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>> {
        let _ = index;
        todo!()
    }

    /// All links of this namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        todo!()
    }

    /// Creates a link in one request. Returns its index when it was created in this
    /// socket's namespace, `None` when `link.netns` put it elsewhere.
    pub fn add_link(&mut self, link: &NewLink<'_>) -> Result<Option<u32>> {
        let _ = link;
        todo!()
    }

    /// Sets `IFF_UP`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let _ = index;
        todo!()
    }

    /// Clears `IFF_UP`.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        let _ = index;
        todo!()
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let _ = (index, mtu);
        todo!()
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let _ = (index, mac);
        todo!()
    }

    /// Renames a (down) link.
    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        let _ = (index, name);
        todo!()
    }

    /// Attaches to (`Some(bridge)`) or detaches from (`None`) a master.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let _ = (index, master);
        todo!()
    }

    /// Moves a link into another network namespace.
    pub fn move_to_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        let _ = (index, netns);
        todo!()
    }

    /// Adds an address (`IFA_F_NODAD` for IPv6, so it is usable at once).
    pub fn add_address(&mut self, index: u32, address: IpNet) -> Result<()> {
        let _ = (index, address);
        todo!()
    }

    /// Removes an address.
    pub fn delete_address(&mut self, index: u32, address: IpNet) -> Result<()> {
        let _ = (index, address);
        todo!()
    }

    /// The addresses on a link (both families).
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        let _ = index;
        todo!()
    }

    /// Adds a route to the main table.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let _ = route;
        todo!()
    }

    /// Deletes a route from the main table.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        let _ = route;
        todo!()
    }

    /// The routes of the main table for one family.
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<Route>> {
        let _ = ipv6;
        todo!()
    }

    /// Deletes one link (synchronous: a veth costs the kernel ~17 ms; prefer letting a netns
    /// die, or [`Netlink::delete_links`]).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let _ = index;
        todo!()
    }

    /// Deletes several links in one batch: all requests are sent before any answer is read,
    /// so the kernel's per-device teardown is paid once per batch where it can be.
    /// Returns every failure (links already gone count as success).
    pub fn delete_links(&mut self, indexes: &[u32]) -> Vec<NetlinkError> {
        let _ = indexes;
        todo!()
    }
}

/// Writes a sysctl under `/proc/sys/` (e.g. `net/ipv4/ip_forward`) as seen from `netns`
/// (`None`: the caller's), on a short-lived thread so the caller never moves.
pub fn write_sysctl(netns: Option<&NsFd>, key: &str, value: &str) -> Result<()> {
    let _ = (netns, key, value);
    todo!()
}

/// Reads a sysctl under `/proc/sys/` as seen from `netns` (`None`: the caller's).
pub fn read_sysctl(netns: Option<&NsFd>, key: &str) -> Result<String> {
    let _ = (netns, key);
    todo!()
}
