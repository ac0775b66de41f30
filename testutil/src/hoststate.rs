//! The state a test's "host" network namespace starts from, set rather than inherited.
//!
//! A new network namespace is not a blank slate: with `net.core.devconf_inherit_init_net` at
//! 0 (the default) or 1 it copies IPv4's `all`/`default` devconf — `ip_forward`, `rp_filter`,
//! `route_localnet`, … — from the machine's initial namespace (1 copies IPv6's too), and
//! `br_netfilter`'s `bridge-nf-call-*` start at 1 in it wherever that module is loaded. A test
//! that asserts "forwarding starts off" passes on a quiet machine and fails on every Docker or
//! podman host (issue 19). So a test that creates a namespace to play the host calls
//! [`set_host_state`] on a thread inside it before anything else happens there:
//! [`HostState::Quiet`] for ordinary tests, [`HostState::Unfriendly`] to prove their
//! expectations do not depend on it. Both only write inside the calling thread's network
//! namespace (sysctls under `/proc/sys/net` resolve to the namespace of the thread that opens
//! them; `nft` inherits it); no module is loaded.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

/// The state a test "host" namespace is put in before the code under test acts in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// What ordinary tests' expectations start from: forwarding off for both families,
    /// `route_localnet` off, no reverse-path filter, bridged packets not handed to the IP
    /// hooks, IPv6 on, no nftables ruleset.
    Quiet,
    /// A busy container host (Docker and podman turn forwarding on; distributions ship strict
    /// `rp_filter`; `br_netfilter` hands bridged packets to the IP hooks), with someone else's
    /// nftables tables on every hook nook uses ([`FOREIGN_RULESET`]).
    Unfriendly,
}

impl HostState {
    /// [`HostState::Unfriendly`] when `NK_UNFRIENDLY_HOST=1`, else [`HostState::Quiet`]: lets a
    /// whole suite run once on an unfriendly host.
    pub fn from_env() -> HostState {
        if std::env::var_os("NK_UNFRIENDLY_HOST").is_some_and(|v| v == "1") {
            HostState::Unfriendly
        } else {
            HostState::Quiet
        }
    }

    /// The sysctls this state writes (keys relative to `/proc/sys/`, in order: writing
    /// `ip_forward` resets every interface's IPv4 forwarding, so it goes before the
    /// per-interface keys). IPv6 is on in both: dual-stack tests need it, and a machine with
    /// `devconf_inherit_init_net=1` and IPv6 disabled would hand that down.
    pub fn sysctls(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HostState::Quiet => &[
                ("net/ipv6/conf/all/disable_ipv6", "0"),
                ("net/ipv6/conf/default/disable_ipv6", "0"),
                ("net/ipv4/ip_forward", "0"),
                ("net/ipv6/conf/all/forwarding", "0"),
                ("net/ipv6/conf/default/forwarding", "0"),
                ("net/ipv4/conf/all/route_localnet", "0"),
                ("net/ipv4/conf/default/route_localnet", "0"),
                ("net/ipv4/conf/lo/route_localnet", "0"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                ("net/ipv4/conf/lo/rp_filter", "0"),
            ],
            HostState::Unfriendly => &[
                ("net/ipv6/conf/all/disable_ipv6", "0"),
                ("net/ipv6/conf/default/disable_ipv6", "0"),
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv6/conf/all/forwarding", "1"),
                ("net/ipv6/conf/default/forwarding", "1"),
                ("net/ipv4/conf/all/rp_filter", "1"),
                ("net/ipv4/conf/default/rp_filter", "1"),
                ("net/ipv4/conf/lo/rp_filter", "1"),
            ],
        }
    }

    /// The value of `br_netfilter`'s `bridge-nf-call-*` switches (where the module is loaded).
    fn bridge_nf(self) -> &'static str {
        match self {
            HostState::Quiet => "0",
            HostState::Unfriendly => "1",
        }
    }
}

/// `br_netfilter`'s switches: present only where the module is loaded.
const BRIDGE_NF: &[&str] = &[
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/bridge/bridge-nf-call-arptables",
];

/// Someone else's tables on the unfriendly host: a base chain on every hook and priority
/// region nook's table uses, accept policies, rules that match none of the tests' packets
/// (TEST-NET-1 and the IPv6 documentation prefix), no counters (tests compare listings).
pub const FOREIGN_RULESET: &str = r#"
table inet nkforeign {
    chain raw-pre { type filter hook prerouting priority raw; policy accept; ip saddr 192.0.2.0/24 drop; }
    chain nat-pre { type nat hook prerouting priority dstnat; policy accept; ip daddr 192.0.2.1 tcp dport 1 dnat ip to 192.0.2.2; }
    chain nat-out { type nat hook output priority -100; policy accept; ip daddr 192.0.2.1 tcp dport 1 dnat ip to 192.0.2.2; }
    chain nat-post { type nat hook postrouting priority srcnat; policy accept; ip saddr 192.0.2.0/24 masquerade; }
    chain forward { type filter hook forward priority filter; policy accept; ct state invalid drop; iifname "nkforeign0" drop; }
    chain input { type filter hook input priority filter; policy accept; iifname "nkforeign0" drop; }
}
table ip nkfilter {
    chain FORWARD { type filter hook forward priority filter; policy accept; ip saddr 192.0.2.0/24 drop; }
}
table ip6 nkfilter6 {
    chain FORWARD { type filter hook forward priority filter; policy accept; ip6 saddr 2001:db8::/32 drop; }
}
"#;

/// The tables [`FOREIGN_RULESET`] makes, as `family name`, sorted.
pub const FOREIGN_TABLES: [&str; 3] = ["inet nkforeign", "ip nkfilter", "ip6 nkfilter6"];

/// Puts the calling thread's network namespace — one the test created, never the machine's —
/// in `state`; panics with the key or `nft`'s error when the kernel refuses. Call it on a
/// thread inside the namespace (e.g. `NetNs::run`) before the code under test acts there.
pub fn set_host_state(state: HostState) {
    let write = |key: &str, value: &str| {
        let path = format!("/proc/sys/{key}");
        fs::write(&path, value).unwrap_or_else(|e| panic!("{key} = {value} in the test netns: {e}"));
        let now = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {key}: {e}"));
        assert_eq!(now.trim(), value, "{key} did not take {value}");
    };
    for (key, value) in state.sysctls() {
        write(key, value);
    }
    for key in BRIDGE_NF {
        if fs::metadata(format!("/proc/sys/{key}")).is_ok() {
            write(key, state.bridge_nf());
        }
    }
    if state == HostState::Unfriendly {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        child.stdin.take().expect("nft stdin").write_all(FOREIGN_RULESET.as_bytes()).expect("write to nft");
        let out = child.wait_with_output().expect("wait for nft");
        assert!(out.status.success(), "foreign ruleset: {}", String::from_utf8_lossy(&out.stderr));
    }
}
