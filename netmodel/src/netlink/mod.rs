//! The one module that talks rtnetlink (links, addresses, routes), synchronously, through
//! `netlink-packet-route` + `netlink-packet-core` + `netlink-sys`.
//!
//! A [`Netlink`] handle is a socket bound to one network namespace: the namespace of the
//! thread that opened it. [`Netlink::open_in`] opens one inside another namespace without
//! moving the calling thread (a short-lived thread does `setns` and hands the socket back).
//!
//! # Why synchronous
//!
//! Every operation here is one request and its acknowledgement (or one dump), answered by
//! the kernel within microseconds while the caller waits anyway: there is nothing to overlap.
//! A blocking `NETLINK_ROUTE` socket keeps it that simple and cheap: no runtime, no task per
//! request, no background thread. (`rtnetlink`, the async layer over the same packet crates,
//! would drag in tokio.) Each handle reuses one send buffer and one 64 KiB receive buffer;
//! acks are recognised from the raw frames without allocating, and only the attributes a
//! caller asked for are decoded from answers.
//!
//! What that costs, measured (release build, 2-vCPU VM, kernel 6.18): opening a socket ~5 µs,
//! [`Netlink::open_in`] ~70 µs (almost all of it creating the helper thread); a whole
//! endpoint setup (veth created with its peer directly in the sandbox namespace, attached
//! to the bridge and up, in one request; then, in the sandbox, `open_in`, the peer's index,
//! its address, up, and the default route) 0.6 to 0.9 ms, of which the kernel's veth
//! creation is ~0.4 ms.
//!
//! # Requests and errors
//!
//! Every request carries `NLM_F_REQUEST | NLM_F_ACK` and a sequence number of its own; the
//! handle reads until that sequence's ack (`NLMSG_ERROR` with code 0), its error (turned into
//! [`NetlinkError::Kernel`] with the errno, see [`NetlinkError::errno`]) or, for dumps,
//! `NLMSG_DONE` (multi-part answers are read to the end; a dump interrupted by a concurrent
//! change, `NLM_F_DUMP_INTR`, is repeated). Frames of other sequence numbers are leftovers and
//! skipped. The socket asks for `NETLINK_CAP_ACK` (small acks) and `NETLINK_GET_STRICT_CHK`
//! (the kernel filters address dumps by link and route dumps by table); answers are still
//! filtered here, so kernels without those options give the same results.
//!
//! Inputs are checked before anything is sent ([`NewLink::validate`], [`Route::validate`],
//! [`validate_link_name`], [`validate_sysctl_key`]): an invalid request fails with
//! [`NetlinkError::Invalid`] ([`ValidationError`]) and creates nothing.
//!
//! # Namespaces
//!
//! A netlink socket belongs to the network namespace its creating thread was in when it
//! called `socket(2)`, for its whole life. [`Netlink::open`] uses the caller's;
//! [`Netlink::open_in`] runs `socket(2)` on a scoped thread that `setns`'d into the target
//! and then simply ends (it is never moved back, which saves reopening and re-entering the
//! old namespace), handing the socket over: the caller never changes namespace, which
//! matters in a multi-threaded program where the caller may be any thread. Objects can also
//! be put into another namespace directly by fd: [`NewLink::netns`] creates a link there,
//! [`LinkKind::Veth::peer_netns`] creates a veth's peer there (one request makes both ends
//! in their final namespaces, instead of create-then-move), [`Netlink::move_to_netns`] moves
//! an existing link. Sysctls ([`write_sysctl`], [`read_sysctl`]) are per namespace as well,
//! resolved when `/proc/sys/...` is opened, so they are opened on such a thread too.
//!
//! # The cost of deleting links
//!
//! Creating a veth pair takes the kernel a few hundred microseconds; deleting one takes about
//! 17 ms, almost all of it waiting: unregistering a device waits for RCU grace periods
//! (`synchronize_net`, `rcu_barrier`) so that no CPU still uses it. Each `RTM_DELLINK` pays
//! that wait for the devices *it* names, so deleting 20 pairs one request at a time takes
//! ~350 ms (measured on this project's CI kernel, 6.18). So:
//!
//! - Prefer letting the kernel do it: when a network namespace is destroyed (its last
//!   handle and process gone) it unregisters all its devices in one batch, on a kernel
//!   worker, off the caller's path (dropping a namespace with 20 veth pairs returns at
//!   once); a veth whose peer is in a dying namespace goes with it. A sandbox's endpoint
//!   therefore needs no explicit delete.
//! - When links must go from a living namespace, [`Netlink::delete_links`] deletes them in
//!   one kernel batch (through a link group, see there): ~18 ms for 1 or 20 pairs.
//!   [`Netlink::delete_link`] is the one-by-one path.

