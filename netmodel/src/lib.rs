//! nook-netmodel (in progress).

pub mod driver;
mod endpoint;
mod error;
pub mod files;
pub mod firewall;
mod host;
pub mod ipam;
mod mode;
pub mod netlink;
mod network;
mod sandbox;
mod spec;
mod util;

pub use driver::{EndpointConfig, EndpointLink, NetworkDriver};
pub use endpoint::{Endpoint, EndpointOptions};
pub use error::{Error, Result};
pub use host::{Host, HostBuilder};
pub use mode::{NetworkMode, NetworkModeName};
pub use network::{Network, NetworkEndpoint};
pub use sandbox::{Sandbox, SandboxKind};
pub use spec::{Driver, MAX_MTU, MIN_MTU, MIN_MTU_V6, NetworkSpec};
