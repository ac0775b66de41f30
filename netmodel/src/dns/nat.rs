//! The redirect of `127.0.0.11:53` to the server's sockets inside a sandbox, as Docker does
//! it: the sockets are bound to `127.0.0.11` on ports the kernel picks, and one nftables
//! table of the sandbox's own namespace (`ip nook_dns`, output hook) DNATs the sandbox's
//! queries to them; conntrack translates the answers back. Port 53 itself stays free, so a
//! process in the sandbox can still bind `0.0.0.0:53` (a DNS server of its own), as in Docker.
//!
//! The table is loaded with `nft -f -` run from a thread inside the sandbox's namespace (the
//! `nft` process inherits it). It dies with the namespace.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{DNS_PORT, EMBEDDED_DNS};

/// The table's name in the sandbox's namespace.
pub const TABLE: &str = "nook_dns";

/// Where `nft` is looked for when `PATH` lacks it.
const NFT_FALLBACKS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/local/sbin/nft"];

/// The ruleset (pure): UDP and TCP to `127.0.0.11:53` go to `udp` and `tcp` on `127.0.0.11`.
pub(crate) fn ruleset(udp: u16, tcp: u16) -> String {
    format!(
        "table ip {TABLE} {{\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr {EMBEDDED_DNS} udp dport {DNS_PORT} dnat to {EMBEDDED_DNS}:{udp}\n\
         \t\tip daddr {EMBEDDED_DNS} tcp dport {DNS_PORT} dnat to {EMBEDDED_DNS}:{tcp}\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads [`ruleset`] with `nft -f -`. Runs on a thread that is inside the sandbox's network
/// namespace (the child inherits the thread's namespaces).
pub(crate) fn install(udp: u16, tcp: u16) -> std::io::Result<()> {
    let mut child = Command::new(nft_program())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(ruleset(udp, tcp).as_bytes()));
    let out = child.wait_with_output()?;
    written.transpose()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(std::io::Error::other(format!("nft -f - ({}): {}", out.status, stderr.trim())));
    }
    Ok(())
}

fn nft_program() -> PathBuf {
    let on_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("nft")).collect::<Vec<_>>());
    on_path
        .unwrap_or_default()
        .into_iter()
        .chain(NFT_FALLBACKS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nft"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ruleset_redirects_both_protocols() {
        let r = super::ruleset(40001, 40002);
        assert!(r.contains("udp dport 53 dnat to 127.0.0.11:40001"), "{r}");
        assert!(r.contains("tcp dport 53 dnat to 127.0.0.11:40002"), "{r}");
        assert!(r.starts_with("table ip nook_dns {"), "{r}");
    }
}
