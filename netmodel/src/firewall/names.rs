//! Name checks of the firewall: network names, endpoint ids and table names go into chain
//! names and rule comments; a bridge name is an interface name.

use super::{MAX_ENDPOINT_LEN, MAX_TABLE_LEN};
use crate::ifname::IfName;
use crate::name::NetworkName;
use crate::validation::{NameRule, ValidationError};

/// The crate's rules for network names ([`NetworkName`]).
pub(super) fn validate_network(name: &str) -> Result<(), ValidationError> {
    NetworkName::validate(name)
}

pub(super) fn validate_endpoint(id: &str) -> Result<(), ValidationError> {
    let bad = |rule| Err(ValidationError::Name { field: "endpoint", value: id.to_owned(), rule });
    if id.is_empty() {
        return bad(NameRule::Empty);
    }
    if id.len() > MAX_ENDPOINT_LEN {
        return bad(NameRule::TooLong { max: MAX_ENDPOINT_LEN });
    }
    if !id.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
        return bad(NameRule::Characters { allowed: "printable ASCII characters but `\"` and `\\`" });
    }
    Ok(())
}

pub(super) fn validate_table(name: &str) -> Result<(), ValidationError> {
    let bad = |rule| Err(ValidationError::Name { field: "table", value: name.to_owned(), rule });
    if name.is_empty() {
        return bad(NameRule::Empty);
    }
    if name.len() > MAX_TABLE_LEN {
        return bad(NameRule::TooLong { max: MAX_TABLE_LEN });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad(NameRule::Start { allowed: "a letter" });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return bad(NameRule::Characters { allowed: "letters, digits, `_` and `-`" });
    }
    Ok(())
}

/// The crate's rules for interface names ([`IfName`]).
pub(super) fn validate_ifname(name: &str) -> Result<(), ValidationError> {
    IfName::for_field("bridge", name).map(drop)
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
            assert!(matches!(validate_network(bad), Err(ValidationError::NetworkName { .. })), "{bad:?}");
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
