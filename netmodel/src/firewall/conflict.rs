//! [`FirewallConflict`]: another table on the forward hook drops a nook network's traffic and
//! nook could not let it through there.

use std::fmt;

/// What in the foreign chain drops packets it does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocker {
    /// The chain's policy is `drop`.
    PolicyDrop,
    /// An unconditional `drop` or `reject` rule (its handle).
    Rule {
        /// The rule's handle in its table.
        handle: u32,
    },
}

/// Who owns the blocking table, as far as nook can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictOwner {
    /// Docker (iptables-nft's `filter` table with `DOCKER-USER`): nook's rules in
    /// `DOCKER-USER` are missing (someone removed them).
    Docker,
    /// iptables-nft's `filter` table: nook's rules in `FORWARD` are missing.
    Iptables,
    /// firewalld (`inet firewalld`): it rewrites its table on reload, so nook writes nothing
    /// there; the bridge belongs in a zone that forwards (e.g. `trusted`).
    Firewalld,
    /// Some other table: nook does not write into it.
    Other,
}

/// A foreign base chain on the forward hook that drops a nook network's traffic, with the rule
/// an admin can add to let it through.
///
/// nook marks every packet it accepts itself ([`super::FORWARD_MARK`], in its own table, before
/// the filter priority), so for any table but firewalld's the fix is one rule accepting that
/// mark — the same for every nook network. A chain that runs before the mark is set (priority
/// -20 or lower) gets by-interface rules for the network's bridge instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FirewallConflict {
    /// The nook network whose traffic is dropped.
    pub network: String,
    /// The table's family (`ip`, `ip6`, `inet`, ...).
    pub family: String,
    /// The table.
    pub table: String,
    /// The base chain that drops.
    pub chain: String,
    /// Its hook (`forward`).
    pub hook: String,
    /// Its priority.
    pub priority: i64,
    /// What drops.
    pub blocker: Blocker,
    /// Who owns the table.
    pub owner: ConflictOwner,
    /// What the admin should run (an `nft` rule accepting nook's mark, or a `firewall-cmd`).
    pub suggested_rule: String,
}

impl fmt::Display for FirewallConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.blocker {
            Blocker::PolicyDrop => "its drop policy".to_owned(),
            Blocker::Rule { handle } => format!("its rule #{handle}"),
        };
        write!(
            f,
            "network {}: chain {} of table {} {} (hook {}, priority {}) drops its forwarded traffic by {what}; to let it through: {}",
            self.network, self.chain, self.family, self.table, self.hook, self.priority, self.suggested_rule
        )
    }
}
