//! [`NetworkName`]: a network's name, checked once by the one rule set every part of the crate
//! uses (the spec, IPAM's state file names, the firewall's chain names and rule comments).

use crate::validation::{NameRule, ValidationError};

/// A valid network name.
///
/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, 1 to [`NetworkName::MAX`] bytes: it names IPAM's state file
/// (`NAME.json`: so never `.`, `..` or anything with `/`) and the firewall's chains
/// (`nk-NAME-fwd`, within nftables' name limit) and goes into rule comments.
///
/// ```
/// use nook_netmodel::NetworkName;
///
/// let name: NetworkName = "nk-web".parse().unwrap();
/// assert_eq!(name.as_str(), "nk-web");
/// for bad in ["", ".", "..", "a/b", "-x", "a b"] {
///     assert!(NetworkName::new(bad).is_err(), "{bad:?}");
/// }
/// assert!(NetworkName::new("n".repeat(65)).is_err());
/// ```
///
/// Serialized as a plain string; deserializing checks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    /// The longest network name, in bytes.
    pub const MAX: usize = 64;

    /// Checks `name` and wraps it ([`ValidationError::NetworkName`]).
    pub fn new(name: impl Into<String>) -> Result<NetworkName, ValidationError> {
        let name = name.into();
        match NetworkName::check(&name) {
            Ok(()) => Ok(NetworkName(name)),
            Err(rule) => Err(ValidationError::NetworkName { value: name, rule }),
        }
    }

    /// The rule set: the rule `name` breaks, if any.
    pub fn check(name: &str) -> Result<(), NameRule> {
        let Some(first) = name.bytes().next() else { return Err(NameRule::Empty) };
        if name.len() > NetworkName::MAX {
            Err(NameRule::TooLong { max: NetworkName::MAX })
        } else if !first.is_ascii_alphanumeric() {
            Err(NameRule::Start { allowed: "a letter or digit" })
        } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            Err(NameRule::Characters { allowed: "letters, digits, `_`, `.` and `-`" })
        } else {
            Ok(())
        }
    }

    /// [`NetworkName::check`] as a validation error.
    pub(crate) fn validate(name: &str) -> Result<(), ValidationError> {
        NetworkName::check(name).map_err(|rule| ValidationError::NetworkName { value: name.to_owned(), rule })
    }
}

crate::checked_name::checked_name!(NetworkName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_rule_set() {
        for good in ["bridge", "nk-web", "my_net.1-x", "0", &"n".repeat(64)] {
            assert!(NetworkName::new(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "-x", ".x", "_x", "a b", "a/b", "../x", "é", "a\0", &"n".repeat(65)] {
            let e = NetworkName::new(bad).unwrap_err();
            assert!(matches!(&e, ValidationError::NetworkName { value, .. } if value == bad), "{e}");
        }
    }

    #[test]
    fn serde_checks() {
        let n: NetworkName = serde_json::from_str("\"nk-a\"").unwrap();
        assert_eq!(n, "nk-a");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"nk-a\"");
        let e = serde_json::from_str::<NetworkName>("\"../etc\"").unwrap_err();
        assert!(e.to_string().contains("invalid network name"), "{e}");
    }
}
