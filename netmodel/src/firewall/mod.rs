//! NAT and published ports through nftables: one table for nook, chains per network.
//!
//! API CONTRACT (frozen for the other modules; helper C fills the bodies and may add items).

use std::net::IpAddr;

use ipnet::IpNet;
use nook_ns::NsFd;

/// A firewall failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// Placeholder: helper C replaces this with real variants (BadPort, Nft { .. }, ...).
    #[error("firewall: {0}")]
    Todo(String),
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// `docker run -p [host_ip:]host_port:container_port[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Only on this host address (`None`: every address of the host).
    pub host_ip: Option<IpAddr>,
    /// Port on the host (1-65535).
    pub host_port: u16,
    /// Port in the sandbox (1-65535).
    pub container_port: u16,
}

impl PortMapping {
    /// Validates the ports (0 is refused).
    pub fn validate(&self) -> Result<(), FirewallError> {
        todo!()
    }
}

/// The rules one network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// Network name (chains are named after it).
    pub network: String,
    /// Bridge interface name in the host namespace.
    pub bridge: String,
    /// The network's subnets.
    pub subnets: Vec<IpNet>,
    /// Internal: no outbound NAT, no forwarding to or from outside.
    pub internal: bool,
}

/// One published port of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// The mapping as asked.
    pub mapping: PortMapping,
    /// The endpoint's address in the sandbox.
    pub container_ip: IpAddr,
}

/// Where firewall rules go. nftables is the built-in backend; the trait lets a user plug in
/// another (or a no-op one for `internal`-only setups).
pub trait FirewallBackend: Send + Sync + std::fmt::Debug {
    /// Creates the network's chains: masquerade of its subnets leaving through other
    /// interfaces (unless internal), forwarding accepted (unless internal); enables
    /// `ip_forward` when needed.
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError>;
    /// Removes the network's chains (and the table when it is empty).
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError>;
    /// Publishes ports of one endpoint (`endpoint` is a unique id used to remove them).
    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError>;
    /// Removes the ports published for `endpoint`.
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError>;
}

/// The nftables backend (drives `nft -j`), acting in one network namespace.
#[derive(Debug)]
pub struct Nftables {
    _private: (),
}

impl Nftables {
    /// A backend acting in `netns` (`None`: the caller's network namespace).
    pub fn new(netns: Option<&NsFd>) -> Result<Nftables, FirewallError> {
        let _ = netns;
        todo!()
    }
}

impl FirewallBackend for Nftables {
    fn setup_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        let _ = rules;
        todo!()
    }
    fn teardown_network(&self, network: &str) -> Result<(), FirewallError> {
        let _ = network;
        todo!()
    }
    fn add_ports(&self, network: &str, endpoint: &str, ports: &[PortRule]) -> Result<(), FirewallError> {
        let _ = (network, endpoint, ports);
        todo!()
    }
    fn remove_ports(&self, network: &str, endpoint: &str) -> Result<(), FirewallError> {
        let _ = (network, endpoint);
        todo!()
    }
}
