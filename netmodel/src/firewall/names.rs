//! Name checks of the firewall: network names, endpoint ids and table names go into chain
//! names and rule comments; a bridge name is an interface name.

use crate::ifname::IfName;

use super::{FirewallError, MAX_ENDPOINT_LEN, MAX_NETWORK_LEN, MAX_TABLE_LEN};

fn bad_name(what: &'static str, value: &str, reason: &'static str) -> FirewallError {
    FirewallError::InvalidName { what, value: value.to_owned(), reason }
}

pub(super) fn validate_network(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("network", name, reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NETWORK_LEN {
        return bad("longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return bad("only letters, digits, `_`, `.` and `-` are allowed");
    }
    Ok(())
}

pub(super) fn validate_endpoint(id: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("endpoint", id, reason));
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ENDPOINT_LEN {
        return bad("longer than 64 bytes");
    }
    if !id.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
        return bad("only printable ASCII without spaces, `\"` and `\\` is allowed");
    }
    Ok(())
}

pub(super) fn validate_table(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| Err(bad_name("table", name, reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TABLE_LEN {
        return bad("longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("must start with a letter");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return bad("only letters, digits, `_` and `-` are allowed");
    }
    Ok(())
}

/// The crate's rules for interface names ([`IfName`]).
pub(super) fn validate_ifname(name: &str) -> Result<(), FirewallError> {
    IfName::check(name).map_err(|reason| bad_name("bridge", name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_network("web").is_ok());
        assert!(validate_network("my_net.1-x").is_ok());
        assert!(validate_network(&"n".repeat(64)).is_ok());
        for bad in ["", "-x", ".x", "a b", "a/b", "é", &"n".repeat(65)] {
            assert!(
                matches!(validate_network(bad), Err(FirewallError::InvalidName { what: "network", .. })),
                "{bad:?}"
            );
        }
        assert!(validate_endpoint("3f2a:eth0/1").is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", &"e".repeat(65)] {
            assert!(validate_endpoint(bad).is_err(), "{bad:?}");
        }
        assert!(validate_table("nook").is_ok() && validate_table("nk-test_1").is_ok());
        for bad in ["", "1a", "a.b", "a b"] {
            assert!(validate_table(bad).is_err(), "{bad:?}");
        }
        assert!(validate_ifname("br-0.1").is_ok());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
