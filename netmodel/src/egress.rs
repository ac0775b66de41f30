//! Fail-closed egress: what a sandbox may reach, enforced in the host's firewall.
//!
//! An [`EgressPolicy`] lists what a sandbox may send to: destinations (CIDRs, optionally one
//! protocol and a port range, [`EgressRule`]) and domain names ([`EgressPolicy::allow_domain`]).
//! Everything else it sends is rejected — by the firewall of the *host's* network namespace,
//! bound to the sandbox's own bridge port, where no process of the sandbox can reach it,
//! whatever capabilities it has in its own namespaces. Set it with
//! [`Sandbox::set_egress`](crate::Sandbox::set_egress) before connecting (it then applies to
//! every endpoint from the moment its link exists, before the sandbox side is up), or later
//! (it replaces the rules of every connected endpoint at once, in one transaction).
//!
//! # How it is enforced
//!
//! Per endpoint (bridge and overlay networks; a macvlan endpoint has no host-side port and
//! is refused with [`Error::EgressUnsupported`](crate::Error::EgressUnsupported)), in two
//! tables of nook's own (`bridge nook-egress` and `inet nook-egress`, see
//! [`crate::firewall`]):
//!
//! - **At the bridge port** (bridge family, prerouting): frames whose source MAC is not the
//!   endpoint's, IPv4 packets and ARP from another address than its own, IPv6 from another
//!   address than its own or link-local, and every other ether type are dropped: a sandbox
//!   that changes its address or MAC (it may, with `CAP_NET_ADMIN` in its namespace) loses
//!   its network, it does not get another sandbox's policy. What passes is marked
//!   ([`firewall::EGRESS_MARK`](crate::firewall::EGRESS_MARK)); the namespace boundary
//!   clears marks, so only the host sets it.
//! - **Traffic the host routes or receives** (inet family, forward and input hooks): marked
//!   packets from the endpoint's addresses go through its chain: replies of established
//!   connections pass (published ports keep working), then the allowed destinations, then
//!   the addresses the embedded DNS answered for allowed names; everything else is
//!   *rejected* — TCP with a reset, the rest with ICMP port unreachable — so a connect
//!   fails at once with `ECONNREFUSED` instead of hanging. Marked packets from no known
//!   address (link-local IPv6 beyond neighbour discovery) are rejected too.
//! - **Frames to peers on the same bridge** (bridge family, forward hook; they never reach
//!   the IP layer): the same allow list, statelessly, and what is not allowed is dropped
//!   (the bridge cannot reject there). A peer is egress like any other destination: a
//!   policy sandbox reaches a peer only through an allowed CIDR or an allowed name, and
//!   answers a peer's connection only when the peer is allowed.
//!
//! ARP and IPv6 neighbour/router discovery are always let through (with the addresses
//! checked above); nothing else is implicitly allowed: not the gateway, not the host.
//!
//! # Domain names
//!
//! A domain allowed by name needs the embedded DNS ([`crate::dns`], any user-defined
//! network): the sandbox's resolver at `127.0.0.11` then answers only names the policy
//! allows (`example.com` allows that name only, `*.example.com` every name below it, not
//! itself) and refuses every other query (`REFUSED`). The addresses of an allowed answer
//! (its `A` and `AAAA` records, through any `CNAME`s) are added to the endpoint's allow sets
//! *before* the answer is sent, each for its record's TTL (at least one second) — kernel set
//! timeouts, so they expire even if the owning process is gone. Connections opened while
//! an address was allowed go on after it expires (they are established).
//!
//! Fail closed: only the embedded server adds addresses. If it stops (the owning process
//! dies, the sandbox leaves its last user-defined network), nothing new is allowed and the
//! answered addresses expire; a sandbox that asks another resolver directly is refused
//! unless the policy allows that resolver; an address no allowed answer produced is
//! rejected however the sandbox learned it.
//!
//! Not covered: ports per domain (an allowed name's addresses are allowed on every port and
//! protocol), and the host-mode and `container:` kinds (the first has no port to bind a
//! policy to; the second shares the policy of the sandbox it joins).

use std::ops::RangeInclusive;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::firewall::Protocol;
use crate::validation::ValidationError;

/// What a sandbox may reach; everything else is rejected (see the [module docs](self)).
///
/// ```
/// use nook_netmodel::EgressPolicy;
/// use nook_netmodel::firewall::Protocol;
///
/// let mut policy = EgressPolicy::deny_all();
/// policy
///     .allow_domain("crates.io")
///     .allow_domain("*.crates.io")
///     .allow_port("10.1.0.0/16".parse()?, Protocol::Tcp, 5432)
///     .allow_net("192.168.50.7/32".parse()?);
/// policy.validate()?;
/// assert!(policy.allows_name("static.crates.io."));
/// assert!(!policy.allows_name("example.com"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EgressPolicy {
    /// Allowed destinations.
    pub allow: Vec<EgressRule>,
    /// Allowed names: `example.com` (that name) or `*.example.com` (every name below it).
    pub domains: Vec<String>,
}

/// One allowed destination: a subnet, optionally only one protocol and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EgressRule {
    /// The destination subnet (`/32` or `/128` for one address).
    pub net: IpNet,
    /// Only this protocol (`None`: every protocol, ICMP too).
    pub protocol: Option<Protocol>,
    /// Only these destination ports, first to last (needs a protocol; `None`: every port).
    pub ports: Option<(u16, u16)>,
}

