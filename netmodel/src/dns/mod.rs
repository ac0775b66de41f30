//! The embedded DNS server of user-defined networks, as Docker's `127.0.0.11`.
//!
//! A sandbox connected to a user-defined network (every network but the default one,
//! [`NetworkSpec::lists_peers`](crate::NetworkSpec::lists_peers), as with Docker: the default
//! bridge has no embedded DNS) gets a resolver at [`EMBEDDED_DNS`] port 53, UDP and TCP,
//! inside its own network namespace, and its [`resolv_conf`](crate::Sandbox::resolv_conf)
//! names only that server (with the host's `search` and `options`). As in Docker, the
//! server's sockets are bound to `127.0.0.11` on ports the kernel picks and a small nftables
//! table of the sandbox's namespace redirects port 53 to them ([`nat`]), so port 53 stays free
//! for the sandbox's own processes.
//!
//! # What it answers
//!
//! * The names of the sandboxes on the networks the sandbox is connected to, their aliases,
//!   and `NAME.NETWORK` (case-insensitive): `A` for their IPv4 addresses, `AAAA` for their IPv6
//!   ones (`ANY` both), TTL [`TTL`] seconds, as Docker's. A known name without an address of
//!   the asked family gets an empty `NOERROR` answer, not `NXDOMAIN`. The lookup is made
//!   when the query comes, on the networks' live endpoint lists: a connect or disconnect is
//!   seen by the next query. `PTR` queries for their addresses are answered with
//!   `NAME.NETWORK` (Docker's form); other `PTR` queries are forwarded.
//! * Only this process's sandboxes: a network shared between processes
//!   ([`Network::open`](crate::Network::open)) has endpoints of other processes that this
//!   process's server does not know (the network's record lists users, not endpoints; as for
//!   `/etc/hosts`). Their names are forwarded like any other.
//! * Every other name is forwarded, as it is, to the host's resolvers: the `nameserver` lines
//!   of the host's `resolv.conf` ([`HostBuilder::resolv_conf`](crate::HostBuilder::resolv_conf),
//!   default [`files::RESOLV_CONF`](crate::files::RESOLV_CONF)), read when the server starts;
//!   Docker's public fallback [`files::DEFAULT_NAMESERVERS`](crate::files::DEFAULT_NAMESERVERS)
//!   when it names none. The forwarding socket lives in the [`Host`](crate::Host)'s network
//!   namespace, not in the sandbox's, so loopback resolvers of the host (systemd-resolved's
//!   `127.0.0.53`, a local dnsmasq) work, as they do with Docker (which forwards those from the
//!   host namespace too). A sandbox given its own name servers
//!   ([`Sandbox::resolv_conf`](crate::Sandbox::resolv_conf) with a configuration, Docker's
//!   `--dns`) has its other names forwarded to those instead (also from the host's
//!   namespace). Each upstream is tried for [`UPSTREAM_TIMEOUT`], then the next; when
//!   all fail the client gets `SERVFAIL`.
//!
//! # Under an egress policy
//!
//! A sandbox with an [`EgressPolicy`](crate::EgressPolicy) gets answers only for the names
//! the policy allows; every other query (reverse lookups too) is answered `REFUSED`. The
//! addresses in an allowed answer — its own sandboxes' or an upstream's, through `CNAME`s —
//! are added to the sandbox's allow sets in the host's firewall, each for its TTL, *before*
//! the answer is sent; if that fails the client gets `SERVFAIL` instead (see
//! [`crate::egress`]).
//!
//! # How it runs
//!
//! No daemon: one thread per [`Host`](crate::Host) handle (shared by its clones), started when
//! the first sandbox registers and stopped (joined, every socket closed) when the last one
//! goes. The thread lives in the host's network namespace; each sandbox's two sockets are made
//! inside the sandbox's namespace, on ports the kernel picks, by a short-lived helper thread
//! ([`nook_ns::on_thread_in`]; the caller's threads never change namespace) and handed to it.
//! It waits on all of them with `poll(2)`. Unregistering waits until the thread has let go of
//! the sockets, so the sandbox's namespace is not kept alive by them.
//!
//! Messages are parsed and built with `hickory-proto`; the loop is this module's. A TCP
//! client is served one message per connection and gets [`TCP_TIMEOUT`] to send it; its
//! socket waits in the same `poll` as the others, so a client that stalls delays nobody
//! (at most 256 wait at once, the oldest dropped first).

mod message;
pub mod nat;
mod responder;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub(crate) use responder::{Bound, DnsHub, Registration};

/// The address of the embedded server inside each sandbox (Docker's).
pub const EMBEDDED_DNS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// The TTL of the answers for sandbox names (Docker's: 600 s).
pub const TTL: u32 = 600;

/// How long an upstream resolver is given before the next one is asked.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TCP client has to send its query.
pub const TCP_TIMEOUT: Duration = Duration::from_millis(500);

/// Names the server answers itself (the sandbox's view of its networks).
pub(crate) trait Zone: Send + Sync {
    /// The addresses of `name` (lower case, no trailing dot), or `None` when the name is not
    /// one of the zone's (then it is forwarded).
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;

    /// The names of `ip` (for `PTR` queries), or `None` when the address is not one of the
    /// zone's (then the query is forwarded).
    fn reverse(&self, ip: IpAddr) -> Option<Vec<String>> {
        let _ = ip;
        None
    }

    /// The resolvers other names go to for this zone, when not the host's (Docker's `--dns`).
    fn upstreams(&self) -> Option<Vec<IpAddr>> {
        None
    }

    /// Whether the sandbox has an egress policy ([`crate::egress`]): then only its allowed
    /// names are answered, and their addresses allowed before the answer goes out.
    fn policed(&self) -> bool {
        false
    }

    /// Whether the policy allows resolving `name` (always, without a policy).
    fn allows_name(&self, name: &str) -> bool {
        let _ = name;
        true
    }

    /// Lets the sandbox reach `addresses` (an allowed answer's), each for its TTL; `false`
    /// when that failed (the answer is then not given: fail closed).
    fn allow_answered(&self, addresses: &[(IpAddr, Duration)]) -> bool {
        let _ = addresses;
        true
    }
}
