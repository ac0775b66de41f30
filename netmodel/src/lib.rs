//! nook-netmodel: Docker's Container Network Model as a library — no daemon.
//!
//! # The model (CNM)
//!
//! * A [`Sandbox`] is a network namespace holding a network stack: interfaces, addresses,
//!   routes. Processes run "in" a sandbox by joining its namespace ([`Sandbox::netns`]).
//! * An [`Endpoint`] joins a sandbox to a network: a veth pair (one end on the network's
//!   bridge, the other in the sandbox) or a macvlan link, plus its addresses and published
//!   ports. A sandbox may have endpoints on several networks (`eth0`, `eth1`, ...).
//! * A [`Network`] is a group of endpoints that talk to each other directly: a Linux bridge
//!   ([`Driver::Bridge`]), macvlans on a parent link ([`Driver::Macvlan`]), a bridge per host
//!   joined across hosts by VXLAN ([`Driver::Overlay`], see below), or whatever a driver of
//!   your own builds ([`NetworkDriver`], [`Driver::Custom`]).
//! * The [`Host`] is the other side: the namespace where bridges, nftables rules and
//!   `ip_forward` live (the caller's, or any namespace you give it — tests use a private one),
//!   the IPAM state directory and the firewall backend.
//!
//! # Overlay networks across hosts
//!
//! Docker's `overlay` driver without its control plane: the caller is the gossip. On every
//! host, the caller creates the network with the same name, subnet and VNI
//! ([`NetworkSpec::overlay`], [`driver::OverlayOptions`]), this host's underlay address
//! (`local`) and the other hosts' (`peers`), and — per subnet — this host's own address range
//! ([`NetworkSpec::subnet_range`], [`ipam::Pool::range`]). Each host then has a bridge (with
//! the gateway address, like a bridge network, and its firewall chains: outbound masquerade
//! unless `internal`) and a VXLAN device on it (`nolearning`, `proxy`, MTU = the underlay
//! link's - 50). When a sandbox connects on one host, [`Network::advertise`] gives what the
//! others need (its IP, its MAC, this host's underlay address: a [`RemoteEndpoint`]); the
//! caller hands it to [`Network::add_remote_endpoint`] on every other host, which programs a
//! static neighbour entry (IP -> MAC) and a static FDB entry (MAC -> VTEP) by netlink
//! ([`Network::overlay_entries`] reads them back), and to
//! [`Network::remove_remote_endpoint`] when it leaves.
//!
//! **Addresses never collide across hosts** because each host's IPAM hands out (dynamically
//! and statically) only inside its own range, and ranges are disjoint: the overlay spec is
//! refused without a range for every subnet (and without explicit subnets — automatic ones
//! would differ between hosts); a static address outside the range fails with
//! [`ipam::IpamError::AddressOutsideRange`]; a remote endpoint whose address lies in this
//! host's range is refused. The caller's only duty is to give each host a different range
//! (e.g. host *i* the *i*-th /26 of a /24). A shared state directory is not used: IPAM's
//! `flock` does not reach across machines.
//!
//! # Modes of `docker run --network=`
//!
//! | `--network=` | here | namespace |
//! |---|---|---|
//! | `none` | [`Sandbox::none`] / [`NetworkMode::None`] | new, only `lo` (up) |
//! | `bridge`, `NAME` | [`Sandbox::none`] + [`Sandbox::connect`] / [`NetworkMode::Network`] | new, `lo` + `eth0` |
//! | `host` | [`Sandbox::host`] / [`NetworkMode::Host`] | the host's |
//! | `container:X` | [`Sandbox::container`] / [`NetworkMode::Container`] | X's, with its endpoints |
//!
//! [`NetworkModeName`] parses the text form. A sandbox can also be persisted under a name
//! ([`Sandbox::persisted`], like `ip netns add`) so its namespace can outlive the process.
//!
//! # Where state lives
//!
//! * In the kernel: bridges and host-side veth ends in the host namespace; sandbox links,
//!   addresses and routes in the sandboxes' namespaces; NAT, forwarding and published-port
//!   rules in one nftables table of the host namespace ([`firewall`]).
//! * On disk, in the state directory (default [`ipam::DEFAULT_STATE_DIR`],
//!   [`HostBuilder::ipam_dir`]), shared and locked between processes: IPAM's files
//!   ([`ipam`]: each address is owned by a process or a persisted namespace, and comes back
//!   when its owner is gone), and one record per network (`<network>.network`: its id, its
//!   resolved spec and its users), so a network outlives the process that made it and other
//!   processes attach to it.
//! * In the process: which endpoints a network has (for `/etc/hosts` of their peers) and which
//!   host ports this process published. Sandboxes are owning handles, torn down by
//!   [`Sandbox::remove`] (which reports every failure) or, best effort, when dropped.
//!
//! # Networks shared between processes
//!
//! What Docker's daemon gives for free, without a daemon: [`Network::create`] records the
//! network in the state directory, and any process using the same state directory and host
//! namespace attaches to it with [`Network::open`] (which checks the bridge is there) and
//! connects its own sandboxes; IPAM's locked state gives every endpoint, whatever its process,
//! a distinct address, and the kernel a random MAC (Docker derives it from the address; a
//! random one is as distinct and needs no coordination). Each handle is a *user* of the
//! network, recorded with its process's pid and start time. The network goes when asked:
//! [`Network::remove`] removes it for everyone (refused while any process's endpoint is
//! attached), [`Network::release`] — and dropping the last clone of a handle — removes it
//! only when no other live user and no live endpoint is left, and [`Network::leave`] never
//! does (the network stays for whoever opens it next). A user that crashed counts as gone.
//! All of it happens under one lock file of the state directory (`.networks.lock`), and
//! removal first *closes* the network in IPAM, so no process can take an address on a
//! network being torn down. Peers of other processes are not known to a sandbox's
//! embedded DNS server nor listed in its `/etc/hosts` (that list is per process).
//!
//! # Names: the embedded DNS server
//!
//! As with Docker, sandboxes on a user-defined network find each other by name through a DNS
//! server at `127.0.0.11` inside each of them ([`dns`]): sandbox names, aliases (A and AAAA),
//! answered from the networks' live endpoint lists, so connects and disconnects show at once;
//! other names are forwarded to the host's resolvers. No daemon: one thread per [`Host`].
//! The default network has none (peers there are not resolved, as in Docker), and
//! [`HostBuilder::embedded_dns`] turns it off (peers are then listed in `/etc/hosts`).
//!
//! # Automatic subnets
//!
//! A [`NetworkSpec`] without subnets (`docker network create NAME`) gets one IPv4 subnet when
//! the network is created: the first subnet of the host's address pools — by default Docker's
//! (`172.17.0.0/16` … `172.31.0.0/16`, then `192.168.0.0/16` in `/20`s,
//! [`ipam::default_address_pools`]); others with [`HostBuilder::address_pools`] — that
//! overlaps no route of the host namespace (the default route aside) and no other network in
//! the state directory. It is chosen and registered under IPAM's lock, so processes creating
//! networks at the same time get different subnets. [`Network::spec`] shows the one chosen.
//!
//! # Setup and teardown order
//!
//! Everything that can be checked is checked before anything changes: specs and options
//! ([`NetworkSpec::validate`], [`EndpointOptions::validate_for`]), then read-only checks of
//! the host (a macvlan parent exists, a bridge name is free), then IPAM's validation of
//! subnets and addresses. Every interface name (a bridge, a macvlan parent, an endpoint's
//! name in the sandbox, a link netlink is asked for) is checked by one rule set, [`IfName`]'s.
//! A step that fails later undoes the steps before it, and the error carries both the cause
//! and any cleanup failure ([`Error::Cleanup`]).
//!
//! * Network: IPAM registration (an automatic subnet chosen) → the driver builds it (bridge
//!   with gateway addresses and MTU, up; firewall chains: masquerade and forwarding unless
//!   `internal`) → its record. Teardown: IPAM closes it, firewall rules, the bridge, the IPAM
//!   registration, the record. A network with endpoints (of any process) refuses
//!   [`Network::remove`] ([`Error::NetworkInUse`]) and stays up for them.
//! * Endpoint: addresses from IPAM → one `RTM_NEWLINK` creating the veth pair with its host end
//!   on the bridge (up, MTU) and its peer created directly inside the sandbox as `eth0` →
//!   on the sandbox's own netlink socket: addresses, up, default routes → published ports.
//! * Sandbox teardown: published-port rules, then addresses back to IPAM (not those of an
//!   endpoint whose rules could not be removed), then the namespace handle is closed (a
//!   persisted name unmounted). The kernel deletes the sandbox's links when its namespace
//!   dies, asynchronously, so teardown returns without waiting for it.
//!
//! # Hosts with other firewalls
//!
//! An accept in nook's table cannot override a drop in another table on the same hook, so on a
//! Docker host (iptables-nft's `FORWARD` policy `DROP`) or behind any default-drop forward
//! policy, a network's forwarded traffic would be dropped. nook marks the forwarded packets it
//! accepts ([`firewall::FORWARD_MARK`]) and, when it sets a network up, adds per-network rules
//! accepting them where the owner of the dropping table offers a place (Docker's
//! `DOCKER-USER`, iptables-nft's `FORWARD`; removed by handle at teardown, so the foreign
//! ruleset comes back byte for byte). Where there is none (firewalld, any other table),
//! [`Network::create`] still succeeds and [`Network::diagnostics`] returns a
//! [`firewall::FirewallConflict`] per blocking chain, naming the table, the chain and the rule
//! the admin has to add. Nothing is loosened for traffic that is not nook's. Details in
//! [`firewall`].
//!
//! # Errors
//!
//! One shape, the same in every nook crate: [`Error`] (and each layer's own error,
//! [`netlink::NetlinkError`], [`ipam::IpamError`], [`firewall::FirewallError`],
//! [`files::FilesError`]) has `Invalid(ValidationError)` for bad input — every `validate()`
//! returns a [`ValidationError`] naming the field and the value, with the broken rule typed
//! ([`NameRule`], [`AddressRule`], [`MacRule`]) — and `Sys { call, path, source }` for a failed
//! system call or file operation; [`Error::Cleanup`] when undoing a failed step failed too,
//! [`Error::Teardown`] for every failure of a removal. A lower layer's validation error
//! becomes [`Error::Invalid`], whichever layer found it; [`Error::raw_os_error`] finds the OS
//! error through every layer.
//!
//! # Costs
//!
//! On the development machine (kernel 6.18, 2 vCPUs; noisy). The first rows are criterion
//! medians of `cargo bench --bench main -- netmodel` (release build, IPAM on a tmpfs; see
//! `BENCHMARKS.md` in the repository); the others were measured by hand while choosing the
//! teardown strategy.
//!
//! | operation | median |
//! |---|---|
//! | [`Sandbox::connect`], bridge, no port (IPAM, veth, address, up, route) | 0.78 ms |
//! | [`Sandbox::remove`], one endpoint, no port | 0.07 ms |
//! | [`Sandbox::none`] + connect + remove | 2.0 ms (`ip -batch`: 6.3 ms) |
//! | an anonymous network namespace, made and dropped | 0.59 ms |
//! | create a veth pair | 0.6 ms |
//! | delete a veth pair (`RTM_DELLINK`, synchronous) | 19–23 ms |
//! | move a link into a fresh namespace and drop it | 39 ms |
//! | set a link down + delete it on a background thread (caller's share) | 0.11 ms |
//! | [`Sandbox::disconnect`] | 1.1 ms |
//! | [`Sandbox::connect`] / [`Sandbox::remove`] with one published port | 1.4 / 12 ms (`nft -j` backend: 12 / 21 ms) |
//! | [`Network::create`] / [`Network::remove`] (bridge) | 0.93 / 13 ms (before: `nft -j`, bridge deleted in line: 14 / 66 ms) |
//! | [`Network::open`] + [`Network::release`] (not the last user; record on tmpfs) | 0.14 ms |
//! | IPAM allocation, state dir on disk (fsync) / on tmpfs | 0.64 / 0.04 ms |
//!
//! Deleting a link waits for RCU grace periods in the kernel, and moving one to another
//! namespace waits as long, so nothing on a sandbox's teardown path deletes links
//! synchronously: its links die with its namespace (the kernel's cleanup worker deletes them
//! in one batch, off the caller's path), and [`Sandbox::disconnect`] sets the link down at
//! once (its routes go, its addresses become unreachable) and deletes it on a background
//! thread. Published ports are different: their rules must be gone before the address goes
//! back to IPAM (or a new sandbox given the address would receive the old sandbox's traffic),
//! so a sandbox with ports waits for the kernel's rule deletion (10–20 ms on the benchmark
//! machine, whoever sends it). [`Network::remove`] sets the bridge down and renames it
//! (`nkgoneINDEX`: its name is free for the next network at once), then deletes it on a
//! background thread, which the process waits for when it exits (`main` returning or
//! `std::process::exit`: [`nook_ns::background`]); a process killed first leaves it down under
//! that name until the next `Network::remove` in that namespace deletes it. (The
//! published-port and network rows were measured on a busy machine: `BENCHMARKS.md`,
//! `netfw`.)

