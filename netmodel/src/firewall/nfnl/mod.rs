//! nf_tables over netlink (`NETLINK_NETFILTER`), for the [`super::NftNetlink`] backend: no
//! `nft` process.
//!
//! - [`encode`] translates the backend's JSON batches (the same ones the `nft -j` backend
//!   feeds `nft`, built by `render`) into nf_tables requests, expression by expression as
//!   `nft` compiles them — so the kernel holds the same bytecode whichever backend wrote a
//!   rule, `nft list ruleset` shows it the same way, and either backend can read and remove
//!   what the other wrote.
//! - [`conn`] sends a batch as one transaction (`NFNL_MSG_BATCH_BEGIN` ... `END`: all of it
//!   or nothing) and dumps chains and rules.
//! - [`decode`] reads every chain of the namespace (one dump) and the rules of nook's table
//!   (a second dump, filtered by the kernel) back into the backend's `TableState`.
//!
//! The socket is opened by the operation's thread, which entered the backend's network
//! namespace: it acts there for its whole life.

pub(crate) mod conn;
pub(crate) mod decode;
pub(crate) mod encode;
mod wire;

pub(crate) use conn::{Conn, NlError};

use super::foreign::Chain;

/// Whether a table other than `inet OWN` (and its egress table) has a filter chain on the forward hook (in the
/// `ip`, `ip6` or `inet` family): then the whole ruleset is needed (its rules too, see
/// `foreign`), and the backend reads it with `nft -j list ruleset`.
pub(crate) fn foreign_forward(chains: &[Chain], own: &str) -> bool {
    chains.iter().any(|c| {
        matches!(c.family.as_str(), "ip" | "ip6" | "inet")
            && !super::is_own_table(&c.family, &c.table, own)
            && c.base.as_ref().is_some_and(|b| b.hook == "forward" && b.kind == "filter")
    })
}