impl EgressRule {
    /// Everything to `net`.
    pub fn net(net: IpNet) -> EgressRule {
        EgressRule { net, protocol: None, ports: None }
    }

    /// `protocol` to `net` on the ports of `ports`.
    pub fn ports(net: IpNet, protocol: Protocol, ports: RangeInclusive<u16>) -> EgressRule {
        EgressRule { net, protocol: Some(protocol), ports: Some((*ports.start(), *ports.end())) }
    }

    /// Checks the subnet (no host bits) and the ports.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.net.trunc() != self.net {
            return Err(ValidationError::HostBits { field: "egress net", value: self.net, network: self.net.trunc() });
        }
        if let Some((first, last)) = self.ports
            && (self.protocol.is_none() || first == 0 || first > last)
        {
            return Err(ValidationError::EgressPorts {
                net: self.net,
                first,
                last,
                protocol_given: self.protocol.is_some(),
            });
        }
        Ok(())
    }
}

impl EgressPolicy {
    /// A policy that allows nothing (add to it).
    pub fn deny_all() -> EgressPolicy {
        EgressPolicy::default()
    }

    /// Allows everything to `net`.
    pub fn allow_net(&mut self, net: IpNet) -> &mut Self {
        self.allow.push(EgressRule::net(net));
        self
    }

    /// Allows `protocol` to `net` on port `port`.
    pub fn allow_port(&mut self, net: IpNet, protocol: Protocol, port: u16) -> &mut Self {
        self.allow.push(EgressRule::ports(net, protocol, port..=port));
        self
    }

    /// Allows `protocol` to `net` on the ports of `ports`.
    pub fn allow_ports(&mut self, net: IpNet, protocol: Protocol, ports: RangeInclusive<u16>) -> &mut Self {
        self.allow.push(EgressRule::ports(net, protocol, ports));
        self
    }

    /// Allows a name (`example.com`) or every name below a domain (`*.example.com`), resolved
    /// through the embedded DNS.
    pub fn allow_domain(&mut self, pattern: impl Into<String>) -> &mut Self {
        self.domains.push(pattern.into());
        self
    }

    /// Checks every rule and domain pattern (letters, digits, `-` in dot-separated labels, an
    /// optional leading `*.`, an optional trailing dot).
    pub fn validate(&self) -> Result<(), ValidationError> {
        for rule in &self.allow {
            rule.validate()?;
        }
        for pattern in &self.domains {
            let body = pattern.strip_prefix("*.").unwrap_or(pattern);
            crate::files::check_name(body, true).map_err(|rule| ValidationError::Name {
                field: "egress domain",
                value: pattern.clone(),
                rule,
            })?;
        }
        Ok(())
    }

    /// Whether `name` (any case, trailing dot or not) is allowed by a domain pattern.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.domains.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.');
            match pattern.strip_prefix("*.") {
                Some(suffix) => {
                    name.len() > suffix.len() + 1
                        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                }
                None => name.eq_ignore_ascii_case(pattern),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_below_a_wildcard() {
        let mut p = EgressPolicy::deny_all();
        p.allow_domain("Example.com").allow_domain("*.crates.io.");
        assert!(p.allows_name("example.COM."));
        assert!(!p.allows_name("www.example.com"));
        assert!(!p.allows_name("badexample.com"));
        assert!(p.allows_name("static.crates.io"));
        assert!(p.allows_name("a.b.crates.io"));
        assert!(!p.allows_name("crates.io"), "a wildcard does not cover the domain itself");
        assert!(!p.allows_name("evilcrates.io"));
        assert!(!p.allows_name("io"));
        assert!(!EgressPolicy::deny_all().allows_name("example.com"));
    }

    #[test]
    fn bad_rules_and_patterns_are_refused() {
        let host_bits = EgressRule::net("10.0.0.1/8".parse().unwrap());
        assert!(matches!(host_bits.validate(), Err(ValidationError::HostBits { field: "egress net", .. })));
        let empty =
            EgressRule { net: "10.0.0.0/8".parse().unwrap(), protocol: Some(Protocol::Tcp), ports: Some((90, 80)) };
        assert!(matches!(empty.validate(), Err(ValidationError::EgressPorts { protocol_given: true, .. })));
        let zero = EgressRule::ports("10.0.0.0/8".parse().unwrap(), Protocol::Udp, 0..=53);
        assert!(zero.validate().is_err());
        let no_proto = EgressRule { net: "::/0".parse().unwrap(), protocol: None, ports: Some((1, 2)) };
        assert!(matches!(no_proto.validate(), Err(ValidationError::EgressPorts { protocol_given: false, .. })));
        for bad in ["", "*.", "a..b", "exa mple.com", "-a.com", "*.*.a.com", "a.*.com", "10.0.0.1"] {
            let mut p = EgressPolicy::deny_all();
            p.allow_domain(bad);
            assert!(matches!(p.validate(), Err(ValidationError::Name { field: "egress domain", .. })), "{bad:?}");
        }
        let mut ok = EgressPolicy::deny_all();
        ok.allow_domain("*.example.com").allow_domain("a-b.c.").allow_port("::/0".parse().unwrap(), Protocol::Tcp, 443);
        ok.validate().unwrap();
    }

    #[test]
    fn serde_round_trip() {
        let mut p = EgressPolicy::deny_all();
        p.allow_domain("x.org").allow_ports("10.0.0.0/8".parse().unwrap(), Protocol::Udp, 53..=53);
        let back: EgressPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
