//! Reading the ruleset back over netlink: every chain (with hook, type, priority and policy
//! for base chains), and the rules of nook's table (handle, comment, jump target, DNAT
//! address) — what [`TableState`] holds.

use std::net::IpAddr;

use super::conn::{Conn, Frame, NlError};
use super::encode::{
    CHAIN_HOOK, CHAIN_NAME, CHAIN_POLICY, CHAIN_TABLE, CHAIN_TYPE, DATA_VALUE, DATA_VERDICT, EXPR_DATA, EXPR_NAME,
    GETCHAIN, GETRULE, HOOK_HOOKNUM, HOOK_PRIORITY, IMMEDIATE_DATA, IMMEDIATE_DREG, LIST_ELEM, NAT_DNAT, NAT_TYPE,
    RULE_CHAIN, RULE_EXPRESSIONS, RULE_HANDLE, RULE_TABLE, RULE_USERDATA, UDATA_COMMENT, VERDICT_CHAIN, family_code,
};
use super::wire::{attr, attrs, be32, be64, text};
use crate::firewall::foreign::{BaseInfo, Chain};
use crate::firewall::state::{ListedRule, TableState};

fn family_name(code: u8) -> &'static str {
    match code {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

fn hook_name(num: u32) -> &'static str {
    match num {
        0 => "prerouting",
        1 => "input",
        2 => "forward",
        3 => "output",
        4 => "postrouting",
        5 => "ingress",
        _ => "unknown",
    }
}

/// Every chain of every table in the namespace.
pub(crate) fn chains(conn: &mut Conn) -> Result<Vec<Chain>, NlError> {
    let mut out = Vec::new();
    conn.dump(
        "dump chains",
        GETCHAIN,
        0,
        |_| {},
        |f| {
            out.push(chain(&f));
            Ok(())
        },
    )?;
    Ok(out)
}

fn chain(f: &Frame<'_>) -> Chain {
    let get = |k| attr(f.attrs, k).map(text).unwrap_or_default();
    let base = attr(f.attrs, CHAIN_HOOK).map(|hook| {
        let prio = attr(hook, HOOK_PRIORITY).and_then(be32).map_or(0, |p| i64::from(p as i32));
        BaseInfo {
            kind: get(CHAIN_TYPE),
            hook: hook_name(attr(hook, HOOK_HOOKNUM).and_then(be32).unwrap_or(u32::MAX)).to_owned(),
            prio,
            policy: match attr(f.attrs, CHAIN_POLICY).and_then(be32) {
                Some(0) => "drop".to_owned(),
                _ => "accept".to_owned(),
            },
        }
    });
    Chain { family: family_name(f.family).to_owned(), table: get(CHAIN_TABLE), name: get(CHAIN_NAME), base }
}

/// Table `family table` as [`TableState`]: `chains` is the namespace's chain list
/// ([`chains`]); the rules are dumped (filtered by the kernel to that table).
pub(crate) fn table(conn: &mut Conn, chains: &[Chain], family: &str, table: &str) -> Result<TableState, NlError> {
    let mut state = TableState::default();
    for c in chains.iter().filter(|c| c.family == family && c.table == table) {
        state.exists = true;
        state.chains.insert(c.name.clone());
    }
    if !state.exists {
        return Ok(state);
    }
    let code = family_code(family).unwrap_or(0);
    conn.dump(
        "dump rules",
        GETRULE,
        code,
        |w| w.put_str(RULE_TABLE, table),
        |f| {
            if attr(f.attrs, RULE_TABLE).map(text).as_deref() == Some(table) {
                state.rules.push(rule(f.attrs).ok_or_else(|| NlError::invalid("dump rules", "rule without handle"))?);
            }
            Ok(())
        },
    )?;
    Ok(state)
}

fn rule(a: &[u8]) -> Option<ListedRule> {
    let chain = attr(a, RULE_CHAIN).map(text)?;
    let handle = u32::try_from(attr(a, RULE_HANDLE).and_then(be64)?).ok()?;
    let comment = attr(a, RULE_USERDATA).and_then(comment);
    let (mut jump, mut dnat, mut value) = (None, None, None);
    for (_, elem) in attrs(attr(a, RULE_EXPRESSIONS).unwrap_or_default()).filter(|(k, _)| *k == LIST_ELEM) {
        let name = attr(elem, EXPR_NAME).map(text).unwrap_or_default();
        let data = attr(elem, EXPR_DATA).unwrap_or_default();
        match name.as_str() {
            "immediate" => {
                let Some(d) = attr(data, IMMEDIATE_DATA) else { continue };
                if let Some(v) = attr(d, DATA_VERDICT) {
                    jump = jump.or_else(|| attr(v, VERDICT_CHAIN).map(text));
                } else if attr(data, IMMEDIATE_DREG).and_then(be32) == Some(1) {
                    value = attr(d, DATA_VALUE).and_then(ip_of);
                }
            }
            "nat" if attr(data, NAT_TYPE).and_then(be32) == Some(NAT_DNAT) => dnat = value,
            _ => {}
        }
    }
    Some(ListedRule { chain, handle, comment, jump, dnat })
}

/// The comment in a rule's userdata (TLVs of type, length, value).
fn comment(mut udata: &[u8]) -> Option<String> {
    while let [kind, len, rest @ ..] = udata {
        let len = usize::from(*len);
        let value = rest.get(..len)?;
        if *kind == UDATA_COMMENT {
            return Some(text(value));
        }
        udata = &rest[len..];
    }
    None
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_in_userdata() {
        assert_eq!(comment(b"\x01\x02ab\x00\x05nook\x00").as_deref(), Some("nook"));
        assert_eq!(comment(b"\x01\x09ab"), None);
        assert_eq!(comment(b""), None);
        assert_eq!(ip_of(&[10, 0, 0, 1]), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(ip_of(&[1, 2]), None);
    }
}
