//! nook-netmodel (in progress).

pub mod files;
pub mod firewall;
pub mod ipam;
pub mod netlink;