mod addr;
mod link;
mod neigh;
mod route;
mod socket;
mod sysctl;

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkAttribute;
use nook_ns::NsFd;

use crate::error::SysError;
use crate::validation::ValidationError;

pub use link::{MAX_LINK_NAME, VXLAN_PORT, validate_link_name};
pub use neigh::{FdbEntry, NeighbourEntry};
pub use sysctl::validate_sysctl_key;

use socket::{Conn, Target};

/// `RTM_NEWLINK`: the message type of a link in an answer.
const RTM_NEWLINK: u16 = 16;
/// `RTM_NEWADDR`.
const RTM_NEWADDR: u16 = 20;
/// `RTM_NEWROUTE`.
const RTM_NEWROUTE: u16 = 24;
/// `RTM_NEWNEIGH`.
const RTM_NEWNEIGH: u16 = 28;

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
    /// A system call failed: the socket's own (open, connect, send, receive), starting the
    /// thread that enters a namespace, or a sysctl file's open, read or write (`path` under
    /// `/proc/sys/`).
    #[error("netlink: {call}{}: {source}", path.as_deref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Sys {
        /// The call.
        call: &'static str,
        /// The file, for a sysctl.
        path: Option<std::path::PathBuf>,
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
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl NetlinkError {
    /// The errno the kernel returned, if this is a kernel error (a netlink answer, a failed
    /// socket call, or a sysctl the kernel refused).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } | NetlinkError::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The OS error number behind this error, looking into a namespace error too.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetlinkError::Namespace(e) => e.raw_os_error(),
            e => e.errno(),
        }
    }
}

impl From<SysError> for NetlinkError {
    fn from(e: SysError) -> NetlinkError {
        NetlinkError::Sys { call: e.call, path: e.path, source: e.source }
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
        /// Create the peer inside this network namespace (`IFLA_NET_NS_FD`), else in the
        /// socket's namespace (also when [`NewLink::netns`] puts the first end elsewhere).
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
        /// Static forwarding: no learning of remote MACs from received frames
        /// (`nolearning`) and ARP / neighbour solicitations answered by the device from its
        /// neighbour table (`proxy`) instead of being flooded — the FDB and neighbour entries
        /// are programmed ([`Netlink::add_fdb`], [`Netlink::add_neighbour`]), as Docker's
        /// overlay driver does.
        static_fdb: bool,
    },
    /// A dummy link.
    Dummy,
}

/// Everything needed to create a link in one `RTM_NEWLINK` request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewLink<'a> {
    /// Name (at most 15 bytes).
    pub name: &'a str,
    /// Type-specific part.
    pub kind: LinkKind<'a>,
    /// MTU.
    pub mtu: Option<u32>,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// Attach to this master (bridge) index: an index in the namespace the link is created
    /// in ([`NewLink::netns`] when given).
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
#[non_exhaustive]
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

impl Route {
    /// A route to `destination` (`None`: the default route) through `gateway` and/or out of
    /// link `oif`; IPv6 when the destination or the gateway is (see [`Route::ipv6`] for a
    /// default route with neither).
    pub fn new(destination: Option<IpNet>, gateway: Option<IpAddr>, oif: Option<u32>) -> Route {
        let ipv6 = destination.map(|d| matches!(d, IpNet::V6(_))).or(gateway.map(|g| g.is_ipv6())).unwrap_or(false);
        Route { destination, gateway, oif, ipv6 }
    }

    /// Sets whether the route is IPv6 (only matters when destination and gateway are `None`).
    pub fn ipv6(&mut self, ipv6: bool) -> &mut Self {
        self.ipv6 = ipv6;
        self
    }
}