//! # Kernel interfaces
//!
//! All kernel work is rtnetlink ([`netlink`]), synchronous, through `netlink-packet-route` —
//! never by running `ip`. Firewall rules go to nf_tables over netlink too
//! ([`firewall::NftNetlink`], the default; `nft -j list ruleset` is run only to read other
//! software's forward chains when there are some), or through `nft -j`
//! ([`firewall::Nftables`]): the same rules, behind the [`firewall::FirewallBackend`] trait.
//!
//! # Example
//!
//! A bridge network, two sandboxes, one of them publishing a port:
//!
//! ```no_run
//! use nook_netmodel::firewall::PortMapping;
//! use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
//!
//! let host = Host::current()?;
//! let mut spec = NetworkSpec::bridge("nk-demo".parse()?);
//! spec.subnet("10.77.0.0/24".parse().unwrap(), None);
//! let network = Network::create(&host, &spec)?;
//!
//! let mut web = Sandbox::none("web")?;
//! let mut opts = EndpointOptions::new();
//! opts.port(PortMapping::tcp(8080, 80));
//! let endpoint = web.connect(&network, &opts)?;
//! println!("web is {} on {}", endpoint.addresses[0], endpoint.ifname);
//!
//! let mut client = Sandbox::none("client")?;
//! client.connect(&network, &EndpointOptions::new())?;
//! // /etc/hosts for the client: itself, and `web` (its peer on the network).
//! let hosts = client.hosts_file()?;
//! let resolv = client.resolv_conf(None)?;
//! # let _ = (hosts, resolv);
//!
//! // Run a server in `web` (sockets made inside `run` belong to the sandbox).
//! let listener = web.run(|| std::net::TcpListener::bind("0.0.0.0:80"))?.unwrap();
//! # drop(listener);
//!
//! client.remove()?;
//! web.remove()?;
//! network.remove()?;
//! # Ok::<(), nook_netmodel::Error>(())
//! ```

// Every system call goes through rustix or netlink: this crate has no unsafe code.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod checked_name;
pub mod dns;
pub mod driver;
pub mod egress;
mod endpoint;
mod error;
pub mod files;
pub mod firewall;
mod host;
mod ifname;
pub mod ipam;
mod mode;
mod name;
pub mod netlink;
mod network;
mod registry;
mod sandbox;
mod spec;
pub mod usernet;
mod util;
mod validation;

pub use driver::{Driver, EndpointConfig, EndpointLink, NetworkDriver, OverlayEntries, RemoteEndpoint};
pub use egress::{EgressPolicy, EgressRule};
pub use endpoint::{Endpoint, EndpointOptions};
pub use error::{Error, Result};
pub use host::{Host, HostBuilder};
pub use ifname::{IfName, MAX_IFNAME};
pub use mode::{NetworkMode, NetworkModeName};
pub use name::NetworkName;
pub use netlink::MacvlanMode;
pub use network::{Network, NetworkEndpoint};
pub use sandbox::{Sandbox, SandboxKind};
pub use spec::{DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET, MAX_MTU, MIN_MTU, MIN_MTU_V6, NetworkSpec};
pub use validation::{AddressRule, MacRule, NameRule, OverlayRule, ValidationError};
