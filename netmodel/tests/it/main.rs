//! nook-netmodel's integration tests, one binary (`cargo test -p nook-netmodel --test it`; one
//! link instead of one per file). Every test works inside network namespaces it creates and
//! checks it left nothing behind; they need root (`NOOK_REQUIRE_PRIV=1` turns a skip into a
//! failure).
//!
//! - [`cnm`]: the Container Network Model (networks, sandboxes, endpoints, modes, ports) with
//!   real packets, on the [`common::World`] fixture;
//! - [`custom_driver`]: a driver of one's own through `NetworkDriver`;
//! - [`dns`]: the embedded DNS server of user-defined networks (`127.0.0.11`);
//! - [`egress`]: fail-closed egress policies (allowed CIDRs, ports and names; attacks from
//!   inside the sandbox);
//! - [`firewall`]: the nftables backend and the real `nft`;
//! - [`foreign_firewall`]: nook networks on hosts whose other firewalls drop forwarded
//!   traffic (Docker, iptables-nft, another table's drop policy, firewalld);
//! - [`ipam`]: processes sharing an IPAM state directory (re-executes this binary as workers);
//! - [`netlink`]: the rtnetlink layer;
//! - [`overlay`]: overlay (VXLAN) networks across "hosts" (namespaces joined by an underlay
//!   bridge);
//! - [`shared`]: networks shared between processes (open, release, leave) and automatic
//!   subnets (re-executes this binary as workers);
//! - [`unfriendly`]: the firewall and CNM expectations again, on a host namespace that starts
//!   the way a busy container host does (forwarding on, strict `rp_filter`, foreign nftables
//!   tables). Every other test's host namespace starts quiet, set by the test rather than
//!   inherited from the machine ([`common::prepare_host`]).

mod cnm;
mod common;
mod custom_driver;
mod dns;
mod egress;
mod firewall;
mod foreign_firewall;
mod ipam;
mod netlink;
mod nftnl;
mod overlay;
mod shared;
mod unfriendly;