/// A synchronous rtnetlink socket bound to one network namespace.
///
/// Not shared between threads at once (`&mut self`); it may be sent to another thread and
/// still acts on the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    conn: Conn,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        Ok(Netlink { conn: Conn::open()? })
    }

    /// Opens a socket in `netns` (the caller's threads are not moved): a scoped thread
    /// enters `netns`, creates the socket, and exits; the socket stays in `netns`.
    pub fn open_in(netns: &NsFd) -> Result<Netlink> {
        sysctl::on_thread_in(netns, Netlink::open)
    }

    fn get_link(&mut self, target: Target<'_>, msg: RouteNetlinkMessage) -> Result<Option<LinkInfo>> {
        let mut found = None;
        let result = self.conn.request("RTM_GETLINK", target, msg, 0, |f| {
            if f.kind == RTM_NEWLINK {
                found = Some(
                    link::parse_link(f.payload).map_err(|detail| NetlinkError::Decode { op: "RTM_GETLINK", detail })?,
                );
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link called `name`, if any (one `RTM_GETLINK` by name, no dump).
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        validate_link_name(name)?;
        let msg = link::by_index(0, vec![LinkAttribute::IfName(name.to_owned()), link::skip_stats()]);
        self.get_link(Target::Name(name), RouteNetlinkMessage::GetLink(msg))
    }

    /// The link with index `index`, if any.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>> {
        if index == 0 {
            return Ok(None);
        }
        let msg = link::by_index(index, vec![link::skip_stats()]);
        self.get_link(Target::Index(index), RouteNetlinkMessage::GetLink(msg))
    }

    /// All links of this namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        self.conn.dump(
            "RTM_GETLINK",
            || RouteNetlinkMessage::GetLink(link::by_index(0, vec![link::skip_stats()])),
            |f| if f.kind == RTM_NEWLINK { link::parse_link(f.payload).map(Some) } else { Ok(None) },
        )
    }

    /// Creates a link in one request. Returns its index when it was created in this
    /// socket's namespace, `None` when `link.netns` put it elsewhere.
    ///
    /// One `RTM_NEWLINK` with `NLM_F_CREATE | NLM_F_EXCL` (an existing name fails with
    /// `EEXIST`) carries everything: name, MTU, MAC, master (an index in the namespace the
    /// link ends up in), target namespace, `IFF_UP`, and the kind's data (a veth's peer with
    /// its own name, namespace, MTU and MAC; a macvlan's parent and mode; a VXLAN's VNI,
    /// addresses, device and port). The new index comes back in the kernel's echo of the
    /// request (`NLM_F_ECHO`); kernels that do not echo cost one more `RTM_GETLINK`.
    /// [`NewLink::validate`] runs first; an invalid link sends nothing.
    pub fn add_link(&mut self, link: &NewLink<'_>) -> Result<Option<u32>> {
        link.validate()?;
        let here = link.netns.is_none();
        // The echo is only asked for when the link stays here: an echo for a link created
        // elsewhere would be addressed to our port id in *that* namespace.
        let flags = NLM_F_CREATE | NLM_F_EXCL | if here { NLM_F_ECHO } else { 0 };
        let msg = RouteNetlinkMessage::NewLink(link::new_link_message(link));
        let mut index = None;
        self.conn.request("RTM_NEWLINK", Target::Name(link.name), msg, flags, |f| {
            if f.kind == RTM_NEWLINK
                && let Ok(l) = link::parse_link(f.payload)
                && l.name == link.name
            {
                index = Some(l.index);
            }
            Ok(())
        })?;
        if !here {
            return Ok(None);
        }
        match index {
            Some(i) => Ok(Some(i)),
            None => match self.link(link.name)? {
                Some(l) => Ok(Some(l.index)),
                None => Err(NetlinkError::Kernel {
                    op: "RTM_GETLINK",
                    target: format!("{:?} (just created)", link.name),
                    source: std::io::Error::from_raw_os_error(libc::ENODEV),
                }),
            },
        }
    }

    fn set_link(&mut self, index: u32, msg: netlink_packet_route::link::LinkMessage) -> Result<()> {
        self.conn.ack("RTM_SETLINK", Target::Index(index), RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Sets `IFF_UP`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_link(index, link::set_flags(index, true))
    }

    /// Clears `IFF_UP`.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.set_link(index, link::set_flags(index, false))
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(index, link::by_index(index, vec![LinkAttribute::Mtu(mtu)]))
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(index, link::by_index(index, vec![LinkAttribute::Address(mac.to_vec())]))
    }

    /// Renames a (down) link. The new name is validated first.
    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        validate_link_name(name)?;
        self.set_link(index, link::by_index(index, vec![LinkAttribute::IfName(name.to_owned())]))
    }

    /// Attaches to (`Some(bridge)`) or detaches from (`None`) a master.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        self.set_link(index, link::by_index(index, vec![LinkAttribute::Controller(master.unwrap_or(0))]))
    }

    /// Moves a link into another network namespace (it keeps its name; it loses its
    /// addresses and is down there).
    pub fn move_to_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        self.set_link(index, link::by_index(index, vec![LinkAttribute::NetNsFd(netns.as_raw_fd())]))
    }

    /// Adds an address (`IFA_F_NODAD` for IPv6, so it is usable at once). IPv4 addresses get
    /// the subnet broadcast. An address already there fails with `EEXIST`.
    pub fn add_address(&mut self, index: u32, address: IpNet) -> Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(addr::address_message(index, address, true));
        self.conn.ack("RTM_NEWADDR", Target::Display(&AddrTarget(index, address)), msg, NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Removes an address.
    pub fn delete_address(&mut self, index: u32, address: IpNet) -> Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(addr::address_message(index, address, false));
        self.conn.ack("RTM_DELADDR", Target::Display(&AddrTarget(index, address)), msg, 0)
    }

    /// The addresses on a link (both families; IPv4 first), including link-local ones the
    /// kernel added itself.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        self.conn.dump(
            "RTM_GETADDR",
            || RouteNetlinkMessage::GetAddress(addr::dump_message(index)),
            |f| if f.kind == RTM_NEWADDR { addr::parse_address(f.payload, index) } else { Ok(None) },
        )
    }

    /// Adds a route to the main table (`NLM_F_EXCL`: an existing route fails with
    /// `EEXIST`). The family comes from the destination or gateway, else from
    /// [`Route::ipv6`]; no destination means the default route. Without a gateway the
    /// route has link scope (directly reachable on `oif`).
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        route.validate_for_add()?;
        let msg = RouteNetlinkMessage::NewRoute(route::route_message(route, true));
        self.conn.ack("RTM_NEWROUTE", Target::Display(route), msg, NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Deletes a route from the main table. Fields left `None` match any value (a route
    /// with only a destination deletes the first route to it).
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        route.validate()?;
        let msg = RouteNetlinkMessage::DelRoute(route::route_message(route, false));
        self.conn.ack("RTM_DELROUTE", Target::Display(route), msg, 0)
    }

    /// The unicast routes of the main table for one family (kernel-added subnet routes
    /// included).
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<Route>> {
        self.conn.dump(
            "RTM_GETROUTE",
            || RouteNetlinkMessage::GetRoute(route::dump_message(ipv6)),
            |f| if f.kind == RTM_NEWROUTE { route::parse_route(f.payload, ipv6) } else { Ok(None) },
        )
    }

    /// Adds the static (`NUD_PERMANENT`) FDB entry `mac -> dst` to device `index`'s own
    /// forwarding database (`NTF_SELF`; on a VXLAN device: frames for `mac` are encapsulated
    /// to the VTEP `dst`). An entry for `mac` already there is replaced; with `append` (the
    /// all-zeros MAC's flood list) `dst` is added beside the entry's other destinations.
    pub fn add_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr, append: bool) -> Result<()> {
        let msg = RouteNetlinkMessage::NewNeighbour(neigh::fdb_message(index, mac, dst));
        let flags = NLM_F_CREATE | if append { NLM_F_APPEND } else { NLM_F_REPLACE };
        self.conn.ack("RTM_NEWNEIGH", Target::Display(&FdbTarget(index, mac, dst)), msg, flags)
    }

    /// Deletes the FDB entry `mac -> dst` of device `index` (`ENOENT` when there is none).
    pub fn delete_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        let msg = RouteNetlinkMessage::DelNeighbour(neigh::fdb_message(index, mac, dst));
        self.conn.ack("RTM_DELNEIGH", Target::Display(&FdbTarget(index, mac, dst)), msg, 0)
    }

    /// The entries of device `index`'s own forwarding database (`NTF_SELF`).
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        self.conn.dump(
            "RTM_GETNEIGH",
            || RouteNetlinkMessage::GetNeighbour(neigh::dump_message(AddressFamily::Bridge)),
            |f| if f.kind == RTM_NEWNEIGH { neigh::parse_fdb(f.payload, index) } else { Ok(None) },
        )
    }

    /// Adds (or replaces) the static (`NUD_PERMANENT`) neighbour entry `ip -> mac` on device
    /// `index` (the ARP table for IPv4, NDP for IPv6).
    pub fn add_neighbour(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        let msg = RouteNetlinkMessage::NewNeighbour(neigh::neighbour_message(index, ip, Some(mac)));
        self.conn.ack("RTM_NEWNEIGH", Target::Display(&NeighTarget(index, ip)), msg, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Deletes the neighbour entry of `ip` on device `index` (`ENOENT` when there is none).
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let msg = RouteNetlinkMessage::DelNeighbour(neigh::neighbour_message(index, ip, None));
        self.conn.ack("RTM_DELNEIGH", Target::Display(&NeighTarget(index, ip)), msg, 0)
    }

    /// The neighbour entries on device `index` of one family.
    pub fn neighbours(&mut self, index: u32, ipv6: bool) -> Result<Vec<NeighbourEntry>> {
        let family = if ipv6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        self.conn.dump(
            "RTM_GETNEIGH",
            || RouteNetlinkMessage::GetNeighbour(neigh::dump_message(family)),
            |f| if f.kind == RTM_NEWNEIGH { neigh::parse_neighbour(f.payload, index) } else { Ok(None) },
        )
    }

    /// Deletes one link (synchronous: a veth costs the kernel ~17 ms; prefer letting a netns
    /// die, or [`Netlink::delete_links`]).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let msg = RouteNetlinkMessage::DelLink(link::by_index(index, Vec::new()));
        self.conn.ack("RTM_DELLINK", Target::Index(index), msg, 0)
    }

    /// Deletes several links in one batch: all requests are sent before any answer is read,
    /// so the kernel's per-device teardown is paid once per batch where it can be.
    /// Returns every failure (links already gone count as success).
    ///
    /// How: sending `RTM_DELLINK`s back to back does not help (the kernel unregisters each
    /// request's device separately, waiting for RCU every time: 20 veth pairs take ~330 ms
    /// either way). The kernel unregisters in *one* batch only what one request names, and a
    /// request can name a link *group*. So: one dump learns the groups in use, the links
    /// are put into a fresh random group (`RTM_SETLINK IFLA_GROUP`, all sent back to back),
    /// and one `RTM_DELLINK` deletes the group: ~18 ms for 1 or 20 pairs. Should the group
    /// delete be refused (a listed link that cannot be deleted, e.g. `lo`, makes the kernel
    /// refuse the whole group), the links are deleted one request each, back to back, for
    /// per-link errors, and the survivors get their group back.
    pub fn delete_links(&mut self, indexes: &[u32]) -> Vec<NetlinkError> {
        let mut wanted: Vec<u32> = indexes.iter().copied().filter(|&i| i != 0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        match wanted.as_slice() {
            [] => return Vec::new(),
            [one] => {
                return match self.delete_link(*one) {
                    Err(e) if e.errno() != Some(libc::ENODEV) => vec![e],
                    _ => Vec::new(),
                };
            }
            _ => {}
        }
        match self.delete_links_as_group(&wanted) {
            Ok(errors) => errors,
            Err(e) => vec![e],
        }
    }

    fn delete_links_as_group(&mut self, wanted: &[u32]) -> Result<Vec<NetlinkError>> {
        let groups: Vec<(u32, u32)> = self.conn.dump(
            "RTM_GETLINK",
            || RouteNetlinkMessage::GetLink(link::by_index(0, vec![link::skip_stats()])),
            |f| if f.kind == RTM_NEWLINK { link::parse_index_group(f.payload).map(Some) } else { Ok(None) },
        )?;
        // Links not listed are already gone: success.
        let present: Vec<(u32, u32)> =
            groups.iter().copied().filter(|(i, _)| wanted.binary_search(i).is_ok()).collect();
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let group = link::unused_group(groups.iter().map(|&(_, g)| g));
        let mut errors = Vec::new();
        let codes = self.conn.batch(present.len(), |i| {
            RouteNetlinkMessage::SetLink(link::by_index(present[i].0, vec![LinkAttribute::Group(group)]))
        })?;
        let mut grouped = Vec::with_capacity(present.len());
        for (&(index, old), &code) in present.iter().zip(&codes) {
            match code {
                0 => grouped.push((index, old)),
                libc::ENODEV => {}
                code => errors.push(kernel_error("RTM_SETLINK (IFLA_GROUP)", Target::Index(index), code)),
            }
        }
        if grouped.is_empty() {
            return Ok(errors);
        }
        let msg = RouteNetlinkMessage::DelLink(link::by_index(0, vec![LinkAttribute::Group(group)]));
        match self.conn.ack("RTM_DELLINK", Target::Display(&GroupTarget(group)), msg, 0) {
            Ok(()) => return Ok(errors),
            Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(errors),
            Err(_) => {}
        }
        // One of them cannot be deleted: delete one by one, then restore the groups of the
        // links that stay.
        let codes = self
            .conn
            .batch(grouped.len(), |i| RouteNetlinkMessage::DelLink(link::by_index(grouped[i].0, Vec::new())))?;
        let mut survivors = Vec::new();
        for (&(index, old), &code) in grouped.iter().zip(&codes) {
            if code != 0 && code != libc::ENODEV {
                errors.push(kernel_error("RTM_DELLINK", Target::Index(index), code));
                survivors.push((index, old));
            }
        }
        if !survivors.is_empty() {
            let _ = self.conn.batch(survivors.len(), |i| {
                RouteNetlinkMessage::SetLink(link::by_index(survivors[i].0, vec![LinkAttribute::Group(survivors[i].1)]))
            });
        }
        Ok(errors)
    }
}

