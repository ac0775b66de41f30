//! The redirect of `127.0.0.11:53` to the server's sockets inside a sandbox, as Docker does
//! it: the sockets are bound to `127.0.0.11` on ports the kernel picks, and one nftables
//! table of the sandbox's own namespace (`ip nook_dns`, output hook) DNATs the sandbox's
//! queries to them; conntrack translates the answers back. Port 53 itself stays free, so a
//! process in the sandbox can still bind `0.0.0.0:53` (a DNS server of its own), as in Docker.
//!
//! The table is written over netlink (`crate::firewall::apply_here`, one transaction, no
//! `nft` process) from a thread inside the sandbox's namespace. It dies with the namespace.

use serde_json::{Value, json};

use super::{DNS_PORT, EMBEDDED_DNS};

/// The table's name in the sandbox's namespace.
pub const TABLE: &str = "nook_dns";

/// The ruleset as an nftables JSON batch (pure): UDP and TCP to `127.0.0.11:53` go to `udp`
/// and `tcp` on `127.0.0.11`. `nft list table ip nook_dns` shows it as
/// `ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:PORT` (and the same for TCP) in an
/// `output` chain of type nat at priority -100.
pub(crate) fn ruleset(udp: u16, tcp: u16) -> Value {
    let redirect = |proto: &str, port: u16| {
        json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": "output", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": EMBEDDED_DNS.to_string()}},
            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}},
                       "right": DNS_PORT}},
            {"dnat": {"addr": EMBEDDED_DNS.to_string(), "port": port}},
        ]}}})
    };
    json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": TABLE}}},
        {"add": {"chain": {"family": "ip", "table": TABLE, "name": "output", "type": "nat",
                           "hook": "output", "prio": -100, "policy": "accept"}}},
        // Written again (sockets bound for a connect that then failed): the old redirect goes.
        {"flush": {"chain": {"family": "ip", "table": TABLE, "name": "output"}}},
        redirect("udp", udp),
        redirect("tcp", tcp),
    ]})
}

/// Writes [`ruleset`]. Runs on a thread that is inside the sandbox's network namespace.
pub(crate) fn install(udp: u16, tcp: u16) -> std::io::Result<()> {
    crate::firewall::apply_here(&ruleset(udp, tcp))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ruleset_redirects_both_protocols() {
        let r = super::ruleset(40001, 40002).to_string();
        assert!(r.contains(r#"{"dnat":{"addr":"127.0.0.11","port":40001}}"#), "{r}");
        assert!(r.contains(r#"{"dnat":{"addr":"127.0.0.11","port":40002}}"#), "{r}");
        assert!(r.contains(r#""hook":"output""#) && r.contains(r#""name":"nook_dns""#), "{r}");
        // The netlink encoder understands every expression of it.
        crate::firewall::encodes(&super::ruleset(40001, 40002));
    }
}