fn kernel_error(op: &'static str, target: Target<'_>, errno: i32) -> NetlinkError {
    NetlinkError::Kernel { op, target: target.to_string(), source: std::io::Error::from_raw_os_error(errno) }
}

/// Renders "link group N" for errors of a group delete.
struct GroupTarget(u32);

impl std::fmt::Display for GroupTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link group {:#x}", self.0)
    }
}

/// Renders "fdb MAC dst IP on ifindex N" for FDB errors.
struct FdbTarget(u32, [u8; 6], IpAddr);

impl std::fmt::Display for FdbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.1;
        write!(
            f,
            "fdb {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} dst {} on ifindex {}",
            m[0], m[1], m[2], m[3], m[4], m[5], self.2, self.0
        )
    }
}

/// Renders "neighbour IP on ifindex N" for neighbour errors.
struct NeighTarget(u32, IpAddr);

impl std::fmt::Display for NeighTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "neighbour {} on ifindex {}", self.1, self.0)
    }
}

/// Renders "ADDRESS on ifindex N" for address errors.
struct AddrTarget(u32, IpNet);

impl std::fmt::Display for AddrTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on ifindex {}", self.1, self.0)
    }
}

/// Writes a sysctl under `/proc/sys/` (e.g. `net/ipv4/ip_forward`) as seen from `netns`
/// (`None`: the caller's), on a short-lived thread so the caller never moves.
pub fn write_sysctl(netns: Option<&NsFd>, key: &str, value: &str) -> Result<()> {
    sysctl::write(netns, key, value)
}

/// Reads a sysctl under `/proc/sys/` as seen from `netns` (`None`: the caller's), without
/// the trailing newline.
pub fn read_sysctl(netns: Option<&NsFd>, key: &str) -> Result<String> {
    sysctl::read(netns, key)
}
